/*
 * deliver: the queue runner thread and local delivery. See deliver.h.
 *
 * The runner keeps the queued messages in memory (when each is due next), fed
 * by the queue's start-up pass and by commits; it never lists the queue again.
 * One pass: for each message due (or flushed: `sharemail queue flush`, polled
 * once a second) read its envelope and states (O(envelope + state)), deliver,
 * record every recipient's outcome with one queue_update() (atomic), and remove
 * the message once every recipient is DELIVERED or FAILED.
 *
 * Final mailboxes: a local recipient is expanded once, at its first attempt, and
 * every mailbox the expansion reaches is recorded in the recipient
 * (envelope_final) with its own state, like Postfix's virtual alias expansion
 * into separate recipients. A retry attempts only the mailboxes still PENDING or
 * DEFERRED, each looked up again (an over-quota account that is active now gets
 * its copy); a mailbox recorded DELIVERED never gets a second copy, and one
 * recorded FAILED never gets one at all. Within a message, a mailbox that
 * already has its copy (through another recipient or alias) gets no second one.
 *
 * Crashes (hostile-inputs.md "Faults"): states are recorded once per message
 * and pass, atomically. A crash between a Maildir commit and that record
 * delivers the copies made in between again on restart (at least once, never
 * lost); what was recorded holds: a restart never re-delivers a mailbox recorded
 * DELIVERED, nor forgets one DEFERRED.
 *
 * Log: one line per delivery attempt per final mailbox (or per recipient that
 * never got as far as its mailboxes), Postfix style, written where the outcome
 * is decided (settle()):
 *   QUEUEID: to=<mailbox>, orig_to=<rcpt>, relay=local, delay=S.S, dsn=X.Y.Z,
 *   status=sent|deferred|bounced (text)
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
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/deliver_headers.h"
#include "deliver/maildir.h"
#include "proto/mailaddr.h"
#include "queue/queue.h"
#include "util/log.h"
#include "verify/mailbox_index.h"

#define DELIVER_FLUSH_POLL_S 1 /* flush requests (sharemail queue flush) are taken this often */
#define DELIVER_COPY_BUF 65536
#define DELIVER_TRACE_MAX 65536 /* prepended fields: 100 recipients of 320 octets fit */
#define DELIVER_STATUS_MAX 512
#define DELIVER_DSN_MAX 16

struct runner_entry;

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
	/* runner thread only: the messages it knows of (see runner_pass) */
	struct runner_entry *v;
	size_t n, cap;
	int started; /* the queue's start-up list was taken */
	int flush_polled;
	time_t last_flush_poll; /* CLOCK_MONOTONIC seconds */
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
};

/* ---- one copy ---- */

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
 * Writes one copy for the local account `mailbox`: RCPT_DELIVERED, or FAILED
 * (loops, impossible paths), or DEFERRED (I/O errors), with the reply-style
 * reason ("CODE X.Y.Z text") in status.
 */
static enum rcpt_state deliver_copy(struct deliver_runner *r, struct deliver_msg *m,
                                    const char *mailbox, char *status, size_t statsz)
{
	const struct conf *c = r->c;
	if (deliver_headers_delivered_to(m->head, m->scan.header_len, mailbox)) {
		snprintf(status, statsz, "550 5.4.6 mail loop: already delivered to this mailbox");
		return RCPT_FAILED;
	}
	char dir[MAILDIR_PATH_MAX];
	if (maildir_path(r->mail_root, mailbox, dir, sizeof dir) < 0) {
		snprintf(status, statsz, "550 5.3.0 mailbox name unusable as a Maildir");
		return RCPT_FAILED;
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
		return RCPT_DEFERRED;
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
		snprintf(status, statsz, "451 4.3.0 cannot write the Maildir: %s", strerror(errno));
		return RCPT_DEFERRED;
	}
	snprintf(status, statsz, "250 2.0.0 delivered to maildir");
	return RCPT_DELIVERED;
}

/* ---- the log line and the lifetime ---- */

/* Seconds since the message arrived (the time in its queue id, else received_at). */
static double delay_s(const struct envelope *env)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	int64_t us = queue_id_time_us(env->id);
	double since = us >= 0 ? (double)us / 1e6 : (double)env->received_at;
	return now > since ? now - since : 0.0;
}

/* Splits our "CODE X.Y.Z text" status into the DSN code and the text. */
static const char *status_text(const char *status, char dsn[DELIVER_DSN_MAX])
{
	const char *p = strchr(status, ' ');
	const char *q = p ? strchr(p + 1, ' ') : NULL;
	if (!q || (size_t)(q - p - 1) >= DELIVER_DSN_MAX) {
		snprintf(dsn, DELIVER_DSN_MAX, "-");
		return status;
	}
	snprintf(dsn, DELIVER_DSN_MAX, "%.*s", (int)(q - p - 1), p + 1);
	return q + 1;
}

/*
 * Decides an attempt's outcome for `to` (a final mailbox, or a recipient that
 * has none) and logs it: a DEFERRED outcome past queue_lifetime becomes FAILED
 * 5.4.7. orig_to (NULL: none) is the recipient `to` came from; relay names the
 * transport ("local", or "none" for what has no route yet).
 */
static void settle(struct deliver_runner *r, const struct deliver_msg *m, int64_t now,
                   const char *to, const char *orig_to, const char *relay, int attempts,
                   enum rcpt_state *st, char *status, size_t statsz)
{
	if (*st == RCPT_DEFERRED && now - m->env->received_at >= r->c->queue_lifetime) {
		char last[DELIVER_STATUS_MAX];
		snprintf(last, sizeof last, "%s", status);
		snprintf(status, statsz,
		         "550 5.4.7 delivery time expired after %d attempts; last: %.400s",
		         attempts, last);
		*st = RCPT_FAILED;
	}
	char dsn[DELIVER_DSN_MAX];
	const char *text = status_text(status, dsn);
	const char *word = *st == RCPT_DELIVERED ? "sent"
	                   : *st == RCPT_FAILED  ? "bounced"
	                                         : "deferred";
	int orig = orig_to && strcmp(orig_to, to) != 0;
	log_msg(*st == RCPT_FAILED ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO,
	        "%s: to=<%s>%s%s%s, relay=%s, delay=%.1f, dsn=%s, status=%s (%s%s)", m->env->id, to,
	        orig ? ", orig_to=<" : "", orig ? orig_to : "", orig ? ">" : "", relay,
	        delay_s(m->env), dsn, word, text,
	        *st == RCPT_FAILED ? "; no bounce message sent: bounces are not built yet" : "");
}

/* ---- one recipient's final mailboxes ---- */

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

/* Where mail for the local address addr (parsed: a) goes now, into l. */
static enum lookup_result resolve(struct deliver_runner *r, const char *addr,
                                  const struct mailaddr *a, struct expand_list *l)
{
	enum lookup_result lr = mailbox_expand(r->idx, addr, strlen(addr), collect_target, l);
	if (lr == LOOKUP_TEMPFAIL || l->oom)
		return LOOKUP_TEMPFAIL;
	if (lr == LOOKUP_NOTFOUND && mailaddr_is_postmaster(a->local, a->local_len)) {
		/* RFC 5321 4.5.1: postmaster is always accepted, so it always has a Maildir. */
		char key[MAILADDR_MAX + 1];
		if (mailaddr_key(a, key, sizeof key) > 0)
			collect_target(l, key, MAILBOX_TARGET_ACTIVE);
	}
	if (l->oom)
		return LOOKUP_TEMPFAIL;
	return l->n ? LOOKUP_FOUND : LOOKUP_NOTFOUND;
}

/* The outcome of a lookup that found nothing (FAILED) or cannot answer (DEFERRED). */
static enum rcpt_state lookup_failed(enum lookup_result lr, char *status, size_t statsz)
{
	if (lr == LOOKUP_NOTFOUND) {
		snprintf(status, statsz, "550 5.1.1 no such mailbox");
		return RCPT_FAILED;
	}
	snprintf(status, statsz, "451 4.3.0 directory temporarily unavailable");
	return RCPT_DEFERRED;
}

/*
 * First attempt of a local recipient: expands it and records its final
 * mailboxes, all PENDING. Returns 0, or -1 with the recipient's own outcome in
 * *st and status when it has none (unknown, a loop, or try later).
 */
static int record_finals(struct deliver_runner *r, struct deliver_msg *m, struct envelope_rcpt *rc,
                         const struct mailaddr *a, enum rcpt_state *st, char *status, size_t statsz)
{
	unsigned hops = m->scan.received + m->scan.delivered_to;
	if (r->c->smtp_max_received_headers > 0 &&
	    hops > (unsigned)r->c->smtp_max_received_headers) {
		snprintf(status, statsz, "550 5.4.6 mail loop: %u Received/Delivered-To fields",
		         hops);
		*st = RCPT_FAILED;
		return -1;
	}
	struct expand_list l = {0};
	enum lookup_result lr = resolve(r, rc->addr, a, &l);
	for (size_t i = 0; lr == LOOKUP_FOUND && i < l.n; i++) {
		if (envelope_add_final(rc, l.v[i], RCPT_PENDING) < 0) {
			envelope_clear_finals(rc); /* all or none: nothing was attempted yet */
			lr = LOOKUP_TEMPFAIL;
		}
	}
	expand_list_free(&l);
	if (lr == LOOKUP_FOUND)
		return 0;
	*st = lookup_failed(lr, status, statsz);
	return -1;
}

/* What a final mailbox recorded earlier is now: LOOKUP_FOUND with *kind, or not. */
static enum lookup_result final_kind(struct deliver_runner *r, const char *addr, int *kind)
{
	struct mailaddr a;
	if (mailaddr_parse_exact(addr, strlen(addr), &a) != MAILADDR_OK)
		return LOOKUP_NOTFOUND;
	if (!conf_is_local_domain(r->c, a.domain, a.domain_len)) {
		*kind = MAILBOX_TARGET_FOREIGN;
		return LOOKUP_FOUND;
	}
	struct expand_list l = {0};
	enum lookup_result lr = resolve(r, addr, &a, &l);
	if (lr == LOOKUP_FOUND) {
		/* Still an account (not, say, an alias made since): only then it is final. */
		lr = LOOKUP_NOTFOUND;
		for (size_t i = 0; i < l.n; i++) {
			if (l.kind[i] != MAILBOX_TARGET_FOREIGN && strcmp(l.v[i], addr) == 0) {
				*kind = l.kind[i];
				lr = LOOKUP_FOUND;
			}
		}
	}
	expand_list_free(&l);
	return lr;
}

/* 1 if some recipient of the message has a copy in mailbox already. */
static int has_copy(const struct envelope *env, const char *mailbox)
{
	for (size_t i = 0; i < env->n_rcpts; i++)
		for (size_t j = 0; j < env->rcpts[i].n_finals; j++)
			if (env->rcpts[i].finals[j].state == RCPT_DELIVERED &&
			    strcmp(env->rcpts[i].finals[j].addr, mailbox) == 0)
				return 1;
	return 0;
}

/* One attempt for the final mailbox addr: its outcome and status. */
static enum rcpt_state attempt_final(struct deliver_runner *r, struct deliver_msg *m,
                                     const char *addr, char *status, size_t statsz)
{
	int kind = MAILBOX_TARGET_FOREIGN;
	enum lookup_result lr = final_kind(r, addr, &kind);
	if (lr != LOOKUP_FOUND)
		return lookup_failed(lr, status, statsz);
	switch (kind) {
	case MAILBOX_TARGET_ACTIVE: return deliver_copy(r, m, addr, status, statsz);
	case MAILBOX_TARGET_DISABLED:
		snprintf(status, statsz, "550 5.2.1 mailbox disabled");
		return RCPT_FAILED;
	case MAILBOX_TARGET_OVER_QUOTA:
		snprintf(status, statsz, "452 4.2.2 mailbox full");
		return RCPT_DEFERRED;
	case MAILBOX_TARGET_LIST: /* a mailing list waits as "remote" until posts are expanded */
	default:
		snprintf(status, statsz, "450 4.4.0 remote delivery not built yet");
		return RCPT_REMOTE;
	}
}

/*
 * The recipient's state from its finals (the rule in envelope.h), with a status:
 * the deciding mailbox's, and with several mailboxes how many ended how.
 */
static enum rcpt_state sum_up(const struct envelope_rcpt *rc, char *status, size_t statsz)
{
	static const enum rcpt_state order[] = {RCPT_PENDING, RCPT_DEFERRED, RCPT_REMOTE,
	                                        RCPT_DELIVERED, RCPT_FAILED};
	size_t count[RCPT_REMOTE + 1] = {0};
	for (size_t j = 0; j < rc->n_finals; j++)
		count[rc->finals[j].state]++;
	enum rcpt_state st = RCPT_FAILED;
	for (size_t i = sizeof order / sizeof order[0]; i-- > 0;)
		if (count[order[i]])
			st = order[i];
	const char *why = "";
	for (size_t j = rc->n_finals; j-- > 0;)
		if (rc->finals[j].state == st && rc->finals[j].status)
			why = rc->finals[j].status;
	if (rc->n_finals == 1)
		snprintf(status, statsz, "%s", why);
	else
		snprintf(status, statsz,
		         "%.400s (mailboxes: %zu delivered, %zu deferred, %zu failed, %zu remote)",
		         why, count[RCPT_DELIVERED], count[RCPT_DEFERRED] + count[RCPT_PENDING],
		         count[RCPT_FAILED], count[RCPT_REMOTE]);
	/* PENDING cannot outlast the attempt that recorded it; were it to, retry it. */
	return st == RCPT_PENDING ? RCPT_DEFERRED : st;
}

/* Attempts every final mailbox of rc still PENDING or DEFERRED; returns rc's state. */
static enum rcpt_state deliver_finals(struct deliver_runner *r, struct deliver_msg *m,
                                      struct envelope_rcpt *rc, int64_t now, char *status,
                                      size_t statsz)
{
	for (size_t j = 0; j < rc->n_finals; j++) {
		struct envelope_final *f = &rc->finals[j];
		if (f->state != RCPT_PENDING && f->state != RCPT_DEFERRED)
			continue;
		char st_text[DELIVER_STATUS_MAX];
		enum rcpt_state st;
		if (has_copy(m->env, f->addr)) {
			/* Another recipient (or alias) of this message led here: one copy. */
			st = RCPT_DELIVERED;
			snprintf(st_text, sizeof st_text,
			         "250 2.0.0 delivered once for every recipient that leads here");
		} else {
			st = attempt_final(r, m, f->addr, st_text, sizeof st_text);
			f->attempts++;
			settle(r, m, now, f->addr, rc->addr, st == RCPT_REMOTE ? "none" : "local",
			       f->attempts, &st, st_text, sizeof st_text);
		}
		f->state = st;
		if (envelope_set(&f->status, st_text) < 0)
			log_err("deliver %s: out of memory recording a status", m->env->id);
	}
	return sum_up(rc, status, statsz);
}

/* Routes one due recipient and records its outcome. */
/*
 * The wait before the next attempt after `attempts` of them: queue_retry_initial,
 * doubled for each further attempt, at most queue_retry_max.
 */
static int64_t retry_wait(const struct conf *c, int attempts)
{
	int64_t wait = c->queue_retry_initial;
	for (int i = 1; i < attempts && wait < c->queue_retry_max; i++)
		wait *= 2;
	return wait < c->queue_retry_max ? wait : c->queue_retry_max;
}

static void deliver_rcpt(struct deliver_runner *r, struct deliver_msg *m, struct envelope_rcpt *rc,
                         int64_t now)
{
	char status[DELIVER_STATUS_MAX];
	enum rcpt_state st = RCPT_DEFERRED;
	struct mailaddr a;
	const char *relay = "local";
	rc->attempts++;
	if (mailaddr_parse_exact(rc->addr, strlen(rc->addr), &a) != MAILADDR_OK) {
		snprintf(status, sizeof status, "550 5.1.3 bad recipient address syntax");
		st = RCPT_FAILED;
	} else if (!conf_is_local_domain(r->c, a.domain, a.domain_len)) {
		snprintf(status, sizeof status, "450 4.4.0 remote delivery not built yet");
		st = RCPT_REMOTE;
		relay = "none";
	} else if (rc->n_finals > 0 ||
	           record_finals(r, m, rc, &a, &st, status, sizeof status) == 0) {
		st = deliver_finals(r, m, rc, now, status, sizeof status);
		relay = NULL; /* each final mailbox logged its own line */
	}
	if (relay)
		settle(r, m, now, rc->addr, NULL, relay, rc->attempts, &st, status, sizeof status);
	if (st == RCPT_DEFERRED)
		rc->next_try = now + retry_wait(r->c, rc->attempts);
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
	envelope_free(m->env);
}

/* When the message is due next: its earliest DEFERRED next_try (INT64_MAX: none). */
static int64_t message_due(const struct envelope *env)
{
	int64_t due = INT64_MAX;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct envelope_rcpt *rc = &env->rcpts[i];
		if (rc->state == RCPT_PENDING)
			return 0;
		if (rc->state == RCPT_DEFERRED && rc->next_try < due)
			due = rc->next_try;
	}
	return due;
}

static int finished(const struct envelope *env)
{
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (env->rcpts[i].state != RCPT_DELIVERED && env->rcpts[i].state != RCPT_FAILED)
			return 0;
	return 1;
}

#define DELIVER_GONE (-1) /* deliver_message: the message left the queue */

/*
 * Delivers what is due of one message; with force (a flush) every DEFERRED
 * recipient is due now. Returns when the message is due next (INT64_MAX: only
 * for a flush, e.g. recipients waiting for remote delivery), or DELIVER_GONE.
 * Reading the envelope and the states costs O(envelope + state): the data is
 * only opened when a recipient is due.
 */
static int64_t deliver_message(struct deliver_runner *r, const char *id, int force)
{
	struct deliver_msg m;
	memset(&m, 0, sizeof m);
	m.fd = -1;
	int64_t now = (int64_t)time(NULL);
	if (queue_read_envelope(r->q, id, &m.env) < 0) {
		if (errno == ENOENT)
			return DELIVER_GONE; /* removed meanwhile (sharemail queue delete) */
		log_warning("deliver %s: cannot read envelope (retried in %ds)", id,
		            r->c->queue_retry_initial);
		return now + r->c->queue_retry_initial;
	}
	size_t due = 0;
	for (size_t i = 0; i < m.env->n_rcpts; i++) {
		struct envelope_rcpt *rc = &m.env->rcpts[i];
		if (force && rc->state == RCPT_DEFERRED && rc->next_try > now)
			rc->next_try = now;
		due += rcpt_due(rc, now);
	}
	if (due == 0) {
		int64_t next = message_due(m.env);
		if (finished(m.env)) { /* every state recorded final before a crash */
			next = DELIVER_GONE;
			if (queue_remove(r->q, id) < 0)
				log_warning("deliver %s: cannot remove the delivered message", id);
		}
		msg_release(&m);
		return next;
	}
	m.fd = queue_open_data(r->q, id, &m.len);
	off_t pos = m.fd >= 0 ? lseek(m.fd, 0, SEEK_CUR) : -1;
	m.data_off = pos >= 0 ? (uint64_t)pos : 0;
	if (m.fd < 0 || pos < 0 || read_head(&m) < 0) {
		log_warning("deliver %s: cannot read message data", id);
		msg_release(&m);
		return now + r->c->queue_retry_initial;
	}
	for (size_t i = 0; i < m.env->n_rcpts; i++)
		if (rcpt_due(&m.env->rcpts[i], now))
			deliver_rcpt(r, &m, &m.env->rcpts[i], now);
	/*
	 * A finished message is removed without recording its states first: the
	 * update would cost a write, an fsync and a rename for a file about to go. A
	 * crash in between only repeats copies (at least once, never lost).
	 */
	int64_t next = DELIVER_GONE;
	if (finished(m.env)) {
		if (queue_remove(r->q, id) < 0)
			log_warning("deliver %s: cannot remove the delivered message", id);
	} else {
		if (queue_update(r->q, m.env) < 0)
			log_err("deliver %s: cannot record delivery states (copies may repeat)",
			        id);
		next = message_due(m.env);
	}
	msg_release(&m);
	return next;
}

/* ---- the thread ---- */

/*
 * The runner's in-memory list of queued messages, fed by the queue's start-up
 * pass and by commits, never by listing the queue again: a pass reads only the
 * messages due (or flushed), so its cost does not grow with messages waiting.
 * (The scheduler, src/deliver/scheduler.c, replaces this list with a schedule
 * per recipient and destination.)
 */
struct runner_entry {
	char id[QUEUE_ID_MAX];
	int64_t due; /* epoch seconds; INT64_MAX: waits for a flush */
	int force; /* flushed: retry every DEFERRED recipient now */
};

static int add_entry(struct deliver_runner *r, const char *id, int64_t due)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct runner_entry *v = realloc(r->v, cap * sizeof *v);
		if (!v)
			return -1;
		r->v = v;
		r->cap = cap;
	}
	struct runner_entry *e = &r->v[r->n++];
	snprintf(e->id, sizeof e->id, "%s", id);
	e->due = due;
	e->force = 0;
	return 0;
}

static int take_startup(void *arg, const struct queue_pending *p)
{
	struct deliver_runner *r = arg;
	int64_t due = p->n_rcpts ? INT64_MAX : 0; /* none left: it only waits to be removed */
	for (size_t i = 0; i < p->n_rcpts; i++) {
		const struct queue_pending_rcpt *rc = &p->rcpts[i];
		if (rc->state == RCPT_PENDING)
			due = 0;
		else if (rc->state == RCPT_DEFERRED && rc->next_try < due)
			due = rc->next_try;
	}
	if (add_entry(r, p->id, due) < 0)
		log_err("deliver %s: out of memory; delivered after the next restart", p->id);
	return 0;
}

static void take_committed(void *arg, const char *id)
{
	if (add_entry(arg, id, 0) < 0)
		log_err("deliver %s: out of memory; delivered after the next restart", id);
}

static void take_flush(void *arg, const char *id)
{
	struct deliver_runner *r = arg;
	int found = 0;
	for (size_t i = 0; i < r->n; i++) {
		if (!id || strcmp(r->v[i].id, id) == 0) {
			r->v[i].force = 1;
			found = 1;
		}
	}
	/* Not in the list (say, after running out of memory): it is again. */
	if (id && !found && add_entry(r, id, 0) == 0)
		r->v[r->n - 1].force = 1;
}

static int runner_stopping(struct deliver_runner *r)
{
	pthread_mutex_lock(&r->mu);
	int s = r->stop;
	pthread_mutex_unlock(&r->mu);
	return s;
}

/* Flush requests: taken at most about once a second (and at every pass of deliver_queue_once). */
static void poll_flush(struct deliver_runner *r)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (r->flush_polled && ts.tv_sec < r->last_flush_poll + DELIVER_FLUSH_POLL_S)
		return;
	r->flush_polled = 1;
	r->last_flush_poll = ts.tv_sec;
	queue_take_flush(r->q, take_flush, r);
}

/*
 * One pass: takes what the queue learned of since the last pass, then delivers
 * every message due or flushed. Returns the wall time the next one is due.
 */
static int64_t runner_pass(struct deliver_runner *r)
{
	if (!r->started) {
		r->started = 1;
		queue_take_startup(r->q, take_startup, r);
	}
	queue_take_committed(r->q, take_committed, r);
	poll_flush(r);
	int64_t now = (int64_t)time(NULL), next_due = INT64_MAX;
	size_t kept = 0;
	for (size_t i = 0; i < r->n; i++) {
		struct runner_entry e = r->v[i];
		if ((e.due <= now || e.force) && !runner_stopping(r)) {
			e.due = deliver_message(r, e.id, e.force);
			e.force = 0;
			if (e.due == DELIVER_GONE)
				continue;
		}
		if (e.due < next_due)
			next_due = e.due;
		r->v[kept++] = e;
	}
	r->n = kept;
	return next_due;
}

/* Lists the whole queue (for deliver_queue_once only: no runner, nothing kept). */
static int list_all(void *arg, const char *id)
{
	return add_entry(arg, id, 0) < 0;
}

int deliver_queue_once(const struct conf *c, struct queue *q, struct mailbox_index *idx)
{
	struct deliver_runner r;
	memset(&r, 0, sizeof r);
	r.c = c;
	r.q = q;
	r.idx = idx;
	r.started = 1; /* the whole queue is listed instead */
	pthread_mutex_init(&r.mu, NULL);
	int rc = conf_state_path(c, "mail", r.mail_root, sizeof r.mail_root);
	if (rc == 0 && queue_list(q, list_all, &r) < 0)
		log_warning("deliver: cannot list the queue");
	if (rc == 0)
		runner_pass(&r);
	free(r.v);
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
		int64_t wait = next_due == INT64_MAX ? DELIVER_FLUSH_POLL_S : next_due - now;
		if (wait > DELIVER_FLUSH_POLL_S)
			wait = DELIVER_FLUSH_POLL_S; /* flush requests are polled */
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
	free(r->v);
	free(r);
}
