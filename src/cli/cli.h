/*
 * cli: the `sharemail` administration tool. main.c parses the global options
 * (-c FILE, SHAREMAIL_CONF) and dispatches through one command table to a
 * cmd_*() function, one file per command group. A command returns the process
 * exit status (sysexits values below) and prints its own errors to stderr as
 * "sharemail: message".
 */
#ifndef SHAREMAIL_CLI_CLI_H
#define SHAREMAIL_CLI_CLI_H

#include <stdarg.h>
#include <stddef.h>

struct conf;

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1 /* the operation failed (e.g. not found, duplicate) */
#define CLI_EXIT_USAGE 64 /* EX_USAGE */
#define CLI_EXIT_DATAERR 65 /* EX_DATAERR: bad address or input */
#define CLI_EXIT_UNAVAILABLE 69
#define CLI_EXIT_SOFTWARE 70
#define CLI_EXIT_IOERR 74
#define CLI_EXIT_TEMPFAIL 75 /* EX_TEMPFAIL: e.g. Minger timeout */
#define CLI_EXIT_CONFIG 78 /* EX_CONFIG */

#define CLI_DEFAULT_CONF "/etc/sharemail/sharemail.conf"

struct cli_ctx {
	const char *conf_path; /* -c, else $SHAREMAIL_CONF, else CLI_DEFAULT_CONF */
	int conf_given; /* -c or SHAREMAIL_CONF was used */
	struct conf *conf; /* loaded on first cli_conf() call */
};

/*
 * Returns the loaded configuration, loading it on first use without opening
 * minger_secret_file (CONF_LOAD_SKIP_SECRETS: no command here answers Minger
 * queries). Prints any warnings; on errors it prints them as "file:line: message"
 * and exits with CLI_EXIT_CONFIG (78).
 */
struct conf *cli_conf(struct cli_ctx *ctx);

/*
 * Builds "<state_dir>/<name>" into out after creating state_dir (mode 0700: it
 * holds password hashes and mail) if it is missing. Prints why and returns -1
 * on failure.
 */
int cli_state_path(struct cli_ctx *ctx, const char *name, char *out, size_t outsz);

struct directory;
/* Opens <state_dir>/directory.db (created if needed); prints why and returns NULL on failure. */
struct directory *cli_open_directory(struct cli_ctx *ctx);

/*
 * Checks an address's syntax and, if need_local, that its domain is one of
 * local_domains. Returns 0, or CLI_EXIT_DATAERR after printing why.
 */
int cli_check_address(struct cli_ctx *ctx, const char *addr, int need_local);

/* Prints "sharemail: <message>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Command groups: argv[0] is the group name ("account", ...). */
int cmd_account(struct cli_ctx *ctx, int argc, char **argv);
int cmd_alias(struct cli_ctx *ctx, int argc, char **argv);
int cmd_list(struct cli_ctx *ctx, int argc, char **argv);
int cmd_minger(struct cli_ctx *ctx, int argc, char **argv);
int cmd_cache(struct cli_ctx *ctx, int argc, char **argv);
int cmd_peers(struct cli_ctx *ctx, int argc, char **argv);
int cmd_queue(struct cli_ctx *ctx, int argc, char **argv);
int cmd_screen(struct cli_ctx *ctx, int argc, char **argv);
int cmd_collect(struct cli_ctx *ctx, int argc, char **argv);
int cmd_check_config(struct cli_ctx *ctx, int argc, char **argv);
int cmd_config_doc(struct cli_ctx *ctx, int argc, char **argv);

#endif
