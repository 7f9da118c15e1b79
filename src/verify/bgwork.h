/*
 * bgwork: one background thread for the verifier's slow work, so that no SQLite
 * call or file write waits on the event loop: cache records (vcache_live), the
 * peers.status file, and a periodic tick (the cache's check for changes made by
 * the CLI). Jobs run in the order posted.
 *
 * Threads: bgwork_post() may be called from any thread; jobs and the tick run on
 * the background thread only.
 *
 * Ownership: a posted job owns its arg (the job frees it); bgwork_free() runs the
 * jobs still queued, then joins the thread.
 */
#ifndef SHAREMAIL_VERIFY_BGWORK_H
#define SHAREMAIL_VERIFY_BGWORK_H

#include <stddef.h>

struct bgwork;

typedef void (*bgwork_fn)(void *arg);

/* Most jobs queued at once: past it, bgwork_post() refuses (a cache record is then lost). */
#define BGWORK_QUEUE_MAX 65536

/*
 * Starts the thread. tick (may be NULL) runs on it every tick_ms milliseconds
 * with tick_arg. NULL on failure.
 */
struct bgwork *bgwork_new(bgwork_fn tick, void *tick_arg, int tick_ms);

/* Runs what is queued, stops and joins the thread (NULL: no-op). */
void bgwork_free(struct bgwork *w);

/* Queues fn(arg). Returns 0, or -1 (queue full or out of memory: fn does not run, arg is the caller's). */
int bgwork_post(struct bgwork *w, bgwork_fn fn, void *arg);

/* Waits until every job posted before the call has run (tests, the CLI before exit). */
void bgwork_sync(struct bgwork *w);

#endif
