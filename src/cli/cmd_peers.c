/*
 * cmd_peers: `sharemail -c FILE peers`, the servers this one asks with Minger
 * (domain_sharing_host peers, gateway_domain and forward_domain servers) and how
 * they have been answering, from <state_dir>/peers.status, which the daemon
 * rewrites as it asks them.
 *
 * Output: a header line, then one line per configured server in the order of the
 * configuration, columns separated by blanks:
 *   KIND NAME MINGER LAST-ANSWER RTT-LAST RTT-AVG QUERIES FAILURES
 * LAST-ANSWER is ISO 8601 UTC or "never"; round-trip times in milliseconds
 * ("0.412ms"), "-" before the first answer. A server the file does not mention
 * (the daemon has not asked it yet, or is not running) shows "never" and zeros.
 * The file is read with verify_status_read() (its format: verify/verify_status.h).
 * Exit: 0; 64 usage; 74 the status file exists but cannot be read; 78 config.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "verify/verify_servers.h"
#include "verify/verify_status.h"

struct status_list {
	struct verify_status_entry *v;
	size_t n;
};

/* The daemon rewrites the file whole; a damaged line is skipped, not fatal. */
static void on_skipped(void *arg, const char *where)
{
	(void)arg;
	cli_error("warning: %s: not a status line, skipped", where);
}

/* Reads the daemon's file; an absent file is an empty list. Returns 0 or -1 (printed). */
static int read_status(const struct conf *c, struct status_list *out)
{
	char path[4096], err[4200];
	memset(out, 0, sizeof *out);
	if (conf_state_path(c, VERIFY_STATUS_FILE, path, sizeof path) < 0) {
		cli_error("state_dir path too long");
		return -1;
	}
	if (verify_status_read(path, &out->v, &out->n, on_skipped, NULL, err, sizeof err) == 0)
		return 0;
	if (errno == ENOENT && access(path, F_OK) != 0)
		return 0;
	cli_error("cannot read %s", err);
	return -1;
}

/* The status line of a configured server: same kind and name, else same kind and Minger address. */
static const struct verify_status_entry *find_status(const struct status_list *l,
                                                     const struct verify_server *p)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].kind == p->kind && strcmp(l->v[i].name, p->name) == 0)
			return &l->v[i];
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].kind == p->kind && strcmp(l->v[i].minger_addr, p->minger_text) == 0)
			return &l->v[i];
	return NULL;
}

static void format_rtt(uint64_t us, int answered, char *out, size_t outsz)
{
	if (!answered)
		snprintf(out, outsz, "-");
	else
		snprintf(out, outsz, "%" PRIu64 ".%03" PRIu64 "ms", us / 1000, us % 1000);
}

static void print_peer(const struct verify_server *p, const struct verify_status_entry *st)
{
	char when[32] = "never", last[32], avg[32];
	int answered = st && st->last_answer > 0;
	if (answered) {
		time_t t = (time_t)st->last_answer;
		struct tm tm;
		if (gmtime_r(&t, &tm))
			strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	format_rtt(st ? st->rtt_last_us : 0, answered, last, sizeof last);
	format_rtt(st ? st->rtt_avg_us : 0, answered, avg, sizeof avg);
	printf("%-8s %-24s %-24s %-20s %-10s %-10s %8" PRIu64 " %8" PRIu64 "\n",
	       verify_status_kind_name(p->kind), p->name, p->minger_text, when, last, avg,
	       st ? st->queries : 0, st ? st->failures : 0);
}

int cmd_peers(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc != 1)
		return CLI_EXIT_USAGE;
	const struct conf *c = cli_conf(ctx);
	struct verify_servers peers;
	char err[4600];
	if (verify_servers_load(c, 0, &peers, err, sizeof err) != 0) {
		cli_error("%s", err);
		return CLI_EXIT_CONFIG;
	}
	struct status_list sl;
	if (read_status(c, &sl) != 0) {
		verify_servers_free(&peers);
		return CLI_EXIT_IOERR;
	}
	if (!c->domain_sharing && c->domain_sharing_host.n)
		cli_error("note: domain_sharing = no: the peers are configured but not asked");
	printf("%-8s %-24s %-24s %-20s %-10s %-10s %8s %8s\n", "KIND", "NAME", "MINGER",
	       "LAST-ANSWER", "RTT-LAST", "RTT-AVG", "QUERIES", "FAILURES");
	for (size_t i = 0; i < peers.n; i++)
		print_peer(&peers.v[i], find_status(&sl, &peers.v[i]));
	free(sl.v);
	verify_servers_free(&peers);
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IOERR;
}
