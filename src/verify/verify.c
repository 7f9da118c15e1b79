/*
 * verify: the recipient and sender verdicts (verify.h), the policy "local
 * mailbox, then cache, then ask, then record".
 *
 * Servers are "targets": the Domain Sharing peers (domain_sharing_host) and the
 * Minger servers of gateway_domain and forward_domain lines, each read at
 * verify_new (secret loaded, names resolved once). A request asks several
 * targets at once, one datagram each, all sent in the same turn of the loop
 * (the cold cost is one parallel round trip whatever the number of peers), and
 * decides (decide()) when a peer says 5 or when every target has answered or
 * given up. What a target answered is recorded in the cache (vcache_live: in
 * memory at once, in SQLite on the background thread).
 *
 * Decisions (verify.h, ISSUE 8 item 4): a 5 wins at once; otherwise any target
 * without an answer (timeout, status 0-2) makes it TEMPFAIL (451, never 5xx),
 * except a gateway with unreachable=accept, which then accepts; otherwise a 4
 * is REMOTE_DISABLED, and only "every target said 3" is NOTFOUND.
 *
 * What is cached: a peer's 5, for domain_sharing_cache_ttl (MDaemon's "cached
 * for five days", so later mail is accepted at once even while the peer is
 * down); a gateway's or forward server's 3, 4 and 5 with minger_cache_*_ttl. A
 * peer's 3 is not cached: an account created there must be found at once.
 */
#include "verify/verify.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "proto/mailaddr.h"
#include "proto/peer_spec.h"
#include "util/log.h"
#include "util/strutil.h"
#include "util/timeutil.h"
#include "verify/bgwork.h"
#include "verify/minger_evclient.h"
#include "verify/vcache_live.h"
#include "verify/verify_status.h"

#define VR_PENDING (-100) /* a target's result before its answer */
#define V_ADDRS_MAX 16 /* resolved addresses kept per peer, for verify_client_is_peer */
#define V_DOMAIN_LINE_MAX 512
#define V_SHARED_MAX 100000 /* lines of domain_sharing_domains_file */

static struct log_limit fail_limit = LOG_LIMIT_INIT(20, 10);

struct vtarget {
	enum verify_status_kind kind;
	char name[VERIFY_STATUS_NAME_MAX]; /* peer HOST:PORT, or the domain */
	struct netaddr minger;
	char key[VERIFY_STATUS_ADDR_MAX]; /* the cache's server key: netaddr_format(minger) */
	char route[ENVELOPE_ROUTE_MAX + 1]; /* peer: "[HOST]:PORT"; gateway, forward: "" */
	char *secret; /* owned; wiped at free */
	struct minger_slot_cfg cfg;
	/* gateway and forward lines */
	char domain[NEXTHOP_NAME_MAX + 1];
	int accept_unreachable;
	int ask_peers;
	/* peers: the addresses the peer's name resolved to */
	struct netaddr addrs[V_ADDRS_MAX];
	size_t naddrs;
	/* peers.status */
	int64_t last_answer;
	uint64_t rtt_last_us, rtt_sum_us, answers, queries, failures;
};

struct verify {
	struct event_base *base;
	const struct conf *c;
	struct mailbox_index *idx;
	unsigned flags;
	struct vtarget *peers, *gws; /* gws: gateway then forward lines */
	size_t npeers, ngws;
	char **shared; /* domain_sharing_domains_file, lower case; none: every local domain */
	size_t nshared;
	struct minger_evclient *mc;
	struct bgwork *bg;
	struct vcache_live *cache; /* NULL: minger_cache = no, or no targets */
	struct event *status_timer;
	int status_dirty;
	char status_path[4096];
	struct verify_req *reqs; /* open requests */
};

struct vr_target {
	struct verify_req *r;
	struct vtarget *t;
	struct minger_evq *q;
	int result; /* VR_PENDING, a status 0-5 or MINGER_RESULT_* */
};

struct verify_req {
	struct verify *v;
	struct verify_req *next, *prev;
	verify_cb cb;
	void *arg;
	struct vtarget *gw; /* NULL: Domain Sharing only */
	char mailbox[MAILADDR_MAX + 1];
	size_t len;
	struct verify_answer ans; /* the local part of the answer, filled before asking */
	size_t n, pending;
	struct vr_target t[];
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- start-up: targets ---- */

/* A path of a line relative to the config file's folder (as conf does for PATH keys). */
static int resolve_path(const struct conf *c, const char *p, char *out, size_t outsz)
{
	const char *slash = c->path ? strrchr(c->path, '/') : NULL;
	int n = p[0] == '/' || !slash
	                ? snprintf(out, outsz, "%s", p)
	                : snprintf(out, outsz, "%.*s/%s", (int)(slash - c->path), c->path, p);
	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

/* The first secret of file (conf_read_secrets' rules) into t->secret. 0 or -1 with err. */
static int load_secret(const struct conf *c, struct vtarget *t, const char *key, const char *line,
                       const char *file, char *err, size_t errlen)
{
	char path[4096];
	if (resolve_path(c, file, path, sizeof path) < 0) {
		set_err(err, errlen, "%s: %s '%s': secret_file path too long", c->path, key, line);
		return -1;
	}
	struct stat st;
	if (stat(path, &st) == 0 && (st.st_mode & 077))
		log_warning("%s: %s '%s': secret_file %s has mode %04o: group or others may read "
		            "the secret (chmod 600 it)",
		            c->path, key, line, path, (unsigned)(st.st_mode & 07777));
	struct strlist s = {0};
	struct conf_errors errs = {0};
	if (conf_read_secrets(path, &s, &errs) < 1 || s.n < 1) {
		const struct conf_error *e = errs.n ? &errs.v[0] : NULL;
		if (e && e->line)
			set_err(err, errlen, "%s: %s '%s': %s:%d: %s", c->path, key, line, e->file,
			        e->line, e->message);
		else
			set_err(err, errlen, "%s: %s '%s': %s: %s", c->path, key, line, path,
			        e ? e->message : "no usable secret");
		conf_errors_free(&errs);
		strlist_free(&s);
		return -1;
	}
	conf_errors_free(&errs);
	t->secret = strdup(s.v[0]);
	for (size_t i = 0; i < s.n; i++)
		explicit_bzero(s.v[i], strlen(s.v[i]));
	strlist_free(&s);
	if (!t->secret) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/*
 * Resolves host (getaddrinfo, once, at start) into up to max addresses with port.
 * Returns the count, or -1 with err naming the line.
 */
static int resolve(const struct conf *c, const char *key, const char *line, const char *host,
                   unsigned port, struct netaddr *out, size_t max, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char ps[8];
	snprintf(ps, sizeof ps, "%u", port);
	int rc = getaddrinfo(host, ps, &hints, &res);
	if (rc != 0) {
		set_err(err, errlen, "%s: %s '%s': cannot resolve %s: %s", c->path, key, line, host,
		        gai_strerror(rc));
		return -1;
	}
	size_t n = 0;
	for (struct addrinfo *a = res; a && n < max; a = a->ai_next) {
		if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
		    a->ai_addrlen > sizeof out[n].ss)
			continue;
		memcpy(&out[n].ss, a->ai_addr, a->ai_addrlen);
		out[n].len = a->ai_addrlen;
		n++;
	}
	freeaddrinfo(res);
	if (n == 0) {
		set_err(err, errlen, "%s: %s '%s': %s has no IPv4 or IPv6 address", c->path, key,
		        line, host);
		return -1;
	}
	return (int)n;
}

/* The secret and the reply-mac rule shared by every kind of line. */
static int target_secret(const struct conf *c, struct vtarget *t, const char *key, const char *line,
                         const char *file, char *err, size_t errlen)
{
	if (file[0] && load_secret(c, t, key, line, file, err, errlen) < 0)
		return -1;
	t->cfg.secret = t->secret;
	t->cfg.ext = t->secret != NULL;
	t->cfg.require_reply_mac = c->minger_require_reply_mac && t->secret;
	if (c->minger_require_reply_mac && !t->secret) {
		set_err(err, errlen,
		        "%s: %s '%s': minger_require_reply_mac = yes needs a secret_file= here",
		        c->path, key, line);
		return -1;
	}
	netaddr_format((const struct sockaddr *)&t->minger.ss, t->key, sizeof t->key);
	return 0;
}

static int peer_init(const struct conf *c, const char *line, struct vtarget *t, char *err,
                     size_t errlen)
{
	static const char key[] = "domain_sharing_host";
	struct peer_spec_peer p;
	char why[256];
	if (peer_spec_parse_peer(line, &p, why, sizeof why) < 0) {
		set_err(err, errlen, "%s: %s '%s': %s", c->path, key, line, why);
		return -1;
	}
	t->kind = VERIFY_STATUS_PEER;
	snprintf(t->name, sizeof t->name, strchr(p.smtp.host, ':') ? "[%s]:%u" : "%s:%u",
	         p.smtp.host, p.smtp.port);
	if (nexthop_spec_format_peer(p.smtp.host, p.smtp.port, t->route, sizeof t->route) < 0) {
		set_err(err, errlen, "%s: %s '%s': host name too long", c->path, key, line);
		return -1;
	}
	int n = resolve(c, key, line, p.smtp.host, p.minger_port, t->addrs, V_ADDRS_MAX, err,
	                errlen);
	if (n < 0)
		return -1;
	t->naddrs = (size_t)n;
	t->minger = t->addrs[0];
	return target_secret(c, t, key, line, p.secret_file, err, errlen);
}

static int gateway_init(const struct conf *c, const char *line, int forward, struct vtarget *t,
                        char *err, size_t errlen)
{
	const char *key = forward ? "forward_domain" : "gateway_domain";
	struct peer_spec_gateway g;
	char why[256];
	if (peer_spec_parse_gateway(line, forward, &g, why, sizeof why) < 0) {
		set_err(err, errlen, "%s: %s '%s': %s", c->path, key, line, why);
		return -1;
	}
	t->kind = forward ? VERIFY_STATUS_FORWARD : VERIFY_STATUS_GATEWAY;
	snprintf(t->domain, sizeof t->domain, "%s", g.domain);
	snprintf(t->name, sizeof t->name, "%s", g.domain);
	t->accept_unreachable = g.unreachable == PEER_SPEC_UNREACHABLE_ACCEPT;
	t->ask_peers = g.domain_sharing;
	if (resolve(c, key, line, g.minger.host, g.minger.port, &t->minger, 1, err, errlen) < 0)
		return -1;
	return target_secret(c, t, key, line, g.secret_file, err, errlen);
}

static int targets_init(struct verify *v, char *err, size_t errlen)
{
	const struct conf *c = v->c;
	size_t ng = c->gateway_domain.n + c->forward_domain.n;
	v->peers = calloc(c->domain_sharing_host.n + 1, sizeof *v->peers);
	v->gws = calloc(ng + 1, sizeof *v->gws);
	if (!v->peers || !v->gws) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < c->domain_sharing_host.n; i++, v->npeers++)
		if (peer_init(c, c->domain_sharing_host.v[i], &v->peers[i], err, errlen) < 0)
			return -1;
	for (size_t i = 0; i < ng; i++, v->ngws++) {
		int fwd = i >= c->gateway_domain.n;
		const char *line =
		        fwd ? c->forward_domain.v[i - c->gateway_domain.n] : c->gateway_domain.v[i];
		if (gateway_init(c, line, fwd, &v->gws[i], err, errlen) < 0)
			return -1;
		for (size_t k = 0; k < i; k++)
			if (strcmp(v->gws[k].domain, v->gws[i].domain) == 0) {
				set_err(err, errlen,
				        "%s: %s '%s': %s has two gateway or forward lines", c->path,
				        fwd ? "forward_domain" : "gateway_domain", line,
				        v->gws[i].domain);
				v->ngws++; /* freed with the others */
				return -1;
			}
	}
	return 0;
}

/* ---- start-up: the shared domains ---- */

static int shared_add(struct verify *v, const char *d, size_t len)
{
	char **nv = realloc(v->shared, (v->nshared + 1) * sizeof *nv);
	if (!nv)
		return -1;
	v->shared = nv;
	if (!(nv[v->nshared] = malloc(len + 1)))
		return -1;
	nexthop_name_copy(nv[v->nshared], d, len);
	v->nshared++;
	return 0;
}

/* One line of the file: a domain, or blank, or a '#' comment. 0 or -1 with *why. */
static int shared_line(struct verify *v, char *s, const char **why)
{
	size_t len = strlen(s);
	while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' ||
	               s[len - 1] == '\t'))
		s[--len] = '\0';
	while (*s == ' ' || *s == '\t')
		s++, len--;
	if (len == 0 || s[0] == '#')
		return 0;
	if (!nexthop_name_valid(s, len)) {
		*why = "not a domain name";
		return -1;
	}
	if (!conf_is_local_domain(v->c, s, len)) {
		*why = "not one of local_domains";
		return -1;
	}
	if (v->nshared >= V_SHARED_MAX || shared_add(v, s, len) < 0) {
		*why = "too many domains (or out of memory)";
		return -1;
	}
	return 0;
}

/* Reads domain_sharing_domains_file: absent or empty = every local domain (the seed). */
static int shared_init(struct verify *v, char *err, size_t errlen)
{
	const char *path = v->c->domain_sharing_domains_file;
	if (!path || !*path)
		return 0;
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	char line[V_DOMAIN_LINE_MAX];
	int lineno = 0, rc = 0;
	while (rc == 0 && fgets(line, sizeof line, f)) {
		lineno++;
		const char *why = "line too long";
		size_t len = strlen(line);
		if ((len == sizeof line - 1 && line[len - 1] != '\n') ||
		    shared_line(v, line, &why)) {
			set_err(err, errlen, "%s:%d: %s", path, lineno, why);
			rc = -1;
		}
	}
	fclose(f);
	return rc;
}

/* ---- peers.status ---- */

struct status_job {
	char path[4096];
	size_t len;
	char text[];
};

static void status_write_job(void *arg)
{
	struct status_job *j = arg;
	if (verify_status_write(j->path, j->text, j->len) < 0)
		log_warning("cannot write %s: %s", j->path, strerror(errno));
	free(j);
}

static void target_entry(const struct vtarget *t, struct verify_status_entry *e)
{
	memset(e, 0, sizeof *e);
	e->kind = t->kind;
	snprintf(e->name, sizeof e->name, "%s", t->name);
	snprintf(e->minger_addr, sizeof e->minger_addr, "%s", t->key);
	e->last_answer = t->last_answer;
	e->rtt_last_us = t->rtt_last_us;
	e->rtt_avg_us = t->answers ? t->rtt_sum_us / t->answers : 0;
	e->queries = t->queries;
	e->failures = t->failures;
}

/* Formats the status on the loop (microseconds) and hands the file write to bgwork. */
static void status_post(struct verify *v)
{
	size_t n = v->npeers + v->ngws;
	struct verify_status_entry *e = calloc(n + 1, sizeof *e);
	size_t cap = (n + 1) * (VERIFY_STATUS_NAME_MAX + VERIFY_STATUS_ADDR_MAX + 128);
	struct status_job *j = malloc(sizeof *j + cap);
	if (!e || !j)
		goto out;
	for (size_t i = 0; i < v->npeers; i++)
		target_entry(&v->peers[i], &e[i]);
	for (size_t i = 0; i < v->ngws; i++)
		target_entry(&v->gws[i], &e[v->npeers + i]);
	int len = verify_status_format(e, n, j->text, cap);
	if (len < 0)
		goto out;
	j->len = (size_t)len;
	snprintf(j->path, sizeof j->path, "%s", v->status_path);
	if (bgwork_post(v->bg, status_write_job, j) == 0)
		j = NULL;
	v->status_dirty = 0;
out:
	free(e);
	free(j);
}

static void on_status_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct verify *v = arg;
	if (v->status_dirty)
		status_post(v);
}

static void bg_tick(void *arg)
{
	struct verify *v = arg;
	if (v->cache)
		vcache_live_tick(v->cache);
}

static int services_init(struct verify *v, char *err, size_t errlen)
{
	const struct conf *c = v->c;
	if (v->npeers + v->ngws == 0)
		return 0;
	v->mc = minger_evclient_new(v->base, c->minger_timeout_ms, c->minger_retries, err, errlen);
	v->bg = bgwork_new(bg_tick, v, 1000);
	if (!v->mc || !v->bg) {
		if (v->bg)
			set_err(err, errlen, "cannot start the verifier's thread");
		return -1;
	}
	char path[4096];
	if (c->minger_cache && conf_state_path(c, "vcache.db", path, sizeof path) == 0) {
		v->cache = vcache_live_open(path, v->bg, err, errlen);
		if (!v->cache)
			return -1;
	}
	if (!(v->flags & VERIFY_FLAG_NO_STATUS) &&
	    conf_state_path(c, VERIFY_STATUS_FILE, v->status_path, sizeof v->status_path) == 0) {
		struct timeval tv = {1, 0};
		v->status_timer = event_new(v->base, -1, EV_PERSIST, on_status_timer, v);
		if (!v->status_timer || event_add(v->status_timer, &tv) != 0) {
			set_err(err, errlen, "cannot arm the status timer");
			return -1;
		}
		status_post(v); /* the servers are listed before any query */
	}
	return 0;
}

struct verify *verify_new_flags(struct event_base *base, const struct conf *c,
                                struct mailbox_index *idx, unsigned flags, char *err, size_t errlen)
{
	struct verify *v = calloc(1, sizeof *v);
	if (!v) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	v->base = base;
	v->c = c;
	v->idx = idx;
	v->flags = flags;
	if (targets_init(v, err, errlen) < 0 || shared_init(v, err, errlen) < 0 ||
	    services_init(v, err, errlen) < 0) {
		verify_free(v);
		return NULL;
	}
	return v;
}

struct verify *verify_new(struct event_base *base, const struct conf *c, struct mailbox_index *idx,
                          char *err, size_t errlen)
{
	return verify_new_flags(base, c, idx, 0, err, errlen);
}

static void req_free(struct verify_req *r);

static void targets_free(struct vtarget *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].secret) {
			explicit_bzero(t[i].secret, strlen(t[i].secret));
			free(t[i].secret);
		}
	free(t);
}

void verify_free(struct verify *v)
{
	if (!v)
		return;
	while (v->reqs)
		req_free(v->reqs);
	if (v->status_timer) {
		if (v->status_dirty)
			status_post(v);
		event_free(v->status_timer);
	}
	minger_evclient_free(v->mc);
	bgwork_free(v->bg); /* runs the queued cache writes and status file first */
	vcache_live_close(v->cache);
	targets_free(v->peers, v->npeers);
	targets_free(v->gws, v->ngws);
	for (size_t i = 0; i < v->nshared; i++)
		free(v->shared[i]);
	free(v->shared);
	free(v);
}

/* ---- the decision ---- */

static int answered(int result)
{
	return result >= 3 && result <= 5;
}

static const char *result_word(int result)
{
	if (result == MINGER_RESULT_TIMEOUT)
		return "no answer";
	if (result == MINGER_RESULT_ERROR)
		return "could not be asked";
	if (result == VR_PENDING)
		return "not asked";
	return result == 2   ? "status 2 (credentials refused)"
	       : result == 1 ? "status 1 (denied)"
	                     : "status 0 (malformed)";
}

/* "peer b.example:25 (192.0.2.7:4069)", bounded so a reason line always fits. */
struct vlabel {
	char s[100];
};

static struct vlabel label(const struct vtarget *t)
{
	struct vlabel l;
	snprintf(l.s, sizeof l.s, "%s %.48s (%.40s)", verify_status_kind_name(t->kind), t->name,
	         t->key);
	return l;
}

static void answer_remote(struct verify_answer *a, const struct vtarget *t)
{
	a->status = VERIFY_REMOTE;
	snprintf(a->route, sizeof a->route, "%s", t->route);
	snprintf(a->reason, sizeof a->reason, "%s: 5", label(t).s);
}

/*
 * The verdict from the targets' results (the rules at the top of this file).
 * Returns the failing target (to log) for a TEMPFAIL, else NULL.
 */
static const struct vr_target *decide(const struct vr_target *t, size_t n, const struct vtarget *gw,
                                      struct verify_answer *a)
{
	a->servers_asked = 1; /* other servers decide: a TEMPFAIL is 4.4.3, their reason logged */
	for (size_t i = 0; i < n; i++)
		if (t[i].result == 5) {
			answer_remote(a, t[i].t);
			return NULL;
		}
	if (gw && !answered(t[0].result) && gw->accept_unreachable) {
		a->status = VERIFY_REMOTE;
		a->route[0] = '\0';
		snprintf(a->reason, sizeof a->reason, "%s: %s, accepted (unreachable)", label(gw).s,
		         result_word(t[0].result));
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (!answered(t[i].result)) {
			a->status = VERIFY_TEMPFAIL;
			snprintf(a->reason, sizeof a->reason, "%s: %s", label(t[i].t).s,
			         result_word(t[i].result));
			return &t[i];
		}
	for (size_t i = 0; i < n; i++)
		if (t[i].result == 4) {
			a->status = VERIFY_REMOTE_DISABLED;
			snprintf(a->reason, sizeof a->reason, "%s: 4 (cannot receive)",
			         label(t[i].t).s);
			return NULL;
		}
	a->status = VERIFY_NOTFOUND;
	snprintf(a->reason, sizeof a->reason, "%zu server%s asked: 3", n, n == 1 ? "" : "s");
	return NULL;
}

static void log_failure(const struct vr_target *f, const char *mailbox)
{
	if (f && log_limit_allow(&fail_limit))
		log_warning("verify: %s %s (%s) gave %s for %s: answering 451",
		            verify_status_kind_name(f->t->kind), f->t->name, f->t->key,
		            result_word(f->result), mailbox);
}

/* ---- the cache ---- */

/* What the cache knows of (target, mailbox): a status, or VR_PENDING. Peers: only 5. */
static int cache_lookup(const struct verify *v, const struct vtarget *t, const char *mailbox)
{
	int st;
	if (!v->cache || vcache_live_get(v->cache, t->key, mailbox, &st) != 1)
		return VR_PENDING;
	if (t->kind == VERIFY_STATUS_PEER && st != 5)
		return VR_PENDING;
	return st;
}

static void cache_record(struct verify *v, const struct vtarget *t, const char *mailbox, int st)
{
	const struct conf *c = v->c;
	if (!v->cache || !answered(st))
		return;
	int ttl = t->kind == VERIFY_STATUS_PEER
	                  ? (st == 5 ? c->domain_sharing_cache_ttl : 0)
	                  : (st == 3 ? c->minger_cache_negative_ttl : c->minger_cache_positive_ttl);
	if (ttl > 0 && vcache_live_put(v->cache, t->key, mailbox, st, ttl) < 0)
		log_warning("verify: cannot cache %s for %s", mailbox, t->key);
}

/* ---- requests ---- */

static void req_unlink(struct verify_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		r->v->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
}

/* Cancels the queries still out and frees the request (no callback). */
static void req_free(struct verify_req *r)
{
	for (size_t i = 0; i < r->n; i++)
		minger_evclient_cancel(r->t[i].q);
	req_unlink(r);
	free(r);
}

static void target_stats(struct verify *v, struct vtarget *t, int result, uint64_t rtt_us)
{
	if (result >= 0) {
		t->last_answer = time_wall_s();
		t->rtt_last_us = rtt_us;
		t->rtt_sum_us += rtt_us;
		t->answers++;
	}
	if (!answered(result))
		t->failures++;
	v->status_dirty = 1;
}

static void req_finish(struct verify_req *r)
{
	struct verify_answer a = r->ans;
	log_failure(decide(r->t, r->n, r->gw, &a), r->mailbox);
	verify_cb cb = r->cb;
	void *arg = r->arg;
	for (size_t i = 0; i < r->n; i++)
		r->t[i].q = NULL; /* each has ended or is cancelled below */
	req_free(r);
	cb(arg, &a);
}

static void on_result(void *arg, int result, uint64_t rtt_us)
{
	struct vr_target *vt = arg;
	struct verify_req *r = vt->r;
	struct verify *v = r->v;
	vt->q = NULL;
	vt->result = result;
	target_stats(v, vt->t, result, rtt_us);
	cache_record(v, vt->t, r->mailbox, result);
	r->pending--;
	if (result == 5) {
		for (size_t i = 0; i < r->n; i++) {
			minger_evclient_cancel(
			        r->t[i].q); /* the first 5 decides: the rest are moot */
			r->t[i].q = NULL;
		}
		r->pending = 0;
	}
	if (r->pending == 0)
		req_finish(r);
}

/*
 * Asks the targets of one verdict: gw (if any) first, then the peers (when
 * with_peers). Fills out and returns 0 when the cache decides or nothing could
 * be sent; else returns 1 with *req set.
 */
static int ask(struct verify *v, struct vtarget *gw, int with_peers, const char *mailbox,
               size_t len, struct verify_answer *out, verify_cb cb, void *arg,
               struct verify_req **req)
{
	size_t n = (gw != NULL) + (with_peers ? v->npeers : 0);
	struct verify_req *r = calloc(1, sizeof *r + n * sizeof r->t[0]);
	if (!r || len > MAILADDR_MAX || n == 0) {
		free(r);
		out->status = VERIFY_TEMPFAIL;
		out->servers_asked = 1;
		snprintf(out->reason, sizeof out->reason, "%s", n ? "out of memory" : "no server");
		return 0;
	}
	r->v = v, r->cb = cb, r->arg = arg, r->gw = gw, r->n = n, r->len = len, r->ans = *out;
	/* The caller's sender buffer may be gone by the callback: the answer never points at it. */
	r->ans.local.sender = NULL;
	r->ans.local.sender_len = 0;
	memcpy(r->mailbox, mailbox, len);
	size_t k = 0, need = 0;
	if (gw)
		r->t[k++].t = gw;
	for (size_t i = 0; with_peers && i < v->npeers; i++)
		r->t[k++].t = &v->peers[i];
	int hit5 = 0;
	for (size_t i = 0; i < n; i++) {
		r->t[i].r = r;
		r->t[i].result = cache_lookup(v, r->t[i].t, r->mailbox);
		hit5 |= r->t[i].result == 5;
		need += r->t[i].result == VR_PENDING;
	}
	if (!hit5 && need > 0) {
		/* Every datagram leaves now, before any answer is read: one parallel round. */
		for (size_t i = 0; i < n; i++) {
			if (r->t[i].result != VR_PENDING)
				continue;
			r->t[i].q =
			        minger_evclient_query(v->mc, &r->t[i].t->minger, &r->t[i].t->cfg,
			                              r->mailbox, len, on_result, &r->t[i]);
			r->t[i].t->queries++;
			v->status_dirty = 1;
			if (r->t[i].q) {
				r->pending++;
			} else {
				r->t[i].result = MINGER_RESULT_ERROR;
				r->t[i].t->failures++;
			}
		}
		if (r->pending > 0) {
			r->next = v->reqs;
			if (r->next)
				r->next->prev = r;
			v->reqs = r;
			*req = r;
			return 1;
		}
	}
	log_failure(decide(r->t, n, gw, out), r->mailbox);
	out->cached = need == 0 || hit5;
	free(r);
	return 0;
}

/* ---- the verdicts ---- */

static int domain_shared(const struct verify *v, const char *d, size_t len)
{
	if (!v->c->domain_sharing || v->npeers == 0)
		return 0;
	if (v->nshared == 0)
		return 1; /* the file is empty or absent: every local domain */
	for (size_t i = 0; i < v->nshared; i++)
		if (strlen(v->shared[i]) == len && ascii_equal_ci(d, len, v->shared[i]))
			return 1;
	return 0;
}

static struct vtarget *gateway_for(struct verify *v, const char *d, size_t len)
{
	for (size_t i = 0; i < v->ngws; i++)
		if (strlen(v->gws[i].domain) == len && ascii_equal_ci(d, len, v->gws[i].domain))
			return &v->gws[i];
	return NULL;
}

/* The local index's answer (an index of NULL has no mailboxes: the CLI). */
static enum lookup_result local_lookup(struct verify *v, const char *mailbox, size_t len,
                                       struct verify_answer *out)
{
	if (!v->idx)
		return LOOKUP_NOTFOUND;
	return mailbox_lookup(v->idx, mailbox, len, &out->local);
}

static int verdict(struct verify *v, int sender, const char *mailbox, size_t len, const char *from,
                   size_t from_len, struct verify_answer *out, verify_cb cb, void *arg,
                   struct verify_req **req)
{
	memset(out, 0, sizeof *out);
	struct mailaddr a;
	if (mailaddr_parse_exact(mailbox, len, &a) != MAILADDR_OK || a.literal ||
	    a.domain_len == 0) {
		out->status = VERIFY_FOREIGN;
		return 0;
	}
	if (conf_is_local_domain(v->c, a.domain, a.domain_len)) {
		out->local.sender = from;
		out->local.sender_len = from_len;
		switch (local_lookup(v, mailbox, len, out)) {
		case LOOKUP_FOUND: out->status = VERIFY_LOCAL; return 0;
		case LOOKUP_NOTFOUND: break;
		default:
			out->status = VERIFY_TEMPFAIL;
			snprintf(out->reason, sizeof out->reason, "the directory could not answer");
			return 0;
		}
		out->status = VERIFY_NOTFOUND;
		if (!domain_shared(v, a.domain, a.domain_len) ||
		    (sender && !v->c->domain_sharing_query_senders))
			return 0;
		return ask(v, NULL, 1, mailbox, len, out, cb, arg, req);
	}
	struct vtarget *gw = sender ? NULL : gateway_for(v, a.domain, a.domain_len);
	if (!gw) {
		out->status = VERIFY_FOREIGN;
		return 0;
	}
	return ask(v, gw, gw->ask_peers && v->npeers > 0, mailbox, len, out, cb, arg, req);
}

int verify_rcpt(struct verify *v, const char *mailbox, size_t len, const char *sender,
                size_t sender_len, struct verify_answer *out, verify_cb cb, void *arg,
                struct verify_req **req)
{
	return verdict(v, 0, mailbox, len, sender, sender_len, out, cb, arg, req);
}

int verify_sender(struct verify *v, const char *mailbox, size_t len, struct verify_answer *out,
                  verify_cb cb, void *arg, struct verify_req **req)
{
	return verdict(v, 1, mailbox, len, NULL, 0, out, cb, arg, req);
}

void verify_cancel(struct verify_req *req)
{
	if (req)
		req_free(req);
}

/* The client's address: "192.0.2.7", "192.0.2.7:25", "2001:db8::1", "[2001:db8::1]:25". */
static int client_parse(const char *s, int *family, unsigned char bytes[16])
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *start = s, *end = s + strlen(s);
	if (*s == '[') {
		start = s + 1;
		end = strchr(start, ']');
		if (!end)
			return -1;
	} else if (strchr(s, '.') && strchr(s, ':') && !strchr(strchr(s, ':') + 1, ':')) {
		end = strchr(s, ':'); /* IPv4 with a port */
	}
	if ((size_t)(end - start) >= sizeof buf)
		return -1;
	memcpy(buf, start, (size_t)(end - start));
	buf[end - start] = '\0';
	if (inet_pton(AF_INET, buf, bytes) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, bytes) != 1)
		return -1;
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(bytes, mapped, 12) == 0) {
		memmove(bytes, bytes + 12, 4); /* ::ffff:a.b.c.d is the IPv4 peer */
		*family = AF_INET;
		return 0;
	}
	*family = AF_INET6;
	return 0;
}

static int addr_is(const struct netaddr *na, int family, const unsigned char *bytes)
{
	if (na->ss.ss_family != family)
		return 0;
	if (family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)&na->ss)->sin_addr, bytes, 4) == 0;
	return memcmp(&((const struct sockaddr_in6 *)&na->ss)->sin6_addr, bytes, 16) == 0;
}

int verify_client_is_peer(const struct verify *v, const char *client_addr)
{
	int family;
	unsigned char bytes[16];
	if (!v || !client_addr || client_parse(client_addr, &family, bytes) < 0)
		return 0;
	for (size_t i = 0; i < v->npeers; i++)
		for (size_t k = 0; k < v->peers[i].naddrs; k++)
			if (addr_is(&v->peers[i].addrs[k], family, bytes))
				return 1;
	return 0;
}

size_t verify_pending(const struct verify *v)
{
	size_t n = 0;
	for (const struct verify_req *r = v->reqs; r; r = r->next)
		n++;
	return n;
}

void verify_sync(struct verify *v)
{
	if (v && v->bg) {
		if (v->status_dirty && v->status_timer)
			status_post(v);
		bgwork_sync(v->bg);
	}
}
