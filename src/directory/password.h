/*
 * password: password hashing with libcrypt (libxcrypt): yescrypt ("$y$"), the
 * same scheme as Debian's /etc/shadow. No plaintext is ever stored.
 */
#ifndef SHAREMAIL_DIRECTORY_PASSWORD_H
#define SHAREMAIL_DIRECTORY_PASSWORD_H

#include <stddef.h>

#define PASSWORD_HASH_MAX 256
/* Longest password in octets (libxcrypt refuses CRYPT_MAX_PASSPHRASE_SIZE, 512, or more). */
#define PASSWORD_MAX 511

/*
 * Hashes `password` (at most PASSWORD_MAX octets) with a fresh random salt into out.
 * Returns 0 or -1.
 */
int password_hash(const char *password, char *out, size_t outsz);

/* 1 if `password` matches `hash` (constant-time compare of the result), else 0. */
int password_verify(const char *password, const char *hash);

#endif
