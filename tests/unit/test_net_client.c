/*
 * Unit tests for net/net_client: the SNI name (RFC 6066 3: host names only,
 * never an address literal), sockaddr lengths, which errors are local, the
 * client TLS context (no verification: opportunistic), and a connect to a
 * closed loopback port that fails through the bufferevent, not at once.
 */
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "net/net_client.h"

TEST(sni_names)
{
	static const struct {
		const char *host, *want; /* want NULL: no SNI */
	} cases[] = {
	        {"pop.isp.example", "pop.isp.example"},
	        {"MX1.Example.COM.", "MX1.Example.COM"},
	        {"under_score.test", "under_score.test"},
	        {"192.0.2.1", NULL},
	        {"2001:db8::1", NULL},
	        {"[192.0.2.1]", NULL},
	        {"", NULL},
	        {".", NULL},
	        {"bad host", NULL},
	        {"bad\x01host", NULL},
	};
	char out[256];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int got = net_client_sni(cases[i].host, out, sizeof out);
		CHECK_INT(got, cases[i].want != NULL);
		if (got && cases[i].want)
			CHECK_STR(out, cases[i].want);
	}
	CHECK_INT(net_client_sni(NULL, out, sizeof out), 0);
	char longname[300];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	CHECK_INT(net_client_sni(longname, out, sizeof out), 0); /* does not fit: none */
}

TEST(sa_len_and_local_errors)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	ss.ss_family = AF_INET;
	CHECK_INT(net_client_sa_len(&ss), sizeof(struct sockaddr_in));
	ss.ss_family = AF_INET6;
	CHECK_INT(net_client_sa_len(&ss), sizeof(struct sockaddr_in6));
	ss.ss_family = AF_UNIX;
	CHECK_INT(net_client_sa_len(&ss), 0);
	CHECK(net_client_local_errno(EMFILE) && net_client_local_errno(ENOMEM));
	CHECK(!net_client_local_errno(ECONNREFUSED) && !net_client_local_errno(ENETUNREACH));
}

TEST(tls_context_verifies_nothing)
{
	SSL_CTX *ctx = net_client_tls_ctx_new();
	CHECK(ctx != NULL);
	CHECK_INT(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
	SSL_CTX_free(ctx);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	*(short *)arg = what;
	event_base_loopbreak(bufferevent_get_base(bev));
}

TEST(connect_refused_is_an_event)
{
	/* A port nobody listens on: bind one, learn its number, close it. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
	CHECK(getsockname(s, (struct sockaddr *)&a, &len) == 0);
	close(s);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	memcpy(&ss, &a, sizeof a);
	struct event_base *base = event_base_new();
	int err = -1;
	struct bufferevent *b = net_client_connect(base, &ss, &err);
	short what = 0;
	if (b != NULL) {
		CHECK_INT(err, 0);
		bufferevent_setcb(b, NULL, NULL, on_event, &what);
		struct timeval tv = {5, 0};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
		CHECK(what & BEV_EVENT_ERROR);
		CHECK(!(what & BEV_EVENT_CONNECTED));
		bufferevent_free(b);
	} else {
		CHECK_INT(err, ECONNREFUSED); /* refused at once is allowed too */
	}
	ss.ss_family = AF_UNIX;
	CHECK(net_client_connect(base, &ss, &err) == NULL);
	CHECK_INT(err, EAFNOSUPPORT);
	event_base_free(base);
}

TEST_MAIN(T(sni_names), T(sa_len_and_local_errors), T(tls_context_verifies_nothing),
          T(connect_refused_is_an_event))
