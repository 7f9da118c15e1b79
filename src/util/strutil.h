/*
 * strutil: ASCII string helpers that do not depend on the locale (protocol
 * keywords, domain names and header names are ASCII and compared without case,
 * whatever LC_CTYPE says). No allocation.
 */
#ifndef SHAREMAIL_UTIL_STRUTIL_H
#define SHAREMAIL_UTIL_STRUTIL_H

#include <stddef.h>
#include <stdint.h>

/* c folded to lower case if it is an ASCII capital letter, else c unchanged. */
static inline int ascii_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/*
 * 1 if s[0..len) equals the NUL-terminated word, ASCII case-insensitively (s may
 * hold any octets, NUL included), else 0.
 */
int ascii_equal_ci(const char *s, size_t len, const char *word);

/* 1 if needle (NUL-terminated, non-empty) occurs in hay[0..len) without regard to ASCII case. */
int ascii_contains_ci(const char *hay, size_t len, const char *needle);

/*
 * FNV-1a over p[0..len), ASCII case folded when fold is set: the hash of the
 * in-memory tables keyed by our own ids and by addresses (not for keys an
 * attacker chooses freely in bulk: those tables key their hash with a secret).
 */
uint64_t str_hash(const void *p, size_t len, int fold);

/*
 * Formats a reason into err (errlen octets at most, always NUL-terminated): the
 * "char *err, size_t errlen" convention of parsers. A NULL err or errlen 0 is a no-op.
 */
void str_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
