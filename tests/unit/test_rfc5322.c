/*
 * Unit tests for proto/rfc5322: header section end, field iteration with folding,
 * Date, comments.
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "proto/rfc5322.h"

TEST(header_end)
{
	static const struct {
		const char *in;
		long want;
	} cases[] = {
	        {"Subject: x\r\n\r\nbody\r\n", 14},
	        {"\r\nbody", 2},
	        {"\r\n", 2},
	        {"A: b\r\nC: d\r\n\r\n", 14},
	        {"Subject: x\r\n", -1},
	        {"Subject: x\n\nbody", -1},
	        {"Subject: x\r\n\r", -1},
	        {"", -1},
	        {"\r", -1},
	        {"A: b\r\n \r\n\r\n", 11},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(rfc5322_header_end(cases[i].in, strlen(cases[i].in)), cases[i].want);
}

struct want_field {
	const char *name, *value;
};

/* Iterates msg's header section and compares names and values; returns the last result. */
static int iterate(const char *msg, const struct want_field *want, size_t n_want)
{
	size_t len = strlen(msg), pos = 0, k = 0;
	struct rfc5322_field f;
	int r;
	while ((r = rfc5322_next_field(msg, len, &pos, &f)) == 1) {
		if (!CHECK(k < n_want))
			return -2;
		CHECK_MEM(f.name, f.name_len, want[k].name, strlen(want[k].name));
		CHECK_MEM(f.value, f.value_len, want[k].value, strlen(want[k].value));
		CHECK(f.name + f.total_len <= msg + len);
		k++;
	}
	CHECK_INT(k, n_want);
	CHECK(pos <= len);
	return r;
}

TEST(fields)
{
	static const struct want_field w1[] = {
	        {"Received", " from a\r\n\tby b; Sat, 21 Nov 2026 16:34:00 +0000"},
	        {"Subject", " hello"},
	        {"X-Empty", ""},
	        {"Content-Type", " text/plain;\r\n charset=us-ascii"},
	};
	const char *m1 = "Received: from a\r\n\tby b; Sat, 21 Nov 2026 16:34:00 +0000\r\n"
	                 "Subject: hello\r\nX-Empty:\r\nContent-Type: text/plain;\r\n "
	                 "charset=us-ascii\r\n\r\nbody: not a field\r\n";
	CHECK_INT(iterate(m1, w1, 4), 0);

	/* Obsolete WSP before the colon (RFC 5322 4.5); last line without CRLF. */
	static const struct want_field w2[] = {{"Subject", " a"}, {"To", " b"}};
	CHECK_INT(iterate("Subject : a\r\nTo: b", w2, 2), 0);

	/* Not fields. */
	CHECK_INT(iterate(" folded-at-top: x\r\n", NULL, 0), -1);
	CHECK_INT(iterate("no colon here\r\n", NULL, 0), -1);
	CHECK_INT(iterate(": empty name\r\n", NULL, 0), -1);
	CHECK_INT(iterate("Na\x01me: x\r\n", NULL, 0), -1);
	CHECK_INT(iterate("Name\r\n: x\r\n", NULL, 0), -1);
	static const struct want_field w3[] = {{"A", " 1"}};
	CHECK_INT(iterate("A: 1\r\nbad line\r\n", w3, 1), -1);
	CHECK_INT(iterate("", NULL, 0), 0);
	CHECK_INT(iterate("\r\nA: 1\r\n", NULL, 0), 0);
}

TEST(field_positions)
{
	const char *m = "A: 1\r\nBb: 2\r\n\r\n";
	size_t pos = 0;
	struct rfc5322_field f;
	CHECK_INT(rfc5322_next_field(m, strlen(m), &pos, &f), 1);
	CHECK_INT(pos, 6);
	CHECK_INT(f.total_len, 6);
	CHECK(rfc5322_field_is(&f, "a"));
	CHECK(!rfc5322_field_is(&f, "ab"));
	CHECK_INT(rfc5322_next_field(m, strlen(m), &pos, &f), 1);
	CHECK_INT(pos, 13);
	CHECK(rfc5322_field_is(&f, "BB"));
	CHECK_INT(rfc5322_next_field(m, strlen(m), &pos, &f), 0);
	CHECK_INT(pos, 13);
}

TEST(date_format)
{
	char out[RFC5322_DATE_MAX];
	/* 2026-11-21 16:34:00 UTC is a Saturday. */
	CHECK_INT(rfc5322_date_format(1795278840, out, sizeof out), 31);
	CHECK_STR(out, "Sat, 21 Nov 2026 16:34:00 +0000");
	CHECK_INT(rfc5322_date_format(0, out, sizeof out), 31);
	CHECK_STR(out, "Thu, 01 Jan 1970 00:00:00 +0000");
	CHECK_INT(rfc5322_date_format(951782400, out, sizeof out), 31);
	CHECK_STR(out, "Tue, 29 Feb 2000 00:00:00 +0000");
	CHECK_INT(rfc5322_date_format(253402300799LL, out, sizeof out), 31);
	CHECK_STR(out, "Fri, 31 Dec 9999 23:59:59 +0000");
	CHECK_INT(rfc5322_date_format(253402300800LL, out, sizeof out), -1);
	CHECK_INT(rfc5322_date_format(INT64_MAX, out, sizeof out), -1);
	CHECK_INT(rfc5322_date_format(INT64_MIN, out, sizeof out), -1);
	CHECK_INT(rfc5322_date_format(0, out, 31), -1);
	CHECK_INT(rfc5322_date_format(0, out, 0), -1);
}

/* Comments nest and a quoted-pair hides a parenthesis (3.2.2); 0 when one does not end. */
TEST(skip_comment)
{
	static const struct {
		const char *in;
		size_t at, want;
	} cases[] = {
	        {"(a) x", 0, 3},    {"x (a (b) c) y", 2, 11}, {"(a \\) b) c", 0, 8},
	        {"(a (b) c", 0, 0}, {"(a \\)", 0, 0},         {"()", 0, 2},
	        {"(\\", 0, 0},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
		CHECK(rfc5322_skip_comment(cases[k].in, strlen(cases[k].in), cases[k].at) ==
		      cases[k].want);
	/* n bounds the read: the ')' past it does not count */
	CHECK(rfc5322_skip_comment("(ab)", 3, 0) == 0);
}

TEST_MAIN(T(header_end), T(fields), T(field_positions), T(date_format), T(skip_comment))
