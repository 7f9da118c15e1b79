/*
 * Unit tests for proto/peer_spec (domain_sharing_host, gateway_domain and
 * forward_domain lines): defaults, every option, IPv6 hosts, refusals with the
 * word named, the relay destination format, and the conf loader's file:line
 * errors for the three keys.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "harness.h"
#include "proto/peer_spec.h"

TEST(peer_defaults)
{
	struct peer_spec_peer p;
	char err[256];
	CHECK_INT(peer_spec_parse_peer("mail.Example.COM", &p, err, sizeof err), 0);
	CHECK_STR(p.smtp.host, "mail.example.com");
	CHECK_INT(p.smtp.port, 25);
	CHECK_INT(p.minger_port, 4069);
	CHECK_STR(p.secret_file, "");
}

TEST(peer_options)
{
	struct peer_spec_peer p;
	char err[256];
	CHECK_INT(
	        peer_spec_parse_peer("  192.0.2.7:2525\tsecret_file=s/peer.txt  minger_port=4070 ",
	                             &p, err, sizeof err),
	        0);
	CHECK_STR(p.smtp.host, "192.0.2.7");
	CHECK_INT(p.smtp.port, 2525);
	CHECK_INT(p.minger_port, 4070);
	CHECK_STR(p.secret_file, "s/peer.txt");
	CHECK_INT(peer_spec_parse_peer("[IPv6:2001:db8::1]:26", &p, err, sizeof err), 0);
	CHECK_STR(p.smtp.host, "2001:db8::1");
	CHECK_INT(p.smtp.port, 26);
	CHECK_INT(peer_spec_parse_peer("[2001:db8::2]", &p, err, sizeof err), 0);
	CHECK_STR(p.smtp.host, "2001:db8::2");
	CHECK_INT(p.smtp.port, 25);
	CHECK_INT(peer_spec_parse_peer("[mx.example.net]:587", &p, err, sizeof err), 0);
	CHECK_STR(p.smtp.host, "mx.example.net");
	CHECK_INT(p.smtp.port, 587);
}

static const struct {
	const char *line;
	const char *err; /* a part of the reason */
} peer_bad[] = {
        {"", "no host given"},
        {"   ", "no host given"},
        {"minger_port=4069", "first word must be the host"},
        {"2001:db8::1", "IPv6 address needs brackets"},
        {"host.example:0", "bad port"},
        {"host.example:65536", "bad port"},
        {"host.example minger_port=0", "minger_port must be 1-65535"},
        {"host.example minger_port=70000", "minger_port must be 1-65535"},
        {"host.example minger_port=12a", "minger_port must be 1-65535"},
        {"host.example minger_port=", "incomplete option 'minger_port='"},
        {"host.example secret_file=", "incomplete option"},
        {"host.example secret_file=a secret_file=b", "secret_file= given twice"},
        {"host.example port=26", "unknown or incomplete option 'port=26'"},
        {"host.example unreachable=accept", "unknown or incomplete option"},
        {"host.example extra", "unknown or incomplete option 'extra'"},
        {"bad_name.example", "bad host name"},
        {"host.example\x01", "control or non-ASCII"},
        {"h\xc3\xa9.example", "control or non-ASCII"},
};

TEST(peer_refused)
{
	for (size_t i = 0; i < sizeof peer_bad / sizeof peer_bad[0]; i++) {
		struct peer_spec_peer p;
		char err[256] = "";
		int rc = peer_spec_parse_peer(peer_bad[i].line, &p, err, sizeof err);
		if (!CHECK_INT(rc, -1) || !CHECK(strstr(err, peer_bad[i].err) != NULL))
			printf("  case %zu: '%s' -> '%s'\n", i, peer_bad[i].line, err);
	}
}

TEST(peer_long_secret_path)
{
	char line[PEER_SPEC_PATH_MAX + 64], err[256];
	struct peer_spec_peer p;
	int n = snprintf(line, sizeof line, "h.example secret_file=");
	memset(line + n, 'a', PEER_SPEC_PATH_MAX - 1);
	line[n + PEER_SPEC_PATH_MAX - 1] = '\0';
	CHECK_INT(peer_spec_parse_peer(line, &p, err, sizeof err), 0);
	CHECK_INT(strlen(p.secret_file), PEER_SPEC_PATH_MAX - 1);
	strcat(line, "a");
	CHECK_INT(peer_spec_parse_peer(line, &p, err, sizeof err), -1);
	CHECK(strstr(err, "secret_file is longer") != NULL);
}

TEST(gateway_defaults_and_options)
{
	struct peer_spec_gateway g;
	char err[256];
	CHECK_INT(peer_spec_parse_gateway("Example.COM host=[10.0.0.5] minger=10.0.0.5", 0, &g, err,
	                                  sizeof err),
	          0);
	CHECK_STR(g.domain, "example.com");
	CHECK_INT(g.host.kind, NEXTHOP_KIND_ADDR);
	CHECK_INT(g.host.port, 25);
	CHECK_STR(g.minger.host, "10.0.0.5");
	CHECK_INT(g.minger.port, 4069);
	CHECK_STR(g.secret_file, "");
	CHECK_INT(g.unreachable, PEER_SPEC_UNREACHABLE_DEFER);
	CHECK_INT(g.domain_sharing, 0);
	CHECK_INT(peer_spec_parse_gateway("example.org minger=[::1]:4070 host=mx.example.org:2525 "
	                                  "unreachable=accept domain_sharing=yes secret_file=/s",
	                                  0, &g, err, sizeof err),
	          0);
	CHECK_INT(g.host.kind, NEXTHOP_KIND_MX);
	CHECK_STR(g.host.host, "mx.example.org");
	CHECK_INT(g.host.port, 2525);
	CHECK_STR(g.minger.host, "::1");
	CHECK_INT(g.minger.port, 4070);
	CHECK_INT(g.unreachable, PEER_SPEC_UNREACHABLE_ACCEPT);
	CHECK_INT(g.domain_sharing, 1);
	CHECK_STR(g.secret_file, "/s");
	CHECK_INT(peer_spec_parse_gateway("lan.example host=[lan-mx.example] minger=lan-mx.example "
	                                  "secret_file=f",
	                                  1, &g, err, sizeof err),
	          0);
	CHECK_INT(g.host.kind, NEXTHOP_KIND_HOST);
	CHECK_STR(g.minger.host, "lan-mx.example");
	CHECK_INT(g.unreachable, PEER_SPEC_UNREACHABLE_DEFER);
}

static const struct {
	const char *line;
	int forward;
	const char *err;
} gw_bad[] = {
        {"", 0, "is not a domain name"},
        {"host=x minger=y", 0, "'host=x' is not a domain name"},
        {"ex_ample.com host=a.example minger=b.example", 0, "is not a domain name"},
        {"example.com", 0, "needs host= and minger="},
        {"example.com host=a.example", 0, "needs host= and minger="},
        {"example.com minger=a.example", 1, "needs host= and minger="},
        {"example.com host=a.example minger=b.example host=c.example", 0, "host= given twice"},
        {"example.com host=[a.example minger=b.example", 0, "host=[a.example: '[' without ']'"},
        {"example.com host=a.example minger=b.example:99999", 0, "minger='b.example:99999'"},
        {"example.com host=a.example minger=b.example unreachable=later", 0,
         "unreachable= must be defer or accept"},
        {"example.com host=a.example minger=b.example domain_sharing=1", 0,
         "domain_sharing= must be yes or no"},
        {"example.com host=a.example minger=b.example unreachable=accept", 1,
         "unknown or incomplete option 'unreachable=accept'"},
        {"example.com host=a.example minger=b.example domain_sharing=yes", 1,
         "unknown or incomplete option"},
        {"example.com host=a.example minger=b.example minger_port=1", 0,
         "unknown or incomplete option"},
        {"example.com host= minger=b.example", 0, "incomplete option"},
        {"example.com host=a.example minger=b.example \x7f", 0, "control or non-ASCII"},
};

TEST(gateway_refused)
{
	for (size_t i = 0; i < sizeof gw_bad / sizeof gw_bad[0]; i++) {
		struct peer_spec_gateway g;
		char err[256] = "";
		int rc = peer_spec_parse_gateway(gw_bad[i].line, gw_bad[i].forward, &g, err,
		                                 sizeof err);
		if (!CHECK_INT(rc, -1) || !CHECK(strstr(err, gw_bad[i].err) != NULL))
			printf("  case %zu: '%s' -> '%s'\n", i, gw_bad[i].line, err);
	}
}

/* ---- the conf loader's checks of the three keys ---- */

static char tmpdir[PATH_MAX];

static void cleanup(void)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/t.conf", tmpdir);
	unlink(path);
	rmdir(tmpdir);
}

/* The temporary folder, made on first use (a test may run alone) and removed at exit. */
static void setup(void)
{
	if (tmpdir[0])
		return;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_peer_spec.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		printf("mkdtemp failed\n");
		exit(2);
	}
	atexit(cleanup);
}

static struct conf *load_text(const char *text, struct conf_errors *errs)
{
	char path[PATH_MAX + 16];
	setup();
	snprintf(path, sizeof path, "%s/t.conf", tmpdir);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		printf("cannot write %s\n", path);
		exit(2);
	}
	return conf_load_flags(path, CONF_LOAD_SKIP_SECRETS, errs);
}

TEST(conf_lines_accepted)
{
	struct conf_errors errs = {0};
	struct conf *c = load_text("domain_sharing = yes\n"
	                           "domain_sharing_host = b.example:2525 minger_port=4070\n"
	                           "domain_sharing_host = [IPv6:::1]\n"
	                           "gateway_domain = g.example host=[10.0.0.1] minger=10.0.0.1\n"
	                           "forward_domain = f.example host=[10.0.0.2] minger=10.0.0.2\n",
	                           &errs);
	if (!CHECK(c != NULL))
		conf_errors_print(&errs);
	if (c) {
		CHECK_INT(c->domain_sharing_host.n, 2);
		CHECK_STR(c->domain_sharing_host.v[0], "b.example:2525 minger_port=4070");
		CHECK_INT(c->gateway_domain.n, 1);
		CHECK_INT(c->forward_domain.n, 1);
	}
	conf_free(c);
	conf_errors_free(&errs);
}

static const struct {
	const char *text;
	int line;
	const char *message;
} conf_bad[] = {
        {"domain_sharing_host = b.example minger_port=0\n", 1,
         "domain_sharing_host 'b.example minger_port=0': minger_port must be 1-65535"},
        {"# x\n\ngateway_domain = g.example host=[10.0.0.1]\n", 3,
         "gateway_domain 'g.example host=[10.0.0.1]': g.example needs host= and minger="},
        {"forward_domain = f.example host=a.example minger=b.example unreachable=accept\n", 1,
         "forward_domain 'f.example host=a.example minger=b.example unreachable=accept': "
         "unknown or incomplete option 'unreachable=accept'"},
};

TEST(conf_lines_refused)
{
	for (size_t i = 0; i < sizeof conf_bad / sizeof conf_bad[0]; i++) {
		struct conf_errors errs = {0};
		struct conf *c = load_text(conf_bad[i].text, &errs);
		CHECK(c == NULL);
		conf_free(c);
		if (CHECK_INT(errs.n, 1)) {
			if (!CHECK_INT(errs.v[0].line, conf_bad[i].line) ||
			    !CHECK_STR(errs.v[0].message, conf_bad[i].message))
				printf("  case %zu\n", i);
		} else {
			conf_errors_print(&errs);
		}
		conf_errors_free(&errs);
	}
}

TEST_MAIN(T(peer_defaults), T(peer_options), T(peer_refused), T(peer_long_secret_path),
          T(gateway_defaults_and_options), T(gateway_refused), T(conf_lines_accepted),
          T(conf_lines_refused))
