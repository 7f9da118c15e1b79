/*
 * esmtp_param: MAIL and RCPT parameters (RFC 5321 4.1.2):
 *
 *   esmtp-param   = esmtp-keyword ["=" esmtp-value]
 *   esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
 *   esmtp-value   = 1*(%d33-60 / %d62-126)
 *
 * Values are checked against each extension's own grammar: SIZE (RFC 1870 3),
 * BODY (RFC 6152 2), RET, ENVID, NOTIFY, ORCPT (RFC 3461 4.1-4.4) and xtext
 * (RFC 3461 4). Everything a peer sends is refused before it can reach the
 * envelope with a control octet in it: a CR or LF there could forge a queue
 * record or a header line.
 */
#include "proto/esmtp_param.h"

#include <string.h>

#include "util/strutil.h"

#define SIZE_DIGITS_MAX 20

struct param {
	const char *key;
	size_t key_len;
	const char *val; /* NULL when there is no "=" */
	size_t val_len;
};

static int is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Any octet outside SP and 0x21-0x7E (CR, LF, NUL, TAB, 8-bit) refuses the line. */
static int octets_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e)
			return 0;
	}
	return 1;
}

/*
 * Reads the next parameter at s[*pos], skipping spaces. Returns 1 with *p set, 0
 * at the end, -1 on a grammar error.
 */
static int next_param(const char *s, size_t len, size_t *pos, struct param *p)
{
	size_t i = *pos;
	while (i < len && s[i] == ' ')
		i++;
	if (i >= len)
		return 0;
	size_t start = i;
	while (i < len && s[i] != ' ')
		i++;
	*pos = i;

	const char *tok = s + start;
	size_t n = i - start;
	const char *eq = memchr(tok, '=', n);
	p->key = tok;
	p->key_len = eq ? (size_t)(eq - tok) : n;
	p->val = eq ? eq + 1 : NULL;
	p->val_len = eq ? n - p->key_len - 1 : 0;

	if (p->key_len == 0 || !is_alnum((unsigned char)p->key[0]))
		return -1;
	for (size_t k = 1; k < p->key_len; k++)
		if (!is_alnum((unsigned char)p->key[k]) && p->key[k] != '-')
			return -1;
	if (eq && (p->val_len == 0 || memchr(p->val, '=', p->val_len)))
		return -1;
	return 1;
}

/* RFC 1870: size-value = 1*20DIGIT; a value beyond uint64_t is a syntax error. */
static int parse_size(const char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	if (v == NULL || n == 0 || n > SIZE_DIGITS_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		unsigned d = (unsigned)(v[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*out = x;
	return 0;
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+" and "=",
 * hexchar = "+" 2HEXDIG. Decoded octets must be printable ASCII (SP allowed):
 * "+0D+0A" must not smuggle a line break into the envelope.
 */
int xtext_decode(const char *s, size_t len, char *out, size_t outsz)
{
	size_t o = 0;
	if (outsz == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x21 || c > 0x7e || c == '=')
			return -1;
		if (c == '+') {
			if (len - i < 3)
				return -1;
			int hi = hex_value((unsigned char)s[i + 1]);
			int lo = hex_value((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi * 16 + lo);
			if (c < 0x20 || c > 0x7e)
				return -1;
			i += 2;
		}
		if (o + 1 >= outsz)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

int xtext_encode(const char *s, size_t len, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	if (outsz == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int plain = c >= 0x21 && c <= 0x7e && c != '+' && c != '=';
		size_t need = plain ? 1 : 3;
		if (o + need >= outsz)
			return -1;
		if (plain) {
			out[o++] = (char)c;
		} else {
			out[o++] = '+';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return (int)o;
}

static enum esmtp_result mail_param(const struct param *p, int dsn, struct esmtp_mail_params *out)
{
	if (ascii_equal_ci(p->key, p->key_len, "SIZE")) {
		if (out->has_size || parse_size(p->val, p->val_len, &out->size) != 0)
			return ESMTP_SYNTAX;
		out->has_size = 1;
		return ESMTP_OK;
	}
	if (ascii_equal_ci(p->key, p->key_len, "BODY")) {
		if (out->body || p->val == NULL)
			return ESMTP_SYNTAX;
		if (ascii_equal_ci(p->val, p->val_len, "7BIT"))
			out->body = ESMTP_BODY_7BIT;
		else if (ascii_equal_ci(p->val, p->val_len, "8BITMIME"))
			out->body = ESMTP_BODY_8BITMIME;
		else
			return ESMTP_SYNTAX;
		return ESMTP_OK;
	}
	if (dsn && ascii_equal_ci(p->key, p->key_len, "RET")) {
		if (out->ret || p->val == NULL)
			return ESMTP_SYNTAX;
		if (ascii_equal_ci(p->val, p->val_len, "FULL"))
			out->ret = ESMTP_RET_FULL;
		else if (ascii_equal_ci(p->val, p->val_len, "HDRS"))
			out->ret = ESMTP_RET_HDRS;
		else
			return ESMTP_SYNTAX;
		return ESMTP_OK;
	}
	if (dsn && ascii_equal_ci(p->key, p->key_len, "ENVID")) {
		/* RFC 3461 4.4: at most 100 characters (as transmitted). */
		if (out->has_envid || p->val == NULL || p->val_len > ESMTP_ENVID_MAX ||
		    xtext_decode(p->val, p->val_len, out->envid, sizeof out->envid) < 0)
			return ESMTP_SYNTAX;
		out->has_envid = 1;
		return ESMTP_OK;
	}
	return ESMTP_UNKNOWN;
}

/*
 * The loop both MAIL and RCPT share: every parameter through `one`, and on any
 * refusal the output is cleared so no half-parsed value is ever used.
 */
static enum esmtp_result params_parse(const char *s, size_t len, int dsn,
                                      enum esmtp_result (*one)(const struct param *p, int dsn,
                                                               void *out),
                                      void *out, size_t outsz)
{
	struct param p;
	size_t pos = 0;
	int r;

	memset(out, 0, outsz);
	if (s == NULL)
		return ESMTP_OK;
	if (!octets_ok(s, len))
		return ESMTP_SYNTAX;
	while ((r = next_param(s, len, &pos, &p)) > 0) {
		enum esmtp_result e = one(&p, dsn, out);
		if (e != ESMTP_OK) {
			memset(out, 0, outsz);
			return e;
		}
	}
	if (r < 0) {
		memset(out, 0, outsz);
		return ESMTP_SYNTAX;
	}
	return ESMTP_OK;
}

static enum esmtp_result mail_param_cb(const struct param *p, int dsn, void *out)
{
	return mail_param(p, dsn, out);
}

enum esmtp_result esmtp_mail_params_parse(const char *s, size_t len, int dsn,
                                          struct esmtp_mail_params *out)
{
	return params_parse(s, len, dsn, mail_param_cb, out, sizeof *out);
}

/* RFC 3461 4.1: "NEVER" alone, or a comma list of SUCCESS, FAILURE, DELAY. */
static int parse_notify(const char *v, size_t n, unsigned *out)
{
	unsigned bits = 0;
	size_t i = 0;
	if (v == NULL || n == 0)
		return -1;
	while (i <= n) {
		size_t start = i;
		while (i < n && v[i] != ',')
			i++;
		unsigned bit;
		if (ascii_equal_ci(v + start, i - start, "NEVER"))
			bit = ESMTP_NOTIFY_NEVER;
		else if (ascii_equal_ci(v + start, i - start, "SUCCESS"))
			bit = ESMTP_NOTIFY_SUCCESS;
		else if (ascii_equal_ci(v + start, i - start, "FAILURE"))
			bit = ESMTP_NOTIFY_FAILURE;
		else if (ascii_equal_ci(v + start, i - start, "DELAY"))
			bit = ESMTP_NOTIFY_DELAY;
		else
			return -1;
		if (bits & bit)
			return -1;
		bits |= bit;
		i++; /* past the ',' (or past the end) */
	}
	if ((bits & ESMTP_NOTIFY_NEVER) && bits != ESMTP_NOTIFY_NEVER)
		return -1;
	*out = bits;
	return 0;
}

/* RFC 3461 4.2: orcpt-parameter = "ORCPT=" addr-type ";" xtext; addr-type = atom. */
static int parse_orcpt(const char *v, size_t n, char *out, size_t outsz)
{
	/* The whole parameter ("ORCPT=" included) is at most 500 characters. */
	if (v == NULL || n + 6 > ESMTP_ORCPT_MAX)
		return -1;
	const char *semi = memchr(v, ';', n);
	if (semi == NULL || semi == v || (size_t)(semi - v) + 1 == n)
		return -1;
	size_t tlen = (size_t)(semi - v);
	for (size_t i = 0; i < tlen; i++)
		if (!is_alnum((unsigned char)v[i]) && v[i] != '-')
			return -1;
	if (tlen + 1 >= outsz)
		return -1;
	memcpy(out, v, tlen + 1);
	int d = xtext_decode(semi + 1, n - tlen - 1, out + tlen + 1, outsz - tlen - 1);
	if (d <= 0)
		return -1;
	return 0;
}

static enum esmtp_result rcpt_param(const struct param *p, int dsn, struct esmtp_rcpt_params *out)
{
	if (dsn && ascii_equal_ci(p->key, p->key_len, "NOTIFY")) {
		if (out->notify || parse_notify(p->val, p->val_len, &out->notify) != 0)
			return ESMTP_SYNTAX;
		return ESMTP_OK;
	}
	if (dsn && ascii_equal_ci(p->key, p->key_len, "ORCPT")) {
		if (out->has_orcpt ||
		    parse_orcpt(p->val, p->val_len, out->orcpt, sizeof out->orcpt))
			return ESMTP_SYNTAX;
		out->has_orcpt = 1;
		return ESMTP_OK;
	}
	return ESMTP_UNKNOWN;
}

static enum esmtp_result rcpt_param_cb(const struct param *p, int dsn, void *out)
{
	return rcpt_param(p, dsn, out);
}

enum esmtp_result esmtp_rcpt_params_parse(const char *s, size_t len, int dsn,
                                          struct esmtp_rcpt_params *out)
{
	return params_parse(s, len, dsn, rcpt_param_cb, out, sizeof *out);
}
