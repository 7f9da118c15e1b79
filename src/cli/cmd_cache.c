/*
 * cmd_cache: `sharemail -c FILE cache list | flush [ADDRESS]`, the verification
 * cache (<state_dir>/vcache.db) that Minger answers are recorded in.
 *
 *   list   one line per live entry: "address status word server expires source",
 *          the expiry in ISO 8601 UTC, ordered by address then server; source says
 *          who the server is: "peer:NAME" (a domain_sharing_host), "gateway:DOMAIN"
 *          or "forward:DOMAIN" (a gateway_domain or forward_domain server), or
 *          "query" (any other server: `sharemail minger query`, or one no longer
 *          configured). One cache serves them all, keyed by the server's address.
 *   flush  deletes the entries for ADDRESS (every server), or all entries, plus
 *          any expired ones; prints "N entries flushed"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "proto/minger_msg.h"
#include "util/netaddr.h"
#include "verify/vcache.h"
#include "verify/verify_servers.h"

/* The configured servers and the keys their cache entries may carry. */
struct cache_sources {
	struct verify_servers peers;
	char (*resolved)[VERIFY_STATUS_ADDR_MAX]; /* netaddr_format() of each, "" unresolved */
};

static struct vcache *open_cache(struct cli_ctx *ctx)
{
	char path[4096], err[512];
	struct conf *c = cli_conf(ctx);
	if (conf_state_path(c, "vcache.db", path, sizeof path) < 0) {
		cli_error("state_dir path too long");
		return NULL;
	}
	struct vcache *vc = vcache_open(path, err, sizeof err);
	if (!vc)
		cli_error("cannot open the cache: %s", err);
	return vc;
}

/* Reads the configured servers; a config without any (or that fails) labels all "query". */
static void sources_load(const struct conf *c, struct cache_sources *s)
{
	char err[4600];
	memset(s, 0, sizeof *s);
	if (verify_servers_load(c, 0, &s->peers, err, sizeof err) != 0)
		return;
	s->resolved = calloc(s->peers.n ? s->peers.n : 1, sizeof *s->resolved);
	if (!s->resolved) {
		verify_servers_free(&s->peers);
		return;
	}
	for (size_t i = 0; i < s->peers.n; i++) {
		struct netaddr na;
		if (verify_server_lookup(&s->peers.v[i], &na, 1, err, sizeof err) > 0)
			netaddr_format((const struct sockaddr *)&na.ss, s->resolved[i],
			               sizeof s->resolved[i]);
	}
}

static void sources_free(struct cache_sources *s)
{
	free(s->resolved);
	verify_servers_free(&s->peers);
}

static void print_source(const struct cache_sources *s, const char *server)
{
	for (size_t i = 0; i < s->peers.n; i++) {
		const struct verify_server *p = &s->peers.v[i];
		if (strcmp(server, p->minger_text) == 0 || strcmp(server, s->resolved[i]) == 0) {
			printf(" %s:%s\n", verify_status_kind_name(p->kind), p->name);
			return;
		}
	}
	printf(" query\n");
}

static int print_entry(void *arg, const char *server, const char *address, int status,
                       int64_t expires)
{
	const struct cache_sources *s = arg;
	char when[32] = "-";
	time_t t = (time_t)expires;
	struct tm tm;
	if (gmtime_r(&t, &tm))
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* Addresses were checked before they were cached; they are printable ASCII. */
	printf("%s %d %s %s %s", address, status, minger_status_word(status), server, when);
	print_source(s, server);
	return 0;
}

int cmd_cache(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return CLI_EXIT_USAGE;
	int list = strcmp(argv[1], "list") == 0;
	int flush = strcmp(argv[1], "flush") == 0;
	if (!list && !flush) {
		cli_error("unknown cache command '%s'", argv[1]);
		return CLI_EXIT_USAGE;
	}
	if ((list && argc != 2) || (flush && argc > 3))
		return CLI_EXIT_USAGE;
	struct vcache *vc = open_cache(ctx);
	if (!vc)
		return CLI_EXIT_IOERR;
	int rc = CLI_EXIT_OK;
	if (list) {
		struct cache_sources s;
		sources_load(cli_conf(ctx), &s);
		if (vcache_list(vc, print_entry, &s) < 0) {
			cli_error("cannot read the cache");
			rc = CLI_EXIT_IOERR;
		}
		sources_free(&s);
	} else {
		int n = vcache_flush(vc, argc == 3 ? argv[2] : NULL);
		if (n < 0) {
			cli_error("cannot flush the cache");
			rc = CLI_EXIT_IOERR;
		} else {
			printf("%d entries flushed\n", n);
		}
	}
	vcache_close(vc);
	if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
		rc = CLI_EXIT_IOERR;
	return rc;
}
