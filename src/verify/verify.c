/*
 * verify: the recipient and sender verdicts (verify.h), the policy "local
 * mailbox, then cache, then ask, then record".
 *
 * Servers are "targets": the Domain Sharing peers (domain_sharing_host) and the
 * Minger servers of gateway_domain and forward_domain lines, each read at
 * verify_new by verify_servers.h (secret loaded, names resolved once). A request asks several
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
 * With VERIFY_FLAG_FRESH (`account add`) nothing is read from the cache or
 * recorded, every target is waited for (a 5 cancels nothing), and the callback's
 * answer lists each target's result.
 */
#include "verify/verify.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "proto/mailaddr.h"
#include "proto/nexthop_spec.h"
#include "util/log.h"
#include "util/strutil.h"
#include "util/timeutil.h"
#include "verify/bgwork.h"
#include "verify/minger_evclient.h"
#include "verify/vcache_live.h"
#include "verify/verify_servers.h"
#include "verify/verify_status.h"

#define VR_PENDING (-100) /* a target's result before its answer */
#define V_DOMAIN_LINE_MAX 512
#define V_SHARED_MAX 100000 /* lines of domain_sharing_domains_file */

static struct log_limit fail_limit = LOG_LIMIT_INIT(20, 10);

struct vtarget {
	const struct verify_server *s; /* the line: kind, name, addresses, secret */
	struct minger_slot_cfg cfg;
	/* for answers and logs, made once: "peer b.example:25 (192.0.2.7:4069)" and its ": 5" */
	char label[100];
	char reason5[VERIFY_REASON_MAX];
	size_t reason5_len, route_len; /* strlen() of reason5 and of s->route */
	struct vcache_live_server ckey; /* s->addr_key as the cache's key, made once */
	/* peers.status */
	int64_t last_answer;
	uint64_t rtt_last_us, rtt_sum_us, answers, queries, failures;
};

struct verify {
	struct event_base *base;
	const struct conf *c;
	struct mailbox_index *idx;
	unsigned flags;
	struct verify_servers servers; /* the lines, read at start */
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
	/*
	 * The peers' cache keys in one array (peer_keys[i] is peers[i].ckey): which
	 * peer has an address is one walk of the cache's chain for it
	 * (vcache_live_find), so a cached answer costs one lookup however many
	 * peers there are.
	 */
	struct vcache_live_server *peer_keys;
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

/* ---- start-up: targets ---- */

/* A secret_file that group or others may read is worth a warning (as for minger_secret_file). */
static void secret_mode_warn(const struct conf *c, const struct verify_server *s)
{
	struct stat st;
	if (s->secret_file[0] && stat(s->secret_file, &st) == 0 && (st.st_mode & 077))
		log_warning("%s: %s '%s': secret_file %s has mode %04o: group or others may read "
		            "the secret (chmod 600 it)",
		            c->path, s->key, s->line, s->secret_file,
		            (unsigned)(st.st_mode & 07777));
}

/* The secret and the reply-mac rule shared by every kind of line. */
static int target_init(const struct conf *c, const struct verify_server *s, struct vtarget *t,
                       char *err, size_t errlen)
{
	t->s = s;
	t->cfg.secret = s->secret;
	t->cfg.ext = s->secret != NULL;
	t->cfg.require_reply_mac = c->minger_require_reply_mac && s->secret;
	if (c->minger_require_reply_mac && !s->secret) {
		str_errf(err, errlen,
		         "%s: %s '%s': minger_require_reply_mac = yes needs a secret_file= here",
		         c->path, s->key, s->line);
		return -1;
	}
	if (strlen(s->route) > ENVELOPE_ROUTE_MAX) { /* the queue keeps a route this long */
		str_errf(err, errlen, "%s: %s '%s': host name too long", c->path, s->key, s->line);
		return -1;
	}
	return 0;
}

static int targets_init(struct verify *v, char *err, size_t errlen)
{
	const struct conf *c = v->c;
	if (verify_servers_load(c, VERIFY_SERVERS_RESOLVE | VERIFY_SERVERS_SECRETS, &v->servers,
	                        err, errlen) < 0)
		return -1;
	size_t np = v->servers.npeers, ng = v->servers.n - np;
	v->peers = calloc(np + 1, sizeof *v->peers);
	v->gws = calloc(ng + 1, sizeof *v->gws);
	if (!v->peers || !v->gws) {
		str_errf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < v->servers.n; i++) {
		const struct verify_server *s = &v->servers.v[i];
		secret_mode_warn(c, s);
		struct vtarget *t = i < np ? &v->peers[v->npeers++] : &v->gws[v->ngws++];
		if (target_init(c, s, t, err, errlen) < 0)
			return -1;
		for (size_t k = 0; i >= np && k + 1 < v->ngws; k++)
			if (strcmp(v->gws[k].s->domain, s->domain) == 0) {
				str_errf(err, errlen,
				         "%s: %s '%s': %s has two gateway or forward lines",
				         c->path, s->key, s->line, s->domain);
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
		str_errf(err, errlen, "%s: %s", path, strerror(errno));
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
			str_errf(err, errlen, "%s:%d: %s", path, lineno, why);
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
	e->kind = t->s->kind;
	snprintf(e->name, sizeof e->name, "%s", t->s->name);
	snprintf(e->minger_addr, sizeof e->minger_addr, "%s", t->s->addr_key);
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
			str_errf(err, errlen, "cannot start the verifier's thread");
		return -1;
	}
	char path[4096];
	if (c->minger_cache && !(v->flags & VERIFY_FLAG_FRESH) &&
	    conf_state_path(c, "vcache.db", path, sizeof path) == 0) {
		v->cache = vcache_live_open(path, v->bg, err, errlen);
		if (!v->cache)
			return -1;
	}
	if (!(v->flags & VERIFY_FLAG_NO_STATUS) &&
	    conf_state_path(c, VERIFY_STATUS_FILE, v->status_path, sizeof v->status_path) == 0) {
		struct timeval tv = {1, 0};
		v->status_timer = event_new(v->base, -1, EV_PERSIST, on_status_timer, v);
		if (!v->status_timer || event_add(v->status_timer, &tv) != 0) {
			str_errf(err, errlen, "cannot arm the status timer");
			return -1;
		}
		status_post(v); /* the servers are listed before any query */
	}
	return 0;
}

/*
 * Labels every target once at start-up, bounded so a reason line always fits:
 * the warm path (a cached 5) then copies its answer instead of formatting it.
 */
static void targets_label(struct verify *v, struct vtarget *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		snprintf(t[i].label, sizeof t[i].label, "%s %.48s (%.40s)",
		         verify_status_kind_name(t[i].s->kind), t[i].s->name, t[i].s->addr_key);
		snprintf(t[i].reason5, sizeof t[i].reason5, "%s: 5", t[i].label);
		t[i].reason5_len = strlen(t[i].reason5);
		t[i].route_len = strnlen(t[i].s->route, ENVELOPE_ROUTE_MAX);
		t[i].ckey.id = VCACHE_LIVE_NO_SERVER;
		if (v->cache && vcache_live_server_make(v->cache, &t[i].ckey, t[i].s->addr_key) < 0)
			log_warning("verify: %s: answers not cached in memory", t[i].label);
	}
}

struct verify *verify_new_flags(struct event_base *base, const struct conf *c,
                                struct mailbox_index *idx, unsigned flags, char *err, size_t errlen)
{
	struct verify *v = calloc(1, sizeof *v);
	if (!v) {
		str_errf(err, errlen, "out of memory");
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
	targets_label(v, v->peers, v->npeers);
	targets_label(v, v->gws, v->ngws);
	/* Without the array the warm path asks the peers (slower, never wrong). */
	if (v->npeers > 0 && (v->peer_keys = calloc(v->npeers, sizeof *v->peer_keys)) != NULL)
		for (size_t i = 0; i < v->npeers; i++)
			v->peer_keys[i] = v->peers[i].ckey;
	return v;
}

struct verify *verify_new(struct event_base *base, const struct conf *c, struct mailbox_index *idx,
                          char *err, size_t errlen)
{
	return verify_new_flags(base, c, idx, 0, err, errlen);
}

static void req_free(struct verify_req *r);

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
	free(v->peer_keys);
	free(v->peers);
	free(v->gws);
	verify_servers_free(&v->servers); /* wipes the secrets */
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

/* The target's label, "peer b.example:25 (192.0.2.7:4069)" (targets_label()). */
static const char *label(const struct vtarget *t)
{
	return t->label;
}

static void answer_remote(struct verify_answer *a, const struct vtarget *t)
{
	a->status = VERIFY_REMOTE;
	memcpy(a->route, t->s->route, t->route_len);
	a->route[t->route_len] = '\0';
	memcpy(a->reason, t->reason5, t->reason5_len + 1); /* both bounded at start-up */
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
	if (gw && !answered(t[0].result) && gw->s->accept_unreachable) {
		a->status = VERIFY_REMOTE;
		a->route[0] = '\0';
		snprintf(a->reason, sizeof a->reason, "%s: %s, accepted (unreachable)", label(gw),
		         result_word(t[0].result));
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (!answered(t[i].result)) {
			a->status = VERIFY_TEMPFAIL;
			snprintf(a->reason, sizeof a->reason, "%s: %s", label(t[i].t),
			         result_word(t[i].result));
			return &t[i];
		}
	for (size_t i = 0; i < n; i++)
		if (t[i].result == 4) {
			a->status = VERIFY_REMOTE_DISABLED;
			snprintf(a->reason, sizeof a->reason, "%s: 4 (cannot receive)",
			         label(t[i].t));
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
		            verify_status_kind_name(f->t->s->kind), f->t->s->name,
		            f->t->s->addr_key, result_word(f->result), mailbox);
}

/* ---- the cache ---- */

/* What the cache knows of (target, address key): a status, or VR_PENDING. Peers: only 5. */
static int cache_lookup(const struct verify *v, const struct vtarget *t,
                        const struct vcache_live_addr *k)
{
	int st;
	if (!v->cache || vcache_live_get_key(v->cache, &t->ckey, k, &st) != 1)
		return VR_PENDING;
	if (t->s->kind == VERIFY_STATUS_PEER && st != 5)
		return VR_PENDING;
	return st;
}

static void cache_record(struct verify *v, const struct vtarget *t, const char *mailbox, int st)
{
	const struct conf *c = v->c;
	if (!v->cache || !answered(st))
		return;
	int ttl = t->s->kind == VERIFY_STATUS_PEER
	                  ? (st == 5 ? c->domain_sharing_cache_ttl : 0)
	                  : (st == 3 ? c->minger_cache_negative_ttl : c->minger_cache_positive_ttl);
	if (ttl > 0 && vcache_live_put(v->cache, t->s->addr_key, mailbox, st, ttl) < 0)
		log_warning("verify: cannot cache %s for %s", mailbox, t->s->addr_key);
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
	struct verify_server_result *res = NULL;
	log_failure(decide(r->t, r->n, r->gw, &a), r->mailbox);
	if ((r->v->flags & VERIFY_FLAG_FRESH) && (res = calloc(r->n, sizeof *res))) {
		for (size_t i = 0; i < r->n; i++)
			res[i] = (struct verify_server_result){r->t[i].t->s, r->t[i].result};
		a.servers = res;
		a.nservers = r->n;
	}
	verify_cb cb = r->cb;
	void *arg = r->arg;
	for (size_t i = 0; i < r->n; i++)
		r->t[i].q = NULL; /* each has ended or is cancelled below */
	req_free(r);
	cb(arg, &a);
	free(res);
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
	if (result == 5 && !(v->flags & VERIFY_FLAG_FRESH)) {
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
 * The warm path: a cached 5 from a target (gw first, then the peers, the order
 * decide() takes) answers at once, without allocating or formatting. Returns 1
 * with *out filled, else 0.
 */
static int cached_remote(struct verify *v, const struct vtarget *gw, int with_peers,
                         const struct vcache_live_addr *key, struct verify_answer *out)
{
	if (!v->cache)
		return 0;
	const struct vtarget *hit = NULL;
	if (gw && cache_lookup(v, gw, key) == 5)
		hit = gw;
	size_t i;
	if (!hit && with_peers && v->peer_keys &&
	    vcache_live_find(v->cache, v->peer_keys, v->npeers, key, 5, &i) == 1)
		hit = &v->peers[i];
	if (!hit)
		return 0;
	answer_remote(out, hit);
	out->servers_asked = 1;
	out->cached = 1;
	return 1;
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
	struct vcache_live_addr key; /* folded and hashed once for every lookup below */
	int keyed = len <= MAILADDR_MAX && vcache_live_addr_make(&key, mailbox, len) == 0;
	if (keyed && cached_remote(v, gw, with_peers, &key, out))
		return 0;
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
		r->t[i].result = keyed ? cache_lookup(v, r->t[i].t, &key) : VR_PENDING;
		hit5 |= r->t[i].result == 5;
		need += r->t[i].result == VR_PENDING;
	}
	if (!hit5 && need > 0) {
		/* Every datagram leaves now, before any answer is read: one parallel round. */
		for (size_t i = 0; i < n; i++) {
			if (r->t[i].result != VR_PENDING)
				continue;
			r->t[i].q = minger_evclient_query(v->mc, &r->t[i].t->s->addrs[0],
			                                  &r->t[i].t->cfg, r->mailbox, len,
			                                  on_result, &r->t[i]);
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
		if (strlen(v->gws[i].s->domain) == len &&
		    ascii_equal_ci(d, len, v->gws[i].s->domain))
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
	return ask(v, gw, gw->s->ask_peers && v->npeers > 0, mailbox, len, out, cb, arg, req);
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
		for (size_t k = 0; k < v->peers[i].s->naddrs; k++)
			if (addr_is(&v->peers[i].s->addrs[k], family, bytes))
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
