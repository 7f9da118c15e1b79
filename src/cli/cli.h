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
 * Returns the loaded configuration, loading it on first use. On errors it prints
 * them as "file:line: message" and exits with CLI_EXIT_CONFIG (78).
 */
struct conf *cli_conf(struct cli_ctx *ctx);

/* Prints "sharemail: <message>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Command groups: argv[0] is the group name ("account", ...). */
int cmd_account(struct cli_ctx *ctx, int argc, char **argv);
int cmd_alias(struct cli_ctx *ctx, int argc, char **argv);
int cmd_minger(struct cli_ctx *ctx, int argc, char **argv);
int cmd_cache(struct cli_ctx *ctx, int argc, char **argv);
int cmd_queue(struct cli_ctx *ctx, int argc, char **argv);
int cmd_check_config(struct cli_ctx *ctx, int argc, char **argv);
int cmd_config_doc(struct cli_ctx *ctx, int argc, char **argv);

#endif
