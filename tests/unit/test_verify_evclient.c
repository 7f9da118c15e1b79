/*
 * Unit tests for minger_evclient (the event-loop Minger client) beyond what
 * test_verify drives through the policy: one reply answering two queries for
 * the same server and mailbox, a callback cancelling a query the same reply
 * answers, unsendable mailboxes refused without a callback, retransmissions
 * carrying fresh nonces, and a client freed with queries in flight (no
 * callbacks; ASan checks the memory).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "harness.h"
#include "proto/minger_msg.h"
#include "util/timeutil.h"
#include "verify/minger_evclient.h"

#define SECRET "0123456789abcdef"

static struct event_base *base;

struct server {
	int fd;
	struct netaddr addr;
	struct event *ev;
	int silent;
	int received;
	char nonces[4][MINGER_NONCE_HEX_LEN + 1];
};

static void on_query(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct server *s = arg;
	char buf[2048], out[2048];
	struct sockaddr_storage from;
	socklen_t fl = sizeof from;
	ssize_t n;
	while ((n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl)) > 0) {
		struct minger_query q;
		if (minger_query_parse((const uint8_t *)buf, (size_t)n, 0, &q) != MINGER_PARSE_OK)
			continue;
		if (s->received < 4)
			memcpy(s->nonces[s->received], q.nonce, sizeof q.nonce);
		s->received++;
		if (s->silent)
			continue;
		int len = minger_reply_format(out, sizeof out, q.mailbox, q.mailbox_len, 5, NULL);
		(void)sendto(fd, out, (size_t)len, 0, (struct sockaddr *)&from, fl);
		fl = sizeof from;
	}
}

static void server_start(struct server *s, int silent)
{
	if (!base)
		base = event_base_new(); /* on first use: a test may run alone */
	memset(s, 0, sizeof *s);
	s->silent = silent;
	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(s->fd, (struct sockaddr *)&sin, sizeof sin);
	s->addr.len = sizeof s->addr.ss;
	getsockname(s->fd, (struct sockaddr *)&s->addr.ss, &s->addr.len);
	s->ev = event_new(base, s->fd, EV_READ | EV_PERSIST, on_query, s);
	event_add(s->ev, NULL);
}

static void server_stop(struct server *s)
{
	event_free(s->ev);
	close(s->fd);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
}

static int run_until(const int *flag)
{
	struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 20000};
	event_add(tick, &tv);
	uint64_t end = time_mono_ms() + 10000;
	while (!*flag && time_mono_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(tick);
	return *flag;
}

struct call {
	int calls, result;
	struct minger_evq *cancel_me; /* cancelled from inside the callback */
	int *done;
};

static void on_result(void *arg, int result, uint64_t rtt_us)
{
	(void)rtt_us;
	struct call *c = arg;
	c->calls++;
	c->result = result;
	minger_evclient_cancel(c->cancel_me);
	c->cancel_me = NULL;
	if (c->done)
		*c->done = 1;
}

static const struct minger_slot_cfg anon = {0};

TEST(one_reply_answers_both_twins)
{
	struct server s;
	server_start(&s, 0);
	char err[128];
	struct minger_evclient *c = minger_evclient_new(base, 60000, 0, err, sizeof err);
	if (!CHECK(c != NULL))
		return;
	int done = 0;
	struct call a = {.done = NULL}, b = {.done = &done};
	CHECK(minger_evclient_query(c, &s.addr, &anon, "x@example.com", 13, on_result, &a) != NULL);
	CHECK(minger_evclient_query(c, &s.addr, &anon, "x@example.com", 13, on_result, &b) != NULL);
	CHECK_INT(minger_evclient_pending(c), 2);
	CHECK(run_until(&done));
	CHECK_INT(a.calls, 1); /* in the same turn as b: one reply answered both */
	CHECK_INT(a.result, 5);
	CHECK_INT(b.calls, 1);
	CHECK_INT(minger_evclient_pending(c), 0);
	minger_evclient_free(c);
	server_stop(&s);
}

TEST(callback_cancels_its_twin)
{
	struct server s;
	server_start(&s, 0);
	char err[128];
	struct minger_evclient *c = minger_evclient_new(base, 60000, 0, err, sizeof err);
	if (!CHECK(c != NULL))
		return;
	int done = 0;
	struct call a = {.done = &done}, b = {.done = &done};
	struct minger_evq *qa =
	        minger_evclient_query(c, &s.addr, &anon, "y@example.com", 13, on_result, &a);
	struct minger_evq *qb =
	        minger_evclient_query(c, &s.addr, &anon, "y@example.com", 13, on_result, &b);
	a.cancel_me = qb;
	b.cancel_me = qa;
	CHECK(run_until(&done));
	/* Whichever ran first cancelled the other, though one reply answered both. */
	CHECK_INT(a.calls + b.calls, 1);
	CHECK_INT(minger_evclient_pending(c), 0);
	minger_evclient_free(c);
	server_stop(&s);
}

TEST(unsendable_refused_without_callback)
{
	struct server s;
	server_start(&s, 0);
	char err[128];
	struct minger_evclient *c = minger_evclient_new(base, 60000, 0, err, sizeof err);
	if (!CHECK(c != NULL))
		return;
	struct call a = {0};
	CHECK(minger_evclient_query(c, &s.addr, &anon, "", 0, on_result, &a) == NULL);
	CHECK(minger_evclient_query(c, &s.addr, &anon, "a\nb@example.com", 15, on_result, &a) ==
	      NULL);
	char big[MINGER_DATAGRAM_MAX + 2];
	memset(big, 'a', sizeof big);
	CHECK(minger_evclient_query(c, &s.addr, &anon, big, sizeof big, on_result, &a) == NULL);
	struct netaddr unix_addr = {.len = sizeof(sa_family_t)};
	unix_addr.ss.ss_family = AF_UNIX;
	CHECK(minger_evclient_query(c, &unix_addr, &anon, "x@example.com", 13, on_result, &a) ==
	      NULL);
	CHECK_INT(minger_evclient_pending(c), 0);
	CHECK_INT(a.calls, 0);
	CHECK(minger_evclient_new(base, 0, 0, err, sizeof err) == NULL);
	minger_evclient_free(c);
	server_stop(&s);
}

TEST(retransmissions_fresh_nonces_then_timeout)
{
	struct server s;
	server_start(&s, 1);
	char err[128];
	struct minger_evclient *c = minger_evclient_new(base, 100, 2, err, sizeof err);
	if (!CHECK(c != NULL))
		return;
	struct minger_slot_cfg cfg = {.secret = SECRET, .ext = 1};
	int done = 0;
	struct call a = {.done = &done};
	CHECK(minger_evclient_query(c, &s.addr, &cfg, "z@example.com", 13, on_result, &a) != NULL);
	CHECK(run_until(&done));
	CHECK_INT(a.result, MINGER_RESULT_TIMEOUT);
	CHECK_INT(s.received, 3);
	CHECK(strcmp(s.nonces[0], s.nonces[1]) != 0 && strcmp(s.nonces[1], s.nonces[2]) != 0);
	minger_evclient_free(c);
	server_stop(&s);
}

TEST(free_with_queries_in_flight)
{
	struct server s;
	server_start(&s, 1);
	char err[128];
	struct minger_evclient *c = minger_evclient_new(base, 60000, 0, err, sizeof err);
	if (!CHECK(c != NULL))
		return;
	struct call a = {0};
	for (int i = 0; i < 100; i++) {
		char m[32];
		snprintf(m, sizeof m, "u%d@example.com", i);
		CHECK(minger_evclient_query(c, &s.addr, &anon, m, strlen(m), on_result, &a) !=
		      NULL);
	}
	CHECK_INT(minger_evclient_pending(c), 100);
	minger_evclient_free(c);
	CHECK_INT(a.calls, 0);
	server_stop(&s);
	event_base_free(base);
	base = NULL;
}

TEST_MAIN(T(one_reply_answers_both_twins), T(callback_cancels_its_twin),
          T(unsendable_refused_without_callback), T(retransmissions_fresh_nonces_then_timeout),
          T(free_with_queries_in_flight))
