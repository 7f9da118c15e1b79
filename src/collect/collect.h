/*
 * collect: the DomainPOP collector in sharemaild. One thread with its own
 * event loop (as delivery's runner) collects every collect_source: each
 * interval (and at once at start-up and for `sharemail collect now`) one POP3
 * session (collect/collect_transport.h) lists the mailbox, takes the messages
 * whose UIDL is not yet recorded (collect/collect_state.h), small ones first,
 * RETRs them pipelined, routes each by its headers (collect/collect_route.h),
 * keeps one copy per recipient mailbox (collect/collect_dedupe.h), queues it
 * through the queue (a commit pool: many commits under way at once share
 * journal commits), records the batch's UIDLs and dedupe keys in one SQLite
 * transaction, and only then sends DELE (leave_days 0, or N days after the
 * message was first collected).
 *
 * Per message:
 *   - over max_size: not retrieved; one notice (a new message from <>) to
 *     postmaster@ the first local domain, and the UIDL recorded OVERSIZE so the
 *     notice goes once; the message stays on the ISP.
 *   - no local recipient: to collect_fallback when set; else kept on the ISP
 *     (not recorded, so it is tried again each cycle) and logged once per run.
 *   - a recipient who already got the message (same dedupe key): not again.
 *   - queued with a trace field of ours at the top (proto/collect_trace.h:
 *     source, UIDL, queue id); envelope sender: the message's Return-Path when
 *     it holds a valid mailbox (the ISP's record of the SMTP MAIL FROM, so a
 *     failed local delivery bounces to the real sender), else <>.
 *   - with Domain Sharing, a recipient in a local domain that is not a mailbox
 *     here is verified as RCPT does (verify/verify.h, Minger to the peers) and
 *     queued with the peer's route; a peer that cannot say (TEMPFAIL) keeps the
 *     message on the ISP, unrecorded, for the next cycle.
 *   The queue and delivery decide the rest: a foreign alias target is relayed
 *   like any other queued recipient.
 *
 * Crash safety (collect_state.h "Crash contract"): a UIDL is recorded only
 * after the queue committed every copy of its message, and DELE is sent only
 * after the record is durable. kill -9 at any instant: each message once, or
 * twice when it falls between the commit and the record (one duplicate, never
 * zero). Test hook: SHAREMAIL_TEST_CRASH_AT = collect-mid-retr (the first data
 * of a message received), collect-after-commit (a message queued, its UIDL not
 * yet recorded), collect-after-record (recorded, no DELE sent),
 * collect-after-dele (DELEs sent, QUIT not).
 *
 * Control: requests of `sharemail collect now` (collect/collect_ctl.h) are
 * taken every COLLECT_CTL_POLL_MS; each is answered when a cycle of every
 * source it names, begun after it was taken, has ended; <state_dir>/collect/
 * status is rewritten after every cycle.
 *
 * Ownership: the collector copies what it needs of the conf (at start and at
 * each collect_runner_reload), borrows the queue and the index, and its
 * Domain Sharing verifier borrows the conf given to collect_runner_start (the
 * daemon's boot conf, which lives until the end); stop it before the queue is
 * closed.
 */
#ifndef SHAREMAIL_COLLECT_COLLECT_H
#define SHAREMAIL_COLLECT_COLLECT_H

#include <stddef.h>

struct conf;
struct queue;
struct mailbox_index;
struct collect_runner;

#define COLLECT_CTL_POLL_MS 100

/*
 * Opens <state_dir>/collect.db and starts the collector thread (idle while c
 * has no collect_source: a SIGHUP may add some). A source is first collected
 * one interval after it was started or added (or at `collect now`), then every
 * interval after its previous cycle ended. NULL with a message in err on failure.
 */
struct collect_runner *collect_runner_start(const struct conf *c, struct queue *q,
                                            struct mailbox_index *idx, char *err, size_t errlen);

/*
 * Takes the reloadable collect_* keys of c (sources added, removed or changed;
 * routing and dedupe settings) for the cycles that begin from now on; cycles
 * under way end with what they had. Any thread. 0, or -1 when out of memory or
 * a line does not parse (the old settings stay).
 */
int collect_runner_reload(struct collect_runner *r, const struct conf *c);

/*
 * Stops the collector (NULL: no-op): sessions under way are ended without QUIT
 * (nothing deleted on the ISP), commits under way finish and are recorded, the
 * thread and its workers are joined. Call before queue_close().
 */
void collect_runner_stop(struct collect_runner *r);

#endif
