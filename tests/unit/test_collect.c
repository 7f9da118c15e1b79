/*
 * Unit tests for collect/collect.c (the collector thread) over a fake POP3
 * session: this file defines collect_transport_*() (the collect_transport.h API)
 * as a scripted mailbox, so the collector runs with the real queue, the real
 * collect.db, routing and dedupe, and is driven by the real control files of
 * `sharemail collect now` (collect_ctl.h). Checked: what is queued for whom
 * (copies deduplicated per recipient), what is recorded, what is deleted on
 * the "server" and when (leave_days), the oversize notice sent once, the
 * answer's counts, and a message with nobody to go to left on the server.
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collect/collect.h"
#include "collect/collect_ctl.h"
#include "collect/collect_state.h"
#include "collect/collect_transport.h"
#include "conf/conf.h"
#include "harness.h"
#include "queue/queue.h"

/* ---- the fake mailbox and session ---- */

#define FAKE_MAX 32

static struct {
	char uid[16];
	char *data;
	int gone;
} box[FAKE_MAX];
static size_t n_box;
static unsigned sessions;

static void box_add(const char *data)
{
	snprintf(box[n_box].uid, sizeof box[n_box].uid, "UID%zu", n_box + 1);
	box[n_box].data = strdup(data);
	box[n_box].gone = 0;
	n_box++;
}

static size_t box_left(void)
{
	size_t n = 0;
	for (size_t i = 0; i < n_box; i++)
		n += !box[i].gone;
	return n;
}

struct collect_transport {
	struct event_base *base;
	collect_transport_event_fn event;
	collect_transport_done_fn done;
	void *arg;
	struct pop3_client_entry entries[FAKE_MAX];
	size_t map[FAKE_MAX]; /* listing index -> box index */
	struct pop3_client_listing listing;
	struct {
		int dele;
		uint64_t num;
	} req[256];
	size_t n_req;
	int quit, ended, listed, scheduled, finished;
	int dele_marks[FAKE_MAX];
	struct pop3_client_outcome outcome;
};

static void emit(struct collect_transport *s, enum pop3_client_action a, uint64_t num,
                 const char *data, size_t len)
{
	struct pop3_client_event ev = {.action = a, .num = num, .data = data, .len = len};
	s->event(s->arg, s, &ev);
}

static void finish(struct collect_transport *s, enum pop3_client_end end)
{
	s->ended = 1;
	s->outcome.end = end;
	struct collect_transport_result r = {.outcome = &s->outcome, .port = 110};
	snprintf(r.addr, sizeof r.addr, "127.0.0.1");
	s->done(s->arg, &r);
	s->finished = 1;
	if (!s->scheduled) /* else the callback already queued frees it */
		free(s);
}

static void schedule(struct collect_transport *s);

/* Answers every queued request in order, then READY, or QUIT's end. */
static void run_requests(evutil_socket_t fd, short what, void *arg)
{
	struct collect_transport *s = arg;
	s->scheduled = 0;
	if (s->finished) {
		free(s);
		return;
	}
	if (s->ended)
		return;
	if (!s->listed) {
		s->listed = 1;
		emit(s, POP3_CLIENT_ACT_LISTING, 0, NULL, 0);
	}
	while (s->n_req && !s->ended) {
		uint64_t num = s->req[0].num;
		int dele = s->req[0].dele;
		memmove(&s->req[0], &s->req[1], --s->n_req * sizeof s->req[0]);
		const char *d = box[s->map[num - 1]].data;
		if (dele) {
			s->dele_marks[num - 1] = 1;
			emit(s, POP3_CLIENT_ACT_DELE_OK, num, NULL, 0);
			continue;
		}
		size_t len = strlen(d), half = len / 2;
		emit(s, POP3_CLIENT_ACT_MSG_BEGIN, num, NULL, 0);
		emit(s, POP3_CLIENT_ACT_MSG_DATA, num, d, half);
		emit(s, POP3_CLIENT_ACT_MSG_DATA, num, d + half, len - half);
		emit(s, POP3_CLIENT_ACT_MSG_END, num, NULL, 0);
	}
	if (s->ended)
		return;
	if (s->quit && !s->n_req) {
		for (size_t i = 0; i < s->listing.n; i++) /* RFC 1939 6: at QUIT only */
			if (s->dele_marks[i])
				box[s->map[i]].gone = 1;
		finish(s, POP3_CLIENT_END_OK);
		return;
	}
	emit(s, POP3_CLIENT_ACT_READY, 0, NULL, 0);
}

static void schedule(struct collect_transport *s)
{
	if (s->scheduled)
		return;
	s->scheduled = 1;
	struct timeval zero = {0, 0};
	event_base_once(s->base, -1, EV_TIMEOUT, run_requests, s, &zero);
}

struct collect_transport *collect_transport_new(struct event_base *base,
                                                const struct collect_transport_conf *conf,
                                                collect_transport_event_fn event,
                                                collect_transport_done_fn done, void *arg)
{
	struct collect_transport *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	sessions++;
	s->base = base;
	s->event = event;
	s->done = done;
	s->arg = arg;
	for (size_t i = 0; i < n_box; i++) {
		if (box[i].gone)
			continue;
		struct pop3_client_entry *e = &s->entries[s->listing.n];
		e->num = s->listing.n + 1;
		e->size = strlen(box[i].data);
		e->uid_len = strlen(box[i].uid);
		memcpy(e->uid, box[i].uid, e->uid_len + 1);
		s->map[s->listing.n++] = i;
	}
	s->listing.stat_count = s->listing.n;
	s->listing.have_uidl = 1;
	s->listing.entries = s->entries;
	schedule(s);
	return s;
}

const struct pop3_client_listing *collect_transport_listing(const struct collect_transport *s)
{
	return s->listed ? &s->listing : NULL;
}

static int push(struct collect_transport *s, int dele, uint64_t num)
{
	if (s->quit || num < 1 || num > s->listing.n || s->n_req >= 256)
		return -1;
	s->req[s->n_req].dele = dele;
	s->req[s->n_req++].num = num;
	schedule(s);
	return 0;
}

int collect_transport_retr(struct collect_transport *s, uint64_t num)
{
	return push(s, 0, num);
}

int collect_transport_dele(struct collect_transport *s, uint64_t num)
{
	return push(s, 1, num);
}

size_t collect_transport_room(const struct collect_transport *s)
{
	return s->quit ? 0 : 256 - s->n_req;
}

int collect_transport_quit(struct collect_transport *s)
{
	if (s->quit)
		return -1;
	s->quit = 1;
	schedule(s);
	return 0;
}

void collect_transport_pause(struct collect_transport *s, int paused)
{
}

static void abort_done(evutil_socket_t fd, short what, void *arg)
{
	struct collect_transport *s = arg;
	for (size_t i = 0; i < s->n_req; i++)
		if (!s->req[i].dele)
			emit(s, POP3_CLIENT_ACT_MSG_ABORTED, s->req[i].num, NULL, 0);
	s->n_req = 0;
	finish(s, POP3_CLIENT_END_LOCAL);
}

void collect_transport_abort(struct collect_transport *s, const char *why)
{
	if (s->ended)
		return;
	snprintf(s->outcome.reason, sizeof s->outcome.reason, "%s", why);
	s->ended = 1;
	struct timeval zero = {0, 0};
	/* done() later, from the loop, as the transport does */
	event_base_once(s->base, -1, EV_TIMEOUT, abort_done, s, &zero);
}

/* ---- the test's daemon: a state_dir, the lock, a queue, the collector ---- */

static char dir[PATH_MAX];
static struct event_base *qbase;
static struct queue *q;
static struct conf *c;
static struct collect_runner *runner;
static int lock_fd = -1;

static void write_file(const char *name, const char *text)
{
	char p[PATH_MAX + 64];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		printf("cannot write %s\n", p);
		exit(2);
	}
}

static void start(const char *source_opts)
{
	char text[4096];
	snprintf(text, sizeof text,
	         "hostname = mx.test\nstate_dir = state\nlocal_domains = example.com\n"
	         "collect_source = pop3://isp@127.0.0.1:1110 password_file=pw tls=none "
	         "interval=7d %s\n",
	         source_opts);
	write_file("t.conf", text);
	write_file("pw", "secret\n");
	char p[PATH_MAX + 64], err[256];
	snprintf(p, sizeof p, "%s/t.conf", dir);
	struct conf_errors errs = {0};
	c = conf_load_flags(p, CONF_LOAD_SKIP_SECRETS, &errs);
	if (!c) {
		conf_errors_print(&errs);
		exit(2);
	}
	conf_errors_free(&errs);
	mkdir(c->state_dir, 0700);
	snprintf(p, sizeof p, "%s/sharemaild.pid", c->state_dir);
	lock_fd = open(p, O_RDWR | O_CREAT, 0600);
	flock(lock_fd, LOCK_EX); /* what collect_ctl_daemon_running() looks for */
	snprintf(p, sizeof p, "%s/queue", c->state_dir);
	qbase = event_base_new();
	q = queue_open(p, qbase, err, sizeof err);
	runner = q ? collect_runner_start(c, q, NULL, err, sizeof err) : NULL;
	if (!runner) {
		printf("cannot start: %s\n", err);
		exit(2);
	}
}

static void stop(void)
{
	collect_runner_stop(runner);
	runner = NULL;
	queue_close(q);
	q = NULL;
	event_base_free(qbase);
	conf_free(c);
	c = NULL;
	close(lock_fd);
}

/* `sharemail collect now`: the answer's text (first line the code). */
static const char *collect_now(void)
{
	static char text[COLLECT_CTL_ANSWER_MAX];
	char id[COLLECT_CTL_ID_MAX];
	text[0] = '\0';
	if (collect_ctl_request(c->state_dir, NULL, id) != 0 ||
	    collect_ctl_wait(c->state_dir, id, 20000, text, sizeof text) != 0)
		snprintf(text, sizeof text, "no answer: %s", strerror(errno));
	return text;
}

struct seen {
	char rcpts[64][64];
	size_t n, msgs;
};

static int list_one(void *arg, const char *id)
{
	struct seen *s = arg;
	struct envelope *e = NULL;
	if (queue_read_envelope(q, id, &e) != 0)
		return 0;
	s->msgs++;
	for (size_t i = 0; i < e->n_rcpts && s->n < 64; i++)
		snprintf(s->rcpts[s->n++], sizeof s->rcpts[0], "%s", e->rcpts[i].addr);
	envelope_free(e);
	return 0;
}

static size_t count_rcpt(const struct seen *s, const char *addr)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += strcmp(s->rcpts[i], addr) == 0;
	return n;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_dir(void)
{
	if (dir[0])
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	dir[0] = '\0';
}

/* A fresh state_dir and an empty mailbox for each test. */
static void reset(void)
{
	for (size_t i = 0; i < n_box; i++)
		free(box[i].data);
	n_box = 0;
	rm_dir();
	snprintf(dir, sizeof dir, "/tmp/test_collect.XXXXXX");
	if (!mkdtemp(dir))
		exit(2);
	atexit(rm_dir);
}

#define MSG(hdrs, tag) hdrs "Message-ID: <" tag "@x>\r\nSubject: " tag "\r\n\r\nbody\r\n"

TEST(cycle_routes_dedupes_records_deletes)
{
	reset();
	box_add(MSG("X-Rcpt-To: alice@example.com\r\nTo: bob@example.com\r\n", "a1"));
	box_add(MSG("X-Rcpt-To: alice@example.com\r\n", "a2"));
	box_add(MSG("To: alice@example.com, bob@example.com\r\n", "cc")); /* two ISP copies */
	box_add(MSG("To: alice@example.com, bob@example.com\r\n", "cc"));
	box_add(MSG("To: someone@else.example\r\n", "nobody"));
	start("leave_days=0");
	const char *a = collect_now();
	CHECK(strncmp(a, "0\n", 2) == 0);
	CHECK(strstr(a, "ok collected=3 duplicates=2 oversize=0 kept=1 errors=0 deleted=4") !=
	      NULL);
	if (!strstr(a, "ok collected=3"))
		printf("  answer: %s\n", a);
	struct seen s = {0};
	queue_list(q, list_one, &s);
	CHECK_INT(s.msgs, 3);
	CHECK_INT(count_rcpt(&s, "alice@example.com"), 3);
	CHECK_INT(count_rcpt(&s, "bob@example.com"), 1); /* once, from the first copy */
	CHECK_INT(box_left(), 1); /* the unroutable one stays */
	/* Again: nothing new, nothing queued twice, the kept one still kept. */
	a = collect_now();
	CHECK(strstr(a, "ok collected=0 duplicates=0 oversize=0 kept=1") != NULL);
	struct seen s2 = {0};
	queue_list(q, list_one, &s2);
	CHECK_INT(s2.msgs, 3);
	stop();
}

TEST(leave_days_keeps_and_oversize_once)
{
	reset();
	char big[3000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	char bigmsg[4000];
	snprintf(bigmsg, sizeof bigmsg, "X-Rcpt-To: alice@example.com\r\n\r\n%s\r\n", big);
	box_add(MSG("X-Rcpt-To: alice@example.com\r\n", "k1"));
	box_add(bigmsg);
	start("leave_days=2 max_size=2k");
	const char *a = collect_now();
	CHECK(strstr(a, "ok collected=1 duplicates=0 oversize=1 kept=0 errors=0 deleted=0") !=
	      NULL);
	if (!strstr(a, "ok collected=1"))
		printf("  answer: %s\n", a);
	a = collect_now();
	CHECK(strstr(a, "ok collected=0 duplicates=0 oversize=0 kept=0 errors=0 deleted=0") !=
	      NULL);
	struct seen s = {0};
	queue_list(q, list_one, &s);
	CHECK_INT(s.msgs, 2); /* k1 and one notice */
	CHECK_INT(count_rcpt(&s, "postmaster@example.com"), 1);
	CHECK_INT(box_left(), 2);
	stop();
	/* k1 is recorded COLLECTED with its time, though still on the server. */
	char p[PATH_MAX + 64], err[256];
	snprintf(p, sizeof p, "%s/state/collect.db", dir);
	struct collect_state *st = collect_state_open(p, err, sizeof err);
	int64_t since = 0;
	CHECK_INT(collect_state_uidl_get(st, "pop3://isp@127.0.0.1:1110", "UID1", &since),
	          COLLECT_STATE_UIDL_COLLECTED);
	collect_state_close(st);
	CHECK(since > 0); /* leave_days counts from it (test_collect.py ages it and sees DELE) */
}

TEST(restart_remembers_uidls_and_keys)
{
	reset();
	box_add(MSG("X-Rcpt-To: alice@example.com\r\n", "r1"));
	start("leave_days=5");
	const char *a = collect_now();
	CHECK(strstr(a, "ok collected=1 duplicates=0") != NULL);
	stop();
	/* A second ISP copy (a new UIDL) of the same message arrives while we are down. */
	box_add(MSG("X-Rcpt-To: alice@example.com\r\n", "r1"));
	start("leave_days=5");
	a = collect_now();
	CHECK(strstr(a, "ok collected=0 duplicates=1 oversize=0 kept=0 errors=0 deleted=0") !=
	      NULL);
	if (!strstr(a, "duplicates=1"))
		printf("  answer: %s\n", a);
	struct seen s = {0};
	queue_list(q, list_one, &s);
	CHECK_INT(s.msgs, 1);
	CHECK_INT(box_left(), 2); /* leave_days=5: both kept on the server */
	stop();
}

TEST(fallback_takes_the_unroutable)
{
	reset();
	box_add(MSG("To: someone@else.example\r\n", "f1"));
	start("leave_days=0");
	stop();
	/* the same state, now with a fallback */
	char text[4096];
	snprintf(text, sizeof text,
	         "hostname = mx.test\nstate_dir = state\nlocal_domains = example.com\n"
	         "collect_fallback = Catch@example.com\n"
	         "collect_source = pop3://isp@127.0.0.1:1110 password_file=pw tls=none "
	         "interval=7d\n");
	write_file("t.conf", text);
	char p[PATH_MAX + 64], err[256];
	snprintf(p, sizeof p, "%s/t.conf", dir);
	struct conf_errors errs = {0};
	c = conf_load_flags(p, CONF_LOAD_SKIP_SECRETS, &errs);
	conf_errors_free(&errs);
	snprintf(p, sizeof p, "%s/sharemaild.pid", c->state_dir);
	lock_fd = open(p, O_RDWR | O_CREAT, 0600);
	flock(lock_fd, LOCK_EX);
	snprintf(p, sizeof p, "%s/queue", c->state_dir);
	qbase = event_base_new();
	q = queue_open(p, qbase, err, sizeof err);
	runner = collect_runner_start(c, q, NULL, err, sizeof err);
	const char *a = collect_now();
	CHECK(strstr(a, "ok collected=1 duplicates=0 oversize=0 kept=0 errors=0 deleted=1") !=
	      NULL);
	struct seen s = {0};
	queue_list(q, list_one, &s);
	CHECK_INT(count_rcpt(&s, "catch@example.com"), 1);
	CHECK_INT(box_left(), 0);
	stop();
}

TEST(request_for_unknown_source)
{
	reset();
	box_add(MSG("X-Rcpt-To: alice@example.com\r\n", "u1"));
	start("leave_days=0");
	static char text[COLLECT_CTL_ANSWER_MAX];
	char id[COLLECT_CTL_ID_MAX];
	CHECK_INT(collect_ctl_request(c->state_dir, "pop3://other@host:110", id), 0);
	CHECK_INT(collect_ctl_wait(c->state_dir, id, 20000, text, sizeof text), 0);
	CHECK(strncmp(text, "1\n", 2) == 0 && strstr(text, "no such collect_source"));
	CHECK_INT(box_left(), 1); /* no cycle ran */
	stop();
}

TEST_MAIN(T(cycle_routes_dedupes_records_deletes), T(leave_days_keeps_and_oversize_once),
          T(restart_remembers_uidls_and_keys), T(fallback_takes_the_unroutable),
          T(request_for_unknown_source))
