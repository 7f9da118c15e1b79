/*
 * smtp_transport: outgoing SMTP over real sockets. The thin libevent glue that
 * drives the pure client (deliver/smtp_client.h): it opens TCP connections,
 * moves octets between a bufferevent and the client, arms one timer per
 * connection from smtp_client_deadline(), starts TLS when the client asks
 * (bufferevent_openssl), streams the message body from a file, falls back from
 * host to host, and keeps a connection open for the next message to the same
 * destination. It decides nothing about SMTP itself: the client does.
 *
 * A job is one message to one destination: the hosts to try in order (each a
 * name and the addresses the caller resolved, ports included), the envelope,
 * and the body (a descriptor and an offset). smtp_transport_send() takes it;
 * the done callback gets its outcome, once, from the event loop:
 * - SMTP_TRANSPORT_ANSWERED: a host greeted us and the message's transaction
 *   was tried on its connection; each recipient has its own result (delivered,
 *   deferred, failed), also when the connection broke in the middle (RFC 5321
 *   6.1: a drop or timeout after the final dot defers: at most one duplicate).
 * - SMTP_TRANSPORT_DEST_DEAD: no host would take the message (refused, timeout,
 *   greeting 4xx/5xx, EHLO/HELO refused, TLS failure, protocol error or drop
 *   before the transaction): every recipient is DEFERRED with the last reason.
 *   The manager reports SCHEDULER_DEFER_DEST for each.
 * - SMTP_TRANSPORT_LOCAL_ERROR: the body could not be read (or memory, or a
 *   descriptor, ran out): not the destination's fault; the recipients not
 *   already answered are DEFERRED with a 4.3.0 reason.
 * - SMTP_TRANSPORT_ABORTED: smtp_transport_free() ended the job first; every
 *   recipient is DEFERRED (4.3.2), also those a peer had answered already.
 *
 * Host fallback: a connection-level failure before the message was under way
 * tries the next address, then the next host. With tls = may, a TLS failure
 * (handshake error or deadline) reconnects to the same address once in
 * plaintext (RFC 7435 opportunistic security: better in clear than not at all)
 * before moving on. Once smtp_client_message() took the message, its results
 * stand: it never goes to a second host in the same job.
 *
 * Connection reuse: after a message's results the connection stays open for
 * its dest_key when it is healthy and has carried fewer than messages_max
 * messages (result->reusable says so). A job sent for the same dest_key goes
 * on it (automatically: smtp_transport_send looks for one); when none comes
 * within idle_max seconds it sends QUIT. The caller guarantees that jobs with
 * one dest_key have the same next hop (hosts and TLS needs). A reused
 * connection that breaks before the next message is under way (RSET refused,
 * the peer gone) costs nothing: that job connects afresh from its first host.
 * Nor does one that breaks under the next message before the final dot with
 * nothing answered about it (dropped, or 421: the peer's idle timeout racing
 * ours): nothing can have been accepted, so the message goes again, once, on
 * a new connection.
 *
 * TLS: one SSL_CTX per transport, from OpenSSL's defaults (TLS_client_method),
 * without certificate verification in either mode (opportunistic, RFC 7435;
 * tls = require means "encrypted", as Postfix's "encrypt" level; verification
 * and DANE are later work). SNI is the host name unless it is empty or an
 * address literal (RFC 6066 3). Plaintext after STARTTLS's 220 is discarded,
 * never read as a reply (the client counts it; CVE-2011-0411).
 *
 * The body: read with pread(2) from body_offset, msg.size octets (CRLF lines
 * as stored, not dot-stuffed: the client stuffs), in body_chunk pieces as the
 * output buffer drains. The reads happen on the event loop: they are
 * page-cache reads of a file just written; a later change can move them to a
 * thread. A file shorter than msg.size is a local error, never a short message.
 *
 * Deadlines are the client's (RFC 5321 4.5.3.2), on one evtimer per connection
 * (never bufferevent timeouts, which restart with every octet); the TCP
 * connect has the client's connect deadline. Logs: debug lines only; the
 * manager logs the per-recipient line from the result.
 *
 * Ownership: the transport owns its connections, their clients and the
 * SSL_CTX. Everything a job points to (hosts, their names and addresses, the
 * envelope strings, the recipient array, the descriptor) is borrowed from
 * smtp_transport_send() until its done callback returns; the descriptor is
 * never closed here. A result is valid only during the callback. One thread:
 * the event loop's. Nothing a peer sends reaches abort(), assert() or exit().
 * The process must ignore SIGPIPE (sharemaild does): libevent writes with
 * writev(2), and a peer that resets the connection must not kill the daemon.
 */
#ifndef SHAREMAIL_DELIVER_SMTP_TRANSPORT_H
#define SHAREMAIL_DELIVER_SMTP_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "deliver/smtp_client.h"

struct event_base;

#define SMTP_TRANSPORT_DEST_MAX 255 /* dest_key octets (the scheduler's destination key) */
#define SMTP_TRANSPORT_HOST_MAX 255 /* host name octets (a domain name's maximum) */
#define SMTP_TRANSPORT_ADDR_TEXT 46 /* an address as text, NUL included (INET6_ADDRSTRLEN) */
#define SMTP_TRANSPORT_CHUNK_MIN 4096
#define SMTP_TRANSPORT_CHUNK_MAX (1024 * 1024)

struct smtp_transport_conf {
	/* helo_name (copied), tls (off|may|require), timeouts (connect: the TCP
	 * connect), reply limits, max_rcpts, out_max: see smtp_client.h. */
	struct smtp_client_conf client;
	unsigned idle_max; /* s an idle connection waits for its dest_key (5; 0: no reuse) */
	unsigned messages_max; /* messages per connection (100; 1-100000) */
	size_t body_chunk; /* body octets read at a time (65536; CHUNK_MIN..CHUNK_MAX) */
};

/* One host to try: a name and its addresses (the caller resolved them), in order. */
struct smtp_transport_host {
	const char *name; /* for SNI and the result ("mx1.example.com"); an address
	                     literal or "" sends no SNI; at most HOST_MAX octets used */
	const struct sockaddr_storage *addrs; /* AF_INET or AF_INET6, each with its port */
	size_t n_addrs;
};

/* One message to one destination. */
struct smtp_transport_job {
	const struct smtp_transport_host *hosts; /* in order of preference */
	size_t n_hosts;
	struct smtp_client_msg msg; /* envelope, SIZE (= the body's length), 8-bit, DSN */
	int body_fd; /* readable: msg.size - prefix_len octets from body_offset, as stored */
	uint64_t body_offset;
	/* Octets sent before the body (a trace field; msg.size counts them), or NULL.
	 * Borrowed until the job's done() has run. */
	const char *prefix;
	size_t prefix_len;
};

enum smtp_transport_outcome {
	SMTP_TRANSPORT_ANSWERED = 0, /* a peer talked: per-recipient results */
	SMTP_TRANSPORT_DEST_DEAD, /* no host took the message: all DEFERRED (DEFER_DEST) */
	SMTP_TRANSPORT_LOCAL_ERROR, /* our side failed: unanswered recipients DEFERRED */
	SMTP_TRANSPORT_ABORTED, /* smtp_transport_free(): all DEFERRED */
};

struct smtp_transport_result {
	enum smtp_transport_outcome outcome;
	size_t n_rcpts;
	const struct smtp_client_rcpt_result *rcpts; /* in the job's order */
	/* ANSWERED: the reply that decided the message (smtp_client_result's);
	 * otherwise why no host took it (the last attempt's reason). */
	struct smtp_client_reply reply;
	/* The last connection's status (smtp_client.h; a failed TCP connect shows
	 * as SMTP_CLIENT_CONN_DROPPED, its reply text saying why). */
	enum smtp_client_conn_status conn_status;
	/* The host that answered, or the last one tried ("" and port 0: none). */
	const char *host;
	char addr[SMTP_TRANSPORT_ADDR_TEXT]; /* "192.0.2.1", "2001:db8::1" */
	int port;
	int peer_dsn; /* the peer offered DSN (0: the caller owes "relayed" notices) */
	int tls; /* the message went over TLS */
	unsigned connections; /* TCP connections opened for this job (0: a reused one) */
	int reused; /* the message went on a connection kept from an earlier message */
	int reusable; /* the connection waits idle for dest_key: send the next job now */
};

/*
 * The outcome of a job. Called exactly once per job that smtp_transport_send()
 * accepted, from the event loop (never from inside smtp_transport_send). It may
 * call smtp_transport_send() (typically, when r->reusable, with the next job
 * for the same dest_key) and smtp_transport_close_idle(), but not
 * smtp_transport_free().
 */
typedef void (*smtp_transport_done_fn)(void *arg, const struct smtp_transport_result *r);

struct smtp_transport;

/* Fills *c with the defaults above and smtp_client_conf_defaults() (helo_name NULL). */
void smtp_transport_conf_defaults(struct smtp_transport_conf *c);

/*
 * Creates a transport on base (borrowed; it must outlive the transport). The
 * conf is copied. Returns NULL when the conf is out of range (the client's
 * ranges, and those above), when the SSL_CTX cannot be made (tls may or
 * require), or when memory runs out.
 */
struct smtp_transport *smtp_transport_new(struct event_base *base,
                                          const struct smtp_transport_conf *conf);

/*
 * Closes every connection at once (no QUIT) and calls, from here, the done
 * callback of every job not yet reported: with its result when it has one
 * (a 250 that came just before is never lost), else SMTP_TRANSPORT_ABORTED.
 * smtp_transport_send() refuses new jobs meanwhile. NULL is a no-op. Not from
 * inside a done callback.
 */
void smtp_transport_free(struct smtp_transport *t);

/*
 * Takes a job for dest_key (1..SMTP_TRANSPORT_DEST_MAX octets of printable
 * ASCII without space, copied). It goes on an idle connection kept for dest_key when there is one,
 * else on a new connection to its first host. Returns 0 (done will be called),
 * or -1 and nothing happens (done is not called): no host, no address in any
 * host (a host without addresses is skipped), no recipient or more than the
 * client's max_rcpts, no sender, a negative descriptor, a bad dest_key, the
 * transport being freed, or out of memory.
 */
int smtp_transport_send(struct smtp_transport *t, const char *dest_key,
                        const struct smtp_transport_job *job, smtp_transport_done_fn done,
                        void *arg);

/*
 * Sends QUIT now on every idle connection (reload, shutdown, or dest_key
 * non-NULL: only those kept for it). Connections carrying a message are left
 * alone.
 */
void smtp_transport_close_idle(struct smtp_transport *t, const char *dest_key);

/* Open connections (connecting, busy, idle or quitting), and how many are idle. */
size_t smtp_transport_connections(const struct smtp_transport *t, size_t *idle);

/* "answered", "destination dead", "local error", "aborted". */
const char *smtp_transport_outcome_name(enum smtp_transport_outcome o);

#endif
