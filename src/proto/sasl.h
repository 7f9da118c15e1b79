/*
 * sasl: the server side of SMTP AUTH (RFC 4954) for the PLAIN (RFC 4616) and LOGIN
 * mechanisms, as a state machine without I/O. The SMTP session hands it the AUTH
 * command's arguments (sasl_start) and then each continuation line the client sends
 * (sasl_step); after each call the machine holds the one reply line to send and a
 * status saying whether the exchange goes on, failed, or produced credentials for
 * the caller to check (the machine never checks a password itself: that is a hash
 * run off the event loop, directory/password_check.h).
 *
 * Replies (RFC 4954 sections 4 and 6):
 *   334 <base64 challenge>        PLAIN: "334 " (empty); LOGIN: Username:, Password:
 *   501 5.7.0 a "*" line          the client cancelled the exchange
 *   501 5.5.2 bad base64          or a malformed PLAIN message, or bad AUTH arguments
 *   500 5.5.6 line too long       a continuation line over SASL_LINE_MAX octets
 *   504 5.5.4 unknown mechanism   only PLAIN and LOGIN exist
 *   535 5.7.8 invalid             credentials that cannot be valid: an authzid that is
 *                                 not the authcid, an empty or overlong identity or
 *                                 password, control octets in the identity. The
 *                                 caller counts these as failed attempts, like a
 *                                 wrong password.
 * When the status is SASL_DONE there is no reply: the caller checks the credentials
 * and answers 235 2.7.0 or 535 5.7.8 itself.
 *
 * Pure: no I/O, no allocation, no logging. The caller owns struct sasl (its fields
 * are private: use the functions), typically only for the exchange's duration.
 * The password is wiped by sasl_wipe() (call it as soon as the password has been
 * copied to the check), by every sasl_start() and on every failure; decoded octets
 * on the stack are wiped before each call returns.
 */
#ifndef SHAREMAIL_PROTO_SASL_H
#define SHAREMAIL_PROTO_SASL_H

#include <stddef.h>

#include "proto/mailaddr.h"

/* RFC 4954 section 4: a server accepts continuation lines of at least 12288 octets. */
#define SASL_LINE_MAX 12288
/* Longest identity (authcid): an account's address. */
#define SASL_IDENTITY_MAX MAILADDR_MAX
/* Longest password: libxcrypt refuses passphrases of 512 octets or more. */
#define SASL_PASSWORD_MAX 511
/* Longest reply line the machine produces, CRLF and NUL included. */
#define SASL_REPLY_MAX 80

enum sasl_status {
	SASL_CONTINUE = 0, /* send the 334 reply, then feed the client's next line to sasl_step */
	SASL_DONE, /* credentials ready (sasl_identity, sasl_password): check them */
	SASL_FAIL, /* send the 5xx reply; the exchange is over, nothing authenticated */
	SASL_INVALID, /* send the 535 reply; count it as a failed attempt */
};

enum sasl_mech { SASL_MECH_NONE = 0, SASL_MECH_PLAIN, SASL_MECH_LOGIN };

/* Private: which line the machine expects next. */
enum sasl_expect { SASL_EXPECT_NONE = 0, SASL_EXPECT_PLAIN, SASL_EXPECT_USER, SASL_EXPECT_PASS };

struct sasl {
	enum sasl_mech mech;
	enum sasl_expect expect;
	enum sasl_status status;
	int reply_code;
	char reply[SASL_REPLY_MAX];
	size_t reply_len;
	char identity[SASL_IDENTITY_MAX + 1];
	size_t identity_len;
	char password[SASL_PASSWORD_MAX + 1];
	size_t password_len;
};

/*
 * Begins an exchange from the AUTH command's arguments args[0..len) (what follows
 * "AUTH "): a mechanism name (any case) and optionally one space and an initial
 * response, where "=" is an empty response (RFC 4954 section 4). Wipes anything
 * left from an earlier exchange first. Returns the status (see enum sasl_status).
 */
enum sasl_status sasl_start(struct sasl *s, const char *args, size_t len);

/*
 * Feeds one continuation line line[0..len), CRLF removed. "*" cancels (501 5.7.0);
 * a line longer than SASL_LINE_MAX is refused (500 5.5.6). Only valid after a
 * SASL_CONTINUE; otherwise SASL_FAIL with 503 5.5.1. Returns the status.
 */
enum sasl_status sasl_step(struct sasl *s, const char *line, size_t len);

/*
 * The framing layer had to drop a continuation line longer than it keeps (more
 * than SASL_LINE_MAX octets): ends the exchange as sasl_step would (500 5.5.6).
 */
enum sasl_status sasl_line_too_long(struct sasl *s);

/* The status of the last call (SASL_FAIL after sasl_wipe()). */
enum sasl_status sasl_status(const struct sasl *s);

/*
 * The reply line of the last call, CRLF-terminated (and NUL-terminated), and its
 * length in *len (0 and "" for SASL_DONE). *code gets the reply code (0 for none);
 * code may be NULL.
 */
const char *sasl_reply(const struct sasl *s, size_t *len, int *code);

/* The mechanism of the exchange under way or just ended (SASL_MECH_NONE if none). */
enum sasl_mech sasl_mech(const struct sasl *s);

/*
 * After SASL_DONE: the identity (authcid; printable ASCII, 1..SASL_IDENTITY_MAX
 * octets, NUL-terminated, as the client sent it) and the password (1..
 * SASL_PASSWORD_MAX octets without NUL, NUL-terminated; length in *len). NULL
 * in any other state.
 */
const char *sasl_identity(const struct sasl *s);
const char *sasl_password(const struct sasl *s, size_t *len);

/* Wipes the credentials and the state (explicit_bzero); s may then be reused or freed. */
void sasl_wipe(struct sasl *s);

#endif
