/*
 * fuzz_rfc5322_date: libFuzzer target for proto/rfc5322_date. Parses the input
 * as a Date field body; a date that parses must lie in the years 1900-9999
 * (give or take a zone), must format back (rfc5322_date_format) to a date that
 * parses to the same second, and parsing must not read past the input (ASan).
 * A violated invariant traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/rfc5322.h"
#include "proto/rfc5322_date.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size octets, so ASan sees any read past the end. */
	char *v = malloc(size ? size : 1);
	int64_t t = 42, back = 0;
	if (!v)
		return 0;
	memcpy(v, data, size);
	int r = rfc5322_date_parse(v, size, &t);
	require(r == 0 || (r == -1 && t == 42));
	if (r == 0) {
		char buf[RFC5322_DATE_MAX];
		require(t >= -2208988800LL - 100 * 3600 && t <= 253402300799LL + 100 * 3600);
		int n = rfc5322_date_format(t, buf, sizeof buf);
		if (n > 0) {
			require(rfc5322_date_parse(buf, (size_t)n, &back) == 0);
			require(back == t);
		}
	}
	free(v);
	return 0;
}
