/*
 * minger_client: asks a Minger server about mailboxes (blocking; one UDP socket
 * per call). A reply is accepted only when it comes from the queried address and
 * port, parses, and echoes a mailbox we asked about (byte-exact); with
 * require_reply_mac it must also carry a valid extension reply mac. Anything else
 * (wrong source, other mailbox, late, malformed) is ignored. Each query is sent,
 * then retransmitted `retries` times (see the decision below), timeout_ms apart;
 * no reply by then is a timeout, which callers must treat as "try later", never "no such user".
 *
 * With a secret, queries carry the -06 digest and the sharemail extension tags
 * (ts, a fresh random nonce, mac); without one, they are anonymous, padded with
 * the ignored tag " pad=00" so the reply is never larger than the query.
 *
 * Decision: with the extension, each retransmission carries a fresh ts and nonce
 * (and so a new mac) instead of repeating the identical datagram: the server
 * refuses a nonce it has already seen, so an identical resend after a lost reply
 * would be answered 2. A reply mac is accepted if it verifies with the nonce of
 * any attempt for that mailbox. Queries without the extension are resent
 * identically.
 */
#ifndef SHAREMAIL_VERIFY_MINGER_CLIENT_H
#define SHAREMAIL_VERIFY_MINGER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "util/netaddr.h"

struct minger_client_opts {
	int timeout_ms; /* per attempt; default 2000 */
	int retries; /* retransmissions after the first send; default 2 */
	int require_reply_mac; /* ignore replies without a valid reply mac */
	int use_ext; /* send ts/nonce/mac tags with a secret (default 1) */
	const char *secret; /* NULL: anonymous */
	size_t window; /* batch: queries in flight at once (default 64) */
};

/* Bounds applied to opts: larger values are clamped. */
#define MINGER_CLIENT_RETRIES_MAX 20
#define MINGER_CLIENT_WINDOW_MAX 1024

/* Fills opts with the defaults above (anonymous). */
void minger_client_opts_init(struct minger_client_opts *opts);

/* Outcome of one query: a status 0..5, or one of these. */
#define MINGER_RESULT_TIMEOUT (-1)
#define MINGER_RESULT_ERROR (-2) /* local failure: bad address, socket error */

/*
 * Queries one mailbox. Returns its status 0..5, MINGER_RESULT_TIMEOUT or
 * MINGER_RESULT_ERROR (with a reason in err).
 */
int minger_client_query(const struct netaddr *server, const char *mailbox,
                        const struct minger_client_opts *opts, char *err, size_t errlen);

/*
 * Queries n mailboxes with up to opts->window in flight, each with its own
 * timeout and retransmissions. results[i] receives the outcome for mailboxes[i].
 * Returns 0, or -1 on a local failure (socket error: every result is then ERROR).
 */
int minger_client_query_many(const struct netaddr *server, const char *const *mailboxes, size_t n,
                             const struct minger_client_opts *opts, int *results, char *err,
                             size_t errlen);

/*
 * Process-wide counters (atomic; for debugging and tests): datagrams sent and
 * retransmitted, replies accepted, and datagrams ignored by reason.
 */
struct minger_client_stats {
	uint64_t sent;
	uint64_t retransmits;
	uint64_t accepted;
	uint64_t wrong_source; /* not from the server's address and port */
	uint64_t malformed; /* minger_reply_parse refused it */
	uint64_t wrong_mailbox; /* a mailbox not (or no longer) outstanding */
	uint64_t bad_mac; /* reply mac present but not valid */
	uint64_t missing_mac; /* no reply mac while require_reply_mac */
	uint64_t oversize; /* longer than MINGER_DATAGRAM_MAX */
};

/* Copies the counters into out. */
void minger_client_stats_get(struct minger_client_stats *out);

#endif
