/*
 * smtpd_server: the SMTP service on net_server (see smtpd_server.h). The
 * transport (listeners, limits, deadlines, greeting pause, TLS, linger, drain)
 * is net/net_server.c's; this file makes one smtp_session per connection,
 * gives net_server the session vtable, and connects the session's ops to the
 * queue, the verifier, the mailbox index and the rejected-recipients log.
 */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "directory/password_check.h"
#include "directory/pop_login.h"
#include "net/net_server.h"
#include "queue/queue.h"
#include "screen/screen.h"
#include "screen/screen_auth.h"
#include "smtpd/smtp_session.h"
#include "smtpd/smtpd_server.h"
#include "util/log.h"
#include "util/netaddr.h"
#include "util/timeutil.h"
#include "verify/lookup.h"
#include "verify/mailbox_index.h"
#include "verify/verify.h"

#define REJ_LINE_MAX 1024

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

/* One connection's SMTP side: the session net_server drives (its `sess`). */
struct conn {
	struct smtpd_server *srv; /* NULL once the server is freed */
	struct net_conn *nc; /* NULL once the transport is gone */
	const struct conf *cf; /* the configuration the session started with */
	struct smtp_session *sess;
	struct smtp_session_ops ops;
	struct conn_req *reqs; /* the open requests */
	struct conn_req commit; /* the record of the commit (at most one at a time) */
	uint64_t tls_id; /* the session's open TLS request (STARTTLS), 0: none */
	struct sockaddr_storage peer; /* for the Dynamic Screen */
	unsigned dead : 1; /* transport gone while a commit was under way (net holds nc) */
};

struct smtpd_server {
	const struct conf *conf; /* for new connections: smtpd_server_reload() swaps it */
	struct queue *q;
	struct mailbox_index *idx;
	struct verify *verify;
	struct net_server *net;
	int freeing; /* in smtpd_server_free(): connections lose their server */
	int rej_fd;
	struct event_base *base;
	struct password_check *pc; /* AUTH; NULL: not offered (smtpd_server_set_auth) */
	struct screen *screen; /* the Dynamic Screen, or NULL */
	struct pop_login *pop_logins; /* POP before SMTP's logins, or NULL */
	struct screen_auth *auth; /* AUTH requests the pool still owes, or delayed failures */
};

static int peer_trusted(const struct conf *cf, const struct sockaddr *sa)
{
	for (size_t i = 0; i < cf->smtp_trusted_networks.n; i++)
		if (netaddr_net_contains(&cf->smtp_trusted_networks.v[i], sa))
			return 1;
	return 0;
}

static void conn_pump(struct conn *c)
{
	net_conn_pump(c->nc);
}

static void conn_gone(struct conn *c);

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
		conn_gone(c);
		return;
	}
	smtp_session_commit_done(c->sess, id, ok, qid);
	if (net_server_draining(c->srv->net))
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

static void op_request_cancel(void *arg, uint64_t id)
{
	struct conn *c = arg;
	screen_auth_cancel(c->srv ? c->srv->auth : NULL, c, id);
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

static int op_pop_recent(void *arg, const char *key, int64_t window)
{
	struct conn *c = arg;
	return pop_login_recent(c->srv->pop_logins, key, time_wall_s(), window);
}

/* STARTTLS: net_server switches once the 220 is out, then calls sv_tls_done. */
static int op_tls_start(void *arg, uint64_t id)
{
	struct conn *c = arg;
	if (!c->nc || net_conn_starttls(c->nc) != 0)
		return 0;
	c->tls_id = id;
	return 1;
}

/* ---- the Dynamic Screen and AUTH (hooks: each self-contained) ---- */

/*
 * At accept (net_server's admit): a screened address gets 421 4.7.0 and is
 * closed with no session spent on it; every connection counts for
 * screen_connection_rate (the one that reaches the rule's COUNT is refused too).
 */
static const char *sv_admit(void *svc, const struct sockaddr *sa)
{
	struct smtpd_server *s = svc;
	return screen_admit(s->screen, sa, time_wall_s())
	               ? "421 4.7.0 Access denied by the Dynamic Screen\r\n"
	               : NULL;
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

/* The session's auth_check op: the check goes to the pool (screen_auth.h). */
static int op_auth_check(void *arg, uint64_t id, const char *identity, const char *password,
                         size_t len)
{
	struct conn *c = arg;
	if (!c->srv)
		return -1;
	return screen_auth_submit(c->srv->auth, c, (const struct sockaddr *)&c->peer, id, identity,
	                          password, len);
}

/* A check's answer (a failure after its delay; the 421 then if it screened the client). */
static void on_auth_done(void *conn, uint64_t id, enum password_check_status status,
                         const struct password_check_result *r, int screened)
{
	struct conn *c = conn;
	if (status == PASSWORD_CHECK_OK) {
		smtp_session_auth_done(c->sess, id, SMTP_AUTH_OK, r->account, r->addresses,
		                       r->n_addresses);
	} else if (status == PASSWORD_CHECK_FAIL) {
		smtp_session_auth_done(c->sess, id, SMTP_AUTH_FAIL, NULL, NULL, 0);
		if (screened)
			smtp_session_screened(c->sess);
	} else {
		smtp_session_auth_done(c->sess, id, SMTP_AUTH_TEMPFAIL, NULL, NULL, 0);
	}
	conn_pump(c);
}

void smtpd_server_password_done(void *arg, const struct password_check_result *r)
{
	struct smtpd_server *s = arg;
	screen_auth_result(s->auth, r);
}

/* The AUTH and screen ops of a new connection (none unless set up). */
static void auth_ops(struct conn *c)
{
	if (c->srv->pc)
		c->ops.auth_check = op_auth_check;
	if (c->srv->screen)
		c->ops.screen_note = op_screen_note;
}

/* ---- the session vtable for net_server ---- */

static void *sv_open(void *svc, struct net_conn *nc, int tag, const struct sockaddr *peer,
                     const char *peer_text)
{
	struct smtpd_server *s = svc;
	const struct conf *cf = s->conf;
	struct conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->srv = s;
	c->nc = nc;
	c->cf = cf;
	if (peer->sa_family == AF_INET6)
		memcpy(&c->peer, peer, sizeof(struct sockaddr_in6));
	else if (peer->sa_family == AF_INET)
		memcpy(&c->peer, peer, sizeof(struct sockaddr_in));
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
	                                   .now = op_now,
	                                   .tls_start = op_tls_start,
	                                   .pop_recent = op_pop_recent};
	auth_ops(c);
	c->sess = smtp_session_new(cf, &c->ops, (enum smtp_port_kind)tag, peer_text,
	                           peer_trusted(cf, peer),
	                           s->verify && verify_client_is_peer(s->verify, peer_text));
	if (!c->sess) {
		free(c);
		return NULL;
	}
	return c;
}

static void sv_greet(void *sess, int early_talker)
{
	struct conn *c = sess;
	const char *version, *cipher;
	if (net_conn_tls_info(c->nc, &version, &cipher)) /* smtps_listen: TLS came first */
		smtp_session_tls_implicit(c->sess, version, cipher);
	smtp_session_greet(c->sess, early_talker);
}

static size_t sv_input(void *sess, const char *data, size_t len)
{
	struct conn *c = sess;
	return smtp_session_input(c->sess, data, len);
}

static const char *sv_output(void *sess, size_t *len)
{
	struct conn *c = sess;
	return smtp_session_output(c->sess, len);
}

static void sv_output_done(void *sess, size_t n)
{
	struct conn *c = sess;
	smtp_session_output_done(c->sess, n);
}

static int sv_ended(void *sess)
{
	struct conn *c = sess;
	return smtp_session_ended(c->sess);
}

static int sv_waiting(void *sess)
{
	struct conn *c = sess;
	return smtp_session_waiting(c->sess);
}

static size_t sv_requests(void *sess)
{
	struct conn *c = sess;
	return smtp_session_requests(c->sess);
}

static int sv_in_bulk(void *sess)
{
	struct conn *c = sess;
	return smtp_session_in_data(c->sess);
}

static void sv_timeout(void *sess)
{
	struct conn *c = sess;
	smtp_session_timeout(c->sess);
}

/* A session waiting for a commit first gets its outcome: on_commit shuts it down then. */
static void sv_shutdown(void *sess)
{
	struct conn *c = sess;
	if (!commit_pending(c))
		smtp_session_shutdown(c->sess); /* cancels its open verify requests */
}

static void sv_tls_done(void *sess, int ok)
{
	struct conn *c = sess;
	const char *version = NULL, *cipher = NULL;
	uint64_t id = c->tls_id;
	c->tls_id = 0;
	if (ok && !net_conn_tls_info(c->nc, &version, &cipher))
		ok = 0;
	smtp_session_tls_done(c->sess, id, ok, version, cipher);
}

/* The transport is gone: verify requests are cancelled; a commit still owed keeps c. */
static int sv_close(void *sess)
{
	struct conn *c = sess;
	reqs_cancel_verify(c);
	screen_auth_cancel(c->srv ? c->srv->auth : NULL, c, 0);
	if (c->srv && c->srv->freeing)
		c->srv = NULL; /* the server goes: a commit still pending orphans c */
	if (commit_pending(c)) {
		c->dead = 1;
		return 1;
	}
	smtp_session_free(c->sess);
	free(c);
	return 0;
}

/* A dead connection's commit outcome came: the session and the held transport go. */
static void conn_gone(struct conn *c)
{
	smtp_session_free(c->sess);
	net_conn_release(c->nc);
	free(c);
}

static const struct net_session_ops session_vtable = {
        .admit = sv_admit,
        .open = sv_open,
        .greet = sv_greet,
        .input = sv_input,
        .output = sv_output,
        .output_done = sv_output_done,
        .ended = sv_ended,
        .waiting = sv_waiting,
        .requests = sv_requests,
        .in_bulk = sv_in_bulk,
        .timeout = sv_timeout,
        .shutdown = sv_shutdown,
        .tls_done = sv_tls_done,
        .close = sv_close,
};

/* ---- the server ---- */

static void limits_of(const struct conf *c, struct net_limits *out)
{
	out->max_connections = c->smtp_max_connections;
	out->max_connections_per_ip = c->smtp_max_connections_per_ip;
	out->greet_pause_ms = c->smtp_greet_pause_ms;
	out->command_timeout = c->smtp_command_timeout;
	out->bulk_timeout = c->smtp_data_timeout;
	out->handshake_timeout = c->smtp_command_timeout;
}

struct smtpd_server *smtpd_server_new(const struct conf *c, struct event_base *base,
                                      struct queue *q, struct mailbox_index *idx, struct verify *v,
                                      char *err, size_t errlen)
{
	struct net_limits lim;
	struct smtpd_server *s = calloc(1, sizeof *s);
	limits_of(c, &lim);
	if (s)
		s->net = net_server_new(base, "smtp", &lim, &session_vtable, s,
		                        "421 4.7.0 too many connections\r\n");
	if (!s || !s->net) {
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
	if (!(s->auth = screen_auth_new(base, on_auth_done))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* Every error names the config line: "FILE:LINE: smtp_listen HOST:PORT: reason". */
	if (net_server_listen_list(s->net, c, &c->smtp_listen, SMTP_PORT_SMTP, NET_TLS_NONE, "smtp",
	                           err, errlen) != 0 ||
	    net_server_listen_list(s->net, c, &c->submission_listen, SMTP_PORT_SUBMISSION,
	                           NET_TLS_NONE, "submission", err, errlen) != 0 ||
	    net_server_listen_list(s->net, c, &c->smtps_listen, SMTP_PORT_SMTPS, NET_TLS_IMPLICIT,
	                           "smtps", err, errlen) != 0)
		goto fail;
	if (net_server_load_tls(s->net, c->tls_cert_file, c->tls_key_file, err, errlen) != 0)
		goto fail;
	if (c->smtp_rejected_recipients_log && *c->smtp_rejected_recipients_log)
		rej_open(s); /* early, so a bad path shows in the log at start-up */
	return s;
fail:
	smtpd_server_free(s);
	return NULL;
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
	screen_auth_set(s->auth, pc, sc);
}

void smtpd_server_set_pop_logins(struct smtpd_server *s, struct pop_login *t)
{
	s->pop_logins = t;
}

void smtpd_server_drain(struct smtpd_server *s, void (*done)(void *arg), void *arg)
{
	net_server_drain(s->net, done, arg);
}

size_t smtpd_server_connections(const struct smtpd_server *s)
{
	return s ? net_server_connections(s->net) : 0;
}

/* ---- reload (SIGHUP) ---- */

void smtpd_server_reload(struct smtpd_server *s, const struct conf *c)
{
	struct net_limits lim;
	s->conf = c;
	char err[768];
	limits_of(c, &lim);
	net_server_set_limits(s->net, &lim);
	/* The certificate and key are read again: new handshakes use them, open sessions keep theirs. */
	if (net_server_load_tls(s->net, c->tls_cert_file, c->tls_key_file, err, sizeof err) != 0)
		log_err("SIGHUP: %s; TLS keeps the certificate it had", err);
	else if (c->tls_cert_file && *c->tls_cert_file)
		log_info("tls: certificate %s loaded", c->tls_cert_file);
	/* Opened again on the next refused recipient: a new path, or a rotated file. */
	if (s->rej_fd >= 0)
		close(s->rej_fd);
	s->rej_fd = -1;
}

static int conn_uses(void *sess, void *arg)
{
	const struct conn *c = sess;
	return c->cf == arg;
}

int smtpd_server_conf_in_use(const struct smtpd_server *s, const struct conf *c)
{
	if (!s)
		return 0;
	if (s->conf == c)
		return 1;
	return net_server_each(s->net, conn_uses, (void *)c);
}

/* Connections already dead lose their server now (net_server_free() closes the others). */
static int conn_orphan(void *sess, void *arg)
{
	struct conn *c = sess;
	if (c->dead)
		c->srv = NULL;
	return 0;
}

void smtpd_server_free(struct smtpd_server *s)
{
	if (!s)
		return;
	s->freeing = 1;
	net_server_each(s->net, conn_orphan, NULL);
	net_server_free(s->net);
	screen_auth_free(s->auth);
	if (s->rej_fd >= 0)
		close(s->rej_fd);
	free(s);
}
