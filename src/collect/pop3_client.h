/*
 * pop3_client: one POP3 session with a server (RFC 1939, RFC 2449 CAPA and
 * PIPELINING, RFC 2595 STLS) as a pure state machine: events in (connected,
 * octets received, a deadline expired, the peer closed, the TLS handshake
 * ended), requests from the caller (retrieve message n, delete n, quit),
 * actions out (octets to send, start TLS, the listing, a message's begin, data
 * chunks and end, per-message errors, ready, close). It owns no socket, timer,
 * file or clock: the glue (collect/collect_transport.h) does, and is told
 * which deadline applies (pop3_client_deadline()), as deliver/smtp_client.h.
 * Transcript tests (tests/unit/test_pop3_client.c), a fuzzer and the daemon
 * drive the same code.
 *
 * The session: greeting (its APOP timestamp noted) -> CAPA (a -ERR is fine:
 * RFC 1939 servers have none) -> with tls = starttls, STLS (not offered or
 * refused: the session ends, no credentials are sent), the TLS handshake, and
 * CAPA again (RFC 2595 4: what was learnt in plaintext is forgotten) ->
 * login: APOP (MD5 of timestamp and password, RFC 1939 7) when auth = apop,
 * or auth = auto and the greeting has a timestamp; otherwise, or after auto's
 * APOP got a -ERR without [IN-USE], [LOGIN-DELAY] or [SYS/...], USER and PASS
 * -> STAT, LIST, UIDL (pipelined when the server offers PIPELINING) -> the
 * listing (POP3_CLIENT_ACT_LISTING) -> the caller's requests -> QUIT.
 *
 * The caller's requests (after LISTING): pop3_client_retr(n), pop3_client_dele(n)
 * and pop3_client_quit(). They are queued (at most queue_max waiting or in
 * flight: pop3_client_room()) and sent in order, all of them at once when the
 * server offers PIPELINING (RFC 2449 6.6), else one at a time. Every RETR
 * ends in exactly one of MSG_END (the whole message was handed on), MSG_ERROR
 * (the server said -ERR: the message vanished, or sent more than its listed
 * size allows: see below) or MSG_ABORTED (the session ended first: the
 * message was not delivered, whatever chunks were handed on); every DELE in
 * DELE_OK, DELE_ERROR or DELE_ABORTED. Deletions take effect only when the
 * server answers QUIT with +OK (RFC 1939 6, UPDATE state):
 * pop3_client_outcome()->end == POP3_CLIENT_END_OK says so. A session that
 * ends any other way deleted nothing, except that a drop or a timeout after
 * QUIT was sent leaves it unknown (POP3_CLIENT_END_QUIT_UNANSWERED).
 *
 * Message data: handed on in chunks (POP3_CLIENT_ACT_MSG_DATA, at most
 * chunk_max octets each), dot-unstuffed, between MSG_BEGIN and MSG_END; never
 * held whole here. Line ends: CRLF as received; a bare LF or bare CR is handed
 * on as CRLF (proto/pop3_resp.h, POP3_RESP_DATA_CRLF: the queue only ever
 * holds CRLF lines), and only a line after a real CRLF can end the data.
 *
 * Bounds and faults (../shared/hostile-inputs.md, "sharemail as a client"):
 * - a status or listing line over line_max octets, a bare LF or CR in one, a
 *   status that is neither +OK nor -ERR, a reply the server sent before it
 *   could have read our command (as smtp_client: the desync shape), a
 *   malformed STAT/LIST/UIDL line, a message number not in STAT's range or
 *   listed twice: protocol error, the session ends at once (no QUIT);
 * - more than listing_max messages (by STAT, or lines in LIST or UIDL): the
 *   session ends (POP3_CLIENT_END_LISTING) before the listing is read on;
 * - a message that sends more than its LIST size + size/8 + size_slack octets
 *   (lying sizes): that message gets MSG_ERROR with POP3_CLIENT_MSG_OVERSIZE
 *   and the session ends (protocol error: the rest of the reply cannot be
 *   skipped safely);
 * - a multi-line reply that never ends: a listing must be whole within the
 *   reply deadline (and at most listing_max lines); a RETR's data is bounded
 *   by the size bound above and the data deadline (timeouts.data, restarted
 *   by every octet of progress, as RFC 5321's data-block timer);
 * - the same unique-id on several messages of a listing: every one after the
 *   first has dup_uid set (the caller collects one of them only);
 * - -ERR to RETR: MSG_ERROR for that message, the session goes on;
 * - the server closing mid-RETR: that message MSG_ABORTED (not delivered).
 * Nothing a peer sends reaches abort(), assert() or exit().
 *
 * Only CRLF is ever sent. The password is copied at pop3_client_new(), never
 * put in a log, reply text or transcript record of the client's own making,
 * and wiped (OPENSSL_cleanse) as soon as PASS or APOP has been formatted, and
 * the output octets that held it are wiped once the glue has taken them.
 *
 * Ownership: the client owns its buffers (sized from the conf at
 * pop3_client_new(); the conf is copied, the password wiped from the copy).
 * The listing is valid from LISTING until pop3_client_free(); a MSG_DATA
 * chunk and an event's text until the next call that feeds the client
 * (pop3_client_input(), _timeout(), _closed(), _tls_done(), _abort()):
 * pop3_client_next_action() calls leave them alone. One thread.
 */
#ifndef SHAREMAIL_COLLECT_POP3_CLIENT_H
#define SHAREMAIL_COLLECT_POP3_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/pop3_resp.h"

#define POP3_CLIENT_TEXT_MAX 300 /* server text kept in a reason (NUL excluded) */
#define POP3_CLIENT_USER_MAX 255 /* login name octets (printable, no space) */
#define POP3_CLIENT_PASS_MAX 255 /* password octets (no CR, LF or NUL) */

enum pop3_client_tls {
	POP3_CLIENT_TLS_NONE = 0, /* plaintext all along (STLS never sent) */
	POP3_CLIENT_TLS_STARTTLS, /* STLS required before the login (RFC 2595 4) */
	POP3_CLIENT_TLS_IMPLICIT, /* TLS first (RFC 8314, port 995): START_TLS at connected() */
};

enum pop3_client_auth {
	POP3_CLIENT_AUTH_AUTO = 0, /* APOP when the greeting has a timestamp, else USER/PASS */
	POP3_CLIENT_AUTH_USER, /* USER/PASS only */
	POP3_CLIENT_AUTH_APOP, /* APOP only (no timestamp: the session ends, END_AUTH) */
};

/* Deadlines in seconds (0 = none). */
struct pop3_client_timeouts {
	unsigned connect; /* until pop3_client_connected() (30) */
	unsigned greeting; /* the greeting (60) */
	unsigned reply; /* each status line awaited; a CAPA/LIST/UIDL listing whole (60) */
	unsigned tls_handshake; /* START_TLS action to pop3_client_tls_done() (60) */
	unsigned data; /* no progress inside a RETR's data (120) */
	unsigned quit; /* QUIT's answer (30) */
};

struct pop3_client_conf {
	const char *user; /* login name (copied) */
	const char *password; /* copied, then wiped after use; never logged */
	enum pop3_client_tls tls;
	enum pop3_client_auth auth;
	struct pop3_client_timeouts timeouts;
	size_t line_max; /* longest status or listing line, CRLF excluded (1024; 512-65536) */
	size_t listing_max; /* most messages in a listing (100000; 1-10000000) */
	uint64_t size_slack; /* octets over LIST size + size/8 a message may send (4096) */
	size_t queue_max; /* requests waiting or in flight (64; 1-4096) */
	size_t chunk_max; /* octets per MSG_DATA chunk (16384; 512-1048576) */
};

/* Fills *c with the defaults above (user and password NULL: the caller sets them). */
void pop3_client_conf_defaults(struct pop3_client_conf *c);

/* One message of the listing. */
struct pop3_client_entry {
	uint64_t num; /* message number (RFC 1939: 1..count) */
	uint64_t size; /* octets as LIST gave them */
	char uid[POP3_RESP_UID_MAX + 1]; /* UIDL unique-id, NUL-terminated; "" when none */
	size_t uid_len;
	int dup_uid; /* an earlier entry has the same uid: collect only the first */
};

struct pop3_client_listing {
	uint64_t stat_count, stat_octets; /* STAT's answer */
	int have_uidl; /* UIDL was answered +OK (else every uid is "") */
	size_t n; /* entries, ascending by num */
	const struct pop3_client_entry *entries;
	size_t dup_uids; /* entries with dup_uid set */
};

/* What a per-message error was. */
enum pop3_client_msg_error {
	POP3_CLIENT_MSG_OK = 0,
	POP3_CLIENT_MSG_REFUSED, /* -ERR to RETR or DELE (the message vanished, or the server failed) */
	POP3_CLIENT_MSG_OVERSIZE, /* more octets than LIST said, beyond the allowance */
	POP3_CLIENT_MSG_LOST, /* the session ended before the answer (ABORTED events) */
};

/* How the session ended. */
enum pop3_client_end {
	POP3_CLIENT_END_NONE = 0, /* not ended yet */
	POP3_CLIENT_END_OK, /* QUIT answered +OK: deletions are committed */
	POP3_CLIENT_END_QUIT_REFUSED, /* QUIT answered -ERR (RFC 1939 6: some may not be deleted) */
	POP3_CLIENT_END_QUIT_UNANSWERED, /* drop or timeout after QUIT: deletions unknown */
	POP3_CLIENT_END_GREETING, /* -ERR greeting */
	POP3_CLIENT_END_TLS_UNAVAILABLE, /* tls = starttls, STLS not offered or refused */
	POP3_CLIENT_END_TLS_FAILED, /* the handshake failed or timed out */
	POP3_CLIENT_END_AUTH, /* login refused ([AUTH] or no code), or APOP impossible */
	POP3_CLIENT_END_IN_USE, /* [IN-USE]: another session holds the maildrop */
	POP3_CLIENT_END_LOGIN_DELAY, /* [LOGIN-DELAY]: try again later */
	POP3_CLIENT_END_SYS, /* [SYS/TEMP] or [SYS/PERM] at login, or -ERR to STAT/LIST */
	POP3_CLIENT_END_LISTING, /* more than listing_max messages */
	POP3_CLIENT_END_PROTOCOL, /* malformed, over-long, unsolicited or oversize (see above) */
	POP3_CLIENT_END_TIMEOUT, /* a deadline expired */
	POP3_CLIENT_END_DROPPED, /* the peer closed first */
	POP3_CLIENT_END_CONNECT, /* the TCP connection was not made (the glue's reason) */
	POP3_CLIENT_END_LOCAL, /* our side failed (memory, or the caller aborted) */
};

struct pop3_client_outcome {
	enum pop3_client_end end;
	enum pop3_resp_code code; /* the server's response code, when one decided it */
	/* Why, for the log: the server's text (printable, bounded) or the client's
	 * own reason ("timed out waiting for the reply to RETR"). Never a password. */
	char reason[POP3_CLIENT_TEXT_MAX + 1];
	uint64_t retrieved, deleted; /* MSG_END and DELE_OK events so far */
};

/* The server's capabilities as known now (forgotten by STLS). */
struct pop3_client_caps {
	struct pop3_resp_capa capa; /* CAPA's answer (capa.seen 0: none, or -ERR) */
	int apop_timestamp; /* the greeting offered one */
	int tls; /* the session runs over TLS (implicit, or after STLS) */
};

enum pop3_client_action {
	POP3_CLIENT_ACT_NONE = 0,
	POP3_CLIENT_ACT_START_TLS, /* send what is pending, then start the TLS handshake */
	POP3_CLIENT_ACT_LISTING, /* the listing is ready: pop3_client_listing() */
	POP3_CLIENT_ACT_MSG_BEGIN, /* a RETR's data begins: ev.num, ev.size (listed) */
	POP3_CLIENT_ACT_MSG_DATA, /* ev.data[0..ev.len) of ev.num */
	POP3_CLIENT_ACT_MSG_END, /* ev.num is complete (ev.size: octets handed on) */
	POP3_CLIENT_ACT_MSG_ERROR, /* ev.num not retrieved: ev.error, ev.text */
	POP3_CLIENT_ACT_MSG_ABORTED, /* ev.num not retrieved: the session ended first */
	POP3_CLIENT_ACT_DELE_OK, /* ev.num marked deleted (committed by QUIT's +OK) */
	POP3_CLIENT_ACT_DELE_ERROR, /* the server refused to mark ev.num */
	POP3_CLIENT_ACT_DELE_ABORTED, /* the session ended before DELE ev.num was answered */
	POP3_CLIENT_ACT_READY, /* nothing waiting or in flight: more requests, or quit */
	POP3_CLIENT_ACT_CLOSE, /* close the connection now: pop3_client_outcome() is final */
};

struct pop3_client_event {
	enum pop3_client_action action;
	uint64_t num; /* the message (MSG_*, DELE_*) */
	uint64_t size; /* MSG_BEGIN: LIST's size; MSG_END: octets handed on */
	const char *data; /* MSG_DATA: valid until the next call that feeds the client */
	size_t len;
	enum pop3_client_msg_error error; /* MSG_ERROR, DELE_ERROR, *_ABORTED */
	enum pop3_resp_code code; /* the server's response code with the error, if any */
	const char *text; /* MSG_ERROR, DELE_ERROR: the server's text (printable; "" none) */
};

/* Which wait the deadline belongs to (for logs and tests). */
enum pop3_client_wait {
	POP3_CLIENT_WAIT_NONE = 0, /* idle (the caller's turn), or done */
	POP3_CLIENT_WAIT_CONNECT,
	POP3_CLIENT_WAIT_GREETING,
	POP3_CLIENT_WAIT_CAPA,
	POP3_CLIENT_WAIT_STLS,
	POP3_CLIENT_WAIT_TLS,
	POP3_CLIENT_WAIT_AUTH, /* USER, PASS or APOP */
	POP3_CLIENT_WAIT_LISTING, /* STAT, LIST, UIDL (status and lines) */
	POP3_CLIENT_WAIT_RETR, /* RETR's status line */
	POP3_CLIENT_WAIT_DATA, /* RETR's data (restarted with progress) */
	POP3_CLIENT_WAIT_DELE,
	POP3_CLIENT_WAIT_QUIT,
};

struct pop3_client_deadline {
	unsigned seconds; /* 0: no deadline */
	enum pop3_client_wait wait;
	unsigned long serial; /* changes whenever the timer must be re-armed */
};

struct pop3_client;

/*
 * Creates a client for one session, not yet connected (deadline: connect).
 * NULL when the conf is out of range (the ranges above; a user of 1-255
 * printable octets without space; a password of 1-255 octets without CR, LF
 * or NUL; tls and auth known) or memory runs out. The password is copied;
 * the caller wipes its own.
 */
struct pop3_client *pop3_client_new(const struct pop3_client_conf *conf);

/* Wipes and frees the client (NULL is a no-op). Requests under way get no events. */
void pop3_client_free(struct pop3_client *c);

/*
 * The TCP connection is up: the greeting is awaited; with tls = implicit,
 * START_TLS comes first and the greeting after pop3_client_tls_done(c, 1).
 */
void pop3_client_connected(struct pop3_client *c);

/*
 * The TCP connection could not be made (refused, unreachable, no descriptor):
 * the session ends with POP3_CLIENT_END_CONNECT and why (copied, cut) as its reason.
 */
void pop3_client_connect_failed(struct pop3_client *c, const char *why);

/*
 * Octets received (any split). Returns how many were consumed: fewer than len
 * when an event is pending (a data chunk or the listing): drain the actions,
 * then give the rest again. Between STLS's +OK and pop3_client_tls_done()
 * everything is consumed and discarded unread (counted:
 * pop3_client_discarded(); CVE-2011-0411 shape); after the end, everything is
 * consumed and ignored. Always makes progress: 0 is returned only with an
 * action pending.
 */
size_t pop3_client_input(struct pop3_client *c, const char *data, size_t len);

/* The current deadline expired. */
void pop3_client_timeout(struct pop3_client *c);

/* The peer closed the connection (or it broke: EOF, reset, write error). */
void pop3_client_closed(struct pop3_client *c);

/*
 * Our side ends the session at once (a local failure, shutdown): no QUIT, so
 * nothing is deleted; requests under way get their ABORTED events, then
 * CLOSE; the outcome is POP3_CLIENT_END_LOCAL with why (copied, cut).
 */
void pop3_client_abort(struct pop3_client *c, const char *why);

/* The handshake asked for by POP3_CLIENT_ACT_START_TLS ended (ok 1) or failed (0). */
void pop3_client_tls_done(struct pop3_client *c, int ok);

/*
 * Requests, after LISTING and before quit: retrieve message num, or mark it
 * deleted. 0 (queued; its events follow), or -1 and nothing happens: not in
 * the listing, already deleted (or a DELE queued), no room (pop3_client_room()
 * is 0), before LISTING, after quit or the end.
 */
int pop3_client_retr(struct pop3_client *c, uint64_t num);
int pop3_client_dele(struct pop3_client *c, uint64_t num);

/* Requests that may be queued now (0 before LISTING and after quit or the end). */
size_t pop3_client_room(const struct pop3_client *c);

/*
 * No more requests: QUIT is sent after the queued ones (it may be pipelined
 * behind them). 0, or -1 before LISTING or when already quitting or ended.
 * Before LISTING the glue ends a session by closing it (nothing was deleted).
 */
int pop3_client_quit(struct pop3_client *c);

/* Octets to send; the glue sends them (all of them) and reports with _output_done(). */
const char *pop3_client_output(const struct pop3_client *c, size_t *len);
void pop3_client_output_done(struct pop3_client *c, size_t n);

/*
 * The next pending action into *ev (POP3_CLIENT_ACT_NONE when there is none;
 * ev may be NULL). Drain them after every call above, in order: they come in
 * the order things happened (MSG_BEGIN, MSG_DATA..., MSG_END for one message
 * before the next message's), READY and CLOSE last.
 */
enum pop3_client_action pop3_client_next_action(struct pop3_client *c,
                                                struct pop3_client_event *ev);

/*
 * The deadline that applies now. When its serial differs from the one the glue
 * armed, the glue re-arms its timer to `seconds` from now (0: disarms it). The
 * serial changes when a new wait begins (each reply awaited, the lines of a
 * listing after its +OK, the handshake) and, inside a RETR's data, with every
 * octet of progress.
 */
struct pop3_client_deadline pop3_client_deadline(const struct pop3_client *c);

/* The listing (after LISTING), else NULL. */
const struct pop3_client_listing *pop3_client_listing(const struct pop3_client *c);

/* The entry of message num in the listing, or NULL. */
const struct pop3_client_entry *pop3_client_entry(const struct pop3_client *c, uint64_t num);

/* How the session went (valid at any time; final after ACT_CLOSE). */
const struct pop3_client_outcome *pop3_client_outcome(const struct pop3_client *c);

/* The server's capabilities as known now. */
const struct pop3_client_caps *pop3_client_caps(const struct pop3_client *c);

/* Plaintext octets received after STLS's +OK and thrown away unread (CVE-2011-0411). */
uint64_t pop3_client_discarded(const struct pop3_client *c);

/* 1 once ACT_CLOSE has been issued: every later event is ignored. */
int pop3_client_done(const struct pop3_client *c);

/* Names for logs and tests. */
const char *pop3_client_wait_name(enum pop3_client_wait w); /* "greeting", "RETR", ... */
const char *pop3_client_end_name(enum pop3_client_end e); /* "ok", "timeout", ... */
const char *pop3_client_action_name(enum pop3_client_action a); /* "MSG_BEGIN", ... */
const char *pop3_client_msg_error_name(enum pop3_client_msg_error e); /* "refused", ... */

#endif
