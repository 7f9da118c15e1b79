/*
 * rfc5322_date: see rfc5322_date.h. A small tokenizer over CFWS (RFC 5322 3.2.2:
 * comments nest, folding is white space; 4.3 allows CFWS between every token of
 * the obsolete forms) and the civil-date arithmetic of the proleptic Gregorian
 * calendar, so no locale, timegm() or time zone file is involved.
 */
#include "proto/rfc5322_date.h"

#include <string.h>

#include "util/strutil.h"

struct rd {
	const char *v;
	size_t n, i;
	int bad; /* an unterminated comment */
};

static int is_wsp(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static int is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static int is_alpha(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* Skips white space and comments (nested, quoted-pairs). */
static void cfws(struct rd *r)
{
	while (r->i < r->n) {
		if (is_wsp(r->v[r->i])) {
			r->i++;
			continue;
		}
		if (r->v[r->i] != '(')
			return;
		int depth = 0;
		for (; r->i < r->n; r->i++) {
			char ch = r->v[r->i];
			if (ch == '\\')
				r->i++;
			else if (ch == '(')
				depth++;
			else if (ch == ')' && --depth == 0)
				break;
		}
		if (r->i >= r->n) {
			r->bad = 1;
			return;
		}
		r->i++;
	}
}

/* Reads 1 to max_digits digits after CFWS into *out; returns how many digits, 0 if none. */
static int number(struct rd *r, int max_digits, int *out)
{
	int digits = 0, val = 0;
	cfws(r);
	while (r->i < r->n && is_digit(r->v[r->i]) && digits < max_digits) {
		val = val * 10 + (r->v[r->i] - '0');
		digits++;
		r->i++;
	}
	if (r->i < r->n && is_digit(r->v[r->i]))
		return 0; /* more digits than allowed */
	*out = val;
	return digits;
}

/* Reads a run of letters after CFWS; returns its length (at r->v + *start). */
static size_t word(struct rd *r, size_t *start)
{
	cfws(r);
	*start = r->i;
	while (r->i < r->n && is_alpha(r->v[r->i]))
		r->i++;
	return r->i - *start;
}

/* Consumes ch after CFWS; 1 if it was there. */
static int special(struct rd *r, char ch)
{
	cfws(r);
	if (r->i < r->n && r->v[r->i] == ch) {
		r->i++;
		return 1;
	}
	return 0;
}

static int index_of(const char *s, size_t len, const char *const *names, int count)
{
	for (int k = 0; k < count; k++)
		if (ascii_equal_ci(s, len, names[k]))
			return k;
	return -1;
}

static int is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 1 && is_leap(y) ? 29 : days[m];
}

/* Days from 1970-01-01 to y-m-d (m 1..12), proleptic Gregorian, by 400-year eras from March. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The optional "day-of-week ," (RFC 5322 3.3, 4.3). 0, or -1 if a word is there but no day. */
static int day_of_week(struct rd *r)
{
	static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
	size_t save = r->i, start, len = word(r, &start);
	if (len == 0) {
		r->i = save;
		return 0;
	}
	if (index_of(r->v + start, len, days, 7) < 0)
		return -1;
	special(r, ','); /* the comma is required by the grammar; some clients leave it out */
	return 0;
}

/* The zone (3.3 zone, 4.3 obs-zone) into seconds east of UTC; -1 if none. */
static int zone(struct rd *r, int *offset)
{
	static const char *const names[] = {"UT",  "GMT", "EST", "EDT", "CST",
	                                    "CDT", "MST", "MDT", "PST", "PDT"};
	static const int hours[] = {0, 0, -5, -4, -6, -5, -7, -6, -8, -7};
	size_t start, len;
	cfws(r);
	if (r->i < r->n && (r->v[r->i] == '+' || r->v[r->i] == '-')) {
		int sign = r->v[r->i++] == '-' ? -1 : 1, hhmm;
		if (r->i >= r->n || !is_digit(r->v[r->i]) || number(r, 4, &hhmm) != 4 ||
		    hhmm % 100 > 59)
			return -1;
		*offset = sign * ((hhmm / 100) * 3600 + (hhmm % 100) * 60);
		return 0;
	}
	len = word(r, &start);
	int k = index_of(r->v + start, len, names, 10);
	if (k >= 0) {
		*offset = hours[k] * 3600;
		return 0;
	}
	/* Military zones: 4.3 says their meaning was unreliable, so they say nothing. */
	if (len == 1 && ascii_lower((unsigned char)r->v[start]) != 'j') {
		*offset = 0;
		return 0;
	}
	return -1;
}

/* day month year (3.3 date, 4.3 obs-year) into y, m (0..11), d. */
static int date(struct rd *r, int *y, int *m, int *d)
{
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	size_t start, len;
	int digits;
	if (number(r, 2, d) == 0)
		return -1;
	len = word(r, &start);
	if ((*m = index_of(r->v + start, len, months, 12)) < 0)
		return -1;
	digits = number(r, 4, y);
	if (digits < 2)
		return -1;
	if (digits == 2)
		*y += *y < 50 ? 2000 : 1900;
	else if (digits == 3)
		*y += 1900;
	if (*y < 1900 || *d < 1 || *d > month_days(*y, *m))
		return -1;
	return 0;
}

/* hour ":" minute [":" second] (3.3 time-of-day) into seconds of the day. */
static int time_of_day(struct rd *r, int *secs)
{
	int h, mi, s = 0;
	if (number(r, 2, &h) == 0 || !special(r, ':') || number(r, 2, &mi) == 0)
		return -1;
	if (special(r, ':') && number(r, 2, &s) == 0)
		return -1;
	if (h > 23 || mi > 59 || s > 60)
		return -1;
	*secs = h * 3600 + mi * 60 + s;
	return 0;
}

int rfc5322_date_parse(const char *v, size_t n, int64_t *out)
{
	struct rd r = {v, n, 0, 0};
	int y, m, d, secs, offset;
	if (day_of_week(&r) != 0 || date(&r, &y, &m, &d) != 0 || time_of_day(&r, &secs) != 0 ||
	    zone(&r, &offset) != 0)
		return -1;
	cfws(&r);
	if (r.bad || r.i != r.n)
		return -1;
	*out = days_from_civil(y, m + 1, d) * 86400 + secs - offset;
	return 0;
}
