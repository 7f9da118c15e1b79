/*
 * collect_trace: see collect_trace.h.
 */
#include "proto/collect_trace.h"

#include <stdio.h>
#include <string.h>

#include "proto/rfc5322.h"

/* Appends s[0..len) to out at *o with comment-breaking and non-printable octets as '?'. */
static int put_safe(char *out, size_t outsz, size_t *o, const char *s, size_t len)
{
	if (len >= outsz - *o)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int bad = c < 0x21 || c > 0x7e || c == '(' || c == ')' || c == '\\';
		out[(*o)++] = bad ? '?' : (char)c;
	}
	out[*o] = '\0';
	return 0;
}

static int put_text(char *out, size_t outsz, size_t *o, const char *s)
{
	int n = snprintf(out + *o, outsz - *o, "%s", s);
	if (n < 0 || (size_t)n >= outsz - *o)
		return -1;
	*o += (size_t)n;
	return 0;
}

long collect_trace_format(const char *host, const char *ours, const char *id, const char *source,
                          const char *uidl, size_t uidl_len, int64_t t, char *out, size_t outsz)
{
	char date[RFC5322_DATE_MAX];
	size_t o = 0;
	if (outsz == 0 || rfc5322_date_format(t, date, sizeof date) < 0)
		return -1;
	if (put_text(out, outsz, &o, "Received: from ") < 0 ||
	    put_safe(out, outsz, &o, host, strlen(host)) < 0 ||
	    put_text(out, outsz, &o, " by ") < 0 ||
	    put_safe(out, outsz, &o, ours, strlen(ours)) < 0 ||
	    put_text(out, outsz, &o, " with POP3 id ") < 0 ||
	    put_safe(out, outsz, &o, id, strlen(id)) < 0 ||
	    put_text(out, outsz, &o, "\r\n\t" COLLECT_TRACE_TAG) < 0 ||
	    put_safe(out, outsz, &o, source, strlen(source)) < 0 ||
	    put_text(out, outsz, &o, " uidl ") < 0 ||
	    put_safe(out, outsz, &o, uidl, uidl_len) < 0 ||
	    put_text(out, outsz, &o, ");\r\n\t") < 0 || put_text(out, outsz, &o, date) < 0 ||
	    put_text(out, outsz, &o, "\r\n") < 0)
		return -1;
	return (long)o;
}

int collect_trace_is_ours(const char *value, size_t len)
{
	size_t tl = strlen(COLLECT_TRACE_TAG);
	static const char with[] = " with POP3 id ";
	int have_with = 0;
	for (size_t i = 0; i + sizeof with - 1 <= len; i++)
		if (memcmp(value + i, with, sizeof with - 1) == 0)
			have_with = 1;
	if (!have_with)
		return 0;
	for (size_t i = 0; i + tl <= len; i++)
		if (memcmp(value + i, COLLECT_TRACE_TAG, tl) == 0)
			return 1;
	return 0;
}
