/*
 * minger_client: asks a Minger server about mailboxes (blocking; one UDP socket
 * per call). A reply is accepted only when it comes from the queried address and
 * port, parses, and echoes a mailbox we asked about (byte-exact); with
 * require_reply_mac it must also carry a valid extension reply mac. Anything else
 * (wrong source, other mailbox, late, malformed) is ignored. Each query is sent,
 * then retransmitted identically `retries` times, timeout_ms apart; no reply by
 * then is a timeout, which callers must treat as "try later", never "no such user".
 *
 * With a secret, queries carry the -06 digest and the sharemail extension tags
 * (ts, a fresh random nonce, mac); without one, they are anonymous.
 */
#ifndef SHAREMAIL_VERIFY_MINGER_CLIENT_H
#define SHAREMAIL_VERIFY_MINGER_CLIENT_H

#include <stddef.h>

#include "util/netaddr.h"

struct minger_client_opts {
	int timeout_ms;         /* per attempt; default 2000 */
	int retries;            /* retransmissions after the first send; default 2 */
	int require_reply_mac;  /* ignore replies without a valid reply mac */
	int use_ext;            /* send ts/nonce/mac tags with a secret (default 1) */
	const char *secret;     /* NULL: anonymous */
	size_t window;          /* batch: queries in flight at once (default 64) */
};

/* Fills opts with the defaults above (anonymous). */
void minger_client_opts_init(struct minger_client_opts *opts);

/* Outcome of one query: a status 0..5, or one of these. */
#define MINGER_RESULT_TIMEOUT (-1)
#define MINGER_RESULT_ERROR (-2)   /* local failure: bad address, socket error */

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
int minger_client_query_many(const struct netaddr *server, const char *const *mailboxes,
			     size_t n, const struct minger_client_opts *opts, int *results,
			     char *err, size_t errlen);

#endif
