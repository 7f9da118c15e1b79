/*
 * deliver_headers: what local delivery reads from and adds to a message's header
 * section. Pure: no I/O; works on the first bounded part of the message
 * (DELIVER_HEADER_SCAN_MAX octets), never on the whole message.
 *
 * Added to every copy, in this order, before the message's own first line:
 *   Return-Path: <sender>                 (RFC 5321 4.4; "<>" for the null path)
 *   Delivered-To: user@example.com        (the final mailbox; Postfix's form)
 *   X-Sharemail-Original-Rcpt: addr       (one per envelope recipient, when
 *                                          smtp_original_recipient_header = yes)
 *   Date: <received_at>                   (when asked: see deliver_headers_build)
 * Envelope values are printable ASCII (the SMTP parser checked them); any other
 * octet is replaced by '?' so a field can never be split or forged.
 *
 * Domain Sharing adds two fields of its own (README "Domain Sharing"):
 *   X-Sharemail-Shared: by HOST; id QUEUEID; DATE
 *       prepended to every message relayed to a Domain Sharing peer (a
 *       recipient routed there at RCPT time, a shared list's copy). A message
 *       that already carries one naming our own host name, or
 *       DELIVER_SHARED_HOPS_MAX of them, is never relayed to a peer again: the
 *       recipient fails with 5.4.6 (a loop between peers).
 *   X-Sharemail-List-Shared: HOST
 *       on the copy of a list post made for a peer that has the same list: a
 *       post carrying it is expanded to local members only, never shared again.
 *
 * Ownership: spans into the caller's buffers.
 */
#ifndef SHAREMAIL_DELIVER_DELIVER_HEADERS_H
#define SHAREMAIL_DELIVER_DELIVER_HEADERS_H

#include <stddef.h>
#include <stdint.h>

struct envelope;

/* Octets of the message read to decide on Date: and loops. */
#define DELIVER_HEADER_SCAN_MAX (256u * 1024u)

struct deliver_hdr_scan {
	size_t header_len; /* octets of buf that hold header lines (incl. the blank line) */
	int complete; /* the whole header section lies in buf */
	int has_date; /* a Date: field was seen */
	unsigned received; /* Received: fields */
	unsigned delivered_to; /* Delivered-To: fields */
};

/*
 * Scans buf[0..len), the first octets of a message; `whole` says buf is the
 * entire message (a message without an empty line is all header section).
 * Lines that are not header fields are skipped.
 */
void deliver_headers_scan(const char *buf, size_t len, int whole, struct deliver_hdr_scan *out);

/*
 * 1 if a Delivered-To: field in hdr[0..hlen) names `mailbox` (ASCII case
 * folded; surrounding white space, folding and angle brackets ignored), else 0.
 * A message collected from an ISP mailbox (its first field is the collector's
 * trace field, proto/collect_trace.h) carries the ISP's own Delivered-To
 * between that field and the ISP's topmost Received: those are not ours and
 * are not read; one of ours from an earlier delivery lies below (a real loop).
 */
int deliver_headers_delivered_to(const char *hdr, size_t hlen, const char *mailbox);

/*
 * Writes the fields prepended to the copy for `mailbox` into out (CRLF line
 * ends). orig_rcpt adds one X-Sharemail-Original-Rcpt: per envelope recipient;
 * add_date adds "Date:" formatted from env->received_at (the caller decides:
 * smtp_add_date_header, a trusted envelope, a complete header section without
 * Date:). Returns the length, or -1 if out is too small.
 */
long deliver_headers_build(const struct envelope *env, const char *mailbox, int orig_rcpt,
                           int add_date, char *out, size_t outsz);

#define DELIVER_SHARED_FIELD "X-Sharemail-Shared"
#define DELIVER_LIST_SHARED_FIELD "X-Sharemail-List-Shared"
/* Domain Sharing hops a message may have made before it is refused as a loop. */
#define DELIVER_SHARED_HOPS_MAX 5

/*
 * The X-Sharemail-Shared fields of hdr[0..hlen): *hops gets their count,
 * *ours 1 if one says "by HOST" with HOST equal to host (ASCII case folded).
 */
void deliver_headers_shared(const char *hdr, size_t hlen, const char *host, unsigned *hops,
                            int *ours);

/* 1 if hdr[0..hlen) has a field called name (any case), else 0. */
int deliver_headers_has(const char *hdr, size_t hlen, const char *name);

/*
 * Writes "X-Sharemail-Shared: by HOST; id ID; DATE\r\n" (date from t, epoch
 * seconds) into out. Returns the length, or -1 if out is too small.
 */
long deliver_headers_shared_build(const char *host, const char *id, int64_t t, char *out,
                                  size_t outsz);

#endif
