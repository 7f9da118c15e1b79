/*
 * collect_route: who a message collected from an ISP mailbox (DomainPOP) is for,
 * worked out from its header section, since POP3 hands over the letter without
 * its envelope (../shared/seeds/ports-size-domainpop.txt, "Understanding
 * DomainPOP duplicates"). Pure: no I/O, no allocation, no logging; the caller
 * (the collector manager) logs the rule that decided and queues the message.
 *
 * The rules, tried in this order; the first that names at least one LOCAL
 * recipient decides, and only its local recipients are returned:
 *  1. COLLECT_ROUTE_HEADER: each configured header name in turn (default
 *     COLLECT_ROUTE_DEFAULT_HEADERS: X-Rcpt-To X-MDRcpt-To X-Original-To
 *     Delivered-To Envelope-To X-Envelope-To), read as an RFC 5322 address list
 *     (proto/rfc5322_addr.h; a bare addr-spec is one). Of each name, the topmost
 *     field is read together with the fields of that name that directly follow
 *     it (an ISP that lists several recipients writes them together); a field
 *     of the same name further down, after another field, was written by an
 *     earlier hop: a forwarded message keeps its first Delivered-To, and reading
 *     it would send the message back to its earlier recipient (Postfix reads
 *     those for its loop check for that reason).
 *     These fields can be written by a sender too: which of them the ISP writes
 *     is the administrator's to find out (the seed's test with an off-site
 *     address and a Bcc), and collect_headers should list only those.
 *  2. COLLECT_ROUTE_RECEIVED (parse_received): the `for` clause of ONE Received
 *     field, the one the ISP's own hop added: the topmost Received field, or,
 *     with received_by set, the topmost one whose `by` host matches it
 *     (proto/received.h, received_by_matches: "mx.isp.example", or
 *     ".isp.example" for any host below). Only that field is read: when it has
 *     no for clause (Postfix writes none for a message with several recipients),
 *     this rule names nobody, and no Received field further down is tried, so a
 *     sender cannot route with a Received field of their own (theirs are always
 *     below the ISP's).
 *  3. COLLECT_ROUTE_TO_CC (parse_to_cc): everyone named in To, Cc, Bcc (a Bcc
 *     recipient's copy may keep its Bcc field, RFC 5322 3.6.3), Resent-To,
 *     Resent-Cc and Resent-Bcc (a re-sent message is for its resent recipients;
 *     the original ones who got it before are saved from a second copy by the
 *     de-duplication, a Resent message keeping its Message-ID), all fields of
 *     those names: the seed's "safest route", one copy to everyone named.
 *     A Bcc recipient whose copy has no Bcc field is not named anywhere: only
 *     rule 1 (an ISP header such as X-Rcpt-To) can find them.
 *  4. COLLECT_ROUTE_NONE: no local recipient; the caller delivers to
 *     collect_fallback (or keeps the message, its policy).
 *
 * An address counts when it is RFC 5321 Mailbox syntax (proto/mailaddr.h) and
 * the caller's is_local says its domain is one of ours (local_domains, Domain
 * Sharing domains: the caller decides; a Domain Sharing user is relayed to the
 * peer by the normal lookup). Others are ignored (counted in `foreign`).
 * Recipients are deduplicated on mailaddr_key (the whole address folded to
 * lower case: sharemail's lookup folds local parts too, so "Bob@x" and "bob@X"
 * are one mailbox and get one copy) and returned as that key, in the order
 * first named, at most COLLECT_ROUTE_RCPTS_MAX (later ones are counted in
 * `dropped`: the caller logs them).
 *
 * Malformed input: a header line that is not a field is skipped (the next field
 * is read); an address field that cannot be read to its end gives the mailboxes
 * before the fault (counted in `malformed`); a list element that is not a
 * mailbox is skipped. A Received field that cannot be read (counted; this
 * includes one with two by clauses, which a client's HELO of several words can
 * write: proto/received.h) ends rule 2 with nobody, with or without
 * received_by: it may be the ISP's own made unreadable by a client, and trying
 * the fields below it would let a sender's forged one decide. Nothing a message holds can make this fail.
 * Cost: one pass over the section per configured header and rule, each field's
 * body read once per pass that wants it.
 */
#ifndef SHAREMAIL_COLLECT_COLLECT_ROUTE_H
#define SHAREMAIL_COLLECT_COLLECT_ROUTE_H

#include <stddef.h>

#include "proto/mailaddr.h"

#define COLLECT_ROUTE_RCPTS_MAX 100 /* RFC 5321 4.5.3.1.8: the recipients a server must take */
#define COLLECT_ROUTE_HEADERS_MAX 32 /* configured header names */
#define COLLECT_ROUTE_DEFAULT_HEADERS                                                              \
	"X-Rcpt-To X-MDRcpt-To X-Original-To Delivered-To Envelope-To X-Envelope-To"

enum collect_route_rule {
	COLLECT_ROUTE_NONE = 0, /* no local recipient: the caller uses collect_fallback */
	COLLECT_ROUTE_HEADER, /* a configured header (result.header names it) */
	COLLECT_ROUTE_RECEIVED, /* the for clause of the ISP's Received field */
	COLLECT_ROUTE_TO_CC, /* To/Cc/Bcc/Resent-*: everyone named */
};

/*
 * 1 if addr (NUL-terminated mailbox, as written) is in one of our domains;
 * domain points into addr, after its '@'. Called for each candidate address that
 * is RFC 5321 syntax and not already a recipient, during collect_route() only.
 */
typedef int (*collect_route_is_local_fn)(void *arg, const char *addr, const char *domain);

/* What the collector configures (the collect_* keys, mapped by the collector). */
struct collect_route_conf {
	const char *headers[COLLECT_ROUTE_HEADERS_MAX]; /* field names without ':', in order */
	size_t n_headers;
	int parse_received; /* rule 2 (default 1) */
	int parse_to_cc; /* rule 3 (default 1) */
	const char *received_by; /* NULL or "": the topmost Received field is the ISP's */
	collect_route_is_local_fn is_local;
	void *is_local_arg;
};

struct collect_route_result {
	enum collect_route_rule rule;
	const char *header; /* the deciding field name for the log: a configured name,
	                       "Received" or "To/Cc"; NULL for COLLECT_ROUTE_NONE */
	size_t n_rcpts;
	char rcpts[COLLECT_ROUTE_RCPTS_MAX][MAILADDR_MAX + 1]; /* mailaddr_key form */
	size_t dropped; /* local recipients past COLLECT_ROUTE_RCPTS_MAX */
	size_t foreign; /* addresses the deciding rule named outside our domains */
	size_t malformed; /* fields read (by any rule) that did not parse to their end */
};

/*
 * Fills c with the defaults: the six COLLECT_ROUTE_DEFAULT_HEADERS (static
 * strings), parse_received and parse_to_cc on, received_by NULL. is_local is
 * left NULL: the caller must set it.
 */
void collect_route_conf_defaults(struct collect_route_conf *c);

/*
 * Splits a space-separated list of header names (the collect_headers value)
 * into c->headers: pointers into list, which must stay alive (the collector
 * passes a copy it owns, whose separators this overwrites with NULs). Returns
 * the number of names, or -1 (nothing written past what fits) when there are
 * more than COLLECT_ROUTE_HEADERS_MAX, or a name holds an octet that cannot be
 * in a field name (RFC 5322 2.2: 0x21-0x7E except ':'). An empty list gives 0
 * names: rule 1 is then off.
 */
int collect_route_conf_headers(struct collect_route_conf *c, char *list);

/*
 * Routes one message: hdr[0..len) is its header section (CRLF lines; the empty
 * line and the body may follow and are not read). Fills *r (whole; *r needs no
 * initialising). c->is_local must be set. Returns r->rule.
 */
enum collect_route_rule collect_route(const struct collect_route_conf *c, const char *hdr,
                                      size_t len, struct collect_route_result *r);

/*
 * rfc5322_next_field() over a collected message's header section that skips
 * the lines that are not fields (a broken line must not hide the fields after
 * it). Returns 1 and *f, or 0 at the end of the section. Used by the routing
 * rules and by collect_dedupe.
 */
struct rfc5322_field;
int collect_route_next_field(const char *hdr, size_t len, size_t *pos, struct rfc5322_field *f);

/* "header", "received", "to-cc" or "none": the rule's word for the log. */
const char *collect_route_rule_name(enum collect_route_rule rule);

#endif
