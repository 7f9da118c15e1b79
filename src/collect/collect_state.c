/* collect_state: see collect_state.h. */
#include "collect/collect_state.h"

#include "util/fsutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#define BUSY_MS 5000
#define SCHEMA_VERSION 1 /* PRAGMA user_version: what this code reads and writes */

enum stmt {
	ST_UIDL_PUT,
	ST_UIDL_GET,
	ST_UIDL_EACH,
	ST_UIDL_DEL,
	ST_DEDUPE_PUT,
	ST_DEDUPE_SEEN,
	ST_COUNT,
};

static const char *const stmt_sql[ST_COUNT] = {
        /* since changes only with the state (collect_state.h) */
        [ST_UIDL_PUT] = "INSERT INTO uidl(source, uidl, state, since) VALUES(?1, ?2, ?3, ?4)"
                        " ON CONFLICT(source, uidl) DO UPDATE SET state = excluded.state,"
                        " since = CASE WHEN uidl.state = excluded.state THEN uidl.since"
                        " ELSE excluded.since END",
        [ST_UIDL_GET] = "SELECT state, since FROM uidl WHERE source = ?1 AND uidl = ?2",
        [ST_UIDL_EACH] = "SELECT uidl, state, since FROM uidl WHERE source = ?1 ORDER BY uidl",
        [ST_UIDL_DEL] = "DELETE FROM uidl WHERE source = ?1 AND uidl = ?2",
        [ST_DEDUPE_PUT] = "INSERT OR IGNORE INTO dedupe(key, rcpt, at) VALUES(?1, ?2, ?3)",
        [ST_DEDUPE_SEEN] = "SELECT 1 FROM dedupe WHERE key = ?1 AND rcpt = ?2",
};

static const char schema_sql[] =
        "CREATE TABLE IF NOT EXISTS uidl(source TEXT NOT NULL, uidl TEXT NOT NULL,"
        " state INTEGER NOT NULL, since INTEGER NOT NULL, PRIMARY KEY(source, uidl))"
        " WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS dedupe(key TEXT NOT NULL, rcpt TEXT NOT NULL,"
        " at INTEGER NOT NULL, PRIMARY KEY(key, rcpt)) WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS dedupe_at ON dedupe(at);"
        "CREATE TEMP TABLE IF NOT EXISTS present(uidl TEXT PRIMARY KEY NOT NULL);";

struct collect_state {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	char path[1024];
	char err[1600];
};

static void fail(struct collect_state *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Records "path: reason" for collect_state_error(). */
static void fail(struct collect_state *s, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	snprintf(s->err, sizeof s->err, "%s: %s", s->path, why);
}

static int fail_db(struct collect_state *s, const char *what)
{
	fail(s, "%s: %s", what, sqlite3_errmsg(s->db));
	return -1;
}

static int exec(struct collect_state *s, const char *sql)
{
	return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : fail_db(s, sql);
}

/* The schema version: a database written by a newer sharemail is not touched. */
static int check_version(struct collect_state *s)
{
	sqlite3_stmt *st = NULL;
	int version = -1;
	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version < 0)
		return fail_db(s, "PRAGMA user_version");
	if (version > SCHEMA_VERSION) {
		fail(s, "schema version %d is newer than this sharemail's (%d)", version,
		     SCHEMA_VERSION);
		return -1;
	}
	char sql[64];
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
	return version == SCHEMA_VERSION ? 0 : exec(s, sql);
}

static int setup(struct collect_state *s, int existed)
{
	/* The daemon and the tool may open it together: wait for the other, do not fail. */
	sqlite3_busy_timeout(s->db, BUSY_MS);
	/* The file exists once the first statement has run: then it can change hands. */
	if (exec(s, "PRAGMA journal_mode=WAL") != 0)
		return -1;
	if (!existed && fs_give_to_folder_owner(s->path) != 0) {
		fail(s, "chown to the owner of its folder: %s", strerror(errno));
		return -1;
	}
	/* FULL: a commit is on disk when it returns (collect_state.h, Durability). */
	if (exec(s, "PRAGMA synchronous=FULL") != 0 || exec(s, schema_sql) != 0 ||
	    check_version(s) != 0)
		return -1;
	for (int i = 0; i < ST_COUNT; i++)
		if (sqlite3_prepare_v2(s->db, stmt_sql[i], -1, &s->st[i], NULL) != SQLITE_OK)
			return fail_db(s, stmt_sql[i]);
	return 0;
}

struct collect_state *collect_state_open(const char *path, char *err, size_t errlen)
{
	struct collect_state *s = calloc(1, sizeof *s);
	struct stat st;
	if (!s || strlen(path) >= sizeof s->path) {
		snprintf(err, errlen, "%s: %s", path, s ? "path too long" : "out of memory");
		free(s);
		return NULL;
	}
	memcpy(s->path, path, strlen(path) + 1);
	int existed = lstat(path, &st) == 0;
	if (sqlite3_open_v2(path, &s->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		fail(s, "%s", s->db ? sqlite3_errmsg(s->db) : "out of memory");
	} else if (setup(s, existed) == 0) {
		return s;
	}
	snprintf(err, errlen, "%s", s->err);
	collect_state_close(s);
	return NULL;
}

void collect_state_close(struct collect_state *s)
{
	if (!s)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

const char *collect_state_error(const struct collect_state *s)
{
	return s->err;
}

/* Runs a prepared statement to its end; SQLITE_DONE or SQLITE_ROW count as success. */
static int step_done(struct collect_state *s, enum stmt which)
{
	int rc = sqlite3_step(s->st[which]);
	if (rc != SQLITE_DONE)
		fail_db(s, stmt_sql[which]); /* before the reset, which may replace the message */
	sqlite3_reset(s->st[which]);
	sqlite3_clear_bindings(s->st[which]);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int begin(struct collect_state *s)
{
	s->err[0] = '\0';
	return exec(s, "BEGIN IMMEDIATE");
}

/* COMMIT when ok (0), else ROLLBACK; returns 0 only when committed. */
static int end(struct collect_state *s, int ok)
{
	if (ok == 0 && exec(s, "COMMIT") == 0)
		return 0;
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* RFC 1939 7: a unique-id is 1 to 70 octets in 0x21-0x7E. */
static int uidl_ok(const char *u)
{
	size_t n = u ? strlen(u) : 0;
	if (n == 0 || n > COLLECT_STATE_UIDL_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u[i] < 0x21 || (unsigned char)u[i] > 0x7e)
			return 0;
	return 1;
}

static int put_uidl(struct collect_state *s, const char *source,
                    const struct collect_state_uidl_rec *u, int64_t now)
{
	sqlite3_stmt *st = s->st[ST_UIDL_PUT];
	if (!uidl_ok(u->uidl) ||
	    (u->state != COLLECT_STATE_UIDL_COLLECTED && u->state != COLLECT_STATE_UIDL_OVERSIZE)) {
		fail(s, "refused to record UIDL of %s: not 1-70 printable octets, or no state",
		     source);
		return -1;
	}
	sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->uidl, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, (int)u->state);
	sqlite3_bind_int64(st, 4, now);
	return step_done(s, ST_UIDL_PUT);
}

static int put_dedupe(struct collect_state *s, const struct collect_state_dedupe_rec *d,
                      int64_t now)
{
	sqlite3_stmt *st = s->st[ST_DEDUPE_PUT];
	if (!d->key || !*d->key || !d->rcpt || !*d->rcpt) {
		fail(s, "refused to record a dedupe row with an empty key or recipient");
		return -1;
	}
	sqlite3_bind_text(st, 1, d->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, d->rcpt, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	return step_done(s, ST_DEDUPE_PUT);
}

int collect_state_record(struct collect_state *s, const char *source,
                         const struct collect_state_uidl_rec *uidls, size_t n_uidls,
                         const struct collect_state_dedupe_rec *dedupe, size_t n_dedupe,
                         int64_t now)
{
	int ok = 0;
	if (!source || !*source) {
		fail(s, "refused to record for an empty source name");
		return -1;
	}
	if (begin(s) != 0)
		return -1;
	for (size_t i = 0; i < n_uidls && ok == 0; i++)
		ok = put_uidl(s, source, &uidls[i], now);
	for (size_t i = 0; i < n_dedupe && ok == 0; i++)
		ok = put_dedupe(s, &dedupe[i], now);
	return end(s, ok);
}

int collect_state_uidl_get(struct collect_state *s, const char *source, const char *uidl,
                           int64_t *since)
{
	sqlite3_stmt *st = s->st[ST_UIDL_GET];
	int state = COLLECT_STATE_UIDL_UNKNOWN;
	sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, uidl, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		state = sqlite3_column_int(st, 0);
		if (since)
			*since = sqlite3_column_int64(st, 1);
	} else if (rc != SQLITE_DONE) {
		state = fail_db(s, stmt_sql[ST_UIDL_GET]);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return state;
}

int collect_state_uidl_each(struct collect_state *s, const char *source,
                            int (*fn)(void *arg, const char *uidl, enum collect_state_uidl state,
                                      int64_t since),
                            void *arg)
{
	sqlite3_stmt *st = s->st[ST_UIDL_EACH];
	int rc, n = 0;
	sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *u = (const char *)sqlite3_column_text(st, 0);
		n++;
		if (fn(arg, u ? u : "", (enum collect_state_uidl)sqlite3_column_int(st, 1),
		       sqlite3_column_int64(st, 2)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE)
		n = fail_db(s, stmt_sql[ST_UIDL_EACH]);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return n;
}

int collect_state_uidl_forget(struct collect_state *s, const char *source, const char *const *uidls,
                              size_t n)
{
	int ok = 0, deleted = 0;
	if (begin(s) != 0)
		return -1;
	for (size_t i = 0; i < n && ok == 0; i++) {
		sqlite3_bind_text(s->st[ST_UIDL_DEL], 1, source, -1, SQLITE_STATIC);
		sqlite3_bind_text(s->st[ST_UIDL_DEL], 2, uidls[i], -1, SQLITE_STATIC);
		ok = step_done(s, ST_UIDL_DEL);
		deleted += ok == 0 ? sqlite3_changes(s->db) : 0;
	}
	return end(s, ok) == 0 ? deleted : -1;
}

int collect_state_uidl_retain(struct collect_state *s, const char *source,
                              const char *const *present, size_t n)
{
	sqlite3_stmt *ins = NULL, *del = NULL;
	int ok = 0, deleted = 0;
	if (begin(s) != 0)
		return -1;
	if (exec(s, "DELETE FROM temp.present") != 0 ||
	    sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO temp.present(uidl) VALUES(?1)", -1,
	                       &ins, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db,
	                       "DELETE FROM uidl WHERE source = ?1"
	                       " AND uidl NOT IN (SELECT uidl FROM temp.present)",
	                       -1, &del, NULL) != SQLITE_OK)
		ok = s->err[0] ? -1 : fail_db(s, "retain");
	for (size_t i = 0; i < n && ok == 0; i++) {
		sqlite3_bind_text(ins, 1, present[i], -1, SQLITE_STATIC);
		if (sqlite3_step(ins) != SQLITE_DONE)
			ok = fail_db(s, "retain: insert");
		sqlite3_reset(ins);
	}
	if (ok == 0) {
		sqlite3_bind_text(del, 1, source, -1, SQLITE_STATIC);
		if (sqlite3_step(del) == SQLITE_DONE)
			deleted = sqlite3_changes(s->db);
		else
			ok = fail_db(s, "retain: delete");
	}
	sqlite3_finalize(ins);
	sqlite3_finalize(del);
	if (ok == 0)
		ok = exec(s, "DELETE FROM temp.present");
	return end(s, ok) == 0 ? deleted : -1;
}

int collect_state_dedupe_seen(struct collect_state *s, const char *key, const char *rcpt)
{
	sqlite3_stmt *st = s->st[ST_DEDUPE_SEEN];
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, rcpt, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st), seen = rc == SQLITE_ROW;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		seen = fail_db(s, stmt_sql[ST_DEDUPE_SEEN]);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return seen;
}

int collect_state_prune(struct collect_state *s, int64_t before)
{
	sqlite3_stmt *st = NULL;
	s->err[0] = '\0';
	if (sqlite3_prepare_v2(s->db, "DELETE FROM dedupe WHERE at < ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return fail_db(s, "prune");
	sqlite3_bind_int64(st, 1, before);
	int rc = sqlite3_step(st),
	    n = rc == SQLITE_DONE ? sqlite3_changes(s->db) : fail_db(s, "prune");
	sqlite3_finalize(st);
	return n;
}
