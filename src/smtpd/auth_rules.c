/*
 * auth_rules: the sender authentication rules of seeds/smtp-authentication.txt.
 * See auth_rules.h for the rules, their phases and replies.
 *
 * RFC 4954 section 6 gives "530 5.7.0 Authentication required" for a command
 * refused by policy until the client authenticates; RFC 3463 3.8 X.7.1 ("delivery
 * not authorized") is the code for a sender the credentials do not cover.
 */
#include "smtpd/auth_rules.h"

#include <string.h>

#include "conf/conf.h"
#include "proto/mailaddr.h"

static int ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Lookup keys compare ASCII case-insensitively (mailaddr_key folds the whole address). */
static int same_address(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (ascii_lower((unsigned char)*a) != ascii_lower((unsigned char)*b))
			return 0;
	return *a == *b;
}

int auth_rules_is_role(const char *local, size_t len)
{
	static const char *const roles[] = {"postmaster", "abuse", "webmaster"};
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
		size_t n = strlen(roles[i]);
		if (len != n)
			continue;
		size_t j = 0;
		while (j < n && ascii_lower((unsigned char)local[j]) == roles[i][j])
			j++;
		if (j == n)
			return 1; /* a quoted local part starts with '"', so it never matches */
	}
	return 0;
}

static enum auth_rules_result verdict(struct auth_rules_verdict *v, enum auth_rules_result r,
                                      const char *rule)
{
	v->result = r;
	v->rule = rule;
	v->code = 0;
	v->enh = NULL;
	v->text = NULL;
	switch (r) {
	case AUTH_RULES_NEED_AUTH:
		v->code = 530;
		v->enh = "5.7.0";
		v->text = "Authentication required";
		break;
	case AUTH_RULES_MISMATCH:
		v->code = 550;
		v->enh = "5.7.1";
		v->text = strcmp(rule, "auth_match_from_header") == 0
		                  ? "From: header address not owned by the authenticated user"
		                  : "Sender address not owned by the authenticated user";
		break;
	case AUTH_RULES_NEED_POP:
		v->code = 530;
		v->enh = "5.7.0";
		v->text = "Check your mail over POP3 first (POP before SMTP), or authenticate";
		break;
	case AUTH_RULES_TEMPFAIL:
		v->code = 451;
		v->enh = "4.4.3";
		v->text = "Cannot check the sender now, try again later";
		break;
	case AUTH_RULES_OK:
	case AUTH_RULES_ASK_PEER:
	case AUTH_RULES_ASK_POP: break;
	}
	return r;
}

/* 1 if addr is the authenticated account's: its identity or one of its addresses. */
static int owned(const struct auth_rules_input *in, const char *addr)
{
	if (same_address(addr, in->auth_identity))
		return 1;
	for (size_t i = 0; i < in->n_auth_addresses; i++)
		if (same_address(addr, in->auth_addresses[i]))
			return 1;
	return 0;
}

/* The seed's white list: exempt as the return path or as the From: it is. */
static int exempt(const struct conf *c, const char *addr)
{
	for (size_t i = 0; i < c->auth_match_exempt.n; i++)
		if (same_address(addr, c->auth_match_exempt.v[i]))
			return 1;
	return 0;
}

static int return_path_mismatch(const struct conf *c, const struct auth_rules_input *in)
{
	if (!in->auth_identity || !c->auth_match_return_path || in->mail_from[0] == '\0')
		return 0;
	return !owned(in, in->mail_from) && !exempt(c, in->mail_from);
}

/* A mismatch a gateway recipient may still exempt waits for the recipients. */
static int return_path_deferred(const struct conf *c, const struct auth_rules_input *in)
{
	return c->auth_match_exempt_gateway && in->gateway_domains;
}

static int needs_auth(const struct auth_rules_input *in)
{
	return !in->auth_identity && !in->trusted;
}

static int is_role_sender(const struct auth_rules_input *in)
{
	struct mailaddr a;
	if (!in->mail_from_local ||
	    mailaddr_parse_exact(in->mail_from, strlen(in->mail_from), &a) != MAILADDR_OK)
		return 0;
	return !a.quoted && auth_rules_is_role(a.local, a.local_len);
}

/*
 * auth_required_for_local_senders and its two exceptions. Returns NEED_AUTH,
 * ASK_PEER or TEMPFAIL, or OK with *deferred set when the recipients decide.
 */
static enum auth_rules_result local_sender(const struct conf *c, const struct auth_rules_input *in,
                                           int *deferred)
{
	*deferred = 0;
	if (!c->auth_required_for_local_senders || !in->mail_from_local || in->mail_from[0] == '\0')
		return AUTH_RULES_OK;
	if (c->auth_local_senders_unless_domain_sharing) {
		switch (in->sender_on_peer) {
		case AUTH_RULES_PEER_UNKNOWN: return AUTH_RULES_ASK_PEER;
		case AUTH_RULES_PEER_FOUND: return AUTH_RULES_OK;
		case AUTH_RULES_PEER_TEMPFAIL: return AUTH_RULES_TEMPFAIL;
		case AUTH_RULES_PEER_NOTFOUND: break;
		}
	}
	if (c->auth_local_senders_unless_local_rcpt) {
		*deferred = 1;
		return AUTH_RULES_OK;
	}
	return AUTH_RULES_NEED_AUTH;
}

/*
 * POP before SMTP (MDaemon's): a local account as MAIL FROM must have logged in
 * over POP3 recently; trusted networks always, and AUTH sessions while
 * auth_exempt_pop_before_smtp (the seed's "Do not apply POP Before SMTP to
 * authenticated sessions"), are exempt. Independent of the AUTH rules above: a
 * POP3 login does not satisfy auth_required_for_local_senders.
 */
static enum auth_rules_result pop_rule(const struct conf *c, const struct auth_rules_input *in)
{
	if (!c->pop_before_smtp || in->trusted || !in->mail_from_local || in->mail_from[0] == '\0')
		return AUTH_RULES_OK;
	if (in->auth_identity && c->auth_exempt_pop_before_smtp)
		return AUTH_RULES_OK;
	switch (in->pop_login) {
	case AUTH_RULES_POP_UNKNOWN: return AUTH_RULES_ASK_POP;
	case AUTH_RULES_POP_STALE: return AUTH_RULES_NEED_POP;
	case AUTH_RULES_POP_TEMPFAIL: return AUTH_RULES_TEMPFAIL;
	case AUTH_RULES_POP_RECENT:
	case AUTH_RULES_POP_NOT_ACCOUNT: break;
	}
	return AUTH_RULES_OK;
}

static enum auth_rules_result at_mail(const struct conf *c, const struct auth_rules_input *in,
                                      struct auth_rules_verdict *v)
{
	if (needs_auth(in)) {
		if (in->port == AUTH_RULES_PORT_SUBMISSION)
			return verdict(v, AUTH_RULES_NEED_AUTH, "submission_listen");
		if (in->port == AUTH_RULES_PORT_SMTPS)
			return verdict(v, AUTH_RULES_NEED_AUTH, "smtps_listen");
		if (c->auth_required_from_local_networks && c->local_networks.n > 0 &&
		    in->in_local_networks)
			return verdict(v, AUTH_RULES_NEED_AUTH,
			               "auth_required_from_local_networks");
		if (c->auth_required_for_role_senders && is_role_sender(in))
			return verdict(v, AUTH_RULES_NEED_AUTH, "auth_required_for_role_senders");
		int deferred;
		enum auth_rules_result r = local_sender(c, in, &deferred);
		if (r != AUTH_RULES_OK)
			return verdict(v, r,
			               r == AUTH_RULES_NEED_AUTH
			                       ? "auth_required_for_local_senders"
			                       : "auth_local_senders_unless_domain_sharing");
	}
	enum auth_rules_result pop = pop_rule(c, in);
	if (pop != AUTH_RULES_OK)
		return verdict(v, pop, "pop_before_smtp");
	if (return_path_mismatch(c, in) && !return_path_deferred(c, in))
		return verdict(v, AUTH_RULES_MISMATCH, "auth_match_return_path");
	return verdict(v, AUTH_RULES_OK, NULL);
}

static enum auth_rules_result at_rcpt(const struct conf *c, const struct auth_rules_input *in,
                                      struct auth_rules_verdict *v)
{
	int deferred = 0;
	if (needs_auth(in) && local_sender(c, in, &deferred) == AUTH_RULES_OK && deferred &&
	    !in->rcpt_local)
		return verdict(v, AUTH_RULES_NEED_AUTH, "auth_local_senders_unless_local_rcpt");
	if (return_path_mismatch(c, in) && return_path_deferred(c, in) && !in->rcpt_gateway)
		return verdict(v, AUTH_RULES_MISMATCH, "auth_match_return_path");
	return verdict(v, AUTH_RULES_OK, NULL);
}

static enum auth_rules_result at_data(const struct conf *c, const struct auth_rules_input *in,
                                      struct auth_rules_verdict *v)
{
	if (!in->auth_identity || !c->auth_match_from_header)
		return verdict(v, AUTH_RULES_OK, NULL);
	if (c->auth_match_exempt_gateway && in->all_rcpts_gateway)
		return verdict(v, AUTH_RULES_OK, NULL);
	for (size_t i = 0; i < in->n_from_header; i++)
		if (!owned(in, in->from_header[i]) && !exempt(c, in->from_header[i]))
			return verdict(v, AUTH_RULES_MISMATCH, "auth_match_from_header");
	return verdict(v, AUTH_RULES_OK, NULL);
}

enum auth_rules_result auth_rules_check(const struct conf *c, const struct auth_rules_input *in,
                                        struct auth_rules_verdict *out)
{
	struct auth_rules_verdict local;
	struct auth_rules_verdict *v = out ? out : &local;
	const char *from = in->mail_from ? in->mail_from : "";
	struct auth_rules_input copy = *in;
	copy.mail_from = from;
	switch (in->phase) {
	case AUTH_RULES_MAIL: return at_mail(c, &copy, v);
	case AUTH_RULES_RCPT: return at_rcpt(c, &copy, v);
	case AUTH_RULES_DATA: return at_data(c, &copy, v);
	}
	return verdict(v, AUTH_RULES_OK, NULL);
}
