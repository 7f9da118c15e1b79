/*
 * smtp_auth: see smtp_auth.h. RFC 4954 (AUTH), RFC 4616 (PLAIN), RFC 3848
 * (ESMTPA), RFC 6409 (submission), and the seed's rules through auth_rules.
 */
#include "smtpd/smtp_auth.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "proto/esmtp_param.h"
#include "proto/rfc5322.h"
#include "proto/rfc5322_addr.h"
#include "proto/sasl.h"
#include "smtpd/smtp_policy.h"
#include "smtpd/smtp_session_int.h"

/* From: addresses the rule looks at, at most (more: refused, 550 5.7.1). */
#define FROM_ADDRS_MAX 32

/* ---- offering AUTH ---- */

/* 1 on smtp_listen when smtp_auth_on_smtp_port = no (the seed's option). */
static int refused_on_port(const struct smtp_session *s)
{
	return s->kind == SMTP_PORT_SMTP && !s->c->smtp_auth_on_smtp_port;
}

/* RFC 4954 4, 14: no plaintext passwords outside TLS unless the admin says so. */
static int tls_ok(const struct smtp_session *s)
{
	return s->tls_active || s->c->auth_allow_plaintext;
}

int smtp_auth_offered(const struct smtp_session *s)
{
	return s->ops->auth_check != NULL && !refused_on_port(s) && tls_ok(s);
}

/* ---- the command ---- */

/* Sends a SASL reply line through smtp_session_reply, so a 5xx counts as an error. */
static void sasl_reply_send(struct smtp_session *s, int count_error)
{
	size_t len = 0;
	int code = 0;
	const char *line = sasl_reply(s->sasl, &len, &code);
	if (code == 334 || len < 4) {
		smtp_session_reply_raw(s, line, len); /* "334 " keeps its space (RFC 4954 4) */
		return;
	}
	char enh[16] = "", text[SASL_REPLY_MAX];
	const char *p = line + 4, *end = line + len;
	while (end > p && (end[-1] == '\r' || end[-1] == '\n'))
		end--;
	const char *sp = memchr(p, ' ', (size_t)(end - p));
	if (sp != NULL && (size_t)(sp - p) < sizeof enh) {
		memcpy(enh, p, (size_t)(sp - p));
		enh[sp - p] = '\0';
		p = sp + 1;
	}
	snprintf(text, sizeof text, "%.*s", (int)(end - p), p);
	smtp_session_reply(s, code, enh[0] ? enh : NULL, text, count_error);
}

int smtp_auth_check_cmd(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (s->ops->auth_check == NULL) {
		smtp_session_reply(s, 502, "5.5.1", "Command not offered by this server", 1);
		return -1;
	}
	if (refused_on_port(s)) {
		if (s->c->smtp_auth_on_smtp_port_screen) {
			/* The seed: whoever tries AUTH on 25 anyway is an attacker; screen, close. */
			if (s->ops->screen_note != NULL)
				s->ops->screen_note(s->ops->arg, SMTP_SCREEN_AUTH_ON_SMTP_PORT);
			smtp_session_log(s,
			                 "auth: client=[%s] tried AUTH on the SMTP port; closing",
			                 s->client_addr);
			smtp_session_screened(s);
			return -1;
		}
		smtp_session_reply(s, 500, "5.5.2", "Command not recognized", 1);
		return -1;
	}
	if (s->helo_kind != SMTP_HELO_EHLO) {
		smtp_session_reply(s, 503, "5.5.1", "Send EHLO first", 1);
		return -1;
	}
	if (s->auth_account != NULL) { /* RFC 4954 4: one successful AUTH per session */
		smtp_session_reply(s, 503, "5.5.1", "Already authenticated", 1);
		return -1;
	}
	if (s->env != NULL) { /* RFC 4954 4: not during a mail transaction */
		smtp_session_reply(s, 503, "5.5.1", "AUTH not permitted during a mail transaction",
		                   1);
		return -1;
	}
	if (!tls_ok(s)) { /* RFC 4954 6: refused before any credentials are looked at */
		smtp_session_reply(s, 538, "5.7.11",
		                   "Encryption required for requested authentication mechanism", 1);
		return -1;
	}
	if (cmd->arg == NULL || cmd->arg_len == 0) {
		smtp_session_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]", 1);
		return -1;
	}
	return 0;
}

/* Ends the exchange: credentials wiped, the line buffer freed, back to commands. */
static void exchange_over(struct smtp_session *s)
{
	if (s->sasl != NULL) {
		sasl_wipe(s->sasl);
		free(s->sasl);
		s->sasl = NULL;
	}
	if (s->auth_line != NULL) {
		explicit_bzero(s->auth_line, s->auth_line_len);
		free(s->auth_line);
		s->auth_line = NULL;
	}
	s->auth_line_len = 0;
	s->auth_cr = 0;
	if (s->state == SMTP_ST_AUTH && !s->auth_skipping)
		s->state = SMTP_ST_CMD;
}

void smtp_auth_end_exchange(struct smtp_session *s)
{
	s->auth_skipping = 0;
	exchange_over(s);
}

/* SASL_DONE or SASL_INVALID: the credentials go to the glue as an AUTH request. */
static void ask_check(struct smtp_session *s, int invalid)
{
	const char *id = invalid ? NULL : sasl_identity(s->sasl);
	size_t plen = 0;
	const char *pw = invalid ? NULL : sasl_password(s->sasl, &plen);
	snprintf(s->auth_tried, sizeof s->auth_tried, "%s", id ? id : "");
	struct smtp_step *st = smtp_session_push_auth(s);
	int r = -1;
	if (st != NULL)
		r = s->ops->auth_check(s->ops->arg, st->id, id, pw, plen);
	exchange_over(s); /* the password is wiped now, whatever the op did */
	if (r != 0) {
		if (st != NULL)
			smtp_session_pop_last(s);
		smtp_session_reply(s, 454, "4.7.0", "Temporary authentication failure", 0);
	}
}

/* Acts on the machine's status after sasl_start or sasl_step. */
static void sasl_next(struct smtp_session *s, enum sasl_status st)
{
	switch (st) {
	case SASL_CONTINUE:
		sasl_reply_send(s, 0);
		s->state = SMTP_ST_AUTH;
		break;
	case SASL_DONE: ask_check(s, 0); break;
	case SASL_INVALID: ask_check(s, 1); break;
	case SASL_FAIL:
	default:
		sasl_reply_send(s, 1);
		exchange_over(s);
		break;
	}
}

void smtp_auth_run_cmd(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	s->sasl = calloc(1, sizeof *s->sasl);
	s->auth_line = malloc(SASL_LINE_MAX);
	if (s->sasl == NULL || s->auth_line == NULL) {
		exchange_over(s);
		smtp_session_reply(s, 454, "4.7.0", "Temporary authentication failure", 0);
		return;
	}
	s->auth_line_len = 0;
	s->auth_cr = 0;
	s->auth_skipping = 0;
	s->auth_skipped = 0;
	enum sasl_status st = sasl_start(s->sasl, cmd->arg, cmd->arg_len);
	enum sasl_mech m = sasl_mech(s->sasl);
	snprintf(s->auth_mech, sizeof s->auth_mech, "%s",
	         m == SASL_MECH_PLAIN   ? "PLAIN"
	         : m == SASL_MECH_LOGIN ? "LOGIN"
	                                : "-");
	sasl_next(s, st);
}

/* ---- continuation lines ---- */

static void line_done(struct smtp_session *s)
{
	if (s->auth_skipping) { /* the over-long line is over: commands again */
		s->auth_skipping = 0;
		s->state = SMTP_ST_CMD;
		return;
	}
	enum sasl_status st = sasl_step(s->sasl, s->auth_line, s->auth_line_len);
	s->auth_line_len = 0;
	sasl_next(s, st);
}

/* A line over SASL_LINE_MAX: 500 5.5.6 at once, then its rest is skipped. */
static void line_too_long(struct smtp_session *s)
{
	sasl_line_too_long(s->sasl);
	sasl_reply_send(s, 1);
	s->auth_skipping = 1;
	s->auth_skipped = 0;
	exchange_over(s);
}

size_t smtp_auth_input(struct smtp_session *s, const char *data, size_t len)
{
	size_t i = 0;
	while (i < len && s->state == SMTP_ST_AUTH) {
		char ch = data[i++];
		if (s->auth_cr) {
			s->auth_cr = 0;
			if (ch != '\n') {
				smtp_session_bare_cr_lf(s);
				break;
			}
			line_done(s);
			break; /* the state may have changed: the caller goes on */
		}
		if (ch == '\r') {
			s->auth_cr = 1;
		} else if (ch == '\n') {
			smtp_session_bare_cr_lf(s);
			break;
		} else if (s->auth_skipping) {
			if (++s->auth_skipped > SMTP_SESSION_SKIP_MAX) {
				char text[320];
				snprintf(text, sizeof text, "%s Line too long, closing connection",
				         s->c->hostname);
				smtp_session_reply(s, 421, "4.7.0", text, 0);
				smtp_session_end(s);
			}
		} else if (s->auth_line_len < SASL_LINE_MAX) {
			s->auth_line[s->auth_line_len++] = ch;
		} else {
			line_too_long(s);
		}
	}
	return i;
}

/* ---- the outcome ---- */

int smtp_auth_store(struct smtp_session *s, const char *account, const char *const *addrs, size_t n)
{
	char *acc = strdup(account ? account : "");
	char **v = calloc(n ? n : 1, sizeof *v);
	size_t k = 0;
	if (acc == NULL || v == NULL)
		goto oom;
	for (; k < n; k++)
		if ((v[k] = strdup(addrs[k])) == NULL)
			goto oom;
	free(s->auth_account);
	s->auth_account = acc;
	s->auth_addrs = v;
	s->n_auth_addrs = n;
	return 0;
oom:
	while (k > 0)
		free(v[--k]);
	free(v);
	free(acc);
	return -1;
}

void smtp_auth_finish(struct smtp_session *s, int status)
{
	char who[SMTP_CMD_LINE_MAX];
	smtp_session_log_safe(who, sizeof who, s->auth_tried, strlen(s->auth_tried));
	if (status == SMTP_AUTH_OK && s->auth_account != NULL) {
		smtp_session_log(s, "auth: client=[%s] mech=%s account=%s", s->client_addr,
		                 s->auth_mech, s->auth_account);
		smtp_session_reply(s, 235, "2.7.0", "Authentication successful", 0);
	} else if (status == SMTP_AUTH_TEMPFAIL || status == SMTP_AUTH_OK) {
		smtp_session_reply(s, 454, "4.7.0", "Temporary authentication failure", 0);
	} else {
		smtp_session_log(s, "auth: client=[%s] mech=%s identity=<%s> failed",
		                 s->client_addr, s->auth_mech, who);
		smtp_session_reply(s, 535, "5.7.8", "Authentication credentials invalid", 1);
	}
	s->auth_tried[0] = '\0';
}

void smtp_auth_free(struct smtp_session *s)
{
	smtp_auth_end_exchange(s);
	for (size_t i = 0; i < s->n_auth_addrs; i++)
		free(s->auth_addrs[i]);
	free(s->auth_addrs);
	s->auth_addrs = NULL;
	s->n_auth_addrs = 0;
	free(s->auth_account);
	s->auth_account = NULL;
	smtp_auth_reset_tx(s);
}

/* ---- the seed's rules ---- */

static enum auth_rules_port rules_port(const struct smtp_session *s)
{
	switch (s->kind) {
	case SMTP_PORT_SUBMISSION: return AUTH_RULES_PORT_SUBMISSION;
	case SMTP_PORT_SMTPS: return AUTH_RULES_PORT_SMTPS;
	case SMTP_PORT_SMTP:
	default: return AUTH_RULES_PORT_SMTP;
	}
}

/* The input every phase shares; mail_from is the transaction's (or p's at MAIL). */
static void rules_input(const struct smtp_session *s, struct auth_rules_input *in,
                        enum auth_rules_phase phase, const char *from, int from_local)
{
	memset(in, 0, sizeof *in);
	in->phase = phase;
	in->port = rules_port(s);
	in->trusted = s->trusted;
	in->in_local_networks = s->in_local_networks;
	in->auth_identity = s->auth_account;
	in->auth_addresses = (const char *const *)s->auth_addrs;
	in->n_auth_addresses = s->n_auth_addrs;
	in->mail_from = from;
	in->mail_from_local = from_local;
	in->gateway_domains = s->c->gateway_domain.n > 0;
}

static int rules_refuse(struct smtp_session *s, const struct auth_rules_verdict *v)
{
	smtp_session_reply(s, v->code, v->enh, v->text, 1);
	return -1;
}

static enum auth_rules_peer peer_of(const struct smtp_session *s)
{
	switch (s->sender_known) {
	case SMTP_SENDER_PEER: return AUTH_RULES_PEER_FOUND;
	case SMTP_SENDER_NOT_ASKED: return AUTH_RULES_PEER_UNKNOWN;
	case SMTP_SENDER_LOCAL:
	case SMTP_SENDER_UNKNOWN:
	default: return AUTH_RULES_PEER_NOTFOUND;
	}
}

/* POP before SMTP's facts about MAIL FROM: a local account (the lookup), logged in lately? */
static enum auth_rules_pop pop_login_of(const struct smtp_session *s, const struct smtp_path *p)
{
	struct lookup_answer a;
	char key[MAILADDR_MAX + 1];
	memset(&a, 0, sizeof a);
	switch (s->ops->lookup(s->ops->arg, p->mailbox, p->mailbox_len, &a)) {
	case LOOKUP_TEMPFAIL: return AUTH_RULES_POP_TEMPFAIL;
	case LOOKUP_NOTFOUND: return AUTH_RULES_POP_NOT_ACCOUNT;
	case LOOKUP_FOUND: break;
	}
	if (a.kind != LOOKUP_KIND_ACCOUNT || mailaddr_key(&p->addr, key, sizeof key) < 0)
		return AUTH_RULES_POP_NOT_ACCOUNT;
	if (s->ops->pop_recent &&
	    s->ops->pop_recent(s->ops->arg, key, s->c->pop_before_smtp_window) == 1)
		return AUTH_RULES_POP_RECENT;
	return AUTH_RULES_POP_STALE;
}

int smtp_auth_rules_mail(struct smtp_session *s, const struct smtp_path *p,
                         enum auth_rules_peer peer)
{
	char from[SMTP_PATH_MAX + 1] = "";
	struct auth_rules_input in;
	struct auth_rules_verdict v;
	if (!p->null)
		snprintf(from, sizeof from, "%.*s", (int)p->mailbox_len, p->mailbox);
	rules_input(s, &in, AUTH_RULES_MAIL, from,
	            !p->null && smtp_policy_is_local(s->c, &p->addr));
	in.sender_on_peer = peer;
	enum auth_rules_result r = auth_rules_check(s->c, &in, &v);
	if (r == AUTH_RULES_ASK_POP) {
		in.pop_login = pop_login_of(s, p);
		r = auth_rules_check(s->c, &in, &v);
	}
	switch (r) {
	case AUTH_RULES_OK: return 0;
	case AUTH_RULES_ASK_PEER: return 1;
	default: return rules_refuse(s, &v);
	}
}

/* 1 if domain[0..len) is one of the gateway_domain lines' domains. */
static int is_gateway(const struct conf *c, const char *domain, size_t len)
{
	for (size_t i = 0; i < c->gateway_domain.n; i++) {
		const char *g = c->gateway_domain.v[i];
		size_t gl = strcspn(g, " \t");
		if (gl == len && strncasecmp(g, domain, len) == 0)
			return 1;
	}
	return 0;
}

static int addr_is_gateway(const struct conf *c, const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at != NULL && is_gateway(c, at + 1, strlen(at + 1));
}

/* MAIL FROM's domain is local (the transaction's sender, a NUL-terminated mailbox). */
static int from_is_local(const struct smtp_session *s, const char *from)
{
	struct mailaddr a;
	return from[0] != '\0' && mailaddr_parse_exact(from, strlen(from), &a) == MAILADDR_OK &&
	       smtp_policy_is_local(s->c, &a);
}

int smtp_auth_rules_rcpt(struct smtp_session *s, const struct smtp_path *p)
{
	struct auth_rules_input in;
	struct auth_rules_verdict v;
	const char *from = s->env->mail_from ? s->env->mail_from : "";
	rules_input(s, &in, AUTH_RULES_RCPT, from, from_is_local(s, from));
	in.sender_on_peer = peer_of(s);
	if (s->c->auth_local_senders_unless_domain_sharing &&
	    in.sender_on_peer == AUTH_RULES_PEER_UNKNOWN)
		in.sender_on_peer =
		        AUTH_RULES_PEER_NOTFOUND; /* MAIL settled it: nobody was asked */
	if (p->postmaster) {
		in.rcpt_local = 1;
	} else {
		in.rcpt_local = smtp_policy_is_local(s->c, &p->addr);
		in.rcpt_gateway = is_gateway(s->c, p->addr.domain, p->addr.domain_len);
	}
	if (auth_rules_check(s->c, &in, &v) == AUTH_RULES_OK)
		return 0;
	return rules_refuse(s, &v);
}

/* The From: field's addresses of the kept header section; -1 when they cannot be known. */
static int from_addresses(struct smtp_session *s, char *buf, size_t bufsz, const char **addrs,
                          size_t max)
{
	size_t pos = 0;
	struct rfc5322_field f;
	int r, n = 0, found = 0;
	if (s->hdr == NULL)
		return s->hdr_done ? 0 : -1; /* an empty header section has no From: */
	while ((r = rfc5322_next_field(s->hdr, s->hdr_len, &pos, &f)) == 1) {
		if (!rfc5322_field_is(&f, "From"))
			continue;
		if (!s->hdr_done && pos >= s->hdr_len)
			return -1; /* cut by SMTP_SESSION_HDR_MAX: maybe not whole */
		if (found++)
			return -1; /* RFC 5322 3.6: one From: field; two are a trick */
		n = rfc5322_addr_list(f.value, f.value_len, buf, bufsz, addrs, max);
		if (n < 0)
			return -1;
	}
	/* A header section cut short may hide a From: further on. */
	return (!s->hdr_done && !found) ? -1 : n;
}

int smtp_auth_rules_data(struct smtp_session *s)
{
	struct auth_rules_input in;
	struct auth_rules_verdict v;
	static const struct auth_rules_verdict unknown = {
	        AUTH_RULES_MISMATCH, 550, "5.7.1",
	        "From: header address not owned by the authenticated user",
	        "auth_match_from_header"};
	char buf[FROM_ADDRS_MAX * 80 + 1024];
	const char *addrs[FROM_ADDRS_MAX];
	if (s->auth_account == NULL || !s->c->auth_match_from_header)
		return 0;
	const char *from = s->env->mail_from ? s->env->mail_from : "";
	rules_input(s, &in, AUTH_RULES_DATA, from, from_is_local(s, from));
	in.all_rcpts_gateway = s->env->n_rcpts > 0;
	for (size_t i = 0; i < s->env->n_rcpts; i++)
		if (!addr_is_gateway(s->c, s->env->rcpts[i].addr))
			in.all_rcpts_gateway = 0;
	int n = from_addresses(s, buf, sizeof buf, addrs, FROM_ADDRS_MAX);
	if (n < 0 && !(s->c->auth_match_exempt_gateway && in.all_rcpts_gateway))
		return rules_refuse(s, &unknown);
	in.from_header = addrs;
	in.n_from_header = n > 0 ? (size_t)n : 0;
	if (auth_rules_check(s->c, &in, &v) == AUTH_RULES_OK)
		return 0;
	return rules_refuse(s, &v);
}

/* ---- MAIL's AUTH= ---- */

int smtp_auth_mail_param(struct smtp_session *s, const char *params, size_t len, char *rest,
                         size_t restsz, size_t *rest_len)
{
	size_t o = 0;
	int seen = 0;
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && params[j] != ' ')
			j++;
		if (j - i > 5 && strncasecmp(params + i, "AUTH=", 5) == 0) {
			char value[SMTP_CMD_LINE_MAX];
			const char *val = params + i + 5;
			size_t vlen = j - i - 5;
			/* RFC 4954 5: xtext, or "<>"; a second one is a syntax error. */
			if (seen++ || (!(vlen == 2 && val[0] == '<' && val[1] == '>') &&
			               xtext_decode(val, vlen, value, sizeof value) < 0)) {
				smtp_session_reply(s, 501, "5.5.4", "Syntax error in parameters",
				                   1);
				return -1;
			}
			/*
			 * RFC 4954 5: a server that does not trust the client treats it as <>;
			 * ours is not kept (delivery does not pass it on).
			 */
		} else if (j > i && o + (j - i) + 1 < restsz) {
			if (o > 0)
				rest[o++] = ' ';
			memcpy(rest + o, params + i, j - i);
			o += j - i;
		}
		i = j;
		while (i < len && params[i] == ' ')
			i++;
	}
	rest[o] = '\0';
	*rest_len = o;
	return 0;
}

/* ---- the header section (the From: rule) ---- */

void smtp_auth_data(struct smtp_session *s, const char *p, size_t n)
{
	if (s->auth_account == NULL || !s->c->auth_match_from_header || s->hdr_done || n == 0)
		return;
	if (s->hdr == NULL) {
		s->hdr = malloc(SMTP_SESSION_HDR_MAX);
		s->hdr_len = 0;
		if (s->hdr == NULL)
			return; /* From: unknown: refused after the dot */
	}
	size_t room = SMTP_SESSION_HDR_MAX - s->hdr_len, take = n < room ? n : room;
	size_t from = s->hdr_len > 3 ? s->hdr_len - 3 : 0;
	memcpy(s->hdr + s->hdr_len, p, take);
	s->hdr_len += take;
	if (s->hdr_len >= 2 && s->hdr[0] == '\r' && s->hdr[1] == '\n') {
		s->hdr_done = 1; /* no header section at all */
		s->hdr_len = 0;
		return;
	}
	for (size_t i = from; i + 4 <= s->hdr_len; i++)
		if (memcmp(s->hdr + i, "\r\n\r\n", 4) == 0) {
			s->hdr_done = 1;
			s->hdr_len = i + 2; /* the fields with their CRLFs */
			return;
		}
}

void smtp_auth_reset_tx(struct smtp_session *s)
{
	free(s->hdr);
	s->hdr = NULL;
	s->hdr_len = 0;
	s->hdr_done = 0;
	s->auth_ask_peer = 0;
}

const char *smtp_auth_protocol(const struct smtp_session *s)
{
	if (s->helo_kind != SMTP_HELO_EHLO)
		return "SMTP";
	if (s->auth_account != NULL)
		return s->tls_active ? "ESMTPSA" : "ESMTPA";
	return s->tls_active ? "ESMTPS" : "ESMTP";
}
