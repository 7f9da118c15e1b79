/* Unit tests for util/netaddr: host:port and network parsing, matching, formatting. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "util/netaddr.h"

struct hostport_case {
	const char *in;
	int default_port;
	int allow_port0;
	const char *want; /* netaddr_format() of the result, or NULL when it must fail */
	const char *err; /* a substring of the reason when it fails */
};

static const struct hostport_case hostport_cases[] = {
        {"127.0.0.1:25", 0, 0, "127.0.0.1:25", NULL},
        {"0.0.0.0:4069", 0, 0, "0.0.0.0:4069", NULL},
        {"*:587", 0, 0, "0.0.0.0:587", NULL},
        {"localhost:110", 0, 0, "127.0.0.1:110", NULL},
        {"LocalHost:110", 0, 0, "127.0.0.1:110", NULL},
        {"[::1]:25", 0, 0, "[::1]:25", NULL},
        {"[::]:25", 0, 0, "[::]:25", NULL},
        {"[2001:db8::1]:65535", 0, 0, "[2001:db8::1]:65535", NULL},
        {"[::ffff:192.0.2.1]:1", 0, 0, "[::ffff:192.0.2.1]:1", NULL},
        {"192.0.2.7", 4069, 0, "192.0.2.7:4069", NULL},
        {"[::1]", 4069, 0, "[::1]:4069", NULL},
        {"127.0.0.1:0", 0, 1, "127.0.0.1:0", NULL},
        {"127.0.0.1:0", 0, 0, NULL, "port 0"},
        {"127.0.0.1", 0, 0, NULL, "missing ':PORT'"},
        {"[::1]", 0, 0, NULL, "missing ':PORT'"},
        {"127.0.0.1:", 0, 0, NULL, "not a port"},
        {"127.0.0.1:65536", 0, 0, NULL, "not a port"},
        {"127.0.0.1:123456", 0, 0, NULL, "not a port"},
        {"127.0.0.1:-1", 0, 0, NULL, "not a port"},
        {"127.0.0.1:2x", 0, 0, NULL, "not a port"},
        {"127.0.0.1: 25", 0, 0, NULL, "not a port"},
        {"mail.example.com:25", 0, 0, NULL, "not an IP address"},
        {"256.1.1.1:25", 0, 0, NULL, "not an IP address"},
        {"127.1:25", 0, 0, NULL, "not an IP address"},
        {"::1:25", 0, 0, NULL, "brackets"},
        {"[::1:25", 0, 0, NULL, "missing ']'"},
        {"[::1]25", 0, 0, NULL, "after ']'"},
        {"[127.0.0.1]:25", 0, 0, NULL, "not an IPv6"},
        {"[fe80::1%eth0]:25", 0, 0, NULL, "not an IPv6"},
        {"", 0, 0, NULL, "empty"},
        {":25", 0, 0, NULL, "not an IP address"},
        {"[]:25", 0, 0, NULL, "not an IPv6"},
};

TEST(hostport_table)
{
	for (size_t i = 0; i < sizeof hostport_cases / sizeof hostport_cases[0]; i++) {
		const struct hostport_case *c = &hostport_cases[i];
		struct netaddr a;
		char err[200] = "", got[80];
		int rc = netaddr_parse_hostport(c->in, c->default_port, c->allow_port0, &a, err,
		                                sizeof err);
		if (c->want) {
			if (!CHECK_INT(rc, 0))
				printf("  input '%s': %s\n", c->in, err);
			netaddr_format((struct sockaddr *)&a.ss, got, sizeof got);
			CHECK_STR(got, c->want);
			CHECK_INT(a.len, a.ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
			                                           : sizeof(struct sockaddr_in6));
		} else {
			if (!CHECK_INT(rc, -1))
				printf("  input '%s' was accepted\n", c->in);
			if (!CHECK(strstr(err, c->err) != NULL))
				printf("  input '%s': reason '%s', want '%s'\n", c->in, err,
				       c->err);
		}
	}
}

TEST(hostport_long_input_bounded)
{
	char big[600], err[64];
	struct netaddr a;
	memset(big, '1', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	big[300] = ':';
	CHECK_INT(netaddr_parse_hostport(big, 0, 0, &a, err, sizeof err), -1);
	CHECK(strlen(err) < sizeof err);
	big[0] = '[';
	CHECK_INT(netaddr_parse_hostport(big, 0, 0, &a, err, sizeof err), -1);
	/* A NULL or zero-size err buffer is allowed. */
	CHECK_INT(netaddr_parse_hostport("x:1", 0, 0, &a, NULL, 0), -1);
}

struct net_case {
	const char *in;
	int family; /* 0: must fail */
	int prefix;
};

static const struct net_case net_cases[] = {
        {"192.0.2.0/24", AF_INET, 24},
        {"192.0.2.1", AF_INET, 32},
        {"0.0.0.0/0", AF_INET, 0},
        {"10.0.0.0/8", AF_INET, 8},
        {"2001:db8::/32", AF_INET6, 32},
        {"::1", AF_INET6, 128},
        {"::/0", AF_INET6, 0},
        {"192.0.2.1/24", 0, 0}, /* host bits set */
        {"2001:db8::1/64", 0, 0}, /* host bits set */
        {"192.0.2.0/33", 0, 0},
        {"::/129", 0, 0},
        {"192.0.2.0/", 0, 0},
        {"192.0.2.0/-1", 0, 0},
        {"192.0.2.0/2a", 0, 0},
        {"/24", 0, 0},
        {"", 0, 0},
        {"example.com/24", 0, 0},
        {"localhost", 0, 0},
        {"192.0.2.0/0024", 0, 0},
};

TEST(net_table)
{
	for (size_t i = 0; i < sizeof net_cases / sizeof net_cases[0]; i++) {
		const struct net_case *c = &net_cases[i];
		struct netaddr_net n;
		char err[200] = "";
		int rc = netaddr_parse_net(c->in, &n, err, sizeof err);
		if (c->family) {
			if (!CHECK_INT(rc, 0))
				printf("  input '%s': %s\n", c->in, err);
			CHECK_INT(n.family, c->family);
			CHECK_INT(n.prefix, c->prefix);
		} else {
			if (!CHECK_INT(rc, -1))
				printf("  input '%s' was accepted\n", c->in);
			CHECK(err[0] != '\0');
		}
	}
}

static void sa_from(const char *hostport, struct netaddr *a)
{
	char err[100];
	if (netaddr_parse_hostport(hostport, 0, 1, a, err, sizeof err) != 0)
		memset(a, 0, sizeof *a);
}

struct contains_case {
	const char *net;
	const char *peer;
	int want;
};

static const struct contains_case contains_cases[] = {
        {"192.0.2.0/24", "192.0.2.200:1", 1},
        {"192.0.2.0/24", "192.0.3.1:1", 0},
        {"192.0.2.128/25", "192.0.2.127:1", 0},
        {"192.0.2.128/25", "192.0.2.128:1", 1},
        {"10.0.0.0/7", "11.255.255.255:1", 1},
        {"10.0.0.0/7", "12.0.0.0:1", 0},
        {"0.0.0.0/0", "203.0.113.9:1", 1},
        {"127.0.0.1", "127.0.0.1:9", 1},
        {"127.0.0.1", "127.0.0.2:9", 0},
        /* IPv4-mapped IPv6 peers match IPv4 networks. */
        {"192.0.2.0/24", "[::ffff:192.0.2.9]:1", 1},
        {"192.0.2.0/24", "[::ffff:192.0.3.9]:1", 0},
        {"0.0.0.0/0", "[::ffff:1.2.3.4]:1", 1},
        /* A plain IPv6 peer never matches an IPv4 network, even 0.0.0.0/0. */
        {"0.0.0.0/0", "[2001:db8::1]:1", 0},
        {"0.0.0.0/0", "[::1]:1", 0},
        {"2001:db8::/32", "[2001:db8:ffff::1]:1", 1},
        {"2001:db8::/32", "[2001:db9::1]:1", 0},
        {"2001:db8::/33", "[2001:db8:8000::1]:1", 0},
        {"::1", "[::1]:5", 1},
        {"::/0", "[fe80::1]:5", 1},
        /* An IPv4 peer matches an IPv6 network only in its mapped form. */
        {"::ffff:0:0/96", "192.0.2.1:1", 1},
        {"2001:db8::/32", "192.0.2.1:1", 0},
};

TEST(contains_table)
{
	for (size_t i = 0; i < sizeof contains_cases / sizeof contains_cases[0]; i++) {
		const struct contains_case *c = &contains_cases[i];
		struct netaddr_net n;
		struct netaddr a;
		char err[100];
		CHECK_INT(netaddr_parse_net(c->net, &n, err, sizeof err), 0);
		sa_from(c->peer, &a);
		CHECK(a.len != 0);
		if (!CHECK_INT(netaddr_net_contains(&n, (struct sockaddr *)&a.ss), c->want))
			printf("  net %s peer %s\n", c->net, c->peer);
	}
}

TEST(contains_odd_inputs)
{
	struct netaddr_net n;
	struct sockaddr_storage ss;
	char err[100];
	CHECK_INT(netaddr_parse_net("0.0.0.0/0", &n, err, sizeof err), 0);
	memset(&ss, 0, sizeof ss);
	ss.ss_family = AF_UNIX;
	CHECK_INT(netaddr_net_contains(&n, (struct sockaddr *)&ss), 0);
	CHECK_INT(netaddr_net_contains(&n, NULL), 0);
	CHECK_INT(netaddr_net_contains(NULL, (struct sockaddr *)&ss), 0);
}

TEST(format_port_equal)
{
	struct netaddr a, b, c, d;
	char out[8];
	sa_from("192.0.2.1:25", &a);
	sa_from("[::ffff:192.0.2.1]:25", &b);
	sa_from("192.0.2.1:26", &c);
	sa_from("[2001:db8::1]:25", &d);
	CHECK_INT(netaddr_port((struct sockaddr *)&a.ss), 25);
	CHECK_INT(netaddr_port((struct sockaddr *)&d.ss), 25);
	CHECK_INT(netaddr_port(NULL), 0);
	CHECK_INT(netaddr_equal((struct sockaddr *)&a.ss, (struct sockaddr *)&a.ss), 1);
	CHECK_INT(netaddr_equal((struct sockaddr *)&a.ss, (struct sockaddr *)&b.ss), 1);
	CHECK_INT(netaddr_equal((struct sockaddr *)&a.ss, (struct sockaddr *)&c.ss), 0);
	CHECK_INT(netaddr_equal((struct sockaddr *)&a.ss, (struct sockaddr *)&d.ss), 0);
	CHECK_INT(netaddr_equal((struct sockaddr *)&d.ss, (struct sockaddr *)&d.ss), 1);
	/* Truncation keeps the output NUL-terminated. */
	netaddr_format((struct sockaddr *)&d.ss, out, sizeof out);
	CHECK_STR(out, "[2001:d");
	netaddr_format(NULL, out, sizeof out);
	CHECK_STR(out, "?");
}

TEST_MAIN(T(hostport_table), T(hostport_long_input_bounded), T(net_table), T(contains_table),
          T(contains_odd_inputs), T(format_port_equal))
