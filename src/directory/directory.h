/*
 * directory: the mailbox directory in SQLite (WAL mode): accounts, aliases and
 * mailing lists of the local domains. The file is <state_dir>/directory.db. Every change is also
 * recorded in a change log (by SQL triggers), so a reader that keeps an in-memory
 * index (verify/mailbox_index) can apply changes made by other processes, such as
 * the `sharemail` tool, without a full reload.
 *
 * Addresses are stored by their lookup key (mailaddr_key: lower case). Which
 * domains are local is the configuration's business (local_domains); callers check
 * it before adding.
 *
 * Ownership: a struct directory is one SQLite connection; use it from one thread
 * at a time. Strings handed to callbacks live only during the callback.
 */
#ifndef SHAREMAIL_DIRECTORY_DIRECTORY_H
#define SHAREMAIL_DIRECTORY_DIRECTORY_H

#include <stddef.h>
#include <stdint.h>

#include "proto/mailaddr.h"

enum directory_result {
	DIRECTORY_OK = 0,
	DIRECTORY_NOTFOUND,
	DIRECTORY_EXISTS, /* address already used by an account, alias or list (or a member) */
	DIRECTORY_BAD_ADDRESS,
	DIRECTORY_LOOP, /* alias (or list) would point to itself */
	DIRECTORY_TEMPFAIL, /* busy/locked: try later */
	DIRECTORY_ERROR, /* I/O error, corrupt file */
};

enum account_state {
	ACCOUNT_ACTIVE = 0,
	ACCOUNT_DISABLED = 1, /* exists, cannot receive */
	ACCOUNT_OVER_QUOTA = 2, /* exists, cannot receive */
};

struct directory;

/*
 * Opens (creating if needed, with the schema) the directory database at `path`.
 * read_only opens without creating. Sets WAL mode and a busy timeout. Returns NULL
 * with a message in err on failure.
 */
struct directory *directory_open(const char *path, int read_only, char *err, size_t errlen);

/* Closes the connection (NULL is a no-op). */
void directory_close(struct directory *d);

/* Last SQLite error message of this connection, for logs. */
const char *directory_errmsg(struct directory *d);

/*
 * Adds an account. `address` must be a valid mailbox (it is stored by its key).
 * password_hash is a crypt(3) string or NULL (no password: cannot log in).
 * Fails with EXISTS if an account or alias has that address.
 */
enum directory_result directory_account_add(struct directory *d, const char *address,
                                            const char *password_hash, enum account_state state);

/* Deletes an account; NOTFOUND if there is none. */
enum directory_result directory_account_del(struct directory *d, const char *address);

/* Sets an account's state; NOTFOUND if there is none. */
enum directory_result directory_account_set_state(struct directory *d, const char *address,
                                                  enum account_state state);

/* Sets an account's password hash (NULL clears it); NOTFOUND if there is none. */
enum directory_result directory_account_set_password(struct directory *d, const char *address,
                                                     const char *password_hash);

/* Calls fn for each account in address order (stops early if fn returns non-zero). */
enum directory_result directory_account_list(struct directory *d, const char *domain_or_null,
                                             int (*fn)(void *arg, const char *address,
                                                       enum account_state state),
                                             void *arg);

/*
 * Adds an alias with n targets (each a valid mailbox, local or foreign). Fails with
 * EXISTS if an account or alias has that address, LOOP if a target is the alias.
 */
enum directory_result directory_alias_add(struct directory *d, const char *alias,
                                          const char *const *targets, size_t n);

/* Deletes an alias and its targets; NOTFOUND if there is none. */
enum directory_result directory_alias_del(struct directory *d, const char *alias);

/* Calls fn for each (alias, target) pair, ordered by alias then target. */
enum directory_result
directory_alias_list(struct directory *d,
                     int (*fn)(void *arg, const char *alias, const char *target), void *arg);

/*
 * Looks one address key up. On DIRECTORY_OK *kind is 'A' (account; *state set),
 * 'L' (alias) or 'M' (mailing list). NOTFOUND when none. TEMPFAIL/ERROR on database trouble.
 */
enum directory_result directory_get(struct directory *d, const char *key, char *kind,
                                    enum account_state *state);

/* Calls fn for every target of alias `key` (none if it is not an alias). */
enum directory_result directory_alias_targets(struct directory *d, const char *key,
                                              int (*fn)(void *arg, const char *target), void *arg);

/*
 * Reads account `key`'s password hash into hash[0..hashsz) ("" when it has none:
 * it cannot log in) and its state. NOTFOUND when `key` is no account; ERROR when
 * the stored hash does not fit (PASSWORD_HASH_MAX is enough for any hash
 * password_hash() made). For the AUTH check (password_check.h).
 */
enum directory_result directory_account_secret(struct directory *d, const char *key, char *hash,
                                               size_t hashsz, enum account_state *state);

/*
 * Calls fn for every alias that has `key` among its targets, in order (stops
 * early if fn returns non-zero): the addresses an account may send as besides
 * its own (smtpd/auth_rules.h). Direct targets only.
 */
enum directory_result directory_aliases_of(struct directory *d, const char *key,
                                           int (*fn)(void *arg, const char *alias), void *arg);

/*
 * One row of directory_scan(). kind: 'A' an account (state), 'L' one target of an
 * alias (target), 'M' a list (target is its owner, members_only set), 'm' one
 * member of the list named by the 'M' row just before (target is the member).
 */
struct directory_row {
	char kind;
	const char *key;
	enum account_state state;
	const char *target;
	int members_only;
};

/*
 * Bulk read for index building: calls fn for every account, every alias target,
 * every list and every list member (the rows above; one alias's or one list's
 * rows are consecutive) in one pass inside one read transaction, and stores the
 * change-log position that snapshot reflects in *seq. Stops early if fn returns
 * non-zero.
 */
enum directory_result directory_scan(struct directory *d,
                                     int (*fn)(void *arg, const struct directory_row *row),
                                     void *arg, int64_t *seq);

/*
 * Calls fn for every address changed after change-log position `since`, in order,
 * and stores the newest position in *seq. *gap is set to 1 if positions after
 * `since` were already pruned (the caller must rescan). Cheap when nothing changed.
 */
enum directory_result directory_changes(struct directory *d, int64_t since,
                                        int (*fn)(void *arg, const char *key), void *arg,
                                        int64_t *seq, int *gap);

/*
 * Opens a read transaction so that the calls that follow (directory_changes,
 * directory_get, directory_alias_targets, ...) all see one snapshot; the other
 * functions join it instead of starting their own. End it with directory_read_end()
 * soon: an open snapshot hides newer changes and holds back WAL checkpoints.
 */
enum directory_result directory_read_begin(struct directory *d);

/* Ends the transaction opened by directory_read_begin() (a no-op when none is open). */
void directory_read_end(struct directory *d);

/* ---- mailing lists ---- */

/* Longest List-Id field body: "<" local part "." domain ">" (RFC 2919 2). */
#define DIRECTORY_LIST_ID_MAX (MAILADDR_MAX + 2)

/* One list as directory_list_get() and directory_list_list() report it (keys). */
struct directory_list_info {
	char address[MAILADDR_MAX + 1];
	char owner[MAILADDR_MAX + 1]; /* the envelope sender of its posts: bounces go here */
	int members_only; /* 1: only members' envelope senders may post */
	size_t n_members;
};

/*
 * Adds a mailing list. `list` must be a valid mailbox with an unquoted (dot-string)
 * local part and a domain name (its List-Id is made of both); owner is any valid
 * mailbox, or NULL for the default directory_list_owner_default(). Fails with
 * EXISTS if an account, alias or list has that address, LOOP if the owner is the
 * list itself, BAD_ADDRESS for a bad list or owner (or a default owner that would
 * be longer than a local part may be).
 */
enum directory_result directory_list_add(struct directory *d, const char *list, const char *owner,
                                         int members_only);

/* Deletes a list and its members; NOTFOUND if there is none. */
enum directory_result directory_list_del(struct directory *d, const char *list);

/*
 * Adds n members (valid mailboxes, local or foreign; repeats among them count
 * once) to a list, all or none. NOTFOUND if the list does not exist (*bad = n);
 * EXISTS if members[*bad] is a member already; LOOP if members[*bad] is the list;
 * BAD_ADDRESS if members[*bad] is not a valid mailbox. bad may be NULL.
 */
enum directory_result directory_list_join(struct directory *d, const char *list,
                                          const char *const *members, size_t n, size_t *bad);

/*
 * Removes n members from a list, all or none. NOTFOUND if the list does not exist
 * (*bad = n) or members[*bad] is not a member; BAD_ADDRESS for an invalid one.
 */
enum directory_result directory_list_leave(struct directory *d, const char *list,
                                           const char *const *members, size_t n, size_t *bad);

/* Reads list `key` (a stored key, mailaddr_key()) into *out; NOTFOUND if it is not a list. */
enum directory_result directory_list_get(struct directory *d, const char *key,
                                         struct directory_list_info *out);

/* Calls fn for every member key of list `key`, in order (none if it is not a list). */
enum directory_result directory_list_members(struct directory *d, const char *key,
                                             int (*fn)(void *arg, const char *member), void *arg);

/* Calls fn for every list in address order (stops early if fn returns non-zero). */
enum directory_result
directory_list_list(struct directory *d,
                    int (*fn)(void *arg, const struct directory_list_info *list), void *arg);

/*
 * Writes the default owner of list address `list` (any case; need not exist):
 * the local part with "-owner" appended, at the list's domain, as a key (RFC 2142
 * section 4's LIST-owner convention). Returns its length, or -1 if the list is not
 * a valid list address or the owner's local part would exceed 64 octets.
 */
int directory_list_owner_default(const char *list, char *out, size_t outsz);

/*
 * Writes the List-Id field body of list address `list` (any case):
 * "<local.domain>" in lower case, the local part's own dots kept (RFC 2919 2:
 * list-label "." list-id-namespace). Returns its length, or -1 if `list` is not a
 * valid list address or out is too small (DIRECTORY_LIST_ID_MAX + 1 is enough).
 */
int directory_list_id(const char *list, char *out, size_t outsz);

/* Deletes change-log rows older than `keep_seconds` (keeps at least the newest one). */
enum directory_result directory_prune_changes(struct directory *d, int64_t keep_seconds);

/* A short English description of a result. */
const char *directory_strerror(enum directory_result r);

#endif
