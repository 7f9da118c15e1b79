/*
 * collect_transport: the libevent glue around pop3_client (see
 * collect_transport.h).
 *
 * One session is one object: the addresses to try, the socket's bufferevent
 * (the TCP one, then the TLS filter over it), the client, one deadline timer,
 * and two deferred events: "kick" (the end: done() and the free run from the
 * loop, never from inside a call of the caller's or a libevent callback that
 * still uses the bufferevent) and "resume" (after a pause, what was read
 * meanwhile is fed from the loop).
 *
 * pump() moves the client's events to the caller and its output to the
 * bufferevent and re-arms the deadline. While feed() gives the client what
 * was read, pump() runs without sending: everything read goes to the client
 * before anything it answers leaves (pop3_client.h: a reply that arrived with
 * the octets that made us send a command cannot be answering it), and the
 * output goes when the read has been taken whole. A TLS start the client asks
 * for is done after the read as well: the plaintext still in the socket's
 * buffer is given to the client, which discards and counts it (it is past
 * STLS's +OK), so not one octet of it reaches the TLS filter or is parsed.
 */
#include "collect/collect_transport.h"
#include "net/net_client.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEED_IOV 8

enum state {
	S_CONNECTING = 0, /* a TCP connect under way */
	S_OPEN, /* talking (plaintext or TLS) */
	S_HANDSHAKE, /* a TLS handshake under way */
	S_FINISHED, /* the client closed: kick does the rest */
};

struct collect_transport {
	struct event_base *base;
	struct pop3_client *client;
	char host[COLLECT_TRANSPORT_HOST_MAX + 1];
	struct sockaddr_storage addrs[COLLECT_TRANSPORT_ADDRS_MAX];
	size_t n_addrs, addr_i;
	SSL_CTX *ctx;
	SSL *ssl;
	struct bufferevent *raw, *tls, *bev;
	struct event *deadline, *kick, *resume;
	unsigned long armed_serial;
	int armed;
	enum state state;
	int feeding; /* inside feed(): no output, no TLS start */
	int pumping; /* inside pump(): a request from a callback is flushed by it */
	int eof_pending; /* the peer closed while paused: after what was read */
	int tls_wanted; /* START_TLS came: start it once the read is taken */
	int paused;
	collect_transport_event_fn event;
	collect_transport_done_fn done;
	void *arg;
	struct collect_transport_result res;
	char why[COLLECT_TRANSPORT_HOST_MAX + 256]; /* the last connect failure */
};

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void pump(struct collect_transport *s, int send);

/* ---- small helpers ---- */

static void addr_text(struct collect_transport *s, const struct sockaddr_storage *sa)
{
	const void *a = sa->ss_family == AF_INET6
	                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
	                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (inet_ntop(sa->ss_family, a, s->res.addr, sizeof s->res.addr) == NULL)
		s->res.addr[0] = '\0';
	s->res.port = ntohs(sa->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
	                                              : ((const struct sockaddr_in *)sa)->sin_port);
}

/* One timer per session, re-armed only when the client's wait changes. */
static void arm(struct collect_transport *s)
{
	struct pop3_client_deadline d = pop3_client_deadline(s->client);
	if (s->paused || s->state == S_FINISHED || (s->armed && d.serial == s->armed_serial))
		return;
	s->armed = 1;
	s->armed_serial = d.serial;
	if (d.seconds == 0) {
		evtimer_del(s->deadline);
		return;
	}
	struct timeval tv = {(time_t)d.seconds, 0};
	evtimer_add(s->deadline, &tv);
}

/* The client's output into the bufferevent. */
static void flush(struct collect_transport *s)
{
	size_t len;
	const char *out = pop3_client_output(s->client, &len);
	if (len == 0 || s->bev == NULL || s->state == S_FINISHED)
		return;
	if (bufferevent_write(s->bev, out, len) != 0)
		return; /* out of memory: the deadline ends it */
	pop3_client_output_done(s->client, len); /* wipes what held PASS or APOP */
}

static void drop_connection(struct collect_transport *s)
{
	if (s->tls != NULL) {
		bufferevent_free(s->tls);
		s->tls = NULL;
	}
	SSL_free(s->ssl);
	s->ssl = NULL;
	if (s->raw != NULL) {
		bufferevent_free(s->raw);
		s->raw = NULL;
	}
	s->bev = NULL;
}

/* The client closed: the rest (done, free) runs from the loop. */
static void finish(struct collect_transport *s)
{
	if (s->state == S_FINISHED)
		return;
	s->res.tls = pop3_client_caps(s->client)->tls;
	s->res.discarded = pop3_client_discarded(s->client);
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	s->state = S_FINISHED;
	evtimer_del(s->deadline);
	const struct pop3_client_outcome *o = pop3_client_outcome(s->client);
	log_debug("pop3-in: %s[%s]: %s: %s", s->host, s->res.addr, pop3_client_end_name(o->end),
	          o->reason);
	event_active(s->kick, EV_TIMEOUT, 1);
}

/* ---- TLS ---- */

/*
 * STLS's +OK came (RFC 2595 4), or implicit TLS starts (RFC 8314). The read
 * that held the +OK has been taken whole; whatever plaintext still waits in
 * the socket's buffer goes to the client, which discards it unread.
 */
static void start_tls(struct collect_transport *s)
{
	s->tls_wanted = 0;
	flush(s);
	struct evbuffer *in = bufferevent_get_input(s->raw);
	struct evbuffer_iovec v[FEED_IOV];
	size_t left;
	while ((left = evbuffer_get_length(in)) > 0) {
		int n = evbuffer_peek(in, (ev_ssize_t)left, NULL, v, FEED_IOV);
		size_t took = 0;
		for (int i = 0; i < n && i < FEED_IOV; i++) {
			pop3_client_input(s->client, v[i].iov_base, v[i].iov_len);
			took += v[i].iov_len;
		}
		evbuffer_drain(in, took);
	}
	struct bufferevent *b = net_client_tls_start(s->base, s->raw, s->ctx, s->host, &s->ssl);
	if (b == NULL) {
		pop3_client_tls_done(s->client, 0);
		return;
	}
	s->tls = b;
	s->bev = b;
	s->state = S_HANDSHAKE;
	bufferevent_setcb(b, on_read, on_write, on_event, s);
	bufferevent_enable(b, EV_READ | EV_WRITE);
}

/* ---- the pump ---- */

static void deliver(struct collect_transport *s, const struct pop3_client_event *ev)
{
	switch (ev->action) {
	case POP3_CLIENT_ACT_START_TLS: s->tls_wanted = 1; break;
	case POP3_CLIENT_ACT_CLOSE: finish(s); break;
	case POP3_CLIENT_ACT_NONE: break;
	default: s->event(s->arg, s, ev); break;
	}
}

/* Events to the caller; with send, output to the socket and a TLS start (see the top). */
static void pump(struct collect_transport *s, int send)
{
	struct pop3_client_event ev;
	s->pumping++;
	for (;;) {
		if (send && s->state != S_FINISHED)
			flush(s);
		if (pop3_client_next_action(s->client, &ev) == POP3_CLIENT_ACT_NONE)
			break;
		deliver(s, &ev);
	}
	s->pumping--;
	if (send && s->tls_wanted && s->state == S_OPEN) {
		start_tls(s);
		pump(s, 1);
		return;
	}
	arm(s);
}

/* Everything read so far to the client (events delivered between pieces), then send. */
static void feed(struct collect_transport *s)
{
	if (s->bev == NULL || s->state == S_FINISHED || s->paused)
		return;
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[FEED_IOV];
	size_t left;
	s->feeding = 1;
	while (!s->paused && s->state != S_FINISHED && !s->tls_wanted &&
	       (left = evbuffer_get_length(in)) > 0) {
		int n = evbuffer_peek(in, (ev_ssize_t)left, NULL, v, FEED_IOV);
		size_t took = 0;
		for (int i = 0; i < n && i < FEED_IOV && !s->paused && s->state != S_FINISHED;
		     i++) {
			size_t pos = 0;
			while (pos < v[i].iov_len && !s->paused && s->state != S_FINISHED) {
				pos += pop3_client_input(s->client, (char *)v[i].iov_base + pos,
				                         v[i].iov_len - pos);
				pump(s, 0);
			}
			took += pos;
			if (pos < v[i].iov_len)
				break;
		}
		evbuffer_drain(in, took);
		if (took == 0)
			break; /* paused or finished at the first octet */
	}
	s->feeding = 0;
	pump(s, 1);
}

/* ---- connecting ---- */

static void connect_next(struct collect_transport *s);

/* This address failed: the next, or the end (the last reason). */
static void connect_failed(struct collect_transport *s, const char *why)
{
	snprintf(s->why, sizeof s->why, "%s[%s]:%d: %s", s->host, s->res.addr, s->res.port, why);
	drop_connection(s);
	s->addr_i++;
	if (s->addr_i < s->n_addrs) {
		connect_next(s);
		return;
	}
	pop3_client_connect_failed(s->client, s->why);
	pump(s, 1);
}

static void connect_next(struct collect_transport *s)
{
	int err;
	const struct sockaddr_storage *sa = &s->addrs[s->addr_i];
	addr_text(s, sa);
	s->res.connects++;
	s->state = S_CONNECTING;
	s->armed = 0; /* each address has the whole connect deadline */
	arm(s);
	s->raw = net_client_connect(s->base, sa, &err);
	if (s->raw == NULL) {
		char why[96];
		snprintf(why, sizeof why, "connect: %s", strerror(err));
		connect_failed(s, why);
		return;
	}
	s->bev = s->raw;
	bufferevent_setcb(s->raw, on_read, on_write, on_event, s);
	log_debug("pop3-in: %s: connecting to %s port %d", s->host, s->res.addr, s->res.port);
}

/* ---- libevent callbacks ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
	feed(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct collect_transport *s = arg;
	if (s->state != S_FINISHED)
		pump(s, 1);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct collect_transport *s = arg;
	if (s->state == S_FINISHED)
		return;
	if (s->state == S_CONNECTING) {
		if (what & BEV_EVENT_CONNECTED) {
			s->state = S_OPEN;
			bufferevent_enable(s->raw, EV_READ | EV_WRITE);
			pop3_client_connected(s->client);
			pump(s, 1);
			return;
		}
		int e = EVUTIL_SOCKET_ERROR();
		char why[96];
		snprintf(why, sizeof why, "connect: %s",
		         e ? evutil_socket_error_to_string(e) : "connection failed");
		connect_failed(s, why);
		return;
	}
	if (s->state == S_HANDSHAKE) {
		int ok = (what & BEV_EVENT_CONNECTED) != 0;
		s->state = S_OPEN;
		if (ok)
			log_debug("pop3-in: %s: TLS %s %s", s->host, SSL_get_version(s->ssl),
			          SSL_get_cipher_name(s->ssl));
		else
			ERR_clear_error();
		pop3_client_tls_done(s->client, ok);
		pump(s, 1);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (s->tls)
			ERR_clear_error();
		if (s->paused) {
			s->eof_pending = 1; /* reported after what was read (on_resume) */
			return;
		}
		feed(s); /* what came before the end is still the server's */
		if (s->state != S_FINISHED) {
			pop3_client_closed(s->client);
			pump(s, 1);
		}
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct collect_transport *s = arg;
	s->armed = 0; /* whatever the client says next, the timer is spent */
	if (s->state == S_CONNECTING && s->addr_i + 1 < s->n_addrs) {
		connect_failed(s, "connect: timed out");
		return;
	}
	pop3_client_timeout(s->client);
	pump(s, 1);
}

static void session_free(struct collect_transport *s)
{
	drop_connection(s);
	if (s->deadline)
		event_free(s->deadline);
	if (s->kick)
		event_free(s->kick);
	if (s->resume)
		event_free(s->resume);
	pop3_client_free(s->client);
	SSL_CTX_free(s->ctx);
	free(s);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct collect_transport *s = arg;
	drop_connection(s);
	s->res.outcome = pop3_client_outcome(s->client);
	s->done(s->arg, &s->res);
	session_free(s);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct collect_transport *s = arg;
	feed(s);
	if (s->eof_pending && !s->paused && s->state != S_FINISHED) {
		s->eof_pending = 0;
		pop3_client_closed(s->client);
		pump(s, 1);
	}
}

/* ---- the API ---- */

static int conf_ok(const struct collect_transport_conf *conf)
{
	if (conf == NULL || conf->addrs == NULL || conf->n_addrs == 0 ||
	    conf->n_addrs > COLLECT_TRANSPORT_ADDRS_MAX)
		return 0;
	for (size_t i = 0; i < conf->n_addrs; i++)
		if (net_client_sa_len(&conf->addrs[i]) == 0)
			return 0;
	return 1;
}

struct collect_transport *collect_transport_new(struct event_base *base,
                                                const struct collect_transport_conf *conf,
                                                collect_transport_event_fn event,
                                                collect_transport_done_fn done, void *arg)
{
	if (base == NULL || event == NULL || done == NULL || !conf_ok(conf))
		return NULL;
	struct collect_transport *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->base = base;
	s->event = event;
	s->done = done;
	s->arg = arg;
	snprintf(s->host, sizeof s->host, "%s", conf->host ? conf->host : "");
	memcpy(s->addrs, conf->addrs, conf->n_addrs * sizeof *s->addrs);
	s->n_addrs = conf->n_addrs;
	s->client = pop3_client_new(&conf->client);
	s->deadline = evtimer_new(base, on_deadline, s);
	s->kick = event_new(base, -1, 0, on_kick, s);
	s->resume = event_new(base, -1, 0, on_resume, s);
	if (conf->client.tls != POP3_CLIENT_TLS_NONE)
		s->ctx = net_client_tls_ctx_new();
	if (!s->client || !s->deadline || !s->kick || !s->resume ||
	    (conf->client.tls != POP3_CLIENT_TLS_NONE && s->ctx == NULL)) {
		session_free(s);
		return NULL;
	}
	connect_next(s);
	return s;
}

const struct pop3_client_listing *collect_transport_listing(const struct collect_transport *s)
{
	return pop3_client_listing(s->client);
}

/*
 * After a request from outside an event callback, its octets must leave; from
 * inside one, the pump or feed that called it sends them (and the caller is
 * never re-entered).
 */
static void after_request(struct collect_transport *s)
{
	if (!s->feeding && !s->pumping && s->state != S_FINISHED)
		pump(s, 1);
}

int collect_transport_retr(struct collect_transport *s, uint64_t num)
{
	int r = pop3_client_retr(s->client, num);
	after_request(s);
	return r;
}

int collect_transport_dele(struct collect_transport *s, uint64_t num)
{
	int r = pop3_client_dele(s->client, num);
	after_request(s);
	return r;
}

size_t collect_transport_room(const struct collect_transport *s)
{
	return pop3_client_room(s->client);
}

int collect_transport_quit(struct collect_transport *s)
{
	int r = pop3_client_quit(s->client);
	after_request(s);
	return r;
}

void collect_transport_pause(struct collect_transport *s, int paused)
{
	if (s->state == S_FINISHED || !!paused == s->paused)
		return;
	s->paused = !!paused;
	if (s->paused) {
		if (s->bev)
			bufferevent_disable(s->bev, EV_READ);
		evtimer_del(s->deadline); /* the server waits for us, not we for it */
		return;
	}
	s->armed = 0; /* a fresh deadline */
	if (s->bev && !s->eof_pending)
		bufferevent_enable(s->bev, EV_READ);
	arm(s);
	event_active(s->resume, EV_TIMEOUT, 1); /* what was read meanwhile */
}

void collect_transport_abort(struct collect_transport *s, const char *why)
{
	if (s->state == S_FINISHED)
		return;
	pop3_client_abort(s->client, why);
	after_request(s);
}
