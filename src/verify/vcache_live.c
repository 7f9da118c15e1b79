/*
 * vcache_live: see vcache_live.h. A chained hash table of entries keyed by
 * "server\0address", whose bucket is the address's alone: every server's entry
 * for one address is in one chain, so finding which of several servers has an
 * address walks one chain (vcache_live_find) and touches no other memory. Each
 * put gets a sequence number, and the background
 * thread records how far its SQLite writes have got, so a reload (which reads
 * what SQLite holds) keeps the entries whose writes are still queued.
 */
#include "verify/vcache_live.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/strutil.h"
#include "util/timeutil.h"
#include "verify/bgwork.h"
#include "verify/vcache.h"

#define VL_ENTRIES_MAX 1000000 /* bound on memory; past it new answers go to SQLite only */
#define VL_SERVER_MAX 128

struct vl_entry {
	struct vl_entry *next;
	uint64_t hash; /* hash_parts(server's, address's) */
	uint64_t ahash; /* the address's: the bucket */
	uint64_t seq; /* 0: loaded from SQLite; else the put's number */
	int64_t expires;
	int status;
	size_t keylen;
	size_t slen; /* the server's length: the address is at key + slen + 1 */
	char key[]; /* server '\0' address '\0' */
};

struct vl_table {
	struct vl_entry **b;
	size_t nb, n;
};

struct vcache_live {
	pthread_mutex_t mu;
	struct vl_table t;
	uint64_t put_seq; /* under mu */
	atomic_ullong written_seq; /* the last put recorded in SQLite */
	struct vcache *vc; /* used at open, then only on the background thread */
	struct bgwork *bg;
	int64_t data_version; /* background thread only */
};

struct vl_write {
	struct vcache_live *vl;
	uint64_t seq;
	int status;
	int64_t expires;
	char server[VL_SERVER_MAX];
	char address[VCACHE_KEY_MAX];
};

/*
 * The hash of (server, address) is made of the two parts' own hashes, so a
 * caller can hash each part once for many lookups (vcache_live_server,
 * vcache_live_addr). Keys are folded already (vcache_fold_key).
 */
static uint64_t hash_parts(uint64_t server_hash, uint64_t addr_hash)
{
	return addr_hash ^ (server_hash * 0x9E3779B97F4A7C15ULL);
}

/* The hashes of key[0..len) ("server\0address"): the whole's, the address's, the server's length. */
static uint64_t hash_key(const char *k, size_t len, uint64_t *ahash, size_t *slen)
{
	size_t sl = strnlen(k, len);
	size_t al = sl < len ? len - sl - 1 : 0;
	*ahash = str_hash(k + len - al, al, 0);
	*slen = sl;
	return hash_parts(str_hash(k, sl, 0), *ahash);
}

/* "server\0address" into out; its length, or 0 when it does not fit or the address is empty. */
static size_t make_key(const char *server, const char *address, char *out, size_t outsz)
{
	size_t sl = strlen(server);
	if (sl + 2 >= outsz)
		return 0;
	memcpy(out, server, sl + 1);
	if (vcache_fold_key(address, out + sl + 1, outsz - sl - 1) < 0)
		return 0;
	return sl + 1 + strlen(out + sl + 1);
}

static int table_init(struct vl_table *t, size_t nb)
{
	t->b = calloc(nb, sizeof *t->b);
	t->nb = nb;
	t->n = 0;
	return t->b ? 0 : -1;
}

static void table_free(struct vl_table *t)
{
	for (size_t i = 0; i < t->nb; i++)
		while (t->b[i]) {
			struct vl_entry *e = t->b[i];
			t->b[i] = e->next;
			free(e);
		}
	free(t->b);
	t->b = NULL;
	t->nb = t->n = 0;
}

static struct vl_entry **table_slot(struct vl_table *t, const char *key, size_t len, uint64_t h,
                                    uint64_t ah)
{
	struct vl_entry **p = &t->b[ah & (t->nb - 1)];
	while (*p && ((*p)->hash != h || (*p)->keylen != len || memcmp((*p)->key, key, len) != 0))
		p = &(*p)->next;
	return p;
}

/* Doubles the buckets when the table is full (a failure only costs speed). */
static void table_grow(struct vl_table *t)
{
	if (t->n < t->nb)
		return;
	struct vl_entry **nb = calloc(t->nb * 2, sizeof *nb);
	if (!nb)
		return;
	for (size_t i = 0; i < t->nb; i++)
		while (t->b[i]) {
			struct vl_entry *e = t->b[i];
			t->b[i] = e->next;
			e->next = nb[e->ahash & (t->nb * 2 - 1)];
			nb[e->ahash & (t->nb * 2 - 1)] = e;
		}
	free(t->b);
	t->b = nb;
	t->nb *= 2;
}

/* Drops expired entries (when the table reaches its bound). */
static void table_purge(struct vl_table *t, int64_t now)
{
	for (size_t i = 0; i < t->nb; i++)
		for (struct vl_entry **p = &t->b[i]; *p;) {
			if ((*p)->expires <= now) {
				struct vl_entry *e = *p;
				*p = e->next;
				free(e);
				t->n--;
			} else {
				p = &(*p)->next;
			}
		}
}

/* Inserts or replaces an entry. Returns 0 or -1 (out of memory, or the bound reached). */
static int table_set(struct vl_table *t, const char *key, size_t len, int status, int64_t expires,
                     uint64_t seq)
{
	uint64_t ah;
	size_t sl;
	uint64_t h = hash_key(key, len, &ah, &sl);
	struct vl_entry **p = table_slot(t, key, len, h, ah);
	if (*p) {
		(*p)->status = status;
		(*p)->expires = expires;
		(*p)->seq = seq;
		return 0;
	}
	if (t->n >= VL_ENTRIES_MAX) {
		table_purge(t, time_wall_s());
		if (t->n >= VL_ENTRIES_MAX)
			return -1;
		p = table_slot(t, key, len, h, ah);
	}
	struct vl_entry *e = malloc(sizeof *e + len + 1);
	if (!e)
		return -1;
	e->next = NULL;
	e->hash = h;
	e->ahash = ah;
	e->slen = sl;
	e->seq = seq;
	e->expires = expires;
	e->status = status;
	e->keylen = len;
	memcpy(e->key, key, len);
	e->key[len] = '\0';
	*p = e;
	t->n++;
	table_grow(t);
	return 0;
}

static int load_one(void *arg, const char *server, const char *address, int status, int64_t expires)
{
	char key[VL_SERVER_MAX + VCACHE_KEY_MAX];
	size_t len = make_key(server, address, key, sizeof key);
	if (len > 0)
		(void)table_set(arg, key, len, status, expires, 0);
	return 0;
}

static int table_load(struct vcache *vc, struct vl_table *t)
{
	if (table_init(t, 1024) < 0)
		return -1;
	if (vcache_list(vc, load_one, t) < 0) {
		table_free(t);
		return -1;
	}
	return 0;
}

struct vcache_live *vcache_live_open(const char *path, struct bgwork *bg, char *err, size_t errlen)
{
	struct vcache_live *vl = calloc(1, sizeof *vl);
	if (!vl) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	vl->bg = bg;
	vl->vc = vcache_open(path, err, errlen);
	if (!vl->vc) {
		free(vl);
		return NULL;
	}
	if (table_load(vl->vc, &vl->t) < 0) {
		snprintf(err, errlen, "%s: cannot read the cache", path);
		vcache_close(vl->vc);
		free(vl);
		return NULL;
	}
	vl->data_version = vcache_data_version(vl->vc);
	pthread_mutex_init(&vl->mu, NULL);
	return vl;
}

void vcache_live_close(struct vcache_live *vl)
{
	if (!vl)
		return;
	table_free(&vl->t);
	vcache_close(vl->vc);
	pthread_mutex_destroy(&vl->mu);
	free(vl);
}

void vcache_live_server_make(struct vcache_live_server *k, const char *name)
{
	k->name = name;
	k->len = strlen(name);
	k->hash = str_hash(name, k->len, 0);
}

int vcache_live_addr_make(struct vcache_live_addr *k, const char *address, size_t len)
{
	if (len == 0 || len >= sizeof k->a)
		return -1;
	ascii_lower_copy(k->a, address, len); /* vcache_fold_key's rule: ASCII A-Z only */
	k->a[len] = '\0';
	k->len = len;
	k->hash = str_hash(k->a, len, 0);
	return 0;
}

/* The entry of (server, address) in t, or NULL; h is hash_parts() of their hashes. */
static const struct vl_entry *table_find(const struct vl_table *t,
                                         const struct vcache_live_server *s,
                                         const struct vcache_live_addr *a, uint64_t h)
{
	size_t len = s->len + 1 + a->len;
	for (const struct vl_entry *e = t->b[a->hash & (t->nb - 1)]; e; e = e->next)
		if (e->hash == h && e->keylen == len && memcmp(e->key, s->name, s->len + 1) == 0 &&
		    memcmp(e->key + s->len + 1, a->a, a->len) == 0)
			return e;
	return NULL;
}

int vcache_live_get_key(struct vcache_live *vl, const struct vcache_live_server *server,
                        const struct vcache_live_addr *addr, int *status)
{
	uint64_t h = hash_parts(server->hash, addr->hash);
	int64_t now = time_wall_s();
	int hit = 0;
	pthread_mutex_lock(&vl->mu);
	const struct vl_entry *e = table_find(&vl->t, server, addr, h);
	if (e && e->expires > now) {
		*status = e->status;
		hit = 1;
	}
	pthread_mutex_unlock(&vl->mu);
	return hit;
}

/* 1 when e is for address a (its hash and octets), else 0. */
static int entry_is_addr(const struct vl_entry *e, const struct vcache_live_addr *a)
{
	return e->ahash == a->hash && e->keylen - e->slen - 1 == a->len &&
	       memcmp(e->key + e->slen + 1, a->a, a->len) == 0;
}

int vcache_live_find(struct vcache_live *vl, const struct vcache_live_server *servers, size_t n,
                     const struct vcache_live_addr *addr, int status, size_t *which)
{
	int64_t now = time_wall_s();
	size_t best = n;
	pthread_mutex_lock(&vl->mu);
	for (const struct vl_entry *e = vl->t.b[addr->hash & (vl->t.nb - 1)]; e; e = e->next) {
		if (e->status != status || e->expires <= now || !entry_is_addr(e, addr))
			continue;
		for (size_t i = 0; i < best; i++)
			if (e->hash == hash_parts(servers[i].hash, addr->hash) &&
			    e->slen == servers[i].len &&
			    memcmp(e->key, servers[i].name, e->slen) == 0) {
				best = i;
				break;
			}
	}
	pthread_mutex_unlock(&vl->mu);
	if (best == n)
		return 0;
	*which = best;
	return 1;
}

int vcache_live_get(struct vcache_live *vl, const char *server, const char *address, int *status)
{
	struct vcache_live_server s;
	struct vcache_live_addr a;
	if (vcache_live_addr_make(&a, address, strlen(address)) < 0)
		return 0;
	vcache_live_server_make(&s, server);
	return vcache_live_get_key(vl, &s, &a, status);
}

/* Background thread: one put into SQLite. */
static void write_job(void *arg)
{
	struct vl_write *w = arg;
	if (vcache_put_until(w->vl->vc, w->server, w->address, w->status, w->expires) < 0)
		log_warning("verification cache: cannot record %s for %s", w->address, w->server);
	atomic_store(&w->vl->written_seq, w->seq);
	free(w);
}

int vcache_live_put(struct vcache_live *vl, const char *server, const char *address, int status,
                    int ttl)
{
	char key[VL_SERVER_MAX + VCACHE_KEY_MAX];
	size_t len = make_key(server, address, key, sizeof key);
	if (status < 3 || status > 5 || ttl <= 0)
		return 0;
	if (len == 0)
		return -1;
	struct vl_write *w = malloc(sizeof *w);
	if (!w)
		return -1;
	w->vl = vl;
	w->status = status;
	w->expires = time_wall_s() + ttl;
	snprintf(w->server, sizeof w->server, "%s", server);
	snprintf(w->address, sizeof w->address, "%s", key + strlen(server) + 1);
	pthread_mutex_lock(&vl->mu);
	w->seq = ++vl->put_seq;
	(void)table_set(&vl->t, key, len, status, w->expires, w->seq);
	pthread_mutex_unlock(&vl->mu);
	if (bgwork_post(vl->bg, write_job, w) < 0) {
		free(w);
		return -1;
	}
	return 0;
}

size_t vcache_live_count(struct vcache_live *vl)
{
	pthread_mutex_lock(&vl->mu);
	size_t n = vl->t.n;
	pthread_mutex_unlock(&vl->mu);
	return n;
}

/* Copies the entries of old whose SQLite writes had not run when fresh was read. */
static void keep_unwritten(struct vl_table *fresh, const struct vl_table *old, uint64_t written)
{
	for (size_t i = 0; i < old->nb; i++)
		for (const struct vl_entry *e = old->b[i]; e; e = e->next)
			if (e->seq > written)
				(void)table_set(fresh, e->key, e->keylen, e->status, e->expires,
				                e->seq);
}

void vcache_live_tick(struct vcache_live *vl)
{
	int64_t v = vcache_data_version(vl->vc);
	if (v < 0 || v == vl->data_version)
		return;
	uint64_t written = atomic_load(&vl->written_seq);
	struct vl_table fresh;
	if (table_load(vl->vc, &fresh) < 0)
		return; /* try again at the next tick */
	vl->data_version = v;
	pthread_mutex_lock(&vl->mu);
	keep_unwritten(&fresh, &vl->t, written);
	struct vl_table old = vl->t;
	vl->t = fresh;
	pthread_mutex_unlock(&vl->mu);
	table_free(&old);
}
