/* verify_batch: see verify_batch.h. */
#include "verify/verify_batch.h"

#include <stdio.h>
#include <stdlib.h>

#include "verify/vcache.h"

int verify_batch_query(const struct netaddr *server, const struct minger_client_opts *opts,
                       const struct verify_batch_cache *cache, const char *const *addrs, size_t n,
                       int *results, unsigned char *cached, size_t *unrecorded, char *err,
                       size_t errlen)
{
	*unrecorded = 0;
	for (size_t i = 0; i < n; i++)
		results[i] = MINGER_RESULT_ERROR, cached[i] = 0;
	const char **to_ask = calloc(n + 1, sizeof *to_ask);
	size_t *where = calloc(n + 1, sizeof *where);
	int *got = calloc(n + 1, sizeof *got);
	int rc = 0;
	if (!to_ask || !where || !got) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
		goto out;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int st;
		if (cache->vc && cache->read &&
		    vcache_get(cache->vc, cache->server_key, addrs[i], &st) == 1) {
			results[i] = st;
			cached[i] = 1;
			continue;
		}
		to_ask[k] = addrs[i];
		where[k++] = i;
	}
	if (k == 1) {
		got[0] = minger_client_query(server, to_ask[0], opts, err, errlen);
		rc = got[0] == MINGER_RESULT_ERROR ? -1 : 0;
	} else if (k > 1) {
		rc = minger_client_query_many(server, to_ask, k, opts, got, err, errlen);
	}
	for (size_t j = 0; j < k; j++) {
		results[where[j]] = got[j];
		if (cache->vc && got[j] >= 0 &&
		    vcache_put(cache->vc, cache->server_key, to_ask[j], got[j], cache->positive_ttl,
		               cache->negative_ttl) < 0)
			(*unrecorded)++;
	}
out:
	free(to_ask);
	free(where);
	free(got);
	return rc;
}
