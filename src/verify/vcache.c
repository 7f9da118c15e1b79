/*
 * vcache: see vcache.h. One SQLite table:
 *   cache(server TEXT, address TEXT, status INTEGER, expires INTEGER,
 *         PRIMARY KEY(server, address))
 * Addresses are stored folded to lower case ASCII (sharemail's lookup key), so
 * "Arvel@Example.COM" and "arvel@example.com" share one entry. An entry is live
 * while expires > now; expired rows are skipped by reads and removed by flush.
 */
#include "verify/vcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "util/strutil.h"
#include "util/timeutil.h"

#define VCACHE_BUSY_MS 5000

struct vcache {
	sqlite3 *db;
};

static const char schema_sql[] =
        "CREATE TABLE IF NOT EXISTS cache("
        " server TEXT NOT NULL, address TEXT NOT NULL, status INTEGER NOT NULL,"
        " expires INTEGER NOT NULL, PRIMARY KEY(server, address));";

static void set_err(char *err, size_t errlen, const char *what, sqlite3 *db)
{
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

struct vcache *vcache_open(const char *path, char *err, size_t errlen)
{
	struct vcache *vc = calloc(1, sizeof *vc);
	if (!vc) {
		set_err(err, errlen, path, NULL);
		return NULL;
	}
	int rc = sqlite3_open_v2(path, &vc->db,
	                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                         NULL);
	if (rc != SQLITE_OK) {
		set_err(err, errlen, path, vc->db);
		vcache_close(vc);
		return NULL;
	}
	/* busy_timeout first: the daemon and the CLI may open the cache together. */
	sqlite3_busy_timeout(vc->db, VCACHE_BUSY_MS);
	if (sqlite3_exec(vc->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(vc->db, "PRAGMA synchronous=NORMAL;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(vc->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
		set_err(err, errlen, path, vc->db);
		vcache_close(vc);
		return NULL;
	}
	return vc;
}

void vcache_close(struct vcache *vc)
{
	if (!vc)
		return;
	sqlite3_close(vc->db);
	free(vc);
}

/* Copies s folded to lower case ASCII into out. Returns -1 if it does not fit. */
static int fold_key(const char *s, char *out, size_t outsz)
{
	size_t len = strlen(s);
	if (len == 0 || len >= outsz)
		return -1;
	ascii_lower_copy(out, s, len);
	out[len] = '\0';
	return 0;
}

static sqlite3_stmt *prepare(struct vcache *vc, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(vc->db, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	return st;
}

int vcache_get(struct vcache *vc, const char *server, const char *address, int *status)
{
	char key[VCACHE_KEY_MAX];
	if (fold_key(address, key, sizeof key) < 0)
		return 0;
	sqlite3_stmt *st = prepare(vc, "SELECT status FROM cache"
	                               " WHERE server = ?1 AND address = ?2 AND expires > ?3");
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, server, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, time_wall_s());
	int rc = sqlite3_step(st);
	int ret = 0;
	if (rc == SQLITE_ROW) {
		*status = sqlite3_column_int(st, 0);
		ret = 1;
	} else if (rc != SQLITE_DONE) {
		ret = -1;
	}
	sqlite3_finalize(st);
	return ret;
}

int vcache_put(struct vcache *vc, const char *server, const char *address, int status,
               int positive_ttl, int negative_ttl)
{
	int ttl;
	/* Only answers about the address itself are cached (vcache.h); 0-2 describe the query. */
	if (status == 4 || status == 5)
		ttl = positive_ttl;
	else if (status == 3)
		ttl = negative_ttl;
	else
		return 0;
	if (ttl <= 0)
		return 0;
	return vcache_put_until(vc, server, address, status, time_wall_s() + ttl);
}

int vcache_put_until(struct vcache *vc, const char *server, const char *address, int status,
                     int64_t expires)
{
	if (status < 3 || status > 5)
		return 0;
	char key[VCACHE_KEY_MAX];
	if (fold_key(address, key, sizeof key) < 0)
		return -1;
	sqlite3_stmt *st = prepare(vc, "INSERT OR REPLACE INTO cache(server, address, status,"
	                               " expires) VALUES(?1, ?2, ?3, ?4)");
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, server, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, status);
	sqlite3_bind_int64(st, 4, expires);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int64_t vcache_data_version(struct vcache *vc)
{
	sqlite3_stmt *st = prepare(vc, "PRAGMA data_version");
	if (!st)
		return -1;
	int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	return v;
}

int vcache_fold_key(const char *address, char *out, size_t outsz)
{
	return fold_key(address, out, outsz);
}

int vcache_list(struct vcache *vc,
                int (*fn)(void *arg, const char *server, const char *address, int status,
                          int64_t expires),
                void *arg)
{
	sqlite3_stmt *st = prepare(vc, "SELECT server, address, status, expires FROM cache"
	                               " WHERE expires > ?1 ORDER BY address, server");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, time_wall_s());
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *server = (const char *)sqlite3_column_text(st, 0);
		const char *address = (const char *)sqlite3_column_text(st, 1);
		if (fn(arg, server ? server : "", address ? address : "", sqlite3_column_int(st, 2),
		       sqlite3_column_int64(st, 3)) != 0) {
			rc = SQLITE_DONE; /* the callback asked to stop */
			break;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int vcache_flush(struct vcache *vc, const char *address)
{
	char key[VCACHE_KEY_MAX];
	sqlite3_stmt *st;
	if (address) {
		if (fold_key(address, key, sizeof key) < 0)
			return 0;
		st = prepare(vc, "DELETE FROM cache WHERE address = ?1 OR expires <= ?2");
		if (!st)
			return -1;
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, time_wall_s());
	} else {
		st = prepare(vc, "DELETE FROM cache");
		if (!st)
			return -1;
	}
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return -1;
	return sqlite3_changes(vc->db);
}
