/*
 * bgwork: see bgwork.h. A mutex, a condition variable and a FIFO of jobs; the
 * tick is a timed wait, so an idle thread wakes tick_ms apart and never spins.
 */
#include "verify/bgwork.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

struct bg_job {
	struct bg_job *next;
	bgwork_fn fn;
	void *arg;
};

struct bgwork {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* jobs posted, or stop */
	pthread_cond_t done_cv; /* a batch of jobs ran */
	struct bg_job *head, *tail;
	size_t queued;
	uint64_t posted, ran; /* job counts, for bgwork_sync */
	int stop;
	bgwork_fn tick;
	void *tick_arg;
	int tick_ms;
};

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Runs the queued jobs outside the lock (called and returning with it held). */
static void run_jobs(struct bgwork *w)
{
	while (w->head) {
		struct bg_job *j = w->head;
		w->head = j->next;
		if (!w->head)
			w->tail = NULL;
		w->queued--;
		pthread_mutex_unlock(&w->mu);
		j->fn(j->arg);
		free(j);
		pthread_mutex_lock(&w->mu);
		w->ran++;
	}
	pthread_cond_broadcast(&w->done_cv);
}

static void *bg_main(void *arg)
{
	struct bgwork *w = arg;
	struct timespec next;
	deadline_after(&next, w->tick_ms);
	pthread_mutex_lock(&w->mu);
	for (;;) {
		run_jobs(w);
		if (w->stop)
			break;
		int rc = pthread_cond_timedwait(&w->cv, &w->mu, &next);
		if (rc == ETIMEDOUT) {
			if (w->tick) {
				pthread_mutex_unlock(&w->mu);
				w->tick(w->tick_arg);
				pthread_mutex_lock(&w->mu);
			}
			deadline_after(&next, w->tick_ms);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

struct bgwork *bgwork_new(bgwork_fn tick, void *tick_arg, int tick_ms)
{
	struct bgwork *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->tick = tick;
	w->tick_arg = tick_arg;
	w->tick_ms = tick_ms > 0 ? tick_ms : 1000;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, &ca);
	pthread_cond_init(&w->done_cv, NULL);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&w->th, NULL, bg_main, w) != 0) {
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		pthread_cond_destroy(&w->done_cv);
		free(w);
		return NULL;
	}
	return w;
}

void bgwork_free(struct bgwork *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->th, NULL);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	pthread_cond_destroy(&w->done_cv);
	free(w);
}

int bgwork_post(struct bgwork *w, bgwork_fn fn, void *arg)
{
	struct bg_job *j = malloc(sizeof *j);
	if (!j)
		return -1;
	j->next = NULL;
	j->fn = fn;
	j->arg = arg;
	pthread_mutex_lock(&w->mu);
	if (w->queued >= BGWORK_QUEUE_MAX) {
		pthread_mutex_unlock(&w->mu);
		free(j);
		return -1;
	}
	if (w->tail)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	w->queued++;
	w->posted++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

void bgwork_sync(struct bgwork *w)
{
	pthread_mutex_lock(&w->mu);
	uint64_t want = w->posted;
	while (w->ran < want)
		pthread_cond_wait(&w->done_cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}
