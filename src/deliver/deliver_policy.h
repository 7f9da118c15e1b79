/*
 * deliver_policy: the pure decisions of the delivery manager, kept apart so that
 * they are unit-tested alone (tests/unit/test_deliver_policy.c): which
 * destination a recipient belongs to, what an SMTP result or a next-hop failure
 * means for a recipient (the scheduler's outcome, the queue's state, the status
 * line recorded), and which delivery status notification an outcome owes the
 * sender (RFC 3461 NOTIFY).
 *
 * No I/O, no logging, no allocation, no global state. Ownership: every input is
 * borrowed; outputs are the caller's buffers.
 */
#ifndef SHAREMAIL_DELIVER_DELIVER_POLICY_H
#define SHAREMAIL_DELIVER_DELIVER_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "deliver/nexthop.h"
#include "deliver/scheduler.h"
#include "deliver/smtp_client.h"
#include "proto/nexthop_spec.h"
#include "queue/envelope.h"

/* The destination key of the smart host (relay_smarthost): no domain has brackets around a name. */
#define DELIVER_DEST_SMARTHOST "[smarthost]"
/* A status line "CODE X.Y.Z text" we record, NUL included. */
#define DELIVER_STATUS_MAX 512

/* What the relay configuration says, for deliver_policy_dest(). */
struct deliver_routes {
	const struct nexthop_route *routes; /* relay_route lines, in configuration order */
	size_t nroutes;
	int smarthost; /* relay_smarthost is set */
	/* 1 if domain[0..len) is one of ours (conf_is_local_domain). */
	int (*is_local)(void *arg, const char *domain, size_t len);
	void *arg;
};

enum deliver_dest_kind {
	DELIVER_DEST_BAD = -1, /* not an address: the recipient fails (5.1.3) */
	DELIVER_DEST_IS_LOCAL = 0, /* SCHEDULER_DEST_LOCAL: the Maildir transport */
	DELIVER_DEST_IS_ROUTE, /* a relay_route: key = its domain as configured (".sub" too) */
	DELIVER_DEST_IS_SMARTHOST, /* DELIVER_DEST_SMARTHOST */
	DELIVER_DEST_IS_DOMAIN, /* MX lookup: key = the recipient's domain, lower case */
	DELIVER_DEST_IS_PEER, /* a route chosen before delivery: key = that route text */
};

/*
 * The destination key of recipient addr (as received) into out (at least
 * SCHEDULER_DEST_MAX + 1 octets): local domains first, then the first matching
 * relay_route, then the smart host, else the domain itself. *route (may be
 * NULL) gets the matching route for DELIVER_DEST_IS_ROUTE, else NULL. A domain
 * that cannot be a key (too long) is BAD.
 */
enum deliver_dest_kind deliver_policy_dest(const struct deliver_routes *r, const char *addr,
                                           char *out, size_t outsz,
                                           const struct nexthop_route **route);

/*
 * Routes chosen before delivery (proto/nexthop_spec.h "Peer routes"): a
 * recipient found on a Domain Sharing peer at RCPT time has the peer's route
 * text "[HOST]:PORT"; a shared list's copy for a peer has
 * DELIVER_ROUTE_LIST_PREFIX before it (the peer is asked by Minger whether it
 * has the list before the copy goes).
 */
#define DELIVER_ROUTE_LIST_PREFIX "list:"

struct deliver_verdict;

enum deliver_peer_kind {
	DELIVER_PEER_NONE = 0, /* not a peer route */
	DELIVER_PEER_MAIL, /* "[HOST]:PORT" */
	DELIVER_PEER_LIST, /* "list:[HOST]:PORT" */
};

/* What kind of route key is; *spec (may be NULL) gets the next hop of a peer route. */
enum deliver_peer_kind deliver_policy_peer_route(const char *key, struct nexthop_spec *spec);

/*
 * The destination key of a recipient whose queue state has route stored (NULL:
 * none): a peer route wins over everything (it was chosen at RCPT time, or by a
 * list expansion: the recipient is relayed there and never delivered or
 * expanded here) and is its own key (DELIVER_DEST_IS_PEER); any other stored
 * route is recomputed (deliver_policy_dest), so a configuration change moves
 * queued mail with it.
 */
enum deliver_dest_kind deliver_policy_rcpt_dest(const struct deliver_routes *r, const char *addr,
                                                const char *stored, char *out, size_t outsz,
                                                const struct nexthop_route **route);

/*
 * domain_sharing_keep_on_error = no: 1 if a job for a peer route goes to the
 * smart host instead, when one is set (smarthost) and every recipient of the
 * job has been tried before (attempts[i] > 0: its try to the peer failed
 * temporarily). keep_on_error = yes (the default): always 0, the mail waits
 * for the peer (the seed: sending it to the smart host often makes a loop).
 */
int deliver_policy_peer_fallback(int keep_on_error, int smarthost, const uint32_t *attempts,
                                 size_t n);

/*
 * The loop rule before a message goes to a Domain Sharing peer, from its
 * X-Sharemail-Shared fields (deliver_headers_shared): one by our own host
 * (ours), or DELIVER_SHARED_HOPS_MAX of them already, is a loop: returns 1 with
 * a FAILED 550 5.4.6 verdict in v (its text names the peer route). Else 0.
 */
int deliver_policy_shared_loop(unsigned hops, int ours, const char *dest,
                               struct deliver_verdict *v);

/*
 * A shared list's copy after its peer was asked by Minger (status 0-5, or <0:
 * no answer): 5 (the peer has the list) returns 1, the copy goes; 3 or 4 (no
 * such list there, or it cannot receive) = DELIVERED "250 2.0.0 not shared"
 * (nothing to send, no notice); anything else (no answer, 0-2: refused or bad
 * credentials) = DEFER_DEST "451 4.4.3" (asked again on the next try). Returns
 * 0 with the verdict in v for those.
 */
int deliver_policy_list_peer(int minger_status, const char *dest, struct deliver_verdict *v);

/* What one recipient's attempt came to. */
struct deliver_verdict {
	enum scheduler_outcome so; /* what the scheduler is told */
	enum rcpt_state state; /* DELIVERED, FAILED or DEFERRED: what the queue records */
	int peer_code; /* the peer's reply code, or 0: the reason is ours (DSN Diagnostic-Code) */
	char status[DELIVER_STATUS_MAX]; /* "CODE X.Y.Z text", always a code and an enhanced code */
};

/* How the transport's job ended, as far as a recipient's verdict depends on it. */
enum deliver_relay_end {
	DELIVER_RELAY_ANSWERED = 0, /* a peer took part: the recipient's own result counts */
	DELIVER_RELAY_DEST_DEAD, /* no host would take the message: the destination's fault */
	DELIVER_RELAY_LOCAL_ERROR, /* our side failed (reading the body, memory): nobody's fault */
};

/*
 * The verdict for one recipient of an SMTP job (smtp_client.h results): 2xx to
 * the final dot = DELIVERED; 5xx or a permanent check of ours (5.6.3 8-bit to a
 * 7-bit peer, 5.3.4 size) = FAILED; a 4xx from the peer for this recipient =
 * DEFER_RCPT (its own back-off); no answer (timeout, a dropped connection, a
 * protocol error: code 0) or a 421 = DEFER_DEST (the connection failed, the
 * destination backs off), as is every recipient when the destination is dead.
 * A local error defers without blaming the destination.
 */
void deliver_policy_relay(enum deliver_relay_end end, const struct smtp_client_rcpt_result *r,
                          struct deliver_verdict *v);

/*
 * The verdict for every recipient of a job whose next hop did not resolve
 * (NEXTHOP_PERMFAIL: null MX 5.1.10, no such domain 5.1.2, a loop to ourselves
 * 5.4.6, no address 5.4.4 = FAILED; NEXTHOP_TEMPFAIL = DEFER_DEST).
 */
void deliver_policy_nexthop(const struct nexthop_result *res, struct deliver_verdict *v);

/* Notices an outcome can owe the sender (RFC 3464 2.3.3 action values). */
enum deliver_notice {
	DELIVER_NOTICE_NONE = 0,
	DELIVER_NOTICE_FAILED, /* a failure notice (bounce) */
	DELIVER_NOTICE_DELIVERED, /* success: delivered into a mailbox here */
	DELIVER_NOTICE_RELAYED, /* success: handed to a peer that does not offer DSN */
	DELIVER_NOTICE_EXPANDED, /* success: an alias or list expanded into a new message */
	DELIVER_NOTICE_DELAYED, /* still trying after queue_delay_warning */
};

/* Where a recipient's success happened, for deliver_policy_notice(). */
enum deliver_via {
	DELIVER_VIA_LOCAL = 0, /* a Maildir copy */
	DELIVER_VIA_PEER_DSN, /* a peer that offered DSN: it reports from now on */
	DELIVER_VIA_PEER, /* a peer without DSN */
	DELIVER_VIA_EXPANSION, /* an alias's foreign targets, a list's members */
};

/*
 * The notice owed for a recipient with NOTIFY bits notify (0: not given) now
 * in state st (DELIVERED, FAILED), reached via via, whose message came from
 * sender ("" = <>: never a notice, RFC 5321 4.5.5; which also means no notice
 * about a notice). RFC 3461 4.1: without NOTIFY a failure (and a delay) is
 * reported, success never; NOTIFY=NEVER reports nothing.
 */
enum deliver_notice deliver_policy_notice(const char *sender, unsigned notify, enum rcpt_state st,
                                          enum deliver_via via);

/* 1 if a delay notice is owed to a recipient with these NOTIFY bits (absent or DELAY). */
int deliver_policy_delay_wanted(const char *sender, unsigned notify);

/*
 * Formats "CODE X.Y.Z text" into out: code (a default from the state when 0 or
 * out of 200-599), enh (the state's X.0.0 when empty or invalid), text (may be
 * NULL). Octets outside printable ASCII in text become '?'. Returns out.
 */
char *deliver_policy_status(char *out, size_t outsz, enum rcpt_state st, int code, const char *enh,
                            const char *text);

#endif
