/*
 * pop3d_server: the POP3 service on net_server (see pop3d_server.h).
 */
#include "pop3d/pop3d_server.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
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
#include "screen/screen_auth.h"
#include "store/mailbox.h"
#include "store/maildir.h"
#include "util/log.h"
#include "util/timeutil.h"

#define ROOT_MAX 4096

struct pconn;
struct mjob;

/* An account whose maildrop a session has open (the [IN-USE] lock). */
struct lock {
	struct lock *next;
	char key[POP_LOGIN_KEY_MAX + 1];
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
	struct pop3d_work *work; /* listings and UPDATEs (started at attach) */
	struct screen *screen;
	struct pop_login *logins;
	struct lock *locks;
	struct screen_auth
	        *auth; /* the password checks under way, failures waiting out their delay */
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

/* The session's auth_check op: the check goes to the pool (screen_auth.h). */
static int op_auth_check(void *arg, uint64_t id, const char *identity, const char *password,
                         size_t len)
{
	struct pconn *c = arg;
	if (!c->srv)
		return -1;
	return screen_auth_submit(c->srv->auth, c, (const struct sockaddr *)&c->peer, id, identity,
	                          password, len);
}

/* A check's answer (after a failure's delay): a login counts for POP before SMTP. */
static void on_auth_done(void *conn, uint64_t id, enum password_check_status status,
                         const struct password_check_result *r, int screened)
{
	struct pconn *c = conn;
	if (status == PASSWORD_CHECK_OK) {
		if (c->srv->logins)
			pop_login_note(c->srv->logins, r->account, time_wall_s());
		pop3_session_auth_done(c->sess, id, POP3_AUTH_OK, r->account);
	} else if (status == PASSWORD_CHECK_FAIL) {
		pop3_session_auth_done(c->sess, id, POP3_AUTH_FAIL, NULL);
		if (screened)
			pop3_session_screened(c->sess);
	} else {
		pop3_session_auth_done(c->sess, id, POP3_AUTH_TEMPFAIL, NULL);
	}
	net_conn_pump(c->nc);
}

/* At accept: a screened address gets the -ERR and is closed (as SMTP's 421 4.7.0). */
static const char *sv_admit(void *svc, const struct sockaddr *sa)
{
	struct pop3d_server *s = svc;
	return screen_admit(s->screen, sa, time_wall_s())
	               ? "-ERR [SYS/TEMP] access denied by the Dynamic Screen\r\n"
	               : NULL;
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
	screen_auth_cancel(c->srv ? c->srv->auth : NULL, c, 0);
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
	if (!(s->auth = screen_auth_new(base, on_auth_done))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (conf_state_path(c, "mail", s->root, sizeof s->root) != 0) {
		snprintf(err, errlen, "state_dir too long");
		goto fail;
	}
	/* The same certificate as SMTP's (tls_cert_file, tls_key_file); none: no STLS, no 995. */
	if (net_server_listen_list(s->net, c, &c->pop3_listen, 0, NET_TLS_NONE, "pop3", err,
	                           errlen) != 0 ||
	    net_server_listen_list(s->net, c, &c->pop3s_listen, 0, NET_TLS_IMPLICIT, "pop3s", err,
	                           errlen) != 0 ||
	    net_server_load_tls(s->net, c->tls_cert_file, c->tls_key_file, err, errlen) != 0)
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
	s->screen = sc;
	screen_auth_set(s->auth, pc, sc);
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
	if (net_server_load_tls(s->net, c->tls_cert_file, c->tls_key_file, err, sizeof err) != 0)
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
	screen_auth_free(s->auth);
	while (s->locks) {
		struct lock *l = s->locks;
		s->locks = l->next;
		free(l);
	}
	free(s);
}
