/*
 * vcache_live: the verification cache as the daemon uses it: every live entry of
 * the SQLite cache (vcache.h, <state_dir>/vcache.db) loaded into an in-memory hash
 * table at open, answered from memory (a hash probe under an uncontended mutex:
 * the warm path of a RCPT costs well under a microsecond), and new answers written
 * to SQLite on the background thread (bgwork.h), never on the event loop. When
 * another process changes the database (`sharemail cache flush`), the next tick
 * (vcache_live_tick, about once a second) reloads the live entries, so a flushed
 * address is forgotten without a restart.
 *
 * Keys are (server, address): server is the Minger server's "ADDR:PORT" as
 * netaddr_format writes it (the key `sharemail minger query` uses too), the
 * address is folded to lower case (vcache_fold_key).
 *
 * Threads: get and put may be called from any thread; tick runs on the
 * background thread. Ownership: the bgwork is borrowed and must outlive it.
 */
#ifndef SHAREMAIL_VERIFY_VCACHE_LIVE_H
#define SHAREMAIL_VERIFY_VCACHE_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "verify/vcache.h" /* VCACHE_KEY_MAX */

struct bgwork;
struct vcache_live;

/* Opens path (created if absent) and loads its live entries. NULL with a message in err. */
struct vcache_live *vcache_live_open(const char *path, struct bgwork *bg, char *err, size_t errlen);

/*
 * Closes it (NULL: no-op). Writes still queued on bg must have run first:
 * call bgwork_sync(bg) (or bgwork_free) before.
 */
void vcache_live_close(struct vcache_live *vl);

/* 1 with *status when (server, address) has a live entry, else 0. */
int vcache_live_get(struct vcache_live *vl, const char *server, const char *address, int *status);

/*
 * Keys made once for many lookups (the warm path of a RCPT asks about one
 * address for each peer, and a peer's name is the same for every address):
 * the folding and hashing vcache_live_get() does on every call is done here
 * instead. A server key is the server's number in this cache (its name
 * interned: numbers stay valid until the cache is closed).
 */
#define VCACHE_LIVE_NO_SERVER 0xFFFFu /* a key that matches no entry */

struct vcache_live_server {
	unsigned id;
};

struct vcache_live_addr {
	uint64_t hash; /* str_hash(a, len, 0), which is str_hash(address, len, 1) */
	size_t len;
	char a[VCACHE_KEY_MAX]; /* the address folded to lower case (vcache_fold_key's rule) */
};

/*
 * Makes the key of server name ("ADDR:PORT"). Returns 0, or -1 with the key set
 * to VCACHE_LIVE_NO_SERVER (the name is too long, there are too many names, or
 * no memory): lookups with it find nothing.
 */
int vcache_live_server_make(struct vcache_live *vl, struct vcache_live_server *k, const char *name);

/* Makes the key of address[0..len). Returns 0, or -1 when it is empty or too long. */
int vcache_live_addr_make(struct vcache_live_addr *k, const char *address, size_t len);

/* vcache_live_get() with keys made beforehand: 1 with *status, else 0. */
int vcache_live_get_key(struct vcache_live *vl, const struct vcache_live_server *server,
                        const struct vcache_live_addr *addr, int *status);

/*
 * Which of servers[0..n) has a live entry for addr with this status: 1 with
 * *which the lowest such index, else 0. Every server's entry for an address is
 * in one chain, so this costs one walk of it whatever n is (the warm path of a
 * RCPT for a Domain Sharing peer: which peer said 5).
 */
int vcache_live_find(struct vcache_live *vl, const struct vcache_live_server *servers, size_t n,
                     const struct vcache_live_addr *addr, int status, size_t *which);

/*
 * Records status (3, 4 or 5; others ignored) for ttl seconds (> 0): in memory now,
 * in SQLite on the background thread. Returns 0, or -1 when it could not be
 * recorded (bad key, out of memory).
 */
int vcache_live_put(struct vcache_live *vl, const char *server, const char *address, int status,
                    int ttl);

/* Live entries in memory now. */
size_t vcache_live_count(struct vcache_live *vl);

/*
 * The background thread's periodic work: reloads from SQLite when another
 * connection changed it. Runs on the thread that runs bg's jobs.
 */
void vcache_live_tick(struct vcache_live *vl);

#endif
