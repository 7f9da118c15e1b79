/*
 * collect_state: the DomainPOP collector's durable memory, <state_dir>/collect.db
 * (COLLECT_STATE_FILE; SQLite, WAL), shared by every collect_source:
 *   uidl(source TEXT, uidl TEXT, state INTEGER, since INTEGER,
 *        PRIMARY KEY(source, uidl))
 *     the messages of each source already dealt with: COLLECTED (queued) or
 *     OVERSIZE (over max_size, skipped, the postmaster told once); since is
 *     when the row got that state (leave_days counts from it);
 *   dedupe(key TEXT, rcpt TEXT, at INTEGER, PRIMARY KEY(key, rcpt))
 *     which recipient mailbox got which message (collect_dedupe.h keys), across
 *     all sources (one copy per mailbox even when two ISP mailboxes hold the
 *     message), kept collect_dedupe_days by collect_state_prune().
 * source is the caller's stable name of a collect_source (the collector uses
 * "pop3://USER@HOST:PORT"): a renamed source starts with no UIDLs (its messages
 * are collected again; the dedupe rows still stop second copies).
 * Times are seconds since the epoch, given by the caller (fake clocks in tests).
 *
 * Crash contract (issue 10 items 5, 6; every step is the collector's):
 *  1. RETR the message, route it, and queue it: the queue's commit is durable
 *     (queue.h) before anything is recorded here;
 *  2. collect_state_record() the UIDL as COLLECTED together with the (key,
 *     recipient) rows of the copies it queued, in ONE transaction (a batch of
 *     messages may share it): when it returns 0 the records are durable;
 *  3. only then DELE (leave_days 0, or since older than leave_days) and QUIT.
 * A kill -9 before 2 ends leaves the message unrecorded: it is collected again,
 * one duplicate (the dedupe rows were not written either, by design: they
 * must never say "delivered" about a copy the queue does not hold). A kill -9
 * after 2 and before QUIT: the server keeps the message (RFC 1939 6: DELE takes
 * effect at QUIT only), its UIDL is known, it is not collected again. Never
 * zero copies, since nothing is deleted before it is queued and recorded.
 * An OVERSIZE row is recorded after the postmaster notice is queued, the same
 * way: a crash between the two sends the notice twice, never zero times.
 *
 * Durability: journal_mode=WAL with synchronous=FULL, so each commit fsyncs the
 * WAL before returning. With NORMAL a commit survives kill -9 (the WAL is in the
 * page cache) but not a power cut until the next checkpoint: the UIDLs of every
 * message collected since then would be forgotten, and with leave_days > 0 all
 * those messages would be collected and delivered again. FULL costs one fsync
 * per transaction, and the collector records a batch per transaction, so the
 * price is one fsync per batch against the queue's one per message.
 *
 * Errors: -1 from an operation leaves the database as it was (the transaction
 * rolled back) and collect_state_error() says why, with the file name. The
 * busy timeout (5 s) lets `sharemail` and the daemon open it together.
 * Ownership: one SQLite connection per struct collect_state, one thread at a
 * time (the collector's worker); strings passed in are copied by SQLite.
 */
#ifndef SHAREMAIL_COLLECT_COLLECT_STATE_H
#define SHAREMAIL_COLLECT_COLLECT_STATE_H

#include <stddef.h>
#include <stdint.h>

#define COLLECT_STATE_FILE "collect.db" /* in state_dir */
#define COLLECT_STATE_UIDL_MAX 70 /* RFC 1939 7: a unique-id is 1 to 70 octets */

enum collect_state_uidl {
	COLLECT_STATE_UIDL_UNKNOWN = 0, /* never recorded (or forgotten) */
	COLLECT_STATE_UIDL_COLLECTED = 1, /* queued: never collect it again */
	COLLECT_STATE_UIDL_OVERSIZE = 2, /* skipped over max_size, postmaster told */
};

struct collect_state;

/* One UIDL to record (uidl NUL-terminated, 1 to COLLECT_STATE_UIDL_MAX octets). */
struct collect_state_uidl_rec {
	const char *uidl;
	enum collect_state_uidl state; /* COLLECTED or OVERSIZE */
};

/* One delivered copy: the message's dedupe key and the recipient mailbox. */
struct collect_state_dedupe_rec {
	const char *key; /* collect_dedupe_key() output, non-empty */
	const char *rcpt; /* the recipient as routed (mailaddr_key form) */
};

/*
 * Opens or creates the database at path (the collector passes
 * <state_dir>/COLLECT_STATE_FILE) and its tables. When root creates the file in
 * a folder another user owns, the file is given to that folder's owner (as
 * screen_db does), so the daemon running as that user can write it. NULL with
 * "path: reason" in err on failure.
 */
struct collect_state *collect_state_open(const char *path, char *err, size_t errlen);

/* Closes it (NULL is a no-op). */
void collect_state_close(struct collect_state *st);

/* The reason of the last failed operation, "path: reason" ("" if none failed). */
const char *collect_state_error(const struct collect_state *st);

/*
 * Records, in one transaction, the n_uidls UIDLs of source with their state and
 * the n_dedupe delivered copies, all at time now. A UIDL already recorded takes
 * the new state; its since changes only when its state does. A (key, rcpt)
 * already there keeps its row (its first time). Returns 0 when the transaction
 * is committed and durable (see Durability), -1 when nothing was recorded (an
 * empty or over-long UIDL, an empty key or rcpt, a database error).
 */
int collect_state_record(struct collect_state *st, const char *source,
                         const struct collect_state_uidl_rec *uidls, size_t n_uidls,
                         const struct collect_state_dedupe_rec *dedupe, size_t n_dedupe,
                         int64_t now);

/*
 * The state of one UIDL of source, and in *since (may be NULL) when it got it.
 * Returns the state (COLLECT_STATE_UIDL_UNKNOWN when there is no row) or -1.
 */
int collect_state_uidl_get(struct collect_state *st, const char *source, const char *uidl,
                           int64_t *since);

/*
 * Calls fn for every UIDL row of source (in UIDL order), so the collector can
 * load a source's rows once per cycle instead of one query per message. fn
 * returning != 0 stops the walk. Returns the number of rows passed to fn, or -1.
 */
int collect_state_uidl_each(struct collect_state *st, const char *source,
                            int (*fn)(void *arg, const char *uidl, enum collect_state_uidl state,
                                      int64_t since),
                            void *arg);

/*
 * Forgets the n listed UIDLs of source (messages no longer on the server, so
 * their rows cannot matter again), in one transaction. Returns how many rows
 * were deleted, or -1 (nothing deleted).
 */
int collect_state_uidl_forget(struct collect_state *st, const char *source,
                              const char *const *uidls, size_t n);

/*
 * Forgets every UIDL row of source that is NOT among the n present ones, in one
 * transaction. present must be the server's whole UIDL listing of this session
 * (a partial listing would forget messages still there, which would then be
 * collected again). Returns how many rows were deleted, or -1 (none deleted).
 */
int collect_state_uidl_retain(struct collect_state *st, const char *source,
                              const char *const *present, size_t n);

/*
 * 1 if a copy of the message with dedupe key `key` was recorded for rcpt (and
 * not pruned yet), 0 if not, -1 on error. Copies within one batch that is not
 * recorded yet are the collector's to keep apart (it holds them in memory).
 */
int collect_state_dedupe_seen(struct collect_state *st, const char *key, const char *rcpt);

/*
 * Deletes the dedupe rows recorded before `before` (the collector passes now -
 * collect_dedupe_days * 86400, once per cycle). UIDL rows are not touched: they
 * go when the server no longer lists them. Returns how many, or -1.
 */
int collect_state_prune(struct collect_state *st, int64_t before);

#endif
