/*
 * peer_spec: the configuration lines that name other servers asked with Minger,
 * parsed. Pure (no I/O, no allocation, no DNS): conf validates the lines with it
 * (file:line errors at load), verify/ and the CLI use what it returns.
 *
 * Syntax (words separated by blanks; options in any order, each at most once):
 *   domain_sharing_host = HOST[:SMTPPORT] [minger_port=N] [secret_file=F]
 *       HOST is a name or an address (IPv6 in brackets); SMTPPORT (default 25)
 *       is where its mail is delivered, minger_port (default 4069) where it is
 *       asked.
 *   gateway_domain = DOMAIN host=HOST[:PORT] minger=HOST[:PORT] [secret_file=F]
 *                    [unreachable=defer|accept] [domain_sharing=yes|no]
 *   forward_domain = DOMAIN host=HOST[:PORT] minger=HOST[:PORT] [secret_file=F]
 *       host= is a next hop in relay_route syntax (proto/nexthop_spec.h:
 *       [HOST] skips the MX lookup); minger= is HOST[:PORT] (default 4069).
 *
 * Ownership: the caller owns every structure; strings are copied in, bounded.
 */
#ifndef SHAREMAIL_PROTO_PEER_SPEC_H
#define SHAREMAIL_PROTO_PEER_SPEC_H

#include <stddef.h>

#include "proto/nexthop_spec.h"

#define PEER_SPEC_PATH_MAX 1024
#define PEER_SPEC_MINGER_PORT 4069

/* A host and a port as written ("[2001:db8::1]" loses its brackets). */
struct peer_spec_hostport {
	char host[NEXTHOP_NAME_MAX + 1];
	unsigned port;
};

/* One domain_sharing_host line. */
struct peer_spec_peer {
	struct peer_spec_hostport smtp; /* where its mail goes (port default 25) */
	unsigned minger_port; /* default 4069 */
	char secret_file[PEER_SPEC_PATH_MAX]; /* "" = anonymous */
};

enum peer_spec_unreachable { PEER_SPEC_UNREACHABLE_DEFER = 0, PEER_SPEC_UNREACHABLE_ACCEPT };

/* One gateway_domain or forward_domain line (forward lines leave the last two at defaults). */
struct peer_spec_gateway {
	char domain[NEXTHOP_NAME_MAX + 1]; /* lower case */
	struct nexthop_spec host; /* host=: the next hop of the domain's mail */
	struct peer_spec_hostport minger; /* minger=: the server asked (port default 4069) */
	char secret_file[PEER_SPEC_PATH_MAX]; /* "" = anonymous */
	enum peer_spec_unreachable unreachable; /* default defer (451) */
	int domain_sharing; /* 1: also ask the Domain Sharing peers (default 0) */
};

/*
 * Parses a domain_sharing_host line. Returns 0, or -1 with a one-line reason in
 * err (naming the bad word).
 */
int peer_spec_parse_peer(const char *line, struct peer_spec_peer *out, char *err, size_t errlen);

/*
 * Parses a gateway_domain line (forward = 0) or a forward_domain line
 * (forward = 1: unreachable= and domain_sharing= are refused). Returns 0, or -1
 * with a one-line reason in err.
 */
int peer_spec_parse_gateway(const char *line, int forward, struct peer_spec_gateway *out, char *err,
                            size_t errlen);

#endif
