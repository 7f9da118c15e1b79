/*
 * screen_db: the Dynamic Screen on disk: <state_dir>/screen.db (SQLite, WAL), one
 * row per screened key:
 *   screen(addr TEXT PRIMARY KEY, until INTEGER, reason TEXT, created INTEGER)
 * addr in screen_key's text form, times in seconds since the epoch. Written by
 * the daemon's screen writer thread (screen.c) and by `sharemail screen`; the
 * daemon notices the tool's commits by PRAGMA data_version, which changes only
 * when another connection commits.
 *
 * Expired rows are skipped by every read and deleted by screen_db_purge().
 * Ownership: one SQLite connection per struct screen_db; one thread at a time.
 */
#ifndef SHAREMAIL_SCREEN_SCREEN_DB_H
#define SHAREMAIL_SCREEN_SCREEN_DB_H

#include <stddef.h>
#include <stdint.h>

#include "screen/screen_blocklist.h"

struct screen_db;

/*
 * Opens or creates the database at path. When root creates the file in a folder
 * that another user owns (the tool run as root on the daemon's state_dir), the
 * file is given to that folder's owner, so the daemon running as that user can
 * write it (SQLite then gives the -wal and -shm files the database's owner too).
 * NULL with a message in err on failure.
 */
struct screen_db *screen_db_open(const char *path, char *err, size_t errlen);

/* Closes it (NULL is a no-op). */
void screen_db_close(struct screen_db *db);

/*
 * Writes n entries in one transaction. With keep_longer (the daemon's own
 * screenings) an existing row keeps its later expiry, so an automatic screening
 * never shortens one the administrator set; without it (`screen add`) the row
 * becomes exactly e. Returns 0 or -1.
 */
int screen_db_put(struct screen_db *db, const struct screen_entry *e, size_t n, int keep_longer,
                  int64_t now);

/* Deletes key's row. Returns 1 if a live row was there, 0 if none, -1 on error. */
int screen_db_del(struct screen_db *db, const struct screen_key *key, int64_t now);

/*
 * Calls fn for every live row at now (entries with seq 0), ordered by address
 * (order_by_addr) or latest expiry first, at most max of them (0: all). Rows whose
 * address does not parse are skipped. fn returning != 0 stops the walk. Returns
 * the number of rows passed to fn, or -1 on error.
 */
int screen_db_each(struct screen_db *db, int64_t now, int order_by_addr, size_t max,
                   int (*fn)(void *arg, const struct screen_entry *e), void *arg);

/* Deletes the rows expired at now. Returns how many, or -1. */
int screen_db_purge(struct screen_db *db, int64_t now);

/* PRAGMA data_version into *out: it changes when another connection commits. 0 or -1. */
int screen_db_data_version(struct screen_db *db, uint64_t *out);

#endif
