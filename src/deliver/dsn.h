/*
 * dsn: composes delivery status notifications (bounces, delay warnings, success
 * reports) as RFC 3464 multipart/report messages (RFC 6522), with the RFC 3461
 * DSN parameters (ENVID, ORCPT, RET) carried as given, and the envelope the
 * notification is to be queued with (RFC 5321 4.5.5: MAIL FROM:<>, RCPT TO the
 * original envelope sender).
 *
 * Pure: no I/O, no clock (every time is a parameter), no global state. The only
 * allocation is the output buffer, which grows up to the maximum its owner set.
 *
 * What the caller decides (and this module does not): whether a notice is due
 * (NOTIFY, queue_delay_warning, lifetime), which recipients it covers (one
 * notice per message per attempt, listing every recipient given), and queueing
 * the result. What this module guarantees: a notice is never composed for the
 * null sender <> (no bounce of a bounce); every line ends in CRLF and is at most
 * 998 octets (RFC 5322 2.1.1); nothing from the peer (reply text, host names)
 * or the sender (addresses, ENVID, the returned message) can break the MIME
 * structure or a header field.
 *
 * Ownership: every input is borrowed for the duration of the call; the output
 * bytes belong to the struct dsn_out (dsn_out_free); the envelope's strings
 * point into the inputs (rcpt_to is msg->sender).
 */
#ifndef SHAREMAIL_DELIVER_DSN_H
#define SHAREMAIL_DELIVER_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "proto/esmtp_param.h"

#define DSN_ADDR_MAX 512 /* an address or ORCPT longer than this is refused (DSN_INVALID) */
#define DSN_DIAG_MAX 800 /* diagnostic text kept after sanitising, then "..." */
#define DSN_HOST_MAX 255 /* reporting host name */
#define DSN_ID_MAX 128 /* Message-ID left part */

enum dsn_result {
	DSN_OK = 0,
	DSN_NULL_SENDER, /* the original sender is <>: never a notice for it (RFC 5321 4.5.5) */
	DSN_INVALID, /* a caller error: missing or malformed parameter, no recipient */
	DSN_TOO_BIG, /* even without any returned content the notice exceeds out->max */
	DSN_NOMEM, /* the output buffer could not grow */
};

/* What the notice is: decides the Subject and the human-readable introduction. */
enum dsn_kind {
	DSN_KIND_FAILURE = 0, /* "Undelivered Mail Returned to Sender" */
	DSN_KIND_DELAY, /* "Delayed Mail (still being retried)" */
	DSN_KIND_SUCCESS, /* "Successful Mail Delivery Report" (delivered, relayed, expanded) */
};

/* RFC 3464 2.3.3 action-value of one recipient. */
enum dsn_action {
	DSN_ACTION_FAILED = 0,
	DSN_ACTION_DELAYED,
	DSN_ACTION_DELIVERED,
	DSN_ACTION_RELAYED,
	DSN_ACTION_EXPANDED,
};

/* What of the original message the notice carries as its third part. */
enum dsn_returned {
	DSN_RETURNED_NONE = 0, /* no third part (empty message, returning disabled, no room) */
	DSN_RETURNED_HEADERS, /* text/rfc822-headers */
	DSN_RETURNED_FULL, /* message/rfc822 */
};

/* The original message. */
struct dsn_msg {
	const char *queue_id; /* 1-31 letters and digits (the queue's ids) */
	const char *sender; /* envelope sender as received, "" for <> */
	const char *envid; /* ENVID, xtext-decoded, or NULL */
	enum esmtp_ret ret; /* RET=FULL, RET=HDRS or unset */
	int64_t arrival; /* epoch seconds it was received (Arrival-Date); 0 = unknown */
	int body_8bit; /* it was received with BODY=8BITMIME */
	const char *data; /* the stored message: CRLF lines, dot-stuffing undone */
	size_t len;
};

/* One recipient the notice reports on. */
struct dsn_rcpt {
	const char *addr; /* final recipient: the RCPT TO address as received */
	const char *orcpt; /* ORCPT "addr-type;xtext-decoded address", or NULL */
	enum dsn_action action;
	const char *status; /* RFC 3463 code, e.g. "5.1.1"; NULL or unusable: see dsn_compose */
	int reply_code; /* the peer's SMTP reply code (200-599), or 0: diag is a local reason */
	const char *diag; /* the reply text after the code (any octets), a local reason, or NULL */
	size_t diag_len; /* octets of diag (NUL allowed); 0 = strlen(diag) */
	const char *remote_mta; /* host name of the peer that gave the reply, or NULL */
	int64_t last_attempt; /* epoch seconds of the last attempt; 0 = not given */
	int64_t retry_until; /* delayed only: epoch seconds attempts stop; 0 = not given */
};

/* The settings of one notice. */
struct dsn_params {
	const char *hostname; /* ours: Reporting-MTA, From: MAILER-DAEMON@, Message-ID domain */
	const char *message_id; /* unique left part of the notice's Message-ID (dot-atom text) */
	enum dsn_kind kind;
	int64_t now; /* epoch seconds: the notice's Date */
	size_t return_max; /* queue_bounce_max_return: largest message returned whole; also
	                      the cap on returned header octets; 0 = return nothing */
};

/* The envelope to queue the notice with. */
struct dsn_envelope {
	const char *mail_from; /* always "": the null reverse-path (RFC 5321 4.5.5) */
	const char *rcpt_to; /* the original envelope sender (msg->sender) */
	int body_8bitmime; /* the notice holds 8-bit octets: send it with BODY=8BITMIME */
	enum dsn_returned returned; /* what was attached */
};

/*
 * The output buffer: p[0..len) is the notice (not NUL-terminated); it grows as
 * needed but never beyond max octets.
 */
struct dsn_out {
	char *p;
	size_t len, cap, max;
	int overflow; /* private: a write would have passed max */
	int nomem; /* private: realloc failed */
};

/* Prepares an empty buffer that will hold at most max octets (no allocation yet). */
void dsn_out_init(struct dsn_out *o, size_t max);

/* Frees the buffer's octets and empties it (max is kept; NULL is a no-op). */
void dsn_out_free(struct dsn_out *o);

/*
 * Composes the notice for msg and the n recipients r[0..n) into out (its
 * previous content is replaced) and fills *env. Returns DSN_OK, or:
 * DSN_NULL_SENDER when msg->sender is "" (nothing is composed: the caller
 * must never bounce a bounce); DSN_INVALID for a NULL or empty hostname,
 * message_id, queue_id or recipient address, characters outside host-name /
 * dot-atom syntax in hostname or message_id, a queue_id that is not 1-31
 * letters and digits, n = 0, an unknown kind or action, an address, ORCPT
 * (which must contain ';') or ENVID over its maximum, or a `now` that cannot
 * be formatted as a date; DSN_TOO_BIG or DSN_NOMEM (out is then empty).
 *
 * The returned part (RFC 3461 4.3): a failure notice returns the whole message
 * (message/rfc822) unless RET=HDRS, the message is over return_max octets, or
 * it holds a NUL, a bare CR or LF or a line over 998 octets; then, and for
 * every delay or success notice, the header section (text/rfc822-headers),
 * field by field up to return_max octets, leaving out fields that are not
 * clean 8-bit data; nothing when the message is empty, has no header field,
 * return_max is 0, or the notice would not fit out->max otherwise. The text
 * part says which happened. The part is declared 8bit (and env->body_8bitmime
 * set) exactly when the octets returned hold 8-bit data, whatever BODY said.
 *
 * Status: a recipient's code is used when it is a valid RFC 3463 code whose
 * class fits the action (failed: 4 or 5, RFC 3464 2.3.3 allows a 4.x.x on a
 * failure that timed out; delayed: 4; delivered, relayed, expanded: 2);
 * otherwise 5.0.0, 4.0.0 or 2.0.0 is reported, so a peer's inconsistent code
 * never stops a bounce. Diagnostic text is sanitised (CR, LF, TAB become
 * spaces, other controls, DEL and 8-bit octets '?', runs of spaces one),
 * bounded to DSN_DIAG_MAX octets and folded at spaces. Will-Retry-Until is
 * written only for delayed recipients (RFC 3464 2.3.9). Dates that cannot be
 * formatted (arrival, last attempt, retry until) are left out.
 *
 * The MIME boundary is derived from the queue id and lengthened until it
 * occurs nowhere in the notice but as its own delimiters.
 */
enum dsn_result dsn_compose(const struct dsn_params *p, const struct dsn_msg *msg,
                            const struct dsn_rcpt *r, size_t n, struct dsn_out *out,
                            struct dsn_envelope *env);

/* A short English name for a result ("ok", "null sender", ...), for logs. */
const char *dsn_result_str(enum dsn_result rc);

#endif
