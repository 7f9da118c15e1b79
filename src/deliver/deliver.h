/*
 * deliver: the queue runner and local delivery. A runner thread takes due
 * messages from the queue, expands each local recipient (aliases, through the
 * shared mailbox index) once, at its first attempt, into its final mailboxes,
 * and records them in the recipient (envelope_final, kept in the queue's state
 * file), each with its own state. Local accounts get a copy in
 * <state_dir>/mail/<domain>/<user>/Maildir (tmp -> fsync -> new, unique names per
 * the Maildir specification), with Return-Path, Delivered-To (and, when
 * configured, Date: and X-Sharemail-Original-Rcpt:) headers; a copy recorded
 * DELIVERED is never made again, and a message gives each mailbox one copy
 * however many of its recipients lead there. A final mailbox that already
 * appears in a Delivered-To header is a loop (FAILED 5.4.6), and a message with
 * more Received + Delivered-To fields than smtp_max_received_headers fails for
 * every local recipient. Disabled accounts are FAILED (5.2.1); over quota
 * (4.2.2), I/O errors and directory TEMPFAIL are DEFERRED, retried every
 * queue_retry_initial until queue_lifetime (then FAILED 5.4.7), mailbox by
 * mailbox. Recipients outside the local domains, and foreign alias targets,
 * stay queued as RCPT_REMOTE (remote delivery is not built yet). Each attempt
 * for a mailbox is logged in one line, Postfix style (deliver.c); failures say
 * that no bounce was sent (bounces: not built yet). A message leaves the queue
 * once every final mailbox of every recipient is DELIVERED or FAILED.
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
