/*
 * deliver_expand: one mechanism for an alias's foreign targets and a list's
 * members: a new message through the same queue (so it is delivered, retried,
 * expired and bounced like any other), with the original's data after a few
 * fields of ours, streamed from the queued file (never held whole in memory).
 * Runs on a worker, the original message's lock held; queue_msg_commit_wait
 * returns once the new message is durable, and the manager learns of it from
 * the commit like of any other.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/deliver_int.h"
#include "verify/verify_servers.h"
#include "util/log.h"

#define EXPAND_BUF 65536

/* 1 if the header line at p (up to e) starts a field named name (any case). */
static int field_named(const char *p, const char *e, const char *name)
{
	size_t n = strlen(name);
	return (size_t)(e - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':';
}

/*
 * Writes m's header section (in m->head) without its fields named drop, whole
 * with their folded lines (RFC 5322 2.2.3): a copy to a list carries the list's
 * own List-Id, never a second one (RFC 2919 3). Returns the octets of the data
 * it covered, or -1.
 */
static long copy_header_without(struct dmsg *m, struct queue_msg *qm, const char *drop)
{
	const char *p = m->head, *end = m->head + m->scan.header_len;
	int dropping = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl + 1 : end;
		if (*p != ' ' && *p != '\t')
			dropping = field_named(p, e, drop);
		if (!dropping && queue_msg_write(qm, p, (size_t)(e - p)) < 0)
			return -1;
		p = e;
	}
	return (long)m->scan.header_len;
}

/* Copies m's data into the new message (without the fields named drop, when given). 0 or -1. */
static int copy_data(struct dmsg *m, struct queue_msg *qm, const char *drop)
{
	uint64_t off = 0;
	if (drop && m->head_read && m->scan.complete) {
		long n = copy_header_without(m, qm, drop);
		if (n < 0)
			return -1;
		off = (uint64_t)n;
	}
	char *buf = malloc(EXPAND_BUF);
	if (!buf)
		return -1;
	int rc = 0;
	while (off < m->len) {
		size_t want = m->len - off > EXPAND_BUF ? EXPAND_BUF : (size_t)(m->len - off);
		ssize_t n = pread(m->fd, buf, want, (off_t)(m->data_off + off));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO; /* shorter than its END record says: never a short copy */
			rc = -1;
			break;
		}
		if (queue_msg_write(qm, buf, (size_t)n) < 0) {
			rc = -1;
			break;
		}
		off += (uint64_t)n;
	}
	free(buf);
	return rc;
}

/* The new message's envelope: the original's trace facts, the given sender and recipients. */
static struct envelope *new_envelope(const struct deliver_ctx *x, const struct envelope *orig,
                                     const char *sender, const char *const *rcpts,
                                     const char *const *orcpts, const unsigned *notify, size_t n,
                                     int keep_dsn)
{
	struct envelope *e = envelope_new();
	if (!e || envelope_set(&e->mail_from, sender) < 0 ||
	    envelope_set(&e->helo, orig->helo) < 0 ||
	    envelope_set(&e->client_addr, orig->client_addr) < 0 ||
	    (keep_dsn && envelope_set(&e->envid, orig->envid) < 0)) {
		envelope_free(e);
		return NULL;
	}
	e->ret = keep_dsn ? orig->ret : ESMTP_RET_UNSET;
	e->body = orig->body;
	e->trusted = orig->trusted;
	e->received_at = deliver_now(x);
	for (size_t i = 0; i < n; i++) {
		if (envelope_add_rcpt(e, rcpts[i], orcpts ? orcpts[i] : NULL,
		                      notify ? notify[i] : 0) < 0) {
			envelope_free(e);
			return NULL;
		}
	}
	return e;
}

int deliver_expand_enqueue(const struct deliver_ctx *x, struct dmsg *m, const char *prefix,
                           size_t plen, const char *sender, const char *const *rcpts,
                           const char *const *orcpts, const unsigned *notify, size_t n,
                           int keep_dsn, char id[QUEUE_ID_MAX])
{
	struct envelope *e = new_envelope(x, m->env, sender, rcpts, orcpts, notify, n, keep_dsn);
	if (!e) {
		errno = ENOMEM;
		return -1;
	}
	struct queue_msg *qm = queue_msg_begin(x->q);
	if (!qm || queue_msg_write(qm, prefix, plen) < 0 ||
	    copy_data(m, qm, keep_dsn ? NULL : "List-Id") < 0) {
		int err = errno;
		queue_msg_abort(qm);
		envelope_free(e);
		errno = err;
		return -1;
	}
	int rc = queue_msg_commit_wait(qm, e, id);
	int err = errno;
	envelope_free(e);
	errno = err;
	return rc;
}

/* ---- Domain Sharing lists ---- */

/* The shared copy's envelope: m's sender and DSN values, list once per peer with its route. */
static struct envelope *share_envelope(const struct deliver_ctx *x, const struct envelope *orig,
                                       const char *list, const char *id)
{
	const struct conf *c = x->c;
	struct envelope *e = new_envelope(x, orig, orig->mail_from, NULL, NULL, NULL, 0, 1);
	if (!e)
		return NULL;
	snprintf(e->id, sizeof e->id, "%s", id);
	struct verify_servers peers;
	char err[512];
	if (verify_servers_load(c, 0, &peers, err, sizeof err) < 0) { /* conf checked the lines */
		envelope_free(e);
		return NULL;
	}
	for (size_t i = 0; i < peers.npeers; i++) {
		char route[NEXTHOP_PEER_ROUTE_MAX + sizeof DELIVER_ROUTE_LIST_PREFIX];
		snprintf(route, sizeof route, "%s%s", DELIVER_ROUTE_LIST_PREFIX, peers.v[i].route);
		int k = envelope_add_rcpt(e, list, NULL, 0);
		if (k < 0 || envelope_rcpt_set_route(&e->rcpts[k], route) < 0) {
			verify_servers_free(&peers);
			envelope_free(e);
			return NULL;
		}
	}
	verify_servers_free(&peers);
	return e;
}

int deliver_expand_share_list(const struct deliver_ctx *x, struct dmsg *m, const char *list,
                              char id[QUEUE_ID_MAX])
{
	const struct conf *c = x->c;
	id[0] = '\0';
	if (!c->domain_sharing_share_lists || c->domain_sharing_host.n == 0 ||
	    deliver_headers_has(m->head, m->scan.header_len, DELIVER_LIST_SHARED_FIELD))
		return 0;
	char field[NEXTHOP_NAME_MAX + 64];
	int flen =
	        snprintf(field, sizeof field, "%s: %s\r\n", DELIVER_LIST_SHARED_FIELD, x->hostname);
	if (flen < 0 || (size_t)flen >= sizeof field) {
		errno = EINVAL;
		return -1;
	}
	struct queue_msg *qm = queue_msg_begin(x->q);
	struct envelope *e = qm ? share_envelope(x, m->env, list, queue_msg_id(qm)) : NULL;
	/*
	 * The routes go into the state file before the commit: the manager learns of
	 * the message from the commit and finds them when it loads it. A crash
	 * before the commit leaves a message without an END (quarantined) and an
	 * orphan state (deleted at start-up); the post is shared again then.
	 */
	if (!e || e->n_rcpts == 0 || queue_update(x->q, e) < 0 ||
	    queue_msg_write(qm, field, (size_t)flen) < 0 || copy_data(m, qm, NULL) < 0) {
		int err = e && e->n_rcpts == 0 ? 0 : errno ? errno : ENOMEM;
		queue_msg_abort(qm);
		envelope_free(e);
		errno = err;
		return err ? -1 : 0;
	}
	int rc = queue_msg_commit_wait(qm, e, id);
	int err = errno;
	if (rc == 0)
		log_info("%s: list <%s> shared with %zu Domain Sharing peers in %s", m->env->id,
		         list, e->n_rcpts, id);
	envelope_free(e);
	errno = err;
	return rc;
}
