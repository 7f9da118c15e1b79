/* timeutil: see timeutil.h. */
#include "util/timeutil.h"

#include <time.h>

static int64_t fake_wall;

uint64_t time_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t time_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t time_wall_s(void)
{
	if (fake_wall)
		return fake_wall;
	return (int64_t)time(NULL);
}

void time_fake_set(int64_t s)
{
	fake_wall = s;
}
