/* Unit tests for util/strutil: the one string hash (FNV-1a 64, published vectors). */
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

TEST_MAIN(T(fnv1a_vectors), T(fold_ascii_case_only))
