/*
 * main: the `sharemail` tool's entry point: global options and the command table.
 * See sharemail(1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "util/version.h"

struct cli_command {
	const char *name;
	int (*run)(struct cli_ctx *ctx, int argc, char **argv);
	const char *usage;
};

static const struct cli_command commands[] = {
        {"account", cmd_account,
         "account add ADDRESS (--password-file F | --no-password) [--disabled] [--force] |\n"
         "          del ADDRESS | list [DOMAIN] | disable ADDRESS | enable ADDRESS |\n"
         "          over-quota ADDRESS | passwd ADDRESS --password-file F"},
        {"alias", cmd_alias, "alias add ALIAS TARGET... [--force] | del ALIAS | list"},
        {"list", cmd_list,
         "list add LIST [--owner ADDRESS] [--members-only] | del LIST |\n"
         "          join LIST ADDRESS... [--force] | leave LIST ADDRESS... | show LIST | list"},
        {"minger", cmd_minger,
         "minger query ADDRESS... --server HOST[:PORT] [--secret-file F] [--timeout MS]\n"
         "          [--retries N] [--require-reply-mac] [--no-ext] [--file F] [--window N]\n"
         "          [--cached] [--no-cache]"},
        {"cache", cmd_cache, "cache list | flush [ADDRESS]"},
        {"peers", cmd_peers, "peers"},
        {"queue", cmd_queue, "queue list | show ID | delete ID | flush [ID]"},
        {"collect", cmd_collect, "collect now [SOURCE] [--timeout SECONDS] | status"},
        {"screen", cmd_screen, "screen list | add ADDRESS [--for DURATION] | del ADDRESS"},
        {"check-config", cmd_check_config, "check-config"},
        {"config-doc", cmd_config_doc, "config-doc [--man]"},
};

void cli_error(const char *fmt, ...)
{
	va_list ap;
	fputs("sharemail: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* No command answers Minger queries: the secret file may be the daemon's alone. */
struct conf *cli_conf(struct cli_ctx *ctx)
{
	if (ctx->conf)
		return ctx->conf;
	struct conf_errors errs = {0};
	ctx->conf = conf_load_flags(ctx->conf_path, CONF_LOAD_SKIP_SECRETS, &errs);
	conf_errors_print(&errs); /* the errors, or the warnings of a conf that loaded */
	conf_errors_free(&errs);
	if (!ctx->conf)
		exit(CLI_EXIT_CONFIG);
	return ctx->conf;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: sharemail [-c FILE] COMMAND ...\n"
	           "  -c FILE  configuration (default $SHAREMAIL_CONF, else " CLI_DEFAULT_CONF ")\n"
	           "commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  sharemail %s\n", commands[i].usage);
	fprintf(f, "  sharemail --help | --version\n"
	           "'sharemail COMMAND --help' shows one command; see sharemail(1).\n");
}

/* 1 if argv (a command's arguments, before any "--") asks for help. */
static int wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

static int run_command(struct cli_ctx *ctx, const struct cli_command *cmd, int argc, char **argv)
{
	if (wants_help(argc, argv)) {
		printf("usage: sharemail [-c FILE] %s\n", cmd->usage);
		return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IOERR;
	}
	int rc = cmd->run(ctx, argc, argv);
	if (rc == CLI_EXIT_USAGE)
		fprintf(stderr, "usage: sharemail [-c FILE] %s\n", cmd->usage);
	return rc;
}

int main(int argc, char **argv)
{
	struct cli_ctx ctx = {0};
	const char *env = getenv("SHAREMAIL_CONF");
	ctx.conf_path = env && *env ? env : CLI_DEFAULT_CONF;
	ctx.conf_given = env && *env;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			ctx.conf_path = argv[++i];
			ctx.conf_given = 1;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IOERR;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("sharemail %s\n", SHAREMAIL_VERSION);
			return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IOERR;
		} else {
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
		if (strcmp(argv[i], commands[k].name) == 0) {
			int rc = run_command(&ctx, &commands[k], argc - i, argv + i);
			conf_free(ctx.conf);
			return rc;
		}
	}
	cli_error("unknown command '%s'", argv[i]);
	usage(stderr);
	return CLI_EXIT_USAGE;
}
