/*
 * mailbox: reading one Maildir (https://cr.yp.to/proto/maildir.html) for the POP3
 * server (RFC 1939): the listing of new/ and cur/, each message's unique id (UIDL)
 * and size on the wire, a CRLF stream of one message (RETR, TOP), deletion marks
 * and their commit (the UPDATE state).
 *
 * File names: messages this server writes are named "<unique>,S=<size>,W=<wire>"
 * in new/ (store/maildir.h); a reader that moves them to cur/ appends ":2,<flags>"
 * (Dovecot does). S= is the size of the file (LF line ends), W= the size with
 * CRLF line ends, which is what RFC 1939 LIST and STAT count (Dovecot's "virtual
 * size", the same fields it writes). A listing costs one readdir per folder and no
 * stat when names carry W=; a file without W= (written by another program) is read
 * once, at mailbox_open, to measure it.
 *
 * Order: messages are listed in delivery order (by the delivery time their names
 * start with, mailbox_name_order, then by name), so message numbers are stable
 * while the mailbox does not change. UIDs (RFC 1939 section 7: 1-70 octets in
 * 0x21-0x7E) are the base name (before the first ',' or ':'), stable across
 * sessions and across the new/ -> cur/ move; a base name that does not fit is
 * replaced by "~" and the SHA-256 of the base name in hex (65 octets).
 *
 * Line ends on the wire: every LF not preceded by CR becomes CRLF, and a last
 * line without LF is terminated (CR LF, or LF after a final CR); nothing else
 * changes (no dot-stuffing: that is the POP3 server's, proto/dotstuff.h). The
 * wire size is exactly the number of octets the reader yields for the whole
 * message. The reader always yields the whole message: TOP's line limit is the
 * POP3 session's (it counts the lines it sends).
 *
 * A file that changed since the listing: the reader reads to the end of the
 * file, not to the listed W= size. A Maildir file is never rewritten in place,
 * so this only happens when another program breaks that rule; then RETR must
 * still send a whole message (RFC 1939 5: the multi-line response is "the
 * message"; the size LIST reports was computed when the maildrop was opened,
 * section 11, and is not the response's framing: its final "." is). A
 * reader that stopped at the listed size would cut a grown message in the
 * middle of a line and send it as if it were whole; one that padded a shrunk
 * one would invent octets. Stopping at the size would save one read(2) per
 * message (the one that returns 0), not worth a wrong message.
 *
 * Ownership: a struct mailbox is one session's snapshot, the caller's until
 * mailbox_free; the struct mailbox_msg entries and their strings belong to it.
 * A struct mailbox_reader is the caller's until mailbox_reader_free and does not
 * need its mailbox to stay open. Not thread-safe per object (one session, one
 * thread); distinct objects are independent. Locking against a second POP3
 * session on the same mailbox ([IN-USE]) is the POP3 server's.
 */
#ifndef SHAREMAIL_STORE_MAILBOX_H
#define SHAREMAIL_STORE_MAILBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MAILBOX_UID_MAX 70 /* RFC 1939 section 7, octets (a buffer needs one more) */

struct mailbox;
struct mailbox_reader;

struct mailbox_msg {
	const char *name; /* relative to the Maildir: "new/<file>" or "cur/<file>" */
	const char *uid; /* UIDL, 1..70 octets 0x21-0x7E, unique in the mailbox */
	uint64_t wire_size; /* octets with CRLF line ends (LIST, STAT) */
	int deleted; /* marked by mailbox_mark_deleted, cleared by mailbox_reset */
};

/*
 * Lists the Maildir dir (no trailing '/'): new/ and cur/, entries starting with
 * '.' ignored. A missing Maildir, or a missing new/ or cur/, is an empty
 * mailbox. Files without W= in their names are measured by reading them (one
 * that vanished meanwhile is left out). Returns 0 with *out set, or -1 with
 * errno (a folder that exists but cannot be read, out of memory).
 */
int mailbox_open(const char *dir, struct mailbox **out);

/* Releases the listing (marks not committed are forgotten). NULL is a no-op. */
void mailbox_free(struct mailbox *mb);

/* The number of messages listed, deleted ones included (POP3 numbers are 1..count). */
size_t mailbox_count(const struct mailbox *mb);

/* The message at index i (0-based: POP3 message n is index n-1), or NULL when out of range. */
const struct mailbox_msg *mailbox_get(const struct mailbox *mb, size_t i);

/* STAT (RFC 1939 5): messages not marked deleted and the sum of their wire sizes. */
void mailbox_stat(const struct mailbox *mb, size_t *count, uint64_t *octets);

/*
 * DELE: marks message i deleted. Returns 0, or -1 when i is out of range or the
 * message is already marked (RFC 1939: "-ERR message already deleted").
 */
int mailbox_mark_deleted(struct mailbox *mb, size_t i);

/* RSET: clears every mark. */
void mailbox_reset(struct mailbox *mb);

/*
 * UPDATE (RFC 1939 6): unlinks every marked file, then fsyncs the folders that
 * lost a file, so the removal survives a crash. A file another program moved from
 * new/ to cur/ (same base name) is found and removed; a file already gone counts
 * as removed. Marks are cleared. Returns the number of messages that could not be
 * removed (0 on success; an fsync failure counts every file of that folder).
 */
size_t mailbox_commit(struct mailbox *mb);

/*
 * Opens message i for reading as CRLF lines, the whole message (RETR; TOP cuts
 * what it reads). A message moved to cur/ since the listing is found by its base
 * name. Returns 0 with *out set, or -1 with errno (ENOENT: the message is gone;
 * EINVAL: i out of range).
 */
int mailbox_reader_open(const struct mailbox *mb, size_t i, struct mailbox_reader **out);

/*
 * Writes the next octets of the message into buf[0..len) (len >= 2), never more
 * than len, reading the file in bounded chunks (a message is never loaded whole).
 * Returns the octets written, 0 at the end of the message, or -1 with errno on a
 * read error.
 */
ssize_t mailbox_reader_read(struct mailbox_reader *r, char *buf, size_t len);

/* Closes the file. NULL is a no-op. */
void mailbox_reader_free(struct mailbox_reader *r);

/* ---- Pure helpers (no I/O), exported for the unit tests and the fuzz target ---- */

/*
 * Reads the ",S=<n>" and ",W=<n>" fields of a Maildir file name (in any order,
 * among other ",X=..." fields, before the ":2," info part; decimal, no sign, at
 * most 19 digits). Each found field is stored; a missing or malformed one leaves
 * its output untouched. Returns a bit set: 1 if S= was found, 2 if W= was.
 */
int mailbox_name_sizes(const char *name, uint64_t *size, uint64_t *wire);

/*
 * The sort key of a file name: *sec its leading decimal number (the delivery
 * time), *usec the number after ".M" that follows it (the modern unique names'
 * microseconds), 0 when absent.
 */
void mailbox_name_order(const char *name, uint64_t *sec, uint64_t *usec);

/*
 * Writes the UIDL of the file name (see above) into out (outsz >= MAILBOX_UID_MAX
 * + 1). Returns its length (1..70), or -1 when outsz is too small.
 */
int mailbox_uid(const char *name, char *out, size_t outsz);

/*
 * The CRLF conversion as a state machine, streamed in chunks of any size: the
 * reader feeds it the file's octets, tests feed it strings.
 */
struct mailbox_crlf {
	int at_bol; /* the next octet opens a line */
	int last_cr; /* the last octet emitted was a CR */
};

/* Starts a message. */
void mailbox_crlf_init(struct mailbox_crlf *c);

/*
 * Converts in[0..len) into out[0..outsz): consumes an input octet only when all
 * it expands to fits (at most 2 octets). Returns the input octets consumed and
 * stores the octets written in *out_len.
 */
size_t mailbox_crlf_feed(struct mailbox_crlf *c, const char *in, size_t len, char *out,
                         size_t outsz, size_t *out_len);

/*
 * At the end of the input: writes the terminator of an unterminated last line
 * (CR LF, or LF after a CR) into out (outsz >= 2). Returns its length (0..2).
 */
size_t mailbox_crlf_end(struct mailbox_crlf *c, char *out, size_t outsz);

#endif
