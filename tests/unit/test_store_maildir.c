/*
 * Unit tests for store/maildir's sized names: the ",S=<size>,W=<wire>" new/ name
 * format, the W= rule, and deliveries whose names must agree with the file (S= is
 * its size) and with what store/mailbox's reader yields (W=), for CRLF input,
 * bare CRs, a final line without a line end and data written in odd pieces.
 * (The path mapping, unique names and the tmp -> new durability: test_maildir.c.)
 */
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "store/mailbox.h"
#include "store/maildir.h"

TEST(sized_name_format)
{
	char out[MAILDIR_NAME_MAX];
	CHECK_INT(maildir_sized_name("1.M2P3Q4.h", 10, 12, out, sizeof out), 20);
	CHECK_STR(out, "1.M2P3Q4.h,S=10,W=12");
	CHECK_INT(maildir_sized_name("u", UINT64_MAX, UINT64_MAX, out, sizeof out),
	          1 + 2 * (3 + 20));
	CHECK(strlen(out) + 1 <= MAILDIR_SIZES_MAX + 1);
	CHECK_INT(maildir_sized_name("1.M2P3Q4.h", 10, 12, out, 20), -1); /* no room for the NUL */
}

TEST(wire_size_rule)
{
	static const struct {
		uint64_t size, lone;
		int last;
		uint64_t want;
	} cases[] = {
	        {0, 0, -1, 0},   {2, 1, '\n', 3},   {3, 0, '\n', 3},  {1, 0, 'a', 3},
	        {2, 0, '\r', 3}, {10, 4, '\n', 14}, {10, 4, 'x', 16},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(maildir_wire_size(cases[i].size, cases[i].lone, cases[i].last),
		          cases[i].want);
}

static char tmpdir[64];

struct delivery_case {
	const char *pieces[4]; /* written in this order (CRLF input, as the queue holds) */
	const char *file; /* the file's content */
	const char *wire; /* what the reader yields */
};

static const struct delivery_case deliveries[] = {
        {{"Subject: a\r\n\r\nbody\r\n", NULL},
         "Subject: a\n\nbody\n",
         "Subject: a\r\n\r\nbody\r\n"},
        {{"Subject: a\r", "\n\r\n", "x\r", "\n"}, "Subject: a\n\nx\n", "Subject: a\r\n\r\nx\r\n"},
        {{"a\rb\r\n", NULL}, "a\rb\n", "a\rb\r\n"},
        {{"a\r\r\n", NULL}, "a\r\n", "a\r\n"},
        {{"no end", NULL}, "no end", "no end\r\n"},
        {{"cr end\r", NULL}, "cr end\r", "cr end\r\n"},
        {{"", NULL}, "", ""},
};

static int read_new_name(const char *dir, char *name, size_t namesz)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/new", dir);
	DIR *d = opendir(p);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(name, namesz, "%s", e->d_name);
			n++;
		}
	closedir(d);
	return n;
}

TEST(deliveries_name_their_sizes)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_store_maildir.XXXXXX");
	if (!CHECK(mkdtemp(tmpdir) != NULL))
		return;
	for (size_t k = 0; k < sizeof deliveries / sizeof deliveries[0]; k++) {
		const struct delivery_case *c = &deliveries[k];
		char dir[256];
		snprintf(dir, sizeof dir, "%s/m%zu/Maildir", tmpdir, k);
		struct maildir_file f;
		if (!CHECK_INT(maildir_open(dir, "host", &f), 0))
			continue;
		for (size_t i = 0; i < 4 && c->pieces[i]; i++)
			CHECK_INT(maildir_write(&f, c->pieces[i], strlen(c->pieces[i])), 0);
		CHECK_INT(maildir_commit(&f), 0);
		char name[MAILDIR_NAME_MAX], want[MAILDIR_NAME_MAX + 64];
		CHECK_INT(read_new_name(dir, name, sizeof name), 1);
		CHECK_STR(name, f.new_name);
		snprintf(want, sizeof want, "%s,S=%zu,W=%zu", f.name, strlen(c->file),
		         strlen(c->wire));
		CHECK_STR(name, want);
		char p[1024], buf[256];
		snprintf(p, sizeof p, "%s/new/%s", dir, name);
		FILE *fp = fopen(p, "r");
		size_t n = fp ? fread(buf, 1, sizeof buf, fp) : 0;
		if (fp)
			fclose(fp);
		CHECK_MEM(buf, n, c->file, strlen(c->file));
		/* The reader agrees with W= (read from the name, not measured). */
		struct mailbox *mb = NULL;
		struct mailbox_reader *r = NULL;
		if (CHECK_INT(mailbox_open(dir, &mb), 0) && CHECK_INT(mailbox_count(mb), 1)) {
			CHECK_INT(mailbox_get(mb, 0)->wire_size, strlen(c->wire));
			CHECK_STR(mailbox_get(mb, 0)->uid, f.name);
			if (CHECK_INT(mailbox_reader_open(mb, 0, &r), 0)) {
				size_t o = 0;
				ssize_t got;
				while ((got = mailbox_reader_read(r, buf + o, sizeof buf - o)) > 0)
					o += (size_t)got;
				CHECK_MEM(buf, o, c->wire, strlen(c->wire));
				mailbox_reader_free(r);
			}
		}
		mailbox_free(mb);
	}
}

TEST(tmp_name_stays_plain)
{
	char dir[256];
	snprintf(dir, sizeof dir, "%s/plain/Maildir", tmpdir);
	struct maildir_file f;
	if (!CHECK_INT(maildir_open(dir, "host", &f), 0))
		return;
	CHECK(strchr(f.name, ',') == NULL);
	char p[1024];
	snprintf(p, sizeof p, "%s/tmp/%s", dir, f.name);
	CHECK_INT(access(p, F_OK), 0);
	maildir_abort(&f);
	CHECK(access(p, F_OK) < 0);
}

/* A host name long enough that the unique name leaves no room for the sizes is refused. */
TEST(long_host_leaves_room_for_sizes)
{
	char dir[256], host[MAILDIR_NAME_MAX];
	snprintf(dir, sizeof dir, "%s/long/Maildir", tmpdir);
	memset(host, 'h', sizeof host - 1);
	host[sizeof host - 1] = '\0';
	struct maildir_file f;
	CHECK_INT(maildir_open(dir, host, &f), -1);
	host[150] = '\0'; /* fits with the sizes */
	if (CHECK_INT(maildir_open(dir, host, &f), 0)) {
		CHECK_INT(maildir_write(&f, "x\r\n", 3), 0);
		CHECK_INT(maildir_commit(&f), 0);
		CHECK(strstr(f.new_name, ",S=2,W=3") != NULL);
	}
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

TEST(cleanup)
{
	if (tmpdir[0])
		CHECK_INT(nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

TEST_MAIN(T(sized_name_format), T(wire_size_rule), T(deliveries_name_their_sizes),
          T(tmp_name_stays_plain), T(long_host_leaves_room_for_sizes), T(cleanup))
