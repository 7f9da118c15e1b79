/*
 * deliver_int: the delivery manager's internals, shared by its modules (private
 * to src/deliver; deliver.h is the interface):
 *   deliver.c         the manager: its thread and event loop, the scheduler's
 *                     wiring, messages and jobs, start-up, commits, flushes, shutdown
 *   deliver_local.c   the Maildir transport (a worker task)
 *   deliver_expand.c  an alias's foreign targets and a list's members into a new message
 *   deliver_relay.c   routing, next-hop resolution and the SMTP transport (loop side)
 *   deliver_record.c  recording an attempt: states, notices, the log lines (a worker task)
 *   deliver_bounce.c  composing and queueing the notices (RFC 3464)
 *   deliver_policy.c  the pure decisions (tested alone)
 *
 * Threads. The loop thread owns the scheduler, the message table, every job's
 * life and the relay state. Workers (deliver_pool) run the tasks. A message's
 * envelope is shared: the loop reads only what never changes once loaded (the
 * id, the sender, the DSN parameters, each recipient's address, ORCPT, NOTIFY
 * and route), workers read and change the rest (states, statuses, final
 * mailboxes) holding the message's mutex `mu`.
 *
 * Ownership: a struct dmsg lives while jobs or tasks refer to it (refs, loop
 * thread only); a struct deliver_job from the scheduler handing it out until
 * its outcomes are recorded and reported.
 */
#ifndef SHAREMAIL_DELIVER_DELIVER_INT_H
#define SHAREMAIL_DELIVER_DELIVER_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "deliver/deliver_headers.h"
#include "deliver/deliver_policy.h"
#include "deliver/deliver_pool.h"
#include "store/maildir.h"
#include "deliver/scheduler.h"
#include "queue/queue.h"

struct conf;
struct mailbox_index;
struct deliver_runner;
struct deliver_relay;

/* Test hooks (SHAREMAIL_TEST_CRASH_AT): the process SIGKILLs itself there. */
enum deliver_crash {
	DELIVER_CRASH_NONE = 0,
	DELIVER_CRASH_RELAY_BEFORE_DOT, /* the body sent, the final dot not yet */
	DELIVER_CRASH_RELAY_AFTER_250, /* the peer's 250 in, our state not yet written */
};

/* What workers may read: set before the first task, never changed after. */
struct deliver_ctx {
	const struct conf *c;
	struct queue *q;
	struct mailbox_index *idx;
	char mail_root[MAILDIR_PATH_MAX];
	const char *hostname;
	int64_t clock_offset; /* SHAREMAIL_TEST_TIME_OFFSET: seconds added to the wall clock */
	enum deliver_crash crash;
	struct deliver_routes routes; /* for the destination keys */
};

/* The wall clock delivery runs on (epoch seconds; the test offset added). */
int64_t deliver_now(const struct deliver_ctx *x);

/* The test hook: SIGKILLs the process when p is the configured point. */
void deliver_crash_at(const struct deliver_ctx *x, enum deliver_crash p);

enum dmsg_state { DMSG_UNLOADED = 0, DMSG_LOADING, DMSG_LOADED };

struct deliver_job;

/* One message the manager is working on. */
struct dmsg {
	char id[QUEUE_ID_MAX];
	pthread_mutex_t mu; /* held by workers while they read or change env's states */
	struct envelope *env; /* the load task's; see the top for who reads what */
	int fd; /* the message file, open while loaded (-1: none) */
	uint64_t data_off, len; /* where its data is */
	/* workers, under mu */
	char *head; /* first octets of the data (local delivery reads them once) */
	size_t head_len;
	int head_read;
	struct deliver_hdr_scan scan;
	int removed; /* every recipient done and the files removed: nothing more is written */
	/* the loop's */
	enum dmsg_state st;
	unsigned refs;
	int add_on_load; /* the load was for a commit (or a listing): schedule its recipients */
	struct deliver_job *waiting; /* jobs waiting for the load */
	struct dmsg *hnext;
	struct deliver_task load;
	struct deliver_runner *mgr;
	int load_rc, load_errno;
};

enum deliver_job_kind {
	DELIVER_JOB_LOCAL = 0,
	DELIVER_JOB_RELAY,
	DELIVER_JOB_EXPIRE,
	DELIVER_JOB_DELAY,
};

/* One recipient's outcome in a job (filled by the transport or the record task). */
struct deliver_outcome {
	uint32_t rcpt;
	uint32_t attempts; /* attempts before this one (the scheduler's count) */
	enum scheduler_outcome so; /* 0: nothing to tell the scheduler */
	enum rcpt_state state; /* DELIVERED, FAILED, DEFERRED; PENDING: left as it is */
	char status[DELIVER_STATUS_MAX];
	uint64_t next_try; /* DEFERRED: the scheduler's */
	int told; /* the scheduler has been told */
};

/* One line of the log (and maybe one recipient of a notice) from an attempt. */
struct deliver_report {
	uint32_t rcpt;
	char *to; /* the mailbox the line is about; NULL: the recipient itself */
	char *relay; /* "local", "host[addr]:port", "none" */
	enum rcpt_state state;
	char *status; /* "CODE X.Y.Z text" */
	int peer_code; /* the peer's reply code, or 0 (a reason of ours) */
	char *remote_mta; /* the peer's host name, or NULL */
	enum deliver_notice notice;
};

struct deliver_job {
	struct deliver_task task;
	struct deliver_runner *mgr;
	struct dmsg *m;
	enum deliver_job_kind kind;
	char dest[SCHEDULER_DEST_MAX + 1];
	uint64_t arrival, started;
	int recording; /* the outcomes are being recorded (second phase) */
	int aborted; /* shutdown: nothing is recorded */
	size_t n;
	struct deliver_outcome *out;
	struct deliver_report *rep;
	size_t nrep, caprep;
	void *relay; /* deliver_relay.c's per-job state */
	struct deliver_job *next; /* on m->waiting */
};

/*
 * Appends a report (strings copied; to, relay, remote_mta may be NULL). Returns
 * 0, or -1 out of memory (the line is then lost, the outcome is not).
 */
int deliver_job_report(struct deliver_job *j, uint32_t rcpt, const char *to, const char *relay,
                       enum rcpt_state st, const char *status, int peer_code,
                       const char *remote_mta, enum deliver_notice notice);

/*
 * The loop, once a job's outcomes are filled (transport results, or nothing
 * for EXPIRE and DELAY): tells the scheduler of deferrals (their next try goes
 * into the queue), then records everything on a worker, then reports the rest.
 */
void deliver_job_outcomes_ready(struct deliver_job *j);

/* The loop's scheduler (deliver_relay.c asks it for a reused connection's next job). */
struct scheduler *deliver_sched(struct deliver_runner *r);
const struct deliver_ctx *deliver_ctx(const struct deliver_runner *r);
struct event_base *deliver_base(struct deliver_runner *r);
/* The workers (deliver_relay.c runs a peer's checks there: Minger, the header). */
struct deliver_pool *deliver_workers(struct deliver_runner *r);
/* Takes a DELIVER job from the scheduler for dest now (connection reuse). 1 started, 0 none. */
int deliver_next_for_dest(struct deliver_runner *r, const char *dest);

/* ---- deliver_local.c (worker) ---- */

/* Delivers a DELIVER job for SCHEDULER_DEST_LOCAL: fills its outcomes and reports. */
void deliver_local_work(struct deliver_job *j);

/* ---- deliver_expand.c (worker, m->mu held) ---- */

/*
 * Queues one new message (queue_msg_* from this thread) carrying m's data with
 * the fields in prefix[0..plen) put before it, from sender to rcpts[0..n)
 * (each with orcpt and notify: NULL/0 for none). keep_dsn (an alias) keeps
 * m's RET and ENVID; without it (a list: a new origin, RFC 3461 6.2.7.3) they
 * are dropped, and so is any List-Id: field of m (the prefix has the list's).
 * Returns 0 with the new id, or -1 (errno).
 */
int deliver_expand_enqueue(const struct deliver_ctx *x, struct dmsg *m, const char *prefix,
                           size_t plen, const char *sender, const char *const *rcpts,
                           const char *const *orcpts, const unsigned *notify, size_t n,
                           int keep_dsn, char id[QUEUE_ID_MAX]);

/*
 * domain_sharing_share_lists (README "Domain Sharing"): a post to local list
 * `list` in m becomes one new message, from m's sender, with m's data after an
 * X-Sharemail-List-Shared: field, to `list` once per domain_sharing_host peer,
 * each recipient routed "list:[HOST]:PORT" (deliver_policy.h): delivery asks
 * each peer by Minger whether it has the list before its copy goes, and asks
 * again on the next try when it does not answer. The routes are in the new
 * message's state file before its commit, so it is never delivered here.
 * Nothing is made (0 with id "") when the option is off, there are no peers,
 * or m is itself a shared copy (it carries the field: never shared again).
 * m->head must have been read. Returns 0, or -1 (errno).
 */
int deliver_expand_share_list(const struct deliver_ctx *x, struct dmsg *m, const char *list,
                              char id[QUEUE_ID_MAX]);

/* ---- deliver_record.c (worker) ---- */

/* Records a job's outcomes (and, for EXPIRE and DELAY, decides them), then logs. */
void deliver_record_work(struct deliver_job *j);

/* Seconds since message env arrived (its queue id's time, else received_at). */
double deliver_delay_s(const struct deliver_ctx *x, const struct envelope *env);

/* ---- deliver_bounce.c (worker, m->mu held) ---- */

/*
 * Composes and queues the notices a job's reports owe: one failure notice
 * listing every recipient that failed in it, one success notice, one delay
 * notice (each only when some report asks for it). Logs each one queued.
 */
void deliver_bounce_send(const struct deliver_ctx *x, struct dmsg *m, const struct deliver_job *j);

/* ---- deliver_relay.c (loop) ---- */

/*
 * The routes of delivery: the relay_route lines, then one per gateway_domain
 * and forward_domain line (its domain to its host=), in that order: the first
 * match wins, so an explicit relay_route for the same domain wins. *out (free()
 * it) gets *n parsed routes; a line that does not parse is logged and skipped
 * (conf checked it). Returns 0, or -1 out of memory.
 */
int deliver_relay_parse_routes(const struct conf *c, struct nexthop_route **out, size_t *n);

/* Creates the relay side (routes, resolver, transport) on the manager's loop. NULL + err. */
struct deliver_relay *deliver_relay_new(struct deliver_runner *r, char *err, size_t errlen);

/* Starts a DELIVER job for a relay destination (resolution, then the transport). */
void deliver_relay_start(struct deliver_relay *rl, struct deliver_job *j);

/* Shutdown: cancels resolutions and ends transport jobs (they are released unrecorded). */
void deliver_relay_stop(struct deliver_relay *rl);

/* Frees (NULL: no-op); after deliver_relay_stop. */
void deliver_relay_free(struct deliver_relay *rl);

/* The route configured for dest (a relay_route's domain), or NULL. */
const struct nexthop_route *deliver_relay_route(const struct deliver_relay *rl, const char *dest);

/* Releases a job that will not be recorded (aborted at shutdown). */
void deliver_job_abandon(struct deliver_job *j);

#endif
