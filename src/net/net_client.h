/*
 * net_client: the pieces every outgoing TCP client of the daemon shares (the
 * SMTP relay, deliver/smtp_transport.c, and the POP3 collector,
 * collect/collect_transport.c): a non-blocking connect on a bufferevent, the
 * client TLS context, the SNI name, and the TLS filter started over a
 * plaintext bufferevent after STARTTLS / STLS (or at once, implicit TLS).
 *
 * Deadlines and the discarding of plaintext received after the server's TLS
 * go-ahead stay with each caller's protocol client (smtp_client,
 * pop3_client): they know where the go-ahead ended; this module only makes
 * sure the filter starts with nothing of it.
 *
 * TLS policy: OpenSSL's client defaults (TLS_client_method) without
 * certificate verification: opportunistic encryption (RFC 7435), as
 * Postfix's "encrypt" level; verification and DANE are later work.
 *
 * Ownership: what the functions return is the caller's (SSL_CTX_free,
 * bufferevent_free, SSL_free as documented below). No state here.
 */
#ifndef SHAREMAIL_NET_NET_CLIENT_H
#define SHAREMAIL_NET_NET_CLIENT_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct bufferevent;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

/* sizeof the sockaddr for its family (AF_INET, AF_INET6), 0 for any other. */
socklen_t net_client_sa_len(const struct sockaddr_storage *sa);

/*
 * A client context for opportunistic TLS (see the top), or NULL. The caller
 * frees it with SSL_CTX_free().
 */
SSL_CTX *net_client_tls_ctx_new(void);

/*
 * The SNI name for host (RFC 6066 3: a host name, never an address literal):
 * 1 with it in out (a trailing dot removed), or 0 when none is to be sent
 * (empty, a literal, "[...]", octets a host name cannot hold, too long).
 */
int net_client_sni(const char *host, char *out, size_t outsz);

/*
 * Opens a non-blocking TCP socket (close-on-exec, TCP_NODELAY: commands are
 * small writes Nagle would hold behind the peer's delayed ACK) and starts
 * connecting it to sa on a new bufferevent (BEV_OPT_CLOSE_ON_FREE; the caller
 * sets its callbacks: the outcome is BEV_EVENT_CONNECTED or an error event).
 * NULL with *err set to an errno value when the socket cannot be made or the
 * connect fails at once (ENOMEM when libevent cannot make the bufferevent).
 */
struct bufferevent *net_client_connect(struct event_base *base, const struct sockaddr_storage *sa,
                                       int *err);

/* 1 when err (from net_client_connect) is our side's fault (descriptors, memory), else 0. */
int net_client_local_errno(int err);

/*
 * Starts a client TLS handshake over raw, which must hold no unread input (the
 * caller has drained or discarded it: plaintext after the go-ahead is never
 * read inside TLS). Returns the filter bufferevent (deferred callbacks: an
 * event libevent raises while making it comes from the loop; dirty shutdowns
 * allowed) with *ssl_out set to its SSL, which the caller frees with SSL_free
 * after bufferevent_free(filter) (the filter does not own raw or the SSL:
 * no BEV_OPT_CLOSE_ON_FREE). NULL when ctx is NULL or memory runs out.
 * host gives the SNI name (net_client_sni) and may be NULL.
 */
struct bufferevent *net_client_tls_start(struct event_base *base, struct bufferevent *raw,
                                         SSL_CTX *ctx, const char *host, SSL **ssl_out);

#endif
