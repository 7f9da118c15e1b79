/*
 * Unit tests for smtpd/auth_rules: every rule of seeds/smtp-authentication.txt (and
 * the port roles) with at least one accepted and one refused case, table-driven,
 * plus the keys' defaults and the parsing of auth_match_exempt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "harness.h"
#include "smtpd/auth_rules.h"

/* Changes to the defaults a case asks for. */
enum {
	S_LOCAL_NETS = 1 << 0, /* local_networks = 192.168.0.0/16 */
	S_EXEMPT = 1 << 1, /* auth_match_exempt = news@example.com */
	S_UNLESS_LOCAL_RCPT = 1 << 2, /* auth_local_senders_unless_local_rcpt = yes */
	S_NO_LOCAL_SENDERS = 1 << 3, /* auth_required_for_local_senders = no */
	S_NO_UNLESS_DS = 1 << 4, /* auth_local_senders_unless_domain_sharing = no */
	S_NO_LOCALNET_RULE = 1 << 5, /* auth_required_from_local_networks = no */
	S_NO_ROLE = 1 << 6, /* auth_required_for_role_senders = no */
	S_NO_MATCH_RP = 1 << 7, /* auth_match_return_path = no */
	S_NO_MATCH_FROM = 1 << 8, /* auth_match_from_header = no */
	S_NO_EXEMPT_GW = 1 << 9, /* auth_match_exempt_gateway = no */
};

static const char *const alice_addrs[] = {"alice@example.com", "sales@example.com"};
static const char *const from_alice[] = {"alice@example.com"};
static const char *const from_alias[] = {"Sales@Example.COM"};
static const char *const from_bob[] = {"bob@example.com"};
static const char *const from_two[] = {"alice@example.com", "bob@example.com"};
static const char *const from_news[] = {"news@example.com"};

#define ALICE                                                                                      \
	.auth_identity = "alice@example.com", .auth_addresses = alice_addrs, .n_auth_addresses = 2
#define MAIL(addr, local) .phase = AUTH_RULES_MAIL, .mail_from = addr, .mail_from_local = local
#define RCPT(addr, local) .phase = AUTH_RULES_RCPT, .mail_from = addr, .mail_from_local = local
#define DATA(from)                                                                                 \
	.phase = AUTH_RULES_DATA, .from_header = from, .n_from_header = sizeof from / sizeof from[0]
#define NOPEER .sender_on_peer = AUTH_RULES_PEER_NOTFOUND

struct rule_case {
	const char *name;
	unsigned setup;
	struct auth_rules_input in;
	enum auth_rules_result want;
	const char *rule; /* the deciding rule, NULL for OK */
};

static const struct rule_case rule_cases[] = {
        /* port roles: submission and SMTPS need AUTH before MAIL */
        {"submission_unauthenticated",
         0,
         {MAIL("x@other.example", 0), .port = AUTH_RULES_PORT_SUBMISSION},
         AUTH_RULES_NEED_AUTH,
         "submission_listen"},
        {"submission_authenticated",
         0,
         {MAIL("alice@example.com", 1), .port = AUTH_RULES_PORT_SUBMISSION, ALICE},
         AUTH_RULES_OK,
         NULL},
        {"submission_trusted",
         0,
         {MAIL("x@other.example", 0), .port = AUTH_RULES_PORT_SUBMISSION, .trusted = 1},
         AUTH_RULES_OK,
         NULL},
        {"smtps_unauthenticated",
         0,
         {MAIL("x@other.example", 0), .port = AUTH_RULES_PORT_SMTPS},
         AUTH_RULES_NEED_AUTH,
         "smtps_listen"},
        {"smtp_outside_sender", 0, {MAIL("x@other.example", 0), NOPEER}, AUTH_RULES_OK, NULL},

        /* auth_required_for_local_senders */
        {"local_sender_unauthenticated",
         0,
         {MAIL("alice@example.com", 1), NOPEER},
         AUTH_RULES_NEED_AUTH,
         "auth_required_for_local_senders"},
        {"local_sender_authenticated",
         0,
         {MAIL("alice@example.com", 1), NOPEER, ALICE},
         AUTH_RULES_OK,
         NULL},
        {"local_sender_trusted",
         0,
         {MAIL("alice@example.com", 1), NOPEER, .trusted = 1},
         AUTH_RULES_OK,
         NULL},
        {"local_sender_rule_off",
         S_NO_LOCAL_SENDERS,
         {MAIL("alice@example.com", 1), NOPEER},
         AUTH_RULES_OK,
         NULL},
        {"local_sender_null_path", 0, {MAIL("", 0), NOPEER}, AUTH_RULES_OK, NULL},

        /* auth_local_senders_unless_domain_sharing */
        {"local_sender_ask_peer",
         0,
         {MAIL("carol@example.com", 1)},
         AUTH_RULES_ASK_PEER,
         "auth_local_senders_unless_domain_sharing"},
        {"local_sender_on_peer",
         0,
         {MAIL("carol@example.com", 1), .sender_on_peer = AUTH_RULES_PEER_FOUND},
         AUTH_RULES_OK,
         NULL},
        {"local_sender_peer_tempfail",
         0,
         {MAIL("carol@example.com", 1), .sender_on_peer = AUTH_RULES_PEER_TEMPFAIL},
         AUTH_RULES_TEMPFAIL,
         "auth_local_senders_unless_domain_sharing"},
        {"local_sender_on_peer_not_exempt",
         S_NO_UNLESS_DS,
         {MAIL("carol@example.com", 1), .sender_on_peer = AUTH_RULES_PEER_FOUND},
         AUTH_RULES_NEED_AUTH,
         "auth_required_for_local_senders"},
        {"local_sender_no_question_when_off",
         S_NO_UNLESS_DS,
         {MAIL("carol@example.com", 1)},
         AUTH_RULES_NEED_AUTH,
         "auth_required_for_local_senders"},

        /* auth_local_senders_unless_local_rcpt: decided per recipient */
        {"unless_local_rcpt_mail_passes",
         S_UNLESS_LOCAL_RCPT,
         {MAIL("alice@example.com", 1), NOPEER},
         AUTH_RULES_OK,
         NULL},
        {"unless_local_rcpt_local_rcpt",
         S_UNLESS_LOCAL_RCPT,
         {RCPT("alice@example.com", 1), NOPEER, .rcpt_local = 1},
         AUTH_RULES_OK,
         NULL},
        {"unless_local_rcpt_outside_rcpt",
         S_UNLESS_LOCAL_RCPT,
         {RCPT("alice@example.com", 1), NOPEER},
         AUTH_RULES_NEED_AUTH,
         "auth_local_senders_unless_local_rcpt"},
        {"unless_local_rcpt_authenticated",
         S_UNLESS_LOCAL_RCPT,
         {RCPT("alice@example.com", 1), NOPEER, ALICE},
         AUTH_RULES_OK,
         NULL},
        {"unless_local_rcpt_peer_sender",
         S_UNLESS_LOCAL_RCPT,
         {RCPT("carol@example.com", 1), .sender_on_peer = AUTH_RULES_PEER_FOUND},
         AUTH_RULES_OK,
         NULL},
        {"outside_rcpt_rule_off", 0, {RCPT("x@other.example", 0), NOPEER}, AUTH_RULES_OK, NULL},

        /* auth_required_from_local_networks */
        {"local_network_unauthenticated",
         S_LOCAL_NETS,
         {MAIL("x@other.example", 0), NOPEER, .in_local_networks = 1},
         AUTH_RULES_NEED_AUTH,
         "auth_required_from_local_networks"},
        {"local_network_authenticated",
         S_LOCAL_NETS,
         {MAIL("alice@example.com", 1), NOPEER, .in_local_networks = 1, ALICE},
         AUTH_RULES_OK,
         NULL},
        {"local_network_trusted",
         S_LOCAL_NETS,
         {MAIL("x@other.example", 0), NOPEER, .in_local_networks = 1, .trusted = 1},
         AUTH_RULES_OK,
         NULL},
        {"local_network_empty_list",
         0,
         {MAIL("x@other.example", 0), NOPEER, .in_local_networks = 1},
         AUTH_RULES_OK,
         NULL},
        {"local_network_rule_off",
         S_LOCAL_NETS | S_NO_LOCALNET_RULE,
         {MAIL("x@other.example", 0), NOPEER, .in_local_networks = 1},
         AUTH_RULES_OK,
         NULL},
        {"outside_network",
         S_LOCAL_NETS,
         {MAIL("x@other.example", 0), NOPEER},
         AUTH_RULES_OK,
         NULL},

        /* auth_required_for_role_senders (also when a peer has the sender) */
        {"role_postmaster",
         S_NO_LOCAL_SENDERS,
         {MAIL("postmaster@example.com", 1), NOPEER},
         AUTH_RULES_NEED_AUTH,
         "auth_required_for_role_senders"},
        {"role_any_case",
         S_NO_LOCAL_SENDERS,
         {MAIL("PostMaster@example.com", 1), NOPEER},
         AUTH_RULES_NEED_AUTH,
         "auth_required_for_role_senders"},
        {"role_abuse",
         S_NO_LOCAL_SENDERS,
         {MAIL("abuse@example.com", 1), NOPEER},
         AUTH_RULES_NEED_AUTH,
         "auth_required_for_role_senders"},
        {"role_webmaster_on_peer",
         0,
         {MAIL("webmaster@example.com", 1), .sender_on_peer = AUTH_RULES_PEER_FOUND},
         AUTH_RULES_NEED_AUTH,
         "auth_required_for_role_senders"},
        {"role_quoted_is_not_role",
         S_NO_LOCAL_SENDERS,
         {MAIL("\"postmaster\"@example.com", 1), NOPEER},
         AUTH_RULES_OK,
         NULL},
        {"role_outside_domain",
         0,
         {MAIL("postmaster@other.example", 0), NOPEER},
         AUTH_RULES_OK,
         NULL},
        {"role_rule_off",
         S_NO_LOCAL_SENDERS | S_NO_ROLE,
         {MAIL("postmaster@example.com", 1), NOPEER},
         AUTH_RULES_OK,
         NULL},
        {"role_authenticated",
         0,
         {MAIL("postmaster@example.com", 1), NOPEER, .auth_identity = "postmaster@example.com"},
         AUTH_RULES_OK,
         NULL},
        {"role_trusted",
         0,
         {MAIL("postmaster@example.com", 1), NOPEER, .trusted = 1},
         AUTH_RULES_OK,
         NULL},

        /* auth_match_return_path (a user's aliases count) */
        {"return_path_other_user",
         0,
         {MAIL("bob@example.com", 1), NOPEER, ALICE},
         AUTH_RULES_MISMATCH,
         "auth_match_return_path"},
        {"return_path_other_user_trusted",
         0,
         {MAIL("bob@example.com", 1), NOPEER, ALICE, .trusted = 1},
         AUTH_RULES_MISMATCH,
         "auth_match_return_path"},
        {"return_path_outside_address",
         0,
         {MAIL("alice@gmail.example", 0), NOPEER, ALICE},
         AUTH_RULES_MISMATCH,
         "auth_match_return_path"},
        {"return_path_own", 0, {MAIL("alice@example.com", 1), NOPEER, ALICE}, AUTH_RULES_OK, NULL},
        {"return_path_own_any_case",
         0,
         {MAIL("ALICE@Example.Com", 1), NOPEER, ALICE},
         AUTH_RULES_OK,
         NULL},
        {"return_path_alias",
         0,
         {MAIL("sales@example.com", 1), NOPEER, ALICE},
         AUTH_RULES_OK,
         NULL},
        {"return_path_null", 0, {MAIL("", 0), NOPEER, ALICE}, AUTH_RULES_OK, NULL},
        {"return_path_rule_off",
         S_NO_MATCH_RP,
         {MAIL("bob@example.com", 1), NOPEER, ALICE},
         AUTH_RULES_OK,
         NULL},
        {"return_path_exempt",
         S_EXEMPT,
         {MAIL("News@example.com", 1), NOPEER, ALICE},
         AUTH_RULES_OK,
         NULL},

        /* auth_match_exempt_gateway: the recipients decide the return-path rule */
        {"gateway_mail_passes",
         0,
         {MAIL("bob@example.com", 1), NOPEER, ALICE, .gateway_domains = 1},
         AUTH_RULES_OK,
         NULL},
        {"gateway_rcpt",
         0,
         {RCPT("bob@example.com", 1), NOPEER, ALICE, .gateway_domains = 1, .rcpt_gateway = 1},
         AUTH_RULES_OK,
         NULL},
        {"gateway_other_rcpt",
         0,
         {RCPT("bob@example.com", 1), NOPEER, ALICE, .gateway_domains = 1},
         AUTH_RULES_MISMATCH,
         "auth_match_return_path"},
        {"gateway_exemption_off",
         S_NO_EXEMPT_GW,
         {MAIL("bob@example.com", 1), NOPEER, ALICE, .gateway_domains = 1},
         AUTH_RULES_MISMATCH,
         "auth_match_return_path"},
        {"gateway_rcpt_own_sender",
         0,
         {RCPT("alice@example.com", 1), NOPEER, ALICE, .gateway_domains = 1},
         AUTH_RULES_OK,
         NULL},

        /* auth_match_from_header (after the final dot) */
        {"from_own", 0, {DATA(from_alice), ALICE}, AUTH_RULES_OK, NULL},
        {"from_alias", 0, {DATA(from_alias), ALICE}, AUTH_RULES_OK, NULL},
        {"from_other_user",
         0,
         {DATA(from_bob), ALICE},
         AUTH_RULES_MISMATCH,
         "auth_match_from_header"},
        {"from_one_of_two_other",
         0,
         {DATA(from_two), ALICE},
         AUTH_RULES_MISMATCH,
         "auth_match_from_header"},
        {"from_exempt", S_EXEMPT, {DATA(from_news), ALICE}, AUTH_RULES_OK, NULL},
        {"from_exempt_only_as_from",
         S_EXEMPT,
         {DATA(from_bob), ALICE, .mail_from = "news@example.com"},
         AUTH_RULES_MISMATCH,
         "auth_match_from_header"},
        {"from_rule_off", S_NO_MATCH_FROM, {DATA(from_bob), ALICE}, AUTH_RULES_OK, NULL},
        {"from_all_gateway",
         0,
         {DATA(from_bob), ALICE, .all_rcpts_gateway = 1},
         AUTH_RULES_OK,
         NULL},
        {"from_all_gateway_off",
         S_NO_EXEMPT_GW,
         {DATA(from_bob), ALICE, .all_rcpts_gateway = 1},
         AUTH_RULES_MISMATCH,
         "auth_match_from_header"},
        {"from_unauthenticated", 0, {DATA(from_bob), .trusted = 1}, AUTH_RULES_OK, NULL},
        {"from_none", 0, {.phase = AUTH_RULES_DATA, ALICE}, AUTH_RULES_OK, NULL},
};

static struct conf *setup_conf(unsigned setup)
{
	struct conf *c = conf_defaults();
	if (!c)
		return NULL;
	if (setup & S_LOCAL_NETS) {
		c->local_networks.v = calloc(1, sizeof *c->local_networks.v);
		char err[128];
		if (c->local_networks.v &&
		    netaddr_parse_net("192.168.0.0/16", c->local_networks.v, err, sizeof err) == 0)
			c->local_networks.n = 1;
	}
	if (setup & S_EXEMPT) {
		c->auth_match_exempt.v = calloc(1, sizeof(char *));
		if (c->auth_match_exempt.v &&
		    (c->auth_match_exempt.v[0] = strdup("news@example.com")))
			c->auth_match_exempt.n = 1;
	}
	if (setup & S_UNLESS_LOCAL_RCPT)
		c->auth_local_senders_unless_local_rcpt = 1;
	if (setup & S_NO_LOCAL_SENDERS)
		c->auth_required_for_local_senders = 0;
	if (setup & S_NO_UNLESS_DS)
		c->auth_local_senders_unless_domain_sharing = 0;
	if (setup & S_NO_LOCALNET_RULE)
		c->auth_required_from_local_networks = 0;
	if (setup & S_NO_ROLE)
		c->auth_required_for_role_senders = 0;
	if (setup & S_NO_MATCH_RP)
		c->auth_match_return_path = 0;
	if (setup & S_NO_MATCH_FROM)
		c->auth_match_from_header = 0;
	if (setup & S_NO_EXEMPT_GW)
		c->auth_match_exempt_gateway = 0;
	return c;
}

TEST(rules)
{
	for (size_t i = 0; i < sizeof rule_cases / sizeof rule_cases[0]; i++) {
		const struct rule_case *rc = &rule_cases[i];
		struct conf *c = setup_conf(rc->setup);
		if (!CHECK(c != NULL))
			return;
		struct auth_rules_verdict v;
		enum auth_rules_result r = auth_rules_check(c, &rc->in, &v);
		if (!CHECK_INT(r, rc->want) | !CHECK_STR(v.rule, rc->rule))
			printf("  in case %s\n", rc->name);
		CHECK_INT(v.result, r);
		conf_free(c);
	}
}

/* The replies the issue and RFC 4954 section 6 prescribe. */
TEST(replies)
{
	struct conf *c = conf_defaults();
	struct auth_rules_verdict v;
	struct auth_rules_input in = {MAIL("alice@example.com", 1), NOPEER};
	CHECK_INT(auth_rules_check(c, &in, &v), AUTH_RULES_NEED_AUTH);
	CHECK_INT(v.code, 530);
	CHECK_STR(v.enh, "5.7.0");
	CHECK_STR(v.text, "Authentication required");

	struct auth_rules_input mm = {MAIL("bob@example.com", 1), NOPEER, ALICE};
	CHECK_INT(auth_rules_check(c, &mm, &v), AUTH_RULES_MISMATCH);
	CHECK_INT(v.code, 550);
	CHECK_STR(v.enh, "5.7.1");

	struct auth_rules_input fh = {DATA(from_bob), ALICE};
	CHECK_INT(auth_rules_check(c, &fh, &v), AUTH_RULES_MISMATCH);
	CHECK_INT(v.code, 550);
	CHECK_STR(v.enh, "5.7.1");
	CHECK_STR(v.text, "From: header address not owned by the authenticated user");

	struct auth_rules_input tf = {MAIL("carol@example.com", 1),
	                              .sender_on_peer = AUTH_RULES_PEER_TEMPFAIL};
	CHECK_INT(auth_rules_check(c, &tf, &v), AUTH_RULES_TEMPFAIL);
	CHECK_INT(v.code, 451);
	CHECK_STR(v.enh, "4.4.3");

	struct auth_rules_input ok = {MAIL("alice@example.com", 1), NOPEER, ALICE};
	CHECK_INT(auth_rules_check(c, &ok, NULL), AUTH_RULES_OK);
	CHECK_INT(auth_rules_check(c, &ok, &v), AUTH_RULES_OK);
	CHECK_INT(v.code, 0);
	CHECK(v.text == NULL && v.enh == NULL);
	conf_free(c);
}

TEST(role_names)
{
	CHECK(auth_rules_is_role("postmaster", 10));
	CHECK(auth_rules_is_role("ABUSE", 5));
	CHECK(auth_rules_is_role("WebMaster", 9));
	CHECK(!auth_rules_is_role("postmaste", 9));
	CHECK(!auth_rules_is_role("postmasters", 11));
	CHECK(!auth_rules_is_role("\"abuse\"", 7));
	CHECK(!auth_rules_is_role("hostmaster", 10));
}

/* The seed's defaults: every rule on except ...unless_local_rcpt; AUTH only inside TLS. */
TEST(defaults)
{
	struct conf *c = conf_defaults();
	if (!CHECK(c != NULL))
		return;
	CHECK_INT(c->auth_required_for_local_senders, 1);
	CHECK_INT(c->auth_local_senders_unless_local_rcpt, 0);
	CHECK_INT(c->auth_local_senders_unless_domain_sharing, 1);
	CHECK_INT(c->auth_required_from_local_networks, 1);
	CHECK_INT(c->local_networks.n, 0);
	CHECK_INT(c->auth_required_for_role_senders, 1);
	CHECK_INT(c->auth_match_return_path, 1);
	CHECK_INT(c->auth_match_from_header, 1);
	CHECK_INT(c->auth_match_exempt.n, 0);
	CHECK_INT(c->auth_match_exempt_gateway, 1);
	CHECK_INT(c->auth_allow_plaintext, 0);
	CHECK_INT(c->smtp_auth_on_smtp_port, 1);
	CHECK_INT(c->smtp_auth_on_smtp_port_screen, 0);
	CHECK_INT(c->smtp_received_auth, 0);
	conf_free(c);
}

/* Writes text to a fresh file and loads it; *errs gets the problems. */
static struct conf *load_text(const char *text, struct conf_errors *errs)
{
	char path[] = "/tmp/test_auth_rules.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(path);
		return NULL;
	}
	fputs(text, f);
	fclose(f);
	struct conf *c = conf_load_flags(path, CONF_LOAD_SKIP_SECRETS, errs);
	unlink(path);
	return c;
}

/* auth_match_exempt holds mailboxes, stored as lookup keys; anything else is an error. */
TEST(exempt_list_parsing)
{
	struct conf_errors errs = {0};
	struct conf *c = load_text("state_dir = /tmp\nauth_match_exempt = News@Example.COM "
	                           "\"john..doe\"@example.com\nauth_match_exempt = x@y.example\n"
	                           "local_networks = 10.0.0.0/8\n",
	                           &errs);
	if (CHECK(c != NULL)) {
		CHECK_INT(c->auth_match_exempt.n, 3);
		if (c->auth_match_exempt.n == 3) {
			CHECK_STR(c->auth_match_exempt.v[0], "news@example.com");
			CHECK_STR(c->auth_match_exempt.v[1], "\"john..doe\"@example.com");
			CHECK_STR(c->auth_match_exempt.v[2], "x@y.example");
		}
		CHECK_INT(c->local_networks.n, 1);
	}
	conf_free(c);
	conf_errors_free(&errs);

	c = load_text("state_dir = /tmp\nauth_match_exempt = not-an-address\n", &errs);
	CHECK(c == NULL);
	CHECK_INT(errs.n, 1);
	if (errs.n == 1) {
		CHECK_INT(errs.v[0].line, 2);
		CHECK(strstr(errs.v[0].message, "not a mail address") != NULL);
	}
	conf_free(c);
	conf_errors_free(&errs);
}

TEST_MAIN(T(rules), T(replies), T(role_names), T(defaults), T(exempt_list_parsing))
