/*
 * nexthop_spec: the text of a next hop in the configuration, parsed. Pure (no
 * I/O, no allocation): conf validates relay_route and relay_smarthost with it,
 * delivery (deliver/nexthop) resolves what it returns.
 *
 * Syntax: `relay_route = DOMAIN HOST[:PORT] [HOST[:PORT]...]` and
 *    `relay_smarthost = HOST[:PORT] [HOST[:PORT]...]`, hosts tried in order:
 *      HOST, HOST:PORT      MX lookup of HOST, then its A/AAAA (as Postfix does)
 *      [HOST], [HOST]:PORT  A/AAAA of HOST only, no MX lookup
 *      [192.0.2.1]:PORT     an address: no DNS at all (a bare 192.0.2.1 too:
 *                           an address has no MX records)
 *      [IPv6:2001:db8::1]:PORT or [2001:db8::1]:PORT  an IPv6 address (the
 *                           RFC 5321 4.1.3 literal and Postfix's form); an IPv6
 *                           address always needs the brackets.
 *    PORT is 1-65535, default 25. DOMAIN matches that domain; ".DOMAIN" matches
 *    its subdomains only.
 *
 * Ownership: the caller owns every structure.
 */
#ifndef SHAREMAIL_PROTO_NEXTHOP_SPEC_H
#define SHAREMAIL_PROTO_NEXTHOP_SPEC_H

#include <stddef.h>
#include <sys/socket.h>

#include "proto/dns_msg.h"

#define NEXTHOP_NAME_MAX DNS_NAME_MAX /* a host name, without the final dot */
#define NEXTHOP_SPECS_MAX 8 /* hosts in one route or smart host setting */
#define NEXTHOP_PORT_SMTP 25

/* An IPv4 or IPv6 address with a port: what the SMTP client connects to. */
struct nexthop_addr {
	int family; /* AF_INET or AF_INET6 */
	unsigned port;
	unsigned char bytes[16]; /* 4 or 16 octets, network order */
};

/* How one host of a route is resolved. */
enum nexthop_kind {
	NEXTHOP_KIND_MX, /* HOST: MX of HOST, else HOST itself; A/AAAA of each */
	NEXTHOP_KIND_HOST, /* [HOST]: A/AAAA of HOST */
	NEXTHOP_KIND_ADDR, /* [address]: no DNS */
};

/* One HOST[:PORT] of a route. */
struct nexthop_spec {
	enum nexthop_kind kind;
	char host[NEXTHOP_NAME_MAX + 1]; /* lower case; for KIND_ADDR the address text */
	unsigned port;
	struct nexthop_addr addr; /* KIND_ADDR: the address with the port */
};

/* One relay_route line. */
struct nexthop_route {
	char domain[NEXTHOP_NAME_MAX + 2]; /* lower case; a leading '.': subdomains */
	size_t nspecs;
	struct nexthop_spec specs[NEXTHOP_SPECS_MAX];
};

/* Writes a as a socket address into ss (*len its length). Returns 0, or -1 for a bad family. */
int nexthop_addr_sockaddr(const struct nexthop_addr *a, struct sockaddr_storage *ss,
                          socklen_t *len);

/* Formats a as "192.0.2.1" or "2001:db8::1" (no port) into out, always NUL-terminated. */
void nexthop_addr_format(const struct nexthop_addr *a, char *out, size_t outsz);

/*
 * 1 if s[0..len) is a host name we accept in the configuration: 1-253
 * octets (one final dot allowed), labels of 1-63 letters, digits and '-', not
 * beginning or ending with '-', the last label not all digits (a mistyped
 * address). Else 0.
 */
int nexthop_name_valid(const char *s, size_t len);

/*
 * Copies the name s[0..len) lower-cased into out, dropping one final dot; out
 * has room for len + 1 octets (a NUL ends it).
 */
void nexthop_name_copy(char *out, const char *s, size_t len);

/*
 * Parses one HOST[:PORT] token s[0..len) (syntax above) into out. Returns 0, or
 * -1 with a reason in err (NUL-terminated, errlen octets at most).
 */
int nexthop_spec_parse(const char *s, size_t len, struct nexthop_spec *out, char *err,
                       size_t errlen);

/*
 * Parses a relay_smarthost value: 1 to max (<= NEXTHOP_SPECS_MAX) tokens
 * separated by spaces or tabs, into specs[]; *n receives the count. Returns 0
 * or -1 with a reason in err.
 */
int nexthop_hosts_parse(const char *s, struct nexthop_spec *specs, size_t max, size_t *n, char *err,
                        size_t errlen);

/* Parses a relay_route value "DOMAIN HOST[:PORT]..." into out. Returns 0 or -1 with err. */
int nexthop_route_parse(const char *s, struct nexthop_route *out, char *err, size_t errlen);

/* 1 if the route applies to domain (a recipient's domain, any case), else 0. */
int nexthop_route_matches(const struct nexthop_route *r, const char *domain);

/*
 * Peer routes. A recipient whose next hop was chosen before delivery (a Domain
 * Sharing peer found at RCPT time, a shared list's copy) carries it as route
 * text in its queue state: "[HOST]:PORT", an IPv6 address "[IPv6:ADDR]:PORT".
 * The brackets and the explicit port set it apart from every other destination
 * key (a domain, an address literal "[192.0.2.1]" of a recipient's domain,
 * "[smarthost]").
 */

/* Longest peer route text, NUL included: "[" NAME "]:65535", or "[IPv6:" ADDR "]:65535". */
#define NEXTHOP_PEER_ROUTE_MAX (NEXTHOP_NAME_MAX + 16)

/*
 * Formats the route text of host (a name or an address, IPv6 without brackets)
 * and port into out. Returns its length, or -1 when host is empty or it does
 * not fit (out is then "").
 */
int nexthop_spec_format_peer(const char *host, unsigned port, char *out, size_t outsz);

/*
 * 1 if s (NUL-terminated) is a peer route text (a bracketed host or address and
 * an explicit :PORT, accepted by nexthop_spec_parse, which fills out), else 0.
 */
int nexthop_spec_parse_peer(const char *s, struct nexthop_spec *out);

#endif
