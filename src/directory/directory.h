/*
 * directory: the mailbox directory in SQLite (WAL mode): accounts and aliases of
 * the local domains. The file is <state_dir>/directory.db. Every change is also
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

enum directory_result {
	DIRECTORY_OK = 0,
	DIRECTORY_NOTFOUND,
	DIRECTORY_EXISTS, /* address already used by an account or alias */
	DIRECTORY_BAD_ADDRESS,
	DIRECTORY_LOOP, /* alias would point to itself */
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
 * Looks one address key up. On DIRECTORY_OK *kind is 'A' (account; *state set) or
 * 'L' (alias). NOTFOUND when neither. TEMPFAIL/ERROR on database trouble.
 */
enum directory_result directory_get(struct directory *d, const char *key, char *kind,
                                    enum account_state *state);

/* Calls fn for every target of alias `key` (none if it is not an alias). */
enum directory_result directory_alias_targets(struct directory *d, const char *key,
                                              int (*fn)(void *arg, const char *target), void *arg);

/*
 * Bulk read for index building: calls fn for every account (kind 'A', state) and
 * every alias target row (kind 'L', target) in one pass inside one read
 * transaction, and stores the change-log position that snapshot reflects in
 * *seq. Stops early if fn returns non-zero.
 */
enum directory_result directory_scan(struct directory *d,
                                     int (*fn)(void *arg, char kind, const char *key,
                                               enum account_state state, const char *target),
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

/* Deletes change-log rows older than `keep_seconds` (keeps at least the newest one). */
enum directory_result directory_prune_changes(struct directory *d, int64_t keep_seconds);

/* A short English description of a result. */
const char *directory_strerror(enum directory_result r);

#endif
