/* minger_handler: see minger_handler.h. */
#include "minger/minger_handler.h"

#include <string.h>

#include "minger/minger_ratelimit.h"
#include "minger/minger_replay.h"
#include "util/log.h"

/* Each refusal class logs at most 5 lines, then one per 10 s, across all workers. */
static struct log_limit event_limits[MINGER_EV_COUNT] = {
        LOG_LIMIT_INIT(5, 10), LOG_LIMIT_INIT(5, 10), LOG_LIMIT_INIT(5, 10), LOG_LIMIT_INIT(5, 10),
        LOG_LIMIT_INIT(5, 10), LOG_LIMIT_INIT(5, 10), LOG_LIMIT_INIT(5, 10), LOG_LIMIT_INIT(5, 10),
};

static const char *const event_words[MINGER_EV_COUNT] = {
        "oversize or unusable datagram dropped", "source not in minger_allow (status 1)",
        "rate limit exceeded, dropped",          "malformed query (status 0)",
        "authentication failed (status 2)",      "stale timestamp or replayed nonce (status 2)",
        "lookup failed temporarily, dropped",    "reply longer than the query, dropped",
};

void minger_handler_init(struct minger_handler *h, const struct minger_handler_conf *conf,
                         lookup_fn lookup, void *lookup_arg, struct minger_source_table *sources,
                         struct minger_global_limit *global, struct minger_replay *replay)
{
	memset(h, 0, sizeof *h);
	h->conf = conf;
	h->lookup = lookup;
	h->lookup_arg = lookup_arg;
	h->sources = sources;
	h->global = global;
	h->replay = replay;
}

/*
 * Counts a refusal and logs it, rate-limited twice: this worker tries at most once
 * a second per class (no lock on the hot path), and log_limit caps all workers.
 */
static void note(struct minger_handler *h, enum minger_event ev, const struct sockaddr *src,
                 const struct minger_now *now)
{
	h->stats.events[ev]++;
	if (now->mono_ms < h->log_next_ms[ev])
		return;
	h->log_next_ms[ev] = now->mono_ms + 1000;
	if (!log_limit_allow(&event_limits[ev]))
		return;
	char addr[80];
	netaddr_format(src, addr, sizeof addr);
	log_info("minger: %s from %s (%llu of this kind in this worker)", event_words[ev], addr,
	         (unsigned long long)h->stats.events[ev]);
}

static int source_allowed(const struct minger_handler_conf *c, const struct sockaddr *src)
{
	if (c->n_allow == 0)
		return 1;
	for (size_t i = 0; i < c->n_allow; i++)
		if (netaddr_net_contains(&c->allow[i], src))
			return 1;
	return 0;
}

static int source_is_gateway(const struct minger_handler_conf *c, const struct sockaddr *src)
{
	for (size_t i = 0; i < c->n_gateway_clients; i++)
		if (netaddr_net_contains(&c->gateway_clients[i], src))
			return 1;
	return 0;
}

static int source_rate_ok(struct minger_handler *h, const struct sockaddr *src,
                          const struct minger_now *now)
{
	return !h->sources || minger_source_table_allow(h->sources, src, now->mono_ms);
}

/* The global bucket is taken in leases so the shared lock is rare. */
static int global_rate_ok(struct minger_handler *h, const struct minger_now *now)
{
	if (!h->global)
		return 1;
	if (h->lease == 0)
		h->lease = minger_global_limit_take(h->global, now->mono_ms, MINGER_HANDLER_LEASE);
	if (h->lease == 0)
		return 0;
	h->lease--;
	return 1;
}

void minger_handler_batch_end(struct minger_handler *h)
{
	if (h->global && h->lease)
		minger_global_limit_give_back(h->global, h->lease);
	h->lease = 0;
}

/*
 * The sharemail extension: the mac must verify with one of the secrets, the
 * timestamp lie within the window, and the nonce be new. Every secret is tried
 * so the time taken does not tell which one matched. Returns the secret's index,
 * or -1 with *ev set.
 */
static int auth_extension(struct minger_handler *h, const struct minger_query *q,
                          const struct minger_now *now, enum minger_event *ev)
{
	const struct minger_handler_conf *c = h->conf;
	int found = -1;
	for (size_t i = 0; i < c->n_secrets; i++)
		if (minger_query_mac_matches(q, c->secrets[i].s, c->secrets[i].len) && found < 0)
			found = (int)i;
	*ev = MINGER_EV_AUTH;
	if (found < 0 || !h->replay)
		return -1;
	*ev = MINGER_EV_REPLAY;
	int64_t window = c->replay_window > 0 ? c->replay_window : 0;
	if (q->ts > (uint64_t)INT64_MAX - (uint64_t)window)
		return -1;
	int64_t ts = (int64_t)q->ts;
	if (ts < now->wall_s - window || ts > now->wall_s + window)
		return -1;
	/* Once ts + window has passed, the timestamp check refuses a replay on its own. */
	if (minger_replay_check(h->replay, q->nonce, ts + window, now->wall_s) != MINGER_REPLAY_NEW)
		return -1;
	return found;
}

/* -06 section 2.1: the digest must match one of the secrets (constant-time compares). */
static int auth_digest(const struct minger_handler_conf *c, const struct minger_query *q)
{
	int ok = 0;
	for (size_t i = 0; i < c->n_secrets; i++)
		ok |= minger_digest_matches(q, c->secrets[i].s, c->secrets[i].len);
	return ok;
}

/*
 * Maps the lookup to a status (-06 section 3), or -1 for "try later" (no reply, so
 * the asker answers 451 rather than trusting a stale "no such address"). A gateway
 * in front of us accepts mail for a forwarding alias and hands it to us, so it must
 * see the alias as active whatever the setting for other askers.
 */
static int lookup_status(const struct minger_handler *h, const struct minger_query *q,
                         const struct sockaddr *src)
{
	const struct minger_handler_conf *c = h->conf;
	struct lookup_answer a = {.kind = LOOKUP_KIND_NONE};
	switch (h->lookup(h->lookup_arg, q->mailbox, q->mailbox_len, &a)) {
	case LOOKUP_FOUND: break;
	case LOOKUP_NOTFOUND: return MINGER_STATUS_UNKNOWN;
	default: return -1;
	}
	if (a.kind == LOOKUP_KIND_ALIAS_FOREIGN) {
		int active = c->foreign_aliases_active || source_is_gateway(c, src);
		return active ? MINGER_STATUS_ACTIVE : MINGER_STATUS_UNKNOWN;
	}
	return a.can_receive ? MINGER_STATUS_ACTIVE : MINGER_STATUS_INACTIVE;
}

/* Formats the reply and applies the amplification rule; returns its length or 0 (drop). */
static size_t finish(struct minger_handler *h, const struct minger_query *q, int status,
                     int mac_secret, size_t query_len, const struct sockaddr *src,
                     const struct minger_now *now, char *out, size_t outsz)
{
	const struct minger_handler_conf *c = h->conf;
	uint8_t mac[MINGER_MAC_LEN];
	if (mac_secret >= 0)
		minger_reply_mac(c->secrets[mac_secret].s, c->secrets[mac_secret].len, q->mailbox,
		                 q->mailbox_len, status, q->nonce, mac);
	int n = minger_reply_format(out, outsz, q->mailbox, q->mailbox_len, status,
	                            mac_secret >= 0 ? mac : NULL);
	size_t limit = query_len + (c->strict_amplification ? 0 : 2);
	if (n <= 0 || (size_t)n > limit) {
		note(h, MINGER_EV_AMPLIFICATION, src, now);
		return 0;
	}
	h->stats.replies++;
	h->stats.status[status]++;
	return (size_t)n;
}

size_t minger_handler_handle(struct minger_handler *h, const uint8_t *dgram, size_t len,
                             const struct sockaddr *src, const struct minger_now *now, char *out,
                             size_t outsz)
{
	const struct minger_handler_conf *c = h->conf;
	struct minger_query q;
	h->stats.queries++;
	enum minger_parse_result pr = MINGER_PARSE_UNUSABLE;
	if (len <= MINGER_DATAGRAM_MAX)
		pr = minger_query_parse(dgram, len, c->compat, &q);
	if (pr == MINGER_PARSE_UNUSABLE) {
		note(h, MINGER_EV_OVERSIZE, src, now);
		return 0;
	}
	int malformed = pr != MINGER_PARSE_OK;
	/*
	 * Denied sources are held to their own per-source rate but do not draw on the
	 * global budget, so they cannot starve the allowed peers.
	 */
	if (!source_allowed(c, src)) {
		if (!source_rate_ok(h, src, now)) {
			note(h, MINGER_EV_RATE, src, now);
			return 0;
		}
		note(h, MINGER_EV_DENIED, src, now);
		return finish(h, &q, MINGER_STATUS_DENIED, -1, len, src, now, out, outsz);
	}
	if (!source_rate_ok(h, src, now) || !global_rate_ok(h, now)) {
		note(h, MINGER_EV_RATE, src, now);
		return 0;
	}
	if (malformed) {
		note(h, MINGER_EV_MALFORMED, src, now);
		return finish(h, &q, MINGER_STATUS_MALFORMED, -1, len, src, now, out, outsz);
	}
	/* Authentication comes first and alone: a refusal never depends on the mailbox. */
	int mac_secret = -1;
	enum minger_event ev = MINGER_EV_AUTH;
	int ok;
	if (q.has_ext)
		ok = (mac_secret = auth_extension(h, &q, now, &ev)) >= 0;
	else if (q.digest_form != MINGER_DIGEST_NONE)
		ok = auth_digest(c, &q);
	else
		ok = c->anonymous;
	if (!ok) {
		note(h, ev, src, now);
		return finish(h, &q, MINGER_STATUS_AUTH, -1, len, src, now, out, outsz);
	}
	int status = lookup_status(h, &q, src);
	if (status < 0) {
		note(h, MINGER_EV_TEMPFAIL, src, now);
		return 0;
	}
	return finish(h, &q, status, mac_secret, len, src, now, out, outsz);
}
