/*
 * Unit tests for queue v2's calls: the start-up pass handed over once
 * (queue_take_startup), commits announced (queue_take_committed), enqueueing from
 * other threads (queue_enqueue), flush requests, envelope reads that never read
 * the data, routes and structured statuses kept across a reopen, removal of a
 * file still being received, and the version 1 fixture (tests/fixtures/queue-v1,
 * written by the code before queue v2) read and kept.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "harness.h"
#include "queue/queue.h"
#include "util/timeutil.h"

#define FIXTURE "tests/fixtures/queue-v1"
#define FIX_A "08E2KEuyncg60Xc3pf"
#define FIX_B "08E2KEuz1voDjzpCb0"

static char qdir[64];

static void fresh_dir(void)
{
	snprintf(qdir, sizeof qdir, "/tmp/test_queue_v2.XXXXXX");
	if (!mkdtemp(qdir))
		qdir[0] = '\0';
}

static void remove_dir(void)
{
	static const char *const subs[] = {"tmp", "msg", "state", "quarantine", "flush"};
	char sub[300], f[600];
	for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
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

static int count_files(const char *sub)
{
	char p[300];
	snprintf(p, sizeof p, "%s/%s", qdir, sub);
	DIR *d = opendir(p);
	struct dirent *de;
	int n = 0;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	if (d)
		closedir(d);
	return n;
}

static int exists(const char *sub, const char *name)
{
	char f[600];
	snprintf(f, sizeof f, "%s/%s/%s", qdir, sub, name);
	return access(f, F_OK) == 0;
}

/* Copies src to qdir/sub/name; returns 0 or -1. */
static int copy_in(const char *src, const char *sub, const char *name)
{
	char dst[600], buf[4096];
	snprintf(dst, sizeof dst, "%s/%s", qdir, sub);
	mkdir(dst, 0700);
	snprintf(dst, sizeof dst, "%s/%s/%s", qdir, sub, name);
	FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
	size_t n;
	int r = in && out ? 0 : -1;
	while (r == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			r = -1;
	if (in)
		fclose(in);
	if (out && fclose(out) != 0)
		r = -1;
	return r;
}

/* Flips one octet of qdir/sub/name at off (negative: from the end). */
static void flip(const char *sub, const char *name, long off)
{
	char f[600];
	uint8_t c;
	snprintf(f, sizeof f, "%s/%s/%s", qdir, sub, name);
	int fd = open(f, O_RDWR);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	off_t at = off < 0 ? st.st_size + off : off;
	if (pread(fd, &c, 1, at) == 1) {
		c ^= 0x20;
		if (pwrite(fd, &c, 1, at) != 1)
			c = 0;
	}
	close(fd);
}

static struct envelope *make_env(const char *rcpt1, const char *rcpt2)
{
	struct envelope *e = envelope_new();
	envelope_set(&e->mail_from, "sender@example.org");
	envelope_set(&e->client_addr, "192.0.2.7");
	e->received_at = time_wall_s();
	envelope_add_rcpt(e, rcpt1, NULL, 0);
	if (rcpt2)
		envelope_add_rcpt(e, rcpt2, NULL, 0);
	return e;
}

struct result {
	int calls, ok;
	char id[QUEUE_ID_MAX];
};

static void on_done(void *arg, int ok, const char *id)
{
	struct result *r = arg;
	r->calls++;
	r->ok = ok;
	snprintf(r->id, sizeof r->id, "%s", id);
}

static void wait_for(struct event_base *b, const int *calls, int want)
{
	while (*calls < want)
		event_base_loop(b, EVLOOP_ONCE);
}

static int commit(struct queue *q, struct event_base *b, const char *data, struct envelope *e,
                  char id[QUEUE_ID_MAX])
{
	struct result r = {0};
	struct queue_msg *m = queue_msg_begin(q);
	if (!m)
		return -1;
	queue_msg_write(m, data, strlen(data));
	queue_msg_commit(m, e, on_done, &r);
	wait_for(b, &r.calls, 1);
	snprintf(id, QUEUE_ID_MAX, "%s", r.id);
	snprintf(e->id, sizeof e->id, "%s", r.id);
	return r.ok ? 0 : -1;
}

/* What queue_take_startup handed over, copied. */
struct taken {
	int n, stop_after;
	char id[8][QUEUE_ID_MAX];
	size_t n_rcpts[8];
	struct {
		size_t index;
		enum rcpt_state state;
		int attempts;
		int64_t next_try;
		char addr[64], route[64];
	} r[8][4];
};

static int take(void *arg, const struct queue_pending *p)
{
	struct taken *t = arg;
	if (t->n < 8) {
		snprintf(t->id[t->n], QUEUE_ID_MAX, "%s", p->id);
		t->n_rcpts[t->n] = p->n_rcpts;
		for (size_t i = 0; i < p->n_rcpts && i < 4; i++) {
			t->r[t->n][i].index = p->rcpts[i].index;
			t->r[t->n][i].state = p->rcpts[i].state;
			t->r[t->n][i].attempts = p->rcpts[i].attempts;
			t->r[t->n][i].next_try = p->rcpts[i].next_try;
			snprintf(t->r[t->n][i].addr, 64, "%s", p->rcpts[i].addr);
			snprintf(t->r[t->n][i].route, 64, "%s",
			         p->rcpts[i].route ? p->rcpts[i].route : "(null)");
		}
	}
	t->n++;
	return t->stop_after && t->n >= t->stop_after;
}

static int read_all(struct queue *q, const char *id, char *buf, size_t cap)
{
	uint64_t len = 0;
	int fd = queue_open_data(q, id, &len);
	if (fd < 0)
		return -1;
	size_t got = 0, want = len < cap ? (size_t)len : cap;
	ssize_t n;
	while (got < want && (n = read(fd, buf + got, want - got)) > 0)
		got += (size_t)n;
	close(fd);
	return got == len ? (int)got : -1;
}

TEST(v1_fixture_read_and_kept)
{
	fresh_dir();
	char err[256], buf[512];
	CHECK_INT(copy_in(FIXTURE "/msg/" FIX_A, "msg", FIX_A), 0);
	CHECK_INT(copy_in(FIXTURE "/msg/" FIX_B, "msg", FIX_B), 0);
	CHECK_INT(copy_in(FIXTURE "/state/" FIX_B, "state", FIX_B), 0);
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	CHECK_INT(count_files("quarantine"), 0);
	struct taken t = {0};
	CHECK_INT(queue_take_startup(q, take, &t), 2);
	CHECK_STR(t.id[0], FIX_A);
	CHECK_STR(t.id[1], FIX_B);
	if (CHECK_INT(t.n_rcpts[0], 1)) {
		CHECK_STR(t.r[0][0].addr, "bob@example.com");
		CHECK_INT(t.r[0][0].state, RCPT_PENDING);
	}
	/* B: alice deferred (due), bob delivered (not handed over), far remote. */
	if (CHECK_INT(t.n_rcpts[1], 2)) {
		CHECK_INT(t.r[1][0].index, 0);
		CHECK_INT(t.r[1][0].state, RCPT_DEFERRED);
		CHECK_INT(t.r[1][0].attempts, 1);
		CHECK_INT(t.r[1][0].next_try, 0);
		CHECK_INT(t.r[1][1].index, 2);
		CHECK_STR(t.r[1][1].addr, "far@remote.example");
		CHECK_INT(t.r[1][1].state, RCPT_REMOTE);
		CHECK_STR(t.r[1][1].route, "(null)");
	}
	struct envelope *e = NULL;
	if (CHECK_INT(queue_read_envelope(q, FIX_B, &e), 0)) {
		CHECK_STR(e->mail_from, "");
		CHECK_STR(e->envid, "fixture-envid");
		CHECK_STR(e->helo, "[192.0.2.2]");
		CHECK_STR(e->client_addr, "2001:db8::2");
		CHECK_INT(e->ret, ESMTP_RET_HDRS);
		CHECK_INT(e->body, ESMTP_BODY_8BITMIME);
		CHECK_INT(e->trusted, 1);
		CHECK_INT(e->received_at, 4102444801LL);
		if (CHECK_INT(e->n_rcpts, 3)) {
			CHECK_STR(e->rcpts[0].orcpt, "rfc822;alice@example.com");
			CHECK_INT(e->rcpts[0].notify, ESMTP_NOTIFY_SUCCESS | ESMTP_NOTIFY_FAILURE);
			CHECK_STR(e->rcpts[0].status, "452 4.2.2 mailbox full");
			CHECK_INT(e->rcpts[0].n_finals, 1);
			CHECK_INT(e->rcpts[1].state, RCPT_DELIVERED);
			if (CHECK_INT(e->rcpts[1].n_finals, 1))
				CHECK_INT(e->rcpts[1].finals[0].state, RCPT_DELIVERED);
			CHECK_INT(e->rcpts[1].notify, ESMTP_NOTIFY_NEVER);
			CHECK_INT(e->rcpts[2].state, RCPT_REMOTE);
		}
		/* Updated by the new code: a version 3 state beside the version 1 message. */
		envelope_set(&e->rcpts[2].route, "remote.example");
		CHECK_INT(queue_update(q, e), 0);
	}
	envelope_free(e);
	e = NULL;
	static const char body_b[] = "Subject: queue v1 fixture B\r\n\r\n.dot line\r\n"
	                             "v1-fixture-B-body \xc3\xa9\r\n";
	CHECK_INT(read_all(q, FIX_B, buf, sizeof buf), (int)strlen(body_b));
	CHECK(memcmp(buf, body_b, strlen(body_b)) == 0);
	if (CHECK_INT(queue_read_envelope(q, FIX_B, &e), 0))
		CHECK_STR(e->rcpts[2].route, "remote.example");
	envelope_free(e);
	queue_close(q);
	/* Reopened: the version 1 message is still whole, with the new state. */
	q = queue_open(qdir, b, err, sizeof err);
	memset(&t, 0, sizeof t);
	if (CHECK(q != NULL)) {
		CHECK_INT(queue_take_startup(q, take, &t), 2);
		CHECK_STR(t.r[1][1].route, "remote.example");
		CHECK_INT(count_files("quarantine"), 0);
		queue_close(q);
	}
	event_base_free(b);
	remove_dir();
}

TEST(startup_list_handed_over_once)
{
	fresh_dir();
	char err[256], id[3][QUEUE_ID_MAX];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	struct envelope *e[3] = {make_env("a@example.com", "b@example.net"),
	                         make_env("c@example.com", NULL), make_env("d@example.com", NULL)};
	for (int i = 0; i < 3; i++)
		CHECK_INT(commit(q, b, "x\r\n", e[i], id[i]), 0);
	e[0]->rcpts[0].state = RCPT_DELIVERED;
	e[0]->rcpts[1].state = RCPT_DEFERRED;
	e[0]->rcpts[1].attempts = 2;
	e[0]->rcpts[1].next_try = 1800000000;
	envelope_set(&e[0]->rcpts[1].route, "[192.0.2.25]:2525");
	envelope_set(&e[0]->rcpts[1].status, "421 4.4.2 connection dropped");
	CHECK_INT(queue_update(q, e[0]), 0);
	e[1]->rcpts[0].state = RCPT_FAILED;
	CHECK_INT(queue_update(q, e[1]), 0);
	/* The first open found an empty queue. */
	struct taken t = {0};
	CHECK_INT(queue_take_startup(q, take, &t), 0);
	queue_close(q);

	q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	t.stop_after = 1; /* a consumer that stops drops the rest */
	CHECK_INT(queue_take_startup(q, take, &t), 1);
	memset(&t, 0, sizeof t);
	CHECK_INT(queue_take_startup(q, take, &t), 0);
	queue_close(q);

	q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	memset(&t, 0, sizeof t);
	CHECK_INT(queue_take_startup(q, take, &t), 3);
	CHECK_STR(t.id[0], id[0]);
	if (CHECK_INT(t.n_rcpts[0], 1)) {
		CHECK_INT(t.r[0][0].index, 1);
		CHECK_STR(t.r[0][0].addr, "b@example.net");
		CHECK_INT(t.r[0][0].state, RCPT_DEFERRED);
		CHECK_INT(t.r[0][0].attempts, 2);
		CHECK_INT(t.r[0][0].next_try, 1800000000);
		CHECK_STR(t.r[0][0].route, "[192.0.2.25]:2525");
	}
	CHECK_INT(t.n_rcpts[1], 0); /* every recipient done: waits to be removed */
	if (CHECK_INT(t.n_rcpts[2], 1))
		CHECK_INT(t.r[2][0].state, RCPT_PENDING);
	/* Nothing was committed since the open. */
	CHECK_INT(queue_take_committed(q, NULL, NULL), 0);
	queue_close(q);
	for (int i = 0; i < 3; i++)
		envelope_free(e[i]);
	event_base_free(b);
	remove_dir();
}

#define THREADS 4
#define PER_THREAD 25

struct worker {
	struct queue *q;
	int ok;
	char id[PER_THREAD][QUEUE_ID_MAX];
	int index;
};

static void *enqueue_many(void *arg)
{
	struct worker *w = arg;
	char data[64], rcpt[64];
	for (int i = 0; i < PER_THREAD; i++) {
		snprintf(data, sizeof data, "Subject: %d-%d\r\n\r\nbounce\r\n", w->index, i);
		snprintf(rcpt, sizeof rcpt, "r%d-%d@example.com", w->index, i);
		struct envelope *e = make_env(rcpt, NULL);
		w->ok += queue_enqueue(w->q, e, data, strlen(data), w->id[i]) == 0;
		envelope_free(e);
	}
	return NULL;
}

static void count_commit(void *arg, const char *id)
{
	(*(int *)arg)++;
}

struct id_set {
	char (*ids)[QUEUE_ID_MAX];
	int n;
};

static void collect(void *arg, const char *id)
{
	struct id_set *s = arg;
	snprintf(s->ids[s->n++], QUEUE_ID_MAX, "%s", id);
}

TEST(enqueue_from_other_threads)
{
	fresh_dir();
	char err[256];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	int commits = 0;
	queue_on_commit(q, count_commit, &commits);
	static struct worker w[THREADS];
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].q = q;
		w[i].index = i;
		pthread_create(&th[i], NULL, enqueue_many, &w[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	int ok = 0;
	for (int i = 0; i < THREADS; i++)
		ok += w[i].ok;
	CHECK_INT(ok, THREADS * PER_THREAD);
	/* Durable before queue_enqueue returned; announced on the event loop. */
	CHECK_INT(count_files("msg"), THREADS * PER_THREAD);
	wait_for(b, &commits, THREADS * PER_THREAD);
	static char ids[THREADS * PER_THREAD][QUEUE_ID_MAX];
	struct id_set s = {ids, 0};
	CHECK_INT(queue_take_committed(q, collect, &s), THREADS * PER_THREAD);
	int found = 0, readable = 0;
	for (int i = 0; i < THREADS; i++) {
		for (int j = 0; j < PER_THREAD; j++) {
			for (int k = 0; k < s.n; k++)
				if (strcmp(ids[k], w[i].id[j]) == 0)
					found++;
			struct envelope *e = NULL;
			char want[64], buf[128];
			snprintf(want, sizeof want, "r%d-%d@example.com", i, j);
			if (queue_read_envelope(q, w[i].id[j], &e) == 0 &&
			    strcmp(e->rcpts[0].addr, want) == 0 &&
			    read_all(q, w[i].id[j], buf, sizeof buf) > 0)
				readable++;
			envelope_free(e);
		}
	}
	CHECK_INT(found, THREADS * PER_THREAD);
	CHECK_INT(readable, THREADS * PER_THREAD);
	/* A failed enqueue leaves nothing: no reverse-path cannot be encoded. */
	struct envelope *bad = envelope_new();
	envelope_add_rcpt(bad, "x@example.com", NULL, 0);
	char id[QUEUE_ID_MAX];
	CHECK_INT(queue_enqueue(q, bad, "x", 1, id), -1);
	CHECK_INT(count_files("msg"), THREADS * PER_THREAD);
	queue_close(q);
	/* Without an event loop no daemon would ever learn of the message: refused. */
	struct queue *cli = queue_open(qdir, NULL, err, sizeof err);
	if (CHECK(cli != NULL)) {
		envelope_set(&bad->mail_from, "");
		CHECK_INT(queue_enqueue(cli, bad, "x", 1, id), -1);
		CHECK_INT(errno, EINVAL);
		struct queue_msg *m = queue_msg_begin(cli);
		if (CHECK(m != NULL))
			CHECK_INT(queue_msg_commit_wait(m, bad, id), -1);
		CHECK_INT(count_files("msg"), THREADS * PER_THREAD);
		queue_close(cli);
	}
	envelope_free(bad);
	event_base_free(b);
	remove_dir();
}

struct flushes {
	int n, all;
	char id[4][QUEUE_ID_MAX];
};

static void on_flush(void *arg, const char *id)
{
	struct flushes *f = arg;
	if (!id)
		f->all++;
	else if (f->n < 4)
		snprintf(f->id[f->n++], QUEUE_ID_MAX, "%s", id);
}

TEST(flush_requests)
{
	fresh_dir();
	char err[256], id1[QUEUE_ID_MAX], id2[QUEUE_ID_MAX];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	struct envelope *e1 = make_env("a@example.com", "b@example.com");
	struct envelope *e2 = make_env("c@example.com", NULL);
	CHECK_INT(commit(q, b, "1\r\n", e1, id1), 0);
	CHECK_INT(commit(q, b, "2\r\n", e2, id2), 0);
	e1->rcpts[0].state = e1->rcpts[1].state = RCPT_DEFERRED;
	e1->rcpts[0].next_try = e1->rcpts[1].next_try = time_wall_s() + 3600;
	CHECK_INT(queue_update(q, e1), 0);
	struct flushes f = {0};
	CHECK_INT(queue_take_flush(q, on_flush, &f), 0);
	/* The CLI's side: a queue opened without an event loop can ask. */
	struct queue *cli = queue_open(qdir, NULL, err, sizeof err);
	if (CHECK(cli != NULL)) {
		CHECK_INT(queue_flush(cli, id1), 2);
		CHECK_INT(queue_flush(cli, id2), 0);
		CHECK_INT(queue_flush(cli, id1), 2); /* twice: still one request */
		CHECK_INT(queue_flush(cli, NULL), 2);
		CHECK_INT(queue_flush(cli, "0000000000nothere"), -1);
		CHECK_INT(errno, ENOENT);
		CHECK_INT(queue_flush(cli, "../state"), -1);
		queue_close(cli);
	}
	CHECK_INT(count_files("flush"), 3);
	char junk[600];
	snprintf(junk, sizeof junk, "%s/flush/junk.name", qdir);
	close(open(junk, O_WRONLY | O_CREAT, 0600));
	CHECK_INT(queue_take_flush(q, on_flush, &f), 3);
	CHECK_INT(f.all, 1);
	CHECK_INT(f.n, 2);
	CHECK((strcmp(f.id[0], id1) == 0 && strcmp(f.id[1], id2) == 0) ||
	      (strcmp(f.id[0], id2) == 0 && strcmp(f.id[1], id1) == 0));
	CHECK_INT(count_files("flush"), 0); /* junk removed too */
	CHECK_INT(queue_take_flush(q, on_flush, &f), 0);
	/* States are the daemon's to change: a flush wrote none. */
	struct envelope *g = NULL;
	if (CHECK_INT(queue_read_envelope(q, id1, &g), 0))
		CHECK(g->rcpts[0].next_try > time_wall_s() + 3000);
	envelope_free(g);
	queue_close(q);
	envelope_free(e1);
	envelope_free(e2);
	event_base_free(b);
	remove_dir();
}

TEST(envelope_read_never_reads_the_data)
{
	fresh_dir();
	char err[256], id[QUEUE_ID_MAX];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	size_t big = 2u << 20;
	char *data = malloc(big + 1);
	memset(data, 'd', big);
	data[big] = '\0';
	struct envelope *e = make_env("a@example.com", NULL);
	CHECK_INT(commit(q, b, data, e, id), 0);
	/*
	 * A flipped data octet is not noticed by an envelope read (it never reads
	 * the data: its cost is the envelope's), but the start-up pass reads every
	 * file whole and sets it aside.
	 */
	flip("msg", id, 1000);
	struct envelope *g = NULL;
	CHECK_INT(queue_read_envelope(q, id, &g), 0);
	envelope_free(g);
	g = NULL;
	flip("msg", id, -100); /* inside the envelope's records: noticed */
	CHECK_INT(queue_read_envelope(q, id, &g), -1);
	CHECK_INT(errno, EIO);
	flip("msg", id, -100);
	CHECK_INT(queue_read_envelope(q, id, &g), 0);
	envelope_free(g);
	queue_close(q);
	q = queue_open(qdir, b, err, sizeof err);
	if (CHECK(q != NULL)) {
		CHECK(exists("quarantine", id));
		CHECK_INT(queue_list(q, NULL, NULL), 0);
		queue_close(q);
	}
	free(data);
	envelope_free(e);
	event_base_free(b);
	remove_dir();
}

TEST(states_routes_and_statuses_kept)
{
	fresh_dir();
	char err[256], id[QUEUE_ID_MAX];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	struct envelope *e = make_env("team@example.com", "far@example.net");
	CHECK_INT(commit(q, b, "x\r\n", e, id), 0);
	struct envelope *fresh = NULL;
	CHECK_INT(queue_read_envelope(q, id, &fresh), 0);
	CHECK_INT(queue_read_state(q, fresh), 0); /* no state file yet */
	struct envelope_rcpt *r = &e->rcpts[0];
	r->state = RCPT_DEFERRED;
	envelope_add_final(r, "arvel@example.com", RCPT_DELIVERED);
	envelope_add_final(r, "out@example.org", RCPT_DEFERRED);
	envelope_set(&r->finals[1].route, "example.org");
	envelope_set(&r->finals[1].status, "451 4.7.1 greylisted, try again");
	r = &e->rcpts[1];
	r->state = RCPT_DEFERRED;
	r->attempts = 3;
	envelope_set(&r->route, "example.net");
	envelope_set(&r->status, "421 connection closed");
	CHECK_INT(queue_update(q, e), 0);
	if (CHECK_INT(queue_read_state(q, fresh), 1)) {
		CHECK_STR(fresh->rcpts[1].route, "example.net");
		CHECK_STR(fresh->rcpts[1].status, "421 connection closed");
		CHECK_INT(fresh->rcpts[1].attempts, 3);
		if (CHECK_INT(fresh->rcpts[0].n_finals, 2)) {
			CHECK_STR(fresh->rcpts[0].finals[1].route, "example.org");
			CHECK_STR(fresh->rcpts[0].finals[1].status,
			          "451 4.7.1 greylisted, try again");
			CHECK(fresh->rcpts[0].finals[0].route == NULL);
		}
	}
	/* A damaged state leaves the envelope as it was. */
	flip("state", id, 25);
	CHECK_INT(queue_read_state(q, fresh), -1);
	CHECK_STR(fresh->rcpts[1].route, "example.net");
	/* A route longer than the scheduler's key cannot be stored. */
	char longr[ENVELOPE_ROUTE_MAX + 2];
	memset(longr, 'r', sizeof longr - 1);
	longr[sizeof longr - 1] = '\0';
	envelope_set(&e->rcpts[1].route, longr);
	CHECK_INT(queue_update(q, e), -1);
	longr[ENVELOPE_ROUTE_MAX] = '\0';
	envelope_set(&e->rcpts[1].route, longr);
	CHECK_INT(queue_update(q, e), 0);
	CHECK_INT(queue_read_state(q, fresh), 1);
	CHECK_INT(strlen(fresh->rcpts[1].route), ENVELOPE_ROUTE_MAX);
	envelope_free(fresh);
	envelope_free(e);
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

static int first_id(void *arg, const char *id)
{
	snprintf(arg, QUEUE_ID_MAX, "%s", id);
	return 1;
}

TEST(a_file_being_received_is_never_removed)
{
	fresh_dir();
	char err[256], id[QUEUE_ID_MAX] = "";
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	struct queue_msg *m = queue_msg_begin(q);
	CHECK_INT(queue_msg_write(m, "half a message", 14), 0);
	CHECK_INT(queue_list(q, first_id, id), 1);
	CHECK_INT(queue_remove(q, id), -1);
	CHECK(exists("msg", id));
	struct envelope *e = make_env("a@example.com", NULL);
	struct result r = {0};
	queue_msg_commit(m, e, on_done, &r);
	wait_for(b, &r.calls, 1);
	CHECK_STR(r.id, id);
	CHECK_INT(queue_remove(q, id), 0);
	CHECK(!exists("msg", id));
	envelope_free(e);
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

/* What queue_take_committed_env handed over; takes env and fd when asked to. */
struct handed {
	int n, take;
	char id[4][QUEUE_ID_MAX];
	struct envelope *env[4];
	int fd[4];
	uint64_t off[4], len[4];
};

static void hand(void *arg, struct queue_committed *c)
{
	struct handed *h = arg;
	if (h->n >= 4)
		return;
	snprintf(h->id[h->n], QUEUE_ID_MAX, "%s", c->id);
	h->env[h->n] = c->env;
	h->fd[h->n] = c->fd;
	h->off[h->n] = c->data_off;
	h->len[h->n] = c->data_len;
	if (h->take) {
		c->env = NULL;
		c->fd = -1;
	}
	h->n++;
}

/*
 * A session's commit (queue_msg_commit) hands delivery the envelope as the file
 * holds it (sender, recipients, a Domain Sharing route) and the file open for
 * reading at the data; a commit from another thread (queue_enqueue) hands over
 * the id alone, and whatever the callee leaves is freed and closed.
 */
TEST(commit_hands_over_envelope_and_file)
{
	fresh_dir();
	char err[256];
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(qdir, b, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	int commits = 0;
	queue_on_commit(q, count_commit, &commits);
	struct envelope *e = make_env("bob@example.com", "carol@example.net");
	envelope_set(&e->rcpts[1].route, "[192.0.2.9]:25");
	char id[QUEUE_ID_MAX], id2[QUEUE_ID_MAX];
	const char *data = "Subject: hi\r\n\r\nbody\r\n";
	CHECK_INT(commit(q, b, data, e, id), 0);
	CHECK_INT(queue_enqueue(q, e, data, strlen(data), id2), 0);
	wait_for(b, &commits, 2); /* the enqueue is announced on the loop */
	struct handed h = {.take = 1};
	CHECK_INT(queue_take_committed_env(q, hand, &h), 2);
	CHECK_INT(h.n, 2);
	CHECK_STR(h.id[0], id);
	if (CHECK(h.env[0] != NULL)) {
		CHECK_STR(h.env[0]->id, id);
		CHECK_STR(h.env[0]->mail_from, "sender@example.org");
		CHECK_INT(h.env[0]->n_rcpts, 2);
		CHECK_STR(h.env[0]->rcpts[0].addr, "bob@example.com");
		CHECK(h.env[0]->rcpts[0].route == NULL);
		CHECK_STR(h.env[0]->rcpts[1].route, "[192.0.2.9]:25");
		CHECK_INT(h.env[0]->rcpts[1].state, RCPT_PENDING);
		CHECK_INT(h.env[0]->received_at, e->received_at);
	}
	char buf[128] = "";
	CHECK_INT(h.len[0], strlen(data));
	if (CHECK(h.fd[0] >= 0))
		CHECK_INT(pread(h.fd[0], buf, strlen(data), (off_t)h.off[0]), (long)strlen(data));
	CHECK_STR(buf, data);
	CHECK_STR(h.id[1], id2);
	CHECK(h.env[1] == NULL);
	CHECK_INT(h.fd[1], -1);
	envelope_free(h.env[0]);
	if (h.fd[0] >= 0)
		close(h.fd[0]);
	/* Not taken: closed by the queue once the callback returns. */
	CHECK_INT(commit(q, b, data, e, id), 0);
	struct handed left = {.take = 0};
	CHECK_INT(queue_take_committed_env(q, hand, &left), 1);
	CHECK(left.env[0] != NULL);
	CHECK(left.fd[0] >= 0 && fcntl(left.fd[0], F_GETFD) == -1 && errno == EBADF);
	envelope_free(e);
	queue_close(q);
	event_base_free(b);
	remove_dir();
}

TEST_MAIN(T(v1_fixture_read_and_kept), T(startup_list_handed_over_once),
          T(enqueue_from_other_threads), T(flush_requests), T(envelope_read_never_reads_the_data),
          T(states_routes_and_statuses_kept), T(a_file_being_received_is_never_removed),
          T(commit_hands_over_envelope_and_file))
