/*
 * Unit tests for queue: concurrent group commit on a real event_base, files
 * created in place in msg/, big messages streamed, start-up clean-up (tmp
 * leftovers, damaged and incomplete files, junk names, orphan states), state
 * updates, flush requests, remove, write failures (RLIMIT_FSIZE stands in for a
 * full disk) and the SHAREMAIL_TEST_CRASH_AT hooks (in a child). Queue v2's new
 * calls are in test_queue_v2.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "harness.h"
#include "queue/queue.h"
#include "util/log.h"
#include "util/timeutil.h"

static char qdir[64];
static char path[256];

static const char *p(const char *sub)
{
	snprintf(path, sizeof path, "%s/%s", qdir, sub);
	return path;
}

static void fresh_dir(void)
{
	snprintf(qdir, sizeof qdir, "/tmp/test_queue.XXXXXX");
	if (!mkdtemp(qdir))
		qdir[0] = '\0';
}

/* Removes qdir and everything below it (two levels). */
static void remove_dir(void)
{
	static const char *const subs[] = {"tmp", "msg", "state", "quarantine", "flush"};
	char sub[300], f[600];
	for (size_t i = 0; i < 5; i++) {
		snprintf(sub, sizeof sub, "%s/%s", qdir, subs[i]);
		DIR *d = opendir(sub);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			snprintf(f, sizeof f, "%s/%s", sub, de->d_name);
			unlink(f);
		}
		if (d)
			closedir(d);
		rmdir(sub);
	}
	rmdir(qdir);
}

/* Names in a subfolder (excluding dots). */
static int count_files(const char *sub)
{
	DIR *d = opendir(p(sub));
	struct dirent *de;
	int n = 0;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	if (d)
		closedir(d);
	return n;
}

static struct envelope *make_env(int i)
{
	char a[64];
	struct envelope *e = envelope_new();
	snprintf(a, sizeof a, "sender%d@example.org", i);
	envelope_set(&e->mail_from, a);
	envelope_set(&e->helo, "client.example.org");
	envelope_set(&e->client_addr, "192.0.2.7");
	e->received_at = time_wall_s();
	snprintf(a, sizeof a, "rcpt%d@example.com", i);
	envelope_add_rcpt(e, a, NULL, 0);
	envelope_add_rcpt(e, "second@example.com", NULL, ESMTP_NOTIFY_NEVER);
	return e;
}

struct result {
	int calls, ok;
	char id[32];
	int commits;
};

static void on_done(void *arg, int ok, const char *id)
{
	struct result *r = arg;
	r->calls++;
	r->ok = ok;
	snprintf(r->id, sizeof r->id, "%s", id ? id : "");
}

static void on_commit(void *arg, const char *id)
{
	(*(int *)arg)++;
}

struct unreadable_ctx {
	struct queue *q;
	int *n;
};

/* Counts listed messages that cannot be read (being received). */
static int count_unreadable(void *arg, const char *id)
{
	struct unreadable_ctx *c = arg;
	struct envelope *e = NULL;
	if (queue_read_envelope(c->q, id, &e) < 0 && errno == EIO)
		(*c->n)++;
	envelope_free(e);
	return 0;
}

static void count_id(void *arg, const char *id)
{
	(*(int *)arg)++;
}

static void wait_for(struct event_base *b, const int *calls, int want)
{
	while (*calls < want)
		event_base_loop(b, EVLOOP_ONCE);
}

/* Commits one message with the given data; returns the done() result. */
static int commit_one(struct queue *q, struct event_base *b, int i, const char *data,
                      struct result *r)
{
	struct queue_msg *m = queue_msg_begin(q);
	if (!m)
		return -1;
	struct envelope *e = make_env(i);
	memset(r, 0, sizeof *r);
	queue_msg_write(m, data, strlen(data));
	queue_msg_commit(m, e, on_done, r);
	envelope_free(e);
	if (r->calls != 0) /* never before commit returns */
		return -1;
	wait_for(b, &r->calls, 1);
	return r->ok;
}

static int read_data(struct queue *q, const char *id, char *buf, size_t cap, uint64_t *len)
{
	int fd = queue_open_data(q, id, len);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, *len < cap ? (size_t)*len : cap);
	close(fd);
	return (int)n;
}

#define N_CONC 200

TEST(concurrent_commits)
{
	fresh_dir();
	char err[256], data[N_CONC][64];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	static struct result res[N_CONC];
	int commits = 0, calls = 0;
	queue_on_commit(q, on_commit, &commits);
	struct queue_msg *m[N_CONC];
	for (int i = 0; i < N_CONC; i++) {
		memset(&res[i], 0, sizeof res[i]);
		m[i] = queue_msg_begin(q);
		CHECK(m[i] != NULL);
	}
	/* Created in place in msg/, but not messages yet: nothing lists them as whole. */
	CHECK_INT(count_files("msg"), N_CONC);
	CHECK_INT(count_files("tmp"), 0);
	for (int i = 0; i < N_CONC; i++) {
		snprintf(data[i], sizeof data[i], "Subject: %d\r\n\r\nbody %d\r\n", i, i);
		CHECK_INT(queue_msg_write(m[i], data[i], strlen(data[i])), 0);
	}
	int unread = 0;
	struct unreadable_ctx uc = {q, &unread};
	CHECK_INT(queue_list(q, count_unreadable, &uc), N_CONC);
	CHECK_INT(unread, N_CONC);
	for (int i = 0; i < N_CONC; i++) {
		struct envelope *e = make_env(i);
		queue_msg_commit(m[i], e, on_done, &res[i]);
		envelope_free(e);
	}
	while (calls < N_CONC) {
		event_base_loop(b, EVLOOP_ONCE);
		calls = 0;
		for (int i = 0; i < N_CONC; i++)
			calls += res[i].calls;
	}
	int ok = 0, valid = 0;
	for (int i = 0; i < N_CONC; i++) {
		ok += res[i].ok && res[i].calls == 1;
		struct envelope *e = NULL;
		char buf[128], want[64];
		uint64_t len = 0;
		if (queue_read_envelope(q, res[i].id, &e) == 0) {
			snprintf(want, sizeof want, "sender%d@example.org", i);
			int n = read_data(q, res[i].id, buf, sizeof buf, &len);
			valid += strcmp(e->mail_from, want) == 0 && e->n_rcpts == 2 &&
			         strcmp(e->id, res[i].id) == 0 && n == (int)strlen(data[i]) &&
			         len == (uint64_t)n && memcmp(buf, data[i], (size_t)n) == 0;
			envelope_free(e);
		}
	}
	CHECK_INT(ok, N_CONC);
	CHECK_INT(valid, N_CONC);
	CHECK_INT(commits, N_CONC);
	int taken = 0;
	CHECK_INT(queue_take_committed(q, count_id, &taken), N_CONC);
	CHECK_INT(taken, N_CONC);
	CHECK_INT(queue_take_committed(q, count_id, &taken), 0);
	CHECK_INT(count_files("tmp"), 0);
	CHECK_INT(count_files("msg"), N_CONC);
	CHECK_INT(queue_list(q, NULL, NULL), N_CONC);
	CHECK(queue_free_space(q) > 0);
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

struct ids {
	char id[8][32];
	int n;
};

static int collect(void *arg, const char *id)
{
	struct ids *s = arg;
	if (s->n < 8)
		snprintf(s->id[s->n++], 32, "%s", id);
	return 0;
}

TEST(ids_sortable_and_list_in_order)
{
	fresh_dir();
	char err[256];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	struct result r[4];
	if (!CHECK(q != NULL))
		return;
	for (int i = 0; i < 4; i++) {
		CHECK_INT(commit_one(q, b, i, "x\r\n", &r[i]), 1);
		usleep(2000);
	}
	struct ids s = {.n = 0};
	CHECK_INT(queue_list(q, collect, &s), 4);
	for (int i = 0; i < 4; i++) {
		CHECK_STR(s.id[i], r[i].id);
		size_t n = strlen(r[i].id);
		CHECK(n > 10 && n < 32);
		CHECK_INT(strspn(r[i].id, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		                          "abcdefghijklmnopqrstuvwxyz"),
		          n);
	}
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

TEST(large_message_streamed)
{
	fresh_dir();
	char err[256];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	struct queue_msg *m = queue_msg_begin(q);
	static char chunk[100000];
	size_t total = 0;
	for (size_t i = 0; i < sizeof chunk; i++)
		chunk[i] = (char)('a' + i % 26);
	/* Small writes, then big ones: the file grows while the message arrives. */
	for (int i = 0; i < 2000; i++) {
		CHECK_INT(queue_msg_write(m, chunk + i % 26, 1000), 0);
		total += 1000;
	}
	struct stat st;
	snprintf(path, sizeof path, "%s/msg", qdir);
	DIR *d = opendir(path);
	struct dirent *de;
	char tmpname[4400] = "";
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.')
			snprintf(tmpname, sizeof tmpname, "%s/%s", path, de->d_name);
	if (d)
		closedir(d);
	CHECK(stat(tmpname, &st) == 0 && st.st_size > 1900000);
	for (int i = 0; i < 30; i++) {
		CHECK_INT(queue_msg_write(m, chunk, sizeof chunk), 0);
		total += sizeof chunk;
	}
	struct envelope *e = make_env(1);
	struct result r = {0};
	queue_msg_commit(m, e, on_done, &r);
	envelope_free(e);
	wait_for(b, &r.calls, 1);
	CHECK_INT(r.ok, 1);
	uint64_t len = 0;
	int fd = queue_open_data(q, r.id, &len);
	CHECK_INT(len, total);
	if (CHECK(fd >= 0)) {
		char *buf = malloc(total + 1);
		size_t got = 0;
		ssize_t n;
		while (got <= total && (n = read(fd, buf + got, total + 1 - got)) > 0)
			got += (size_t)n;
		/* The data, and not one octet of the envelope after it, is the message. */
		CHECK_INT(got > total ? total : got, total);
		CHECK(memcmp(buf, chunk, 1000) == 0);
		CHECK(memcmp(buf + 1000, chunk + 1, 1000) == 0);
		CHECK(memcmp(buf + 2000000, chunk, sizeof chunk) == 0);
		free(buf);
		close(fd);
	}
	struct envelope *got_env = NULL;
	CHECK_INT(queue_read_envelope(q, r.id, &got_env), 0);
	envelope_free(got_env);
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

static void put_file(const char *sub, const char *name, const void *data, size_t n)
{
	char f[4400];
	snprintf(f, sizeof f, "%s/%s/%s", qdir, sub, name);
	FILE *fp = fopen(f, "wb");
	if (fp) {
		fwrite(data, 1, n, fp);
		fclose(fp);
	}
}

static size_t get_file(const char *sub, const char *name, char *buf, size_t cap)
{
	char f[4400];
	snprintf(f, sizeof f, "%s/%s/%s", qdir, sub, name);
	FILE *fp = fopen(f, "rb");
	size_t n = 0;
	if (fp) {
		n = fread(buf, 1, cap, fp);
		fclose(fp);
	}
	return n;
}

static int exists(const char *sub, const char *name)
{
	char f[4400];
	snprintf(f, sizeof f, "%s/%s/%s", qdir, sub, name);
	return access(f, F_OK) == 0;
}

TEST(startup_cleanup_and_quarantine)
{
	fresh_dir();
	char err[256], buf[4096];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	struct result good, trunc, flip, badstate;
	if (!CHECK(q != NULL))
		return;
	CHECK_INT(commit_one(q, b, 1, "good\r\n", &good), 1);
	CHECK_INT(commit_one(q, b, 2, "truncated\r\n", &trunc), 1);
	CHECK_INT(commit_one(q, b, 3, "flipped\r\n", &flip), 1);
	CHECK_INT(commit_one(q, b, 4, "bad state\r\n", &badstate), 1);
	struct envelope *e = NULL;
	CHECK_INT(queue_read_envelope(q, good.id, &e), 0);
	e->rcpts[0].state = RCPT_DELIVERED;
	CHECK_INT(queue_update(q, e), 0);
	envelope_free(e);
	e = NULL;
	CHECK_INT(queue_read_envelope(q, badstate.id, &e), 0);
	e->rcpts[1].state = RCPT_FAILED;
	CHECK_INT(queue_update(q, e), 0);
	envelope_free(e);
	queue_close(q);

	/* Damage: a truncated file, a flipped octet, a junk name, a damaged state. */
	size_t n = get_file("msg", trunc.id, buf, sizeof buf);
	put_file("msg", trunc.id, buf, n - 1);
	n = get_file("msg", flip.id, buf, sizeof buf);
	buf[20] ^= 1;
	put_file("msg", flip.id, buf, n);
	put_file("msg", "junk name!", "x", 1);
	put_file("msg", "0000000000AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "y", 1); /* too long */
	n = get_file("state", badstate.id, buf, sizeof buf);
	put_file("state", badstate.id, buf, n / 2);
	put_file("state", "0orphan", "z", 1);
	put_file("state", "bad.name", "z", 1);
	put_file("tmp", "0leftover", "partial", 7);
	put_file("tmp", "s.x.1234", "partial", 7);
	/* A file still being received when the daemon died: never acknowledged. */
	put_file("msg", "08AAAAAAAAunfinish", "sharemail-queue 2\nSubject: x\r\n", 30);
	put_file("msg", "08AAAAAAAAemptyyyy", "", 0);

	q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	CHECK_INT(count_files("tmp"), 0);
	CHECK_INT(queue_list(q, NULL, NULL), 2);
	CHECK(exists("msg", good.id) && exists("msg", badstate.id));
	CHECK(exists("quarantine", trunc.id) && exists("quarantine", flip.id));
	CHECK(exists("quarantine", "junk name!"));
	CHECK(exists("quarantine", "08AAAAAAAAunfinish") && !exists("msg", "08AAAAAAAAunfinish"));
	CHECK(exists("quarantine", "08AAAAAAAAemptyyyy"));
	CHECK(exists("quarantine", "0000000000AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
	CHECK(exists("quarantine", "bad.name"));
	snprintf(buf, sizeof buf, "%s.state", badstate.id);
	CHECK(exists("quarantine", buf));
	CHECK(!exists("state", "0orphan") && !exists("quarantine", "0orphan"));
	CHECK(exists("state", good.id));
	e = NULL;
	/* The good message kept its state; the damaged state's recipients are pending again. */
	if (CHECK_INT(queue_read_envelope(q, good.id, &e), 0))
		CHECK_INT(e->rcpts[0].state, RCPT_DELIVERED);
	envelope_free(e);
	e = NULL;
	if (CHECK_INT(queue_read_envelope(q, badstate.id, &e), 0))
		CHECK_INT(e->rcpts[1].state, RCPT_PENDING);
	envelope_free(e);
	CHECK_INT(queue_read_envelope(q, trunc.id, &e), -1);
	queue_close(q);

	/* Same damage again: the quarantine keeps both copies. */
	put_file("msg", "junk name!", "x", 1);
	q = queue_open(qdir, b, err, sizeof err);
	CHECK(q != NULL);
	CHECK(exists("quarantine", "junk name!.1"));
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

TEST(cli_open_touches_nothing)
{
	fresh_dir();
	char err[256];
	put_file("", "", "", 0);
	struct queue *q = queue_open(qdir, NULL, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	put_file("tmp", "0writing", "x", 1);
	put_file("msg", "junk!", "x", 1);
	queue_close(q);
	q = queue_open(qdir, NULL, err, sizeof err);
	CHECK(exists("tmp", "0writing") && exists("msg", "junk!"));
	CHECK_INT(queue_list(q, NULL, NULL), 0);
	/* Without an event loop nothing can be committed. */
	struct queue_msg *m = queue_msg_begin(q);
	struct result r = {0};
	struct envelope *e = make_env(1);
	if (CHECK(m != NULL))
		queue_msg_commit(m, e, on_done, &r);
	envelope_free(e);
	CHECK_INT(r.calls, 0);
	CHECK_INT(count_files("msg"), 1);
	CHECK_INT(count_files("tmp"), 1);
	queue_close(q);
	CHECK(queue_open("/nonexistent/dir/queue", NULL, err, sizeof err) == NULL);
	CHECK(strstr(err, "/nonexistent") != NULL);
	remove_dir();
}

TEST(update_remove_flush_and_bad_ids)
{
	fresh_dir();
	char err[256];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	struct result r;
	if (!CHECK(q != NULL))
		return;
	CHECK_INT(commit_one(q, b, 1, "hello\r\n", &r), 1);
	struct envelope *e = NULL;
	if (!CHECK_INT(queue_read_envelope(q, r.id, &e), 0))
		return;
	CHECK_INT(e->rcpts[0].state, RCPT_PENDING);
	int64_t now = time_wall_s();
	e->rcpts[0].state = RCPT_DEFERRED;
	e->rcpts[0].attempts = 2;
	e->rcpts[0].next_try = now + 3600;
	envelope_set(&e->rcpts[0].status, "451 4.2.0 mailbox busy");
	e->rcpts[1].state = RCPT_DELIVERED;
	for (int i = 0; i < 3; i++)
		CHECK_INT(queue_update(q, e), 0);
	CHECK_INT(count_files("tmp"), 0);
	CHECK_INT(count_files("state"), 1);
	struct envelope *g = NULL;
	if (CHECK_INT(queue_read_envelope(q, r.id, &g), 0)) {
		CHECK_INT(g->rcpts[0].state, RCPT_DEFERRED);
		CHECK_INT(g->rcpts[0].attempts, 2);
		CHECK_INT(g->rcpts[0].next_try, now + 3600);
		CHECK_STR(g->rcpts[0].status, "451 4.2.0 mailbox busy");
		CHECK_INT(g->rcpts[1].state, RCPT_DELIVERED);
	}
	envelope_free(g);
	g = NULL;
	/* A flush is a request for the daemon: the state is not touched here. */
	CHECK_INT(queue_flush(q, NULL), 1);
	CHECK(exists("flush", "_all"));
	if (CHECK_INT(queue_read_envelope(q, r.id, &g), 0)) {
		CHECK_INT(g->rcpts[0].next_try, now + 3600);
		CHECK_INT(g->rcpts[0].state, RCPT_DEFERRED);
		CHECK_INT(g->rcpts[1].state, RCPT_DELIVERED);
	}
	envelope_free(g);
	uint64_t len;
	static const char *const bad[] = {"", "../msg", "a/b", ".",
	                                  "0123456789012345678901234567890123"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		g = NULL;
		CHECK_INT(queue_read_envelope(q, bad[i], &g), -1);
		CHECK_INT(queue_open_data(q, bad[i], &len), -1);
		CHECK_INT(queue_remove(q, bad[i]), -1);
	}
	CHECK_INT(queue_read_envelope(q, "0000000000nothere", &g), -1);
	CHECK_INT(queue_remove(q, r.id), 0);
	CHECK_INT(queue_remove(q, r.id), -1);
	CHECK_INT(count_files("state"), 0);
	CHECK_INT(count_files("msg"), 0);
	/* Updating a removed message does not resurrect a state file. */
	CHECK_INT(queue_update(q, e), -1);
	CHECK_INT(count_files("state"), 0);
	CHECK_INT(queue_flush(q, NULL), 0);
	CHECK_INT(queue_flush(q, r.id), -1);
	CHECK_INT(errno, ENOENT);
	envelope_free(e);
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

/*
 * queue_remove_done (the delivery workers' removal, without fsync of msg/):
 * removes a whole message and its state file, refuses a message still being
 * received and bad ids, and a second call finds nothing.
 */
TEST(remove_done_removes_whole_messages_only)
{
	fresh_dir();
	char err[256];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	struct result r;
	if (!CHECK(q != NULL))
		return;
	CHECK_INT(commit_one(q, b, 1, "hello\r\n", &r), 1);
	struct envelope *e = NULL;
	if (CHECK_INT(queue_read_envelope(q, r.id, &e), 0)) {
		e->rcpts[0].state = RCPT_DEFERRED;
		CHECK_INT(queue_update(q, e), 0);
	}
	envelope_free(e);
	CHECK_INT(count_files("state"), 1);
	struct queue_msg *m = queue_msg_begin(q); /* being received: never removed */
	if (CHECK(m != NULL)) {
		CHECK_INT(queue_msg_write(m, "partial", 7), 0);
		CHECK_INT(queue_remove_done(q, queue_msg_id(m)), -1);
	}
	CHECK_INT(queue_remove_done(q, "../msg"), -1);
	CHECK_INT(queue_remove_done(q, "0000000000nothere"), -1);
	CHECK_INT(count_files("msg"), 2);
	CHECK_INT(queue_remove_done(q, r.id), 0);
	CHECK_INT(queue_remove_done(q, r.id), -1);
	CHECK_INT(count_files("state"), 0);
	CHECK_INT(count_files("msg"), 1); /* the one being received */
	queue_msg_abort(m);
	CHECK_INT(count_files("msg"), 0);
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

/* A rider on its own thread: queue_ride with a long bound, then a flag for the main thread. */
struct rider {
	struct queue *q;
	atomic_int done;
	int carried;
};

static void *ride_thread(void *arg)
{
	struct rider *rd = arg;
	rd->carried = queue_ride(rd->q, 30u * 1000000u);
	atomic_store(&rd->done, 1);
	return NULL;
}

/*
 * queue_ride: at once with 0 when no commit has begun lately (a fresh queue, a
 * CLI queue); while sessions commit, it returns 1 once a commit begun after the
 * call has ended (the main thread commits until the rider is done: no timing
 * decides the outcome, the bound is only a deadline).
 */
TEST(ride_waits_for_a_later_commit)
{
	fresh_dir();
	char err[256];
	struct queue *cli = queue_open(qdir, NULL, err, sizeof err);
	if (CHECK(cli != NULL))
		CHECK_INT(queue_ride(cli, 30u * 1000000u), 0);
	queue_close(cli);
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	struct result r;
	if (!CHECK(q != NULL))
		return;
	CHECK_INT(queue_ride(q, 30u * 1000000u), 0); /* nothing committed yet: no wait */
	CHECK_INT(commit_one(q, b, 1, "first\r\n", &r), 1);
	struct rider rd = {.q = q};
	pthread_t t;
	if (CHECK_INT(pthread_create(&t, NULL, ride_thread, &rd), 0)) {
		int commits = 0;
		while (!atomic_load(&rd.done) && commits < 10000 &&
		       commit_one(q, b, 2, "later\r\n", &r) == 1)
			commits++;
		pthread_join(t, NULL);
		CHECK(commits > 0);
		CHECK_INT(rd.carried, 1);
	}
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

TEST(abort_removes_tmp)
{
	fresh_dir();
	char err[256];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	struct queue_msg *m = queue_msg_begin(q);
	CHECK_INT(queue_msg_write(m, "partial", 7), 0);
	CHECK_INT(count_files("msg"), 1);
	queue_msg_abort(m);
	queue_msg_abort(NULL);
	CHECK_INT(count_files("tmp"), 0);
	CHECK_INT(count_files("msg"), 0);
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

/* RLIMIT_FSIZE makes writes fail with EFBIG, as a full disk makes them fail with ENOSPC. */
TEST(write_failures_remove_the_file_and_queue_keeps_working)
{
	fresh_dir();
	char err[256];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	struct rlimit old, lim;
	getrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 30;
	setrlimit(RLIMIT_FSIZE, &lim);
	/* Failure at commit time (the data fits the buffer): done(ok=0). */
	struct result r;
	CHECK_INT(commit_one(q, b, 1, "this data plus the envelope exceeds 30 octets\r\n", &r), 0);
	CHECK_INT(r.calls, 1);
	CHECK_INT(count_files("tmp"), 0);
	CHECK_INT(count_files("msg"), 0);
	/* Failure while streaming: write fails, later writes fail, commit reports ok=0. */
	static char big[70000];
	memset(big, 'x', sizeof big);
	struct queue_msg *m = queue_msg_begin(q);
	CHECK_INT(queue_msg_write(m, big, sizeof big), -1);
	CHECK_INT(errno, EFBIG);
	CHECK_INT(queue_msg_write(m, "y", 1), -1);
	struct envelope *e = make_env(2);
	memset(&r, 0, sizeof r);
	queue_msg_commit(m, e, on_done, &r);
	envelope_free(e);
	CHECK_INT(r.calls, 0);
	wait_for(b, &r.calls, 1);
	CHECK_INT(r.ok, 0);
	CHECK_INT(count_files("msg"), 0);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_DFL);
	CHECK_INT(commit_one(q, b, 3, "space is back\r\n", &r), 1);
	CHECK_INT(count_files("msg"), 1);
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

/* In a child: commit one message with the crash hook set; returns the wait status. */
static int crash_child(const char *point)
{
	pid_t pid = fork();
	if (pid == 0) {
		char err[256];
		setenv("SHAREMAIL_TEST_CRASH_AT", point, 1);
		struct event_base *b = event_base_new();
		struct queue *q = queue_open(qdir, b, err, sizeof err);
		struct result r;
		if (q)
			commit_one(q, b, 1, "crash test\r\n", &r);
		_exit(q ? 3 : 4); /* reached only if the hook did not fire */
	}
	int st = 0;
	waitpid(pid, &st, 0);
	return st;
}

static int count_startup(void *arg, const struct queue_pending *p)
{
	(*(int *)arg)++;
	return 0;
}

/*
 * Every hook fires before done(), so before any 250. A file cut short is set
 * aside at the next start; a whole one is kept (a SIGKILL is not a power cut:
 * the page cache keeps what was written, so even "after-write" leaves a whole
 * file), and may be delivered although never acknowledged: a duplicate at worst.
 */
TEST(crash_hooks)
{
	static const struct {
		const char *point;
		int kept;
	} cases[] = {{"mid-write", 0},
	             {"after-write", 1},
	             {"after-fsync", 1},
	             {"after-rename", 1},
	             {"after-dirsync", 1}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		fresh_dir();
		int st = crash_child(cases[i].point);
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		CHECK_INT(count_files("tmp"), 0);
		CHECK_INT(count_files("msg"), 1);
		char err[256];
		struct event_base *b = event_base_new();
		struct queue *q = queue_open(qdir, b, err, sizeof err);
		if (CHECK(q != NULL)) {
			int n = 0;
			CHECK_INT(queue_list(q, NULL, NULL), cases[i].kept);
			CHECK_INT(count_files("quarantine"), !cases[i].kept);
			CHECK_INT(queue_take_startup(q, count_startup, &n), cases[i].kept);
			CHECK_INT(n, cases[i].kept);
			queue_close(q);
		}
		event_base_free(b);
		remove_dir();
	}
	/* An unknown point never fires. */
	fresh_dir();
	int st = crash_child("after-nothing");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
	remove_dir();
}

TEST_MAIN(T(concurrent_commits), T(ids_sortable_and_list_in_order), T(large_message_streamed),
          T(startup_cleanup_and_quarantine), T(cli_open_touches_nothing),
          T(update_remove_flush_and_bad_ids), T(remove_done_removes_whole_messages_only),
          T(ride_waits_for_a_later_commit), T(abort_removes_tmp),
          T(write_failures_remove_the_file_and_queue_keeps_working), T(crash_hooks))
