/* smtp_policy: see smtp_policy.h. */
#include "smtpd/smtp_policy.h"

#include <string.h>

#include "conf/conf.h"
#include "proto/mailaddr.h"
#include "util/strutil.h"

static int span_has(const char *s, size_t len, char ch)
{
	return len > 0 && memchr(s, ch, len) != NULL;
}

static void set_reply(struct smtp_policy_reply *r, int code, const char *enh, const char *text)
{
	r->code = code;
	r->enh = enh;
	r->text = text;
}

int smtp_policy_helo_refused(const struct conf *c, const char *arg, size_t len)
{
	for (size_t i = 0; i < c->smtp_refuse_helo.n; i++)
		if (ascii_contains_ci(arg, len, c->smtp_refuse_helo.v[i]))
			return 1;
	return 0;
}

int smtp_policy_is_local(const struct conf *c, const struct mailaddr *a)
{
	/* An address literal names a host, not one of our domains: relay rules apply. */
	if (a->literal || a->domain_len == 0)
		return 0;
	return conf_is_local_domain(c, a->domain, a->domain_len);
}

/*
 * The seed's '%' and '!' refusals look at the whole mailbox as written: a quoted
 * local part hides nothing from them.
 */
static int routing_char_refused(const struct conf *c, const struct smtp_path *p, char *which)
{
	if (p->mailbox == NULL)
		return 0;
	if (c->smtp_refuse_percent && span_has(p->mailbox, p->mailbox_len, '%')) {
		*which = '%';
		return 1;
	}
	if (c->smtp_refuse_bang && span_has(p->mailbox, p->mailbox_len, '!')) {
		*which = '!';
		return 1;
	}
	return 0;
}

int smtp_policy_sender(const struct conf *c, const struct smtp_path *p, struct smtp_policy_reply *r)
{
	char which = 0;
	if (!p->null && routing_char_refused(c, p, &which)) {
		set_reply(r, 553, "5.1.7",
		          which == '%' ? "Sender address with '%' refused"
		                       : "Sender address with '!' refused");
		return -1;
	}
	set_reply(r, 250, "2.1.0", "Sender OK");
	return 0;
}

/* Disabled: permanent until the admin acts (RFC 3463 5.2.1). */
static enum smtp_rcpt_verdict disabled_verdict(struct smtp_policy_reply *r)
{
	set_reply(r, 550, "5.2.1", "Mailbox disabled, not accepting messages");
	return SMTP_RCPT_REFUSED;
}

/* RFC 3463 2.2 / 5.2.2: a full mailbox; 452 (temporary) unless smtp_over_quota_reply = 552. */
static void over_quota_reply(const struct conf *c, struct smtp_policy_reply *r)
{
	if (c->smtp_over_quota_reply && strcmp(c->smtp_over_quota_reply, "552") == 0)
		set_reply(r, 552, "5.2.2", "Mailbox full");
	else
		set_reply(r, 452, "4.2.2", "Mailbox full, try again later");
}

/*
 * The reply for a local mailbox that was found; check_members (a post with its
 * sender in ans) refuses a non-member of a members-only list.
 */
static enum smtp_rcpt_verdict found_verdict(const struct conf *c, const struct lookup_answer *ans,
                                            int check_members, struct smtp_policy_reply *r)
{
	if (check_members && ans->kind == LOOKUP_KIND_LIST && ans->members_only &&
	    !ans->sender_member) {
		/* RFC 3463 3.8 (X.7.1): this sender is not authorized to post here. */
		set_reply(r, 550, "5.7.1", "Only list members may post to this list");
		return SMTP_RCPT_REFUSED;
	}
	if (ans->can_receive) {
		set_reply(r, 250, "2.1.5", "Recipient OK");
		return SMTP_RCPT_ACCEPT;
	}
	if (ans->over_quota) {
		/* Full until the owner makes room: MDaemon's default is to ask for later. */
		over_quota_reply(c, r);
		return SMTP_RCPT_REFUSED;
	}
	return disabled_verdict(r);
}

static enum smtp_rcpt_verdict unknown_verdict(struct smtp_policy_reply *r)
{
	set_reply(r, 550, "5.1.1", "No such user here");
	return SMTP_RCPT_UNKNOWN;
}

/* The directory could not answer: try later (DESIGN.md: three-valued lookups). */
static enum smtp_rcpt_verdict tempfail_verdict(struct smtp_policy_reply *r)
{
	set_reply(r, 451, "4.3.0", "Recipient lookup failed, try again later");
	return SMTP_RCPT_TEMPFAIL;
}

enum smtp_rcpt_verdict smtp_policy_mailbox(const struct conf *c, lookup_fn lookup, void *lookup_arg,
                                           const char *mailbox, size_t len,
                                           struct smtp_policy_reply *r)
{
	struct lookup_answer ans;
	memset(&ans, 0, sizeof ans);
	switch (lookup(lookup_arg, mailbox, len, &ans)) {
	case LOOKUP_FOUND: return found_verdict(c, &ans, 0, r);
	case LOOKUP_NOTFOUND: return unknown_verdict(r);
	case LOOKUP_TEMPFAIL:
	default: return tempfail_verdict(r);
	}
}

enum smtp_rcpt_verdict smtp_policy_rcpt_first(const struct conf *c, const struct smtp_path *p,
                                              struct smtp_policy_reply *r)
{
	char which = 0;
	if (p->null) {
		set_reply(r, 501, "5.1.3", "Null recipient <> not allowed");
		return SMTP_RCPT_REFUSED;
	}
	/* RFC 5321 4.5.1: <Postmaster> without a domain MUST be accepted. */
	if (p->postmaster) {
		set_reply(r, 250, "2.1.5", "Recipient OK");
		return SMTP_RCPT_ACCEPT;
	}
	if (routing_char_refused(c, p, &which)) {
		set_reply(r, 553, "5.1.3",
		          which == '%' ? "Recipient address with '%' refused"
		                       : "Recipient address with '!' refused");
		return SMTP_RCPT_REFUSED;
	}
	/* RFC 5321 4.5.1: postmaster at a local domain is always accepted, at once. */
	if (smtp_policy_is_local(c, &p->addr) &&
	    mailaddr_is_postmaster(p->addr.local, p->addr.local_len)) {
		set_reply(r, 250, "2.1.5", "Recipient OK");
		return SMTP_RCPT_ACCEPT;
	}
	/* '%', '!' and a quoted '@' are just characters of a local part from here. */
	return SMTP_RCPT_VERIFY;
}

enum smtp_rcpt_verdict smtp_policy_rcpt_answer(const struct conf *c, int trusted, int sharing_peer,
                                               const struct verify_answer *a,
                                               struct smtp_policy_reply *r)
{
	switch (a->status) {
	case VERIFY_LOCAL: return found_verdict(c, &a->local, !sharing_peer, r);
	case VERIFY_REMOTE: set_reply(r, 250, "2.1.5", "Recipient OK"); return SMTP_RCPT_ACCEPT;
	case VERIFY_REMOTE_DISABLED: return disabled_verdict(r);
	case VERIFY_NOTFOUND: return unknown_verdict(r);
	case VERIFY_TEMPFAIL:
		if (!a->servers_asked)
			return tempfail_verdict(r);
		/* RFC 3463 X.4.3: the directory (here: another server) did not answer. */
		set_reply(r, 451, "4.4.3", "Recipient verification failed, try again later");
		return SMTP_RCPT_TEMPFAIL;
	case VERIFY_FOREIGN:
	default:
		if (trusted) {
			set_reply(r, 250, "2.1.5", "Recipient OK (relay)");
			return SMTP_RCPT_ACCEPT_RELAY;
		}
		set_reply(r, 554, "5.7.1", "Relay access denied");
		return SMTP_RCPT_REFUSED;
	}
}
