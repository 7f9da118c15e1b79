/*
 * test_pop3d_work: the POP3 server's worker thread. A job runs off the loop
 * thread, its done on the loop thread, never inside the post, in the order
 * posted; pop3d_work_free runs what is queued and calls every done left.
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "pop3d/pop3d_work.h"

#define JOBS 50

struct rec {
	pthread_t loop;
	int ran_off_loop, done_on_loop;
	int order[JOBS];
	size_t n_done, want;
	struct event_base *base;
};

struct job {
	struct rec *r;
	int i;
	int ran;
};

static void run(void *arg)
{
	struct job *j = arg;
	j->ran = 1;
	if (!pthread_equal(pthread_self(), j->r->loop))
		j->r->ran_off_loop++;
}

static void done(void *arg)
{
	struct job *j = arg;
	struct rec *r = j->r;
	if (pthread_equal(pthread_self(), r->loop) && j->ran)
		r->done_on_loop++;
	if (r->n_done < JOBS)
		r->order[r->n_done] = j->i;
	if (++r->n_done >= r->want && r->base)
		event_base_loopbreak(r->base);
}

TEST(jobs_in_order_done_on_loop)
{
	struct rec r = {.loop = pthread_self(), .want = JOBS};
	struct job jobs[JOBS];
	char err[128];
	r.base = event_base_new();
	struct pop3d_work *w = pop3d_work_new(r.base, err, sizeof err);
	if (!CHECK(w != NULL))
		return;
	for (int i = 0; i < JOBS; i++) {
		jobs[i] = (struct job){.r = &r, .i = i};
		CHECK_INT(pop3d_work_post(w, run, done, &jobs[i]), 0);
	}
	CHECK_INT(r.n_done, 0); /* never from inside the post */
	struct timeval tv = {30, 0};
	event_base_loopexit(r.base, &tv); /* a bound: a hang fails below */
	event_base_dispatch(r.base);
	CHECK_INT(r.n_done, JOBS);
	CHECK_INT(r.ran_off_loop, JOBS);
	CHECK_INT(r.done_on_loop, JOBS);
	int ordered = 1;
	for (int i = 0; i < JOBS; i++)
		ordered &= r.order[i] == i;
	CHECK(ordered);
	pop3d_work_free(w);
	event_base_free(r.base);
}

TEST(free_finishes_every_job)
{
	struct rec r = {.loop = pthread_self(), .want = JOBS + 1};
	struct job jobs[JOBS];
	char err[128];
	struct event_base *base = event_base_new();
	struct pop3d_work *w = pop3d_work_new(base, err, sizeof err);
	if (!CHECK(w != NULL))
		return;
	for (int i = 0; i < JOBS; i++) {
		jobs[i] = (struct job){.r = &r, .i = i};
		pop3d_work_post(w, run, done, &jobs[i]);
	}
	pop3d_work_free(w); /* no loop ran: every done comes from here */
	CHECK_INT(r.n_done, JOBS);
	CHECK_INT(r.done_on_loop, JOBS);
	pop3d_work_free(NULL);
	event_base_free(base);
}

TEST_MAIN(T(jobs_in_order_done_on_loop), T(free_finishes_every_job))
