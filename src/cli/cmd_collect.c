/*
 * cmd_collect: `sharemail -c FILE collect now [SOURCE] [--timeout SECONDS]` and
 * `collect status`. `now` asks the running sharemaild to run a DomainPOP cycle
 * at once (of SOURCE, or of every collect_source) and returns when it has
 * ended: it prints one line per source ("NAME: ok collected=N ..." or
 * "NAME: failed: REASON") and exits 0 when every source collected, 1 when one
 * failed, 64 when SOURCE names no collect_source, 75 when no sharemaild runs
 * on this state_dir (or it gave no answer within the timeout, default 600 s).
 * `status` prints the last cycle of each source as the daemon recorded it.
 * The request and its answer are files in <state_dir>/collect/
 * (collect/collect_ctl.h): the tool never talks POP3 itself.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "collect/collect_ctl.h"
#include "conf/conf.h"
#include "proto/collect_spec.h"

#define COLLECT_TIMEOUT_DEFAULT_S 600

/* 1 if word names one of the configured sources (or is NULL), else 0. */
static int source_known(const struct conf *c, const char *word)
{
	for (size_t i = 0; i < c->collect_source.n; i++) {
		struct collect_spec s;
		char err[256];
		if (collect_spec_parse(c->collect_source.v[i], &s, err, sizeof err) == 0 &&
		    (!word || collect_spec_matches(&s, word)))
			return 1;
	}
	return 0;
}

/* Prints the answer's lines after the code line; returns the code. */
static int answer_print(const char *text)
{
	char *end = NULL;
	long code = strtol(text, &end, 10);
	if (end == text || code < 0 || code > 255) {
		cli_error("the daemon's answer is unreadable");
		return CLI_EXIT_SOFTWARE;
	}
	const char *rest = strchr(text, '\n');
	if (rest)
		fputs(rest + 1, code ? stderr : stdout);
	return (int)code;
}

static int collect_now(struct cli_ctx *ctx, const char *source, int timeout_s)
{
	struct conf *c = cli_conf(ctx);
	if (c->collect_source.n == 0) {
		cli_error("%s has no collect_source: nothing to collect", c->path);
		return CLI_EXIT_CONFIG;
	}
	if (!source_known(c, source)) {
		cli_error("'%s' names no collect_source of %s", source, c->path);
		return CLI_EXIT_USAGE;
	}
	int running = collect_ctl_daemon_running(c->state_dir);
	if (running <= 0) {
		cli_error("sharemaild is not running on %s%s%s: no cycle was run", c->state_dir,
		          running < 0 ? ": " : "", running < 0 ? strerror(errno) : "");
		return CLI_EXIT_TEMPFAIL;
	}
	char id[COLLECT_CTL_ID_MAX], text[COLLECT_CTL_ANSWER_MAX];
	if (collect_ctl_request(c->state_dir, source, id) != 0) {
		cli_error("cannot leave a request in %s/%s: %s", c->state_dir, COLLECT_CTL_DIR,
		          strerror(errno));
		return CLI_EXIT_IOERR;
	}
	if (collect_ctl_wait(c->state_dir, id, timeout_s * 1000, text, sizeof text) != 0) {
		if (errno == ESRCH)
			cli_error("sharemaild stopped before the cycle ended");
		else
			cli_error("no answer from sharemaild within %d s", timeout_s);
		return CLI_EXIT_TEMPFAIL;
	}
	return answer_print(text);
}

static int collect_status(struct cli_ctx *ctx)
{
	struct conf *c = cli_conf(ctx);
	char text[COLLECT_CTL_ANSWER_MAX];
	if (collect_ctl_status_read(c->state_dir, text, sizeof text) != 0) {
		if (errno != ENOENT) {
			cli_error("cannot read %s/%s/status: %s", c->state_dir, COLLECT_CTL_DIR,
			          strerror(errno));
			return CLI_EXIT_IOERR;
		}
		printf("no cycle has run yet\n");
		return CLI_EXIT_OK;
	}
	fputs(text, stdout);
	return CLI_EXIT_OK;
}

int cmd_collect(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "status") == 0)
		return collect_status(ctx);
	if (argc < 2 || strcmp(argv[1], "now") != 0)
		return CLI_EXIT_USAGE;
	const char *source = NULL;
	int timeout_s = COLLECT_TIMEOUT_DEFAULT_S;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			char *end;
			long t = strtol(argv[++i], &end, 10);
			if (*end || t < 1 || t > 86400) {
				cli_error("--timeout takes 1-86400 seconds");
				return CLI_EXIT_USAGE;
			}
			timeout_s = (int)t;
		} else if (argv[i][0] != '-' && !source) {
			source = argv[i];
		} else {
			return CLI_EXIT_USAGE;
		}
	}
	int rc = collect_now(ctx, source, timeout_s);
	if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
		rc = CLI_EXIT_IOERR;
	return rc;
}
