/* verify_servers: see verify_servers.h. */
#include "verify/verify_servers.h"

#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "util/strutil.h"

/* "HOST:PORT", an IPv6 HOST in brackets. */
static void hostport_format(const char *host, unsigned port, char *out, size_t outsz)
{
	snprintf(out, outsz, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

/* A path of a line relative to the config file's folder (as conf does for PATH keys). */
static int resolve_path(const struct conf *c, const char *p, char *out, size_t outsz)
{
	const char *slash = c->path ? strrchr(c->path, '/') : NULL;
	int n = !p[0] || p[0] == '/' || !slash
	                ? snprintf(out, outsz, "%s", p)
	                : snprintf(out, outsz, "%.*s/%s", (int)(slash - c->path), c->path, p);
	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

static int parse_peer(const char *line, struct verify_server *s, char *why, size_t whylen)
{
	struct peer_spec_peer p;
	if (peer_spec_parse_peer(line, &p, why, whylen) < 0)
		return -1;
	s->kind = VERIFY_STATUS_PEER;
	hostport_format(p.smtp.host, p.smtp.port, s->name, sizeof s->name);
	snprintf(s->minger_host, sizeof s->minger_host, "%s", p.smtp.host);
	s->minger_port = p.minger_port;
	if (nexthop_spec_format_peer(p.smtp.host, p.smtp.port, s->route, sizeof s->route) < 0) {
		str_errf(why, whylen, "host name too long");
		return -1;
	}
	snprintf(s->secret_file, sizeof s->secret_file, "%s", p.secret_file);
	return 0;
}

static int parse_gateway(const char *line, int forward, struct verify_server *s, char *why,
                         size_t whylen)
{
	struct peer_spec_gateway g;
	if (peer_spec_parse_gateway(line, forward, &g, why, whylen) < 0)
		return -1;
	s->kind = forward ? VERIFY_STATUS_FORWARD : VERIFY_STATUS_GATEWAY;
	snprintf(s->domain, sizeof s->domain, "%s", g.domain);
	snprintf(s->name, sizeof s->name, "%s", g.domain);
	snprintf(s->minger_host, sizeof s->minger_host, "%s", g.minger.host);
	s->minger_port = g.minger.port;
	s->accept_unreachable = g.unreachable == PEER_SPEC_UNREACHABLE_ACCEPT;
	s->ask_peers = g.domain_sharing;
	snprintf(s->secret_file, sizeof s->secret_file, "%s", g.secret_file);
	return 0;
}

/* One line into s, with what flags ask for. 0 or -1 with err. */
static int server_init(const struct conf *c, const char *key, const char *line, int kind,
                       unsigned flags, struct verify_server *s, char *err, size_t errlen)
{
	char why[512], file[VERIFY_SERVERS_PATH_MAX];
	s->key = key;
	s->line = line;
	int rc = kind == VERIFY_STATUS_PEER
	                 ? parse_peer(line, s, why, sizeof why)
	                 : parse_gateway(line, kind == VERIFY_STATUS_FORWARD, s, why, sizeof why);
	if (rc == 0) {
		hostport_format(s->minger_host, s->minger_port, s->minger_text,
		                sizeof s->minger_text);
		snprintf(file, sizeof file, "%s", s->secret_file);
		if (resolve_path(c, file, s->secret_file, sizeof s->secret_file) < 0)
			rc = -1, str_errf(why, sizeof why, "secret_file path too long");
	}
	if (rc == 0 && (flags & VERIFY_SERVERS_RESOLVE)) {
		int n = verify_server_lookup(s, s->addrs, VERIFY_SERVERS_ADDRS_MAX, why,
		                             sizeof why);
		if (n < 0) {
			rc = -1;
		} else {
			s->naddrs = (size_t)n;
			netaddr_format((const struct sockaddr *)&s->addrs[0].ss, s->addr_key,
			               sizeof s->addr_key);
		}
	}
	if (rc == 0 && (flags & VERIFY_SERVERS_SECRETS) && s->secret_file[0] &&
	    !(s->secret = verify_servers_read_secret(s, why, sizeof why)))
		rc = -1;
	if (rc < 0)
		str_errf(err, errlen, "%s: %s '%s': %s", c->path, key, line, why);
	return rc;
}

int verify_servers_load(const struct conf *c, unsigned flags, struct verify_servers *out, char *err,
                        size_t errlen)
{
	static const struct {
		const char *key;
		int kind;
	} keys[] = {{"domain_sharing_host", VERIFY_STATUS_PEER},
	            {"gateway_domain", VERIFY_STATUS_GATEWAY},
	            {"forward_domain", VERIFY_STATUS_FORWARD}};
	const struct strlist *lines[] = {&c->domain_sharing_host, &c->gateway_domain,
	                                 &c->forward_domain};
	memset(out, 0, sizeof *out);
	size_t total = lines[0]->n + lines[1]->n + lines[2]->n;
	out->v = calloc(total + 1, sizeof *out->v);
	if (!out->v) {
		str_errf(err, errlen, "out of memory");
		return -1;
	}
	out->npeers = lines[0]->n;
	for (size_t k = 0; k < 3; k++)
		for (size_t i = 0; i < lines[k]->n; i++) {
			/* counted first: a half-made server is freed with the others */
			struct verify_server *s = &out->v[out->n++];
			if (server_init(c, keys[k].key, lines[k]->v[i], keys[k].kind, flags, s, err,
			                errlen) < 0) {
				verify_servers_free(out);
				return -1;
			}
		}
	return 0;
}

void verify_servers_free(struct verify_servers *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].secret) {
			explicit_bzero(s->v[i].secret, strlen(s->v[i].secret));
			free(s->v[i].secret);
		}
	free(s->v);
	memset(s, 0, sizeof *s);
}

int verify_server_lookup(const struct verify_server *s, struct netaddr *out, size_t max, char *err,
                         size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char ps[8];
	snprintf(ps, sizeof ps, "%u", s->minger_port);
	int rc = getaddrinfo(s->minger_host, ps, &hints, &res);
	if (rc != 0) {
		str_errf(err, errlen, "cannot resolve %s: %s", s->minger_host, gai_strerror(rc));
		return -1;
	}
	size_t n = 0;
	for (struct addrinfo *a = res; a && n < max; a = a->ai_next) {
		if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
		    a->ai_addrlen > sizeof out[n].ss)
			continue;
		memset(&out[n], 0, sizeof out[n]);
		memcpy(&out[n].ss, a->ai_addr, a->ai_addrlen);
		out[n].len = a->ai_addrlen;
		n++;
	}
	freeaddrinfo(res);
	if (n == 0) {
		str_errf(err, errlen, "%s has no IPv4 or IPv6 address", s->minger_host);
		return -1;
	}
	return (int)n;
}

char *verify_servers_read_secret(const struct verify_server *s, char *err, size_t errlen)
{
	str_errf(err, errlen, "%s", "");
	if (!s->secret_file[0])
		return NULL;
	struct strlist l = {0};
	struct conf_errors errs = {0};
	char *secret = NULL;
	if (conf_read_secrets(s->secret_file, &l, &errs) >= 1 && l.n >= 1) {
		if (!(secret = strdup(l.v[0])))
			str_errf(err, errlen, "out of memory");
	} else {
		const struct conf_error *e = errs.n ? &errs.v[0] : NULL;
		if (e && e->line)
			str_errf(err, errlen, "%s:%d: %s", e->file, e->line, e->message);
		else
			str_errf(err, errlen, "%s: %s", s->secret_file,
			         e ? e->message : "no usable secret");
	}
	for (size_t i = 0; i < l.n; i++)
		explicit_bzero(l.v[i], strlen(l.v[i]));
	strlist_free(&l);
	conf_errors_free(&errs);
	return secret;
}
