/*
 * cli_peers: what the CLI asks of the other servers of a shared domain, for
 * `account add`. The servers themselves (domain_sharing_host, gateway_domain,
 * forward_domain lines) are read with verify/verify_servers.h, as the daemon
 * reads them.
 *
 * Ownership: everything is borrowed; secrets are read only while a question is
 * asked and wiped afterwards.
 */
#ifndef SHAREMAIL_CLI_CLI_PEERS_H
#define SHAREMAIL_CLI_CLI_PEERS_H

#include <stddef.h>
#include <stdint.h>

#include "verify/verify_servers.h"

struct conf;

/*
 * 1 when domain (any case) uses Domain Sharing: domain_sharing = yes, at least one
 * domain_sharing_host, the domain is local, and it is listed in
 * domain_sharing_domains_file when that is set (empty or absent file: every local
 * domain). 0 otherwise; -1 after printing why the domains file cannot be read.
 */
int cli_peers_domain_shared(const struct conf *c, const char *domain, size_t len);

/* What one server said about a mailbox. */
struct cli_peer_answer {
	int result; /* Minger status 0..5, MINGER_RESULT_TIMEOUT or MINGER_RESULT_ERROR */
	char why[160]; /* with MINGER_RESULT_ERROR: the reason (secret file, address) */
};

/*
 * Asks every Domain Sharing peer of p (p->v[0..npeers)) about mailbox, all at
 * once (one thread each, the blocking client of verify/minger_client.h with the
 * config's minger_timeout_ms, minger_retries, minger_require_reply_mac and the
 * peer's secret_file; anonymous without one). answers[i] is set for each peer.
 * Returns 0, or -1 after printing why (out of memory).
 */
int cli_peers_ask(const struct conf *c, const struct verify_servers *p, const char *mailbox,
                  struct cli_peer_answer *answers);

#endif
