/*
 * nexthop_spec: see nexthop_spec.h. Host names per RFC 1123 2.1, address
 * literals per RFC 5321 4.1.3.
 */
#include "proto/nexthop_spec.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/strutil.h"

void nexthop_name_copy(char *out, const char *s, size_t len)
{
	if (len > 0 && s[len - 1] == '.')
		len--;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)ascii_lower((unsigned char)s[i]);
	out[len] = '\0';
}

/* ---- addresses ---- */

int nexthop_addr_sockaddr(const struct nexthop_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)a->port);
		memcpy(&sin->sin_addr, a->bytes, 4);
		*len = sizeof *sin;
		return 0;
	}
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)a->port);
		memcpy(&sin6->sin6_addr, a->bytes, 16);
		*len = sizeof *sin6;
		return 0;
	}
	return -1;
}

void nexthop_addr_format(const struct nexthop_addr *a, char *out, size_t outsz)
{
	if (outsz == 0)
		return;
	if ((a->family != AF_INET && a->family != AF_INET6) ||
	    !inet_ntop(a->family, a->bytes, out, (socklen_t)outsz))
		snprintf(out, outsz, "?");
}

/* ---- route syntax ---- */

/* RFC 1123 2.1 host-name label: letters, digits, '-', not at either end. */
static int label_valid(const char *s, size_t n, int *all_digits)
{
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return 0;
	*all_digits = 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int digit = c >= '0' && c <= '9';
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (!digit && !alpha && c != '-')
			return 0;
		if (!digit)
			*all_digits = 0;
	}
	return 1;
}

int nexthop_name_valid(const char *s, size_t len)
{
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > NEXTHOP_NAME_MAX)
		return 0;
	size_t i = 0;
	int all_digits = 0;
	while (i <= len) {
		size_t j = i;
		while (j < len && s[j] != '.')
			j++;
		if (!label_valid(s + i, j - i, &all_digits))
			return 0;
		i = j + 1;
	}
	return !all_digits;
}

/* Parses ":PORT" (or "" for the default) at s[0..len); returns the port or -1. */
static int port_parse(const char *s, size_t len)
{
	if (len == 0)
		return NEXTHOP_PORT_SMTP;
	if (s[0] != ':' || len < 2 || len > 6)
		return -1;
	unsigned v = 0;
	for (size_t i = 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	return v >= 1 && v <= 65535 ? (int)v : -1;
}

/* An address literal text (at most INET6_ADDRSTRLEN) of family into out; 0 or -1. */
static int addr_parse(int family, const char *s, size_t len, struct nexthop_addr *out)
{
	char buf[INET6_ADDRSTRLEN + 1];
	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(out, 0, sizeof *out);
	if (inet_pton(family, buf, out->bytes) != 1)
		return -1;
	out->family = family;
	return 0;
}

/* Fills a KIND_ADDR spec. */
static void spec_addr(struct nexthop_spec *out, const struct nexthop_addr *a, unsigned port)
{
	out->kind = NEXTHOP_KIND_ADDR;
	out->addr = *a;
	out->addr.port = port;
	out->port = port;
	nexthop_addr_format(a, out->host, sizeof out->host);
}

/* "[...]" with an optional ":PORT": an address literal or a host without MX lookup. */
static int spec_bracketed(const char *s, size_t len, struct nexthop_spec *out, char *err,
                          size_t errlen)
{
	const char *close = memchr(s, ']', len);
	if (!close) {
		str_errf(err, errlen, "'[' without ']'");
		return -1;
	}
	const char *in = s + 1;
	size_t inlen = (size_t)(close - in), rest = len - (size_t)(close + 1 - s);
	int port = port_parse(close + 1, rest);
	if (port < 0) {
		str_errf(err, errlen, "bad port after ']' (want :1-65535)");
		return -1;
	}
	struct nexthop_addr a;
	if (inlen >= 5 && ascii_equal_ci(in, 5, "ipv6:")) {
		if (addr_parse(AF_INET6, in + 5, inlen - 5, &a) < 0) {
			str_errf(err, errlen, "bad IPv6 address literal");
			return -1;
		}
	} else if (addr_parse(AF_INET6, in, inlen, &a) < 0 &&
	           addr_parse(AF_INET, in, inlen, &a) < 0) {
		if (!nexthop_name_valid(in, inlen)) {
			str_errf(err, errlen, "bad host name or address in brackets");
			return -1;
		}
		out->kind = NEXTHOP_KIND_HOST;
		out->port = (unsigned)port;
		nexthop_name_copy(out->host, in, inlen);
		return 0;
	}
	spec_addr(out, &a, (unsigned)port);
	return 0;
}

int nexthop_spec_parse(const char *s, size_t len, struct nexthop_spec *out, char *err,
                       size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (len == 0) {
		str_errf(err, errlen, "empty host");
		return -1;
	}
	if (s[0] == '[')
		return spec_bracketed(s, len, out, err, errlen);
	const char *colon = memchr(s, ':', len);
	size_t hlen = colon ? (size_t)(colon - s) : len;
	if (colon && memchr(colon + 1, ':', len - hlen - 1)) {
		str_errf(err, errlen, "an IPv6 address needs brackets: [2001:db8::1]:25");
		return -1;
	}
	int port = port_parse(s + hlen, len - hlen);
	if (port < 0) {
		str_errf(err, errlen, "bad port (want HOST:1-65535)");
		return -1;
	}
	struct nexthop_addr a;
	if (addr_parse(AF_INET, s, hlen, &a) == 0) {
		/* An address has no MX records: the same as [192.0.2.1]. */
		spec_addr(out, &a, (unsigned)port);
		return 0;
	}
	if (!nexthop_name_valid(s, hlen)) {
		str_errf(err, errlen, "bad host name");
		return -1;
	}
	out->kind = NEXTHOP_KIND_MX;
	out->port = (unsigned)port;
	nexthop_name_copy(out->host, s, hlen);
	return 0;
}

int nexthop_hosts_parse(const char *s, struct nexthop_spec *specs, size_t max, size_t *n, char *err,
                        size_t errlen)
{
	size_t pos = 0, len, count = 0;
	const char *tok;
	char why[128];
	if (max > NEXTHOP_SPECS_MAX)
		max = NEXTHOP_SPECS_MAX;
	*n = 0;
	while ((len = str_next_word(s, &pos, &tok)) > 0) {
		if (count == max) {
			str_errf(err, errlen, "more than %zu hosts", max);
			return -1;
		}
		if (nexthop_spec_parse(tok, len, &specs[count], why, sizeof why) < 0) {
			str_errf(err, errlen, "'%.*s': %s", (int)(len > 80 ? 80 : len), tok, why);
			return -1;
		}
		count++;
	}
	if (count == 0) {
		str_errf(err, errlen, "no host given (want HOST[:PORT] or [HOST][:PORT])");
		return -1;
	}
	*n = count;
	return 0;
}

int nexthop_route_parse(const char *s, struct nexthop_route *out, char *err, size_t errlen)
{
	size_t pos = 0;
	const char *tok;
	memset(out, 0, sizeof *out);
	size_t len = str_next_word(s, &pos, &tok);
	if (len == 0) {
		str_errf(err, errlen, "empty route (want DOMAIN HOST[:PORT]...)");
		return -1;
	}
	size_t skip = tok[0] == '.' ? 1 : 0;
	if (!nexthop_name_valid(tok + skip, len - skip)) {
		str_errf(err, errlen, "'%.*s': bad domain", (int)(len > 80 ? 80 : len), tok);
		return -1;
	}
	out->domain[0] = '.';
	nexthop_name_copy(out->domain + skip, tok + skip, len - skip);
	if (s[pos] == '\0') {
		str_errf(err, errlen, "route for %s names no host", out->domain);
		return -1;
	}
	return nexthop_hosts_parse(s + pos, out->specs, NEXTHOP_SPECS_MAX, &out->nspecs, err,
	                           errlen);
}

/* 1 if name ends with suffix (".example.com") and is longer, without case. */
static int has_suffix_ci(const char *name, size_t nlen, const char *suffix)
{
	size_t slen = strlen(suffix);
	return nlen > slen && ascii_equal_ci(name + nlen - slen, slen, suffix);
}

int nexthop_route_matches(const struct nexthop_route *r, const char *domain)
{
	size_t n = strlen(domain);
	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (r->domain[0] == '.')
		return has_suffix_ci(domain, n, r->domain);
	return ascii_equal_ci(domain, n, r->domain);
}

/* ---- peer routes ---- */

int nexthop_spec_format_peer(const char *host, unsigned port, char *out, size_t outsz)
{
	if (outsz == 0)
		return -1;
	out[0] = '\0';
	if (!host || !*host || port < 1 || port > 65535)
		return -1;
	int v6 = strchr(host, ':') != NULL;
	int n = snprintf(out, outsz, "[%s%s]:%u", v6 ? "IPv6:" : "", host, port);
	if (n < 0 || (size_t)n >= outsz) {
		out[0] = '\0';
		return -1;
	}
	return n;
}

int nexthop_spec_parse_peer(const char *s, struct nexthop_spec *out)
{
	char err[8];
	size_t len = s ? strlen(s) : 0;
	if (len < 5 || s[0] != '[')
		return 0;
	const char *close = memchr(s, ']', len);
	/* The explicit port: "[x]" alone is an address literal domain, not a route. */
	if (!close || close[1] != ':')
		return 0;
	return nexthop_spec_parse(s, len, out, err, sizeof err) == 0;
}
