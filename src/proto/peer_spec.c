/*
 * peer_spec: see peer_spec.h.
 *
 * STAND-IN (branch i8-D): the minimal parser delivery needs to run before
 * helper V's implementation of this header is merged. The lead takes V's file
 * over this one; nothing here is meant to survive the merge.
 */
#include "proto/peer_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The next word of s from *pos: its start and length (0 at the end). */
static size_t word(const char *s, size_t *pos, const char **w)
{
	size_t i = *pos;
	while (s[i] && blank(s[i]))
		i++;
	size_t b = i;
	while (s[i] && !blank(s[i]))
		i++;
	*w = s + b;
	*pos = i;
	return i - b;
}

/* "HOST[:PORT]", "[HOST]:PORT", "[v6]:PORT" into out. 0 or -1. */
static int hostport(const char *s, size_t n, unsigned defport, struct peer_spec_hostport *out)
{
	const char *h = s, *port = NULL;
	size_t hl = n;
	if (n > 0 && s[0] == '[') {
		const char *e = memchr(s, ']', n);
		if (!e)
			return -1;
		h = s + 1;
		hl = (size_t)(e - h);
		if (hl > 5 && strncasecmp(h, "IPv6:", 5) == 0)
			h += 5, hl -= 5;
		if ((size_t)(e + 1 - s) < n) {
			if (e[1] != ':')
				return -1;
			port = e + 2;
		}
	} else {
		const char *c = memchr(s, ':', n);
		if (c) {
			hl = (size_t)(c - s);
			port = c + 1;
		}
	}
	if (hl == 0 || hl > NEXTHOP_NAME_MAX)
		return -1;
	memcpy(out->host, h, hl);
	out->host[hl] = '\0';
	out->port = defport;
	if (port) {
		char *end;
		size_t pl = n - (size_t)(port - s);
		char buf[8];
		if (pl == 0 || pl >= sizeof buf)
			return -1;
		memcpy(buf, port, pl);
		buf[pl] = '\0';
		long v = strtol(buf, &end, 10);
		if (*end || v < 1 || v > 65535)
			return -1;
		out->port = (unsigned)v;
	}
	return 0;
}

static int opt(const char *w, size_t n, const char *name, const char **v, size_t *vl)
{
	size_t k = strlen(name);
	if (n <= k || strncmp(w, name, k) != 0)
		return 0;
	*v = w + k;
	*vl = n - k;
	return 1;
}

static int copy_path(char *out, const char *v, size_t vl)
{
	if (vl == 0 || vl >= PEER_SPEC_PATH_MAX)
		return -1;
	memcpy(out, v, vl);
	out[vl] = '\0';
	return 0;
}

int peer_spec_parse_peer(const char *line, struct peer_spec_peer *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	out->minger_port = PEER_SPEC_MINGER_PORT;
	size_t pos = 0, n, vl;
	const char *w, *v;
	if ((n = word(line, &pos, &w)) == 0 || hostport(w, n, 25, &out->smtp) < 0) {
		snprintf(err, errlen, "bad HOST[:PORT]");
		return -1;
	}
	while ((n = word(line, &pos, &w)) > 0) {
		if (opt(w, n, "minger_port=", &v, &vl)) {
			struct peer_spec_hostport hp;
			char tmp[16];
			snprintf(tmp, sizeof tmp, "x:%.*s", (int)(vl < 8 ? vl : 8), v);
			if (hostport(tmp, strlen(tmp), 0, &hp) < 0) {
				snprintf(err, errlen, "bad minger_port");
				return -1;
			}
			out->minger_port = hp.port;
		} else if (!opt(w, n, "secret_file=", &v, &vl) ||
		           copy_path(out->secret_file, v, vl) < 0) {
			snprintf(err, errlen, "bad word \"%.*s\"", (int)(n > 40 ? 40 : n), w);
			return -1;
		}
	}
	return 0;
}

int peer_spec_parse_gateway(const char *line, int forward, struct peer_spec_gateway *out, char *err,
                            size_t errlen)
{
	memset(out, 0, sizeof *out);
	size_t pos = 0, n, vl;
	const char *w, *v;
	int have_host = 0, have_minger = 0;
	if ((n = word(line, &pos, &w)) == 0 || !nexthop_name_valid(w, n)) {
		snprintf(err, errlen, "bad DOMAIN");
		return -1;
	}
	nexthop_name_copy(out->domain, w, n);
	while ((n = word(line, &pos, &w)) > 0) {
		int ok = 0;
		if (opt(w, n, "host=", &v, &vl))
			ok = have_host = nexthop_spec_parse(v, vl, &out->host, err, errlen) == 0;
		else if (opt(w, n, "minger=", &v, &vl))
			ok = have_minger =
			        hostport(v, vl, PEER_SPEC_MINGER_PORT, &out->minger) == 0;
		else if (opt(w, n, "secret_file=", &v, &vl))
			ok = copy_path(out->secret_file, v, vl) == 0;
		else if (!forward && opt(w, n, "unreachable=", &v, &vl)) {
			ok = (vl == 5 && !strncmp(v, "defer", 5)) ||
			     (vl == 6 && !strncmp(v, "accept", 6));
			out->unreachable = vl == 6 ? PEER_SPEC_UNREACHABLE_ACCEPT
			                           : PEER_SPEC_UNREACHABLE_DEFER;
		} else if (!forward && opt(w, n, "domain_sharing=", &v, &vl)) {
			ok = (vl == 3 && !strncmp(v, "yes", 3)) ||
			     (vl == 2 && !strncmp(v, "no", 2));
			out->domain_sharing = vl == 3;
		}
		if (!ok) {
			snprintf(err, errlen, "bad word \"%.*s\"", (int)(n > 40 ? 40 : n), w);
			return -1;
		}
	}
	if (!have_host || !have_minger) {
		snprintf(err, errlen, "host= and minger= are required");
		return -1;
	}
	return 0;
}
