/*
 * dns_msg: DNS messages (RFC 1035 4.1) as far as a client of a recursive server asking for MX
 * records needs them: the query for one name and type, and the reading of a
 * reply (header, question, resource records, MX and CNAME data).
 *
 * Pure: no I/O, no allocation. A parsed message borrows the caller's buffer.
 * Names come out in presentation form without the final dot ("" is the root),
 * ASCII letters folded to lower case. A name whose labels hold anything but
 * letters, digits, '-' and '_' is well-formed on the wire but no host name: it
 * is reported as DNS_NAME_ODD (the record is skipped, the message is not
 * refused). Compression pointers (RFC 1035 4.1.4) must each point strictly
 * before the previous one, so decoding ends on every input; a name is at most
 * 255 octets on the wire (RFC 1035 3.1).
 *
 * Owner: deliver (next-hop resolution). Fuzzed by fuzz/fuzz_dns_msg.c.
 */
#ifndef SHAREMAIL_PROTO_DNS_MSG_H
#define SHAREMAIL_PROTO_DNS_MSG_H

#include <stddef.h>
#include <stdint.h>

#define DNS_MSG_HEADER_LEN 12
#define DNS_MSG_UDP_MAX 512 /* RFC 1035 4.2.1: without EDNS */
#define DNS_MSG_TCP_MAX 65535 /* RFC 1035 4.2.2: two-octet length prefix */
#define DNS_NAME_MAX 253 /* presentation form, without the final dot */
#define DNS_NAME_BUFSZ (DNS_NAME_MAX + 1)
#define DNS_QUERY_MAX (DNS_MSG_HEADER_LEN + 255 + 4) /* one question, no EDNS */

#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_MX 15
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN 1

#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_FORMERR 1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_NOTIMP 4
#define DNS_RCODE_REFUSED 5

/* Outcome of decoding one name. */
enum dns_name_result {
	DNS_NAME_MALFORMED = -1, /* runs past the message, bad pointer, label type, length */
	DNS_NAME_OK = 0,
	DNS_NAME_ODD = 1, /* well-formed, but not a host name: out is "" */
};

/* The header and the first question of a message. */
struct dns_msg {
	const uint8_t *buf; /* borrowed */
	size_t len;
	uint16_t id;
	int qr, opcode, aa, tc, rd, ra, rcode;
	uint16_t qdcount, ancount, nscount, arcount;
	int qname_ok; /* the first question's name decoded as DNS_NAME_OK */
	char qname[DNS_NAME_BUFSZ]; /* first question ("" when qdcount is 0 or the name is odd) */
	uint16_t qtype, qclass;
	size_t rr_off; /* where the answer section starts */
};

enum dns_section { DNS_SECTION_ANSWER, DNS_SECTION_AUTHORITY, DNS_SECTION_ADDITIONAL };

/* One resource record; rdata stays in the message. */
struct dns_rr {
	enum dns_section section;
	int owner_ok; /* owner decoded as DNS_NAME_OK */
	char owner[DNS_NAME_BUFSZ];
	uint16_t type, rclass;
	uint32_t ttl;
	size_t rdata_off; /* offset of the rdata in the message */
	uint16_t rdlen;
};

/* Walks every record of every section in order. */
struct dns_rr_iter {
	const struct dns_msg *m;
	size_t off;
	uint32_t done, total;
};

/*
 * Writes a standard query (opcode 0, RD set: we ask a recursive resolver) for
 * name (presentation form, a final dot allowed, at most DNS_NAME_MAX octets of
 * letters, digits, '-', '_' and dots, no empty label; "" or "." is the root)
 * and qtype, class IN, into out. Returns the length, or -1 for a bad name or
 * when outsz is too small (DNS_QUERY_MAX always suffices).
 */
int dns_msg_query_format(uint8_t *out, size_t outsz, uint16_t id, const char *name, uint16_t qtype);

/*
 * Reads the header and questions of buf[0..len) into out. Returns 0, or -1 when
 * the message is shorter than a header or a question is malformed. A message
 * with no question parses (qname ""); dns_msg_is_reply_to refuses it.
 */
int dns_msg_parse(const uint8_t *buf, size_t len, struct dns_msg *out);

/*
 * 1 if m answers our query: QR set, opcode 0, the same id, exactly one question,
 * for name (compared without case and without a final dot), qtype and class IN.
 * Else 0 (a stray, late or forged datagram: ignore it).
 */
int dns_msg_is_reply_to(const struct dns_msg *m, uint16_t id, const char *name, uint16_t qtype);

/* Starts a walk over the records of m (answer, authority, then additional). */
void dns_rr_iter_init(struct dns_rr_iter *it, const struct dns_msg *m);

/*
 * Reads the next record into rr. Returns 1, 0 at the end, or -1 when the
 * message is malformed (the walk then stays at -1).
 */
int dns_rr_next(struct dns_rr_iter *it, struct dns_rr *rr);

/*
 * Decodes the rdata of an MX record (RFC 1035 3.3.9): preference and exchange
 * (DNS_NAME_BUFSZ octets at name). The exchange must fill the rdata exactly.
 * Returns a dns_name_result for the exchange; "" with DNS_NAME_OK is the root
 * (a null MX, RFC 7505).
 */
int dns_rr_mx(const struct dns_msg *m, const struct dns_rr *rr, uint16_t *pref, char *name);

/* Decodes the target of a CNAME record (RFC 1035 3.3.1) into name (DNS_NAME_BUFSZ). */
int dns_rr_cname(const struct dns_msg *m, const struct dns_rr *rr, char *name);

/*
 * Decodes the name at buf[off..] (DNS_NAME_BUFSZ octets at out) and sets *end
 * to the offset just after it where it appears (after the first pointer, if
 * any). Returns a dns_name_result.
 */
int dns_name_decode(const uint8_t *buf, size_t len, size_t off, char *out, size_t *end);

/*
 * 1 if a and b (presentation form, NUL-terminated) name the same domain: equal
 * without regard to ASCII case, a final dot on either ignored. Else 0.
 */
int dns_name_equal(const char *a, const char *b);

#endif
