/*
 * cmd_cache: `sharemail -c FILE cache list | flush [ADDRESS]`, the verification
 * cache (<state_dir>/vcache.db) that Minger answers are recorded in.
 *
 *   list   one line per live entry: "address status word server expires", the
 *          expiry in ISO 8601 UTC, ordered by address then server
 *   flush  deletes the entries for ADDRESS (every server), or all entries, plus
 *          any expired ones; prints "N entries flushed"
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "proto/minger_msg.h"
#include "verify/vcache.h"

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

static int print_entry(void *arg, const char *server, const char *address, int status,
                       int64_t expires)
{
	char when[32] = "-";
	time_t t = (time_t)expires;
	struct tm tm;
	if (gmtime_r(&t, &tm))
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* Addresses were checked before they were cached; they are printable ASCII. */
	printf("%s %d %s %s %s\n", address, status, minger_status_word(status), server, when);
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
		if (vcache_list(vc, print_entry, NULL) < 0) {
			cli_error("cannot read the cache");
			rc = CLI_EXIT_IOERR;
		}
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
