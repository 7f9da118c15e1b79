/*
 * pop3_session: one POP3 server session (RFC 1939) as a pure state machine,
 * with CAPA and response codes (RFC 2449, RFC 3206), STLS (RFC 2595), USER/PASS
 * and SASL PLAIN (RFC 5034, through proto/sasl.h). The glue (pop3d_server.c)
 * feeds it the octets it reads and sends what it outputs; the session never
 * touches a socket, a clock or the disk itself: everything outside comes through
 * struct pop3_session_ops, so transcript tests and the fuzzer drive it with fakes.
 *
 * States (RFC 1939 3): AUTHORIZATION (CAPA, USER, PASS, AUTH, STLS, QUIT),
 * TRANSACTION (STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET, CAPA, QUIT),
 * UPDATE (at QUIT only: the messages marked deleted are removed). A session
 * that ends any other way (timeout, shutdown, a dropped connection, too many
 * errors) removes nothing.
 *
 * Requests (DESIGN.md "Asynchronous requests"): what the session waits for from
 * outside is a request with an id (unique in the session, never 0) and a kind;
 * the session asks through an op and stops consuming input until the kind's
 * _done(s, id, ...) comes (never from inside the op). An answer for an id that
 * is not open is ignored. Pipelined commands are run one after the other, so
 * replies leave in command order (RFC 2449 6.6).
 *
 * Streaming: a RETR, a TOP, and a LIST or UIDL of the whole maildrop are
 * produced as the output drains (pop3_session_output() refills up to
 * POP3_SESSION_OUT_MAX), never whole in memory: a message is read through
 * ops->msg_read in chunks and dot-stuffed with every line end sent as CRLF
 * (proto/dotstuff.h). Input is not consumed while a response is being streamed.
 *
 * Plaintext passwords (RFC 2595 2.4, as SMTP's auth_allow_plaintext): USER,
 * PASS and AUTH PLAIN work only with TLS active unless auth_allow_plaintext;
 * otherwise they get "-ERR [AUTH] ..." without looking at the credentials, and
 * CAPA leaves USER and SASL out.
 *
 * Limits: a command line is at most POP3_SESSION_CMD_MAX octets with its CRLF
 * (RFC 2449 4), an AUTH continuation line SASL_LINE_MAX; a longer line is
 * skipped to its end and answered -ERR; POP3_SESSION_SKIP_MAX octets without a
 * line end end the session. Every -ERR to a command counts as an error; the
 * pop3_max_errors-th ends the session.
 *
 * Ownership: the session owns its buffers (bounded) and its copy of the
 * maildrop listing. The conf and ops are borrowed and must outlive it.
 */
#ifndef SHAREMAIL_POP3D_POP3_SESSION_H
#define SHAREMAIL_POP3D_POP3_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct conf;

/* RFC 2449 4: a command is at most 255 octets, its CRLF included. */
#define POP3_SESSION_CMD_MAX 255
/* The output is refilled up to this many octets; input waits while it is this full. */
#define POP3_SESSION_OUT_MAX (64 * 1024)
/* Octets of one over-long line skipped before the session gives up and ends. */
#define POP3_SESSION_SKIP_MAX (64 * 1024)
/* RFC 1939 7: a unique-id is 1 to 70 octets in 0x21..0x7E. */
#define POP3_UID_MAX 70

enum pop3_request_kind {
	POP3_REQUEST_AUTH = 0, /* auth_check -> pop3_session_auth_done() */
	POP3_REQUEST_OPEN, /* maildrop_open -> pop3_session_open_done() */
	POP3_REQUEST_COMMIT, /* maildrop_commit -> pop3_session_commit_done() */
	POP3_REQUEST_TLS, /* tls_start -> pop3_session_tls_done() */
};

enum pop3_auth_status {
	POP3_AUTH_OK = 0,
	POP3_AUTH_FAIL, /* unknown user, wrong password, disabled: "-ERR [AUTH]" */
	POP3_AUTH_TEMPFAIL, /* cannot check now: "-ERR [SYS/TEMP]" */
};

enum pop3_open_status {
	POP3_OPEN_OK = 0,
	POP3_OPEN_IN_USE, /* another session has it: "-ERR [IN-USE]" (RFC 2449 8.1.1) */
	POP3_OPEN_TEMPFAIL, /* cannot be read now: "-ERR [SYS/TEMP]" */
};

/* One message of the maildrop, as the listing gives it. */
struct pop3_msginfo {
	uint64_t size; /* octets as sent: CRLF line ends, before dot-stuffing */
	char uid[POP3_UID_MAX + 1]; /* NUL-terminated, printable, no space */
};

struct pop3_session_ops {
	void *arg;
	/*
	 * Check identity (NUL-terminated, as the client sent it) with
	 * password[0..len) off the event loop; identity NULL: the exchange itself
	 * found the credentials invalid (the glue still counts and delays the
	 * failure). Returns 0 when pop3_session_auth_done(s, id, ...) follows,
	 * -1 when it cannot be asked now (-ERR [SYS/TEMP]). The session wipes its
	 * copy of the password on return.
	 */
	int (*auth_check)(void *arg, uint64_t id, const char *identity, const char *password,
	                  size_t len);
	/*
	 * Lock and list the maildrop of account (the key auth_done gave). Returns 0
	 * when pop3_session_open_done(s, id, ...) follows, -1 when it cannot be
	 * asked (-ERR [SYS/TEMP]).
	 */
	int (*maildrop_open)(void *arg, uint64_t id, const char *account);
	/*
	 * Message index (0-based in the listing) for reading: msg_open returns 0
	 * or -1 (gone, unreadable); msg_read copies up to len octets of the stored
	 * message into buf and returns how many (0 at its end, -1 on error), always
	 * the whole message (TOP's line limit is the session's); msg_close ends
	 * the reading (also after an error).
	 */
	int (*msg_open)(void *arg, size_t index);
	ssize_t (*msg_read)(void *arg, char *buf, size_t len);
	void (*msg_close)(void *arg);
	/*
	 * UPDATE (RFC 1939 6): remove the n messages index[0..n) (ascending) as
	 * request id: pop3_session_commit_done(s, id, removed_all) follows.
	 */
	int (*maildrop_commit)(void *arg, uint64_t id, const size_t *index, size_t n);
	/* The maildrop lock is no longer needed (QUIT, or the session's end). May repeat. */
	void (*maildrop_release)(void *arg);
	/*
	 * STLS (RFC 2595 4): once the pending output (our +OK) is sent, discard the
	 * unread input and start a TLS handshake as request id; returns 1 when it
	 * will (pop3_session_tls_done() follows), 0 when it cannot. NULL: no TLS
	 * here (STLS not offered).
	 */
	int (*tls_start)(void *arg, uint64_t id);
	/* One line for the server log (no newline); NULL: no log. */
	void (*log_line)(void *arg, const char *line);
};

struct pop3_session;

/*
 * A session for one connection from client_addr (text). The conf (pop3_*,
 * auth_allow_plaintext, hostname) and ops are borrowed. NULL on out of memory.
 */
struct pop3_session *pop3_session_new(const struct conf *c, const struct pop3_session_ops *ops,
                                      const char *client_addr);

/* Frees the session: an open message is closed, the maildrop released (NULL: no-op). */
void pop3_session_free(struct pop3_session *s);

/* The connection is TLS from its start (pop3s_listen): call before the greeting. */
void pop3_session_tls_implicit(struct pop3_session *s);

/* Outputs the greeting; early_talker (octets before it): "-ERR" and the session ends. */
void pop3_session_greet(struct pop3_session *s, int early_talker);

/* Consumes input; returns the octets taken (the rest is fed again later). */
size_t pop3_session_input(struct pop3_session *s, const char *data, size_t len);

/*
 * The output not yet sent (refilled first from a response being streamed);
 * the glue sends it and calls pop3_session_output_done(n).
 */
const char *pop3_session_output(struct pop3_session *s, size_t *len);
void pop3_session_output_done(struct pop3_session *s, size_t n);

/* 1 once the session has ended: send the pending output, then close. */
int pop3_session_ended(const struct pop3_session *s);

/* 1 while a request is open (no input taken until its _done). */
int pop3_session_waiting(const struct pop3_session *s);

/* Requests open (0 or 1). */
size_t pop3_session_requests(const struct pop3_session *s);

/*
 * The deadline passed (pop3_command_timeout): "-ERR" and the end, nothing removed
 * (no "-ERR" in the middle of a response being streamed: the session just ends).
 */
void pop3_session_timeout(struct pop3_session *s);

/* The server stops: the session ends after the response under way (nothing removed). */
void pop3_session_shutdown(struct pop3_session *s);

/*
 * The password check of request id: OK logs in as account (the directory's
 * key) and asks maildrop_open; FAIL and TEMPFAIL answer -ERR [AUTH] / [SYS/TEMP].
 */
void pop3_session_auth_done(struct pop3_session *s, uint64_t id, enum pop3_auth_status st,
                            const char *account);

/* The client is screened now (after a failure): "-ERR [SYS/TEMP]" and the end. */
void pop3_session_screened(struct pop3_session *s);

/* The maildrop listing of request id (v[0..n) copied): "+OK" and TRANSACTION, or -ERR. */
void pop3_session_open_done(struct pop3_session *s, uint64_t id, enum pop3_open_status st,
                            const struct pop3_msginfo *v, size_t n);

/* UPDATE's outcome: "+OK" (all removed) or "-ERR [SYS/TEMP]"; the session ends. */
void pop3_session_commit_done(struct pop3_session *s, uint64_t id, int removed_all);

/* The STLS handshake of request id: ok 1 (TLS active, back to AUTHORIZATION) or 0 (ends). */
void pop3_session_tls_done(struct pop3_session *s, uint64_t id, int ok);

/* The account logged in (NULL before), for the glue's log and POP before SMTP. */
const char *pop3_session_account(const struct pop3_session *s);

#endif
