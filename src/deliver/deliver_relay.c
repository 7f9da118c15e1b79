/*
 * deliver_relay: a DELIVER job for a relay destination, on the delivery loop:
 * the next hop (nexthop_resolver: a relay_route's hosts, the smart host, or the
 * recipient domain's MX), then one SMTP transaction (smtp_transport) for the
 * job's recipients (one message, one destination), then each recipient's
 * verdict (deliver_policy_relay) for the record phase.
 *
 * Resolutions are shared: jobs for a destination whose resolution is under
 * way wait for it, and a found next hop is reused for DELIVER_RELAY_TTL_S
 * seconds (a failed one for less; a temporary failure not at all: the
 * destination backs off instead), so 20,000 messages to one domain cost one
 * lookup a minute, not 20,000. The transport keeps a connection open after a
 * message; the manager then asks the scheduler for the next job of the same
 * destination (after the previous one is recorded) and it goes on the same
 * connection.
 *
 * Mail to our own host name, or a next hop that is one of our addresses, is a
 * permanent failure (5.4.6, nexthop.h), never a retry storm.
 *
 * Domain Sharing (deliver_policy.h "Routes chosen before delivery"): a job for
 * a peer route first runs a check on a worker (it reads the message's header,
 * and may ask Minger: neither may wait on the loop): a message that already
 * passed through us or through DELIVER_SHARED_HOPS_MAX peers fails 5.4.6; a
 * list's copy goes only if the peer says (Minger status 5) it has the list.
 * What goes to a peer gets an X-Sharemail-Shared: field before its first line.
 * With domain_sharing_keep_on_error = no, a job whose recipients were all tried
 * before goes to the smart host instead (deliver_policy_peer_fallback); the
 * destination (its back-off) stays the peer's.
 */
#include <errno.h>
#include <stddef.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include <sys/types.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/deliver_int.h"
#include "proto/peer_spec.h"
#include "verify/minger_client.h"
#include "verify/verify_servers.h"
#include "deliver/nexthop_resolver.h"
#include "deliver/smtp_transport.h"
#include "util/log.h"
#include "util/timeutil.h"

#define DELIVER_RELAY_TTL_S 60 /* a next hop found is used this long */
#define DELIVER_RELAY_FAIL_TTL_S 10 /* a permanent failure is believed this long */
#define DELIVER_RELAY_CACHE_MAX 4096 /* destinations remembered at most */
#define DELIVER_SELF_ADDRS_MAX 256

struct rjob;

/* One destination's next hop: found, being resolved, or unknown. */
struct route_entry {
	char key[SCHEDULER_DEST_MAX + 1];
	struct nexthop_result res;
	int valid;
	uint64_t expires; /* monotonic seconds */
	struct nexthop_request *req;
	struct rjob *waiters;
	struct deliver_relay *rl;
	struct route_entry *next;
};

/* A relay job's own state (deliver_job.relay). */
struct rjob {
	struct deliver_job *j;
	struct deliver_relay *rl;
	struct rjob *wnext; /* on a route_entry's waiters */
	struct rjob *prev, *next; /* every live relay job, for shutdown */
	struct smtp_client_rcpt *rcpts;
	struct smtp_transport_host *hosts;
	char (*names)[NEXTHOP_NAME_MAX + 1]; /* the hosts' names (a result lives only so long) */
	struct sockaddr_storage *addrs;
	int in_transport;
	/* a peer route's check (a worker task, then the loop) */
	struct deliver_task check;
	enum deliver_peer_kind peer;
	int checked; /* 1: the check passed, the job is sent */
	int check_failed; /* 1: v is every recipient's verdict */
	int no_notice; /* with check_failed: nobody is told (a list copy not needed) */
	struct deliver_verdict v;
	char *prefix; /* the X-Sharemail-Shared: field */
	size_t prefix_len;
	const char *key; /* the next hop's key: j->dest, or DELIVER_DEST_SMARTHOST */
};

struct deliver_relay {
	struct deliver_runner *mgr;
	struct nexthop_resolver *resolver;
	char resolver_err[256];
	struct smtp_transport *t;
	struct nexthop_spec smarthost[NEXTHOP_SPECS_MAX];
	size_t nsmarthost;
	struct route_entry *cache;
	size_t ncache;
	struct rjob *live;
	int stopping;
	struct verify_servers peers; /* the domain_sharing_host lines, for the list checks */
	/* what the resolver was given (it copies them) */
	struct netaddr self_addrs[DELIVER_SELF_ADDRS_MAX];
	struct netaddr ns[16];
};

/* ---- set-up ---- */

static void add_self(struct deliver_relay *rl, size_t *n, const struct sockaddr *sa, int port)
{
	if (*n >= DELIVER_SELF_ADDRS_MAX || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return;
	struct netaddr *a = &rl->self_addrs[(*n)++];
	memset(a, 0, sizeof *a);
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
		memcpy(in, sa, sizeof *in);
		in->sin_port = htons((uint16_t)port);
		a->len = sizeof *in;
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
		memcpy(in6, sa, sizeof *in6);
		in6->sin6_port = htons((uint16_t)port);
		a->len = sizeof *in6;
	}
}

static int is_wildcard(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (sa->sa_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, &in6addr_any,
		              sizeof in6addr_any) == 0;
	return 0;
}

/*
 * Our SMTP listening addresses (with their ports), a wildcard one expanded to
 * every interface address: a next hop that is one of them is ourselves.
 */
static size_t self_addrs(struct deliver_relay *rl, const struct conf *c)
{
	const struct addrlist *lists[] = {&c->smtp_listen, &c->submission_listen, &c->smtps_listen};
	struct ifaddrs *ifa = NULL;
	size_t n = 0;
	for (size_t l = 0; l < 3; l++) {
		for (size_t i = 0; i < lists[l]->n; i++) {
			const struct sockaddr *sa = (const struct sockaddr *)&lists[l]->v[i].ss;
			int port = netaddr_port(sa);
			if (!is_wildcard(sa)) {
				add_self(rl, &n, sa, port);
				continue;
			}
			if (!ifa && getifaddrs(&ifa) < 0)
				ifa = NULL;
			for (struct ifaddrs *p = ifa; p; p = p->ifa_next)
				if (p->ifa_addr && p->ifa_addr->sa_family == sa->sa_family)
					add_self(rl, &n, p->ifa_addr, port);
		}
	}
	if (ifa)
		freeifaddrs(ifa);
	return n;
}

static enum smtp_client_tls tls_mode(const char *s)
{
	if (s && strcmp(s, "off") == 0)
		return SMTP_CLIENT_TLS_OFF;
	if (s && strcmp(s, "require") == 0)
		return SMTP_CLIENT_TLS_REQUIRE;
	return SMTP_CLIENT_TLS_MAY;
}

static void transport_conf(const struct conf *c, const char *hostname,
                           struct smtp_transport_conf *tc)
{
	smtp_transport_conf_defaults(tc);
	struct smtp_client_timeouts *to = &tc->client.timeouts;
	unsigned cmd = (unsigned)c->relay_command_timeout;
	tc->client.helo_name = hostname;
	tc->client.tls = tls_mode(c->relay_tls);
	to->connect = (unsigned)c->relay_connect_timeout;
	/* relay_command_timeout bounds every wait but the one after the final dot. */
	to->greeting = to->helo = to->starttls = to->tls_handshake = to->mail = to->rcpt = cmd;
	to->data_init = to->data_block = to->rset = to->quit = cmd;
	to->data_done = (unsigned)c->relay_data_timeout;
}

static struct nexthop_resolver *make_resolver(struct deliver_relay *rl, const struct conf *c)
{
	struct nexthop_resolver_params p;
	nexthop_resolver_params_init(&p);
	size_t nns = 0;
	for (size_t i = 0; i < c->dns_nameserver.n && nns < 16; i++) {
		char err[128];
		if (netaddr_parse_hostport(c->dns_nameserver.v[i], 53, 0, &rl->ns[nns], err,
		                           sizeof err) == 0)
			nns++;
		else
			log_err("dns_nameserver %s: %s; ignored", c->dns_nameserver.v[i], err);
	}
	p.nameservers = rl->ns;
	p.nnameservers = nns;
	p.timeout_ms = (unsigned)c->dns_timeout * 1000u;
	p.attempts = (unsigned)c->dns_attempts;
	const char *names[1] = {deliver_ctx(rl->mgr)->hostname};
	p.self.names = names;
	p.self.nnames = 1;
	p.self.addrs = rl->self_addrs;
	p.self.naddrs = self_addrs(rl, c);
	struct nexthop_resolver *r = nexthop_resolver_new(
	        deliver_base(rl->mgr), &p, rl->resolver_err, sizeof rl->resolver_err);
	if (!r)
		log_warning("relay: no DNS resolver (%s): mail to other domains waits until it is "
		            "fixed (a restart)",
		            rl->resolver_err);
	return r;
}

int deliver_relay_parse_routes(const struct conf *c, struct nexthop_route **out, size_t *n)
{
	size_t cap = c->relay_route.n + c->gateway_domain.n + c->forward_domain.n, k = 0;
	*out = NULL;
	*n = 0;
	if (cap == 0)
		return 0;
	struct nexthop_route *v = calloc(cap, sizeof *v);
	if (!v)
		return -1;
	char err[256];
	for (size_t i = 0; i < c->relay_route.n; i++) {
		if (nexthop_route_parse(c->relay_route.v[i], &v[k], err, sizeof err) == 0)
			k++;
		else /* conf checked it: only a bug gets here */
			log_err("relay_route %s: %s; ignored", c->relay_route.v[i], err);
	}
	/* A gateway or forwarded domain's mail goes to host= as a relay_route would send it. */
	const struct strlist *lines[2] = {&c->gateway_domain, &c->forward_domain};
	for (int f = 0; f < 2; f++) {
		for (size_t i = 0; i < lines[f]->n; i++) {
			struct peer_spec_gateway g;
			if (peer_spec_parse_gateway(lines[f]->v[i], f, &g, err, sizeof err) < 0) {
				log_err("%s %s: %s; ignored",
				        f ? "forward_domain" : "gateway_domain", lines[f]->v[i],
				        err);
				continue;
			}
			snprintf(v[k].domain, sizeof v[k].domain, "%s", g.domain);
			v[k].specs[0] = g.host;
			v[k].nspecs = 1;
			k++;
		}
	}
	*out = v;
	*n = k;
	return 0;
}

/*
 * The domain_sharing_host lines, for the list checks (conf checked them), and
 * their secrets: one that cannot be read leaves the peer anonymous, logged.
 */
static int parse_peers(struct deliver_relay *rl, const struct conf *c)
{
	struct verify_servers all;
	char err[512];
	if (c->domain_sharing_host.n == 0)
		return 0;
	if (verify_servers_load(c, 0, &all, err, sizeof err) < 0) {
		log_err("domain_sharing_host: %s", err);
		return -1;
	}
	all.n = all.npeers; /* the gateway and forward lines are routes, not peers */
	for (size_t i = 0; i < all.n; i++) {
		struct verify_server *p = &all.v[i];
		if (p->secret_file[0] &&
		    !(p->secret = verify_servers_read_secret(p, err, sizeof err)))
			log_err("domain_sharing_host %s: cannot read secret_file %s: lists are not "
			        "shared with it",
			        p->route, err);
	}
	rl->peers = all;
	return 0;
}

struct deliver_relay *deliver_relay_new(struct deliver_runner *r, char *err, size_t errlen)
{
	const struct deliver_ctx *x = deliver_ctx(r);
	const struct conf *c = x->c;
	struct deliver_relay *rl = calloc(1, sizeof *rl);
	if (!rl) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	rl->mgr = r;
	if (parse_peers(rl, c) < 0) {
		snprintf(err, errlen, "cannot read the domain_sharing_host lines");
		free(rl);
		return NULL;
	}
	if (c->relay_smarthost && *c->relay_smarthost &&
	    nexthop_hosts_parse(c->relay_smarthost, rl->smarthost, NEXTHOP_SPECS_MAX,
	                        &rl->nsmarthost, err, errlen) < 0) {
		verify_servers_free(&rl->peers);
		free(rl);
		return NULL;
	}
	struct smtp_transport_conf tc;
	transport_conf(c, x->hostname, &tc);
	rl->t = smtp_transport_new(deliver_base(r), &tc);
	if (!rl->t) {
		snprintf(err, errlen, "cannot set up the SMTP client (TLS or memory)");
		verify_servers_free(&rl->peers);
		free(rl);
		return NULL;
	}
	rl->resolver = make_resolver(rl, c);
	return rl;
}

/* ---- jobs ---- */

static void rjob_free(struct rjob *rj)
{
	if (rj->prev)
		rj->prev->next = rj->next;
	else if (rj->rl->live == rj)
		rj->rl->live = rj->next;
	if (rj->next)
		rj->next->prev = rj->prev;
	free(rj->rcpts);
	free(rj->hosts);
	free(rj->names);
	free(rj->addrs);
	free(rj->prefix);
	free(rj);
}

/* The job's recipients all get verdict v, one report each (relay names the host). */
static void verdict_all_as(struct rjob *rj, const struct deliver_verdict *v, const char *relay,
                           int quiet)
{
	struct deliver_job *j = rj->j;
	const struct envelope *env = j->m->env;
	for (size_t i = 0; i < j->n; i++) {
		struct deliver_outcome *o = &j->out[i];
		const struct envelope_rcpt *rc = &env->rcpts[o->rcpt];
		o->so = v->so;
		o->state = v->state;
		snprintf(o->status, sizeof o->status, "%s", v->status);
		deliver_job_report(j, o->rcpt, NULL, relay, v->state, v->status, v->peer_code, NULL,
		                   quiet ? DELIVER_NOTICE_NONE
		                         : deliver_policy_notice(env->mail_from, rc->notify,
		                                                 v->state, DELIVER_VIA_PEER));
	}
}

static void verdict_all(struct rjob *rj, const struct deliver_verdict *v, const char *relay)
{
	verdict_all_as(rj, v, relay, 0);
}

/* The check's own failure: rj->v for every recipient, reported on the loop. */
static void verdict_all_prepare(struct rjob *rj, enum scheduler_outcome so, enum rcpt_state st,
                                int code, const char *enh, const char *text)
{
	rj->v.so = so;
	rj->v.state = st;
	rj->v.peer_code = 0;
	deliver_policy_status(rj->v.status, sizeof rj->v.status, st, code, enh, text);
	rj->check_failed = 1;
}

static void finish(struct rjob *rj)
{
	struct deliver_job *j = rj->j;
	j->relay = NULL;
	rjob_free(rj);
	deliver_job_outcomes_ready(j);
}

/* The transport's result: one verdict per recipient. */
static void on_sent(void *arg, const struct smtp_transport_result *r)
{
	struct rjob *rj = arg;
	struct deliver_job *j = rj->j;
	rj->in_transport = 0;
	if (r->outcome == SMTP_TRANSPORT_ABORTED || rj->rl->stopping) {
		/* Shutdown: recorded as nothing; the queue tries them again at the next start. */
		j->relay = NULL;
		rjob_free(rj);
		deliver_job_abandon(j);
		return;
	}
	enum deliver_relay_end end = r->outcome == SMTP_TRANSPORT_ANSWERED ? DELIVER_RELAY_ANSWERED
	                             : r->outcome == SMTP_TRANSPORT_DEST_DEAD
	                                     ? DELIVER_RELAY_DEST_DEAD
	                                     : DELIVER_RELAY_LOCAL_ERROR;
	/* Postfix's form: name[address]:port, the address as the name of a literal. */
	char relay[SMTP_TRANSPORT_HOST_MAX + SMTP_TRANSPORT_ADDR_TEXT + 16] = "none";
	const char *host = r->host && *r->host ? r->host : r->addr[0] ? r->addr : NULL;
	if (host)
		snprintf(relay, sizeof relay, "%s[%s]:%d", host, r->addr, r->port);
	const struct envelope *env = j->m->env;
	for (size_t i = 0; i < j->n; i++) {
		struct deliver_outcome *o = &j->out[i];
		const struct envelope_rcpt *rc = &env->rcpts[o->rcpt];
		struct smtp_client_rcpt_result none = {SMTP_CLIENT_RCPT_DEFERRED, r->reply};
		const struct smtp_client_rcpt_result *res = i < r->n_rcpts ? &r->rcpts[i] : &none;
		struct deliver_verdict v;
		deliver_policy_relay(end, res, &v);
		o->so = v.so;
		o->state = v.state;
		snprintf(o->status, sizeof o->status, "%s", v.status);
		enum deliver_notice nt = deliver_policy_notice(env->mail_from, rc->notify, v.state,
		                                               r->peer_dsn ? DELIVER_VIA_PEER_DSN
		                                                           : DELIVER_VIA_PEER);
		deliver_job_report(j, o->rcpt, NULL, relay, v.state, v.status, v.peer_code,
		                   v.peer_code ? host : NULL, nt);
	}
	finish(rj);
}

/* Builds the transport's job from a found next hop and sends it. */
static void send_job(struct rjob *rj, const struct nexthop_result *res)
{
	struct deliver_job *j = rj->j;
	struct dmsg *m = j->m;
	const struct envelope *env = m->env;
	size_t naddr = 0;
	for (size_t h = 0; h < res->nhosts; h++)
		naddr += res->hosts[h].naddrs;
	rj->rcpts = calloc(j->n ? j->n : 1, sizeof *rj->rcpts);
	rj->hosts = calloc(res->nhosts ? res->nhosts : 1, sizeof *rj->hosts);
	rj->names = calloc(res->nhosts ? res->nhosts : 1, sizeof *rj->names);
	rj->addrs = calloc(naddr ? naddr : 1, sizeof *rj->addrs);
	struct deliver_verdict v;
	if (!rj->rcpts || !rj->hosts || !rj->names || !rj->addrs) {
		struct nexthop_result oom;
		nexthop_result_init(&oom, j->dest);
		nexthop_result_fail(&oom, NEXTHOP_TEMPFAIL, "4.3.0", "out of memory");
		deliver_policy_nexthop(&oom, &v);
		v.so = SCHEDULER_DEFER_RCPT;
		verdict_all(rj, &v, "none");
		finish(rj);
		return;
	}
	size_t k = 0;
	for (size_t h = 0; h < res->nhosts; h++) {
		struct smtp_transport_host *th = &rj->hosts[h];
		/* Copied: the transport borrows them until its done, the result is gone by then. */
		snprintf(rj->names[h], sizeof rj->names[h], "%s", res->hosts[h].name);
		th->name = rj->names[h];
		th->addrs = &rj->addrs[k];
		for (size_t a = 0; a < res->hosts[h].naddrs; a++) {
			socklen_t len;
			if (nexthop_addr_sockaddr(&res->hosts[h].addrs[a], &rj->addrs[k], &len) ==
			    0) {
				k++;
				th->n_addrs++;
			}
		}
	}
	for (size_t i = 0; i < j->n; i++) {
		const struct envelope_rcpt *rc = &env->rcpts[j->out[i].rcpt];
		rj->rcpts[i] = (struct smtp_client_rcpt){rc->addr, rc->orcpt, rc->notify};
	}
	struct smtp_transport_job tj = {
	        .hosts = rj->hosts,
	        .n_hosts = res->nhosts,
	        .msg = {env->mail_from, rj->rcpts, j->n, m->len, env->body == ESMTP_BODY_8BITMIME,
	                env->ret, env->envid},
	        .body_fd = m->fd,
	        .body_offset = m->data_off,
	        .prefix = rj->prefix,
	        .prefix_len = rj->prefix_len,
	};
	tj.msg.size += rj->prefix_len;
	if (smtp_transport_send(rj->rl->t, rj->key, &tj, on_sent, rj) == 0) {
		rj->in_transport = 1;
		return;
	}
	struct nexthop_result bad;
	nexthop_result_init(&bad, j->dest);
	nexthop_result_fail(&bad, NEXTHOP_TEMPFAIL, "4.3.0", "cannot start an SMTP transaction");
	deliver_policy_nexthop(&bad, &v);
	verdict_all(rj, &v, "none");
	finish(rj);
}

/* A next hop is known (found or failed): the job goes on. */
static void proceed(struct rjob *rj, const struct nexthop_result *res)
{
	if (res->status == NEXTHOP_FOUND && res->nhosts > 0) {
		send_job(rj, res);
		return;
	}
	struct deliver_verdict v;
	deliver_policy_nexthop(res, &v);
	verdict_all(rj, &v, "none");
	finish(rj);
}

static void on_resolved(void *arg, const struct nexthop_result *result)
{
	struct route_entry *re = arg;
	re->req = NULL;
	re->res = *result;
	re->valid = result->status != NEXTHOP_TEMPFAIL;
	re->expires =
	        time_mono_ms() / 1000 +
	        (result->status == NEXTHOP_FOUND ? DELIVER_RELAY_TTL_S : DELIVER_RELAY_FAIL_TTL_S);
	if (result->status != NEXTHOP_FOUND)
		log_info("relay %s: %s (%s %s)", re->key,
		         result->status == NEXTHOP_PERMFAIL ? "no next hop"
		                                            : "next hop unknown for now",
		         result->enh, result->text);
	struct rjob *w = re->waiters;
	re->waiters = NULL;
	while (w) {
		struct rjob *rj = w;
		w = w->wnext;
		rj->wnext = NULL;
		proceed(rj, result);
	}
}

/* The cache entry for key, made when missing (the oldest expired ones make room). */
static struct route_entry *cache_get(struct deliver_relay *rl, const char *key)
{
	uint64_t now = time_mono_ms() / 1000;
	struct route_entry **pp = &rl->cache, *found = NULL;
	while (*pp) {
		struct route_entry *e = *pp;
		if (strcmp(e->key, key) == 0) {
			found = e;
		} else if (!e->req && !e->waiters && (!e->valid || e->expires <= now) &&
		           rl->ncache >= DELIVER_RELAY_CACHE_MAX / 2) {
			*pp = e->next; /* idle and stale: forget it */
			free(e);
			rl->ncache--;
			continue;
		}
		pp = &e->next;
	}
	if (found || rl->ncache >= DELIVER_RELAY_CACHE_MAX)
		return found;
	struct route_entry *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	snprintf(e->key, sizeof e->key, "%s", key);
	e->rl = rl;
	e->next = rl->cache;
	rl->cache = e;
	rl->ncache++;
	return e;
}

const struct nexthop_route *deliver_relay_route(const struct deliver_relay *rl, const char *dest)
{
	const struct deliver_routes *r = &deliver_ctx(rl->mgr)->routes;
	for (size_t i = 0; i < r->nroutes; i++)
		if (strcasecmp(r->routes[i].domain, dest) == 0)
			return &r->routes[i];
	return NULL;
}

/* Starts resolving re's destination. */
static void resolve(struct deliver_relay *rl, struct route_entry *re)
{
	const struct nexthop_route *route = deliver_relay_route(rl, re->key);
	if (!rl->resolver) {
		struct nexthop_result none;
		nexthop_result_init(&none, re->key);
		nexthop_result_fail(&none, NEXTHOP_TEMPFAIL, "4.4.3", "no DNS resolver: %s",
		                    rl->resolver_err);
		on_resolved(re, &none);
		return;
	}
	struct nexthop_spec peer;
	if (strcmp(re->key, DELIVER_DEST_SMARTHOST) == 0)
		re->req = nexthop_resolver_route(rl->resolver, "the smart host", rl->smarthost,
		                                 rl->nsmarthost, on_resolved, re);
	else if (deliver_policy_peer_route(re->key, &peer) != DELIVER_PEER_NONE)
		re->req = nexthop_resolver_route(rl->resolver, re->key, &peer, 1, on_resolved, re);
	else if (route)
		re->req = nexthop_resolver_route(rl->resolver, route->domain, route->specs,
		                                 route->nspecs, on_resolved, re);
	else
		re->req = nexthop_resolver_domain(rl->resolver, re->key, on_resolved, re);
	if (!re->req) {
		struct nexthop_result oom;
		nexthop_result_init(&oom, re->key);
		nexthop_result_fail(&oom, NEXTHOP_TEMPFAIL, "4.3.0", "out of memory resolving");
		on_resolved(re, &oom);
	}
}

/* The next hop of rj->key (cached, or resolved and waited for), then the transport. */
static void route_job(struct rjob *rj)
{
	struct deliver_relay *rl = rj->rl;
	struct route_entry *re = cache_get(rl, rj->key);
	if (re && re->valid && re->expires > time_mono_ms() / 1000) {
		proceed(rj, &re->res);
		return;
	}
	if (!re) {
		struct nexthop_result busy;
		nexthop_result_init(&busy, rj->key);
		nexthop_result_fail(&busy, NEXTHOP_TEMPFAIL, "4.3.0",
		                    "too many destinations at once");
		proceed(rj, &busy);
		return;
	}
	rj->wnext = re->waiters;
	re->waiters = rj;
	if (!re->req)
		resolve(rl, re);
}

/* ---- a peer route's check (worker, then loop) ---- */

/* The peer configured with this route text ("list:" already taken off), or NULL. */
static const struct verify_server *peer_of(const struct deliver_relay *rl, const char *route)
{
	for (size_t i = 0; i < rl->peers.n; i++)
		if (strcasecmp(rl->peers.v[i].route, route) == 0)
			return &rl->peers.v[i];
	return NULL;
}

/* Asks the peer whether it has the list addr: a Minger status, or -1 (no answer). */
static int ask_peer(const struct deliver_relay *rl, const char *route, const char *addr,
                    const char *id)
{
	const struct verify_server *p = peer_of(rl, route);
	if (!p)
		return 3; /* no longer a peer: nothing to share with it */
	struct netaddr na;
	struct minger_client_opts o;
	char err[256] = "";
	minger_client_opts_init(&o);
	o.secret = p->secret;
	o.timeout_ms = 1000;
	/* The name is resolved here, on the worker, at each check (it may have moved). */
	int st = verify_server_lookup(p, &na, 1, err, sizeof err) < 0
	                 ? MINGER_RESULT_ERROR
	                 : minger_client_query(&na, addr, &o, err, sizeof err);
	if (st < 0 || st != 5)
		log_info("deliver %s: list <%s> on Domain Sharing peer %s: %s", id, addr, route,
		         st == MINGER_RESULT_TIMEOUT ? "no answer"
		         : st < 0                    ? (err[0] ? err : "cannot ask it")
		         : st == 3 || st == 4        ? "not there"
		                                     : "refused to answer");
	return st < 0 ? -1 : st;
}

/* Reads up to DELIVER_HEADER_SCAN_MAX octets of the message's header: the check's input. */
static char *read_header(const struct dmsg *m, size_t *hlen)
{
	size_t want = m->len < DELIVER_HEADER_SCAN_MAX ? (size_t)m->len : DELIVER_HEADER_SCAN_MAX;
	char *buf = malloc(want ? want : 1);
	size_t got = 0;
	while (buf && got < want) {
		ssize_t n = pread(m->fd, buf + got, want - got, (off_t)(m->data_off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return NULL;
		}
		got += (size_t)n;
	}
	if (!buf)
		return NULL;
	struct deliver_hdr_scan sc;
	deliver_headers_scan(buf, got, got == m->len, &sc);
	*hlen = sc.header_len;
	return buf;
}

static void check_work(struct deliver_task *t)
{
	struct rjob *rj = (struct rjob *)(void *)((char *)t - offsetof(struct rjob, check));
	struct deliver_job *j = rj->j;
	const struct deliver_ctx *x = deliver_ctx(rj->rl->mgr);
	size_t hlen = 0;
	unsigned hops = 0;
	int ours = 0;
	char *hdr = read_header(j->m, &hlen);
	if (!hdr) {
		verdict_all_prepare(rj, SCHEDULER_DEFER_RCPT, RCPT_DEFERRED, 451, "4.3.0",
		                    "cannot read the queued message");
		return;
	}
	deliver_headers_shared(hdr, hlen, x->hostname, &hops, &ours);
	free(hdr);
	if (deliver_policy_shared_loop(hops, ours, j->dest, &rj->v)) {
		rj->check_failed = 1;
		return;
	}
	if (rj->peer == DELIVER_PEER_LIST) {
		const char *route = j->dest + strlen(DELIVER_ROUTE_LIST_PREFIX);
		const char *addr = j->m->env->rcpts[j->out[0].rcpt].addr;
		int st = ask_peer(rj->rl, route, addr, j->m->id);
		if (!deliver_policy_list_peer(st, route, &rj->v)) {
			rj->check_failed = 1;
			rj->no_notice = rj->v.state == RCPT_DELIVERED;
			return;
		}
	}
	char field[1024];
	long n = deliver_headers_shared_build(x->hostname, j->m->id, deliver_now(x), field,
	                                      sizeof field);
	rj->prefix = n > 0 ? malloc((size_t)n) : NULL;
	if (!rj->prefix) {
		verdict_all_prepare(rj, SCHEDULER_DEFER_RCPT, RCPT_DEFERRED, 451, "4.3.0",
		                    "cannot build the X-Sharemail-Shared field");
		return;
	}
	memcpy(rj->prefix, field, (size_t)n);
	rj->prefix_len = (size_t)n;
	rj->checked = 1;
}

static void check_done(struct deliver_task *t)
{
	struct rjob *rj = (struct rjob *)(void *)((char *)t - offsetof(struct rjob, check));
	struct deliver_job *j = rj->j;
	struct deliver_relay *rl = rj->rl;
	if (rl->stopping) {
		j->relay = NULL;
		rjob_free(rj);
		deliver_job_abandon(j);
		return;
	}
	if (!rj->checked) {
		if (rj->v.state == RCPT_FAILED)
			log_warning("deliver %s: %s", j->m->id, rj->v.status);
		verdict_all_as(rj, &rj->v, "none", rj->no_notice);
		finish(rj);
		return;
	}
	uint32_t *att = malloc((j->n ? j->n : 1) * sizeof *att);
	for (size_t i = 0; att && i < j->n; i++)
		att[i] = j->out[i].attempts;
	const struct conf *c = deliver_ctx(rl->mgr)->c;
	int fallback = att && deliver_policy_peer_fallback(c->domain_sharing_keep_on_error,
	                                                   rl->nsmarthost > 0, att, j->n);
	free(att);
	if (fallback) {
		log_info("deliver %s: Domain Sharing peer %s failed before: to the smart host "
		         "(domain_sharing_keep_on_error = no)",
		         j->m->id, j->dest);
		rj->key = DELIVER_DEST_SMARTHOST;
	}
	route_job(rj);
}

void deliver_relay_start(struct deliver_relay *rl, struct deliver_job *j)
{
	struct rjob *rj = calloc(1, sizeof *rj);
	if (!rj) {
		for (size_t i = 0; i < j->n; i++) {
			j->out[i].so = SCHEDULER_DEFER_RCPT;
			j->out[i].state = RCPT_DEFERRED;
			snprintf(j->out[i].status, sizeof j->out[i].status,
			         "451 4.3.0 out of memory");
		}
		deliver_job_outcomes_ready(j);
		return;
	}
	rj->j = j;
	rj->rl = rl;
	rj->key = j->dest;
	rj->next = rl->live;
	if (rl->live)
		rl->live->prev = rj;
	rl->live = rj;
	j->relay = rj;
	rj->peer = deliver_policy_peer_route(j->dest, NULL);
	if (rj->peer == DELIVER_PEER_NONE) {
		route_job(rj);
		return;
	}
	rj->check.work = check_work;
	rj->check.done = check_done;
	deliver_pool_submit(deliver_workers(rl->mgr), &rj->check);
}

void deliver_relay_stop(struct deliver_relay *rl)
{
	if (!rl || rl->stopping)
		return;
	rl->stopping = 1;
	for (struct route_entry *e = rl->cache; e; e = e->next) {
		nexthop_request_cancel(e->req);
		e->req = NULL;
		struct rjob *w = e->waiters;
		e->waiters = NULL;
		while (w) {
			struct rjob *rj = w;
			w = w->wnext;
			struct deliver_job *j = rj->j;
			j->relay = NULL;
			rjob_free(rj);
			deliver_job_abandon(j);
		}
	}
	/* Ends every transaction under way: each comes back ABORTED to on_sent. */
	smtp_transport_free(rl->t);
	rl->t = NULL;
}

void deliver_relay_free(struct deliver_relay *rl)
{
	if (!rl)
		return;
	deliver_relay_stop(rl);
	nexthop_resolver_free(rl->resolver);
	while (rl->cache) {
		struct route_entry *e = rl->cache;
		rl->cache = e->next;
		free(e);
	}
	while (rl->live)
		rjob_free(rl->live);
	verify_servers_free(&rl->peers);
	free(rl);
}
