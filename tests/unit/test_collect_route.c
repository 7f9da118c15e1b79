/*
 * Unit tests for collect/collect_route: one case per rule, the precedence
 * between them, Bcc (named only in X-Rcpt-To), a forged Received below the
 * ISP's, several addresses in one header, case, malformed headers, the bound.
 */
#include <stdio.h>
#include <string.h>

#include "collect/collect_route.h"
#include "harness.h"
#include "util/strutil.h"

static int local_calls;

/* ours.example is a local domain, share.example a Domain Sharing one: both count. */
static int is_local(void *arg, const char *addr, const char *domain)
{
	(void)arg;
	local_calls++;
	CHECK(strchr(addr, '@') != NULL && domain > addr && domain[-1] == '@');
	return ascii_equal_ci(domain, strlen(domain), "ours.example") ||
	       ascii_equal_ci(domain, strlen(domain), "share.example");
}

struct route_case {
	const char *hdr;
	const char *headers; /* NULL: the defaults */
	int no_received, no_to_cc;
	const char *received_by;
	const char *want; /* "RULE HEADER rcpt... f=N m=N d=N" */
};

/* Renders a result as "rule header rcpt... f=foreign m=malformed d=dropped". */
static void render(const struct collect_route_result *r, char *out, size_t outsz)
{
	size_t used = (size_t)snprintf(out, outsz, "%s %s", collect_route_rule_name(r->rule),
	                               r->header ? r->header : "-");
	for (size_t i = 0; i < r->n_rcpts && used < outsz; i++)
		used += (size_t)snprintf(out + used, outsz - used, " %s", r->rcpts[i]);
	if (used < outsz)
		snprintf(out + used, outsz - used, " f=%zu m=%zu d=%zu", r->foreign, r->malformed,
		         r->dropped);
}

static void run_case(const struct route_case *k, size_t i)
{
	struct collect_route_conf c;
	static struct collect_route_result r;
	char list[256], out[2048];
	collect_route_conf_defaults(&c);
	if (k->headers) {
		snprintf(list, sizeof list, "%s", k->headers);
		CHECK(collect_route_conf_headers(&c, list) >= 0);
	}
	c.parse_received = !k->no_received;
	c.parse_to_cc = !k->no_to_cc;
	c.received_by = k->received_by;
	c.is_local = is_local;
	memset(&r, 0x5a, sizeof r); /* collect_route fills the whole result */
	enum collect_route_rule rule = collect_route(&c, k->hdr, strlen(k->hdr), &r);
	CHECK_INT(rule, r.rule);
	render(&r, out, sizeof out);
	if (!CHECK_STR(out, k->want))
		fprintf(stderr, "  case %zu\n", i);
}

#define RCV_ISP                                                                                    \
	"Received: from mail.sender.example (mail.sender.example [192.0.2.1])\r\n"                 \
	"\tby mx.isp.example (Postfix) with ESMTP id 4AB\r\n"
#define DATE "; Tue, 1 Dec 2026 10:00:00 +0000\r\n"

TEST(one_case_per_rule)
{
	static const struct route_case cases[] = {
	        {"X-Rcpt-To: bob@ours.example\r\nTo: alice@ours.example\r\n", NULL, 0, 0, NULL,
	         "header X-Rcpt-To bob@ours.example f=0 m=0 d=0"},
	        {"X-MDRcpt-To: bob@ours.example\r\n", NULL, 0, 0, NULL,
	         "header X-MDRcpt-To bob@ours.example f=0 m=0 d=0"},
	        {"X-Original-To: bob@ours.example\r\n", NULL, 0, 0, NULL,
	         "header X-Original-To bob@ours.example f=0 m=0 d=0"},
	        {"Delivered-To: bob@ours.example\r\n", NULL, 0, 0, NULL,
	         "header Delivered-To bob@ours.example f=0 m=0 d=0"},
	        {"Envelope-to: bob@ours.example\r\n", NULL, 0, 0, NULL,
	         "header Envelope-To bob@ours.example f=0 m=0 d=0"},
	        {"X-Envelope-To: <bob@ours.example> (via isp)\r\n", NULL, 0, 0, NULL,
	         "header X-Envelope-To bob@ours.example f=0 m=0 d=0"},
	        {RCV_ISP "\tfor <bob@ours.example>" DATE "To: alice@ours.example\r\n", NULL, 0, 0,
	         NULL, "received Received bob@ours.example f=0 m=0 d=0"},
	        {"To: alice@ours.example\r\nCc: Carol <carol@ours.example>\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc alice@ours.example carol@ours.example f=0 m=0 d=0"},
	        {"To: x@other.example\r\nSubject: hi\r\n", NULL, 0, 0, NULL, "none - f=0 m=0 d=0"},
	        {"", NULL, 0, 0, NULL, "none - f=0 m=0 d=0"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i], i);
}

TEST(precedence)
{
	static const struct route_case cases[] = {
	        /* the configured order decides, not the order in the message */
	        {"Delivered-To: d@ours.example\r\nX-Original-To: o@ours.example\r\n", NULL, 0, 0,
	         NULL, "header X-Original-To o@ours.example f=0 m=0 d=0"},
	        {"Delivered-To: d@ours.example\r\nX-Original-To: o@ours.example\r\n",
	         "Delivered-To X-Original-To", 0, 0, NULL,
	         "header Delivered-To d@ours.example f=0 m=0 d=0"},
	        /* a header naming nobody local does not decide; its foreign count is dropped */
	        {"X-Rcpt-To: x@other.example\r\nDelivered-To: bob@ours.example\r\n", NULL, 0, 0,
	         NULL, "header Delivered-To bob@ours.example f=0 m=0 d=0"},
	        /* a listed header beats Received, Received beats To/Cc */
	        {RCV_ISP "\tfor <r@ours.example>" DATE "X-Rcpt-To: h@ours.example\r\n"
	                 "To: t@ours.example\r\n",
	         NULL, 0, 0, NULL, "header X-Rcpt-To h@ours.example f=0 m=0 d=0"},
	        {RCV_ISP "\tfor <r@ours.example>" DATE "To: t@ours.example\r\n", NULL, 0, 0, NULL,
	         "received Received r@ours.example f=0 m=0 d=0"},
	        /* Received naming a foreign address: To/Cc decides */
	        {RCV_ISP "\tfor <x@other.example>" DATE "To: t@ours.example\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        /* rules switched off */
	        {RCV_ISP "\tfor <r@ours.example>" DATE "To: t@ours.example\r\n", NULL, 1, 0, NULL,
	         "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        {"To: t@ours.example\r\n", NULL, 0, 1, NULL, "none - f=0 m=0 d=0"},
	        {"X-Rcpt-To: h@ours.example\r\nTo: t@ours.example\r\n", "", 0, 0, NULL,
	         "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        /* a custom list: only the names in it */
	        {"X-Rcpt-To: ceo@ours.example\r\nX-Custom: bob@ours.example\r\n", "X-Custom", 0, 0,
	         NULL, "header X-Custom bob@ours.example f=0 m=0 d=0"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i], i);
}

TEST(bcc_and_to_cc)
{
	static const struct route_case cases[] = {
	        /* the Bcc'd copy: only X-Rcpt-To names carol, To/Cc name others */
	        {"X-Rcpt-To: carol@ours.example\r\nTo: bob@ours.example\r\nCc: "
	         "dave@ours.example\r\n",
	         NULL, 0, 0, NULL, "header X-Rcpt-To carol@ours.example f=0 m=0 d=0"},
	        /* without the ISP header the Bcc recipient is nowhere: To/Cc get copies */
	        {"To: bob@ours.example\r\nCc: dave@ours.example\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc bob@ours.example dave@ours.example f=0 m=0 d=0"},
	        /* To, Cc, Bcc, Resent-*: in message order, foreign ones counted */
	        {"Resent-To: d@ours.example\r\nTo: a@ours.example, b@other.example\r\n"
	         "Cc: C <c@Ours.Example>\r\nBcc: e@ours.example\r\nResent-Cc: f@share.example\r\n"
	         "Resent-Bcc: g@ours.example\r\nReply-To: z@ours.example\r\n",
	         NULL, 0, 0, NULL,
	         "to-cc To/Cc d@ours.example a@ours.example c@ours.example e@ours.example "
	         "f@share.example g@ours.example f=1 m=0 d=0"},
	        /* To/Cc reads every field of those names, not only the topmost */
	        {"To: a@ours.example\r\nSubject: x\r\nTo: b@ours.example\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc a@ours.example b@ours.example f=0 m=0 d=0"},
	        /* groups, quoted names, encoded words, comments */
	        {"To: team: a@ours.example, \"Doe, J\" <j@ours.example>;, "
	         "=?utf-8?q?Evil,_<x@ours.example>?= <k@ours.example> (K, <y@ours.example>)\r\n",
	         NULL, 0, 0, NULL,
	         "to-cc To/Cc a@ours.example j@ours.example k@ours.example f=0 m=0 d=0"},
	        {"To: undisclosed-recipients:;\r\n", NULL, 0, 0, NULL, "none - f=0 m=0 d=0"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i], i);
}

TEST(received_trust)
{
	static const struct route_case cases[] = {
	        /* only the topmost Received: a lower one (the sender's) is not read */
	        {RCV_ISP "\tfor <bob@ours.example>" DATE
	                 "Received: from evil by mx.isp.example for <ceo@ours.example>" DATE,
	         NULL, 0, 0, NULL, "received Received bob@ours.example f=0 m=0 d=0"},
	        /* the ISP's has no for clause: the forged one below is still not read */
	        {RCV_ISP DATE "Received: from evil by mx.isp.example for <ceo@ours.example>" DATE
	                      "To: bob@ours.example\r\n",
	         NULL, 0, 0, NULL, "to-cc To/Cc bob@ours.example f=0 m=0 d=0"},
	        {RCV_ISP DATE "Received: from evil by mx.isp.example for <ceo@ours.example>" DATE
	                      "To: bob@ours.example\r\n",
	         NULL, 0, 0, "mx.isp.example", "to-cc To/Cc bob@ours.example f=0 m=0 d=0"},
	        /* received_by: the topmost whose by matches, above it the ISP's inner hops */
	        {"Received: from mx.isp.example by lmtp.isp.example for <inner@ours.example>" DATE
	                 RCV_ISP "\tfor <alice@ours.example>" DATE
	         "Received: from evil by mx.isp.example for <ceo@ours.example>" DATE,
	         NULL, 0, 0, "MX.isp.example.", "received Received alice@ours.example f=0 m=0 d=0"},
	        {"Received: by mx7.isp.example for <a@ours.example>" DATE, NULL, 0, 0,
	         ".isp.example", "received Received a@ours.example f=0 m=0 d=0"},
	        /* received_by names no field: the rule names nobody */
	        {RCV_ISP "\tfor <alice@ours.example>" DATE "To: t@ours.example\r\n", NULL, 0, 0,
	         "mx.other.example", "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        /* an unreadable Received (a HELO with '(') stops the rule: no forged one below */
	        {"Received: from x( by mx.isp.example for <bob@ours.example>" DATE
	         "Received: from evil by mx.isp.example for <ceo@ours.example>" DATE
	         "To: t@ours.example\r\n",
	         NULL, 0, 0, "mx.isp.example", "to-cc To/Cc t@ours.example f=0 m=1 d=0"},
	        /* a HELO of several words that writes its own by and for clauses: the field
	         * is refused, with received_by or without, and nothing below it is read */
	        {"Received: from x by mx.isp.example for <ceo@ours.example> (rdns [192.0.2.1])\r\n"
	         "\tby mx.isp.example (Postfix) with ESMTP id X" DATE
	         "Received: from evil by mx.isp.example for <ceo@ours.example>" DATE
	         "To: t@ours.example\r\n",
	         NULL, 0, 0, NULL, "to-cc To/Cc t@ours.example f=0 m=1 d=0"},
	        {"Received: from x by mx.isp.example for <ceo@ours.example> (rdns [192.0.2.1])\r\n"
	         "\tby mx.isp.example (Postfix) with ESMTP id X" DATE
	         "Received: from evil by mx.isp.example for <ceo@ours.example>" DATE
	         "To: t@ours.example\r\n",
	         NULL, 0, 0, "mx.isp.example", "to-cc To/Cc t@ours.example f=0 m=1 d=0"},
	        /* a HELO with a ';' cannot hide the ISP's by clause and let a lower field match */
	        {"Received: from x; Tue, 1 Dec 2026 (rdns [192.0.2.1])\r\n"
	         "\tby mx.isp.example (Postfix) with ESMTP id X" DATE
	         "Received: from evil by mx.isp.example for <ceo@ours.example>" DATE
	         "To: t@ours.example\r\n",
	         NULL, 0, 0, "mx.isp.example", "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        /* a for clause in a comment, or a HELO of "for", is no for clause */
	        {"Received: from for (for <ceo@ours.example>) by mx.isp.example" DATE
	         "To: t@ours.example\r\n",
	         NULL, 0, 0, NULL, "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        /* for without angle brackets (Exim), folded */
	        {"Received: from x by mx.isp.example with esmtp id 1\r\n\tfor\r\n bob@ours.example;"
	         " Tue, 1 Dec 2026\r\n",
	         NULL, 0, 0, NULL, "received Received bob@ours.example f=0 m=0 d=0"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i], i);
}

TEST(addresses_case_and_runs)
{
	static const struct route_case cases[] = {
	        /* several addresses in one header, foreign ones counted */
	        {"X-Rcpt-To: a@ours.example, b@ours.example, c@other.example\r\n", NULL, 0, 0, NULL,
	         "header X-Rcpt-To a@ours.example b@ours.example f=1 m=0 d=0"},
	        /* one mailbox however it is spelled */
	        {"X-Rcpt-To: Bob@OURS.example, bob@ours.example\r\nX-Rcpt-To: BOB@ours.EXAMPLE\r\n",
	         NULL, 0, 0, NULL, "header X-Rcpt-To bob@ours.example f=0 m=0 d=0"},
	        /* folding inside the list */
	        {"X-Rcpt-To: a@ours.example,\r\n\tb@ours.example\r\n", NULL, 0, 0, NULL,
	         "header X-Rcpt-To a@ours.example b@ours.example f=0 m=0 d=0"},
	        /* the topmost run of a name: an earlier hop's Delivered-To further down is not read */
	        {"Delivered-To: bob@ours.example\r\n" RCV_ISP DATE
	         "Delivered-To: alice@ours.example\r\n",
	         NULL, 0, 0, NULL, "header Delivered-To bob@ours.example f=0 m=0 d=0"},
	        {"Delivered-To: a@ours.example\r\nDelivered-To: b@ours.example\r\n", NULL, 0, 0,
	         NULL, "header Delivered-To a@ours.example b@ours.example f=0 m=0 d=0"},
	        /* a run naming only foreign addresses still hides the lower ones */
	        {"Delivered-To: x@other.example\r\nSubject: s\r\nDelivered-To: old@ours.example\r\n"
	         "To: t@ours.example\r\n",
	         NULL, 0, 0, NULL, "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        /* not RFC 5321 mailboxes: unqualified, bad dots, 8-bit */
	        {"X-Rcpt-To: bob, a..b@ours.example, \"x\"y@ours.example, \xc3\xa9@ours.example\r\n"
	         "To: t@ours.example\r\n",
	         NULL, 0, 0, NULL, "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        {"To: \"a b\"@ours.example\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc \"a b\"@ours.example f=0 m=0 d=0"},
	        /* the body is not read */
	        {"To: a@ours.example\r\n\r\nX-Rcpt-To: evil@ours.example\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc a@ours.example f=0 m=0 d=0"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i], i);
}

TEST(malformed_headers)
{
	static const struct route_case cases[] = {
	        /* a list that breaks before any mailbox names nobody: the next rule decides */
	        {"X-Rcpt-To: <bob@ours.example\r\nTo: alice@ours.example\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc alice@ours.example f=0 m=1 d=0"},
	        /* the mailboxes before the fault count */
	        {"X-Rcpt-To: a@ours.example, <b@ours.example\r\n", NULL, 0, 0, NULL,
	         "header X-Rcpt-To a@ours.example f=0 m=1 d=0"},
	        /* a line that is not a field does not hide the fields below */
	        {"garbage without a colon\r\n  and its continuation\r\nX-Rcpt-To: "
	         "bob@ours.example\r\n",
	         NULL, 0, 0, NULL, "header X-Rcpt-To bob@ours.example f=0 m=0 d=0"},
	        {" leading white space\r\nTo: t@ours.example\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        /* no final CRLF */
	        {"To: t@ours.example", NULL, 0, 0, NULL, "to-cc To/Cc t@ours.example f=0 m=0 d=0"},
	        {"To: Bob bob@ours.example, c@ours.example\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc c@ours.example f=0 m=0 d=0"},
	        {"X-Rcpt-To:\r\nTo:\r\n", NULL, 0, 0, NULL, "none - f=0 m=0 d=0"},
	        /* Outlook's ';' between addresses */
	        {"To: a@ours.example; b@ours.example\r\n", NULL, 0, 0, NULL,
	         "to-cc To/Cc a@ours.example b@ours.example f=0 m=0 d=0"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i], i);
}

/* Past COLLECT_ROUTE_RCPTS_MAX local recipients the rest are counted, not kept. */
TEST(bounded)
{
	static char hdr[16384];
	static struct collect_route_result r;
	struct collect_route_conf c;
	size_t used = (size_t)snprintf(hdr, sizeof hdr, "To: ");
	for (int i = 0; i < COLLECT_ROUTE_RCPTS_MAX + 5; i++)
		used += (size_t)snprintf(hdr + used, sizeof hdr - used, "%su%d@ours.example",
		                         i ? ",\r\n " : "", i);
	used += (size_t)snprintf(hdr + used, sizeof hdr - used, ", u0@ours.example\r\n");
	CHECK(used < sizeof hdr);
	collect_route_conf_defaults(&c);
	c.is_local = is_local;
	CHECK_INT(collect_route(&c, hdr, used, &r), COLLECT_ROUTE_TO_CC);
	CHECK_INT(r.n_rcpts, COLLECT_ROUTE_RCPTS_MAX);
	CHECK_INT(r.dropped, 5);
	CHECK_STR(r.rcpts[0], "u0@ours.example");
	CHECK_STR(r.rcpts[COLLECT_ROUTE_RCPTS_MAX - 1], "u99@ours.example");
}

/* is_local is asked once per new candidate, never for a duplicate of a recipient. */
TEST(is_local_calls)
{
	static struct collect_route_result r;
	struct collect_route_conf c;
	const char *hdr = "X-Rcpt-To: a@ours.example, A@ours.example, a@OURS.example\r\n";
	collect_route_conf_defaults(&c);
	c.is_local = is_local;
	local_calls = 0;
	CHECK_INT(collect_route(&c, hdr, strlen(hdr), &r), COLLECT_ROUTE_HEADER);
	CHECK_INT(local_calls, 1);
	c.is_local = NULL; /* none set: nothing is local */
	CHECK_INT(collect_route(&c, hdr, strlen(hdr), &r), COLLECT_ROUTE_NONE);
}

TEST(conf_headers)
{
	struct collect_route_conf c;
	char list[1024];
	collect_route_conf_defaults(&c);
	CHECK_INT(c.n_headers, 6);
	CHECK_STR(c.headers[0], "X-Rcpt-To");
	CHECK_STR(c.headers[5], "X-Envelope-To");
	CHECK(c.parse_received && c.parse_to_cc && c.received_by == NULL && c.is_local == NULL);

	snprintf(list, sizeof list, " X-A  X-B,X-C\t");
	CHECK_INT(collect_route_conf_headers(&c, list), 3);
	CHECK_STR(c.headers[0], "X-A");
	CHECK_STR(c.headers[1], "X-B");
	CHECK_STR(c.headers[2], "X-C");
	snprintf(list, sizeof list, "%s", "");
	CHECK_INT(collect_route_conf_headers(&c, list), 0);
	CHECK_INT(c.n_headers, 0);
	snprintf(list, sizeof list, "X-A X:B");
	CHECK_INT(collect_route_conf_headers(&c, list), -1);
	snprintf(list, sizeof list, "X-A \x7f");
	CHECK_INT(collect_route_conf_headers(&c, list), -1);
	size_t used = 0;
	for (int i = 0; i <= COLLECT_ROUTE_HEADERS_MAX; i++)
		used += (size_t)snprintf(list + used, sizeof list - used, "H%d ", i);
	CHECK_INT(collect_route_conf_headers(&c, list), -1);
}

TEST(rule_names)
{
	CHECK_STR(collect_route_rule_name(COLLECT_ROUTE_HEADER), "header");
	CHECK_STR(collect_route_rule_name(COLLECT_ROUTE_RECEIVED), "received");
	CHECK_STR(collect_route_rule_name(COLLECT_ROUTE_TO_CC), "to-cc");
	CHECK_STR(collect_route_rule_name(COLLECT_ROUTE_NONE), "none");
}

TEST_MAIN(T(one_case_per_rule), T(precedence), T(bcc_and_to_cc), T(received_trust),
          T(addresses_case_and_runs), T(malformed_headers), T(bounded), T(is_local_calls),
          T(conf_headers), T(rule_names))
