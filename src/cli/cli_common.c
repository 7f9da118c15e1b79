/* cli_common: helpers shared by the command groups; see cli.h. */
#include <errno.h>
#include <string.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "directory/directory.h"
#include "proto/mailaddr.h"
#include "util/fsutil.h"

int cli_state_path(struct cli_ctx *ctx, const char *name, char *out, size_t outsz)
{
	struct conf *c = cli_conf(ctx);
	if (conf_state_path(c, name, out, outsz) < 0) {
		cli_error("state_dir path too long");
		return -1;
	}
	if (fs_mkdirs(c->state_dir, 0700, 0) < 0) {
		cli_error("cannot create state_dir %s: %s", c->state_dir, strerror(errno));
		return -1;
	}
	return 0;
}

struct directory *cli_open_directory(struct cli_ctx *ctx)
{
	char path[4096], err[512];
	if (cli_state_path(ctx, "directory.db", path, sizeof path) < 0)
		return NULL;
	struct directory *d = directory_open(path, 0, err, sizeof err);
	if (!d)
		cli_error("%s: %s", path, err);
	return d;
}

int cli_check_address(struct cli_ctx *ctx, const char *addr, int need_local)
{
	struct mailaddr a;
	enum mailaddr_result r = mailaddr_parse_exact(addr, strlen(addr), &a);
	if (r != MAILADDR_OK) {
		cli_error("'%s': %s", addr, mailaddr_strerror(r));
		return CLI_EXIT_DATAERR;
	}
	if (!need_local)
		return 0;
	struct conf *c = cli_conf(ctx);
	if (!conf_is_local_domain(c, a.domain, a.domain_len)) {
		cli_error("domain '%.*s' is not in local_domains (%s)", (int)a.domain_len, a.domain,
		          c->path ? c->path : ctx->conf_path);
		return CLI_EXIT_DATAERR;
	}
	return 0;
}
