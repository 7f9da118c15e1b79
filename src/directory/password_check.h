/*
 * password_check: the AUTH password check off the event loop. A yescrypt hash costs
 * milliseconds by design, so it never runs on the loop thread: a small pool of
 * worker threads takes (id, identity, password) jobs, each reads the account from
 * its own read-only connection to the directory, hashes, and the result comes back
 * on the loop thread of the given libevent base (a self-pipe the base watches),
 * carrying the caller's request id (DESIGN.md "Asynchronous requests").
 *
 * Every check costs exactly one hash: an unknown identity, an account without a
 * password or with a locked hash is hashed against a fixed dummy hash made at
 * start-up with the same scheme and cost (password_hash()), so unknown user and
 * wrong password take the same work and give the same answer (RFC 4954 section 9
 * does not ask for it; hostile-inputs.md "unknown user and wrong password look
 * alike" does).
 *
 * Ownership: the pool copies identity and password at submit; the copy of the
 * password is wiped (explicit_bzero) as soon as it has been hashed, and every
 * job left at password_check_free() is wiped unread. A result is lent to the
 * callback for the call only. One pool per event base; submit and free on the
 * loop thread.
 */
#ifndef SHAREMAIL_DIRECTORY_PASSWORD_CHECK_H
#define SHAREMAIL_DIRECTORY_PASSWORD_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "proto/mailaddr.h"

struct event_base;

/* At most this many aliases come back with an account (more are left out). */
#define PASSWORD_CHECK_ADDRS_MAX 64

enum password_check_status {
	PASSWORD_CHECK_OK = 0, /* 235 2.7.0 */
	PASSWORD_CHECK_FAIL, /* 535 5.7.8: unknown, wrong password, disabled, no password */
	PASSWORD_CHECK_TEMPFAIL, /* 454 4.7.0: the directory could not be read */
};

struct password_check_result {
	uint64_t id; /* as submitted */
	enum password_check_status status;
	/* PASSWORD_CHECK_OK only: the account's key and its aliases' keys */
	char account[MAILADDR_MAX + 1];
	const char *addresses[PASSWORD_CHECK_ADDRS_MAX];
	size_t n_addresses;
	char text[PASSWORD_CHECK_ADDRS_MAX * (MAILADDR_MAX + 1)]; /* what addresses[] point into */
};

/* Called on the loop thread with each result; r is valid during the call only. */
typedef void (*password_check_done_fn)(void *arg, const struct password_check_result *r);

struct password_check;

/*
 * Starts `threads` workers (1..64) checking against the directory at
 * directory_path, with at most max_pending jobs queued or being checked; results
 * are handed to done(arg, ...) from base's loop. Makes the dummy hash (one hash,
 * on the calling thread). Returns NULL with a message in err on failure.
 */
struct password_check *password_check_new(struct event_base *base, const char *directory_path,
                                          int threads, size_t max_pending,
                                          password_check_done_fn done, void *arg, char *err,
                                          size_t errlen);

/*
 * Queues a check of identity (NUL-terminated, as the client sent it: it is looked
 * up by its mailaddr_key) with password[0..len) (len at most PASSWORD_MAX, no NUL).
 * The result with `id` arrives later through done, never from within this call.
 * Returns 0, or -1 when the queue is full or the arguments are too long (answer
 * 454 4.7.0 then; nothing was queued).
 */
int password_check_submit(struct password_check *pc, uint64_t id, const char *identity,
                          const char *password, size_t len);

/*
 * The same, with the result handed to done(arg, ...) instead of the pool's
 * callback (done NULL: the pool's): one pool serves several services (SMTP AUTH
 * and the POP3 server), each with its own callback, the hashing threads and the
 * max_pending bound shared.
 */
int password_check_submit_to(struct password_check *pc, uint64_t id, const char *identity,
                             const char *password, size_t len, password_check_done_fn done,
                             void *arg);

/* Hashes computed so far (statistics; the tests count work with it). */
uint64_t password_check_hashes(struct password_check *pc);

/*
 * The success cache (auth_cache_ttl; Dovecot's auth_cache): with ttl > 0 seconds,
 * a check that succeeded is remembered as an HMAC (under a key made now, in
 * memory only) of the account's stored hash and the password, and the same
 * account with the same password is answered for ttl seconds without hashing,
 * as long as the directory holds the same hash and the account is not disabled.
 * Failures are never remembered: an unknown user, a wrong password and a
 * disabled account still cost one hash each. ttl 0 turns it off and forgets
 * everything. Returns 0, or -1 (out of memory, no random key: the cache is off).
 */
int password_check_set_cache(struct password_check *pc, int ttl);

/* Checks answered from the success cache so far (tests, debugging). */
uint64_t password_check_cache_hits(struct password_check *pc);

/*
 * Stops and joins the workers (a hash under way finishes first), wipes and drops
 * the jobs and results not yet delivered, and frees the pool (NULL is a no-op).
 */
void password_check_free(struct password_check *pc);

#endif
