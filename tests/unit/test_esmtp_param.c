/*
 * Unit tests for proto/esmtp_param: SIZE (RFC 1870), BODY (RFC 6152), DSN
 * parameters (RFC 3461 4.1-4.4) and xtext, with every hostile form of
 * shared/hostile-inputs.md "Addresses and parameters".
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "proto/esmtp_param.h"

struct mail_case {
	const char *in;
	size_t len; /* 0: strlen */
	int dsn;
	enum esmtp_result want;
	int has_size;
	uint64_t size;
	int body, ret;
	const char *envid; /* NULL: none */
};

static const struct mail_case mail_cases[] = {
        {"", 0, 1, ESMTP_OK, 0, 0, 0, 0, NULL},
        {"SIZE=10", 0, 1, ESMTP_OK, 1, 10, 0, 0, NULL},
        {"size=0", 0, 1, ESMTP_OK, 1, 0, 0, 0, NULL},
        {"SIZE=00000000000000000001", 0, 1, ESMTP_OK, 1, 1, 0, 0, NULL},
        {"SIZE=18446744073709551615", 0, 1, ESMTP_OK, 1, UINT64_MAX, 0, 0, NULL},
        {"SIZE=18446744073709551616", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=99999999999999999999", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=000000000000000000001", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=abc", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=-1", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=+1", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=1k", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=0x10", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=1 SIZE=2", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=1 size=1", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=1=2", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"BODY=8BITMIME", 0, 1, ESMTP_OK, 0, 0, ESMTP_BODY_8BITMIME, 0, NULL},
        {"body=7bit SIZE=5", 0, 0, ESMTP_OK, 1, 5, ESMTP_BODY_7BIT, 0, NULL},
        {"BODY=BINARYMIME", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"BODY", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"BODY=7BIT BODY=7BIT", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"RET=FULL", 0, 1, ESMTP_OK, 0, 0, 0, ESMTP_RET_FULL, NULL},
        {"RET=hdrs", 0, 1, ESMTP_OK, 0, 0, 0, ESMTP_RET_HDRS, NULL},
        {"RET=ALL", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"RET=FULL RET=HDRS", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"RET=FULL", 0, 0, ESMTP_UNKNOWN, 0, 0, 0, 0, NULL},
        {"ENVID=QQ314159", 0, 1, ESMTP_OK, 0, 0, 0, 0, "QQ314159"},
        {"ENVID=a+2Bb+3Dc+20d", 0, 1, ESMTP_OK, 0, 0, 0, 0, "a+b=c d"},
        {"ENVID=x", 0, 0, ESMTP_UNKNOWN, 0, 0, 0, 0, NULL},
        {"ENVID=a+0D+0AX-Injected:1", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=a+00", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=a+7F", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=a+C3+BC", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=a+1", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=a+GG", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=a ENVID=b", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=10 RET=HDRS ENVID=id1 BODY=8BITMIME", 0, 1, ESMTP_OK, 1, 10, ESMTP_BODY_8BITMIME,
         ESMTP_RET_HDRS, "id1"},
        {"  SIZE=10   BODY=7BIT  ", 0, 1, ESMTP_OK, 1, 10, ESMTP_BODY_7BIT, 0, NULL},
        /* Unknown keywords. */
        {"FOO=bar", 0, 1, ESMTP_UNKNOWN, 0, 0, 0, 0, NULL},
        {"AUTH=<>", 0, 1, ESMTP_UNKNOWN, 0, 0, 0, 0, NULL},
        {"SMTPUTF8", 0, 1, ESMTP_UNKNOWN, 0, 0, 0, 0, NULL},
        {"SIZE=1 X-FOO", 0, 1, ESMTP_UNKNOWN, 0, 0, 0, 0, NULL},
        {"NOTIFY=NEVER", 0, 1, ESMTP_UNKNOWN, 0, 0, 0, 0, NULL},
        /* Malformed keywords and control octets anywhere. */
        {"=10", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"-X=1", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"S_ZE=1", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=10\r\nRCPT TO:<x@y>", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"SIZE=10\tBODY=7BIT", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=a\rb", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=a\nb", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=a\0b", 9, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"AUTH=a\r\n", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"FOO=\x01", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
        {"ENVID=\xc3\xa9", 0, 1, ESMTP_SYNTAX, 0, 0, 0, 0, NULL},
};

TEST(mail_table)
{
	for (size_t i = 0; i < sizeof mail_cases / sizeof mail_cases[0]; i++) {
		const struct mail_case *c = &mail_cases[i];
		struct esmtp_mail_params p;
		size_t len = c->len ? c->len : strlen(c->in);
		enum esmtp_result r = esmtp_mail_params_parse(c->in, len, c->dsn, &p);
		if (!CHECK_INT(r, c->want))
			CHECK_STR(c->in, "");
		CHECK_INT(p.has_size, c->has_size);
		CHECK(p.size == c->size);
		CHECK_INT(p.body, c->body);
		CHECK_INT(p.ret, c->ret);
		CHECK_INT(p.has_envid, c->envid != NULL);
		if (c->envid)
			CHECK_STR(p.envid, c->envid);
	}
}

TEST(mail_null_and_lengths)
{
	struct esmtp_mail_params p;
	char envid[128];
	CHECK_INT(esmtp_mail_params_parse(NULL, 0, 1, &p), ESMTP_OK);
	CHECK(!p.has_size && !p.has_envid);

	memcpy(envid, "ENVID=", 6);
	memset(envid + 6, 'e', 100);
	CHECK_INT(esmtp_mail_params_parse(envid, 106, 1, &p), ESMTP_OK);
	CHECK_INT(strlen(p.envid), 100);
	envid[106] = 'e';
	CHECK_INT(esmtp_mail_params_parse(envid, 107, 1, &p), ESMTP_SYNTAX);
}

struct rcpt_case {
	const char *in;
	int dsn;
	enum esmtp_result want;
	unsigned notify;
	const char *orcpt;
};

static const struct rcpt_case rcpt_cases[] = {
        {"", 1, ESMTP_OK, 0, NULL},
        {"NOTIFY=NEVER", 1, ESMTP_OK, ESMTP_NOTIFY_NEVER, NULL},
        {"notify=success,failure", 1, ESMTP_OK, ESMTP_NOTIFY_SUCCESS | ESMTP_NOTIFY_FAILURE, NULL},
        {"NOTIFY=DELAY,SUCCESS,FAILURE", 1, ESMTP_OK,
         ESMTP_NOTIFY_SUCCESS | ESMTP_NOTIFY_FAILURE | ESMTP_NOTIFY_DELAY, NULL},
        {"NOTIFY=NEVER,SUCCESS", 1, ESMTP_SYNTAX, 0, NULL},
        {"NOTIFY=SUCCESS,NEVER", 1, ESMTP_SYNTAX, 0, NULL},
        {"NOTIFY=SUCCESS,SUCCESS", 1, ESMTP_SYNTAX, 0, NULL},
        {"NOTIFY=SUCCESS,", 1, ESMTP_SYNTAX, 0, NULL},
        {"NOTIFY=,SUCCESS", 1, ESMTP_SYNTAX, 0, NULL},
        {"NOTIFY=ALWAYS", 1, ESMTP_SYNTAX, 0, NULL},
        {"NOTIFY=", 1, ESMTP_SYNTAX, 0, NULL},
        {"NOTIFY", 1, ESMTP_SYNTAX, 0, NULL},
        {"NOTIFY=NEVER NOTIFY=NEVER", 1, ESMTP_SYNTAX, 0, NULL},
        {"NOTIFY=NEVER", 0, ESMTP_UNKNOWN, 0, NULL},
        {"ORCPT=rfc822;user@example.com", 1, ESMTP_OK, 0, "rfc822;user@example.com"},
        {"ORCPT=rfc822;user+2Btag@example.com NOTIFY=FAILURE", 1, ESMTP_OK, ESMTP_NOTIFY_FAILURE,
         "rfc822;user+tag@example.com"},
        {"ORCPT=rfc822;+22a+20b+22@x", 1, ESMTP_OK, 0, "rfc822;\"a b\"@x"},
        {"ORCPT=x-local-type;abc", 1, ESMTP_OK, 0, "x-local-type;abc"},
        {"ORCPT=rfc822;a+0D+0AX-Evil:+201@x", 1, ESMTP_SYNTAX, 0, NULL},
        {"ORCPT=rfc822;a+00@x", 1, ESMTP_SYNTAX, 0, NULL},
        {"ORCPT=rfc822;a\r\n@x", 1, ESMTP_SYNTAX, 0, NULL},
        {"ORCPT=rfc822", 1, ESMTP_SYNTAX, 0, NULL},
        {"ORCPT=rfc822;", 1, ESMTP_SYNTAX, 0, NULL},
        {"ORCPT=;a@b", 1, ESMTP_SYNTAX, 0, NULL},
        {"ORCPT=rf c822;a@b", 1, ESMTP_SYNTAX, 0, NULL},
        {"ORCPT=rfc.822;a@b", 1, ESMTP_SYNTAX, 0, NULL},
        {"ORCPT=rfc822;a@b ORCPT=rfc822;a@b", 1, ESMTP_SYNTAX, 0, NULL},
        {"ORCPT=rfc822;a@b", 0, ESMTP_UNKNOWN, 0, NULL},
        {"SIZE=10", 1, ESMTP_UNKNOWN, 0, NULL},
        {"FOO", 1, ESMTP_UNKNOWN, 0, NULL},
        {"NOTIFY=NEVER\tFOO", 1, ESMTP_SYNTAX, 0, NULL},
};

TEST(rcpt_table)
{
	for (size_t i = 0; i < sizeof rcpt_cases / sizeof rcpt_cases[0]; i++) {
		const struct rcpt_case *c = &rcpt_cases[i];
		struct esmtp_rcpt_params p;
		enum esmtp_result r = esmtp_rcpt_params_parse(c->in, strlen(c->in), c->dsn, &p);
		if (!CHECK_INT(r, c->want))
			CHECK_STR(c->in, "");
		CHECK_INT(p.notify, c->notify);
		CHECK_INT(p.has_orcpt, c->orcpt != NULL);
		if (c->orcpt)
			CHECK_STR(p.orcpt, c->orcpt);
	}
}

TEST(orcpt_length)
{
	struct esmtp_rcpt_params p;
	char s[600];
	memcpy(s, "ORCPT=rfc822;", 13);
	/* The whole parameter may be 500 characters. */
	memset(s + 13, 'a', 487);
	CHECK_INT(esmtp_rcpt_params_parse(s, 500, 1, &p), ESMTP_OK);
	CHECK_INT(strlen(p.orcpt), 494);
	s[500] = 'a';
	CHECK_INT(esmtp_rcpt_params_parse(s, 501, 1, &p), ESMTP_SYNTAX);
	CHECK_INT(p.has_orcpt, 0);
}

TEST(xtext_codec)
{
	char out[64];
	CHECK_INT(xtext_decode("abc", 3, out, sizeof out), 3);
	CHECK_STR(out, "abc");
	CHECK_INT(xtext_decode("", 0, out, sizeof out), 0);
	CHECK_STR(out, "");
	CHECK_INT(xtext_decode("a+2b", 4, out, sizeof out), 2);
	CHECK_STR(out, "a+");
	CHECK_INT(xtext_decode("a=b", 3, out, sizeof out), -1);
	CHECK_INT(xtext_decode("a b", 3, out, sizeof out), -1);
	CHECK_INT(xtext_decode("+", 1, out, sizeof out), -1);
	CHECK_INT(xtext_decode("+0", 2, out, sizeof out), -1);
	CHECK_INT(xtext_decode("+09", 3, out, sizeof out), -1);
	CHECK_INT(xtext_decode("+0A", 3, out, sizeof out), -1);
	CHECK_INT(xtext_decode("+80", 3, out, sizeof out), -1);
	CHECK_INT(xtext_decode("abcd", 4, out, 4), -1);
	CHECK_INT(xtext_decode("abcd", 4, out, 5), 4);
	CHECK_INT(xtext_decode("a", 1, out, 0), -1);

	CHECK_INT(xtext_encode("a+b=c d", 7, out, sizeof out), 13);
	CHECK_STR(out, "a+2Bb+3Dc+20d");
	CHECK_INT(xtext_encode("\r\n", 2, out, sizeof out), 6);
	CHECK_STR(out, "+0D+0A");
	CHECK_INT(xtext_encode("abc", 3, out, 3), -1);
	CHECK_INT(xtext_encode("+", 1, out, 3), -1);
	CHECK_INT(xtext_encode("+", 1, out, 4), 3);

	/* Round trip over every printable octet. */
	char all[96];
	for (int c = 0x20; c < 0x7f; c++)
		all[c - 0x20] = (char)c;
	static char enc[300];
	int n = xtext_encode(all, 95, enc, sizeof enc);
	CHECK(n > 95);
	char dec[100];
	CHECK_INT(xtext_decode(enc, (size_t)n, dec, sizeof dec), 95);
	CHECK_MEM(dec, 95, all, 95);
}

TEST_MAIN(T(mail_table), T(mail_null_and_lengths), T(rcpt_table), T(orcpt_length), T(xtext_codec))
