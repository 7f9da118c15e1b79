/*
 * fuzz_minger_msg: libFuzzer target for proto/minger_msg. Parses the input as a
 * query in strict and compat mode and as a reply, and checks the invariants the
 * server relies on: spans stay inside the datagram, strict acceptance implies
 * compat acceptance, a formatted reply is never longer than mailbox + 2 + 69
 * octets and parses back to the same mailbox and status, and a parsed reply
 * formats back to exactly the input. A violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/minger_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

/* Formats a reply for q with and without a mac and parses it back. */
static void check_reply_of(const struct minger_query *q, int status)
{
	static const char secret[] = "0123456789abcdef";
	char out[MINGER_DATAGRAM_MAX + 80];
	uint8_t mac[MINGER_MAC_LEN];
	struct minger_reply r;

	minger_reply_mac(secret, 16, q->mailbox, q->mailbox_len, status, "0123456789abcdef", mac);
	for (int with_mac = 0; with_mac <= 1; with_mac++) {
		int n = minger_reply_format(out, sizeof out, q->mailbox, q->mailbox_len, status,
		                            with_mac ? mac : NULL);
		require(n > 0 && (size_t)n <= q->mailbox_len + 2 + 69);
		require(minger_reply_parse((const uint8_t *)out, (size_t)n, &r) == 0);
		require(r.mailbox_len == q->mailbox_len);
		require(memcmp(r.mailbox, q->mailbox, q->mailbox_len) == 0);
		require(r.status == status && r.has_mac == with_mac);
		require(minger_reply_mac_matches(&r, secret, 16, "0123456789abcdef") == with_mac);
	}
}

static void check_query(const uint8_t *data, size_t size, int compat, struct minger_query *q)
{
	enum minger_parse_result res = minger_query_parse(data, size, compat, q);
	const char *base = (const char *)data;

	if (res == MINGER_PARSE_UNUSABLE) {
		require(q->mailbox == NULL && q->mailbox_len == 0);
		return;
	}
	require(res == MINGER_PARSE_OK || res == MINGER_PARSE_MALFORMED);
	require(q->mailbox == base && q->mailbox_len > 0 && q->mailbox_len <= size);
	for (size_t i = 0; i < q->mailbox_len; i++)
		require(data[i] >= 0x20 && data[i] <= 0x7e);
	if (res == MINGER_PARSE_MALFORMED) {
		require(q->digest_form == MINGER_DIGEST_NONE && !q->has_ext);
		check_reply_of(q, MINGER_STATUS_MALFORMED);
		return;
	}
	require(compat || q->digest_form == MINGER_DIGEST_NONE ||
	        q->digest_form == MINGER_DIGEST_D);
	require(q->mailbox_len == size || data[q->mailbox_len] == ' ');
	if (q->has_ext)
		require(strlen(q->nonce) == MINGER_NONCE_HEX_LEN);
	check_reply_of(q, MINGER_STATUS_ACTIVE);
	check_reply_of(q, MINGER_STATUS_AUTH);

	/* A mailbox that parsed formats into a query that parses back to it. */
	char out[MINGER_DATAGRAM_MAX + 200];
	struct minger_query again;
	int n = minger_query_format(out, sizeof out, q->mailbox, q->mailbox_len, "0123456789abcdef",
	                            16, q->ts, "00000000000000ff");
	if (q->ts <= UINT64_C(9999999999999999999) && q->mailbox_len <= 320) {
		require(n > 0);
		require(minger_query_parse((const uint8_t *)out, (size_t)n, 0, &again) ==
		        MINGER_PARSE_OK);
		require(again.mailbox_len == q->mailbox_len &&
		        memcmp(again.mailbox, q->mailbox, q->mailbox_len) == 0);
		require(again.has_ext && again.ts == q->ts);
		require(minger_digest_matches(&again, "0123456789abcdef", 16));
		require(minger_query_mac_matches(&again, "0123456789abcdef", 16));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct minger_query strict, compat;
	struct minger_reply r;

	check_query(data, size, 0, &strict);
	check_query(data, size, 1, &compat);
	/*
	 * Strict mode accepts a subset of compat mode, with the same reading, except
	 * that compat reserves the tag name "D" (strict: "x@y D=abc" is an unknown tag).
	 */
	if (minger_query_parse(data, size, 0, &strict) == MINGER_PARSE_OK) {
		if (minger_query_parse(data, size, 1, &compat) == MINGER_PARSE_OK) {
			require(compat.mailbox_len == strict.mailbox_len);
			require(compat.has_ext == strict.has_ext && compat.ts == strict.ts);
		} else {
			require(memmem(data, size, " D=", 3) != NULL);
		}
	}

	if (minger_reply_parse(data, size, &r) == 0) {
		char out[MINGER_DATAGRAM_MAX + 80];
		require(r.mailbox == (const char *)data && r.mailbox_len > 0);
		require(r.status >= 0 && r.status <= 5);
		int n = minger_reply_format(out, sizeof out, r.mailbox, r.mailbox_len, r.status,
		                            r.has_mac ? r.mac : NULL);
		require(n >= 0 && (size_t)n == size && memcmp(out, data, size) == 0);
	}
	return 0;
}
