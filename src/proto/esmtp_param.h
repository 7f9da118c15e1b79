/*
 * esmtp_param: ESMTP parameters of MAIL and RCPT (RFC 5321 4.1.2 esmtp-param):
 * SIZE (RFC 1870), BODY (RFC 6152), RET, ENVID, NOTIFY, ORCPT (RFC 3461) and
 * xtext (RFC 3461 section 4). Pure: no I/O, no allocation; decoded values are
 * written into caller buffers with fixed maxima.
 *
 * Owner: the SMTP codec engineer (proto). Used by the SMTP session.
 */
#ifndef SHAREMAIL_PROTO_ESMTP_PARAM_H
#define SHAREMAIL_PROTO_ESMTP_PARAM_H

#include <stddef.h>
#include <stdint.h>

#define ESMTP_ENVID_MAX 100 /* RFC 3461 4.4: at most 100 characters */
#define ESMTP_ORCPT_MAX 500 /* RFC 3461 4.2: the whole parameter is at most 500 */

/* RFC 6152 BODY=, as the envelope stores it (queue/envelope.h uses these). */
enum esmtp_body { ESMTP_BODY_UNSET = 0, ESMTP_BODY_7BIT, ESMTP_BODY_8BITMIME };
/* RFC 3461 4.3 RET=. */
enum esmtp_ret { ESMTP_RET_UNSET = 0, ESMTP_RET_FULL, ESMTP_RET_HDRS };
/* RFC 3461 4.1 NOTIFY=: 0 = not given (default: FAILURE), else a set of these bits. */
#define ESMTP_NOTIFY_NEVER 0x1
#define ESMTP_NOTIFY_SUCCESS 0x2
#define ESMTP_NOTIFY_FAILURE 0x4
#define ESMTP_NOTIFY_DELAY 0x8

enum esmtp_result {
	ESMTP_OK = 0,
	ESMTP_SYNTAX, /* 501 5.5.4: malformed, duplicate, bad value, control octet */
	ESMTP_UNKNOWN, /* 555 5.5.4: a parameter we do not know (or DSN off) */
};

struct esmtp_mail_params {
	int has_size;
	uint64_t size; /* SIZE=, at most 20 digits, no overflow */
	enum esmtp_body body;
	enum esmtp_ret ret;
	int has_envid;
	char envid[ESMTP_ENVID_MAX + 1]; /* xtext-decoded, printable ASCII only */
};

struct esmtp_rcpt_params {
	unsigned notify; /* ESMTP_NOTIFY_* bits; 0 unset */
	int has_orcpt;
	char orcpt[ESMTP_ORCPT_MAX + 1]; /* "addr-type;decoded-address", printable ASCII only */
};

/*
 * Parses the MAIL parameters in s[0..len) (space-separated keyword[=value];
 * keywords and the BODY/RET values are case-insensitive; s NULL means none).
 * With dsn = 0, RET and ENVID are unknown parameters. ESMTP_SYNTAX for: any
 * octet outside SP and 0x21-0x7E (CR, LF, NUL, TAB, 8-bit) anywhere, a
 * malformed keyword, an empty value ("SIZE="), SIZE that is not 1-20 digits or
 * exceeds UINT64_MAX, a bad BODY/RET value, an ENVID over 100 characters or with
 * bad xtext, a duplicate. ESMTP_UNKNOWN for any other keyword (AUTH, SMTPUTF8
 * included until they exist). The first error found wins; on error *out is
 * zeroed. SIZE is not compared with any limit here.
 */
enum esmtp_result esmtp_mail_params_parse(const char *s, size_t len, int dsn,
                                          struct esmtp_mail_params *out);

/*
 * Parses the RCPT parameters: NOTIFY (NEVER alone, or a comma list of SUCCESS,
 * FAILURE, DELAY without repeats) and ORCPT (addr-type ";" xtext, addr-type of
 * letters, digits and '-', whole parameter at most 500). With dsn = 0 both are
 * unknown. Same octet, duplicate and error rules as the MAIL parameters.
 */
enum esmtp_result esmtp_rcpt_params_parse(const char *s, size_t len, int dsn,
                                          struct esmtp_rcpt_params *out);

/*
 * Decodes xtext s[0..len) into out (NUL-terminated). Fails (-1) on malformed
 * "+XX" escapes (hex digits of either case), octets outside 0x21-0x7E or '=',
 * a decoded octet outside 0x20-0x7E (control or 8-bit), or when out is too
 * small; else returns the decoded length.
 */
int xtext_decode(const char *s, size_t len, char *out, size_t outsz);

/*
 * Encodes s into xtext (for DSN reports and relaying): '+', '=', SP, controls
 * and 8-bit octets become "+XX" (upper case). NUL-terminated. Returns length or
 * -1 when out is too small (3 * len + 1 is always enough).
 */
int xtext_encode(const char *s, size_t len, char *out, size_t outsz);

#endif
