/*
 * minger_client: see minger_client.h. Blocking Minger queries over one unconnected
 * UDP socket per call.
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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "proto/minger_msg.h"
#include "util/log.h"
#include "util/timeutil.h"

/*
 * Anonymous queries carry this ignored -06 tag (section 2.1 tag-list) so the reply
 * "mailbox SP status" (2 octets longer than the mailbox) is never larger than the
 * query: servers drop replies larger than the query (anti-amplification decision).
 */
#define MC_PAD_TAG " pad=00"

/* Receive buffer: one octet more than any datagram we accept, to see oversize ones. */
#define MC_RECV_MAX (MINGER_DATAGRAM_MAX + 1)

static atomic_ullong stat_sent, stat_retransmits, stat_accepted, stat_wrong_source, stat_malformed,
        stat_wrong_mailbox, stat_bad_mac, stat_missing_mac, stat_oversize;

static struct log_limit ignored_limit = LOG_LIMIT_INIT(10, 10);

/* One query in the window. Every attempt's nonce is kept: a reply to any of them counts. */
struct mc_slot {
	int busy;
	size_t idx; /* index into mailboxes[] / results[] */
	const char *mailbox;
	size_t mailbox_len;
	int attempts; /* datagrams sent so far */
	uint64_t deadline_ms; /* monotonic end of the current attempt */
	char dgram[MINGER_DATAGRAM_MAX + 1];
	size_t dgram_len;
	char nonces[MINGER_CLIENT_RETRIES_MAX + 1][MINGER_NONCE_HEX_LEN + 1];
};

struct mc_run {
	int fd;
	const struct netaddr *server;
	const struct minger_client_opts *opts;
	const char *const *mailboxes;
	size_t n;
	int *results;
	size_t next; /* next mailbox not yet started */
	size_t done; /* mailboxes with a final result */
	struct mc_slot *slots;
	size_t nslots;
	int retries; /* clamped opts->retries */
	int ext; /* queries carry the extension tags */
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
	out->sent = atomic_load(&stat_sent);
	out->retransmits = atomic_load(&stat_retransmits);
	out->accepted = atomic_load(&stat_accepted);
	out->wrong_source = atomic_load(&stat_wrong_source);
	out->malformed = atomic_load(&stat_malformed);
	out->wrong_mailbox = atomic_load(&stat_wrong_mailbox);
	out->bad_mac = atomic_load(&stat_bad_mac);
	out->missing_mac = atomic_load(&stat_missing_mac);
	out->oversize = atomic_load(&stat_oversize);
}

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

/* A mailbox we are willing to put on the wire: printable ASCII, spaces only as sent. */
static int mailbox_sendable(const char *m, size_t len)
{
	if (len == 0 || len > MINGER_DATAGRAM_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)m[i];
		if (c < 0x20 || c > 0x7e)
			return 0;
	}
	return 1;
}

static int make_nonce(char out[MINGER_NONCE_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[MINGER_NONCE_HEX_LEN / 2];
	if (RAND_bytes(raw, (int)sizeof raw) != 1)
		return -1;
	for (size_t i = 0; i < sizeof raw; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[MINGER_NONCE_HEX_LEN] = '\0';
	return 0;
}

/*
 * Builds the datagram for the slot's next attempt. Without the extension every
 * attempt is the identical datagram (a plain -06 query is idempotent). With it,
 * each attempt gets a fresh ts and nonce: the server refuses a nonce it has seen
 * (replay protection), so resending the identical datagram after a lost REPLY
 * would earn status 2 instead of the answer.
 */
static int slot_format(struct mc_run *r, struct mc_slot *s)
{
	const char *secret = r->opts->secret;
	if (s->attempts > 0 && !r->ext)
		return 0;
	if (!secret) {
		int len = minger_query_format(s->dgram, sizeof s->dgram - (sizeof MC_PAD_TAG - 1),
		                              s->mailbox, s->mailbox_len, NULL, 0, 0, NULL);
		if (len < 0)
			return -1;
		memcpy(s->dgram + len, MC_PAD_TAG, sizeof MC_PAD_TAG);
		s->dgram_len = (size_t)len + sizeof MC_PAD_TAG - 1;
		return 0;
	}
	char *nonce = NULL;
	if (r->ext) {
		nonce = s->nonces[s->attempts];
		if (make_nonce(nonce) < 0)
			return -1;
	}
	int64_t now = time_wall_s();
	int len = minger_query_format(s->dgram, sizeof s->dgram, s->mailbox, s->mailbox_len, secret,
	                              strlen(secret), now > 0 ? (uint64_t)now : 0, nonce);
	if (len < 0 || (size_t)len > MINGER_DATAGRAM_MAX)
		return -1;
	s->dgram_len = (size_t)len;
	return 0;
}

/*
 * Sends the slot's next attempt. Returns 0; SEND_BAD_QUERY when this query cannot be
 * built (the slot is finished with ERROR); SEND_SOCKET on a socket error. A send that
 * fails for lack of buffer space counts as a lost datagram: the retransmission timer
 * covers it.
 */
enum { SEND_BAD_QUERY = -1, SEND_SOCKET = -2 };

static void slot_finish(struct mc_run *r, struct mc_slot *s, int result);

static int slot_send(struct mc_run *r, struct mc_slot *s)
{
	if (slot_format(r, s) < 0) {
		slot_finish(r, s, MINGER_RESULT_ERROR);
		return SEND_BAD_QUERY;
	}
	ssize_t w = sendto(r->fd, s->dgram, s->dgram_len, 0,
	                   (const struct sockaddr *)&r->server->ss, r->server->len);
	if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != EINTR)
		return SEND_SOCKET;
	if (s->attempts > 0)
		atomic_fetch_add(&stat_retransmits, 1);
	atomic_fetch_add(&stat_sent, 1);
	s->attempts++;
	s->deadline_ms = time_mono_ms() + (uint64_t)r->opts->timeout_ms;
	return 0;
}

static void slot_finish(struct mc_run *r, struct mc_slot *s, int result)
{
	r->results[s->idx] = result;
	r->done++;
	s->busy = 0;
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
		s->busy = 1;
		s->idx = idx;
		s->mailbox = r->mailboxes[idx];
		s->mailbox_len = s->mailbox ? strlen(s->mailbox) : 0;
		s->attempts = 0;
		s->dgram_len = 0;
		if (!s->mailbox || !mailbox_sendable(s->mailbox, s->mailbox_len)) {
			slot_finish(r, s, MINGER_RESULT_ERROR);
			continue; /* the slot is free again: give it the next mailbox */
		}
		if (slot_send(r, s) == SEND_SOCKET)
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
		if (s->attempts > r->retries)
			slot_finish(r, s, MINGER_RESULT_TIMEOUT);
		else if (slot_send(r, s) == SEND_SOCKET)
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

static void note_ignored(atomic_ullong *counter, const char *why, const struct sockaddr *from)
{
	atomic_fetch_add(counter, 1);
	if (log_limit_allow(&ignored_limit)) {
		char a[80];
		netaddr_format(from, a, sizeof a);
		log_debug("minger client: ignored a datagram from %s: %s", a, why);
	}
}

/*
 * Checks a parsed reply against one outstanding slot with the same mailbox.
 * Returns 1 to accept, 0 to ignore (mac missing when required, or bad).
 */
static int reply_mac_ok(const struct mc_run *r, const struct mc_slot *s,
                        const struct minger_reply *rep, const struct sockaddr *from)
{
	if (!r->ext) /* no nonce was sent: a reply mac cannot be checked (and is not expected) */
		return 1;
	if (!rep->has_mac) {
		if (!r->opts->require_reply_mac)
			return 1; /* an old server (protocol doc, extension: client) */
		note_ignored(&stat_missing_mac, "reply without the required mac", from);
		return 0;
	}
	const char *secret = r->opts->secret;
	for (int a = 0; a < s->attempts; a++)
		if (minger_reply_mac_matches(rep, secret, strlen(secret), s->nonces[a]))
			return 1;
	/* A bad mac is a forgery or a reply to someone else: ignored even when not required. */
	note_ignored(&stat_bad_mac, "reply mac does not verify", from);
	return 0;
}

static void handle_datagram(struct mc_run *r, const uint8_t *buf, size_t len,
                            const struct sockaddr *from)
{
	if (!netaddr_equal(from, (const struct sockaddr *)&r->server->ss)) {
		note_ignored(&stat_wrong_source, "not from the server's address and port", from);
		return;
	}
	if (len > MINGER_DATAGRAM_MAX) {
		note_ignored(&stat_oversize, "oversize", from);
		return;
	}
	struct minger_reply rep;
	if (minger_reply_parse(buf, len, &rep) < 0) {
		note_ignored(&stat_malformed, "malformed reply", from);
		return;
	}
	int matched = 0;
	for (size_t i = 0; i < r->nslots; i++) {
		struct mc_slot *s = &r->slots[i];
		if (!s->busy || s->mailbox_len != rep.mailbox_len ||
		    memcmp(s->mailbox, rep.mailbox, rep.mailbox_len) != 0)
			continue;
		matched = 1;
		if (!reply_mac_ok(r, s, &rep, from))
			continue;
		atomic_fetch_add(&stat_accepted, 1);
		slot_finish(r, s, rep.status);
	}
	if (!matched)
		note_ignored(&stat_wrong_mailbox, "reply for a mailbox not asked (or no longer)",
		             from);
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
                      char *err, size_t errlen)
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
	if (opts->secret && !minger_secret_valid(opts->secret, strlen(opts->secret))) {
		set_err(err, errlen, "invalid shared secret");
		return -1;
	}
	if (opts->require_reply_mac && (!opts->secret || !opts->use_ext)) {
		set_err(err, errlen, "a reply mac needs a secret and the extension");
		return -1;
	}
	return 0;
}

int minger_client_query_many(const struct netaddr *server, const char *const *mailboxes, size_t n,
                             const struct minger_client_opts *opts, int *results, char *err,
                             size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		results[i] = MINGER_RESULT_ERROR;
	if (n == 0)
		return 0;
	if (check_opts(server, opts, err, errlen) < 0)
		return -1;
	size_t window = opts->window ? opts->window : 64;
	if (window > MINGER_CLIENT_WINDOW_MAX)
		window = MINGER_CLIENT_WINDOW_MAX;
	if (window > n)
		window = n;
	struct mc_run r = {
	        .server = server,
	        .opts = opts,
	        .mailboxes = mailboxes,
	        .n = n,
	        .results = results,
	        .nslots = window,
	        .retries = opts->retries > MINGER_CLIENT_RETRIES_MAX ? MINGER_CLIENT_RETRIES_MAX
	                                                             : opts->retries,
	        .ext = opts->secret && opts->use_ext,
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
	memset(r.slots, 0, window * sizeof *r.slots);
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
