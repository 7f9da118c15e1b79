/*
 * scheduler: the delivery schedule, in memory and pure. It holds one item per
 * pending recipient (message id, recipient index, destination, next try) and
 * answers "what should be delivered now?" without scanning the queue: the daemon
 * adds every pending recipient at start-up and the recipients of each message it
 * commits, its delivery workers take jobs with scheduler_next() and report each
 * recipient's outcome with scheduler_result().
 *
 * Time: every time is in seconds (uint64_t, the caller's wall clock, epoch
 * seconds as in the queue files); the caller passes `now` to each call. There is
 * no clock inside, so tests run on a fake clock.
 *
 * What it decides:
 * - Batches: one job is the due recipients of ONE message for ONE destination
 *   (one SMTP transaction), at most batch_max of them, oldest due first.
 * - Fairness: destinations with due work are served round-robin, so a
 *   destination with 20,000 due items never starves one with a single item.
 * - Concurrency: a destination has at most dest_concurrency jobs in flight
 *   (local_concurrency for SCHEDULER_DEST_LOCAL), all destinations together at
 *   most global_concurrency. A destination that failed and has not succeeded
 *   since gets one job at a time (a probe), so a broken peer is never hammered.
 * - Back-off: a connection-level failure (SCHEDULER_DEFER_DEST: refused,
 *   timeout, 421, dropped) makes the destination dead for retry_initial, doubled
 *   per consecutive failure, capped at retry_max; its queued items wait, others
 *   go on. Any answer about a recipient (delivered, failed, deferred alone) shows
 *   the peer is alive and resets the destination. A recipient-level temporary
 *   failure (SCHEDULER_DEFER_RCPT, e.g. 452) defers that recipient only, by
 *   retry_initial doubled per attempt of that recipient, capped at retry_max.
 * - Lifetime: at arrival + lifetime a queued item comes out as an EXPIRE job
 *   (whatever its due time, even for a dead destination); the caller fails it
 *   (4.4.7) and bounces. An item in flight then expires when it is deferred.
 * - Delay warning: at arrival + delay_warning a queued, not yet warned item
 *   comes out once in a DELAY job (for a DELAY DSN); it stays queued.
 *
 * Cost: add, next and result are O(log n) (binary heaps per message and
 * destination, per destination, and global; hash tables with a keyed hash).
 * Memory: bounded by max_items; about 360 octets per item when messages have a
 * few recipients, 490 for one-recipient messages (bench/sched prints both); a
 * destination costs about 400 octets while it has items or is dead.
 *
 * Ownership: the caller owns the struct scheduler (scheduler_new/_free) and
 * every string it passes (they are copied). One thread at a time.
 */
#ifndef SHAREMAIL_DELIVER_SCHEDULER_H
#define SHAREMAIL_DELIVER_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#define SCHEDULER_ID_MAX 32 /* queue id octets */
#define SCHEDULER_DEST_MAX 255 /* destination key octets (a domain name's maximum) */
#define SCHEDULER_BATCH_MAX 1000 /* recipients in one job */
#define SCHEDULER_CONCURRENCY_MAX 100000 /* jobs in flight, global */
#define SCHEDULER_NEVER UINT64_MAX /* scheduler_next_wakeup(): nothing to wait for */
/*
 * The destination key of local delivery: a name no recipient domain or route can
 * be (a domain called "local" is an ordinary relay destination).
 */
#define SCHEDULER_DEST_LOCAL "<local>"

/* Settings (the caller fills them from the configuration; scheduler_conf_defaults first). */
struct scheduler_conf {
	uint64_t retry_initial; /* s, first back-off (queue_retry_initial, 300) */
	uint64_t retry_max; /* s, back-off cap (queue_retry_max, 3600) */
	uint64_t lifetime; /* s, after arrival: expire (queue_lifetime, 432000) */
	uint64_t delay_warning; /* s, after arrival: warn once; 0 = never (14400) */
	uint32_t dest_concurrency; /* jobs in flight per relay destination (10) */
	uint32_t local_concurrency; /* jobs in flight for SCHEDULER_DEST_LOCAL (10) */
	uint32_t global_concurrency; /* jobs in flight in all (100) */
	uint32_t batch_max; /* recipients per job, 1..SCHEDULER_BATCH_MAX (100) */
	size_t max_items; /* items held at most (1000000) */
	uint64_t hash_key[2]; /* key of the string hash: random in the daemon (0, 0) */
};

/* Adding a recipient (strings are copied). */
struct scheduler_entry {
	const char *msg_id; /* queue id: 1..SCHEDULER_ID_MAX printable octets */
	uint32_t rcpt; /* recipient index in the message */
	const char *dest; /* SCHEDULER_DEST_LOCAL or a next-hop key ("example.com",
	                     "[192.0.2.1]:25"): 1..SCHEDULER_DEST_MAX octets, no
	                     controls or spaces; ASCII case is folded */
	uint64_t arrival; /* message arrival (lifetime and delay warning count from it) */
	uint64_t due; /* first try (the queue file's next_try; <= now: due now) */
	uint32_t attempts; /* attempts made already (the recipient's back-off goes on) */
	int warned; /* the delay warning was sent already */
};

enum scheduler_err {
	SCHEDULER_OK = 0,
	SCHEDULER_EINVAL = -1, /* bad id, destination, or an arrival unlike the message's */
	SCHEDULER_EDUP = -2, /* (msg_id, rcpt) is already scheduled: left unchanged */
	SCHEDULER_EFULL = -3, /* max_items reached */
	SCHEDULER_ENOMEM = -4,
};

enum scheduler_job_kind {
	SCHEDULER_JOB_DELIVER = 1, /* try these now; report each with scheduler_result() */
	SCHEDULER_JOB_EXPIRE, /* lifetime over: fail (4.4.7) and bounce; removed already */
	SCHEDULER_JOB_DELAY, /* send a DELAY DSN for these; they stay queued, warned */
};

struct scheduler_rcpt {
	uint32_t rcpt; /* recipient index */
	uint32_t attempts; /* attempts before this one */
};

/* One job: recipients of one message (for DELIVER: to one destination). */
struct scheduler_job {
	enum scheduler_job_kind kind;
	char msg_id[SCHEDULER_ID_MAX + 1];
	char dest[SCHEDULER_DEST_MAX + 1]; /* DELIVER: the destination key; else "" */
	uint64_t arrival;
	size_t n;
	struct scheduler_rcpt rcpts[SCHEDULER_BATCH_MAX];
};

enum scheduler_outcome {
	SCHEDULER_DELIVERED = 1, /* 2xx: done, removed */
	SCHEDULER_FAILED, /* 5xx (or a permanent local failure): removed; the caller bounces */
	SCHEDULER_DEFER_RCPT, /* a 4xx for this recipient only: its own back-off */
	SCHEDULER_DEFER_DEST, /* connection-level: refused, timeout, 421, drop: destination dead */
};

/* What scheduler_lookup() tells about one item. */
struct scheduler_item_info {
	uint64_t next_try; /* queued: when it may be tried (its due time or the dead
	                      destination's end, the later); in flight: 0 */
	uint32_t attempts;
	int in_flight;
	int warned;
};

/* What scheduler_dest_lookup() tells about one destination. */
struct scheduler_dest_info {
	uint64_t dead_until; /* 0 or a time: not tried before it */
	uint32_t failures; /* consecutive connection-level failures */
	uint32_t in_flight; /* jobs */
	size_t items; /* items queued or in flight */
};

struct scheduler;

/* Fills c with the defaults above. */
void scheduler_conf_defaults(struct scheduler_conf *c);

/*
 * Creates an empty schedule with the settings copied from c. NULL when c is out
 * of range (a zero retry_initial, lifetime or concurrency, retry_max <
 * retry_initial, batch_max or global_concurrency above their maxima) or when out
 * of memory.
 */
struct scheduler *scheduler_new(const struct scheduler_conf *c);

/* Frees the schedule and every item (NULL is a no-op). */
void scheduler_free(struct scheduler *s);

/*
 * Adds one recipient. Returns SCHEDULER_OK, or a negative enum scheduler_err and
 * nothing changes: EINVAL for an empty, too long or control-containing id or
 * destination, or an arrival different from the one the message was first added
 * with; EDUP when (msg_id, rcpt) is scheduled already (start-up and a commit may
 * both report a message: it is scheduled once); EFULL at max_items; ENOMEM. An
 * item for a dead destination waits for it; one already past its lifetime comes
 * out expired at the next scheduler_next().
 */
int scheduler_add(struct scheduler *s, const struct scheduler_entry *e);

/*
 * The next thing to do at `now`, in this order: an EXPIRE job (a message with
 * queued items past its lifetime; all of them, up to batch_max), a DELAY job
 * (queued items past the warning time and not warned; they are marked warned),
 * then a DELIVER job: the oldest due items of one message for the next
 * destination in round-robin order that is due, not dead and under its limit,
 * while the global limit allows. A DELIVER job's items are in flight until each
 * is reported with scheduler_result(); its destination's slot is held until the
 * last one is. Returns 1 with *out filled, or 0 when nothing is to be done now.
 */
int scheduler_next(struct scheduler *s, uint64_t now, struct scheduler_job *out);

/*
 * A DELIVER job for one destination only (dest as given to scheduler_add), for a
 * worker whose connection to it is still open: report the previous job's results
 * first (its slot is taken again here). Same limits and order as scheduler_next;
 * returns 0 (nothing) while a message of the destination's next batch is past its
 * lifetime (scheduler_next() expires it first). Returns 1 with *out filled, or 0.
 */
int scheduler_next_dest(struct scheduler *s, const char *dest, uint64_t now,
                        struct scheduler_job *out);

/*
 * Reports one recipient of a DELIVER job. DELIVERED and FAILED remove it;
 * DEFER_RCPT requeues it at now + back-off(its attempts); DEFER_DEST requeues it
 * behind its destination, which becomes dead for the next back-off step (unless
 * it is dead already: several connections seeing one outage count once). Every
 * outcome but DEFER_DEST resets the destination (alive: no back-off). The
 * item's attempts grow by one. *next_try (may be NULL) gets the time the item may
 * be tried again (0 when removed), for the queue file. Returns 0, or -1 when
 * (msg_id, rcpt) is not in flight or the outcome is unknown: nothing changes.
 */
int scheduler_result(struct scheduler *s, const char *msg_id, uint32_t rcpt,
                     enum scheduler_outcome o, uint64_t now, uint64_t *next_try);

/*
 * sharemail queue flush [ID]: every queued item of msg_id (every item when NULL)
 * whose due time is later than now becomes due now, and the dead period of the
 * destinations concerned ends now (their failure count stays: the next job is a
 * probe, and a failure backs off from where it was). Items in flight are not
 * touched. Returns the number of items made due (0 also for an unknown id).
 */
size_t scheduler_flush(struct scheduler *s, const char *msg_id, uint64_t now);

/*
 * Queue delete: removes every item of msg_id. Items in flight stay counted
 * against their destination until reported; their results are then accepted and
 * they are dropped whatever the outcome. Returns the number of items removed or
 * marked, or -1 for an unknown id.
 */
int scheduler_remove(struct scheduler *s, const char *msg_id);

/*
 * The earliest time at which scheduler_next() will have something to do:
 * an expiry, a delay warning, or (while the global limit allows) a destination
 * becoming due or coming back from dead; the latest `now` seen when a job is
 * ready already; SCHEDULER_NEVER when nothing is queued. Deliveries waiting for
 * a slot (their destination's or the global limit) are not timed: a result frees
 * it, so call scheduler_next() after results. Arm one timer for it.
 */
uint64_t scheduler_next_wakeup(const struct scheduler *s);

/* Fills *info for (msg_id, rcpt). Returns 0, or -1 when it is not scheduled. */
int scheduler_lookup(const struct scheduler *s, const char *msg_id, uint32_t rcpt,
                     struct scheduler_item_info *info);

/* Fills *info for a destination. Returns 0, or -1 when it is unknown (no items, not dead). */
int scheduler_dest_lookup(const struct scheduler *s, const char *dest,
                          struct scheduler_dest_info *info);

/* Items held (queued and in flight). */
size_t scheduler_count(const struct scheduler *s);

#endif
