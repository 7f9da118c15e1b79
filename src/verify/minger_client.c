/*
 * minger_client: see minger_client.h. Blocking Minger queries over one unconnected
 * UDP socket per call; the datagrams and the reply checks are minger_slot's, which
 * the daemon's event-loop client (minger_evclient.c) shares.
 *
 * Why unconnected: a connect()ed UDP socket lets the kernel filter by source, but
 * then an ICMP error from a spoofer could end the call early, and we want to count
 * replies from elsewhere (hostile-inputs.md "As a client"). So every datagram is
 * read with recvfrom() and its source address AND port are compared with the
 * server's (netaddr_equal).
 *
 * One engine serves both calls: a window of outstanding queries, each with its own
 * deadline and attempt count. minger_client_query() is a window of one.
 */
#include "verify/minger_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/timeutil.h"
#include "verify/minger_slot.h"

/* Receive buffer: one octet more than any datagram we accept, to see oversize ones. */
#define MC_RECV_MAX (MINGER_DATAGRAM_MAX + 1)

/* One query in the window. */
struct mc_slot {
	int busy;
	size_t idx; /* index into mailboxes[] / results[] */
	uint64_t deadline_ms; /* monotonic end of the current attempt */
	struct minger_slot q;
};

struct mc_run {
	int fd;
	const struct netaddr *server;
	const struct minger_client_opts *opts;
	struct minger_slot_cfg cfg;
	const char *const *mailboxes;
	size_t n;
	int *results;
	size_t next; /* next mailbox not yet started */
	size_t done; /* mailboxes with a final result */
	struct mc_slot *slots;
	size_t nslots;
	int retries; /* clamped opts->retries */
};

void minger_client_opts_init(struct minger_client_opts *opts)
{
	memset(opts, 0, sizeof *opts);
	opts->timeout_ms = 2000;
	opts->retries = 2;
	opts->use_ext = 1;
	opts->window = 64;
}

void minger_client_stats_get(struct minger_client_stats *out)
{
	minger_slot_stats_get(out);
}

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

static void slot_finish(struct mc_run *r, struct mc_slot *s, int result)
{
	r->results[s->idx] = result;
	r->done++;
	s->busy = 0;
}

/*
 * Sends the slot's next attempt. Returns 0 (a query that cannot be built is
 * finished with ERROR), or -1 on a socket error. A send that fails for lack of
 * buffer space counts as a lost datagram: the retransmission timer covers it.
 */
static int slot_send(struct mc_run *r, struct mc_slot *s)
{
	if (minger_slot_next(&s->q, &r->cfg) < 0) {
		slot_finish(r, s, MINGER_RESULT_ERROR);
		return 0;
	}
	ssize_t w = sendto(r->fd, s->q.dgram, s->q.dgram_len, 0,
	                   (const struct sockaddr *)&r->server->ss, r->server->len);
	if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != EINTR)
		return -1;
	s->deadline_ms = time_mono_ms() + (uint64_t)r->opts->timeout_ms;
	return 0;
}

/* Starts queries in free slots while mailboxes remain. Returns -1 on a socket error. */
static int fill_window(struct mc_run *r)
{
	size_t i = 0;
	while (i < r->nslots && r->next < r->n) {
		struct mc_slot *s = &r->slots[i];
		if (s->busy) {
			i++;
			continue;
		}
		size_t idx = r->next++;
		const char *m = r->mailboxes[idx];
		s->busy = 1;
		s->idx = idx;
		if (minger_slot_init(&s->q, m, m ? strlen(m) : 0) < 0) {
			slot_finish(r, s, MINGER_RESULT_ERROR);
			continue; /* the slot is free again: give it the next mailbox */
		}
		if (slot_send(r, s) < 0)
			return -1;
	}
	return 0;
}

/* Retransmits or times out every slot whose attempt deadline has passed. */
static int expire_slots(struct mc_run *r, uint64_t now)
{
	for (size_t i = 0; i < r->nslots; i++) {
		struct mc_slot *s = &r->slots[i];
		if (!s->busy || s->deadline_ms > now)
			continue;
		if (s->q.attempts > r->retries)
			slot_finish(r, s, MINGER_RESULT_TIMEOUT);
		else if (slot_send(r, s) < 0)
			return -1;
	}
	return 0;
}

static uint64_t earliest_deadline(const struct mc_run *r)
{
	uint64_t d = UINT64_MAX;
	for (size_t i = 0; i < r->nslots; i++)
		if (r->slots[i].busy && r->slots[i].deadline_ms < d)
			d = r->slots[i].deadline_ms;
	return d;
}

static void handle_datagram(struct mc_run *r, const uint8_t *buf, size_t len,
                            const struct sockaddr *from)
{
	if (!netaddr_equal(from, (const struct sockaddr *)&r->server->ss)) {
		minger_slot_ignored(MINGER_IGNORE_WRONG_SOURCE, from);
		return;
	}
	struct minger_reply rep;
	if (minger_slot_parse(buf, len, from, &rep) < 0)
		return;
	int matched = 0;
	for (size_t i = 0; i < r->nslots; i++) {
		struct mc_slot *s = &r->slots[i];
		if (!s->busy)
			continue;
		enum minger_slot_match m = minger_slot_match(&s->q, &r->cfg, &rep, from);
		if (m == MINGER_SLOT_OTHER)
			continue;
		matched = 1;
		if (m == MINGER_SLOT_ACCEPT)
			slot_finish(r, s, rep.status);
	}
	if (!matched)
		minger_slot_ignored(MINGER_IGNORE_WRONG_MAILBOX, from);
}

/* Reads every queued datagram. Returns -1 on a socket error. */
static int drain_socket(struct mc_run *r)
{
	for (;;) {
		uint8_t buf[MC_RECV_MAX];
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof from;
		ssize_t n = recvfrom(r->fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC,
		                     (struct sockaddr *)&from, &fromlen);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR || errno == ECONNREFUSED)
				continue; /* ICMP noise must not end the query early */
			return -1;
		}
		/* With MSG_TRUNC, n is the real length, so oversize datagrams are seen. */
		handle_datagram(r, buf, (size_t)n, (struct sockaddr *)&from);
	}
}

static int run_loop(struct mc_run *r, char *err, size_t errlen)
{
	if (fill_window(r) < 0) {
		set_err(err, errlen, strerror(errno));
		return -1;
	}
	while (r->done < r->n) {
		uint64_t now = time_mono_ms();
		uint64_t d = earliest_deadline(r);
		int wait = d == UINT64_MAX ? 0 : d <= now ? 0 : (int)(d - now);
		struct pollfd p = {.fd = r->fd, .events = POLLIN};
		int pr = poll(&p, 1, wait);
		if (pr < 0 && errno != EINTR) {
			set_err(err, errlen, strerror(errno));
			return -1;
		}
		/* Replies already queued are read before deadlines are checked. */
		if (pr > 0 && drain_socket(r) < 0) {
			set_err(err, errlen, strerror(errno));
			return -1;
		}
		if (expire_slots(r, time_mono_ms()) < 0 || fill_window(r) < 0) {
			set_err(err, errlen, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int check_opts(const struct netaddr *server, const struct minger_client_opts *opts,
                      const struct minger_slot_cfg *cfg, char *err, size_t errlen)
{
	int fam = server->ss.ss_family;
	if (fam != AF_INET && fam != AF_INET6) {
		set_err(err, errlen, "server address is not IPv4 or IPv6");
		return -1;
	}
	if (opts->timeout_ms <= 0 || opts->retries < 0) {
		set_err(err, errlen, "timeout must be positive and retries not negative");
		return -1;
	}
	if (opts->require_reply_mac && (!opts->secret || !opts->use_ext)) {
		set_err(err, errlen, "a reply mac needs a secret and the extension");
		return -1;
	}
	return minger_slot_cfg_valid(cfg, err, errlen) ? 0 : -1;
}

int minger_client_query_many(const struct netaddr *server, const char *const *mailboxes, size_t n,
                             const struct minger_client_opts *opts, int *results, char *err,
                             size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		results[i] = MINGER_RESULT_ERROR;
	if (n == 0)
		return 0;
	struct minger_slot_cfg cfg = {
	        .secret = opts->secret,
	        .ext = opts->secret && opts->use_ext,
	        .require_reply_mac = opts->require_reply_mac,
	};
	if (check_opts(server, opts, &cfg, err, errlen) < 0)
		return -1;
	size_t window = opts->window ? opts->window : 64;
	if (window > MINGER_CLIENT_WINDOW_MAX)
		window = MINGER_CLIENT_WINDOW_MAX;
	if (window > n)
		window = n;
	struct mc_run r = {
	        .server = server,
	        .opts = opts,
	        .cfg = cfg,
	        .mailboxes = mailboxes,
	        .n = n,
	        .results = results,
	        .nslots = window,
	        .retries = opts->retries > MINGER_CLIENT_RETRIES_MAX ? MINGER_CLIENT_RETRIES_MAX
	                                                             : opts->retries,
	};
	r.slots = calloc(window, sizeof *r.slots);
	if (!r.slots) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	r.fd = socket(server->ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (r.fd < 0) {
		set_err(err, errlen, strerror(errno));
		free(r.slots);
		return -1;
	}
	int rc = run_loop(&r, err, errlen);
	close(r.fd); /* late replies now fall on a closed port */
	/* Wipe the datagrams: they carry digests and macs derived from the secret. */
	for (size_t i = 0; i < window; i++)
		minger_slot_wipe(&r.slots[i].q);
	free(r.slots);
	if (rc < 0)
		for (size_t i = 0; i < n; i++)
			results[i] = MINGER_RESULT_ERROR;
	return rc;
}

int minger_client_query(const struct netaddr *server, const char *mailbox,
                        const struct minger_client_opts *opts, char *err, size_t errlen)
{
	struct minger_client_opts one = *opts;
	one.window = 1;
	int result = MINGER_RESULT_ERROR;
	if (minger_client_query_many(server, &mailbox, 1, &one, &result, err, errlen) < 0)
		return MINGER_RESULT_ERROR;
	if (result == MINGER_RESULT_ERROR)
		set_err(err, errlen, "mailbox cannot be sent (empty, too long or not ASCII)");
	return result;
}
