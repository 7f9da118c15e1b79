/*
 * maildir: writing one message into a Maildir (https://cr.yp.to/proto/maildir.html):
 * create the file under tmp/ with a unique name, write, fsync, link it into new/,
 * remove the tmp/ name, make the new name durable. A reader never sees a partial
 * message. Readers: store/mailbox.h (the POP3 server) and Dovecot (IMAP).
 *
 * Names: tmp/<unique>, then new/<unique>,S=<size>,W=<wire> (Dovecot's Maildir
 * fields, read by Dovecot and by store/mailbox): S= is the file's size, W= its
 * size with CRLF line ends (every LF not preceded by CR counted twice, and the
 * terminator of an unterminated last line added), the size RFC 1939 LIST reports,
 * so a reader needs neither a stat nor a scan.
 *
 * Mailbox paths: <state_dir>/mail/<domain>/<user>/Maildir, where <domain> and
 * <user> are the two halves of the account key (lower case), each mapped to a
 * safe file name by maildir_name_encode(): octets in [A-Za-z0-9._+-] are kept,
 * every other octet becomes '%' and two upper-case hex digits ("a b" ->
 * "a%20b", '"' -> "%22"). '%' itself is encoded, so the mapping is one-to-one
 * (collision-free). Names that are empty, "." or "..", or that contain '/' or
 * NUL, are refused rather than mapped.
 *
 * Line ends: the queue holds messages with CRLF (the SMTP form); Maildir readers
 * expect the local convention, LF, as qmail, Postfix and Dovecot's LDA write it.
 * maildir_write() turns every CRLF into LF (the queue holds no bare CR or LF).
 *
 * Ownership: a struct maildir_file is the caller's (stack); maildir_commit or
 * maildir_abort releases what maildir_open took. Thread-safe (the unique-name
 * counter is atomic).
 */
#ifndef SHAREMAIL_STORE_MAILDIR_H
#define SHAREMAIL_STORE_MAILDIR_H

#include <stddef.h>
#include <stdint.h>

#define MAILDIR_PATH_MAX 4096
#define MAILDIR_NAME_MAX 256
#define MAILDIR_SIZES_MAX 48 /* ",S=" and ",W=" with 20 digits each, and the NUL */

struct maildir_file {
	int fd; /* open for writing while the message is being written */
	char dir[MAILDIR_PATH_MAX]; /* the Maildir (without a trailing '/') */
	char name[MAILDIR_NAME_MAX]; /* the unique file name (the tmp/ name) */
	char new_name[MAILDIR_NAME_MAX]; /* after maildir_commit: the name in new/ */
	int pending_cr; /* the last octet written was a CR not yet known to end a line */
	uint64_t size; /* octets written to the file */
	uint64_t lone_lfs; /* LFs written not preceded by CR (maildir_wire_size) */
	int last; /* the last octet written, -1 before any */
	/* Optional, set after maildir_open: called before each fsync of maildir_commit
	 * so that it can wait for another commit to carry the changes (queue_ride). */
	int (*ride)(void *arg);
	void *ride_arg;
};

/*
 * Encodes name[0..len) as one path component (see above) into out. Returns the
 * length, or -1 if the name is refused or out is too small.
 */
int maildir_name_encode(const char *name, size_t len, char *out, size_t outsz);

/*
 * Builds "<root>/<domain>/<user>/Maildir" for the account key "user@domain" (the
 * last '@' splits it). Returns 0, or -1 if a part is refused or the path is too long.
 */
int maildir_path(const char *root, const char *key, char *out, size_t outsz);

/*
 * Formats a unique file name "time.M<usec>P<pid>Q<counter>.<host>" (the
 * specification's modern form); in host, '/' becomes "\057" and ':' "\072".
 * Returns the length or -1 if outsz is too small.
 */
int maildir_unique_name(int64_t sec, long usec, long pid, unsigned long counter, const char *host,
                        char *out, size_t outsz);

/*
 * Formats the new/ name "<unique>,S=<size>,W=<wire>". Returns the length or -1 if
 * outsz is too small.
 */
int maildir_sized_name(const char *unique, uint64_t size, uint64_t wire, char *out, size_t outsz);

/*
 * The wire size (W=) of a file of size octets whose last octet is last (-1 when
 * empty), given lone_lfs, the count of its LFs not preceded by CR: each such LF
 * counts 2, and an unterminated last line gets its terminator (CR LF, or LF after
 * a final CR).
 */
uint64_t maildir_wire_size(uint64_t size, uint64_t lone_lfs, int last);

/*
 * Creates the Maildir (and its parents, mode 0700) if needed, then creates a new
 * file under tmp/ (mode 0600, exclusive). Returns 0 with f->fd open, or -1 with
 * errno set.
 */
int maildir_open(const char *dir, const char *host, struct maildir_file *f);

/* Writes data to the open file, CRLF turned into LF. Returns 0 or -1 (errno). */
int maildir_write(struct maildir_file *f, const void *data, size_t len);

/*
 * fsyncs the file, links it into new/ as f->new_name (the sized name), unlinks the tmp/ name, makes
 * the new name durable (fsync of the file again on ext4, of new/ elsewhere) and
 * closes the file. With f->ride set, the data's write-back is started first and
 * ride(ride_arg) is called before each fsync of the file. Returns 0 once the message is durable in new/, or -1 (errno;
 * the tmp/ file, or the new/ name whose fsync failed, is removed).
 */
int maildir_commit(struct maildir_file *f);

/* Closes and removes the tmp/ file (after a failure). */
void maildir_abort(struct maildir_file *f);

#endif
