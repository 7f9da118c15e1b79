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
 * The eight octets of w with each ASCII capital letter folded to lower case and
 * every other octet (non-ASCII ones included) unchanged: ascii_lower() on a whole
 * word at once, without a branch.
 */
static inline uint64_t ascii_lower_word(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t low7 = w & ~high; /* adding below never carries into the next octet */
	uint64_t from_a = low7 + ones * (0x80 - 'A'); /* high bit set: octet >= 'A' */
	uint64_t past_z = low7 + ones * (0x80 - 'Z' - 1); /* high bit set: octet > 'Z' */
	uint64_t capital = (from_a ^ past_z) & ~w & high;
	return w | (capital >> 2); /* 0x80 >> 2 is 'a' - 'A' */
}

/* The eight octets at s as a word (any alignment). */
static inline uint64_t str_load_word(const unsigned char *s)
{
	uint64_t w;
	__builtin_memcpy(&w, s, 8);
	return w;
}

/* The last n (< 8) octets of a string as a word, s[k] in bits 8k..8k+7, the rest zero. */
static inline uint64_t str_load_tail(const unsigned char *s, size_t n)
{
	uint64_t w = 0;
	for (size_t k = 0; k < n; k++)
		w |= (uint64_t)s[k] << (8 * k);
	return w;
}

/*
 * The hash of p[0..len), ASCII case folded when fold is set (str_hash(a, n, 1) ==
 * str_hash(b, n, 0) when b is a in lower case): the hash of the in-memory tables
 * keyed by our own ids and by addresses (not for keys an attacker chooses freely
 * in bulk: those tables key their hash with a secret). Eight octets at a time, a
 * multiply-xorshift mix per word and a 64-bit finaliser, so the low bits (which
 * pick a bucket) depend on every octet; the length is mixed in, so "x" and "x\0"
 * differ. Byte-at-a-time FNV-1a cost a dependent multiply per octet, which showed
 * on the warm path of a RCPT and in the Minger server. The values never leave the
 * process (nothing stores them), so the function is free to change.
 */
static inline uint64_t str_hash(const void *p, size_t len, int fold)
{
	const unsigned char *s = p;
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w = str_load_word(s + i);
		h = (h ^ (fold ? ascii_lower_word(w) : w)) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	if (i < len) {
		uint64_t w = str_load_tail(s + i, len - i);
		h = (h ^ (fold ? ascii_lower_word(w) : w)) * 0xff51afd7ed558ccdULL;
	}
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* Copies src[0..len) into dst[0..len) with ASCII capitals folded to lower case (no NUL added). */
void ascii_lower_copy(char *dst, const char *src, size_t len);

/*
 * Formats a reason into err (errlen octets at most, always NUL-terminated): the
 * "char *err, size_t errlen" convention of parsers. A NULL err or errlen 0 is a no-op.
 */
void str_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
