/*
 * nexthop: see nexthop.h. The rules are RFC 5321 5.1 (MX ordering, the
 * implicit MX, loops to ourselves) and RFC 7505 (null MX); the enhanced codes
 * are RFC 3463's (5.1.2 bad destination system, 5.1.10 null MX per RFC 7505
 * section 4.2, 5.4.4 unable to route, 5.4.6 routing loop, 4.4.3 directory
 * server failure).
 */
#include "deliver/nexthop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/strutil.h"

/* ---- MX records ---- */

void nexthop_mxlist_init(struct nexthop_mxlist *l)
{
	l->n = l->nnull = l->nodd = 0;
	l->rcode = 0;
}

/* 1 if a sorts before b: lower preference, then lower key. */
static int mx_before(unsigned pa, uint32_t ka, unsigned pb, uint32_t kb)
{
	return pa < pb || (pa == pb && ka < kb);
}

void nexthop_mxlist_add(struct nexthop_mxlist *l, unsigned pref, const char *name, uint32_t key)
{
	size_t len = strlen(name);
	if (len == 0) {
		l->nnull++;
		return;
	}
	if (len > NEXTHOP_NAME_MAX) {
		l->nodd++;
		return;
	}
	for (size_t i = 0; i < l->n; i++) {
		if (dns_name_equal(l->mx[i].name, name)) {
			if (pref < l->mx[i].pref)
				l->mx[i].pref = pref;
			return;
		}
	}
	size_t slot = l->n;
	if (l->n == NEXTHOP_MX_MAX) {
		/* Full: the new record displaces the worst one if it sorts before it. */
		slot = 0;
		for (size_t i = 1; i < l->n; i++)
			if (mx_before(l->mx[slot].pref, l->mx[slot].key, l->mx[i].pref,
			              l->mx[i].key))
				slot = i;
		if (!mx_before(pref, key, l->mx[slot].pref, l->mx[slot].key))
			return;
	} else {
		l->n++;
	}
	l->mx[slot].pref = pref;
	l->mx[slot].key = key;
	nexthop_name_copy(l->mx[slot].name, name, len);
}

/*
 * RFC 1034 3.6.2 / RFC 5321 5.1: a CNAME for the name means its records are
 * the target's; a resolver returns the chain in the answer section. Follows it
 * from qname into target; returns 0, or -1 if the message is malformed.
 */
static int cname_chain(const struct dns_msg *m, const char *qname, char *target)
{
	struct dns_rr_iter it;
	struct dns_rr rr;
	char next[DNS_NAME_BUFSZ];
	snprintf(target, DNS_NAME_BUFSZ, "%s", qname);
	for (int hop = 0; hop < NEXTHOP_CNAME_MAX; hop++) {
		int r = 0, moved = 0;
		dns_rr_iter_init(&it, m);
		while (!moved && (r = dns_rr_next(&it, &rr)) == 1 &&
		       rr.section == DNS_SECTION_ANSWER) {
			if (rr.type != DNS_TYPE_CNAME || rr.rclass != DNS_CLASS_IN ||
			    !rr.owner_ok || !dns_name_equal(rr.owner, target))
				continue;
			int nr = dns_rr_cname(m, &rr, next);
			if (nr == DNS_NAME_MALFORMED)
				return -1;
			if (nr == DNS_NAME_ODD || next[0] == '\0')
				return 0; /* no usable target: the chain ends here */
			memcpy(target, next, strlen(next) + 1);
			moved = 1;
		}
		if (r < 0)
			return -1;
		if (!moved)
			return 0;
	}
	return 0;
}

/* Adds the answer section's MX records owned by target; returns 0 or -1. */
static int collect_mx(const struct dns_msg *m, const char *target, struct nexthop_mxlist *l,
                      nexthop_rand_fn rnd, void *arg)
{
	struct dns_rr_iter it;
	struct dns_rr rr;
	char name[DNS_NAME_BUFSZ];
	uint16_t pref;
	int r;
	dns_rr_iter_init(&it, m);
	while ((r = dns_rr_next(&it, &rr)) == 1 && rr.section == DNS_SECTION_ANSWER) {
		if (rr.type != DNS_TYPE_MX || rr.rclass != DNS_CLASS_IN || !rr.owner_ok ||
		    !dns_name_equal(rr.owner, target))
			continue;
		int nr = dns_rr_mx(m, &rr, &pref, name);
		if (nr == DNS_NAME_MALFORMED)
			return -1;
		if (nr == DNS_NAME_ODD)
			l->nodd++;
		else
			nexthop_mxlist_add(l, pref, name, rnd ? rnd(arg) : 0);
	}
	return r < 0 ? -1 : 0;
}

enum nexthop_answer nexthop_mx_answer(const struct dns_msg *m, const char *qname,
                                      struct nexthop_mxlist *l, nexthop_rand_fn rnd, void *arg)
{
	char target[DNS_NAME_BUFSZ];
	nexthop_mxlist_init(l);
	l->rcode = m->rcode;
	if (m->rcode == DNS_RCODE_NXDOMAIN)
		return NEXTHOP_ANSWER_NXDOMAIN;
	if (m->rcode != DNS_RCODE_NOERROR)
		return NEXTHOP_ANSWER_RETRY;
	if (cname_chain(m, qname, target) < 0 || collect_mx(m, target, l, rnd, arg) < 0) {
		nexthop_mxlist_init(l);
		return NEXTHOP_ANSWER_MALFORMED;
	}
	if (l->n + l->nnull + l->nodd == 0)
		return NEXTHOP_ANSWER_NODATA;
	return NEXTHOP_ANSWER_RECORDS;
}

/* ---- results ---- */

void nexthop_result_init(struct nexthop_result *r, const char *dest)
{
	r->status = NEXTHOP_FOUND;
	r->enh = "";
	r->text[0] = '\0';
	size_t i = 0;
	for (; dest[i] && i + 1 < sizeof r->dest; i++) {
		unsigned char c = (unsigned char)dest[i];
		r->dest[i] = c > 0x20 && c < 0x7f ? (char)c : '?';
	}
	r->dest[i] = '\0';
	r->nhosts = 0;
}

void nexthop_result_fail(struct nexthop_result *r, enum nexthop_status status, const char *enh,
                         const char *fmt, ...)
{
	va_list ap;
	r->status = status;
	r->enh = enh;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof r->text, fmt, ap);
	va_end(ap);
	r->nhosts = 0;
}

static int is_self_name(const struct nexthop_self *self, const char *name)
{
	for (size_t i = 0; self && i < self->nnames; i++)
		if (self->names[i] && dns_name_equal(self->names[i], name))
			return 1;
	return 0;
}

static const char *rcode_name(int rcode)
{
	switch (rcode) {
	case DNS_RCODE_FORMERR: return "FORMERR";
	case DNS_RCODE_SERVFAIL: return "SERVFAIL";
	case DNS_RCODE_NOTIMP: return "NOTIMP";
	case DNS_RCODE_REFUSED: return "REFUSED";
	default: return "an error";
	}
}

static void add_planned(struct nexthop_result *out, const char *name, unsigned pref, unsigned port)
{
	struct nexthop_host *h = &out->hosts[out->nhosts++];
	memset(h, 0, sizeof *h);
	snprintf(h->name, sizeof h->name, "%s", name);
	h->pref = pref;
	h->port = port;
	h->from_mx = 1;
}

/* Sorts indices of l->mx by (preference, key): at most NEXTHOP_MX_MAX, insertion sort. */
static void mx_sorted(const struct nexthop_mxlist *l, size_t *idx)
{
	for (size_t i = 0; i < l->n; i++) {
		size_t j = i;
		while (j > 0 && mx_before(l->mx[i].pref, l->mx[i].key, l->mx[idx[j - 1]].pref,
		                          l->mx[idx[j - 1]].key)) {
			idx[j] = idx[j - 1];
			j--;
		}
		idx[j] = i;
	}
}

/* RFC 5321 5.1: MX hosts in order, cut at our own name. */
static void plan_records(const char *domain, unsigned port, const struct nexthop_mxlist *l,
                         const struct nexthop_self *self, struct nexthop_result *out)
{
	size_t idx[NEXTHOP_MX_MAX];
	if (l->n == 0) {
		if (l->nnull > 0)
			nexthop_result_fail(out, NEXTHOP_PERMFAIL, "5.1.10",
			                    "%s does not accept mail (null MX, RFC 7505)", domain);
		else
			nexthop_result_fail(out, NEXTHOP_PERMFAIL, "5.4.4",
			                    "no usable MX host for %s", domain);
		return;
	}
	mx_sorted(l, idx);
	size_t keep = l->n;
	for (size_t i = 0; i < l->n; i++) {
		if (is_self_name(self, l->mx[idx[i]].name)) {
			unsigned cut = l->mx[idx[i]].pref;
			keep = 0;
			while (keep < l->n && l->mx[idx[keep]].pref < cut)
				keep++;
			break;
		}
	}
	if (keep == 0) {
		nexthop_result_fail(out, NEXTHOP_PERMFAIL, "5.4.6",
		                    "mail for %s loops back to myself", domain);
		return;
	}
	for (size_t i = 0; i < keep && out->nhosts < NEXTHOP_HOSTS_MAX; i++)
		add_planned(out, l->mx[idx[i]].name, l->mx[idx[i]].pref, port);
}

void nexthop_mx_plan(const char *domain, unsigned port, enum nexthop_answer a,
                     const struct nexthop_mxlist *l, const struct nexthop_self *self,
                     struct nexthop_result *out)
{
	nexthop_result_init(out, domain);
	switch (a) {
	case NEXTHOP_ANSWER_NXDOMAIN:
		nexthop_result_fail(out, NEXTHOP_PERMFAIL, "5.1.2", "%s: no such domain (NXDOMAIN)",
		                    domain);
		return;
	case NEXTHOP_ANSWER_RETRY:
		nexthop_result_fail(out, NEXTHOP_TEMPFAIL, "4.4.3",
		                    "MX lookup of %s failed: %s from the name server", domain,
		                    rcode_name(l->rcode));
		return;
	case NEXTHOP_ANSWER_MALFORMED:
		nexthop_result_fail(out, NEXTHOP_TEMPFAIL, "4.4.3",
		                    "MX lookup of %s failed: malformed answer", domain);
		return;
	case NEXTHOP_ANSWER_NODATA:
		/* RFC 5321 5.1: no MX, the domain is its own MX with preference 0. */
		if (is_self_name(self, domain)) {
			nexthop_result_fail(out, NEXTHOP_PERMFAIL, "5.4.6",
			                    "mail for %s loops back to myself", domain);
			return;
		}
		add_planned(out, domain, 0, port);
		return;
	case NEXTHOP_ANSWER_RECORDS: plan_records(domain, port, l, self, out); return;
	}
}

static int addr_equal(const struct nexthop_addr *a, const struct nexthop_addr *b)
{
	size_t n = a->family == AF_INET ? 4 : 16;
	return a->family == b->family && a->port == b->port && memcmp(a->bytes, b->bytes, n) == 0;
}

int nexthop_host_add_addr(struct nexthop_host *h, int family, const void *bytes)
{
	struct nexthop_addr a;
	memset(&a, 0, sizeof a);
	if (family != AF_INET && family != AF_INET6)
		return -1;
	a.family = family;
	a.port = h->port;
	memcpy(a.bytes, bytes, family == AF_INET ? 4 : 16);
	for (size_t i = 0; i < h->naddrs; i++)
		if (addr_equal(&h->addrs[i], &a))
			return 0;
	if (h->naddrs == NEXTHOP_ADDRS_MAX)
		return -1;
	h->addrs[h->naddrs++] = a;
	return 0;
}

/* 1 if a (with its port) is one of ours; an IPv4-mapped IPv6 self address matches IPv4. */
static int is_self_addr(const struct nexthop_self *self, const struct nexthop_addr *a)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	for (size_t i = 0; self && i < self->naddrs; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&self->addrs[i].ss;
		const unsigned char *b = NULL;
		int fam = sa->sa_family, port = netaddr_port(sa);
		if (fam == AF_INET) {
			b = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		} else if (fam == AF_INET6) {
			b = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
			if (a->family == AF_INET && memcmp(b, mapped, 12) == 0) {
				fam = AF_INET;
				b += 12;
			}
		}
		if (!b || fam != a->family || (port != 0 && (unsigned)port != a->port))
			continue;
		if (memcmp(b, a->bytes, fam == AF_INET ? 4 : 16) == 0)
			return 1;
	}
	return 0;
}

static int host_is_self(const struct nexthop_self *self, const struct nexthop_host *h)
{
	for (size_t i = 0; i < h->naddrs; i++)
		if (is_self_addr(self, &h->addrs[i]))
			return 1;
	return 0;
}

/* Stable reorder: the preferred family first. */
static void order_families(struct nexthop_host *h, int prefer_ipv6)
{
	struct nexthop_addr tmp[NEXTHOP_ADDRS_MAX];
	size_t o = 0;
	int first = prefer_ipv6 ? AF_INET6 : AF_INET;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < h->naddrs; i++)
			if ((h->addrs[i].family == first) == (pass == 0))
				tmp[o++] = h->addrs[i];
	memcpy(h->addrs, tmp, o * sizeof tmp[0]);
}

void nexthop_finish(struct nexthop_result *r, const struct nexthop_self *self, int prefer_ipv6)
{
	if (r->status != NEXTHOP_FOUND)
		return;
	int looped = 0, temp = 0;
	unsigned cut = 0;
	for (size_t i = 0; i < r->nhosts; i++) {
		if (host_is_self(self, &r->hosts[i]) && (!looped || r->hosts[i].pref < cut)) {
			looped = 1;
			cut = r->hosts[i].pref;
		}
	}
	size_t o = 0;
	for (size_t i = 0; i < r->nhosts; i++) {
		struct nexthop_host *h = &r->hosts[i];
		if (looped && h->pref >= cut)
			continue;
		if (h->naddrs == 0) {
			temp |= h->tempfail;
			continue;
		}
		order_families(h, prefer_ipv6);
		if (o != i)
			r->hosts[o] = *h;
		o++;
	}
	r->nhosts = o;
	if (o > 0)
		return;
	if (looped)
		nexthop_result_fail(r, NEXTHOP_PERMFAIL, "5.4.6",
		                    "mail for %s loops back to myself", r->dest);
	else if (temp)
		nexthop_result_fail(r, NEXTHOP_TEMPFAIL, "4.4.3",
		                    "address lookup for %s failed temporarily", r->dest);
	else
		nexthop_result_fail(r, NEXTHOP_PERMFAIL, "5.4.4",
		                    "no address (A/AAAA) for any mail host of %s", r->dest);
}

void nexthop_result_soften(struct nexthop_result *r)
{
	char text[NEXTHOP_TEXT_MAX];
	if (r->status != NEXTHOP_PERMFAIL || strcmp(r->enh, "5.4.6") == 0)
		return;
	snprintf(text, sizeof text, "%s", r->text);
	nexthop_result_fail(r, NEXTHOP_TEMPFAIL, "4.4.4",
	                    "%.300s (check relay_route/relay_smarthost)", text);
}

void nexthop_merge(struct nexthop_result *out, const struct nexthop_result *const *parts, size_t n)
{
	const struct nexthop_result *fail = NULL;
	out->nhosts = 0;
	for (size_t i = 0; i < n; i++) {
		const struct nexthop_result *p = parts[i];
		if (p->status != NEXTHOP_FOUND) {
			if (!fail ||
			    (p->status == NEXTHOP_TEMPFAIL && fail->status != NEXTHOP_TEMPFAIL))
				fail = p;
			continue;
		}
		for (size_t j = 0; j < p->nhosts && out->nhosts < NEXTHOP_HOSTS_MAX; j++)
			out->hosts[out->nhosts++] = p->hosts[j];
	}
	if (out->nhosts > 0) {
		out->status = NEXTHOP_FOUND;
		out->enh = "";
		out->text[0] = '\0';
	} else if (fail) {
		out->status = fail->status;
		out->enh = fail->enh;
		snprintf(out->text, sizeof out->text, "%s", fail->text);
	} else {
		nexthop_result_fail(out, NEXTHOP_TEMPFAIL, "4.4.4", "no host to deliver to for %s",
		                    out->dest);
	}
}
