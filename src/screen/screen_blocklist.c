/*
 * screen_blocklist: see screen_blocklist.h. Open addressing over a window of
 * SCREEN_BLOCKLIST_PROBE slots from the key's hash; a lookup always scans the
 * whole window (entries are deleted, so a free slot does not end the search).
 */
#include "screen/screen_blocklist.h"

#include <stdlib.h>
#include <string.h>

struct bslot {
	struct screen_entry e;
	int used;
};

struct screen_blocklist {
	struct bslot *v;
	size_t slots, count, cursor; /* cursor: where the next expire pass starts */
	uint64_t seed, evictions;
};

struct screen_blocklist *screen_blocklist_new(size_t slots, uint64_t seed)
{
	struct screen_blocklist *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	b->slots = slots ? slots : 1;
	b->v = calloc(b->slots, sizeof *b->v);
	if (!b->v) {
		free(b);
		return NULL;
	}
	b->seed = seed;
	return b;
}

void screen_blocklist_free(struct screen_blocklist *b)
{
	if (!b)
		return;
	free(b->v);
	free(b);
}

static size_t window(const struct screen_blocklist *b, const struct screen_key *key, size_t *probe)
{
	*probe = b->slots < SCREEN_BLOCKLIST_PROBE ? b->slots : SCREEN_BLOCKLIST_PROBE;
	return (size_t)(screen_key_hash(key, b->seed) % b->slots);
}

static size_t next(const struct screen_blocklist *b, size_t i)
{
	return i + 1 == b->slots ? 0 : i + 1;
}

static struct bslot *find_slot(const struct screen_blocklist *b, const struct screen_key *key)
{
	size_t probe, i = window(b, key, &probe);
	for (size_t n = 0; n < probe; n++, i = next(b, i))
		if (b->v[i].used && memcmp(&b->v[i].e.key, key, sizeof *key) == 0)
			return &b->v[i];
	return NULL;
}

/* A free slot of the window, else an expired one, else the one expiring soonest. */
static struct bslot *victim_slot(struct screen_blocklist *b, const struct screen_key *key)
{
	size_t probe, i = window(b, key, &probe);
	struct bslot *victim = NULL;
	for (size_t n = 0; n < probe; n++, i = next(b, i)) {
		struct bslot *s = &b->v[i];
		if (!s->used)
			return s;
		if (!victim || s->e.until < victim->e.until)
			victim = s;
	}
	return victim;
}

int screen_blocklist_put(struct screen_blocklist *b, const struct screen_entry *e, int64_t now)
{
	struct bslot *s = find_slot(b, &e->key);
	int evicted = 0;
	if (!s) {
		s = victim_slot(b, &e->key);
		if (s->used && s->e.until > now) {
			evicted = 1;
			b->evictions++;
		}
		if (!s->used)
			b->count++;
	}
	s->e = *e;
	s->e.reason[SCREEN_REASON_MAX - 1] = '\0';
	s->used = 1;
	return evicted;
}

const struct screen_entry *screen_blocklist_find(const struct screen_blocklist *b,
                                                 const struct screen_key *key, int64_t now)
{
	const struct bslot *s = find_slot(b, key);
	return s && s->e.until > now ? &s->e : NULL;
}

int screen_blocklist_del(struct screen_blocklist *b, const struct screen_key *key)
{
	struct bslot *s = find_slot(b, key);
	if (!s)
		return 0;
	memset(s, 0, sizeof *s);
	b->count--;
	return 1;
}

size_t screen_blocklist_expire(struct screen_blocklist *b, int64_t now, size_t budget)
{
	size_t gone = 0;
	if (budget > b->slots)
		budget = b->slots;
	for (size_t n = 0; n < budget && b->count > 0; n++, b->cursor = next(b, b->cursor)) {
		struct bslot *s = &b->v[b->cursor];
		if (s->used && s->e.until <= now) {
			memset(s, 0, sizeof *s);
			b->count--;
			gone++;
		}
	}
	return gone;
}

void screen_blocklist_each(const struct screen_blocklist *b,
                           int (*fn)(void *arg, const struct screen_entry *e), void *arg)
{
	for (size_t i = 0; i < b->slots; i++)
		if (b->v[i].used && fn(arg, &b->v[i].e) != 0)
			return;
}

size_t screen_blocklist_merge_newer(struct screen_blocklist *into,
                                    const struct screen_blocklist *from, uint64_t after,
                                    int64_t now)
{
	size_t n = 0;
	for (size_t i = 0; i < from->slots; i++) {
		const struct bslot *s = &from->v[i];
		if (s->used && s->e.seq > after && s->e.until > now) {
			screen_blocklist_put(into, &s->e, now);
			n++;
		}
	}
	return n;
}

size_t screen_blocklist_count(const struct screen_blocklist *b)
{
	return b->count;
}

size_t screen_blocklist_slots(const struct screen_blocklist *b)
{
	return b->slots;
}

uint64_t screen_blocklist_evictions(const struct screen_blocklist *b)
{
	return b->evictions;
}
