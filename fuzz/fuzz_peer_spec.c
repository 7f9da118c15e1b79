/*
 * fuzz_peer_spec: libFuzzer target for proto/peer_spec. The input (cut at the
 * first NUL) is parsed as a domain_sharing_host, a gateway_domain and a
 * forward_domain line. Checks that every result is NUL-terminated within its
 * field, ports are 1-65535, a failure leaves a reason, a forward line never
 * carries gateway-only options, and a parsed peer's relay destination parses
 * back with nexthop_spec_parse to the same port. A violated invariant traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/peer_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static void check_hostport(const struct peer_spec_hostport *hp)
{
	require(memchr(hp->host, '\0', sizeof hp->host) != NULL);
	require(hp->host[0] != '\0');
	require(hp->port >= 1 && hp->port <= 65535);
}

static void check_peer(const char *line)
{
	struct peer_spec_peer p;
	char err[256] = "";
	if (peer_spec_parse_peer(line, &p, err, sizeof err) < 0) {
		require(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
		return;
	}
	check_hostport(&p.smtp);
	require(p.minger_port >= 1 && p.minger_port <= 65535);
	require(memchr(p.secret_file, '\0', sizeof p.secret_file) != NULL);
	char route[NEXTHOP_PEER_ROUTE_MAX], why[128];
	int n = nexthop_spec_format_peer(p.smtp.host, p.smtp.port, route, sizeof route);
	require(n > 0 && (size_t)n == strlen(route));
	struct nexthop_spec spec;
	require(nexthop_spec_parse(route, (size_t)n, &spec, why, sizeof why) == 0);
	require(spec.port == p.smtp.port && spec.kind != NEXTHOP_KIND_MX);
	require(nexthop_spec_parse_peer(route, &spec) == 1);
}

static void check_gateway(const char *line, int forward)
{
	struct peer_spec_gateway g;
	char err[256] = "";
	if (peer_spec_parse_gateway(line, forward, &g, err, sizeof err) < 0) {
		require(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
		return;
	}
	require(g.domain[0] != '\0' && memchr(g.domain, '\0', sizeof g.domain) != NULL);
	check_hostport(&g.minger);
	require(g.host.port >= 1 && g.host.port <= 65535);
	if (forward)
		require(g.unreachable == PEER_SPEC_UNREACHABLE_DEFER && g.domain_sharing == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	check_peer(line);
	check_gateway(line, 0);
	check_gateway(line, 1);
	free(line);
	return 0;
}
