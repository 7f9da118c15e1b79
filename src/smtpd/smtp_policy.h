/*
 * smtp_policy: who may send what to whom. Pure decisions over the configuration
 * and the shared three-valued recipient lookup (verify/lookup.h): the HELO/EHLO
 * refusal list (seed "Refuse SMTP Connections from"), the sender checks ('%' and
 * '!' refusals) and the recipient decision (local lookup, postmaster, relay only
 * for trusted clients, members-only mailing lists). Each decision comes back as a complete SMTP reply (code,
 * RFC 3463 enhanced code, text) that the session sends as is.
 *
 * Routing tricks never relay (hostile-inputs.md "Addresses and parameters"): a
 * local part holding '%', '!' or '@' in a local domain is just a local part and
 * is looked up as written; source routes were dropped by the path parser, so the
 * final mailbox decides; an address literal is never a local domain.
 *
 * Owner: the SMTP session engineer (src/smtpd).
 */
#ifndef SHAREMAIL_SMTPD_SMTP_POLICY_H
#define SHAREMAIL_SMTPD_SMTP_POLICY_H

#include <stddef.h>

#include "proto/smtp_cmd.h"
#include "verify/lookup.h"

struct conf;

/* One reply: code 0 means "accepted" only for verdicts that say so. */
struct smtp_policy_reply {
	int code;
	const char *enh; /* RFC 3463 code, never NULL */
	const char *text;
};

enum smtp_rcpt_verdict {
	SMTP_RCPT_ACCEPT = 0, /* 250 2.1.5 */
	SMTP_RCPT_ACCEPT_RELAY, /* 250 2.1.5: not local, the client is trusted */
	SMTP_RCPT_UNKNOWN, /* 550 5.1.1: a local domain, no such mailbox (log it) */
	SMTP_RCPT_REFUSED, /* any other refusal, over quota too (the reply says which) */
	SMTP_RCPT_TEMPFAIL, /* 451 4.3.0: the directory could not answer */
};

/*
 * 1 if the HELO/EHLO argument arg[0..len) contains one of smtp_refuse_helo as a
 * substring (ASCII case-insensitive; empty entries never match), else 0.
 */
int smtp_policy_helo_refused(const struct conf *c, const char *arg, size_t len);

/*
 * Decides a MAIL FROM reverse-path (already parsed). Returns 0 when accepted
 * (r->code 250), -1 with the refusal in *r (553 5.1.7 for '%' or '!' when
 * smtp_refuse_percent / smtp_refuse_bang are set).
 */
int smtp_policy_sender(const struct conf *c, const struct smtp_path *p,
                       struct smtp_policy_reply *r);

/*
 * Decides a RCPT TO forward-path (already parsed) for a client that is
 * `trusted` (may relay) or not, in a transaction whose envelope sender is
 * `sender` (MAIL FROM's mailbox as stored; "" or NULL for <>). Calls lookup for
 * mailboxes of local domains. A members-only mailing list refuses a sender that
 * is not one of its members (the null sender included) with 550 5.7.1
 * (REFUSED), trusted client or not. Fills *r with the reply to send in every case.
 */
enum smtp_rcpt_verdict smtp_policy_rcpt(const struct conf *c, lookup_fn lookup, void *lookup_arg,
                                        int trusted, const char *sender, const struct smtp_path *p,
                                        struct smtp_policy_reply *r);

/*
 * Looks up one mailbox of a local domain, mailbox[0..len) as written, and gives
 * the reply RCPT and VRFY send: 250 2.1.5 (SMTP_RCPT_ACCEPT) when it can
 * receive (a mailing list always can); an over-quota mailbox 452 4.2.2, or 552
 * 5.2.2 with smtp_over_quota_reply = 552 (REFUSED); a disabled one 550 5.2.1
 * (REFUSED); unknown 550 5.1.1 (UNKNOWN); 451 4.3.0 when the directory cannot
 * answer (TEMPFAIL). No sender is known here, so a members-only list is not
 * checked: VRFY says it exists.
 */
enum smtp_rcpt_verdict smtp_policy_mailbox(const struct conf *c, lookup_fn lookup, void *lookup_arg,
                                           const char *mailbox, size_t len,
                                           struct smtp_policy_reply *r);

/*
 * 1 if the mailbox's domain is one of local_domains (an address literal never
 * is), else 0.
 */
int smtp_policy_is_local(const struct conf *c, const struct mailaddr *a);

#endif
