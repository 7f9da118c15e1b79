/*
 * verify: the verdict on a recipient (RCPT) or a sender (MAIL FROM) when it may
 * need answers from other servers: Domain Sharing peers (domain_sharing_host),
 * the protected servers of gateway domains (gateway_domain) and of forwarded
 * domains (forward_domain), all asked with Minger. The policy is "local
 * mailbox, then the cache, then ask, then record": a local mailbox answers at
 * once from the index (verify/lookup.h); an address cached from an earlier
 * answer answers at once; otherwise every server concerned is asked in
 * parallel and the caller is called back on the event loop.
 *
 * The daemon's SMTP sessions and the CLI (`sharemail minger`, `account add`)
 * share this policy, so what the daemon accepts is what the CLI reports.
 *
 * Threads: a struct verify belongs to the event loop it was made with; every
 * function is called on that loop's thread, and callbacks run there.
 *
 * Ownership: answers are copied into the caller's struct verify_answer; a
 * request handle is owned by verify until its callback has run or it was
 * cancelled.
 */
#ifndef SHAREMAIL_VERIFY_VERIFY_H
#define SHAREMAIL_VERIFY_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "queue/envelope.h" /* ENVELOPE_ROUTE_MAX */
#include "verify/lookup.h"

struct conf;
struct event_base;
struct mailbox_index;
struct verify_server;

enum verify_status {
	/* A mailbox of this server: .local holds the local lookup's answer. */
	VERIFY_LOCAL = 0,
	/*
	 * Exists on another server (Minger status 5, or the cache): accept, and
	 * route the recipient to .route (a destination key the relay understands,
	 * "[HOST]:PORT" for a peer; empty for a gateway or forwarded domain, which
	 * is routed by domain).
	 */
	VERIFY_REMOTE,
	/* Exists elsewhere but may not receive (Minger status 4): 550 5.2.1. */
	VERIFY_REMOTE_DISABLED,
	/* Nobody has it (locally, and every server asked said 3): 550 5.1.1. */
	VERIFY_NOTFOUND,
	/*
	 * Could not find out (the directory, or a server that did not answer, or
	 * answered 0-2, and no positive answer from another): 451 4.4.3 (4.3.0 for
	 * the local directory), never 5xx. .reason names the server for the log.
	 */
	VERIFY_TEMPFAIL,
	/* Not a domain of ours (local, shared, gateway, forward): the relay rules decide. */
	VERIFY_FOREIGN,
};

/* Room for a reason line ("peer 192.0.2.7:4069: no answer"). */
#define VERIFY_REASON_MAX 160

/* One server's part in a verdict (listed with VERIFY_FLAG_FRESH). */
struct verify_server_result {
	const struct verify_server *server; /* its line (verify_servers.h), valid while v is */
	int result; /* its Minger status 0-5, or MINGER_RESULT_TIMEOUT / MINGER_RESULT_ERROR */
};

struct verify_answer {
	enum verify_status status;
	/* VERIFY_LOCAL (and VERIFY_NOTFOUND / TEMPFAIL from the directory): the local answer. */
	struct lookup_answer local;
	/* VERIFY_REMOTE: where the message goes ("" = by domain). */
	char route[ENVELOPE_ROUTE_MAX + 1];
	/* VERIFY_REMOTE*, VERIFY_NOTFOUND, VERIFY_TEMPFAIL: who answered or failed, for logs. */
	char reason[VERIFY_REASON_MAX];
	/* 1 when the answer came from the cache (no datagram was sent). */
	int cached;
	/*
	 * 1 when other servers were asked for this answer (not the local directory
	 * alone): a VERIFY_TEMPFAIL is then 451 4.4.3 and names .reason in the log;
	 * 0 (a zeroed answer) is the directory's own TEMPFAIL, 451 4.3.0.
	 */
	int servers_asked;
	/*
	 * VERIFY_FLAG_FRESH, in a callback: every server asked and what it said,
	 * servers[0..nservers), valid only during the callback. Otherwise NULL, 0.
	 */
	const struct verify_server_result *servers;
	size_t nservers;
};

struct verify;
struct verify_req;

/* A request's outcome, called once on the event loop (never from inside verify_rcpt()). */
typedef void (*verify_cb)(void *arg, const struct verify_answer *answer);

/*
 * Makes the verifier from the configuration (its peers, gateway and forward
 * domains are read here: secrets loaded, names resolved) over the daemon's
 * mailbox index, on event loop base. The conf, index and base are borrowed and
 * must outlive it. NULL with a message in err on failure.
 */
struct verify *verify_new(struct event_base *base, const struct conf *c, struct mailbox_index *idx,
                          char *err, size_t errlen);

/*
 * verify_new() flags. VERIFY_FLAG_NO_STATUS: do not write <state_dir>/peers.status
 * (the CLI: the file is the daemon's). VERIFY_FLAG_FRESH: ask every server each
 * time, never the cache (neither read nor written: `account add` must learn what
 * is true now, not what a peer said days ago), wait for every one of them (a 5
 * does not cancel the others) and list each server's answer in the callback's
 * answer (.servers), so the caller can name every peer concerned.
 */
#define VERIFY_FLAG_NO_STATUS 0x1
#define VERIFY_FLAG_FRESH 0x2

/*
 * verify_new() with flags; verify_new(b, c, i, e, n) is verify_new_flags(b, c, i,
 * 0, e, n). idx may be NULL: no address is then a local mailbox (the CLI asking
 * the peers about an account it is about to create). Start-up errors name the
 * config file and quote the line ("FILE: KEY 'LINE': reason"): a bad line, a
 * secret_file that cannot be read or holds no valid secret (with its own
 * "SECRETFILE:N:"), a host that does not resolve; a bad domain_sharing_domains_file
 * line is "DOMAINSFILE:N: reason".
 */
struct verify *verify_new_flags(struct event_base *base, const struct conf *c,
                                struct mailbox_index *idx, unsigned flags, char *err,
                                size_t errlen);

/* Frees the verifier; requests still open are cancelled without callbacks (NULL: no-op). */
void verify_free(struct verify *v);

/*
 * The verdict on recipient mailbox[0..len) (as written), posted by sender
 * (MAIL FROM's mailbox, "" for <>; for members-only lists). Returns 0 with *out
 * filled when the answer is known now, or 1 when servers were asked: then cb(arg,
 * answer) runs later, once, unless verify_cancel(*req) is called first (*req is
 * set only when 1 is returned).
 */
int verify_rcpt(struct verify *v, const char *mailbox, size_t len, const char *sender,
                size_t sender_len, struct verify_answer *out, verify_cb cb, void *arg,
                struct verify_req **req);

/*
 * The same for an envelope sender (domain_sharing_query_senders): VERIFY_LOCAL
 * when it is a local mailbox, VERIFY_REMOTE when a peer has it, otherwise
 * another status. Same return and callback contract as verify_rcpt().
 */
int verify_sender(struct verify *v, const char *mailbox, size_t len, struct verify_answer *out,
                  verify_cb cb, void *arg, struct verify_req **req);

/* Forgets an open request: its callback will not run (NULL: no-op). */
void verify_cancel(struct verify_req *req);

/*
 * 1 when client_addr (an address as text, as the SMTP session has it) is one of
 * the Domain Sharing peers' addresses: their list posts skip the members-only
 * check (the seed's "each Domain Sharing host must include the other hosts IPs in
 * their Trusted IPs"), else 0.
 */
int verify_client_is_peer(const struct verify *v, const char *client_addr);

/* Requests open now (tests, and a daemon that wants to know it may stop). */
size_t verify_pending(const struct verify *v);

/*
 * Waits until the cache records and the status file already handed to the
 * background thread are written (tests; the CLI before it exits).
 */
void verify_sync(struct verify *v);

#endif
