/*
 * Unit tests for queue_file: round trips, hostile field contents, and every kind
 * of damage (truncation, flipped octets, bad lengths, unknown, duplicate or
 * missing records, missing END), both in memory and through a file descriptor.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "harness.h"
#include "queue/queue_file.h"

static const char DATA[] = "Subject: hi\r\n\r\nbody line\r\n.leading dot\r\n";

/* A header-like run of octets: 'P' record type, a length, "a" record inside. */
static const char FORGE[] = "x\r\nRCPT TO:<evil@example.net>\r\n"
                            "P\x01\x01\x01\x01"
                            "a\x7f\x7f\x7f\x7f"
                            "E\xff\xfe";

static struct envelope *sample(void)
{
	struct envelope *e = envelope_new();
	envelope_set(&e->mail_from, "sender@example.org");
	envelope_set(&e->envid, "QQ314159");
	envelope_set(&e->helo, "client.example.org");
	envelope_set(&e->client_addr, "2001:db8::1");
	e->ret = ESMTP_RET_HDRS;
	e->body = ESMTP_BODY_8BITMIME;
	e->received_at = 1700000000;
	e->trusted = 1;
	envelope_add_rcpt(e, "a@example.com", NULL, 0);
	envelope_add_rcpt(e, "\"b c\"@example.com", "rfc822;b@example.com",
	                  ESMTP_NOTIFY_SUCCESS | ESMTP_NOTIFY_DELAY);
	return e;
}

/*
 * magic + data + records + END with correct digests: a version 2 message file's
 * END (D1, D2) for QUEUE_FILE_MAGIC, else the one-digest END of state files and
 * version 1 message files.
 */
static void build(struct queue_buf *out, const char *magic, const void *data, size_t dlen,
                  const void *recs, size_t rlen)
{
	uint8_t d[QUEUE_FILE_DIGEST_LEN];
	out->len = 0;
	queue_buf_add(out, magic, QUEUE_FILE_MAGIC_LEN);
	queue_buf_add(out, data, dlen);
	if (strcmp(magic, QUEUE_FILE_MAGIC) == 0) {
		EVP_Digest(out->p, out->len, d, NULL, EVP_sha256(), NULL);
		queue_buf_add(out, recs, rlen);
		queue_file_encode_end(dlen, d, recs, rlen, out);
		return;
	}
	queue_buf_add(out, recs, rlen);
	EVP_Digest(out->p, out->len, d, NULL, EVP_sha256(), NULL);
	queue_file_encode_end_v1(dlen, d, out);
}

static void build_env(struct queue_buf *out, const struct envelope *e)
{
	struct queue_buf recs = {0};
	queue_file_encode_envelope(e, &recs);
	build(out, QUEUE_FILE_MAGIC, DATA, strlen(DATA), recs.p, recs.len);
	queue_buf_free(&recs);
}

static int same_env(const struct envelope *a, const struct envelope *b)
{
#define SAME(f) ((a->f == NULL && b->f == NULL) || (a->f && b->f && strcmp(a->f, b->f) == 0))
	if (!SAME(mail_from) || !SAME(envid) || !SAME(helo) || !SAME(client_addr) ||
	    a->ret != b->ret || a->body != b->body || a->received_at != b->received_at ||
	    a->trusted != b->trusted || a->n_rcpts != b->n_rcpts)
		return 0;
	for (size_t i = 0; i < a->n_rcpts; i++)
		if (!SAME(rcpts[i].addr) || !SAME(rcpts[i].orcpt) || !SAME(rcpts[i].route) ||
		    a->rcpts[i].notify != b->rcpts[i].notify)
			return 0;
	return 1;
#undef SAME
}

/* Records with a caller-made body, checksum right: only the structure can fail. */
static int parse_recs(const void *recs, size_t n)
{
	struct queue_buf f = {0};
	build(&f, QUEUE_FILE_MAGIC, "x", 1, recs, n);
	struct envelope *e = NULL;
	int r = queue_file_parse(f.p, f.len, &e, NULL, NULL);
	envelope_free(e);
	queue_buf_free(&f);
	return r;
}

TEST(round_trip)
{
	struct envelope *e = sample(), *got = NULL;
	struct queue_buf f = {0};
	uint64_t off = 0, len = 0;
	build_env(&f, e);
	CHECK(memcmp(f.p, "sharemail-queue 2\n", 18) == 0);
	/* The END record: 'E', length 72, the data length, then D1 = SHA-256(magic, data). */
	uint8_t d1[QUEUE_FILE_DIGEST_LEN];
	EVP_Digest(f.p, QUEUE_FILE_MAGIC_LEN + strlen(DATA), d1, NULL, EVP_sha256(), NULL);
	CHECK_MEM(f.p + f.len - QUEUE_FILE_END_LEN, 5, "E\0\0\0\x48", 5);
	CHECK_INT(f.p[f.len - QUEUE_FILE_END_LEN + 12], strlen(DATA));
	CHECK_MEM(f.p + f.len - 2 * QUEUE_FILE_DIGEST_LEN, QUEUE_FILE_DIGEST_LEN, d1, sizeof d1);
	if (!CHECK_INT(queue_file_parse(f.p, f.len, &got, &off, &len), 0))
		goto out;
	CHECK_INT(off, QUEUE_FILE_MAGIC_LEN);
	CHECK_MEM(f.p + off, (size_t)len, DATA, strlen(DATA));
	CHECK(same_env(e, got));
	CHECK_STR(got->rcpts[1].orcpt, "rfc822;b@example.com");
	CHECK_INT(got->rcpts[1].notify, ESMTP_NOTIFY_SUCCESS | ESMTP_NOTIFY_DELAY);
	CHECK_INT(got->rcpts[0].state, RCPT_PENDING);
	CHECK_INT(queue_file_parse(f.p, f.len, NULL, NULL, NULL), 0);
out:
	envelope_free(got);
	envelope_free(e);
	queue_buf_free(&f);
}

/* A route chosen at receipt (a Domain Sharing peer) is committed with its recipient. */
TEST(receipt_route_round_trip)
{
	struct envelope *e = sample(), *got = NULL;
	struct queue_buf f = {0};
	envelope_add_rcpt(e, "c@example.com", NULL, 0);
	CHECK_INT(envelope_set(&e->rcpts[2].route, "[192.0.2.7]:2525"), 0);
	build_env(&f, e);
	CHECK_INT(queue_file_parse(f.p, f.len, &got, NULL, NULL), 0);
	if (got) {
		CHECK(same_env(e, got));
		CHECK_INT(got->n_rcpts, 3);
		CHECK(got->rcpts[0].route == NULL);
		CHECK_STR(got->rcpts[2].route, "[192.0.2.7]:2525");
	}
	envelope_free(got);
	queue_buf_free(&f);
	/* A route over ENVELOPE_ROUTE_MAX is never written. */
	char longer[ENVELOPE_ROUTE_MAX + 2];
	memset(longer, 'r', sizeof longer - 1);
	longer[sizeof longer - 1] = '\0';
	envelope_set(&e->rcpts[2].route, longer);
	struct queue_buf recs = {0};
	CHECK_INT(queue_file_encode_envelope(e, &recs), -1);
	queue_buf_free(&recs);
	envelope_free(e);
}

TEST(minimal_envelope_and_empty_data)
{
	struct envelope *e = envelope_new(), *got = NULL;
	envelope_set(&e->mail_from, ""); /* the null reverse-path <> */
	struct queue_buf recs = {0}, f = {0};
	uint64_t len = 99;
	queue_file_encode_envelope(e, &recs);
	build(&f, QUEUE_FILE_MAGIC, "", 0, recs.p, recs.len);
	CHECK_INT(queue_file_parse(f.p, f.len, &got, NULL, &len), 0);
	CHECK_INT(len, 0);
	CHECK(got && same_env(e, got));
	CHECK(got && got->envid == NULL && got->helo == NULL);
	/* No reverse-path at all cannot be encoded. */
	struct envelope *none = envelope_new();
	recs.len = 0;
	CHECK_INT(queue_file_encode_envelope(none, &recs), -1);
	envelope_free(none);
	envelope_free(got);
	envelope_free(e);
	queue_buf_free(&recs);
	queue_buf_free(&f);
}

TEST(hostile_fields_round_trip)
{
	struct envelope *e = sample(), *got = NULL;
	char all[256];
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	envelope_set(&e->mail_from, FORGE);
	envelope_set(&e->helo, all);
	envelope_set(&e->rcpts[0].addr, FORGE);
	envelope_set(&e->envid, "\r\n.\r\nQUIT\r\n");
	struct queue_buf f = {0};
	build_env(&f, e);
	if (CHECK_INT(queue_file_parse(f.p, f.len, &got, NULL, NULL), 0)) {
		CHECK_MEM(got->mail_from, strlen(got->mail_from), FORGE, strlen(FORGE));
		CHECK_MEM(got->helo, strlen(got->helo), all, 255);
		CHECK_STR(got->rcpts[0].addr, FORGE);
		CHECK_STR(got->envid, "\r\n.\r\nQUIT\r\n");
		CHECK_INT(got->n_rcpts, 2); /* nothing forged a recipient */
	}
	envelope_free(got);
	envelope_free(e);
	queue_buf_free(&f);
}

TEST(nul_inside_a_value_is_damage)
{
	/* The writer cannot produce NUL in a string, so a NUL means a forged file. */
	static const char recs[] = "F\0\0\0\5a\0b@c";
	CHECK_INT(parse_recs(recs, sizeof recs - 1), -1);
	static const char ok[] = "F\0\0\0\5ab@cd";
	CHECK_INT(parse_recs(ok, sizeof ok - 1), 0);
}

TEST(every_truncation_is_damage)
{
	struct envelope *e = sample();
	struct queue_buf f = {0};
	build_env(&f, e);
	int bad = 0;
	for (size_t n = 0; n < f.len; n++)
		if (queue_file_parse(f.p, n, NULL, NULL, NULL) != -1)
			bad++;
	CHECK_INT(bad, 0);
	envelope_free(e);
	queue_buf_free(&f);
}

TEST(every_flipped_octet_is_damage)
{
	struct envelope *e = sample();
	struct queue_buf f = {0};
	build_env(&f, e);
	int bad = 0;
	for (size_t i = 0; i < f.len; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			f.p[i] ^= (uint8_t)(1u << bit);
			if (queue_file_parse(f.p, f.len, NULL, NULL, NULL) != -1)
				bad++;
			f.p[i] ^= (uint8_t)(1u << bit);
		}
	}
	CHECK_INT(bad, 0);
	CHECK_INT(queue_file_parse(f.p, f.len, NULL, NULL, NULL), 0);
	envelope_free(e);
	queue_buf_free(&f);
}

TEST(trailing_and_missing_end)
{
	struct envelope *e = sample();
	struct queue_buf f = {0};
	build_env(&f, e);
	/* Junk after END: END is no longer at the end. */
	queue_buf_add(&f, "\n", 1);
	CHECK_INT(queue_file_parse(f.p, f.len, NULL, NULL, NULL), -1);
	/* No END at all: magic + data + records only. */
	struct queue_buf recs = {0}, g = {0};
	queue_file_encode_envelope(e, &recs);
	queue_buf_add(&g, QUEUE_FILE_MAGIC, QUEUE_FILE_MAGIC_LEN);
	queue_buf_add(&g, DATA, strlen(DATA));
	queue_buf_add(&g, recs.p, recs.len);
	CHECK_INT(queue_file_parse(g.p, g.len, NULL, NULL, NULL), -1);
	/* A state file's magic on a message file. */
	build(&g, QUEUE_STATE_MAGIC, DATA, strlen(DATA), recs.p, recs.len);
	CHECK_INT(queue_file_parse(g.p, g.len, NULL, NULL, NULL), -1);
	envelope_free(e);
	queue_buf_free(&f);
	queue_buf_free(&g);
	queue_buf_free(&recs);
}

TEST(bad_records_with_good_checksum)
{
	static const struct {
		const char *recs;
		size_t len;
		const char *why;
	} cases[] = {
	        {"F\0\0\0\1a"
	         "Z\0\0\0\0",
	         11, "unknown type"},
	        {"F\0\0\0\1a"
	         "F\0\0\0\1b",
	         12, "duplicate reverse-path"},
	        {"I\0\0\0\1a", 6, "no reverse-path"},
	        {"F\0\0\0\2a", 6, "length overruns"},
	        {"F\0\0\0\1a"
	         "T\0\0",
	         9, "truncated header"},
	        {"F\0\0\0\1a"
	         "R\0\0\0\1\3",
	         12, "RET out of range"},
	        {"F\0\0\0\1a"
	         "R\0\0\0\1\0",
	         12, "RET zero"},
	        {"F\0\0\0\1a"
	         "R\0\0\0\2\1\1",
	         13, "RET wrong length"},
	        {"F\0\0\0\1a"
	         "B\0\0\0\1\3",
	         12, "BODY out of range"},
	        {"F\0\0\0\1a"
	         "S\0\0\0\1\2",
	         12, "trusted out of range"},
	        {"F\0\0\0\1a"
	         "T\0\0\0\4\0\0\0\0",
	         15, "time wrong length"},
	        {"F\0\0\0\1a"
	         "P\0\0\0\0",
	         11, "recipient without address"},
	        {"F\0\0\0\1a"
	         "P\0\0\0\6"
	         "a\0\0\0\2x",
	         17, "inner length overruns"},
	        {"F\0\0\0\1a"
	         "P\0\0\0\x0c"
	         "a\0\0\0\1x"
	         "a\0\0\0\1y",
	         23, "two addresses"},
	        {"F\0\0\0\1a"
	         "P\0\0\0\x0f"
	         "a\0\0\0\1x"
	         "n\0\0\0\4\0\0\0\x10",
	         26, "NOTIFY bits"},
	        {"F\0\0\0\1a"
	         "P\0\0\0\x06"
	         "a\0\0\0\1x"
	         "E\0\0\0\0",
	         22, "END at top level"},
	        {"F\0\0\0\1a"
	         "P\0\0\0\x12"
	         "a\0\0\0\1x"
	         "D\0\0\0\1r"
	         "D\0\0\0\1s",
	         29, "two routes"},
	        {"F\0\0\0\1a"
	         "P\0\0\0\x0b"
	         "a\0\0\0\1x"
	         "D\0\0\0\0",
	         22, "empty route"},
	        {"F\0\0\0\1a"
	         "\xff\xff\xff\xff\xff",
	         11, "huge length"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!CHECK_INT(parse_recs(cases[i].recs, cases[i].len), -1))
			fprintf(stderr, "  case: %s\n", cases[i].why);
	static const char good[] = "F\0\0\0\1a"
	                           "P\0\0\0\x0f"
	                           "a\0\0\0\1x"
	                           "n\0\0\0\4\0\0\0\x0f";
	CHECK_INT(parse_recs(good, sizeof good - 1), 0);
}

TEST(bad_end_record)
{
	struct envelope *e = sample();
	struct queue_buf f = {0};
	build_env(&f, e);
	uint8_t *end = f.p + f.len - QUEUE_FILE_END_LEN;
	/* Data length claiming more than the file holds, or less (checksum still right). */
	for (int delta = -1; delta <= 1; delta += 2) {
		struct queue_buf g = {0};
		queue_buf_add(&g, f.p, f.len);
		end = g.p + g.len - QUEUE_FILE_END_LEN;
		end[12] = (uint8_t)(end[12] + delta);
		CHECK_INT(queue_file_parse(g.p, g.len, NULL, NULL, NULL), -1);
		queue_buf_free(&g);
	}
	/* A data length of 2^63. */
	end = f.p + f.len - QUEUE_FILE_END_LEN;
	end[5] = 0x80;
	CHECK_INT(queue_file_parse(f.p, f.len, NULL, NULL, NULL), -1);
	envelope_free(e);
	queue_buf_free(&f);
}

static int write_tmp(const struct queue_buf *f)
{
	char path[] = "/tmp/test_queue_file.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	unlink(path);
	if (write(fd, f->p, f->len) != (ssize_t)f->len) {
		close(fd);
		return -1;
	}
	return fd;
}

TEST(read_from_fd_and_large_data)
{
	struct envelope *e = sample(), *got = NULL;
	struct queue_buf recs = {0}, f = {0};
	size_t dlen = 3 * 65536 + 123; /* several read chunks, records cross a chunk */
	uint8_t *data = malloc(dlen);
	for (size_t i = 0; i < dlen; i++)
		data[i] = (uint8_t)(i * 7);
	queue_file_encode_envelope(e, &recs);
	build(&f, QUEUE_FILE_MAGIC, data, dlen, recs.p, recs.len);
	int fd = write_tmp(&f);
	uint64_t off = 0, len = 0;
	if (CHECK(fd >= 0)) {
		int v = 0;
		CHECK_INT(queue_file_read(fd, &got, &off, &len, &v), 0);
		CHECK(got && same_env(e, got));
		CHECK_INT(off, QUEUE_FILE_MAGIC_LEN);
		CHECK_INT(len, dlen);
		CHECK_INT(v, 2);
		envelope_free(got);
		got = NULL;
		off = len = 0;
		v = 0;
		CHECK_INT(queue_file_read_meta(fd, &got, &off, &len, &v), 0);
		CHECK(got && same_env(e, got));
		CHECK_INT(len, dlen);
		CHECK_INT(v, 2);
		off = len = 0;
		CHECK_INT(queue_file_locate_data(fd, &off, &len), 0);
		CHECK_INT(len, dlen);
		/* One flipped data octet: only the full read notices. */
		uint8_t b = data[70000] ^ 0x40;
		CHECK_INT(pwrite(fd, &b, 1, QUEUE_FILE_MAGIC_LEN + 70000), 1);
		envelope_free(got);
		got = NULL;
		CHECK_INT(queue_file_read(fd, &got, NULL, NULL, NULL), -1);
		CHECK(got == NULL);
		CHECK_INT(queue_file_read_meta(fd, &got, NULL, NULL, NULL), 0);
		envelope_free(got);
		got = NULL;
		CHECK_INT(queue_file_locate_data(fd, &off, &len), 0);
		/* A flipped envelope octet: the envelope read notices too. */
		b = data[70000];
		CHECK_INT(pwrite(fd, &b, 1, QUEUE_FILE_MAGIC_LEN + 70000), 1);
		uint8_t r;
		CHECK_INT(pread(fd, &r, 1, (off_t)(QUEUE_FILE_MAGIC_LEN + dlen + 7)), 1);
		r ^= 1;
		CHECK_INT(pwrite(fd, &r, 1, (off_t)(QUEUE_FILE_MAGIC_LEN + dlen + 7)), 1);
		CHECK_INT(queue_file_read_meta(fd, &got, NULL, NULL, NULL), -1);
		CHECK_INT(queue_file_read(fd, &got, NULL, NULL, NULL), -1);
		r ^= 1;
		CHECK_INT(pwrite(fd, &r, 1, (off_t)(QUEUE_FILE_MAGIC_LEN + dlen + 7)), 1);
		CHECK_INT(queue_file_read(fd, &got, NULL, NULL, NULL), 0);
		envelope_free(got);
		got = NULL;
		CHECK_INT(ftruncate(fd, (off_t)f.len - 1), 0);
		CHECK_INT(queue_file_read(fd, &got, NULL, NULL, NULL), -1);
		CHECK_INT(queue_file_read_meta(fd, &got, NULL, NULL, NULL), -1);
		CHECK_INT(queue_file_locate_data(fd, &off, &len), -1);
		close(fd);
	}
	free(data);
	envelope_free(got);
	envelope_free(e);
	queue_buf_free(&recs);
	queue_buf_free(&f);
}

TEST(state_round_trip)
{
	struct envelope *e = sample(), *f2 = sample();
	struct queue_buf s = {0};
	e->rcpts[0].state = RCPT_DELIVERED;
	e->rcpts[0].attempts = 1;
	e->rcpts[0].next_try = 0;
	envelope_set(&e->rcpts[0].status, "250 2.0.0 delivered");
	e->rcpts[1].state = RCPT_DEFERRED;
	e->rcpts[1].attempts = 3;
	e->rcpts[1].next_try = 1700000300;
	envelope_set(&e->rcpts[1].status, "451 4.3.0 \r\nforged\0");
	/* The second recipient is an alias: one mailbox has its copy, one waits. */
	CHECK_INT(envelope_add_final(&e->rcpts[1], "arvel@example.com", RCPT_DELIVERED), 0);
	CHECK_INT(envelope_add_final(&e->rcpts[1], "\"c\r\nX\"@example.com", RCPT_DEFERRED), 1);
	e->rcpts[1].finals[0].attempts = 1;
	envelope_set(&e->rcpts[1].finals[0].status, "250 2.0.0 delivered to maildir");
	e->rcpts[1].finals[1].attempts = 3;
	envelope_set(&e->rcpts[1].finals[1].status, "452 4.2.2 mailbox full");
	CHECK_INT(queue_file_encode_state(e, &s), 0);
	CHECK(memcmp(s.p, "sharemail-state 3\n", 18) == 0);
	/* Applied over states and finals already there: replaced, not merged. */
	CHECK_INT(envelope_add_final(&f2->rcpts[0], "stale@example.com", RCPT_DEFERRED), 0);
	if (CHECK_INT(queue_file_apply_state(s.p, s.len, f2), 0)) {
		CHECK_INT(f2->rcpts[0].state, RCPT_DELIVERED);
		CHECK_STR(f2->rcpts[0].status, "250 2.0.0 delivered");
		CHECK_INT(f2->rcpts[0].n_finals, 0);
		CHECK_INT(f2->rcpts[1].state, RCPT_DEFERRED);
		CHECK_INT(f2->rcpts[1].attempts, 3);
		CHECK_INT(f2->rcpts[1].next_try, 1700000300);
		CHECK_STR(f2->rcpts[1].status, "451 4.3.0 \r\nforged");
		if (CHECK_INT(f2->rcpts[1].n_finals, 2)) {
			const struct envelope_final *a = &f2->rcpts[1].finals[0];
			const struct envelope_final *b = &f2->rcpts[1].finals[1];
			CHECK_STR(a->addr, "arvel@example.com");
			CHECK_INT(a->state, RCPT_DELIVERED);
			CHECK_INT(a->attempts, 1);
			CHECK_STR(a->status, "250 2.0.0 delivered to maildir");
			CHECK_STR(b->addr, "\"c\r\nX\"@example.com");
			CHECK_INT(b->state, RCPT_DEFERRED);
			CHECK_INT(b->attempts, 3);
			CHECK_STR(b->status, "452 4.2.2 mailbox full");
		}
	}
	envelope_free(f2);
	envelope_free(e);
	queue_buf_free(&s);
}

TEST(state_damage_changes_nothing)
{
	struct envelope *e = sample(), *f2 = sample();
	struct queue_buf s = {0};
	e->rcpts[1].state = RCPT_FAILED;
	envelope_set(&e->rcpts[1].status, "550 5.1.1 no");
	queue_file_encode_state(e, &s);
	int bad = 0;
	for (size_t n = 0; n < s.len; n++)
		if (queue_file_apply_state(s.p, n, f2) != -1)
			bad++;
	for (size_t i = 0; i < s.len; i++) {
		s.p[i] ^= 0x10;
		if (queue_file_apply_state(s.p, s.len, f2) != -1)
			bad++;
		s.p[i] ^= 0x10;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(f2->rcpts[1].state, RCPT_PENDING);
	CHECK(f2->rcpts[1].status == NULL);
	/* A state file for a different number of recipients. */
	envelope_add_rcpt(f2, "third@example.com", NULL, 0);
	CHECK_INT(queue_file_apply_state(s.p, s.len, f2), -1);
	CHECK_INT(f2->rcpts[1].state, RCPT_PENDING);
	/* A message file is not a state file. */
	struct queue_buf m = {0};
	build_env(&m, e);
	CHECK_INT(queue_file_apply_state(m.p, m.len, f2), -1);
	/* State out of range, with a good checksum. */
	static const char recs[] = "r\0\0\0\x1c"
	                           "s\0\0\0\1\5"
	                           "A\0\0\0\4\0\0\0\0"
	                           "N\0\0\0\x08\0\0\0\0\0\0\0\0";
	struct envelope *one = envelope_new();
	envelope_add_rcpt(one, "x@y", NULL, 0);
	build(&m, QUEUE_STATE_MAGIC, "", 0, recs, sizeof recs - 1);
	CHECK_INT(queue_file_apply_state(m.p, m.len, one), -1);
	char fixed[sizeof recs];
	memcpy(fixed, recs, sizeof recs);
	fixed[10] = RCPT_REMOTE;
	build(&m, QUEUE_STATE_MAGIC, "", 0, fixed, sizeof recs - 1);
	CHECK_INT(queue_file_apply_state(m.p, m.len, one), 0);
	CHECK_INT(one->rcpts[0].state, RCPT_REMOTE);
	envelope_free(one);
	envelope_free(f2);
	envelope_free(e);
	queue_buf_free(&s);
	queue_buf_free(&m);
}

/* Appends one record (type, u32 BE length, value): for hand-made files. */
static void rec(struct queue_buf *b, char type, const void *v, size_t n)
{
	uint8_t h[5] = {(uint8_t)type, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
	                (uint8_t)n};
	queue_buf_add(b, h, sizeof h);
	queue_buf_add(b, v, n);
}

static void rec_u8(struct queue_buf *b, char type, uint8_t v)
{
	rec(b, type, &v, 1);
}

static void rec_u32(struct queue_buf *b, char type, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	rec(b, type, x, 4);
}

/* A recipient's 'r' record: state st, 2 attempts, next_try 0, then the extra records. */
static void state_rec(struct queue_buf *b, unsigned st, const struct queue_buf *extra)
{
	struct queue_buf in = {0};
	rec_u8(&in, 's', (uint8_t)st);
	rec_u32(&in, 'A', 2);
	rec(&in, 'N', "\0\0\0\0\0\0\0\0", 8);
	if (extra)
		queue_buf_add(&in, extra->p, extra->len);
	rec(b, 'r', in.p, in.len);
	queue_buf_free(&in);
}

/* A final mailbox's 'X' record: each field left out when NULL / negative. */
static void final_rec(struct queue_buf *b, const char *addr, int st, int attempts)
{
	struct queue_buf in = {0};
	if (addr)
		rec(&in, 'a', addr, strlen(addr));
	if (st >= 0)
		rec_u8(&in, 's', (uint8_t)st);
	if (attempts >= 0)
		rec_u32(&in, 'A', (uint32_t)attempts);
	rec(b, 'X', in.p ? in.p : (uint8_t *)"", in.len);
	queue_buf_free(&in);
}

TEST(state_version_1_still_read)
{
	/* Written by the code before final mailboxes: read, recipients without finals. */
	struct queue_buf recs = {0}, m = {0}, x = {0};
	state_rec(&recs, RCPT_DEFERRED, NULL);
	rec(&x, 'M', "250", 3);
	state_rec(&recs, RCPT_DELIVERED, &x);
	struct envelope *e = sample();
	build(&m, QUEUE_STATE_MAGIC_V1, "", 0, recs.p, recs.len);
	if (CHECK_INT(queue_file_apply_state(m.p, m.len, e), 0)) {
		CHECK_INT(e->rcpts[0].state, RCPT_DEFERRED);
		CHECK_INT(e->rcpts[0].attempts, 2);
		CHECK_INT(e->rcpts[0].n_finals, 0);
		CHECK_INT(e->rcpts[1].state, RCPT_DELIVERED);
		CHECK_STR(e->rcpts[1].status, "250");
	}
	/* The same records are a good version 2 file too, not a version 3 one ('M'). */
	build(&m, QUEUE_STATE_MAGIC_V2, "", 0, recs.p, recs.len);
	CHECK_INT(queue_file_apply_state(m.p, m.len, e), 0);
	build(&m, QUEUE_STATE_MAGIC, "", 0, recs.p, recs.len);
	CHECK_INT(queue_file_apply_state(m.p, m.len, e), -1);
	/* A final mailbox in a version 1 file is damage (that writer never made one). */
	x.len = 0;
	final_rec(&x, "x@y", RCPT_DELIVERED, 1);
	recs.len = 0;
	state_rec(&recs, RCPT_DELIVERED, &x);
	state_rec(&recs, RCPT_PENDING, NULL);
	build(&m, QUEUE_STATE_MAGIC_V1, "", 0, recs.p, recs.len);
	CHECK_INT(queue_file_apply_state(m.p, m.len, e), -1);
	build(&m, QUEUE_STATE_MAGIC_V2, "", 0, recs.p, recs.len);
	if (CHECK_INT(queue_file_apply_state(m.p, m.len, e), 0) &&
	    CHECK_INT(e->rcpts[0].n_finals, 1)) {
		CHECK_STR(e->rcpts[0].finals[0].addr, "x@y");
		CHECK_INT(e->rcpts[0].finals[0].state, RCPT_DELIVERED);
		CHECK_INT(e->rcpts[0].finals[0].attempts, 1);
		CHECK(e->rcpts[0].finals[0].status == NULL);
	}
	envelope_free(e);
	queue_buf_free(&recs);
	queue_buf_free(&m);
	queue_buf_free(&x);
}

TEST(bad_final_records_with_good_checksum)
{
	struct queue_buf recs = {0}, m = {0}, x = {0};
	struct envelope *one = envelope_new();
	envelope_add_rcpt(one, "x@y", NULL, 0);
	/* Each case breaks one rule of an 'X' record: the file counts as damaged. */
	for (int i = 0; i < 9; i++) {
		x.len = 0;
		switch (i) {
		case 0: final_rec(&x, NULL, RCPT_DELIVERED, 1); break; /* no address */
		case 1: final_rec(&x, "", RCPT_DELIVERED, 1); break; /* empty address */
		case 2: final_rec(&x, "x@y", -1, 1); break; /* no state */
		case 3: final_rec(&x, "x@y", RCPT_DELIVERED, -1); break; /* no attempts */
		case 4: final_rec(&x, "x@y", RCPT_REMOTE + 1, 1); break; /* state out of range */
		case 5: /* two addresses */
			final_rec(&x, "x@y", RCPT_DELIVERED, 1);
			x.p[13] = 'a'; /* the 's' record becomes a second address */
			break;
		case 6: /* a next_try: only recipients have one */
			final_rec(&x, "x@y", RCPT_DELIVERED, 1);
			x.p[4] += 13;
			rec(&x, 'N', "\0\0\0\0\0\0\0\0", 8);
			break;
		case 7: /* the value overruns its record */
			final_rec(&x, "x@y", RCPT_DELIVERED, 1);
			x.p[4]++;
			break;
		case 8: /* NUL inside the address */
			final_rec(&x, "x@y", RCPT_DELIVERED, 1);
			x.p[11] = '\0';
			break;
		}
		recs.len = 0;
		state_rec(&recs, RCPT_DEFERRED, &x);
		build(&m, QUEUE_STATE_MAGIC, "", 0, recs.p, recs.len);
		if (!CHECK_INT(queue_file_apply_state(m.p, m.len, one), -1))
			fprintf(stderr, "bad final record case %d accepted\n", i);
		CHECK_INT(one->rcpts[0].state, RCPT_PENDING);
		CHECK_INT(one->rcpts[0].n_finals, 0);
	}
	/* The cases above are bad only for what they break: the plain record is good. */
	x.len = 0;
	final_rec(&x, "x@y", RCPT_DELIVERED, 1);
	recs.len = 0;
	state_rec(&recs, RCPT_DEFERRED, &x);
	build(&m, QUEUE_STATE_MAGIC, "", 0, recs.p, recs.len);
	CHECK_INT(queue_file_apply_state(m.p, m.len, one), 0);
	CHECK_INT(one->rcpts[0].n_finals, 1);
	/* More finals than an expansion can yield. */
	x.len = 0;
	char a[32];
	for (int i = 0; i <= ENVELOPE_MAX_FINALS; i++) {
		snprintf(a, sizeof a, "m%d@example.com", i);
		final_rec(&x, a, RCPT_DELIVERED, 1);
		if (i == ENVELOPE_MAX_FINALS - 1) {
			recs.len = 0;
			state_rec(&recs, RCPT_DELIVERED, &x);
			build(&m, QUEUE_STATE_MAGIC, "", 0, recs.p, recs.len);
			CHECK_INT(queue_file_apply_state(m.p, m.len, one), 0);
			CHECK_INT(one->rcpts[0].n_finals, ENVELOPE_MAX_FINALS);
		}
	}
	recs.len = 0;
	state_rec(&recs, RCPT_DELIVERED, &x);
	build(&m, QUEUE_STATE_MAGIC, "", 0, recs.p, recs.len);
	CHECK_INT(queue_file_apply_state(m.p, m.len, one), -1);
	CHECK_INT(one->rcpts[0].n_finals, ENVELOPE_MAX_FINALS); /* unchanged */
	CHECK_INT(envelope_add_final(&one->rcpts[0], "more@example.com", RCPT_PENDING), -1);
	envelope_free(one);
	queue_buf_free(&recs);
	queue_buf_free(&m);
	queue_buf_free(&x);
}

TEST(version_1_message_files_still_read)
{
	/* Written by the code before queue v2: one digest over everything before END. */
	struct envelope *e = sample(), *got = NULL;
	struct queue_buf recs = {0}, f = {0};
	queue_file_encode_envelope(e, &recs);
	build(&f, QUEUE_FILE_MAGIC_V1, DATA, strlen(DATA), recs.p, recs.len);
	CHECK_INT(f.len, QUEUE_FILE_MAGIC_LEN + strlen(DATA) + recs.len + QUEUE_FILE_END_LEN_V1);
	uint64_t off = 0, len = 0;
	if (CHECK_INT(queue_file_parse(f.p, f.len, &got, &off, &len), 0)) {
		CHECK(same_env(e, got));
		CHECK_INT(len, strlen(DATA));
	}
	envelope_free(got);
	got = NULL;
	int bad = 0;
	for (size_t n = 0; n < f.len; n++)
		bad += queue_file_parse(f.p, n, NULL, NULL, NULL) != -1;
	for (size_t i = 0; i < f.len; i++) {
		f.p[i] ^= 0x04;
		bad += queue_file_parse(f.p, f.len, NULL, NULL, NULL) != -1;
		f.p[i] ^= 0x04;
	}
	CHECK_INT(bad, 0);
	/* A version 2 END on a version 1 magic line, and the reverse, are damage. */
	struct queue_buf g = {0};
	build(&g, QUEUE_FILE_MAGIC, DATA, strlen(DATA), recs.p, recs.len);
	memcpy(g.p, QUEUE_FILE_MAGIC_V1, QUEUE_FILE_MAGIC_LEN);
	CHECK_INT(queue_file_parse(g.p, g.len, NULL, NULL, NULL), -1);
	memcpy(f.p, QUEUE_FILE_MAGIC, QUEUE_FILE_MAGIC_LEN);
	CHECK_INT(queue_file_parse(f.p, f.len, NULL, NULL, NULL), -1);
	memcpy(f.p, QUEUE_FILE_MAGIC_V1, QUEUE_FILE_MAGIC_LEN);
	/* Through a descriptor: the envelope read verifies a version 1 file whole. */
	int fd = write_tmp(&f), v = 0;
	if (CHECK(fd >= 0)) {
		CHECK_INT(queue_file_read(fd, &got, NULL, &len, &v), 0);
		CHECK_INT(v, 1);
		envelope_free(got);
		got = NULL;
		v = 0;
		CHECK_INT(queue_file_read_meta(fd, &got, &off, &len, &v), 0);
		CHECK_INT(v, 1);
		CHECK(got && same_env(e, got));
		CHECK_INT(queue_file_locate_data(fd, &off, &len), 0);
		CHECK_INT(len, strlen(DATA));
		envelope_free(got);
		got = NULL;
		uint8_t b = 'X';
		CHECK_INT(pwrite(fd, &b, 1, QUEUE_FILE_MAGIC_LEN + 2), 1); /* data: noticed */
		CHECK_INT(queue_file_read_meta(fd, &got, NULL, NULL, NULL), -1);
		close(fd);
	}
	envelope_free(e);
	queue_buf_free(&recs);
	queue_buf_free(&f);
	queue_buf_free(&g);
}

/* Writes a message of dlen data octets and rcpts recipients; checks the envelope read. */
static void meta_case(size_t dlen, size_t rcpts)
{
	struct envelope *e = envelope_new(), *got = NULL;
	struct queue_buf recs = {0}, f = {0};
	char a[64];
	envelope_set(&e->mail_from, "s@example.org");
	for (size_t i = 0; i < rcpts; i++) {
		snprintf(a, sizeof a, "recipient-number-%zu@example.com", i);
		envelope_add_rcpt(e, a, NULL, 0);
	}
	uint8_t *data = malloc(dlen ? dlen : 1);
	memset(data, '.', dlen);
	queue_file_encode_envelope(e, &recs);
	build(&f, QUEUE_FILE_MAGIC, data, dlen, recs.p, recs.len);
	int fd = write_tmp(&f);
	uint64_t off = 0, len = 0;
	if (CHECK(fd >= 0)) {
		if (!CHECK_INT(queue_file_read_meta(fd, &got, &off, &len, NULL), 0))
			fprintf(stderr, "  data %zu, %zu recipients (records %zu)\n", dlen, rcpts,
			        recs.len);
		CHECK(got && same_env(e, got));
		CHECK_INT(len, dlen);
		envelope_free(got);
		got = NULL;
		/* The last octet of the records flipped: noticed whichever way it was read. */
		uint8_t b;
		off_t at = (off_t)(f.len - QUEUE_FILE_END_LEN - 1);
		if (CHECK_INT(pread(fd, &b, 1, at), 1)) {
			b ^= 1;
			CHECK_INT(pwrite(fd, &b, 1, at), 1);
			CHECK_INT(queue_file_read_meta(fd, &got, NULL, NULL, NULL), -1);
		}
		close(fd);
	}
	free(data);
	envelope_free(got);
	envelope_free(e);
	queue_buf_free(&recs);
	queue_buf_free(&f);
}

TEST(envelope_read_small_big_and_many_recipients)
{
	meta_case(0, 1); /* the whole file in the first read */
	meta_case(100, 3);
	meta_case(100000, 2); /* the data is never read */
	meta_case(10, 400); /* records longer than the tail read: a second read */
	meta_case(100000, 400);
	/* A file too short for a version 2 END record, with a good magic line. */
	struct queue_buf f = {0};
	queue_buf_add(&f, QUEUE_FILE_MAGIC, QUEUE_FILE_MAGIC_LEN);
	for (int i = 0; i < 60; i++)
		queue_buf_add(&f, "E", 1);
	int fd = write_tmp(&f);
	struct envelope *got = NULL;
	if (CHECK(fd >= 0)) {
		CHECK_INT(queue_file_read_meta(fd, &got, NULL, NULL, NULL), -1);
		CHECK_INT(queue_file_read(fd, &got, NULL, NULL, NULL), -1);
		close(fd);
	}
	queue_buf_free(&f);
}

TEST(reply_split_and_join)
{
	static const struct {
		const char *status;
		int code;
		const char *enhanced, *text; /* text NULL: none */
	} cases[] = {
	        {"451 4.2.2 mailbox full", 451, "4.2.2", "mailbox full"},
	        {"250 2.0.0 delivered to maildir", 250, "2.0.0", "delivered to maildir"},
	        {"550 5.1.1", 550, "5.1.1", NULL},
	        {"550 5.1.1 ", 550, "5.1.1", ""},
	        {"421", 421, "", NULL},
	        {"421 ", 421, "", ""},
	        {"421 closing", 421, "", "closing"},
	        {"421  two spaces", 421, "", " two spaces"},
	        {"451 4.999.999 x", 451, "4.999.999", "x"},
	        {"451 4.1000.1 x", 451, "", "4.1000.1 x"},
	        {"451 3.1.1 x", 451, "", "3.1.1 x"},
	        {"451 4.1 x", 451, "", "4.1 x"},
	        {"451 4..1 x", 451, "", "4..1 x"},
	        {"451 4.1.1x", 451, "", "4.1.1x"},
	        {"4511 x", 0, "", "4511 x"},
	        {"199 x", 0, "", "199 x"},
	        {"600 x", 0, "", "600 x"},
	        {"45", 0, "", "45"},
	        {"", 0, "", ""},
	        {"4.2.2 x", 0, "", "4.2.2 x"},
	        {"\r\n451 x", 0, "", "\r\n451 x"},
	        {"451\r\n4.2.2", 0, "", "451\r\n4.2.2"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct envelope_reply rp;
		envelope_reply_split(cases[i].status, &rp);
		int ok = CHECK_INT(rp.code, cases[i].code) &
		         CHECK_STR(rp.enhanced, cases[i].enhanced) &
		         CHECK_STR(rp.text, cases[i].text);
		char *j = envelope_reply_join(rp.code, rp.enhanced, rp.text);
		ok &= CHECK_STR(j, cases[i].status);
		if (!ok)
			fprintf(stderr, "  case %zu: \"%s\"\n", i, cases[i].status);
		free(j);
	}
	char *j = envelope_reply_join(0, "4.2.2", "text");
	CHECK_STR(j, "text"); /* an enhanced code only follows a reply code */
	free(j);
	j = envelope_reply_join(451, NULL, NULL);
	CHECK_STR(j, "451");
	free(j);
	CHECK_INT(envelope_enhanced_valid("5.7.1", 5), 1);
	CHECK_INT(envelope_enhanced_valid("5.7.1", 4), 0);
	CHECK_INT(envelope_enhanced_valid("5.7", 3), 0);
	CHECK_INT(envelope_enhanced_valid("1.7.1", 5), 0);
}

/* A version 3 state file of one recipient whose 'r' value ends with extra. */
static int apply_v3(struct envelope *one, const struct queue_buf *extra)
{
	struct queue_buf recs = {0}, m = {0};
	state_rec(&recs, RCPT_DEFERRED, extra);
	build(&m, QUEUE_STATE_MAGIC, "", 0, recs.p, recs.len);
	int r = queue_file_apply_state(m.p, m.len, one);
	queue_buf_free(&recs);
	queue_buf_free(&m);
	return r;
}

TEST(state_version_3_structured_status_and_route)
{
	struct envelope *one = envelope_new();
	envelope_add_rcpt(one, "x@y", NULL, 0);
	struct queue_buf x = {0};
	/* The parts are joined into the status line. */
	rec(&x, 'c', "\x01\xc3", 2); /* 451 */
	rec(&x, 'e', "4.4.1", 5);
	rec(&x, 't', "no answer", 9);
	rec(&x, 'D', "example.net", 11);
	if (CHECK_INT(apply_v3(one, &x), 0)) {
		CHECK_STR(one->rcpts[0].status, "451 4.4.1 no answer");
		CHECK_STR(one->rcpts[0].route, "example.net");
	}
	/* A code alone, a text alone. */
	x.len = 0;
	rec(&x, 'c', "\x00\xfa", 2);
	if (CHECK_INT(apply_v3(one, &x), 0)) {
		CHECK_STR(one->rcpts[0].status, "250");
		CHECK(one->rcpts[0].route == NULL); /* replaced, not merged */
	}
	x.len = 0;
	rec(&x, 't', "", 0);
	if (CHECK_INT(apply_v3(one, &x), 0))
		CHECK_STR(one->rcpts[0].status, "");
	x.len = 0;
	if (CHECK_INT(apply_v3(one, &x), 0))
		CHECK(one->rcpts[0].status == NULL);
	/* Each of these is damage, and changes nothing. */
	static const struct {
		char type;
		const char *v;
		size_t n;
		const char *why;
	} bad[][2] = {
	        {{'c', "\x00\xc7", 2, "code 199"}, {0}},
	        {{'c', "\x02\x58", 2, "code 600"}, {0}},
	        {{'c', "\x01\xc3\x00", 3, "code of 3 octets"}, {0}},
	        {{'c', "\x01\xc3", 2, "two codes"}, {'c', "\x01\xc3", 2, ""}},
	        {{'e', "4.4.1", 5, "enhanced code without a code"}, {0}},
	        {{'c', "\x01\xc3", 2, "bad enhanced code"}, {'e', "4.4", 3, ""}},
	        {{'c', "\x01\xc3", 2, "two enhanced codes"}, {'e', "4.4.1", 5, ""}},
	        {{'t', "a", 1, "two texts"}, {'t', "b", 1, ""}},
	        {{'t', "a\0b", 3, "NUL in the text"}, {0}},
	        {{'D', "", 0, "empty route"}, {0}},
	        {{'D', "a", 1, "two routes"}, {'D', "b", 1, ""}},
	        {{'M', "451 old", 7, "a version 2 status"}, {0}},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		x.len = 0;
		for (int k = 0; k < 2 && bad[i][k].type; k++)
			rec(&x, bad[i][k].type, bad[i][k].v, bad[i][k].n);
		if (i == 6)
			rec(&x, 'e', "4.4.2", 5);
		envelope_set(&one->rcpts[0].status, "kept");
		if (!CHECK_INT(apply_v3(one, &x), -1))
			fprintf(stderr, "  accepted: %s\n", bad[i][0].why);
		CHECK_STR(one->rcpts[0].status, "kept");
	}
	/* A route of 255 octets is the longest. */
	char r[ENVELOPE_ROUTE_MAX + 1];
	memset(r, 'r', sizeof r);
	x.len = 0;
	rec(&x, 'D', r, ENVELOPE_ROUTE_MAX);
	CHECK_INT(apply_v3(one, &x), 0);
	x.len = 0;
	rec(&x, 'D', r, ENVELOPE_ROUTE_MAX + 1);
	CHECK_INT(apply_v3(one, &x), -1);
	/* A final mailbox with all of them. */
	x.len = 0;
	struct queue_buf in = {0};
	rec(&in, 'a', "out@example.org", 15);
	rec_u8(&in, 's', RCPT_DEFERRED);
	rec_u32(&in, 'A', 1);
	rec(&in, 'c', "\x01\xc3", 2);
	rec(&in, 'e', "4.7.1", 5);
	rec(&in, 't', "greylisted", 10);
	rec(&in, 'D', "example.org", 11);
	rec(&x, 'X', in.p, in.len);
	if (CHECK_INT(apply_v3(one, &x), 0) && CHECK_INT(one->rcpts[0].n_finals, 1)) {
		CHECK_STR(one->rcpts[0].finals[0].status, "451 4.7.1 greylisted");
		CHECK_STR(one->rcpts[0].finals[0].route, "example.org");
	}
	/* The encoder writes what the parser reads: routes and statuses of both kinds. */
	struct queue_buf s = {0};
	struct envelope *two = envelope_new();
	envelope_add_rcpt(two, "x@y", NULL, 0);
	CHECK_INT(queue_file_encode_state(one, &s), 0);
	if (CHECK_INT(queue_file_apply_state(s.p, s.len, two), 0) &&
	    CHECK_INT(two->rcpts[0].n_finals, 1)) {
		CHECK_STR(two->rcpts[0].finals[0].status, "451 4.7.1 greylisted");
		CHECK_STR(two->rcpts[0].finals[0].route, "example.org");
	}
	/* A route the parser would refuse is never written. */
	char longr[ENVELOPE_ROUTE_MAX + 2];
	memset(longr, 'r', sizeof longr - 1);
	longr[sizeof longr - 1] = '\0';
	envelope_set(&one->rcpts[0].route, longr);
	CHECK_INT(queue_file_encode_state(one, &s), -1);
	envelope_set(&one->rcpts[0].route, "");
	CHECK_INT(queue_file_encode_state(one, &s), 0); /* "" = not routed: no record */
	CHECK_INT(queue_file_apply_state(s.p, s.len, two), 0);
	CHECK(two->rcpts[0].route == NULL);
	envelope_free(two);
	envelope_free(one);
	queue_buf_free(&s);
	queue_buf_free(&in);
	queue_buf_free(&x);
}

TEST(state_delay_notice_flag)
{
	/* Written only when set, read back; a file without it reads as not sent. */
	struct envelope *e = sample(), *f2 = sample();
	struct queue_buf s = {0}, x = {0};
	e->rcpts[1].state = RCPT_DEFERRED;
	e->rcpts[1].delay_notified = 1;
	CHECK_INT(queue_file_encode_state(e, &s), 0);
	f2->rcpts[0].delay_notified = 1; /* replaced, not merged */
	if (CHECK_INT(queue_file_apply_state(s.p, s.len, f2), 0)) {
		CHECK_INT(f2->rcpts[0].delay_notified, 0);
		CHECK_INT(f2->rcpts[1].delay_notified, 1);
	}
	e->rcpts[1].delay_notified = 0;
	size_t without = 0;
	CHECK_INT(queue_file_encode_state(e, &s), 0);
	without = s.len;
	e->rcpts[1].delay_notified = 1;
	CHECK_INT(queue_file_encode_state(e, &s), 0);
	CHECK_INT(s.len, without + 6); /* one 'W' record of one octet */
	/* By hand: 1 is the only value; twice, or of another length, is damage. */
	struct envelope *one = envelope_new();
	envelope_add_rcpt(one, "x@y", NULL, 0);
	rec_u8(&x, 'W', 1);
	if (CHECK_INT(apply_v3(one, &x), 0))
		CHECK_INT(one->rcpts[0].delay_notified, 1);
	static const char *const bad[] = {"\0", "\2", "\1\1"};
	static const size_t badlen[] = {1, 1, 2};
	for (size_t i = 0; i < 3; i++) {
		x.len = 0;
		rec(&x, 'W', bad[i], badlen[i]);
		CHECK_INT(apply_v3(one, &x), -1);
	}
	x.len = 0;
	rec_u8(&x, 'W', 1);
	rec_u8(&x, 'W', 1);
	CHECK_INT(apply_v3(one, &x), -1);
	/* Not in a final mailbox's record. */
	x.len = 0;
	struct queue_buf in = {0};
	rec(&in, 'a', "m@y", 3);
	rec_u8(&in, 's', RCPT_DEFERRED);
	rec_u32(&in, 'A', 1);
	rec_u8(&in, 'W', 1);
	rec(&x, 'X', in.p, in.len);
	CHECK_INT(apply_v3(one, &x), -1);
	envelope_free(one);
	envelope_free(f2);
	envelope_free(e);
	queue_buf_free(&s);
	queue_buf_free(&x);
	queue_buf_free(&in);
}

TEST_MAIN(T(round_trip), T(receipt_route_round_trip), T(minimal_envelope_and_empty_data),
          T(hostile_fields_round_trip), T(nul_inside_a_value_is_damage),
          T(every_truncation_is_damage), T(every_flipped_octet_is_damage),
          T(trailing_and_missing_end), T(bad_records_with_good_checksum), T(bad_end_record),
          T(read_from_fd_and_large_data), T(state_round_trip), T(state_damage_changes_nothing),
          T(state_version_1_still_read), T(bad_final_records_with_good_checksum),
          T(version_1_message_files_still_read), T(envelope_read_small_big_and_many_recipients),
          T(reply_split_and_join), T(state_version_3_structured_status_and_route),
          T(state_delay_notice_flag))
