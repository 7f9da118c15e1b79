/*
 * fuzz_queue_file: libFuzzer target for queue/queue_file, the parser of queue
 * files (which must survive any bytes). The first octet picks a mode:
 *   0  the rest is a whole message file (version 1 or 2), also tried as a state
 *      file
 *   1  the rest is an envelope records section, wrapped as a version 2 message
 *      file with correct digests (random bytes would otherwise almost never get
 *      past the SHA-256)
 *   2  the rest is a state records section after one octet that picks the
 *      version (1-3) and the number of recipients (0-3), wrapped likewise
 *   3  as 1, wrapped as a version 1 message file
 *   4  the rest is a status line: envelope_reply_join(envelope_reply_split(s))
 *      must give s back
 * Whatever parses must encode again (as the current version) to a file that
 * parses to the same envelope or states. A violated invariant traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "queue/queue_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Routes: NULL and "" both mean "not routed". */
static int same_route(const char *a, const char *b)
{
	return same(a && *a ? a : NULL, b && *b ? b : NULL);
}

/* magic + d + recs + END: version 2's (D1, D2) for QUEUE_FILE_MAGIC, else one digest. */
static void wrap(struct queue_buf *out, const char *magic, const uint8_t *d, size_t dl,
                 const uint8_t *recs, size_t rl)
{
	uint8_t digest[QUEUE_FILE_DIGEST_LEN];
	out->len = 0;
	require(queue_buf_add(out, magic, QUEUE_FILE_MAGIC_LEN) == 0);
	require(queue_buf_add(out, d, dl) == 0);
	if (strcmp(magic, QUEUE_FILE_MAGIC) == 0) {
		require(EVP_Digest(out->p, out->len, digest, NULL, EVP_sha256(), NULL) == 1);
		require(queue_buf_add(out, recs, rl) == 0);
		require(queue_file_encode_end(dl, digest, recs, rl, out) == 0);
		return;
	}
	require(queue_buf_add(out, recs, rl) == 0);
	require(EVP_Digest(out->p, out->len, digest, NULL, EVP_sha256(), NULL) == 1);
	require(queue_file_encode_end_v1(dl, digest, out) == 0);
}

/* Encodes env again and checks the result parses to the same envelope. */
static void round_trip(const struct envelope *env)
{
	struct queue_buf recs = {0}, f = {0};
	struct envelope *again = NULL;
	uint64_t off, len;
	require(queue_file_encode_envelope(env, &recs) == 0);
	wrap(&f, QUEUE_FILE_MAGIC, (const uint8_t *)"d", 1, recs.p, recs.len);
	require(queue_file_parse(f.p, f.len, &again, &off, &len) == 0);
	require(off == QUEUE_FILE_MAGIC_LEN && len == 1);
	require(same(env->mail_from, again->mail_from) && same(env->envid, again->envid));
	require(same(env->helo, again->helo) && same(env->client_addr, again->client_addr));
	require(env->ret == again->ret && env->body == again->body);
	require(env->received_at == again->received_at && env->trusted == again->trusted);
	require(env->n_rcpts == again->n_rcpts);
	for (size_t i = 0; i < env->n_rcpts; i++) {
		require(same(env->rcpts[i].addr, again->rcpts[i].addr));
		require(same(env->rcpts[i].orcpt, again->rcpts[i].orcpt));
		require(env->rcpts[i].notify == again->rcpts[i].notify);
	}
	envelope_free(again);
	queue_buf_free(&recs);
	queue_buf_free(&f);
}

static struct envelope *rcpts(size_t n)
{
	struct envelope *e = envelope_new();
	require(e != NULL && envelope_set(&e->mail_from, "") == 0);
	for (size_t i = 0; i < n; i++)
		require(envelope_add_rcpt(e, "x@example.com", NULL, 0) >= 0);
	return e;
}

static void same_finals(const struct envelope_rcpt *a, const struct envelope_rcpt *b)
{
	require(a->n_finals == b->n_finals);
	for (size_t j = 0; j < a->n_finals; j++) {
		const struct envelope_final *x = &a->finals[j], *y = &b->finals[j];
		require(same(x->addr, y->addr) && x->state == y->state);
		require(x->attempts == y->attempts && same(x->status, y->status));
		require(same_route(x->route, y->route));
	}
}

static void try_state(const uint8_t *buf, size_t len, size_t n)
{
	struct envelope *e = rcpts(n);
	if (queue_file_apply_state(buf, len, e) == 0) {
		struct queue_buf s = {0};
		for (size_t i = 0; i < n; i++)
			require((unsigned)e->rcpts[i].state <= RCPT_REMOTE &&
			        e->rcpts[i].attempts >= 0 &&
			        (!e->rcpts[i].route ||
			         strlen(e->rcpts[i].route) <= ENVELOPE_ROUTE_MAX));
		require(queue_file_encode_state(e, &s) == 0);
		struct envelope *f = rcpts(n);
		require(queue_file_apply_state(s.p, s.len, f) == 0);
		for (size_t i = 0; i < n; i++) {
			const struct envelope_rcpt *a = &e->rcpts[i], *b = &f->rcpts[i];
			require(a->state == b->state && a->next_try == b->next_try);
			require(a->attempts == b->attempts && same(a->status, b->status));
			require(same_route(a->route, b->route));
			require(a->delay_notified == b->delay_notified);
			same_finals(a, b);
		}
		envelope_free(f);
		queue_buf_free(&s);
	} else {
		for (size_t i = 0; i < n; i++)
			require(e->rcpts[i].state == RCPT_PENDING && !e->rcpts[i].status &&
			        !e->rcpts[i].route && e->rcpts[i].n_finals == 0 &&
			        !e->rcpts[i].delay_notified);
	}
	envelope_free(e);
}

static void try_reply(const uint8_t *d, size_t n)
{
	char *s = malloc(n + 1);
	require(s != NULL);
	memcpy(s, d, n);
	s[n] = '\0'; /* stops at the first NUL, as a C string would */
	struct envelope_reply rp;
	envelope_reply_split(s, &rp);
	require(rp.code == 0 || (rp.code >= 200 && rp.code <= 599));
	require(!rp.enhanced[0] ||
	        (rp.code && envelope_enhanced_valid(rp.enhanced, strlen(rp.enhanced))));
	char *j = envelope_reply_join(rp.code, rp.enhanced, rp.text);
	require(j != NULL && strcmp(j, s) == 0);
	free(j);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const state_magic[] = {QUEUE_STATE_MAGIC_V1, QUEUE_STATE_MAGIC_V2,
	                                          QUEUE_STATE_MAGIC};
	if (size == 0 || size > (1u << 20))
		return 0;
	uint8_t mode = data[0] % 5;
	const uint8_t *rest = data + 1;
	size_t rl = size - 1;
	struct envelope *env = NULL;
	struct queue_buf f = {0};
	uint64_t off = 0, len = 0;
	if (mode == 0) {
		if (queue_file_parse(rest, rl, &env, &off, &len) == 0) {
			require(off == QUEUE_FILE_MAGIC_LEN && len <= rl - off);
			round_trip(env);
		}
		try_state(rest, rl, 1);
	} else if (mode == 1 || mode == 3) {
		wrap(&f, mode == 1 ? QUEUE_FILE_MAGIC : QUEUE_FILE_MAGIC_V1,
		     (const uint8_t *)"data", 4, rest, rl);
		if (queue_file_parse(f.p, f.len, &env, &off, &len) == 0) {
			require(len == 4 && memcmp(f.p + off, "data", 4) == 0);
			require(env->mail_from != NULL);
			round_trip(env);
		}
	} else if (mode == 2 && rl > 0) {
		wrap(&f, state_magic[(rest[0] >> 2) % 3], NULL, 0, rest + 1, rl - 1);
		try_state(f.p, f.len, rest[0] % 4);
	} else if (mode == 4) {
		try_reply(rest, rl);
	}
	envelope_free(env);
	queue_buf_free(&f);
	return 0;
}
