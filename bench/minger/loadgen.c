/*
 * loadgen: the closed-loop load generator of the Minger benchmark. It keeps a
 * window of authenticated -06 queries ("userNNNNNNN@DOMAIN d=<digest>")
 * outstanding, spread over many non-blocking UDP sockets, and sends a new query
 * as soon as a reply arrives. Half the queries name existing accounts
 * (user0000000 .. user(N-1)), half unknown ones (user(N) and up).
 *
 *   loadgen -s HOST:PORT -n SOCKETS -w WINDOW -d SECONDS -k SECRET
 *           --accounts N --domain D [--warmup SECONDS] [--echo]
 *
 * Every reply is parsed (minger_reply_parse) and checked against the query that
 * is outstanding for it: the same mailbox, status 5 for a hit and 3 for a miss;
 * with --echo the reply must equal the query's bytes. A query unanswered for 1 s
 * counts as lost and its slot sends a fresh query. After a warm-up (default 1 s)
 * the counters are reset and the run is measured for SECONDS; then one line:
 *
 *   replies=N rps=X p50_us=A p99_us=B lost=L bad=K late=M sent=S
 *
 * (late: replies that match no outstanding query, e.g. to a query already counted
 * as lost). Exit status 0, or 1 if the setup failed, 2 for usage errors.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto/base64.h"
#include "proto/minger_msg.h"
#include "util/netaddr.h"

#define LG_BATCH 64
#define LG_QUERY_MAX 128
#define LG_POOL_TARGET 131072 /* distinct queries in all (half of them hits) */
#define LG_LOST_US 1000000 /* a query older than this is lost */
#define LG_HIST_MAX 1000000 /* latency histogram: 1 us buckets up to 1 s */
#define LG_SOCKETS_MAX 1024
#define LG_WINDOW_MAX 65536

/* One precomputed query datagram. */
struct lg_query {
	uint16_t len;
	uint16_t mailbox_len;
	uint8_t hit;
	uint64_t hash; /* of the mailbox, to find the slot of a reply quickly */
	char text[LG_QUERY_MAX];
};

/* One outstanding query: slot g cycles over pool entries g, g + W, g + 2W, ... */
struct lg_slot {
	uint32_t query; /* index into the pool */
	uint32_t round;
	uint64_t sent_us;
};

struct lg_sock {
	int fd;
	uint32_t first; /* global index of its first slot */
	uint32_t n; /* slots on this socket */
};

struct lg_opts {
	const char *server;
	int sockets, window, seconds, warmup, echo;
	const char *secret;
	long accounts;
	const char *domain;
};

struct lg_stats {
	uint64_t replies, lost, bad, late, sent;
	uint32_t *hist; /* LG_HIST_MAX + 1 buckets, the last one for >= 1 s */
};

struct lg {
	struct lg_opts o;
	struct lg_query *pool;
	uint32_t pool_n;
	struct lg_slot *slots;
	uint64_t *slot_hash; /* copy of the outstanding mailbox hash, scanned per reply */
	struct lg_sock *socks;
	int epfd;
	struct lg_stats st;
	int bad_reported;
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* FNV-1a, 64 bits: only used to narrow the search, the mailbox is then compared. */
static uint64_t fnv64(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h;
}

static long gcd(long a, long b)
{
	while (b) {
		long t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/*
 * Pool entry j: even j are hits, spread over the whole directory by a stride
 * prime to N (distinct as long as j/2 < N); odd j are misses user(N + j/2).
 * All mailboxes are distinct, so the outstanding queries are too.
 */
static int lg_make_query(const struct lg_opts *o, uint32_t j, long stride, struct lg_query *q)
{
	long k = (long)(j / 2);
	int hit = (j % 2 == 0) && o->accounts > 0;
	long user = hit ? (k * stride) % o->accounts : o->accounts + k;
	char mailbox[LG_QUERY_MAX];
	int mlen = snprintf(mailbox, sizeof mailbox, "user%07ld@%s", user, o->domain);
	if (mlen < 0 || mlen >= (int)sizeof mailbox - 40)
		return -1;
	uint8_t dig[MINGER_DIGEST_LEN];
	char b64[MINGER_DIGEST_B64_LEN + 1];
	minger_digest(o->secret, strlen(o->secret), mailbox, (size_t)mlen, dig);
	if (base64_encode(dig, sizeof dig, b64, sizeof b64) != MINGER_DIGEST_B64_LEN)
		return -1;
	int len = snprintf(q->text, sizeof q->text, "%s d=%s", mailbox, b64);
	if (len < 0 || len >= (int)sizeof q->text)
		return -1;
	q->len = (uint16_t)len;
	q->mailbox_len = (uint16_t)mlen;
	q->hit = (uint8_t)hit;
	q->hash = fnv64(mailbox, (size_t)mlen);
	return 0;
}

static int lg_build_pool(struct lg *g)
{
	long stride = 7919;
	while (g->o.accounts > 1 && gcd(stride, g->o.accounts) != 1)
		stride += 2;
	/* A multiple of the window, so that slot g owns entries g, g + W, g + 2W, ... */
	uint64_t w = (uint64_t)g->o.window, n = (LG_POOL_TARGET + w - 1) / w * w;
	/* Keep hits distinct: at most N of them. */
	if (g->o.accounts > 0 && n / 2 > (uint64_t)g->o.accounts)
		n = (uint64_t)g->o.accounts * 2 / w * w;
	g->pool_n = (uint32_t)n;
	if (g->pool_n < (uint32_t)g->o.window)
		return -1;
	g->pool = calloc(g->pool_n, sizeof *g->pool);
	if (!g->pool)
		return -1;
	for (uint32_t j = 0; j < g->pool_n; j++)
		if (lg_make_query(&g->o, j, stride, &g->pool[j]) != 0)
			return -1;
	return 0;
}

static int lg_open_sockets(struct lg *g)
{
	struct netaddr a;
	char err[128];
	if (netaddr_parse_hostport(g->o.server, 0, 0, &a, err, sizeof err) != 0) {
		fprintf(stderr, "loadgen: %s: %s\n", g->o.server, err);
		return -1;
	}
	g->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (g->epfd < 0)
		return -1;
	uint32_t per = (uint32_t)(g->o.window / g->o.sockets);
	uint32_t extra = (uint32_t)(g->o.window % g->o.sockets), first = 0;
	for (int i = 0; i < g->o.sockets; i++) {
		struct lg_sock *s = &g->socks[i];
		s->first = first;
		s->n = per + ((uint32_t)i < extra);
		first += s->n;
		s->fd = socket(a.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&a.ss, a.len) != 0)
			return -1;
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
		if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0)
			return -1;
	}
	return 0;
}

static struct lg_query *lg_slot_query(struct lg *g, uint32_t slot)
{
	return &g->pool[g->slots[slot].query];
}

/* Moves slot to its next query and stamps it; the caller sends it. */
static void lg_slot_next(struct lg *g, uint32_t slot, uint64_t now)
{
	struct lg_slot *s = &g->slots[slot];
	s->round = (s->round + 1) % (g->pool_n / (uint32_t)g->o.window);
	s->query = slot + s->round * (uint32_t)g->o.window;
	s->sent_us = now;
	g->slot_hash[slot] = g->pool[s->query].hash;
}

/* Sends the queries of the listed slots of one socket with sendmmsg. */
static void lg_send(struct lg *g, struct lg_sock *s, const uint32_t *slots, int n)
{
	struct mmsghdr msgs[LG_BATCH];
	struct iovec iov[LG_BATCH];
	for (int i = 0; i < n; i++) {
		struct lg_query *q = lg_slot_query(g, slots[i]);
		iov[i] = (struct iovec){.iov_base = q->text, .iov_len = q->len};
		msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
	}
	int done = 0;
	while (done < n) {
		int r = sendmmsg(s->fd, msgs + done, (unsigned)(n - done), 0);
		if (r <= 0)
			break; /* not sent: the lost-query timer will resend it */
		done += r;
	}
	g->st.sent += (uint64_t)done;
}

static void lg_bad(struct lg *g, const char *why, const uint8_t *d, size_t len)
{
	g->st.bad++;
	if (g->bad_reported++ < 5)
		fprintf(stderr, "loadgen: bad reply (%s): %.*s\n", why,
		        (int)(len > 200 ? 200 : len), (const char *)d);
}

/* Finds the socket's slot whose outstanding mailbox is m[0..n), or -1. */
static int64_t lg_find_slot(struct lg *g, struct lg_sock *s, const char *m, size_t n)
{
	uint64_t h = fnv64(m, n);
	for (uint32_t i = s->first; i < s->first + s->n; i++) {
		if (g->slot_hash[i] != h)
			continue;
		struct lg_query *q = lg_slot_query(g, i);
		if (q->mailbox_len == n && memcmp(q->text, m, n) == 0)
			return i;
	}
	return -1;
}

/* Checks one reply; returns the slot it answers (to be refilled) or -1. */
static int64_t lg_check(struct lg *g, struct lg_sock *s, const uint8_t *d, size_t len)
{
	struct minger_reply r;
	const char *mailbox;
	size_t mlen;
	if (g->o.echo) {
		const uint8_t *sp = memchr(d, ' ', len);
		mailbox = (const char *)d;
		mlen = sp ? (size_t)(sp - d) : len;
	} else {
		if (minger_reply_parse(d, len, &r) != 0) {
			lg_bad(g, "unparsable", d, len);
			return -1;
		}
		mailbox = r.mailbox;
		mlen = r.mailbox_len;
	}
	int64_t slot = lg_find_slot(g, s, mailbox, mlen);
	if (slot < 0) {
		g->st.late++;
		return -1;
	}
	struct lg_query *q = lg_slot_query(g, (uint32_t)slot);
	if (g->o.echo) {
		if (len != q->len || memcmp(d, q->text, len) != 0)
			lg_bad(g, "echo differs", d, len);
	} else if (r.status != (q->hit ? MINGER_STATUS_ACTIVE : MINGER_STATUS_UNKNOWN)) {
		lg_bad(g, q->hit ? "want 5" : "want 3", d, len);
	}
	return slot;
}

static void lg_record(struct lg *g, uint64_t sent, uint64_t now)
{
	uint64_t us = now - sent;
	g->st.hist[us > LG_HIST_MAX ? LG_HIST_MAX : us]++;
	g->st.replies++;
}

/* Reads every reply waiting on socket i, refills the answered slots. */
static void lg_on_readable(struct lg *g, int i)
{
	static uint8_t bufs[LG_BATCH][MINGER_DATAGRAM_MAX + 1];
	struct lg_sock *s = &g->socks[i];
	for (;;) {
		struct mmsghdr msgs[LG_BATCH];
		struct iovec iov[LG_BATCH];
		for (int k = 0; k < LG_BATCH; k++) {
			iov[k] = (struct iovec){.iov_base = bufs[k], .iov_len = sizeof bufs[k]};
			msgs[k].msg_hdr = (struct msghdr){.msg_iov = &iov[k], .msg_iovlen = 1};
		}
		int n = recvmmsg(s->fd, msgs, LG_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return; /* EAGAIN, or ECONNREFUSED while the server is not up */
		uint64_t now = now_us();
		uint32_t refill[LG_BATCH];
		int nr = 0;
		for (int k = 0; k < n; k++) {
			int64_t slot = lg_check(g, s, bufs[k], msgs[k].msg_len);
			if (slot < 0)
				continue;
			lg_record(g, g->slots[slot].sent_us, now);
			lg_slot_next(g, (uint32_t)slot, now);
			refill[nr++] = (uint32_t)slot;
		}
		lg_send(g, s, refill, nr);
		if (n < LG_BATCH)
			return;
	}
}

/* Counts queries unanswered for LG_LOST_US as lost and sends fresh ones. */
static void lg_expire(struct lg *g, uint64_t now)
{
	for (int i = 0; i < g->o.sockets; i++) {
		struct lg_sock *s = &g->socks[i];
		uint32_t refill[LG_BATCH];
		int nr = 0;
		for (uint32_t k = s->first; k < s->first + s->n; k++) {
			if (now - g->slots[k].sent_us < LG_LOST_US)
				continue;
			g->st.lost++;
			lg_slot_next(g, k, now);
			refill[nr++] = k;
			if (nr == LG_BATCH) {
				lg_send(g, s, refill, nr);
				nr = 0;
			}
		}
		lg_send(g, s, refill, nr);
	}
}

static uint64_t lg_percentile(const struct lg_stats *st, double p)
{
	if (st->replies == 0)
		return 0;
	uint64_t want = (uint64_t)((double)st->replies * p + 0.5), acc = 0;
	if (want == 0)
		want = 1;
	for (uint64_t us = 0; us <= LG_HIST_MAX; us++) {
		acc += st->hist[us];
		if (acc >= want)
			return us;
	}
	return LG_HIST_MAX;
}

static void lg_reset_stats(struct lg *g)
{
	uint32_t *h = g->st.hist;
	memset(h, 0, (LG_HIST_MAX + 1) * sizeof *h);
	g->st = (struct lg_stats){.hist = h};
	g->bad_reported = 0;
}

/* Runs until deadline, dispatching replies and expiring lost queries. */
static void lg_loop(struct lg *g, uint64_t deadline)
{
	uint64_t next_expire = 0;
	struct epoll_event evs[LG_SOCKETS_MAX];
	for (;;) {
		uint64_t now = now_us();
		if (now >= deadline)
			return;
		if (now >= next_expire) {
			lg_expire(g, now);
			next_expire = now + 50000;
		}
		int n = epoll_wait(g->epfd, evs, g->o.sockets, 20);
		for (int i = 0; i < n; i++)
			lg_on_readable(g, (int)evs[i].data.u32);
	}
}

static void lg_start(struct lg *g)
{
	uint64_t now = now_us();
	for (int i = 0; i < g->o.sockets; i++) {
		struct lg_sock *s = &g->socks[i];
		uint32_t refill[LG_BATCH];
		int nr = 0;
		for (uint32_t k = s->first; k < s->first + s->n; k++) {
			g->slots[k] = (struct lg_slot){.query = k, .round = 0, .sent_us = now};
			g->slot_hash[k] = g->pool[k].hash;
			refill[nr++] = k;
			if (nr == LG_BATCH) {
				lg_send(g, s, refill, nr);
				nr = 0;
			}
		}
		lg_send(g, s, refill, nr);
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: loadgen -s HOST:PORT -n SOCKETS -w WINDOW -d SECONDS -k SECRET\n"
	                "               --accounts N --domain D [--warmup SECONDS] [--echo]\n");
	return 2;
}

static int lg_parse_args(int argc, char **argv, struct lg_opts *o)
{
	static const struct option longopts[] = {
	        {"accounts", required_argument, NULL, 'a'},
	        {"domain", required_argument, NULL, 'D'},
	        {"warmup", required_argument, NULL, 'W'},
	        {"echo", no_argument, NULL, 'e'},
	        {NULL, 0, NULL, 0},
	};
	*o = (struct lg_opts){.sockets = 8,
	                      .window = 64,
	                      .seconds = 3,
	                      .warmup = 1,
	                      .domain = "example.com",
	                      .accounts = 1000000};
	int c;
	while ((c = getopt_long(argc, argv, "s:n:w:d:k:", longopts, NULL)) != -1) {
		switch (c) {
		case 's': o->server = optarg; break;
		case 'n': o->sockets = atoi(optarg); break;
		case 'w': o->window = atoi(optarg); break;
		case 'd': o->seconds = atoi(optarg); break;
		case 'k': o->secret = optarg; break;
		case 'a': o->accounts = atol(optarg); break;
		case 'D': o->domain = optarg; break;
		case 'W': o->warmup = atoi(optarg); break;
		case 'e': o->echo = 1; break;
		default: return -1;
		}
	}
	if (!o->server || !o->secret || o->sockets < 1 || o->sockets > LG_SOCKETS_MAX ||
	    o->window < o->sockets || o->window > LG_WINDOW_MAX || o->seconds < 1 ||
	    o->warmup < 0 || o->accounts < 0 || o->accounts > 1000000000L)
		return -1;
	return 0;
}

static int lg_setup(struct lg *g)
{
	g->slots = calloc((size_t)g->o.window, sizeof *g->slots);
	g->slot_hash = calloc((size_t)g->o.window, sizeof *g->slot_hash);
	g->socks = calloc((size_t)g->o.sockets, sizeof *g->socks);
	g->st.hist = calloc(LG_HIST_MAX + 1, sizeof *g->st.hist);
	if (!g->slots || !g->slot_hash || !g->socks || !g->st.hist)
		return -1;
	if (lg_build_pool(g) != 0) {
		fprintf(stderr, "loadgen: cannot build the query pool\n");
		return -1;
	}
	if (lg_open_sockets(g) != 0) {
		fprintf(stderr, "loadgen: sockets: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct lg g = {.epfd = -1};
	if (lg_parse_args(argc, argv, &g.o) != 0)
		return usage();
	if (lg_setup(&g) != 0)
		return 1;
	lg_start(&g);
	lg_loop(&g, now_us() + (uint64_t)g.o.warmup * 1000000u);
	lg_reset_stats(&g);
	uint64_t t0 = now_us();
	lg_loop(&g, t0 + (uint64_t)g.o.seconds * 1000000u);
	double secs = (double)(now_us() - t0) / 1e6;
	printf("replies=%llu rps=%.0f p50_us=%llu p99_us=%llu lost=%llu bad=%llu late=%llu "
	       "sent=%llu\n",
	       (unsigned long long)g.st.replies, (double)g.st.replies / secs,
	       (unsigned long long)lg_percentile(&g.st, 0.50),
	       (unsigned long long)lg_percentile(&g.st, 0.99), (unsigned long long)g.st.lost,
	       (unsigned long long)g.st.bad, (unsigned long long)g.st.late,
	       (unsigned long long)g.st.sent);
	return 0;
}
