/* minger_replay: see minger_replay.h. */
#include "minger/minger_replay.h"

#include <pthread.h>
#include <stdlib.h>

/* Slots searched from a nonce's hash; a full window means "refuse", never "forget". */
#define REPLAY_PROBE 32

struct replay_entry {
	uint64_t nonce;
	int64_t expires; /* 0 (calloc): never used, i.e. expired for any real clock */
};

struct minger_replay {
	pthread_mutex_t mu;
	struct replay_entry *v;
	size_t slots;
	uint64_t seed;
};

size_t minger_replay_slots_for(uint32_t rate_global, int window_s)
{
	if (rate_global == 0)
		return MINGER_REPLAY_MAX_SLOTS;
	uint64_t w = window_s > 0 ? (uint64_t)window_s : 0;
	uint64_t n = (uint64_t)rate_global * (2 * w + 1) * 2;
	if (n < MINGER_REPLAY_MIN_SLOTS)
		return MINGER_REPLAY_MIN_SLOTS;
	return n > MINGER_REPLAY_MAX_SLOTS ? MINGER_REPLAY_MAX_SLOTS : (size_t)n;
}

struct minger_replay *minger_replay_new(size_t slots, uint64_t seed)
{
	struct minger_replay *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->slots = slots ? slots : 1;
	r->v = calloc(r->slots, sizeof *r->v);
	if (!r->v || pthread_mutex_init(&r->mu, NULL) != 0) {
		free(r->v);
		free(r);
		return NULL;
	}
	/* Left zeroed: untouched pages of a large cache cost no memory until used. */
	r->seed = seed;
	return r;
}

void minger_replay_free(struct minger_replay *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r->v);
	free(r);
}

/* The nonce's 64 bits; the codec guarantees hex, anything else still maps deterministically. */
static uint64_t nonce_value(const char *nonce)
{
	uint64_t v = 0;
	for (int i = 0; i < 16 && nonce[i]; i++) {
		unsigned char c = (unsigned char)nonce[i];
		unsigned d = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
		v = v << 4 | (d & 0xf);
	}
	return v;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

enum minger_replay_result minger_replay_check(struct minger_replay *r, const char *nonce,
                                              int64_t expires_s, int64_t now_s)
{
	uint64_t key = nonce_value(nonce);
	size_t i = (size_t)(mix(key ^ r->seed) % r->slots);
	size_t probe = r->slots < REPLAY_PROBE ? r->slots : REPLAY_PROBE;
	struct replay_entry *free_slot = NULL;
	enum minger_replay_result res = MINGER_REPLAY_FULL;
	pthread_mutex_lock(&r->mu);
	/* The whole window is searched: expired slots are reused, so a match may lie past one. */
	for (size_t n = 0; n < probe; n++, i = i + 1 == r->slots ? 0 : i + 1) {
		struct replay_entry *e = &r->v[i];
		if (e->expires < now_s || e->expires == 0) {
			if (!free_slot)
				free_slot = e;
		} else if (e->nonce == key) {
			res = MINGER_REPLAY_SEEN;
			break;
		}
	}
	if (res != MINGER_REPLAY_SEEN && free_slot) {
		free_slot->nonce = key;
		free_slot->expires = expires_s;
		res = MINGER_REPLAY_NEW;
	}
	pthread_mutex_unlock(&r->mu);
	return res;
}

size_t minger_replay_live(struct minger_replay *r, int64_t now_s)
{
	size_t n = 0;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->slots; i++)
		n += r->v[i].expires >= now_s && r->v[i].expires != 0;
	pthread_mutex_unlock(&r->mu);
	return n;
}
