/*
 * harness: the unit-test harness. A test file defines its tests with TEST(name)
 * and lists them in one table with TEST_MAIN(...). Each CHECK records a pass or a
 * failure (with file:line); SKIP(why) records a test that cannot run here (never a
 * pass); the binary's last line is "N passed, N failed, N skipped" and it exits
 * non-zero when anything failed. No global state besides the counters.
 */
#ifndef SHAREMAIL_TEST_HARNESS_H
#define SHAREMAIL_TEST_HARNESS_H

#include <stddef.h>
#include <string.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

/* Records one check; returns cond so callers can bail out of a test early. */
int harness_check(int cond, const char *expr, const char *file, int line);
/* Like harness_check for two integers, printing both values on failure. */
int harness_check_int(long long got, long long want, const char *expr, const char *file, int line);
/* Like harness_check for two NUL-terminated strings (NULL compares equal only to NULL). */
int harness_check_str(const char *got, const char *want, const char *expr, const char *file,
                      int line);
/* Like harness_check_str for byte ranges. */
int harness_check_mem(const void *got, size_t got_len, const void *want, size_t want_len,
                      const char *expr, const char *file, int line);
/* Records that the current test cannot run here, and why (printed; counted as skipped). */
void harness_skip(const char *why);
/* Runs every case (or only those named on the command line); returns the exit status. */
int harness_run(const struct test_case *cases, size_t n, int argc, char **argv);

#define TEST(name) static void name(void)
#define CHECK(c) harness_check(!!(c), #c, __FILE__, __LINE__)
#define SKIP(why) harness_skip(why)
#define CHECK_INT(got, want)                                                                       \
	harness_check_int((long long)(got), (long long)(want), #got, __FILE__, __LINE__)
#define CHECK_STR(got, want) harness_check_str((got), (want), #got, __FILE__, __LINE__)
#define CHECK_MEM(got, glen, want, wlen)                                                           \
	harness_check_mem((got), (glen), (want), (wlen), #got, __FILE__, __LINE__)
#define TEST_MAIN(...)                                                                             \
	int main(int argc, char **argv)                                                            \
	{                                                                                          \
		static const struct test_case cases[] = {__VA_ARGS__};                             \
		return harness_run(cases, sizeof cases / sizeof cases[0], argc, argv);             \
	}
#define T(fn)                                                                                      \
	{                                                                                          \
#fn, fn                                                                            \
	}

#endif
