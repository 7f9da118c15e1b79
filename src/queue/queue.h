/*
 * queue: the durable spool in <state_dir>/queue, the contract between receiving
 * and delivering (DESIGN.md). A message is acknowledged only after its file is
 * durably on disk: data written, file fsynced, renamed into the queue, the
 * directory fsynced (hostile-inputs.md "Faults"). A crash at any instant loses
 * nothing that was acknowledged; half-written files are never taken for messages.
 *
 * Files are self-validating (length-prefixed records and a checksum; see
 * queue_file.h): control bytes in envelope fields cannot forge a record. A
 * damaged file found at start-up is moved to queue/quarantine/ and logged, and
 * the rest are delivered.
 *
 * Group commit: committing runs on a pool of committer threads, so concurrent
 * sessions share journal commits (ext4 joins concurrent fsyncs) and one directory
 * fsync covers every rename made before it. Completions are reported back on the
 * libevent loop that owns the queue.
 *
 * Test hooks: when the environment variable SHAREMAIL_TEST_CRASH_AT names a
 * point ("after-write", "after-fsync", "after-rename", "after-dirsync"), the
 * process kills itself with SIGKILL there (used by the fault tests only).
 *
 * Threads: queue_open/close and the queue_msg_* calls belong to the thread that
 * runs the event loop; queue_list, queue_read_envelope, queue_open_data,
 * queue_update, queue_remove and queue_flush may be called from any thread (the
 * delivery runner has its own) and from other processes (the CLI).
 * Ownership: a struct queue_msg belongs to its session until committed or aborted.
 */
#ifndef SHAREMAIL_QUEUE_QUEUE_H
#define SHAREMAIL_QUEUE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "queue/envelope.h"

struct event_base;
struct queue;
struct queue_msg;

/*
 * Opens (creating its folders if needed) the queue under `dir`. With a non-NULL
 * base (the daemon), completions of queue_msg_commit() are delivered on that
 * event loop (through an eventfd: the base needs no evthread setup), tmp/
 * leftovers are removed, and damaged files and junk names in msg/ and state/
 * are moved to quarantine/ and logged. With NULL (the CLI, which may run beside
 * the daemon) nothing is moved or removed and commits are not available.
 * Returns NULL with a message in err on failure.
 */
struct queue *queue_open(const char *dir, struct event_base *base, char *err, size_t errlen);

/*
 * Stops the committer threads (finishing commits under way), runs the done()
 * callbacks still owed, and frees (NULL: no-op). Abort uncommitted msgs first.
 */
void queue_close(struct queue *q);

/* Free octets on the queue's file system, or -1 if unknown. */
long long queue_free_space(const struct queue *q);

/*
 * Starts a message: creates a temporary file. Returns NULL (errno set; ENOSPC
 * and EDQUOT mean a full disk) on failure.
 */
struct queue_msg *queue_msg_begin(struct queue *q);

/*
 * The queue id of a message being written: chosen by queue_msg_begin() and the
 * one the commit reports, so it can go into the Received field and the log
 * before the message is durable. Valid until the msg is committed or aborted.
 */
const char *queue_msg_id(const struct queue_msg *m);

/* Appends message octets (as stored: dot-unstuffed, CRLF line ends). 0 or -1 (errno). */
int queue_msg_write(struct queue_msg *m, const void *data, size_t len);

/*
 * Stores the envelope (copied), then writes, fsyncs, renames and fsyncs the
 * directory on a committer thread. `done(arg, ok, id)` runs later on the event
 * loop (never before this returns): ok = 1 with the queue id once the message is
 * durable, ok = 0 if anything failed (the partial file is removed; id is then
 * the id the message would have had). The msg is consumed in either case. On a
 * queue opened without an event loop, done() is never called.
 */
void queue_msg_commit(struct queue_msg *m, const struct envelope *env,
                      void (*done)(void *arg, int ok, const char *id), void *arg);

/* Abandons a message (removes its temporary file) and frees it. NULL is a no-op. */
void queue_msg_abort(struct queue_msg *m);

/*
 * Calls fn (may be NULL) for every queued message id, in id order (= arrival
 * order); a non-zero return from fn stops the walk. Returns the count, or -1.
 */
int queue_list(struct queue *q, int (*fn)(void *arg, const char *id), void *arg);

/*
 * Reads a message's envelope (with the recipients' current states). Returns 0, or
 * -1 if it does not exist or is damaged. The caller frees *env.
 */
int queue_read_envelope(struct queue *q, const char *id, struct envelope **env);

/*
 * Opens the message data for reading: returns a file descriptor positioned at the
 * first octet of the message and its length in *len, or -1.
 */
int queue_open_data(struct queue *q, const char *id, uint64_t *len);

/* Records recipients' new states (atomically: all or nothing). Returns 0 or -1. */
int queue_update(struct queue *q, const struct envelope *env);

/*
 * The wall-clock time encoded in a queue id: when the queue began the message
 * file (its arrival), in microseconds since the epoch. -1 for a string that is
 * not an id this queue makes.
 */
int64_t queue_id_time_us(const char *id);

/* Removes a message (all its files). Returns 0, or -1 if it did not exist. */
int queue_remove(struct queue *q, const char *id);

/*
 * Makes every deferred recipient due now: next_try = now (sharemail queue flush).
 * Returns the number of recipients changed, or -1. A running daemon notices at
 * its next scan of the queue.
 */
int queue_flush(struct queue *q);

/*
 * Registers fn to be called on the event loop after each successful commit, so
 * the delivery runner can pick new messages up at once. One callback.
 */
void queue_on_commit(struct queue *q, void (*fn)(void *arg, const char *id), void *arg);

#endif
