/*
 * smtpd_server: listeners and connection glue for the SMTP session (see
 * smtpd_server.h). The session decides every reply; this file moves octets
 * between a bufferevent and the session, and enforces what only the transport can:
 * connection limits, deadlines, bounded buffers and the greeting pause.
 *
 * Connection life: GREETING (only with smtp_greet_pause_ms) -> ACTIVE ->
 * CLOSING (flushing our last replies) -> LINGER (write side shut, reading and
 * discarding what the client still sends, so the kernel does not answer its
 * unread octets with a RST that destroys our last reply) -> freed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "directory/password_check.h"
#include "queue/queue.h"
#include "screen/screen.h"
#include "smtpd/smtp_session.h"
#include "smtpd/smtpd_server.h"
#include "util/log.h"
#include "util/netaddr.h"
#include "util/timeutil.h"
#include "verify/lookup.h"
#include "verify/mailbox_index.h"
#include "verify/verify.h"

/* Input kept in the bufferevent before reading pauses (the session consumes it). */
#define IN_HIGH (64 * 1024)
/* Replies waiting for the client before we stop reading its commands. */
#define OUT_HIGH (64 * 1024)
/* Octets fed to the session per call: small for commands so replies interleave. */
#define FEED_CMD 4096
#define FEED_DATA (64 * 1024)
/* In DATA, the deadline restarts after each this many octets of message. */
#define DATA_PROGRESS_BYTES (64 * 1024)
/* Seconds to flush our last reply, and to linger reading after shutting down. */
#define CLOSE_FLUSH_S 5
#define LINGER_S 2
#define LINGER_MAX_BYTES (1024 * 1024)
/* Pause after accept() fails for lack of descriptors (EMFILE), in ms. */
#define ACCEPT_PAUSE_MS 100
#define IP_BUCKETS 1024
#define BACKLOG 1024
#define REJ_LINE_MAX 1024

enum conn_state { CONN_GREETING, CONN_ACTIVE, CONN_CLOSING, CONN_LINGER };

struct ipcount {
	struct ipcount *next;
	unsigned char addr[16];
	int count;
};

/*
 * One request a session has open (smtp_session.h "Requests"), by its id: a
 * commit the queue owes us, or a verdict the verifier owes us. The record is
 * the callback's argument: it names the connection, and a connection cancels
 * its verify requests before it goes, so a callback never finds it freed.
 */
struct conn_req {
	struct conn_req *prev, *next;
	struct conn *c;
	uint64_t id;
	enum smtp_request_kind kind;
	struct verify_req *vr; /* RCPT, SENDER: verify's handle */
};

/*
 * One AUTH request (smtp_session.h SMTP_REQUEST_AUTH), by a server-wide id: the
 * password check pool has no cancel, so a request whose connection went stays
 * here, orphaned (c NULL), until its result comes and is dropped. A failure is
 * held for the Dynamic Screen's growing delay (on `delay`) before the 535.
 */
struct auth_req {
	struct auth_req *prev, *next;
	struct smtpd_server *srv;
	struct conn *c; /* NULL: orphaned */
	uint64_t id; /* the session's request id */
	uint64_t gid; /* password_check's id */
	struct event *delay; /* a failure waiting for its 535 */
	int screened; /* that failure screened the client */
};

struct conn {
	struct conn *prev, *next;
	struct smtpd_server *srv;
	const struct conf *cf; /* the configuration the session started with */
	struct bufferevent *bev;
	struct smtp_session *sess;
	struct event *timer;
	struct smtp_session_ops ops;
	unsigned char ip[16];
	struct sockaddr_storage peer; /* for the Dynamic Screen */
	size_t data_progress;
	size_t lingered;
	enum conn_state state;
	struct conn_req *reqs; /* the open requests */
	struct conn_req commit; /* the record of the commit (at most one at a time) */
	unsigned dead : 1; /* socket gone while a commit was under way */
	unsigned eof : 1;
	unsigned in_data : 1;
};

struct listener {
	struct evconnlistener *l;
	struct smtpd_server *srv;
	enum smtp_port_kind kind;
};

struct smtpd_server {
	const struct conf *conf; /* for new connections: smtpd_server_reload() swaps it */
	struct event_base *base;
	struct queue *q;
	struct mailbox_index *idx;
	struct verify *verify;
	struct listener *listeners;
	size_t n_listeners;
	struct event *accept_pause;
	struct event *drain_event;
	void (*drain_done)(void *arg);
	void *drain_arg;
	int draining;
	struct conn *conns;
	size_t n_conns;
	struct ipcount *ips[IP_BUCKETS];
	int rej_fd;
	struct password_check *pc; /* AUTH; NULL: not offered (smtpd_server_set_auth) */
	struct screen *screen; /* the Dynamic Screen, or NULL */
	struct auth_req *auths; /* AUTH requests the pool still owes, or delayed failures */
	uint64_t next_gid;
};

static struct log_limit limit_log = LOG_LIMIT_INIT(10, 10);
static struct log_limit accept_log = LOG_LIMIT_INIT(5, 10);

static void conn_pump(struct conn *c);
static void conn_close(struct conn *c);
static void conn_free(struct conn *c);

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

static struct ipcount **ip_find(struct smtpd_server *s, const unsigned char ip[16])
{
	struct ipcount **p = &s->ips[ip_hash(ip)];
	while (*p && memcmp((*p)->addr, ip, 16) != 0)
		p = &(*p)->next;
	return p;
}

static int ip_count(struct smtpd_server *s, const unsigned char ip[16])
{
	struct ipcount *e = *ip_find(s, ip);
	return e ? e->count : 0;
}

static int ip_add(struct smtpd_server *s, const unsigned char ip[16], int delta)
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

static int peer_trusted(const struct conf *cf, const struct sockaddr *sa)
{
	for (size_t i = 0; i < cf->smtp_trusted_networks.n; i++)
		if (netaddr_net_contains(&cf->smtp_trusted_networks.v[i], sa))
			return 1;
	return 0;
}

/* ---- session ops ---- */

static enum lookup_result op_lookup(void *arg, const char *mailbox, size_t len,
                                    struct lookup_answer *out)
{
	struct conn *c = arg;
	return mailbox_lookup(c->srv->idx, mailbox, len, out);
}

static struct queue_msg *op_msg_begin(void *arg, char *id, size_t idsz)
{
	struct conn *c = arg;
	struct queue_msg *m = queue_msg_begin(c->srv->q);
	if (m != NULL)
		snprintf(id, idsz, "%s", queue_msg_id(m));
	return m;
}

static int op_msg_write(void *arg, struct queue_msg *m, const void *data, size_t len)
{
	return queue_msg_write(m, data, len);
}

/* ---- the open requests, by id ---- */

static void req_link(struct conn *c, struct conn_req *r)
{
	r->c = c;
	r->prev = NULL;
	r->next = c->reqs;
	if (c->reqs)
		c->reqs->prev = r;
	c->reqs = r;
}

/* Takes r off its connection's list (the caller frees it unless it is c->commit). */
static void req_unlink(struct conn_req *r)
{
	struct conn *c = r->c;
	if (r->prev)
		r->prev->next = r->next;
	else
		c->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

static struct conn_req *req_find(struct conn *c, uint64_t id)
{
	struct conn_req *r = c->reqs;
	while (r && r->id != id)
		r = r->next;
	return r;
}

static int commit_pending(const struct conn *c)
{
	for (const struct conn_req *r = c->reqs; r; r = r->next)
		if (r->kind == SMTP_REQUEST_COMMIT)
			return 1;
	return 0;
}

/* Cancels every open verify request of c (its commit, if any, stays). */
static void reqs_cancel_verify(struct conn *c)
{
	struct conn_req *next;
	for (struct conn_req *r = c->reqs; r; r = next) {
		next = r->next;
		if (r->kind == SMTP_REQUEST_COMMIT)
			continue;
		verify_cancel(r->vr);
		req_unlink(r);
		free(r);
	}
}

/* The queue reports a commit outcome on the event loop. */
static void on_commit(void *arg, int ok, const char *qid)
{
	struct conn_req *r = arg;
	struct conn *c = r->c;
	uint64_t id = r->id;
	req_unlink(r);
	if (!c->srv || c->dead) { /* the server was freed, or the socket closed, meanwhile */
		conn_free(c);
		return;
	}
	smtp_session_commit_done(c->sess, id, ok, qid);
	if (c->srv->draining)
		smtp_session_shutdown(c->sess);
	conn_pump(c);
}

static void op_msg_commit(void *arg, uint64_t id, struct queue_msg *m, const struct envelope *env)
{
	struct conn *c = arg;
	c->commit.id = id;
	c->commit.kind = SMTP_REQUEST_COMMIT;
	c->commit.vr = NULL;
	req_link(c, &c->commit);
	queue_msg_commit(m, env, on_commit, &c->commit);
}

/* A verdict the verifier owed us: the connection is alive (else it was cancelled). */
static void on_verify(void *arg, const struct verify_answer *a)
{
	struct conn_req *r = arg;
	struct conn *c = r->c;
	uint64_t id = r->id;
	enum smtp_request_kind kind = r->kind;
	req_unlink(r);
	free(r);
	if (kind == SMTP_REQUEST_SENDER)
		smtp_session_sender_done(c->sess, id, a);
	else
		smtp_session_rcpt_done(c->sess, id, a);
	conn_pump(c);
}

/* What the session gets when no record can be made for a request: try later. */
static void verify_oom(struct verify_answer *out)
{
	memset(out, 0, sizeof *out);
	out->status = VERIFY_TEMPFAIL;
	snprintf(out->reason, sizeof out->reason, "out of memory");
}

static int op_rcpt_verify(void *arg, uint64_t id, const char *mailbox, size_t len,
                          const char *sender, size_t sender_len, struct verify_answer *out)
{
	struct conn *c = arg;
	struct conn_req *r = calloc(1, sizeof *r);
	if (!r) {
		verify_oom(out);
		return 0;
	}
	r->id = id;
	r->kind = SMTP_REQUEST_RCPT;
	if (verify_rcpt(c->srv->verify, mailbox, len, sender, sender_len, out, on_verify, r,
	                &r->vr) == 0) {
		free(r);
		return 0;
	}
	req_link(c, r);
	return 1;
}

static int op_sender_verify(void *arg, uint64_t id, const char *mailbox, size_t len,
                            struct verify_answer *out)
{
	struct conn *c = arg;
	struct conn_req *r = calloc(1, sizeof *r);
	if (!r) {
		verify_oom(out);
		return 0;
	}
	r->id = id;
	r->kind = SMTP_REQUEST_SENDER;
	if (verify_sender(c->srv->verify, mailbox, len, out, on_verify, r, &r->vr) == 0) {
		free(r);
		return 0;
	}
	req_link(c, r);
	return 1;
}

static void auth_cancel(struct conn *c, uint64_t id);

static void op_request_cancel(void *arg, uint64_t id)
{
	struct conn *c = arg;
	auth_cancel(c, id);
	struct conn_req *r = req_find(c, id);
	if (!r || r->kind == SMTP_REQUEST_COMMIT)
		return; /* already answered or cancelled; a commit is never cancelled */
	verify_cancel(r->vr);
	req_unlink(r);
	free(r);
}

static void op_msg_abort(void *arg, struct queue_msg *m)
{
	queue_msg_abort(m);
}

static long long op_free_space(void *arg)
{
	struct conn *c = arg;
	return queue_free_space(c->srv->q);
}

static int rej_open(struct smtpd_server *s)
{
	s->rej_fd = open(s->conf->smtp_rejected_recipients_log,
	                 O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (s->rej_fd < 0) {
		static struct log_limit lim = LOG_LIMIT_INIT(3, 60);
		if (log_limit_allow(&lim))
			log_err("smtp: cannot open %s: %s", s->conf->smtp_rejected_recipients_log,
			        strerror(errno));
		return -1;
	}
	return 0;
}

/* 1 when the log file was removed or renamed away (rotated) since we opened it. */
static int rej_rotated(const struct smtpd_server *s)
{
	struct stat a, b;
	if (stat(s->conf->smtp_rejected_recipients_log, &a) != 0 || fstat(s->rej_fd, &b) != 0)
		return 1;
	return a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

/*
 * One timestamped line per rejected recipient, written with one write(2) on an
 * O_APPEND descriptor, so lines never interleave. Control bytes are the session's
 * business (it formats the line), but they are replaced here anyway so a peer
 * can never forge a line. A rotated file (logrotate's rename) is reopened.
 */
static void op_log_rejected_rcpt(void *arg, const char *line)
{
	struct conn *c = arg;
	struct smtpd_server *s = c->srv;
	if (!s->conf->smtp_rejected_recipients_log || !*s->conf->smtp_rejected_recipients_log)
		return;
	char buf[REJ_LINE_MAX + 64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ ", &tm);
	for (const char *p = line; *p && n < sizeof buf - 1 && n < REJ_LINE_MAX; p++)
		buf[n++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
	buf[n++] = '\n';
	if (s->rej_fd >= 0 && rej_rotated(s)) {
		close(s->rej_fd);
		s->rej_fd = -1;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		if (s->rej_fd < 0 && rej_open(s) != 0)
			return;
		if (write(s->rej_fd, buf, n) == (ssize_t)n)
			return;
		close(s->rej_fd); /* removed, rotated, or a full disk: reopen once */
		s->rej_fd = -1;
	}
}

/* The session's log lines (it decides them); util/log replaces any control byte. */
static void op_log_line(void *arg, const char *line)
{
	log_info("%s", line);
}

static int64_t op_now(void *arg)
{
	return time_wall_s();
}

/* ---- connection I/O ---- */

static void timer_arm(struct conn *c, int seconds)
{
	struct timeval tv = {seconds, 0};
	evtimer_add(c->timer, &tv);
}

/* Moves the session's output into the bufferevent. Returns 1 if there was any. */
static int conn_send_output(struct conn *c)
{
	size_t len;
	const char *out = smtp_session_output(c->sess, &len);
	if (!out || len == 0)
		return 0;
	if (bufferevent_write(c->bev, out, len) != 0)
		return 0; /* out of memory: the deadline will end the session */
	smtp_session_output_done(c->sess, len);
	return 1;
}

/*
 * After feeding: closes, pauses or resumes reading, and restarts the deadline when
 * the session made progress (a reply, entering or leaving DATA, another
 * DATA_PROGRESS_BYTES of message). RFC 5321 4.5.3.2 gives the timeouts.
 */
static void conn_settle(struct conn *c, int replied)
{
	const struct conf *cf = c->cf;
	size_t open = smtp_session_requests(c->sess);
	if (smtp_session_ended(c->sess) ||
	    (c->eof && !smtp_session_waiting(c->sess) && open == 0)) {
		conn_close(c);
		return;
	}
	if (smtp_session_waiting(c->sess)) {
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
	int in_data = smtp_session_in_data(c->sess) != 0;
	if (replied || in_data != c->in_data ||
	    (in_data && c->data_progress >= DATA_PROGRESS_BYTES) ||
	    !evtimer_pending(c->timer, NULL)) {
		c->in_data = in_data;
		c->data_progress = 0;
		timer_arm(c, in_data ? cf->smtp_data_timeout : cf->smtp_command_timeout);
	}
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= OUT_HIGH)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
}

/* Feeds buffered input to the session while it consumes, sending what it outputs. */
static void conn_pump(struct conn *c)
{
	if (c->state != CONN_ACTIVE)
		return;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int replied = conn_send_output(c);
	while (!smtp_session_ended(c->sess) && !smtp_session_waiting(c->sess) &&
	       evbuffer_get_length(out) < OUT_HIGH) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		int was_data = smtp_session_in_data(c->sess) != 0;
		size_t cap = was_data ? FEED_DATA : FEED_CMD;
		size_t len = v.iov_len < cap ? v.iov_len : cap;
		size_t n = smtp_session_input(c->sess, v.iov_base, len);
		if (n > len)
			n = len;
		evbuffer_drain(in, n);
		if (was_data && smtp_session_in_data(c->sess))
			c->data_progress += n;
		replied |= conn_send_output(c);
		if (n == 0)
			break;
	}
	conn_settle(c, replied);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->state == CONN_LINGER) {
		struct evbuffer *in = bufferevent_get_input(bev);
		c->lingered += evbuffer_get_length(in);
		evbuffer_drain(in, evbuffer_get_length(in));
		if (c->lingered > LINGER_MAX_BYTES)
			conn_free(c);
		return;
	}
	conn_pump(c);
}

/* Our last reply is out: shut our side and read what is left for a moment. */
static void conn_linger(struct conn *c)
{
	if (c->eof) {
		conn_free(c);
		return;
	}
	c->state = CONN_LINGER;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	bufferevent_enable(c->bev, EV_READ);
	timer_arm(c, LINGER_S);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->state == CONN_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_linger(c);
	} else if (c->state == CONN_ACTIVE && !smtp_session_waiting(c->sess)) {
		conn_pump(c); /* the client took our replies: read its next commands */
	}
}

/* The session ended (or the peer closed): flush the output, then linger. */
static void conn_close(struct conn *c)
{
	c->state = CONN_CLOSING;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		conn_linger(c);
		return;
	}
	timer_arm(c, CLOSE_FLUSH_S);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (c->state == CONN_ACTIVE && (what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
		/* A half-closed client may still be owed replies to what it sent. */
		c->eof = 1;
		bufferevent_disable(bev, EV_READ);
		if (!smtp_session_waiting(c->sess))
			conn_pump(c);
		return;
	}
	conn_free(c);
}

static void greet(struct conn *c)
{
	/* Anything already sent before our greeting makes an early talker (RFC 5321 4.3.1). */
	char b;
	ssize_t n = recv(bufferevent_getfd(c->bev), &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0) {
		conn_free(c); /* gone before we spoke */
		return;
	}
	c->state = CONN_ACTIVE;
	smtp_session_greet(c->sess, n > 0);
	conn_pump(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	switch (c->state) {
	case CONN_GREETING: greet(c); break;
	case CONN_ACTIVE:
		if (smtp_session_waiting(c->sess) || smtp_session_requests(c->sess) > 0)
			break;
		log_debug("smtp: timeout, closing");
		smtp_session_timeout(c->sess);
		conn_pump(c);
		break;
	case CONN_CLOSING: /* the client does not take our last reply */
	case CONN_LINGER: conn_free(c); break;
	}
}

/* Takes c off the server: its list, its count and its per-address count. */
static void conn_unlink(struct conn *c)
{
	struct smtpd_server *s = c->srv;
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

/*
 * THE teardown of a connection, from every path (session ended, peer gone,
 * deadline, drain, server freed, commit outcome). The socket, the timer and the
 * open verify requests (cancelled) go at once. While the queue still owes a
 * commit outcome, the rest waits for it: c stays (dead) and on_commit() calls
 * this again. A connection whose server is gone (srv NULL) is only freed.
 */
static void conn_free(struct conn *c)
{
	if (c->bev)
		bufferevent_free(c->bev);
	c->bev = NULL;
	if (c->timer)
		event_free(c->timer);
	c->timer = NULL;
	reqs_cancel_verify(c);
	auth_cancel(c, 0);
	if (commit_pending(c)) {
		c->dead = 1;
		return;
	}
	if (c->srv)
		conn_unlink(c);
	smtp_session_free(c->sess);
	free(c);
}

/* Over a limit: one line and close, with no bufferevent or session spent on it. */
static void refuse(evutil_socket_t fd, const char *why, const unsigned char ip[16])
{
	static const char msg[] = "421 4.7.0 too many connections\r\n";
	ssize_t w = send(fd, msg, sizeof msg - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)w;
	evutil_closesocket(fd);
	uint64_t n = log_limit_allow(&limit_log);
	if (n) {
		char text[INET6_ADDRSTRLEN];
		ip_text(ip, text, sizeof text);
		log_warning("smtp: refused %s: %s (%llu such)", text, why, (unsigned long long)n);
	}
}

/* ---- the Dynamic Screen and AUTH (hooks: each self-contained) ---- */

/*
 * At accept: a screened address gets 421 4.7.0 and is closed with no session
 * spent on it; every connection counts for screen_connection_rate (the one that
 * reaches the rule's COUNT is refused too). Returns 1 when it closed fd.
 */
static int accept_screened(struct smtpd_server *s, evutil_socket_t fd, const struct sockaddr *sa,
                           const unsigned char ip[16])
{
	static const char msg[] = "421 4.7.0 Access denied by the Dynamic Screen\r\n";
	int64_t now = time_wall_s();
	int screened = 0;
	if (s->screen == NULL)
		return 0;
	if (!screen_is_blocked(s->screen, sa, now)) {
		screen_note(s->screen, sa, SCREEN_EVENT_CONNECTION, now, &screened);
		if (!screened)
			return 0;
	}
	ssize_t w = send(fd, msg, sizeof msg - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)w;
	evutil_closesocket(fd);
	uint64_t n = log_limit_allow(&limit_log);
	if (n) {
		char text[INET6_ADDRSTRLEN];
		ip_text(ip, text, sizeof text);
		log_info("smtp: refused %s: screened (%llu such)", text, (unsigned long long)n);
	}
	return 1;
}

/* The session's screen_note op: harvesting counts, AUTH on 25 screens at once. */
static int op_screen_note(void *arg, enum smtp_screen_note what)
{
	struct conn *c = arg;
	const struct sockaddr *sa = (const struct sockaddr *)&c->peer;
	int64_t now = time_wall_s();
	int screened = 0;
	if (c->srv == NULL || c->srv->screen == NULL)
		return 0;
	if (what == SMTP_SCREEN_AUTH_ON_SMTP_PORT)
		return screen_block(c->srv->screen, sa, 0, "auth-on-smtp-port", now);
	screen_note(c->srv->screen, sa, SCREEN_EVENT_UNKNOWN_RECIPIENT, now, &screened);
	return screened;
}

static void auth_req_free(struct auth_req *a)
{
	struct smtpd_server *s = a->srv;
	if (a->prev)
		a->prev->next = a->next;
	else if (s)
		s->auths = a->next;
	if (a->next)
		a->next->prev = a->prev;
	if (a->delay)
		event_free(a->delay);
	free(a);
}

/*
 * Connection c no longer wants AUTH request id (0: any of its own): a delayed
 * failure goes now; one the pool still owes stays, orphaned, for its result.
 */
static void auth_cancel(struct conn *c, uint64_t id)
{
	struct smtpd_server *s = c->srv;
	struct auth_req *next;
	for (struct auth_req *a = s ? s->auths : NULL; a; a = next) {
		next = a->next;
		if (a->c != c || (id != 0 && a->id != id))
			continue;
		if (a->delay)
			auth_req_free(a);
		else
			a->c = NULL;
	}
}

/* The session's auth_check op: the check goes to the pool with a server-wide id. */
static int op_auth_check(void *arg, uint64_t id, const char *identity, const char *password,
                         size_t len)
{
	struct conn *c = arg;
	struct smtpd_server *s = c->srv;
	struct auth_req *a = s && s->pc ? calloc(1, sizeof *a) : NULL;
	if (!a)
		return -1;
	a->srv = s;
	a->c = c;
	a->id = id;
	a->gid = ++s->next_gid;
	/* Invalid credentials cost the same hash as an unknown user (password_check.h). */
	if (password_check_submit(s->pc, a->gid, identity ? identity : "", password ? password : "",
	                          identity ? len : 0) != 0) {
		free(a);
		return -1;
	}
	a->next = s->auths;
	if (s->auths)
		s->auths->prev = a;
	s->auths = a;
	return 0;
}

/* Hands a failure to its session (after its delay), then the 421 if it screened. */
static void auth_fail_deliver(struct auth_req *a)
{
	struct conn *c = a->c;
	uint64_t id = a->id;
	int screened = a->screened;
	auth_req_free(a);
	if (!c)
		return;
	smtp_session_auth_done(c->sess, id, SMTP_AUTH_FAIL, NULL, NULL, 0);
	if (screened)
		smtp_session_screened(c->sess);
	conn_pump(c);
}

static void on_auth_delay(evutil_socket_t fd, short what, void *arg)
{
	auth_fail_deliver(arg);
}

/* A failure: counted by the Dynamic Screen, answered after its growing delay. */
static void auth_failed(struct auth_req *a)
{
	struct smtpd_server *s = a->srv;
	const struct sockaddr *sa = (const struct sockaddr *)&a->c->peer;
	unsigned ms = 0;
	if (s->screen) {
		int n = screen_note(s->screen, sa, SCREEN_EVENT_AUTH_FAILURE, time_wall_s(),
		                    &a->screened);
		ms = screen_auth_delay_ms(n);
	}
	if (ms > 0 && (a->delay = evtimer_new(s->base, on_auth_delay, a)) != NULL) {
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		evtimer_add(a->delay, &tv);
		return;
	}
	auth_fail_deliver(a);
}

void smtpd_server_password_done(void *arg, const struct password_check_result *r)
{
	struct smtpd_server *s = arg;
	struct auth_req *a = s->auths;
	while (a && a->gid != r->id)
		a = a->next;
	if (!a)
		return;
	if (!a->c) { /* its connection went meanwhile */
		auth_req_free(a);
		return;
	}
	if (r->status == PASSWORD_CHECK_FAIL) {
		auth_failed(a);
		return;
	}
	struct conn *c = a->c;
	uint64_t id = a->id;
	auth_req_free(a);
	if (r->status == PASSWORD_CHECK_OK) {
		if (s->screen)
			screen_forget(s->screen, (const struct sockaddr *)&c->peer,
			              SCREEN_EVENT_AUTH_FAILURE);
		smtp_session_auth_done(c->sess, id, SMTP_AUTH_OK, r->account, r->addresses,
		                       r->n_addresses);
	} else {
		smtp_session_auth_done(c->sess, id, SMTP_AUTH_TEMPFAIL, NULL, NULL, 0);
	}
	conn_pump(c);
}

/* The AUTH and screen ops of a new connection (none unless set up). */
static void auth_ops(struct conn *c)
{
	if (c->srv->pc)
		c->ops.auth_check = op_auth_check;
	if (c->srv->screen)
		c->ops.screen_note = op_screen_note;
}

void smtpd_server_attach(struct smtpd_server *s, struct queue *q, struct mailbox_index *idx,
                         struct verify *v)
{
	s->q = q;
	s->idx = idx;
	s->verify = v;
}

void smtpd_server_set_auth(struct smtpd_server *s, struct password_check *pc, struct screen *sc)
{
	s->pc = pc;
	s->screen = sc;
}

/* At free: the records of checks never answered (the pool is freed after us, or was). */
static void auths_free(struct smtpd_server *s)
{
	while (s->auths) {
		s->auths->srv = s;
		auth_req_free(s->auths);
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct listener *li = arg;
	struct smtpd_server *s = li->srv;
	const struct conf *cf = s->conf;
	unsigned char ip[16];
	ip_key(sa, ip);
	if (s->draining) {
		evutil_closesocket(fd);
		return;
	}
	if (s->n_conns >= (size_t)cf->smtp_max_connections) {
		refuse(fd, "smtp_max_connections reached", ip);
		return;
	}
	if (ip_count(s, ip) >= cf->smtp_max_connections_per_ip) {
		refuse(fd, "smtp_max_connections_per_ip reached", ip);
		return;
	}
	if (accept_screened(s, fd, sa, ip))
		return;
	struct conn *c = calloc(1, sizeof *c);
	char text[INET6_ADDRSTRLEN];
	ip_text(ip, text, sizeof text);
	if (!c || ip_add(s, ip, 1) != 0) {
		free(c);
		evutil_closesocket(fd);
		return;
	}
	c->srv = s;
	c->cf = cf;
	memcpy(c->ip, ip, 16);
	if (salen > 0 && (size_t)salen <= sizeof c->peer)
		memcpy(&c->peer, sa, (size_t)salen);
	c->ops = (struct smtp_session_ops){.arg = c,
	                                   .lookup = op_lookup,
	                                   .rcpt_verify = op_rcpt_verify,
	                                   .sender_verify = op_sender_verify,
	                                   .request_cancel = op_request_cancel,
	                                   .msg_begin = op_msg_begin,
	                                   .msg_write = op_msg_write,
	                                   .msg_commit = op_msg_commit,
	                                   .msg_abort = op_msg_abort,
	                                   .free_space = op_free_space,
	                                   .log_rejected_rcpt = op_log_rejected_rcpt,
	                                   .log_line = op_log_line,
	                                   .now = op_now};
	auth_ops(c);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	/*
	 * Replies to a batch of pipelined commands leave in one write, so Nagle only
	 * adds a delayed-ACK stall (up to 40 ms) between a reply and the next one.
	 */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev)
		evutil_closesocket(fd);
	c->timer = evtimer_new(s->base, on_timer, c);
	c->sess = smtp_session_new(cf, &c->ops, li->kind, text, peer_trusted(cf, sa),
	                           verify_client_is_peer(s->verify, text));
	if (!c->bev || !c->timer || !c->sess) {
		log_err("smtp: out of memory for a connection from %s", text);
		conn_free(c);
		return;
	}
	log_debug("smtp: connection from %s", text);
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, IN_HIGH);
	if (cf->smtp_greet_pause_ms > 0) {
		c->state = CONN_GREETING;
		struct timeval tv = {cf->smtp_greet_pause_ms / 1000,
		                     (cf->smtp_greet_pause_ms % 1000) * 1000};
		evtimer_add(c->timer, &tv);
	} else {
		greet(c);
	}
}

static void on_accept_pause_end(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd_server *s = arg;
	for (size_t i = 0; i < s->n_listeners; i++)
		evconnlistener_enable(s->listeners[i].l);
}

/* accept() failed (EMFILE, ENFILE, ENOBUFS): pause instead of spinning on it. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct listener *li = arg;
	int e = EVUTIL_SOCKET_ERROR();
	if (log_limit_allow(&accept_log))
		log_err("smtp: accept: %s", evutil_socket_error_to_string(e));
	for (size_t i = 0; i < li->srv->n_listeners; i++)
		evconnlistener_disable(li->srv->listeners[i].l);
	struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
	evtimer_add(li->srv->accept_pause, &tv);
}

static void on_drain_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd_server *s = arg;
	void (*done)(void *) = s->drain_done;
	s->drain_done = NULL;
	if (done)
		done(s->drain_arg);
}

/* ---- listeners ---- */

/*
 * Binds and listens on entry i of l (smtp_listen or submission_listen). Every
 * error names the config line: "FILE:LINE: smtp_listen HOST:PORT: reason".
 */
static int listen_one(struct smtpd_server *s, const struct addrlist *l, size_t i,
                      enum smtp_port_kind kind, char *err, size_t errlen)
{
	const struct netaddr *a = &l->v[i];
	char where[512];
	const char *step = "socket";
	int fam = a->ss.ss_family, one = 1;
	conf_addr_where(s->conf, l, i, where, sizeof where);
	int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	step = NULL;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    (fam == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0)
		goto fail;
	struct listener *li = &s->listeners[s->n_listeners];
	li->srv = s;
	li->kind = kind;
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
		snprintf(shown, sizeof shown, "%s", l->text[i]);
	log_info("%s: listening on %s", kind == SMTP_PORT_SMTP ? "smtp" : "submission", shown);
	return 0;
fail:
	snprintf(err, errlen, "%s: %s%s%s", where, step ? step : "", step ? ": " : "",
	         strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static void close_listeners(struct smtpd_server *s)
{
	for (size_t i = 0; i < s->n_listeners; i++)
		evconnlistener_free(s->listeners[i].l);
	s->n_listeners = 0;
}

struct smtpd_server *smtpd_server_new(const struct conf *c, struct event_base *base,
                                      struct queue *q, struct mailbox_index *idx, struct verify *v,
                                      char *err, size_t errlen)
{
	struct smtpd_server *s = calloc(1, sizeof *s);
	size_t n = c->smtp_listen.n + c->submission_listen.n;
	if (!s || !(s->listeners = calloc(n ? n : 1, sizeof *s->listeners))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->conf = c;
	s->base = base;
	s->q = q;
	s->idx = idx;
	s->verify = v;
	s->rej_fd = -1;
	s->accept_pause = evtimer_new(base, on_accept_pause_end, s);
	s->drain_event = evtimer_new(base, on_drain_done, s);
	if (!s->accept_pause || !s->drain_event) {
		snprintf(err, errlen, "out of memory");
		smtpd_server_free(s);
		return NULL;
	}
	for (size_t i = 0; i < c->smtp_listen.n; i++)
		if (listen_one(s, &c->smtp_listen, i, SMTP_PORT_SMTP, err, errlen) != 0)
			goto fail;
	for (size_t i = 0; i < c->submission_listen.n; i++)
		if (listen_one(s, &c->submission_listen, i, SMTP_PORT_SUBMISSION, err, errlen) != 0)
			goto fail;
	if (c->smtp_rejected_recipients_log && *c->smtp_rejected_recipients_log)
		rej_open(s); /* early, so a bad path shows in the log at start-up */
	return s;
fail:
	smtpd_server_free(s);
	return NULL;
}

void smtpd_server_drain(struct smtpd_server *s, void (*done)(void *arg), void *arg)
{
	s->draining = 1;
	s->drain_done = done;
	s->drain_arg = arg;
	close_listeners(s);
	evtimer_del(s->accept_pause);
	struct conn *next;
	for (struct conn *c = s->conns; c; c = next) {
		next = c->next;
		if (c->state == CONN_GREETING) {
			conn_free(c);
		} else if (c->state == CONN_ACTIVE && !commit_pending(c)) {
			smtp_session_shutdown(c->sess); /* cancels its open verify requests */
			conn_pump(c);
		} /* commit pending: on_commit shuts down; closing ones have their timers */
	}
	if (s->n_conns == 0) {
		struct timeval zero = {0, 0};
		evtimer_add(s->drain_event, &zero);
	}
}

size_t smtpd_server_connections(const struct smtpd_server *s)
{
	return s ? s->n_conns : 0;
}

/* ---- reload (SIGHUP) ---- */

void smtpd_server_reload(struct smtpd_server *s, const struct conf *c)
{
	s->conf = c;
	/* Opened again on the next refused recipient: a new path, or a rotated file. */
	if (s->rej_fd >= 0)
		close(s->rej_fd);
	s->rej_fd = -1;
}

int smtpd_server_conf_in_use(const struct smtpd_server *s, const struct conf *c)
{
	if (!s)
		return 0;
	if (s->conf == c)
		return 1;
	for (const struct conn *n = s->conns; n; n = n->next)
		if (n->cf == c)
			return 1;
	return 0;
}

void smtpd_server_free(struct smtpd_server *s)
{
	if (!s)
		return;
	close_listeners(s);
	s->drain_done = NULL;
	struct conn *next;
	for (struct conn *c = s->conns; c; c = next) {
		next = c->next;
		c->srv = NULL; /* the server goes: a commit still pending orphans c */
		conn_free(c);
	}
	s->conns = NULL;
	s->n_conns = 0;
	auths_free(s);
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
	if (s->rej_fd >= 0)
		close(s->rej_fd);
	free(s->listeners);
	free(s);
}
