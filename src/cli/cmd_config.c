/*
 * cmd_config: `sharemail check-config` and `sharemail config-doc [--man]`.
 * See sharemail(1) and sharemail.conf(5).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "conf/conf.h"

/*
 * check-config: loads the file the way sharemaild does (secret file included) and
 * shows every problem as "file:line: message" on stderr (exit 78), or the
 * warnings, if any, as "file:line: warning: message" and "FILE: ok" (exit 0). It
 * does not go through cli_conf(), which skips the secret file.
 */
int cmd_check_config(struct cli_ctx *ctx, int argc, char **argv)
{
	struct conf_errors errs = {0};
	if (argc != 1)
		return CLI_EXIT_USAGE;
	struct conf *c = conf_load(ctx->conf_path, &errs);
	conf_errors_print(&errs);
	conf_errors_free(&errs);
	if (!c)
		return CLI_EXIT_CONFIG;
	conf_free(c);
	printf("%s: ok\n", ctx->conf_path);
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IOERR;
}

/* config-doc: the schema as a plain table, or with --man as sharemail.conf(5)'s roff. */
int cmd_config_doc(struct cli_ctx *ctx, int argc, char **argv)
{
	int rc;
	if (argc == 1)
		rc = conf_doc_text(stdout);
	else if (argc == 2 && strcmp(argv[1], "--man") == 0)
		rc = conf_doc_man(stdout);
	else
		return CLI_EXIT_USAGE;
	if (rc != 0 || fflush(stdout) != 0) {
		cli_error("cannot write the documentation");
		return CLI_EXIT_IOERR;
	}
	return CLI_EXIT_OK;
}
