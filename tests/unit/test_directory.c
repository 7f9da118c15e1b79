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

static int scan_row(void *arg, const struct directory_row *row)
{
	struct out *o = arg;
	char k[2] = {row->kind, 0};
	size_t n = strlen(o->s);
	snprintf(o->s + n, sizeof o->s - n, "%s %s %s%s;", k, row->key,
	         row->kind == 'A' ? state_name(row->state) : row->target,
	         row->kind == 'M' && row->members_only ? " members-only" : "");
	o->calls++;
	return o->stop_after && o->calls >= o->stop_after;
}

static int list_info(void *arg, const struct directory_list_info *l)
{
	struct out *o = arg;
	size_t n = strlen(o->s);
	snprintf(o->s + n, sizeof o->s - n, "%s %zu %s %d;", l->address, l->n_members, l->owner,
	         l->members_only);
	o->calls++;
	return o->stop_after && o->calls >= o->stop_after;
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
	CHECK_INT(sqlite3_column_int(s, 0), 2);
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

/* ---- mailing lists ---- */

TEST(list_owner_default_and_list_id)
{
	char l60[80], l58[80], want[100];
	memset(l60, 'a', 59);
	snprintf(l60 + 59, sizeof l60 - 59, "@example.com"); /* 59 + "-owner" = 65: too long */
	memset(l58, 'a', 58);
	snprintf(l58 + 58, sizeof l58 - 58, "@example.com"); /* 58 + 6 = 64: fits */
	static const struct {
		const char *list, *owner, *id;
	} cases[] = {
	        {"Sales@Example.COM", "sales-owner@example.com", "<sales.example.com>"},
	        {"dev.team@lists.example.org", "dev.team-owner@lists.example.org",
	         "<dev.team.lists.example.org>"},
	        {"a+b@x.example", "a+b-owner@x.example", "<a+b.x.example>"},
	        {"\"a b\"@example.com", NULL, NULL}, /* a quoted local part is no dot-atom */
	        {"x@[192.0.2.1]", NULL, NULL}, /* an address literal is no namespace */
	        {"nodomain", NULL, NULL},
	        {"", NULL, NULL},
	        {"a@b@c", NULL, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char o[400] = "", id[400] = "";
		int no = directory_list_owner_default(cases[i].list, o, sizeof o);
		int ni = directory_list_id(cases[i].list, id, sizeof id);
		if (cases[i].owner) {
			CHECK_STR(o, cases[i].owner);
			CHECK_INT(no, strlen(cases[i].owner));
			CHECK_STR(id, cases[i].id);
			CHECK_INT(ni, strlen(cases[i].id));
		} else if (!CHECK_INT(no, -1) || !CHECK_INT(ni, -1)) {
			fprintf(stderr, "    for %s\n", cases[i].list);
		}
	}
	char o[400];
	CHECK_INT(directory_list_owner_default(l60, o, sizeof o), -1);
	snprintf(want, sizeof want, "%.58s-owner@example.com", l58);
	CHECK_INT(directory_list_owner_default(l58, o, sizeof o), 76);
	CHECK_STR(o, want);
	CHECK_INT(directory_list_id(NULL, o, sizeof o), -1);
	CHECK_INT(directory_list_owner_default(NULL, o, sizeof o), -1);
	/* A short buffer is refused, not overrun. */
	char small[8] = "xxxxxxx";
	CHECK_INT(directory_list_owner_default("sales@example.com", small, sizeof small), -1);
	CHECK_INT(directory_list_id("sales@example.com", small, sizeof small), -1);
	/* The longest list address gives the longest List-Id, which fits the bound. */
	char big[400], bid[DIRECTORY_LIST_ID_MAX + 1];
	memset(big, 'l', 64);
	big[64] = '@';
	for (int i = 65; i < 65 + 255; i++)
		big[i] = (i - 65) % 60 == 59 ? '.' : 'd';
	big[65 + 255] = '\0';
	CHECK_INT(directory_list_id(big, bid, sizeof bid), DIRECTORY_LIST_ID_MAX);
}

TEST(lists_add_get_del)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	struct directory *d = t.d;
	struct directory_list_info info;
	CHECK_INT(directory_list_add(d, "Sales@Example.com", NULL, 0), DIRECTORY_OK);
	CHECK_INT(directory_list_add(d, "dev@example.com", "Boss@Other.ORG", 1), DIRECTORY_OK);
	CHECK_INT(directory_list_get(d, "sales@example.com", &info), DIRECTORY_OK);
	CHECK_STR(info.address, "sales@example.com");
	CHECK_STR(info.owner, "sales-owner@example.com");
	CHECK_INT(info.members_only, 0);
	CHECK_INT(info.n_members, 0);
	CHECK_INT(directory_list_get(d, "dev@example.com", &info), DIRECTORY_OK);
	CHECK_STR(info.owner, "boss@other.org"); /* stored by key */
	CHECK_INT(info.members_only, 1);
	CHECK_INT(directory_list_get(d, "nobody@example.com", &info), DIRECTORY_NOTFOUND);
	char kind = 0;
	CHECK_INT(directory_get(d, "sales@example.com", &kind, NULL), DIRECTORY_OK);
	CHECK_INT(kind, 'M');
	/* Refusals, each writing nothing. */
	CHECK_INT(directory_list_add(d, "SALES@example.com", NULL, 0), DIRECTORY_EXISTS);
	CHECK_INT(directory_list_add(d, "self@example.com", "SELF@example.com", 0), DIRECTORY_LOOP);
	CHECK_INT(directory_list_add(d, "\"q q\"@example.com", "a@example.com", 0),
	          DIRECTORY_BAD_ADDRESS);
	CHECK_INT(directory_list_add(d, "x@[192.0.2.1]", "a@example.com", 0),
	          DIRECTORY_BAD_ADDRESS);
	CHECK_INT(directory_list_add(d, "ok@example.com", "bad owner@example.com", 0),
	          DIRECTORY_BAD_ADDRESS);
	CHECK_INT(directory_list_add(d, NULL, NULL, 0), DIRECTORY_BAD_ADDRESS);
	char l59[80];
	memset(l59, 'a', 59);
	snprintf(l59 + 59, sizeof l59 - 59, "@example.com");
	CHECK_INT(directory_list_add(d, l59, NULL, 0), DIRECTORY_BAD_ADDRESS); /* owner too long */
	CHECK_INT(directory_list_add(d, l59, "o@example.com", 0), DIRECTORY_OK); /* named: fine */
	struct out o = {0};
	CHECK_INT(directory_list_list(d, list_info, &o), DIRECTORY_OK);
	char want[512];
	snprintf(want, sizeof want,
	         "%s 0 o@example.com 0;dev@example.com 0 boss@other.org 1;"
	         "sales@example.com 0 sales-owner@example.com 0;",
	         l59);
	CHECK_STR(o.s, want);
	/* Deleting takes the members too; a second delete finds nothing. */
	const char *m[] = {"a@example.com"};
	CHECK_INT(directory_list_join(d, "sales@example.com", m, 1, NULL), DIRECTORY_OK);
	CHECK_INT(directory_list_del(d, "Sales@example.com"), DIRECTORY_OK);
	CHECK_INT(directory_list_del(d, "sales@example.com"), DIRECTORY_NOTFOUND);
	CHECK_INT(directory_list_del(d, "not an address"), DIRECTORY_BAD_ADDRESS);
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_list_members(d, "sales@example.com", list_key, &o), DIRECTORY_OK);
	CHECK_INT(o.calls, 0);
	/* Re-adding starts empty, and the address is free for an account again. */
	CHECK_INT(directory_list_add(d, "sales@example.com", NULL, 0), DIRECTORY_OK);
	CHECK_INT(directory_list_get(d, "sales@example.com", &info), DIRECTORY_OK);
	CHECK_INT(info.n_members, 0);
	CHECK_INT(directory_list_del(d, "sales@example.com"), DIRECTORY_OK);
	CHECK_INT(directory_account_add(d, "sales@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	tdir_close(&t);
}

TEST(list_address_exclusive_with_accounts_and_aliases)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	const char *tg[] = {"x@example.com"};
	CHECK_INT(directory_account_add(t.d, "acct@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_INT(directory_alias_add(t.d, "al@example.com", tg, 1), DIRECTORY_OK);
	CHECK_INT(directory_list_add(t.d, "list@example.com", NULL, 0), DIRECTORY_OK);
	/* A list cannot take an account's or an alias's address, nor they a list's. */
	CHECK_INT(directory_list_add(t.d, "ACCT@example.com", NULL, 0), DIRECTORY_EXISTS);
	CHECK_INT(directory_list_add(t.d, "al@example.com", NULL, 0), DIRECTORY_EXISTS);
	CHECK_INT(directory_account_add(t.d, "List@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_EXISTS);
	CHECK_INT(directory_alias_add(t.d, "list@EXAMPLE.com", tg, 1), DIRECTORY_EXISTS);
	/* Deleting an account or alias of that name does not touch the list. */
	CHECK_INT(directory_account_del(t.d, "list@example.com"), DIRECTORY_NOTFOUND);
	CHECK_INT(directory_alias_del(t.d, "list@example.com"), DIRECTORY_NOTFOUND);
	struct directory_list_info info;
	CHECK_INT(directory_list_get(t.d, "list@example.com", &info), DIRECTORY_OK);
	/* ...and deleting a list does not delete an account. */
	CHECK_INT(directory_list_del(t.d, "acct@example.com"), DIRECTORY_NOTFOUND);
	char kind = 0;
	CHECK_INT(directory_get(t.d, "acct@example.com", &kind, NULL), DIRECTORY_OK);
	CHECK_INT(kind, 'A');
	tdir_close(&t);
}

TEST(list_join_and_leave_all_or_none)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	struct directory *d = t.d;
	CHECK_INT(directory_list_add(d, "team@example.com", NULL, 1), DIRECTORY_OK);
	size_t bad = 99;
	const char *m1[] = {"Bob@Example.com", "carol@other.org", "bob@example.com"};
	CHECK_INT(directory_list_join(d, "TEAM@example.com", m1, 3, &bad), DIRECTORY_OK);
	struct out o = {0};
	CHECK_INT(directory_list_members(d, "team@example.com", list_key, &o), DIRECTORY_OK);
	CHECK_STR(o.s, "bob@example.com;carol@other.org;"); /* folded, repeats once, ordered */
	static const struct {
		const char *m[3];
		size_t n;
		enum directory_result want;
		size_t bad;
	} join_fail[] = {
	        {{"new@example.com", "CAROL@other.org"}, 2, DIRECTORY_EXISTS, 1},
	        {{"new@example.com", "team@example.com"}, 2, DIRECTORY_LOOP, 1},
	        {{"new@example.com", "not valid"}, 2, DIRECTORY_BAD_ADDRESS, 1},
	        {{"bad@", "new@example.com"}, 2, DIRECTORY_BAD_ADDRESS, 0},
	        {{NULL}, 1, DIRECTORY_BAD_ADDRESS, 0},
	};
	for (size_t i = 0; i < sizeof join_fail / sizeof join_fail[0]; i++) {
		bad = 99;
		if (!CHECK_INT(directory_list_join(d, "team@example.com", join_fail[i].m,
		                                   join_fail[i].n, &bad),
		               join_fail[i].want) ||
		    !CHECK_INT(bad, join_fail[i].bad))
			fprintf(stderr, "    join case %zu\n", i);
	}
	/* No such list: bad is n. */
	const char *m2[] = {"x@example.com"};
	bad = 99;
	CHECK_INT(directory_list_join(d, "nolist@example.com", m2, 1, &bad), DIRECTORY_NOTFOUND);
	CHECK_INT(bad, 1);
	bad = 99;
	CHECK_INT(directory_list_leave(d, "nolist@example.com", m2, 1, &bad), DIRECTORY_NOTFOUND);
	CHECK_INT(bad, 1);
	CHECK_INT(directory_list_join(d, "bad list", m2, 1, &bad), DIRECTORY_BAD_ADDRESS);
	/* An account is no list. */
	CHECK_INT(directory_account_add(d, "acct@example.com", NULL, ACCOUNT_ACTIVE), DIRECTORY_OK);
	CHECK_INT(directory_list_join(d, "acct@example.com", m2, 1, NULL), DIRECTORY_NOTFOUND);
	/* Nothing of the failed joins was written ("new" in particular). */
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_list_members(d, "team@example.com", list_key, &o), DIRECTORY_OK);
	CHECK_STR(o.s, "bob@example.com;carol@other.org;");
	/* Leaving: a non-member fails the whole call. */
	const char *l1[] = {"carol@other.org", "stranger@example.com"};
	bad = 99;
	CHECK_INT(directory_list_leave(d, "team@example.com", l1, 2, &bad), DIRECTORY_NOTFOUND);
	CHECK_INT(bad, 1);
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_list_members(d, "team@example.com", list_key, &o), DIRECTORY_OK);
	CHECK_STR(o.s, "bob@example.com;carol@other.org;");
	const char *l2[] = {"CAROL@other.org", "carol@other.org"};
	CHECK_INT(directory_list_leave(d, "team@example.com", l2, 2, &bad), DIRECTORY_OK);
	const char *l3[] = {"not valid"};
	CHECK_INT(directory_list_leave(d, "team@example.com", l3, 1, &bad), DIRECTORY_BAD_ADDRESS);
	CHECK_INT(bad, 0);
	struct directory_list_info info;
	CHECK_INT(directory_list_get(d, "team@example.com", &info), DIRECTORY_OK);
	CHECK_INT(info.n_members, 1);
	CHECK_INT(info.members_only, 1);
	memset(&o, 0, sizeof o);
	o.stop_after = 1;
	const char *m3[] = {"a@x.example", "b@x.example"};
	CHECK_INT(directory_list_join(d, "team@example.com", m3, 2, NULL), DIRECTORY_OK);
	CHECK_INT(directory_list_members(d, "team@example.com", list_key, &o), DIRECTORY_OK);
	CHECK_INT(o.calls, 1);
	/* Zero members is a no-op that still needs the list. */
	CHECK_INT(directory_list_join(d, "team@example.com", NULL, 0, NULL), DIRECTORY_OK);
	tdir_close(&t);
}

TEST(lists_in_scan_and_change_log)
{
	struct tdir t;
	if (!CHECK_INT(tdir_open(&t), 0))
		return;
	struct directory *d = t.d;
	int64_t seq0 = -1, seq1 = -1, seq2 = -1;
	int gap = -1;
	struct out o = {0};
	CHECK_INT(directory_account_add(d, "a@example.com", NULL, ACCOUNT_ACTIVE), DIRECTORY_OK);
	CHECK_INT(directory_list_add(d, "empty@example.com", NULL, 0), DIRECTORY_OK);
	CHECK_INT(directory_list_add(d, "l@example.com", "o@other.org", 1), DIRECTORY_OK);
	const char *m[] = {"z@other.org", "a@example.com"};
	CHECK_INT(directory_list_join(d, "l@example.com", m, 2, NULL), DIRECTORY_OK);
	CHECK_INT(directory_scan(d, scan_row, &o, &seq0), DIRECTORY_OK);
	CHECK_STR(o.s, "A a@example.com active;M empty@example.com empty-owner@example.com;"
	               "M l@example.com o@other.org members-only;m l@example.com a@example.com;"
	               "m l@example.com z@other.org;");
	/* Stopping inside the list rows stops the scan. */
	memset(&o, 0, sizeof o);
	o.stop_after = 3;
	CHECK_INT(directory_scan(d, scan_row, &o, &seq1), DIRECTORY_OK);
	CHECK_INT(o.calls, 3);
	/* Joining and leaving log the list's own address; so do add and del. */
	const char *j[] = {"new@other.org"};
	CHECK_INT(directory_list_join(d, "empty@example.com", j, 1, NULL), DIRECTORY_OK);
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_changes(d, seq0, list_key, &o, &seq1, &gap), DIRECTORY_OK);
	CHECK_INT(gap, 0);
	CHECK_STR(o.s, "empty@example.com;");
	CHECK(seq1 > seq0);
	CHECK_INT(directory_list_leave(d, "l@example.com", m, 1, NULL), DIRECTORY_OK);
	CHECK_INT(directory_list_del(d, "empty@example.com"), DIRECTORY_OK);
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_changes(d, seq1, list_key, &o, &seq2, &gap), DIRECTORY_OK);
	CHECK_STR(o.s, "l@example.com;empty@example.com;");
	/* A change made by another connection to a member row is seen too. */
	CHECK_INT(raw_exec(t.path, "UPDATE list_members SET member = 'y@other.org'"
	                           " WHERE member = 'a@example.com'"),
	          0);
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_changes(d, seq2, list_key, &o, &seq2, &gap), DIRECTORY_OK);
	CHECK_STR(o.s, "l@example.com;");
	tdir_close(&t);
}

/* The schema of today's (version 1) directory, as the previous release creates it. */
static const char v1_schema[] =
        "CREATE TABLE accounts(address TEXT PRIMARY KEY NOT NULL, password TEXT,"
        " state INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE aliases(alias TEXT NOT NULL, target TEXT NOT NULL,"
        " PRIMARY KEY(alias, target)) WITHOUT ROWID;"
        "CREATE TABLE change_log(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " address TEXT NOT NULL, at INTEGER NOT NULL);"
        "CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value INTEGER);"
        "CREATE TRIGGER accounts_ins AFTER INSERT ON accounts BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.address, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "CREATE TRIGGER aliases_ins AFTER INSERT ON aliases BEGIN"
        " INSERT INTO change_log(address, at) VALUES(NEW.alias, CAST(strftime('%s','now') AS"
        " INTEGER)); END;"
        "PRAGMA journal_mode = WAL;"
        "INSERT INTO accounts VALUES('old@example.com', '$y$h', 0, 1);"
        "INSERT INTO aliases VALUES('al@example.com', 'old@example.com');"
        "PRAGMA user_version = 1;";

TEST(version_1_directory_is_upgraded_in_place)
{
	char dir[] = "/tmp/test_directory-v1.XXXXXX", path[96], err[256] = "";
	if (!CHECK(mkdtemp(dir) != NULL))
		return;
	snprintf(path, sizeof path, "%s/directory.db", dir);
	CHECK_INT(raw_exec(path, v1_schema), 0);
	/* Read-only cannot upgrade it, and says so. */
	CHECK(directory_open(path, 1, err, sizeof err) == NULL);
	CHECK(strstr(err, "older") != NULL);
	struct directory *d = directory_open(path, 0, err, sizeof err);
	if (!CHECK(d != NULL)) {
		fprintf(stderr, "    %s\n", err);
		return;
	}
	/* The old rows and the log's positions are kept... */
	struct out o = {0};
	int64_t seq = -1;
	CHECK_INT(directory_scan(d, scan_row, &o, &seq), DIRECTORY_OK);
	CHECK_STR(o.s, "A old@example.com active;L al@example.com old@example.com;");
	CHECK_INT(seq, 2);
	/* ...the old triggers still log, the new tables work and log. */
	CHECK_INT(directory_account_add(d, "new@example.com", NULL, ACCOUNT_ACTIVE), DIRECTORY_OK);
	CHECK_INT(directory_list_add(d, "list@example.com", NULL, 0), DIRECTORY_OK);
	CHECK_INT(directory_list_add(d, "old@example.com", NULL, 0), DIRECTORY_EXISTS);
	const char *m[] = {"old@example.com"};
	CHECK_INT(directory_list_join(d, "list@example.com", m, 1, NULL), DIRECTORY_OK);
	int gap = -1;
	memset(&o, 0, sizeof o);
	CHECK_INT(directory_changes(d, 2, list_key, &o, &seq, &gap), DIRECTORY_OK);
	CHECK_INT(gap, 0);
	CHECK_STR(o.s, "new@example.com;list@example.com;");
	directory_close(d);
	/* It is version 2 now, and opens read-only. */
	d = directory_open(path, 1, err, sizeof err);
	if (CHECK(d != NULL)) {
		struct directory_list_info info;
		CHECK_INT(directory_list_get(d, "list@example.com", &info), DIRECTORY_OK);
		CHECK_INT(info.n_members, 1);
		directory_close(d);
	}
	sqlite3 *db;
	sqlite3_stmt *s;
	CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_INT(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(s), SQLITE_ROW);
	CHECK_INT(sqlite3_column_int(s, 0), 2);
	sqlite3_finalize(s);
	sqlite3_close(db);
	char p[128];
	static const char *const sfx[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", path, sfx[i]);
		unlink(p);
	}
	rmdir(dir);
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
          T(read_transaction_groups_calls), T(list_owner_default_and_list_id), T(lists_add_get_del),
          T(list_address_exclusive_with_accounts_and_aliases), T(list_join_and_leave_all_or_none),
          T(lists_in_scan_and_change_log), T(version_1_directory_is_upgraded_in_place),
          T(strerror_covers_all))
