/*
 * cmd_account: `sharemail -c FILE account ...`, the accounts of the mailbox
 * directory (<state_dir>/directory.db):
 *
 *   add ADDRESS (--password-file F | --no-password) [--disabled] [--force]
 *                                  F's first line is the password ('-' = standard
 *                                  input); --no-password: an account that cannot
 *                                  log in (one of the two is required)
 *   del ADDRESS
 *   list [DOMAIN]                                  "address state" lines
 *   disable | enable | over-quota ADDRESS
 *   passwd ADDRESS --password-file F
 *
 * Exit status: 0 done; 1 duplicate or not found, or (add) the address exists on a
 * Domain Sharing peer; 64 usage; 65 bad address, domain not local, bad password
 * input; 74 directory I/O; 75 directory busy, or (add) a peer could not say.
 *
 * Domain Sharing (issue 8): one address lives on one server of a shared domain, so
 * `add` in a shared domain first asks every domain_sharing_host peer (Minger, all at
 * once, with the daemon's verifier, fresh: never from the cache). A peer that has it (status 5, or 4: it exists but cannot receive) refuses
 * the add, naming the peer; so does a peer that does not answer, answers 0-2, or
 * cannot be asked, since then nobody knows. --force adds anyway, with a warning per
 * peer. Peers are asked before the password is hashed or the directory opened.
 * Successful changes print nothing. Adding requires the address's domain to be in
 * local_domains; changing or deleting an existing account does not, so leftovers
 * of a domain removed from the configuration can still be cleaned up.
 * Every write also prunes change-log rows older than 7 days.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "directory/directory.h"
#include "directory/password.h"
#include "proto/mailaddr.h"
#include "proto/minger_msg.h"
#include "verify/minger_client.h"
#include "verify/verify.h"
#include "verify/verify_servers.h"

#define ACCOUNT_LOG_KEEP (7 * 24 * 3600)

/* Maps a failed directory call to an exit status, printing why. */
static int report(struct directory *d, enum directory_result r, const char *addr)
{
	switch (r) {
	case DIRECTORY_OK: return CLI_EXIT_OK;
	case DIRECTORY_NOTFOUND: cli_error("no such account: %s", addr); return CLI_EXIT_FAIL;
	case DIRECTORY_EXISTS:
		cli_error("%s already exists (as an account or an alias)", addr);
		return CLI_EXIT_FAIL;
	case DIRECTORY_BAD_ADDRESS:
	case DIRECTORY_LOOP:
		cli_error("'%s': %s", addr, directory_strerror(r));
		return CLI_EXIT_DATAERR;
	case DIRECTORY_TEMPFAIL: cli_error("%s", directory_strerror(r)); return CLI_EXIT_TEMPFAIL;
	case DIRECTORY_ERROR: break;
	}
	cli_error("directory error: %s", directory_errmsg(d));
	return CLI_EXIT_IOERR;
}

/*
 * Reads the first line of `file` ('-' = stdin) as the password into pw.
 * Returns 0 or the exit status after printing why.
 */
static int read_password(const char *file, char *pw, size_t pwsz)
{
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	if (!f) {
		cli_error("cannot open password file %s: %s", file, strerror(errno));
		return CLI_EXIT_IOERR;
	}
	size_t n = 0;
	int c, bad = 0;
	while ((c = getc(f)) != EOF && c != '\n') {
		if (c == '\0')
			bad = 1;
		if (n + 1 < pwsz)
			pw[n] = (char)c;
		n++;
	}
	int err = ferror(f);
	if (f != stdin)
		fclose(f);
	if (n > 0 && n < pwsz && pw[n - 1] == '\r')
		n--; /* a file written on Windows */
	if (err) {
		cli_error("cannot read password file %s", file);
		return CLI_EXIT_IOERR;
	}
	if (n >= pwsz || n > PASSWORD_MAX) {
		cli_error("password longer than %d octets", PASSWORD_MAX);
		return CLI_EXIT_DATAERR;
	}
	pw[n] = '\0';
	if (bad) {
		cli_error("password contains a NUL octet");
		return CLI_EXIT_DATAERR;
	}
	if (n == 0) {
		cli_error("empty password refused");
		return CLI_EXIT_DATAERR;
	}
	return 0;
}

/* Reads and hashes the password from `file` into hash. Returns 0 or an exit status. */
static int hash_password_file(const char *file, char *hash, size_t hashsz)
{
	char pw[PASSWORD_MAX + 2];
	int rc = read_password(file, pw, sizeof pw);
	if (rc == 0 && password_hash(pw, hash, hashsz) < 0) {
		cli_error("cannot hash the password");
		rc = CLI_EXIT_SOFTWARE;
	}
	explicit_bzero(pw, sizeof pw);
	return rc;
}

struct account_opts {
	const char *pos[2]; /* positional arguments after the subcommand */
	int npos;
	const char *password_file;
	int no_password;
	int disabled;
	int force; /* add: even when a Domain Sharing peer has it or cannot say */
};

/* Parses the arguments after the subcommand. Returns 0 or CLI_EXIT_USAGE. */
static int parse_opts(int argc, char **argv, struct account_opts *o)
{
	memset(o, 0, sizeof *o);
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--password-file") == 0 && i + 1 < argc) {
			o->password_file = argv[++i];
		} else if (strcmp(argv[i], "--no-password") == 0) {
			o->no_password = 1;
		} else if (strcmp(argv[i], "--disabled") == 0) {
			o->disabled = 1;
		} else if (strcmp(argv[i], "--force") == 0) {
			o->force = 1;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			cli_error("unknown option '%s'", argv[i]);
			return CLI_EXIT_USAGE;
		} else if (o->npos < 2) {
			o->pos[o->npos++] = argv[i];
		} else {
			return CLI_EXIT_USAGE;
		}
	}
	return 0;
}

static const char *state_word(enum account_state s)
{
	switch (s) {
	case ACCOUNT_ACTIVE: return "active";
	case ACCOUNT_DISABLED: return "disabled";
	case ACCOUNT_OVER_QUOTA: return "over-quota";
	}
	return "disabled";
}

static int print_account(void *arg, const char *address, enum account_state state)
{
	printf("%s %s\n", address, state_word(state));
	return 0;
}

static int account_list(struct cli_ctx *ctx, const struct account_opts *o)
{
	if (o->npos > 1 || o->password_file || o->no_password || o->disabled || o->force)
		return CLI_EXIT_USAGE;
	const char *domain = o->npos ? o->pos[0] : NULL;
	if (domain && (strlen(domain) == 0 || strlen(domain) > MAILADDR_DOMAIN_MAX)) {
		cli_error("'%s': not a domain", domain);
		return CLI_EXIT_DATAERR;
	}
	struct directory *d = cli_open_directory(ctx);
	if (!d)
		return CLI_EXIT_IOERR;
	int rc = report(d, directory_account_list(d, domain, print_account, NULL), "");
	directory_close(d);
	if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
		rc = CLI_EXIT_IOERR;
	return rc;
}

/* What a refusal, or a warning under --force, ends with. */
static const char *tail(int force)
{
	return force ? "; adding it anyway (--force)" : "; not added (--force adds it anyway)";
}

/*
 * What one peer's answer means for the add: 0 it does not have the address; else the
 * exit status it calls for (CLI_EXIT_FAIL: it has it; CLI_EXIT_TEMPFAIL: it cannot
 * say), after printing why, as a warning under --force.
 */
static int judge_peer(const struct verify_server_result *a, const char *addr, int force)
{
	const char *pre = force ? "warning: " : "", *post = tail(force);
	const char *name = a->server->name, *minger = a->server->minger_text;
	int r = a->result;
	if (r == MINGER_STATUS_UNKNOWN)
		return 0;
	if (r == MINGER_STATUS_ACTIVE || r == MINGER_STATUS_INACTIVE) {
		cli_error("%s%s exists on Domain Sharing peer %s (Minger %s: %d %s)%s", pre, addr,
		          name, minger, r, minger_status_word(r), post);
		return CLI_EXIT_FAIL;
	}
	if (r == MINGER_RESULT_TIMEOUT)
		cli_error("%sDomain Sharing peer %s (Minger %s) did not answer about %s%s", pre,
		          name, minger, addr, post);
	else if (r >= 0)
		cli_error("%sDomain Sharing peer %s (Minger %s) answered %d %s about %s%s", pre,
		          name, minger, r, minger_status_word(r), addr, post);
	else
		cli_error("%scannot ask Domain Sharing peer %s (Minger %s): the query could not be "
		          "sent%s",
		          pre, name, minger, post);
	return CLI_EXIT_TEMPFAIL;
}

struct peers_wait {
	int done, rc;
	const char *addr;
	int force;
};

/* The verifier's answer: every peer's result judged (each one concerned is named). */
static void on_peers(void *arg, const struct verify_answer *a)
{
	struct peers_wait *w = arg;
	w->done = 1;
	if (!a->servers) { /* not shared, nothing could be sent, out of memory: the verdict */
		if (a->servers_asked && a->status != VERIFY_NOTFOUND) {
			cli_error("%scannot ask the Domain Sharing peers about %s: %s%s",
			          w->force ? "warning: " : "", w->addr, a->reason, tail(w->force));
			w->rc = a->status == VERIFY_TEMPFAIL ? CLI_EXIT_TEMPFAIL : CLI_EXIT_FAIL;
		}
		return;
	}
	for (size_t i = 0; i < a->nservers; i++) {
		int r = judge_peer(&a->servers[i], w->addr, w->force);
		/* "Exists" outranks "cannot say": it is the answer that will not change. */
		if (r == CLI_EXIT_FAIL || (r && w->rc == 0))
			w->rc = r;
	}
}

/*
 * Asks the peers with the daemon's verifier (verify.h, VERIFY_FLAG_FRESH: all at
 * once, never the cache, every answer listed), on an event loop of our own.
 * Returns 0, or the exit status the answers call for.
 */
static int ask_peers(const struct conf *c, const char *addr, int force)
{
	struct peers_wait w = {.addr = addr, .force = force};
	char err[4600];
	struct event_base *base = event_base_new();
	struct verify *v =
	        base ? verify_new_flags(base, c, NULL, VERIFY_FLAG_NO_STATUS | VERIFY_FLAG_FRESH,
	                                err, sizeof err)
	             : NULL;
	if (!v) {
		/* A secret_file, a name or the domains file: nobody can say, as for a silent peer. */
		cli_error("%scannot ask the Domain Sharing peers: %s%s", force ? "warning: " : "",
		          base ? err : "out of memory", tail(force));
		w.rc = CLI_EXIT_TEMPFAIL;
	} else {
		struct verify_answer a;
		struct verify_req *req;
		if (verify_rcpt(v, addr, strlen(addr), "", 0, &a, on_peers, &w, &req) == 0)
			on_peers(&w,
			         &a); /* not shared (servers_asked 0), or nothing could be sent */
		while (!w.done && event_base_loop(base, EVLOOP_ONCE) == 0)
			;
		if (!w.done) {
			verify_cancel(req);
			cli_error("cannot ask the Domain Sharing peers: the event loop failed");
			w.rc = CLI_EXIT_SOFTWARE;
		}
	}
	verify_free(v);
	if (base)
		event_base_free(base);
	return w.rc;
}

/*
 * Before an add in a shared domain: asks every Domain Sharing peer whether the
 * address already lives there. Returns 0 (go on), or the exit status of a refusal
 * (1 when a peer has it, else 75), after naming each peer concerned.
 */
static int check_peers(struct cli_ctx *ctx, const char *addr, int force)
{
	const struct conf *c = cli_conf(ctx);
	const char *at = strrchr(addr, '@');
	const char *domain = at ? at + 1 : "";
	/* The verifier decides (domain_sharing_domains_file too); this only spares it the start. */
	if (!c->domain_sharing || c->domain_sharing_host.n == 0 ||
	    !conf_is_local_domain(c, domain, strlen(domain)))
		return 0;
	int rc = ask_peers(c, addr, force);
	return force && rc != CLI_EXIT_SOFTWARE ? 0 : rc;
}

/* Runs one write subcommand on an open directory. */
static enum directory_result account_write(struct directory *d, const char *sub, const char *addr,
                                           const char *hash, int disabled)
{
	if (strcmp(sub, "add") == 0)
		return directory_account_add(d, addr, hash,
		                             disabled ? ACCOUNT_DISABLED : ACCOUNT_ACTIVE);
	if (strcmp(sub, "del") == 0)
		return directory_account_del(d, addr);
	if (strcmp(sub, "passwd") == 0)
		return directory_account_set_password(d, addr, hash);
	if (strcmp(sub, "disable") == 0)
		return directory_account_set_state(d, addr, ACCOUNT_DISABLED);
	if (strcmp(sub, "over-quota") == 0)
		return directory_account_set_state(d, addr, ACCOUNT_OVER_QUOTA);
	return directory_account_set_state(d, addr, ACCOUNT_ACTIVE); /* enable */
}

int cmd_account(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char *const writes[] = {"add",     "del",    "passwd",
	                                     "disable", "enable", "over-quota"};
	struct account_opts o;
	if (argc < 2)
		return CLI_EXIT_USAGE;
	const char *sub = argv[1];
	if (parse_opts(argc, argv, &o) != 0)
		return CLI_EXIT_USAGE;
	if (strcmp(sub, "list") == 0)
		return account_list(ctx, &o);
	int known = 0;
	for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++)
		known |= strcmp(sub, writes[i]) == 0;
	if (!known) {
		cli_error("unknown account command '%s'", sub);
		return CLI_EXIT_USAGE;
	}
	int is_add = strcmp(sub, "add") == 0, is_passwd = strcmp(sub, "passwd") == 0;
	if (o.npos != 1 || ((o.disabled || o.force) && !is_add) ||
	    (o.password_file && !is_add && !is_passwd) || (o.no_password && !is_add) ||
	    (is_passwd && !o.password_file))
		return CLI_EXIT_USAGE;
	if (is_add && !o.password_file == !o.no_password) {
		/* An account without a password must be asked for, never the result of a
		 * forgotten option. */
		cli_error(o.no_password ? "--password-file and --no-password exclude each other"
		                        : "account add needs --password-file F (its first line is "
		                          "the password; - reads standard input) or --no-password "
		                          "(an account that cannot log in)");
		return CLI_EXIT_USAGE;
	}
	const char *addr = o.pos[0];
	int rc = cli_check_address(ctx, addr, is_add);
	if (rc != 0)
		return rc;
	if (is_add && (rc = check_peers(ctx, addr, o.force)) != 0)
		return rc;
	/* Hash before opening: yescrypt takes a while and must not hold the write lock. */
	char hash[PASSWORD_HASH_MAX] = "";
	if (o.password_file && (rc = hash_password_file(o.password_file, hash, sizeof hash)) != 0)
		return rc;
	struct directory *d = cli_open_directory(ctx);
	if (!d)
		return CLI_EXIT_IOERR;
	rc = report(d, account_write(d, sub, addr, o.password_file ? hash : NULL, o.disabled),
	            addr);
	directory_prune_changes(d, ACCOUNT_LOG_KEEP); /* housekeeping; failure is harmless */
	directory_close(d);
	return rc;
}
