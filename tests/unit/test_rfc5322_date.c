/* Unit tests for proto/rfc5322_date: date-time to UTC seconds, obsolete forms, refusals. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proto/rfc5322.h"
#include "proto/rfc5322_date.h"

#define BAD INT64_MIN

TEST(parse_table)
{
	/* Expected values computed with Python's calendar.timegm. */
	static const struct {
		const char *in;
		int64_t want;
	} cases[] = {
	        {"Tue, 1 Dec 2026 10:00:00 +0000", 1796119200},
	        {" Tue, 01 Dec 2026 10:00:00 +0000 (UTC)", 1796119200},
	        {"1 Dec 2026 10:00:00 +0000", 1796119200}, /* no day of week */
	        {"Tue 1 Dec 2026 10:00:00 +0000", 1796119200}, /* no comma: tolerated */
	        {"Tue, 1 Dec 2026 11:30:00 +0130", 1796119200},
	        {"Tue, 1 Dec 2026 05:00:00 -0500", 1796119200},
	        {"Tue, 1 Dec 2026 05:00:00 EST", 1796119200},
	        {"Tue, 1 Dec 2026 06:00:00 EDT", 1796119200},
	        {"Tue, 1 Dec 2026 02:00:00 PST", 1796119200},
	        {"Tue, 1 Dec 2026 10:00:00 GMT", 1796119200},
	        {"Tue, 1 Dec 2026 10:00:00 UT", 1796119200},
	        {"Tue, 1 Dec 2026 10:00:00 Z", 1796119200}, /* military: +0000 */
	        {"Tue, 1 Dec 2026 10:00:00 -0000", 1796119200},
	        {"Tue, 1 Dec 2026 10:00 +0000", 1796119200}, /* no seconds */
	        {"tue, 1 DEC 2026 10:00:00 +0000", 1796119200},
	        {"Tue,\r\n 1 (day) Dec\r\n\t2026 10 : 00 : 00 (x (y)) +0000\r\n (UTC)", 1796119200},
	        {"Thu, 1 Jan 1970 00:00:00 +0000", 0},
	        {"Tue, 29 Feb 2000 23:59:59 +0000", 951868799},
	        {"Mon, 1 Jan 1900 00:00:00 +0000", -2208988800LL},
	        {"Fri, 31 Dec 9999 23:59:59 +0000", 253402300799LL},
	        {"1 Jun 49 00:00:00 +0000", 2506118400LL}, /* 2-digit: 2049 */
	        {"1 Jun 50 00:00:00 +0000", -618105600LL}, /* 2-digit: 1950 */
	        {"1 Jun 150 00:00:00 +0000", 2537654400LL}, /* 3-digit: 1900 + 150 = 2050 */
	        {"Tue, 1 Dec 2026 09:59:60 +0000", 1796119200}, /* leap second */
	        {"Mon, 1 Dec 2026 10:00:00 +0000", 1796119200}, /* wrong weekday: not checked */
	        {"", BAD},
	        {"Tue, 1 Dec 2026", BAD},
	        {"Tue, 1 Dec 2026 10:00:00", BAD}, /* no zone */
	        {"Xyz, 1 Dec 2026 10:00:00 +0000", BAD},
	        {"Tue, 32 Dec 2026 10:00:00 +0000", BAD},
	        {"Tue, 0 Dec 2026 10:00:00 +0000", BAD},
	        {"Tue, 29 Feb 2100 10:00:00 +0000", BAD},
	        {"Tue, 1 Dex 2026 10:00:00 +0000", BAD},
	        {"Tue, 1 Dec 2026 24:00:00 +0000", BAD},
	        {"Tue, 1 Dec 2026 10:60:00 +0000", BAD},
	        {"Tue, 1 Dec 2026 10:00:61 +0000", BAD},
	        {"Tue, 1 Dec 2026 10:00:00 +0060", BAD},
	        {"Tue, 1 Dec 2026 10:00:00 +000", BAD},
	        {"Tue, 1 Dec 2026 10:00:00 +00000", BAD},
	        {"Tue, 1 Dec 2026 10:00:00 J", BAD},
	        {"Tue, 1 Dec 2026 10:00:00 XYZ", BAD},
	        {"Tue, 1 Dec 2026 10:00:00 +0000 junk", BAD},
	        {"Tue, 1 Dec 2026 10:00:00 +0000 (unterminated", BAD},
	        {"Tue, 1 Dec 1899 10:00:00 +0000", BAD},
	        {"Tue, 1 Dec 20260 10:00:00 +0000", BAD},
	        {"Tue, 1 Dec 2026 100:00:00 +0000", BAD},
	        {"Tue, 1 Dec 2 10:00:00 +0000", BAD},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t got = BAD;
		int r = rfc5322_date_parse(cases[i].in, strlen(cases[i].in), &got);
		int ok = cases[i].want == BAD ? CHECK_INT(r, -1) && CHECK(got == BAD)
		                              : CHECK_INT(r, 0) && CHECK_INT(got, cases[i].want);
		if (!ok)
			fprintf(stderr, "  case %zu: %s\n", i, cases[i].in);
	}
}

/* What rfc5322_date_format writes reads back as the same second, across the years. */
TEST(round_trip_with_format)
{
	size_t tried = 0, wrong = 0;
	for (int64_t t = -2208988800LL; t < 253402300799LL; t += 86400LL * 97 + 3607) {
		char buf[RFC5322_DATE_MAX];
		int64_t back = 0;
		int n = rfc5322_date_format(t, buf, sizeof buf);
		tried++;
		if (n <= 0 || rfc5322_date_parse(buf, (size_t)n, &back) != 0 || back != t) {
			if (wrong++ == 0)
				fprintf(stderr, "  %lld: %s -> %lld\n", (long long)t, buf,
				        (long long)back);
		}
	}
	CHECK(tried > 30000);
	CHECK_INT(wrong, 0);
}

TEST_MAIN(T(parse_table), T(round_trip_with_format))
