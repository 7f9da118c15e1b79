/*
 * minger_msg: the Minger wire format (draft-hathcock-minger-06 sections 2-3) and
 * the sharemail replay-proof extension (../shared/minger-protocol.md).
 * Pure: no I/O, no logging, no allocation. Parsed spans point into the datagram.
 * Crypto (MD5, HMAC-SHA256, CRYPTO_memcmp) comes from OpenSSL.
 */
#ifndef SHAREMAIL_PROTO_MINGER_MSG_H
#define SHAREMAIL_PROTO_MINGER_MSG_H

#include <stddef.h>
#include <stdint.h>

#define MINGER_PORT 4069
#define MINGER_DATAGRAM_MAX 1024 /* decision: larger datagrams are dropped */
#define MINGER_SECRET_MIN 16
#define MINGER_SECRET_MAX 50
#define MINGER_DIGEST_LEN 16 /* raw MD5 */
#define MINGER_DIGEST_B64_LEN 24
#define MINGER_NONCE_HEX_LEN 16
#define MINGER_MAC_LEN 32 /* raw HMAC-SHA256 */
#define MINGER_MAC_HEX_LEN 64
#define MINGER_TS_MAX_DIGITS 19

enum minger_status {
	MINGER_STATUS_MALFORMED = 0,
	MINGER_STATUS_DENIED = 1,
	MINGER_STATUS_AUTH = 2,
	MINGER_STATUS_UNKNOWN = 3,
	MINGER_STATUS_INACTIVE = 4,
	MINGER_STATUS_ACTIVE = 5,
};

enum minger_parse_result {
	MINGER_PARSE_OK = 0,
	MINGER_PARSE_MALFORMED, /* bad query; q->mailbox holds what to echo with status 0 */
	MINGER_PARSE_UNUSABLE, /* nothing sensible to echo: drop without a reply */
};

/* How the digest was written. Only MINGER_DIGEST_D is legal in strict mode. */
enum minger_digest_form {
	MINGER_DIGEST_NONE = 0,
	MINGER_DIGEST_D, /* "d=<b64>" (-05/-06) */
	MINGER_DIGEST_UPPER_D, /* "D=<b64>" (-03/-04, compat only) */
	MINGER_DIGEST_BARE, /* "<b64>" with no name (-02, compat only) */
};

struct minger_query {
	const char *mailbox; /* span into the datagram */
	size_t mailbox_len;
	enum minger_digest_form digest_form;
	uint8_t digest[MINGER_DIGEST_LEN];
	/* sharemail extension: all three tags present and well-formed, or none. */
	int has_ext;
	uint64_t ts;
	char nonce[MINGER_NONCE_HEX_LEN + 1];
	uint8_t mac[MINGER_MAC_LEN];
};

/*
 * Parses a query datagram: exactly `mailbox [SP d=digest] [SP tag=value]*`.
 * `compat` accepts the -02 bare digest and -03/-04 "D=" forms right after the
 * mailbox; in compat mode the tag name "D" is then reserved like "d" (so
 * "x@y D=abc" is an unknown tag in strict mode but a bad digest in compat mode).
 * Unknown tags are ignored; ts/nonce/mac must be all present and well-formed or
 * all absent (else MALFORMED). On MALFORMED, q->mailbox/mailbox_len hold the echo
 * and every other field is zero: the mailbox itself when it parsed and is followed
 * by SP or the end (so a quoted mailbox with spaces is echoed whole), otherwise the
 * octets before the first space (the whole datagram if it has none); if that echo
 * is empty or not printable ASCII, the result is UNUSABLE (mailbox NULL). Note a
 * status-0 reply to a datagram without a space is 2 octets longer than the query.
 * Empty datagrams and those longer than MINGER_DATAGRAM_MAX are UNUSABLE.
 */
enum minger_parse_result minger_query_parse(const uint8_t *dgram, size_t len, int compat,
                                            struct minger_query *q);

/*
 * Formats a query: mailbox, then " d=<digest>" if secret != NULL, then the
 * extension tags " ts= nonce= mac=" if secret != NULL and nonce != NULL (ts and
 * the 16-hex nonce given by the caller). The mailbox is not validated. Returns the
 * length written (no NUL counted; out is NUL-terminated), or -1 if it does not
 * fit, or if the nonce is not 16 lower-case hex digits or ts has more than 19
 * digits (forms minger_query_parse would refuse).
 */
int minger_query_format(char *out, size_t outsz, const char *mailbox, size_t mailbox_len,
                        const char *secret, size_t secret_len, uint64_t ts, const char *nonce);

/* MD5(secret ":" mailbox), the -06 digest (all zero if OpenSSL fails). */
void minger_digest(const char *secret, size_t secret_len, const char *mailbox, size_t mailbox_len,
                   uint8_t out[MINGER_DIGEST_LEN]);

/* 1 if q carries a digest that matches `secret` (constant-time compare), else 0. */
int minger_digest_matches(const struct minger_query *q, const char *secret, size_t secret_len);

/*
 * Extension query mac: HMAC-SHA256(secret, mailbox SP ts SP nonce), ts in decimal
 * without leading zeros. All zero if OpenSSL fails; the *_matches functions never
 * accept in that case.
 */
void minger_query_mac(const char *secret, size_t secret_len, const char *mailbox,
                      size_t mailbox_len, uint64_t ts, const char *nonce,
                      uint8_t out[MINGER_MAC_LEN]);

/* 1 if q->has_ext and q->mac matches `secret` (constant-time), else 0. */
int minger_query_mac_matches(const struct minger_query *q, const char *secret, size_t secret_len);

/*
 * Extension reply mac: HMAC-SHA256(secret, "R" SP mailbox SP status SP nonce),
 * status as one digit 0-5 (all zero for any other status or an OpenSSL failure).
 */
void minger_reply_mac(const char *secret, size_t secret_len, const char *mailbox,
                      size_t mailbox_len, int status, const char *nonce,
                      uint8_t out[MINGER_MAC_LEN]);

/*
 * Formats "mailbox SP status" and, if mac != NULL, " mac=<64 hex>". Returns the
 * length, or -1 if it does not fit in outsz (NUL-terminated when it fits).
 */
int minger_reply_format(char *out, size_t outsz, const char *mailbox, size_t mailbox_len,
                        int status, const uint8_t *mac);

struct minger_reply {
	const char *mailbox; /* span into the datagram */
	size_t mailbox_len;
	int status; /* 0..5 */
	int has_mac;
	uint8_t mac[MINGER_MAC_LEN];
};

/*
 * Parses a reply: everything before the last " <digit>" (optionally followed by
 * " mac=<64 lower hex>") is the mailbox. Returns 0, or -1 for anything else
 * (status outside 0-5, extra octets, empty mailbox, a mailbox that starts or ends
 * with SP, control or 8-bit octets, more than MINGER_DATAGRAM_MAX + 71 octets).
 * The mailbox is not validated as RFC 5321 syntax (a status-0 echo need not be).
 */
int minger_reply_parse(const uint8_t *dgram, size_t len, struct minger_reply *r);

/* 1 if r has a reply mac that matches (secret, nonce), constant-time; else 0. */
int minger_reply_mac_matches(const struct minger_reply *r, const char *secret, size_t secret_len,
                             const char *nonce);

/*
 * 1 if s[0..len) is a usable shared secret: MINGER_SECRET_MIN..MINGER_SECRET_MAX
 * octets of VCHAR (0x21-0x7E); else 0.
 */
int minger_secret_valid(const char *s, size_t len);

/*
 * The words for a status, as the tool prints them ("malformed", "denied", "bad
 * credentials", "unknown", "inactive", "active"), or "invalid" outside 0-5.
 */
const char *minger_status_word(int status);

#endif
