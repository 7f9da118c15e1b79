/*
 * netaddr: socket addresses and networks as written in the configuration.
 * "HOST:PORT" with HOST an IPv4 literal, "[IPv6]" literal, "*" (0.0.0.0) or
 * "localhost"; networks as "ADDR/PREFIX" or a bare address (a /32 or /128).
 * IPv4-mapped IPv6 peers (::ffff:a.b.c.d) match IPv4 networks.
 * No DNS: names other than "localhost" are refused.
 */
#ifndef SHAREMAIL_UTIL_NETADDR_H
#define SHAREMAIL_UTIL_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

struct netaddr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct netaddr_net {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network address, host bits cleared */
	int prefix; /* 0..32 or 0..128 */
};

/*
 * Parses "HOST:PORT" (or "HOST" when default_port > 0). Port 0 is allowed only
 * when allow_port0 (tests bind ephemeral ports). Returns 0 or -1 with a reason in
 * err (NUL-terminated, errlen bytes at most).
 */
int netaddr_parse_hostport(const char *s, int default_port, int allow_port0, struct netaddr *out,
                           char *err, size_t errlen);

/*
 * Parses "ADDR/PREFIX" or "ADDR". Returns 0 or -1 with a reason in err. A network
 * with bits set after the prefix ("192.0.2.5/24") is refused, not widened.
 */
int netaddr_parse_net(const char *s, struct netaddr_net *out, char *err, size_t errlen);

/* 1 if the socket address lies in the network, else 0. */
int netaddr_net_contains(const struct netaddr_net *net, const struct sockaddr *sa);

/* Formats "a.b.c.d:port" or "[v6]:port" into out (always NUL-terminated). */
void netaddr_format(const struct sockaddr *sa, char *out, size_t outsz);

/* Port of an AF_INET/AF_INET6 address in host order (0 for other families). */
int netaddr_port(const struct sockaddr *sa);

/*
 * 1 if two AF_INET/AF_INET6 addresses have the same address and port, else 0.
 * An IPv4 address equals its IPv4-mapped IPv6 form (a dual-stack socket's view).
 */
int netaddr_equal(const struct sockaddr *a, const struct sockaddr *b);

#endif
