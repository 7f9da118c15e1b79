/*
 * Unit tests for verify/mailbox_index and mailbox_lookup(): alias resolution, the
 * change-log refresh, failure handling, concurrency and the 1M-account budget.
 * SHAREMAIL_BIG_TESTS=1 builds the 1,000,000-account index (default: 100,000).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "directory/directory.h"
#include "harness.h"
#include "verify/lookup.h"
#include "proto/mailaddr.h"
#include "verify/mailbox_index.h"

static const char *const domains[] = {"example.com", "Example.NET"};

struct fixture {
	char dir[64];
	char path[96];
	struct directory *d; /* the writer's connection (the CLI) */
	struct mailbox_index *idx;
};

static int fx_open(struct fixture *f)
{
	char err[256] = "";
	memset(f, 0, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_mbxindex.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/directory.db", f->dir);
	f->d = directory_open(f->path, 0, err, sizeof err);
	if (!f->d) {
		fprintf(stderr, "directory_open: %s\n", err);
		return -1;
	}
	return 0;
}

static int fx_index(struct fixture *f)
{
	char err[256] = "";
	f->idx = mailbox_index_open(f->path, domains, 2, err, sizeof err);
	if (!f->idx)
		fprintf(stderr, "mailbox_index_open: %s\n", err);
	return f->idx ? 0 : -1;
}

static void fx_close(struct fixture *f)
{
	char p[128];
	mailbox_index_free(f->idx);
	directory_close(f->d);
	static const char *const sfx[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", f->path, sfx[i]);
		unlink(p);
	}
	rmdir(f->dir);
}

static int raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(db, 5000);
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		fprintf(stderr, "raw_exec: %s\n", sqlite3_errmsg(db));
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

/* Adds an alias with up to 4 targets given inline. */
static enum directory_result add_alias(struct directory *d, const char *alias, const char *t1,
                                       const char *t2, const char *t3, const char *t4)
{
	const char *v[4];
	size_t n = 0;
	const char *in[4] = {t1, t2, t3, t4};
	for (size_t i = 0; i < 4; i++)
		if (in[i])
			v[n++] = in[i];
	return directory_alias_add(d, alias, v, n);
}

/* Looks one address up; returns "NOTFOUND", "TEMPFAIL" or "<kind> <can_receive>[ full]". */
static const char *ask(struct mailbox_index *idx, const char *addr)
{
	static char buf[64];
	/* Every output starts as garbage: the lookup must set each one. */
	struct lookup_answer a = {.kind = LOOKUP_KIND_ALIAS_LOCAL,
	                          .can_receive = 7,
	                          .over_quota = 7,
	                          .members_only = 7,
	                          .sender_member = 7};
	enum lookup_result r = mailbox_lookup(idx, addr, strlen(addr), &a);
	if (r == LOOKUP_NOTFOUND)
		return a.kind == LOOKUP_KIND_NONE && !a.members_only && !a.sender_member
		               ? "NOTFOUND"
		               : "NOTFOUND-but-kind-set";
	if (r == LOOKUP_TEMPFAIL)
		return "TEMPFAIL";
	static const char *const kinds[] = {"none", "account", "alias-local", "alias-foreign",
	                                    "list"};
	snprintf(buf, sizeof buf, "%s %d%s%s%s", kinds[a.kind], a.can_receive,
	         a.over_quota ? " full" : "", a.members_only ? " members-only" : "",
	         a.sender_member ? " member?!" : "");
	return buf;
}

/* Asks as RCPT does, with an envelope sender: "member", "stranger" or the failure. */
static const char *ask_from(struct mailbox_index *idx, const char *addr, const char *sender,
                            size_t sender_len)
{
	struct lookup_answer a;
	memset(&a, 0, sizeof a);
	a.sender = sender;
	a.sender_len = sender_len;
	a.sender_member = 7;
	enum lookup_result r = mailbox_lookup(idx, addr, strlen(addr), &a);
	if (r != LOOKUP_FOUND)
		return r == LOOKUP_NOTFOUND ? "NOTFOUND" : "TEMPFAIL";
	if (a.sender != sender || a.sender_len != sender_len)
		return "sender-changed";
	if (a.kind != LOOKUP_KIND_LIST)
		return a.sender_member ? "not-a-list-but-member" : "not-a-list";
	return a.sender_member == 1 ? "member" : a.sender_member == 0 ? "stranger" : "unset";
}

/* The directory used by the resolution table below. */
static int fill_sample(struct directory *d)
{
	int bad = 0;
	bad |= directory_account_add(d, "alice@example.com", NULL, ACCOUNT_ACTIVE);
	bad |= directory_account_add(d, "dis@example.com", NULL, ACCOUNT_DISABLED);
	bad |= directory_account_add(d, "full@example.com", NULL, ACCOUNT_OVER_QUOTA);
	bad |= directory_account_add(d, "net@example.net", NULL, ACCOUNT_ACTIVE);
	bad |= add_alias(d, "sales@example.com", "Alice@Example.com", NULL, NULL, NULL);
	bad |= add_alias(d, "off@example.com", "dis@example.com", "full@example.com", NULL, NULL);
	bad |= add_alias(d, "mixed@example.com", "dis@example.com", "bob@other.org", NULL, NULL);
	bad |= add_alias(d, "mixed2@example.com", "bob@other.org", "alice@example.com", NULL, NULL);
	bad |= add_alias(d, "fwd@example.com", "bob@other.org", "carol@else.net", NULL, NULL);
	bad |= add_alias(d, "ghost@example.com", "nobody@example.com", "none@example.net", NULL,
	                 NULL);
	bad |= add_alias(d, "ghostfwd@example.com", "nobody@example.com", "x@other.org", NULL,
	                 NULL);
	bad |= add_alias(d, "lit@example.com", "x@[192.0.2.1]", NULL, NULL, NULL);
	bad |= add_alias(d, "via@example.com", "fwd@example.com", NULL, NULL, NULL);
	bad |= add_alias(d, "via2@example.com", "sales@example.com", "fwd@example.com", NULL, NULL);
	bad |= add_alias(d, "loop1@example.com", "loop2@example.com", NULL, NULL, NULL);
	bad |= add_alias(d, "loop2@example.com", "loop1@example.com", NULL, NULL, NULL);
	bad |= add_alias(d, "loopok@example.com", "loop1@example.com", "alice@example.com", NULL,
	                 NULL);
	/* A chain c1 -> c2 -> ... -> c9 -> alice: c2 is 8 alias levels from alice, c1 is 9. */
	char a[64], b[64];
	for (int i = 1; i <= 9; i++) {
		snprintf(a, sizeof a, "c%d@example.com", i);
		if (i < 9)
			snprintf(b, sizeof b, "c%d@example.com", i + 1);
		else
			snprintf(b, sizeof b, "alice@example.com");
		bad |= add_alias(d, a, b, NULL, NULL, NULL);
	}
	return bad;
}

TEST(lookup_resolution)
{
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	CHECK_INT(fill_sample(f.d), 0);
	if (!CHECK_INT(fx_index(&f), 0)) {
		fx_close(&f);
		return;
	}
	static const struct {
		const char *addr;
		const char *want;
	} cases[] = {
	        {"alice@example.com", "account 1"},
	        {"ALICE@EXAMPLE.COM", "account 1"},
	        {"aLiCe@example.COM", "account 1"},
	        {"dis@example.com", "account 0"},
	        {"full@example.com", "account 0 full"},
	        {"net@EXAMPLE.net", "account 1"},
	        {"bob@example.com", "NOTFOUND"},
	        {"alice@other.org", "NOTFOUND"},
	        {"alice", "NOTFOUND"},
	        {"", "NOTFOUND"},
	        {"alice@example.com ", "NOTFOUND"},
	        {"<alice@example.com>", "NOTFOUND"},
	        {"sales@example.com", "alias-local 1"},
	        {"Sales@Example.Com", "alias-local 1"},
	        {"off@example.com", "alias-local 0 full"},
	        {"mixed@example.com", "alias-local 0"},
	        {"mixed2@example.com", "alias-local 1"},
	        {"fwd@example.com", "alias-foreign 1"},
	        {"ghost@example.com", "NOTFOUND"},
	        {"ghostfwd@example.com", "alias-foreign 1"},
	        {"lit@example.com", "alias-foreign 1"},
	        {"via@example.com", "alias-foreign 1"},
	        {"via2@example.com", "alias-local 1"},
	        {"loop1@example.com", "NOTFOUND"},
	        {"loop2@example.com", "NOTFOUND"},
	        {"loopok@example.com", "alias-local 1"},
	        {"c9@example.com", "alias-local 1"},
	        {"c2@example.com", "alias-local 1"},
	        {"c1@example.com", "NOTFOUND"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (!CHECK_STR(ask(f.idx, cases[i].addr), cases[i].want))
			fprintf(stderr, "    for %s\n", cases[i].addr);
	}
	CHECK_INT(mailbox_index_count(f.idx), 4 + 13 + 9);
	/* The length argument is honoured (no NUL needed). */
	struct lookup_answer a;
	CHECK_INT(mailbox_lookup(f.idx, "alice@example.comXYZ", 17, &a), LOOKUP_FOUND);
	CHECK_INT(mailbox_lookup(f.idx, "alice@example.co", 16, &a), LOOKUP_NOTFOUND);
	/* A batch under one read lock gives the same answers. */
	mailbox_index_read_lock(f.idx);
	CHECK_INT(mailbox_lookup_locked(f.idx, "SALES@example.com", 17, &a), LOOKUP_FOUND);
	CHECK_INT(a.kind, LOOKUP_KIND_ALIAS_LOCAL);
	CHECK_INT(mailbox_lookup_locked(f.idx, "nobody@example.com", 18, &a), LOOKUP_NOTFOUND);
	/* The prefetch path (hash from prefetch_slot, no re-parse) answers alike for every
	 * valid mailbox of the table. */
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mailaddr m;
		const char *s = cases[i].addr;
		if (mailaddr_parse_exact(s, strlen(s), &m) != MAILADDR_OK)
			continue;
		struct lookup_answer p, q;
		uint64_t h = mailbox_index_prefetch_slot(f.idx, s, strlen(s));
		mailbox_index_prefetch_entry(f.idx, h);
		CHECK(h != 0);
		enum lookup_result rp =
		        mailbox_lookup_prefetched_locked(f.idx, s, strlen(s), h, &p);
		enum lookup_result rq = mailbox_lookup_locked(f.idx, s, strlen(s), &q);
		if (!CHECK_INT(rp, rq) || !CHECK_INT(p.kind, q.kind) ||
		    !CHECK_INT(p.can_receive, q.can_receive))
			fprintf(stderr, "    prefetched path differs for %s\n", s);
	}
	mailbox_index_read_unlock(f.idx);
	fx_close(&f);
}

TEST(wide_alias_graph_is_bounded)
{
	/* 20 aliases each pointing at all 20 (and one disabled account): 20^8 paths unless
	   the walk is bounded. It must answer promptly, and correctly. */
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	char names[20][32];
	const char *v[21];
	for (int i = 0; i < 20; i++) {
		snprintf(names[i], sizeof names[i], "w%d@example.com", i);
		v[i] = names[i];
	}
	v[20] = "dis@example.com";
	CHECK_INT(directory_account_add(f.d, "dis@example.com", NULL, ACCOUNT_DISABLED),
	          DIRECTORY_OK);
	for (int i = 0; i < 20; i++) {
		const char *tg[21];
		size_t n = 0;
		for (int j = 0; j < 21; j++)
			if (j != i)
				tg[n++] = v[j];
		CHECK_INT(directory_alias_add(f.d, names[i], tg, n), DIRECTORY_OK);
	}
	if (CHECK_INT(fx_index(&f), 0)) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		CHECK_STR(ask(f.idx, "w0@example.com"), "alias-local 0");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
		CHECK(ms < 1000);
	}
	fx_close(&f);
}

TEST(refresh_applies_changes)
{
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	CHECK_INT(directory_account_add(f.d, "alice@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	if (!CHECK_INT(fx_index(&f), 0)) {
		fx_close(&f);
		return;
	}
	CHECK_INT(mailbox_index_refresh(f.idx), 0); /* nothing changed */
	CHECK_INT(directory_account_add(f.d, "bob@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_STR(ask(f.idx, "bob@example.com"), "NOTFOUND"); /* not yet refreshed */
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "bob@example.com"), "account 1");
	CHECK_INT(mailbox_index_count(f.idx), 2);

	/* State changes, several per refresh, and an address changed twice. */
	CHECK_INT(directory_account_set_state(f.d, "bob@example.com", ACCOUNT_DISABLED),
	          DIRECTORY_OK);
	CHECK_INT(directory_account_set_state(f.d, "alice@example.com", ACCOUNT_OVER_QUOTA),
	          DIRECTORY_OK);
	CHECK_INT(directory_account_set_state(f.d, "bob@example.com", ACCOUNT_OVER_QUOTA),
	          DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 2);
	CHECK_STR(ask(f.idx, "bob@example.com"), "account 0 full");
	CHECK_STR(ask(f.idx, "alice@example.com"), "account 0 full");
	CHECK_INT(directory_account_set_state(f.d, "alice@example.com", ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "alice@example.com"), "account 1");

	/* Aliases come and go; an account turns into an alias. */
	CHECK_INT(add_alias(f.d, "team@example.com", "bob@example.com", "x@other.org", NULL, NULL),
	          DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "team@example.com"), "alias-local 0 full");
	CHECK_INT(directory_account_set_state(f.d, "bob@example.com", ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "team@example.com"), "alias-local 1");
	CHECK_INT(directory_account_del(f.d, "bob@example.com"), DIRECTORY_OK);
	CHECK_INT(add_alias(f.d, "bob@example.com", "alice@example.com", NULL, NULL, NULL),
	          DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "bob@example.com"), "alias-local 1");
	CHECK_STR(ask(f.idx, "team@example.com"), "alias-local 1");
	CHECK_INT(directory_alias_del(f.d, "bob@example.com"), DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "bob@example.com"), "NOTFOUND");
	CHECK_STR(ask(f.idx, "team@example.com"), "alias-foreign 1");
	CHECK_INT(mailbox_index_count(f.idx), 2);
	/* Deleted then re-added (tombstone reuse). */
	CHECK_INT(directory_account_add(f.d, "bob@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "bob@example.com"), "account 1");
	CHECK_INT(mailbox_index_count(f.idx), 3);
	fx_close(&f);
}

TEST(refresh_many_changes_and_gap_rescan)
{
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	if (!CHECK_INT(fx_index(&f), 0)) {
		fx_close(&f);
		return;
	}
	CHECK_INT(mailbox_index_count(f.idx), 0);
	/* 6000 changes in one go (more than one refresh re-reads one by one). */
	CHECK_INT(raw_exec(f.path, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1"
	                           " FROM n WHERE i < 6000) INSERT INTO accounts SELECT 'u' || i"
	                           " || '@example.com', NULL, 0, 0 FROM n; COMMIT;"),
	          0);
	CHECK_INT(mailbox_index_refresh(f.idx), 6000);
	CHECK_INT(mailbox_index_count(f.idx), 6000);
	CHECK_STR(ask(f.idx, "u1@example.com"), "account 1");
	CHECK_STR(ask(f.idx, "U6000@example.com"), "account 1");
	CHECK_STR(ask(f.idx, "u6001@example.com"), "NOTFOUND");
	/* Changes pruned before the index saw them: it notices the gap and rescans. */
	CHECK_INT(directory_account_set_state(f.d, "u5@example.com", ACCOUNT_DISABLED),
	          DIRECTORY_OK);
	CHECK_INT(directory_account_del(f.d, "u6@example.com"), DIRECTORY_OK);
	CHECK_INT(directory_account_add(f.d, "new@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_INT(directory_prune_changes(f.d, -3600), DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 6000);
	CHECK_STR(ask(f.idx, "u5@example.com"), "account 0");
	CHECK_STR(ask(f.idx, "u6@example.com"), "NOTFOUND");
	CHECK_STR(ask(f.idx, "new@example.com"), "account 1");
	CHECK_INT(mailbox_index_refresh(f.idx), 0);
	fx_close(&f);
}

TEST(failed_refresh_answers_tempfail)
{
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	CHECK_INT(directory_account_add(f.d, "alice@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	if (!CHECK_INT(fx_index(&f), 0)) {
		fx_close(&f);
		return;
	}
	CHECK_INT(mailbox_index_failed(f.idx), 0);
	/* Break the change log under the index (as a damaged file would). */
	CHECK_INT(raw_exec(f.path, "ALTER TABLE change_log RENAME TO change_log_away"), 0);
	CHECK_INT(mailbox_index_refresh(f.idx), -1);
	CHECK_INT(mailbox_index_failed(f.idx), 1);
	/* Never a definite "no" (nor a stale "yes") while the directory cannot be read. */
	CHECK_STR(ask(f.idx, "alice@example.com"), "TEMPFAIL");
	CHECK_STR(ask(f.idx, "nobody@example.com"), "TEMPFAIL");
	struct lookup_answer a;
	mailbox_index_read_lock(f.idx);
	CHECK_INT(mailbox_lookup_locked(f.idx, "alice@example.com", 17, &a), LOOKUP_TEMPFAIL);
	mailbox_index_read_unlock(f.idx);
	CHECK_INT(mailbox_index_refresh(f.idx), -1);
	CHECK_STR(ask(f.idx, "alice@example.com"), "TEMPFAIL");
	/* Repaired: the next refresh succeeds and answers come back. */
	CHECK_INT(raw_exec(f.path, "ALTER TABLE change_log_away RENAME TO change_log"), 0);
	CHECK(mailbox_index_refresh(f.idx) >= 0);
	CHECK_INT(mailbox_index_failed(f.idx), 0);
	CHECK_STR(ask(f.idx, "alice@example.com"), "account 1");
	CHECK_STR(ask(f.idx, "nobody@example.com"), "NOTFOUND");
	fx_close(&f);
}

TEST(open_creates_missing_directory_and_fails_cleanly)
{
	char err[256] = "";
	struct mailbox_index *idx =
	        mailbox_index_open("/nonexistent-dir/directory.db", domains, 2, err, sizeof err);
	CHECK(idx == NULL);
	CHECK(strlen(err) > 0);
	char dir[] = "/tmp/test_mbxindex-new.XXXXXX", path[96];
	if (!CHECK(mkdtemp(dir) != NULL))
		return;
	snprintf(path, sizeof path, "%s/directory.db", dir);
	idx = mailbox_index_open(path, NULL, 0, err, sizeof err);
	if (CHECK(idx != NULL)) {
		CHECK_INT(mailbox_index_count(idx), 0);
		CHECK_STR(ask(idx, "a@example.com"), "NOTFOUND");
		CHECK(mailbox_index_memory(idx) > 0);
		mailbox_index_free(idx);
	}
	mailbox_index_free(NULL);
	char p[128];
	static const char *const sfx[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", path, sfx[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* ---- mailing lists ---- */

static int add_list(struct directory *d, const char *list, const char *owner, int members_only,
                    const char *m1, const char *m2, const char *m3)
{
	const char *v[3];
	size_t n = 0;
	const char *in[3] = {m1, m2, m3};
	for (size_t i = 0; i < 3; i++)
		if (in[i])
			v[n++] = in[i];
	int bad = directory_list_add(d, list, owner, members_only);
	if (n > 0)
		bad |= directory_list_join(d, list, v, n, NULL);
	return bad;
}

static int fill_lists(struct directory *d)
{
	int bad = 0;
	bad |= directory_account_add(d, "alice@example.com", NULL, ACCOUNT_ACTIVE);
	bad |= directory_account_add(d, "dis@example.com", NULL, ACCOUNT_DISABLED);
	bad |= add_list(d, "open@example.com", NULL, 0, "alice@example.com", "Bob@Other.ORG", NULL);
	bad |= add_list(d, "closed@example.com", "boss@other.org", 1, "alice@example.com",
	                "bob@other.org", "dev.team@example.net");
	bad |= add_list(d, "empty@example.com", NULL, 1, NULL, NULL, NULL);
	bad |= add_list(d, "dev.team@example.net", NULL, 0, "dis@example.com", NULL, NULL);
	bad |= add_alias(d, "via@example.com", "closed@example.com", NULL, NULL, NULL);
	bad |= add_alias(d, "both@example.com", "dis@example.com", "open@example.com", NULL, NULL);
	return bad;
}

TEST(list_lookup_and_members_only)
{
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	CHECK_INT(fill_lists(f.d), 0);
	if (!CHECK_INT(fx_index(&f), 0)) {
		fx_close(&f);
		return;
	}
	static const struct {
		const char *addr, *want;
	} cases[] = {
	        {"open@example.com", "list 1"},
	        {"OPEN@Example.Com", "list 1"},
	        {"closed@example.com", "list 1 members-only"},
	        {"empty@example.com", "list 1 members-only"},
	        {"dev.team@example.net", "list 1"}, /* even though its one member is disabled */
	        {"via@example.com", "alias-local 1"},
	        {"both@example.com", "alias-local 1"},
	        {"open-owner@example.com", "NOTFOUND"}, /* the default owner is no address */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!CHECK_STR(ask(f.idx, cases[i].addr), cases[i].want))
			fprintf(stderr, "    for %s\n", cases[i].addr);
	static const struct {
		const char *list, *sender, *want;
	} from[] = {
	        {"closed@example.com", "alice@example.com", "member"},
	        {"closed@example.com", "ALICE@Example.COM", "member"}, /* by key, as stored */
	        {"closed@example.com", "bob@other.org", "member"},
	        {"closed@example.com", "Bob@OTHER.org", "member"},
	        {"closed@example.com", "dev.team@example.net", "member"},
	        {"closed@example.com", "carol@other.org", "stranger"},
	        {"closed@example.com", "boss@other.org", "stranger"}, /* the owner is no member */
	        {"closed@example.com", "closed@example.com", "stranger"},
	        {"closed@example.com", "", "stranger"}, /* <> */
	        {"closed@example.com", "not an address", "stranger"},
	        {"closed@example.com", "alice@example.co", "stranger"},
	        {"closed@example.com", "lice@example.com", "stranger"},
	        {"empty@example.com", "alice@example.com", "stranger"},
	        {"open@example.com", "bob@other.org", "member"},
	        {"open@example.com", "carol@other.org", "stranger"},
	        {"alice@example.com", "alice@example.com", "not-a-list"},
	        {"via@example.com", "carol@other.org", "not-a-list"},
	        {"nobody@example.com", "alice@example.com", "NOTFOUND"},
	};
	for (size_t i = 0; i < sizeof from / sizeof from[0]; i++)
		if (!CHECK_STR(
		            ask_from(f.idx, from[i].list, from[i].sender, strlen(from[i].sender)),
		            from[i].want))
			fprintf(stderr, "    %s from <%s>\n", from[i].list, from[i].sender);
	/* The sender's length is honoured: no NUL needed, none read past. */
	CHECK_STR(ask_from(f.idx, "closed@example.com", "alice@example.comXYZ", 17), "member");
	CHECK_STR(ask_from(f.idx, "closed@example.com", "alice@example.com", 16), "stranger");
	/* The prefetched path answers a list alike. */
	mailbox_index_read_lock(f.idx);
	struct lookup_answer p, q;
	memset(&p, 0, sizeof p);
	memset(&q, 0, sizeof q);
	p.sender = q.sender = "bob@other.org";
	p.sender_len = q.sender_len = 13;
	uint64_t h = mailbox_index_prefetch_slot(f.idx, "Closed@example.com", 18);
	CHECK_INT(mailbox_lookup_prefetched_locked(f.idx, "Closed@example.com", 18, h, &p),
	          LOOKUP_FOUND);
	CHECK_INT(mailbox_lookup_locked(f.idx, "Closed@example.com", 18, &q), LOOKUP_FOUND);
	CHECK_INT(p.kind, LOOKUP_KIND_LIST);
	CHECK_INT(q.kind, LOOKUP_KIND_LIST);
	CHECK_INT(p.members_only, 1);
	CHECK_INT(q.members_only, 1);
	CHECK_INT(p.sender_member, 1);
	CHECK_INT(q.sender_member, 1);
	mailbox_index_read_unlock(f.idx);
	CHECK_INT(mailbox_index_count(f.idx), 2 + 4 + 2);
	fx_close(&f);
}

/* Collects expansion output as "target/kind;" (mailbox_expand) or "member/local;". */
struct collected {
	char s[1024];
	int calls, stop_after;
};

static int collect(void *arg, const char *target, int kind)
{
	struct collected *c = arg;
	size_t n = strlen(c->s);
	snprintf(c->s + n, sizeof c->s - n, "%s/%d;", target, kind);
	c->calls++;
	return c->stop_after && c->calls >= c->stop_after;
}

TEST(list_expansion)
{
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	CHECK_INT(fill_lists(f.d), 0);
	if (!CHECK_INT(fx_index(&f), 0)) {
		fx_close(&f);
		return;
	}
	/* Delivery sees a list as one target of its own kind, never its members. */
	static const struct {
		const char *addr, *want;
	} exp[] = {
	        {"open@example.com", "open@example.com/4;"},
	        {"via@example.com", "closed@example.com/4;"},
	        {"both@example.com", "dis@example.com/2;open@example.com/4;"},
	};
	for (size_t i = 0; i < sizeof exp / sizeof exp[0]; i++) {
		struct collected c = {"", 0, 0};
		CHECK_INT(mailbox_expand(f.idx, exp[i].addr, strlen(exp[i].addr), collect, &c),
		          LOOKUP_FOUND);
		if (!CHECK_STR(c.s, exp[i].want))
			fprintf(stderr, "    for %s\n", exp[i].addr);
	}
	/* A post to a list: owner, List-Id, flags and members (local 1, foreign 0). */
	struct mailbox_list info;
	struct collected c = {"", 0, 0};
	CHECK_INT(mailbox_list_expand(f.idx, "Closed@Example.com", 18, &info, collect, &c),
	          LOOKUP_FOUND);
	CHECK_STR(info.address, "closed@example.com");
	CHECK_STR(info.owner, "boss@other.org");
	CHECK_STR(info.list_id, "<closed.example.com>");
	CHECK_INT(info.members_only, 1);
	CHECK_INT(info.n_members, 3);
	CHECK_STR(c.s, "alice@example.com/1;bob@other.org/0;dev.team@example.net/1;");
	memset(&c, 0, sizeof c);
	CHECK_INT(mailbox_list_expand(f.idx, "dev.team@example.net", 20, &info, collect, &c),
	          LOOKUP_FOUND);
	CHECK_STR(info.owner, "dev.team-owner@example.net");
	CHECK_STR(info.list_id, "<dev.team.example.net>");
	CHECK_INT(info.members_only, 0);
	CHECK_STR(c.s, "dis@example.com/1;"); /* the list does not judge its members */
	memset(&c, 0, sizeof c);
	CHECK_INT(mailbox_list_expand(f.idx, "empty@example.com", 17, &info, collect, &c),
	          LOOKUP_FOUND);
	CHECK_INT(info.n_members, 0);
	CHECK_INT(c.calls, 0);
	CHECK_STR(info.owner, "empty-owner@example.com");
	/* fn NULL: the list's facts only; a non-zero return stops. */
	CHECK_INT(mailbox_list_expand(f.idx, "open@example.com", 16, &info, NULL, NULL),
	          LOOKUP_FOUND);
	CHECK_INT(info.n_members, 2);
	memset(&c, 0, sizeof c);
	c.stop_after = 1;
	CHECK_INT(mailbox_list_expand(f.idx, "closed@example.com", 18, &info, collect, &c),
	          LOOKUP_FOUND);
	CHECK_INT(c.calls, 1);
	/* Not a list: nothing, and info cleared. */
	static const char *const not_lists[] = {"alice@example.com", "via@example.com",
	                                        "nobody@example.com", "bad address", ""};
	for (size_t i = 0; i < sizeof not_lists / sizeof not_lists[0]; i++) {
		memset(&c, 0, sizeof c);
		memset(&info, 'x', sizeof info);
		CHECK_INT(mailbox_list_expand(f.idx, not_lists[i], strlen(not_lists[i]), &info,
		                              collect, &c),
		          LOOKUP_NOTFOUND);
		CHECK_INT(c.calls, 0);
		CHECK_STR(info.owner, "");
	}
	CHECK_INT(mailbox_list_expand(f.idx, NULL, 0, &info, collect, &c), LOOKUP_NOTFOUND);
	/* An index that cannot be trusted says "try later". */
	CHECK_INT(raw_exec(f.path, "ALTER TABLE change_log RENAME TO change_log_away"), 0);
	CHECK_INT(mailbox_index_refresh(f.idx), -1);
	CHECK_INT(mailbox_list_expand(f.idx, "open@example.com", 16, &info, collect, &c),
	          LOOKUP_TEMPFAIL);
	CHECK_STR(ask_from(f.idx, "closed@example.com", "alice@example.com", 17), "TEMPFAIL");
	fx_close(&f);
}

TEST(list_changes_reach_the_index)
{
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	CHECK_INT(directory_account_add(f.d, "alice@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	if (!CHECK_INT(fx_index(&f), 0)) {
		fx_close(&f);
		return;
	}
	struct mailbox_list info;
	struct collected c = {"", 0, 0};
	CHECK_INT(directory_list_add(f.d, "team@example.com", NULL, 1), DIRECTORY_OK);
	CHECK_STR(ask(f.idx, "team@example.com"), "NOTFOUND"); /* not yet refreshed */
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "team@example.com"), "list 1 members-only");
	CHECK_STR(ask_from(f.idx, "team@example.com", "bob@other.org", 13), "stranger");
	const char *m[] = {"bob@other.org", "alice@example.com"};
	CHECK_INT(directory_list_join(f.d, "team@example.com", m, 2, NULL), DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask_from(f.idx, "team@example.com", "bob@other.org", 13), "member");
	CHECK_INT(mailbox_list_expand(f.idx, "team@example.com", 16, &info, collect, &c),
	          LOOKUP_FOUND);
	CHECK_STR(c.s, "alice@example.com/1;bob@other.org/0;");
	CHECK_STR(info.owner, "team-owner@example.com");
	CHECK_INT(directory_list_leave(f.d, "team@example.com", m, 1, NULL), DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask_from(f.idx, "team@example.com", "bob@other.org", 13), "stranger");
	CHECK_STR(ask_from(f.idx, "team@example.com", "alice@example.com", 17), "member");
	/* Replaced by an open list with another owner (del + add in one refresh). */
	CHECK_INT(directory_list_del(f.d, "team@example.com"), DIRECTORY_OK);
	CHECK_INT(directory_list_add(f.d, "team@example.com", "o@other.org", 0), DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "team@example.com"), "list 1");
	CHECK_INT(mailbox_list_expand(f.idx, "team@example.com", 16, &info, NULL, NULL),
	          LOOKUP_FOUND);
	CHECK_STR(info.owner, "o@other.org");
	CHECK_INT(info.n_members, 0);
	/* An alias to the list sees it come and go. */
	CHECK_INT(add_alias(f.d, "all@example.com", "team@example.com", NULL, NULL, NULL),
	          DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "all@example.com"), "alias-local 1");
	CHECK_INT(directory_list_del(f.d, "team@example.com"), DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "team@example.com"), "NOTFOUND");
	CHECK_STR(ask(f.idx, "all@example.com"), "NOTFOUND");
	/* The address becomes an account. */
	CHECK_INT(directory_account_add(f.d, "team@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_INT(mailbox_index_refresh(f.idx), 1);
	CHECK_STR(ask(f.idx, "team@example.com"), "account 1");
	/* A rescan after a gap rebuilds lists as the refresh does. */
	CHECK_INT(add_list(f.d, "big@example.com", NULL, 1, "x@other.org", "y@other.org", NULL), 0);
	CHECK_INT(directory_prune_changes(f.d, -3600), DIRECTORY_OK);
	CHECK(mailbox_index_refresh(f.idx) > 0);
	CHECK_STR(ask(f.idx, "big@example.com"), "list 1 members-only");
	CHECK_STR(ask_from(f.idx, "big@example.com", "y@other.org", 11), "member");
	CHECK_STR(ask(f.idx, "all@example.com"), "alias-local 1");
	fx_close(&f);
}

/* ---- concurrency: readers never see a stable address vanish during refreshes ---- */

struct reader {
	struct mailbox_index *idx;
	atomic_int *stop;
	long lookups;
	long wrong;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct lookup_answer a;
	while (!atomic_load(r->stop)) {
		mailbox_index_read_lock(r->idx);
		for (int i = 0; i < 64; i++) {
			if (mailbox_lookup_locked(r->idx, "stable@example.com", 18, &a) !=
			            LOOKUP_FOUND ||
			    a.kind != LOOKUP_KIND_ACCOUNT)
				r->wrong++;
			if (mailbox_lookup_locked(r->idx, "Team@example.com", 16, &a) !=
			            LOOKUP_FOUND ||
			    a.kind != LOOKUP_KIND_ALIAS_LOCAL)
				r->wrong++;
			r->lookups += 2;
		}
		mailbox_index_read_unlock(r->idx);
		struct lookup_answer b;
		if (mailbox_lookup(r->idx, "STABLE@example.com", 18, &b) != LOOKUP_FOUND)
			r->wrong++;
	}
	return NULL;
}

TEST(concurrent_lookups_during_refresh)
{
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	CHECK_INT(directory_account_add(f.d, "stable@example.com", NULL, ACCOUNT_ACTIVE),
	          DIRECTORY_OK);
	CHECK_INT(add_alias(f.d, "team@example.com", "stable@example.com", NULL, NULL, NULL),
	          DIRECTORY_OK);
	if (!CHECK_INT(fx_index(&f), 0)) {
		fx_close(&f);
		return;
	}
	atomic_int stop = 0;
	struct reader rd[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		rd[i] = (struct reader){f.idx, &stop, 0, 0};
		pthread_create(&th[i], NULL, reader_main, &rd[i]);
	}
	char addr[64];
	int refresh_failed = 0;
	for (int round = 0; round < 60; round++) {
		for (int k = 0; k < 50; k++) {
			snprintf(addr, sizeof addr, "churn%d@example.com", round * 50 + k);
			directory_account_add(f.d, addr, NULL, ACCOUNT_ACTIVE);
			if (round > 0) {
				snprintf(addr, sizeof addr, "churn%d@example.com",
				         (round - 1) * 50 + k);
				directory_account_del(f.d, addr);
			}
		}
		if (round % 20 == 19)
			directory_prune_changes(f.d, -3600); /* forces a rescan and swap */
		if (mailbox_index_refresh(f.idx) < 0)
			refresh_failed++;
	}
	atomic_store(&stop, 1);
	long total = 0, wrong = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		total += rd[i].lookups;
		wrong += rd[i].wrong;
	}
	CHECK_INT(refresh_failed, 0);
	CHECK_INT(wrong, 0);
	CHECK(total > 0);
	CHECK_INT(mailbox_index_count(f.idx), 2 + 50);
	fx_close(&f);
}

/* ---- scale: build time and memory ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(big_index_build_and_memory)
{
	const char *big = getenv("SHAREMAIL_BIG_TESTS");
	const long n = big && strcmp(big, "1") == 0 ? 1000000 : 100000;
	struct fixture f;
	if (!CHECK_INT(fx_open(&f), 0))
		return;
	/* One transaction, one prepared insert: the fast way to make the test data. */
	double t0 = now_s();
	sqlite3 *db;
	sqlite3_stmt *ins;
	CHECK_INT(sqlite3_open(f.path, &db), SQLITE_OK);
	sqlite3_exec(db, "PRAGMA synchronous = OFF; BEGIN", NULL, NULL, NULL);
	CHECK_INT(sqlite3_prepare_v2(db, "INSERT INTO accounts VALUES(?1, NULL, ?2, 0)", -1, &ins,
	                             NULL),
	          SQLITE_OK);
	char addr[64];
	for (long i = 0; i < n; i++) {
		int len = snprintf(addr, sizeof addr, "user%07ld@example.com", i);
		sqlite3_bind_text(ins, 1, addr, len, SQLITE_TRANSIENT);
		sqlite3_bind_int(ins, 2, i % 10 == 0 ? ACCOUNT_DISABLED : ACCOUNT_ACTIVE);
		if (sqlite3_step(ins) != SQLITE_DONE)
			break;
		sqlite3_reset(ins);
	}
	sqlite3_finalize(ins);
	CHECK_INT(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	double t1 = now_s();
	int ok = CHECK_INT(fx_index(&f), 0);
	double t2 = now_s();
	if (ok) {
		size_t mem = mailbox_index_memory(f.idx);
		printf("mailbox_index: %ld accounts: db filled in %.2f s, index built in %.2f s, "
		       "%.1f MiB (%.1f bytes/account)\n",
		       n, t1 - t0, t2 - t1, mem / 1048576.0, (double)mem / n);
		CHECK_INT(mailbox_index_count(f.idx), n);
		CHECK(mem < (size_t)200 << 20);
		/* Every address is there with its state; unknown ones are not. */
		long wrong = 0;
		struct lookup_answer a;
		double t3 = now_s();
		for (long i = 0; i < n; i++) {
			int len = snprintf(addr, sizeof addr, "USER%07ld@example.com", i);
			if (mailbox_lookup(f.idx, addr, (size_t)len, &a) != LOOKUP_FOUND ||
			    a.can_receive != (i % 10 != 0))
				wrong++;
		}
		double t4 = now_s();
		for (long i = n; i < n + 1000; i++) {
			int len = snprintf(addr, sizeof addr, "user%07ld@example.com", i);
			if (mailbox_lookup(f.idx, addr, (size_t)len, &a) != LOOKUP_NOTFOUND)
				wrong++;
		}
		printf("mailbox_index: %ld lookups in %.2f s (%.0f ns each)\n", n, t4 - t3,
		       (t4 - t3) * 1e9 / n);
		CHECK_INT(wrong, 0);
		/* A refresh with nothing changed is cheap and changes nothing. */
		CHECK_INT(mailbox_index_refresh(f.idx), 0);
	}
	fx_close(&f);
}

TEST_MAIN(T(lookup_resolution), T(wide_alias_graph_is_bounded), T(refresh_applies_changes),
          T(list_lookup_and_members_only), T(list_expansion), T(list_changes_reach_the_index),
          T(refresh_many_changes_and_gap_rescan), T(failed_refresh_answers_tempfail),
          T(open_creates_missing_directory_and_fails_cleanly), T(concurrent_lookups_during_refresh),
          T(big_index_build_and_memory))
