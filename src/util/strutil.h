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

/* 1 for the blanks that separate the words of a config value: space and tab. */
static inline int ascii_is_blank(int c)
{
	return c == ' ' || c == '\t';
}

/*
 * The next blank-separated word of the NUL-terminated line from *pos on: sets *w
 * to its start, moves *pos past it and returns its length (0: no word left).
 */
size_t str_next_word(const char *line, size_t *pos, const char **w);

/*
 * 0 when line holds only printable ASCII and blanks; else -1 with the reason in err
 * (no control octet reaches an error message or a log line quoting the line).
 */
int str_line_printable(const char *line, char *err, size_t errlen);

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
