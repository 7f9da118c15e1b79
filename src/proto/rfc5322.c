/*
 * rfc5322: the header section of a message (RFC 5322 2.2, 3.3, 3.6).
 *
 * Used on messages we received (adding Date:, counting trace fields), so every
 * function accepts any octets and only reports what it finds: it never trusts a
 * length or a line it has not seen end.
 */
#include "proto/rfc5322.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

size_t rfc5322_skip_comment(const char *v, size_t n, size_t i)
{
	int depth = 0;
	for (; i < n; i++) {
		if (v[i] == '\\')
			i++;
		else if (v[i] == '(')
			depth++;
		else if (v[i] == ')' && --depth == 0)
			return i + 1;
	}
	return 0;
}

long rfc5322_header_end(const char *msg, size_t len)
{
	if (len >= 2 && msg[0] == '\r' && msg[1] == '\n')
		return 2;
	for (size_t i = 0; i + 4 <= len; i++)
		if (msg[i] == '\r' && msg[i + 1] == '\n' && msg[i + 2] == '\r' &&
		    msg[i + 3] == '\n')
			return (long)(i + 4);
	return -1;
}

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Index of the CRLF ending the line that contains msg[i], or len. */
static size_t line_end(const char *msg, size_t len, size_t i)
{
	while (i + 1 < len && !(msg[i] == '\r' && msg[i + 1] == '\n'))
		i++;
	return i + 1 < len ? i : len;
}

int rfc5322_next_field(const char *msg, size_t len, size_t *pos, struct rfc5322_field *f)
{
	size_t start = *pos, i = *pos;

	memset(f, 0, sizeof *f);
	if (start >= len || (len - start >= 2 && msg[start] == '\r' && msg[start + 1] == '\n'))
		return 0;
	/* ftext = %d33-57 / %d59-126 (RFC 5322 3.6.8). */
	while (i < len && (unsigned char)msg[i] > 0x20 && (unsigned char)msg[i] < 0x7f &&
	       msg[i] != ':')
		i++;
	size_t name_end = i;
	while (i < len && is_wsp(msg[i]))
		i++;
	if (name_end == start || i >= len || msg[i] != ':')
		return -1;

	/* The value runs to a CRLF not followed by WSP (unfolding, RFC 5322 2.2.3). */
	size_t v = i + 1, e = line_end(msg, len, v);
	while (e < len && e + 2 < len && is_wsp(msg[e + 2]))
		e = line_end(msg, len, e + 2);

	f->name = msg + start;
	f->name_len = name_end - start;
	f->value = msg + v;
	f->value_len = e - v;
	f->total_len = (e < len ? e + 2 : len) - start;
	*pos = start + f->total_len;
	return 1;
}

int rfc5322_field_is(const struct rfc5322_field *f, const char *name)
{
	size_t n = strlen(name);
	if (f->name_len != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		int a = (unsigned char)f->name[i], b = (unsigned char)name[i];
		if (a >= 'A' && a <= 'Z')
			a += 32;
		if (b >= 'A' && b <= 'Z')
			b += 32;
		if (a != b)
			return 0;
	}
	return 1;
}

int rfc5322_date_format(int64_t t, char *out, size_t outsz)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;
	time_t tt = (time_t)t;

	/* RFC 5322 3.3: year is 4 or more digits; we promise exactly 4. */
	if ((int64_t)tt != t || t < -2208988800LL || t > 253402300799LL || !gmtime_r(&tt, &tm))
		return -1;
	if (tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11)
		return -1;
	int n = snprintf(out, outsz, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
	                 tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	                 tm.tm_sec);
	if (n < 0 || (size_t)n >= outsz)
		return -1;
	return n;
}
