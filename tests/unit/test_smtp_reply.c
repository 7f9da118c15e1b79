/* Unit tests for proto/smtp_reply: reply lines (RFC 5321 4.2) and enhanced codes (RFC 3463). */
#include <string.h>

#include "harness.h"
#include "proto/smtp_reply.h"

struct reply_case {
	int code;
	const char *enh;
	const char *text;
	int more;
	const char *want; /* NULL: -1 */
};

static const struct reply_case reply_cases[] = {
        {250, "2.1.0", "Sender OK", 0, "250 2.1.0 Sender OK\r\n"},
        {250, "2.0.0", "mail.example.com", 1, "250-2.0.0 mail.example.com\r\n"},
        {250, NULL, "PIPELINING", 1, "250-PIPELINING\r\n"},
        {250, NULL, "8BITMIME", 0, "250 8BITMIME\r\n"},
        {220, NULL, "mail.example.com ESMTP", 0, "220 mail.example.com ESMTP\r\n"},
        {354, NULL, "End data with <CR><LF>.<CR><LF>", 0,
         "354 End data with <CR><LF>.<CR><LF>\r\n"},
        {550, "5.1.1", "<x@y>: no such user", 0, "550 5.1.1 <x@y>: no such user\r\n"},
        {421, "4.4.2", "timeout", 0, "421 4.4.2 timeout\r\n"},
        {552, "5.3.4", "Message size exceeds fixed limit", 0,
         "552 5.3.4 Message size exceeds fixed limit\r\n"},
        {250, "2.0.0", NULL, 0, "250 2.0.0\r\n"},
        {250, "2.0.0", "", 0, "250 2.0.0\r\n"},
        {250, "", "ok", 0, "250 ok\r\n"},
        {250, NULL, NULL, 0, "250\r\n"},
        {250, NULL, NULL, 1, "250-\r\n"},
        {553, "5.1.10", "x", 0, "553 5.1.10 x\r\n"},
        {553, "5.100.999", "x", 0, "553 5.100.999 x\r\n"},
        /* Hostile echoed text cannot forge reply lines. */
        {250, "2.0.0", "Hello evil\r\n250 fake", 0, "250 2.0.0 Hello evil??250 fake\r\n"},
        {250, NULL, "a\nb\0", 0, "250 a?b\r\n"},
        {250, NULL, "\xc3\xa9t\xe9", 0, "250 ??t?\r\n"},
        {250, NULL, "tab\there", 0, "250 tab?here\r\n"},
        /* Refused. */
        {199, NULL, "x", 0, NULL},
        {600, NULL, "x", 0, NULL},
        {-250, NULL, "x", 0, NULL},
        {250, "2.1", "x", 0, NULL},
        {250, "3.1.0", "x", 0, NULL},
        {250, "2.01.0", "x", 0, NULL},
        {250, "2.1.1000", "x", 0, NULL},
        {250, "2.1.0 ", "x", 0, NULL},
        {250, "2.1.0\r\n", "x", 0, NULL},
        {250, "2..0", "x", 0, NULL},
        {250, "x.1.0", "x", 0, NULL},
};

TEST(reply_table)
{
	for (size_t i = 0; i < sizeof reply_cases / sizeof reply_cases[0]; i++) {
		const struct reply_case *c = &reply_cases[i];
		char out[600];
		memset(out, 'Z', sizeof out);
		int n = smtp_reply_format(out, sizeof out, c->code, c->enh, c->text, c->more);
		if (c->want == NULL) {
			CHECK_INT(n, -1);
			continue;
		}
		if (CHECK_INT(n, strlen(c->want)))
			CHECK_STR(out, c->want);
	}
}

TEST(buffer_sizes)
{
	char out[32];
	/* "250 2.0.0 ok\r\n" is 14 octets and needs 15 with its NUL. */
	CHECK_INT(smtp_reply_format(out, 15, 250, "2.0.0", "ok", 0), 14);
	CHECK_INT(smtp_reply_format(out, 14, 250, "2.0.0", "ok", 0), -1);
	CHECK_INT(smtp_reply_format(out, 0, 250, NULL, "ok", 0), -1);
	CHECK_INT(smtp_reply_format(NULL, 10, 250, NULL, "ok", 0), -1);
}

TEST(line_limit)
{
	static char text[2000], out[4096];
	memset(text, 'x', sizeof text - 1);
	int n = smtp_reply_format(out, sizeof out, 501, "5.5.4", text, 0);
	CHECK_INT(n, SMTP_REPLY_LINE_MAX);
	CHECK(n > 2 && out[n - 2] == '\r' && out[n - 1] == '\n');
	CHECK(memcmp(out, "501 5.5.4 xxx", 13) == 0);
	n = smtp_reply_format(out, sizeof out, 250, NULL, text, 1);
	CHECK_INT(n, SMTP_REPLY_LINE_MAX);
	CHECK(memcmp(out, "250-xxx", 7) == 0);
}

TEST(enh_valid)
{
	CHECK(smtp_reply_enh_valid("2.0.0"));
	CHECK(smtp_reply_enh_valid("4.3.0"));
	CHECK(smtp_reply_enh_valid("5.7.1"));
	CHECK(smtp_reply_enh_valid("5.999.999"));
	CHECK(!smtp_reply_enh_valid(NULL));
	CHECK(!smtp_reply_enh_valid(""));
	CHECK(!smtp_reply_enh_valid("1.0.0"));
	CHECK(!smtp_reply_enh_valid("5.0"));
	CHECK(!smtp_reply_enh_valid("5.0.0.0"));
	CHECK(!smtp_reply_enh_valid("5.00.0"));
}

TEST_MAIN(T(reply_table), T(buffer_sizes), T(line_limit), T(enh_valid))
