/*
 * rfc5322_addr: the addr-specs of an address-list header field body (RFC 5322
 * 3.4: From:, Sender:, To:), for the AUTH rule that the From: addresses belong
 * to the authenticated user (smtpd/auth_rules.h). Display names, comments (nested,
 * 3.2.2), folding white space, quoted strings, groups ("name: a, b;") and the
 * obsolete route of an angle address (4.4) are understood; each mailbox comes
 * out as its addr-spec with comments and white space removed (quoted local parts
 * kept as written, quotes included). Empty list elements (4.4) are skipped.
 *
 * Pure: no I/O, no allocation; the caller hands the buffers.
 */
#ifndef SHAREMAIL_PROTO_RFC5322_ADDR_H
#define SHAREMAIL_PROTO_RFC5322_ADDR_H

#include <stddef.h>

/*
 * Parses v[0..n) (a field body, folding kept). Writes each addr-spec,
 * NUL-terminated, into buf[0..bufsz) and a pointer to it into addrs[], at most
 * max of them. Returns the number found, or -1 when the body is malformed (an
 * unterminated quoted string, comment or angle address, a stray '>' or ';') or
 * does not fit (more than max addresses, or buf too small).
 */
int rfc5322_addr_list(const char *v, size_t n, char *buf, size_t bufsz, const char **addrs,
                      size_t max);

#endif
