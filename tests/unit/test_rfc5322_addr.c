/*
 * Unit tests for proto/rfc5322_addr: the address-list iterator (groups, quoted
 * names, comments, encoded words, obsolete forms, spans) and the list wrapper the
 * AUTH From: rule uses.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proto/rfc5322_addr.h"

/*
 * Renders every result of iterating over in: a mailbox as its addr-spec, a
 * skipped element as "!", the fault as "BAD", separated by '|'.
 */
static void render(const char *in, char *out, size_t outsz)
{
	struct rfc5322_addr_iter it;
	struct rfc5322_mailbox m;
	char buf[256];
	enum rfc5322_addr_result r;
	size_t used = 0;
	out[0] = '\0';
	rfc5322_addr_iter_init(&it, in, strlen(in));
	for (int guard = 0; guard < 50; guard++) {
		const char *piece;
		r = rfc5322_addr_next(&it, buf, sizeof buf, &m);
		if (r == RFC5322_ADDR_END)
			break;
		piece = r == RFC5322_ADDR_MAILBOX   ? m.addr
		        : r == RFC5322_ADDR_SKIPPED ? "!"
		                                    : "BAD";
		used += (size_t)snprintf(out + used, outsz - used, "%s%s", used ? "|" : "", piece);
		if (r == RFC5322_ADDR_BAD || used >= outsz)
			break;
	}
}

TEST(iterate_table)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	        {"", ""},
	        {"  \r\n\t", ""},
	        {"a@b.example", "a@b.example"},
	        {"a@b, c@d", "a@b|c@d"},
	        {"Bob <bob@x.example>", "bob@x.example"},
	        {"\"Doe, John\" <jd@x>, c@d", "jd@x|c@d"},
	        {"\"a\\\"b\" <q@x>", "q@x"},
	        {"<bob@x> (Bob)", "bob@x"},
	        {"bob@x (Bob, the <boss@y>)", "bob@x"},
	        {"(a (nested) comment) bob@x", "bob@x"},
	        {"Team: a@x, b@x;, c@x", "a@x|b@x|c@x"},
	        {"undisclosed-recipients:;", ""},
	        {"undisclosed-recipients:;, a@x", "a@x"},
	        {"Team: a@x, b@x", "a@x|b@x"}, /* group left open at the end: tolerated */
	        {"a@x,, ,b@x,", "a@x|b@x"}, /* obs-addr-list empty elements */
	        {"<@r1.example,@r2.example:u@d>", "u@d"}, /* obs-route */
	        {"john . doe @ example . com", "john.doe@example.com"}, /* obs-local-part */
	        {"John Q. Public <jqp@x>", "jqp@x"}, /* obs-phrase */
	        {"\"john doe\"@x", "\"john doe\"@x"},
	        {"\"a\r\n b\"@x", "\"a b\"@x"}, /* folding in a quoted string */
	        {"u@[IPv6:::1]", "u@[IPv6:::1]"}, /* ':' in a domain literal is not a group */
	        {"<u@[1.2.3.4]>", "u@[1.2.3.4]"},
	        {"Bob\r\n <bob@x>", "bob@x"},
	        {"=?utf-8?q?Doe,_John?= <jd@x>", "jd@x"}, /* ',' inside an encoded word */
	        {"=?utf-8?q?<evil@x>?= <jd@x>", "jd@x"},
	        {"=?utf-8?q?a:b?= <jd@x>", "jd@x"},
	        {"=?utf-8?b?Qm9i?= =?utf-8?q?_D?= <bd@x>", "bd@x"},
	        {"=?utf-8?q?evil@x?=", "!"}, /* an encoded word is not an addr-spec */
	        {"Bob bob@x", "!"}, /* a phrase without an angle address */
	        {"Bob bob@x, c@d", "!|c@d"},
	        {"undisclosed recipients", "!"},
	        {"<>", "!"},
	        {"<a@x> <b@x>", "!"},
	        {"<a@x> Bob", "!"},
	        {"a]b@x", "!"},
	        {"a)b@x, c@d", "!|c@d"},
	        {"a\\\\b@x", "!"},
	        {"\"a\\\r\n b\"@x", "!"},
	        {"u@[ 1.2.3.4 ]", "u@[1.2.3.4]"},
	        {"\"unterminated@x", "BAD"},
	        {"(unterminated bob@x", "BAD"},
	        {"<bob@x", "BAD"},
	        {"a@x, bob@x>", "a@x|BAD"},
	        {"a@x; b@x", "a@x|b@x"}, /* ';' outside a group: a separator */
	        {"g1: g2: a@x;;", "BAD"},
	        {"a@x, <b@x>: c@x;", "a@x|BAD"},
	        {"=?x", "=?x"}, /* not an encoded word: an atom */
	        {"a.=?x?q?y?=@d", "a.=?x?q?y?=@d"}, /* '=' and '?' are atext */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[512];
		render(cases[i].in, out, sizeof out);
		if (!CHECK_STR(out, cases[i].want))
			fprintf(stderr, "  case %zu: %s\n", i, cases[i].in);
	}
}

/* Where each mailbox was: element, addr-spec and display name spans. */
TEST(spans)
{
	const char *v = " Bob (x) <bob@x> , \"Al\" <al@y>,c@z (C) ,G: d@w;";
	struct rfc5322_addr_iter it;
	struct rfc5322_mailbox m;
	char buf[64];
	rfc5322_addr_iter_init(&it, v, strlen(v));

	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_MAILBOX);
	CHECK_MEM(v + m.start, m.end - m.start, "Bob (x) <bob@x>", 15);
	CHECK_MEM(v + m.spec_start, m.spec_end - m.spec_start, "bob@x", 5);
	CHECK_MEM(v + m.name_start, m.name_end - m.name_start, "Bob", 3);
	CHECK(m.angle && !m.in_group);

	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_MAILBOX);
	CHECK_MEM(v + m.name_start, m.name_end - m.name_start, "\"Al\"", 4);
	CHECK_STR(m.addr, "al@y");

	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_MAILBOX);
	CHECK_MEM(v + m.start, m.end - m.start, "c@z (C)", 7);
	CHECK_MEM(v + m.spec_start, m.spec_end - m.spec_start, "c@z", 3);
	CHECK(!m.angle && m.name_start == m.name_end);

	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_MAILBOX);
	CHECK_STR(m.addr, "d@w");
	CHECK(m.in_group);
	CHECK_INT(m.addr_len, 3);
	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_END);
	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_END);
}

/* An addr-spec that does not fit is skipped; the next one is still read. */
TEST(too_long_is_skipped)
{
	const char *v = "abcdefghijklmnop@x, a@b";
	struct rfc5322_addr_iter it;
	struct rfc5322_mailbox m;
	char buf[8];
	rfc5322_addr_iter_init(&it, v, strlen(v));
	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_SKIPPED);
	CHECK(m.addr == NULL);
	CHECK_MEM(v + m.start, m.end - m.start, "abcdefghijklmnop@x", 18);
	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_MAILBOX);
	CHECK_STR(m.addr, "a@b");
	CHECK_INT(rfc5322_addr_next(&it, buf, 0, &m), RFC5322_ADDR_BAD);
}

/* After a fault every call says so. */
TEST(bad_sticks)
{
	const char *v = "\"x, a@b";
	struct rfc5322_addr_iter it;
	struct rfc5322_mailbox m;
	char buf[64];
	rfc5322_addr_iter_init(&it, v, strlen(v));
	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_BAD);
	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_BAD);
}

/* NUL octets are data, never an end. */
TEST(nul_octets)
{
	const char v[] = "a\0b@x, c@d";
	struct rfc5322_addr_iter it;
	struct rfc5322_mailbox m;
	char buf[64];
	rfc5322_addr_iter_init(&it, v, sizeof v - 1);
	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_MAILBOX);
	CHECK_MEM(m.addr, m.addr_len, "a\0b@x", 5);
	CHECK_INT(rfc5322_addr_next(&it, buf, sizeof buf, &m), RFC5322_ADDR_MAILBOX);
	CHECK_STR(m.addr, "c@d");
}

/* The wrapper the AUTH From: rule uses: all or nothing. */
TEST(list_wrapper)
{
	char buf[64];
	const char *addrs[4];
	const char *v = "A <a@x>, b@y";
	CHECK_INT(rfc5322_addr_list(v, strlen(v), buf, sizeof buf, addrs, 4), 2);
	CHECK_STR(addrs[0], "a@x");
	CHECK_STR(addrs[1], "b@y");
	CHECK_INT(rfc5322_addr_list(v, strlen(v), buf, sizeof buf, addrs, 1), -1);
	CHECK_INT(rfc5322_addr_list(v, strlen(v), buf, 6, addrs, 4), -1);
	CHECK_INT(rfc5322_addr_list("", 0, buf, sizeof buf, addrs, 4), 0);
	CHECK_INT(rfc5322_addr_list("Bob bob@x", 9, buf, sizeof buf, addrs, 4), -1);
	CHECK_INT(rfc5322_addr_list("<a@x", 4, buf, sizeof buf, addrs, 4), -1);
	CHECK_INT(rfc5322_addr_list("a@x", 3, buf, 0, addrs, 4), -1);
}

TEST_MAIN(T(iterate_table), T(spans), T(too_long_is_skipped), T(bad_sticks), T(nul_octets),
          T(list_wrapper))
