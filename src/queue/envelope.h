/*
 * envelope: the SMTP envelope of one queued message: who sent it, to whom, the
 * DSN parameters (RFC 3461), and the trace facts of its receipt. Shared by the
 * SMTP session (which fills it), the queue (which stores it) and delivery (which
 * reads it and records each recipient's outcome).
 *
 * Ownership: every string is owned by the envelope (heap, NUL-terminated);
 * envelope_free() frees them. Addresses are stored as received, without angle
 * brackets ("" for the null reverse-path <>), byte-exact (quoted local parts too).
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

struct envelope_rcpt {
	char *addr; /* RCPT TO address as received */
	char *orcpt; /* DSN ORCPT "addr-type;xtext-decoded address", or NULL */
	unsigned notify; /* ESMTP_NOTIFY_* bits (proto/esmtp_param.h), 0 = not given */
	enum rcpt_state state;
	int attempts;
	int64_t next_try; /* epoch seconds */
	char *status; /* last result, e.g. "250 2.0.0 delivered" or "451 4.3.0 ..." */
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

#endif
