/*
 * smtp_client: the SMTP client state machine (RFC 5321 3, 4; RFC 2920, 3207).
 *
 * Shape (after curl's per-state handlers): every command we send pushes an
 * expectation (which reply it awaits, and the output offset where its octets
 * end) onto a FIFO; every complete reply pops the head and runs that kind's
 * handler. Pipelining (RFC 2920) is then only a question of how many commands
 * the pump sends before the replies come back: one at a time without it, the
 * whole MAIL, RCPT..., DATA group with it. The replies are matched in order
 * either way (RFC 2920 3.1: the server answers in order).
 *
 * A reply must answer a command the peer can have read: the head's octets must
 * have been handed to the glue (smtp_client_output_done()) before the reply's
 * first octet arrived. Octets that come earlier (a second line after the
 * greeting in the same read, replies beyond the commands sent) are the shape of
 * a desynchronisation attack, and a protocol error. Within one smtp_client_input()
 * call nothing we produce has been sent yet, so the check is exact there; across
 * calls it is as good as the glue's reads allow.
 */
#include "deliver/smtp_client.h"

#include "proto/cmd_pipe.h"
#include "proto/dotstuff.h"
#include "proto/esmtp_param.h"
#include "proto/smtp_reply_parse.h"
#include "util/strutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Output kept free for the control commands (RSET, QUIT, DATA, the final dot, EHLO). */
#define OUT_RESERVE 1024

enum phase {
	PH_CONNECT = 0, /* before smtp_client_connected() */
	PH_BUSY, /* replies awaited outside a transaction (greeting, EHLO, RSET) */
	PH_TLS, /* STARTTLS's 220 seen; the glue is shaking hands */
	PH_READY, /* idle, waiting for the caller */
	PH_TXN, /* a transaction's commands and replies */
	PH_BODY, /* after 354: the caller is feeding the body */
	PH_QUIT, /* QUIT sent */
	PH_DONE, /* ACT_CLOSE issued */
};

enum expect_kind {
	EX_GREETING = 0,
	EX_EHLO,
	EX_HELO,
	EX_STARTTLS,
	EX_RSET,
	EX_MAIL,
	EX_RCPT,
	EX_DATA,
	EX_DOT,
	EX_NULL_DOT, /* the lone "." after a 354 with no recipient accepted */
	EX_QUIT,
};

/* A recipient's progress inside a transaction (the public status says the outcome). */
enum rcpt_step { RS_UNSENT = 0, RS_SENT, RS_ACCEPTED, RS_FINAL };

/* The reply being read, line by line. */
struct reply_acc {
	int allowed; /* its first octet came after the head command was sent */
	struct smtp_client_reply r;
	size_t text_len;
	struct smtp_client_caps caps; /* EHLO keywords seen so far */
};

struct smtp_client {
	struct smtp_client_conf conf;
	char helo[SMTP_CLIENT_HELO_MAX + 1];
	enum phase phase;

	struct smtp_reply_parse rp;
	char *line_buf;
	int line_allowed;
	struct reply_acc acc;

	struct cmd_pipe p; /* the output and the replies awaited, in order */
	const struct cmd_expect *handling; /* the reply's expectation while its handler runs */

	struct smtp_client_caps caps;
	int tls_tried;
	unsigned actions; /* bit per enum smtp_client_action */

	struct smtp_client_deadline dl;
	unsigned long dl_seq;
	enum phase dl_phase;

	/* The message under way. */
	const struct smtp_client_msg *msg;
	struct smtp_client_rcpt_result *rr;
	unsigned char *rstep;
	size_t next_rcpt, rcpt_waiting, accepted;
	int mail_sent, mail_failed, data_sent, dot_ok, cmds_sent;
	struct smtp_client_reply txn_reply;
	struct dotstuff ds;

	struct smtp_client_result result;
	int have_result;
	struct smtp_client_conn_result conn;
	uint64_t discarded;
};

/* ---- small helpers ---- */

void smtp_client_reply_set(struct smtp_client_reply *r, int code, const char *enh, const char *fmt,
                           ...)
{
	va_list ap;
	r->code = code;
	snprintf(r->enh, sizeof r->enh, "%s", enh);
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof r->text, fmt, ap);
	va_end(ap);
}

static int printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

static void act(struct smtp_client *c, enum smtp_client_action a)
{
	c->actions |= 1u << a;
}

/* The peer may answer the head only once its command has left (see the top). */
static int head_allowed(const struct smtp_client *c)
{
	return cmd_pipe_head_sent(&c->p);
}

static size_t cmd_room(const struct smtp_client *c)
{
	size_t used = c->p.out_len + OUT_RESERVE;
	return used >= c->conf.out_max ? 0 : c->conf.out_max - used;
}

/* ---- the names ---- */

const char *smtp_client_wait_name(enum smtp_client_wait w)
{
	static const char *const names[] = {
	        [SMTP_CLIENT_WAIT_NONE] = "none",         [SMTP_CLIENT_WAIT_CONNECT] = "connect",
	        [SMTP_CLIENT_WAIT_GREETING] = "greeting", [SMTP_CLIENT_WAIT_EHLO] = "EHLO",
	        [SMTP_CLIENT_WAIT_HELO] = "HELO",         [SMTP_CLIENT_WAIT_STARTTLS] = "STARTTLS",
	        [SMTP_CLIENT_WAIT_TLS] = "TLS handshake", [SMTP_CLIENT_WAIT_RSET] = "RSET",
	        [SMTP_CLIENT_WAIT_MAIL] = "MAIL FROM",    [SMTP_CLIENT_WAIT_RCPT] = "RCPT TO",
	        [SMTP_CLIENT_WAIT_DATA] = "DATA",         [SMTP_CLIENT_WAIT_BODY] = "message body",
	        [SMTP_CLIENT_WAIT_DOT] = "end of data",   [SMTP_CLIENT_WAIT_QUIT] = "QUIT",
	};
	if ((unsigned)w >= sizeof names / sizeof names[0])
		return "?";
	return names[w];
}

const char *smtp_client_rcpt_status_name(enum smtp_client_rcpt_status s)
{
	switch (s) {
	case SMTP_CLIENT_RCPT_PENDING: return "pending";
	case SMTP_CLIENT_RCPT_DELIVERED: return "delivered";
	case SMTP_CLIENT_RCPT_DEFERRED: return "deferred";
	case SMTP_CLIENT_RCPT_FAILED: return "failed";
	}
	return "?";
}

const char *smtp_client_msg_status_name(enum smtp_client_msg_status s)
{
	switch (s) {
	case SMTP_CLIENT_MSG_SENT: return "sent";
	case SMTP_CLIENT_MSG_DEFERRED: return "deferred";
	case SMTP_CLIENT_MSG_FAILED: return "failed";
	}
	return "?";
}

const char *smtp_client_conn_status_name(enum smtp_client_conn_status s)
{
	static const char *const names[] = {
	        [SMTP_CLIENT_CONN_OK] = "ok",
	        [SMTP_CLIENT_CONN_GREETING] = "greeting refused",
	        [SMTP_CLIENT_CONN_HELO] = "HELO refused",
	        [SMTP_CLIENT_CONN_TLS_FAILED] = "TLS failed",
	        [SMTP_CLIENT_CONN_TLS_UNAVAILABLE] = "TLS unavailable",
	        [SMTP_CLIENT_CONN_SHUTDOWN] = "shutdown by peer",
	        [SMTP_CLIENT_CONN_PROTOCOL] = "protocol error",
	        [SMTP_CLIENT_CONN_TIMEOUT] = "timeout",
	        [SMTP_CLIENT_CONN_DROPPED] = "dropped",
	        [SMTP_CLIENT_CONN_RSET] = "RSET refused",
	};
	if ((unsigned)s >= sizeof names / sizeof names[0])
		return "?";
	return names[s];
}

/* ---- deadlines ---- */

static enum smtp_client_wait wait_of_kind(enum expect_kind kind)
{
	static const enum smtp_client_wait by_kind[] = {
	        [EX_GREETING] = SMTP_CLIENT_WAIT_GREETING,
	        [EX_EHLO] = SMTP_CLIENT_WAIT_EHLO,
	        [EX_HELO] = SMTP_CLIENT_WAIT_HELO,
	        [EX_STARTTLS] = SMTP_CLIENT_WAIT_STARTTLS,
	        [EX_RSET] = SMTP_CLIENT_WAIT_RSET,
	        [EX_MAIL] = SMTP_CLIENT_WAIT_MAIL,
	        [EX_RCPT] = SMTP_CLIENT_WAIT_RCPT,
	        [EX_DATA] = SMTP_CLIENT_WAIT_DATA,
	        [EX_DOT] = SMTP_CLIENT_WAIT_DOT,
	        [EX_NULL_DOT] = SMTP_CLIENT_WAIT_DOT,
	        [EX_QUIT] = SMTP_CLIENT_WAIT_QUIT,
	};
	return by_kind[kind];
}

static enum smtp_client_wait wait_of(const struct smtp_client *c)
{
	const struct cmd_expect *e = cmd_pipe_head(&c->p);
	if (e != NULL)
		return wait_of_kind(e->kind);
	switch (c->phase) {
	case PH_CONNECT: return SMTP_CLIENT_WAIT_CONNECT;
	case PH_TLS: return SMTP_CLIENT_WAIT_TLS;
	case PH_BODY: return SMTP_CLIENT_WAIT_BODY;
	default: return SMTP_CLIENT_WAIT_NONE;
	}
}

static unsigned wait_seconds(const struct smtp_client_timeouts *t, enum smtp_client_wait w)
{
	switch (w) {
	case SMTP_CLIENT_WAIT_NONE: return 0;
	case SMTP_CLIENT_WAIT_CONNECT: return t->connect;
	case SMTP_CLIENT_WAIT_GREETING: return t->greeting;
	case SMTP_CLIENT_WAIT_EHLO:
	case SMTP_CLIENT_WAIT_HELO: return t->helo;
	case SMTP_CLIENT_WAIT_STARTTLS: return t->starttls;
	case SMTP_CLIENT_WAIT_TLS: return t->tls_handshake;
	case SMTP_CLIENT_WAIT_RSET: return t->rset;
	case SMTP_CLIENT_WAIT_MAIL: return t->mail;
	case SMTP_CLIENT_WAIT_RCPT: return t->rcpt;
	case SMTP_CLIENT_WAIT_DATA: return t->data_init;
	case SMTP_CLIENT_WAIT_BODY: return t->data_block;
	case SMTP_CLIENT_WAIT_DOT: return t->data_done;
	case SMTP_CLIENT_WAIT_QUIT: return t->quit;
	}
	return 0;
}

/* A new wait (another head, another phase) re-arms the glue's timer. */
static void deadline_update(struct smtp_client *c)
{
	const struct cmd_expect *e = cmd_pipe_head(&c->p);
	unsigned long seq = e ? e->seq : 0;
	if (seq == c->dl_seq && c->phase == c->dl_phase)
		return;
	c->dl_seq = seq;
	c->dl_phase = c->phase;
	c->dl.wait = wait_of(c);
	c->dl.seconds = wait_seconds(&c->conf.timeouts, c->dl.wait);
	c->dl.serial++;
}

/*
 * Where the conversation was, for the client's own reasons: "waiting for the
 * reply to MAIL FROM" (about, for a reply: "waiting for" or "in").
 */
static const char *stage(const struct smtp_client *c, const char *about, char *buf, size_t n)
{
	enum smtp_client_wait w = c->handling ? wait_of_kind(c->handling->kind) : wait_of(c);
	switch (w) {
	case SMTP_CLIENT_WAIT_NONE: return c->phase == PH_READY ? "while idle" : "";
	case SMTP_CLIENT_WAIT_CONNECT: return "while connecting";
	case SMTP_CLIENT_WAIT_GREETING: return "waiting for the greeting";
	case SMTP_CLIENT_WAIT_TLS: return "during the TLS handshake";
	case SMTP_CLIENT_WAIT_BODY: return "while sending the message body";
	default: snprintf(buf, n, "%s the reply to %s", about, smtp_client_wait_name(w));
	}
	return buf;
}

/* ---- results ---- */

/* The outcome a reply gives (code 0: the client's own, classed by its enhanced code). */
static enum smtp_client_rcpt_status status_of(const struct smtp_client_reply *r)
{
	int cls = r->code ? r->code / 100 : r->enh[0] - '0';
	if (cls == 2)
		return SMTP_CLIENT_RCPT_DELIVERED;
	return cls == 5 ? SMTP_CLIENT_RCPT_FAILED : SMTP_CLIENT_RCPT_DEFERRED;
}

static void rcpt_final(struct smtp_client *c, size_t i, const struct smtp_client_reply *r)
{
	c->rr[i].status = status_of(r);
	c->rr[i].reply = *r;
	c->rstep[i] = RS_FINAL;
}

/* Every recipient not finally answered yet gets r (the MAIL refusal, a lost connection). */
static void rcpt_final_all(struct smtp_client *c, const struct smtp_client_reply *r)
{
	for (size_t i = 0; i < c->msg->n_rcpts; i++)
		if (c->rstep[i] != RS_FINAL)
			rcpt_final(c, i, r);
	c->accepted = 0;
}

/* The recipients that the peer accepted at RCPT get the DATA or final-dot verdict. */
static void rcpt_final_accepted(struct smtp_client *c, const struct smtp_client_reply *r)
{
	for (size_t i = 0; i < c->msg->n_rcpts; i++)
		if (c->rstep[i] == RS_ACCEPTED)
			rcpt_final(c, i, r);
	c->accepted = 0;
}

/* Publishes the message's results (MSG_DONE); the message is no longer borrowed. */
static void txn_report(struct smtp_client *c)
{
	int delivered = 0, deferred = 0;
	for (size_t i = 0; i < c->msg->n_rcpts; i++) {
		delivered |= c->rr[i].status == SMTP_CLIENT_RCPT_DELIVERED;
		deferred |= c->rr[i].status == SMTP_CLIENT_RCPT_DEFERRED;
	}
	c->result.status = delivered  ? SMTP_CLIENT_MSG_SENT
	                   : deferred ? SMTP_CLIENT_MSG_DEFERRED
	                              : SMTP_CLIENT_MSG_FAILED;
	c->result.reply = c->txn_reply;
	c->result.peer_dsn = c->caps.dsn;
	c->result.n_rcpts = c->msg->n_rcpts;
	c->result.rcpts = c->rr;
	c->have_result = 1;
	c->msg = NULL;
	act(c, SMTP_CLIENT_ACT_MSG_DONE);
}

/* ---- ending the connection ---- */

static void close_now(struct smtp_client *c)
{
	cmd_pipe_clear(&c->p);
	c->phase = PH_DONE;
	c->actions &= ~((1u << SMTP_CLIENT_ACT_READY) | (1u << SMTP_CLIENT_ACT_START_TLS) |
	                (1u << SMTP_CLIENT_ACT_WANT_BODY));
	act(c, SMTP_CLIENT_ACT_CLOSE);
}

static void conn_status(struct smtp_client *c, enum smtp_client_conn_status st,
                        const struct smtp_client_reply *r)
{
	if (c->conn.status != SMTP_CLIENT_CONN_OK)
		return; /* the first failure is the one that explains the rest */
	c->conn.status = st;
	c->conn.reply = *r;
}

/*
 * Abortive end (timeout, drop, protocol error, 421, TLS failure): the
 * conversation is out of step or gone, so no QUIT. A message under way is
 * deferred except for the recipients already finally answered.
 */
static void conn_abort(struct smtp_client *c, enum smtp_client_conn_status st,
                       const struct smtp_client_reply *r)
{
	if (c->phase == PH_DONE)
		return;
	if (c->msg != NULL) {
		rcpt_final_all(c, r);
		c->txn_reply = *r;
		txn_report(c);
	}
	conn_status(c, st, r);
	close_now(c);
}

static void internal_error(struct smtp_client *c, const char *what)
{
	struct smtp_client_reply r;
	smtp_client_reply_set(&r, 0, "4.3.0", "local error: %s", what);
	conn_abort(c, SMTP_CLIENT_CONN_PROTOCOL, &r);
}

static void protocol_error(struct smtp_client *c, const char *why)
{
	struct smtp_client_reply r;
	char buf[64];
	if (c->phase == PH_QUIT) {
		close_now(c); /* every result is final already */
		return;
	}
	smtp_client_reply_set(&r, 0, "4.5.0", "protocol error %s: %s",
	                      stage(c, "in", buf, sizeof buf), why);
	conn_abort(c, SMTP_CLIENT_CONN_PROTOCOL, &r);
}

/* Sends a command line (CRLF added) and awaits its reply. */
static int send_cmd(struct smtp_client *c, const char *line, size_t n, enum expect_kind kind,
                    size_t idx)
{
	if (cmd_pipe_send(&c->p, line, n, (int)kind, idx) != 0) {
		internal_error(c, "output buffer full");
		return -1;
	}
	return 0;
}

static int send_str(struct smtp_client *c, const char *line, enum expect_kind kind)
{
	return send_cmd(c, line, strlen(line), kind, 0);
}

/* Polite end (refused greeting or HELO, RSET refused, TLS required): QUIT first. */
static void conn_quit(struct smtp_client *c, enum smtp_client_conn_status st,
                      const struct smtp_client_reply *r)
{
	conn_status(c, st, r);
	c->phase = PH_QUIT;
	send_str(c, "QUIT", EX_QUIT);
}

static void become_ready(struct smtp_client *c)
{
	c->phase = PH_READY;
	act(c, SMTP_CLIENT_ACT_READY);
}

/* ---- commands of a transaction ---- */

struct line {
	char buf[SMTP_CLIENT_CMD_MAX];
	size_t len;
	int overflow;
};

static void line_add(struct line *l, const char *s, size_t n)
{
	if (l->overflow || n > sizeof l->buf - 2 - l->len) {
		l->overflow = 1; /* 2: the CRLF must fit too */
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void line_str(struct line *l, const char *s)
{
	line_add(l, s, strlen(s));
}

static void line_xtext(struct line *l, const char *s)
{
	char enc[3 * ESMTP_ORCPT_MAX + 1];
	int n = xtext_encode(s, strlen(s), enc, sizeof enc);
	if (n < 0)
		l->overflow = 1;
	else
		line_add(l, enc, (size_t)n);
}

/* MAIL FROM with SIZE (RFC 1870 6), BODY (RFC 6152 2), RET/ENVID (RFC 3461 4.3, 4.4). */
static int format_mail(const struct smtp_client *c, struct line *l)
{
	const struct smtp_client_msg *m = c->msg;
	char num[32];
	memset(l, 0, sizeof *l);
	if (!printable(m->mail_from))
		return -1;
	line_str(l, "MAIL FROM:<");
	line_str(l, m->mail_from);
	line_str(l, ">");
	if (c->caps.size) {
		snprintf(num, sizeof num, " SIZE=%llu", (unsigned long long)m->size);
		line_str(l, num);
	}
	if (m->eight_bit)
		line_str(l, " BODY=8BITMIME");
	if (c->caps.dsn && m->ret != ESMTP_RET_UNSET)
		line_str(l, m->ret == ESMTP_RET_HDRS ? " RET=HDRS" : " RET=FULL");
	if (c->caps.dsn && m->envid != NULL && m->envid[0] && printable(m->envid) &&
	    strlen(m->envid) <= ESMTP_ENVID_MAX) {
		line_str(l, " ENVID=");
		line_xtext(l, m->envid);
	}
	return l->overflow ? -1 : 0;
}

/* ORCPT as stored is "addr-type;address" (RFC 3461 4.2): the address goes out as xtext. */
static void add_orcpt(struct line *l, const char *orcpt)
{
	const char *semi = strchr(orcpt, ';');
	if (semi == NULL || semi == orcpt || semi[1] == '\0' || !printable(orcpt) ||
	    strlen(orcpt) > ESMTP_ORCPT_MAX)
		return; /* not a usable ORCPT: the peer simply does not get one */
	for (const char *p = orcpt; p < semi; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-'))
			return;
	line_str(l, " ORCPT=");
	line_add(l, orcpt, (size_t)(semi - orcpt) + 1);
	line_xtext(l, semi + 1);
}

static void add_notify(struct line *l, unsigned notify)
{
	static const struct {
		unsigned bit;
		const char *name;
	} words[] = {
	        {ESMTP_NOTIFY_SUCCESS, "SUCCESS"},
	        {ESMTP_NOTIFY_FAILURE, "FAILURE"},
	        {ESMTP_NOTIFY_DELAY, "DELAY"},
	};
	if (notify == 0)
		return;
	if (notify & ESMTP_NOTIFY_NEVER) {
		line_str(l, " NOTIFY=NEVER"); /* RFC 3461 4.1: NEVER stands alone */
		return;
	}
	const char *sep = " NOTIFY=";
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
		if (notify & words[i].bit) {
			line_str(l, sep);
			line_str(l, words[i].name);
			sep = ",";
		}
	}
}

/* RCPT TO with NOTIFY and ORCPT when the peer offers DSN (RFC 3461 4.1, 4.2). */
static int format_rcpt(const struct smtp_client *c, size_t i, struct line *l)
{
	const struct smtp_client_rcpt *r = &c->msg->rcpts[i];
	memset(l, 0, sizeof *l);
	if (r->addr == NULL || r->addr[0] == '\0' || !printable(r->addr))
		return -1;
	line_str(l, "RCPT TO:<");
	line_str(l, r->addr);
	line_str(l, ">");
	if (c->caps.dsn) {
		add_notify(l, r->notify);
		if (r->orcpt != NULL)
			add_orcpt(l, r->orcpt);
	}
	return l->overflow ? -1 : 0;
}

static void skip_final_rcpts(struct smtp_client *c)
{
	while (c->next_rcpt < c->msg->n_rcpts && c->rstep[c->next_rcpt] != RS_UNSENT)
		c->next_rcpt++;
}

/* Is there a command of this transaction still to send? */
static int txn_has_more(struct smtp_client *c)
{
	if (!c->mail_sent)
		return 1;
	if (c->mail_failed)
		return 0;
	skip_final_rcpts(c);
	if (c->next_rcpt < c->msg->n_rcpts)
		return 1;
	return !c->data_sent && (c->accepted > 0 || c->rcpt_waiting > 0);
}

/* Sends the next command of the transaction if it fits; 0 when nothing was sent. */
static int txn_send_next(struct smtp_client *c)
{
	struct line l;
	if (!txn_has_more(c))
		return 0;
	if (!c->mail_sent) {
		if (format_mail(c, &l) != 0 || l.len + 2 > cmd_room(c))
			return 0;
		if (send_cmd(c, l.buf, l.len, EX_MAIL, 0) != 0)
			return 0;
		c->mail_sent = 1;
	} else if (c->next_rcpt < c->msg->n_rcpts) {
		size_t i = c->next_rcpt;
		if (format_rcpt(c, i, &l) != 0 || l.len + 2 > cmd_room(c))
			return 0;
		if (send_cmd(c, l.buf, l.len, EX_RCPT, i) != 0)
			return 0;
		c->rstep[i] = RS_SENT;
		c->rcpt_waiting++;
		c->next_rcpt++;
	} else {
		if (6 > cmd_room(c) || send_str(c, "DATA", EX_DATA) != 0)
			return 0;
		c->data_sent = 1;
	}
	c->cmds_sent = 1;
	return 1;
}

/*
 * The pump. Without PIPELINING a command waits for the previous reply; with it
 * (RFC 2920 3.1) MAIL, every RCPT and DATA go out together, as far as the
 * output buffer allows (the rest follows as the glue drains it).
 */
static void txn_pump(struct smtp_client *c)
{
	if (c->caps.pipelining) {
		while (c->phase == PH_TXN && txn_send_next(c))
			;
	} else if (c->p.fifo_n == 0) {
		txn_send_next(c);
	}
}

static void txn_finish(struct smtp_client *c)
{
	int clean = !c->cmds_sent || c->dot_ok;
	txn_report(c);
	/* RFC 5321 4.1.1.5: after a transaction that did not complete, RSET before
	 * the next one; after a 250 to the final dot the server has already reset. */
	if (clean) {
		become_ready(c);
	} else {
		c->phase = PH_BUSY;
		send_str(c, "RSET", EX_RSET);
	}
}

static void txn_advance(struct smtp_client *c)
{
	if (c->phase != PH_TXN)
		return;
	txn_pump(c);
	if (c->phase == PH_TXN && c->p.fifo_n == 0 && !txn_has_more(c))
		txn_finish(c);
}

/* ---- session setup ---- */

static void send_hello(struct smtp_client *c, const char *verb, enum expect_kind kind)
{
	char line[8 + SMTP_CLIENT_HELO_MAX];
	int n = snprintf(line, sizeof line, "%s %s", verb, c->helo);
	c->phase = PH_BUSY;
	send_cmd(c, line, (size_t)n, kind, 0);
}

/* After EHLO/HELO: STARTTLS when offered and wanted (RFC 3207 4), else ready. */
static void after_hello(struct smtp_client *c)
{
	struct smtp_client_reply r;
	if (!c->caps.tls && !c->tls_tried && c->conf.tls != SMTP_CLIENT_TLS_OFF &&
	    c->caps.starttls) {
		c->phase = PH_BUSY;
		send_str(c, "STARTTLS", EX_STARTTLS);
		return;
	}
	if (c->conf.tls == SMTP_CLIENT_TLS_REQUIRE && !c->caps.tls) {
		smtp_client_reply_set(&r, 0, "4.7.4", "TLS is required and the server %s",
		                      c->tls_tried ? "refused STARTTLS"
		                                   : "does not offer STARTTLS");
		conn_quit(c, SMTP_CLIENT_CONN_TLS_UNAVAILABLE, &r);
		return;
	}
	become_ready(c);
}

/* ---- reply handlers, one per awaited reply ---- */

typedef void (*reply_handler)(struct smtp_client *c, const struct cmd_expect *e,
                              const struct smtp_client_reply *r);

static void on_greeting(struct smtp_client *c, const struct cmd_expect *e,
                        const struct smtp_client_reply *r)
{
	if (r->code / 100 == 2) {
		send_hello(c, "EHLO", EX_EHLO);
		return;
	}
	if (r->code / 100 == 3) {
		protocol_error(c, "3xx reply");
		return;
	}
	/* RFC 5321 3.1: 554 means "go away", but another MX may take the mail, so
	 * this is the connection's failure, not the message's; QUIT politely. */
	conn_quit(c, SMTP_CLIENT_CONN_GREETING, r);
}

static void on_ehlo(struct smtp_client *c, const struct cmd_expect *e,
                    const struct smtp_client_reply *r)
{
	switch (r->code / 100) {
	case 2:
		c->acc.caps.tls = c->caps.tls;
		c->caps = c->acc.caps;
		c->caps.esmtp = 1;
		after_hello(c);
		return;
	case 5: send_hello(c, "HELO", EX_HELO); return; /* RFC 5321 3.2, 4.1.4 */
	case 4: conn_quit(c, SMTP_CLIENT_CONN_HELO, r); return;
	default: protocol_error(c, "3xx reply");
	}
}

static void on_helo(struct smtp_client *c, const struct cmd_expect *e,
                    const struct smtp_client_reply *r)
{
	int tls = c->caps.tls;
	if (r->code / 100 == 2) {
		memset(&c->caps, 0, sizeof c->caps); /* plain SMTP: no extensions */
		c->caps.tls = tls;
		after_hello(c);
	} else if (r->code / 100 == 3) {
		protocol_error(c, "3xx reply");
	} else {
		conn_quit(c, SMTP_CLIENT_CONN_HELO, r);
	}
}

static void on_starttls(struct smtp_client *c, const struct cmd_expect *e,
                        const struct smtp_client_reply *r)
{
	c->tls_tried = 1;
	if (r->code / 100 == 2) {
		/* RFC 3207 4.2; CVE-2011-0411: what follows "220" in plaintext must
		 * never be read as a reply: the input loop discards the rest of this
		 * read and everything until the handshake ends. The parser holds
		 * nothing after a complete line; the reset keeps it so regardless. */
		smtp_reply_parse_reset(&c->rp);
		c->phase = PH_TLS;
		act(c, SMTP_CLIENT_ACT_START_TLS);
	} else if (r->code / 100 == 3) {
		protocol_error(c, "3xx reply");
	} else {
		after_hello(c); /* opportunistic: go on in plaintext; required: QUIT */
	}
}

static void on_rset(struct smtp_client *c, const struct cmd_expect *e,
                    const struct smtp_client_reply *r)
{
	if (r->code / 100 == 2)
		become_ready(c);
	else
		conn_quit(c, SMTP_CLIENT_CONN_RSET, r);
}

static void on_mail(struct smtp_client *c, const struct cmd_expect *e,
                    const struct smtp_client_reply *r)
{
	if (r->code / 100 == 2)
		return;
	if (r->code / 100 == 3) {
		protocol_error(c, "3xx reply");
		return;
	}
	/* A refused MAIL decides every recipient; RCPTs pipelined behind it are
	 * answered (503) and ignored (RFC 2920 3.1). */
	c->mail_failed = 1;
	c->txn_reply = *r;
	rcpt_final_all(c, r);
}

static void on_rcpt(struct smtp_client *c, const struct cmd_expect *e,
                    const struct smtp_client_reply *r)
{
	c->rcpt_waiting--;
	if (r->code / 100 == 3) {
		protocol_error(c, "3xx reply");
		return;
	}
	if (c->rstep[e->arg] != RS_SENT)
		return; /* already decided by the MAIL reply */
	if (r->code / 100 == 2) {
		c->rstep[e->arg] = RS_ACCEPTED;
		c->accepted++;
		return;
	}
	c->txn_reply = *r;
	rcpt_final(c, e->arg, r);
}

static void on_data(struct smtp_client *c, const struct cmd_expect *e,
                    const struct smtp_client_reply *r)
{
	if (r->code == 354) {
		if (c->accepted == 0) {
			/* RFC 2920 3.1: DATA accepted but no recipient: a lone dot. */
			send_cmd(c, ".", 1, EX_NULL_DOT, 0);
			return;
		}
		dotstuff_init(&c->ds);
		c->phase = PH_BODY;
		act(c, SMTP_CLIENT_ACT_WANT_BODY);
		return;
	}
	if (r->code / 100 == 2 || r->code / 100 == 3) {
		protocol_error(c, "DATA answered without 354");
		return;
	}
	if (c->accepted == 0)
		return; /* the refusal of MAIL or of every RCPT already says why */
	c->txn_reply = *r;
	rcpt_final_accepted(c, r);
}

static void on_dot(struct smtp_client *c, const struct cmd_expect *e,
                   const struct smtp_client_reply *r)
{
	if (r->code / 100 == 3) {
		protocol_error(c, "3xx reply");
		return;
	}
	/* RFC 5321 4.1.1.4, 6.1: this reply decides every accepted recipient. */
	c->dot_ok = r->code / 100 == 2;
	c->txn_reply = *r;
	rcpt_final_accepted(c, r);
}

static void on_null_dot(struct smtp_client *c, const struct cmd_expect *e,
                        const struct smtp_client_reply *r)
{
	/* Nothing was delivered whatever it says; RSET follows. */
}

static void on_quit(struct smtp_client *c, const struct cmd_expect *e,
                    const struct smtp_client_reply *r)
{
	close_now(c);
}

static const reply_handler handlers[] = {
        [EX_GREETING] = on_greeting, [EX_EHLO] = on_ehlo, [EX_HELO] = on_helo,
        [EX_STARTTLS] = on_starttls, [EX_RSET] = on_rset, [EX_MAIL] = on_mail,
        [EX_RCPT] = on_rcpt,         [EX_DATA] = on_data, [EX_DOT] = on_dot,
        [EX_NULL_DOT] = on_null_dot, [EX_QUIT] = on_quit,
};

/* ---- reading replies ---- */

/* An EHLO keyword line (RFC 1869 4.3): keyword [SP params]. */
static void ehlo_keyword(struct smtp_client_caps *caps, const char *t, size_t n)
{
	size_t k = 0;
	while (k < n && t[k] != ' ')
		k++;
	if (ascii_equal_ci(t, k, "PIPELINING"))
		caps->pipelining = 1;
	else if (ascii_equal_ci(t, k, "8BITMIME"))
		caps->eightbitmime = 1;
	else if (ascii_equal_ci(t, k, "DSN"))
		caps->dsn = 1;
	else if (ascii_equal_ci(t, k, "STARTTLS"))
		caps->starttls = 1;
	else if (ascii_equal_ci(t, k, "ENHANCEDSTATUSCODES"))
		caps->enhancedstatuscodes = 1;
	else if (ascii_equal_ci(t, k, "SIZE")) {
		/* RFC 1870 4: "SIZE" [SP number]; 0 or absent = no fixed limit. A
		 * number that is not 1-20 digits or overflows is taken as none. */
		uint64_t v = 0;
		size_t i = k + (k < n), digits = 0;
		for (; i < n && t[i] >= '0' && t[i] <= '9' && digits <= 20; i++, digits++) {
			unsigned d = (unsigned)(t[i] - '0');
			if (v > (UINT64_MAX - d) / 10)
				digits = 21;
			else
				v = v * 10 + d;
		}
		caps->size = 1;
		caps->size_max = (i == n && digits >= 1 && digits <= 20) ? v : 0;
	}
}

/* Appends a line's text to the reply (joined by spaces, printable, bounded). */
static void acc_text(struct reply_acc *a, const char *t, size_t n)
{
	if (a->text_len > 0 && n > 0 && a->text_len < SMTP_CLIENT_TEXT_MAX)
		a->r.text[a->text_len++] = ' ';
	for (size_t i = 0; i < n && a->text_len < SMTP_CLIENT_TEXT_MAX; i++) {
		unsigned char ch = (unsigned char)t[i];
		a->r.text[a->text_len++] = (ch < 0x20 || ch > 0x7e) ? '?' : (char)ch;
	}
	a->r.text[a->text_len] = '\0';
}

static void dispatch(struct smtp_client *c)
{
	const struct smtp_client_reply *r = &c->acc.r;
	if (!c->acc.allowed) {
		conn_abort(c, SMTP_CLIENT_CONN_SHUTDOWN, r); /* only a 421 gets here */
		return;
	}
	struct cmd_expect e = cmd_pipe_pop(&c->p);
	if (r->code == 421 && e.kind != EX_QUIT) {
		/* RFC 5321 3.8: the server is closing; whatever was not finally
		 * answered is deferred. */
		conn_abort(c,
		           e.kind == EX_GREETING ? SMTP_CLIENT_CONN_GREETING
		                                 : SMTP_CLIENT_CONN_SHUTDOWN,
		           r);
		return;
	}
	c->handling = &e;
	handlers[e.kind](c, &e, r);
	c->handling = NULL;
	txn_advance(c);
}

static void on_line(struct smtp_client *c, const struct smtp_reply_line *l)
{
	struct reply_acc *a = &c->acc;
	const char *t = l->text;
	size_t n = l->text_len;
	char enh[SMTP_REPLY_PARSE_ENH_MAX + 1];
	size_t skip = smtp_reply_enh_parse(l->code, t, n, enh, sizeof enh);
	if (l->index == 0) {
		memset(a, 0, sizeof *a);
		a->allowed = c->line_allowed;
		a->r.code = l->code;
		snprintf(a->r.enh, sizeof a->r.enh, "%s", enh);
	}
	if (!a->allowed && l->code != 421) {
		protocol_error(c, "unsolicited reply");
		return;
	}
	const struct cmd_expect *h = cmd_pipe_head(&c->p);
	if (a->allowed && h != NULL && h->kind == EX_EHLO && l->index > 0)
		ehlo_keyword(&a->caps, t, n);
	/* RFC 2034 4: each line repeats the enhanced code; keep the text only. */
	if (skip > 0 && strcmp(enh, a->r.enh) == 0) {
		t += skip;
		n -= skip;
	}
	acc_text(a, t, n);
	if (l->last)
		dispatch(c);
}

void smtp_client_input(struct smtp_client *c, const char *data, size_t len)
{
	if (c->phase == PH_CONNECT)
		smtp_client_connected(c);
	size_t pos = 0;
	while (pos < len && c->phase != PH_DONE && c->phase != PH_TLS) {
		struct smtp_reply_line l;
		size_t used = 0;
		if (smtp_reply_parse_pending(&c->rp) == 0)
			c->line_allowed = head_allowed(c); /* this octet opens a line */
		enum smtp_reply_parse_status st =
		        smtp_reply_parse_feed(&c->rp, data + pos, len - pos, &used, &l);
		pos += used;
		if (st == SMTP_REPLY_PARSE_LINE || st == SMTP_REPLY_PARSE_LAST)
			on_line(c, &l);
		else if (st != SMTP_REPLY_PARSE_MORE)
			protocol_error(c, smtp_reply_parse_strerror(st));
	}
	c->discarded += len - pos;
	deadline_update(c);
}

/* ---- the other events ---- */

void smtp_client_conf_defaults(struct smtp_client_conf *c)
{
	static const struct smtp_client_timeouts t = {
	        .connect = 30,
	        .greeting = 300,
	        .helo = 300,
	        .starttls = 300,
	        .tls_handshake = 300,
	        .mail = 300,
	        .rcpt = 300,
	        .data_init = 120,
	        .data_block = 180,
	        .data_done = 600,
	        .rset = 300,
	        .quit = 300,
	};
	memset(c, 0, sizeof *c);
	c->tls = SMTP_CLIENT_TLS_MAY;
	c->timeouts = t;
	c->reply_line_max = 2048;
	c->reply_lines_max = 100;
	c->max_rcpts = 1000;
	c->out_max = 65536;
}

static int conf_valid(const struct smtp_client_conf *conf)
{
	const char *h = conf->helo_name;
	if (h == NULL || h[0] == '\0' || strlen(h) > SMTP_CLIENT_HELO_MAX || !printable(h) ||
	    strchr(h, ' ') != NULL)
		return 0;
	return (unsigned)conf->tls <= SMTP_CLIENT_TLS_REQUIRE && conf->reply_line_max >= 512 &&
	       conf->reply_line_max <= 65536 && conf->reply_lines_max >= 1 &&
	       conf->reply_lines_max <= 10000 && conf->max_rcpts >= 1 &&
	       conf->max_rcpts <= 100000 && conf->out_max >= SMTP_CLIENT_OUT_MIN &&
	       conf->out_max <= (64u << 20);
}

struct smtp_client *smtp_client_new(const struct smtp_client_conf *conf)
{
	if (conf == NULL || !conf_valid(conf))
		return NULL;
	struct smtp_client *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->conf = *conf;
	snprintf(c->helo, sizeof c->helo, "%s", conf->helo_name);
	c->conf.helo_name = c->helo;
	int pipe_rc = cmd_pipe_init(&c->p, conf->out_max, conf->max_rcpts + 8);
	c->line_buf = malloc(conf->reply_line_max);
	c->rr = calloc(conf->max_rcpts, sizeof *c->rr);
	c->rstep = calloc(conf->max_rcpts, 1);
	if (pipe_rc != 0 || !c->line_buf || !c->rr || !c->rstep) {
		smtp_client_free(c);
		return NULL;
	}
	smtp_reply_parse_init(&c->rp, c->line_buf, conf->reply_line_max, conf->reply_lines_max);
	c->phase = PH_CONNECT;
	c->dl_phase = PH_DONE; /* forces the first deadline_update() */
	deadline_update(c);
	return c;
}

void smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return;
	free(c->line_buf);
	cmd_pipe_release(&c->p, 0);
	free(c->rr);
	free(c->rstep);
	free(c);
}

void smtp_client_connected(struct smtp_client *c)
{
	if (c->phase != PH_CONNECT)
		return;
	c->phase = PH_BUSY;
	cmd_pipe_expect(&c->p, EX_GREETING, 0); /* end 0: the peer may speak at once */
	deadline_update(c);
}

void smtp_client_timeout(struct smtp_client *c)
{
	struct smtp_client_reply r;
	char buf[64];
	if (c->phase == PH_DONE)
		return;
	if (c->phase == PH_QUIT) {
		close_now(c); /* every result is final already */
	} else {
		smtp_client_reply_set(&r, 0, "4.4.2", "timed out %s",
		                      stage(c, "waiting for", buf, sizeof buf));
		conn_abort(c,
		           c->phase == PH_TLS ? SMTP_CLIENT_CONN_TLS_FAILED
		                              : SMTP_CLIENT_CONN_TIMEOUT,
		           &r);
	}
	deadline_update(c);
}

void smtp_client_closed(struct smtp_client *c)
{
	struct smtp_client_reply r;
	char buf[64];
	if (c->phase == PH_DONE)
		return;
	if (c->phase == PH_QUIT) {
		close_now(c);
	} else {
		smtp_client_reply_set(&r, 0, "4.4.2", "lost connection %s",
		                      stage(c, "waiting for", buf, sizeof buf));
		conn_abort(c,
		           c->phase == PH_TLS ? SMTP_CLIENT_CONN_TLS_FAILED
		                              : SMTP_CLIENT_CONN_DROPPED,
		           &r);
	}
	deadline_update(c);
}

void smtp_client_tls_done(struct smtp_client *c, int ok)
{
	struct smtp_client_reply r;
	if (c->phase != PH_TLS)
		return;
	if (ok) {
		/* RFC 3207 4.2: forget everything learnt in plaintext; EHLO again. */
		memset(&c->caps, 0, sizeof c->caps);
		c->caps.tls = 1;
		send_hello(c, "EHLO", EX_EHLO);
	} else {
		smtp_client_reply_set(&r, 0, "4.7.5", "TLS handshake failed");
		conn_abort(c, SMTP_CLIENT_CONN_TLS_FAILED, &r);
	}
	deadline_update(c);
}

/* Local checks before MAIL: returns 0, or -1 with every recipient failed. */
static int msg_precheck(struct smtp_client *c)
{
	const struct smtp_client_msg *m = c->msg;
	struct smtp_client_reply r;
	struct line l;
	if (c->caps.size && c->caps.size_max > 0 && m->size > c->caps.size_max) {
		/* RFC 1870 6.1: do not send what the server said it will refuse. */
		smtp_client_reply_set(
		        &r, 0, "5.3.4", "message size %llu exceeds the server's limit of %llu",
		        (unsigned long long)m->size, (unsigned long long)c->caps.size_max);
	} else if (m->eight_bit && !c->caps.eightbitmime) {
		/* RFC 6152 3: no 8-bit data to a server without 8BITMIME; bounce it
		 * rather than convert or mangle it. */
		smtp_client_reply_set(&r, 0, "5.6.3",
		                      "8-bit message and the server does not offer 8BITMIME");
	} else if (format_mail(c, &l) != 0) {
		smtp_client_reply_set(&r, 0, "5.1.7", "the sender address cannot be sent");
	} else {
		return 0;
	}
	c->txn_reply = r;
	rcpt_final_all(c, &r);
	return -1;
}

/* Recipients whose RCPT cannot be formed fail alone (5.1.3); returns how many remain. */
static size_t rcpt_precheck(struct smtp_client *c)
{
	struct smtp_client_reply r;
	struct line l;
	size_t ok = 0;
	smtp_client_reply_set(&r, 0, "5.1.3", "the recipient address cannot be sent");
	for (size_t i = 0; i < c->msg->n_rcpts; i++) {
		if (format_rcpt(c, i, &l) != 0) {
			c->txn_reply = r;
			rcpt_final(c, i, &r);
		} else {
			ok++;
		}
	}
	return ok;
}

int smtp_client_message(struct smtp_client *c, const struct smtp_client_msg *m)
{
	if (c->phase != PH_READY || m == NULL || m->mail_from == NULL || m->rcpts == NULL ||
	    m->n_rcpts == 0 || m->n_rcpts > c->conf.max_rcpts)
		return -1;
	c->actions &= ~(1u << SMTP_CLIENT_ACT_READY);
	c->msg = m;
	c->have_result = 0;
	memset(c->rr, 0, m->n_rcpts * sizeof *c->rr);
	memset(c->rstep, RS_UNSENT, m->n_rcpts);
	memset(&c->txn_reply, 0, sizeof c->txn_reply);
	c->next_rcpt = c->rcpt_waiting = c->accepted = 0;
	c->mail_sent = c->mail_failed = c->data_sent = c->dot_ok = c->cmds_sent = 0;
	c->conn.messages++;
	c->phase = PH_TXN;
	if (msg_precheck(c) != 0 || rcpt_precheck(c) == 0) {
		txn_report(c);
		become_ready(c);
	} else {
		txn_advance(c);
	}
	deadline_update(c);
	return 0;
}

int smtp_client_quit(struct smtp_client *c)
{
	if (c->phase != PH_READY)
		return -1;
	c->actions &= ~(1u << SMTP_CLIENT_ACT_READY);
	c->phase = PH_QUIT;
	send_str(c, "QUIT", EX_QUIT);
	deadline_update(c);
	return 0;
}

size_t smtp_client_body(struct smtp_client *c, const char *data, size_t len)
{
	size_t w = 0;
	if (c->phase != PH_BODY)
		return 0;
	size_t used = dotstuff_feed(&c->ds, data, len, c->p.out + c->p.out_len, cmd_room(c), &w);
	c->p.out_len += w;
	c->p.out_total += w;
	if (used > 0)
		c->dl.serial++; /* RFC 5321 4.5.3.2.5: the data-block timer restarts */
	return used;
}

int smtp_client_body_end(struct smtp_client *c)
{
	if (c->phase != PH_BODY)
		return -1;
	/* OUT_RESERVE keeps room for the end (DOTSTUFF_END_MAX octets). */
	size_t n = dotstuff_end(&c->ds, c->p.out + c->p.out_len, c->conf.out_max - c->p.out_len);
	if (n == 0) {
		internal_error(c, "output buffer full");
		return -1;
	}
	c->p.out_len += n;
	c->p.out_total += n;
	c->phase = PH_TXN;
	cmd_pipe_expect(&c->p, EX_DOT, 0);
	deadline_update(c);
	return 0;
}

const char *smtp_client_output(const struct smtp_client *c, size_t *len)
{
	*len = c->p.out_len;
	return c->p.out;
}

void smtp_client_output_done(struct smtp_client *c, size_t n)
{
	if (n > c->p.out_len)
		n = c->p.out_len;
	cmd_pipe_output_done(&c->p, n, 0);
	if (c->phase == PH_BODY && n > 0)
		c->dl.serial++;
	txn_advance(c); /* pipelined commands that did not fit yet */
	deadline_update(c);
}

enum smtp_client_action smtp_client_next_action(struct smtp_client *c)
{
	static const enum smtp_client_action order[] = {
	        SMTP_CLIENT_ACT_MSG_DONE, SMTP_CLIENT_ACT_START_TLS, SMTP_CLIENT_ACT_WANT_BODY,
	        SMTP_CLIENT_ACT_READY,    SMTP_CLIENT_ACT_CLOSE,
	};
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		if (c->actions & (1u << order[i])) {
			c->actions &= ~(1u << order[i]);
			return order[i];
		}
	}
	return SMTP_CLIENT_ACT_NONE;
}

struct smtp_client_deadline smtp_client_deadline(const struct smtp_client *c)
{
	return c->dl;
}

const struct smtp_client_result *smtp_client_result(const struct smtp_client *c)
{
	return c->have_result ? &c->result : NULL;
}

const struct smtp_client_conn_result *smtp_client_conn_result(const struct smtp_client *c)
{
	return &c->conn;
}

const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c)
{
	return &c->caps;
}

uint64_t smtp_client_discarded(const struct smtp_client *c)
{
	return c->discarded;
}

int smtp_client_done(const struct smtp_client *c)
{
	return c->phase == PH_DONE;
}
