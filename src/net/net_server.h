/*
 * net_server: one TCP service of sharemaild (SMTP and submission today, POP3
 * next): its listeners, the connection limits, the accept pause, the deadlines,
 * the greeting pause, TLS (implicit on a listener, or started on request:
 * STARTTLS, STLS), the final flush, the linger, and the drain. It knows nothing
 * of the protocol: each connection's session is driven through struct
 * net_session_ops (the session vtable), so a line protocol only supplies a
 * session that consumes octets and produces replies.
 *
 * Connection life: [HANDSHAKE (implicit TLS)] -> [GREETING (greet pause)] ->
 * ACTIVE -> CLOSING (flushing our last replies) -> LINGER (write side shut,
 * reading and discarding what the client still sends, so the kernel does not
 * answer its unread octets with a RST that destroys our last reply) -> gone.
 * A STARTTLS handshake happens inside ACTIVE (net_conn_starttls()).
 *
 * Limits (hostile-inputs.md "Limits and load"): a connection over
 * max_connections or max_connections_per_ip gets the service's busy line
 * (nothing on an implicit-TLS listener: a TLS client cannot read it) and is
 * closed at once, with no session made for it. accept() failing for lack of
 * descriptors pauses every listener for a moment instead of spinning.
 *
 * Deadlines (slowloris): the client has command_timeout seconds from our last
 * reply to complete its next command; in bulk mode (SMTP DATA) bulk_timeout
 * seconds for every NET_BULK_PROGRESS octets. Octets that complete nothing do
 * not extend either deadline. A TLS handshake has handshake_timeout seconds.
 * While the session has requests open (the client waits for us) no deadline
 * runs, and a client's EOF closes only once they are answered.
 *
 * TLS (bufferevent_openssl): the context is the service's (net_server_set_tls,
 * reference counted): connections accepted, and STARTTLS handshakes begun,
 * after a change use the new one; open TLS sessions keep theirs. On an
 * implicit-TLS listener the greeting pause and the early-talker check start
 * after the handshake, on decrypted octets, so the ClientHello never counts.
 * Closing a TLS connection sends close_notify before the TCP FIN.
 *
 * Threads: everything runs on the event loop given to net_server_new().
 * Ownership: the server borrows the event base; it owns its listeners and
 * connections; sessions are the service's (ops->open makes one, ops->close
 * gives it back).
 */
#ifndef SHAREMAIL_NET_NET_SERVER_H
#define SHAREMAIL_NET_NET_SERVER_H

#include <stddef.h>
#include <sys/socket.h>

struct addrlist;
struct conf;
struct event_base;
struct net_server;
struct net_conn;
typedef struct ssl_ctx_st SSL_CTX;

/* In bulk mode the deadline restarts after each this many octets consumed. */
#define NET_BULK_PROGRESS (64 * 1024)

enum net_tls_mode {
	NET_TLS_NONE = 0, /* plaintext; net_conn_starttls() may upgrade it */
	NET_TLS_IMPLICIT, /* the handshake comes first (RFC 8314) */
};

/* What a connection is held to; each connection keeps a copy from its accept. */
struct net_limits {
	int max_connections; /* every listener of the server together */
	int max_connections_per_ip;
	int greet_pause_ms; /* 0: greet at once */
	int command_timeout; /* seconds */
	int bulk_timeout; /* seconds per NET_BULK_PROGRESS octets */
	int handshake_timeout; /* seconds for a TLS handshake */
};

/*
 * The session vtable. sess is what open() returned. Every call is made on the
 * event loop; none is made after close().
 */
struct net_session_ops {
	/*
	 * Before anything is spent on a new connection (after the connection
	 * limits): NULL admits it; a line (with CRLF) refuses it: the line is sent
	 * on a plaintext listener, then the connection is closed. NULL op: every
	 * connection is admitted. (The Dynamic Screen.)
	 */
	const char *(*admit)(void *svc, const struct sockaddr *peer);
	/*
	 * A connection was accepted on a listener with tag (net_server_listen());
	 * peer_text is the address without port ("192.0.2.1", "2001:db8::1").
	 * Returns the session, or NULL (out of memory: the connection is closed).
	 */
	void *(*open)(void *svc, struct net_conn *nc, int tag, const struct sockaddr *peer,
	              const char *peer_text);
	/* Time to greet; early_talker: the client sent octets first. */
	void (*greet)(void *sess, int early_talker);
	/* Consumes input; returns how much (less: the rest is fed again later). */
	size_t (*input)(void *sess, const char *data, size_t len);
	/* The output not yet sent, and how much of it was taken. */
	const char *(*output)(void *sess, size_t *len);
	void (*output_done)(void *sess, size_t n);
	int (*ended)(void *sess); /* 1: send the pending output, then close */
	int (*waiting)(void *sess); /* 1: takes no input until a request is done */
	size_t (*requests)(void *sess); /* requests open: no deadline, EOF waits */
	int (*in_bulk)(void *sess); /* 1: bulk feed and bulk_timeout (SMTP DATA) */
	void (*timeout)(void *sess); /* the deadline passed: say so and end */
	void (*shutdown)(void *sess); /* the server drains: say so and end (or soon) */
	/* A net_conn_starttls() handshake finished: ok 1, or 0 (the connection closes). */
	void (*tls_done)(void *sess, int ok);
	/*
	 * The transport is gone (socket, timer): returns 0 once the session is freed,
	 * or 1 when the service still waits for something (a commit) and calls
	 * net_conn_release(nc) later; the connection counts until then.
	 */
	int (*close)(void *sess);
};

/*
 * A server with no listener yet. name prefixes its log lines ("smtp");
 * busy_line (with CRLF, copied) is sent to a connection over a limit. NULL on
 * out of memory.
 */
struct net_server *net_server_new(struct event_base *base, const char *name,
                                  const struct net_limits *lim, const struct net_session_ops *ops,
                                  void *svc, const char *busy_line);

/*
 * Binds and listens on sa (SO_REUSEADDR; IPV6_V6ONLY on IPv6); tag is given to
 * ops->open for its connections; label names the listener in the log
 * ("submission: listening on 127.0.0.1:587"). Returns 0, or -1 with
 * "WHERE: [step: ]reason" in err (where names the config line).
 */
int net_server_listen(struct net_server *s, const struct sockaddr *sa, socklen_t salen, int tag,
                      enum net_tls_mode tls, const char *label, const char *where, char *err,
                      size_t errlen);

/*
 * net_server_listen on every entry of l (an address list of c, e.g.
 * &c->pop3_listen), each with tag, tls and label; an error names the config
 * line: "FILE:LINE: KEY HOST:PORT: reason" (conf_addr_where). Returns 0, or -1
 * at the first that fails (those before it stay open).
 */
int net_server_listen_list(struct net_server *s, const struct conf *c, const struct addrlist *l,
                           int tag, enum net_tls_mode tls, const char *label, char *err,
                           size_t errlen);

/* Limits for connections accepted from now on (open ones keep theirs). */
void net_server_set_limits(struct net_server *s, const struct net_limits *lim);

/*
 * The TLS context for new handshakes (a reference is taken; NULL: none, then
 * implicit-TLS connections are closed and net_conn_starttls() fails).
 */
void net_server_set_tls(struct net_server *s, SSL_CTX *ctx);

/*
 * net_server_set_tls with a context made from cert_file and key_file (PEM, as
 * tls_ctx_server_new); no cert_file (NULL or empty): no TLS (no STARTTLS or
 * STLS, implicit-TLS connections closed). Returns 0, or -1 with the reason in
 * err, the context in use, if any, staying (a SIGHUP with a bad new key keeps
 * the old one).
 */
int net_server_load_tls(struct net_server *s, const char *cert_file, const char *key_file,
                        char *err, size_t errlen);

/* 1 when a TLS context is set. */
int net_server_tls_available(const struct net_server *s);

/*
 * Graceful stop: closes the listeners, frees connections still before their
 * greeting or in a TLS handshake, calls ops->shutdown on every active session and lets them end as
 * they do; done(arg) runs on the event loop once no connection is left (at
 * once if there is none).
 */
void net_server_drain(struct net_server *s, void (*done)(void *arg), void *arg);

/* 1 once net_server_drain() was called. */
int net_server_draining(const struct net_server *s);

/* Connections counted (a held one, whose session the service still has, included). */
size_t net_server_connections(const struct net_server *s);

/*
 * Calls fn(sess, arg) for every connection's session (held ones included) until
 * fn returns non-zero; returns that value, or 0.
 */
int net_server_each(const struct net_server *s, int (*fn)(void *sess, void *arg), void *arg);

/*
 * Closes the listeners and every connection at once (ops->close for each) and
 * frees the server (NULL is a no-op). A held connection is orphaned: its
 * net_conn_release() only frees it.
 */
void net_server_free(struct net_server *s);

/* ---- for the session's service, on one connection ---- */

/* The session's state changed outside input (an answer came): feed, send, settle. */
void net_conn_pump(struct net_conn *nc);

/*
 * Starts a server TLS handshake once the session's pending output (its "220
 * Ready to start TLS") is out. Input buffered before it is discarded unread
 * (RFC 3207 5, CVE-2011-0411: plaintext pipelined after STARTTLS never runs
 * inside TLS); no input is fed until ops->tls_done(). Returns 0, or -1 when TLS
 * is already active, no context is set, or one is under way.
 */
int net_conn_starttls(struct net_conn *nc);

/* 1 with TLS active, and then its protocol ("TLSv1.3") and cipher names (static strings). */
int net_conn_tls_info(const struct net_conn *nc, const char **version, const char **cipher);

/* 1 once the server drains. A held or orphaned connection: 0. */
int net_conn_draining(const struct net_conn *nc);

/* The held connection's session is freed (ops->close returned 1): forget it. */
void net_conn_release(struct net_conn *nc);

#endif
