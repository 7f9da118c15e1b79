/*
 * Unit tests for proto/smtp_reply_parse: reply lines as a client reads them
 * (RFC 5321 4.2), enhanced codes (RFC 3463, RFC 2034), framing across any
 * split, the bounds (line length, lines per reply) and the final errors.
 * Every framing case is fed whole, one octet per call and in chunks of 2, 3
 * and 7, and must give the same events each time.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proto/smtp_reply_parse.h"

struct line_case {
	const char *in;
	size_t len; /* 0: strlen(in) */
	enum smtp_reply_parse_status want;
	int code;
	const char *text; /* NULL for errors */
};

static const struct line_case line_cases[] = {
        {"250 ok", 0, SMTP_REPLY_PARSE_LAST, 250, "ok"},
        {"250-ok", 0, SMTP_REPLY_PARSE_LINE, 250, "ok"},
        {"250", 0, SMTP_REPLY_PARSE_LAST, 250, ""},
        {"250-", 0, SMTP_REPLY_PARSE_LINE, 250, ""},
        {"250 ", 0, SMTP_REPLY_PARSE_LAST, 250, ""},
        {"220 mx.example.org ESMTP ready", 0, SMTP_REPLY_PARSE_LAST, 220,
         "mx.example.org ESMTP ready"},
        {"354 go", 0, SMTP_REPLY_PARSE_LAST, 354, "go"},
        {"200 x", 0, SMTP_REPLY_PARSE_LAST, 200, "x"},
        {"599 x", 0, SMTP_REPLY_PARSE_LAST, 599, "x"},
        {"299-x", 0, SMTP_REPLY_PARSE_LINE, 299, "x"},
        {"250  two spaces", 0, SMTP_REPLY_PARSE_LAST, 250, " two spaces"},
        {"250 a\0b", 7, SMTP_REPLY_PARSE_LAST, 250, "a\0b"}, /* text is opaque */
        {"250 \xff\x01", 0, SMTP_REPLY_PARSE_LAST, 250, "\xff\x01"},
        /* Codes outside 200-599. */
        {"199 x", 0, SMTP_REPLY_PARSE_ERR_CODE, 0, NULL},
        {"600 x", 0, SMTP_REPLY_PARSE_ERR_CODE, 0, NULL},
        {"000 x", 0, SMTP_REPLY_PARSE_ERR_CODE, 0, NULL},
        {"099", 0, SMTP_REPLY_PARSE_ERR_CODE, 0, NULL},
        {"999-x", 0, SMTP_REPLY_PARSE_ERR_CODE, 0, NULL},
        /* Not a reply line. */
        {"", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"25", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"abc", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"2a0 x", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"25x x", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"250ok", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"2500 x", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"250\tok", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {" 250 ok", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"-250 ok", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"hello there", 0, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        {"\0"
         "50 x",
         5, SMTP_REPLY_PARSE_ERR_SYNTAX, 0, NULL},
        /* CR or LF inside. */
        {"250 a\rb", 0, SMTP_REPLY_PARSE_ERR_CRLF, 0, NULL},
        {"250 a\nb", 0, SMTP_REPLY_PARSE_ERR_CRLF, 0, NULL},
        {"25\n0 a", 0, SMTP_REPLY_PARSE_ERR_CRLF, 0, NULL},
};

TEST(line_table)
{
	for (size_t i = 0; i < sizeof line_cases / sizeof line_cases[0]; i++) {
		const struct line_case *c = &line_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		struct smtp_reply_line l;
		memset(&l, 0x5a, sizeof l);
		enum smtp_reply_parse_status st = smtp_reply_line_parse(c->in, len, &l);
		if (!CHECK_INT(st, c->want))
			fprintf(stderr, "     case %zu \"%s\"\n", i, c->in);
		if (c->text == NULL) {
			CHECK_INT(l.code, 0);
			CHECK(l.text == NULL && l.text_len == 0);
			continue;
		}
		CHECK_INT(l.code, c->code);
		CHECK_INT(l.last, st == SMTP_REPLY_PARSE_LAST);
		CHECK_INT(l.index, 0);
		size_t tlen = c->len ? c->len - 4 : strlen(c->text);
		CHECK_MEM(l.text, l.text_len, c->text, tlen);
	}
}

struct enh_case {
	int code;
	const char *text;
	const char *enh;
	size_t skip;
};

static const struct enh_case enh_cases[] = {
        {250, "2.1.0 Sender ok", "2.1.0", 6},
        {550, "5.1.1   no such user", "5.1.1", 8},
        {550, "5.1.1", "5.1.1", 5},
        {421, "4.3.2 bye", "4.3.2", 6},
        {553, "5.1.10 x", "5.1.10", 7},
        {550, "5.999.999 x", "5.999.999", 10},
        /* Not an enhanced code: stays text. */
        {550, "2.0.0 odd", "", 0}, /* class differs from the reply code */
        {250, "5.0.0 odd", "", 0},
        {354, "3.0.0 go", "", 0}, /* no class 3 (RFC 3463 3.1) */
        {250, "2.1.5.3 ok", "", 0},
        {250, "2.01.0 x", "", 0},
        {250, "2.1.1000 x", "", 0},
        {250, "2.1 x", "", 0},
        {250, "2..0 x", "", 0},
        {250, "2.1.0x", "", 0},
        {250, "2.1.0\tx", "", 0},
        {250, "2.1.0-x", "", 0},
        {250, "ok 2.1.0", "", 0},
        {250, "", "", 0},
        {250, "8BITMIME", "", 0},
        {250, "1000 octets", "", 0},
        {250, "2.0.0.0.0.0.0.0.0.0.0.0 x", "", 0},
        {250, ".2.0.0 x", "", 0},
};

TEST(enh_table)
{
	for (size_t i = 0; i < sizeof enh_cases / sizeof enh_cases[0]; i++) {
		const struct enh_case *c = &enh_cases[i];
		char enh[SMTP_REPLY_PARSE_ENH_MAX + 1];
		memset(enh, 'Z', sizeof enh);
		size_t skip =
		        smtp_reply_enh_parse(c->code, c->text, strlen(c->text), enh, sizeof enh);
		if (!CHECK_INT(skip, c->skip))
			fprintf(stderr, "     case %zu \"%s\"\n", i, c->text);
		CHECK_STR(enh, c->enh);
	}
}

TEST(enh_buffer_sizes)
{
	char enh[6];
	/* "2.1.0" needs 6 octets with its NUL. */
	CHECK_INT(smtp_reply_enh_parse(250, "2.1.0 ok", 8, enh, 6), 6);
	CHECK_STR(enh, "2.1.0");
	CHECK_INT(smtp_reply_enh_parse(250, "2.1.0 ok", 8, enh, 5), 0);
	CHECK_STR(enh, "");
	CHECK_INT(smtp_reply_enh_parse(250, "2.1.0 ok", 8, enh, 0), 0);
	/* Only len octets are looked at: "2.1.0" inside a longer buffer. */
	CHECK_INT(smtp_reply_enh_parse(250, "2.1.0xyz", 5, enh, sizeof enh), 5);
	CHECK_STR(enh, "2.1.0");
}

/* ---- framing ---- */

#define REC_MAX 4096

/* Feeds in[0..len) in chunks of `chunk` octets (0: whole) and records the events. */
static void run(const char *in, size_t len, size_t cap, unsigned max_lines, size_t chunk, char *rec)
{
	char buf[4096];
	struct smtp_reply_parse p;
	size_t o = 0;
	smtp_reply_parse_init(&p, buf, cap, max_lines);
	rec[0] = '\0';
	for (size_t pos = 0; pos < len;) {
		size_t n = chunk && len - pos > chunk ? chunk : len - pos;
		size_t off = 0;
		while (off < n) {
			struct smtp_reply_line l;
			size_t used = 0;
			enum smtp_reply_parse_status st =
			        smtp_reply_parse_feed(&p, in + pos + off, n - off, &used, &l);
			if (used == 0 || used > n - off) {
				o += (size_t)snprintf(rec + o, REC_MAX - o, "|BAD-CONSUMED");
				return;
			}
			off += used;
			if (st == SMTP_REPLY_PARSE_LINE || st == SMTP_REPLY_PARSE_LAST)
				o += (size_t)snprintf(rec + o, REC_MAX - o, "|%c%d.%u %.*s",
				                      st == SMTP_REPLY_PARSE_LAST ? 'R' : 'L',
				                      l.code, l.index, (int)l.text_len, l.text);
			else if (st != SMTP_REPLY_PARSE_MORE) {
				o += (size_t)snprintf(rec + o, REC_MAX - o, "|E %s@%zu",
				                      smtp_reply_parse_strerror(st), pos + off);
				return;
			}
		}
		pos += n;
	}
	if (smtp_reply_parse_pending(&p))
		snprintf(rec + o, REC_MAX - o, "|pending %zu", smtp_reply_parse_pending(&p));
}

struct frame_case {
	const char *in;
	size_t cap;
	unsigned max_lines;
	const char *want;
};

static const struct frame_case frame_cases[] = {
        {"250 ok\r\n", 64, 10, "|R250.0 ok"},
        {"250-a\r\n250-b\r\n250 c\r\n", 64, 10, "|L250.0 a|L250.1 b|R250.2 c"},
        {"220 x\r\n250 y\r\n", 64, 10, "|R220.0 x|R250.0 y"},
        {"250-a\r\n250 b\r\n550-c\r\n550 d\r\n", 64, 10, "|L250.0 a|R250.1 b|L550.0 c|R550.1 d"},
        {"250 ok\r\n25", 64, 10, "|R250.0 ok|pending 2"},
        {"250 ok\r", 64, 10, "|pending 7"},
        {"250\r\n", 64, 10, "|R250.0 "},
        /* RFC 5321 4.2.1: one code per reply. */
        {"250-a\r\n251 b\r\n", 64, 10, "|L250.0 a|E continuation line with another code@14"},
        {"250-a\r\n550-b\r\n", 64, 10, "|L250.0 a|E continuation line with another code@14"},
        /* Lines per reply: 3 allowed, a 4th is an error; the count restarts per reply. */
        {"250-a\r\n250-b\r\n250 c\r\n", 64, 3, "|L250.0 a|L250.1 b|R250.2 c"},
        {"250-a\r\n250-b\r\n250-c\r\n250 d\r\n", 64, 3,
         "|L250.0 a|L250.1 b|L250.2 c|E too many lines in reply@28"},
        {"250-a\r\n250 b\r\n250-c\r\n250 d\r\n", 64, 2, "|L250.0 a|R250.1 b|L250.0 c|R250.1 d"},
        {"250-a\r\n250 b\r\n", 64, 1, "|L250.0 a|E too many lines in reply@14"},
        /* Line length: cap octets without CRLF fit, one more does not (at once). */
        {"250 1234\r\n", 8, 10, "|R250.0 1234"},
        {"250 12345\r\n", 8, 10, "|E reply line too long@9"},
        {"250 12345678901234567890", 8, 10, "|E reply line too long@9"},
        /* CRLF only. */
        {"250 ok\n", 64, 10, "|E bare CR or LF in reply@7"},
        {"250 o\rk\r\n", 64, 10, "|E bare CR or LF in reply@7"},
        {"\n", 64, 10, "|E bare CR or LF in reply@1"},
        {"250 ok\r\r\n", 64, 10, "|E bare CR or LF in reply@8"},
        {"250 ok\r\n\n", 64, 10, "|R250.0 ok|E bare CR or LF in reply@9"},
        /* Garbage, and an error stops everything after it. */
        {"hello\r\n250 ok\r\n", 64, 10, "|E malformed reply line@7"},
        {"600 x\r\n", 64, 10, "|E reply code out of range@7"},
        {"\r\n", 64, 10, "|E malformed reply line@2"},
};

TEST(framing_table)
{
	static const size_t chunks[] = {0, 1, 2, 3, 7};
	char rec[REC_MAX];
	for (size_t i = 0; i < sizeof frame_cases / sizeof frame_cases[0]; i++) {
		const struct frame_case *c = &frame_cases[i];
		for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
			run(c->in, strlen(c->in), c->cap, c->max_lines, chunks[k], rec);
			if (!CHECK_STR(rec, c->want))
				fprintf(stderr, "     case %zu chunk %zu\n", i, chunks[k]);
		}
	}
}

TEST(errors_are_final_until_reset)
{
	char buf[64];
	struct smtp_reply_parse p;
	struct smtp_reply_line l;
	size_t used;
	smtp_reply_parse_init(&p, buf, sizeof buf, 10);
	CHECK_INT(smtp_reply_parse_feed(&p, "250 a\n250 b\r\n", 13, &used, &l),
	          SMTP_REPLY_PARSE_ERR_CRLF);
	CHECK_INT(used, 6); /* up to the bare LF: the caller knows what followed */
	CHECK_INT(smtp_reply_parse_feed(&p, "250 b\r\n", 7, &used, &l), SMTP_REPLY_PARSE_ERR_CRLF);
	CHECK_INT(used, 7); /* later calls consume everything */
	CHECK_INT(smtp_reply_parse_pending(&p), 0);
	smtp_reply_parse_reset(&p);
	CHECK_INT(smtp_reply_parse_feed(&p, "250 b\r\n", 7, &used, &l), SMTP_REPLY_PARSE_LAST);
	CHECK_INT(l.code, 250);
}

/* STARTTLS: reset forgets a partial line and a reply in progress. */
TEST(reset_discards_everything_held)
{
	char buf[64];
	struct smtp_reply_parse p;
	struct smtp_reply_line l;
	size_t used;
	smtp_reply_parse_init(&p, buf, sizeof buf, 10);
	CHECK_INT(smtp_reply_parse_feed(&p, "250-a\r\n250 inj", 15, &used, &l),
	          SMTP_REPLY_PARSE_LINE);
	CHECK_INT(used, 7);
	CHECK_INT(smtp_reply_parse_feed(&p, "250 inj", 7, &used, &l), SMTP_REPLY_PARSE_MORE);
	CHECK_INT(smtp_reply_parse_pending(&p), 7);
	smtp_reply_parse_reset(&p);
	CHECK_INT(smtp_reply_parse_pending(&p), 0);
	/* A new reply with another code is not a "continuation line with another code". */
	CHECK_INT(smtp_reply_parse_feed(&p, "220 ok\r\n", 8, &used, &l), SMTP_REPLY_PARSE_LAST);
	CHECK_INT(l.code, 220);
	CHECK_INT(l.index, 0);
}

TEST(pending_counts_held_octets)
{
	char buf[64];
	struct smtp_reply_parse p;
	struct smtp_reply_line l;
	size_t used;
	smtp_reply_parse_init(&p, buf, sizeof buf, 10);
	CHECK_INT(smtp_reply_parse_pending(&p), 0);
	smtp_reply_parse_feed(&p, "250 o", 5, &used, &l);
	CHECK_INT(smtp_reply_parse_pending(&p), 5);
	smtp_reply_parse_feed(&p, "k\r", 2, &used, &l);
	CHECK_INT(smtp_reply_parse_pending(&p), 7);
	CHECK_INT(smtp_reply_parse_feed(&p, "\n", 1, &used, &l), SMTP_REPLY_PARSE_LAST);
	CHECK_MEM(l.text, l.text_len, "ok", 2);
	CHECK_INT(smtp_reply_parse_pending(&p), 0); /* the returned line is not held */
}

TEST(max_lines_zero_means_one)
{
	char buf[64], rec[REC_MAX];
	struct smtp_reply_parse p;
	smtp_reply_parse_init(&p, buf, sizeof buf, 0);
	CHECK_INT(p.max_lines, 1);
	run("250 a\r\n", 7, 64, 0, 0, rec);
	CHECK_STR(rec, "|R250.0 a");
}

TEST(strerror_names_every_status)
{
	for (int s = SMTP_REPLY_PARSE_MORE; s <= SMTP_REPLY_PARSE_ERR_LINES; s++)
		CHECK(strcmp(smtp_reply_parse_strerror((enum smtp_reply_parse_status)s),
		             "unknown reply status") != 0);
	CHECK_STR(smtp_reply_parse_strerror((enum smtp_reply_parse_status)99),
	          "unknown reply status");
}

TEST_MAIN(T(line_table), T(enh_table), T(enh_buffer_sizes), T(framing_table),
          T(errors_are_final_until_reset), T(reset_discards_everything_held),
          T(pending_counts_held_octets), T(max_lines_zero_means_one),
          T(strerror_names_every_status))
