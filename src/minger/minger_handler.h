/*
 * minger_handler: answers one Minger query datagram (minger-protocol.md,
 * draft-hathcock-minger-06 sections 2-3, and the sharemail extension). No I/O:
 * the server hands it a datagram, its source and the time, and gets back the
 * reply bytes or "drop". The recipient lookup is a function pointer so the
 * handler is tested with a fake directory.
 *
 * Decision order: oversize or unusable -> drop; source outside minger_allow ->
 * status 1; rate limits -> drop; malformed -> status 0; authentication (extension
 * mac + timestamp + nonce, else -06 digest, else anonymous) -> status 2 on any
 * failure, before any lookup; then the lookup (TEMPFAIL -> drop, so the asker
 * answers 451); finally the amplification check (reply never longer than the
 * query in strict mode, at most 2 octets longer otherwise) -> drop.
 *
 * The lookup is this server's own mailboxes only (the daemon hands it the local
 * index, never the Domain Sharing or gateway verifier): a peer asked about a user
 * it does not host answers 3 and never asks its own peers, so two peers can never
 * ask each other in a circle (issue 8, item 5).
 *
 * Ownership: a struct minger_handler is one worker's context. It borrows its
 * conf (shared, read-only), its source table (owned by the worker), and the
 * shared global limit and replay cache; all must outlive it. Refusals are counted
 * in `stats` and logged through rate-limited lines (log_limit).
 */
#ifndef SHAREMAIL_MINGER_MINGER_HANDLER_H
#define SHAREMAIL_MINGER_MINGER_HANDLER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/minger_msg.h"
#include "util/netaddr.h"
#include "verify/lookup.h"

/* The longest reply: a 1024-octet echo, " 5", " mac=<64 hex>", NUL. */
#define MINGER_REPLY_MAX (MINGER_DATAGRAM_MAX + 2 + 5 + MINGER_MAC_HEX_LEN + 1)
/* Global-limit tokens a worker takes at once (unused ones go back at batch end). */
#define MINGER_HANDLER_LEASE 16

struct minger_secret {
	const char *s;
	size_t len;
};

/* The handler's configuration, shared read-only by every worker. */
struct minger_handler_conf {
	const struct minger_secret *secrets;
	size_t n_secrets;
	int anonymous; /* answer queries without credentials */
	int compat; /* accept bare and D= digests */
	int foreign_aliases_active; /* foreign-only alias -> 5 instead of 3 */
	/*
	 * minger_gateway_clients: queries from these sources (a SecurityGateway, a
	 * sharemail gateway in front of us) always see a foreign-only alias as 5,
	 * whatever foreign_aliases_active says (MDaemon's rule for SecurityGateway).
	 */
	const struct netaddr_net *gateway_clients;
	size_t n_gateway_clients;
	int strict_amplification; /* reply <= query (else <= query + 2) */
	int replay_window; /* seconds */
	const struct netaddr_net *allow;
	size_t n_allow; /* 0: everyone */
};

/* What was refused, for counting and logging. */
enum minger_event {
	MINGER_EV_OVERSIZE = 0, /* too long or nothing to echo */
	MINGER_EV_DENIED, /* status 1 */
	MINGER_EV_RATE, /* dropped by a rate limit */
	MINGER_EV_MALFORMED, /* status 0 */
	MINGER_EV_AUTH, /* status 2: wrong or missing credentials */
	MINGER_EV_REPLAY, /* status 2: stale timestamp, replayed nonce, cache full */
	MINGER_EV_TEMPFAIL, /* lookup said try later: dropped */
	MINGER_EV_AMPLIFICATION, /* reply longer than allowed: dropped */
	MINGER_EV_COUNT
};

struct minger_handler_stats {
	uint64_t queries; /* datagrams handled */
	uint64_t replies; /* replies produced */
	uint64_t status[6];
	uint64_t events[MINGER_EV_COUNT];
};

/* The time of a batch: wall clock seconds (extension timestamps) and a monotonic ms clock. */
struct minger_now {
	int64_t wall_s;
	uint64_t mono_ms;
};

struct minger_handler {
	const struct minger_handler_conf *conf;
	lookup_fn lookup;
	void *lookup_arg;
	struct minger_source_table *sources; /* NULL: no per-source limit */
	struct minger_replay *replay; /* NULL only when no secret is configured */
	struct minger_global_limit *global; /* NULL: no global limit */
	uint32_t lease; /* global tokens held */
	struct minger_handler_stats stats;
	uint64_t log_next_ms[MINGER_EV_COUNT];
};

/*
 * Initialises h with the borrowed objects described above; `lookup(lookup_arg, ...)`
 * (mailbox_lookup() or a test double, safe to call from the worker) answers the
 * lookups of this worker. sources and global may be NULL (no limit).
 */
void minger_handler_init(struct minger_handler *h, const struct minger_handler_conf *conf,
                         lookup_fn lookup, void *lookup_arg, struct minger_source_table *sources,
                         struct minger_global_limit *global, struct minger_replay *replay);

/*
 * Handles one datagram from `src` at `now`. Returns the reply length (> 0) with the
 * reply in out (outsz >= MINGER_REPLY_MAX), or 0 to send nothing.
 */
size_t minger_handler_handle(struct minger_handler *h, const uint8_t *dgram, size_t len,
                             const struct sockaddr *src, const struct minger_now *now, char *out,
                             size_t outsz);

/* Ends a batch: gives unused global tokens back so other workers may use them. */
void minger_handler_batch_end(struct minger_handler *h);

#endif
