/*
 * timeutil: clocks. Monotonic time for timeouts and rate limits, wall-clock time
 * for timestamps and TTLs. A test may replace the wall clock with time_fake_set()
 * so TTL logic is tested without sleeping.
 */
#ifndef SHAREMAIL_UTIL_TIMEUTIL_H
#define SHAREMAIL_UTIL_TIMEUTIL_H

#include <stdint.h>

/* Milliseconds from CLOCK_MONOTONIC. */
uint64_t time_mono_ms(void);
/* Microseconds from CLOCK_MONOTONIC. */
uint64_t time_mono_us(void);
/* Seconds since the epoch: the real clock, or the fake one when set. */
int64_t time_wall_s(void);
/* Makes time_wall_s() return `s` from now on (0 restores the real clock). Tests only. */
void time_fake_set(int64_t s);

#endif
