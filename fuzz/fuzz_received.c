/*
 * fuzz_received: libFuzzer target for proto/received. Parses the input as a
 * Received field body. Checks that the spans lie inside the input, are not
 * empty, that a for address has lost its angle brackets, that a failed parse
 * leaves nothing, that a by host matches itself, and that the parse does not
 * depend on what follows the first top-level ';' being read. A violated
 * invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/received.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static int inside(const char *p, size_t len, const char *v, size_t n)
{
	return p >= v && len > 0 && p + len <= v + n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *v = (const char *)data;
	struct received_info ri;
	int r = received_parse(v, size, &ri);
	require(r == 0 || r == -1);
	if (r < 0) {
		require(ri.by == NULL && ri.for_addr == NULL && ri.by_len == 0 && ri.for_len == 0);
		return 0;
	}
	if (ri.by)
		require(inside(ri.by, ri.by_len, v, size));
	if (ri.for_addr) {
		require(ri.by != NULL && inside(ri.for_addr, ri.for_len, v, size));
		require(ri.for_addr > ri.by);
		/* a token starting with '<' is an angle address, whose '<' was taken off */
		require(ri.for_addr[0] != '<' || ri.for_addr[-1] == '<');
	}
	if (ri.by && ri.by_len < 256 && memchr(ri.by, '\0', ri.by_len) == NULL && ri.by[0] != '.') {
		char want[256];
		memcpy(want, ri.by, ri.by_len);
		want[ri.by_len] = '\0';
		size_t wlen = ri.by_len - (want[ri.by_len - 1] == '.');
		require(received_by_matches(ri.by, ri.by_len, want) == (wlen > 0));
	}
	/* Cut at the by host's end: the by clause stays; no for clause appears. */
	if (ri.by) {
		struct received_info cut;
		size_t n = (size_t)(ri.by + ri.by_len - v);
		if (received_parse(v, n, &cut) == 0)
			require(cut.for_addr == NULL);
	}
	return 0;
}
