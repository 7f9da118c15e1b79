/*
 * deliver_local: the Maildir transport, run on a worker with the message's
 * lock held (deliver_int.h).
 *
 * Final mailboxes: a local recipient is expanded once, at its first attempt, and
 * every mailbox the expansion reaches is recorded in the recipient
 * (envelope_final) with its own state, like Postfix's virtual alias expansion
 * into separate recipients. A retry attempts only the mailboxes still PENDING or
 * DEFERRED (or REMOTE, left by the code before remote delivery), each looked up
 * again (an over-quota account that is active now gets its copy); a mailbox
 * recorded DELIVERED never gets a second copy, and one recorded FAILED never
 * gets one at all. Within a message, a mailbox that already has its copy
 * (through another recipient or alias) gets no second one.
 *
 * An alias's foreign targets and a list's members become one new message each
 * time they are expanded (deliver_expand.c): the mailbox is then DELIVERED
 * ("250 2.1.5 expanded into QUEUEID"). A crash between queueing the new message
 * and recording that state expands it again at the next start: at most one
 * duplicate, never a loss.
 *
 * Crashes: copies are made before their states are recorded (deliver_record.c),
 * so a crash in between makes the copies again on restart (at least once, never
 * lost); a restart never re-delivers a mailbox recorded DELIVERED.
 *
 * The message is never held in memory: the first DELIVER_HEADER_SCAN_MAX octets
 * are read once (Date: and loop decisions), the rest is streamed with pread()
 * into each copy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/deliver_int.h"
#include "proto/mailaddr.h"
#include "util/log.h"
#include "verify/mailbox_index.h"

#define LOCAL_COPY_BUF 65536
#define LOCAL_RIDE_US 4000
#define LOCAL_TRACE_MAX 65536 /* prepended fields: 100 recipients of 320 octets fit */
#define LOCAL_PREFIX_MAX (2 * (MAILADDR_MAX + 32) + MAILBOX_LIST_ID_MAX)

/* One attempt's context: the job, its message and the shared settings. */
struct local {
	const struct deliver_ctx *x;
	struct deliver_job *j;
	struct dmsg *m;
	struct envelope *env;
};

/* ---- one copy ---- */

/* Copies data octets [from, len) of the message into the Maildir file. */
static int copy_rest(const struct dmsg *m, struct maildir_file *f, uint64_t from)
{
	char *buf = malloc(LOCAL_COPY_BUF);
	if (!buf)
		return -1;
	int rc = 0;
	while (from < m->len) {
		size_t want =
		        m->len - from > LOCAL_COPY_BUF ? LOCAL_COPY_BUF : (size_t)(m->len - from);
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
 * maildir_commit's fsyncs ride on the receiving sessions' commits (queue_ride):
 * at 1 session one arrives every 2-3 ms, so 4 ms tells a session load from none
 * and bounds what a copy waits.
 */
static int ride_queue(void *q)
{
	return queue_ride(q, LOCAL_RIDE_US);
}

/*
 * Writes one copy for the local account `mailbox`: RCPT_DELIVERED, or FAILED
 * (loops, impossible paths), or DEFERRED (I/O errors), with the reply-style
 * reason ("CODE X.Y.Z text") in status.
 */
static enum rcpt_state deliver_copy(struct local *l, const char *mailbox, char *status,
                                    size_t statsz)
{
	const struct conf *c = l->x->c;
	struct dmsg *m = l->m;
	if (deliver_headers_delivered_to(m->head, m->scan.header_len, mailbox)) {
		snprintf(status, statsz, "550 5.4.6 mail loop: already delivered to this mailbox");
		return RCPT_FAILED;
	}
	char dir[MAILDIR_PATH_MAX];
	if (maildir_path(l->x->mail_root, mailbox, dir, sizeof dir) < 0) {
		snprintf(status, statsz, "550 5.3.0 mailbox name unusable as a Maildir");
		return RCPT_FAILED;
	}
	int add_date =
	        c->smtp_add_date_header && l->env->trusted && m->scan.complete && !m->scan.has_date;
	char *trace = malloc(LOCAL_TRACE_MAX);
	long tl = trace ? deliver_headers_build(l->env, mailbox, c->smtp_original_recipient_header,
	                                        add_date, trace, LOCAL_TRACE_MAX)
	                : -1;
	if (tl < 0) {
		free(trace);
		snprintf(status, statsz, "451 4.3.0 cannot build trace fields");
		return RCPT_DEFERRED;
	}
	struct maildir_file f;
	int rc = maildir_open(dir, l->x->hostname, &f);
	f.ride = ride_queue;
	f.ride_arg = l->x->q;
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

/* ---- expansion lookups ---- */

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
	memset(l, 0, sizeof *l);
}

/* Where mail for the local address addr (parsed: a) goes now, into l. */
static enum lookup_result resolve(struct local *l, const char *addr, const struct mailaddr *a,
                                  struct expand_list *t)
{
	enum lookup_result lr = mailbox_expand(l->x->idx, addr, strlen(addr), collect_target, t);
	if (lr == LOOKUP_TEMPFAIL || t->oom)
		return LOOKUP_TEMPFAIL;
	if (lr == LOOKUP_NOTFOUND && mailaddr_is_postmaster(a->local, a->local_len)) {
		/* RFC 5321 4.5.1: postmaster is always accepted, so it always has a Maildir. */
		char key[MAILADDR_MAX + 1];
		if (mailaddr_key(a, key, sizeof key) > 0)
			collect_target(t, key, MAILBOX_TARGET_ACTIVE);
	}
	if (t->oom)
		return LOOKUP_TEMPFAIL;
	return t->n ? LOOKUP_FOUND : LOOKUP_NOTFOUND;
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
static int record_finals(struct local *l, struct envelope_rcpt *rc, const struct mailaddr *a,
                         enum rcpt_state *st, char *status, size_t statsz)
{
	const struct conf *c = l->x->c;
	unsigned hops = l->m->scan.received + l->m->scan.delivered_to;
	if (c->smtp_max_received_headers > 0 && hops > (unsigned)c->smtp_max_received_headers) {
		snprintf(status, statsz, "550 5.4.6 mail loop: %u Received/Delivered-To fields",
		         hops);
		*st = RCPT_FAILED;
		return -1;
	}
	struct expand_list t = {0};
	enum lookup_result lr = resolve(l, rc->addr, a, &t);
	for (size_t i = 0; lr == LOOKUP_FOUND && i < t.n; i++) {
		if (envelope_add_final(rc, t.v[i], RCPT_PENDING) < 0) {
			envelope_clear_finals(rc); /* all or none: nothing was attempted yet */
			lr = LOOKUP_TEMPFAIL;
		}
	}
	expand_list_free(&t);
	if (lr == LOOKUP_FOUND)
		return 0;
	*st = lookup_failed(lr, status, statsz);
	return -1;
}

/* What a final mailbox recorded earlier is now: LOOKUP_FOUND with *kind, or not. */
static enum lookup_result final_kind(struct local *l, const char *addr, int *kind)
{
	struct mailaddr a;
	if (mailaddr_parse_exact(addr, strlen(addr), &a) != MAILADDR_OK)
		return LOOKUP_NOTFOUND;
	if (!conf_is_local_domain(l->x->c, a.domain, a.domain_len)) {
		*kind = MAILBOX_TARGET_FOREIGN;
		return LOOKUP_FOUND;
	}
	struct expand_list t = {0};
	enum lookup_result lr = resolve(l, addr, &a, &t);
	if (lr == LOOKUP_FOUND) {
		/* Still an account or list (not, say, an alias made since): only then it is final. */
		lr = LOOKUP_NOTFOUND;
		for (size_t i = 0; i < t.n; i++) {
			if (t.kind[i] != MAILBOX_TARGET_FOREIGN && strcmp(t.v[i], addr) == 0) {
				*kind = t.kind[i];
				lr = LOOKUP_FOUND;
			}
		}
	}
	expand_list_free(&t);
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

/* ---- expansions into new messages ---- */

/* "Delivered-To: addr\r\n" (printable octets only) appended to out at *o. */
static int put_field(char *out, size_t outsz, size_t *o, const char *name, const char *value)
{
	int n = snprintf(out + *o, outsz - *o, "%s: ", name);
	if (n < 0 || (size_t)n >= outsz - *o)
		return -1;
	*o += (size_t)n;
	for (const char *p = value; *p; p++) {
		if (*o + 3 >= outsz)
			return -1;
		unsigned char c = (unsigned char)*p;
		out[(*o)++] = (c < 0x21 || c > 0x7e) ? '?' : (char)c;
	}
	memcpy(out + *o, "\r\n", 3);
	*o += 2;
	return 0;
}

/* Marks final f of rc with st and status, and reports it. */
static void settle_final(struct local *l, struct envelope_rcpt *rc, struct envelope_final *f,
                         enum rcpt_state st, const char *status, enum deliver_via via)
{
	f->state = st;
	if (envelope_set(&f->status, status) < 0)
		log_err("deliver %s: out of memory recording a status", l->env->id);
	uint32_t idx = (uint32_t)(rc - l->env->rcpts);
	enum deliver_notice nt = deliver_policy_notice(l->env->mail_from, rc->notify, st, via);
	deliver_job_report(l->j, idx, f->addr, "local", st, status, 0, NULL, nt);
}

/*
 * The foreign targets of alias rc waiting in finals fi[0..n): one new message to
 * all of them from the original sender, with ORCPT rfc822;ALIAS (or the
 * recipient's own ORCPT) and its NOTIFY, after a Delivered-To: ALIAS field so
 * that a loop back here is seen.
 */
static void expand_foreign(struct local *l, struct envelope_rcpt *rc, const size_t *fi, size_t n)
{
	char status[DELIVER_STATUS_MAX], prefix[LOCAL_PREFIX_MAX];
	size_t plen = 0;
	enum rcpt_state st = RCPT_DELIVERED;
	char orcpt[MAILADDR_MAX + 16];
	const char **to = calloc(n, sizeof *to), **orc = calloc(n, sizeof *orc);
	unsigned *nt = calloc(n, sizeof *nt);
	char id[QUEUE_ID_MAX];
	if (rc->orcpt)
		snprintf(orcpt, sizeof orcpt, "%s", rc->orcpt);
	else
		snprintf(orcpt, sizeof orcpt, "rfc822;%s", rc->addr);
	if (deliver_headers_delivered_to(l->m->head, l->m->scan.header_len, rc->addr)) {
		st = RCPT_FAILED;
		snprintf(status, sizeof status, "550 5.4.6 mail loop: alias already expanded here");
	} else if (!to || !orc || !nt ||
	           put_field(prefix, sizeof prefix, &plen, "Delivered-To", rc->addr) < 0) {
		st = RCPT_DEFERRED;
		snprintf(status, sizeof status, "451 4.3.0 out of memory expanding the alias");
	} else {
		for (size_t k = 0; k < n; k++) {
			to[k] = rc->finals[fi[k]].addr;
			orc[k] = orcpt;
			nt[k] = rc->notify;
		}
		if (deliver_expand_enqueue(l->x, l->m, prefix, plen, l->env->mail_from, to, orc, nt,
		                           n, 1, id) == 0) {
			snprintf(status, sizeof status, "250 2.1.5 expanded into %s", id);
			log_info("%s: alias <%s> expanded into %s (%zu foreign targets)",
			         l->env->id, rc->addr, id, n);
		} else {
			st = RCPT_DEFERRED;
			snprintf(status, sizeof status, "451 4.3.0 cannot queue the expansion: %s",
			         strerror(errno));
		}
	}
	for (size_t k = 0; k < n; k++) {
		rc->finals[fi[k]].attempts++;
		/* The targets carry NOTIFY on: the hops after this one report success. */
		settle_final(l, rc, &rc->finals[fi[k]], st, status, DELIVER_VIA_PEER_DSN);
	}
	free(to);
	free(orc);
	free(nt);
}

struct member_list {
	const char **v;
	char **own;
	size_t n, cap;
	int oom;
};

static int collect_member(void *arg, const char *member, int local)
{
	struct member_list *ml = arg;
	(void)local;
	if (ml->n == ml->cap) {
		size_t cap = ml->cap ? ml->cap * 2 : 16;
		const char **v = realloc(ml->v, cap * sizeof *v);
		if (v)
			ml->v = v;
		char **o = v ? realloc(ml->own, cap * sizeof *o) : NULL;
		if (!o) {
			ml->oom = 1;
			return 1;
		}
		ml->own = o;
		ml->cap = cap;
	}
	ml->own[ml->n] = strdup(member);
	if (!ml->own[ml->n]) {
		ml->oom = 1;
		return 1;
	}
	ml->v[ml->n] = ml->own[ml->n];
	ml->n++;
	return 0;
}

static void member_list_free(struct member_list *ml)
{
	for (size_t i = 0; i < ml->n; i++)
		free(ml->own[i]);
	free(ml->own);
	free(ml->v);
}

/*
 * A post to the list in final f: one new message to every member from the
 * list's owner (so bounces go to the owner, not the poster), with List-Id:
 * (RFC 2919) and Delivered-To: LIST before the post's own fields.
 */
static enum rcpt_state expand_list(struct local *l, const char *list, char *status, size_t statsz)
{
	struct mailbox_list info;
	struct member_list ml = {0};
	enum lookup_result lr =
	        mailbox_list_expand(l->x->idx, list, strlen(list), &info, collect_member, &ml);
	enum rcpt_state st = RCPT_DELIVERED;
	char prefix[LOCAL_PREFIX_MAX], id[QUEUE_ID_MAX];
	size_t plen = 0;
	if (lr != LOOKUP_FOUND || ml.oom) {
		st = lookup_failed(lr == LOOKUP_NOTFOUND && !ml.oom ? LOOKUP_NOTFOUND
		                                                    : LOOKUP_TEMPFAIL,
		                   status, statsz);
	} else if (deliver_headers_delivered_to(l->m->head, l->m->scan.header_len, list)) {
		st = RCPT_FAILED;
		snprintf(status, statsz, "550 5.4.6 mail loop: list already expanded here");
	} else if (deliver_expand_share_list(l->x, l->m, list, id) < 0) {
		st = RCPT_DEFERRED; /* nothing queued yet: the next try shares and expands */
		snprintf(status, statsz, "451 4.3.0 cannot queue the list's shared copy: %s",
		         strerror(errno));
	} else if (ml.n == 0) {
		snprintf(status, statsz, "250 2.1.5 list has no members");
	} else if (put_field(prefix, sizeof prefix, &plen, "Delivered-To", list) < 0 ||
	           put_field(prefix, sizeof prefix, &plen, "List-Id", info.list_id) < 0) {
		st = RCPT_DEFERRED;
		snprintf(status, statsz, "451 4.3.0 cannot build the list fields");
	} else if (deliver_expand_enqueue(l->x, l->m, prefix, plen, info.owner, ml.v, NULL, NULL,
	                                  ml.n, 0, id) == 0) {
		snprintf(status, statsz, "250 2.1.5 expanded into %s (%zu members)", id, ml.n);
		log_info("%s: list <%s> expanded into %s (%zu members, from <%s>)", l->env->id,
		         list, id, ml.n, info.owner);
	} else {
		st = RCPT_DEFERRED;
		snprintf(status, statsz, "451 4.3.0 cannot queue the list expansion: %s",
		         strerror(errno));
	}
	member_list_free(&ml);
	return st;
}

/* ---- one recipient ---- */

/* One attempt for the local final mailbox addr: its outcome and status. */
static enum rcpt_state attempt_final(struct local *l, const char *addr, int kind, char *status,
                                     size_t statsz)
{
	switch (kind) {
	case MAILBOX_TARGET_ACTIVE: return deliver_copy(l, addr, status, statsz);
	case MAILBOX_TARGET_DISABLED:
		snprintf(status, statsz, "550 5.2.1 mailbox disabled");
		return RCPT_FAILED;
	case MAILBOX_TARGET_OVER_QUOTA:
		snprintf(status, statsz, "452 4.2.2 mailbox full");
		return RCPT_DEFERRED;
	case MAILBOX_TARGET_LIST: return expand_list(l, addr, status, statsz);
	default: snprintf(status, statsz, "451 4.3.0 unexpected target"); return RCPT_DEFERRED;
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
		         "%.400s (mailboxes: %zu delivered, %zu deferred, %zu failed)", why,
		         count[RCPT_DELIVERED],
		         count[RCPT_DEFERRED] + count[RCPT_PENDING] + count[RCPT_REMOTE],
		         count[RCPT_FAILED]);
	/* PENDING cannot outlast the attempt that recorded it; were it to, retry it. */
	return st == RCPT_PENDING || st == RCPT_REMOTE ? RCPT_DEFERRED : st;
}

static int final_due(const struct envelope_final *f)
{
	return f->state == RCPT_PENDING || f->state == RCPT_DEFERRED || f->state == RCPT_REMOTE;
}

/* Attempts every final mailbox of rc still due; returns rc's state. */
static enum rcpt_state deliver_finals(struct local *l, struct envelope_rcpt *rc, char *status,
                                      size_t statsz)
{
	size_t *foreign = calloc(rc->n_finals ? rc->n_finals : 1, sizeof *foreign), nf = 0;
	for (size_t j = 0; j < rc->n_finals; j++) {
		struct envelope_final *f = &rc->finals[j];
		if (!final_due(f))
			continue;
		char st_text[DELIVER_STATUS_MAX];
		int kind = MAILBOX_TARGET_FOREIGN;
		enum lookup_result lr = final_kind(l, f->addr, &kind);
		if (lr == LOOKUP_FOUND && kind == MAILBOX_TARGET_FOREIGN) {
			if (foreign)
				foreign[nf++] = j; /* one new message for all of them, below */
			continue;
		}
		if (lr == LOOKUP_FOUND && has_copy(l->env, f->addr)) {
			/* Another recipient (or alias) of this message led here: one copy. */
			f->state = RCPT_DELIVERED;
			envelope_set(
			        &f->status,
			        "250 2.0.0 delivered once for every recipient that leads here");
			continue;
		}
		enum rcpt_state st =
		        lr == LOOKUP_FOUND
		                ? attempt_final(l, f->addr, kind, st_text, sizeof st_text)
		                : lookup_failed(lr, st_text, sizeof st_text);
		f->attempts++;
		settle_final(l, rc, f, st, st_text,
		             kind == MAILBOX_TARGET_LIST ? DELIVER_VIA_EXPANSION
		                                         : DELIVER_VIA_LOCAL);
	}
	if (nf > 0)
		expand_foreign(l, rc, foreign, nf);
	free(foreign);
	return sum_up(rc, status, statsz);
}

static enum scheduler_outcome outcome_of(enum rcpt_state st)
{
	return st == RCPT_DELIVERED ? SCHEDULER_DELIVERED
	       : st == RCPT_FAILED  ? SCHEDULER_FAILED
	                            : SCHEDULER_DEFER_RCPT;
}

/* One due recipient: its outcome into o (its finals' states are set here). */
static void deliver_rcpt(struct local *l, struct deliver_outcome *o)
{
	struct envelope_rcpt *rc = &l->env->rcpts[o->rcpt];
	struct mailaddr a;
	enum rcpt_state st = RCPT_DEFERRED;
	char status[DELIVER_STATUS_MAX];
	int own_line = 1;
	if (mailaddr_parse_exact(rc->addr, strlen(rc->addr), &a) != MAILADDR_OK) {
		snprintf(status, sizeof status, "550 5.1.3 bad recipient address syntax");
		st = RCPT_FAILED;
	} else if (rc->n_finals > 0 || record_finals(l, rc, &a, &st, status, sizeof status) == 0) {
		st = deliver_finals(l, rc, status, sizeof status);
		own_line = 0; /* each final mailbox has its own line */
	}
	if (own_line) {
		enum deliver_notice nt =
		        deliver_policy_notice(l->env->mail_from, rc->notify, st, DELIVER_VIA_LOCAL);
		deliver_job_report(l->j, o->rcpt, NULL, "local", st, status, 0, NULL, nt);
	}
	o->state = st;
	o->so = outcome_of(st);
	snprintf(o->status, sizeof o->status, "%s", status);
}

/* Reads the first octets of the data once; returns 0 or -1. */
static int read_head(struct dmsg *m)
{
	if (m->head_read)
		return 0;
	size_t want = m->len < DELIVER_HEADER_SCAN_MAX ? (size_t)m->len : DELIVER_HEADER_SCAN_MAX;
	free(m->head);
	m->head = malloc(want ? want : 1);
	m->head_len = 0;
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
	m->head_read = 1;
	return 0;
}

void deliver_local_work(struct deliver_job *j)
{
	struct dmsg *m = j->m;
	struct local l = {deliver_ctx(j->mgr), j, m, m->env};
	pthread_mutex_lock(&m->mu);
	if (m->removed) { /* done meanwhile: nothing left to deliver */
		for (size_t i = 0; i < j->n; i++)
			j->out[i].so = SCHEDULER_DELIVERED;
		pthread_mutex_unlock(&m->mu);
		return;
	}
	if (read_head(m) < 0) {
		log_warning("deliver %s: cannot read message data", m->id);
		for (size_t i = 0; i < j->n; i++) {
			j->out[i].state = RCPT_DEFERRED;
			j->out[i].so = SCHEDULER_DEFER_RCPT;
			snprintf(j->out[i].status, sizeof j->out[i].status,
			         "451 4.3.0 cannot read the queued message");
		}
		pthread_mutex_unlock(&m->mu);
		return;
	}
	for (size_t i = 0; i < j->n; i++)
		if (j->out[i].rcpt < m->env->n_rcpts)
			deliver_rcpt(&l, &j->out[i]);
	pthread_mutex_unlock(&m->mu);
}
