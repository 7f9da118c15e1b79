/*
 * queue_file: encoder and parser of queue files (format in queue_file.h). The
 * parser treats its input as hostile: every length is checked against what
 * remains before it is used, and nothing is trusted until the checksum matched.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "queue/queue_file.h"

#define REC_HDR 5 /* type + u32 length */
#define READ_CHUNK 65536
#define BUF_MAX ((size_t)QUEUE_FILE_META_MAX + QUEUE_FILE_MAGIC_LEN + QUEUE_FILE_END_LEN)

void queue_buf_free(struct queue_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

int queue_buf_add(struct queue_buf *b, const void *data, size_t n)
{
	if (n > BUF_MAX - b->len)
		return -1;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)(v >> 32));
	put_u32(p + 4, (uint32_t)v);
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* ---- encoding ---- */

static int rec_add(struct queue_buf *b, char type, const void *v, size_t n)
{
	uint8_t h[REC_HDR];
	if (n > QUEUE_FILE_META_MAX)
		return -1;
	h[0] = (uint8_t)type;
	put_u32(h + 1, (uint32_t)n);
	return queue_buf_add(b, h, sizeof h) < 0 ? -1 : queue_buf_add(b, v, n);
}

static int rec_str(struct queue_buf *b, char type, const char *s)
{
	return s ? rec_add(b, type, s, strlen(s)) : 0;
}

static int rec_u8(struct queue_buf *b, char type, unsigned v)
{
	uint8_t x = (uint8_t)v;
	return rec_add(b, type, &x, 1);
}

static int rec_u32(struct queue_buf *b, char type, uint32_t v)
{
	uint8_t x[4];
	put_u32(x, v);
	return rec_add(b, type, x, 4);
}

static int rec_i64(struct queue_buf *b, char type, int64_t v)
{
	uint8_t x[8];
	put_u64(x, (uint64_t)v);
	return rec_add(b, type, x, 8);
}

/* Appends a record whose value is the nested records in inner. */
static int rec_nested(struct queue_buf *b, char type, struct queue_buf *inner)
{
	int r = rec_add(b, type, inner->p, inner->len);
	inner->len = 0;
	return r;
}

static int encode_rcpt(const struct envelope_rcpt *r, struct queue_buf *tmp)
{
	if (!r->addr || rec_str(tmp, 'a', r->addr) < 0 || rec_str(tmp, 'o', r->orcpt) < 0)
		return -1;
	return r->notify ? rec_u32(tmp, 'n', r->notify) : 0;
}

int queue_file_encode_envelope(const struct envelope *env, struct queue_buf *out)
{
	size_t start = out->len;
	struct queue_buf tmp = {0};
	int r = -1;
	if (!env->mail_from || rec_str(out, 'F', env->mail_from) < 0 ||
	    rec_str(out, 'I', env->envid) < 0 ||
	    (env->ret && rec_u8(out, 'R', (unsigned)env->ret) < 0) ||
	    (env->body && rec_u8(out, 'B', (unsigned)env->body) < 0) ||
	    rec_str(out, 'H', env->helo) < 0 || rec_str(out, 'C', env->client_addr) < 0 ||
	    rec_i64(out, 'T', env->received_at) < 0 || rec_u8(out, 'S', env->trusted ? 1 : 0) < 0)
		goto out;
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (encode_rcpt(&env->rcpts[i], &tmp) < 0 || rec_nested(out, 'P', &tmp) < 0)
			goto out;
	r = out->len - start > QUEUE_FILE_META_MAX ? -1 : 0;
out:
	queue_buf_free(&tmp);
	return r;
}

int queue_file_encode_end(uint64_t data_len, const uint8_t digest[QUEUE_FILE_DIGEST_LEN],
                          struct queue_buf *out)
{
	uint8_t v[8 + QUEUE_FILE_DIGEST_LEN];
	put_u64(v, data_len);
	memcpy(v + 8, digest, QUEUE_FILE_DIGEST_LEN);
	return rec_add(out, 'E', v, sizeof v);
}

/* The fields a recipient's state and a final mailbox's state share: 's', 'A', 'M'. */
static int encode_state_fields(struct queue_buf *b, enum rcpt_state state, int attempts,
                               const char *status)
{
	if (rec_u8(b, 's', (unsigned)state) < 0 ||
	    rec_u32(b, 'A', attempts < 0 ? 0 : (uint32_t)attempts) < 0)
		return -1;
	return rec_str(b, 'M', status);
}

/* One recipient's 'r' value into tmp: its state, next_try, then an 'X' per final. */
static int encode_rcpt_state(const struct envelope_rcpt *rc, struct queue_buf *tmp,
                             struct queue_buf *inner)
{
	if (encode_state_fields(tmp, rc->state, rc->attempts, rc->status) < 0 ||
	    rec_i64(tmp, 'N', rc->next_try) < 0)
		return -1;
	for (size_t j = 0; j < rc->n_finals; j++) {
		const struct envelope_final *f = &rc->finals[j];
		if (!f->addr || rec_str(inner, 'a', f->addr) < 0 ||
		    encode_state_fields(inner, f->state, f->attempts, f->status) < 0 ||
		    rec_nested(tmp, 'X', inner) < 0)
			return -1;
	}
	return 0;
}

int queue_file_encode_state(const struct envelope *env, struct queue_buf *out)
{
	struct queue_buf tmp = {0}, inner = {0};
	uint8_t digest[QUEUE_FILE_DIGEST_LEN];
	int r = -1;
	out->len = 0;
	if (queue_buf_add(out, QUEUE_STATE_MAGIC, QUEUE_FILE_MAGIC_LEN) < 0)
		goto out;
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (encode_rcpt_state(&env->rcpts[i], &tmp, &inner) < 0 ||
		    rec_nested(out, 'r', &tmp) < 0)
			goto out;
	if (out->len - QUEUE_FILE_MAGIC_LEN > QUEUE_FILE_META_MAX ||
	    !EVP_Digest(out->p, out->len, digest, NULL, EVP_sha256(), NULL))
		goto out;
	r = queue_file_encode_end(0, digest, out);
out:
	queue_buf_free(&inner);
	queue_buf_free(&tmp);
	return r;
}

/* ---- parsing ---- */

/* A cursor over a records section. */
struct rec_iter {
	const uint8_t *p;
	size_t n;
};

/* Next record: 1 with type/value, 0 at the end, -1 when a header or length overruns. */
static int rec_next(struct rec_iter *it, char *type, const uint8_t **v, size_t *vlen)
{
	if (it->n == 0)
		return 0;
	if (it->n < REC_HDR)
		return -1;
	uint32_t len = get_u32(it->p + 1);
	if (len > it->n - REC_HDR)
		return -1;
	*type = (char)it->p[0];
	*v = it->p + REC_HDR;
	*vlen = len;
	it->p += REC_HDR + len;
	it->n -= REC_HDR + len;
	return 1;
}

/* Copies a string value; fails on NUL inside or when already set (duplicate record). */
static int take_str(char **field, const uint8_t *v, size_t n)
{
	if (*field || memchr(v, 0, n))
		return -1;
	char *s = malloc(n + 1);
	if (!s)
		return -1;
	memcpy(s, v, n);
	s[n] = '\0';
	*field = s;
	return 0;
}

/* A one-octet enum value in [0, max], at most once (seen tracks duplicates). */
static int take_u8(unsigned *out, const uint8_t *v, size_t n, unsigned max, unsigned *seen,
                   unsigned bit)
{
	if (n != 1 || v[0] > max || (*seen & bit))
		return -1;
	*seen |= bit;
	*out = v[0];
	return 0;
}

static int parse_rcpt(const uint8_t *p, size_t n, struct envelope *env)
{
	struct rec_iter it = {p, n};
	char *addr = NULL, *orcpt = NULL;
	uint32_t notify = 0;
	int have_notify = 0, r = -1, k;
	char t;
	const uint8_t *v;
	size_t vl;
	while ((k = rec_next(&it, &t, &v, &vl)) > 0) {
		if (t == 'a') {
			if (take_str(&addr, v, vl) < 0)
				goto out;
		} else if (t == 'o') {
			if (take_str(&orcpt, v, vl) < 0)
				goto out;
		} else if (t == 'n' && vl == 4 && !have_notify) {
			notify = get_u32(v);
			have_notify = 1;
			if (notify == 0 || notify > 0xF)
				goto out;
		} else {
			goto out;
		}
	}
	if (k == 0 && addr && envelope_add_rcpt(env, addr, orcpt, notify) >= 0)
		r = 0;
out:
	free(addr);
	free(orcpt);
	return r;
}

enum { SEEN_RET = 1, SEEN_BODY = 2, SEEN_TIME = 4, SEEN_TRUSTED = 8 };

static int parse_field(struct envelope *env, char t, const uint8_t *v, size_t vl, unsigned *seen)
{
	unsigned x;
	switch (t) {
	case 'F': return take_str(&env->mail_from, v, vl);
	case 'I': return take_str(&env->envid, v, vl);
	case 'H': return take_str(&env->helo, v, vl);
	case 'C': return take_str(&env->client_addr, v, vl);
	case 'R':
		if (take_u8(&x, v, vl, ESMTP_RET_HDRS, seen, SEEN_RET) < 0 || x == 0)
			return -1;
		env->ret = (enum esmtp_ret)x;
		return 0;
	case 'B':
		if (take_u8(&x, v, vl, ESMTP_BODY_8BITMIME, seen, SEEN_BODY) < 0 || x == 0)
			return -1;
		env->body = (enum esmtp_body)x;
		return 0;
	case 'S':
		if (take_u8(&x, v, vl, 1, seen, SEEN_TRUSTED) < 0)
			return -1;
		env->trusted = (int)x;
		return 0;
	case 'T':
		if (vl != 8 || (*seen & SEEN_TIME))
			return -1;
		*seen |= SEEN_TIME;
		env->received_at = (int64_t)get_u64(v);
		return 0;
	case 'P': return parse_rcpt(v, vl, env);
	default: return -1; /* unknown record: a writer we do not know, or damage */
	}
}

static int parse_envelope(const uint8_t *p, size_t n, struct envelope **out)
{
	struct envelope *env = envelope_new();
	struct rec_iter it = {p, n};
	unsigned seen = 0;
	char t;
	const uint8_t *v;
	size_t vl;
	int k;
	if (!env)
		return -1;
	while ((k = rec_next(&it, &t, &v, &vl)) > 0)
		if (parse_field(env, t, v, vl, &seen) < 0)
			break;
	if (k != 0 || !env->mail_from) {
		envelope_free(env);
		return -1;
	}
	if (out)
		*out = env;
	else
		envelope_free(env);
	return 0;
}

/*
 * Checks the END record of a file of `size` octets whose magic is `magic` and
 * returns the data length and digest; also checks the layout adds up.
 */
static int check_end(const uint8_t *end, uint64_t size, uint64_t *data_len, uint8_t *digest)
{
	if (size < QUEUE_FILE_MAGIC_LEN + QUEUE_FILE_END_LEN || end[0] != 'E' ||
	    get_u32(end + 1) != 8 + QUEUE_FILE_DIGEST_LEN)
		return -1;
	uint64_t dl = get_u64(end + REC_HDR);
	uint64_t room = size - QUEUE_FILE_MAGIC_LEN - QUEUE_FILE_END_LEN;
	if (dl > room || room - dl > QUEUE_FILE_META_MAX)
		return -1;
	*data_len = dl;
	memcpy(digest, end + REC_HDR + 8, QUEUE_FILE_DIGEST_LEN);
	return 0;
}

/* Shared by both file kinds: magic, END, checksum; returns the records section. */
static int parse_whole(const uint8_t *buf, size_t len, const char *magic, uint64_t *data_len,
                       const uint8_t **recs, size_t *recs_len)
{
	uint8_t want[QUEUE_FILE_DIGEST_LEN], got[QUEUE_FILE_DIGEST_LEN];
	if (len < QUEUE_FILE_MAGIC_LEN + QUEUE_FILE_END_LEN ||
	    memcmp(buf, magic, QUEUE_FILE_MAGIC_LEN) != 0 ||
	    check_end(buf + len - QUEUE_FILE_END_LEN, len, data_len, want) < 0)
		return -1;
	size_t body = len - QUEUE_FILE_END_LEN;
	if (!EVP_Digest(buf, body, got, NULL, EVP_sha256(), NULL) ||
	    CRYPTO_memcmp(got, want, sizeof got) != 0)
		return -1;
	*recs = buf + QUEUE_FILE_MAGIC_LEN + *data_len;
	*recs_len = body - QUEUE_FILE_MAGIC_LEN - (size_t)*data_len;
	return 0;
}

int queue_file_parse(const uint8_t *buf, size_t len, struct envelope **env, uint64_t *data_off,
                     uint64_t *data_len)
{
	const uint8_t *recs;
	size_t rl;
	uint64_t dl;
	if (parse_whole(buf, len, QUEUE_FILE_MAGIC, &dl, &recs, &rl) < 0 ||
	    parse_envelope(recs, rl, env) < 0)
		return -1;
	if (data_off)
		*data_off = QUEUE_FILE_MAGIC_LEN;
	if (data_len)
		*data_len = dl;
	return 0;
}

/* pread until n octets or error/EOF (short = damaged: the file changed size). */
static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int read_end(int fd, uint64_t *size, uint64_t *data_len, uint8_t *digest)
{
	struct stat st;
	uint8_t magic[QUEUE_FILE_MAGIC_LEN], end[QUEUE_FILE_END_LEN];
	if (fstat(fd, &st) < 0)
		return -1;
	*size = (uint64_t)st.st_size;
	if (!S_ISREG(st.st_mode) || *size < QUEUE_FILE_MAGIC_LEN + QUEUE_FILE_END_LEN ||
	    pread_all(fd, magic, sizeof magic, 0) < 0 ||
	    memcmp(magic, QUEUE_FILE_MAGIC, sizeof magic) != 0 ||
	    pread_all(fd, end, sizeof end, *size - sizeof end) < 0 ||
	    check_end(end, *size, data_len, digest) < 0) {
		errno = EIO;
		return -1;
	}
	return 0;
}

int queue_file_locate_data(int fd, uint64_t *data_off, uint64_t *data_len)
{
	uint64_t size;
	uint8_t digest[QUEUE_FILE_DIGEST_LEN];
	if (read_end(fd, &size, data_len, digest) < 0)
		return -1;
	*data_off = QUEUE_FILE_MAGIC_LEN;
	return 0;
}

/* Hashes [0, body) of the file, keeping the records section [rstart, body) in recs. */
static int hash_file(int fd, uint64_t body, uint64_t rstart, uint8_t *recs, uint8_t *digest)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *chunk = malloc(READ_CHUNK);
	int r = -1;
	if (!ctx || !chunk || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	for (uint64_t off = 0; off < body;) {
		size_t n = body - off < READ_CHUNK ? (size_t)(body - off) : READ_CHUNK;
		uint8_t *dst = off >= rstart ? recs + (off - rstart) : chunk;
		/* Never let a chunk straddle the records start: read up to it. */
		if (off < rstart && rstart - off < n)
			n = (size_t)(rstart - off);
		if (pread_all(fd, dst, n, off) < 0 || !EVP_DigestUpdate(ctx, dst, n))
			goto out;
		off += n;
	}
	r = EVP_DigestFinal_ex(ctx, digest, NULL) ? 0 : -1;
out:
	free(chunk);
	EVP_MD_CTX_free(ctx);
	return r;
}

int queue_file_read(int fd, struct envelope **env, uint64_t *data_off, uint64_t *data_len)
{
	uint64_t size, dl;
	uint8_t want[QUEUE_FILE_DIGEST_LEN], got[QUEUE_FILE_DIGEST_LEN];
	if (read_end(fd, &size, &dl, want) < 0)
		return -1;
	uint64_t body = size - QUEUE_FILE_END_LEN, rstart = QUEUE_FILE_MAGIC_LEN + dl;
	size_t rl = (size_t)(body - rstart); /* <= QUEUE_FILE_META_MAX (check_end) */
	uint8_t *recs = malloc(rl ? rl : 1);
	int r = -1;
	if (!recs)
		return -1;
	if (hash_file(fd, body, rstart, recs, got) == 0) {
		if (CRYPTO_memcmp(got, want, sizeof got) == 0 && parse_envelope(recs, rl, env) == 0)
			r = 0;
		else
			errno = EIO;
	}
	free(recs);
	if (r == 0) {
		if (data_off)
			*data_off = QUEUE_FILE_MAGIC_LEN;
		if (data_len)
			*data_len = dl;
	}
	return r;
}

enum { SEEN_STATE = 1, SEEN_ATTEMPTS = 2, SEEN_NEXT = 4, SEEN_ADDR = 8 };

/*
 * A field both state kinds share ('s', 'A', 'M'): 1 taken, 0 not one of them,
 * -1 bad or repeated.
 */
static int parse_state_field(char t, const uint8_t *v, size_t vl, unsigned *seen,
                             enum rcpt_state *state, int *attempts, char **status)
{
	unsigned x;
	if (t == 's') {
		if (take_u8(&x, v, vl, RCPT_REMOTE, seen, SEEN_STATE) < 0)
			return -1;
		*state = (enum rcpt_state)x;
		return 1;
	}
	if (t == 'A') {
		if (vl != 4 || (*seen & SEEN_ATTEMPTS) || get_u32(v) > 0x7fffffff)
			return -1;
		*seen |= SEEN_ATTEMPTS;
		*attempts = (int)get_u32(v);
		return 1;
	}
	if (t == 'M')
		return take_str(status, v, vl) < 0 ? -1 : 1;
	return 0;
}

/* One final mailbox ('X' value: 'a' and the shared fields, all but 'M' required). */
static int parse_final(const uint8_t *p, size_t n, struct envelope_rcpt *rc)
{
	struct rec_iter it = {p, n};
	struct envelope_final f = {0};
	unsigned seen = 0;
	char t;
	const uint8_t *v;
	size_t vl;
	int k, r = -1;
	while ((k = rec_next(&it, &t, &v, &vl)) > 0) {
		int got = parse_state_field(t, v, vl, &seen, &f.state, &f.attempts, &f.status);
		if (got < 0 || (got == 0 && (t != 'a' || vl == 0 || take_str(&f.addr, v, vl) < 0)))
			goto out;
		if (got == 0)
			seen |= SEEN_ADDR;
	}
	if (k != 0 || seen != (SEEN_STATE | SEEN_ATTEMPTS | SEEN_ADDR))
		goto out;
	int j = envelope_add_final(rc, f.addr, f.state);
	if (j < 0)
		goto out;
	rc->finals[j].attempts = f.attempts;
	rc->finals[j].status = f.status;
	f.status = NULL;
	r = 0;
out:
	free(f.addr);
	free(f.status);
	return r;
}

/*
 * One recipient's state record into *rc (all fields required except the status;
 * final mailboxes, 'X', only in a version 2 file).
 */
static int parse_state(const uint8_t *p, size_t n, struct envelope_rcpt *rc, int finals_ok)
{
	struct rec_iter it = {p, n};
	unsigned seen = 0;
	char t;
	const uint8_t *v;
	size_t vl;
	int k;
	while ((k = rec_next(&it, &t, &v, &vl)) > 0) {
		int got =
		        parse_state_field(t, v, vl, &seen, &rc->state, &rc->attempts, &rc->status);
		if (got < 0)
			return -1;
		if (got > 0)
			continue;
		if (t == 'N' && vl == 8 && !(seen & SEEN_NEXT)) {
			seen |= SEEN_NEXT;
			rc->next_try = (int64_t)get_u64(v);
		} else if (!(t == 'X' && finals_ok && parse_final(v, vl, rc) == 0)) {
			return -1;
		}
	}
	return k == 0 && seen == (SEEN_STATE | SEEN_ATTEMPTS | SEEN_NEXT) ? 0 : -1;
}

static void state_scratch_free(struct envelope_rcpt *st, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		free(st[j].status);
		envelope_clear_finals(&st[j]);
	}
	free(st);
}

int queue_file_apply_state(const uint8_t *buf, size_t len, struct envelope *env)
{
	const uint8_t *recs;
	size_t rl, i = 0;
	uint64_t dl;
	/* Version 1 (before final mailboxes) is still read: its files may be on disk. */
	int v2 = len >= QUEUE_FILE_MAGIC_LEN &&
	         memcmp(buf, QUEUE_STATE_MAGIC, QUEUE_FILE_MAGIC_LEN) == 0;
	if (parse_whole(buf, len, v2 ? QUEUE_STATE_MAGIC : QUEUE_STATE_MAGIC_V1, &dl, &recs, &rl) <
	            0 ||
	    dl != 0)
		return -1;
	/* Parse into scratch first so a damaged file changes nothing. */
	struct envelope_rcpt *st = calloc(env->n_rcpts ? env->n_rcpts : 1, sizeof *st);
	struct rec_iter it = {recs, rl};
	char t;
	const uint8_t *v;
	size_t vl;
	int k, r = -1;
	if (!st)
		return -1;
	while ((k = rec_next(&it, &t, &v, &vl)) > 0) {
		if (t != 'r' || i >= env->n_rcpts || parse_state(v, vl, &st[i], v2) < 0) {
			i++; /* so the partly filled entry is freed below */
			goto out;
		}
		i++;
	}
	if (k != 0 || i != env->n_rcpts)
		goto out;
	for (size_t j = 0; j < env->n_rcpts; j++) {
		struct envelope_rcpt *rc = &env->rcpts[j];
		free(rc->status);
		envelope_clear_finals(rc);
		rc->status = st[j].status;
		rc->finals = st[j].finals;
		rc->n_finals = st[j].n_finals;
		rc->state = st[j].state;
		rc->attempts = st[j].attempts;
		rc->next_try = st[j].next_try;
		memset(&st[j], 0, sizeof st[j]); /* now owned by env */
	}
	r = 0;
out:
	state_scratch_free(st, i < env->n_rcpts ? i : env->n_rcpts);
	return r;
}
