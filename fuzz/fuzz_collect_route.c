/*
 * fuzz_collect_route: libFuzzer target for the whole DomainPOP routing
 * (collect/collect_route) and the dedupe keys (collect/collect_dedupe). The
 * first octet picks the configuration (rules on or off, a received_by host, a
 * custom header list); the rest is the header section. A domain is "local" when
 * it starts with a letter from a to m. Checks: the result is bounded and
 * consistent (NONE exactly when nobody was found, a deciding name otherwise),
 * every recipient is an RFC 5321 mailbox in its lookup-key form, local, and
 * listed once; routing twice gives the same answer; each dedupe key is empty or
 * "m:"/"d:" with no NUL. A violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "collect/collect_dedupe.h"
#include "collect/collect_route.h"
#include "proto/mailaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static int local_domain(const char *domain)
{
	char c = domain[0];
	return (c >= 'a' && c <= 'm') || (c >= 'A' && c <= 'M');
}

static int is_local(void *arg, const char *addr, const char *domain)
{
	(void)arg;
	require(domain > addr && domain[-1] == '@');
	return local_domain(domain);
}

static void check_result(const struct collect_route_result *r)
{
	require(r->n_rcpts <= COLLECT_ROUTE_RCPTS_MAX);
	require((r->rule == COLLECT_ROUTE_NONE) == (r->n_rcpts == 0 && r->dropped == 0));
	require((r->rule == COLLECT_ROUTE_NONE) == (r->header == NULL));
	if (r->dropped)
		require(r->n_rcpts == COLLECT_ROUTE_RCPTS_MAX);
	for (size_t i = 0; i < r->n_rcpts; i++) {
		struct mailaddr a;
		char key[MAILADDR_MAX + 1];
		size_t len = strlen(r->rcpts[i]);
		require(mailaddr_parse_exact(r->rcpts[i], len, &a) == MAILADDR_OK);
		require(mailaddr_key(&a, key, sizeof key) == (int)len);
		require(strcmp(key, r->rcpts[i]) == 0);
		require(local_domain(a.domain));
		for (size_t j = 0; j < i; j++)
			require(strcmp(r->rcpts[j], r->rcpts[i]) != 0);
	}
}

static void check_key(enum collect_dedupe_mode mode, const char *hdr, size_t len)
{
	char out[COLLECT_DEDUPE_KEY_MAX];
	int n = collect_dedupe_key(mode, hdr, len, out, sizeof out);
	require(n >= 0 && n < (int)sizeof out && out[n] == '\0' && strlen(out) == (size_t)n);
	if (n > 0)
		require(n > 2 && out[1] == ':' &&
		        (mode == COLLECT_DEDUPE_MESSAGE_ID ? out[0] == 'm' : out[0] == 'd'));
	if (mode == COLLECT_DEDUPE_NONE)
		require(n == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct collect_route_result r1, r2;
	struct collect_route_conf c;
	char list[] = "X-Rcpt-To Received To";
	if (size == 0)
		return 0;
	uint8_t conf = data[0];
	const char *hdr = (const char *)data + 1;
	size_t len = size - 1;

	collect_route_conf_defaults(&c);
	c.is_local = is_local;
	c.parse_received = conf & 1;
	c.parse_to_cc = (conf >> 1) & 1;
	if (conf & 4)
		c.received_by = (conf & 8) ? ".example" : "mx.isp.example";
	if (conf & 16)
		require(collect_route_conf_headers(&c, list) == 3);

	enum collect_route_rule rule = collect_route(&c, hdr, len, &r1);
	require(rule == r1.rule);
	check_result(&r1);
	require(collect_route(&c, hdr, len, &r2) == rule);
	require(r1.n_rcpts == r2.n_rcpts && r1.dropped == r2.dropped && r1.foreign == r2.foreign &&
	        r1.malformed == r2.malformed);
	for (size_t i = 0; i < r1.n_rcpts; i++)
		require(strcmp(r1.rcpts[i], r2.rcpts[i]) == 0);

	check_key(COLLECT_DEDUPE_MESSAGE_ID, hdr, len);
	check_key(COLLECT_DEDUPE_DATE, hdr, len);
	check_key(COLLECT_DEDUPE_NONE, hdr, len);
	return 0;
}
