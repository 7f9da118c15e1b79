/*
 * rfc5322: reading the header section of a message (RFC 5322 section 2.2):
 * finding its end, iterating header fields (with folded continuation lines),
 * and formatting a Date (section 3.3). Pure: spans into the caller's buffer.
 * Messages are CRLF-only (smtp_lines guarantees it): a bare LF is not a line end.
 *
 * Owner: the SMTP codec engineer (proto). Used by the session and delivery.
 */
#ifndef SHAREMAIL_PROTO_RFC5322_H
#define SHAREMAIL_PROTO_RFC5322_H

#include <stddef.h>
#include <stdint.h>

#define RFC5322_DATE_MAX 32 /* "Sat, 21 Nov 2026 16:34:00 +0000" and its NUL */

struct rfc5322_field {
	const char *name; /* field name (before ':', white space before the ':' excluded) */
	size_t name_len;
	const char *value; /* after ':' up to the final CRLF, folding kept */
	size_t value_len;
	size_t total_len; /* the whole field including its last CRLF (if present) */
};

/*
 * Length of the header section in msg[0..len) including the empty line that ends
 * it (2 when the message starts with CRLF), or -1 if the section does not end
 * within len (or the message has no body separator: then the whole message is
 * headers).
 */
long rfc5322_header_end(const char *msg, size_t len);

/*
 * The index just after the comment that starts at v[i] == '(' in v[0..n)
 * (section 3.2.2: comments nest, and a quoted-pair hides a parenthesis), or 0
 * when it does not end within n (never a valid index after a comment: it takes
 * two octets at least). Shared by every reader of CFWS (addresses, Received,
 * Message-ID).
 */
size_t rfc5322_skip_comment(const char *v, size_t n, size_t i);

/*
 * Reads the field starting at msg[*pos] (msg[0..len) being the header section).
 * Returns 1 and advances *pos past it, 0 at the end of the section (pos at len,
 * or at the empty line, which is not consumed), -1 on a line that is not a field
 * (no colon, empty name, a name octet outside 0x21-0x7E, or starting with white
 * space at the top). Name octets are RFC 5322 ftext; white space between name
 * and colon (obsolete syntax, 4.5) is accepted. A field whose last line has no
 * CRLF ends at len.
 */
int rfc5322_next_field(const char *msg, size_t len, size_t *pos, struct rfc5322_field *f);

/* 1 if the field's name equals `name` case-insensitively. */
int rfc5322_field_is(const struct rfc5322_field *f, const char *name);

/*
 * Formats an RFC 5322 date-time for t (UTC, "+0000"), e.g.
 * "Sat, 21 Nov 2026 16:34:00 +0000", NUL-terminated. Returns length or -1 (out
 * too small, or a year outside 1900-9999).
 */
int rfc5322_date_format(int64_t t, char *out, size_t outsz);

#endif
