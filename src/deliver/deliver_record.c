/*
 * deliver_record: the second phase of every job, on a worker with the message's
 * lock held: decide what EXPIRE and DELAY jobs mean, queue the notices the
 * attempt owes, write the recipients' new states (queue_update: atomic), or
 * remove the message when every recipient is done, then log one line per
 * attempt per recipient (per final mailbox for local aliases), Postfix style:
 *
 *   QUEUEID: to=<mailbox>, orig_to=<rcpt>, relay=local|HOST[ADDR]:PORT|none,
 *   delay=S.S, dsn=X.Y.Z, status=sent|deferred|bounced (text)
 *
 * The line comes after the state write, so the log never says "sent" of a
 * recipient the queue would send again; the text is the peer's whole reply for
 * relayed mail, our reason otherwise.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/deliver_int.h"
#include "util/log.h"

double deliver_delay_s(const struct deliver_ctx *x, const struct envelope *env)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	double now = (double)ts.tv_sec + (double)x->clock_offset + (double)ts.tv_nsec / 1e9;
	int64_t us = queue_id_time_us(env->id);
	double since = us >= 0 ? (double)us / 1e6 : (double)env->received_at;
	return now > since ? now - since : 0.0;
}

static int final_open(const struct envelope_final *f)
{
	return f->state == RCPT_PENDING || f->state == RCPT_DEFERRED || f->state == RCPT_REMOTE;
}

/*
 * EXPIRE: queue_lifetime is over for these recipients (local or remote): each
 * mailbox still open fails with 4.4.7 (RFC 3463: delivery time expired), its
 * last status kept in the text, and is bounced.
 */
static void expire_fill(const struct deliver_ctx *x, struct deliver_job *j, struct envelope *env)
{
	for (size_t i = 0; i < j->n; i++) {
		struct deliver_outcome *o = &j->out[i];
		if (o->rcpt >= env->n_rcpts)
			continue;
		struct envelope_rcpt *rc = &env->rcpts[o->rcpt];
		if (rc->state == RCPT_DELIVERED || rc->state == RCPT_FAILED)
			continue;
		char text[DELIVER_STATUS_MAX];
		snprintf(text, sizeof text,
		         "message expired after %d days in the queue; attempts: %d; last: %.300s",
		         x->c->queue_lifetime / 86400, rc->attempts,
		         rc->status && *rc->status ? rc->status : "not tried");
		deliver_policy_status(o->status, sizeof o->status, RCPT_FAILED, 451, "4.4.7", text);
		o->state = RCPT_FAILED;
		o->so = 0; /* the scheduler dropped them already */
		enum deliver_notice nt = deliver_policy_notice(env->mail_from, rc->notify,
		                                               RCPT_FAILED, DELIVER_VIA_LOCAL);
		size_t open = 0;
		for (size_t k = 0; k < rc->n_finals; k++) {
			struct envelope_final *f = &rc->finals[k];
			if (!final_open(f))
				continue;
			open++;
			f->state = RCPT_FAILED;
			envelope_set(&f->status, o->status);
			deliver_job_report(j, o->rcpt, f->addr, "none", RCPT_FAILED, o->status, 0,
			                   NULL, nt);
		}
		if (open == 0)
			deliver_job_report(j, o->rcpt, NULL, "none", RCPT_FAILED, o->status, 0,
			                   NULL, nt);
	}
}

/*
 * DELAY: queue_delay_warning has passed: each recipient gets its delay notice
 * once (the flag in the state file keeps it once across restarts) when NOTIFY
 * asks for it or is absent (RFC 3461 4.1). The recipients stay queued.
 */
static void delay_fill(struct deliver_job *j, struct envelope *env)
{
	for (size_t i = 0; i < j->n; i++) {
		struct deliver_outcome *o = &j->out[i];
		if (o->rcpt >= env->n_rcpts)
			continue;
		struct envelope_rcpt *rc = &env->rcpts[o->rcpt];
		if (rc->delay_notified || rc->state == RCPT_DELIVERED || rc->state == RCPT_FAILED)
			continue;
		rc->delay_notified = 1;
		if (!deliver_policy_delay_wanted(env->mail_from, rc->notify))
			continue;
		char status[DELIVER_STATUS_MAX];
		struct envelope_reply sp;
		envelope_reply_split(rc->status ? rc->status : "", &sp);
		deliver_policy_status(status, sizeof status, RCPT_DEFERRED, sp.code,
		                      sp.enhanced[0] == '4' ? sp.enhanced : "4.0.0",
		                      sp.text ? sp.text : "not yet delivered; still trying");
		deliver_job_report(j, o->rcpt, NULL, "none", RCPT_DEFERRED, status, 0, NULL,
		                   DELIVER_NOTICE_DELAYED);
	}
}

/* The outcomes into the envelope's recipients. */
static void apply(struct deliver_job *j, struct envelope *env)
{
	int attempt = j->kind == DELIVER_JOB_LOCAL || j->kind == DELIVER_JOB_RELAY;
	for (size_t i = 0; i < j->n; i++) {
		const struct deliver_outcome *o = &j->out[i];
		if (o->state == RCPT_PENDING || o->rcpt >= env->n_rcpts)
			continue;
		struct envelope_rcpt *rc = &env->rcpts[o->rcpt];
		rc->state = o->state;
		if (envelope_set(&rc->status, o->status) < 0)
			log_err("deliver %s: out of memory recording a status", env->id);
		if (attempt)
			rc->attempts =
			        (int)(o->attempts < 0x7ffffffe ? o->attempts + 1 : o->attempts);
		rc->next_try = o->state == RCPT_DEFERRED ? (int64_t)o->next_try : 0;
	}
}

static int finished(const struct envelope *env)
{
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (env->rcpts[i].state != RCPT_DELIVERED && env->rcpts[i].state != RCPT_FAILED)
			return 0;
	return 1;
}

/* One line of the log for report rp. */
static void log_report(const struct deliver_ctx *x, const struct envelope *env,
                       const struct deliver_report *rp)
{
	const char *rcpt = rp->rcpt < env->n_rcpts ? env->rcpts[rp->rcpt].addr : "?";
	const char *to = rp->to ? rp->to : rcpt;
	int orig = rp->to && strcmp(rp->to, rcpt) != 0;
	struct envelope_reply sp;
	envelope_reply_split(rp->status, &sp);
	const char *word = rp->state == RCPT_DELIVERED ? "sent"
	                   : rp->state == RCPT_FAILED  ? "bounced"
	                                               : "deferred";
	/* A peer's reply is shown whole, as it came (Postfix's form); our reasons as text. */
	const char *text = rp->peer_code ? rp->status : sp.text ? sp.text : rp->status;
	log_msg(rp->state == RCPT_FAILED ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO,
	        "%s: to=<%s>%s%s%s, relay=%s, delay=%.1f, dsn=%s, status=%s (%s)", env->id, to,
	        orig ? ", orig_to=<" : "", orig ? rcpt : "", orig ? ">" : "", rp->relay,
	        deliver_delay_s(x, env), sp.enhanced[0] ? sp.enhanced : "-", word, text);
}

void deliver_record_work(struct deliver_job *j)
{
	const struct deliver_ctx *x = deliver_ctx(j->mgr);
	struct dmsg *m = j->m;
	struct envelope *env = m->env;
	int removed = 0;
	pthread_mutex_lock(&m->mu);
	if (m->removed) { /* finished by another job: nothing is left to record */
		pthread_mutex_unlock(&m->mu);
		return;
	}
	if (j->kind == DELIVER_JOB_EXPIRE)
		expire_fill(x, j, env);
	else if (j->kind == DELIVER_JOB_DELAY)
		delay_fill(j, env);
	apply(j, env);
	/* Notices first: a crash before the states are written repeats one, never loses one. */
	deliver_bounce_send(x, m, j);
	if (finished(env)) {
		/*
		 * The message goes without a last state write: removing it records
		 * that every recipient is done (queue_remove_done; see queue.h).
		 */
		if (queue_remove_done(x->q, m->id) == 0) {
			m->removed = removed = 1;
			/* The last close of an unlinked file frees its inode and blocks (a
			 * journal handle): here on the worker, never on the delivery loop. */
			if (m->fd >= 0)
				close(m->fd);
			m->fd = -1;
		} else if (queue_update(x->q, env) < 0)
			log_err("deliver %s: cannot record delivery states (deliveries may repeat)",
			        m->id);
	} else if (queue_update(x->q, env) < 0) {
		log_err("deliver %s: cannot record delivery states (deliveries may repeat)", m->id);
	}
	pthread_mutex_unlock(&m->mu);
	for (size_t i = 0; i < j->nrep; i++)
		if (j->rep[i].notice != DELIVER_NOTICE_DELAYED)
			log_report(x, env, &j->rep[i]);
	if (removed)
		log_info("%s: removed", m->id);
}
