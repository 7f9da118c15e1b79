/* Unit tests for directory: the SQLite mailbox directory and its change log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "directory/directory.h"
#include "harness.h"

/* A fresh directory file in a fresh temporary folder. */
struct tdir {
	char dir[64];
	char path[96];
	struct directory *d;
};

static int tdir_open(struct tdir *t)
{
	char err[256] = "";
	snprintf(t->dir, sizeof t->dir, "/tmp/test_directory.XXXXXX");
	if (!mkdtemp(t->dir))
		return -1;
	snprintf(t->path, sizeof t->path, "%s/directory.db", t->dir);
	t->d = directory_open(t->path, 0, err, sizeof err);
	if (!t->d)
		fprintf(stderr, "directory_open: %s\n", err);
	return t->d ? 0 : -1;
}

static void tdir_close(struct tdir *t)
{
	char p[128];
	directory_close(t->d);
	t->d = NULL;
	static const char *const sfx[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", t->path, sfx[i]);
		unlink(p);
	}
	rmdir(t->dir);
}

/* Runs SQL on a second, raw connection (another process's view). */
static int raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(db, 5000);
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

/* Collects callback output into one string "a state;b state;". */
struct out {
	char s[4096];
	int calls;
	int stop_after;
};

static void out_add(struct out *o, const char *a, const char *b)
{
	size_t n = strlen(o->s);
	snprintf(o->s + n, sizeof o->s - n, "%s %s;", a, b);
	o->calls++;
}

static const char *state_name(enum account_state s)
{
	return s == ACCOUNT_ACTIVE ? "active" : s == ACCOUNT_DISABLED ? "disabled" : "over-quota";
}

static int list_acc(void *arg, const char *address, enum account_state state)
{
	struct out *o = arg;
	out_add(o, address, state_name(state));
	return o->stop_after && o->calls >= o->stop_after;
}

static int list_alias(void *arg, const char *alias, const char *target)
{
	struct out *o = arg;
	out_add(o, alias, target);
	return o->stop_after && o->calls >= o->stop_after;
}

static int list_key(void *arg, const char *key)
{
	struct out *o = arg;
	size_t n = strlen(o->s);
	snprintf(o->s + n, sizeof o->s - n, "%s;", key);
	o->calls++;
	return o->stop_after && o->calls >= o->stop_after;
}

static int scan_row(void *arg, char kind, const char *key, enum account_state state,
                    const char *target)
{
	struct out *o = arg;
	char k[2] = {kind, 0};
	size_t n = strlen(o->s);
	snprintf(o->s + n, sizeof o->s - n, "%s %s %s;", k, key,
	         kind == 'A' ? state_name(state) : target);
	o->calls++;
	return 0;
}

TEST(open_creates_private_wal_file)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	struct stat st;
	CHECK_INT(stat(t.path, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	sqlite3 *db;
	CHECK_INT(sqlite3_open(t.path, &db), SQLITE_OK);
	sqlite3_stmt *s;
	CHECK_INT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(s), SQLITE_ROW);
	CHECK_STR((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	CHECK_INT(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(s), SQLITE_ROW);
	CHECK_INT(sqlite3_column_int(s, 0), 1);
	sqlite3_finalize(s);
	sqlite3_close(db);
	/* Reopening keeps the data; read-only works on an existing file. */
	CHECK_INT(directory_account_add(t.d, "a@example.com", NULL, ACCOUNT_ACTIVE), DIRECTORY_OK);
	directory_close(t.d);
	char err[256];
	t.d = directory_open(t.path, 1, err, sizeof err);
	if (CHECK(t.d != NULL)) {
		char kind = 0;
		CHECK_INT(directory_get(t.d, "a@example.com", &kind, NULL), DIRECTORY_OK);
		CHECK_INT(kind, 'A');
		/* A read-only connection cannot write. */
		CHECK(directory_account_add(t.d, "b@example.com", NULL, ACCOUNT_ACTIVE) !=
		      DIRECTORY_OK);
	}
	tdir_close(&t);
}

TEST(open_failures)
{
	char err[256] = "";
	CHECK(directory_open("/nonexistent-dir/x/directory.db", 0, err, sizeof err) == NULL);
	CHECK(strlen(err) > 0);
	err[0] = 0;
	CHECK(directory_open("/tmp/test_directory-missing.db", 1, err, sizeof err) == NULL);
	CHECK(strlen(err) > 0);
	/* A newer schema than ours is refused. */
	char path[] = "/tmp/test_directory-newer.XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	CHECK_INT(raw_exec(path, "PRAGMA user_version = 99"), 0);
	err[0] = 0;
	CHECK(directory_open(path, 0, err, sizeof err) == NULL);
	CHECK(strstr(err, "newer") != NULL);
	unlink(path);
}

TEST(accounts_add_get_modify_delete)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	struct directory *d = t.d;
	CHECK_INT(directory_account_add(d, "Alice@Example.COM", "$y$hash", ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	/* Stored by key: any case finds it, and is a duplicate. */
	CHECK_INT(directory_account_add(d, "alice@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_EXISTS);
	char kind = 0;
	enum account_state st = ACCOUNT_DISABLED;
	CHECK_INT(directory_get(d, "alice@example.com", &kind, &st), DIRECTORY_OK);
	CHECK_INT(kind, 'A');
	CHECK_INT(st, ACCOUNT_ACTIVE);
	CHECK_INT(directory_get(d, "bob@example.com", &kind, &st), DIRECTORY_NOTFOUND);

	CHECK_INT(directory_account_set_state(d, "ALICE@example.com", ACCOUNT_OVER_QUOTA),
	          DIRECTORY_OK);
	CHECK_INT(directory_get(d, "alice@example.com", &kind, &st), DIRECTORY_OK);
	CHECK_INT(st, ACCOUNT_OVER_QUOTA);
	CHECK_INT(directory_account_set_state(d, "bob@example.com", ACCOUNT_DISABLED),
	          DIRECTORY_NOTFOUND);
	CHECK_INT(directory_account_set_state(d, "alice@example.com", (enum account_state)7),
	          DIRECTORY_ERROR);

	CHECK_INT(directory_account_set_password(d, "alice@example.com", "$y$new"), DIRECTORY_OK);
	CHECK_INT(directory_account_set_password(d, "alice@example.com", NULL), DIRECTORY_OK);
	CHECK_INT(directory_account_set_password(d, "bob@example.com", "$y$x"), DIRECTORY_NOTFOUND);

	CHECK_INT(directory_account_del(d, "bob@example.com"), DIRECTORY_NOTFOUND);
	CHECK_INT(directory_account_del(d, "Alice@example.com"), DIRECTORY_OK);
	CHECK_INT(directory_get(d, "alice@example.com", &kind, &st), DIRECTORY_NOTFOUND);
	CHECK_INT(directory_account_del(d, "alice@example.com"), DIRECTORY_NOTFOUND);
	tdir_close(&t);
}

TEST(password_is_stored)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	CHECK_INT(directory_account_add(t.d, "a@example.com", "$y$one", ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_INT(directory_account_set_password(t.d, "a@example.com", "$y$two"), DIRECTORY_OK);
	sqlite3 *db;
	sqlite3_stmt *s;
	CHECK_INT(sqlite3_open(t.path, &db), SQLITE_OK);
	CHECK_INT(
	        sqlite3_prepare_v2(db, "SELECT password, created > 0 FROM accounts", -1, &s, NULL),
	        SQLITE_OK);
	CHECK_INT(sqlite3_step(s), SQLITE_ROW);
	CHECK_STR((const char *)sqlite3_column_text(s, 0), "$y$two");
	CHECK_INT(sqlite3_column_int(s, 1), 1);
	sqlite3_finalize(s);
	sqlite3_close(db);
	tdir_close(&t);
}

TEST(bad_addresses_rejected)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	static const char *const bad[] = {"",
	                                  "nodomain",
	                                  "@example.com",
	                                  "a@",
	                                  "a b@example.com",
	                                  "a@exa mple.com",
	                                  "a@@example.com",
	                                  "a\x01@example.com"};
	const char *good[] = {"x@example.com"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_INT(directory_account_add(t.d, bad[i], NULL, ACCOUNT_ACTIVE),
		          DIRECTORY_BAD_ADDRESS);
		CHECK_INT(directory_alias_add(t.d, bad[i], good, 1), DIRECTORY_BAD_ADDRESS);
		const char *tg[] = {"ok@example.com", bad[i]};
		CHECK_INT(directory_alias_add(t.d, "al@example.com", tg, 2), DIRECTORY_BAD_ADDRESS);
		CHECK_INT(directory_account_del(t.d, bad[i]), DIRECTORY_BAD_ADDRESS);
	}
	CHECK_INT(directory_account_add(t.d, NULL, NULL, ACCOUNT_ACTIVE), DIRECTORY_BAD_ADDRESS);
	CHECK_INT(directory_alias_add(t.d, "al@example.com", good, 0), DIRECTORY_BAD_ADDRESS);
	/* Nothing was half-written. */
	struct out o = {0};
	CHECK_INT(directory_alias_list(t.d, list_alias, &o), DIRECTORY_OK);
	CHECK_INT(o.calls, 0);
	tdir_close(&t);
}

TEST(account_and_alias_exclusive)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	const char *tg[] = {"bob@example.com"};
	CHECK_INT(directory_account_add(t.d, "alice@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_INT(directory_alias_add(t.d, "ALICE@example.com", tg, 1), DIRECTORY_EXISTS);
	CHECK_INT(directory_alias_add(t.d, "sales@example.com", tg, 1), DIRECTORY_OK);
	CHECK_INT(directory_alias_add(t.d, "sales@example.com", tg, 1), DIRECTORY_EXISTS);
	CHECK_INT(directory_account_add(t.d, "Sales@Example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_EXISTS);
	/* After the alias is gone the address is free again. */
	CHECK_INT(directory_alias_del(t.d, "sales@example.com"), DIRECTORY_OK);
	CHECK_INT(directory_alias_del(t.d, "sales@example.com"), DIRECTORY_NOTFOUND);
	CHECK_INT(directory_account_add(t.d, "sales@example.com", NULL, ACCOUNT_DISABLED),
	          DIRECTORY_OK);
	tdir_close(&t);
}

TEST(aliases)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	const char *tg[] = {"Bob@Example.com", "carol@other.org", "bob@example.com"};
	CHECK_INT(directory_alias_add(t.d, "Team@example.com", tg, 3), DIRECTORY_OK);
	const char *self[] = {"x@example.com", "LOOP@example.com"};
	CHECK_INT(directory_alias_add(t.d, "loop@example.com", self, 2), DIRECTORY_LOOP);
	char kind = 0;
	CHECK_INT(directory_get(t.d, "team@example.com", &kind, NULL), DIRECTORY_OK);
	CHECK_INT(kind, 'L');
	struct out o = {0};
	CHECK_INT(directory_alias_targets(t.d, "team@example.com", list_key, &o), DIRECTORY_OK);
	CHECK_STR(o.s, "bob@example.com;carol@other.org;"); /* folded, de-duplicated, ordered */
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_alias_targets(t.d, "nobody@example.com", list_key, &o), DIRECTORY_OK);
	CHECK_INT(o.calls, 0);
	const char *tg2[] = {"z@example.com"};
	CHECK_INT(directory_alias_add(t.d, "all@example.com", tg2, 1), DIRECTORY_OK);
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_alias_list(t.d, list_alias, &o), DIRECTORY_OK);
	CHECK_STR(o.s, "all@example.com z@example.com;team@example.com bob@example.com;"
	               "team@example.com carol@other.org;");
	memset(&o, 0, sizeof o);
	o.stop_after = 2;
	CHECK_INT(directory_alias_list(t.d, list_alias, &o), DIRECTORY_OK);
	CHECK_INT(o.calls, 2);
	CHECK_INT(directory_alias_del(t.d, "TEAM@example.com"), DIRECTORY_OK);
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_alias_list(t.d, list_alias, &o), DIRECTORY_OK);
	CHECK_STR(o.s, "all@example.com z@example.com;");
	tdir_close(&t);
}

TEST(account_list_order_and_domain)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	static const struct {
		const char *a;
		enum account_state s;
	} rows[] = {
	        {"zed@example.com", ACCOUNT_ACTIVE},   {"amy@example.com", ACCOUNT_DISABLED},
	        {"bob@other.org", ACCOUNT_OVER_QUOTA}, {"x@sub.example.com", ACCOUNT_ACTIVE},
	        {"y@notexample.com", ACCOUNT_ACTIVE},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		CHECK_INT(directory_account_add(t.d, rows[i].a, NULL, rows[i].s), DIRECTORY_OK);
	struct out o = {0};
	CHECK_INT(directory_account_list(t.d, NULL, list_acc, &o), DIRECTORY_OK);
	CHECK_STR(o.s, "amy@example.com disabled;bob@other.org over-quota;x@sub.example.com "
	               "active;y@notexample.com active;zed@example.com active;");
	memset(&o, 0, sizeof o);
	/* The domain matches exactly (not a suffix of another domain), in any case. */
	CHECK_INT(directory_account_list(t.d, "EXAMPLE.com", list_acc, &o), DIRECTORY_OK);
	CHECK_STR(o.s, "amy@example.com disabled;zed@example.com active;");
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_account_list(t.d, "nowhere.net", list_acc, &o), DIRECTORY_OK);
	CHECK_INT(o.calls, 0);
	memset(&o, 0, sizeof o);
	o.stop_after = 1;
	CHECK_INT(directory_account_list(t.d, NULL, list_acc, &o), DIRECTORY_OK);
	CHECK_STR(o.s, "amy@example.com disabled;");
	CHECK_INT(directory_account_list(t.d, "", list_acc, &o), DIRECTORY_BAD_ADDRESS);
	tdir_close(&t);
}

TEST(scan_and_changes)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	struct out o = {0};
	int64_t seq0 = -1, seq1 = -1, seq2 = -1;
	int gap = -1;
	CHECK_INT(directory_scan(t.d, scan_row, &o, &seq0), DIRECTORY_OK);
	CHECK_INT(o.calls, 0);
	CHECK_INT(seq0, 0);
	CHECK_INT(directory_changes(t.d, seq0, list_key, &o, &seq1, &gap), DIRECTORY_OK);
	CHECK_INT(o.calls, 0);
	CHECK_INT(gap, 0);
	CHECK_INT(seq1, 0);

	const char *tg[] = {"b@example.com", "far@other.org"};
	CHECK_INT(directory_account_add(t.d, "b@example.com", NULL, ACCOUNT_ACTIVE), DIRECTORY_OK);
	CHECK_INT(directory_account_add(t.d, "a@example.com", NULL, ACCOUNT_DISABLED),
	          DIRECTORY_OK);
	CHECK_INT(directory_alias_add(t.d, "al@example.com", tg, 2), DIRECTORY_OK);
	CHECK_INT(directory_account_set_state(t.d, "b@example.com", ACCOUNT_OVER_QUOTA),
	          DIRECTORY_OK);

	memset(&o, 0, sizeof o);
	CHECK_INT(directory_scan(t.d, scan_row, &o, &seq1), DIRECTORY_OK);
	CHECK(strstr(o.s, "A a@example.com disabled;") != NULL);
	CHECK(strstr(o.s, "A b@example.com over-quota;") != NULL);
	CHECK(strstr(o.s, "L al@example.com b@example.com;L al@example.com far@other.org;") !=
	      NULL);
	CHECK_INT(o.calls, 4);
	CHECK(seq1 > seq0);

	/* Changes since the start: every changed address once, ordered by its last change. */
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_changes(t.d, seq0, list_key, &o, &seq2, &gap), DIRECTORY_OK);
	CHECK_INT(gap, 0);
	CHECK_INT(seq2, seq1);
	CHECK_STR(o.s, "a@example.com;al@example.com;b@example.com;");
	/* Nothing new since the scan. */
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_changes(t.d, seq1, list_key, &o, &seq2, &gap), DIRECTORY_OK);
	CHECK_INT(o.calls, 0);
	CHECK_INT(seq2, seq1);
	/* A change made by another connection (the CLI) is seen; delete counts too. */
	CHECK_INT(raw_exec(t.path, "DELETE FROM accounts WHERE address = 'a@example.com'"), 0);
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_changes(t.d, seq1, list_key, &o, &seq2, &gap), DIRECTORY_OK);
	CHECK_STR(o.s, "a@example.com;");
	CHECK(seq2 > seq1);
	/* fn returning non-zero stops early. */
	memset(&o, 0, sizeof o);
	o.stop_after = 1;
	CHECK_INT(directory_changes(t.d, seq0, list_key, &o, &seq2, &gap), DIRECTORY_OK);
	CHECK_INT(o.calls, 1);
	tdir_close(&t);
}

static int64_t log_rows(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int64_t n = -1;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM change_log", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

TEST(prune_and_gap)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	int64_t seq_a = 0, seq_b = 0, seq = 0;
	int gap = -1;
	struct out o = {0};
	CHECK_INT(directory_account_add(t.d, "a@example.com", NULL, ACCOUNT_ACTIVE), DIRECTORY_OK);
	CHECK_INT(directory_changes(t.d, 0, list_key, &o, &seq_a, &gap), DIRECTORY_OK);
	CHECK_INT(directory_account_add(t.d, "b@example.com", NULL, ACCOUNT_ACTIVE), DIRECTORY_OK);
	CHECK_INT(directory_account_add(t.d, "c@example.com", NULL, ACCOUNT_ACTIVE), DIRECTORY_OK);
	CHECK_INT(directory_changes(t.d, 0, list_key, &o, &seq_b, &gap), DIRECTORY_OK);
	CHECK_INT(log_rows(t.path), 3);
	/* Recent rows are kept. */
	CHECK_INT(directory_prune_changes(t.d, 3600), DIRECTORY_OK);
	CHECK_INT(log_rows(t.path), 3);
	/* Pruning everything old still keeps the newest row. */
	CHECK_INT(directory_prune_changes(t.d, -3600), DIRECTORY_OK);
	CHECK_INT(log_rows(t.path), 1);
	/* A reader behind the pruned position must rescan; one at the newest need not. */
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_changes(t.d, seq_a, list_key, &o, &seq, &gap), DIRECTORY_OK);
	CHECK_INT(gap, 1);
	CHECK_INT(o.calls, 0);
	CHECK_INT(directory_changes(t.d, seq_b, list_key, &o, &seq, &gap), DIRECTORY_OK);
	CHECK_INT(gap, 0);
	CHECK_INT(seq, seq_b);
	/* A position beyond the log (the file was replaced) is a gap too. */
	CHECK_INT(directory_changes(t.d, seq_b + 100, list_key, &o, &seq, &gap), DIRECTORY_OK);
	CHECK_INT(gap, 1);
	/* New changes after the prune are seen normally. */
	CHECK_INT(directory_account_del(t.d, "b@example.com"), DIRECTORY_OK);
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_changes(t.d, seq_b, list_key, &o, &seq, &gap), DIRECTORY_OK);
	CHECK_INT(gap, 0);
	CHECK_STR(o.s, "b@example.com;");
	tdir_close(&t);
}

TEST(read_transaction_groups_calls)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	CHECK_INT(directory_account_add(t.d, "a@example.com", NULL, ACCOUNT_ACTIVE), DIRECTORY_OK);
	CHECK_INT(directory_read_begin(t.d), DIRECTORY_OK);
	char kind = 0;
	CHECK_INT(directory_get(t.d, "a@example.com", &kind, NULL), DIRECTORY_OK);
	/* Another writer's change is not visible inside the snapshot... */
	CHECK_INT(raw_exec(t.path, "DELETE FROM accounts"), 0);
	CHECK_INT(directory_get(t.d, "a@example.com", &kind, NULL), DIRECTORY_OK);
	directory_read_end(t.d);
	/* ...and is after it. */
	CHECK_INT(directory_get(t.d, "a@example.com", &kind, NULL), DIRECTORY_NOTFOUND);
	directory_read_end(t.d); /* no transaction open: a no-op */
	tdir_close(&t);
}

TEST(strerror_covers_all)
{
	for (int r = DIRECTORY_OK; r <= DIRECTORY_ERROR; r++) {
		const char *s = directory_strerror((enum directory_result)r);
		CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown directory result") != 0);
	}
	CHECK_STR(directory_strerror(DIRECTORY_EXISTS), "already exists");
}

TEST_MAIN(T(open_creates_private_wal_file), T(open_failures), T(accounts_add_get_modify_delete),
          T(password_is_stored), T(bad_addresses_rejected), T(account_and_alias_exclusive),
          T(aliases), T(account_list_order_and_domain), T(scan_and_changes), T(prune_and_gap),
          T(read_transaction_groups_calls), T(strerror_covers_all))
