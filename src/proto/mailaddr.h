/*
 * mailaddr: RFC 5321 section 4.1.2 Mailbox syntax (Local-part "@" Domain), with
 * dot-string or quoted-string local parts and a domain name or address literal.
 * Pure: no I/O, no allocation; results are spans into the caller's buffer.
 *
 * Limits (RFC 5321 4.5.3.1): local part at most 64 octets (a quoted local part
 * counts its quotes and backslashes, as written), domain at most 255. Only
 * printable US-ASCII is accepted (no SMTPUTF8 yet). Address literals are IPv4 or
 * "IPv6:" (RFC 5321 4.1.3); General-address-literal tags are refused. DNS label
 * lengths (63) are not checked. `""@example.com` is valid RFC 5321 syntax.
 */
#ifndef SHAREMAIL_PROTO_MAILADDR_H
#define SHAREMAIL_PROTO_MAILADDR_H

#include <stddef.h>

#define MAILADDR_LOCAL_MAX 64
#define MAILADDR_DOMAIN_MAX 255
#define MAILADDR_MAX (MAILADDR_LOCAL_MAX + 1 + MAILADDR_DOMAIN_MAX)

enum mailaddr_result {
	MAILADDR_OK = 0,
	MAILADDR_EMPTY, /* nothing at all */
	MAILADDR_SYNTAX, /* not RFC 5321 Mailbox syntax */
	MAILADDR_NO_AT, /* no "@" after the local part */
	MAILADDR_LOCAL_TOO_LONG,
	MAILADDR_DOMAIN_TOO_LONG,
	MAILADDR_8BIT, /* an octet above 0x7E or a control octet */
};

struct mailaddr {
	const char *local; /* local part as written (quotes included if quoted) */
	size_t local_len;
	const char *domain; /* domain or address literal as written */
	size_t domain_len;
	int quoted; /* local part is a quoted-string */
	int literal; /* domain is an address literal "[...]" */
};

/*
 * Parses one Mailbox at the start of s[0..len). On MAILADDR_OK, *consumed is the
 * number of octets the mailbox occupies (parsing stops at the first octet that
 * cannot continue it, e.g. a space after the domain) and *out holds spans into s.
 * Each part is read greedily over its character class and then validated, so
 * "a@example.com." is SYNTAX, not a mailbox followed by ".". On failure *out is
 * zeroed and *consumed is 0.
 */
enum mailaddr_result mailaddr_parse(const char *s, size_t len, size_t *consumed,
                                    struct mailaddr *out);

/*
 * Parses s[0..len) as exactly one Mailbox (nothing may follow). Same results.
 */
enum mailaddr_result mailaddr_parse_exact(const char *s, size_t len, struct mailaddr *out);

/*
 * Writes the lookup key of a parsed mailbox into out: the whole address folded to
 * lower case ASCII (sharemail treats local parts case-insensitively, as MDaemon
 * does). Returns the key length, or -1 if outsz is too small (MAILADDR_MAX + 1 is
 * always enough). NUL-terminated.
 */
int mailaddr_key(const struct mailaddr *a, char *out, size_t outsz);

/*
 * 1 if local[0..len), a local part as written (a quoted one keeps its quotes), is
 * "postmaster" in any case and unquoted, else 0. RFC 5321 4.5.1: that address at
 * a local domain, and "<Postmaster>" alone, must always be accepted; a quoted
 * "postmaster" is an ordinary local part. Used by the path parser, the RCPT
 * policy and delivery, so all three agree.
 */
int mailaddr_is_postmaster(const char *local, size_t len);

/* A short English description of a result, for error messages. */
const char *mailaddr_strerror(enum mailaddr_result r);

#endif
