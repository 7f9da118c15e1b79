/*
 * cmd_minger: `sharemail minger query ADDRESS... --server HOST[:PORT] ...`, a
 * Minger client for administrators (see sharemail(1) and minger-protocol.md).
 *
 * The configuration is optional here: the command works standalone (defaults
 * 2000 ms, 2 retries) and loads the config only when -c or SHAREMAIL_CONF was
 * given, to take the client defaults and, with minger_cache = yes, to record the
 * answers in the verification cache (<state_dir>/vcache.db).
 *
 * Output, one line per address in input order:
 *   ADDRESS STATUS WORDS [(cached)]  |  ADDRESS - timeout  |  ADDRESS - error
 * (WORDS from minger_status_word(): "active", "unknown", "denied", "bad credentials"...)
 * Exit: 0 every address answered, 75 any timeout, 64 usage, 65 bad input,
 * 69 the server address cannot be used.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "proto/mailaddr.h"
#include "proto/minger_msg.h"
#include "util/netaddr.h"
#include "verify/minger_client.h"
#include "verify/vcache.h"
#include "verify/verify_batch.h"

#define MQ_ADDRESSES_MAX 1000000 /* bound on a --file batch */
#define MQ_LINE_MAX (MAILADDR_MAX + 64)
#define MQ_TIMEOUT_MAX 600000
#define MQ_WINDOW_DEFAULT 64

struct mq_args {
	const char *server;
	const char *secret_file;
	const char *file;
	int timeout_ms; /* -1: not given */
	int retries; /* -1: not given */
	int require_reply_mac;
	int no_ext;
	int window;
	int cached;
	int no_cache;
	char **addrs; /* positional, then from the file (owned copies) */
	size_t naddrs;
	size_t cap;
};

struct mq_cache {
	struct vcache *vc;
	char server_key[80]; /* "HOST:PORT" as netaddr_format writes it */
	int positive_ttl;
	int negative_ttl;
};

static int parse_int(const char *opt, const char *s, int min, int max, int *out)
{
	char *end;
	errno = 0;
	long v = s ? strtol(s, &end, 10) : 0;
	if (!s || !*s || *end || errno || v < min || v > max) {
		cli_error("%s needs a number from %d to %d", opt, min, max);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int add_address(struct mq_args *a, const char *s, size_t len)
{
	if (a->naddrs >= MQ_ADDRESSES_MAX) {
		cli_error("more than %d addresses", MQ_ADDRESSES_MAX);
		return -1;
	}
	if (a->naddrs == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		char **v = realloc(a->addrs, cap * sizeof *v);
		if (!v) {
			cli_error("out of memory");
			return -1;
		}
		a->addrs = v;
		a->cap = cap;
	}
	char *copy = strndup(s, len);
	if (!copy) {
		cli_error("out of memory");
		return -1;
	}
	a->addrs[a->naddrs++] = copy;
	return 0;
}

static void args_free(struct mq_args *a)
{
	for (size_t i = 0; i < a->naddrs; i++)
		free(a->addrs[i]);
	free(a->addrs);
}

/* Returns 0, or an exit status. */
static int parse_args(struct mq_args *a, int argc, char **argv)
{
	int opts_done = 0;
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;
		int takes = 1;
		if (opts_done || s[0] != '-' || strcmp(s, "-") == 0) {
			if (add_address(a, s, strlen(s)) < 0)
				return CLI_EXIT_SOFTWARE;
			continue;
		}
		if (strcmp(s, "--") == 0) {
			opts_done = 1;
			continue;
		} else if (strcmp(s, "--server") == 0) {
			a->server = next;
		} else if (strcmp(s, "--secret-file") == 0) {
			a->secret_file = next;
		} else if (strcmp(s, "--file") == 0) {
			a->file = next;
		} else if (strcmp(s, "--timeout") == 0) {
			if (parse_int(s, next, 1, MQ_TIMEOUT_MAX, &a->timeout_ms) < 0)
				return CLI_EXIT_USAGE;
		} else if (strcmp(s, "--retries") == 0) {
			if (parse_int(s, next, 0, MINGER_CLIENT_RETRIES_MAX, &a->retries) < 0)
				return CLI_EXIT_USAGE;
		} else if (strcmp(s, "--window") == 0) {
			if (parse_int(s, next, 1, MINGER_CLIENT_WINDOW_MAX, &a->window) < 0)
				return CLI_EXIT_USAGE;
		} else {
			takes = 0;
			if (strcmp(s, "--require-reply-mac") == 0)
				a->require_reply_mac = 1;
			else if (strcmp(s, "--no-ext") == 0)
				a->no_ext = 1;
			else if (strcmp(s, "--cached") == 0)
				a->cached = 1;
			else if (strcmp(s, "--no-cache") == 0)
				a->no_cache = 1;
			else {
				cli_error("unknown option '%s'", s);
				return CLI_EXIT_USAGE;
			}
		}
		if (takes) {
			if (!next) {
				cli_error("%s needs a value", s);
				return CLI_EXIT_USAGE;
			}
			i++;
		}
	}
	return 0;
}

/* Reads addresses one per line; blank lines and '#' lines are skipped. */
static int read_address_file(struct mq_args *a)
{
	int use_stdin = strcmp(a->file, "-") == 0;
	FILE *f = use_stdin ? stdin : fopen(a->file, "r");
	if (!f) {
		cli_error("%s: %s", a->file, strerror(errno));
		return CLI_EXIT_DATAERR;
	}
	char line[MQ_LINE_MAX];
	int rc = 0;
	long lineno = 0;
	while (rc == 0 && fgets(line, sizeof line, f)) {
		lineno++;
		size_t len = strlen(line);
		if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
			cli_error("%s:%ld: line too long", a->file, lineno);
			rc = CLI_EXIT_DATAERR;
			break;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
		                   line[len - 1] == ' ' || line[len - 1] == '\t'))
			len--;
		size_t start = 0;
		while (start < len && (line[start] == ' ' || line[start] == '\t'))
			start++;
		if (start == len || line[start] == '#')
			continue;
		if (add_address(a, line + start, len - start) < 0)
			rc = CLI_EXIT_SOFTWARE;
	}
	if (rc == 0 && ferror(f)) {
		cli_error("%s: read error", a->file);
		rc = CLI_EXIT_DATAERR;
	}
	if (!use_stdin)
		fclose(f);
	return rc;
}

/* Every address must be an RFC 5321 Mailbox: we never send what a server must call 0. */
static int check_addresses(const struct mq_args *a)
{
	for (size_t i = 0; i < a->naddrs; i++) {
		struct mailaddr m;
		enum mailaddr_result r = mailaddr_parse_exact(a->addrs[i], strlen(a->addrs[i]), &m);
		if (r != MAILADDR_OK) {
			/* The address may hold control octets: print only a safe description. */
			cli_error("address %zu: %s", i + 1, mailaddr_strerror(r));
			return CLI_EXIT_DATAERR;
		}
	}
	return 0;
}

/*
 * Loads the first secret from the file with the server's rules (conf_read_secrets).
 * The secret is never printed. Returns 0 or an exit status.
 */
static int load_secret(const char *path, char **out)
{
	struct strlist secrets = {0};
	struct conf_errors errs = {0};
	if (conf_read_secrets(path, &secrets, &errs) < 1 || secrets.n < 1) {
		conf_errors_print(&errs);
		conf_errors_free(&errs);
		strlist_free(&secrets);
		cli_error("%s: no usable secret", path);
		return CLI_EXIT_DATAERR;
	}
	conf_errors_free(&errs);
	*out = strdup(secrets.v[0]);
	explicit_bzero(secrets.v[0], strlen(secrets.v[0]));
	strlist_free(&secrets);
	if (!*out) {
		cli_error("out of memory");
		return CLI_EXIT_SOFTWARE;
	}
	return 0;
}

static int server_usable(const struct netaddr *na)
{
	if (na->ss.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&na->ss;
		return s4->sin_addr.s_addr != htonl(INADDR_ANY);
	}
	if (na->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&na->ss;
		return !IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);
	}
	return 0;
}

/* Opens the cache when the config enables it. A cache that cannot be opened is a warning:
 * the query itself still works. */
static void cache_open(struct mq_cache *mc, const struct conf *c, const struct netaddr *server)
{
	char path[4096], err[512];
	netaddr_format((const struct sockaddr *)&server->ss, mc->server_key, sizeof mc->server_key);
	mc->positive_ttl = c->minger_cache_positive_ttl;
	mc->negative_ttl = c->minger_cache_negative_ttl;
	if (conf_state_path(c, "vcache.db", path, sizeof path) < 0) {
		cli_error("warning: state_dir path too long; not using the cache");
		return;
	}
	mc->vc = vcache_open(path, err, sizeof err);
	if (!mc->vc)
		cli_error("warning: cannot open the cache: %s", err);
}

static int print_results(const struct mq_args *a, const int *results, const unsigned char *cached)
{
	int rc = CLI_EXIT_OK;
	for (size_t i = 0; i < a->naddrs; i++) {
		int r = results[i];
		if (r == MINGER_RESULT_TIMEOUT) {
			printf("%s - timeout\n", a->addrs[i]);
			rc = CLI_EXIT_TEMPFAIL;
		} else if (r < 0) {
			printf("%s - error\n", a->addrs[i]);
			if (rc == CLI_EXIT_OK)
				rc = CLI_EXIT_UNAVAILABLE;
		} else {
			printf("%s %d %s%s\n", a->addrs[i], r, minger_status_word(r),
			       cached[i] ? " (cached)" : "");
		}
	}
	if (fflush(stdout) != 0)
		return CLI_EXIT_IOERR;
	return rc;
}

/*
 * Answers what it can from the cache (--cached), queries the rest, records the
 * answers: the policy lives in verify/ (verify_batch.h), shared with the daemon.
 */
static int run_queries(const struct mq_args *a, const struct netaddr *server,
                       const struct minger_client_opts *opts, struct mq_cache *mc, int *results,
                       unsigned char *cached)
{
	struct verify_batch_cache vb = {
	        .vc = mc->vc,
	        .server_key = mc->server_key,
	        .read = a->cached,
	        .positive_ttl = mc->positive_ttl,
	        .negative_ttl = mc->negative_ttl,
	};
	char err[256] = "";
	size_t unrecorded = 0;
	if (verify_batch_query(server, opts, &vb, (const char *const *)a->addrs, a->naddrs, results,
	                       cached, &unrecorded, err, sizeof err) < 0)
		cli_error("%s", err);
	if (unrecorded)
		cli_error("warning: cannot record %zu answer%s in the cache", unrecorded,
		          unrecorded == 1 ? "" : "s");
	return 0;
}

static int minger_query(struct cli_ctx *ctx, struct mq_args *a)
{
	if (!a->server) {
		cli_error("--server is required");
		return CLI_EXIT_USAGE;
	}
	if (a->cached && a->no_cache) {
		cli_error("--cached and --no-cache exclude each other");
		return CLI_EXIT_USAGE;
	}
	if (a->require_reply_mac && (!a->secret_file || a->no_ext)) {
		cli_error("--require-reply-mac needs --secret-file and the extension");
		return CLI_EXIT_USAGE;
	}
	int rc;
	if (a->file && (rc = read_address_file(a)) != 0)
		return rc;
	if (a->naddrs == 0) {
		cli_error("no address to query");
		return CLI_EXIT_USAGE;
	}
	if ((rc = check_addresses(a)) != 0)
		return rc;

	struct netaddr server;
	char err[256];
	if (netaddr_parse_hostport(a->server, MINGER_PORT, 0, &server, err, sizeof err) < 0) {
		cli_error("--server: %s", err);
		return CLI_EXIT_UNAVAILABLE;
	}
	if (!server_usable(&server)) {
		cli_error("--server: cannot send to an unspecified address");
		return CLI_EXIT_UNAVAILABLE;
	}

	struct minger_client_opts opts;
	minger_client_opts_init(&opts);
	struct mq_cache mc = {0};
	struct conf *c = ctx->conf_given ? cli_conf(ctx) : NULL;
	if (c) {
		opts.timeout_ms = c->minger_timeout_ms;
		opts.retries = c->minger_retries;
		opts.require_reply_mac = c->minger_require_reply_mac;
	}
	if (a->cached && (!c || !c->minger_cache)) {
		cli_error("--cached needs a configuration (-c) with minger_cache = yes");
		return CLI_EXIT_USAGE;
	}
	if (a->timeout_ms > 0)
		opts.timeout_ms = a->timeout_ms;
	if (a->retries >= 0)
		opts.retries = a->retries;
	if (a->require_reply_mac)
		opts.require_reply_mac = 1;
	opts.use_ext = !a->no_ext;
	opts.window = a->window > 0 ? (size_t)a->window : MQ_WINDOW_DEFAULT;

	char *secret = NULL;
	if (a->secret_file && (rc = load_secret(a->secret_file, &secret)) != 0)
		return rc;
	opts.secret = secret;
	if (opts.require_reply_mac && (!secret || !opts.use_ext)) {
		/* From the config: without a secret the requirement cannot be met. */
		cli_error("minger_require_reply_mac needs --secret-file and the extension");
		free(secret);
		return CLI_EXIT_USAGE;
	}
	if (c && c->minger_cache && !a->no_cache)
		cache_open(&mc, c, &server);

	int *results = calloc(a->naddrs, sizeof *results);
	unsigned char *cached = calloc(a->naddrs, 1);
	if (!results || !cached) {
		cli_error("out of memory");
		rc = CLI_EXIT_SOFTWARE;
	} else {
		rc = run_queries(a, &server, &opts, &mc, results, cached);
		if (rc == 0)
			rc = print_results(a, results, cached);
	}
	free(results);
	free(cached);
	vcache_close(mc.vc);
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	return rc;
}

int cmd_minger(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "query") != 0) {
		if (argc >= 2)
			cli_error("unknown minger command '%s'", argv[1]);
		return CLI_EXIT_USAGE;
	}
	struct mq_args a = {.timeout_ms = -1, .retries = -1};
	int rc = parse_args(&a, argc - 2, argv + 2);
	if (rc == 0)
		rc = minger_query(ctx, &a);
	args_free(&a);
	return rc;
}
