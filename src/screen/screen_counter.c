/*
 * screen_counter: see screen_counter.h. A slot is a header followed by a ring of
 * COUNT-1 event times (uint32 seconds since the epoch: good until 2106), all
 * slots in one array of fixed-size records.
 */
#include "screen/screen_counter.h"

#include <stdlib.h>
#include <string.h>

/* How many slots from a key's hash are searched before one is evicted. */
#define PROBE 8

struct slot {
	struct screen_key key;
	uint64_t seq; /* when last seen, in notes (0: free): recency without clock ties */
	uint32_t n; /* event times held (at most COUNT-1) */
	uint32_t head; /* ring index of the oldest */
	/* followed by uint32_t times[ring] */
};

struct screen_counter {
	unsigned char *v;
	size_t slots, used, stride;
	uint32_t count, ring;
	int64_t seconds;
	uint64_t seed, seq, evictions;
};

static struct slot *slot_at(const struct screen_counter *c, size_t i)
{
	return (struct slot *)(void *)(c->v + i * c->stride);
}

static uint32_t *times_of(struct slot *s)
{
	return (uint32_t *)(void *)(s + 1);
}

struct screen_counter *screen_counter_new(size_t slots, int count, int seconds, uint64_t seed)
{
	struct screen_counter *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	if (count < 0)
		count = 0;
	if (count > SCREEN_COUNTER_COUNT_MAX)
		count = SCREEN_COUNTER_COUNT_MAX;
	c->count = (uint32_t)count;
	c->ring = count > 1 ? (uint32_t)count - 1 : 0;
	c->seconds = seconds > 0 ? seconds : 1;
	c->seed = seed;
	/* Records stay 8-aligned: the header holds a uint64_t. */
	c->stride = (sizeof(struct slot) + c->ring * sizeof(uint32_t) + 7) & ~(size_t)7;
	c->slots = slots ? slots : 1;
	if (c->slots > SCREEN_COUNTER_BYTES_MAX / c->stride)
		c->slots = SCREEN_COUNTER_BYTES_MAX / c->stride;
	c->v = calloc(c->slots, c->stride);
	if (!c->v) {
		free(c);
		return NULL;
	}
	return c;
}

void screen_counter_free(struct screen_counter *c)
{
	if (!c)
		return;
	free(c->v);
	free(c);
}

/* The key's slot in its probe window, or NULL. */
static struct slot *find(const struct screen_counter *c, const struct screen_key *key)
{
	size_t i = (size_t)(screen_key_hash(key, c->seed) % c->slots);
	size_t probe = c->slots < PROBE ? c->slots : PROBE;
	for (size_t n = 0; n < probe; n++, i = i + 1 == c->slots ? 0 : i + 1) {
		struct slot *s = slot_at(c, i);
		if (s->seq && memcmp(&s->key, key, sizeof *key) == 0)
			return s;
	}
	return NULL;
}

/* The key's slot, or a new one: a free slot of the window, else its least recent key's. */
static struct slot *claim(struct screen_counter *c, const struct screen_key *key)
{
	struct slot *s = find(c, key);
	if (s)
		return s;
	size_t i = (size_t)(screen_key_hash(key, c->seed) % c->slots);
	size_t probe = c->slots < PROBE ? c->slots : PROBE;
	struct slot *victim = NULL;
	for (size_t n = 0; n < probe; n++, i = i + 1 == c->slots ? 0 : i + 1) {
		s = slot_at(c, i);
		if (!s->seq) {
			victim = s;
			break;
		}
		if (!victim || s->seq < victim->seq)
			victim = s;
	}
	if (victim->seq)
		c->evictions++;
	else
		c->used++;
	memset(victim, 0, c->stride);
	victim->key = *key;
	return victim;
}

/* Drops the times that are DURATION old or older at now. */
static void expire(const struct screen_counter *c, struct slot *s, int64_t now)
{
	uint32_t *t = times_of(s);
	while (s->n > 0 && now - (int64_t)t[s->head] >= c->seconds) {
		s->head = s->head + 1 == c->ring ? 0 : s->head + 1;
		s->n--;
	}
}

int screen_counter_note(struct screen_counter *c, const struct screen_key *key, int64_t now)
{
	if (c->count == 0)
		return 0;
	struct slot *s = claim(c, key);
	s->seq = ++c->seq;
	expire(c, s, now);
	uint32_t inside = s->n + 1;
	if (inside >= c->count) {
		s->n = 0; /* triggered: count again from zero */
		s->head = 0;
		return (int)c->count;
	}
	uint32_t *t = times_of(s);
	uint32_t tail = (s->head + s->n) % c->ring;
	t[tail] = now < 0 ? 0 : now > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)now;
	s->n++;
	return (int)inside;
}

int screen_counter_peek(const struct screen_counter *c, const struct screen_key *key, int64_t now)
{
	struct slot *s = c->count ? find(c, key) : NULL;
	if (!s)
		return 0;
	const uint32_t *t = times_of(s);
	int inside = 0;
	for (uint32_t k = 0; k < s->n; k++)
		inside += now - (int64_t)t[(s->head + k) % c->ring] < c->seconds;
	return inside;
}

void screen_counter_forget(struct screen_counter *c, const struct screen_key *key)
{
	struct slot *s = c->count ? find(c, key) : NULL;
	if (s) {
		s->n = 0;
		s->head = 0;
	}
}

size_t screen_counter_slots(const struct screen_counter *c)
{
	return c->slots;
}

size_t screen_counter_used(const struct screen_counter *c)
{
	return c->used;
}

uint64_t screen_counter_evictions(const struct screen_counter *c)
{
	return c->evictions;
}
