/*
 * Unit tests for directory/pop_login (POP before SMTP's table of recent POP3
 * logins) on a fake clock: the window's edges and a clock stepped back, key
 * limits, exact matching, the bound (the oldest login is forgotten, a new login
 * refreshes an account), heavy churn through shared hash chains, and concurrent
 * notes and queries from several threads.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "directory/pop_login.h"
#include "harness.h"

TEST(window_table)
{
	static const struct {
		int64_t login, now, window;
		int want;
	} cases[] = {
	        {1000, 1000, 600, 1}, /* just now */
	        {1000, 1600, 600, 1}, /* exactly the window */
	        {1000, 1601, 600, 0}, /* one second late */
	        {1000, 999, 600, 1}, /* the clock stepped back a little */
	        {1000, 399, 600, 0}, /* ... or more than the window */
	        {1000, 1000, 0, 1},   {1000, 1001, 0, 0},
	        {1000, 1000, -1, 0}, /* no negative window */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pop_login *t = pop_login_new(8);
		if (!CHECK(t != NULL))
			return;
		CHECK_INT(pop_login_note(t, "alice@example.com", cases[i].login), 0);
		CHECK_INT(pop_login_recent(t, "alice@example.com", cases[i].now, cases[i].window),
		          cases[i].want);
		pop_login_free(t);
	}
}

TEST(keys_are_exact_and_bounded)
{
	struct pop_login *t = pop_login_new(8);
	if (!CHECK(t != NULL))
		return;
	CHECK_INT(pop_login_note(t, "alice@example.com", 100), 0);
	CHECK_INT(pop_login_recent(t, "alice@example.com", 100, 600), 1);
	CHECK_INT(pop_login_recent(t, "bob@example.com", 100, 600), 0);
	CHECK_INT(pop_login_recent(t, "alice@example.co", 100, 600), 0);
	CHECK_INT(pop_login_recent(t, "alice@example.comm", 100, 600), 0);
	CHECK_INT(pop_login_recent(t, "Alice@example.com", 100, 600), 0); /* keys are lower case */
	CHECK_INT(pop_login_recent(t, "", 100, 600), 0);
	CHECK_INT(pop_login_note(t, "", 100), -1);
	char key[POP_LOGIN_KEY_MAX + 2];
	memset(key, 'a', sizeof key - 1);
	key[sizeof key - 1] = '\0'; /* 321 octets: no account has one */
	CHECK_INT(pop_login_note(t, key, 100), -1);
	CHECK_INT(pop_login_recent(t, key, 100, 600), 0);
	key[POP_LOGIN_KEY_MAX] = '\0'; /* 320: the longest */
	CHECK_INT(pop_login_note(t, key, 100), 0);
	CHECK_INT(pop_login_recent(t, key, 100, 600), 1);
	CHECK_INT(pop_login_count(t), 2);
	/* A later login replaces the earlier one. */
	CHECK_INT(pop_login_note(t, "alice@example.com", 5000), 0);
	CHECK_INT(pop_login_recent(t, "alice@example.com", 5500, 600), 1);
	CHECK_INT(pop_login_recent(t, "alice@example.com", 100, 600), 0);
	CHECK_INT(pop_login_count(t), 2);
	pop_login_free(t);
	pop_login_free(NULL);
	CHECK_INT(pop_login_recent(NULL, "alice@example.com", 100, 600), 0);
	CHECK_INT(pop_login_count(NULL), 0);
	CHECK(pop_login_new(0) == NULL);
}

TEST(full_table_forgets_the_oldest_login)
{
	struct pop_login *t = pop_login_new(3);
	if (!CHECK(t != NULL))
		return;
	pop_login_note(t, "a@x", 1);
	pop_login_note(t, "b@x", 2);
	pop_login_note(t, "c@x", 3);
	pop_login_note(t, "a@x", 4); /* a logs in again: b is now the oldest */
	pop_login_note(t, "d@x", 5);
	CHECK_INT(pop_login_count(t), 3);
	CHECK_INT(pop_login_recent(t, "a@x", 5, 100), 1);
	CHECK_INT(pop_login_recent(t, "b@x", 5, 100), 0);
	CHECK_INT(pop_login_recent(t, "c@x", 5, 100), 1);
	CHECK_INT(pop_login_recent(t, "d@x", 5, 100), 1);
	pop_login_note(t, "e@x", 6);
	CHECK_INT(pop_login_recent(t, "c@x", 6, 100), 0);
	CHECK_INT(pop_login_count(t), 3);
	pop_login_free(t);
}

TEST(churn_keeps_exactly_the_newest)
{
	/* 20,000 accounts through a table of 100 (16 buckets' chains are shared): the
	 * last 100 are found, none before them. */
	struct pop_login *t = pop_login_new(100);
	if (!CHECK(t != NULL))
		return;
	char key[64];
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof key, "user%d@example.com", i);
		pop_login_note(t, key, i);
	}
	CHECK_INT(pop_login_count(t), 100);
	int found_new = 0, found_old = 0;
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof key, "user%d@example.com", i);
		int r = pop_login_recent(t, key, 20000, 1000000);
		if (i >= 19900)
			found_new += r;
		else
			found_old += r;
	}
	CHECK_INT(found_new, 100);
	CHECK_INT(found_old, 0);
	pop_login_free(t);
}

struct worker {
	struct pop_login *t;
	int id;
	int seen_own; /* the worker's last key was found right after its note */
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char key[64];
	w->seen_own = 1;
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof key, "w%d-%d@example.com", w->id, i % 500);
		pop_login_note(w->t, key, i);
		(void)pop_login_recent(w->t, key, i, 10);
	}
	/* 4 workers x 500 keys fit in 4096 entries: every key stays. */
	for (int i = 0; i < 500; i++) {
		snprintf(key, sizeof key, "w%d-%d@example.com", w->id, i);
		w->seen_own &= pop_login_recent(w->t, key, 20000, 100000);
	}
	return NULL;
}

TEST(threads_share_one_table)
{
	struct pop_login *t = pop_login_new(4096);
	if (!CHECK(t != NULL))
		return;
	pthread_t th[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){t, i, 0};
		CHECK_INT(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT(w[i].seen_own, 1);
	}
	CHECK_INT(pop_login_count(t), 2000);
	pop_login_free(t);
}

TEST_MAIN(T(window_table), T(keys_are_exact_and_bounded), T(full_table_forgets_the_oldest_login),
          T(churn_keeps_exactly_the_newest), T(threads_share_one_table))
