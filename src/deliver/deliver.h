/*
 * deliver: the queue runner and local delivery. A runner thread takes due
 * messages from the queue, expands each local recipient (aliases, through the
 * shared mailbox index) to local mailboxes, and delivers to
 * <state_dir>/mail/<domain>/<user>/Maildir (tmp -> fsync -> new, unique names per
 * the Maildir specification), adding Return-Path, Delivered-To (and, when
 * configured, Date: and X-Sharemail-Original-Rcpt:) headers. A final mailbox
 * that already appears in a Delivered-To header is a loop (FAILED 5.4.6), and so
 * is a message with more Received + Delivered-To fields than
 * smtp_max_received_headers. Temporary failures (I/O, directory TEMPFAIL, over
 * quota) are retried every queue_retry_interval until queue_lifetime (then
 * FAILED 5.4.7). Recipients outside the local domains, and aliases with foreign
 * targets (after their local copies), stay queued in state RCPT_REMOTE (remote
 * delivery is not built yet). FAILED recipients are logged (bounces: not built
 * yet); a message whose recipients are all DELIVERED or FAILED is removed.
 *
 * Ownership: the runner borrows the conf, the queue and the index.
 */
#ifndef SHAREMAIL_DELIVER_DELIVER_H
#define SHAREMAIL_DELIVER_DELIVER_H

#include <stddef.h>

struct conf;
struct queue;
struct mailbox_index;
struct deliver_runner;

/* Starts the runner thread. Returns NULL with a message in err on failure. */
struct deliver_runner *deliver_runner_start(const struct conf *c, struct queue *q,
                                            struct mailbox_index *idx, char *err, size_t errlen);

/* Wakes the runner: a message was committed (safe from any thread). */
void deliver_runner_kick(struct deliver_runner *r);

/* Stops the runner (finishing the delivery under way) and frees it (NULL: no-op). */
void deliver_runner_stop(struct deliver_runner *r);

/*
 * Runs one delivery pass over the queue in the calling thread (every due
 * recipient of every message), as the runner thread does. For tests and for a
 * process without a runner thread. Returns 0, or -1 if state_dir is unusable.
 */
int deliver_queue_once(const struct conf *c, struct queue *q, struct mailbox_index *idx);

#endif
