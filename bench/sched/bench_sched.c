/*
 * bench_sched: the cost of the delivery scheduler (src/deliver/scheduler.c) with
 * a large schedule, against a reference measured in the same run: the same
 * number of push and pop operations on a plain binary heap of integers (the
 * least any ordered schedule must do). Only the ratios travel between machines.
 *
 *   bench_sched [-n ITEMS] [-d DESTINATIONS] [-r ROUNDS]
 *
 * Figures (best of ROUNDS, default 3):
 *   load    scheduler_add of ITEMS recipients (messages of 1 to 4 recipients,
 *           DESTINATIONS destinations, skewed so a few have most items)
 *   drain   scheduler_next + scheduler_result(DELIVERED) until empty
 *   heap    ITEMS pushes then ITEMS pops of random uint64_t on a binary heap
 *   commit  the commit cycle of one local message (add, next, result) with an
 *           empty schedule, and with ITEMS recipients deferred behind a dead
 *           destination: the cost must not grow with the queue (ratio ~ 1)
 *   memory  heap octets per item held (mallinfo2 before and after the load, and
 *           for the backlog of one-recipient messages)
 *
 * Exit status 0, or 1 if the scheduler misbehaved (an item lost or repeated).
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deliver/scheduler.h"

#define T0 1700000000ULL

static struct scheduler_job job;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static struct scheduler *sched_make(void)
{
	struct scheduler_conf c;
	scheduler_conf_defaults(&c);
	c.dest_concurrency = SCHEDULER_CONCURRENCY_MAX;
	c.local_concurrency = SCHEDULER_CONCURRENCY_MAX;
	c.global_concurrency = SCHEDULER_CONCURRENCY_MAX;
	c.max_items = 10000000;
	c.hash_key[0] = 0x0123456789abcdefULL;
	c.hash_key[1] = 0xfedcba9876543210ULL;
	return scheduler_new(&c);
}

/* Adds n recipients; returns 0 or -1. */
static int load(struct scheduler *s, int n, int dests, const char *prefix)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	char id[SCHEDULER_ID_MAX + 1], dest[32];
	for (int k = 0, m = 0; k < n; m++) {
		snprintf(id, sizeof id, "%s%07d", prefix, m);
		uint64_t due = T0 + rng(&x) % 3600;
		for (int r = 0, nr = 1 + (int)(rng(&x) % 4); r < nr && k < n; r++, k++) {
			uint64_t d = rng(&x) % (uint64_t)dests;
			snprintf(dest, sizeof dest, "d%05u.example",
			         (unsigned)(d * d / (uint64_t)dests));
			struct scheduler_entry e = {id, (uint32_t)r, dest, T0, due, 0, 0};
			if (scheduler_add(s, &e) != SCHEDULER_OK)
				return -1;
		}
	}
	return 0;
}

/* Takes and reports every job at a time after every due time; returns the items seen. */
static long drain(struct scheduler *s)
{
	long n = 0;
	while (scheduler_next(s, T0 + 3600, &job) == 1) {
		for (size_t i = 0; i < job.n; i++)
			if (scheduler_result(s, job.msg_id, job.rcpts[i].rcpt, SCHEDULER_DELIVERED,
			                     T0 + 3600, NULL) != 0)
				return -1;
		n += (long)job.n;
	}
	return n;
}

/* ---- the reference: a plain binary min-heap of uint64_t ---- */

static void iheap_push(uint64_t *h, size_t *n, uint64_t v)
{
	size_t i = (*n)++;
	while (i > 0 && v < h[(i - 1) / 2]) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = v;
}

static uint64_t iheap_pop(uint64_t *h, size_t *n)
{
	uint64_t top = h[0], v = h[--*n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (h[c] >= v)
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = v;
	return top;
}

/* Seconds for n pushes and n pops; *check gets a sum so nothing is optimised away. */
static double heap_round(int n, uint64_t *check)
{
	uint64_t *h = malloc((size_t)n * sizeof *h), x = 88172645463325252ULL, last = 0;
	size_t len = 0;
	if (h == NULL)
		return -1;
	double t = now_s();
	for (int i = 0; i < n; i++)
		iheap_push(h, &len, rng(&x) % 3600);
	for (int i = 0; i < n; i++) {
		uint64_t v = iheap_pop(h, &len);
		*check += v < last; /* must stay 0: popped in order */
		last = v;
	}
	t = now_s() - t;
	free(h);
	return t;
}

/* ---- the commit cycle ---- */

/* Seconds for `cycles` local commits (add, next, result) in s. */
static double commit_round(struct scheduler *s, int cycles, int *bad)
{
	char id[SCHEDULER_ID_MAX + 1];
	double t = now_s();
	for (int i = 0; i < cycles; i++) {
		snprintf(id, sizeof id, "L%07d", i);
		struct scheduler_entry e = {id, 0, SCHEDULER_DEST_LOCAL, T0, T0, 0, 0};
		*bad += scheduler_add(s, &e) != SCHEDULER_OK;
		*bad += scheduler_next(s, T0 + 1, &job) != 1 || strcmp(job.msg_id, id) != 0;
		*bad += scheduler_result(s, id, 0, SCHEDULER_DELIVERED, T0 + 1, NULL) != 0;
	}
	return now_s() - t;
}

/* A schedule holding n items behind a dead destination (one failure: dead for 300 s). */
static struct scheduler *dead_backlog(int n, int *bad)
{
	struct scheduler *s = sched_make();
	char id[SCHEDULER_ID_MAX + 1];
	if (s == NULL)
		return NULL;
	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof id, "D%07d", i);
		struct scheduler_entry e = {id, 0, "dead.example", T0, T0, 0, 0};
		*bad += scheduler_add(s, &e) != SCHEDULER_OK;
	}
	*bad += scheduler_next(s, T0, &job) != 1;
	*bad += scheduler_result(s, job.msg_id, job.rcpts[0].rcpt, SCHEDULER_DEFER_DEST, T0,
	                         NULL) != 0;
	*bad += scheduler_next(s, T0 + 1, &job) != 0; /* the dead destination's items wait */
	return s;
}

static double best(double a, double b)
{
	return a < 0 || (b >= 0 && b < a) ? b : a;
}

int main(int argc, char **argv)
{
	int n = 100000, dests = 1000, rounds = 3, opt, bad = 0;
	while ((opt = getopt(argc, argv, "n:d:r:")) != -1) {
		if (opt == 'n')
			n = atoi(optarg);
		else if (opt == 'd')
			dests = atoi(optarg);
		else if (opt == 'r')
			rounds = atoi(optarg);
		else
			return fprintf(stderr,
			               "usage: bench_sched [-n ITEMS] [-d DESTS] [-r ROUNDS]\n"),
			       2;
	}
	if (n < 1 || n > 5000000 || dests < 1 || dests > 99999 || rounds < 1)
		return fprintf(stderr, "bench_sched: out of range\n"), 2;
	double t_load = -1, t_drain = -1, t_heap = -1, t_empty = -1, t_full = -1, per_item = 0,
	       per_single = 0;
	uint64_t check = 0;
	int cycles = n / 5 > 1000 ? n / 5 : 1000;
	for (int r = 0; r < rounds; r++) {
		struct scheduler *s = sched_make();
		if (s == NULL)
			return fprintf(stderr, "bench_sched: out of memory\n"), 1;
		size_t before = mallinfo2().uordblks;
		double t = now_s();
		bad += load(s, n, dests, "M") != 0;
		t_load = best(t_load, now_s() - t);
		per_item = (double)(mallinfo2().uordblks - before) / n;
		t = now_s();
		bad += drain(s) != n;
		t_drain = best(t_drain, now_s() - t);
		scheduler_free(s);
		t_heap = best(t_heap, heap_round(n, &check));

		s = sched_make();
		t_empty = best(t_empty, commit_round(s, cycles, &bad));
		scheduler_free(s);
		before = mallinfo2().uordblks;
		s = dead_backlog(n, &bad);
		per_single = (double)(mallinfo2().uordblks - before) / n;
		if (s == NULL)
			return fprintf(stderr, "bench_sched: out of memory\n"), 1;
		t_full = best(t_full, commit_round(s, cycles, &bad));
		scheduler_free(s);
	}
	double load_rate = n / t_load, drain_rate = n / t_drain, heap_rate = n / t_heap;
	printf("sched: %d items, %d destinations, best of %d rounds\n", n, dests, rounds);
	printf("load:   %.0f adds/s\n", load_rate);
	printf("drain:  %.0f items/s (next + result)\n", drain_rate);
	printf("heap:   %.0f push+pop/s (reference: plain binary heap of integers)\n", heap_rate);
	printf("ratio load/heap %.2f, drain/heap %.2f, whole cycle/heap %.2f\n",
	       load_rate / heap_rate, drain_rate / heap_rate, (n / (t_load + t_drain)) / heap_rate);
	printf("commit: %.0f/s empty, %.0f/s with %d deferred behind a dead destination, "
	       "ratio %.2f\n",
	       cycles / t_empty, cycles / t_full, n, t_empty / t_full);
	printf("memory: %.0f octets per item (1 to 4 recipients a message), %.0f (1 a message)\n",
	       per_item, per_single);
	if (bad || check)
		printf("ERROR: %d scheduler errors, %llu heap errors\n", bad,
		       (unsigned long long)check);
	return bad || check ? 1 : 0;
}
