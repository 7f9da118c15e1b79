/*
 * dns_msg: see dns_msg.h. Every read is checked against the message length
 * before it happens; counts from the header are never trusted beyond what the
 * octets that follow can hold.
 */
#include "proto/dns_msg.h"

#include <string.h>

#include "util/strutil.h"

#define DNS_WIRE_NAME_MAX 255 /* RFC 1035 3.1 */
#define DNS_LABEL_MAX 63
#define DNS_RR_FIXED_LEN 10 /* type, class, ttl, rdlength (RFC 1035 4.1.3) */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* A character we accept in a host-name label (RFC 1123 2.1, plus '_' seen in the wild). */
static int is_host_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Appends one label to out (at *o), lower-cased; returns 1 if it is a host-name label. */
static int label_append(const uint8_t *lab, size_t n, char *out, size_t *o)
{
	int ok = 1;
	if (*o > 0)
		out[(*o)++] = '.';
	for (size_t i = 0; i < n; i++) {
		ok &= is_host_char(lab[i]);
		out[(*o)++] = (char)ascii_lower(lab[i]);
	}
	return ok;
}

/*
 * RFC 1035 4.1.4: a pointer is two octets whose top two bits are set (an offset
 * in the other 14). Each must point before the previous one (or before itself,
 * for the first), so the walk is
 * strictly decreasing and ends. The wire length, counting every label once
 * as it is read, stays within 255 octets, which also bounds out.
 */
static int name_walk(const uint8_t *buf, size_t len, size_t off, char *out, size_t *end)
{
	size_t pos = off, limit = off, wire = 1, o = 0;
	int jumped = 0, ok = 1;

	for (;;) {
		if (pos >= len)
			return DNS_NAME_MALFORMED;
		uint8_t c = buf[pos];
		if (c == 0) {
			if (!jumped)
				*end = pos + 1;
			break;
		}
		if ((c & 0xc0) == 0xc0) {
			if (pos + 1 >= len)
				return DNS_NAME_MALFORMED;
			size_t ptr = (size_t)(c & 0x3f) << 8 | buf[pos + 1];
			if (ptr >= limit)
				return DNS_NAME_MALFORMED;
			if (!jumped)
				*end = pos + 2;
			jumped = 1;
			limit = ptr;
			pos = ptr;
			continue;
		}
		if ((c & 0xc0) != 0) /* 01 and 10: extended label types, not for us */
			return DNS_NAME_MALFORMED;
		wire += (size_t)c + 1;
		if (wire > DNS_WIRE_NAME_MAX || pos + 1 + c > len)
			return DNS_NAME_MALFORMED;
		ok &= label_append(buf + pos + 1, c, out, &o);
		pos += 1 + (size_t)c;
	}
	out[o] = '\0';
	if (!ok) {
		out[0] = '\0';
		return DNS_NAME_ODD;
	}
	return DNS_NAME_OK;
}

int dns_name_decode(const uint8_t *buf, size_t len, size_t off, char *out, size_t *end)
{
	int r = name_walk(buf, len, off, out, end);
	if (r == DNS_NAME_MALFORMED)
		out[0] = '\0';
	return r;
}

/* Encodes name into wire labels at out; returns the length or -1. */
static int name_encode(uint8_t *out, size_t outsz, const char *name)
{
	size_t n = strlen(name), o = 0;
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n > DNS_NAME_MAX)
		return -1;
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && name[j] != '.') {
			if (!is_host_char((unsigned char)name[j]))
				return -1;
			j++;
		}
		size_t lab = j - i;
		if (lab == 0 || lab > DNS_LABEL_MAX || o + 1 + lab >= outsz)
			return -1;
		out[o++] = (uint8_t)lab;
		memcpy(out + o, name + i, lab);
		o += lab;
		i = j + 1;
		if (j < n && i == n) /* "a..": an empty label at the end */
			return -1;
	}
	if (o + 1 > outsz)
		return -1;
	out[o++] = 0;
	return (int)o;
}

int dns_msg_query_format(uint8_t *out, size_t outsz, uint16_t id, const char *name, uint16_t qtype)
{
	if (outsz < DNS_MSG_HEADER_LEN + 1 + 4)
		return -1;
	memset(out, 0, DNS_MSG_HEADER_LEN);
	put16(out, id);
	out[2] = 0x01; /* RD (RFC 1035 4.1.1): we ask a recursive server */
	put16(out + 4, 1);
	int n = name_encode(out + DNS_MSG_HEADER_LEN, outsz - DNS_MSG_HEADER_LEN - 4, name);
	if (n < 0)
		return -1;
	size_t o = DNS_MSG_HEADER_LEN + (size_t)n;
	put16(out + o, qtype);
	put16(out + o + 2, DNS_CLASS_IN);
	return (int)(o + 4);
}

/* Skips (or, for the first, records) the questions; returns 0 or -1. */
static int parse_questions(struct dns_msg *m)
{
	size_t off = DNS_MSG_HEADER_LEN;
	char name[DNS_NAME_BUFSZ];
	for (uint32_t i = 0; i < m->qdcount; i++) {
		size_t end = 0;
		int r = dns_name_decode(m->buf, m->len, off, name, &end);
		if (r == DNS_NAME_MALFORMED || end + 4 > m->len)
			return -1;
		if (i == 0) {
			m->qname_ok = r == DNS_NAME_OK;
			memcpy(m->qname, name, strlen(name) + 1);
			m->qtype = get16(m->buf + end);
			m->qclass = get16(m->buf + end + 2);
		}
		off = end + 4;
	}
	m->rr_off = off;
	return 0;
}

int dns_msg_parse(const uint8_t *buf, size_t len, struct dns_msg *out)
{
	memset(out, 0, sizeof *out);
	if (len < DNS_MSG_HEADER_LEN)
		return -1;
	out->buf = buf;
	out->len = len;
	out->id = get16(buf);
	out->qr = buf[2] >> 7;
	out->opcode = (buf[2] >> 3) & 0x0f;
	out->aa = (buf[2] >> 2) & 1;
	out->tc = (buf[2] >> 1) & 1;
	out->rd = buf[2] & 1;
	out->ra = buf[3] >> 7;
	out->rcode = buf[3] & 0x0f;
	out->qdcount = get16(buf + 4);
	out->ancount = get16(buf + 6);
	out->nscount = get16(buf + 8);
	out->arcount = get16(buf + 10);
	return parse_questions(out);
}

int dns_name_equal(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	if (na > 0 && a[na - 1] == '.')
		na--;
	if (nb > 0 && b[nb - 1] == '.')
		nb--;
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++)
		if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
			return 0;
	return 1;
}

int dns_msg_is_reply_to(const struct dns_msg *m, uint16_t id, const char *name, uint16_t qtype)
{
	return m->qr == 1 && m->opcode == 0 && m->id == id && m->qdcount == 1 && m->qname_ok &&
	       dns_name_equal(m->qname, name) && m->qtype == qtype && m->qclass == DNS_CLASS_IN;
}

void dns_rr_iter_init(struct dns_rr_iter *it, const struct dns_msg *m)
{
	it->m = m;
	it->off = m->rr_off;
	it->done = 0;
	it->total = (uint32_t)m->ancount + m->nscount + m->arcount;
}

static enum dns_section section_of(const struct dns_msg *m, uint32_t i)
{
	if (i < m->ancount)
		return DNS_SECTION_ANSWER;
	if (i < (uint32_t)m->ancount + m->nscount)
		return DNS_SECTION_AUTHORITY;
	return DNS_SECTION_ADDITIONAL;
}

int dns_rr_next(struct dns_rr_iter *it, struct dns_rr *rr)
{
	const struct dns_msg *m = it->m;
	if (it->done == UINT32_MAX)
		return -1;
	if (it->done >= it->total)
		return 0;
	size_t end = 0;
	int r = dns_name_decode(m->buf, m->len, it->off, rr->owner, &end);
	if (r == DNS_NAME_MALFORMED || end + DNS_RR_FIXED_LEN > m->len)
		goto malformed;
	rr->owner_ok = r == DNS_NAME_OK;
	rr->section = section_of(m, it->done);
	rr->type = get16(m->buf + end);
	rr->rclass = get16(m->buf + end + 2);
	rr->ttl = get32(m->buf + end + 4);
	rr->rdlen = get16(m->buf + end + 8);
	rr->rdata_off = end + DNS_RR_FIXED_LEN;
	if (rr->rdata_off + rr->rdlen > m->len)
		goto malformed;
	it->off = rr->rdata_off + rr->rdlen;
	it->done++;
	return 1;
malformed:
	it->done = UINT32_MAX;
	return -1;
}

/*
 * Decodes a name in the rdata: what is written in place must end exactly at
 * the end of the rdata; a pointer may lead anywhere before it in the message.
 */
static int rdata_name(const struct dns_msg *m, const struct dns_rr *rr, size_t off, char *name)
{
	size_t end = 0, stop = rr->rdata_off + rr->rdlen;
	if (off >= stop)
		return DNS_NAME_MALFORMED;
	int r = dns_name_decode(m->buf, m->len, off, name, &end);
	if (r == DNS_NAME_MALFORMED || end != stop) {
		name[0] = '\0';
		return DNS_NAME_MALFORMED;
	}
	return r;
}

int dns_rr_mx(const struct dns_msg *m, const struct dns_rr *rr, uint16_t *pref, char *name)
{
	name[0] = '\0';
	if (rr->type != DNS_TYPE_MX || rr->rdlen < 3)
		return DNS_NAME_MALFORMED;
	*pref = get16(m->buf + rr->rdata_off);
	return rdata_name(m, rr, rr->rdata_off + 2, name);
}

int dns_rr_cname(const struct dns_msg *m, const struct dns_rr *rr, char *name)
{
	name[0] = '\0';
	if (rr->type != DNS_TYPE_CNAME)
		return DNS_NAME_MALFORMED;
	return rdata_name(m, rr, rr->rdata_off, name);
}
