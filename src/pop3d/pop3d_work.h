/*
 * pop3d_work: one worker thread for the POP3 server's disk work that can take
 * milliseconds (listing a maildrop, UPDATE's unlinks and fsyncs), so no other
 * session waits for it on the event loop (DESIGN.md "Asynchronous requests").
 * A job's run(arg) is called on the worker, then its done(arg) on the loop
 * thread of the given base (a self-pipe the base watches, as
 * directory/password_check.c does), jobs in the order posted.
 *
 * Ownership: arg is the caller's; it must stay valid until done(arg) ran. done
 * runs for every posted job exactly once: at the latest in pop3d_work_free(),
 * which runs what is still queued and then calls the dones not yet called.
 * Threads: post and free on the loop thread; start the worker after the
 * privilege drop (pop3d_server_attach does).
 */
#ifndef SHAREMAIL_POP3D_POP3D_WORK_H
#define SHAREMAIL_POP3D_POP3D_WORK_H

#include <stddef.h>

struct event_base;
struct pop3d_work;

typedef void (*pop3d_work_fn)(void *arg);

/* Starts the thread. NULL with the reason in err on failure. */
struct pop3d_work *pop3d_work_new(struct event_base *base, char *err, size_t errlen);

/*
 * Queues run(arg) on the worker and done(arg) on the loop after it (never from
 * inside this call). Returns 0, or -1 (out of memory: nothing queued).
 */
int pop3d_work_post(struct pop3d_work *w, pop3d_work_fn run, pop3d_work_fn done, void *arg);

/*
 * Waits for the job under way, runs the queued ones, joins the thread, calls
 * every done not yet called (on the calling thread) and frees (NULL is a no-op).
 */
void pop3d_work_free(struct pop3d_work *w);

#endif
