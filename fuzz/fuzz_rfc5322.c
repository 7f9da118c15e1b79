/*
 * fuzz_rfc5322: libFuzzer target for proto/rfc5322. Finds the header section
 * of the input, iterates its fields and formats a Date from the first eight
 * octets. Checks that every span lies inside the input, that fields tile the
 * section without gaps, that names are ftext and that a Date is 31 octets. A
 * violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/rfc5322.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	long end = rfc5322_header_end(s, size);
	size_t hlen = end < 0 ? size : (size_t)end;

	require(end < 0 || (end >= 2 && (size_t)end <= size && s[end - 1] == '\n'));
	size_t pos = 0;
	struct rfc5322_field f;
	int r;
	while ((r = rfc5322_next_field(s, hlen, &pos, &f)) == 1) {
		require(f.name_len > 0 && f.total_len > 0 && pos <= hlen);
		require(f.name + f.total_len == s + pos);
		require(f.value > f.name && f.value + f.value_len <= s + pos);
		for (size_t i = 0; i < f.name_len; i++)
			require((unsigned char)f.name[i] > 0x20 &&
			        (unsigned char)f.name[i] < 0x7f && f.name[i] != ':');
		require(f.value[-1] == ':');
		require(rfc5322_field_is(&f, "received") <= 1);
	}
	require(r == 0 || r == -1);
	if (r == 0)
		require(pos == hlen || (hlen - pos >= 2 && s[pos] == '\r' && s[pos + 1] == '\n'));

	if (size >= 8) {
		int64_t t;
		char out[RFC5322_DATE_MAX];
		memcpy(&t, data, sizeof t);
		int n = rfc5322_date_format(t, out, sizeof out);
		require(n == -1 || (n == 31 && out[n] == '\0' && strcmp(out + 25, " +0000") == 0));
		t &= 0xffffffffLL; /* 1970-2106: always formattable */
		require(rfc5322_date_format(t, out, sizeof out) == 31);
	}
	return 0;
}
