/*
 * Unit tests for deliver/deliver_policy: destination keys, what SMTP results and
 * next-hop failures mean per recipient, which notices outcomes owe, status lines.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "deliver/deliver_headers.h"
#include "deliver/deliver_policy.h"
#include "harness.h"

/* ---- destinations ---- */

static int local_example(void *arg, const char *domain, size_t len)
{
	(void)arg;
	return (len == 11 && strncasecmp(domain, "example.com", 11) == 0) ||
	       (len == 5 && strncasecmp(domain, "local", 5) == 0 && arg != NULL);
}

struct dest_case {
	const char *addr;
	int smarthost;
	enum deliver_dest_kind kind;
	const char *key;
};

static const struct dest_case dest_cases[] = {
        {"a@example.com", 0, DELIVER_DEST_IS_LOCAL, SCHEDULER_DEST_LOCAL},
        {"a@EXAMPLE.Com", 1, DELIVER_DEST_IS_LOCAL, SCHEDULER_DEST_LOCAL},
        {"\"odd one\"@example.com", 0, DELIVER_DEST_IS_LOCAL, SCHEDULER_DEST_LOCAL},
        /* The route's domain as configured is the key; case folded for the domain. */
        {"b@Partner.Example", 0, DELIVER_DEST_IS_ROUTE, "partner.example"},
        {"b@partner.example", 1, DELIVER_DEST_IS_ROUTE, "partner.example"},
        {"c@x.sub.example", 0, DELIVER_DEST_IS_ROUTE, ".sub.example"},
        {"c@sub.example", 0, DELIVER_DEST_IS_DOMAIN, "sub.example"}, /* ".sub" is subdomains only */
        {"c@sub.example", 1, DELIVER_DEST_IS_SMARTHOST, DELIVER_DEST_SMARTHOST},
        {"d@Other.ORG", 0, DELIVER_DEST_IS_DOMAIN, "other.org"},
        {"d@other.org", 1, DELIVER_DEST_IS_SMARTHOST, DELIVER_DEST_SMARTHOST},
        /* A domain called "local" is a domain like any other, not the local key. */
        {"e@local", 0, DELIVER_DEST_IS_DOMAIN, "local"},
        /* An address literal: its own key, as written, never a route. */
        {"f@[192.0.2.1]", 0, DELIVER_DEST_IS_DOMAIN, "[192.0.2.1]"},
        {"f@[IPv6:2001:DB8::1]", 0, DELIVER_DEST_IS_DOMAIN, "[IPv6:2001:DB8::1]"},
        {"f@[192.0.2.1]", 1, DELIVER_DEST_IS_SMARTHOST, DELIVER_DEST_SMARTHOST},
        /* Not addresses. */
        {"no-at-sign", 0, DELIVER_DEST_BAD, ""},
        {"", 0, DELIVER_DEST_BAD, ""},
        {NULL, 0, DELIVER_DEST_BAD, ""},
        {"a b@example.com", 0, DELIVER_DEST_BAD, ""},
};

static int routes(struct nexthop_route *r)
{
	char err[128];
	return nexthop_route_parse("partner.example [192.0.2.9]:2525", &r[0], err, sizeof err) ||
	       nexthop_route_parse(".sub.example relay.sub.example", &r[1], err, sizeof err);
}

TEST(dest_keys)
{
	struct nexthop_route r[2];
	if (!CHECK_INT(routes(r), 0))
		return;
	for (size_t i = 0; i < sizeof dest_cases / sizeof dest_cases[0]; i++) {
		const struct dest_case *c = &dest_cases[i];
		struct deliver_routes dr = {r, 2, c->smarthost, local_example, NULL};
		char key[SCHEDULER_DEST_MAX + 1];
		const struct nexthop_route *route = (void *)1;
		enum deliver_dest_kind k =
		        deliver_policy_dest(&dr, c->addr, key, sizeof key, &route);
		if (!CHECK_INT(k, c->kind) || !CHECK_STR(key, c->key))
			fprintf(stderr, "  case %zu: %s\n", i, c->addr ? c->addr : "(null)");
		CHECK(k == DELIVER_DEST_IS_ROUTE ? route != NULL : route == NULL);
	}
	/* The first matching route wins, in configuration order. */
	struct nexthop_route two[2];
	char err[128];
	nexthop_route_parse("partner.example [192.0.2.1]", &two[0], err, sizeof err);
	nexthop_route_parse("partner.example [192.0.2.2]", &two[1], err, sizeof err);
	struct deliver_routes dr = {two, 2, 0, local_example, NULL};
	const struct nexthop_route *route = NULL;
	char key[SCHEDULER_DEST_MAX + 1];
	deliver_policy_dest(&dr, "x@partner.example", key, sizeof key, &route);
	CHECK(route == &two[0]);
	/* A domain that could not be a key (over 255 octets) or a buffer too small. */
	char longaddr[400] = "x@";
	for (int i = 0; i < 5; i++)
		strcat(longaddr, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.");
	strcat(longaddr, "com");
	CHECK_INT(deliver_policy_dest(&dr, longaddr, key, sizeof key, NULL), DELIVER_DEST_BAD);
	char tiny[4];
	CHECK_INT(deliver_policy_dest(&dr, "x@other.org", tiny, sizeof tiny, NULL),
	          DELIVER_DEST_BAD);
	CHECK_INT(deliver_policy_dest(&dr, "x@other.org", tiny, 0, NULL), DELIVER_DEST_BAD);
}

/* ---- SMTP results ---- */

struct relay_case {
	enum deliver_relay_end end;
	enum smtp_client_rcpt_status st;
	int code;
	const char *enh;
	const char *text;
	enum scheduler_outcome so;
	enum rcpt_state state;
	int peer;
	const char *status;
};

static const struct relay_case relay_cases[] = {
        /* The peer's own answers. */
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_DELIVERED, 250, "2.0.0", "Ok: queued as X",
         SCHEDULER_DELIVERED, RCPT_DELIVERED, 250, "250 2.0.0 Ok: queued as X"},
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_DELIVERED, 250, "", "ok", SCHEDULER_DELIVERED,
         RCPT_DELIVERED, 250, "250 2.0.0 ok"},
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_FAILED, 550, "5.1.1", "no such user",
         SCHEDULER_FAILED, RCPT_FAILED, 550, "550 5.1.1 no such user"},
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_DEFERRED, 451, "4.3.0", "try later",
         SCHEDULER_DEFER_RCPT, RCPT_DEFERRED, 451, "451 4.3.0 try later"},
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_DEFERRED, 452, "4.2.2", "full",
         SCHEDULER_DEFER_RCPT, RCPT_DEFERRED, 452, "452 4.2.2 full"},
        /* 421 (the peer closing) and no answer at all: the connection's failure. */
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_DEFERRED, 421, "4.4.2", "bye",
         SCHEDULER_DEFER_DEST, RCPT_DEFERRED, 421, "421 4.4.2 bye"},
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.4.2", "lost connection",
         SCHEDULER_DEFER_DEST, RCPT_DEFERRED, 0, "451 4.4.2 lost connection"},
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_DEFERRED, 0, "", "timeout", SCHEDULER_DEFER_DEST,
         RCPT_DEFERRED, 0, "451 4.0.0 timeout"},
        /* Our own permanent checks: 8-bit to a 7-bit peer, too large. */
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_FAILED, 0, "5.6.3", "8-bit to 7-bit",
         SCHEDULER_FAILED, RCPT_FAILED, 0, "554 5.6.3 8-bit to 7-bit"},
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_FAILED, 0, "", "too big", SCHEDULER_FAILED,
         RCPT_FAILED, 0, "554 5.0.0 too big"},
        /* A peer's inconsistent enhanced code gives way to the class's default. */
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_FAILED, 550, "4.1.1", "odd", SCHEDULER_FAILED,
         RCPT_FAILED, 550, "550 5.0.0 odd"},
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_DEFERRED, 450, "5.1.1", "odd",
         SCHEDULER_DEFER_RCPT, RCPT_DEFERRED, 450, "450 4.0.0 odd"},
        /* The destination is dead: every recipient, whatever it says, backs off with it. */
        {DELIVER_RELAY_DEST_DEAD, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.4.1", "connection refused",
         SCHEDULER_DEFER_DEST, RCPT_DEFERRED, 0, "451 4.4.1 connection refused"},
        {DELIVER_RELAY_DEST_DEAD, SMTP_CLIENT_RCPT_DEFERRED, 421, "4.3.2", "busy",
         SCHEDULER_DEFER_DEST, RCPT_DEFERRED, 421, "421 4.3.2 busy"},
        {DELIVER_RELAY_DEST_DEAD, SMTP_CLIENT_RCPT_DEFERRED, 554, "5.7.1", "go away",
         SCHEDULER_DEFER_DEST, RCPT_DEFERRED, 554, "451 4.4.1 host said: 554 5.7.1 go away"},
        {DELIVER_RELAY_DEST_DEAD, SMTP_CLIENT_RCPT_DEFERRED, 554, "", "no", SCHEDULER_DEFER_DEST,
         RCPT_DEFERRED, 554, "451 4.4.1 host said: 554 no"},
        /* Our side failed: deferred, the destination not blamed. */
        {DELIVER_RELAY_LOCAL_ERROR, SMTP_CLIENT_RCPT_DEFERRED, 0, "4.3.0", "cannot read",
         SCHEDULER_DEFER_RCPT, RCPT_DEFERRED, 0, "451 4.3.0 cannot read"},
        {DELIVER_RELAY_LOCAL_ERROR, SMTP_CLIENT_RCPT_DELIVERED, 250, "2.0.0", "ok",
         SCHEDULER_DELIVERED, RCPT_DELIVERED, 250, "250 2.0.0 ok"},
        /* Not finally answered: never delivered. */
        {DELIVER_RELAY_ANSWERED, SMTP_CLIENT_RCPT_PENDING, 0, "", "", SCHEDULER_DEFER_DEST,
         RCPT_DEFERRED, 0, "451 4.0.0"},
};

TEST(relay_verdicts)
{
	for (size_t i = 0; i < sizeof relay_cases / sizeof relay_cases[0]; i++) {
		const struct relay_case *c = &relay_cases[i];
		struct smtp_client_rcpt_result r;
		memset(&r, 0, sizeof r);
		r.status = c->st;
		r.reply.code = c->code;
		snprintf(r.reply.enh, sizeof r.reply.enh, "%s", c->enh);
		snprintf(r.reply.text, sizeof r.reply.text, "%s", c->text);
		struct deliver_verdict v;
		deliver_policy_relay(c->end, &r, &v);
		int ok = CHECK_INT(v.so, c->so);
		ok &= CHECK_INT(v.state, c->state);
		ok &= CHECK_INT(v.peer_code, c->peer);
		ok &= CHECK_STR(v.status, c->status);
		if (!ok)
			fprintf(stderr, "  case %zu\n", i);
	}
}

TEST(relay_status_is_bounded_and_printable)
{
	struct smtp_client_rcpt_result r;
	memset(&r, 0, sizeof r);
	r.status = SMTP_CLIENT_RCPT_FAILED;
	r.reply.code = 550;
	memset(r.reply.text, 'x', SMTP_CLIENT_TEXT_MAX);
	r.reply.text[3] = '\r';
	r.reply.text[4] = '\n';
	r.reply.text[5] = (char)0xe9;
	struct deliver_verdict v;
	deliver_policy_relay(DELIVER_RELAY_ANSWERED, &r, &v);
	CHECK(strlen(v.status) < sizeof v.status);
	CHECK(strncmp(v.status, "550 5.0.0 xxx???xx", 18) == 0);
	for (const char *p = v.status; *p; p++)
		CHECK(*p >= 0x20 && *p < 0x7f);
	char small[12];
	deliver_policy_status(small, sizeof small, RCPT_FAILED, 550, "5.1.1", "long text");
	CHECK_STR(small, "550 5.1.1 l");
	deliver_policy_status(small, sizeof small, RCPT_DEFERRED, 999, NULL, NULL);
	CHECK_STR(small, "451 4.0.0");
	deliver_policy_status(small, 0, RCPT_DEFERRED, 0, NULL, NULL); /* nothing written */
}

/* ---- next hops ---- */

TEST(nexthop_verdicts)
{
	static const struct {
		enum nexthop_status st;
		const char *enh, *text;
		enum scheduler_outcome so;
		const char *status;
	} cases[] = {
	        {NEXTHOP_PERMFAIL, "5.1.10", "null MX", SCHEDULER_FAILED, "556 5.1.10 null MX"},
	        {NEXTHOP_PERMFAIL, "5.1.2", "no such domain", SCHEDULER_FAILED,
	         "550 5.1.2 no such domain"},
	        {NEXTHOP_PERMFAIL, "5.4.6", "mail for x loops back to myself", SCHEDULER_FAILED,
	         "550 5.4.6 mail for x loops back to myself"},
	        {NEXTHOP_PERMFAIL, "", "odd", SCHEDULER_FAILED, "550 5.4.4 odd"},
	        {NEXTHOP_TEMPFAIL, "4.4.3", "SERVFAIL", SCHEDULER_DEFER_DEST, "451 4.4.3 SERVFAIL"},
	        {NEXTHOP_TEMPFAIL, "5.1.2", "odd", SCHEDULER_DEFER_DEST, "451 4.4.3 odd"},
	        {NEXTHOP_TEMPFAIL, "", "", SCHEDULER_DEFER_DEST, "451 4.4.3 next hop not found"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct nexthop_result res;
		nexthop_result_init(&res, "example.org");
		nexthop_result_fail(&res, cases[i].st, cases[i].enh, "%s", cases[i].text);
		struct deliver_verdict v;
		deliver_policy_nexthop(&res, &v);
		CHECK_INT(v.so, cases[i].so);
		CHECK_INT(v.state, cases[i].st == NEXTHOP_PERMFAIL ? RCPT_FAILED : RCPT_DEFERRED);
		CHECK_INT(v.peer_code, 0);
		if (!CHECK_STR(v.status, cases[i].status))
			fprintf(stderr, "  case %zu\n", i);
	}
}

/* ---- notices ---- */

TEST(notices)
{
	static const struct {
		const char *sender;
		unsigned notify;
		enum rcpt_state st;
		enum deliver_via via;
		enum deliver_notice want;
	} cases[] = {
	        /* No NOTIFY: failures are reported, successes never. */
	        {"s@x", 0, RCPT_FAILED, DELIVER_VIA_LOCAL, DELIVER_NOTICE_FAILED},
	        {"s@x", 0, RCPT_DELIVERED, DELIVER_VIA_LOCAL, DELIVER_NOTICE_NONE},
	        {"s@x", 0, RCPT_DELIVERED, DELIVER_VIA_PEER, DELIVER_NOTICE_NONE},
	        /* The null sender never gets one (no bounce of a bounce). */
	        {"", 0, RCPT_FAILED, DELIVER_VIA_LOCAL, DELIVER_NOTICE_NONE},
	        {"", ESMTP_NOTIFY_SUCCESS, RCPT_DELIVERED, DELIVER_VIA_PEER, DELIVER_NOTICE_NONE},
	        {NULL, 0, RCPT_FAILED, DELIVER_VIA_LOCAL, DELIVER_NOTICE_NONE},
	        /* NEVER: nothing at all. */
	        {"s@x", ESMTP_NOTIFY_NEVER, RCPT_FAILED, DELIVER_VIA_LOCAL, DELIVER_NOTICE_NONE},
	        /* SUCCESS: delivered here, relayed to a peer without DSN, expanded. */
	        {"s@x", ESMTP_NOTIFY_SUCCESS, RCPT_DELIVERED, DELIVER_VIA_LOCAL,
	         DELIVER_NOTICE_DELIVERED},
	        {"s@x", ESMTP_NOTIFY_SUCCESS, RCPT_DELIVERED, DELIVER_VIA_PEER,
	         DELIVER_NOTICE_RELAYED},
	        {"s@x", ESMTP_NOTIFY_SUCCESS, RCPT_DELIVERED, DELIVER_VIA_PEER_DSN,
	         DELIVER_NOTICE_NONE}, /* the peer reports from here on */
	        {"s@x", ESMTP_NOTIFY_SUCCESS, RCPT_DELIVERED, DELIVER_VIA_EXPANSION,
	         DELIVER_NOTICE_EXPANDED},
	        /* SUCCESS only: a failure is not reported. */
	        {"s@x", ESMTP_NOTIFY_SUCCESS, RCPT_FAILED, DELIVER_VIA_LOCAL, DELIVER_NOTICE_NONE},
	        {"s@x", ESMTP_NOTIFY_SUCCESS | ESMTP_NOTIFY_FAILURE, RCPT_FAILED, DELIVER_VIA_PEER,
	         DELIVER_NOTICE_FAILED},
	        {"s@x", ESMTP_NOTIFY_DELAY, RCPT_FAILED, DELIVER_VIA_LOCAL, DELIVER_NOTICE_NONE},
	        /* Deferred: no notice from an attempt (delay notices are their own jobs). */
	        {"s@x", 0, RCPT_DEFERRED, DELIVER_VIA_LOCAL, DELIVER_NOTICE_NONE},
	        {"s@x", ESMTP_NOTIFY_SUCCESS, RCPT_DEFERRED, DELIVER_VIA_PEER, DELIVER_NOTICE_NONE},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!CHECK_INT(deliver_policy_notice(cases[i].sender, cases[i].notify, cases[i].st,
		                                     cases[i].via),
		               cases[i].want))
			fprintf(stderr, "  case %zu\n", i);
	CHECK_INT(deliver_policy_delay_wanted("s@x", 0), 1);
	CHECK_INT(deliver_policy_delay_wanted("s@x", ESMTP_NOTIFY_DELAY), 1);
	CHECK_INT(deliver_policy_delay_wanted("s@x", ESMTP_NOTIFY_DELAY | ESMTP_NOTIFY_FAILURE), 1);
	CHECK_INT(deliver_policy_delay_wanted("s@x", ESMTP_NOTIFY_FAILURE), 0);
	CHECK_INT(deliver_policy_delay_wanted("s@x", ESMTP_NOTIFY_SUCCESS), 0);
	CHECK_INT(deliver_policy_delay_wanted("s@x", ESMTP_NOTIFY_NEVER), 0);
	CHECK_INT(deliver_policy_delay_wanted("", 0), 0);
}

/* ---- Domain Sharing ---- */

TEST(peer_routes)
{
	struct nexthop_spec sp;
	CHECK_INT(deliver_policy_peer_route("[127.0.0.1]:2526", &sp), DELIVER_PEER_MAIL);
	CHECK_INT((int)sp.kind, NEXTHOP_KIND_ADDR);
	CHECK_INT((int)sp.port, 2526);
	CHECK_INT(deliver_policy_peer_route("[IPv6:2001:db8::1]:25", &sp), DELIVER_PEER_MAIL);
	CHECK_INT(sp.addr.family, AF_INET6);
	CHECK_INT(deliver_policy_peer_route("[mail.b.example]:2525", &sp), DELIVER_PEER_MAIL);
	CHECK_INT((int)sp.kind, NEXTHOP_KIND_HOST);
	CHECK_STR(sp.host, "mail.b.example");
	CHECK_INT(deliver_policy_peer_route("list:[127.0.0.1]:2526", &sp), DELIVER_PEER_LIST);
	CHECK_INT((int)sp.port, 2526);
	/* Every other destination key is not a peer route. */
	const char *not_peers[] = {"[192.0.2.1]",
	                           "[IPv6:2001:db8::1]",
	                           DELIVER_DEST_SMARTHOST,
	                           "example.com",
	                           "partner.example",
	                           SCHEDULER_DEST_LOCAL,
	                           "[127.0.0.1]:",
	                           "[127.0.0.1]:0",
	                           "[127.0.0.1]:65536",
	                           "[127.0.0.1]x25",
	                           "list:",
	                           "list:example.com",
	                           "list:[1.2.3.4]",
	                           "[bad host!]:25",
	                           "",
	                           NULL};
	for (size_t i = 0; i < sizeof not_peers / sizeof not_peers[0]; i++)
		if (!CHECK_INT(deliver_policy_peer_route(not_peers[i], NULL), DELIVER_PEER_NONE))
			fprintf(stderr, "  case %zu: %s\n", i,
			        not_peers[i] ? not_peers[i] : "(null)");
}

TEST(stored_route_wins)
{
	struct nexthop_route r[2];
	if (!CHECK_INT(routes(r), 0))
		return;
	struct deliver_routes dr = {r, 2, 1, local_example, NULL};
	char key[SCHEDULER_DEST_MAX + 1];
	const struct nexthop_route *route = (void *)1;
	/* A local recipient with a peer route goes there, not to the Maildir. */
	CHECK_INT(deliver_policy_rcpt_dest(&dr, "carol@example.com", "[127.0.0.1]:2526", key,
	                                   sizeof key, &route),
	          DELIVER_DEST_IS_PEER);
	CHECK_STR(key, "[127.0.0.1]:2526");
	CHECK(route == NULL);
	CHECK_INT(deliver_policy_rcpt_dest(&dr, "team@example.com", "list:[127.0.0.1]:9", key,
	                                   sizeof key, NULL),
	          DELIVER_DEST_IS_PEER);
	CHECK_STR(key, "list:[127.0.0.1]:9");
	/* No route, or a route delivery wrote itself: as today (recomputed). */
	CHECK_INT(deliver_policy_rcpt_dest(&dr, "carol@example.com", NULL, key, sizeof key, NULL),
	          DELIVER_DEST_IS_LOCAL);
	CHECK_STR(key, SCHEDULER_DEST_LOCAL);
	CHECK_INT(deliver_policy_rcpt_dest(&dr, "carol@example.com", "partner.example", key,
	                                   sizeof key, NULL),
	          DELIVER_DEST_IS_LOCAL);
	CHECK_INT(deliver_policy_rcpt_dest(&dr, "x@partner.example", DELIVER_DEST_SMARTHOST, key,
	                                   sizeof key, &route),
	          DELIVER_DEST_IS_ROUTE);
	CHECK_STR(key, "partner.example");
	CHECK_INT(deliver_policy_rcpt_dest(&dr, "x@other.org", "", key, sizeof key, NULL),
	          DELIVER_DEST_IS_SMARTHOST);
	/* A route never rescues a bad address; a key that does not fit is BAD. */
	CHECK_INT(deliver_policy_rcpt_dest(&dr, "no-at-sign", "[127.0.0.1]:25", key, sizeof key,
	                                   NULL),
	          DELIVER_DEST_BAD);
	char tiny[8];
	CHECK_INT(deliver_policy_rcpt_dest(&dr, "carol@example.com", "[127.0.0.1]:2526", tiny,
	                                   sizeof tiny, NULL),
	          DELIVER_DEST_IS_LOCAL);
}

TEST(smarthost_fallback)
{
	uint32_t tried[3] = {1, 2, 5}, fresh[3] = {1, 0, 5};
	CHECK_INT(deliver_policy_peer_fallback(0, 1, tried, 3), 1);
	CHECK_INT(deliver_policy_peer_fallback(0, 1, fresh, 3), 0); /* a first try: the peer */
	CHECK_INT(deliver_policy_peer_fallback(1, 1, tried, 3), 0); /* keep_on_error = yes */
	CHECK_INT(deliver_policy_peer_fallback(0, 0, tried, 3), 0); /* no smart host */
	CHECK_INT(deliver_policy_peer_fallback(0, 1, tried, 0), 0);
}

TEST(shared_loops)
{
	const char *hdr = "X-Sharemail-Shared: by b.test; id Q1; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	                  "x-sharemail-shared:\r\n  by  A.Test ; id Q0; date\r\n"
	                  "X-Sharemail-Shared-Not: by a.test\r\n"
	                  "Received: by a.test\r\n"
	                  "Subject: X-Sharemail-Shared: by a.test\r\n\r\n"
	                  "X-Sharemail-Shared: by body.test\r\n";
	unsigned hops = 9;
	int ours = 9;
	deliver_headers_shared(hdr, strlen(hdr), "a.test", &hops, &ours);
	CHECK_INT((int)hops, 2); /* the body's line and the look-alike field are not counted */
	CHECK_INT(ours, 1); /* folded, other case */
	deliver_headers_shared(hdr, strlen(hdr), "a.tes", &hops, &ours);
	CHECK_INT(ours, 0); /* a prefix of a name is not the name */
	deliver_headers_shared(hdr, strlen(hdr), "b.test", &hops, &ours);
	CHECK_INT(ours, 1);
	deliver_headers_shared(hdr, strlen(hdr), "", &hops, &ours);
	CHECK_INT(ours, 0);
	CHECK_INT(deliver_headers_has(hdr, strlen(hdr), "X-Sharemail-Shared"), 1);
	CHECK_INT(deliver_headers_has(hdr, strlen(hdr), DELIVER_LIST_SHARED_FIELD), 0);

	struct deliver_verdict v;
	CHECK_INT(deliver_policy_shared_loop(1, 1, "[127.0.0.1]:25", &v), 1);
	CHECK_INT((int)v.state, RCPT_FAILED);
	CHECK_INT((int)v.so, SCHEDULER_FAILED);
	CHECK(strncmp(v.status, "550 5.4.6 Domain Sharing loop", 29) == 0);
	CHECK(strstr(v.status, "[127.0.0.1]:25") != NULL);
	CHECK_INT(deliver_policy_shared_loop(DELIVER_SHARED_HOPS_MAX, 0, "p", &v), 1);
	CHECK(strncmp(v.status, "550 5.4.6 too many Domain Sharing hops", 38) == 0);
	CHECK_INT(deliver_policy_shared_loop(DELIVER_SHARED_HOPS_MAX - 1, 0, "p", &v), 0);
	CHECK_INT(deliver_policy_shared_loop(0, 0, "p", &v), 0);

	char out[256];
	long n = deliver_headers_shared_build("a.test", "08ABC", 0, out, sizeof out);
	CHECK_STR(out,
	          "X-Sharemail-Shared: by a.test; id 08ABC; Thu, 01 Jan 1970 00:00:00 +0000\r\n");
	CHECK_INT((int)n, (int)strlen(out));
	deliver_headers_shared(out, (size_t)n, "a.test", &hops, &ours);
	CHECK(hops == 1 && ours == 1); /* what we write, we recognise */
	CHECK_INT((int)deliver_headers_shared_build("a.test", "08ABC", 0, out, 20), -1);
}

TEST(list_peer_answers)
{
	struct deliver_verdict v;
	CHECK_INT(deliver_policy_list_peer(5, "[p]:25", &v), 1);
	CHECK_INT(deliver_policy_list_peer(3, "[p]:25", &v), 0);
	CHECK_INT((int)v.state, RCPT_DELIVERED);
	CHECK(strncmp(v.status, "250 2.0.0 not shared", 20) == 0);
	CHECK_INT(deliver_policy_list_peer(4, "[p]:25", &v), 0);
	CHECK_INT((int)v.state, RCPT_DELIVERED);
	const int later[] = {-1, 0, 1, 2, 6};
	for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
		CHECK_INT(deliver_policy_list_peer(later[i], "[p]:25", &v), 0);
		CHECK_INT((int)v.state, RCPT_DEFERRED);
		CHECK_INT((int)v.so, SCHEDULER_DEFER_DEST);
		CHECK(strncmp(v.status, "451 4.4.3 ", 10) == 0);
	}
}

TEST(peer_route_text)
{
	char out[NEXTHOP_PEER_ROUTE_MAX];
	CHECK_INT(nexthop_spec_format_peer("127.0.0.1", 2526, out, sizeof out), 16);
	CHECK_STR(out, "[127.0.0.1]:2526");
	nexthop_spec_format_peer("2001:db8::1", 25, out, sizeof out);
	CHECK_STR(out, "[IPv6:2001:db8::1]:25");
	struct nexthop_spec sp;
	CHECK_INT(nexthop_spec_parse_peer(out, &sp), 1); /* what we format, we read */
	CHECK_INT(sp.kind, NEXTHOP_KIND_ADDR); /* the same next hop, no MX lookup */
	CHECK_INT(sp.port, 25);
	nexthop_spec_format_peer("mail.b.example", 587, out, sizeof out);
	CHECK_STR(out, "[mail.b.example]:587");
	CHECK_INT(nexthop_spec_format_peer("", 25, out, sizeof out), -1);
	CHECK_INT(nexthop_spec_format_peer("h", 0, out, sizeof out), -1);
	CHECK_INT(nexthop_spec_format_peer("127.0.0.1", 25, out, 8), -1);
	CHECK_STR(out, "");
}

TEST_MAIN(T(dest_keys), T(relay_verdicts), T(relay_status_is_bounded_and_printable),
          T(nexthop_verdicts), T(notices), T(peer_routes), T(stored_route_wins),
          T(smarthost_fallback), T(shared_loops), T(list_peer_answers), T(peer_route_text))
