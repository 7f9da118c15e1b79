/* Unit tests for directory/password: yescrypt hashing and constant-time verification. */
#include <crypt.h>
#include <string.h>

#include "directory/password.h"
#include "harness.h"

TEST(hash_is_yescrypt_and_verifies)
{
	char h[PASSWORD_HASH_MAX];
	CHECK_INT(password_hash("correct horse", h, sizeof h), 0);
	CHECK(strncmp(h, "$y$", 3) == 0);
	CHECK(strstr(h, "correct") == NULL);
	CHECK_INT(password_verify("correct horse", h), 1);
	CHECK_INT(password_verify("correct horsE", h), 0);
	CHECK_INT(password_verify("correct hors", h), 0);
	CHECK_INT(password_verify("", h), 0);
}

TEST(salt_is_fresh_each_time)
{
	char a[PASSWORD_HASH_MAX], b[PASSWORD_HASH_MAX];
	CHECK_INT(password_hash("same", a, sizeof a), 0);
	CHECK_INT(password_hash("same", b, sizeof b), 0);
	CHECK(strcmp(a, b) != 0);
	CHECK_INT(password_verify("same", a), 1);
	CHECK_INT(password_verify("same", b), 1);
}

TEST(bad_hashes_never_verify)
{
	static const char *const bad[] = {"",  "*",   "*0",      "!",        "!$y$j9T$abc$def",
	                                  "x", "$y$", "$y$j9T$", "plaintext"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_INT(password_verify("", bad[i]), 0);
		CHECK_INT(password_verify("plaintext", bad[i]), 0);
	}
	CHECK_INT(password_verify("x", NULL), 0);
	CHECK_INT(password_verify(NULL, "$y$j9T$abc$def"), 0);
}

TEST(hash_needs_room)
{
	char small[16];
	CHECK_INT(password_hash("pw", small, sizeof small), -1);
	CHECK_INT(password_hash("pw", NULL, 10), -1);
	CHECK_INT(password_hash(NULL, small, sizeof small), -1);
}

TEST(long_and_odd_passwords)
{
	char h[PASSWORD_HASH_MAX];
	char longpw[CRYPT_MAX_PASSPHRASE_SIZE + 100];
	/* libxcrypt's limit: a passphrase of CRYPT_MAX_PASSPHRASE_SIZE octets or more fails. */
	memset(longpw, 'a', sizeof longpw - 1);
	longpw[sizeof longpw - 1] = '\0';
	CHECK_INT(password_hash(longpw, h, sizeof h), -1);
	longpw[CRYPT_MAX_PASSPHRASE_SIZE - 1] = '\0';
	CHECK_INT(password_hash(longpw, h, sizeof h), 0);
	CHECK_INT(password_verify(longpw, h), 1);
	longpw[CRYPT_MAX_PASSPHRASE_SIZE - 2] = 'b';
	CHECK_INT(password_verify(longpw, h), 0);
	CHECK_INT(password_hash("p\xc3\xa4ss w:rd$", h, sizeof h), 0);
	CHECK_INT(password_verify("p\xc3\xa4ss w:rd$", h), 1);
}

TEST_MAIN(T(hash_is_yescrypt_and_verifies), T(salt_is_fresh_each_time), T(bad_hashes_never_verify),
          T(hash_needs_room), T(long_and_odd_passwords))
