/*
 * deliver: the queue runner thread and local delivery. See deliver.h.
 *
 * One pass: list the queue, and for each message with due recipients read its
 * envelope, deliver, record every recipient's outcome with one queue_update()
 * (atomic), and remove the message once every recipient is DELIVERED or FAILED.
 * A crash between a Maildir commit and queue_update() delivers that copy again on
 * restart: at least once, never lost (hostile-inputs.md "Faults").
 *
 * Within one pass a message gets one copy per distinct final mailbox, even when
 * several recipients (or aliases) lead to it. A recipient whose alias also names
 * foreign addresses gets its local copies and then waits in RCPT_REMOTE for the
 * remote delivery of the next issue (which must deliver only the foreign targets).
 *
 * The message is never held in memory: the first DELIVER_HEADER_SCAN_MAX octets
 * are read once (Date: and loop decisions), the rest is streamed with pread()
 * into each copy.
 */
#include "deliver/deliver.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/deliver_headers.h"
#include "deliver/maildir.h"
#include "proto/mailaddr.h"
#include "queue/queue.h"
#include "util/log.h"
#include "verify/mailbox_index.h"

#define DELIVER_MAX_WAIT_S 30 /* rescan at least this often (queue flush from the CLI) */
#define DELIVER_COPY_BUF 65536
#define DELIVER_TRACE_MAX 65536 /* prepended fields: 100 recipients of 320 octets fit */
#define DELIVER_STATUS_MAX 512

struct deliver_runner {
	const struct conf *c;
	struct queue *q;
	struct mailbox_index *idx;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int kicked;
	int stop;
	char mail_root[MAILDIR_PATH_MAX];
};

/* The message being delivered: its envelope, data and the first octets. */
struct deliver_msg {
	struct envelope *env;
	int fd;
	uint64_t data_off; /* file offset of the message's first octet */
	uint64_t len;
	char *head; /* first min(len, DELIVER_HEADER_SCAN_MAX) octets */
	size_t head_len;
	struct deliver_hdr_scan scan;
	char **done; /* final mailboxes that got a copy during this pass */
	size_t n_done, cap_done;
};

enum deliver_outcome { DELIVER_OK = 0, DELIVER_TEMP, DELIVER_PERM };

/* ---- one copy ---- */

static int already_done(const struct deliver_msg *m, const char *mailbox)
{
	for (size_t i = 0; i < m->n_done; i++)
		if (strcmp(m->done[i], mailbox) == 0)
			return 1;
	return 0;
}

static void mark_done(struct deliver_msg *m, const char *mailbox)
{
	if (m->n_done == m->cap_done) {
		size_t cap = m->cap_done ? m->cap_done * 2 : 8;
		char **v = realloc(m->done, cap * sizeof *v);
		if (!v)
			return; /* only the dedupe is lost: at worst a second copy */
		m->done = v;
		m->cap_done = cap;
	}
	char *s = strdup(mailbox);
	if (s)
		m->done[m->n_done++] = s;
}

/* Copies data octets [from, len) of the message into the Maildir file. */
static int copy_rest(const struct deliver_msg *m, struct maildir_file *f, uint64_t from)
{
	char *buf = malloc(DELIVER_COPY_BUF);
	if (!buf)
		return -1;
	int rc = 0;
	while (from < m->len) {
		size_t want = m->len - from > DELIVER_COPY_BUF ? DELIVER_COPY_BUF
		                                               : (size_t)(m->len - from);
		ssize_t n = pread(m->fd, buf, want, (off_t)(m->data_off + from));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || maildir_write(f, buf, (size_t)n) < 0) {
			rc = -1;
			break;
		}
		from += (uint64_t)n;
	}
	free(buf);
	return rc;
}

/*
 * Writes one copy for the local account `mailbox`. Loops and impossible paths are
 * permanent; I/O errors are temporary. status receives the reason on failure.
 */
static enum deliver_outcome deliver_copy(struct deliver_runner *r, struct deliver_msg *m,
                                         const char *mailbox, char *status, size_t statsz)
{
	const struct conf *c = r->c;
	if (deliver_headers_delivered_to(m->head, m->scan.header_len, mailbox)) {
		snprintf(status, statsz, "550 5.4.6 mail loop: already delivered to %s", mailbox);
		return DELIVER_PERM;
	}
	char dir[MAILDIR_PATH_MAX];
	if (maildir_path(r->mail_root, mailbox, dir, sizeof dir) < 0) {
		snprintf(status, statsz, "550 5.3.0 mailbox name unusable as a Maildir: %s",
		         mailbox);
		return DELIVER_PERM;
	}
	int add_date =
	        c->smtp_add_date_header && m->env->trusted && m->scan.complete && !m->scan.has_date;
	char *trace = malloc(DELIVER_TRACE_MAX);
	long tl = trace ? deliver_headers_build(m->env, mailbox, c->smtp_original_recipient_header,
	                                        add_date, trace, DELIVER_TRACE_MAX)
	                : -1;
	if (tl < 0) {
		free(trace);
		snprintf(status, statsz, "451 4.3.0 cannot build trace fields");
		return DELIVER_TEMP;
	}
	struct maildir_file f;
	int rc = maildir_open(dir, c->hostname ? c->hostname : "localhost", &f);
	if (rc == 0 &&
	    (maildir_write(&f, trace, (size_t)tl) < 0 ||
	     maildir_write(&f, m->head, m->head_len) < 0 || copy_rest(m, &f, m->head_len) < 0)) {
		int e = errno;
		maildir_abort(&f);
		errno = e;
		rc = -1;
	}
	if (rc == 0)
		rc = maildir_commit(&f);
	free(trace);
	if (rc < 0) {
		int e = errno;
		log_warning("deliver %s: %s: %s", m->env->id, mailbox, strerror(e));
		snprintf(status, statsz, "451 4.3.0 cannot write Maildir of %s: %s", mailbox,
		         strerror(e));
		return DELIVER_TEMP;
	}
	mark_done(m, mailbox);
	log_info("deliver %s: delivered to %s", m->env->id, mailbox);
	return DELIVER_OK;
}

/* ---- one recipient ---- */

struct expand_list {
	char **v;
	int *kind;
	size_t n;
	int oom;
};

static int collect_target(void *arg, const char *target, int local)
{
	struct expand_list *l = arg;
	char **v = realloc(l->v, (l->n + 1) * sizeof *v);
	if (v)
		l->v = v;
	int *k = v ? realloc(l->kind, (l->n + 1) * sizeof *k) : NULL;
	if (k)
		l->kind = k;
	char *s = k ? strdup(target) : NULL;
	if (!s) {
		l->oom = 1;
		return 1;
	}
	l->v[l->n] = s;
	l->kind[l->n] = local;
	l->n++;
	return 0;
}

static void expand_list_free(struct expand_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	free(l->kind);
}

/*
 * Delivers one local-domain recipient. Returns its new state and fills status.
 * Rules: a temporary failure of any copy defers the recipient (the copies made
 * are made again on retry: a duplicate, never a loss); otherwise any copy made
 * means DELIVERED (or REMOTE when foreign targets remain); no copy is FAILED.
 */
static enum rcpt_state deliver_local(struct deliver_runner *r, struct deliver_msg *m,
                                     const char *addr, const struct mailaddr *a, char *status,
                                     size_t statsz)
{
	struct expand_list l = {0};
	enum lookup_result lr = mailbox_expand(r->idx, addr, strlen(addr), collect_target, &l);
	if (lr == LOOKUP_TEMPFAIL || l.oom) {
		expand_list_free(&l);
		snprintf(status, statsz, "451 4.3.0 directory temporarily unavailable");
		return RCPT_DEFERRED;
	}
	if (lr == LOOKUP_NOTFOUND && mailaddr_is_postmaster(a->local, a->local_len)) {
		/* RFC 5321 4.5.1: postmaster is always accepted, so it always has a Maildir. */
		char key[MAILADDR_MAX + 1];
		if (mailaddr_key(a, key, sizeof key) > 0)
			collect_target(&l, key, MAILBOX_TARGET_ACTIVE);
	}
	if (l.n == 0) {
		expand_list_free(&l);
		snprintf(status, statsz, "550 5.1.1 no such mailbox");
		return RCPT_FAILED;
	}
	unsigned hops = m->scan.received + m->scan.delivered_to;
	if (r->c->smtp_max_received_headers > 0 &&
	    hops > (unsigned)r->c->smtp_max_received_headers) {
		expand_list_free(&l);
		snprintf(status, statsz, "550 5.4.6 mail loop: %u Received/Delivered-To fields",
		         hops);
		return RCPT_FAILED;
	}
	size_t copies = 0, foreign = 0, temp = 0, quota = 0;
	char perm[DELIVER_STATUS_MAX] = "", tempst[DELIVER_STATUS_MAX] = "";
	for (size_t i = 0; i < l.n; i++) {
		if (l.kind[i] == MAILBOX_TARGET_FOREIGN) {
			foreign++;
			continue;
		}
		if (l.kind[i] == MAILBOX_TARGET_DISABLED) {
			if (!perm[0])
				snprintf(perm, sizeof perm, "550 5.2.1 mailbox disabled: %s",
				         l.v[i]);
			continue;
		}
		if (l.kind[i] == MAILBOX_TARGET_OVER_QUOTA) {
			quota++;
			if (!tempst[0])
				snprintf(tempst, sizeof tempst, "452 4.2.2 mailbox full: %s",
				         l.v[i]);
			continue;
		}
		if (already_done(m, l.v[i])) {
			copies++;
			continue;
		}
		char st[DELIVER_STATUS_MAX];
		switch (deliver_copy(r, m, l.v[i], st, sizeof st)) {
		case DELIVER_OK: copies++; break;
		case DELIVER_TEMP:
			temp++;
			snprintf(tempst, sizeof tempst, "%s", st);
			break;
		case DELIVER_PERM:
			if (!perm[0])
				snprintf(perm, sizeof perm, "%s", st);
			break;
		}
	}
	expand_list_free(&l);
	if (temp || (quota && !copies && !foreign)) {
		snprintf(status, statsz, "%s", tempst);
		return RCPT_DEFERRED;
	}
	if (foreign) {
		snprintf(status, statsz,
		         "450 4.4.0 remote delivery not built yet (%zu local copies made, %zu "
		         "foreign "
		         "alias targets)",
		         copies, foreign);
		return RCPT_REMOTE;
	}
	if (copies) {
		snprintf(status, statsz, "250 2.0.0 delivered to %zu mailbox%s", copies,
		         copies == 1 ? "" : "es");
		return RCPT_DELIVERED;
	}
	snprintf(status, statsz, "%s", perm[0] ? perm : "550 5.1.1 no such mailbox");
	return RCPT_FAILED;
}

/* Routes one due recipient and records its outcome. */
static void deliver_rcpt(struct deliver_runner *r, struct deliver_msg *m, struct envelope_rcpt *rc,
                         int64_t now)
{
	char status[DELIVER_STATUS_MAX];
	enum rcpt_state st;
	struct mailaddr a;
	if (mailaddr_parse_exact(rc->addr, strlen(rc->addr), &a) != MAILADDR_OK) {
		snprintf(status, sizeof status, "550 5.1.3 bad recipient address syntax");
		st = RCPT_FAILED;
	} else if (!conf_is_local_domain(r->c, a.domain, a.domain_len)) {
		snprintf(status, sizeof status, "450 4.4.0 remote delivery not built yet");
		st = RCPT_REMOTE;
	} else {
		st = deliver_local(r, m, rc->addr, &a, status, sizeof status);
	}
	rc->attempts++;
	if (st == RCPT_DEFERRED) {
		if (now - m->env->received_at >= r->c->queue_lifetime) {
			char last[DELIVER_STATUS_MAX];
			snprintf(last, sizeof last, "%s", status);
			snprintf(status, sizeof status,
			         "550 5.4.7 delivery time expired after %d attempts; last: %.400s",
			         rc->attempts, last);
			st = RCPT_FAILED;
		} else {
			rc->next_try = now + r->c->queue_retry_interval;
		}
	}
	if (st == RCPT_REMOTE)
		log_info("deliver %s: <%s> waits for remote delivery", m->env->id, rc->addr);
	else if (st == RCPT_FAILED)
		log_warning("deliver %s: <%s> failed: %s (bounce not built yet)", m->env->id,
		            rc->addr, status);
	rc->state = st;
	if (envelope_set(&rc->status, status) < 0)
		log_err("deliver %s: out of memory recording a status", m->env->id);
}

/* ---- one message ---- */

static int rcpt_due(const struct envelope_rcpt *rc, int64_t now)
{
	return rc->state == RCPT_PENDING || (rc->state == RCPT_DEFERRED && rc->next_try <= now);
}

/* Reads the first octets of the data; returns 0 or -1. */
static int read_head(struct deliver_msg *m)
{
	size_t want = m->len < DELIVER_HEADER_SCAN_MAX ? (size_t)m->len : DELIVER_HEADER_SCAN_MAX;
	m->head = malloc(want ? want : 1);
	if (!m->head)
		return -1;
	while (m->head_len < want) {
		ssize_t n = pread(m->fd, m->head + m->head_len, want - m->head_len,
		                  (off_t)(m->data_off + m->head_len));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		m->head_len += (size_t)n;
	}
	deliver_headers_scan(m->head, m->head_len, m->head_len == m->len, &m->scan);
	return 0;
}

static void msg_release(struct deliver_msg *m)
{
	if (m->fd >= 0)
		close(m->fd);
	free(m->head);
	for (size_t i = 0; i < m->n_done; i++)
		free(m->done[i]);
	free(m->done);
	envelope_free(m->env);
}

/* Earliest next_try of a deferred recipient into *next_due (if earlier). */
static void note_due(const struct envelope *env, int64_t *next_due)
{
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (env->rcpts[i].state == RCPT_DEFERRED && env->rcpts[i].next_try < *next_due)
			*next_due = env->rcpts[i].next_try;
}

/* Delivers what is due of one message. */
static void deliver_message(struct deliver_runner *r, const char *id, int64_t *next_due)
{
	struct deliver_msg m;
	memset(&m, 0, sizeof m);
	m.fd = -1;
	if (queue_read_envelope(r->q, id, &m.env) < 0) {
		log_warning("deliver %s: cannot read envelope", id);
		return;
	}
	int64_t now = (int64_t)time(NULL);
	size_t due = 0;
	for (size_t i = 0; i < m.env->n_rcpts; i++)
		due += rcpt_due(&m.env->rcpts[i], now);
	if (due == 0) {
		note_due(m.env, next_due);
		msg_release(&m);
		return;
	}
	m.fd = queue_open_data(r->q, id, &m.len);
	off_t pos = m.fd >= 0 ? lseek(m.fd, 0, SEEK_CUR) : -1;
	m.data_off = pos >= 0 ? (uint64_t)pos : 0;
	if (m.fd < 0 || pos < 0 || read_head(&m) < 0) {
		log_warning("deliver %s: cannot read message data", id);
		if (*next_due > now + r->c->queue_retry_interval)
			*next_due = now + r->c->queue_retry_interval;
		msg_release(&m);
		return;
	}
	for (size_t i = 0; i < m.env->n_rcpts; i++)
		if (rcpt_due(&m.env->rcpts[i], now))
			deliver_rcpt(r, &m, &m.env->rcpts[i], now);
	int finished = 1;
	for (size_t i = 0; i < m.env->n_rcpts; i++)
		if (m.env->rcpts[i].state != RCPT_DELIVERED && m.env->rcpts[i].state != RCPT_FAILED)
			finished = 0;
	/*
	 * A finished message is removed without recording its states first: the
	 * update would cost a write, an fsync and a rename for a file about to go. A
	 * crash in between only repeats copies (at least once, never lost).
	 */
	if (finished) {
		if (queue_remove(r->q, id) < 0)
			log_warning("deliver %s: cannot remove the delivered message", id);
	} else if (queue_update(r->q, m.env) < 0) {
		log_err("deliver %s: cannot record delivery states (copies may repeat)", id);
	}
	note_due(m.env, next_due);
	msg_release(&m);
}

/* ---- the thread ---- */

struct id_list {
	char **v;
	size_t n, cap;
};

static int collect_id(void *arg, const char *id)
{
	struct id_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return 1;
		l->v = v;
		l->cap = cap;
	}
	char *s = strdup(id);
	if (!s)
		return 1;
	l->v[l->n++] = s;
	return 0;
}

static int runner_stopping(struct deliver_runner *r)
{
	pthread_mutex_lock(&r->mu);
	int s = r->stop;
	pthread_mutex_unlock(&r->mu);
	return s;
}

/* One pass over the queue; returns the wall time the next deferred retry is due. */
static int64_t runner_pass(struct deliver_runner *r)
{
	int64_t next_due = INT64_MAX;
	struct id_list ids = {0};
	if (queue_list(r->q, collect_id, &ids) < 0)
		log_warning("deliver: cannot list the queue");
	for (size_t i = 0; i < ids.n; i++) {
		if (!runner_stopping(r))
			deliver_message(r, ids.v[i], &next_due);
		free(ids.v[i]);
	}
	free(ids.v);
	return next_due;
}

int deliver_queue_once(const struct conf *c, struct queue *q, struct mailbox_index *idx)
{
	struct deliver_runner r;
	memset(&r, 0, sizeof r);
	r.c = c;
	r.q = q;
	r.idx = idx;
	pthread_mutex_init(&r.mu, NULL);
	int rc = conf_state_path(c, "mail", r.mail_root, sizeof r.mail_root);
	if (rc == 0)
		runner_pass(&r);
	pthread_mutex_destroy(&r.mu);
	return rc;
}

static void *runner_main(void *arg)
{
	struct deliver_runner *r = arg;
	for (;;) {
		pthread_mutex_lock(&r->mu);
		r->kicked = 0;
		int stop = r->stop;
		pthread_mutex_unlock(&r->mu);
		if (stop)
			break;
		int64_t next_due = runner_pass(r);
		int64_t now = (int64_t)time(NULL);
		int64_t wait = next_due == INT64_MAX ? DELIVER_MAX_WAIT_S : next_due - now;
		if (wait > DELIVER_MAX_WAIT_S)
			wait = DELIVER_MAX_WAIT_S;
		if (wait < 1)
			wait = 1;
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += (time_t)wait;
		pthread_mutex_lock(&r->mu);
		while (!r->kicked && !r->stop) {
			if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT)
				break;
		}
		pthread_mutex_unlock(&r->mu);
	}
	return NULL;
}

struct deliver_runner *deliver_runner_start(const struct conf *c, struct queue *q,
                                            struct mailbox_index *idx, char *err, size_t errlen)
{
	struct deliver_runner *r = calloc(1, sizeof *r);
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->c = c;
	r->q = q;
	r->idx = idx;
	if (conf_state_path(c, "mail", r->mail_root, sizeof r->mail_root) < 0) {
		snprintf(err, errlen, "state_dir too long");
		free(r);
		return NULL;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&r->mu, NULL);
	int e = pthread_create(&r->thread, NULL, runner_main, r);
	if (e != 0) {
		snprintf(err, errlen, "cannot start the delivery thread: %s", strerror(e));
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return NULL;
	}
	return r;
}

void deliver_runner_kick(struct deliver_runner *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->kicked = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void deliver_runner_stop(struct deliver_runner *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
