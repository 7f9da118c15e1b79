/*
 * pop3d_work: see pop3d_work.h. Jobs wait in a FIFO under one mutex; finished
 * ones go to a done FIFO, and the first of a batch writes one byte to a
 * non-blocking self-pipe whose read end the base watches.
 */
#include "pop3d/pop3d_work.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct job {
	struct job *next;
	pop3d_work_fn run, done;
	void *arg;
};

struct fifo {
	struct job *head, **tail;
};

struct pop3d_work {
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fifo queued, finished;
	int stop;
	int signalled; /* a byte is in the pipe */
	int pipe_rd, pipe_wr;
	struct event *ev;
};

static void fifo_push(struct fifo *f, struct job *j)
{
	j->next = NULL;
	*f->tail = j;
	f->tail = &j->next;
}

static struct job *fifo_take_all(struct fifo *f)
{
	struct job *j = f->head;
	f->head = NULL;
	f->tail = &f->head;
	return j;
}

static void *worker(void *arg)
{
	struct pop3d_work *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->queued.head && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		struct job *j = w->queued.head;
		if (!j)
			break; /* stop, and nothing left to run */
		w->queued.head = j->next;
		if (!w->queued.head)
			w->queued.tail = &w->queued.head;
		pthread_mutex_unlock(&w->mu);
		j->run(j->arg);
		pthread_mutex_lock(&w->mu);
		fifo_push(&w->finished, j);
		if (!w->signalled) {
			char b = 1;
			w->signalled = 1;
			/* the pipe is empty when signalled is 0: this cannot block or fail */
			while (write(w->pipe_wr, &b, 1) < 0 && errno == EINTR)
				;
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* On the loop: every finished job's done, in order. */
static void on_finished(evutil_socket_t fd, short what, void *arg)
{
	struct pop3d_work *w = arg;
	char buf[64];
	while (read(fd, buf, sizeof buf) > 0)
		;
	pthread_mutex_lock(&w->mu);
	struct job *j = fifo_take_all(&w->finished);
	w->signalled = 0;
	pthread_mutex_unlock(&w->mu);
	while (j) {
		struct job *next = j->next;
		j->done(j->arg);
		free(j);
		j = next;
	}
}

struct pop3d_work *pop3d_work_new(struct event_base *base, char *err, size_t errlen)
{
	struct pop3d_work *w = calloc(1, sizeof *w);
	int fds[2];
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->queued.tail = &w->queued.head;
	w->finished.tail = &w->finished.head;
	w->pipe_rd = w->pipe_wr = -1;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		pop3d_work_free(w);
		return NULL;
	}
	w->pipe_rd = fds[0];
	w->pipe_wr = fds[1];
	w->ev = event_new(base, w->pipe_rd, EV_READ | EV_PERSIST, on_finished, w);
	if (!w->ev || event_add(w->ev, NULL) != 0) {
		snprintf(err, errlen, "cannot watch the worker's pipe");
		pop3d_work_free(w);
		return NULL;
	}
	int e = pthread_create(&w->thread, NULL, worker, w);
	if (e != 0) {
		snprintf(err, errlen, "cannot start the POP3 worker: %s", strerror(e));
		pop3d_work_free(w);
		return NULL;
	}
	w->started = 1;
	return w;
}

int pop3d_work_post(struct pop3d_work *w, pop3d_work_fn run, pop3d_work_fn done, void *arg)
{
	struct job *j = calloc(1, sizeof *j);
	if (!j)
		return -1;
	j->run = run;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->mu);
	fifo_push(&w->queued, j);
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

void pop3d_work_free(struct pop3d_work *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->mu);
		w->stop = 1;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thread, NULL); /* it runs what is queued first */
	}
	for (struct job *j = fifo_take_all(&w->finished); j;) {
		struct job *next = j->next;
		j->done(j->arg);
		free(j);
		j = next;
	}
	if (w->ev)
		event_free(w->ev);
	if (w->pipe_rd >= 0)
		close(w->pipe_rd);
	if (w->pipe_wr >= 0)
		close(w->pipe_wr);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
