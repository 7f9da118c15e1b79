/*
 * directory: the mailbox directory in SQLite. See directory.h for the contract.
 *
 * Schema (user_version 2):
 *   accounts(address PK, password, state, created)  -- address is the mailaddr_key()
 *   aliases(alias, target, PK(alias, target))        -- one row per target
 *   lists(address PK, owner, members_only, created)  -- mailing lists (version 2)
 *   list_members(list, member, PK(list, member))     -- one row per member (version 2)
 *   change_log(seq AUTOINCREMENT, address, at)        -- filled by triggers only
 *   meta(key PK, value)                               -- 'pruned_seq': newest pruned seq
 *
 * Upgrades: every statement of the schema is CREATE ... IF NOT EXISTS, so running
 * it over a version 1 file (today's accounts and aliases) adds what version 2
 * brought and leaves the rest, the change log's positions included, as it was.
 * A list member row logs the list's address: a reader re-reads the whole list.
 *
 * Why a meta row for pruning: a reader that last saw position S must learn whether
 * rows after S were deleted before it read them. Sequence numbers are not promised
 * to be contiguous, so "the oldest row is S+1" is no proof; "S >= pruned_seq" is.
 *
 * Concurrency: WAL mode, so readers (the daemon's index) never block the writer
 * (the `sharemail` tool). Writers use BEGIN IMMEDIATE so two writers queue on the
 * busy timeout instead of deadlocking on a lock upgrade. Every statement is reset
 * right after use so no read snapshot is held open between calls (an open snapshot
 * would hide newer changes and stop WAL checkpoints).
 */
#include "directory/directory.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "proto/mailaddr.h"

#define DIRECTORY_SCHEMA_VERSION 2
#define DIRECTORY_BUSY_MS 5000

static const char schema_sql[] =
        "CREATE TABLE IF NOT EXISTS accounts(address TEXT PRIMARY KEY NOT NULL, password TEXT,"
        " state INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS aliases(alias TEXT NOT NULL, target TEXT NOT NULL,"
        " PRIMARY KEY(alias, target)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS change_log(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " address TEXT NOT NULL, at INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY NOT NULL, value INTEGER);"
        "CREATE TRIGGER IF NOT EXISTS accounts_ins AFTER INSERT ON accounts BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.address, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "CREATE TRIGGER IF NOT EXISTS accounts_upd AFTER UPDATE ON accounts BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.address, CAST(strftime('%s','now') AS"
        " INTEGER));"
        " INSERT INTO change_log(address, at) SELECT OLD.address, CAST(strftime('%s','now') AS"
        " INTEGER) WHERE OLD.address <> NEW.address; END;"
        "CREATE TRIGGER IF NOT EXISTS accounts_del AFTER DELETE ON accounts BEGIN"
        " INSERT INTO change_log(address, at) VALUES(OLD.address, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "CREATE TRIGGER IF NOT EXISTS aliases_ins AFTER INSERT ON aliases BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.alias, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "CREATE TRIGGER IF NOT EXISTS aliases_upd AFTER UPDATE ON aliases BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.alias, CAST(strftime('%s','now') AS"
        " INTEGER));"
        " INSERT INTO change_log(address, at) SELECT OLD.alias, CAST(strftime('%s','now') AS"
        " INTEGER) WHERE OLD.alias <> NEW.alias; END;"
        "CREATE TRIGGER IF NOT EXISTS aliases_del AFTER DELETE ON aliases BEGIN"
        " INSERT INTO change_log(address, at) VALUES(OLD.alias, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "CREATE TABLE IF NOT EXISTS lists(address TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL,"
        " members_only INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS list_members(list TEXT NOT NULL, member TEXT NOT NULL,"
        " PRIMARY KEY(list, member)) WITHOUT ROWID;"
        "CREATE TRIGGER IF NOT EXISTS lists_ins AFTER INSERT ON lists BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.address, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "CREATE TRIGGER IF NOT EXISTS lists_upd AFTER UPDATE ON lists BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.address, CAST(strftime('%s','now') AS"
        " INTEGER));"
        " INSERT INTO change_log(address, at) SELECT OLD.address, CAST(strftime('%s','now') AS"
        " INTEGER) WHERE OLD.address <> NEW.address; END;"
        "CREATE TRIGGER IF NOT EXISTS lists_del AFTER DELETE ON lists BEGIN"
        " INSERT INTO change_log(address, at) VALUES(OLD.address, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "CREATE TRIGGER IF NOT EXISTS list_members_ins AFTER INSERT ON list_members BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.list, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "CREATE TRIGGER IF NOT EXISTS list_members_upd AFTER UPDATE ON list_members BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.list, CAST(strftime('%s','now') AS"
        " INTEGER));"
        " INSERT INTO change_log(address, at) SELECT OLD.list, CAST(strftime('%s','now') AS"
        " INTEGER) WHERE OLD.list <> NEW.list; END;"
        "CREATE TRIGGER IF NOT EXISTS list_members_del AFTER DELETE ON list_members BEGIN"
        " INSERT INTO change_log(address, at) VALUES(OLD.list, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "PRAGMA user_version = 2;";

/* Every statement this module runs, prepared once per connection on first use. */
enum dir_stmt {
	ST_BEGIN,
	ST_BEGIN_IMMEDIATE,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_ACCOUNT_GET,
	ST_ALIAS_EXISTS,
	ST_ACCOUNT_INSERT,
	ST_ACCOUNT_DELETE,
	ST_ACCOUNT_SET_STATE,
	ST_ACCOUNT_SET_PASSWORD,
	ST_ACCOUNT_LIST,
	ST_ALIAS_INSERT,
	ST_ALIAS_DELETE,
	ST_ALIAS_LIST,
	ST_ALIAS_TARGETS,
	ST_SCAN_ACCOUNTS,
	ST_SCAN_ALIASES,
	ST_SCAN_LISTS,
	ST_LIST_EXISTS,
	ST_LIST_INSERT,
	ST_LIST_DELETE,
	ST_LIST_GET,
	ST_LIST_LIST,
	ST_MEMBERS_DELETE_ALL,
	ST_MEMBER_INSERT,
	ST_MEMBER_DELETE,
	ST_MEMBERS,
	ST_LOG_HEAD,
	ST_LOG_SINCE,
	ST_PRUNE_FIND,
	ST_PRUNE_DELETE,
	ST_PRUNE_MARK,
	ST_ACCOUNT_SECRET,
	ST_ALIASES_OF,
	ST_COUNT_
};

static const char *const stmt_sql[ST_COUNT_] = {
        [ST_BEGIN] = "BEGIN",
        [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
        [ST_COMMIT] = "COMMIT",
        [ST_ROLLBACK] = "ROLLBACK",
        [ST_ACCOUNT_GET] = "SELECT state FROM accounts WHERE address = ?1",
        [ST_ALIAS_EXISTS] = "SELECT 1 FROM aliases WHERE alias = ?1 LIMIT 1",
        [ST_ACCOUNT_INSERT] = "INSERT INTO accounts(address, password, state, created)"
                              " VALUES(?1, ?2, ?3, ?4)",
        [ST_ACCOUNT_DELETE] = "DELETE FROM accounts WHERE address = ?1",
        [ST_ACCOUNT_SET_STATE] = "UPDATE accounts SET state = ?2 WHERE address = ?1",
        [ST_ACCOUNT_SET_PASSWORD] = "UPDATE accounts SET password = ?2 WHERE address = ?1",
        [ST_ACCOUNT_LIST] = "SELECT address, state FROM accounts WHERE ?1 IS NULL OR"
                            " substr(address, length(address) - length(?1)) = '@' || ?1"
                            " ORDER BY address",
        [ST_ALIAS_INSERT] = "INSERT OR IGNORE INTO aliases(alias, target) VALUES(?1, ?2)",
        [ST_ALIAS_DELETE] = "DELETE FROM aliases WHERE alias = ?1",
        [ST_ALIAS_LIST] = "SELECT alias, target FROM aliases ORDER BY alias, target",
        [ST_ALIAS_TARGETS] = "SELECT target FROM aliases WHERE alias = ?1 ORDER BY target",
        [ST_SCAN_ACCOUNTS] = "SELECT address, state FROM accounts",
        [ST_SCAN_ALIASES] = "SELECT alias, target FROM aliases ORDER BY alias, target",
        [ST_SCAN_LISTS] = "SELECT l.address, l.owner, l.members_only, m.member FROM lists l"
                          " LEFT JOIN list_members m ON m.list = l.address"
                          " ORDER BY l.address, m.member",
        [ST_LIST_EXISTS] = "SELECT 1 FROM lists WHERE address = ?1",
        [ST_LIST_INSERT] = "INSERT INTO lists(address, owner, members_only, created)"
                           " VALUES(?1, ?2, ?3, ?4)",
        [ST_LIST_DELETE] = "DELETE FROM lists WHERE address = ?1",
        [ST_LIST_GET] = "SELECT address, owner, members_only,"
                        " (SELECT COUNT(*) FROM list_members WHERE list = ?1)"
                        " FROM lists WHERE address = ?1",
        [ST_LIST_LIST] = "SELECT l.address, l.owner, l.members_only,"
                         " (SELECT COUNT(*) FROM list_members m WHERE m.list = l.address)"
                         " FROM lists l ORDER BY l.address",
        [ST_MEMBERS_DELETE_ALL] = "DELETE FROM list_members WHERE list = ?1",
        [ST_MEMBER_INSERT] = "INSERT INTO list_members(list, member) VALUES(?1, ?2)",
        [ST_MEMBER_DELETE] = "DELETE FROM list_members WHERE list = ?1 AND member = ?2",
        [ST_MEMBERS] = "SELECT member FROM list_members WHERE list = ?1 ORDER BY member",
        [ST_LOG_HEAD] = "SELECT (SELECT value FROM meta WHERE key = 'pruned_seq'),"
                        " (SELECT MAX(seq) FROM change_log)",
        [ST_LOG_SINCE] = "SELECT address, MAX(seq) AS s FROM change_log WHERE seq > ?1"
                         " GROUP BY address ORDER BY s",
        [ST_PRUNE_FIND] = "SELECT MAX(seq) FROM change_log WHERE at < ?1 AND"
                          " seq < (SELECT MAX(seq) FROM change_log)",
        [ST_PRUNE_DELETE] = "DELETE FROM change_log WHERE seq <= ?1",
        [ST_PRUNE_MARK] = "INSERT INTO meta(key, value) VALUES('pruned_seq', ?1)"
                          " ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
        [ST_ACCOUNT_SECRET] = "SELECT password, state FROM accounts WHERE address = ?1",
        [ST_ALIASES_OF] = "SELECT alias FROM aliases WHERE target = ?1 ORDER BY alias",
};

struct directory {
	sqlite3 *db;
	int read_only;
	sqlite3_stmt *stmt[ST_COUNT_];
};

/* Maps an SQLite result code to ours: a lock held by someone else is temporary. */
static enum directory_result dir_map(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW: return DIRECTORY_OK;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return DIRECTORY_TEMPFAIL;
	case SQLITE_CONSTRAINT: return DIRECTORY_EXISTS;
	default: return DIRECTORY_ERROR;
	}
}

/* Returns the cached statement `id`, reset and with bindings cleared; NULL on error. */
static sqlite3_stmt *dir_stmt(struct directory *d, enum dir_stmt id, int *rc)
{
	sqlite3_stmt *s = d->stmt[id];
	if (!s) {
		*rc = sqlite3_prepare_v3(d->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s,
		                         NULL);
		if (*rc != SQLITE_OK)
			return NULL;
		d->stmt[id] = s;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	*rc = SQLITE_OK;
	return s;
}

/* Runs a statement without results (BEGIN, COMMIT, ...). Returns an SQLite code. */
static int dir_exec(struct directory *d, enum dir_stmt id)
{
	int rc;
	sqlite3_stmt *s = dir_stmt(d, id, &rc);
	if (!s)
		return rc;
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/*
 * Starts a transaction unless one is already open on this connection (so the index
 * can group several calls in one snapshot). *owned says whether we must end it.
 */
static int tx_begin(struct directory *d, int immediate, int *owned)
{
	*owned = 0;
	if (!sqlite3_get_autocommit(d->db))
		return SQLITE_OK;
	int rc = dir_exec(d, immediate ? ST_BEGIN_IMMEDIATE : ST_BEGIN);
	if (rc == SQLITE_OK)
		*owned = 1;
	return rc;
}

/* Ends a transaction we own: commit when rc is OK, else roll back. Returns rc or commit's. */
static int tx_end(struct directory *d, int owned, int rc)
{
	if (!owned)
		return rc;
	if (rc == SQLITE_OK) {
		int c = dir_exec(d, ST_COMMIT);
		if (c == SQLITE_OK)
			return SQLITE_OK;
		rc = c;
	}
	if (!sqlite3_get_autocommit(d->db))
		dir_exec(d, ST_ROLLBACK);
	return rc;
}

/* Validates an address and writes its lookup key. */
static enum directory_result dir_key(const char *address, char *key, size_t keysz)
{
	struct mailaddr a;
	if (!address || mailaddr_parse_exact(address, strlen(address), &a) != MAILADDR_OK)
		return DIRECTORY_BAD_ADDRESS;
	if (mailaddr_key(&a, key, keysz) < 0)
		return DIRECTORY_BAD_ADDRESS;
	return DIRECTORY_OK;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Creates the schema if the file has none; refuses a newer schema than ours. */
static int dir_init_schema(struct directory *d, char *err, size_t errlen)
{
	int owned = 0;
	int rc = d->read_only ? SQLITE_OK : tx_begin(d, 1, &owned);
	if (rc != SQLITE_OK) {
		set_err(err, errlen, "cannot lock directory: %s", sqlite3_errmsg(d->db));
		return -1;
	}
	sqlite3_stmt *s = NULL;
	int version = -1;
	rc = sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &s, NULL);
	if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (version < 0) {
		set_err(err, errlen, "cannot read directory: %s", sqlite3_errmsg(d->db));
		tx_end(d, owned, SQLITE_ERROR);
		return -1;
	}
	if (version > DIRECTORY_SCHEMA_VERSION) {
		set_err(err, errlen, "%s", "directory schema is newer than this program");
		tx_end(d, owned, SQLITE_ERROR);
		return -1;
	}
	if (version == 0 && d->read_only) {
		set_err(err, errlen, "%s", "not a sharemail directory (no schema)");
		return -1;
	}
	if (version < DIRECTORY_SCHEMA_VERSION && d->read_only) {
		set_err(err, errlen,
		        "directory schema version %d is older than this program's (%d): open it"
		        " read-write once (any sharemail command that changes it) to upgrade",
		        version, DIRECTORY_SCHEMA_VERSION);
		return -1;
	}
	if (version < DIRECTORY_SCHEMA_VERSION) {
		rc = sqlite3_exec(d->db, schema_sql, NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			set_err(err, errlen, "cannot create directory schema: %s",
			        sqlite3_errmsg(d->db));
			tx_end(d, owned, rc);
			return -1;
		}
	}
	rc = tx_end(d, owned, SQLITE_OK);
	if (rc != SQLITE_OK) {
		set_err(err, errlen, "cannot create directory schema: %s", sqlite3_errmsg(d->db));
		return -1;
	}
	return 0;
}

struct directory *directory_open(const char *path, int read_only, char *err, size_t errlen)
{
	struct directory *d = calloc(1, sizeof *d);
	if (!d) {
		set_err(err, errlen, "%s", "out of memory");
		return NULL;
	}
	d->read_only = read_only;
	if (!read_only) {
		/* The file holds password hashes: create it private before SQLite does. */
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0) {
			set_err(err, errlen, "cannot open directory: %s", strerror(errno));
			free(d);
			return NULL;
		}
		close(fd);
	}
	int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	int rc = sqlite3_open_v2(path, &d->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		set_err(err, errlen, "cannot open directory: %s",
		        d->db ? sqlite3_errmsg(d->db) : "out of memory");
		directory_close(d);
		return NULL;
	}
	sqlite3_busy_timeout(d->db, DIRECTORY_BUSY_MS);
	sqlite3_extended_result_codes(d->db, 1);
	const char *pragmas = read_only ? "PRAGMA foreign_keys = ON"
	                                : "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
	                                  " PRAGMA foreign_keys = ON";
	rc = sqlite3_exec(d->db, pragmas, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		set_err(err, errlen, "cannot open directory: %s", sqlite3_errmsg(d->db));
		directory_close(d);
		return NULL;
	}
	if (dir_init_schema(d, err, errlen) < 0) {
		directory_close(d);
		return NULL;
	}
	return d;
}

void directory_close(struct directory *d)
{
	if (!d)
		return;
	for (int i = 0; i < ST_COUNT_; i++)
		sqlite3_finalize(d->stmt[i]);
	sqlite3_close(d->db);
	free(d);
}

const char *directory_errmsg(struct directory *d)
{
	return d && d->db ? sqlite3_errmsg(d->db) : "no directory";
}

/* Runs a one-text-parameter statement that returns at most one row; *found set. */
static int dir_exists(struct directory *d, enum dir_stmt id, const char *key, int *found, int *col0)
{
	int rc;
	sqlite3_stmt *s = dir_stmt(d, id, &rc);
	if (!s)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	*found = rc == SQLITE_ROW;
	if (*found && col0)
		*col0 = sqlite3_column_int(s, 0);
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Is `key` used by an account, an alias or a list? Returns an SQLite code. */
static int dir_taken(struct directory *d, const char *key, int *taken)
{
	int a = 0, l = 0, m = 0;
	int rc = dir_exists(d, ST_ACCOUNT_GET, key, &a, NULL);
	if (rc == SQLITE_OK)
		rc = dir_exists(d, ST_ALIAS_EXISTS, key, &l, NULL);
	if (rc == SQLITE_OK)
		rc = dir_exists(d, ST_LIST_EXISTS, key, &m, NULL);
	*taken = a || l || m;
	return rc;
}

/*
 * Begins a write transaction in which `key` is free: the account/alias/list
 * exclusion spans three tables, so it is checked inside the transaction. Returns
 * DIRECTORY_OK with the transaction open (*rc = SQLITE_OK, or the error of the
 * check for the caller's tx_end), DIRECTORY_EXISTS (transaction ended), or the
 * mapped error of the begin.
 */
static enum directory_result tx_begin_claim(struct directory *d, const char *key, int *owned,
                                            int *rc)
{
	int taken = 0;
	*rc = tx_begin(d, 1, owned);
	if (*rc != SQLITE_OK)
		return dir_map(*rc);
	*rc = dir_taken(d, key, &taken);
	if (*rc == SQLITE_OK && taken) {
		tx_end(d, *owned, SQLITE_CONSTRAINT);
		return DIRECTORY_EXISTS;
	}
	return DIRECTORY_OK;
}

enum directory_result directory_account_add(struct directory *d, const char *address,
                                            const char *password_hash, enum account_state state)
{
	char key[MAILADDR_MAX + 1];
	enum directory_result r = dir_key(address, key, sizeof key);
	if (r != DIRECTORY_OK)
		return r;
	if (state != ACCOUNT_ACTIVE && state != ACCOUNT_DISABLED && state != ACCOUNT_OVER_QUOTA)
		return DIRECTORY_ERROR;
	int owned, rc;
	r = tx_begin_claim(d, key, &owned, &rc);
	if (r != DIRECTORY_OK)
		return r;
	if (rc == SQLITE_OK) {
		sqlite3_stmt *s = dir_stmt(d, ST_ACCOUNT_INSERT, &rc);
		if (s) {
			sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
			if (password_hash)
				sqlite3_bind_text(s, 2, password_hash, -1, SQLITE_STATIC);
			sqlite3_bind_int(s, 3, (int)state);
			sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
			rc = sqlite3_step(s);
			sqlite3_reset(s);
			if (rc == SQLITE_DONE)
				rc = SQLITE_OK;
		}
	}
	return dir_map(tx_end(d, owned, rc));
}

/* Runs a one-row UPDATE/DELETE keyed by ?1 with an optional ?2; NOTFOUND if no row changed. */
static enum directory_result dir_modify(struct directory *d, enum dir_stmt id, const char *address,
                                        int has_int, int ival, int has_text, const char *tval)
{
	char key[MAILADDR_MAX + 1];
	enum directory_result r = dir_key(address, key, sizeof key);
	if (r != DIRECTORY_OK)
		return r;
	int rc;
	sqlite3_stmt *s = dir_stmt(d, id, &rc);
	if (!s)
		return dir_map(rc);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	if (has_int)
		sqlite3_bind_int(s, 2, ival);
	if (has_text && tval)
		sqlite3_bind_text(s, 2, tval, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return rc == SQLITE_ROW ? DIRECTORY_ERROR : dir_map(rc);
	return sqlite3_changes(d->db) > 0 ? DIRECTORY_OK : DIRECTORY_NOTFOUND;
}

enum directory_result directory_account_del(struct directory *d, const char *address)
{
	return dir_modify(d, ST_ACCOUNT_DELETE, address, 0, 0, 0, NULL);
}

enum directory_result directory_account_set_state(struct directory *d, const char *address,
                                                  enum account_state state)
{
	if (state != ACCOUNT_ACTIVE && state != ACCOUNT_DISABLED && state != ACCOUNT_OVER_QUOTA)
		return DIRECTORY_ERROR;
	return dir_modify(d, ST_ACCOUNT_SET_STATE, address, 1, (int)state, 0, NULL);
}

enum directory_result directory_account_set_password(struct directory *d, const char *address,
                                                     const char *password_hash)
{
	return dir_modify(d, ST_ACCOUNT_SET_PASSWORD, address, 0, 0, 1, password_hash);
}

/* A stored state outside the enum (a hand-edited file) is read as disabled: fail closed. */
static enum account_state dir_state(int v)
{
	if (v == ACCOUNT_ACTIVE || v == ACCOUNT_OVER_QUOTA)
		return (enum account_state)v;
	return ACCOUNT_DISABLED;
}

enum directory_result directory_account_list(struct directory *d, const char *domain_or_null,
                                             int (*fn)(void *arg, const char *address,
                                                       enum account_state state),
                                             void *arg)
{
	char dom[MAILADDR_DOMAIN_MAX + 1];
	if (domain_or_null) {
		size_t n = strlen(domain_or_null);
		if (n == 0 || n > MAILADDR_DOMAIN_MAX)
			return DIRECTORY_BAD_ADDRESS;
		for (size_t i = 0; i <= n; i++) {
			char c = domain_or_null[i];
			dom[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
		}
	}
	int rc;
	sqlite3_stmt *s = dir_stmt(d, ST_ACCOUNT_LIST, &rc);
	if (!s)
		return dir_map(rc);
	if (domain_or_null)
		sqlite3_bind_text(s, 1, dom, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(s, 0);
		if (a && fn(arg, a, dir_state(sqlite3_column_int(s, 1))))
			break;
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? DIRECTORY_OK : dir_map(rc);
}

enum directory_result directory_alias_add(struct directory *d, const char *alias,
                                          const char *const *targets, size_t n)
{
	char key[MAILADDR_MAX + 1], tkey[MAILADDR_MAX + 1];
	enum directory_result r = dir_key(alias, key, sizeof key);
	if (r != DIRECTORY_OK)
		return r;
	if (n == 0 || !targets)
		return DIRECTORY_BAD_ADDRESS;
	for (size_t i = 0; i < n; i++) {
		r = dir_key(targets[i], tkey, sizeof tkey);
		if (r != DIRECTORY_OK)
			return r;
		if (strcmp(tkey, key) == 0)
			return DIRECTORY_LOOP;
	}
	int owned, rc;
	r = tx_begin_claim(d, key, &owned, &rc);
	if (r != DIRECTORY_OK)
		return r;
	for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
		dir_key(targets[i], tkey, sizeof tkey);
		sqlite3_stmt *s = dir_stmt(d, ST_ALIAS_INSERT, &rc);
		if (!s)
			break;
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, tkey, -1, SQLITE_STATIC);
		rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	return dir_map(tx_end(d, owned, rc));
}

enum directory_result directory_alias_del(struct directory *d, const char *alias)
{
	return dir_modify(d, ST_ALIAS_DELETE, alias, 0, 0, 0, NULL);
}

enum directory_result
directory_alias_list(struct directory *d,
                     int (*fn)(void *arg, const char *alias, const char *target), void *arg)
{
	int rc;
	sqlite3_stmt *s = dir_stmt(d, ST_ALIAS_LIST, &rc);
	if (!s)
		return dir_map(rc);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(s, 0);
		const char *t = (const char *)sqlite3_column_text(s, 1);
		if (a && t && fn(arg, a, t))
			break;
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? DIRECTORY_OK : dir_map(rc);
}

/* ---- mailing lists ---- */

/*
 * Parses a list address: a valid mailbox whose local part is a dot-string and
 * whose domain is a name, because its List-Id (RFC 2919 2) is built of both and a
 * quoted local part or an address literal is no dot-atom. Writes the key.
 */
static enum directory_result list_parse(const char *list, struct mailaddr *a, char *key,
                                        size_t keysz)
{
	if (!list || mailaddr_parse_exact(list, strlen(list), a) != MAILADDR_OK)
		return DIRECTORY_BAD_ADDRESS;
	if (a->quoted || a->literal || a->local_len == 0)
		return DIRECTORY_BAD_ADDRESS;
	return mailaddr_key(a, key, keysz) < 0 ? DIRECTORY_BAD_ADDRESS : DIRECTORY_OK;
}

int directory_list_owner_default(const char *list, char *out, size_t outsz)
{
	static const char suffix[] = "-owner";
	struct mailaddr a;
	char key[MAILADDR_MAX + 1];
	if (list_parse(list, &a, key, sizeof key) != DIRECTORY_OK)
		return -1;
	/* RFC 5321 4.5.3.1.1: the owner's local part must fit in 64 octets too. */
	if (a.local_len + sizeof suffix - 1 > MAILADDR_LOCAL_MAX)
		return -1;
	int n = snprintf(out, outsz, "%.*s%s%s", (int)a.local_len, key, suffix, key + a.local_len);
	return n < 0 || (size_t)n >= outsz ? -1 : n;
}

int directory_list_id(const char *list, char *out, size_t outsz)
{
	struct mailaddr a;
	char key[MAILADDR_MAX + 1];
	if (list_parse(list, &a, key, sizeof key) != DIRECTORY_OK)
		return -1;
	/* The '@' becomes the dot between list-label and list-id-namespace. */
	int n = snprintf(out, outsz, "<%.*s.%s>", (int)a.local_len, key, key + a.local_len + 1);
	return n < 0 || (size_t)n >= outsz ? -1 : n;
}

/* Runs a two-key statement (list, member) without results; *changed: rows it touched. */
static int dir_pair(struct directory *d, enum dir_stmt id, const char *list, const char *member,
                    int *changed)
{
	int rc;
	sqlite3_stmt *s = dir_stmt(d, id, &rc);
	if (!s)
		return rc;
	sqlite3_bind_text(s, 1, list, -1, SQLITE_STATIC);
	if (member)
		sqlite3_bind_text(s, 2, member, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (changed)
		*changed = rc == SQLITE_DONE ? sqlite3_changes(d->db) : 0;
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

enum directory_result directory_list_add(struct directory *d, const char *list, const char *owner,
                                         int members_only)
{
	struct mailaddr a;
	char key[MAILADDR_MAX + 1], okey[MAILADDR_MAX + 1];
	enum directory_result r = list_parse(list, &a, key, sizeof key);
	if (r != DIRECTORY_OK)
		return r;
	if (owner)
		r = dir_key(owner, okey, sizeof okey);
	else if (directory_list_owner_default(list, okey, sizeof okey) < 0)
		r = DIRECTORY_BAD_ADDRESS;
	if (r != DIRECTORY_OK)
		return r;
	if (strcmp(okey, key) == 0)
		return DIRECTORY_LOOP; /* its bounces would be posts to the list */
	int owned, rc;
	r = tx_begin_claim(d, key, &owned, &rc);
	if (r != DIRECTORY_OK)
		return r;
	sqlite3_stmt *s = rc == SQLITE_OK ? dir_stmt(d, ST_LIST_INSERT, &rc) : NULL;
	if (s) {
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, okey, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 3, members_only ? 1 : 0);
		sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
		rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	return dir_map(tx_end(d, owned, rc));
}

enum directory_result directory_list_del(struct directory *d, const char *list)
{
	char key[MAILADDR_MAX + 1];
	enum directory_result r = dir_key(list, key, sizeof key);
	if (r != DIRECTORY_OK)
		return r;
	int owned, changed = 0;
	int rc = tx_begin(d, 1, &owned);
	if (rc != SQLITE_OK)
		return dir_map(rc);
	rc = dir_pair(d, ST_LIST_DELETE, key, NULL, &changed);
	if (rc == SQLITE_OK && changed)
		rc = dir_pair(d, ST_MEMBERS_DELETE_ALL, key, NULL, NULL);
	rc = tx_end(d, owned, rc);
	if (rc != SQLITE_OK)
		return dir_map(rc) == DIRECTORY_EXISTS ? DIRECTORY_ERROR : dir_map(rc);
	return changed ? DIRECTORY_OK : DIRECTORY_NOTFOUND;
}

/* 1 if members[i]'s key equals that of an earlier member (a repeat counts once). */
static int member_repeated(const char *const *members, size_t i, const char *mkey)
{
	char k[MAILADDR_MAX + 1];
	for (size_t j = 0; j < i; j++)
		if (dir_key(members[j], k, sizeof k) == DIRECTORY_OK && strcmp(k, mkey) == 0)
			return 1;
	return 0;
}

/*
 * Validates every member first (nothing is written for a bad one), then begins a
 * write transaction in which the list exists. Returns DIRECTORY_OK with the
 * transaction open, or the failure with *bad set and no transaction.
 */
static enum directory_result members_begin(struct directory *d, const char *list,
                                           const char *const *members, size_t n, int join,
                                           char *key, size_t keysz, int *owned, size_t *bad)
{
	char mkey[MAILADDR_MAX + 1];
	*bad = n;
	enum directory_result r = dir_key(list, key, keysz);
	if (r != DIRECTORY_OK)
		return r;
	if (n > 0 && !members)
		return DIRECTORY_BAD_ADDRESS;
	for (size_t i = 0; i < n; i++) {
		r = dir_key(members[i], mkey, sizeof mkey);
		if (r == DIRECTORY_OK && join && strcmp(mkey, key) == 0)
			r = DIRECTORY_LOOP; /* each post would be posted again */
		if (r != DIRECTORY_OK) {
			*bad = i;
			return r;
		}
	}
	int found = 0;
	int rc = tx_begin(d, 1, owned);
	if (rc != SQLITE_OK)
		return dir_map(rc);
	rc = dir_exists(d, ST_LIST_EXISTS, key, &found, NULL);
	if (rc == SQLITE_OK && found)
		return DIRECTORY_OK;
	tx_end(d, *owned, rc == SQLITE_OK ? SQLITE_ERROR : rc);
	if (rc != SQLITE_OK)
		return dir_map(rc) == DIRECTORY_EXISTS ? DIRECTORY_ERROR : dir_map(rc);
	return DIRECTORY_NOTFOUND;
}

/* Joins (join = 1) or removes members, all or none; see directory_list_join/_leave. */
static enum directory_result list_members_change(struct directory *d, const char *list,
                                                 const char *const *members, size_t n,
                                                 size_t *bad_out, int join)
{
	char key[MAILADDR_MAX + 1], mkey[MAILADDR_MAX + 1];
	size_t bad = n;
	int owned = 0, rc = SQLITE_OK;
	enum directory_result r =
	        members_begin(d, list, members, n, join, key, sizeof key, &owned, &bad);
	if (bad_out)
		*bad_out = bad;
	if (r != DIRECTORY_OK)
		return r; /* no transaction is open */
	for (size_t i = 0; r == DIRECTORY_OK && rc == SQLITE_OK && i < n; i++) {
		dir_key(members[i], mkey, sizeof mkey);
		if (member_repeated(members, i, mkey))
			continue;
		int changed = 0;
		rc = dir_pair(d, join ? ST_MEMBER_INSERT : ST_MEMBER_DELETE, key, mkey, &changed);
		if (join && (rc & 0xff) == SQLITE_CONSTRAINT) {
			r = DIRECTORY_EXISTS; /* a member already */
			rc = SQLITE_OK;
			bad = i;
		} else if (!join && rc == SQLITE_OK && !changed) {
			r = DIRECTORY_NOTFOUND; /* not a member */
			bad = i;
		}
	}
	if (bad_out)
		*bad_out = bad;
	if (r != DIRECTORY_OK) {
		tx_end(d, owned, SQLITE_ABORT); /* all or none: the others are rolled back */
		return r;
	}
	rc = tx_end(d, owned, rc);
	if (rc != SQLITE_OK)
		return dir_map(rc) == DIRECTORY_EXISTS ? DIRECTORY_ERROR : dir_map(rc);
	return DIRECTORY_OK;
}

enum directory_result directory_list_join(struct directory *d, const char *list,
                                          const char *const *members, size_t n, size_t *bad)
{
	return list_members_change(d, list, members, n, bad, 1);
}

enum directory_result directory_list_leave(struct directory *d, const char *list,
                                           const char *const *members, size_t n, size_t *bad)
{
	return list_members_change(d, list, members, n, bad, 0);
}

/* Copies a lists row (address, owner, members_only, count) into *out; -1 if it is unusable. */
static int list_row(sqlite3_stmt *s, struct directory_list_info *out)
{
	const char *k = (const char *)sqlite3_column_text(s, 0);
	const char *o = (const char *)sqlite3_column_text(s, 1);
	if (!k || !o || strlen(k) > MAILADDR_MAX || strlen(o) > MAILADDR_MAX)
		return -1;
	snprintf(out->address, sizeof out->address, "%s", k);
	snprintf(out->owner, sizeof out->owner, "%s", o);
	out->members_only = sqlite3_column_int(s, 2) != 0;
	sqlite3_int64 count = sqlite3_column_int64(s, 3);
	out->n_members = count > 0 ? (size_t)count : 0;
	return 0;
}

enum directory_result directory_list_get(struct directory *d, const char *key,
                                         struct directory_list_info *out)
{
	int rc, found = 0;
	sqlite3_stmt *s = dir_stmt(d, ST_LIST_GET, &rc);
	if (!s)
		return dir_map(rc);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		found = list_row(s, out) == 0;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return dir_map(rc) == DIRECTORY_EXISTS ? DIRECTORY_ERROR : dir_map(rc);
	return found ? DIRECTORY_OK : DIRECTORY_NOTFOUND;
}

/*
 * Runs statement id with key bound and calls fn with the text of each row's first
 * column until fn returns non-zero: an alias's targets, a list's members.
 */
static enum directory_result each_text(struct directory *d, enum dir_stmt id, const char *key,
                                       int (*fn)(void *arg, const char *text), void *arg)
{
	int rc;
	sqlite3_stmt *s = dir_stmt(d, id, &rc);
	if (!s)
		return dir_map(rc);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(s, 0);
		if (t && fn(arg, t))
			break;
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? DIRECTORY_OK : dir_map(rc);
}

enum directory_result directory_list_members(struct directory *d, const char *key,
                                             int (*fn)(void *arg, const char *member), void *arg)
{
	return each_text(d, ST_MEMBERS, key, fn, arg);
}

enum directory_result
directory_list_list(struct directory *d,
                    int (*fn)(void *arg, const struct directory_list_info *list), void *arg)
{
	int rc;
	sqlite3_stmt *s = dir_stmt(d, ST_LIST_LIST, &rc);
	if (!s)
		return dir_map(rc);
	struct directory_list_info info;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (list_row(s, &info) == 0 && fn(arg, &info))
			break;
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? DIRECTORY_OK : dir_map(rc);
}

enum directory_result directory_get(struct directory *d, const char *key, char *kind,
                                    enum account_state *state)
{
	int owned, found = 0, st = 0;
	int rc = tx_begin(d, 0, &owned);
	if (rc == SQLITE_OK)
		rc = dir_exists(d, ST_ACCOUNT_GET, key, &found, &st);
	if (rc == SQLITE_OK && found) {
		*kind = 'A';
		if (state)
			*state = dir_state(st);
	} else if (rc == SQLITE_OK) {
		rc = dir_exists(d, ST_ALIAS_EXISTS, key, &found, NULL);
		if (rc == SQLITE_OK && found)
			*kind = 'L';
	}
	if (rc == SQLITE_OK && !found) {
		rc = dir_exists(d, ST_LIST_EXISTS, key, &found, NULL);
		if (rc == SQLITE_OK && found)
			*kind = 'M';
	}
	rc = tx_end(d, owned, rc);
	if (rc != SQLITE_OK)
		return dir_map(rc) == DIRECTORY_EXISTS ? DIRECTORY_ERROR : dir_map(rc);
	return found ? DIRECTORY_OK : DIRECTORY_NOTFOUND;
}

enum directory_result directory_alias_targets(struct directory *d, const char *key,
                                              int (*fn)(void *arg, const char *target), void *arg)
{
	return each_text(d, ST_ALIAS_TARGETS, key, fn, arg);
}

enum directory_result directory_account_secret(struct directory *d, const char *key, char *hash,
                                               size_t hashsz, enum account_state *state)
{
	int rc;
	int found = 0, fits = 1;
	sqlite3_stmt *s = dir_stmt(d, ST_ACCOUNT_SECRET, &rc);
	if (!s)
		return dir_map(rc);
	hash[0] = '\0';
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		found = 1;
		const char *h = (const char *)sqlite3_column_text(s, 0);
		size_t n = h ? strlen(h) : 0;
		if (n < hashsz)
			memcpy(hash, h ? h : "", n + 1);
		else
			fits = 0;
		*state = dir_state(sqlite3_column_int(s, 1));
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return dir_map(rc) == DIRECTORY_EXISTS ? DIRECTORY_ERROR : dir_map(rc);
	if (!fits)
		return DIRECTORY_ERROR;
	return found ? DIRECTORY_OK : DIRECTORY_NOTFOUND;
}

enum directory_result directory_aliases_of(struct directory *d, const char *key,
                                           int (*fn)(void *arg, const char *alias), void *arg)
{
	return each_text(d, ST_ALIASES_OF, key, fn, arg);
}

/* Reads (pruned_seq, newest seq) of the change log; both 0 when absent. */
static int dir_log_head(struct directory *d, int64_t *pruned, int64_t *newest)
{
	int rc;
	sqlite3_stmt *s = dir_stmt(d, ST_LOG_HEAD, &rc);
	if (!s)
		return rc;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*pruned = sqlite3_column_int64(s, 0);
		*newest = sqlite3_column_int64(s, 1);
		rc = SQLITE_OK;
	}
	sqlite3_reset(s);
	return rc;
}

typedef int (*dir_row_fn)(void *arg, const struct directory_row *row);

/* Steps the accounts or aliases scan statement, calling fn; returns an SQLite code, *stop set. */
static int scan_rows(sqlite3_stmt *s, char kind, dir_row_fn fn, void *arg, int *stop)
{
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct directory_row row = {kind, (const char *)sqlite3_column_text(s, 0),
		                            ACCOUNT_ACTIVE, NULL, 0};
		if (!row.key)
			continue;
		if (kind == 'A')
			row.state = dir_state(sqlite3_column_int(s, 1));
		else if (!(row.target = (const char *)sqlite3_column_text(s, 1)))
			continue;
		if (fn(arg, &row)) {
			*stop = 1;
			break;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Steps the lists scan (one row per member, the list's columns repeated; a list
 * without members gives one row with a NULL member): an 'M' row whenever the list
 * changes, then an 'm' row per member.
 */
static int scan_lists(sqlite3_stmt *s, dir_row_fn fn, void *arg, int *stop)
{
	int rc;
	char prev[MAILADDR_MAX + 2] = "";
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(s, 0);
		const char *owner = (const char *)sqlite3_column_text(s, 1);
		const char *member = (const char *)sqlite3_column_text(s, 3);
		if (!k || !owner || strlen(k) > MAILADDR_MAX)
			continue; /* a hand-edited row no address can name */
		int r = 0;
		if (strcmp(k, prev) != 0) {
			struct directory_row row = {'M', k, ACCOUNT_ACTIVE, owner,
			                            sqlite3_column_int(s, 2) != 0};
			snprintf(prev, sizeof prev, "%s", k);
			r = fn(arg, &row);
		}
		if (!r && member) {
			struct directory_row row = {'m', k, ACCOUNT_ACTIVE, member, 0};
			r = fn(arg, &row);
		}
		if (r) {
			*stop = 1;
			break;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

enum directory_result directory_scan(struct directory *d, dir_row_fn fn, void *arg, int64_t *seq)
{
	int owned, stop = 0;
	int64_t pruned = 0, newest = 0;
	/* One read transaction: the rows and the log position are one snapshot. */
	int rc = tx_begin(d, 0, &owned);
	if (rc == SQLITE_OK)
		rc = dir_log_head(d, &pruned, &newest);
	sqlite3_stmt *s = NULL;
	if (rc == SQLITE_OK && (s = dir_stmt(d, ST_SCAN_ACCOUNTS, &rc)))
		rc = scan_rows(s, 'A', fn, arg, &stop);
	if (rc == SQLITE_OK && !stop && (s = dir_stmt(d, ST_SCAN_ALIASES, &rc)))
		rc = scan_rows(s, 'L', fn, arg, &stop);
	if (rc == SQLITE_OK && !stop && (s = dir_stmt(d, ST_SCAN_LISTS, &rc)))
		rc = scan_lists(s, fn, arg, &stop);
	rc = tx_end(d, owned, rc);
	if (rc != SQLITE_OK)
		return dir_map(rc) == DIRECTORY_EXISTS ? DIRECTORY_ERROR : dir_map(rc);
	if (seq)
		*seq = newest;
	return DIRECTORY_OK;
}

enum directory_result directory_changes(struct directory *d, int64_t since,
                                        int (*fn)(void *arg, const char *key), void *arg,
                                        int64_t *seq, int *gap)
{
	int owned;
	int64_t pruned = 0, newest = 0;
	*gap = 0;
	int rc = tx_begin(d, 0, &owned);
	if (rc == SQLITE_OK)
		rc = dir_log_head(d, &pruned, &newest);
	if (rc == SQLITE_OK && (since < pruned || since > newest)) {
		/* Rows after `since` were pruned, or the log restarted (a new file). */
		*gap = 1;
	} else if (rc == SQLITE_OK && since < newest) {
		sqlite3_stmt *s = dir_stmt(d, ST_LOG_SINCE, &rc);
		if (s) {
			sqlite3_bind_int64(s, 1, since);
			while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
				const char *k = (const char *)sqlite3_column_text(s, 0);
				if (k && fn(arg, k))
					break;
			}
			sqlite3_reset(s);
			rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
		}
	}
	rc = tx_end(d, owned, rc);
	if (rc != SQLITE_OK)
		return dir_map(rc) == DIRECTORY_EXISTS ? DIRECTORY_ERROR : dir_map(rc);
	if (seq)
		*seq = newest;
	return DIRECTORY_OK;
}

enum directory_result directory_prune_changes(struct directory *d, int64_t keep_seconds)
{
	int owned;
	int rc = tx_begin(d, 1, &owned);
	if (rc != SQLITE_OK)
		return dir_map(rc);
	sqlite3_stmt *s = dir_stmt(d, ST_PRUNE_FIND, &rc);
	int64_t upto = 0;
	if (s) {
		sqlite3_bind_int64(s, 1, (sqlite3_int64)time(NULL) - keep_seconds);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			upto = sqlite3_column_int64(s, 0);
			rc = SQLITE_OK;
		}
		sqlite3_reset(s);
	}
	if (rc == SQLITE_OK && upto > 0) {
		/* Record the pruned position first: a reader behind it must rescan. */
		s = dir_stmt(d, ST_PRUNE_MARK, &rc);
		if (s) {
			sqlite3_bind_int64(s, 1, upto);
			rc = sqlite3_step(s);
			sqlite3_reset(s);
			rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
		}
		if (rc == SQLITE_OK && (s = dir_stmt(d, ST_PRUNE_DELETE, &rc))) {
			sqlite3_bind_int64(s, 1, upto);
			rc = sqlite3_step(s);
			sqlite3_reset(s);
			rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
		}
	}
	rc = tx_end(d, owned, rc);
	if (rc != SQLITE_OK)
		return dir_map(rc) == DIRECTORY_EXISTS ? DIRECTORY_ERROR : dir_map(rc);
	return DIRECTORY_OK;
}

const char *directory_strerror(enum directory_result r)
{
	switch (r) {
	case DIRECTORY_OK: return "ok";
	case DIRECTORY_NOTFOUND: return "not found";
	case DIRECTORY_EXISTS: return "already exists";
	case DIRECTORY_BAD_ADDRESS: return "bad address";
	case DIRECTORY_LOOP: return "alias would point to itself";
	case DIRECTORY_TEMPFAIL: return "directory busy, try again later";
	case DIRECTORY_ERROR: return "directory error";
	}
	return "unknown directory result";
}

enum directory_result directory_read_begin(struct directory *d)
{
	int owned;
	int rc = tx_begin(d, 0, &owned);
	return rc == SQLITE_OK ? DIRECTORY_OK : dir_map(rc);
}

void directory_read_end(struct directory *d)
{
	if (d && !sqlite3_get_autocommit(d->db) && dir_exec(d, ST_COMMIT) != SQLITE_OK)
		dir_exec(d, ST_ROLLBACK);
}
