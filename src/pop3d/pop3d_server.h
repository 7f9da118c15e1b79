/*
 * pop3d_server: the POP3 service of sharemaild (pop3_listen: 110 with STLS;
 * pop3s_listen: 995, implicit TLS, RFC 8314): one pure pop3_session per
 * connection, driven by net/net_server.h (listeners, connection limits,
 * deadlines, TLS, linger and drain, shared with SMTP). This module connects the
 * session's ops to the Maildirs (store/mailbox.h), the daemon's one password
 * check pool (directory/password_check.h, through password_check_submit_to),
 * the Dynamic Screen (screen/screen.h, as SMTP uses it: admit at accept, AUTH
 * failures counted and answered after the growing delay, "-ERR" and close once
 * screened) and POP before SMTP (directory/pop_login.h: every login is noted).
 *
 * [IN-USE] (RFC 2449 8.1.1): the server keeps one lock per account key while a
 * session has its maildrop open; a second login on it gets -ERR [IN-USE]. The
 * lock is the daemon's (one daemon per state_dir: sharemaild's pid-file lock).
 *
 * Requests: a password check runs on the pool's threads; opening (listing) a
 * maildrop and UPDATE's removals (unlinks, then an fsync per folder) on this
 * server's worker thread (pop3d_work.h), which owns the maildrop's lock and
 * listing while it works. Reading a message for RETR/TOP is done on the loop, a
 * chunk at a time as the output drains (page-cache reads; a cold disk makes the
 * other sessions wait for that read).
 *
 * Limits (hostile-inputs.md "Limits and load"): pop3_max_connections,
 * pop3_max_connections_per_ip ("-ERR [SYS/TEMP] too many connections" and
 * closed), pop3_command_timeout (RFC 1939 3: at least 10 minutes), a TLS
 * handshake POP3D_HANDSHAKE_TIMEOUT seconds.
 *
 * Threads: everything runs on the event loop given to pop3d_server_new().
 * Ownership: the server borrows the conf, the base, the pool, the screen and the
 * login table, which must outlive it; after pop3d_server_reload() each conf it
 * was given must live while pop3d_server_conf_in_use() says so.
 */
#ifndef SHAREMAIL_POP3D_POP3D_SERVER_H
#define SHAREMAIL_POP3D_POP3D_SERVER_H

#include <stddef.h>

struct conf;
struct event_base;
struct password_check;
struct pop_login;
struct pop3d_server;
struct screen;

#define POP3D_HANDSHAKE_TIMEOUT 60 /* seconds */

/*
 * Binds pop3_listen and pop3s_listen (done while still root) and loads the TLS
 * context of tls_cert_file. Returns the server, or NULL with "WHERE: reason" in
 * err. With neither key set it listens nowhere (and costs nothing).
 */
struct pop3d_server *pop3d_server_new(const struct conf *c, struct event_base *base, char *err,
                                      size_t errlen);

/*
 * After the privilege drop: starts the worker thread (pop3d_work.h) and takes
 * the password pool (NULL: every login answers -ERR [SYS/TEMP]), the Dynamic
 * Screen (NULL: none) and the POP before SMTP table (NULL: logins are not
 * noted). Returns 0, or -1 with the reason in err (no thread).
 */
int pop3d_server_attach(struct pop3d_server *s, struct password_check *pc, struct screen *sc,
                        struct pop_login *pl, char *err, size_t errlen);

/* SIGHUP: limits and texts for new connections, the certificate re-read. */
void pop3d_server_reload(struct pop3d_server *s, const struct conf *c);

/* 1 while the server or a session still uses c. */
int pop3d_server_conf_in_use(const struct pop3d_server *s, const struct conf *c);

/* Graceful stop (net_server_drain): done(arg) once no connection is left. */
void pop3d_server_drain(struct pop3d_server *s, void (*done)(void *arg), void *arg);

/* Connections open (NULL: 0). */
size_t pop3d_server_connections(const struct pop3d_server *s);

/* Closes everything and frees the server (NULL is a no-op). */
void pop3d_server_free(struct pop3d_server *s);

#endif
