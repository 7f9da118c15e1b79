/*
 * pop_login: the recent POP3 logins. See pop_login.h for the contract.
 *
 * A chained hash table (a power of two of buckets, at least twice max) finds an
 * account; a doubly linked list orders the accounts by their last login, oldest
 * first, so a note on a full table forgets the list's head in O(1). A node is
 * allocated at an account's first login (its key's length), so the memory follows
 * the accounts seen, at most max of them.
 */
#include "directory/pop_login.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/strutil.h"

struct node {
	struct node *chain; /* next in the bucket */
	struct node *older, *newer; /* the login order */
	int64_t at;
	size_t key_len;
	char key[]; /* key_len octets and a NUL */
};

struct pop_login {
	pthread_mutex_t lock;
	struct node **bucket;
	size_t mask; /* buckets - 1 */
	struct node *oldest, *newest;
	size_t count, max;
};

struct pop_login *pop_login_new(size_t max)
{
	if (max == 0 || max > SIZE_MAX / 4 / sizeof(struct node *))
		return NULL;
	struct pop_login *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	size_t nb = 16;
	while (nb < 2 * max)
		nb *= 2;
	t->bucket = calloc(nb, sizeof *t->bucket);
	if (!t->bucket || pthread_mutex_init(&t->lock, NULL) != 0) {
		free(t->bucket);
		free(t);
		return NULL;
	}
	t->mask = nb - 1;
	t->max = max;
	return t;
}

void pop_login_free(struct pop_login *t)
{
	if (!t)
		return;
	for (struct node *n = t->oldest, *next; n; n = next) {
		next = n->newer;
		free(n);
	}
	pthread_mutex_destroy(&t->lock);
	free(t->bucket);
	free(t);
}

static struct node **slot_of(struct pop_login *t, const char *key, size_t len)
{
	struct node **s = &t->bucket[str_hash(key, len, 0) & t->mask];
	while (*s && ((*s)->key_len != len || memcmp((*s)->key, key, len) != 0))
		s = &(*s)->chain;
	return s;
}

static void unlink_order(struct pop_login *t, struct node *n)
{
	if (n->older)
		n->older->newer = n->newer;
	else
		t->oldest = n->newer;
	if (n->newer)
		n->newer->older = n->older;
	else
		t->newest = n->older;
	n->older = n->newer = NULL;
}

static void append_order(struct pop_login *t, struct node *n)
{
	n->older = t->newest;
	n->newer = NULL;
	if (t->newest)
		t->newest->newer = n;
	else
		t->oldest = n;
	t->newest = n;
}

/* Forgets the account whose last login is the oldest. */
static void evict_oldest(struct pop_login *t)
{
	struct node *n = t->oldest;
	struct node **s = slot_of(t, n->key, n->key_len);
	*s = n->chain;
	unlink_order(t, n);
	free(n);
	t->count--;
}

int pop_login_note(struct pop_login *t, const char *key, int64_t now)
{
	size_t len = strlen(key);
	if (!t || len == 0 || len > POP_LOGIN_KEY_MAX)
		return -1;
	pthread_mutex_lock(&t->lock);
	struct node **s = slot_of(t, key, len), *n = *s;
	if (n) {
		unlink_order(t, n);
	} else {
		n = malloc(sizeof *n + len + 1);
		if (!n) {
			pthread_mutex_unlock(&t->lock);
			return -1;
		}
		if (t->count == t->max) {
			evict_oldest(t);
			s = slot_of(t, key, len); /* the eviction may have changed this chain */
		}
		memcpy(n->key, key, len + 1);
		n->key_len = len;
		n->chain = NULL;
		*s = n;
		t->count++;
	}
	/* The list stays ordered by the time of the note, even if the clock steps back. */
	n->at = now;
	append_order(t, n);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int pop_login_recent(struct pop_login *t, const char *key, int64_t now, int64_t window)
{
	size_t len = strlen(key);
	if (!t || len == 0 || len > POP_LOGIN_KEY_MAX || window < 0)
		return 0;
	pthread_mutex_lock(&t->lock);
	struct node *n = *slot_of(t, key, len);
	int recent = 0;
	if (n) {
		int64_t d = now - n->at;
		recent = d <= window && d >= -window;
	}
	pthread_mutex_unlock(&t->lock);
	return recent;
}

size_t pop_login_count(struct pop_login *t)
{
	if (!t)
		return 0;
	pthread_mutex_lock(&t->lock);
	size_t c = t->count;
	pthread_mutex_unlock(&t->lock);
	return c;
}
