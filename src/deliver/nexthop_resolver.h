/*
 * nexthop_resolver: asynchronous next-hop resolution on the caller's
 * event_base: a recipient domain (MX, else the domain itself) or a configured
 * route (relay_route / relay_smarthost hosts), to the ordered hosts and their
 * addresses that nexthop.h describes, or a permanent or temporary failure.
 *
 * DNS: libevent's evdns does the A and AAAA lookups and holds the name-server
 * list: the caller's (dns_nameserver), else the resolv.conf file's. evdns 2.1
 * cannot ask for MX records (its API resolves A, AAAA and PTR only), so MX
 * questions go through dns_query (a small client over proto/dns_msg) to the same
 * name servers, with the same per-try timeout and number of tries. No search
 * list and no hosts file: mail domains are fully qualified, and a next hop
 * must not depend on /etc/hosts.
 *
 * Each request has a deadline for the whole resolution; what is still pending
 * then counts as a temporary failure. The callback runs exactly once per
 * request unless the request is cancelled, always from the event loop (never
 * from the call that starts it). A request is freed after its callback
 * returns; the result is valid only during the call.
 *
 * Ownership: the resolver borrows the event_base and copies its parameters
 * (name servers, our names and addresses). Threads: one resolver per
 * event_base thread.
 */
#ifndef SHAREMAIL_DELIVER_NEXTHOP_RESOLVER_H
#define SHAREMAIL_DELIVER_NEXTHOP_RESOLVER_H

#include <stddef.h>

#include "deliver/nexthop.h"
#include "util/netaddr.h"

struct event_base;
struct nexthop_resolver;
struct nexthop_request;

#define NEXTHOP_FAMILY_IPV4 1
#define NEXTHOP_FAMILY_IPV6 2

struct nexthop_resolver_params {
	const struct netaddr *nameservers; /* dns_nameserver (port 53 unless given) */
	size_t nnameservers; /* 0: the name servers of resolv_conf */
	const char *resolv_conf; /* NULL: /etc/resolv.conf */
	unsigned timeout_ms; /* per try (default 5000) */
	unsigned attempts; /* tries per question, rotating over the servers (default 2) */
	unsigned deadline_ms; /* a whole request (default 60000) */
	int families; /* NEXTHOP_FAMILY_* bits (default both) */
	int prefer_ipv6; /* IPv6 addresses first within a host (default 0) */
	struct nexthop_self self; /* our names and addresses (copied) */
	nexthop_rand_fn rnd; /* MX ties; NULL: evutil_secure_rng */
	void *rnd_arg;
};

/* Fills p with the defaults above (no self names or addresses). */
void nexthop_resolver_params_init(struct nexthop_resolver_params *p);

/*
 * Creates a resolver on base. Fails (NULL, a reason in err) when resolv_conf
 * cannot be read or names no name server, or memory is short.
 */
struct nexthop_resolver *nexthop_resolver_new(struct event_base *base,
                                              const struct nexthop_resolver_params *p, char *err,
                                              size_t errlen);

/*
 * Cancels every request (no callbacks) and frees r (NULL: no-op). evdns
 * lookups under way end with evdns' shutdown callback, from the event loop:
 * run the loop once more before freeing the event_base to free them.
 */
void nexthop_resolver_free(struct nexthop_resolver *r);

/* The outcome of a request; result->hosts are in the order to try. */
typedef void (*nexthop_resolver_cb)(void *arg, const struct nexthop_result *result);

/*
 * Resolves a recipient domain: its MX hosts (or the implicit MX), each on
 * port 25. An address literal domain ("[192.0.2.1]", "[IPv6:...]") is used as
 * it is. A syntactically bad domain is PERMFAIL 5.1.2. Returns the request, or
 * NULL when memory is short (no callback then).
 */
struct nexthop_request *nexthop_resolver_domain(struct nexthop_resolver *r, const char *domain,
                                                nexthop_resolver_cb cb, void *arg);

/*
 * Resolves a configured route: specs[0..n) (from nexthop_route_parse or
 * nexthop_hosts_parse; n <= NEXTHOP_SPECS_MAX) in order; dest names it in the
 * texts (e.g. the recipient domain). A host that does not exist is TEMPFAIL
 * 4.4.4 (nexthop_result_soften). Returns the request or NULL (no callback).
 */
struct nexthop_request *nexthop_resolver_route(struct nexthop_resolver *r, const char *dest,
                                               const struct nexthop_spec *specs, size_t n,
                                               nexthop_resolver_cb cb, void *arg);

/*
 * Cancels q: no callback afterwards (a delivery stopped at shutdown). NULL is
 * a no-op, and so is cancelling a request from inside its own callback.
 */
void nexthop_request_cancel(struct nexthop_request *q);

#endif
