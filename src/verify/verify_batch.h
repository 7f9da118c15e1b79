/*
 * verify_batch: the policy "cache, then ask, then record" for one Minger server
 * named on the command line (`sharemail minger query --server`), blocking
 * (minger_client.h). The daemon's verdicts (verify.h) follow the same policy on
 * its event loop; both record in the one verification cache (vcache.h) under the
 * server's "ADDR:PORT" key, so an answer the CLI recorded is one the daemon uses
 * and the reverse.
 *
 * Ownership: everything is borrowed; results[] and cached[] are the caller's.
 */
#ifndef SHAREMAIL_VERIFY_VERIFY_BATCH_H
#define SHAREMAIL_VERIFY_VERIFY_BATCH_H

#include <stddef.h>

#include "util/netaddr.h"
#include "verify/minger_client.h"

struct vcache;

struct verify_batch_cache {
	struct vcache *vc; /* NULL: no cache */
	const char *server_key; /* the cache's server key (netaddr_format of the server) */
	int read; /* 1: answer from the cache first (--cached); 0: ask everything */
	int positive_ttl, negative_ttl; /* for recording (vcache_put) */
};

/*
 * Answers addrs[0..n): from the cache when cache->read and it has the address,
 * else by asking server (every address not cached in one minger_client_query_many
 * batch); then records every answer 3-5 in the cache. results[i] gets a status
 * 0-5 or MINGER_RESULT_*; cached[i] is 1 when it came from the cache. *unrecorded
 * counts answers the cache refused. Returns 0, or -1 with err (out of memory or a
 * local failure: the addresses asked are then MINGER_RESULT_ERROR).
 */
int verify_batch_query(const struct netaddr *server, const struct minger_client_opts *opts,
                       const struct verify_batch_cache *cache, const char *const *addrs, size_t n,
                       int *results, unsigned char *cached, size_t *unrecorded, char *err,
                       size_t errlen);

#endif
