/*
 * Unit tests for proto/smtp_lines: CRLF-only framing (SMTP smuggling), command
 * line limits, DATA dot-unstuffing and end of data, the DATA counters. Every
 * case is fed in one piece, one octet per call and in small chunks, and must
 * give the same transcript each time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proto/smtp_lines.h"

#define TRANSCRIPT_MAX (1 << 18)

struct transcript {
	char text[TRANSCRIPT_MAX];
	size_t len;
	int in_data;
	int lines_over; /* a LINE longer than SMTP_LINES_CMD_MAX was returned */
	size_t max_buffered;
};

static void put(struct transcript *t, const char *s, size_t n)
{
	if (t->len + n < sizeof t->text) {
		memcpy(t->text + t->len, s, n);
		t->len += n;
	}
}

static void puts_t(struct transcript *t, const char *s)
{
	put(t, s, strlen(s));
}

static void close_data(struct transcript *t)
{
	if (t->in_data) {
		puts_t(t, ")");
		t->in_data = 0;
	}
}

/* Records an event; LINE "DATA" switches the reader to DATA mode like a session. */
static void record(struct transcript *t, struct smtp_lines *l, enum smtp_lines_event ev,
                   const char *out, size_t out_len)
{
	char tmp[96];
	switch (ev) {
	case SMTP_LINES_NEED_MORE: return;
	case SMTP_LINES_DATA:
		if (!t->in_data)
			puts_t(t, "|D(");
		t->in_data = 1;
		put(t, out, out_len);
		return;
	default: break;
	}
	close_data(t);
	switch (ev) {
	case SMTP_LINES_LINE:
		puts_t(t, "|L(");
		put(t, out, out_len);
		puts_t(t, ")");
		if (out_len > SMTP_LINES_CMD_MAX)
			t->lines_over = 1;
		if (out_len == 4 && strncmp(out, "DATA", 4) == 0)
			smtp_lines_begin_data(l, 998);
		break;
	case SMTP_LINES_END_OF_DATA:
		snprintf(tmp, sizeof tmp, "|E(%llu,%u,%d,%zu)", l->data_octets, l->received_headers,
		         l->text_line_too_long, l->max_text_line);
		puts_t(t, tmp);
		break;
	case SMTP_LINES_TOO_LONG: puts_t(t, "|T"); break;
	case SMTP_LINES_BARE_LF_CR: puts_t(t, "|B"); break;
	default: puts_t(t, "|?"); break;
	}
}

/* Feeds in[0..len) in pieces of `chunk` octets (0 = in one piece). */
static void run(struct transcript *t, const char *in, size_t len, size_t chunk)
{
	static char buf[1024];
	struct smtp_lines l;
	size_t off = 0;

	memset(t, 0, sizeof *t);
	smtp_lines_init(&l, buf, sizeof buf);
	while (off < len) {
		size_t n = chunk && len - off > chunk ? chunk : len - off;
		const char *p = in + off;
		off += n;
		while (n > 0) {
			size_t used = 0, out_len = 0;
			const char *out = NULL;
			enum smtp_lines_event ev = smtp_lines_feed(&l, p, n, &used, &out, &out_len);
			if (!CHECK(used <= n) || !CHECK(used > 0 || ev != SMTP_LINES_NEED_MORE))
				return;
			if (l.len > t->max_buffered)
				t->max_buffered = l.len;
			record(t, &l, ev, out, out_len);
			p += used;
			n -= used;
			if (ev == SMTP_LINES_BARE_LF_CR) {
				close_data(t);
				return;
			}
		}
	}
	close_data(t);
}

struct lines_case {
	const char *in;
	const char *want;
};

static const struct lines_case lines_cases[] = {
        {"EHLO x\r\n", "|L(EHLO x)"},
        {"EHLO x\r\nMAIL FROM:<a@b>\r\n", "|L(EHLO x)|L(MAIL FROM:<a@b>)"},
        {"\r\n", "|L()"},
        {"NOOP", ""},
        /* Bare LF / CR in command mode. */
        {"EHLO x\n", "|B"},
        {"EHLO x\rMAIL\r\n", "|B"},
        {"a\rb\r\n", "|B"},
        {"\n", "|B"},
        {"\r\r\n", "|B"},
        {"NOOP\r\n\nQUIT\r\n", "|L(NOOP)|B"},
        /* DATA and end of data. */
        {"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
         "|L(DATA)|D(Subject: x\r\n\r\nbody\r\n)|E(20,0,0,10)|L(QUIT)"},
        {"DATA\r\n.\r\nQUIT\r\n", "|L(DATA)|E(0,0,0,0)|L(QUIT)"},
        {"DATA\r\na\r\n.\r\nb\r\n", "|L(DATA)|D(a\r\n)|E(3,0,0,1)|L(b)"},
        {"DATA\r\n\r\n.\r\n", "|L(DATA)|D(\r\n)|E(2,0,0,0)"},
        {"DATA\r\na.\r\n.\r\n", "|L(DATA)|D(a.\r\n)|E(4,0,0,2)"},
        {"DATA\r\n. \r\n.\r\n", "|L(DATA)|D( \r\n)|E(3,0,0,1)"},
        /* Dot-unstuffing (RFC 5321 4.5.2). */
        {"DATA\r\n..hidden\r\n.x\r\n...\r\n..\r\n.\r\n",
         "|L(DATA)|D(.hidden\r\nx\r\n..\r\n.\r\n)|E(19,0,0,7)"},
        /* SMTP smuggling variants (CVE-2023-51764): never an end of data. */
        {"DATA\r\nhello\n.\nMAIL FROM:<x@y>\r\n", "|L(DATA)|D(hello)|B"},
        {"DATA\r\nhello\r\n\n.\r\n", "|L(DATA)|D(hello\r\n)|B"},
        {"DATA\r\nhi\r.\r\n", "|L(DATA)|D(hi)|B"},
        {"DATA\r\nhi\r\n.\n", "|L(DATA)|D(hi\r\n)|B"},
        {"DATA\r\nhi\r\n.\r.\r\n", "|L(DATA)|D(hi\r\n)|B"},
        {"DATA\r\nhi\n.\r\n", "|L(DATA)|D(hi)|B"},
        {"DATA\r\na\rb\r\n.\r\n", "|L(DATA)|D(a)|B"},
        {"DATA\r\n.\n", "|L(DATA)|B"},
        {"DATA\r\n\n", "|L(DATA)|B"},
        {"DATA\r\n\r\r\n", "|L(DATA)|B"},
        /* Received: fields, only in the header section. */
        {"DATA\r\nReceived: a\r\nreceived : b\r\nRECEIVED:c\r\n\tfolded\r\nX-Received: d\r\n"
         "Receivedx: e\r\n\r\nReceived: body\r\n.\r\n",
         "|L(DATA)|D(Received: a\r\nreceived : b\r\nRECEIVED:c\r\n\tfolded\r\nX-Received: "
         "d\r\nReceivedx: e\r\n\r\nReceived: body\r\n)|E(95,3,0,14)"},
        {"DATA\r\n.Received: a\r\n.\r\n", "|L(DATA)|D(Received: a\r\n)|E(13,1,0,11)"},
        /* Pipelining: several commands and a message in one read. */
        {"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
         "|L(MAIL FROM:<a@b>)|L(RCPT TO:<c@d>)|L(DATA)|D(x\r\n)|E(3,0,0,1)|L(QUIT)"},
        {"DATA\r\na\r\n.\r\nDATA\r\nb\r\n.\r\n",
         "|L(DATA)|D(a\r\n)|E(3,0,0,1)|L(DATA)|D(b\r\n)|E(3,0,0,1)"},
};

static void check_all_splits(const char *in, size_t len, const char *want, size_t want_len)
{
	static struct transcript whole, part;
	static const size_t chunks[] = {1, 2, 3, 7, 64};

	run(&whole, in, len, 0);
	if (want)
		CHECK_MEM(whole.text, whole.len, want, want_len);
	for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
		run(&part, in, len, chunks[c]);
		CHECK_MEM(part.text, part.len, whole.text, whole.len);
	}
}

TEST(table_every_split)
{
	for (size_t i = 0; i < sizeof lines_cases / sizeof lines_cases[0]; i++)
		check_all_splits(lines_cases[i].in, strlen(lines_cases[i].in), lines_cases[i].want,
		                 strlen(lines_cases[i].want));
}

static char *repeat(char c, size_t n, const char *suffix)
{
	size_t s = strlen(suffix);
	char *p = malloc(n + s + 1);
	if (!p)
		abort();
	memset(p, c, n);
	memcpy(p + n, suffix, s + 1);
	return p;
}

TEST(command_line_limit)
{
	static struct transcript t;
	char *ok = repeat('A', SMTP_LINES_CMD_MAX, "\r\nNOOP\r\n");
	char *over = repeat('A', SMTP_LINES_CMD_MAX + 1, "\r\nNOOP\r\n");
	char *far = repeat('A', 5000, "\r\nNOOP\r\n");
	char *bare = repeat('A', 600, "\nNOOP\r\n");

	run(&t, ok, strlen(ok), 0);
	CHECK(t.len == 3 + SMTP_LINES_CMD_MAX + 1 + 8);
	CHECK(t.len > 3 && memcmp(t.text, "|L(A", 4) == 0);
	check_all_splits(ok, strlen(ok), NULL, 0);

	check_all_splits(over, strlen(over), "|T|L(NOOP)", 10);
	check_all_splits(far, strlen(far), "|T|L(NOOP)", 10);
	run(&t, far, strlen(far), 1);
	CHECK(t.max_buffered <= SMTP_LINES_CMD_MAX);
	CHECK(!t.lines_over);
	/* The smuggling check also applies to the skipped part. */
	check_all_splits(bare, strlen(bare), "|T|B", 4);
	free(ok);
	free(over);
	free(far);
	free(bare);
}

TEST(megabyte_without_crlf)
{
	static char buf[1024];
	static char junk[4096];
	struct smtp_lines l;
	size_t total = 0, used, out_len;
	const char *out;
	int too_long = 0, others = 0;

	memset(junk, 'x', sizeof junk);
	smtp_lines_init(&l, buf, sizeof buf);
	while (total < (1 << 20)) {
		size_t off = 0;
		while (off < sizeof junk) {
			enum smtp_lines_event ev = smtp_lines_feed(
			        &l, junk + off, sizeof junk - off, &used, &out, &out_len);
			if (ev == SMTP_LINES_TOO_LONG)
				too_long++;
			else if (ev != SMTP_LINES_NEED_MORE)
				others++;
			off += used;
			CHECK(l.len <= SMTP_LINES_CMD_MAX);
			if (used == 0)
				break;
		}
		total += sizeof junk;
	}
	CHECK_INT(too_long, 1);
	CHECK_INT(others, 0);
	CHECK(l.skipping);
	CHECK_INT(l.skipped, 1 << 20);
	CHECK_INT(smtp_lines_pending(&l), 0);
	enum smtp_lines_event ev = smtp_lines_feed(&l, "\r\nQUIT\r\n", 8, &used, &out, &out_len);
	CHECK_INT(ev, SMTP_LINES_LINE);
	CHECK_INT(used, 8);
	CHECK_MEM(out, out_len, "QUIT", 4);
	CHECK(!l.skipping);
	CHECK_INT(l.skipped, 0);
}

TEST(bare_is_final)
{
	static char buf[1024];
	struct smtp_lines l;
	size_t used, out_len;
	const char *out;

	smtp_lines_init(&l, buf, sizeof buf);
	CHECK_INT(smtp_lines_feed(&l, "NOOP\n", 5, &used, &out, &out_len), SMTP_LINES_BARE_LF_CR);
	CHECK_INT(used, 5);
	CHECK_INT(smtp_lines_feed(&l, "NOOP\r\n", 6, &used, &out, &out_len), SMTP_LINES_BARE_LF_CR);
	CHECK_INT(used, 6);
}

TEST(pending_octets)
{
	static char buf[1024];
	struct smtp_lines l;
	size_t used, out_len;
	const char *out;

	smtp_lines_init(&l, buf, sizeof buf);
	CHECK_INT(smtp_lines_feed(&l, "NOO", 3, &used, &out, &out_len), SMTP_LINES_NEED_MORE);
	CHECK_INT(smtp_lines_pending(&l), 3);
	CHECK_INT(smtp_lines_feed(&l, "P\r", 2, &used, &out, &out_len), SMTP_LINES_NEED_MORE);
	CHECK_INT(smtp_lines_pending(&l), 5);
	CHECK_INT(smtp_lines_feed(&l, "\nDATA\r\n", 7, &used, &out, &out_len), SMTP_LINES_LINE);
	CHECK_INT(used, 1);
	CHECK_MEM(out, out_len, "NOOP", 4);
	CHECK_INT(smtp_lines_pending(&l), 0);
	CHECK_INT(smtp_lines_feed(&l, "DATA\r\n", 6, &used, &out, &out_len), SMTP_LINES_LINE);
	smtp_lines_begin_data(&l, 998);
	CHECK_INT(smtp_lines_feed(&l, ".\r", 2, &used, &out, &out_len), SMTP_LINES_NEED_MORE);
	CHECK_INT(smtp_lines_pending(&l), 2);
	CHECK_INT(smtp_lines_feed(&l, "\n", 1, &used, &out, &out_len), SMTP_LINES_END_OF_DATA);
	CHECK(!l.data_mode);
	CHECK_INT(smtp_lines_pending(&l), 0);
}

/*
 * RFC 5321 4.5.3.1.6 limits the text line; the transparency dot of 4.5.2 is not
 * text: a 998-octet line that begins with '.' arrives as 999 octets and is legal.
 */
TEST(text_line_limit)
{
	char *ok = repeat('a', 998, "\r\n.\r\n");
	char *over = repeat('a', 999, "\r\n.\r\n");
	char *stuffed = repeat('.', 999, "\r\n.\r\n"); /* 999 as sent, 998 stored */
	char *stuffed_over = repeat('.', 1000, "\r\n.\r\n"); /* 999 stored */
	static char buf[1024];
	struct smtp_lines l;
	size_t used, out_len;
	const char *out;
	const char *inputs[] = {ok, over, stuffed, stuffed_over};
	const int want[] = {0, 1, 0, 1};
	const size_t want_max[] = {998, 999, 998, 999};

	for (size_t k = 0; k < 4; k++) {
		unsigned long long octets = 0;
		enum smtp_lines_event ev;
		const char *p = inputs[k];
		size_t n = strlen(p);
		smtp_lines_init(&l, buf, sizeof buf);
		smtp_lines_begin_data(&l, 998);
		do {
			ev = smtp_lines_feed(&l, p, n, &used, &out, &out_len);
			if (ev == SMTP_LINES_DATA)
				octets += out_len;
			p += used;
			n -= used;
		} while (ev == SMTP_LINES_DATA);
		CHECK_INT(ev, SMTP_LINES_END_OF_DATA);
		CHECK_INT(l.text_line_too_long, want[k]);
		CHECK_INT(l.max_text_line, want_max[k]);
		CHECK_INT(l.data_octets, octets);
		CHECK_INT(octets, strlen(inputs[k]) - 3 - (k >= 2));
	}
	free(ok);
	free(over);
	free(stuffed);
	free(stuffed_over);
}

/* The Message-ID kept after DATA text[0..) (the "\r\n.\r\n" is added), fed chunk octets at a time. */
static const char *message_id_of(const char *text, size_t chunk)
{
	static char buf[1024], in[4096];
	static struct smtp_lines l;
	size_t used, out_len, n = (size_t)snprintf(in, sizeof in, "%s\r\n.\r\n", text);
	const char *out, *p = in;
	enum smtp_lines_event ev = SMTP_LINES_NEED_MORE;
	smtp_lines_init(&l, buf, sizeof buf);
	smtp_lines_begin_data(&l, 998);
	while (n > 0 && ev != SMTP_LINES_END_OF_DATA && ev != SMTP_LINES_BARE_LF_CR) {
		size_t len = chunk && chunk < n ? chunk : n;
		ev = smtp_lines_feed(&l, p, len, &used, &out, &out_len);
		p += used;
		n -= used;
	}
	CHECK_INT(ev, SMTP_LINES_END_OF_DATA);
	CHECK_INT(strlen(l.msgid), l.msgid_len);
	return l.msgid;
}

/* RFC 5322 3.6.4: the first Message-ID field of the header section, unfolded, for the log. */
TEST(message_id_kept)
{
	char *long_id = repeat('i', 300, ">");
	char long_in[400], long_want[SMTP_LINES_MSGID_MAX + 1];
	snprintf(long_in, sizeof long_in, "Message-ID: <%s\r\n\r\nx", long_id);
	snprintf(long_want, sizeof long_want, " <%s", long_id);
	const struct {
		const char *in, *want;
	} cases[] = {
	        {"Subject: a\r\nMessage-ID: <a@b.example>\r\n\r\nbody", " <a@b.example>"},
	        {"message-id:<a@b>\r\n\r\n", "<a@b>"},
	        {"Message-Id :\t<x@y>", "\t<x@y>"},
	        {"Message-ID:\r\n <folded@x>\r\n\tmore\r\nSubject: s\r\n tail",
	         " <folded@x>\tmore"},
	        {"Message-ID: <1@x>\r\nMessage-ID: <2@x>\r\n", " <1@x>"},
	        {"Message-ID: <a:b@c>", " <a:b@c>"},
	        {"Subject: s\r\n\r\nMessage-ID: <in-body@x>", ""},
	        {"X-Message-ID: <no@x>\r\nMessage-IDs: <no@x>", ""},
	        {"Subject: a\r\n Message-ID: <continuation@x>", ""},
	        {"..Message-ID: <stuffed@x>", ""},
	        {".Message-ID: <unstuffed@x>", " <unstuffed@x>"},
	        {"Message-ID: <ends-headers@x>\r\n\r\n <not-a-continuation>", " <ends-headers@x>"},
	        {"Subject: none", ""},
	        {long_in, long_want},
	};
	static const size_t chunks[] = {0, 1, 2, 3, 7};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++)
			if (!CHECK_STR(message_id_of(cases[i].in, chunks[k]), cases[i].want))
				fprintf(stderr, "    case %zu, chunks of %zu\n", i, chunks[k]);
	free(long_id);
}

/* Large messages come out in several chunks that add up byte-exact. */
TEST(large_message_chunks)
{
	size_t n = 20000, o = 0;
	char *in = malloc(n + 16);
	char *want = malloc(n + 16);
	static struct transcript t;
	if (!in || !want)
		abort();
	memcpy(in, "DATA\r\n", 6);
	o = 6;
	memcpy(want, "|L(DATA)|D(", 11);
	size_t w = 11;
	for (size_t i = 0; o < n; i++) {
		char c = (char)('a' + i % 26);
		if (i % 70 == 69) {
			memcpy(in + o, "\r\n", 2);
			memcpy(want + w, "\r\n", 2);
			o += 2;
			w += 2;
		} else {
			in[o++] = c;
			want[w++] = c;
		}
	}
	memcpy(in + o, "\r\n.\r\n", 5);
	o += 5;
	memcpy(want + w, "\r\n)", 3);
	w += 3;
	run(&t, in, o, 0);
	CHECK(t.len > w && memcmp(t.text, want, w) == 0);
	check_all_splits(in, o, NULL, 0);
	free(in);
	free(want);
}

/* smtp_dotstuff(unstuffed) reproduces the stuffed input byte for byte. */
TEST(dotstuff_round_trip)
{
	static const char *const stuffed[] = {
	        "",
	        "a\r\n",
	        "..\r\n",
	        "..leading\r\nmiddle.\r\n...\r\n\r\n..\r\nend\r\n",
	        "Subject: .x\r\n\r\n..hidden\r\n.. \r\n",
	};
	static char msg[4096], out[8192];
	static struct transcript t;

	for (size_t i = 0; i < sizeof stuffed / sizeof stuffed[0]; i++) {
		size_t n = (size_t)snprintf(msg, sizeof msg, "DATA\r\n%s.\r\n", stuffed[i]);
		run(&t, msg, n, 1);
		/* Pull the D(...) payload back out of the transcript. */
		const char *d = memmem(t.text, t.len, "|D(", 3);
		const char *e = memmem(t.text, t.len, ")|E(", 4);
		size_t dlen = 0;
		if (d && e && e >= d + 3)
			dlen = (size_t)(e - (d + 3));
		else
			CHECK(stuffed[i][0] == '\0');
		int bol = 1;
		size_t o = smtp_dotstuff(d ? d + 3 : "", dlen, out, &bol);
		CHECK_MEM(out, o, stuffed[i], strlen(stuffed[i]));
	}

	/* Split across calls: the line-start state carries over. */
	int bol = 1;
	size_t o = smtp_dotstuff("a\r", 2, out, &bol);
	o += smtp_dotstuff("\n", 1, out + o, &bol);
	o += smtp_dotstuff(".b\r\n.", 5, out + o, &bol);
	CHECK_MEM(out, o, "a\r\n..b\r\n..", 10);
}

TEST_MAIN(T(table_every_split), T(command_line_limit), T(megabyte_without_crlf), T(bare_is_final),
          T(pending_octets), T(text_line_limit), T(message_id_kept), T(large_message_chunks),
          T(dotstuff_round_trip))
