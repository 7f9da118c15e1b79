/*
 * cmd_screen: `sharemail -c FILE screen list | add ADDRESS [--for DURATION] |
 * del ADDRESS`, the Dynamic Screen's list in <state_dir>/screen.db (screen.h).
 * A running sharemaild takes each change within a second (its writer thread
 * polls the database's data_version).
 *
 *   list  one line per screened address: "ADDRESS UNTIL REASON", the expiry in
 *         ISO 8601 UTC, ordered by address; IPv6 as its /64 ("2001:db8::/64")
 *   add   screens ADDRESS (IPv4, IPv6: its /64, or IPV6/64) for DURATION
 *         (seconds, or with a suffix s, m, h, d; default screen_duration),
 *         replacing any earlier entry; prints "ADDRESS screened until UNTIL".
 *         An address in screen_exempt or smtp_trusted_networks is listed with
 *         a warning: sharemaild lets it in anyway.
 *   del   removes it; exit 1 when it was not screened.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "screen/screen.h"
#include "screen/screen_db.h"
#include "screen/screen_key.h"
#include "util/timeutil.h"

#define DURATION_MAX (3650LL * 86400) /* ten years: "for good" without overflow */

static struct screen_db *open_db(struct cli_ctx *ctx)
{
	char path[4096], err[512];
	if (cli_state_path(ctx, SCREEN_DB_FILE, path, sizeof path) < 0)
		return NULL;
	struct screen_db *db = screen_db_open(path, err, sizeof err);
	if (!db)
		cli_error("cannot open the screen: %s", err);
	return db;
}

/* Seconds, or a number with one suffix s, m, h, d; 1 s to DURATION_MAX. Returns 0 or -1. */
static int duration_parse(const char *s, long long *out)
{
	long long v = 0, mult = 1;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > DURATION_MAX)
			return -1;
	}
	if (*p) {
		const char *units = "smhd";
		static const long long mults[] = {1, 60, 3600, 86400};
		const char *u = strchr(units, *p | 0x20);
		if (!u || p[1] != '\0')
			return -1;
		mult = mults[u - units];
	}
	if (v == 0 || v > DURATION_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

static void format_time(int64_t t, char *out, size_t outsz)
{
	time_t tt = (time_t)t;
	struct tm tm;
	snprintf(out, outsz, "-");
	if (gmtime_r(&tt, &tm))
		strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int print_entry(void *arg, const struct screen_entry *e)
{
	char addr[SCREEN_KEY_TEXT_MAX], when[32];
	screen_key_format(&e->key, addr, sizeof addr);
	format_time(e->until, when, sizeof when);
	/* Reasons are the daemon's words or "manual"; a hand-edited row may hold anything. */
	char reason[SCREEN_REASON_MAX];
	snprintf(reason, sizeof reason, "%s", e->reason[0] ? e->reason : "-");
	for (char *r = reason; *r; r++)
		if ((unsigned char)*r <= ' ' || (unsigned char)*r >= 0x7f)
			*r = '?';
	printf("%s %s %s\n", addr, when, reason);
	return 0;
}

/* The socket address a key stands for (the /64's first address for IPv6). */
static void key_sockaddr(const struct screen_key *k, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (screen_key_is_v4(k)) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, k->b + 12, 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, k->b, 16);
	}
}

static int exempt(const struct conf *c, const struct screen_key *k)
{
	struct sockaddr_storage ss;
	key_sockaddr(k, &ss);
	const struct netlist *lists[] = {&c->screen_exempt, &c->smtp_trusted_networks};
	for (size_t l = 0; l < 2; l++)
		for (size_t i = 0; i < lists[l]->n; i++)
			if (netaddr_net_contains(&lists[l]->v[i], (const struct sockaddr *)&ss))
				return 1;
	return 0;
}

static int do_add(struct cli_ctx *ctx, struct screen_db *db, const struct screen_key *k,
                  long long seconds)
{
	char addr[SCREEN_KEY_TEXT_MAX], when[32];
	int64_t now = time_wall_s();
	struct screen_entry e = {.key = *k, .until = now + seconds, .reason = "manual"};
	screen_key_format(k, addr, sizeof addr);
	if (exempt(cli_conf(ctx), k))
		fprintf(stderr,
		        "sharemail: warning: %s is in screen_exempt or smtp_trusted_networks: "
		        "sharemaild lets it in all the same\n",
		        addr);
	if (screen_db_put(db, &e, 1, 0, now) != 0) {
		cli_error("cannot write the screen");
		return CLI_EXIT_IOERR;
	}
	format_time(e.until, when, sizeof when);
	printf("%s screened until %s\n", addr, when);
	return CLI_EXIT_OK;
}

static int do_del(struct screen_db *db, const struct screen_key *k)
{
	char addr[SCREEN_KEY_TEXT_MAX];
	screen_key_format(k, addr, sizeof addr);
	int rc = screen_db_del(db, k, time_wall_s());
	if (rc < 0) {
		cli_error("cannot write the screen");
		return CLI_EXIT_IOERR;
	}
	if (rc == 0) {
		cli_error("%s is not screened", addr);
		return CLI_EXIT_FAIL;
	}
	printf("%s no longer screened\n", addr);
	return CLI_EXIT_OK;
}

/* Parses "add ADDRESS [--for DURATION]" and "del ADDRESS"; 0 or an exit status. */
static int parse_args(struct cli_ctx *ctx, int argc, char **argv, struct screen_key *k,
                      long long *seconds)
{
	int add = strcmp(argv[1], "add") == 0;
	if (argc < 3 || (!add && argc != 3) || (add && argc != 3 && argc != 5))
		return CLI_EXIT_USAGE;
	if (add && argc == 5) {
		if (strcmp(argv[3], "--for") != 0)
			return CLI_EXIT_USAGE;
		if (duration_parse(argv[4], seconds) != 0) {
			cli_error("'%s' is not a duration (seconds, or a number with s, m, h or d; "
			          "at most 3650d)",
			          argv[4]);
			return CLI_EXIT_USAGE;
		}
	} else if (add) {
		*seconds = cli_conf(ctx)->screen_duration;
	}
	if (screen_key_parse(argv[2], k) != 0) {
		cli_error("'%s' is not an IP address (IPv4, IPv6 or IPV6/64)", argv[2]);
		return CLI_EXIT_DATAERR;
	}
	return 0;
}

int cmd_screen(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return CLI_EXIT_USAGE;
	int list = strcmp(argv[1], "list") == 0;
	if (!list && strcmp(argv[1], "add") != 0 && strcmp(argv[1], "del") != 0) {
		cli_error("unknown screen command '%s'", argv[1]);
		return CLI_EXIT_USAGE;
	}
	struct screen_key k;
	long long seconds = 0;
	int rc =
	        list ? (argc == 2 ? 0 : CLI_EXIT_USAGE) : parse_args(ctx, argc, argv, &k, &seconds);
	if (rc != 0)
		return rc;
	struct screen_db *db = open_db(ctx);
	if (!db)
		return CLI_EXIT_IOERR;
	if (list) {
		if (screen_db_each(db, time_wall_s(), 1, 0, print_entry, NULL) < 0) {
			cli_error("cannot read the screen");
			rc = CLI_EXIT_IOERR;
		}
	} else if (strcmp(argv[1], "add") == 0) {
		rc = do_add(ctx, db, &k, seconds);
	} else {
		rc = do_del(db, &k);
	}
	screen_db_close(db);
	if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
		rc = CLI_EXIT_IOERR;
	return rc;
}
