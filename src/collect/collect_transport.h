/*
 * collect_transport: one POP3 session over a real socket. The thin libevent
 * glue that drives the pure client (collect/pop3_client.h): it connects to
 * the server's address, moves octets between a bufferevent and the client,
 * arms one evtimer from pop3_client_deadline(), starts TLS when the client
 * asks (bufferevent_openssl: STLS, or implicit TLS at once), and hands the
 * client's events to the caller. It decides nothing about POP3: the client
 * does; nor anything about mail: the caller (the collector) does.
 *
 * Addresses: the caller resolves the server's name (the collector does so off
 * its loop) and gives the addresses, ports included; they are tried in order
 * until one connects (a connect failure or connect timeout moves to the next;
 * once a TCP connection is up, the session stands or falls on it).
 *
 * The caller's side: collect_transport_new() takes the conf and two callbacks.
 * event() gets every client event (pop3_client.h: LISTING, MSG_BEGIN,
 * MSG_DATA, MSG_END, MSG_ERROR, MSG_ABORTED, DELE_*, READY) in order; from
 * inside it, or any time later from the loop's thread, the caller may call
 * collect_transport_retr(), _dele(), _quit(), _pause() and _abort(). done() is
 * called exactly once, last, from the event loop (never from inside a call of
 * the caller's), with the outcome; the session is freed by the transport
 * right after done() returns. A MSG_DATA chunk is the caller's to copy during
 * the callback only.
 *
 * Pausing: collect_transport_pause(s, 1) stops reading (the caller's sink is
 * busy, e.g. a queue commit it waits for); the client's deadlines are
 * suspended meanwhile (the server waits for us, not we for it) and resume
 * afresh with _pause(s, 0). Octets already read wait in the bufferevent.
 *
 * TLS: one SSL_CTX per session (net/net_client.h: OpenSSL's client defaults,
 * no certificate verification: opportunistic encryption, as the SMTP client;
 * verification is later work), SNI from the host name unless it is an
 * address literal. After STLS's +OK everything already received in plaintext
 * is discarded, never parsed (the client counts it: CVE-2011-0411 shape), and
 * the TLS filter takes over the socket. A handshake that does not finish
 * within the client's tls_handshake deadline ends the session.
 *
 * Ownership: a session owns its socket, bufferevents, SSL, timer and client.
 * The conf is copied (the password into the client, which wipes it after
 * use); addresses are copied. One thread: the event loop's (the collector's
 * own thread and base). The process must ignore SIGPIPE (sharemaild does).
 * Nothing a peer sends reaches abort(), assert() or exit().
 */
#ifndef SHAREMAIL_COLLECT_COLLECT_TRANSPORT_H
#define SHAREMAIL_COLLECT_COLLECT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "collect/pop3_client.h"

struct event_base;

#define COLLECT_TRANSPORT_HOST_MAX 255 /* host name octets kept (SNI, logs) */
#define COLLECT_TRANSPORT_ADDRS_MAX 16 /* addresses tried at most */
#define COLLECT_TRANSPORT_ADDR_TEXT 46 /* an address as text, NUL included */

struct collect_transport_conf {
	/* user, password, tls (none|starttls|implicit), auth, timeouts (connect:
	 * each TCP connect), limits: see pop3_client.h. */
	struct pop3_client_conf client;
	const char *host; /* the server's name, for SNI and logs (copied; may be "") */
	const struct sockaddr_storage *addrs; /* AF_INET/AF_INET6 with ports, in order */
	size_t n_addrs; /* 1..COLLECT_TRANSPORT_ADDRS_MAX */
};

struct collect_transport_result {
	const struct pop3_client_outcome *outcome; /* end, code, reason, counts */
	char addr[COLLECT_TRANSPORT_ADDR_TEXT]; /* the address last tried ("" none) */
	int port;
	int tls; /* the session ran over TLS */
	uint64_t discarded; /* plaintext octets thrown away after STLS's +OK */
	unsigned connects; /* TCP connections tried */
};

struct collect_transport;

/* A client event (see pop3_client.h); ev and its data are valid during the call only. */
typedef void (*collect_transport_event_fn)(void *arg, struct collect_transport *s,
                                           const struct pop3_client_event *ev);
/* The end, once, from the loop; the session is freed when it returns. */
typedef void (*collect_transport_done_fn)(void *arg, const struct collect_transport_result *r);

/*
 * Starts a session on base (borrowed; it must outlive the session): the first
 * address is being connected when this returns. NULL and nothing happens (no
 * callback) when the conf is out of range (pop3_client_new()'s ranges, no or
 * too many addresses, an address family other than IPv4/IPv6), a callback is
 * NULL, the SSL_CTX cannot be made (tls starttls or implicit), or memory runs
 * out.
 */
struct collect_transport *collect_transport_new(struct event_base *base,
                                                const struct collect_transport_conf *conf,
                                                collect_transport_event_fn event,
                                                collect_transport_done_fn done, void *arg);

/* The listing (after the LISTING event), else NULL; valid until done(). */
const struct pop3_client_listing *collect_transport_listing(const struct collect_transport *s);

/* pop3_client_retr / _dele / _room / _quit on the session's client (same contracts). */
int collect_transport_retr(struct collect_transport *s, uint64_t num);
int collect_transport_dele(struct collect_transport *s, uint64_t num);
size_t collect_transport_room(const struct collect_transport *s);
int collect_transport_quit(struct collect_transport *s);

/* Stops (paused 1) or resumes (0) reading from the server; see the top. */
void collect_transport_pause(struct collect_transport *s, int paused);

/*
 * Ends the session now, without QUIT (nothing deleted): requests under way get
 * ABORTED events, then done() with POP3_CLIENT_END_LOCAL and why. Allowed from
 * inside event(); a no-op once the end is decided.
 */
void collect_transport_abort(struct collect_transport *s, const char *why);

#endif
