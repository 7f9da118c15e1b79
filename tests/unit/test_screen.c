/*
 * Unit tests for the Dynamic Screen (src/screen/): keys, the sliding-window
 * counters, the bounded block list, the AUTH delays, screen.db, and the daemon's
 * object with its writer thread, on a fake clock. A second database connection
 * plays `sharemail screen`: its changes must reach the loop's list.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "screen/screen.h"
#include "screen/screen_blocklist.h"
#include "screen/screen_counter.h"
#include "screen/screen_db.h"
#include "screen/screen_key.h"
#include "util/timeutil.h"

#define T0 1700000000

static char dbdir[64];
static char dbpath[128];

static struct sockaddr_storage sa_of(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(40000);
	} else {
		CHECK_INT(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(40000);
	}
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static struct screen_key key_of(const char *text)
{
	struct screen_key k;
	memset(&k, 0xee, sizeof k);
	CHECK_INT(screen_key_parse(text, &k), 0);
	return k;
}

/* ---- keys ---- */

struct key_case {
	const char *in;
	const char *out; /* NULL: refused */
};

static const struct key_case key_cases[] = {
        {"192.0.2.7", "192.0.2.7"},
        {"0.0.0.0", "0.0.0.0"},
        {"::ffff:192.0.2.7", "192.0.2.7"}, /* IPv4-mapped is IPv4 */
        {"2001:db8:1:2::1", "2001:db8:1:2::/64"},
        {"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
        {"2001:DB8:1:2::/64", "2001:db8:1:2::/64"},
        {"::1", "::/64"},
        {"2001:db8::/48", NULL},
        {"2001:db8::/064", NULL},
        {"2001:db8::/64x", NULL},
        {"192.0.2.0/24", NULL},
        {"192.0.2.7/64", NULL},
        {"::ffff:192.0.2.7/64", NULL},
        {"192.0.2", NULL},
        {"192.0.2.256", NULL},
        {"mail.example.com", NULL},
        {"", NULL},
        {" 192.0.2.7", NULL},
        {"192.0.2.7 ", NULL},
        {"2001:db8:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001", NULL},
};

TEST(key_parse_format)
{
	for (size_t i = 0; i < sizeof key_cases / sizeof key_cases[0]; i++) {
		const struct key_case *c = &key_cases[i];
		struct screen_key k;
		int rc = screen_key_parse(c->in, &k);
		if (!CHECK_INT(rc, c->out ? 0 : -1)) {
			printf("  '%s'\n", c->in);
			continue;
		}
		if (c->out) {
			char text[SCREEN_KEY_TEXT_MAX];
			screen_key_format(&k, text, sizeof text);
			if (!CHECK_STR(text, c->out))
				printf("  '%s'\n", c->in);
			struct screen_key again;
			CHECK_INT(screen_key_parse(text, &again),
			          0); /* the text form parses back */
			CHECK(memcmp(&again, &k, sizeof k) == 0);
		}
	}
	struct screen_key k = key_of("192.0.2.7");
	CHECK_INT(screen_key_is_v4(&k), 1);
	k = key_of("2001:db8::1");
	CHECK_INT(screen_key_is_v4(&k), 0);
	char tiny[4];
	screen_key_format(&k, tiny, sizeof tiny);
	CHECK_INT(strlen(tiny), 3);
}

TEST(key_from_sockaddr)
{
	struct sockaddr_storage a = sa_of("192.0.2.7"), b = sa_of("::ffff:192.0.2.7");
	struct sockaddr_storage c = sa_of("2001:db8:1:2::1"), d = sa_of("2001:db8:1:2:9::9");
	struct sockaddr_storage e = sa_of("2001:db8:1:3::1");
	struct screen_key ka, kb, kc, kd, ke;
	CHECK_INT(screen_key_from_sockaddr(SA(a), &ka), 0);
	CHECK_INT(screen_key_from_sockaddr(SA(b), &kb), 0);
	CHECK_INT(screen_key_from_sockaddr(SA(c), &kc), 0);
	CHECK_INT(screen_key_from_sockaddr(SA(d), &kd), 0);
	CHECK_INT(screen_key_from_sockaddr(SA(e), &ke), 0);
	CHECK(memcmp(&ka, &kb, sizeof ka) == 0);
	CHECK(memcmp(&kc, &kd, sizeof kc) == 0); /* one /64 */
	CHECK(memcmp(&kc, &ke, sizeof kc) != 0);
	struct screen_key want = key_of("192.0.2.7");
	CHECK(memcmp(&ka, &want, sizeof ka) == 0);
	struct sockaddr un = {.sa_family = AF_UNIX};
	CHECK_INT(screen_key_from_sockaddr(&un, &ka), -1);
}

/* ---- counters ---- */

TEST(counter_window)
{
	struct screen_counter *c = screen_counter_new(64, 5, 600, 1);
	struct screen_key k = key_of("192.0.2.1"), other = key_of("192.0.2.2");
	/* Four failures in the window do not trigger; the fifth does. */
	for (int i = 1; i <= 4; i++)
		CHECK_INT(screen_counter_note(c, &k, T0 + i * 100), i);
	CHECK_INT(screen_counter_peek(c, &k, T0 + 400), 4);
	CHECK_INT(screen_counter_note(c, &other, T0 + 450), 1); /* another key counts apart */
	CHECK_INT(screen_counter_note(c, &k, T0 + 599), 5);
	/* Triggered: it counts from zero again. */
	CHECK_INT(screen_counter_peek(c, &k, T0 + 599), 0);
	CHECK_INT(screen_counter_note(c, &k, T0 + 600), 1);
	screen_counter_free(c);

	/* Five events spread over more than the window never trigger: the window slides. */
	c = screen_counter_new(64, 5, 600, 1);
	int most = 0;
	for (int i = 0; i < 50; i++) {
		int n = screen_counter_note(c, &k, T0 + i * 150); /* 4 inside any 600 s */
		most = n > most ? n : most;
	}
	CHECK_INT(most, 4);
	/* Exactly DURATION apart is outside: events at t and t+600 are not "inside 600 s". */
	screen_counter_forget(c, &k);
	CHECK_INT(screen_counter_note(c, &k, T0), 1);
	CHECK_INT(screen_counter_note(c, &k, T0 + 600), 1);
	CHECK_INT(screen_counter_note(c, &k, T0 + 1199), 2);
	/* The oldest of the last four leaves the window while the others stay. */
	screen_counter_forget(c, &k);
	CHECK_INT(screen_counter_note(c, &k, T0), 1);
	CHECK_INT(screen_counter_note(c, &k, T0 + 10), 2);
	CHECK_INT(screen_counter_note(c, &k, T0 + 20), 3);
	CHECK_INT(screen_counter_note(c, &k, T0 + 30), 4);
	CHECK_INT(screen_counter_note(c, &k, T0 + 605), 4); /* T0 left; 10, 20, 30, 605 */
	CHECK_INT(screen_counter_note(c, &k, T0 + 609), 5);
	/* A clock that went back counts the event as inside. */
	CHECK_INT(screen_counter_note(c, &k, T0 + 2000), 1);
	CHECK_INT(screen_counter_note(c, &k, T0 + 1000), 2);
	screen_counter_free(c);
}

TEST(counter_off_and_one)
{
	struct screen_key k = key_of("192.0.2.1");
	struct screen_counter *off = screen_counter_new(16, 0, 60, 1);
	for (int i = 0; i < 100; i++)
		CHECK_INT(screen_counter_note(off, &k, T0), 0);
	CHECK_INT(screen_counter_used(off), 0);
	CHECK_INT(screen_counter_peek(off, &k, T0), 0);
	screen_counter_forget(off, &k);
	screen_counter_free(off);
	struct screen_counter *one = screen_counter_new(16, 1, 60, 1);
	CHECK_INT(screen_counter_note(one, &k, T0), 1);
	CHECK_INT(screen_counter_note(one, &k, T0), 1);
	screen_counter_free(one);
	screen_counter_free(NULL);
}

/* Many addresses cannot grow the table, nor push out an active attacker. */
TEST(counter_bounded)
{
	struct screen_counter *c = screen_counter_new(1000, 30, 60, 7);
	CHECK_INT(screen_counter_slots(c), 1000);
	struct screen_key heavy = key_of("203.0.113.9");
	int triggered = 0;
	for (uint32_t i = 0; i < 100000; i++) {
		struct screen_key k;
		struct sockaddr_in s = {.sin_family = AF_INET};
		s.sin_addr.s_addr = htonl(0x0a000000u + i);
		screen_key_from_sockaddr((struct sockaddr *)&s, &k);
		screen_counter_note(c, &k, T0 + i / 5000);
		if (i % 50 == 0 && screen_counter_note(c, &heavy, T0 + i / 5000) == 30)
			triggered++;
	}
	CHECK(screen_counter_used(c) <= 1000);
	CHECK(screen_counter_evictions(c) >= 99000 - 1000);
	CHECK(triggered >= 1); /* 2000 connections in 20 s: it reached 30 in a minute */
	screen_counter_free(c);
	/* A large COUNT lowers the number of slots to stay within the byte budget. */
	struct screen_counter *big = screen_counter_new(1u << 20, 1000, 60, 1);
	CHECK(screen_counter_slots(big) * 1000 * 4 <= SCREEN_COUNTER_BYTES_MAX);
	CHECK(screen_counter_slots(big) >= 1000);
	screen_counter_free(big);
	struct screen_counter *clamp = screen_counter_new(4, 5000, 60, 1);
	struct screen_key k = key_of("192.0.2.1");
	int n = 0;
	for (int i = 0; i < 2000; i++)
		n = screen_counter_note(clamp, &k, T0);
	CHECK_INT(n, 1000); /* COUNT clamped to 1000: the 2000th event is a second trigger */
	screen_counter_free(clamp);
}

/* ---- the block list ---- */

static struct screen_entry entry(const char *addr, int64_t until, const char *reason)
{
	struct screen_entry e = {.key = key_of(addr), .until = until};
	snprintf(e.reason, sizeof e.reason, "%s", reason);
	return e;
}

TEST(blocklist_basic)
{
	struct screen_blocklist *b = screen_blocklist_new(64, 3);
	struct screen_entry e = entry("192.0.2.1", T0 + 100, "manual");
	struct screen_key k = e.key, other = key_of("192.0.2.2");
	CHECK_INT(screen_blocklist_put(b, &e, T0), 0);
	const struct screen_entry *f = screen_blocklist_find(b, &k, T0);
	if (CHECK(f != NULL))
		CHECK_STR(f->reason, "manual");
	CHECK(screen_blocklist_find(b, &other, T0) == NULL);
	CHECK(screen_blocklist_find(b, &k, T0 + 99) != NULL);
	CHECK(screen_blocklist_find(b, &k, T0 + 100) == NULL); /* until is exclusive */
	/* Replacing the same key keeps one entry. */
	e.until = T0 + 500;
	CHECK_INT(screen_blocklist_put(b, &e, T0), 0);
	CHECK_INT(screen_blocklist_count(b), 1);
	CHECK(screen_blocklist_find(b, &k, T0 + 400) != NULL);
	/* Expiry frees the slot (in slices), deletion too. */
	struct screen_entry e2 = entry("192.0.2.2", T0 + 10, "x");
	screen_blocklist_put(b, &e2, T0);
	CHECK_INT(screen_blocklist_count(b), 2);
	size_t gone = 0;
	for (int i = 0; i < 64; i++)
		gone += screen_blocklist_expire(b, T0 + 20, 1);
	CHECK_INT(gone, 1);
	CHECK_INT(screen_blocklist_count(b), 1);
	CHECK_INT(screen_blocklist_del(b, &k), 1);
	CHECK_INT(screen_blocklist_del(b, &k), 0);
	CHECK_INT(screen_blocklist_count(b), 0);
	/* A long reason is cut, never overrun. */
	struct screen_entry longr = entry("192.0.2.3", T0 + 10, "");
	memset(longr.reason, 'r', sizeof longr.reason);
	screen_blocklist_put(b, &longr, T0);
	f = screen_blocklist_find(b, &longr.key, T0);
	if (CHECK(f != NULL))
		CHECK_INT(strlen(f->reason), SCREEN_REASON_MAX - 1);
	screen_blocklist_free(b);
	screen_blocklist_free(NULL);
}

/* A full table evicts the soonest-expiring entry of the window, never grows. */
TEST(blocklist_bounded)
{
	struct screen_blocklist *b = screen_blocklist_new(8, 3); /* one window: the whole table */
	struct screen_entry keep = entry("198.51.100.1", T0 + 86400, "manual");
	screen_blocklist_put(b, &keep, T0);
	for (int i = 0; i < 7; i++) {
		char a[32];
		snprintf(a, sizeof a, "192.0.2.%d", i + 1);
		struct screen_entry e = entry(a, T0 + 100 + i, "auth-failures");
		CHECK_INT(screen_blocklist_put(b, &e, T0), 0);
	}
	CHECK_INT(screen_blocklist_count(b), 8);
	struct screen_entry newer = entry("203.0.113.1", T0 + 3600, "connection-rate");
	CHECK_INT(screen_blocklist_put(b, &newer, T0), 1);
	CHECK_INT(screen_blocklist_count(b), 8);
	CHECK_INT(screen_blocklist_evictions(b), 1);
	struct screen_key gone = key_of("192.0.2.1"); /* until T0+100: the soonest */
	CHECK(screen_blocklist_find(b, &gone, T0) == NULL);
	CHECK(screen_blocklist_find(b, &keep.key, T0) != NULL);
	CHECK(screen_blocklist_find(b, &newer.key, T0) != NULL);
	/* An expired entry gives its slot without counting as an eviction. */
	struct screen_entry later = entry("203.0.113.2", T0 + 9000, "x");
	CHECK_INT(screen_blocklist_put(b, &later, T0 + 200), 0);
	CHECK_INT(screen_blocklist_evictions(b), 1);
	for (uint32_t i = 0; i < 10000; i++) {
		struct screen_entry e = {.until = T0 + 100000 + i};
		struct sockaddr_in s = {.sin_family = AF_INET};
		s.sin_addr.s_addr = htonl(0x0a000000u + i);
		screen_key_from_sockaddr((struct sockaddr *)&s, &e.key);
		screen_blocklist_put(b, &e, T0);
	}
	CHECK_INT(screen_blocklist_count(b), 8);
	CHECK_INT(screen_blocklist_slots(b), 8);
	screen_blocklist_free(b);
}

/* The merge of a fresh database read with what the loop added since. */
TEST(blocklist_merge)
{
	struct screen_blocklist *mem = screen_blocklist_new(64, 1),
	                        *fresh = screen_blocklist_new(64, 1);
	struct screen_entry from_db = entry("192.0.2.1", T0 + 100, "manual"); /* seq 0 */
	struct screen_entry written = entry("192.0.2.2", T0 + 100, "auth-failures");
	struct screen_entry since = entry("192.0.2.3", T0 + 100, "auth-failures");
	struct screen_entry old = entry("192.0.2.4", T0 + 5, "auth-failures");
	written.seq = 7;
	since.seq = 8;
	old.seq = 9;
	screen_blocklist_put(mem, &from_db, T0);
	screen_blocklist_put(mem, &written, T0);
	screen_blocklist_put(mem, &since, T0);
	screen_blocklist_put(mem, &old, T0);
	/* The read held the writes up to 7: only 8 (live) is carried over; 9 has expired. */
	CHECK_INT(screen_blocklist_merge_newer(fresh, mem, 7, T0 + 10), 1);
	CHECK(screen_blocklist_find(fresh, &since.key, T0 + 10) != NULL);
	CHECK(screen_blocklist_find(fresh, &written.key, T0 + 10) == NULL);
	CHECK(screen_blocklist_find(fresh, &from_db.key, T0 + 10) == NULL);
	CHECK_INT(screen_blocklist_count(fresh), 1);
	screen_blocklist_free(fresh);
	screen_blocklist_free(mem);
}

TEST(auth_delays)
{
	static const struct {
		int n;
		unsigned ms;
	} cases[] = {{-1, 0},   {0, 0},    {1, 0},     {2, 1000},  {3, 2000},  {4, 4000},
	             {5, 8000}, {6, 8000}, {17, 8000}, {18, 8000}, {40, 8000}, {1000, 8000}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!CHECK_INT(screen_auth_delay_ms(cases[i].n), cases[i].ms))
			printf("  n = %d\n", cases[i].n);
}

/* ---- screen.db ---- */

static void fresh_dir(void)
{
	snprintf(dbdir, sizeof dbdir, "/tmp/test_screen.XXXXXX");
	if (!mkdtemp(dbdir))
		exit(2);
	snprintf(dbpath, sizeof dbpath, "%s/screen.db", dbdir);
}

static void remove_dir(void)
{
	static const char *const files[] = {"screen.db", "screen.db-wal", "screen.db-shm"};
	char p[192];
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/%s", dbdir, files[i]);
		unlink(p);
	}
	rmdir(dbdir);
}

struct collected {
	char text[16][SCREEN_KEY_TEXT_MAX + 64];
	int n;
};

static int collect(void *arg, const struct screen_entry *e)
{
	struct collected *c = arg;
	char k[SCREEN_KEY_TEXT_MAX];
	screen_key_format(&e->key, k, sizeof k);
	if (c->n < 16)
		snprintf(c->text[c->n++], sizeof c->text[0], "%s %lld %s", k,
		         (long long)(e->until - T0), e->reason);
	return 0;
}

TEST(db_rows)
{
	char err[256];
	fresh_dir();
	struct screen_db *db = screen_db_open(dbpath, err, sizeof err);
	struct screen_db *tool = screen_db_open(dbpath, err, sizeof err);
	if (!CHECK(db != NULL && tool != NULL)) {
		printf("  %s\n", err);
		return;
	}
	uint64_t v0 = 0, v1 = 0, v2 = 0;
	CHECK_INT(screen_db_data_version(db, &v0), 0);
	struct screen_entry e[3] = {entry("192.0.2.9", T0 + 3600, "auth-failures"),
	                            entry("2001:db8::5", T0 + 60, "connection-rate"),
	                            entry("192.0.2.1", T0 + 10, "manual")};
	CHECK_INT(screen_db_put(db, e, 3, 1, T0), 0);
	/* Our own commit does not change our data_version; the tool's does. */
	CHECK_INT(screen_db_data_version(db, &v1), 0);
	CHECK(v1 == v0);
	struct screen_entry manual = entry("192.0.2.9", T0 + 86400, "manual");
	CHECK_INT(screen_db_put(tool, &manual, 1, 0, T0), 0);
	CHECK_INT(screen_db_data_version(db, &v2), 0);
	CHECK(v2 != v1);
	/* keep_longer: an automatic screening does not shorten the manual one... */
	struct screen_entry shorter = entry("192.0.2.9", T0 + 7200, "auth-failures");
	CHECK_INT(screen_db_put(db, &shorter, 1, 1, T0), 0);
	/* ...but replaces an expired row, and a longer one wins. */
	struct screen_entry again = entry("192.0.2.1", T0 + 5000, "unknown-recipients");
	CHECK_INT(screen_db_put(db, &again, 1, 1, T0 + 20), 0);
	struct collected c = {0};
	CHECK_INT(screen_db_each(db, T0, 1, 0, collect, &c), 3);
	CHECK_STR(c.text[0], "192.0.2.1 5000 unknown-recipients");
	CHECK_STR(c.text[1], "192.0.2.9 86400 manual");
	CHECK_STR(c.text[2], "2001:db8::/64 60 connection-rate");
	/* Latest expiry first, at most max, live only. */
	memset(&c, 0, sizeof c);
	CHECK_INT(screen_db_each(db, T0 + 100, 0, 2, collect, &c), 2);
	CHECK_STR(c.text[0], "192.0.2.9 86400 manual");
	CHECK_STR(c.text[1], "192.0.2.1 5000 unknown-recipients");
	/* Delete: 1 for a live row, 0 for an expired or missing one. */
	struct screen_key k = key_of("2001:db8::1"); /* the same /64 */
	CHECK_INT(screen_db_del(tool, &k, T0 + 100), 0); /* expired at T0+60 */
	CHECK_INT(screen_db_del(tool, &k, T0 + 100), 0);
	k = key_of("192.0.2.1");
	CHECK_INT(screen_db_del(tool, &k, T0 + 100), 1);
	CHECK_INT(screen_db_purge(db, T0 + 100000), 1); /* the manual row expired too */
	memset(&c, 0, sizeof c);
	CHECK_INT(screen_db_each(db, 0, 1, 0, collect, &c), 0);
	screen_db_close(tool);
	screen_db_close(db);
	screen_db_close(NULL);
	remove_dir();
}

/* ---- the daemon's object ---- */

static struct screen_config config(void)
{
	static struct netaddr_net exempt, trusted;
	char err[128];
	netaddr_parse_net("198.51.100.0/24", &exempt, err, sizeof err);
	netaddr_parse_net("127.0.0.0/8", &trusted, err, sizeof err);
	struct screen_config cfg = {
	        .rule = {{5, 600}, {20, 600}, {30, 60}},
	        .duration = 3600,
	        .exempt = &exempt,
	        .n_exempt = 1,
	        .trusted = &trusted,
	        .n_trusted = 1,
	};
	return cfg;
}

static struct screen *open_screen(int64_t now)
{
	char err[256];
	struct screen_config cfg = config();
	time_fake_set(now);
	struct screen *s = screen_open(dbpath, &cfg, now, err, sizeof err);
	if (!s)
		printf("screen_open: %s\n", err);
	return s;
}

TEST(screen_rules)
{
	fresh_dir();
	struct screen *s = open_screen(T0);
	if (!CHECK(s != NULL))
		return;
	struct sockaddr_storage bad = sa_of("192.0.2.66"), good = sa_of("192.0.2.67");
	int screened = -1;
	for (int i = 1; i <= 4; i++) {
		CHECK_INT(screen_note(s, SA(bad), SCREEN_EVENT_AUTH_FAILURE, T0 + i, &screened), i);
		CHECK_INT(screened, 0);
		CHECK_INT(screen_is_blocked(s, SA(bad), T0 + i), 0);
	}
	CHECK_INT(screen_note(s, SA(bad), SCREEN_EVENT_AUTH_FAILURE, T0 + 5, &screened), 5);
	CHECK_INT(screened, 1);
	CHECK_INT(screen_is_blocked(s, SA(bad), T0 + 5), 1);
	CHECK_INT(screen_is_blocked(s, SA(good), T0 + 5), 0);
	/* The same /64 is one key; the screening lasts screen_duration. */
	struct sockaddr_storage v6a = sa_of("2001:db8:7:7::1"), v6b = sa_of("2001:db8:7:7::2");
	for (int i = 0; i < 19; i++)
		screen_note(s, i % 2 ? SA(v6a) : SA(v6b), SCREEN_EVENT_UNKNOWN_RECIPIENT, T0, NULL);
	CHECK_INT(screen_is_blocked(s, SA(v6a), T0), 0);
	screen_note(s, SA(v6b), SCREEN_EVENT_UNKNOWN_RECIPIENT, T0, &screened);
	CHECK_INT(screened, 1);
	CHECK_INT(screen_is_blocked(s, SA(v6a), T0 + 3599), 1);
	CHECK_INT(screen_is_blocked(s, SA(v6a), T0 + 3600), 0);
	/* Connection rate: 30 in a minute. */
	struct sockaddr_storage fast = sa_of("192.0.2.80");
	for (int i = 0; i < 29; i++)
		screen_note(s, SA(fast), SCREEN_EVENT_CONNECTION, T0 + i, NULL);
	CHECK_INT(screen_is_blocked(s, SA(fast), T0 + 29), 0);
	CHECK_INT(screen_note(s, SA(fast), SCREEN_EVENT_CONNECTION, T0 + 59, &screened), 30);
	CHECK_INT(screened, 1);
	/* Exempt and trusted networks: never counted, never screened, even by hand. */
	struct sockaddr_storage ex = sa_of("198.51.100.5"), tr = sa_of("127.0.0.1");
	struct sockaddr_storage trm = sa_of("::ffff:127.0.0.1");
	for (int i = 0; i < 100; i++) {
		CHECK_INT(screen_note(s, SA(ex), SCREEN_EVENT_AUTH_FAILURE, T0, &screened), 0);
		CHECK_INT(screen_note(s, SA(tr), SCREEN_EVENT_CONNECTION, T0, &screened), 0);
		CHECK_INT(screen_note(s, SA(trm), SCREEN_EVENT_CONNECTION, T0, &screened), 0);
	}
	CHECK_INT(screen_block(s, SA(ex), 0, "auth-on-smtp-port", T0), 0);
	CHECK_INT(screen_is_blocked(s, SA(ex), T0), 0);
	CHECK_INT(screen_is_blocked(s, SA(tr), T0), 0);
	CHECK_INT(screen_is_exempt(s, SA(trm)), 1);
	/* screen_block: at once, for the given time or screen_duration. */
	struct sockaddr_storage p25 = sa_of("192.0.2.25");
	CHECK_INT(screen_block(s, SA(p25), 0, "auth-on-smtp-port", T0), 1);
	CHECK_INT(screen_is_blocked(s, SA(p25), T0 + 3599), 1);
	CHECK_INT(screen_is_blocked(s, SA(p25), T0 + 3600), 0);
	struct sockaddr un = {.sa_family = AF_UNIX};
	CHECK_INT(screen_block(s, &un, 0, "x", T0), 0);
	CHECK_INT(screen_is_blocked(s, &un, T0), 0);
	CHECK_INT(screen_note(s, &un, SCREEN_EVENT_CONNECTION, T0, &screened), 0);
	/* forget: a successful AUTH clears the failures. */
	struct sockaddr_storage user = sa_of("192.0.2.90");
	for (int i = 0; i < 4; i++)
		screen_note(s, SA(user), SCREEN_EVENT_AUTH_FAILURE, T0, NULL);
	screen_forget(s, SA(user), SCREEN_EVENT_AUTH_FAILURE);
	CHECK_INT(screen_note(s, SA(user), SCREEN_EVENT_AUTH_FAILURE, T0, &screened), 1);
	/* The screenings reached screen.db. */
	screen_sync(s, T0);
	char err[256];
	struct screen_db *db = screen_db_open(dbpath, err, sizeof err);
	struct collected c = {0};
	if (CHECK(db != NULL))
		CHECK_INT(screen_db_each(db, T0, 1, 0, collect, &c), 4);
	CHECK_STR(c.text[0], "192.0.2.25 3600 auth-on-smtp-port");
	CHECK_STR(c.text[1], "192.0.2.66 3605 auth-failures");
	CHECK_STR(c.text[2], "192.0.2.80 3659 connection-rate");
	CHECK_STR(c.text[3], "2001:db8:7:7::/64 3600 unknown-recipients");
	screen_db_close(db);
	screen_close(s);
	time_fake_set(0);
	remove_dir();
}

/* Across a restart, and what the tool changes reaches the running list. */
TEST(screen_persist_and_tool)
{
	char err[256];
	fresh_dir();
	struct screen *s = open_screen(T0);
	if (!CHECK(s != NULL))
		return;
	struct sockaddr_storage a = sa_of("192.0.2.10"), b = sa_of("192.0.2.11");
	struct sockaddr_storage x = sa_of("192.0.2.12");
	screen_block(s, SA(a), 600, "auth-on-smtp-port", T0);
	screen_close(s);
	/* Restarted later: still screened until its time. */
	s = open_screen(T0 + 100);
	if (!CHECK(s != NULL))
		return;
	CHECK_INT(screen_is_blocked(s, SA(a), T0 + 100), 1);
	CHECK_INT(screen_is_blocked(s, SA(a), T0 + 600), 0);
	/* The tool adds b and deletes a; the loop screens x meanwhile. */
	struct screen_db *tool = screen_db_open(dbpath, err, sizeof err);
	if (!CHECK(tool != NULL))
		return;
	struct screen_entry eb = entry("192.0.2.11", T0 + 86400, "manual");
	CHECK_INT(screen_db_put(tool, &eb, 1, 0, T0 + 100), 0);
	struct screen_key ka = key_of("192.0.2.10");
	CHECK_INT(screen_db_del(tool, &ka, T0 + 100), 1);
	screen_block(s, SA(x), 0, "auth-on-smtp-port", T0 + 100);
	/* The writer polls every SCREEN_POLL_MS: the tick sees it within a bounded wait. */
	uint64_t deadline = time_mono_ms() + 5000;
	while (!screen_is_blocked(s, SA(b), T0 + 100) && time_mono_ms() < deadline) {
		usleep(10000);
		screen_tick(s, T0 + 100);
	}
	CHECK_INT(screen_is_blocked(s, SA(b), T0 + 100), 1);
	CHECK_INT(screen_is_blocked(s, SA(a), T0 + 100), 0);
	CHECK_INT(screen_is_blocked(s, SA(x), T0 + 100), 1); /* not lost in the merge */
	struct screen_stats st;
	screen_get_stats(s, &st);
	CHECK(st.reloads >= 1);
	CHECK_INT(st.writes_dropped, 0);
	/* screen_sync: a change is in force as soon as the thread has looked once more. */
	struct screen_key kb = key_of("192.0.2.11");
	CHECK_INT(screen_db_del(tool, &kb, T0 + 100), 1);
	screen_sync(s, T0 + 100);
	CHECK_INT(screen_is_blocked(s, SA(b), T0 + 100), 0);
	CHECK_INT(screen_is_blocked(s, SA(x), T0 + 100), 1);
	/* An automatic screening does not shorten a longer manual one. */
	struct screen_entry ex = entry("192.0.2.12", T0 + 86400 * 7, "manual");
	CHECK_INT(screen_db_put(tool, &ex, 1, 0, T0 + 100), 0);
	screen_sync(s, T0 + 100);
	screen_block(s, SA(x), 60, "auth-on-smtp-port", T0 + 100);
	CHECK_INT(screen_is_blocked(s, SA(x), T0 + 86400), 1);
	screen_sync(s, T0 + 100);
	struct collected c = {0};
	CHECK_INT(screen_db_each(tool, T0 + 100, 1, 0, collect, &c), 1);
	CHECK_STR(c.text[0], "192.0.2.12 604800 manual");
	screen_db_close(tool);
	screen_close(s);
	time_fake_set(0);
	remove_dir();
}

/* A new configuration: changed rules count from zero, exemptions change at once. */
TEST(screen_configure_reload)
{
	fresh_dir();
	struct screen *s = open_screen(T0);
	if (!CHECK(s != NULL))
		return;
	struct sockaddr_storage a = sa_of("192.0.2.50"), ex = sa_of("198.51.100.9");
	for (int i = 0; i < 3; i++)
		screen_note(s, SA(a), SCREEN_EVENT_UNKNOWN_RECIPIENT, T0, NULL);
	for (int i = 0; i < 3; i++)
		screen_note(s, SA(a), SCREEN_EVENT_AUTH_FAILURE, T0, NULL);
	struct screen_config cfg = config();
	cfg.rule[SCREEN_EVENT_AUTH_FAILURE].count = 2;
	cfg.n_exempt = 0;
	cfg.duration = 60;
	CHECK_INT(screen_configure(s, &cfg), 0);
	CHECK_INT(screen_note(s, SA(a), SCREEN_EVENT_UNKNOWN_RECIPIENT, T0, NULL), 4); /* kept */
	int screened = 0;
	CHECK_INT(screen_note(s, SA(a), SCREEN_EVENT_AUTH_FAILURE, T0, &screened), 1); /* new */
	CHECK_INT(screen_note(s, SA(a), SCREEN_EVENT_AUTH_FAILURE, T0, &screened), 2);
	CHECK_INT(screened, 1);
	CHECK_INT(screen_is_blocked(s, SA(a), T0 + 59), 1);
	CHECK_INT(screen_is_blocked(s, SA(a), T0 + 60), 0);
	CHECK_INT(screen_is_exempt(s, SA(ex)), 0);
	cfg.rule[SCREEN_EVENT_CONNECTION].count = 0; /* off */
	CHECK_INT(screen_configure(s, &cfg), 0);
	for (int i = 0; i < 100; i++)
		CHECK_INT(screen_note(s, SA(ex), SCREEN_EVENT_CONNECTION, T0, &screened), 0);
	CHECK_INT(screen_is_blocked(s, SA(ex), T0), 0);
	screen_close(s);
	screen_close(NULL);
	time_fake_set(0);
	remove_dir();
}

TEST(screen_open_fails)
{
	char err[256] = "";
	struct screen_config cfg = config();
	struct screen *s = screen_open("/nonexistent-dir/screen.db", &cfg, T0, err, sizeof err);
	CHECK(s == NULL);
	CHECK(strstr(err, "/nonexistent-dir/screen.db") != NULL);
}

TEST_MAIN(T(key_parse_format), T(key_from_sockaddr), T(counter_window), T(counter_off_and_one),
          T(counter_bounded), T(blocklist_basic), T(blocklist_bounded), T(blocklist_merge),
          T(auth_delays), T(db_rows), T(screen_rules), T(screen_persist_and_tool),
          T(screen_configure_reload), T(screen_open_fails))
