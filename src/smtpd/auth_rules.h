/*
 * auth_rules: who must authenticate, and what an authenticated client may claim to
 * be (the rules of seeds/smtp-authentication.txt, each a key with the seed's
 * default; sharemail.conf(5)). One pure decision function over explicit inputs:
 * the session fills struct auth_rules_input from what it knows and asks at three
 * points, and applies the verdict's reply.
 *
 *   MAIL  (after the MAIL FROM path parsed):
 *         port role: submission and SMTPS need AUTH                      530 5.7.0
 *         auth_required_from_local_networks (client in local_networks)   530 5.7.0
 *         auth_required_for_role_senders (postmaster@, abuse@, webmaster@)  530 5.7.0
 *         auth_required_for_local_senders (MAIL FROM in a local domain)  530 5.7.0
 *           ...unless_domain_sharing: exempt when a peer has the sender (asks for
 *              the Domain Sharing sender verdict first: AUTH_RULES_ASK_PEER)
 *           ...unless_local_rcpt: not refused here but per recipient, at RCPT
 *         pop_before_smtp (MAIL FROM a local account that has not logged in
 *           over POP3 within pop_before_smtp_window; AUTH sessions exempt while
 *           auth_exempt_pop_before_smtp; asks the session first:
 *           AUTH_RULES_ASK_POP)                                          530 5.7.0
 *         auth_match_return_path (authenticated)                         550 5.7.1
 *           deferred to RCPT when auth_match_exempt_gateway may exempt it
 *   RCPT  (for each recipient, after MAIL was accepted): the two deferred rules
 *         a non-local recipient of an unauthenticated local sender       530 5.7.0
 *         a non-gateway recipient of a mismatched return path            550 5.7.1
 *   DATA  (after the final dot, before the commit):
 *         auth_match_from_header (authenticated)                         550 5.7.1
 *
 * smtp_trusted_networks are exempt from every rule that requires AUTH (the port
 * role included: RFC 6409 section 4.3 lets an MSA authorise by address) and from
 * pop_before_smtp; they are
 * not exempt from the match rules once they do authenticate. The match rules take
 * the account's own address and its aliases (addresses[]), compared as lookup
 * keys (ASCII case-insensitive, mailaddr_key); auth_match_exempt lists addresses
 * exempt as MAIL FROM (return-path rule) and as From: (From: rule). The null
 * reverse-path <> claims nobody and always matches.
 *
 * Pure: no I/O, no allocation. The verdict's strings are static.
 */
#ifndef SHAREMAIL_SMTPD_AUTH_RULES_H
#define SHAREMAIL_SMTPD_AUTH_RULES_H

#include <stddef.h>

struct conf;

enum auth_rules_phase { AUTH_RULES_MAIL = 0, AUTH_RULES_RCPT, AUTH_RULES_DATA };

enum auth_rules_port {
	AUTH_RULES_PORT_SMTP = 0, /* smtp_listen (25): relay and inbound mail */
	AUTH_RULES_PORT_SUBMISSION, /* submission_listen (587, RFC 6409): AUTH before MAIL */
	AUTH_RULES_PORT_SMTPS, /* smtps_listen (465, RFC 8314): submission over implicit TLS */
};

/* What Domain Sharing said about MAIL FROM (domain_sharing_query_senders). */
enum auth_rules_peer {
	AUTH_RULES_PEER_UNKNOWN = 0, /* not asked (yet) */
	AUTH_RULES_PEER_FOUND, /* a peer hosts the sender */
	AUTH_RULES_PEER_NOTFOUND, /* no peer does (or Domain Sharing is off for it) */
	AUTH_RULES_PEER_TEMPFAIL, /* the peers could not be asked now */
};

/* POP before SMTP: what the session found about MAIL FROM (directory/pop_login.h). */
enum auth_rules_pop {
	AUTH_RULES_POP_UNKNOWN = 0, /* not asked (yet) */
	AUTH_RULES_POP_RECENT, /* a local account that logged in over POP3 within the window */
	AUTH_RULES_POP_STALE, /* a local account that did not */
	AUTH_RULES_POP_NOT_ACCOUNT, /* not a local account: an alias, a list, nobody */
	AUTH_RULES_POP_TEMPFAIL, /* the directory could not answer */
};

struct auth_rules_input {
	enum auth_rules_phase phase;
	enum auth_rules_port port;
	int trusted; /* client in smtp_trusted_networks */
	int in_local_networks; /* client in local_networks */
	/* AUTH: the identity (NULL: not authenticated) and the account's addresses */
	const char *auth_identity;
	const char *const *auth_addresses; /* the account's own and its aliases' keys */
	size_t n_auth_addresses;
	/* MAIL FROM: the mailbox ("" for <>) and whether its domain is local */
	const char *mail_from;
	int mail_from_local;
	enum auth_rules_peer sender_on_peer;
	enum auth_rules_pop pop_login;
	int gateway_domains; /* 1 when any gateway_domain is configured */
	/* RCPT: this recipient */
	int rcpt_local; /* in a local domain */
	int rcpt_gateway; /* in a gateway domain */
	/* DATA: the From: header's addresses, and whether every recipient is a gateway one */
	const char *const *from_header;
	size_t n_from_header;
	int all_rcpts_gateway;
};

enum auth_rules_result {
	AUTH_RULES_OK = 0, /* go on */
	AUTH_RULES_NEED_AUTH, /* 530 5.7.0 */
	AUTH_RULES_MISMATCH, /* 550 5.7.1 */
	AUTH_RULES_ASK_PEER, /* ask Domain Sharing about MAIL FROM, then call again */
	AUTH_RULES_TEMPFAIL, /* 451 4.4.3: the peer question failed */
	AUTH_RULES_ASK_POP, /* find out pop_login for MAIL FROM, then call again */
	AUTH_RULES_NEED_POP, /* 530 5.7.0: POP before SMTP */
};

struct auth_rules_verdict {
	enum auth_rules_result result;
	int code; /* 0 for OK and ASK_PEER */
	const char *enh; /* enhanced status code, or NULL */
	const char *text; /* reply text, or NULL */
	const char *rule; /* the key (or "submission_listen") that decided, for the log; or NULL */
};

/*
 * Applies the rules of c (the keys listed in the file comment) to in, for the
 * phase in->phase, and returns the verdict (also stored in *out when out is not
 * NULL). Only the fields of that phase and the earlier ones are read.
 */
enum auth_rules_result auth_rules_check(const struct conf *c, const struct auth_rules_input *in,
                                        struct auth_rules_verdict *out);

/*
 * 1 if local[0..len), a local part as written, is one of the role names the seed
 * protects (postmaster, abuse, webmaster: RFC 2142), unquoted, in any case.
 */
int auth_rules_is_role(const char *local, size_t len);

#endif
