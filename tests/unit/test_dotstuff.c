/*
 * Unit tests for proto/dotstuff: dot-stuffing on the way out (RFC 5321 4.5.2)
 * with CRLF-only line ends. Every case is fed whole, one octet per call and in
 * chunks, through output windows from 1 octet up, and must give the same
 * octets; a round trip through smtp_lines' DATA reader (the server side)
 * gives back the body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proto/dotstuff.h"
#include "proto/smtp_lines.h"

#define OUT_MAX (1 << 16)

struct stuff_case {
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *want; /* the whole data, end included */
	size_t want_len; /* 0: strlen(want) */
	unsigned fixed; /* bare CRs and LFs sent as CRLF */
};

static const struct stuff_case stuff_cases[] = {
        {"", 0, ".\r\n", 0, 0},
        {"a\r\n", 0, "a\r\n.\r\n", 0, 0},
        {"a", 0, "a\r\n.\r\n", 0, 0}, /* a last line without CRLF gets one */
        {"\r\n", 0, "\r\n.\r\n", 0, 0},
        {".\r\n", 0, "..\r\n.\r\n", 0, 0},
        {"..\r\n", 0, "...\r\n.\r\n", 0, 0},
        {".", 0, "..\r\n.\r\n", 0, 0},
        {".x\r\n", 0, "..x\r\n.\r\n", 0, 0},
        {"a.b\r\n.c\r\n", 0, "a.b\r\n..c\r\n.\r\n", 0, 0},
        {"\r\n.\r\n", 0, "\r\n..\r\n.\r\n", 0, 0},
        {"a\r\n.\r\nb\r\n", 0, "a\r\n..\r\nb\r\n.\r\n", 0, 0},
        {" .\r\n", 0, " .\r\n.\r\n", 0, 0}, /* only a dot that opens the line */
        /* Bare LF and bare CR leave as CRLF (smuggling shapes included). */
        {"a\nb\n", 0, "a\r\nb\r\n.\r\n", 0, 2},
        {"\n.\n", 0, "\r\n..\r\n.\r\n", 0, 2},
        {"\n.\r\n", 0, "\r\n..\r\n.\r\n", 0, 1},
        {"\r.\r", 0, "\r\n..\r\n.\r\n", 0, 2},
        {"a\r\r\n", 0, "a\r\n\r\n.\r\n", 0, 1},
        {"a\r", 0, "a\r\n.\r\n", 0, 1},
        {"a\n\r", 0, "a\r\n\r\n.\r\n", 0, 2},
        {"\r\r\r", 0, "\r\n\r\n\r\n.\r\n", 0, 3},
        {"\n\n", 0, "\r\n\r\n.\r\n", 0, 2},
        {"\r\n\n", 0, "\r\n\r\n.\r\n", 0, 1},
        /* Other octets pass untouched: NUL, 8-bit, TAB. */
        {"\0\xff\t\x80\r\n", 6, "\0\xff\t\x80\r\n.\r\n", 9, 0},
};

/* Stuffs `in` in chunks of `chunk` (0: whole) through windows of `win` octets. */
static size_t stuff(const char *in, size_t len, size_t chunk, size_t win, char *out,
                    struct dotstuff *d)
{
	size_t o = 0, pos = 0;
	int stuck = 0;
	dotstuff_init(d);
	while (pos < len && stuck < 2) {
		size_t n = chunk && len - pos > chunk ? chunk : len - pos;
		size_t w = 0;
		size_t used = dotstuff_feed(d, in + pos, n, out + o, win, &w);
		if (w > win)
			return (size_t)-1;
		pos += used;
		o += w;
		stuck = used ? 0 : stuck + 1;
	}
	if (pos < len)
		return (size_t)-1;
	size_t e = dotstuff_end(d, out + o, OUT_MAX - o);
	return e ? o + e : (size_t)-1;
}

TEST(stuff_table)
{
	static const size_t chunks[] = {0, 1, 2, 3};
	static const size_t wins[] = {2, 3, 5, OUT_MAX};
	static char out[OUT_MAX];
	for (size_t i = 0; i < sizeof stuff_cases / sizeof stuff_cases[0]; i++) {
		const struct stuff_case *c = &stuff_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		size_t wlen = c->want_len ? c->want_len : strlen(c->want);
		for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
			for (size_t w = 0; w < sizeof wins / sizeof wins[0]; w++) {
				struct dotstuff d;
				size_t n = stuff(c->in, len, chunks[k], wins[w], out, &d);
				if (!CHECK_MEM(out, n == (size_t)-1 ? 0 : n, c->want, wlen))
					fprintf(stderr, "     case %zu chunk %zu window %zu\n", i,
					        chunks[k], wins[w]);
				CHECK_INT(d.line_ends_fixed, c->fixed);
				CHECK_INT(d.in_octets, len);
				CHECK_INT(d.out_octets, wlen);
			}
		}
	}
}

/* A window too small for an octet's expansion consumes nothing (no partial ".." or CRLF). */
TEST(small_windows)
{
	struct dotstuff d;
	char out[8];
	size_t w = 99;
	dotstuff_init(&d);
	CHECK_INT(dotstuff_feed(&d, ".a", 2, out, 1, &w), 0);
	CHECK_INT(w, 0);
	CHECK_INT(dotstuff_feed(&d, ".a", 2, out, 0, &w), 0);
	CHECK_INT(dotstuff_feed(&d, ".a", 2, out, 2, &w), 1);
	CHECK_MEM(out, w, "..", 2);
	CHECK_INT(dotstuff_feed(&d, "a\n", 2, out, 2, &w), 1);
	CHECK_MEM(out, w, "a", 1);
	CHECK_INT(dotstuff_feed(&d, "\n", 1, out, 1, &w), 0);
	CHECK_INT(dotstuff_feed(&d, "\n", 1, out, 2, &w), 1);
	CHECK_MEM(out, w, "\r\n", 2);
	/* The end needs DOTSTUFF_END_MAX octets or writes nothing. */
	memset(out, 'Z', sizeof out);
	CHECK_INT(dotstuff_end(&d, out, DOTSTUFF_END_MAX - 1), 0);
	CHECK_INT(out[0], 'Z');
	CHECK_INT(dotstuff_end(&d, out, DOTSTUFF_END_MAX), 3);
	CHECK_MEM(out, 3, ".\r\n", 3);
}

/* The LF of a CRLF split from its CR by a call boundary is not a second line end. */
TEST(crlf_split_across_calls)
{
	struct dotstuff d;
	char out[16];
	size_t w, o = 0;
	dotstuff_init(&d);
	dotstuff_feed(&d, "a\r", 2, out, sizeof out, &w);
	o += w;
	CHECK_INT(dotstuff_feed(&d, "\n", 1, out + o, sizeof out - o, &w), 1);
	CHECK_INT(w, 0);
	dotstuff_feed(&d, ".b", 2, out + o, sizeof out - o, &w);
	o += w;
	CHECK_MEM(out, o, "a\r\n..b", 6);
	CHECK_INT(d.line_ends_fixed, 0);
}

/* RFC 5321 4.5.3.1.6: a 998-octet line passes byte-exact, and unfolded even when stuffed. */
TEST(long_lines_unfolded)
{
	static char in[3000], out[OUT_MAX], want[OUT_MAX];
	struct dotstuff d;
	for (size_t i = 0; i < 998; i++)
		in[i] = (char)('a' + i % 26);
	memcpy(in + 998, "\r\n", 2);
	size_t n = stuff(in, 1000, 7, 64, out, &d);
	memcpy(want, in, 1000);
	memcpy(want + 1000, ".\r\n", 3);
	CHECK_MEM(out, n, want, 1003);
	in[0] = '.';
	n = stuff(in, 1000, 0, OUT_MAX, out, &d);
	CHECK_INT(n, 1004);
	CHECK(n == 1004 && out[0] == '.' && out[1] == '.' && memcmp(out + 2, in + 1, 999) == 0);
}

/* Unstuffs with the server's DATA reader; returns the length of the body. */
static size_t unstuff(const char *in, size_t len, char *out, int *ended)
{
	char buf[4096];
	struct smtp_lines l;
	size_t o = 0, pos = 0;
	smtp_lines_init(&l, buf, sizeof buf);
	smtp_lines_begin_data(&l, 0);
	*ended = 0;
	while (pos < len) {
		size_t used;
		const char *p;
		size_t n;
		enum smtp_lines_event ev = smtp_lines_feed(&l, in + pos, len - pos, &used, &p, &n);
		pos += used;
		if (ev == SMTP_LINES_DATA) {
			memcpy(out + o, p, n);
			o += n;
		} else if (ev == SMTP_LINES_END_OF_DATA) {
			*ended = pos == len; /* the end is the very last thing sent */
			break;
		} else if (ev != SMTP_LINES_NEED_MORE) {
			break;
		}
	}
	return o;
}

/*
 * Random CRLF-only bodies rich in dots and line ends: what the server stores
 * after unstuffing is the body (plus a CRLF when it lacked one), and the end of
 * data is seen exactly at the end.
 */
TEST(round_trip_through_the_server_reader)
{
	static char body[2048], wire[OUT_MAX], back[OUT_MAX];
	static const char alphabet[] = "..\r\n.ab \x80";
	unsigned seed = 12345;
	for (int round = 0; round < 500; round++) {
		size_t len = 0;
		int n_parts = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 60;
		for (int i = 0; i < n_parts && len + 2 < sizeof body; i++) {
			seed = seed * 1103515245u + 12345u;
			char ch = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
			if (ch == '\r' || ch == '\n') {
				body[len++] = '\r'; /* the queue's bodies are CRLF-only */
				body[len++] = '\n';
			} else {
				body[len++] = ch;
			}
		}
		struct dotstuff d;
		size_t w = stuff(body, len, (size_t)(round % 5), 2 + (size_t)(round % 7), wire, &d);
		int ended;
		size_t b = unstuff(wire, w, back, &ended);
		size_t want = len;
		if (len > 0 && !(len >= 2 && body[len - 2] == '\r' && body[len - 1] == '\n')) {
			memcpy(body + len, "\r\n", 2);
			want += 2;
		}
		if (!CHECK(ended) || !CHECK_MEM(back, b, body, want)) {
			fprintf(stderr, "     round %d\n", round);
			return;
		}
		CHECK_INT(d.line_ends_fixed, 0);
	}
}

TEST_MAIN(T(stuff_table), T(small_windows), T(crlf_split_across_calls), T(long_lines_unfolded),
          T(round_trip_through_the_server_reader))
