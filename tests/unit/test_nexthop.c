/*
 * Unit tests for deliver/nexthop (pure): host-name and route syntax, MX
 * answers (CNAME chains, null MX, odd and foreign records), MX ordering with a
 * fixed random source, the implicit MX, loops to ourselves by name and by
 * address, the three-valued outcome, softening for configured hosts, merging.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "deliver/nexthop.h"
#include "dns_build.h"
#include "harness.h"

/* ---- syntax ---- */

static const struct {
	const char *s;
	int want;
} name_cases[] = {
        {"example.com", 1},
        {"Mail-1.Example.COM", 1},
        {"example.com.", 1},
        {"localhost", 1},
        {"a", 1},
        {"1a.example", 1},
        {"x.123a", 1},
        {"", 0},
        {".", 0},
        {".example.com", 0},
        {"example..com", 0},
        {"example.com..", 0},
        {"-a.example", 0},
        {"a-.example", 0},
        {"a_b.example", 0},
        {"a b.example", 0},
        {"192.0.2.300", 0}, /* last label all digits: a mistyped address */
        {"1.2.3.4", 0},
        {"example.123", 0},
        {"\xc3\xa9.example", 0},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", 1}, /* 63 */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", 0}, /* 64 */
};

TEST(name_valid_table)
{
	for (size_t i = 0; i < sizeof name_cases / sizeof name_cases[0]; i++)
		if (!CHECK_INT(nexthop_name_valid(name_cases[i].s, strlen(name_cases[i].s)),
		               name_cases[i].want))
			fprintf(stderr, "     name '%s'\n", name_cases[i].s);
	/* 253 octets is the longest name; 254 is refused. */
	char n[300];
	memset(n, 'a', sizeof n);
	for (int i = 63; i < 253; i += 64)
		n[i] = '.';
	CHECK_INT(nexthop_name_valid(n, 253), 1);
	CHECK_INT(nexthop_name_valid(n, 254), 0);
	n[253] = '.';
	CHECK_INT(nexthop_name_valid(n, 254), 1); /* with the final dot */
}

struct spec_case {
	const char *s;
	int ok;
	enum nexthop_kind kind;
	const char *host;
	unsigned port;
};

static const struct spec_case spec_cases[] = {
        {"mail.example.com", 1, NEXTHOP_KIND_MX, "mail.example.com", 25},
        {"Mail.Example.COM.:2525", 1, NEXTHOP_KIND_MX, "mail.example.com", 2525},
        {"relay:1", 1, NEXTHOP_KIND_MX, "relay", 1},
        {"relay:65535", 1, NEXTHOP_KIND_MX, "relay", 65535},
        {"[relay.example.com]", 1, NEXTHOP_KIND_HOST, "relay.example.com", 25},
        {"[Relay.Example.com]:587", 1, NEXTHOP_KIND_HOST, "relay.example.com", 587},
        {"[localhost]:10025", 1, NEXTHOP_KIND_HOST, "localhost", 10025},
        {"[192.0.2.1]", 1, NEXTHOP_KIND_ADDR, "192.0.2.1", 25},
        {"[192.0.2.1]:10025", 1, NEXTHOP_KIND_ADDR, "192.0.2.1", 10025},
        {"192.0.2.1", 1, NEXTHOP_KIND_ADDR, "192.0.2.1", 25},
        {"192.0.2.1:26", 1, NEXTHOP_KIND_ADDR, "192.0.2.1", 26},
        {"[IPv6:2001:db8::1]", 1, NEXTHOP_KIND_ADDR, "2001:db8::1", 25},
        {"[ipv6:2001:DB8:0::1]:587", 1, NEXTHOP_KIND_ADDR, "2001:db8::1", 587},
        {"[2001:db8::1]:25", 1, NEXTHOP_KIND_ADDR, "2001:db8::1", 25},
        {"[::1]", 1, NEXTHOP_KIND_ADDR, "::1", 25},
        {"[::ffff:192.0.2.1]", 1, NEXTHOP_KIND_ADDR, "::ffff:192.0.2.1", 25},
        /* Refused. */
        {"", 0, 0, "", 0},
        {"2001:db8::1", 0, 0, "", 0},
        {"host:", 0, 0, "", 0},
        {"host:0", 0, 0, "", 0},
        {"host:65536", 0, 0, "", 0},
        {"host:123456", 0, 0, "", 0},
        {"host:12a", 0, 0, "", 0},
        {"host:+25", 0, 0, "", 0},
        {"host:-1", 0, 0, "", 0},
        {"host: 25", 0, 0, "", 0},
        {"[host", 0, 0, "", 0},
        {"[host]x", 0, 0, "", 0},
        {"[host]:", 0, 0, "", 0},
        {"[host]:25:26", 0, 0, "", 0},
        {"[host]]", 0, 0, "", 0},
        {"[]", 0, 0, "", 0},
        {"[]:25", 0, 0, "", 0},
        {"[IPv6:192.0.2.1]", 0, 0, "", 0},
        {"[IPv6:zz::1]", 0, 0, "", 0},
        {"[IPv6:]", 0, 0, "", 0},
        {"[192.0.2.300]", 0, 0, "", 0},
        {"[2001:db8::1%eth0]", 0, 0, "", 0},
        {"[-bad]", 0, 0, "", 0},
        {"bad_host", 0, 0, "", 0},
        {"a..b", 0, 0, "", 0},
        {"192.0.2.300", 0, 0, "", 0},
        {"exa mple", 0, 0, "", 0},
        {":25", 0, 0, "", 0},
        {"host;id", 0, 0, "", 0},
        {"$(id)", 0, 0, "", 0},
};

TEST(spec_parse_table)
{
	for (size_t i = 0; i < sizeof spec_cases / sizeof spec_cases[0]; i++) {
		const struct spec_case *c = &spec_cases[i];
		struct nexthop_spec sp;
		char err[128] = "";
		int r = nexthop_spec_parse(c->s, strlen(c->s), &sp, err, sizeof err);
		int ok = CHECK_INT(r, c->ok ? 0 : -1);
		if (c->ok && r == 0) {
			ok &= CHECK_INT(sp.kind, c->kind);
			ok &= CHECK_STR(sp.host, c->host);
			ok &= CHECK_INT(sp.port, c->port);
			if (c->kind == NEXTHOP_KIND_ADDR)
				ok &= CHECK_INT(sp.addr.port, c->port);
		} else if (!c->ok) {
			ok &= CHECK(err[0] != '\0');
		}
		if (!ok)
			fprintf(stderr, "     spec '%s' (%s)\n", c->s, err);
	}
}

TEST(spec_parse_address_bytes)
{
	struct nexthop_spec sp;
	CHECK_INT(nexthop_spec_parse("[192.0.2.7]:2525", 16, &sp, NULL, 0), 0);
	CHECK_INT(sp.addr.family, AF_INET);
	CHECK_MEM(sp.addr.bytes, 4, "\xc0\x00\x02\x07", 4);
	CHECK_INT(nexthop_spec_parse("[IPv6:2001:db8::5]", 18, &sp, NULL, 0), 0);
	CHECK_INT(sp.addr.family, AF_INET6);
	CHECK_MEM(sp.addr.bytes, 16, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x05", 16);
	/* Only len octets are read: the rest of the value is not part of the token. */
	CHECK_INT(nexthop_spec_parse("relay.example:25 junk", 16, &sp, NULL, 0), 0);
	CHECK_STR(sp.host, "relay.example");
}

TEST(hosts_parse_table)
{
	struct nexthop_spec specs[NEXTHOP_SPECS_MAX];
	size_t n = 99;
	char err[256];
	CHECK_INT(nexthop_hosts_parse("a.example [b.example]:587\t192.0.2.1", specs,
	                              NEXTHOP_SPECS_MAX, &n, err, sizeof err),
	          0);
	CHECK_INT(n, 3);
	CHECK_INT(specs[0].kind, NEXTHOP_KIND_MX);
	CHECK_INT(specs[1].kind, NEXTHOP_KIND_HOST);
	CHECK_INT(specs[1].port, 587);
	CHECK_INT(specs[2].kind, NEXTHOP_KIND_ADDR);
	CHECK_INT(nexthop_hosts_parse("  a \t b  ", specs, NEXTHOP_SPECS_MAX, &n, err, sizeof err),
	          0);
	CHECK_INT(n, 2);
	CHECK_STR(specs[1].host, "b");
	CHECK_INT(nexthop_hosts_parse("", specs, NEXTHOP_SPECS_MAX, &n, err, sizeof err), -1);
	CHECK_INT(n, 0);
	CHECK_INT(nexthop_hosts_parse(" \t ", specs, NEXTHOP_SPECS_MAX, &n, err, sizeof err), -1);
	CHECK_INT(nexthop_hosts_parse("a b c", specs, 2, &n, err, sizeof err), -1);
	CHECK(strstr(err, "more than 2") != NULL);
	CHECK_INT(nexthop_hosts_parse("a b c d e f g h i", specs, 99, &n, err, sizeof err), -1);
	CHECK_INT(nexthop_hosts_parse("a b c d e f g h", specs, 99, &n, err, sizeof err), 0);
	CHECK_INT(n, NEXTHOP_SPECS_MAX);
	CHECK_INT(nexthop_hosts_parse("good.example bad:host:x", specs, NEXTHOP_SPECS_MAX, &n, err,
	                              sizeof err),
	          -1);
	CHECK(strstr(err, "'bad:host:x'") != NULL);
}

TEST(route_parse_table)
{
	struct nexthop_route r;
	char err[256];
	CHECK_INT(nexthop_route_parse("Example.COM [relay.example.net]:2525 backup.example.net", &r,
	                              err, sizeof err),
	          0);
	CHECK_STR(r.domain, "example.com");
	CHECK_INT(r.nspecs, 2);
	CHECK_INT(r.specs[0].kind, NEXTHOP_KIND_HOST);
	CHECK_INT(r.specs[0].port, 2525);
	CHECK_INT(r.specs[1].kind, NEXTHOP_KIND_MX);
	CHECK_INT(nexthop_route_parse(".example.com. relay", &r, err, sizeof err), 0);
	CHECK_STR(r.domain, ".example.com");
	CHECK_INT(nexthop_route_parse("example.com", &r, err, sizeof err), -1);
	CHECK(strstr(err, "names no host") != NULL);
	CHECK_INT(nexthop_route_parse("example.com   ", &r, err, sizeof err), -1);
	CHECK_INT(nexthop_route_parse("", &r, err, sizeof err), -1);
	CHECK_INT(nexthop_route_parse("bad_domain relay", &r, err, sizeof err), -1);
	CHECK(strstr(err, "bad domain") != NULL);
	CHECK_INT(nexthop_route_parse("..example.com relay", &r, err, sizeof err), -1);
	CHECK_INT(nexthop_route_parse(". relay", &r, err, sizeof err), -1);
	CHECK_INT(nexthop_route_parse("example.com [relay", &r, err, sizeof err), -1);
}

TEST(route_matches_table)
{
	struct nexthop_route exact, sub;
	CHECK_INT(nexthop_route_parse("example.com relay", &exact, NULL, 0), 0);
	CHECK_INT(nexthop_route_parse(".example.com relay", &sub, NULL, 0), 0);
	static const struct {
		const char *domain;
		int exact, sub;
	} cases[] = {
	        {"example.com", 1, 0},
	        {"EXAMPLE.Com", 1, 0},
	        {"example.com.", 1, 0},
	        {"a.example.com", 0, 1},
	        {"A.B.Example.COM.", 0, 1},
	        {"xexample.com", 0, 0},
	        {"example.com.evil", 0, 0},
	        {"com", 0, 0},
	        {"", 0, 0},
	        {".example.com", 0, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int ok = CHECK_INT(nexthop_route_matches(&exact, cases[i].domain), cases[i].exact);
		ok &= CHECK_INT(nexthop_route_matches(&sub, cases[i].domain), cases[i].sub);
		if (!ok)
			fprintf(stderr, "     domain '%s'\n", cases[i].domain);
	}
}

/* ---- MX lists and answers ---- */

TEST(mxlist_add_rules)
{
	struct nexthop_mxlist l;
	nexthop_mxlist_init(&l);
	nexthop_mxlist_add(&l, 20, "MX.Example.com.", 1);
	nexthop_mxlist_add(&l, 10, "mx.example.com", 2); /* same host: keeps the lower preference */
	nexthop_mxlist_add(&l, 30, "mx.example.com", 3);
	nexthop_mxlist_add(&l, 0, "", 4);
	CHECK_INT(l.n, 1);
	CHECK_INT(l.nnull, 1);
	CHECK_INT(l.mx[0].pref, 10);
	CHECK_STR(l.mx[0].name, "mx.example.com");

	/* Full: a better record displaces the worst, a worse one is dropped. */
	nexthop_mxlist_init(&l);
	char name[32];
	for (unsigned i = 0; i < NEXTHOP_MX_MAX; i++) {
		snprintf(name, sizeof name, "h%u.example", i);
		nexthop_mxlist_add(&l, 100 + i, name, 0);
	}
	CHECK_INT(l.n, NEXTHOP_MX_MAX);
	nexthop_mxlist_add(&l, 50, "better.example", 0);
	nexthop_mxlist_add(&l, 500, "worse.example", 0);
	CHECK_INT(l.n, NEXTHOP_MX_MAX);
	int have_better = 0, have_worst = 0, have_worse = 0;
	for (size_t i = 0; i < l.n; i++) {
		have_better |= strcmp(l.mx[i].name, "better.example") == 0;
		have_worse |= strcmp(l.mx[i].name, "worse.example") == 0;
		have_worst |= l.mx[i].pref == 100 + NEXTHOP_MX_MAX - 1;
	}
	CHECK(have_better);
	CHECK(!have_worse);
	CHECK(!have_worst);
	/* Equal preference at the boundary: the key decides. */
	nexthop_mxlist_add(&l, 100 + NEXTHOP_MX_MAX - 2, "tie.example", 1); /* key 1 > 0: dropped */
	int have_tie = 0;
	for (size_t i = 0; i < l.n; i++)
		have_tie |= strcmp(l.mx[i].name, "tie.example") == 0;
	CHECK(!have_tie);
}

/* A fixed random source: returns seq[i++] (cycling). */
struct fixed_rand {
	const uint32_t *seq;
	size_t n, i;
};

static uint32_t fixed_rand_next(void *arg)
{
	struct fixed_rand *f = arg;
	uint32_t v = f->seq[f->i % f->n];
	f->i++;
	return v;
}

enum reply_shape {
	SHAPE_TWO_MX,
	SHAPE_NXDOMAIN,
	SHAPE_SERVFAIL,
	SHAPE_REFUSED,
	SHAPE_NODATA,
	SHAPE_CNAME_TO_MX,
	SHAPE_CNAME_ONLY,
	SHAPE_CNAME_LOOP,
	SHAPE_OTHER_OWNER,
	SHAPE_MX_IN_AUTHORITY,
	SHAPE_CLASS_CH,
	SHAPE_NULL_MX,
	SHAPE_ODD_EXCHANGE,
	SHAPE_BAD_RDATA,
	SHAPE_SHORT,
	SHAPE_BAD_ADDITIONAL,
	SHAPE_LONG_CHAIN,
};

/* A reply to "example.com" MX of the given shape. */
static void shaped_reply(struct dnsb *b, enum reply_shape s)
{
	unsigned rcode = s == SHAPE_NXDOMAIN   ? 3
	                 : s == SHAPE_SERVFAIL ? 2
	                 : s == SHAPE_REFUSED  ? 5
	                                       : 0;
	switch (s) {
	case SHAPE_TWO_MX:
	case SHAPE_NXDOMAIN:
	case SHAPE_SERVFAIL:
	case SHAPE_REFUSED:
	case SHAPE_BAD_ADDITIONAL:
		dnsb_header(b, 1, DNSB_REPLY(rcode), 1, 2, 0, s == SHAPE_BAD_ADDITIONAL ? 2 : 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_mx(b, "^12", 20, "b.example.com");
		dnsb_mx(b, "^12", 10, "a.example.com");
		if (s == SHAPE_BAD_ADDITIONAL)
			dnsb_a(b, "a.example.com", 192, 0, 2, 1); /* the second one is missing */
		return;
	case SHAPE_NODATA:
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 0, 1, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_a(b, "^12", 192, 0, 2, 9); /* some authority record */
		return;
	case SHAPE_CNAME_TO_MX:
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 3, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_mx(b, "mail.example.org", 10, "mx.example.org"); /* before its CNAME */
		dnsb_cname(b, "^12", "mail.example.org");
		dnsb_mx(b, "^12", 5, "ignored.example.com"); /* beside a CNAME: not the target's */
		return;
	case SHAPE_CNAME_ONLY:
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 1, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_cname(b, "^12", "elsewhere.example.org");
		return;
	case SHAPE_CNAME_LOOP:
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 2, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_cname(b, "^12", "loop.example.org");
		dnsb_cname(b, "loop.example.org", "^12");
		return;
	case SHAPE_LONG_CHAIN:
		/* c0 -> c1 -> ... -> c9 with an MX at c9: beyond NEXTHOP_CNAME_MAX links. */
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 11, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_cname(b, "^12", "c0.example.org");
		for (int i = 0; i < 9; i++) {
			char from[32], to[32];
			snprintf(from, sizeof from, "c%d.example.org", i);
			snprintf(to, sizeof to, "c%d.example.org", i + 1);
			dnsb_cname(b, from, to);
		}
		dnsb_mx(b, "c9.example.org", 10, "far.example.org");
		return;
	case SHAPE_OTHER_OWNER:
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 1, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_mx(b, "evil.example.net", 10, "evil.example.net");
		return;
	case SHAPE_MX_IN_AUTHORITY:
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 0, 1, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_mx(b, "^12", 10, "auth.example.com");
		return;
	case SHAPE_CLASS_CH: {
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 1, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		size_t at = dnsb_rr_begin(b, "^12", DNS_TYPE_MX);
		b->buf[at - 5] = 3; /* class CH */
		dnsb_u16(b, 10);
		dnsb_name(b, "ch.example.com");
		dnsb_rr_end(b, at);
		return;
	}
	case SHAPE_NULL_MX:
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 1, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_mx(b, "^12", 0, ".");
		return;
	case SHAPE_ODD_EXCHANGE:
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 1, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_mx(b, "^12", 10, "sp ace.example.com");
		return;
	case SHAPE_BAD_RDATA: {
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 1, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		size_t at = dnsb_rr_begin(b, "^12", DNS_TYPE_MX);
		dnsb_u16(b, 10);
		dnsb_name(b, "mx.example.com");
		dnsb_u8(b, 0); /* junk after the exchange */
		dnsb_rr_end(b, at);
		return;
	}
	case SHAPE_SHORT:
		dnsb_header(b, 1, DNSB_REPLY(0), 1, 3, 0, 0);
		dnsb_question(b, "example.com", DNS_TYPE_MX);
		dnsb_mx(b, "^12", 10, "a.example.com");
		return;
	}
}

static const struct {
	enum reply_shape shape;
	enum nexthop_answer want;
	size_t n, nnull, nodd;
	const char *first; /* name of mx[0] when n > 0 */
	int rcode;
} answer_cases[] = {
        {SHAPE_TWO_MX, NEXTHOP_ANSWER_RECORDS, 2, 0, 0, "b.example.com", 0},
        {SHAPE_NXDOMAIN, NEXTHOP_ANSWER_NXDOMAIN, 0, 0, 0, NULL, 3},
        {SHAPE_SERVFAIL, NEXTHOP_ANSWER_RETRY, 0, 0, 0, NULL, 2},
        {SHAPE_REFUSED, NEXTHOP_ANSWER_RETRY, 0, 0, 0, NULL, 5},
        {SHAPE_NODATA, NEXTHOP_ANSWER_NODATA, 0, 0, 0, NULL, 0},
        {SHAPE_CNAME_TO_MX, NEXTHOP_ANSWER_RECORDS, 1, 0, 0, "mx.example.org", 0},
        {SHAPE_CNAME_ONLY, NEXTHOP_ANSWER_NODATA, 0, 0, 0, NULL, 0},
        {SHAPE_CNAME_LOOP, NEXTHOP_ANSWER_NODATA, 0, 0, 0, NULL, 0},
        {SHAPE_LONG_CHAIN, NEXTHOP_ANSWER_NODATA, 0, 0, 0, NULL, 0},
        {SHAPE_OTHER_OWNER, NEXTHOP_ANSWER_NODATA, 0, 0, 0, NULL, 0},
        {SHAPE_MX_IN_AUTHORITY, NEXTHOP_ANSWER_NODATA, 0, 0, 0, NULL, 0},
        {SHAPE_CLASS_CH, NEXTHOP_ANSWER_NODATA, 0, 0, 0, NULL, 0},
        {SHAPE_NULL_MX, NEXTHOP_ANSWER_RECORDS, 0, 1, 0, NULL, 0},
        {SHAPE_ODD_EXCHANGE, NEXTHOP_ANSWER_RECORDS, 0, 0, 1, NULL, 0},
        {SHAPE_BAD_RDATA, NEXTHOP_ANSWER_MALFORMED, 0, 0, 0, NULL, 0},
        {SHAPE_SHORT, NEXTHOP_ANSWER_MALFORMED, 0, 0, 0, NULL, 0},
        {SHAPE_BAD_ADDITIONAL, NEXTHOP_ANSWER_RECORDS, 2, 0, 0, "b.example.com", 0},
};

TEST(mx_answer_table)
{
	for (size_t i = 0; i < sizeof answer_cases / sizeof answer_cases[0]; i++) {
		struct dnsb b;
		struct dns_msg m;
		struct nexthop_mxlist l;
		b.len = 0;
		b.bad = 0;
		shaped_reply(&b, answer_cases[i].shape);
		CHECK(!b.bad);
		CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
		enum nexthop_answer a = nexthop_mx_answer(&m, "example.com", &l, NULL, NULL);
		int ok = CHECK_INT(a, answer_cases[i].want);
		ok &= CHECK_INT(l.n, answer_cases[i].n);
		ok &= CHECK_INT(l.nnull, answer_cases[i].nnull);
		ok &= CHECK_INT(l.nodd, answer_cases[i].nodd);
		ok &= CHECK_INT(l.rcode, answer_cases[i].rcode);
		if (answer_cases[i].first && l.n > 0)
			ok &= CHECK_STR(l.mx[0].name, answer_cases[i].first);
		if (!ok)
			fprintf(stderr, "     shape %d\n", (int)answer_cases[i].shape);
	}
}

/* ---- planning ---- */

struct mx_in {
	unsigned pref;
	const char *name;
	uint32_t key;
};

struct plan_case {
	const char *what;
	enum nexthop_answer answer;
	struct mx_in mx[6];
	size_t nnull, nodd;
	const char *self; /* one self name, or NULL */
	enum nexthop_status status;
	const char *enh;
	const char *hosts; /* expected names, space-separated, in order */
};

static const struct plan_case plan_cases[] = {
        {"by preference",
         NEXTHOP_ANSWER_RECORDS,
         {{20, "b", 0}, {10, "a", 0}, {30, "c", 0}},
         0,
         0,
         NULL,
         NEXTHOP_FOUND,
         "",
         "a b c"},
        {"ties by key",
         NEXTHOP_ANSWER_RECORDS,
         {{10, "x", 5}, {10, "y", 1}, {10, "z", 3}, {5, "w", 9}},
         0,
         0,
         NULL,
         NEXTHOP_FOUND,
         "",
         "w y z x"},
        {"preference 0 and 65535",
         NEXTHOP_ANSWER_RECORDS,
         {{65535, "last", 0}, {0, "first", 0}},
         0,
         0,
         NULL,
         NEXTHOP_FOUND,
         "",
         "first last"},
        {"we are the best MX",
         NEXTHOP_ANSWER_RECORDS,
         {{10, "mx1.us.example", 0}, {20, "backup", 0}},
         0,
         0,
         "mx1.us.example",
         NEXTHOP_PERMFAIL,
         "5.4.6",
         ""},
        {"we are a backup MX",
         NEXTHOP_ANSWER_RECORDS,
         {{10, "primary", 0}, {20, "us.example", 0}, {30, "other", 0}, {15, "second", 0}},
         0,
         0,
         "US.Example.",
         NEXTHOP_FOUND,
         "",
         "primary second"},
        {"we tie with the best",
         NEXTHOP_ANSWER_RECORDS,
         {{10, "a", 0}, {10, "us.example", 0}, {20, "c", 0}},
         0,
         0,
         "us.example",
         NEXTHOP_PERMFAIL,
         "5.4.6",
         ""},
        {"implicit MX",
         NEXTHOP_ANSWER_NODATA,
         {{0, NULL, 0}},
         0,
         0,
         NULL,
         NEXTHOP_FOUND,
         "",
         "example.com"},
        {"implicit MX is us",
         NEXTHOP_ANSWER_NODATA,
         {{0, NULL, 0}},
         0,
         0,
         "EXAMPLE.COM",
         NEXTHOP_PERMFAIL,
         "5.4.6",
         ""},
        {"null MX",
         NEXTHOP_ANSWER_RECORDS,
         {{0, NULL, 0}},
         1,
         0,
         NULL,
         NEXTHOP_PERMFAIL,
         "5.1.10",
         ""},
        {"two null MX",
         NEXTHOP_ANSWER_RECORDS,
         {{0, NULL, 0}},
         2,
         0,
         NULL,
         NEXTHOP_PERMFAIL,
         "5.1.10",
         ""},
        {"null MX among hosts",
         NEXTHOP_ANSWER_RECORDS,
         {{20, "real", 0}},
         1,
         0,
         NULL,
         NEXTHOP_FOUND,
         "",
         "real"},
        {"null MX and an odd host",
         NEXTHOP_ANSWER_RECORDS,
         {{0, NULL, 0}},
         1,
         1,
         NULL,
         NEXTHOP_PERMFAIL,
         "5.1.10",
         ""},
        {"only odd hosts",
         NEXTHOP_ANSWER_RECORDS,
         {{0, NULL, 0}},
         0,
         2,
         NULL,
         NEXTHOP_PERMFAIL,
         "5.4.4",
         ""},
        {"NXDOMAIN",
         NEXTHOP_ANSWER_NXDOMAIN,
         {{0, NULL, 0}},
         0,
         0,
         NULL,
         NEXTHOP_PERMFAIL,
         "5.1.2",
         ""},
        {"SERVFAIL",
         NEXTHOP_ANSWER_RETRY,
         {{0, NULL, 0}},
         0,
         0,
         NULL,
         NEXTHOP_TEMPFAIL,
         "4.4.3",
         ""},
        {"malformed",
         NEXTHOP_ANSWER_MALFORMED,
         {{0, NULL, 0}},
         0,
         0,
         NULL,
         NEXTHOP_TEMPFAIL,
         "4.4.3",
         ""},
};

/* Joins the host names of r with spaces into out. */
static void host_names(const struct nexthop_result *r, char *out, size_t outsz)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < r->nhosts; i++)
		o += (size_t)snprintf(out + o, outsz - o, "%s%s", i ? " " : "", r->hosts[i].name);
}

TEST(mx_plan_table)
{
	for (size_t i = 0; i < sizeof plan_cases / sizeof plan_cases[0]; i++) {
		const struct plan_case *c = &plan_cases[i];
		struct nexthop_mxlist l;
		struct nexthop_result r;
		const char *names[1] = {c->self};
		struct nexthop_self self = {names, c->self ? 1 : 0, NULL, 0};
		char got[512];
		nexthop_mxlist_init(&l);
		for (size_t j = 0; j < 6 && c->mx[j].name; j++)
			nexthop_mxlist_add(&l, c->mx[j].pref, c->mx[j].name, c->mx[j].key);
		l.nnull = c->nnull;
		l.nodd = c->nodd;
		l.rcode = 2;
		nexthop_mx_plan("example.com", 25, c->answer, &l, &self, &r);
		host_names(&r, got, sizeof got);
		int ok = CHECK_INT(r.status, c->status);
		ok &= CHECK_STR(r.enh, c->enh);
		ok &= CHECK_STR(got, c->hosts);
		ok &= CHECK_STR(r.dest, "example.com");
		ok &= CHECK(c->status == NEXTHOP_FOUND ? r.text[0] == '\0' : r.text[0] != '\0');
		for (size_t j = 0; j < r.nhosts; j++) {
			ok &= CHECK_INT(r.hosts[j].port, 25);
			ok &= CHECK_INT(r.hosts[j].naddrs, 0);
			ok &= CHECK_INT(r.hosts[j].from_mx, 1);
		}
		if (!ok)
			fprintf(stderr, "     plan '%s': text '%s'\n", c->what, r.text);
	}
}

TEST(mx_plan_texts)
{
	struct nexthop_mxlist l;
	struct nexthop_result r;
	nexthop_mxlist_init(&l);
	l.rcode = DNS_RCODE_SERVFAIL;
	nexthop_mx_plan("example.com", 25, NEXTHOP_ANSWER_RETRY, &l, NULL, &r);
	CHECK(strstr(r.text, "SERVFAIL") != NULL);
	CHECK(strstr(r.text, "example.com") != NULL);
	l.nnull = 1;
	nexthop_mx_plan("example.com", 25, NEXTHOP_ANSWER_RECORDS, &l, NULL, &r);
	CHECK(strstr(r.text, "null MX") != NULL);
	nexthop_mxlist_init(&l);
	nexthop_mxlist_add(&l, 10, "us.example", 0);
	const char *names[] = {"other.example", "us.example"};
	struct nexthop_self self = {names, 2, NULL, 0};
	nexthop_mx_plan("example.com", 25, NEXTHOP_ANSWER_RECORDS, &l, &self, &r);
	CHECK_STR(r.text, "mail for example.com loops back to myself");
	/* The port goes to every host. */
	nexthop_mx_plan("example.com", 2525, NEXTHOP_ANSWER_NODATA, &l, NULL, &r);
	CHECK_INT(r.nhosts, 1);
	CHECK_INT(r.hosts[0].port, 2525);
}

TEST(mx_plan_keeps_the_best)
{
	struct nexthop_mxlist l;
	struct nexthop_result r;
	char name[32];
	nexthop_mxlist_init(&l);
	for (unsigned i = 0; i < 20; i++) {
		snprintf(name, sizeof name, "h%02u.example", 19 - i);
		nexthop_mxlist_add(&l, 19 - i, name, 0);
	}
	nexthop_mx_plan("example.com", 25, NEXTHOP_ANSWER_RECORDS, &l, NULL, &r);
	CHECK_INT(r.status, NEXTHOP_FOUND);
	CHECK_INT(r.nhosts, NEXTHOP_HOSTS_MAX);
	CHECK_STR(r.hosts[0].name, "h00.example");
	CHECK_STR(r.hosts[NEXTHOP_HOSTS_MAX - 1].name, "h15.example");
}

/* Three MX records of equal preference, ordered by a fixed random source. */
TEST(ties_follow_the_random_source)
{
	static const uint32_t seq_a[] = {3, 1, 2};
	static const uint32_t seq_b[] = {1, 2, 3};
	static const uint32_t seq_c[] = {7, 7, 7};
	const struct {
		const uint32_t *seq;
		const char *want;
	} cases[] = {
	        {seq_a, "b c a"},
	        {seq_b, "a b c"},
	        {seq_c, "a b c"}, /* equal keys: answer order (a stable sort) */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct dnsb b;
		struct dns_msg m;
		struct nexthop_mxlist l;
		struct nexthop_result r;
		struct fixed_rand fr = {cases[i].seq, 3, 0};
		char got[256];
		dnsb_header(&b, 1, DNSB_REPLY(0), 1, 4, 0, 0);
		dnsb_question(&b, "example.com", DNS_TYPE_MX);
		dnsb_mx(&b, "^12", 10, "a");
		dnsb_mx(&b, "^12", 10, "b");
		dnsb_mx(&b, "^12", 10, "c");
		dnsb_mx(&b, "^12", 99, "z");
		CHECK_INT(dns_msg_parse(b.buf, b.len, &m), 0);
		enum nexthop_answer a =
		        nexthop_mx_answer(&m, "example.com", &l, fixed_rand_next, &fr);
		nexthop_mx_plan("example.com", 25, a, &l, NULL, &r);
		r.nhosts = 3; /* "z" (preference 99) is always last */
		host_names(&r, got, sizeof got);
		if (!CHECK_STR(got, cases[i].want))
			fprintf(stderr, "     sequence #%zu\n", i);
	}
}

/* ---- finishing ---- */

static void add4(struct nexthop_host *h, unsigned a, unsigned b, unsigned c, unsigned d)
{
	unsigned char v[4] = {(unsigned char)a, (unsigned char)b, (unsigned char)c,
	                      (unsigned char)d};
	CHECK_INT(nexthop_host_add_addr(h, AF_INET, v), 0);
}

static void add6(struct nexthop_host *h, const char *text)
{
	unsigned char v[16];
	CHECK_INT(inet_pton(AF_INET6, text, v), 1);
	CHECK_INT(nexthop_host_add_addr(h, AF_INET6, v), 0);
}

static struct nexthop_host *planned(struct nexthop_result *r, const char *name, unsigned pref)
{
	struct nexthop_host *h = &r->hosts[r->nhosts++];
	memset(h, 0, sizeof *h);
	snprintf(h->name, sizeof h->name, "%s", name);
	h->pref = pref;
	h->port = 25;
	h->from_mx = 1;
	return h;
}

static struct netaddr self_addr(const char *hostport)
{
	struct netaddr a;
	char err[64];
	memset(&a, 0, sizeof a);
	CHECK_INT(netaddr_parse_hostport(hostport, 25, 1, &a, err, sizeof err), 0);
	return a;
}

TEST(finish_drops_hosts_without_addresses)
{
	struct nexthop_result r;
	nexthop_result_init(&r, "example.com");
	planned(&r, "none", 5);
	add4(planned(&r, "a", 10), 192, 0, 2, 1);
	planned(&r, "gone", 20)->tempfail = 1;
	add4(planned(&r, "c", 30), 192, 0, 2, 3);
	nexthop_finish(&r, NULL, 0);
	char got[128];
	host_names(&r, got, sizeof got);
	CHECK_INT(r.status, NEXTHOP_FOUND);
	CHECK_STR(got, "a c");

	nexthop_result_init(&r, "example.com");
	planned(&r, "x", 10);
	planned(&r, "y", 20)->tempfail = 1;
	nexthop_finish(&r, NULL, 0);
	CHECK_INT(r.status, NEXTHOP_TEMPFAIL);
	CHECK_STR(r.enh, "4.4.3");

	nexthop_result_init(&r, "example.com");
	planned(&r, "x", 10);
	nexthop_finish(&r, NULL, 0);
	CHECK_INT(r.status, NEXTHOP_PERMFAIL);
	CHECK_STR(r.enh, "5.4.4");
	CHECK(strstr(r.text, "example.com") != NULL);

	/* Not FOUND: left alone. */
	nexthop_result_fail(&r, NEXTHOP_PERMFAIL, "5.1.10", "null");
	nexthop_finish(&r, NULL, 0);
	CHECK_STR(r.enh, "5.1.10");
}

struct self_case {
	const char *what;
	const char *self; /* our address HOST[:PORT] (port 25 unless given; 0: any) */
	enum nexthop_status status;
	const char *hosts;
};

/* Hosts: a (10) 192.0.2.1, b (20) 192.0.2.2 + 2001:db8::2, c (20) 192.0.2.3, d (30) 192.0.2.4. */
static const struct self_case self_cases[] = {
        {"not us", "192.0.2.99", NEXTHOP_FOUND, "a b c d"},
        {"we are b", "192.0.2.2", NEXTHOP_FOUND, "a"},
        {"we are b by IPv6", "[2001:db8::2]:25", NEXTHOP_FOUND, "a"},
        {"we are d", "192.0.2.4", NEXTHOP_FOUND, "a b c"},
        {"we are a", "192.0.2.1", NEXTHOP_PERMFAIL, ""},
        {"same address, other port", "192.0.2.1:2525", NEXTHOP_FOUND, "a b c d"},
        {"any port", "192.0.2.1:0", NEXTHOP_PERMFAIL, ""},
        {"IPv4-mapped self", "[::ffff:192.0.2.2]:25", NEXTHOP_FOUND, "a"},
};

TEST(finish_self_address_table)
{
	for (size_t i = 0; i < sizeof self_cases / sizeof self_cases[0]; i++) {
		const struct self_case *c = &self_cases[i];
		struct nexthop_result r;
		struct netaddr me = self_addr(c->self);
		struct nexthop_self self = {NULL, 0, &me, 1};
		char got[128];
		nexthop_result_init(&r, "example.com");
		add4(planned(&r, "a", 10), 192, 0, 2, 1);
		struct nexthop_host *b = planned(&r, "b", 20);
		add4(b, 192, 0, 2, 2);
		add6(b, "2001:db8::2");
		add4(planned(&r, "c", 20), 192, 0, 2, 3);
		add4(planned(&r, "d", 30), 192, 0, 2, 4);
		nexthop_finish(&r, &self, 0);
		host_names(&r, got, sizeof got);
		int ok = CHECK_INT(r.status, c->status);
		ok &= CHECK_STR(got, c->hosts);
		if (c->status == NEXTHOP_PERMFAIL)
			ok &= CHECK_STR(r.enh, "5.4.6");
		if (!ok)
			fprintf(stderr, "     self case '%s'\n", c->what);
	}
}

TEST(finish_orders_families)
{
	for (int prefer6 = 0; prefer6 <= 1; prefer6++) {
		struct nexthop_result r;
		char t0[64], t3[64];
		nexthop_result_init(&r, "example.com");
		struct nexthop_host *h = planned(&r, "a", 10);
		add6(h, "2001:db8::1");
		add4(h, 192, 0, 2, 1);
		add6(h, "2001:db8::2");
		add4(h, 192, 0, 2, 2);
		nexthop_finish(&r, NULL, prefer6);
		CHECK_INT(r.hosts[0].naddrs, 4);
		nexthop_addr_format(&r.hosts[0].addrs[0], t0, sizeof t0);
		nexthop_addr_format(&r.hosts[0].addrs[3], t3, sizeof t3);
		CHECK_STR(t0, prefer6 ? "2001:db8::1" : "192.0.2.1");
		CHECK_STR(t3, prefer6 ? "192.0.2.2" : "2001:db8::2");
		CHECK_INT(r.hosts[0].addrs[1].family, prefer6 ? AF_INET6 : AF_INET);
	}
}

TEST(host_add_addr_bounds)
{
	struct nexthop_host h;
	memset(&h, 0, sizeof h);
	h.port = 587;
	unsigned char v[16] = {10, 0, 0, 0};
	for (int i = 0; i < NEXTHOP_ADDRS_MAX; i++) {
		v[3] = (unsigned char)i;
		CHECK_INT(nexthop_host_add_addr(&h, AF_INET, v), 0);
	}
	v[3] = 0;
	CHECK_INT(nexthop_host_add_addr(&h, AF_INET, v), 0); /* a duplicate: ignored */
	v[3] = 200;
	CHECK_INT(nexthop_host_add_addr(&h, AF_INET, v), -1); /* full */
	CHECK_INT(h.naddrs, NEXTHOP_ADDRS_MAX);
	CHECK_INT(h.addrs[0].port, 587);
	CHECK_INT(nexthop_host_add_addr(&h, AF_UNIX, v), -1);

	struct sockaddr_storage ss;
	socklen_t len = 0;
	CHECK_INT(nexthop_addr_sockaddr(&h.addrs[1], &ss, &len), 0);
	CHECK_INT(len, sizeof(struct sockaddr_in));
	CHECK_INT(ntohs(((struct sockaddr_in *)&ss)->sin_port), 587);
	CHECK_INT(((unsigned char *)&((struct sockaddr_in *)&ss)->sin_addr)[3], 1);
	struct nexthop_addr bad = {AF_UNIX, 25, {0}};
	CHECK_INT(nexthop_addr_sockaddr(&bad, &ss, &len), -1);
	char t[64];
	nexthop_addr_format(&bad, t, sizeof t);
	CHECK_STR(t, "?");
}

TEST(soften_and_init)
{
	struct nexthop_result r;
	nexthop_result_init(&r, "relay\n.exa mple\x01");
	CHECK_STR(r.dest, "relay?.exa?mple?");
	nexthop_result_fail(&r, NEXTHOP_PERMFAIL, "5.1.2", "relay.example: no such domain");
	nexthop_result_soften(&r);
	CHECK_INT(r.status, NEXTHOP_TEMPFAIL);
	CHECK_STR(r.enh, "4.4.4");
	CHECK(strstr(r.text, "relay.example: no such domain") == r.text);
	CHECK(strstr(r.text, "relay_route") != NULL);
	nexthop_result_fail(&r, NEXTHOP_PERMFAIL, "5.4.6", "loop");
	nexthop_result_soften(&r);
	CHECK_INT(r.status, NEXTHOP_PERMFAIL);
	CHECK_STR(r.text, "loop");
	nexthop_result_fail(&r, NEXTHOP_TEMPFAIL, "4.4.3", "servfail");
	nexthop_result_soften(&r);
	CHECK_STR(r.enh, "4.4.3");
	nexthop_result_init(&r, "x");
	nexthop_result_soften(&r);
	CHECK_INT(r.status, NEXTHOP_FOUND);
}

TEST(merge_rules)
{
	static struct nexthop_result p[4], out;
	const struct nexthop_result *v[4] = {&p[0], &p[1], &p[2], &p[3]};
	char got[256];

	nexthop_result_init(&p[0], "[a]");
	add4(planned(&p[0], "a", 0), 192, 0, 2, 1);
	nexthop_result_fail(&p[1], NEXTHOP_TEMPFAIL, "4.4.3", "b timed out");
	nexthop_result_init(&p[2], "[c]");
	add4(planned(&p[2], "c", 0), 192, 0, 2, 3);
	nexthop_result_init(&out, "example.com");
	nexthop_merge(&out, v, 3);
	host_names(&out, got, sizeof got);
	CHECK_INT(out.status, NEXTHOP_FOUND);
	CHECK_STR(got, "a c");
	CHECK_STR(out.dest, "example.com");

	nexthop_result_fail(&p[0], NEXTHOP_PERMFAIL, "5.1.2", "a: no such domain");
	nexthop_result_fail(&p[2], NEXTHOP_PERMFAIL, "5.4.6", "c loops");
	nexthop_merge(&out, v, 3);
	CHECK_INT(out.status, NEXTHOP_TEMPFAIL); /* something may work later */
	CHECK_STR(out.text, "b timed out");
	CHECK_INT(out.nhosts, 0);

	nexthop_merge(&out, v + 2, 1);
	CHECK_INT(out.status, NEXTHOP_PERMFAIL);
	CHECK_STR(out.enh, "5.4.6");
	v[1] = &p[0];
	nexthop_merge(&out, v + 1, 2);
	CHECK_STR(out.enh, "5.1.2"); /* the first permanent failure */

	nexthop_merge(&out, v, 0);
	CHECK_INT(out.status, NEXTHOP_TEMPFAIL);
	CHECK_STR(out.enh, "4.4.4");

	/* At most NEXTHOP_HOSTS_MAX hosts in all. */
	for (int i = 0; i < 2; i++) {
		nexthop_result_init(&p[i], "x");
		for (int j = 0; j < 10; j++)
			add4(planned(&p[i], "h", (unsigned)j), 192, 0, 2, (unsigned)j);
		v[i] = &p[i];
	}
	nexthop_merge(&out, v, 2);
	CHECK_INT(out.nhosts, NEXTHOP_HOSTS_MAX);
	CHECK_INT(out.hosts[10].pref, 0);
}

TEST_MAIN(T(name_valid_table), T(spec_parse_table), T(spec_parse_address_bytes),
          T(hosts_parse_table), T(route_parse_table), T(route_matches_table), T(mxlist_add_rules),
          T(mx_answer_table), T(mx_plan_table), T(mx_plan_texts), T(mx_plan_keeps_the_best),
          T(ties_follow_the_random_source), T(finish_drops_hosts_without_addresses),
          T(finish_self_address_table), T(finish_orders_families), T(host_add_addr_bounds),
          T(soften_and_init), T(merge_rules))
