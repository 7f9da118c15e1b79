/*
 * Unit tests for verify_status (peers.status, written by the daemon, read by
 * `sharemail peers`): the exact format, a round trip, the atomic replace, and
 * damaged files refused with their line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "verify/verify_status.h"

static const struct verify_status_entry sample[] = {
        {VERIFY_STATUS_PEER, "b.example.com:25", "192.0.2.7:4069", 1700000000, 812, 790, 1500, 3},
        {VERIFY_STATUS_GATEWAY, "gw.example", "[2001:db8::1]:4069", 0, 0, 0, 0, 0},
        {VERIFY_STATUS_FORWARD, "lan.example", "10.0.0.5:4070", 1, 2, 3, 4, 5},
};

TEST(format_exact)
{
	char out[1024];
	int n = verify_status_format(sample, 3, out, sizeof out);
	CHECK_STR(out, VERIFY_STATUS_HEADER
	          "\n"
	          "peer b.example.com:25 192.0.2.7:4069 1700000000 812 790 1500 3\n"
	          "gateway gw.example [2001:db8::1]:4069 0 0 0 0 0\n"
	          "forward lan.example 10.0.0.5:4070 1 2 3 4 5\n");
	CHECK_INT(n, strlen(out));
	CHECK_INT(verify_status_format(sample, 3, out, 40), -1);
	struct verify_status_entry bad = sample[0];
	strcpy(bad.name, "has space");
	CHECK_INT(verify_status_format(&bad, 1, out, sizeof out), -1);
}

static char dir[64];

static const char *tmp_path(const char *name)
{
	static char p[128];
	if (!dir[0]) {
		snprintf(dir, sizeof dir, "/tmp/test_verify_status.XXXXXX");
		if (!mkdtemp(dir))
			exit(2);
	}
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return p;
}

TEST(round_trip_and_atomic_replace)
{
	char out[1024], err[256];
	int n = verify_status_format(sample, 3, out, sizeof out);
	const char *path = tmp_path("peers.status");
	CHECK_INT(verify_status_write(path, out, (size_t)n), 0);
	struct verify_status_entry *e = NULL;
	size_t count = 0;
	if (CHECK_INT(verify_status_read(path, &e, &count, NULL, NULL, err, sizeof err), 0) &&
	    CHECK_INT(count, 3)) {
		CHECK(memcmp(e, sample, sizeof sample) == 0);
	}
	free(e);
	/* The replacement leaves no temporary file behind. */
	char tmp[160];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	CHECK(access(tmp, F_OK) != 0);
	n = verify_status_format(sample, 1, out, sizeof out);
	CHECK_INT(verify_status_write(path, out, (size_t)n), 0);
	CHECK_INT(verify_status_read(path, &e, &count, NULL, NULL, err, sizeof err), 0);
	CHECK_INT(count, 1);
	free(e);
	unlink(path);
}

static const struct {
	const char *text;
	const char *err; /* after "PATH:" */
} bad_files[] = {
        {"peer a 1.2.3.4:1 0 0 0 0\n", "1: want 8 fields"},
        {"# header\npeer a 1.2.3.4:1 0 0 0 0 0 0 0\n", "2: want 8 fields"},
        {"host a 1.2.3.4:1 0 0 0 0 0\n", "1: kind is not"},
        {"peer a 1.2.3.4:1 -1 0 0 0 0\n", "1: bad number"},
        {"peer a 1.2.3.4:1 x 0 0 0 0\n", "1: bad number"},
        {"peer a 1.2.3.4:1 0 0 0 0 99999999999999999999\n", "1: bad number"},
        {"peer a\x01 1.2.3.4:1 0 0 0 0 0\n", "1: bad name"},
        {"peer a 1.2.3.4:1 0 0 0 0 0", "1: line too long or not ended"},
        {"peer a  1.2.3.4:1 0 0 0 0 0\n", "1: "},
};

TEST(damaged_files_refused)
{
	const char *path = tmp_path("bad.status");
	for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
		FILE *f = fopen(path, "w");
		fputs(bad_files[i].text, f);
		fclose(f);
		struct verify_status_entry *e = (void *)1;
		size_t n = 9;
		char err[256] = "", want[256];
		snprintf(want, sizeof want, "%s:%s", path, bad_files[i].err);
		if (!CHECK_INT(verify_status_read(path, &e, &n, NULL, NULL, err, sizeof err), -1) ||
		    !CHECK(strncmp(err, want, strlen(want)) == 0))
			printf("  case %zu: %s\n", i, err);
		CHECK(e == NULL);
		CHECK_INT(n, 0);
	}
	unlink(path);
	char err[256];
	struct verify_status_entry *e;
	size_t n;
	CHECK_INT(verify_status_read(path, &e, &n, NULL, NULL, err, sizeof err), -1);
	CHECK(strstr(err, "No such file") != NULL);
	CHECK_INT(errno, ENOENT); /* `sharemail peers`: an absent file is an empty list */
	rmdir(dir);
}

struct skipped {
	char where[4][256];
	size_t n;
};

static void on_skip(void *arg, const char *where)
{
	struct skipped *s = arg;
	if (s->n < 4)
		snprintf(s->where[s->n], sizeof s->where[0], "%s", where);
	s->n++;
}

TEST(damaged_lines_skipped_when_asked)
{
	const char *path = tmp_path("skip.status");
	FILE *f = fopen(path, "w");
	fputs("# header\npeer a 1.2.3.4:1 5 1 2 3 4\ngarbage line\n", f);
	for (int i = 0; i < 2000; i++)
		fputc('x', f);
	fputs("\ngateway example.org 1.2.3.5:2 0 0 0 7 7\npeer b 1.2.3.6:3 0 0 0 0 0", f);
	fclose(f);
	struct skipped sk = {0};
	struct verify_status_entry *e = NULL;
	size_t n = 0;
	char err[256] = "", want[256];
	if (CHECK_INT(verify_status_read(path, &e, &n, on_skip, &sk, err, sizeof err), 0) &&
	    CHECK_INT(n, 2)) {
		CHECK_STR(e[0].name, "a");
		CHECK_INT(e[0].failures, 4);
		CHECK_INT(e[1].kind, VERIFY_STATUS_GATEWAY);
		CHECK_INT(e[1].queries, 7);
	}
	if (CHECK_INT(sk.n, 3)) {
		snprintf(want, sizeof want, "%s:3: want 8 fields", path);
		CHECK_STR(sk.where[0], want);
		snprintf(want, sizeof want, "%s:4: line too long", path);
		CHECK(strncmp(sk.where[1], want, strlen(want)) == 0);
		snprintf(want, sizeof want, "%s:6: line too long or not ended", path);
		CHECK_STR(sk.where[2], want);
	}
	free(e);
	unlink(path);
}

TEST_MAIN(T(format_exact), T(round_trip_and_atomic_replace), T(damaged_lines_skipped_when_asked),
          T(damaged_files_refused)) /* the last one removes the folder */
