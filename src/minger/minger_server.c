/*
 * minger_server: see minger_server.h.
 *
 * Threads and sockets: worker i owns socket i of every listen address (all bound
 * with SO_REUSEPORT, so the kernel hashes each source to one socket and thus one
 * worker) and poll()s them together with a shutdown eventfd. When a socket is
 * readable the worker drains it in batches: one recvmmsg(), the handler for each
 * datagram, one sendmmsg() of the replies. Per batch there is one clock read and
 * at most one take of the index's read lock; nothing is allocated or logged on
 * that path except rate-limited refusal lines.
 */
#include "minger/minger_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "minger/minger_handler.h"
#include "minger/minger_ratelimit.h"
#include "minger/minger_replay.h"
#include "util/log.h"
#include "util/netaddr.h"
#include "verify/lookup.h"
#include "verify/mailbox_index.h"

#define BATCH 64
/* Batches read from one socket before the others get a turn. */
#define BATCHES_PER_WAKEUP 16
/* Receive buffer asked for (the kernel caps it at net.core.rmem_max). */
#define RCVBUF_BYTES (4 * 1024 * 1024)

/* One worker's batch buffers, allocated once. */
struct batch {
	uint8_t in[BATCH][MINGER_DATAGRAM_MAX + 1];
	char out[BATCH][MINGER_REPLY_MAX];
	struct sockaddr_storage from[BATCH];
	struct iovec iov_in[BATCH];
	struct iovec iov_out[BATCH];
	struct mmsghdr rmsg[BATCH];
	struct mmsghdr smsg[BATCH];
};

struct worker {
	struct minger_server *s;
	pthread_t tid;
	int started;
	int index_locked;
	uint64_t last_ms;
	/* The datagram being handled, and the prefetch hash of its first word. */
	const uint8_t *cur;
	size_t cur_word_len;
	uint64_t cur_hash;
	uint64_t hash[BATCH];
	size_t word_len[BATCH];
	struct pollfd *pfd; /* socket `id` of every address, then the eventfd */
	struct minger_source_table *sources;
	struct minger_handler h;
	struct batch *b;
};

struct minger_server {
	const struct conf *conf;
	struct mailbox_index *idx;
	struct strlist secret_list;
	struct minger_secret *secrets;
	struct minger_handler_conf hc;
	struct minger_global_limit *global;
	struct minger_replay *replay;
	size_t n_addr;
	int threads;
	int *fds; /* fds[a * threads + i] */
	int efd;
	int ran; /* workers were started: log the totals at the end */
	struct worker *w;
};

/*
 * The lookup for the handler. The batch's prefetch pass took the index read lock
 * and hashed each datagram's first word; when the mailbox the handler parsed is
 * exactly that word (every unquoted mailbox), that hash is used. The index holds
 * this server's mailboxes only: a Minger answer never asks a peer or a gateway
 * (verify.h is not used here), so Domain Sharing peers cannot ask in a circle.
 */
static enum lookup_result worker_lookup(void *arg, const char *mailbox, size_t len,
                                        struct lookup_answer *out)
{
	struct worker *w = arg;
	if (!w->index_locked) {
		mailbox_index_read_lock(w->s->idx);
		w->index_locked = 1;
	}
	if ((const uint8_t *)mailbox == w->cur && len == w->cur_word_len && w->cur_hash)
		return mailbox_lookup_prefetched_locked(w->s->idx, mailbox, len, w->cur_hash, out);
	return mailbox_lookup_locked(w->s->idx, mailbox, len, out);
}

static uint64_t random_seed(void)
{
	uint64_t seed = 0;
	if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
		seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	return seed;
}

/* One clock read per batch; the millisecond clock never goes back within a worker. */
static struct minger_now batch_now(struct worker *w)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	if (ms < w->last_ms)
		ms = w->last_ms;
	w->last_ms = ms;
	return (struct minger_now){.wall_s = (int64_t)ts.tv_sec, .mono_ms = ms};
}

/* Sends the replies; a full send buffer drops the rest, as UDP may. */
static void send_replies(int fd, struct mmsghdr *m, unsigned n)
{
	unsigned done = 0;
	while (done < n) {
		int r = sendmmsg(fd, m + done, n - done, MSG_DONTWAIT);
		if (r > 0) {
			done += (unsigned)r;
		} else if (r < 0 && errno == EINTR) {
			continue;
		} else if (r < 0 && (errno == EAGAIN || errno == ENOBUFS || errno == ENOMEM)) {
			return;
		} else {
			done++; /* this destination failed (e.g. unreachable): skip it */
		}
	}
}

/*
 * With a large directory each lookup is a couple of cache misses; issuing the
 * whole batch's memory requests before answering any lets them overlap (about
 * twice the lookups per second with a million accounts). Takes the index read
 * lock for the batch, as the first lookup would.
 */
static void prefetch_batch(struct worker *w, int n)
{
	if (!w->index_locked) {
		mailbox_index_read_lock(w->s->idx);
		w->index_locked = 1;
	}
	for (int i = 0; i < n; i++) {
		const char *d = (const char *)w->b->in[i];
		size_t len = w->b->rmsg[i].msg_len;
		const char *sp = memchr(d, ' ', len);
		w->word_len[i] = sp ? (size_t)(sp - d) : len;
		w->hash[i] = mailbox_index_prefetch_slot(w->s->idx, d, w->word_len[i]);
	}
	for (int i = 0; i < n; i++)
		mailbox_index_prefetch_entry(w->s->idx, w->hash[i]);
}

/* Reads up to one batch; returns the number of datagrams handled (0 when none waited). */
static int serve_batch(struct worker *w, int fd)
{
	struct batch *b = w->b;
	for (int i = 0; i < BATCH; i++) {
		b->iov_in[i] = (struct iovec){b->in[i], sizeof b->in[i]};
		b->rmsg[i].msg_hdr = (struct msghdr){.msg_name = &b->from[i],
		                                     .msg_namelen = sizeof b->from[i],
		                                     .msg_iov = &b->iov_in[i],
		                                     .msg_iovlen = 1};
	}
	int n = recvmmsg(fd, b->rmsg, BATCH, MSG_DONTWAIT, NULL);
	if (n <= 0)
		return 0;
	struct minger_now now = batch_now(w);
	prefetch_batch(w, n);
	unsigned k = 0;
	for (int i = 0; i < n; i++) {
		size_t len = b->rmsg[i].msg_len;
		if (b->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC)
			len = sizeof b->in[i]; /* over MINGER_DATAGRAM_MAX: dropped */
		w->cur = b->in[i];
		w->cur_word_len = w->word_len[i];
		w->cur_hash = w->hash[i];
		size_t r = minger_handler_handle(&w->h, b->in[i], len,
		                                 (const struct sockaddr *)&b->from[i], &now,
		                                 b->out[k], sizeof b->out[k]);
		if (!r)
			continue;
		b->iov_out[k] = (struct iovec){b->out[k], r};
		b->smsg[k].msg_hdr = (struct msghdr){.msg_name = &b->from[i],
		                                     .msg_namelen = b->rmsg[i].msg_hdr.msg_namelen,
		                                     .msg_iov = &b->iov_out[k],
		                                     .msg_iovlen = 1};
		k++;
	}
	if (w->index_locked) {
		mailbox_index_read_unlock(w->s->idx);
		w->index_locked = 0;
	}
	minger_handler_batch_end(&w->h);
	if (k)
		send_replies(fd, b->smsg, k);
	return n;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	size_t n_addr = w->s->n_addr;
	for (;;) {
		if (poll(w->pfd, (nfds_t)n_addr + 1, -1) < 0)
			continue; /* EINTR cannot happen (signals blocked); ENOMEM: retry */
		if (w->pfd[n_addr].revents)
			break;
		for (size_t a = 0; a < n_addr; a++) {
			/* POLLERR too: reading clears a pending socket error, else poll would spin. */
			if (!(w->pfd[a].revents & (POLLIN | POLLERR)))
				continue;
			/* Drain while batches come back full; a short batch means the queue is empty. */
			for (int i = 0; i < BATCHES_PER_WAKEUP; i++)
				if (serve_batch(w, w->pfd[a].fd) < BATCH)
					break;
		}
	}
	return NULL;
}

/*
 * A UDP socket bound to a, with SO_REUSEPORT when reuseport. Returns the fd, or
 * -1 with the reason in err: the bare strerror() when bind() failed, else the
 * step that failed and why.
 */
static int open_socket(const struct netaddr *a, int reuseport, char *err, size_t errlen)
{
	int one = 1, rcvbuf = RCVBUF_BYTES;
	const char *step = "socket";
	int fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	step = "SO_REUSEPORT";
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
		goto fail;
	/* A v6 socket answers v6 only, so "[::]" and "0.0.0.0" can both be listed. */
	step = "IPV6_V6ONLY";
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
		goto fail;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	step = NULL;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0)
		goto fail;
	return fd;
fail:
	if (step)
		snprintf(err, errlen, "%s: %s", step, strerror(errno));
	else
		snprintf(err, errlen, "%s", strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/*
 * SO_REUSEPORT lets any socket of the same user join a port's group, and the
 * kernel then splits the queries between the members: a second sharemaild on
 * the same minger_listen would silently answer "unknown" for our users. So the
 * address is first bound by a probe WITHOUT SO_REUSEPORT, which fails with
 * EADDRINUSE when anyone holds it, with SO_REUSEPORT or not; the probe is closed
 * and only then do the workers' SO_REUSEPORT sockets bind. A process that binds
 * the port with SO_REUSEPORT in the microseconds between the probe's close and
 * our first worker's bind would still join: that window is accepted (closing it
 * would take one socket shared by every worker, and with it the kernel's
 * steering of each source to one worker). With port 0 (tests) the probe picks
 * the port, written back into *a, and the workers take the same one.
 */
static int probe_free(struct netaddr *a, char *err, size_t errlen)
{
	int fd = open_socket(a, 0, err, errlen);
	if (fd < 0)
		return -1;
	if (netaddr_port((const struct sockaddr *)&a->ss) == 0) {
		a->len = sizeof a->ss;
		getsockname(fd, (struct sockaddr *)&a->ss, &a->len);
	}
	close(fd);
	return 0;
}

/*
 * Probes every address (all before any worker socket exists, so two listed
 * addresses that overlap, such as 0.0.0.0 and 127.0.0.1, do not fail each other),
 * then binds minger_threads SO_REUSEPORT sockets to each. Errors name the
 * config line: "FILE:LINE: minger_listen HOST:PORT: reason".
 */
static int bind_all(struct minger_server *s, char *err, size_t errlen)
{
	const struct addrlist *l = &s->conf->minger_listen;
	struct netaddr *addr = calloc(s->n_addr, sizeof *addr);
	char where[512], e[160];
	size_t a = 0;
	int i = 0, rc = -1;
	if (!addr) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (a = 0; a < s->n_addr; a++) {
		addr[a] = l->v[a];
		if (probe_free(&addr[a], e, sizeof e) != 0)
			goto out;
	}
	for (a = 0; a < s->n_addr; a++) {
		for (i = 0; i < s->threads; i++) {
			int fd = open_socket(&addr[a], 1, e, sizeof e);
			if (fd < 0)
				goto out;
			s->fds[a * (size_t)s->threads + (size_t)i] = fd;
		}
	}
	rc = 0;
out:
	if (rc != 0) {
		conf_addr_where(s->conf, l, a, where, sizeof where);
		snprintf(err, errlen, "%s: %s", where, e);
	}
	free(addr);
	return rc;
}

static int load_secrets(struct minger_server *s, char *err, size_t errlen)
{
	if (!s->conf->minger_secret_file)
		return 0;
	struct conf_errors errs = {0};
	if (conf_read_secrets(s->conf->minger_secret_file, &s->secret_list, &errs) < 0) {
		if (errs.n)
			snprintf(err, errlen, "%s", errs.v[0].message);
		else
			snprintf(err, errlen, "%s: cannot read secrets",
			         s->conf->minger_secret_file);
		conf_errors_free(&errs);
		return -1;
	}
	conf_errors_free(&errs);
	s->secrets = calloc(s->secret_list.n ? s->secret_list.n : 1, sizeof *s->secrets);
	if (!s->secrets) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < s->secret_list.n; i++)
		s->secrets[i] =
		        (struct minger_secret){s->secret_list.v[i], strlen(s->secret_list.v[i])};
	return 0;
}

static void handler_conf_init(struct minger_server *s)
{
	const struct conf *c = s->conf;
	s->hc = (struct minger_handler_conf){
	        .secrets = s->secrets,
	        .n_secrets = s->secret_list.n,
	        .anonymous = c->minger_anonymous,
	        .compat = c->minger_compat,
	        .foreign_aliases_active = c->minger_foreign_aliases_active,
	        .gateway_clients = c->minger_gateway_clients.v,
	        .n_gateway_clients = c->minger_gateway_clients.n,
	        .strict_amplification = c->minger_strict_amplification,
	        .replay_window = c->minger_replay_window,
	        .allow = c->minger_allow.v,
	        .n_allow = c->minger_allow.n,
	};
}

static uint32_t rate_of(int rate)
{
	return rate > 0 ? (uint32_t)rate : 0;
}

/* The shared limit and nonce cache, then each worker's table, buffers and poll set. */
static int make_state(struct minger_server *s)
{
	const struct conf *c = s->conf;
	uint32_t global = rate_of(c->minger_rate_global);
	if (global && !(s->global = minger_global_limit_new(global)))
		return -1;
	size_t replay_slots = minger_replay_slots_for(global, c->minger_replay_window);
	if (s->secret_list.n && !(s->replay = minger_replay_new(replay_slots, random_seed())))
		return -1;
	s->w = calloc((size_t)s->threads, sizeof *s->w);
	if (!s->w)
		return -1;
	size_t table = c->minger_source_table_size > 0 ? (size_t)c->minger_source_table_size : 1;
	for (int i = 0; i < s->threads; i++) {
		struct worker *w = &s->w[i];
		w->s = s;
		w->b = calloc(1, sizeof *w->b);
		w->pfd = calloc(s->n_addr + 1, sizeof *w->pfd);
		if (!w->b || !w->pfd)
			return -1;
		if (rate_of(c->minger_rate_per_source) &&
		    !(w->sources = minger_source_table_new(
		              table, rate_of(c->minger_rate_per_source), random_seed())))
			return -1;
		minger_handler_init(&w->h, &s->hc, worker_lookup, w, w->sources, s->global,
		                    s->replay);
		for (size_t a = 0; a < s->n_addr; a++)
			w->pfd[a] = (struct pollfd){s->fds[a * (size_t)s->threads + (size_t)i],
			                            POLLIN, 0};
		w->pfd[s->n_addr] = (struct pollfd){s->efd, POLLIN, 0};
	}
	return 0;
}

static void log_start(const struct minger_server *s)
{
	char addrs[512] = "";
	size_t used = 0;
	for (size_t a = 0; a < s->n_addr && used < sizeof addrs; a++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		char one[80];
		if (getsockname(s->fds[a * (size_t)s->threads], (struct sockaddr *)&ss, &len) != 0)
			continue;
		netaddr_format((const struct sockaddr *)&ss, one, sizeof one);
		int n = snprintf(addrs + used, sizeof addrs - used, "%s%s", a ? " " : "", one);
		used += n > 0 ? (size_t)n : 0;
	}
	const struct conf *c = s->conf;
	log_info("minger: listening on %s, %d thread%s; auth: %zu secret%s, anonymous %s, "
	         "compat %s, replay window %d s; rate %d/s per source, %d/s global (0: none); "
	         "strict amplification %s; %zu allowed networks (0: all), %zu gateway clients",
	         addrs, s->threads, s->threads == 1 ? "" : "s", s->secret_list.n,
	         s->secret_list.n == 1 ? "" : "s", c->minger_anonymous ? "yes" : "no",
	         c->minger_compat ? "yes" : "no", c->minger_replay_window,
	         c->minger_rate_per_source, c->minger_rate_global,
	         c->minger_strict_amplification ? "yes" : "no", c->minger_allow.n,
	         c->minger_gateway_clients.n);
}

struct minger_server *minger_server_new(const struct conf *c, struct mailbox_index *idx, char *err,
                                        size_t errlen)
{
	struct minger_server *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->conf = c;
	s->idx = idx;
	s->efd = -1;
	s->n_addr = c->minger_listen.n;
	s->threads = c->minger_threads > 0 ? c->minger_threads : 1;
	s->fds = malloc((s->n_addr ? s->n_addr : 1) * (size_t)s->threads * sizeof *s->fds);
	if (!s->fds) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < s->n_addr * (size_t)s->threads; i++)
		s->fds[i] = -1;
	if (s->n_addr == 0) {
		snprintf(err, errlen, "no minger_listen address");
		goto fail;
	}
	if (load_secrets(s, err, errlen) != 0)
		goto fail;
	handler_conf_init(s);
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if (bind_all(s, err, errlen) != 0)
		goto fail;
	if (make_state(s) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	log_start(s);
	return s;
fail:
	minger_server_free(s);
	return NULL;
}

/* Stops and joins the workers that were started. */
static void stop_workers(struct minger_server *s)
{
	if (!s->w)
		return;
	uint64_t one = 1;
	if (s->efd >= 0 && write(s->efd, &one, sizeof one) != (ssize_t)sizeof one)
		log_err("minger: cannot signal the workers: %s", strerror(errno));
	for (int i = 0; i < s->threads; i++) {
		if (s->w[i].started)
			pthread_join(s->w[i].tid, NULL);
		s->w[i].started = 0;
	}
}

int minger_server_start(struct minger_server *s, char *err, size_t errlen)
{
	/* Workers block every signal so SIGTERM/SIGINT reach the main thread's event loop. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = 0;
	for (int i = 0; i < s->threads; i++) {
		int e = pthread_create(&s->w[i].tid, NULL, worker_run, &s->w[i]);
		if (e != 0) {
			snprintf(err, errlen, "pthread_create: %s", strerror(e));
			rc = -1;
			break;
		}
		s->w[i].started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	s->ran = 1;
	if (rc != 0)
		stop_workers(s);
	return rc;
}

static void log_totals(const struct minger_server *s)
{
	struct minger_handler_stats t = {0};
	for (int i = 0; i < s->threads; i++) {
		const struct minger_handler_stats *w = &s->w[i].h.stats;
		t.queries += w->queries;
		t.replies += w->replies;
		for (int e = 0; e < MINGER_EV_COUNT; e++)
			t.events[e] += w->events[e];
	}
	log_info("minger: %llu queries, %llu replies; dropped: %llu oversize/unusable, %llu rate, "
	         "%llu tempfail, %llu amplification; refused: %llu denied, %llu malformed, "
	         "%llu auth, %llu replay",
	         (unsigned long long)t.queries, (unsigned long long)t.replies,
	         (unsigned long long)t.events[MINGER_EV_OVERSIZE],
	         (unsigned long long)t.events[MINGER_EV_RATE],
	         (unsigned long long)t.events[MINGER_EV_TEMPFAIL],
	         (unsigned long long)t.events[MINGER_EV_AMPLIFICATION],
	         (unsigned long long)t.events[MINGER_EV_DENIED],
	         (unsigned long long)t.events[MINGER_EV_MALFORMED],
	         (unsigned long long)t.events[MINGER_EV_AUTH],
	         (unsigned long long)t.events[MINGER_EV_REPLAY]);
}

void minger_server_free(struct minger_server *s)
{
	if (!s)
		return;
	stop_workers(s);
	if (s->ran)
		log_totals(s);
	for (size_t i = 0; i < s->n_addr * (size_t)s->threads; i++)
		if (s->fds[i] >= 0)
			close(s->fds[i]);
	if (s->efd >= 0)
		close(s->efd);
	if (s->w) {
		for (int i = 0; i < s->threads; i++) {
			minger_source_table_free(s->w[i].sources);
			free(s->w[i].b);
			free(s->w[i].pfd);
		}
		free(s->w);
	}
	minger_replay_free(s->replay);
	minger_global_limit_free(s->global);
	free(s->secrets);
	strlist_free(&s->secret_list);
	free(s->fds);
	free(s);
}
