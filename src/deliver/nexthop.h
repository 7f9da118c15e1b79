/*
 * nexthop: where mail for a domain goes next (issue 7 item 4). Pure: no I/O, no
 * logging, no global state, no allocation; the caller owns every structure.
 * The DNS traffic is nexthop_resolver's; this module decides.
 *
 *  - Route syntax: see proto/nexthop_spec.h (relay_route, relay_smarthost).
 *  - MX ordering (RFC 5321 5.1): by preference, equal preferences in random
 *    order from a caller-supplied source (tests pass a fixed one). No MX: the
 *    domain itself is the implicit MX, preference 0. A CNAME chain in the
 *    answer is followed (at most NEXTHOP_CNAME_MAX links).
 *  - Null MX (RFC 7505): MX records that all name the root "." mean the domain
 *    accepts no mail: permanent failure 5.1.10. A "." among real hosts is dropped.
 *  - Loops: an MX host whose name is one of ours, or whose address (and port)
 *    is one of ours, and every host of equal or greater preference, are
 *    dropped (RFC 5321 5.1); when that leaves nothing (we are the best MX, or
 *    the implicit MX is ourselves) the failure is permanent, 5.4.6 "mail for X
 *    loops back to myself", never a retry storm.
 *  - Three-valued outcome: FOUND (hosts with addresses), PERMFAIL (NXDOMAIN of
 *    the domain 5.1.2, null MX 5.1.10, loop 5.4.6, no address for any host
 *    5.4.4), TEMPFAIL (SERVFAIL, timeout, a lookup without an answer: 4.4.3) =
 *    retry later. A host configured in a route or smart host that does not
 *    exist is TEMPFAIL 4.4.4 (nexthop_result_soften): a typo in the
 *    configuration defers mail until it is fixed instead of bouncing it; a loop
 *    stays permanent.
 */
#ifndef SHAREMAIL_DELIVER_NEXTHOP_H
#define SHAREMAIL_DELIVER_NEXTHOP_H

#include <stddef.h>
#include <stdint.h>

#include "proto/dns_msg.h"
#include "proto/nexthop_spec.h"
#include "util/netaddr.h"

#define NEXTHOP_HOSTS_MAX 16 /* hosts in one result (the best ones) */
#define NEXTHOP_ADDRS_MAX 8 /* addresses kept per host */
#define NEXTHOP_MX_MAX 32 /* MX records kept from one answer (the best ones) */
#define NEXTHOP_CNAME_MAX 8 /* CNAME links followed inside one answer */
#define NEXTHOP_TEXT_MAX 384

enum nexthop_status { NEXTHOP_FOUND, NEXTHOP_PERMFAIL, NEXTHOP_TEMPFAIL };

/* One host to try, in order. */
struct nexthop_host {
	char name[NEXTHOP_NAME_MAX + 1]; /* lower case; the address text for a literal */
	unsigned pref; /* MX preference; 0 for the implicit MX and route hosts */
	unsigned port;
	int from_mx; /* named by an MX lookup (or the implicit MX): the self-name rule applies */
	int tempfail; /* an address lookup of it failed temporarily (resolver's mark) */
	size_t naddrs;
	struct nexthop_addr addrs[NEXTHOP_ADDRS_MAX]; /* each with the host's port */
};

/* The outcome for one destination. */
struct nexthop_result {
	enum nexthop_status status;
	const char *enh; /* RFC 3463 code of a failure ("5.1.10"); "" when FOUND */
	char text[NEXTHOP_TEXT_MAX]; /* why, for the log and the bounce; "" when FOUND */
	char dest[NEXTHOP_NAME_MAX + 3]; /* what was resolved: "example.com", "[relay]" */
	size_t nhosts;
	struct nexthop_host hosts[NEXTHOP_HOSTS_MAX];
};

/* Who we are: our host names (and aliases) and our listening addresses. */
struct nexthop_self {
	const char *const *names; /* compared without case and final dot */
	size_t nnames;
	const struct netaddr *addrs; /* port 0 matches any port; the caller expands wildcards */
	size_t naddrs;
};

/* A random source for MX ties: any 32-bit value per call. */
typedef uint32_t (*nexthop_rand_fn)(void *arg);

/* The MX records of one answer, bounded: the NEXTHOP_MX_MAX best are kept. */
struct nexthop_mx {
	unsigned pref;
	uint32_t key; /* random tie-breaker */
	char name[NEXTHOP_NAME_MAX + 1];
};

struct nexthop_mxlist {
	size_t n; /* usable records in mx[] */
	size_t nnull; /* records naming the root "." */
	size_t nodd; /* records whose exchange is no host name (dropped) */
	int rcode; /* the reply's RCODE (for the failure text) */
	struct nexthop_mx mx[NEXTHOP_MX_MAX];
};

/* What an MX reply says. */
enum nexthop_answer {
	NEXTHOP_ANSWER_RECORDS, /* MX records (usable, null or odd) for the name */
	NEXTHOP_ANSWER_NODATA, /* the name exists, no MX: implicit MX */
	NEXTHOP_ANSWER_NXDOMAIN, /* the name does not exist */
	NEXTHOP_ANSWER_RETRY, /* SERVFAIL, REFUSED, ...: ask another server, then TEMPFAIL */
	NEXTHOP_ANSWER_MALFORMED, /* the records do not parse: as RETRY */
};

/* Empties l. */
void nexthop_mxlist_init(struct nexthop_mxlist *l);

/*
 * Adds one MX record (name "" is the root: counted as null). A name already in
 * the list keeps the lower preference. When full, the record replaces the worst
 * one if it sorts before it (preference, then key). name must be NUL-terminated.
 */
void nexthop_mxlist_add(struct nexthop_mxlist *l, unsigned pref, const char *name, uint32_t key);

/*
 * Reads the MX reply m for qname (already checked with dns_msg_is_reply_to)
 * into l (initialised here): the answer section's MX records of qname or of
 * the end of its CNAME chain, each with a key from rnd (NULL: key 0, answer
 * order). Returns what the reply says.
 */
enum nexthop_answer nexthop_mx_answer(const struct dns_msg *m, const char *qname,
                                      struct nexthop_mxlist *l, nexthop_rand_fn rnd, void *arg);

/*
 * Sets r to FOUND with no hosts, dest copied (cut to fit, octets outside
 * printable ASCII replaced by '?': it ends up in logs and bounces).
 */
void nexthop_result_init(struct nexthop_result *r, const char *dest);

/* Sets r to a failure: status, enh (a static string) and text; hosts dropped. */
void nexthop_result_fail(struct nexthop_result *r, enum nexthop_status status, const char *enh,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Turns what an MX answer said about domain into the hosts to resolve, in
 * order, into out (addresses not yet known): sorted MX hosts with those at or
 * after our own name dropped, or the implicit MX, or a failure (see the top).
 * port is given to every host.
 */
void nexthop_mx_plan(const char *domain, unsigned port, enum nexthop_answer a,
                     const struct nexthop_mxlist *l, const struct nexthop_self *self,
                     struct nexthop_result *out);

/*
 * Adds an address (family AF_INET with 4 octets or AF_INET6 with 16) to h with
 * h->port. A duplicate is ignored. Returns 0, or -1 when h is full or the
 * family unknown (the address is dropped).
 */
int nexthop_host_add_addr(struct nexthop_host *h, int family, const void *bytes);

/*
 * Completes a FOUND result once addresses are known (no-op otherwise): drops
 * hosts with an address of ours and every host at or after their preference,
 * then hosts without addresses; orders each host's addresses IPv4 first (IPv6
 * first with prefer_ipv6), keeping the order within a family. Sets the status:
 * FOUND when a host is left, else PERMFAIL 5.4.6 (a loop), TEMPFAIL 4.4.3 (a
 * host's lookup failed temporarily) or PERMFAIL 5.4.4 (no address anywhere).
 */
void nexthop_finish(struct nexthop_result *r, const struct nexthop_self *self, int prefer_ipv6);

/*
 * For a host named by the configuration: a PERMFAIL other than a loop (5.4.6)
 * becomes TEMPFAIL 4.4.4, the text saying to check the route.
 */
void nexthop_result_soften(struct nexthop_result *r);

/*
 * Merges the results of a route's hosts, in order, into out (dest kept): the
 * hosts of every FOUND part up to NEXTHOP_HOSTS_MAX, status FOUND when there is
 * one; else the first TEMPFAIL part (something may work later), else the first
 * part's failure. n == 0 gives TEMPFAIL 4.4.4.
 */
void nexthop_merge(struct nexthop_result *out, const struct nexthop_result *const *parts, size_t n);

#endif
