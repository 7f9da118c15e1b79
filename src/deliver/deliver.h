/*
 * deliver: the delivery manager. One thread with its own event loop runs the
 * scheduler (scheduler.h: what is due, per destination, with back-off and
 * lifetimes), the next-hop resolver and the SMTP transport; a few worker
 * threads do what can take milliseconds (Maildir copies, state writes, queueing
 * notices and expansions). It learns of messages from the queue's start-up pass
 * and then from commits (deliver_runner_kick), never by listing the queue.
 * The modules and the threads: deliver_int.h; the whole story, with the crash
 * table: doc/internals/delivery.md.
 *
 * Destinations: a recipient in local_domains is delivered to its Maildir(s)
 * (aliases expanded once into final mailboxes, each with its own state); any
 * other goes by the first matching relay_route, else relay_smarthost, else the
 * MX of its domain (the destination key is recorded as the recipient's route).
 * An alias's foreign targets and a list's members become one new message each
 * time they are expanded (the list's owner as sender, with List-Id:).
 *
 * Outcomes: 2xx delivered (recorded before anything else is told: never sent
 * again, even across a crash; a crash between the peer's 250 and the record
 * sends it once more), 5xx and permanent next-hop failures (null MX, no such
 * domain, a loop back to ourselves: 5.4.6) failed and bounced, 4xx deferred
 * with back-off (queue_retry_initial doubling to queue_retry_max; a dead
 * destination backs off as a whole), queue_lifetime expired (4.4.7) and
 * bounced, for every recipient, local or remote. DSN (RFC 3461/3464): one
 * failure notice per message per attempt, one delay notice per recipient after
 * queue_delay_warning, success notices for NOTIFY=SUCCESS; never to <>.
 *
 * Log: one line per attempt per recipient (per final mailbox for aliases):
 *   QUEUEID: to=<mailbox>, orig_to=<rcpt>, relay=local|HOST[ADDR]:PORT|none,
 *   delay=S.S, dsn=X.Y.Z, status=sent|deferred|bounced (text)
 * and "QUEUEID: sender non-delivery notification: NEWID" per notice queued.
 *
 * Ownership: the manager borrows the conf, the queue and the index; it must be
 * stopped before the queue is closed.
 */
#ifndef SHAREMAIL_DELIVER_DELIVER_H
#define SHAREMAIL_DELIVER_DELIVER_H

#include <stddef.h>

struct conf;
struct queue;
struct mailbox_index;
struct deliver_runner;

/*
 * Starts the delivery thread and its workers; the thread takes the queue's
 * start-up list at once. Returns NULL with a message in err on failure.
 */
struct deliver_runner *deliver_runner_start(const struct conf *c, struct queue *q,
                                            struct mailbox_index *idx, char *err, size_t errlen);

/* Wakes the manager: a message was committed (safe from any thread; cheap: an eventfd). */
void deliver_runner_kick(struct deliver_runner *r);

/*
 * Stops the manager and frees it (NULL: no-op): no new job starts, SMTP
 * transactions under way are ended (their recipients stay as the queue has
 * them, tried again at the next start), local copies and state writes under way
 * finish, the workers are joined. Call before queue_close().
 */
void deliver_runner_stop(struct deliver_runner *r);

/*
 * Runs the manager in the calling thread over the whole queue (listed: this is
 * for tests and tools, not the daemon) until nothing is due any more: every due
 * recipient of every message is tried once (flush requests taken first make
 * DEFERRED ones due). Messages it queues (notices, expansions) wait for the next
 * call. Returns 0, or -1 if the manager cannot be set up.
 */
int deliver_queue_once(const struct conf *c, struct queue *q, struct mailbox_index *idx);

#endif
