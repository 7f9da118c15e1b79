/*
 * received: the clauses of a Received: trace field (RFC 5321 4.4 Time-stamp-line,
 * RFC 5322 3.6.7) that DomainPOP routing reads: the `by` host (which server
 * added the field) and the `for` clause (the envelope recipient it received the
 * message for).
 *
 *   Stamp = From-domain By-domain Opt-info [CFWS] ";" FWS date-time
 *   Opt-info = [Via] [With] [ID] [For] [Additional-Registered-Clauses]
 *   For = CFWS "FOR" FWS ( Path / Mailbox )
 *
 * Tolerant of what real servers write: clauses in any order, extra words
 * ("with Microsoft SMTP Server"), comments anywhere (never read: "(for <x@y>)"
 * in a comment is not a for clause), folding, `for addr` without angle
 * brackets, `for <addr>;` with no space before the ';', a missing date, a
 * missing from clause ("Received: by host with SMTP id ...").
 *
 * Trust: the from-domain is the client's HELO name, the part of the field a
 * sender chooses; clauses are keyword-value pairs, so a HELO of "for" is a
 * from value, never a for clause. Some servers copy a HELO of several words
 * (Postfix joins them), so a HELO of "x by mx.isp for <a@b>" writes clauses of
 * its own before the server's: a for clause counts only after the by clause
 * (its place in the grammar), a field with two by clauses is refused, and a
 * field with two for clauses has none (it cannot say which its server wrote). The date part, after the LAST ';'
 * outside comments, quoted strings and angle addresses (a date-time holds
 * none), is not read: a ';' in a HELO ("x; for <a@b>") does not end the
 * clauses early and hide the server's own by clause.
 *
 * Pure: no I/O, no allocation; results are spans into the caller's field body.
 */
#ifndef SHAREMAIL_PROTO_RECEIVED_H
#define SHAREMAIL_PROTO_RECEIVED_H

#include <stddef.h>

struct received_info {
	const char *by; /* the by clause's host as written (NULL: no by clause) */
	size_t by_len;
	const char *for_addr; /* the for clause's address, angle brackets removed (NULL: none) */
	size_t for_len;
};

/*
 * Parses a Received: field body v[0..n) (after the colon, folding kept) into
 * *out. Returns 0, or -1 when the body is unreadable (an unterminated comment,
 * quoted string or angle address) or has two by clauses; *out is then all
 * NULL. A clause keyword without a value (`by`
 * at the end) gives no clause. The for address is not checked (the caller runs
 * mailaddr_parse_exact on it); `for <>` gives no address.
 */
int received_parse(const char *v, size_t n, struct received_info *out);

/*
 * 1 if host[0..len) (a by clause) names the server `want`, ASCII case-insensitive,
 * a final '.' on either ignored; a `want` starting with '.' (".isp.example")
 * matches any host below that domain, not the domain itself. 0 otherwise.
 */
int received_by_matches(const char *host, size_t len, const char *want);

#endif
