/*
 * smtp_client: one outgoing SMTP connection (RFC 5321) as a pure state
 * machine: events in (connected, octets received, a deadline expired, the peer
 * closed, the TLS handshake ended, a message to send, no more messages), actions
 * out (octets to send, start TLS, body wanted, a message's results, ready for the
 * next message, close). It owns no socket, timer, file or clock: the glue does,
 * and is told which deadline applies (smtp_client_deadline()). Transcript tests
 * (tests/unit/test_smtp_client.c), a fuzzer and the daemon drive the same code.
 *
 * What it does: greeting, EHLO with a fallback to HELO on 5xx; the EHLO
 * keywords PIPELINING, SIZE, 8BITMIME, DSN, STARTTLS, ENHANCEDSTATUSCODES;
 * STARTTLS (off, opportunistic, required), with everything received after the
 * "220" discarded (never read as a reply: CVE-2011-0411 shape) and the
 * capabilities forgotten and EHLO sent again after the handshake; MAIL, RCPT,
 * DATA one at a time, or as one RFC 2920 group when the peer offers PIPELINING;
 * SIZE= (a message larger than the peer's SIZE is failed 5.3.4 without MAIL);
 * BODY=8BITMIME (an 8-bit message to a peer without 8BITMIME is failed 5.6.3,
 * never mangled); RET/ENVID/NOTIFY/ORCPT only when the peer offers DSN; the body
 * dot-stuffed with CRLF-only line ends (proto/dotstuff.h); per-recipient and
 * per-message results; several messages in turn on one connection; QUIT.
 *
 * Replies: read by proto/smtp_reply_parse (CRLF only, bounded line length and
 * line count, one code per reply); a reply must answer a command whose octets
 * the glue has already taken (smtp_client_output_done()): anything the peer
 * sends before it could have read our command is an unsolicited reply, a
 * protocol error (an unsolicited 421 is taken as the peer closing). A protocol
 * error, a timeout, a dropped connection or a 421 defers every recipient not yet
 * finally answered and closes at once (no QUIT: the conversation is out of
 * step); a refused greeting, HELO or RSET, or a required TLS that is not
 * available, sends QUIT first.
 *
 * Results: a recipient is DELIVERED only on a 2xx to the final dot; FAILED on a
 * 5xx (to its RCPT, to MAIL, DATA or the final dot) or a local check; DEFERRED
 * on a 4xx, or when the connection ends before the final answer. A drop or a
 * timeout after the final dot defers although the peer may have taken the
 * message: at most one duplicate, by design (RFC 5321 6.1 prefers a duplicate
 * to a loss). Replies from the peer carry its code; a result the client decided
 * itself has code 0 and an enhanced code saying why (4.4.2 timeout or lost
 * connection, 4.5.0 protocol error, 5.3.4 size, 5.6.3 8-bit, 5.1.3/5.1.7 an
 * address that cannot be sent). Reply text is kept printable (other octets
 * become '?') and bounded, the lines of a multi-line reply joined by spaces.
 *
 * Ownership: the client owns its buffers, all sized at smtp_client_new() from
 * the conf (which is copied). A message passed to smtp_client_message() is
 * borrowed (strings and recipient array) until its SMTP_CLIENT_ACT_MSG_DONE.
 * Results stay valid until the next smtp_client_message() or smtp_client_free().
 * Nothing a peer sends reaches abort(), assert() or exit().
 */
#ifndef SHAREMAIL_DELIVER_SMTP_CLIENT_H
#define SHAREMAIL_DELIVER_SMTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/esmtp_param.h"

#define SMTP_CLIENT_TEXT_MAX 400 /* reply text kept per result (NUL excluded) */
#define SMTP_CLIENT_CMD_MAX 2048 /* longest command line we send (RFC 3461 ORCPT fits) */
#define SMTP_CLIENT_HELO_MAX 255 /* our EHLO/HELO name */
#define SMTP_CLIENT_OUT_MIN 8192 /* smallest output buffer accepted */

enum smtp_client_tls {
	SMTP_CLIENT_TLS_OFF = 0, /* never STARTTLS */
	SMTP_CLIENT_TLS_MAY, /* opportunistic: when offered; plaintext when refused */
	SMTP_CLIENT_TLS_REQUIRE, /* no mail without TLS (not offered or refused: QUIT) */
};

/* Deadlines in seconds (0 = none), RFC 5321 4.5.3.2 for the ones it names. */
struct smtp_client_timeouts {
	unsigned connect; /* until smtp_client_connected() (30) */
	unsigned greeting; /* initial 220 (300) */
	unsigned helo; /* EHLO/HELO reply (300) */
	unsigned starttls; /* STARTTLS reply (300) */
	unsigned tls_handshake; /* START_TLS action to smtp_client_tls_done() (300) */
	unsigned mail; /* MAIL reply (300) */
	unsigned rcpt; /* each RCPT reply (300) */
	unsigned data_init; /* DATA reply, the 354 (120) */
	unsigned data_block; /* without progress while sending the body (180) */
	unsigned data_done; /* reply to the final dot (600) */
	unsigned rset; /* RSET reply (300) */
	unsigned quit; /* QUIT reply (300) */
};

struct smtp_client_conf {
	const char *helo_name; /* our host name for EHLO/HELO (copied; printable, no space) */
	enum smtp_client_tls tls;
	struct smtp_client_timeouts timeouts;
	size_t reply_line_max; /* longest reply line, CRLF excluded (2048; 512-65536) */
	unsigned reply_lines_max; /* most lines in one reply (100; 1-10000) */
	size_t max_rcpts; /* most recipients per message (1000; 1-100000) */
	size_t out_max; /* output buffer (65536; at least SMTP_CLIENT_OUT_MIN) */
};

/* Fills *c with the defaults above (helo_name NULL: the caller must set it). */
void smtp_client_conf_defaults(struct smtp_client_conf *c);

/* A reply, from the peer (code 200-599) or decided by the client (code 0). */
struct smtp_client_reply {
	int code;
	char enh[16]; /* RFC 3463 code, "" when the peer gave none */
	char text[SMTP_CLIENT_TEXT_MAX + 1]; /* printable ASCII, NUL-terminated */
};

struct smtp_client_rcpt {
	const char *addr; /* the address without angle brackets */
	const char *orcpt; /* DSN ORCPT as stored: "addr-type;address", or NULL */
	unsigned notify; /* ESMTP_NOTIFY_* bits, 0 = not given */
};

struct smtp_client_msg {
	const char *mail_from; /* reverse-path without brackets, "" for <> */
	const struct smtp_client_rcpt *rcpts;
	size_t n_rcpts; /* 1 .. max_rcpts */
	uint64_t size; /* body octets as stored (SIZE=, RFC 1870) */
	int eight_bit; /* the body needs BODY=8BITMIME (RFC 6152) */
	enum esmtp_ret ret; /* DSN RET, or ESMTP_RET_UNSET */
	const char *envid; /* DSN ENVID (decoded), or NULL */
};

enum smtp_client_rcpt_status {
	SMTP_CLIENT_RCPT_PENDING = 0, /* (only while the message is under way) */
	SMTP_CLIENT_RCPT_DELIVERED, /* 2xx to the final dot */
	SMTP_CLIENT_RCPT_DEFERRED, /* 4xx, or the connection ended first */
	SMTP_CLIENT_RCPT_FAILED, /* 5xx or a local permanent check */
};

struct smtp_client_rcpt_result {
	enum smtp_client_rcpt_status status;
	struct smtp_client_reply reply; /* the reply that decided it */
};

enum smtp_client_msg_status {
	SMTP_CLIENT_MSG_SENT = 0, /* the peer took it for at least one recipient */
	SMTP_CLIENT_MSG_DEFERRED, /* nobody delivered, someone deferred */
	SMTP_CLIENT_MSG_FAILED, /* every recipient failed */
};

struct smtp_client_result {
	enum smtp_client_msg_status status;
	struct smtp_client_reply reply; /* the reply that decided the message */
	int peer_dsn; /* the peer offered DSN: 0 means the caller owes "relayed" notices */
	size_t n_rcpts;
	const struct smtp_client_rcpt_result *rcpts; /* in the order given */
};

/* How the connection went; the glue's view of the destination (try the next MX?). */
enum smtp_client_conn_status {
	SMTP_CLIENT_CONN_OK = 0, /* nothing wrong (so far) */
	SMTP_CLIENT_CONN_GREETING, /* 4xx/5xx greeting (554 = go away): try the next MX */
	SMTP_CLIENT_CONN_HELO, /* EHLO and HELO refused, or EHLO 4xx */
	SMTP_CLIENT_CONN_TLS_FAILED, /* the handshake failed or never ended */
	SMTP_CLIENT_CONN_TLS_UNAVAILABLE, /* TLS required, but not offered or refused */
	SMTP_CLIENT_CONN_SHUTDOWN, /* the peer said 421 after the greeting */
	SMTP_CLIENT_CONN_PROTOCOL, /* malformed, over-long or unsolicited reply */
	SMTP_CLIENT_CONN_TIMEOUT, /* a deadline expired */
	SMTP_CLIENT_CONN_DROPPED, /* the peer closed first */
	SMTP_CLIENT_CONN_RSET, /* RSET refused: the connection is not reused */
};

struct smtp_client_conn_result {
	enum smtp_client_conn_status status;
	struct smtp_client_reply reply; /* the peer's reply, or the client's reason */
	int messages; /* messages given on this connection */
};

/* The peer's EHLO keywords (RFC 1869, 1870, 2034, 2920, 3207, 3461, 6152). */
struct smtp_client_caps {
	int esmtp; /* EHLO was answered (0: HELO fallback) */
	int pipelining, size, eightbitmime, dsn, starttls, enhancedstatuscodes;
	uint64_t size_max; /* SIZE n; 0 = no limit announced */
	int tls; /* the session runs over TLS */
};

enum smtp_client_action {
	SMTP_CLIENT_ACT_NONE = 0,
	SMTP_CLIENT_ACT_MSG_DONE, /* a message's results: smtp_client_result() */
	SMTP_CLIENT_ACT_START_TLS, /* send what is pending, then start the TLS handshake */
	SMTP_CLIENT_ACT_WANT_BODY, /* 354: feed the body (smtp_client_body, _body_end) */
	SMTP_CLIENT_ACT_READY, /* idle: smtp_client_message() or smtp_client_quit() */
	SMTP_CLIENT_ACT_CLOSE, /* close the connection now (no output is pending) */
};

/* Which wait the deadline belongs to (for logs and tests). */
enum smtp_client_wait {
	SMTP_CLIENT_WAIT_NONE = 0,
	SMTP_CLIENT_WAIT_CONNECT,
	SMTP_CLIENT_WAIT_GREETING,
	SMTP_CLIENT_WAIT_EHLO,
	SMTP_CLIENT_WAIT_HELO,
	SMTP_CLIENT_WAIT_STARTTLS,
	SMTP_CLIENT_WAIT_TLS,
	SMTP_CLIENT_WAIT_RSET,
	SMTP_CLIENT_WAIT_MAIL,
	SMTP_CLIENT_WAIT_RCPT,
	SMTP_CLIENT_WAIT_DATA,
	SMTP_CLIENT_WAIT_BODY,
	SMTP_CLIENT_WAIT_DOT,
	SMTP_CLIENT_WAIT_QUIT,
};

struct smtp_client_deadline {
	unsigned seconds; /* 0: no deadline (idle, closed) */
	enum smtp_client_wait wait;
	unsigned long serial; /* changes whenever the timer must be re-armed */
};

struct smtp_client;

/*
 * Fills r: code (0: decided here, not by the peer), enh (copied, cut to fit) and the
 * formatted text (cut to SMTP_CLIENT_TEXT_MAX). For the client and its glue.
 */
void smtp_client_reply_set(struct smtp_client_reply *r, int code, const char *enh, const char *fmt,
                           ...) __attribute__((format(printf, 4, 5)));

/*
 * Creates a client for one connection, not yet connected (deadline: connect).
 * Returns NULL when the conf is out of range (see struct smtp_client_conf) or
 * memory runs out.
 */
struct smtp_client *smtp_client_new(const struct smtp_client_conf *conf);

/* Frees the client (NULL is a no-op). A message under way gets no result. */
void smtp_client_free(struct smtp_client *c);

/* The TCP connection is up: the greeting is awaited. */
void smtp_client_connected(struct smtp_client *c);

/*
 * Octets received (any split). Always consumes all of them: after the end of
 * the conversation, and between STARTTLS's 220 and smtp_client_tls_done(), they
 * are discarded and counted (smtp_client_discarded()).
 */
void smtp_client_input(struct smtp_client *c, const char *data, size_t len);

/* The current deadline expired. */
void smtp_client_timeout(struct smtp_client *c);

/* The peer closed the connection (or it broke: EOF, reset, write error). */
void smtp_client_closed(struct smtp_client *c);

/* The handshake asked for by SMTP_CLIENT_ACT_START_TLS ended (ok 1) or failed (0). */
void smtp_client_tls_done(struct smtp_client *c, int ok);

/*
 * Starts sending a message. Only after SMTP_CLIENT_ACT_READY (else -1, nothing
 * happens); -1 too for a NULL or empty message or more than max_rcpts recipients.
 * The message may fail at once (SIZE, 8-bit, no sendable recipient): then its
 * MSG_DONE and a new READY are pending when this returns.
 */
int smtp_client_message(struct smtp_client *c, const struct smtp_client_msg *m);

/* No more messages: QUIT (only after SMTP_CLIENT_ACT_READY; else -1). */
int smtp_client_quit(struct smtp_client *c);

/*
 * Body octets, in order, as stored (CRLF lines, not dot-stuffed), after
 * SMTP_CLIENT_ACT_WANT_BODY. Returns how many were taken: fewer (maybe 0) when
 * the output buffer is full; give the rest after smtp_client_output_done().
 * Returns 0 outside the body.
 */
size_t smtp_client_body(struct smtp_client *c, const char *data, size_t len);

/* The body is complete: the final dot is sent. -1 outside the body. */
int smtp_client_body_end(struct smtp_client *c);

/* Octets to send; the glue sends them (all of them) and reports with _output_done(). */
const char *smtp_client_output(const struct smtp_client *c, size_t *len);
void smtp_client_output_done(struct smtp_client *c, size_t n);

/*
 * The next pending action (SMTP_CLIENT_ACT_NONE when there is none); drain them
 * after every call above. MSG_DONE always comes before the READY or CLOSE that
 * follows it.
 */
enum smtp_client_action smtp_client_next_action(struct smtp_client *c);

/*
 * The deadline that applies now. When its serial differs from the one the glue
 * armed, the glue re-arms its timer to `seconds` from now (0: disarms it). The
 * serial changes when a new wait begins (each reply awaited, the handshake, the
 * body) and, while sending the body, with every progress (octets taken by
 * smtp_client_body() or smtp_client_output_done()).
 */
struct smtp_client_deadline smtp_client_deadline(const struct smtp_client *c);

/* The results of the last message (after its MSG_DONE), else NULL. */
const struct smtp_client_result *smtp_client_result(const struct smtp_client *c);

/* How the connection went (valid at any time; final after ACT_CLOSE). */
const struct smtp_client_conn_result *smtp_client_conn_result(const struct smtp_client *c);

/* The peer's capabilities as known now (reset by STARTTLS). */
const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c);

/* Octets received and thrown away (after STARTTLS's 220, after the end). */
uint64_t smtp_client_discarded(const struct smtp_client *c);

/* 1 once ACT_CLOSE has been issued: every later event is ignored. */
int smtp_client_done(const struct smtp_client *c);

/* Names for logs and tests: "greeting", "RCPT TO", ...; "delivered", ...; "timeout", ... */
const char *smtp_client_wait_name(enum smtp_client_wait w);
const char *smtp_client_rcpt_status_name(enum smtp_client_rcpt_status s);
const char *smtp_client_msg_status_name(enum smtp_client_msg_status s);
const char *smtp_client_conn_status_name(enum smtp_client_conn_status s);

#endif
