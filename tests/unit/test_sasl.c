/*
 * Unit tests for proto/sasl: RFC 4954 AUTH PLAIN and LOGIN exchanges, table-driven.
 * Each case is the AUTH arguments and the client's continuation lines, with the
 * reply expected after each and the credentials the exchange ends with. The base64
 * strings were made with Python's base64.b64encode.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proto/base64.h"
#include "proto/sasl.h"

#define MAX_STEPS 4

struct sasl_case {
	const char *name;
	const char *args; /* after "AUTH " */
	const char *lines[MAX_STEPS]; /* continuation lines, NULL-terminated */
	const char *replies[MAX_STEPS + 1]; /* after sasl_start, then after each line */
	enum sasl_status final;
	const char *identity; /* for SASL_DONE */
	const char *password;
};

static const struct sasl_case sasl_cases[] = {
        /* "\0alice@example.com\0secret" */
        {"plain_initial_response",
         "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==",
         {NULL},
         {""},
         SASL_DONE,
         "alice@example.com",
         "secret"},
        {"plain_mechanism_any_case",
         "plain AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==",
         {NULL},
         {""},
         SASL_DONE,
         "alice@example.com",
         "secret"},
        {"plain_continuation",
         "PLAIN",
         {"AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA=="},
         {"334 \r\n", ""},
         SASL_DONE,
         "alice@example.com",
         "secret"},
        /* "alice@example.com\0alice@example.com\0secret" */
        {"plain_authzid_equal_to_authcid",
         "PLAIN YWxpY2VAZXhhbXBsZS5jb20AYWxpY2VAZXhhbXBsZS5jb20Ac2VjcmV0",
         {NULL},
         {""},
         SASL_DONE,
         "alice@example.com",
         "secret"},
        /* "ALICE@example.com\0alice@example.com\0secret": addresses compare in any case */
        {"plain_authzid_other_case",
         "PLAIN QUxJQ0VAZXhhbXBsZS5jb20AYWxpY2VAZXhhbXBsZS5jb20Ac2VjcmV0",
         {NULL},
         {""},
         SASL_DONE,
         "alice@example.com",
         "secret"},
        /* "bob@example.com\0alice@example.com\0secret": proxy authorization refused */
        {"plain_authzid_other_user",
         "PLAIN Ym9iQGV4YW1wbGUuY29tAGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==",
         {NULL},
         {"535 5.7.8 Authentication credentials invalid\r\n"},
         SASL_INVALID,
         NULL,
         NULL},
        /* "\0alice@example.com\0" */
        {"plain_empty_password",
         "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAA==",
         {NULL},
         {"535 5.7.8 Authentication credentials invalid\r\n"},
         SASL_INVALID,
         NULL,
         NULL},
        /* "\0\0secret" */
        {"plain_empty_authcid",
         "PLAIN AABzZWNyZXQ=",
         {NULL},
         {"535 5.7.8 Authentication credentials invalid\r\n"},
         SASL_INVALID,
         NULL,
         NULL},
        /* "\0al\x01ce\0secret": a control octet in the identity would reach the logs */
        {"plain_control_in_identity",
         "PLAIN AGFsAWNlAHNlY3JldA==",
         {NULL},
         {"535 5.7.8 Authentication credentials invalid\r\n"},
         SASL_INVALID,
         NULL,
         NULL},
        /* "alice secret": no NUL at all */
        {"plain_no_nul",
         "PLAIN YWxpY2Ugc2VjcmV0",
         {NULL},
         {"501 5.5.2 Cannot decode the response\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        /* "\0alice\0sec\0ret": a third NUL ends up in the password */
        {"plain_nul_in_password",
         "PLAIN AGFsaWNlAHNlYwByZXQ=",
         {NULL},
         {"535 5.7.8 Authentication credentials invalid\r\n"},
         SASL_INVALID,
         NULL,
         NULL},
        {"plain_equals_is_empty_response",
         "PLAIN =",
         {NULL},
         {"501 5.5.2 Cannot decode the response\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        {"plain_bad_base64_initial",
         "PLAIN AGFsaWNl!!!",
         {NULL},
         {"501 5.5.2 Cannot decode the response\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        {"plain_bad_base64_continuation",
         "PLAIN",
         {"AGFsaWNl"
          "A"},
         {"334 \r\n", "501 5.5.2 Cannot decode the response\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        {"plain_cancel",
         "PLAIN",
         {"*"},
         {"334 \r\n", "501 5.7.0 Authentication cancelled\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        /* "=" is only the initial response's empty form; as a line it is bad base64 */
        {"plain_equals_line",
         "PLAIN",
         {"="},
         {"334 \r\n", "501 5.5.2 Cannot decode the response\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        {"login_prompts",
         "LOGIN",
         {"YWxpY2VAZXhhbXBsZS5jb20=", "c2VjcmV0"},
         {"334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n", ""},
         SASL_DONE,
         "alice@example.com",
         "secret"},
        {"login_initial_response_user",
         "LOGIN YWxpY2VAZXhhbXBsZS5jb20=",
         {"c2VjcmV0"},
         {"334 UGFzc3dvcmQ6\r\n", ""},
         SASL_DONE,
         "alice@example.com",
         "secret"},
        {"login_cancel_at_password",
         "LOGIN",
         {"YWxpY2VAZXhhbXBsZS5jb20=", "*"},
         {"334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n", "501 5.7.0 Authentication cancelled\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        {"login_empty_user",
         "LOGIN =",
         {NULL},
         {"535 5.7.8 Authentication credentials invalid\r\n"},
         SASL_INVALID,
         NULL,
         NULL},
        {"login_empty_password",
         "LOGIN",
         {"YWxpY2VAZXhhbXBsZS5jb20=", ""},
         {"334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n",
          "535 5.7.8 Authentication credentials invalid\r\n"},
         SASL_INVALID,
         NULL,
         NULL},
        {"login_bad_base64_user",
         "LOGIN",
         {"YWxp*2U="},
         {"334 VXNlcm5hbWU6\r\n", "501 5.5.2 Cannot decode the response\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        {"unknown_mechanism",
         "CRAM-MD5",
         {NULL},
         {"504 5.5.4 Unrecognized authentication type\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        {"no_mechanism",
         "",
         {NULL},
         {"501 5.5.2 Syntax: AUTH mechanism [initial-response]\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        {"two_initial_responses",
         "PLAIN AGFsaWNl AHNlY3JldA==",
         {NULL},
         {"501 5.5.2 Syntax: AUTH mechanism [initial-response]\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
        {"trailing_space",
         "PLAIN ",
         {NULL},
         {"501 5.5.2 Syntax: AUTH mechanism [initial-response]\r\n"},
         SASL_FAIL,
         NULL,
         NULL},
};

static void run_case(const struct sasl_case *c)
{
	struct sasl s;
	enum sasl_status st = sasl_start(&s, c->args, strlen(c->args));
	size_t len;
	const char *r = sasl_reply(&s, &len, NULL);
	CHECK_STR(r, c->replies[0]);
	CHECK_INT(len, strlen(c->replies[0]));
	for (size_t i = 0; i < MAX_STEPS && c->lines[i]; i++) {
		if (!CHECK_INT(st, SASL_CONTINUE))
			break;
		st = sasl_step(&s, c->lines[i], strlen(c->lines[i]));
		r = sasl_reply(&s, &len, NULL);
		CHECK_STR(r, c->replies[i + 1]);
		CHECK_INT(len, strlen(c->replies[i + 1]));
	}
	CHECK_INT(st, c->final);
	CHECK_INT(sasl_status(&s), c->final);
	if (c->final == SASL_DONE) {
		size_t plen = 0;
		CHECK_STR(sasl_identity(&s), c->identity);
		CHECK_STR(sasl_password(&s, &plen), c->password);
		CHECK_INT(plen, strlen(c->password));
	} else {
		CHECK(sasl_identity(&s) == NULL);
		CHECK(sasl_password(&s, NULL) == NULL);
		/* a refusal leaves no credentials behind */
		CHECK(s.password[0] == '\0' && s.identity[0] == '\0');
	}
	sasl_wipe(&s);
}

TEST(exchanges)
{
	for (size_t i = 0; i < sizeof sasl_cases / sizeof sasl_cases[0]; i++) {
		printf("  case %s\n", sasl_cases[i].name);
		run_case(&sasl_cases[i]);
	}
}

TEST(reply_codes)
{
	struct sasl s;
	int code = -1;
	sasl_start(&s, "LOGIN", 5);
	sasl_reply(&s, NULL, &code);
	CHECK_INT(code, 334);
	CHECK_INT(sasl_mech(&s), SASL_MECH_LOGIN);
	sasl_step(&s, "*", 1);
	sasl_reply(&s, NULL, &code);
	CHECK_INT(code, 501);
	sasl_start(&s, "PLAIN AGEAYg==", 14);
	sasl_reply(&s, NULL, &code);
	CHECK_INT(sasl_status(&s), SASL_DONE);
	CHECK_INT(code, 0);
	CHECK_INT(sasl_mech(&s), SASL_MECH_PLAIN);
}

/* A continuation line of exactly SASL_LINE_MAX octets is taken; one more is refused. */
TEST(line_limit)
{
	static char line[SASL_LINE_MAX + 2];
	static uint8_t msg[SASL_LINE_MAX];
	/* A PLAIN message "\0u\0" + password that encodes to exactly SASL_LINE_MAX octets
	 * is too long a password (invalid, 535), but it must be decoded, not refused
	 * as too long: the limit is on the line, the password rule comes after. */
	size_t mlen = SASL_LINE_MAX / 4 * 3;
	memset(msg, 'p', mlen);
	msg[0] = 0;
	msg[1] = 'u';
	msg[2] = 0;
	int n = base64_encode(msg, mlen, line, sizeof line);
	CHECK_INT(n, SASL_LINE_MAX);
	struct sasl s;
	int code;
	sasl_start(&s, "PLAIN", 5);
	CHECK_INT(sasl_step(&s, line, (size_t)n), SASL_INVALID);
	sasl_reply(&s, NULL, &code);
	CHECK_INT(code, 535);

	line[n] = 'A';
	sasl_start(&s, "PLAIN", 5);
	CHECK_INT(sasl_step(&s, line, (size_t)n + 1), SASL_FAIL);
	CHECK_STR(sasl_reply(&s, NULL, &code),
	          "500 5.5.6 Authentication exchange line is too long\r\n");

	sasl_start(&s, "LOGIN", 5);
	CHECK_INT(sasl_line_too_long(&s), SASL_FAIL);
	sasl_reply(&s, NULL, &code);
	CHECK_INT(code, 500);
	/* after the exchange ended, a further line is not taken as a response */
	CHECK_INT(sasl_step(&s, "c2VjcmV0", 8), SASL_FAIL);
	sasl_reply(&s, NULL, &code);
	CHECK_INT(code, 503);
}

/* The longest password (SASL_PASSWORD_MAX) and identity (SASL_IDENTITY_MAX) pass; one more fails. */
TEST(credential_limits)
{
	static uint8_t msg[2 + SASL_IDENTITY_MAX + 1 + SASL_PASSWORD_MAX + 1];
	static char b64[BASE64_ENCODED_LEN(sizeof msg) + 1 + 6];
	static const size_t idl[] = {SASL_IDENTITY_MAX, SASL_IDENTITY_MAX + 1, 1, 1};
	static const size_t pwl[] = {SASL_PASSWORD_MAX, 1, SASL_PASSWORD_MAX + 1, 1};
	static const enum sasl_status want[] = {SASL_DONE, SASL_INVALID, SASL_INVALID, SASL_DONE};
	for (size_t k = 0; k < 4; k++) {
		size_t m = 0;
		msg[m++] = 0;
		memset(msg + m, 'i', idl[k]);
		m += idl[k];
		msg[m++] = 0;
		memset(msg + m, 'w', pwl[k]);
		m += pwl[k];
		memcpy(b64, "PLAIN ", 6);
		int n = base64_encode(msg, m, b64 + 6, sizeof b64 - 6);
		CHECK(n > 0);
		struct sasl s;
		CHECK_INT(sasl_start(&s, b64, 6 + (size_t)n), want[k]);
		if (want[k] == SASL_DONE) {
			size_t plen;
			CHECK_INT(strlen(sasl_identity(&s)), idl[k]);
			CHECK(sasl_password(&s, &plen) != NULL);
			CHECK_INT(plen, pwl[k]);
		}
	}
}

/* sasl_wipe and a new sasl_start leave none of the last password anywhere in the struct. */
TEST(wipe)
{
	struct sasl s;
	sasl_start(&s, "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==", 42);
	CHECK_INT(sasl_status(&s), SASL_DONE);
	CHECK(memmem(&s, sizeof s, "secret", 6) != NULL);
	sasl_wipe(&s);
	CHECK(memmem(&s, sizeof s, "secret", 6) == NULL);
	CHECK(memmem(&s, sizeof s, "alice", 5) == NULL);
	CHECK_INT(sasl_status(&s), SASL_FAIL);
	CHECK(sasl_password(&s, NULL) == NULL);

	sasl_start(&s, "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==", 42);
	sasl_start(&s, "LOGIN", 5);
	CHECK(memmem(&s, sizeof s, "secret", 6) == NULL);
}

TEST_MAIN(T(exchanges), T(reply_codes), T(line_limit), T(credential_limits), T(wipe))
