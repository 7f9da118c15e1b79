/*
 * vcache: the verification cache: what Minger queries learned, keyed by (server,
 * address key), stored in SQLite (<state_dir>/vcache.db, WAL). Positive answers
 * (status 5 and 4) live positive_ttl seconds (MDaemon: 5 days), negative answers
 * (status 3) negative_ttl seconds. Statuses 0-2 and timeouts are never cached:
 * they say nothing about the address.
 *
 * Ownership: one SQLite connection per struct vcache; one thread at a time.
 * Time comes from time_wall_s(), so tests use a fake clock.
 */
#ifndef SHAREMAIL_VERIFY_VCACHE_H
#define SHAREMAIL_VERIFY_VCACHE_H

#include <stddef.h>
#include <stdint.h>

struct vcache;

/* Opens or creates the cache at path. NULL with a message in err on failure. */
struct vcache *vcache_open(const char *path, char *err, size_t errlen);

/* Closes it (NULL is a no-op). */
void vcache_close(struct vcache *vc);

/*
 * Looks (server, address) up. Returns 1 with *status set when a live entry exists,
 * 0 on a miss (absent or expired), -1 on a database error (treat as a miss).
 */
int vcache_get(struct vcache *vc, const char *server, const char *address, int *status);

/*
 * Records an answer. Statuses other than 3, 4, 5 are ignored (returns 0 without
 * storing). Returns 0 or -1 on a database error.
 */
int vcache_put(struct vcache *vc, const char *server, const char *address, int status,
               int positive_ttl, int negative_ttl);

/*
 * Records an answer that lives until expires (epoch seconds), whatever its status
 * (3, 4 or 5; others are ignored, returning 0). Returns 0 or -1.
 */
int vcache_put_until(struct vcache *vc, const char *server, const char *address, int status,
                     int64_t expires);

/*
 * SQLite's data_version of this connection: it changes when another connection
 * (the CLI's `cache flush`) commits a change. -1 on error.
 */
int64_t vcache_data_version(struct vcache *vc);

/*
 * The cache key of an address: folded to lower case ASCII into out. Returns 0, or
 * -1 when it is empty or does not fit in outsz (with its NUL).
 */
int vcache_fold_key(const char *address, char *out, size_t outsz);

/* Longest key stored, with its NUL. */
#define VCACHE_KEY_MAX 1024

/*
 * Calls fn for each live entry (server, address, status, expiry as epoch seconds),
 * ordered by address then server. Returns 0 or -1.
 */
int vcache_list(struct vcache *vc,
                int (*fn)(void *arg, const char *server, const char *address, int status,
                          int64_t expires),
                void *arg);

/* Deletes every entry for address (any server), or all entries if address is NULL,
 * plus any expired ones. Returns the number deleted, or -1. */
int vcache_flush(struct vcache *vc, const char *address);

#endif
