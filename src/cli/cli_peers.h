/*
 * cli_peers: the other servers the configuration names (domain_sharing_host,
 * gateway_domain, forward_domain lines, parsed with proto/peer_spec.h), for the
 * commands that ask them (`account add`) or report on them (`peers`, `cache list`).
 *
 * Each server has a kind, a name and the address it is asked at:
 *   peer     name "HOST:SMTPPORT" (where its mail goes), Minger at HOST:minger_port
 *   gateway  name DOMAIN, Minger at minger=HOST:PORT
 *   forward  name DOMAIN, Minger at minger=HOST:PORT
 * These are the kind, name and minger_addr columns of <state_dir>/peers.status
 * (verify/verify_status.h).
 *
 * Ownership: a struct cli_peers owns its array; secrets are read only while a
 * question is asked and wiped afterwards.
 */
#ifndef SHAREMAIL_CLI_CLI_PEERS_H
#define SHAREMAIL_CLI_CLI_PEERS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/peer_spec.h"
#include "util/netaddr.h"

struct conf;

enum cli_peer_kind { CLI_PEER_SHARING = 0, CLI_PEER_GATEWAY, CLI_PEER_FORWARD };

/* "HOST:PORT" with an IPv6 HOST in brackets, NUL included. */
#define CLI_PEER_HOSTPORT_MAX (NEXTHOP_NAME_MAX + 10)
/* A secret_file with the config's folder in front. */
#define CLI_PEER_PATH_MAX (PEER_SPEC_PATH_MAX + 4096)

struct cli_peer {
	enum cli_peer_kind kind;
	char name[CLI_PEER_HOSTPORT_MAX]; /* see above */
	char minger[CLI_PEER_HOSTPORT_MAX]; /* "HOST:PORT" as configured */
	char secret_file[CLI_PEER_PATH_MAX]; /* resolved against the config's folder; "" none */
};

struct cli_peers {
	struct cli_peer *v;
	size_t n;
};

/*
 * Reads the peers, then the gateways, then the forwarded domains of c (in the
 * order written). The loader already refused lines that do not parse. Returns 0,
 * or -1 after printing why (out of memory, a line that does not parse).
 */
int cli_peers_load(const struct conf *c, struct cli_peers *out);

/* Frees the list's contents (an empty list is a no-op). */
void cli_peers_free(struct cli_peers *p);

/* "peer", "gateway" or "forward". */
const char *cli_peers_kind_word(enum cli_peer_kind k);

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
 * Asks every peer of kind CLI_PEER_SHARING in p about mailbox, all at once (one
 * thread each, the blocking client of verify/minger_client.h with the config's
 * minger_timeout_ms, minger_retries, minger_require_reply_mac and the peer's
 * secret_file; anonymous without one). answers[i] is set for each p->v[i] of that
 * kind (others untouched). Returns 0, or -1 after printing why (out of memory).
 */
int cli_peers_ask(const struct conf *c, const struct cli_peers *p, const char *mailbox,
                  struct cli_peer_answer *answers);

/*
 * Resolves a peer's Minger address (HOST may be a name: getaddrinfo) into out.
 * Returns 0, or -1 with a reason in err.
 */
int cli_peers_resolve(const struct cli_peer *peer, struct netaddr *out, char *err, size_t errlen);

#endif
