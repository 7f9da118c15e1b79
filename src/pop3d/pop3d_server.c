/*
 * pop3d_server: the POP3 service on net_server (see pop3d_server.h).
 */
#include "pop3d/pop3d_server.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "directory/password_check.h"
#include "directory/pop_login.h"
#include "net/net_server.h"
#include "pop3d/pop3_session.h"
#include "pop3d/pop3d_work.h"
#include "screen/screen.h"
#include "store/mailbox.h"
#include "store/maildir.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/tls_ctx.h"

#define ROOT_MAX 4096

struct pconn;
struct mjob;

/* An account whose maildrop a session has open (the [IN-USE] lock). */
struct lock {
	struct lock *next;
	char key[POP_LOGIN_KEY_MAX + 1];
};

/*
 * One password check, by a server-wide id: the pool has no cancel, so a check
 * whose connection went stays, orphaned (c NULL), until its result comes. A
 * failure waits on `delay` (the Dynamic Screen's growing delay) before its -ERR.
 */
struct auth_req {
	struct auth_req *prev, *next;
	struct pop3d_server *srv;
	struct pconn *c; /* NULL: orphaned */
	uint64_t id; /* the session's */
	uint64_t gid; /* the pool's */
	struct event *delay;
	int screened;
};

/* One connection's POP3 side (net_server's `sess`). */
struct pconn {
	struct pop3d_server *srv;
	struct net_conn *nc;
	const struct conf *cf;
	struct pop3_session *sess;
	struct pop3_session_ops ops;
	struct sockaddr_storage peer;
	uint64_t tls_id;
	/* the maildrop */
	char account[POP_LOGIN_KEY_MAX + 1];
	int locked;
	struct mailbox *mb;
	struct mailbox_reader *rd;
	struct mjob *job; /* the listing or UPDATE under way, or NULL */
};

struct pop3d_server {
	const struct conf *conf;
	struct event_base *base;
	struct net_server *net;
	struct password_check *pc;
	struct pop3d_work *work; /* listings and UPDATEs (started at attach) */
	struct screen *screen;
	struct pop_login *logins;
	struct lock *locks;
	struct auth_req *auths;
	uint64_t next_gid;
	char root[ROOT_MAX]; /* <state_dir>/mail */
};

/* ---- the [IN-USE] locks ---- */

static struct lock **lock_find(struct pop3d_server *s, const char *key)
{
	struct lock **p = &s->locks;
	while (*p && strcmp((*p)->key, key) != 0)
		p = &(*p)->next;
	return p;
}

/* Returns 0 with the lock taken, 1 when another session holds it, -1 out of memory. */
static int lock_take(struct pop3d_server *s, const char *key)
{
	if (*lock_find(s, key))
		return 1;
	struct lock *l = calloc(1, sizeof *l);
	if (!l)
		return -1;
	snprintf(l->key, sizeof l->key, "%s", key);
	l->next = s->locks;
	s->locks = l;
	return 0;
}

static void lock_drop(struct pop3d_server *s, const char *key)
{
	struct lock **p = lock_find(s, key);
	if (*p) {
		struct lock *l = *p;
		*p = l->next;
		free(l);
	}
}

/* ---- the maildrop ops: listing and UPDATE on the worker (pop3d_work.h) ---- */

/*
 * One listing or UPDATE under way. The job owns the maildrop's lock and its
 * struct mailbox while it runs, so a connection that goes meanwhile cannot free
 * them under the worker, nor let another session in before the removals are
 * done; c is NULL once the connection went (the done then only cleans up).
 */
struct mjob {
	struct pop3d_server *srv;
	struct pconn *c;
	enum pop3_request_kind kind; /* POP3_REQUEST_OPEN or _COMMIT */
	uint64_t id;
	char account[POP_LOGIN_KEY_MAX + 1];
	char dir[MAILDIR_PATH_MAX];
	int locked; /* the job holds the account's lock */
	int in_use; /* OPEN: another session holds it (nothing to run) */
	int rc, err; /* OPEN: mailbox_open's result and errno */
	struct mailbox *mb;
	size_t *idx, n; /* COMMIT: the messages to remove */
	size_t failed; /* COMMIT: not removed */
};

static void maildrop_close(struct pconn *c)
{
	mailbox_reader_free(c->rd);
	c->rd = NULL;
	mailbox_free(c->mb);
	c->mb = NULL;
	if (c->locked && c->srv)
		lock_drop(c->srv, c->account);
	c->locked = 0;
}

static void mjob_free(struct mjob *j)
{
	if (j->locked)
		lock_drop(j->srv, j->account);
	mailbox_free(j->mb);
	free(j->idx);
	free(j);
}

/* On the worker: the disk work. */
static void mjob_run(void *arg)
{
	struct mjob *j = arg;
	if (j->kind == POP3_REQUEST_OPEN) {
		if (!j->in_use) {
			j->rc = mailbox_open(j->dir, &j->mb);
			j->err = errno;
		}
		return;
	}
	mailbox_reset(j->mb);
	for (size_t i = 0; i < j->n; i++)
		mailbox_mark_deleted(j->mb, j->idx[i]);
	j->failed = mailbox_commit(j->mb);
}

/* The listing, for the session (copied by it). */
static void open_deliver(struct pconn *c, struct mjob *j)
{
	if (j->in_use) {
		pop3_session_open_done(c->sess, j->id, POP3_OPEN_IN_USE, NULL, 0);
		return;
	}
	size_t n = j->rc == 0 ? mailbox_count(j->mb) : 0;
	struct pop3_msginfo *v = j->rc == 0 ? calloc(n ? n : 1, sizeof *v) : NULL;
	if (!v) {
		if (j->rc != 0)
			log_err("pop3: %s: cannot list %s: %s", j->account, j->dir,
			        strerror(j->err));
		pop3_session_open_done(c->sess, j->id, POP3_OPEN_TEMPFAIL, NULL, 0);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct mailbox_msg *m = mailbox_get(j->mb, i);
		v[i].size = m->wire_size;
		snprintf(v[i].uid, sizeof v[i].uid, "%s", m->uid);
	}
	/* The connection takes the lock and the listing over from the job. */
	c->mb = j->mb;
	c->locked = 1;
	j->mb = NULL;
	j->locked = 0;
	pop3_session_open_done(c->sess, j->id, POP3_OPEN_OK, v, n);
	free(v);
}

/* On the loop: the answer, or only the clean-up when the connection went. */
static void mjob_done(void *arg)
{
	struct mjob *j = arg;
	struct pconn *c = j->c;
	if (c) {
		c->job = NULL;
		if (j->kind == POP3_REQUEST_OPEN) {
			open_deliver(c, j);
		} else {
			if (j->failed)
				log_err("pop3: %s: %zu of %zu messages could not be removed",
				        j->account, j->failed, j->n);
			pop3_session_commit_done(c->sess, j->id, j->failed == 0);
		}
	}
	mjob_free(j);
	if (c)
		net_conn_pump(c->nc);
}

static struct mjob *mjob_new(struct pconn *c, enum pop3_request_kind kind, uint64_t id)
{
	struct mjob *j = c->srv && c->srv->work && !c->job ? calloc(1, sizeof *j) : NULL;
	if (!j)
		return NULL;
	j->srv = c->srv;
	j->c = c;
	j->kind = kind;
	j->id = id;
	return j;
}

static int mjob_post(struct pconn *c, struct mjob *j)
{
	if (pop3d_work_post(c->srv->work, mjob_run, mjob_done, j) != 0) {
		mjob_free(j);
		return -1;
	}
	c->job = j;
	return 0;
}

/* The lock is taken here, on the loop, so two logins cannot both get it. */
static int op_maildrop_open(void *arg, uint64_t id, const char *account)
{
	struct pconn *c = arg;
	struct mjob *j = mjob_new(c, POP3_REQUEST_OPEN, id);
	if (!j)
		return -1;
	snprintf(j->account, sizeof j->account, "%s", account);
	snprintf(c->account, sizeof c->account, "%s", account);
	if (strlen(account) > POP_LOGIN_KEY_MAX ||
	    maildir_path(j->srv->root, account, j->dir, sizeof j->dir) != 0) {
		mjob_free(j);
		return -1;
	}
	int l = lock_take(j->srv, account);
	if (l < 0) {
		mjob_free(j);
		return -1;
	}
	j->in_use = l == 1;
	j->locked = l == 0;
	return mjob_post(c, j);
}

/* UPDATE: the job takes the listing and the lock (a drop meanwhile frees neither). */
static int op_maildrop_commit(void *arg, uint64_t id, const size_t *index, size_t n)
{
	struct pconn *c = arg;
	struct mjob *j = c->mb ? mjob_new(c, POP3_REQUEST_COMMIT, id) : NULL;
	if (!j || !(j->idx = malloc((n ? n : 1) * sizeof *index))) {
		free(j);
		return -1;
	}
	memcpy(j->idx, index, n * sizeof *index);
	j->n = n;
	snprintf(j->account, sizeof j->account, "%s", c->account);
	mailbox_reader_free(c->rd);
	c->rd = NULL;
	j->mb = c->mb;
	j->locked = c->locked;
	c->mb = NULL;
	c->locked = 0;
	return mjob_post(c, j);
}

static void op_maildrop_release(void *arg)
{
	maildrop_close(arg);
}

static int op_msg_open(void *arg, size_t index)
{
	struct pconn *c = arg;
	if (!c->mb || c->rd)
		return -1;
	/* The session applies TOP's limit itself: the reader gives the whole message. */
	if (mailbox_reader_open(c->mb, index, &c->rd) != 0) {
		log_warning("pop3: %s: message %zu cannot be read: %s", c->account, index + 1,
		            strerror(errno));
		c->rd = NULL;
		return -1;
	}
	return 0;
}

static ssize_t op_msg_read(void *arg, char *buf, size_t len)
{
	struct pconn *c = arg;
	return c->rd ? mailbox_reader_read(c->rd, buf, len) : -1;
}

static void op_msg_close(void *arg)
{
	struct pconn *c = arg;
	mailbox_reader_free(c->rd);
	c->rd = NULL;
}

static int op_tls_start(void *arg, uint64_t id)
{
	struct pconn *c = arg;
	if (!c->nc || net_conn_starttls(c->nc) != 0)
		return 0;
	c->tls_id = id;
	return 1;
}

static void op_log_line(void *arg, const char *line)
{
	log_info("%s", line);
}

/* ---- password checks, the Dynamic Screen and POP before SMTP ---- */

static void auth_req_free(struct auth_req *a)
{
	struct pop3d_server *s = a->srv;
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

/* c goes: a delayed failure goes with it, a check the pool still owes is orphaned. */
static void auth_cancel(struct pconn *c)
{
	struct auth_req *next;
	for (struct auth_req *a = c->srv ? c->srv->auths : NULL; a; a = next) {
		next = a->next;
		if (a->c != c)
			continue;
		if (a->delay)
			auth_req_free(a);
		else
			a->c = NULL;
	}
}

static void on_password(void *arg, const struct password_check_result *r);

static int op_auth_check(void *arg, uint64_t id, const char *identity, const char *password,
                         size_t len)
{
	struct pconn *c = arg;
	struct pop3d_server *s = c->srv;
	struct auth_req *a = s && s->pc ? calloc(1, sizeof *a) : NULL;
	if (!a)
		return -1;
	a->srv = s;
	a->c = c;
	a->id = id;
	a->gid = ++s->next_gid;
	/* Invalid credentials cost the same hash as an unknown user (password_check.h). */
	if (password_check_submit_to(s->pc, a->gid, identity ? identity : "",
	                             password ? password : "", identity ? len : 0, on_password,
	                             s) != 0) {
		free(a);
		return -1;
	}
	a->next = s->auths;
	if (s->auths)
		s->auths->prev = a;
	s->auths = a;
	return 0;
}

static void auth_fail_deliver(struct auth_req *a)
{
	struct pconn *c = a->c;
	uint64_t id = a->id;
	int screened = a->screened;
	auth_req_free(a);
	if (!c)
		return;
	pop3_session_auth_done(c->sess, id, POP3_AUTH_FAIL, NULL);
	if (screened)
		pop3_session_screened(c->sess);
	net_conn_pump(c->nc);
}

static void on_auth_delay(evutil_socket_t fd, short what, void *arg)
{
	auth_fail_deliver(arg);
}

/* A failure counts for screen_auth_failures and waits its growing delay (as SMTP's). */
static void auth_failed(struct auth_req *a)
{
	struct pop3d_server *s = a->srv;
	unsigned ms = 0;
	if (s->screen) {
		int n = screen_note(s->screen, (const struct sockaddr *)&a->c->peer,
		                    SCREEN_EVENT_AUTH_FAILURE, time_wall_s(), &a->screened);
		ms = screen_auth_delay_ms(n);
	}
	if (ms > 0 && (a->delay = evtimer_new(s->base, on_auth_delay, a)) != NULL) {
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		evtimer_add(a->delay, &tv);
		return;
	}
	auth_fail_deliver(a);
}

/* The pool's answer, on the loop (password_check_submit_to's callback). */
static void on_password(void *arg, const struct password_check_result *r)
{
	struct pop3d_server *s = arg;
	struct auth_req *a = s->auths;
	while (a && a->gid != r->id)
		a = a->next;
	if (!a)
		return;
	if (!a->c) {
		auth_req_free(a);
		return;
	}
	if (r->status == PASSWORD_CHECK_FAIL) {
		auth_failed(a);
		return;
	}
	struct pconn *c = a->c;
	uint64_t id = a->id;
	auth_req_free(a);
	if (r->status == PASSWORD_CHECK_OK) {
		if (s->screen)
			screen_forget(s->screen, (const struct sockaddr *)&c->peer,
			              SCREEN_EVENT_AUTH_FAILURE);
		if (s->logins)
			pop_login_note(s->logins, r->account, time_wall_s());
		pop3_session_auth_done(c->sess, id, POP3_AUTH_OK, r->account);
	} else {
		pop3_session_auth_done(c->sess, id, POP3_AUTH_TEMPFAIL, NULL);
	}
	net_conn_pump(c->nc);
}

static void auths_free(struct pop3d_server *s)
{
	while (s->auths) {
		s->auths->srv = s;
		auth_req_free(s->auths);
	}
}

/* At accept: a screened address gets the -ERR and is closed (as SMTP's 421 4.7.0). */
static const char *sv_admit(void *svc, const struct sockaddr *sa)
{
	struct pop3d_server *s = svc;
	int64_t now = time_wall_s();
	int screened = 0;
	if (s->screen == NULL)
		return NULL;
	if (!screen_is_blocked(s->screen, sa, now)) {
		screen_note(s->screen, sa, SCREEN_EVENT_CONNECTION, now, &screened);
		if (!screened)
			return NULL;
	}
	return "-ERR [SYS/TEMP] access denied by the Dynamic Screen\r\n";
}

/* ---- the session vtable ---- */

static void *sv_open(void *svc, struct net_conn *nc, int tag, const struct sockaddr *peer,
                     const char *peer_text)
{
	struct pop3d_server *s = svc;
	struct pconn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->srv = s;
	c->nc = nc;
	c->cf = s->conf;
	if (peer->sa_family == AF_INET6)
		memcpy(&c->peer, peer, sizeof(struct sockaddr_in6));
	else if (peer->sa_family == AF_INET)
		memcpy(&c->peer, peer, sizeof(struct sockaddr_in));
	c->ops = (struct pop3_session_ops){.arg = c,
	                                   .auth_check = op_auth_check,
	                                   .maildrop_open = op_maildrop_open,
	                                   .msg_open = op_msg_open,
	                                   .msg_read = op_msg_read,
	                                   .msg_close = op_msg_close,
	                                   .maildrop_commit = op_maildrop_commit,
	                                   .maildrop_release = op_maildrop_release,
	                                   .log_line = op_log_line};
	if (net_server_tls_available(s->net))
		c->ops.tls_start = op_tls_start;
	c->sess = pop3_session_new(c->cf, &c->ops, peer_text);
	if (!c->sess) {
		free(c);
		return NULL;
	}
	return c;
}

static void sv_greet(void *sess, int early_talker)
{
	struct pconn *c = sess;
	const char *version, *cipher;
	if (net_conn_tls_info(c->nc, &version, &cipher)) /* pop3s_listen: TLS came first */
		pop3_session_tls_implicit(c->sess);
	pop3_session_greet(c->sess, early_talker);
}

static size_t sv_input(void *sess, const char *data, size_t len)
{
	struct pconn *c = sess;
	return pop3_session_input(c->sess, data, len);
}

static const char *sv_output(void *sess, size_t *len)
{
	struct pconn *c = sess;
	return pop3_session_output(c->sess, len);
}

static void sv_output_done(void *sess, size_t n)
{
	struct pconn *c = sess;
	pop3_session_output_done(c->sess, n);
}

static int sv_ended(void *sess)
{
	struct pconn *c = sess;
	return pop3_session_ended(c->sess);
}

static int sv_waiting(void *sess)
{
	struct pconn *c = sess;
	return pop3_session_waiting(c->sess);
}

static size_t sv_requests(void *sess)
{
	struct pconn *c = sess;
	return pop3_session_requests(c->sess);
}

static int sv_in_bulk(void *sess)
{
	return 0;
}

static void sv_timeout(void *sess)
{
	struct pconn *c = sess;
	pop3_session_timeout(c->sess);
}

static void sv_shutdown(void *sess)
{
	struct pconn *c = sess;
	pop3_session_shutdown(c->sess);
}

static void sv_tls_done(void *sess, int ok)
{
	struct pconn *c = sess;
	uint64_t id = c->tls_id;
	c->tls_id = 0;
	pop3_session_tls_done(c->sess, id, ok);
}

/* The transport is gone: nothing is removed (a commit only ever runs after QUIT). */
static int sv_close(void *sess)
{
	struct pconn *c = sess;
	auth_cancel(c);
	if (c->job)
		c->job->c = NULL; /* its done only cleans up */
	pop3_session_free(c->sess); /* releases the maildrop through its op */
	maildrop_close(c);
	free(c);
	return 0;
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
	out->max_connections = c->pop3_max_connections;
	out->max_connections_per_ip = c->pop3_max_connections_per_ip;
	out->greet_pause_ms = 0;
	out->command_timeout = c->pop3_command_timeout;
	out->bulk_timeout = c->pop3_command_timeout;
	out->handshake_timeout = POP3D_HANDSHAKE_TIMEOUT;
}

static int listen_all(struct pop3d_server *s, const struct addrlist *l, enum net_tls_mode tls,
                      const char *label, char *err, size_t errlen)
{
	for (size_t i = 0; i < l->n; i++) {
		char where[512];
		conf_addr_where(s->conf, l, i, where, sizeof where);
		if (net_server_listen(s->net, (const struct sockaddr *)&l->v[i].ss, l->v[i].len, 0,
		                      tls, label, where, err, errlen) != 0)
			return -1;
	}
	return 0;
}

/* The same certificate as SMTP's (tls_cert_file, tls_key_file); none: no STLS, no 995. */
static int tls_load(struct pop3d_server *s, const struct conf *c, char *err, size_t errlen)
{
	if (!c->tls_cert_file || !*c->tls_cert_file) {
		net_server_set_tls(s->net, NULL);
		return 0;
	}
	SSL_CTX *ctx = tls_ctx_server_new(c->tls_cert_file, c->tls_key_file, NULL, err, errlen);
	if (!ctx)
		return -1;
	net_server_set_tls(s->net, ctx);
	SSL_CTX_free(ctx);
	return 0;
}

struct pop3d_server *pop3d_server_new(const struct conf *c, struct event_base *base, char *err,
                                      size_t errlen)
{
	struct net_limits lim;
	struct pop3d_server *s = calloc(1, sizeof *s);
	limits_of(c, &lim);
	if (s)
		s->net = net_server_new(base, "pop3", &lim, &session_vtable, s,
		                        "-ERR [SYS/TEMP] too many connections\r\n");
	if (!s || !s->net) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->conf = c;
	s->base = base;
	if (conf_state_path(c, "mail", s->root, sizeof s->root) != 0) {
		snprintf(err, errlen, "state_dir too long");
		goto fail;
	}
	if (listen_all(s, &c->pop3_listen, NET_TLS_NONE, "pop3", err, errlen) != 0 ||
	    listen_all(s, &c->pop3s_listen, NET_TLS_IMPLICIT, "pop3s", err, errlen) != 0 ||
	    tls_load(s, c, err, errlen) != 0)
		goto fail;
	return s;
fail:
	pop3d_server_free(s);
	return NULL;
}

int pop3d_server_attach(struct pop3d_server *s, struct password_check *pc, struct screen *sc,
                        struct pop_login *pl, char *err, size_t errlen)
{
	if (!s->work && !(s->work = pop3d_work_new(s->base, err, errlen)))
		return -1;
	s->pc = pc;
	s->screen = sc;
	s->logins = pl;
	return 0;
}

void pop3d_server_reload(struct pop3d_server *s, const struct conf *c)
{
	struct net_limits lim;
	char err[768];
	s->conf = c;
	limits_of(c, &lim);
	net_server_set_limits(s->net, &lim);
	if (tls_load(s, c, err, sizeof err) != 0)
		log_err("SIGHUP: pop3: %s; TLS keeps the certificate it had", err);
}

static int conn_uses(void *sess, void *arg)
{
	const struct pconn *c = sess;
	return c->cf == arg;
}

int pop3d_server_conf_in_use(const struct pop3d_server *s, const struct conf *c)
{
	if (!s)
		return 0;
	return s->conf == c || net_server_each(s->net, conn_uses, (void *)c);
}

void pop3d_server_drain(struct pop3d_server *s, void (*done)(void *arg), void *arg)
{
	net_server_drain(s->net, done, arg);
}

size_t pop3d_server_connections(const struct pop3d_server *s)
{
	return s ? net_server_connections(s->net) : 0;
}

void pop3d_server_free(struct pop3d_server *s)
{
	if (!s)
		return;
	net_server_free(s->net); /* every job is orphaned now */
	pop3d_work_free(s->work); /* their dones clean up (the locks they held) */
	auths_free(s);
	while (s->locks) {
		struct lock *l = s->locks;
		s->locks = l->next;
		free(l);
	}
	free(s);
}
