/*
 * peer_spec: see peer_spec.h. Host words reuse the next-hop syntax
 * (proto/nexthop_spec.h) so a peer, a gateway's host= and a relay_route accept
 * the same names and address literals.
 */
#include "proto/peer_spec.h"

#include <stdio.h>
#include <string.h>

#include "util/strutil.h"

/* Longest word quoted back in an error. */
#define PS_QUOTE_MAX 60

/* The options a line may carry, each at most once. */
enum ps_opt {
	PS_OPT_MINGER_PORT = 0,
	PS_OPT_SECRET_FILE,
	PS_OPT_HOST,
	PS_OPT_MINGER,
	PS_OPT_UNREACHABLE,
	PS_OPT_DOMAIN_SHARING,
	PS_OPT_COUNT,
};

static const char *const ps_opt_names[PS_OPT_COUNT] = {
        "minger_port", "secret_file", "host", "minger", "unreachable", "domain_sharing",
};

static int quote_len(size_t len)
{
	return (int)(len > PS_QUOTE_MAX ? PS_QUOTE_MAX : len);
}

/* 1 when a HOST[:PORT] word names a port (after the ']' of a bracketed host). */
static int has_port(const char *w, size_t len)
{
	const char *close = w[0] == '[' ? memchr(w, ']', len) : NULL;
	const char *from = close ? close : w;
	return memchr(from, ':', len - (size_t)(from - w)) != NULL;
}

/*
 * A HOST[:PORT] word into hp, the port defaulting to def. The host keeps no
 * brackets and no "IPv6:" tag; names are lower-cased. 0 or -1 with err.
 */
static int hostport_parse(const char *w, size_t len, unsigned def, struct peer_spec_hostport *hp,
                          char *err, size_t errlen)
{
	struct nexthop_spec spec;
	char why[128];
	if (nexthop_spec_parse(w, len, &spec, why, sizeof why) < 0) {
		str_errf(err, errlen, "'%.*s': %s", quote_len(len), w, why);
		return -1;
	}
	memcpy(hp->host, spec.host, sizeof hp->host);
	hp->port = has_port(w, len) ? spec.port : def;
	return 0;
}

/* A decimal port 1-65535 in w[0..len); -1 when it is not one. */
static int port_value(const char *w, size_t len)
{
	if (len == 0 || len > 5)
		return -1;
	unsigned v = 0;
	for (size_t i = 0; i < len; i++) {
		if (w[i] < '0' || w[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(w[i] - '0');
	}
	return v >= 1 && v <= 65535 ? (int)v : -1;
}

/*
 * Splits an option word "name=value": returns its enum ps_opt (or -1 when the name
 * is unknown or the '=' or value is missing) with *val and *vlen set.
 */
static int opt_split(const char *w, size_t len, const char **val, size_t *vlen)
{
	const char *eq = memchr(w, '=', len);
	if (!eq || eq == w || (size_t)(eq - w) + 1 == len)
		return -1;
	size_t nlen = (size_t)(eq - w);
	for (int i = 0; i < PS_OPT_COUNT; i++)
		if (strlen(ps_opt_names[i]) == nlen && memcmp(ps_opt_names[i], w, nlen) == 0) {
			*val = eq + 1;
			*vlen = len - nlen - 1;
			return i;
		}
	return -1;
}

static int secret_file_copy(const char *v, size_t vlen, char *out, char *err, size_t errlen)
{
	if (vlen >= PEER_SPEC_PATH_MAX) {
		str_errf(err, errlen, "secret_file is longer than %d octets",
		         PEER_SPEC_PATH_MAX - 1);
		return -1;
	}
	memcpy(out, v, vlen);
	out[vlen] = '\0';
	return 0;
}

/*
 * Checks one option word against the allowed set and the options already seen.
 * Returns its enum ps_opt with the value in (val, vlen), or -1 with err.
 */
static int opt_take(const char *w, size_t len, unsigned allowed, unsigned *seen, const char **val,
                    size_t *vlen, char *err, size_t errlen)
{
	int o = opt_split(w, len, val, vlen);
	if (o < 0 || !(allowed & (1u << o))) {
		str_errf(err, errlen, "unknown or incomplete option '%.*s'", quote_len(len), w);
		return -1;
	}
	if (*seen & (1u << o)) {
		str_errf(err, errlen, "%s= given twice", ps_opt_names[o]);
		return -1;
	}
	*seen |= 1u << o;
	return o;
}

int peer_spec_parse_peer(const char *line, struct peer_spec_peer *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	out->minger_port = PEER_SPEC_MINGER_PORT;
	if (str_line_printable(line, err, errlen) < 0)
		return -1;
	size_t pos = 0, len;
	const char *w;
	if ((len = str_next_word(line, &pos, &w)) == 0) {
		str_errf(err, errlen,
		         "no host given (want HOST[:SMTPPORT] [minger_port=N] "
		         "[secret_file=F])");
		return -1;
	}
	if (memchr(w, '=', len) && w[0] != '[') {
		str_errf(err, errlen, "the first word must be the host, not '%.*s'", quote_len(len),
		         w);
		return -1;
	}
	if (hostport_parse(w, len, NEXTHOP_PORT_SMTP, &out->smtp, err, errlen) < 0)
		return -1;
	unsigned seen = 0, allowed = (1u << PS_OPT_MINGER_PORT) | (1u << PS_OPT_SECRET_FILE);
	while ((len = str_next_word(line, &pos, &w)) > 0) {
		const char *v;
		size_t vlen;
		int o = opt_take(w, len, allowed, &seen, &v, &vlen, err, errlen);
		if (o < 0)
			return -1;
		if (o == PS_OPT_MINGER_PORT) {
			int p = port_value(v, vlen);
			if (p < 0) {
				str_errf(err, errlen, "minger_port must be 1-65535");
				return -1;
			}
			out->minger_port = (unsigned)p;
		} else if (secret_file_copy(v, vlen, out->secret_file, err, errlen) < 0) {
			return -1;
		}
	}
	return 0;
}

/* The value of an option that takes one of two words: 0 for no0, 1 for yes1, -1 otherwise. */
static int two_words(const char *v, size_t vlen, const char *w0, const char *w1)
{
	if (strlen(w0) == vlen && memcmp(v, w0, vlen) == 0)
		return 0;
	if (strlen(w1) == vlen && memcmp(v, w1, vlen) == 0)
		return 1;
	return -1;
}

/* Applies one option of a gateway or forward line. 0 or -1 with err. */
static int gateway_opt(int o, const char *v, size_t vlen, struct peer_spec_gateway *out, char *err,
                       size_t errlen)
{
	char why[160];
	int b;
	switch (o) {
	case PS_OPT_HOST:
		if (nexthop_spec_parse(v, vlen, &out->host, why, sizeof why) < 0) {
			str_errf(err, errlen, "host=%.*s: %s", quote_len(vlen), v, why);
			return -1;
		}
		return 0;
	case PS_OPT_MINGER:
		if (hostport_parse(v, vlen, PEER_SPEC_MINGER_PORT, &out->minger, why, sizeof why) <
		    0) {
			str_errf(err, errlen, "minger=%s", why);
			return -1;
		}
		return 0;
	case PS_OPT_SECRET_FILE: return secret_file_copy(v, vlen, out->secret_file, err, errlen);
	case PS_OPT_UNREACHABLE:
		if ((b = two_words(v, vlen, "defer", "accept")) < 0) {
			str_errf(err, errlen, "unreachable= must be defer or accept");
			return -1;
		}
		out->unreachable = b ? PEER_SPEC_UNREACHABLE_ACCEPT : PEER_SPEC_UNREACHABLE_DEFER;
		return 0;
	default:
		if ((b = two_words(v, vlen, "no", "yes")) < 0) {
			str_errf(err, errlen, "domain_sharing= must be yes or no");
			return -1;
		}
		out->domain_sharing = b;
		return 0;
	}
}

static int domain_word(const char *w, size_t len, struct peer_spec_gateway *out, char *err,
                       size_t errlen)
{
	if (len == 0 || memchr(w, '=', len) || !nexthop_name_valid(w, len)) {
		str_errf(err, errlen,
		         "'%.*s' is not a domain name (want DOMAIN host=... minger=...)",
		         quote_len(len), w);
		return -1;
	}
	nexthop_name_copy(out->domain, w, len);
	return 0;
}

int peer_spec_parse_gateway(const char *line, int forward, struct peer_spec_gateway *out, char *err,
                            size_t errlen)
{
	memset(out, 0, sizeof *out);
	out->unreachable = PEER_SPEC_UNREACHABLE_DEFER;
	if (str_line_printable(line, err, errlen) < 0)
		return -1;
	size_t pos = 0, len;
	const char *w;
	len = str_next_word(line, &pos, &w);
	if (domain_word(w, len, out, err, errlen) < 0)
		return -1;
	unsigned seen = 0;
	unsigned allowed = (1u << PS_OPT_HOST) | (1u << PS_OPT_MINGER) | (1u << PS_OPT_SECRET_FILE);
	if (!forward)
		allowed |= (1u << PS_OPT_UNREACHABLE) | (1u << PS_OPT_DOMAIN_SHARING);
	while ((len = str_next_word(line, &pos, &w)) > 0) {
		const char *v;
		size_t vlen;
		int o = opt_take(w, len, allowed, &seen, &v, &vlen, err, errlen);
		if (o < 0 || gateway_opt(o, v, vlen, out, err, errlen) < 0)
			return -1;
	}
	if (!(seen & (1u << PS_OPT_HOST)) || !(seen & (1u << PS_OPT_MINGER))) {
		str_errf(err, errlen, "%s needs host= and minger=", out->domain);
		return -1;
	}
	return 0;
}
