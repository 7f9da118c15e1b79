/* screen_db: see screen_db.h. */
#include "screen/screen_db.h"

#include "util/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#define BUSY_MS 5000

struct screen_db {
	sqlite3 *db;
};

static const char schema_sql[] =
        "CREATE TABLE IF NOT EXISTS screen("
        " addr TEXT PRIMARY KEY NOT NULL, until INTEGER NOT NULL, reason TEXT NOT NULL,"
        " created INTEGER NOT NULL);";

static void set_err(char *err, size_t errlen, const char *what, sqlite3 *db)
{
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

/* A file root just created gets the owner of its folder (see screen_db.h). */
struct screen_db *screen_db_open(const char *path, char *err, size_t errlen)
{
	struct screen_db *s = calloc(1, sizeof *s);
	if (!s) {
		set_err(err, errlen, path, NULL);
		return NULL;
	}
	struct stat st;
	int existed = lstat(path, &st) == 0;
	int rc = sqlite3_open_v2(path, &s->db,
	                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                         NULL);
	if (rc != SQLITE_OK) {
		set_err(err, errlen, path, s->db);
		screen_db_close(s);
		return NULL;
	}
	/* The daemon's writer and the tool may write together: wait, do not fail. */
	sqlite3_busy_timeout(s->db, BUSY_MS);
	/* The file exists once the first statement has run: then it can change hands. */
	if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK) {
		set_err(err, errlen, path, s->db);
		screen_db_close(s);
		return NULL;
	}
	if (!existed && fs_give_to_folder_owner(path) != 0) {
		snprintf(err, errlen, "%s: chown to the owner of its folder: %s", path,
		         strerror(errno));
		screen_db_close(s);
		return NULL;
	}
	if (sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
		set_err(err, errlen, path, s->db);
		screen_db_close(s);
		return NULL;
	}
	return s;
}

void screen_db_close(struct screen_db *s)
{
	if (!s)
		return;
	sqlite3_close(s->db);
	free(s);
}

static int exec(struct screen_db *s, const char *sql)
{
	return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int screen_db_put(struct screen_db *s, const struct screen_entry *e, size_t n, int keep_longer,
                  int64_t now)
{
	static const char replace_sql[] =
	        "INSERT INTO screen(addr, until, reason, created) VALUES(?1, ?2, ?3, ?4)"
	        " ON CONFLICT(addr) DO UPDATE SET until = excluded.until,"
	        " reason = excluded.reason, created = excluded.created";
	/* A live longer row stays as it is; an expired one is replaced whole. */
	static const char longer_sql[] =
	        "INSERT INTO screen(addr, until, reason, created) VALUES(?1, ?2, ?3, ?4)"
	        " ON CONFLICT(addr) DO UPDATE SET until = excluded.until,"
	        " reason = excluded.reason, created = excluded.created"
	        " WHERE screen.until < excluded.until";
	sqlite3_stmt *st = NULL;
	if (exec(s, "BEGIN IMMEDIATE") != 0)
		return -1;
	if (sqlite3_prepare_v2(s->db, keep_longer ? longer_sql : replace_sql, -1, &st, NULL) !=
	    SQLITE_OK) {
		exec(s, "ROLLBACK");
		return -1;
	}
	int ok = 1;
	for (size_t i = 0; i < n && ok; i++) {
		char text[SCREEN_KEY_TEXT_MAX];
		screen_key_format(&e[i].key, text, sizeof text);
		sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, e[i].until);
		sqlite3_bind_text(st, 3, e[i].reason, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, now);
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	if (!ok || exec(s, "COMMIT") != 0) {
		exec(s, "ROLLBACK");
		return -1;
	}
	return 0;
}

int screen_db_del(struct screen_db *s, const struct screen_key *key, int64_t now)
{
	char text[SCREEN_KEY_TEXT_MAX];
	sqlite3_stmt *st = NULL;
	screen_key_format(key, text, sizeof text);
	/* DELETE ... RETURNING needs SQLite 3.35 (Debian 11 has 3.34): two statements, one transaction. */
	if (exec(s, "BEGIN IMMEDIATE") != 0)
		return -1;
	int live = 0, ok = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT until > ?2 FROM screen WHERE addr = ?1", -1, &st,
	                       NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, now);
		int rc = sqlite3_step(st);
		live = rc == SQLITE_ROW && sqlite3_column_int(st, 0);
		ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (ok && sqlite3_prepare_v2(s->db, "DELETE FROM screen WHERE addr = ?1", -1, &st, NULL) ==
	                  SQLITE_OK) {
		sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
		ok = sqlite3_step(st) == SQLITE_DONE;
	} else {
		ok = 0;
	}
	sqlite3_finalize(st);
	if (!ok || exec(s, "COMMIT") != 0) {
		exec(s, "ROLLBACK");
		return -1;
	}
	return live;
}

int screen_db_each(struct screen_db *s, int64_t now, int order_by_addr, size_t max,
                   int (*fn)(void *arg, const struct screen_entry *e), void *arg)
{
	sqlite3_stmt *st = NULL;
	const char *sql = order_by_addr ? "SELECT addr, until, reason FROM screen WHERE until > ?1"
	                                  " ORDER BY addr LIMIT ?2"
	                                : "SELECT addr, until, reason FROM screen WHERE until > ?1"
	                                  " ORDER BY until DESC LIMIT ?2";
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, max ? (sqlite3_int64)max : -1);
	int rc, n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct screen_entry e = {0};
		const char *addr = (const char *)sqlite3_column_text(st, 0);
		const char *reason = (const char *)sqlite3_column_text(st, 2);
		if (!addr || screen_key_parse(addr, &e.key) != 0)
			continue; /* a row written by hand that names no address */
		e.until = sqlite3_column_int64(st, 1);
		snprintf(e.reason, sizeof e.reason, "%s", reason ? reason : "");
		n++;
		if (fn(arg, &e) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? n : -1;
}

int screen_db_purge(struct screen_db *s, int64_t now)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, "DELETE FROM screen WHERE until <= ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, now);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? sqlite3_changes(s->db) : -1;
}

int screen_db_data_version(struct screen_db *s, uint64_t *out)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK)
		return -1;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -1;
}
