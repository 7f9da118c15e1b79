/*
 * dns_build: builds DNS messages by hand for the unit tests of proto/dns_msg
 * and deliver/nexthop, independently of the code under test. Names are
 * written "a.b.c"; a label "^N" is a compression pointer to offset N and ends
 * the name; "." or "" is the root. Raw octets go in with dnsb_raw. Everything
 * is bounded by the buffer; overflow sets `bad` (a test bug, checked).
 */
#ifndef SHAREMAIL_TEST_DNS_BUILD_H
#define SHAREMAIL_TEST_DNS_BUILD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct dnsb {
	uint8_t buf[4096];
	size_t len;
	int bad;
};

static inline void dnsb_raw(struct dnsb *b, const void *p, size_t n)
{
	if (b->len + n > sizeof b->buf) {
		b->bad = 1;
		return;
	}
	memcpy(b->buf + b->len, p, n);
	b->len += n;
}

static inline void dnsb_u8(struct dnsb *b, unsigned v)
{
	uint8_t c = (uint8_t)v;
	dnsb_raw(b, &c, 1);
}

static inline void dnsb_u16(struct dnsb *b, unsigned v)
{
	dnsb_u8(b, v >> 8);
	dnsb_u8(b, v);
}

static inline void dnsb_u32(struct dnsb *b, uint32_t v)
{
	dnsb_u16(b, v >> 16);
	dnsb_u16(b, v & 0xffff);
}

/* Header: id, flags (QR, opcode, AA, TC, RD | RA, rcode as in RFC 1035 4.1.1), counts. */
static inline void dnsb_header(struct dnsb *b, unsigned id, unsigned flags, unsigned qd,
                               unsigned an, unsigned ns, unsigned ar)
{
	b->len = 0;
	b->bad = 0;
	dnsb_u16(b, id);
	dnsb_u16(b, flags);
	dnsb_u16(b, qd);
	dnsb_u16(b, an);
	dnsb_u16(b, ns);
	dnsb_u16(b, ar);
}

static inline void dnsb_name(struct dnsb *b, const char *name)
{
	const char *p = name;
	if (strcmp(name, ".") == 0)
		p = "";
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if (p[0] == '^') {
			unsigned off = (unsigned)strtoul(p + 1, NULL, 10);
			dnsb_u16(b, 0xc000 | off);
			return;
		}
		dnsb_u8(b, (unsigned)n);
		dnsb_raw(b, p, n);
		p += n;
		if (*p == '.')
			p++;
	}
	dnsb_u8(b, 0);
}

static inline void dnsb_question(struct dnsb *b, const char *name, unsigned type)
{
	dnsb_name(b, name);
	dnsb_u16(b, type);
	dnsb_u16(b, 1);
}

/* Starts a record; returns where its RDLENGTH goes (dnsb_rr_end fills it). */
static inline size_t dnsb_rr_begin(struct dnsb *b, const char *owner, unsigned type)
{
	dnsb_name(b, owner);
	dnsb_u16(b, type);
	dnsb_u16(b, 1);
	dnsb_u32(b, 300);
	size_t at = b->len;
	dnsb_u16(b, 0);
	return at;
}

static inline void dnsb_rr_end(struct dnsb *b, size_t at)
{
	size_t n = b->len - at - 2;
	if (at + 2 > b->len) {
		b->bad = 1;
		return;
	}
	b->buf[at] = (uint8_t)(n >> 8);
	b->buf[at + 1] = (uint8_t)n;
}

static inline void dnsb_mx(struct dnsb *b, const char *owner, unsigned pref, const char *exch)
{
	size_t at = dnsb_rr_begin(b, owner, 15);
	dnsb_u16(b, pref);
	dnsb_name(b, exch);
	dnsb_rr_end(b, at);
}

static inline void dnsb_cname(struct dnsb *b, const char *owner, const char *target)
{
	size_t at = dnsb_rr_begin(b, owner, 5);
	dnsb_name(b, target);
	dnsb_rr_end(b, at);
}

static inline void dnsb_a(struct dnsb *b, const char *owner, unsigned a, unsigned b2, unsigned c,
                          unsigned d)
{
	size_t at = dnsb_rr_begin(b, owner, 1);
	dnsb_u8(b, a);
	dnsb_u8(b, b2);
	dnsb_u8(b, c);
	dnsb_u8(b, d);
	dnsb_rr_end(b, at);
}

/* Flags of a reply: QR, RD, RA and the rcode. */
#define DNSB_REPLY(rcode) (0x8180u | (rcode))

#endif
