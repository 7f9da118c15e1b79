/* Unit tests for vcache: TTLs on a fake clock, what is cached, flush, list order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "util/timeutil.h"
#include "verify/vcache.h"

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

TEST_MAIN(T(ttl_per_status), T(keys_fold_case_and_servers_are_separate), T(put_replaces),
          T(list_order_and_expired_hidden), T(flush_one_and_all), T(persists_across_open),
          T(open_failure_reports))
