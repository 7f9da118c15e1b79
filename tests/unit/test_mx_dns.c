/*
 * Tests for deliver/nexthop_resolver (and deliver/dns_query) against a REAL
 * name server on loopback, never the internet: Debian's nsd, started here in
 * the foreground from a config and zone written into a temporary directory, on
 * 127.0.0.1 at a free high port, and killed at the end whatever happens (its
 * own process group, SIGKILL on our death via PR_SET_PDEATHSIG, an atexit
 * handler, and an alarm as the last resort). Covers MX preference order, ties
 * with a fixed random source, no MX -> A/AAAA, null MX, NXDOMAIN, SERVFAIL (a
 * zone nsd is configured for but cannot load), a timeout (a UDP socket that
 * is never read), a truncated UDP answer retried over TCP, CNAME, loops to
 * ourselves by name and by address, routes and their softened failures,
 * resolv.conf, cancellation, the request deadline and freeing the resolver
 * with requests under way. When nsd is missing the suite reports itself
 * skipped (scripts/install-deps installs it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "deliver/nexthop_resolver.h"
#include "dns_build.h"
#include "harness.h"
#include "proto/dns_msg.h"

#ifndef NSD_PATH
#define NSD_PATH "/usr/sbin/nsd"
#endif
#define BIG_MX 40

static char tmpdir[] = "/tmp/sharemail-nsd-XXXXXX";
static int have_tmpdir;
static pid_t nsd_pid = -1;
static int nsd_port;
static int silent_fd = -1; /* a bound UDP socket nobody reads */
static struct netaddr nsd_addr, silent_addr;
static struct event_base *base;

/* ---- the name server ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void cleanup(void)
{
	if (nsd_pid > 0) {
		kill(-nsd_pid, SIGTERM);
		for (int i = 0; i < 50 && waitpid(nsd_pid, NULL, WNOHANG) == 0; i++)
			usleep(20000);
		kill(-nsd_pid, SIGKILL);
		waitpid(nsd_pid, NULL, 0);
		nsd_pid = -1;
	}
	if (have_tmpdir) {
		nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
		have_tmpdir = 0;
	}
}

static void on_signal(int sig)
{
	/* Whatever happens: no nsd left behind (the group), then die of the signal. */
	if (nsd_pid > 0)
		kill(-nsd_pid, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* Copies a file of the temporary directory to stderr (nsd's output on failure). */
static void dump_file(const char *name)
{
	char path[256], line[512];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof line, f))
		fprintf(stderr, "     | %s", line);
	if (f)
		fclose(f);
}

/* A port free for UDP and TCP on 127.0.0.1 (bound, read back, closed). */
static int free_port(void)
{
	for (int tries = 0; tries < 20; tries++) {
		struct sockaddr_in sin = {.sin_family = AF_INET};
		socklen_t len = sizeof sin;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		if (u < 0 || bind(u, (struct sockaddr *)&sin, sizeof sin) < 0 ||
		    getsockname(u, (struct sockaddr *)&sin, &len) < 0) {
			close(u);
			continue;
		}
		int t = socket(AF_INET, SOCK_STREAM, 0);
		int ok = t >= 0 && bind(t, (struct sockaddr *)&sin, sizeof sin) == 0;
		close(t);
		close(u);
		if (ok)
			return ntohs(sin.sin_port);
	}
	return -1;
}

static void zone_text(char *z, size_t zsz)
{
	size_t o = (size_t)snprintf(
	        z, zsz,
	        "$ORIGIN test.\n$TTL 60\n"
	        "@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n"
	        "@ NS ns.test.\nns A 127.0.0.1\n"
	        /* MX preference order, listed out of order. */
	        "pref MX 30 c.pref\npref MX 10 a.pref\npref MX 20 b.pref\n"
	        "a.pref A 127.0.0.11\nb.pref A 127.0.0.12\nb.pref AAAA 2001:db8::12\n"
	        "c.pref A 127.0.0.13\n"
	        /* Ties. */
	        "ties MX 10 t1.ties\nties MX 10 t2.ties\nties MX 10 t3.ties\n"
	        "t1.ties A 127.0.0.31\nt2.ties A 127.0.0.32\nt3.ties A 127.0.0.33\n"
	        /* No MX: the domain itself. */
	        "nomx A 127.0.0.20\nnomx AAAA 2001:db8::20\n"
	        /* Null MX (RFC 7505). */
	        "null MX 0 .\nnull A 127.0.0.21\n"
	        /* Loops: we are us.test and 127.0.0.77:25. */
	        "self MX 10 us\nself MX 20 other.pref\nus A 127.0.0.77\n"
	        "backup MX 10 a.pref\nbackup MX 20 us\nbackup MX 30 c.pref\n"
	        "selfaddr MX 10 alias-of-us\nalias-of-us A 127.0.0.77\n"
	        /* An MX host that does not exist. */
	        "nohost MX 10 missing.nohost\n"
	        /* CNAME to a name with MX records. */
	        "alias CNAME pref\n"
	        /* Too big for 512 octets over UDP: truncated, then TCP. */
	        "big-host A 127.0.0.40\n");
	for (int i = 0; i < BIG_MX && o < zsz; i++)
		o += (size_t)snprintf(z + o, zsz - o,
		                      "big MX %d mx-host-number-%02d-with-a-long-label.big\n"
		                      "mx-host-number-%02d-with-a-long-label.big A 127.0.1.%d\n",
		                      100 - i, i, i, i + 1);
}

static int write_config(void)
{
	char conf[2048], zone[8192];
	snprintf(conf, sizeof conf,
	         "server:\n"
	         "  ip-address: 127.0.0.1\n  port: %d\n  do-ip6: no\n"
	         "  username: \"\"\n  chroot: \"\"\n  database: \"\"\n"
	         "  zonesdir: \"%s\"\n  pidfile: \"%s/nsd.pid\"\n"
	         "  xfrdfile: \"%s/xfrd.state\"\n  xfrdir: \"%s\"\n"
	         "  zonelistfile: \"%s/zone.list\"\n"
	         "  logfile: \"%s/nsd.log\"\n  verbosity: 0\n  server-count: 1\n"
	         "  reuseport: no\n  hide-version: yes\n"
	         "remote-control:\n  control-enable: no\n"
	         "zone:\n  name: \"test\"\n  zonefile: \"test.zone\"\n"
	         /* Configured, file missing: nsd answers SERVFAIL for it. */
	         "zone:\n  name: \"fail.test\"\n  zonefile: \"missing.zone\"\n",
	         nsd_port, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir);
	zone_text(zone, sizeof zone);
	return write_file("nsd.conf", conf) < 0 || write_file("test.zone", zone) < 0 ? -1 : 0;
}

/* 1 when nsd answers a SOA question for "test" (100 ms per try). */
static int nsd_answers(void)
{
	uint8_t q[DNS_QUERY_MAX], buf[DNS_MSG_UDP_MAX];
	struct dns_msg m;
	int n = dns_msg_query_format(q, sizeof q, 0x5151, "test", 6);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct timeval tv = {0, 100000};
	int ok = 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&nsd_addr.ss, nsd_addr.len) == 0 &&
	    send(fd, q, (size_t)n, 0) == n) {
		ssize_t got = recv(fd, buf, sizeof buf, 0);
		ok = got > 0 && dns_msg_parse(buf, (size_t)got, &m) == 0 &&
		     dns_msg_is_reply_to(&m, 0x5151, "test", 6) && m.rcode == 0;
	}
	close(fd);
	return ok;
}

static int nsd_start(void)
{
	char conf[256], log[256];
	if (!mkdtemp(tmpdir))
		return -1;
	have_tmpdir = 1;
	nsd_port = free_port();
	if (nsd_port < 0 || write_config() < 0)
		return -1;
	snprintf(conf, sizeof conf, "%s/nsd.conf", tmpdir);
	snprintf(log, sizeof log, "%s/nsd.out", tmpdir);
	nsd_pid = fork();
	if (nsd_pid < 0)
		return -1;
	if (nsd_pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		freopen(log, "w", stdout);
		freopen(log, "a", stderr);
		execl(NSD_PATH, "nsd", "-d", "-c", conf, (char *)NULL);
		_exit(127);
	}
	setpgid(nsd_pid, nsd_pid);
	char err[64];
	char hp[32];
	snprintf(hp, sizeof hp, "127.0.0.1:%d", nsd_port);
	netaddr_parse_hostport(hp, 53, 0, &nsd_addr, err, sizeof err);
	for (int i = 0; i < 100; i++) { /* at most 15 s */
		if (waitpid(nsd_pid, NULL, WNOHANG) == nsd_pid) {
			nsd_pid = -1;
			return -1;
		}
		if (nsd_answers())
			return 0;
		usleep(50000); /* not up yet (a refused datagram comes back at once) */
	}
	return -1;
}

static int silent_start(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof sin;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	silent_fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (silent_fd < 0 || bind(silent_fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
	    getsockname(silent_fd, (struct sockaddr *)&sin, &len) < 0)
		return -1;
	memcpy(&silent_addr.ss, &sin, sizeof sin);
	silent_addr.len = sizeof sin;
	return 0;
}

/* ---- driving the resolver ---- */

struct waiter {
	int calls;
	struct nexthop_result res;
};

static void on_result(void *arg, const struct nexthop_result *r)
{
	struct waiter *w = arg;
	w->calls++;
	w->res = *r;
}

/* Runs the loop until w has its result (the request deadline bounds it). */
static void run_until(struct waiter *w)
{
	while (w->calls == 0)
		event_base_loop(base, EVLOOP_ONCE);
}

static const uint32_t seq_123[] = {1, 2, 3};
static const uint32_t seq_321[] = {3, 2, 1};

struct fixed_rand {
	const uint32_t *seq;
	size_t i;
};

static uint32_t fixed_next(void *arg)
{
	struct fixed_rand *f = arg;
	return f->seq[f->i++ % 3];
}

static const char *self_names[] = {"us.test"};
static struct netaddr self_addrs[1];
static struct fixed_rand fr;

static void params(struct nexthop_resolver_params *p, const struct netaddr *ns)
{
	nexthop_resolver_params_init(p);
	p->nameservers = ns;
	p->nnameservers = 1;
	p->timeout_ms = 250;
	p->attempts = 2;
	p->deadline_ms = 10000;
	p->self.names = self_names;
	p->self.nnames = 1;
	p->self.addrs = self_addrs;
	p->self.naddrs = 1;
	fr.seq = seq_123;
	fr.i = 0;
	p->rnd = fixed_next;
	p->rnd_arg = &fr;
}

static struct nexthop_resolver *resolver(const struct netaddr *ns)
{
	struct nexthop_resolver_params p;
	char err[128] = "";
	params(&p, ns);
	struct nexthop_resolver *r = nexthop_resolver_new(base, &p, err, sizeof err);
	if (!CHECK(r != NULL))
		fprintf(stderr, "     resolver: %s\n", err);
	return r;
}

static void resolve_domain(struct nexthop_resolver *r, const char *domain, struct waiter *w)
{
	memset(w, 0, sizeof *w);
	CHECK(nexthop_resolver_domain(r, domain, on_result, w) != NULL);
	CHECK_INT(w->calls, 0); /* never from the call itself */
	run_until(w);
	CHECK_INT(w->calls, 1);
}

static void names_of(const struct nexthop_result *r, char *out, size_t outsz)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < r->nhosts && o < outsz; i++)
		o += (size_t)snprintf(out + o, outsz - o, "%s%s", i ? " " : "", r->hosts[i].name);
}

/* "a1,a2" of host i (addresses without ports). */
static void addrs_of(const struct nexthop_host *h, char *out, size_t outsz)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < h->naddrs && o < outsz; i++) {
		char t[64];
		nexthop_addr_format(&h->addrs[i], t, sizeof t);
		o += (size_t)snprintf(out + o, outsz - o, "%s%s", i ? "," : "", t);
	}
}

struct domain_case {
	const char *domain;
	enum nexthop_status status;
	const char *enh;
	const char *hosts;
};

static const struct domain_case domain_cases[] = {
        {"pref.test", NEXTHOP_FOUND, "", "a.pref.test b.pref.test c.pref.test"},
        {"PREF.Test.", NEXTHOP_FOUND, "", "a.pref.test b.pref.test c.pref.test"},
        {"alias.test", NEXTHOP_FOUND, "", "a.pref.test b.pref.test c.pref.test"},
        {"nomx.test", NEXTHOP_FOUND, "", "nomx.test"},
        {"null.test", NEXTHOP_PERMFAIL, "5.1.10", ""},
        {"nosuch.test", NEXTHOP_PERMFAIL, "5.1.2", ""},
        {"fail.test", NEXTHOP_TEMPFAIL, "4.4.3", ""},
        {"self.test", NEXTHOP_PERMFAIL, "5.4.6", ""},
        {"backup.test", NEXTHOP_FOUND, "", "a.pref.test"},
        {"selfaddr.test", NEXTHOP_PERMFAIL, "5.4.6", ""},
        {"nohost.test", NEXTHOP_PERMFAIL, "5.4.4", ""},
        {"us.test", NEXTHOP_PERMFAIL, "5.4.6", ""}, /* our own name: the implicit MX is us */
        {"[127.0.0.9]", NEXTHOP_FOUND, "", "127.0.0.9"},
        {"[IPv6:2001:db8::9]", NEXTHOP_FOUND, "", "2001:db8::9"},
        {"[not.an.address]", NEXTHOP_PERMFAIL, "5.1.2", ""},
        {"exa mple.test", NEXTHOP_PERMFAIL, "5.1.2", ""},
        {"", NEXTHOP_PERMFAIL, "5.1.2", ""},
};

TEST(domains_from_nsd)
{
	struct nexthop_resolver *r = resolver(&nsd_addr);
	if (!r)
		return;
	for (size_t i = 0; i < sizeof domain_cases / sizeof domain_cases[0]; i++) {
		const struct domain_case *c = &domain_cases[i];
		struct waiter w;
		char got[1024];
		resolve_domain(r, c->domain, &w);
		names_of(&w.res, got, sizeof got);
		int ok = CHECK_INT(w.res.status, c->status);
		ok &= CHECK_STR(w.res.enh, c->enh);
		ok &= CHECK_STR(got, c->hosts);
		for (size_t j = 0; j < w.res.nhosts; j++)
			ok &= CHECK(w.res.hosts[j].naddrs > 0 && w.res.hosts[j].port == 25);
		if (!ok)
			fprintf(stderr, "     domain '%s': %s\n", c->domain, w.res.text);
	}
	nexthop_resolver_free(r);
}

TEST(addresses_and_preferences)
{
	struct nexthop_resolver *r = resolver(&nsd_addr);
	struct waiter w;
	char got[256];
	if (!r)
		return;
	resolve_domain(r, "pref.test", &w);
	CHECK_INT(w.res.nhosts, 3);
	CHECK_INT(w.res.hosts[0].pref, 10);
	CHECK_INT(w.res.hosts[1].pref, 20);
	CHECK_INT(w.res.hosts[2].pref, 30);
	addrs_of(&w.res.hosts[1], got, sizeof got);
	CHECK_STR(got, "127.0.0.12,2001:db8::12"); /* IPv4 first by default */
	CHECK_INT(w.res.hosts[1].addrs[0].port, 25);
	resolve_domain(r, "nomx.test", &w);
	CHECK_INT(w.res.hosts[0].pref, 0);
	addrs_of(&w.res.hosts[0], got, sizeof got);
	CHECK_STR(got, "127.0.0.20,2001:db8::20");
	nexthop_resolver_free(r);

	/* IPv6 first; and IPv4 only. */
	struct nexthop_resolver_params p;
	params(&p, &nsd_addr);
	p.prefer_ipv6 = 1;
	r = nexthop_resolver_new(base, &p, NULL, 0);
	resolve_domain(r, "nomx.test", &w);
	addrs_of(&w.res.hosts[0], got, sizeof got);
	CHECK_STR(got, "2001:db8::20,127.0.0.20");
	nexthop_resolver_free(r);
	p.prefer_ipv6 = 0;
	p.families = NEXTHOP_FAMILY_IPV4;
	r = nexthop_resolver_new(base, &p, NULL, 0);
	resolve_domain(r, "nomx.test", &w);
	addrs_of(&w.res.hosts[0], got, sizeof got);
	CHECK_STR(got, "127.0.0.20");
	nexthop_resolver_free(r);
}

TEST(ties_follow_the_random_source)
{
	struct nexthop_resolver *r = resolver(&nsd_addr);
	struct waiter w1, w2;
	char a[256], b[256];
	if (!r)
		return;
	/* nsd answers in zone order; the keys decide. seq_123: t1 t2 t3; seq_321: t3 t2 t1. */
	fr.seq = seq_123;
	fr.i = 0;
	resolve_domain(r, "ties.test", &w1);
	names_of(&w1.res, a, sizeof a);
	fr.seq = seq_321;
	fr.i = 0;
	resolve_domain(r, "ties.test", &w2);
	names_of(&w2.res, b, sizeof b);
	CHECK_STR(a, "t1.ties.test t2.ties.test t3.ties.test");
	CHECK_STR(b, "t3.ties.test t2.ties.test t1.ties.test");
	nexthop_resolver_free(r);
}

TEST(truncated_answer_goes_tcp)
{
	struct nexthop_resolver *r = resolver(&nsd_addr);
	struct waiter w;
	if (!r)
		return;
	resolve_domain(r, "big.test", &w);
	CHECK_INT(w.res.status, NEXTHOP_FOUND);
	CHECK_INT(w.res.nhosts, NEXTHOP_HOSTS_MAX); /* the best of 40 */
	CHECK_STR(w.res.hosts[0].name, "mx-host-number-39-with-a-long-label.big.test");
	CHECK_INT(w.res.hosts[0].pref, 61);
	CHECK_INT(w.res.hosts[NEXTHOP_HOSTS_MAX - 1].pref, 61 + NEXTHOP_HOSTS_MAX - 1);
	nexthop_resolver_free(r);
}

struct route_case {
	const char *route; /* relay_smarthost syntax */
	enum nexthop_status status;
	const char *enh;
	const char *hosts;
	unsigned port0;
};

static const struct route_case route_cases[] = {
        {"[a.pref.test]:2525", NEXTHOP_FOUND, "", "a.pref.test", 2525},
        {"pref.test:587", NEXTHOP_FOUND, "", "a.pref.test b.pref.test c.pref.test", 587},
        {"[127.0.0.5]:26", NEXTHOP_FOUND, "", "127.0.0.5", 26},
        {"[nosuch.test]", NEXTHOP_TEMPFAIL, "4.4.4", "", 0}, /* a typo defers, never bounces */
        {"nosuch.test", NEXTHOP_TEMPFAIL, "4.4.4", "", 0},
        {"null.test", NEXTHOP_TEMPFAIL, "4.4.4", "", 0},
        {"[nosuch.test] [a.pref.test] [127.0.0.6]", NEXTHOP_FOUND, "", "a.pref.test 127.0.0.6", 25},
        {"[us.test]", NEXTHOP_PERMFAIL, "5.4.6", "", 0}, /* to ourselves: a loop */
        {"[us.test]:2525", NEXTHOP_FOUND, "", "us.test", 2525}, /* another port: not us */
        {"fail.test", NEXTHOP_TEMPFAIL, "4.4.3", "", 0},
};

TEST(routes_from_nsd)
{
	struct nexthop_resolver *r = resolver(&nsd_addr);
	if (!r)
		return;
	for (size_t i = 0; i < sizeof route_cases / sizeof route_cases[0]; i++) {
		const struct route_case *c = &route_cases[i];
		struct nexthop_spec specs[NEXTHOP_SPECS_MAX];
		size_t n = 0;
		struct waiter w;
		char got[512], err[128];
		memset(&w, 0, sizeof w);
		CHECK_INT(nexthop_hosts_parse(c->route, specs, NEXTHOP_SPECS_MAX, &n, err,
		                              sizeof err),
		          0);
		CHECK(nexthop_resolver_route(r, "example.com", specs, n, on_result, &w) != NULL);
		CHECK_INT(w.calls, 0);
		run_until(&w);
		names_of(&w.res, got, sizeof got);
		int ok = CHECK_INT(w.res.status, c->status);
		ok &= CHECK_STR(w.res.enh, c->enh);
		ok &= CHECK_STR(got, c->hosts);
		ok &= CHECK_STR(w.res.dest, "example.com");
		if (w.res.nhosts > 0) {
			ok &= CHECK_INT(w.res.hosts[0].port, c->port0);
			ok &= CHECK_INT(w.res.hosts[0].addrs[0].port, c->port0);
		}
		if (!ok)
			fprintf(stderr, "     route '%s': %s\n", c->route, w.res.text);
	}
	nexthop_resolver_free(r);
}

TEST(timeouts)
{
	struct nexthop_resolver *r = resolver(&silent_addr);
	struct waiter w;
	if (!r)
		return;
	resolve_domain(r, "pref.test", &w); /* the MX question times out */
	CHECK_INT(w.res.status, NEXTHOP_TEMPFAIL);
	CHECK_STR(w.res.enh, "4.4.3");
	CHECK(strstr(w.res.text, "timed out") != NULL);

	/* [HOST]: evdns' A/AAAA lookups time out. */
	struct nexthop_spec spec;
	CHECK_INT(nexthop_spec_parse("[a.pref.test]", 13, &spec, NULL, 0), 0);
	memset(&w, 0, sizeof w);
	nexthop_resolver_route(r, "example.com", &spec, 1, on_result, &w);
	run_until(&w);
	CHECK_INT(w.res.status, NEXTHOP_TEMPFAIL);
	CHECK_STR(w.res.enh, "4.4.3");
	nexthop_resolver_free(r);

	/* The request deadline cuts a slow lookup short. */
	struct nexthop_resolver_params p;
	params(&p, &silent_addr);
	p.timeout_ms = 5000;
	p.deadline_ms = 200;
	r = nexthop_resolver_new(base, &p, NULL, 0);
	resolve_domain(r, "pref.test", &w);
	CHECK_INT(w.res.status, NEXTHOP_TEMPFAIL);
	CHECK(strstr(w.res.text, "timed out") != NULL);
	nexthop_resolver_free(r);
}

/* A second name server that answers after one that is silent. */
TEST(next_server_after_a_timeout)
{
	struct netaddr two[2] = {silent_addr, nsd_addr};
	struct nexthop_resolver_params p;
	struct waiter w;
	char got[256];
	params(&p, &silent_addr);
	p.nameservers = two;
	p.nnameservers = 2;
	p.attempts = 3;
	p.families = NEXTHOP_FAMILY_IPV4;
	struct nexthop_resolver *r = nexthop_resolver_new(base, &p, NULL, 0);
	resolve_domain(r, "pref.test", &w);
	names_of(&w.res, got, sizeof got);
	CHECK_INT(w.res.status, NEXTHOP_FOUND);
	CHECK_STR(got, "a.pref.test b.pref.test c.pref.test");
	nexthop_resolver_free(r);
}

static void never(void *arg, const struct nexthop_result *r)
{
	int *n = arg;
	(*n)++;
}

TEST(cancel_and_free)
{
	struct nexthop_resolver *r = resolver(&nsd_addr);
	int stray = 0;
	struct waiter w;
	if (!r)
		return;
	/* Cancelled at once, and cancelled after its MX answer (while A/AAAA run). */
	struct nexthop_request *q1 = nexthop_resolver_domain(r, "pref.test", never, &stray);
	struct nexthop_request *q2 = nexthop_resolver_domain(r, "big.test", never, &stray);
	nexthop_request_cancel(q1);
	nexthop_request_cancel(NULL);
	for (int i = 0; i < 3; i++)
		event_base_loop(base, EVLOOP_ONCE); /* some answers arrive, not all */
	if (CHECK_INT(stray, 0))
		nexthop_request_cancel(q2);
	resolve_domain(r, "nomx.test", &w); /* the loop goes on; nothing stray calls back */
	CHECK_INT(stray, 0);
	CHECK_INT(w.res.status, NEXTHOP_FOUND);

	/* Freed with requests under way: no callbacks. */
	nexthop_resolver_domain(r, "pref.test", never, &stray);
	nexthop_resolver_domain(r, "[127.0.0.9]", never, &stray); /* a kick pending */
	struct nexthop_spec spec;
	nexthop_spec_parse("[a.pref.test]", 13, &spec, NULL, 0);
	nexthop_resolver_route(r, "x", &spec, 1, never, &stray);
	nexthop_resolver_free(r);
	for (int i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(stray, 0);
}

/* The callback may free the resolver (a delivery stopping at shutdown). */
static void free_in_callback(void *arg, const struct nexthop_result *res)
{
	struct nexthop_resolver **r = arg;
	nexthop_resolver_free(*r);
	*r = NULL;
}

TEST(free_from_the_callback)
{
	struct nexthop_resolver *r = resolver(&nsd_addr);
	int stray = 0;
	if (!r)
		return;
	nexthop_resolver_domain(r, "big.test", never, &stray);
	nexthop_resolver_domain(r, "nomx.test", free_in_callback, &r);
	while (r)
		event_base_loop(base, EVLOOP_ONCE);
	for (int i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(stray, 0);
}

/*
 * An in-process name server on the same event loop that, for each MX question,
 * first sends junk, a reply with another id and a reply for another name
 * (all to be ignored), then the real answer; A questions get 127.0.0.99, AAAA
 * questions an empty NOERROR. The question is echoed octet for octet (evdns
 * checks the case it randomised).
 */
struct liar {
	int fd;
	struct event *ev;
	int mx_questions;
};

static void liar_send(int fd, const struct dnsb *b, const struct sockaddr_storage *to,
                      socklen_t tolen)
{
	sendto(fd, b->buf, b->len, 0, (const struct sockaddr *)to, tolen);
}

static void liar_cb(evutil_socket_t fd, short what, void *arg)
{
	struct liar *l = arg;
	uint8_t q[512];
	struct sockaddr_storage from;
	socklen_t flen = sizeof from;
	ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
	struct dns_msg m;
	struct dnsb b;
	if (n <= 0 || dns_msg_parse(q, (size_t)n, &m) < 0 || m.qdcount != 1)
		return;
	unsigned id = m.id;
	size_t qlen = m.rr_off - DNS_MSG_HEADER_LEN;
	if (m.qtype == DNS_TYPE_MX) {
		l->mx_questions++;
		dnsb_header(&b, 0, 0, 0, 0, 0, 0);
		dnsb_raw(&b, "junk!", 5);
		liar_send(fd, &b, &from, flen);
		dnsb_header(&b, id ^ 1, DNSB_REPLY(0), 1, 1, 0, 0);
		dnsb_raw(&b, q + DNS_MSG_HEADER_LEN, qlen);
		dnsb_mx(&b, "^12", 10, "wrong-id.fake");
		liar_send(fd, &b, &from, flen);
		dnsb_header(&b, id, DNSB_REPLY(0), 1, 1, 0, 0);
		dnsb_question(&b, "other.fake", DNS_TYPE_MX);
		dnsb_mx(&b, "^12", 10, "wrong-name.fake");
		liar_send(fd, &b, &from, flen);
		dnsb_header(&b, id, DNSB_REPLY(0), 1, 1, 0, 0);
		dnsb_raw(&b, q + DNS_MSG_HEADER_LEN, qlen);
		dnsb_mx(&b, "^12", 10, "mx.fake");
		liar_send(fd, &b, &from, flen);
		return;
	}
	int is_a = m.qtype == DNS_TYPE_A;
	dnsb_header(&b, id, DNSB_REPLY(0), 1, is_a ? 1 : 0, 0, 0);
	dnsb_raw(&b, q + DNS_MSG_HEADER_LEN, qlen);
	if (is_a)
		dnsb_a(&b, "^12", 127, 0, 0, 99);
	liar_send(fd, &b, &from, flen);
}

TEST(forged_replies_are_ignored)
{
	struct liar l = {socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), NULL, 0};
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof sin;
	struct netaddr ns;
	struct waiter w;
	char got[256];
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!CHECK(l.fd >= 0 && bind(l.fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
	           getsockname(l.fd, (struct sockaddr *)&sin, &len) == 0))
		return;
	memcpy(&ns.ss, &sin, sizeof sin);
	ns.len = sizeof sin;
	l.ev = event_new(base, l.fd, EV_READ | EV_PERSIST, liar_cb, &l);
	event_add(l.ev, NULL);
	struct nexthop_resolver *r = resolver(&ns);
	resolve_domain(r, "liar.fake", &w);
	names_of(&w.res, got, sizeof got);
	CHECK_INT(w.res.status, NEXTHOP_FOUND);
	CHECK_STR(got, "mx.fake");
	CHECK_INT(l.mx_questions, 1); /* answered in the first try: the lies were skipped */
	addrs_of(&w.res.hosts[0], got, sizeof got);
	CHECK_STR(got, "127.0.0.99");
	nexthop_resolver_free(r);
	event_free(l.ev);
	close(l.fd);
}

TEST(resolv_conf)
{
	char path[256], text[128];
	struct nexthop_resolver_params p;
	struct waiter w;
	char err[256] = "";
	snprintf(path, sizeof path, "%s/resolv.conf", tmpdir);
	snprintf(text, sizeof text, "# test\nsearch example.org\nnameserver 127.0.0.1:%d\n",
	         nsd_port);
	CHECK_INT(write_file("resolv.conf", text), 0);
	params(&p, NULL);
	p.nameservers = NULL;
	p.nnameservers = 0;
	p.resolv_conf = path;
	struct nexthop_resolver *r = nexthop_resolver_new(base, &p, err, sizeof err);
	if (!CHECK(r != NULL)) {
		fprintf(stderr, "     %s\n", err);
		return;
	}
	resolve_domain(r, "pref.test", &w);
	CHECK_INT(w.res.status, NEXTHOP_FOUND);
	CHECK_INT(w.res.nhosts, 3);
	nexthop_resolver_free(r);

	/* Missing, or naming no server: refused at start-up with a reason. */
	snprintf(path, sizeof path, "%s/no-such-resolv.conf", tmpdir);
	CHECK(nexthop_resolver_new(base, &p, err, sizeof err) == NULL);
	CHECK(strstr(err, "no-such-resolv.conf") != NULL);
	CHECK_INT(write_file("empty.conf", "# nothing\n"), 0);
	snprintf(path, sizeof path, "%s/empty.conf", tmpdir);
	CHECK(nexthop_resolver_new(base, &p, err, sizeof err) == NULL);
	CHECK(strstr(err, "empty.conf") != NULL);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
	        T(domains_from_nsd),
	        T(addresses_and_preferences),
	        T(ties_follow_the_random_source),
	        T(truncated_answer_goes_tcp),
	        T(routes_from_nsd),
	        T(timeouts),
	        T(next_server_after_a_timeout),
	        T(cancel_and_free),
	        T(free_from_the_callback),
	        T(forged_replies_are_ignored),
	        T(resolv_conf),
	};
	if (access(NSD_PATH, X_OK) != 0) {
		printf("SKIP test_mx_dns: %s not installed (scripts/install-deps installs nsd)\n",
		       NSD_PATH);
		printf("0 passed, 0 failed, 1 skipped\n");
		return 0;
	}
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGALRM, on_signal);
	signal(SIGSEGV, on_signal);
	signal(SIGABRT, on_signal);
	alarm(100); /* the last resort; run-all allows 120 s */
	char err[64];
	netaddr_parse_hostport("127.0.0.77:25", 25, 0, &self_addrs[0], err, sizeof err);
	if (nsd_start() < 0 || silent_start() < 0) {
		fprintf(stderr, "test_mx_dns: could not start nsd on loopback; its output:\n");
		dump_file("nsd.out");
		dump_file("nsd.log");
		printf("0 passed, 1 failed\n");
		return 1;
	}
	base = event_base_new();
	int rc = harness_run(cases, sizeof cases / sizeof cases[0], argc, argv);
	event_base_free(base);
	close(silent_fd);
	return rc;
}
