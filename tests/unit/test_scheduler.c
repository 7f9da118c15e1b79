/*
 * Unit tests for deliver/scheduler: the delivery schedule on a fake clock (every
 * time is a parameter; nothing sleeps). Times are seconds; T0 is an arbitrary
 * epoch second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "deliver/scheduler.h"
#include "harness.h"

#define T0 1700000000ULL
#define DAY 86400ULL

static struct scheduler_job job; /* 8 KiB: not on the stack of every test */

static struct scheduler *mk(void (*tweak)(struct scheduler_conf *))
{
	struct scheduler_conf c;
	scheduler_conf_defaults(&c);
	if (tweak)
		tweak(&c);
	return scheduler_new(&c);
}

static int add4(struct scheduler *s, const char *id, uint32_t rcpt, const char *dest,
                uint64_t arrival, uint64_t due, uint32_t attempts, int warned)
{
	struct scheduler_entry e = {id, rcpt, dest, arrival, due, attempts, warned};
	return scheduler_add(s, &e);
}

static int add(struct scheduler *s, const char *id, uint32_t rcpt, const char *dest,
               uint64_t arrival, uint64_t due)
{
	return add4(s, id, rcpt, dest, arrival, due, 0, 0);
}

/* Reports every recipient of the last job with one outcome. */
static void report_all(struct scheduler *s, enum scheduler_outcome o, uint64_t now)
{
	for (size_t i = 0; i < job.n; i++)
		CHECK_INT(scheduler_result(s, job.msg_id, job.rcpts[i].rcpt, o, now, NULL), 0);
}

/* The same without a check per recipient (for the big tests): returns the failures. */
static int report_quiet(struct scheduler *s, enum scheduler_outcome o, uint64_t now)
{
	int bad = 0;
	for (size_t i = 0; i < job.n; i++)
		bad += scheduler_result(s, job.msg_id, job.rcpts[i].rcpt, o, now, NULL) != 0;
	return bad;
}

static int next_is(struct scheduler *s, uint64_t now, enum scheduler_job_kind kind, const char *id,
                   const char *dest, size_t n)
{
	int ok = CHECK_INT(scheduler_next(s, now, &job), 1);
	ok = ok && CHECK_INT(job.kind, kind);
	ok = ok && CHECK_STR(job.msg_id, id);
	ok = ok && CHECK_STR(job.dest, dest);
	return ok && CHECK_INT(job.n, n);
}

static uint64_t dead_until(struct scheduler *s, const char *dest)
{
	struct scheduler_dest_info di;
	if (!CHECK_INT(scheduler_dest_lookup(s, dest, &di), 0))
		return 0;
	return di.dead_until;
}

static uint32_t failures(struct scheduler *s, const char *dest)
{
	struct scheduler_dest_info di;
	if (!CHECK_INT(scheduler_dest_lookup(s, dest, &di), 0))
		return 0;
	return di.failures;
}

/* ---- settings ---- */

static void zero_initial(struct scheduler_conf *c)
{
	c->retry_initial = 0;
}
static void max_below_initial(struct scheduler_conf *c)
{
	c->retry_max = c->retry_initial - 1;
}
static void zero_lifetime(struct scheduler_conf *c)
{
	c->lifetime = 0;
}
static void zero_dest(struct scheduler_conf *c)
{
	c->dest_concurrency = 0;
}
static void zero_local(struct scheduler_conf *c)
{
	c->local_concurrency = 0;
}
static void zero_global(struct scheduler_conf *c)
{
	c->global_concurrency = 0;
}
static void huge_global(struct scheduler_conf *c)
{
	c->global_concurrency = SCHEDULER_CONCURRENCY_MAX + 1;
}
static void zero_batch(struct scheduler_conf *c)
{
	c->batch_max = 0;
}
static void huge_batch(struct scheduler_conf *c)
{
	c->batch_max = SCHEDULER_BATCH_MAX + 1;
}
static void edge_ok(struct scheduler_conf *c)
{
	c->retry_max = c->retry_initial;
	c->global_concurrency = SCHEDULER_CONCURRENCY_MAX;
	c->batch_max = SCHEDULER_BATCH_MAX;
	c->delay_warning = 0;
}

TEST(conf_checked)
{
	struct scheduler_conf c;
	scheduler_conf_defaults(&c);
	CHECK_INT(c.retry_initial, 300);
	CHECK_INT(c.retry_max, 3600);
	CHECK_INT(c.lifetime, 5 * DAY);
	CHECK_INT(c.delay_warning, 4 * 3600);
	CHECK_INT(c.dest_concurrency, 10);
	CHECK_INT(c.global_concurrency, 100);
	static void (*const bad[])(struct scheduler_conf *) = {
	        zero_initial, max_below_initial, zero_lifetime, zero_dest, zero_local,
	        zero_global,  huge_global,       zero_batch,    huge_batch};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct scheduler *s = mk(bad[i]);
		if (!CHECK(s == NULL))
			fprintf(stderr, "     bad conf %zu accepted\n", i);
		scheduler_free(s);
	}
	struct scheduler *s = mk(edge_ok);
	CHECK(s != NULL);
	scheduler_free(s);
	CHECK(scheduler_new(NULL) == NULL);
	scheduler_free(NULL);
}

/* ---- hostile and edge inputs ---- */

static const char id32[] = "0123456789abcdef0123456789ABCDEF";
static const char id33[] = "0123456789abcdef0123456789ABCDEFx";

struct add_case {
	const char *id;
	const char *dest;
	int want;
};

static const struct add_case add_cases[] = {
        {"A1", "example.com", SCHEDULER_OK},
        {id32, "example.com", SCHEDULER_OK},
        {"A2", "[192.0.2.1]:2525", SCHEDULER_OK},
        {"A3", SCHEDULER_DEST_LOCAL, SCHEDULER_OK},
        {"A3b", "local", SCHEDULER_OK}, /* a domain named local: an ordinary destination */
        {"A4", "\xc3\xa9xample.com", SCHEDULER_OK}, /* 8-bit (SMTPUTF8 domains) */
        {"", "example.com", SCHEDULER_EINVAL},
        {NULL, "example.com", SCHEDULER_EINVAL},
        {id33, "example.com", SCHEDULER_EINVAL},
        {"A 5", "example.com", SCHEDULER_EINVAL},
        {"A\r\n6", "example.com", SCHEDULER_EINVAL},
        {"A\x7f", "example.com", SCHEDULER_EINVAL},
        {"A7", "", SCHEDULER_EINVAL},
        {"A8", NULL, SCHEDULER_EINVAL},
        {"A9", "exa mple.com", SCHEDULER_EINVAL},
        {"A10", "example.com\n", SCHEDULER_EINVAL},
        {"A11", "\texample.com", SCHEDULER_EINVAL},
};

TEST(add_hostile)
{
	struct scheduler *s = mk(NULL);
	for (size_t i = 0; i < sizeof add_cases / sizeof add_cases[0]; i++) {
		const struct add_case *c = &add_cases[i];
		if (!CHECK_INT(add(s, c->id, 0, c->dest, T0, T0), c->want))
			fprintf(stderr, "     case %zu\n", i);
	}
	CHECK_INT(scheduler_count(s), 6);
	CHECK_INT(scheduler_add(s, NULL), SCHEDULER_EINVAL);

	char d255[256], d256[257];
	memset(d255, 'a', 255);
	d255[255] = '\0';
	memset(d256, 'b', 256);
	d256[256] = '\0';
	CHECK_INT(add(s, "L1", 0, d255, T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "L2", 0, d256, T0, T0), SCHEDULER_EINVAL);
	CHECK_INT(scheduler_dest_lookup(s, d256, &(struct scheduler_dest_info){0}), -1);
	struct scheduler_dest_info di;
	CHECK_INT(scheduler_dest_lookup(s, d255, &di), 0);
	CHECK_INT(di.items, 1);
	scheduler_free(s);
}

TEST(add_duplicate)
{
	struct scheduler *s = mk(NULL);
	struct scheduler_item_info ii;
	CHECK_INT(add(s, "M", 0, "example.com", T0, T0 + 50), SCHEDULER_OK);
	/* The same (id, rcpt) again, even for another destination or time: refused, unchanged. */
	CHECK_INT(add(s, "M", 0, "example.com", T0, T0 + 50), SCHEDULER_EDUP);
	CHECK_INT(add(s, "M", 0, "other.org", T0, T0), SCHEDULER_EDUP);
	CHECK_INT(scheduler_count(s), 1);
	CHECK_INT(scheduler_lookup(s, "M", 0, &ii), 0);
	CHECK_INT(ii.next_try, T0 + 50);
	/* Another recipient of the same message must have the same arrival. */
	CHECK_INT(add(s, "M", 1, "example.com", T0 + 1, T0), SCHEDULER_EINVAL);
	CHECK_INT(add(s, "M", 1, "example.com", T0, T0), SCHEDULER_OK);
	CHECK_INT(scheduler_count(s), 2);
	/* In flight, still a duplicate. */
	CHECK(next_is(s, T0 + 50, SCHEDULER_JOB_DELIVER, "M", "example.com", 2));
	CHECK_INT(add(s, "M", 0, "example.com", T0, T0), SCHEDULER_EDUP);
	scheduler_free(s);
}

TEST(dest_case_folded)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "M", 0, "Example.COM", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 1, "example.com", T0, T0), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "example.com", 2));
	CHECK_INT(failures(s, "EXAMPLE.com"), 0);
	scheduler_free(s);
}

static void small_max(struct scheduler_conf *c)
{
	c->max_items = 3;
}

TEST(max_items)
{
	struct scheduler *s = mk(small_max);
	CHECK_INT(add(s, "M", 0, "a.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 1, "a.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "N", 0, "b.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "N", 1, "b.example", T0, T0), SCHEDULER_EFULL);
	CHECK_INT(add(s, "O", 0, "c.example", T0, T0), SCHEDULER_EFULL);
	CHECK_INT(scheduler_dest_lookup(s, "c.example", &(struct scheduler_dest_info){0}), -1);
	/* A duplicate is still called a duplicate when full. */
	CHECK_INT(add(s, "M", 0, "a.example", T0, T0), SCHEDULER_EDUP);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "a.example", 2));
	report_all(s, SCHEDULER_DELIVERED, T0);
	CHECK_INT(scheduler_count(s), 1);
	CHECK_INT(add(s, "O", 0, "c.example", T0, T0), SCHEDULER_OK);
	scheduler_free(s);
}

TEST(result_hostile)
{
	struct scheduler *s = mk(NULL);
	uint64_t nt = 7;
	CHECK_INT(add(s, "M", 0, "example.com", T0, T0), SCHEDULER_OK);
	/* Not handed out yet: refused. */
	CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DELIVERED, T0, &nt), -1);
	CHECK_INT(nt, 7);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "example.com", 1));
	CHECK_INT(scheduler_result(s, "M", 1, SCHEDULER_DELIVERED, T0, NULL), -1);
	CHECK_INT(scheduler_result(s, "X", 0, SCHEDULER_DELIVERED, T0, NULL), -1);
	CHECK_INT(scheduler_result(s, "", 0, SCHEDULER_DELIVERED, T0, NULL), -1);
	CHECK_INT(scheduler_result(s, NULL, 0, SCHEDULER_DELIVERED, T0, NULL), -1);
	CHECK_INT(scheduler_result(s, id33, 0, SCHEDULER_DELIVERED, T0, NULL), -1);
	CHECK_INT(scheduler_result(s, "M", 0, (enum scheduler_outcome)0, T0, NULL), -1);
	CHECK_INT(scheduler_result(s, "M", 0, (enum scheduler_outcome)99, T0, NULL), -1);
	CHECK_INT(scheduler_count(s), 1);
	CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DELIVERED, T0, &nt), 0);
	CHECK_INT(nt, 0);
	/* Twice: the second is refused. */
	CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DELIVERED, T0, NULL), -1);
	CHECK_INT(scheduler_count(s), 0);
	CHECK_INT(scheduler_dest_lookup(s, "example.com", &(struct scheduler_dest_info){0}), -1);
	CHECK_INT(scheduler_remove(s, "M"), -1);
	CHECK_INT(scheduler_remove(s, ""), -1);
	CHECK_INT(scheduler_remove(s, NULL), -1);
	CHECK_INT(scheduler_flush(s, "M", T0), 0);
	CHECK_INT(scheduler_flush(s, "", T0), 0);
	CHECK_INT(scheduler_next_dest(s, "example.com", T0, &job), 0);
	CHECK_INT(scheduler_next_dest(s, NULL, T0, &job), 0);
	CHECK_INT(scheduler_lookup(s, NULL, 0, &(struct scheduler_item_info){0}), -1);
	scheduler_free(s);
}

TEST(extreme_times)
{
	struct scheduler *s = mk(NULL);
	/* An arrival near the end of time: its expiry saturates instead of wrapping. */
	CHECK_INT(add(s, "M", 0, "example.com", UINT64_MAX - 10, UINT64_MAX), SCHEDULER_OK);
	CHECK_INT(scheduler_next(s, T0, &job), 0);
	CHECK_INT(scheduler_next_wakeup(s), UINT64_MAX); /* every time saturates to the end */
	CHECK_INT(scheduler_next(s, UINT64_MAX - 1, &job), 0);
	CHECK(next_is(s, UINT64_MAX, SCHEDULER_JOB_EXPIRE, "M", "", 1));
	/* A deferral near the end of time does not wrap to the past. */
	CHECK_INT(add(s, "N", 0, "example.com", UINT64_MAX - 5 * DAY - 100, UINT64_MAX - 5 * DAY),
	          SCHEDULER_OK);
	CHECK(next_is(s, UINT64_MAX - 5 * DAY, SCHEDULER_JOB_DELIVER, "N", "example.com", 1));
	uint64_t nt = 0;
	CHECK_INT(scheduler_result(s, "N", 0, SCHEDULER_DEFER_RCPT, UINT64_MAX - 200, &nt), 0);
	CHECK_INT(nt, UINT64_MAX);
	scheduler_free(s);
}

/* ---- order and batching ---- */

TEST(due_order)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "C", 0, "example.com", T0, T0 + 30), SCHEDULER_OK);
	CHECK_INT(add(s, "A", 0, "example.com", T0, T0 + 10), SCHEDULER_OK);
	CHECK_INT(add(s, "B", 0, "example.com", T0, T0 + 20), SCHEDULER_OK);
	CHECK_INT(add(s, "D", 0, "example.com", T0, T0 + 20), SCHEDULER_OK); /* tie: added later */
	CHECK_INT(scheduler_next_wakeup(s), T0 + 10);
	CHECK_INT(scheduler_next(s, T0 + 9, &job), 0);
	CHECK(next_is(s, T0 + 30, SCHEDULER_JOB_DELIVER, "A", "example.com", 1));
	CHECK(next_is(s, T0 + 30, SCHEDULER_JOB_DELIVER, "B", "example.com", 1));
	CHECK(next_is(s, T0 + 30, SCHEDULER_JOB_DELIVER, "D", "example.com", 1));
	CHECK(next_is(s, T0 + 30, SCHEDULER_JOB_DELIVER, "C", "example.com", 1));
	CHECK_INT(scheduler_next(s, T0 + 30, &job), 0);
	scheduler_free(s);
}

TEST(batch_per_message_and_dest)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "M", 0, "example.com", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 1, "other.org", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 2, "example.com", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 3, "example.com", T0, T0 + 100), SCHEDULER_OK); /* not due yet */
	CHECK_INT(add(s, "M", 4, SCHEDULER_DEST_LOCAL, T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "N", 0, "example.com", T0, T0), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "example.com", 2));
	CHECK_INT(job.rcpts[0].rcpt, 0);
	CHECK_INT(job.rcpts[1].rcpt, 2);
	CHECK_INT(job.arrival, T0);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "other.org", 1));
	CHECK_INT(job.rcpts[0].rcpt, 1);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", SCHEDULER_DEST_LOCAL, 1));
	CHECK_INT(job.rcpts[0].rcpt, 4);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "N", "example.com", 1));
	CHECK_INT(scheduler_next(s, T0 + 99, &job), 0);
	CHECK(next_is(s, T0 + 100, SCHEDULER_JOB_DELIVER, "M", "example.com", 1));
	CHECK_INT(job.rcpts[0].rcpt, 3);
	scheduler_free(s);
}

static void batch2(struct scheduler_conf *c)
{
	c->batch_max = 2;
}

TEST(batch_max_splits)
{
	struct scheduler *s = mk(batch2);
	for (uint32_t i = 0; i < 5; i++)
		CHECK_INT(add(s, "M", i, "example.com", T0, T0), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "example.com", 2));
	CHECK_INT(job.rcpts[0].rcpt, 0);
	CHECK_INT(job.rcpts[1].rcpt, 1);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "example.com", 2));
	CHECK_INT(job.rcpts[0].rcpt, 2);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "example.com", 1));
	CHECK_INT(job.rcpts[0].rcpt, 4);
	CHECK_INT(scheduler_next(s, T0, &job), 0);
	struct scheduler_dest_info di;
	CHECK_INT(scheduler_dest_lookup(s, "example.com", &di), 0);
	CHECK_INT(di.in_flight, 3);
	CHECK_INT(di.items, 5);
	scheduler_free(s);
}

/* ---- concurrency ---- */

static void limits(struct scheduler_conf *c)
{
	c->dest_concurrency = 2;
	c->local_concurrency = 1;
	c->global_concurrency = 4;
}

TEST(dest_concurrency)
{
	struct scheduler *s = mk(limits);
	char id[16];
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof id, "R%d", i);
		CHECK_INT(add(s, id, 0, "example.com", T0, T0), SCHEDULER_OK);
		snprintf(id, sizeof id, "L%d", i);
		CHECK_INT(add(s, id, 0, SCHEDULER_DEST_LOCAL, T0, T0), SCHEDULER_OK);
	}
	int relay = 0, local = 0;
	while (scheduler_next(s, T0, &job) == 1) {
		relay += strcmp(job.dest, "example.com") == 0;
		local += strcmp(job.dest, SCHEDULER_DEST_LOCAL) == 0;
	}
	CHECK_INT(relay, 2);
	CHECK_INT(local, 1);
	/* Deliveries wait for a result to free a slot: only the delay warnings are timed. */
	CHECK_INT(scheduler_next_wakeup(s), T0 + 4 * 3600);
	/* The last job (L0 or R1): its result frees its destination's slot. */
	report_all(s, SCHEDULER_DELIVERED, T0 + 1);
	CHECK_INT(scheduler_next_wakeup(s), T0);
	CHECK_INT(scheduler_next(s, T0 + 1, &job), 1);
	CHECK_INT(scheduler_next(s, T0 + 1, &job), 0);
	scheduler_free(s);
}

TEST(a_domain_named_local_is_a_relay_destination)
{
	/* local_concurrency 1, dest_concurrency 2: "local" gets the relay limit. */
	struct scheduler *s = mk(limits);
	char id[16];
	for (int i = 0; i < 3; i++) {
		snprintf(id, sizeof id, "D%d", i);
		CHECK_INT(add(s, id, 0, "local", T0, T0), SCHEDULER_OK);
	}
	int n = 0;
	while (scheduler_next(s, T0, &job) == 1)
		n += strcmp(job.dest, "local") == 0;
	CHECK_INT(n, 2);
	CHECK(strcmp(SCHEDULER_DEST_LOCAL, "local") != 0);
	scheduler_free(s);
}

TEST(global_concurrency)
{
	struct scheduler *s = mk(limits);
	const char *dests[] = {"a.example", "b.example", "c.example", "d.example", "e.example"};
	for (int i = 0; i < 5; i++)
		CHECK_INT(add(s, dests[i], 0, dests[i], T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "late", 0, "f.example", T0, T0 + 50), SCHEDULER_OK);
	CHECK_INT(add4(s, "old", 0, "g.example", T0 - 5 * DAY + 60, T0 + 500, 0, 1), SCHEDULER_OK);
	for (int i = 0; i < 4; i++)
		CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, dests[i], dests[i], 1));
	CHECK_INT(scheduler_next(s, T0 + 50, &job), 0);
	CHECK_INT(scheduler_next_dest(s, "e.example", T0, &job), 0);
	/* Full: only the expiry can wake us; deliveries wait for a result. */
	CHECK_INT(scheduler_next_wakeup(s), T0 + 60);
	CHECK(next_is(s, T0 + 60, SCHEDULER_JOB_EXPIRE, "old", "", 1));
	CHECK_INT(scheduler_next_wakeup(s), T0 + 4 * 3600); /* e's and f's delay warnings */
	CHECK_INT(scheduler_result(s, "b.example", 0, SCHEDULER_DELIVERED, T0 + 60, NULL), 0);
	/* Ready now: e.example (in the ring since T0) and f.example (due at T0 + 50). */
	CHECK_INT(scheduler_next_wakeup(s), T0 + 50);
	CHECK(next_is(s, T0 + 60, SCHEDULER_JOB_DELIVER, "e.example", "e.example", 1));
	CHECK_INT(scheduler_next(s, T0 + 60, &job), 0);
	scheduler_free(s);
}

static void wide(struct scheduler_conf *c)
{
	c->dest_concurrency = 100000;
	c->global_concurrency = 100000;
}

TEST(fairness)
{
	struct scheduler *s = mk(wide);
	char id[16];
	int bad = 0;
	/* 20,000 due items at big.example, all older than small.example's single one. */
	for (int i = 0; i < 20000; i++) {
		snprintf(id, sizeof id, "B%05d", i);
		bad += add(s, id, 0, "big.example", T0, T0 + (uint64_t)i % 100) != SCHEDULER_OK;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(add(s, "S", 0, "small.example", T0, T0 + 200), SCHEDULER_OK);
	int seen = -1;
	for (int i = 0; i < 3 && seen < 0; i++) {
		CHECK_INT(scheduler_next(s, T0 + 300, &job), 1);
		if (strcmp(job.dest, "small.example") == 0)
			seen = i;
	}
	CHECK(seen >= 0 && seen <= 1);
	/* And the rest alternate: a third destination is served at once. */
	CHECK_INT(add(s, "T", 0, "third.example", T0, T0 + 250), SCHEDULER_OK);
	int third = -1;
	for (int i = 0; i < 3 && third < 0; i++) {
		CHECK_INT(scheduler_next(s, T0 + 300, &job), 1);
		if (strcmp(job.dest, "third.example") == 0)
			third = i;
	}
	CHECK(third >= 0 && third <= 1);
	scheduler_free(s);
}

/* ---- back-off and dead destinations ---- */

TEST(dest_backoff_doubles_and_caps)
{
	struct scheduler *s = mk(NULL);
	static const uint64_t steps[] = {300, 600, 1200, 2400, 3600, 3600, 3600};
	CHECK_INT(add4(s, "M", 0, "dead.example", T0, T0, 0, 1), SCHEDULER_OK);
	uint64_t now = T0;
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		if (!CHECK(next_is(s, now, SCHEDULER_JOB_DELIVER, "M", "dead.example", 1)))
			break;
		CHECK_INT(job.rcpts[0].attempts, i);
		uint64_t nt = 0;
		CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DEFER_DEST, now, &nt), 0);
		CHECK_INT(nt, now + steps[i]);
		CHECK_INT(dead_until(s, "dead.example"), now + steps[i]);
		CHECK_INT(failures(s, "dead.example"), i + 1);
		CHECK_INT(scheduler_next_wakeup(s), now + steps[i]);
		CHECK_INT(scheduler_next(s, now + steps[i] - 1, &job), 0);
		struct scheduler_item_info ii;
		CHECK_INT(scheduler_lookup(s, "M", 0, &ii), 0);
		CHECK_INT(ii.next_try, now + steps[i]);
		CHECK_INT(ii.attempts, i + 1);
		now += steps[i];
	}
	scheduler_free(s);
}

TEST(dead_dest_does_not_delay_others)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "D1", 0, "dead.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "D2", 0, "dead.example", T0, T0 + 10), SCHEDULER_OK);
	CHECK_INT(add(s, "D3", 0, "dead.example", T0, T0 + 20), SCHEDULER_OK);
	CHECK_INT(add(s, "OK", 0, "live.example", T0, T0 + 20), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "D1", "dead.example", 1));
	report_all(s, SCHEDULER_DEFER_DEST, T0 + 5);
	/* D2 and D3 are due but their destination is dead; live.example goes on time. */
	CHECK_INT(scheduler_next_wakeup(s), T0 + 20);
	CHECK(next_is(s, T0 + 20, SCHEDULER_JOB_DELIVER, "OK", "live.example", 1));
	CHECK_INT(scheduler_next(s, T0 + 20, &job), 0);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 305);
	/* A new message for the dead destination waits too. */
	CHECK_INT(add(s, "D4", 0, "dead.example", T0 + 30, T0 + 30), SCHEDULER_OK);
	CHECK_INT(scheduler_next(s, T0 + 304, &job), 0);
	/* Back from dead: one probe at a time, the oldest first. */
	CHECK(next_is(s, T0 + 305, SCHEDULER_JOB_DELIVER, "D1", "dead.example", 1));
	CHECK_INT(scheduler_next(s, T0 + 305, &job), 0);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 4 * 3600); /* the probe blocks the others */
	CHECK_INT(scheduler_result(s, "D1", 0, SCHEDULER_DELIVERED, T0 + 306, NULL), 0);
	/* One success: full concurrency again, no back-off. */
	CHECK_INT(failures(s, "dead.example"), 0);
	CHECK_INT(dead_until(s, "dead.example"), 0);
	CHECK(next_is(s, T0 + 306, SCHEDULER_JOB_DELIVER, "D2", "dead.example", 1));
	CHECK(next_is(s, T0 + 306, SCHEDULER_JOB_DELIVER, "D3", "dead.example", 1));
	CHECK(next_is(s, T0 + 306, SCHEDULER_JOB_DELIVER, "D4", "dead.example", 1));
	scheduler_free(s);
}

TEST(success_resets)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "M", 0, "flaky.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "N", 0, "flaky.example", T0, T0 + 10000), SCHEDULER_OK);
	uint64_t now = T0;
	for (int i = 0; i < 3; i++) { /* 300, 600, 1200 */
		CHECK_INT(scheduler_next(s, now, &job), 1);
		report_all(s, SCHEDULER_DEFER_DEST, now);
		now = dead_until(s, "flaky.example");
	}
	CHECK_INT(now, T0 + 2100);
	CHECK_INT(failures(s, "flaky.example"), 3);
	CHECK(next_is(s, now, SCHEDULER_JOB_DELIVER, "M", "flaky.example", 1));
	report_all(s, SCHEDULER_DELIVERED, now);
	CHECK_INT(failures(s, "flaky.example"), 0);
	/* The next failure starts again at retry_initial. */
	CHECK(next_is(s, T0 + 10000, SCHEDULER_JOB_DELIVER, "N", "flaky.example", 1));
	report_all(s, SCHEDULER_DEFER_DEST, T0 + 10000);
	CHECK_INT(dead_until(s, "flaky.example"), T0 + 10300);
	scheduler_free(s);
}

TEST(any_answer_revives)
{
	/* A 5xx or a recipient's 4xx is an answer too: the peer is alive. */
	static const enum scheduler_outcome answers[] = {SCHEDULER_FAILED, SCHEDULER_DEFER_RCPT};
	for (size_t i = 0; i < 2; i++) {
		struct scheduler *s = mk(NULL);
		CHECK_INT(add(s, "M", 0, "x.example", T0, T0), SCHEDULER_OK);
		CHECK_INT(add(s, "N", 0, "x.example", T0, T0), SCHEDULER_OK);
		CHECK_INT(scheduler_next(s, T0, &job), 1);
		report_all(s, SCHEDULER_DEFER_DEST, T0);
		CHECK_INT(scheduler_next(s, T0 + 300, &job), 1);
		report_all(s, answers[i], T0 + 300);
		CHECK_INT(failures(s, "x.example"), 0);
		CHECK_INT(dead_until(s, "x.example"), 0);
		scheduler_free(s);
	}
}

TEST(one_outage_counts_once)
{
	struct scheduler *s = mk(NULL);
	for (int i = 0; i < 3; i++) {
		char id[4] = {'M', (char)('0' + i), 0};
		CHECK_INT(add(s, id, 0, "x.example", T0, T0), SCHEDULER_OK);
		CHECK_INT(add(s, id, 1, "x.example", T0, T0), SCHEDULER_OK);
	}
	for (int i = 0; i < 3; i++)
		CHECK_INT(scheduler_next(s, T0, &job), 1);
	/* Three connections see the same outage: one back-off step, not three. */
	CHECK_INT(scheduler_result(s, "M0", 0, SCHEDULER_DEFER_DEST, T0 + 1, NULL), 0);
	CHECK_INT(scheduler_result(s, "M0", 1, SCHEDULER_DEFER_DEST, T0 + 1, NULL), 0);
	CHECK_INT(scheduler_result(s, "M1", 0, SCHEDULER_DEFER_DEST, T0 + 2, NULL), 0);
	CHECK_INT(scheduler_result(s, "M1", 1, SCHEDULER_DEFER_DEST, T0 + 2, NULL), 0);
	CHECK_INT(scheduler_result(s, "M2", 0, SCHEDULER_DEFER_DEST, T0 + 3, NULL), 0);
	CHECK_INT(scheduler_result(s, "M2", 1, SCHEDULER_DEFER_DEST, T0 + 3, NULL), 0);
	CHECK_INT(failures(s, "x.example"), 1);
	CHECK_INT(dead_until(s, "x.example"), T0 + 301);
	/* Each deferred recipient's own attempts still count. */
	struct scheduler_item_info ii;
	CHECK_INT(scheduler_lookup(s, "M2", 1, &ii), 0);
	CHECK_INT(ii.attempts, 1);
	CHECK_INT(ii.next_try, T0 + 301);
	scheduler_free(s);
}

TEST(rcpt_deferral_is_its_own)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "M", 0, "example.com", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 1, "example.com", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "N", 0, "example.com", T0, T0), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "example.com", 2));
	uint64_t nt = 0;
	/* 250 for one, 452 (mailbox full) for the other: the destination is fine. */
	CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DELIVERED, T0 + 1, &nt), 0);
	CHECK_INT(scheduler_result(s, "M", 1, SCHEDULER_DEFER_RCPT, T0 + 1, &nt), 0);
	CHECK_INT(nt, T0 + 301);
	CHECK_INT(dead_until(s, "example.com"), 0);
	CHECK_INT(failures(s, "example.com"), 0);
	CHECK(next_is(s, T0 + 1, SCHEDULER_JOB_DELIVER, "N", "example.com", 1));
	CHECK_INT(scheduler_next(s, T0 + 300, &job), 0);
	/* Its own back-off doubles per attempt of that recipient, capped. */
	static const uint64_t steps[] = {600, 1200, 2400, 3600, 3600};
	uint64_t now = T0 + 301;
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		if (!CHECK(next_is(s, now, SCHEDULER_JOB_DELIVER, "M", "example.com", 1)))
			break;
		CHECK_INT(scheduler_result(s, "M", 1, SCHEDULER_DEFER_RCPT, now, &nt), 0);
		CHECK_INT(nt, now + steps[i]);
		CHECK_INT(scheduler_next(s, nt - 1, &job), 0);
		now = nt;
	}
	CHECK_INT(dead_until(s, "example.com"), 0);
	scheduler_free(s);
}

TEST(rcpt_backoff_goes_on_after_restart)
{
	struct scheduler *s = mk(NULL);
	/* Loaded from the queue with 3 attempts behind it: the 4th deferral waits 2400 s. */
	CHECK_INT(add4(s, "M", 0, "example.com", T0, T0, 3, 0), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "example.com", 1));
	CHECK_INT(job.rcpts[0].attempts, 3);
	uint64_t nt = 0;
	CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DEFER_RCPT, T0, &nt), 0);
	CHECK_INT(nt, T0 + 2400);
	/* A huge attempt count from a hostile or damaged file: capped, no overflow. */
	CHECK_INT(add4(s, "N", 0, "example.com", T0, T0, UINT32_MAX, 0), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "N", "example.com", 1));
	CHECK_INT(scheduler_result(s, "N", 0, SCHEDULER_DEFER_RCPT, T0, &nt), 0);
	CHECK_INT(nt, T0 + 3600);
	scheduler_free(s);
}

TEST(probe_after_dead)
{
	struct scheduler *s = mk(NULL);
	for (int i = 0; i < 5; i++) {
		char id[4] = {'P', (char)('0' + i), 0};
		CHECK_INT(add(s, id, 0, "x.example", T0, T0), SCHEDULER_OK);
	}
	CHECK_INT(scheduler_next(s, T0, &job), 1);
	report_all(s, SCHEDULER_DEFER_DEST, T0);
	/* At the end of the dead period: one job, even via next_dest. */
	CHECK(next_is(s, T0 + 300, SCHEDULER_JOB_DELIVER, "P0", "x.example", 1));
	CHECK_INT(scheduler_next(s, T0 + 300, &job), 0);
	CHECK_INT(scheduler_next_dest(s, "x.example", T0 + 300, &job), 0);
	report_all(s, SCHEDULER_DEFER_DEST, T0 + 301);
	CHECK_INT(dead_until(s, "x.example"), T0 + 901);
	scheduler_free(s);
}

static void global2(struct scheduler_conf *c)
{
	c->global_concurrency = 2;
}

TEST(dead_while_waiting_its_turn)
{
	struct scheduler *s = mk(global2);
	CHECK_INT(add(s, "X1", 0, "x.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "X2", 0, "x.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "Y1", 0, "y.example", T0, T0), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "X1", "x.example", 1));
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "Y1", "y.example", 1));
	/* x.example has its turn next, but dies before it comes. */
	CHECK_INT(scheduler_result(s, "X1", 0, SCHEDULER_DEFER_DEST, T0 + 1, NULL), 0);
	CHECK_INT(scheduler_result(s, "Y1", 0, SCHEDULER_DELIVERED, T0 + 1, NULL), 0);
	CHECK_INT(scheduler_next(s, T0 + 1, &job), 0);
	CHECK_INT(scheduler_next_dest(s, "x.example", T0 + 1, &job), 0);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 301);
	/* The probe: X2 (due since T0) before X1 (due again since T0 + 1). */
	CHECK(next_is(s, T0 + 301, SCHEDULER_JOB_DELIVER, "X2", "x.example", 1));
	scheduler_free(s);
}

TEST(grave_remembers_dead)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "M", 0, "x.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(scheduler_next(s, T0, &job), 1);
	CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DEFER_DEST, T0, NULL), 0);
	CHECK_INT(scheduler_remove(s, "M"), 1);
	CHECK_INT(scheduler_count(s), 0);
	/* No items, still dead: a new message waits for the dead period. */
	CHECK_INT(dead_until(s, "x.example"), T0 + 300);
	CHECK_INT(scheduler_next_wakeup(s), SCHEDULER_NEVER);
	CHECK_INT(add(s, "N", 0, "x.example", T0 + 10, T0 + 10), SCHEDULER_OK);
	CHECK_INT(scheduler_next(s, T0 + 299, &job), 0);
	CHECK(next_is(s, T0 + 300, SCHEDULER_JOB_DELIVER, "N", "x.example", 1));
	CHECK_INT(scheduler_result(s, "N", 0, SCHEDULER_DEFER_DEST, T0 + 300, NULL), 0);
	CHECK_INT(scheduler_remove(s, "N"), 1);
	/* Once the dead period is over with nothing queued, it is forgotten. */
	CHECK_INT(scheduler_next(s, T0 + 899, &job), 0);
	CHECK_INT(dead_until(s, "x.example"), T0 + 900);
	CHECK_INT(scheduler_next(s, T0 + 900, &job), 0);
	CHECK_INT(scheduler_dest_lookup(s, "x.example", &(struct scheduler_dest_info){0}), -1);
	scheduler_free(s);
}

/* ---- lifetime ---- */

TEST(lifetime_exact)
{
	struct scheduler *s = mk(NULL);
	uint64_t exp = T0 + 5 * DAY;
	CHECK_INT(add4(s, "M", 0, "example.com", T0, exp + 1000, 0, 1), SCHEDULER_OK);
	CHECK_INT(add4(s, "M", 1, SCHEDULER_DEST_LOCAL, T0, exp - 10, 0, 1), SCHEDULER_OK);
	CHECK_INT(add4(s, "M", 2, "other.org", T0, exp + 50, 0, 1), SCHEDULER_OK);
	CHECK_INT(add4(s, "N", 0, "example.com", T0 + 1, exp + 1000, 0, 1), SCHEDULER_OK);
	CHECK(next_is(s, exp - 10, SCHEDULER_JOB_DELIVER, "M", SCHEDULER_DEST_LOCAL, 1));
	CHECK_INT(scheduler_next_wakeup(s), exp);
	CHECK_INT(scheduler_next(s, exp - 1, &job), 0);
	/* Every queued recipient of M, whatever its due time; M 1 is in flight. */
	CHECK(next_is(s, exp, SCHEDULER_JOB_EXPIRE, "M", "", 2));
	CHECK_INT(job.rcpts[0].rcpt, 0);
	CHECK_INT(job.rcpts[1].rcpt, 2);
	CHECK_INT(scheduler_next_wakeup(s), exp + 1);
	CHECK_INT(scheduler_next(s, exp, &job), 0);
	/* The one in flight expires when it comes back deferred. */
	uint64_t nt = 0;
	CHECK_INT(scheduler_result(s, "M", 1, SCHEDULER_DEFER_RCPT, exp + 1, &nt), 0);
	CHECK_INT(scheduler_next_wakeup(s), exp);
	CHECK(next_is(s, exp + 1, SCHEDULER_JOB_EXPIRE, "M", "", 1));
	CHECK_INT(job.rcpts[0].rcpt, 1);
	CHECK_INT(job.rcpts[0].attempts, 1);
	CHECK_INT(scheduler_lookup(s, "M", 1, &(struct scheduler_item_info){0}), -1);
	CHECK(next_is(s, exp + 1, SCHEDULER_JOB_EXPIRE, "N", "", 1));
	CHECK_INT(scheduler_count(s), 0);
	CHECK_INT(scheduler_next_wakeup(s), SCHEDULER_NEVER);
	scheduler_free(s);
}

TEST(lifetime_dead_dest)
{
	struct scheduler *s = mk(NULL);
	uint64_t exp = T0 + 5 * DAY;
	CHECK_INT(add4(s, "M", 0, "dead.example", T0, exp - 100, 0, 1), SCHEDULER_OK);
	CHECK_INT(add4(s, "N", 0, "dead.example", T0 + 5, exp - 100, 0, 1), SCHEDULER_OK);
	CHECK(next_is(s, exp - 100, SCHEDULER_JOB_DELIVER, "M", "dead.example", 1));
	report_all(s, SCHEDULER_DEFER_DEST, exp - 50); /* dead until exp + 250 */
	CHECK_INT(scheduler_next_wakeup(s), exp);
	CHECK(next_is(s, exp, SCHEDULER_JOB_EXPIRE, "M", "", 1));
	CHECK_INT(scheduler_next_wakeup(s), exp + 5);
	CHECK_INT(scheduler_next(s, exp + 4, &job), 0);
	CHECK(next_is(s, exp + 5, SCHEDULER_JOB_EXPIRE, "N", "", 1));
	/* The destination's dead state outlives its items. */
	CHECK_INT(dead_until(s, "dead.example"), exp + 250);
	scheduler_free(s);
}

TEST(lifetime_on_add_and_never_delivered)
{
	struct scheduler *s = mk(batch2);
	uint64_t now = T0 + 6 * DAY;
	/* Found at start-up already past its lifetime: expired before anything else. */
	for (uint32_t i = 0; i < 3; i++)
		CHECK_INT(add(s, "OLD", i, "example.com", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "NEW", 0, "example.com", now, now), SCHEDULER_OK);
	CHECK(next_is(s, now, SCHEDULER_JOB_EXPIRE, "OLD", "", 2)); /* batch_max 2 */
	CHECK(next_is(s, now, SCHEDULER_JOB_EXPIRE, "OLD", "", 1));
	CHECK(next_is(s, now, SCHEDULER_JOB_DELIVER, "NEW", "example.com", 1));
	/* next_dest does not hand out an expired message either. */
	CHECK_INT(add(s, "OLD2", 0, "example.com", T0, T0), SCHEDULER_OK);
	CHECK_INT(scheduler_next_dest(s, "example.com", now, &job), 0);
	CHECK(next_is(s, now, SCHEDULER_JOB_EXPIRE, "OLD2", "", 1));
	scheduler_free(s);
}

/* ---- delay warning ---- */

TEST(delay_warning_once)
{
	struct scheduler *s = mk(NULL);
	uint64_t warn = T0 + 4 * 3600;
	CHECK_INT(add(s, "M", 0, "dead.example", T0, warn + 1000), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 1, "other.example", T0, warn + 2000), SCHEDULER_OK);
	CHECK_INT(add4(s, "M", 2, "third.example", T0, warn + 2000, 0, 1), SCHEDULER_OK);
	CHECK_INT(add(s, "N", 0, "dead.example", T0 + 100, warn + 3000), SCHEDULER_OK);
	CHECK_INT(scheduler_next_wakeup(s), warn);
	CHECK_INT(scheduler_next(s, warn - 1, &job), 0);
	CHECK(next_is(s, warn, SCHEDULER_JOB_DELAY, "M", "", 2)); /* M 2 was warned already */
	CHECK_INT(scheduler_next(s, warn, &job), 0);
	CHECK_INT(scheduler_next_wakeup(s), warn + 100);
	struct scheduler_item_info ii;
	CHECK_INT(scheduler_lookup(s, "M", 0, &ii), 0);
	CHECK_INT(ii.warned, 1);
	CHECK(next_is(s, warn + 100, SCHEDULER_JOB_DELAY, "N", "", 1));
	/* Never again, through deferrals too. */
	CHECK(next_is(s, warn + 1000, SCHEDULER_JOB_DELIVER, "M", "dead.example", 1));
	report_all(s, SCHEDULER_DEFER_DEST, warn + 1000);
	CHECK_INT(scheduler_next_wakeup(s), warn + 1300);
	for (uint64_t t = warn + 1000; t < warn + 5000; t += 500)
		while (scheduler_next(s, t, &job) == 1) {
			CHECK_INT(job.kind, SCHEDULER_JOB_DELIVER);
			report_all(s, SCHEDULER_DEFER_RCPT, t);
		}
	scheduler_free(s);
}

TEST(delay_warning_in_flight)
{
	struct scheduler *s = mk(NULL);
	uint64_t warn = T0 + 4 * 3600;
	CHECK_INT(add(s, "M", 0, "example.com", T0, warn - 5), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 1, "example.com", T0, warn - 5), SCHEDULER_OK);
	CHECK(next_is(s, warn - 5, SCHEDULER_JOB_DELIVER, "M", "example.com", 2));
	/* In flight at the warning time: nothing yet. */
	CHECK_INT(scheduler_next(s, warn + 10, &job), 0);
	CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DELIVERED, warn + 20, NULL), 0);
	CHECK_INT(scheduler_result(s, "M", 1, SCHEDULER_DEFER_RCPT, warn + 20, NULL), 0);
	/* The delivered one is never warned; the deferred one is, once. */
	CHECK_INT(scheduler_next_wakeup(s), warn);
	CHECK(next_is(s, warn + 20, SCHEDULER_JOB_DELAY, "M", "", 1));
	CHECK_INT(job.rcpts[0].rcpt, 1);
	CHECK_INT(scheduler_next_wakeup(s), warn + 320);
	/* One recipient in flight, one queued: only the queued one is warned now. */
	CHECK_INT(add(s, "N", 0, "n0.example", T0 + 1, T0 + 1), SCHEDULER_OK);
	CHECK_INT(add(s, "N", 1, "n1.example", T0 + 1, warn + 5000), SCHEDULER_OK);
	CHECK(next_is(s, warn, SCHEDULER_JOB_DELIVER, "N", "n0.example", 1));
	CHECK(next_is(s, warn + 30, SCHEDULER_JOB_DELAY, "N", "", 1));
	CHECK_INT(job.rcpts[0].rcpt, 1);
	scheduler_free(s);
}

static void no_warning(struct scheduler_conf *c)
{
	c->delay_warning = 0;
}
static void warning_after_lifetime(struct scheduler_conf *c)
{
	c->delay_warning = c->lifetime;
}

TEST(delay_warning_off)
{
	void (*const confs[])(struct scheduler_conf *) = {no_warning, warning_after_lifetime};
	for (size_t i = 0; i < 2; i++) {
		struct scheduler *s = mk(confs[i]);
		CHECK_INT(add(s, "M", 0, "example.com", T0, T0 + 10 * DAY), SCHEDULER_OK);
		CHECK_INT(scheduler_next_wakeup(s), T0 + 5 * DAY);
		CHECK(next_is(s, T0 + 5 * DAY, SCHEDULER_JOB_EXPIRE, "M", "", 1));
		scheduler_free(s);
	}
}

TEST(many_warned_and_unwarned)
{
	/* Warned and unwarned items of one message, added in any order, in several batches. */
	struct scheduler *s = mk(batch2);
	uint64_t warn = T0 + 4 * 3600;
	for (uint32_t i = 0; i < 7; i++)
		CHECK_INT(add4(s, "M", i, "example.com", T0, T0 + DAY, 0, (int)(i % 2)),
		          SCHEDULER_OK);
	uint32_t got = 0;
	for (int n = 0; n < 2; n++) {
		CHECK(next_is(s, warn, SCHEDULER_JOB_DELAY, "M", "", 2));
		for (size_t k = 0; k < job.n; k++)
			got |= 1u << job.rcpts[k].rcpt;
	}
	CHECK_INT(got, 0x55); /* 0, 2, 4, 6: the unwarned ones, each once */
	CHECK_INT(scheduler_next(s, warn, &job), 0);
	scheduler_free(s);
}

/* ---- flush and remove ---- */

TEST(flush_one_and_all)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "A", 0, "dead.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "A", 1, "slow.example", T0, T0 + 3000), SCHEDULER_OK);
	CHECK_INT(add(s, "B", 0, "dead.example", T0, T0 + 100), SCHEDULER_OK);
	CHECK_INT(add(s, "C", 0, "other.example", T0, T0 + 3000), SCHEDULER_OK);
	CHECK_INT(add(s, "D", 0, "inflight.example", T0, T0), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "A", "dead.example", 1));
	report_all(s, SCHEDULER_DEFER_DEST, T0);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "D", "inflight.example", 1));
	CHECK_INT(scheduler_next(s, T0 + 200, &job), 0);
	/* flush A: its two items; its dead destination is tried now (a probe: one job). */
	CHECK_INT(scheduler_flush(s, "A", T0 + 200), 1); /* A 0 was due already */
	CHECK_INT(dead_until(s, "dead.example"), T0 + 200);
	CHECK_INT(failures(s, "dead.example"), 1);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 200);
	int a0 = 0, a1 = 0;
	while (scheduler_next(s, T0 + 200, &job) == 1) {
		CHECK_STR(job.msg_id, "A");
		a0 += strcmp(job.dest, "dead.example") == 0;
		a1 += strcmp(job.dest, "slow.example") == 0;
	}
	CHECK_INT(a0, 1);
	CHECK_INT(a1, 1);
	report_all(s, SCHEDULER_DEFER_DEST, T0 + 201); /* the last job: slow.example */
	CHECK_INT(scheduler_result(s, "A", 0, SCHEDULER_DEFER_DEST, T0 + 201, NULL), 0);
	CHECK_INT(dead_until(s, "dead.example"), T0 + 801); /* backs off from where it was */
	/* flush all: C, B, both A, not D (in flight). */
	CHECK_INT(scheduler_flush(s, NULL, T0 + 300), 1); /* C; both A and B are due already */
	CHECK_INT(dead_until(s, "dead.example"), T0 + 300);
	CHECK_INT(dead_until(s, "slow.example"), T0 + 300);
	int n = 0;
	while (scheduler_next(s, T0 + 300, &job) == 1)
		n++;
	CHECK_INT(n, 3); /* dead.example (one probe), slow.example (one probe), other.example */
	struct scheduler_item_info ii;
	CHECK_INT(scheduler_lookup(s, "D", 0, &ii), 0);
	CHECK_INT(ii.in_flight, 1);
	scheduler_free(s);
}

TEST(flush_forgets_grave)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "A", 0, "dead.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(scheduler_next(s, T0, &job), 1);
	report_all(s, SCHEDULER_DEFER_DEST, T0);
	CHECK_INT(scheduler_remove(s, "A"), 1);
	CHECK_INT(scheduler_flush(s, NULL, T0 + 1), 0);
	CHECK_INT(scheduler_dest_lookup(s, "dead.example", &(struct scheduler_dest_info){0}), -1);
	CHECK_INT(add(s, "B", 0, "dead.example", T0, T0), SCHEDULER_OK);
	CHECK(next_is(s, T0 + 1, SCHEDULER_JOB_DELIVER, "B", "dead.example", 1));
	scheduler_free(s);
}

TEST(remove_message)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "M", 0, "a.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 1, "b.example", T0, T0 + 50), SCHEDULER_OK);
	CHECK_INT(add(s, "M", 2, "b.example", T0, T0 + 60), SCHEDULER_OK);
	CHECK_INT(add(s, "N", 0, "b.example", T0, T0 + 70), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "M", "a.example", 1));
	CHECK_INT(scheduler_remove(s, "M"), 3);
	CHECK_INT(scheduler_lookup(s, "M", 1, &(struct scheduler_item_info){0}), -1);
	CHECK_INT(scheduler_lookup(s, "M", 0, &(struct scheduler_item_info){0}), -1);
	CHECK_INT(scheduler_count(s), 2); /* N 0, and M 0 until its result */
	CHECK_INT(scheduler_next_wakeup(s), T0 + 70);
	/* The one in flight: its result is accepted and it is dropped, even if deferred. */
	uint64_t nt = 9;
	CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DEFER_RCPT, T0 + 1, &nt), 0);
	CHECK_INT(nt, 0);
	CHECK_INT(scheduler_count(s), 1);
	CHECK_INT(scheduler_dest_lookup(s, "a.example", &(struct scheduler_dest_info){0}), -1);
	CHECK(next_is(s, T0 + 70, SCHEDULER_JOB_DELIVER, "N", "b.example", 1));
	CHECK_INT(scheduler_next(s, T0 + 1000, &job), 0);
	/* The id is free again. */
	CHECK_INT(add(s, "M", 0, "a.example", T0, T0), SCHEDULER_OK);
	scheduler_free(s);
}

static void global1(struct scheduler_conf *c)
{
	c->global_concurrency = 1;
}

TEST(remove_while_in_the_ring)
{
	struct scheduler *s = mk(global1);
	CHECK_INT(add(s, "A", 0, "a.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "B", 0, "b.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "C", 0, "c.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "D", 0, "d.example", T0, T0), SCHEDULER_OK);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "A", "a.example", 1));
	/* b, c and d wait their turn; c leaves from the middle, d from the end. */
	CHECK_INT(scheduler_remove(s, "C"), 1);
	CHECK_INT(scheduler_remove(s, "D"), 1);
	CHECK_INT(scheduler_result(s, "A", 0, SCHEDULER_DELIVERED, T0, NULL), 0);
	CHECK(next_is(s, T0, SCHEDULER_JOB_DELIVER, "B", "b.example", 1));
	CHECK_INT(scheduler_result(s, "B", 0, SCHEDULER_DELIVERED, T0, NULL), 0);
	CHECK_INT(scheduler_next(s, T0, &job), 0);
	CHECK_INT(scheduler_count(s), 0);
	CHECK_INT(scheduler_next_wakeup(s), SCHEDULER_NEVER);
	scheduler_free(s);
}

TEST(remove_in_flight_dest_failure_counts)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(add(s, "M", 0, "a.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "N", 0, "a.example", T0, T0 + 10), SCHEDULER_OK);
	CHECK_INT(scheduler_next(s, T0, &job), 1);
	CHECK_INT(scheduler_remove(s, "M"), 1);
	CHECK_INT(add(s, "M", 0, "a.example", T0, T0), SCHEDULER_EDUP); /* still in flight */
	CHECK_INT(scheduler_result(s, "M", 0, SCHEDULER_DEFER_DEST, T0 + 1, NULL), 0);
	/* What the connection learnt about the peer still counts. */
	CHECK_INT(dead_until(s, "a.example"), T0 + 301);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 301);
	scheduler_free(s);
}

/* ---- connection reuse ---- */

TEST(next_dest_reuses_connection)
{
	struct scheduler *s = mk(limits); /* 2 per destination */
	CHECK_INT(add(s, "A", 0, "x.example", T0, T0), SCHEDULER_OK);
	CHECK_INT(add(s, "B", 0, "x.example", T0, T0 + 5), SCHEDULER_OK);
	CHECK_INT(add(s, "C", 0, "x.example", T0, T0 + 100), SCHEDULER_OK);
	CHECK_INT(add(s, "D", 0, "y.example", T0, T0), SCHEDULER_OK);
	CHECK(next_is(s, T0 + 10, SCHEDULER_JOB_DELIVER, "A", "x.example", 1));
	report_all(s, SCHEDULER_DELIVERED, T0 + 10);
	CHECK_INT(scheduler_next_dest(s, "X.example", T0 + 10, &job), 1);
	CHECK_STR(job.msg_id, "B");
	CHECK_INT(scheduler_next_dest(s, "x.example", T0 + 10, &job), 0); /* C not due */
	CHECK_INT(scheduler_next_dest(s, "unknown.example", T0 + 10, &job), 0);
	CHECK(next_is(s, T0 + 10, SCHEDULER_JOB_DELIVER, "D", "y.example", 1));
	CHECK_INT(scheduler_next(s, T0 + 10, &job), 0);
	scheduler_free(s);
}

/* ---- wake-up ---- */

TEST(next_wakeup_exact)
{
	struct scheduler *s = mk(NULL);
	CHECK_INT(scheduler_next_wakeup(s), SCHEDULER_NEVER);
	CHECK_INT(add4(s, "A", 0, "a.example", T0, T0 + 500, 0, 1), SCHEDULER_OK);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 500);
	CHECK_INT(add(s, "B", 0, "b.example", T0 - 4 * 3600 + 100, T0 + 800), SCHEDULER_OK);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 100); /* B's delay warning */
	CHECK(next_is(s, T0 + 100, SCHEDULER_JOB_DELAY, "B", "", 1));
	CHECK_INT(scheduler_next_wakeup(s), T0 + 500);
	CHECK_INT(add4(s, "C", 0, "a.example", T0, T0 + 200, 0, 1), SCHEDULER_OK);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 200);
	CHECK(next_is(s, T0 + 200, SCHEDULER_JOB_DELIVER, "C", "a.example", 1));
	CHECK_INT(scheduler_next_wakeup(s), T0 + 500);
	report_all(s, SCHEDULER_DEFER_DEST, T0 + 210); /* a.example dead until T0 + 510 */
	CHECK_INT(scheduler_next_wakeup(s), T0 + 510);
	CHECK_INT(scheduler_next(s, T0 + 509, &job), 0);
	/* The probe: C, due since its deferral at T0 + 210, before A (T0 + 500). */
	CHECK(next_is(s, T0 + 510, SCHEDULER_JOB_DELIVER, "C", "a.example", 1));
	CHECK_INT(scheduler_next_wakeup(s), T0 + 800);
	CHECK_INT(scheduler_remove(s, "B"), 1);
	/* A waits behind the probe, which only a result ends: the expiries are left. */
	CHECK_INT(scheduler_next_wakeup(s), T0 + 5 * DAY);
	CHECK_INT(scheduler_result(s, "C", 0, SCHEDULER_DELIVERED, T0 + 520, NULL), 0);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 500);
	CHECK(next_is(s, T0 + 520, SCHEDULER_JOB_DELIVER, "A", "a.example", 1));
	CHECK_INT(scheduler_next_wakeup(s), SCHEDULER_NEVER);
	/* A job ready but not taken yet: the latest now given. */
	CHECK_INT(add4(s, "D", 0, "d.example", T0, T0 + 530, 0, 1), SCHEDULER_OK);
	CHECK_INT(add4(s, "E", 0, "e.example", T0, T0 + 530, 0, 1), SCHEDULER_OK);
	CHECK_INT(scheduler_next(s, T0 + 540, &job), 1);
	CHECK_INT(scheduler_next_wakeup(s), T0 + 540);
	scheduler_free(s);
}

/* ---- 100,000 items ---- */

static uint64_t rng_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void big(struct scheduler_conf *c)
{
	c->dest_concurrency = 100000;
	c->global_concurrency = 100000;
	c->max_items = 200000;
}

TEST(hundred_thousand_one_dest)
{
	struct scheduler *s = mk(big);
	enum { N = 100000 };
	uint64_t *due = malloc(N * sizeof *due);
	if (!CHECK(s && due)) {
		free(due);
		scheduler_free(s);
		return;
	}
	uint64_t x = 88172645463325252ULL;
	char id[16];
	for (int i = 0; i < N; i++) {
		due[i] = T0 + rng_next(&x) % 10000;
		snprintf(id, sizeof id, "Q%06d", i);
		if (add(s, id, 0, "one.example", T0, due[i]) != SCHEDULER_OK)
			break;
	}
	if (!CHECK_INT(scheduler_count(s), N)) {
		free(due);
		scheduler_free(s);
		return;
	}
	/* Out in (due, arrival in the schedule) order, each once, none before its time. */
	uint64_t last_due = 0;
	int last_i = -1, bad = 0, n = 0;
	for (uint64_t now = T0; now < T0 + 10000; now += 997)
		while (scheduler_next(s, now, &job) == 1) {
			int i = atoi(job.msg_id + 1);
			bad += job.n != 1 || due[i] > now || due[i] < last_due ||
			       (due[i] == last_due && i < last_i);
			last_due = due[i];
			last_i = i;
			n++;
			bad += report_quiet(s, SCHEDULER_DELIVERED, now);
		}
	while (scheduler_next(s, T0 + 10000, &job) == 1) {
		int i = atoi(job.msg_id + 1);
		bad += due[i] < last_due || (due[i] == last_due && i < last_i);
		last_due = due[i];
		last_i = i;
		n++;
		bad += report_quiet(s, SCHEDULER_DELIVERED, T0 + 10000);
	}
	CHECK_INT(bad, 0);
	CHECK_INT(n, N);
	CHECK_INT(scheduler_count(s), 0);
	CHECK_INT(scheduler_next_wakeup(s), SCHEDULER_NEVER);
	free(due);
	scheduler_free(s);
}

TEST(hundred_thousand_many_dests)
{
	struct scheduler *s = mk(big);
	enum { N = 100000, DESTS = 1000 };
	uint64_t *last = calloc(DESTS, sizeof *last), *due = calloc(N, sizeof *due);
	unsigned char *seen = calloc(N, 1);
	int k = 0, msgs = 0, bad = 0, n = 0, jobs = 0;
	if (!CHECK(s && last && seen && due))
		goto out;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	char id[16], dest[32];
	/* Messages of 1 to 4 recipients, on a skewed spread of destinations. */
	for (; k < N; msgs++) {
		snprintf(id, sizeof id, "M%06d", msgs);
		due[msgs] = T0 + rng_next(&x) % 5000;
		for (int r = 0, nr = 1 + (int)(rng_next(&x) % 4); r < nr && k < N; r++, k++) {
			uint64_t d = rng_next(&x) % DESTS;
			d = d * d / DESTS; /* many items for few destinations */
			snprintf(dest, sizeof dest, "d%03u.example", (unsigned)d);
			if (add(s, id, (uint32_t)k, dest, T0, due[msgs]) != SCHEDULER_OK)
				goto out;
		}
	}
	for (uint64_t now = T0; n < N && now <= T0 + 5000; now += 250)
		while (scheduler_next(s, now, &job) == 1) {
			unsigned d = (unsigned)atoi(job.dest + 1);
			int m = atoi(job.msg_id + 1);
			struct scheduler_item_info ii;
			for (size_t i = 0; i < job.n; i++) {
				uint32_t r = job.rcpts[i].rcpt;
				bad += r >= N || seen[r];
				if (r < N)
					seen[r] = 1;
				bad += scheduler_lookup(s, job.msg_id, r, &ii) != 0 ||
				       !ii.in_flight;
			}
			/* Due, and within a destination oldest due first. */
			bad += d >= DESTS || m >= msgs || due[m] > now || due[m] < last[d];
			if (d < DESTS && m < msgs)
				last[d] = due[m];
			n += (int)job.n;
			jobs++;
			bad += report_quiet(s, SCHEDULER_DELIVERED, now);
		}
	CHECK_INT(bad, 0);
	CHECK_INT(n, N);
	CHECK(jobs >= msgs && jobs < N); /* batches: fewer jobs than recipients */
	CHECK_INT(scheduler_count(s), 0);
out:
	CHECK_INT(k, N);
	free(last);
	free(due);
	free(seen);
	scheduler_free(s);
}

/* ---- out of memory: a failed add leaves nothing behind ---- */

#if defined(__SANITIZE_ADDRESS__)
TEST(out_of_memory)
{
	SKIP("RLIMIT_AS cannot be used under AddressSanitizer");
}
#else
/* Adds under an address-space limit; returns the ENOMEM count, *ok the successes. */
static int add_until_full(struct scheduler *s, size_t *ok, int *bad)
{
	char id[16], dest[32];
	int nomem = 0;
	struct scheduler_item_info ii;
	for (int i = 0; nomem < 400 && i < 5000000; i++) {
		int m = (i % 4 == 1 || i % 4 == 2) ? i - 1 : i; /* new or the previous message */
		snprintf(id, sizeof id, "O%07d", m);
		if (i % 4 < 2)
			snprintf(dest, sizeof dest, "n%07d.example", i); /* a new destination */
		else
			strcpy(dest, "common.example");
		int rc = add(s, id, (uint32_t)i, dest, T0, T0);
		if (rc == SCHEDULER_OK) {
			++*ok;
			continue;
		}
		*bad += rc != SCHEDULER_ENOMEM || scheduler_lookup(s, id, (uint32_t)i, &ii) == 0 ||
		        scheduler_count(s) != *ok;
		if (i % 4 < 2)
			*bad += scheduler_dest_lookup(s, dest, &(struct scheduler_dest_info){0}) ==
			        0;
		nomem++;
	}
	return nomem;
}

TEST(out_of_memory)
{
	struct rlimit old, lim;
	long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!CHECK(f != NULL && fscanf(f, "%ld", &pages) == 1 && getrlimit(RLIMIT_AS, &old) == 0)) {
		if (f)
			fclose(f);
		return;
	}
	fclose(f);
	struct scheduler *s = mk(big);
	size_t ok = 0;
	int bad = 0;
	lim = old;
	lim.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + 48 * 1024 * 1024;
	if (!CHECK(s != NULL && setrlimit(RLIMIT_AS, &lim) == 0)) {
		scheduler_free(s);
		return;
	}
	int nomem = add_until_full(s, &ok, &bad);
	setrlimit(RLIMIT_AS, &old);
	CHECK(nomem > 0);
	CHECK_INT(bad, 0);
	CHECK_INT(scheduler_count(s), ok);
	/* Whatever was added is whole: everything comes out and leaves. */
	size_t n = 0;
	while (scheduler_next(s, T0, &job) == 1) {
		n += job.n;
		bad += report_quiet(s, SCHEDULER_DELIVERED, T0);
	}
	CHECK_INT(bad, 0);
	CHECK_INT(n, ok);
	CHECK_INT(scheduler_count(s), 0);
	scheduler_free(s);
}
#endif

/* ---- random operations: the limits hold, wake-ups are right, nothing is lost ---- */

static void tight(struct scheduler_conf *c)
{
	c->dest_concurrency = 3;
	c->local_concurrency = 2;
	c->global_concurrency = 6;
	c->batch_max = 3;
	c->lifetime = 20000;
	c->delay_warning = 5000;
	c->retry_initial = 60;
	c->retry_max = 900;
}

struct inflight {
	char id[SCHEDULER_ID_MAX + 1];
	uint32_t rcpt;
};

static int limits_hold(struct scheduler *s)
{
	struct scheduler_dest_info di;
	char dest[16];
	uint32_t total = 0;
	int bad = 0;
	for (unsigned d = 0; d < 7; d++) {
		snprintf(dest, sizeof dest, "d%u", d);
		if (scheduler_dest_lookup(s, dest, &di) == 0) {
			bad += di.in_flight > 3;
			total += di.in_flight;
		}
	}
	if (scheduler_dest_lookup(s, SCHEDULER_DEST_LOCAL, &di) == 0) {
		bad += di.in_flight > 2;
		total += di.in_flight;
	}
	return bad + (total > 6);
}

TEST(random_operations)
{
	enum { MSGS = 400, MAXF = 6 * 3 };
	struct scheduler *s = mk(tight);
	struct inflight fl[MAXF];
	size_t nfl = 0, added = 0;
	uint64_t x = 12345, now = T0;
	int bad = 0;
	char id[8], dest[16];
	for (int step = 0; step < 20000; step++) {
		uint64_t r = rng_next(&x) % 100;
		if (r < 10 && added < MSGS * 3) {
			snprintf(id, sizeof id, "m%03u", (unsigned)(added / 3));
			snprintf(dest, sizeof dest, "d%u", (unsigned)(rng_next(&x) % 7));
			if (rng_next(&x) % 5 == 0)
				strcpy(dest, SCHEDULER_DEST_LOCAL);
			int rc = add(s, id, (uint32_t)(added % 3), dest, T0 + added / 3 * 30, now);
			bad += rc != SCHEDULER_OK &&
			       rc != SCHEDULER_EDUP; /* EDUP: removed, in flight */
			added++;
		} else if (r < 60 && nfl > 0) {
			size_t i = rng_next(&x) % nfl;
			enum scheduler_outcome o = (enum scheduler_outcome)(1 + rng_next(&x) % 4);
			bad += scheduler_result(s, fl[i].id, fl[i].rcpt, o, now, NULL) != 0;
			fl[i] = fl[--nfl];
		} else if (r < 62) {
			snprintf(id, sizeof id, "m%03u", (unsigned)(rng_next(&x) % MSGS));
			scheduler_remove(s, id);
		} else if (r < 63) {
			scheduler_flush(s, rng_next(&x) % 2 ? NULL : "m001", now);
		} else {
			now += rng_next(&x) % 40;
			while (scheduler_next(s, now, &job) == 1) {
				bad += job.n == 0 || job.n > 3;
				if (job.kind != SCHEDULER_JOB_DELIVER)
					continue;
				for (size_t i = 0; i < job.n; i++, nfl++) {
					bad += nfl >= MAXF;
					if (nfl >= MAXF)
						break;
					snprintf(fl[nfl].id, sizeof fl[nfl].id, "%s", job.msg_id);
					fl[nfl].rcpt = job.rcpts[i].rcpt;
				}
			}
			bad += limits_hold(s);
			/* Nothing to do now: the wake-up is in the future. */
			bad += scheduler_next_wakeup(s) <= now;
		}
	}
	/* Report what is in flight and run the clock out: everything leaves. */
	for (size_t i = 0; i < nfl; i++)
		bad += scheduler_result(s, fl[i].id, fl[i].rcpt, SCHEDULER_DELIVERED, now, NULL) !=
		       0;
	now += 30000;
	while (scheduler_next(s, now, &job) == 1)
		bad += job.kind != SCHEDULER_JOB_EXPIRE;
	CHECK_INT(bad, 0);
	CHECK(added == MSGS * 3);
	CHECK_INT(scheduler_count(s), 0);
	CHECK_INT(scheduler_next_wakeup(s), SCHEDULER_NEVER);
	scheduler_free(s);
}

TEST_MAIN(T(conf_checked), T(add_hostile), T(add_duplicate), T(dest_case_folded), T(max_items),
          T(result_hostile), T(extreme_times), T(due_order), T(batch_per_message_and_dest),
          T(batch_max_splits), T(dest_concurrency), T(a_domain_named_local_is_a_relay_destination),
          T(global_concurrency), T(fairness), T(dest_backoff_doubles_and_caps),
          T(dead_dest_does_not_delay_others), T(success_resets), T(any_answer_revives),
          T(one_outage_counts_once), T(rcpt_deferral_is_its_own),
          T(rcpt_backoff_goes_on_after_restart), T(probe_after_dead),
          T(dead_while_waiting_its_turn), T(grave_remembers_dead), T(lifetime_exact),
          T(lifetime_dead_dest), T(lifetime_on_add_and_never_delivered), T(delay_warning_once),
          T(delay_warning_in_flight), T(delay_warning_off), T(many_warned_and_unwarned),
          T(flush_one_and_all), T(flush_forgets_grave), T(remove_message),
          T(remove_while_in_the_ring), T(remove_in_flight_dest_failure_counts),
          T(next_dest_reuses_connection), T(next_wakeup_exact), T(hundred_thousand_one_dest),
          T(hundred_thousand_many_dests), T(out_of_memory), T(random_operations))
