/*
 * cmd_alias: `sharemail -c FILE alias ...`, the aliases of the mailbox directory
 * (<state_dir>/directory.db):
 *
 *   add ALIAS TARGET...   ALIAS must be in a local domain; targets may be local
 *                         or foreign mailboxes (local ones need not exist yet)
 *   del ALIAS
 *   list                  "alias target" lines, ordered by alias then target
 *
 * Exit status: 0 done; 1 duplicate or not found; 64 usage; 65 bad address, domain
 * not local, alias pointing to itself; 74 directory I/O; 75 directory busy.
 * Every write also prunes change-log rows older than 7 days.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "directory/directory.h"
#include "proto/mailaddr.h"

#define ALIAS_LOG_KEEP (7 * 24 * 3600)

static int report(struct directory *d, enum directory_result r, const char *alias)
{
	switch (r) {
	case DIRECTORY_OK: return CLI_EXIT_OK;
	case DIRECTORY_NOTFOUND: cli_error("no such alias: %s", alias); return CLI_EXIT_FAIL;
	case DIRECTORY_EXISTS:
		cli_error("%s already exists (as an account or an alias)", alias);
		return CLI_EXIT_FAIL;
	case DIRECTORY_LOOP:
		cli_error("alias %s cannot point to itself", alias);
		return CLI_EXIT_DATAERR;
	case DIRECTORY_BAD_ADDRESS:
		cli_error("'%s': %s", alias, directory_strerror(r));
		return CLI_EXIT_DATAERR;
	case DIRECTORY_TEMPFAIL: cli_error("%s", directory_strerror(r)); return CLI_EXIT_TEMPFAIL;
	case DIRECTORY_ERROR: break;
	}
	cli_error("directory error: %s", directory_errmsg(d));
	return CLI_EXIT_IOERR;
}

static int print_alias(void *arg, const char *alias, const char *target)
{
	printf("%s %s\n", alias, target);
	return 0;
}

int cmd_alias(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return CLI_EXIT_USAGE;
	const char *sub = argv[1];
	int add = strcmp(sub, "add") == 0, del = strcmp(sub, "del") == 0;
	int list = strcmp(sub, "list") == 0;
	if (!add && !del && !list) {
		cli_error("unknown alias command '%s'", sub);
		return CLI_EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		if (argv[i][0] == '-') {
			cli_error("unknown option '%s'", argv[i]);
			return CLI_EXIT_USAGE;
		}
	}
	if ((add && argc < 4) || (del && argc != 3) || (list && argc != 2))
		return CLI_EXIT_USAGE;
	int rc = 0;
	for (int i = 2; i < argc && rc == 0; i++)
		rc = cli_check_address(ctx, argv[i], i == 2);
	if (rc != 0)
		return rc;
	struct directory *d = cli_open_directory(ctx);
	if (!d)
		return CLI_EXIT_IOERR;
	if (list) {
		rc = report(d, directory_alias_list(d, print_alias, NULL), "");
		if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
			rc = CLI_EXIT_IOERR;
	} else {
		enum directory_result r =
		        add ? directory_alias_add(d, argv[2], (const char *const *)(argv + 3),
		                                  (size_t)(argc - 3))
		            : directory_alias_del(d, argv[2]);
		rc = report(d, r, argv[2]);
		directory_prune_changes(d, ALIAS_LOG_KEEP);
	}
	directory_close(d);
	return rc;
}
