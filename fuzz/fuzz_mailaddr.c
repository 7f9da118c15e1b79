/*
 * fuzz_mailaddr: libFuzzer target for proto/mailaddr. Checks that a parsed
 * mailbox lies inside the input, respects the RFC 5321 4.5.3.1 limits, is only
 * printable ASCII, parses again exactly on its own, and has a key of the same
 * length that equals the mailbox folded to lower case. A violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/mailaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static int lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct mailaddr a, b;
	size_t used = 0;
	enum mailaddr_result r = mailaddr_parse(s, size, &used, &a);
	enum mailaddr_result rx = mailaddr_parse_exact(s, size, &b);

	require(mailaddr_strerror(r) != NULL);
	require(r != MAILADDR_EMPTY || size == 0);
	/* Exact parsing succeeds only when the prefix parse used everything. */
	require((rx == MAILADDR_OK) == (r == MAILADDR_OK && used == size));
	if (r != MAILADDR_OK)
		return 0;
	require(used > 0 && used <= size && used <= MAILADDR_MAX);
	require(a.local == s && a.local_len >= 1 && a.local_len <= MAILADDR_LOCAL_MAX);
	require(a.domain == s + a.local_len + 1 && a.domain_len >= 1 &&
	        a.domain_len <= MAILADDR_DOMAIN_MAX);
	require(used == a.local_len + 1 + a.domain_len && s[a.local_len] == '@');
	require(a.quoted == (s[0] == '"') && a.literal == (a.domain[0] == '['));
	for (size_t i = 0; i < used; i++)
		require(data[i] >= 0x20 && data[i] <= 0x7e);
	for (size_t i = 0; i < a.domain_len; i++)
		require(a.literal || a.domain[i] != ' ');

	require(mailaddr_parse_exact(s, used, &b) == MAILADDR_OK);
	require(b.local_len == a.local_len && b.domain_len == a.domain_len);

	char key[MAILADDR_MAX + 1];
	int n = mailaddr_key(&a, key, sizeof key);
	require(n >= 0 && (size_t)n == used && key[n] == '\0');
	for (size_t i = 0; i < used; i++)
		require(key[i] == lower((unsigned char)s[i]));
	require(mailaddr_key(&a, key, used) == -1);
	return 0;
}
