/*
 * Unit tests for conf: defaults, every type, every error message with its line,
 * the secret file, cross-key checks, and that doc/sharemail.conf.5 and
 * etc/sharemail.conf agree with the schema (run with cwd = the repository root).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "harness.h"

#define SECRET_OK "0123456789abcdef"

static char tmpdir[PATH_MAX];

/*
 * Writes len octets to tmpdir/name, mode 0600 (a secret file open to others gets a
 * warning); returns the path in a static buffer.
 */
static const char *write_file(const char *name, const char *text, size_t len)
{
	static char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	if (!f || fwrite(text, 1, len, f) != len || fchmod(fileno(f), 0600) != 0) {
		printf("cannot write %s\n", path);
		exit(2);
	}
	fclose(f);
	return path;
}

static const char *write_text(const char *name, const char *text)
{
	return write_file(name, text, strlen(text));
}

/* Loads text as tmpdir/t.conf (with a good secrets.txt next to it). */
static struct conf *load_text(const char *text, struct conf_errors *errs)
{
	char path[PATH_MAX + 64];
	write_text("secrets.txt", "# comment\n\n" SECRET_OK "\n");
	snprintf(path, sizeof path, "%s", write_text("t.conf", text));
	return conf_load(path, errs);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	size_t r;
	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (buf)
		buf[n] = '\0';
	*len = n;
	return buf;
}

TEST(defaults)
{
	struct conf *c = conf_defaults();
	if (!CHECK(c != NULL))
		return;
	CHECK(c->hostname != NULL && c->hostname[0] != '\0');
	CHECK_STR(c->state_dir, "/var/lib/sharemail");
	CHECK_STR(c->log_level, "info");
	CHECK_INT(c->local_domains.n, 0);
	CHECK_INT(c->minger_listen.n, 0);
	CHECK(c->minger_secret_file == NULL);
	CHECK_INT(c->minger_anonymous, 0);
	CHECK_INT(c->minger_compat, 1);
	CHECK_INT(c->minger_allow.n, 0);
	CHECK_INT(c->minger_foreign_aliases_active, 0);
	CHECK_INT(c->minger_threads, 1);
	CHECK_INT(c->minger_rate_per_source, 50);
	CHECK_INT(c->minger_rate_global, 20000);
	CHECK_INT(c->minger_source_table_size, 16384);
	CHECK_INT(c->minger_replay_window, 60);
	CHECK_INT(c->minger_strict_amplification, 0);
	CHECK_INT(c->minger_timeout_ms, 2000);
	CHECK_INT(c->minger_retries, 2);
	CHECK_INT(c->minger_require_reply_mac, 0);
	CHECK_INT(c->minger_cache, 1);
	CHECK_INT(c->minger_cache_positive_ttl, 5 * 86400);
	CHECK_INT(c->minger_cache_negative_ttl, 3600);
	conf_free(c);
	conf_free(NULL);
}

TEST(schema_sane)
{
	static const char *const types[] = {"string",   "path",    "bool",  "int", "list",
	                                    "addrlist", "netlist", "lines", "rate"};
	size_t n = conf_schema_count();
	CHECK(n >= 26);
	CHECK(conf_schema_doc(n) == NULL);
	for (size_t i = 0; i < n; i++) {
		const struct conf_key_doc *d = conf_schema_doc(i);
		int known = 0;
		for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
			known |= strcmp(d->type, types[t]) == 0;
		CHECK(known);
		CHECK(d->doc[0] != '\0' && strchr(d->doc, '\n') == NULL);
		CHECK(strspn(d->name, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(d->name));
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(d->name, conf_schema_doc(j)->name) != 0);
		if (strcmp(d->type, "int") == 0) {
			long lo, hi;
			char tail;
			CHECK_INT(sscanf(d->range, "%ld-%ld%c", &lo, &hi, &tail), 2);
			CHECK(lo <= hi);
		}
	}
}

/* Every field, set from a file, with paths resolved against the file's folder. */
TEST(load_every_type)
{
	struct conf_errors errs = {0};
	char want[PATH_MAX + 64];
	struct conf *c = load_text("# a comment\n"
	                           "   \t\n"
	                           "  hostname\t=  MX1.Example.COM  \r\n"
	                           "state_dir = state\n"
	                           "local_domains = Example.COM example.org\n"
	                           "local_domains = EXAMPLE.com xn--bcher-kva.example\n"
	                           "log_level = debug\n"
	                           "minger_listen = 127.0.0.1:4069 [::1]:4069\n"
	                           "minger_listen = localhost:4070\n"
	                           "smtp_listen = *:2525\n"
	                           "minger_secret_file = secrets.txt\n"
	                           "minger_allow = 192.0.2.0/24\n"
	                           "minger_allow = 2001:db8::/32 127.0.0.1\n"
	                           "minger_anonymous = On\n"
	                           "minger_compat = false\n"
	                           "minger_threads = 64\n"
	                           "minger_rate_per_source = 0\n"
	                           "minger_replay_window = 2m\n"
	                           "minger_cache_positive_ttl = 7d\n"
	                           "minger_cache_negative_ttl = 90\n"
	                           "minger_timeout_ms = 100\n",
	                           &errs);
	conf_errors_print(&errs);
	if (!CHECK(c != NULL)) {
		conf_errors_free(&errs);
		return;
	}
	CHECK_INT(errs.n, 0);
	CHECK_STR(c->hostname, "mx1.example.com");
	snprintf(want, sizeof want, "%s/state", tmpdir);
	CHECK_STR(c->state_dir, want);
	snprintf(want, sizeof want, "%s/secrets.txt", tmpdir);
	CHECK_STR(c->minger_secret_file, want);
	snprintf(want, sizeof want, "%s/t.conf", tmpdir);
	CHECK_STR(c->path, want);
	CHECK_INT(c->local_domains.n, 3); /* the repeat is stored once */
	CHECK_STR(c->local_domains.v[0], "example.com");
	CHECK_STR(c->local_domains.v[1], "example.org");
	CHECK_STR(c->local_domains.v[2], "xn--bcher-kva.example");
	CHECK_STR(c->log_level, "debug");
	CHECK_INT(c->minger_listen.n, 3);
	CHECK_STR(c->minger_listen.text[1], "[::1]:4069");
	CHECK_INT(netaddr_port((struct sockaddr *)&c->minger_listen.v[2].ss), 4070);
	CHECK_INT(c->smtp_listen.n, 1);
	CHECK_INT(c->minger_allow.n, 3);
	CHECK_INT(c->minger_allow.v[1].prefix, 32);
	CHECK_INT(c->minger_allow.v[2].prefix, 32);
	CHECK_INT(c->minger_anonymous, 1);
	CHECK_INT(c->minger_compat, 0);
	CHECK_INT(c->minger_threads, 64);
	CHECK_INT(c->minger_rate_per_source, 0);
	CHECK_INT(c->minger_replay_window, 120);
	CHECK_INT(c->minger_cache_positive_ttl, 7 * 86400);
	CHECK_INT(c->minger_cache_negative_ttl, 90);
	CHECK_INT(c->minger_timeout_ms, 100);
	CHECK_INT(c->minger_retries, 2); /* unset: default */
	CHECK_INT(conf_is_local_domain(c, "EXAMPLE.ORG", 11), 1);
	CHECK_INT(conf_is_local_domain(c, "example.orgx", 11), 1);
	CHECK_INT(conf_is_local_domain(c, "example.or", 10), 0);
	CHECK_INT(conf_is_local_domain(c, "example.net", 11), 0);
	char sp[PATH_MAX + 64], tiny[8];
	CHECK_INT(conf_state_path(c, "directory.db", sp, sizeof sp), 0);
	snprintf(want, sizeof want, "%s/state/directory.db", tmpdir);
	CHECK_STR(sp, want);
	CHECK_INT(conf_state_path(c, "directory.db", tiny, sizeof tiny), -1);
	conf_free(c);
}

struct value_case {
	const char *line;
	const char *field; /* which int field to check, by key */
	int want;
};

static const struct value_case value_cases[] = {
        {"minger_anonymous = yes", "minger_anonymous", 1},
        {"minger_anonymous = TRUE", "minger_anonymous", 1},
        {"minger_anonymous = on", "minger_anonymous", 1},
        {"minger_anonymous = 1", "minger_anonymous", 1},
        {"minger_cache = No", "minger_cache", 0},
        {"minger_cache = false", "minger_cache", 0},
        {"minger_cache = OFF", "minger_cache", 0},
        {"minger_cache = 0", "minger_cache", 0},
        {"minger_threads = 1", "minger_threads", 1},
        {"minger_threads = 007", "minger_threads", 7},
        {"minger_rate_global = 10000000", "minger_rate_global", 10000000},
        {"minger_replay_window = 5", "minger_replay_window", 5},
        {"minger_replay_window = 5s", "minger_replay_window", 5},
        {"minger_replay_window = 1h", "minger_replay_window", 3600},
        {"minger_cache_positive_ttl = 30d", "minger_cache_positive_ttl", 2592000},
        {"minger_cache_negative_ttl = 1s", "minger_cache_negative_ttl", 1},
        {"minger_cache_negative_ttl = 15m", "minger_cache_negative_ttl", 900},
};

static int int_field(const struct conf *c, const char *name)
{
	if (strcmp(name, "minger_anonymous") == 0)
		return c->minger_anonymous;
	if (strcmp(name, "minger_cache") == 0)
		return c->minger_cache;
	if (strcmp(name, "minger_threads") == 0)
		return c->minger_threads;
	if (strcmp(name, "minger_rate_global") == 0)
		return c->minger_rate_global;
	if (strcmp(name, "minger_replay_window") == 0)
		return c->minger_replay_window;
	if (strcmp(name, "minger_cache_positive_ttl") == 0)
		return c->minger_cache_positive_ttl;
	if (strcmp(name, "minger_cache_negative_ttl") == 0)
		return c->minger_cache_negative_ttl;
	return -12345;
}

TEST(values_table)
{
	for (size_t i = 0; i < sizeof value_cases / sizeof value_cases[0]; i++) {
		struct conf_errors errs = {0};
		char text[256];
		snprintf(text, sizeof text, "%s\n", value_cases[i].line);
		struct conf *c = load_text(text, &errs);
		if (!CHECK(c != NULL)) {
			printf("  '%s' refused\n", value_cases[i].line);
			conf_errors_free(&errs);
			continue;
		}
		if (!CHECK_INT(int_field(c, value_cases[i].field), value_cases[i].want))
			printf("  '%s'\n", value_cases[i].line);
		conf_free(c);
	}
}

/* One bad line each: the exact message ("{T}" stands for tmpdir) and its line number. */
struct error_case {
	const char *text;
	int line;
	const char *message;
};

static const struct error_case error_cases[] = {
        {"foo = 1\n", 1, "unknown key 'foo'"},
        {"# c\nHostname = x.example\n", 2, "unknown key 'Hostname' (did you mean 'hostname'?)"},
        {"minger_secrets_file = s\n", 1,
         "unknown key 'minger_secrets_file' (did you mean 'minger_secret_file'?)"},
        {"smtp_max_msg_size = 1m\n", 1,
         "unknown key 'smtp_max_msg_size' (did you mean 'smtp_max_message_size'?)"},
        {"relay_route = example.net\n", 1,
         "relay_route 'example.net': route for example.net names no host"},
        {"relay_route = example.net [mx.example.net\n", 1,
         "relay_route 'example.net [mx.example.net': '[mx.example.net': '[' without ']'"},
        {"relay_smarthost = relay.example:99999\n", 1,
         "relay_smarthost 'relay.example:99999': 'relay.example:99999': bad port (want "
         "HOST:1-65535)"},
        {"dns_nameserver = 127.0.0.1 ns.example\n", 1,
         "dns_nameserver: 'ns.example' is not an IP address (no names but localhost are looked "
         "up)"},
        {"queue_retry_interval = 5m\n", 1,
         "queue_retry_interval is no longer a key: use queue_retry_initial and queue_retry_max "
         "(the wait doubles from the first to the second)"},
        {"log = debug\n", 1, "unknown key 'log'"},
        {"screen_auth_failures = 5\n", 1,
         "value '5' for screen_auth_failures is not COUNT/DURATION (e.g. 5/10m)"},
        {"screen_auth_failures = 5/10x\n", 1,
         "value '5/10x' for screen_auth_failures is not COUNT/DURATION (e.g. 5/10m; suffixes s, "
         "m, h, d)"},
        {"screen_auth_failures = /10m\n", 1,
         "value '/10m' for screen_auth_failures is not COUNT/DURATION (e.g. 5/10m; suffixes s, "
         "m, h, d)"},
        {"\nscreen_connection_rate = 1001/1m\n", 2,
         "screen_connection_rate: COUNT must be between 0 and 1000"},
        {"screen_unknown_recipients = 5/0\n", 1,
         "screen_unknown_recipients: DURATION must be between 1 and 604800 seconds"},
        {"screen_unknown_recipients = 5/8d\n", 1,
         "screen_unknown_recipients: DURATION must be between 1 and 604800 seconds"},
        {"screen_auth_failures = 5/10m\nscreen_auth_failures = 6/10m\n", 2,
         "'screen_auth_failures' may appear only once (first at line 1)"},
        {"state = /x\n", 1, "unknown key 'state'"},
        {"minger_threads = abc\n", 1, "value 'abc' for minger_threads is not a number"},
        {"minger_threads = 4 # four\n", 1, "value '4 # four' for minger_threads is not a number"},
        {"minger_threads = 0\n", 1, "minger_threads must be between 1 and 64"},
        {"minger_threads = 65\n", 1, "minger_threads must be between 1 and 64"},
        {"minger_threads = -1\n", 1, "minger_threads must be between 1 and 64"},
        {"minger_threads = 99999999999999999999999999\n", 1,
         "minger_threads must be between 1 and 64"},
        {"minger_threads = 4s\n", 1, "value '4s' for minger_threads is not a number"},
        {"minger_threads = +4\n", 1, "value '+4' for minger_threads is not a number"},
        {"minger_threads = 4 4\n", 1, "value '4 4' for minger_threads is not a number"},
        {"minger_replay_window = 2h\n", 1,
         "minger_replay_window must be between 5 and 3600 seconds"},
        {"minger_replay_window = 1w\n", 1,
         "value '1w' for minger_replay_window is not a number (of seconds; suffixes s, m, h, d)"},
        {"minger_replay_window = 10ss\n", 1,
         "value '10ss' for minger_replay_window is not a number (of seconds; suffixes s, m, h, d)"},
        {"minger_replay_window = m\n", 1,
         "value 'm' for minger_replay_window is not a number (of seconds; suffixes s, m, h, d)"},
        {"minger_cache_positive_ttl = 999999999999999999d\n", 1,
         "minger_cache_positive_ttl must be between 1 and 2592000 seconds"},
        {"log_level = debug\nminger_threads = 2\nminger_threads = 3\n", 3,
         "'minger_threads' may appear only once (first at line 2)"},
        {"hostname = a.example\n\nhostname = b.example\n", 3,
         "'hostname' may appear only once (first at line 1)"},
        {"hostname\n", 1, "missing '='"},
        {" = x\n", 1, "missing key before '='"},
        {"state_dir =\n", 1, "no value for 'state_dir'"},
        {"minger_cache = maybe\n", 1, "value 'maybe' for minger_cache is not yes or no"},
        {"log_level = verbose\n", 1,
         "log_level must be one of err|warning|info|debug (not 'verbose')"},
        {"log_level = INFO\n", 1, "log_level must be one of err|warning|info|debug (not 'INFO')"},
        {"hostname = mx_1.example\n", 1, "'mx_1.example' for hostname is not a domain name"},
        {"local_domains = ok.example -bad.example\n", 1,
         "'-bad.example' in local_domains is not a domain name"},
        {"local_domains = bad-.example\n", 1,
         "'bad-.example' in local_domains is not a domain name"},
        {"local_domains = a..example\n", 1, "'a..example' in local_domains is not a domain name"},
        {"local_domains = example.com.\n", 1,
         "'example.com.' in local_domains is not a domain name"},
        {"local_domains = 192.0.2.1\n", 1, "'192.0.2.1' in local_domains is not a domain name"},
        {"local_domains = user@example.com\n", 1,
         "'user@example.com' in local_domains is not a domain name"},
        {"local_domains = "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example\n",
         1,
         "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' in local_domains "
         "is "
         "not a domain name"},
        {"local_domains = caf\xc3\xa9.example\n", 1,
         "'caf??.example' in local_domains is not a domain name"},
        {"minger_listen = 127.0.0.1:0\nminger_anonymous = yes\n", 1,
         "minger_listen: port 0 is not allowed in '127.0.0.1:0'"},
        {"smtp_listen = 127.0.0.1\n", 1, "smtp_listen: missing ':PORT' in '127.0.0.1'"},
        {"pop3_listen = 127.0.0.1:70000\n", 1,
         "pop3_listen: '70000' is not a port number (1-65535)"},
        {"local_domains = a.example\npop3s_listen = 127.0.0.1:995\n", 2,
         "pop3s_listen is set but tls_cert_file is not (implicit TLS needs a certificate)"},
        {"pop3_command_timeout = 5m\n", 1,
         "pop3_command_timeout must be between 600 and 86400 seconds"},
        {"smtp_listen = mail.example:25\n", 1,
         "smtp_listen: 'mail.example' is not an IP address (no names but localhost are looked up)"},
        {"smtp_listen = ::1:25\n", 1,
         "smtp_listen: IPv6 addresses must be written in brackets, like [::1]:25, not '::1:25'"},
        {"smtp_listen = 127.0.0.1:25\nsmtp_listen = localhost:25\nlocal_domains = x.example\n", 2,
         "smtp_listen: 'localhost:25' is listed twice"},
        {"smtp_listen = 127.0.0.1:25\nsubmission_listen = localhost:25\nlocal_domains = "
         "a.example\n",
         2,
         "submission_listen: 'localhost:25' is also in smtp_listen (line 1); the daemon cannot "
         "bind it twice"},
        {"local_domains = a.example\nsmtp_listen = [::1]:25\n\npop3_listen = [::]:25\n", 4,
         "pop3_listen: '[::]:25' overlaps '[::1]:25' (smtp_listen, line 2); the daemon cannot "
         "bind both"},
        {"smtp_listen = 127.0.0.1:25\n", 0,
         "local_domains is not set, so this server holds no mailbox: mail for it would be "
         "refused and every Minger query answered unknown"},
        {"state_dir = secrets.txt\n", 1, "state_dir {T}/secrets.txt exists but is not a directory"},
        {"state_dir = secrets.txt/x\n", 1, "state_dir {T}/secrets.txt/x: Not a directory"},
        {"minger_allow = 192.0.2.1/24\n", 1,
         "minger_allow: '192.0.2.1/24' has bits set after its prefix length"},
        {"minger_allow = 10.0.0.0/40\n", 1, "minger_allow: '40' is not a prefix length (0-32)"},
        {"minger_allow = example.com\n", 1, "minger_allow: 'example.com' is not an IP address"},
        {"\nminger_secret_file = missing.txt\n", 2,
         "cannot open minger_secret_file {T}/missing.txt: No such file or directory"},
        {"minger_secret_file = .\n", 1, "cannot open minger_secret_file {T}/.: Is a directory"},
        {"minger_listen = 127.0.0.1:4069\nlocal_domains = a.example\n", 1,
         "minger_listen is set but there is neither a minger_secret_file nor minger_anonymous = "
         "yes, so no query could ever be answered"},
        {"\n\nminger_require_reply_mac = yes\n", 3,
         "minger_require_reply_mac = yes needs a minger_secret_file"},
        {"hostname = a\x1b[2Jb.example\n", 1, "line contains a control character"},
        {"hostname = a\x7f.example\n", 1, "line contains a control character"},
};

TEST(errors_table)
{
	for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
		const struct error_case *e = &error_cases[i];
		struct conf_errors errs = {0};
		struct conf *c = load_text(e->text, &errs);
		CHECK(c == NULL);
		conf_free(c);
		if (!CHECK_INT(errs.n, 1)) {
			printf("  case %zu:\n", i);
			conf_errors_print(&errs);
		}
		if (errs.n >= 1) {
			char want[PATH_MAX + 512];
			const char *t = strstr(e->message, "{T}");
			if (t)
				snprintf(want, sizeof want, "%.*s%s%s", (int)(t - e->message),
				         e->message, tmpdir, t + 3);
			else
				snprintf(want, sizeof want, "%s", e->message);
			if (!CHECK_INT(errs.v[0].line, e->line) ||
			    !CHECK_STR(errs.v[0].message, want) ||
			    !CHECK_INT(errs.v[0].severity, CONF_SEVERITY_ERROR))
				printf("  case %zu\n", i);
		}
		conf_errors_free(&errs);
		CHECK(errs.n == 0 && errs.v == NULL);
	}
}

/* Every problem is reported, not only the first, each at its own line. */
TEST(all_errors_collected)
{
	struct conf_errors errs = {0};
	struct conf *c = load_text("foo = 1\n"
	                           "minger_threads = abc\n"
	                           "ok_comment_next\n"
	                           "# minger_threads = 1\n"
	                           "minger_retries = 11\n"
	                           "local_domains = good.example bad_one also..bad\n"
	                           "minger_threads = 3\n",
	                           &errs);
	CHECK(c == NULL);
	static const int lines[] = {1, 2, 3, 5, 6, 6, 7};
	if (CHECK_INT(errs.n, sizeof lines / sizeof lines[0]))
		for (size_t i = 0; i < errs.n; i++)
			CHECK_INT(errs.v[i].line, lines[i]);
	CHECK_STR(errs.n == 7 ? errs.v[6].message : NULL,
	          "'minger_threads' may appear only once (first at line 2)");
	conf_errors_free(&errs);
}

TEST(raw_line_problems)
{
	char big[5000];
	struct conf_errors errs = {0};
	/* 4096 octets is the limit: exactly that is fine. */
	size_t n = (size_t)snprintf(big, sizeof big, "# ");
	memset(big + n, 'x', 4096 - n);
	memcpy(big + 4096, "\nminger_threads = 2\n", 21);
	const char *p = write_text("long.conf", big);
	struct conf *c = conf_load(p, &errs);
	CHECK(c != NULL);
	CHECK_INT(errs.n, 0);
	if (c)
		CHECK_INT(c->minger_threads, 2);
	conf_free(c);
	/* One more octet is an error, and the next line is still read. */
	memset(big + n, 'x', 4097 - n);
	memcpy(big + 4097, "\nminger_threads = 0\n", 21);
	p = write_text("long.conf", big);
	c = conf_load(p, &errs);
	CHECK(c == NULL);
	if (CHECK_INT(errs.n, 2)) {
		CHECK_INT(errs.v[0].line, 1);
		CHECK_STR(errs.v[0].message, "line is longer than 4096 octets");
		CHECK_INT(errs.v[1].line, 2);
	}
	conf_errors_free(&errs);
	/* A NUL octet, then a last line with no newline that is still read. */
	static const char nul[] = "minger_threads = 2\0\nminger_retries = 99";
	p = write_file("nul.conf", nul, sizeof nul - 1);
	c = conf_load(p, &errs);
	CHECK(c == NULL);
	if (CHECK_INT(errs.n, 2)) {
		CHECK_INT(errs.v[0].line, 1);
		CHECK_STR(errs.v[0].message, "line contains a NUL octet");
		CHECK_INT(errs.v[1].line, 2);
		CHECK_STR(errs.v[1].message, "minger_retries must be between 0 and 10");
	}
	conf_errors_free(&errs);
	/* An empty file is a valid configuration (every default). */
	p = write_text("empty.conf", "");
	c = conf_load(p, &errs);
	CHECK(c != NULL);
	CHECK_INT(errs.n, 0);
	conf_free(c);
}

TEST(cannot_open)
{
	struct conf_errors errs = {0};
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/does-not-exist.conf", tmpdir);
	CHECK(conf_load(path, &errs) == NULL);
	if (CHECK_INT(errs.n, 1)) {
		CHECK_STR(errs.v[0].file, path);
		CHECK_INT(errs.v[0].line, 0);
		CHECK_STR(errs.v[0].message, "cannot open: No such file or directory");
	}
	conf_errors_free(&errs);
	CHECK(conf_load(tmpdir, &errs) == NULL);
	if (CHECK_INT(errs.n, 1))
		CHECK_STR(errs.v[0].message, "cannot open: Is a directory");
	conf_errors_free(&errs);
}

struct secret_case {
	const char *text;
	int want; /* count, or -1 */
	int line;
	const char *message;
};

static const struct secret_case secret_cases[] = {
        {SECRET_OK "\n", 1, 0, NULL},
        {"# one\n\n  " SECRET_OK "  \r\nanother-secret-0123456789\n", 2, 0, NULL},
        {"01234567890123456789012345678901234567890123456789\n", 1, 0, NULL},
        {"short-secret\n", -1, 1, "secret is shorter than 16 characters"},
        {SECRET_OK "\n\n012345678901234567890123456789012345678901234567890\n", -1, 3,
         "secret is longer than 50 characters"},
        {"0123456789 abcdef\n", -1, 1,
         "secret contains a space or a character that is not printable ASCII"},
        {"0123456789abcdef\xc3\xa9\n", -1, 1,
         "secret contains a space or a character that is not printable ASCII"},
        {"# only comments\n\n", -1, 0, "holds no secret"},
        {"", -1, 0, "holds no secret"},
        {"0123456789abc\001def\n", -1, 1, "line contains a control character"},
};

TEST(secrets_table)
{
	for (size_t i = 0; i < sizeof secret_cases / sizeof secret_cases[0]; i++) {
		const struct secret_case *s = &secret_cases[i];
		struct conf_errors errs = {0};
		struct strlist out = {0};
		const char *p = write_text("s.txt", s->text);
		int rc = conf_read_secrets(p, &out, &errs);
		if (!CHECK_INT(rc, s->want))
			printf("  case %zu\n", i);
		if (s->want > 0) {
			CHECK_INT(out.n, s->want);
			CHECK_STR(out.n ? out.v[0] : NULL,
			          strstr(s->text, SECRET_OK) ? SECRET_OK
			                                     : "012345678901234567890123456789"
			                                       "01234567890123456789");
			CHECK_INT(errs.n, 0);
		} else {
			CHECK_INT(out.n, 0);
			if (CHECK_INT(errs.n, 1)) {
				CHECK_INT(errs.v[0].line, s->line);
				CHECK_STR(errs.v[0].message, s->message);
				CHECK_STR(errs.v[0].file, p);
			}
		}
		strlist_free(&out);
		conf_errors_free(&errs);
	}
}

/* A message about a secret never contains the secret (even part of it). */
TEST(secret_never_printed)
{
	struct conf_errors errs = {0};
	struct strlist out = {0};
	const char *p =
	        write_text("s.txt", "Sup3rS3cr3t\nSup3rS3cr3tButFarTooLong-"
	                            "0123456789012345678901234567890\nSup3r S3cr3t 123456\n");
	CHECK_INT(conf_read_secrets(p, &out, &errs), -1);
	CHECK_INT(errs.n, 3);
	for (size_t i = 0; i < errs.n; i++) {
		CHECK(strstr(errs.v[i].message, "Sup3r") == NULL);
		CHECK(strstr(errs.v[i].message, "S3cr3t") == NULL);
	}
	conf_errors_free(&errs);
	/* Through conf_load, the errors name the secret file and its line. */
	char text[PATH_MAX + 64];
	snprintf(text, sizeof text,
	         "minger_secret_file = %s\nminger_listen = 127.0.0.1:4069\nlocal_domains = "
	         "a.example\n",
	         p);
	write_text("s.txt", "# x\ntoo-short\n");
	p = write_text("s.conf", text);
	CHECK(conf_load(p, &errs) == NULL);
	if (CHECK_INT(errs.n, 1)) {
		CHECK(strstr(errs.v[0].file, "/s.txt") != NULL);
		CHECK_INT(errs.v[0].line, 2);
		CHECK_STR(errs.v[0].message, "secret is shorter than 16 characters");
	}
	conf_errors_free(&errs);
}

TEST(cross_checks_pass)
{
	static const char *const ok[] = {
	        "minger_listen = 127.0.0.1:4069\nminger_anonymous = yes\nlocal_domains = "
	        "a.example\n",
	        "minger_listen = 127.0.0.1:4069\nminger_secret_file = secrets.txt\n"
	        "local_domains = a.example\n",
	        /* TCP and UDP on one address and port; IPv6 sockets are IPv6-only */
	        "smtp_listen = 127.0.0.1:2525\nminger_listen = 127.0.0.1:2525\nminger_anonymous = "
	        "yes\nsubmission_listen = [::]:2525 127.0.0.2:587\nlocal_domains = a.example\n",
	        "state_dir = missing/below\n",
	        "minger_require_reply_mac = yes\nminger_secret_file = secrets.txt\n",
	        "minger_anonymous = no\n",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct conf_errors errs = {0};
		struct conf *c = load_text(ok[i], &errs);
		if (!CHECK(c != NULL) || !CHECK_INT(errs.n, 0))
			conf_errors_print(&errs);
		conf_free(c);
		conf_errors_free(&errs);
	}
}

/* Relative paths come from the config file's folder, whatever the cwd is. */
TEST(relative_to_config_folder)
{
	char sub[PATH_MAX + 64], path[PATH_MAX + 80], cwd[PATH_MAX];
	snprintf(sub, sizeof sub, "%s/sub", tmpdir);
	mkdir(sub, 0700);
	write_text("sub/k.txt", SECRET_OK "\n");
	snprintf(path, sizeof path, "%s/sub/r.conf", tmpdir);
	write_text("sub/r.conf", "minger_secret_file = k.txt\nstate_dir = ../st\n");
	if (!CHECK(getcwd(cwd, sizeof cwd) != NULL))
		return;
	CHECK_INT(chdir("/"), 0);
	struct conf_errors errs = {0};
	struct conf *c = conf_load(path, &errs);
	CHECK_INT(chdir(cwd), 0);
	conf_errors_print(&errs);
	if (CHECK(c != NULL)) {
		char want[PATH_MAX + 80];
		snprintf(want, sizeof want, "%s/sub/../st", tmpdir);
		CHECK_STR(c->state_dir, want);
		snprintf(want, sizeof want, "%s/sub/k.txt", tmpdir);
		CHECK_STR(c->minger_secret_file, want);
	}
	conf_free(c);
	conf_errors_free(&errs);
	unlink(path);
	write_text("sub/k.txt", "");
	snprintf(path, sizeof path, "%s/sub/k.txt", tmpdir);
	unlink(path);
	rmdir(sub);
}

TEST(error_count_bounded)
{
	size_t n = 3000, len = 0;
	char *text = malloc(n * 8 + 1);
	if (!CHECK(text != NULL))
		return;
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(text + len, "bad%04zu\n", i);
	struct conf_errors errs = {0};
	CHECK(load_text(text, &errs) == NULL);
	free(text);
	CHECK_INT(errs.n, 1001);
	if (errs.n == 1001) {
		CHECK_STR(errs.v[999].message, "missing '='");
		CHECK_STR(errs.v[1000].message, "too many problems; the rest are not shown");
	}
	conf_errors_free(&errs);
}

/* Loads text as tmpdir/t.conf next to a good secrets.txt of the given mode. */
static struct conf *load_secret_mode(const char *text, mode_t mode, unsigned flags,
                                     struct conf_errors *errs)
{
	char path[PATH_MAX + 64];
	if (chmod(write_text("secrets.txt", SECRET_OK "\n"), mode) != 0)
		printf("cannot chmod secrets.txt\n");
	snprintf(path, sizeof path, "%s", write_text("t.conf", text));
	return conf_load_flags(path, flags, errs);
}

/* A secret file open to group or others is a warning: shown, but the conf loads. */
TEST(secret_file_mode_warning)
{
	static const mode_t warned[] = {0644, 0640, 0604, 0660, 0602, 0700 | 0070};
	char want[2 * PATH_MAX + 128];
	for (size_t i = 0; i < sizeof warned / sizeof warned[0]; i++) {
		struct conf_errors errs = {0};
		struct conf *c = load_secret_mode("\nminger_secret_file = secrets.txt\n", warned[i],
		                                  0, &errs);
		CHECK(c != NULL);
		snprintf(
		        want, sizeof want,
		        "minger_secret_file %s/secrets.txt has mode %04o: group or others may read "
		        "the secrets (chmod 600 it)",
		        tmpdir, (unsigned)warned[i]);
		if (CHECK_INT(errs.n, 1)) {
			CHECK_INT(errs.v[0].severity, CONF_SEVERITY_WARNING);
			CHECK_INT(errs.v[0].line, 2);
			CHECK_STR(errs.v[0].message, want);
		}
		conf_free(c);
		conf_errors_free(&errs);
	}
	static const mode_t quiet[] = {0600, 0400, 0700};
	for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++) {
		struct conf_errors errs = {0};
		struct conf *c =
		        load_secret_mode("minger_secret_file = secrets.txt\n", quiet[i], 0, &errs);
		CHECK(c != NULL);
		CHECK_INT(errs.n, 0);
		conf_free(c);
		conf_errors_free(&errs);
	}
}

/* CONF_LOAD_SKIP_SECRETS (the tool's commands) never opens the secret file. */
TEST(skip_secrets_flag)
{
	static const char text[] =
	        "minger_secret_file = missing.txt\nminger_listen = 127.0.0.1:4069\n"
	        "local_domains = a.example\n";
	struct conf_errors errs = {0};
	struct conf *c = load_secret_mode(text, 0600, CONF_LOAD_SKIP_SECRETS, &errs);
	CHECK(c != NULL);
	CHECK_INT(errs.n, 0);
	if (c)
		CHECK(strstr(c->minger_secret_file, "/missing.txt") != NULL);
	conf_free(c);
	c = load_secret_mode("minger_secret_file = secrets.txt\n", 0644, CONF_LOAD_SKIP_SECRETS,
	                     &errs);
	CHECK(c != NULL);
	CHECK_INT(errs.n, 0); /* not even the mode warning */
	conf_free(c);
	/* Every other check still applies. */
	c = load_secret_mode("minger_secret_file = missing.txt\nminger_threads = 0\n", 0600,
	                     CONF_LOAD_SKIP_SECRETS, &errs);
	CHECK(c == NULL);
	if (CHECK_INT(errs.n, 1))
		CHECK_STR(errs.v[0].message, "minger_threads must be between 1 and 64");
	conf_errors_free(&errs);
	c = load_secret_mode(text, 0600, 0, &errs);
	CHECK(c == NULL);
	CHECK_INT(errs.n, 1);
	conf_errors_free(&errs);
}

TEST(errors_print_format)
{
	struct conf_errors errs = {0};
	char out[PATH_MAX + 64];
	snprintf(out, sizeof out, "%s/stderr.txt", tmpdir);
	CHECK(load_text("minger_threads = 0\nminger_secret_file = nope\n", &errs) == NULL);
	struct conf *c = load_secret_mode("minger_secret_file = secrets.txt\n", 0644, 0, &errs);
	CHECK(c != NULL); /* a warning only */
	conf_free(c);
	fflush(stderr);
	int saved = dup(2), fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	conf_errors_print(&errs);
	fflush(stderr);
	dup2(saved, 2);
	close(fd);
	close(saved);
	size_t len;
	char *got = read_all(out, &len);
	char want[5 * PATH_MAX + 512];
	snprintf(want, sizeof want,
	         "%s/t.conf:1: minger_threads must be between 1 and 64\n"
	         "%s/t.conf:2: cannot open minger_secret_file %s/nope: No such file or directory\n"
	         "%s/t.conf:1: warning: minger_secret_file %s/secrets.txt has mode 0644: group or "
	         "others may read the secrets (chmod 600 it)\n",
	         tmpdir, tmpdir, tmpdir, tmpdir, tmpdir);
	CHECK_STR(got, want);
	free(got);
	unlink(out);
	conf_errors_free(&errs);
}

/* Index of the schema key `name` (len octets), or -1. */
static long schema_index(const char *name, size_t len)
{
	for (size_t i = 0; i < conf_schema_count(); i++) {
		const char *k = conf_schema_doc(i)->name;
		if (strlen(k) == len && memcmp(k, name, len) == 0)
			return (long)i;
	}
	return -1;
}

/* 1 if c can be part of a word that may name a key. */
static int word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* 1 if the word [w, we) looks like a key: lower-case letters and digits joined by '_'. */
static int key_like(const char *w, const char *we)
{
	if (!(w[0] >= 'a' && w[0] <= 'z') || we[-1] == '_' || !memchr(w, '_', (size_t)(we - w)))
		return 0;
	for (const char *p = w; p < we; p++)
		if (*p >= 'A' && *p <= 'Z')
			return 0;
	return 1;
}

/* 1 if w starts the first word of line l (after '#' and blanks). */
static int first_word(const char *l, const char *w)
{
	while (l < w && (*l == '#' || *l == ' ' || *l == '\t'))
		l++;
	return l == w;
}

/* The key-like words of [l, end) that are not keys of the schema: printed, counted. */
static int stray_in_line(const char *l, const char *end, const char *file)
{
	int stray = 0;
	for (const char *w = l; w < end;) {
		const char *we = w;
		while (we < end && word_char(*we))
			we++;
		if (we == w) {
			w++;
			continue;
		}
		/* An option inside a value ("secret_file=F" after the key) is not a key. */
		int option = we < end && *we == '=' && !first_word(l, w);
		if (!option && key_like(w, we) && schema_index(w, (size_t)(we - w)) < 0) {
			printf("  %s names %.*s, not a key of src/conf/conf_schema.c\n", file,
			       (int)(we - w), w);
			stray++;
		}
		w = we;
	}
	return stray;
}

/*
 * Every word of text that looks like a key (e.g. smtp_listen) must be a key of the
 * schema: a file that names a key the code does not have documents a setting that does
 * nothing. Lines starting with `skip` (roff comments) are not read. Returns the count
 * of stray words.
 */
static int stray_key_words(const char *text, const char *skip, const char *file)
{
	int stray = 0;
	size_t skiplen = skip ? strlen(skip) : 0;
	for (const char *l = text; *l;) {
		const char *end = strchr(l, '\n');
		if (!end)
			end = l + strlen(l);
		if (!(skip && strncmp(l, skip, skiplen) == 0))
			stray += stray_in_line(l, end, file);
		l = *end ? end + 1 : end;
	}
	return stray;
}

/* Turns roff text into plain text in place: "\-" -> "-", "\e" -> "\", "\&" and font
 * changes ("\fB", "\fR", ...) dropped. */
static void roff_plain(char *s)
{
	char *o = s;
	for (const char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] == '-') {
			*o++ = '-';
			p++;
		} else if (p[0] == '\\' && p[1] == 'e') {
			*o++ = '\\';
			p++;
		} else if (p[0] == '\\' && p[1] == '&') {
			p++;
		} else if (p[0] == '\\' && p[1] == 'f' && p[2]) {
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

/*
 * Checks a KEYS list (roff, as between the SCHEMA TABLE markers) against the schema:
 * one entry per key, each ".TP", ".B name", "type[; default D][; values R][; reloads on
 * SIGHUP].", ".br",
 * the key's one-line description; no entry for a key the schema lacks. Returns 1 if
 * it all matches.
 */
static int check_keys_list(const char *roff, size_t len, const char *what)
{
	char *text = malloc(len + 1);
	size_t n = conf_schema_count();
	int *seen = calloc(n, sizeof *seen);
	int ok = 1;
	if (!CHECK(text != NULL && seen != NULL)) {
		free(text);
		free(seen);
		return 0;
	}
	memcpy(text, roff, len);
	text[len] = '\0';
	roff_plain(text);
	char *save = NULL, *lines[5];
	char *l = strtok_r(text, "\n", &save);
	int parsed = 1;
	while (l) {
		lines[0] = l;
		for (int k = 1; k < 5; k++)
			lines[k] = strtok_r(NULL, "\n", &save);
		if (!CHECK(lines[4] != NULL && strcmp(lines[0], ".TP") == 0 &&
		           strncmp(lines[1], ".B ", 3) == 0 && strcmp(lines[3], ".br") == 0)) {
			printf("  %s: an entry is not .TP/.B KEY/attributes/.br/text at \"%s\"\n",
			       what, lines[0]);
			ok = parsed = 0;
			break;
		}
		const char *name = lines[1] + 3;
		long i = schema_index(name, strlen(name));
		if (!CHECK(i >= 0)) {
			printf("  %s documents %s, which is not a key of the schema\n", what, name);
			ok = 0;
		} else {
			const struct conf_key_doc *d = conf_schema_doc((size_t)i);
			char want[512];
			snprintf(want, sizeof want, "%s%s%s%s%s%s.", d->type,
			         d->def[0] ? "; default " : "", d->def,
			         d->range[0] ? "; values " : "", d->range,
			         d->reloads ? "; reloads on SIGHUP" : "");
			seen[i]++;
			if (!CHECK_STR(lines[2], want) || !CHECK_STR(lines[4], d->doc)) {
				printf("  %s: the entry for %s differs from the schema\n", what,
				       name);
				ok = 0;
			}
		}
		l = strtok_r(NULL, "\n", &save);
	}
	for (size_t i = 0; parsed && i < n; i++)
		if (!CHECK_INT(seen[i], 1)) {
			printf("  %s has %d entries for %s\n", what, seen[i],
			       conf_schema_doc(i)->name);
			ok = 0;
		}
	free(seen);
	free(text);
	return ok;
}

/*
 * doc/sharemail.conf.5 as checked in: its KEYS list holds every key of the schema with
 * its type, default, values and description, and nothing else; no other word of the page
 * names a key the schema lacks. (And conf_doc_man, which writes that list, agrees.)
 */
TEST(man_page_matches_schema)
{
	static const char begin[] = ".\\\" BEGIN SCHEMA TABLE\n";
	static const char end[] = ".\\\" END SCHEMA TABLE\n";
	size_t len, genlen = 0;
	char *page = read_all("doc/sharemail.conf.5", &len);
	if (!CHECK(page != NULL))
		return;
	char *b = strstr(page, begin);
	char *e = b ? strstr(b, end) : NULL;
	CHECK(b != NULL && (b == page || b[-1] == '\n'));
	CHECK(e != NULL && e[-1] == '\n');
	if (b && e) {
		b += strlen(begin);
		if (!check_keys_list(b, (size_t)(e - b), "doc/sharemail.conf.5"))
			printf("  regenerate the list: build/sharemail config-doc --man\n");
	}
	roff_plain(page);
	CHECK_INT(stray_key_words(page, ".\\\"", "doc/sharemail.conf.5"), 0);
	char *gen = NULL;
	FILE *f = open_memstream(&gen, &genlen);
	CHECK_INT(conf_doc_man(f), 0);
	fclose(f);
	check_keys_list(gen, genlen, "conf_doc_man()");
	free(gen);
	free(page);
}

TEST(text_doc_lists_every_key)
{
	char *gen = NULL;
	size_t genlen = 0, lines = 0;
	FILE *f = open_memstream(&gen, &genlen);
	CHECK_INT(conf_doc_text(f), 0);
	fclose(f);
	for (size_t i = 0; i < genlen; i++)
		lines += gen[i] == '\n';
	CHECK_INT(lines, conf_schema_count() + 1);
	for (size_t i = 0; i < conf_schema_count(); i++) {
		char tag[128];
		snprintf(tag, sizeof tag, "\n%s ", conf_schema_doc(i)->name);
		CHECK(strstr(gen, tag) != NULL);
	}
	free(gen);
}

/*
 * Looks for a line "key = value" or "#key = value" (blanks allowed around) in text.
 * With value NULL any value counts; else the value must be exactly `value` (the
 * rest of the line, trailing blanks ignored). Returns 1 if there is one.
 */
static int example_has(const char *text, const char *key, const char *value)
{
	size_t klen = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *p = l + strspn(l, " \t");
		if (*p == '#')
			p += 1 + strspn(p + 1, " \t");
		if (strncmp(p, key, klen) != 0)
			continue;
		p += klen;
		p += strspn(p, " \t");
		if (*p != '=')
			continue;
		if (!value)
			return 1;
		p += 1 + strspn(p + 1, " \t");
		size_t vlen = strcspn(p, "\n");
		while (vlen > 0 && (p[vlen - 1] == ' ' || p[vlen - 1] == '\t'))
			vlen--;
		if (vlen == strlen(value) && memcmp(p, value, vlen) == 0)
			return 1;
	}
	return 0;
}

/*
 * etc/sharemail.conf as checked in: every key of the schema has a line, a key with a
 * default has a line (usually commented) with exactly that default, no word of the file
 * names a key the schema lacks; and, copied next to a secret file, it loads.
 */
TEST(example_config_complete_and_valid)
{
	size_t len;
	char *text = read_all("etc/sharemail.conf", &len);
	if (!CHECK(text != NULL))
		return;
	for (size_t i = 0; i < conf_schema_count(); i++) {
		const struct conf_key_doc *d = conf_schema_doc(i);
		if (!CHECK(example_has(text, d->name, NULL)))
			printf("  etc/sharemail.conf lacks %s\n", d->name);
		else if (d->def[0] && !CHECK(example_has(text, d->name, d->def)))
			printf("  etc/sharemail.conf lacks the line #%s = %s (the default)\n",
			       d->name, d->def);
	}
	CHECK_INT(stray_key_words(text, NULL, "etc/sharemail.conf"), 0);
	/* Copied next to a secret file, the example loads without a problem. */
	const char *p = write_text("example.conf", text);
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s", p);
	write_text("minger-secrets", SECRET_OK "\n");
	struct conf_errors errs = {0};
	struct conf *c = conf_load(path, &errs);
	conf_errors_print(&errs);
	CHECK(c != NULL);
	CHECK_INT(errs.n, 0); /* not even a warning */
	if (c)
		CHECK(c->minger_listen.n > 0 && c->local_domains.n > 0);
	conf_free(c);
	conf_errors_free(&errs);
	free(text);
}

/* COUNT/DURATION keys: defaults, suffixes, 0 (off), and a reload that sees a change. */
TEST(rate_values)
{
	struct conf *d = conf_defaults();
	if (CHECK(d != NULL)) {
		CHECK_INT(d->screen_auth_failures.count, 5);
		CHECK_INT(d->screen_auth_failures.seconds, 600);
		CHECK_INT(d->screen_unknown_recipients.count, 20);
		CHECK_INT(d->screen_unknown_recipients.seconds, 600);
		CHECK_INT(d->screen_connection_rate.count, 30);
		CHECK_INT(d->screen_connection_rate.seconds, 60);
		CHECK_INT(d->screen_duration, 3600);
		CHECK_INT(d->screen_exempt.n, 0);
		CHECK(d->user == NULL);
	}
	struct conf_errors errs = {0};
	struct conf *c = load_text("screen_auth_failures = 3/90\n"
	                           "screen_unknown_recipients = 0/1s\n"
	                           "screen_connection_rate = 1000/7D\n"
	                           "screen_exempt = 192.0.2.0/24 2001:db8::/32\n"
	                           "user = mail\n",
	                           &errs);
	conf_errors_print(&errs);
	conf_errors_free(&errs);
	if (CHECK(c != NULL)) {
		CHECK_INT(c->screen_auth_failures.count, 3);
		CHECK_INT(c->screen_auth_failures.seconds, 90);
		CHECK_INT(c->screen_unknown_recipients.count, 0);
		CHECK_INT(c->screen_unknown_recipients.seconds, 1);
		CHECK_INT(c->screen_connection_rate.count, 1000);
		CHECK_INT(c->screen_connection_rate.seconds, 7 * 86400);
		CHECK_INT(c->screen_exempt.n, 2);
		CHECK_STR(c->user, "mail");
		struct conf_diff diff;
		if (d)
			CHECK_INT(conf_reload_merge(c, d, &diff), 0);
		/* The screen keys reload; user needs a restart (it was kept as before). */
		CHECK_STR(diff.reloaded, "screen_auth_failures, screen_unknown_recipients, "
		                         "screen_connection_rate, screen_exempt");
		CHECK_STR(diff.restart, "user");
		CHECK(c->user == NULL);
		CHECK_INT(c->screen_auth_failures.count, 3);
	}
	conf_free(c);
	conf_free(d);
}

/* A bind error names the file, the line and the key of the listener. */
TEST(addr_where_names_line)
{
	struct conf_errors errs = {0};
	struct conf *c = load_text("minger_anonymous = yes\n"
	                           "local_domains = example.com\n"
	                           "minger_listen = 127.0.0.1:4069 [::1]:4069\n"
	                           "smtp_listen = 127.0.0.1:2525\n",
	                           &errs);
	conf_errors_print(&errs);
	conf_errors_free(&errs);
	if (!CHECK(c != NULL))
		return;
	char got[PATH_MAX + 128], want[PATH_MAX + 128];
	CHECK_INT(conf_addr_where(c, &c->minger_listen, 1, got, sizeof got), 0);
	snprintf(want, sizeof want, "%s/t.conf:3: minger_listen [::1]:4069", tmpdir);
	CHECK_STR(got, want);
	CHECK_INT(conf_addr_where(c, &c->smtp_listen, 0, got, sizeof got), 0);
	snprintf(want, sizeof want, "%s/t.conf:4: smtp_listen 127.0.0.1:2525", tmpdir);
	CHECK_STR(got, want);
	CHECK_INT(conf_addr_where(c, &c->smtp_listen, 1, got, sizeof got), -1);
	struct addrlist other = c->smtp_listen; /* not a field of c */
	CHECK_INT(conf_addr_where(c, &other, 0, got, sizeof got), -1);
	char tiny[8];
	CHECK_INT(conf_addr_where(c, &c->smtp_listen, 0, tiny, sizeof tiny), 0);
	CHECK_INT(strlen(tiny), sizeof tiny - 1);
	conf_free(c);
}

static struct conf *load_or_print(const char *text)
{
	struct conf_errors errs = {0};
	struct conf *c = load_text(text, &errs);
	conf_errors_print(&errs);
	conf_errors_free(&errs);
	return c;
}

/* SIGHUP: reloadable keys change, the others keep the running value and are named. */
TEST(reload_merge)
{
	struct conf *cur = load_or_print("hostname = mx1.test\n"
	                                 "log_level = debug\n"
	                                 "minger_listen = 127.0.0.1:4069\n"
	                                 "minger_secret_file = secrets.txt\n"
	                                 "minger_allow = 127.0.0.0/8\n"
	                                 "smtp_max_errors = 5\n"
	                                 "local_domains = example.com\n");
	struct conf *next = load_or_print("hostname = mx2.test\n"
	                                  "log_level = warning\n"
	                                  "minger_listen = 127.0.0.1:4070\n"
	                                  "minger_listen = 127.0.0.1:4071\n"
	                                  "minger_anonymous = yes\n"
	                                  "minger_allow = 10.0.0.0/8\n"
	                                  "minger_threads = 4\n"
	                                  "smtp_refuse_helo = evil\n"
	                                  "smtp_max_errors = 5\n"
	                                  "local_domains = example.com\n");
	struct conf_diff diff;
	if (!CHECK(cur && next)) {
		conf_free(cur);
		conf_free(next);
		return;
	}
	CHECK_INT(conf_reload_merge(next, cur, &diff), 0);
	CHECK_STR(diff.reloaded, "log_level, smtp_refuse_helo");
	CHECK_INT(diff.n_reloaded, 2);
	CHECK_STR(diff.restart, "hostname, minger_listen, minger_secret_file, minger_anonymous, "
	                        "minger_allow, minger_threads");
	CHECK_INT(diff.n_restart, 6);
	/* Reloaded: the file's value. Restart-only: the running value, lines included. */
	CHECK_STR(next->log_level, "warning");
	CHECK(next->smtp_refuse_helo.n == 1 && strcmp(next->smtp_refuse_helo.v[0], "evil") == 0);
	CHECK_STR(next->hostname, "mx1.test");
	CHECK(next->minger_listen.n == 1 &&
	      strcmp(next->minger_listen.text[0], "127.0.0.1:4069") == 0);
	CHECK(next->minger_listen.n == 1 && next->minger_listen.line[0] == 3);
	CHECK_INT(netaddr_port((struct sockaddr *)&next->minger_listen.v[0].ss), 4069);
	CHECK(next->minger_secret_file &&
	      strcmp(next->minger_secret_file, cur->minger_secret_file) == 0);
	CHECK(next->minger_secret_file != cur->minger_secret_file); /* a copy, not shared */
	CHECK_INT(next->minger_anonymous, 0);
	CHECK(next->minger_allow.n == 1 && next->minger_allow.v[0].prefix == 8 &&
	      next->minger_allow.v[0].addr[0] == 127);
	CHECK_INT(next->minger_threads, 1);
	/* Merged once, the same file again changes nothing that needs a restart. */
	struct conf *again = load_or_print("hostname = mx2.test\n"
	                                   "log_level = warning\n"
	                                   "minger_listen = 127.0.0.1:4070\n"
	                                   "minger_anonymous = yes\n"
	                                   "local_domains = example.com\n");
	if (CHECK(again != NULL)) {
		CHECK_INT(conf_reload_merge(again, next, &diff), 0);
		CHECK_STR(diff.restart, "hostname, minger_listen, minger_secret_file, "
		                        "minger_anonymous, minger_allow");
		CHECK_STR(diff.reloaded, "smtp_refuse_helo, smtp_max_errors");
		CHECK_INT(conf_reload_merge(again, next, &diff), 0);
		CHECK_INT(diff.n_restart, 0);
		CHECK_INT(diff.n_reloaded, 2); /* the reloadable ones still differ */
	}
	conf_free(again);
	conf_free(next);
	conf_free(cur); /* next held copies: freeing both is fine (ASan would say otherwise) */
}

/* What can reload: never a listener, the state or anything read at start-up. */
TEST(reload_flags)
{
	static const char *const restart[] = {
	        "hostname",          "state_dir",           "local_domains",      "smtp_listen",
	        "submission_listen", "minger_listen",       "minger_secret_file", "minger_threads",
	        "queue_lifetime",    "smtp_add_date_header"};
	static const char *const reload[] = {"log_level", "log_syslog", "log_file",
	                                     "smtp_refuse_helo", "smtp_max_errors"};
	for (size_t i = 0; i < conf_schema_count(); i++) {
		const struct conf_key_doc *d = conf_schema_doc(i);
		for (size_t j = 0; j < sizeof restart / sizeof restart[0]; j++)
			if (strcmp(d->name, restart[j]) == 0 && !CHECK_INT(d->reloads, 0))
				printf("  %s must not reload\n", d->name);
		for (size_t j = 0; j < sizeof reload / sizeof reload[0]; j++)
			if (strcmp(d->name, reload[j]) == 0 && !CHECK_INT(d->reloads, 1))
				printf("  %s must reload\n", d->name);
	}
}

static void cleanup(void)
{
	static const char *const names[] = {
	        "t.conf", "secrets.txt", "long.conf",    "nul.conf",       "empty.conf",
	        "s.txt",  "s.conf",      "example.conf", "minger-secrets", "stderr.txt"};
	char path[PATH_MAX + 64];
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	rmdir(tmpdir);
}

/* Runs before main() so that any subset of tests named on the command line works. */
__attribute__((constructor)) static void setup(void)
{
	const char *base = getenv("TMPDIR");
	snprintf(tmpdir, sizeof tmpdir, "%s/test_conf.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(2);
	}
	char *real = realpath(tmpdir, NULL); /* conf paths are absolute and resolved */
	if (real) {
		snprintf(tmpdir, sizeof tmpdir, "%s", real);
		free(real);
	}
	atexit(cleanup);
}

TEST_MAIN(T(defaults), T(schema_sane), T(rate_values), T(load_every_type), T(values_table),
          T(errors_table), T(all_errors_collected), T(raw_line_problems), T(cannot_open),
          T(secrets_table), T(secret_never_printed), T(cross_checks_pass),
          T(relative_to_config_folder), T(error_count_bounded), T(errors_print_format),
          T(man_page_matches_schema), T(text_doc_lists_every_key),
          T(example_config_complete_and_valid), T(secret_file_mode_warning), T(skip_secrets_flag),
          T(addr_where_names_line), T(reload_merge), T(reload_flags))
