/*
 * fuzz_store_name: libFuzzer target for store/mailbox's pure parts. The input's
 * first line (to the first LF, NUL-terminated) is a Maildir file name: its S=/W=
 * fields, its sort key and its UIDL are computed (the UIDL must be 1-70 octets in
 * 0x21-0x7E, equal for the name with or without a ":2,<flags>" part). The rest is
 * a message run through the CRLF converter in chunks whose sizes come from the
 * name's length, into an output window whose size comes from its first octet:
 * no LF may leave without a CR before it, and the output length must equal
 * maildir_wire_size (the W= rule). A violated invariant traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/mailbox.h"
#include "store/maildir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static void check_name(const char *name)
{
	uint64_t s = 0, w = 0, sec, usec;
	(void)mailbox_name_sizes(name, &s, &w);
	mailbox_name_order(name, &sec, &usec);
	char uid[MAILBOX_UID_MAX + 1], uid2[MAILBOX_UID_MAX + 1], flagged[300];
	int n = mailbox_uid(name, uid, sizeof uid);
	require(n >= 1 && n <= MAILBOX_UID_MAX && (size_t)n == strlen(uid));
	for (int i = 0; i < n; i++)
		require((unsigned char)uid[i] >= 0x21 && (unsigned char)uid[i] <= 0x7e);
	if (!strchr(name, ':') && strlen(name) < 200) {
		memcpy(flagged, name, strlen(name));
		memcpy(flagged + strlen(name), ":2,ST", 6);
		require(mailbox_uid(flagged, uid2, sizeof uid2) == n && strcmp(uid, uid2) == 0);
	}
}

static void check_crlf(const char *in, size_t len, size_t window, size_t chunk)
{
	struct mailbox_crlf c;
	mailbox_crlf_init(&c);
	char out[7];
	size_t i = 0, total = 0;
	int prev = -1;
	uint64_t lone = 0;
	int last = -1;
	for (size_t k = 0; k < len; k++) {
		if (in[k] == '\n' && last != '\r')
			lone++;
		last = (unsigned char)in[k];
	}
	while (i < len) {
		size_t n = len - i < chunk ? len - i : chunk, ol = 0;
		size_t used = mailbox_crlf_feed(&c, in + i, n, out, window, &ol);
		require(used > 0 && ol <= window);
		for (size_t k = 0; k < ol; k++) {
			require(out[k] != '\n' || prev == '\r');
			prev = (unsigned char)out[k];
		}
		i += used;
		total += ol;
	}
	size_t el = mailbox_crlf_end(&c, out, sizeof out);
	require(el <= 2);
	for (size_t k = 0; k < el; k++) {
		require(out[k] != '\n' || prev == '\r');
		prev = (unsigned char)out[k];
	}
	total += el;
	require(total == maildir_wire_size(len, lone, last));
	require(total == 0 || prev == '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *lf = memchr(data, '\n', size);
	size_t nl = lf ? (size_t)(lf - data) : size;
	char *name = malloc(nl + 1);
	if (!name)
		return 0;
	memcpy(name, data, nl);
	name[nl] = '\0';
	check_name(name);
	const char *body = lf ? (const char *)lf + 1 : "";
	size_t blen = lf ? size - nl - 1 : 0;
	size_t window = nl ? (unsigned char)name[0] % 6 + 2 : 7; /* 2..7: what sizeof out holds */
	check_crlf(body, blen, window, nl % 13 + 1);
	check_crlf(body, blen, 7, blen + 1);
	free(name);
	return 0;
}
