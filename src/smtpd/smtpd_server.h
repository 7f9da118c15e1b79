/*
 * smtpd_server: the SMTP and submission listeners of sharemaild and the thin I/O
 * glue between a TCP connection (a libevent bufferevent) and one pure
 * smtp_session. Everything SMTP-ish is the session's; this module only moves
 * octets, enforces the connection limits and deadlines, and connects the
 * session's ops to the queue, the verifier (verify/verify.h: recipient and
 * sender verdicts, maybe from other servers), the mailbox index (VRFY) and the
 * rejected-recipients log.
 *
 * Requests (smtp_session.h): the glue keeps each connection's open requests by
 * id. A connection that goes with requests open cancels its verify ones at once
 * (verify_cancel) and waits only for a commit outcome, as before. While a
 * session has requests open its command deadline is suspended (the client
 * waits for us), and a client's EOF closes only once they are answered.
 *
 * Per connection: a session (trusted when the peer lies in smtp_trusted_networks),
 * a bufferevent with bounded buffers, and one timer used for the greeting pause,
 * the command/DATA deadlines and the final flush. Connections over
 * smtp_max_connections or smtp_max_connections_per_ip get
 * "421 4.7.0 too many connections" and are closed at once.
 *
 * Deadlines (hostile-inputs.md "Limits and load", slowloris): a client has
 * smtp_command_timeout seconds from our last reply to complete its next command,
 * and in DATA smtp_data_timeout seconds for every DATA_PROGRESS_BYTES (64 KiB) of
 * message and the final dot. Octets that complete nothing do not extend either
 * deadline, so one byte every few seconds cannot hold a connection.
 *
 * Threads: everything runs on the event loop given to smtpd_server_new().
 * Ownership: the server borrows the conf, the event base, the queue, the index
 * and the verifier; all must outlive it. After smtpd_server_reload() each conf it was given must
 * live while smtpd_server_conf_in_use() says so (or until smtpd_server_free()).
 */
#ifndef SHAREMAIL_SMTPD_SMTPD_SERVER_H
#define SHAREMAIL_SMTPD_SMTPD_SERVER_H

#include <stddef.h>

struct conf;
struct event_base;
struct queue;
struct mailbox_index;
struct smtpd_server;
struct verify;
struct password_check;
struct password_check_result;
struct screen;

/*
 * Binds every smtp_listen and submission_listen address (SO_REUSEADDR;
 * IPV6_V6ONLY on IPv6) and starts accepting on `base`. Returns NULL with a
 * message in err on failure (nothing left open); a bind or listen error names
 * the config line ("FILE:LINE: smtp_listen HOST:PORT: reason"). A conf with no
 * listeners gives a server that accepts nothing. v (not NULL) answers RCPT and
 * MAIL verdicts, on the same event loop. q, idx and v may be NULL when the daemon
 * binds as root before it has them: smtpd_server_attach() then gives them before
 * the event loop first runs (nothing is accepted until it does).
 */
struct smtpd_server *smtpd_server_new(const struct conf *c, struct event_base *base,
                                      struct queue *q, struct mailbox_index *idx, struct verify *v,
                                      char *err, size_t errlen);

/* Gives a server made without them its queue, index and verifier (see smtpd_server_new). */
void smtpd_server_attach(struct smtpd_server *s, struct queue *q, struct mailbox_index *idx,
                         struct verify *v);

/*
 * AUTH and the Dynamic Screen for connections accepted from now on: pc (NULL:
 * AUTH not offered) checks passwords, and its results must be handed to
 * smtpd_server_password_done() (pc's done callback, with s as its argument);
 * sc (NULL: none) refuses screened clients at accept (421 4.7.0) and counts
 * connections, AUTH failures (each 535 after screen_auth_delay_ms()) and unknown
 * recipients. Both are borrowed: free pc before the server, sc after it.
 */
void smtpd_server_set_auth(struct smtpd_server *s, struct password_check *pc, struct screen *sc);

/* password_check's done callback (arg: the server): routes a result to its session. */
void smtpd_server_password_done(void *arg, const struct password_check_result *r);

/*
 * Graceful stop: closes the listeners, ends every session with
 * smtp_session_shutdown() (421 4.3.2; a session waiting for a commit first gets
 * its 250 or 451; open verify requests are cancelled), flushes, and calls done(arg) on the event loop once no
 * connection is left (at once if there is none). Connections that do not take
 * their last reply within a few seconds are closed anyway.
 */
void smtpd_server_drain(struct smtpd_server *s, void (*done)(void *arg), void *arg);

/* Connections currently open. */
size_t smtpd_server_connections(const struct smtpd_server *s);

/*
 * SIGHUP: connections accepted from now on use c (limits, deadlines, trusted
 * networks, the greeting pause, the session's policy); every open session keeps
 * the conf it started with, to its end. The listeners stay as they are (c must
 * have the same ones: conf_reload_merge()). The rejected-recipients log is
 * reopened on its next line. c is borrowed like the first conf.
 */
void smtpd_server_reload(struct smtpd_server *s, const struct conf *c);

/*
 * 1 when c is the conf for new connections or an open connection (one whose
 * commit is still under way included) still uses it; 0 when the caller may free
 * it. NULL s: 0.
 */
int smtpd_server_conf_in_use(const struct smtpd_server *s, const struct conf *c);

/*
 * Closes the listeners and every connection at once and frees the server (NULL is
 * a no-op). A connection whose commit is still under way is freed when the queue
 * reports the outcome, if it ever does.
 */
void smtpd_server_free(struct smtpd_server *s);

#endif
