/*
 * net_server: listeners and connections of one TCP service (see net_server.h).
 * The session decides every reply; this file moves octets between a
 * bufferevent (a socket one, or bufferevent_openssl over the same socket) and
 * the session, and enforces what only the transport can: connection limits,
 * deadlines, bounded buffers, the greeting pause and the TLS handshakes.
 */
#include "net/net_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/conf.h"
#include "util/log.h"
#include "util/netaddr.h"
#include "util/tls_ctx.h"

/* Input kept in the bufferevent before reading pauses (the session consumes it). */
#define IN_HIGH (64 * 1024)
/* Replies waiting for the client before we stop reading its commands. */
#define OUT_HIGH (64 * 1024)
/* Octets fed to the session per call: small for commands so replies interleave. */
#define FEED_CMD 4096
#define FEED_BULK (64 * 1024)
/* Seconds to flush our last reply, and to linger reading after shutting down. */
#define CLOSE_FLUSH_S 5
#define LINGER_S 2
#define LINGER_MAX_BYTES (1024 * 1024)
/* Pause after accept() fails for lack of descriptors (EMFILE), in ms. */
#define ACCEPT_PAUSE_MS 100
#define IP_BUCKETS 1024
#define BACKLOG 1024
#define BUSY_MAX 128

enum conn_state {
	CONN_HANDSHAKE,
	CONN_GREETING,
	CONN_ACTIVE,
	CONN_CLOSING,
	CONN_LINGER,
	CONN_HELD
};

struct ipcount {
	struct ipcount *next;
	unsigned char addr[16];
	int count;
};

struct net_conn {
	struct net_conn *prev, *next;
	struct net_server *srv; /* NULL: orphaned (the server was freed while held) */
	void *sess;
	struct net_limits lim; /* from the accept */
	evutil_socket_t fd;
	struct bufferevent *bev;
	struct event *timer;
	unsigned char ip[16];
	size_t bulk_progress;
	size_t lingered;
	enum conn_state state;
	unsigned eof : 1;
	unsigned in_bulk : 1;
	unsigned tls : 1; /* bev is a bufferevent_openssl */
	unsigned tls_up : 1; /* its handshake is done */
	unsigned starttls : 1; /* net_conn_starttls(): waiting for our output to leave */
};

struct listener {
	struct evconnlistener *l;
	struct net_server *srv;
	int tag;
	enum net_tls_mode tls;
};

struct net_server {
	struct event_base *base;
	char name[32];
	char busy[BUSY_MAX];
	struct net_limits lim;
	const struct net_session_ops *ops;
	void *svc;
	SSL_CTX *tls_ctx;
	struct listener *listeners;
	size_t n_listeners, cap_listeners;
	struct event *accept_pause;
	struct event *drain_event;
	void (*drain_done)(void *arg);
	void *drain_arg;
	int draining;
	struct net_conn *conns;
	size_t n_conns;
	struct ipcount *ips[IP_BUCKETS];
};

static struct log_limit limit_log = LOG_LIMIT_INIT(10, 10);
static struct log_limit accept_log = LOG_LIMIT_INIT(5, 10);

static void conn_close(struct net_conn *c);
static void conn_free(struct net_conn *c);
static void conn_settle(struct net_conn *c, int replied);
static void greet(struct net_conn *c);

/* ---- peer addresses and the per-address counts ---- */

/* The peer's address as 16 octets; IPv4 (and IPv4-mapped IPv6) as ::ffff:a.b.c.d. */
static void ip_key(const struct sockaddr *sa, unsigned char out[16])
{
	memset(out, 0, 16);
	if (sa->sa_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

/* The address as text without port ("192.0.2.1", "2001:db8::1"); mapped IPv4 as IPv4. */
static void ip_text(const unsigned char ip[16], char *out, size_t outsz)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(ip, mapped, 12) == 0)
		inet_ntop(AF_INET, ip + 12, out, (socklen_t)outsz);
	else
		inet_ntop(AF_INET6, ip, out, (socklen_t)outsz);
}

static unsigned ip_hash(const unsigned char ip[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (int i = 0; i < 16; i++)
		h = (h ^ ip[i]) * 16777619u;
	return h % IP_BUCKETS;
}

static struct ipcount **ip_find(struct net_server *s, const unsigned char ip[16])
{
	struct ipcount **p = &s->ips[ip_hash(ip)];
	while (*p && memcmp((*p)->addr, ip, 16) != 0)
		p = &(*p)->next;
	return p;
}

static int ip_count(struct net_server *s, const unsigned char ip[16])
{
	struct ipcount *e = *ip_find(s, ip);
	return e ? e->count : 0;
}

static int ip_add(struct net_server *s, const unsigned char ip[16], int delta)
{
	struct ipcount **p = ip_find(s, ip);
	if (!*p) {
		if (delta <= 0)
			return 0;
		struct ipcount *e = calloc(1, sizeof *e);
		if (!e)
			return -1;
		memcpy(e->addr, ip, 16);
		*p = e;
	}
	(*p)->count += delta;
	if ((*p)->count <= 0) {
		struct ipcount *dead = *p;
		*p = dead->next;
		free(dead);
	}
	return 0;
}

/* ---- moving octets ---- */

static const struct net_session_ops *ops_of(const struct net_conn *c)
{
	return c->srv->ops;
}

static void timer_arm(struct net_conn *c, int seconds)
{
	struct timeval tv = {seconds, 0};
	evtimer_add(c->timer, &tv);
}

/* Moves the session's pending output to the bufferevent; 1 if anything was sent. */
static int conn_send_output(struct net_conn *c)
{
	size_t len;
	const char *out = ops_of(c)->output(c->sess, &len);
	if (!out || len == 0)
		return 0;
	if (bufferevent_write(c->bev, out, len) != 0)
		return 0; /* out of memory: the deadline will end the session */
	ops_of(c)->output_done(c->sess, len);
	return 1;
}

/* Feeds buffered input to the session while it consumes, sending what it outputs. */
static void conn_pump(struct net_conn *c)
{
	if (c->state != CONN_ACTIVE || c->starttls || (c->tls && !c->tls_up))
		return;
	const struct net_session_ops *o = ops_of(c);
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int replied = conn_send_output(c);
	while (!o->ended(c->sess) && !o->waiting(c->sess) && evbuffer_get_length(out) < OUT_HIGH) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		int was_bulk = o->in_bulk(c->sess) != 0;
		size_t cap = was_bulk ? FEED_BULK : FEED_CMD;
		size_t len = v.iov_len < cap ? v.iov_len : cap;
		size_t n = o->input(c->sess, v.iov_base, len);
		if (n > len)
			n = len;
		evbuffer_drain(in, n);
		if (was_bulk && o->in_bulk(c->sess))
			c->bulk_progress += n;
		replied |= conn_send_output(c);
		if (n == 0 || c->starttls)
			break;
	}
	conn_settle(c, replied);
}

/*
 * Replaces the plaintext bufferevent with a TLS one on the same socket and
 * starts the server handshake. What the plaintext one had buffered is thrown
 * away with it, unread. Returns 0 or -1 (the connection must go).
 */
static int tls_begin(struct net_conn *c)
{
	struct net_server *s = c->srv;
	SSL *ssl = s->tls_ctx ? SSL_new(s->tls_ctx) : NULL;
	if (!ssl)
		return -1;
	if (c->bev)
		bufferevent_free(c->bev); /* created without CLOSE_ON_FREE: the socket stays */
	c->bev = bufferevent_openssl_socket_new(s->base, c->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		SSL_free(ssl);
		return -1;
	}
	c->tls = 1;
	c->fd = -1; /* the TLS bufferevent owns it now (and the SSL) */
	return 0;
}

/* Sets callbacks and bounds on c->bev (after accept, and after tls_begin). */
static void bev_setup(struct net_conn *c);

/* The session's "220 Ready to start TLS" is out: switch (RFC 3207 4). */
static void starttls_switch(struct net_conn *c)
{
	if (tls_begin(c) != 0) {
		c->starttls = 0;
		ops_of(c)->tls_done(c->sess, 0);
		conn_free(c);
		return;
	}
	c->starttls = 0; /* from here: tls set, tls_up not yet (the handshake) */
	bev_setup(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	timer_arm(c, c->lim.handshake_timeout);
}

/*
 * After feeding: closes, pauses or resumes reading, and restarts the deadline when
 * the session made progress (a reply, entering or leaving bulk mode, another
 * NET_BULK_PROGRESS octets consumed).
 */
static void conn_settle(struct net_conn *c, int replied)
{
	const struct net_session_ops *o = ops_of(c);
	size_t open = o->requests(c->sess);
	if (o->ended(c->sess) || (c->eof && !o->waiting(c->sess) && open == 0)) {
		c->starttls = 0;
		conn_close(c);
		return;
	}
	if (c->starttls) {
		bufferevent_disable(c->bev, EV_READ);
		timer_arm(c, CLOSE_FLUSH_S); /* the client must take our 220 */
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			starttls_switch(c);
		return;
	}
	if (o->waiting(c->sess)) {
		bufferevent_disable(c->bev, EV_READ);
		evtimer_del(c->timer);
		return;
	}
	if (open > 0) {
		/* The client waits for our answers, not we for it: no deadline meanwhile. */
		evtimer_del(c->timer);
		if (!c->eof)
			bufferevent_enable(c->bev, EV_READ);
		return;
	}
	int in_bulk = o->in_bulk(c->sess) != 0;
	if (replied || in_bulk != c->in_bulk ||
	    (in_bulk && c->bulk_progress >= NET_BULK_PROGRESS) ||
	    !evtimer_pending(c->timer, NULL)) {
		c->in_bulk = in_bulk;
		c->bulk_progress = 0;
		timer_arm(c, in_bulk ? c->lim.bulk_timeout : c->lim.command_timeout);
	}
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= OUT_HIGH)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct net_conn *c = arg;
	if (c->state == CONN_LINGER) {
		struct evbuffer *in = bufferevent_get_input(bev);
		c->lingered += evbuffer_get_length(in);
		evbuffer_drain(in, evbuffer_get_length(in));
		if (c->lingered > LINGER_MAX_BYTES)
			conn_free(c);
		return;
	}
	if (c->state == CONN_GREETING)
		return; /* kept: octets before the greeting make an early talker */
	conn_pump(c);
}

/*
 * RFC 8446 6.1 (RFC 5246 7.2.1): a TLS connection ends with our close_notify
 * before the TCP FIN, whoever closes first. Best effort: a socket that cannot
 * take it now (full, reset) does without (SIGPIPE is ignored by the daemon).
 */
static void tls_close_notify(struct net_conn *c)
{
	if (!c->tls || !c->tls_up || !c->bev)
		return;
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	if (ssl && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
		SSL_shutdown(ssl);
}

/* Our last reply is out: close_notify, shut our side and read what is left for a moment. */
static void conn_linger(struct net_conn *c)
{
	if (c->eof) {
		conn_free(c);
		return;
	}
	c->state = CONN_LINGER;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	tls_close_notify(c);
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	bufferevent_enable(c->bev, EV_READ);
	timer_arm(c, LINGER_S);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct net_conn *c = arg;
	if (c->state == CONN_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_linger(c);
	} else if (c->state == CONN_ACTIVE && c->starttls) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			starttls_switch(c);
	} else if (c->state == CONN_ACTIVE && !ops_of(c)->waiting(c->sess)) {
		conn_pump(c); /* the client took our replies: read its next commands */
	}
}

/* The session ended (or the peer closed): flush the output, then linger. */
static void conn_close(struct net_conn *c)
{
	c->state = CONN_CLOSING;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		conn_linger(c);
		return;
	}
	timer_arm(c, CLOSE_FLUSH_S);
}

/* The greeting pause, if any, after accept (plain) or after the handshake (implicit TLS). */
static void greet_schedule(struct net_conn *c)
{
	if (c->lim.greet_pause_ms > 0) {
		c->state = CONN_GREETING;
		struct timeval tv = {c->lim.greet_pause_ms / 1000,
		                     (c->lim.greet_pause_ms % 1000) * 1000};
		evtimer_add(c->timer, &tv);
		if (c->tls)
			bufferevent_enable(c->bev,
			                   EV_READ); /* decrypted octets show an early talker */
	} else {
		greet(c);
	}
}

/* A TLS handshake finished well: implicit (greet now) or STARTTLS (the session resumes). */
static void on_handshake(struct net_conn *c)
{
	c->tls_up = 1;
	evtimer_del(c->timer);
	if (c->state == CONN_HANDSHAKE) {
		greet_schedule(c);
		return;
	}
	ops_of(c)->tls_done(c->sess, 1);
	conn_pump(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct net_conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		on_handshake(c);
		return;
	}
	if (c->tls && !c->tls_up) {
		if (log_limit_allow(&limit_log)) {
			char text[INET6_ADDRSTRLEN];
			ip_text(c->ip, text, sizeof text);
			log_info("%s: TLS handshake with %s failed", c->srv->name, text);
		}
		if (c->state == CONN_ACTIVE)
			ops_of(c)->tls_done(c->sess, 0);
		conn_free(c);
		return;
	}
	if (c->state == CONN_ACTIVE && (what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
		/* A half-closed client (or a TLS close_notify) may still be owed replies. */
		c->eof = 1;
		bufferevent_disable(bev, EV_READ);
		if (!ops_of(c)->waiting(c->sess))
			conn_pump(c);
		return;
	}
	conn_free(c);
}

static void greet(struct net_conn *c)
{
	/* Anything already sent before our greeting makes an early talker (RFC 5321 4.3.1). */
	int early;
	if (c->tls) {
		early = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
	} else {
		char b;
		ssize_t n = recv(bufferevent_getfd(c->bev), &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == 0) {
			conn_free(c); /* gone before we spoke */
			return;
		}
		early = n > 0;
	}
	c->state = CONN_ACTIVE;
	ops_of(c)->greet(c->sess, early);
	conn_pump(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct net_conn *c = arg;
	const struct net_session_ops *o = ops_of(c);
	switch (c->state) {
	case CONN_GREETING: greet(c); break;
	case CONN_ACTIVE:
		if (c->starttls || (c->tls && !c->tls_up)) {
			log_debug("%s: TLS handshake timeout, closing", c->srv->name);
			c->starttls = 0;
			o->tls_done(c->sess, 0);
			conn_free(c);
			break;
		}
		if (o->waiting(c->sess) || o->requests(c->sess) > 0)
			break;
		log_debug("%s: timeout, closing", c->srv->name);
		o->timeout(c->sess);
		conn_pump(c);
		break;
	case CONN_HANDSHAKE:
		log_debug("%s: TLS handshake timeout, closing", c->srv->name);
		conn_free(c);
		break;
	case CONN_CLOSING: /* the client does not take our last reply */
	case CONN_LINGER: conn_free(c); break;
	case CONN_HELD: break;
	}
}

/* Takes c off the server: its list, its count and its per-address count. */
static void conn_unlink(struct net_conn *c)
{
	struct net_server *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	ip_add(s, c->ip, -1);
	s->n_conns--;
	c->srv = NULL;
	if (s->draining && s->n_conns == 0 && s->drain_done) {
		struct timeval zero = {0, 0};
		evtimer_add(s->drain_event, &zero);
	}
}

/* The socket and the timer go (the one place they are freed). */
static void conn_transport_free(struct net_conn *c)
{
	tls_close_notify(c);
	if (c->bev)
		bufferevent_free(c->bev);
	c->bev = NULL;
	if (c->fd >= 0)
		evutil_closesocket(c->fd);
	c->fd = -1;
	if (c->timer)
		event_free(c->timer);
	c->timer = NULL;
}

/*
 * THE teardown of a connection, from every path (session ended, peer gone,
 * deadline, drain, server freed). The transport goes at once; the session is
 * given back (ops->close), and when the service holds it the connection stays
 * counted (CONN_HELD) until net_conn_release().
 */
static void conn_free(struct net_conn *c)
{
	if (c->state == CONN_HELD)
		return;
	conn_transport_free(c);
	if (c->sess && c->srv && c->srv->ops->close(c->sess) != 0) {
		c->state = CONN_HELD;
		return;
	}
	c->sess = NULL;
	if (c->srv)
		conn_unlink(c);
	free(c);
}

void net_conn_release(struct net_conn *nc)
{
	if (!nc)
		return;
	nc->sess = NULL;
	if (nc->srv)
		conn_unlink(nc);
	free(nc);
}

/* ---- accepting ---- */

/*
 * Over a limit, or refused by admit: one line (the busy line unless given;
 * plaintext listeners only) and close, with nothing spent on it.
 */
static void refuse_with(struct net_server *s, evutil_socket_t fd, const char *line, const char *why,
                        const unsigned char ip[16], int tls)
{
	if (!tls) {
		ssize_t w = send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)w;
	}
	evutil_closesocket(fd);
	uint64_t n = log_limit_allow(&limit_log);
	if (n) {
		char text[INET6_ADDRSTRLEN];
		ip_text(ip, text, sizeof text);
		log_warning("%s: refused %s: %s (%llu such)", s->name, text, why,
		            (unsigned long long)n);
	}
}

static void refuse(struct net_server *s, evutil_socket_t fd, const char *why,
                   const unsigned char ip[16], int tls)
{
	refuse_with(s, fd, s->busy, why, ip, tls);
}

static void bev_setup(struct net_conn *c)
{
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, IN_HIGH);
}

/* A new connection object, linked and counted; NULL (fd closed) on out of memory. */
static struct net_conn *conn_new(struct net_server *s, evutil_socket_t fd,
                                 const unsigned char ip[16])
{
	struct net_conn *c = calloc(1, sizeof *c);
	if (!c || ip_add(s, ip, 1) != 0) {
		free(c);
		evutil_closesocket(fd);
		return NULL;
	}
	c->srv = s;
	c->fd = fd;
	c->lim = s->lim;
	memcpy(c->ip, ip, 16);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	return c;
}

/* The transport of a new connection: a socket bufferevent, or a TLS one (implicit). */
static int conn_transport(struct net_conn *c, enum net_tls_mode tls)
{
	struct net_server *s = c->srv;
	c->timer = evtimer_new(s->base, on_timer, c);
	if (!c->timer)
		return -1;
	if (tls == NET_TLS_IMPLICIT) {
		if (tls_begin(c) != 0)
			return -1;
	} else {
		c->bev = bufferevent_socket_new(s->base, c->fd, 0);
		if (!c->bev)
			return -1;
	}
	bev_setup(c);
	return 0;
}

static int limits_refuse(struct net_server *s, evutil_socket_t fd, const unsigned char ip[16],
                         int tls)
{
	if (s->n_conns >= (size_t)s->lim.max_connections) {
		refuse(s, fd, "max connections reached", ip, tls);
		return 1;
	}
	if (ip_count(s, ip) >= s->lim.max_connections_per_ip) {
		refuse(s, fd, "max connections per address reached", ip, tls);
		return 1;
	}
	return 0;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct listener *li = arg;
	struct net_server *s = li->srv;
	unsigned char ip[16];
	char text[INET6_ADDRSTRLEN];
	ip_key(sa, ip);
	if (s->draining) {
		evutil_closesocket(fd);
		return;
	}
	if (limits_refuse(s, fd, ip, li->tls != NET_TLS_NONE))
		return;
	const char *no = s->ops->admit ? s->ops->admit(s->svc, sa) : NULL;
	if (no != NULL) {
		refuse_with(s, fd, no, "refused by the service (screened)", ip,
		            li->tls != NET_TLS_NONE);
		return;
	}
	if (li->tls != NET_TLS_NONE && !s->tls_ctx) {
		evutil_closesocket(fd); /* no certificate: nothing to speak on this port */
		return;
	}
	struct net_conn *c = conn_new(s, fd, ip);
	if (!c)
		return;
	ip_text(ip, text, sizeof text);
	/*
	 * Replies to a batch of pipelined commands leave in one write, so Nagle only
	 * adds a delayed-ACK stall (up to 40 ms) between a reply and the next one.
	 */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (conn_transport(c, li->tls) != 0 ||
	    !(c->sess = s->ops->open(s->svc, c, li->tag, sa, text))) {
		log_err("%s: out of memory for a connection from %s", s->name, text);
		conn_free(c);
		return;
	}
	log_debug("%s: connection from %s", s->name, text);
	if (li->tls == NET_TLS_IMPLICIT) {
		c->state = CONN_HANDSHAKE;
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		timer_arm(c, c->lim.handshake_timeout);
		return;
	}
	greet_schedule(c);
}

static void on_accept_pause_end(evutil_socket_t fd, short what, void *arg)
{
	struct net_server *s = arg;
	for (size_t i = 0; i < s->n_listeners; i++)
		evconnlistener_enable(s->listeners[i].l);
}

/* accept() failed (EMFILE, ENFILE, ENOBUFS): pause instead of spinning on it. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct listener *li = arg;
	int e = EVUTIL_SOCKET_ERROR();
	if (log_limit_allow(&accept_log))
		log_err("%s: accept: %s", li->srv->name, evutil_socket_error_to_string(e));
	for (size_t i = 0; i < li->srv->n_listeners; i++)
		evconnlistener_disable(li->srv->listeners[i].l);
	struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
	evtimer_add(li->srv->accept_pause, &tv);
}

static void on_drain_done(evutil_socket_t fd, short what, void *arg)
{
	struct net_server *s = arg;
	void (*done)(void *) = s->drain_done;
	s->drain_done = NULL;
	if (done)
		done(s->drain_arg);
}

/* ---- the server ---- */

struct net_server *net_server_new(struct event_base *base, const char *name,
                                  const struct net_limits *lim, const struct net_session_ops *ops,
                                  void *svc, const char *busy_line)
{
	struct net_server *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->base = base;
	snprintf(s->name, sizeof s->name, "%s", name);
	snprintf(s->busy, sizeof s->busy, "%s", busy_line ? busy_line : "");
	s->lim = *lim;
	s->ops = ops;
	s->svc = svc;
	s->accept_pause = evtimer_new(base, on_accept_pause_end, s);
	s->drain_event = evtimer_new(base, on_drain_done, s);
	if (!s->accept_pause || !s->drain_event) {
		net_server_free(s);
		return NULL;
	}
	return s;
}

/* Room for one more listener (the array moves: the listeners' callback args are fixed up). */
static int listeners_grow(struct net_server *s)
{
	if (s->n_listeners < s->cap_listeners)
		return 0;
	size_t cap = s->cap_listeners ? s->cap_listeners * 2 : 4;
	struct listener *nv = calloc(cap, sizeof *nv);
	if (!nv)
		return -1;
	for (size_t i = 0; i < s->n_listeners; i++) {
		nv[i] = s->listeners[i];
		evconnlistener_set_cb(nv[i].l, on_accept, &nv[i]);
		evconnlistener_set_error_cb(nv[i].l, on_accept_error);
	}
	free(s->listeners);
	s->listeners = nv;
	s->cap_listeners = cap;
	return 0;
}

int net_server_listen(struct net_server *s, const struct sockaddr *sa, socklen_t salen, int tag,
                      enum net_tls_mode tls, const char *label, const char *where, char *err,
                      size_t errlen)
{
	const char *step = "socket";
	int fam = sa->sa_family, one = 1;
	int fd = -1;
	if (listeners_grow(s) != 0) {
		errno = ENOMEM;
		goto fail;
	}
	fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	step = NULL;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    (fam == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
	    bind(fd, sa, salen) != 0)
		goto fail;
	struct listener *li = &s->listeners[s->n_listeners];
	li->srv = s;
	li->tag = tag;
	li->tls = tls;
	step = "listen";
	li->l = evconnlistener_new(s->base, on_accept, li,
	                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, BACKLOG, fd);
	if (!li->l)
		goto fail;
	evconnlistener_set_error_cb(li->l, on_accept_error);
	s->n_listeners++;
	struct sockaddr_storage bound;
	socklen_t blen = sizeof bound;
	char shown[80];
	if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
		netaddr_format((struct sockaddr *)&bound, shown, sizeof shown);
	else
		snprintf(shown, sizeof shown, "?");
	log_info("%s: listening on %s%s", label, shown, tls == NET_TLS_IMPLICIT ? " (TLS)" : "");
	return 0;
fail:
	snprintf(err, errlen, "%s: %s%s%s", where, step ? step : "", step ? ": " : "",
	         strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

void net_server_set_limits(struct net_server *s, const struct net_limits *lim)
{
	s->lim = *lim;
}

int net_server_listen_list(struct net_server *s, const struct conf *c, const struct addrlist *l,
                           int tag, enum net_tls_mode tls, const char *label, char *err,
                           size_t errlen)
{
	for (size_t i = 0; i < l->n; i++) {
		char where[512];
		conf_addr_where(c, l, i, where, sizeof where);
		if (net_server_listen(s, (const struct sockaddr *)&l->v[i].ss, l->v[i].len, tag,
		                      tls, label, where, err, errlen) != 0)
			return -1;
	}
	return 0;
}

int net_server_load_tls(struct net_server *s, const char *cert_file, const char *key_file,
                        char *err, size_t errlen)
{
	if (!cert_file || !*cert_file) {
		net_server_set_tls(s, NULL);
		return 0;
	}
	SSL_CTX *ctx = tls_ctx_server_new(cert_file, key_file, NULL, err, errlen);
	if (!ctx)
		return -1;
	net_server_set_tls(s, ctx); /* takes its own reference */
	SSL_CTX_free(ctx);
	return 0;
}

void net_server_set_tls(struct net_server *s, SSL_CTX *ctx)
{
	if (ctx)
		SSL_CTX_up_ref(ctx);
	SSL_CTX_free(s->tls_ctx); /* handshakes under way hold their own reference */
	s->tls_ctx = ctx;
}

int net_server_tls_available(const struct net_server *s)
{
	return s && s->tls_ctx != NULL;
}

static void close_listeners(struct net_server *s)
{
	for (size_t i = 0; i < s->n_listeners; i++)
		evconnlistener_free(s->listeners[i].l);
	s->n_listeners = 0;
}

void net_server_drain(struct net_server *s, void (*done)(void *arg), void *arg)
{
	s->draining = 1;
	s->drain_done = done;
	s->drain_arg = arg;
	close_listeners(s);
	evtimer_del(s->accept_pause);
	struct net_conn *next;
	for (struct net_conn *c = s->conns; c; c = next) {
		next = c->next;
		int handshaking = c->starttls || (c->tls && !c->tls_up);
		if (c->state == CONN_GREETING || c->state == CONN_HANDSHAKE) {
			conn_free(c);
		} else if (c->state == CONN_ACTIVE && handshaking) {
			/* Mid-handshake there is no stream to say 421 on: the session just ends. */
			c->starttls = 0;
			s->ops->tls_done(c->sess, 0);
			conn_free(c);
		} else if (c->state == CONN_ACTIVE) {
			s->ops->shutdown(c->sess);
			conn_pump(c);
		} /* closing ones have their timers */
	}
	if (s->n_conns == 0) {
		struct timeval zero = {0, 0};
		evtimer_add(s->drain_event, &zero);
	}
}

int net_server_draining(const struct net_server *s)
{
	return s && s->draining;
}

size_t net_server_connections(const struct net_server *s)
{
	return s ? s->n_conns : 0;
}

int net_server_each(const struct net_server *s, int (*fn)(void *sess, void *arg), void *arg)
{
	if (!s)
		return 0;
	for (const struct net_conn *c = s->conns; c; c = c->next) {
		int r = c->sess ? fn(c->sess, arg) : 0;
		if (r)
			return r;
	}
	return 0;
}

void net_server_free(struct net_server *s)
{
	if (!s)
		return;
	close_listeners(s);
	s->drain_done = NULL;
	struct net_conn *next;
	for (struct net_conn *c = s->conns; c; c = next) {
		next = c->next;
		if (c->state != CONN_HELD) {
			conn_transport_free(c);
			if (!c->sess || s->ops->close(c->sess) == 0) {
				free(c);
				continue;
			}
		}
		c->srv = NULL; /* held: orphaned, net_conn_release() frees it */
		c->prev = c->next = NULL;
		c->state = CONN_HELD;
	}
	s->conns = NULL;
	s->n_conns = 0;
	for (size_t i = 0; i < IP_BUCKETS; i++)
		while (s->ips[i]) {
			struct ipcount *e = s->ips[i];
			s->ips[i] = e->next;
			free(e);
		}
	if (s->accept_pause)
		event_free(s->accept_pause);
	if (s->drain_event)
		event_free(s->drain_event);
	SSL_CTX_free(s->tls_ctx);
	free(s->listeners);
	free(s);
}

/* ---- one connection, for the service ---- */

void net_conn_pump(struct net_conn *nc)
{
	if (nc && nc->srv && nc->state != CONN_HELD)
		conn_pump(nc);
}

int net_conn_starttls(struct net_conn *nc)
{
	if (!nc->srv || nc->tls || nc->starttls || !nc->srv->tls_ctx || nc->state != CONN_ACTIVE)
		return -1;
	nc->starttls = 1; /* conn_pump stops feeding; conn_settle switches once 220 is out */
	return 0;
}

int net_conn_tls_info(const struct net_conn *nc, const char **version, const char **cipher)
{
	if (!nc || !nc->tls || !nc->tls_up || !nc->bev)
		return 0;
	SSL *ssl = bufferevent_openssl_get_ssl(nc->bev);
	if (!ssl)
		return 0;
	if (version)
		*version = SSL_get_version(ssl);
	if (cipher)
		*cipher = SSL_get_cipher_name(ssl);
	return 1;
}

int net_conn_draining(const struct net_conn *nc)
{
	return nc && nc->srv && nc->srv->draining;
}
