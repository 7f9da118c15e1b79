/*
 * fuzz_sasl: libFuzzer target for proto/sasl. The input is split at LF: the first
 * piece is the AUTH command's arguments, each further piece one continuation line
 * (fed only while the machine asks for one). Checks after every call: the reply is
 * exactly one CRLF-terminated line of printable ASCII (a client's octets can never
 * forge a second reply line), 334 only with SASL_CONTINUE, no reply with SASL_DONE;
 * credentials exist only after SASL_DONE, within their limits (identity printable,
 * password without NUL), and a refusal leaves none behind in the struct. A violated
 * invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static void check_reply(const struct sasl *s, enum sasl_status st)
{
	size_t len;
	int code;
	const char *r = sasl_reply(s, &len, &code);
	require(sasl_status(s) == st);
	if (st == SASL_DONE) {
		require(len == 0 && code == 0 && r[0] == '\0');
		return;
	}
	require(len >= 5 && len < SASL_REPLY_MAX && r[len] == '\0');
	require(r[len - 2] == '\r' && r[len - 1] == '\n');
	for (size_t i = 0; i + 2 < len; i++)
		require((unsigned char)r[i] >= 0x20 && (unsigned char)r[i] <= 0x7e);
	require((code == 334) == (st == SASL_CONTINUE));
	require(st != SASL_INVALID || code == 535);
	require(code >= 334 && code <= 599);
}

static void check_credentials(const struct sasl *s, enum sasl_status st)
{
	size_t plen = 0;
	const char *id = sasl_identity(s);
	const char *pw = sasl_password(s, &plen);
	if (st != SASL_DONE) {
		require(!id && !pw);
		if (st != SASL_CONTINUE) {
			static const char zero[SASL_PASSWORD_MAX + 1];
			require(memcmp(s->password, zero, sizeof zero) == 0);
		}
		return;
	}
	require(id && pw);
	size_t ilen = strlen(id);
	require(ilen >= 1 && ilen <= SASL_IDENTITY_MAX);
	for (size_t i = 0; i < ilen; i++)
		require((unsigned char)id[i] >= 0x20 && (unsigned char)id[i] <= 0x7e);
	require(plen >= 1 && plen <= SASL_PASSWORD_MAX && strlen(pw) == plen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	const char *end = p + size;
	const char *nl = memchr(p, '\n', size);
	size_t len = nl ? (size_t)(nl - p) : size;
	struct sasl s;
	enum sasl_status st = sasl_start(&s, p, len);
	check_reply(&s, st);
	check_credentials(&s, st);
	while (nl && st == SASL_CONTINUE) {
		p = nl + 1;
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		st = sasl_step(&s, p, len);
		check_reply(&s, st);
		check_credentials(&s, st);
	}
	sasl_wipe(&s);
	require(sasl_status(&s) == SASL_FAIL && sasl_identity(&s) == NULL);
	return 0;
}
