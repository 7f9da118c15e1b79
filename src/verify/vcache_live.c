/*
 * vcache_live: see vcache_live.h. A chained hash table whose bucket is the
 * address's hash alone: every server's entry for one address is in one chain,
 * so finding which of several servers has an address walks one chain
 * (vcache_live_find). Servers are interned (vl->names: the few Minger servers
 * this process has asked or read from SQLite), and an entry holds its server's
 * number, not its name: an entry is one cache line (64-byte aligned) for an
 * address of up to 26 octets, and matching it touches nothing else. Each put
 * gets a sequence number, and the background thread records how far its SQLite
 * writes have got, so a reload (which reads what SQLite holds) keeps the
 * entries whose writes are still queued.
 */
#include "verify/vcache_live.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/strutil.h"
#include "util/timeutil.h"
#include "verify/bgwork.h"
#include "verify/vcache.h"

#define VL_ENTRIES_MAX 1000000 /* bound on memory; past it new answers go to SQLite only */
#define VL_SERVER_MAX 128 /* a server name's octets, with its NUL */
#define VL_NAMES_MAX 4096 /* distinct server names kept in memory */
#define VL_LINE 64 /* entries are allocated in whole cache lines */

struct vl_entry {
	struct vl_entry *next;
	uint64_t ahash; /* the address's hash: the bucket */
	uint64_t seq; /* 0: loaded from SQLite; else the put's number */
	int64_t expires;
	uint16_t server; /* its number in vl->names */
	uint16_t alen;
	int8_t status;
	char addr[]; /* the address folded (vcache_fold_key), NUL-terminated */
};

struct vl_table {
	struct vl_entry **b;
	size_t nb, n;
};

/* The interned server names: a name's number never changes while the cache is open. */
struct vl_names {
	char **v;
	size_t n, cap;
};

struct vcache_live {
	pthread_mutex_t mu; /* the table, the names and put_seq */
	struct vl_table t;
	struct vl_names names;
	uint64_t put_seq;
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

/* ---- server names (under mu) ---- */

/* The number of name, or VCACHE_LIVE_NO_SERVER when it was never interned. */
static unsigned names_find(const struct vl_names *ns, const char *name)
{
	for (size_t i = 0; i < ns->n; i++)
		if (strcmp(ns->v[i], name) == 0)
			return (unsigned)i;
	return VCACHE_LIVE_NO_SERVER;
}

/* The number of name, interned if new; VCACHE_LIVE_NO_SERVER when too long, too many or no memory. */
static unsigned names_intern(struct vl_names *ns, const char *name)
{
	unsigned id = names_find(ns, name);
	if (id != VCACHE_LIVE_NO_SERVER || strlen(name) >= VL_SERVER_MAX || ns->n >= VL_NAMES_MAX)
		return id;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 16;
		char **v = realloc(ns->v, cap * sizeof *v);
		if (!v)
			return VCACHE_LIVE_NO_SERVER;
		ns->v = v;
		ns->cap = cap;
	}
	if (!(ns->v[ns->n] = strdup(name)))
		return VCACHE_LIVE_NO_SERVER;
	return (unsigned)ns->n++;
}

static void names_free(struct vl_names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = ns->cap = 0;
}

/* ---- the table ---- */

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

/* 1 when e is for address a (its hash and octets), else 0. */
static int entry_is_addr(const struct vl_entry *e, const struct vcache_live_addr *a)
{
	return e->ahash == a->hash && e->alen == a->len && memcmp(e->addr, a->a, a->len) == 0;
}

/* Where the entry of (server, a) is, or the chain's end to append it at. */
static struct vl_entry **table_slot(struct vl_table *t, unsigned server,
                                    const struct vcache_live_addr *a)
{
	struct vl_entry **p = &t->b[a->hash & (t->nb - 1)];
	while (*p && ((*p)->server != server || !entry_is_addr(*p, a)))
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

/* A new entry in whole cache lines, line-aligned, or NULL. */
static struct vl_entry *entry_new(const struct vcache_live_addr *a)
{
	size_t size = offsetof(struct vl_entry, addr) + a->len + 1;
	size = (size + VL_LINE - 1) / VL_LINE * VL_LINE;
	struct vl_entry *e = aligned_alloc(VL_LINE, size);
	if (!e)
		return NULL;
	e->next = NULL;
	e->ahash = a->hash;
	e->alen = (uint16_t)a->len;
	memcpy(e->addr, a->a, a->len + 1);
	return e;
}

/* Inserts or replaces an entry. Returns 0 or -1 (out of memory, or the bound reached). */
static int table_set(struct vl_table *t, unsigned server, const struct vcache_live_addr *a,
                     int status, int64_t expires, uint64_t seq)
{
	if (server == VCACHE_LIVE_NO_SERVER)
		return -1;
	struct vl_entry **p = table_slot(t, server, a);
	if (!*p) {
		if (t->n >= VL_ENTRIES_MAX) {
			table_purge(t, time_wall_s());
			if (t->n >= VL_ENTRIES_MAX)
				return -1;
			p = table_slot(t, server, a);
		}
		if (!(*p = entry_new(a)))
			return -1;
		(*p)->server = (uint16_t)server;
		t->n++;
	}
	struct vl_entry *e = *p;
	e->status = (int8_t)status;
	e->expires = expires;
	e->seq = seq;
	table_grow(t);
	return 0;
}

/* ---- loading from SQLite ---- */

struct vl_load {
	struct vcache_live *vl;
	struct vl_table *t;
	char last[VL_SERVER_MAX]; /* rows come sorted by address: the names repeat */
	unsigned last_id;
};

/* Folds and hashes a NUL-terminated address into k: 0, or -1 (empty or too long). */
static int addr_key_of(struct vcache_live_addr *k, const char *address)
{
	return vcache_live_addr_make(k, address, strlen(address));
}

static int load_one(void *arg, const char *server, const char *address, int status, int64_t expires)
{
	struct vl_load *ld = arg;
	struct vcache_live_addr a;
	if (addr_key_of(&a, address) < 0)
		return 0;
	if (ld->last_id == VCACHE_LIVE_NO_SERVER || strcmp(ld->last, server) != 0) {
		pthread_mutex_lock(&ld->vl->mu);
		ld->last_id = names_intern(&ld->vl->names, server);
		pthread_mutex_unlock(&ld->vl->mu);
		snprintf(ld->last, sizeof ld->last, "%s", server);
	}
	(void)table_set(ld->t, ld->last_id, &a, status, expires, 0);
	return 0;
}

static int table_load(struct vcache_live *vl, struct vl_table *t)
{
	if (table_init(t, 1024) < 0)
		return -1;
	struct vl_load ld = {.vl = vl, .t = t, .last_id = VCACHE_LIVE_NO_SERVER};
	if (vcache_list(vl->vc, load_one, &ld) < 0) {
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
	pthread_mutex_init(&vl->mu, NULL);
	vl->bg = bg;
	vl->vc = vcache_open(path, err, errlen);
	if (!vl->vc) {
		pthread_mutex_destroy(&vl->mu);
		free(vl);
		return NULL;
	}
	if (table_load(vl, &vl->t) < 0) {
		snprintf(err, errlen, "%s: cannot read the cache", path);
		vcache_close(vl->vc);
		names_free(&vl->names);
		pthread_mutex_destroy(&vl->mu);
		free(vl);
		return NULL;
	}
	vl->data_version = vcache_data_version(vl->vc);
	return vl;
}

void vcache_live_close(struct vcache_live *vl)
{
	if (!vl)
		return;
	table_free(&vl->t);
	names_free(&vl->names);
	vcache_close(vl->vc);
	pthread_mutex_destroy(&vl->mu);
	free(vl);
}

/* ---- lookups ---- */

int vcache_live_server_make(struct vcache_live *vl, struct vcache_live_server *k, const char *name)
{
	pthread_mutex_lock(&vl->mu);
	k->id = names_intern(&vl->names, name);
	pthread_mutex_unlock(&vl->mu);
	return k->id == VCACHE_LIVE_NO_SERVER ? -1 : 0;
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

int vcache_live_get_key(struct vcache_live *vl, const struct vcache_live_server *server,
                        const struct vcache_live_addr *addr, int *status)
{
	int64_t now = time_wall_s();
	int hit = 0;
	pthread_mutex_lock(&vl->mu);
	const struct vl_entry *e = *table_slot(&vl->t, server->id, addr);
	if (e && e->expires > now) {
		*status = e->status;
		hit = 1;
	}
	pthread_mutex_unlock(&vl->mu);
	return hit;
}

int vcache_live_find(struct vcache_live *vl, const struct vcache_live_server *servers, size_t n,
                     const struct vcache_live_addr *addr, int status, size_t *which)
{
	int64_t now = time_wall_s();
	size_t best = n;
	pthread_mutex_lock(&vl->mu);
	for (const struct vl_entry *e = vl->t.b[addr->hash & (vl->t.nb - 1)]; e && best > 0;
	     e = e->next) {
		if (e->status != status || e->expires <= now || !entry_is_addr(e, addr))
			continue;
		for (size_t i = 0; i < best; i++)
			if (servers[i].id == e->server) {
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
	if (addr_key_of(&a, address) < 0)
		return 0;
	pthread_mutex_lock(&vl->mu);
	s.id = names_find(&vl->names, server); /* a name never interned has no entry */
	pthread_mutex_unlock(&vl->mu);
	return s.id != VCACHE_LIVE_NO_SERVER && vcache_live_get_key(vl, &s, &a, status);
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
	struct vcache_live_addr a;
	if (status < 3 || status > 5 || ttl <= 0)
		return 0;
	if (addr_key_of(&a, address) < 0 || strlen(server) >= VL_SERVER_MAX)
		return -1;
	struct vl_write *w = malloc(sizeof *w);
	if (!w)
		return -1;
	w->vl = vl;
	w->status = status;
	w->expires = time_wall_s() + ttl;
	memcpy(w->server, server, strlen(server) + 1);
	memcpy(w->address, a.a, a.len + 1);
	pthread_mutex_lock(&vl->mu);
	w->seq = ++vl->put_seq;
	/* kept in memory unless a bound is reached: SQLite still gets it */
	(void)table_set(&vl->t, names_intern(&vl->names, server), &a, status, w->expires, w->seq);
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
			if (e->seq > written) {
				struct vcache_live_addr a = {.hash = e->ahash, .len = e->alen};
				memcpy(a.a, e->addr, e->alen + 1u);
				(void)table_set(fresh, e->server, &a, e->status, e->expires,
				                e->seq);
			}
}

void vcache_live_tick(struct vcache_live *vl)
{
	int64_t v = vcache_data_version(vl->vc);
	if (v < 0 || v == vl->data_version)
		return;
	uint64_t written = atomic_load(&vl->written_seq);
	struct vl_table fresh;
	if (table_load(vl, &fresh) < 0)
		return; /* try again at the next tick */
	vl->data_version = v;
	pthread_mutex_lock(&vl->mu);
	keep_unwritten(&fresh, &vl->t, written);
	struct vl_table old = vl->t;
	vl->t = fresh;
	pthread_mutex_unlock(&vl->mu);
	table_free(&old);
}
