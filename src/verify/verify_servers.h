/*
 * verify_servers: the Minger servers the configuration names, read into one
 * list: the Domain Sharing peers (domain_sharing_host), then the gateway_domain
 * and forward_domain lines (proto/peer_spec.h has the syntax), each with its
 * kind, name, Minger address (as written, and resolved when asked), its route
 * (peers) and its secret. The daemon's verifier (verify.h), delivery's shared
 * list checks (deliver_relay.c) and the CLI (`peers`, `cache list`) all read the
 * lines with it, so a line means one thing to each of them.
 *
 * Paths: a secret_file is relative to the config file's folder, as every path of
 * sharemail.conf(5); its first secret is used (conf_read_secrets' rules).
 *
 * Ownership: a struct verify_servers owns its array and the secrets in it
 * (wiped when freed); line points into the struct conf, which must outlive it.
 * Threads: verify_server_lookup() and verify_servers_read_secret() only read
 * their arguments and may run on any thread.
 */
#ifndef SHAREMAIL_VERIFY_VERIFY_SERVERS_H
#define SHAREMAIL_VERIFY_VERIFY_SERVERS_H

#include <stddef.h>

#include "proto/nexthop_spec.h"
#include "proto/peer_spec.h"
#include "util/netaddr.h"
#include "verify/verify_status.h"

struct conf;

/* Addresses kept of a server's name (a peer's are all its addresses, for verify_client_is_peer). */
#define VERIFY_SERVERS_ADDRS_MAX 16
/* A secret_file with the config's folder in front. */
#define VERIFY_SERVERS_PATH_MAX (PEER_SPEC_PATH_MAX + 4096)

struct verify_server {
	enum verify_status_kind kind;
	const char *key; /* "domain_sharing_host", "gateway_domain" or "forward_domain" */
	const char *line; /* the configuration line (the conf's) */
	/* peer: "HOST:SMTPPORT" (IPv6 in brackets), where its mail goes; else the domain */
	char name[VERIFY_STATUS_NAME_MAX];
	/* the Minger server as written: "HOST:PORT" (IPv6 in brackets) */
	char minger_text[VERIFY_STATUS_NAME_MAX];
	char minger_host[NEXTHOP_NAME_MAX + 1]; /* its HOST, without brackets */
	unsigned minger_port;
	/* peer: its relay destination "[HOST]:PORT" (nexthop_spec_format_peer); else "" */
	char route[NEXTHOP_PEER_ROUTE_MAX];
	/* gateway and forward lines */
	char domain[NEXTHOP_NAME_MAX + 1]; /* lower case */
	int accept_unreachable; /* unreachable=accept */
	int ask_peers; /* domain_sharing=yes */
	char secret_file
	        [VERIFY_SERVERS_PATH_MAX]; /* resolved against the config's folder; "" none */
	char *secret; /* VERIFY_SERVERS_SECRETS: the first secret (owned); NULL: anonymous */
	/* VERIFY_SERVERS_RESOLVE: the Minger addresses (addrs[0] is the one asked) */
	struct netaddr addrs[VERIFY_SERVERS_ADDRS_MAX];
	size_t naddrs;
	char addr_key[VERIFY_STATUS_ADDR_MAX]; /* netaddr_format(addrs[0]): the cache's key; "" */
};

struct verify_servers {
	struct verify_server *v; /* the peers first, then gateway, then forward lines */
	size_t n;
	size_t npeers; /* v[0..npeers) are the peers */
};

/* verify_servers_load() flags. */
#define VERIFY_SERVERS_RESOLVE 0x1 /* resolve every Minger host now (getaddrinfo) */
#define VERIFY_SERVERS_SECRETS 0x2 /* read every secret_file now */

/*
 * Reads c's domain_sharing_host, gateway_domain and forward_domain lines (in the
 * order written) into out, resolving and reading secrets as flags ask. Returns 0,
 * or -1 (out emptied) with "CONFIG: KEY 'LINE': reason" in err (the reason of
 * verify_server_lookup() or verify_servers_read_secret(), or the line's parse
 * error, which conf already refuses at load).
 */
int verify_servers_load(const struct conf *c, unsigned flags, struct verify_servers *out, char *err,
                        size_t errlen);

/* Frees the list's contents and wipes the secrets (an empty list is a no-op). */
void verify_servers_free(struct verify_servers *s);

/*
 * Resolves s's Minger host and port now (getaddrinfo, IPv4 and IPv6) into up to
 * max addresses. Returns how many (>= 1), or -1 with "cannot resolve HOST: why"
 * or "HOST has no IPv4 or IPv6 address" in err. Does not change s.
 */
int verify_server_lookup(const struct verify_server *s, struct netaddr *out, size_t max, char *err,
                         size_t errlen);

/*
 * The first secret of s's secret_file (malloc'd; the caller wipes and frees it),
 * or NULL with "SECRETFILE:LINE: reason" or "SECRETFILE: reason" in err. NULL
 * with err "" when s has no secret_file.
 */
char *verify_servers_read_secret(const struct verify_server *s, char *err, size_t errlen);

#endif
