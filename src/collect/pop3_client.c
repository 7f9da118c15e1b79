/*
 * pop3_client: the POP3 client state machine (RFC 1939; RFC 2449 CAPA,
 * PIPELINING, response codes; RFC 2595 STLS). See pop3_client.h.
 *
 * Shape (as deliver/smtp_client.c, after curl's per-state handlers): every
 * command sent pushes an expectation (the reply it awaits, the output offset
 * where its octets end) onto a FIFO; every complete reply pops the head and
 * runs that kind's handler. A reply has a status line and, for CAPA, LIST,
 * UIDL and RETR after "+OK", a multi-line body: the reader is in one of three
 * modes (status line, listing lines, message data) and the head says which
 * follows. Pipelining (RFC 2449 6.6) is only how many requests the pump sends
 * before their replies are back; replies are matched in order either way.
 *
 * A status line must answer a command the peer can have read: the head's
 * octets must have been handed to the glue before the line's first octet
 * arrived (the glue feeds everything it has read before it sends anything,
 * collect_transport.c); octets that come earlier are a desynchronisation,
 * and a protocol error.
 *
 * Events are a FIFO too (MSG_BEGIN, MSG_DATA, ... in the order they happened);
 * pop3_client_input() stops consuming as soon as one is pending, so a data
 * chunk is never overwritten before the caller has seen it, and the caller's
 * requests made while handling an event take effect before the next octet.
 */
#include "collect/pop3_client.h"
#include "proto/cmd_pipe.h"
#include "proto/pop3_resp.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest command line we send: "APOP " user SP 32 hex, or "PASS " password. */
#define CMD_MAX (POP3_CLIENT_USER_MAX + 64)

enum phase {
	PH_CONNECT = 0, /* before pop3_client_connected() */
	PH_BUSY, /* greeting, CAPA, STLS, login, listing: the client's own commands */
	PH_TLS, /* START_TLS asked for; the glue is shaking hands */
	PH_TRANS, /* the listing is out: the caller's requests */
	PH_QUIT, /* QUIT sent */
	PH_DONE, /* ACT_CLOSE issued */
};

enum expect_kind {
	EX_GREETING = 0,
	EX_CAPA,
	EX_STLS,
	EX_USER,
	EX_PASS,
	EX_APOP,
	EX_STAT,
	EX_LIST,
	EX_UIDL,
	EX_RETR,
	EX_DELE,
	EX_QUIT,
};

enum reader { RD_STATUS = 0, RD_LINES, RD_DATA };

struct req {
	enum expect_kind kind; /* EX_RETR or EX_DELE */
	uint64_t num;
};

struct evslot {
	struct pop3_client_event ev;
	char text[POP3_CLIENT_TEXT_MAX + 1];
};

/* Per entry flags beside the public listing. */
enum { EF_DELE = 1 };

struct pop3_client {
	struct pop3_client_conf conf;
	char user[POP3_CLIENT_USER_MAX + 1];
	char pass[POP3_CLIENT_PASS_MAX + 1];
	size_t pass_len;
	enum phase phase;
	int quit_asked; /* pop3_client_quit(): QUIT after the queued requests */
	int apop_tried; /* auto: APOP failed once, USER/PASS next */
	int greeted; /* the greeting was read */
	int handling; /* the expect_kind whose reply is being handled, or -1 */

	/* Reading. */
	enum reader rd;
	struct pop3_resp_lines lines;
	char *line_buf;
	int line_allowed;
	struct pop3_resp_data data;
	char *chunk;
	uint64_t data_limit; /* octets the message under way may hand on */
	uint64_t data_size; /* its LIST size */

	/* Writing. */
	struct cmd_pipe p; /* the output and the replies awaited, in order */

	struct req *reqs; /* queued, not sent yet */
	size_t req_head, req_n;
	size_t inflight; /* RETR and DELE expectations in the FIFO */

	struct evslot *evs;
	size_t ev_cap, ev_head, ev_n;
	int ready_owed;

	/* What was learnt. */
	struct pop3_client_caps caps;
	char timestamp[POP3_RESP_TIMESTAMP_MAX + 1];
	size_t timestamp_len;
	struct pop3_client_listing listing;
	struct pop3_client_entry *entries;
	unsigned char *eflags;
	size_t entries_cap;
	int have_listing, uidl_seen;

	struct pop3_client_deadline dl;
	unsigned long dl_seq;
	enum phase dl_phase;
	enum reader dl_rd;

	struct pop3_client_outcome outcome;
	uint64_t discarded;
};

/* ---- names ---- */

const char *pop3_client_wait_name(enum pop3_client_wait w)
{
	static const char *const names[] = {
	        [POP3_CLIENT_WAIT_NONE] = "none",         [POP3_CLIENT_WAIT_CONNECT] = "connect",
	        [POP3_CLIENT_WAIT_GREETING] = "greeting", [POP3_CLIENT_WAIT_CAPA] = "CAPA",
	        [POP3_CLIENT_WAIT_STLS] = "STLS",         [POP3_CLIENT_WAIT_TLS] = "TLS handshake",
	        [POP3_CLIENT_WAIT_AUTH] = "login",        [POP3_CLIENT_WAIT_LISTING] = "listing",
	        [POP3_CLIENT_WAIT_RETR] = "RETR",         [POP3_CLIENT_WAIT_DATA] = "message data",
	        [POP3_CLIENT_WAIT_DELE] = "DELE",         [POP3_CLIENT_WAIT_QUIT] = "QUIT",
	};
	if ((unsigned)w >= sizeof names / sizeof names[0])
		return "?";
	return names[w];
}

const char *pop3_client_end_name(enum pop3_client_end e)
{
	static const char *const names[] = {
	        [POP3_CLIENT_END_NONE] = "none",
	        [POP3_CLIENT_END_OK] = "ok",
	        [POP3_CLIENT_END_QUIT_REFUSED] = "QUIT refused",
	        [POP3_CLIENT_END_QUIT_UNANSWERED] = "QUIT unanswered",
	        [POP3_CLIENT_END_GREETING] = "greeting refused",
	        [POP3_CLIENT_END_TLS_UNAVAILABLE] = "TLS unavailable",
	        [POP3_CLIENT_END_TLS_FAILED] = "TLS failed",
	        [POP3_CLIENT_END_AUTH] = "login refused",
	        [POP3_CLIENT_END_IN_USE] = "mailbox in use",
	        [POP3_CLIENT_END_LOGIN_DELAY] = "login delay",
	        [POP3_CLIENT_END_SYS] = "server failure",
	        [POP3_CLIENT_END_LISTING] = "listing too long",
	        [POP3_CLIENT_END_PROTOCOL] = "protocol error",
	        [POP3_CLIENT_END_TIMEOUT] = "timeout",
	        [POP3_CLIENT_END_DROPPED] = "dropped",
	        [POP3_CLIENT_END_CONNECT] = "connect failed",
	        [POP3_CLIENT_END_LOCAL] = "local error",
	};
	if ((unsigned)e >= sizeof names / sizeof names[0])
		return "?";
	return names[e];
}

const char *pop3_client_action_name(enum pop3_client_action a)
{
	static const char *const names[] = {
	        [POP3_CLIENT_ACT_NONE] = "NONE",
	        [POP3_CLIENT_ACT_START_TLS] = "START_TLS",
	        [POP3_CLIENT_ACT_LISTING] = "LISTING",
	        [POP3_CLIENT_ACT_MSG_BEGIN] = "MSG_BEGIN",
	        [POP3_CLIENT_ACT_MSG_DATA] = "MSG_DATA",
	        [POP3_CLIENT_ACT_MSG_END] = "MSG_END",
	        [POP3_CLIENT_ACT_MSG_ERROR] = "MSG_ERROR",
	        [POP3_CLIENT_ACT_MSG_ABORTED] = "MSG_ABORTED",
	        [POP3_CLIENT_ACT_DELE_OK] = "DELE_OK",
	        [POP3_CLIENT_ACT_DELE_ERROR] = "DELE_ERROR",
	        [POP3_CLIENT_ACT_DELE_ABORTED] = "DELE_ABORTED",
	        [POP3_CLIENT_ACT_READY] = "READY",
	        [POP3_CLIENT_ACT_CLOSE] = "CLOSE",
	};
	if ((unsigned)a >= sizeof names / sizeof names[0])
		return "?";
	return names[a];
}

const char *pop3_client_msg_error_name(enum pop3_client_msg_error e)
{
	switch (e) {
	case POP3_CLIENT_MSG_OK: return "ok";
	case POP3_CLIENT_MSG_REFUSED: return "refused";
	case POP3_CLIENT_MSG_OVERSIZE: return "oversize";
	case POP3_CLIENT_MSG_LOST: return "lost";
	}
	return "?";
}

/* ---- small helpers ---- */

/* Copies t[0..n) as printable ASCII (others become '?'), cut to fit dst[dstsz]. */
static void text_copy(char *dst, size_t dstsz, const char *t, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < dstsz; i++) {
		unsigned char ch = (unsigned char)t[i];
		dst[k++] = (ch < 0x20 || ch > 0x7e) ? '?' : (char)ch;
	}
	dst[k] = '\0';
}

static struct cmd_expect fifo_pop(struct pop3_client *c)
{
	struct cmd_expect e = cmd_pipe_pop(&c->p);
	if (e.kind == EX_RETR || e.kind == EX_DELE)
		c->inflight--;
	return e;
}

/* A new event; NULL only if the ring is full (it is sized so that it never is). */
static struct pop3_client_event *ev_push(struct pop3_client *c, enum pop3_client_action a,
                                         uint64_t num)
{
	if (c->ev_n >= c->ev_cap)
		return NULL;
	struct evslot *s = &c->evs[(c->ev_head + c->ev_n) % c->ev_cap];
	c->ev_n++;
	memset(&s->ev, 0, sizeof s->ev);
	s->text[0] = '\0';
	s->ev.action = a;
	s->ev.num = num;
	s->ev.text = s->text;
	return &s->ev;
}

static char *ev_text(struct pop3_client *c, struct pop3_client_event *ev)
{
	return ((struct evslot *)(void *)ev)->text;
}

/* ---- deadlines ---- */

static enum pop3_client_wait wait_of_kind(enum expect_kind k)
{
	static const enum pop3_client_wait by_kind[] = {
	        [EX_GREETING] = POP3_CLIENT_WAIT_GREETING, [EX_CAPA] = POP3_CLIENT_WAIT_CAPA,
	        [EX_STLS] = POP3_CLIENT_WAIT_STLS,         [EX_USER] = POP3_CLIENT_WAIT_AUTH,
	        [EX_PASS] = POP3_CLIENT_WAIT_AUTH,         [EX_APOP] = POP3_CLIENT_WAIT_AUTH,
	        [EX_STAT] = POP3_CLIENT_WAIT_LISTING,      [EX_LIST] = POP3_CLIENT_WAIT_LISTING,
	        [EX_UIDL] = POP3_CLIENT_WAIT_LISTING,      [EX_RETR] = POP3_CLIENT_WAIT_RETR,
	        [EX_DELE] = POP3_CLIENT_WAIT_DELE,         [EX_QUIT] = POP3_CLIENT_WAIT_QUIT,
	};
	return by_kind[k];
}

static enum pop3_client_wait wait_of(const struct pop3_client *c)
{
	const struct cmd_expect *e = cmd_pipe_head(&c->p);
	if (c->phase == PH_DONE)
		return POP3_CLIENT_WAIT_NONE;
	if (c->phase == PH_TLS)
		return POP3_CLIENT_WAIT_TLS;
	if (c->phase == PH_CONNECT)
		return POP3_CLIENT_WAIT_CONNECT;
	if (e == NULL)
		return POP3_CLIENT_WAIT_NONE;
	if (c->rd == RD_DATA)
		return POP3_CLIENT_WAIT_DATA;
	return wait_of_kind(e->kind);
}

static unsigned wait_seconds(const struct pop3_client_timeouts *t, enum pop3_client_wait w)
{
	switch (w) {
	case POP3_CLIENT_WAIT_NONE: return 0;
	case POP3_CLIENT_WAIT_CONNECT: return t->connect;
	case POP3_CLIENT_WAIT_GREETING: return t->greeting;
	case POP3_CLIENT_WAIT_TLS: return t->tls_handshake;
	case POP3_CLIENT_WAIT_DATA: return t->data;
	case POP3_CLIENT_WAIT_QUIT: return t->quit;
	default: return t->reply;
	}
}

/* A new wait (another head, phase or reader mode) re-arms the glue's timer. */
static void deadline_update(struct pop3_client *c)
{
	const struct cmd_expect *e = cmd_pipe_head(&c->p);
	unsigned long seq = e ? e->seq : 0;
	if (seq == c->dl_seq && c->phase == c->dl_phase && c->rd == c->dl_rd)
		return;
	c->dl_seq = seq;
	c->dl_phase = c->phase;
	c->dl_rd = c->rd;
	c->dl.wait = wait_of(c);
	c->dl.seconds = wait_seconds(&c->conf.timeouts, c->dl.wait);
	c->dl.serial++;
}

static const char *const kind_names[] = {
        [EX_GREETING] = "greeting", [EX_CAPA] = "CAPA", [EX_STLS] = "STLS", [EX_USER] = "USER",
        [EX_PASS] = "PASS",         [EX_APOP] = "APOP", [EX_STAT] = "STAT", [EX_LIST] = "LIST",
        [EX_UIDL] = "UIDL",         [EX_RETR] = "RETR", [EX_DELE] = "DELE", [EX_QUIT] = "QUIT",
};

/*
 * Where the session was, for the client's own reasons: "waiting for the reply
 * to RETR" (about: "waiting for", or "in" for what a reply held), "during the
 * TLS handshake", ...
 */
static const char *stage(const struct pop3_client *c, const char *about, char *buf, size_t n)
{
	const struct cmd_expect *e = cmd_pipe_head(&c->p);
	int kind = c->handling >= 0 ? c->handling : e ? (int)e->kind : -1;
	if (c->phase == PH_CONNECT)
		return "while connecting";
	if (c->phase == PH_TLS)
		return "during the TLS handshake";
	if (kind < 0)
		return "while idle";
	if (kind == EX_GREETING)
		return strcmp(about, "in") == 0 ? "in the greeting" : "waiting for the greeting";
	if (kind == EX_RETR && c->rd == RD_DATA)
		return "in a message's data";
	snprintf(buf, n, "%s the reply to %s", about, kind_names[kind]);
	return buf;
}

/* ---- ending ---- */

static void outcome_set(struct pop3_client *c, enum pop3_client_end end, enum pop3_resp_code code,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The first reason that ends the session is the one that explains the rest. */
static void outcome_set(struct pop3_client *c, enum pop3_client_end end, enum pop3_resp_code code,
                        const char *fmt, ...)
{
	va_list ap;
	if (c->outcome.end != POP3_CLIENT_END_NONE)
		return;
	c->outcome.end = end;
	c->outcome.code = code;
	va_start(ap, fmt);
	vsnprintf(c->outcome.reason, sizeof c->outcome.reason, fmt, ap);
	va_end(ap);
	/* Keep it printable whatever the format arguments held. */
	for (char *p = c->outcome.reason; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
}

static void wipe_password(struct pop3_client *c)
{
	OPENSSL_cleanse(c->pass, sizeof c->pass);
	c->pass_len = 0;
}

/* Every request under way or waiting gets its ABORTED event (the message under data too). */
static void abort_requests(struct pop3_client *c)
{
	while (c->p.fifo_n > 0) {
		struct cmd_expect e = fifo_pop(c);
		struct pop3_client_event *ev = NULL;
		if (e.kind == EX_RETR)
			ev = ev_push(c, POP3_CLIENT_ACT_MSG_ABORTED, e.arg);
		else if (e.kind == EX_DELE)
			ev = ev_push(c, POP3_CLIENT_ACT_DELE_ABORTED, e.arg);
		if (ev != NULL)
			ev->error = POP3_CLIENT_MSG_LOST;
	}
	for (; c->req_n > 0; c->req_n--) {
		struct req *r = &c->reqs[c->req_head];
		c->req_head = (c->req_head + 1) % c->conf.queue_max;
		struct pop3_client_event *ev =
		        ev_push(c,
		                r->kind == EX_RETR ? POP3_CLIENT_ACT_MSG_ABORTED
		                                   : POP3_CLIENT_ACT_DELE_ABORTED,
		                r->num);
		if (ev != NULL)
			ev->error = POP3_CLIENT_MSG_LOST;
	}
}

static void close_now(struct pop3_client *c)
{
	if (c->phase == PH_DONE)
		return;
	abort_requests(c);
	cmd_pipe_clear(&c->p);
	c->phase = PH_DONE;
	c->rd = RD_STATUS;
	c->ready_owed = 0;
	wipe_password(c);
	ev_push(c, POP3_CLIENT_ACT_CLOSE, 0);
}

/* Abortive end (no QUIT: the conversation is out of step or gone). */
static void conn_abort(struct pop3_client *c, enum pop3_client_end end, enum pop3_resp_code code,
                       const char *why)
{
	outcome_set(c, end, code, "%s", why);
	close_now(c);
}

static void protocol_error(struct pop3_client *c, const char *why)
{
	char buf[64], r[160];
	snprintf(r, sizeof r, "protocol error %s: %s", stage(c, "in", buf, sizeof buf), why);
	conn_abort(c, POP3_CLIENT_END_PROTOCOL, POP3_RESP_CODE_NONE, r);
}

/* Sends a command line (CRLF added) and awaits its reply. */
static int send_cmd(struct pop3_client *c, const char *line, size_t n, enum expect_kind kind,
                    uint64_t num)
{
	if (cmd_pipe_send(&c->p, line, n, (int)kind, num) != 0) {
		conn_abort(c, POP3_CLIENT_END_LOCAL, POP3_RESP_CODE_NONE,
		           "local error: output buffer full");
		return -1;
	}
	if (kind == EX_RETR || kind == EX_DELE)
		c->inflight++;
	return 0;
}

static int send_str(struct pop3_client *c, const char *s, enum expect_kind kind)
{
	return send_cmd(c, s, strlen(s), kind, 0);
}

/*
 * Polite end (refused login, TLS unavailable, listing refused): the server is
 * in step, so QUIT (RFC 1939 6: nothing is deleted outside TRANSACTION, and
 * nothing was marked). The outcome is already set.
 */
static void conn_quit(struct pop3_client *c, enum pop3_client_end end, enum pop3_resp_code code,
                      const char *fmt_text, const char *text, size_t text_len)
{
	char t[POP3_CLIENT_TEXT_MAX + 1];
	text_copy(t, sizeof t, text, text_len);
	outcome_set(c, end, code, "%s%s%s", fmt_text, t[0] ? ": " : "", t);
	if (c->p.fifo_n > 0) {
		close_now(c); /* pipelined replies still to come: out of step for a QUIT */
		return;
	}
	abort_requests(c);
	c->phase = PH_QUIT;
	c->quit_asked = 1;
	send_str(c, "QUIT", EX_QUIT);
}

/* ---- the request pump ---- */

static void pump(struct pop3_client *c)
{
	char line[48];
	int pipelining = c->caps.capa.pipelining;
	if (c->phase != PH_TRANS)
		return;
	while (c->req_n > 0 && (c->inflight == 0 || pipelining)) {
		struct req r = c->reqs[c->req_head];
		c->req_head = (c->req_head + 1) % c->conf.queue_max;
		c->req_n--;
		int n = snprintf(line, sizeof line, "%s %llu", r.kind == EX_RETR ? "RETR" : "DELE",
		                 (unsigned long long)r.num);
		if (send_cmd(c, line, (size_t)n, r.kind, r.num) != 0)
			return;
	}
	if (c->quit_asked && c->req_n == 0 && (c->inflight == 0 || pipelining)) {
		c->phase = PH_QUIT;
		send_str(c, "QUIT", EX_QUIT);
	}
}

static int idle(const struct pop3_client *c)
{
	return c->phase == PH_TRANS && c->req_n == 0 && c->inflight == 0 && !c->quit_asked;
}

/* ---- login ---- */

/* RFC 1939 7: APOP name digest, the digest MD5(timestamp password) in lower-case hex. */
static int send_apop(struct pop3_client *c)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char line[CMD_MAX];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	         EVP_DigestUpdate(ctx, c->timestamp, c->timestamp_len) == 1 &&
	         EVP_DigestUpdate(ctx, c->pass, c->pass_len) == 1 &&
	         EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 16;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		conn_abort(c, POP3_CLIENT_END_LOCAL, POP3_RESP_CODE_NONE,
		           "local error: MD5 unavailable for APOP");
		return -1;
	}
	int n = snprintf(line, sizeof line, "APOP %s ", c->user);
	for (unsigned i = 0; i < mdlen; i++)
		n += snprintf(line + n, sizeof line - (size_t)n, "%02x", md[i]);
	OPENSSL_cleanse(md, sizeof md);
	int r = send_cmd(c, line, (size_t)n, EX_APOP, 0);
	OPENSSL_cleanse(line, sizeof line);
	if (c->conf.auth == POP3_CLIENT_AUTH_APOP)
		wipe_password(c); /* no USER/PASS fallback: done with it */
	return r;
}

static void send_user(struct pop3_client *c)
{
	char line[CMD_MAX];
	int n = snprintf(line, sizeof line, "USER %s", c->user);
	send_cmd(c, line, (size_t)n, EX_USER, 0);
}

static void send_pass(struct pop3_client *c)
{
	char line[CMD_MAX];
	memcpy(line, "PASS ", 5);
	memcpy(line + 5, c->pass, c->pass_len);
	size_t n = 5 + c->pass_len;
	wipe_password(c);
	send_cmd(c, line, n, EX_PASS, 0);
	OPENSSL_cleanse(line, sizeof line);
}

static void login(struct pop3_client *c)
{
	enum pop3_client_auth a = c->conf.auth;
	if (a == POP3_CLIENT_AUTH_APOP && c->timestamp_len == 0) {
		conn_quit(c, POP3_CLIENT_END_AUTH, POP3_RESP_CODE_NONE,
		          "APOP configured, but the greeting has no timestamp", "", 0);
		return;
	}
	if (a == POP3_CLIENT_AUTH_APOP || (a == POP3_CLIENT_AUTH_AUTO && c->timestamp_len > 0))
		send_apop(c);
	else
		send_user(c);
}

static void start_listing(struct pop3_client *c)
{
	/* RFC 2449 6.6: with PIPELINING the three go at once. */
	send_str(c, "STAT", EX_STAT);
	if (c->caps.capa.pipelining && c->phase != PH_DONE) {
		send_str(c, "LIST", EX_LIST);
		send_str(c, "UIDL", EX_UIDL);
	}
}

/* ---- reply handlers ---- */

typedef void (*reply_handler)(struct pop3_client *c, const struct cmd_expect *e,
                              const struct pop3_resp_status_line *sl);

/* A -ERR that ends the login: which end its response code gives (RFC 2449 8, RFC 3206). */
static enum pop3_client_end login_end(enum pop3_resp_code code)
{
	switch (code) {
	case POP3_RESP_CODE_IN_USE: return POP3_CLIENT_END_IN_USE;
	case POP3_RESP_CODE_LOGIN_DELAY: return POP3_CLIENT_END_LOGIN_DELAY;
	case POP3_RESP_CODE_SYS_TEMP:
	case POP3_RESP_CODE_SYS_PERM: return POP3_CLIENT_END_SYS;
	default: return POP3_CLIENT_END_AUTH;
	}
}

static void on_greeting(struct pop3_client *c, const struct cmd_expect *e,
                        const struct pop3_resp_status_line *sl)
{
	if (sl->status != POP3_RESP_OK) {
		char t[POP3_CLIENT_TEXT_MAX + 1];
		text_copy(t, sizeof t, sl->text, sl->text_len);
		outcome_set(c, POP3_CLIENT_END_GREETING, sl->code, "greeting refused: %s", t);
		close_now(c);
		return;
	}
	const char *ts;
	c->greeted = 1;
	size_t n = pop3_resp_apop_timestamp(sl->text, sl->text_len, &ts);
	if (n > 0) {
		memcpy(c->timestamp, ts, n);
		c->timestamp_len = n;
		c->caps.apop_timestamp = 1;
	}
	send_str(c, "CAPA", EX_CAPA);
}

/* After CAPA (before or after TLS): STLS, or the login. */
static void after_capa(struct pop3_client *c)
{
	if (c->conf.tls == POP3_CLIENT_TLS_STARTTLS && !c->caps.tls) {
		if (c->caps.capa.seen && !c->caps.capa.stls) {
			conn_quit(c, POP3_CLIENT_END_TLS_UNAVAILABLE, POP3_RESP_CODE_NONE,
			          "STLS required, but the server does not offer it", "", 0);
			return;
		}
		send_str(c, "STLS", EX_STLS);
		return;
	}
	login(c);
}

/* Only -ERR comes here (+OK reads the lines, and "." calls after_capa()). */
static void on_capa(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	/* An RFC 1939 server without CAPA: carry on without capabilities. */
	after_capa(c);
}

static void on_stls(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	if (sl->status != POP3_RESP_OK) {
		conn_quit(c, POP3_CLIENT_END_TLS_UNAVAILABLE, sl->code, "STLS refused", sl->text,
		          sl->text_len);
		return;
	}
	/* RFC 2595 4: the handshake starts now; whatever else came in plaintext
	 * is discarded unread (pop3_client_input). */
	c->phase = PH_TLS;
	ev_push(c, POP3_CLIENT_ACT_START_TLS, 0);
}

static void on_user(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	if (sl->status != POP3_RESP_OK) {
		conn_quit(c, login_end(sl->code), sl->code, "USER refused", sl->text, sl->text_len);
		return;
	}
	send_pass(c);
}

static void on_pass(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	if (sl->status != POP3_RESP_OK) {
		conn_quit(c, login_end(sl->code), sl->code, "login refused", sl->text,
		          sl->text_len);
		return;
	}
	start_listing(c);
}

static void on_apop(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	if (sl->status == POP3_RESP_OK) {
		wipe_password(c);
		start_listing(c);
		return;
	}
	enum pop3_client_end end = login_end(sl->code);
	if (c->conf.auth == POP3_CLIENT_AUTH_AUTO && end == POP3_CLIENT_END_AUTH &&
	    !c->apop_tried) {
		/* The server has a timestamp but no APOP secret for us: USER/PASS. */
		c->apop_tried = 1;
		send_user(c);
		return;
	}
	wipe_password(c);
	conn_quit(c, end, sl->code, "APOP refused", sl->text, sl->text_len);
}

static void on_stat(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	if (sl->status != POP3_RESP_OK) {
		conn_quit(c, POP3_CLIENT_END_SYS, sl->code, "STAT refused", sl->text, sl->text_len);
		return;
	}
	uint64_t n, o;
	if (pop3_resp_stat_parse(sl->text, sl->text_len, &n, &o) != 0) {
		protocol_error(c, "malformed STAT reply");
		return;
	}
	c->listing.stat_count = n;
	c->listing.stat_octets = o;
	if (n > c->conf.listing_max) {
		char r[128];
		snprintf(r, sizeof r, "%llu messages, more than the %zu a listing may hold",
		         (unsigned long long)n, c->conf.listing_max);
		conn_abort(c, POP3_CLIENT_END_LISTING, POP3_RESP_CODE_NONE, r);
		return;
	}
	if (!c->caps.capa.pipelining)
		send_str(c, "LIST", EX_LIST);
}

/* Only -ERR (as CAPA). */
static void on_list(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	conn_quit(c, POP3_CLIENT_END_SYS, sl->code, "LIST refused", sl->text, sl->text_len);
}

static void listing_done(struct pop3_client *c);

/* Only -ERR (as CAPA): no UIDL; every uid stays "" (the caller decides what that means). */
static void on_uidl(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	listing_done(c);
}

static void on_retr(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	const struct pop3_client_entry *en = pop3_client_entry(c, e->arg);
	if (sl->status != POP3_RESP_OK) {
		struct pop3_client_event *ev = ev_push(c, POP3_CLIENT_ACT_MSG_ERROR, e->arg);
		if (ev != NULL) {
			ev->error = POP3_CLIENT_MSG_REFUSED;
			ev->code = sl->code;
			text_copy(ev_text(c, ev), POP3_CLIENT_TEXT_MAX + 1, sl->text, sl->text_len);
		}
		return;
	}
	uint64_t size = en ? en->size : 0;
	struct pop3_client_event *ev = ev_push(c, POP3_CLIENT_ACT_MSG_BEGIN, e->arg);
	if (ev != NULL)
		ev->size = size;
	/* Lying sizes: a small allowance for servers that count line ends as LF. */
	c->data_size = size;
	c->data_limit = size + size / 8 + c->conf.size_slack;
	pop3_resp_data_init(&c->data, POP3_RESP_DATA_CRLF);
	c->rd = RD_DATA;
}

static void on_dele(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	int ok = sl->status == POP3_RESP_OK;
	struct pop3_client_event *ev =
	        ev_push(c, ok ? POP3_CLIENT_ACT_DELE_OK : POP3_CLIENT_ACT_DELE_ERROR, e->arg);
	if (ok) {
		c->outcome.deleted++;
	} else if (ev != NULL) {
		ev->error = POP3_CLIENT_MSG_REFUSED;
		ev->code = sl->code;
		text_copy(ev_text(c, ev), POP3_CLIENT_TEXT_MAX + 1, sl->text, sl->text_len);
	}
}

static void on_quit(struct pop3_client *c, const struct cmd_expect *e,
                    const struct pop3_resp_status_line *sl)
{
	char t[POP3_CLIENT_TEXT_MAX + 1];
	text_copy(t, sizeof t, sl->text, sl->text_len);
	if (sl->status == POP3_RESP_OK)
		outcome_set(c, POP3_CLIENT_END_OK, POP3_RESP_CODE_NONE, "signed off%s%s",
		            t[0] ? ": " : "", t);
	else
		outcome_set(c, POP3_CLIENT_END_QUIT_REFUSED, sl->code, "QUIT refused: %s", t);
	close_now(c);
}

static const reply_handler handlers[] = {
        [EX_GREETING] = on_greeting, [EX_CAPA] = on_capa, [EX_STLS] = on_stls, [EX_USER] = on_user,
        [EX_PASS] = on_pass,         [EX_APOP] = on_apop, [EX_STAT] = on_stat, [EX_LIST] = on_list,
        [EX_UIDL] = on_uidl,         [EX_RETR] = on_retr, [EX_DELE] = on_dele, [EX_QUIT] = on_quit,
};

/* ---- the listing ---- */

static int entry_cmp(const void *a, const void *b)
{
	const struct pop3_client_entry *x = a, *y = b;
	return x->num < y->num ? -1 : x->num > y->num;
}

static struct pop3_client_entry *entry_find(struct pop3_client *c, uint64_t num)
{
	struct pop3_client_entry key = {.num = num};
	if (c->listing.n == 0)
		return NULL;
	return bsearch(&key, c->entries, c->listing.n, sizeof key, entry_cmp);
}

static void list_line(struct pop3_client *c, const char *line, size_t len)
{
	uint64_t num, size;
	if (pop3_resp_list_parse(line, len, &num, &size) != 0) {
		protocol_error(c, "malformed LIST line");
		return;
	}
	if (num > c->listing.stat_count) {
		protocol_error(c, "LIST names a message beyond STAT's count");
		return;
	}
	if (c->listing.n >= c->conf.listing_max) {
		conn_abort(c, POP3_CLIENT_END_LISTING, POP3_RESP_CODE_NONE,
		           "LIST holds more messages than a listing may");
		return;
	}
	if (c->listing.n == c->entries_cap) {
		size_t cap = c->entries_cap ? c->entries_cap * 2 : 64;
		if (cap > c->conf.listing_max)
			cap = c->conf.listing_max;
		void *p = realloc(c->entries, cap * sizeof *c->entries);
		if (p == NULL) {
			conn_abort(c, POP3_CLIENT_END_LOCAL, POP3_RESP_CODE_NONE,
			           "local error: out of memory for the listing");
			return;
		}
		c->entries = p;
		c->entries_cap = cap;
	}
	struct pop3_client_entry *en = &c->entries[c->listing.n++];
	memset(en, 0, sizeof *en);
	en->num = num;
	en->size = size;
}

/* LIST's "." came: sort, check that no number is listed twice. */
static void list_end(struct pop3_client *c)
{
	if (c->listing.n > 0)
		qsort(c->entries, c->listing.n, sizeof *c->entries, entry_cmp);
	for (size_t i = 1; i < c->listing.n; i++) {
		if (c->entries[i].num == c->entries[i - 1].num) {
			protocol_error(c, "LIST names a message twice");
			return;
		}
	}
	c->listing.entries = c->entries;
	if (c->phase != PH_DONE && !c->caps.capa.pipelining)
		send_str(c, "UIDL", EX_UIDL);
}

static void uidl_line(struct pop3_client *c, const char *line, size_t len)
{
	uint64_t num;
	const char *uid;
	size_t ul;
	if (pop3_resp_uidl_parse(line, len, &num, &uid, &ul) != 0) {
		protocol_error(c, "malformed UIDL line");
		return;
	}
	struct pop3_client_entry *en = entry_find(c, num);
	if (en == NULL) {
		protocol_error(c, "UIDL names a message LIST did not");
		return;
	}
	if (en->uid_len > 0) {
		protocol_error(c, "UIDL names a message twice");
		return;
	}
	memcpy(en->uid, uid, ul);
	en->uid[ul] = '\0';
	en->uid_len = ul;
}

static int uid_order(const void *a, const void *b)
{
	const struct pop3_client_entry *x = *(const struct pop3_client_entry *const *)a;
	const struct pop3_client_entry *y = *(const struct pop3_client_entry *const *)b;
	int d = strcmp(x->uid, y->uid);
	if (d != 0)
		return d;
	return x->num < y->num ? -1 : x->num > y->num;
}

/* Repeated unique-ids (a broken or hostile server): all but the lowest number are marked. */
static int mark_dup_uids(struct pop3_client *c)
{
	size_t n = c->listing.n;
	if (n < 2)
		return 0;
	struct pop3_client_entry **v = malloc(n * sizeof *v);
	if (v == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		v[i] = &c->entries[i];
	qsort(v, n, sizeof *v, uid_order);
	for (size_t i = 1; i < n; i++) {
		if (v[i]->uid_len > 0 && strcmp(v[i]->uid, v[i - 1]->uid) == 0) {
			v[i]->dup_uid = 1;
			c->listing.dup_uids++;
		}
	}
	free(v);
	return 0;
}

/* The listing is complete: hand it over; the caller's turn. */
static void listing_done(struct pop3_client *c)
{
	c->listing.have_uidl = c->uidl_seen;
	c->listing.entries = c->entries;
	if (mark_dup_uids(c) != 0) {
		conn_abort(c, POP3_CLIENT_END_LOCAL, POP3_RESP_CODE_NONE,
		           "local error: out of memory for the listing");
		return;
	}
	c->eflags = calloc(c->listing.n ? c->listing.n : 1, 1);
	if (c->eflags == NULL) {
		conn_abort(c, POP3_CLIENT_END_LOCAL, POP3_RESP_CODE_NONE,
		           "local error: out of memory for the listing");
		return;
	}
	c->have_listing = 1;
	c->phase = PH_TRANS;
	c->ready_owed = 1;
	ev_push(c, POP3_CLIENT_ACT_LISTING, 0);
}

/* One line of a multi-line CAPA, LIST or UIDL reply. */
static void multiline_line(struct pop3_client *c, const char *line, size_t len)
{
	const struct cmd_expect *e = cmd_pipe_head(&c->p);
	/* No restart per line: a listing that trickles in must still end within
	 * the reply deadline (listing_max lines at one a minute would be weeks). */
	int end = pop3_resp_multiline_end(&line, &len);
	if (!end) {
		if (e->kind == EX_CAPA)
			pop3_resp_capa_line(&c->caps.capa, line, len);
		else if (e->kind == EX_LIST)
			list_line(c, line, len);
		else
			uidl_line(c, line, len);
		return;
	}
	struct cmd_expect done = fifo_pop(c);
	c->rd = RD_STATUS;
	c->handling = (int)done.kind;
	if (done.kind == EX_CAPA)
		after_capa(c);
	else if (done.kind == EX_LIST)
		list_end(c);
	else
		listing_done(c);
	c->handling = -1;
}

/* ---- reading ---- */

static void status_line(struct pop3_client *c, const char *line, size_t len)
{
	struct pop3_resp_status_line sl;
	if (!c->line_allowed) {
		protocol_error(c, "unsolicited reply");
		return;
	}
	if (pop3_resp_status_parse(line, len, &sl) == POP3_RESP_BAD) {
		protocol_error(c, "neither +OK nor -ERR");
		return;
	}
	const struct cmd_expect *h = cmd_pipe_head(&c->p);
	if (sl.status == POP3_RESP_OK &&
	    (h->kind == EX_CAPA || h->kind == EX_LIST || h->kind == EX_UIDL)) {
		/* The lines follow; the expectation stays until "." (multiline_line). */
		if (h->kind == EX_CAPA)
			memset(&c->caps.capa, 0, sizeof c->caps.capa);
		c->uidl_seen |= h->kind == EX_UIDL;
		c->rd = RD_LINES;
		return;
	}
	if (sl.status == POP3_RESP_OK && h->kind == EX_RETR) {
		on_retr(c, h, &sl); /* the expectation stays until the data ends */
		return;
	}
	struct cmd_expect e = fifo_pop(c);
	c->handling = (int)e.kind;
	handlers[e.kind](c, &e, &sl);
	c->handling = -1;
}

/* Message data; returns octets consumed. */
static size_t data_input(struct pop3_client *c, const char *in, size_t len)
{
	size_t used, w;
	const struct cmd_expect *h = cmd_pipe_head(&c->p);
	uint64_t out = c->data.out_octets;
	/* Never hand on more than a few octets past the limit (lying sizes). */
	size_t cap = c->conf.chunk_max;
	if (out <= c->data_limit && c->data_limit - out + 4 < cap)
		cap = (size_t)(c->data_limit - out + 4);
	enum pop3_resp_data_event ev =
	        pop3_resp_data_feed(&c->data, in, len, &used, c->chunk, cap, &w);
	if (used > 0)
		c->dl.serial++; /* progress: the data deadline restarts */
	if (c->data.out_octets > c->data_limit) {
		/* Hand on exactly the limit, however the octets were split. */
		uint64_t over = c->data.out_octets - c->data_limit;
		w = over < w ? w - (size_t)over : 0;
	}
	if (w > 0) {
		struct pop3_client_event *e = ev_push(c, POP3_CLIENT_ACT_MSG_DATA, h->arg);
		if (e != NULL) {
			e->data = c->chunk;
			e->len = w;
		}
	}
	if (c->data.out_octets > c->data_limit) {
		struct cmd_expect x = fifo_pop(c);
		struct pop3_client_event *e = ev_push(c, POP3_CLIENT_ACT_MSG_ERROR, x.arg);
		char r[160];
		if (e != NULL) {
			e->error = POP3_CLIENT_MSG_OVERSIZE;
			snprintf(ev_text(c, e), POP3_CLIENT_TEXT_MAX + 1,
			         "more octets than the %llu listed",
			         (unsigned long long)c->data_size);
		}
		snprintf(r, sizeof r, "message %llu is larger than its listed size",
		         (unsigned long long)x.arg);
		c->rd = RD_STATUS;
		conn_abort(c, POP3_CLIENT_END_PROTOCOL, POP3_RESP_CODE_NONE, r);
		return used;
	}
	if (ev == POP3_RESP_DATA_END) {
		struct cmd_expect x = fifo_pop(c);
		struct pop3_client_event *e = ev_push(c, POP3_CLIENT_ACT_MSG_END, x.arg);
		if (e != NULL)
			e->size = c->data.out_octets;
		c->outcome.retrieved++;
		c->rd = RD_STATUS;
	}
	return used;
}

/* Status and listing lines; returns octets consumed. */
static size_t line_input(struct pop3_client *c, const char *in, size_t len)
{
	size_t used;
	if (!pop3_resp_lines_pending(&c->lines)) {
		/* This octet opens a line: may the peer be answering the head yet? */
		const struct cmd_expect *h = cmd_pipe_head(&c->p);
		c->line_allowed = h != NULL && (c->rd != RD_STATUS || h->end <= c->p.out_sent);
	}
	enum pop3_resp_lines_event ev = pop3_resp_lines_feed(&c->lines, in, len, &used);
	if (ev == POP3_RESP_LINES_TOO_LONG) {
		protocol_error(c, "line too long");
	} else if (ev == POP3_RESP_LINES_BARE_LF) {
		protocol_error(c, "line not ended by CRLF");
	} else if (ev == POP3_RESP_LINES_LINE) {
		if (c->rd == RD_LINES)
			multiline_line(c, c->lines.line, c->lines.len);
		else
			status_line(c, c->lines.line, c->lines.len);
		pump(c);
		if (idle(c))
			c->ready_owed = 1; /* a reply completed the last request */
	}
	return used;
}

size_t pop3_client_input(struct pop3_client *c, const char *data, size_t len)
{
	if (c->phase == PH_CONNECT)
		pop3_client_connected(c);
	size_t pos = 0;
	while (pos < len && c->ev_n == 0 && c->phase != PH_DONE && c->phase != PH_TLS) {
		if (c->rd == RD_DATA) {
			pos += data_input(c, data + pos, len - pos);
			if (c->rd != RD_DATA)
				pump(c);
			if (c->rd != RD_DATA && idle(c))
				c->ready_owed = 1;
		} else {
			pos += line_input(c, data + pos, len - pos);
		}
	}
	if (c->phase == PH_TLS)
		c->discarded += len - pos; /* after STLS's +OK: never read (CVE-2011-0411) */
	if (c->phase == PH_DONE || c->phase == PH_TLS)
		pos = len;
	deadline_update(c);
	return pos;
}

/* ---- the other events ---- */

void pop3_client_conf_defaults(struct pop3_client_conf *c)
{
	static const struct pop3_client_timeouts t = {
	        .connect = 30,
	        .greeting = 60,
	        .reply = 60,
	        .tls_handshake = 60,
	        .data = 120,
	        .quit = 30,
	};
	memset(c, 0, sizeof *c);
	c->tls = POP3_CLIENT_TLS_NONE;
	c->auth = POP3_CLIENT_AUTH_AUTO;
	c->timeouts = t;
	c->line_max = 1024;
	c->listing_max = 100000;
	c->size_slack = 4096;
	c->queue_max = 64;
	c->chunk_max = 16384;
}

static int word_ok(const char *s, size_t max, int spaces)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\r' || ch == '\n' || (!spaces && (ch <= 0x20 || ch == 0x7f)))
			return 0;
	}
	return 1;
}

static int conf_valid(const struct pop3_client_conf *f)
{
	return word_ok(f->user, POP3_CLIENT_USER_MAX, 0) &&
	       word_ok(f->password, POP3_CLIENT_PASS_MAX, 1) &&
	       (unsigned)f->tls <= POP3_CLIENT_TLS_IMPLICIT &&
	       (unsigned)f->auth <= POP3_CLIENT_AUTH_APOP && f->line_max >= POP3_RESP_LINE_MIN &&
	       f->line_max <= 65536 && f->listing_max >= 1 && f->listing_max <= 10000000 &&
	       f->queue_max >= 1 && f->queue_max <= 4096 && f->chunk_max >= 512 &&
	       f->chunk_max <= 1048576 && f->size_slack <= POP3_RESP_NUM_MAX;
}

struct pop3_client *pop3_client_new(const struct pop3_client_conf *conf)
{
	if (conf == NULL || !conf_valid(conf))
		return NULL;
	struct pop3_client *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->conf = *conf;
	snprintf(c->user, sizeof c->user, "%s", conf->user);
	c->pass_len = strlen(conf->password);
	memcpy(c->pass, conf->password, c->pass_len);
	c->conf.user = c->user;
	c->conf.password = NULL; /* only c->pass holds it, wiped after use */
	int pipe_rc =
	        cmd_pipe_init(&c->p, 1024 + CMD_MAX + conf->queue_max * 32, conf->queue_max + 8);
	c->ev_cap = 2 * conf->queue_max + 32;
	c->line_buf = malloc(conf->line_max);
	c->chunk = malloc(conf->chunk_max);
	c->reqs = calloc(conf->queue_max, sizeof *c->reqs);
	c->evs = calloc(c->ev_cap, sizeof *c->evs);
	if (pipe_rc != 0 || !c->line_buf || !c->chunk || !c->reqs || !c->evs) {
		pop3_client_free(c);
		return NULL;
	}
	pop3_resp_lines_init(&c->lines, c->line_buf, conf->line_max);
	c->handling = -1;
	c->phase = PH_CONNECT;
	c->dl_phase = PH_DONE; /* forces the first deadline_update() */
	deadline_update(c);
	return c;
}

void pop3_client_free(struct pop3_client *c)
{
	if (c == NULL)
		return;
	wipe_password(c);
	cmd_pipe_release(&c->p, 1); /* the output may hold PASS or APOP */
	free(c->line_buf);
	free(c->chunk);
	free(c->reqs);
	free(c->evs);
	free(c->entries);
	free(c->eflags);
	free(c);
}

static void greet_wait(struct pop3_client *c)
{
	c->phase = PH_BUSY;
	c->rd = RD_STATUS;
	cmd_pipe_expect(&c->p, EX_GREETING, 0); /* end 0: the server may speak at once */
}

void pop3_client_connected(struct pop3_client *c)
{
	if (c->phase != PH_CONNECT)
		return;
	if (c->conf.tls == POP3_CLIENT_TLS_IMPLICIT) {
		c->phase = PH_TLS; /* RFC 8314 3: TLS first, then the greeting inside it */
		ev_push(c, POP3_CLIENT_ACT_START_TLS, 0);
	} else {
		greet_wait(c);
	}
	deadline_update(c);
}

void pop3_client_connect_failed(struct pop3_client *c, const char *why)
{
	if (c->phase != PH_CONNECT)
		return;
	outcome_set(c, POP3_CLIENT_END_CONNECT, POP3_RESP_CODE_NONE, "%s", why ? why : "");
	close_now(c);
	deadline_update(c);
}

void pop3_client_abort(struct pop3_client *c, const char *why)
{
	if (c->phase == PH_DONE)
		return;
	conn_abort(c, POP3_CLIENT_END_LOCAL, POP3_RESP_CODE_NONE, why ? why : "aborted");
	deadline_update(c);
}

/* Timeout or drop: the end depends on where the session was. */
static void conn_lost(struct pop3_client *c, enum pop3_client_end end, const char *what)
{
	char buf[64], r[160];
	if (c->phase == PH_DONE)
		return;
	if (c->phase == PH_QUIT && c->outcome.end == POP3_CLIENT_END_NONE) {
		snprintf(r, sizeof r, "%s waiting for the reply to QUIT", what);
		conn_abort(c, POP3_CLIENT_END_QUIT_UNANSWERED, POP3_RESP_CODE_NONE, r);
	} else {
		snprintf(r, sizeof r, "%s %s", what, stage(c, "waiting for", buf, sizeof buf));
		conn_abort(c, c->phase == PH_TLS ? POP3_CLIENT_END_TLS_FAILED : end,
		           POP3_RESP_CODE_NONE, r);
	}
	deadline_update(c);
}

void pop3_client_timeout(struct pop3_client *c)
{
	conn_lost(c, POP3_CLIENT_END_TIMEOUT, "timed out");
}

void pop3_client_closed(struct pop3_client *c)
{
	conn_lost(c, POP3_CLIENT_END_DROPPED, "connection lost");
}

void pop3_client_tls_done(struct pop3_client *c, int ok)
{
	if (c->phase != PH_TLS)
		return;
	if (!ok) {
		conn_abort(c, POP3_CLIENT_END_TLS_FAILED, POP3_RESP_CODE_NONE,
		           "TLS handshake failed");
	} else if (!c->greeted) { /* implicit TLS: the greeting comes inside it */
		c->caps.tls = 1;
		greet_wait(c);
	} else {
		/* RFC 2595 4: forget the capabilities learnt in plaintext; CAPA again. */
		memset(&c->caps.capa, 0, sizeof c->caps.capa);
		c->caps.tls = 1;
		c->phase = PH_BUSY;
		send_str(c, "CAPA", EX_CAPA);
	}
	deadline_update(c);
}

/* ---- requests ---- */

size_t pop3_client_room(const struct pop3_client *c)
{
	if (c->phase != PH_TRANS || c->quit_asked)
		return 0;
	size_t used = c->req_n + c->inflight;
	return used >= c->conf.queue_max ? 0 : c->conf.queue_max - used;
}

static int request(struct pop3_client *c, enum expect_kind kind, uint64_t num)
{
	if (pop3_client_room(c) == 0)
		return -1;
	struct pop3_client_entry *en = entry_find(c, num);
	if (en == NULL)
		return -1;
	unsigned char *fl = &c->eflags[en - c->entries];
	if (*fl & EF_DELE)
		return -1; /* RFC 1939 5: a deleted message may not be named again */
	if (kind == EX_DELE)
		*fl |= EF_DELE;
	c->reqs[(c->req_head + c->req_n) % c->conf.queue_max] = (struct req){kind, num};
	c->req_n++;
	c->ready_owed = 0;
	pump(c);
	deadline_update(c);
	return 0;
}

int pop3_client_retr(struct pop3_client *c, uint64_t num)
{
	return request(c, EX_RETR, num);
}

int pop3_client_dele(struct pop3_client *c, uint64_t num)
{
	return request(c, EX_DELE, num);
}

int pop3_client_quit(struct pop3_client *c)
{
	if (c->phase != PH_TRANS || c->quit_asked)
		return -1;
	c->quit_asked = 1;
	c->ready_owed = 0;
	pump(c);
	deadline_update(c);
	return 0;
}

/* ---- output, actions, accessors ---- */

const char *pop3_client_output(const struct pop3_client *c, size_t *len)
{
	*len = c->p.out_len;
	return c->p.out;
}

void pop3_client_output_done(struct pop3_client *c, size_t n)
{
	/* What left may have held PASS or APOP: wipe it, and the copies the move leaves. */
	cmd_pipe_output_done(&c->p, n, 1);
	deadline_update(c);
}

enum pop3_client_action pop3_client_next_action(struct pop3_client *c, struct pop3_client_event *ev)
{
	struct pop3_client_event none = {.action = POP3_CLIENT_ACT_NONE, .text = ""};
	if (c->ev_n > 0) {
		struct evslot *s = &c->evs[c->ev_head];
		c->ev_head = (c->ev_head + 1) % c->ev_cap;
		c->ev_n--;
		if (ev != NULL)
			*ev = s->ev;
		return s->ev.action;
	}
	if (c->ready_owed) {
		c->ready_owed = 0;
		if (idle(c)) {
			none.action = POP3_CLIENT_ACT_READY;
			if (ev != NULL)
				*ev = none;
			return POP3_CLIENT_ACT_READY;
		}
	}
	if (ev != NULL)
		*ev = none;
	return POP3_CLIENT_ACT_NONE;
}

struct pop3_client_deadline pop3_client_deadline(const struct pop3_client *c)
{
	return c->dl;
}

const struct pop3_client_listing *pop3_client_listing(const struct pop3_client *c)
{
	return c->have_listing ? &c->listing : NULL;
}

const struct pop3_client_entry *pop3_client_entry(const struct pop3_client *c, uint64_t num)
{
	if (c->entries == NULL)
		return NULL;
	return entry_find((struct pop3_client *)c, num);
}

const struct pop3_client_outcome *pop3_client_outcome(const struct pop3_client *c)
{
	return &c->outcome;
}

const struct pop3_client_caps *pop3_client_caps(const struct pop3_client *c)
{
	return &c->caps;
}

uint64_t pop3_client_discarded(const struct pop3_client *c)
{
	return c->discarded;
}

int pop3_client_done(const struct pop3_client *c)
{
	return c->phase == PH_DONE;
}
