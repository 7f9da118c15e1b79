/*
 * smtpd_server: the SMTP, submission and SMTPS service of sharemaild: one
 * pure smtp_session per connection, driven by net/net_server.h (listeners,
 * connection limits, the greeting pause, deadlines, TLS, linger and drain,
 * shared with the POP3 service). Everything SMTP-ish is the session's; this
 * module connects the session's ops to the queue, the verifier
 * (verify/verify.h: recipient and sender verdicts, maybe from other servers),
 * the mailbox index (VRFY) and the rejected-recipients log.
 *
 * Requests (smtp_session.h): the glue keeps each connection's open requests by
 * id. A connection that goes with requests open cancels its verify ones at once
 * (verify_cancel) and waits only for a commit outcome, as before (net_server
 * holds it, counted, until then). While a session has requests open its
 * command deadline is suspended (the client waits for us), and a client's EOF
 * closes only once they are answered.
 *
 * Limits and deadlines (net_server.h; hostile-inputs.md "Limits and load"):
 * smtp_max_connections and smtp_max_connections_per_ip ("421 4.7.0 too many
 * connections" and closed at once), smtp_greet_pause_ms, smtp_command_timeout
 * from our last reply to the next complete command (and for a TLS handshake),
 * smtp_data_timeout for every NET_BULK_PROGRESS (64 KiB) of message and the
 * final dot. Octets that complete nothing do not extend either deadline.
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
struct pop_login;

/*
 * Binds every smtp_listen, submission_listen and smtps_listen (implicit TLS,
 * submission's rules) address (SO_REUSEADDR; IPV6_V6ONLY on IPv6), loads the
 * TLS context of tls_cert_file and tls_key_file when set (STARTTLS is then
 * offered on the other two), and starts accepting on `base`. Returns NULL with a
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
 * AUTH not offered) checks passwords (the server's checks come back to it on
 * their own: screen/screen_auth.h; pc's done callback may be
 * smtpd_server_password_done(), with s as its argument);
 * sc (NULL: none) refuses screened clients at accept (421 4.7.0) and counts
 * connections, AUTH failures (each 535 after screen_auth_delay_ms()) and unknown
 * recipients. Both are borrowed: free pc before the server, sc after it.
 */
void smtpd_server_set_auth(struct smtpd_server *s, struct password_check *pc, struct screen *sc);

/*
 * POP before SMTP: the table of recent POP3 logins (the POP3 server notes them)
 * that pop_before_smtp asks, for connections accepted from now on. Borrowed:
 * free it after the server. NULL (the default): no login is known.
 */
void smtpd_server_set_pop_logins(struct smtpd_server *s, struct pop_login *t);

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
 * have the same ones: conf_reload_merge()). tls_cert_file and tls_key_file
 * are read again: new connections and STARTTLS handshakes use them, open TLS
 * sessions keep theirs; a pair that fails to load is logged and the last good
 * one stays. The rejected-recipients log is reopened on its next line. c is borrowed like the first conf.
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
