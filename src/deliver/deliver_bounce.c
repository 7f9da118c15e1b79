/*
 * deliver_bounce: the notices one attempt owes the sender (RFC 3464 reports,
 * composed by dsn.c), queued as new messages from <> to the envelope sender
 * (RFC 5321 4.5.5) and delivered like any other. One attempt (one job) makes
 * at most one failure notice listing every recipient that failed in it, one
 * success notice (delivered, relayed, expanded) and one delay notice. What of
 * the original is returned is read from the queued file: at most
 * queue_bounce_max_return + 1 octets (more says "too large: headers only").
 *
 * Runs on a worker with the message's lock held, before the states are
 * written: a crash in between repeats the attempt and its notice (at most one
 * duplicate), never loses a notice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/deliver_int.h"
#include "deliver/dsn.h"
#include "util/log.h"

#define BOUNCE_SLACK (256 * 1024) /* the notice's own parts, beyond what it returns */

enum bounce_class { BOUNCE_FAILURE = 0, BOUNCE_SUCCESS, BOUNCE_DELAY, BOUNCE_CLASSES };

static enum bounce_class class_of(enum deliver_notice n)
{
	switch (n) {
	case DELIVER_NOTICE_FAILED: return BOUNCE_FAILURE;
	case DELIVER_NOTICE_DELAYED: return BOUNCE_DELAY;
	default: return BOUNCE_SUCCESS;
	}
}

static enum dsn_action action_of(enum deliver_notice n)
{
	switch (n) {
	case DELIVER_NOTICE_FAILED: return DSN_ACTION_FAILED;
	case DELIVER_NOTICE_DELAYED: return DSN_ACTION_DELAYED;
	case DELIVER_NOTICE_RELAYED: return DSN_ACTION_RELAYED;
	case DELIVER_NOTICE_EXPANDED: return DSN_ACTION_EXPANDED;
	default: return DSN_ACTION_DELIVERED;
	}
}

/* Reads the first want octets of the data into a new buffer (*got: how many). */
static char *read_data(const struct dmsg *m, size_t want, size_t *got)
{
	char *buf = malloc(want ? want : 1);
	*got = 0;
	if (!buf)
		return NULL;
	while (*got < want) {
		ssize_t n = pread(m->fd, buf + *got, want - *got, (off_t)(m->data_off + *got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		*got += (size_t)n;
	}
	return buf;
}

/* The recipients of one notice, with the strings they point to. */
struct notice {
	struct dsn_rcpt *r;
	char **own; /* ORCPT strings made here */
	char (*enh)[ENVELOPE_ENHANCED_MAX]; /* each one's status code */
	size_t n;
};

static void notice_free(struct notice *nt)
{
	for (size_t i = 0; i < nt->n; i++)
		free(nt->own[i]);
	free(nt->own);
	free(nt->enh);
	free(nt->r);
}

/* Fills one dsn_rcpt from a report. 0, or -1 out of memory. */
static int fill_rcpt(const struct deliver_ctx *x, const struct envelope *env,
                     const struct deliver_report *rp, int64_t now, struct dsn_rcpt *d, char **own,
                     char enh[ENVELOPE_ENHANCED_MAX])
{
	const struct envelope_rcpt *rc = &env->rcpts[rp->rcpt];
	struct envelope_reply sp;
	envelope_reply_split(rp->status, &sp);
	memset(d, 0, sizeof *d);
	*own = NULL;
	d->addr = rp->to ? rp->to : rc->addr;
	d->orcpt = rc->orcpt;
	if (!d->orcpt && rp->to && strcmp(rp->to, rc->addr) != 0) {
		/* A final mailbox reached through the recipient: name the recipient too. */
		size_t n = strlen(rc->addr) + 8;
		*own = malloc(n);
		if (!*own)
			return -1;
		snprintf(*own, n, "rfc822;%s", rc->addr);
		d->orcpt = *own;
	}
	d->action = action_of(rp->notice);
	memcpy(enh, sp.enhanced, ENVELOPE_ENHANCED_MAX);
	d->status = enh[0] ? enh : NULL;
	d->reply_code = rp->peer_code;
	/* A peer's reply whole after its code (RFC 3464 2.3.6: "smtp; 550 5.1.1 ..."). */
	d->diag = rp->peer_code && sp.code && strlen(rp->status) > 4 ? rp->status + 4 : sp.text;
	d->remote_mta = rp->remote_mta;
	d->last_attempt = now;
	if (rp->notice == DELIVER_NOTICE_DELAYED)
		d->retry_until = env->received_at + x->c->queue_lifetime;
	return 0;
}

/* The envelope of a notice and queueing it: 0 with the id, or -1. */
static int queue_notice(const struct deliver_ctx *x, const struct dsn_envelope *de,
                        const struct dsn_out *o, int64_t now, char id[QUEUE_ID_MAX])
{
	struct envelope *e = envelope_new();
	int rc = -1;
	if (e && envelope_set(&e->mail_from, "") == 0 && envelope_set(&e->helo, x->hostname) == 0 &&
	    envelope_add_rcpt(e, de->rcpt_to, NULL, 0) >= 0) {
		e->body = de->body_8bitmime ? ESMTP_BODY_8BITMIME : ESMTP_BODY_7BIT;
		e->received_at = now;
		e->trusted = 1; /* ours: local delivery may add a Date (it has one anyway) */
		rc = queue_enqueue(x->q, e, o->p, o->len, id);
	}
	envelope_free(e);
	return rc;
}

static const char *class_name(enum bounce_class c)
{
	return c == BOUNCE_FAILURE ? "non-delivery"
	       : c == BOUNCE_DELAY ? "delay"
	                           : "delivery status";
}

/* Composes and queues the notice of class c for the reports that ask for it. */
static void send_class(const struct deliver_ctx *x, struct dmsg *m, const struct deliver_job *j,
                       enum bounce_class c, const char *data, size_t dlen)
{
	const struct envelope *env = m->env;
	struct notice nt = {calloc(j->nrep, sizeof *nt.r), calloc(j->nrep, sizeof *nt.own),
	                    calloc(j->nrep, sizeof *nt.enh), 0};
	int64_t now = deliver_now(x);
	if (!nt.r || !nt.own || !nt.enh) {
		log_err("%s: out of memory composing a %s notification", env->id, class_name(c));
		notice_free(&nt);
		return;
	}
	for (size_t i = 0; i < j->nrep; i++) {
		const struct deliver_report *rp = &j->rep[i];
		if (rp->notice == DELIVER_NOTICE_NONE || class_of(rp->notice) != c ||
		    rp->rcpt >= env->n_rcpts)
			continue;
		if (fill_rcpt(x, env, rp, now, &nt.r[nt.n], &nt.own[nt.n], nt.enh[nt.n]) == 0)
			nt.n++;
	}
	if (nt.n == 0) {
		notice_free(&nt);
		return;
	}
	char mid[96];
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		rnd = (uint32_t)now;
	snprintf(mid, sizeof mid, "%s.%c%lld.%08x", env->id, "FSD"[c], (long long)now, rnd);
	size_t ret_max = (size_t)x->c->queue_bounce_max_return;
	struct dsn_params p = {x->hostname, mid,
	                       c == BOUNCE_FAILURE ? DSN_KIND_FAILURE
	                       : c == BOUNCE_DELAY ? DSN_KIND_DELAY
	                                           : DSN_KIND_SUCCESS,
	                       now, ret_max};
	struct dsn_msg msg = {env->id,
	                      env->mail_from,
	                      env->envid,
	                      env->ret,
	                      env->received_at,
	                      env->body == ESMTP_BODY_8BITMIME,
	                      data,
	                      dlen};
	struct dsn_out o;
	struct dsn_envelope de;
	char id[QUEUE_ID_MAX];
	dsn_out_init(&o, ret_max + BOUNCE_SLACK);
	enum dsn_result dr = dsn_compose(&p, &msg, nt.r, nt.n, &o, &de);
	if (dr != DSN_OK)
		log_err("%s: no %s notification to <%s>: %s", env->id, class_name(c),
		        env->mail_from, dsn_result_str(dr));
	else if (queue_notice(x, &de, &o, now, id) < 0)
		log_err("%s: cannot queue the sender %s notification: %s", env->id, class_name(c),
		        strerror(errno));
	else
		log_info("%s: sender %s notification: %s", env->id, class_name(c), id);
	dsn_out_free(&o);
	notice_free(&nt);
}

void deliver_bounce_send(const struct deliver_ctx *x, struct dmsg *m, const struct deliver_job *j)
{
	int want[BOUNCE_CLASSES] = {0}, any = 0;
	for (size_t i = 0; i < j->nrep; i++)
		if (j->rep[i].notice != DELIVER_NOTICE_NONE)
			any = want[class_of(j->rep[i].notice)] = 1;
	if (!any)
		return;
	/*
	 * One octet more than queue_bounce_max_return tells dsn_compose the message
	 * is too large to return whole, without reading all of it.
	 */
	size_t ret_max = (size_t)x->c->queue_bounce_max_return;
	size_t want_len = ret_max == 0 ? 0 : (m->len > ret_max ? ret_max + 1 : (size_t)m->len);
	size_t got = 0;
	char *data = read_data(m, want_len, &got);
	int whole = data && got == want_len; /* a short read returns nothing, never a part */
	for (int c = 0; c < BOUNCE_CLASSES; c++)
		if (want[c])
			send_class(x, m, j, (enum bounce_class)c, whole ? data : "",
			           whole ? got : 0);
	free(data);
}
