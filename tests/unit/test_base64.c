/* Unit tests for proto/base64: RFC 4648 section 10 vectors and strict decoding. */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "proto/base64.h"

struct b64_vector {
	const char *plain;
	const char *encoded;
};

/* RFC 4648 section 10. */
static const struct b64_vector rfc4648[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
};

TEST(encode_rfc4648_vectors)
{
	for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
		char out[16];
		size_t n = strlen(rfc4648[i].plain);
		int r = base64_encode((const uint8_t *)rfc4648[i].plain, n, out, sizeof out);
		CHECK_INT(r, (long long)strlen(rfc4648[i].encoded));
		CHECK_STR(out, rfc4648[i].encoded);
		CHECK_INT(BASE64_ENCODED_LEN(n), strlen(rfc4648[i].encoded));
	}
}

TEST(decode_rfc4648_vectors)
{
	for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
		uint8_t out[16];
		int r = base64_decode(rfc4648[i].encoded, strlen(rfc4648[i].encoded), out,
		                      sizeof out);
		CHECK_INT(r, (long long)strlen(rfc4648[i].plain));
		if (r >= 0)
			CHECK_MEM(out, (size_t)r, rfc4648[i].plain, strlen(rfc4648[i].plain));
	}
}

TEST(decode_minger_digest)
{
	/* The digest of the doc's first test vector, MD5 bytes from Python hashlib. */
	static const uint8_t want[16] = {0x03, 0xb1, 0x3f, 0x58, 0x9b, 0x65, 0x51, 0xb3,
	                                 0xb9, 0x35, 0x60, 0xe3, 0x65, 0xb6, 0xbe, 0x6f};
	uint8_t out[18];
	char back[25];

	CHECK_INT(base64_decode("A7E/WJtlUbO5NWDjZba+bw==", 24, out, sizeof out), 16);
	CHECK_MEM(out, 16, want, 16);
	CHECK_INT(base64_encode(want, 16, back, sizeof back), 24);
	CHECK_STR(back, "A7E/WJtlUbO5NWDjZba+bw==");
}

TEST(decode_rejects_malformed)
{
	static const char *const bad[] = {
	        "Zh==", /* non-canonical: unused bits of the last quantum set */
	        "Zm9=", /* non-canonical with one pad */
	        "Zm9vYh==", /* same after a full quantum */
	        "Zg", /* missing padding */
	        "Zg=", /* wrong length */
	        "Zg===", /* wrong length */
	        "Zm9vY===", /* three pads */
	        "====", /* only padding */
	        "A===", /* one data char */
	        "Z=g=", /* pad in the middle of a quantum */
	        "Zg==Zg==", /* pad before the end */
	        "Zm9v!A==", /* character outside the alphabet */
	        "Zm9v Yg=", /* space */
	        "Zm9v\nYg", /* newline */
	        "Zm9-Yg==", /* base64url alphabet */
	        "Zm9_Yg==", /* base64url alphabet */
	        "Zm9vY\xc3\xa9=", /* 8-bit */
	        "A",
	        "AB",
	        "ABC",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint8_t out[16];
		int r = base64_decode(bad[i], strlen(bad[i]), out, sizeof out);
		if (!CHECK_INT(r, -1))
			CHECK_STR(bad[i], "(should have been refused)");
	}
}

TEST(decode_embedded_nul_refused)
{
	uint8_t out[8];
	CHECK_INT(base64_decode("Zm\0v", 4, out, sizeof out), -1);
}

TEST(decode_output_too_small)
{
	uint8_t out[6];
	CHECK_INT(base64_decode("Zm9vYmFy", 8, out, 5), -1);
	CHECK_INT(base64_decode("Zm9vYmFy", 8, out, 6), 6);
	CHECK_INT(base64_decode("Zm9vYg==", 8, out, 3), -1);
	CHECK_INT(base64_decode("Zm9vYg==", 8, out, 4), 4);
}

TEST(encode_output_too_small)
{
	char out[9];
	memset(out, 'x', sizeof out);
	/* "foobar" needs 8 characters plus the NUL. */
	CHECK_INT(base64_encode((const uint8_t *)"foobar", 6, out, 8), -1);
	CHECK_INT(base64_encode((const uint8_t *)"foobar", 6, out, 9), 8);
	CHECK_INT(base64_encode((const uint8_t *)"", 0, out, 0), -1);
	CHECK_INT(base64_encode((const uint8_t *)"", 0, out, 1), 0);
	CHECK_STR(out, "");
}

TEST(round_trip_all_lengths_and_bytes)
{
	uint8_t in[64], dec[64];
	char enc[BASE64_ENCODED_LEN(64) + 1];

	for (size_t len = 0; len <= sizeof in; len++) {
		for (size_t i = 0; i < len; i++)
			in[i] = (uint8_t)(i * 37 + len * 11 + 255 * (i & 1));
		int e = base64_encode(in, len, enc, sizeof enc);
		CHECK_INT(e, BASE64_ENCODED_LEN(len));
		int d = base64_decode(enc, (size_t)e, dec, sizeof dec);
		CHECK_INT(d, (long long)len);
		if (d >= 0)
			CHECK_MEM(dec, (size_t)d, in, len);
	}
}

TEST(alphabet_boundaries)
{
	static const uint8_t all_ones[3] = {0xff, 0xff, 0xff};
	static const uint8_t marks[3] = {0xfb, 0xef, 0xbe}; /* "++++" */
	uint8_t out[3];
	char enc[5];

	CHECK_INT(base64_encode(all_ones, 3, enc, sizeof enc), 4);
	CHECK_STR(enc, "////");
	CHECK_INT(base64_decode("++++", 4, out, sizeof out), 3);
	CHECK_MEM(out, 3, marks, 3);
	CHECK_INT(base64_decode("AAAA", 4, out, sizeof out), 3);
	CHECK_MEM(out, 3, "\0\0\0", 3);
	CHECK_INT(base64_decode("zzzz", 4, out, sizeof out), 3);
	CHECK_INT(base64_decode("9999", 4, out, sizeof out), 3);
}

TEST_MAIN(T(encode_rfc4648_vectors), T(decode_rfc4648_vectors), T(decode_minger_digest),
          T(decode_rejects_malformed), T(decode_embedded_nul_refused), T(decode_output_too_small),
          T(encode_output_too_small), T(round_trip_all_lengths_and_bytes), T(alphabet_boundaries))
