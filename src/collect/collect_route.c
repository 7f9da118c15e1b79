/*
 * collect_route: see collect_route.h. Each rule is one pass over the header
 * section (a message has a few dozen fields; the passes cost less than the
 * copy the collector makes of the message).
 */
#include "collect/collect_route.h"

#include <string.h>

#include "proto/rfc5322.h"
#include "proto/rfc5322_addr.h"
#include "proto/received.h"

#define ADDR_BUF 1024 /* one addr-spec as the iterator writes it; longer ones are not mailboxes */

struct route {
	const struct collect_route_conf *c;
	const char *hdr;
	size_t len;
	struct collect_route_result *r;
};

static const char *const default_headers[] = {"X-Rcpt-To",    "X-MDRcpt-To", "X-Original-To",
                                              "Delivered-To", "Envelope-To", "X-Envelope-To"};

void collect_route_conf_defaults(struct collect_route_conf *c)
{
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < sizeof default_headers / sizeof default_headers[0]; i++)
		c->headers[c->n_headers++] = default_headers[i];
	c->parse_received = 1;
	c->parse_to_cc = 1;
}

static int is_sep(char ch)
{
	return ch == ' ' || ch == '\t' || ch == ',';
}

int collect_route_conf_headers(struct collect_route_conf *c, char *list)
{
	size_t n = 0;
	char *p = list;
	while (*p) {
		while (is_sep(*p))
			*p++ = '\0';
		if (!*p)
			break;
		char *name = p;
		for (; *p && !is_sep(*p); p++)
			if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e || *p == ':')
				return -1; /* RFC 5322 2.2: ftext */
		if (n >= COLLECT_ROUTE_HEADERS_MAX)
			return -1;
		c->headers[n++] = name;
	}
	c->n_headers = n;
	return (int)n;
}

int collect_route_next_field(const char *hdr, size_t len, size_t *pos, struct rfc5322_field *f)
{
	int r;
	while ((r = rfc5322_next_field(hdr, len, pos, f)) < 0) {
		const char *lf = memchr(hdr + *pos, '\n', len - *pos);
		if (lf == NULL)
			return 0;
		*pos = (size_t)(lf - hdr) + 1;
	}
	return r;
}

/* An address named by the rule being tried: a recipient when it is a mailbox of ours. */
static void candidate(struct route *rt, const char *addr, size_t addr_len)
{
	struct collect_route_result *r = rt->r;
	struct mailaddr a;
	char key[MAILADDR_MAX + 1];
	if (mailaddr_parse_exact(addr, addr_len, &a) != MAILADDR_OK ||
	    mailaddr_key(&a, key, sizeof key) < 0)
		return;
	for (size_t i = 0; i < r->n_rcpts; i++)
		if (strcmp(r->rcpts[i], key) == 0)
			return;
	/* addr is NUL-terminated after addr_len and holds no NUL (mailaddr refuses controls) */
	if (rt->c->is_local == NULL || !rt->c->is_local(rt->c->is_local_arg, addr, a.domain)) {
		r->foreign++;
		return;
	}
	if (r->n_rcpts >= COLLECT_ROUTE_RCPTS_MAX) {
		r->dropped++;
		return;
	}
	memcpy(r->rcpts[r->n_rcpts++], key, strlen(key) + 1);
}

/* Every mailbox of an address-list field; the ones before a fault count. */
static void address_field(struct route *rt, const struct rfc5322_field *f)
{
	struct rfc5322_addr_iter it;
	struct rfc5322_mailbox m;
	char buf[ADDR_BUF];
	enum rfc5322_addr_result res;
	rfc5322_addr_iter_init(&it, f->value, f->value_len);
	while ((res = rfc5322_addr_next(&it, buf, sizeof buf, &m)) != RFC5322_ADDR_END) {
		if (res == RFC5322_ADDR_BAD) {
			rt->r->malformed++;
			return;
		}
		if (res == RFC5322_ADDR_MAILBOX)
			candidate(rt, m.addr, m.addr_len);
	}
}

/* Rule 1 for one name: its topmost field and the same-name fields right after it. */
static void header_rule(struct route *rt, const char *name)
{
	size_t pos = 0;
	struct rfc5322_field f;
	int reading = 0;
	while (collect_route_next_field(rt->hdr, rt->len, &pos, &f) == 1) {
		if (rfc5322_field_is(&f, name)) {
			reading = 1;
			address_field(rt, &f);
		} else if (reading) {
			return; /* the run ended: lower fields of that name are an earlier hop's */
		}
	}
}

/* Rule 2: the for clause of the ISP's Received field (see collect_route.h). */
static void received_rule(struct route *rt)
{
	const char *want = rt->c->received_by;
	size_t pos = 0;
	struct rfc5322_field f;
	struct received_info ri;
	while (collect_route_next_field(rt->hdr, rt->len, &pos, &f) == 1) {
		if (!rfc5322_field_is(&f, "Received"))
			continue;
		if (received_parse(f.value, f.value_len, &ri) != 0) {
			/* It may be the ISP's own, made unreadable by a client's HELO: trying
			 * the ones below would let a sender's forged field decide. */
			rt->r->malformed++;
			return;
		}
		if (want && *want &&
		    (ri.by == NULL || !received_by_matches(ri.by, ri.by_len, want)))
			continue;
		if (ri.for_addr && ri.for_len <= MAILADDR_MAX) {
			char addr[MAILADDR_MAX + 1];
			memcpy(addr, ri.for_addr, ri.for_len);
			addr[ri.for_len] = '\0';
			candidate(rt, addr, ri.for_len);
		}
		return; /* only this one field, for clause or not */
	}
}

/* Rule 3: everyone named in the recipient fields of RFC 5322 3.6.3 and 3.6.6. */
static void to_cc_rule(struct route *rt)
{
	static const char *const names[] = {"To",        "Cc",        "Bcc",
	                                    "Resent-To", "Resent-Cc", "Resent-Bcc"};
	size_t pos = 0;
	struct rfc5322_field f;
	while (collect_route_next_field(rt->hdr, rt->len, &pos, &f) == 1)
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
			if (rfc5322_field_is(&f, names[i]))
				address_field(rt, &f);
}

/* 1 if the rule just tried named a local recipient (it decides); else forget its counts. */
static int decided(struct route *rt, enum collect_route_rule rule, const char *header)
{
	if (rt->r->n_rcpts == 0 && rt->r->dropped == 0) {
		rt->r->foreign = 0;
		return 0;
	}
	rt->r->rule = rule;
	rt->r->header = header;
	return 1;
}

enum collect_route_rule collect_route(const struct collect_route_conf *c, const char *hdr,
                                      size_t len, struct collect_route_result *r)
{
	struct route rt = {c, hdr, len, r};
	r->rule = COLLECT_ROUTE_NONE;
	r->header = NULL;
	r->n_rcpts = r->dropped = r->foreign = r->malformed = 0;
	for (size_t i = 0; i < c->n_headers && i < COLLECT_ROUTE_HEADERS_MAX; i++) {
		header_rule(&rt, c->headers[i]);
		if (decided(&rt, COLLECT_ROUTE_HEADER, c->headers[i]))
			return r->rule;
	}
	if (c->parse_received) {
		received_rule(&rt);
		if (decided(&rt, COLLECT_ROUTE_RECEIVED, "Received"))
			return r->rule;
	}
	if (c->parse_to_cc) {
		to_cc_rule(&rt);
		if (decided(&rt, COLLECT_ROUTE_TO_CC, "To/Cc"))
			return r->rule;
	}
	return COLLECT_ROUTE_NONE;
}

const char *collect_route_rule_name(enum collect_route_rule rule)
{
	switch (rule) {
	case COLLECT_ROUTE_HEADER: return "header";
	case COLLECT_ROUTE_RECEIVED: return "received";
	case COLLECT_ROUTE_TO_CC: return "to-cc";
	case COLLECT_ROUTE_NONE: break;
	}
	return "none";
}
