/* strutil: see strutil.h. */
#include "util/strutil.h"

#include <stdarg.h>
#include <stdio.h>

#include <string.h>

int ascii_equal_ci(const char *s, size_t len, const char *word)
{
	size_t n = strlen(word);
	if (n != len)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)word[i]))
			return 0;
	return 1;
}

int ascii_contains_ci(const char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	if (n == 0 || n > len)
		return 0;
	for (size_t i = 0; i + n <= len; i++)
		if (ascii_equal_ci(hay + i, n, needle))
			return 1;
	return 0;
}

void str_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void ascii_lower_copy(char *dst, const char *src, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w = ascii_lower_word(str_load_word((const unsigned char *)src + i));
		memcpy(dst + i, &w, 8);
	}
	for (; i < len; i++)
		dst[i] = (char)ascii_lower((unsigned char)src[i]);
}

size_t str_next_word(const char *line, size_t *pos, const char **w)
{
	size_t i = *pos;
	while (line[i] && ascii_is_blank(line[i]))
		i++;
	size_t start = i;
	while (line[i] && !ascii_is_blank(line[i]))
		i++;
	*w = line + start;
	*pos = i;
	return i - start;
}

int str_line_printable(const char *line, char *err, size_t errlen)
{
	for (const char *p = line; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (!ascii_is_blank(c) && (c < 0x21 || c > 0x7e)) {
			str_errf(err, errlen, "control or non-ASCII octet in the line");
			return -1;
		}
	}
	return 0;
}
