/*
 * cmd_alias: `sharemail -c FILE alias ...`, the aliases of the mailbox directory
 * (<state_dir>/directory.db):
 *
 *   add ALIAS TARGET... [--force]
 *                         ALIAS must be in a local domain; targets may be local
 *                         or foreign mailboxes. A local target must exist (as an
 *                         account or an alias) unless --force: a typo would
 *                         otherwise turn into mail for an unknown recipient.
 *   del ALIAS
 *   list                  "alias target" lines, ordered by alias then target
 *
 * Exit status: 0 done; 1 duplicate, not found, or a local target that does not
 * exist; 64 usage; 65 bad address, domain
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

/* The lookup key of an address already checked by cli_check_address(). */
static void address_key(const char *addr, char *key, size_t keysz, struct mailaddr *a)
{
	if (mailaddr_parse_exact(addr, strlen(addr), a) != MAILADDR_OK ||
	    mailaddr_key(a, key, keysz) < 0)
		key[0] = '\0';
}

/*
 * Refuses a local target that is neither an account nor an alias. An alias that
 * exists already or is among its own targets is left to directory_alias_add(),
 * whose message says that. Returns 0 or an exit status after printing why.
 */
static int check_local_targets(struct cli_ctx *ctx, struct directory *d, const char *alias,
                               char **targets, int n)
{
	char akey[MAILADDR_MAX + 1], tkey[MAILADDR_MAX + 1], kind;
	struct mailaddr a;
	address_key(alias, akey, sizeof akey, &a);
	for (int i = 0; i < n; i++) {
		address_key(targets[i], tkey, sizeof tkey, &a);
		if (strcmp(tkey, akey) == 0)
			return 0;
	}
	if (directory_get(d, akey, &kind, NULL) != DIRECTORY_NOTFOUND)
		return 0;
	for (int i = 0; i < n; i++) {
		address_key(targets[i], tkey, sizeof tkey, &a);
		if (!conf_is_local_domain(cli_conf(ctx), a.domain, a.domain_len))
			continue;
		enum directory_result r = directory_get(d, tkey, &kind, NULL);
		if (r == DIRECTORY_NOTFOUND) {
			cli_error("%s is in a local domain but is not an account or an alias; "
			          "add it first, or use --force",
			          targets[i]);
			return CLI_EXIT_FAIL;
		}
		if (r != DIRECTORY_OK)
			return report(d, r, targets[i]);
	}
	return 0;
}

static int alias_add(struct cli_ctx *ctx, struct directory *d, int argc, char **argv, int force)
{
	int rc = force ? 0 : check_local_targets(ctx, d, argv[2], argv + 3, argc - 3);
	if (rc != 0)
		return rc;
	rc = report(d,
	            directory_alias_add(d, argv[2], (const char *const *)(argv + 3),
	                                (size_t)(argc - 3)),
	            argv[2]);
	directory_prune_changes(d, ALIAS_LOG_KEEP);
	return rc;
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
	int force = 0, n = 2;
	for (int i = 2; i < argc; i++) {
		if (add && strcmp(argv[i], "--force") == 0) {
			force = 1;
		} else if (argv[i][0] == '-') {
			cli_error("unknown option '%s'", argv[i]);
			return CLI_EXIT_USAGE;
		} else {
			argv[n++] = argv[i]; /* the positional arguments, options removed */
		}
	}
	argc = n;
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
	} else if (add) {
		rc = alias_add(ctx, d, argc, argv, force);
	} else {
		rc = report(d, directory_alias_del(d, argv[2]), argv[2]);
		directory_prune_changes(d, ALIAS_LOG_KEEP);
	}
	directory_close(d);
	return rc;
}
