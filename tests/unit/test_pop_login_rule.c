/*
 * Unit tests for the POP before SMTP rule in smtpd/auth_rules (pure): when the
 * rule asks the session (AUTH_RULES_ASK_POP), what each answer gives (530 5.7.0,
 * 451 4.4.3 or on), the exemptions (smtp_trusted_networks always, AUTH while
 * auth_exempt_pop_before_smtp), the senders it never concerns (outside the local
 * domains, <>), and its place among the other MAIL rules (the AUTH rule first).
 * The session's side (lookup, table) is in tests/transcripts/pop_before_smtp_*.
 */
#include <stdio.h>
#include <string.h>

#include "conf/conf.h"
#include "harness.h"
#include "smtpd/auth_rules.h"

enum {
	P_ON = 1, /* pop_before_smtp = yes */
	P_NO_AUTH_EXEMPT = 2, /* auth_exempt_pop_before_smtp = no */
	P_AUTH_RULE = 4, /* auth_required_for_local_senders stays yes */
};

struct pop_case {
	const char *name;
	unsigned setup;
	int trusted;
	const char *auth; /* the AUTH identity, or NULL */
	const char *from;
	int from_local;
	enum auth_rules_pop pop;
	enum auth_rules_result want;
	const char *rule;
	int code;
};

#define A "alice@example.com"

static const struct pop_case pop_cases[] = {
        {"off", 0, 0, NULL, A, 1, AUTH_RULES_POP_UNKNOWN, AUTH_RULES_OK, NULL, 0},
        {"ask", P_ON, 0, NULL, A, 1, AUTH_RULES_POP_UNKNOWN, AUTH_RULES_ASK_POP, "pop_before_smtp",
         0},
        {"stale", P_ON, 0, NULL, A, 1, AUTH_RULES_POP_STALE, AUTH_RULES_NEED_POP, "pop_before_smtp",
         530},
        {"recent", P_ON, 0, NULL, A, 1, AUTH_RULES_POP_RECENT, AUTH_RULES_OK, NULL, 0},
        {"not_account", P_ON, 0, NULL, A, 1, AUTH_RULES_POP_NOT_ACCOUNT, AUTH_RULES_OK, NULL, 0},
        {"tempfail", P_ON, 0, NULL, A, 1, AUTH_RULES_POP_TEMPFAIL, AUTH_RULES_TEMPFAIL,
         "pop_before_smtp", 451},
        {"foreign_sender", P_ON, 0, NULL, "x@example.net", 0, AUTH_RULES_POP_UNKNOWN, AUTH_RULES_OK,
         NULL, 0},
        {"null_sender", P_ON, 0, NULL, "", 0, AUTH_RULES_POP_UNKNOWN, AUTH_RULES_OK, NULL, 0},
        {"trusted", P_ON, 1, NULL, A, 1, AUTH_RULES_POP_STALE, AUTH_RULES_OK, NULL, 0},
        {"trusted_no_auth_exempt", P_ON | P_NO_AUTH_EXEMPT, 1, NULL, A, 1, AUTH_RULES_POP_STALE,
         AUTH_RULES_OK, NULL, 0},
        {"auth_exempt", P_ON, 0, A, A, 1, AUTH_RULES_POP_STALE, AUTH_RULES_OK, NULL, 0},
        {"auth_not_exempt", P_ON | P_NO_AUTH_EXEMPT, 0, A, A, 1, AUTH_RULES_POP_STALE,
         AUTH_RULES_NEED_POP, "pop_before_smtp", 530},
        {"auth_not_exempt_recent", P_ON | P_NO_AUTH_EXEMPT, 0, A, A, 1, AUTH_RULES_POP_RECENT,
         AUTH_RULES_OK, NULL, 0},
        {"auth_rule_first", P_ON | P_AUTH_RULE, 0, NULL, A, 1, AUTH_RULES_POP_RECENT,
         AUTH_RULES_NEED_AUTH, "auth_required_for_local_senders", 530},
        {"auth_rule_first_stale", P_ON | P_AUTH_RULE, 0, NULL, A, 1, AUTH_RULES_POP_STALE,
         AUTH_RULES_NEED_AUTH, "auth_required_for_local_senders", 530},
};

TEST(pop_rule_table)
{
	for (size_t i = 0; i < sizeof pop_cases / sizeof pop_cases[0]; i++) {
		const struct pop_case *k = &pop_cases[i];
		struct conf *c = conf_defaults();
		if (!CHECK(c != NULL))
			return;
		c->pop_before_smtp = (k->setup & P_ON) != 0;
		c->auth_exempt_pop_before_smtp = !(k->setup & P_NO_AUTH_EXEMPT);
		c->auth_required_for_local_senders = (k->setup & P_AUTH_RULE) != 0;
		c->auth_local_senders_unless_domain_sharing = 0;
		struct auth_rules_input in;
		memset(&in, 0, sizeof in);
		in.phase = AUTH_RULES_MAIL;
		in.trusted = k->trusted;
		in.auth_identity = k->auth;
		in.mail_from = k->from;
		in.mail_from_local = k->from_local;
		in.pop_login = k->pop;
		struct auth_rules_verdict v;
		enum auth_rules_result r = auth_rules_check(c, &in, &v);
		if (!CHECK_INT(r, k->want) | !CHECK_STR(v.rule, k->rule) |
		    !CHECK_INT(v.code, k->code))
			printf("  in case %s\n", k->name);
		if (k->code == 530 && k->want == AUTH_RULES_NEED_POP)
			CHECK_STR(v.enh, "5.7.0");
		/* RCPT and DATA never ask: the rule is MAIL's alone. */
		in.phase = AUTH_RULES_RCPT;
		in.pop_login = AUTH_RULES_POP_UNKNOWN;
		in.rcpt_local = 1;
		if (!CHECK(auth_rules_check(c, &in, &v) != AUTH_RULES_ASK_POP))
			printf("  in case %s (RCPT)\n", k->name);
		conf_free(c);
	}
}

TEST(defaults)
{
	struct conf *c = conf_defaults();
	if (!CHECK(c != NULL))
		return;
	CHECK_INT(c->pop_before_smtp, 0);
	CHECK_INT(c->pop_before_smtp_window, 600);
	CHECK_INT(c->auth_exempt_pop_before_smtp, 1);
	conf_free(c);
}

TEST_MAIN(T(pop_rule_table), T(defaults))
