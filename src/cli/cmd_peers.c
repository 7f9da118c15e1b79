/*
 * cmd_peers: `sharemail -c FILE peers`, the servers this one asks with Minger
 * (domain_sharing_host peers, gateway_domain and forward_domain servers) and how
 * they have been answering, from <state_dir>/peers.status, which the daemon
 * rewrites as it asks them (see cli_peers.h for the line format).
 *
 * Output: a header line, then one line per configured server in the order of the
 * configuration, columns separated by blanks:
 *   KIND NAME MINGER LAST-ANSWER RTT-LAST RTT-AVG QUERIES FAILURES
 * LAST-ANSWER is ISO 8601 UTC or "never"; round-trip times in milliseconds
 * ("0.412ms"), "-" before the first answer. A server the file does not mention
 * (the daemon has not asked it yet, or is not running) shows "never" and zeros.
 * Exit: 0; 64 usage; 74 the status file exists but cannot be read; 78 config.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_peers.h"
#include "conf/conf.h"

#define PEERS_STATUS_FILE "peers.status"
#define PEERS_LINE_MAX 1024

struct status_list {
	struct cli_peer_status *v;
	size_t n;
};

/* Reads the daemon's file; an absent file is an empty list. Returns 0 or -1 (printed). */
static int read_status(const struct conf *c, struct status_list *out)
{
	char path[4096], line[PEERS_LINE_MAX];
	memset(out, 0, sizeof *out);
	if (conf_state_path(c, PEERS_STATUS_FILE, path, sizeof path) < 0) {
		cli_error("state_dir path too long");
		return -1;
	}
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		cli_error("cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	long lineno = 0;
	int rc = 0;
	while (rc == 0 && fgets(line, sizeof line, f)) {
		lineno++;
		struct cli_peer_status st;
		int r = cli_peers_status_parse(line, &st);
		if (r == 1)
			continue;
		if (r < 0) {
			/* The daemon rewrites the file whole; a bad line is skipped, not fatal. */
			cli_error("warning: %s:%ld: not a status line, skipped", path, lineno);
			continue;
		}
		struct cli_peer_status *v = realloc(out->v, (out->n + 1) * sizeof *v);
		if (!v) {
			cli_error("out of memory");
			rc = -1;
			break;
		}
		out->v = v;
		out->v[out->n++] = st;
	}
	if (rc == 0 && ferror(f)) {
		cli_error("cannot read %s", path);
		rc = -1;
	}
	fclose(f);
	return rc;
}

/* The status line of a configured server: same kind and name, else same kind and Minger address. */
static const struct cli_peer_status *find_status(const struct status_list *l,
                                                 const struct cli_peer *p)
{
	const char *kind = cli_peers_kind_word(p->kind);
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].kind, kind) == 0 && strcmp(l->v[i].name, p->name) == 0)
			return &l->v[i];
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].kind, kind) == 0 && strcmp(l->v[i].minger, p->minger) == 0)
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

static void print_peer(const struct cli_peer *p, const struct cli_peer_status *st)
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
	       cli_peers_kind_word(p->kind), p->name, p->minger, when, last, avg,
	       st ? st->queries : 0, st ? st->failures : 0);
}

int cmd_peers(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc != 1)
		return CLI_EXIT_USAGE;
	const struct conf *c = cli_conf(ctx);
	struct cli_peers peers;
	if (cli_peers_load(c, &peers) != 0)
		return CLI_EXIT_CONFIG;
	struct status_list sl;
	if (read_status(c, &sl) != 0) {
		cli_peers_free(&peers);
		return CLI_EXIT_IOERR;
	}
	if (!c->domain_sharing && c->domain_sharing_host.n)
		cli_error("note: domain_sharing = no: the peers are configured but not asked");
	printf("%-8s %-24s %-24s %-20s %-10s %-10s %8s %8s\n", "KIND", "NAME", "MINGER",
	       "LAST-ANSWER", "RTT-LAST", "RTT-AVG", "QUERIES", "FAILURES");
	for (size_t i = 0; i < peers.n; i++)
		print_peer(&peers.v[i], find_status(&sl, &peers.v[i]));
	free(sl.v);
	cli_peers_free(&peers);
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_IOERR;
}
