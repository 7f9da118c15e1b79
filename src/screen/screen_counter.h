/*
 * screen_counter: one event rule of the Dynamic Screen ("COUNT/DURATION": the
 * COUNT-th event from one key inside DURATION seconds triggers) over a table of
 * keys with a fixed number of slots, so an attacker with many addresses cannot
 * grow it: a new key takes a free slot near its hash or evicts the least recently
 * seen key there (which merely starts counting again).
 *
 * The window slides exactly: each slot keeps the times of the key's last COUNT-1
 * events (a ring), so the COUNT-th event triggers when the oldest of them is
 * less than DURATION old. Memory is slots x (COUNT-1) x 4 octets plus a small
 * header a slot; screen_counter_new() lowers the number of slots to keep the
 * table within SCREEN_COUNTER_BYTES_MAX.
 *
 * Time is the caller's (seconds: the daemon passes time_wall_s(), tests a fake
 * clock); events from a clock that went back count as inside the window.
 * Ownership: the table owns its memory. Not thread-safe (the event loop's).
 */
#ifndef SHAREMAIL_SCREEN_SCREEN_COUNTER_H
#define SHAREMAIL_SCREEN_SCREEN_COUNTER_H

#include <stddef.h>
#include <stdint.h>

#include "screen/screen_key.h"

#define SCREEN_COUNTER_COUNT_MAX 1000 /* the schema's COUNT range */
#define SCREEN_COUNTER_BYTES_MAX (8u << 20)

struct screen_counter;

/*
 * A table of at most `slots` keys (at least 1; fewer when COUNT is large, see
 * above) for the rule count/seconds (count 0: off, every note returns 0; count
 * at most SCREEN_COUNTER_COUNT_MAX, larger is clamped; seconds >= 1). `seed` keys
 * the hash (random in the daemon). NULL when out of memory.
 */
struct screen_counter *screen_counter_new(size_t slots, int count, int seconds, uint64_t seed);

/* Frees the table (NULL is a no-op). */
void screen_counter_free(struct screen_counter *c);

/*
 * Records one event of key at time now. Returns how many of the key's events
 * (this one included) lie inside the window: at most COUNT. Reaching COUNT is the
 * trigger: the key's history is then cleared, so it counts from zero again (and
 * triggers again only after COUNT more). Returns 0 when the rule is off.
 */
int screen_counter_note(struct screen_counter *c, const struct screen_key *key, int64_t now);

/* How many events of key lie inside the window at now (0 if unknown), without recording one. */
int screen_counter_peek(const struct screen_counter *c, const struct screen_key *key, int64_t now);

/* Forgets key's events (a successful AUTH clears the failures before it). */
void screen_counter_forget(struct screen_counter *c, const struct screen_key *key);

/* Number of slots (fixed at creation) and of slots in use. */
size_t screen_counter_slots(const struct screen_counter *c);
size_t screen_counter_used(const struct screen_counter *c);

/* Keys evicted so far to make room for new ones. */
uint64_t screen_counter_evictions(const struct screen_counter *c);

#endif
