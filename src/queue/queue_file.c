/*
 * queue_file: encoder and parser of queue files (format in queue_file.h). The
 * parser treats its input as hostile: every length is checked against what
 * remains before it is used, and nothing is trusted until the digests matched.
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
/* A file up to this size is read with one pread (most mail is a few KiB). */
#define READ_WHOLE_MAX 65536
/* The tail read for the envelope: END and the records, usually in one pread. */
#define READ_TAIL 8192
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
	if (r->notify && rec_u32(tmp, 'n', r->notify) < 0)
		return -1;
	/* The route chosen at receipt (a Domain Sharing peer) is part of the commit. */
	if (r->route && *r->route &&
	    (strlen(r->route) > ENVELOPE_ROUTE_MAX || rec_str(tmp, 'D', r->route) < 0))
		return -1;
	return 0;
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

/* D2 = SHA-256(D1, data length (u64 BE), records): binds the envelope to the data. */
static int digest_meta(const uint8_t d1[QUEUE_FILE_DIGEST_LEN], uint64_t data_len,
                       const uint8_t *recs, size_t rlen, uint8_t d2[QUEUE_FILE_DIGEST_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t dl[8];
	put_u64(dl, data_len);
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	         EVP_DigestUpdate(ctx, d1, QUEUE_FILE_DIGEST_LEN) && EVP_DigestUpdate(ctx, dl, 8) &&
	         (rlen == 0 || EVP_DigestUpdate(ctx, recs, rlen)) &&
	         EVP_DigestFinal_ex(ctx, d2, NULL);
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
}

int queue_file_encode_end(uint64_t data_len, const uint8_t d1[QUEUE_FILE_DIGEST_LEN],
                          const uint8_t *recs, size_t rlen, struct queue_buf *out)
{
	uint8_t v[8 + 2 * QUEUE_FILE_DIGEST_LEN];
	put_u64(v, data_len);
	memcpy(v + 8, d1, QUEUE_FILE_DIGEST_LEN);
	if (digest_meta(d1, data_len, recs, rlen, v + 8 + QUEUE_FILE_DIGEST_LEN) < 0)
		return -1;
	return rec_add(out, 'E', v, sizeof v);
}

int queue_file_encode_end_v1(uint64_t data_len, const uint8_t digest[QUEUE_FILE_DIGEST_LEN],
                             struct queue_buf *out)
{
	uint8_t v[8 + QUEUE_FILE_DIGEST_LEN];
	put_u64(v, data_len);
	memcpy(v + 8, digest, QUEUE_FILE_DIGEST_LEN);
	return rec_add(out, 'E', v, sizeof v);
}

/*
 * The status, structured ('c' code, 'e' enhanced code, 't' text), and the route
 * ('D'): the optional fields a recipient's state and a final mailbox's share.
 */
static int encode_status(struct queue_buf *b, const char *status, const char *route)
{
	if (route && *route && (strlen(route) > ENVELOPE_ROUTE_MAX || rec_str(b, 'D', route) < 0))
		return -1;
	if (!status)
		return 0;
	struct envelope_reply rp;
	envelope_reply_split(status, &rp);
	uint8_t code[2] = {(uint8_t)(rp.code >> 8), (uint8_t)rp.code};
	if ((rp.code && rec_add(b, 'c', code, 2) < 0) ||
	    (rp.enhanced[0] && rec_str(b, 'e', rp.enhanced) < 0))
		return -1;
	return rec_str(b, 't', rp.text);
}

/* The fields a recipient's state and a final mailbox's state share. */
static int encode_state_fields(struct queue_buf *b, enum rcpt_state state, int attempts,
                               const char *status, const char *route)
{
	if (rec_u8(b, 's', (unsigned)state) < 0 ||
	    rec_u32(b, 'A', attempts < 0 ? 0 : (uint32_t)attempts) < 0)
		return -1;
	return encode_status(b, status, route);
}

/* One recipient's 'r' value into tmp: its state, next_try, then an 'X' per final. */
static int encode_rcpt_state(const struct envelope_rcpt *rc, struct queue_buf *tmp,
                             struct queue_buf *inner)
{
	if (encode_state_fields(tmp, rc->state, rc->attempts, rc->status, rc->route) < 0 ||
	    rec_i64(tmp, 'N', rc->next_try) < 0 || (rc->delay_notified && rec_u8(tmp, 'W', 1) < 0))
		return -1;
	for (size_t j = 0; j < rc->n_finals; j++) {
		const struct envelope_final *f = &rc->finals[j];
		if (!f->addr || !*f->addr || rec_str(inner, 'a', f->addr) < 0 ||
		    encode_state_fields(inner, f->state, f->attempts, f->status, f->route) < 0 ||
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
	r = queue_file_encode_end_v1(0, digest, out);
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
	char *addr = NULL, *orcpt = NULL, *route = NULL;
	uint32_t notify = 0;
	int have_notify = 0, r = -1, k, i;
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
		} else if (t == 'D' && vl > 0 && vl <= ENVELOPE_ROUTE_MAX && !route) {
			if (take_str(&route, v, vl) < 0)
				goto out;
		} else {
			goto out;
		}
	}
	if (k == 0 && addr && (i = envelope_add_rcpt(env, addr, orcpt, notify)) >= 0) {
		env->rcpts[i].route = route; /* the envelope owns it now */
		route = NULL;
		r = 0;
	}
out:
	free(addr);
	free(orcpt);
	free(route);
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

int queue_file_decode_envelope(const uint8_t *recs, size_t len, struct envelope **env)
{
	return parse_envelope(recs, len, env);
}

/* The version a magic line names: 2, 1, or 0 for none of ours. */
static int msg_version(const uint8_t *magic)
{
	if (memcmp(magic, QUEUE_FILE_MAGIC, QUEUE_FILE_MAGIC_LEN) == 0)
		return 2;
	return memcmp(magic, QUEUE_FILE_MAGIC_V1, QUEUE_FILE_MAGIC_LEN) == 0 ? 1 : 0;
}

static size_t end_len(int version)
{
	return version == 2 ? QUEUE_FILE_END_LEN : QUEUE_FILE_END_LEN_V1;
}

/* What an END record says: where the data stops, and its digests. */
struct end_info {
	uint64_t data_len;
	uint64_t recs_off; /* offset of the records: magic + data */
	size_t recs_len;
	uint8_t d1[QUEUE_FILE_DIGEST_LEN]; /* version 1 and state files: the one digest */
	uint8_t d2[QUEUE_FILE_DIGEST_LEN];
};

/*
 * Checks the END record `end` of a file of `size` octets in the given version
 * (1: one digest, as state files; 2: D1 and D2) and that the layout adds up.
 */
static int check_end(const uint8_t *end, uint64_t size, int version, struct end_info *e)
{
	size_t el = end_len(version);
	if (size < QUEUE_FILE_MAGIC_LEN + el || end[0] != 'E' || get_u32(end + 1) != el - REC_HDR)
		return -1;
	uint64_t dl = get_u64(end + REC_HDR);
	uint64_t room = size - QUEUE_FILE_MAGIC_LEN - el;
	if (dl > room || room - dl > QUEUE_FILE_META_MAX)
		return -1;
	e->data_len = dl;
	e->recs_off = QUEUE_FILE_MAGIC_LEN + dl;
	e->recs_len = (size_t)(room - dl);
	memcpy(e->d1, end + REC_HDR + 8, QUEUE_FILE_DIGEST_LEN);
	if (version == 2)
		memcpy(e->d2, end + REC_HDR + 8 + QUEUE_FILE_DIGEST_LEN, QUEUE_FILE_DIGEST_LEN);
	return 0;
}

/* D2 of the records against the END record's (version 2). */
static int check_meta(const struct end_info *e, const uint8_t *recs)
{
	uint8_t got[QUEUE_FILE_DIGEST_LEN];
	if (digest_meta(e->d1, e->data_len, recs, e->recs_len, got) < 0)
		return -1;
	return CRYPTO_memcmp(got, e->d2, sizeof got) == 0 ? 0 : -1;
}

/*
 * A whole file in memory with a one-digest END (state files, version 1 message
 * files): magic, END, checksum. The records are at buf + e->recs_off.
 */
static int parse_whole_v1(const uint8_t *buf, size_t len, const char *magic, struct end_info *e)
{
	uint8_t got[QUEUE_FILE_DIGEST_LEN];
	if (len < QUEUE_FILE_MAGIC_LEN + QUEUE_FILE_END_LEN_V1 ||
	    memcmp(buf, magic, QUEUE_FILE_MAGIC_LEN) != 0 ||
	    check_end(buf + len - QUEUE_FILE_END_LEN_V1, len, 1, e) < 0)
		return -1;
	if (!EVP_Digest(buf, len - QUEUE_FILE_END_LEN_V1, got, NULL, EVP_sha256(), NULL) ||
	    CRYPTO_memcmp(got, e->d1, sizeof got) != 0)
		return -1;
	return 0;
}

/* A whole version 2 message file in memory: magic, END, D1 and D2. */
static int parse_whole_v2(const uint8_t *buf, size_t len, struct end_info *e)
{
	uint8_t got[QUEUE_FILE_DIGEST_LEN];
	if (len < QUEUE_FILE_MAGIC_LEN + QUEUE_FILE_END_LEN ||
	    check_end(buf + len - QUEUE_FILE_END_LEN, len, 2, e) < 0)
		return -1;
	if (!EVP_Digest(buf, (size_t)e->recs_off, got, NULL, EVP_sha256(), NULL) ||
	    CRYPTO_memcmp(got, e->d1, sizeof got) != 0)
		return -1;
	return check_meta(e, buf + e->recs_off);
}

int queue_file_parse(const uint8_t *buf, size_t len, struct envelope **env, uint64_t *data_off,
                     uint64_t *data_len)
{
	struct end_info e;
	int v = len >= QUEUE_FILE_MAGIC_LEN ? msg_version(buf) : 0;
	if (v == 0 || (v == 1 && parse_whole_v1(buf, len, QUEUE_FILE_MAGIC_V1, &e) < 0) ||
	    (v == 2 && parse_whole_v2(buf, len, &e) < 0) ||
	    parse_envelope(buf + e.recs_off, e.recs_len, env) < 0)
		return -1;
	if (data_off)
		*data_off = QUEUE_FILE_MAGIC_LEN;
	if (data_len)
		*data_len = e.data_len;
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

/* The size of the regular file on fd and its version (from the magic line). */
static int read_head(int fd, uint64_t *size, int *version)
{
	struct stat st;
	uint8_t magic[QUEUE_FILE_MAGIC_LEN];
	if (fstat(fd, &st) < 0)
		return -1;
	*size = (uint64_t)st.st_size;
	if (!S_ISREG(st.st_mode) || *size < QUEUE_FILE_MAGIC_LEN + QUEUE_FILE_END_LEN_V1 ||
	    pread_all(fd, magic, sizeof magic, 0) < 0 || (*version = msg_version(magic)) == 0) {
		errno = EIO;
		return -1;
	}
	return 0;
}

static int read_end(int fd, uint64_t size, int version, struct end_info *e)
{
	uint8_t end[QUEUE_FILE_END_LEN];
	size_t el = end_len(version);
	if (size < QUEUE_FILE_MAGIC_LEN + el || pread_all(fd, end, el, size - el) < 0 ||
	    check_end(end, size, version, e) < 0) {
		errno = EIO;
		return -1;
	}
	return 0;
}

int queue_file_locate_data(int fd, uint64_t *data_off, uint64_t *data_len)
{
	uint64_t size;
	int v;
	struct end_info e;
	if (read_head(fd, &size, &v) < 0 || read_end(fd, size, v, &e) < 0)
		return -1;
	*data_off = QUEUE_FILE_MAGIC_LEN;
	*data_len = e.data_len;
	return 0;
}

/* Hashes [0, upto) of the file, keeping [keep_from, upto) in keep (if keep_from < upto). */
static int hash_file(int fd, uint64_t upto, uint64_t keep_from, uint8_t *keep, uint8_t *digest)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *chunk = malloc(READ_CHUNK);
	int r = -1;
	if (!ctx || !chunk || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	for (uint64_t off = 0; off < upto;) {
		size_t n = upto - off < READ_CHUNK ? (size_t)(upto - off) : READ_CHUNK;
		uint8_t *dst = off >= keep_from ? keep + (off - keep_from) : chunk;
		/* Never let a chunk straddle keep_from: read up to it. */
		if (off < keep_from && keep_from - off < n)
			n = (size_t)(keep_from - off);
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

/* A big file, verified in chunks: only its records are kept (into *recs). */
static int read_big(int fd, uint64_t size, int v, struct end_info *e, uint8_t **recs)
{
	uint8_t got[QUEUE_FILE_DIGEST_LEN];
	if (read_end(fd, size, v, e) < 0 || !(*recs = malloc(e->recs_len ? e->recs_len : 1)))
		return -1;
	if (v == 1) {
		/* One digest over everything before END, the records included. */
		if (hash_file(fd, e->recs_off + e->recs_len, e->recs_off, *recs, got) < 0)
			return -1;
		return CRYPTO_memcmp(got, e->d1, sizeof got) == 0 ? 0 : -1;
	}
	if (hash_file(fd, e->recs_off, e->recs_off, NULL, got) < 0 ||
	    CRYPTO_memcmp(got, e->d1, sizeof got) != 0 ||
	    pread_all(fd, *recs, e->recs_len, e->recs_off) < 0)
		return -1;
	return check_meta(e, *recs);
}

/* Reports a result: parses the records, fills the outputs; errno EIO when damaged. */
static int finish(int ok, const uint8_t *recs, const struct end_info *e, int v,
                  struct envelope **env, uint64_t *data_off, uint64_t *data_len, int *version)
{
	if (!ok || parse_envelope(recs, e->recs_len, env) < 0) {
		errno = EIO;
		return -1;
	}
	if (data_off)
		*data_off = QUEUE_FILE_MAGIC_LEN;
	if (data_len)
		*data_len = e->data_len;
	if (version)
		*version = v;
	return 0;
}

int queue_file_read(int fd, struct envelope **env, uint64_t *data_off, uint64_t *data_len,
                    int *version)
{
	uint64_t size;
	int v, r;
	struct end_info e;
	uint8_t *buf = NULL;
	if (read_head(fd, &size, &v) < 0)
		return -1;
	if (size <= READ_WHOLE_MAX) {
		/* Most mail: one read, verified in memory. */
		buf = malloc((size_t)size);
		if (!buf)
			return -1;
		int ok = pread_all(fd, buf, (size_t)size, 0) == 0 &&
		         (v == 1 ? parse_whole_v1(buf, (size_t)size, QUEUE_FILE_MAGIC_V1, &e)
		                 : parse_whole_v2(buf, (size_t)size, &e)) == 0;
		r = finish(ok, ok ? buf + e.recs_off : NULL, &e, v, env, data_off, data_len,
		           version);
	} else {
		int ok = read_big(fd, size, v, &e, &buf) == 0;
		r = finish(ok, buf, &e, v, env, data_off, data_len, version);
	}
	free(buf);
	return r;
}

int queue_file_read_meta(int fd, struct envelope **env, uint64_t *data_off, uint64_t *data_len,
                         int *version)
{
	uint64_t size;
	int v;
	struct end_info e;
	if (read_head(fd, &size, &v) < 0)
		return -1;
	if (v == 1) /* one digest over the data too: verified whole */
		return queue_file_read(fd, env, data_off, data_len, version);
	if (size < QUEUE_FILE_MAGIC_LEN + QUEUE_FILE_END_LEN) {
		errno = EIO;
		return -1;
	}
	/* The END record and, usually, the records before it in one read from the end. */
	size_t tl = size < READ_TAIL ? (size_t)size : READ_TAIL;
	uint8_t *tail = malloc(tl), *recs = NULL;
	int ok = 0;
	if (!tail)
		return -1;
	if (pread_all(fd, tail, tl, size - tl) == 0 &&
	    check_end(tail + tl - QUEUE_FILE_END_LEN, size, 2, &e) == 0) {
		if (e.recs_len + QUEUE_FILE_END_LEN <= tl) {
			ok = check_meta(&e, tail + tl - QUEUE_FILE_END_LEN - e.recs_len) == 0;
		} else if ((recs = malloc(e.recs_len))) {
			ok = pread_all(fd, recs, e.recs_len, e.recs_off) == 0 &&
			     check_meta(&e, recs) == 0;
		}
	}
	const uint8_t *rp = recs ? recs : ok ? tail + tl - QUEUE_FILE_END_LEN - e.recs_len : NULL;
	int r = finish(ok, rp, &e, 2, env, data_off, data_len, version);
	free(recs);
	free(tail);
	return r;
}

enum {
	SEEN_STATE = 1,
	SEEN_ATTEMPTS = 2,
	SEEN_NEXT = 4,
	SEEN_ADDR = 8,
	SEEN_CODE = 16,
	SEEN_TEXT = 32
};

/* A state or final mailbox record being parsed: the fields both share. */
struct state_fields {
	unsigned seen;
	enum rcpt_state state;
	int attempts;
	int code;
	char *enhanced, *text, *route;
	char *status; /* 'M' (versions 1 and 2), or joined from c/e/t (version 3) */
};

static void state_fields_free(struct state_fields *f)
{
	free(f->enhanced);
	free(f->text);
	free(f->route);
	free(f->status);
}

/*
 * A field both state kinds share: 's', 'A', and 'M' (versions 1-2) or 'c', 'e',
 * 't', 'D' (version 3). 1 taken, 0 not one of them, -1 bad or repeated.
 */
static int parse_state_field(char t, const uint8_t *v, size_t vl, int version,
                             struct state_fields *f)
{
	unsigned x;
	switch (t) {
	case 's':
		if (take_u8(&x, v, vl, RCPT_REMOTE, &f->seen, SEEN_STATE) < 0)
			return -1;
		f->state = (enum rcpt_state)x;
		return 1;
	case 'A':
		if (vl != 4 || (f->seen & SEEN_ATTEMPTS) || get_u32(v) > 0x7fffffff)
			return -1;
		f->seen |= SEEN_ATTEMPTS;
		f->attempts = (int)get_u32(v);
		return 1;
	}
	if (version < 3)
		return t == 'M' ? (take_str(&f->status, v, vl) < 0 ? -1 : 1) : 0;
	switch (t) {
	case 'c':
		if (vl != 2 || (f->seen & SEEN_CODE) || ((unsigned)v[0] << 8 | v[1]) < 200 ||
		    ((unsigned)v[0] << 8 | v[1]) > 599)
			return -1;
		f->seen |= SEEN_CODE;
		f->code = (int)((unsigned)v[0] << 8 | v[1]);
		return 1;
	case 'e':
		if (!envelope_enhanced_valid((const char *)v, vl) ||
		    take_str(&f->enhanced, v, vl) < 0)
			return -1;
		return 1;
	case 't':
		if (take_str(&f->text, v, vl) < 0)
			return -1;
		f->seen |= SEEN_TEXT;
		return 1;
	case 'D':
		if (vl == 0 || vl > ENVELOPE_ROUTE_MAX || take_str(&f->route, v, vl) < 0)
			return -1;
		return 1;
	}
	return 0;
}

/* After the last field: the status of a version 3 record, joined from its parts. */
static int state_fields_done(struct state_fields *f, int version)
{
	if (version < 3 || !(f->seen & (SEEN_CODE | SEEN_TEXT)))
		return f->enhanced ? -1 : 0;
	if (f->enhanced && !(f->seen & SEEN_CODE))
		return -1; /* an enhanced code only follows a reply code */
	f->status = envelope_reply_join(f->code, f->enhanced, f->text);
	return f->status ? 0 : -1;
}

/* One final mailbox ('X' value: 'a' and the shared fields, 's' and 'A' required). */
static int parse_final(const uint8_t *p, size_t n, int version, struct envelope_rcpt *rc)
{
	struct rec_iter it = {p, n};
	struct state_fields f = {0};
	char *addr = NULL;
	char t;
	const uint8_t *v;
	size_t vl;
	int k, r = -1;
	while ((k = rec_next(&it, &t, &v, &vl)) > 0) {
		int got = parse_state_field(t, v, vl, version, &f);
		if (got < 0 || (got == 0 && (t != 'a' || vl == 0 || take_str(&addr, v, vl) < 0)))
			goto out;
	}
	if (k != 0 || !addr ||
	    (f.seen & (SEEN_STATE | SEEN_ATTEMPTS)) != (SEEN_STATE | SEEN_ATTEMPTS) ||
	    state_fields_done(&f, version) < 0)
		goto out;
	int j = envelope_add_final(rc, addr, f.state);
	if (j < 0)
		goto out;
	rc->finals[j].attempts = f.attempts;
	rc->finals[j].status = f.status;
	rc->finals[j].route = f.route;
	f.status = f.route = NULL;
	r = 0;
out:
	free(addr);
	state_fields_free(&f);
	return r;
}

/*
 * One recipient's state record into *rc (state, attempts and next_try required;
 * final mailboxes, 'X', from version 2 on).
 */
static int parse_state(const uint8_t *p, size_t n, int version, struct envelope_rcpt *rc)
{
	struct rec_iter it = {p, n};
	struct state_fields f = {0};
	int next_seen = 0, warned_seen = 0, k, r = -1;
	char t;
	const uint8_t *v;
	size_t vl;
	while ((k = rec_next(&it, &t, &v, &vl)) > 0) {
		int got = parse_state_field(t, v, vl, version, &f);
		if (got < 0)
			goto out;
		if (got > 0)
			continue;
		if (t == 'N' && vl == 8 && !next_seen) {
			next_seen = 1;
			rc->next_try = (int64_t)get_u64(v);
		} else if (t == 'W' && version >= 3 && vl == 1 && v[0] == 1 && !warned_seen) {
			warned_seen = 1; /* only ever written as 1: anything else is damage */
			rc->delay_notified = 1;
		} else if (!(t == 'X' && version >= 2 && parse_final(v, vl, version, rc) == 0)) {
			goto out;
		}
	}
	if (k != 0 || !next_seen ||
	    (f.seen & (SEEN_STATE | SEEN_ATTEMPTS)) != (SEEN_STATE | SEEN_ATTEMPTS) ||
	    state_fields_done(&f, version) < 0)
		goto out;
	rc->state = f.state;
	rc->attempts = f.attempts;
	rc->status = f.status;
	rc->route = f.route;
	f.status = f.route = NULL;
	r = 0;
out:
	state_fields_free(&f);
	return r;
}

static void state_scratch_free(struct envelope_rcpt *st, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		free(st[j].status);
		free(st[j].route);
		envelope_clear_finals(&st[j]);
	}
	free(st);
}

static int state_version(const uint8_t *buf, size_t len)
{
	static const char *const magics[] = {QUEUE_STATE_MAGIC_V1, QUEUE_STATE_MAGIC_V2,
	                                     QUEUE_STATE_MAGIC};
	for (int i = 0; len >= QUEUE_FILE_MAGIC_LEN && i < 3; i++)
		if (memcmp(buf, magics[i], QUEUE_FILE_MAGIC_LEN) == 0)
			return i + 1;
	return 0;
}

/* Moves the parsed states st[0, n) into env's recipients (the old ones are freed). */
static void state_move(struct envelope *env, struct envelope_rcpt *st)
{
	for (size_t j = 0; j < env->n_rcpts; j++) {
		struct envelope_rcpt *rc = &env->rcpts[j];
		free(rc->status);
		(void)envelope_rcpt_set_route(rc, NULL); /* clearing never fails */
		envelope_clear_finals(rc);
		rc->status = st[j].status;
		rc->route = st[j].route;
		rc->finals = st[j].finals;
		rc->n_finals = st[j].n_finals;
		rc->state = st[j].state;
		rc->attempts = st[j].attempts;
		rc->next_try = st[j].next_try;
		rc->delay_notified = st[j].delay_notified;
		memset(&st[j], 0, sizeof st[j]); /* now owned by env */
	}
}

int queue_file_apply_state(const uint8_t *buf, size_t len, struct envelope *env)
{
	struct end_info e;
	const uint8_t *recs;
	size_t i = 0;
	/* Versions 1 and 2 are still read: their files may be on disk at an upgrade. */
	int version = state_version(buf, len);
	if (version == 0 || parse_whole_v1(buf, len, (const char *)buf, &e) < 0 || e.data_len != 0)
		return -1;
	recs = buf + e.recs_off;
	/* Parse into scratch first so a damaged file changes nothing. */
	struct envelope_rcpt *st = calloc(env->n_rcpts ? env->n_rcpts : 1, sizeof *st);
	struct rec_iter it = {recs, e.recs_len};
	char t;
	const uint8_t *v;
	size_t vl;
	int k, r = -1;
	if (!st)
		return -1;
	while ((k = rec_next(&it, &t, &v, &vl)) > 0) {
		if (t != 'r' || i >= env->n_rcpts || parse_state(v, vl, version, &st[i]) < 0) {
			i++; /* so the partly filled entry is freed below */
			goto out;
		}
		i++;
	}
	if (k != 0 || i != env->n_rcpts)
		goto out;
	state_move(env, st);
	r = 0;
out:
	state_scratch_free(st, i < env->n_rcpts ? i : env->n_rcpts);
	return r;
}
