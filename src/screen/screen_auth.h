/*
 * screen_auth: the password checks of one service's sessions (SMTP AUTH, POP3
 * USER/PASS and AUTH), shared by smtpd_server and pop3d_server. A check goes to
 * the password_check pool under a server-wide id; its answer comes back to the
 * connection that asked, unless that connection went meanwhile (the pool has no
 * cancel: the record stays, orphaned, until the answer comes and is dropped). A
 * failure counts for screen_auth_failures in the Dynamic Screen and reaches its
 * connection only after screen_auth_delay_ms() (a guesser pays seconds per
 * guess); a success forgets the peer's failures.
 *
 * Ownership: the service owns the struct screen_auth; the pool and the screen
 * are borrowed (free the pool before screen_auth_free(): results that come after
 * it would find it gone). Connections are the service's, named by an opaque
 * pointer. Loop thread only.
 */
#ifndef SHAREMAIL_SCREEN_SCREEN_AUTH_H
#define SHAREMAIL_SCREEN_SCREEN_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "directory/password_check.h"

struct event_base;
struct screen;
struct screen_auth;

/*
 * A check's answer for connection conn, request id (the session's): status is
 * PASSWORD_CHECK_OK (r is the pool's result, lent for the call: the account and
 * its aliases), _FAIL (r NULL; screened: this failure screened the peer, the
 * service ends the session) or _TEMPFAIL (r NULL). Never called for a connection
 * after screen_auth_cancel() of it, nor from inside screen_auth_submit().
 */
typedef void (*screen_auth_done_fn)(void *conn, uint64_t id, enum password_check_status status,
                                    const struct password_check_result *r, int screened);

/* A new, empty set of checks on base (borrowed) answering through done. NULL: out of memory. */
struct screen_auth *screen_auth_new(struct event_base *base, screen_auth_done_fn done);

/* The pool (NULL: every submit fails) and the Dynamic Screen (NULL: none) from now on. */
void screen_auth_set(struct screen_auth *a, struct password_check *pc, struct screen *sc);

/*
 * Submits the check of identity and password[0..len) (NULL identity or password:
 * empty; invalid credentials cost the same hash as an unknown user) for
 * connection conn's request id, from peer (copied: the Dynamic Screen's key).
 * Returns 0, or -1 (no pool, out of memory, the pool refused it).
 */
int screen_auth_submit(struct screen_auth *a, void *conn, const struct sockaddr *peer, uint64_t id,
                       const char *identity, const char *password, size_t len);

/*
 * Connection conn no longer wants request id (0: any of its own): a failure
 * waiting out its delay is dropped now; a check the pool still owes is orphaned.
 */
void screen_auth_cancel(struct screen_auth *a, void *conn, uint64_t id);

/*
 * The pool's answer (a password_check_done_fn, arg: the struct screen_auth):
 * screen_auth_submit routes its checks here itself; a service whose pool's own
 * callback gets them forwards them here. An id not submitted here is ignored.
 */
void screen_auth_result(void *arg, const struct password_check_result *r);

/* Frees every record (answers still owed are dropped) and a. NULL: no-op. */
void screen_auth_free(struct screen_auth *a);

#endif
