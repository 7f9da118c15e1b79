/*
 * queue_file: the on-disk format of queue files (owned by the queue module; no
 * I/O policy here besides reading a file from a descriptor). Pure codec: every
 * input is untrusted bytes, and any deviation means "damaged".
 *
 * A message file (queue/msg/<id>), version 2, is:
 *
 *   "sharemail-queue 2\n"        magic and version line (18 octets)
 *   <data>                        the message octets, streamed as they arrive
 *   <records>                     the envelope, as records (below)
 *   END record                    type 'E', length 72: data length (u64 BE),
 *                                 D1 = SHA-256(magic, data) and
 *                                 D2 = SHA-256(D1, data length, records)
 *
 * A record is: type (1 octet), length (u32 big-endian), value (length octets).
 * The data comes first so it can be written while it arrives without knowing
 * its length; the END record sits at a fixed distance from the end of the file
 * and says where the data stops and the records begin. Values are
 * length-prefixed, so CR, LF or any byte inside an envelope field is just a
 * value: it can never start a record. D1 covers the data and D2 covers D1, the
 * data length and the envelope, so every octet is covered, and the envelope can
 * be verified alone, reading only its records and the END record (O(envelope),
 * never O(message)): queue_file_read_meta(). A file without a valid END record
 * (one cut short by a crash before it was acknowledged) is damaged.
 *
 * Envelope records (each at most once unless noted; unknown types = damaged):
 *   'F' reverse-path (required; may be empty)   'I' DSN ENVID
 *   'R' RET (1 octet: 1 FULL, 2 HDRS)           'B' BODY (1 octet: 1 7BIT, 2 8BITMIME)
 *   'H' HELO argument                           'C' client address
 *   'T' received_at (i64 BE)                    'S' trusted (1 octet: 0/1)
 *   'P' recipient (repeated, in order), whose value is records:
 *         'a' address (required)  'o' DSN ORCPT  'n' NOTIFY bits (u32 BE)
 *         'D' route chosen at receipt (1-255 octets; a Domain Sharing peer's
 *             "[HOST]:PORT"), optional; the state file's 'D', once written, wins
 * String values never contain NUL (the writer cannot produce one).
 *
 * Version 1 ("sharemail-queue 1\n", before queue v2) has the same records and
 * an END record of length 40: data length and one SHA-256 of every octet before
 * the END record. It is still read (a queue at upgrade is delivered), never
 * written; its envelope can only be verified with its data (O(message)).
 *
 * A state file (queue/state/<id>) holds the recipients' delivery states; it is
 * small and replaced whole, so reading or updating a recipient's state costs
 * O(state), never O(message):
 *
 *   "sharemail-state 3\n"  then one 'r' record per recipient, in envelope order,
 *   whose value is records
 *     's' state (1 octet)  'A' attempts (u32 BE)  'N' next_try (i64 BE)   required
 *     'c' last reply code (u16 BE, 200-599)  'e' enhanced code ("4.2.2", only
 *     with 'c')  't' text  (the status, structured: envelope_reply_split())
 *     'D' route: the destination key (1-255 octets)
 *     'W' delay notice sent (1 octet, always 1; written only when set): the
 *         RFC 3464 "delayed" notice went to the sender once, never again
 *   then one 'X' record per final mailbox of the recipient's expansion (none
 *   before its first delivery attempt; at most ENVELOPE_MAX_FINALS), in
 *   expansion order, whose value is records 'a' mailbox (required, not empty),
 *   's', 'A' (required), 'c', 'e', 't', 'D' (optional, as above); then the END
 *   record of length 40 with data length 0 and SHA-256 of every octet before it.
 *
 * Versions 1 and 2 ("sharemail-state 1\n" without 'X' records, "sharemail-state
 * 2\n" with them) hold the status as one text record 'M' and no 'c', 'e', 't',
 * 'D'; they are still read, never written. Older code takes a newer file for
 * damaged: a newer state file makes it re-deliver (never lose) the message, but
 * a version 2 message file is quarantined by code before queue v2 (kept in
 * quarantine/, not delivered): downgrading needs an empty queue.
 *
 * Ownership: struct queue_buf memory belongs to the caller (queue_buf_free).
 */
#ifndef SHAREMAIL_QUEUE_QUEUE_FILE_H
#define SHAREMAIL_QUEUE_QUEUE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "queue/envelope.h"

#define QUEUE_FILE_MAGIC "sharemail-queue 2\n"
#define QUEUE_FILE_MAGIC_V1 "sharemail-queue 1\n"
#define QUEUE_STATE_MAGIC "sharemail-state 3\n"
#define QUEUE_STATE_MAGIC_V2 "sharemail-state 2\n"
#define QUEUE_STATE_MAGIC_V1 "sharemail-state 1\n"
#define QUEUE_FILE_MAGIC_LEN 18
#define QUEUE_FILE_DIGEST_LEN 32
/* The END record of a message file: type, length, data length, D1, D2. */
#define QUEUE_FILE_END_LEN (1 + 4 + 8 + 2 * QUEUE_FILE_DIGEST_LEN)
/* The END record of a state file and of a version 1 message file: one digest. */
#define QUEUE_FILE_END_LEN_V1 (1 + 4 + 8 + QUEUE_FILE_DIGEST_LEN)
/* Largest records section (envelope or states) accepted or written. */
#define QUEUE_FILE_META_MAX (16u << 20)

/* A growable byte buffer bounded by QUEUE_FILE_META_MAX plus the END record. */
struct queue_buf {
	uint8_t *p;
	size_t len, cap;
};

/* Frees the buffer's memory and empties it. */
void queue_buf_free(struct queue_buf *b);

/* Appends n octets. Returns 0, or -1 (out of memory or over the bound). */
int queue_buf_add(struct queue_buf *b, const void *data, size_t n);

/*
 * Appends the envelope's records (not the recipients' states). Returns 0, or -1
 * when out of memory or the records would exceed QUEUE_FILE_META_MAX.
 */
int queue_file_encode_envelope(const struct envelope *env, struct queue_buf *out);

/*
 * Appends a message file's END record for data_len octets of data whose D1
 * (SHA-256 of the magic line and the data) is d1, over the records recs[0, rlen)
 * that precede it (D2 is computed here). 0 or -1.
 */
int queue_file_encode_end(uint64_t data_len, const uint8_t d1[QUEUE_FILE_DIGEST_LEN],
                          const uint8_t *recs, size_t rlen, struct queue_buf *out);

/*
 * Appends a one-digest END record (state files; version 1 message files, for
 * tests): data_len and the digest of every octet before it. 0 or -1.
 */
int queue_file_encode_end_v1(uint64_t data_len, const uint8_t digest[QUEUE_FILE_DIGEST_LEN],
                             struct queue_buf *out);

/*
 * Parses a whole message file (version 1 or 2) held in memory, verifying every
 * digest. On success returns 0 with a new envelope (recipients all
 * RCPT_PENDING; the caller frees it; env may be NULL to only validate) and the
 * data's offset and length in the buffer. Returns -1 when the file is damaged
 * in any way (or out of memory).
 */
int queue_file_parse(const uint8_t *buf, size_t len, struct envelope **env, uint64_t *data_off,
                     uint64_t *data_len);

/*
 * Decodes envelope records recs[0, len) as queue_file_encode_envelope wrote
 * them (no END record, no digest: records this process has just encoded and
 * written, decoded again so the envelope is exactly what the file holds).
 * Returns 0 with a new envelope (recipients RCPT_PENDING; the caller frees it),
 * or -1 when they do not decode (or out of memory).
 */
int queue_file_decode_envelope(const uint8_t *recs, size_t len, struct envelope **env);

/*
 * Reads and fully verifies the message file open on fd (a small file in one
 * pread, a big one in bounded chunks; only the records are kept in memory).
 * Same results as queue_file_parse; *version (may be NULL) is 1 or 2. errno is
 * EIO for a damaged file.
 */
int queue_file_read(int fd, struct envelope **env, uint64_t *data_off, uint64_t *data_len,
                    int *version);

/*
 * Reads and verifies only the envelope of the message file on fd: for version
 * 2, the magic line, the END record and the records (D2), a cost that does not
 * grow with the message; a version 1 file is read whole (queue_file_read).
 * Same results as queue_file_read.
 */
int queue_file_read_meta(int fd, struct envelope **env, uint64_t *data_off, uint64_t *data_len,
                         int *version);

/*
 * Checks only the magic line and the END record of the message file on fd (no
 * digest): the cheap check before reading data of a file verified earlier.
 * Returns 0 with the data's offset and length, or -1.
 */
int queue_file_locate_data(int fd, uint64_t *data_off, uint64_t *data_len);

/*
 * Builds a whole state file (version 3) for env's recipients and their final
 * mailboxes into out (emptied first). 0, or -1 when out of memory, over
 * QUEUE_FILE_META_MAX, or a route is longer than ENVELOPE_ROUTE_MAX.
 */
int queue_file_encode_state(const struct envelope *env, struct queue_buf *out);

/*
 * Validates a whole state file (version 1, 2 or 3) in memory and applies it to
 * env's recipients, replacing their states, statuses, routes and final
 * mailboxes (all of them or none). Returns 0, or -1 when damaged, when its
 * recipient count differs from env's, or out of memory.
 */
int queue_file_apply_state(const uint8_t *buf, size_t len, struct envelope *env);

#endif
