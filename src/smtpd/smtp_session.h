/*
 * smtp_session: one SMTP server session as a pure state machine (RFC 5321). The
 * glue (smtpd_server.c) feeds it the octets it reads and sends what it outputs;
 * the session never touches a socket, a clock or the disk itself: everything
 * outside comes through struct smtp_session_ops, so transcript tests and the
 * fuzzer drive it with fakes.
 *
 * Commands dispatch through one table of {name, check, do} (smtp_commands.c).
 * Recipient decisions are smtp_policy.c's (the shared three-valued lookup).
 *
 * Flow control: after the final dot the session asks ops->msg_commit() and stops
 * consuming input (smtp_session_waiting()) until the glue reports the outcome
 * with smtp_session_commit_done(); only then is "250" (or 451/452) output. So the
 * 250 can never precede durability.
 *
 * The log (ops->log_line), Postfix-like, decided here where the replies are:
 *   QUEUEID: client=[ADDR] helo=<HELO> from=<S> size=N nrcpt=N[ msgid=<ID>]
 * once per accepted message (after its 250; size counts the octets stored,
 * our Received field included; msgid is the Message-ID field as sent), and
 *   reject: MAIL|RCPT|DATA from [ADDR] helo=<HELO>: REPLY; from=<S>[ to=<R>]
 * once per refused MAIL or RCPT (or message refused after its dot) that counts
 * as an error or ends the session (so their number is bounded by
 * smtp_max_errors), and for the first recipient over smtp_max_recipients of a
 * transaction. Client-supplied octets outside printable ASCII appear as '?'.
 * The Received field's id is the queue id.
 *
 * Ownership: the session owns its buffers (all bounded) and its envelope until it
 * hands the envelope to msg_commit (which copies it).
 */
#ifndef SHAREMAIL_SMTPD_SMTP_SESSION_H
#define SHAREMAIL_SMTPD_SMTP_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "queue/envelope.h"
#include "verify/lookup.h"

struct conf;
struct queue_msg;

/* The session's output never exceeds this: input is not consumed while it is this full. */
#define SMTP_SESSION_OUT_MAX (64 * 1024)
/* Room for a queue id (msg_begin) with its NUL. */
#define SMTP_SESSION_ID_MAX 32

enum smtp_port_kind { SMTP_PORT_SMTP = 0, SMTP_PORT_SUBMISSION };

struct smtp_session_ops {
	void *arg;
	/* The shared recipient lookup (mailbox_lookup). */
	lookup_fn lookup;
	/*
	 * Queue: start a message file and write its queue id into id[0..idsz)
	 * (NUL-terminated; NULL: failed, errno set), write octets, commit, abort.
	 */
	struct queue_msg *(*msg_begin)(void *arg, char *id, size_t idsz);
	int (*msg_write)(void *arg, struct queue_msg *m, const void *data, size_t len);
	void (*msg_commit)(void *arg, struct queue_msg *m, const struct envelope *env);
	void (*msg_abort)(void *arg, struct queue_msg *m);
	/* Free octets on the spool's file system (-1 unknown). */
	long long (*free_space)(void *arg);
	/* One line for smtp_rejected_recipients_log (no newline). */
	void (*log_rejected_rcpt)(void *arg, const char *line);
	/*
	 * One line for the server log (no newline): the glue logs it at level info
	 * through util/log (which replaces control bytes). NULL: no log.
	 */
	void (*log_line)(void *arg, const char *line);
	/* Wall clock, epoch seconds. */
	int64_t (*now)(void *arg);
};

struct smtp_session;

/*
 * Creates a session for one connection. client_addr is the peer's address as
 * text; trusted is 1 when it lies in smtp_trusted_networks. The conf and ops are
 * borrowed and must outlive the session.
 */
struct smtp_session *smtp_session_new(const struct conf *c, const struct smtp_session_ops *ops,
                                      enum smtp_port_kind kind, const char *client_addr,
                                      int trusted);

/* Frees the session; aborts any message in progress (NULL is a no-op). */
void smtp_session_free(struct smtp_session *s);

/*
 * Outputs the greeting. If early_talker is set (the client sent octets before
 * the greeting), outputs "554 5.5.0" instead and the session ends.
 */
void smtp_session_greet(struct smtp_session *s, int early_talker);

/*
 * Consumes input. Returns the number of octets consumed (less than len when the
 * session is waiting for a commit or has ended: the glue keeps the rest and
 * feeds it again after smtp_session_commit_done()).
 */
size_t smtp_session_input(struct smtp_session *s, const char *data, size_t len);

/* The output not yet sent; the glue sends it and calls smtp_session_output_done(n). */
const char *smtp_session_output(const struct smtp_session *s, size_t *len);
void smtp_session_output_done(struct smtp_session *s, size_t n);

/* 1 once the session has ended: send the pending output, then close. */
int smtp_session_ended(const struct smtp_session *s);

/* 1 while waiting for a commit outcome (do not feed input). */
int smtp_session_waiting(const struct smtp_session *s);

/* 1 while in DATA (the glue then applies smtp_data_timeout instead of the command one). */
int smtp_session_in_data(const struct smtp_session *s);

/* The commit outcome: outputs 250 with the queue id (and logs it), or 451/452, and resumes. */
void smtp_session_commit_done(struct smtp_session *s, int ok, const char *id);

/* A timeout fired: outputs 421 4.4.2 and ends the session. */
void smtp_session_timeout(struct smtp_session *s);

/* The server is shutting down: outputs 421 4.3.2 and ends the session. */
void smtp_session_shutdown(struct smtp_session *s);

#endif
