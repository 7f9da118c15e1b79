/*
 * smtp_policy: who may send what to whom. Pure decisions over the configuration
 * and the shared three-valued recipient lookup (verify/lookup.h): the HELO/EHLO
 * refusal list (seed "Refuse SMTP Connections from"), the sender checks ('%' and
 * '!' refusals) and the recipient decision: first what needs no lookup (the
 * null path, postmaster, routing characters), then the verifier's answer
 * (verify/verify.h: a local mailbox, one on a Domain Sharing peer or behind a
 * gateway, nobody, try later, or not ours: relay only for trusted clients),
 * members-only mailing lists included. Each decision comes back as a complete
 * SMTP reply (code, RFC 3463 enhanced code, text) that the session sends as is.
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
#include "verify/verify.h"

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
	SMTP_RCPT_TEMPFAIL, /* 451 4.3.0: the directory could not answer; 4.4.3: other servers */
	SMTP_RCPT_VERIFY, /* smtp_policy_rcpt_first() only: ask the verifier */
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
 * The part of a RCPT TO decision (forward-path already parsed) that needs no
 * lookup: the null path (501 5.1.3), <Postmaster> and postmaster at a local
 * domain (RFC 5321 4.5.1: 250 at once), the seed's '%' and '!' refusals (553
 * 5.1.3). Returns SMTP_RCPT_VERIFY (r untouched) when the verifier must be
 * asked about p->mailbox, else the verdict with its reply in *r.
 */
enum smtp_rcpt_verdict smtp_policy_rcpt_first(const struct conf *c, const struct smtp_path *p,
                                              struct smtp_policy_reply *r);

/*
 * The verdict from the verifier's answer a on a recipient, for a client that is
 * `trusted` (may relay) or not, and is a Domain Sharing peer (`sharing_peer`)
 * or not:
 *   VERIFY_LOCAL: the local mailbox's reply (smtp_policy_mailbox()), and a
 *     members-only list refuses a sender that is not a member (a.local was
 *     asked with the envelope sender; <> is never a member) with 550 5.7.1
 *     (REFUSED), trusted client or not, unless the client is a sharing peer
 *     (peers are trusted senders for list posts);
 *   VERIFY_REMOTE: 250 2.1.5 (ACCEPT: the caller routes it to a.route);
 *   VERIFY_REMOTE_DISABLED: 550 5.2.1 (REFUSED); VERIFY_NOTFOUND: 550 5.1.1
 *   (UNKNOWN); VERIFY_TEMPFAIL: 451 4.4.3 when other servers were asked
 *   (a.servers_asked), else 451 4.3.0 (TEMPFAIL), never 5xx;
 *   VERIFY_FOREIGN: 250 2.1.5 (ACCEPT_RELAY) for a trusted client, else 554
 *   5.7.1 (REFUSED).
 * Fills *r in every case.
 */
enum smtp_rcpt_verdict smtp_policy_rcpt_answer(const struct conf *c, int trusted, int sharing_peer,
                                               const struct verify_answer *a,
                                               struct smtp_policy_reply *r);

/*
 * Looks up one mailbox of a local domain, mailbox[0..len) as written, and gives
 * the reply VRFY sends (RCPT's for a local mailbox, smtp_policy_rcpt_answer()): 250 2.1.5 (SMTP_RCPT_ACCEPT) when it can
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
