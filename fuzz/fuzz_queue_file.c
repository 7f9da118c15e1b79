/*
 * fuzz_queue_file: libFuzzer target for queue/queue_file, the parser of queue
 * files (which must survive any bytes). The first octet picks a mode:
 *   0  the rest is a whole message file, also tried as a state file
 *   1  the rest is an envelope records section, wrapped with a correct checksum
 *      (random bytes would otherwise almost never get past the SHA-256)
 *   2  the rest is a state records section, wrapped likewise, applied to an
 *      envelope of 0-3 recipients
 * Whatever parses must encode again to a file that parses to the same envelope.
 * A violated invariant traps.
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

static void wrap(struct queue_buf *out, const char *magic, const uint8_t *d, size_t dl,
                 const uint8_t *recs, size_t rl)
{
	uint8_t digest[QUEUE_FILE_DIGEST_LEN];
	out->len = 0;
	require(queue_buf_add(out, magic, QUEUE_FILE_MAGIC_LEN) == 0);
	require(queue_buf_add(out, d, dl) == 0 && queue_buf_add(out, recs, rl) == 0);
	require(EVP_Digest(out->p, out->len, digest, NULL, EVP_sha256(), NULL) == 1);
	require(queue_file_encode_end(dl, digest, out) == 0);
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

static void try_state(const uint8_t *buf, size_t len, size_t n)
{
	struct envelope *e = rcpts(n);
	if (queue_file_apply_state(buf, len, e) == 0) {
		struct queue_buf s = {0};
		for (size_t i = 0; i < n; i++)
			require((unsigned)e->rcpts[i].state <= RCPT_REMOTE &&
			        e->rcpts[i].attempts >= 0);
		require(queue_file_encode_state(e, &s) == 0);
		struct envelope *f = rcpts(n);
		require(queue_file_apply_state(s.p, s.len, f) == 0);
		for (size_t i = 0; i < n; i++)
			require(f->rcpts[i].state == e->rcpts[i].state &&
			        f->rcpts[i].next_try == e->rcpts[i].next_try &&
			        same(f->rcpts[i].status, e->rcpts[i].status));
		envelope_free(f);
		queue_buf_free(&s);
	} else {
		for (size_t i = 0; i < n; i++)
			require(e->rcpts[i].state == RCPT_PENDING && !e->rcpts[i].status);
	}
	envelope_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > (1u << 20))
		return 0;
	uint8_t mode = data[0] % 3;
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
	} else if (mode == 1) {
		wrap(&f, QUEUE_FILE_MAGIC, (const uint8_t *)"data", 4, rest, rl);
		if (queue_file_parse(f.p, f.len, &env, &off, &len) == 0) {
			require(len == 4 && memcmp(f.p + off, "data", 4) == 0);
			require(env->mail_from != NULL);
			round_trip(env);
		}
	} else if (rl > 0) {
		wrap(&f, QUEUE_STATE_MAGIC, NULL, 0, rest + 1, rl - 1);
		try_state(f.p, f.len, rest[0] % 4);
	}
	envelope_free(env);
	queue_buf_free(&f);
	return 0;
}
