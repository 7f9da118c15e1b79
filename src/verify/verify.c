/*
 * verify: the recipient and sender verdicts (verify.h). This first version
 * answers from the local mailbox index only (Domain Sharing, gateway and
 * forward domains are not wired yet): every answer is known at once, so
 * verify_rcpt() and verify_sender() always return 0.
 */
#include "verify/verify.h"

#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "proto/mailaddr.h"

struct verify {
	const struct conf *c;
	struct mailbox_index *idx;
};

struct verify *verify_new(struct event_base *base, const struct conf *c, struct mailbox_index *idx,
                          char *err, size_t errlen)
{
	(void)base;
	struct verify *v = calloc(1, sizeof *v);
	if (v == NULL) {
		if (errlen)
			strncpy(err, "out of memory", errlen - 1), err[errlen - 1] = '\0';
		return NULL;
	}
	v->c = c;
	v->idx = idx;
	return v;
}

void verify_free(struct verify *v)
{
	free(v);
}

/* 1 when mailbox[0..len) is a mailbox of one of local_domains (never an address literal). */
static int is_local(const struct verify *v, const char *mailbox, size_t len)
{
	struct mailaddr a;
	if (mailaddr_parse_exact(mailbox, len, &a) != MAILADDR_OK || a.literal || a.domain_len == 0)
		return 0;
	return conf_is_local_domain(v->c, a.domain, a.domain_len);
}

static void answer_local(struct verify *v, const char *mailbox, size_t len, const char *sender,
                         size_t sender_len, struct verify_answer *out)
{
	memset(out, 0, sizeof *out);
	if (!is_local(v, mailbox, len)) {
		out->status = VERIFY_FOREIGN;
		return;
	}
	out->local.sender = sender;
	out->local.sender_len = sender_len;
	switch (mailbox_lookup(v->idx, mailbox, len, &out->local)) {
	case LOOKUP_FOUND: out->status = VERIFY_LOCAL; break;
	case LOOKUP_NOTFOUND: out->status = VERIFY_NOTFOUND; break;
	default:
		out->status = VERIFY_TEMPFAIL;
		strcpy(out->reason, "the directory could not answer");
		break;
	}
}

int verify_rcpt(struct verify *v, const char *mailbox, size_t len, const char *sender,
                size_t sender_len, struct verify_answer *out, verify_cb cb, void *arg,
                struct verify_req **req)
{
	(void)cb, (void)arg, (void)req;
	answer_local(v, mailbox, len, sender, sender_len, out);
	return 0;
}

int verify_sender(struct verify *v, const char *mailbox, size_t len, struct verify_answer *out,
                  verify_cb cb, void *arg, struct verify_req **req)
{
	(void)cb, (void)arg, (void)req;
	answer_local(v, mailbox, len, NULL, 0, out);
	return 0;
}

void verify_cancel(struct verify_req *req)
{
	(void)req;
}

int verify_client_is_peer(const struct verify *v, const char *client_addr)
{
	(void)v, (void)client_addr;
	return 0;
}
