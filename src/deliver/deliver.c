/*
 * deliver: the delivery manager. See deliver.h; the modules are listed in
 * deliver_int.h.
 *
 * One delivery thread runs its own event_base: the scheduler (what is due, per
 * destination, with back-off and lifetimes), the next-hop resolver and the SMTP
 * transport (deliver_relay.c), a one-second tick and an eventfd that other
 * threads write to (a commit was made, a worker finished, stop). Everything
 * that can take milliseconds runs on the worker pool: reading an envelope,
 * Maildir copies, queue_update, queue_enqueue, queue_remove.
 *
 * The scheduler is fed once from the queue's start-up pass and then by commits
 * (queue_take_committed_env on every wake-up): never by listing the queue. A
 * session's commit hands over the envelope and the open file, so that message
 * is not read back; a job it hands out names a message; the message is loaded (envelope and states, the
 * data opened, never read whole) on a worker if it is not in memory, and kept
 * while jobs refer to it. A job's life:
 *   transport  local: a worker makes the copies; relay: resolve, then SMTP on the
 *              loop; EXPIRE, DELAY: nothing to do
 *   outcomes   the loop tells the scheduler of deferrals, whose next try goes
 *              into the queue state
 *   record     a worker queues the notices owed, writes the states (or removes
 *              the finished message), then logs one line per attempt
 *   report     the loop tells the scheduler of the rest, then (relay) asks for
 *              the next job of the same destination for the open connection
 * So a recipient the peer accepted is written DELIVERED before it is logged or
 * reported, and after a restart it is never sent again; a crash between the
 * peer's 250 and the state write sends it once more (at most one duplicate, RFC
 * 5321 6.1 prefers that to a loss). The notices are queued before the states
 * are written, so a crash in between can repeat a notice but never lose one.
 *
 * Shutdown: no new job starts; relay jobs under way are ended (their recipients
 * stay as the queue has them: tried again at the next start); local copies and
 * records under way finish; then the workers are joined.
 */
#include "deliver/deliver.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "deliver/deliver_int.h"
#include "util/log.h"
#include "util/strutil.h"
#include "util/timeutil.h"

#define DELIVER_WORKERS_MAX 8
#define DELIVER_BATCH_MAX 100 /* recipients per job (RFC 5321 4.5.3.1.8: peers take 100) */
#define DELIVER_TICK_S 1 /* flush requests and timed work are looked at this often */
#define DELIVER_TABLE_MIN 256

struct deliver_runner {
	struct deliver_ctx x;
	struct nexthop_route *routes; /* parsed relay_route lines */
	struct event_base *base;
	int efd;
	struct event *efd_ev, *tick;
	struct scheduler *sched;
	struct scheduler_job *sj; /* scratch for scheduler_next */
	struct deliver_pool *pool;
	struct deliver_relay *relay;
	pthread_t thread;
	int threaded;
	pthread_mutex_t mu; /* stop_req */
	int stop_req;
	int once; /* deliver_queue_once: run until nothing is due, then return */
	/* the loop's */
	struct dmsg **tab;
	size_t tabsz, nmsgs;
	size_t jobs, loads;
	int stopping;
	int flush_all; /* once: a flush request for every message */
	char (*flush_ids)[QUEUE_ID_MAX];
	size_t nflush;
};

/* ---- clock and hooks ---- */

int64_t deliver_now(const struct deliver_ctx *x)
{
	return time_wall_s() + x->clock_offset;
}

static uint64_t now_u(const struct deliver_runner *r)
{
	int64_t t = deliver_now(&r->x);
	return t > 0 ? (uint64_t)t : 0;
}

void deliver_crash_at(const struct deliver_ctx *x, enum deliver_crash p)
{
	if (x->crash == p && p != DELIVER_CRASH_NONE)
		kill(getpid(), SIGKILL);
}

static enum deliver_crash crash_parse(const char *s)
{
	if (!s)
		return DELIVER_CRASH_NONE;
	if (strcmp(s, "relay-before-dot") == 0)
		return DELIVER_CRASH_RELAY_BEFORE_DOT;
	if (strcmp(s, "relay-after-250") == 0)
		return DELIVER_CRASH_RELAY_AFTER_250;
	return DELIVER_CRASH_NONE;
}

struct scheduler *deliver_sched(struct deliver_runner *r)
{
	return r->sched;
}

const struct deliver_ctx *deliver_ctx(const struct deliver_runner *r)
{
	return &r->x;
}

struct event_base *deliver_base(struct deliver_runner *r)
{
	return r->base;
}

/* ---- the message table (loop thread) ---- */

/* A message's memory: its data file, envelope, head and lock (unlinked already). */
static void dmsg_free(struct dmsg *m)
{
	if (m->fd >= 0)
		close(m->fd);
	envelope_free(m->env);
	free(m->head);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static size_t hash_id(const char *id, size_t n)
{
	return (size_t)(str_hash(id, strlen(id), 0) % n); /* ids are ours, random in part */
}

static struct dmsg *msg_find(struct deliver_runner *r, const char *id)
{
	if (!r->tab)
		return NULL;
	for (struct dmsg *m = r->tab[hash_id(id, r->tabsz)]; m; m = m->hnext)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

static int table_grow(struct deliver_runner *r)
{
	size_t n = r->tabsz ? r->tabsz * 2 : DELIVER_TABLE_MIN;
	struct dmsg **t = calloc(n, sizeof *t);
	if (!t)
		return -1;
	for (size_t i = 0; i < r->tabsz; i++) {
		while (r->tab[i]) {
			struct dmsg *m = r->tab[i];
			r->tab[i] = m->hnext;
			size_t h = hash_id(m->id, n);
			m->hnext = t[h];
			t[h] = m;
		}
	}
	free(r->tab);
	r->tab = t;
	r->tabsz = n;
	return 0;
}

static void load_work(struct deliver_task *t);
static void load_done(struct deliver_task *t);

/* The message id, found or made (unloaded, no refs). NULL when out of memory. */
static struct dmsg *msg_get(struct deliver_runner *r, const char *id)
{
	struct dmsg *m = msg_find(r, id);
	if (m)
		return m;
	if (r->nmsgs >= r->tabsz && table_grow(r) < 0 && !r->tab)
		return NULL;
	m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	snprintf(m->id, sizeof m->id, "%s", id);
	pthread_mutex_init(&m->mu, NULL);
	m->fd = -1;
	m->mgr = r;
	m->load.work = load_work;
	m->load.done = load_done;
	size_t h = hash_id(id, r->tabsz);
	m->hnext = r->tab[h];
	r->tab[h] = m;
	r->nmsgs++;
	return m;
}

/* Drops a reference; the last one frees the message (and its envelope, its descriptor). */
static void msg_put(struct deliver_runner *r, struct dmsg *m)
{
	if (m->refs > 0)
		m->refs--;
	if (m->refs > 0 || m->waiting || m->st == DMSG_LOADING)
		return;
	struct dmsg **pp = &r->tab[hash_id(m->id, r->tabsz)];
	while (*pp && *pp != m)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = m->hnext;
	r->nmsgs--;
	dmsg_free(m);
}

/* ---- loading (a worker reads the envelope and states, opens the data) ---- */

static void set_routes(const struct deliver_ctx *x, struct envelope *env)
{
	char key[SCHEDULER_DEST_MAX + 1];
	for (size_t i = 0; i < env->n_rcpts; i++) {
		struct envelope_rcpt *rc = &env->rcpts[i];
		enum deliver_dest_kind k = deliver_policy_rcpt_dest(&x->routes, rc->addr, rc->route,
		                                                    key, sizeof key, NULL);
		/* Local (and unusable) recipients have no route: the local transport decides. */
		if (envelope_rcpt_set_route(rc, k > DELIVER_DEST_IS_LOCAL ? key : NULL) < 0)
			log_err("deliver %s: out of memory routing a recipient", env->id);
	}
}

static void load_work(struct deliver_task *t)
{
	struct dmsg *m = (struct dmsg *)(void *)((char *)t - offsetof(struct dmsg, load));
	const struct deliver_ctx *x = &m->mgr->x;
	struct envelope *env = NULL;
	m->load_rc = queue_read_envelope(x->q, m->id, &env);
	m->load_errno = errno;
	if (m->load_rc == 0) {
		m->fd = queue_open_data(x->q, m->id, &m->len);
		off_t pos = m->fd >= 0 ? lseek(m->fd, 0, SEEK_CUR) : -1;
		if (pos < 0) {
			if (m->fd >= 0)
				close(m->fd);
			m->fd = -1;
			m->load_rc = -1;
			m->load_errno = EIO;
			envelope_free(env);
			return;
		}
		m->data_off = (uint64_t)pos;
		set_routes(x, env);
		m->env = env;
	}
}

static void job_start(struct deliver_job *j);
static void job_free(struct deliver_job *j);
static void add_rcpts(struct deliver_runner *r, struct dmsg *m);
static void pump(struct deliver_runner *r);

/* A job whose message could not be loaded: its recipients are tried later. */
static void job_unloadable(struct deliver_job *j, int err)
{
	struct deliver_runner *r = j->mgr;
	uint64_t now = now_u(r);
	if (err == ENOENT) /* deleted (sharemail queue delete): forget it */
		scheduler_remove(r->sched, j->m->id);
	else
		log_warning("deliver %s: cannot read the message (%s); tried again later", j->m->id,
		            strerror(err));
	if (j->kind == DELIVER_JOB_LOCAL || j->kind == DELIVER_JOB_RELAY)
		for (size_t i = 0; i < j->n; i++)
			scheduler_result(r->sched, j->m->id, j->out[i].rcpt, SCHEDULER_DEFER_RCPT,
			                 now, NULL);
	else if (j->kind == DELIVER_JOB_EXPIRE && err != ENOENT)
		log_err("deliver %s: expired but unreadable: no bounce; kept until the next start",
		        j->m->id);
	job_free(j);
}

static void load_done(struct deliver_task *t)
{
	struct dmsg *m = (struct dmsg *)(void *)((char *)t - offsetof(struct dmsg, load));
	struct deliver_runner *r = m->mgr;
	r->loads--;
	struct deliver_job *w = m->waiting;
	m->waiting = NULL;
	if (m->load_rc == 0) {
		m->st = DMSG_LOADED;
		if (m->add_on_load)
			add_rcpts(r, m);
	} else {
		m->st = DMSG_UNLOADED;
		if (m->load_errno != ENOENT && m->add_on_load)
			log_warning("deliver %s: cannot read the message just committed (%s)",
			            m->id, strerror(m->load_errno));
	}
	int added = m->add_on_load && m->st == DMSG_LOADED;
	m->add_on_load = 0;
	m->refs++; /* held while the waiting jobs start */
	while (w) {
		struct deliver_job *j = w;
		w = w->next;
		j->next = NULL;
		if (m->st == DMSG_LOADED)
			job_start(j);
		else
			job_unloadable(j, m->load_errno);
	}
	/*
	 * A message just committed has recipients due now: their jobs start while
	 * it is loaded. Left to the pump after the references below are dropped,
	 * the message would be freed and loaded again (a second read of the file
	 * and a second trip through a worker for every message).
	 */
	if (added)
		pump(r);
	msg_put(r, m); /* the load's own reference and the one above */
	msg_put(r, m);
}

/* Loads m on a worker (it holds a reference until loaded). */
static void msg_load(struct deliver_runner *r, struct dmsg *m)
{
	if (m->st != DMSG_UNLOADED)
		return;
	m->st = DMSG_LOADING;
	m->refs++;
	r->loads++;
	deliver_pool_submit(r->pool, &m->load);
}

/* ---- scheduling recipients ---- */

static int flushed(const struct deliver_runner *r, const char *id)
{
	if (r->flush_all)
		return 1;
	for (size_t i = 0; i < r->nflush; i++)
		if (strcmp(r->flush_ids[i], id) == 0)
			return 1;
	return 0;
}

/*
 * The arrival the scheduler counts the lifetime from: the message's, except
 * that a message whose lifetime ran out while we were not running (a long
 * stop, a queue moved from elsewhere) still gets one attempt, as in Postfix:
 * when no recipient was tried after its lifetime ended (last_try: the latest
 * next try recorded), the lifetime is taken to end one queue_retry_initial from
 * now, so the message expires only if that attempt does not deliver it. Once
 * tried, its next try lies past the end, and it expires at the next start.
 */
static uint64_t arrival_for(const struct deliver_runner *r, int64_t received_at, int64_t last_try,
                            uint64_t now)
{
	const struct conf *c = r->x.c;
	uint64_t a = received_at > 0 ? (uint64_t)received_at : 0;
	uint64_t life = (uint64_t)c->queue_lifetime;
	if (a + life > now || (last_try > 0 && (uint64_t)last_try > a + life))
		return a;
	return now + (uint64_t)c->queue_retry_initial - life;
}

static void sched_add(struct deliver_runner *r, const struct scheduler_entry *e)
{
	int rc = scheduler_add(r->sched, e);
	if (rc == SCHEDULER_OK || rc == SCHEDULER_EDUP)
		return;
	log_err("deliver %s: recipient %u not scheduled (%s); delivered after the next start",
	        e->msg_id, e->rcpt, rc == SCHEDULER_EFULL ? "schedule full" : "error");
}

struct remove_task {
	struct deliver_task t;
	char id[QUEUE_ID_MAX];
	struct queue *q;
	struct deliver_runner *r;
};

static void remove_work(struct deliver_task *t)
{
	struct remove_task *rt = (struct remove_task *)(void *)t;
	if (queue_remove_done(rt->q, rt->id) < 0)
		log_warning("deliver %s: cannot remove the delivered message", rt->id);
}

static void remove_done(struct deliver_task *t)
{
	free(t);
}

/* A message whose recipients are all done (before a crash, say) only waits to go. */
static void remove_later(struct deliver_runner *r, const char *id)
{
	struct remove_task *rt = calloc(1, sizeof *rt);
	if (!rt)
		return;
	rt->t.work = remove_work;
	rt->t.done = remove_done;
	rt->q = r->x.q;
	rt->r = r;
	snprintf(rt->id, sizeof rt->id, "%s", id);
	deliver_pool_submit(r->pool, &rt->t);
}

/* Schedules every unfinished recipient of a loaded message (a commit, a listing). */
static void add_rcpts(struct deliver_runner *r, struct dmsg *m)
{
	const struct envelope *env = m->env;
	uint64_t now = now_u(r);
	int force = r->once && flushed(r, m->id);
	int64_t last_try = 0;
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (env->rcpts[i].state == RCPT_DEFERRED && env->rcpts[i].next_try > last_try)
			last_try = env->rcpts[i].next_try;
	uint64_t arrival = arrival_for(r, env->received_at, last_try, now);
	size_t open = 0;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct envelope_rcpt *rc = &env->rcpts[i];
		if (rc->state == RCPT_DELIVERED || rc->state == RCPT_FAILED)
			continue;
		open++;
		uint64_t due = now;
		if (rc->state == RCPT_DEFERRED && !force && rc->next_try > 0)
			due = (uint64_t)rc->next_try;
		struct scheduler_entry e = {
		        .msg_id = m->id,
		        .rcpt = (uint32_t)i,
		        .dest = rc->route && *rc->route ? rc->route : SCHEDULER_DEST_LOCAL,
		        .arrival = arrival,
		        .due = due,
		        .attempts = rc->attempts > 0 ? (uint32_t)rc->attempts : 0,
		        .warned = rc->delay_notified,
		};
		sched_add(r, &e);
	}
	if (open == 0)
		remove_later(r, m->id);
}

/*
 * A message the commit handed over with its envelope and open file (a
 * session's): loaded as the load task would have (routes set), without it, and
 * its jobs started at once while it is held.
 */
static void adopt(struct deliver_runner *r, struct dmsg *m, struct queue_committed *c)
{
	set_routes(&r->x, c->env);
	m->env = c->env;
	m->fd = c->fd;
	m->data_off = c->data_off;
	m->len = c->data_len;
	c->env = NULL;
	c->fd = -1;
	m->st = DMSG_LOADED;
	m->refs++;
	add_rcpts(r, m);
	pump(r);
	msg_put(r, m);
}

/* A message committed (c: with its envelope and file when the commit kept them), or listed. */
static void on_committed(void *arg, struct queue_committed *c)
{
	struct deliver_runner *r = arg;
	struct dmsg *m = msg_get(r, c->id);
	if (!m) {
		log_err("deliver %s: out of memory; delivered after the next start", c->id);
		return;
	}
	if (m->st == DMSG_LOADED) {
		add_rcpts(r, m);
		return;
	}
	struct stat sb;
	if (m->st == DMSG_UNLOADED && c->env && c->fd >= 0 && fstat(c->fd, &sb) == 0) {
		/* Removed since (`sharemail queue delete`, or delivered already): as a load's ENOENT. */
		if (sb.st_nlink == 0) {
			m->refs++;
			msg_put(r, m);
			return;
		}
		adopt(r, m, c);
		return;
	}
	m->add_on_load = 1;
	msg_load(r, m);
}

static int on_startup(void *arg, const struct queue_pending *p)
{
	struct deliver_runner *r = arg;
	if (p->n_rcpts == 0) {
		remove_later(r, p->id);
		return 0;
	}
	char key[SCHEDULER_DEST_MAX + 1];
	int64_t last_try = 0;
	for (size_t i = 0; i < p->n_rcpts; i++)
		if (p->rcpts[i].state == RCPT_DEFERRED && p->rcpts[i].next_try > last_try)
			last_try = p->rcpts[i].next_try;
	uint64_t arrival = arrival_for(r, p->received_at, last_try, now_u(r));
	for (size_t i = 0; i < p->n_rcpts; i++) {
		const struct queue_pending_rcpt *rc = &p->rcpts[i];
		if (deliver_policy_rcpt_dest(&r->x.routes, rc->addr, rc->route, key, sizeof key,
		                             NULL) <= DELIVER_DEST_IS_LOCAL)
			snprintf(key, sizeof key, "%s", SCHEDULER_DEST_LOCAL);
		struct scheduler_entry e = {
		        .msg_id = p->id,
		        .rcpt = (uint32_t)rc->index,
		        .dest = key,
		        .arrival = arrival,
		        .due = rc->state == RCPT_DEFERRED && rc->next_try > 0
		                       ? (uint64_t)rc->next_try
		                       : 0,
		        .attempts = rc->attempts > 0 ? (uint32_t)rc->attempts : 0,
		        .warned = rc->delay_notified,
		};
		sched_add(r, &e);
	}
	return 0;
}

static void on_flush(void *arg, const char *id)
{
	struct deliver_runner *r = arg;
	if (r->once) {
		if (!id) {
			r->flush_all = 1;
			return;
		}
		void *v = realloc(r->flush_ids, (r->nflush + 1) * sizeof *r->flush_ids);
		if (!v)
			return;
		r->flush_ids = v;
		snprintf(r->flush_ids[r->nflush++], QUEUE_ID_MAX, "%s", id);
		return;
	}
	size_t n = scheduler_flush(r->sched, id, now_u(r));
	log_info("queue flush %s: %zu recipients due now", id ? id : "(all)", n);
}

/* ---- jobs ---- */

int deliver_job_report(struct deliver_job *j, uint32_t rcpt, const char *to, const char *relay,
                       enum rcpt_state st, const char *status, int peer_code,
                       const char *remote_mta, enum deliver_notice notice)
{
	if (j->nrep == j->caprep) {
		size_t cap = j->caprep ? j->caprep * 2 : 4;
		struct deliver_report *v = realloc(j->rep, cap * sizeof *v);
		if (!v)
			return -1;
		j->rep = v;
		j->caprep = cap;
	}
	struct deliver_report *p = &j->rep[j->nrep];
	memset(p, 0, sizeof *p);
	p->rcpt = rcpt;
	p->state = st;
	p->peer_code = peer_code;
	p->notice = notice;
	p->to = to ? strdup(to) : NULL;
	p->relay = strdup(relay ? relay : "none");
	p->status = strdup(status ? status : "");
	p->remote_mta = remote_mta ? strdup(remote_mta) : NULL;
	if ((to && !p->to) || !p->relay || !p->status || (remote_mta && !p->remote_mta)) {
		free(p->to);
		free(p->relay);
		free(p->status);
		free(p->remote_mta);
		return -1;
	}
	j->nrep++;
	return 0;
}

static void job_free(struct deliver_job *j)
{
	struct deliver_runner *r = j->mgr;
	for (size_t i = 0; i < j->nrep; i++) {
		free(j->rep[i].to);
		free(j->rep[i].relay);
		free(j->rep[i].status);
		free(j->rep[i].remote_mta);
	}
	free(j->rep);
	free(j->out);
	r->jobs--;
	msg_put(r, j->m);
	free(j);
}

void deliver_job_abandon(struct deliver_job *j)
{
	job_free(j);
}

static void record_done(struct deliver_task *t);

static void local_done(struct deliver_task *t)
{
	struct deliver_job *j = (struct deliver_job *)(void *)t;
	if (j->recording)
		record_done(t); /* recorded on the worker already (local_work) */
	else
		deliver_job_outcomes_ready(j);
}

/* 1 if no outcome of j is a deferral (the scheduler, on the loop, gives those their next try). */
static int no_deferral(const struct deliver_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		if (j->out[i].so == SCHEDULER_DEFER_RCPT || j->out[i].so == SCHEDULER_DEFER_DEST)
			return 0;
	return 1;
}

/*
 * The copies, then, when nothing was deferred, the record on the same worker:
 * the loop has nothing to add in between (deliver_job_outcomes_ready only asks the
 * scheduler for deferrals' next tries), so the common case saves a trip through
 * the loop and a worker's wake-up per message.
 */
static void local_work(struct deliver_task *t)
{
	struct deliver_job *j = (struct deliver_job *)(void *)t;
	deliver_local_work(j);
	if (no_deferral(j)) {
		j->recording = 1;
		deliver_record_work(j);
	}
}

static void job_start(struct deliver_job *j)
{
	struct deliver_runner *r = j->mgr;
	if (r->stopping) { /* nothing new at shutdown: the queue keeps the recipients */
		job_free(j);
		return;
	}
	switch (j->kind) {
	case DELIVER_JOB_LOCAL:
		j->task.work = local_work;
		j->task.done = local_done;
		deliver_pool_submit(r->pool, &j->task);
		break;
	case DELIVER_JOB_RELAY: deliver_relay_start(r->relay, j); break;
	default: deliver_job_outcomes_ready(j); break; /* the record task decides */
	}
}

static void record_work(struct deliver_task *t)
{
	deliver_record_work((struct deliver_job *)(void *)t);
}

/* The record is written: the scheduler hears the rest, the connection gets its next job. */
static void record_done(struct deliver_task *t)
{
	struct deliver_job *j = (struct deliver_job *)(void *)t;
	struct deliver_runner *r = j->mgr;
	uint64_t now = now_u(r);
	for (size_t i = 0; i < j->n; i++) {
		struct deliver_outcome *o = &j->out[i];
		if (o->so && !o->told)
			scheduler_result(r->sched, j->m->id, o->rcpt, o->so, now, NULL);
		o->told = 1;
	}
	char dest[SCHEDULER_DEST_MAX + 1];
	int relay = j->kind == DELIVER_JOB_RELAY;
	snprintf(dest, sizeof dest, "%s", j->dest);
	job_free(j);
	if (relay && !r->stopping)
		deliver_next_for_dest(r, dest);
}

void deliver_job_outcomes_ready(struct deliver_job *j)
{
	struct deliver_runner *r = j->mgr;
	uint64_t now = now_u(r);
	int delivered = 0;
	for (size_t i = 0; i < j->n; i++) {
		struct deliver_outcome *o = &j->out[i];
		delivered |= o->state == RCPT_DELIVERED;
		if (o->so != SCHEDULER_DEFER_RCPT && o->so != SCHEDULER_DEFER_DEST)
			continue;
		uint64_t next = 0;
		if (scheduler_result(r->sched, j->m->id, o->rcpt, o->so, now, &next) == 0)
			o->next_try = next;
		o->told = 1;
	}
	if (j->kind == DELIVER_JOB_RELAY && delivered)
		deliver_crash_at(&r->x, DELIVER_CRASH_RELAY_AFTER_250);
	j->recording = 1;
	j->task.work = record_work;
	j->task.done = record_done;
	deliver_pool_submit(r->pool, &j->task);
}

/* A job from the scheduler: its message loaded first when it is not in memory. */
static void dispatch(struct deliver_runner *r, const struct scheduler_job *sj)
{
	uint64_t now = now_u(r);
	struct deliver_job *j = calloc(1, sizeof *j);
	struct dmsg *m = j ? msg_get(r, sj->msg_id) : NULL;
	if (j)
		j->out = calloc(sj->n ? sj->n : 1, sizeof *j->out);
	if (!j || !m || !j->out) {
		log_err("deliver %s: out of memory; tried again later", sj->msg_id);
		if (sj->kind == SCHEDULER_JOB_DELIVER)
			for (size_t i = 0; i < sj->n; i++)
				scheduler_result(r->sched, sj->msg_id, sj->rcpts[i].rcpt,
				                 SCHEDULER_DEFER_RCPT, now, NULL);
		if (j)
			free(j->out);
		free(j);
		return;
	}
	j->mgr = r;
	j->m = m;
	m->refs++;
	r->jobs++;
	j->arrival = sj->arrival;
	j->started = now;
	snprintf(j->dest, sizeof j->dest, "%s", sj->dest);
	j->n = sj->n;
	for (size_t i = 0; i < sj->n; i++) {
		j->out[i].rcpt = sj->rcpts[i].rcpt;
		j->out[i].attempts = sj->rcpts[i].attempts;
		j->out[i].state = RCPT_PENDING;
	}
	if (sj->kind == SCHEDULER_JOB_EXPIRE)
		j->kind = DELIVER_JOB_EXPIRE;
	else if (sj->kind == SCHEDULER_JOB_DELAY)
		j->kind = DELIVER_JOB_DELAY;
	else if (strcmp(sj->dest, SCHEDULER_DEST_LOCAL) == 0)
		j->kind = DELIVER_JOB_LOCAL;
	else
		j->kind = DELIVER_JOB_RELAY;
	if (m->st == DMSG_LOADED) {
		job_start(j);
		return;
	}
	j->next = m->waiting;
	m->waiting = j;
	msg_load(r, m);
}

/* Starts every job the scheduler has now. */
static void pump(struct deliver_runner *r)
{
	while (!r->stopping && scheduler_next(r->sched, now_u(r), r->sj) == 1)
		dispatch(r, r->sj);
}

struct deliver_pool *deliver_workers(struct deliver_runner *r)
{
	return r->pool;
}

int deliver_next_for_dest(struct deliver_runner *r, const char *dest)
{
	if (r->stopping || scheduler_next_dest(r->sched, dest, now_u(r), r->sj) != 1)
		return 0;
	dispatch(r, r->sj);
	return 1;
}

/* ---- the loop ---- */

static int idle(struct deliver_runner *r)
{
	return r->jobs == 0 && r->loads == 0 && deliver_pool_pending(r->pool) == 0;
}

/* Ends the loop once a run to completion (once) or a shutdown is over. */
static void check_end(struct deliver_runner *r)
{
	if (!idle(r))
		return;
	if (r->once && !r->stopping) {
		pump(r);
		if (!idle(r))
			return;
	} else if (!r->stopping) {
		return;
	}
	event_base_loopbreak(r->base);
}

static void begin_stop(struct deliver_runner *r)
{
	if (r->stopping)
		return;
	r->stopping = 1;
	deliver_relay_stop(r->relay);
}

static void on_efd(evutil_socket_t fd, short what, void *arg)
{
	struct deliver_runner *r = arg;
	uint64_t n;
	while (read(fd, &n, sizeof n) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&r->mu);
	int stop = r->stop_req;
	pthread_mutex_unlock(&r->mu);
	if (stop)
		begin_stop(r);
	if (!r->once && !r->stopping)
		queue_take_committed_env(r->x.q, on_committed, r);
	deliver_pool_complete(r->pool);
	pump(r);
	check_end(r);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct deliver_runner *r = arg;
	if (!r->once && !r->stopping)
		queue_take_flush(r->x.q, on_flush, r);
	pump(r);
	check_end(r);
}

static void wake(void *arg)
{
	struct deliver_runner *r = arg;
	uint64_t one = 1;
	while (write(r->efd, &one, sizeof one) < 0 && errno == EINTR)
		;
}

/* ---- set-up and teardown ---- */

static int is_local(void *arg, const char *domain, size_t len)
{
	return conf_is_local_domain(arg, domain, len);
}

static int parse_routes(struct deliver_runner *r)
{
	size_t n = 0;
	if (deliver_relay_parse_routes(r->x.c, &r->routes, &n) < 0)
		return -1;
	r->x.routes.routes = r->routes;
	r->x.routes.nroutes = n;
	return 0;
}

static void sched_conf(const struct conf *c, unsigned workers, struct scheduler_conf *sc)
{
	scheduler_conf_defaults(sc);
	sc->retry_initial = (uint64_t)c->queue_retry_initial;
	sc->retry_max =
	        (uint64_t)(c->queue_retry_max > c->queue_retry_initial ? c->queue_retry_max
	                                                               : c->queue_retry_initial);
	sc->lifetime = (uint64_t)c->queue_lifetime;
	sc->delay_warning = (uint64_t)c->queue_delay_warning;
	sc->dest_concurrency = (uint32_t)c->relay_destination_concurrency;
	sc->global_concurrency = (uint32_t)c->queue_delivery_concurrency;
	if (sc->global_concurrency > SCHEDULER_CONCURRENCY_MAX)
		sc->global_concurrency = SCHEDULER_CONCURRENCY_MAX;
	/* A local job holds a worker: two per worker keep them busy without a backlog. */
	sc->local_concurrency = 2 * workers;
	sc->batch_max = DELIVER_BATCH_MAX;
	if (getrandom(sc->hash_key, sizeof sc->hash_key, 0) != (ssize_t)sizeof sc->hash_key)
		sc->hash_key[0] = (uint64_t)time_mono_us(); /* still keyed, if weakly */
}

static void mgr_free(struct deliver_runner *r)
{
	if (!r)
		return;
	deliver_relay_free(r->relay);
	if (r->base)
		event_base_loop(r->base, EVLOOP_NONBLOCK); /* evdns' shutdown callbacks */
	deliver_pool_free(r->pool);
	for (size_t i = 0; r->tab && i < r->tabsz; i++) {
		while (r->tab[i]) {
			struct dmsg *m = r->tab[i];
			r->tab[i] = m->hnext;
			dmsg_free(m);
		}
	}
	free(r->tab);
	if (r->efd_ev)
		event_free(r->efd_ev);
	if (r->tick)
		event_free(r->tick);
	if (r->efd >= 0)
		close(r->efd);
	if (r->base)
		event_base_free(r->base);
	scheduler_free(r->sched);
	free(r->sj);
	free(r->routes);
	free(r->flush_ids);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static struct deliver_runner *mgr_new(const struct conf *c, struct queue *q,
                                      struct mailbox_index *idx, int once, char *err, size_t errlen)
{
	struct deliver_runner *r = calloc(1, sizeof *r);
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&r->mu, NULL);
	r->efd = -1;
	r->once = once;
	r->x.c = c;
	r->x.q = q;
	r->x.idx = idx;
	r->x.hostname = c->hostname && *c->hostname ? c->hostname : "localhost";
	r->x.routes.smarthost = c->relay_smarthost && *c->relay_smarthost;
	r->x.routes.is_local = is_local;
	r->x.routes.arg = (void *)c;
	r->x.crash = crash_parse(getenv("SHAREMAIL_TEST_CRASH_AT"));
	const char *off = getenv("SHAREMAIL_TEST_TIME_OFFSET");
	r->x.clock_offset = off ? strtoll(off, NULL, 10) : 0;
	unsigned workers = c->queue_delivery_concurrency < DELIVER_WORKERS_MAX
	                           ? (unsigned)c->queue_delivery_concurrency
	                           : DELIVER_WORKERS_MAX;
	struct scheduler_conf sc;
	sched_conf(c, workers, &sc);
	if (conf_state_path(c, "mail", r->x.mail_root, sizeof r->x.mail_root) < 0) {
		snprintf(err, errlen, "state_dir too long");
		goto fail;
	}
	r->sched = scheduler_new(&sc);
	r->sj = malloc(sizeof *r->sj);
	r->base = event_base_new();
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!r->sched || !r->sj || !r->base || r->efd < 0 || parse_routes(r) < 0) {
		snprintf(err, errlen, "cannot set up delivery: %s",
		         !r->sched ? "scheduler settings" : strerror(errno));
		goto fail;
	}
	r->efd_ev = event_new(r->base, r->efd, EV_READ | EV_PERSIST, on_efd, r);
	r->tick = event_new(r->base, -1, EV_PERSIST, on_tick, r);
	struct timeval tv = {DELIVER_TICK_S, 0};
	if (!r->efd_ev || !r->tick || event_add(r->efd_ev, NULL) < 0 ||
	    event_add(r->tick, &tv) < 0) {
		snprintf(err, errlen, "cannot set up the delivery loop");
		goto fail;
	}
	r->pool = deliver_pool_new(workers, wake, r, err, errlen);
	if (!r->pool)
		goto fail;
	r->relay = deliver_relay_new(r, err, errlen);
	if (!r->relay)
		goto fail;
	return r;
fail:
	mgr_free(r);
	return NULL;
}

/* Lists the whole queue (deliver_queue_once only: no start-up pass there). */
static int list_one(void *arg, const char *id)
{
	struct queue_committed c = {.id = id, .env = NULL, .fd = -1};
	on_committed(arg, &c);
	return 0;
}

static void mgr_run(struct deliver_runner *r)
{
	if (r->once) {
		queue_take_flush(r->x.q, on_flush, r);
		if (queue_list(r->x.q, list_one, r) < 0)
			log_warning("deliver: cannot list the queue");
	} else {
		size_t n = queue_take_startup(r->x.q, on_startup, r);
		if (n)
			log_info("deliver: %zu queued messages scheduled (%zu recipients)", n,
			         scheduler_count(r->sched));
		queue_take_committed_env(r->x.q, on_committed, r);
		queue_take_flush(r->x.q, on_flush, r);
	}
	pump(r);
	check_end(r);
	event_base_dispatch(r->base);
	/* Shutdown (or a run to completion): whatever is still under way ends first. */
	begin_stop(r);
	while (!idle(r)) {
		deliver_pool_complete(r->pool);
		if (!idle(r))
			event_base_loop(r->base, EVLOOP_ONCE);
	}
}

static void *runner_main(void *arg)
{
	mgr_run(arg);
	return NULL;
}

struct deliver_runner *deliver_runner_start(const struct conf *c, struct queue *q,
                                            struct mailbox_index *idx, char *err, size_t errlen)
{
	struct deliver_runner *r = mgr_new(c, q, idx, 0, err, errlen);
	if (!r)
		return NULL;
	int e = pthread_create(&r->thread, NULL, runner_main, r);
	if (e != 0) {
		snprintf(err, errlen, "cannot start the delivery thread: %s", strerror(e));
		mgr_free(r);
		return NULL;
	}
	r->threaded = 1;
	return r;
}

void deliver_runner_kick(struct deliver_runner *r)
{
	if (r)
		wake(r);
}

void deliver_runner_stop(struct deliver_runner *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop_req = 1;
	pthread_mutex_unlock(&r->mu);
	wake(r);
	if (r->threaded)
		pthread_join(r->thread, NULL);
	mgr_free(r);
}

int deliver_queue_once(const struct conf *c, struct queue *q, struct mailbox_index *idx)
{
	char err[256];
	struct deliver_runner *r = mgr_new(c, q, idx, 1, err, sizeof err);
	if (!r) {
		log_err("deliver: %s", err);
		return -1;
	}
	mgr_run(r);
	mgr_free(r);
	return 0;
}
