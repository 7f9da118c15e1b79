/*
 * queue_file: the on-disk format of queue files (owned by the queue module; no
 * I/O policy here besides reading a whole file from a descriptor). Pure codec:
 * every input is untrusted bytes, and any deviation means "damaged".
 *
 * A message file (queue/msg/<id>) is:
 *
 *   "sharemail-queue 1\n"        magic and version line (18 octets)
 *   <data>                        the message octets, streamed as they arrive
 *   <records>                     the envelope, as records (below)
 *   END record                    type 'E', length 40: data length (u64 BE) and
 *                                 SHA-256 of every octet before the END record
 *
 * A record is: type (1 octet), length (u32 big-endian), value (length octets).
 * The data comes first so it can be written while it arrives without knowing
 * its length; the END record sits at a fixed distance from the end of the file
 * and says where the data stops and the records begin. Values are
 * length-prefixed, so CR, LF or any byte inside an envelope field is just a
 * value: it can never start a record.
 *
 * Envelope records (each at most once unless noted; unknown types = damaged):
 *   'F' reverse-path (required; may be empty)   'I' DSN ENVID
 *   'R' RET (1 octet: 1 FULL, 2 HDRS)           'B' BODY (1 octet: 1 7BIT, 2 8BITMIME)
 *   'H' HELO argument                           'C' client address
 *   'T' received_at (i64 BE)                    'S' trusted (1 octet: 0/1)
 *   'P' recipient (repeated, in order), whose value is records:
 *         'a' address (required)  'o' DSN ORCPT  'n' NOTIFY bits (u32 BE)
 * String values never contain NUL (the writer cannot produce one).
 *
 * A state file (queue/state/<id>) holds the recipients' delivery states:
 *
 *   "sharemail-state 2\n"  then one 'r' record per recipient, in envelope order,
 *   whose value is records 's' state (1 octet), 'A' attempts (u32 BE),
 *   'N' next_try (i64 BE), 'M' status text (optional), then one 'X' record per
 *   final mailbox of the recipient's expansion (none before its first delivery
 *   attempt; at most ENVELOPE_MAX_FINALS), in expansion order, whose value is
 *   records 'a' mailbox (required, not empty), 's' state, 'A' attempts, 'M'
 *   status (optional); then the END record with data length 0.
 *
 * Version 1 ("sharemail-state 1\n", written before final mailboxes existed) is
 * the same without 'X' records; it is still read (its recipients then have no
 * finals yet), never written. Code older than version 2 takes a version 2
 * file for damaged: downgrading re-delivers (never loses) the queued messages.
 *
 * Ownership: struct queue_buf memory belongs to the caller (queue_buf_free).
 */
#ifndef SHAREMAIL_QUEUE_QUEUE_FILE_H
#define SHAREMAIL_QUEUE_QUEUE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "queue/envelope.h"

#define QUEUE_FILE_MAGIC "sharemail-queue 1\n"
#define QUEUE_STATE_MAGIC "sharemail-state 2\n"
#define QUEUE_STATE_MAGIC_V1 "sharemail-state 1\n"
#define QUEUE_FILE_MAGIC_LEN 18
#define QUEUE_FILE_DIGEST_LEN 32
/* The END record: type, length, data length, digest. */
#define QUEUE_FILE_END_LEN (1 + 4 + 8 + QUEUE_FILE_DIGEST_LEN)
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

/* Appends the END record for data_len octets of data and the given digest. 0 or -1. */
int queue_file_encode_end(uint64_t data_len, const uint8_t digest[QUEUE_FILE_DIGEST_LEN],
                          struct queue_buf *out);

/*
 * Parses a whole message file held in memory. On success returns 0 with a new
 * envelope (recipients all RCPT_PENDING; the caller frees it; env may be NULL to
 * only validate) and the data's offset and length in the buffer. Returns -1 when
 * the file is damaged in any way (or out of memory).
 */
int queue_file_parse(const uint8_t *buf, size_t len, struct envelope **env, uint64_t *data_off,
                     uint64_t *data_len);

/*
 * Reads and fully verifies the message file open on fd (reading it with pread,
 * in bounded chunks; only the records are kept in memory). Same results as
 * queue_file_parse. errno is EIO for a damaged file.
 */
int queue_file_read(int fd, struct envelope **env, uint64_t *data_off, uint64_t *data_len);

/*
 * Checks only the magic line and the END record of the message file on fd (no
 * checksum): the cheap check before reading data of a file verified earlier.
 * Returns 0 with the data's offset and length, or -1.
 */
int queue_file_locate_data(int fd, uint64_t *data_off, uint64_t *data_len);

/*
 * Builds a whole state file (version 2) for env's recipients and their final
 * mailboxes into out (emptied first). 0 or -1.
 */
int queue_file_encode_state(const struct envelope *env, struct queue_buf *out);

/*
 * Validates a whole state file (version 1 or 2) in memory and applies it to
 * env's recipients, replacing their final mailboxes (all of them or none). Returns 0, or -1 when damaged, when its recipient
 * count differs from env's, or out of memory.
 */
int queue_file_apply_state(const uint8_t *buf, size_t len, struct envelope *env);

#endif
