/*
 * Unit tests for collect/collect_state in a temporary folder: records survive a
 * close and reopen, batches are all or nothing, since follows the state, the
 * UIDLs of a source are listed, forgotten and retained, dedupe rows are seen
 * across sources and pruned by age, errors name the file, and the durability
 * settings (WAL, synchronous=FULL) are what the header promises.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sqlite3.h>

#include "collect/collect_state.h"
#include "harness.h"

#define SRC "pop3://dom@pop.isp.example:110"
#define SRC2 "pop3://other@pop.isp.example:110"

static char dir[64], path[128];

static struct collect_state *open_fresh(void)
{
	char err[512];
	snprintf(dir, sizeof dir, "/tmp/sm-cstate-XXXXXX");
	if (!mkdtemp(dir))
		return NULL;
	snprintf(path, sizeof path, "%s/%s", dir, COLLECT_STATE_FILE);
	struct collect_state *st = collect_state_open(path, err, sizeof err);
	if (!st)
		fprintf(stderr, "  open: %s\n", err);
	return st;
}

static struct collect_state *reopen(struct collect_state *st)
{
	char err[512];
	collect_state_close(st);
	st = collect_state_open(path, err, sizeof err);
	if (!st)
		fprintf(stderr, "  reopen: %s\n", err);
	return st;
}

static void cleanup(struct collect_state *st)
{
	char p[192];
	collect_state_close(st);
	static const char *const files[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", path, files[i]);
		unlink(p);
	}
	rmdir(dir);
}

TEST(record_survives_reopen)
{
	struct collect_state *st = open_fresh();
	if (!CHECK(st != NULL))
		return;
	const struct collect_state_uidl_rec u[] = {{"UID-1", COLLECT_STATE_UIDL_COLLECTED},
	                                           {"UID-2", COLLECT_STATE_UIDL_OVERSIZE}};
	const struct collect_state_dedupe_rec d[] = {{"m:a@b", "bob@ours.example"},
	                                             {"m:a@b", "carol@ours.example"}};
	CHECK_INT(collect_state_record(st, SRC, u, 2, d, 2, 1000), 0);
	st = reopen(st);
	if (!CHECK(st != NULL))
		return;
	int64_t since = 0;
	CHECK_INT(collect_state_uidl_get(st, SRC, "UID-1", &since), COLLECT_STATE_UIDL_COLLECTED);
	CHECK_INT(since, 1000);
	CHECK_INT(collect_state_uidl_get(st, SRC, "UID-2", NULL), COLLECT_STATE_UIDL_OVERSIZE);
	CHECK_INT(collect_state_uidl_get(st, SRC, "UID-3", NULL), COLLECT_STATE_UIDL_UNKNOWN);
	/* UIDLs are per source; case matters (RFC 1939 7: the server's exact string) */
	CHECK_INT(collect_state_uidl_get(st, SRC2, "UID-1", NULL), COLLECT_STATE_UIDL_UNKNOWN);
	CHECK_INT(collect_state_uidl_get(st, SRC, "uid-1", NULL), COLLECT_STATE_UIDL_UNKNOWN);
	CHECK_INT(collect_state_dedupe_seen(st, "m:a@b", "bob@ours.example"), 1);
	CHECK_INT(collect_state_dedupe_seen(st, "m:a@b", "carol@ours.example"), 1);
	CHECK_INT(collect_state_dedupe_seen(st, "m:a@b", "dave@ours.example"), 0);
	CHECK_INT(collect_state_dedupe_seen(st, "m:other@b", "bob@ours.example"), 0);
	CHECK_STR(collect_state_error(st), "");
	cleanup(st);
}

/* A batch with one bad record writes nothing, the good ones included. */
TEST(batch_is_one_transaction)
{
	struct collect_state *st = open_fresh();
	if (!CHECK(st != NULL))
		return;
	struct collect_state_uidl_rec u[200];
	char names[200][16];
	for (int i = 0; i < 200; i++) {
		snprintf(names[i], sizeof names[i], "u%03d", i);
		u[i].uidl = names[i];
		u[i].state = COLLECT_STATE_UIDL_COLLECTED;
	}
	const struct collect_state_dedupe_rec bad_d[] = {{"m:x@y", ""}};
	CHECK_INT(collect_state_record(st, SRC, u, 200, bad_d, 1, 10), -1);
	CHECK(strstr(collect_state_error(st), path) != NULL);
	CHECK_INT(collect_state_uidl_get(st, SRC, "u000", NULL), COLLECT_STATE_UIDL_UNKNOWN);
	CHECK_INT(collect_state_uidl_get(st, SRC, "u199", NULL), COLLECT_STATE_UIDL_UNKNOWN);

	/* over-long, empty, unprintable UIDLs and a missing state are refused */
	char long_uidl[COLLECT_STATE_UIDL_MAX + 2];
	memset(long_uidl, 'x', sizeof long_uidl - 1);
	long_uidl[sizeof long_uidl - 1] = '\0';
	const char *bad[] = {long_uidl, "", "a b", "a\x7f"};
	for (size_t i = 0; i < 4; i++) {
		struct collect_state_uidl_rec one[2] = {{"ok-1", COLLECT_STATE_UIDL_COLLECTED},
		                                        {bad[i], COLLECT_STATE_UIDL_COLLECTED}};
		CHECK_INT(collect_state_record(st, SRC, one, 2, NULL, 0, 10), -1);
	}
	struct collect_state_uidl_rec nostate = {"ok-1", COLLECT_STATE_UIDL_UNKNOWN};
	CHECK_INT(collect_state_record(st, SRC, &nostate, 1, NULL, 0, 10), -1);
	CHECK_INT(collect_state_record(st, "", u, 1, NULL, 0, 10), -1);
	CHECK_INT(collect_state_uidl_get(st, SRC, "ok-1", NULL), COLLECT_STATE_UIDL_UNKNOWN);

	/* exactly 70 octets is fine; the good batch records all of it */
	long_uidl[COLLECT_STATE_UIDL_MAX] = '\0';
	u[0].uidl = long_uidl;
	const struct collect_state_dedupe_rec d[] = {{"m:x@y", "bob@ours.example"}};
	CHECK_INT(collect_state_record(st, SRC, u, 200, d, 1, 10), 0);
	CHECK_INT(collect_state_uidl_get(st, SRC, long_uidl, NULL), COLLECT_STATE_UIDL_COLLECTED);
	CHECK_INT(collect_state_uidl_get(st, SRC, "u199", NULL), COLLECT_STATE_UIDL_COLLECTED);
	CHECK_INT(collect_state_dedupe_seen(st, "m:x@y", "bob@ours.example"), 1);
	cleanup(st);
}

/* since changes with the state only; a repeated dedupe row keeps its first time. */
TEST(since_and_repeats)
{
	struct collect_state *st = open_fresh();
	if (!CHECK(st != NULL))
		return;
	struct collect_state_uidl_rec u = {"A", COLLECT_STATE_UIDL_OVERSIZE};
	const struct collect_state_dedupe_rec d = {"d:100", "bob@ours.example"};
	int64_t since = 0;
	CHECK_INT(collect_state_record(st, SRC, &u, 1, &d, 1, 100), 0);
	CHECK_INT(collect_state_record(st, SRC, &u, 1, &d, 1, 200), 0);
	CHECK_INT(collect_state_uidl_get(st, SRC, "A", &since), COLLECT_STATE_UIDL_OVERSIZE);
	CHECK_INT(since, 100);
	u.state = COLLECT_STATE_UIDL_COLLECTED; /* max_size raised: collected later */
	CHECK_INT(collect_state_record(st, SRC, &u, 1, NULL, 0, 300), 0);
	CHECK_INT(collect_state_uidl_get(st, SRC, "A", &since), COLLECT_STATE_UIDL_COLLECTED);
	CHECK_INT(since, 300);
	/* the dedupe row kept time 100: pruning before 150 removes it */
	CHECK_INT(collect_state_prune(st, 150), 1);
	CHECK_INT(collect_state_dedupe_seen(st, "d:100", "bob@ours.example"), 0);
	cleanup(st);
}

struct walk {
	char seen[8][16];
	int n, stop_after;
};

static int walk_fn(void *arg, const char *uidl, enum collect_state_uidl state, int64_t since)
{
	struct walk *w = arg;
	CHECK(state == COLLECT_STATE_UIDL_COLLECTED && since == 5);
	if (w->n < 8)
		snprintf(w->seen[w->n], sizeof w->seen[0], "%s", uidl);
	w->n++;
	return w->stop_after && w->n >= w->stop_after;
}

TEST(each_forget_retain)
{
	struct collect_state *st = open_fresh();
	if (!CHECK(st != NULL))
		return;
	const struct collect_state_uidl_rec u[] = {{"c", COLLECT_STATE_UIDL_COLLECTED},
	                                           {"a", COLLECT_STATE_UIDL_COLLECTED},
	                                           {"b", COLLECT_STATE_UIDL_COLLECTED},
	                                           {"d", COLLECT_STATE_UIDL_COLLECTED}};
	CHECK_INT(collect_state_record(st, SRC, u, 4, NULL, 0, 5), 0);
	CHECK_INT(collect_state_record(st, SRC2, u, 1, NULL, 0, 5), 0);
	struct walk w = {0};
	CHECK_INT(collect_state_uidl_each(st, SRC, walk_fn, &w), 4);
	CHECK_STR(w.seen[0], "a");
	CHECK_STR(w.seen[3], "d");
	struct walk w2 = {.stop_after = 2};
	CHECK_INT(collect_state_uidl_each(st, SRC, walk_fn, &w2), 2);

	const char *gone[] = {"a", "zz"};
	CHECK_INT(collect_state_uidl_forget(st, SRC, gone, 2), 1);
	CHECK_INT(collect_state_uidl_get(st, SRC, "a", NULL), COLLECT_STATE_UIDL_UNKNOWN);
	CHECK_INT(collect_state_uidl_get(st, SRC, "b", NULL), COLLECT_STATE_UIDL_COLLECTED);

	/* the server now lists b and a new one: c and d go, the other source is untouched */
	const char *listing[] = {"b", "new", "b"};
	CHECK_INT(collect_state_uidl_retain(st, SRC, listing, 3), 2);
	struct walk w3 = {0};
	CHECK_INT(collect_state_uidl_each(st, SRC, walk_fn, &w3), 1);
	CHECK_STR(w3.seen[0], "b");
	CHECK_INT(collect_state_uidl_get(st, SRC2, "c", NULL), COLLECT_STATE_UIDL_COLLECTED);
	/* a retain does not leak its listing into the next one */
	CHECK_INT(collect_state_uidl_retain(st, SRC2, NULL, 0), 1);
	CHECK_INT(collect_state_uidl_get(st, SRC2, "c", NULL), COLLECT_STATE_UIDL_UNKNOWN);
	st = reopen(st);
	if (!CHECK(st != NULL))
		return;
	CHECK_INT(collect_state_uidl_get(st, SRC, "b", NULL), COLLECT_STATE_UIDL_COLLECTED);
	CHECK_INT(collect_state_uidl_get(st, SRC, "c", NULL), COLLECT_STATE_UIDL_UNKNOWN);
	cleanup(st);
}

/* Dedupe rows are shared by the sources and expire only by prune. */
TEST(dedupe_prune)
{
	struct collect_state *st = open_fresh();
	if (!CHECK(st != NULL))
		return;
	const struct collect_state_uidl_rec u1 = {"1", COLLECT_STATE_UIDL_COLLECTED};
	const struct collect_state_dedupe_rec old = {"m:old@x", "bob@ours.example"};
	const struct collect_state_dedupe_rec fresh = {"m:new@x", "bob@ours.example"};
	int64_t day = 86400, now = 100 * day;
	CHECK_INT(collect_state_record(st, SRC, &u1, 1, &old, 1, now - 8 * day), 0);
	CHECK_INT(collect_state_record(st, SRC2, &u1, 1, &fresh, 1, now - 6 * day), 0);
	CHECK_INT(collect_state_dedupe_seen(st, "m:old@x", "bob@ours.example"), 1);
	CHECK_INT(collect_state_prune(st, now - 7 * day), 1);
	CHECK_INT(collect_state_dedupe_seen(st, "m:old@x", "bob@ours.example"), 0);
	CHECK_INT(collect_state_dedupe_seen(st, "m:new@x", "bob@ours.example"), 1);
	CHECK_INT(collect_state_prune(st, now - 7 * day), 0);
	/* UIDLs are not pruned */
	CHECK_INT(collect_state_uidl_get(st, SRC, "1", NULL), COLLECT_STATE_UIDL_COLLECTED);
	st = reopen(st);
	if (!CHECK(st != NULL))
		return;
	CHECK_INT(collect_state_dedupe_seen(st, "m:old@x", "bob@ours.example"), 0);
	CHECK_INT(collect_state_dedupe_seen(st, "m:new@x", "bob@ours.example"), 1);
	cleanup(st);
}

static int pragma_text(const char *p, const char *sql, char *out, size_t outsz)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int ok = 0;
	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return 0;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		snprintf(out, outsz, "%s", (const char *)sqlite3_column_text(st, 0));
		ok = 1;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok;
}

/* WAL on the file; the schema version is stamped; a newer one is refused. */
TEST(durability_settings_and_version)
{
	struct collect_state *st = open_fresh();
	char out[64], err[512];
	if (!CHECK(st != NULL))
		return;
	CHECK(pragma_text(path, "PRAGMA journal_mode", out, sizeof out));
	CHECK_STR(out, "wal");
	CHECK(pragma_text(path, "PRAGMA user_version", out, sizeof out));
	CHECK_STR(out, "1");
	collect_state_close(st);
	st = NULL;

	sqlite3 *db;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "PRAGMA user_version = 9", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	CHECK(collect_state_open(path, err, sizeof err) == NULL);
	CHECK(strstr(err, path) != NULL && strstr(err, "newer") != NULL);
	cleanup(NULL);
}

/*
 * fsync and fdatasync of this binary stand in for libc's (the dynamic linker
 * binds libsqlite3's calls to them), so the test can count SQLite's syncs.
 */
static int syncs;

int fdatasync(int fd)
{
	syncs++;
	return (int)syscall(SYS_fdatasync, fd);
}

int fsync(int fd)
{
	syncs++;
	return (int)syscall(SYS_fsync, fd);
}

/* synchronous=FULL: every committed record has been synced when it returns. */
TEST(commit_syncs)
{
	struct collect_state *st = open_fresh();
	if (!CHECK(st != NULL))
		return;
	for (int i = 0; i < 3; i++) {
		char name[8];
		snprintf(name, sizeof name, "W%d", i);
		const struct collect_state_uidl_rec u = {name, COLLECT_STATE_UIDL_COLLECTED};
		syncs = 0;
		CHECK_INT(collect_state_record(st, SRC, &u, 1, NULL, 0, 1), 0);
		CHECK(syncs >= 1); /* NORMAL would not sync a WAL commit */
	}
	/* a failed batch commits nothing: nothing to sync */
	const struct collect_state_uidl_rec bad = {"", COLLECT_STATE_UIDL_COLLECTED};
	syncs = 0;
	CHECK_INT(collect_state_record(st, SRC, &bad, 1, NULL, 0, 1), -1);
	CHECK_INT(syncs, 0);
	cleanup(st);
}

TEST(open_errors_name_the_file)
{
	char err[512];
	CHECK(collect_state_open("/nonexistent-dir/sub/collect.db", err, sizeof err) == NULL);
	CHECK(strstr(err, "/nonexistent-dir/sub/collect.db") != NULL);
	collect_state_close(NULL);
}

TEST_MAIN(T(record_survives_reopen), T(batch_is_one_transaction), T(since_and_repeats),
          T(each_forget_retain), T(dedupe_prune), T(durability_settings_and_version),
          T(commit_syncs), T(open_errors_name_the_file))
