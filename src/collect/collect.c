/*
 * collect: the DomainPOP collector's thread (see collect.h). The loop owns the
 * POP3 sessions, the routing and dedupe decisions and the SQLite records; a
 * small pool of commit threads runs queue commits (blocking fsyncs), so many
 * are under way at once and share journal commits, while RETRs keep flowing.
 *
 * One message's life: MSG_BEGIN (a struct cmsg) -> MSG_DATA appended -> MSG_END:
 * routed and deduplicated here -> a commit job (queue_msg_begin, our trace
 * field, the data, queue_msg_commit_wait) on a worker -> back on the loop
 * through an eventfd -> the batch waiting to be recorded -> collect_state_record
 * of the whole batch (one transaction) -> DELE (leave_days 0) -> freed.
 */
#include "collect/collect.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "collect/collect_ctl.h"
#include "collect/collect_dedupe.h"
#include "collect/collect_route.h"
#include "collect/collect_state.h"
#include "collect/collect_transport.h"
#include "conf/conf.h"
#include "proto/collect_spec.h"
#include "proto/collect_trace.h"
#include "proto/mailaddr.h"
#include "proto/rfc5322.h"
#include "queue/queue.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/strutil.h"
#include "verify/verify.h"

#define COLLECT_WORKERS 16 /* commits under way at once: their fsyncs share journal commits */
#define COLLECT_BATCH 64 /* messages recorded per SQLite transaction */
#define COLLECT_INFLIGHT_MAX 128 /* messages held in memory (retrieving, committing, to record) */
#define COLLECT_INFLIGHT_BYTES (64u * 1024 * 1024)
#define COLLECT_TRACE_MAX 2048
#define COLLECT_PASSWORD_MAX 256
#define COLLECT_LINE_MAX 1024 /* one answer or status line */
#define COLLECT_KEPT_LOG_MAX 10000 /* (source, UIDL) pairs logged "kept" once per run */

enum crash_point {
	CRASH_NONE = 0,
	CRASH_MID_RETR,
	CRASH_AFTER_COMMIT,
	CRASH_AFTER_RECORD,
	CRASH_AFTER_DELE,
};

/* ---- settings: what the collector keeps of a conf ---- */

struct settings {
	struct collect_spec *specs;
	char **pw_paths; /* password_file resolved against the config file's folder */
	size_t n;
	char *headers; /* the collect_headers names joined, split by collect_route_conf_headers */
	struct collect_route_conf route;
	enum collect_dedupe_mode dedupe;
	int dedupe_days;
	char *fallback; /* mailbox key or NULL */
	char *copy_dir;
	char *received_by;
	struct strlist domains; /* local_domains (lower case) */
	char *hostname;
	int refs; /* the runner's, and one per cycle that began with it */
};

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

static void settings_free(struct settings *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->pw_paths[i]);
	free(s->pw_paths);
	free(s->specs);
	free(s->headers);
	free(s->fallback);
	free(s->copy_dir);
	free(s->received_by);
	strlist_free(&s->domains);
	free(s->hostname);
	free(s);
}

static void settings_unref(struct settings *s)
{
	if (s && --s->refs == 0)
		settings_free(s);
}

static int settings_is_local(void *arg, const char *addr, const char *domain)
{
	const struct settings *s = arg;
	for (size_t i = 0; i < s->domains.n; i++)
		if (ascii_equal_ci(domain, strlen(domain), s->domains.v[i]))
			return 1;
	return 0;
}

/* The folder of the config file, for relative password_file paths. */
static char *conf_folder(const struct conf *c)
{
	char *d = strdup(c->path ? c->path : ".");
	if (!d)
		return NULL;
	char *slash = strrchr(d, '/');
	if (slash && slash != d)
		*slash = '\0';
	else if (slash)
		slash[1] = '\0';
	else
		snprintf(d, strlen(d) + 1, ".");
	return d;
}

static int settings_sources(struct settings *s, const struct conf *c, char *err, size_t errlen)
{
	s->n = c->collect_source.n;
	s->specs = calloc(s->n ? s->n : 1, sizeof *s->specs);
	s->pw_paths = calloc(s->n ? s->n : 1, sizeof *s->pw_paths);
	char *dir = conf_folder(c);
	if (!s->specs || !s->pw_paths || !dir) {
		free(dir);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < s->n; i++) {
		char why[256];
		if (collect_spec_parse(c->collect_source.v[i], &s->specs[i], why, sizeof why) < 0) {
			snprintf(err, errlen, "collect_source: %s", why);
			free(dir);
			return -1;
		}
		const char *f = s->specs[i].password_file;
		size_t need = strlen(dir) + strlen(f) + 2;
		if ((s->pw_paths[i] = malloc(need)) == NULL) {
			free(dir);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		snprintf(s->pw_paths[i], need, "%s%s%s", f[0] == '/' ? "" : dir,
		         f[0] == '/' ? "" : "/", f);
	}
	free(dir);
	return 0;
}

static struct settings *settings_new(const struct conf *c, char *err, size_t errlen)
{
	struct settings *s = calloc(1, sizeof *s);
	if (!s || settings_sources(s, c, err, errlen) < 0) {
		if (!s)
			snprintf(err, errlen, "out of memory");
		settings_free(s);
		return NULL;
	}
	size_t hl = 1;
	for (size_t i = 0; i < c->collect_headers.n; i++)
		hl += strlen(c->collect_headers.v[i]) + 1;
	s->headers = calloc(1, hl);
	s->hostname = strdup(c->hostname ? c->hostname : "localhost");
	s->fallback = dup_or_null(c->collect_fallback);
	s->copy_dir = dup_or_null(c->collect_copy_dir);
	s->received_by = dup_or_null(c->collect_received_by);
	for (size_t i = 0; s->headers && i < c->collect_headers.n; i++) {
		strcat(s->headers, c->collect_headers.v[i]);
		strcat(s->headers, " ");
	}
	for (size_t i = 0; i < c->local_domains.n; i++) {
		char **v = realloc(s->domains.v, (s->domains.n + 1) * sizeof *v);
		if (v)
			s->domains.v = v;
		if (!v || !(v[s->domains.n] = strdup(c->local_domains.v[i]))) {
			s->hostname = (free(s->hostname), NULL);
			break;
		}
		s->domains.n++;
	}
	collect_route_conf_defaults(&s->route);
	if (!s->headers || !s->hostname || (c->collect_fallback && !s->fallback) ||
	    (c->collect_copy_dir && !s->copy_dir) ||
	    (c->collect_received_by && *c->collect_received_by && !s->received_by) ||
	    collect_route_conf_headers(&s->route, s->headers) < 0 ||
	    collect_dedupe_mode_parse(c->collect_dedupe, &s->dedupe) < 0) {
		snprintf(err, errlen, "out of memory, or collect_headers/collect_dedupe unusable");
		settings_free(s);
		return NULL;
	}
	s->route.parse_received = c->collect_parse_received;
	s->route.parse_to_cc = c->collect_parse_to_cc;
	s->route.received_by = s->received_by;
	s->route.is_local = settings_is_local;
	s->route.is_local_arg = s;
	s->dedupe_days = c->collect_dedupe_days;
	return s;
}

/* ---- the runner's structures ---- */

struct creq; /* a `collect now` request */
struct cycle;

/* One message (or one oversize notice) between MSG_BEGIN and its record. */
struct cmsg {
	struct cycle *cy;
	uint64_t num;
	char uidl[COLLECT_STATE_UIDL_MAX + 1];
	int notice; /* an oversize notice: recorded OVERSIZE, nothing to DELE */
	char *buf; /* the message as collected (or the notice) */
	size_t len, cap;
	char (*rcpts)[MAILADDR_MAX + 1];
	char **routes; /* per recipient: a Domain Sharing peer's route, or NULL (local) */
	size_t n_rcpts;
	size_t verifying; /* verify_rcpt answers still awaited */
	int verify_failed; /* a peer could not say: the message waits for the next cycle */
	char key[COLLECT_DEDUPE_KEY_MAX]; /* "" : no dedupe key */
	char sender[MAILADDR_MAX + 1]; /* "" : <> */
	int ok; /* the commit's outcome */
	char qid[QUEUE_ID_MAX];
	struct cmsg *next; /* in the worker queue, the done list, or the batch */
	struct cmsg *rnext; /* in the cycle's routed list, from routing until freed */
};

struct plan_item {
	uint64_t size, num;
};

/* A recorded UIDL as loaded at the listing. */
struct uidl_row {
	char uidl[COLLECT_STATE_UIDL_MAX + 1];
	int state;
	int64_t since;
};

struct source {
	struct collect_spec spec;
	char *pw_path;
	int64_t next_due; /* CLOCK_MONOTONIC seconds */
	struct cycle *cy; /* the cycle under way, or NULL */
	int removed; /* gone from the configuration: freed when its cycle ends */
	struct creq **waiting; /* requests for the next cycle */
	size_t n_waiting;
	/* the last cycle, for `collect status` */
	int64_t last_end; /* epoch seconds, 0: none yet */
	char last[COLLECT_LINE_MAX];
};

struct cycle {
	struct runner *r;
	struct source *src;
	struct settings *set; /* the settings it began with (a reference) */
	struct collect_transport *s; /* NULL once done() came */
	struct creq **reqs; /* answered when this cycle ends */
	size_t n_reqs;
	struct uidl_row *rows;
	size_t n_rows;
	struct plan_item *plan; /* messages to RETR, small ones first */
	size_t n_plan, next_plan;
	uint64_t *dele; /* message numbers to DELE */
	size_t n_dele, next_dele, cap_dele;
	struct cmsg *cur; /* the message being retrieved */
	size_t retr_out; /* RETRs asked, not yet ended */
	size_t committing; /* jobs on the workers */
	struct cmsg *batch; /* committed, to be recorded */
	struct cmsg *routed; /* every routed message still in memory (dedupe within the cycle) */
	size_t n_batch;
	size_t held; /* messages in memory */
	size_t held_bytes;
	int quit_sent, ended, failed;
	int dele_sent;
	char why[COLLECT_LINE_MAX]; /* the first failure */
	unsigned long collected, duplicates, oversize, kept, errors, deleted;
};

struct creq {
	char id[COLLECT_CTL_ID_MAX];
	size_t n_wait; /* cycles still to end */
	int failed;
	char *text; /* the answer's source lines */
	size_t len;
};

struct runner {
	struct queue *q;
	char *state_dir;
	struct collect_state *st;
	struct event_base *base;
	struct event *tick, *wake_ev;
	int wake_fd; /* eventfd: commits done, stop asked, settings changed */
	pthread_t thread;
	pthread_t workers[COLLECT_WORKERS];
	size_t n_workers;
	pthread_mutex_t mu; /* jobs, done, stop, next */
	pthread_cond_t cv;
	struct cmsg *jobs, **jobs_tail, *done;
	int stop_workers;
	int stop_req;
	struct settings *next; /* from collect_runner_reload, applied on the loop */
	/* loop thread only */
	struct verify *verify; /* Domain Sharing: a local-domain recipient on a peer */
	struct settings *set;
	struct source **src;
	size_t n_src;
	int stopping;
	enum crash_point crash;
	unsigned test_timeout; /* SHAREMAIL_TEST_COLLECT_TIMEOUT: every POP3 deadline, seconds */
	char **kept_logged; /* "source uidl" logged as kept once */
	size_t n_kept_logged;
	unsigned long copy_seq;
};

static void crash_check(const struct runner *r, enum crash_point p)
{
	if (r->crash == p) {
		log_err("SHAREMAIL_TEST_CRASH_AT: killing myself (collect point %d)", (int)p);
		kill(getpid(), SIGKILL);
	}
}

static enum crash_point crash_parse(const char *s)
{
	if (!s)
		return CRASH_NONE;
	if (strcmp(s, "collect-mid-retr") == 0)
		return CRASH_MID_RETR;
	if (strcmp(s, "collect-after-commit") == 0)
		return CRASH_AFTER_COMMIT;
	if (strcmp(s, "collect-after-record") == 0)
		return CRASH_AFTER_RECORD;
	if (strcmp(s, "collect-after-dele") == 0)
		return CRASH_AFTER_DELE;
	return CRASH_NONE;
}

static int64_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static int64_t wall_s(void)
{
	return (int64_t)time(NULL);
}

static void wake(struct runner *r)
{
	uint64_t one = 1;
	ssize_t w = write(r->wake_fd, &one, sizeof one);
	(void)w; /* a full counter already wakes the loop */
}

static void cmsg_free(struct cmsg *m)
{
	if (!m)
		return;
	for (size_t i = 0; m->routes && i < m->n_rcpts; i++)
		free(m->routes[i]);
	free(m->routes);
	free(m->buf);
	free(m->rcpts);
	free(m);
}

/* ---- the commit workers ---- */

/* Where the collected copy goes in collect_copy_dir (diagnostics: not fsynced). */
static void copy_write(struct runner *r, const struct cmsg *m, unsigned long seq)
{
	const char *dir = m->cy->set->copy_dir;
	if (!dir || m->notice)
		return;
	char path[4096];
	snprintf(path, sizeof path, "%s/%lld.%lu.%s.eml", dir, (long long)wall_s(), seq,
	         m->qid[0] ? m->qid : "dup");
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_warning("collect: collect_copy_dir: cannot create %s: %s", path,
		            strerror(errno));
		return;
	}
	size_t off = 0;
	while (off < m->len) {
		ssize_t w = write(fd, m->buf + off, m->len - off);
		if (w <= 0 && errno != EINTR)
			break;
		if (w > 0)
			off += (size_t)w;
	}
	close(fd);
}

static int envelope_fill(struct envelope *e, const struct cmsg *m, const char *helo)
{
	if (envelope_set(&e->mail_from, m->sender) != 0 || envelope_set(&e->helo, helo) != 0 ||
	    envelope_set(&e->client_addr, "127.0.0.1") != 0)
		return -1;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		int k = envelope_add_rcpt(e, m->rcpts[i], NULL, 0);
		if (k < 0 || (m->routes && m->routes[i] &&
		              envelope_rcpt_set_route(&e->rcpts[k], m->routes[i]) != 0))
			return -1;
	}
	e->received_at = wall_s();
	e->body = ESMTP_BODY_8BITMIME; /* collected octets are taken as they are */
	return 0;
}

/* One commit: the trace field of ours, then the message as collected. */
static int commit_one(struct runner *r, struct cmsg *m)
{
	struct envelope *e = envelope_new();
	struct queue_msg *qm = e ? queue_msg_begin(r->q) : NULL;
	int rc = -1;
	if (qm && envelope_fill(e, m, m->cy->src->spec.host) == 0) {
		char trace[COLLECT_TRACE_MAX];
		long tl = 0;
		if (!m->notice)
			tl = collect_trace_format(m->cy->src->spec.host, m->cy->set->hostname,
			                          queue_msg_id(qm), m->cy->src->spec.name, m->uidl,
			                          strlen(m->uidl), wall_s(), trace, sizeof trace);
		if (tl >= 0 && (tl == 0 || queue_msg_write(qm, trace, (size_t)tl) == 0) &&
		    queue_msg_write(qm, m->buf, m->len) == 0) {
			rc = queue_msg_commit_wait(qm, e, m->qid);
			qm = NULL; /* consumed */
		}
	}
	queue_msg_abort(qm);
	envelope_free(e);
	return rc;
}

static void *worker_main(void *arg)
{
	struct runner *r = arg;
	for (;;) {
		pthread_mutex_lock(&r->mu);
		while (!r->jobs && !r->stop_workers)
			pthread_cond_wait(&r->cv, &r->mu);
		struct cmsg *m = r->jobs;
		if (!m) {
			pthread_mutex_unlock(&r->mu);
			return NULL;
		}
		r->jobs = m->next;
		if (!r->jobs)
			r->jobs_tail = &r->jobs;
		unsigned long seq = ++r->copy_seq;
		pthread_mutex_unlock(&r->mu);
		m->ok = m->n_rcpts == 0 || commit_one(r, m) == 0;
		if (!m->ok)
			snprintf(m->qid, sizeof m->qid, "%s", strerror(errno));
		else
			copy_write(r, m, seq);
		pthread_mutex_lock(&r->mu);
		m->next = r->done;
		r->done = m;
		pthread_mutex_unlock(&r->mu);
		wake(r);
	}
}

/* Hands m to the workers (the loop's side). */
static void job_push(struct runner *r, struct cmsg *m)
{
	m->cy->committing++;
	m->next = NULL;
	pthread_mutex_lock(&r->mu);
	*r->jobs_tail = m;
	r->jobs_tail = &m->next;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* ---- requests and status ---- */

static void req_line(struct creq *q, const char *line, int failed)
{
	size_t n = strlen(line);
	char *t = realloc(q->text, q->len + n + 2);
	if (!t)
		return;
	q->text = t;
	memcpy(t + q->len, line, n);
	q->len += n;
	t[q->len++] = '\n';
	t[q->len] = '\0';
	q->failed |= failed;
}

/* One cycle of q's ended (or could not run): answered when it was the last. */
static void req_done(struct runner *r, struct creq *q)
{
	if (--q->n_wait > 0)
		return;
	size_t n = q->len + 16;
	char *ans = malloc(n);
	if (ans) {
		snprintf(ans, n, "%d\n%s", q->failed ? COLLECT_CTL_FAILED : COLLECT_CTL_OK,
		         q->text ? q->text : "");
		if (collect_ctl_answer(r->state_dir, q->id, ans) != 0)
			log_warning("collect: cannot answer request %s: %s", q->id,
			            strerror(errno));
	}
	free(ans);
	free(q->text);
	free(q);
}

static void status_write(struct runner *r)
{
	size_t cap = (r->n_src + 1) * (COLLECT_LINE_MAX + 64), len = 0;
	char *t = calloc(1, cap);
	if (!t)
		return;
	for (size_t i = 0; i < r->n_src; i++) {
		const struct source *s = r->src[i];
		char when[RFC5322_DATE_MAX] = "never";
		if (s->last_end)
			rfc5322_date_format(s->last_end, when, sizeof when);
		len += (size_t)snprintf(t + len, cap - len, "%s: last cycle %s: %s\n", s->spec.name,
		                        when, s->last_end ? s->last : "none yet");
	}
	if (collect_ctl_status_write(r->state_dir, t) != 0)
		log_warning("collect: cannot write the status file: %s", strerror(errno));
	free(t);
}

/* ---- one cycle ---- */

static void cycle_pump(struct cycle *cy);
static void cycle_maybe_end(struct cycle *cy);

static void cycle_fail(struct cycle *cy, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void cycle_fail(struct cycle *cy, const char *fmt, ...)
{
	if (!cy->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(cy->why, sizeof cy->why, fmt, ap);
		va_end(ap);
		cy->failed = 1;
	}
	if (cy->s)
		collect_transport_abort(cy->s, cy->why);
}

static int dele_push(struct cycle *cy, uint64_t num)
{
	if (cy->n_dele == cy->cap_dele) {
		size_t cap = cy->cap_dele ? cy->cap_dele * 2 : 64;
		uint64_t *v = realloc(cy->dele, cap * sizeof *v);
		if (!v)
			return -1;
		cy->dele = v;
		cy->cap_dele = cap;
	}
	cy->dele[cy->n_dele++] = num;
	return 0;
}

/* m leaves memory: out of the routed list, out of the counts, freed. */
static void cycle_release(struct cycle *cy, struct cmsg *m)
{
	for (struct cmsg **pp = &cy->routed; *pp; pp = &(*pp)->rnext)
		if (*pp == m) {
			*pp = m->rnext;
			break;
		}
	cy->held--;
	cy->held_bytes -= m->len;
	cmsg_free(m);
}

/* Records the batch (one transaction), then DELEs what may go. */
static void cycle_record(struct cycle *cy)
{
	struct runner *r = cy->r;
	if (!cy->n_batch)
		return;
	struct collect_state_uidl_rec *u = calloc(cy->n_batch, sizeof *u);
	size_t nd = 0;
	for (struct cmsg *m = cy->batch; m; m = m->next)
		nd += m->key[0] ? m->n_rcpts : 0;
	struct collect_state_dedupe_rec *d = calloc(nd ? nd : 1, sizeof *d);
	if (!u || !d) {
		free(u);
		free(d);
		cycle_fail(cy, "out of memory recording a batch");
		return;
	}
	size_t nu = 0;
	nd = 0;
	for (struct cmsg *m = cy->batch; m; m = m->next) {
		u[nu].uidl = m->uidl;
		u[nu++].state =
		        m->notice ? COLLECT_STATE_UIDL_OVERSIZE : COLLECT_STATE_UIDL_COLLECTED;
		for (size_t i = 0; m->key[0] && i < m->n_rcpts; i++) {
			d[nd].key = m->key;
			d[nd++].rcpt = m->rcpts[i];
		}
	}
	int rc = collect_state_record(r->st, cy->src->spec.name, u, nu, d, nd, wall_s());
	free(u);
	free(d);
	if (rc != 0) {
		/* Queued but not recorded: collected again next time (one duplicate each). */
		cycle_fail(cy, "cannot record collected messages: %s", collect_state_error(r->st));
		return;
	}
	crash_check(r, CRASH_AFTER_RECORD);
	while (cy->batch) {
		struct cmsg *m = cy->batch;
		cy->batch = m->next;
		if (!m->notice && cy->src->spec.leave_days == 0 && dele_push(cy, m->num) != 0)
			cycle_fail(cy, "out of memory");
		cycle_release(cy, m);
	}
	cy->n_batch = 0;
}

/* A commit job came back (on the loop). */
static void cycle_committed(struct cycle *cy, struct cmsg *m)
{
	cy->committing--;
	if (!m->ok) {
		log_err("collect: %s: uidl %s: cannot queue: %s", cy->src->spec.name, m->uidl,
		        m->qid);
		cycle_fail(cy, "queue: %s", m->qid);
		cycle_release(cy, m);
	} else {
		if (m->n_rcpts && m->notice) {
			log_info("%s: notice to %s: uidl %s of %s is over max_size", m->qid,
			         m->rcpts[0], m->uidl, cy->src->spec.name);
		} else if (m->n_rcpts) {
			crash_check(cy->r, CRASH_AFTER_COMMIT);
			log_info("%s: collected from %s uidl %s: %zu recipient%s", m->qid,
			         cy->src->spec.name, m->uidl, m->n_rcpts,
			         m->n_rcpts == 1 ? "" : "s");
		}
		m->next = cy->batch;
		cy->batch = m;
		cy->n_batch++;
	}
	if (cy->n_batch >= COLLECT_BATCH || (cy->committing == 0 && cy->retr_out == 0))
		cycle_record(cy);
	cycle_pump(cy);
	cycle_maybe_end(cy);
}

/* ---- a retrieved message: route, dedupe, hand to the commit pool ---- */

/* The Return-Path's mailbox into out ("" when there is none or it is <> or not valid). */
static void sender_of(const char *hdr, size_t hlen, char *out, size_t outsz)
{
	size_t pos = 0;
	struct rfc5322_field f;
	out[0] = '\0';
	int r;
	while ((r = rfc5322_next_field(hdr, hlen, &pos, &f)) != 0) {
		if (r < 0) {
			const char *nl = memchr(hdr + pos, '\n', hlen - pos);
			if (!nl)
				return;
			pos = (size_t)(nl - hdr) + 1;
			continue;
		}
		if (!rfc5322_field_is(&f, "Return-Path"))
			continue;
		const char *v = f.value, *e = f.value + f.value_len;
		while (v < e && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
			v++;
		while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
			e--;
		if (e - v >= 2 && *v == '<' && e[-1] == '>') {
			v++;
			e--;
		}
		struct mailaddr a;
		if (e > v && (size_t)(e - v) < outsz &&
		    mailaddr_parse_exact(v, (size_t)(e - v), &a) == MAILADDR_OK) {
			memcpy(out, v, (size_t)(e - v));
			out[e - v] = '\0';
		}
		return; /* the topmost one: the ISP's final delivery wrote it */
	}
}

/*
 * 1 if (key, rcpt) belongs to another message of this cycle still in memory
 * (committing or waiting for its record: not in collect_state yet).
 */
static int routed_has(const struct cycle *cy, const struct cmsg *self, const char *rcpt)
{
	for (const struct cmsg *m = cy->routed; m; m = m->rnext)
		for (size_t i = 0; m != self && strcmp(m->key, self->key) == 0 && i < m->n_rcpts;
		     i++)
			if (strcmp(m->rcpts[i], rcpt) == 0)
				return 1;
	return 0;
}

static struct collect_route_result route_res; /* the loop thread's: 32 KiB */

static int rcpt_taken(struct cycle *cy, const struct cmsg *m, const char *rcpt)
{
	if (!m->key[0])
		return 0;
	if (routed_has(cy, m, rcpt))
		return 1;
	int seen = collect_state_dedupe_seen(cy->r->st, m->key, rcpt);
	if (seen < 0)
		log_warning("collect: dedupe lookup failed (%s): delivering",
		            collect_state_error(cy->r->st));
	return seen == 1;
}

/*
 * The recipients routing gives m, minus those that have it already: 0, 1 when
 * routing named nobody (and there is no fallback), -1 out of memory.
 */
static int route_and_dedupe(struct cycle *cy, struct cmsg *m)
{
	long hend = rfc5322_header_end(m->buf, m->len);
	size_t hlen = hend >= 0 ? (size_t)hend : m->len;
	const struct settings *set = cy->set;
	enum collect_route_rule rule = collect_route(&set->route, m->buf, hlen, &route_res);
	if (collect_dedupe_key(set->dedupe, m->buf, hlen, m->key, sizeof m->key) < 0)
		m->key[0] = '\0';
	sender_of(m->buf, hlen, m->sender, sizeof m->sender);
	size_t n = route_res.n_rcpts;
	if (rule == COLLECT_ROUTE_NONE && set->fallback) {
		snprintf(route_res.rcpts[0], sizeof route_res.rcpts[0], "%s", set->fallback);
		n = 1;
	}
	m->rcpts = calloc(n ? n : 1, sizeof *m->rcpts);
	if (!m->rcpts)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!rcpt_taken(cy, m, route_res.rcpts[i]))
			memcpy(m->rcpts[m->n_rcpts++], route_res.rcpts[i], MAILADDR_MAX + 1);
	}
	if (n == 0)
		return 1; /* nobody: kept on the ISP */
	log_info("collect: %s: uidl %s: routed by %s (%s) to %zu, %zu already had it",
	         cy->src->spec.name, m->uidl, route_res.header ? route_res.header : "fallback",
	         collect_route_rule_name(rule), m->n_rcpts, n - m->n_rcpts);
	if (m->n_rcpts < n)
		cy->duplicates += n - m->n_rcpts;
	return 0;
}

/* "source uidl" was logged as kept already (once per run). */
static int kept_logged_once(struct runner *r, const char *source, const char *uidl)
{
	char key[COLLECT_SPEC_NAME_MAX + COLLECT_STATE_UIDL_MAX + 2];
	snprintf(key, sizeof key, "%s %s", source, uidl);
	for (size_t i = 0; i < r->n_kept_logged; i++)
		if (strcmp(r->kept_logged[i], key) == 0)
			return 1;
	if (r->n_kept_logged < COLLECT_KEPT_LOG_MAX) {
		char **v = realloc(r->kept_logged, (r->n_kept_logged + 1) * sizeof *v);
		if (v) {
			r->kept_logged = v;
			if ((v[r->n_kept_logged] = strdup(key)) != NULL)
				r->n_kept_logged++;
		}
	}
	return 0;
}

/* Every recipient's verdict is in: to the commit pool, or (a peer could not say) not now. */
static void verify_settled(struct cycle *cy, struct cmsg *m)
{
	if (!m->verify_failed) {
		job_push(cy->r, m);
		return;
	}
	cy->errors++;
	if (m->n_rcpts)
		cy->collected--;
	cycle_release(cy, m); /* not recorded: collected again next cycle */
}

struct verify_ctx {
	struct cmsg *m;
	size_t i;
};

/* One recipient's verdict: a peer's route, or local; TEMPFAIL keeps the message back. */
static void verify_apply(struct cmsg *m, size_t i, const struct verify_answer *a)
{
	if (a->status == VERIFY_REMOTE && a->route[0]) {
		m->routes[i] = strdup(a->route);
		if (!m->routes[i])
			m->verify_failed = 1;
	} else if (a->status == VERIFY_TEMPFAIL) {
		log_warning("collect: %s: uidl %s: %s cannot be verified now (%s); the message "
		            "waits for the next cycle",
		            m->cy->src->spec.name, m->uidl, m->rcpts[i], a->reason);
		m->verify_failed = 1;
	}
}

static void on_verified(void *arg, const struct verify_answer *a)
{
	struct verify_ctx *vc = arg;
	struct cmsg *m = vc->m;
	verify_apply(m, vc->i, a);
	free(vc);
	m->cy->committing--; /* the verification counted as work under way */
	if (--m->verifying == 0)
		verify_settled(m->cy, m);
	cycle_pump(m->cy);
	cycle_maybe_end(m->cy);
}

/*
 * With Domain Sharing, a recipient in a local domain may live on a peer: ask as
 * RCPT does (verify.h), so the queue routes the copy there ("[HOST]:PORT"), as it
 * would a message received over SMTP.
 */
static void verify_start(struct cycle *cy, struct cmsg *m)
{
	struct verify *v = cy->r->verify;
	if (!v || !m->n_rcpts) {
		job_push(cy->r, m);
		return;
	}
	m->routes = calloc(m->n_rcpts, sizeof *m->routes);
	if (!m->routes) {
		m->verify_failed = 1;
		verify_settled(cy, m);
		return;
	}
	m->verifying = 1; /* held while asking, so an answer given at once cannot settle it */
	for (size_t i = 0; i < m->n_rcpts; i++) {
		struct verify_answer a;
		struct verify_req *req = NULL;
		struct verify_ctx *vc = calloc(1, sizeof *vc);
		if (!vc) {
			m->verify_failed = 1;
			break;
		}
		vc->m = m;
		vc->i = i;
		int r = verify_rcpt(v, m->rcpts[i], strlen(m->rcpts[i]), m->sender,
		                    strlen(m->sender), &a, on_verified, vc, &req);
		if (r == 1) {
			m->verifying++;
			cy->committing++;
			continue;
		}
		free(vc);
		verify_apply(m, i, &a);
	}
	if (--m->verifying == 0)
		verify_settled(cy, m);
}

static void msg_end(struct cycle *cy)
{
	struct cmsg *m = cy->cur;
	cy->cur = NULL;
	cy->retr_out--;
	int rc = route_and_dedupe(cy, m);
	if (rc < 0) {
		cycle_fail(cy, "out of memory routing a message");
	} else if (rc > 0) {
		cy->kept++;
		if (!kept_logged_once(cy->r, cy->src->spec.name, m->uidl))
			log_warning("collect: %s: uidl %s: no local recipient in its header fields "
			            "and no collect_fallback: left on the server",
			            cy->src->spec.name, m->uidl);
	}
	if (rc != 0) {
		cy->held--;
		cy->held_bytes -= m->len;
		cmsg_free(m);
		return;
	}
	if (m->n_rcpts)
		cy->collected++;
	m->rnext = cy->routed;
	cy->routed = m;
	verify_start(cy, m);
}

static void msg_data(struct cycle *cy, const char *data, size_t len)
{
	struct cmsg *m = cy->cur;
	if (!m)
		return;
	if (m->len == 0)
		crash_check(cy->r, CRASH_MID_RETR);
	if (m->len + len > m->cap) {
		size_t cap = m->cap ? m->cap : 8192;
		while (cap < m->len + len)
			cap *= 2;
		char *b = realloc(m->buf, cap);
		if (!b) {
			cycle_fail(cy, "out of memory retrieving a message");
			return;
		}
		m->buf = b;
		m->cap = cap;
	}
	memcpy(m->buf + m->len, data, len);
	m->len += len;
	cy->held_bytes += len;
}

static void msg_begin(struct cycle *cy, const struct pop3_client_event *ev)
{
	const struct pop3_client_listing *l = collect_transport_listing(cy->s);
	struct cmsg *m = calloc(1, sizeof *m);
	if (!m || !l) {
		free(m);
		cycle_fail(cy, "out of memory");
		return;
	}
	m->cy = cy;
	m->num = ev->num;
	/* Entries ascend by number, and numbers are 1..count (RFC 1939 5): the first guess. */
	const struct pop3_client_entry *e = NULL;
	if (ev->num >= 1 && ev->num <= l->n && l->entries[ev->num - 1].num == ev->num)
		e = &l->entries[ev->num - 1];
	for (size_t i = 0; !e && i < l->n; i++)
		if (l->entries[i].num == ev->num)
			e = &l->entries[i];
	if (e)
		memcpy(m->uidl, e->uid, strlen(e->uid) + 1);
	cy->cur = m;
	cy->held++;
}

/* A message the server could not give, or the session ended before it came whole. */
static void msg_lost(struct cycle *cy, const struct pop3_client_event *ev, int error)
{
	if (cy->cur && cy->cur->num == ev->num) {
		cy->held--;
		cy->held_bytes -= cy->cur->len;
		cmsg_free(cy->cur);
		cy->cur = NULL;
	}
	cy->retr_out--;
	if (error) {
		cy->errors++;
		log_warning("collect: %s: message %llu not retrieved: %s%s%s", cy->src->spec.name,
		            (unsigned long long)ev->num, pop3_client_msg_error_name(ev->error),
		            ev->text && *ev->text ? ": " : "", ev->text ? ev->text : "");
	}
}

/* ---- the listing: what to take ---- */

static int row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct uidl_row *)a)->uidl, ((const struct uidl_row *)b)->uidl);
}

static int row_load(void *arg, const char *uidl, enum collect_state_uidl state, int64_t since)
{
	struct cycle *cy = arg;
	struct uidl_row *v = realloc(cy->rows, (cy->n_rows + 1) * sizeof *v);
	if (!v)
		return 1;
	cy->rows = v;
	snprintf(v[cy->n_rows].uidl, sizeof v[cy->n_rows].uidl, "%s", uidl);
	v[cy->n_rows].state = (int)state;
	v[cy->n_rows].since = since;
	cy->n_rows++;
	return 0;
}

static const struct uidl_row *row_find(const struct cycle *cy, const char *uidl)
{
	struct uidl_row key;
	snprintf(key.uidl, sizeof key.uidl, "%s", uidl);
	return cy->n_rows ? bsearch(&key, cy->rows, cy->n_rows, sizeof key, row_cmp) : NULL;
}

static int plan_cmp(const void *a, const void *b)
{
	const struct plan_item *x = a, *y = b;
	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	return x->num < y->num ? -1 : x->num > y->num;
}

/* The notice of a message over max_size: a new message to the postmaster. */
static void oversize_notice(struct cycle *cy, const struct pop3_client_entry *e)
{
	const struct settings *set = cy->set;
	struct cmsg *m = calloc(1, sizeof *m);
	char date[RFC5322_DATE_MAX];
	rfc5322_date_format(wall_s(), date, sizeof date);
	const char *dom = set->domains.n ? set->domains.v[0] : set->hostname;
	size_t cap = 4096;
	if (!m || !(m->buf = malloc(cap)) || !(m->rcpts = calloc(1, sizeof *m->rcpts))) {
		cmsg_free(m);
		cycle_fail(cy, "out of memory");
		return;
	}
	m->cy = cy;
	m->notice = 1;
	m->num = e->num;
	snprintf(m->uidl, sizeof m->uidl, "%s", e->uid);
	snprintf(m->rcpts[0], sizeof m->rcpts[0], "postmaster@%s", dom);
	m->n_rcpts = 1;
	int n = snprintf(m->buf, cap,
	                 "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	                 "To: postmaster@%s\r\n"
	                 "Subject: DomainPOP: a message over max_size was left on the server\r\n"
	                 "Date: %s\r\n"
	                 "Auto-Submitted: auto-generated\r\n"
	                 "\r\n"
	                 "The collector of %s found message %llu (unique-id %s) of\r\n"
	                 "%llu octets, over max_size (%lld octets). It was not retrieved and\r\n"
	                 "stays on the server; this notice is sent once for it. Raise max_size\r\n"
	                 "on the collect_source line, or fetch it with a mail client.\r\n",
	                 set->hostname, dom, date, cy->src->spec.name, (unsigned long long)e->num,
	                 e->uid, (unsigned long long)e->size, (long long)cy->src->spec.max_size);
	m->len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
	m->cap = cap;
	cy->held++;
	cy->held_bytes += m->len;
	cy->oversize++;
	log_warning("collect: %s: message %llu (uidl %s, %llu octets) is over max_size; left on "
	            "the server, postmaster told",
	            cy->src->spec.name, (unsigned long long)e->num, e->uid,
	            (unsigned long long)e->size);
	job_push(cy->r, m);
}

/* What one listed message needs: 1 RETR, 0 nothing (or a DELE / a notice queued). */
static int plan_entry(struct cycle *cy, const struct pop3_client_entry *e, int64_t now)
{
	const struct uidl_row *row = row_find(cy, e->uid);
	int leave = cy->src->spec.leave_days;
	if (row && row->state == COLLECT_STATE_UIDL_COLLECTED) {
		/* Recorded earlier, not deleted yet (leave_days, or a crash before QUIT). */
		if (leave == 0 || row->since + (int64_t)leave * 86400 <= now)
			dele_push(cy, e->num);
		return 0;
	}
	if (row && row->state == COLLECT_STATE_UIDL_OVERSIZE)
		return 0;
	if ((int64_t)e->size > cy->src->spec.max_size) {
		oversize_notice(cy, e);
		return 0;
	}
	return 1;
}

/*
 * 1 if uid is listed for more than one message. A server that repeats a
 * unique-id breaks RFC 1939 7: the record could not say which one was
 * collected, and deleting "the collected one" might delete the other, never
 * retrieved. So none of them is touched.
 */
static int uid_repeated(const struct pop3_client_listing *l, const char *uid)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->entries[i].dup_uid && strcmp(l->entries[i].uid, uid) == 0)
			return 1;
	return 0;
}

static void on_listing(struct cycle *cy)
{
	const struct pop3_client_listing *l = collect_transport_listing(cy->s);
	if (!l)
		return;
	if (!l->have_uidl && l->n) {
		cycle_fail(cy, "the server does not answer UIDL: without unique ids every message "
		               "would be collected again each cycle");
		return;
	}
	if (collect_state_uidl_each(cy->r->st, cy->src->spec.name, row_load, cy) < 0) {
		cycle_fail(cy, "cannot read the collected UIDLs: %s",
		           collect_state_error(cy->r->st));
		return;
	}
	if (cy->n_rows) /* qsort's base may not be NULL, even for no rows */
		qsort(cy->rows, cy->n_rows, sizeof *cy->rows, row_cmp);
	const char **present = calloc(l->n ? l->n : 1, sizeof *present);
	cy->plan = calloc(l->n ? l->n : 1, sizeof *cy->plan);
	if (!present || !cy->plan) {
		free(present);
		cycle_fail(cy, "out of memory");
		return;
	}
	size_t np = 0;
	int64_t now = wall_s();
	for (size_t i = 0; i < l->n; i++) {
		const struct pop3_client_entry *e = &l->entries[i];
		if (!e->uid[0])
			continue;
		present[np++] = e->uid;
		if (l->dup_uids && uid_repeated(l, e->uid))
			continue; /* which of them was collected? none is taken, none deleted */
		if (plan_entry(cy, e, now)) {
			cy->plan[cy->n_plan].size = e->size;
			cy->plan[cy->n_plan++].num = e->num;
		}
	}
	/* Rows of messages gone from the server can never matter again. */
	if (collect_state_uidl_retain(cy->r->st, cy->src->spec.name, present, np) < 0)
		log_warning("collect: %s: cannot forget old UIDLs: %s", cy->src->spec.name,
		            collect_state_error(cy->r->st));
	free(present);
	if (l->dup_uids)
		log_warning(
		        "collect: %s: %zu messages repeat an earlier unique-id; no message of "
		        "a repeated unique-id is collected or deleted (they stay on the server)",
		        cy->src->spec.name, l->dup_uids);
	if (cy->n_plan)
		qsort(cy->plan, cy->n_plan, sizeof *cy->plan, plan_cmp);
	log_info("collect: %s: %zu messages listed, %zu to retrieve, %zu to delete",
	         cy->src->spec.name, l->n, cy->n_plan, cy->n_dele);
}

/* Asks for what may be asked now: DELEs first, then RETRs while memory allows; then QUIT. */
static void cycle_pump(struct cycle *cy)
{
	if (!cy->s || cy->quit_sent || cy->failed || !collect_transport_listing(cy->s))
		return;
	while (collect_transport_room(cy->s) > 0) {
		if (cy->next_dele < cy->n_dele) {
			if (collect_transport_dele(cy->s, cy->dele[cy->next_dele]) == 0)
				cy->dele_sent = 1;
			cy->next_dele++;
			continue;
		}
		if (cy->next_plan < cy->n_plan && cy->held < COLLECT_INFLIGHT_MAX &&
		    cy->held_bytes < COLLECT_INFLIGHT_BYTES) {
			if (collect_transport_retr(cy->s, cy->plan[cy->next_plan].num) == 0)
				cy->retr_out++;
			cy->next_plan++;
			continue;
		}
		break;
	}
	if (cy->next_plan == cy->n_plan && cy->retr_out == 0 && cy->committing == 0 &&
	    cy->n_batch == 0 && cy->next_dele == cy->n_dele) {
		if (cy->dele_sent)
			crash_check(cy->r, CRASH_AFTER_DELE);
		if (collect_transport_quit(cy->s) == 0)
			cy->quit_sent = 1;
	}
}

static void on_event(void *arg, struct collect_transport *s, const struct pop3_client_event *ev)
{
	struct cycle *cy = arg;
	switch (ev->action) {
	case POP3_CLIENT_ACT_LISTING: on_listing(cy); break;
	case POP3_CLIENT_ACT_MSG_BEGIN: msg_begin(cy, ev); break;
	case POP3_CLIENT_ACT_MSG_DATA: msg_data(cy, ev->data, ev->len); break;
	case POP3_CLIENT_ACT_MSG_END:
		if (cy->cur)
			msg_end(cy);
		break;
	case POP3_CLIENT_ACT_MSG_ERROR: msg_lost(cy, ev, 1); break;
	case POP3_CLIENT_ACT_MSG_ABORTED: msg_lost(cy, ev, 0); break;
	case POP3_CLIENT_ACT_DELE_OK: cy->deleted++; break;
	case POP3_CLIENT_ACT_DELE_ERROR:
		log_warning("collect: %s: DELE %llu refused: %s", cy->src->spec.name,
		            (unsigned long long)ev->num, ev->text ? ev->text : "");
		break;
	default: break;
	}
	cycle_pump(cy);
}

/* ---- cycle start and end ---- */

static void source_free(struct source *s);

static int any_cycle(const struct runner *r);

static void cycle_summary(const struct cycle *cy, char *out, size_t outsz)
{
	snprintf(out, outsz,
	         "%s%.600s%s collected=%lu duplicates=%lu oversize=%lu kept=%lu errors=%lu "
	         "deleted=%lu",
	         cy->failed ? "failed: " : "ok", cy->failed ? cy->why : "", cy->failed ? ";" : "",
	         cy->collected, cy->duplicates, cy->oversize, cy->kept, cy->errors, cy->deleted);
}

/* The session is over and every commit came back: record, answer, free. */
static void cycle_maybe_end(struct cycle *cy)
{
	if (cy->s || cy->committing || cy->ended)
		return;
	cy->ended = 1;
	cycle_record(cy); /* whatever was committed is recorded, even after a failure */
	struct runner *r = cy->r;
	struct source *src = cy->src;
	char line[COLLECT_LINE_MAX + COLLECT_SPEC_NAME_MAX + 4];
	cycle_summary(cy, src->last, sizeof src->last);
	src->last_end = wall_s();
	snprintf(line, sizeof line, "%s: %s", src->spec.name, src->last);
	if (cy->failed)
		log_warning("collect: %s: cycle %s", src->spec.name, src->last);
	else
		log_info("collect: %s: cycle %s", src->spec.name, src->last);
	for (size_t i = 0; i < cy->n_reqs; i++) {
		req_line(cy->reqs[i], line, cy->failed);
		req_done(r, cy->reqs[i]);
	}
	while (cy->routed) /* only after a failure: every recorded one was released */
		cycle_release(cy, cy->routed);
	free(cy->reqs);
	free(cy->rows);
	free(cy->plan);
	free(cy->dele);
	src->cy = NULL;
	src->next_due = mono_s() + src->spec.interval;
	settings_unref(cy->set);
	free(cy);
	status_write(r);
	if (src->removed)
		source_free(src);
	if (r->stopping && !any_cycle(r))
		event_base_loopbreak(r->base); /* the last cycle a stop waited for */
}

static void on_done(void *arg, const struct collect_transport_result *res)
{
	struct cycle *cy = arg;
	const struct pop3_client_outcome *o = res->outcome;
	cy->s = NULL;
	if (cy->cur) {
		cy->held--;
		cy->held_bytes -= cy->cur->len;
		cmsg_free(cy->cur);
		cy->cur = NULL;
	}
	cy->retr_out = 0;
	if (o->end != POP3_CLIENT_END_OK && o->end != POP3_CLIENT_END_QUIT_UNANSWERED &&
	    !cy->failed) {
		cy->failed = 1;
		int n = snprintf(cy->why, sizeof cy->why, "%s%s%s", pop3_client_end_name(o->end),
		                 o->reason[0] ? ": " : "", o->reason);
		if (res->addr[0] && n > 0 && (size_t)n < sizeof cy->why)
			snprintf(cy->why + n, sizeof cy->why - (size_t)n, " (%s port %d)",
			         res->addr, res->port);
	}
	cycle_maybe_end(cy);
}

/* The password file's first line into pw. 0, or -1 with why. */
static int password_read(const char *path, char *pw, size_t pwsz, char *why, size_t whylen)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(why, whylen, "password_file %s: %s", path, strerror(errno));
		return -1;
	}
	int ok = fgets(pw, (int)pwsz, f) != NULL;
	fclose(f);
	if (ok)
		pw[strcspn(pw, "\r\n")] = '\0';
	if (!ok || !pw[0]) {
		OPENSSL_cleanse(pw, pwsz);
		snprintf(why, whylen, "password_file %s: no password on its first line", path);
		return -1;
	}
	return 0;
}

/* The server's addresses (the collector's own thread: a slow resolver delays only it). */
static size_t resolve(const struct collect_spec *sp, struct sockaddr_storage *out, size_t max,
                      char *why, size_t whylen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	char port[8];
	snprintf(port, sizeof port, "%u", sp->port);
	int e = getaddrinfo(sp->host, port, &hints, &res);
	if (e != 0) {
		snprintf(why, whylen, "cannot resolve %s: %s", sp->host, gai_strerror(e));
		return 0;
	}
	size_t n = 0;
	for (struct addrinfo *a = res; a && n < max; a = a->ai_next)
		if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
		    a->ai_addrlen <= sizeof out[n]) {
			memset(&out[n], 0, sizeof out[n]);
			memcpy(&out[n++], a->ai_addr, a->ai_addrlen);
		}
	freeaddrinfo(res);
	if (!n)
		snprintf(why, whylen, "%s has no IPv4 or IPv6 address", sp->host);
	return n;
}

static void client_conf(const struct runner *r, const struct source *src, const char *pw,
                        struct pop3_client_conf *cc)
{
	pop3_client_conf_defaults(cc);
	cc->user = src->spec.user;
	cc->password = pw;
	cc->tls = src->spec.tls == COLLECT_SPEC_TLS_IMPLICIT   ? POP3_CLIENT_TLS_IMPLICIT
	          : src->spec.tls == COLLECT_SPEC_TLS_STARTTLS ? POP3_CLIENT_TLS_STARTTLS
	                                                       : POP3_CLIENT_TLS_NONE;
	cc->queue_max = COLLECT_INFLIGHT_MAX;
	if (r->test_timeout) {
		struct pop3_client_timeouts *t = &cc->timeouts;
		t->connect = t->greeting = t->reply = t->tls_handshake = t->data = t->quit =
		        r->test_timeout;
	}
}

/* A cycle that could not begin: ends at once with why. */
static void cycle_start_failed(struct cycle *cy, const char *why)
{
	cy->failed = 1;
	snprintf(cy->why, sizeof cy->why, "%s", why);
	cycle_maybe_end(cy);
}

static void cycle_start(struct runner *r, struct source *src)
{
	struct cycle *cy = calloc(1, sizeof *cy);
	if (!cy) {
		log_err("collect: %s: out of memory", src->spec.name);
		src->next_due = mono_s() + src->spec.interval;
		return;
	}
	cy->r = r;
	cy->src = src;
	cy->set = r->set;
	r->set->refs++;
	cy->reqs = src->waiting; /* the requests made before this cycle began */
	cy->n_reqs = src->n_waiting;
	src->waiting = NULL;
	src->n_waiting = 0;
	src->cy = cy;
	char why[COLLECT_LINE_MAX], pw[COLLECT_PASSWORD_MAX];
	struct sockaddr_storage addrs[COLLECT_TRANSPORT_ADDRS_MAX];
	size_t n = resolve(&src->spec, addrs, COLLECT_TRANSPORT_ADDRS_MAX, why, sizeof why);
	if (!n || password_read(src->pw_path, pw, sizeof pw, why, sizeof why) < 0) {
		cycle_start_failed(cy, why);
		return;
	}
	if (cy->set->copy_dir && fs_mkdirs(cy->set->copy_dir, 0700, 0) != 0)
		log_warning("collect: collect_copy_dir %s: %s", cy->set->copy_dir, strerror(errno));
	struct collect_transport_conf tc = {.host = src->spec.host, .addrs = addrs, .n_addrs = n};
	client_conf(r, src, pw, &tc.client);
	cy->s = collect_transport_new(r->base, &tc, on_event, on_done, cy);
	OPENSSL_cleanse(pw, sizeof pw);
	if (!cy->s)
		cycle_start_failed(cy, "cannot start a POP3 session (memory, TLS or settings)");
}

/* ---- sources, requests, the loop ---- */

static void source_free(struct source *s)
{
	if (!s)
		return;
	free(s->pw_path);
	free(s->waiting);
	free(s);
}

static int source_waiting_push(struct source *s, struct creq *q)
{
	struct creq **v = realloc(s->waiting, (s->n_waiting + 1) * sizeof *v);
	if (!v)
		return -1;
	s->waiting = v;
	v[s->n_waiting++] = q;
	return 0;
}

/* Drops a source from the list; its cycle under way frees it at the end. */
static void source_remove(struct runner *r, size_t i)
{
	struct source *s = r->src[i];
	for (size_t k = 0; k < s->n_waiting; k++) {
		req_line(s->waiting[k], "removed from the configuration before its cycle", 1);
		req_done(r, s->waiting[k]);
	}
	s->n_waiting = 0;
	memmove(&r->src[i], &r->src[i + 1], (r->n_src - i - 1) * sizeof r->src[0]);
	r->n_src--;
	if (s->cy)
		s->removed = 1;
	else
		source_free(s);
}

/* Makes set the settings in force: sources matched by name keep their state. */
static int settings_apply(struct runner *r, struct settings *set)
{
	struct source **v = calloc(set->n ? set->n : 1, sizeof *v);
	if (!v)
		return -1;
	for (size_t i = 0; i < set->n; i++) {
		for (size_t k = 0; k < r->n_src && !v[i]; k++)
			if (r->src[k] && strcmp(r->src[k]->spec.name, set->specs[i].name) == 0) {
				v[i] = r->src[k];
				r->src[k] = NULL;
			}
		if (!v[i] && (v[i] = calloc(1, sizeof *v[i])) != NULL)
			v[i]->next_due =
			        mono_s() + set->specs[i].interval; /* `collect now` is sooner */
		char *pw = v[i] ? strdup(set->pw_paths[i]) : NULL;
		if (!pw) {
			log_err("collect: out of memory applying the configuration");
			continue;
		}
		free(v[i]->pw_path);
		v[i]->pw_path = pw;
		v[i]->spec = set->specs[i];
	}
	for (size_t k = r->n_src; k-- > 0;)
		if (r->src[k]) {
			log_info("collect: %s: no longer configured", r->src[k]->spec.name);
			source_remove(r, k);
		}
	free(r->src);
	r->src = v;
	r->n_src = set->n;
	size_t k = 0;
	for (size_t i = 0; i < r->n_src; i++)
		if (r->src[i])
			r->src[k++] = r->src[i];
	r->n_src = k;
	set->refs++;
	settings_unref(r->set);
	r->set = set;
	return 0;
}

static void on_request(void *arg, const char *id, const char *source)
{
	struct runner *r = arg;
	struct creq *q = calloc(1, sizeof *q);
	if (!q)
		return;
	snprintf(q->id, sizeof q->id, "%s", id);
	q->n_wait = 1; /* held until every source is asked */
	for (size_t i = 0; i < r->n_src; i++) {
		struct source *s = r->src[i];
		if (source[0] && !collect_spec_matches(&s->spec, source))
			continue;
		if (source_waiting_push(s, q) == 0) {
			q->n_wait++;
			s->next_due = 0; /* now, or when its cycle under way has ended */
		}
	}
	if (q->n_wait == 1) {
		char line[COLLECT_LINE_MAX];
		snprintf(line, sizeof line, "%.200s: no such collect_source", source);
		req_line(q, line, 1);
	}
	req_done(r, q);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct runner *r = arg;
	if (r->stopping)
		return;
	collect_ctl_take(r->state_dir, on_request, r);
	int64_t now = mono_s();
	for (size_t i = 0; i < r->n_src; i++) {
		struct source *s = r->src[i];
		if (!s->cy && s->next_due <= now)
			cycle_start(r, s);
	}
}

static void stop_all(struct runner *r)
{
	r->stopping = 1;
	for (size_t i = 0; i < r->n_src; i++)
		if (r->src[i]->cy && r->src[i]->cy->s)
			collect_transport_abort(r->src[i]->cy->s, "sharemaild is stopping");
}

static int any_cycle(const struct runner *r)
{
	for (size_t i = 0; i < r->n_src; i++)
		if (r->src[i]->cy)
			return 1;
	return 0;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct runner *r = arg;
	uint64_t v;
	ssize_t n = read(r->wake_fd, &v, sizeof v);
	(void)n;
	pthread_mutex_lock(&r->mu);
	struct cmsg *done = r->done;
	r->done = NULL;
	struct settings *next = r->next;
	r->next = NULL;
	int stop = r->stop_req;
	pthread_mutex_unlock(&r->mu);
	/* The done list is newest first: put it back in order. */
	struct cmsg *rev = NULL;
	while (done) {
		struct cmsg *m = done;
		done = m->next;
		m->next = rev;
		rev = m;
	}
	while (rev) {
		struct cmsg *m = rev;
		rev = m->next;
		cycle_committed(m->cy, m);
	}
	if (next && settings_apply(r, next) != 0)
		settings_free(next);
	if (stop && !r->stopping)
		stop_all(r);
	if (r->stopping && !any_cycle(r))
		event_base_loopbreak(r->base);
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	event_base_dispatch(r->base);
	return NULL;
}

/* ---- the public side ---- */

static void runner_free(struct runner *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop_workers = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (size_t i = 0; i < r->n_workers; i++)
		pthread_join(r->workers[i], NULL);
	for (size_t i = 0; i < r->n_src; i++)
		source_free(r->src[i]);
	free(r->src);
	settings_unref(r->set);
	settings_free(r->next);
	for (size_t i = 0; i < r->n_kept_logged; i++)
		free(r->kept_logged[i]);
	free(r->kept_logged);
	verify_free(r->verify); /* on the loop's base: before it */
	if (r->tick)
		event_free(r->tick);
	if (r->wake_ev)
		event_free(r->wake_ev);
	if (r->base)
		event_base_free(r->base);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	collect_state_close(r->st);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r->state_dir);
	free(r);
}

/* The verifier of Domain Sharing recipients (none without domain_sharing or an index). */
static int verify_open(struct runner *r, const struct conf *c, struct mailbox_index *idx, char *err,
                       size_t errlen)
{
	if (!c->domain_sharing || !c->domain_sharing_host.n || !idx)
		return 0;
	/* peers.status is the SMTP side's verifier's to write. */
	r->verify = verify_new_flags(r->base, c, idx, VERIFY_FLAG_NO_STATUS, err, errlen);
	return r->verify ? 0 : -1;
}

static int runner_events(struct runner *r, char *err, size_t errlen)
{
	struct timeval tv = {COLLECT_CTL_POLL_MS / 1000, (COLLECT_CTL_POLL_MS % 1000) * 1000};
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->base = event_base_new();
	if (r->wake_fd < 0 || !r->base) {
		snprintf(err, errlen, "cannot create the collector's event loop");
		return -1;
	}
	r->tick = event_new(r->base, -1, EV_PERSIST, on_tick, r);
	r->wake_ev = event_new(r->base, r->wake_fd, EV_READ | EV_PERSIST, on_wake, r);
	if (!r->tick || !r->wake_ev || event_add(r->tick, &tv) != 0 ||
	    event_add(r->wake_ev, NULL) != 0) {
		snprintf(err, errlen, "cannot set up the collector's timers");
		return -1;
	}
	return 0;
}

struct collect_runner *collect_runner_start(const struct conf *c, struct queue *q,
                                            struct mailbox_index *idx, char *err, size_t errlen)
{
	char path[4096];
	struct runner *r = calloc(1, sizeof *r);
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->wake_fd = -1;
	r->q = q;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->jobs_tail = &r->jobs;
	r->crash = crash_parse(getenv("SHAREMAIL_TEST_CRASH_AT"));
	const char *t = getenv("SHAREMAIL_TEST_COLLECT_TIMEOUT");
	r->test_timeout = t ? (unsigned)strtoul(t, NULL, 10) : 0;
	struct settings *set = NULL;
	if (!(r->state_dir = strdup(c->state_dir)) ||
	    conf_state_path(c, COLLECT_STATE_FILE, path, sizeof path) != 0) {
		snprintf(err, errlen, "out of memory or state_dir too long");
	} else if (collect_ctl_prepare(c->state_dir) != 0) {
		snprintf(err, errlen, "cannot create %s/%s: %s", c->state_dir, COLLECT_CTL_DIR,
		         strerror(errno));
	} else if ((r->st = collect_state_open(path, err, errlen)) != NULL &&
	           (set = settings_new(c, err, errlen)) != NULL &&
	           runner_events(r, err, errlen) == 0 && verify_open(r, c, idx, err, errlen) == 0 &&
	           settings_apply(r, set) == 0) {
		set = NULL;
		for (; r->n_workers < COLLECT_WORKERS; r->n_workers++)
			if (pthread_create(&r->workers[r->n_workers], NULL, worker_main, r) != 0)
				break;
		if (r->n_workers && pthread_create(&r->thread, NULL, runner_main, r) == 0) {
			log_info("collect: %zu source%s; state in %s", r->n_src,
			         r->n_src == 1 ? "" : "s", path);
			return (struct collect_runner *)r;
		}
		snprintf(err, errlen, "cannot start the collector's threads");
	}
	settings_free(set);
	runner_free(r);
	return NULL;
}

int collect_runner_reload(struct collect_runner *cr, const struct conf *c)
{
	struct runner *r = (struct runner *)cr;
	char err[256];
	if (!r)
		return 0;
	struct settings *set = settings_new(c, err, sizeof err);
	if (!set) {
		log_err("collect: SIGHUP: %s; the collector keeps its settings", err);
		return -1;
	}
	pthread_mutex_lock(&r->mu);
	settings_free(r->next);
	r->next = set;
	pthread_mutex_unlock(&r->mu);
	wake(r);
	return 0;
}

void collect_runner_stop(struct collect_runner *cr)
{
	struct runner *r = (struct runner *)cr;
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop_req = 1;
	pthread_mutex_unlock(&r->mu);
	wake(r);
	pthread_join(r->thread, NULL);
	runner_free(r);
}
