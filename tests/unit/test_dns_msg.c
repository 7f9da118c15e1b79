/*
 * Unit tests for proto/dns_msg: the query format (RFC 1035 4.1), header and
 * question parsing, matching a reply to its query, name decoding with
 * compression (RFC 1035 4.1.4) and every way a hostile name can be malformed,
 * the record walk, and MX / CNAME rdata.
 */
#include <stdio.h>
#include <string.h>

#include "dns_build.h"
#include "harness.h"
#include "proto/dns_msg.h"

TEST(query_format_exact)
{
	static const uint8_t want[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0,   0,   0,
	                               0,    0,    7,    'e',  'x', 'a', 'm', 'p', 'l', 'e',
	                               3,    'c',  'o',  'm',  0,   0,   15,  0,   1};
	uint8_t out[DNS_QUERY_MAX];
	int n = dns_msg_query_format(out, sizeof out, 0x1234, "example.com", DNS_TYPE_MX);
	CHECK_MEM(out, (size_t)(n < 0 ? 0 : n), want, sizeof want);
	/* A final dot is the same name. */
	n = dns_msg_query_format(out, sizeof out, 0x1234, "example.com.", DNS_TYPE_MX);
	CHECK_MEM(out, (size_t)(n < 0 ? 0 : n), want, sizeof want);
	/* Exactly enough room, and one octet less. */
	CHECK_INT(dns_msg_query_format(out, sizeof want, 0x1234, "example.com", DNS_TYPE_MX),
	          sizeof want);
	CHECK_INT(dns_msg_query_format(out, sizeof want - 1, 0x1234, "example.com", DNS_TYPE_MX),
	          -1);
}

struct qname_case {
	const char *name;
	int want; /* length, or -1 */
};

#define L63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define L61 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct qname_case qname_cases[] = {
        {"", 17},
        {".", 17},
        {"a", 19},
        {"mx-1.example_x.com", 12 + 20 + 4},
        {L63 ".com", 12 + 69 + 4},
        {L63 "a.com", -1}, /* 64-octet label */
        {L63 "." L63 "." L63 "." L61, DNS_QUERY_MAX}, /* 253 octets: the longest */
        {L63 "." L63 "." L63 "." L61 "a", -1}, /* 254 */
        {"a..b", -1},
        {".a", -1},
        {"a..", -1},
        {"..", -1},
        {"a b.com", -1},
        {"a\n.com", -1},
        {"\xc3\xa9.com", -1},
        {"a.com\\", -1},
};

TEST(query_format_names)
{
	for (size_t i = 0; i < sizeof qname_cases / sizeof qname_cases[0]; i++) {
		uint8_t out[DNS_QUERY_MAX + 10];
		int n = dns_msg_query_format(out, sizeof out, 1, qname_cases[i].name, DNS_TYPE_A);
		if (!CHECK_INT(n, qname_cases[i].want))
			fprintf(stderr, "     name #%zu\n", i);
	}
}

TEST(parse_header_and_question)
{
	struct dnsb b;
	struct dns_msg m;
	dnsb_header(&b, 0xbeef, 0x8583, 1, 0, 1, 0); /* QR AA RD RA, NXDOMAIN */
	dnsb_question(&b, "Mail.Example.COM", DNS_TYPE_MX);
	CHECK(!b.bad);
	CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
	CHECK_INT(m.id, 0xbeef);
	CHECK_INT(m.qr, 1);
	CHECK_INT(m.opcode, 0);
	CHECK_INT(m.aa, 1);
	CHECK_INT(m.tc, 0);
	CHECK_INT(m.rd, 1);
	CHECK_INT(m.ra, 1);
	CHECK_INT(m.rcode, DNS_RCODE_NXDOMAIN);
	CHECK_INT(m.qdcount, 1);
	CHECK_INT(m.nscount, 1);
	CHECK_STR(m.qname, "mail.example.com");
	CHECK_INT(m.qname_ok, 1);
	CHECK_INT(m.qtype, DNS_TYPE_MX);
	CHECK_INT(m.qclass, DNS_CLASS_IN);
	CHECK_INT(m.rr_off, b.len);
	/* TC and opcode bits. */
	b.buf[2] = 0x80 | (2 << 3) | 0x02;
	CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
	CHECK_INT(m.tc, 1);
	CHECK_INT(m.opcode, 2);
	/* Shorter than a header, or a question cut short: refused. */
	CHECK_INT(dns_msg_parse(b.buf, 11, &m), -1);
	CHECK_INT(dns_msg_parse(b.buf, b.len - 1, &m), -1);
	CHECK_INT(dns_msg_parse(b.buf, 12 + 3, &m), -1);
	/* No question: parses, but answers nothing. */
	dnsb_header(&b, 1, 0x8180, 0, 0, 0, 0);
	CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
	CHECK_STR(m.qname, "");
	CHECK_INT(dns_msg_is_reply_to(&m, 1, "", DNS_TYPE_MX), 0);
	/* qdcount larger than what follows. */
	dnsb_header(&b, 1, 0x8180, 3, 0, 0, 0);
	dnsb_question(&b, "a.b", DNS_TYPE_MX);
	CHECK_INT(dns_msg_parse(b.buf, b.len, &m), -1);
}

/* How a reply is changed before matching it to the query (id 7, "example.com", MX). */
enum mutation {
	MUT_NONE,
	MUT_ID,
	MUT_NOT_REPLY,
	MUT_OPCODE,
	MUT_QNAME,
	MUT_QNAME_CASE,
	MUT_QNAME_DOT,
	MUT_QTYPE,
	MUT_QCLASS,
	MUT_TWO_QUESTIONS,
	MUT_ODD_QNAME,
};

static const struct {
	enum mutation mut;
	int want;
} match_cases[] = {
        {MUT_NONE, 1},          {MUT_ID, 0},        {MUT_NOT_REPLY, 0},
        {MUT_OPCODE, 0},        {MUT_QNAME, 0},     {MUT_QNAME_CASE, 1},
        {MUT_QNAME_DOT, 1},     {MUT_QTYPE, 0},     {MUT_QCLASS, 0},
        {MUT_TWO_QUESTIONS, 0}, {MUT_ODD_QNAME, 0},
};

TEST(reply_matching)
{
	for (size_t i = 0; i < sizeof match_cases / sizeof match_cases[0]; i++) {
		enum mutation mut = match_cases[i].mut;
		struct dnsb b;
		struct dns_msg m;
		unsigned flags = mut == MUT_NOT_REPLY ? 0x0100
		                 : mut == MUT_OPCODE  ? 0x8980
		                                      : 0x8180;
		dnsb_header(&b, mut == MUT_ID ? 8 : 7, flags, mut == MUT_TWO_QUESTIONS ? 2 : 1, 0,
		            0, 0);
		const char *q = mut == MUT_QNAME        ? "example.net"
		                : mut == MUT_QNAME_CASE ? "EXAMPLE.Com"
		                : mut == MUT_ODD_QNAME  ? "exa mple.com"
		                                        : "example.com";
		dnsb_name(&b, q);
		dnsb_u16(&b, mut == MUT_QTYPE ? DNS_TYPE_A : DNS_TYPE_MX);
		dnsb_u16(&b, mut == MUT_QCLASS ? 3 : DNS_CLASS_IN);
		if (mut == MUT_TWO_QUESTIONS)
			dnsb_question(&b, "example.com", DNS_TYPE_MX);
		CHECK(!b.bad);
		CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
		const char *asked = mut == MUT_QNAME_DOT ? "example.com." : "example.com";
		if (!CHECK_INT(dns_msg_is_reply_to(&m, 7, asked, DNS_TYPE_MX), match_cases[i].want))
			fprintf(stderr, "     mutation %d\n", (int)mut);
	}
}

struct name_case {
	const char *what;
	const uint8_t *bytes;
	size_t len, off;
	int want;
	const char *text;
	size_t end;
};

/* "example.com" at 0; "mail" + pointer to 0 at 13; "a" + pointer to 13 at 20. */
static const uint8_t chain[] = {7, 'e', 'x', 'a', 'm', 'p', 'l',  'e', 3, 'c', 'o',  'm',
                                0, 4,   'm', 'a', 'i', 'l', 0xc0, 0,   1, 'a', 0xc0, 13};
static const uint8_t forward_ptr[] = {0xc0, 2, 1, 'a', 0};
static const uint8_t self_ptr[] = {1, 'a', 0xc0, 0};
static const uint8_t into_itself[] = {1, 'a', 1, 'b', 0xc0, 2};
static const uint8_t ptr_loop[] = {1, 'a', 0xc0, 4, 0xc0, 0, 0xc0, 2};
/* At 9 a pointer to 5; there a label, then a pointer to 6: after 5, so refused. */
static const uint8_t into_prev[] = {0, 0, 0, 0, 0, 1, 0, 0xc0, 6, 0xc0, 5};
static const uint8_t ptr_cut[] = {1, 'a', 0xc0};
static const uint8_t label_cut[] = {5, 'a', 'b'};
static const uint8_t no_end[] = {1, 'a', 1, 'b'};
static const uint8_t ext_label[] = {0x41, 'a', 0};
static const uint8_t ext_label2[] = {0x80, 'a', 0};
static const uint8_t upper[] = {3, 'W', 'w', 'W', 2, 'E', 'x', 0};
static const uint8_t dot_in_label[] = {3, 'a', '.', 'b', 3, 'c', 'o', 'm', 0};
static const uint8_t nul_in_label[] = {3, 'a', 0, 'b', 0};
static const uint8_t space_in_label[] = {3, 'a', ' ', 'b', 0};
static const uint8_t high_in_label[] = {2, 0xc3, 0xa9, 0};
static const uint8_t star_label[] = {1, '*', 3, 'c', 'o', 'm', 0};
static const uint8_t root[] = {0};
static const uint8_t underscore[] = {5, '_', 's', 'm', 't', 'p', 0};

TEST(name_decode_table)
{
	const struct name_case cases[] = {
	        {"plain", chain, sizeof chain, 0, DNS_NAME_OK, "example.com", 13},
	        {"one pointer", chain, sizeof chain, 13, DNS_NAME_OK, "mail.example.com", 20},
	        {"two pointers", chain, sizeof chain, 20, DNS_NAME_OK, "a.mail.example.com", 24},
	        {"pointer first", chain, sizeof chain, 22, DNS_NAME_OK, "mail.example.com", 24},
	        {"forward pointer", forward_ptr, sizeof forward_ptr, 0, DNS_NAME_MALFORMED, "", 0},
	        {"pointer to itself", self_ptr, sizeof self_ptr, 2, DNS_NAME_MALFORMED, "", 0},
	        {"pointer into the name", into_itself, sizeof into_itself, 0, DNS_NAME_MALFORMED,
	         "", 0},
	        {"pointer loop", ptr_loop, sizeof ptr_loop, 6, DNS_NAME_MALFORMED, "", 0},
	        {"pointer not before the last", into_prev, sizeof into_prev, 9, DNS_NAME_MALFORMED,
	         "", 0},
	        {"pointer cut", ptr_cut, sizeof ptr_cut, 0, DNS_NAME_MALFORMED, "", 0},
	        {"label cut", label_cut, sizeof label_cut, 0, DNS_NAME_MALFORMED, "", 0},
	        {"no terminator", no_end, sizeof no_end, 0, DNS_NAME_MALFORMED, "", 0},
	        {"offset past end", root, sizeof root, 1, DNS_NAME_MALFORMED, "", 0},
	        {"extended label 01", ext_label, sizeof ext_label, 0, DNS_NAME_MALFORMED, "", 0},
	        {"extended label 10", ext_label2, sizeof ext_label2, 0, DNS_NAME_MALFORMED, "", 0},
	        {"upper case folded", upper, sizeof upper, 0, DNS_NAME_OK, "www.ex", 8},
	        {"dot in a label", dot_in_label, sizeof dot_in_label, 0, DNS_NAME_ODD, "", 9},
	        {"NUL in a label", nul_in_label, sizeof nul_in_label, 0, DNS_NAME_ODD, "", 5},
	        {"space in a label", space_in_label, sizeof space_in_label, 0, DNS_NAME_ODD, "", 5},
	        {"8-bit label", high_in_label, sizeof high_in_label, 0, DNS_NAME_ODD, "", 4},
	        {"wildcard label", star_label, sizeof star_label, 0, DNS_NAME_ODD, "", 7},
	        {"root", root, sizeof root, 0, DNS_NAME_OK, "", 1},
	        {"underscore", underscore, sizeof underscore, 0, DNS_NAME_OK, "_smtp", 7},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct name_case *c = &cases[i];
		char out[DNS_NAME_BUFSZ];
		size_t end = 0;
		memset(out, 'Z', sizeof out);
		int r = dns_name_decode(c->bytes, c->len, c->off, out, &end);
		int ok = CHECK_INT(r, c->want);
		ok &= CHECK_STR(out, c->text);
		if (c->want != DNS_NAME_MALFORMED)
			ok &= CHECK_INT(end, c->end);
		if (!ok)
			fprintf(stderr, "     case '%s'\n", c->what);
	}
}

/* Writes a name of nlabels labels of lablen octets each ("aaa.aaa...") at b. */
static void long_name(struct dnsb *b, int nlabels, int lablen)
{
	for (int i = 0; i < nlabels; i++) {
		dnsb_u8(b, (unsigned)lablen);
		for (int j = 0; j < lablen; j++)
			dnsb_u8(b, 'a');
	}
	dnsb_u8(b, 0);
}

TEST(name_length_limits)
{
	struct dnsb b;
	char out[DNS_NAME_BUFSZ];
	size_t end = 0;
	/* 3 x 63 + 61 with 4 length octets and the root: 255 on the wire, 253 as text. */
	b.len = 0;
	b.bad = 0;
	for (int i = 0; i < 3; i++) {
		dnsb_u8(&b, 63);
		for (int j = 0; j < 63; j++)
			dnsb_u8(&b, 'a');
	}
	dnsb_u8(&b, 61);
	for (int j = 0; j < 61; j++)
		dnsb_u8(&b, 'a');
	dnsb_u8(&b, 0);
	CHECK_INT(b.len, 255);
	CHECK_INT(dns_name_decode(b.buf, b.len, 0, out, &end), DNS_NAME_OK);
	CHECK_INT(strlen(out), 253);
	/* One more octet: 256 on the wire. */
	b.len = 0;
	long_name(&b, 4, 63);
	CHECK_INT(dns_name_decode(b.buf, b.len, 0, out, &end), DNS_NAME_MALFORMED);
	/* 128 one-octet labels: 257 on the wire. */
	b.len = 0;
	long_name(&b, 128, 1);
	CHECK_INT(dns_name_decode(b.buf, b.len, 0, out, &end), DNS_NAME_MALFORMED);
	/* 127 of them: 255, fine. */
	b.len = 0;
	long_name(&b, 127, 1);
	CHECK_INT(dns_name_decode(b.buf, b.len, 0, out, &end), DNS_NAME_OK);
	CHECK_INT(strlen(out), 253);
	/* The length limit counts the labels reached through pointers too. */
	b.len = 0;
	long_name(&b, 3, 63); /* 193 octets at 0 */
	size_t at = b.len;
	dnsb_u8(&b, 63);
	for (int j = 0; j < 63; j++)
		dnsb_u8(&b, 'b');
	dnsb_u16(&b, 0xc000);
	CHECK_INT(dns_name_decode(b.buf, b.len, at, out, &end), DNS_NAME_MALFORMED);
}

TEST(name_equal)
{
	CHECK(dns_name_equal("example.com", "EXAMPLE.com"));
	CHECK(dns_name_equal("example.com.", "example.com"));
	CHECK(dns_name_equal("example.com", "example.com."));
	CHECK(dns_name_equal("", "."));
	CHECK(!dns_name_equal("example.com", "example.co"));
	CHECK(!dns_name_equal("example.com", "xample.com"));
	CHECK(!dns_name_equal("example.com..", "example.com"));
	CHECK(!dns_name_equal("a", ""));
}

/* A reply to "example.com" MX with compressed MX and CNAME records in every section. */
static void build_reply(struct dnsb *b)
{
	dnsb_header(b, 9, DNSB_REPLY(0), 1, 3, 1, 1);
	dnsb_question(b, "example.com", DNS_TYPE_MX); /* the name is at 12 */
	dnsb_mx(b, "^12", 10, "mx1.^12");
	dnsb_mx(b, "^12", 20, ".");
	dnsb_cname(b, "www.^12", "^12");
	dnsb_mx(b, "^12", 5, "MX2.Example.Net");
	dnsb_a(b, "mx1.^12", 192, 0, 2, 1);
}

TEST(record_walk)
{
	struct dnsb b;
	struct dns_msg m;
	struct dns_rr_iter it;
	struct dns_rr rr;
	char name[DNS_NAME_BUFSZ];
	uint16_t pref = 0;
	build_reply(&b);
	CHECK(!b.bad);
	CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
	dns_rr_iter_init(&it, &m);

	CHECK_INT(dns_rr_next(&it, &rr), 1);
	CHECK_INT(rr.section, DNS_SECTION_ANSWER);
	CHECK_STR(rr.owner, "example.com");
	CHECK_INT(rr.type, DNS_TYPE_MX);
	CHECK_INT(rr.ttl, 300);
	CHECK_INT(dns_rr_mx(&m, &rr, &pref, name), DNS_NAME_OK);
	CHECK_INT(pref, 10);
	CHECK_STR(name, "mx1.example.com");
	CHECK_INT(dns_rr_cname(&m, &rr, name), DNS_NAME_MALFORMED); /* not a CNAME */

	CHECK_INT(dns_rr_next(&it, &rr), 1);
	CHECK_INT(dns_rr_mx(&m, &rr, &pref, name), DNS_NAME_OK);
	CHECK_INT(pref, 20);
	CHECK_STR(name, ""); /* the root: a null MX */

	CHECK_INT(dns_rr_next(&it, &rr), 1);
	CHECK_INT(rr.type, DNS_TYPE_CNAME);
	CHECK_STR(rr.owner, "www.example.com");
	CHECK_INT(dns_rr_cname(&m, &rr, name), DNS_NAME_OK);
	CHECK_STR(name, "example.com");
	CHECK_INT(dns_rr_mx(&m, &rr, &pref, name), DNS_NAME_MALFORMED); /* not an MX */

	CHECK_INT(dns_rr_next(&it, &rr), 1);
	CHECK_INT(rr.section, DNS_SECTION_AUTHORITY);
	CHECK_INT(dns_rr_mx(&m, &rr, &pref, name), DNS_NAME_OK);
	CHECK_STR(name, "mx2.example.net");

	CHECK_INT(dns_rr_next(&it, &rr), 1);
	CHECK_INT(rr.section, DNS_SECTION_ADDITIONAL);
	CHECK_INT(rr.type, DNS_TYPE_A);
	CHECK_INT(rr.rdlen, 4);
	CHECK_INT(b.buf[rr.rdata_off], 192);

	CHECK_INT(dns_rr_next(&it, &rr), 0);
	CHECK_INT(dns_rr_next(&it, &rr), 0);
}

TEST(record_walk_malformed)
{
	struct dnsb b;
	struct dns_msg m;
	struct dns_rr_iter it;
	struct dns_rr rr;
	/* More records announced than present. */
	build_reply(&b);
	b.buf[11] = 5; /* arcount */
	CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
	dns_rr_iter_init(&it, &m);
	int r, n = 0;
	while ((r = dns_rr_next(&it, &rr)) == 1)
		n++;
	CHECK_INT(r, -1);
	CHECK_INT(n, 5);
	CHECK_INT(dns_rr_next(&it, &rr), -1); /* stays malformed */

	/* An rdlength running past the end. */
	build_reply(&b);
	b.len -= 1;
	CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
	dns_rr_iter_init(&it, &m);
	n = 0;
	while ((r = dns_rr_next(&it, &rr)) == 1)
		n++;
	CHECK_INT(r, -1);
	CHECK_INT(n, 4);

	/* The fixed part of a record cut short. */
	dnsb_header(&b, 9, DNSB_REPLY(0), 1, 1, 0, 0);
	dnsb_question(&b, "example.com", DNS_TYPE_MX);
	dnsb_name(&b, "^12");
	dnsb_u16(&b, DNS_TYPE_MX);
	CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
	dns_rr_iter_init(&it, &m);
	CHECK_INT(dns_rr_next(&it, &rr), -1);

	/* 65535 announced answers in a short message: refused after the octets run out. */
	build_reply(&b);
	b.buf[6] = 0xff;
	b.buf[7] = 0xff;
	CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
	dns_rr_iter_init(&it, &m);
	n = 0;
	while ((r = dns_rr_next(&it, &rr)) == 1)
		n++;
	CHECK_INT(r, -1);
	CHECK_INT(n, 5);
}

/* One MX record with hand-made rdata; returns dns_rr_mx's result. */
static int mx_rdata(const uint8_t *rdata, size_t n, uint16_t *pref, char *name)
{
	struct dnsb b;
	struct dns_msg m;
	struct dns_rr_iter it;
	struct dns_rr rr;
	dnsb_header(&b, 9, DNSB_REPLY(0), 1, 1, 0, 0);
	dnsb_question(&b, "example.com", DNS_TYPE_MX);
	size_t at = dnsb_rr_begin(&b, "^12", DNS_TYPE_MX);
	dnsb_raw(&b, rdata, n);
	dnsb_rr_end(&b, at);
	if (dns_msg_parse(b.buf, b.len, &m) < 0)
		return -100;
	dns_rr_iter_init(&it, &m);
	if (dns_rr_next(&it, &rr) != 1)
		return -101;
	return dns_rr_mx(&m, &rr, pref, name);
}

TEST(mx_rdata_table)
{
	static const uint8_t ok[] = {0, 7, 2, 'm', 'x', 0xc0, 12};
	static const uint8_t junk_after[] = {0, 7, 2, 'm', 'x', 0, 'j'};
	static const uint8_t too_short[] = {0, 7};
	static const uint8_t name_past[] = {0, 7, 4, 'm', 'x'};
	static const uint8_t forward[] = {0, 7, 0xc0, 0xff};
	static const uint8_t odd[] = {0xff, 0xff, 2, 'm', ' ', 0};
	static const uint8_t rootx[] = {0, 0, 0};
	const struct {
		const uint8_t *rd;
		size_t n;
		int want;
		unsigned pref;
		const char *name;
	} cases[] = {
	        {ok, sizeof ok, DNS_NAME_OK, 7, "mx.example.com"},
	        {junk_after, sizeof junk_after, DNS_NAME_MALFORMED, 7, ""},
	        {too_short, sizeof too_short, DNS_NAME_MALFORMED, 0, ""},
	        {name_past, sizeof name_past, DNS_NAME_MALFORMED, 7, ""},
	        {forward, sizeof forward, DNS_NAME_MALFORMED, 7, ""},
	        {odd, sizeof odd, DNS_NAME_ODD, 65535, ""},
	        {rootx, sizeof rootx, DNS_NAME_OK, 0, ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint16_t pref = 0;
		char name[DNS_NAME_BUFSZ] = "Z";
		int ok1 = CHECK_INT(mx_rdata(cases[i].rd, cases[i].n, &pref, name), cases[i].want);
		ok1 &= CHECK_STR(name, cases[i].name);
		if (cases[i].want != DNS_NAME_MALFORMED || cases[i].n >= 3)
			ok1 &= CHECK_INT(pref, cases[i].pref);
		if (!ok1)
			fprintf(stderr, "     rdata #%zu\n", i);
	}
}

TEST_MAIN(T(query_format_exact), T(query_format_names), T(parse_header_and_question),
          T(reply_matching), T(name_decode_table), T(name_length_limits), T(name_equal),
          T(record_walk), T(record_walk_malformed), T(mx_rdata_table))
