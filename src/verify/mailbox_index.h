/*
 * mailbox_index: an in-memory, read-mostly hash index of the directory (accounts
 * with their state, aliases with their targets, mailing lists with their owner,
 * flags and members), the data behind mailbox_lookup() and the expansions.
 *
 * Built with one directory_scan() at start-up; mailbox_index_refresh() applies the
 * directory's change log since the last refresh (or rescans after a gap). Readers
 * take a shared lock per call (or per batch with mailbox_index_read_lock()); a
 * refresh takes the exclusive lock only while applying the changes it read.
 * If a refresh fails (database locked, I/O error), lookups answer LOOKUP_TEMPFAIL
 * until one succeeds: a stale answer is never given as a definite "no".
 *
 * Memory: open addressing over one string arena; about 50 bytes per account.
 * Ownership: the index owns its directory connection. It only ever reads through
 * it, but opens it read-write so that a first start creates an empty directory
 * (and because a read-only connection to a WAL database needs the -shm file to
 * exist already).
 */
#ifndef SHAREMAIL_VERIFY_MAILBOX_INDEX_H
#define SHAREMAIL_VERIFY_MAILBOX_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "proto/mailaddr.h"
#include "verify/lookup.h"

struct mailbox_index;

/*
 * Opens the directory at db_path and builds the index. `local_domains` (n of them,
 * lower case) decide whether an alias target is local. Returns NULL with a message
 * in err on failure.
 */
struct mailbox_index *mailbox_index_open(const char *db_path, const char *const *local_domains,
                                         size_t n_domains, char *err, size_t errlen);

/* Frees the index and closes its connection (NULL is a no-op). */
void mailbox_index_free(struct mailbox_index *idx);

/*
 * Applies changes made to the directory since the last refresh. Call from one
 * thread (the daemon's main loop, about once a second). Returns the number of
 * addresses updated, or -1 on failure (lookups then answer TEMPFAIL until a
 * refresh succeeds).
 */
int mailbox_index_refresh(struct mailbox_index *idx);

/*
 * Prefetch hints for a batch of lookups, to overlap the cache misses of many
 * lookups instead of waiting for each in turn. Call with the read lock held:
 * first mailbox_index_prefetch_slot() for every mailbox of the batch (returns a
 * hash to keep), then mailbox_index_prefetch_entry() with each hash, then the
 * lookups. Results never depend on these calls; they only warm the CPU cache.
 */
uint64_t mailbox_index_prefetch_slot(const struct mailbox_index *idx, const char *mailbox,
                                     size_t len);
void mailbox_index_prefetch_entry(const struct mailbox_index *idx, uint64_t hash);

/*
 * mailbox_lookup_locked() for a mailbox the caller has already parsed as one
 * valid RFC 5321 Mailbox (mailaddr_parse), with the hash that
 * mailbox_index_prefetch_slot() returned for exactly these octets: the same
 * answer without parsing and hashing again. Read lock held.
 */
enum lookup_result mailbox_lookup_prefetched_locked(struct mailbox_index *idx, const char *mailbox,
                                                    size_t len, uint64_t hash,
                                                    struct lookup_answer *out);

/* Number of addresses (accounts + aliases + lists) in the index. */
size_t mailbox_index_count(const struct mailbox_index *idx);

/* Bytes of memory the index uses (table + arena), for logs and benchmarks. */
size_t mailbox_index_memory(const struct mailbox_index *idx);

/*
 * Takes / releases the index's shared lock for a batch of mailbox_lookup_locked()
 * calls. Hold it briefly (one batch): a refresh waits for it, and waiting writers
 * are preferred over new readers so a refresh is never starved. Not recursive:
 * while holding it call only mailbox_lookup_locked() (mailbox_lookup(),
 * mailbox_index_count(), _memory() and _failed() take the lock themselves).
 */
void mailbox_index_read_lock(struct mailbox_index *idx);
void mailbox_index_read_unlock(struct mailbox_index *idx);

/* 1 while the last refresh failed (lookups answer LOOKUP_TEMPFAIL), else 0. */
int mailbox_index_failed(struct mailbox_index *idx);

/* What mailbox_expand() says about each target it yields (its `local` argument). */
enum mailbox_target {
	MAILBOX_TARGET_FOREIGN = 0, /* outside the local domains (as the alias wrote it) */
	MAILBOX_TARGET_ACTIVE = 1, /* a local account that can receive */
	MAILBOX_TARGET_DISABLED = 2, /* a local account that is disabled */
	MAILBOX_TARGET_OVER_QUOTA = 3, /* a local account that is over quota */
	/*
	 * A local mailing list: not a mailbox but a new post to its members, with its
	 * own envelope sender and List-Id (mailbox_list_expand()).
	 */
	MAILBOX_TARGET_LIST = 4,
};

/*
 * Expands one mailbox (as written, any case) to where its mail goes: for an
 * account, the account itself; for a mailing list, the list itself
 * (MAILBOX_TARGET_LIST: its posts are expanded by mailbox_list_expand()); for an
 * alias, every account, list and foreign address reached through it (aliases
 * followed up to 8 levels, as mailbox_lookup(); missing local targets and loops
 * yield nothing). fn receives each distinct target once (account and list keys in
 * lower case; foreign targets as the alias stores them) with a MAILBOX_TARGET_*
 * value (non-zero: local); a non-zero return stops the expansion. At most 1024 targets are yielded and 1024 alias targets
 * examined. fn runs under the index's read lock: it must not call the index.
 * Returns LOOKUP_FOUND if anything was yielded, LOOKUP_NOTFOUND if nothing was,
 * LOOKUP_TEMPFAIL while the index cannot be trusted (or out of memory).
 */
enum lookup_result mailbox_expand(struct mailbox_index *idx, const char *mailbox, size_t len,
                                  int (*fn)(void *arg, const char *target, int local), void *arg);

/* Longest List-Id field body: "<" local part "." domain ">". */
#define MAILBOX_LIST_ID_MAX (MAILADDR_MAX + 2)

/* A mailing list as mailbox_list_expand() reports it. */
struct mailbox_list {
	char address[MAILADDR_MAX + 1]; /* the list's key (lower case) */
	/*
	 * The envelope sender of every copy of a post (so bounces reach the owner,
	 * not the poster): `list add --owner`, else LISTNAME-owner@domain.
	 */
	char owner[MAILADDR_MAX + 1];
	/* The List-Id: field body to add, "<listname.domain>" (RFC 2919 2), lower case. */
	char list_id[MAILBOX_LIST_ID_MAX + 1];
	int members_only; /* only members' envelope senders may post (RCPT enforces it) */
	size_t n_members;
};

/*
 * Expands a post to mailing list `list` (as written, any case): fills *info and
 * calls fn (may be NULL: info only) for every member key in address order with
 * local 1 when the member's domain is a local domain, else 0. Members are not
 * expanded further: a member that is a local alias or list is an ordinary
 * recipient of the copy, resolved when the copy is delivered. A non-zero return
 * from fn stops. fn runs under the index's read lock: it must not call the index.
 * Returns LOOKUP_FOUND for a list (even one without members), LOOKUP_NOTFOUND
 * when `list` is no list (an account, an alias, unknown, bad syntax),
 * LOOKUP_TEMPFAIL while the index cannot be trusted.
 */
enum lookup_result mailbox_list_expand(struct mailbox_index *idx, const char *list, size_t len,
                                       struct mailbox_list *info,
                                       int (*fn)(void *arg, const char *member, int local),
                                       void *arg);

#endif
