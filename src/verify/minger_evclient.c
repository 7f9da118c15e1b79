/*
 * minger_evclient: see minger_evclient.h.
 *
 * In-flight queries live in a hash table keyed by the mailbox octets (FNV-1a):
 * a reply costs one probe and a walk of the few queries for that mailbox (the
 * same address asked of several peers at once lands in one bucket), compared by
 * server address and port, then by mailbox and mac (minger_slot_match). The
 * sources we asked are kept in a small list so a datagram from anywhere else is
 * counted as a wrong source before it is parsed, as the blocking client does.
 *
 * Why unconnected sockets: as in minger_client.c, an ICMP error or a spoofer must
 * not end a query, and replies from elsewhere are counted.
 */
#include "verify/minger_evclient.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "util/timeutil.h"

#define EC_BUCKETS 1024 /* a power of two */
#define EC_READ_BATCH 256 /* datagrams read per wakeup, so timers still run under a flood */
#define EC_SOURCES_MAX 256 /* servers remembered for the source check */
#define EC_MATCH_MAX 64 /* queries one reply can answer (same server and mailbox) */
#define EC_RCVBUF (1 << 20) /* a burst of replies to many pipelined RCPTs fits */

struct minger_evq {
	struct minger_evclient *c;
	struct minger_evq *next, *prev; /* bucket chain */
	size_t bucket;
	struct netaddr server;
	const struct minger_slot_cfg *cfg;
	struct event *timer;
	minger_evclient_cb cb;
	void *arg;
	uint64_t sent_us; /* monotonic time of the last send */
	int firing; /* unlinked, its callback about to run */
	int cancelled; /* cancelled while firing: skip the callback */
	struct minger_slot slot;
};

struct ec_sock {
	int fd;
	struct event *ev;
};

struct minger_evclient {
	struct event_base *base;
	int timeout_ms, retries;
	struct ec_sock v4, v6;
	struct minger_evq *buckets[EC_BUCKETS];
	size_t pending;
	struct netaddr sources[EC_SOURCES_MAX];
	size_t nsources;
	int sources_full; /* more servers than remembered: skip the early source check */
};

static size_t hash_mailbox(const char *m, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)m[i]) * 16777619u;
	return h & (EC_BUCKETS - 1);
}

static void bucket_link(struct minger_evclient *c, struct minger_evq *q)
{
	q->bucket = hash_mailbox(q->slot.mailbox, q->slot.mailbox_len);
	q->prev = NULL;
	q->next = c->buckets[q->bucket];
	if (q->next)
		q->next->prev = q;
	c->buckets[q->bucket] = q;
	c->pending++;
}

static void bucket_unlink(struct minger_evclient *c, struct minger_evq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		c->buckets[q->bucket] = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->next = q->prev = NULL;
	c->pending--;
}

static void query_free(struct minger_evq *q)
{
	if (q->timer)
		event_free(q->timer);
	minger_slot_wipe(&q->slot); /* it holds digests and macs derived from the secret */
	free(q);
}

static struct ec_sock *sock_for(struct minger_evclient *c, int family)
{
	struct ec_sock *s = family == AF_INET6 ? &c->v6 : family == AF_INET ? &c->v4 : NULL;
	return s && s->fd >= 0 ? s : NULL;
}

/* Sends the query's next attempt and arms its timer. Returns -1 when it cannot be built. */
static int query_send(struct minger_evq *q)
{
	if (minger_slot_next(&q->slot, q->cfg) < 0)
		return -1;
	struct ec_sock *s = sock_for(q->c, q->server.ss.ss_family);
	/* A failed send is a lost datagram: the retransmission timer covers it. */
	if (s)
		(void)sendto(s->fd, q->slot.dgram, q->slot.dgram_len, 0,
		             (const struct sockaddr *)&q->server.ss, q->server.len);
	q->sent_us = time_mono_us();
	struct timeval tv = {.tv_sec = q->c->timeout_ms / 1000,
	                     .tv_usec = (q->c->timeout_ms % 1000) * 1000};
	evtimer_add(q->timer, &tv);
	return 0;
}

/* Ends a linked query with result: unlinks it, runs the callback, frees it. */
static void query_finish(struct minger_evq *q, int result, uint64_t rtt_us)
{
	bucket_unlink(q->c, q);
	evtimer_del(q->timer);
	q->cb(q->arg, result, rtt_us);
	query_free(q);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct minger_evq *q = arg;
	if (q->slot.attempts > q->c->retries)
		query_finish(q, MINGER_RESULT_TIMEOUT, 0);
	else if (query_send(q) < 0)
		query_finish(q, MINGER_RESULT_ERROR, 0);
}

static int source_known(const struct minger_evclient *c, const struct sockaddr *from)
{
	if (c->sources_full)
		return 1;
	for (size_t i = 0; i < c->nsources; i++)
		if (netaddr_equal(from, (const struct sockaddr *)&c->sources[i].ss))
			return 1;
	return 0;
}

static void source_add(struct minger_evclient *c, const struct netaddr *server)
{
	if (source_known(c, (const struct sockaddr *)&server->ss))
		return;
	if (c->nsources == EC_SOURCES_MAX)
		c->sources_full = 1;
	else
		c->sources[c->nsources++] = *server;
}

/*
 * Collects the queries a reply answers (unlinked and marked firing, so callbacks
 * may cancel any query, these included), then runs their callbacks.
 */
static void handle_reply(struct minger_evclient *c, const struct minger_reply *rep,
                         const struct sockaddr *from)
{
	struct minger_evq *hit[EC_MATCH_MAX];
	size_t nhit = 0;
	int same_mailbox = 0, same_server = 0;
	uint64_t now = time_mono_us();
	struct minger_evq *q = c->buckets[hash_mailbox(rep->mailbox, rep->mailbox_len)];
	while (q && nhit < EC_MATCH_MAX) {
		struct minger_evq *next = q->next;
		if (!netaddr_equal(from, (const struct sockaddr *)&q->server.ss)) {
			same_mailbox |=
			        q->slot.mailbox_len == rep->mailbox_len &&
			        memcmp(q->slot.mailbox, rep->mailbox, rep->mailbox_len) == 0;
			q = next;
			continue;
		}
		enum minger_slot_match m = minger_slot_match(&q->slot, q->cfg, rep, from);
		same_server |= m != MINGER_SLOT_OTHER;
		if (m == MINGER_SLOT_ACCEPT) {
			bucket_unlink(c, q);
			evtimer_del(q->timer);
			q->firing = 1;
			hit[nhit++] = q;
		}
		q = next;
	}
	if (!same_server)
		minger_slot_ignored(same_mailbox ? MINGER_IGNORE_WRONG_SOURCE
		                                 : MINGER_IGNORE_WRONG_MAILBOX,
		                    from);
	for (size_t i = 0; i < nhit; i++) {
		if (!hit[i]->cancelled)
			hit[i]->cb(hit[i]->arg, rep->status, now - hit[i]->sent_us);
		query_free(hit[i]);
	}
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct minger_evclient *c = arg;
	for (int i = 0; i < EC_READ_BATCH; i++) {
		uint8_t buf[MINGER_DATAGRAM_MAX + 1];
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof from;
		ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC,
		                     (struct sockaddr *)&from, &fromlen);
		if (n < 0) {
			if (errno == EINTR || errno == ECONNREFUSED)
				continue; /* ICMP noise must not end anything */
			return; /* EAGAIN: drained */
		}
		const struct sockaddr *sa = (const struct sockaddr *)&from;
		if (!source_known(c, sa)) {
			minger_slot_ignored(MINGER_IGNORE_WRONG_SOURCE, sa);
			continue;
		}
		/* With MSG_TRUNC, n is the real length, so oversize datagrams are seen. */
		struct minger_reply rep;
		if (minger_slot_parse(buf, (size_t)n, sa, &rep) == 0)
			handle_reply(c, &rep, sa);
	}
}

static int sock_open(struct minger_evclient *c, struct ec_sock *s, int family)
{
	s->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -1;
	int rcv = EC_RCVBUF;
	(void)setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
	if (family == AF_INET6) {
		int on = 1; /* IPv4 goes through the IPv4 socket */
		(void)setsockopt(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	}
	s->ev = event_new(c->base, s->fd, EV_READ | EV_PERSIST, on_readable, c);
	if (!s->ev || event_add(s->ev, NULL) != 0)
		return -1;
	return 0;
}

static void sock_close(struct ec_sock *s)
{
	if (s->ev)
		event_free(s->ev);
	if (s->fd >= 0)
		close(s->fd);
	s->ev = NULL;
	s->fd = -1;
}

struct minger_evclient *minger_evclient_new(struct event_base *base, int timeout_ms, int retries,
                                            char *err, size_t errlen)
{
	if (timeout_ms <= 0 || retries < 0) {
		snprintf(err, errlen, "timeout must be positive and retries not negative");
		return NULL;
	}
	struct minger_evclient *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->base = base;
	c->timeout_ms = timeout_ms;
	c->retries = retries > MINGER_CLIENT_RETRIES_MAX ? MINGER_CLIENT_RETRIES_MAX : retries;
	c->v4.fd = c->v6.fd = -1;
	if (sock_open(c, &c->v4, AF_INET) < 0) {
		snprintf(err, errlen, "minger client socket: %s", strerror(errno));
		minger_evclient_free(c);
		return NULL;
	}
	if (sock_open(c, &c->v6, AF_INET6) < 0)
		sock_close(&c->v6); /* no IPv6 here: IPv6 servers cannot be asked */
	return c;
}

void minger_evclient_free(struct minger_evclient *c)
{
	if (!c)
		return;
	for (size_t b = 0; b < EC_BUCKETS; b++)
		while (c->buckets[b]) {
			struct minger_evq *q = c->buckets[b];
			bucket_unlink(c, q);
			query_free(q);
		}
	sock_close(&c->v4);
	sock_close(&c->v6);
	free(c);
}

struct minger_evq *minger_evclient_query(struct minger_evclient *c, const struct netaddr *server,
                                         const struct minger_slot_cfg *cfg, const char *mailbox,
                                         size_t len, minger_evclient_cb cb, void *arg)
{
	if (!sock_for(c, server->ss.ss_family))
		return NULL;
	struct minger_evq *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	if (minger_slot_init(&q->slot, mailbox, len) < 0) {
		free(q);
		return NULL;
	}
	q->c = c;
	q->server = *server;
	q->cfg = cfg;
	q->cb = cb;
	q->arg = arg;
	q->timer = evtimer_new(c->base, on_timer, q);
	if (!q->timer || query_send(q) < 0) {
		query_free(q);
		return NULL;
	}
	source_add(c, server);
	bucket_link(c, q);
	return q;
}

void minger_evclient_cancel(struct minger_evq *q)
{
	if (!q)
		return;
	if (q->firing) {
		q->cancelled = 1; /* handle_reply frees it */
		return;
	}
	bucket_unlink(q->c, q);
	query_free(q);
}

size_t minger_evclient_pending(const struct minger_evclient *c)
{
	return c->pending;
}
