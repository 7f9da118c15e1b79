/*
 * Unit tests for proto/collect_spec (collect_source lines): defaults, every
 * option, users holding '@', IPv6 hosts, the implicit-TLS scheme, refusals
 * naming the bad word, the source name and its matching, and the conf loader's
 * file:line errors for the collect_* keys.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "harness.h"
#include "proto/collect_spec.h"

TEST(spec_defaults)
{
	struct collect_spec s;
	char err[256];
	CHECK_INT(collect_spec_parse("pop3://dom@Pop.ISP.example password_file=isp.pw", &s, err,
	                             sizeof err),
	          0);
	CHECK_STR(s.user, "dom");
	CHECK_STR(s.host, "pop.isp.example");
	CHECK_INT(s.port, 110);
	CHECK_INT(s.tls, COLLECT_SPEC_TLS_STARTTLS);
	CHECK_STR(s.password_file, "isp.pw");
	CHECK_INT(s.interval, 300);
	CHECK_INT(s.leave_days, 0);
	CHECK(s.max_size == 10 * 1024 * 1024);
	CHECK_STR(s.name, "pop3://dom@pop.isp.example:110");
}

static const struct {
	const char *line;
	const char *user, *host;
	unsigned port;
	enum collect_spec_tls tls;
	int interval, leave_days;
	long long max_size;
	const char *name;
} good_lines[] = {
        {"pop3s://a@b.example password_file=f", "a", "b.example", 995, COLLECT_SPEC_TLS_IMPLICIT,
         300, 0, 10485760, "pop3s://a@b.example:995"},
        {"POP3S://a@b.example:9950 password_file=f tls=implicit", "a", "b.example", 9950,
         COLLECT_SPEC_TLS_IMPLICIT, 300, 0, 10485760, "pop3s://a@b.example:9950"},
        {"pop3://a@b.example password_file=f tls=implicit", "a", "b.example", 995,
         COLLECT_SPEC_TLS_IMPLICIT, 300, 0, 10485760, "pop3s://a@b.example:995"},
        {"pop3://domain@example.com@pop.isp.example:1110 password_file=f tls=none",
         "domain@example.com", "pop.isp.example", 1110, COLLECT_SPEC_TLS_NONE, 300, 0, 10485760,
         "pop3://domain@example.com@pop.isp.example:1110"},
        {"pop3://u@[2001:db8::1]:2110 password_file=f tls=NONE interval=30s leave_days=7 "
         "max_size=64k",
         "u", "2001:db8::1", 2110, COLLECT_SPEC_TLS_NONE, 30, 7, 65536,
         "pop3://u@[2001:db8::1]:2110"},
        {"\tpop3://u@127.0.0.1/  password_file=/x/y  interval=2h max_size=1g leave_days=0 ", "u",
         "127.0.0.1", 110, COLLECT_SPEC_TLS_STARTTLS, 7200, 0, 1073741824,
         "pop3://u@127.0.0.1:110"},
        {"pop3://u:x@h.example password_file=f interval=7d max_size=2147483647", "u:x", "h.example",
         110, COLLECT_SPEC_TLS_STARTTLS, 604800, 0, 2147483647, "pop3://u:x@h.example:110"},
};

TEST(spec_good)
{
	for (size_t i = 0; i < sizeof good_lines / sizeof good_lines[0]; i++) {
		struct collect_spec s;
		char err[256] = "";
		if (!CHECK_INT(collect_spec_parse(good_lines[i].line, &s, err, sizeof err), 0)) {
			printf("  case %zu: %s\n", i, err);
			continue;
		}
		int ok = CHECK_STR(s.user, good_lines[i].user) &
		         CHECK_STR(s.host, good_lines[i].host) &
		         CHECK_INT(s.port, good_lines[i].port) &
		         CHECK_INT(s.tls, good_lines[i].tls) &
		         CHECK_INT(s.interval, good_lines[i].interval) &
		         CHECK_INT(s.leave_days, good_lines[i].leave_days) &
		         CHECK(s.max_size == good_lines[i].max_size) &
		         CHECK_STR(s.name, good_lines[i].name);
		if (!ok)
			printf("  case %zu\n", i);
	}
}

static const struct {
	const char *line;
	const char *err; /* a part of the reason */
} bad_lines[] = {
        {"", "empty"},
        {"   ", "empty"},
        {"imap://u@h password_file=f", "first word must be pop3://"},
        {"u@h password_file=f", "first word must be pop3://"},
        {"pop3://h.example password_file=f", "no user given"},
        {"pop3://@h.example password_file=f", "no user given"},
        {"pop3://u@ password_file=f", "no host given"},
        {"pop3://u@:110 password_file=f", "no host given"},
        {"pop3://u@2001:db8::1 password_file=f", "host '2001:db8::1'"},
        {"pop3://u@h.example:0 password_file=f", "host 'h.example:0'"},
        {"pop3://u@h.example:65536 password_file=f", "host 'h.example:65536'"},
        {"pop3://u@h.example/INBOX password_file=f", "no path"},
        {"pop3://u;AUTH=*@h.example password_file=f", "no path"},
        {"pop3://u@h.example", "password_file= is missing"},
        {"pop3://u@h.example password_file=", "incomplete option 'password_file='"},
        {"pop3://u@h.example password_file=f password_file=g", "password_file= given twice"},
        {"pop3://u@h.example password_file=f tls=maybe", "tls= must be"},
        {"pop3s://u@h.example password_file=f tls=starttls", "tls= may only be implicit"},
        {"pop3s://u@h.example password_file=f tls=none", "tls= may only be implicit"},
        {"pop3://u@h.example password_file=f interval=0", "interval= must be"},
        {"pop3://u@h.example password_file=f interval=8d", "interval= must be"},
        {"pop3://u@h.example password_file=f interval=5x", "interval= must be"},
        {"pop3://u@h.example password_file=f interval=m", "interval= must be"},
        {"pop3://u@h.example password_file=f interval=99999999999999999999", "interval= must be"},
        {"pop3://u@h.example password_file=f leave_days=-1", "leave_days= must be"},
        {"pop3://u@h.example password_file=f leave_days=3651", "leave_days= must be"},
        {"pop3://u@h.example password_file=f leave_days=1d", "leave_days= must be"},
        {"pop3://u@h.example password_file=f max_size=100", "max_size= must be"},
        {"pop3://u@h.example password_file=f max_size=3g", "max_size= must be"},
        {"pop3://u@h.example password_file=f max_size=1t", "max_size= must be"},
        {"pop3://u@h.example password_file=f bogus=1", "unknown or incomplete option 'bogus=1'"},
        {"pop3://u@h.example password_file=f tls", "unknown or incomplete option 'tls'"},
        {"pop3://u\x01@h.example password_file=f", "control or non-ASCII"},
        {"pop3://\xc3\xa9@h.example password_file=f", "control or non-ASCII"},
};

TEST(spec_bad)
{
	for (size_t i = 0; i < sizeof bad_lines / sizeof bad_lines[0]; i++) {
		struct collect_spec s;
		char err[256] = "";
		int rc = collect_spec_parse(bad_lines[i].line, &s, err, sizeof err);
		if (!CHECK_INT(rc, -1) || !CHECK(strstr(err, bad_lines[i].err) != NULL))
			printf("  case %zu: '%s'\n", i, err);
	}
}

TEST(spec_long_fields)
{
	char line[4096], err[256];
	struct collect_spec s;
	/* A user of 255 octets is taken, 256 is refused. */
	char user[300];
	memset(user, 'u', 256);
	user[255] = '\0';
	snprintf(line, sizeof line, "pop3://%s@h.example password_file=f", user);
	CHECK_INT(collect_spec_parse(line, &s, err, sizeof err), 0);
	CHECK_INT(strlen(s.user), 255);
	user[255] = 'u';
	user[256] = '\0';
	snprintf(line, sizeof line, "pop3://%s@h.example password_file=f", user);
	CHECK_INT(collect_spec_parse(line, &s, err, sizeof err), -1);
	CHECK(strstr(err, "longer than 255") != NULL);
	char path[COLLECT_SPEC_PATH_MAX + 10];
	memset(path, 'p', sizeof path - 1);
	path[sizeof path - 1] = '\0';
	snprintf(line, sizeof line, "pop3://u@h.example password_file=%s", path);
	CHECK_INT(collect_spec_parse(line, &s, err, sizeof err), -1);
	CHECK(strstr(err, "password_file is longer") != NULL);
}

TEST(spec_matches)
{
	struct collect_spec s;
	char err[256];
	CHECK_INT(collect_spec_parse("pop3://dom@x.example@Pop.Isp.example:1110 password_file=f",
	                             &s, err, sizeof err),
	          0);
	CHECK(collect_spec_matches(&s, "pop3://dom@x.example@pop.isp.example:1110"));
	CHECK(collect_spec_matches(&s, "pop3://dom@x.example@pop.isp.example"));
	CHECK(collect_spec_matches(&s, "dom@x.example@pop.isp.example"));
	CHECK(collect_spec_matches(&s, "dom@x.example@pop.isp.example:1110"));
	CHECK(collect_spec_matches(&s, "POP.isp.example"));
	CHECK(!collect_spec_matches(&s, "pop3://other@pop.isp.example:1110"));
	CHECK(!collect_spec_matches(&s, "isp.example"));
	CHECK(!collect_spec_matches(&s, "pop3://dom@x.example@pop.isp.example:110"));
	CHECK(!collect_spec_matches(&s, ""));
}

static char tmpdir[PATH_MAX];

static void cleanup(void)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/t.conf", tmpdir);
	unlink(path);
	rmdir(tmpdir);
}

static struct conf *load_text(const char *text, struct conf_errors *errs)
{
	char path[PATH_MAX + 16];
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof tmpdir, "/tmp/test_collect_spec.XXXXXX");
		if (!mkdtemp(tmpdir)) {
			printf("mkdtemp failed\n");
			exit(2);
		}
		atexit(cleanup);
	}
	snprintf(path, sizeof path, "%s/t.conf", tmpdir);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		printf("cannot write %s\n", path);
		exit(2);
	}
	return conf_load_flags(path, CONF_LOAD_SKIP_SECRETS, errs);
}

TEST(conf_defaults_collect)
{
	struct conf *c = conf_defaults();
	if (!CHECK(c != NULL))
		return;
	CHECK_INT(c->collect_source.n, 0);
	if (CHECK_INT(c->collect_headers.n, 6)) {
		CHECK_STR(c->collect_headers.v[0], "X-Rcpt-To");
		CHECK_STR(c->collect_headers.v[3], "Delivered-To");
		CHECK_STR(c->collect_headers.v[5], "X-Envelope-To");
	}
	CHECK_INT(c->collect_parse_to_cc, 1);
	CHECK_INT(c->collect_parse_received, 1);
	CHECK(c->collect_received_by == NULL);
	CHECK(c->collect_fallback == NULL);
	CHECK_STR(c->collect_dedupe, "message-id");
	CHECK_INT(c->collect_dedupe_days, 7);
	CHECK(c->collect_copy_dir == NULL);
	conf_free(c);
}

TEST(conf_collect_accepted)
{
	struct conf_errors errs = {0};
	struct conf *c = load_text("collect_source = pop3://a@b.example password_file=pw tls=none\n"
	                           "collect_source = pop3s://c@d.example password_file=pw\n"
	                           "collect_headers = X-Delivered-To\n"
	                           "collect_headers = Envelope-To X-Delivered-To\n"
	                           "collect_received_by = MX.Isp.example\n"
	                           "collect_fallback = Catch@Example.com\n"
	                           "collect_dedupe = date\n"
	                           "collect_dedupe_days = 30\n"
	                           "collect_copy_dir = copies\n",
	                           &errs);
	if (!CHECK(c != NULL))
		conf_errors_print(&errs);
	if (c) {
		CHECK_INT(c->collect_source.n, 2);
		/* The file's lines replace the default list (repeats change nothing). */
		if (CHECK_INT(c->collect_headers.n, 2)) {
			CHECK_STR(c->collect_headers.v[0], "X-Delivered-To");
			CHECK_STR(c->collect_headers.v[1], "Envelope-To");
		}
		CHECK_STR(c->collect_received_by, "mx.isp.example");
		CHECK_STR(c->collect_fallback, "catch@example.com");
		CHECK_STR(c->collect_dedupe, "date");
		CHECK_INT(c->collect_dedupe_days, 30);
		CHECK(c->collect_copy_dir && c->collect_copy_dir[0] == '/' &&
		      strstr(c->collect_copy_dir, "/copies") != NULL);
	}
	conf_free(c);
	conf_errors_free(&errs);
}

static const struct {
	const char *text;
	int line;
	const char *message; /* a part of it */
} conf_bad[] = {
        {"# x\ncollect_source = pop3://a@b.example\n", 2,
         "collect_source 'pop3://a@b.example': password_file= is missing"},
        {"collect_source = pop3://a@b.example password_file=p\ncollect_source = imap://x\n", 2,
         "collect_source 'imap://x': the first word must be"},
        {"collect_headers = X-Rcpt-To Bad:Name\n", 1, "'Bad:Name' in collect_headers"},
        {"collect_fallback = not an address\n", 1, "in collect_fallback is not a mail address"},
        {"collect_dedupe = subject\n", 1, "collect_dedupe must be one of message-id|date|none"},
        {"collect_dedupe_days = 0\n", 1, "collect_dedupe_days"},
        {"\ncollect_received_by = -bad-\n", 2, "collect_received_by"},
};

TEST(conf_collect_refused)
{
	for (size_t i = 0; i < sizeof conf_bad / sizeof conf_bad[0]; i++) {
		struct conf_errors errs = {0};
		struct conf *c = load_text(conf_bad[i].text, &errs);
		CHECK(c == NULL);
		conf_free(c);
		if (CHECK_INT(errs.n, 1)) {
			if (!CHECK_INT(errs.v[0].line, conf_bad[i].line) ||
			    !CHECK(strstr(errs.v[0].message, conf_bad[i].message) != NULL))
				printf("  case %zu: %s\n", i, errs.v[0].message);
		} else {
			conf_errors_print(&errs);
		}
		conf_errors_free(&errs);
	}
}

TEST_MAIN(T(spec_defaults), T(spec_good), T(spec_bad), T(spec_long_fields), T(spec_matches),
          T(conf_defaults_collect), T(conf_collect_accepted), T(conf_collect_refused))
