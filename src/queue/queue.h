/*
 * queue: the durable spool in <state_dir>/queue, the contract between receiving
 * and delivering (DESIGN.md). A message is acknowledged only after its file is
 * durably on disk (hostile-inputs.md "Faults"; doc/internals/queue.md): the file
 * is created in place in msg/ under its final name (O_EXCL), written, fsynced
 * (which commits its directory entry in the same journal transaction), and msg/
 * is fsynced unless the file system makes a new file's name durable with the
 * file's fsync (ext4/ext3: fs_names_durable_with_file, checked at queue_open;
 * there a folder fsync commits everything else running too); only then does
 * done() let the session answer 250. One journal commit per message. Removals
 * by delivery (queue_remove_done) are not fsynced: a system crash may bring a
 * delivered message back, to be delivered once more, never lost. A crash at any instant loses nothing that was
 * acknowledged; a file cut short is never taken for a message.
 *
 * Files are self-validating (length-prefixed records and digests; see
 * queue_file.h): control bytes in envelope fields cannot forge a record. At
 * start-up (queue_open with an event loop) one pass verifies every message file
 * whole and reads its state: a file without a valid END record was never
 * acknowledged, and it, like any damaged file or junk name, is moved to
 * queue/quarantine/ and logged, never delivered; the rest are handed to the
 * delivery code once (queue_take_startup). After that the queue never rescans
 * msg/: the delivery code learns of new messages from commits only (the
 * on_commit callback, queue_take_committed), so a file still being written in
 * msg/ is never seen by it. Reading an envelope or a state after start-up costs
 * O(envelope + state), never O(message).
 *
 * Group commit: committing runs on a pool of committer threads, so concurrent
 * sessions share journal commits (ext4 joins concurrent fsyncs), and one fsync of
 * msg/ covers every file created before it. Completions are reported back on the
 * libevent loop that owns the queue. queue_enqueue() commits from any thread.
 *
 * Flush requests: `sharemail queue flush [ID]` never writes states beside a
 * running daemon; it leaves a request in queue/flush/ that the daemon takes
 * (queue_take_flush, polled about once a second), now or when it starts.
 *
 * Test hooks: when the environment variable SHAREMAIL_TEST_CRASH_AT names a
 * point of a commit, the process kills itself with SIGKILL there (used by the
 * fault tests only): "mid-write" (the file written but for the last octet of its
 * END record: a file cut short), "after-write", "after-fsync", "after-dirsync"
 * (after the fsync of msg/, or where it would be; each before done(), so before
 * the 250); "after-rename", from before queue v2,
 * is the same point as "after-fsync".
 *
 * Threads: queue_open/close and queue_msg_commit belong to the thread that runs
 * the event loop; every other call may be made from any thread (the delivery
 * runner has its own), and the read/list/remove/flush calls from other
 * processes too (the CLI).
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

/* A queue id with its NUL fits in this many octets. */
#define QUEUE_ID_MAX 32

/*
 * Opens (creating its folders if needed) the queue under `dir`. With a non-NULL
 * base (the daemon), completions of queue_msg_commit() are delivered on that
 * event loop (through an eventfd: the base needs no evthread setup), tmp/
 * leftovers are removed, every message file is verified whole and its state
 * read (the start-up pass, kept for queue_take_startup), and damaged files,
 * files without a valid END record and junk names in msg/ and state/ are moved
 * to quarantine/ and logged. With NULL (the CLI, which may run beside the
 * daemon) nothing is moved or removed and commits are not available.
 * Returns NULL with a message in err on failure.
 */
struct queue *queue_open(const char *dir, struct event_base *base, char *err, size_t errlen);

/*
 * Stops the committer threads (finishing commits under way), runs the done()
 * callbacks still owed, and frees (NULL: no-op). Abort uncommitted msgs first,
 * and let every queue_enqueue / queue_msg_commit_wait call return.
 */
void queue_close(struct queue *q);

/* Free octets on the queue's file system, or -1 if unknown. */
long long queue_free_space(const struct queue *q);

/*
 * Starts a message: creates its file in msg/ under a new id (O_EXCL). Callable
 * from any thread. Returns NULL (errno set; ENOSPC and EDQUOT mean a full disk)
 * on failure.
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
 * Stores the envelope (copied), then writes, fsyncs the file and fsyncs msg/ on
 * a committer thread. `done(arg, ok, id)` runs later on the event loop (never
 * before this returns): ok = 1 with the queue id once the message is durable,
 * ok = 0 if anything failed (the partial file is removed; id is then the id the
 * message would have had). The msg is consumed in either case. On a queue
 * opened without an event loop, done() is never called.
 */
void queue_msg_commit(struct queue_msg *m, const struct envelope *env,
                      void (*done)(void *arg, int ok, const char *id), void *arg);

/*
 * Commits like queue_msg_commit but in the calling thread, any thread (it waits
 * for the fsyncs, so not the event loop's in the daemon): returns 0 with the id
 * in id once the message is durable, or -1 (errno; the file is removed). The
 * msg is consumed. The on_commit callback and queue_take_committed() learn of
 * the message as of any other. -1 (EINVAL) on a queue opened without an event
 * loop: a running daemon would never learn of the message.
 */
int queue_msg_commit_wait(struct queue_msg *m, const struct envelope *env, char id[QUEUE_ID_MAX]);

/*
 * Enqueues a whole message (data as stored, then env) durably from any thread:
 * queue_msg_begin, queue_msg_write and queue_msg_commit_wait in one call (for
 * bounces and list expansions made by delivery workers). 0 with the id, or -1.
 */
int queue_enqueue(struct queue *q, const struct envelope *env, const void *data, size_t len,
                  char id[QUEUE_ID_MAX]);

/* Abandons a message (removes its temporary file) and frees it. NULL is a no-op. */
void queue_msg_abort(struct queue_msg *m);

/*
 * Calls fn (may be NULL) for every name in msg/ that is a queue id, in id order
 * (= arrival order); a non-zero return from fn stops the walk. Returns the
 * count, or -1. This lists the folder (for the CLI and tests): a message still
 * being received is listed too, and fails to read. The daemon uses
 * queue_take_startup and queue_take_committed instead.
 */
int queue_list(struct queue *q, int (*fn)(void *arg, const char *id), void *arg);

/* One recipient not yet DELIVERED or FAILED, as the start-up pass found it. */
struct queue_pending_rcpt {
	size_t index; /* in the envelope's rcpts */
	const char *addr;
	enum rcpt_state state; /* PENDING, DEFERRED or REMOTE */
	int attempts;
	int64_t next_try; /* epoch seconds (meaningful when DEFERRED) */
	const char *route; /* destination key, or NULL (local, or not routed yet) */
	int delay_notified; /* its delay notice was sent already */
};

/* A message found by the start-up pass, with its unfinished recipients. */
struct queue_pending {
	const char *id;
	int64_t received_at;
	const struct queue_pending_rcpt *rcpts;
	size_t n_rcpts; /* 0: every recipient is done; the message only waits to be removed */
};

/*
 * Hands every message the start-up pass of queue_open kept (in id order) to fn,
 * once: the list is freed as it is handed over, and later calls find nothing
 * (messages committed since come from commits). A non-zero return from fn stops
 * the walk and drops the rest. The pointers are valid only during the call.
 * Returns the number handed over. Any thread, one consumer.
 */
size_t queue_take_startup(struct queue *q, int (*fn)(void *arg, const struct queue_pending *p),
                          void *arg);

/*
 * Hands fn (NULL: none, the ids are dropped) the id of every message committed
 * (queue_msg_commit, _commit_wait, queue_enqueue) since the previous call, in
 * commit order, and forgets them.
 * Fed on the event loop just before the on_commit callback runs. Returns the
 * count. Any thread, one consumer (the delivery runner).
 */
size_t queue_take_committed(struct queue *q, void (*fn)(void *arg, const char *id), void *arg);

/*
 * A message committed, as queue_take_committed_env hands it over. For a
 * message of queue_msg_commit (a session's: no state file exists yet) it comes
 * with what delivery would otherwise read back from the file: env, the
 * envelope decoded from the records just written (recipients RCPT_PENDING,
 * env->id set), and fd, the file opened for reading by the committer thread
 * (its data at data_off, data_len octets). env is NULL and fd -1 for other
 * commits (queue_enqueue, _commit_wait) or when they could not be made; the
 * file is then read as any other (queue_read_envelope, queue_open_data).
 */
struct queue_committed {
	const char *id;
	struct envelope *env; /* the callee may take it (then sets it to NULL) */
	int fd; /* likewise (then sets it to -1); what is left is freed, closed */
	uint64_t data_off, data_len;
};

/*
 * queue_take_committed, with each message's envelope and open file when the
 * commit kept them: hands the delivery runner what it needs to schedule and
 * deliver the message at once, without a worker reading it back (one trip
 * through a worker and one file read less per message). Same order, thread
 * and consumer rules.
 */
size_t queue_take_committed_env(struct queue *q, void (*fn)(void *arg, struct queue_committed *c),
                                void *arg);

/*
 * Reads a message's envelope (verifying its records only: O(envelope), whatever
 * the message's size; a version 1 file is verified whole) with the recipients'
 * current states. Returns 0, or -1 (errno ENOENT when it does not exist, EIO
 * when damaged or still being received). The caller frees *env.
 */
int queue_read_envelope(struct queue *q, const char *id, struct envelope **env);

/*
 * Reads the state file of env->id again into env (O(state)): 1 applied, 0 no
 * state file (every recipient as the envelope has it), -1 damaged or unreadable
 * (env unchanged).
 */
int queue_read_state(struct queue *q, struct envelope *env);

/*
 * Opens the message data for reading: returns a file descriptor positioned at the
 * first octet of the message and its length in *len, or -1.
 */
int queue_open_data(struct queue *q, const char *id, uint64_t *len);

/*
 * Records recipients' new states, statuses, routes and final mailboxes
 * (atomically: all or nothing; the state file is replaced whole, O(state)).
 * Returns 0 or -1.
 */
int queue_update(struct queue *q, const struct envelope *env);

/*
 * The wall-clock time encoded in a queue id: when the queue began the message
 * file (its arrival), in microseconds since the epoch. -1 for a string that is
 * not an id this queue makes.
 */
int64_t queue_id_time_us(const char *id);

/*
 * Removes a message (all its files) durably (msg/ is fsynced: `sharemail queue
 * delete`). Returns 0, or -1 if it does not exist or is not whole (a message
 * still being received is never removed).
 */
int queue_remove(struct queue *q, const char *id);

/*
 * Removes a message whose recipients are all DELIVERED or FAILED, as
 * queue_remove but without fsyncing msg/ (the delivery workers): the unlink is
 * made durable by the file system's next journal commit (any fsync on it, or
 * its commit interval, 5 s on ext4). A process crash (kill -9) cannot undo it;
 * a system crash or power cut before that commit can bring the message back,
 * and it is then delivered once more: a duplicate, never a loss (Postfix's
 * qmgr deletes its queue files the same way). Same returns as queue_remove.
 */
int queue_remove_done(struct queue *q, const char *id);

/*
 * Asks the daemon to retry now every DEFERRED recipient of message id (NULL:
 * of every message): leaves a request in queue/flush/ (states are not written
 * here, so a CLI never races the daemon's own updates). Returns the number of
 * DEFERRED recipients it concerns, or -1 (errno ENOENT: no such message).
 */
int queue_flush(struct queue *q, const char *id);

/*
 * Takes the flush requests waiting in queue/flush/ (removing each before fn
 * sees it, so a request made meanwhile is taken next time): fn(arg, id) for one
 * message, fn(arg, NULL) for every message. Cheap when there are none (one
 * folder read): the daemon polls it about once a second. Returns the count.
 */
size_t queue_take_flush(struct queue *q, void (*fn)(void *arg, const char *id), void *arg);

/*
 * Lets a delivery worker's fsync ride on the receiving sessions' commits (call
 * it just before an fsync whose changes are made, the data written back): when
 * a commit's file fsync has begun within the last max_us microseconds (sessions
 * are committing), waits until one that begins after this call has ended, at
 * most max_us; otherwise returns at once. On ext4 such an fsync commits the
 * whole running journal transaction, the caller's changes with it, so the
 * caller's own fsync then finds nothing to commit instead of starting a journal
 * commit that the next session's commit would queue behind. Never a reason to
 * skip the caller's fsync: only its timing changes. Returns 1 if a commit ended
 * after the call, else 0. Any thread; 0 at once on a queue without an event loop.
 */
int queue_ride(struct queue *q, unsigned max_us);

/*
 * Registers fn to be called on the event loop after each successful commit, so
 * the delivery runner can pick new messages up at once. One callback.
 */
void queue_on_commit(struct queue *q, void (*fn)(void *arg, const char *id), void *arg);

#endif
