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
