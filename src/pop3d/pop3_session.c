/*
 * pop3_session: the POP3 server session (see pop3_session.h). One command table
 * of {name, states, do}; every reply goes through reply(), which counts errors.
 * Multi-line responses that can be long (RETR, TOP, LIST and UIDL of the whole
 * maildrop) are a "stream" the output refills from as it drains.
 */
#include "pop3d/pop3_session.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "proto/dotstuff.h"
#include "proto/sasl.h"

/* Room kept for one more reply line (RFC 2449 4: a response is at most 512 octets). */
#define OUT_SLACK 1024
#define OUT_CAP (POP3_SESSION_OUT_MAX + OUT_SLACK)
/* An idle session's output buffer; a stream grows it to OUT_CAP (memory per idle client). */
#define OUT_SMALL (2 * OUT_SLACK)
/* The message read buffer (what one msg_read asks for). */
#define READ_CHUNK (16 * 1024)
#define LOG_MAX 600

enum pop3_state {
	ST_NEW = 0, /* before the greeting */
	ST_AUTHZ, /* AUTHORIZATION */
	ST_SASL, /* AUTH: reading continuation lines */
	ST_TRANS, /* TRANSACTION */
	ST_END, /* ended: output what is pending, then close */
};

enum stream_kind { STREAM_NONE = 0, STREAM_LIST, STREAM_UIDL, STREAM_MSG };

struct pop3_session {
	const struct conf *c;
	const struct pop3_session_ops *ops;
	char client_addr[64];
	enum pop3_state state;
	unsigned errors;
	int tls_active;
	int end_after; /* shutdown: end once the response under way is complete */
	/* the open request */
	uint64_t next_id, req_id;
	enum pop3_request_kind req_kind;
	/* AUTHORIZATION */
	char user[POP3_SESSION_CMD_MAX + 1]; /* USER's name; "" none */
	struct sasl *sasl;
	char *account; /* logged in */
	/* TRANSACTION: the listing and the marks */
	struct pop3_msginfo *msgs;
	unsigned char *deleted;
	size_t n_msgs, n_deleted;
	uint64_t octets, octets_deleted;
	unsigned long n_retr;
	/* the stream under way */
	enum stream_kind stream;
	size_t cursor; /* LIST/UIDL: the next message */
	struct dotstuff ds;
	int msg_open;
	long top_lines; /* TOP's n, or -1: the whole message */
	int top_in_body, top_done;
	long top_body_lines;
	size_t top_line_len; /* octets of the current line so far, its line end excluded */
	int top_after_cr; /* the last octet was a CR: an LF now is its line end's */
	char *rbuf;
	size_t rbuf_len, rbuf_off;
	/* input */
	char *line; /* line_cap octets: a command, or an AUTH continuation line in ST_SASL */
	size_t line_len, line_cap;
	size_t skipped; /* octets of an over-long line thrown away */
	int skipping;
	/* output */
	char *out;
	size_t out_len, out_off, out_cap;
	char auth_tried[SASL_IDENTITY_MAX + 1]; /* the identity of the check under way (the log) */
};

/* ---- output ---- */

static size_t out_room(const struct pop3_session *s)
{
	return s->out_cap - s->out_len;
}

/* Grows the output buffer to cap octets (at most OUT_CAP). Returns 0, or -1 (memory). */
static int out_grow(struct pop3_session *s, size_t cap)
{
	if (cap > OUT_CAP)
		cap = OUT_CAP;
	if (cap <= s->out_cap)
		return 0;
	char *p = realloc(s->out, cap);
	if (!p)
		return -1;
	s->out = p;
	s->out_cap = cap;
	return 0;
}

static void out_raw(struct pop3_session *s, const char *p, size_t n)
{
	if (s->out_len + n > s->out_cap)
		out_grow(s, 2 * (s->out_len + n)); /* on failure: what fits (below) */
	if (s->out_off > 0 && s->out_len + n > s->out_cap) {
		memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
		s->out_len -= s->out_off;
		s->out_off = 0;
	}
	if (n > out_room(s))
		n = out_room(s); /* cannot happen: input waits while the output is full */
	memcpy(s->out + s->out_len, p, n);
	s->out_len += n;
}

static void out_fmt(struct pop3_session *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void out_fmt(struct pop3_session *s, const char *fmt, ...)
{
	char buf[600];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof buf - 3)
		n = (int)sizeof buf - 3;
	buf[n++] = '\r';
	buf[n++] = '\n';
	out_raw(s, buf, (size_t)n);
}

static void log_fmt(struct pop3_session *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void log_fmt(struct pop3_session *s, const char *fmt, ...)
{
	char buf[LOG_MAX];
	va_list ap;
	if (!s->ops->log_line)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	s->ops->log_line(s->ops->arg, buf);
}

static void session_end(struct pop3_session *s)
{
	if (s->msg_open) {
		s->ops->msg_close(s->ops->arg);
		s->msg_open = 0;
	}
	s->stream = STREAM_NONE;
	if (s->account && s->ops->maildrop_release)
		s->ops->maildrop_release(s->ops->arg);
	if (s->sasl)
		sasl_wipe(s->sasl);
	s->state = ST_END;
}

/* An -ERR that counts; the pop3_max_errors-th ends the session. */
static void reply_err(struct pop3_session *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void reply_err(struct pop3_session *s, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	out_fmt(s, "-ERR %s", buf);
	if (++s->errors >= (unsigned)s->c->pop3_max_errors) {
		out_fmt(s, "-ERR [SYS/PERM] too many errors; closing");
		log_fmt(s, "pop3: client=[%s] too many errors; closed", s->client_addr);
		session_end(s);
	}
}

/* ---- helpers ---- */

static int plaintext_ok(const struct pop3_session *s)
{
	return s->tls_active || s->c->auth_allow_plaintext;
}

static uint64_t req_open(struct pop3_session *s, enum pop3_request_kind kind)
{
	s->req_id = ++s->next_id;
	s->req_kind = kind;
	return s->req_id;
}

static int req_matches(struct pop3_session *s, uint64_t id, enum pop3_request_kind kind)
{
	if (id == 0 || s->req_id != id || s->req_kind != kind)
		return 0;
	s->req_id = 0;
	return 1;
}

/*
 * A message number argument (RFC 1939 5): decimal, 1..n, of a message not
 * marked deleted. Returns the 0-based index, or -1 after answering -ERR.
 */
static long msg_arg(struct pop3_session *s, const char *a, size_t len)
{
	unsigned long long v = 0;
	if (len == 0 || len > 10) {
		reply_err(s, "invalid message number");
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)a[i])) {
			reply_err(s, "invalid message number");
			return -1;
		}
		v = v * 10 + (unsigned)(a[i] - '0');
	}
	if (v == 0 || v > s->n_msgs) {
		reply_err(s, "no such message");
		return -1;
	}
	if (s->deleted[v - 1]) {
		reply_err(s, "message %llu already deleted", v);
		return -1;
	}
	return (long)(v - 1);
}

/* Splits "A B" at the first space: a[0..*alen), then the rest in *b (NULL: none). */
static void split_arg(const char *arg, size_t len, size_t *alen, const char **b, size_t *blen)
{
	const char *sp = memchr(arg, ' ', len);
	*alen = sp ? (size_t)(sp - arg) : len;
	*b = sp ? sp + 1 : NULL;
	*blen = sp ? len - *alen - 1 : 0;
}

/* ---- streams ---- */

static void stream_finish(struct pop3_session *s)
{
	if (s->msg_open) {
		s->ops->msg_close(s->ops->arg);
		s->msg_open = 0;
	}
	s->stream = STREAM_NONE;
	if (s->end_after) {
		out_fmt(s, "-ERR [SYS/TEMP] server shutting down");
		session_end(s);
	}
}

/* LIST or UIDL of every message not marked deleted, a line at a time as room allows. */
static void fill_listing(struct pop3_session *s)
{
	while (s->cursor < s->n_msgs && out_room(s) > OUT_SLACK) {
		size_t i = s->cursor++;
		if (s->deleted[i])
			continue;
		if (s->stream == STREAM_LIST)
			out_fmt(s, "%zu %llu", i + 1, (unsigned long long)s->msgs[i].size);
		else
			out_fmt(s, "%zu %s", i + 1, s->msgs[i].uid);
	}
	if (s->cursor >= s->n_msgs && out_room(s) >= 3) {
		out_raw(s, ".\r\n", 3);
		stream_finish(s);
	}
}

/*
 * TOP's limit (RFC 1939 7): the header section, the blank line, then n lines of
 * the body; a message without a blank line is all header. The one place the limit
 * is applied (the store's reader always yields the whole message). Lines are
 * counted as they go out (proto/dotstuff.h): a CR ends a line (a bare one is sent
 * as CRLF), an LF right after it is that same line end, any other LF ends a line;
 * so n is the number of body lines the client receives. Returns how many of
 * p[0..len) go out before the limit is reached (sets top_done when it is).
 */
static size_t top_take(struct pop3_session *s, const char *p, size_t len)
{
	if (s->top_lines < 0)
		return len;
	if (s->top_in_body && s->top_body_lines >= s->top_lines) {
		s->top_done = 1;
		return 0;
	}
	for (size_t i = 0; i < len; i++) {
		int lf_of_crlf = p[i] == '\n' && s->top_after_cr;
		s->top_after_cr = p[i] == '\r';
		if (lf_of_crlf)
			continue;
		if (p[i] != '\r' && p[i] != '\n') {
			s->top_line_len++;
			continue;
		}
		if (!s->top_in_body && s->top_line_len == 0)
			s->top_in_body = 1;
		else if (s->top_in_body)
			s->top_body_lines++;
		s->top_line_len = 0;
		if (s->top_in_body && s->top_body_lines >= s->top_lines) {
			s->top_done = 1;
			return i + 1;
		}
	}
	return len;
}

/* Fills the output from the message being sent; at its end the ".", or the end on error. */
static void fill_message(struct pop3_session *s)
{
	while (s->stream == STREAM_MSG && out_room(s) > OUT_SLACK) {
		if (s->rbuf_off == s->rbuf_len && !s->top_done) {
			ssize_t n = s->ops->msg_read(s->ops->arg, s->rbuf, READ_CHUNK);
			if (n < 0) {
				/* The +OK is out: a truncated message must not look whole. */
				log_fmt(s, "pop3: %s: read error while sending a message; closed",
				        s->account);
				session_end(s);
				return;
			}
			s->rbuf_off = 0;
			s->rbuf_len = (size_t)n;
			s->rbuf_len = top_take(s, s->rbuf, s->rbuf_len);
			if (n == 0)
				s->top_done = 1;
		}
		if (s->rbuf_off < s->rbuf_len) {
			if (s->out_off > 0) { /* keep the free room at the end */
				memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
				s->out_len -= s->out_off;
				s->out_off = 0;
			}
			size_t wrote = 0;
			size_t used = dotstuff_feed(&s->ds, s->rbuf + s->rbuf_off,
			                            s->rbuf_len - s->rbuf_off, s->out + s->out_len,
			                            out_room(s) - OUT_SLACK / 2, &wrote);
			s->rbuf_off += used;
			s->out_len += wrote;
			continue;
		}
		if (s->top_done) {
			char end[DOTSTUFF_END_MAX];
			size_t n = dotstuff_end(&s->ds, end, sizeof end);
			out_raw(s, end, n);
			stream_finish(s);
		}
	}
}

static void fill(struct pop3_session *s)
{
	if (s->stream == STREAM_LIST || s->stream == STREAM_UIDL)
		fill_listing(s);
	else if (s->stream == STREAM_MSG)
		fill_message(s);
}

/* ---- AUTHORIZATION ---- */

static void cmd_capa(struct pop3_session *s, const char *arg, size_t len)
{
	out_fmt(s, "+OK capability list follows");
	out_fmt(s, "TOP");
	out_fmt(s, "UIDL");
	out_fmt(s, "RESP-CODES");
	out_fmt(s, "AUTH-RESP-CODE");
	out_fmt(s, "PIPELINING");
	if (s->state == ST_AUTHZ && plaintext_ok(s)) {
		out_fmt(s, "USER");
		out_fmt(s, "SASL PLAIN");
	}
	if (s->state == ST_AUTHZ && !s->tls_active && s->ops->tls_start)
		out_fmt(s, "STLS");
	out_fmt(s, "IMPLEMENTATION sharemail");
	out_fmt(s, ".");
}

static void cmd_user(struct pop3_session *s, const char *arg, size_t len)
{
	if (!plaintext_ok(s)) {
		reply_err(s, "[AUTH] plaintext authentication needs TLS (STLS first)");
		return;
	}
	if (len == 0 || len > SASL_IDENTITY_MAX) {
		reply_err(s, "invalid user name");
		return;
	}
	memcpy(s->user, arg, len);
	s->user[len] = '\0';
	out_fmt(s, "+OK send PASS");
}

/* Hands credentials to the glue's check (identity NULL: invalid ones, still counted). */
static void auth_ask(struct pop3_session *s, const char *identity, const char *pw, size_t len)
{
	uint64_t id = req_open(s, POP3_REQUEST_AUTH);
	snprintf(s->auth_tried, sizeof s->auth_tried, "%s", identity ? identity : "");
	if (!s->ops->auth_check || s->ops->auth_check(s->ops->arg, id, identity, pw, len) != 0) {
		s->req_id = 0;
		reply_err(s, "[SYS/TEMP] cannot check passwords now; try again later");
	}
}

static void cmd_pass(struct pop3_session *s, const char *arg, size_t len)
{
	if (!plaintext_ok(s)) {
		reply_err(s, "[AUTH] plaintext authentication needs TLS (STLS first)");
		return;
	}
	if (!s->user[0]) {
		reply_err(s, "USER first");
		return;
	}
	char identity[POP3_SESSION_CMD_MAX + 1];
	snprintf(identity, sizeof identity, "%s", s->user);
	s->user[0] = '\0';
	if (len == 0 || len > SASL_PASSWORD_MAX || memchr(arg, '\0', len))
		auth_ask(s, NULL, NULL, 0);
	else
		auth_ask(s, identity, arg, len);
}

/* A SASL reply (SMTP-shaped: "334 x", "501 5.7.0 ...") in POP3's form. */
static void sasl_reply_out(struct pop3_session *s)
{
	size_t len;
	int code;
	const char *r = sasl_reply(s->sasl, &len, &code);
	enum sasl_status st = sasl_status(s->sasl);
	if (st == SASL_CONTINUE && s->line_cap < SASL_LINE_MAX + 2) {
		char *p = realloc(s->line, SASL_LINE_MAX + 2);
		if (!p) {
			sasl_wipe(s->sasl);
			s->state = ST_AUTHZ;
			reply_err(s, "[SYS/TEMP] out of memory");
			return;
		}
		s->line = p;
		s->line_cap = SASL_LINE_MAX + 2;
	}
	if (st == SASL_CONTINUE) {
		/* RFC 5034 4: "+ " and the base64 challenge (empty for PLAIN). */
		const char *ch = len >= 6 ? r + 4 : "";
		size_t chlen = len >= 6 ? len - 6 : 0;
		out_raw(s, "+ ", 2);
		out_raw(s, ch, chlen);
		out_raw(s, "\r\n", 2);
		s->state = ST_SASL;
		return;
	}
	s->state = ST_AUTHZ;
	if (st == SASL_INVALID) {
		sasl_wipe(s->sasl);
		auth_ask(s, NULL, NULL, 0);
	} else if (code == 501 && len > 8 && memcmp(r + 4, "5.7.0", 5) == 0) {
		reply_err(s, "authentication cancelled");
	} else if (code == 500) {
		reply_err(s, "line too long");
	} else {
		reply_err(s, "invalid AUTH data");
	}
}

/* SASL_DONE: the credentials go to the check, then are wiped. */
static void sasl_done(struct pop3_session *s)
{
	size_t pwlen;
	const char *pw = sasl_password(s->sasl, &pwlen);
	s->state = ST_AUTHZ;
	auth_ask(s, sasl_identity(s->sasl), pw, pwlen);
	sasl_wipe(s->sasl);
}

static void sasl_advance(struct pop3_session *s)
{
	if (sasl_status(s->sasl) == SASL_DONE)
		sasl_done(s);
	else
		sasl_reply_out(s);
}

static void cmd_auth(struct pop3_session *s, const char *arg, size_t len)
{
	if (len == 0) { /* the mechanisms, as most servers answer a bare AUTH */
		out_fmt(s, "+OK");
		if (plaintext_ok(s))
			out_fmt(s, "PLAIN");
		out_fmt(s, ".");
		return;
	}
	size_t mlen, rlen;
	const char *rest;
	split_arg(arg, len, &mlen, &rest, &rlen);
	if (mlen != 5 || strncasecmp(arg, "PLAIN", 5) != 0) {
		reply_err(s, "unrecognized authentication type");
		return;
	}
	if (!plaintext_ok(s)) {
		reply_err(s, "[AUTH] plaintext authentication needs TLS (STLS first)");
		return;
	}
	if (!s->sasl && !(s->sasl = calloc(1, sizeof *s->sasl))) {
		reply_err(s, "[SYS/TEMP] out of memory");
		return;
	}
	sasl_start(s->sasl, arg, len);
	sasl_advance(s);
}

static void cmd_stls(struct pop3_session *s, const char *arg, size_t len)
{
	if (s->tls_active) {
		reply_err(s, "TLS already active");
		return;
	}
	if (!s->ops->tls_start) {
		reply_err(s, "STLS not available");
		return;
	}
	uint64_t id = req_open(s, POP3_REQUEST_TLS);
	out_fmt(s, "+OK begin TLS negotiation");
	if (!s->ops->tls_start(s->ops->arg, id)) {
		s->req_id = 0;
		/* Our +OK is queued but TLS cannot start: end rather than talk in plaintext. */
		out_fmt(s, "-ERR [SYS/TEMP] TLS not available now");
		session_end(s);
	}
}

/* ---- TRANSACTION ---- */

static void cmd_stat(struct pop3_session *s, const char *arg, size_t len)
{
	out_fmt(s, "+OK %zu %llu", s->n_msgs - s->n_deleted,
	        (unsigned long long)(s->octets - s->octets_deleted));
}

static void cmd_list_uidl(struct pop3_session *s, const char *arg, size_t len, int uidl)
{
	if (len > 0) {
		long i = msg_arg(s, arg, len);
		if (i < 0)
			return;
		if (uidl)
			out_fmt(s, "+OK %ld %s", i + 1, s->msgs[i].uid);
		else
			out_fmt(s, "+OK %ld %llu", i + 1, (unsigned long long)s->msgs[i].size);
		return;
	}
	if (uidl)
		out_fmt(s, "+OK unique-id listing follows");
	else
		out_fmt(s, "+OK %zu messages (%llu octets)", s->n_msgs - s->n_deleted,
		        (unsigned long long)(s->octets - s->octets_deleted));
	s->stream = uidl ? STREAM_UIDL : STREAM_LIST;
	s->cursor = 0;
	out_grow(s, OUT_CAP); /* on failure the listing streams through the small buffer */
	fill(s);
}

static void cmd_list(struct pop3_session *s, const char *arg, size_t len)
{
	cmd_list_uidl(s, arg, len, 0);
}

static void cmd_uidl(struct pop3_session *s, const char *arg, size_t len)
{
	cmd_list_uidl(s, arg, len, 1);
}

static void send_message(struct pop3_session *s, long i, long top_lines)
{
	if ((!s->rbuf && !(s->rbuf = malloc(READ_CHUNK))) || out_grow(s, OUT_CAP) != 0) {
		reply_err(s, "[SYS/TEMP] out of memory");
		return;
	}
	if (s->ops->msg_open(s->ops->arg, (size_t)i) != 0) {
		reply_err(s, "[SYS/TEMP] cannot read message %ld now", i + 1);
		return;
	}
	s->msg_open = 1;
	s->stream = STREAM_MSG;
	s->top_lines = top_lines;
	s->top_in_body = s->top_done = 0;
	s->top_body_lines = 0;
	s->top_line_len = 0;
	s->top_after_cr = 0;
	s->rbuf_len = s->rbuf_off = 0;
	dotstuff_init(&s->ds);
	if (top_lines < 0) {
		s->n_retr++;
		out_fmt(s, "+OK %llu octets", (unsigned long long)s->msgs[i].size);
	} else {
		out_fmt(s, "+OK top of message follows");
	}
	fill(s);
}

static void cmd_retr(struct pop3_session *s, const char *arg, size_t len)
{
	long i = msg_arg(s, arg, len);
	if (i >= 0)
		send_message(s, i, -1);
}

static void cmd_top(struct pop3_session *s, const char *arg, size_t len)
{
	size_t alen, blen;
	const char *b;
	split_arg(arg, len, &alen, &b, &blen);
	if (!b || blen == 0 || blen > 9) {
		reply_err(s, "usage: TOP msg n");
		return;
	}
	long n = 0;
	for (size_t k = 0; k < blen; k++) {
		if (!isdigit((unsigned char)b[k])) {
			reply_err(s, "usage: TOP msg n");
			return;
		}
		n = n * 10 + (b[k] - '0');
	}
	long i = msg_arg(s, arg, alen);
	if (i >= 0)
		send_message(s, i, n);
}

static void cmd_dele(struct pop3_session *s, const char *arg, size_t len)
{
	long i = msg_arg(s, arg, len);
	if (i < 0)
		return;
	s->deleted[i] = 1;
	s->n_deleted++;
	s->octets_deleted += s->msgs[i].size;
	out_fmt(s, "+OK message %ld deleted", i + 1);
}

static void cmd_noop(struct pop3_session *s, const char *arg, size_t len)
{
	out_fmt(s, "+OK");
}

static void cmd_rset(struct pop3_session *s, const char *arg, size_t len)
{
	memset(s->deleted, 0, s->n_msgs);
	s->n_deleted = 0;
	s->octets_deleted = 0;
	out_fmt(s, "+OK %zu messages (%llu octets)", s->n_msgs, (unsigned long long)s->octets);
}

static void cmd_quit(struct pop3_session *s, const char *arg, size_t len)
{
	if (s->state != ST_TRANS || s->n_deleted == 0) {
		if (s->account)
			log_fmt(s, "pop3: logout=%s client=[%s] retr=%lu dele=0", s->account,
			        s->client_addr, s->n_retr);
		out_fmt(s, "+OK bye");
		session_end(s);
		return;
	}
	/* UPDATE (RFC 1939 6): only now are the marked messages removed. */
	size_t *v = malloc(s->n_deleted * sizeof *v);
	if (!v) {
		out_fmt(s, "-ERR [SYS/TEMP] out of memory; nothing removed");
		session_end(s);
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < s->n_msgs; i++)
		if (s->deleted[i])
			v[k++] = i;
	uint64_t id = req_open(s, POP3_REQUEST_COMMIT);
	if (s->ops->maildrop_commit(s->ops->arg, id, v, k) != 0) {
		s->req_id = 0;
		out_fmt(s, "-ERR [SYS/TEMP] cannot remove messages now; nothing removed");
		session_end(s);
	}
	free(v);
}

/* ---- the command table ---- */

#define IN_AUTHZ 1
#define IN_TRANS 2

struct pop3_cmd {
	const char *name;
	int states;
	void (*run)(struct pop3_session *s, const char *arg, size_t len);
};

static const struct pop3_cmd commands[] = {
        {"CAPA", IN_AUTHZ | IN_TRANS, cmd_capa},
        {"USER", IN_AUTHZ, cmd_user},
        {"PASS", IN_AUTHZ, cmd_pass},
        {"AUTH", IN_AUTHZ, cmd_auth},
        {"STLS", IN_AUTHZ, cmd_stls},
        {"QUIT", IN_AUTHZ | IN_TRANS, cmd_quit},
        {"STAT", IN_TRANS, cmd_stat},
        {"LIST", IN_TRANS, cmd_list},
        {"UIDL", IN_TRANS, cmd_uidl},
        {"RETR", IN_TRANS, cmd_retr},
        {"TOP", IN_TRANS, cmd_top},
        {"DELE", IN_TRANS, cmd_dele},
        {"NOOP", IN_TRANS, cmd_noop},
        {"RSET", IN_TRANS, cmd_rset},
};

static void run_line(struct pop3_session *s, const char *line, size_t len)
{
	if (memchr(line, '\0', len)) {
		reply_err(s, "NUL in command");
		return;
	}
	size_t nlen, alen;
	const char *arg;
	split_arg(line, len, &nlen, &arg, &alen);
	if (!arg)
		arg = line + len;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		const struct pop3_cmd *c = &commands[i];
		if (strlen(c->name) != nlen || strncasecmp(c->name, line, nlen) != 0)
			continue;
		int here = s->state == ST_TRANS ? IN_TRANS : IN_AUTHZ;
		if (!(c->states & here)) {
			reply_err(s, "%s not valid in this state", c->name);
			return;
		}
		c->run(s, arg, alen);
		return;
	}
	reply_err(s, "unknown command");
}

/* One AUTH continuation line (RFC 5034 4). */
static void run_sasl_line(struct pop3_session *s, const char *line, size_t len)
{
	sasl_step(s->sasl, line, len);
	sasl_advance(s);
}

/* ---- input ---- */

static size_t line_max(const struct pop3_session *s)
{
	return s->state == ST_SASL ? SASL_LINE_MAX : POP3_SESSION_CMD_MAX - 2;
}

static int can_take_input(const struct pop3_session *s)
{
	return s->state != ST_END && s->state != ST_NEW && s->req_id == 0 &&
	       s->stream == STREAM_NONE && s->out_len - s->out_off < POP3_SESSION_OUT_MAX;
}

/* A complete line (CR LF or a bare LF removed). */
static void line_done(struct pop3_session *s)
{
	size_t len = s->line_len;
	s->line_len = 0;
	if (len > 0 && s->line[len - 1] == '\r')
		len--;
	if (s->skipping) {
		s->skipping = 0;
		s->skipped = 0;
		if (s->state == ST_SASL) {
			sasl_line_too_long(s->sasl);
			sasl_advance(s);
		} else {
			reply_err(s, "line too long");
		}
		return;
	}
	if (s->state == ST_SASL)
		run_sasl_line(s, s->line, len);
	else
		run_line(s, s->line, len);
	explicit_bzero(s->line, len); /* it may have held a password */
}

size_t pop3_session_input(struct pop3_session *s, const char *data, size_t len)
{
	size_t i = 0;
	while (i < len && can_take_input(s)) {
		char ch = data[i++];
		if (ch == '\n') {
			line_done(s);
			continue;
		}
		if (s->skipping) {
			if (++s->skipped > POP3_SESSION_SKIP_MAX) {
				out_fmt(s, "-ERR line too long; closing");
				session_end(s);
			}
			continue;
		}
		/* +1: the CR before the LF */
		if (s->line_len >= line_max(s) + 1) {
			s->skipping = 1;
			s->skipped = s->line_len;
			explicit_bzero(s->line, s->line_len);
			s->line_len = 0;
			continue;
		}
		s->line[s->line_len++] = ch;
	}
	return i;
}

/* ---- the glue's calls ---- */

struct pop3_session *pop3_session_new(const struct conf *c, const struct pop3_session_ops *ops,
                                      const char *client_addr)
{
	struct pop3_session *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->c = c;
	s->ops = ops;
	snprintf(s->client_addr, sizeof s->client_addr, "%s", client_addr ? client_addr : "");
	s->line_cap = POP3_SESSION_CMD_MAX + 1;
	s->out_cap = OUT_SMALL;
	s->line = malloc(s->line_cap);
	s->out = malloc(s->out_cap);
	if (!s->line || !s->out) {
		pop3_session_free(s);
		return NULL;
	}
	return s;
}

void pop3_session_free(struct pop3_session *s)
{
	if (!s)
		return;
	if (s->state != ST_END)
		session_end(s);
	if (s->line)
		explicit_bzero(s->line, s->line_cap);
	if (s->sasl) {
		sasl_wipe(s->sasl);
		free(s->sasl);
	}
	free(s->line);
	free(s->out);
	free(s->rbuf);
	free(s->msgs);
	free(s->deleted);
	free(s->account);
	free(s);
}

void pop3_session_tls_implicit(struct pop3_session *s)
{
	s->tls_active = 1;
}

void pop3_session_greet(struct pop3_session *s, int early_talker)
{
	if (early_talker) {
		out_fmt(s, "-ERR talking before the greeting");
		session_end(s);
		return;
	}
	s->state = ST_AUTHZ;
	if (s->c->pop3_greeting && *s->c->pop3_greeting) {
		char g[256];
		snprintf(g, sizeof g, "%s", s->c->pop3_greeting);
		for (char *p = g; *p; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
				*p = ' ';
		out_fmt(s, "+OK %s", g);
	} else {
		out_fmt(s, "+OK %s POP3 server ready", s->c->hostname ? s->c->hostname : "");
	}
}

const char *pop3_session_output(struct pop3_session *s, size_t *len)
{
	if (s->stream != STREAM_NONE && s->state != ST_END)
		fill(s);
	*len = s->out_len - s->out_off;
	return s->out + s->out_off;
}

void pop3_session_output_done(struct pop3_session *s, size_t n)
{
	s->out_off += n;
	if (s->out_off >= s->out_len)
		s->out_off = s->out_len = 0;
}

int pop3_session_ended(const struct pop3_session *s)
{
	return s->state == ST_END;
}

int pop3_session_waiting(const struct pop3_session *s)
{
	return s->req_id != 0;
}

size_t pop3_session_requests(const struct pop3_session *s)
{
	return s->req_id != 0;
}

void pop3_session_timeout(struct pop3_session *s)
{
	if (s->state == ST_END)
		return;
	/* Mid-response (the client stopped reading) a status line would land inside it. */
	if (s->stream == STREAM_NONE)
		out_fmt(s, "-ERR [SYS/TEMP] idle for too long; closing (nothing removed)");
	log_fmt(s, "pop3: client=[%s] timed out%s%s", s->client_addr, s->account ? "; login=" : "",
	        s->account ? s->account : "");
	session_end(s);
}

void pop3_session_shutdown(struct pop3_session *s)
{
	if (s->state == ST_END)
		return;
	if (s->stream != STREAM_NONE || s->req_id != 0) {
		s->end_after = 1;
		return;
	}
	out_fmt(s, "-ERR [SYS/TEMP] server shutting down");
	session_end(s);
}

void pop3_session_auth_done(struct pop3_session *s, uint64_t id, enum pop3_auth_status st,
                            const char *account)
{
	if (!req_matches(s, id, POP3_REQUEST_AUTH) || s->state == ST_END)
		return;
	if (st == POP3_AUTH_FAIL) {
		log_fmt(s, "pop3: client=[%s] authentication failed; user=<%s>", s->client_addr,
		        s->auth_tried);
		reply_err(s, "[AUTH] invalid user name or password");
	} else if (st != POP3_AUTH_OK || !account || !(s->account = strdup(account))) {
		reply_err(s, "[SYS/TEMP] cannot check passwords now; try again later");
	} else {
		uint64_t oid = req_open(s, POP3_REQUEST_OPEN);
		if (s->ops->maildrop_open(s->ops->arg, oid, s->account) != 0) {
			s->req_id = 0;
			free(s->account);
			s->account = NULL;
			reply_err(s, "[SYS/TEMP] cannot open the maildrop now");
		}
	}
	if (s->end_after && s->req_id == 0 && s->state != ST_END) {
		out_fmt(s, "-ERR [SYS/TEMP] server shutting down");
		session_end(s);
	}
}

void pop3_session_screened(struct pop3_session *s)
{
	if (s->state == ST_END)
		return;
	out_fmt(s, "-ERR [SYS/TEMP] access denied by the Dynamic Screen");
	session_end(s);
}

/* The account is not ours after all (no maildrop): forget it, release nothing. */
static void login_undo(struct pop3_session *s)
{
	free(s->account);
	s->account = NULL;
}

void pop3_session_open_done(struct pop3_session *s, uint64_t id, enum pop3_open_status st,
                            const struct pop3_msginfo *v, size_t n)
{
	if (!req_matches(s, id, POP3_REQUEST_OPEN) || s->state == ST_END)
		return;
	if (st == POP3_OPEN_IN_USE) {
		log_fmt(s, "pop3: %s: maildrop in use; client=[%s] refused", s->account,
		        s->client_addr);
		login_undo(s);
		reply_err(s, "[IN-USE] maildrop already locked by another session");
		return;
	}
	if (st == POP3_OPEN_OK) {
		s->msgs = n ? malloc(n * sizeof *s->msgs) : NULL;
		s->deleted = calloc(n ? n : 1, 1);
	}
	if (st != POP3_OPEN_OK || (n && !s->msgs) || !s->deleted) {
		free(s->msgs);
		free(s->deleted);
		s->msgs = NULL;
		s->deleted = NULL;
		if (s->ops->maildrop_release)
			s->ops->maildrop_release(s->ops->arg);
		login_undo(s);
		reply_err(s, "[SYS/TEMP] cannot open the maildrop now");
		return;
	}
	if (n)
		memcpy(s->msgs, v, n * sizeof *v);
	s->n_msgs = n;
	s->octets = 0;
	for (size_t i = 0; i < n; i++)
		s->octets += s->msgs[i].size;
	s->state = ST_TRANS;
	log_fmt(s, "pop3: login=%s client=[%s]%s messages=%zu octets=%llu", s->account,
	        s->client_addr, s->tls_active ? " tls" : "", n, (unsigned long long)s->octets);
	out_fmt(s, "+OK %zu messages (%llu octets)", n, (unsigned long long)s->octets);
	if (s->end_after) {
		out_fmt(s, "-ERR [SYS/TEMP] server shutting down");
		session_end(s);
	}
}

void pop3_session_commit_done(struct pop3_session *s, uint64_t id, int removed_all)
{
	if (!req_matches(s, id, POP3_REQUEST_COMMIT) || s->state == ST_END)
		return;
	log_fmt(s, "pop3: logout=%s client=[%s] retr=%lu dele=%zu%s", s->account, s->client_addr,
	        s->n_retr, s->n_deleted, removed_all ? "" : " (some not removed)");
	if (removed_all)
		out_fmt(s, "+OK bye (%zu messages removed)", s->n_deleted);
	else
		out_fmt(s, "-ERR [SYS/TEMP] some deleted messages not removed");
	session_end(s);
}

void pop3_session_tls_done(struct pop3_session *s, uint64_t id, int ok)
{
	if (!req_matches(s, id, POP3_REQUEST_TLS) || s->state == ST_END)
		return;
	if (!ok) {
		session_end(s);
		return;
	}
	/* RFC 2595 4: what was learnt before TLS is forgotten; still AUTHORIZATION. */
	s->tls_active = 1;
	s->user[0] = '\0';
	s->line_len = 0;
	s->skipping = 0;
}

const char *pop3_session_account(const struct pop3_session *s)
{
	return s->account;
}
