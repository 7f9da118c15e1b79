/*
 * deliver_pool: see deliver_pool.h. Two intrusive FIFO lists under one mutex:
 * the tasks waiting for a worker, and the tasks whose work() ended and whose
 * done() the loop owes. A condition variable wakes idle workers; the notify
 * callback wakes the loop.
 */
#include "deliver/deliver_pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tlist {
	struct deliver_task *head, **tail;
};

struct deliver_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct tlist queued, finished;
	size_t pending; /* submitted, done() not yet run (loop thread's count) */
	int stop;
	void (*notify)(void *arg);
	void *arg;
	unsigned n;
	pthread_t threads[DELIVER_POOL_THREADS_MAX];
};

static void tlist_init(struct tlist *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

static void tlist_push(struct tlist *l, struct deliver_task *t)
{
	t->next = NULL;
	*l->tail = t;
	l->tail = &t->next;
}

static struct deliver_task *tlist_pop(struct tlist *l)
{
	struct deliver_task *t = l->head;
	if (t) {
		l->head = t->next;
		if (!l->head)
			l->tail = &l->head;
	}
	return t;
}

static void *worker_main(void *arg)
{
	struct deliver_pool *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct deliver_task *t = tlist_pop(&p->queued);
		if (!t) {
			if (p->stop)
				break;
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		pthread_mutex_unlock(&p->mu);
		t->work(t);
		pthread_mutex_lock(&p->mu);
		tlist_push(&p->finished, t);
		pthread_mutex_unlock(&p->mu);
		p->notify(p->arg);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct deliver_pool *deliver_pool_new(unsigned n, void (*notify)(void *arg), void *arg, char *err,
                                      size_t errlen)
{
	if (n == 0 || n > DELIVER_POOL_THREADS_MAX || !notify) {
		snprintf(err, errlen, "bad worker count %u", n);
		return NULL;
	}
	struct deliver_pool *p = calloc(1, sizeof *p);
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	tlist_init(&p->queued);
	tlist_init(&p->finished);
	p->notify = notify;
	p->arg = arg;
	for (; p->n < n; p->n++) {
		int e = pthread_create(&p->threads[p->n], NULL, worker_main, p);
		if (e != 0) {
			snprintf(err, errlen, "cannot start a delivery worker: %s", strerror(e));
			deliver_pool_free(p);
			return NULL;
		}
	}
	return p;
}

void deliver_pool_submit(struct deliver_pool *p, struct deliver_task *t)
{
	pthread_mutex_lock(&p->mu);
	tlist_push(&p->queued, t);
	p->pending++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

size_t deliver_pool_complete(struct deliver_pool *p)
{
	pthread_mutex_lock(&p->mu);
	struct tlist l = p->finished;
	tlist_init(&p->finished);
	pthread_mutex_unlock(&p->mu);
	size_t n = 0;
	struct deliver_task *t;
	while ((t = tlist_pop(&l)) != NULL) {
		pthread_mutex_lock(&p->mu);
		p->pending--;
		pthread_mutex_unlock(&p->mu);
		t->done(t); /* may submit more */
		n++;
	}
	return n;
}

size_t deliver_pool_pending(const struct deliver_pool *p)
{
	struct deliver_pool *q = (struct deliver_pool *)p; /* the mutex only */
	pthread_mutex_lock(&q->mu);
	size_t n = q->pending;
	pthread_mutex_unlock(&q->mu);
	return n;
}

void deliver_pool_free(struct deliver_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
