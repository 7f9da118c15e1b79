/* smtp_commands: see smtp_commands.h. */
#include "smtpd/smtp_commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "proto/esmtp_param.h"
#include "proto/mailaddr.h"
#include "smtpd/smtp_auth.h"
#include "smtpd/smtp_policy.h"
#include "smtpd/smtp_session_int.h"

/* ---- checks shared by several rows ---- */

static int check_no_arg(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (cmd->arg != NULL && cmd->arg_len > 0) {
		smtp_session_reply(s, 501, "5.5.4", "Syntax error, no parameters allowed", 1);
		return -1;
	}
	return 0;
}

static int check_need_arg(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (cmd->arg == NULL || cmd->arg_len == 0) {
		smtp_session_reply(s, 501, "5.5.4", "Syntax error, parameter required", 1);
		return -1;
	}
	return 0;
}

/*
 * RFC 2920 3.1: EHLO, DATA, VRFY, EXPN, NOOP (and STARTTLS, AUTH) can only be
 * the last command of a group. A client that said HELO was never offered
 * PIPELINING at all (RFC 2920 3.2: it must wait for each reply), so more input
 * behind any command but QUIT is improper pipelining (a spam-bot trait): refuse
 * and end. After EHLO groups are fine.
 */
static int check_last_in_group(struct smtp_session *s)
{
	if (s->helo_kind != SMTP_HELO_HELO)
		return 0;
	if (s->pending_after == 0 && smtp_lines_pending(&s->lines) == 0)
		return 0;
	smtp_session_reply(s, 554, "5.5.0", "Improper use of SMTP command pipelining", 0);
	smtp_session_end(s);
	return -1;
}

static int check_any(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	return 0;
}

static int check_group_end(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	return check_last_in_group(s);
}

/* ---- HELO / EHLO (RFC 5321 4.1.1.1) ---- */

static int check_helo(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (check_last_in_group(s) < 0 || check_need_arg(s, cmd) < 0)
		return -1;
	/* The seed's "Refuse SMTP Connections from": refuse and end the connection. */
	if (smtp_policy_helo_refused(s->c, cmd->arg, cmd->arg_len)) {
		smtp_session_reply(s, 554, "5.7.1", "Connection refused by HELO policy", 0);
		smtp_session_end(s);
		return -1;
	}
	return 0;
}

static void store_helo(struct smtp_session *s, const struct smtp_cmd *cmd, enum smtp_helo_kind k)
{
	size_t n = cmd->arg_len < sizeof s->helo - 1 ? cmd->arg_len : sizeof s->helo - 1;
	memcpy(s->helo, cmd->arg, n);
	s->helo[n] = '\0';
	s->helo_kind = k;
	/* RFC 5321 4.1.4: HELO/EHLO in a session resets the transaction like RSET. */
	smtp_session_reset_tx(s);
}

static void run_helo(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	store_helo(s, cmd, SMTP_HELO_HELO);
	/* RFC 2034 3: no enhanced code in the HELO/EHLO reply. */
	smtp_session_reply(s, 250, NULL, s->c->hostname, 0);
}

static void run_ehlo(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	char size[48];
	store_helo(s, cmd, SMTP_HELO_EHLO);
	snprintf(size, sizeof size, "SIZE %d", s->c->smtp_max_message_size);
	smtp_session_reply_more(s, 250, s->c->hostname);
	smtp_session_reply_more(s, 250, "PIPELINING");
	smtp_session_reply_more(s, 250, size);
	smtp_session_reply_more(s, 250, "8BITMIME");
	smtp_session_reply_more(s, 250, "ENHANCEDSTATUSCODES");
	if (s->c->smtp_dsn)
		smtp_session_reply_more(s, 250, "DSN");
	if (smtp_auth_offered(s)) /* RFC 4954 3 */
		smtp_session_reply_more(s, 250, "AUTH PLAIN LOGIN");
	if (smtp_tls_offered(s))
		smtp_session_reply_more(s, 250, "STARTTLS");
	smtp_session_reply(s, 250, NULL, "HELP", 0);
}

/* ---- MAIL (RFC 5321 4.1.1.2, RFC 1870, RFC 3461) ---- */

static int check_mail(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (check_last_in_group(s) < 0)
		return -1;
	if (s->helo_kind == SMTP_HELO_NONE) {
		smtp_session_reply(s, 503, "5.5.1", "Send HELO or EHLO first", 1);
		return -1;
	}
	if (s->env != NULL) {
		smtp_session_reply(s, 503, "5.5.1", "Sender already given (nested MAIL)", 1);
		return -1;
	}
	return check_need_arg(s, cmd);
}

/* Replies to a path that did not parse; returns -1 when it replied. */
static int path_error(struct smtp_session *s, enum smtp_path_result r, const char *enh_syntax)
{
	switch (r) {
	case SMTP_PATH_OK: return 0;
	case SMTP_PATH_8BIT:
		smtp_session_reply(s, 553, "5.6.7", "8-bit address without SMTPUTF8 refused", 1);
		return -1;
	case SMTP_PATH_TOO_LONG:
		smtp_session_reply(s, 501, "5.5.4", "Address too long (RFC 5321 4.5.3.1)", 1);
		return -1;
	case SMTP_PATH_SYNTAX:
	default: smtp_session_reply(s, 501, enh_syntax, "Syntax error in address", 1); return -1;
	}
}

static int param_error(struct smtp_session *s, enum esmtp_result r)
{
	if (r == ESMTP_OK)
		return 0;
	if (r == ESMTP_UNKNOWN)
		smtp_session_reply(s, 555, "5.5.4", "Unsupported parameter", 1);
	else
		smtp_session_reply(s, 501, "5.5.4", "Syntax error in parameters", 1);
	return -1;
}

/* Copies span into a NUL-terminated buffer of outsz (the span is bounded by the parsers). */
static void span_copy(char *out, size_t outsz, const char *p, size_t n)
{
	if (n >= outsz)
		n = outsz - 1;
	if (n > 0)
		memcpy(out, p, n);
	out[n] = '\0';
}

static int mail_space_ok(struct smtp_session *s, const struct esmtp_mail_params *mp)
{
	long long fs = s->ops->free_space(s->ops->arg);
	long long need = (long long)s->c->queue_min_free + (mp->has_size ? (long long)mp->size : 0);
	if (fs >= 0 && fs < need) {
		smtp_session_reply(s, 452, "4.3.1", "Insufficient system storage, try later", 1);
		return 0;
	}
	return 1;
}

static int mail_envelope(struct smtp_session *s, const struct smtp_path *p,
                         const struct esmtp_mail_params *mp)
{
	char from[SMTP_PATH_MAX + 1] = "";
	struct envelope *e = envelope_new();
	if (!p->null)
		span_copy(from, sizeof from, p->mailbox, p->mailbox_len);
	if (e == NULL || envelope_set(&e->mail_from, from) < 0 ||
	    (mp->has_envid && envelope_set(&e->envid, mp->envid) < 0)) {
		envelope_free(e);
		smtp_session_reply(s, 451, "4.3.0", "Out of memory, try later", 1);
		return -1;
	}
	e->ret = mp->ret;
	e->body = mp->body;
	s->env = e;
	s->rcpt_attempts_over = 0;
	return 0;
}

static void run_mail(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct smtp_path p;
	struct esmtp_mail_params mp;
	struct smtp_policy_reply r;
	memset(&p, 0, sizeof p);
	memset(&mp, 0, sizeof mp);
	if (path_error(s, smtp_path_parse(cmd->arg, cmd->arg_len, "FROM:", &p), "5.1.7") < 0)
		return;
	if (p.postmaster) {
		smtp_session_reply(s, 501, "5.1.7", "Sender must be a full address or <>", 1);
		return;
	}
	if (p.params != NULL) {
		char rest[SMTP_CMD_LINE_MAX + 1];
		size_t rest_len = 0;
		if (smtp_auth_mail_param(s, p.params, p.params_len, rest, sizeof rest, &rest_len) <
		    0)
			return;
		if (rest_len > 0 &&
		    param_error(s, esmtp_mail_params_parse(rest, rest_len, s->c->smtp_dsn, &mp)) <
		            0)
			return;
	}
	/* RFC 1870 6.1: a declared size over the fixed maximum is a permanent 552. */
	if (mp.has_size && mp.size > (uint64_t)s->c->smtp_max_message_size) {
		smtp_session_reply(s, 552, "5.3.4",
		                   "Message size exceeds fixed maximum message size", 1);
		return;
	}
	if (!mail_space_ok(s, &mp))
		return;
	if (smtp_policy_sender(s->c, &p, &r) < 0) {
		smtp_session_reply(s, r.code, r.enh, r.text, 1);
		return;
	}
	int rules = smtp_auth_rules_mail(s, &p, AUTH_RULES_PEER_UNKNOWN);
	if (rules == 1 && !smtp_session_sender_asked(s, &p))
		rules = smtp_auth_rules_mail(s, &p, AUTH_RULES_PEER_NOTFOUND);
	if (rules < 0)
		return;
	if (mail_envelope(s, &p, &mp) < 0)
		return;
	s->auth_ask_peer = rules == 1; /* decided when the sender's answer comes */
	smtp_session_mail_accepted(s, &p); /* 250 now, or once sender_verify answers */
}

/* ---- RCPT (RFC 5321 4.1.1.3) ---- */

/*
 * RCPT runs in two halves (smtp_session_int.h): its check and run queue it and
 * ask the verifier (smtp_commands_rcpt_target()), and smtp_commands_rcpt_finish()
 * applies it in command order, with the answer. Only the pipelining check is
 * made when the command arrives (it is about how the input came); every other
 * check is made when its turn comes, so it sees the recipients accepted before.
 */
static int check_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	return check_last_in_group(s);
}

static void run_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_session_rcpt(s, cmd);
}

/* One line for smtp_rejected_recipients_log: printable ASCII only (the parsers saw to it). */
static void log_unknown(struct smtp_session *s, const struct smtp_path *p)
{
	char line[1400];
	char to[SMTP_PATH_MAX + 1];
	if (s->c->smtp_rejected_recipients_log == NULL || s->ops->log_rejected_rcpt == NULL)
		return;
	span_copy(to, sizeof to, p->mailbox, p->mailbox_len);
	snprintf(line, sizeof line, "%lld client=[%s] helo=%s from=<%s> to=<%s>",
	         (long long)s->ops->now(s->ops->arg), s->client_addr, s->helo,
	         s->env->mail_from ? s->env->mail_from : "", to);
	for (char *q = line; *q; q++)
		if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
			*q = '?';
	s->ops->log_rejected_rcpt(s->ops->arg, line);
}

static int rcpt_over_limit(struct smtp_session *s)
{
	if (s->env->n_rcpts < (size_t)s->c->smtp_max_recipients)
		return 0;
	/*
	 * RFC 5321 4.5.3.1.10: 452 and the earlier recipients stay. The first
	 * SMTP_SESSION_RCPT_GRACE such refusals are normal client behaviour; past
	 * them each counts as an error, so a RCPT flood ends in 421.
	 */
	s->rcpt_attempts_over++;
	smtp_session_reply(s, 452, "4.5.3", "Too many recipients",
	                   s->rcpt_attempts_over > SMTP_SESSION_RCPT_GRACE);
	return 1;
}

/* Stores the accepted recipient; route (NULL or "": by domain) is the verifier's. */
static void rcpt_store(struct smtp_session *s, const struct smtp_path *p,
                       const struct esmtp_rcpt_params *rp, const char *route)
{
	char to[SMTP_PATH_MAX + 1 + MAILADDR_DOMAIN_MAX + 12];
	if (p->postmaster) {
		/* <Postmaster> (no domain): stored as the postmaster of the first local domain. */
		if (s->c->local_domains.n > 0)
			snprintf(to, sizeof to, "postmaster@%s", s->c->local_domains.v[0]);
		else
			snprintf(to, sizeof to, "postmaster");
	} else {
		span_copy(to, sizeof to, p->mailbox, p->mailbox_len);
	}
	/* the route in the address's allocation: it is stored whole or not at all */
	if (envelope_add_rcpt_routed(s->env, to, rp->has_orcpt ? rp->orcpt : NULL, rp->notify,
	                             route) < 0) {
		smtp_session_reply(s, 451, "4.3.0", "Out of memory, try later", 1);
		return;
	}
	smtp_session_reply(s, 250, "2.1.5", "Recipient OK", 0);
}

/*
 * Parses RCPT's argument into *p and *rp; with quiet nothing is replied (the
 * verdict is made later). Returns 0, or -1 when the command is refused.
 */
static int rcpt_parse(struct smtp_session *s, const struct smtp_cmd *cmd, struct smtp_path *p,
                      struct esmtp_rcpt_params *rp, int quiet)
{
	memset(p, 0, sizeof *p);
	memset(rp, 0, sizeof *rp);
	if (s->env == NULL) {
		if (!quiet)
			smtp_session_reply(s, 503, "5.5.1", "Need MAIL before RCPT", 1);
		return -1;
	}
	if (cmd->arg == NULL || cmd->arg_len == 0)
		return quiet ? -1 : check_need_arg(s, cmd);
	enum smtp_path_result pr = smtp_path_parse(cmd->arg, cmd->arg_len, "TO:", p);
	if (pr != SMTP_PATH_OK)
		return quiet ? -1 : path_error(s, pr, "5.1.3");
	if (p->params == NULL)
		return 0;
	enum esmtp_result er =
	        esmtp_rcpt_params_parse(p->params, p->params_len, s->c->smtp_dsn, rp);
	if (er != ESMTP_OK)
		return quiet ? -1 : param_error(s, er);
	return 0;
}

int smtp_commands_rcpt_target(struct smtp_session *s, const struct smtp_cmd *cmd, const char **mb,
                              size_t *len)
{
	struct smtp_path p;
	struct esmtp_rcpt_params rp;
	struct smtp_policy_reply r;
	if (rcpt_parse(s, cmd, &p, &rp, 1) < 0 ||
	    s->env->n_rcpts >= (size_t)s->c->smtp_max_recipients)
		return 0;
	if (smtp_policy_rcpt_first(s->c, &p, &r) != SMTP_RCPT_VERIFY)
		return 0;
	*mb = p.mailbox;
	*len = p.mailbox_len;
	return 1;
}

void smtp_commands_rcpt_finish(struct smtp_session *s, const struct smtp_cmd *cmd,
                               const struct verify_answer *a)
{
	struct smtp_path p;
	struct esmtp_rcpt_params rp;
	struct smtp_policy_reply r;
	if (rcpt_parse(s, cmd, &p, &rp, 0) < 0)
		return;
	if (!p.null && rcpt_over_limit(s))
		return;
	if (!p.null && smtp_auth_rules_rcpt(s, &p) < 0)
		return;
	enum smtp_rcpt_verdict v = smtp_policy_rcpt_first(s->c, &p, &r);
	if (v == SMTP_RCPT_VERIFY && a == NULL) {
		/* Never: rcpt_target asked the verifier for exactly these. */
		smtp_session_reply(s, 451, "4.3.0", "Local error in processing, try later", 1);
		return;
	}
	/* Authenticated clients may relay (RFC 6409 4.3, RFC 4954 1). */
	if (v == SMTP_RCPT_VERIFY)
		v = smtp_policy_rcpt_answer(s->c, s->trusted || s->auth_account != NULL,
		                            s->sharing_peer, a, &r);
	if (v == SMTP_RCPT_ACCEPT || v == SMTP_RCPT_ACCEPT_RELAY) {
		rcpt_store(s, &p, &rp, a != NULL && a->status == VERIFY_REMOTE ? a->route : NULL);
		return;
	}
	if (v == SMTP_RCPT_UNKNOWN)
		log_unknown(s, &p);
	smtp_session_reply(s, r.code, r.enh, r.text, 1);
	/* Address harvesting (the Dynamic Screen): only a recipient nobody has counts. */
	if (v == SMTP_RCPT_UNKNOWN && a != NULL && a->status == VERIFY_NOTFOUND &&
	    s->state != SMTP_ST_END && s->ops->screen_note != NULL &&
	    s->ops->screen_note(s->ops->arg, SMTP_SCREEN_UNKNOWN_RCPT) == 1)
		smtp_session_screened(s);
}

/* ---- DATA (RFC 5321 4.1.1.4) ---- */

static int check_data(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (s->env == NULL) {
		smtp_session_reply(s, 503, "5.5.1", "Need MAIL command", 1);
		return -1;
	}
	if (s->env->n_rcpts == 0) {
		smtp_session_reply(s, 503, "5.5.1", "Need a valid RCPT command", 1);
		return -1;
	}
	if (check_no_arg(s, cmd) < 0)
		return -1;
	return check_last_in_group(s);
}

static void run_data(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (smtp_session_begin_data(s) < 0)
		return;
	/* RFC 3463 has no class 3: the 354 carries no enhanced code. */
	smtp_session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>", 0);
}

/* ---- the simple ones ---- */

static void run_not_offered(struct smtp_session *s, const struct smtp_cmd *cmd);

static void run_rset(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_session_reset_tx(s);
	smtp_session_reply(s, 250, "2.0.0", "OK", 0);
}

static void run_noop(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_session_reply(s, 250, "2.0.0", "OK", 0);
}

static void run_quit(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	char text[300];
	snprintf(text, sizeof text, "%s closing connection", s->c->hostname);
	smtp_session_reply(s, 221, "2.0.0", text, 0);
	smtp_session_end(s);
}

static void run_help(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	char text[256] = "Commands:";
	size_t n = 0;
	const struct smtp_command *t = smtp_command_table(&n);
	for (size_t i = 0; i < n; i++) {
		if (t[i].run == run_not_offered ||
		    (t[i].verb == SMTP_VERB_AUTH && !smtp_auth_offered(s)) ||
		    (t[i].verb == SMTP_VERB_STARTTLS && !smtp_tls_offered(s)))
			continue;
		if (strlen(text) + strlen(t[i].name) + 2 >= sizeof text)
			break;
		strcat(text, " ");
		strcat(text, t[i].name);
	}
	smtp_session_reply(s, 214, "2.0.0", text, 0);
}

/* VRFY (RFC 5321 3.5.3): 252 unless smtp_vrfy, then the same lookup RCPT uses. */
static void run_vrfy(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	const char *a = cmd->arg;
	size_t len = cmd->arg_len;
	struct mailaddr m;
	struct smtp_policy_reply r;
	if (!s->c->smtp_vrfy) {
		smtp_session_reply(s, 252, "2.5.2",
		                   "Cannot VRFY user, but will accept message and attempt delivery",
		                   0);
		return;
	}
	if (len >= 2 && a[0] == '<' && a[len - 1] == '>') {
		a++;
		len -= 2;
	}
	if (mailaddr_parse_exact(a, len, &m) != MAILADDR_OK) {
		smtp_session_reply(s, 501, "5.1.3", "Syntax error in address", 1);
		return;
	}
	if (!smtp_policy_is_local(s->c, &m)) {
		smtp_session_reply(s, 252, "2.5.2", "Not a local address, will attempt delivery",
		                   0);
		return;
	}
	/* The same answer RCPT would give. */
	if (smtp_policy_mailbox(s->c, s->ops->lookup, s->ops->arg, a, len, &r) == SMTP_RCPT_ACCEPT)
		smtp_session_reply(s, 250, "2.1.5", "Mailbox exists", 0);
	else
		smtp_session_reply(s, r.code, r.enh, r.text, 1);
}

static void run_not_offered(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_session_reply(s, 502, "5.5.1", "Command not offered by this server", 1);
}

static int check_vrfy(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (check_last_in_group(s) < 0)
		return -1;
	return check_need_arg(s, cmd);
}

static int check_rset(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (check_last_in_group(s) < 0)
		return -1;
	return check_no_arg(s, cmd);
}

/* RFC 4954 4: AUTH ends a pipelined group; the rest is smtp_auth.c's. */
static int check_auth(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (check_last_in_group(s) < 0)
		return -1;
	return smtp_auth_check_cmd(s, cmd);
}

static const struct smtp_command commands[] = {
        {"HELO", SMTP_VERB_HELO, check_helo, run_helo},
        {"EHLO", SMTP_VERB_EHLO, check_helo, run_ehlo},
        {"MAIL", SMTP_VERB_MAIL, check_mail, run_mail},
        {"RCPT", SMTP_VERB_RCPT, check_rcpt, run_rcpt},
        {"DATA", SMTP_VERB_DATA, check_data, run_data},
        {"RSET", SMTP_VERB_RSET, check_rset, run_rset},
        {"NOOP", SMTP_VERB_NOOP, check_group_end, run_noop},
        {"QUIT", SMTP_VERB_QUIT, check_any, run_quit},
        {"HELP", SMTP_VERB_HELP, check_any, run_help},
        {"VRFY", SMTP_VERB_VRFY, check_vrfy, run_vrfy},
        {"EXPN", SMTP_VERB_EXPN, check_group_end, run_not_offered},
        {"STARTTLS", SMTP_VERB_STARTTLS, smtp_tls_check, smtp_tls_run},
        {"AUTH", SMTP_VERB_AUTH, check_auth, smtp_auth_run_cmd},
        {"BDAT", SMTP_VERB_BDAT, check_any, run_not_offered},
};

const struct smtp_command *smtp_command_find(enum smtp_verb verb)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (commands[i].verb == verb)
			return &commands[i];
	return NULL;
}

const struct smtp_command *smtp_command_table(size_t *n)
{
	*n = sizeof commands / sizeof commands[0];
	return commands;
}
