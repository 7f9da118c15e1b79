/*
 * Unit tests for proto/minger_msg against shared/minger-protocol.md: the test
 * vectors, the example exchanges, every malformed form (strict and compat), the
 * replay-proof extension and the reply format.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proto/base64.h"
#include "proto/mailaddr.h"
#include "proto/minger_msg.h"

#define SECRET "0123456789abcdef"
#define DIG_ARVEL "A7E/WJtlUbO5NWDjZba+bw=="
#define NONCE "0123456789abcdef"

static enum minger_parse_result parse_str(const char *s, int compat, struct minger_query *q)
{
	return minger_query_parse((const uint8_t *)s, strlen(s), compat, q);
}

/* The doc's test-vector table, digests exactly as printed there. */
static const struct {
	const char *secret, *mailbox, *digest;
} vectors[] = {
        {"0123456789abcdef", "arvel@example.com", "A7E/WJtlUbO5NWDjZba+bw=="},
        {"0123456789abcdef", "Arvel@Example.COM", "ptWbzmLDqSk0pEQ13tbBrA=="},
        {"0123456789abcdef", "nobody@example.com", "OtuP1skxbYmws8JVVf3DuA=="},
        {"0123456789abcdef", "\"arvel smith\"@example.com", "K9q4S8Lwg595GGvSSqnlKQ=="},
        {"correct-horse-battery-staple", "user01@example.com", "1oG3c4Nb6/PSKnIOj2Lg+w=="},
        {"wrong-secret-0000", "arvel@example.com", "2P4Wlz1pI7ZmGe89PLJ8fw=="},
};

TEST(digest_test_vectors)
{
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		uint8_t raw[MINGER_DIGEST_LEN];
		char b64[MINGER_DIGEST_B64_LEN + 1];
		minger_digest(vectors[i].secret, strlen(vectors[i].secret), vectors[i].mailbox,
		              strlen(vectors[i].mailbox), raw);
		CHECK_INT(base64_encode(raw, sizeof raw, b64, sizeof b64), MINGER_DIGEST_B64_LEN);
		CHECK_STR(b64, vectors[i].digest);
	}
}

TEST(digest_vectors_as_queries)
{
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		char want[200], got[200];
		struct minger_query q;
		const char *sec = vectors[i].secret, *mb = vectors[i].mailbox;
		snprintf(want, sizeof want, "%s d=%s", mb, vectors[i].digest);
		CHECK_INT(minger_query_format(got, sizeof got, mb, strlen(mb), sec, strlen(sec), 0,
		                              NULL),
		          strlen(want));
		CHECK_STR(got, want);
		for (int compat = 0; compat <= 1; compat++) {
			if (!CHECK_INT(parse_str(want, compat, &q), MINGER_PARSE_OK))
				continue;
			CHECK_MEM(q.mailbox, q.mailbox_len, mb, strlen(mb));
			CHECK_INT(q.digest_form, MINGER_DIGEST_D);
			CHECK_INT(minger_digest_matches(&q, sec, strlen(sec)), 1);
			CHECK_INT(q.has_ext, 0);
		}
	}
}

TEST(digest_depends_on_case_and_secret)
{
	struct minger_query q;
	/* The mailbox is hashed exactly as sent: the lower-case digest fails for Arvel@Example.COM. */
	CHECK_INT(parse_str("Arvel@Example.COM d=" DIG_ARVEL, 0, &q), MINGER_PARSE_OK);
	CHECK_INT(minger_digest_matches(&q, SECRET, 16), 0);
	CHECK_INT(parse_str("arvel@example.com d=2P4Wlz1pI7ZmGe89PLJ8fw==", 0, &q),
	          MINGER_PARSE_OK);
	CHECK_INT(minger_digest_matches(&q, SECRET, 16), 0);
	CHECK_INT(minger_digest_matches(&q, "wrong-secret-0000", 17), 1);
	CHECK_INT(parse_str("arvel@example.com", 0, &q), MINGER_PARSE_OK);
	CHECK_INT(minger_digest_matches(&q, SECRET, 16), 0); /* no digest never matches */
}

/* The doc's example exchanges: query, expected parse, and the reply as printed. */
TEST(example_exchanges)
{
	static const struct {
		const char *query;
		enum minger_parse_result result;
		enum minger_digest_form form;
		int digest_ok; /* digest matches the server secret */
		int status; /* status in the doc's reply */
		const char *reply;
	} ex[] = {
	        {"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw==", MINGER_PARSE_OK, MINGER_DIGEST_D,
	         1, 5, "arvel@example.com 5"},
	        {"nobody@example.com d=OtuP1skxbYmws8JVVf3DuA==", MINGER_PARSE_OK, MINGER_DIGEST_D,
	         1, 3, "nobody@example.com 3"},
	        {"arvel@example.com d=2P4Wlz1pI7ZmGe89PLJ8fw==", MINGER_PARSE_OK, MINGER_DIGEST_D,
	         0, 2, "arvel@example.com 2"},
	        {"arvel@example.com", MINGER_PARSE_OK, MINGER_DIGEST_NONE, 0, 2,
	         "arvel@example.com 2"},
	        {"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw== foo=bar", MINGER_PARSE_OK,
	         MINGER_DIGEST_D, 1, 5, "arvel@example.com 5"},
	        {"arvel", MINGER_PARSE_MALFORMED, MINGER_DIGEST_NONE, 0, 0, "arvel 0"},
	};
	for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
		for (int compat = 0; compat <= 1; compat++) {
			struct minger_query q;
			struct minger_reply r;
			char reply[100];
			if (!CHECK_INT(parse_str(ex[i].query, compat, &q), ex[i].result))
				continue;
			CHECK_INT(q.digest_form, ex[i].form);
			CHECK_INT(minger_digest_matches(&q, SECRET, 16), ex[i].digest_ok);
			CHECK_INT(q.has_ext, 0);
			CHECK_INT(minger_reply_format(reply, sizeof reply, q.mailbox, q.mailbox_len,
			                              ex[i].status, NULL),
			          strlen(ex[i].reply));
			CHECK_STR(reply, ex[i].reply);
			CHECK_INT(minger_reply_parse((const uint8_t *)ex[i].reply,
			                             strlen(ex[i].reply), &r),
			          0);
			CHECK_MEM(r.mailbox, r.mailbox_len, q.mailbox, q.mailbox_len);
			CHECK_INT(r.status, ex[i].status);
			CHECK_INT(r.has_mac, 0);
		}
	}
}

#define U MINGER_PARSE_UNUSABLE
#define M MINGER_PARSE_MALFORMED
#define K MINGER_PARSE_OK

struct query_case {
	const char *dgram;
	size_t len; /* 0: strlen(dgram) */
	enum minger_parse_result strict, compat;
	const char *mailbox; /* the mailbox (OK) or the echo (MALFORMED); NULL when UNUSABLE */
};

#define MB "arvel@example.com"
#define TS_NONCE " ts=1700000000 nonce=0123456789abcdef"
#define MAC64 "e97945ed84e21276b5829a712f9f735db3d59ebf867ab65082f6d80358262a06"

static const struct query_case query_cases[] = {
        /* Malformed forms from the doc's list. */
        {"", 0, U, U, NULL},
        {"arvel", 0, M, M, "arvel"},
        {"arvel.example.com d=" DIG_ARVEL, 0, M, M, "arvel.example.com"},
        {"@example.com d=" DIG_ARVEL, 0, M, M, "@example.com"},
        {"arvel@ d=" DIG_ARVEL, 0, M, M, "arvel@"},
        {"arvel@", 0, M, M, "arvel@"},
        {"a@b@example.com", 0, M, M, "a@b@example.com"},
        {"a@b@example.com d=" DIG_ARVEL, 0, M, M, "a@b@example.com"},
        {"<" MB ">", 0, M, M, "<" MB ">"},
        {"<" MB "> d=" DIG_ARVEL, 0, M, M, "<" MB ">"},
        {" " MB, 0, U, U, NULL},
        {" " MB " d=" DIG_ARVEL, 0, U, U, NULL},
        {MB " ", 0, M, M, MB},
        {MB "  d=" DIG_ARVEL, 0, M, M, MB},
        {MB " d=" DIG_ARVEL " ", 0, M, M, MB},
        {MB " d=" DIG_ARVEL "  foo=bar", 0, M, M, MB},
        {"   ", 0, U, U, NULL},
        {MB "\td=" DIG_ARVEL, 0, U, U, NULL},
        {MB " d=" DIG_ARVEL "\t", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " foo=b\tr", 0, M, M, MB},
        {MB "\r\n", 0, U, U, NULL},
        {"\0", 1, U, U, NULL},
        {MB "\0 d=" DIG_ARVEL, sizeof MB + 27, U, U, NULL},
        {MB " d=" DIG_ARVEL "\0", sizeof MB + 27, M, M, MB},
        {"arv\x01"
         "el@example.com",
         0, U, U, NULL},
        {"arvel@exa\x7fmple.com", 0, U, U, NULL},
        {"j\xc3\xb6rg@example.com", 0, U, U, NULL},
        {MB " foo=b\xc3\xa4r", 0, M, M, MB},
        {MB " d=", 0, M, M, MB},
        {MB " d=A7E/WJtlUbO5NWDjZba+bw", 0, M, M, MB},
        {MB " d=A7E/WJtlUbO5NWDjZba+bw=", 0, M, M, MB},
        {MB " d=A7E/WJtlUbO5NWDjZba+bw==A", 0, M, M, MB},
        {MB " d=A7E/WJtlUbO5NWDjZba+bx==", 0, M, M, MB}, /* non-canonical */
        {MB " d=QUJDREVGR0hJSktMTU5PUFFS", 0, M, M, MB}, /* 24 chars, 18 bytes */
        {MB " d=A7E/WJtlUbO5NWDj!ba+bw==", 0, M, M, MB},
        {MB " d=A7E_WJtlUbO5NWDjZba-bw==", 0, M, M, MB}, /* base64url */
        {MB " foo=bar d=" DIG_ARVEL, 0, M, M, MB},
        {MB " d=" DIG_ARVEL " d=" DIG_ARVEL, 0, M, M, MB},
        {MB " d=" DIG_ARVEL " foo=", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " foo", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " =bar", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " =", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " foo-x=bar", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " foo=b.r", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " foo=a=b", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " foo=1 foo=2", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " d=x", 0, M, M, MB},
        {"\"arvel smith\"@example.com d=", 0, M, M, "\"arvel smith\"@example.com"},
        {"\"arvel smith@example.com", 0, M, M, "\"arvel"},
        {"arvel smith@example.com", 0, M, M, "arvel"},
        {"d=" DIG_ARVEL, 0, M, M, "d=" DIG_ARVEL},
        /* Valid forms. */
        {MB, 0, K, K, MB},
        {MB " d=" DIG_ARVEL, 0, K, K, MB},
        {MB " foo=bar", 0, K, K, MB},
        {MB " d=" DIG_ARVEL " foo=1 Foo=2 FOO=3", 0, K, K, MB}, /* names are case-sensitive */
        {MB " d=" DIG_ARVEL " a_1=Z_9 x=_", 0, K, K, MB},
        {MB " d=" DIG_ARVEL " TS=1 NONCE=x", 0, K, K, MB}, /* not the extension tags */
        {"\"arvel smith\"@example.com d=K9q4S8Lwg595GGvSSqnlKQ==", 0, K, K,
         "\"arvel smith\"@example.com"},
        {"\"a b c\"@[192.0.2.1] x=y", 0, K, K, "\"a b c\"@[192.0.2.1]"},
        /* Older forms: accepted in compat mode only. */
        {MB " " DIG_ARVEL, 0, M, K, MB},
        {MB " " DIG_ARVEL " foo=bar", 0, M, K, MB},
        {MB " D=" DIG_ARVEL, 0, M, K, MB},
        {MB " D=" DIG_ARVEL " foo=bar", 0, M, K, MB},
        {MB " D=", 0, M, M, MB},
        {MB " foo=bar " DIG_ARVEL, 0, M, M, MB},
        {MB " foo=bar D=" DIG_ARVEL, 0, M, M, MB},
        {MB " d=" DIG_ARVEL " D=" DIG_ARVEL, 0, M, M, MB},
        {MB " D=abc", 0, K, M, MB}, /* strict: an unknown tag "D"; compat: a bad digest */
        {MB " " DIG_ARVEL " " DIG_ARVEL, 0, M, M, MB},
        /* The extension: all three tags, well-formed, or none. */
        {MB " d=" DIG_ARVEL TS_NONCE " mac=" MAC64, 0, K, K, MB},
        {MB TS_NONCE " mac=" MAC64, 0, K, K, MB},
        {MB " d=" DIG_ARVEL " mac=" MAC64 " nonce=0123456789abcdef ts=1700000000", 0, K, K, MB},
        {MB " d=" DIG_ARVEL " ts=1700000000", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " nonce=0123456789abcdef", 0, M, M, MB},
        {MB " d=" DIG_ARVEL " mac=" MAC64, 0, M, M, MB},
        {MB " d=" DIG_ARVEL TS_NONCE, 0, M, M, MB},
        {MB " d=" DIG_ARVEL " ts=1700000000 mac=" MAC64, 0, M, M, MB},
        {MB " ts=01 nonce=0123456789abcdef mac=" MAC64, 0, M, M, MB},
        {MB " ts=00 nonce=0123456789abcdef mac=" MAC64, 0, M, M, MB},
        {MB " ts=1a nonce=0123456789abcdef mac=" MAC64, 0, M, M, MB},
        {MB " ts=_1 nonce=0123456789abcdef mac=" MAC64, 0, M, M, MB},
        {MB " ts=10000000000000000000 nonce=0123456789abcdef mac=" MAC64, 0, M, M, MB},
        {MB " ts=0 nonce=0123456789abcdef mac=" MAC64, 0, K, K, MB},
        {MB " ts=9999999999999999999 nonce=0123456789abcdef mac=" MAC64, 0, K, K, MB},
        {MB " ts=1 nonce=0123456789abcde mac=" MAC64, 0, M, M, MB},
        {MB " ts=1 nonce=0123456789abcdef0 mac=" MAC64, 0, M, M, MB},
        {MB " ts=1 nonce=0123456789ABCDEF mac=" MAC64, 0, M, M, MB},
        {MB " ts=1 nonce=0123456789abcdeg mac=" MAC64, 0, M, M, MB},
        {MB " ts=1 nonce=0123456789abcdef mac=" MAC64 "0", 0, M, M, MB},
        {MB " ts=1 nonce=0123456789abcdef mac="
            "e97945ed84e21276b5829a712f9f735db3d59ebf867ab65082f6d80358262a0",
         0, M, M, MB},
        {MB " ts=1 nonce=0123456789abcdef mac="
            "E97945ED84E21276B5829A712F9F735DB3D59EBF867AB65082F6D80358262A06",
         0, M, M, MB},
        {MB " ts=1 nonce=0123456789abcdef mac="
            "g97945ed84e21276b5829a712f9f735db3d59ebf867ab65082f6d80358262a06",
         0, M, M, MB},
        {MB " d=" DIG_ARVEL TS_NONCE " mac=" MAC64 " ts=1", 0, M, M, MB},
};

TEST(query_table)
{
	for (size_t i = 0; i < sizeof query_cases / sizeof query_cases[0]; i++) {
		const struct query_case *c = &query_cases[i];
		size_t len = c->len ? c->len : strlen(c->dgram);
		for (int compat = 0; compat <= 1; compat++) {
			struct minger_query q;
			enum minger_parse_result want = compat ? c->compat : c->strict;
			enum minger_parse_result got =
			        minger_query_parse((const uint8_t *)c->dgram, len, compat, &q);
			if (!CHECK_INT(got, want)) {
				printf("   case %zu (%s mode): \"%s\"\n", i,
				       compat ? "compat" : "strict", c->dgram);
				continue;
			}
			if (got == MINGER_PARSE_UNUSABLE) {
				CHECK(q.mailbox == NULL && q.mailbox_len == 0);
				continue;
			}
			CHECK_MEM(q.mailbox, q.mailbox_len, c->mailbox, strlen(c->mailbox));
			CHECK(q.mailbox == c->dgram); /* a span into the datagram */
			if (got == MINGER_PARSE_MALFORMED)
				CHECK(q.digest_form == MINGER_DIGEST_NONE && !q.has_ext);
		}
	}
}

TEST(compat_digest_forms)
{
	static const struct {
		const char *dgram;
		enum minger_digest_form form;
	} cases[] = {
	        {MB " d=" DIG_ARVEL, MINGER_DIGEST_D},
	        {MB " D=" DIG_ARVEL, MINGER_DIGEST_UPPER_D},
	        {MB " " DIG_ARVEL, MINGER_DIGEST_BARE},
	        {MB " " DIG_ARVEL " x=y", MINGER_DIGEST_BARE},
	        {MB, MINGER_DIGEST_NONE},
	        {MB " x=y", MINGER_DIGEST_NONE},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct minger_query q;
		if (!CHECK_INT(parse_str(cases[i].dgram, 1, &q), MINGER_PARSE_OK))
			continue;
		CHECK_INT(q.digest_form, cases[i].form);
		CHECK_INT(minger_digest_matches(&q, SECRET, 16),
		          cases[i].form != MINGER_DIGEST_NONE);
	}
}

static void make_mailbox(char *buf, size_t local, size_t domain)
{
	size_t o = 0;
	for (size_t i = 0; i < local; i++)
		buf[o++] = 'l';
	buf[o++] = '@';
	for (size_t i = 0; i < domain; i++)
		buf[o++] = (i % 10 == 9 && i + 1 < domain) ? '.' : 'd';
	buf[o] = '\0';
}

TEST(part_length_limits)
{
	char buf[400];
	struct minger_query q;

	make_mailbox(buf, 64, 255);
	CHECK_INT(parse_str(buf, 0, &q), MINGER_PARSE_OK);
	CHECK_INT(q.mailbox_len, 320);
	make_mailbox(buf, 65, 10);
	CHECK_INT(parse_str(buf, 0, &q), MINGER_PARSE_MALFORMED);
	CHECK_MEM(q.mailbox, q.mailbox_len, buf, strlen(buf));
	make_mailbox(buf, 10, 256);
	CHECK_INT(parse_str(buf, 1, &q), MINGER_PARSE_MALFORMED);
	CHECK_INT(q.mailbox_len, 267);
}

TEST(datagram_size_limit)
{
	char buf[MINGER_DATAGRAM_MAX + 2];
	struct minger_query q;

	/* "arvel@example.com x=vvvv...": exactly 1024 octets is accepted. */
	memset(buf, 'v', sizeof buf);
	memcpy(buf, MB " x=", strlen(MB) + 3);
	CHECK_INT(minger_query_parse((const uint8_t *)buf, MINGER_DATAGRAM_MAX, 0, &q),
	          MINGER_PARSE_OK);
	CHECK_INT(minger_query_parse((const uint8_t *)buf, MINGER_DATAGRAM_MAX + 1, 0, &q),
	          MINGER_PARSE_UNUSABLE);
	CHECK_INT(minger_query_parse((const uint8_t *)buf, MINGER_DATAGRAM_MAX + 1, 1, &q),
	          MINGER_PARSE_UNUSABLE);
	/* Many tags up to the limit: all distinct names are fine, one repeat is not. */
	size_t o = strlen(MB);
	memcpy(buf, MB, o);
	for (int i = 0; o + 8 <= MINGER_DATAGRAM_MAX; i++)
		o += (size_t)snprintf(buf + o, sizeof buf - o, " t%03d=v", i);
	CHECK_INT(minger_query_parse((const uint8_t *)buf, o, 0, &q), MINGER_PARSE_OK);
	memcpy(buf + o - 7, " t000=v", 7);
	CHECK_INT(minger_query_parse((const uint8_t *)buf, o, 0, &q), MINGER_PARSE_MALFORMED);
}

TEST(extension_known_answers)
{
	uint8_t mac[MINGER_MAC_LEN], want[MINGER_MAC_LEN];
	struct minger_query q;
	const char *dg = MB " d=" DIG_ARVEL TS_NONCE " mac=" MAC64;

	/* Values from Python's hmac module. */
	CHECK_INT(base64_decode("6XlF7YTiEna1gppxL59zXbPVnr+GerZQgvbYA1gmKgY=", 44, want,
	                        sizeof want),
	          32);
	minger_query_mac(SECRET, 16, MB, strlen(MB), 1700000000, NONCE, mac);
	CHECK_MEM(mac, sizeof mac, want, sizeof want);

	if (CHECK_INT(parse_str(dg, 0, &q), MINGER_PARSE_OK)) {
		CHECK_INT(q.has_ext, 1);
		CHECK_INT(q.ts, 1700000000);
		CHECK_STR(q.nonce, NONCE);
		CHECK_MEM(q.mac, sizeof q.mac, want, sizeof want);
		CHECK_INT(minger_query_mac_matches(&q, SECRET, 16), 1);
		CHECK_INT(minger_query_mac_matches(&q, "0123456789abcdeF", 16), 0);
		CHECK_INT(minger_digest_matches(&q, SECRET, 16), 1);
		q.ts++;
		CHECK_INT(minger_query_mac_matches(&q, SECRET, 16), 0);
	}
	CHECK_INT(parse_str(MB " d=" DIG_ARVEL, 0, &q), MINGER_PARSE_OK);
	CHECK_INT(minger_query_mac_matches(&q, SECRET, 16), 0); /* no extension */

	CHECK_INT(base64_decode("n0nSVm5kRamnVG2Mg5tW8oTlntXttORbDCE9wlWCAzs=", 44, want,
	                        sizeof want),
	          32);
	minger_reply_mac(SECRET, 16, MB, strlen(MB), 5, NONCE, mac);
	CHECK_MEM(mac, sizeof mac, want, sizeof want);
}

TEST(query_round_trips)
{
	static const char *const mailboxes[] = {
	        "arvel@example.com",     "Arvel@Example.COM", "\"arvel smith\"@example.com",
	        "\"a\\\"b\"@[IPv6:::1]", "u@[192.0.2.1]",     "x!#$%&'*+-/=?^_`{|}~y@a-b.c",
	};
	static const uint64_t stamps[] = {0, 1, 1700000000, UINT64_C(9999999999999999999)};
	static const char *const nonces[] = {"0123456789abcdef", "0000000000000000",
	                                     "ffffffffffffffff"};

	for (size_t m = 0; m < sizeof mailboxes / sizeof mailboxes[0]; m++) {
		const char *mb = mailboxes[m];
		for (size_t t = 0; t < sizeof stamps / sizeof stamps[0]; t++) {
			const char *nonce = nonces[t % 3];
			char out[MINGER_DATAGRAM_MAX];
			struct minger_query q;
			int n = minger_query_format(out, sizeof out, mb, strlen(mb),
			                            "correct-horse-battery-staple", 28, stamps[t],
			                            nonce);
			if (!CHECK(n > 0))
				continue;
			CHECK_INT(strlen(out), n);
			if (!CHECK_INT(minger_query_parse((const uint8_t *)out, (size_t)n, 0, &q),
			               MINGER_PARSE_OK))
				continue;
			CHECK_MEM(q.mailbox, q.mailbox_len, mb, strlen(mb));
			CHECK_INT(q.digest_form, MINGER_DIGEST_D);
			CHECK_INT(q.has_ext, 1);
			CHECK(q.ts == stamps[t]);
			CHECK_STR(q.nonce, nonce);
			CHECK_INT(minger_digest_matches(&q, "correct-horse-battery-staple", 28), 1);
			CHECK_INT(minger_query_mac_matches(&q, "correct-horse-battery-staple", 28),
			          1);
			CHECK_INT(minger_query_mac_matches(&q, SECRET, 16), 0);
		}
		/* Without a nonce: digest only; without a secret: the bare mailbox. */
		char out[MINGER_DATAGRAM_MAX];
		struct minger_query q;
		int n = minger_query_format(out, sizeof out, mb, strlen(mb), SECRET, 16, 5, NULL);
		CHECK_INT(n, strlen(mb) + 27);
		CHECK_INT(parse_str(out, 0, &q), MINGER_PARSE_OK);
		CHECK_INT(q.has_ext, 0);
		CHECK_INT(minger_digest_matches(&q, SECRET, 16), 1);
		n = minger_query_format(out, sizeof out, mb, strlen(mb), NULL, 0, 5, NONCE);
		CHECK_INT(n, strlen(mb));
		CHECK_STR(out, mb);
	}
}

TEST(query_format_refusals)
{
	char out[200];
	/* "arvel@example.com d=<24>" is 44 octets: 45 with the NUL fits, 44 does not. */
	CHECK_INT(minger_query_format(out, 45, MB, strlen(MB), SECRET, 16, 0, NULL), 44);
	CHECK_INT(minger_query_format(out, 44, MB, strlen(MB), SECRET, 16, 0, NULL), -1);
	CHECK_INT(minger_query_format(out, 0, MB, strlen(MB), NULL, 0, 0, NULL), -1);
	CHECK_INT(minger_query_format(out, sizeof out, MB, strlen(MB), SECRET, 16, 0,
	                              "0123456789ABCDEF"),
	          -1);
	CHECK_INT(minger_query_format(out, sizeof out, MB, strlen(MB), SECRET, 16, 0, "0123"), -1);
	CHECK_INT(minger_query_format(out, sizeof out, MB, strlen(MB), SECRET, 16,
	                              UINT64_C(10000000000000000000), NONCE),
	          -1);
	/* The whole extension query for MB is 44 + 14 + 23 + 69 = 150 octets. */
	CHECK_INT(minger_query_format(out, 151, MB, strlen(MB), SECRET, 16, 1700000000, NONCE),
	          150);
	CHECK_STR(out, MB " d=" DIG_ARVEL TS_NONCE " mac=" MAC64);
	CHECK_INT(minger_query_format(out, 150, MB, strlen(MB), SECRET, 16, 1700000000, NONCE), -1);
}

TEST(reply_round_trips)
{
	static const char *const mailboxes[] = {"arvel@example.com", "\"arvel smith\"@example.com",
	                                        "arvel", "<x>", "\"a b \"@c"};
	for (size_t m = 0; m < sizeof mailboxes / sizeof mailboxes[0]; m++) {
		const char *mb = mailboxes[m];
		size_t mlen = strlen(mb);
		for (int status = 0; status <= 5; status++) {
			for (int with_mac = 0; with_mac <= 1; with_mac++) {
				uint8_t mac[MINGER_MAC_LEN];
				char out[MINGER_DATAGRAM_MAX];
				struct minger_reply r;
				minger_reply_mac(SECRET, 16, mb, mlen, status, NONCE, mac);
				int n = minger_reply_format(out, sizeof out, mb, mlen, status,
				                            with_mac ? mac : NULL);
				CHECK_INT(n, mlen + 2 + (with_mac ? 69 : 0));
				if (!CHECK_INT(
				            minger_reply_parse((const uint8_t *)out, (size_t)n, &r),
				            0))
					continue;
				CHECK_MEM(r.mailbox, r.mailbox_len, mb, mlen);
				CHECK_INT(r.status, status);
				CHECK_INT(r.has_mac, with_mac);
				CHECK_INT(minger_reply_mac_matches(&r, SECRET, 16, NONCE),
				          with_mac);
				CHECK_INT(minger_reply_mac_matches(&r, SECRET, 16,
				                                   "0123456789abcdee"),
				          0);
				CHECK_INT(
				        minger_reply_mac_matches(&r, "0123456789abcdeF", 16, NONCE),
				        0);
				r.status = (status + 1) % 6;
				CHECK_INT(minger_reply_mac_matches(&r, SECRET, 16, NONCE), 0);
			}
		}
	}
}

TEST(reply_known_text)
{
	char out[200];
	uint8_t mac[MINGER_MAC_LEN];

	minger_reply_mac(SECRET, 16, MB, strlen(MB), 5, NONCE, mac);
	CHECK_INT(minger_reply_format(out, sizeof out, MB, strlen(MB), 5, mac), 88);
	CHECK_STR(out,
	          MB " 5 mac=9f49d2566e6445a9a7546d8c839b56f284e59ed5edb4e45b0c213dc25582033b");
	CHECK_INT(minger_reply_format(out, 20, MB, strlen(MB), 5, NULL), 19);
	CHECK_INT(minger_reply_format(out, 19, MB, strlen(MB), 5, NULL), -1);
	CHECK_INT(minger_reply_format(out, 88, MB, strlen(MB), 5, mac), -1);
	CHECK_INT(minger_reply_format(out, sizeof out, MB, strlen(MB), 6, NULL), -1);
	CHECK_INT(minger_reply_format(out, sizeof out, MB, strlen(MB), -1, NULL), -1);
}

TEST(reply_parse_refusals)
{
	static const char *const bad[] = {
	        "",
	        "5",
	        " 5",
	        "arvel@example.com",
	        "arvel@example.com ",
	        "arvel@example.com 6",
	        "arvel@example.com 9",
	        "arvel@example.com 55",
	        "arvel@example.com 5 ",
	        "arvel@example.com 5x",
	        "arvel@example.com 5\n",
	        "arvel@example.com 5\r\n",
	        "arvel@example.com\t5",
	        "arvel@example.com  5",
	        " arvel@example.com 5",
	        "arvel@exam\x01ple.com 5",
	        "arv\xc3\xa9l@example.com 5",
	        "arvel@example.com 5 mac=",
	        "arvel@example.com 5 mac="
	        "9f49d2566e6445a9a7546d8c839b56f284e59ed5edb4e45b0c213dc25582033",
	        "arvel@example.com 5 mac="
	        "9F49D2566E6445A9A7546D8C839B56F284E59ED5EDB4E45B0C213DC25582033B",
	        "arvel@example.com 5 mac="
	        "9f49d2566e6445a9a7546d8c839b56f284e59ed5edb4e45b0c213dc25582033b ",
	        "arvel@example.com 5 mac="
	        "9f49d2566e6445a9a7546d8c839b56f284e59ed5edb4e45b0c213dc25582033b0",
	        "arvel@example.com 5 MAC="
	        "9f49d2566e6445a9a7546d8c839b56f284e59ed5edb4e45b0c213dc25582033b",
	        "arvel@example.com 5  mac="
	        "9f49d2566e6445a9a7546d8c839b56f284e59ed5edb4e45b0c213dc25582033b",
	        " mac=9f49d2566e6445a9a7546d8c839b56f284e59ed5edb4e45b0c213dc25582033b",
	        "5 mac=9f49d2566e6445a9a7546d8c839b56f284e59ed5edb4e45b0c213dc25582033b",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct minger_reply r;
		if (!CHECK_INT(minger_reply_parse((const uint8_t *)bad[i], strlen(bad[i]), &r), -1))
			printf("   case %zu: \"%s\"\n", i, bad[i]);
		CHECK(r.mailbox == NULL && r.has_mac == 0);
	}
}

TEST(secret_validity)
{
	static const struct {
		const char *s;
		int ok;
	} cases[] = {
	        {"0123456789abcde", 0}, /* 15 */
	        {"0123456789abcdef", 1}, /* 16 */
	        {"01234567890123456789012345678901234567890123456789", 1}, /* 50 */
	        {"012345678901234567890123456789012345678901234567890", 0}, /* 51 */
	        {"0123456789 abcdef", 0},
	        {"0123456789\tabcdef", 0},
	        {"0123456789abcdef\n", 0},
	        {"0123456789abcde\x7f", 0},
	        {"0123456789abcd\xc3\xa9", 0},
	        {"!~!~!~!~!~!~!~!~", 1},
	        {"", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(minger_secret_valid(cases[i].s, strlen(cases[i].s)), cases[i].ok);
	CHECK_INT(minger_secret_valid("0123456789abcdef\0", 17), 0);
	CHECK_INT(minger_secret_valid(NULL, 16), 0);
}

TEST(status_words)
{
	static const char *const want[] = {"malformed", "denied",   "bad credentials",
	                                   "unknown",   "inactive", "active"};
	CHECK_INT(MINGER_STATUS_MALFORMED, 0);
	CHECK_INT(MINGER_STATUS_ACTIVE, 5);
	for (int s = 0; s <= 5; s++)
		CHECK_STR(minger_status_word(s), want[s]);
	CHECK_STR(minger_status_word(6), "invalid");
	CHECK_STR(minger_status_word(-1), "invalid");
}

TEST_MAIN(T(digest_test_vectors), T(digest_vectors_as_queries),
          T(digest_depends_on_case_and_secret), T(example_exchanges), T(query_table),
          T(compat_digest_forms), T(part_length_limits), T(datagram_size_limit),
          T(extension_known_answers), T(query_round_trips), T(query_format_refusals),
          T(reply_round_trips), T(reply_known_text), T(reply_parse_refusals), T(secret_validity),
          T(status_words))
