/*
 * minger_msg: Minger query and reply datagrams (draft-hathcock-minger-06 sections
 * 2.1 and 3) plus the sharemail replay-proof extension (shared/minger-protocol.md).
 *
 * The query is read left to right: first one RFC 5321 Mailbox (which may contain
 * spaces inside a quoted local part, so the datagram is never split on spaces
 * before the mailbox is known), then single-SP-separated items: an optional digest
 * first, then tags. The reply is read right to left because its mailbox may
 * contain spaces while its tail (" <digit>" and an optional " mac=<hex>") cannot.
 */
#include "proto/minger_msg.h"

#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "proto/base64.h"
#include "proto/mailaddr.h"

#define MINGER_MAX_TAGS (MINGER_DATAGRAM_MAX / 4) /* "a=b " is the shortest tag */

static const char hex_digits[] = "0123456789abcdef";

/* One SP-separated item of a query after the mailbox. */
struct span {
	const char *p;
	size_t n;
};

/* Tag-name / tag-value character: ALPHA / DIGIT / "_" (-06 section 2.1). */
static int is_tag_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

static int is_lower_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int span_is(struct span s, const char *lit)
{
	size_t n = strlen(lit);
	return s.n == n && memcmp(s.p, lit, n) == 0;
}

/* Decodes exactly 2*outlen lower-case hex digits (upper case is refused: one spelling). */
static int hex_decode_lower(const char *s, size_t len, uint8_t *out, size_t outlen)
{
	if (len != 2 * outlen)
		return -1;
	for (size_t i = 0; i < outlen; i++) {
		unsigned char hi = (unsigned char)s[2 * i], lo = (unsigned char)s[2 * i + 1];
		if (!is_lower_hex(hi) || !is_lower_hex(lo))
			return -1;
		hi = (unsigned char)(hi <= '9' ? hi - '0' : hi - 'a' + 10);
		lo = (unsigned char)(lo <= '9' ? lo - '0' : lo - 'a' + 10);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static void hex_encode(const uint8_t *in, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex_digits[in[i] >> 4];
		out[2 * i + 1] = hex_digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

/* Decimal text of v into buf (at least 21 octets); returns its length. */
static size_t u64_to_dec(uint64_t v, char *buf)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = '\0';
	return n;
}

/* ts: 1..19 digits, no sign, no leading zero except "0" itself (one spelling per value). */
static int parse_ts(struct span v, uint64_t *out)
{
	uint64_t ts = 0;

	if (v.n == 0 || v.n > MINGER_TS_MAX_DIGITS || (v.n > 1 && v.p[0] == '0'))
		return -1;
	for (size_t i = 0; i < v.n; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
		ts = ts * 10 + (uint64_t)(v.p[i] - '0'); /* 19 digits always fit in 64 bits */
	}
	*out = ts;
	return 0;
}

/* The nonce must be exactly 16 lower-case hex digits. */
static int valid_nonce(const char *s, size_t n)
{
	if (n != MINGER_NONCE_HEX_LEN)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_hex((unsigned char)s[i]))
			return 0;
	return 1;
}

/* A digest value: 24 base64 characters that decode (strictly) to 16 bytes. */
static int parse_digest(struct span v, uint8_t out[MINGER_DIGEST_LEN])
{
	uint8_t buf[18];

	if (v.n != MINGER_DIGEST_B64_LEN)
		return -1;
	if (base64_decode(v.p, v.n, buf, sizeof buf) != MINGER_DIGEST_LEN)
		return -1;
	memcpy(out, buf, MINGER_DIGEST_LEN);
	return 0;
}

/*
 * Splits dgram[pos..len) into items separated by exactly one SP. pos is at the SP
 * that follows the mailbox. Empty items (doubled or trailing SP) fail.
 */
static int split_items(const char *d, size_t len, size_t pos, struct span *items, size_t *count)
{
	size_t n = 0;

	while (pos < len) {
		size_t start;
		if (d[pos] != ' ')
			return -1;
		start = ++pos;
		while (pos < len && d[pos] != ' ')
			pos++;
		if (pos == start || n >= MINGER_MAX_TAGS)
			return -1;
		items[n].p = d + start;
		items[n].n = pos - start;
		n++;
	}
	*count = n;
	return 0;
}

/*
 * Reads the optional digest in the first item (-06: "d=", compat adds -03/-04
 * "D=" and the -02 bare digest). Returns the number of items it used (0 or 1),
 * or -1 if the first item is a malformed digest.
 */
static int parse_digest_item(struct span it, int compat, struct minger_query *q)
{
	struct span v = {it.p + 2, it.n >= 2 ? it.n - 2 : 0};

	if (it.n >= 2 && it.p[0] == 'd' && it.p[1] == '=') {
		q->digest_form = MINGER_DIGEST_D;
		return parse_digest(v, q->digest) == 0 ? 1 : -1;
	}
	if (!compat)
		return 0;
	if (it.n >= 2 && it.p[0] == 'D' && it.p[1] == '=') {
		q->digest_form = MINGER_DIGEST_UPPER_D;
		return parse_digest(v, q->digest) == 0 ? 1 : -1;
	}
	/* A canonical 16-byte digest ends in "==", which no tag-value may contain. */
	if (parse_digest(it, q->digest) == 0) {
		q->digest_form = MINGER_DIGEST_BARE;
		return 1;
	}
	return 0;
}

/* Splits one tag-spec at its '='; both sides 1*(ALPHA / DIGIT / "_"). */
static int split_tag(struct span it, struct span *name, struct span *value)
{
	const char *eq = memchr(it.p, '=', it.n);

	if (!eq)
		return -1;
	name->p = it.p;
	name->n = (size_t)(eq - it.p);
	value->p = eq + 1;
	value->n = it.n - name->n - 1;
	if (name->n == 0 || value->n == 0)
		return -1;
	for (size_t i = 0; i < it.n; i++)
		if (it.p + i != eq && !is_tag_char((unsigned char)it.p[i]))
			return -1;
	return 0;
}

/* Applies one extension tag to q; unknown tags are ignored (decision). */
static int apply_tag(struct span name, struct span value, struct minger_query *q,
                     unsigned *ext_seen)
{
	if (span_is(name, "ts")) {
		*ext_seen |= 1;
		return parse_ts(value, &q->ts);
	}
	if (span_is(name, "nonce")) {
		*ext_seen |= 2;
		if (!valid_nonce(value.p, value.n))
			return -1;
		memcpy(q->nonce, value.p, MINGER_NONCE_HEX_LEN);
		q->nonce[MINGER_NONCE_HEX_LEN] = '\0';
		return 0;
	}
	if (span_is(name, "mac")) {
		*ext_seen |= 4;
		return hex_decode_lower(value.p, value.n, q->mac, MINGER_MAC_LEN);
	}
	return 0;
}

/*
 * Parses the tag-list in items[0..n). "d" is reserved (a digest after a tag, or a
 * second digest, is malformed); in compat mode "D" is too. Names are case-sensitive
 * and must not repeat.
 */
static int parse_tags(const struct span *items, size_t n, int compat, struct minger_query *q)
{
	struct span names[MINGER_MAX_TAGS];
	unsigned ext_seen = 0;

	for (size_t i = 0; i < n; i++) {
		struct span name, value;
		if (split_tag(items[i], &name, &value) != 0)
			return -1;
		if (span_is(name, "d") || (compat && span_is(name, "D")))
			return -1;
		for (size_t k = 0; k < i; k++)
			if (names[k].n == name.n && memcmp(names[k].p, name.p, name.n) == 0)
				return -1;
		names[i] = name;
		if (apply_tag(name, value, q, &ext_seen) != 0)
			return -1;
	}
	if (ext_seen != 0 && ext_seen != 7)
		return -1; /* ts, nonce and mac come together or not at all */
	q->has_ext = ext_seen == 7;
	return 0;
}

/*
 * The echo for a malformed query: the mailbox if it parsed and ends at a SP or
 * the end (so a quoted mailbox with spaces is echoed whole), else the octets
 * before the first SP. Only printable ASCII is echoed.
 */
static enum minger_parse_result malformed(const char *d, size_t len, size_t mbox_len,
                                          struct minger_query *q)
{
	size_t n = mbox_len;

	memset(q, 0, sizeof *q);
	if (n == 0) {
		const char *sp = memchr(d, ' ', len);
		n = sp ? (size_t)(sp - d) : len;
	}
	if (n == 0)
		return MINGER_PARSE_UNUSABLE;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)d[i] < 0x20 || (unsigned char)d[i] > 0x7e)
			return MINGER_PARSE_UNUSABLE;
	q->mailbox = d;
	q->mailbox_len = n;
	return MINGER_PARSE_MALFORMED;
}

enum minger_parse_result minger_query_parse(const uint8_t *dgram, size_t len, int compat,
                                            struct minger_query *q)
{
	const char *d = (const char *)dgram;
	struct span items[MINGER_MAX_TAGS];
	struct mailaddr a;
	size_t used = 0, n = 0;
	int skip;

	memset(q, 0, sizeof *q);
	if (len == 0 || len > MINGER_DATAGRAM_MAX)
		return MINGER_PARSE_UNUSABLE;
	if (mailaddr_parse(d, len, &used, &a) != MAILADDR_OK)
		return malformed(d, len, 0, q);
	if (used < len && d[used] != ' ')
		return malformed(d, len, 0, q); /* "a@b@c", "a@b>", "a@b\t" */
	if (split_items(d, len, used, items, &n) != 0)
		return malformed(d, len, used, q);
	skip = n > 0 ? parse_digest_item(items[0], compat, q) : 0;
	if (skip < 0 || parse_tags(items + skip, n - (size_t)skip, compat, q) != 0)
		return malformed(d, len, used, q);
	q->mailbox = d;
	q->mailbox_len = used;
	return MINGER_PARSE_OK;
}

/*
 * OpenSSL 3 looks an algorithm up in its provider tables on every implicit use
 * (EVP_md5(), EVP_MAC_fetch), which costs more than hashing a 40-octet query.
 * The server hashes every datagram, so the algorithms are fetched once, and each
 * thread keeps one reusable digest context (freed when the thread exits): no
 * allocation per query.
 */
static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static EVP_MD *md5_algo;
static EVP_MAC *hmac_algo;
static pthread_key_t md_ctx_key;

static void md_ctx_destroy(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void crypto_init(void)
{
	md5_algo = EVP_MD_fetch(NULL, "MD5", NULL);
	hmac_algo = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (pthread_key_create(&md_ctx_key, md_ctx_destroy) != 0)
		md5_algo = NULL; /* every digest then fails closed */
}

/* This thread's digest context, created on first use; NULL on failure. */
static EVP_MD_CTX *thread_md_ctx(void)
{
	pthread_once(&crypto_once, crypto_init);
	if (!md5_algo)
		return NULL;
	EVP_MD_CTX *ctx = pthread_getspecific(md_ctx_key);
	if (!ctx) {
		ctx = EVP_MD_CTX_new();
		if (ctx && pthread_setspecific(md_ctx_key, ctx) != 0) {
			EVP_MD_CTX_free(ctx);
			ctx = NULL;
		}
	}
	return ctx;
}

/* MD5 over the concatenation of up to three parts; 0 on success. */
static int md5_parts(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                     size_t clen, uint8_t out[MINGER_DIGEST_LEN])
{
	EVP_MD_CTX *ctx = thread_md_ctx();
	unsigned int outlen = 0;
	int ok = ctx && EVP_DigestInit_ex2(ctx, md5_algo, NULL) == 1 &&
	         EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
	         EVP_DigestUpdate(ctx, c, clen) == 1 &&
	         EVP_DigestFinal_ex(ctx, out, &outlen) == 1 && outlen == MINGER_DIGEST_LEN;

	if (!ok)
		memset(out, 0, MINGER_DIGEST_LEN);
	return ok ? 0 : -1;
}

/* HMAC-SHA256(key, parts joined with no separator); 0 on success. */
static int hmac_parts(const char *key, size_t keylen, const struct span *parts, size_t nparts,
                      uint8_t out[MINGER_MAC_LEN])
{
	pthread_once(&crypto_once, crypto_init);
	EVP_MAC_CTX *ctx = hmac_algo ? EVP_MAC_CTX_new(hmac_algo) : NULL;
	OSSL_PARAM params[2];
	size_t outlen = 0;
	int ok;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	/* A zero-length key is legal HMAC; OpenSSL wants a non-NULL pointer for it. */
	ok = ctx &&
	     EVP_MAC_init(ctx, (const unsigned char *)(keylen ? key : ""), keylen, params) == 1;
	for (size_t i = 0; ok && i < nparts; i++)
		ok = EVP_MAC_update(ctx, (const unsigned char *)parts[i].p, parts[i].n) == 1;
	ok = ok && EVP_MAC_final(ctx, out, &outlen, MINGER_MAC_LEN) == 1 &&
	     outlen == MINGER_MAC_LEN;
	EVP_MAC_CTX_free(ctx);
	if (!ok)
		memset(out, 0, MINGER_MAC_LEN);
	return ok ? 0 : -1;
}

void minger_digest(const char *secret, size_t secret_len, const char *mailbox, size_t mailbox_len,
                   uint8_t out[MINGER_DIGEST_LEN])
{
	(void)md5_parts(secret, secret_len, ":", 1, mailbox, mailbox_len, out);
}

int minger_digest_matches(const struct minger_query *q, const char *secret, size_t secret_len)
{
	uint8_t want[MINGER_DIGEST_LEN];

	if (q->digest_form == MINGER_DIGEST_NONE)
		return 0;
	if (md5_parts(secret, secret_len, ":", 1, q->mailbox, q->mailbox_len, want) != 0)
		return 0; /* never compare against an all-zero failure result */
	return CRYPTO_memcmp(want, q->digest, MINGER_DIGEST_LEN) == 0;
}

static int query_mac(const char *secret, size_t secret_len, const char *mailbox, size_t mailbox_len,
                     uint64_t ts, const char *nonce, uint8_t out[MINGER_MAC_LEN])
{
	char tsbuf[21];
	struct span parts[5];

	if (!nonce) {
		memset(out, 0, MINGER_MAC_LEN);
		return -1;
	}

	parts[0] = (struct span){mailbox, mailbox_len};
	parts[1] = (struct span){" ", 1};
	parts[2] = (struct span){tsbuf, u64_to_dec(ts, tsbuf)};
	parts[3] = (struct span){" ", 1};
	parts[4] = (struct span){nonce, strnlen(nonce, MINGER_NONCE_HEX_LEN)};
	return hmac_parts(secret, secret_len, parts, 5, out);
}

void minger_query_mac(const char *secret, size_t secret_len, const char *mailbox,
                      size_t mailbox_len, uint64_t ts, const char *nonce,
                      uint8_t out[MINGER_MAC_LEN])
{
	(void)query_mac(secret, secret_len, mailbox, mailbox_len, ts, nonce, out);
}

int minger_query_mac_matches(const struct minger_query *q, const char *secret, size_t secret_len)
{
	uint8_t want[MINGER_MAC_LEN];

	if (!q->has_ext)
		return 0;
	if (query_mac(secret, secret_len, q->mailbox, q->mailbox_len, q->ts, q->nonce, want) != 0)
		return 0;
	return CRYPTO_memcmp(want, q->mac, MINGER_MAC_LEN) == 0;
}

static int reply_mac(const char *secret, size_t secret_len, const char *mailbox, size_t mailbox_len,
                     int status, const char *nonce, uint8_t out[MINGER_MAC_LEN])
{
	char digit = (char)('0' + status);
	struct span parts[6];

	if (status < 0 || status > 5 || !nonce) {
		memset(out, 0, MINGER_MAC_LEN);
		return -1;
	}
	parts[0] = (struct span){"R ", 2};
	parts[1] = (struct span){mailbox, mailbox_len};
	parts[2] = (struct span){" ", 1};
	parts[3] = (struct span){&digit, 1};
	parts[4] = (struct span){" ", 1};
	parts[5] = (struct span){nonce, strnlen(nonce, MINGER_NONCE_HEX_LEN)};
	return hmac_parts(secret, secret_len, parts, 6, out);
}

void minger_reply_mac(const char *secret, size_t secret_len, const char *mailbox,
                      size_t mailbox_len, int status, const char *nonce,
                      uint8_t out[MINGER_MAC_LEN])
{
	(void)reply_mac(secret, secret_len, mailbox, mailbox_len, status, nonce, out);
}

int minger_reply_mac_matches(const struct minger_reply *r, const char *secret, size_t secret_len,
                             const char *nonce)
{
	uint8_t want[MINGER_MAC_LEN];

	if (!r->has_mac || !nonce)
		return 0;
	if (reply_mac(secret, secret_len, r->mailbox, r->mailbox_len, r->status, nonce, want) != 0)
		return 0;
	return CRYPTO_memcmp(want, r->mac, MINGER_MAC_LEN) == 0;
}

/* Appends n octets to out at *o if they fit (leaving room for the NUL). */
static int put(char *out, size_t outsz, size_t *o, const char *s, size_t n)
{
	if (outsz == 0 || n > outsz - 1 - *o)
		return -1;
	memcpy(out + *o, s, n);
	*o += n;
	out[*o] = '\0';
	return 0;
}

int minger_query_format(char *out, size_t outsz, const char *mailbox, size_t mailbox_len,
                        const char *secret, size_t secret_len, uint64_t ts, const char *nonce)
{
	uint8_t raw[MINGER_MAC_LEN];
	char b64[BASE64_ENCODED_LEN(MINGER_DIGEST_LEN) + 1];
	char text[MINGER_MAC_HEX_LEN + 1];
	size_t o = 0;

	if (outsz == 0 || mailbox_len > MINGER_DATAGRAM_MAX)
		return -1;
	out[0] = '\0';
	if (put(out, outsz, &o, mailbox, mailbox_len) != 0)
		return -1;
	if (!secret)
		return (int)o;
	if (md5_parts(secret, secret_len, ":", 1, mailbox, mailbox_len, raw) != 0 ||
	    base64_encode(raw, MINGER_DIGEST_LEN, b64, sizeof b64) != MINGER_DIGEST_B64_LEN)
		return -1;
	if (put(out, outsz, &o, " d=", 3) != 0 || put(out, outsz, &o, b64, 24) != 0)
		return -1;
	if (!nonce)
		return (int)o;
	/* Only what minger_query_parse accepts: a 16-hex nonce, a ts of at most 19 digits. */
	if (!valid_nonce(nonce, strnlen(nonce, MINGER_NONCE_HEX_LEN + 1)) ||
	    ts > UINT64_C(9999999999999999999))
		return -1;
	if (put(out, outsz, &o, " ts=", 4) != 0 ||
	    put(out, outsz, &o, text, u64_to_dec(ts, text)) != 0 ||
	    put(out, outsz, &o, " nonce=", 7) != 0 ||
	    put(out, outsz, &o, nonce, MINGER_NONCE_HEX_LEN) != 0)
		return -1;
	if (query_mac(secret, secret_len, mailbox, mailbox_len, ts, nonce, raw) != 0)
		return -1;
	hex_encode(raw, MINGER_MAC_LEN, text);
	if (put(out, outsz, &o, " mac=", 5) != 0 ||
	    put(out, outsz, &o, text, MINGER_MAC_HEX_LEN) != 0)
		return -1;
	return (int)o;
}

int minger_reply_format(char *out, size_t outsz, const char *mailbox, size_t mailbox_len,
                        int status, const uint8_t *mac)
{
	char tail[2] = {' ', '0'};
	char hex[MINGER_MAC_HEX_LEN + 1];
	size_t o = 0;

	if (outsz == 0 || status < 0 || status > 5 || mailbox_len > MINGER_DATAGRAM_MAX)
		return -1;
	tail[1] = (char)('0' + status);
	out[0] = '\0';
	if (put(out, outsz, &o, mailbox, mailbox_len) != 0 || put(out, outsz, &o, tail, 2) != 0)
		return -1;
	if (!mac)
		return (int)o;
	hex_encode(mac, MINGER_MAC_LEN, hex);
	if (put(out, outsz, &o, " mac=", 5) != 0 ||
	    put(out, outsz, &o, hex, MINGER_MAC_HEX_LEN) != 0)
		return -1;
	return (int)o;
}

int minger_reply_parse(const uint8_t *dgram, size_t len, struct minger_reply *r)
{
	const char *d = (const char *)dgram;
	const size_t mac_tail = 5 + MINGER_MAC_HEX_LEN; /* " mac=" + hex */

	memset(r, 0, sizeof *r);
	/* The longest reply echoes a whole maximum-size query and carries a mac. */
	if (len > MINGER_DATAGRAM_MAX + 2 + mac_tail)
		return -1;
	if (len >= mac_tail + 3 && memcmp(d + len - mac_tail, " mac=", 5) == 0) {
		if (hex_decode_lower(d + len - MINGER_MAC_HEX_LEN, MINGER_MAC_HEX_LEN, r->mac,
		                     MINGER_MAC_LEN) != 0)
			goto fail;
		r->has_mac = 1;
		len -= mac_tail;
	}
	/* Now exactly: mailbox SP digit, with a non-empty mailbox. */
	if (len < 3 || d[len - 2] != ' ' || d[len - 1] < '0' || d[len - 1] > '5')
		goto fail;
	for (size_t i = 0; i < len - 2; i++)
		if ((unsigned char)d[i] < 0x20 || (unsigned char)d[i] > 0x7e)
			goto fail;
	if (d[0] == ' ' || d[len - 3] == ' ')
		goto fail; /* no mailbox starts or ends with SP: "a@b  5" is not "a@b " */
	r->mailbox = d;
	r->mailbox_len = len - 2;
	r->status = d[len - 1] - '0';
	return 0;
fail:
	memset(r, 0, sizeof *r);
	return -1;
}

int minger_secret_valid(const char *s, size_t len)
{
	if (!s || len < MINGER_SECRET_MIN || len > MINGER_SECRET_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

const char *minger_status_word(int status)
{
	static const char *const words[] = {"malformed", "denied",   "bad credentials",
	                                    "unknown",   "inactive", "active"};

	if (status < 0 || status > 5)
		return "invalid";
	return words[status];
}
