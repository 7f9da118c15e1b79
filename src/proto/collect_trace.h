/*
 * collect_trace: the trace field the DomainPOP collector puts at the top of
 * every message it collects, and its recognition. Pure (no I/O, no
 * allocation): the collector writes it, local delivery reads it for its
 * Delivered-To loop check (deliver/deliver_headers.h).
 *
 * The field (RFC 5321 4.4 Stamp; the comment carries what is ours):
 *   Received: from HOST by OURHOST with POP3 id QUEUEID
 *   	(sharemail-collect SOURCE uidl UIDL); DATE
 * SOURCE is the source's name (proto/collect_spec.h), UIDL the server's
 * unique-id; an octet of either that could end or escape the comment ('(',
 * ')', '\\') or is not printable ASCII is written as '?'.
 *
 * Why local delivery needs it: an ISP's final delivery adds a Delivered-To
 * naming the mailbox it delivered to, which is our user's address; the loop
 * check would take it for our own. Only the collector can put a field above
 * the ISP's (an SMTP client's fields always lie below the Received field our
 * SMTP server prepends), so a message whose first field is this one was
 * collected, and the fields between it and the next Received field (the
 * ISP's topmost) were written by the ISP's final delivery.
 */
#ifndef SHAREMAIL_PROTO_COLLECT_TRACE_H
#define SHAREMAIL_PROTO_COLLECT_TRACE_H

#include <stddef.h>
#include <stdint.h>

/* The comment's first word: what sets the field apart from any other Received. */
#define COLLECT_TRACE_TAG "(sharemail-collect "

/*
 * Writes the whole field (folded, CRLF-terminated) into out. host: the ISP
 * server's name, ours: our hostname, id: the queue id, t: epoch seconds.
 * Returns its length, or -1 when out is too small.
 */
long collect_trace_format(const char *host, const char *ours, const char *id, const char *source,
                          const char *uidl, size_t uidl_len, int64_t t, char *out, size_t outsz);

/*
 * 1 if value[0..len) (a Received field's value, folding kept) is one that
 * collect_trace_format wrote, else 0.
 */
int collect_trace_is_ours(const char *value, size_t len);

#endif
