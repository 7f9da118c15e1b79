/*
 * minger_replay: the nonce cache of the sharemail Minger extension
 * (minger-protocol.md, "sharemail extension"). An authenticated query whose
 * nonce was already seen within the replay window is a replay.
 *
 * A fixed-size open-addressing hash set of (nonce, expiry). An entry expires when
 * its query's timestamp leaves the window (ts + window): after that the timestamp
 * check alone refuses a replay, so the entry can be reused. The set never grows
 * and never forgets an unexpired nonce: when the slots near a nonce's hash are all
 * unexpired, the query is refused (MINGER_REPLAY_FULL) rather than risk accepting
 * a replay. Only queries with a verified mac reach the cache, so only holders of a
 * secret can fill it.
 *
 * Thread-safe (one mutex; only extension queries with a valid mac take it).
 * Ownership: owns only its own memory.
 */
#ifndef SHAREMAIL_MINGER_MINGER_REPLAY_H
#define SHAREMAIL_MINGER_MINGER_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define MINGER_REPLAY_MIN_SLOTS 1024
#define MINGER_REPLAY_MAX_SLOTS (1u << 20) /* 16 MiB */

enum minger_replay_result {
	MINGER_REPLAY_NEW = 0, /* first sighting: remembered until `expires` */
	MINGER_REPLAY_SEEN, /* replay */
	MINGER_REPLAY_FULL, /* no room without forgetting an unexpired nonce: refuse */
};

struct minger_replay;

/*
 * The slot count for a global reply rate (0 = unlimited) and a window in seconds:
 * room for every query the rate allows within the window (a nonce is kept for up
 * to 2 * window + 1 seconds), doubled for a low load factor, within
 * MINGER_REPLAY_MIN_SLOTS..MINGER_REPLAY_MAX_SLOTS (the maximum when unlimited).
 */
size_t minger_replay_slots_for(uint32_t rate_global, int window_s);

/* Creates a cache of exactly `slots` entries (at least 1); `seed` keys the hash. NULL on ENOMEM. */
struct minger_replay *minger_replay_new(size_t slots, uint64_t seed);

/* Frees the cache (NULL is a no-op). */
void minger_replay_free(struct minger_replay *r);

/*
 * Checks and records `nonce` (16 lower-case hex digits, NUL-terminated) at wall
 * time now_s (> 0); a new nonce is kept until expires_s (> 0). See enum
 * minger_replay_result.
 */
enum minger_replay_result minger_replay_check(struct minger_replay *r, const char *nonce,
                                              int64_t expires_s, int64_t now_s);

/* Number of unexpired nonces at now_s (walks the table: for tests and statistics). */
size_t minger_replay_live(struct minger_replay *r, int64_t now_s);

#endif
