/*
 * Unit tests for util/strutil: the one string hash (FNV-1a 64, published vectors),
 * the blank-separated words and the printable-line check of the config specs.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "util/strutil.h"

struct hash_vector {
	const char *s;
	uint64_t want;
};

/* FNV-1a 64-bit test values (Fowler, Noll, Vo; the reference implementation's table). */
static const struct hash_vector fnv1a[] = {
        {"", 0xcbf29ce484222325ULL},
        {"a", 0xaf63dc4c8601ec8cULL},
        {"foobar", 0x85944171f73967e8ULL},
};

TEST(fnv1a_vectors)
{
	for (size_t i = 0; i < sizeof fnv1a / sizeof fnv1a[0]; i++)
		if (!CHECK(str_hash(fnv1a[i].s, strlen(fnv1a[i].s), 0) == fnv1a[i].want))
			printf("  vector \"%s\"\n", fnv1a[i].s);
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

TEST_MAIN(T(fnv1a_vectors), T(fold_ascii_case_only), T(words_split_on_blanks), T(printable_lines))
