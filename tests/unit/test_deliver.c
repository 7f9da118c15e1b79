/*
 * Unit tests for deliver (the runner over a real queue, one pass at a time and as
 * a thread) and mailbox_expand() (aliases to distinct local mailboxes).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "deliver/deliver.h"
#include "directory/directory.h"
#include "harness.h"
#include "queue/queue.h"
#include "util/timeutil.h"
#include "verify/mailbox_index.h"

static char root[64];
static char dbpath[128];
static struct conf *cf;
static struct directory *dir;
static struct mailbox_index *idx;
static struct queue *q;
static struct event_base *base;

static void fresh(void);

/* ---- fixture ---- */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int write_conf(const char *extra)
{
	char p[160];
	snprintf(p, sizeof p, "%s/sharemail.conf", root);
	FILE *f = fopen(p, "w");
	if (!f)
		return -1;
	fprintf(f,
	        "hostname = mx.example.com\nstate_dir = %s\nlocal_domains = example.com\n"
	        "local_domains = example.org\n%s",
	        root, extra);
	fclose(f);
	struct conf_errors errs = {0};
	conf_free(cf);
	cf = conf_load(p, &errs);
	if (!cf)
		conf_errors_print(&errs);
	conf_errors_free(&errs);
	return cf ? 0 : -1;
}

static int setup(void)
{
	char err[256] = "";
	snprintf(root, sizeof root, "/tmp/test_deliver.XXXXXX");
	/*
	 * Mail for other domains goes to a smart host that refuses connections (no
	 * DNS, no network): such recipients stay deferred, destination-dead.
	 */
	if (!mkdtemp(root) || write_conf("smtp_original_recipient_header = yes\n"
	                                 "relay_smarthost = [127.0.0.1]:1\n") < 0)
		return -1;
	snprintf(dbpath, sizeof dbpath, "%s/directory.db", root);
	dir = directory_open(dbpath, 0, err, sizeof err);
	if (!dir)
		return -1;
	const char *list[] = {"alice@example.com", "bob@example.com"};
	const char *list2[] = {"team@example.com", "ALICE@example.com"};
	const char *mixed[] = {"alice@example.com", "far@remote.test"};
	const char *loop1[] = {"loop2@example.com"};
	const char *loop2[] = {"loop1@example.com"};
	const char *dis[] = {"carol@example.com", "nobody@example.com"};
	const char *pair[] = {"alice@example.com", "dave@example.com"};
	const char *crew[] = {"alice@example.com", "carol@example.com", "dave@example.com"};
	if (directory_account_add(dir, "alice@example.com", NULL, ACCOUNT_ACTIVE) != DIRECTORY_OK ||
	    directory_account_add(dir, "bob@example.com", NULL, ACCOUNT_ACTIVE) != DIRECTORY_OK ||
	    directory_account_add(dir, "carol@example.com", NULL, ACCOUNT_DISABLED) !=
	            DIRECTORY_OK ||
	    directory_account_add(dir, "dave@example.com", NULL, ACCOUNT_OVER_QUOTA) !=
	            DIRECTORY_OK ||
	    directory_account_add(dir, "erin@example.org", NULL, ACCOUNT_ACTIVE) != DIRECTORY_OK ||
	    directory_alias_add(dir, "team@example.com", list, 2) != DIRECTORY_OK ||
	    directory_alias_add(dir, "all@example.com", list2, 2) != DIRECTORY_OK ||
	    directory_alias_add(dir, "mixed@example.com", mixed, 2) != DIRECTORY_OK ||
	    directory_alias_add(dir, "loop1@example.com", loop1, 1) != DIRECTORY_OK ||
	    directory_alias_add(dir, "loop2@example.com", loop2, 1) != DIRECTORY_OK ||
	    directory_alias_add(dir, "dis@example.com", dis, 2) != DIRECTORY_OK ||
	    directory_alias_add(dir, "pair@example.com", pair, 2) != DIRECTORY_OK ||
	    directory_alias_add(dir, "crew@example.com", crew, 3) != DIRECTORY_OK)
		return -1;
	const char *const domains[] = {"example.com", "example.org"};
	idx = mailbox_index_open(dbpath, domains, 2, err, sizeof err);
	if (!idx)
		return -1;
	base = event_base_new();
	char qdir[160];
	snprintf(qdir, sizeof qdir, "%s/queue", root);
	q = queue_open(qdir, base, err, sizeof err);
	if (!q)
		fprintf(stderr, "queue_open: %s\n", err);
	return q ? 0 : -1;
}

static void teardown(void)
{
	queue_close(q);
	event_base_free(base);
	mailbox_index_free(idx);
	directory_close(dir);
	conf_free(cf);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

struct commit_wait {
	int done, ok;
	char id[32];
};

static void on_commit(void *arg, int ok, const char *id)
{
	struct commit_wait *w = arg;
	w->done = 1;
	w->ok = ok;
	if (ok)
		snprintf(w->id, sizeof w->id, "%s", id);
	event_base_loopbreak(base);
}

/* Queues msg for the NULL-terminated recipients; returns 0 and the id, or -1. */
static int enqueue(const char *from, const char *const *rcpts, int trusted, int64_t received_at,
                   const char *msg, char *id)
{
	struct envelope *e = envelope_new();
	envelope_set(&e->mail_from, from);
	envelope_set(&e->helo, "client.example.net");
	envelope_set(&e->client_addr, "192.0.2.1");
	e->received_at = received_at;
	e->trusted = trusted;
	for (size_t i = 0; rcpts[i]; i++)
		envelope_add_rcpt(e, rcpts[i], NULL, 0);
	struct queue_msg *m = queue_msg_begin(q);
	if (!m || queue_msg_write(m, msg, strlen(msg)) < 0) {
		queue_msg_abort(m);
		envelope_free(e);
		return -1;
	}
	struct commit_wait w = {0};
	queue_msg_commit(m, e, on_commit, &w);
	envelope_free(e);
	for (int i = 0; i < 1000 && !w.done; i++)
		event_base_loop(base, EVLOOP_ONCE);
	if (!w.ok)
		return -1;
	snprintf(id, 32, "%s", w.id);
	return 0;
}

/* Number of messages in new/ of user@domain; the last one's content into buf. */
/*
 * Maildir files hold LF line ends (maildir.h); the checks below are written in
 * the queue's CRLF form, so a file read back is mapped to it first. A file that
 * still held a CR would come out with "\r\r\n" and fail the comparisons.
 */
static size_t lf_to_crlf(char *buf, size_t len, size_t cap)
{
	size_t lfs = 0;
	for (size_t i = 0; i < len; i++)
		lfs += buf[i] == '\n';
	if (len + lfs >= cap)
		return len; /* cannot grow: the length checks then fail */
	size_t o = len + lfs;
	buf[o] = '\0';
	for (size_t i = len; i-- > 0;) {
		buf[--o] = buf[i];
		if (buf[i] == '\n')
			buf[--o] = '\r';
	}
	return len + lfs;
}

static int mailbox_count(const char *domain, const char *user, char *buf, size_t bufsz, size_t *len)
{
	char p[512];
	snprintf(p, sizeof p, "%s/mail/%s/%s/Maildir/new", root, domain, user);
	DIR *d = opendir(p);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		if (buf) {
			char f[1024];
			snprintf(f, sizeof f, "%s/%s", p, e->d_name);
			int fd = open(f, O_RDONLY);
			ssize_t r = fd >= 0 ? read(fd, buf, bufsz - 1) : -1;
			if (fd >= 0)
				close(fd);
			*len = r < 0 ? 0 : (size_t)r;
			buf[*len] = '\0';
			*len = lf_to_crlf(buf, *len, bufsz);
		}
	}
	closedir(d);
	return n;
}

static void clear_mail(void)
{
	char p[160];
	snprintf(p, sizeof p, "%s/mail", root);
	nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- mailbox_expand ---- */

struct targets {
	char s[2048];
	int n;
};

static int add_target(void *arg, const char *t, int local)
{
	struct targets *x = arg;
	size_t l = strlen(x->s);
	snprintf(x->s + l, sizeof x->s - l, "%s%s=%d", x->n ? " " : "", t, local);
	x->n++;
	return 0;
}

static enum lookup_result expand(const char *m, struct targets *x)
{
	memset(x, 0, sizeof *x);
	return mailbox_expand(idx, m, strlen(m), add_target, x);
}

TEST(expand_account_and_aliases)
{
	struct targets x;
	CHECK_INT(expand("Alice@EXAMPLE.com", &x), LOOKUP_FOUND);
	CHECK_STR(x.s, "alice@example.com=1");
	CHECK_INT(expand("team@example.com", &x), LOOKUP_FOUND);
	CHECK_STR(x.s, "alice@example.com=1 bob@example.com=1");
	/* all -> team (alice, bob) and alice again: alice once. */
	CHECK_INT(expand("all@example.com", &x), LOOKUP_FOUND);
	CHECK_STR(x.s, "alice@example.com=1 bob@example.com=1");
	CHECK_INT(expand("mixed@example.com", &x), LOOKUP_FOUND);
	CHECK_STR(x.s, "alice@example.com=1 far@remote.test=0");
}

TEST(expand_states_loops_and_unknown)
{
	struct targets x;
	CHECK_INT(expand("dis@example.com", &x), LOOKUP_FOUND);
	CHECK_STR(x.s, "carol@example.com=2");
	CHECK_INT(expand("dave@example.com", &x), LOOKUP_FOUND);
	CHECK_STR(x.s, "dave@example.com=3");
	CHECK_INT(expand("loop1@example.com", &x), LOOKUP_NOTFOUND);
	CHECK_INT(x.n, 0);
	CHECK_INT(expand("nobody@example.com", &x), LOOKUP_NOTFOUND);
	CHECK_INT(expand("not an address", &x), LOOKUP_NOTFOUND);
}

static int stop_first(void *arg, const char *t, int local)
{
	(void)t;
	(void)local;
	(*(int *)arg)++;
	return 1;
}

TEST(expand_stops_when_asked)
{
	int n = 0;
	CHECK_INT(mailbox_expand(idx, "team@example.com", 16, stop_first, &n), LOOKUP_FOUND);
	CHECK_INT(n, 1);
}

/* ---- the runner ---- */

static const char body[] = "From: s@example.net\r\nSubject: test\r\n\r\nline one\r\n.dot\r\n";

static struct envelope *read_env(const char *id)
{
	struct envelope *e = NULL;
	return queue_read_envelope(q, id, &e) == 0 ? e : NULL;
}

TEST(delivers_local_dedupes_and_defers_remote)
{
	char id[32];
	const char *rcpts[] = {"alice@example.com", "team@example.com", "nobody@example.com",
	                       "x@remote.test",     "erin@EXAMPLE.org", NULL};
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), body, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	char buf[4096];
	size_t len = 0;
	CHECK_INT(mailbox_count("example.com", "alice", buf, sizeof buf, &len), 1);
	const char want[] = "Return-Path: <s@example.net>\r\n"
	                    "Delivered-To: alice@example.com\r\n"
	                    "X-Sharemail-Original-Rcpt: alice@example.com\r\n"
	                    "X-Sharemail-Original-Rcpt: team@example.com\r\n"
	                    "X-Sharemail-Original-Rcpt: nobody@example.com\r\n"
	                    "X-Sharemail-Original-Rcpt: x@remote.test\r\n"
	                    "X-Sharemail-Original-Rcpt: erin@EXAMPLE.org\r\n";
	size_t wl = sizeof want - 1;
	CHECK(len == wl + strlen(body));
	CHECK_MEM(buf, len < wl ? len : wl, want, wl);
	CHECK_MEM(buf + (len < wl ? len : wl), len - (len < wl ? len : wl), body, strlen(body));
	CHECK_INT(mailbox_count("example.com", "bob", NULL, 0, NULL), 1);
	CHECK_INT(mailbox_count("example.org", "erin", NULL, 0, NULL), 1);
	CHECK_INT(mailbox_count("example.com", "nobody", NULL, 0, NULL), 0);
	struct envelope *e = read_env(id);
	if (!CHECK(e != NULL))
		return;
	CHECK_INT(e->rcpts[0].state, RCPT_DELIVERED);
	CHECK_INT(e->rcpts[1].state, RCPT_DELIVERED);
	CHECK_INT(e->rcpts[2].state, RCPT_FAILED);
	CHECK(e->rcpts[2].status && strncmp(e->rcpts[2].status, "550 5.1.1", 9) == 0);
	/* The smart host refused: deferred, its route recorded. */
	CHECK_INT(e->rcpts[3].state, RCPT_DEFERRED);
	CHECK(e->rcpts[3].status && strncmp(e->rcpts[3].status, "451 4.", 6) == 0);
	CHECK(e->rcpts[3].route && strcmp(e->rcpts[3].route, "[smarthost]") == 0);
	CHECK(e->rcpts[0].route == NULL); /* local: no route */
	CHECK_INT(e->rcpts[3].attempts, 1);
	CHECK_INT(e->rcpts[4].state, RCPT_DELIVERED);
	envelope_free(e);
	/* A second pass delivers nothing again (nothing due). */
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	queue_remove(q, id);
	clear_mail();
}

TEST(all_done_removes_message)
{
	char id[32];
	const char *rcpts[] = {"bob@example.com", "nobody@example.com", NULL};
	if (!CHECK_INT(enqueue("", rcpts, 0, time(NULL), body, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	struct envelope *e = NULL;
	CHECK_INT(queue_read_envelope(q, id, &e), -1);
	envelope_free(e);
	char buf[4096];
	size_t len = 0;
	CHECK_INT(mailbox_count("example.com", "bob", buf, sizeof buf, &len), 1);
	CHECK(strncmp(buf, "Return-Path: <>\r\nDelivered-To: bob@example.com\r\n", 48) == 0);
	clear_mail();
}

TEST(loop_fails_without_copy)
{
	char id[32];
	const char msg[] = "Delivered-To: Alice@Example.com\r\nSubject: loop\r\n\r\nx\r\n";
	const char *rcpts[] = {"alice@example.com", "team@example.com", NULL};
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), msg, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 0);
	/* team: alice loops, bob gets his copy. */
	CHECK_INT(mailbox_count("example.com", "bob", NULL, 0, NULL), 1);
	struct envelope *e = read_env(id);
	CHECK(e == NULL); /* alice FAILED, team DELIVERED: removed */
	envelope_free(e);
	clear_mail();
}

TEST(too_many_hops_fail)
{
	char id[32], msg[4096] = "";
	for (int i = 0; i < 51; i++)
		strcat(msg, "Received: from a by b; Thu, 1 Jan 1970 00:00:00 +0000\r\n");
	strcat(msg, "\r\nbody\r\n");
	const char *rcpts[] = {"alice@example.com", "x@remote.test", NULL};
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), msg, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 0);
	struct envelope *e = read_env(id);
	if (CHECK(e != NULL)) {
		CHECK_INT(e->rcpts[0].state, RCPT_FAILED);
		CHECK(e->rcpts[0].status && strncmp(e->rcpts[0].status, "550 5.4.6", 9) == 0);
		envelope_free(e);
	}
	queue_remove(q, id);
	clear_mail();
}

TEST(date_added_only_when_missing_and_trusted)
{
	char id[32], buf[4096];
	size_t len = 0;
	const char *rcpts[] = {"alice@example.com", NULL};
	/* A received_at within queue_lifetime (an older one expires untried). */
	int64_t at = time(NULL) - 60;
	char date[64];
	struct tm tm;
	gmtime_r(&(time_t){(time_t)at}, &tm);
	strftime(date, sizeof date, "\r\nDate: %a, %d %b %Y %H:%M:%S +0000\r\n", &tm);
	CHECK_INT(enqueue("s@example.net", rcpts, 1, at, body, id), 0);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", buf, sizeof buf, &len), 1);
	if (!CHECK(strstr(buf, date) != NULL))
		fprintf(stderr, "  want %s in %s\n", date, buf);
	clear_mail();
	/* Untrusted: no Date. (received_at old but lifetime irrelevant: not deferred) */
	CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), body, id), 0);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", buf, sizeof buf, &len), 1);
	CHECK(strstr(buf, "Date:") == NULL);
	clear_mail();
	/* Trusted but the message has one: not added. */
	const char dated[] = "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nx\r\n";
	CHECK_INT(enqueue("s@example.net", rcpts, 1, time(NULL), dated, id), 0);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", buf, sizeof buf, &len), 1);
	CHECK(strstr(buf, "Date:") == strstr(buf, "Date: Mon, 1 Jan 2024"));
	CHECK(strstr(strstr(buf, "Date:") + 1, "Date:") == NULL);
	clear_mail();
}

TEST(io_error_defers_then_expires)
{
	char id[32], p[160];
	/* A file where the domain folder should be: the Maildir cannot be created. */
	snprintf(p, sizeof p, "%s/mail", root);
	mkdir(p, 0700);
	snprintf(p, sizeof p, "%s/mail/example.org", root);
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	close(fd);
	const char *rcpts[] = {"erin@example.org", NULL};
	int64_t now = time(NULL);
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, now, body, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	struct envelope *e = read_env(id);
	if (CHECK(e != NULL)) {
		CHECK_INT(e->rcpts[0].state, RCPT_DEFERRED);
		CHECK(e->rcpts[0].next_try >= now + cf->queue_retry_initial);
		CHECK(e->rcpts[0].status && strncmp(e->rcpts[0].status, "451 4.3.0", 9) == 0);
		CHECK_INT(e->rcpts[0].attempts, 1);
		envelope_free(e);
	}
	/* Not due yet: a pass leaves it alone. */
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	e = read_env(id);
	CHECK(e && e->rcpts[0].attempts == 1);
	envelope_free(e);
	/* Flushed: due again, still failing, retried later. */
	CHECK(queue_flush(q, NULL) >= 1);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	e = read_env(id);
	CHECK(e && e->rcpts[0].attempts == 2 && e->rcpts[0].state == RCPT_DEFERRED);
	envelope_free(e);
	queue_remove(q, id);
	/*
	 * Past queue_lifetime (default 5 days) before it was ever tried: one attempt
	 * still (deferred), then FAILED at the next, and the message leaves the queue.
	 */
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, now - 6 * 86400, body, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	e = read_env(id);
	CHECK(e && e->rcpts[0].attempts == 1 && e->rcpts[0].state == RCPT_DEFERRED);
	envelope_free(e);
	time_fake_set(now + cf->queue_retry_initial + 1);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	time_fake_set(0);
	e = read_env(id);
	CHECK(e == NULL);
	envelope_free(e);
	unlink(p);
	fresh();
}

TEST(runner_thread_delivers_on_kick)
{
	char err[256] = "", id[32];
	struct deliver_runner *r = deliver_runner_start(cf, q, idx, err, sizeof err);
	if (!CHECK(r != NULL))
		return;
	const char *rcpts[] = {"bob@example.com", NULL};
	CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), body, id), 0);
	deliver_runner_kick(r);
	int n = 0;
	for (int i = 0; i < 1000 && n == 0; i++) {
		n = mailbox_count("example.com", "bob", NULL, 0, NULL);
		if (n == 0)
			usleep(10000);
	}
	CHECK_INT(n, 1);
	deliver_runner_stop(r);
	struct envelope *e = NULL;
	CHECK_INT(queue_read_envelope(q, id, &e), -1);
	envelope_free(e);
	deliver_runner_stop(NULL);
	deliver_runner_kick(NULL);
	clear_mail();
}

/* Polls (bounded) until message id has left the queue; 1 if it did. */
static int gone_within(const char *id)
{
	for (int i = 0; i < 1000; i++) {
		struct envelope *e = NULL;
		if (queue_read_envelope(q, id, &e) < 0 && errno == ENOENT)
			return 1;
		envelope_free(e);
		usleep(10000);
	}
	return 0;
}

/* Copies the version 1 fixture message A (to bob@example.com) into queue/msg/. */
static int put_fixture(void)
{
	char src[] = "tests/fixtures/queue-v1/msg/08E2KEuyncg60Xc3pf", dst[256], buf[4096];
	snprintf(dst, sizeof dst, "%s/queue/msg/08E2KEuyncg60Xc3pf", root);
	int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ssize_t n = in >= 0 ? read(in, buf, sizeof buf) : -1;
	int r = n > 0 && out >= 0 && write(out, buf, (size_t)n) == n ? 0 : -1;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return r;
}

/*
 * The runner learns of messages from the queue only (its start-up pass, then
 * commits), never by listing msg/: a file put there behind its back waits for
 * the next start, where it is delivered (the version 1 fixture, too). A flush
 * request makes the running runner retry a deferred recipient long before its
 * next try.
 */
TEST(runner_learns_of_messages_from_the_queue_only)
{
	char err[256] = "", id[32];
	const char *rcpts[] = {"bob@example.com", NULL};
	if (!CHECK_INT(put_fixture(), 0))
		return;
	struct deliver_runner *r = deliver_runner_start(cf, q, idx, err, sizeof err);
	if (!CHECK(r != NULL))
		return;
	CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), body, id), 0);
	deliver_runner_kick(r);
	CHECK(gone_within(id));
	/* Listed in id order, the older fixture would have gone first: it is still there. */
	struct envelope *e = NULL;
	CHECK_INT(queue_read_envelope(q, "08E2KEuyncg60Xc3pf", &e), 0);
	envelope_free(e);
	e = NULL;
	CHECK_INT(mailbox_count("example.com", "bob", NULL, 0, NULL), 1);
	deliver_runner_stop(r);
	/* The next start: found by the start-up pass and delivered. */
	queue_close(q);
	char qdir[160];
	snprintf(qdir, sizeof qdir, "%s/queue", root);
	q = queue_open(qdir, base, err, sizeof err);
	if (!CHECK(q != NULL))
		return;
	r = deliver_runner_start(cf, q, idx, err, sizeof err);
	if (!CHECK(r != NULL))
		return;
	CHECK(gone_within("08E2KEuyncg60Xc3pf"));
	char buf[4096];
	size_t len = 0;
	CHECK_INT(mailbox_count("example.com", "bob", buf, sizeof buf, &len), 2);
	clear_mail();
	/* dave is over quota: deferred for queue_retry_initial; a flush retries now. */
	const char *dave[] = {"dave@example.com", NULL};
	CHECK_INT(enqueue("s@example.net", dave, 0, time(NULL), body, id), 0);
	deliver_runner_kick(r);
	int attempts = 0;
	for (int i = 0; i < 1000 && attempts < 1; i++) {
		if (queue_read_envelope(q, id, &e) == 0 && e->rcpts[0].state == RCPT_DEFERRED)
			attempts = e->rcpts[0].attempts;
		envelope_free(e);
		e = NULL;
		if (attempts < 1)
			usleep(10000);
	}
	CHECK_INT(attempts, 1);
	CHECK_INT(queue_flush(q, id), 1);
	for (int i = 0; i < 1000 && attempts < 2; i++) {
		if (queue_read_envelope(q, id, &e) == 0)
			attempts = e->rcpts[0].attempts;
		envelope_free(e);
		e = NULL;
		if (attempts < 2)
			usleep(10000);
	}
	CHECK_INT(attempts, 2);
	deliver_runner_stop(r);
	queue_remove(q, id);
	clear_mail();
}

TEST(large_message_streamed_and_postmaster)
{
	/* 600 KiB: larger than the header scan bound, copied byte-exact. */
	size_t n = 600 * 1024;
	char *msg = malloc(n + 1), id[32];
	if (!CHECK(msg != NULL))
		return;
	memcpy(msg, "Subject: big\r\n\r\n", 16);
	for (size_t i = 16; i < n; i++)
		msg[i] = (i % 100 == 98) ? '\r' : (i % 100 == 99) ? '\n' : (char)('a' + i % 26);
	msg[n] = '\0';
	const char *rcpts[] = {"PostMaster@example.org", NULL};
	CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), msg, id), 0);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	char *buf = malloc(n + 4096);
	size_t len = 0;
	CHECK_INT(mailbox_count("example.org", "postmaster", buf, n + 4096, &len), 1);
	const char want[] = "Return-Path: <s@example.net>\r\n"
	                    "Delivered-To: postmaster@example.org\r\n"
	                    "X-Sharemail-Original-Rcpt: PostMaster@example.org\r\n";
	size_t wl = sizeof want - 1;
	CHECK_INT(len, wl + n);
	if (len == wl + n) {
		CHECK_MEM(buf, wl, want, wl);
		CHECK(memcmp(buf + wl, msg, n) == 0);
	}
	free(buf);
	free(msg);
	clear_mail();
}

TEST(quoted_local_part_gets_encoded_folder)
{
	char id[32], buf[4096];
	size_t len = 0;
	if (!CHECK_INT(directory_account_add(dir, "\"odd one\"@example.com", NULL, ACCOUNT_ACTIVE),
	               DIRECTORY_OK))
		return;
	CHECK(mailbox_index_refresh(idx) >= 1);
	const char *rcpts[] = {"\"Odd One\"@example.com", NULL};
	CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), body, id), 0);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "%22odd%20one%22", buf, sizeof buf, &len), 1);
	CHECK(strstr(buf, "Delivered-To: \"odd one\"@example.com\r\n") != NULL);
	clear_mail();
}

/* ---- final mailboxes of an alias: each its own state ---- */

static int remove_id(void *arg, const char *id)
{
	(void)arg;
	queue_remove(q, id);
	return 0;
}

/* No mail and no queued message: what an earlier (failed) test left cannot count. */
static void fresh(void)
{
	clear_mail();
	queue_list(q, remove_id, NULL);
}

/* Sets an account's state in the directory and in the runner's index. */
static int set_state(const char *addr, enum account_state st)
{
	if (directory_account_set_state(dir, addr, st) != DIRECTORY_OK)
		return -1;
	return mailbox_index_refresh(idx) >= 1 ? 0 : -1;
}

/* The final mailbox addr of recipient i, or NULL. */
static const struct envelope_final *final_of(const struct envelope *e, size_t i, const char *addr)
{
	for (size_t j = 0; e && i < e->n_rcpts && j < e->rcpts[i].n_finals; j++)
		if (strcmp(e->rcpts[i].finals[j].addr, addr) == 0)
			return &e->rcpts[i].finals[j];
	return NULL;
}

/* Checks a final mailbox's state, attempts and status prefix. */
static void check_final(const struct envelope *e, size_t i, const char *addr, enum rcpt_state st,
                        int attempts, const char *status)
{
	const struct envelope_final *f = final_of(e, i, addr);
	if (!CHECK(f != NULL)) {
		fprintf(stderr, "  no final mailbox %s of recipient %zu\n", addr, i);
		return;
	}
	CHECK_INT(f->state, st);
	CHECK_INT(f->attempts, attempts);
	if (!CHECK(f->status && strncmp(f->status, status, strlen(status)) == 0))
		fprintf(stderr, "  %s: status %s, want %s...\n", addr, f->status, status);
}

/* One delivery pass with stderr (the log) captured into buf. */
static void pass_logged(char *buf, size_t bufsz)
{
	char p[160];
	snprintf(p, sizeof p, "%s/log", root);
	fflush(stderr);
	int saved = dup(2), fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, buf, bufsz - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
}

/* A simulated restart: the queue closed and opened again (start-up scan included). */
static void reopen_queue(void)
{
	char err[256], qdir[160];
	queue_close(q);
	snprintf(qdir, sizeof qdir, "%s/queue", root);
	q = queue_open(qdir, base, err, sizeof err);
	CHECK(q != NULL);
}

TEST(over_quota_member_deferred_then_delivered)
{
	char id[32];
	fresh();
	const char *rcpts[] = {"pair@example.com", NULL};
	int64_t now = time(NULL);
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, now, body, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	CHECK_INT(mailbox_count("example.com", "dave", NULL, 0, NULL), 0);
	/* dave's copy is owed: the message stays, the alias deferred, each mailbox its own. */
	struct envelope *e = read_env(id);
	if (!CHECK(e != NULL))
		return;
	CHECK_INT(e->rcpts[0].state, RCPT_DEFERRED);
	CHECK(e->rcpts[0].next_try >= now + cf->queue_retry_initial);
	CHECK(e->rcpts[0].status && strncmp(e->rcpts[0].status, "452 4.2.2", 9) == 0);
	CHECK_INT(e->rcpts[0].n_finals, 2);
	check_final(e, 0, "alice@example.com", RCPT_DELIVERED, 1, "250 2.0.0");
	check_final(e, 0, "dave@example.com", RCPT_DEFERRED, 1, "452 4.2.2 mailbox full");
	envelope_free(e);
	/* Not due: nothing happens. Flushed, still over quota: dave alone is retried. */
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK(queue_flush(q, NULL) >= 1);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	e = read_env(id);
	check_final(e, 0, "alice@example.com", RCPT_DELIVERED, 1, "250 2.0.0");
	check_final(e, 0, "dave@example.com", RCPT_DEFERRED, 2, "452 4.2.2");
	CHECK(e && e->rcpts[0].state == RCPT_DEFERRED && e->rcpts[0].attempts == 2);
	envelope_free(e);
	/* The states survive a restart; then the quota is lifted and dave gets his copy. */
	reopen_queue();
	if (!CHECK_INT(set_state("dave@example.com", ACCOUNT_ACTIVE), 0))
		return;
	CHECK(queue_flush(q, NULL) >= 1);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "dave", NULL, 0, NULL), 1);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	e = read_env(id);
	CHECK(e == NULL); /* every mailbox delivered: removed */
	envelope_free(e);
	set_state("dave@example.com", ACCOUNT_OVER_QUOTA);
	clear_mail();
}

TEST(disabled_member_failed_and_never_delivered)
{
	char id[32];
	fresh();
	const char *rcpts[] = {"crew@example.com", NULL};
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), body, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	CHECK_INT(mailbox_count("example.com", "carol", NULL, 0, NULL), 0);
	struct envelope *e = read_env(id);
	if (!CHECK(e != NULL))
		return;
	CHECK_INT(e->rcpts[0].state, RCPT_DEFERRED);
	check_final(e, 0, "alice@example.com", RCPT_DELIVERED, 1, "250 2.0.0");
	check_final(e, 0, "carol@example.com", RCPT_FAILED, 1, "550 5.2.1 mailbox disabled");
	check_final(e, 0, "dave@example.com", RCPT_DEFERRED, 1, "452 4.2.2");
	envelope_free(e);
	/* Both accounts active again: dave gets the copy he was owed; carol failed for good. */
	if (!CHECK_INT(set_state("carol@example.com", ACCOUNT_ACTIVE), 0) ||
	    !CHECK_INT(set_state("dave@example.com", ACCOUNT_ACTIVE), 0))
		return;
	CHECK(queue_flush(q, NULL) >= 1);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "dave", NULL, 0, NULL), 1);
	CHECK_INT(mailbox_count("example.com", "carol", NULL, 0, NULL), 0);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	e = read_env(id);
	CHECK(e == NULL); /* delivered or failed, every one: removed */
	envelope_free(e);
	set_state("carol@example.com", ACCOUNT_DISABLED);
	set_state("dave@example.com", ACCOUNT_OVER_QUOTA);
	clear_mail();
}

TEST(no_second_copy_across_recipients_and_retries)
{
	char id[32];
	fresh();
	/* alice directly and through pair: one copy, then never another. */
	const char *rcpts[] = {"Alice@example.com", "pair@example.com", NULL};
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), body, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	struct envelope *e = read_env(id);
	if (!CHECK(e != NULL))
		return;
	CHECK_INT(e->rcpts[0].state, RCPT_DELIVERED);
	check_final(e, 0, "alice@example.com", RCPT_DELIVERED, 1, "250 2.0.0");
	CHECK_INT(e->rcpts[1].state, RCPT_DEFERRED);
	check_final(e, 1, "alice@example.com", RCPT_DELIVERED, 0, "250 2.0.0");
	check_final(e, 1, "dave@example.com", RCPT_DEFERRED, 1, "452 4.2.2");
	envelope_free(e);
	for (int i = 0; i < 2; i++) {
		reopen_queue();
		CHECK(queue_flush(q, NULL) >= 1);
		CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	}
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	CHECK_INT(mailbox_count("example.com", "dave", NULL, 0, NULL), 0);
	e = read_env(id);
	check_final(e, 1, "dave@example.com", RCPT_DEFERRED, 3, "452 4.2.2");
	envelope_free(e);
	queue_remove(q, id);
	clear_mail();
}

/* The queue's messages other than `except` (NULL: none) whose sender is `from`. */
struct other {
	const char *except, *from;
	char id[8][32];
	int n;
};

static int find_other(void *arg, const char *id)
{
	struct other *o = arg;
	struct envelope *e = NULL;
	if ((o->except && strcmp(id, o->except) == 0) || queue_read_envelope(q, id, &e) < 0)
		return 0;
	if (o->n < 8 && strcmp(e->mail_from, o->from) == 0)
		snprintf(o->id[o->n++], 32, "%s", id);
	envelope_free(e);
	return 0;
}

/* The data of message id (NUL-terminated, at most cap - 1 octets) into buf; its length. */
static size_t read_data(const char *id, char *buf, size_t cap)
{
	uint64_t len = 0;
	int fd = queue_open_data(q, id, &len);
	ssize_t n = fd >= 0 ? read(fd, buf, len < cap - 1 ? (size_t)len : cap - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

/*
 * The one notice (a message from <>) in the queue whose data holds `action`
 * ("Action: failed"): 1 with its id, envelope and data, else 0.
 */
static int one_bounce(const char *action, char *bid, struct envelope **be, char *data, size_t cap)
{
	struct other o = {NULL, "", {{0}}, 0};
	queue_list(q, find_other, &o);
	int found = 0;
	for (int i = 0; i < o.n; i++) {
		read_data(o.id[i], data, cap);
		if (strstr(data, action) && found++ == 0)
			snprintf(bid, 32, "%s", o.id[i]);
	}
	if (!CHECK_INT(found, 1))
		return 0;
	read_data(bid, data, cap);
	return CHECK_INT(queue_read_envelope(q, bid, be), 0);
}

TEST(deferred_member_expires_bounced_once)
{
	char id[32], bid[32], log[8192];
	static char data[65536];
	fresh();
	const char *rcpts[] = {"pair@example.com", NULL};
	int64_t now = time(NULL);
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, now, body, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	/* Hours later, past queue_delay_warning (4h): one delay notice, dave still queued. */
	time_fake_set(now + 5 * 3600);
	pass_logged(log, sizeof log);
	struct envelope *e = read_env(id), *be = NULL;
	if (CHECK(e != NULL)) {
		CHECK_INT(e->rcpts[0].state, RCPT_DEFERRED);
		CHECK_INT(e->rcpts[0].delay_notified, 1);
	}
	envelope_free(e);
	char want[256];
	snprintf(want, sizeof want, "%s: sender delay notification: ", id);
	CHECK(strstr(log, want) != NULL);
	if (one_bounce("Action: delayed\r\n", bid, &be, data, sizeof data)) {
		CHECK_STR(be->rcpts[0].addr, "s@example.net");
		CHECK(strstr(data, "Final-Recipient: rfc822; pair@example.com\r\n") != NULL);
		envelope_free(be);
		queue_remove(q, bid);
	}
	/* Later still: no second delay notice. */
	time_fake_set(now + 6 * 3600);
	pass_logged(log, sizeof log);
	CHECK(strstr(log, "delay notification") == NULL);
	/*
	 * Past queue_lifetime (5 days) at the next attempt (none was made after the
	 * lifetime ended: it still happens), then at the one after that: dave fails
	 * with 4.4.7 and is bounced alone.
	 */
	time_fake_set(now + 6 * 86400);
	pass_logged(log, sizeof log);
	e = read_env(id);
	CHECK(e && e->rcpts[0].attempts == 4);
	envelope_free(e);
	time_fake_set(now + 6 * 86400 + 3601);
	pass_logged(log, sizeof log);
	time_fake_set(0);
	CHECK_INT(mailbox_count("example.com", "dave", NULL, 0, NULL), 0);
	e = read_env(id);
	CHECK(e == NULL);
	envelope_free(e);
	snprintf(want, sizeof want,
	         "%s: to=<dave@example.com>, orig_to=<pair@example.com>, relay=none, delay=", id);
	const char *l = strstr(log, want);
	if (!CHECK(l != NULL))
		fprintf(stderr, "  log: %s\n", log);
	if (!CHECK(l &&
	           strstr(l, ", dsn=4.4.7, status=bounced (message expired after 5 days in the "
	                     "queue; attempts: 4; last: 452 4.2.2 mailbox full")))
		fprintf(stderr, "  log: %s\n", log);
	snprintf(want, sizeof want, "%s: sender non-delivery notification: ", id);
	CHECK(strstr(log, want) != NULL);
	if (one_bounce("Action: failed\r\n", bid, &be, data, sizeof data)) {
		CHECK(strstr(data, "Final-Recipient: rfc822; dave@example.com\r\n") != NULL);
		if (!CHECK(strstr(data, "Status: 4.4.7\r\n") != NULL))
			fprintf(stderr, "  bounce: %s\n", data);
		CHECK(strstr(data, "alice@example.com") == NULL); /* delivered: not listed */
		envelope_free(be);
		queue_remove(q, bid);
	}
	clear_mail();
}

TEST(message_past_its_lifetime_gets_one_attempt)
{
	/* Queued 6 days ago, lifetime 5: tried once more, then expired (a retry later). */
	char id[32], bid[32];
	fresh();
	const char *rcpts[] = {"bob@example.com", "x@remote.test", NULL};
	int64_t now = time(NULL);
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, now - 6 * 86400, body, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "bob", NULL, 0, NULL), 1);
	struct envelope *e = read_env(id), *be = NULL;
	CHECK(e && e->rcpts[1].state == RCPT_DEFERRED);
	envelope_free(e);
	time_fake_set(now + cf->queue_retry_initial + 1);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	time_fake_set(0);
	e = read_env(id);
	CHECK(e == NULL);
	envelope_free(e);
	static char data[65536];
	if (one_bounce("Action: failed\r\n", bid, &be, data, sizeof data)) {
		/* the one that failed, not the one delivered */
		CHECK(strstr(data, "Final-Recipient: rfc822; x@remote.test\r\n") != NULL);
		CHECK(strstr(data, "Status: 4.4.7\r\n") != NULL);
		CHECK(strstr(data, "Final-Recipient: rfc822; bob@example.com\r\n") == NULL);
		envelope_free(be);
		queue_remove(q, bid);
	}
	clear_mail();
}

TEST(no_notice_for_null_sender_or_never)
{
	char id[32];
	fresh();
	const char *rcpts[] = {"nobody@example.com", NULL};
	CHECK_INT(enqueue("", rcpts, 0, time(NULL), body, id), 0);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	struct other o = {NULL, "", {{0}}, 0};
	queue_list(q, find_other, &o);
	CHECK_INT(o.n, 0); /* a bounce is never bounced */
	fresh();
}

TEST(foreign_alias_target_expanded_into_a_new_message)
{
	char id[32], log[8192];
	static char data[65536];
	fresh();
	const char *rcpts[] = {"mixed@example.com", NULL};
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), body, id), 0))
		return;
	pass_logged(log, sizeof log);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1);
	/* The local copy is made; the foreign target became a new message: this one is done. */
	struct envelope *e = read_env(id);
	CHECK(e == NULL);
	envelope_free(e);
	struct other o = {id, "s@example.net", {{0}}, 0};
	queue_list(q, find_other, &o);
	if (!CHECK_INT(o.n, 1))
		return;
	char want[256];
	snprintf(want, sizeof want,
	         "info: %s: to=<far@remote.test>, orig_to=<mixed@example.com>, relay=local, delay=",
	         id);
	const char *l = strstr(log, want);
	snprintf(want, sizeof want, ", dsn=2.1.5, status=sent (expanded into %s)\n", o.id[0]);
	if (!CHECK(l && strstr(l, want)))
		fprintf(stderr, "  log: %s\n", log);
	e = read_env(o.id[0]);
	if (CHECK(e != NULL) && CHECK_INT(e->n_rcpts, 1)) {
		CHECK_STR(e->rcpts[0].addr, "far@remote.test");
		CHECK_STR(e->rcpts[0].orcpt, "rfc822;mixed@example.com");
	}
	envelope_free(e);
	size_t n = read_data(o.id[0], data, sizeof data);
	const char dt[] = "Delivered-To: mixed@example.com\r\n";
	CHECK(n == strlen(dt) + strlen(body));
	CHECK(strncmp(data, dt, strlen(dt)) == 0 && strcmp(data + strlen(dt), body) == 0);
	/* The new message is relayed like any other (deferred here: the smart host refuses). */
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	e = read_env(o.id[0]);
	CHECK(e && e->rcpts[0].state == RCPT_DEFERRED && e->rcpts[0].attempts == 1);
	envelope_free(e);
	CHECK_INT(mailbox_count("example.com", "alice", NULL, 0, NULL), 1); /* no second copy */
	fresh();
}

TEST(list_post_expanded_with_owner_and_list_id)
{
	char id[32];
	static char data[65536];
	fresh();
	const char *members[] = {"bob@example.com", "far@remote.test", "erin@example.org"};
	if (!CHECK_INT(directory_list_add(dir, "staff@example.com", NULL, 0), DIRECTORY_OK) ||
	    !CHECK_INT(directory_list_join(dir, "staff@example.com", members, 3, NULL),
	               DIRECTORY_OK))
		return;
	CHECK(mailbox_index_refresh(idx) >= 1);
	const char *rcpts[] = {"Staff@example.com", NULL};
	/* A post from another list: its List-Id (folded) gives way to ours. */
	char post[1024];
	snprintf(post, sizeof post, "List-ID: <other.example.net>\r\n (folded)\r\n%s", body);
	if (!CHECK_INT(enqueue("poster@example.net", rcpts, 0, time(NULL), post, id), 0))
		return;
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK(read_env(id) == NULL); /* expanded: done */
	struct other o = {id, "staff-owner@example.com", {{0}}, 0};
	queue_list(q, find_other, &o);
	if (!CHECK_INT(o.n, 1))
		return;
	struct envelope *e = read_env(o.id[0]);
	if (CHECK(e != NULL))
		CHECK_INT(e->n_rcpts, 3);
	envelope_free(e);
	read_data(o.id[0], data, sizeof data);
	const char fields[] = "Delivered-To: staff@example.com\r\nList-Id: <staff.example.com>\r\n";
	CHECK(strncmp(data, fields, strlen(fields)) == 0 &&
	      strcmp(data + strlen(fields), body) == 0);
	/* The copy's local members get it (each once), the foreign one waits for the relay. */
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	char buf[4096];
	size_t len = 0;
	CHECK_INT(mailbox_count("example.com", "bob", buf, sizeof buf, &len), 1);
	CHECK(strstr(buf, "Return-Path: <staff-owner@example.com>\r\n") == buf);
	CHECK(strstr(buf, "List-Id: <staff.example.com>\r\n") != NULL);
	CHECK_INT(mailbox_count("example.org", "erin", NULL, 0, NULL), 1);
	e = read_env(o.id[0]);
	/* Members in address order: bob, erin, far. */
	CHECK(e && e->rcpts[2].state == RCPT_DEFERRED && e->rcpts[0].state == RCPT_DELIVERED);
	CHECK(e && strcmp(e->rcpts[2].addr, "far@remote.test") == 0);
	envelope_free(e);
	CHECK_INT(deliver_queue_once(cf, q, idx), 0);
	CHECK_INT(mailbox_count("example.com", "bob", NULL, 0, NULL), 1);
	directory_list_del(dir, "staff@example.com");
	mailbox_index_refresh(idx);
	fresh();
}

/* 1 if log has an info line for `to` (and orig_to) with this dsn and status text. */
static int logged(const char *log, const char *id, const char *to, const char *orig,
                  const char *dsn, const char *status)
{
	char head[512], tail[512];
	snprintf(head, sizeof head, "info: %s: to=<%s>%s%s%s, relay=local, delay=", id, to,
	         orig ? ", orig_to=<" : "", orig ? orig : "", orig ? ">" : "");
	snprintf(tail, sizeof tail, ", dsn=%s, status=%s\n", dsn, status);
	for (const char *p = log; (p = strstr(p, head)) != NULL; p++) {
		const char *d = p + strlen(head), *e = d; /* the delay: digits and a point */
		while ((*e >= '0' && *e <= '9') || *e == '.')
			e++;
		if (e > d && strncmp(e, tail, strlen(tail)) == 0)
			return 1;
	}
	return 0;
}

TEST(one_log_line_per_mailbox_attempt)
{
	char id[32], log[8192];
	fresh();
	const char *rcpts[] = {"crew@example.com", "bob@example.com", "nobody@example.com", NULL};
	if (!CHECK_INT(enqueue("s@example.net", rcpts, 0, time(NULL), body, id), 0))
		return;
	pass_logged(log, sizeof log);
	CHECK(logged(log, id, "alice@example.com", "crew@example.com", "2.0.0",
	             "sent (delivered to maildir)"));
	CHECK(logged(log, id, "dave@example.com", "crew@example.com", "4.2.2",
	             "deferred (mailbox full)"));
	CHECK(logged(log, id, "bob@example.com", NULL, "2.0.0", "sent (delivered to maildir)"));
	/* Permanent failures are warnings. */
	char want[512];
	snprintf(want, sizeof want,
	         "warning: %s: to=<carol@example.com>, orig_to=<crew@example.com>, relay=local, "
	         "delay=",
	         id);
	const char *l = strstr(log, want);
	CHECK(l && strstr(l, ", dsn=5.2.1, status=bounced (mailbox disabled)\n"));
	snprintf(want, sizeof want,
	         "warning: %s: to=<nobody@example.com>, relay=local, delay=", id);
	l = strstr(log, want);
	CHECK(l && strstr(l, ", dsn=5.1.1, status=bounced (no such mailbox)\n"));
	/* One notice for the attempt, listing carol and nobody. */
	snprintf(want, sizeof want, "%s: sender non-delivery notification: ", id);
	CHECK(strstr(log, want) != NULL);
	/* Exactly one line per mailbox attempt: alice, carol, dave, bob, nobody. */
	char mine[64];
	snprintf(mine, sizeof mine, "%s: to=<", id);
	int lines = 0;
	for (const char *p = log; (p = strstr(p, mine)) != NULL; p++)
		lines++;
	CHECK_INT(lines, 5);
	/* A retry logs only the mailbox retried. */
	CHECK(queue_flush(q, NULL) >= 1);
	pass_logged(log, sizeof log);
	CHECK(logged(log, id, "dave@example.com", "crew@example.com", "4.2.2",
	             "deferred (mailbox full)"));
	lines = 0;
	for (const char *p = log; (p = strstr(p, mine)) != NULL; p++)
		lines++;
	CHECK_INT(lines, 1);
	fresh();
}

static void all(void)
{
	if (!CHECK_INT(setup(), 0))
		return;
	static const struct test_case cases[] = {
	        T(expand_account_and_aliases),
	        T(expand_states_loops_and_unknown),
	        T(expand_stops_when_asked),
	        T(delivers_local_dedupes_and_defers_remote),
	        T(all_done_removes_message),
	        T(loop_fails_without_copy),
	        T(too_many_hops_fail),
	        T(date_added_only_when_missing_and_trusted),
	        T(io_error_defers_then_expires),
	        T(runner_thread_delivers_on_kick),
	        T(runner_learns_of_messages_from_the_queue_only),
	        T(large_message_streamed_and_postmaster),
	        T(quoted_local_part_gets_encoded_folder),
	        T(over_quota_member_deferred_then_delivered),
	        T(disabled_member_failed_and_never_delivered),
	        T(no_second_copy_across_recipients_and_retries),
	        T(deferred_member_expires_bounced_once),
	        T(message_past_its_lifetime_gets_one_attempt),
	        T(no_notice_for_null_sender_or_never),
	        T(one_log_line_per_mailbox_attempt),
	        T(foreign_alias_target_expanded_into_a_new_message),
	        T(list_post_expanded_with_owner_and_list_id),
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		cases[i].fn();
	teardown();
}

TEST_MAIN(T(all))
