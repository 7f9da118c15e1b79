/*
 * password_check: worker threads for AUTH password hashes. See password_check.h.
 *
 * Jobs wait in a FIFO under one mutex; workers sleep on a condition variable.
 * Results go to a done list under the same mutex, and the first result of a batch
 * writes one byte to a non-blocking self-pipe whose read end the event base
 * watches: the loop thread drains the pipe, takes the whole list and calls back.
 * A pipe rather than event_active() from a worker: the latter needs libevent's
 * locking (evthread) enabled on the base, a pipe needs nothing shared.
 */
#include "directory/password_check.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "util/strutil.h"
#include "util/timeutil.h"

#include "directory/directory.h"
#include "directory/password.h"

#define PASSWORD_CHECK_THREADS_MAX 64
/* Slots of the success cache (a power of two; a slot is overwritten, never grown). */
#define PC_CACHE_SLOTS 4096
#define PC_MAC_LEN 32

/*
 * One remembered success (Dovecot's auth_cache): the account, and an HMAC under a
 * key made at start-up over the stored hash and the password. A later check of
 * the same account with the same password, while the directory still holds the
 * same hash, is answered without hashing; a changed password (or hash), a wrong
 * one, an unknown account all hash as before.
 */
struct pc_cached {
	char account[MAILADDR_MAX + 1];
	unsigned char mac[PC_MAC_LEN];
	int64_t expires; /* 0: empty */
};

struct pc_job {
	struct pc_job *next;
	uint64_t id;
	password_check_done_fn done; /* NULL: the pool's */
	void *done_arg;
	char identity[MAILADDR_MAX + 1];
	char password[PASSWORD_MAX + 1];
};

struct pc_done {
	struct pc_done *next;
	password_check_done_fn done; /* NULL: the pool's */
	void *done_arg;
	struct password_check_result r;
};

struct password_check {
	char *path;
	char dummy[PASSWORD_HASH_MAX];
	password_check_done_fn done;
	void *arg;
	struct event *ev;
	int pipe_rd, pipe_wr;
	pthread_t threads[PASSWORD_CHECK_THREADS_MAX];
	int nthreads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pc_job *head, **tail; /* queued jobs */
	size_t pending; /* queued or being checked */
	size_t max_pending;
	struct pc_done *results; /* LIFO; reversed when delivered */
	int signalled; /* a byte is in the pipe */
	int stop;
	uint64_t hashes;
	/* the success cache (password_check_set_cache); under mu */
	int cache_ttl; /* seconds; 0: off */
	unsigned char cache_key[32];
	struct pc_cached *cache;
	uint64_t cache_hits;
};

static void job_free(struct pc_job *j)
{
	explicit_bzero(j, sizeof *j);
	free(j);
}

/* Collects alias keys into the result until it is full. */
static int add_alias(void *arg, const char *alias)
{
	struct password_check_result *r = arg;
	size_t used = 0;
	if (r->n_addresses > 0) {
		const char *last = r->addresses[r->n_addresses - 1];
		used = (size_t)(last - r->text) + strlen(last) + 1;
	}
	size_t n = strlen(alias);
	if (r->n_addresses >= PASSWORD_CHECK_ADDRS_MAX || n > MAILADDR_MAX ||
	    used + n + 1 > sizeof r->text)
		return 1;
	memcpy(r->text + used, alias, n + 1);
	r->addresses[r->n_addresses++] = r->text + used;
	return 0;
}

/* The account key of identity, or "" when it is no mailbox (checked against the dummy). */
static void identity_key(const char *identity, char *key, size_t keysz)
{
	struct mailaddr a;
	key[0] = '\0';
	if (mailaddr_parse_exact(identity, strlen(identity), &a) != MAILADDR_OK ||
	    mailaddr_key(&a, key, keysz) < 0)
		key[0] = '\0';
}

/* The success cache's MAC of (stored hash, password) for account key. */
static void cache_mac(const struct password_check *pc, const char *key, const char *hash,
                      const char *password, unsigned char mac[PC_MAC_LEN])
{
	unsigned char buf[MAILADDR_MAX + 1 + PASSWORD_HASH_MAX + 1 + PASSWORD_MAX + 1];
	size_t kl = strlen(key), hl = strlen(hash), pl = strlen(password);
	unsigned int len = PC_MAC_LEN;
	if (kl > MAILADDR_MAX || hl >= PASSWORD_HASH_MAX || pl > PASSWORD_MAX) {
		memset(mac, 0xff, PC_MAC_LEN); /* never stored: a miss */
		return;
	}
	memcpy(buf, key, kl + 1);
	memcpy(buf + kl + 1, hash, hl + 1);
	memcpy(buf + kl + 1 + hl + 1, password, pl);
	if (!HMAC(EVP_sha256(), pc->cache_key, sizeof pc->cache_key, buf, kl + hl + 2 + pl, mac,
	          &len))
		memset(mac, 0xff, PC_MAC_LEN);
	explicit_bzero(buf, sizeof buf);
}

static size_t cache_slot(const char *key)
{
	return (size_t)(str_hash(key, strlen(key), 0) & (PC_CACHE_SLOTS - 1));
}

/* 1 when (key, hash, password) succeeded within the cache's TTL (no hash needed). */
static int cache_hit(struct password_check *pc, const char *key, const char *hash,
                     const char *password)
{
	unsigned char mac[PC_MAC_LEN];
	int hit = 0;
	pthread_mutex_lock(&pc->mu);
	int on = pc->cache != NULL && pc->cache_ttl > 0;
	pthread_mutex_unlock(&pc->mu);
	if (!on || !key[0])
		return 0;
	cache_mac(pc, key, hash, password, mac);
	pthread_mutex_lock(&pc->mu);
	const struct pc_cached *e = &pc->cache[cache_slot(key)];
	if (e->expires > time_wall_s() && strcmp(e->account, key) == 0 &&
	    CRYPTO_memcmp(e->mac, mac, PC_MAC_LEN) == 0) {
		hit = 1;
		pc->cache_hits++;
	}
	pthread_mutex_unlock(&pc->mu);
	explicit_bzero(mac, sizeof mac);
	return hit;
}

static void cache_put(struct password_check *pc, const char *key, const char *hash,
                      const char *password)
{
	unsigned char mac[PC_MAC_LEN];
	if (!key[0] || strlen(key) > MAILADDR_MAX)
		return;
	cache_mac(pc, key, hash, password, mac);
	pthread_mutex_lock(&pc->mu);
	if (pc->cache != NULL && pc->cache_ttl > 0) {
		struct pc_cached *e = &pc->cache[cache_slot(key)];
		memcpy(e->account, key, strlen(key) + 1);
		memcpy(e->mac, mac, PC_MAC_LEN);
		e->expires = time_wall_s() + pc->cache_ttl;
	}
	pthread_mutex_unlock(&pc->mu);
	explicit_bzero(mac, sizeof mac);
}

/* One check: exactly one hash whatever the account's state (see the header). */
static void check_one(struct password_check *pc, struct directory **dir, const struct pc_job *j,
                      struct password_check_result *r)
{
	char key[MAILADDR_MAX + 1], hash[PASSWORD_HASH_MAX];
	enum account_state state = ACCOUNT_ACTIVE;
	enum directory_result dr = DIRECTORY_NOTFOUND;
	hash[0] = '\0';
	identity_key(j->identity, key, sizeof key);
	if (!*dir) {
		char err[256];
		*dir = directory_open(pc->path, 1, err, sizeof err);
	}
	if (!*dir)
		dr = DIRECTORY_TEMPFAIL;
	else if (key[0])
		dr = directory_account_secret(*dir, key, hash, sizeof hash, &state);
	/* password_verify() hashes only a crypt setting ("$id$..."); anything else (no
	 * password, a locked "!" or "*" entry) would return at once: use the dummy. */
	int real = dr == DIRECTORY_OK && hash[0] == '$';
	const char *use = real ? hash : pc->dummy;
	int cached = real && state != ACCOUNT_DISABLED && cache_hit(pc, key, hash, j->password);
	int match = cached || password_verify(j->password, use);
	if (!cached && use[0] == '$') {
		pthread_mutex_lock(&pc->mu);
		pc->hashes++;
		pthread_mutex_unlock(&pc->mu);
	}
	if (real && match && !cached && state != ACCOUNT_DISABLED)
		cache_put(pc, key, hash, j->password);
	explicit_bzero(hash, sizeof hash);
	if (dr == DIRECTORY_TEMPFAIL || dr == DIRECTORY_ERROR) {
		r->status = PASSWORD_CHECK_TEMPFAIL;
		directory_close(*dir); /* reopened for the next job */
		*dir = NULL;
		return;
	}
	r->status = real && match && state != ACCOUNT_DISABLED ? PASSWORD_CHECK_OK
	                                                       : PASSWORD_CHECK_FAIL;
	if (r->status != PASSWORD_CHECK_OK)
		return;
	memcpy(r->account, key, strlen(key) + 1);
	if (directory_aliases_of(*dir, key, add_alias, r) != DIRECTORY_OK)
		r->n_addresses = 0; /* the account alone still counts as its own */
}

static void post(struct password_check *pc, struct pc_done *d)
{
	pthread_mutex_lock(&pc->mu);
	d->next = pc->results;
	pc->results = d;
	int wake = !pc->signalled;
	pc->signalled = 1;
	pthread_mutex_unlock(&pc->mu);
	if (wake) {
		char b = 1;
		/* The pipe is empty when signalled is 0, so this write cannot block or fail
		 * for want of room; EINTR is retried. */
		while (write(pc->pipe_wr, &b, 1) < 0 && errno == EINTR)
			;
	}
}

static void *worker(void *arg)
{
	struct password_check *pc = arg;
	struct directory *dir = NULL;
	for (;;) {
		pthread_mutex_lock(&pc->mu);
		while (!pc->stop && !pc->head)
			pthread_cond_wait(&pc->cv, &pc->mu);
		if (pc->stop) {
			pthread_mutex_unlock(&pc->mu);
			break;
		}
		struct pc_job *j = pc->head;
		pc->head = j->next;
		if (!pc->head)
			pc->tail = &pc->head;
		pthread_mutex_unlock(&pc->mu);

		struct pc_done *d = calloc(1, sizeof *d);
		if (d) {
			d->r.id = j->id;
			d->done = j->done;
			d->done_arg = j->done_arg;
			d->r.status = PASSWORD_CHECK_TEMPFAIL;
			check_one(pc, &dir, j, &d->r);
		}
		job_free(j);
		if (d)
			post(pc, d);
		else {
			pthread_mutex_lock(&pc->mu);
			pc->pending--; /* lost to memory: the caller's request times out */
			pthread_mutex_unlock(&pc->mu);
		}
	}
	directory_close(dir);
	return NULL;
}

/* On the loop thread: drain the pipe, deliver every result in submission order. */
static void on_results(evutil_socket_t fd, short what, void *arg)
{
	struct password_check *pc = arg;
	char buf[64];
	while (read(fd, buf, sizeof buf) > 0)
		;
	pthread_mutex_lock(&pc->mu);
	struct pc_done *list = pc->results;
	pc->results = NULL;
	pc->signalled = 0;
	pthread_mutex_unlock(&pc->mu);
	struct pc_done *rev = NULL;
	while (list) {
		struct pc_done *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct pc_done *n = rev->next;
		pthread_mutex_lock(&pc->mu);
		pc->pending--;
		pthread_mutex_unlock(&pc->mu);
		if (rev->done)
			rev->done(rev->done_arg, &rev->r);
		else
			pc->done(pc->arg, &rev->r);
		free(rev);
		rev = n;
	}
}

/* A dummy hash of a random password: same scheme and cost as every stored one. */
static int make_dummy(struct password_check *pc)
{
	char pw[33];
	FILE *f = fopen("/dev/urandom", "rb");
	unsigned char raw[16];
	int ok = f && fread(raw, 1, sizeof raw, f) == sizeof raw;
	if (f)
		fclose(f);
	if (!ok)
		return -1;
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(pw + 2 * i, 3, "%02x", raw[i]);
	int rc = password_hash(pw, pc->dummy, sizeof pc->dummy);
	explicit_bzero(pw, sizeof pw);
	explicit_bzero(raw, sizeof raw);
	return rc;
}

static int start(struct password_check *pc, struct event_base *base, int threads, char *err,
                 size_t errlen)
{
	int fds[2];
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	pc->pipe_rd = fds[0];
	pc->pipe_wr = fds[1];
	pc->ev = event_new(base, pc->pipe_rd, EV_READ | EV_PERSIST, on_results, pc);
	if (!pc->ev || event_add(pc->ev, NULL) != 0) {
		snprintf(err, errlen, "cannot watch the result pipe");
		return -1;
	}
	if (make_dummy(pc) != 0) {
		snprintf(err, errlen, "cannot make the dummy password hash");
		return -1;
	}
	for (int i = 0; i < threads; i++) {
		int rc = pthread_create(&pc->threads[i], NULL, worker, pc);
		if (rc != 0) {
			snprintf(err, errlen, "pthread_create: %s", strerror(rc));
			return -1;
		}
		pc->nthreads++;
	}
	return 0;
}

struct password_check *password_check_new(struct event_base *base, const char *directory_path,
                                          int threads, size_t max_pending,
                                          password_check_done_fn done, void *arg, char *err,
                                          size_t errlen)
{
	if (!base || !directory_path || !done || threads < 1 ||
	    threads > PASSWORD_CHECK_THREADS_MAX || max_pending < 1) {
		snprintf(err, errlen, "password_check: bad arguments");
		return NULL;
	}
	struct password_check *pc = calloc(1, sizeof *pc);
	if (!pc || !(pc->path = strdup(directory_path))) {
		free(pc);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pc->done = done;
	pc->arg = arg;
	pc->max_pending = max_pending;
	pc->tail = &pc->head;
	pc->pipe_rd = pc->pipe_wr = -1;
	pthread_mutex_init(&pc->mu, NULL);
	pthread_cond_init(&pc->cv, NULL);
	if (start(pc, base, threads, err, errlen) != 0) {
		password_check_free(pc);
		return NULL;
	}
	return pc;
}

int password_check_submit(struct password_check *pc, uint64_t id, const char *identity,
                          const char *password, size_t len)
{
	return password_check_submit_to(pc, id, identity, password, len, NULL, NULL);
}

int password_check_submit_to(struct password_check *pc, uint64_t id, const char *identity,
                             const char *password, size_t len, password_check_done_fn done,
                             void *arg)
{
	size_t ilen = strlen(identity);
	if (ilen > MAILADDR_MAX || len > PASSWORD_MAX || memchr(password, 0, len))
		return -1;
	struct pc_job *j = calloc(1, sizeof *j);
	if (!j)
		return -1;
	j->id = id;
	j->done = done;
	j->done_arg = arg;
	memcpy(j->identity, identity, ilen + 1);
	memcpy(j->password, password, len);
	j->password[len] = '\0';
	pthread_mutex_lock(&pc->mu);
	if (pc->pending >= pc->max_pending) {
		pthread_mutex_unlock(&pc->mu);
		job_free(j);
		return -1;
	}
	pc->pending++;
	*pc->tail = j;
	pc->tail = &j->next;
	pthread_cond_signal(&pc->cv);
	pthread_mutex_unlock(&pc->mu);
	return 0;
}

int password_check_set_cache(struct password_check *pc, int ttl)
{
	pthread_mutex_lock(&pc->mu);
	int r = 0;
	if (ttl > 0 && pc->cache == NULL) {
		pc->cache = calloc(PC_CACHE_SLOTS, sizeof *pc->cache);
		if (!pc->cache || RAND_bytes(pc->cache_key, sizeof pc->cache_key) != 1) {
			free(pc->cache);
			pc->cache = NULL;
			r = -1;
		}
	} else if (ttl <= 0 && pc->cache != NULL) {
		explicit_bzero(pc->cache, PC_CACHE_SLOTS * sizeof *pc->cache);
	}
	pc->cache_ttl = r == 0 && ttl > 0 ? ttl : 0;
	pthread_mutex_unlock(&pc->mu);
	return r;
}

uint64_t password_check_cache_hits(struct password_check *pc)
{
	pthread_mutex_lock(&pc->mu);
	uint64_t n = pc->cache_hits;
	pthread_mutex_unlock(&pc->mu);
	return n;
}

uint64_t password_check_hashes(struct password_check *pc)
{
	pthread_mutex_lock(&pc->mu);
	uint64_t n = pc->hashes;
	pthread_mutex_unlock(&pc->mu);
	return n;
}

void password_check_free(struct password_check *pc)
{
	if (!pc)
		return;
	pthread_mutex_lock(&pc->mu);
	pc->stop = 1;
	pthread_cond_broadcast(&pc->cv);
	pthread_mutex_unlock(&pc->mu);
	for (int i = 0; i < pc->nthreads; i++)
		pthread_join(pc->threads[i], NULL);
	while (pc->head) {
		struct pc_job *n = pc->head->next;
		job_free(pc->head);
		pc->head = n;
	}
	while (pc->results) {
		struct pc_done *n = pc->results->next;
		explicit_bzero(pc->results, sizeof *pc->results);
		free(pc->results);
		pc->results = n;
	}
	if (pc->ev)
		event_free(pc->ev);
	if (pc->pipe_rd >= 0)
		close(pc->pipe_rd);
	if (pc->pipe_wr >= 0)
		close(pc->pipe_wr);
	pthread_cond_destroy(&pc->cv);
	pthread_mutex_destroy(&pc->mu);
	explicit_bzero(pc->dummy, sizeof pc->dummy);
	explicit_bzero(pc->cache_key, sizeof pc->cache_key);
	if (pc->cache)
		explicit_bzero(pc->cache, PC_CACHE_SLOTS * sizeof *pc->cache);
	free(pc->cache);
	free(pc->path);
	free(pc);
}
