/*
 * mailbox_index: the in-memory directory index and mailbox_lookup(). See
 * mailbox_index.h and lookup.h for the contracts.
 *
 * Layout. One open-addressing hash table (linear probing, power-of-two size, load
 * kept <= 0.5) of 8-byte slots {arena offset, upper 32 bits of the key's str_hash}; the hash bits
 * reject almost every non-matching slot without touching the arena. Entries live in
 * one growing byte arena, back to back, with no per-entry allocation:
 *
 *   [kind 'A'|'L'|'M'][state][key length: 2 octets LE][key][NUL]
 *   alias, list:  [target count: 4 octets LE] then per target
 *                 [flags: 1 = local domain, 2 = owner][length: 2 octets LE][target][NUL]
 *
 * A list ('M', a mailing list) keeps its flags in the state octet (1 =
 * members-only) and its owner as its first target, flagged 2; its members follow.
 * A lookup of a list costs what an account's does; only a members-only list walks
 * its members, to find the sender.
 *
 * Offsets 0 and 1 of the arena are never entries, so a slot offset of 0 means empty
 * and 1 means deleted (tombstone). An entry that is replaced stays in the arena as
 * garbage; when garbage outgrows the live data the index is rebuilt by a rescan.
 *
 * Concurrency. Readers take the rwlock shared. mailbox_index_refresh() reads the
 * directory without the lock (the old table keeps serving), then takes it exclusive
 * only to apply what it read or to swap in a rebuilt table.
 */
#include "verify/mailbox_index.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "directory/directory.h"
#include "proto/mailaddr.h"
#include "util/strutil.h"
#include "verify/lookup.h"

#define MBX_EMPTY 0u
#define MBX_TOMB 1u
#define MBX_MIN_SLOTS 1024u
#define MBX_MAX_DEPTH 8 /* alias levels followed (lookup.h) */
#define MBX_MAX_VISITS 1024 /* alias targets examined per lookup, at most */
#define MBX_HDR 4 /* kind, state, key length */
#define MBX_FLAG_LOCAL 1u
#define MBX_FLAG_OWNER 2u /* a list's first target: its owner, not a member */
#define MBX_LIST_MEMBERS_ONLY 1u /* the state octet of a list entry */
/* More changed addresses than this in one refresh: rescan instead of re-reading each. */
#define MBX_CHANGES_MAX 4096u

struct mbx_slot {
	uint32_t off;
	uint32_t tag;
};

struct mbx_buf {
	unsigned char *p;
	size_t len, cap;
};

struct mbx_table {
	struct mbx_slot *slots;
	size_t mask; /* slot count - 1 */
	size_t live; /* entries reachable from the table */
	size_t tombs;
	struct mbx_buf arena;
	size_t garbage; /* arena bytes of replaced or deleted entries */
};

struct mailbox_index {
	pthread_rwlock_t lock;
	struct mbx_table t;
	int failed; /* the last refresh failed: answer TEMPFAIL */
	int64_t seq; /* change-log position the table reflects */
	struct directory *dir;
	char **domains;
	size_t n_domains;
};

/*
 * With a million accounts the slot array and the arena are tens of MiB and every
 * lookup touches random places in them: on 4 KiB pages nearly every lookup also
 * misses the TLB. Ask for transparent huge pages on the 2 MiB-aligned part of
 * large buffers (a hint: the kernel may refuse; results never depend on it).
 */
static void advise_huge(void *p, size_t len)
{
	const uintptr_t huge = 2u << 20;
	if (len < 2 * huge)
		return;
	uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1);
	uintptr_t end = ((uintptr_t)p + len) & ~(huge - 1);
	if (end > start)
		madvise((void *)start, end - start, MADV_HUGEPAGE);
}

static size_t get16(const unsigned char *p)
{
	return (size_t)p[0] | (size_t)p[1] << 8;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

/* Appends n bytes; returns the offset written at, or -1 (out of memory or past 4 GiB). */
static long long buf_append(struct mbx_buf *b, const void *data, size_t n)
{
	if (b->len + n > UINT32_MAX)
		return -1;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		unsigned char *p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
		advise_huge(p, cap);
	}
	size_t at = b->len;
	if (data)
		memcpy(b->p + at, data, n);
	b->len += n;
	return (long long)at;
}

/* Appends an entry header and key; returns its offset or -1. */
static long long entry_start(struct mbx_buf *b, char kind, enum account_state state,
                             const char *key, size_t klen)
{
	unsigned char hdr[MBX_HDR] = {(unsigned char)kind, (unsigned char)state,
	                              (unsigned char)klen, (unsigned char)(klen >> 8)};
	long long off = buf_append(b, hdr, sizeof hdr);
	if (off < 0 || buf_append(b, key, klen) < 0 || buf_append(b, "", 1) < 0)
		return -1;
	if ((kind == 'L' || kind == 'M') && buf_append(b, "\0\0\0\0", 4) < 0)
		return -1;
	return off;
}

/* Appends a target to the alias entry at `off`, which must be the last entry. */
static int entry_add_target(struct mbx_buf *b, long long off, const char *target, size_t tlen,
                            unsigned flags)
{
	unsigned char hdr[3] = {(unsigned char)flags, (unsigned char)tlen,
	                        (unsigned char)(tlen >> 8)};
	if (buf_append(b, hdr, sizeof hdr) < 0 || buf_append(b, target, tlen) < 0 ||
	    buf_append(b, "", 1) < 0)
		return -1;
	unsigned char *e = b->p + off;
	unsigned char *cnt = e + MBX_HDR + get16(e + 2) + 1;
	put32(cnt, get32(cnt) + 1);
	return 0;
}

/* Size in bytes of the entry at e (for garbage accounting and copying). */
static size_t entry_size(const unsigned char *e)
{
	size_t n = MBX_HDR + get16(e + 2) + 1;
	if (e[0] != 'L' && e[0] != 'M')
		return n;
	uint32_t cnt = get32(e + n);
	n += 4;
	for (uint32_t i = 0; i < cnt; i++)
		n += 3 + get16(e + n + 1) + 1;
	return n;
}

/* Does slot s hold key (with hash h)? */
static int slot_matches(const struct mbx_table *t, const struct mbx_slot *s, const char *key,
                        size_t klen, uint64_t h)
{
	if (s->off <= MBX_TOMB || s->tag != (uint32_t)(h >> 32))
		return 0;
	const unsigned char *e = t->arena.p + s->off;
	return get16(e + 2) == klen && memcmp(e + MBX_HDR, key, klen) == 0;
}

/* The entry for key, or NULL. */
static const unsigned char *table_find_hashed(const struct mbx_table *t, const char *key,
                                              size_t klen, uint64_t h)
{
	if (!t->slots)
		return NULL;
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		const struct mbx_slot *s = &t->slots[i];
		if (s->off == MBX_EMPTY)
			return NULL;
		if (slot_matches(t, s, key, klen, h))
			return t->arena.p + s->off;
	}
}

/* The entry for key, or NULL. */
static const unsigned char *table_find(const struct mbx_table *t, const char *key, size_t klen)
{
	return table_find_hashed(t, key, klen, str_hash(key, klen, 0));
}

/* Rebuilds the slot array with room for `want` entries at load <= 0.5. */
static int table_resize(struct mbx_table *t, size_t want)
{
	size_t cap = MBX_MIN_SLOTS;
	while (cap < want * 2)
		cap *= 2;
	struct mbx_slot *slots = calloc(cap, sizeof *slots);
	if (!slots)
		return -1;
	advise_huge(slots, cap * sizeof *slots);
	for (size_t i = 0; t->slots && i <= t->mask; i++) {
		struct mbx_slot s = t->slots[i];
		if (s.off <= MBX_TOMB)
			continue;
		const unsigned char *e = t->arena.p + s.off;
		size_t j = str_hash((const char *)e + MBX_HDR, get16(e + 2), 0) & (cap - 1);
		while (slots[j].off != MBX_EMPTY)
			j = (j + 1) & (cap - 1);
		slots[j] = s;
	}
	free(t->slots);
	t->slots = slots;
	t->mask = cap - 1;
	t->tombs = 0;
	return 0;
}

/* Points key at the entry at `off` (replacing any entry it had). Returns 0 or -1. */
static int table_put(struct mbx_table *t, const char *key, size_t klen, uint32_t off)
{
	if (!t->slots || (t->live + t->tombs + 1) * 2 > t->mask + 1) {
		if (table_resize(t, t->live + 1) < 0)
			return -1;
	}
	uint64_t h = str_hash(key, klen, 0);
	size_t free_at = SIZE_MAX;
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct mbx_slot *s = &t->slots[i];
		if (slot_matches(t, s, key, klen, h)) {
			t->garbage += entry_size(t->arena.p + s->off);
			s->off = off;
			return 0;
		}
		if (s->off == MBX_TOMB && free_at == SIZE_MAX)
			free_at = i;
		if (s->off == MBX_EMPTY) {
			if (free_at == SIZE_MAX)
				free_at = i;
			else
				t->tombs--;
			break;
		}
	}
	t->slots[free_at].off = off;
	t->slots[free_at].tag = (uint32_t)(h >> 32);
	t->live++;
	return 0;
}

/* Removes key (tombstone). */
static void table_del(struct mbx_table *t, const char *key, size_t klen)
{
	if (!t->slots)
		return;
	uint64_t h = str_hash(key, klen, 0);
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct mbx_slot *s = &t->slots[i];
		if (s->off == MBX_EMPTY)
			return;
		if (slot_matches(t, s, key, klen, h)) {
			t->garbage += entry_size(t->arena.p + s->off);
			s->off = MBX_TOMB;
			t->live--;
			t->tombs++;
			return;
		}
	}
}

static int table_init(struct mbx_table *t)
{
	memset(t, 0, sizeof *t);
	/* Offsets 0 and 1 are the empty and tombstone markers, never entries. */
	if (buf_append(&t->arena, "\0\0", 2) < 0)
		return -1;
	return table_resize(t, 0);
}

static void table_free(struct mbx_table *t)
{
	free(t->slots);
	free(t->arena.p);
	memset(t, 0, sizeof *t);
}

/* Is the target key's domain one of the local domains? (Keys are lower case.) */
static int mbx_is_local(const struct mailbox_index *idx, const char *target, size_t tlen)
{
	const char *at = memrchr(target, '@', tlen);
	if (!at)
		return 0;
	size_t dlen = tlen - (size_t)(at + 1 - target);
	for (size_t i = 0; i < idx->n_domains; i++)
		if (strlen(idx->domains[i]) == dlen && memcmp(idx->domains[i], at + 1, dlen) == 0)
			return 1;
	return 0;
}

/* ---- building from a full scan ---- */

struct mbx_builder {
	struct mailbox_index *idx;
	struct mbx_table *t;
	long long alias_off; /* entry of the alias being filled, or -1 */
	int failed;
};

/* Starts a new alias or list entry for key and puts it in the table. Returns 0 or -1. */
static int build_start(struct mbx_builder *b, char kind, unsigned state, const char *key,
                       size_t klen)
{
	b->alias_off = entry_start(&b->t->arena, kind, (enum account_state)state, key, klen);
	if (b->alias_off < 0 || table_put(b->t, key, klen, (uint32_t)b->alias_off) < 0)
		return -1;
	return 0;
}

static int build_row(void *arg, const struct directory_row *row)
{
	struct mbx_builder *b = arg;
	struct mbx_table *t = b->t;
	const char *key = row->key;
	size_t klen = strlen(key);
	/* A hand-edited row longer than any address can never be looked up: skip it. */
	if (klen == 0 || klen > MAILADDR_MAX)
		return 0;
	if (row->kind == 'A') {
		long long off = entry_start(&t->arena, 'A', row->state, key, klen);
		b->alias_off = -1;
		if (off < 0 || table_put(t, key, klen, (uint32_t)off) < 0)
			goto fail;
		return 0;
	}
	size_t tlen = row->target ? strlen(row->target) : 0;
	if (row->kind == 'M') {
		/* The owner first (flagged), even an unusable one: the list itself exists. */
		unsigned flags = row->members_only ? MBX_LIST_MEMBERS_ONLY : 0;
		if (build_start(b, 'M', flags, key, klen) < 0)
			goto fail;
		if (tlen > MAILADDR_MAX)
			tlen = 0;
		if (entry_add_target(&t->arena, b->alias_off, row->target ? row->target : "", tlen,
		                     MBX_FLAG_OWNER) < 0)
			goto fail;
		return 0;
	}
	if (tlen == 0 || tlen > MAILADDR_MAX || (row->kind != 'L' && row->kind != 'm'))
		return 0;
	/*
	 * Alias rows arrive ordered by alias, and a list's member rows right after its
	 * 'M' row, so one entry's targets are consecutive.
	 */
	char kind = row->kind == 'L' ? 'L' : 'M';
	const unsigned char *cur = b->alias_off >= 0 ? t->arena.p + b->alias_off : NULL;
	int same = cur && cur[0] == (unsigned char)kind && get16(cur + 2) == klen &&
	           memcmp(cur + MBX_HDR, key, klen) == 0;
	if (!same && kind == 'M')
		return 0; /* a member without its list row: cannot happen in one snapshot */
	if (!same && build_start(b, 'L', ACCOUNT_ACTIVE, key, klen) < 0)
		goto fail;
	if (entry_add_target(&t->arena, b->alias_off, row->target, tlen,
	                     mbx_is_local(b->idx, row->target, tlen)) < 0)
		goto fail;
	return 0;
fail:
	b->failed = 1;
	return 1;
}

/* Builds a fresh table from the directory into *t. Returns 0 or -1. */
/*
 * Moves the arena into a buffer of exactly its length (the growth slack is the
 * bulk of the memory), 2 MiB-aligned and advised for huge pages before it is
 * written: pages that were already faulted in as 4 KiB pages while the arena
 * grew would stay small.
 */
static void arena_compact(struct mbx_buf *b)
{
	const size_t huge = 2u << 20;
	void *p = NULL;
	if (b->len < 2 * huge || posix_memalign(&p, huge, b->len) != 0) {
		unsigned char *q = realloc(b->p, b->len ? b->len : 1);
		if (q) {
			b->p = q;
			b->cap = b->len ? b->len : 1;
		}
		return;
	}
	advise_huge(p, b->len);
	memcpy(p, b->p, b->len);
	free(b->p);
	b->p = p;
	b->cap = b->len;
}

static int mbx_build(struct mailbox_index *idx, struct mbx_table *t, int64_t *seq)
{
	if (table_init(t) < 0)
		return -1;
	struct mbx_builder b = {idx, t, -1, 0};
	enum directory_result r = directory_scan(idx->dir, build_row, &b, seq);
	if (r != DIRECTORY_OK || b.failed) {
		table_free(t);
		return -1;
	}
	arena_compact(&t->arena);
	return 0;
}

/* Rescans the directory and swaps the new table in. Returns the entry count or -1. */
static int mbx_rescan(struct mailbox_index *idx)
{
	struct mbx_table t, old;
	int64_t seq = 0;
	if (mbx_build(idx, &t, &seq) < 0)
		return -1;
	pthread_rwlock_wrlock(&idx->lock);
	old = idx->t;
	idx->t = t;
	idx->seq = seq;
	idx->failed = 0;
	pthread_rwlock_unlock(&idx->lock);
	table_free(&old);
	return t.live > INT32_MAX ? INT32_MAX : (int)t.live;
}

/* ---- incremental refresh ---- */

struct mbx_change {
	char *key;
	int present; /* 0: deleted */
	struct mbx_buf entry; /* the new entry's bytes when present */
};

struct mbx_changes {
	struct mbx_change *v;
	size_t n, cap;
	int too_many;
	int oom;
};

static int collect_key(void *arg, const char *key)
{
	struct mbx_changes *c = arg;
	if (c->n >= MBX_CHANGES_MAX) {
		c->too_many = 1;
		return 1;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct mbx_change *v = realloc(c->v, cap * sizeof *v);
		if (!v) {
			c->oom = 1;
			return 1;
		}
		c->v = v;
		c->cap = cap;
	}
	struct mbx_change *ch = &c->v[c->n];
	memset(ch, 0, sizeof *ch);
	ch->key = strdup(key);
	if (!ch->key) {
		c->oom = 1;
		return 1;
	}
	c->n++;
	return 0;
}

struct mbx_target_ctx {
	struct mailbox_index *idx;
	struct mbx_buf *b;
	int failed;
};

static int collect_target(void *arg, const char *target)
{
	struct mbx_target_ctx *c = arg;
	size_t tlen = strlen(target);
	if (tlen == 0 || tlen > MAILADDR_MAX)
		return 0;
	if (entry_add_target(c->b, 0, target, tlen, mbx_is_local(c->idx, target, tlen)) < 0) {
		c->failed = 1;
		return 1;
	}
	return 0;
}

/* Re-reads list `key` into the entry just started in b: its owner, then its members. */
static enum directory_result read_list(struct mailbox_index *idx, const char *key,
                                       struct mbx_buf *b)
{
	struct directory_list_info info;
	enum directory_result r = directory_list_get(idx->dir, key, &info);
	if (r == DIRECTORY_NOTFOUND) {
		/* In this snapshot it is a list, so its row is unusable (a hand-edited owner
		 * no address can be): a list without an owner, as a full scan builds it. */
		memset(&info, 0, sizeof info);
		r = DIRECTORY_OK;
	}
	if (r != DIRECTORY_OK)
		return r;
	b->p[1] = info.members_only ? MBX_LIST_MEMBERS_ONLY : 0;
	if (entry_add_target(b, 0, info.owner, strlen(info.owner), MBX_FLAG_OWNER) < 0)
		return DIRECTORY_ERROR;
	struct mbx_target_ctx tc = {idx, b, 0};
	r = directory_list_members(idx->dir, key, collect_target, &tc);
	if (r == DIRECTORY_OK && tc.failed)
		r = DIRECTORY_ERROR;
	return r;
}

/* Re-reads one changed address into ch->entry (an entry at offset 0 of its own buffer). */
static enum directory_result read_change(struct mailbox_index *idx, struct mbx_change *ch)
{
	char kind = 0;
	enum account_state state = ACCOUNT_ACTIVE;
	size_t klen = strlen(ch->key);
	enum directory_result r = directory_get(idx->dir, ch->key, &kind, &state);
	if (r == DIRECTORY_NOTFOUND || (r == DIRECTORY_OK && (klen == 0 || klen > MAILADDR_MAX)))
		return DIRECTORY_OK; /* absent (or unreachable): delete */
	if (r != DIRECTORY_OK)
		return r;
	if (entry_start(&ch->entry, kind, state, ch->key, klen) < 0)
		return DIRECTORY_ERROR;
	ch->present = 1;
	if (kind == 'M')
		return read_list(idx, ch->key, &ch->entry);
	if (kind != 'L')
		return DIRECTORY_OK;
	struct mbx_target_ctx tc = {idx, &ch->entry, 0};
	r = directory_alias_targets(idx->dir, ch->key, collect_target, &tc);
	if (r == DIRECTORY_OK && tc.failed)
		r = DIRECTORY_ERROR;
	return r;
}

/* Applies the changes read; caller holds the write lock. Returns 0 or -1 (out of memory). */
static int apply_changes(struct mbx_table *t, struct mbx_changes *c)
{
	for (size_t i = 0; i < c->n; i++) {
		struct mbx_change *ch = &c->v[i];
		size_t klen = strlen(ch->key);
		if (!ch->present) {
			table_del(t, ch->key, klen);
			continue;
		}
		unsigned char *cur = (unsigned char *)table_find(t, ch->key, klen);
		if (cur && cur[0] == 'A' && ch->entry.p[0] == 'A') {
			cur[1] = ch->entry.p[1]; /* a state change: update in place */
			continue;
		}
		long long off = buf_append(&t->arena, ch->entry.p, ch->entry.len);
		if (off < 0 || table_put(t, ch->key, klen, (uint32_t)off) < 0)
			return -1;
	}
	return 0;
}

static void changes_free(struct mbx_changes *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].key);
		free(c->v[i].entry.p);
	}
	free(c->v);
}

static void mbx_set_failed(struct mailbox_index *idx)
{
	pthread_rwlock_wrlock(&idx->lock);
	idx->failed = 1;
	pthread_rwlock_unlock(&idx->lock);
}

int mailbox_index_refresh(struct mailbox_index *idx)
{
	struct mbx_changes c = {0};
	int64_t seq = 0;
	int gap = 0;
	/* One snapshot for the change list and the rows re-read for it. */
	enum directory_result r = directory_read_begin(idx->dir);
	if (r == DIRECTORY_OK)
		r = directory_changes(idx->dir, idx->seq, collect_key, &c, &seq, &gap);
	if (r == DIRECTORY_OK && c.oom)
		r = DIRECTORY_ERROR;
	for (size_t i = 0; r == DIRECTORY_OK && !gap && !c.too_many && i < c.n; i++)
		r = read_change(idx, &c.v[i]);
	directory_read_end(idx->dir);
	if (r != DIRECTORY_OK) {
		changes_free(&c);
		mbx_set_failed(idx);
		return -1;
	}
	if (gap || c.too_many) {
		changes_free(&c);
		int n = mbx_rescan(idx);
		if (n < 0)
			mbx_set_failed(idx);
		return n;
	}
	pthread_rwlock_wrlock(&idx->lock);
	int rc = apply_changes(&idx->t, &c);
	if (rc == 0) {
		idx->seq = seq;
		idx->failed = 0;
	} else {
		idx->failed = 1;
	}
	int compact = idx->t.garbage > idx->t.arena.len / 2 && idx->t.garbage > (1u << 20);
	pthread_rwlock_unlock(&idx->lock);
	int n = (int)c.n;
	changes_free(&c);
	if (rc < 0) {
		/* Out of memory half-way: the table is inconsistent, so rebuild it. */
		n = mbx_rescan(idx);
		if (n < 0)
			mbx_set_failed(idx);
		return n < 0 ? -1 : n;
	}
	if (compact)
		mbx_rescan(idx); /* best effort: the current table stays correct if it fails */
	return n;
}

/* ---- public ---- */

struct mailbox_index *mailbox_index_open(const char *db_path, const char *const *local_domains,
                                         size_t n_domains, char *err, size_t errlen)
{
	struct mailbox_index *idx = calloc(1, sizeof *idx);
	if (!idx) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	/* glibc prefers readers by default; busy lookup threads would starve a refresh. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&idx->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	idx->domains = calloc(n_domains ? n_domains : 1, sizeof *idx->domains);
	if (!idx->domains)
		goto oom;
	for (size_t i = 0; i < n_domains; i++) {
		idx->domains[i] = strdup(local_domains[i]);
		if (!idx->domains[i])
			goto oom;
		idx->n_domains++;
		for (char *p = idx->domains[i]; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	}
	idx->dir = directory_open(db_path, 0, err, errlen);
	if (!idx->dir) {
		mailbox_index_free(idx);
		return NULL;
	}
	if (mbx_build(idx, &idx->t, &idx->seq) < 0) {
		snprintf(err, errlen, "cannot read directory %s: %s", db_path,
		         directory_errmsg(idx->dir));
		mailbox_index_free(idx);
		return NULL;
	}
	return idx;
oom:
	snprintf(err, errlen, "out of memory");
	mailbox_index_free(idx);
	return NULL;
}

void mailbox_index_free(struct mailbox_index *idx)
{
	if (!idx)
		return;
	table_free(&idx->t);
	directory_close(idx->dir);
	for (size_t i = 0; i < idx->n_domains; i++)
		free(idx->domains[i]);
	free(idx->domains);
	pthread_rwlock_destroy(&idx->lock);
	free(idx);
}

size_t mailbox_index_count(const struct mailbox_index *cidx)
{
	struct mailbox_index *idx = (struct mailbox_index *)cidx; /* the lock is internal */
	pthread_rwlock_rdlock(&idx->lock);
	size_t n = idx->t.live;
	pthread_rwlock_unlock(&idx->lock);
	return n;
}

size_t mailbox_index_memory(const struct mailbox_index *cidx)
{
	struct mailbox_index *idx = (struct mailbox_index *)cidx;
	pthread_rwlock_rdlock(&idx->lock);
	size_t n = sizeof *idx + (idx->t.slots ? (idx->t.mask + 1) * sizeof(struct mbx_slot) : 0) +
	           idx->t.arena.cap;
	for (size_t i = 0; i < idx->n_domains; i++)
		n += strlen(idx->domains[i]) + 1 + sizeof(char *);
	pthread_rwlock_unlock(&idx->lock);
	return n;
}

void mailbox_index_read_lock(struct mailbox_index *idx)
{
	pthread_rwlock_rdlock(&idx->lock);
}

void mailbox_index_read_unlock(struct mailbox_index *idx)
{
	pthread_rwlock_unlock(&idx->lock);
}

int mailbox_index_failed(struct mailbox_index *idx)
{
	pthread_rwlock_rdlock(&idx->lock);
	int f = idx->failed;
	pthread_rwlock_unlock(&idx->lock);
	return f;
}

/* ---- lookup ---- */

struct mbx_resolve {
	int local_exists; /* some target reached an existing local account */
	int local_active; /* ... that can receive */
	int local_over_quota; /* ... that is over quota */
	int foreign; /* some target is outside the local domains */
	int visits; /* targets examined so far (bounded) */
};

/*
 * Walks an alias's targets depth-first. A local target that does not exist counts
 * as nothing; a chain deeper than MBX_MAX_DEPTH (a loop) counts as nothing; the
 * visit budget bounds the work of a wide, deep alias graph (no allocation).
 */
static void resolve_alias(const struct mbx_table *t, const unsigned char *e, int depth,
                          struct mbx_resolve *r)
{
	size_t n = MBX_HDR + get16(e + 2) + 1;
	uint32_t cnt = get32(e + n);
	const unsigned char *p = e + n + 4;
	for (uint32_t i = 0; i < cnt; i++) {
		int local = p[0] & MBX_FLAG_LOCAL;
		size_t tlen = get16(p + 1);
		const char *target = (const char *)p + 3;
		p += 3 + tlen + 1;
		if (r->local_active || ++r->visits > MBX_MAX_VISITS)
			return;
		if (!local) {
			r->foreign = 1;
			continue;
		}
		const unsigned char *te = table_find(t, target, tlen);
		if (!te)
			continue;
		if (te[0] == 'A') {
			r->local_exists = 1;
			if (te[1] == ACCOUNT_ACTIVE)
				r->local_active = 1;
			else if (te[1] == ACCOUNT_OVER_QUOTA)
				r->local_over_quota = 1;
		} else if (te[0] == 'M') {
			/* A list always takes mail (its members-only rule binds direct posts). */
			r->local_exists = 1;
			r->local_active = 1;
		} else if (depth < MBX_MAX_DEPTH) {
			resolve_alias(t, te, depth + 1, r);
		}
	}
}

/*
 * The prefetch key is the datagram's first word folded to lower case, which is
 * the lookup key for every unquoted mailbox; for anything else the hint is merely
 * wasted.
 */
uint64_t mailbox_index_prefetch_slot(const struct mailbox_index *idx, const char *mailbox,
                                     size_t len)
{
	char key[MAILADDR_MAX + 1];
	if (len == 0 || len > MAILADDR_MAX || !idx->t.slots)
		return 0;
	ascii_lower_copy(key, mailbox, len);
	uint64_t h = str_hash(key, len, 0);
	__builtin_prefetch(&idx->t.slots[h & idx->t.mask]);
	return h;
}

void mailbox_index_prefetch_entry(const struct mailbox_index *idx, uint64_t hash)
{
	if (!idx->t.slots)
		return;
	const struct mbx_slot *s = &idx->t.slots[hash & idx->t.mask];
	if (s->off > MBX_TOMB && s->tag == (uint32_t)(hash >> 32))
		__builtin_prefetch(idx->t.arena.p + s->off);
}

/* The first target of an alias or list entry, and their count. */
static const unsigned char *entry_targets(const unsigned char *e, uint32_t *cnt)
{
	size_t n = MBX_HDR + get16(e + 2) + 1;
	*cnt = get32(e + n);
	return e + n + 4;
}

/*
 * 1 if sender[0..len), an envelope sender as written, is a member of list entry
 * e: members are stored by their key (mailaddr_key), so the sender is compared by
 * its key too. The null sender (len 0) and an unparsable one are no member.
 */
static int list_has_sender(const unsigned char *e, const char *sender, size_t len)
{
	struct mailaddr a;
	char key[MAILADDR_MAX + 1];
	if (len == 0 || mailaddr_parse_exact(sender, len, &a) != MAILADDR_OK)
		return 0;
	int klen = mailaddr_key(&a, key, sizeof key);
	if (klen <= 0)
		return 0;
	uint32_t cnt;
	const unsigned char *p = entry_targets(e, &cnt);
	for (uint32_t i = 0; i < cnt; i++) {
		size_t tlen = get16(p + 1);
		if (!(p[0] & MBX_FLAG_OWNER) && tlen == (size_t)klen &&
		    memcmp(p + 3, key, tlen) == 0)
			return 1;
		p += 3 + tlen + 1;
	}
	return 0;
}

/* The answer for the entry of a key (NULL: none), aliases followed. */
static enum lookup_result answer_entry(const struct mailbox_index *idx, const unsigned char *e,
                                       struct lookup_answer *out)
{
	if (!e)
		return LOOKUP_NOTFOUND;
	if (e[0] == 'A') {
		out->kind = LOOKUP_KIND_ACCOUNT;
		out->can_receive = e[1] == ACCOUNT_ACTIVE;
		out->over_quota = e[1] == ACCOUNT_OVER_QUOTA;
		return LOOKUP_FOUND;
	}
	if (e[0] == 'M') {
		out->kind = LOOKUP_KIND_LIST;
		out->can_receive = 1;
		out->members_only = (e[1] & MBX_LIST_MEMBERS_ONLY) != 0;
		out->sender_member =
		        out->sender ? list_has_sender(e, out->sender, out->sender_len) : 0;
		return LOOKUP_FOUND;
	}
	struct mbx_resolve r = {0};
	resolve_alias(&idx->t, e, 1, &r);
	if (r.local_exists) {
		out->kind = LOOKUP_KIND_ALIAS_LOCAL;
		out->can_receive = r.local_active;
		out->over_quota = !r.local_active && r.local_over_quota;
	} else if (r.foreign) {
		out->kind = LOOKUP_KIND_ALIAS_FOREIGN;
		out->can_receive = 1;
	} else {
		return LOOKUP_NOTFOUND; /* every target missing, or a loop */
	}
	return LOOKUP_FOUND;
}

enum lookup_result mailbox_lookup_locked(struct mailbox_index *idx, const char *mailbox, size_t len,
                                         struct lookup_answer *out)
{
	out->kind = LOOKUP_KIND_NONE;
	out->can_receive = 0;
	out->over_quota = 0;
	out->members_only = 0;
	out->sender_member = 0;
	if (idx->failed)
		return LOOKUP_TEMPFAIL;
	struct mailaddr a;
	char key[MAILADDR_MAX + 1];
	if (!mailbox || mailaddr_parse_exact(mailbox, len, &a) != MAILADDR_OK)
		return LOOKUP_NOTFOUND;
	int klen = mailaddr_key(&a, key, sizeof key);
	if (klen <= 0)
		return LOOKUP_NOTFOUND;
	return answer_entry(idx, table_find(&idx->t, key, (size_t)klen), out);
}

/*
 * A valid mailbox's key is the mailbox folded to lower case (mailaddr_key), which
 * is exactly what mailbox_index_prefetch_slot() hashed, so the parse and the hash
 * need not be done again.
 */
enum lookup_result mailbox_lookup_prefetched_locked(struct mailbox_index *idx, const char *mailbox,
                                                    size_t len, uint64_t hash,
                                                    struct lookup_answer *out)
{
	out->kind = LOOKUP_KIND_NONE;
	out->can_receive = 0;
	out->over_quota = 0;
	out->members_only = 0;
	out->sender_member = 0;
	if (idx->failed)
		return LOOKUP_TEMPFAIL;
	char key[MAILADDR_MAX + 1];
	if (len == 0 || len > MAILADDR_MAX)
		return LOOKUP_NOTFOUND;
	ascii_lower_copy(key, mailbox, len);
	return answer_entry(idx, table_find_hashed(&idx->t, key, len, hash), out);
}

enum lookup_result mailbox_lookup(struct mailbox_index *idx, const char *mailbox, size_t len,
                                  struct lookup_answer *out)
{
	pthread_rwlock_rdlock(&idx->lock);
	enum lookup_result r = mailbox_lookup_locked(idx, mailbox, len, out);
	pthread_rwlock_unlock(&idx->lock);
	return r;
}

/* ---- expansion (delivery) ---- */

#define MBX_EXPAND_MAX 1024 /* distinct targets yielded per expansion, at most */

/*
 * State of one expansion. The keys already yielded are remembered (bounded by
 * MBX_EXPAND_MAX) so that an account reached through two aliases gets one copy.
 * The keys live in the arena, which cannot move while the read lock is held, so
 * the set stores pointers, not copies.
 */
struct mbx_expand {
	const struct mbx_table *t;
	const char *seen[MBX_EXPAND_MAX];
	size_t seen_len[MBX_EXPAND_MAX];
	size_t n_seen;
	int visits;
	int stop; /* the callback asked to stop */
	int (*fn)(void *arg, const char *target, int local);
	void *arg;
};

/* Yields a target once; returns 0, or 1 when the callback or the bound says stop. */
static int expand_yield(struct mbx_expand *x, const char *key, size_t len, int kind)
{
	for (size_t i = 0; i < x->n_seen; i++)
		if (x->seen_len[i] == len && memcmp(x->seen[i], key, len) == 0)
			return 0;
	if (x->n_seen == MBX_EXPAND_MAX)
		return 1;
	x->seen[x->n_seen] = key;
	x->seen_len[x->n_seen] = len;
	x->n_seen++;
	if (x->fn(x->arg, key, kind) != 0) {
		x->stop = 1;
		return 1;
	}
	return 0;
}

/* The MAILBOX_TARGET_* of an account or list entry. */
static int entry_kind(const unsigned char *e)
{
	if (e[0] == 'M')
		return MAILBOX_TARGET_LIST;
	switch (e[1]) {
	case ACCOUNT_ACTIVE: return MAILBOX_TARGET_ACTIVE;
	case ACCOUNT_OVER_QUOTA: return MAILBOX_TARGET_OVER_QUOTA;
	default: return MAILBOX_TARGET_DISABLED;
	}
}

/*
 * Walks an alias's targets depth-first (the same rules as resolve_alias: missing
 * local targets and chains deeper than MBX_MAX_DEPTH yield nothing), yielding
 * every account and foreign target reached.
 */
static void expand_alias(struct mbx_expand *x, const unsigned char *e, int depth)
{
	size_t n = MBX_HDR + get16(e + 2) + 1;
	uint32_t cnt = get32(e + n);
	const unsigned char *p = e + n + 4;
	for (uint32_t i = 0; i < cnt && !x->stop; i++) {
		int local = p[0] & MBX_FLAG_LOCAL;
		size_t tlen = get16(p + 1);
		const char *target = (const char *)p + 3;
		p += 3 + tlen + 1;
		if (++x->visits > MBX_MAX_VISITS) {
			x->stop = 1;
			return;
		}
		if (!local) {
			if (expand_yield(x, target, tlen, MAILBOX_TARGET_FOREIGN))
				return;
			continue;
		}
		const unsigned char *te = table_find(x->t, target, tlen);
		if (!te)
			continue;
		if (te[0] == 'A' || te[0] == 'M') {
			if (expand_yield(x, (const char *)te + MBX_HDR, tlen, entry_kind(te)))
				return;
		} else if (depth < MBX_MAX_DEPTH) {
			expand_alias(x, te, depth + 1);
		}
	}
}

enum lookup_result mailbox_expand(struct mailbox_index *idx, const char *mailbox, size_t len,
                                  int (*fn)(void *arg, const char *target, int local), void *arg)
{
	struct mailaddr a;
	char key[MAILADDR_MAX + 1];
	if (!mailbox || mailaddr_parse_exact(mailbox, len, &a) != MAILADDR_OK)
		return LOOKUP_NOTFOUND;
	int klen = mailaddr_key(&a, key, sizeof key);
	if (klen <= 0)
		return LOOKUP_NOTFOUND;
	/* Not zeroed: the seen[] arrays (16 KiB) are read only below n_seen. */
	struct mbx_expand *x = malloc(sizeof *x);
	if (!x)
		return LOOKUP_TEMPFAIL;
	x->n_seen = 0;
	x->visits = 0;
	x->stop = 0;
	x->fn = fn;
	x->arg = arg;
	enum lookup_result r = LOOKUP_NOTFOUND;
	pthread_rwlock_rdlock(&idx->lock);
	x->t = &idx->t;
	const unsigned char *e = idx->failed ? NULL : table_find(&idx->t, key, (size_t)klen);
	if (idx->failed) {
		r = LOOKUP_TEMPFAIL;
	} else if (e && (e[0] == 'A' || e[0] == 'M')) {
		expand_yield(x, (const char *)e + MBX_HDR, (size_t)klen, entry_kind(e));
	} else if (e) {
		expand_alias(x, e, 1);
	}
	if (x->n_seen > 0)
		r = LOOKUP_FOUND;
	pthread_rwlock_unlock(&idx->lock);
	free(x);
	return r;
}

/* ---- mailing lists (delivery) ---- */

/* Copies list entry e's address, owner and flags into *info (the members are not copied). */
static void list_info(const unsigned char *e, struct mailbox_list *info)
{
	size_t klen = get16(e + 2);
	uint32_t cnt;
	const unsigned char *p = entry_targets(e, &cnt);
	memset(info, 0, sizeof *info);
	memcpy(info->address, e + MBX_HDR, klen);
	info->members_only = (e[1] & MBX_LIST_MEMBERS_ONLY) != 0;
	if (cnt > 0 && (p[0] & MBX_FLAG_OWNER)) {
		memcpy(info->owner, p + 3, get16(p + 1));
		cnt--;
	}
	info->n_members = cnt;
	if (directory_list_id(info->address, info->list_id, sizeof info->list_id) < 0)
		info->list_id[0] = '\0'; /* a hand-edited row with no dot-atom form */
}

enum lookup_result mailbox_list_expand(struct mailbox_index *idx, const char *list, size_t len,
                                       struct mailbox_list *info,
                                       int (*fn)(void *arg, const char *member, int local),
                                       void *arg)
{
	struct mailaddr a;
	char key[MAILADDR_MAX + 1];
	memset(info, 0, sizeof *info);
	if (!list || mailaddr_parse_exact(list, len, &a) != MAILADDR_OK)
		return LOOKUP_NOTFOUND;
	int klen = mailaddr_key(&a, key, sizeof key);
	if (klen <= 0)
		return LOOKUP_NOTFOUND;
	pthread_rwlock_rdlock(&idx->lock);
	if (idx->failed) {
		pthread_rwlock_unlock(&idx->lock);
		return LOOKUP_TEMPFAIL;
	}
	const unsigned char *e = table_find(&idx->t, key, (size_t)klen);
	if (!e || e[0] != 'M') {
		pthread_rwlock_unlock(&idx->lock);
		return LOOKUP_NOTFOUND;
	}
	list_info(e, info);
	uint32_t cnt;
	const unsigned char *p = entry_targets(e, &cnt);
	for (uint32_t i = 0; fn && i < cnt; i++) {
		size_t tlen = get16(p + 1);
		unsigned flags = p[0];
		const char *member = (const char *)p + 3;
		p += 3 + tlen + 1;
		if (flags & MBX_FLAG_OWNER)
			continue;
		if (fn(arg, member, (flags & MBX_FLAG_LOCAL) != 0))
			break;
	}
	pthread_rwlock_unlock(&idx->lock);
	return LOOKUP_FOUND;
}
