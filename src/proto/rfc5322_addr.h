/*
 * rfc5322_addr: the mailboxes of an address-list header field body (RFC 5322
 * 3.4: From:, To:, Cc:, Bcc:, Resent-*:, and the envelope-recipient fields an
 * ISP adds, X-Rcpt-To:, Delivered-To:...). Used by the AUTH rule that the From:
 * addresses belong to the authenticated user (smtpd/auth_rules.h) and by the
 * DomainPOP header routing (collect/collect_route.h).
 *
 * Understood: display names (atoms, quoted strings, the obsolete "." in a
 * phrase, 4.1), comments (nested, with quoted-pairs, 3.2.2), folding white space,
 * groups ("name: a, b;" and the empty "undisclosed-recipients:;", 3.4), angle
 * addresses with the obsolete route ("<@a,@b:u@d>", 4.4), the obsolete CFWS
 * around the "." and "@" of an addr-spec ("john . doe @ example . com", 4.4),
 * empty list elements (",,", 4.4), and ';' as a separator outside a group
 * (invalid, but some clients write "a@x; b@x"). RFC 2047 encoded words ("=?utf-8?q?...?=")
 * in a display name are left alone: never decoded, and an encoded word is one
 * opaque token, so a ',' '<' '@' or ':' written inside one (an encoder that
 * broke RFC 2047 5(3)) neither splits the list nor makes an address.
 *
 * Each mailbox comes out as its addr-spec with comments and white space removed
 * (a quoted local part kept as written, quotes and quoted-pairs included) and
 * with where it was in the field body, so a caller can log or quote it. This
 * module does not check that the addr-spec is RFC 5321 Mailbox syntax
 * (proto/mailaddr.h does): it only finds it.
 *
 * Pure: no I/O, no allocation; the caller hands the buffers. The field body may
 * hold any octets (NUL included); folding (CRLF followed by white space) is
 * white space.
 */
#ifndef SHAREMAIL_PROTO_RFC5322_ADDR_H
#define SHAREMAIL_PROTO_RFC5322_ADDR_H

#include <stddef.h>

enum rfc5322_addr_result {
	RFC5322_ADDR_END = 0, /* no more list elements */
	RFC5322_ADDR_MAILBOX = 1, /* *m holds the next mailbox */
	/*
	 * One list element that is not a mailbox (a phrase without an angle
	 * address, "Bob bob@x", "undisclosed recipients" without the ':'; an empty
	 * angle address "<>"), or whose addr-spec does not fit the buffer. m's
	 * spans say where it was; the iterator continues with the next element.
	 */
	RFC5322_ADDR_SKIPPED = -1,
	/*
	 * The rest of the body cannot be read: an unterminated quoted string,
	 * comment or angle address, a stray '>', a group inside a group or after
	 * an angle address. Every later call returns it too.
	 */
	RFC5322_ADDR_BAD = -2,
};

/* Iteration state over one field body; fill it with rfc5322_addr_iter_init(). */
struct rfc5322_addr_iter {
	const char *v;
	size_t n, pos;
	int in_group; /* between a group's ':' and its ';' */
	int bad; /* RFC5322_ADDR_BAD was returned */
};

/* One mailbox of the list. Offsets are into the field body v[0..n). */
struct rfc5322_mailbox {
	const char *addr; /* the addr-spec, NUL-terminated, in the caller's buffer */
	size_t addr_len;
	size_t start, end; /* the list element, white space around it excluded (comments kept) */
	size_t spec_start, spec_end; /* the addr-spec as written (inside '<' '>' if angled) */
	size_t name_start, name_end; /* the display name as written (start == end: none) */
	int angle; /* written as an angle address */
	int in_group; /* a member of a group */
};

/* Starts iterating over the field body v[0..n) (not copied: v must outlive it). */
void rfc5322_addr_iter_init(struct rfc5322_addr_iter *it, const char *v, size_t n);

/*
 * Reads the next list element. On RFC5322_ADDR_MAILBOX its addr-spec is written,
 * NUL-terminated, at the start of buf[0..bufsz) (overwriting the previous one)
 * and described in *m. On RFC5322_ADDR_SKIPPED *m has its spans but m->addr is
 * NULL. Empty elements and group names are skipped silently. Each call costs at
 * most the length of the element it reads.
 */
enum rfc5322_addr_result rfc5322_addr_next(struct rfc5322_addr_iter *it, char *buf, size_t bufsz,
                                           struct rfc5322_mailbox *m);

/*
 * The whole list at once (the AUTH From: rule). Writes each addr-spec,
 * NUL-terminated, into buf[0..bufsz) and a pointer to it into addrs[], at most
 * max of them. Returns the number found, or -1 when the body is malformed
 * (RFC5322_ADDR_BAD, or any element that is not a mailbox) or does not fit
 * (more than max addresses, or buf too small).
 */
int rfc5322_addr_list(const char *v, size_t n, char *buf, size_t bufsz, const char **addrs,
                      size_t max);

#endif
