/*
 * cmd_list: `sharemail -c FILE list ...`, the mailing lists of the mailbox
 * directory (<state_dir>/directory.db). LIST is the list's full address:
 *
 *   add LIST [--owner ADDRESS] [--members-only]
 *                         LIST must be in a local domain, with an unquoted local
 *                         part (its List-Id is made of it). The owner is the
 *                         envelope sender of every copy of a post, so bounces go
 *                         there: --owner, else LISTNAME-owner@DOMAIN. An owner in
 *                         a local domain that is not an account, alias or list yet
 *                         draws a warning (its bounces would reach nobody).
 *                         --members-only: only members' envelope senders may post
 *                         (others get 550 5.7.1 at RCPT).
 *   del LIST              the list and its members
 *   join LIST ADDRESS... [--force]
 *                         members, local or foreign, all or none; a local member
 *                         must exist (account, alias or list) unless --force, as
 *                         for alias targets
 *   leave LIST ADDRESS... all or none
 *   show LIST             "list: ", "owner: ", "list-id: ", "members-only: ",
 *                         "members: N" lines, then one "member: ADDRESS" line each
 *   list                  one line per list: "ADDRESS N-MEMBERS OWNER FLAGS"
 *                         (FLAGS: "members-only" or "-")
 *
 * Exit status: 0 done; 1 duplicate, no such list, already (or not) a member, a
 * local member that does not exist; 64 usage; 65 bad address, domain not local, a
 * list or owner pointing to itself; 74 directory I/O; 75 directory busy.
 * Successful changes print nothing (warnings go to stderr). Every write also
 * prunes change-log rows older than 7 days.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "directory/directory.h"
#include "proto/mailaddr.h"

#define LIST_LOG_KEEP (7 * 24 * 3600)

/* Maps a directory result about the list itself to an exit status, printing why. */
static int report(struct directory *d, enum directory_result r, const char *list)
{
	switch (r) {
	case DIRECTORY_OK: return CLI_EXIT_OK;
	case DIRECTORY_NOTFOUND: cli_error("no such list: %s", list); return CLI_EXIT_FAIL;
	case DIRECTORY_EXISTS:
		cli_error("%s already exists (as an account, an alias or a list)", list);
		return CLI_EXIT_FAIL;
	case DIRECTORY_LOOP:
		cli_error("list %s cannot be its own owner or member", list);
		return CLI_EXIT_DATAERR;
	case DIRECTORY_BAD_ADDRESS:
		cli_error("'%s': %s", list, directory_strerror(r));
		return CLI_EXIT_DATAERR;
	case DIRECTORY_TEMPFAIL: cli_error("%s", directory_strerror(r)); return CLI_EXIT_TEMPFAIL;
	case DIRECTORY_ERROR: break;
	}
	cli_error("directory error: %s", directory_errmsg(d));
	return CLI_EXIT_IOERR;
}

/* Prints s with bytes outside printable ASCII as \xNN (a hand-edited file forges nothing). */
static void put_safe(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\')
			putchar(*p);
		else
			printf("\\x%02x", *p);
	}
}

/* The lookup key of an address already checked by cli_check_address(). */
static void address_key(const char *addr, char *key, size_t keysz, struct mailaddr *a)
{
	if (mailaddr_parse_exact(addr, strlen(addr), a) != MAILADDR_OK ||
	    mailaddr_key(a, key, keysz) < 0)
		key[0] = '\0';
}

/* A list address needs a dot-atom local part and a domain name (RFC 2919 List-Id). */
static int check_list_address(struct cli_ctx *ctx, const char *list)
{
	int rc = cli_check_address(ctx, list, 1);
	if (rc != 0)
		return rc;
	struct mailaddr a;
	char key[MAILADDR_MAX + 1];
	address_key(list, key, sizeof key, &a);
	if (a.quoted || a.literal) {
		cli_error("'%s': a list address needs an unquoted local part and a domain name"
		          " (its List-Id is made of them)",
		          list);
		return CLI_EXIT_DATAERR;
	}
	return 0;
}

/*
 * 1 if addr is in a local domain and nothing there answers to it (no account,
 * alias or list), 0 if it exists or is foreign, -1 with *r set when the
 * directory cannot say.
 */
static int local_missing(struct cli_ctx *ctx, struct directory *d, const char *addr,
                         enum directory_result *r)
{
	struct mailaddr a;
	char key[MAILADDR_MAX + 1], kind;
	address_key(addr, key, sizeof key, &a);
	if (!conf_is_local_domain(cli_conf(ctx), a.domain, a.domain_len))
		return 0;
	*r = directory_get(d, key, &kind, NULL);
	if (*r == DIRECTORY_NOTFOUND)
		return 1;
	return *r == DIRECTORY_OK ? 0 : -1;
}

static int list_add(struct cli_ctx *ctx, struct directory *d, const char *list, const char *owner,
                    int members_only)
{
	char def[MAILADDR_MAX + 1];
	if (!owner && directory_list_owner_default(list, def, sizeof def) < 0) {
		cli_error("'%s': the default owner (LISTNAME-owner) would be longer than 64 "
		          "octets; name one with --owner",
		          list);
		return CLI_EXIT_DATAERR;
	}
	int rc = report(d, directory_list_add(d, list, owner, members_only), list);
	directory_prune_changes(d, LIST_LOG_KEEP);
	if (rc != 0)
		return rc;
	const char *o = owner ? owner : def;
	enum directory_result r;
	/* The list is made: a directory that cannot answer now only costs the warning. */
	if (local_missing(ctx, d, o, &r) == 1)
		fprintf(stderr,
		        "sharemail: warning: the owner %s is not an account, an alias or a list"
		        " yet: bounces of the list's posts reach nobody until it is (e.g."
		        " `sharemail alias add %s YOU@DOMAIN`)\n",
		        o, o);
	return 0;
}

/* Refuses a local member that nothing answers to (a typo would bounce every post). */
static int check_local_members(struct cli_ctx *ctx, struct directory *d, char **members, int n)
{
	enum directory_result r;
	for (int i = 0; i < n; i++) {
		int missing = local_missing(ctx, d, members[i], &r);
		if (missing < 0)
			return report(d, r, members[i]);
		if (missing) {
			cli_error("%s is in a local domain but is not an account, an alias or a "
			          "list; add it first, or use --force",
			          members[i]);
			return CLI_EXIT_FAIL;
		}
	}
	return 0;
}

static int list_members(struct cli_ctx *ctx, struct directory *d, int join, int force, char **argv,
                        int argc)
{
	const char *list = argv[2];
	char **members = argv + 3;
	size_t n = (size_t)(argc - 3), bad = n;
	if (join && !force) {
		int rc = check_local_members(ctx, d, members, argc - 3);
		if (rc != 0)
			return rc;
	}
	enum directory_result r =
	        join ? directory_list_join(d, list, (const char *const *)members, n, &bad)
	             : directory_list_leave(d, list, (const char *const *)members, n, &bad);
	directory_prune_changes(d, LIST_LOG_KEEP);
	if (r == DIRECTORY_OK || bad >= n)
		return report(d, r, list);
	const char *m = members[bad];
	if (r == DIRECTORY_EXISTS) {
		cli_error("%s is already a member of %s (nothing changed)", m, list);
		return CLI_EXIT_FAIL;
	}
	if (r == DIRECTORY_NOTFOUND) {
		cli_error("%s is not a member of %s (nothing changed)", m, list);
		return CLI_EXIT_FAIL;
	}
	if (r == DIRECTORY_LOOP) {
		cli_error("list %s cannot be a member of itself", list);
		return CLI_EXIT_DATAERR;
	}
	return report(d, r, m);
}

static int print_member(void *arg, const char *member)
{
	fputs("member: ", stdout);
	put_safe(member);
	putchar('\n');
	return 0;
}

static int list_show(struct directory *d, const char *list)
{
	struct mailaddr a;
	char key[MAILADDR_MAX + 1], id[DIRECTORY_LIST_ID_MAX + 1];
	struct directory_list_info info;
	address_key(list, key, sizeof key, &a);
	/* One snapshot: the members printed are the ones counted. */
	enum directory_result r = directory_read_begin(d);
	if (r == DIRECTORY_OK)
		r = directory_list_get(d, key, &info);
	if (r == DIRECTORY_OK) {
		if (directory_list_id(info.address, id, sizeof id) < 0)
			snprintf(id, sizeof id, "-");
		fputs("list: ", stdout);
		put_safe(info.address);
		fputs("\nowner: ", stdout);
		put_safe(info.owner);
		fputs("\nlist-id: ", stdout);
		put_safe(id);
		printf("\nmembers-only: %s\nmembers: %zu\n", info.members_only ? "yes" : "no",
		       info.n_members);
		r = directory_list_members(d, key, print_member, NULL);
	}
	directory_read_end(d);
	return report(d, r, list);
}

static int print_list(void *arg, const struct directory_list_info *l)
{
	put_safe(l->address);
	printf(" %zu ", l->n_members);
	put_safe(l->owner);
	printf(" %s\n", l->members_only ? "members-only" : "-");
	return 0;
}

struct list_opts {
	const char *owner;
	int members_only, force;
};

/* Moves the options out of argv (positional arguments stay in order); returns the new argc. */
static int parse_opts(int argc, char **argv, const char *sub, struct list_opts *o)
{
	int add = strcmp(sub, "add") == 0, join = strcmp(sub, "join") == 0, n = 2;
	for (int i = 2; i < argc; i++) {
		if (add && strcmp(argv[i], "--owner") == 0 && i + 1 < argc && !o->owner) {
			o->owner = argv[++i];
		} else if (add && strcmp(argv[i], "--members-only") == 0) {
			o->members_only = 1;
		} else if (join && strcmp(argv[i], "--force") == 0) {
			o->force = 1;
		} else if (argv[i][0] == '-') {
			cli_error("unknown or repeated option '%s'", argv[i]);
			return -1;
		} else {
			argv[n++] = argv[i];
		}
	}
	return n;
}

/* 1 if argc suits subcommand sub (positional arguments only). */
static int arity_ok(const char *sub, int argc)
{
	if (strcmp(sub, "join") == 0 || strcmp(sub, "leave") == 0)
		return argc >= 4;
	if (strcmp(sub, "list") == 0)
		return argc == 2;
	return argc == 3; /* add, del, show */
}

/* Checks the addresses' syntax: the list (local for add) and the members. */
static int check_args(struct cli_ctx *ctx, const char *sub, int argc, char **argv,
                      const struct list_opts *o)
{
	int rc = 0;
	if (strcmp(sub, "add") == 0) {
		rc = check_list_address(ctx, argv[2]);
		if (rc == 0 && o->owner)
			rc = cli_check_address(ctx, o->owner, 0);
		return rc;
	}
	for (int i = 2; i < argc && rc == 0; i++)
		rc = cli_check_address(ctx, argv[i], 0);
	return rc;
}

int cmd_list(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char *const subs[] = {"add", "del", "join", "leave", "show", "list"};
	if (argc < 2)
		return CLI_EXIT_USAGE;
	const char *sub = argv[1];
	size_t k = 0;
	while (k < sizeof subs / sizeof subs[0] && strcmp(sub, subs[k]) != 0)
		k++;
	if (k == sizeof subs / sizeof subs[0]) {
		cli_error("unknown list command '%s'", sub);
		return CLI_EXIT_USAGE;
	}
	struct list_opts o = {0};
	argc = parse_opts(argc, argv, sub, &o);
	if (argc < 0 || !arity_ok(sub, argc))
		return CLI_EXIT_USAGE;
	int rc = check_args(ctx, sub, argc, argv, &o);
	if (rc != 0)
		return rc;
	struct directory *d = cli_open_directory(ctx);
	if (!d)
		return CLI_EXIT_IOERR;
	if (strcmp(sub, "add") == 0) {
		rc = list_add(ctx, d, argv[2], o.owner, o.members_only);
	} else if (strcmp(sub, "del") == 0) {
		rc = report(d, directory_list_del(d, argv[2]), argv[2]);
		directory_prune_changes(d, LIST_LOG_KEEP);
	} else if (strcmp(sub, "join") == 0 || strcmp(sub, "leave") == 0) {
		rc = list_members(ctx, d, strcmp(sub, "join") == 0, o.force, argv, argc);
	} else if (strcmp(sub, "show") == 0) {
		rc = list_show(d, argv[2]);
	} else {
		rc = report(d, directory_list_list(d, print_list, NULL), "");
	}
	if ((strcmp(sub, "show") == 0 || strcmp(sub, "list") == 0) && fflush(stdout) != 0 &&
	    rc == CLI_EXIT_OK)
		rc = CLI_EXIT_IOERR;
	directory_close(d);
	return rc;
}
