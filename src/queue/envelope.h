/*
 * envelope: the SMTP envelope of one queued message: who sent it, to whom, the
 * DSN parameters (RFC 3461), and the trace facts of its receipt. Shared by the
 * SMTP session (which fills it), the queue (which stores it) and delivery (which
 * reads it and records each recipient's outcome).
 *
 * Delivery expands each local recipient once (aliases, at its first attempt) into
 * its final mailboxes and records them in the recipient (struct envelope_final),
 * each with its own state, so one mailbox's outcome never decides another's: a
 * copy delivered is never made again, a deferred mailbox is retried alone.
 *
 * Each recipient (and each final mailbox) also has a route, the destination key
 * the delivery code set when it resolved the next hop (NULL or "" = local, or not
 * routed yet), and a last status, a reply line "CODE X.Y.Z text" that the queue
 * stores structured (reply code, enhanced code, text: envelope_reply_split()).
 *
 * Ownership: every string is owned by the envelope (heap, NUL-terminated), and
 * so is every recipient's finals array; envelope_free() frees them. Addresses are
 * stored as received, without angle brackets ("" for the null reverse-path <>),
 * byte-exact (quoted local parts too).
 */
#ifndef SHAREMAIL_QUEUE_ENVELOPE_H
#define SHAREMAIL_QUEUE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/esmtp_param.h" /* the DSN values: enum esmtp_ret, esmtp_body, ESMTP_NOTIFY_* */

enum rcpt_state {
	RCPT_PENDING = 0, /* not delivered yet */
	RCPT_DELIVERED, /* done */
	RCPT_FAILED, /* permanent failure (to be bounced) */
	RCPT_DEFERRED, /* temporary failure, retried at next_try */
	RCPT_REMOTE, /* not local: waits for remote delivery (not built yet) */
};

/*
 * mailbox_expand() yields at most this many targets, so a recipient never has
 * more final mailboxes (a state file with more is damaged).
 */
#define ENVELOPE_MAX_FINALS 1024

/* Longest route (destination key) a queue file holds, in octets. */
#define ENVELOPE_ROUTE_MAX 255
/* Longest enhanced status code "C.SSS.DDD" (RFC 3463 section 2), with its NUL. */
#define ENVELOPE_ENHANCED_MAX 12

/* One final mailbox of a recipient after alias expansion, with its own state. */
struct envelope_final {
	char *addr; /* a local account's key (lower case), or a foreign alias target as written */
	enum rcpt_state state; /* PENDING, DELIVERED, FAILED, DEFERRED, or REMOTE (foreign) */
	int attempts;
	char *status; /* last result, as envelope_rcpt.status */
	char *route; /* destination key of a relayed mailbox, as envelope_rcpt.route */
};

struct envelope_rcpt {
	char *addr; /* RCPT TO address as received */
	char *orcpt; /* DSN ORCPT "addr-type;xtext-decoded address", or NULL */
	unsigned notify; /* ESMTP_NOTIFY_* bits (proto/esmtp_param.h), 0 = not given */
	enum rcpt_state state;
	int attempts;
	int64_t next_try; /* epoch seconds */
	char *status; /* last result, e.g. "250 2.0.0 delivered" or "451 4.3.0 ..." */
	/*
	 * Destination key (at most ENVELOPE_ROUTE_MAX octets); NULL or "" = local.
	 * Set it with envelope_rcpt_set_route() only: it may live in addr's
	 * allocation (route_in_addr, envelope_add_rcpt_routed()), never freed alone.
	 */
	char *route;
	int route_in_addr;
	int delay_notified; /* the one delay notice (queue_delay_warning) went to the sender */
	/*
	 * Final mailboxes (none until delivery first expands a local recipient). With
	 * finals, state sums them up: DEFERRED while any is DEFERRED, else REMOTE while
	 * any waits for remote delivery, else DELIVERED if any got a copy, else FAILED;
	 * next_try is the finals' next try (they are retried together).
	 */
	struct envelope_final *finals;
	size_t n_finals;
};

struct envelope {
	char id[32]; /* queue id, set by the queue at commit */
	char *mail_from; /* reverse-path, "" for <> */
	char *envid; /* DSN ENVID (xtext-decoded) or NULL */
	enum esmtp_ret ret;
	enum esmtp_body body;
	char *helo; /* HELO/EHLO argument as given (may be hostile; never interpreted) */
	char *client_addr; /* "192.0.2.1" or "2001:db8::1" */
	int64_t received_at; /* epoch seconds */
	int trusted; /* from smtp_trusted_networks (or, later, authenticated) */
	struct envelope_rcpt *rcpts;
	size_t n_rcpts;
};

/* Returns a zeroed envelope, or NULL when out of memory. */
struct envelope *envelope_new(void);

/* Frees an envelope and everything in it (NULL is a no-op). */
void envelope_free(struct envelope *e);

/* Sets a string field (strdup; NULL clears). Returns 0 or -1 when out of memory. */
int envelope_set(char **field, const char *value);

/*
 * Appends a recipient (copies addr and orcpt) in state RCPT_PENDING. Returns its
 * index, or -1 when out of memory. The rcpts array is grown only by this function
 * (capacity is implied by n_rcpts: the next power of two).
 */
int envelope_add_rcpt(struct envelope *e, const char *addr, const char *orcpt, unsigned notify);

/*
 * envelope_add_rcpt() with the recipient's route (NULL or "": none) copied into
 * the same allocation as its address: one allocation instead of two for every
 * recipient routed to another server as it is received (a Domain Sharing peer).
 */
int envelope_add_rcpt_routed(struct envelope *e, const char *addr, const char *orcpt,
                             unsigned notify, const char *route);

/* Sets r's route (copied; NULL clears). Returns 0, or -1 (out of memory: r unchanged). */
int envelope_rcpt_set_route(struct envelope_rcpt *r, const char *route);

/* Frees everything r holds (its finals too) and zeroes it. */
void envelope_rcpt_clear(struct envelope_rcpt *r);

/*
 * Appends a final mailbox (copies addr) to r in the given state, attempts 0, no
 * status. Returns its index, or -1 when out of memory or r already has
 * ENVELOPE_MAX_FINALS.
 */
int envelope_add_final(struct envelope_rcpt *r, const char *addr, enum rcpt_state state);

/* Frees r's final mailboxes and leaves it with none. */
void envelope_clear_finals(struct envelope_rcpt *r);

/* A status line split into its parts (RFC 5321 4.2 reply code, RFC 3463 enhanced code). */
struct envelope_reply {
	int code; /* 200-599, or 0 when the status does not begin with one */
	char enhanced[ENVELOPE_ENHANCED_MAX]; /* "4.2.2", or "" (only after a code) */
	const char *text; /* the rest (points into the status), or NULL when nothing follows */
};

/*
 * Splits status ("451 4.2.2 mailbox full") into out: a reply code when status
 * begins with three digits 2-5xx followed by a space or its end, then an enhanced
 * code when one follows likewise, then the text after one space. Anything else is
 * all text. envelope_reply_join() of the parts gives status back, octet for octet.
 */
void envelope_reply_split(const char *status, struct envelope_reply *out);

/*
 * Joins a code (0: none), an enhanced code ("" or NULL: none; ignored without a
 * code) and a text (NULL: none) with single spaces into a new heap string, or
 * NULL when out of memory.
 */
char *envelope_reply_join(int code, const char *enhanced, const char *text);

/* 1 if s is an enhanced status code "C.S.D" (class 2, 4 or 5; 1-3 digits each), else 0. */
int envelope_enhanced_valid(const char *s, size_t len);

#endif
