/*
 * screen: see screen.h. The loop owns the block list and the counters; the
 * writer thread owns the database. They meet in `struct handover` under one
 * mutex:
 *   loop -> thread: screenings to write (ops, each with a sequence number);
 *   thread -> loop: a fresh read of the database (snap) after another
 *                   connection committed, with `snap_seq`, the highest op
 *                   sequence number written before that read.
 * Merging a read: the read replaces the block list, except for entries the loop
 * added with a sequence number above snap_seq (not yet in the database when it
 * was read), which are kept. An entry the tool deleted is therefore gone, and
 * one the loop just added is not lost.
 */
#include "screen/screen.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "conf/conf.h"
#include "screen/screen_blocklist.h"
#include "screen/screen_counter.h"
#include "screen/screen_db.h"
#include "screen/screen_key.h"
#include "util/log.h"
#include "util/timeutil.h"

#define PURGE_EVERY_S 60 /* the thread deletes expired rows this often */
#define EXPIRE_SLICE 4096 /* block-list slots freed of expired entries per tick */

struct handover {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* the thread waits on it */
	pthread_cond_t done_cv; /* screen_sync waits on it */
	struct screen_entry *ops;
	size_t n_ops;
	struct screen_entry *snap; /* NULL: no fresh read waiting */
	size_t n_snap;
	uint64_t snap_seq;
	uint64_t want_round, done_round; /* screen_sync's rounds */
	uint64_t dropped;
	int stop;
	struct screen_entry *batch; /* the thread's copy of ops while it writes them */
};

struct screen {
	/* the loop's */
	struct screen_blocklist *blocked;
	struct screen_counter *counter[SCREEN_EVENT_COUNT];
	struct screen_rule rule[SCREEN_EVENT_COUNT];
	int duration;
	struct netaddr_net *exempt, *trusted;
	size_t n_exempt, n_trusted;
	uint64_t seq; /* of the last op queued */
	uint64_t seed;
	uint64_t reloads;
	atomic_int snap_ready; /* a fresh read waits in h.snap: the loop's cheap check */
	/* the thread's */
	struct screen_db *db;
	uint64_t data_version;
	int64_t last_purge;
	int db_failing;
	pthread_t thread;
	int thread_started;
	struct handover h;
};

static const char *const reasons[SCREEN_EVENT_COUNT] = {
        [SCREEN_EVENT_AUTH_FAILURE] = "auth-failures",
        [SCREEN_EVENT_UNKNOWN_RECIPIENT] = "unknown-recipients",
        [SCREEN_EVENT_CONNECTION] = "connection-rate",
};

const char *screen_event_reason(enum screen_event ev)
{
	return (int)ev >= 0 && ev < SCREEN_EVENT_COUNT ? reasons[ev] : "?";
}

unsigned screen_auth_delay_ms(int n)
{
	if (n <= 1)
		return 0;
	/* 1 s for the second failure, doubling: 1, 2, 4, 8 ... capped. */
	if (n - 2 >= 16)
		return SCREEN_AUTH_DELAY_MAX_MS;
	unsigned ms = 1000u << (n - 2);
	return ms > SCREEN_AUTH_DELAY_MAX_MS ? SCREEN_AUTH_DELAY_MAX_MS : ms;
}

void screen_config_from_conf(const struct conf *c, struct screen_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->rule[SCREEN_EVENT_AUTH_FAILURE] = (struct screen_rule){
	        c->screen_auth_failures.count, c->screen_auth_failures.seconds};
	cfg->rule[SCREEN_EVENT_UNKNOWN_RECIPIENT] = (struct screen_rule){
	        c->screen_unknown_recipients.count, c->screen_unknown_recipients.seconds};
	cfg->rule[SCREEN_EVENT_CONNECTION] = (struct screen_rule){
	        c->screen_connection_rate.count, c->screen_connection_rate.seconds};
	cfg->duration = c->screen_duration;
	cfg->exempt = c->screen_exempt.v;
	cfg->n_exempt = c->screen_exempt.n;
	cfg->trusted = c->smtp_trusted_networks.v;
	cfg->n_trusted = c->smtp_trusted_networks.n;
}

/* ---- configuration ---- */

static int nets_dup(struct netaddr_net **dst, const struct netaddr_net *src, size_t n)
{
	*dst = NULL;
	if (n == 0)
		return 0;
	*dst = malloc(n * sizeof *src);
	if (!*dst)
		return -1;
	memcpy(*dst, src, n * sizeof *src);
	return 0;
}

int screen_configure(struct screen *s, const struct screen_config *cfg)
{
	struct screen_counter *fresh[SCREEN_EVENT_COUNT] = {0};
	struct netaddr_net *exempt = NULL, *trusted = NULL;
	int ok = nets_dup(&exempt, cfg->exempt, cfg->n_exempt) == 0 &&
	         nets_dup(&trusted, cfg->trusted, cfg->n_trusted) == 0;
	for (int i = 0; i < SCREEN_EVENT_COUNT && ok; i++) {
		const struct screen_rule *r = &cfg->rule[i];
		if (s->counter[i] && r->count == s->rule[i].count &&
		    r->seconds == s->rule[i].seconds)
			continue; /* unchanged: keep counting */
		fresh[i] = screen_counter_new(SCREEN_TRACK_SLOTS, r->count, r->seconds,
		                              s->seed + (uint64_t)i);
		ok = fresh[i] != NULL;
	}
	if (!ok) {
		for (int i = 0; i < SCREEN_EVENT_COUNT; i++)
			screen_counter_free(fresh[i]);
		free(exempt);
		free(trusted);
		return -1;
	}
	for (int i = 0; i < SCREEN_EVENT_COUNT; i++) {
		if (fresh[i]) {
			screen_counter_free(s->counter[i]);
			s->counter[i] = fresh[i];
		}
		s->rule[i] = cfg->rule[i];
	}
	free(s->exempt);
	free(s->trusted);
	s->exempt = exempt;
	s->n_exempt = cfg->n_exempt;
	s->trusted = trusted;
	s->n_trusted = cfg->n_trusted;
	s->duration = cfg->duration > 0 ? cfg->duration : 3600;
	return 0;
}

static int in_nets(const struct netaddr_net *v, size_t n, const struct sockaddr *sa)
{
	for (size_t i = 0; i < n; i++)
		if (netaddr_net_contains(&v[i], sa))
			return 1;
	return 0;
}

int screen_is_exempt(const struct screen *s, const struct sockaddr *sa)
{
	return in_nets(s->exempt, s->n_exempt, sa) || in_nets(s->trusted, s->n_trusted, sa);
}

/* ---- the writer thread ---- */

/* Logs a database failure once, and once when it works again. */
static void db_status(struct screen *s, int ok, const char *what)
{
	if (!ok && !s->db_failing)
		log_err("screen: %s failed; screenings are kept in memory until it works", what);
	else if (ok && s->db_failing)
		log_info("screen: screen.db works again");
	s->db_failing = !ok;
}

/*
 * Writes ops (in sequence order) and returns the highest sequence written, or
 * `written` unchanged when the write failed (the ops are then queued again).
 */
static uint64_t write_ops(struct screen *s, struct screen_entry *ops, size_t n, uint64_t written)
{
	if (n == 0)
		return written;
	int ok = screen_db_put(s->db, ops, n, 1, time_wall_s()) == 0;
	db_status(s, ok, "writing screen.db");
	if (ok)
		return ops[n - 1].seq;
	/* Put them back in front of what came since, as far as the queue holds. */
	pthread_mutex_lock(&s->h.mu);
	size_t keep = n + s->h.n_ops > SCREEN_OPS_MAX ? SCREEN_OPS_MAX - s->h.n_ops : n;
	memmove(s->h.ops + keep, s->h.ops, s->h.n_ops * sizeof *ops);
	memcpy(s->h.ops, ops + (n - keep), keep * sizeof *ops);
	s->h.n_ops += keep;
	s->h.dropped += n - keep;
	pthread_mutex_unlock(&s->h.mu);
	return written;
}

struct snap_build {
	struct screen_entry *v;
	size_t n, cap;
};

static int snap_add(void *arg, const struct screen_entry *e)
{
	struct snap_build *b = arg;
	if (b->n == b->cap)
		return 1;
	b->v[b->n++] = *e;
	return 0;
}

/* When another connection committed (the tool), reads the list and hands it over. */
static void check_version(struct screen *s, uint64_t written)
{
	uint64_t v = 0;
	int ok = screen_db_data_version(s->db, &v) == 0;
	db_status(s, ok, "reading screen.db");
	if (!ok || v == s->data_version)
		return;
	struct snap_build b = {.cap = SCREEN_BLOCK_SLOTS};
	b.v = malloc(b.cap * sizeof *b.v);
	if (!b.v)
		return; /* data_version stays: tried again next round */
	ok = screen_db_each(s->db, time_wall_s(), 0, b.cap, snap_add, &b) >= 0;
	db_status(s, ok, "reading screen.db");
	if (!ok) {
		free(b.v);
		return;
	}
	s->data_version = v;
	pthread_mutex_lock(&s->h.mu);
	free(s->h.snap);
	s->h.snap = b.v;
	s->h.n_snap = b.n;
	s->h.snap_seq = written;
	atomic_store(&s->snap_ready, 1);
	pthread_mutex_unlock(&s->h.mu);
}

static void purge_now_and_then(struct screen *s)
{
	int64_t now = time_wall_s();
	if (now - s->last_purge < PURGE_EVERY_S && now >= s->last_purge)
		return;
	s->last_purge = now;
	db_status(s, screen_db_purge(s->db, now) >= 0, "purging screen.db");
}

/* Waits for work or SCREEN_POLL_MS; returns with the mutex held. */
static void wait_for_work(struct screen *s)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += (long)SCREEN_POLL_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->h.mu);
	while (!s->h.stop && s->h.n_ops == 0 && s->h.want_round == s->h.done_round)
		if (pthread_cond_timedwait(&s->h.cv, &s->h.mu, &until) == ETIMEDOUT)
			break;
}

static void *writer_main(void *arg)
{
	struct screen *s = arg;
	struct screen_entry *batch = s->h.batch;
	uint64_t written = 0;
	for (;;) {
		wait_for_work(s);
		int stop = s->h.stop;
		uint64_t round = s->h.want_round;
		size_t n = s->h.n_ops;
		memcpy(batch, s->h.ops, n * sizeof *batch);
		s->h.n_ops = 0;
		pthread_mutex_unlock(&s->h.mu);
		written = write_ops(s, batch, n, written);
		check_version(s, written);
		purge_now_and_then(s);
		pthread_mutex_lock(&s->h.mu);
		s->h.done_round = round;
		pthread_cond_broadcast(&s->h.done_cv);
		int more = s->h.n_ops > 0 && !s->db_failing;
		pthread_mutex_unlock(&s->h.mu);
		if (stop && !more)
			break;
	}
	return NULL;
}

/* ---- the loop's side ---- */

/* Queues a screening for the writer; a full queue drops it (memory still has it). */
static void queue_op(struct screen *s, struct screen_entry *e)
{
	e->seq = ++s->seq;
	pthread_mutex_lock(&s->h.mu);
	if (s->h.n_ops < SCREEN_OPS_MAX) {
		s->h.ops[s->h.n_ops++] = *e;
		pthread_cond_signal(&s->h.cv);
	} else {
		s->h.dropped++;
	}
	pthread_mutex_unlock(&s->h.mu);
}

/* Takes the thread's fresh read, if any (see the top of this file). */
static void apply_snapshot(struct screen *s, int64_t now)
{
	if (!atomic_load(&s->snap_ready))
		return;
	struct screen_blocklist *fresh = screen_blocklist_new(SCREEN_BLOCK_SLOTS, s->seed);
	if (!fresh)
		return; /* out of memory: keep the old list, try at the next tick */
	pthread_mutex_lock(&s->h.mu);
	struct screen_entry *snap = s->h.snap;
	size_t n = s->h.n_snap;
	uint64_t after = s->h.snap_seq;
	s->h.snap = NULL;
	atomic_store(&s->snap_ready, 0);
	pthread_mutex_unlock(&s->h.mu);
	for (size_t i = 0; i < n; i++)
		screen_blocklist_put(fresh, &snap[i], now);
	free(snap);
	screen_blocklist_merge_newer(fresh, s->blocked, after, now);
	screen_blocklist_free(s->blocked);
	s->blocked = fresh;
	s->reloads++;
}

int screen_is_blocked(struct screen *s, const struct sockaddr *sa, int64_t now)
{
	struct screen_key k;
	apply_snapshot(s, now);
	if (screen_key_from_sockaddr(sa, &k) != 0 || screen_is_exempt(s, sa))
		return 0;
	return screen_blocklist_find(s->blocked, &k, now) != NULL;
}

/* Screens key until `until`; keeps a longer screening. Returns 1 if newly screened. */
static int block_key(struct screen *s, const struct screen_key *k, int64_t until,
                     const char *reason, int64_t now)
{
	const struct screen_entry *old = screen_blocklist_find(s->blocked, k, now);
	if (old && old->until >= until)
		return 0;
	struct screen_entry e = {.key = *k, .until = until};
	snprintf(e.reason, sizeof e.reason, "%s", reason);
	queue_op(s, &e);
	screen_blocklist_put(s->blocked, &e, now);
	return 1;
}

int screen_note(struct screen *s, const struct sockaddr *sa, enum screen_event ev, int64_t now,
                int *screened)
{
	struct screen_key k;
	if (screened)
		*screened = 0;
	if ((int)ev < 0 || ev >= SCREEN_EVENT_COUNT || screen_key_from_sockaddr(sa, &k) != 0 ||
	    screen_is_exempt(s, sa))
		return 0;
	int n = screen_counter_note(s->counter[ev], &k, now);
	if (n == 0 || n < s->rule[ev].count)
		return n;
	char text[SCREEN_KEY_TEXT_MAX];
	screen_key_format(&k, text, sizeof text);
	if (block_key(s, &k, now + s->duration, reasons[ev], now))
		log_info("screen: %s screened for %d s: %s (%d in %d s)", text, s->duration,
		         reasons[ev], n, s->rule[ev].seconds);
	if (screened)
		*screened = 1;
	return n;
}

int screen_admit(struct screen *s, const struct sockaddr *sa, int64_t now)
{
	int screened = 0;
	if (s == NULL)
		return 0;
	if (screen_is_blocked(s, sa, now))
		return 1;
	screen_note(s, sa, SCREEN_EVENT_CONNECTION, now, &screened);
	return screened;
}

void screen_forget(struct screen *s, const struct sockaddr *sa, enum screen_event ev)
{
	struct screen_key k;
	if ((int)ev >= 0 && ev < SCREEN_EVENT_COUNT && screen_key_from_sockaddr(sa, &k) == 0)
		screen_counter_forget(s->counter[ev], &k);
}

int screen_block(struct screen *s, const struct sockaddr *sa, int seconds, const char *reason,
                 int64_t now)
{
	struct screen_key k;
	if (screen_key_from_sockaddr(sa, &k) != 0 || screen_is_exempt(s, sa))
		return 0;
	int secs = seconds > 0 ? seconds : s->duration;
	char text[SCREEN_KEY_TEXT_MAX];
	screen_key_format(&k, text, sizeof text);
	if (block_key(s, &k, now + secs, reason, now))
		log_info("screen: %s screened for %d s: %s", text, secs, reason);
	return 1;
}

void screen_tick(struct screen *s, int64_t now)
{
	apply_snapshot(s, now);
	screen_blocklist_expire(s->blocked, now, EXPIRE_SLICE);
	pthread_mutex_lock(&s->h.mu);
	pthread_cond_signal(&s->h.cv);
	pthread_mutex_unlock(&s->h.mu);
}

void screen_sync(struct screen *s, int64_t now)
{
	pthread_mutex_lock(&s->h.mu);
	uint64_t round = ++s->h.want_round;
	pthread_cond_signal(&s->h.cv);
	while (s->h.done_round < round && s->thread_started)
		pthread_cond_wait(&s->h.done_cv, &s->h.mu);
	pthread_mutex_unlock(&s->h.mu);
	apply_snapshot(s, now);
}

void screen_get_stats(const struct screen *s, struct screen_stats *out)
{
	memset(out, 0, sizeof *out);
	out->blocked = screen_blocklist_count(s->blocked);
	out->evictions = screen_blocklist_evictions(s->blocked);
	for (int i = 0; i < SCREEN_EVENT_COUNT; i++)
		out->evictions += s->counter[i] ? screen_counter_evictions(s->counter[i]) : 0;
	pthread_mutex_t *mu = (pthread_mutex_t *)&s->h.mu; /* locking does not change the state */
	pthread_mutex_lock(mu);
	out->writes_dropped = s->h.dropped;
	pthread_mutex_unlock(mu);
	out->reloads = s->reloads;
}

/* ---- open and close ---- */

struct load {
	struct screen_blocklist *into;
	int64_t now;
};

static int load_entry(void *arg, const struct screen_entry *e)
{
	struct load *l = arg;
	screen_blocklist_put(l->into, e, l->now);
	return 0;
}

static int handover_init(struct handover *h)
{
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		return -1;
	/* The thread's timed wait runs on the monotonic clock (a wall clock step is no wait). */
	int ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
	         pthread_mutex_init(&h->mu, NULL) == 0;
	ok = ok && pthread_cond_init(&h->cv, &ca) == 0 && pthread_cond_init(&h->done_cv, NULL) == 0;
	pthread_condattr_destroy(&ca);
	h->ops = ok ? malloc(SCREEN_OPS_MAX * sizeof *h->ops) : NULL;
	h->batch = h->ops ? malloc(SCREEN_OPS_MAX * sizeof *h->batch) : NULL;
	return h->batch ? 0 : -1;
}

struct screen *screen_open(const char *path, const struct screen_config *cfg, int64_t now,
                           char *err, size_t errlen)
{
	struct screen *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (handover_init(&s->h) != 0) {
		snprintf(err, errlen, "out of memory");
		screen_close(s);
		return NULL;
	}
	if (getrandom(&s->seed, sizeof s->seed, 0) != (ssize_t)sizeof s->seed)
		s->seed = (uint64_t)time_mono_us() * 0x9e3779b97f4a7c15ull;
	s->blocked = screen_blocklist_new(SCREEN_BLOCK_SLOTS, s->seed);
	if (!s->blocked || screen_configure(s, cfg) != 0) {
		snprintf(err, errlen, "out of memory");
		screen_close(s);
		return NULL;
	}
	s->db = screen_db_open(path, err, errlen);
	if (!s->db) {
		screen_close(s);
		return NULL;
	}
	/* The version first: a commit between it and the read is then seen as a change. */
	struct load m = {s->blocked, now};
	if (screen_db_data_version(s->db, &s->data_version) != 0 ||
	    screen_db_each(s->db, now, 0, SCREEN_BLOCK_SLOTS, load_entry, &m) < 0) {
		snprintf(err, errlen, "%s: cannot read the screen", path);
		screen_close(s);
		return NULL;
	}
	s->last_purge = time_wall_s() - PURGE_EVERY_S; /* purge at the first round */
	int e = pthread_create(&s->thread, NULL, writer_main, s);
	if (e != 0) {
		snprintf(err, errlen, "pthread_create: %s", strerror(e));
		screen_close(s);
		return NULL;
	}
	s->thread_started = 1;
	return s;
}

void screen_close(struct screen *s)
{
	if (!s)
		return;
	if (s->thread_started) {
		pthread_mutex_lock(&s->h.mu);
		s->h.stop = 1;
		pthread_cond_signal(&s->h.cv);
		pthread_mutex_unlock(&s->h.mu);
		pthread_join(s->thread, NULL);
		/* screen_sync callers (none should be left) would wait forever otherwise. */
		s->thread_started = 0;
	}
	screen_db_close(s->db);
	for (int i = 0; i < SCREEN_EVENT_COUNT; i++)
		screen_counter_free(s->counter[i]);
	screen_blocklist_free(s->blocked);
	free(s->exempt);
	free(s->trusted);
	free(s->h.ops);
	free(s->h.batch);
	free(s->h.snap);
	pthread_mutex_destroy(&s->h.mu);
	pthread_cond_destroy(&s->h.cv);
	pthread_cond_destroy(&s->h.done_cv);
	free(s);
}
