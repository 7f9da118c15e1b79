/*
 * deliver_pool: the delivery manager's worker threads. Whatever can take
 * milliseconds (Maildir copies with their fsyncs, queue_update, queue_enqueue,
 * queue_remove, reading an envelope) runs here, never on the delivery loop: the
 * loop submits a task, a worker runs its work() and the loop later runs its
 * done() when it calls deliver_pool_complete() (after the notify callback told
 * it that something finished, from the worker's thread).
 *
 * Tasks run in submission order as workers free up; tasks of one message may
 * run at the same time on different workers (they serialise on the message's
 * own lock, deliver_int.h).
 *
 * Ownership: a task is the caller's (usually embedded in a job) from submit
 * until its done() has run; the pool never allocates per task, so submitting
 * cannot fail.
 */
#ifndef SHAREMAIL_DELIVER_DELIVER_POOL_H
#define SHAREMAIL_DELIVER_DELIVER_POOL_H

#include <stddef.h>

#define DELIVER_POOL_THREADS_MAX 64

struct deliver_task {
	void (*work)(struct deliver_task *t); /* on a worker thread */
	void (*done)(struct deliver_task *t); /* on the loop, in deliver_pool_complete() */
	struct deliver_task *next; /* the pool's */
};

struct deliver_pool;

/*
 * Starts n (1..DELIVER_POOL_THREADS_MAX) workers. notify(arg) is called from a
 * worker each time a task's work() has ended: it must only wake the loop (write
 * an eventfd). Returns NULL with a reason in err.
 */
struct deliver_pool *deliver_pool_new(unsigned n, void (*notify)(void *arg), void *arg, char *err,
                                      size_t errlen);

/* Queues t (its work and done set). Any thread; never fails. */
void deliver_pool_submit(struct deliver_pool *p, struct deliver_task *t);

/* Runs done() of every task whose work() has ended, in the calling thread. Returns how many. */
size_t deliver_pool_complete(struct deliver_pool *p);

/* Tasks submitted whose done() has not run yet. */
size_t deliver_pool_pending(const struct deliver_pool *p);

/*
 * Lets the workers finish every task queued (work() only), joins them and frees
 * the pool (NULL: no-op). done() of tasks not yet completed is not run: call
 * deliver_pool_complete() until deliver_pool_pending() is 0 first.
 */
void deliver_pool_free(struct deliver_pool *p);

#endif
