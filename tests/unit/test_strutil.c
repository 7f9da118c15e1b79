/*
 * Unit tests for util/strutil: the word-at-a-time case folding and string hash,
 * the blank-separated words and the printable-line check of the config specs.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "util/strutil.h"

/* Every octet value in every lane of a word folds as ascii_lower() folds it alone. */
TEST(lower_word_matches_octets)
{
	int bad = 0;
	for (unsigned v = 0; v < 256; v++)
		for (unsigned lane = 0; lane < 8; lane++) {
			/* the other lanes hold neighbours of v, so a carry between lanes would show */
			unsigned char in[8], want[8], got[8];
			for (unsigned k = 0; k < 8; k++) {
				in[k] = (unsigned char)(k == lane ? v : (v + 0x3f * k) & 0xff);
				want[k] = (unsigned char)ascii_lower(in[k]);
			}
			uint64_t w = ascii_lower_word(str_load_word(in));
			memcpy(got, &w, 8);
			if (memcmp(got, want, 8) != 0 && bad++ < 3)
				printf("  octet 0x%02x in lane %u\n", v, lane);
		}
	CHECK(bad == 0);
}

/* The copy folds like ascii_lower() at every length around the word size. */
TEST(lower_copy_every_length)
{
	const char *src = "AbC@Z[`{az\xc3\x89XYZ0123456789-_.MiXeD";
	for (size_t len = 0; len <= strlen(src); len++) {
		char got[64], want[64];
		memset(got, '#', sizeof got);
		ascii_lower_copy(got, src, len);
		for (size_t i = 0; i < len; i++)
			want[i] = (char)ascii_lower((unsigned char)src[i]);
		if (!CHECK(memcmp(got, want, len) == 0 && got[len] == '#'))
			printf("  length %zu\n", len);
	}
}

/* Every octet and the length change the hash; equal input, equal hash. */
TEST(hash_depends_on_every_octet)
{
	const char *base = "someone.long@example.com"; /* 24 octets: three words */
	size_t n = strlen(base);
	uint64_t h = str_hash(base, n, 0);
	CHECK(h == str_hash(base, n, 0));
	for (size_t i = 0; i < n; i++) {
		char k[32];
		memcpy(k, base, n);
		k[i] ^= 1;
		if (!CHECK(str_hash(k, n, 0) != h))
			printf("  octet %zu\n", i);
	}
	CHECK(str_hash("x", 1, 0) != str_hash("x\0", 2, 0)); /* the zero-padded tail */
	CHECK(str_hash("", 0, 0) != str_hash("\0", 1, 0));
	CHECK(str_hash(base, n - 1, 0) != h);
}

/* Keys that differ only in a digit spread over the low bits (a bucket's index). */
TEST(hash_low_bits_spread)
{
	enum { KEYS = 8192, BUCKETS = 1024 };
	static unsigned load[BUCKETS];
	memset(load, 0, sizeof load);
	for (int i = 0; i < KEYS; i++) {
		char k[40];
		int n = snprintf(k, sizeof k, "user%d@example.com", i);
		load[str_hash(k, (size_t)n, 0) & (BUCKETS - 1)]++;
	}
	unsigned max = 0, empty = 0;
	for (int b = 0; b < BUCKETS; b++) {
		max = load[b] > max ? load[b] : max;
		empty += load[b] == 0;
	}
	/* 8 keys a bucket on average: a fair hash leaves ~0.03% empty and none near 30 */
	CHECK(max < 30);
	CHECK(empty < 10);
	if (max >= 30 || empty >= 10)
		printf("  fullest bucket %u, %u empty\n", max, empty);
}

/* fold = 1 hashes an address as its lower-case form; fold = 0 keeps case apart. */
TEST(fold_ascii_case_only)
{
	const char *a = "Alice@Example.COM", *b = "alice@example.com";
	CHECK(str_hash(a, strlen(a), 1) == str_hash(b, strlen(b), 0));
	CHECK(str_hash(a, strlen(a), 0) != str_hash(b, strlen(b), 0));
	/* Octets outside ASCII are not folded (no locale). */
	CHECK(str_hash("\xc3\x89", 2, 1) == str_hash("\xc3\x89", 2, 0));
	CHECK(str_hash("x", 1, 1) != str_hash("X\x01", 2, 1));
}

/* Words split on spaces and tabs only, runs of blanks and leading/trailing ones skipped. */
static void words_split_on_blanks(void)
{
	const char *line = " \tone two\t\tthree=x\v  ";
	size_t pos = 0, len;
	const char *w;
	CHECK((len = str_next_word(line, &pos, &w)) == 3 && memcmp(w, "one", 3) == 0);
	CHECK((len = str_next_word(line, &pos, &w)) == 3 && memcmp(w, "two", 3) == 0);
	/* a vertical tab is not a blank: it stays in the word (and fails the printable check) */
	CHECK((len = str_next_word(line, &pos, &w)) == 8 && memcmp(w, "three=x\v", 8) == 0);
	CHECK(str_next_word(line, &pos, &w) == 0);
	CHECK(str_next_word(line, &pos, &w) == 0);
	pos = 0;
	CHECK(str_next_word("", &pos, &w) == 0 && pos == 0);
}

static void printable_lines(void)
{
	char err[80] = "";
	CHECK(str_line_printable("pop3://u@h password_file=/x\ttls=none ~", err, sizeof err) == 0);
	CHECK(err[0] == '\0');
	CHECK(str_line_printable("host\r", err, sizeof err) == -1);
	CHECK(strstr(err, "control or non-ASCII") != NULL);
	CHECK(str_line_printable("h\xc3\xa9", NULL, 0) == -1);
	CHECK(str_line_printable("a\x7f", NULL, 0) == -1);
	CHECK(str_line_printable("", NULL, 0) == 0);
}

TEST_MAIN(T(lower_word_matches_octets), T(lower_copy_every_length), T(hash_depends_on_every_octet),
          T(hash_low_bits_spread), T(fold_ascii_case_only), T(words_split_on_blanks),
          T(printable_lines))
