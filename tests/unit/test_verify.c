/*
 * Unit tests for verify (the Domain Sharing / gateway / forward policy) with
 * real loopback UDP: in-test Minger responders on the same libevent loop as the
 * verifier, so nothing sleeps (the loop runs until the answer, with a deadline
 * that only a bug reaches). Each test loads a real configuration file.
 *
 * What they catch: parallel fan-out (N peers = N datagrams sent before any reply
 * is read), the first 5 winning over silent peers, all-3 -> NOTFOUND, a silent
 * peer or a wrong secret -> TEMPFAIL naming the peer (never NOTFOUND), hostile
 * replies ignored, cache hits without datagrams, the cache kept across a restart
 * and expiring on a fake clock, gateways (defer / accept / 3 / 4 / peers too),
 * forward domains, senders, cancel before the answer, peers.status, start-up
 * errors that name the line or file.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "harness.h"
#include "proto/minger_msg.h"
#include "util/strutil.h"
#include "util/timeutil.h"
#include "verify/minger_client.h"
#include "verify/verify.h"
#include "verify/verify_servers.h"
#include "verify/verify_status.h"

#define SECRET "0123456789abcdef"
#define WRONG_SECRET "fedcba9876543210"
#define T0 1700000000
#define DEADLINE_MS 10000 /* only a bug waits this long */

/* ---- the responders ---- */

enum resp_mode {
	RESP_TABLE, /* answers from its table */
	RESP_SILENT, /* never answers */
	RESP_HOSTILE_FIRST, /* wrong source, other mailbox, malformed, oversize; then the answer */
	RESP_BAD_MAC, /* the answer with a mac for another nonce */
};

struct resp {
	int fd, other;
	unsigned port;
	struct event *ev;
	enum resp_mode mode;
	const char *secret; /* the server's secret; NULL: anonymous queries answered */
	const char *active[4]; /* mailboxes answered 5 (any case) */
	const char *disabled; /* answered 4 */
	int received, replied;
};

static struct event_base *base;
static char tmpdir[128];

static int bind_loopback(unsigned *port)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof sin;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		return -1;
	if (port)
		*port = ntohs(sin.sin_port);
	return fd;
}

static int status_for(const struct resp *r, const char *m, size_t len)
{
	for (size_t i = 0; i < 4 && r->active[i]; i++)
		if (strlen(r->active[i]) == len && ascii_equal_ci(m, len, r->active[i]))
			return 5;
	if (r->disabled && strlen(r->disabled) == len && ascii_equal_ci(m, len, r->disabled))
		return 4;
	return 3;
}

static void send_to(int fd, const void *b, size_t n, const struct sockaddr_storage *to,
                    socklen_t tl)
{
	(void)sendto(fd, b, n, 0, (const struct sockaddr *)to, tl);
}

static void send_hostile(struct resp *r, const struct minger_query *q,
                         const struct sockaddr_storage *to, socklen_t tl)
{
	char out[2048];
	int n = minger_reply_format(out, sizeof out, q->mailbox, q->mailbox_len, 5, NULL);
	send_to(r->other, out, (size_t)n, to, tl); /* from another port */
	n = minger_reply_format(out, sizeof out, "other@example.com", 17, 5, NULL);
	send_to(r->fd, out, (size_t)n, to, tl); /* a mailbox not asked */
	send_to(r->fd, "garbage 9 x", 11, to, tl); /* malformed */
	memset(out, 'a', 1100);
	send_to(r->fd, out, 1100, to, tl); /* oversize */
}

static void on_query(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct resp *r = arg;
	char buf[2048], out[2048];
	struct sockaddr_storage from;
	socklen_t fl = sizeof from;
	ssize_t n;
	while ((n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl)) > 0) {
		r->received++;
		struct minger_query q;
		if (r->mode == RESP_SILENT ||
		    minger_query_parse((const uint8_t *)buf, (size_t)n, 0, &q) != MINGER_PARSE_OK)
			continue;
		int st = status_for(r, q.mailbox, q.mailbox_len);
		int authed = !r->secret ? q.digest_form == MINGER_DIGEST_NONE
		                        : minger_digest_matches(&q, r->secret, strlen(r->secret));
		if (!authed)
			st = 2;
		uint8_t mac[MINGER_MAC_LEN];
		int with_mac = authed && r->secret && q.has_ext;
		if (with_mac)
			minger_reply_mac(r->secret, strlen(r->secret), q.mailbox, q.mailbox_len, st,
			                 r->mode == RESP_BAD_MAC ? "0123456789abcdef" : q.nonce,
			                 mac);
		if (r->mode == RESP_HOSTILE_FIRST)
			send_hostile(r, &q, &from, fl);
		int len = minger_reply_format(out, sizeof out, q.mailbox, q.mailbox_len, st,
		                              with_mac ? mac : NULL);
		send_to(r->fd, out, (size_t)len, &from, fl);
		r->replied++;
		fl = sizeof from;
	}
}

static void resp_start(struct resp *r, enum resp_mode mode, const char *secret)
{
	memset(r, 0, sizeof *r);
	r->mode = mode;
	r->secret = secret;
	r->fd = bind_loopback(&r->port);
	r->other = bind_loopback(NULL);
	r->ev = event_new(base, r->fd, EV_READ | EV_PERSIST, on_query, r);
	event_add(r->ev, NULL);
}

static void resp_stop(struct resp *r)
{
	event_free(r->ev);
	close(r->fd);
	close(r->other);
}

/* ---- the loop ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
}

/* Runs the loop until *flag is set (or the deadline: a failure). Returns *flag. */
static int run_until(const int *flag)
{
	struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 20000};
	event_add(tick, &tv);
	uint64_t end = time_mono_ms() + DEADLINE_MS;
	while (!*flag && time_mono_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(tick);
	return *flag;
}

struct got {
	int done;
	int calls;
	struct verify_answer a;
};

static void on_answer(void *arg, const struct verify_answer *a)
{
	struct got *g = arg;
	g->a = *a;
	g->calls++;
	g->done = 1;
}

/* Asks for mailbox and waits for the verdict. Returns what verify_rcpt returned. */
static int rcpt(struct verify *v, const char *mailbox, struct got *g)
{
	memset(g, 0, sizeof *g);
	struct verify_req *req = NULL;
	int rc = verify_rcpt(v, mailbox, strlen(mailbox), "", 0, &g->a, on_answer, g, &req);
	if (rc == 1)
		CHECK(run_until(&g->done));
	return rc;
}

/* ---- configuration ---- */

static void write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fchmod(fileno(f), 0600) != 0 || fclose(f) != 0) {
		printf("cannot write %s\n", path);
		exit(2);
	}
}

static void setup(void)
{
	if (tmpdir[0])
		return;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_verify.XXXXXX");
	if (!mkdtemp(tmpdir))
		exit(2);
	char p[256];
	snprintf(p, sizeof p, "%s/state", tmpdir);
	mkdir(p, 0700);
	write_file("secret.txt", SECRET "\n");
	write_file("wrong.txt", WRONG_SECRET "\n");
	base = event_base_new();
}

/* Removes the cache and the status file: each test starts cold. */
static void fresh_state(void)
{
	static const char *const files[] = {"vcache.db", "vcache.db-wal", "vcache.db-shm",
	                                    "peers.status"};
	char p[256];
	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof p, "%s/state/%s", tmpdir, files[i]);
		unlink(p);
	}
	time_fake_set(T0);
}

/* Loads "state_dir + local_domains + extra" as a config file. */
static struct conf *conf_text(const char *extra)
{
	char text[8192], path[256];
	snprintf(text, sizeof text,
	         "state_dir = state\nlocal_domains = example.com other.example\n"
	         "minger_retries = 1\n%s%s",
	         strstr(extra, "minger_timeout_ms") ? "" : "minger_timeout_ms = 100\n", extra);
	write_file("t.conf", text);
	snprintf(path, sizeof path, "%s/t.conf", tmpdir);
	struct conf_errors errs = {0};
	struct conf *c = conf_load_flags(path, CONF_LOAD_SKIP_SECRETS, &errs);
	if (!c)
		conf_errors_print(&errs);
	conf_errors_free(&errs);
	return c;
}

/* A domain_sharing_host line for responder r (SMTP port 2500 + i). */
static int peer_line(char *out, size_t outsz, const struct resp *r, int i, const char *secret)
{
	return snprintf(out, outsz, "domain_sharing_host = 127.0.0.1:%d minger_port=%u%s%s\n",
	                2500 + i, r->port, secret ? " secret_file=" : "", secret ? secret : "");
}

struct fixture {
	struct conf *c;
	struct verify *v;
};

static int fixture_new(struct fixture *f, const char *extra)
{
	char err[512] = "";
	f->c = conf_text(extra);
	f->v = f->c ? verify_new(base, f->c, NULL, err, sizeof err) : NULL;
	if (!f->v)
		printf("  verify_new: %s\n", err);
	return f->v != NULL;
}

static void fixture_free(struct fixture *f)
{
	verify_free(f->v);
	conf_free(f->c);
}

/* n peers with secrets from resps[] (secret file per peer: NULL = secret.txt). */
static int peers_fixture(struct fixture *f, struct resp *rs, size_t n, const char *more)
{
	char extra[4096] = "domain_sharing = yes\n";
	size_t len = strlen(extra);
	for (size_t i = 0; i < n; i++)
		len += (size_t)peer_line(extra + len, sizeof extra - len, &rs[i], (int)i,
		                         rs[i].secret ? "secret.txt" : NULL);
	snprintf(extra + len, sizeof extra - len, "%s", more ? more : "");
	return fixture_new(f, extra);
}

/* ---- Domain Sharing ---- */

TEST(fanout_one_round_first_5_wins)
{
	setup();
	fresh_state();
	struct resp rs[3];
	resp_start(&rs[0], RESP_TABLE, SECRET);
	resp_start(&rs[1], RESP_TABLE, SECRET);
	resp_start(&rs[2], RESP_TABLE, SECRET);
	rs[1].active[0] = "bob@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, rs, 3, NULL)))
		return;
	struct minger_client_stats s0, s1;
	minger_client_stats_get(&s0);
	struct got g = {0};
	struct verify_req *req = NULL;
	CHECK_INT(verify_rcpt(f.v, "Bob@example.com", 15, "", 0, &g.a, on_answer, &g, &req), 1);
	/* Every peer's datagram left inside verify_rcpt, before any reply was read. */
	minger_client_stats_get(&s1);
	CHECK_INT(s1.sent - s0.sent, 3);
	CHECK_INT(g.calls, 0); /* never called back from inside verify_rcpt */
	CHECK(run_until(&g.done));
	CHECK_INT(g.calls, 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_STR(g.a.route, "[127.0.0.1]:2501");
	CHECK_INT(g.a.cached, 0);
	CHECK_INT(rs[0].received + rs[1].received + rs[2].received, 3);
	CHECK_INT(verify_pending(f.v), 0);
	fixture_free(&f);
	for (int i = 0; i < 3; i++)
		resp_stop(&rs[i]);
}

TEST(first_5_does_not_wait_for_a_silent_peer)
{
	setup();
	fresh_state();
	struct resp rs[2];
	resp_start(&rs[0], RESP_SILENT, SECRET);
	resp_start(&rs[1], RESP_TABLE, SECRET);
	rs[1].active[0] = "bob@example.com";
	struct fixture f;
	/* A minute's timeout: waiting for the silent peer would hit the test's deadline. */
	if (!CHECK(peers_fixture(&f, rs, 2, "minger_timeout_ms = 60000\n")))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_STR(g.a.route, "[127.0.0.1]:2501");
	fixture_free(&f);
	resp_stop(&rs[0]);
	resp_stop(&rs[1]);
}

/* What a VERIFY_FLAG_FRESH callback saw of each server (its list lives only so long). */
struct got_fresh {
	struct got g;
	size_t n;
	int results[4];
	char names[4][VERIFY_STATUS_NAME_MAX];
};

static void on_fresh(void *arg, const struct verify_answer *a)
{
	struct got_fresh *f = arg;
	on_answer(&f->g, a);
	f->n = a->nservers;
	for (size_t i = 0; i < a->nservers && i < 4; i++) {
		f->results[i] = a->servers[i].result;
		snprintf(f->names[i], sizeof f->names[i], "%s", a->servers[i].server->name);
	}
}

/* `account add`'s verifier: every peer asked and listed, no first-5 shortcut, no cache. */
TEST(fresh_asks_everyone_never_the_cache)
{
	setup();
	fresh_state();
	struct resp rs[3];
	resp_start(&rs[0], RESP_TABLE, SECRET);
	resp_start(&rs[1], RESP_SILENT, SECRET);
	resp_start(&rs[2], RESP_TABLE, SECRET);
	rs[0].active[0] = "bob@example.com";
	rs[2].active[0] = "carl@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, rs, 3, NULL)))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1); /* the daemon's view: cached now */
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK(g.a.servers == NULL && g.a.nservers == 0);
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 0);
	verify_sync(f.v);
	char err[512] = "";
	struct verify *fresh = verify_new_flags(
	        base, f.c, NULL, VERIFY_FLAG_NO_STATUS | VERIFY_FLAG_FRESH, err, sizeof err);
	if (!CHECK(fresh != NULL)) {
		printf("  %s\n", err);
		fixture_free(&f);
		return;
	}
	int asked = rs[0].replied;
	struct got_fresh gf = {0};
	struct verify_req *req = NULL;
	CHECK_INT(verify_rcpt(fresh, "bob@example.com", 15, "", 0, &gf.g.a, on_fresh, &gf, &req),
	          1); /* the cache's 5 is not trusted */
	CHECK(run_until(&gf.g.done));
	CHECK_INT(rs[0].replied - asked, 1);
	CHECK_INT(gf.g.a.status, VERIFY_REMOTE);
	if (CHECK_INT(gf.n, 3)) { /* the silent peer was waited for, not cancelled by the 5 */
		CHECK_INT(gf.results[0], 5);
		CHECK_INT(gf.results[1], MINGER_RESULT_TIMEOUT);
		CHECK_INT(gf.results[2], 3);
		CHECK_STR(gf.names[1], "127.0.0.1:2501");
	}
	memset(&gf, 0, sizeof gf);
	CHECK_INT(verify_rcpt(fresh, "carl@example.com", 16, "", 0, &gf.g.a, on_fresh, &gf, &req),
	          1);
	CHECK(run_until(&gf.g.done));
	CHECK(gf.n == 3 && gf.results[2] == 5);
	verify_free(fresh);
	/* Nor written: the daemon's verifier still has to ask about carl. */
	CHECK_INT(rcpt(f.v, "carl@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	fixture_free(&f);
	for (int i = 0; i < 3; i++)
		resp_stop(&rs[i]);
}

TEST(all_3_is_notfound)
{
	setup();
	fresh_state();
	struct resp rs[2];
	resp_start(&rs[0], RESP_TABLE, SECRET);
	resp_start(&rs[1], RESP_TABLE, NULL); /* an anonymous peer (MDaemon without a password) */
	struct fixture f;
	if (!CHECK(peers_fixture(&f, rs, 2, "")))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "nobody@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	CHECK_INT(rs[0].replied + rs[1].replied, 2);
	/* A 3 from a peer is not cached: the next RCPT asks again. */
	CHECK_INT(rcpt(f.v, "nobody@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	fixture_free(&f);
	resp_stop(&rs[0]);
	resp_stop(&rs[1]);
}

TEST(silent_peer_is_tempfail_naming_it)
{
	setup();
	fresh_state();
	struct resp rs[2];
	resp_start(&rs[0], RESP_TABLE, SECRET);
	resp_start(&rs[1], RESP_SILENT, SECRET);
	struct fixture f;
	if (!CHECK(peers_fixture(&f, rs, 2, "")))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "carol@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_TEMPFAIL);
	CHECK_INT(g.a.servers_asked, 1); /* 451 4.4.3, not the directory's 4.3.0 */
	CHECK(strstr(g.a.reason, "127.0.0.1:2501") != NULL);
	CHECK(strstr(g.a.reason, "no answer") != NULL);
	CHECK_INT(rs[1].received, 2); /* the query and its one retransmission */
	fixture_free(&f);
	resp_stop(&rs[0]);
	resp_stop(&rs[1]);
}

TEST(wrong_secret_is_tempfail)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	r.active[0] = "bob@example.com";
	char extra[512];
	int n = snprintf(extra, sizeof extra, "domain_sharing = yes\n");
	peer_line(extra + n, sizeof extra - n, &r, 0, "wrong.txt");
	struct fixture f;
	if (!CHECK(fixture_new(&f, extra)))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_TEMPFAIL);
	CHECK(strstr(g.a.reason, "status 2") != NULL);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(bad_reply_mac_is_no_answer)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_BAD_MAC, SECRET);
	r.active[0] = "bob@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, &r, 1, "")))
		return;
	struct minger_client_stats s0, s1;
	minger_client_stats_get(&s0);
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1);
	minger_client_stats_get(&s1);
	CHECK_INT(g.a.status, VERIFY_TEMPFAIL); /* a forged 5 is not an answer, nor a 550 */
	CHECK_INT(s1.bad_mac - s0.bad_mac, 2);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(hostile_replies_ignored_then_answer)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_HOSTILE_FIRST, SECRET);
	r.active[0] = "bob@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, &r, 1, "minger_timeout_ms = 60000\n")))
		return;
	struct minger_client_stats s0, s1;
	minger_client_stats_get(&s0);
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1);
	minger_client_stats_get(&s1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_INT(s1.wrong_source - s0.wrong_source, 1);
	CHECK_INT(s1.wrong_mailbox - s0.wrong_mailbox, 1);
	CHECK_INT(s1.malformed - s0.malformed, 1);
	CHECK_INT(s1.oversize - s0.oversize, 1);
	CHECK_INT(s1.accepted - s0.accepted, 1);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(cache_hit_sends_nothing_and_survives_restart)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	r.active[0] = "bob@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, &r, 1, "")))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	/* Warm: answered now, any case, no datagram. */
	CHECK_INT(rcpt(f.v, "BOB@Example.com", &g), 0);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_STR(g.a.route, "[127.0.0.1]:2500");
	CHECK_INT(g.a.cached, 1);
	CHECK_INT(r.received, 1);
	fixture_free(&f); /* writes the cache */
	/* A restart with the peer down: the cached answer still accepts (the seed's 5 days). */
	r.mode = RESP_SILENT;
	if (!CHECK(peers_fixture(&f, &r, 1, "")))
		return;
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 0);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_INT(g.a.cached, 1);
	CHECK_INT(r.received, 1);
	/* Past domain_sharing_cache_ttl (5 days) the entry is gone: asked, and now 451. */
	time_fake_set(T0 + 5 * 86400 + 1);
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_TEMPFAIL);
	CHECK_INT(r.received, 3);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(cache_ttl_from_config)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	r.active[0] = "bob@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, &r, 1, "domain_sharing_cache_ttl = 60\n")))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1);
	time_fake_set(T0 + 59);
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 0);
	time_fake_set(T0 + 60);
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_INT(r.received, 2);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(disabled_on_a_peer)
{
	setup();
	fresh_state();
	struct resp rs[2];
	resp_start(&rs[0], RESP_TABLE, SECRET);
	resp_start(&rs[1], RESP_TABLE, SECRET);
	rs[1].disabled = "dora@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, rs, 2, "")))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "dora@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE_DISABLED);
	fixture_free(&f);
	resp_stop(&rs[0]);
	resp_stop(&rs[1]);
}

TEST(pipelined_rcpts_one_round)
{
	setup();
	fresh_state();
	struct resp rs[2];
	resp_start(&rs[0], RESP_TABLE, SECRET);
	resp_start(&rs[1], RESP_TABLE, SECRET);
	rs[0].active[0] = "u7@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, rs, 2, "minger_timeout_ms = 60000\n")))
		return;
	struct got g[50];
	struct verify_req *req;
	char m[50][32];
	struct minger_client_stats s0, s1;
	minger_client_stats_get(&s0);
	for (int i = 0; i < 50; i++) {
		snprintf(m[i], sizeof m[i], "u%d@example.com", i);
		memset(&g[i], 0, sizeof g[i]);
		CHECK_INT(verify_rcpt(f.v, m[i], strlen(m[i]), "", 0, &g[i].a, on_answer, &g[i],
		                      &req),
		          1);
	}
	minger_client_stats_get(&s1);
	CHECK_INT(s1.sent - s0.sent, 100); /* all asked before any answer was read */
	CHECK_INT(verify_pending(f.v), 50);
	for (int i = 0; i < 50; i++)
		CHECK(run_until(&g[i].done));
	CHECK_INT(g[7].a.status, VERIFY_REMOTE);
	CHECK_INT(g[8].a.status, VERIFY_NOTFOUND);
	minger_client_stats_get(&s1);
	CHECK_INT(s1.retransmits - s0.retransmits, 0);
	CHECK_INT(rs[0].received + rs[1].received, 100);
	fixture_free(&f);
	resp_stop(&rs[0]);
	resp_stop(&rs[1]);
}

TEST(cancel_before_answer)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	r.active[0] = "bob@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, &r, 1, "minger_timeout_ms = 60000\n")))
		return;
	struct minger_client_stats s0, s1;
	minger_client_stats_get(&s0);
	struct got g = {0};
	struct verify_req *req = NULL;
	CHECK_INT(verify_rcpt(f.v, "bob@example.com", 15, "", 0, &g.a, on_answer, &g, &req), 1);
	verify_cancel(req);
	CHECK_INT(verify_pending(f.v), 0);
	/* The reply arrives for a query no longer asked: counted, and no callback. */
	struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 20000};
	event_add(tick, &tv);
	uint64_t end = time_mono_ms() + DEADLINE_MS;
	do {
		event_base_loop(base, EVLOOP_ONCE);
		minger_client_stats_get(&s1);
	} while (s1.wrong_mailbox == s0.wrong_mailbox && time_mono_ms() < end);
	event_free(tick);
	CHECK_INT(r.replied, 1);
	CHECK_INT(s1.wrong_mailbox - s0.wrong_mailbox, 1);
	CHECK_INT(g.calls, 0);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(domains_file_limits_sharing)
{
	setup();
	fresh_state();
	write_file("shared.txt", "# shared domains\n\nExample.COM\n");
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	r.active[0] = "bob@other.example";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, &r, 1, "domain_sharing_domains_file = shared.txt\n")))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@other.example", &g), 0); /* a local domain not shared */
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	CHECK_INT(r.received, 0);
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	CHECK_INT(r.received, 1);
	CHECK_INT(rcpt(f.v, "x@elsewhere.example", &g), 0);
	CHECK_INT(g.a.status, VERIFY_FOREIGN);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(sharing_off_asks_nobody)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	r.active[0] = "bob@example.com";
	char extra[512];
	peer_line(extra, sizeof extra, &r, 0, "secret.txt");
	struct fixture f;
	if (!CHECK(fixture_new(&f, extra))) /* domain_sharing = no (the default) */
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@example.com", &g), 0);
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	CHECK_INT(r.received, 0);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(senders)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	r.active[0] = "bob@example.com";
	struct fixture f;
	if (!CHECK(peers_fixture(&f, &r, 1, "")))
		return;
	struct got g = {0};
	struct verify_req *req;
	CHECK_INT(verify_sender(f.v, "bob@example.com", 15, &g.a, on_answer, &g, &req), 1);
	CHECK(run_until(&g.done));
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	memset(&g, 0, sizeof g);
	CHECK_INT(verify_sender(f.v, "x@elsewhere.example", 19, &g.a, on_answer, &g, &req), 0);
	CHECK_INT(g.a.status, VERIFY_FOREIGN);
	fixture_free(&f);
	if (!CHECK(peers_fixture(&f, &r, 1, "domain_sharing_query_senders = no\n")))
		return;
	CHECK_INT(verify_sender(f.v, "carl@example.com", 16, &g.a, on_answer, &g, &req), 0);
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	CHECK_INT(r.received, 1);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(client_is_peer)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	struct fixture f;
	if (!CHECK(peers_fixture(&f, &r, 1, "")))
		return;
	CHECK_INT(verify_client_is_peer(f.v, "127.0.0.1"), 1);
	CHECK_INT(verify_client_is_peer(f.v, "127.0.0.1:40000"), 1);
	CHECK_INT(verify_client_is_peer(f.v, "::ffff:127.0.0.1"), 1);
	CHECK_INT(verify_client_is_peer(f.v, "[::ffff:127.0.0.1]:25"), 1);
	CHECK_INT(verify_client_is_peer(f.v, "127.0.0.2"), 0);
	CHECK_INT(verify_client_is_peer(f.v, "::1"), 0);
	CHECK_INT(verify_client_is_peer(f.v, "junk"), 0);
	CHECK_INT(verify_client_is_peer(f.v, ""), 0);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(ipv6_peer)
{
	setup();
	fresh_state();
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	socklen_t len = sizeof s6;
	if (fd < 0 || bind(fd, (struct sockaddr *)&s6, sizeof s6) < 0 ||
	    getsockname(fd, (struct sockaddr *)&s6, &len) < 0) {
		if (fd >= 0)
			close(fd);
		SKIP("no IPv6 loopback here");
		return;
	}
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET); /* an IPv4 one, replaced by the IPv6 socket */
	event_free(r.ev);
	close(r.fd);
	r.fd = fd;
	r.port = ntohs(s6.sin6_port);
	r.ev = event_new(base, r.fd, EV_READ | EV_PERSIST, on_query, &r);
	event_add(r.ev, NULL);
	r.active[0] = "vic@example.com";
	char extra[512];
	snprintf(extra, sizeof extra,
	         "domain_sharing = yes\n"
	         "domain_sharing_host = [IPv6:::1]:2525 minger_port=%u secret_file=secret.txt\n",
	         r.port);
	struct fixture f;
	if (!CHECK(fixture_new(&f, extra)))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "vic@example.com", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_STR(g.a.route, "[IPv6:::1]:2525");
	CHECK_INT(verify_client_is_peer(f.v, "::1"), 1);
	CHECK_INT(verify_client_is_peer(f.v, "[::1]:4000"), 1);
	CHECK_INT(verify_client_is_peer(f.v, "127.0.0.1"), 0);
	fixture_free(&f);
	resp_stop(&r);
}

/* ---- gateway and forward domains ---- */

static int gw_fixture(struct fixture *f, const char *key, const struct resp *r, const char *opts,
                      const char *more)
{
	char extra[2048];
	snprintf(extra, sizeof extra,
	         "%s = gw.example host=[127.0.0.1]:2600 minger=127.0.0.1:%u secret_file=secret.txt "
	         "%s\n%s",
	         key, r->port, opts, more ? more : "");
	return fixture_new(f, extra);
}

TEST(gateway_answers)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	r.active[0] = "ann@gw.example";
	r.disabled = "dan@gw.example";
	struct fixture f;
	if (!CHECK(gw_fixture(&f, "gateway_domain", &r, "", NULL)))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "ann@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_STR(g.a.route, ""); /* routed by domain to host= */
	CHECK_INT(rcpt(f.v, "dan@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE_DISABLED);
	CHECK_INT(rcpt(f.v, "nobody@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	/* Gateways cache 3, 4 and 5 (minger_cache_*_ttl). */
	CHECK_INT(rcpt(f.v, "nobody@gw.example", &g), 0);
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	CHECK_INT(rcpt(f.v, "ann@GW.example", &g), 0);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_INT(r.received, 3);
	time_fake_set(T0 + 3601); /* the negative ttl (1 h) is over, the positive (5 d) is not */
	CHECK_INT(rcpt(f.v, "nobody@gw.example", &g), 1);
	CHECK_INT(rcpt(f.v, "ann@gw.example", &g), 0);
	fixture_free(&f);
	resp_stop(&r);
}

TEST(gateway_unreachable_defer_and_accept)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_SILENT, SECRET);
	struct fixture f;
	if (!CHECK(gw_fixture(&f, "gateway_domain", &r, "", NULL)))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "ann@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_TEMPFAIL);
	CHECK(strstr(g.a.reason, "gw.example") != NULL);
	fixture_free(&f);
	if (!CHECK(gw_fixture(&f, "gateway_domain", &r, "unreachable=accept", NULL)))
		return;
	CHECK_INT(rcpt(f.v, "ann@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_STR(g.a.route, "");
	fixture_free(&f);
	resp_stop(&r);
}

TEST(gateway_with_domain_sharing)
{
	setup();
	fresh_state();
	struct resp gw, peer;
	resp_start(&gw, RESP_TABLE, SECRET);
	resp_start(&peer, RESP_TABLE, SECRET);
	peer.active[0] = "pat@gw.example";
	char more[512];
	peer_line(more, sizeof more, &peer, 0, "secret.txt");
	struct fixture f;
	if (!CHECK(gw_fixture(&f, "gateway_domain", &gw, "domain_sharing=yes", more)))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "pat@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_STR(g.a.route, "[127.0.0.1]:2500"); /* a 5 from a peer routes to the peer */
	CHECK_INT(gw.received + peer.received, 2);
	CHECK_INT(rcpt(f.v, "nobody@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	fixture_free(&f);
	resp_stop(&gw);
	resp_stop(&peer);
}

TEST(forward_domain)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	r.active[0] = "fay@gw.example";
	struct fixture f;
	if (!CHECK(gw_fixture(&f, "forward_domain", &r, "", NULL)))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "fay@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_REMOTE);
	CHECK_STR(g.a.route, "");
	CHECK_INT(rcpt(f.v, "nobody@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_NOTFOUND);
	r.mode = RESP_SILENT;
	CHECK_INT(rcpt(f.v, "gus@gw.example", &g), 1);
	CHECK_INT(g.a.status, VERIFY_TEMPFAIL); /* forward lines always defer */
	fixture_free(&f);
	resp_stop(&r);
}

/* ---- peers.status ---- */

TEST(status_file_written)
{
	setup();
	fresh_state();
	struct resp rs[2];
	resp_start(&rs[0], RESP_TABLE, SECRET);
	resp_start(&rs[1], RESP_SILENT, SECRET);
	rs[0].active[0] = "bob@example.com";
	char more[512];
	snprintf(more, sizeof more,
	         "gateway_domain = gw.example host=[127.0.0.1] minger=127.0.0.1:%u\n", rs[0].port);
	struct fixture f;
	if (!CHECK(peers_fixture(&f, rs, 2, more)))
		return;
	struct got g;
	rcpt(f.v, "bob@example.com", &g);
	rcpt(f.v, "carl@example.com", &g);
	verify_sync(f.v);
	char path[256], err[256];
	snprintf(path, sizeof path, "%s/state/peers.status", tmpdir);
	struct verify_status_entry *e = NULL;
	size_t n = 0;
	if (CHECK_INT(verify_status_read(path, &e, &n, NULL, NULL, err, sizeof err), 0) &&
	    CHECK_INT(n, 3)) {
		CHECK_INT(e[0].kind, VERIFY_STATUS_PEER);
		CHECK_STR(e[0].name, "127.0.0.1:2500");
		CHECK_INT(e[0].queries, 2);
		CHECK_INT(e[0].failures, 0);
		CHECK_INT(e[0].last_answer, T0);
		CHECK(e[0].rtt_avg_us > 0);
		CHECK_INT(e[1].queries, 2); /* its query for bob was cancelled by the first 5 */
		CHECK_INT(e[1].failures, 1);
		CHECK_INT(e[1].last_answer, 0);
		CHECK_INT(e[2].kind, VERIFY_STATUS_GATEWAY);
		CHECK_STR(e[2].name, "gw.example");
		CHECK_INT(e[2].queries, 0);
	}
	free(e);
	fixture_free(&f);
	resp_stop(&rs[0]);
	resp_stop(&rs[1]);
}

/* ---- start-up errors ---- */

static void expect_start_error(const char *extra, const char *want)
{
	char err[512] = "";
	struct conf *c = conf_text(extra);
	if (!CHECK(c != NULL))
		return;
	struct verify *v = verify_new(base, c, NULL, err, sizeof err);
	if (!CHECK(v == NULL) || !CHECK(strstr(err, want) != NULL))
		printf("  '%s' -> '%s'\n", extra, err);
	verify_free(v);
	conf_free(c);
}

TEST(start_errors_name_the_line)
{
	setup();
	fresh_state();
	expect_start_error("domain_sharing_host = no-such-host.invalid\n",
	                   "domain_sharing_host 'no-such-host.invalid': cannot resolve");
	expect_start_error("domain_sharing_host = 127.0.0.1 secret_file=missing.txt\n",
	                   "missing.txt");
	write_file("short.txt", "tooshort\n");
	expect_start_error("gateway_domain = gw.example host=[127.0.0.1] minger=127.0.0.1 "
	                   "secret_file=short.txt\n",
	                   "short.txt:1:");
	write_file("badshared.txt", "example.com\nnot_a_domain\n");
	expect_start_error("domain_sharing_domains_file = badshared.txt\n",
	                   "badshared.txt:2: not a domain name");
	write_file("notlocal.txt", "elsewhere.example\n");
	expect_start_error("domain_sharing_domains_file = notlocal.txt\n",
	                   "notlocal.txt:1: not one of local_domains");
	expect_start_error("minger_require_reply_mac = yes\nminger_secret_file = secret.txt\n"
	                   "domain_sharing_host = 127.0.0.1\n",
	                   "needs a secret_file= here");
	expect_start_error("gateway_domain = gw.example host=[127.0.0.1] minger=127.0.0.1\n"
	                   "forward_domain = gw.example host=[127.0.0.1] minger=127.0.0.1\n",
	                   "gw.example has two gateway or forward lines");
}

/* verify_servers: the lines as the verifier, delivery and the CLI all read them. */
TEST(servers_read_the_lines)
{
	setup();
	fresh_state();
	write_file("peer.secret", "peer-secret-0123456789\n");
	struct conf *c = conf_text("domain_sharing_host = 127.0.0.1:2525 minger_port=4070 "
	                           "secret_file=peer.secret\n"
	                           "domain_sharing_host = [::1]\n"
	                           "forward_domain = lan.example host=[127.0.0.1] "
	                           "minger=127.0.0.1\n"
	                           "gateway_domain = GW.example host=[127.0.0.1]:26 "
	                           "minger=[::1]:4071 unreachable=accept domain_sharing=yes\n");
	if (!CHECK(c != NULL))
		return;
	struct verify_servers s;
	char err[512] = "", want[512];
	if (!CHECK_INT(verify_servers_load(c, 0, &s, err, sizeof err), 0) || !CHECK_INT(s.n, 4)) {
		printf("  %s\n", err);
		conf_free(c);
		return;
	}
	CHECK_INT(s.npeers, 2);
	CHECK_INT(s.v[0].kind, VERIFY_STATUS_PEER);
	CHECK_STR(s.v[0].name, "127.0.0.1:2525");
	CHECK_STR(s.v[0].minger_text, "127.0.0.1:4070");
	CHECK_STR(s.v[0].route, "[127.0.0.1]:2525");
	snprintf(want, sizeof want, "%s/peer.secret", tmpdir); /* the config's folder */
	CHECK_STR(s.v[0].secret_file, want);
	CHECK(s.v[0].secret == NULL && s.v[0].naddrs == 0); /* flags 0: neither read nor resolved */
	CHECK_STR(s.v[1].name, "[::1]:25");
	CHECK_STR(s.v[1].minger_text, "[::1]:4069");
	CHECK_STR(s.v[1].route, "[IPv6:::1]:25");
	CHECK_STR(s.v[1].secret_file, "");
	/* gateways before forwarded domains, whatever the order in the file */
	CHECK_INT(s.v[2].kind, VERIFY_STATUS_GATEWAY);
	CHECK_STR(s.v[2].name, "gw.example");
	CHECK_STR(s.v[2].minger_text, "[::1]:4071");
	CHECK_STR(s.v[2].route, "");
	CHECK(s.v[2].accept_unreachable && s.v[2].ask_peers);
	CHECK_INT(s.v[3].kind, VERIFY_STATUS_FORWARD);
	CHECK_STR(s.v[3].minger_text, "127.0.0.1:4069");
	CHECK(!s.v[3].accept_unreachable && !s.v[3].ask_peers);
	struct netaddr na;
	char key[64];
	if (CHECK_INT(verify_server_lookup(&s.v[2], &na, 1, err, sizeof err), 1)) {
		netaddr_format((const struct sockaddr *)&na.ss, key, sizeof key);
		CHECK_STR(key, "[::1]:4071");
	}
	char *secret = verify_servers_read_secret(&s.v[0], err, sizeof err);
	CHECK(secret && strcmp(secret, "peer-secret-0123456789") == 0);
	free(secret);
	CHECK(verify_servers_read_secret(&s.v[1], err, sizeof err) == NULL && !err[0]);
	verify_servers_free(&s);
	/* resolved and read: the cache key and the secret */
	if (CHECK_INT(verify_servers_load(c, VERIFY_SERVERS_RESOLVE | VERIFY_SERVERS_SECRETS, &s,
	                                  err, sizeof err),
	              0)) {
		CHECK_STR(s.v[0].addr_key, "127.0.0.1:4070");
		CHECK(s.v[0].naddrs >= 1);
		CHECK(s.v[0].secret && strcmp(s.v[0].secret, "peer-secret-0123456789") == 0);
		CHECK(s.v[1].secret == NULL);
	}
	verify_servers_free(&s);
	verify_servers_free(&s); /* emptied: a no-op */
	conf_free(c);
	/* a secret_file that cannot be read names the line and the file */
	c = conf_text("domain_sharing_host = 127.0.0.1 secret_file=nowhere.secret\n");
	if (CHECK(c != NULL)) {
		CHECK_INT(verify_servers_load(c, VERIFY_SERVERS_SECRETS, &s, err, sizeof err), -1);
		CHECK(strstr(err, "domain_sharing_host '127.0.0.1 secret_file=nowhere.secret': ") &&
		      strstr(err, "nowhere.secret: "));
		CHECK(s.v == NULL && s.n == 0);
		CHECK_INT(verify_servers_load(c, 0, &s, err, sizeof err), 0); /* not read: fine */
		verify_servers_free(&s);
		conf_free(c);
	}
}

TEST(absent_domains_file_shares_all)
{
	setup();
	fresh_state();
	struct resp r;
	resp_start(&r, RESP_TABLE, SECRET);
	struct fixture f;
	if (!CHECK(peers_fixture(&f, &r, 1, "domain_sharing_domains_file = absent.txt\n")))
		return;
	struct got g;
	CHECK_INT(rcpt(f.v, "bob@other.example", &g), 1);
	CHECK_INT(r.received, 1);
	fixture_free(&f);
	resp_stop(&r);
}

TEST_MAIN(T(servers_read_the_lines), T(fanout_one_round_first_5_wins),
          T(first_5_does_not_wait_for_a_silent_peer), T(fresh_asks_everyone_never_the_cache),
          T(all_3_is_notfound), T(silent_peer_is_tempfail_naming_it), T(wrong_secret_is_tempfail),
          T(bad_reply_mac_is_no_answer), T(hostile_replies_ignored_then_answer),
          T(cache_hit_sends_nothing_and_survives_restart), T(cache_ttl_from_config),
          T(disabled_on_a_peer), T(pipelined_rcpts_one_round), T(cancel_before_answer),
          T(domains_file_limits_sharing), T(sharing_off_asks_nobody), T(senders), T(client_is_peer),
          T(ipv6_peer), T(gateway_answers), T(gateway_unreachable_defer_and_accept),
          T(gateway_with_domain_sharing), T(forward_domain), T(status_file_written),
          T(start_errors_name_the_line), T(absent_domains_file_shares_all))
