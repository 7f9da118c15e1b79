/*
 * Unit tests for proto/pop3_resp: status lines and response codes (RFC 1939
 * 3, RFC 2449 8), the APOP timestamp (RFC 1939 7), line framing (CRLF only,
 * bounded), STAT/LIST/UIDL lines and their bounds, CAPA, and the message
 * data reader (dot-unstuffing, the terminator, bare LF/CR handling), each
 * data case fed whole, one octet per call, and with a small output window.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proto/pop3_resp.h"

struct status_case {
	const char *in;
	enum pop3_resp_status st;
	enum pop3_resp_code code;
	const char *text;
};

static const struct status_case status_cases[] = {
        {"+OK", POP3_RESP_OK, POP3_RESP_CODE_NONE, ""},
        {"+OK ", POP3_RESP_OK, POP3_RESP_CODE_NONE, ""},
        {"+OK hello there", POP3_RESP_OK, POP3_RESP_CODE_NONE, "hello there"},
        {"-ERR", POP3_RESP_ERR, POP3_RESP_CODE_NONE, ""},
        {"-ERR no such message", POP3_RESP_ERR, POP3_RESP_CODE_NONE, "no such message"},
        {"-ERR [IN-USE] locked", POP3_RESP_ERR, POP3_RESP_CODE_IN_USE, "locked"},
        {"-ERR [in-use] locked", POP3_RESP_ERR, POP3_RESP_CODE_IN_USE, "locked"},
        {"-ERR [LOGIN-DELAY] wait", POP3_RESP_ERR, POP3_RESP_CODE_LOGIN_DELAY, "wait"},
        {"-ERR [SYS/TEMP] disk", POP3_RESP_ERR, POP3_RESP_CODE_SYS_TEMP, "disk"},
        {"-ERR [SYS/PERM] gone", POP3_RESP_ERR, POP3_RESP_CODE_SYS_PERM, "gone"},
        {"-ERR [AUTH] wrong", POP3_RESP_ERR, POP3_RESP_CODE_AUTH, "wrong"},
        {"-ERR [AUTH/X] wrong", POP3_RESP_ERR, POP3_RESP_CODE_AUTH, "wrong"},
        {"-ERR [FOO/BAR] x", POP3_RESP_ERR, POP3_RESP_CODE_OTHER, "x"},
        {"-ERR [IN-USE]", POP3_RESP_ERR, POP3_RESP_CODE_IN_USE, ""},
        /* Malformed codes stay in the text. */
        {"-ERR [IN-USE locked", POP3_RESP_ERR, POP3_RESP_CODE_NONE, "[IN-USE locked"},
        {"-ERR [] x", POP3_RESP_ERR, POP3_RESP_CODE_NONE, "[] x"},
        {"-ERR [/SYS] x", POP3_RESP_ERR, POP3_RESP_CODE_NONE, "[/SYS] x"},
        {"-ERR [SYS/] x", POP3_RESP_ERR, POP3_RESP_CODE_NONE, "[SYS/] x"},
        {"-ERR [IN USE] x", POP3_RESP_ERR, POP3_RESP_CODE_NONE, "[IN USE] x"},
        /* Not a status. */
        {"", POP3_RESP_BAD, POP3_RESP_CODE_NONE, ""},
        {"+ok", POP3_RESP_BAD, POP3_RESP_CODE_NONE, "+ok"},
        {"+OKAY", POP3_RESP_BAD, POP3_RESP_CODE_NONE, "+OKAY"},
        {"-ERROR x", POP3_RESP_BAD, POP3_RESP_CODE_NONE, "-ERROR x"},
        {"+OK\tx", POP3_RESP_BAD, POP3_RESP_CODE_NONE, "+OK\tx"},
        {" +OK", POP3_RESP_BAD, POP3_RESP_CODE_NONE, " +OK"},
        {"OK", POP3_RESP_BAD, POP3_RESP_CODE_NONE, "OK"},
        {"+", POP3_RESP_BAD, POP3_RESP_CODE_NONE, "+"},
};

TEST(status_lines)
{
	for (size_t i = 0; i < sizeof status_cases / sizeof status_cases[0]; i++) {
		const struct status_case *tc = &status_cases[i];
		struct pop3_resp_status_line sl;
		enum pop3_resp_status st = pop3_resp_status_parse(tc->in, strlen(tc->in), &sl);
		if (!CHECK_INT(st, tc->st) || !CHECK_INT(sl.status, tc->st))
			fprintf(stderr, "  case %zu: %s\n", i, tc->in);
		CHECK_INT(sl.code, tc->code);
		CHECK_MEM(sl.text, sl.text_len, tc->text, strlen(tc->text));
	}
}

TEST(code_names)
{
	CHECK_STR(pop3_resp_code_name(POP3_RESP_CODE_IN_USE), "IN-USE");
	CHECK_STR(pop3_resp_code_name(POP3_RESP_CODE_SYS_TEMP), "SYS/TEMP");
	CHECK_STR(pop3_resp_code_name(POP3_RESP_CODE_NONE), "");
	CHECK_STR(pop3_resp_status_name(POP3_RESP_ERR), "-ERR");
}

struct ts_case {
	const char *in;
	const char *ts; /* NULL: none */
};

static const struct ts_case ts_cases[] = {
        {"POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
         "<1896.697170952@dbc.mtview.ca.us>"},
        {"<a@b> first", "<a@b>"},
        {"ready <no-at-sign> then <x@y>", "<x@y>"},
        {"ready <a b@c>", NULL},
        {"ready <@>", NULL},
        {"ready <a@b", NULL},
        {"ready <<a@b>", "<a@b>"},
        {"ready", NULL},
        {"ready <a\x01@b>", NULL},
        {"", NULL},
};

TEST(apop_timestamp)
{
	for (size_t i = 0; i < sizeof ts_cases / sizeof ts_cases[0]; i++) {
		const char *ts = (const char *)1;
		size_t n = pop3_resp_apop_timestamp(ts_cases[i].in, strlen(ts_cases[i].in), &ts);
		if (ts_cases[i].ts == NULL) {
			CHECK_INT(n, 0);
			CHECK(ts == NULL);
		} else {
			CHECK_MEM(ts, n, ts_cases[i].ts, strlen(ts_cases[i].ts));
		}
	}
	/* Longer than POP3_RESP_TIMESTAMP_MAX: none. */
	char big[400];
	memset(big, 'a', sizeof big);
	big[0] = '<';
	big[200] = '@';
	big[sizeof big - 1] = '>';
	const char *ts;
	CHECK_INT(pop3_resp_apop_timestamp(big, sizeof big, &ts), 0);
	big[250] = '>';
	CHECK_INT(pop3_resp_apop_timestamp(big, sizeof big, &ts), 251);
}

/* Feeds s in pieces of `piece` octets; returns the events as text. */
static void lines_run(const char *s, size_t len, size_t piece, char *out, size_t outsz)
{
	char buf[512];
	struct pop3_resp_lines l;
	pop3_resp_lines_init(&l, buf, sizeof buf);
	size_t pos = 0, o = 0;
	out[0] = '\0';
	while (pos < len) {
		size_t n = len - pos < piece ? len - pos : piece, used;
		enum pop3_resp_lines_event ev = pop3_resp_lines_feed(&l, s + pos, n, &used);
		pos += used;
		if (ev == POP3_RESP_LINES_LINE)
			o += (size_t)snprintf(out + o, outsz - o, "[%.*s]", (int)l.len, l.line);
		else if (ev == POP3_RESP_LINES_TOO_LONG)
			o += (size_t)snprintf(out + o, outsz - o, "LONG");
		else if (ev == POP3_RESP_LINES_BARE_LF)
			o += (size_t)snprintf(out + o, outsz - o, "BARE");
		if (ev == POP3_RESP_LINES_TOO_LONG || ev == POP3_RESP_LINES_BARE_LF)
			break;
		if (used == 0 && ev == POP3_RESP_LINES_MORE)
			break;
	}
	if (pop3_resp_lines_pending(&l))
		snprintf(out + o, outsz - o, "+pending");
}

TEST(line_framing)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	        {"+OK a\r\n-ERR b\r\n", "[+OK a][-ERR b]"},
	        {"+OK a\r\n+OK", "[+OK a]+pending"},
	        {"\r\n", "[]"},
	        {"+OK a\n", "BARE"},
	        {"+OK a\rb\r\n", "BARE"},
	        {"+OK a\r\r\n", "BARE"},
	};
	char got[1024], got1[1024];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		lines_run(cases[i].in, strlen(cases[i].in), 1000, got, sizeof got);
		CHECK_STR(got, cases[i].want);
		for (size_t piece = 1; piece < 4; piece++) {
			lines_run(cases[i].in, strlen(cases[i].in), piece, got1, sizeof got1);
			CHECK_STR(got1, cases[i].want);
		}
	}
	/* Exactly 512 octets is a line; 513 is too long (and the reader stays spent). */
	char big[600];
	memset(big, 'x', sizeof big);
	memcpy(big + 512, "\r\n", 2);
	lines_run(big, 514, 1000, got, sizeof got);
	CHECK_INT(strlen(got), 512 + 2);
	big[512] = 'x';
	memcpy(big + 513, "\r\n", 2);
	lines_run(big, 515, 7, got, sizeof got);
	CHECK_STR(got, "LONG");
	char buf[512];
	struct pop3_resp_lines l;
	size_t used;
	pop3_resp_lines_init(&l, buf, sizeof buf);
	CHECK_INT(pop3_resp_lines_feed(&l, "a\nb\r\n", 5, &used), POP3_RESP_LINES_BARE_LF);
	CHECK_INT(pop3_resp_lines_feed(&l, "+OK\r\n", 5, &used), POP3_RESP_LINES_BARE_LF);
}

TEST(multiline_end_and_unstuffing)
{
	const char *p = ".";
	size_t n = 1;
	CHECK_INT(pop3_resp_multiline_end(&p, &n), 1);
	p = "..";
	n = 2;
	CHECK_INT(pop3_resp_multiline_end(&p, &n), 0);
	CHECK_MEM(p, n, ".", 1);
	p = ".x";
	n = 2;
	CHECK_INT(pop3_resp_multiline_end(&p, &n), 0);
	CHECK_MEM(p, n, "x", 1);
	p = "1 200";
	n = 5;
	CHECK_INT(pop3_resp_multiline_end(&p, &n), 0);
	CHECK_MEM(p, n, "1 200", 5);
}

TEST(stat_list_uidl)
{
	uint64_t a, b;
	const char *uid;
	size_t ul;
	CHECK_INT(pop3_resp_stat_parse("2 320", 5, &a, &b), 0);
	CHECK_INT(a, 2);
	CHECK_INT(b, 320);
	CHECK_INT(pop3_resp_stat_parse("0 0", 3, &a, &b), 0);
	CHECK_INT(pop3_resp_stat_parse("2 320 extra text", 16, &a, &b), 0);
	CHECK_INT(pop3_resp_stat_parse("2", 1, &a, &b), -1);
	CHECK_INT(pop3_resp_stat_parse("2  320", 6, &a, &b), -1);
	CHECK_INT(pop3_resp_stat_parse("-2 320", 6, &a, &b), -1);
	CHECK_INT(pop3_resp_stat_parse("2 320x", 6, &a, &b), -1);
	CHECK_INT(pop3_resp_stat_parse("999999999999999 1", 17, &a, &b), 0);
	CHECK_INT(a, 999999999999999ll);
	CHECK_INT(pop3_resp_stat_parse("1000000000000000 1", 18, &a, &b), -1);
	CHECK_INT(pop3_resp_stat_parse("99999999999999999999999 1", 25, &a, &b), -1);
	CHECK_INT(pop3_resp_list_parse("1 120", 5, &a, &b), 0);
	CHECK_INT(a, 1);
	CHECK_INT(b, 120);
	CHECK_INT(pop3_resp_list_parse("0 120", 5, &a, &b), -1);
	CHECK_INT(pop3_resp_list_parse("1 120 more", 10, &a, &b), 0);
	CHECK_INT(pop3_resp_list_parse("1 ", 2, &a, &b), -1);
	CHECK_INT(pop3_resp_list_parse("x 1", 3, &a, &b), -1);
	CHECK_INT(pop3_resp_uidl_parse("1 whqtswO00WBw418f9t5JxYwZ", 26, &a, &uid, &ul), 0);
	CHECK_MEM(uid, ul, "whqtswO00WBw418f9t5JxYwZ", 24);
	CHECK_INT(pop3_resp_uidl_parse("3 !~", 4, &a, &uid, &ul), 0);
	CHECK_INT(pop3_resp_uidl_parse("1 ", 2, &a, &uid, &ul), -1);
	CHECK_INT(pop3_resp_uidl_parse("1 a b", 5, &a, &uid, &ul), -1);
	CHECK_INT(pop3_resp_uidl_parse("1 a\x7f", 4, &a, &uid, &ul), -1);
	CHECK_INT(pop3_resp_uidl_parse("1 \x80", 3, &a, &uid, &ul), -1);
	CHECK_INT(pop3_resp_uidl_parse("0 abc", 5, &a, &uid, &ul), -1);
	char line[80];
	memset(line, 'u', sizeof line);
	line[0] = '7';
	line[1] = ' ';
	CHECK_INT(pop3_resp_uidl_parse(line, 72, &a, &uid, &ul), 0); /* 70 octets */
	CHECK_INT(ul, 70);
	CHECK_INT(pop3_resp_uidl_parse(line, 73, &a, &uid, &ul), -1); /* 71 */
}

TEST(capa_lines)
{
	struct pop3_resp_capa c;
	memset(&c, 0, sizeof c);
	const char *lines[] = {"TOP",
	                       "USER",
	                       "uidl",
	                       "PIPELINING",
	                       "STLS",
	                       "RESP-CODES",
	                       "SASL PLAIN",
	                       "EXPIRE NEVER",
	                       "LOGIN-DELAY 900",
	                       "IMPLEMENTATION x y"};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
		pop3_resp_capa_line(&c, lines[i], strlen(lines[i]));
	CHECK(c.seen && c.top && c.user && c.uidl && c.pipelining && c.stls && c.resp_codes &&
	      c.sasl && c.expire_never);
	CHECK_INT(c.login_delay, 900);
	memset(&c, 0, sizeof c);
	pop3_resp_capa_line(&c, "PIPELININGX", 11);
	pop3_resp_capa_line(&c, "EXPIRE 30", 9);
	pop3_resp_capa_line(&c, "LOGIN-DELAY x", 13);
	CHECK(c.seen && !c.pipelining && !c.expire_never && c.login_delay == 0);
}

/* Runs the data reader over in with pieces of `piece` input octets and an out window of cap. */
static int data_run(const char *in, size_t len, size_t piece, size_t cap,
                    enum pop3_resp_data_mode mode, char *got, size_t *got_len, size_t *rest)
{
	struct pop3_resp_data d;
	char out[64];
	pop3_resp_data_init(&d, mode);
	size_t pos = 0, g = 0;
	int end = 0;
	for (int spins = 0; pos < len && !end && spins < 100000; spins++) {
		size_t n = len - pos < piece ? len - pos : piece, used, w;
		enum pop3_resp_data_event ev =
		        pop3_resp_data_feed(&d, in + pos, n, &used, out, cap, &w);
		memcpy(got + g, out, w);
		g += w;
		pos += used;
		end = ev == POP3_RESP_DATA_END;
	}
	*got_len = g;
	*rest = len - pos;
	if (d.out_octets != g || d.in_octets != pos)
		return -1;
	return end;
}

struct data_case {
	const char *in, *want;
	int end;
	size_t rest; /* octets left after the terminator */
	enum pop3_resp_data_mode mode;
};

static const struct data_case data_cases[] = {
        {"a\r\nb\r\n.\r\n", "a\r\nb\r\n", 1, 0, POP3_RESP_DATA_CRLF},
        {".\r\n", "", 1, 0, POP3_RESP_DATA_CRLF},
        {"..\r\n.\r\n", ".\r\n", 1, 0, POP3_RESP_DATA_CRLF},
        {"..x\r\n.\r\n+OK", ".x\r\n", 1, 3, POP3_RESP_DATA_CRLF},
        {".x\r\n.\r\n", "x\r\n", 1, 0, POP3_RESP_DATA_CRLF}, /* RFC 1939 3: first octet goes */
        {"a\r\n.\r\nb\r\n.\r\n", "a\r\n", 1, 6, POP3_RESP_DATA_CRLF},
        /* Only a line after a real CRLF ends: bare LF and CR are data, as CRLF. */
        {"a\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 1, 0, POP3_RESP_DATA_CRLF},
        {"a\n.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 1, 0, POP3_RESP_DATA_CRLF},
        {"a\r.\rb\r\n.\r\n", "a\r\n.\r\nb\r\n", 1, 0, POP3_RESP_DATA_CRLF},
        {"a\r\n.\nb\r\n.\r\n", "a\r\n\r\nb\r\n", 1, 0, POP3_RESP_DATA_CRLF},
        {"a\r\n.\rb\r\n.\r\n", "a\r\n\r\nb\r\n", 1, 0, POP3_RESP_DATA_CRLF},
        {"a\r\r\n.\r\n", "a\r\n\r\n", 1, 0, POP3_RESP_DATA_CRLF},
        {"a\n.\nb\r\n.\r\n", "a\n.\nb\r\n", 1, 0, POP3_RESP_DATA_RAW},
        {"a\r.\rb\r\n.\r\n", "a\r.\rb\r\n", 1, 0, POP3_RESP_DATA_RAW},
        {"a\r\n.\rb\r\n.\r\n", "a\r\n\rb\r\n", 1, 0, POP3_RESP_DATA_RAW},
        /* Unfinished. */
        {"a\r\nb", "a\r\nb", 0, 0, POP3_RESP_DATA_CRLF},
        {"a\r\n.", "a\r\n", 0, 0, POP3_RESP_DATA_CRLF},
        {"a\r\n.\r", "a\r\n", 0, 0, POP3_RESP_DATA_CRLF},
        {"a\r", "a", 0, 0, POP3_RESP_DATA_CRLF},
        {"", "", 0, 0, POP3_RESP_DATA_CRLF},
};

TEST(message_data)
{
	static const size_t pieces[] = {1000, 1, 2, 3};
	static const size_t caps[] = {64, 4, 5, 6};
	for (size_t i = 0; i < sizeof data_cases / sizeof data_cases[0]; i++) {
		const struct data_case *tc = &data_cases[i];
		for (size_t p = 0; p < 4; p++) {
			for (size_t k = 0; k < 4; k++) {
				char got[256];
				size_t got_len, rest;
				int end = data_run(tc->in, strlen(tc->in), pieces[p], caps[k],
				                   tc->mode, got, &got_len, &rest);
				int ok = CHECK_INT(end, tc->end) &&
				         CHECK_MEM(got, got_len, tc->want, strlen(tc->want)) &&
				         CHECK_INT(rest, tc->rest);
				if (!ok)
					fprintf(stderr, "  data case %zu, piece %zu, cap %zu\n", i,
					        pieces[p], caps[k]);
			}
		}
	}
}

TEST(message_data_counts_fixes)
{
	struct pop3_resp_data d;
	char out[64];
	size_t used, w;
	pop3_resp_data_init(&d, POP3_RESP_DATA_CRLF);
	CHECK_INT(pop3_resp_data_feed(&d, "a\nb\rc\r\n.\r\n", 10, &used, out, sizeof out, &w),
	          POP3_RESP_DATA_END);
	CHECK_INT(d.fixed, 2);
	CHECK_INT(used, 10);
	CHECK_MEM(out, w, "a\r\nb\r\nc\r\n", 9);
}

TEST_MAIN(T(status_lines), T(code_names), T(apop_timestamp), T(line_framing),
          T(multiline_end_and_unstuffing), T(stat_list_uidl), T(capa_lines), T(message_data),
          T(message_data_counts_fixes))
