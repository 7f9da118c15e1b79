/*
 * deliver_policy: see deliver_policy.h.
 */
#include "deliver/deliver_policy.h"

#include <stdio.h>
#include <string.h>

#include "deliver/deliver_headers.h"
#include "proto/mailaddr.h"

/* ---- destinations ---- */

/* Copies the domain lower-cased (an address literal as written: its case is the peer's). */
static int domain_key(const struct mailaddr *a, char *out, size_t outsz)
{
	if (a->domain_len == 0 || a->domain_len > SCHEDULER_DEST_MAX || a->domain_len >= outsz)
		return -1;
	for (size_t i = 0; i < a->domain_len; i++) {
		unsigned char c = (unsigned char)a->domain[i];
		if (c <= 0x20 || c == 0x7f)
			return -1; /* the scheduler refuses controls and spaces */
		out[i] = (!a->literal && c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
	}
	out[a->domain_len] = '\0';
	return 0;
}

enum deliver_dest_kind deliver_policy_dest(const struct deliver_routes *r, const char *addr,
                                           char *out, size_t outsz,
                                           const struct nexthop_route **route)
{
	struct mailaddr a;
	char dom[SCHEDULER_DEST_MAX + 1];
	if (route)
		*route = NULL;
	if (outsz == 0)
		return DELIVER_DEST_BAD;
	out[0] = '\0';
	if (!addr || mailaddr_parse_exact(addr, strlen(addr), &a) != MAILADDR_OK ||
	    domain_key(&a, dom, sizeof dom) < 0)
		return DELIVER_DEST_BAD;
	const char *key = dom;
	enum deliver_dest_kind kind = DELIVER_DEST_IS_DOMAIN;
	if (r->is_local && r->is_local(r->arg, a.domain, a.domain_len)) {
		key = SCHEDULER_DEST_LOCAL;
		kind = DELIVER_DEST_IS_LOCAL;
	} else {
		for (size_t i = 0; i < r->nroutes && kind == DELIVER_DEST_IS_DOMAIN; i++) {
			if (!a.literal && nexthop_route_matches(&r->routes[i], dom)) {
				key = r->routes[i].domain;
				kind = DELIVER_DEST_IS_ROUTE;
				if (route)
					*route = &r->routes[i];
			}
		}
		if (kind == DELIVER_DEST_IS_DOMAIN && r->smarthost) {
			key = DELIVER_DEST_SMARTHOST;
			kind = DELIVER_DEST_IS_SMARTHOST;
		}
	}
	if (strlen(key) >= outsz)
		return DELIVER_DEST_BAD;
	snprintf(out, outsz, "%s", key);
	return kind;
}

/* ---- status lines ---- */

static const char *default_enh(enum rcpt_state st)
{
	return st == RCPT_DELIVERED ? "2.0.0" : st == RCPT_FAILED ? "5.0.0" : "4.0.0";
}

static int default_code(enum rcpt_state st)
{
	return st == RCPT_DELIVERED ? 250 : st == RCPT_FAILED ? 550 : 451;
}

char *deliver_policy_status(char *out, size_t outsz, enum rcpt_state st, int code, const char *enh,
                            const char *text)
{
	if (outsz == 0)
		return out;
	if (code < 200 || code > 599)
		code = default_code(st);
	if (!enh || !envelope_enhanced_valid(enh, strlen(enh)))
		enh = default_enh(st);
	int n = snprintf(out, outsz, "%d %s%s", code, enh, text && *text ? " " : "");
	size_t o = n < 0 ? 0 : (size_t)n < outsz ? (size_t)n : outsz - 1;
	for (const char *p = text; p && *p && o + 1 < outsz; p++) {
		unsigned char c = (unsigned char)*p;
		out[o++] = (c < 0x20 || c > 0x7e) ? '?' : (char)c;
	}
	out[o] = '\0';
	return out;
}

/* ---- verdicts ---- */

static void verdict(struct deliver_verdict *v, enum scheduler_outcome so, enum rcpt_state st,
                    int peer_code, int code, const char *enh, const char *text)
{
	v->so = so;
	v->state = st;
	v->peer_code = peer_code;
	deliver_policy_status(v->status, sizeof v->status, st, code, enh, text);
}

void deliver_policy_relay(enum deliver_relay_end end, const struct smtp_client_rcpt_result *r,
                          struct deliver_verdict *v)
{
	const struct smtp_client_reply *rp = &r->reply;
	int peer = rp->code >= 200 && rp->code <= 599 ? rp->code : 0;
	if (end == DELIVER_RELAY_DEST_DEAD) {
		/* A 5xx greeting from every host still only defers (RFC 5321 3.1: try later). */
		char text[SMTP_CLIENT_TEXT_MAX + 32];
		if (peer && (peer < 400 || peer > 499))
			snprintf(text, sizeof text, "host said: %d %s%s%s", peer, rp->enh,
			         rp->enh[0] ? " " : "", rp->text);
		else
			snprintf(text, sizeof text, "%s", rp->text);
		verdict(v, SCHEDULER_DEFER_DEST, RCPT_DEFERRED, peer,
		        peer >= 400 && peer < 500 ? peer : 451,
		        rp->enh[0] == '4' ? rp->enh : "4.4.1", text);
		return;
	}
	switch (r->status) {
	case SMTP_CLIENT_RCPT_DELIVERED:
		verdict(v, SCHEDULER_DELIVERED, RCPT_DELIVERED, peer, peer, rp->enh, rp->text);
		return;
	case SMTP_CLIENT_RCPT_FAILED:
		/* A permanent check of ours (5.6.3, 5.3.4) has no peer code: 554, as Postfix. */
		verdict(v, SCHEDULER_FAILED, RCPT_FAILED, peer, peer ? peer : 554,
		        rp->enh[0] == '5' ? rp->enh : "5.0.0", rp->text);
		return;
	default: break;
	}
	/*
	 * Deferred. A 4xx about this recipient says the peer is alive: only the
	 * recipient backs off. No answer at all (code 0: timeout, drop, protocol
	 * error) or 421 (RFC 5321 3.8: the peer is closing) is the connection's
	 * failure: the destination backs off, and nobody hammers it meanwhile.
	 */
	enum scheduler_outcome so = SCHEDULER_DEFER_RCPT;
	if (end != DELIVER_RELAY_LOCAL_ERROR && (peer == 0 || peer == 421))
		so = SCHEDULER_DEFER_DEST;
	verdict(v, so, RCPT_DEFERRED, peer, peer >= 400 && peer < 500 ? peer : 451,
	        rp->enh[0] == '4' ? rp->enh : "4.0.0", rp->text);
}

void deliver_policy_nexthop(const struct nexthop_result *res, struct deliver_verdict *v)
{
	const char *enh = res->enh && *res->enh ? res->enh : NULL;
	if (res->status == NEXTHOP_PERMFAIL) {
		/* RFC 7505 3: 556 for a domain that accepts no mail. */
		int code = enh && strcmp(enh, "5.1.10") == 0 ? 556 : 550;
		verdict(v, SCHEDULER_FAILED, RCPT_FAILED, 0, code,
		        enh && *enh == '5' ? enh : "5.4.4", res->text);
		return;
	}
	verdict(v, SCHEDULER_DEFER_DEST, RCPT_DEFERRED, 0, 451, enh && *enh == '4' ? enh : "4.4.3",
	        res->text[0] ? res->text : "next hop not found");
}

/* ---- notices ---- */

enum deliver_notice deliver_policy_notice(const char *sender, unsigned notify, enum rcpt_state st,
                                          enum deliver_via via)
{
	if (!sender || !*sender || (notify & ESMTP_NOTIFY_NEVER))
		return DELIVER_NOTICE_NONE;
	if (st == RCPT_FAILED)
		return notify == 0 || (notify & ESMTP_NOTIFY_FAILURE) ? DELIVER_NOTICE_FAILED
		                                                      : DELIVER_NOTICE_NONE;
	if (st != RCPT_DELIVERED || !(notify & ESMTP_NOTIFY_SUCCESS))
		return DELIVER_NOTICE_NONE;
	switch (via) {
	case DELIVER_VIA_LOCAL: return DELIVER_NOTICE_DELIVERED;
	case DELIVER_VIA_PEER: return DELIVER_NOTICE_RELAYED;
	case DELIVER_VIA_EXPANSION: return DELIVER_NOTICE_EXPANDED;
	default: return DELIVER_NOTICE_NONE; /* the peer passes NOTIFY on and reports itself */
	}
}

int deliver_policy_delay_wanted(const char *sender, unsigned notify)
{
	if (!sender || !*sender || (notify & ESMTP_NOTIFY_NEVER))
		return 0;
	return notify == 0 || (notify & ESMTP_NOTIFY_DELAY) != 0;
}

/* ---- Domain Sharing ---- */

enum deliver_peer_kind deliver_policy_peer_route(const char *key, struct nexthop_spec *spec)
{
	struct nexthop_spec tmp;
	size_t pl = strlen(DELIVER_ROUTE_LIST_PREFIX);
	if (!key)
		return DELIVER_PEER_NONE;
	if (!spec)
		spec = &tmp;
	if (strncmp(key, DELIVER_ROUTE_LIST_PREFIX, pl) == 0)
		return nexthop_spec_parse_peer(key + pl, spec) ? DELIVER_PEER_LIST
		                                               : DELIVER_PEER_NONE;
	return nexthop_spec_parse_peer(key, spec) ? DELIVER_PEER_MAIL : DELIVER_PEER_NONE;
}

enum deliver_dest_kind deliver_policy_rcpt_dest(const struct deliver_routes *r, const char *addr,
                                                const char *stored, char *out, size_t outsz,
                                                const struct nexthop_route **route)
{
	struct mailaddr a;
	if (stored && deliver_policy_peer_route(stored, NULL) != DELIVER_PEER_NONE && addr &&
	    mailaddr_parse_exact(addr, strlen(addr), &a) == MAILADDR_OK &&
	    strlen(stored) <= SCHEDULER_DEST_MAX && strlen(stored) < outsz) {
		if (route)
			*route = NULL;
		snprintf(out, outsz, "%s", stored);
		return DELIVER_DEST_IS_PEER;
	}
	return deliver_policy_dest(r, addr, out, outsz, route);
}

int deliver_policy_peer_fallback(int keep_on_error, int smarthost, const uint32_t *attempts,
                                 size_t n)
{
	if (keep_on_error || !smarthost || n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (attempts[i] == 0)
			return 0; /* its first try goes to the peer */
	return 1;
}

int deliver_policy_shared_loop(unsigned hops, int ours, const char *dest, struct deliver_verdict *v)
{
	char text[SCHEDULER_DEST_MAX + 96];
	if (ours)
		snprintf(text, sizeof text, "Domain Sharing loop: mail for %s routed back to us",
		         dest);
	else if (hops >= DELIVER_SHARED_HOPS_MAX)
		snprintf(text, sizeof text, "too many Domain Sharing hops (%u) on the way to %s",
		         hops, dest);
	else
		return 0;
	verdict(v, SCHEDULER_FAILED, RCPT_FAILED, 0, 550, "5.4.6", text);
	return 1;
}

int deliver_policy_list_peer(int minger_status, const char *dest, struct deliver_verdict *v)
{
	char text[SCHEDULER_DEST_MAX + 96];
	if (minger_status == 5)
		return 1;
	if (minger_status == 3 || minger_status == 4) {
		snprintf(text, sizeof text, "not shared: %s has no such list", dest);
		verdict(v, SCHEDULER_DELIVERED, RCPT_DELIVERED, 0, 250, "2.0.0", text);
		return 0;
	}
	if (minger_status < 0)
		snprintf(text, sizeof text, "Domain Sharing peer %s did not answer about the list",
		         dest);
	else
		snprintf(text, sizeof text,
		         "Domain Sharing peer %s answered status %d about the list", dest,
		         minger_status);
	verdict(v, SCHEDULER_DEFER_DEST, RCPT_DEFERRED, 0, 451, "4.4.3", text);
	return 0;
}
