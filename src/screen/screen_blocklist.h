/*
 * screen_blocklist: the Dynamic Screen's list of screened keys in memory, each
 * with the time it expires and why it was screened: what the event loop probes at
 * every connection (a hash probe of at most SCREEN_BLOCKLIST_PROBE slots, no
 * database). The table has a fixed number of slots chosen at creation: a key
 * takes a free or expired slot near its hash; when those are all live, the entry
 * that expires soonest there gives way (counted in evictions), so no number of
 * screened addresses grows memory.
 *
 * Each entry also carries a sequence number from its writer (0 for entries read
 * from screen.db), which screen.c uses to merge a fresh read of the database with
 * the entries it added since.
 *
 * Ownership: the table owns its memory. Not thread-safe (the event loop's).
 */
#ifndef SHAREMAIL_SCREEN_SCREEN_BLOCKLIST_H
#define SHAREMAIL_SCREEN_SCREEN_BLOCKLIST_H

#include <stddef.h>
#include <stdint.h>

#include "screen/screen_key.h"

#define SCREEN_BLOCKLIST_PROBE 8
#define SCREEN_REASON_MAX 32 /* octets of a reason, with its NUL */

struct screen_blocklist;

struct screen_entry {
	struct screen_key key;
	int64_t until; /* seconds since the epoch: screened while now < until */
	uint64_t seq; /* the writer's sequence number; 0: read from the database */
	char reason[SCREEN_REASON_MAX]; /* "auth-failures", "manual", ... */
};

/* A table of exactly `slots` entries (at least 1); seed keys the hash. NULL out of memory. */
struct screen_blocklist *screen_blocklist_new(size_t slots, uint64_t seed);

/* Frees it (NULL is a no-op). */
void screen_blocklist_free(struct screen_blocklist *b);

/*
 * Adds e, or replaces the entry of the same key, at time now (which says which
 * slots hold expired entries and may be reused). Returns 0, or 1 when a live
 * entry of another key was evicted to make room.
 */
int screen_blocklist_put(struct screen_blocklist *b, const struct screen_entry *e, int64_t now);

/* The entry of key if it is live at now (until > now), else NULL. */
const struct screen_entry *screen_blocklist_find(const struct screen_blocklist *b,
                                                 const struct screen_key *key, int64_t now);

/* Removes key's entry. Returns 1 if there was one, else 0. */
int screen_blocklist_del(struct screen_blocklist *b, const struct screen_key *key);

/*
 * Removes the entries expired at now among the next `budget` slots (a pass
 * resumes where the last one stopped, so a 1 s timer spreads the work; budget >=
 * slots covers the whole table). Lookups never see expired entries either way:
 * this only frees their slots and keeps the count true. Returns how many went.
 */
size_t screen_blocklist_expire(struct screen_blocklist *b, int64_t now, size_t budget);

/* Calls fn for every entry held (live or not yet expired away); stops early if fn returns != 0. */
void screen_blocklist_each(const struct screen_blocklist *b,
                           int (*fn)(void *arg, const struct screen_entry *e), void *arg);

/*
 * Copies into `into` every entry of `from` whose seq is above `after` and that is
 * live at now: merging a fresh read of the database (taken when the writes up to
 * sequence `after` were in it) with what was added since. Returns how many.
 */
size_t screen_blocklist_merge_newer(struct screen_blocklist *into,
                                    const struct screen_blocklist *from, uint64_t after,
                                    int64_t now);

/* Entries held, slots, and live entries evicted so far. */
size_t screen_blocklist_count(const struct screen_blocklist *b);
size_t screen_blocklist_slots(const struct screen_blocklist *b);
uint64_t screen_blocklist_evictions(const struct screen_blocklist *b);

#endif
