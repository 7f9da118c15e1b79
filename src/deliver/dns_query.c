/*
 * dns_query: see dns_query.h. One attempt at a time: UDP first, TCP when the
 * UDP reply is truncated (RFC 1035 4.2.1, RFC 7766 5). The attempt timer
 * covers the whole attempt (UDP and then TCP, each restarting it), so a silent
 * or slow server costs at most attempts x timeout_ms.
 */
#include "deliver/dns_query.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

/*
 * Without EDNS a server must truncate at 512 octets (RFC 1035 4.2.1); we read
 * up to 4096 so that a server sending a little more is still understood. A
 * longer datagram is cut by the kernel, fails to parse and is ignored.
 */
#define UDP_RECV_MAX 4096

struct dns_query {
	struct event_base *base;
	struct netaddr *servers;
	size_t nservers;
	struct timeval timeout;
	unsigned attempts, attempt; /* attempt: the one under way, 0-based */
	char name[DNS_NAME_BUFSZ];
	uint16_t qtype, id;
	dns_query_cb cb;
	void *arg;
	int last_rcode; /* the last error RCODE seen, -1 none */
	int started; /* the first attempt was started (from the loop) */
	int sent_any; /* an attempt got a query out */
	int fd; /* the attempt's UDP socket, -1 none */
	struct event *udp_ev;
	struct bufferevent *tcp;
	struct event *timer; /* the attempt's deadline (also: "try the next one now") */
	uint8_t query[DNS_QUERY_MAX];
	size_t qlen;
};

static void attempt_next(struct dns_query *q);

static void attempt_close(struct dns_query *q)
{
	if (q->udp_ev) {
		event_free(q->udp_ev);
		q->udp_ev = NULL;
	}
	if (q->fd >= 0) {
		close(q->fd);
		q->fd = -1;
	}
	if (q->tcp) {
		bufferevent_free(q->tcp);
		q->tcp = NULL;
	}
}

static void query_free(struct dns_query *q)
{
	attempt_close(q);
	if (q->timer)
		event_free(q->timer);
	free(q->servers);
	free(q);
}

static void finish(struct dns_query *q, enum dns_query_status st, int rcode,
                   const struct dns_msg *m)
{
	dns_query_cb cb = q->cb;
	void *arg = q->arg;
	attempt_close(q);
	evtimer_del(q->timer);
	cb(arg, st, rcode, m);
	query_free(q);
}

/* The current attempt is over without an answer: try the next one now (from the loop). */
static void attempt_failed(struct dns_query *q)
{
	static const struct timeval now = {0, 0};
	attempt_close(q);
	evtimer_add(q->timer, &now);
}

/* What to do with a reply that matches our query. Returns 1 when q is finished (freed). */
static int handle_reply(struct dns_query *q, const struct dns_msg *m)
{
	if (m->rcode == DNS_RCODE_NOERROR || m->rcode == DNS_RCODE_NXDOMAIN) {
		finish(q, DNS_QUERY_ANSWER, m->rcode, m);
		return 1;
	}
	/* SERVFAIL, REFUSED, NOTIMP, FORMERR: another server may do better. */
	q->last_rcode = m->rcode;
	attempt_failed(q);
	return 0;
}

static void tcp_read_cb(struct bufferevent *bev, void *arg)
{
	struct dns_query *q = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	unsigned char lenbuf[2];
	if (evbuffer_copyout(in, lenbuf, 2) < 2)
		return;
	size_t need = (size_t)lenbuf[0] << 8 | lenbuf[1];
	if (evbuffer_get_length(in) < 2 + need)
		return;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(2 + need));
	struct dns_msg m;
	if (p && dns_msg_parse(p + 2, need, &m) == 0 &&
	    dns_msg_is_reply_to(&m, q->id, q->name, q->qtype) && !m.tc) {
		handle_reply(q, &m);
		return;
	}
	/* One reply per TCP query here: anything else ends the attempt. */
	attempt_failed(q);
}

static void tcp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct dns_query *q = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	attempt_failed(q);
}

static const struct netaddr *current_server(const struct dns_query *q)
{
	return &q->servers[q->attempt % q->nservers];
}

/* RFC 7766: the same question over TCP, with a new id, two-octet length first. */
static void tcp_start(struct dns_query *q)
{
	const struct netaddr *ns = current_server(q);
	attempt_close(q);
	evutil_secure_rng_get_bytes(&q->id, sizeof q->id);
	q->query[0] = (uint8_t)(q->id >> 8);
	q->query[1] = (uint8_t)q->id;
	q->tcp = bufferevent_socket_new(q->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!q->tcp || bufferevent_socket_connect(q->tcp, (const struct sockaddr *)&ns->ss,
	                                          (int)ns->len) < 0) {
		attempt_failed(q);
		return;
	}
	uint8_t len[2] = {(uint8_t)(q->qlen >> 8), (uint8_t)q->qlen};
	bufferevent_setcb(q->tcp, tcp_read_cb, NULL, tcp_event_cb, q);
	bufferevent_setwatermark(q->tcp, EV_READ, 0, 2 + DNS_MSG_TCP_MAX);
	bufferevent_write(q->tcp, len, 2);
	bufferevent_write(q->tcp, q->query, q->qlen);
	bufferevent_enable(q->tcp, EV_READ | EV_WRITE);
	evtimer_add(q->timer, &q->timeout);
}

static void udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;
	uint8_t buf[UDP_RECV_MAX];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			/* ECONNREFUSED (ICMP port unreachable): nobody serves there. */
			attempt_failed(q);
			return;
		}
		struct dns_msg m;
		if (dns_msg_parse(buf, (size_t)n, &m) < 0 ||
		    !dns_msg_is_reply_to(&m, q->id, q->name, q->qtype))
			continue; /* stray, late or forged: keep waiting for ours */
		if (m.tc) {
			tcp_start(q);
			return;
		}
		handle_reply(q, &m);
		return;
	}
}

/* Sends the question over a fresh UDP socket to the current server; 0 or -1. */
static int udp_start(struct dns_query *q)
{
	const struct netaddr *ns = current_server(q);
	q->fd = socket(ns->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (q->fd < 0)
		return -1;
	if (connect(q->fd, (const struct sockaddr *)&ns->ss, ns->len) < 0)
		return -1;
	evutil_secure_rng_get_bytes(&q->id, sizeof q->id);
	q->query[0] = (uint8_t)(q->id >> 8);
	q->query[1] = (uint8_t)q->id;
	if (send(q->fd, q->query, q->qlen, 0) != (ssize_t)q->qlen)
		return -1;
	q->sent_any = 1;
	q->udp_ev = event_new(q->base, q->fd, EV_READ | EV_PERSIST, udp_read_cb, q);
	if (!q->udp_ev || event_add(q->udp_ev, NULL) < 0)
		return -1;
	return evtimer_add(q->timer, &q->timeout);
}

/* The attempt under way ended (deadline, or failed); or, the first time, the start. */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;
	if (q->started) {
		attempt_close(q);
		q->attempt++;
	}
	q->started = 1;
	attempt_next(q);
}

/* Starts attempt q->attempt, or finishes when none is left. */
static void attempt_next(struct dns_query *q)
{
	while (q->attempt < q->attempts) {
		if (udp_start(q) == 0)
			return;
		attempt_close(q);
		q->attempt++;
	}
	if (q->last_rcode >= 0)
		finish(q, DNS_QUERY_SERVER_ERROR, q->last_rcode, NULL);
	else
		finish(q, q->sent_any ? DNS_QUERY_TIMEOUT : DNS_QUERY_LOCAL_ERROR, -1, NULL);
}

struct dns_query *dns_query_start(struct event_base *base, const struct netaddr *servers,
                                  size_t nservers, unsigned timeout_ms, unsigned attempts,
                                  const char *name, uint16_t qtype, dns_query_cb cb, void *arg)
{
	static const struct timeval now = {0, 0};
	struct dns_query *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->base = base;
	q->fd = -1;
	q->cb = cb;
	q->arg = arg;
	q->qtype = qtype;
	q->last_rcode = -1;
	q->attempts = attempts ? attempts : 1;
	timeout_ms = timeout_ms ? timeout_ms : 1;
	q->timeout.tv_sec = timeout_ms / 1000;
	q->timeout.tv_usec = (timeout_ms % 1000) * 1000;
	q->timer = evtimer_new(base, timer_cb, q);
	q->servers = nservers ? calloc(nservers, sizeof *servers) : NULL;
	if (!q->timer || (nservers && !q->servers)) {
		query_free(q);
		return NULL;
	}
	memcpy(q->servers, servers, nservers * sizeof *servers);
	q->nservers = nservers;
	int n = dns_msg_query_format(q->query, sizeof q->query, 0, name, qtype);
	if (n < 0 || nservers == 0)
		q->attempt = q->attempts; /* nothing to send: LOCAL_ERROR, reported from the loop */
	else
		q->qlen = (size_t)n;
	snprintf(q->name, sizeof q->name, "%s", name);
	/* Even the first attempt starts from the loop, so the callback never runs from here. */
	evtimer_add(q->timer, &now);
	return q;
}

void dns_query_cancel(struct dns_query *q)
{
	if (q)
		query_free(q);
}
