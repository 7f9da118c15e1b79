/* test_minger_ratelimit: per-source and global token buckets with a fake clock. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "harness.h"
#include "minger/minger_ratelimit.h"

static struct sockaddr_in v4(uint32_t addr, uint16_t port)
{
	struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};
	s.sin_addr.s_addr = htonl(addr);
	return s;
}

static struct sockaddr_in6 v6(const char *text, uint16_t port)
{
	struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	CHECK_INT(inet_pton(AF_INET6, text, &s.sin6_addr), 1);
	return s;
}

/* How many of n replies at time now the source gets. */
static int burst(struct minger_source_table *t, const void *sa, int n, uint64_t now)
{
	int ok = 0;
	for (int i = 0; i < n; i++)
		ok += minger_source_table_allow(t, sa, now);
	return ok;
}

TEST(burst_and_refill)
{
	struct minger_source_table *t = minger_source_table_new(16, 10, 1);
	struct sockaddr_in a = v4(0x7f000001, 1000);
	CHECK_INT(burst(t, &a, 50, 1000), 10); /* the burst is one second's worth */
	CHECK_INT(burst(t, &a, 50, 1000), 0);
	CHECK_INT(burst(t, &a, 50, 1099), 0); /* 99 ms: 0.99 token */
	CHECK_INT(burst(t, &a, 50, 1100), 1); /* 100 ms: one token */
	CHECK_INT(burst(t, &a, 50, 1600), 5); /* 500 ms: five */
	CHECK_INT(burst(t, &a, 50, 60000), 10); /* a long pause refills only the burst */
	CHECK_INT(burst(t, &a, 50, 50000), 0); /* a clock going back refills nothing */
	minger_source_table_free(t);
}

TEST(rate_one)
{
	struct minger_source_table *t = minger_source_table_new(4, 1, 1);
	struct sockaddr_in a = v4(0x7f000001, 1000);
	CHECK_INT(burst(t, &a, 5, 0), 1);
	CHECK_INT(burst(t, &a, 5, 999), 0);
	CHECK_INT(burst(t, &a, 5, 1000), 1);
	minger_source_table_free(t);
}

TEST(keys)
{
	struct minger_source_table *t = minger_source_table_new(64, 2, 3);
	struct sockaddr_in a1 = v4(0x0a000001, 1), a2 = v4(0x0a000001, 2), b = v4(0x0a000002, 1);
	CHECK_INT(burst(t, &a1, 5, 0), 2);
	CHECK_INT(burst(t, &a2, 5, 0), 0); /* the port is not part of the key */
	CHECK_INT(burst(t, &b, 5, 0), 2);
	/* IPv6 by /64: two hosts of one /64 share, another /64 does not. */
	struct sockaddr_in6 x1 = v6("2001:db8:1:2::1", 1), x2 = v6("2001:db8:1:2:ffff::9", 1);
	struct sockaddr_in6 y = v6("2001:db8:1:3::1", 1);
	CHECK_INT(burst(t, &x1, 5, 0), 2);
	CHECK_INT(burst(t, &x2, 5, 0), 0);
	CHECK_INT(burst(t, &y, 5, 0), 2);
	/* An IPv4-mapped IPv6 source is the IPv4 source. */
	struct sockaddr_in6 m = v6("::ffff:10.0.0.1", 1);
	CHECK_INT(burst(t, &m, 5, 0), 0);
	CHECK_INT(minger_source_table_used(t), 4);
	minger_source_table_free(t);
}

TEST(bounded_under_many_sources)
{
	/* 100k distinct sources through a 1000-slot table interleaved with one heavy source. */
	struct minger_source_table *t = minger_source_table_new(1000, 5, 99);
	struct sockaddr_in heavy = v4(0xc0000201, 1);
	int heavy_ok = 0, others_ok = 0;
	size_t max_used = 0;
	for (uint32_t i = 0; i < 100000; i++) {
		struct sockaddr_in s = v4(0x0b000000u + i, 1);
		others_ok += minger_source_table_allow(t, (const struct sockaddr *)&s, 100);
		heavy_ok += minger_source_table_allow(t, (const struct sockaddr *)&heavy, 100);
		if (minger_source_table_used(t) > max_used)
			max_used = minger_source_table_used(t);
	}
	CHECK_INT(max_used, 1000);
	CHECK_INT(minger_source_table_slots(t), 1000);
	CHECK_INT(minger_source_table_used(t), 1000);
	CHECK(minger_source_table_evictions(t) >= 99000 - 1000);
	CHECK_INT(others_ok, 100000);
	/* The heavy source stays the most recently seen, so it is never evicted. */
	CHECK_INT(heavy_ok, 5);
	minger_source_table_free(t);
}

TEST(single_slot)
{
	struct minger_source_table *t = minger_source_table_new(0, 1, 0);
	struct sockaddr_in a = v4(1, 1), b = v4(2, 1);
	CHECK_INT(minger_source_table_slots(t), 1);
	CHECK_INT(burst(t, &a, 3, 0), 1);
	CHECK_INT(burst(t, &b, 3, 0), 1); /* evicts a */
	CHECK_INT(minger_source_table_used(t), 1);
	minger_source_table_free(t);
}

TEST(global_bucket)
{
	struct minger_global_limit *g = minger_global_limit_new(100);
	CHECK_INT(minger_global_limit_take(g, 1000, 64), 64);
	CHECK_INT(minger_global_limit_take(g, 1000, 64), 36);
	CHECK_INT(minger_global_limit_take(g, 1000, 64), 0);
	minger_global_limit_give_back(g, 10);
	CHECK_INT(minger_global_limit_take(g, 1000, 64), 10);
	CHECK_INT(minger_global_limit_take(g, 1250, 64), 25);
	CHECK_INT(minger_global_limit_take(g, 9000, 1000), 100);
	/* Giving back never exceeds the burst. */
	minger_global_limit_give_back(g, 5000);
	CHECK_INT(minger_global_limit_take(g, 9000, 1000), 100);
	minger_global_limit_free(g);
}

TEST_MAIN(T(burst_and_refill), T(rate_one), T(keys), T(bounded_under_many_sources), T(single_slot),
          T(global_bucket))
