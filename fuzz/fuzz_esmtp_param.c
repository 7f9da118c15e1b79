/*
 * fuzz_esmtp_param: libFuzzer target for proto/esmtp_param. The first octet
 * chooses DSN on or off; the rest is parsed as MAIL and as RCPT parameters and
 * as xtext. Checks that decoded values are NUL-terminated printable ASCII (no
 * CR/LF can reach an envelope), that a rejected parse leaves nothing behind,
 * and that xtext encoding round-trips. A violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/esmtp_param.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static void require_printable(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	require(n <= max);
	for (size_t i = 0; i < n; i++)
		require((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] <= 0x7e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	int dsn = data[0] & 1;
	const char *s = (const char *)data + 1;
	size_t len = size - 1;

	struct esmtp_mail_params m;
	enum esmtp_result r = esmtp_mail_params_parse(s, len, dsn, &m);
	require(r <= ESMTP_UNKNOWN);
	if (r == ESMTP_OK) {
		require(m.body >= 0 && m.body <= 2 && m.ret >= 0 && m.ret <= 2);
		require(dsn || (!m.ret && !m.has_envid));
		if (m.has_envid)
			require_printable(m.envid, ESMTP_ENVID_MAX);
	} else {
		require(!m.has_size && !m.has_envid && !m.body && !m.ret);
	}

	struct esmtp_rcpt_params p;
	r = esmtp_rcpt_params_parse(s, len, dsn, &p);
	require(r <= ESMTP_UNKNOWN);
	if (r == ESMTP_OK) {
		require(p.notify <= 0xf && (p.notify == 1 || !(p.notify & 1)));
		require(dsn || (!p.notify && !p.has_orcpt));
		if (p.has_orcpt) {
			require_printable(p.orcpt, ESMTP_ORCPT_MAX);
			require(strchr(p.orcpt, ';') != NULL);
		}
	} else {
		require(!p.notify && !p.has_orcpt);
	}

	static char dec[4096], enc[3 * 4096 + 1], dec2[4096];
	int n = xtext_decode(s, len, dec, sizeof dec);
	if (n >= 0) {
		require((size_t)n <= len && dec[n] == '\0');
		require_printable(dec, sizeof dec);
	}
	if (len < sizeof dec) {
		int e = xtext_encode(s, len, enc, sizeof enc);
		require(e >= (int)len);
		int d = xtext_decode(enc, (size_t)e, dec2, sizeof dec2);
		/* Only printable octets survive decoding; others are refused. */
		int printable = 1;
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
				printable = 0;
		require(printable ? (d == (int)len && memcmp(dec2, s, len) == 0) : d == -1);
	}
	return 0;
}
