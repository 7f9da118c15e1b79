/*
 * nexthop_resolver: see nexthop_resolver.h. A request has one part per route
 * host (one for a recipient domain). A part goes MX question (KIND_MX only) ->
 * plan (nexthop_mx_plan) -> A/AAAA of every planned host -> nexthop_finish;
 * when every part is done the parts are merged and reported.
 *
 * libevent documents no way to withdraw an evdns callback (what
 * evdns_cancel_request does with it is unspecified; it may still run, later),
 * but it does promise exactly one callback per lookup, DNS_ERR_SHUTDOWN when
 * the evdns_base is freed with fail_requests. So each A/AAAA lookup has a
 * small context that outlives its request: cancelling a request only detaches
 * the contexts (the lookups finish unobserved), and each context frees itself
 * in its callback.
 */
#include "deliver/nexthop_resolver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "deliver/dns_query.h"
#include "util/strutil.h"

#define RESOLV_CONF_DEFAULT "/etc/resolv.conf"
#define NAMESERVERS_MAX 16

struct nexthop_request;

/* One evdns A or AAAA lookup. */
struct addr_lookup {
	struct nexthop_request *req; /* NULL once the request is gone */
	struct addr_lookup *prev, *next; /* the request's outstanding lookups */
	size_t part, host;
	int family; /* AF_INET: A, AF_INET6: AAAA */
};

struct part {
	struct nexthop_request *req;
	struct nexthop_spec spec;
	int configured; /* a route host: nexthop_result_soften applies */
	int done;
	size_t pending; /* A/AAAA lookups under way */
	struct dns_query *mx; /* the MX question under way */
	struct nexthop_result res;
};

struct nexthop_request {
	struct nexthop_resolver *r;
	struct nexthop_request *prev, *next; /* the resolver's list */
	nexthop_resolver_cb cb;
	void *arg;
	int starting; /* inside nexthop_resolver_*: never call back from there */
	int in_callback;
	struct event *deadline;
	struct event *kick; /* reports a result reached without waiting */
	struct addr_lookup *lookups; /* outstanding evdns lookups */
	size_t nparts;
	struct part *parts;
	struct nexthop_result out;
};

struct nexthop_resolver {
	struct event_base *base;
	struct evdns_base *evdns;
	struct netaddr servers[NAMESERVERS_MAX];
	size_t nservers;
	unsigned timeout_ms, attempts, deadline_ms;
	int families, prefer_ipv6;
	char **names;
	struct netaddr *addrs;
	struct nexthop_self self;
	nexthop_rand_fn rnd;
	void *rnd_arg;
	struct nexthop_request *requests;
};

void nexthop_resolver_params_init(struct nexthop_resolver_params *p)
{
	memset(p, 0, sizeof *p);
	p->timeout_ms = 5000;
	p->attempts = 2;
	p->deadline_ms = 60000;
	p->families = NEXTHOP_FAMILY_IPV4 | NEXTHOP_FAMILY_IPV6;
}

static uint32_t secure_rand(void *arg)
{
	uint32_t v;
	evutil_secure_rng_get_bytes(&v, sizeof v);
	return v;
}

static void set_err(char *err, size_t errlen, const char *msg, const char *detail)
{
	if (err && errlen)
		snprintf(err, errlen, "%s%s", msg, detail ? detail : "");
}

/* evdns options: our per-try timeout and tries, whatever resolv.conf said. */
static int evdns_configure(struct nexthop_resolver *r)
{
	char v[32];
	snprintf(v, sizeof v, "%u.%03u", r->timeout_ms / 1000, r->timeout_ms % 1000);
	if (evdns_base_set_option(r->evdns, "timeout", v) < 0)
		return -1;
	snprintf(v, sizeof v, "%u", r->attempts);
	return evdns_base_set_option(r->evdns, "attempts", v);
}

/* The name servers: the caller's, or resolv.conf's (read by evdns, copied back for MX). */
static int servers_setup(struct nexthop_resolver *r, const struct nexthop_resolver_params *p,
                         char *err, size_t errlen)
{
	if (p->nnameservers > 0) {
		for (size_t i = 0; i < p->nnameservers && r->nservers < NAMESERVERS_MAX; i++) {
			const struct netaddr *ns = &p->nameservers[i];
			if (evdns_base_nameserver_sockaddr_add(
			            r->evdns, (const struct sockaddr *)&ns->ss, ns->len, 0) != 0) {
				set_err(err, errlen, "evdns refused a name server", NULL);
				return -1;
			}
			r->servers[r->nservers++] = *ns;
		}
		return 0;
	}
	const char *path = p->resolv_conf ? p->resolv_conf : RESOLV_CONF_DEFAULT;
	int rc = evdns_base_resolv_conf_parse(
	        r->evdns,
	        DNS_OPTION_NAMESERVERS | DNS_OPTION_MISC | DNS_OPTION_NAMESERVERS_NO_DEFAULT, path);
	int n = evdns_base_count_nameservers(r->evdns);
	if (rc != 0 || n <= 0) {
		set_err(err, errlen, rc == 1 ? "cannot read " : "no usable name server in ", path);
		return -1;
	}
	for (int i = 0; i < n && r->nservers < NAMESERVERS_MAX; i++) {
		struct netaddr *ns = &r->servers[r->nservers];
		int len = evdns_base_get_nameserver_addr(r->evdns, i, (struct sockaddr *)&ns->ss,
		                                         sizeof ns->ss);
		if (len > 0 && (size_t)len <= sizeof ns->ss) {
			ns->len = (socklen_t)len;
			r->nservers++;
		}
	}
	return r->nservers > 0 ? 0 : -1;
}

static int self_copy(struct nexthop_resolver *r, const struct nexthop_self *s)
{
	if (s->nnames) {
		r->names = calloc(s->nnames, sizeof *r->names);
		if (!r->names)
			return -1;
		for (size_t i = 0; i < s->nnames; i++) {
			r->names[i] = strdup(s->names[i] ? s->names[i] : "");
			if (!r->names[i])
				return -1;
			r->self.nnames = i + 1;
		}
	}
	if (s->naddrs) {
		r->addrs = calloc(s->naddrs, sizeof *r->addrs);
		if (!r->addrs)
			return -1;
		memcpy(r->addrs, s->addrs, s->naddrs * sizeof *r->addrs);
		r->self.naddrs = s->naddrs;
	}
	r->self.names = (const char *const *)r->names;
	r->self.addrs = r->addrs;
	return 0;
}

struct nexthop_resolver *nexthop_resolver_new(struct event_base *base,
                                              const struct nexthop_resolver_params *p, char *err,
                                              size_t errlen)
{
	struct nexthop_resolver *r = calloc(1, sizeof *r);
	if (!r) {
		set_err(err, errlen, "out of memory", NULL);
		return NULL;
	}
	r->base = base;
	r->timeout_ms = p->timeout_ms ? p->timeout_ms : 5000;
	r->attempts = p->attempts ? p->attempts : 1;
	r->deadline_ms = p->deadline_ms ? p->deadline_ms : 60000;
	r->families = p->families & (NEXTHOP_FAMILY_IPV4 | NEXTHOP_FAMILY_IPV6);
	if (!r->families)
		r->families = NEXTHOP_FAMILY_IPV4 | NEXTHOP_FAMILY_IPV6;
	r->prefer_ipv6 = p->prefer_ipv6;
	r->rnd = p->rnd ? p->rnd : secure_rand;
	r->rnd_arg = p->rnd_arg;
	/* No resolv.conf parsing here, no default server: servers_setup decides. */
	r->evdns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!r->evdns) {
		set_err(err, errlen, "evdns_base_new failed", NULL);
		goto fail;
	}
	if (servers_setup(r, p, err, errlen) < 0 || evdns_configure(r) < 0)
		goto fail;
	if (self_copy(r, &p->self) < 0) {
		set_err(err, errlen, "out of memory", NULL);
		goto fail;
	}
	return r;
fail:
	nexthop_resolver_free(r);
	return NULL;
}

/* ---- requests ---- */

static void check_done(struct nexthop_request *q);

static void lookup_link(struct nexthop_request *q, struct addr_lookup *l)
{
	l->prev = NULL;
	l->next = q->lookups;
	if (q->lookups)
		q->lookups->prev = l;
	q->lookups = l;
}

static void lookup_unlink(struct nexthop_request *q, struct addr_lookup *l)
{
	if (l->prev)
		l->prev->next = l->next;
	else
		q->lookups = l->next;
	if (l->next)
		l->next->prev = l->prev;
	l->prev = l->next = NULL;
}

/* Detaches every outstanding lookup; each frees itself when evdns calls back. */
static void lookups_detach(struct nexthop_request *q, int mark_tempfail)
{
	struct addr_lookup *l = q->lookups, *next;
	for (; l; l = next) {
		next = l->next;
		if (mark_tempfail)
			q->parts[l->part].res.hosts[l->host].tempfail = 1;
		l->req = NULL;
		l->prev = l->next = NULL;
	}
	q->lookups = NULL;
}

static void request_free(struct nexthop_request *q)
{
	lookups_detach(q, 0);
	for (size_t i = 0; i < q->nparts; i++)
		dns_query_cancel(q->parts[i].mx);
	if (q->deadline)
		event_free(q->deadline);
	if (q->kick)
		event_free(q->kick);
	free(q->parts);
	free(q);
}

static void request_unlink(struct nexthop_request *q)
{
	struct nexthop_resolver *r = q->r;
	if (!r)
		return;
	if (q->prev)
		q->prev->next = q->next;
	else
		r->requests = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
	q->r = NULL;
}

/* Merges the parts and calls back; q is freed afterwards. */
static void deliver(struct nexthop_request *q)
{
	const struct nexthop_result *v[NEXTHOP_SPECS_MAX];
	for (size_t i = 0; i < q->nparts; i++)
		v[i] = &q->parts[i].res;
	nexthop_merge(&q->out, v, q->nparts);
	request_unlink(q); /* from here on the resolver may even be freed by the callback */
	q->in_callback = 1;
	q->cb(q->arg, &q->out);
	request_free(q);
}

static void part_complete(struct nexthop_request *q, struct part *p)
{
	p->done = 1;
	nexthop_finish(&p->res, &q->r->self, q->r->prefer_ipv6);
	if (p->configured)
		nexthop_result_soften(&p->res);
}

static void check_done(struct nexthop_request *q)
{
	for (size_t i = 0; i < q->nparts; i++)
		if (!q->parts[i].done)
			return;
	if (q->starting)
		event_active(q->kick, EV_TIMEOUT, 1); /* never call back from the caller's call */
	else
		deliver(q);
}

static void addr_cb(int result, char type, int count, int ttl, void *addresses, void *arg)
{
	struct addr_lookup *l = arg;
	struct nexthop_request *q = l->req;
	if (!q) {
		free(l);
		return;
	}
	lookup_unlink(q, l);
	struct part *p = &q->parts[l->part];
	struct nexthop_host *h = &p->res.hosts[l->host];
	int family = l->family;
	free(l);
	if (result == DNS_ERR_NONE && addresses &&
	    type == (family == AF_INET ? DNS_IPv4_A : DNS_IPv6_AAAA)) {
		size_t size = family == AF_INET ? 4 : 16;
		for (int i = 0; i < count; i++)
			nexthop_host_add_addr(h, family,
			                      (const unsigned char *)addresses + i * size);
	} else if (result != DNS_ERR_NONE && result != DNS_ERR_NOTEXIST &&
	           result != DNS_ERR_NODATA) {
		h->tempfail = 1; /* SERVFAIL, timeout, truncated, ...: may work later */
	}
	if (--p->pending == 0) {
		part_complete(q, p);
		check_done(q);
	}
}

/* Asks evdns for one family of one host; on failure to ask, the host is marked tempfail. */
static void lookup_start(struct nexthop_request *q, size_t part, size_t host, int family)
{
	struct part *p = &q->parts[part];
	struct nexthop_host *h = &p->res.hosts[host];
	struct addr_lookup *l = calloc(1, sizeof *l);
	if (!l) {
		h->tempfail = 1;
		return;
	}
	l->req = q;
	l->part = part;
	l->host = host;
	l->family = family;
	lookup_link(q, l);
	p->pending++;
	struct evdns_base *evdns = q->r->evdns;
	struct evdns_request *er =
	        family == AF_INET
	                ? evdns_base_resolve_ipv4(evdns, h->name, DNS_QUERY_NO_SEARCH, addr_cb, l)
	                : evdns_base_resolve_ipv6(evdns, h->name, DNS_QUERY_NO_SEARCH, addr_cb, l);
	if (!er) {
		lookup_unlink(q, l);
		free(l);
		p->pending--;
		h->tempfail = 1;
	}
}

/* The A/AAAA lookups of every planned host of p; completes p when none is under way. */
static void lookups_start(struct nexthop_request *q, struct part *p)
{
	size_t part = (size_t)(p - q->parts);
	for (size_t i = 0; i < p->res.nhosts; i++) {
		if (q->r->families & NEXTHOP_FAMILY_IPV4)
			lookup_start(q, part, i, AF_INET);
		if (q->r->families & NEXTHOP_FAMILY_IPV6)
			lookup_start(q, part, i, AF_INET6);
	}
	if (p->pending == 0)
		part_complete(q, p);
}

static void mx_cb(void *arg, enum dns_query_status st, int rcode, const struct dns_msg *m)
{
	struct part *p = arg;
	struct nexthop_request *q = p->req;
	struct nexthop_resolver *r = q->r;
	struct nexthop_mxlist list;
	p->mx = NULL; /* dns_query frees itself after this call */
	nexthop_mxlist_init(&list);
	switch (st) {
	case DNS_QUERY_ANSWER: {
		enum nexthop_answer a =
		        nexthop_mx_answer(m, p->spec.host, &list, r->rnd, r->rnd_arg);
		nexthop_mx_plan(p->spec.host, p->spec.port, a, &list, &r->self, &p->res);
		break;
	}
	case DNS_QUERY_SERVER_ERROR:
		list.rcode = rcode;
		nexthop_mx_plan(p->spec.host, p->spec.port, NEXTHOP_ANSWER_RETRY, &list, &r->self,
		                &p->res);
		break;
	case DNS_QUERY_TIMEOUT:
		nexthop_result_fail(&p->res, NEXTHOP_TEMPFAIL, "4.4.3", "MX lookup of %s timed out",
		                    p->spec.host);
		break;
	case DNS_QUERY_LOCAL_ERROR:
		nexthop_result_fail(&p->res, NEXTHOP_TEMPFAIL, "4.4.3",
		                    "MX lookup of %s could not be sent", p->spec.host);
		break;
	}
	if (p->res.status == NEXTHOP_FOUND)
		lookups_start(q, p);
	else
		part_complete(q, p);
	check_done(q);
}

static void part_start(struct nexthop_request *q, struct part *p)
{
	struct nexthop_resolver *r = q->r;
	const struct nexthop_spec *s = &p->spec;
	char dest[NEXTHOP_NAME_MAX + 3];
	if (s->kind == NEXTHOP_KIND_MX) {
		nexthop_result_init(&p->res, s->host);
		if (!nexthop_name_valid(s->host, strlen(s->host))) {
			nexthop_result_fail(&p->res, NEXTHOP_PERMFAIL, "5.1.2",
			                    "bad domain name %s", p->res.dest);
			part_complete(q, p);
			return;
		}
		p->mx = dns_query_start(r->base, r->servers, r->nservers, r->timeout_ms,
		                        r->attempts, s->host, DNS_TYPE_MX, mx_cb, p);
		if (!p->mx) {
			nexthop_result_fail(&p->res, NEXTHOP_TEMPFAIL, "4.3.0", "out of memory");
			part_complete(q, p);
		}
		return;
	}
	snprintf(dest, sizeof dest, "[%s]", s->host);
	nexthop_result_init(&p->res, dest);
	struct nexthop_host *h = &p->res.hosts[p->res.nhosts++];
	memset(h, 0, sizeof *h);
	snprintf(h->name, sizeof h->name, "%s", s->host);
	h->port = s->port;
	if (s->kind == NEXTHOP_KIND_ADDR) {
		nexthop_host_add_addr(h, s->addr.family, s->addr.bytes);
		part_complete(q, p);
		return;
	}
	lookups_start(q, p);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nexthop_request *q = arg;
	lookups_detach(q, 1);
	for (size_t i = 0; i < q->nparts; i++) {
		struct part *p = &q->parts[i];
		if (p->done)
			continue;
		if (p->mx) {
			dns_query_cancel(p->mx);
			p->mx = NULL;
			nexthop_result_fail(&p->res, NEXTHOP_TEMPFAIL, "4.4.3",
			                    "DNS lookup of %s timed out", p->res.dest);
		}
		p->pending = 0;
		part_complete(q, p);
	}
	deliver(q);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	deliver(arg);
}

static struct nexthop_request *request_start(struct nexthop_resolver *r, const char *dest,
                                             const struct nexthop_spec *specs, size_t n,
                                             int configured, nexthop_resolver_cb cb, void *arg)
{
	if (n > NEXTHOP_SPECS_MAX)
		n = NEXTHOP_SPECS_MAX;
	struct nexthop_request *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->parts = n ? calloc(n, sizeof *q->parts) : NULL;
	q->deadline = evtimer_new(r->base, deadline_cb, q);
	q->kick = event_new(r->base, -1, 0, kick_cb, q);
	if ((n && !q->parts) || !q->deadline || !q->kick) {
		request_free(q);
		return NULL;
	}
	q->r = r;
	q->cb = cb;
	q->arg = arg;
	q->nparts = n;
	q->next = r->requests;
	if (r->requests)
		r->requests->prev = q;
	r->requests = q;
	nexthop_result_init(&q->out, dest);
	struct timeval tv = {r->deadline_ms / 1000, (r->deadline_ms % 1000) * 1000};
	evtimer_add(q->deadline, &tv);
	q->starting = 1;
	for (size_t i = 0; i < n; i++) {
		q->parts[i].spec = specs[i];
		q->parts[i].configured = configured;
		q->parts[i].req = q;
	}
	for (size_t i = 0; i < n; i++)
		part_start(q, &q->parts[i]);
	check_done(q);
	q->starting = 0;
	return q;
}

struct nexthop_request *nexthop_resolver_domain(struct nexthop_resolver *r, const char *domain,
                                                nexthop_resolver_cb cb, void *arg)
{
	struct nexthop_spec spec;
	size_t len = strlen(domain);
	memset(&spec, 0, sizeof spec);
	if (len > 0 && domain[0] == '[') {
		/* RFC 5321 4.1.3 address literal: no DNS; a name in brackets is not one. */
		if (domain[len - 1] != ']' || nexthop_spec_parse(domain, len, &spec, NULL, 0) < 0 ||
		    spec.kind != NEXTHOP_KIND_ADDR) {
			memset(&spec, 0, sizeof spec);
			spec.kind = NEXTHOP_KIND_MX; /* host "": refused as a bad domain */
		}
	} else {
		spec.kind = NEXTHOP_KIND_MX;
		spec.port = NEXTHOP_PORT_SMTP;
		if (len <= NEXTHOP_NAME_MAX + 1) {
			for (size_t i = 0; i < len; i++)
				spec.host[i] = (char)ascii_lower((unsigned char)domain[i]);
			if (len > 0 && spec.host[len - 1] == '.')
				spec.host[len - 1] = '\0';
		}
	}
	return request_start(r, domain, &spec, 1, 0, cb, arg);
}

struct nexthop_request *nexthop_resolver_route(struct nexthop_resolver *r, const char *dest,
                                               const struct nexthop_spec *specs, size_t n,
                                               nexthop_resolver_cb cb, void *arg)
{
	return request_start(r, dest, specs, n, 1, cb, arg);
}

void nexthop_request_cancel(struct nexthop_request *q)
{
	if (!q || q->in_callback)
		return;
	request_unlink(q);
	request_free(q);
}

void nexthop_resolver_free(struct nexthop_resolver *r)
{
	if (!r)
		return;
	while (r->requests)
		nexthop_request_cancel(r->requests);
	if (r->evdns)
		evdns_base_free(r->evdns, 1);
	for (size_t i = 0; i < r->self.nnames; i++)
		free(r->names[i]);
	free(r->names);
	free(r->addrs);
	free(r);
}
