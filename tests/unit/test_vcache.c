/* Unit tests for vcache: TTLs on a fake clock, what is cached, flush, list order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "util/strutil.h"
#include "util/timeutil.h"
#include "verify/bgwork.h"
#include "verify/vcache.h"
#include "verify/vcache_live.h"

#define T0 1700000000
#define POS_TTL 432000 /* 5 days, the default */
#define NEG_TTL 3600
#define SRV "127.0.0.1:4069"

static char dbdir[64];

/* A fresh cache in a fresh temporary directory, clock at T0. */
static struct vcache *fresh(void)
{
	char path[128], err[256];
	snprintf(dbdir, sizeof dbdir, "/tmp/test_vcache.XXXXXX");
	if (!mkdtemp(dbdir))
		return NULL;
	snprintf(path, sizeof path, "%s/vcache.db", dbdir);
	time_fake_set(T0);
	struct vcache *vc = vcache_open(path, err, sizeof err);
	if (!vc)
		fprintf(stderr, "vcache_open: %s\n", err);
	return vc;
}

static void done(struct vcache *vc)
{
	char path[128];
	vcache_close(vc);
	time_fake_set(0);
	static const char *const files[] = {"vcache.db", "vcache.db-wal", "vcache.db-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/%s", dbdir, files[i]);
		unlink(path);
	}
	rmdir(dbdir);
}

/* Expected lifetime of each status: 0 means "never stored". */
static const struct {
	int status;
	int64_t lifetime;
} ttl_cases[] = {
        {0, 0}, {1, 0}, {2, 0}, {3, NEG_TTL}, {4, POS_TTL}, {5, POS_TTL}, {-1, 0}, {6, 0},
};

TEST(ttl_per_status)
{
	for (size_t i = 0; i < sizeof ttl_cases / sizeof ttl_cases[0]; i++) {
		struct vcache *vc = fresh();
		if (!CHECK(vc != NULL))
			return;
		int st = -9;
		CHECK_INT(vcache_put(vc, SRV, "arvel@example.com", ttl_cases[i].status, POS_TTL,
		                     NEG_TTL),
		          0);
		int64_t life = ttl_cases[i].lifetime;
		CHECK_INT(vcache_get(vc, SRV, "arvel@example.com", &st), life > 0 ? 1 : 0);
		if (life > 0) {
			CHECK_INT(st, ttl_cases[i].status);
			time_fake_set(T0 + life - 1); /* last second of life */
			CHECK_INT(vcache_get(vc, SRV, "arvel@example.com", &st), 1);
			time_fake_set(T0 + life); /* expired */
			CHECK_INT(vcache_get(vc, SRV, "arvel@example.com", &st), 0);
		}
		done(vc);
	}
}

TEST(keys_fold_case_and_servers_are_separate)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL))
		return;
	int st = -9;
	CHECK_INT(vcache_put(vc, SRV, "Arvel@Example.COM", 5, POS_TTL, NEG_TTL), 0);
	CHECK_INT(vcache_get(vc, SRV, "arvel@example.com", &st), 1);
	CHECK_INT(st, 5);
	CHECK_INT(vcache_get(vc, SRV, "ARVEL@EXAMPLE.COM", &st), 1);
	CHECK_INT(vcache_get(vc, "127.0.0.2:4069", "arvel@example.com", &st), 0);
	CHECK_INT(vcache_get(vc, SRV, "other@example.com", &st), 0);
	done(vc);
}

TEST(put_replaces)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL))
		return;
	int st = -9;
	CHECK_INT(vcache_put(vc, SRV, "a@example.com", 5, POS_TTL, NEG_TTL), 0);
	time_fake_set(T0 + 100);
	CHECK_INT(vcache_put(vc, SRV, "a@example.com", 3, POS_TTL, NEG_TTL), 0);
	CHECK_INT(vcache_get(vc, SRV, "a@example.com", &st), 1);
	CHECK_INT(st, 3);
	/* The replacement's negative TTL counts from its own time. */
	time_fake_set(T0 + 100 + NEG_TTL);
	CHECK_INT(vcache_get(vc, SRV, "a@example.com", &st), 0);
	done(vc);
}

struct listed {
	char lines[8][160];
	int n;
};

static int collect(void *arg, const char *server, const char *address, int status, int64_t expires)
{
	struct listed *l = arg;
	if (l->n < 8)
		snprintf(l->lines[l->n++], sizeof l->lines[0], "%s %s %d %lld", address, server,
		         status, (long long)expires);
	return 0;
}

TEST(list_order_and_expired_hidden)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL))
		return;
	CHECK_INT(vcache_put(vc, "127.0.0.2:4069", "b@example.com", 5, POS_TTL, NEG_TTL), 0);
	CHECK_INT(vcache_put(vc, "127.0.0.1:4069", "b@example.com", 4, POS_TTL, NEG_TTL), 0);
	CHECK_INT(vcache_put(vc, SRV, "A@example.com", 3, POS_TTL, NEG_TTL), 0);
	time_fake_set(T0 - NEG_TTL); /* an entry that is already expired at T0 */
	CHECK_INT(vcache_put(vc, SRV, "old@example.com", 3, POS_TTL, NEG_TTL), 0);
	time_fake_set(T0);
	struct listed l = {0};
	CHECK_INT(vcache_list(vc, collect, &l), 0);
	CHECK_INT(l.n, 3);
	CHECK_STR(l.lines[0], "a@example.com 127.0.0.1:4069 3 1700003600");
	CHECK_STR(l.lines[1], "b@example.com 127.0.0.1:4069 4 1700432000");
	CHECK_STR(l.lines[2], "b@example.com 127.0.0.2:4069 5 1700432000");
	done(vc);
}

TEST(flush_one_and_all)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL))
		return;
	int st;
	CHECK_INT(vcache_put(vc, "127.0.0.1:4069", "a@example.com", 5, POS_TTL, NEG_TTL), 0);
	CHECK_INT(vcache_put(vc, "127.0.0.2:4069", "a@example.com", 5, POS_TTL, NEG_TTL), 0);
	CHECK_INT(vcache_put(vc, SRV, "b@example.com", 3, POS_TTL, NEG_TTL), 0);
	CHECK_INT(vcache_put(vc, SRV, "c@example.com", 5, POS_TTL, NEG_TTL), 0);
	CHECK_INT(vcache_flush(vc, "A@Example.com"), 2); /* both servers, any case */
	CHECK_INT(vcache_get(vc, "127.0.0.1:4069", "a@example.com", &st), 0);
	CHECK_INT(vcache_get(vc, SRV, "b@example.com", &st), 1);
	CHECK_INT(vcache_flush(vc, "nobody@example.com"), 0);
	/* Flushing one address also removes expired rows (b's hour is over). */
	time_fake_set(T0 + NEG_TTL);
	CHECK_INT(vcache_flush(vc, "nobody@example.com"), 1);
	CHECK_INT(vcache_get(vc, SRV, "c@example.com", &st), 1);
	CHECK_INT(vcache_flush(vc, NULL), 1);
	CHECK_INT(vcache_get(vc, SRV, "c@example.com", &st), 0);
	CHECK_INT(vcache_flush(vc, NULL), 0);
	done(vc);
}

TEST(persists_across_open)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL))
		return;
	CHECK_INT(vcache_put(vc, SRV, "a@example.com", 5, POS_TTL, NEG_TTL), 0);
	vcache_close(vc);
	char path[128], err[256];
	snprintf(path, sizeof path, "%s/vcache.db", dbdir);
	vc = vcache_open(path, err, sizeof err);
	if (!CHECK(vc != NULL))
		return;
	int st = -9;
	CHECK_INT(vcache_get(vc, SRV, "a@example.com", &st), 1);
	CHECK_INT(st, 5);
	done(vc);
}

TEST(open_failure_reports)
{
	char err[256] = "";
	struct vcache *vc = vcache_open("/nonexistent-dir/x/vcache.db", err, sizeof err);
	CHECK(vc == NULL);
	CHECK(strstr(err, "/nonexistent-dir/x/vcache.db") != NULL);
	vcache_close(vc);
}

/* ---- vcache_live: the in-memory index over the same file ---- */

static void db_path(char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/vcache.db", dbdir);
}

TEST(live_loads_answers_and_writes_behind)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL))
		return;
	CHECK_INT(vcache_put(vc, SRV, "old@example.com", 5, POS_TTL, NEG_TTL), 0);
	CHECK_INT(vcache_put_until(vc, SRV, "gone@example.com", 5, T0), 0); /* expired already */
	char path[128], err[256];
	db_path(path, sizeof path);
	struct bgwork *bg = bgwork_new(NULL, NULL, 1000);
	struct vcache_live *vl = vcache_live_open(path, bg, err, sizeof err);
	if (!CHECK(vl != NULL))
		return;
	int st = -9;
	CHECK_INT(vcache_live_count(vl), 1); /* only live entries are loaded */
	CHECK_INT(vcache_live_get(vl, SRV, "OLD@example.com", &st), 1);
	CHECK_INT(st, 5);
	CHECK_INT(vcache_live_get(vl, SRV, "gone@example.com", &st), 0);
	CHECK_INT(vcache_live_get(vl, "127.0.0.2:4069", "old@example.com", &st), 0);
	CHECK_INT(vcache_live_put(vl, SRV, "New@Example.com", 3, 60), 0);
	CHECK_INT(vcache_live_put(vl, SRV, "x@example.com", 2, 60), 0); /* not stored */
	CHECK_INT(vcache_live_get(vl, SRV, "new@example.com", &st), 1);
	CHECK_INT(st, 3);
	CHECK_INT(vcache_live_get(vl, SRV, "x@example.com", &st), 0);
	bgwork_sync(bg);
	/* The write reached SQLite: another connection sees it, folded. */
	CHECK_INT(vcache_get(vc, SRV, "new@example.com", &st), 1);
	CHECK_INT(st, 3);
	time_fake_set(T0 + 60);
	CHECK_INT(vcache_live_get(vl, SRV, "new@example.com", &st), 0);
	bgwork_free(bg);
	vcache_live_close(vl);
	done(vc);
}

TEST(live_reloads_after_an_external_flush)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL))
		return;
	char path[128], err[256];
	db_path(path, sizeof path);
	struct bgwork *bg = bgwork_new(NULL, NULL, 1000);
	struct vcache_live *vl = vcache_live_open(path, bg, err, sizeof err);
	if (!CHECK(vl != NULL))
		return;
	int st;
	CHECK_INT(vcache_live_put(vl, SRV, "a@example.com", 5, POS_TTL), 0);
	CHECK_INT(vcache_live_put(vl, SRV, "b@example.com", 5, POS_TTL), 0);
	bgwork_sync(bg);
	vcache_live_tick(vl); /* nothing changed elsewhere: nothing reloaded */
	CHECK_INT(vcache_live_count(vl), 2);
	CHECK_INT(vcache_flush(vc, "a@example.com"), 1); /* `sharemail cache flush` */
	CHECK_INT(vcache_live_get(vl, SRV, "a@example.com", &st), 1); /* until the tick */
	vcache_live_tick(vl);
	CHECK_INT(vcache_live_get(vl, SRV, "a@example.com", &st), 0);
	CHECK_INT(vcache_live_get(vl, SRV, "b@example.com", &st), 1);
	bgwork_free(bg);
	vcache_live_close(vl);
	done(vc);
}

static int gate[2];

/* A job that holds the background thread until the test writes to the pipe. */
static void hold_job(void *arg)
{
	(void)arg;
	char c;
	CHECK_INT(read(gate[0], &c, 1), 1);
}

TEST(live_reload_keeps_writes_still_queued)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL) || !CHECK(pipe(gate) == 0))
		return;
	char path[128], err[256];
	db_path(path, sizeof path);
	struct bgwork *bg = bgwork_new(NULL, NULL, 1000);
	struct vcache_live *vl = vcache_live_open(path, bg, err, sizeof err);
	if (!CHECK(vl != NULL))
		return;
	CHECK_INT(bgwork_post(bg, hold_job, NULL), 0);
	CHECK_INT(vcache_live_put(vl, SRV, "queued@example.com", 5, POS_TTL), 0);
	CHECK_INT(vcache_put(vc, SRV, "other@example.com", 5, POS_TTL, NEG_TTL), 0);
	/* The reload reads SQLite (which lacks "queued") and must keep the queued put. */
	vcache_live_tick(vl);
	int st;
	CHECK_INT(vcache_live_get(vl, SRV, "other@example.com", &st), 1);
	CHECK_INT(vcache_live_get(vl, SRV, "queued@example.com", &st), 1);
	CHECK_INT(write(gate[1], "x", 1), 1);
	bgwork_sync(bg);
	CHECK_INT(vcache_get(vc, SRV, "queued@example.com", &st), 1);
	bgwork_free(bg);
	vcache_live_close(vl);
	close(gate[0]);
	close(gate[1]);
	done(vc);
}

/*
 * Keys made once (the warm path of a RCPT) answer as vcache_live_get() does:
 * folded, servers kept apart (including one whose name is a prefix of
 * another's), entries loaded from SQLite and put in memory alike, and the
 * address key's hash is the folded hash the verifier's peer hints use.
 */
TEST(live_keys_made_once)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL))
		return;
	CHECK_INT(vcache_put(vc, SRV, "loaded@example.com", 5, POS_TTL, NEG_TTL), 0);
	char path[128], err[256];
	db_path(path, sizeof path);
	struct bgwork *bg = bgwork_new(NULL, NULL, 1000);
	struct vcache_live *vl = vcache_live_open(path, bg, err, sizeof err);
	if (!CHECK(vl != NULL))
		return;
	CHECK_INT(vcache_live_put(vl, "127.0.0.2:4069", "Put@Example.com", 4, 60), 0);
	struct vcache_live_server s1, s2, s3;
	CHECK_INT(vcache_live_server_make(vl, &s1, SRV), 0);
	CHECK_INT(vcache_live_server_make(vl, &s2, "127.0.0.2:4069"), 0);
	CHECK_INT(vcache_live_server_make(vl, &s3, "127.0.0.2:406"), 0);
	struct vcache_live_addr a;
	int st = -9;
	const char *loaded = "LOADED@example.COM";
	CHECK_INT(vcache_live_addr_make(&a, loaded, strlen(loaded)), 0);
	CHECK_STR(a.a, "loaded@example.com");
	CHECK(a.hash == str_hash(loaded, strlen(loaded), 1));
	CHECK_INT(vcache_live_get_key(vl, &s1, &a, &st), 1);
	CHECK_INT(st, 5);
	CHECK_INT(vcache_live_get_key(vl, &s2, &a, &st), 0);
	CHECK_INT(vcache_live_addr_make(&a, "put@example.comX", 15), 0); /* a span, not a string */
	CHECK_INT(vcache_live_get_key(vl, &s2, &a, &st), 1);
	CHECK_INT(st, 4);
	CHECK_INT(vcache_live_get_key(vl, &s1, &a, &st), 0);
	CHECK_INT(vcache_live_get_key(vl, &s3, &a, &st), 0);
	CHECK_INT(vcache_live_addr_make(&a, "", 0), -1);
	char big[VCACHE_KEY_MAX + 1];
	memset(big, 'a', sizeof big);
	CHECK_INT(vcache_live_addr_make(&a, big, VCACHE_KEY_MAX), -1);
	CHECK_INT(vcache_live_addr_make(&a, big, VCACHE_KEY_MAX - 1), 0);
	/* the longest address spans many of an entry's cache lines; one octet less is another */
	big[VCACHE_KEY_MAX - 1] = '\0';
	CHECK_INT(vcache_live_put(vl, "127.0.0.2:406", big, 5, 60), 0);
	CHECK_INT(vcache_live_get_key(vl, &s3, &a, &st),
	          1); /* s3 was made before its first entry */
	CHECK_INT(st, 5);
	CHECK_INT(vcache_live_addr_make(&a, big, VCACHE_KEY_MAX - 2), 0);
	CHECK_INT(vcache_live_get_key(vl, &s3, &a, &st), 0);
	/* a server name that cannot be a key finds nothing and is not stored */
	char longname[200];
	memset(longname, '9', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	struct vcache_live_server s4;
	CHECK_INT(vcache_live_server_make(vl, &s4, longname), -1);
	CHECK_INT(vcache_live_put(vl, longname, "put@example.com", 5, 60), -1);
	CHECK_INT(vcache_live_addr_make(&a, "put@example.com", 15), 0);
	CHECK_INT(vcache_live_get_key(vl, &s4, &a, &st), 0);
	time_fake_set(T0 + 60); /* the put's 60 s are over; the loaded entry's are not */
	CHECK_INT(vcache_live_addr_make(&a, "put@example.com", 15), 0);
	CHECK_INT(vcache_live_get_key(vl, &s2, &a, &st), 0);
	CHECK_INT(vcache_live_addr_make(&a, loaded, strlen(loaded)), 0);
	CHECK_INT(vcache_live_get_key(vl, &s1, &a, &st), 1);
	bgwork_free(bg);
	vcache_live_close(vl);
	done(vc);
}

/*
 * vcache_live_find: which of several servers has an address with a status, in
 * one walk: the lowest index among those that have it, only that status, only
 * live entries, only the servers listed; and still right after the table has
 * grown many times (the chains are rebuilt by the address's hash).
 */
TEST(live_find_which_server)
{
	struct vcache *vc = fresh();
	if (!CHECK(vc != NULL))
		return;
	char path[128], err[256];
	db_path(path, sizeof path);
	struct bgwork *bg = bgwork_new(NULL, NULL, 1000);
	struct vcache_live *vl = vcache_live_open(path, bg, err, sizeof err);
	if (!CHECK(vl != NULL))
		return;
	const char *names[] = {"127.0.0.1:4069", "127.0.0.2:4069", "127.0.0.3:4069",
	                       "127.0.0.4:4069"};
	struct vcache_live_server k[4];
	for (size_t i = 0; i < 4; i++)
		CHECK_INT(vcache_live_server_make(vl, &k[i], names[i]), 0);
	CHECK_INT(vcache_live_put(vl, names[2], "Both@example.com", 5, 600), 0);
	CHECK_INT(vcache_live_put(vl, names[1], "both@example.com", 5, 60), 0);
	CHECK_INT(vcache_live_put(vl, names[0], "both@example.com", 3, 600), 0);
	CHECK_INT(vcache_live_put(vl, names[3], "only4@example.com", 5, 600), 0);
	char a[64];
	for (int i = 0; i < 3000; i++) { /* the table grows from 1024 buckets, twice */
		snprintf(a, sizeof a, "u%d@example.com", i);
		CHECK_INT(vcache_live_put(vl, names[i % 3], a, 5, 600), 0);
	}
	struct vcache_live_addr ad;
	size_t which = 99;
	CHECK_INT(vcache_live_addr_make(&ad, "BOTH@example.com", 16), 0);
	CHECK_INT(vcache_live_find(vl, k, 4, &ad, 5, &which), 1);
	CHECK_INT(which, 1); /* 0 said 3; 1 and 2 said 5: the lowest */
	CHECK_INT(vcache_live_find(vl, k, 4, &ad, 3, &which), 1);
	CHECK_INT(which, 0);
	CHECK_INT(vcache_live_find(vl, k + 2, 2, &ad, 5, &which), 1);
	CHECK_INT(which, 0); /* an index into the array given */
	CHECK_INT(vcache_live_find(vl, k, 1, &ad, 5, &which), 0);
	CHECK_INT(vcache_live_addr_make(&ad, "only4@example.com", 17), 0);
	CHECK_INT(vcache_live_find(vl, k, 3, &ad, 5, &which), 0); /* 3 is not listed */
	CHECK_INT(vcache_live_find(vl, k, 4, &ad, 5, &which), 1);
	CHECK_INT(which, 3);
	int found = 0;
	for (int i = 0; i < 3000; i++) {
		snprintf(a, sizeof a, "u%d@example.com", i);
		CHECK_INT(vcache_live_addr_make(&ad, a, strlen(a)), 0);
		found +=
		        vcache_live_find(vl, k, 4, &ad, 5, &which) == 1 && which == (size_t)(i % 3);
	}
	CHECK_INT(found, 3000);
	time_fake_set(T0 + 60); /* server 1's 60 s are over: server 2's entry answers */
	CHECK_INT(vcache_live_addr_make(&ad, "both@example.com", 16), 0);
	CHECK_INT(vcache_live_find(vl, k, 4, &ad, 5, &which), 1);
	CHECK_INT(which, 2);
	bgwork_free(bg);
	vcache_live_close(vl);
	done(vc);
}

TEST_MAIN(T(ttl_per_status), T(keys_fold_case_and_servers_are_separate), T(put_replaces),
          T(list_order_and_expired_hidden), T(flush_one_and_all), T(persists_across_open),
          T(open_failure_reports), T(live_loads_answers_and_writes_behind),
          T(live_reloads_after_an_external_flush), T(live_reload_keeps_writes_still_queued),
          T(live_keys_made_once), T(live_find_which_server))
