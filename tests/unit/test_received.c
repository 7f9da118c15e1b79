/* Unit tests for proto/received: by and for clauses of real-world Received fields, by matching. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proto/received.h"

/* Renders a parse as "by=HOST for=ADDR" ("-" for a missing clause), or "BAD". */
static void render(const char *in, char *out, size_t outsz)
{
	struct received_info ri;
	if (received_parse(in, strlen(in), &ri) != 0) {
		CHECK(ri.by == NULL && ri.for_addr == NULL);
		snprintf(out, outsz, "BAD");
		return;
	}
	snprintf(out, outsz, "by=%.*s for=%.*s", ri.by ? (int)ri.by_len : 1, ri.by ? ri.by : "-",
	         ri.for_addr ? (int)ri.for_len : 1, ri.for_addr ? ri.for_addr : "-");
}

TEST(parse_table)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	        /* Postfix */
	        {" from mail.sender.example (mail.sender.example [192.0.2.1])\r\n\tby "
	         "mx.isp.example "
	         "(Postfix) with ESMTPS id 4ABC12\r\n\tfor <bob@ours.example>; Tue, 1 Dec 2026 "
	         "10:00:00 "
	         "+0000 (UTC)",
	         "by=mx.isp.example for=bob@ours.example"},
	        /* Postfix, several recipients: no for clause */
	        {" from a (a [192.0.2.1]) by mx.isp.example (Postfix) with ESMTP id X; Tue, 1 Dec "
	         "2026",
	         "by=mx.isp.example for=-"},
	        /* Exim: for without angle brackets, ';' right after it */
	        {" from [192.0.2.7] (helo=pc)\r\n\tby mx.isp.example with esmtpsa (TLS1.3) (Exim "
	         "4.96)"
	         "\r\n\t(envelope-from <s@x.example>)\r\n\tid 1abc-000\r\n\tfor "
	         "bob@ours.example;Tue, 1 "
	         "Dec 2026",
	         "by=mx.isp.example for=bob@ours.example"},
	        /* Gmail: no from clause, IPv6 by */
	        {" by 2002:a05:6a10:1234 with SMTP id abc;\r\n        Tue, 01 Dec 2026 02:00:00 "
	         "-0800 "
	         "(PST)",
	         "by=2002:a05:6a10:1234 for=-"},
	        /* Microsoft: extra words */
	        {" from AM0PR.outlook.com (2603:10a6::1) by DB9PR.outlook.com (2603:10a6::2) with "
	         "Microsoft SMTP Server (version=TLS1_2) id 15.20.1 via Frontend Transport; Tue, 1 "
	         "Dec",
	         "by=DB9PR.outlook.com for=-"},
	        /* qmail: all comment */
	        {" (qmail 1234 invoked by uid 0); 1 Dec 2026 10:00:00 -0000", "by=- for=-"},
	        /* a for clause in a comment is not one */
	        {" from x by mx (for <evil@ours.example>) with SMTP; date", "by=mx for=-"},
	        /* a HELO of "for" is the from value */
	        {" from for by mx for <bob@ours>", "by=mx for=bob@ours"},
	        /* a HELO of "by" too */
	        {" from by by mx for <bob@ours>", "by=mx for=bob@ours"},
	        /* a HELO of several words copied into the field: two by clauses, refused */
	        {" from x by mx.isp.example for <ceo@ours> (rdns [192.0.2.1]) by mx.isp.example "
	         "(Postfix) with ESMTP id X; date",
	         "BAD"},
	        {" from x by y by z", "BAD"},
	        /* a ';' in a HELO does not end the clauses: the date follows the last one */
	        {" from x; for <ceo@ours> (rdns [192.0.2.1]) by mx.isp with ESMTP id X\r\n"
	         "\tfor <bob@ours>; Tue, 1 Dec 2026 10:00:00 +0000",
	         "by=mx.isp for=bob@ours"},
	        {" from x; by evil for <ceo@ours> (rdns) by mx.isp id X; date", "BAD"},
	        {" from x by mx for <a@ours>; 1 Dec 2026 (unterminated", "BAD"},
	        /* for before by does not count */
	        {" from x for <evil@ours> by mx", "by=mx for=-"},
	        /* two for clauses: none */
	        {" from x by mx for <a@ours> for <b@ours>", "by=mx for=-"},
	        /* keywords in any case, folding between keyword and value */
	        {" FROM x BY\r\n MX.ISP FOR\r\n <a@ours>", "by=MX.ISP for=a@ours"},
	        /* a quoted local part with ';' and '>' inside */
	        {" from x by mx for <\"a;b>\"@ours>; date", "by=mx for=\"a;b>\"@ours"},
	        {" from x by mx for \"a b\"@ours; date", "by=mx for=\"a b\"@ours"},
	        {" from x by mx for <a@ours>, <b@ours>; date", "by=mx for=a@ours"},
	        {" from x by mx for <>; date", "by=mx for=-"},
	        {" from x by mx for", "by=mx for=-"},
	        {" from x by", "by=- for=-"},
	        {" from x by mx id <m@id.example> for a@ours", "by=mx for=a@ours"},
	        {"", "by=- for=-"},
	        {" from x (unterminated by mx", "BAD"},
	        {" from x by mx for <a@ours", "BAD"},
	        {" from x by mx for \"a@ours", "BAD"},
	        /* a comment with ';' inside does not end the clauses */
	        {" from x (a;b) by mx for <a@ours>", "by=mx for=a@ours"},
	        /* the date part is not read */
	        {" from x by mx; for <a@ours>", "by=mx for=-"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[256];
		render(cases[i].in, out, sizeof out);
		if (!CHECK_STR(out, cases[i].want))
			fprintf(stderr, "  case %zu: %s\n", i, cases[i].in);
	}
}

TEST(by_matches)
{
	static const struct {
		const char *host, *want;
		int match;
	} cases[] = {
	        {"mx.isp.example", "mx.isp.example", 1},
	        {"MX.ISP.Example.", "mx.isp.example", 1},
	        {"mx.isp.example", "mx.isp.example.", 1},
	        {"mx2.isp.example", "mx.isp.example", 0},
	        {"evil-mx.isp.example", "mx.isp.example", 0},
	        {"mx.isp.example.evil", "mx.isp.example", 0},
	        {"mx1.isp.example", ".isp.example", 1},
	        {"a.b.isp.example", ".ISP.example", 1},
	        {"isp.example", ".isp.example", 0},
	        {"evilisp.example", ".isp.example", 0},
	        {"", "mx", 0},
	        {"mx", "", 0},
	        {".", ".", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!CHECK_INT(received_by_matches(cases[i].host, strlen(cases[i].host),
		                                   cases[i].want),
		               cases[i].match))
			fprintf(stderr, "  case %zu: %s %s\n", i, cases[i].host, cases[i].want);
}

TEST_MAIN(T(parse_table), T(by_matches))
