/*
 * Unit tests for minger_client against an in-process UDP responder thread on
 * 127.0.0.1: accepted replies, ignored ones (counted by reason), local errors.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "proto/minger_msg.h"
#include "verify/minger_client.h"

#define SECRET "0123456789abcdef"

/* What the responder sends back for each query datagram. */
enum resp_mode {
	RESP_ECHO_5, /* "mailbox 5" from the listening socket */
	RESP_OTHER_SOCKET, /* "mailbox 5" from another socket */
	RESP_OVERSIZE, /* 1100 octets */
	RESP_MAC_GOOD, /* "mailbox 5 mac=<valid>" */
	RESP_MAC_BAD, /* "mailbox 5 mac=<for another nonce>" */
};

struct responder {
	int fd, other;
	struct netaddr addr;
	enum resp_mode mode;
	volatile int stop;
	int received;
	char last[MINGER_DATAGRAM_MAX + 1];
	pthread_t th;
};

static void respond(struct responder *r, const char *q, size_t n, struct sockaddr_storage *peer,
                    socklen_t plen)
{
	char out[2048];
	int len = 0;
	struct minger_query mq;
	size_t mlen = memchr(q, ' ', n) ? (size_t)((const char *)memchr(q, ' ', n) - q) : n;
	switch (r->mode) {
	case RESP_ECHO_5:
	case RESP_OTHER_SOCKET: len = minger_reply_format(out, sizeof out, q, mlen, 5, NULL); break;
	case RESP_OVERSIZE:
		memset(out, 'a', 1100);
		len = 1100;
		break;
	case RESP_MAC_GOOD:
	case RESP_MAC_BAD: {
		uint8_t mac[MINGER_MAC_LEN];
		if (minger_query_parse((const uint8_t *)q, n, 0, &mq) != MINGER_PARSE_OK ||
		    !mq.has_ext)
			return;
		minger_reply_mac(SECRET, strlen(SECRET), q, mlen, 5,
		                 r->mode == RESP_MAC_GOOD ? mq.nonce : "0000000000000000", mac);
		len = minger_reply_format(out, sizeof out, q, mlen, 5, mac);
		break;
	}
	}
	if (len > 0)
		sendto(r->mode == RESP_OTHER_SOCKET ? r->other : r->fd, out, (size_t)len, 0,
		       (struct sockaddr *)peer, plen);
}

static void *responder_main(void *arg)
{
	struct responder *r = arg;
	while (!r->stop) {
		struct pollfd p = {.fd = r->fd, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		char buf[MINGER_DATAGRAM_MAX + 1];
		struct sockaddr_storage peer;
		socklen_t plen = sizeof peer;
		ssize_t n =
		        recvfrom(r->fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&peer, &plen);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		memcpy(r->last, buf, (size_t)n + 1);
		r->received++;
		respond(r, buf, (size_t)n, &peer, plen);
	}
	return NULL;
}

static int bind_loopback(struct netaddr *out)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
		return -1;
	if (out) {
		out->len = sizeof out->ss;
		getsockname(fd, (struct sockaddr *)&out->ss, &out->len);
	}
	return fd;
}

static int responder_start(struct responder *r, enum resp_mode mode)
{
	memset(r, 0, sizeof *r);
	r->mode = mode;
	r->fd = bind_loopback(&r->addr);
	r->other = bind_loopback(NULL);
	if (r->fd < 0 || r->other < 0)
		return -1;
	return pthread_create(&r->th, NULL, responder_main, r) == 0 ? 0 : -1;
}

static void responder_stop(struct responder *r)
{
	r->stop = 1;
	pthread_join(r->th, NULL);
	close(r->fd);
	close(r->other);
}

static void fast_opts(struct minger_client_opts *o)
{
	minger_client_opts_init(o);
	o->timeout_ms = 150;
	o->retries = 0;
}

TEST(defaults)
{
	struct minger_client_opts o;
	minger_client_opts_init(&o);
	CHECK_INT(o.timeout_ms, 2000);
	CHECK_INT(o.retries, 2);
	CHECK_INT(o.use_ext, 1);
	CHECK_INT(o.window, 64);
	CHECK(o.secret == NULL);
}

TEST(anonymous_answer_and_padding)
{
	struct responder r;
	if (!CHECK(responder_start(&r, RESP_ECHO_5) == 0))
		return;
	struct minger_client_opts o;
	fast_opts(&o);
	char err[128];
	CHECK_INT(minger_client_query(&r.addr, "arvel@example.com", &o, err, sizeof err), 5);
	responder_stop(&r); /* joined: r.last is safe to read */
	CHECK_STR(r.last, "arvel@example.com pad=00");
}

/* Each ignored kind of reply ends in a timeout and bumps its own counter. */
TEST(ignored_replies_are_counted)
{
	static const struct {
		enum resp_mode mode;
		size_t counter; /* offset into struct minger_client_stats */
		int with_secret;
	} cases[] = {
	        {RESP_OTHER_SOCKET, offsetof(struct minger_client_stats, wrong_source), 0},
	        {RESP_OVERSIZE, offsetof(struct minger_client_stats, oversize), 0},
	        {RESP_MAC_BAD, offsetof(struct minger_client_stats, bad_mac), 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct responder r;
		if (!CHECK(responder_start(&r, cases[i].mode) == 0))
			return;
		struct minger_client_opts o;
		fast_opts(&o);
		if (cases[i].with_secret)
			o.secret = SECRET;
		struct minger_client_stats before, after;
		minger_client_stats_get(&before);
		char err[128];
		CHECK_INT(minger_client_query(&r.addr, "arvel@example.com", &o, err, sizeof err),
		          MINGER_RESULT_TIMEOUT);
		minger_client_stats_get(&after);
		uint64_t b, a;
		memcpy(&b, (char *)&before + cases[i].counter, sizeof b);
		memcpy(&a, (char *)&after + cases[i].counter, sizeof a);
		CHECK_INT(a - b, 1);
		CHECK_INT(after.accepted, before.accepted);
		responder_stop(&r);
	}
}

TEST(reply_mac_verified)
{
	struct responder r;
	if (!CHECK(responder_start(&r, RESP_MAC_GOOD) == 0))
		return;
	struct minger_client_opts o;
	fast_opts(&o);
	o.secret = SECRET;
	o.require_reply_mac = 1;
	char err[128];
	CHECK_INT(minger_client_query(&r.addr, "arvel@example.com", &o, err, sizeof err), 5);
	responder_stop(&r);
	CHECK(strncmp(r.last, "arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw== ts=", 48) == 0);
}

TEST(many_with_duplicates_and_unsendable)
{
	struct responder r;
	if (!CHECK(responder_start(&r, RESP_ECHO_5) == 0))
		return;
	struct minger_client_opts o;
	fast_opts(&o);
	o.window = 2;
	const char *const m[] = {"a@example.com", "bad\001@example.com", "a@example.com", "",
	                         "b@example.com"};
	int res[5];
	char err[128];
	CHECK_INT(minger_client_query_many(&r.addr, m, 5, &o, res, err, sizeof err), 0);
	CHECK_INT(res[0], 5);
	CHECK_INT(res[1], MINGER_RESULT_ERROR);
	CHECK_INT(res[2], 5);
	CHECK_INT(res[3], MINGER_RESULT_ERROR);
	CHECK_INT(res[4], 5);
	responder_stop(&r);
}

TEST(option_errors)
{
	struct netaddr a = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(9);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.len = sizeof *sin;
	struct minger_client_opts o;
	char err[128];
	fast_opts(&o);
	o.require_reply_mac = 1; /* no secret */
	CHECK_INT(minger_client_query(&a, "a@example.com", &o, err, sizeof err),
	          MINGER_RESULT_ERROR);
	fast_opts(&o);
	o.secret = "short";
	CHECK_INT(minger_client_query(&a, "a@example.com", &o, err, sizeof err),
	          MINGER_RESULT_ERROR);
	fast_opts(&o);
	struct netaddr bad = {0};
	CHECK_INT(minger_client_query(&bad, "a@example.com", &o, err, sizeof err),
	          MINGER_RESULT_ERROR);
	int res = 99;
	CHECK_INT(minger_client_query_many(&a, NULL, 0, &o, &res, err, sizeof err), 0);
	CHECK_INT(res, 99); /* n == 0 touches nothing */
}

TEST_MAIN(T(defaults), T(anonymous_answer_and_padding), T(ignored_replies_are_counted),
          T(reply_mac_verified), T(many_with_duplicates_and_unsendable), T(option_errors))
