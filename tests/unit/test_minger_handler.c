/*
 * test_minger_handler: the Minger request handler with a fake directory and a
 * fake clock. Every reply produced here is also checked against the
 * amplification rule (reply <= query in strict mode, <= query + 2 otherwise).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "minger/minger_handler.h"
#include "minger/minger_ratelimit.h"
#include "minger/minger_replay.h"
#include "util/log.h"

#define SECRET1 "0123456789abcdef"
#define SECRET2 "correct-horse-battery-staple"
#define WRONG "wrong-secret-0000"
#define T0 1700000000

struct fake_entry {
	const char *mailbox;
	enum lookup_result result;
	enum lookup_kind kind;
	int can_receive;
};

static const struct fake_entry fake_dir[] = {
        {"arvel@example.com", LOOKUP_FOUND, LOOKUP_KIND_ACCOUNT, 1},
        {"user01@example.com", LOOKUP_FOUND, LOOKUP_KIND_ACCOUNT, 1},
        {"off@example.com", LOOKUP_FOUND, LOOKUP_KIND_ACCOUNT, 0},
        {"list@example.com", LOOKUP_FOUND, LOOKUP_KIND_ALIAS_LOCAL, 1},
        {"deadlist@example.com", LOOKUP_FOUND, LOOKUP_KIND_ALIAS_LOCAL, 0},
        {"fwd@example.com", LOOKUP_FOUND, LOOKUP_KIND_ALIAS_FOREIGN, 1},
        {"busy@example.com", LOOKUP_TEMPFAIL, LOOKUP_KIND_NONE, 0},
        {"a@b", LOOKUP_FOUND, LOOKUP_KIND_ACCOUNT, 1},
};

static int lookups;

static enum lookup_result fake_lookup(void *arg, const char *mailbox, size_t len,
                                      struct lookup_answer *out)
{
	lookups++;
	CHECK(arg == (void *)fake_dir);
	for (size_t i = 0; i < sizeof fake_dir / sizeof fake_dir[0]; i++) {
		if (strlen(fake_dir[i].mailbox) == len &&
		    memcmp(fake_dir[i].mailbox, mailbox, len) == 0) {
			out->kind = fake_dir[i].kind;
			out->can_receive = fake_dir[i].can_receive;
			return fake_dir[i].result;
		}
	}
	return LOOKUP_NOTFOUND;
}

static const struct minger_secret secrets[] = {
        {SECRET1, sizeof SECRET1 - 1},
        {SECRET2, sizeof SECRET2 - 1},
};

struct fixture {
	struct minger_handler_conf c;
	struct minger_handler h;
	struct minger_replay *replay;
	struct minger_now now;
	struct sockaddr_in src;
	char reply[MINGER_REPLY_MAX];
	size_t reply_len;
};

/*
 * The configuration's defaults: one secret, no anonymous, compat, amplification at most
 * 2 octets (minger_strict_amplification = no), 60 s window, no limits, no gateways.
 */
static void fx_init(struct fixture *f)
{
	memset(f, 0, sizeof *f);
	log_set_level(LOG_LEVEL_ERR); /* the refusal lines are expected here */
	f->c = (struct minger_handler_conf){.secrets = secrets,
	                                    .n_secrets = 1,
	                                    .compat = 1,
	                                    .strict_amplification = 0,
	                                    .replay_window = 60};
	f->replay = minger_replay_new(1024, 42);
	minger_handler_init(&f->h, &f->c, fake_lookup, (void *)fake_dir, NULL, NULL, f->replay);
	f->now = (struct minger_now){.wall_s = T0, .mono_ms = 5000};
	f->src.sin_family = AF_INET;
	f->src.sin_port = htons(40000);
	inet_pton(AF_INET, "127.0.0.1", &f->src.sin_addr);
}

static void fx_fini(struct fixture *f)
{
	minger_replay_free(f->replay);
}

/* Sends len octets; returns the reply (NUL-terminated) or NULL for a drop. */
static const char *ask_raw(struct fixture *f, const void *q, size_t len)
{
	f->reply_len = minger_handler_handle(&f->h, q, len, (const struct sockaddr *)&f->src,
	                                     &f->now, f->reply, sizeof f->reply);
	minger_handler_batch_end(&f->h);
	if (!f->reply_len)
		return NULL;
	size_t slack = f->c.strict_amplification ? 0 : 2;
	CHECK(f->reply_len <= len + slack);
	f->reply[f->reply_len] = '\0';
	return f->reply;
}

static const char *ask(struct fixture *f, const char *q)
{
	return ask_raw(f, q, strlen(q));
}

/* "mailbox d=<digest>" for secret (or plain mailbox when secret is NULL). */
static const char *q_digest(char *buf, size_t sz, const char *mailbox, const char *secret)
{
	int n = minger_query_format(buf, sz, mailbox, strlen(mailbox), secret,
	                            secret ? strlen(secret) : 0, 0, NULL);
	CHECK(n > 0);
	return buf;
}

static const char *q_ext(char *buf, size_t sz, const char *mailbox, const char *secret, int64_t ts,
                         const char *nonce)
{
	int n = minger_query_format(buf, sz, mailbox, strlen(mailbox), secret, strlen(secret),
	                            (uint64_t)ts, nonce);
	CHECK(n > 0);
	return buf;
}

TEST(status_from_lookup)
{
	static const struct {
		const char *mailbox;
		int foreign_active;
		const char *want;
	} rows[] = {
	        {"arvel@example.com", 0, "arvel@example.com 5"},
	        {"off@example.com", 0, "off@example.com 4"},
	        {"nobody@example.com", 0, "nobody@example.com 3"},
	        {"list@example.com", 0, "list@example.com 5"},
	        {"deadlist@example.com", 0, "deadlist@example.com 4"},
	        {"fwd@example.com", 0, "fwd@example.com 3"},
	        {"fwd@example.com", 1, "fwd@example.com 5"},
	        {"nobody@example.com", 1, "nobody@example.com 3"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct fixture f;
		char q[256];
		fx_init(&f);
		f.c.foreign_aliases_active = rows[i].foreign_active;
		CHECK_STR(ask(&f, q_digest(q, sizeof q, rows[i].mailbox, SECRET1)), rows[i].want);
		fx_fini(&f);
	}
}

TEST(protocol_examples)
{
	/*
	 * The example exchanges of minger-protocol.md, byte for byte, under the default
	 * configuration (strict amplification off), and what strict mode makes of them:
	 * the two unpadded ones would get a reply 2 octets longer than the query, dropped.
	 */
	static const struct {
		const char *q, *want, *want_strict;
	} rows[] = {
	        {"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw==", "arvel@example.com 5",
	         "arvel@example.com 5"},
	        {"nobody@example.com d=OtuP1skxbYmws8JVVf3DuA==", "nobody@example.com 3",
	         "nobody@example.com 3"},
	        {"arvel@example.com d=2P4Wlz1pI7ZmGe89PLJ8fw==", "arvel@example.com 2",
	         "arvel@example.com 2"},
	        {"arvel@example.com", "arvel@example.com 2", NULL},
	        {"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw== foo=bar", "arvel@example.com 5",
	         "arvel@example.com 5"},
	        {"arvel", "arvel 0", NULL},
	        {"arvel@example.com pad=00", "arvel@example.com 2", "arvel@example.com 2"},
	        {"arvel pad=00", "arvel 0", "arvel 0"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		for (int strict = 0; strict <= 1; strict++) {
			struct fixture f;
			fx_init(&f);
			f.c.strict_amplification = strict;
			const char *want = strict ? rows[i].want_strict : rows[i].want;
			const char *got = ask(&f, rows[i].q);
			if (want)
				CHECK_STR(got, want);
			else
				CHECK(got == NULL);
			CHECK_INT(f.h.stats.events[MINGER_EV_AMPLIFICATION], want ? 0 : 1);
			fx_fini(&f);
		}
	}
}

TEST(tempfail_drops)
{
	struct fixture f;
	char q[256];
	fx_init(&f);
	CHECK(ask(&f, q_digest(q, sizeof q, "busy@example.com", SECRET1)) == NULL);
	CHECK_INT(f.h.stats.events[MINGER_EV_TEMPFAIL], 1);
	CHECK_INT(lookups > 0, 1);
	fx_fini(&f);
}

TEST(refusals_do_not_look_up)
{
	/* Wrong secret and anonymous refusal: status 2 for existing and unknown alike, no lookup. */
	const char *boxes[] = {"arvel@example.com", "nobody@example.com", "busy@example.com"};
	for (size_t i = 0; i < 3; i++) {
		struct fixture f;
		char q[256], want[256];
		fx_init(&f);
		snprintf(want, sizeof want, "%s 2", boxes[i]);
		int before = lookups;
		CHECK_STR(ask(&f, q_digest(q, sizeof q, boxes[i], WRONG)), want);
		snprintf(q, sizeof q, "%s pad=00", boxes[i]);
		CHECK_STR(ask(&f, q), want);
		CHECK_INT(lookups, before);
		CHECK_INT(f.h.stats.events[MINGER_EV_AUTH], 2);
		fx_fini(&f);
	}
}

TEST(anonymous_mode)
{
	struct fixture f;
	fx_init(&f);
	f.c.anonymous = 1;
	CHECK_STR(ask(&f, "arvel@example.com pad=00"), "arvel@example.com 5");
	CHECK_STR(ask(&f, "nobody@example.com pad=00"), "nobody@example.com 3");
	/* A wrong digest is still refused in anonymous mode. */
	char q[256];
	CHECK_STR(ask(&f, q_digest(q, sizeof q, "arvel@example.com", WRONG)),
	          "arvel@example.com 2");
	/* MDaemon's plain -06 query: answered by default (2 octets more at most). */
	CHECK_STR(ask(&f, "a@b"), "a@b 5");
	CHECK_STR(ask(&f, "arvel@example.com"), "arvel@example.com 5");
	CHECK_STR(ask(&f, "nobody@example.com"), "nobody@example.com 3");
	CHECK_STR(ask(&f, "off@example.com"), "off@example.com 4");
	CHECK_INT(f.h.stats.events[MINGER_EV_AMPLIFICATION], 0);
	/* minger_strict_amplification = yes: the reply would be 2 octets longer, dropped. */
	f.c.strict_amplification = 1;
	CHECK(ask(&f, "arvel@example.com") == NULL);
	CHECK(ask(&f, "a@b") == NULL);
	CHECK_INT(f.h.stats.events[MINGER_EV_AMPLIFICATION], 2);
	CHECK_STR(ask(&f, "arvel@example.com pad=00"), "arvel@example.com 5");
	fx_fini(&f);
}

TEST(anonymous_refused_unpadded_is_dropped)
{
	struct fixture f;
	fx_init(&f);
	CHECK_STR(ask(&f, "a@b"), "a@b 2");
	f.c.strict_amplification = 1;
	CHECK(ask(&f, "a@b") == NULL);
	fx_fini(&f);
}

TEST(multiple_secrets)
{
	struct fixture f;
	char q[256];
	fx_init(&f);
	CHECK_STR(ask(&f, q_digest(q, sizeof q, "user01@example.com", SECRET2)),
	          "user01@example.com 2");
	f.c.n_secrets = 2;
	CHECK_STR(ask(&f, "user01@example.com d=1oG3c4Nb6/PSKnIOj2Lg+w=="), "user01@example.com 5");
	CHECK_STR(ask(&f, q_digest(q, sizeof q, "arvel@example.com", SECRET1)),
	          "arvel@example.com 5");
	CHECK_STR(ask(&f, q_digest(q, sizeof q, "arvel@example.com", WRONG)),
	          "arvel@example.com 2");
	fx_fini(&f);
}

TEST(no_secret_refuses_digests)
{
	struct fixture f;
	fx_init(&f);
	f.c.n_secrets = 0;
	f.c.anonymous = 1;
	CHECK_STR(ask(&f, "arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw=="), "arvel@example.com 2");
	CHECK_STR(ask(&f, "arvel@example.com pad=00"), "arvel@example.com 5");
	fx_fini(&f);
}

TEST(compat_digest_forms)
{
	static const struct {
		const char *q;
		int compat;
		const char *want;
	} rows[] = {
	        {"arvel@example.com D=A7E/WJtlUbO5NWDjZba+bw==", 1, "arvel@example.com 5"},
	        {"arvel@example.com A7E/WJtlUbO5NWDjZba+bw==", 1, "arvel@example.com 5"},
	        {"arvel@example.com D=2P4Wlz1pI7ZmGe89PLJ8fw==", 1, "arvel@example.com 2"},
	        {"arvel@example.com 2P4Wlz1pI7ZmGe89PLJ8fw==", 1, "arvel@example.com 2"},
	        {"arvel@example.com D=A7E/WJtlUbO5NWDjZba+bw==", 0, "arvel@example.com 0"},
	        {"arvel@example.com A7E/WJtlUbO5NWDjZba+bw==", 0, "arvel@example.com 0"},
	        {"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw==", 0, "arvel@example.com 5"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct fixture f;
		fx_init(&f);
		f.c.compat = rows[i].compat;
		CHECK_STR(ask(&f, rows[i].q), rows[i].want);
		fx_fini(&f);
	}
}

TEST(allow_list)
{
	struct netaddr_net nets[2];
	char err[64];
	CHECK_INT(netaddr_parse_net("127.0.0.2/32", &nets[0], err, sizeof err), 0);
	CHECK_INT(netaddr_parse_net("10.0.0.0/8", &nets[1], err, sizeof err), 0);
	struct fixture f;
	char q[256];
	fx_init(&f);
	f.c.allow = nets;
	f.c.n_allow = 2;
	int before = lookups;
	CHECK_STR(ask(&f, q_digest(q, sizeof q, "arvel@example.com", SECRET1)),
	          "arvel@example.com 1");
	CHECK_STR(ask(&f, "arvel pad=00"), "arvel 1");
	CHECK_INT(lookups, before);
	CHECK_INT(f.h.stats.events[MINGER_EV_DENIED], 2);
	inet_pton(AF_INET, "10.1.2.3", &f.src.sin_addr);
	CHECK_STR(ask(&f, q), "arvel@example.com 5");
	inet_pton(AF_INET, "127.0.0.2", &f.src.sin_addr);
	CHECK_STR(ask(&f, q), "arvel@example.com 5");
	fx_fini(&f);
}

TEST(malformed_and_unusable)
{
	struct fixture f;
	fx_init(&f);
	static const uint8_t binary[] = {0x00, 0xff, 0x80, 0x01, 0x20, 0x41};
	CHECK(ask_raw(&f, "", 0) == NULL);
	/* One octet: "x 0" is the 2 octets more the default allows (rate limits bound it). */
	CHECK_STR(ask_raw(&f, "x", 1), "x 0");
	CHECK(ask_raw(&f, binary, sizeof binary) == NULL);
	CHECK_STR(ask(&f, "arvel"), "arvel 0");
	CHECK_STR(ask(&f, "arvel@example.com d= pad=00"), "arvel@example.com 0");
	CHECK_STR(ask(&f, "<arvel@example.com> pad=00"), "<arvel@example.com> 0");
	CHECK_STR(ask(&f, "arvel@example.com  d=A7E/WJtlUbO5NWDjZba+bw=="), "arvel@example.com 0");
	CHECK(f.h.stats.events[MINGER_EV_MALFORMED] >= 4);
	/* A malformed query whose echo would exceed the query is dropped in strict mode. */
	f.c.strict_amplification = 1;
	CHECK(ask(&f, "arvel") == NULL);
	CHECK(ask_raw(&f, "x", 1) == NULL);
	CHECK_STR(ask(&f, "arvel pad=00"), "arvel 0");
	fx_fini(&f);
}

TEST(oversize)
{
	struct fixture f;
	char q[MINGER_DATAGRAM_MAX + 2];
	fx_init(&f);
	int n = minger_query_format(q, sizeof q, "arvel@example.com", 17, SECRET1,
	                            sizeof SECRET1 - 1, 0, NULL);
	CHECK(n > 0);
	/* Pad with an ignored tag up to exactly 1024 octets: answered. */
	memcpy(q + n, " pad=", 5);
	memset(q + n + 5, 'x', (size_t)(MINGER_DATAGRAM_MAX - n - 5));
	CHECK_STR(ask_raw(&f, q, MINGER_DATAGRAM_MAX), "arvel@example.com 5");
	/* One more octet: dropped without a reply. */
	q[MINGER_DATAGRAM_MAX] = 'x';
	CHECK(ask_raw(&f, q, MINGER_DATAGRAM_MAX + 1) == NULL);
	CHECK_INT(f.h.stats.events[MINGER_EV_OVERSIZE], 1);
	fx_fini(&f);
}

/* Parses a reply and checks its mac against (secret, nonce). */
static int reply_mac_ok(const char *reply, const char *secret, const char *nonce)
{
	struct minger_reply r;
	if (!reply || minger_reply_parse((const uint8_t *)reply, strlen(reply), &r) != 0)
		return 0;
	return r.has_mac && minger_reply_mac_matches(&r, secret, strlen(secret), nonce);
}

TEST(extension_ok)
{
	struct fixture f;
	char q[512];
	fx_init(&f);
	f.c.n_secrets = 2;
	const char *nonce = "0123456789abcdef";
	const char *r = ask(&f, q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0, nonce));
	CHECK(r && strncmp(r, "arvel@example.com 5 mac=", 24) == 0);
	CHECK(reply_mac_ok(r, SECRET1, nonce));
	CHECK(!reply_mac_ok(r, SECRET2, nonce));
	CHECK(!reply_mac_ok(r, SECRET1, "0123456789abcdee"));
	/* The second secret signs the reply with the second secret; unknown gets a mac too. */
	r = ask(&f, q_ext(q, sizeof q, "nobody@example.com", SECRET2, T0 - 60, "00000000000000aa"));
	CHECK(r && strncmp(r, "nobody@example.com 3 mac=", 25) == 0);
	CHECK(reply_mac_ok(r, SECRET2, "00000000000000aa"));
	CHECK(!reply_mac_ok(r, SECRET1, "00000000000000aa"));
	r = ask(&f, q_ext(q, sizeof q, "off@example.com", SECRET1, T0 + 60, "00000000000000bb"));
	CHECK(r && strncmp(r, "off@example.com 4 mac=", 22) == 0);
	fx_fini(&f);
}

TEST(extension_refusals)
{
	struct fixture f;
	char q[512];
	fx_init(&f);
	/* Bad mac: one flipped hex digit of the mac. */
	q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0, "1111111111111111");
	size_t n = strlen(q);
	q[n - 1] = q[n - 1] == '0' ? '1' : '0';
	CHECK_STR(ask(&f, q), "arvel@example.com 2");
	CHECK_INT(f.h.stats.events[MINGER_EV_AUTH], 1);
	/* Signed with a secret the server does not have. */
	CHECK_STR(ask(&f, q_ext(q, sizeof q, "arvel@example.com", WRONG, T0, "2222222222222222")),
	          "arvel@example.com 2");
	/* Old and future timestamps. */
	CHECK_STR(ask(&f, q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0 - 61,
	                        "3333333333333333")),
	          "arvel@example.com 2");
	CHECK_STR(ask(&f, q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0 - 120,
	                        "3333333333333334")),
	          "arvel@example.com 2");
	CHECK_STR(ask(&f, q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0 + 61,
	                        "4444444444444444")),
	          "arvel@example.com 2");
	CHECK_STR(ask(&f, q_ext(q, sizeof q, "arvel@example.com", SECRET1, 0, "4444444444444445")),
	          "arvel@example.com 2");
	CHECK_INT(f.h.stats.events[MINGER_EV_REPLAY], 4);
	/* Replay: the same datagram twice, and the same nonce with a fresh ts. */
	q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0, "5555555555555555");
	const char *r = ask(&f, q);
	CHECK(r && strncmp(r, "arvel@example.com 5 mac=", 24) == 0);
	CHECK_STR(ask(&f, q), "arvel@example.com 2");
	f.now.wall_s += 10;
	CHECK_STR(ask(&f, q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0 + 10,
	                        "5555555555555555")),
	          "arvel@example.com 2");
	CHECK_INT(f.h.stats.events[MINGER_EV_REPLAY], 6);
	/* No reply to a refused extension query carries a mac. */
	CHECK(strstr(f.reply, "mac=") == NULL);
	fx_fini(&f);
}

TEST(extension_refusals_do_not_look_up)
{
	struct fixture f;
	char q[512];
	fx_init(&f);
	int before = lookups;
	ask(&f, q_ext(q, sizeof q, "arvel@example.com", WRONG, T0, "6666666666666666"));
	ask(&f, q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0 - 100, "6666666666666667"));
	CHECK_INT(lookups, before);
	fx_fini(&f);
}

TEST(replay_cache_full_refuses)
{
	/* A tiny cache: once its slots hold live nonces, new ones are refused, not forgotten. */
	struct fixture f;
	char q[512], nonce[17];
	fx_init(&f);
	minger_replay_free(f.replay);
	f.replay = minger_replay_new(4, 1);
	f.h.replay = f.replay;
	int ok = 0, refused = 0;
	for (int i = 0; i < 8; i++) {
		snprintf(nonce, sizeof nonce, "%016x", i + 1);
		const char *r =
		        ask(&f, q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0, nonce));
		if (r && strncmp(r, "arvel@example.com 5", 19) == 0)
			ok++;
		else if (r && strcmp(r, "arvel@example.com 2") == 0)
			refused++;
	}
	CHECK_INT(ok, 4);
	CHECK_INT(refused, 4);
	/* Once the window has passed, the slots are reused. */
	f.now.wall_s = T0 + 61;
	snprintf(nonce, sizeof nonce, "%016x", 100);
	const char *r = ask(&f, q_ext(q, sizeof q, "arvel@example.com", SECRET1, T0 + 61, nonce));
	CHECK(r && strncmp(r, "arvel@example.com 5 mac=", 24) == 0);
	fx_fini(&f);
}

TEST(rate_limit_per_source)
{
	struct fixture f;
	char q[256];
	fx_init(&f);
	struct minger_source_table *t = minger_source_table_new(64, 3, 7);
	f.h.sources = t;
	q_digest(q, sizeof q, "arvel@example.com", SECRET1);
	int answered = 0;
	for (int i = 0; i < 10; i++)
		answered += ask(&f, q) != NULL;
	CHECK_INT(answered, 3);
	CHECK_INT(f.h.stats.events[MINGER_EV_RATE], 7);
	/* Another source has its own bucket; the same IP on another port does not. */
	f.src.sin_port = htons(40001);
	CHECK(ask(&f, q) == NULL);
	inet_pton(AF_INET, "127.0.0.9", &f.src.sin_addr);
	CHECK_STR(ask(&f, q), "arvel@example.com 5");
	/* A second later the first source has a full bucket again. */
	inet_pton(AF_INET, "127.0.0.1", &f.src.sin_addr);
	f.now.mono_ms += 1000;
	answered = 0;
	for (int i = 0; i < 10; i++)
		answered += ask(&f, q) != NULL;
	CHECK_INT(answered, 3);
	minger_source_table_free(t);
	fx_fini(&f);
}

TEST(rate_limit_global)
{
	struct fixture f;
	char q[256];
	fx_init(&f);
	struct minger_global_limit *g = minger_global_limit_new(5);
	f.h.global = g;
	q_digest(q, sizeof q, "arvel@example.com", SECRET1);
	int answered = 0;
	for (int i = 0; i < 20; i++) {
		f.src.sin_addr.s_addr = htonl(0x0a000001u + (uint32_t)i);
		answered += ask(&f, q) != NULL;
	}
	CHECK_INT(answered, 5);
	f.now.mono_ms += 400; /* 2 tokens */
	answered = 0;
	for (int i = 0; i < 20; i++)
		answered += ask(&f, q) != NULL;
	CHECK_INT(answered, 2);
	minger_global_limit_free(g);
	fx_fini(&f);
}

TEST(denied_sources_spare_the_global_budget)
{
	struct netaddr_net net;
	char err[64], q[256];
	CHECK_INT(netaddr_parse_net("10.0.0.0/8", &net, err, sizeof err), 0);
	struct fixture f;
	fx_init(&f);
	f.c.allow = &net;
	f.c.n_allow = 1;
	struct minger_global_limit *g = minger_global_limit_new(2);
	f.h.global = g;
	q_digest(q, sizeof q, "arvel@example.com", SECRET1);
	for (int i = 0; i < 10; i++)
		CHECK_STR(ask(&f, q), "arvel@example.com 1");
	inet_pton(AF_INET, "10.0.0.1", &f.src.sin_addr);
	CHECK_STR(ask(&f, q), "arvel@example.com 5");
	CHECK_STR(ask(&f, q), "arvel@example.com 5");
	CHECK(ask(&f, q) == NULL);
	minger_global_limit_free(g);
	fx_fini(&f);
}

TEST(ipv6_source)
{
	struct fixture f;
	char q[256];
	fx_init(&f);
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(5000)};
	inet_pton(AF_INET6, "::1", &s6.sin6_addr);
	q_digest(q, sizeof q, "arvel@example.com", SECRET1);
	size_t n = minger_handler_handle(&f.h, (const uint8_t *)q, strlen(q),
	                                 (const struct sockaddr *)&s6, &f.now, f.reply,
	                                 sizeof f.reply);
	CHECK_MEM(f.reply, n, "arvel@example.com 5", 19);
	fx_fini(&f);
}

/*
 * minger_gateway_clients: a foreign-only alias answers 5 to a query from a listed
 * network whatever foreign_aliases_active says, and 3 to everyone else when it is
 * off; nothing else changes for a gateway (unknown stays 3, disabled stays 4).
 */
TEST(gateway_clients_see_foreign_aliases)
{
	struct netaddr_net nets[2];
	char err[64];
	CHECK_INT(netaddr_parse_net("192.0.2.10/32", &nets[0], err, sizeof err), 0);
	CHECK_INT(netaddr_parse_net("2001:db8::/64", &nets[1], err, sizeof err), 0);
	static const struct {
		const char *src; /* IPv4 or IPv6 source */
		int foreign_active;
		const char *mailbox, *want;
	} rows[] = {
	        {"192.0.2.10", 0, "fwd@example.com", "fwd@example.com 5"},
	        {"192.0.2.10", 1, "fwd@example.com", "fwd@example.com 5"},
	        {"192.0.2.11", 0, "fwd@example.com", "fwd@example.com 3"},
	        {"192.0.2.11", 1, "fwd@example.com", "fwd@example.com 5"},
	        {"127.0.0.1", 0, "fwd@example.com", "fwd@example.com 3"},
	        {"2001:db8::7", 0, "fwd@example.com", "fwd@example.com 5"},
	        {"2001:db8:1::7", 0, "fwd@example.com", "fwd@example.com 3"},
	        {"192.0.2.10", 0, "nobody@example.com", "nobody@example.com 3"},
	        {"192.0.2.10", 0, "off@example.com", "off@example.com 4"},
	        {"192.0.2.10", 0, "arvel@example.com", "arvel@example.com 5"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct fixture f;
		char q[256];
		fx_init(&f);
		f.c.gateway_clients = nets;
		f.c.n_gateway_clients = 2;
		f.c.foreign_aliases_active = rows[i].foreign_active;
		struct sockaddr_storage ss = {0};
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET, rows[i].src, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			s4->sin_port = htons(4069);
		} else {
			CHECK_INT(inet_pton(AF_INET6, rows[i].src, &s6->sin6_addr), 1);
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(4069);
		}
		q_digest(q, sizeof q, rows[i].mailbox, SECRET1);
		size_t n = minger_handler_handle(&f.h, (const uint8_t *)q, strlen(q),
		                                 (const struct sockaddr *)&ss, &f.now, f.reply,
		                                 sizeof f.reply);
		if (!CHECK_MEM(f.reply, n, rows[i].want, strlen(rows[i].want)))
			printf("  row %zu: %s from %s\n", i, rows[i].mailbox, rows[i].src);
		fx_fini(&f);
	}
}

TEST_MAIN(T(status_from_lookup), T(protocol_examples), T(tempfail_drops),
          T(refusals_do_not_look_up), T(anonymous_mode), T(anonymous_refused_unpadded_is_dropped),
          T(multiple_secrets), T(no_secret_refuses_digests), T(compat_digest_forms), T(allow_list),
          T(malformed_and_unusable), T(oversize), T(extension_ok), T(extension_refusals),
          T(extension_refusals_do_not_look_up), T(replay_cache_full_refuses),
          T(rate_limit_per_source), T(rate_limit_global), T(denied_sources_spare_the_global_budget),
          T(ipv6_source), T(gateway_clients_see_foreign_aliases))
