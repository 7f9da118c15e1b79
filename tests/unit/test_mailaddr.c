/* Unit tests for proto/mailaddr: RFC 5321 4.1.2 Mailbox syntax and 4.5.3.1 limits. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proto/mailaddr.h"

struct exact_case {
	const char *in;
	enum mailaddr_result want;
	const char *local; /* expected spans when MAILADDR_OK */
	const char *domain;
	int quoted;
	int literal;
};

static const struct exact_case exact_cases[] = {
        {"arvel@example.com", MAILADDR_OK, "arvel", "example.com", 0, 0},
        {"Arvel@Example.COM", MAILADDR_OK, "Arvel", "Example.COM", 0, 0},
        {"a@b", MAILADDR_OK, "a", "b", 0, 0},
        {"postmaster@localhost", MAILADDR_OK, "postmaster", "localhost", 0, 0},
        {"first.last@sub.example.co.uk", MAILADDR_OK, "first.last", "sub.example.co.uk", 0, 0},
        {"x!#$%&'*+-/=?^_`{|}~y@example.com", MAILADDR_OK, "x!#$%&'*+-/=?^_`{|}~y", "example.com",
         0, 0},
        {"user+tag@my-host.example", MAILADDR_OK, "user+tag", "my-host.example", 0, 0},
        {"u@1a.2b-3", MAILADDR_OK, "u", "1a.2b-3", 0, 0},
        {"\"arvel smith\"@example.com", MAILADDR_OK, "\"arvel smith\"", "example.com", 1, 0},
        {"\"john..doe\"@example.com", MAILADDR_OK, "\"john..doe\"", "example.com", 1, 0},
        {"\"a\\\"b\\\\c\"@example.com", MAILADDR_OK, "\"a\\\"b\\\\c\"", "example.com", 1, 0},
        {"\"a@b\"@example.com", MAILADDR_OK, "\"a@b\"", "example.com", 1, 0},
        {"\"\\ \"@example.com", MAILADDR_OK, "\"\\ \"", "example.com", 1, 0},
        {"\"\"@example.com", MAILADDR_OK, "\"\"", "example.com", 1, 0},
        {"user@[192.0.2.1]", MAILADDR_OK, "user", "[192.0.2.1]", 0, 1},
        {"user@[255.255.255.255]", MAILADDR_OK, "user", "[255.255.255.255]", 0, 1},
        {"user@[IPv6:2001:db8::1]", MAILADDR_OK, "user", "[IPv6:2001:db8::1]", 0, 1},
        {"user@[ipv6:::1]", MAILADDR_OK, "user", "[ipv6:::1]", 0, 1},
        {"user@[IPv6:1:2:3:4:5:6:7:8]", MAILADDR_OK, "user", "[IPv6:1:2:3:4:5:6:7:8]", 0, 1},
        {"user@[IPv6:::ffff:192.0.2.1]", MAILADDR_OK, "user", "[IPv6:::ffff:192.0.2.1]", 0, 1},
        {"user@[IPv6:1:2:3:4:5:6:1.2.3.4]", MAILADDR_OK, "user", "[IPv6:1:2:3:4:5:6:1.2.3.4]", 0,
         1},
        {"user@[IPv6:1:2:3::6:7:8]", MAILADDR_OK, "user", "[IPv6:1:2:3::6:7:8]", 0, 1},

        {"", MAILADDR_EMPTY, NULL, NULL, 0, 0},
        {"arvel", MAILADDR_NO_AT, NULL, NULL, 0, 0},
        {"\"arvel smith\"", MAILADDR_NO_AT, NULL, NULL, 0, 0},
        {"arvel example.com", MAILADDR_NO_AT, NULL, NULL, 0, 0},
        {"@example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"arvel@", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@b@c", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"<arvel@example.com>", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"arvel@example.com>", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {" arvel@example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"arvel@example.com ", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"john..doe@example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {".john@example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"john.@example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"arvel smith@example.com", MAILADDR_NO_AT, NULL, NULL, 0, 0},
        {"a\"b@example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a(b)@example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a,b@example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"\"unterminated@example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"\"a\\", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@example..com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@.example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@example.com.", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@-example.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@example-.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@exa_mple.com", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[192.0.2.256]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[192.0.2]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[192.0.2.1.5]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[1920.0.2.1]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[192.0.2.1", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[example.com]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[IPv6:1:2:3:4:5:6:7]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[IPv6:1:2:3:4:5:6:7:8:9]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[IPv6:1::2::3]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[IPv6:1:2:3:4:5:6:7::]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[IPv6:12345::1]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[IPv6:g::1]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[IPv6::1]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[IPv6:1:]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[IPv6:1.2.3.4]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a@[tag:content]", MAILADDR_SYNTAX, NULL, NULL, 0, 0},
        {"a\tb@example.com", MAILADDR_8BIT, NULL, NULL, 0, 0},
        {"ab@exam\x01ple.com", MAILADDR_8BIT, NULL, NULL, 0, 0},
        {"ab@example.com\r\n", MAILADDR_8BIT, NULL, NULL, 0, 0},
        {"\"a\tb\"@example.com", MAILADDR_8BIT, NULL, NULL, 0, 0},
        {"\"a\\\x7f\"@example.com", MAILADDR_8BIT, NULL, NULL, 0, 0},
        {"j\xc3\xb6rg@example.com", MAILADDR_8BIT, NULL, NULL, 0, 0},
        {"jorg@ex\xc3\xa4mple.com", MAILADDR_8BIT, NULL, NULL, 0, 0},
        {"\"j\xc3\xb6rg\"@example.com", MAILADDR_8BIT, NULL, NULL, 0, 0},
        {"a\x7f@example.com", MAILADDR_8BIT, NULL, NULL, 0, 0},
        {"a@[192.0.2.\x01]", MAILADDR_8BIT, NULL, NULL, 0, 0},
};

TEST(parse_exact_table)
{
	for (size_t i = 0; i < sizeof exact_cases / sizeof exact_cases[0]; i++) {
		const struct exact_case *c = &exact_cases[i];
		struct mailaddr a;
		enum mailaddr_result r = mailaddr_parse_exact(c->in, strlen(c->in), &a);
		if (!CHECK_INT(r, c->want)) {
			CHECK_STR(c->in, "(case above)");
			continue;
		}
		if (r != MAILADDR_OK)
			continue;
		CHECK_MEM(a.local, a.local_len, c->local, strlen(c->local));
		CHECK_MEM(a.domain, a.domain_len, c->domain, strlen(c->domain));
		CHECK_INT(a.quoted, c->quoted);
		CHECK_INT(a.literal, c->literal);
		CHECK(a.local == c->in);
	}
}

/* mailaddr_parse stops at the first octet that cannot continue the mailbox. */
TEST(parse_prefix_stops)
{
	static const struct {
		const char *in;
		size_t consumed;
	} cases[] = {
	        {"arvel@example.com d=xyz", 17},
	        {"\"arvel smith\"@example.com d=xyz", 25},
	        {"\"a b\"@c foo=bar", 7},
	        {"a@b@c", 3},
	        {"a@example.com>", 13},
	        {"a@example.com\t", 13},
	        {"a@[192.0.2.1] x", 13},
	        {"a@b,c", 3},
	        {"a@b\xff", 3},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mailaddr a;
		size_t used = 99;
		enum mailaddr_result r =
		        mailaddr_parse(cases[i].in, strlen(cases[i].in), &used, &a);
		CHECK_INT(r, MAILADDR_OK);
		CHECK_INT(used, cases[i].consumed);
		CHECK_INT(a.local_len + 1 + a.domain_len, cases[i].consumed);
	}
}

TEST(parse_does_not_read_past_len)
{
	/* The buffer continues, but only "a@b" is given. */
	const char buf[] = "a@bcdef.ghi";
	struct mailaddr a;
	size_t used;
	CHECK_INT(mailaddr_parse(buf, 3, &used, &a), MAILADDR_OK);
	CHECK_INT(used, 3);
	CHECK_INT(a.domain_len, 1);
	CHECK_INT(mailaddr_parse_exact("\"a b\"@x", 4, &a), MAILADDR_SYNTAX);
}

static void make_addr(char *buf, size_t local, size_t domain)
{
	size_t o = 0;
	for (size_t i = 0; i < local; i++)
		buf[o++] = 'l';
	buf[o++] = '@';
	/* Labels of 9 letters and a dot, then letters, so the domain is syntactically valid. */
	for (size_t i = 0; i < domain; i++)
		buf[o++] = (i % 10 == 9 && i + 1 < domain) ? '.' : 'd';
	buf[o] = '\0';
}

TEST(length_limits)
{
	char buf[400];
	struct mailaddr a;

	make_addr(buf, 64, 10);
	CHECK_INT(mailaddr_parse_exact(buf, strlen(buf), &a), MAILADDR_OK);
	CHECK_INT(a.local_len, 64);
	make_addr(buf, 65, 10);
	CHECK_INT(mailaddr_parse_exact(buf, strlen(buf), &a), MAILADDR_LOCAL_TOO_LONG);
	make_addr(buf, 5, 255);
	CHECK_INT(mailaddr_parse_exact(buf, strlen(buf), &a), MAILADDR_OK);
	CHECK_INT(a.domain_len, 255);
	make_addr(buf, 5, 256);
	CHECK_INT(mailaddr_parse_exact(buf, strlen(buf), &a), MAILADDR_DOMAIN_TOO_LONG);
	make_addr(buf, 64, 255);
	CHECK_INT(strlen(buf), MAILADDR_MAX);
	CHECK_INT(mailaddr_parse_exact(buf, strlen(buf), &a), MAILADDR_OK);

	/* Quoted local parts count their quotes (the octets as written). */
	memset(buf, 'q', 62);
	buf[0] = '"';
	buf[61] = '"';
	strcpy(buf + 62, "@x");
	CHECK_INT(mailaddr_parse_exact(buf, strlen(buf), &a), MAILADDR_OK);
	memset(buf, 'q', 66);
	buf[0] = '"';
	buf[64] = '"';
	strcpy(buf + 65, "@x");
	CHECK_INT(mailaddr_parse_exact(buf, strlen(buf), &a), MAILADDR_LOCAL_TOO_LONG);
}

TEST(key_lower_cases_ascii)
{
	static const struct {
		const char *in, *key;
	} cases[] = {
	        {"Arvel@Example.COM", "arvel@example.com"},
	        {"arvel@example.com", "arvel@example.com"},
	        {"\"Arvel Smith\"@EXAMPLE.com", "\"arvel smith\"@example.com"},
	        {"USER@[IPv6:2001:DB8::1]", "user@[ipv6:2001:db8::1]"},
	        {"A_Z{|}~@Z", "a_z{|}~@z"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mailaddr a;
		char key[MAILADDR_MAX + 1];
		if (!CHECK_INT(mailaddr_parse_exact(cases[i].in, strlen(cases[i].in), &a),
		               MAILADDR_OK))
			continue;
		CHECK_INT(mailaddr_key(&a, key, sizeof key), strlen(cases[i].key));
		CHECK_STR(key, cases[i].key);
	}
}

TEST(key_buffer_limits)
{
	struct mailaddr a;
	char key[8];

	CHECK_INT(mailaddr_parse_exact("ab@cd.ef", 8, &a), MAILADDR_OK);
	CHECK_INT(mailaddr_key(&a, key, 8), -1); /* 8 octets need 9 with the NUL */
	CHECK_INT(mailaddr_key(&a, key, 0), -1);
	CHECK_INT(mailaddr_parse_exact("ab@cd.e", 7, &a), MAILADDR_OK);
	CHECK_INT(mailaddr_key(&a, key, 8), 7);
	CHECK_STR(key, "ab@cd.e");
}

/* RFC 5321 4.5.1: the one "is postmaster" (path parser, RCPT policy, delivery). */
TEST(postmaster_local_part)
{
	static const struct {
		const char *local;
		int want;
	} cases[] = {
	        {"postmaster", 1},  {"PostMaster", 1}, {"POSTMASTER", 1},  {"\"postmaster\"", 0},
	        {"postmaster2", 0}, {"postmaste", 0},  {"post.master", 0}, {"", 0},
	        {"postmaster ", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!CHECK_INT(mailaddr_is_postmaster(cases[i].local, strlen(cases[i].local)),
		               cases[i].want))
			fprintf(stderr, "    for %s\n", cases[i].local);
	/* Spans from the parser: a quoted local part keeps its quotes. */
	struct mailaddr a;
	CHECK_INT(mailaddr_parse_exact("\"postmaster\"@example.com", 24, &a), MAILADDR_OK);
	CHECK_INT(mailaddr_is_postmaster(a.local, a.local_len), 0);
	CHECK_INT(mailaddr_parse_exact("Postmaster@example.com", 22, &a), MAILADDR_OK);
	CHECK_INT(mailaddr_is_postmaster(a.local, a.local_len), 1);
	/* The length is honoured: no NUL needed. */
	CHECK_INT(mailaddr_is_postmaster("postmasterX", 10), 1);
	CHECK_INT(mailaddr_is_postmaster(NULL, 0), 0);
}

TEST(strerror_names_every_result)
{
	const enum mailaddr_result all[] = {
	        MAILADDR_OK,    MAILADDR_EMPTY,          MAILADDR_SYNTAX,
	        MAILADDR_NO_AT, MAILADDR_LOCAL_TOO_LONG, MAILADDR_DOMAIN_TOO_LONG,
	        MAILADDR_8BIT};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		const char *s = mailaddr_strerror(all[i]);
		CHECK(s != NULL && s[0] != '\0');
		for (size_t k = 0; k < i; k++)
			CHECK(strcmp(s, mailaddr_strerror(all[k])) != 0);
	}
	CHECK_STR(mailaddr_strerror((enum mailaddr_result)99), "unknown error");
}

TEST(every_single_octet_prefix)
{
	/* Each octet value in the local part: atext passes, everything else is refused. */
	const char *atext_specials = "!#$%&'*+-/=?^_`{|}~";
	for (int c = 0; c < 256; c++) {
		char buf[8] = {'a', (char)c, 'b', '@', 'x', 0};
		struct mailaddr a;
		int is_atext = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		               (c >= '0' && c <= '9') || (c != 0 && strchr(atext_specials, c));
		enum mailaddr_result r = mailaddr_parse_exact(buf, 5, &a);
		if (is_atext || c == '.')
			CHECK_INT(r, MAILADDR_OK);
		else if (c < 0x20 || c > 0x7e)
			CHECK_INT(r, MAILADDR_8BIT);
		else
			CHECK(r == MAILADDR_SYNTAX || r == MAILADDR_NO_AT);
	}
}

TEST_MAIN(T(postmaster_local_part), T(parse_exact_table), T(parse_prefix_stops),
          T(parse_does_not_read_past_len), T(length_limits), T(key_lower_cases_ascii),
          T(key_buffer_limits), T(strerror_names_every_result), T(every_single_octet_prefix))
