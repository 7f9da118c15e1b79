/*
 * smtp_transport: the libevent glue around smtp_client (see smtp_transport.h).
 *
 * Two objects. A job is one message: its cursor over the hosts and addresses,
 * its results, and an event ("kick") that runs its next step and, at the end,
 * the caller's done callback. A connection is a socket, its bufferevent (the
 * TCP one, then the TLS filter over it), a client, a deadline timer and an idle
 * timer. A job rides on at most one connection at a time; a connection carries
 * at most one job, and between jobs it is parked for its dest_key.
 *
 * The caller's callback only ever runs from a job's kick event, never from
 * inside the processing of a connection: whatever it does (send the next job,
 * close idle connections) finds the transport in a settled state, and a
 * connection's processing never has to survive a re-entry.
 *
 * conn_run() is the pump: it moves the client's output into the bufferevent,
 * drains the client's actions and re-arms the deadline; it is called after
 * every event given to the client, and it may free the connection (its return
 * value says so). Nothing called from inside it calls it again.
 */
#include "deliver/smtp_transport.h"
#include "net/net_client.h"
#include "util/log.h"
#include "util/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Body octets waiting in the bufferevent before we stop reading the file, and
 * the level below which the write callback asks for more. */
#define OUT_HIGH (256 * 1024)
#define OUT_LOW (64 * 1024)
/* Input chunks (evbuffer_peek) fed to the client per round. */
#define FEED_IOV 8

enum conn_state {
	C_CONNECTING = 0, /* TCP connect under way */
	C_OPEN, /* talking (plaintext or TLS) */
	C_HANDSHAKE, /* the TLS handshake after STARTTLS's 220 */
};

struct job;

struct conn {
	struct conn *prev, *next;
	struct smtp_transport *t;
	struct bufferevent *raw; /* the TCP socket's */
	struct bufferevent *tls; /* the TLS filter over raw, after STARTTLS */
	struct bufferevent *bev; /* the one in use: raw or tls */
	SSL *ssl; /* ours to free (the filter is made without CLOSE_ON_FREE) */
	struct smtp_client *client;
	struct event *deadline, *idle;
	unsigned long armed_serial;
	int armed; /* armed_serial is the client's deadline the timer runs for */
	enum conn_state state;
	int ready; /* the client said READY and was given nothing since */
	int parked; /* no job: kept for dest (a job may attach) */
	int no_reuse; /* smtp_transport_close_idle(): QUIT at the next READY */
	unsigned messages; /* messages whose results came on this connection */
	char dest[SMTP_TRANSPORT_DEST_MAX + 1];
	char name[SMTP_TRANSPORT_HOST_MAX + 1];
	struct sockaddr_storage sa;
	struct job *job;
	/* Our own reason when the TCP connect failed (the client never ran). */
	struct smtp_client_reply fail;
	int have_fail;
	/* The body of the message under way. */
	int body; /* feeding it (after WANT_BODY, until body_end) */
	int body_error; /* reading it failed: the connection was dropped */
	int dot_sent; /* smtp_client_body_end() was called */
	struct smtp_client_reply body_reply;
	char *chunk;
	size_t chunk_off, chunk_len;
	uint64_t body_read;
};

struct job {
	struct job *prev, *next;
	struct smtp_transport *t;
	char dest[SMTP_TRANSPORT_DEST_MAX + 1];
	struct smtp_transport_job j; /* the caller's (its pointers borrowed) */
	smtp_transport_done_fn done;
	void *arg;
	struct event *kick;
	size_t host_i, addr_i; /* the next address to try */
	int plain_next; /* the next connection to it is the plaintext retry */
	int on_parked; /* attached to a kept connection (its failure moves no cursor) */
	int under_way; /* smtp_client_message() took it */
	int finished; /* res is final: the kick calls done */
	int have_rr; /* rr holds the client's results */
	int reuse_retried; /* went again once after a kept connection broke */
	struct conn *conn;
	struct smtp_client_rcpt_result *rr;
	struct smtp_transport_result res;
	char host[SMTP_TRANSPORT_HOST_MAX + 1];
};

struct smtp_transport {
	struct event_base *base;
	struct smtp_transport_conf conf;
	char helo[SMTP_CLIENT_HELO_MAX + 1];
	SSL_CTX *ssl_ctx; /* NULL with tls = off */
	struct conn *conns;
	struct job *jobs;
	int freeing;
};

static int conn_run(struct conn *c);
static void job_step(struct job *j);
static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* ---- small helpers ---- */

static void copy_name(char *dst, size_t dstsz, const char *src)
{
	snprintf(dst, dstsz, "%s", src ? src : "");
}

/* 1 for a key the scheduler could have made: printable, no space, bounded. */
static int key_ok(const char *k)
{
	size_t n = 0;
	if (k == NULL)
		return 0;
	for (; k[n]; n++)
		if ((unsigned char)k[n] <= 0x20 || (unsigned char)k[n] >= 0x7f)
			return 0;
	return n >= 1 && n <= SMTP_TRANSPORT_DEST_MAX;
}

/* The result's host fields: the connection's (or attempt's) name and address. */
static void job_set_host(struct job *j, const char *name, const struct sockaddr_storage *sa)
{
	copy_name(j->host, sizeof j->host, name);
	j->res.addr[0] = '\0';
	if (sa->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, j->res.addr,
		          sizeof j->res.addr);
	else if (sa->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, j->res.addr,
		          sizeof j->res.addr);
	j->res.port = netaddr_port((const struct sockaddr *)sa);
}

const char *smtp_transport_outcome_name(enum smtp_transport_outcome o)
{
	switch (o) {
	case SMTP_TRANSPORT_ANSWERED: return "answered";
	case SMTP_TRANSPORT_DEST_DEAD: return "destination dead";
	case SMTP_TRANSPORT_LOCAL_ERROR: return "local error";
	case SMTP_TRANSPORT_ABORTED: return "aborted";
	}
	return "?";
}

/* ---- jobs: the end ---- */

/*
 * The job's outcome is final: recipients without the client's results get
 * why (and ABORTED overrides every one: the transport is going away and the
 * caller must not count on any). done runs from the kick, on the loop.
 */
static void job_finish(struct job *j, enum smtp_transport_outcome o,
                       const struct smtp_client_reply *why)
{
	j->res.outcome = o;
	if (why != NULL)
		j->res.reply = *why;
	if (!j->have_rr || o == SMTP_TRANSPORT_ABORTED) {
		for (size_t i = 0; i < j->j.msg.n_rcpts; i++) {
			j->rr[i].status = SMTP_CLIENT_RCPT_DEFERRED;
			j->rr[i].reply = j->res.reply;
		}
	}
	j->finished = 1;
	event_active(j->kick, EV_TIMEOUT, 1);
}

static void job_unlink(struct job *j)
{
	struct smtp_transport *t = j->t;
	if (j->prev)
		j->prev->next = j->next;
	else
		t->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	j->prev = j->next = NULL;
}

/* Calls done with the final result, then frees the job. */
static void job_complete(struct job *j)
{
	j->res.n_rcpts = j->j.msg.n_rcpts;
	j->res.rcpts = j->rr;
	j->res.host = j->host;
	job_unlink(j);
	log_debug("smtp-out: %s: %s (%s%s%s)", j->dest, smtp_transport_outcome_name(j->res.outcome),
	          j->host, j->host[0] ? " " : "", j->res.addr);
	j->done(j->arg, &j->res);
	event_free(j->kick);
	free(j->rr);
	free(j);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	if (j->finished)
		job_complete(j);
	else
		job_step(j);
}

/* ---- connections: teardown ---- */

static void conn_free(struct conn *c)
{
	struct smtp_transport *t = c->t;
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->job != NULL)
		c->job->conn = NULL;
	/* The filter first (it holds a reference on raw), then its SSL, then raw. */
	if (c->tls)
		bufferevent_free(c->tls);
	SSL_free(c->ssl);
	if (c->raw)
		bufferevent_free(c->raw);
	if (c->deadline)
		event_free(c->deadline);
	if (c->idle)
		event_free(c->idle);
	smtp_client_free(c->client);
	free(c->chunk);
	free(c);
}

/*
 * The next address of a job whose connection failed before the message:
 * after a TLS failure with tls = may, the same address once in plaintext
 * (RFC 7435: opportunistic TLS must not make mail undeliverable); otherwise
 * the next address (the cursor moves to the next host in job_connect_next).
 */
static void job_advance(struct job *j, enum smtp_client_conn_status st)
{
	if (st == SMTP_CLIENT_CONN_TLS_FAILED && j->t->conf.client.tls == SMTP_CLIENT_TLS_MAY &&
	    !j->plain_next) {
		j->plain_next = 1;
		return;
	}
	j->plain_next = 0;
	j->addr_i++;
}

/*
 * The connection is over (the client's CLOSE, or the TCP connect failed). A
 * job still on it had no message under way (MSG_DONE detaches it before the
 * CLOSE): it records why and tries elsewhere.
 */
static void conn_gone(struct conn *c)
{
	struct job *j = c->job;
	const struct smtp_client_conn_result *cr = smtp_client_conn_result(c->client);
	enum smtp_client_conn_status st = c->have_fail ? SMTP_CLIENT_CONN_DROPPED : cr->status;
	log_debug("smtp-out: %s[%s]: closed: %s: %s", c->name, c->dest,
	          smtp_client_conn_status_name(st), c->have_fail ? c->fail.text : cr->reply.text);
	if (j != NULL) {
		c->job = NULL;
		j->conn = NULL;
		j->res.reply = c->have_fail ? c->fail : cr->reply;
		j->res.conn_status = st;
		job_set_host(j, c->name, &c->sa);
		if (j->under_way) {
			/* Not reachable: the client reports a message before closing. */
			struct smtp_client_reply r;
			smtp_client_reply_set(&r, 0, "4.3.0",
			                      "local error: connection ended without results");
			job_finish(j, SMTP_TRANSPORT_LOCAL_ERROR, &r);
		} else {
			if (!j->on_parked)
				job_advance(j, st);
			j->on_parked = 0;
			event_active(j->kick, EV_TIMEOUT, 1);
		}
	}
	conn_free(c);
}

/* ---- connections: moving octets ---- */

/* The client's output into the bufferevent; returns how many octets moved. */
static size_t conn_flush(struct conn *c)
{
	size_t total = 0, len;
	const char *out;
	while ((out = smtp_client_output(c->client, &len)) != NULL && len > 0) {
		if (bufferevent_write(c->bev, out, len) != 0)
			break; /* out of memory: the deadline ends it */
		smtp_client_output_done(c->client, len); /* may queue pipelined commands */
		total += len;
	}
	return total;
}

/*
 * Everything read so far goes to the client before anything it answers is
 * flushed: a reply that arrived with the octets that make us send a command
 * cannot be answering that command (smtp_client.h, unsolicited replies).
 */
static void conn_feed(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec v[FEED_IOV];
	size_t left;
	while ((left = evbuffer_get_length(in)) > 0) {
		int n = evbuffer_peek(in, (ev_ssize_t)left, NULL, v, FEED_IOV);
		if (n > FEED_IOV)
			n = FEED_IOV;
		size_t took = 0;
		for (int i = 0; i < n; i++) {
			smtp_client_input(c->client, v[i].iov_base, v[i].iov_len);
			took += v[i].iov_len;
		}
		if (took == 0)
			return; /* cannot happen with octets left; never spin */
		evbuffer_drain(in, took);
	}
}

/* One timer per connection, re-armed only when the client's wait changes. */
static void conn_arm(struct conn *c)
{
	struct smtp_client_deadline d = smtp_client_deadline(c->client);
	if (c->armed && d.serial == c->armed_serial)
		return;
	c->armed = 1;
	c->armed_serial = d.serial;
	if (d.seconds == 0) {
		evtimer_del(c->deadline);
		return;
	}
	struct timeval tv = {(time_t)d.seconds, 0};
	evtimer_add(c->deadline, &tv);
}

/* ---- the body ---- */

/* Reading the body failed: drop the connection so no final dot is ever sent. */
static void body_fail(struct conn *c, const char *why)
{
	smtp_client_reply_set(&c->body_reply, 0, "4.3.0", "local error: %s", why);
	c->body_error = 1;
	c->body = 0;
	smtp_client_closed(c->client);
}

static int body_read_chunk(struct conn *c)
{
	const struct smtp_transport_job *jb = &c->job->j;
	uint64_t left = jb->msg.size - c->body_read;
	size_t want = left < c->t->conf.body_chunk ? (size_t)left : c->t->conf.body_chunk;
	ssize_t n;
	char why[128];
	if (c->chunk == NULL && (c->chunk = malloc(c->t->conf.body_chunk)) == NULL) {
		body_fail(c, "out of memory for the message body");
		return -1;
	}
	if (c->body_read < jb->prefix_len) {
		/* The prefix first (it fits the chunk or not: the rest comes next time). */
		size_t k = jb->prefix_len - (size_t)c->body_read;
		n = (ssize_t)(k < want ? k : want);
		memcpy(c->chunk, jb->prefix + c->body_read, (size_t)n);
	} else {
		uint64_t off = jb->body_offset + c->body_read - jb->prefix_len;
		do
			n = pread(jb->body_fd, c->chunk, want, (off_t)off);
		while (n < 0 && errno == EINTR);
	}
	if (n <= 0) {
		if (n < 0)
			snprintf(why, sizeof why, "cannot read the message: %s", strerror(errno));
		else
			snprintf(why, sizeof why, "the message file is shorter than its size");
		body_fail(c, why);
		return -1;
	}
	c->chunk_off = 0;
	c->chunk_len = (size_t)n;
	c->body_read += (uint64_t)n;
	return 0;
}

/*
 * Test hook (HACKING.md): SHAREMAIL_TEST_CRASH_AT=relay-before-dot kills the
 * process once the whole body is on the wire and before the final dot, so a
 * test sees a peer holding a message it never accepted. The octets still in
 * the output buffer are written first, straight to the socket (plaintext
 * only: over TLS less of the body has left, still before the dot).
 */
static void crash_before_dot(struct conn *c)
{
	static int armed = -1;
	if (armed < 0) {
		const char *p = getenv("SHAREMAIL_TEST_CRASH_AT");
		armed = p && strcmp(p, "relay-before-dot") == 0;
	}
	if (!armed)
		return;
	/* The bufferevent's output is frozen at its front: peek at it, write it raw. */
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int fd = bufferevent_getfd(c->bev);
	struct evbuffer_iovec v[64];
	int n = fd >= 0 && !c->tls ? evbuffer_peek(out, -1, NULL, v, 64) : 0;
	int broken = 0;
	for (int i = 0; i < n && i < 64 && !broken; i++) {
		size_t off = 0;
		for (int spins = 0; off < v[i].iov_len && spins < 1000 && !broken; spins++) {
			ssize_t w = write(fd, (char *)v[i].iov_base + off, v[i].iov_len - off);
			if (w > 0)
				off += (size_t)w;
			broken = w < 0 && errno != EAGAIN && errno != EINTR;
			struct pollfd p = {fd, POLLOUT, 0};
			if (off < v[i].iov_len && !broken)
				poll(&p, 1, 10);
		}
	}
	kill(getpid(), SIGKILL);
}

/*
 * Feeds the body while the bufferevent holds less than OUT_HIGH; the write
 * callback (output below OUT_LOW) calls again. The file is read on the loop:
 * a page-cache read of a file the queue has just written (see the header).
 */
static void body_pump(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	for (;;) {
		conn_flush(c);
		if (!c->body || c->job == NULL || evbuffer_get_length(out) >= OUT_HIGH)
			return;
		if (c->chunk_off == c->chunk_len) {
			if (c->body_read == c->job->j.msg.size) {
				crash_before_dot(c);
				c->body = 0;
				c->dot_sent = 1;
				smtp_client_body_end(c->client);
				conn_flush(c);
				return;
			}
			if (body_read_chunk(c) != 0)
				return;
		}
		size_t took = smtp_client_body(c->client, c->chunk + c->chunk_off,
		                               c->chunk_len - c->chunk_off);
		c->chunk_off += took;
		if (took == 0 && conn_flush(c) == 0)
			return; /* the client takes nothing more: its actions say why */
	}
}

/* ---- the client's actions ---- */

static int conn_reusable(const struct conn *c)
{
	const struct smtp_transport *t = c->t;
	return t->conf.idle_max > 0 && c->messages < t->conf.messages_max && !c->no_reuse &&
	       !t->freeing && !smtp_client_done(c->client);
}

/* QUIT (RFC 5321 4.1.1.10); the caller is inside conn_run or calls it next. */
static void conn_quit(struct conn *c)
{
	c->parked = 0;
	c->ready = 0;
	evtimer_del(c->idle);
	smtp_client_quit(c->client);
}

/* Starts the attached job's message (the client is READY). */
static void conn_give(struct conn *c)
{
	struct job *j = c->job;
	c->ready = 0;
	c->parked = 0;
	evtimer_del(c->idle);
	c->body = c->body_error = c->dot_sent = 0;
	c->chunk_off = c->chunk_len = 0;
	c->body_read = 0;
	j->under_way = 1;
	if (smtp_client_message(c->client, &j->j.msg) != 0) {
		/* smtp_transport_send() checked what the client checks: not reached. */
		struct smtp_client_reply r;
		j->under_way = 0;
		c->job = NULL;
		j->conn = NULL;
		smtp_client_reply_set(&r, 0, "4.3.0",
		                      "local error: the SMTP client refused the message");
		job_finish(j, SMTP_TRANSPORT_LOCAL_ERROR, &r);
		c->ready = 1;
		conn_quit(c);
	}
}

static void conn_ready(struct conn *c)
{
	c->ready = 1;
	if (c->job != NULL) {
		conn_give(c);
		return;
	}
	if (!conn_reusable(c)) {
		conn_quit(c);
		return;
	}
	c->parked = 1;
	struct timeval tv = {(time_t)c->t->conf.idle_max, 0};
	evtimer_add(c->idle, &tv);
}

/*
 * A kept connection that broke under the next message before the final dot:
 * the peer closed it (or said 421) as we reused it, typically its idle
 * timeout racing ours, and it answered nothing about the message. Nothing can
 * have been accepted without the dot, so the message may go again, once, on a
 * new connection, instead of waiting a whole back-off for a stale socket.
 */
static int reuse_lost(const struct conn *c, const struct job *j, size_t n)
{
	enum smtp_client_conn_status st = smtp_client_conn_result(c->client)->status;
	if (!j->res.reused || c->dot_sent || c->body_error || j->reuse_retried ||
	    (st != SMTP_CLIENT_CONN_DROPPED && st != SMTP_CLIENT_CONN_SHUTDOWN))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (j->rr[i].status != SMTP_CLIENT_RCPT_DEFERRED ||
		    (j->rr[i].reply.code != 0 && j->rr[i].reply.code != 421))
			return 0;
	return 1;
}

static void conn_msg_done(struct conn *c)
{
	struct job *j = c->job;
	const struct smtp_client_result *r = smtp_client_result(c->client);
	c->body = 0;
	if (j == NULL || r == NULL)
		return;
	c->job = NULL;
	j->conn = NULL;
	j->res.reused = c->messages > 0;
	c->messages++;
	size_t n = r->n_rcpts < j->j.msg.n_rcpts ? r->n_rcpts : j->j.msg.n_rcpts;
	memcpy(j->rr, r->rcpts, n * sizeof *j->rr);
	j->have_rr = 1;
	if (reuse_lost(c, j, n)) {
		log_debug("smtp-out: %s: kept connection lost, sending again", j->dest);
		j->reuse_retried = 1;
		j->under_way = 0;
		j->have_rr = 0;
		j->res.reused = 0;
		c->parked = 0;
		event_active(j->kick, EV_TIMEOUT, 1);
		return;
	}
	j->res.peer_dsn = r->peer_dsn;
	j->res.tls = smtp_client_caps(c->client)->tls;
	j->res.conn_status = smtp_client_conn_result(c->client)->status;
	job_set_host(j, c->name, &c->sa);
	enum smtp_transport_outcome o = SMTP_TRANSPORT_ANSWERED;
	j->res.reply = r->reply;
	if (c->body_error) {
		/* The client deferred them for the drop we caused: say why. */
		for (size_t i = 0; i < n; i++)
			if (j->rr[i].status == SMTP_CLIENT_RCPT_DEFERRED &&
			    j->rr[i].reply.code == 0)
				j->rr[i].reply = c->body_reply;
		j->res.reply = c->body_reply;
		o = SMTP_TRANSPORT_LOCAL_ERROR;
	}
	c->parked = conn_reusable(c);
	j->res.reusable = c->parked;
	job_finish(j, o, NULL);
}

/*
 * STARTTLS's 220 came (RFC 3207 4.2). Whatever followed it in plaintext went
 * to the client with the 220 (on_read feeds all it has), which discarded and
 * counted it; anything still in the socket's input buffer goes the same way
 * here, so not one octet of it reaches the TLS layer or is read as a reply
 * (CVE-2011-0411). Then the filter takes over the socket's bufferevent.
 */
static void conn_start_tls(struct conn *c)
{
	SSL *ssl;
	conn_flush(c);
	conn_feed(c);
	/* Deferred callbacks (net_client.h): nothing re-enters conn_run() from here. */
	struct bufferevent *b =
	        net_client_tls_start(c->t->base, c->raw, c->t->ssl_ctx, c->name, &ssl);
	if (b == NULL) {
		smtp_client_tls_done(c->client, 0);
		return;
	}
	c->ssl = ssl;
	c->tls = b;
	c->bev = b;
	c->state = C_HANDSHAKE;
	bufferevent_setcb(b, on_read, on_write, on_event, c);
	bufferevent_setwatermark(b, EV_WRITE, OUT_LOW, 0);
	bufferevent_enable(b, EV_READ | EV_WRITE);
}

/* The pump (see the top). Returns -1 when the connection is gone. */
static int conn_run(struct conn *c)
{
	for (;;) {
		conn_flush(c);
		switch (smtp_client_next_action(c->client)) {
		case SMTP_CLIENT_ACT_NONE: conn_arm(c); return 0;
		case SMTP_CLIENT_ACT_MSG_DONE: conn_msg_done(c); break;
		case SMTP_CLIENT_ACT_START_TLS: conn_start_tls(c); break;
		case SMTP_CLIENT_ACT_WANT_BODY:
			c->body = 1;
			body_pump(c);
			break;
		case SMTP_CLIENT_ACT_READY: conn_ready(c); break;
		case SMTP_CLIENT_ACT_CLOSE: conn_gone(c); return -1;
		}
	}
}

/* ---- connections: libevent callbacks ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	conn_feed(c);
	conn_run(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->body)
		body_pump(c);
	conn_run(c);
}

static void on_connect_event(struct conn *c, short what)
{
	if (what & BEV_EVENT_CONNECTED) {
		c->state = C_OPEN;
		smtp_client_connected(c->client);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		conn_run(c);
		return;
	}
	int e = EVUTIL_SOCKET_ERROR();
	smtp_client_reply_set(&c->fail, 0, "4.4.1", "connect: %s",
	                      e ? evutil_socket_error_to_string(e) : "connection failed");
	c->have_fail = 1;
	conn_gone(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (c->state == C_CONNECTING) {
		on_connect_event(c, what);
		return;
	}
	if (c->state == C_HANDSHAKE) {
		c->state = C_OPEN;
		int ok = (what & BEV_EVENT_CONNECTED) != 0;
		if (ok)
			log_debug("smtp-out: %s: TLS %s %s", c->name, SSL_get_version(c->ssl),
			          SSL_get_cipher_name(c->ssl));
		else
			ERR_clear_error();
		smtp_client_tls_done(c->client, ok);
		conn_run(c);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		conn_feed(c); /* what came before the end is still the peer's */
		if (c->tls)
			ERR_clear_error();
		smtp_client_closed(c->client);
		conn_run(c);
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	c->armed = 0; /* whatever the client says next, the timer is spent */
	smtp_client_timeout(c->client);
	conn_run(c);
}

/* Nobody sent a job for dest within idle_max: QUIT. */
static void on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->job != NULL || !c->ready)
		return;
	conn_quit(c);
	conn_run(c);
}

/* ---- connections: opening ---- */

/*
 * Opens a connection for j to one address of h. Returns 0 (under way), 1 when
 * this address failed at once (why says so: try the next), -1 for a local
 * failure (memory, descriptors: no address would do better).
 */
static int conn_open(struct job *j, const struct smtp_transport_host *h,
                     const struct sockaddr_storage *sa, struct smtp_client_reply *why)
{
	struct smtp_transport *t = j->t;
	socklen_t len = net_client_sa_len(sa);
	if (len == 0) {
		smtp_client_reply_set(why, 0, "4.4.1", "unsupported address family %d",
		                      sa->ss_family);
		return 1;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL) {
		smtp_client_reply_set(why, 0, "4.3.0", "local error: out of memory");
		return -1;
	}
	struct smtp_client_conf cc = t->conf.client;
	cc.helo_name = t->helo;
	if (j->plain_next)
		cc.tls = SMTP_CLIENT_TLS_OFF;
	c->t = t;
	c->sa = *sa;
	copy_name(c->name, sizeof c->name, h->name);
	memcpy(c->dest, j->dest, sizeof c->dest);
	c->next = t->conns;
	if (t->conns)
		t->conns->prev = c;
	t->conns = c;
	c->client = smtp_client_new(&cc);
	c->deadline = evtimer_new(t->base, on_deadline, c);
	c->idle = evtimer_new(t->base, on_idle, c);
	/* The socket (TCP_NODELAY: pipelined commands and the final dot are small
	 * writes Nagle would hold behind the peer's delayed ACK) and its connect. */
	int e = ENOMEM;
	if (c->client && c->deadline && c->idle)
		c->raw = net_client_connect(t->base, sa, &e);
	if (c->raw == NULL) {
		int local = net_client_local_errno(e);
		smtp_client_reply_set(why, 0, local ? "4.3.0" : "4.4.1", "%s: %s",
		                      local ? "local error: connect" : "connect", strerror(e));
		conn_free(c);
		return local ? -1 : 1;
	}
	c->bev = c->raw;
	bufferevent_setcb(c->raw, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->raw, EV_WRITE, OUT_LOW, 0);
	c->job = j;
	j->conn = c;
	j->on_parked = 0;
	j->res.connections++;
	conn_arm(c); /* the connect deadline */
	char text[64];
	netaddr_format((const struct sockaddr *)sa, text, sizeof text);
	log_debug("smtp-out: %s: connecting to %s[%s]%s", j->dest, c->name, text,
	          j->plain_next ? " (plaintext retry)" : "");
	return 0;
}

/* The next address, then the next host; none left: the destination is dead. */
static void job_connect_next(struct job *j)
{
	struct smtp_client_reply why;
	while (j->host_i < j->j.n_hosts) {
		const struct smtp_transport_host *h = &j->j.hosts[j->host_i];
		if (j->addr_i >= h->n_addrs) {
			j->host_i++;
			j->addr_i = 0;
			j->plain_next = 0;
			continue;
		}
		const struct sockaddr_storage *sa = &h->addrs[j->addr_i];
		int r = conn_open(j, h, sa, &why);
		if (r == 0)
			return;
		j->res.reply = why;
		j->res.conn_status = SMTP_CLIENT_CONN_DROPPED;
		job_set_host(j, h->name, sa);
		if (r < 0) {
			job_finish(j, SMTP_TRANSPORT_LOCAL_ERROR, &why);
			return;
		}
		j->plain_next = 0;
		j->addr_i++;
	}
	job_finish(j, SMTP_TRANSPORT_DEST_DEAD, NULL); /* the last attempt's reason */
}

static struct conn *conn_find_parked(struct smtp_transport *t, const char *dest)
{
	for (struct conn *c = t->conns; c; c = c->next)
		if (c->parked && c->job == NULL && conn_reusable(c) && strcmp(c->dest, dest) == 0)
			return c;
	return NULL;
}

/* A job's next step: a kept connection to its destination, else a new one. */
static void job_step(struct job *j)
{
	if (j->conn != NULL)
		return;
	struct conn *c = conn_find_parked(j->t, j->dest);
	if (c == NULL) {
		job_connect_next(j);
		return;
	}
	c->job = j;
	c->parked = 0;
	j->conn = c;
	j->on_parked = 1;
	evtimer_del(c->idle);
	if (c->ready) { /* else RSET is under way: its READY gives the message */
		conn_give(c);
		conn_run(c);
	}
}

/* ---- the API ---- */

void smtp_transport_conf_defaults(struct smtp_transport_conf *c)
{
	memset(c, 0, sizeof *c);
	smtp_client_conf_defaults(&c->client);
	c->idle_max = 5;
	c->messages_max = 100;
	c->body_chunk = 65536;
}

struct smtp_transport *smtp_transport_new(struct event_base *base,
                                          const struct smtp_transport_conf *conf)
{
	if (base == NULL || conf == NULL || conf->messages_max < 1 || conf->messages_max > 100000 ||
	    conf->body_chunk < SMTP_TRANSPORT_CHUNK_MIN ||
	    conf->body_chunk > SMTP_TRANSPORT_CHUNK_MAX)
		return NULL;
	struct smtp_client *probe = smtp_client_new(&conf->client); /* the client's ranges */
	if (probe == NULL)
		return NULL;
	smtp_client_free(probe);
	struct smtp_transport *t = calloc(1, sizeof *t);
	if (t == NULL)
		return NULL;
	t->base = base;
	t->conf = *conf;
	copy_name(t->helo, sizeof t->helo, conf->client.helo_name);
	t->conf.client.helo_name = t->helo;
	if (conf->client.tls != SMTP_CLIENT_TLS_OFF &&
	    (t->ssl_ctx = net_client_tls_ctx_new()) == NULL) {
		free(t);
		return NULL;
	}
	return t;
}

void smtp_transport_free(struct smtp_transport *t)
{
	struct smtp_client_reply r;
	if (t == NULL)
		return;
	t->freeing = 1;
	while (t->conns)
		conn_free(t->conns);
	smtp_client_reply_set(&r, 0, "4.3.2", "delivery stopped: the SMTP transport was shut down");
	while (t->jobs) {
		struct job *j = t->jobs;
		if (!j->finished) /* a job with a final result gets it, 250s included */
			job_finish(j, SMTP_TRANSPORT_ABORTED, &r);
		job_complete(j);
	}
	SSL_CTX_free(t->ssl_ctx);
	free(t);
}

static int job_valid(const struct smtp_transport *t, const struct smtp_transport_job *jb)
{
	size_t addrs = 0;
	if (jb == NULL || jb->hosts == NULL || jb->n_hosts == 0 || jb->body_fd < 0)
		return 0;
	for (size_t i = 0; i < jb->n_hosts; i++) {
		if (jb->hosts[i].n_addrs > 0 && jb->hosts[i].addrs == NULL)
			return 0;
		addrs += jb->hosts[i].n_addrs;
	}
	const struct smtp_client_msg *m = &jb->msg;
	return addrs > 0 && m->mail_from != NULL && m->rcpts != NULL && m->n_rcpts >= 1 &&
	       m->n_rcpts <= t->conf.client.max_rcpts &&
	       jb->body_offset <= (uint64_t)INT64_MAX - m->size && jb->prefix_len <= m->size &&
	       (jb->prefix != NULL || jb->prefix_len == 0);
}

int smtp_transport_send(struct smtp_transport *t, const char *dest_key,
                        const struct smtp_transport_job *job, smtp_transport_done_fn done,
                        void *arg)
{
	if (t == NULL || t->freeing || done == NULL || !key_ok(dest_key) || !job_valid(t, job))
		return -1;
	struct job *j = calloc(1, sizeof *j);
	if (j == NULL)
		return -1;
	j->rr = calloc(job->msg.n_rcpts, sizeof *j->rr);
	j->kick = event_new(t->base, -1, 0, on_kick, j);
	if (j->rr == NULL || j->kick == NULL) {
		if (j->kick)
			event_free(j->kick);
		free(j->rr);
		free(j);
		return -1;
	}
	j->t = t;
	copy_name(j->dest, sizeof j->dest, dest_key);
	j->j = *job;
	j->done = done;
	j->arg = arg;
	j->next = t->jobs;
	if (t->jobs)
		t->jobs->prev = j;
	t->jobs = j;
	event_active(j->kick, EV_TIMEOUT, 1); /* done never runs inside this call */
	return 0;
}

void smtp_transport_close_idle(struct smtp_transport *t, const char *dest_key)
{
	struct conn *next;
	for (struct conn *c = t->conns; c; c = next) {
		next = c->next;
		if (c->job != NULL || (dest_key != NULL && strcmp(c->dest, dest_key) != 0))
			continue;
		c->no_reuse = 1; /* one still in RSET quits at its READY */
		if (c->parked && c->ready) {
			conn_quit(c);
			conn_run(c);
		}
	}
}

size_t smtp_transport_connections(const struct smtp_transport *t, size_t *idle)
{
	size_t n = 0, k = 0;
	for (const struct conn *c = t->conns; c; c = c->next) {
		n++;
		k += c->parked && c->ready && c->job == NULL;
	}
	if (idle != NULL)
		*idle = k;
	return n;
}
