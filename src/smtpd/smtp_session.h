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
 * Requests (DESIGN.md "Asynchronous requests"): whatever the session waits for
 * from outside is a request with an id (uint64_t, unique in the session, never
 * 0) and a kind (enum smtp_request_kind). The session asks through an op
 * (msg_commit, rcpt_verify, sender_verify, tls_start), the glue answers with the kind's
 * _done(s, id, ...). An answer for an id that is not open (cancelled, already
 * answered, never asked) is ignored.
 *
 * Order (RFC 2920 3.1: replies in command order): a RCPT whose verdict needs
 * the verifier does not wait for the answers of earlier RCPTs, so pipelined
 * RCPTs are all asked at once; every other command, a RCPT in a HELO session,
 * and a RCPT that could go over smtp_max_recipients if the open ones were
 * accepted wait (the session stops consuming input) until every earlier
 * request is done. Outcomes are applied in command order, so replies, the
 * recipient list, the error count (smtp_max_errors) and the log lines are what
 * they would be with every answer at once. At most min(smtp_max_recipients,
 * SMTP_SESSION_PIPELINE_MAX) RCPTs are outstanding; past that input waits.
 *
 * After the final dot the session asks ops->msg_commit() and consumes nothing
 * until smtp_session_commit_done(); only then is "250" (or 451/452) output. So
 * the 250 can never precede durability. After MAIL (with domain_sharing and
 * domain_sharing_query_senders, for a sender in a local domain) its 250 waits
 * for sender_verify's answer.
 *
 * When the session ends (QUIT, 421, a timeout, shutdown) or is freed, its open
 * RCPT and sender requests are cancelled through ops->request_cancel; a commit
 * is never cancelled (the message belongs to the queue).
 *
 * The log (ops->log_line), Postfix-like, decided here where the replies are:
 *   QUEUEID: client=[ADDR] helo=<HELO> from=<S> size=N nrcpt=N[ msgid=<ID>][ sender=peer]
 * once per accepted message (after its 250; size counts the octets stored,
 * our Received field included; msgid is the Message-ID field as sent;
 * sender=peer when sender_verify found the envelope sender on a Domain Sharing
 * peer), and
 *   reject: MAIL|RCPT|DATA from [ADDR] helo=<HELO>: REPLY; from=<S>[ to=<R>][ (WHY)]
 * once per refused MAIL or RCPT (or message refused after its dot) that counts
 * as an error or ends the session (so their number is bounded by
 * smtp_max_errors), and for the first recipient over smtp_max_recipients of a
 * transaction. Client-supplied octets outside printable ASCII appear as '?'.
 * The Received field's id is the queue id. WHY is the verifier's reason
 * (struct verify_answer.reason) for a refusal that other servers decided (a
 * 451 4.4.3 names the peer that did not answer).
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
#include "verify/verify.h"

struct conf;
struct queue_msg;

/* The session's output never exceeds this: input is not consumed while it is this full. */
#define SMTP_SESSION_OUT_MAX (64 * 1024)
/* Room for a queue id (msg_begin) with its NUL. */
#define SMTP_SESSION_ID_MAX 32
/* RCPTs outstanding at once (asked, or answered behind one that is), at most. */
#define SMTP_SESSION_PIPELINE_MAX 500

/*
 * What a request waits for. Each kind has its _done(). The TLS issue adds
 * SMTP_REQUEST_TLS (a handshake) with its own op and _done().
 */
enum smtp_request_kind {
	SMTP_REQUEST_COMMIT = 0, /* msg_commit -> smtp_session_commit_done() */
	SMTP_REQUEST_RCPT, /* rcpt_verify -> smtp_session_rcpt_done() */
	SMTP_REQUEST_SENDER, /* sender_verify -> smtp_session_sender_done() */
	SMTP_REQUEST_AUTH, /* auth_check -> smtp_session_auth_done() */
	SMTP_REQUEST_TLS, /* tls_start -> smtp_session_tls_done() (STARTTLS, RFC 3207) */
};

/* The outcome of a password check (directory/password_check.h's three). */
enum smtp_auth_status {
	SMTP_AUTH_OK = 0, /* 235 2.7.0 */
	SMTP_AUTH_FAIL, /* 535 5.7.8: unknown user, wrong password, invalid credentials */
	SMTP_AUTH_TEMPFAIL, /* 454 4.7.0: cannot check now */
};

/* What the session tells the Dynamic Screen (ops->screen_note). */
enum smtp_screen_note {
	SMTP_SCREEN_UNKNOWN_RCPT = 0, /* a local recipient nobody has (address harvesting) */
	SMTP_SCREEN_AUTH_ON_SMTP_PORT, /* AUTH on 25 with smtp_auth_on_smtp_port_screen */
};

/* What sender_verify said of the transaction's envelope sender (for the AUTH rules). */
enum smtp_sender_known {
	SMTP_SENDER_NOT_ASKED = 0, /* <>, not a local domain, or Domain Sharing off */
	SMTP_SENDER_LOCAL, /* a mailbox of this server */
	SMTP_SENDER_PEER, /* a Domain Sharing peer has it */
	SMTP_SENDER_UNKNOWN, /* asked: nobody has it, or no answer (TEMPFAIL) */
};

/* The listener's role: 25 (relay and inbound), 587 (RFC 6409), 465 (RFC 8314). */
enum smtp_port_kind { SMTP_PORT_SMTP = 0, SMTP_PORT_SUBMISSION, SMTP_PORT_SMTPS };

struct smtp_session_ops {
	void *arg;
	/* The shared local lookup (mailbox_lookup), for VRFY. */
	lookup_fn lookup;
	/*
	 * The verdict on RCPT recipient mailbox[0..len) posted by sender[0..sender_len)
	 * ("" for <>), as verify_rcpt(): 0 with *out filled now, or 1 when pending:
	 * smtp_session_rcpt_done(s, id, answer) follows later (never from inside
	 * this call), unless the session cancels id first.
	 */
	int (*rcpt_verify)(void *arg, uint64_t id, const char *mailbox, size_t len,
	                   const char *sender, size_t sender_len, struct verify_answer *out);
	/* The same for MAIL's sender (verify_sender()); smtp_session_sender_done() follows a 1. */
	int (*sender_verify)(void *arg, uint64_t id, const char *mailbox, size_t len,
	                     struct verify_answer *out);
	/*
	 * Forget open request id (RCPT or SENDER; a commit is never cancelled): its
	 * _done must not come. An id the glue no longer holds is a no-op.
	 */
	void (*request_cancel)(void *arg, uint64_t id);
	/*
	 * Queue: start a message file and write its queue id into id[0..idsz)
	 * (NUL-terminated; NULL: failed, errno set), write octets, abort. msg_commit
	 * starts the commit of request id: smtp_session_commit_done(s, id, ...)
	 * follows, on the event loop, always (a commit cannot be cancelled).
	 */
	struct queue_msg *(*msg_begin)(void *arg, char *id, size_t idsz);
	int (*msg_write)(void *arg, struct queue_msg *m, const void *data, size_t len);
	void (*msg_commit)(void *arg, uint64_t id, struct queue_msg *m, const struct envelope *env);
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
	/*
	 * AUTH (RFC 4954): check identity (NUL-terminated, as the client sent it) with
	 * password[0..len) off the event loop; identity NULL: the exchange itself found
	 * the credentials invalid (the glue still counts and delays the failure, and
	 * may spend the same hash). Returns 0 when smtp_session_auth_done(s, id, ...)
	 * follows later (never from inside this call), -1 when it cannot be asked now
	 * (454 4.7.0). The session wipes its copy of the password on return. NULL: no
	 * AUTH (not offered).
	 */
	int (*auth_check)(void *arg, uint64_t id, const char *identity, const char *password,
	                  size_t len);
	/*
	 * Tells the Dynamic Screen what the client did. Returns 1 when the client is
	 * screened now: the session answers 421 4.7.0 and ends. NULL: no screen.
	 */
	int (*screen_note)(void *arg, enum smtp_screen_note what);
	/*
	 * STARTTLS (RFC 3207): once the session's pending output (its 220) is sent,
	 * discard the input not yet consumed and start a server TLS handshake as
	 * request id. Returns 1 when it will (smtp_session_tls_done(s, id, ...)
	 * follows, never from inside this call), 0 when TLS cannot be had now (the
	 * session answers 454). NULL: no TLS (STARTTLS is never offered).
	 */
	int (*tls_start)(void *arg, uint64_t id);
	/*
	 * POP before SMTP (pop_before_smtp; directory/pop_login.h): 1 if the account
	 * key (lower case) logged in over POP3 within window seconds of now, else 0.
	 * Asked only for a MAIL FROM the lookup says is a local account. NULL: no
	 * login is known (every such sender is refused while the key is on).
	 */
	int (*pop_recent)(void *arg, const char *key, int64_t window);
};

struct smtp_session;

/*
 * Creates a session for one connection. client_addr is the peer's address as
 * text; trusted is 1 when it lies in smtp_trusted_networks; sharing_peer is 1
 * when it is a Domain Sharing peer (verify_client_is_peer(): its posts to
 * members-only lists skip the member check). The conf and ops are borrowed and
 * must outlive the session.
 */
struct smtp_session *smtp_session_new(const struct conf *c, const struct smtp_session_ops *ops,
                                      enum smtp_port_kind kind, const char *client_addr,
                                      int trusted, int sharing_peer);

/*
 * Frees the session; aborts any message in progress and cancels open RCPT and
 * sender requests (ops->request_cancel); an open commit is the glue's to wait
 * for (NULL is a no-op).
 */
void smtp_session_free(struct smtp_session *s);

/*
 * Outputs the greeting. If early_talker is set (the client sent octets before
 * the greeting), outputs "554 5.5.0" instead and the session ends.
 */
void smtp_session_greet(struct smtp_session *s, int early_talker);

/*
 * Consumes input. Returns the number of octets consumed (less than len when the
 * session waits for a request or has ended: the glue keeps the rest and feeds
 * it again after the next _done()).
 */
size_t smtp_session_input(struct smtp_session *s, const char *data, size_t len);

/* The output not yet sent; the glue sends it and calls smtp_session_output_done(n). */
const char *smtp_session_output(const struct smtp_session *s, size_t *len);
void smtp_session_output_done(struct smtp_session *s, size_t n);

/* 1 once the session has ended: send the pending output, then close. */
int smtp_session_ended(const struct smtp_session *s);

/* 1 while the session takes no input until a request is done (do not feed input). */
int smtp_session_waiting(const struct smtp_session *s);

/*
 * Requests open (asked, not answered, not cancelled). While any is, the client
 * waits for us: the glue suspends its command deadline, and does not close on
 * the client's EOF before they are answered.
 */
size_t smtp_session_requests(const struct smtp_session *s);

/* 1 while in DATA (the glue then applies smtp_data_timeout instead of the command one). */
int smtp_session_in_data(const struct smtp_session *s);

/*
 * Commit request id's outcome: outputs 250 with queue id qid (NULL or "": the
 * one msg_begin gave; and logs it), or 451/452, and resumes.
 */
void smtp_session_commit_done(struct smtp_session *s, uint64_t id, int ok, const char *qid);

/*
 * RCPT request id's answer (copied): its reply is output once every earlier
 * command's is (smtp_policy.c maps the answer to it), and input resumes.
 */
void smtp_session_rcpt_done(struct smtp_session *s, uint64_t id, const struct verify_answer *a);

/* Sender request id's answer (copied): recorded (smtp_session_sender()), then MAIL's 250. */
void smtp_session_sender_done(struct smtp_session *s, uint64_t id, const struct verify_answer *a);

/*
 * What sender_verify said of the current transaction's sender; with
 * SMTP_SENDER_PEER, *peer (when peer is not NULL) names the peer (the answer's
 * route, else its reason; owned by the session, valid until the next MAIL).
 */
enum smtp_sender_known smtp_session_sender(const struct smtp_session *s, const char **peer);

/*
 * AUTH request id's outcome: with SMTP_AUTH_OK the session is authenticated as
 * account (the directory's key; copied) whose own addresses and aliases are
 * addresses[0..n) (copied: the match rules take them), and 235 2.7.0 is output;
 * SMTP_AUTH_FAIL 535 5.7.8; SMTP_AUTH_TEMPFAIL 454 4.7.0. Input resumes.
 */
void smtp_session_auth_done(struct smtp_session *s, uint64_t id, enum smtp_auth_status st,
                            const char *account, const char *const *addresses, size_t n);

/*
 * The authenticated account (the directory's key), or NULL when the session has
 * not authenticated.
 */
const char *smtp_session_auth_account(const struct smtp_session *s);

/* The Dynamic Screen screened the client (after an AUTH failure): 421 4.7.0, ended. */
void smtp_session_screened(struct smtp_session *s);

/*
 * TLS request id's outcome (STARTTLS). ok: TLS is active with version and
 * cipher (OpenSSL's names, copied, e.g. "TLSv1.3", "TLS_AES_256_GCM_SHA384"),
 * and every SMTP state is reset as RFC 3207 4.2 asks (HELO/EHLO name, the
 * transaction, octets read but not consumed): the client must EHLO again.
 * Not ok: the session ends without a reply (the handshake broke the stream).
 */
void smtp_session_tls_done(struct smtp_session *s, uint64_t id, int ok, const char *version,
                           const char *cipher);

/* Implicit TLS (smtps_listen, RFC 8314): TLS was active from the start. Before greet. */
void smtp_session_tls_implicit(struct smtp_session *s, const char *version, const char *cipher);

/*
 * 1 while TLS is active, with its version and cipher (owned by the session,
 * valid for its life) in *version and *cipher (when not NULL); 0 otherwise.
 * For the AUTH rules (auth_allow_plaintext) and the Received field.
 */
int smtp_session_tls(const struct smtp_session *s, const char **version, const char **cipher);

/* A timeout fired: outputs 421 4.4.2 and ends the session. */
void smtp_session_timeout(struct smtp_session *s);

/* The server is shutting down: outputs 421 4.3.2 and ends the session. */
void smtp_session_shutdown(struct smtp_session *s);

#endif
