/*
 * smtp_session: see smtp_session.h. The input loop frames octets with
 * smtp_lines (only CRLF ends a line: the SMTP smuggling defence), dispatches
 * command lines through the table in smtp_commands.c, and in DATA streams the
 * unstuffed message octets to the queue through ops. Nothing here blocks,
 * sleeps or reads a clock except through ops.
 */
#include "smtpd/smtp_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "proto/rfc5322.h"
#include "proto/mailaddr.h"
#include "proto/sasl.h"
#include "proto/smtp_reply.h"
#include "smtpd/smtp_auth.h"
#include "smtpd/smtp_commands.h"
#include "smtpd/smtp_policy.h"
#include "smtpd/smtp_session_int.h"
#include "util/netaddr.h"
#include "util/strutil.h"

/* Consecutive reader calls that make no progress before the loop stops (a safety net). */
#define STALL_MAX 4
/* Output kept free per outstanding RCPT (its reply, and a reject's 421, are shorter). */
#define STEP_REPLY_ROOM 96

static struct smtp_step *step_push(struct smtp_session *s, enum smtp_request_kind kind);

/* ---- output ---- */

static size_t out_pending(const struct smtp_session *s)
{
	return s->out_len - s->out_off;
}

/* Appends octets; grows the buffer up to SMTP_SESSION_OUT_MAX, drops beyond (never reached). */
static void out_append(struct smtp_session *s, const char *p, size_t n)
{
	if (s->out_off > 0 && s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
	if (s->out_len + n > s->out_cap) {
		if (s->out_off > 0) {
			memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
			s->out_len -= s->out_off;
			s->out_off = 0;
		}
		size_t cap = s->out_cap ? s->out_cap : 512;
		while (cap < s->out_len + n && cap < SMTP_SESSION_OUT_MAX)
			cap *= 2;
		if (cap > SMTP_SESSION_OUT_MAX)
			cap = SMTP_SESSION_OUT_MAX;
		if (cap < s->out_len + n)
			return;
		if (cap > s->out_cap) {
			char *nb = realloc(s->out, cap);
			if (nb == NULL)
				return;
			s->out = nb;
			s->out_cap = cap;
		}
	}
	memcpy(s->out + s->out_len, p, n);
	s->out_len += n;
}

static void reply_line(struct smtp_session *s, int code, const char *enh, const char *text,
                       int more)
{
	char line[SMTP_CMD_LINE_MAX + 64];
	int n = smtp_reply_format(line, sizeof line, code, enh, text, more);
	if (n < 0)
		n = smtp_reply_format(line, sizeof line, code, enh, "(reply too long)", more);
	if (n > 0)
		out_append(s, line, (size_t)n);
}

void smtp_session_reply_raw(struct smtp_session *s, const char *line, size_t len)
{
	out_append(s, line, len);
}

void smtp_session_reply_more(struct smtp_session *s, int code, const char *text)
{
	reply_line(s, code, NULL, text, 1);
}

void smtp_session_reply(struct smtp_session *s, int code, const char *enh, const char *text,
                        int count_error)
{
	reply_line(s, code, enh, text, 0);
	if (s->cmd_reply_code == 0) { /* the command's own reply, not a 421 after it */
		s->cmd_reply_code = code;
		s->cmd_log = count_error;
		snprintf(s->cmd_reply, sizeof s->cmd_reply, "%d%s%s %s", code, enh ? " " : "",
		         enh ? enh : "", text);
	}
	if (!count_error || code < 400 || s->state == SMTP_ST_END)
		return;
	/* hostile-inputs.md "Too many errors": a session that keeps failing is cut off. */
	if (++s->errors > (unsigned)s->c->smtp_max_errors) {
		char text421[320];
		snprintf(text421, sizeof text421, "%s Too many errors, closing connection",
		         s->c->hostname);
		reply_line(s, 421, "4.7.0", text421, 0);
		smtp_session_end(s);
	}
}

/* ---- the log (smtp_session.h says which lines) ---- */

/* A client-supplied span for a log line: octets outside printable ASCII become '?'. */
void smtp_session_log_safe(char *out, size_t outsz, const char *p, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < outsz; i++) {
		unsigned char ch = (unsigned char)p[i];
		out[o++] = (ch < 0x20 || ch > 0x7e) ? '?' : (char)ch;
	}
	out[o] = '\0';
}

#define log_safe smtp_session_log_safe
#define log_printf smtp_session_log

void smtp_session_log(struct smtp_session *s, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	if (s->ops->log_line == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	s->ops->log_line(s->ops->arg, line);
}

/* The transaction's sender for a log line ("" for <>, and when there is no transaction). */
static void log_sender(const struct smtp_session *s, char *out, size_t outsz)
{
	const char *f = s->env != NULL ? s->env->mail_from : "";
	log_safe(out, outsz, f, strlen(f));
}

/* The accepted message, after its 250 (Postfix's smtpd/cleanup/qmgr lines in one). */
static void log_accepted(struct smtp_session *s, const char *id)
{
	char helo[SMTP_CMD_LINE_MAX + 1], from[SMTP_PATH_MAX + 1], msgid[SMTP_LINES_MSGID_MAX + 1];
	const char *m = s->lines.msgid;
	size_t n = s->lines.msgid_len;
	while (n > 0 && (m[0] == ' ' || m[0] == '\t'))
		m++, n--;
	while (n > 0 && (m[n - 1] == ' ' || m[n - 1] == '\t'))
		n--;
	log_safe(helo, sizeof helo, s->helo, strlen(s->helo));
	log_sender(s, from, sizeof from);
	log_safe(msgid, sizeof msgid, m, n);
	log_printf(s, "%s: client=[%s] helo=<%s> from=<%s> size=%llu nrcpt=%zu%s%s%s%s%s", id,
	           s->client_addr, helo, from, (unsigned long long)s->received_len + s->data_octets,
	           s->env->n_rcpts, n > 0 ? " msgid=" : "", msgid,
	           s->sender_known == SMTP_SENDER_PEER ? " sender=peer" : "",
	           s->auth_account ? " auth=" : "", s->auth_account ? s->auth_account : "");
}

/*
 * The address a MAIL ("FROM:") or RCPT ("TO:") command named, for its reject line:
 * the parsed mailbox ("" for <>), else what stands between its '<' and '>', else
 * the argument after the prefix.
 */
static void log_address(const struct smtp_cmd *cmd, const char *prefix, char *out, size_t outsz)
{
	struct smtp_path p;
	const char *a = cmd->arg ? cmd->arg : "";
	size_t n = cmd->arg ? cmd->arg_len : 0, plen = strlen(prefix);
	memset(&p, 0, sizeof p);
	if (smtp_path_parse(a, n, prefix, &p) == SMTP_PATH_OK) {
		log_safe(out, outsz, p.null ? "" : p.mailbox, p.null ? 0 : p.mailbox_len);
		return;
	}
	if (n >= plen && ascii_equal_ci(a, plen, prefix)) {
		a += plen;
		n -= plen;
	}
	while (n > 0 && *a == ' ')
		a++, n--;
	const char *lt = memchr(a, '<', n);
	const char *gt = lt ? memchr(lt, '>', n - (size_t)(lt - a)) : NULL;
	if (lt && gt)
		log_safe(out, outsz, lt + 1, (size_t)(gt - lt - 1));
	else
		log_safe(out, outsz, a, n);
}

/* Forgets the reply recorded for the last command (before the next one runs). */
static void reply_record_reset(struct smtp_session *s)
{
	s->cmd_reply_code = 0;
	s->cmd_log = 0;
	s->cmd_reply[0] = '\0';
}

/*
 * One "reject:" line for what was refused (verb "MAIL", "RCPT" or "DATA"): the
 * reply recorded by smtp_session_reply(), then the addresses (tail).
 */
static void log_refused(struct smtp_session *s, const char *verb, const char *tail)
{
	char helo[SMTP_CMD_LINE_MAX + 1];
	log_safe(helo, sizeof helo, s->helo, strlen(s->helo));
	log_printf(s, "reject: %s from [%s] helo=<%s>: %s; %s", verb, s->client_addr, helo,
	           s->cmd_reply, tail);
}

/* A message refused after its dot. */
static void log_refused_data(struct smtp_session *s)
{
	char from[SMTP_PATH_MAX + 1], tail[SMTP_PATH_MAX + 64];
	log_sender(s, from, sizeof from);
	snprintf(tail, sizeof tail, "from=<%s> nrcpt=%zu", from, s->env ? s->env->n_rcpts : 0);
	log_refused(s, "DATA", tail);
}

/*
 * After a MAIL or RCPT command ran: its refusal, if it was one worth a line;
 * why is the verifier's reason when other servers decided it (or NULL).
 */
static void log_command(struct smtp_session *s, const struct smtp_cmd *cmd, const char *why)
{
	char addr[SMTP_CMD_LINE_MAX + 1], from[SMTP_PATH_MAX + 1], tail[2 * SMTP_CMD_LINE_MAX];
	char reason[VERIFY_REASON_MAX + 4] = "";
	if (s->cmd_reply_code < 400 || (!s->cmd_log && s->state != SMTP_ST_END))
		return;
	if (cmd->verb == SMTP_VERB_MAIL) {
		/* No transaction began: the sender is the one the command named. */
		log_address(cmd, "FROM:", addr, sizeof addr);
		snprintf(tail, sizeof tail, "from=<%s>", addr);
		log_refused(s, "MAIL", tail);
	} else if (cmd->verb == SMTP_VERB_RCPT) {
		log_address(cmd, "TO:", addr, sizeof addr);
		log_sender(s, from, sizeof from);
		if (why != NULL && why[0] != '\0') {
			char w[VERIFY_REASON_MAX];
			log_safe(w, sizeof w, why, strnlen(why, VERIFY_REASON_MAX - 1));
			snprintf(reason, sizeof reason, " (%s)", w);
		}
		if (s->env != NULL)
			snprintf(tail, sizeof tail, "from=<%s> to=<%s>%s", from, addr, reason);
		else
			snprintf(tail, sizeof tail, "to=<%s>", addr); /* RCPT before MAIL */
		log_refused(s, "RCPT", tail);
	}
}

/* ---- transaction ---- */

/*
 * The one reply for a message the queue could not take (begin, write or commit
 * failed, err is the errno): a full disk (ENOSPC, EDQUOT) is 452 4.3.1, anything
 * else 451 4.3.0; both temporary (RFC 5321 4.2.5: the client retries).
 */
static void reply_storage_error(struct smtp_session *s, int err)
{
	if (err == ENOSPC || err == EDQUOT)
		smtp_session_reply(s, 452, "4.3.1", "Insufficient system storage", 1);
	else
		smtp_session_reply(s, 451, "4.3.0", "Local error in processing, try later", 1);
}

static void abort_message(struct smtp_session *s)
{
	if (s->msg != NULL) {
		s->ops->msg_abort(s->ops->arg, s->msg);
		s->msg = NULL;
	}
}

void smtp_session_reset_tx(struct smtp_session *s)
{
	abort_message(s);
	envelope_free(s->env);
	s->env = NULL;
	s->rcpt_attempts_over = 0;
	s->data_octets = 0;
	s->data_too_big = 0;
	s->data_write_errno = 0;
	s->sender_known = SMTP_SENDER_NOT_ASKED;
	s->sender_peer[0] = '\0';
	smtp_auth_reset_tx(s);
}

static void steps_drop(struct smtp_session *s);

void smtp_session_end(struct smtp_session *s)
{
	if (s->state == SMTP_ST_DATA)
		abort_message(s);
	smtp_auth_end_exchange(s); /* an exchange under way: its credentials are wiped */
	s->state = SMTP_ST_END;
	/* Nothing more is output: the answers still owed are of no use (a commit stays). */
	steps_drop(s);
	s->held.ev = SMTP_LINES_NEED_MORE;
}

/* Stores message octets unless the message is already refused (size) or failed (disk). */
static void data_store(struct smtp_session *s, const char *p, size_t n)
{
	if (s->msg == NULL || n == 0)
		return;
	if (s->ops->msg_write(s->ops->arg, s->msg, p, n) < 0) {
		s->data_write_errno = errno ? errno : EIO;
		abort_message(s);
	}
}

/*
 * HELO names are client-supplied: every octet outside [A-Za-z0-9.-_:[]] becomes
 * '_', so a hostile name can never fold, end or forge a header field
 * (hostile-inputs.md "Received headers built from client-supplied HELO names").
 */
static void header_safe(char *out, size_t outsz, const char *in)
{
	size_t i = 0;
	for (; in[i] != '\0' && i + 1 < outsz; i++) {
		unsigned char ch = (unsigned char)in[i];
		int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		         (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' ||
		         ch == ':' || ch == '[' || ch == ']';
		out[i] = ok ? (char)ch : '_';
	}
	out[i] = '\0';
}

/* The authenticated account for Received: only octets that cannot end a comment. */
static void account_safe(char *out, size_t outsz, const char *in)
{
	size_t i = 0;
	for (; in[i] != '\0' && i + 1 < outsz; i++) {
		unsigned char ch = (unsigned char)in[i];
		int bad = ch <= 0x20 || ch >= 0x7f || ch == '(' || ch == ')' || ch == '\\';
		out[i] = bad ? '_' : (char)ch;
	}
	out[i] = '\0';
}

/*
 * RFC 5321 4.4 trace field, RFC 3848 protocol names (ESMTP, ESMTPA, ESMTPS,
 * ESMTPSA):
 *   Received: from HELO ([addr])[ (authenticated as ACCOUNT)]
 *           (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)   (inside TLS)
 *           by hostname (sharemail) with ESMTP id ID;
 *           date
 * The id is the queue id (queue_msg_begin chose it), as in the log lines. The
 * account appears only with smtp_received_auth.
 */
static int received_field(struct smtp_session *s, char *out, size_t outsz)
{
	char helo[SMTP_CMD_LINE_MAX + 1], addr[sizeof s->client_addr], host[300], date[64];
	char who[SMTP_CMD_LINE_MAX + 32] = "";
	if (s->auth_account != NULL && s->c->smtp_received_auth) {
		char acc[SMTP_CMD_LINE_MAX];
		account_safe(acc, sizeof acc, s->auth_account);
		snprintf(who, sizeof who, " (authenticated as %s)", acc);
	}
	int64_t now = s->ops->now(s->ops->arg);
	header_safe(helo, sizeof helo, s->helo);
	header_safe(addr, sizeof addr, s->client_addr);
	header_safe(host, sizeof host, s->c->hostname);
	if (rfc5322_date_format(now, date, sizeof date) < 0)
		snprintf(date, sizeof date, "Thu, 1 Jan 1970 00:00:00 +0000");
	char tls[2 * SMTP_SESSION_TLS_NAME_MAX + 40];
	smtp_tls_received(s, tls, sizeof tls);
	int n = snprintf(out, outsz,
	                 "Received: from %s ([%s%s])%s\r\n%s\tby %s (sharemail) with %s id %s;\r\n"
	                 "\t%s\r\n",
	                 helo, strchr(addr, ':') ? "IPv6:" : "", addr, who, tls, host,
	                 smtp_auth_protocol(s), s->queue_id, date);
	return (n < 0 || (size_t)n >= outsz) ? -1 : n;
}

int smtp_session_begin_data(struct smtp_session *s)
{
	char field[SMTP_CMD_LINE_MAX * 2 + 256];
	errno = 0;
	s->queue_id[0] = '\0';
	s->msg = s->ops->msg_begin(s->ops->arg, s->queue_id, sizeof s->queue_id);
	if (s->msg == NULL) {
		reply_storage_error(s, errno);
		return -1;
	}
	s->queue_id[sizeof s->queue_id - 1] = '\0';
	s->received_len = 0;
	s->data_octets = 0;
	s->data_too_big = 0;
	s->data_write_errno = 0;
	int n = received_field(s, field, sizeof field);
	if (n > 0) {
		data_store(s, field, (size_t)n);
		s->received_len = (size_t)n;
	}
	smtp_lines_begin_data(&s->lines, (size_t)s->c->smtp_max_line_length);
	s->state = SMTP_ST_DATA;
	return 0;
}

/* ---- DATA octets and the final dot ---- */

static void data_chunk(struct smtp_session *s, const char *p, size_t n)
{
	s->data_octets += n;
	unsigned long long drop = (unsigned long long)s->c->smtp_drop_connection_size;
	if (drop > 0 && s->data_octets > drop) {
		/* The seed's "drop connection if transmission exceeds": no waiting for the dot. */
		smtp_session_reply(s, 552, "5.3.4", "Message too big, closing connection", 0);
		smtp_session_reset_tx(s);
		smtp_session_end(s);
		return;
	}
	if (s->data_octets > (unsigned long long)s->c->smtp_max_message_size) {
		/* RFC 1870 6.3: keep reading to the dot, then 552; store nothing more. */
		s->data_too_big = 1;
		abort_message(s);
		return;
	}
	smtp_auth_data(s, p, n);
	data_store(s, p, n);
}

/* The reply for a message refused at the dot, or 0 when it may be queued. */
static int data_refusal(struct smtp_session *s)
{
	if (s->data_too_big) {
		smtp_session_reply(s, 552, "5.3.4",
		                   "Message size exceeds fixed maximum message size", 1);
		return -1;
	}
	if (s->data_write_errno != 0) {
		reply_storage_error(s, s->data_write_errno);
		return -1;
	}
	if (s->lines.text_line_too_long) {
		/* Documented policy: a text line over smtp_max_line_length is refused, never cut. */
		smtp_session_reply(s, 550, "5.6.0", "Text line too long (RFC 5321 4.5.3.1.6)", 1);
		return -1;
	}
	if (s->lines.received_headers > (unsigned)s->c->smtp_max_received_headers) {
		smtp_session_reply(s, 554, "5.4.6", "Too many Received headers: mail loop", 1);
		return -1;
	}
	if (s->msg == NULL) {
		reply_storage_error(s, EIO);
		return -1;
	}
	return 0;
}

static void end_of_data(struct smtp_session *s)
{
	s->state = SMTP_ST_CMD;
	reply_record_reset(s);
	if (data_refusal(s) < 0 || smtp_auth_rules_data(s) < 0) {
		log_refused_data(s);
		smtp_session_reset_tx(s); /* aborts the message: nothing is queued */
		return;
	}
	struct envelope *e = s->env;
	if (envelope_set(&e->helo, s->helo) < 0 ||
	    envelope_set(&e->client_addr, s->client_addr) < 0) {
		smtp_session_reply(s, 451, "4.3.0", "Out of memory, try later", 1);
		smtp_session_reset_tx(s);
		return;
	}
	e->received_at = s->ops->now(s->ops->arg);
	e->trusted = s->trusted;
	/* From here the message belongs to the queue; no 250 before it says durable. */
	struct queue_msg *m = s->msg;
	s->msg = NULL;
	struct smtp_step *st = step_push(s, SMTP_REQUEST_COMMIT);
	if (st == NULL) {
		/* Cannot wait for it: the queue still commits; the client retries (a duplicate). */
		s->ops->msg_commit(s->ops->arg, ++s->next_id, m, e);
		smtp_session_reply(s, 451, "4.3.0", "Out of memory, try later", 1);
		smtp_session_reset_tx(s);
		return;
	}
	st->id = ++s->next_id;
	st->open = 1;
	s->n_open++;
	s->ops->msg_commit(s->ops->arg, st->id, m, e);
}

/* The commit's outcome, when its turn comes (at once: nothing precedes a commit). */
static void commit_finish(struct smtp_session *s, int ok, const char *id)
{
	char text[128];
	reply_record_reset(s);
	if (ok) {
		if (id == NULL || *id == '\0')
			id = s->queue_id;
		snprintf(text, sizeof text, "OK queued as %s", id);
		smtp_session_reply(s, 250, "2.0.0", text, 0);
		log_accepted(s, id);
	} else {
		/* The queue says only that it failed: a spool below queue_min_free explains it. */
		long long fs = s->ops->free_space(s->ops->arg);
		reply_storage_error(s,
		                    fs >= 0 && fs < (long long)s->c->queue_min_free ? ENOSPC : EIO);
	}
	/* RFC 5321 4.1.1.4: the transaction is over either way. */
	smtp_session_reset_tx(s);
}

/* ---- requests: the steps (smtp_session_int.h) ---- */

static struct smtp_step *step_at(struct smtp_session *s, size_t i)
{
	return &s->steps[(s->steps_head + i) % s->steps_cap];
}

/* Room for one more step (the ring grows up to the pipelining bound). */
static int steps_grow(struct smtp_session *s)
{
	if (s->n_steps < s->steps_cap)
		return 0;
	size_t cap = s->steps_cap ? s->steps_cap * 2 : 8;
	struct smtp_step *nv = malloc(cap * sizeof *nv);
	if (nv == NULL)
		return -1;
	for (size_t i = 0; i < s->n_steps; i++)
		nv[i] = *step_at(s, i);
	free(s->steps);
	s->steps = nv;
	s->steps_cap = cap;
	s->steps_head = 0;
	return 0;
}

static struct smtp_step *step_push(struct smtp_session *s, enum smtp_request_kind kind)
{
	if (steps_grow(s) < 0)
		return NULL;
	struct smtp_step *st = step_at(s, s->n_steps);
	memset(st, 0, sizeof *st);
	st->kind = kind;
	s->n_steps++;
	return st;
}

/* Takes the first step off the queue into *out (the caller frees out->arg). */
static void step_pop(struct smtp_session *s, struct smtp_step *out)
{
	*out = *step_at(s, 0);
	s->steps_head = (s->steps_head + 1) % s->steps_cap;
	s->n_steps--;
	if (out->open)
		s->n_open--;
}

/* The open step with this id and kind, or NULL. */
static struct smtp_step *step_find(struct smtp_session *s, uint64_t id, enum smtp_request_kind kind)
{
	for (size_t i = 0; i < s->n_steps && id != 0; i++) {
		struct smtp_step *st = step_at(s, i);
		if (st->id == id)
			return st->open && st->kind == kind ? st : NULL;
	}
	return NULL;
}

/*
 * Forgets every step but an open commit (the queue still owes its outcome),
 * cancelling open RCPT and sender requests.
 */
static void steps_drop(struct smtp_session *s)
{
	size_t n = s->n_steps, kept = 0;
	for (size_t i = 0; i < n; i++) {
		struct smtp_step st;
		step_pop(s, &st);
		if (st.kind == SMTP_REQUEST_COMMIT && st.open) {
			*step_at(s, s->n_steps) = st;
			s->n_steps++;
			s->n_open++;
			kept++;
			continue;
		}
		if (st.open && s->ops->request_cancel != NULL)
			s->ops->request_cancel(s->ops->arg, st.id);
		free(st.arg);
	}
	(void)kept;
}

/* How many RCPTs may be outstanding at once. */
static size_t pipeline_bound(const struct smtp_session *s)
{
	size_t n = (size_t)s->c->smtp_max_recipients;
	return n < SMTP_SESSION_PIPELINE_MAX ? n : SMTP_SESSION_PIPELINE_MAX;
}

static void command_line(struct smtp_session *s, const char *line, size_t len);

/*
 * MAIL's rules that waited for the Domain Sharing answer on the sender
 * (auth_local_senders_unless_domain_sharing). Returns 0, or -1 when MAIL is
 * refused now (replied, logged, the transaction forgotten).
 */
static int sender_rules(struct smtp_session *s)
{
	struct smtp_path p;
	enum auth_rules_peer peer = AUTH_RULES_PEER_NOTFOUND;
	if (!s->auth_ask_peer)
		return 0;
	s->auth_ask_peer = 0;
	memset(&p, 0, sizeof p);
	p.mailbox = s->env->mail_from;
	p.mailbox_len = strlen(s->env->mail_from);
	if (mailaddr_parse_exact(p.mailbox, p.mailbox_len, &p.addr) != MAILADDR_OK)
		return 0; /* never: MAIL parsed it */
	if (s->sender_known == SMTP_SENDER_PEER)
		peer = AUTH_RULES_PEER_FOUND;
	if (smtp_auth_rules_mail(s, &p, peer) == 0)
		return 0;
	char from[SMTP_PATH_MAX + 1], tail[SMTP_PATH_MAX + 16];
	log_sender(s, from, sizeof from);
	snprintf(tail, sizeof tail, "from=<%s>", from);
	log_refused(s, "MAIL", tail);
	s->cmd_log = 0; /* logged: a MAIL answered at once is not logged again */
	smtp_session_reset_tx(s);
	return -1;
}

/* Applies one step taken off the queue (its turn has come, its answer is in). */
static void step_finish(struct smtp_session *s, struct smtp_step *st)
{
	struct smtp_cmd cmd = {SMTP_VERB_RCPT, st->arg, st->arg_len};
	const struct verify_answer *a = st->id != 0 ? &st->answer : NULL;
	switch (st->kind) {
	case SMTP_REQUEST_COMMIT: commit_finish(s, st->ok, st->qid); break;
	case SMTP_REQUEST_SENDER:
		reply_record_reset(s);
		if (s->env != NULL && sender_rules(s) == 0)
			smtp_session_reply(s, 250, "2.1.0", "Sender OK", 0);
		break;
	case SMTP_REQUEST_AUTH:
		reply_record_reset(s);
		smtp_auth_finish(s, st->ok);
		break;
	case SMTP_REQUEST_TLS: break; /* smtp_session_tls_done() applies it */
	case SMTP_REQUEST_RCPT:
	default:
		reply_record_reset(s);
		smtp_commands_rcpt_finish(s, &cmd, a);
		/* Only a refusal the other servers decided names them. */
		log_command(s, &cmd, a != NULL && a->servers_asked ? a->reason : NULL);
		break;
	}
}

/* Runs the framing event that waited for the requests before it. */
static void held_run(struct smtp_session *s)
{
	struct smtp_held h = s->held;
	s->held.ev = SMTP_LINES_NEED_MORE;
	size_t saved = s->pending_after;
	s->pending_after = h.pending_after;
	if (h.ev == SMTP_LINES_LINE)
		command_line(s, h.line, h.len);
	else if (h.ev == SMTP_LINES_TOO_LONG)
		smtp_session_reply(s, 500, "5.5.2", "Line too long (RFC 5321 4.5.3.1.4)", 1);
	else if (h.ev == SMTP_LINES_BARE_LF_CR)
		smtp_session_bare_cr_lf(s);
	s->pending_after = saved;
}

/*
 * Applies the steps whose turn has come (the first ones, answered), in order;
 * once none is left, runs the command that waited for them.
 */
static void steps_settle(struct smtp_session *s)
{
	while (s->n_steps > 0 && !step_at(s, 0)->open && s->state != SMTP_ST_END) {
		struct smtp_step st;
		step_pop(s, &st);
		step_finish(s, &st);
		free(st.arg);
	}
	if (s->n_steps == 0 && s->held.ev != SMTP_LINES_NEED_MORE && s->state == SMTP_ST_CMD)
		held_run(s);
}

void smtp_session_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	const char *mb = NULL;
	size_t len = 0;
	struct smtp_step *st = step_push(s, SMTP_REQUEST_RCPT);
	if (st == NULL || (cmd->arg != NULL && (st->arg = malloc(cmd->arg_len + 1)) == NULL)) {
		if (st != NULL)
			s->n_steps--; /* the one just pushed */
		smtp_session_reply(s, 451, "4.3.0", "Out of memory, try later", 1);
		return;
	}
	if (cmd->arg != NULL) {
		memcpy(st->arg, cmd->arg, cmd->arg_len);
		st->arg[cmd->arg_len] = '\0';
		st->arg_len = cmd->arg_len;
	}
	struct smtp_cmd own = {SMTP_VERB_RCPT, st->arg, st->arg_len};
	if (smtp_commands_rcpt_target(s, &own, &mb, &len)) {
		const char *from = s->env->mail_from ? s->env->mail_from : "";
		st->id = ++s->next_id;
		uint64_t id = st->id;
		struct verify_answer a;
		memset(&a, 0, sizeof a);
		int r = s->ops->rcpt_verify(s->ops->arg, id, mb, len, from, strlen(from), &a);
		(void)id; /* st stays valid: nothing is pushed during the call */
		if (r == 1) {
			st->open = 1;
			s->n_open++;
		} else {
			st->answer = a;
		}
	}
	steps_settle(s);
}

void smtp_session_rcpt_done(struct smtp_session *s, uint64_t id, const struct verify_answer *a)
{
	struct smtp_step *st = step_find(s, id, SMTP_REQUEST_RCPT);
	if (st == NULL || a == NULL)
		return;
	st->answer = *a;
	st->open = 0;
	s->n_open--;
	steps_settle(s);
}

/* Records sender_verify's answer on the transaction's sender. */
static void sender_record(struct smtp_session *s, const struct verify_answer *a)
{
	s->sender_peer[0] = '\0';
	switch (a->status) {
	case VERIFY_LOCAL: s->sender_known = SMTP_SENDER_LOCAL; break;
	case VERIFY_REMOTE:
		s->sender_known = SMTP_SENDER_PEER;
		snprintf(s->sender_peer, sizeof s->sender_peer, "%.*s",
		         (int)sizeof s->sender_peer - 1, a->route[0] ? a->route : a->reason);
		break;
	default: s->sender_known = SMTP_SENDER_UNKNOWN; break; /* TEMPFAIL too, for now */
	}
}

int smtp_session_sender_asked(const struct smtp_session *s, const struct smtp_path *p)
{
	const struct conf *c = s->c;
	return c->domain_sharing && c->domain_sharing_query_senders && !p->null &&
	       s->ops->sender_verify != NULL && smtp_policy_is_local(c, &p->addr);
}

void smtp_session_mail_accepted(struct smtp_session *s, const struct smtp_path *p)
{
	s->sender_known = SMTP_SENDER_NOT_ASKED;
	if (!smtp_session_sender_asked(s, p)) {
		smtp_session_reply(s, 250, "2.1.0", "Sender OK", 0);
		return;
	}
	struct smtp_step *st = step_push(s, SMTP_REQUEST_SENDER);
	if (st == NULL) {
		smtp_session_reply(s, 250, "2.1.0", "Sender OK", 0); /* not known: unknown */
		return;
	}
	st->id = ++s->next_id;
	uint64_t id = st->id;
	struct verify_answer a;
	memset(&a, 0, sizeof a);
	if (s->ops->sender_verify(s->ops->arg, id, p->mailbox, p->mailbox_len, &a) == 1) {
		st->open = 1;
		s->n_open++;
		return;
	}
	sender_record(s, &a);
	st->answer = a; /* answered now: applied at once, in its turn */
	steps_settle(s);
}

void smtp_session_sender_done(struct smtp_session *s, uint64_t id, const struct verify_answer *a)
{
	struct smtp_step *st = step_find(s, id, SMTP_REQUEST_SENDER);
	if (st == NULL || a == NULL)
		return;
	sender_record(s, a);
	st->open = 0;
	s->n_open--;
	steps_settle(s);
}

void smtp_session_commit_done(struct smtp_session *s, uint64_t id, int ok, const char *qid)
{
	struct smtp_step *st = step_find(s, id, SMTP_REQUEST_COMMIT);
	if (st == NULL)
		return;
	st->ok = ok;
	snprintf(st->qid, sizeof st->qid, "%s", qid ? qid : "");
	st->open = 0;
	s->n_open--;
	if (s->state == SMTP_ST_END) { /* ended meanwhile: nothing more is said */
		struct smtp_step done;
		step_pop(s, &done);
		smtp_session_reset_tx(s);
		return;
	}
	steps_settle(s);
}

struct smtp_step *smtp_session_push_auth(struct smtp_session *s)
{
	struct smtp_step *st = step_push(s, SMTP_REQUEST_AUTH);
	if (st == NULL)
		return NULL;
	st->id = ++s->next_id;
	st->open = 1;
	s->n_open++;
	return st;
}

void smtp_session_pop_last(struct smtp_session *s)
{
	struct smtp_step *st = step_at(s, s->n_steps - 1);
	if (st->open)
		s->n_open--;
	free(st->arg);
	s->n_steps--;
}

void smtp_session_auth_done(struct smtp_session *s, uint64_t id, enum smtp_auth_status st,
                            const char *account, const char *const *addresses, size_t n)
{
	struct smtp_step *step = step_find(s, id, SMTP_REQUEST_AUTH);
	if (step == NULL)
		return;
	if (st == SMTP_AUTH_OK && (account == NULL || account[0] == '\0' ||
	                           smtp_auth_store(s, account, addresses, n) < 0))
		st = SMTP_AUTH_TEMPFAIL; /* out of memory, or no account: not authenticated */
	step->ok = (int)st;
	step->open = 0;
	s->n_open--;
	steps_settle(s);
}

/* ---- TLS (STARTTLS's request; the rest is smtp_session_tls.c) ---- */

int smtp_session_request_tls(struct smtp_session *s)
{
	if (s->ops->tls_start == NULL)
		return -1;
	struct smtp_step *st = step_push(s, SMTP_REQUEST_TLS);
	if (st == NULL)
		return -1;
	st->id = ++s->next_id;
	if (s->ops->tls_start(s->ops->arg, st->id) != 1) {
		s->n_steps--; /* the one just pushed */
		return -1;
	}
	st->open = 1;
	s->n_open++;
	return 0;
}

void smtp_session_tls_done(struct smtp_session *s, uint64_t id, int ok, const char *version,
                           const char *cipher)
{
	struct smtp_step *st = step_find(s, id, SMTP_REQUEST_TLS);
	/* STARTTLS runs with no other step outstanding: its step is the first. */
	if (st == NULL || st != step_at(s, 0))
		return;
	struct smtp_step done;
	step_pop(s, &done);
	if (!ok) {
		smtp_session_end(s);
		return;
	}
	smtp_tls_reset(s, version, cipher);
}

enum smtp_sender_known smtp_session_sender(const struct smtp_session *s, const char **peer)
{
	if (peer != NULL)
		*peer = s->sender_peer;
	return s->sender_known;
}

/* ---- command lines ---- */

static void command_line(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_cmd cmd;
	if (len + 2 > SMTP_CMD_LINE_MAX) {
		smtp_session_reply(s, 500, "5.5.2", "Line too long (RFC 5321 4.5.3.1.4)", 1);
		return;
	}
	enum smtp_cmd_result r = smtp_cmd_parse(line, len, &cmd);
	if (r == SMTP_CMD_EMPTY) {
		smtp_session_reply(s, 500, "5.5.2", "Empty command", 1);
		return;
	}
	if (r == SMTP_CMD_NUL) {
		smtp_session_reply(s, 501, "5.5.2", "NUL octet in command", 1);
		return;
	}
	/* 8-bit in MAIL/RCPT goes on: the path parser answers 553 5.6.7 for addresses. */
	if (r == SMTP_CMD_8BIT && cmd.verb != SMTP_VERB_MAIL && cmd.verb != SMTP_VERB_RCPT) {
		smtp_session_reply(s, 500, "5.5.2", "Invalid octets in command", 1);
		return;
	}
	const struct smtp_command *row = smtp_command_find(cmd.verb);
	if (row == NULL) {
		smtp_session_reply(s, 500, "5.5.2", "Command not recognized", 1);
		return;
	}
	reply_record_reset(s);
	if (row->check(s, &cmd) == 0) {
		row->run(s, &cmd);
		if (cmd.verb == SMTP_VERB_RCPT)
			return; /* its line comes with its outcome (step_finish) */
	}
	log_command(s, &cmd, NULL);
}

void smtp_session_bare_cr_lf(struct smtp_session *s)
{
	/* CVE-2023-51764/51765/51766: never guess where a line ended. */
	smtp_session_reply(s, 500, "5.5.2", "Bare CR or LF not allowed, closing connection", 0);
	smtp_session_reset_tx(s);
	smtp_session_end(s);
}

/*
 * 1 when command line o[0..olen) may run while RCPT steps are outstanding: a
 * RCPT of an EHLO session (RFC 2920: pipelining was offered) that cannot go
 * over smtp_max_recipients even if every outstanding one is accepted, within
 * the pipelining bound. Anything else waits for the answers (its reply, or
 * whether it may run at all, depends on them).
 */
static int may_run_beside(struct smtp_session *s, const char *o, size_t olen)
{
	struct smtp_cmd cmd;
	if (s->helo_kind != SMTP_HELO_EHLO || s->env == NULL || olen + 2 > SMTP_CMD_LINE_MAX)
		return 0;
	if (step_at(s, 0)->kind != SMTP_REQUEST_RCPT || s->n_steps >= pipeline_bound(s))
		return 0;
	/* Room for every outstanding reply: they may all leave at once, with nothing read. */
	if (out_pending(s) + SMTP_SESSION_OUT_SLACK + (s->n_steps + 1) * STEP_REPLY_ROOM >
	    SMTP_SESSION_OUT_MAX)
		return 0;
	enum smtp_cmd_result r = smtp_cmd_parse(o, olen, &cmd);
	if ((r != SMTP_CMD_OK && r != SMTP_CMD_8BIT) || cmd.verb != SMTP_VERB_RCPT)
		return 0;
	return s->env->n_rcpts + s->n_steps < (size_t)s->c->smtp_max_recipients;
}

/* Keeps a framing event for when the steps before it are done (input stops meanwhile). */
static void hold(struct smtp_session *s, enum smtp_lines_event ev, const char *o, size_t olen)
{
	s->held.ev = ev;
	s->held.len = 0;
	s->held.pending_after = s->pending_after + smtp_lines_pending(&s->lines);
	if (ev == SMTP_LINES_LINE && olen + 2 > SMTP_CMD_LINE_MAX)
		s->held.ev = SMTP_LINES_TOO_LONG; /* command_line's answer to it, the same reply */
	else if (ev == SMTP_LINES_LINE) {
		memcpy(s->held.line, o, olen);
		s->held.len = olen;
	}
}

static void handle_event(struct smtp_session *s, enum smtp_lines_event ev, const char *o,
                         size_t olen)
{
	if (s->n_steps > 0 && s->state == SMTP_ST_CMD &&
	    (ev == SMTP_LINES_LINE || ev == SMTP_LINES_TOO_LONG || ev == SMTP_LINES_BARE_LF_CR)) {
		if (ev != SMTP_LINES_LINE || !may_run_beside(s, o, olen)) {
			hold(s, ev, o, olen);
			return;
		}
	}
	switch (ev) {
	case SMTP_LINES_LINE:
		if (s->state == SMTP_ST_CMD)
			command_line(s, o, olen);
		break;
	case SMTP_LINES_TOO_LONG:
		smtp_session_reply(s, 500, "5.5.2", "Line too long (RFC 5321 4.5.3.1.4)", 1);
		break;
	case SMTP_LINES_BARE_LF_CR: smtp_session_bare_cr_lf(s); break;
	case SMTP_LINES_DATA:
		if (s->state == SMTP_ST_DATA)
			data_chunk(s, o, olen);
		break;
	case SMTP_LINES_END_OF_DATA:
		if (s->state == SMTP_ST_DATA)
			end_of_data(s);
		break;
	case SMTP_LINES_NEED_MORE:
	default: break;
	}
}

/* A megabyte without CRLF: bounded memory, then 421 (hostile-inputs.md "SMTP framing"). */
static void count_skipped(struct smtp_session *s, size_t used)
{
	if (!s->lines.skipping || s->state != SMTP_ST_CMD) {
		s->skipped = 0;
		return;
	}
	s->skipped += used;
	if (s->skipped > SMTP_SESSION_SKIP_MAX) {
		char text[320];
		snprintf(text, sizeof text, "%s Line too long, closing connection", s->c->hostname);
		smtp_session_reply(s, 421, "4.7.0", text, 0);
		smtp_session_end(s);
	}
}

/* 1 while requests keep the session from taking input (smtp_session_waiting()). */
static int blocked(const struct smtp_session *s)
{
	if (s->state != SMTP_ST_CMD || s->n_steps == 0)
		return 0;
	const struct smtp_step *first = &s->steps[s->steps_head];
	return s->held.ev != SMTP_LINES_NEED_MORE || first->kind != SMTP_REQUEST_RCPT ||
	       s->n_steps >= pipeline_bound(s);
}

static int may_consume(const struct smtp_session *s)
{
	if (s->state == SMTP_ST_CMD)
		return !blocked(s) &&
		       out_pending(s) + SMTP_SESSION_OUT_SLACK <= SMTP_SESSION_OUT_MAX;
	return s->state == SMTP_ST_DATA ||
	       (s->state == SMTP_ST_AUTH &&
	        out_pending(s) + SMTP_SESSION_OUT_SLACK <= SMTP_SESSION_OUT_MAX);
}

size_t smtp_session_input(struct smtp_session *s, const char *data, size_t len)
{
	size_t pos = 0;
	int stalls = 0;
	while (pos < len && may_consume(s) && stalls < STALL_MAX) {
		size_t used = 0, olen = 0;
		const char *o = NULL;
		if (s->state == SMTP_ST_AUTH) {
			used = smtp_auth_input(s, data + pos, len - pos);
			pos += used;
			stalls = used == 0 ? stalls + 1 : 0;
			continue;
		}
		enum smtp_lines_event ev =
		        smtp_lines_feed(&s->lines, data + pos, len - pos, &used, &o, &olen);
		if (used > len - pos)
			used = len - pos;
		pos += used;
		stalls = (used == 0 && ev == SMTP_LINES_NEED_MORE) ? stalls + 1 : 0;
		s->pending_after = len - pos;
		handle_event(s, ev, o, olen);
		count_skipped(s, used);
	}
	s->pending_after = 0;
	return pos;
}

/* ---- life cycle ---- */

/* 1 if the address text addr lies in one of nets (local_networks). */
static int in_networks(const struct netlist *nets, const char *addr)
{
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	memset(&a6, 0, sizeof a6);
	memset(&a4, 0, sizeof a4);
	const struct sockaddr *sa = NULL;
	if (inet_pton(AF_INET, addr, &a4.sin_addr) == 1) {
		a4.sin_family = AF_INET;
		sa = (const struct sockaddr *)&a4;
	} else if (inet_pton(AF_INET6, addr, &a6.sin6_addr) == 1) {
		a6.sin6_family = AF_INET6;
		sa = (const struct sockaddr *)&a6;
	}
	for (size_t i = 0; sa != NULL && i < nets->n; i++)
		if (netaddr_net_contains(&nets->v[i], sa))
			return 1;
	return 0;
}

struct smtp_session *smtp_session_new(const struct conf *c, const struct smtp_session_ops *ops,
                                      enum smtp_port_kind kind, const char *client_addr,
                                      int trusted, int sharing_peer)
{
	struct smtp_session *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->linebuf = malloc(SMTP_SESSION_LINEBUF);
	if (s->linebuf == NULL) {
		free(s);
		return NULL;
	}
	s->c = c;
	s->ops = ops;
	s->kind = kind;
	s->trusted = trusted ? 1 : 0;
	s->sharing_peer = sharing_peer ? 1 : 0;
	s->held.ev = SMTP_LINES_NEED_MORE;
	snprintf(s->client_addr, sizeof s->client_addr, "%s", client_addr ? client_addr : "");
	s->in_local_networks = in_networks(&c->local_networks, s->client_addr);
	smtp_lines_init(&s->lines, s->linebuf, SMTP_SESSION_LINEBUF);
	s->state = SMTP_ST_NEW;
	return s;
}

void smtp_session_free(struct smtp_session *s)
{
	if (s == NULL)
		return;
	/* A message being committed belongs to the queue already: s->msg is NULL then. */
	abort_message(s);
	steps_drop(s);
	smtp_auth_free(s);
	for (size_t i = 0; i < s->n_steps; i++)
		free(step_at(s, i)->arg);
	free(s->steps);
	envelope_free(s->env);
	free(s->linebuf);
	free(s->out);
	free(s);
}

void smtp_session_greet(struct smtp_session *s, int early_talker)
{
	char text[320];
	if (s->state != SMTP_ST_NEW)
		return;
	s->state = SMTP_ST_CMD;
	if (early_talker) {
		/* RFC 5321 4.3.1 allows 554 instead of the greeting; an early talker is a bot trait. */
		smtp_session_reply(s, 554, "5.5.0", "Protocol error: talked before the greeting",
		                   0);
		smtp_session_end(s);
		return;
	}
	snprintf(text, sizeof text, "%s ESMTP sharemail", s->c->hostname);
	reply_line(s, 220, NULL, text, 0);
}

const char *smtp_session_output(const struct smtp_session *s, size_t *len)
{
	*len = out_pending(s);
	return *len ? s->out + s->out_off : "";
}

void smtp_session_output_done(struct smtp_session *s, size_t n)
{
	if (n > out_pending(s))
		n = out_pending(s);
	s->out_off += n;
	if (s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
}

int smtp_session_ended(const struct smtp_session *s)
{
	return s->state == SMTP_ST_END;
}

int smtp_session_waiting(const struct smtp_session *s)
{
	return blocked(s);
}

size_t smtp_session_requests(const struct smtp_session *s)
{
	return s->n_open;
}

int smtp_session_in_data(const struct smtp_session *s)
{
	return s->state == SMTP_ST_DATA;
}

static void end_with(struct smtp_session *s, const char *enh, const char *what)
{
	char text[320];
	if (s->state == SMTP_ST_END)
		return;
	snprintf(text, sizeof text, "%s %s", s->c->hostname, what);
	reply_line(s, 421, enh, text, 0);
	smtp_session_end(s);
}

void smtp_session_screened(struct smtp_session *s)
{
	end_with(s, "4.7.0", "Access denied by the Dynamic Screen, closing connection");
}

const char *smtp_session_auth_account(const struct smtp_session *s)
{
	return s->auth_account;
}

void smtp_session_timeout(struct smtp_session *s)
{
	end_with(s, "4.4.2", "Timeout exceeded, closing connection");
}

void smtp_session_shutdown(struct smtp_session *s)
{
	end_with(s, "4.3.2", "Service shutting down, closing connection");
}
