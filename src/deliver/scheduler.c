/*
 * scheduler: see scheduler.h.
 *
 * Shape (after Postfix's qmgr, which keeps one queue per destination, serves
 * destinations round-robin and throttles a "dead" one, and OpenSMTPD's
 * scheduler, which batches envelopes of one message per destination):
 *
 *   item   one recipient; lives in its group's heap while queued (key: due).
 *   group  the items of one message for one destination: a job is taken from
 *          one group, so the recipients of a message to a destination travel in
 *          one SMTP transaction (RFC 5321 3.3: one MAIL, several RCPT).
 *   dest   one destination; a heap of its groups keyed by their earliest item.
 *          A destination is in exactly one place: the ring (due work: served
 *          round-robin), the wait heap (keyed by when it becomes due: the later
 *          of its earliest item and the end of its dead period), the grave heap
 *          (no items but dead: remembered until the dead period ends, so a new
 *          message does not hammer a broken peer), or none (no queued items,
 *          or all its slots busy: a result places it again).
 *   msg    one message: its items in a list (unwarned ones first), and two
 *          global heaps keyed by its expiry and its delay-warning time, in which
 *          it sits while it has queued items (unwarned ones for the second).
 *
 * Every heap's room is reserved when the element that may enter it is created
 * (an item reserves a slot in its group's heap, a group one in its
 * destination's, a destination one in the wait and grave heaps, a message in the
 * expiry and warning heaps), so only scheduler_add() allocates and every other
 * operation cannot fail half way.
 */
#include "deliver/scheduler.h"

#include <stdlib.h>
#include <string.h>

#define NPOS SIZE_MAX
#define OWNER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- times ---- */

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/*
 * initial doubled (step - 1) times, capped: the back-off of the step-th failure
 * (step >= 1). RFC 5321 4.5.4.1 leaves the retry strategy to the MTA; doubling
 * from a short first wait (as Postfix does) retries a brief outage soon and a long
 * one rarely.
 */
static uint64_t backoff(uint64_t initial, uint64_t cap, uint32_t step)
{
	uint64_t b = initial;
	for (uint32_t i = 1; i < step && b < cap; i++)
		b = b > cap / 2 ? cap : b * 2;
	return b < cap ? b : cap;
}

/* ---- keyed hash (SipHash-2-4): destinations are named by remote senders ---- */

static uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static void sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = rotl(v[1], 13) ^ v[0];
	v[0] = rotl(v[0], 32);
	v[2] += v[3];
	v[3] = rotl(v[3], 16) ^ v[2];
	v[0] += v[3];
	v[3] = rotl(v[3], 21) ^ v[0];
	v[2] += v[1];
	v[1] = rotl(v[1], 17) ^ v[2];
	v[2] = rotl(v[2], 32);
}

static void sip_absorb(uint64_t v[4], uint64_t m)
{
	v[3] ^= m;
	sip_round(v);
	sip_round(v);
	v[0] ^= m;
}

static uint64_t siphash(const uint64_t k[2], const unsigned char *p, size_t len)
{
	uint64_t v[4] = {k[0] ^ 0x736f6d6570736575ULL, k[1] ^ 0x646f72616e646f6dULL,
	                 k[0] ^ 0x6c7967656e657261ULL, k[1] ^ 0x7465646279746573ULL};
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t m = 0;
		for (int j = 7; j >= 0; j--)
			m = (m << 8) | p[i + (size_t)j];
		sip_absorb(v, m);
	}
	uint64_t last = (uint64_t)len << 56;
	for (size_t j = 0; i + j < len; j++)
		last |= (uint64_t)p[i + j] << (8 * j);
	sip_absorb(v, last);
	v[2] ^= 0xff;
	for (int r = 0; r < 4; r++)
		sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* Pointers and indexes are ours, not a peer's: a fixed mix is enough. */
static uint64_t mix2(const void *p, uint64_t x)
{
	uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL ^ x * 0xc2b2ae3d27d4eb4fULL;
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 29);
}

/* ---- binary heap of (key, tie) nodes that know their position ---- */

struct hnode {
	uint64_t key;
	uint64_t tie;
	size_t pos; /* NPOS: in no heap */
};

struct heap {
	struct hnode **v;
	size_t n, cap;
};

static int hn_less(const struct hnode *a, const struct hnode *b)
{
	return a->key < b->key || (a->key == b->key && a->tie < b->tie);
}

static void heap_put(struct heap *h, size_t i, struct hnode *x)
{
	h->v[i] = x;
	x->pos = i;
}

static void sift_up(struct heap *h, size_t i)
{
	struct hnode *x = h->v[i];
	while (i > 0 && hn_less(x, h->v[(i - 1) / 2])) {
		heap_put(h, i, h->v[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_put(h, i, x);
}

static void sift_down(struct heap *h, size_t i)
{
	struct hnode *x = h->v[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && hn_less(h->v[c + 1], h->v[c]))
			c++;
		if (!hn_less(h->v[c], x))
			break;
		heap_put(h, i, h->v[c]);
		i = c;
	}
	heap_put(h, i, x);
}

static int heap_reserve(struct heap *h, size_t want)
{
	if (want <= h->cap)
		return 0;
	size_t cap = h->cap * 2 > want ? h->cap * 2 : want;
	if (cap > SIZE_MAX / sizeof *h->v)
		return -1;
	struct hnode **v = realloc(h->v, cap * sizeof *v);
	if (v == NULL)
		return -1;
	h->v = v;
	h->cap = cap;
	return 0;
}

/* The room was reserved (see the file comment), so this cannot fail. */
static void heap_push(struct heap *h, struct hnode *x)
{
	heap_put(h, h->n++, x);
	sift_up(h, x->pos);
}

static void heap_del(struct heap *h, struct hnode *x)
{
	size_t i = x->pos;
	x->pos = NPOS;
	if (i != --h->n) {
		struct hnode *last = h->v[h->n];
		heap_put(h, i, last);
		sift_up(h, i);
		sift_down(h, last->pos);
	}
}

/* After x's key changed; pushes it if it was in no heap. */
static void heap_set(struct heap *h, struct hnode *x, uint64_t key, uint64_t tie)
{
	x->key = key;
	x->tie = tie;
	if (x->pos == NPOS) {
		heap_push(h, x);
		return;
	}
	sift_up(h, x->pos);
	sift_down(h, x->pos);
}

static void heap_drop(struct heap *h, struct hnode *x)
{
	if (x->pos != NPOS)
		heap_del(h, x);
}

static struct hnode *heap_top(const struct heap *h)
{
	return h->n ? h->v[0] : NULL;
}

/* ---- intrusive chained hash table ---- */

struct hlink {
	struct hlink *next;
	uint64_t hash;
};

struct htab {
	struct hlink **b;
	size_t mask; /* buckets - 1 */
	size_t n;
};

static int htab_init(struct htab *t)
{
	t->b = calloc(16, sizeof *t->b);
	t->mask = 15;
	t->n = 0;
	return t->b ? 0 : -1;
}

static struct hlink *htab_first(const struct htab *t, uint64_t hash)
{
	return t->b[hash & t->mask];
}

/* Doubles the buckets when full; on failure the chains just get longer. */
static void htab_grow(struct htab *t)
{
	size_t nb = (t->mask + 1) * 2;
	if (nb > SIZE_MAX / sizeof *t->b)
		return;
	struct hlink **b = calloc(nb, sizeof *b);
	if (b == NULL)
		return;
	for (size_t i = 0; i <= t->mask; i++) {
		struct hlink *l = t->b[i], *next;
		for (; l; l = next) {
			next = l->next;
			l->next = b[l->hash & (nb - 1)];
			b[l->hash & (nb - 1)] = l;
		}
	}
	free(t->b);
	t->b = b;
	t->mask = nb - 1;
}

static void htab_insert(struct htab *t, struct hlink *l, uint64_t hash)
{
	if (t->n > t->mask)
		htab_grow(t);
	l->hash = hash;
	l->next = t->b[hash & t->mask];
	t->b[hash & t->mask] = l;
	t->n++;
}

static void htab_unlink(struct htab *t, struct hlink *l)
{
	struct hlink **p = &t->b[l->hash & t->mask];
	while (*p != l)
		p = &(*p)->next;
	*p = l->next;
	t->n--;
}

/* ---- the records ---- */

#define ITEM_WARNED 0x1
#define ITEM_REMOVED 0x2 /* queue delete while in flight: dropped at its result */

struct job;

struct item {
	struct hlink hl; /* items: (msg, rcpt) */
	struct hnode hn; /* in its group's heap while queued: (due, seq) */
	struct msg *msg;
	struct group *group;
	struct job *job; /* in flight: its job; queued: NULL */
	struct item *mprev, *mnext; /* the message's list */
	uint32_t rcpt;
	uint32_t attempts;
	unsigned flags;
};

struct group {
	struct hlink hl; /* groups: (msg, dest) */
	struct hnode hn; /* in its destination's heap while it has queued items */
	struct msg *msg;
	struct dest *dest;
	struct heap items; /* queued items; room for all of them */
	size_t n_items; /* queued and in flight */
};

enum dest_where { DEST_NONE, DEST_RING, DEST_WAIT, DEST_GRAVE };

struct dest {
	struct hlink hl; /* dests: key */
	struct hnode hn; /* in the wait or the grave heap */
	struct heap groups; /* groups with queued items */
	struct dest *rprev, *rnext; /* the ring */
	enum dest_where where;
	uint64_t dead_until;
	uint32_t failures;
	uint32_t in_flight; /* jobs */
	uint32_t limit;
	size_t n_groups; /* live groups */
	size_t n_items;
	char key[SCHEDULER_DEST_MAX + 1];
};

struct msg {
	struct hlink hl; /* msgs: id */
	struct hnode exp; /* in the expiry heap while it has queued items */
	struct hnode warn; /* in the warning heap while it has queued unwarned items */
	struct item *head, *tail; /* unwarned items before warned ones */
	uint64_t arrival;
	size_t n_items, n_queued, n_unwarned; /* the last two: queued only */
	char id[SCHEDULER_ID_MAX + 1];
};

struct job {
	struct dest *dest;
	size_t remaining; /* items not reported yet */
	struct job *next_free;
};

struct scheduler {
	struct scheduler_conf c;
	struct htab msgs, dests, groups, items;
	struct heap wait, grave, expiry, warning;
	struct dest *ring_head, *ring_tail;
	struct job *jobs, *free_jobs;
	uint32_t jobs_in_flight;
	size_t n_items;
	uint64_t seq;
	uint64_t now; /* the latest now given */
};

/* ---- validation and lookups ---- */

/* Queue ids and destination keys: printable, no spaces (they reach logs and lines). */
static int key_ok(const char *s, size_t max)
{
	if (s == NULL || *s == '\0')
		return 0;
	size_t n = 0;
	for (; s[n] != '\0'; n++)
		if (n >= max || (unsigned char)s[n] <= 0x20 || (unsigned char)s[n] == 0x7f)
			return 0;
	return 1;
}

/* Destination keys are domains or [host]:port: ASCII case does not matter (RFC 5321 2.4). */
static void fold_key(char *out, const char *in)
{
	size_t i = 0;
	for (; in[i] != '\0'; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] + ('a' - 'A')) : in[i];
	out[i] = '\0';
}

static uint64_t str_hash(const struct scheduler *s, const char *k)
{
	return siphash(s->c.hash_key, (const unsigned char *)k, strlen(k));
}

static struct msg *msg_find(const struct scheduler *s, const char *id, uint64_t h)
{
	for (struct hlink *l = htab_first(&s->msgs, h); l; l = l->next) {
		struct msg *m = OWNER(l, struct msg, hl);
		if (l->hash == h && strcmp(m->id, id) == 0)
			return m;
	}
	return NULL;
}

static struct dest *dest_find(const struct scheduler *s, const char *key, uint64_t h)
{
	for (struct hlink *l = htab_first(&s->dests, h); l; l = l->next) {
		struct dest *d = OWNER(l, struct dest, hl);
		if (l->hash == h && strcmp(d->key, key) == 0)
			return d;
	}
	return NULL;
}

static struct group *group_find(const struct scheduler *s, const struct msg *m,
                                const struct dest *d)
{
	uint64_t h = mix2(m, (uint64_t)(uintptr_t)d);
	for (struct hlink *l = htab_first(&s->groups, h); l; l = l->next) {
		struct group *g = OWNER(l, struct group, hl);
		if (g->msg == m && g->dest == d)
			return g;
	}
	return NULL;
}

static struct item *item_find(const struct scheduler *s, const struct msg *m, uint32_t rcpt)
{
	uint64_t h = mix2(m, rcpt);
	for (struct hlink *l = htab_first(&s->items, h); l; l = l->next) {
		struct item *it = OWNER(l, struct item, hl);
		if (it->msg == m && it->rcpt == rcpt)
			return it;
	}
	return NULL;
}

static struct item *item_by_id(const struct scheduler *s, const char *id, uint32_t rcpt)
{
	if (!key_ok(id, SCHEDULER_ID_MAX))
		return NULL;
	struct msg *m = msg_find(s, id, str_hash(s, id));
	return m ? item_find(s, m, rcpt) : NULL;
}

static struct dest *dest_by_key(const struct scheduler *s, const char *key)
{
	char k[SCHEDULER_DEST_MAX + 1];
	if (!key_ok(key, SCHEDULER_DEST_MAX))
		return NULL;
	fold_key(k, key);
	return dest_find(s, k, str_hash(s, k));
}

/* ---- placement: keeping every record in the right heap ---- */

/* A destination that failed and has not succeeded since gets one probe at a time. */
static uint32_t dest_limit(const struct dest *d)
{
	return d->failures ? 1 : d->limit;
}

static void ring_unlink(struct scheduler *s, struct dest *d)
{
	if (d->rprev)
		d->rprev->rnext = d->rnext;
	else
		s->ring_head = d->rnext;
	if (d->rnext)
		d->rnext->rprev = d->rprev;
	else
		s->ring_tail = d->rprev;
	d->rprev = d->rnext = NULL;
}

static void ring_append(struct scheduler *s, struct dest *d)
{
	d->rprev = s->ring_tail;
	d->rnext = NULL;
	if (s->ring_tail)
		s->ring_tail->rnext = d;
	else
		s->ring_head = d;
	s->ring_tail = d;
	d->where = DEST_RING;
}

static void dest_unplace(struct scheduler *s, struct dest *d)
{
	if (d->where == DEST_RING)
		ring_unlink(s, d);
	else if (d->where == DEST_WAIT)
		heap_del(&s->wait, &d->hn);
	else if (d->where == DEST_GRAVE)
		heap_del(&s->grave, &d->hn);
	d->where = DEST_NONE;
}

static void dest_destroy(struct scheduler *s, struct dest *d)
{
	dest_unplace(s, d);
	htab_unlink(&s->dests, &d->hl);
	free(d->groups.v);
	free(d);
}

/* A destination with nothing queued: forgotten, unless dead (then kept until it ends). */
static void dest_idle(struct scheduler *s, struct dest *d)
{
	dest_unplace(s, d);
	if (d->n_groups || d->in_flight)
		return;
	if (d->dead_until <= s->now) {
		dest_destroy(s, d);
		return;
	}
	heap_set(&s->grave, &d->hn, d->dead_until, 0);
	d->where = DEST_GRAVE;
}

/*
 * Puts d where it belongs after its groups, limits or dead period changed. A
 * destination in the ring stays there: scheduler_next() checks it when its turn
 * comes (it may have died or filled its slots meanwhile).
 */
static void dest_place(struct scheduler *s, struct dest *d)
{
	struct hnode *top = heap_top(&d->groups);
	if (top == NULL) {
		dest_idle(s, d);
		return;
	}
	if (d->in_flight >= dest_limit(d)) {
		dest_unplace(s, d);
		return;
	}
	if (d->where == DEST_RING)
		return;
	if (d->where == DEST_GRAVE)
		dest_unplace(s, d);
	heap_set(&s->wait, &d->hn, max_u64(d->dead_until, top->key), top->tie);
	d->where = DEST_WAIT;
}

/* The group's place in its destination's heap follows its earliest queued item. */
static void group_refresh(struct scheduler *s, struct group *g)
{
	struct hnode *top = heap_top(&g->items);
	if (top == NULL)
		heap_drop(&g->dest->groups, &g->hn);
	else
		heap_set(&g->dest->groups, &g->hn, top->key, top->tie);
	dest_place(s, g->dest);
}

static uint64_t msg_expiry(const struct scheduler *s, const struct msg *m)
{
	return sat_add(m->arrival, s->c.lifetime);
}

/* A message warns only when its warning time comes before its expiry. */
static int msg_warns(const struct scheduler *s, const struct msg *m)
{
	return s->c.delay_warning != 0 && s->c.delay_warning < s->c.lifetime && m->n_unwarned != 0;
}

/* A message's two times never change: it only enters or leaves the two heaps. */
static void msg_rearm(struct scheduler *s, struct msg *m)
{
	if (m->n_queued == 0)
		heap_drop(&s->expiry, &m->exp);
	else if (m->exp.pos == NPOS)
		heap_set(&s->expiry, &m->exp, msg_expiry(s, m), m->exp.tie);
	if (!msg_warns(s, m))
		heap_drop(&s->warning, &m->warn);
	else if (m->warn.pos == NPOS)
		heap_set(&s->warning, &m->warn, sat_add(m->arrival, s->c.delay_warning),
		         m->warn.tie);
}

/* ---- lists of a message's items ---- */

static void mlist_unlink(struct msg *m, struct item *it)
{
	if (it->mprev)
		it->mprev->mnext = it->mnext;
	else
		m->head = it->mnext;
	if (it->mnext)
		it->mnext->mprev = it->mprev;
	else
		m->tail = it->mprev;
	it->mprev = it->mnext = NULL;
}

/* Unwarned items go first, warned ones last, so a warning pass stops at the first warned. */
static void mlist_insert(struct msg *m, struct item *it)
{
	if (it->flags & ITEM_WARNED) {
		it->mprev = m->tail;
		it->mnext = NULL;
		if (m->tail)
			m->tail->mnext = it;
		else
			m->head = it;
		m->tail = it;
		return;
	}
	it->mprev = NULL;
	it->mnext = m->head;
	if (m->head)
		m->head->mprev = it;
	else
		m->tail = it;
	m->head = it;
}

/* ---- queued <-> in flight ---- */

static void count_queued(struct msg *m, const struct item *it, int delta)
{
	m->n_queued += (size_t)delta;
	if (!(it->flags & ITEM_WARNED))
		m->n_unwarned += (size_t)delta;
}

/* Takes a queued item out of its group's heap (the caller refreshes the group). */
static void item_dequeue(struct item *it)
{
	heap_del(&it->group->items, &it->hn);
	count_queued(it->msg, it, -1);
}

static void item_enqueue(struct scheduler *s, struct item *it, uint64_t due)
{
	it->hn.key = due;
	heap_push(&it->group->items, &it->hn);
	count_queued(it->msg, it, +1);
	msg_rearm(s, it->msg);
	group_refresh(s, it->group);
}

/* ---- creation and destruction ---- */

static void msg_destroy(struct scheduler *s, struct msg *m)
{
	heap_drop(&s->expiry, &m->exp);
	heap_drop(&s->warning, &m->warn);
	htab_unlink(&s->msgs, &m->hl);
	free(m);
}

static void group_destroy(struct scheduler *s, struct group *g)
{
	struct dest *d = g->dest;
	heap_drop(&d->groups, &g->hn);
	htab_unlink(&s->groups, &g->hl);
	free(g->items.v);
	free(g);
	d->n_groups--;
}

/*
 * Frees an item (queued or not in any heap) and whatever it leaves empty. The
 * destination may be freed too: the caller must not use it afterwards.
 */
static void item_destroy(struct scheduler *s, struct item *it)
{
	struct msg *m = it->msg;
	struct group *g = it->group;
	struct dest *d = g->dest;
	if (it->hn.pos != NPOS)
		item_dequeue(it);
	mlist_unlink(m, it);
	htab_unlink(&s->items, &it->hl);
	free(it);
	s->n_items--;
	m->n_items--;
	d->n_items--;
	if (m->n_items == 0)
		msg_destroy(s, m);
	else
		msg_rearm(s, m);
	if (--g->n_items == 0) {
		group_destroy(s, g);
		dest_place(s, d);
	} else {
		group_refresh(s, g);
	}
}

static struct msg *msg_get(struct scheduler *s, const char *id, uint64_t arrival, int *made)
{
	uint64_t h = str_hash(s, id);
	struct msg *m = msg_find(s, id, h);
	*made = 0;
	if (m)
		return m;
	if (heap_reserve(&s->expiry, s->msgs.n + 1) || heap_reserve(&s->warning, s->msgs.n + 1))
		return NULL;
	m = calloc(1, sizeof *m);
	if (m == NULL)
		return NULL;
	strcpy(m->id, id);
	m->arrival = arrival;
	m->exp.pos = m->warn.pos = NPOS;
	m->exp.tie = m->warn.tie = s->seq;
	htab_insert(&s->msgs, &m->hl, h);
	*made = 1;
	return m;
}

static struct dest *dest_get(struct scheduler *s, const char *key, int *made)
{
	uint64_t h = str_hash(s, key);
	struct dest *d = dest_find(s, key, h);
	*made = 0;
	if (d)
		return d;
	if (heap_reserve(&s->wait, s->dests.n + 1) || heap_reserve(&s->grave, s->dests.n + 1))
		return NULL;
	d = calloc(1, sizeof *d);
	if (d == NULL)
		return NULL;
	strcpy(d->key, key);
	d->hn.pos = NPOS;
	d->where = DEST_NONE;
	d->limit = strcmp(key, SCHEDULER_DEST_LOCAL) == 0 ? s->c.local_concurrency
	                                                  : s->c.dest_concurrency;
	htab_insert(&s->dests, &d->hl, h);
	*made = 1;
	return d;
}

static struct group *group_get(struct scheduler *s, struct msg *m, struct dest *d, int *made)
{
	struct group *g = group_find(s, m, d);
	*made = 0;
	if (g)
		return g;
	if (heap_reserve(&d->groups, d->n_groups + 1))
		return NULL;
	g = calloc(1, sizeof *g);
	if (g == NULL)
		return NULL;
	g->msg = m;
	g->dest = d;
	g->hn.pos = NPOS;
	htab_insert(&s->groups, &g->hl, mix2(m, (uint64_t)(uintptr_t)d));
	d->n_groups++;
	*made = 1;
	return g;
}

/* Undoes what a failed scheduler_add() created, newest first. */
static void add_undo(struct scheduler *s, struct msg *m, int new_m, struct dest *d, int new_d,
                     struct group *g, int new_g)
{
	if (new_g)
		group_destroy(s, g);
	if (new_d)
		dest_destroy(s, d);
	if (new_m)
		msg_destroy(s, m);
}

static int entry_ok(const struct scheduler_entry *e)
{
	return e && key_ok(e->msg_id, SCHEDULER_ID_MAX) && key_ok(e->dest, SCHEDULER_DEST_MAX);
}

static void item_link(struct scheduler *s, struct item *it, const struct scheduler_entry *e)
{
	it->rcpt = e->rcpt;
	it->attempts = e->attempts;
	it->flags = e->warned ? ITEM_WARNED : 0;
	it->hn.tie = s->seq++;
	htab_insert(&s->items, &it->hl, mix2(it->msg, e->rcpt));
	mlist_insert(it->msg, it);
	it->msg->n_items++;
	it->group->n_items++;
	it->group->dest->n_items++;
	s->n_items++;
	item_enqueue(s, it, e->due);
}

int scheduler_add(struct scheduler *s, const struct scheduler_entry *e)
{
	char key[SCHEDULER_DEST_MAX + 1];
	int new_m, new_d = 0, new_g = 0;
	if (!entry_ok(e))
		return SCHEDULER_EINVAL;
	fold_key(key, e->dest);
	struct msg *old = msg_find(s, e->msg_id, str_hash(s, e->msg_id));
	if (old && old->arrival != e->arrival)
		return SCHEDULER_EINVAL;
	if (old && item_find(s, old, e->rcpt))
		return SCHEDULER_EDUP;
	if (s->n_items >= s->c.max_items)
		return SCHEDULER_EFULL;
	struct msg *m = msg_get(s, e->msg_id, e->arrival, &new_m);
	struct dest *d = m ? dest_get(s, key, &new_d) : NULL;
	struct group *g = d ? group_get(s, m, d, &new_g) : NULL;
	struct item *it =
	        g && !heap_reserve(&g->items, g->n_items + 1) ? calloc(1, sizeof *it) : NULL;
	if (it == NULL) {
		add_undo(s, m, new_m, d, new_d, g, new_g);
		return SCHEDULER_ENOMEM;
	}
	it->msg = m;
	it->group = g;
	item_link(s, it, e);
	return SCHEDULER_OK;
}

/* ---- lifecycle ---- */

void scheduler_conf_defaults(struct scheduler_conf *c)
{
	memset(c, 0, sizeof *c);
	c->retry_initial = 300;
	c->retry_max = 3600;
	c->lifetime = 5 * 86400;
	c->delay_warning = 4 * 3600;
	c->dest_concurrency = 10;
	c->local_concurrency = 10;
	c->global_concurrency = 100;
	c->batch_max = 100; /* RFC 5321 4.5.3.1.8: a server buffers at least 100 */
	c->max_items = 1000000;
}

static int conf_ok(const struct scheduler_conf *c)
{
	return c->retry_initial != 0 && c->retry_max >= c->retry_initial && c->lifetime != 0 &&
	       c->dest_concurrency != 0 && c->local_concurrency != 0 &&
	       c->global_concurrency != 0 && c->global_concurrency <= SCHEDULER_CONCURRENCY_MAX &&
	       c->batch_max != 0 && c->batch_max <= SCHEDULER_BATCH_MAX;
}

struct scheduler *scheduler_new(const struct scheduler_conf *c)
{
	if (c == NULL || !conf_ok(c))
		return NULL;
	struct scheduler *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->c = *c;
	s->jobs = calloc(c->global_concurrency, sizeof *s->jobs);
	if (s->jobs == NULL || htab_init(&s->msgs) || htab_init(&s->dests) ||
	    htab_init(&s->groups) || htab_init(&s->items)) {
		scheduler_free(s);
		return NULL;
	}
	for (uint32_t i = c->global_concurrency; i-- > 0;) {
		s->jobs[i].next_free = s->free_jobs;
		s->free_jobs = &s->jobs[i];
	}
	return s;
}

/* Frees every record of one table; each record kind frees its own heap array. */
static void free_msgs(struct htab *t)
{
	for (size_t i = 0; t->b && i <= t->mask; i++)
		for (struct hlink *l = t->b[i], *next; l; l = next) {
			next = l->next;
			free(OWNER(l, struct msg, hl));
		}
	free(t->b);
}

static void free_items(struct htab *t)
{
	for (size_t i = 0; t->b && i <= t->mask; i++)
		for (struct hlink *l = t->b[i], *next; l; l = next) {
			next = l->next;
			free(OWNER(l, struct item, hl));
		}
	free(t->b);
}

static void free_groups(struct htab *t)
{
	for (size_t i = 0; t->b && i <= t->mask; i++)
		for (struct hlink *l = t->b[i], *next; l; l = next) {
			next = l->next;
			struct group *g = OWNER(l, struct group, hl);
			free(g->items.v);
			free(g);
		}
	free(t->b);
}

static void free_dests(struct htab *t)
{
	for (size_t i = 0; t->b && i <= t->mask; i++)
		for (struct hlink *l = t->b[i], *next; l; l = next) {
			next = l->next;
			struct dest *d = OWNER(l, struct dest, hl);
			free(d->groups.v);
			free(d);
		}
	free(t->b);
}

void scheduler_free(struct scheduler *s)
{
	if (s == NULL)
		return;
	free_items(&s->items);
	free_groups(&s->groups);
	free_dests(&s->dests);
	free_msgs(&s->msgs);
	free(s->wait.v);
	free(s->grave.v);
	free(s->expiry.v);
	free(s->warning.v);
	free(s->jobs);
	free(s);
}

/* ---- taking jobs ---- */

static void note_now(struct scheduler *s, uint64_t now)
{
	if (now > s->now)
		s->now = now;
}

static void job_start(struct scheduler_job *out, enum scheduler_job_kind kind, const struct msg *m,
                      const char *dest)
{
	out->kind = kind;
	strcpy(out->msg_id, m->id);
	strcpy(out->dest, dest);
	out->arrival = m->arrival;
	out->n = 0;
}

static void job_add(struct scheduler_job *out, const struct item *it)
{
	out->rcpts[out->n].rcpt = it->rcpt;
	out->rcpts[out->n].attempts = it->attempts;
	out->n++;
}

/*
 * After the lifetime (RFC 5321 4.5.4.1: give up after 4-5 days; the caller
 * reports Action: failed, RFC 3464 2.3.3, with status 4.4.7, RFC 3463): every
 * queued item of the message, whether its destination is dead or not.
 */
static int take_expired(struct scheduler *s, uint64_t now, struct scheduler_job *out)
{
	struct hnode *top = heap_top(&s->expiry);
	if (top == NULL || top->key > now)
		return 0;
	struct msg *m = OWNER(top, struct msg, exp);
	job_start(out, SCHEDULER_JOB_EXPIRE, m, "");
	struct item *it = m->head, *next;
	int last = 0;
	for (; it && out->n < s->c.batch_max && !last; it = next) {
		next = it->mnext;
		if (it->job)
			continue;
		job_add(out, it);
		last = m->n_items == 1; /* the message goes with its last item */
		item_destroy(s, it);
	}
	return 1;
}

/* Action: delayed (RFC 3464 2.3.3): once per item; items in flight when they come back. */
static int take_warning(struct scheduler *s, uint64_t now, struct scheduler_job *out)
{
	struct hnode *top = heap_top(&s->warning);
	if (top == NULL || top->key > now)
		return 0;
	struct msg *m = OWNER(top, struct msg, warn);
	job_start(out, SCHEDULER_JOB_DELAY, m, "");
	struct item *it = m->head, *next;
	for (; it && !(it->flags & ITEM_WARNED) && out->n < s->c.batch_max; it = next) {
		next = it->mnext;
		if (it->job)
			continue;
		job_add(out, it);
		m->n_unwarned--;
		it->flags |= ITEM_WARNED;
		mlist_unlink(m, it);
		mlist_insert(m, it);
	}
	msg_rearm(s, m);
	return 1;
}

static int dest_ready(const struct dest *d, uint64_t now)
{
	struct hnode *top = heap_top(&d->groups);
	return top && top->key <= now && d->dead_until <= now && d->in_flight < dest_limit(d);
}

/* The due items of d's earliest group, up to batch_max, into a new job in flight. */
static void take_batch(struct scheduler *s, struct dest *d, uint64_t now, struct scheduler_job *out)
{
	struct group *g = OWNER(heap_top(&d->groups), struct group, hn);
	struct job *j = s->free_jobs;
	s->free_jobs = j->next_free;
	j->dest = d;
	j->remaining = 0;
	job_start(out, SCHEDULER_JOB_DELIVER, g->msg, d->key);
	struct hnode *top;
	while (out->n < s->c.batch_max && (top = heap_top(&g->items)) && top->key <= now) {
		struct item *it = OWNER(top, struct item, hn);
		item_dequeue(it);
		it->job = j;
		j->remaining++;
		job_add(out, it);
	}
	d->in_flight++;
	s->jobs_in_flight++;
	msg_rearm(s, g->msg);
	group_refresh(s, g);
}

/* Destinations whose wait is over join the ring, earliest first; the forgotten dead go. */
static void wake_dests(struct scheduler *s, uint64_t now)
{
	struct hnode *top;
	while ((top = heap_top(&s->grave)) && top->key <= now)
		dest_idle(s, OWNER(top, struct dest, hn));
	while ((top = heap_top(&s->wait)) && top->key <= now) {
		struct dest *d = OWNER(top, struct dest, hn);
		dest_unplace(s, d);
		ring_append(s, d);
	}
}

static int take_delivery(struct scheduler *s, uint64_t now, struct scheduler_job *out)
{
	if (s->jobs_in_flight >= s->c.global_concurrency)
		return 0;
	wake_dests(s, now);
	struct dest *d;
	while ((d = s->ring_head) != NULL) {
		dest_unplace(s, d);
		if (dest_ready(d, now)) {
			take_batch(s, d, now, out);
			return 1;
		}
		dest_place(s, d);
	}
	return 0;
}

int scheduler_next(struct scheduler *s, uint64_t now, struct scheduler_job *out)
{
	note_now(s, now);
	return take_expired(s, now, out) || take_warning(s, now, out) || take_delivery(s, now, out);
}

int scheduler_next_dest(struct scheduler *s, const char *dest, uint64_t now,
                        struct scheduler_job *out)
{
	note_now(s, now);
	struct dest *d = dest_by_key(s, dest);
	if (d == NULL || s->jobs_in_flight >= s->c.global_concurrency || !dest_ready(d, now))
		return 0;
	struct group *g = OWNER(heap_top(&d->groups), struct group, hn);
	if (msg_expiry(s, g->msg) <= now)
		return 0;
	take_batch(s, d, now, out);
	return 1;
}

/* ---- results ---- */

/* A connection-level failure kills d for the next back-off step; any answer revives it. */
static void dest_note(struct scheduler *s, struct dest *d, enum scheduler_outcome o, uint64_t now)
{
	if (o != SCHEDULER_DEFER_DEST) {
		d->failures = 0;
		d->dead_until = 0;
		return;
	}
	if (d->dead_until > now)
		return; /* another connection of the same outage */
	if (d->failures < UINT32_MAX)
		d->failures++;
	d->dead_until = sat_add(now, backoff(s->c.retry_initial, s->c.retry_max, d->failures));
}

static void job_finish(struct scheduler *s, struct job *j)
{
	if (--j->remaining != 0)
		return;
	j->dest->in_flight--;
	s->jobs_in_flight--;
	j->next_free = s->free_jobs;
	s->free_jobs = j;
}

static int outcome_ok(enum scheduler_outcome o)
{
	return o == SCHEDULER_DELIVERED || o == SCHEDULER_FAILED || o == SCHEDULER_DEFER_RCPT ||
	       o == SCHEDULER_DEFER_DEST;
}

int scheduler_result(struct scheduler *s, const char *msg_id, uint32_t rcpt,
                     enum scheduler_outcome o, uint64_t now, uint64_t *next_try)
{
	note_now(s, now);
	struct item *it = item_by_id(s, msg_id, rcpt);
	if (it == NULL || it->job == NULL || !outcome_ok(o))
		return -1;
	struct dest *d = it->group->dest;
	job_finish(s, it->job);
	it->job = NULL;
	dest_note(s, d, o, now);
	if (it->attempts < UINT32_MAX)
		it->attempts++;
	uint64_t due = 0;
	if (o == SCHEDULER_DEFER_RCPT)
		due = sat_add(now, backoff(s->c.retry_initial, s->c.retry_max, it->attempts));
	else if (o == SCHEDULER_DEFER_DEST)
		due = now; /* it waits for its destination, not for itself */
	if (next_try)
		*next_try = 0;
	if (due == 0 || (it->flags & ITEM_REMOVED)) {
		item_destroy(s, it);
		return 0;
	}
	if (next_try)
		*next_try = max_u64(due, d->dead_until);
	item_enqueue(s, it, due);
	return 0;
}

/* ---- flush, remove ---- */

/* Ends d's dead period now; the failure count stays, so its next job is a single probe. */
static void dest_revive(struct scheduler *s, struct dest *d, uint64_t now)
{
	if (d->dead_until > now)
		d->dead_until = now;
	dest_place(s, d);
}

static size_t flush_item(struct scheduler *s, struct item *it, uint64_t now)
{
	size_t n = 0;
	if (it->hn.pos != NPOS && it->hn.key > now) {
		heap_set(&it->group->items, &it->hn, now, it->hn.tie);
		n = 1;
	}
	struct dest *d = it->group->dest;
	if (d->dead_until > now)
		d->dead_until = now;
	group_refresh(s, it->group);
	return n;
}

static size_t flush_msg(struct scheduler *s, struct msg *m, uint64_t now)
{
	size_t n = 0;
	for (struct item *it = m->head; it; it = it->mnext)
		n += flush_item(s, it, now);
	return n;
}

size_t scheduler_flush(struct scheduler *s, const char *msg_id, uint64_t now)
{
	note_now(s, now);
	if (msg_id != NULL) {
		if (!key_ok(msg_id, SCHEDULER_ID_MAX))
			return 0;
		struct msg *m = msg_find(s, msg_id, str_hash(s, msg_id));
		return m ? flush_msg(s, m, now) : 0;
	}
	size_t n = 0;
	for (size_t i = 0; i <= s->msgs.mask; i++)
		for (struct hlink *l = s->msgs.b[i]; l; l = l->next)
			n += flush_msg(s, OWNER(l, struct msg, hl), now);
	for (size_t i = 0; i <= s->dests.mask; i++)
		for (struct hlink *l = s->dests.b[i], *next; l; l = next) {
			next = l->next;
			dest_revive(s, OWNER(l, struct dest, hl), now);
		}
	return n;
}

int scheduler_remove(struct scheduler *s, const char *msg_id)
{
	if (!key_ok(msg_id, SCHEDULER_ID_MAX))
		return -1;
	struct msg *m = msg_find(s, msg_id, str_hash(s, msg_id));
	if (m == NULL)
		return -1;
	int n = 0;
	struct item *it = m->head, *next;
	for (int last = 0; it && !last; it = next, n++) {
		next = it->mnext;
		if (it->job) {
			it->flags |= ITEM_REMOVED;
			continue;
		}
		last = m->n_items == 1;
		item_destroy(s, it);
	}
	return n;
}

/* ---- inspection ---- */

uint64_t scheduler_next_wakeup(const struct scheduler *s)
{
	uint64_t t = SCHEDULER_NEVER;
	struct hnode *top;
	if ((top = heap_top(&s->expiry)) && top->key < t)
		t = top->key;
	if ((top = heap_top(&s->warning)) && top->key < t)
		t = top->key;
	if (s->jobs_in_flight >= s->c.global_concurrency)
		return t;
	if (s->ring_head && s->now < t)
		t = s->now;
	if ((top = heap_top(&s->wait)) && top->key < t)
		t = top->key;
	return t;
}

int scheduler_lookup(const struct scheduler *s, const char *msg_id, uint32_t rcpt,
                     struct scheduler_item_info *info)
{
	struct item *it = item_by_id(s, msg_id, rcpt);
	if (it == NULL || (it->flags & ITEM_REMOVED))
		return -1;
	info->in_flight = it->job != NULL;
	info->next_try = it->job ? 0 : max_u64(it->hn.key, it->group->dest->dead_until);
	info->attempts = it->attempts;
	info->warned = (it->flags & ITEM_WARNED) != 0;
	return 0;
}

int scheduler_dest_lookup(const struct scheduler *s, const char *dest,
                          struct scheduler_dest_info *info)
{
	struct dest *d = dest_by_key(s, dest);
	if (d == NULL)
		return -1;
	info->dead_until = d->dead_until;
	info->failures = d->failures;
	info->in_flight = d->in_flight;
	info->items = d->n_items;
	return 0;
}

size_t scheduler_count(const struct scheduler *s)
{
	return s->n_items;
}
