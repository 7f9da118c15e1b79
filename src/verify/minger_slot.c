/*
 * minger_slot: see minger_slot.h. The datagram formats are draft-hathcock-minger-06
 * section 2.1 (query) and 3 (reply) with the sharemail extension
 * (../shared/minger-protocol.md); the checks are hostile-inputs.md "As a client".
 */
#include "verify/minger_slot.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "util/log.h"
#include "util/netaddr.h"
#include "util/timeutil.h"

/*
 * Anonymous queries carry this ignored -06 tag (section 2.1 tag-list) so the reply
 * "mailbox SP status" (2 octets longer than the mailbox) is never larger than the
 * query: a server with minger_strict_amplification drops larger replies.
 */
#define MS_PAD_TAG " pad=00"

static atomic_ullong stat_sent, stat_retransmits, stat_accepted, stat_wrong_source, stat_malformed,
        stat_wrong_mailbox, stat_bad_mac, stat_missing_mac, stat_oversize;

static struct log_limit ignored_limit = LOG_LIMIT_INIT(10, 10);

void minger_slot_stats_get(struct minger_client_stats *out)
{
	out->sent = atomic_load(&stat_sent);
	out->retransmits = atomic_load(&stat_retransmits);
	out->accepted = atomic_load(&stat_accepted);
	out->wrong_source = atomic_load(&stat_wrong_source);
	out->malformed = atomic_load(&stat_malformed);
	out->wrong_mailbox = atomic_load(&stat_wrong_mailbox);
	out->bad_mac = atomic_load(&stat_bad_mac);
	out->missing_mac = atomic_load(&stat_missing_mac);
	out->oversize = atomic_load(&stat_oversize);
}

static void note(atomic_ullong *counter, const char *why, const struct sockaddr *from)
{
	atomic_fetch_add(counter, 1);
	if (log_limit_allow(&ignored_limit)) {
		char a[80];
		netaddr_format(from, a, sizeof a);
		log_debug("minger client: ignored a datagram from %s: %s", a, why);
	}
}

void minger_slot_ignored(enum minger_slot_ignore why, const struct sockaddr *from)
{
	switch (why) {
	case MINGER_IGNORE_WRONG_SOURCE:
		note(&stat_wrong_source, "not from the server's address and port", from);
		break;
	case MINGER_IGNORE_MALFORMED: note(&stat_malformed, "malformed reply", from); break;
	case MINGER_IGNORE_OVERSIZE: note(&stat_oversize, "oversize", from); break;
	default:
		note(&stat_wrong_mailbox, "reply for a mailbox not asked (or no longer)", from);
		break;
	}
}

int minger_slot_init(struct minger_slot *s, const char *mailbox, size_t len)
{
	memset(s, 0, sizeof *s);
	/* Only printable ASCII goes on the wire: spaces only inside a quoted local part. */
	if (!mailbox || len == 0 || len > MINGER_DATAGRAM_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)mailbox[i];
		if (c < 0x20 || c > 0x7e)
			return -1;
	}
	memcpy(s->mailbox, mailbox, len);
	s->mailbox[len] = '\0';
	s->mailbox_len = len;
	return 0;
}

static int make_nonce(char out[MINGER_NONCE_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[MINGER_NONCE_HEX_LEN / 2];
	if (RAND_bytes(raw, (int)sizeof raw) != 1)
		return -1;
	for (size_t i = 0; i < sizeof raw; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[MINGER_NONCE_HEX_LEN] = '\0';
	return 0;
}

static int format_anonymous(struct minger_slot *s)
{
	int len = minger_query_format(s->dgram, sizeof s->dgram - (sizeof MS_PAD_TAG - 1),
	                              s->mailbox, s->mailbox_len, NULL, 0, 0, NULL);
	if (len < 0)
		return -1;
	memcpy(s->dgram + len, MS_PAD_TAG, sizeof MS_PAD_TAG);
	s->dgram_len = (size_t)len + sizeof MS_PAD_TAG - 1;
	return 0;
}

/*
 * Without the extension every attempt is the identical datagram (a -06 query is
 * idempotent). With it, each attempt gets a fresh ts and nonce: the server keeps
 * the nonces it has seen (replay protection), so the identical datagram resent
 * after a lost reply would be answered 2.
 */
static int format_attempt(struct minger_slot *s, const struct minger_slot_cfg *cfg)
{
	if (s->attempts > 0 && !cfg->ext)
		return 0;
	if (!cfg->secret)
		return format_anonymous(s);
	char *nonce = NULL;
	if (cfg->ext) {
		nonce = s->nonces[s->attempts];
		if (make_nonce(nonce) < 0)
			return -1;
	}
	int64_t now = time_wall_s();
	int len = minger_query_format(s->dgram, sizeof s->dgram, s->mailbox, s->mailbox_len,
	                              cfg->secret, strlen(cfg->secret), now > 0 ? (uint64_t)now : 0,
	                              nonce);
	if (len < 0 || (size_t)len > MINGER_DATAGRAM_MAX)
		return -1;
	s->dgram_len = (size_t)len;
	return 0;
}

int minger_slot_next(struct minger_slot *s, const struct minger_slot_cfg *cfg)
{
	if (s->attempts > MINGER_CLIENT_RETRIES_MAX || format_attempt(s, cfg) < 0)
		return -1;
	if (s->attempts > 0)
		atomic_fetch_add(&stat_retransmits, 1);
	atomic_fetch_add(&stat_sent, 1);
	s->attempts++;
	return 0;
}

int minger_slot_parse(const void *buf, size_t len, const struct sockaddr *from,
                      struct minger_reply *rep)
{
	if (len > MINGER_DATAGRAM_MAX) {
		minger_slot_ignored(MINGER_IGNORE_OVERSIZE, from);
		return -1;
	}
	if (minger_reply_parse(buf, len, rep) < 0) {
		minger_slot_ignored(MINGER_IGNORE_MALFORMED, from);
		return -1;
	}
	return 0;
}

enum minger_slot_match minger_slot_match(const struct minger_slot *s,
                                         const struct minger_slot_cfg *cfg,
                                         const struct minger_reply *rep,
                                         const struct sockaddr *from)
{
	if (s->mailbox_len != rep->mailbox_len ||
	    memcmp(s->mailbox, rep->mailbox, rep->mailbox_len) != 0)
		return MINGER_SLOT_OTHER;
	if (cfg->ext && rep->has_mac) {
		int ok = 0;
		for (int a = 0; a < s->attempts && !ok; a++)
			ok = minger_reply_mac_matches(rep, cfg->secret, strlen(cfg->secret),
			                              s->nonces[a]);
		/* A bad mac is a forgery or a reply to someone else: refused even when not required. */
		if (!ok) {
			note(&stat_bad_mac, "reply mac does not verify", from);
			return MINGER_SLOT_REFUSED;
		}
	} else if (cfg->ext && cfg->require_reply_mac) {
		note(&stat_missing_mac, "reply without the required mac", from);
		return MINGER_SLOT_REFUSED;
	}
	/* Without a nonce sent a reply mac cannot be checked (and is not expected). */
	atomic_fetch_add(&stat_accepted, 1);
	return MINGER_SLOT_ACCEPT;
}

void minger_slot_wipe(struct minger_slot *s)
{
	memset(s, 0, sizeof *s);
}

int minger_slot_cfg_valid(const struct minger_slot_cfg *cfg, char *err, size_t errlen)
{
	if (cfg->secret && !minger_secret_valid(cfg->secret, strlen(cfg->secret))) {
		if (err && errlen)
			snprintf(err, errlen, "invalid shared secret");
		return 0;
	}
	if (cfg->require_reply_mac && (!cfg->secret || !cfg->ext)) {
		if (err && errlen)
			snprintf(err, errlen, "a reply mac needs a secret and the extension");
		return 0;
	}
	return 1;
}
