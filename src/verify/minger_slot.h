/*
 * minger_slot: one outstanding Minger query and the checks its replies must
 * pass, shared by the blocking client (minger_client.c, the CLI) and the
 * event-loop client (minger_evclient.c, the daemon), so both send the same
 * datagrams and accept exactly the same replies:
 *   - the reply comes from the queried server's address AND port (checked by the
 *     caller with netaddr_equal, which knows which server a slot asked);
 *   - it is at most MINGER_DATAGRAM_MAX octets and parses (minger_reply_parse);
 *   - it echoes the queried mailbox byte for byte;
 *   - with the extension, a reply mac verifies with the nonce of one of the
 *     slot's attempts (each attempt has a fresh ts and nonce: the server refuses
 *     a nonce it has seen, see minger_client.h); with require_reply_mac, a reply
 *     without a mac is refused.
 * The process-wide counters of minger_client.h (minger_client_stats_get) are
 * kept here.
 *
 * Ownership: a slot is a plain struct owned by its client; the secret in a cfg
 * is borrowed. Slots hold digests and macs derived from the secret: clients wipe
 * them when done (minger_slot_wipe).
 */
#ifndef SHAREMAIL_VERIFY_MINGER_SLOT_H
#define SHAREMAIL_VERIFY_MINGER_SLOT_H

#include <stddef.h>
#include <sys/socket.h>

#include "proto/minger_msg.h"
#include "verify/minger_client.h"

/* How a client asks one server. */
struct minger_slot_cfg {
	const char *secret; /* NULL: anonymous (queries padded, see minger_client.h) */
	int ext; /* with a secret: carry the ts/nonce/mac tags */
	int require_reply_mac; /* with ext: refuse replies without a valid mac */
};

struct minger_slot {
	char mailbox[MINGER_DATAGRAM_MAX + 1];
	size_t mailbox_len;
	int attempts; /* datagrams built so far */
	char dgram[MINGER_DATAGRAM_MAX + 1];
	size_t dgram_len;
	char nonces[MINGER_CLIENT_RETRIES_MAX + 1][MINGER_NONCE_HEX_LEN + 1];
};

/* What a reply is to a slot. */
enum minger_slot_match {
	MINGER_SLOT_OTHER = 0, /* another mailbox: not this slot's reply (not counted) */
	MINGER_SLOT_ACCEPT, /* the answer (counted as accepted) */
	MINGER_SLOT_REFUSED, /* this mailbox, but the mac is missing or bad (counted) */
};

/* Why a datagram was ignored, for the counters. */
enum minger_slot_ignore {
	MINGER_IGNORE_WRONG_SOURCE = 0,
	MINGER_IGNORE_MALFORMED,
	MINGER_IGNORE_WRONG_MAILBOX,
	MINGER_IGNORE_OVERSIZE,
};

/*
 * Starts a slot for mailbox[0..len): copies it, no attempt yet. Returns 0, or -1
 * when the mailbox cannot be sent (empty, longer than a datagram, or octets
 * outside printable ASCII).
 */
int minger_slot_init(struct minger_slot *s, const char *mailbox, size_t len);

/*
 * Builds the datagram of the slot's next attempt into s->dgram (fresh ts and
 * nonce with the extension; the identical datagram again without) and counts it
 * as sent (a retransmission after the first). Returns 0, or -1 when it cannot be
 * built (no randomness, or too long: the query has failed) or when attempts would
 * exceed MINGER_CLIENT_RETRIES_MAX + 1.
 */
int minger_slot_next(struct minger_slot *s, const struct minger_slot_cfg *cfg);

/*
 * Checks a received datagram's size and syntax, filling *rep (a view into buf).
 * Returns 0, or -1 after counting it as oversize or malformed.
 */
int minger_slot_parse(const void *buf, size_t len, const struct sockaddr *from,
                      struct minger_reply *rep);

/*
 * Matches a parsed reply (already known to come from the slot's server) against
 * a slot. See enum minger_slot_match; refusals are counted.
 */
enum minger_slot_match minger_slot_match(const struct minger_slot *s,
                                         const struct minger_slot_cfg *cfg,
                                         const struct minger_reply *rep,
                                         const struct sockaddr *from);

/* Counts a datagram ignored for why (and logs it, rate-limited, at debug level). */
void minger_slot_ignored(enum minger_slot_ignore why, const struct sockaddr *from);

/* Clears the slot (its datagram and nonces). */
void minger_slot_wipe(struct minger_slot *s);

/* 1 when cfg is usable (a valid secret if any; a mac required only with ext), else 0 with err. */
int minger_slot_cfg_valid(const struct minger_slot_cfg *cfg, char *err, size_t errlen);

/* The counters (minger_client_stats_get is this). */
void minger_slot_stats_get(struct minger_client_stats *out);

#endif
