/*
 * sasl: RFC 4954 AUTH with PLAIN (RFC 4616) and LOGIN, server side. See sasl.h.
 *
 * LOGIN has no RFC; its de-facto form (draft-murchison-sasl-login-00) is two
 * prompts, "Username:" and "Password:", each answered by one base64 line. Clients
 * may send the user name as the initial response ("AUTH LOGIN dXNlcg=="): then only
 * the password prompt follows.
 */
#include "proto/sasl.h"

#include <stdint.h>
#include <string.h>

#include "proto/base64.h"
#include "proto/smtp_reply.h"

/* The decoded size of the longest line SASL_LINE_MAX (4 base64 octets carry 3). */
#define SASL_DECODED_MAX (SASL_LINE_MAX / 4 * 3)

/* base64("Username:") and base64("Password:"), the LOGIN prompts. */
static const char login_user_prompt[] = "VXNlcm5hbWU6";
static const char login_pass_prompt[] = "UGFzc3dvcmQ6";

static void wipe_credentials(struct sasl *s)
{
	explicit_bzero(s->identity, sizeof s->identity);
	explicit_bzero(s->password, sizeof s->password);
	s->identity_len = 0;
	s->password_len = 0;
}

/* Ends the exchange with a refusal. */
static enum sasl_status refuse(struct sasl *s, enum sasl_status st, int code, const char *enh,
                               const char *text)
{
	wipe_credentials(s);
	s->expect = SASL_EXPECT_NONE;
	s->status = st;
	s->reply_code = code;
	int n = smtp_reply_format(s->reply, sizeof s->reply, code, enh, text, 0);
	s->reply_len = n > 0 ? (size_t)n : 0;
	if (n <= 0)
		s->reply[0] = '\0';
	return st;
}

static enum sasl_status refuse_invalid(struct sasl *s)
{
	return refuse(s, SASL_INVALID, 535, "5.7.8", "Authentication credentials invalid");
}

static enum sasl_status refuse_base64(struct sasl *s)
{
	return refuse(s, SASL_FAIL, 501, "5.5.2", "Cannot decode the response");
}

/* "334 CHALLENGE": RFC 4954 section 4 keeps the space even for an empty challenge. */
static enum sasl_status challenge(struct sasl *s, enum sasl_expect next, const char *b64)
{
	size_t n = strlen(b64);
	memcpy(s->reply, "334 ", 4);
	memcpy(s->reply + 4, b64, n);
	memcpy(s->reply + 4 + n, "\r\n", 3);
	s->reply_len = 4 + n + 2;
	s->reply_code = 334;
	s->expect = next;
	s->status = SASL_CONTINUE;
	return SASL_CONTINUE;
}

static enum sasl_status done(struct sasl *s)
{
	s->expect = SASL_EXPECT_NONE;
	s->status = SASL_DONE;
	s->reply[0] = '\0';
	s->reply_len = 0;
	s->reply_code = 0;
	return SASL_DONE;
}

/* 1 if the identity is 1..SASL_IDENTITY_MAX printable ASCII octets (it reaches logs). */
static int identity_ok(const uint8_t *p, size_t n)
{
	if (n == 0 || n > SASL_IDENTITY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return 0;
	return 1;
}

/* 1 if the password is 1..SASL_PASSWORD_MAX octets without NUL (crypt takes a C string). */
static int password_ok(const uint8_t *p, size_t n)
{
	return n > 0 && n <= SASL_PASSWORD_MAX && memchr(p, 0, n) == NULL;
}

static int ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* ASCII case-insensitive equality: addresses are keys in lower case (mailaddr_key). */
static int same_identity(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	if (an != bn)
		return 0;
	for (size_t i = 0; i < an; i++)
		if (ascii_lower(a[i]) != ascii_lower(b[i]))
			return 0;
	return 1;
}

static void keep_identity(struct sasl *s, const uint8_t *p, size_t n)
{
	memcpy(s->identity, p, n);
	s->identity[n] = '\0';
	s->identity_len = n;
}

static void keep_password(struct sasl *s, const uint8_t *p, size_t n)
{
	memcpy(s->password, p, n);
	s->password[n] = '\0';
	s->password_len = n;
}

/*
 * RFC 4616 section 2: message = [authzid] NUL authcid NUL passwd. sharemail has no
 * proxy authorization: an authzid must be absent or name the authcid itself.
 */
static enum sasl_status plain_message(struct sasl *s, const uint8_t *m, size_t n)
{
	const uint8_t *nul1 = memchr(m, 0, n);
	if (!nul1)
		return refuse_base64(s);
	size_t zlen = (size_t)(nul1 - m);
	const uint8_t *cid = nul1 + 1;
	const uint8_t *nul2 = memchr(cid, 0, n - zlen - 1);
	if (!nul2)
		return refuse_base64(s);
	size_t clen = (size_t)(nul2 - cid);
	const uint8_t *pw = nul2 + 1;
	size_t plen = n - zlen - clen - 2;
	if (!identity_ok(cid, clen) || !password_ok(pw, plen))
		return refuse_invalid(s);
	if (zlen > 0 && !same_identity(m, zlen, cid, clen))
		return refuse_invalid(s);
	keep_identity(s, cid, clen);
	keep_password(s, pw, plen);
	return done(s);
}

static enum sasl_status login_user(struct sasl *s, const uint8_t *u, size_t n)
{
	if (!identity_ok(u, n))
		return refuse_invalid(s);
	keep_identity(s, u, n);
	return challenge(s, SASL_EXPECT_PASS, login_pass_prompt);
}

static enum sasl_status login_pass(struct sasl *s, const uint8_t *p, size_t n)
{
	if (!password_ok(p, n))
		return refuse_invalid(s);
	keep_password(s, p, n);
	return done(s);
}

/* One decoded response, to whatever the machine expects. */
static enum sasl_status response(struct sasl *s, const uint8_t *d, size_t n)
{
	switch (s->expect) {
	case SASL_EXPECT_PLAIN: return plain_message(s, d, n);
	case SASL_EXPECT_USER: return login_user(s, d, n);
	case SASL_EXPECT_PASS: return login_pass(s, d, n);
	case SASL_EXPECT_NONE: break;
	}
	return refuse(s, SASL_FAIL, 503, "5.5.1", "No authentication exchange under way");
}

/* Decodes b64[0..len) and hands it on; the decoded octets never outlive the call. */
static enum sasl_status decode_and_respond(struct sasl *s, const char *b64, size_t len)
{
	uint8_t d[SASL_DECODED_MAX];
	int n = base64_decode(b64, len, d, sizeof d);
	enum sasl_status st = n < 0 ? refuse_base64(s) : response(s, d, (size_t)n);
	explicit_bzero(d, sizeof d);
	return st;
}

static enum sasl_mech mech_parse(const char *p, size_t n)
{
	static const struct {
		const char *name;
		enum sasl_mech mech;
	} mechs[] = {{"PLAIN", SASL_MECH_PLAIN}, {"LOGIN", SASL_MECH_LOGIN}};
	for (size_t i = 0; i < sizeof mechs / sizeof mechs[0]; i++) {
		size_t len = strlen(mechs[i].name);
		if (n != len)
			continue;
		size_t j = 0;
		while (j < n && ascii_lower((unsigned char)p[j]) == ascii_lower(mechs[i].name[j]))
			j++;
		if (j == n)
			return mechs[i].mech;
	}
	return SASL_MECH_NONE;
}

enum sasl_status sasl_start(struct sasl *s, const char *args, size_t len)
{
	sasl_wipe(s);
	const char *sp = memchr(args, ' ', len);
	size_t mlen = sp ? (size_t)(sp - args) : len;
	if (mlen == 0)
		return refuse(s, SASL_FAIL, 501, "5.5.2",
		              "Syntax: AUTH mechanism [initial-response]");
	s->mech = mech_parse(args, mlen);
	if (s->mech == SASL_MECH_NONE)
		return refuse(s, SASL_FAIL, 504, "5.5.4", "Unrecognized authentication type");
	s->expect = s->mech == SASL_MECH_PLAIN ? SASL_EXPECT_PLAIN : SASL_EXPECT_USER;
	if (!sp)
		return challenge(s, s->expect, s->mech == SASL_MECH_PLAIN ? "" : login_user_prompt);
	const char *ir = sp + 1;
	size_t irlen = len - mlen - 1;
	if (irlen == 0 || memchr(ir, ' ', irlen))
		return refuse(s, SASL_FAIL, 501, "5.5.2",
		              "Syntax: AUTH mechanism [initial-response]");
	if (irlen > SASL_LINE_MAX)
		return sasl_line_too_long(s);
	/* RFC 4954 section 4: "=" is an initial response of zero length. */
	if (irlen == 1 && ir[0] == '=')
		return response(s, (const uint8_t *)"", 0);
	return decode_and_respond(s, ir, irlen);
}

enum sasl_status sasl_step(struct sasl *s, const char *line, size_t len)
{
	if (s->expect == SASL_EXPECT_NONE)
		return response(s, NULL, 0);
	if (len > SASL_LINE_MAX)
		return sasl_line_too_long(s);
	/* RFC 4954 section 4: a lone "*" cancels; the server MUST answer 501. */
	if (len == 1 && line[0] == '*')
		return refuse(s, SASL_FAIL, 501, "5.7.0", "Authentication cancelled");
	return decode_and_respond(s, line, len);
}

enum sasl_status sasl_line_too_long(struct sasl *s)
{
	return refuse(s, SASL_FAIL, 500, "5.5.6", "Authentication exchange line is too long");
}

enum sasl_status sasl_status(const struct sasl *s)
{
	return s->status;
}

const char *sasl_reply(const struct sasl *s, size_t *len, int *code)
{
	if (len)
		*len = s->reply_len;
	if (code)
		*code = s->reply_code;
	return s->reply;
}

enum sasl_mech sasl_mech(const struct sasl *s)
{
	return s->mech;
}

const char *sasl_identity(const struct sasl *s)
{
	return s->status == SASL_DONE ? s->identity : NULL;
}

const char *sasl_password(const struct sasl *s, size_t *len)
{
	if (s->status != SASL_DONE)
		return NULL;
	if (len)
		*len = s->password_len;
	return s->password;
}

void sasl_wipe(struct sasl *s)
{
	explicit_bzero(s, sizeof *s);
	s->status = SASL_FAIL;
}
