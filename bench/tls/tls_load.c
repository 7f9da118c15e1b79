/*
 * tls_load: the load client of the TLS benchmark (smtp-source cannot speak
 * TLS). SESSIONS threads each keep one SMTP session busy, one message per
 * connection, like smtp-source: connect, greeting, EHLO, STARTTLS, a full TLS
 * handshake (no session resumption: the client keeps no session cache), EHLO
 * again, [AUTH PLAIN,] MAIL, RCPT and DATA pipelined (RFC 2920), the message,
 * the final dot and its 250, QUIT. With -H (handshakes) a connection stops
 * after the handshake and one NOOP inside TLS, so the figure is TLS handshakes
 * per second with the SMTP around them as small as it gets.
 *
 *   tls_load -p PORT -m MESSAGES -s SESSIONS [-l LENGTH] [-H] [-a USER:PASSWORD]
 *            [-f FROM] [-t TO] [-M HELO] [-h HOST]
 *
 * Every reply is checked (2xx, 3xx for DATA, 220 for STARTTLS); anything else
 * stops the run with exit status 1 and the reply on stderr. Output, one line:
 *
 *   done=N seconds=S rate=R protocol=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384
 *
 * (rate: messages, or handshakes with -H, per second of wall time).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto/base64.h"

#define TL_BUF 16384
#define TL_SESSIONS_MAX 1000

struct tl_opts {
	const char *host;
	int port;
	long messages;
	int sessions;
	int length;
	int handshakes_only;
	const char *auth; /* "user:password" or NULL */
	const char *from, *to, *helo;
};

/* One connection: the socket, TLS once started, and what was read but not yet parsed. */
struct tl_conn {
	int fd;
	SSL *ssl;
	char buf[TL_BUF];
	size_t len;
	char last[512]; /* the last reply line, for error messages */
};

static struct tl_opts opts = {
        "127.0.0.1",  0, 1000, 1, 4096, 0, NULL, "sender@client.test", "user@bench.example",
        "client.test"};
static SSL_CTX *ctx;
static char *message; /* headers, body, final dot */
static size_t message_len;
static char auth_line[1024];
static atomic_long next_job;
static atomic_int failed;
static pthread_mutex_t info_lock = PTHREAD_MUTEX_INITIALIZER;
static char seen_protocol[32], seen_cipher[96];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int conn_write(struct tl_conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;
		if (c->ssl) {
			int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
			w = r > 0 ? r : -1;
		} else {
			w = send(c->fd, p, n, MSG_NOSIGNAL);
		}
		if (w < 0) {
			if (!c->ssl && errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int conn_fill(struct tl_conn *c)
{
	if (c->len >= sizeof c->buf)
		return -1;
	ssize_t r;
	if (c->ssl) {
		int k = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - c->len));
		r = k > 0 ? k : -1;
	} else {
		do
			r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
		while (r < 0 && errno == EINTR);
		if (r == 0)
			r = -1;
	}
	if (r < 0)
		return -1;
	c->len += (size_t)r;
	return 0;
}

/* Reads one whole (multi-line) reply; returns its code, or -1 when the connection broke. */
static int conn_reply(struct tl_conn *c)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (!nl) {
			if (conn_fill(c) != 0)
				return -1;
			continue;
		}
		size_t n = (size_t)(nl - c->buf) + 1;
		int last = n >= 4 && c->buf[3] != '-';
		int code = n >= 3 ? atoi(c->buf) : -1;
		snprintf(c->last, sizeof c->last, "%.*s", (int)(n > 2 ? n - 2 : n), c->buf);
		memmove(c->buf, c->buf + n, c->len - n);
		c->len -= n;
		if (last)
			return code;
	}
}

/* Sends line (CRLF added when crlf) and wants a reply starting with digit want. */
static int step(struct tl_conn *c, const char *line, int want, const char *what)
{
	if (line && conn_write(c, line, strlen(line)) != 0) {
		fprintf(stderr, "tls_load: %s: write failed\n", what);
		return -1;
	}
	int code = conn_reply(c);
	if (code / 100 != want) {
		fprintf(stderr, "tls_load: %s: %s\n", what,
		        code < 0 ? "connection closed" : c->last);
		return -1;
	}
	return 0;
}

static int conn_open(struct tl_conn *c)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)opts.port);
	if (inet_pton(AF_INET, opts.host, &sa.sin_addr) != 1)
		return -1;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		fprintf(stderr, "tls_load: connect: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static void conn_close(struct tl_conn *c)
{
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	c->ssl = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static void note_tls(SSL *ssl)
{
	pthread_mutex_lock(&info_lock);
	if (!seen_protocol[0]) {
		snprintf(seen_protocol, sizeof seen_protocol, "%s", SSL_get_version(ssl));
		snprintf(seen_cipher, sizeof seen_cipher, "%s", SSL_get_cipher_name(ssl));
	}
	pthread_mutex_unlock(&info_lock);
}

/* EHLO, STARTTLS and the client handshake (RFC 3207: nothing buffered may be left). */
static int starttls(struct tl_conn *c)
{
	char ehlo[300];
	snprintf(ehlo, sizeof ehlo, "EHLO %s\r\n", opts.helo);
	if (step(c, NULL, 2, "greeting") || step(c, ehlo, 2, "EHLO") ||
	    step(c, "STARTTLS\r\n", 2, "STARTTLS"))
		return -1;
	if (c->len != 0) {
		fprintf(stderr, "tls_load: octets after the 220 to STARTTLS\n");
		return -1;
	}
	c->ssl = SSL_new(ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_connect(c->ssl) != 1) {
		char e[256];
		ERR_error_string_n(ERR_get_error(), e, sizeof e);
		fprintf(stderr, "tls_load: TLS handshake: %s\n", e);
		return -1;
	}
	note_tls(c->ssl);
	return step(c, ehlo, 2, "EHLO inside TLS");
}

static int one_message(struct tl_conn *c)
{
	char cmds[1024];
	if (opts.auth && step(c, auth_line, 2, "AUTH PLAIN"))
		return -1;
	snprintf(cmds, sizeof cmds, "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", opts.from,
	         opts.to);
	if (conn_write(c, cmds, strlen(cmds)) != 0 || step(c, NULL, 2, "MAIL") ||
	    step(c, NULL, 2, "RCPT") || step(c, NULL, 3, "DATA"))
		return -1;
	if (conn_write(c, message, message_len) != 0 || step(c, NULL, 2, "end of DATA"))
		return -1;
	return step(c, "QUIT\r\n", 2, "QUIT");
}

static void *worker(void *arg)
{
	struct tl_conn *c = calloc(1, sizeof *c);
	if (!c) {
		atomic_store(&failed, 1);
		return NULL;
	}
	c->fd = -1;
	while (!atomic_load(&failed) && atomic_fetch_add(&next_job, 1) < opts.messages) {
		int ok = conn_open(c) == 0 && starttls(c) == 0;
		if (ok && opts.handshakes_only)
			ok = step(c, "NOOP\r\n", 2, "NOOP") == 0 &&
			     step(c, "QUIT\r\n", 2, "QUIT") == 0;
		else if (ok)
			ok = one_message(c) == 0;
		conn_close(c);
		if (!ok)
			atomic_store(&failed, 1);
	}
	free(c);
	return NULL;
}

/* A message shaped like smtp-source's: a few headers, LENGTH octets of 80-octet lines. */
static int build_message(void)
{
	size_t cap = (size_t)opts.length + 1024;
	message = malloc(cap);
	if (!message)
		return -1;
	int n = snprintf(message, cap, "From: <%s>\r\nTo: <%s>\r\nSubject: tls bench\r\n\r\n",
	                 opts.from, opts.to);
	size_t len = (size_t)n;
	for (int left = opts.length; left > 0;) {
		int k = left > 78 ? 78 : left;
		memset(message + len, 'X', (size_t)k);
		len += (size_t)k;
		memcpy(message + len, "\r\n", 2);
		len += 2;
		left -= k;
	}
	memcpy(message + len, ".\r\n", 3);
	message_len = len + 3;
	return 0;
}

/* "AUTH PLAIN base64(\0user\0password)" (RFC 4616) from "user:password". */
static int build_auth(const char *up)
{
	char raw[512];
	const char *colon = strchr(up, ':');
	if (!colon || strlen(up) + 2 > sizeof raw)
		return -1;
	size_t ul = (size_t)(colon - up), pl = strlen(colon + 1);
	raw[0] = '\0';
	memcpy(raw + 1, up, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, colon + 1, pl);
	char b64[900];
	int bl = base64_encode((const uint8_t *)raw, 2 + ul + pl, b64, sizeof b64);
	if (bl <= 0)
		return -1;
	snprintf(auth_line, sizeof auth_line, "AUTH PLAIN %.*s\r\n", bl, b64);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: tls_load -p PORT -m MESSAGES -s SESSIONS [-l LENGTH] [-H] "
	                "[-a USER:PASSWORD] [-f FROM] [-t TO] [-M HELO] [-h HOST]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "p:m:s:l:Ha:f:t:M:h:")) != -1) {
		switch (ch) {
		case 'p': opts.port = atoi(optarg); break;
		case 'm': opts.messages = atol(optarg); break;
		case 's': opts.sessions = atoi(optarg); break;
		case 'l': opts.length = atoi(optarg); break;
		case 'H': opts.handshakes_only = 1; break;
		case 'a': opts.auth = optarg; break;
		case 'f': opts.from = optarg; break;
		case 't': opts.to = optarg; break;
		case 'M': opts.helo = optarg; break;
		case 'h': opts.host = optarg; break;
		default: usage();
		}
	}
	if (opts.port <= 0 || opts.messages < 1 || opts.sessions < 1 ||
	    opts.sessions > TL_SESSIONS_MAX || opts.length < 0)
		usage();
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || build_message() != 0 || (opts.auth && build_auth(opts.auth) != 0)) {
		fprintf(stderr, "tls_load: set-up failed\n");
		return 1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* a throwaway certificate */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* every handshake is full */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	pthread_t th[TL_SESSIONS_MAX];
	double t0 = now_s();
	int started = 0;
	for (; started < opts.sessions; started++)
		if (pthread_create(&th[started], NULL, worker, NULL) != 0)
			break;
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	double secs = now_s() - t0;
	if (atomic_load(&failed) || started < opts.sessions)
		return 1;
	printf("done=%ld seconds=%.3f rate=%.1f protocol=%s cipher=%s\n", opts.messages, secs,
	       (double)opts.messages / secs, seen_protocol, seen_cipher);
	SSL_CTX_free(ctx);
	free(message);
	return 0;
}
