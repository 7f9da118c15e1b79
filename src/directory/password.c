/*
 * password: yescrypt hashes through libxcrypt. See password.h.
 *
 * crypt_rn() is used rather than crypt(): it is reentrant and returns NULL on
 * failure instead of a "*0" token that could be mistaken for a hash. Its work area
 * (struct crypt_data, about 32 KiB) is allocated per call and wiped afterwards
 * because it holds intermediate state derived from the password.
 */
#include "directory/password.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* Hashes `password` with `setting` (a salt or a full hash) into out. Returns 0 or -1. */
static int password_crypt(const char *password, const char *setting, char *out, size_t outsz)
{
	struct crypt_data *cd = calloc(1, sizeof *cd);
	if (!cd)
		return -1;
	int ret = -1;
	const char *h = crypt_rn(password, setting, cd, (int)sizeof *cd);
	/* A valid result never starts with '*' (libxcrypt's failure marker). */
	if (h && h[0] != '*' && h[0] != '\0') {
		size_t n = strlen(h);
		if (n < outsz) {
			memcpy(out, h, n + 1);
			ret = 0;
		}
	}
	OPENSSL_cleanse(cd, sizeof *cd);
	free(cd);
	return ret;
}

int password_hash(const char *password, char *out, size_t outsz)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (!password || !out || outsz == 0)
		return -1;
	/* count 0: libxcrypt's default cost; NULL rbytes: it reads the OS random source. */
	if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, (int)sizeof salt))
		return -1;
	if (password_crypt(password, salt, out, outsz) < 0) {
		out[0] = '\0';
		return -1;
	}
	return 0;
}

int password_verify(const char *password, const char *hash)
{
	char got[PASSWORD_HASH_MAX];
	if (!password || !hash || hash[0] == '\0' || hash[0] == '*' || hash[0] == '!')
		return 0;
	if (password_crypt(password, hash, got, sizeof got) < 0)
		return 0;
	size_t n = strlen(hash);
	/* Lengths are not secret (they follow from the scheme); the content is. */
	int ok = strlen(got) == n && CRYPTO_memcmp(got, hash, n) == 0;
	OPENSSL_cleanse(got, sizeof got);
	return ok;
}
