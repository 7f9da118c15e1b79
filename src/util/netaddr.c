/*
 * netaddr: see netaddr.h. Literal addresses only (inet_pton): a configuration
 * must never depend on DNS at start-up, and a name that resolves differently
 * tomorrow must not silently move a listener or widen an allow list.
 */
#include "util/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/strutil.h"

/* The longest host text we look at: "[" + INET6_ADDRSTRLEN + "]" with room to spare. */
#define NETADDR_HOST_MAX 64

/* Parses a decimal port of 1-5 digits; returns it, or -1 when not a port number. */
static int port_parse(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 5)
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v > 65535 ? -1 : v;
}

static void set_v4(struct netaddr *out, const struct in_addr *a, int port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
	memset(out, 0, sizeof *out);
	sin->sin_family = AF_INET;
	sin->sin_addr = *a;
	sin->sin_port = htons((uint16_t)port);
	out->len = sizeof *sin;
}

static void set_v6(struct netaddr *out, const struct in6_addr *a, int port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
	memset(out, 0, sizeof *out);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_addr = *a;
	sin6->sin6_port = htons((uint16_t)port);
	out->len = sizeof *sin6;
}

/*
 * Splits s into host text and port text. "[v6]" / "[v6]:port" / "v4:port" /
 * "v4". *v6 is set when the host was bracketed. Returns 0 or -1 with err set.
 */
static int hostport_split(const char *s, char *host, const char **port, int *v6, char *err,
                          size_t errlen)
{
	const char *end;
	*v6 = 0;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end) {
			str_errf(err, errlen, "missing ']' in '%s'", s);
			return -1;
		}
		if (end[1] != '\0' && end[1] != ':') {
			str_errf(err, errlen, "unexpected text after ']' in '%s'", s);
			return -1;
		}
		*v6 = 1;
		s++;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':')) {
			str_errf(err, errlen,
			         "IPv6 addresses must be written in brackets, like [::1]:25, "
			         "not '%s'",
			         s);
			return -1;
		}
		end = colon ? colon : s + strlen(s);
	}
	if ((size_t)(end - s) >= NETADDR_HOST_MAX) {
		str_errf(err, errlen, "host too long in '%.80s'", s);
		return -1;
	}
	memcpy(host, s, (size_t)(end - s));
	host[end - s] = '\0';
	if (*v6)
		end++;
	*port = *end == ':' ? end + 1 : NULL;
	return 0;
}

int netaddr_parse_hostport(const char *s, int default_port, int allow_port0, struct netaddr *out,
                           char *err, size_t errlen)
{
	char host[NETADDR_HOST_MAX];
	const char *ptext;
	int v6, port;
	if (!s || !*s) {
		str_errf(err, errlen, "empty address");
		return -1;
	}
	if (hostport_split(s, host, &ptext, &v6, err, errlen) != 0)
		return -1;
	if (ptext) {
		port = port_parse(ptext);
		if (port < 0) {
			str_errf(err, errlen, "'%s' is not a port number (1-65535)", ptext);
			return -1;
		}
	} else if (default_port > 0 && default_port <= 65535) {
		port = default_port;
	} else {
		str_errf(err, errlen, "missing ':PORT' in '%s'", s);
		return -1;
	}
	if (port == 0 && !allow_port0) {
		str_errf(err, errlen, "port 0 is not allowed in '%s'", s);
		return -1;
	}
	struct in_addr a4;
	struct in6_addr a6;
	if (v6) {
		if (inet_pton(AF_INET6, host, &a6) != 1) {
			str_errf(err, errlen, "'%s' is not an IPv6 address", host);
			return -1;
		}
		set_v6(out, &a6, port);
		return 0;
	}
	if (strcmp(host, "*") == 0) {
		a4.s_addr = htonl(INADDR_ANY);
	} else if (strcasecmp(host, "localhost") == 0) {
		a4.s_addr = htonl(INADDR_LOOPBACK);
	} else if (inet_pton(AF_INET, host, &a4) != 1) {
		str_errf(err, errlen,
		         "'%s' is not an IP address (no names but localhost are looked up)", host);
		return -1;
	}
	set_v4(out, &a4, port);
	return 0;
}

/* Parses a prefix length of 1-3 digits up to max; -1 if it is not one. */
static int prefix_parse(const char *s, int max)
{
	size_t n = strlen(s);
	if (n == 0 || n > 3)
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v > max ? -1 : v;
}

/* 1 if the first `prefix` bits of a and b are equal. */
static int prefix_equal(const unsigned char *a, const unsigned char *b, int prefix)
{
	int full = prefix / 8, rest = prefix % 8;
	if (memcmp(a, b, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

/* 1 if any bit after the first `prefix` of a (alen bytes) is set. */
static int host_bits_set(const unsigned char *a, size_t alen, int prefix)
{
	for (size_t bit = (size_t)prefix; bit < alen * 8; bit++)
		if (a[bit / 8] & (0x80 >> (bit % 8)))
			return 1;
	return 0;
}

int netaddr_parse_net(const char *s, struct netaddr_net *out, char *err, size_t errlen)
{
	char addr[NETADDR_HOST_MAX];
	const char *slash = s ? strchr(s, '/') : NULL;
	size_t alen = slash ? (size_t)(slash - s) : (s ? strlen(s) : 0);
	if (alen == 0) {
		str_errf(err, errlen, "missing address in '%s'", s ? s : "");
		return -1;
	}
	if (alen >= sizeof addr) {
		str_errf(err, errlen, "address too long in '%.80s'", s);
		return -1;
	}
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	memset(out, 0, sizeof *out);
	size_t bytes;
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		bytes = 4;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		bytes = 16;
	} else {
		str_errf(err, errlen, "'%s' is not an IP address", addr);
		return -1;
	}
	out->prefix = (int)bytes * 8;
	if (slash) {
		out->prefix = prefix_parse(slash + 1, (int)bytes * 8);
		if (out->prefix < 0) {
			str_errf(err, errlen,
			         bytes == 4 ? "'%s' is not a prefix length (0-32)"
			                    : "'%s' is not a prefix length (0-128)",
			         slash + 1);
			return -1;
		}
	}
	/*
	 * "192.0.2.5/24" is refused rather than silently widened: in an allow
	 * list such a typo would grant more than the administrator meant.
	 */
	if (host_bits_set(out->addr, bytes, out->prefix)) {
		str_errf(err, errlen, "'%s' has bits set after its prefix length", s);
		return -1;
	}
	return 0;
}

/*
 * The address bytes to compare against a network of `family`: the address
 * itself, or the IPv4 part of an IPv4-mapped IPv6 address (RFC 4291 2.5.5.2)
 * or an IPv4 address seen as ::ffff:a.b.c.d, so a dual-stack socket's peers
 * match IPv4 networks. Returns NULL when the families cannot be compared.
 */
static const unsigned char *net_bytes(const struct sockaddr *sa, int family, unsigned char *tmp)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		if (family == AF_INET)
			return (const unsigned char *)&sin->sin_addr;
		memset(tmp, 0, 10);
		tmp[10] = tmp[11] = 0xff;
		memcpy(tmp + 12, &sin->sin_addr, 4);
		return tmp;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		if (family == AF_INET6)
			return sin6->sin6_addr.s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			return sin6->sin6_addr.s6_addr + 12;
	}
	return NULL;
}

int netaddr_net_contains(const struct netaddr_net *net, const struct sockaddr *sa)
{
	unsigned char tmp[16];
	if (!net || !sa || (net->family != AF_INET && net->family != AF_INET6))
		return 0;
	const unsigned char *a = net_bytes(sa, net->family, tmp);
	return a && prefix_equal(a, net->addr, net->prefix);
}

void netaddr_format(const struct sockaddr *sa, char *out, size_t outsz)
{
	char host[INET6_ADDRSTRLEN];
	if (!out || outsz == 0)
		return;
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
		snprintf(out, outsz, "%s:%d", host, ntohs(sin->sin_port));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
		snprintf(out, outsz, "[%s]:%d", host, ntohs(sin6->sin6_port));
	} else {
		snprintf(out, outsz, "?");
	}
}

int netaddr_port(const struct sockaddr *sa)
{
	if (sa && sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa && sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

int netaddr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	unsigned char ta[16], tb[16];
	if (!a || !b || (a->sa_family != AF_INET && a->sa_family != AF_INET6) ||
	    (b->sa_family != AF_INET && b->sa_family != AF_INET6))
		return 0;
	if (netaddr_port(a) != netaddr_port(b))
		return 0;
	/* Compare as IPv6 so 192.0.2.1 equals ::ffff:192.0.2.1 (a dual-stack peer). */
	const unsigned char *pa = net_bytes(a, AF_INET6, ta);
	const unsigned char *pb = net_bytes(b, AF_INET6, tb);
	return memcmp(pa, pb, 16) == 0;
}
