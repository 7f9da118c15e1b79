/* harness: see harness.h. */
#include "harness.h"

#include <stdio.h>

static unsigned long passed, failed, skipped;
static const char *current;

int harness_check(int cond, const char *expr, const char *file, int line)
{
	if (cond) {
		passed++;
		return 1;
	}
	failed++;
	fprintf(stderr, "FAIL %s: %s:%d: %s\n", current ? current : "?", file, line, expr);
	return 0;
}

void harness_skip(const char *why)
{
	skipped++;
	printf("SKIP %s: %s\n", current ? current : "?", why);
}

int harness_check_int(long long got, long long want, const char *expr, const char *file, int line)
{
	if (got == want)
		return harness_check(1, expr, file, line);
	harness_check(0, expr, file, line);
	fprintf(stderr, "     got %lld, want %lld\n", got, want);
	return 0;
}

int harness_check_str(const char *got, const char *want, const char *expr, const char *file,
                      int line)
{
	int ok = (got == NULL || want == NULL) ? got == want : strcmp(got, want) == 0;
	if (ok)
		return harness_check(1, expr, file, line);
	harness_check(0, expr, file, line);
	fprintf(stderr, "     got \"%s\", want \"%s\"\n", got ? got : "(null)",
	        want ? want : "(null)");
	return 0;
}

int harness_check_mem(const void *got, size_t got_len, const void *want, size_t want_len,
                      const char *expr, const char *file, int line)
{
	int ok = got_len == want_len && (got_len == 0 || memcmp(got, want, got_len) == 0);
	if (ok)
		return harness_check(1, expr, file, line);
	harness_check(0, expr, file, line);
	fprintf(stderr, "     got \"%.*s\" (%zu), want \"%.*s\" (%zu)\n", (int)got_len,
	        (const char *)got, got_len, (int)want_len, (const char *)want, want_len);
	return 0;
}

static int selected(const char *name, int argc, char **argv)
{
	if (argc < 2)
		return 1;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

int harness_run(const struct test_case *cases, size_t n, int argc, char **argv)
{
	for (size_t i = 0; i < n; i++) {
		if (!selected(cases[i].name, argc, argv))
			continue;
		current = cases[i].name;
		unsigned long before = failed;
		cases[i].fn();
		if (failed != before)
			fprintf(stderr, "---- %s failed\n", cases[i].name);
	}
	printf("%lu passed, %lu failed, %lu skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}
