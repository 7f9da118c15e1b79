/* minger_ratelimit: see minger_ratelimit.h. */
#include "minger/minger_ratelimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* How many slots from a source's hash are searched before one is evicted. */
#define SRC_PROBE 8
/* Tokens are counted in 1/1000ths so that a refill every millisecond counts. */
#define TOKEN 1000u

struct src_entry {
	uint8_t key[16];
	uint32_t tokens; /* in 1/1000ths */
	uint64_t last_ms;
	uint64_t seq; /* when last seen, in lookups (0: free): recency without clock ties */
};

struct minger_source_table {
	struct src_entry *v;
	size_t slots;
	size_t used;
	uint32_t rate;
	uint64_t seed;
	uint64_t seq;
	uint64_t evictions;
};

struct minger_global_limit {
	pthread_mutex_t mu;
	uint32_t rate;
	uint64_t tokens; /* in 1/1000ths */
	uint64_t last_ms;
	int started;
};

static uint32_t clamp_rate(uint32_t rate)
{
	if (rate == 0)
		return 1;
	return rate > MINGER_RATE_MAX ? MINGER_RATE_MAX : rate;
}

/* The bucket holds one second's worth of tokens (the burst). */
static uint64_t bucket_cap(uint32_t rate)
{
	return (uint64_t)rate * TOKEN;
}

/* Adds rate tokens per second for the time since last; a clock going back adds nothing. */
static uint64_t bucket_refill(uint64_t tokens, uint64_t last, uint64_t now, uint32_t rate)
{
	uint64_t cap = bucket_cap(rate);
	if (now <= last)
		return tokens > cap ? cap : tokens;
	uint64_t elapsed = now - last;
	if (elapsed > 1000) /* a full second refills any bucket */
		return cap;
	tokens += elapsed * rate;
	return tokens > cap ? cap : tokens;
}

/*
 * The key of a source: its IPv4 address (as IPv4-mapped IPv6), or the /64 of its
 * IPv6 address, since one IPv6 host usually controls a whole /64 (RFC 4291 2.5.1).
 */
static void source_key(const struct sockaddr *sa, uint8_t key[16])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		memcpy(key, mapped, 12);
		memcpy(key + 12, &s4->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		if (memcmp(s6->sin6_addr.s6_addr, mapped, 12) == 0)
			memcpy(key, s6->sin6_addr.s6_addr, 16);
		else
			memcpy(key, s6->sin6_addr.s6_addr, 8);
	}
}

/* A keyed mix of the 16-byte key (not cryptographic; the random seed spreads attackers). */
static uint64_t key_hash(const uint8_t key[16], uint64_t seed)
{
	uint64_t a, b;
	memcpy(&a, key, 8);
	memcpy(&b, key + 8, 8);
	uint64_t h = (a ^ seed) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 32;
	h = (h ^ b ^ (seed >> 17 | seed << 47)) * 0xbf58476d1ce4e5b9ull;
	h ^= h >> 31;
	h *= 0x94d049bb133111ebull;
	return h ^ (h >> 29);
}

struct minger_source_table *minger_source_table_new(size_t slots, uint32_t rate, uint64_t seed)
{
	struct minger_source_table *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->slots = slots ? slots : 1;
	t->v = calloc(t->slots, sizeof *t->v);
	if (!t->v) {
		free(t);
		return NULL;
	}
	t->rate = clamp_rate(rate);
	t->seed = seed;
	return t;
}

void minger_source_table_free(struct minger_source_table *t)
{
	if (!t)
		return;
	free(t->v);
	free(t);
}

/*
 * Finds the source's slot in its probe window, or claims one: a free slot, else
 * the least recently seen source of the window (evicted).
 */
static struct src_entry *source_slot(struct minger_source_table *t, const uint8_t key[16])
{
	size_t i = (size_t)(key_hash(key, t->seed) % t->slots);
	size_t probe = t->slots < SRC_PROBE ? t->slots : SRC_PROBE;
	struct src_entry *victim = NULL;
	for (size_t n = 0; n < probe; n++, i = i + 1 == t->slots ? 0 : i + 1) {
		struct src_entry *e = &t->v[i];
		if (!e->seq) {
			/* Slots are never freed, so the key cannot lie past a free one. */
			victim = e;
			break;
		}
		if (memcmp(e->key, key, 16) == 0)
			return e;
		if (!victim || e->seq < victim->seq)
			victim = e;
	}
	if (victim->seq)
		t->evictions++;
	else
		t->used++;
	memcpy(victim->key, key, 16);
	victim->tokens = (uint32_t)bucket_cap(t->rate);
	victim->last_ms = 0;
	return victim;
}

int minger_source_table_allow(struct minger_source_table *t, const struct sockaddr *sa,
                              uint64_t now_ms)
{
	uint8_t key[16];
	source_key(sa, key);
	struct src_entry *e = source_slot(t, key);
	e->seq = ++t->seq;
	uint64_t tokens = bucket_refill(e->tokens, e->last_ms, now_ms, t->rate);
	if (now_ms > e->last_ms)
		e->last_ms = now_ms;
	if (tokens < TOKEN) {
		e->tokens = (uint32_t)tokens;
		return 0;
	}
	e->tokens = (uint32_t)(tokens - TOKEN);
	return 1;
}

size_t minger_source_table_used(const struct minger_source_table *t)
{
	return t->used;
}

size_t minger_source_table_slots(const struct minger_source_table *t)
{
	return t->slots;
}

uint64_t minger_source_table_evictions(const struct minger_source_table *t)
{
	return t->evictions;
}

struct minger_global_limit *minger_global_limit_new(uint32_t rate)
{
	struct minger_global_limit *g = calloc(1, sizeof *g);
	if (!g)
		return NULL;
	if (pthread_mutex_init(&g->mu, NULL) != 0) {
		free(g);
		return NULL;
	}
	g->rate = clamp_rate(rate);
	g->tokens = bucket_cap(g->rate);
	return g;
}

void minger_global_limit_free(struct minger_global_limit *g)
{
	if (!g)
		return;
	pthread_mutex_destroy(&g->mu);
	free(g);
}

uint32_t minger_global_limit_take(struct minger_global_limit *g, uint64_t now_ms, uint32_t want)
{
	pthread_mutex_lock(&g->mu);
	if (!g->started) {
		g->started = 1;
		g->last_ms = now_ms;
	}
	g->tokens = bucket_refill(g->tokens, g->last_ms, now_ms, g->rate);
	if (now_ms > g->last_ms)
		g->last_ms = now_ms;
	uint64_t have = g->tokens / TOKEN;
	uint32_t granted = have < want ? (uint32_t)have : want;
	g->tokens -= (uint64_t)granted * TOKEN;
	pthread_mutex_unlock(&g->mu);
	return granted;
}

void minger_global_limit_give_back(struct minger_global_limit *g, uint32_t n)
{
	pthread_mutex_lock(&g->mu);
	g->tokens += (uint64_t)n * TOKEN;
	if (g->tokens > bucket_cap(g->rate))
		g->tokens = bucket_cap(g->rate);
	pthread_mutex_unlock(&g->mu);
}
