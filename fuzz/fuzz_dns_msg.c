/*
 * fuzz_dns_msg: libFuzzer target for proto/dns_msg and the parts of
 * deliver/nexthop that read what a name server sends. Parses the input as a
 * reply, walks every record, decodes MX and CNAME data, names at the first
 * offsets, runs the MX answer through planning and finishing, and checks: every
 * offset and length stays inside the input, every decoded name is at most 253
 * octets of lower-case letters, digits, '-', '_' and dots, the walk ends within
 * the announced count, lists stay within their bounds, and a decoded question
 * formats into a query that parses back to the same question. The input is
 * also read as a relay_route value (configuration text). A violated invariant
 * traps.
 */
#include <stdint.h>
#include <string.h>

#include "deliver/nexthop.h"
#include "proto/dns_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static void check_name(const char *s)
{
	size_t n = strlen(s);
	require(n <= DNS_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		require((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		        c == '.');
	}
	require(n == 0 || (s[0] != '.' && s[n - 1] != '.'));
	require(strstr(s, "..") == NULL);
}

static uint32_t counter_rand(void *arg)
{
	uint32_t *c = arg;
	return (*c)++ * 2654435761u;
}

static void check_records(const struct dns_msg *m, size_t size)
{
	struct dns_rr_iter it;
	struct dns_rr rr;
	char name[DNS_NAME_BUFSZ];
	uint16_t pref;
	uint32_t count = 0;
	int r;
	dns_rr_iter_init(&it, m);
	while ((r = dns_rr_next(&it, &rr)) == 1) {
		count++;
		require(count <= (uint32_t)m->ancount + m->nscount + m->arcount);
		require(rr.rdata_off <= size && rr.rdlen <= size - rr.rdata_off);
		check_name(rr.owner);
		require(rr.owner_ok || rr.owner[0] == '\0');
		if (dns_rr_mx(m, &rr, &pref, name) != DNS_NAME_MALFORMED)
			check_name(name);
		else
			require(name[0] == '\0');
		if (dns_rr_cname(m, &rr, name) != DNS_NAME_MALFORMED)
			check_name(name);
	}
	require(r == 0 || r == -1);
	require(dns_rr_next(&it, &rr) == r);
}

static void check_question_round_trip(const struct dns_msg *m)
{
	uint8_t q[DNS_QUERY_MAX];
	struct dns_msg back;
	if (!m->qname_ok)
		return;
	int n = dns_msg_query_format(q, sizeof q, m->id, m->qname, m->qtype);
	require(n > 0 && (size_t)n <= sizeof q);
	require(dns_msg_parse(q, (size_t)n, &back) == 0);
	require(strcmp(back.qname, m->qname) == 0 && back.qtype == m->qtype);
	require(!dns_msg_is_reply_to(&back, m->id, m->qname, m->qtype)); /* a query, not a reply */
	q[2] |= 0x80;
	require(dns_msg_parse(q, (size_t)n, &back) == 0);
	require(dns_msg_is_reply_to(&back, m->id, m->qname, m->qtype));
}

static void check_mx(const struct dns_msg *m)
{
	struct nexthop_mxlist l;
	struct nexthop_result res;
	uint32_t c = 1;
	const char *names[] = {"mx.example.com"};
	struct nexthop_self self = {names, 1, NULL, 0};
	enum nexthop_answer a = nexthop_mx_answer(m, m->qname, &l, counter_rand, &c);
	require(l.n <= NEXTHOP_MX_MAX);
	for (size_t i = 0; i < l.n; i++) {
		check_name(l.mx[i].name);
		require(l.mx[i].name[0] != '\0');
	}
	nexthop_mx_plan(m->qname_ok ? m->qname : "example.com", 25, a, &l, &self, &res);
	require(res.nhosts <= NEXTHOP_HOSTS_MAX);
	require((res.status == NEXTHOP_FOUND) == (res.enh[0] == '\0'));
	for (size_t i = 1; i < res.nhosts; i++)
		require(res.hosts[i - 1].pref <= res.hosts[i].pref);
	for (size_t i = 0; i < res.nhosts; i++)
		require(strcmp(res.hosts[i].name, "mx.example.com") != 0);
	nexthop_finish(&res, &self, 0);
	require(res.status != NEXTHOP_FOUND || res.nhosts == 0 || res.hosts[0].naddrs > 0);
}

static void check_route_text(const uint8_t *data, size_t size)
{
	char text[512];
	struct nexthop_route route;
	struct nexthop_spec spec;
	char err[128];
	if (size >= sizeof text)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	if (nexthop_route_parse(text, &route, err, sizeof err) == 0) {
		require(route.nspecs >= 1 && route.nspecs <= NEXTHOP_SPECS_MAX);
		for (size_t i = 0; i < route.nspecs; i++)
			require(route.specs[i].port >= 1 && route.specs[i].port <= 65535);
	}
	if (nexthop_spec_parse(text, size, &spec, err, sizeof err) == 0)
		require(spec.port >= 1 && spec.port <= 65535 && strlen(spec.host) <= DNS_NAME_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_msg m;
	char name[DNS_NAME_BUFSZ];
	for (size_t off = 0; off < size && off < 48; off++) {
		size_t end = 0;
		int r = dns_name_decode(data, size, off, name, &end);
		if (r == DNS_NAME_MALFORMED) {
			require(name[0] == '\0');
			continue;
		}
		check_name(name);
		require(end > off && end <= size);
	}
	if (dns_msg_parse(data, size, &m) == 0) {
		require(m.rr_off >= DNS_MSG_HEADER_LEN && m.rr_off <= size);
		check_name(m.qname);
		check_records(&m, size);
		check_question_round_trip(&m);
		check_mx(&m);
	}
	check_route_text(data, size);
	return 0;
}
