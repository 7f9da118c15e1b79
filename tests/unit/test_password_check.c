/*
 * Tests for directory/password_check against a real directory file and a real
 * libevent loop: results arrive on the loop thread (never inside submit), carry
 * their ids and the account's aliases, and every kind of failure costs exactly the
 * one hash a right password costs (counted, not timed).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "directory/directory.h"
#include "directory/password.h"
#include "directory/password_check.h"
#include "harness.h"

#define MAX_RESULTS 16

struct seen {
	pthread_t loop_thread;
	int wrong_thread;
	size_t n;
	uint64_t id[MAX_RESULTS];
	enum password_check_status status[MAX_RESULTS];
	char account[MAX_RESULTS][MAILADDR_MAX + 1];
	size_t n_addresses[MAX_RESULTS];
	char first_address[MAX_RESULTS][MAILADDR_MAX + 1];
	struct event_base *base;
	size_t want;
};

static void on_done(void *arg, const struct password_check_result *r)
{
	struct seen *s = arg;
	if (!pthread_equal(pthread_self(), s->loop_thread))
		s->wrong_thread++;
	if (s->n < MAX_RESULTS) {
		s->id[s->n] = r->id;
		s->status[s->n] = r->status;
		snprintf(s->account[s->n], sizeof s->account[0], "%s", r->account);
		s->n_addresses[s->n] = r->n_addresses;
		snprintf(s->first_address[s->n], sizeof s->first_address[0], "%s",
		         r->n_addresses ? r->addresses[0] : "");
	}
	s->n++;
	if (s->n >= s->want)
		event_base_loopbreak(s->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* Runs the loop until `want` results in all have come, or 60 s passed (a hang). */
static void wait_results(struct seen *s, size_t want)
{
	s->want = want;
	if (s->n >= want)
		return;
	struct timeval tv = {60, 0};
	struct event *t = evtimer_new(s->base, on_deadline, s->base);
	evtimer_add(t, &tv);
	event_base_dispatch(s->base);
	event_free(t);
}

static char dbdir[] = "/tmp/test_password_check.XXXXXX";
static char dbpath[sizeof dbdir + 16];

/* alice (password "right", alias sales), dave (disabled), nopass (no hash), locked. */
static int make_directory(void)
{
	if (!mkdtemp(dbdir))
		return -1;
	snprintf(dbpath, sizeof dbpath, "%s/directory.db", dbdir);
	char err[256], hash[PASSWORD_HASH_MAX];
	struct directory *d = directory_open(dbpath, 0, err, sizeof err);
	if (!d || password_hash("right", hash, sizeof hash) != 0)
		return -1;
	const char *sales[] = {"alice@example.com"};
	const char *team[] = {"alice@example.com", "bob@example.com"};
	int bad = directory_account_add(d, "alice@example.com", hash, ACCOUNT_ACTIVE) ||
	          directory_account_add(d, "dave@example.com", hash, ACCOUNT_DISABLED) ||
	          directory_account_add(d, "nopass@example.com", NULL, ACCOUNT_ACTIVE) ||
	          directory_account_add(d, "locked@example.com", "!locked", ACCOUNT_ACTIVE) ||
	          directory_alias_add(d, "sales@example.com", sales, 1) ||
	          directory_alias_add(d, "team@example.com", team, 2);
	directory_close(d);
	return bad ? -1 : 0;
}

static void remove_directory(void)
{
	char p[sizeof dbpath + 8];
	static const char *const suffix[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", dbpath, suffix[i]);
		unlink(p);
	}
	rmdir(dbdir);
}

struct check_case {
	const char *identity;
	const char *password;
	enum password_check_status want;
};

static const struct check_case check_cases[] = {
        {"alice@example.com", "right", PASSWORD_CHECK_OK},
        {"Alice@Example.COM", "right", PASSWORD_CHECK_OK}, /* looked up by its key */
        {"alice@example.com", "wrong", PASSWORD_CHECK_FAIL},
        {"nobody@example.com", "right", PASSWORD_CHECK_FAIL},
        {"dave@example.com", "right", PASSWORD_CHECK_FAIL}, /* disabled */
        {"nopass@example.com", "right", PASSWORD_CHECK_FAIL},
        {"locked@example.com", "!locked", PASSWORD_CHECK_FAIL},
        {"not an address", "right", PASSWORD_CHECK_FAIL},
        {"sales@example.com", "right", PASSWORD_CHECK_FAIL}, /* an alias is no login */
};
#define N_CHECK_CASES (sizeof check_cases / sizeof check_cases[0])

/*
 * Each case alone: its status, its id, one hash each. Unknown user and wrong
 * password cost the same one hash as the right password.
 */
TEST(each_case_one_hash)
{
	struct seen s = {.loop_thread = pthread_self()};
	s.base = event_base_new();
	char err[256];
	struct password_check *pc =
	        password_check_new(s.base, dbpath, 2, 8, on_done, &s, err, sizeof err);
	if (!CHECK(pc != NULL)) {
		printf("  %s\n", err);
		event_base_free(s.base);
		return;
	}
	for (size_t i = 0; i < N_CHECK_CASES; i++) {
		const struct check_case *c = &check_cases[i];
		uint64_t before = password_check_hashes(pc);
		size_t n = s.n;
		CHECK_INT(password_check_submit(pc, 100 + i, c->identity, c->password,
		                                strlen(c->password)),
		          0);
		CHECK_INT(s.n, n); /* never answered inside submit */
		wait_results(&s, n + 1);
		if (!CHECK_INT(s.n, n + 1))
			break;
		if (!CHECK_INT(s.status[n], c->want))
			printf("  case %s / %s\n", c->identity, c->password);
		CHECK_INT(s.id[n], 100 + i);
		CHECK_INT(password_check_hashes(pc) - before, 1);
	}
	CHECK_INT(s.wrong_thread, 0);
	/* alice's account and her aliases came back with her success */
	CHECK_STR(s.account[0], "alice@example.com");
	CHECK_INT(s.n_addresses[0], 2);
	CHECK_STR(s.first_address[0], "sales@example.com");
	CHECK_STR(s.account[1], "alice@example.com");
	CHECK_STR(s.account[2], "");
	CHECK_INT(s.n_addresses[2], 0);
	password_check_free(pc);
	event_base_free(s.base);
}

/* Many at once over several workers: every id answered once, on the loop thread. */
TEST(batch_on_loop_thread)
{
	struct seen s = {.loop_thread = pthread_self()};
	s.base = event_base_new();
	char err[256];
	struct password_check *pc =
	        password_check_new(s.base, dbpath, 3, MAX_RESULTS, on_done, &s, err, sizeof err);
	if (!CHECK(pc != NULL)) {
		event_base_free(s.base);
		return;
	}
	for (size_t i = 0; i < N_CHECK_CASES; i++)
		CHECK_INT(password_check_submit(pc, i, check_cases[i].identity,
		                                check_cases[i].password,
		                                strlen(check_cases[i].password)),
		          0);
	CHECK_INT(s.n, 0);
	wait_results(&s, N_CHECK_CASES);
	CHECK_INT(s.n, N_CHECK_CASES);
	CHECK_INT(s.wrong_thread, 0);
	CHECK_INT(password_check_hashes(pc), N_CHECK_CASES);
	unsigned seen_ids = 0;
	for (size_t i = 0; i < s.n && i < MAX_RESULTS; i++) {
		if (!CHECK(s.id[i] < N_CHECK_CASES))
			continue;
		CHECK(!(seen_ids & (1u << s.id[i])));
		seen_ids |= 1u << s.id[i];
		CHECK_INT(s.status[i], check_cases[s.id[i]].want);
	}
	password_check_free(pc);
	event_base_free(s.base);
}

/* The queue is bounded; too-long arguments are refused; free with work left is clean. */
TEST(limits_and_free)
{
	struct seen s = {.loop_thread = pthread_self()};
	s.base = event_base_new();
	char err[256];
	struct password_check *pc =
	        password_check_new(s.base, dbpath, 1, 2, on_done, &s, err, sizeof err);
	if (!CHECK(pc != NULL)) {
		event_base_free(s.base);
		return;
	}
	static char long_pw[PASSWORD_MAX + 2];
	memset(long_pw, 'x', sizeof long_pw - 1);
	CHECK_INT(password_check_submit(pc, 1, "alice@example.com", long_pw, PASSWORD_MAX + 1), -1);
	CHECK_INT(password_check_submit(pc, 1, "alice@example.com", "a\0b", 3), -1);
	/* pending counts until the result is delivered on the loop, so a third must wait */
	CHECK_INT(password_check_submit(pc, 1, "alice@example.com", "wrong", 5), 0);
	CHECK_INT(password_check_submit(pc, 2, "alice@example.com", "wrong", 5), 0);
	CHECK_INT(password_check_submit(pc, 3, "alice@example.com", "wrong", 5), -1);
	wait_results(&s, 2);
	CHECK_INT(s.n, 2);
	CHECK_INT(password_check_submit(pc, 4, "alice@example.com", "wrong", 5), 0);
	CHECK_INT(password_check_submit(pc, 5, "alice@example.com", "wrong", 5), 0);
	password_check_free(pc); /* two jobs possibly unfinished: dropped, nothing called */
	CHECK(s.n <= 2);
	event_base_free(s.base);
	password_check_free(NULL);
}

/* A directory that cannot be opened is a temporary failure, after the same one hash. */
/* One check of identity/password as request id; returns its status (-1: no answer). */
static int check_now(struct password_check *pc, struct seen *s, uint64_t id, const char *identity,
                     const char *password)
{
	size_t n = s->n;
	if (password_check_submit(pc, id, identity, password, strlen(password)) != 0)
		return -1;
	wait_results(s, n + 1);
	return s->n == n + 1 ? (int)s->status[n] : -1;
}

/*
 * The success cache: a second success costs no hash; a wrong password, an
 * unknown user and a changed password (a new stored hash) still hash; ttl 0
 * forgets; without the cache every check hashes (each_case_one_hash).
 */
TEST(success_cache)
{
	struct seen s = {.loop_thread = pthread_self()};
	s.base = event_base_new();
	char err[256], hash[PASSWORD_HASH_MAX];
	struct password_check *pc =
	        password_check_new(s.base, dbpath, 2, 8, on_done, &s, err, sizeof err);
	if (!CHECK(pc != NULL)) {
		event_base_free(s.base);
		return;
	}
	CHECK_INT(password_check_set_cache(pc, 3600), 0);
	uint64_t h0 = password_check_hashes(pc);
	CHECK_INT(check_now(pc, &s, 1, "alice@example.com", "right"), PASSWORD_CHECK_OK);
	CHECK_INT(password_check_hashes(pc) - h0, 1); /* the first success hashes */
	CHECK_INT(check_now(pc, &s, 2, "Alice@Example.com", "right"), PASSWORD_CHECK_OK);
	CHECK_INT(password_check_hashes(pc) - h0, 1); /* the second is remembered */
	CHECK_INT(password_check_cache_hits(pc), 1);
	CHECK_STR(s.account[s.n - 1], "alice@example.com");
	CHECK_INT(check_now(pc, &s, 3, "alice@example.com", "wrong"), PASSWORD_CHECK_FAIL);
	CHECK_INT(check_now(pc, &s, 4, "nobody@example.com", "right"), PASSWORD_CHECK_FAIL);
	CHECK_INT(password_check_hashes(pc) - h0, 3); /* failures always hash */
	/* A new password in the directory: the old one is refused, hashed. */
	struct directory *d = directory_open(dbpath, 0, err, sizeof err);
	CHECK(d != NULL && password_hash("newer", hash, sizeof hash) == 0 &&
	      directory_account_set_password(d, "alice@example.com", hash) == DIRECTORY_OK);
	CHECK_INT(check_now(pc, &s, 5, "alice@example.com", "right"), PASSWORD_CHECK_FAIL);
	CHECK_INT(password_check_hashes(pc) - h0, 4);
	CHECK_INT(check_now(pc, &s, 6, "alice@example.com", "newer"), PASSWORD_CHECK_OK);
	CHECK_INT(check_now(pc, &s, 7, "alice@example.com", "newer"), PASSWORD_CHECK_OK);
	CHECK_INT(password_check_hashes(pc) - h0, 5);
	/* Off: forgotten, every check hashes again. */
	CHECK_INT(password_check_set_cache(pc, 0), 0);
	CHECK_INT(check_now(pc, &s, 8, "alice@example.com", "newer"), PASSWORD_CHECK_OK);
	CHECK_INT(password_check_hashes(pc) - h0, 6);
	/* the directory as the other tests expect it */
	if (d && password_hash("right", hash, sizeof hash) == 0)
		directory_account_set_password(d, "alice@example.com", hash);
	directory_close(d);
	password_check_free(pc);
	event_base_free(s.base);
}

TEST(directory_missing)
{
	struct seen s = {.loop_thread = pthread_self()};
	s.base = event_base_new();
	char err[256];
	struct password_check *pc = password_check_new(s.base, "/nonexistent/directory.db", 1, 4,
	                                               on_done, &s, err, sizeof err);
	if (!CHECK(pc != NULL)) {
		event_base_free(s.base);
		return;
	}
	CHECK_INT(password_check_submit(pc, 7, "alice@example.com", "right", 5), 0);
	wait_results(&s, 1);
	CHECK_INT(s.n, 1);
	CHECK_INT(s.status[0], PASSWORD_CHECK_TEMPFAIL);
	CHECK_INT(password_check_hashes(pc), 1);
	password_check_free(pc);
	event_base_free(s.base);
}

static void run_setup(void)
{
	if (make_directory() != 0) {
		printf("cannot make the test directory\n");
		exit(1);
	}
}

/*
 * One pool, two services (SMTP AUTH and POP3): a check submitted with its own
 * callback is answered there, the others through the pool's, each once.
 */
TEST(submit_to_own_callback)
{
	struct seen pool = {.loop_thread = pthread_self()}, own = {.loop_thread = pthread_self()};
	pool.base = own.base = event_base_new();
	char err[256];
	struct password_check *pc =
	        password_check_new(pool.base, dbpath, 2, 8, on_done, &pool, err, sizeof err);
	if (!CHECK(pc != NULL)) {
		event_base_free(pool.base);
		return;
	}
	CHECK_INT(password_check_submit(pc, 1, "alice@example.com", "right", 5), 0);
	CHECK_INT(password_check_submit_to(pc, 2, "alice@example.com", "wrong", 5, on_done, &own),
	          0);
	CHECK_INT(password_check_submit_to(pc, 3, "alice@example.com", "right", 5, NULL, NULL), 0);
	pool.want = own.want = 1000; /* the loop is broken below */
	for (int i = 0; i < 600 && pool.n + own.n < 3; i++) {
		struct timeval tv = {0, 100000};
		event_base_loopexit(pool.base, &tv);
		event_base_dispatch(pool.base);
	}
	CHECK_INT(pool.n, 2);
	CHECK_INT(own.n, 1);
	CHECK_INT(own.id[0], 2);
	CHECK_INT(own.status[0], PASSWORD_CHECK_FAIL);
	CHECK(pool.id[0] != 2 && pool.id[1] != 2);
	CHECK_INT(pool.status[0], PASSWORD_CHECK_OK);
	CHECK_INT(pool.wrong_thread + own.wrong_thread, 0);
	password_check_free(pc);
	event_base_free(pool.base);
}

int main(int argc, char **argv)
{
	static const struct test_case tests[] = {T(each_case_one_hash), T(batch_on_loop_thread),
	                                         T(limits_and_free),    T(success_cache),
	                                         T(directory_missing),  T(submit_to_own_callback)};
	run_setup();
	int rc = harness_run(tests, sizeof tests / sizeof tests[0], argc, argv);
	remove_directory();
	return rc;
}
