/*
 * minger_ratelimit: reply-rate limits of the Minger server (hostile-inputs.md,
 * "Minger (UDP)"). Two token buckets, each refilled at `rate` tokens per second
 * with a burst of one second's worth (at least 1):
 *
 * - struct minger_source_table: one bucket per source, keyed by the source IP
 *   address (not the port; IPv6 by its /64, IPv4-mapped IPv6 as IPv4). The table
 *   has a fixed number of slots chosen at creation and never grows: a new source
 *   takes a free slot near its hash or evicts the least recently seen source there
 *   (an evicted source merely restarts with a full bucket). Not thread-safe: the
 *   server keeps one table per worker thread.
 * - struct minger_global_limit: one bucket shared by every worker, behind a mutex.
 *   Workers take tokens in small leases (minger_global_limit_take) and give back
 *   what they did not use, so the lock is taken about once per batch.
 *
 * Time is a caller-supplied millisecond clock (tests use a fake one); a clock that
 * goes backwards refills nothing. Ownership: each object owns only its own memory.
 */
#ifndef SHAREMAIL_MINGER_MINGER_RATELIMIT_H
#define SHAREMAIL_MINGER_MINGER_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Largest rate accepted; larger ones are clamped (tokens are kept in 1/1000ths in 32 bits). */
#define MINGER_RATE_MAX 4000000u

struct minger_source_table;
struct minger_global_limit;

/*
 * Creates a table of exactly `slots` entries (at least 1) for `rate` replies per
 * second per source (rate > 0). `seed` keys the hash so that an attacker cannot
 * aim sources at one slot; pass a random value (tests may pass a constant).
 * Returns NULL when out of memory.
 */
struct minger_source_table *minger_source_table_new(size_t slots, uint32_t rate, uint64_t seed);

/* Frees the table (NULL is a no-op). */
void minger_source_table_free(struct minger_source_table *t);

/*
 * Charges one reply to the source of `sa` (AF_INET or AF_INET6; other families
 * share one bucket) at time now_ms. Returns 1 if the reply may be sent, 0 if the
 * source is over its rate.
 */
int minger_source_table_allow(struct minger_source_table *t, const struct sockaddr *sa,
                              uint64_t now_ms);

/* Number of slots in use (never more than the slots given at creation). */
size_t minger_source_table_used(const struct minger_source_table *t);

/* Number of slots (as given at creation). */
size_t minger_source_table_slots(const struct minger_source_table *t);

/* Number of sources evicted so far to make room for new ones. */
uint64_t minger_source_table_evictions(const struct minger_source_table *t);

/* Creates the shared bucket for `rate` replies per second (rate > 0); NULL when out of memory. */
struct minger_global_limit *minger_global_limit_new(uint32_t rate);

/* Frees the bucket (NULL is a no-op). */
void minger_global_limit_free(struct minger_global_limit *g);

/*
 * Takes up to `want` tokens at time now_ms and returns how many were granted
 * (0 when the bucket is empty). Thread-safe.
 */
uint32_t minger_global_limit_take(struct minger_global_limit *g, uint64_t now_ms, uint32_t want);

/* Returns `n` unused tokens taken earlier (never above the burst). Thread-safe. */
void minger_global_limit_give_back(struct minger_global_limit *g, uint32_t n);

#endif
