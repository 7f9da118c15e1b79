/*
 * test_smtp_transport: the SMTP transport over real sockets. Each test runs an
 * event loop with scripted fake SMTP peers listening on 127.0.0.1 (ephemeral
 * ports, same process) and, when it is installed, a real Postfix smtp-sink.
 * Every loop is bounded by a guard timer; where a test waits for a client
 * deadline, that deadline is 1 s (the others stay longer, so a loaded machine
 * does not fail a test at the wrong step). No sleeps.
 *
 * A peer serves its connections in order with one script each (the last one
 * for any further connection). Script steps:
 *   SEND(text)      write text (one write)
 *   EXPECT(line)    read one CRLF line; it must equal line (or start with it
 *                   when line ends in '*'); the first mismatch is recorded
 *   DATA            read a message up to the "." line, kept as sent (stuffed)
 *   STARTTLS(text)  write text (one write: a 220, maybe followed by injected
 *                   plaintext), then start TLS as the server (bufferevent_openssl)
 *   ENDLESS         write 'x' without end (64 KiB per write, 8 MiB at most)
 *   SILENT          read and record, answer nothing more
 *   CLOSE           close once the output is out
 *   END             the script is over: read and record until the client closes
 * Everything the peer receives is recorded (decrypted after STARTTLS) so tests
 * check that only CRLF line ends were sent.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deliver/smtp_transport.h"
#include "harness.h"
#include "util/log.h"

#define PEER_CONNS 8
#define PEER_DATAS 4
#define ENDLESS_CHUNK (64 * 1024)
#define ENDLESS_MAX (8 * 1024 * 1024)
#define MAX_DONE 4
#define MAX_RCPTS 8
#define SMTP_SINK "/usr/sbin/smtp-sink"

/* ---- the scripted peer ---- */

enum step_kind { P_END = 0, P_SEND, P_EXPECT, P_DATA, P_STARTTLS, P_ENDLESS, P_SILENT, P_CLOSE };

struct step {
	enum step_kind kind;
	const char *text;
};

#define SEND(s)                                                                                    \
	{                                                                                          \
		P_SEND, (s)                                                                        \
	}
#define EXPECT(s)                                                                                  \
	{                                                                                          \
		P_EXPECT, (s)                                                                      \
	}
#define STARTTLS(s)                                                                                \
	{                                                                                          \
		P_STARTTLS, (s)                                                                    \
	}
#define DATA                                                                                       \
	{                                                                                          \
		P_DATA, NULL                                                                       \
	}
#define ENDLESS                                                                                    \
	{                                                                                          \
		P_ENDLESS, NULL                                                                    \
	}
#define SILENT                                                                                     \
	{                                                                                          \
		P_SILENT, NULL                                                                     \
	}
#define CLOSE                                                                                      \
	{                                                                                          \
		P_CLOSE, NULL                                                                      \
	}
#define END                                                                                        \
	{                                                                                          \
		P_END, NULL                                                                        \
	}

struct peer;

struct pconn {
	struct peer *p;
	struct bufferevent *bev; /* NULL once closed */
	struct event *close_timer;
	const struct step *script;
	size_t step;
	struct evbuffer *pending; /* received, not yet used by a step */
	struct evbuffer *raw; /* everything received */
	struct evbuffer *data[PEER_DATAS];
	int n_data;
	int closing, closed, client_closed, tls, endless;
	size_t endless_sent;
	char mismatch[600];
};

struct peer {
	struct event_base *base;
	struct evconnlistener *l;
	int port;
	const struct step *const *scripts;
	size_t n_scripts;
	int accepted;
	struct pconn *conns[PEER_CONNS];
	SSL_CTX *ctx;
	char sni[256];
	struct evbuffer *empty; /* stands in for a connection that never came */
};

static void pconn_run(struct pconn *pc);

static void pconn_free_bev(struct pconn *pc)
{
	if (pc->bev)
		bufferevent_free(pc->bev);
	pc->bev = NULL;
	pc->closed = 1;
	if (pc->close_timer)
		evtimer_del(pc->close_timer);
}

static size_t pconn_out_len(struct pconn *pc)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(pc->bev));
	struct bufferevent *u = bufferevent_get_underlying(pc->bev);
	if (u)
		n += evbuffer_get_length(bufferevent_get_output(u));
	return n;
}

/* CLOSE waits until what we wrote (through TLS too) has left. */
static void on_pclose_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pconn *pc = arg;
	if (pc->bev == NULL)
		return;
	if (pconn_out_len(pc) == 0) {
		pconn_free_bev(pc);
		return;
	}
	struct timeval tv = {0, 5000};
	evtimer_add(pc->close_timer, &tv);
}

static void peer_write_endless(struct pconn *pc)
{
	static char x[ENDLESS_CHUNK];
	if (x[0] != 'x')
		memset(x, 'x', sizeof x);
	if (pc->bev && pc->endless_sent < ENDLESS_MAX &&
	    evbuffer_get_length(bufferevent_get_output(pc->bev)) == 0) {
		bufferevent_write(pc->bev, x, sizeof x);
		pc->endless_sent += sizeof x;
	}
}

static void pread_cb(struct bufferevent *bev, void *arg)
{
	struct pconn *pc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = evbuffer_get_length(in);
	unsigned char *p = evbuffer_pullup(in, (ssize_t)n);
	evbuffer_add(pc->raw, p, n);
	evbuffer_add(pc->pending, p, n);
	evbuffer_drain(in, n);
	pconn_run(pc);
}

static void pwrite_cb(struct bufferevent *bev, void *arg)
{
	struct pconn *pc = arg;
	if (pc->endless)
		peer_write_endless(pc);
}

static void pevent_cb(struct bufferevent *bev, short what, void *arg)
{
	struct pconn *pc = arg;
	if (what & BEV_EVENT_CONNECTED) { /* the TLS handshake is done */
		pc->tls = 1;
		pconn_run(pc);
		return;
	}
	pc->client_closed = 1;
	pconn_free_bev(pc);
}

static int servername_cb(SSL *ssl, int *al, void *arg)
{
	struct peer *p = arg;
	const char *n = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	snprintf(p->sni, sizeof p->sni, "%s", n ? n : "");
	return SSL_TLSEXT_ERR_OK;
}

static void peer_start_tls(struct pconn *pc)
{
	SSL *ssl = SSL_new(pc->p->ctx);
	struct bufferevent *f =
	        bufferevent_openssl_filter_new(pc->p->base, pc->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (f == NULL) {
		snprintf(pc->mismatch, sizeof pc->mismatch, "peer: no TLS filter");
		return;
	}
	evbuffer_drain(pc->pending, evbuffer_get_length(pc->pending));
	pc->bev = f;
	bufferevent_setcb(f, pread_cb, pwrite_cb, pevent_cb, pc);
	bufferevent_enable(f, EV_READ | EV_WRITE);
}

static void expect_line(struct pconn *pc, const char *want, const char *line)
{
	size_t n = strlen(want);
	int ok = (n > 0 && want[n - 1] == '*') ? strncmp(line, want, n - 1) == 0
	                                       : strcmp(line, want) == 0;
	if (!ok && !pc->mismatch[0])
		snprintf(pc->mismatch, sizeof pc->mismatch, "step %zu: want \"%s\", got \"%.300s\"",
		         pc->step, want, line);
}

/* 1 when the step is done, 0 when it waits for more input. */
static int pconn_step(struct pconn *pc, const struct step *s)
{
	size_t n;
	char *line;
	switch (s->kind) {
	case P_END:
	case P_SILENT: return 0;
	case P_SEND: bufferevent_write(pc->bev, s->text, strlen(s->text)); return 1;
	case P_EXPECT:
		if ((line = evbuffer_readln(pc->pending, &n, EVBUFFER_EOL_CRLF_STRICT)) == NULL)
			return 0;
		expect_line(pc, s->text, line);
		free(line);
		return 1;
	case P_DATA:
		while ((line = evbuffer_readln(pc->pending, &n, EVBUFFER_EOL_CRLF_STRICT)) !=
		       NULL) {
			int end = strcmp(line, ".") == 0;
			if (!end && pc->n_data < PEER_DATAS) {
				evbuffer_add(pc->data[pc->n_data], line, n);
				evbuffer_add(pc->data[pc->n_data], "\r\n", 2);
			}
			free(line);
			if (end) {
				pc->n_data++;
				return 1;
			}
		}
		return 0;
	case P_STARTTLS:
		bufferevent_write(pc->bev, s->text, strlen(s->text));
		peer_start_tls(pc);
		return 1;
	case P_ENDLESS:
		pc->endless = 1;
		peer_write_endless(pc);
		return 0;
	case P_CLOSE:
		pc->closing = 1;
		on_pclose_timer(-1, 0, pc);
		return 0;
	}
	return 0;
}

static void pconn_run(struct pconn *pc)
{
	while (pc->bev && !pc->closing && pconn_step(pc, &pc->script[pc->step]))
		pc->step++;
}

static void on_paccept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                       void *arg)
{
	struct peer *p = arg;
	if (p->accepted >= PEER_CONNS) {
		close(fd);
		return;
	}
	struct pconn *pc = calloc(1, sizeof *pc);
	size_t i = (size_t)p->accepted < p->n_scripts ? (size_t)p->accepted : p->n_scripts - 1;
	pc->p = p;
	pc->script = p->scripts[i];
	pc->pending = evbuffer_new();
	pc->raw = evbuffer_new();
	for (int k = 0; k < PEER_DATAS; k++)
		pc->data[k] = evbuffer_new();
	pc->close_timer = evtimer_new(p->base, on_pclose_timer, pc);
	pc->bev = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(pc->bev, pread_cb, pwrite_cb, pevent_cb, pc);
	bufferevent_enable(pc->bev, EV_READ | EV_WRITE);
	p->conns[p->accepted++] = pc;
	pconn_run(pc);
}

/* A throwaway self-signed EC P-256 certificate for the peer's TLS. */
static SSL_CTX *server_ctx_new(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!key || !x || !ctx)
		goto fail;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"peer.test", -1,
	                           -1, 0);
	X509_set_issuer_name(x, name);
	if (X509_sign(x, key, EVP_sha256()) == 0 || SSL_CTX_use_certificate(ctx, x) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1)
		goto fail;
	X509_free(x);
	EVP_PKEY_free(key);
	return ctx;
fail:
	X509_free(x);
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	return NULL;
}

static struct peer *peer_new(struct event_base *base, const struct step *const *scripts,
                             size_t n_scripts)
{
	struct peer *p = calloc(1, sizeof *p);
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->base = base;
	p->empty = evbuffer_new();
	p->scripts = scripts;
	p->n_scripts = n_scripts;
	p->l = evconnlistener_new_bind(base, on_paccept, p,
	                               LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	                               (struct sockaddr *)&sin, sizeof sin);
	if (p->l == NULL) {
		free(p);
		return NULL;
	}
	socklen_t len = sizeof sin;
	getsockname(evconnlistener_get_fd(p->l), (struct sockaddr *)&sin, &len);
	p->port = ntohs(sin.sin_port);
	p->ctx = server_ctx_new();
	if (p->ctx) {
		SSL_CTX_set_tlsext_servername_callback(p->ctx, servername_cb);
		SSL_CTX_set_tlsext_servername_arg(p->ctx, p);
	}
	return p;
}

static void peer_free(struct peer *p)
{
	if (p == NULL)
		return;
	for (int i = 0; i < p->accepted; i++) {
		struct pconn *pc = p->conns[i];
		pconn_free_bev(pc);
		event_free(pc->close_timer);
		evbuffer_free(pc->pending);
		evbuffer_free(pc->raw);
		for (int k = 0; k < PEER_DATAS; k++)
			evbuffer_free(pc->data[k]);
		free(pc);
	}
	evconnlistener_free(p->l);
	evbuffer_free(p->empty);
	SSL_CTX_free(p->ctx);
	free(p);
}

/* Every connection the peer took has ended (the client closed, or we did). */
static int peer_quiet(const struct peer *p)
{
	for (int i = 0; i < p->accepted; i++)
		if (!p->conns[i]->closed)
			return 0;
	return 1;
}

/* 1 when every CR is followed by LF and every LF follows a CR. */
static int crlf_only(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	const unsigned char *p = evbuffer_pullup(b, (ssize_t)n);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
			return 0;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return 0;
	}
	return 1;
}

static int evbuf_equal(struct evbuffer *b, const char *want, size_t len)
{
	size_t n = evbuffer_get_length(b);
	const char *p = (const char *)evbuffer_pullup(b, (ssize_t)n);
	if (n != len || (n > 0 && memcmp(p, want, n) != 0)) {
		fprintf(stderr, "     data: got %zu octets, want %zu\n", n, len);
		return 0;
	}
	return 1;
}

/* A closed port on 127.0.0.1: connecting to it is refused. */
static int closed_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof sin);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	close(fd);
	return ntohs(sin.sin_port);
}

/* ---- the transport's side ---- */

struct done_rec {
	struct smtp_transport_result r;
	struct smtp_client_rcpt_result rr[MAX_RCPTS];
	char host[SMTP_TRANSPORT_HOST_MAX + 1];
};

struct env {
	struct event_base *base;
	struct smtp_transport_conf conf;
	struct smtp_transport *t;
	int ndone;
	struct done_rec done[MAX_DONE];
	/* Called after recording a result (a test's next step). */
	void (*hook)(struct env *e, int idx);
	void *hook_arg;
	int expired;
};

static void on_done(void *arg, const struct smtp_transport_result *r)
{
	struct env *e = arg;
	if (e->ndone >= MAX_DONE)
		return;
	struct done_rec *d = &e->done[e->ndone];
	d->r = *r;
	for (size_t i = 0; i < r->n_rcpts && i < MAX_RCPTS; i++)
		d->rr[i] = r->rcpts[i];
	d->r.rcpts = d->rr;
	snprintf(d->host, sizeof d->host, "%s", r->host);
	d->r.host = d->host;
	int idx = e->ndone++;
	if (e->hook)
		e->hook(e, idx);
}

/* Test settings: every deadline `timeout` seconds, idle connections kept 1 s. */
static void env_conf(struct env *e, unsigned timeout, enum smtp_client_tls tls)
{
	struct smtp_client_timeouts *to = &e->conf.client.timeouts;
	smtp_transport_conf_defaults(&e->conf);
	e->conf.client.helo_name = "client.test";
	e->conf.client.tls = tls;
	to->connect = to->greeting = to->helo = to->starttls = to->tls_handshake = timeout;
	to->mail = to->rcpt = to->data_init = to->data_block = to->data_done = timeout;
	to->rset = to->quit = timeout;
	e->conf.idle_max = 0;
}

static int env_start(struct env *e)
{
	signal(SIGPIPE, SIG_IGN);
	/* SMTP_TRANSPORT_DEBUG=1 shows the transport's debug lines on stderr. */
	log_init("test_smtp_transport",
	         getenv("SMTP_TRANSPORT_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARNING);
	e->base = event_base_new();
	e->t = e->base ? smtp_transport_new(e->base, &e->conf) : NULL;
	return CHECK(e->t != NULL);
}

static void env_fini(struct env *e)
{
	smtp_transport_free(e->t);
	e->t = NULL;
}

static void env_base_free(struct env *e)
{
	event_base_free(e->base);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
	struct env *e = arg;
	e->expired = 1;
}

/* Runs the loop until ndone results are in and the peers have gone quiet. */
static int env_wait(struct env *e, int ndone, struct peer *p1, struct peer *p2, int seconds)
{
	struct event *guard = evtimer_new(e->base, on_guard, e);
	struct timeval tv = {seconds, 0};
	e->expired = 0;
	evtimer_add(guard, &tv);
	while (!e->expired &&
	       (e->ndone < ndone || (p1 && !peer_quiet(p1)) || (p2 && !peer_quiet(p2))))
		event_base_loop(e->base, EVLOOP_ONCE);
	event_free(guard);
	return CHECK(!e->expired);
}

/* A job: up to three hosts on 127.0.0.1, the body in a file after a prefix. */
struct jobspec {
	struct sockaddr_storage addrs[3][3];
	struct smtp_transport_host hosts[3];
	struct smtp_client_rcpt rcpts[MAX_RCPTS];
	struct smtp_transport_job job;
};

#define BODY_PREFIX "QUEUE RECORDS BEFORE THE BODY\r\n"

static int body_file(const char *body, size_t len)
{
	char path[] = "/tmp/sm_transport_XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	unlink(path);
	if (write(fd, BODY_PREFIX, strlen(BODY_PREFIX)) != (ssize_t)strlen(BODY_PREFIX) ||
	    write(fd, body, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return fd;
}

static void js_init(struct jobspec *js, const char *body, size_t len, size_t n_rcpts)
{
	static const char *const addrs[MAX_RCPTS] = {"r1@b.test", "r2@b.test", "r3@b.test",
	                                             "r4@b.test", "r5@b.test", "r6@b.test",
	                                             "r7@b.test", "r8@b.test"};
	memset(js, 0, sizeof *js);
	for (size_t i = 0; i < n_rcpts; i++)
		js->rcpts[i].addr = addrs[i];
	js->job.hosts = js->hosts;
	js->job.msg.mail_from = "sender@a.test";
	js->job.msg.rcpts = js->rcpts;
	js->job.msg.n_rcpts = n_rcpts;
	js->job.msg.size = len;
	js->job.msg.ret = ESMTP_RET_UNSET;
	js->job.body_fd = body_file(body, len);
	js->job.body_offset = strlen(BODY_PREFIX);
	CHECK(js->job.body_fd >= 0);
}

/* Adds a host whose addresses are 127.0.0.1 at the given ports (0 ends the list). */
static void js_host(struct jobspec *js, const char *name, int port1, int port2)
{
	size_t h = js->job.n_hosts++;
	int ports[2] = {port1, port2};
	js->hosts[h].name = name;
	js->hosts[h].addrs = js->addrs[h];
	for (int i = 0; i < 2 && ports[i]; i++) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&js->addrs[h][i];
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons((uint16_t)ports[i]);
		js->hosts[h].n_addrs++;
	}
}

static void js_fini(struct jobspec *js)
{
	if (js->job.body_fd >= 0)
		close(js->job.body_fd);
}

/* Dot-stuffs a CRLF body as it must appear on the wire (without the final dot). */
static char *stuffed(const char *body, size_t len, size_t *out_len)
{
	char *out = malloc(2 * len + 1);
	size_t n = 0;
	int bol = 1;
	for (size_t i = 0; i < len; i++) {
		if (bol && body[i] == '.')
			out[n++] = '.';
		out[n++] = body[i];
		bol = body[i] == '\n';
	}
	*out_len = n;
	return out;
}

static int check_body(struct pconn *pc, int idx, const char *body, size_t len)
{
	size_t n;
	char *want = stuffed(body, len, &n);
	int ok = CHECK(pc->n_data > idx) && CHECK(evbuf_equal(pc->data[idx], want, n));
	free(want);
	return ok;
}

static int check_rcpt(const struct done_rec *d, size_t i, enum smtp_client_rcpt_status st, int code,
                      const char *enh)
{
	return CHECK_INT(d->rr[i].status, st) && CHECK_INT(d->rr[i].reply.code, code) &&
	       CHECK_STR(d->rr[i].reply.enh, enh);
}

/* The peer's connection i; a failed check and an empty stand-in when there is
 * none, so a failing test reports instead of crashing. */
static struct pconn *pconn_of(struct peer *p, int i, const char *file, int line)
{
	static struct pconn none;
	if (harness_check(i < p->accepted, "the peer accepted that connection", file, line))
		return p->conns[i];
	memset(&none, 0, sizeof none);
	none.raw = none.pending = p->empty;
	for (int k = 0; k < PEER_DATAS; k++)
		none.data[k] = p->empty;
	return &none;
}
#define PC(p, i) pconn_of((p), (i), __FILE__, __LINE__)

static int check_peer_clean(struct peer *p)
{
	int ok = 1;
	for (int i = 0; i < p->accepted; i++) {
		ok &= CHECK_STR(p->conns[i]->mismatch, "");
		ok &= CHECK(crlf_only(p->conns[i]->raw));
	}
	return ok;
}

#define GREETING "220 peer.test ESMTP test\r\n"
#define EHLO_PIPE "250-peer.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_PLAIN "250-peer.test\r\n250 8BITMIME\r\n"
#define EHLO_TLS "250-peer.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"

/* A message with dot lines, a 998-octet line and no final line end problems. */
static char body998[2048];
static size_t body998_len;

static void make_body998(void)
{
	size_t n = 0;
	n += (size_t)snprintf(body998 + n, sizeof body998 - n,
	                      "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n");
	memset(body998 + n, 'x', 998);
	n += 998;
	n += (size_t)snprintf(body998 + n, sizeof body998 - n, "\r\n. \r\nlast line\r\n");
	body998_len = n;
}

/* ---- deliveries ---- */

/* PIPELINING: the peer answers nothing until it has MAIL, both RCPTs and
 * DATA, so a client that waited for a reply would time out instead. */
TEST(test_pipelined_delivery_byte_exact)
{
	struct env e = {0};
	struct jobspec js;
	char mail[128];
	make_body998();
	snprintf(mail, sizeof mail, "MAIL FROM:<sender@a.test> SIZE=%zu", body998_len);
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND("250-peer.test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 DSN\r\n"),
	        EXPECT(mail),
	        EXPECT("RCPT TO:<r1@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r1@b.test"),
	        EXPECT("RCPT TO:<r2@b.test>"),
	        EXPECT("DATA"),
	        SEND("250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"),
	        DATA,
	        SEND("250 2.0.0 queued as 1234\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 2.0.0 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, body998, body998_len, 2);
	js.rcpts[0].notify = ESMTP_NOTIFY_SUCCESS | ESMTP_NOTIFY_FAILURE;
	js.rcpts[0].orcpt = "rfc822;r1@b.test";
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	CHECK_INT(e.ndone, 0); /* never from inside send */
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_ANSWERED);
		CHECK_INT(d->r.n_rcpts, 2);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "2.0.0");
		check_rcpt(d, 1, SMTP_CLIENT_RCPT_DELIVERED, 250, "2.0.0");
		CHECK_STR(d->rr[0].reply.text, "queued as 1234");
		CHECK_STR(d->host, "mx.peer.test");
		CHECK_STR(d->r.addr, "127.0.0.1");
		CHECK_INT(d->r.port, p->port);
		CHECK_INT(d->r.peer_dsn, 1);
		CHECK_INT(d->r.tls, 0);
		CHECK_INT(d->r.connections, 1);
		CHECK_INT(d->r.reused, 0);
		CHECK_INT(d->r.reusable, 0); /* idle_max 0: QUIT at once */
		CHECK_INT(d->r.conn_status, SMTP_CLIENT_CONN_OK);
		check_peer_clean(p);
		check_body(PC(p, 0), 0, body998, body998_len);
		CHECK_INT(PC(p, 0)->step, sizeof s0 / sizeof s0[0] - 1); /* reached CLOSE */
	}
	CHECK_INT(smtp_transport_connections(e.t, NULL), 0);
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* A body many times the chunk and the output limits: read in 4 KiB pieces as
 * the socket drains, byte-exact at the peer. */
TEST(test_large_body_streamed)
{
	struct env e = {0};
	struct jobspec js;
	size_t len = 3000000; /* whole 100-octet lines */
	char *body = malloc(len);
	for (size_t i = 0; i < len; i++) {
		size_t col = i % 100;
		body[i] = col == 98   ? '\r'
		          : col == 99 ? '\n'
		          : col == 0  ? '.'
		                      : (char)('a' + i % 26);
	}
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT TO:<r1@b.test>"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 ok\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 5, SMTP_CLIENT_TLS_OFF);
	e.conf.body_chunk = SMTP_TRANSPORT_CHUNK_MIN;
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, body, len, 1);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 20)) {
		check_rcpt(&e.done[0], 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "");
		check_peer_clean(p);
		check_body(PC(p, 0), 0, body, len);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
	free(body);
}

TEST(test_mixed_rcpt_results)
{
	struct env e = {0};
	struct jobspec js;
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL FROM:<sender@a.test>"),
	        EXPECT("RCPT TO:<r1@b.test>"),
	        EXPECT("RCPT TO:<r2@b.test>"),
	        EXPECT("RCPT TO:<r3@b.test>"),
	        EXPECT("DATA"),
	        SEND("250 2.1.0 ok\r\n250 2.1.5 ok\r\n451 4.2.1 try later\r\n"
	             "550 5.1.1 no such user\r\n354 go\r\n"),
	        DATA,
	        SEND("250 2.0.0 ok\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, "Subject: x\r\n\r\nhi\r\n", 18, 3);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_ANSWERED);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "2.0.0");
		check_rcpt(d, 1, SMTP_CLIENT_RCPT_DEFERRED, 451, "4.2.1");
		CHECK_STR(d->rr[1].reply.text, "try later");
		check_rcpt(d, 2, SMTP_CLIENT_RCPT_FAILED, 550, "5.1.1");
		CHECK_STR(d->rr[2].reply.text, "no such user");
		check_peer_clean(p);
		check_body(PC(p, 0), 0, "Subject: x\r\n\r\nhi\r\n", 18);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* A refused address, then 421 at the greeting: the next address, the next host. */
TEST(test_refused_and_421_fall_back)
{
	struct env e = {0};
	struct jobspec js;
	const struct step busy[] = {SEND("421 4.3.2 too busy\r\n"), END};
	const struct step ok[] = {
	        SEND(GREETING),      EXPECT("EHLO client.test"),
	        SEND(EHLO_PLAIN),    EXPECT("MAIL FROM:<sender@a.test>"),
	        SEND("250 ok\r\n"),  EXPECT("RCPT TO:<r1@b.test>"),
	        SEND("250 ok\r\n"),  EXPECT("DATA"),
	        SEND("354 go\r\n"),  DATA,
	        SEND("250 ok\r\n"),  EXPECT("QUIT"),
	        SEND("221 bye\r\n"), CLOSE,
	};
	const struct step *const sa[] = {busy};
	const struct step *const sb[] = {ok};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *pa = peer_new(e.base, sa, 1), *pb = peer_new(e.base, sb, 1);
	js_init(&js, "hi\r\n", 4, 1);
	js_host(&js, "mx1.test", closed_port(), pa->port);
	js_host(&js, "mx2.test", pb->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, pa, pb, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_ANSWERED);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "");
		CHECK_STR(d->host, "mx2.test");
		CHECK_INT(d->r.port, pb->port);
		CHECK_INT(d->r.connections, 3);
		CHECK_INT(pa->accepted, 1);
		CHECK_INT(evbuffer_get_length(PC(pa, 0)->raw), 0); /* no QUIT after a 421 */
		check_peer_clean(pb);
	}
	env_fini(&e);
	peer_free(pa);
	peer_free(pb);
	js_fini(&js);
	env_base_free(&e);
}

/* Every host fails before the message: DEST_DEAD, all deferred, last reason. */
TEST(test_all_hosts_dead)
{
	struct env e = {0};
	struct jobspec js;
	const struct step away[] = {SEND("554 5.7.1 go away\r\n"), EXPECT("QUIT"),
	                            SEND("221 bye\r\n"), CLOSE};
	const struct step *const sa[] = {away};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, sa, 1);
	js_init(&js, "hi\r\n", 4, 2);
	js_host(&js, "mx1.test", closed_port(), 0);
	js_host(&js, "mx2.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_DEST_DEAD);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DEFERRED, 554, "5.7.1");
		check_rcpt(d, 1, SMTP_CLIENT_RCPT_DEFERRED, 554, "5.7.1");
		CHECK_INT(d->r.reply.code, 554);
		CHECK_INT(d->r.conn_status, SMTP_CLIENT_CONN_GREETING);
		CHECK_STR(d->host, "mx2.test");
		CHECK_INT(d->r.connections, 2);
		check_peer_clean(p);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

TEST(test_all_refused)
{
	struct env e = {0};
	struct jobspec js;
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	js_init(&js, "hi\r\n", 4, 1);
	js_host(&js, "mx1.test", closed_port(), closed_port());
	js_host(&js, "", closed_port(), 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, NULL, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_DEST_DEAD);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.4.1");
		CHECK(strncmp(d->rr[0].reply.text, "connect: ", 9) == 0);
		CHECK_INT(d->r.conn_status, SMTP_CLIENT_CONN_DROPPED);
		CHECK_INT(d->r.connections, 3);
		CHECK_STR(d->host, "");
	}
	env_fini(&e);
	js_fini(&js);
	env_base_free(&e);
}

/* The peer drops the connection after our final dot: deferred (RFC 5321 6.1). */
TEST(test_drop_after_dot)
{
	struct env e = {0};
	struct jobspec js;
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT*"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, "hi\r\n", 4, 1);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_ANSWERED);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.4.2");
		CHECK_INT(d->r.conn_status, SMTP_CLIENT_CONN_DROPPED);
		CHECK_INT(d->r.reusable, 0);
		CHECK_INT(PC(p, 0)->n_data, 1);
		check_peer_clean(p);
	}
	CHECK_INT(smtp_transport_connections(e.t, NULL), 0);
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* Silence after the final dot: the 1 s deadline defers; the transport closes. */
TEST(test_silence_after_dot_deadline)
{
	struct env e = {0};
	struct jobspec js;
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT*"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SILENT,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 5, SMTP_CLIENT_TLS_MAY);
	e.conf.client.timeouts.data_done = 1; /* the wait this test is about */
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, "hi\r\n", 4, 1);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_ANSWERED);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.4.2");
		CHECK(strstr(d->rr[0].reply.text, "timed out") != NULL);
		CHECK_INT(d->r.conn_status, SMTP_CLIENT_CONN_TIMEOUT);
		CHECK(PC(p, 0)->client_closed);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* Silence at the greeting: the deadline, then the next host. */
TEST(test_silent_greeting_next_host)
{
	struct env e = {0};
	struct jobspec js;
	const struct step mute[] = {SILENT};
	const struct step ok[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT*"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 ok\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const sa[] = {mute};
	const struct step *const sb[] = {ok};
	env_conf(&e, 5, SMTP_CLIENT_TLS_MAY);
	e.conf.client.timeouts.greeting = 1;
	if (!env_start(&e))
		return;
	struct peer *pa = peer_new(e.base, sa, 1), *pb = peer_new(e.base, sb, 1);
	js_init(&js, "hi\r\n", 4, 1);
	js_host(&js, "mx1.test", pa->port, 0);
	js_host(&js, "mx2.test", pb->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, pa, pb, 10)) {
		struct done_rec *d = &e.done[0];
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "");
		CHECK_STR(d->host, "mx2.test");
		CHECK_INT(d->r.connections, 2);
		CHECK(PC(pa, 0)->client_closed);
	}
	env_fini(&e);
	peer_free(pa);
	peer_free(pb);
	js_fini(&js);
	env_base_free(&e);
}

/* An endless reply line: the client's line limit ends it, the message defers. */
TEST(test_endless_line)
{
	struct env e = {0};
	struct jobspec js;
	const struct step s0[] = {
	        SEND(GREETING),  EXPECT("EHLO client.test"), SEND(EHLO_PLAIN),
	        EXPECT("MAIL*"), SEND("250 ok\r\n"),         EXPECT("RCPT TO:<r1@b.test>"),
	        ENDLESS,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, "hi\r\n", 4, 1);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_ANSWERED);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.5.0");
		CHECK_INT(d->r.conn_status, SMTP_CLIENT_CONN_PROTOCOL);
		CHECK(PC(p, 0)->client_closed);
		CHECK(PC(p, 0)->endless_sent < ENDLESS_MAX); /* we hung up long before */
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* An empty body: straight to the final dot, nothing read from the file. */
TEST(test_empty_body)
{
	struct env e = {0};
	struct jobspec js;
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT*"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 empty\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, "", 0, 1);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		check_rcpt(&e.done[0], 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "");
		CHECK_STR(e.done[0].rr[0].reply.text, "empty");
		CHECK_INT(PC(p, 0)->n_data, 1);
		check_body(PC(p, 0), 0, "", 0);
		check_peer_clean(p);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* ---- STARTTLS ---- */

static void run_starttls(const char *ready, const char *sni_host, const char *want_sni,
                         const char *body, size_t len)
{
	struct env e = {0};
	struct jobspec js;
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_TLS),
	        EXPECT("STARTTLS"),
	        STARTTLS(ready),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL FROM:<sender@a.test>"),
	        EXPECT("RCPT TO:<r1@b.test>"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 2.0.0 ok\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	CHECK(p->ctx != NULL);
	js_init(&js, body, len, 1);
	js_host(&js, sni_host, p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_ANSWERED);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "2.0.0");
		CHECK_INT(d->r.tls, 1);
		CHECK_INT(d->r.connections, 1); /* no plaintext retry was needed */
		CHECK_INT(p->accepted, 1);
		CHECK(PC(p, 0)->tls);
		CHECK_STR(p->sni, want_sni);
		check_peer_clean(p);
		check_body(PC(p, 0), 0, body, len);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

TEST(test_starttls_delivery)
{
	make_body998();
	run_starttls("220 2.0.0 ready to start TLS\r\n", "mx.tls.test.", "mx.tls.test", body998,
	             body998_len);
}

/* No SNI for an address literal (RFC 6066 3). */
TEST(test_starttls_no_sni_for_literal)
{
	run_starttls("220 2.0.0 ready to start TLS\r\n", "127.0.0.1", "", "hi\r\n", 4);
}

/* Plaintext after the 220, in the same write: discarded, never a reply, and
 * never fed to the TLS layer (which would fail the handshake). */
TEST(test_starttls_injection_discarded)
{
	run_starttls("220 ready to start TLS\r\n250 injected\r\n", "mx.tls.test", "mx.tls.test",
	             "hi\r\n", 4);
}

/* A body far larger than the buffers, through the TLS filter's flow control. */
TEST(test_starttls_large_body)
{
	size_t len = 2000000;
	char *body = malloc(len);
	for (size_t i = 0; i < len; i++)
		body[i] = i % 80 == 78 ? '\r' : i % 80 == 79 ? '\n' : i % 80 == 0 ? '.' : 'y';
	run_starttls("220 go\r\n", "mx.tls.test", "mx.tls.test", body, len);
	free(body);
}

/* 220 to STARTTLS, then nothing: the handshake deadline, then the same
 * address again in plaintext (may), without STARTTLS although offered. */
TEST(test_starttls_hang_plaintext_retry)
{
	struct env e = {0};
	struct jobspec js;
	const struct step hang[] = {
	        SEND(GREETING),     EXPECT("EHLO client.test"), SEND(EHLO_TLS),
	        EXPECT("STARTTLS"), SEND("220 go ahead\r\n"),   SILENT,
	};
	const struct step plain[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_TLS),
	        EXPECT("MAIL FROM:<sender@a.test>"),
	        EXPECT("RCPT TO:<r1@b.test>"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 ok\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {hang, plain};
	env_conf(&e, 5, SMTP_CLIENT_TLS_MAY);
	e.conf.client.timeouts.tls_handshake = 1;
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 2);
	js_init(&js, "hi\r\n", 4, 1);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_ANSWERED);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "");
		CHECK_INT(d->r.tls, 0);
		CHECK_INT(d->r.connections, 2);
		CHECK_INT(p->accepted, 2);
		CHECK(PC(p, 0)->client_closed);
		CHECK_STR(PC(p, 0)->mismatch, ""); /* (its record ends in a ClientHello) */
		CHECK_STR(PC(p, 1)->mismatch, "");
		CHECK(crlf_only(PC(p, 1)->raw));
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* tls = require: the same hang is a dead destination, never plaintext. */
TEST(test_starttls_hang_required)
{
	struct env e = {0};
	struct jobspec js;
	const struct step hang[] = {
	        SEND(GREETING),     EXPECT("EHLO client.test"), SEND(EHLO_TLS),
	        EXPECT("STARTTLS"), SEND("220 go ahead\r\n"),   SILENT,
	};
	const struct step *const scripts[] = {hang};
	env_conf(&e, 5, SMTP_CLIENT_TLS_REQUIRE);
	e.conf.client.timeouts.tls_handshake = 1;
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, "hi\r\n", 4, 1);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_DEST_DEAD);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.4.2");
		CHECK_INT(d->r.conn_status, SMTP_CLIENT_CONN_TLS_FAILED);
		CHECK_INT(d->r.connections, 1);
		CHECK_INT(p->accepted, 1);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* ---- connection reuse ---- */

struct reuse {
	struct jobspec *second;
	int sent;
};

/* The manager's move: the first result says the connection waits; send the next. */
static void send_second(struct env *e, int idx)
{
	struct reuse *r = e->hook_arg;
	if (idx == 0 && e->done[0].r.reusable)
		r->sent = smtp_transport_send(e->t, "b.test", &r->second->job, on_done, e) == 0;
}

/* Two messages on one connection, then QUIT when idle_max passes. */
TEST(test_reuse_then_idle_quit)
{
	struct env e = {0};
	struct jobspec js1, js2;
	struct reuse ru = {&js2, 0};
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT TO:<r1@b.test>"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 first\r\n"),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT TO:<r1@b.test>"),
	        EXPECT("RCPT TO:<r2@b.test>"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 second\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	e.conf.idle_max = 1;
	if (!env_start(&e))
		return;
	e.hook = send_second;
	e.hook_arg = &ru;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js1, "one\r\n", 5, 1);
	js_host(&js1, "mx.peer.test", p->port, 0);
	js_init(&js2, "two\r\n.\r\n", 8, 2);
	js_host(&js2, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js1.job, on_done, &e), 0);
	if (env_wait(&e, 2, NULL, NULL, 10)) {
		size_t idle = 9;
		CHECK(ru.sent);
		CHECK_INT(e.done[0].r.reusable, 1);
		CHECK_INT(e.done[0].r.reused, 0);
		CHECK_INT(e.done[0].r.connections, 1);
		CHECK_STR(e.done[0].rr[0].reply.text, "first");
		CHECK_INT(e.done[1].r.reused, 1);
		CHECK_INT(e.done[1].r.connections, 0);
		CHECK_STR(e.done[1].rr[0].reply.text, "second");
		check_rcpt(&e.done[1], 1, SMTP_CLIENT_RCPT_DELIVERED, 250, "");
		CHECK_INT(e.done[1].r.reusable, 1);
		CHECK_INT(smtp_transport_connections(e.t, &idle), 1);
		CHECK_INT(idle, 1); /* waiting idle_max for a third */
	}
	if (env_wait(&e, 2, p, NULL, 10)) { /* then QUIT */
		CHECK_INT(p->accepted, 1);
		CHECK_INT(PC(p, 0)->step, sizeof s0 / sizeof s0[0] - 1);
		check_peer_clean(p);
		check_body(PC(p, 0), 0, "one\r\n", 5);
		check_body(PC(p, 0), 1, "two\r\n.\r\n", 8);
	}
	CHECK_INT(smtp_transport_connections(e.t, NULL), 0);
	env_fini(&e);
	peer_free(p);
	js_fini(&js1);
	js_fini(&js2);
	env_base_free(&e);
}

/* A refused recipient leaves the transaction unclean: RSET, then the next
 * message on the same connection (it may be given while RSET is under way). */
TEST(test_reuse_after_rset)
{
	struct env e = {0};
	struct jobspec js1, js2;
	struct reuse ru = {&js2, 0};
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT TO:<r1@b.test>"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n"),
	        EXPECT("RSET"),
	        SEND("250 reset\r\n"),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT TO:<r1@b.test>"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 ok\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	e.conf.idle_max = 1;
	e.conf.messages_max = 2;
	if (!env_start(&e))
		return;
	e.hook = send_second;
	e.hook_arg = &ru;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js1, "one\r\n", 5, 1);
	js_host(&js1, "mx.peer.test", p->port, 0);
	js_init(&js2, "two\r\n", 5, 1);
	js_host(&js2, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js1.job, on_done, &e), 0);
	if (env_wait(&e, 2, p, NULL, 10)) {
		check_rcpt(&e.done[0], 0, SMTP_CLIENT_RCPT_FAILED, 550, "5.1.1");
		check_rcpt(&e.done[1], 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "");
		CHECK_INT(e.done[1].r.reused, 1);
		CHECK_INT(e.done[1].r.reusable, 0); /* messages_max 2 reached: QUIT at once */
		CHECK_INT(p->accepted, 1);
		check_peer_clean(p);
		check_body(PC(p, 0), 0, "two\r\n", 5);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js1);
	js_fini(&js2);
	env_base_free(&e);
}

/* The kept connection dies at the next MAIL (the peer's idle timeout racing
 * our reuse): nothing reached the peer, so the job goes on a new connection. */
TEST(test_reuse_dropped_before_data_retries)
{
	struct env e = {0};
	struct jobspec js1, js2;
	struct reuse ru = {&js2, 0};
	const struct step first[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT*"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 ok\r\n"),
	        EXPECT("MAIL*"),
	        CLOSE,
	};
	const struct step second[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT*"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 again\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {first, second};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	e.conf.idle_max = 1;
	e.conf.messages_max = 1000;
	if (!env_start(&e))
		return;
	e.hook = send_second;
	e.hook_arg = &ru;
	struct peer *p = peer_new(e.base, scripts, 2);
	js_init(&js1, "one\r\n", 5, 1);
	js_host(&js1, "mx.peer.test", p->port, 0);
	js_init(&js2, "two\r\n", 5, 1);
	js_host(&js2, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js1.job, on_done, &e), 0);
	if (env_wait(&e, 2, p, NULL, 10)) {
		check_rcpt(&e.done[1], 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "");
		CHECK_STR(e.done[1].rr[0].reply.text, "again");
		CHECK_INT(e.done[1].r.connections, 1);
		CHECK_INT(e.done[1].r.reused, 0);
		CHECK_INT(p->accepted, 2);
		check_peer_clean(p);
		check_body(PC(p, 1), 0, "two\r\n", 5);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js1);
	js_fini(&js2);
	env_base_free(&e);
}

/* messages_max 1: QUIT right after the message; the next job connects anew. */
TEST(test_messages_max_one)
{
	struct env e = {0};
	struct jobspec js1, js2;
	struct reuse ru = {&js2, 0};
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT*"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 ok\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	e.conf.idle_max = 5;
	e.conf.messages_max = 1;
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js1, "one\r\n", 5, 1);
	js_host(&js1, "mx.peer.test", p->port, 0);
	js_init(&js2, "two\r\n", 5, 1);
	js_host(&js2, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js1.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		CHECK_INT(e.done[0].r.reusable, 0);
		CHECK_INT(smtp_transport_connections(e.t, NULL), 0);
	}
	ru.sent = smtp_transport_send(e.t, "b.test", &js2.job, on_done, &e) == 0;
	CHECK(ru.sent);
	if (env_wait(&e, 2, p, NULL, 10)) {
		CHECK_INT(e.done[1].r.connections, 1);
		CHECK_INT(p->accepted, 2);
		check_peer_clean(p);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js1);
	js_fini(&js2);
	env_base_free(&e);
}

/* smtp_transport_close_idle() QUITs a kept connection at once. */
TEST(test_close_idle)
{
	struct env e = {0};
	struct jobspec js;
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT*"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 ok\r\n"),
	        EXPECT("QUIT"),
	        SEND("221 bye\r\n"),
	        CLOSE,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	e.conf.idle_max = 60; /* the test would time out waiting for this */
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, "one\r\n", 5, 1);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, NULL, NULL, 10)) {
		size_t idle = 0;
		CHECK_INT(e.done[0].r.reusable, 1);
		/* The READY after the dot's 250 may still be on its way. */
		for (int i = 0; i < 100 && (smtp_transport_connections(e.t, &idle), idle == 0); i++)
			event_base_loop(e.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		CHECK_INT(idle, 1);
		smtp_transport_close_idle(e.t, "other.test");
		smtp_transport_connections(e.t, &idle);
		CHECK_INT(idle, 1); /* another destination's connection stays */
		smtp_transport_close_idle(e.t, NULL);
		smtp_transport_connections(e.t, &idle);
		CHECK_INT(idle, 0);
	}
	if (env_wait(&e, 1, p, NULL, 10))
		check_peer_clean(p);
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* ---- local failures and shutdown ---- */

/* A body file shorter than the size: no final dot ever leaves; deferred. */
TEST(test_short_body_file)
{
	struct env e = {0};
	struct jobspec js;
	const struct step s0[] = {
	        SEND(GREETING),
	        EXPECT("EHLO client.test"),
	        SEND(EHLO_PIPE),
	        EXPECT("MAIL*"),
	        EXPECT("RCPT*"),
	        EXPECT("DATA"),
	        SEND("250 ok\r\n250 ok\r\n354 go\r\n"),
	        DATA,
	        SEND("250 ok\r\n"),
	        END,
	};
	const struct step *const scripts[] = {s0};
	env_conf(&e, 3, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, "short\r\n", 7, 1);
	js.job.msg.size = 100000; /* the file has 7 octets after the prefix */
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (env_wait(&e, 1, p, NULL, 10)) {
		struct done_rec *d = &e.done[0];
		CHECK_INT(d->r.outcome, SMTP_TRANSPORT_LOCAL_ERROR);
		check_rcpt(d, 0, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.3.0");
		CHECK(strstr(d->rr[0].reply.text, "shorter") != NULL);
		CHECK_INT(PC(p, 0)->n_data, 0); /* the peer never saw the end of data */
		CHECK(PC(p, 0)->client_closed);
	}
	env_fini(&e);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

static int peer_accepted(struct env *e, struct peer *p, int n, int seconds)
{
	struct event *guard = evtimer_new(e->base, on_guard, e);
	struct timeval tv = {seconds, 0};
	e->expired = 0;
	evtimer_add(guard, &tv);
	while (!e->expired && p->accepted < n)
		event_base_loop(e->base, EVLOOP_ONCE);
	event_free(guard);
	return CHECK(!e->expired);
}

/* smtp_transport_free() with a job under way: done is called, ABORTED. */
TEST(test_free_aborts_jobs)
{
	struct env e = {0};
	struct jobspec js;
	const struct step mute[] = {SILENT};
	const struct step *const scripts[] = {mute};
	env_conf(&e, 30, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e))
		return;
	struct peer *p = peer_new(e.base, scripts, 1);
	js_init(&js, "hi\r\n", 4, 2);
	js_host(&js, "mx.peer.test", p->port, 0);
	CHECK_INT(smtp_transport_send(e.t, "b.test", &js.job, on_done, &e), 0);
	if (peer_accepted(&e, p, 1, 10)) {
		CHECK_INT(e.ndone, 0);
		env_fini(&e);
		CHECK_INT(e.ndone, 1);
		CHECK_INT(e.done[0].r.outcome, SMTP_TRANSPORT_ABORTED);
		check_rcpt(&e.done[0], 0, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.3.2");
		check_rcpt(&e.done[0], 1, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.3.2");
	}
	env_fini(&e);
	/* The loop still runs cleanly without the transport: nothing is left on it. */
	event_base_loop(e.base, EVLOOP_NONBLOCK);
	peer_free(p);
	js_fini(&js);
	env_base_free(&e);
}

/* ---- the API's refusals ---- */

TEST(test_send_refusals)
{
	struct env e = {0};
	struct jobspec js;
	env_conf(&e, 3, SMTP_CLIENT_TLS_OFF);
	if (!env_start(&e))
		return;
	struct smtp_client_rcpt many[MAX_RCPTS];
	memset(many, 0, sizeof many);
	static const struct {
		const char *name;
		int what;
	} cases[] = {
	        {"ok", 0},
	        {"no hosts", 1},
	        {"no addresses", 2},
	        {"no rcpts", 3},
	        {"too many rcpts", 4},
	        {"no sender", 5},
	        {"negative fd", 6},
	        {"empty dest", 7},
	        {"control in dest", 8},
	        {"space in dest", 9},
	        {"long dest", 10},
	        {"NULL done", 11},
	        {"offset overflow", 12},
	};
	char longkey[SMTP_TRANSPORT_DEST_MAX + 2];
	memset(longkey, 'a', sizeof longkey - 1);
	longkey[sizeof longkey - 1] = '\0';
	e.conf.client.max_rcpts = 4;
	smtp_transport_free(e.t);
	e.t = smtp_transport_new(e.base, &e.conf);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *dest = "b.test";
		smtp_transport_done_fn done = on_done;
		js_init(&js, "hi\r\n", 4, 1);
		js_host(&js, "mx.test", closed_port(), 0);
		int fd = js.job.body_fd;
		switch (cases[i].what) {
		case 1: js.job.n_hosts = 0; break;
		case 2: js.hosts[0].n_addrs = 0; break;
		case 3: js.job.msg.n_rcpts = 0; break;
		case 4:
			js.job.msg.rcpts = many;
			js.job.msg.n_rcpts = 5;
			break;
		case 5: js.job.msg.mail_from = NULL; break;
		case 6: js.job.body_fd = -1; break;
		case 7: dest = ""; break;
		case 8: dest = "b\r.test"; break;
		case 9: dest = "b test"; break;
		case 10: dest = longkey; break;
		case 11: done = NULL; break;
		case 12: js.job.body_offset = UINT64_MAX - 2; break;
		}
		int r = smtp_transport_send(e.t, dest, &js.job, done, &e);
		if (!CHECK_INT(r, cases[i].what == 0 ? 0 : -1))
			fprintf(stderr, "     case: %s\n", cases[i].name);
		if (r == 0)
			env_wait(&e, 1, NULL, NULL, 10); /* the ok case: a refused port, dead */
		js.job.body_fd = fd;
		js_fini(&js);
	}
	CHECK_INT(e.ndone, 1);
	CHECK_INT(e.done[0].r.outcome, SMTP_TRANSPORT_DEST_DEAD);
	env_fini(&e);
	env_base_free(&e);
}

TEST(test_conf_refusals)
{
	struct event_base *base = event_base_new();
	struct smtp_transport_conf c;
	static const struct {
		const char *name;
		int what;
	} cases[] = {
	        {"ok", 0},
	        {"no helo", 1},
	        {"messages_max 0", 2},
	        {"messages_max big", 3},
	        {"chunk small", 4},
	        {"chunk big", 5},
	        {"client out_max", 6},
	        {"bad tls", 7},
	        {"no base", 8},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct event_base *b = base;
		smtp_transport_conf_defaults(&c);
		c.client.helo_name = "client.test";
		switch (cases[i].what) {
		case 1: c.client.helo_name = NULL; break;
		case 2: c.messages_max = 0; break;
		case 3: c.messages_max = 100001; break;
		case 4: c.body_chunk = SMTP_TRANSPORT_CHUNK_MIN - 1; break;
		case 5: c.body_chunk = SMTP_TRANSPORT_CHUNK_MAX + 1; break;
		case 6: c.client.out_max = 100; break;
		case 7: c.client.tls = (enum smtp_client_tls)9; break;
		case 8: b = NULL; break;
		}
		struct smtp_transport *t = smtp_transport_new(b, &c);
		if (!CHECK_INT(t != NULL, cases[i].what == 0))
			fprintf(stderr, "     case: %s\n", cases[i].name);
		smtp_transport_free(t);
	}
	smtp_transport_free(NULL);
	CHECK_STR(smtp_transport_outcome_name(SMTP_TRANSPORT_DEST_DEAD), "destination dead");
	CHECK_STR(smtp_transport_outcome_name((enum smtp_transport_outcome)42), "?");
	event_base_free(base);
}

/* ---- a real server: Postfix's smtp-sink ---- */

struct sink {
	pid_t pid;
	char dir[64];
	int port;
};

static int sink_start(struct sink *s)
{
	char addr[64], tmpl[128];
	snprintf(s->dir, sizeof s->dir, "/tmp/sm_sink_XXXXXX");
	if (mkdtemp(s->dir) == NULL)
		return -1;
	chmod(s->dir, 0777); /* smtp-sink writes as nobody when we are root */
	s->port = closed_port();
	snprintf(addr, sizeof addr, "127.0.0.1:%d", s->port);
	snprintf(tmpl, sizeof tmpl, "%s/msg.", s->dir);
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 1);
		dup2(null, 2);
		if (geteuid() == 0)
			execl(SMTP_SINK, "smtp-sink", "-u", "nobody", "-d", tmpl, addr, "10",
			      (char *)NULL);
		else
			execl(SMTP_SINK, "smtp-sink", "-d", tmpl, addr, "10", (char *)NULL);
		_exit(127);
	}
	return 0;
}

static void sink_stop(struct sink *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

/* The one dump file smtp-sink wrote, read whole (NULL when there is none). */
static char *sink_dump(struct sink *s, size_t *len)
{
	char path[400] = "";
	DIR *d = opendir(s->dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "msg.", 4) == 0)
			snprintf(path, sizeof path, "%s/%s", s->dir, de->d_name);
	if (d)
		closedir(d);
	FILE *f = path[0] ? fopen(path, "rb") : NULL;
	if (f == NULL)
		return NULL;
	char *buf = calloc(1, 1 << 20);
	*len = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	return buf;
}

static void sink_clean(struct sink *s)
{
	char path[400];
	DIR *d = opendir(s->dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", s->dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(s->dir);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	*(int *)arg = 1;
}

/* The body as smtp-sink stores it: unstuffed, LF line ends. */
static char *lf_body(const char *body, size_t len, size_t *out_len)
{
	char *out = malloc(len + 1);
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (!(body[i] == '\r' && i + 1 < len && body[i + 1] == '\n'))
			out[n++] = body[i];
	out[n] = '\0';
	*out_len = n;
	return out;
}

TEST(test_real_smtp_sink)
{
	struct env e = {0};
	struct jobspec js;
	struct sink s = {0};
	if (access(SMTP_SINK, X_OK) != 0) {
		SKIP(SMTP_SINK " not installed (Debian package postfix)");
		return;
	}
	make_body998();
	env_conf(&e, 5, SMTP_CLIENT_TLS_MAY);
	if (!env_start(&e) || !CHECK_INT(sink_start(&s), 0))
		return;
	js_init(&js, body998, body998_len, 2);
	js_host(&js, "localhost", s.port, 0);
	/* smtp-sink starts on its own time: retry a refused connect every 50 ms. */
	for (int attempt = 0; attempt < 100; attempt++) {
		int before = e.ndone;
		CHECK_INT(smtp_transport_send(e.t, "sink.test", &js.job, on_done, &e), 0);
		if (!env_wait(&e, before + 1, NULL, NULL, 10))
			break;
		if (e.done[before].r.outcome != SMTP_TRANSPORT_DEST_DEAD)
			break;
		e.ndone = before;
		int tick = 0;
		struct event *ev = evtimer_new(e.base, on_tick, &tick);
		struct timeval tv = {0, 50000};
		evtimer_add(ev, &tv);
		while (!tick)
			event_base_loop(e.base, EVLOOP_ONCE);
		event_free(ev);
	}
	struct done_rec *d = &e.done[e.ndone ? e.ndone - 1 : 0];
	CHECK_INT(d->r.outcome, SMTP_TRANSPORT_ANSWERED);
	check_rcpt(d, 0, SMTP_CLIENT_RCPT_DELIVERED, 250, "2.0.0");
	check_rcpt(d, 1, SMTP_CLIENT_RCPT_DELIVERED, 250, "2.0.0");
	CHECK_INT(d->r.peer_dsn, 1);
	env_fini(&e);
	sink_stop(&s);
	size_t dump_len = 0, want_len;
	char *dump = sink_dump(&s, &dump_len);
	if (getenv("SMTP_TRANSPORT_DEBUG") && dump)
		fprintf(stderr, "%.600s\n", dump);
	char *want = lf_body(body998, body998_len, &want_len);
	if (CHECK(dump != NULL)) {
		CHECK(strstr(dump, "X-Helo-Args: client.test\n") != NULL);
		CHECK(strstr(dump, "X-Mail-Args: <sender@a.test>") != NULL);
		CHECK(strstr(dump, "X-Rcpt-Args: <r1@b.test>\n") != NULL);
		CHECK(strstr(dump, "X-Rcpt-Args: <r2@b.test>\n") != NULL);
		/* After smtp-sink's three-line Received: header, our message, then "\n". */
		const char *rcv = strstr(dump, "\nReceived: ");
		const char *msg = rcv;
		for (int i = 0; msg && i < 3; i++)
			msg = strchr(msg + 1, '\n');
		if (CHECK(msg != NULL)) {
			msg++;
			size_t got = dump_len - (size_t)(msg - dump);
			CHECK(got > 0 && msg[got - 1] == '\n'); /* the dump's closing empty line */
			CHECK_MEM(msg, got - 1, want, want_len);
		}
	}
	free(dump);
	free(want);
	sink_clean(&s);
	js_fini(&js);
	env_base_free(&e);
}

TEST_MAIN(T(test_pipelined_delivery_byte_exact), T(test_large_body_streamed),
          T(test_mixed_rcpt_results), T(test_refused_and_421_fall_back), T(test_all_hosts_dead),
          T(test_all_refused), T(test_drop_after_dot), T(test_silence_after_dot_deadline),
          T(test_silent_greeting_next_host), T(test_endless_line), T(test_empty_body),
          T(test_starttls_delivery), T(test_starttls_large_body),
          T(test_starttls_no_sni_for_literal), T(test_starttls_injection_discarded),
          T(test_starttls_hang_plaintext_retry), T(test_starttls_hang_required),
          T(test_reuse_then_idle_quit), T(test_reuse_after_rset),
          T(test_reuse_dropped_before_data_retries), T(test_messages_max_one), T(test_close_idle),
          T(test_short_body_file), T(test_free_aborts_jobs), T(test_send_refusals),
          T(test_conf_refusals), T(test_real_smtp_sink))
