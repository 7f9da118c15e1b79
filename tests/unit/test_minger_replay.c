/* test_minger_replay: the nonce cache of the Minger extension: replay, expiry, bound. */
#include <stdio.h>

#include "harness.h"
#include "minger/minger_replay.h"

#define T0 1700000000

static void nonce_of(unsigned i, char out[17])
{
	snprintf(out, 17, "%016x", i);
}

TEST(replay_and_expiry)
{
	struct minger_replay *r = minger_replay_new(64, 5);
	CHECK_INT(minger_replay_check(r, "0123456789abcdef", T0 + 60, T0), MINGER_REPLAY_NEW);
	CHECK_INT(minger_replay_check(r, "0123456789abcdef", T0 + 60, T0 + 1), MINGER_REPLAY_SEEN);
	CHECK_INT(minger_replay_check(r, "0123456789abcdee", T0 + 60, T0 + 1), MINGER_REPLAY_NEW);
	CHECK_INT(minger_replay_check(r, "0123456789abcdef", T0 + 60, T0 + 60), MINGER_REPLAY_SEEN);
	CHECK_INT(minger_replay_live(r, T0 + 60), 2);
	/* After its expiry the entry is gone (the timestamp check refuses such replays). */
	CHECK_INT(minger_replay_live(r, T0 + 61), 0);
	CHECK_INT(minger_replay_check(r, "0123456789abcdef", T0 + 121, T0 + 61), MINGER_REPLAY_NEW);
	minger_replay_free(r);
}

TEST(bounded_refuses_when_full)
{
	struct minger_replay *r = minger_replay_new(100, 9);
	char n[17];
	int fresh = 0, full = 0;
	for (unsigned i = 0; i < 1000; i++) {
		nonce_of(i, n);
		enum minger_replay_result res = minger_replay_check(r, n, T0 + 60, T0);
		fresh += res == MINGER_REPLAY_NEW;
		full += res == MINGER_REPLAY_FULL;
	}
	CHECK(fresh <= 100);
	CHECK(fresh >= 90); /* the probe window covers almost the whole small table */
	CHECK_INT(fresh + full, 1000);
	CHECK_INT(minger_replay_live(r, T0), (long long)fresh);
	/* Every accepted nonce is still remembered: nothing was forgotten to make room. */
	int seen = 0;
	for (unsigned i = 0; i < 1000; i++) {
		nonce_of(i, n);
		seen += minger_replay_check(r, n, T0 + 60, T0) == MINGER_REPLAY_SEEN;
	}
	CHECK_INT(seen, fresh);
	/* Once expired, the room is reused. */
	nonce_of(5000, n);
	CHECK_INT(minger_replay_check(r, n, T0 + 200, T0 + 100), MINGER_REPLAY_NEW);
	minger_replay_free(r);
}

TEST(slots_for_rate)
{
	CHECK_INT(minger_replay_slots_for(0, 60), MINGER_REPLAY_MAX_SLOTS);
	CHECK_INT(minger_replay_slots_for(1, 60), MINGER_REPLAY_MIN_SLOTS);
	CHECK_INT(minger_replay_slots_for(1000, 60), 1000 * 121 * 2);
	CHECK_INT(minger_replay_slots_for(100000, 60), MINGER_REPLAY_MAX_SLOTS);
}

TEST_MAIN(T(replay_and_expiry), T(bounded_refuses_when_full), T(slots_for_rate))
