/*
 * cmd_queue: `sharemail -c FILE queue list | show ID | delete ID | flush [ID]`,
 * the spool in <state_dir>/queue (src/queue). Works beside a running daemon: the
 * queue is opened without an event loop, so nothing is committed, cleaned up or
 * quarantined from here, and no state file is written (a flush is a request the
 * daemon carries out).
 *
 *   list    per message, oldest first, one line
 *           "ID AGE <sender> N-recipients state=count ..." (AGE like 5s, 3m, 2h, 4d),
 *           then, once recipients were expanded to their final mailboxes,
 *           "; M mailboxes state=count ...", followed by one line per recipient
 *           "  <ADDR> STATE [next=TIME] [attempts=N] [route=R] [last=\"REPLY\"]"
 *           (next only when deferred). A file still being received (or damaged)
 *           is "ID incomplete (being received, or damaged)".
 *   show    the envelope, the message size and every recipient's whole status
 *           (state, attempts, next try, route, notify, orcpt, last reply and its
 *           parts), each followed by its final mailboxes' states
 *   delete  removes the message; prints "deleted ID"
 *   flush   asks the daemon to retry every deferred recipient now (of message
 *           ID only, with one): it does within about a second, or when it
 *           starts; prints "N recipients due now"
 *
 * Envelope fields come from peers: bytes outside printable ASCII are printed as
 * \xNN so nothing can forge output lines or terminal sequences.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "queue/queue.h"
#include "util/timeutil.h"

static const char *const state_names[] = {"pending", "delivered", "failed", "deferred", "remote"};
#define N_STATES ((int)(sizeof state_names / sizeof state_names[0]))

static const char *state_name(enum rcpt_state s)
{
	return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "?";
}

static void put_safe(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\')
			putchar(*p);
		else
			printf("\\x%02x", *p);
	}
}

static void put_field(const char *label, const char *value)
{
	printf("%s: ", label);
	if (value)
		put_safe(value);
	else
		putchar('-');
	putchar('\n');
}

static void format_age(int64_t secs, char *out, size_t n)
{
	if (secs < 0)
		secs = 0;
	if (secs < 120)
		snprintf(out, n, "%llds", (long long)secs);
	else if (secs < 7200)
		snprintf(out, n, "%lldm", (long long)(secs / 60));
	else if (secs < 172800)
		snprintf(out, n, "%lldh", (long long)(secs / 3600));
	else
		snprintf(out, n, "%lldd", (long long)(secs / 86400));
}

static void format_time(int64_t t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!gmtime_r(&tt, &tm) || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, n, "%lld", (long long)t);
}

/* Opens <state_dir>/queue without an event loop (no start-up scan, no commits). */
static struct queue *open_queue(struct cli_ctx *ctx)
{
	char path[4096], err[512];
	if (cli_state_path(ctx, "queue", path, sizeof path) < 0)
		return NULL;
	struct queue *q = queue_open(path, NULL, err, sizeof err);
	if (!q)
		cli_error("cannot open the queue: %s", err);
	return q;
}

struct list_ctx {
	struct queue *q;
	int64_t now;
};

/* " state=count" for every state with a count. */
static void put_counts(const size_t counts[N_STATES])
{
	for (int s = 0; s < N_STATES; s++)
		if (counts[s])
			printf(" %s=%zu", state_names[s], counts[s]);
}

/* The rest of a recipient's list line: next try, attempts, route and last reply. */
static void list_rcpt_details(const struct envelope_rcpt *r)
{
	char when[64];
	if (r->state == RCPT_DEFERRED) {
		format_time(r->next_try, when, sizeof when);
		printf(" next=%s", when);
	}
	if (r->attempts)
		printf(" attempts=%d", r->attempts);
	if (r->route && *r->route) {
		printf(" route=");
		put_safe(r->route);
	}
	if (r->status) {
		printf(" last=\"");
		put_safe(r->status);
		putchar('"');
	}
	putchar('\n');
}

static int list_one(void *arg, const char *id)
{
	struct list_ctx *c = arg;
	struct envelope *env = NULL;
	char age[32];
	if (queue_read_envelope(c->q, id, &env) < 0) {
		if (errno != ENOENT) /* removed meanwhile: not in the queue any more */
			printf("%s incomplete (being received, or damaged)\n", id);
		return 0;
	}
	format_age(c->now - env->received_at, age, sizeof age);
	printf("%s %s <", id, age);
	put_safe(env->mail_from);
	printf("> %zu", env->n_rcpts);
	size_t counts[N_STATES] = {0}, finals[N_STATES] = {0}, n_finals = 0;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct envelope_rcpt *r = &env->rcpts[i];
		if ((unsigned)r->state < N_STATES)
			counts[r->state]++;
		for (size_t j = 0; j < r->n_finals; j++, n_finals++)
			if ((unsigned)r->finals[j].state < N_STATES)
				finals[r->finals[j].state]++;
	}
	put_counts(counts);
	if (n_finals) {
		printf("; %zu mailboxes", n_finals);
		put_counts(finals);
	}
	putchar('\n');
	for (size_t i = 0; i < env->n_rcpts; i++) {
		printf("  <");
		put_safe(env->rcpts[i].addr);
		printf("> %s", state_name(env->rcpts[i].state));
		list_rcpt_details(&env->rcpts[i]);
	}
	envelope_free(env);
	return 0;
}

static void show_notify(unsigned n)
{
	if (!n) {
		printf("-");
		return;
	}
	const char *sep = "";
	static const char *const names[] = {"NEVER", "SUCCESS", "FAILURE", "DELAY"};
	for (int i = 0; i < 4; i++) {
		if (n & (1u << i)) {
			printf("%s%s", sep, names[i]);
			sep = ",";
		}
	}
}

/* The start of a recipient's or a final mailbox's line: "LABEL: <A> state=S attempts=N". */
static void show_state(const char *label, const char *addr, enum rcpt_state st, int attempts)
{
	printf("%s: <", label);
	put_safe(addr);
	printf("> state=%s attempts=%d", state_name(st), attempts);
}

/*
 * The end of such a line: the route and the last reply ("CODE X.Y.Z text", as
 * the queue stores it: code, enhanced code, text), if any, and the newline.
 */
static void show_status(const char *route, const char *status)
{
	if (route && *route) {
		printf(" route=");
		put_safe(route);
	}
	if (status) {
		printf(" status=\"");
		put_safe(status);
		putchar('"');
	}
	putchar('\n');
}

static int show(struct queue *q, const char *id)
{
	struct envelope *env = NULL;
	uint64_t size = 0;
	char when[64];
	if (queue_read_envelope(q, id, &env) < 0) {
		cli_error("no such message (or damaged): %s", id);
		return CLI_EXIT_FAIL;
	}
	int fd = queue_open_data(q, id, &size);
	if (fd >= 0)
		close(fd);
	static const char *const rets[] = {"-", "FULL", "HDRS"};
	static const char *const bodies[] = {"-", "7BIT", "8BITMIME"};
	format_time(env->received_at, when, sizeof when);
	printf("id: %s\nreceived: %s\n", id, when);
	printf("from: <");
	put_safe(env->mail_from);
	printf(">\n");
	put_field("helo", env->helo);
	put_field("client", env->client_addr);
	printf("trusted: %s\n", env->trusted ? "yes" : "no");
	put_field("envid", env->envid);
	printf("ret: %s\nbody: %s\nsize: %llu\n", rets[env->ret <= 2 ? env->ret : 0],
	       bodies[env->body <= 2 ? env->body : 0], (unsigned long long)size);
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct envelope_rcpt *r = &env->rcpts[i];
		show_state("rcpt", r->addr, r->state, r->attempts);
		if (r->next_try) {
			format_time(r->next_try, when, sizeof when);
			printf(" next=%s", when);
		}
		printf(" notify=");
		show_notify(r->notify);
		if (r->orcpt) {
			printf(" orcpt=");
			put_safe(r->orcpt);
		}
		show_status(r->route, r->status);
		for (size_t j = 0; j < r->n_finals; j++) {
			const struct envelope_final *f = &r->finals[j];
			show_state("  mailbox", f->addr, f->state, f->attempts);
			show_status(f->route, f->status);
		}
	}
	envelope_free(env);
	return CLI_EXIT_OK;
}

static int run(struct queue *q, int argc, char **argv)
{
	const char *cmd = argv[1];
	if (strcmp(cmd, "list") == 0) {
		struct list_ctx c = {q, time_wall_s()};
		if (queue_list(q, list_one, &c) < 0) {
			cli_error("cannot read the queue");
			return CLI_EXIT_IOERR;
		}
		return CLI_EXIT_OK;
	}
	if (strcmp(cmd, "show") == 0)
		return show(q, argv[2]);
	if (strcmp(cmd, "delete") == 0) {
		if (queue_remove(q, argv[2]) < 0) {
			cli_error("no such message: %s", argv[2]);
			return CLI_EXIT_FAIL;
		}
		printf("deleted %s\n", argv[2]);
		return CLI_EXIT_OK;
	}
	const char *id = argc == 3 ? argv[2] : NULL;
	int n = queue_flush(q, id);
	if (n < 0 && id && errno == ENOENT) {
		cli_error("no such message: %s", id);
		return CLI_EXIT_FAIL;
	}
	if (n < 0) {
		cli_error("cannot flush the queue: %s", strerror(errno));
		return CLI_EXIT_IOERR;
	}
	printf("%d recipients due now\n", n);
	return CLI_EXIT_OK;
}

int cmd_queue(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return CLI_EXIT_USAGE;
	const char *cmd = argv[1];
	int with_id = strcmp(cmd, "show") == 0 || strcmp(cmd, "delete") == 0;
	if (!with_id && strcmp(cmd, "list") != 0 && strcmp(cmd, "flush") != 0) {
		cli_error("unknown queue command '%s'", cmd);
		return CLI_EXIT_USAGE;
	}
	int flush = strcmp(cmd, "flush") == 0;
	if (!(argc == (with_id ? 3 : 2) || (flush && argc == 3)))
		return CLI_EXIT_USAGE;
	struct queue *q = open_queue(ctx);
	if (!q)
		return CLI_EXIT_IOERR;
	int rc = run(q, argc, argv);
	queue_close(q);
	if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
		rc = CLI_EXIT_IOERR;
	return rc;
}
