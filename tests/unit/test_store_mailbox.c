/*
 * Unit tests for store/mailbox: the name fields (S=, W=), UIDL making, the CRLF
 * conversion (fed in every chunk size and output window, and against an octet by
 * octet reference on generated inputs), and on real temporary Maildirs: listing
 * order, sizes taken from names without reading the files, files measured when
 * W= is missing, the reader (tiny buffers, a message moved to cur/, a file that
 * changed since the listing), deletion marks, RSET and the commit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "store/mailbox.h"
#include "store/maildir.h"

/* ---- names ---- */

struct sizes_case {
	const char *name;
	int found;
	uint64_t size, wire;
};

TEST(name_sizes_table)
{
	static const struct sizes_case cases[] = {
	        {"1700000000.M1P2Q3.host,S=1000,W=1030", 3, 1000, 1030},
	        {"1700000000.M1P2Q3.host,W=1030,S=1000:2,S", 3, 1000, 1030},
	        {"1700000000.M1P2Q3.host,S=1000:2,S", 1, 1000, 7},
	        {"1700000000.M1P2Q3.host", 0, 7, 7},
	        {"1700000000.M1P2Q3.host:2,W=5", 0, 7, 7}, /* after ':' is the info part */
	        {"x,S=,W=12", 2, 7, 12},
	        {"x,S=12a,W=-1", 0, 7, 7},
	        {"x,S=99999999999999999999", 0, 7, 7}, /* 20 digits: refused, no overflow */
	        {"x,S=9999999999999999999", 1, 9999999999999999999ULL, 7},
	        {"x,Z=1,S=3,W=4,", 3, 3, 4},
	        {"x,SS=3,WW=4", 0, 7, 7},
	        {"x,s=3,w=4", 0, 7, 7},
	        {",S=0,W=0", 3, 0, 0},
	        {"", 0, 7, 7},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t s = 7, w = 7;
		CHECK_INT(mailbox_name_sizes(cases[i].name, &s, &w), cases[i].found);
		CHECK_INT(s, cases[i].size);
		CHECK_INT(w, cases[i].wire);
	}
}

TEST(name_order_table)
{
	static const struct {
		const char *name;
		uint64_t sec, usec;
	} cases[] = {
	        {"1700000000.M99P1Q1.h,S=1", 1700000000, 99},
	        {"1700000000.M123456P1Q2.h", 1700000000, 123456},
	        {"1700000000.27041_118.foo.org", 1700000000, 0},
	        {"1700000000.M", 1700000000, 0},
	        {"x.M5", 0, 0},
	        {"", 0, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t s = 7, u = 7;
		mailbox_name_order(cases[i].name, &s, &u);
		CHECK_INT(s, cases[i].sec);
		CHECK_INT(u, cases[i].usec);
	}
}

static int uid_ok(const char *u)
{
	size_t n = strlen(u);
	if (n < 1 || n > MAILBOX_UID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u[i] < 0x21 || (unsigned char)u[i] > 0x7e)
			return 0;
	return 1;
}

TEST(uid_table)
{
	static const struct {
		const char *name, *uid; /* NULL uid: a digest is expected */
	} cases[] = {
	        {"1700000000.M1P2Q3.host,S=10,W=12", "1700000000.M1P2Q3.host"},
	        {"1700000000.M1P2Q3.host,S=10,W=12:2,S", "1700000000.M1P2Q3.host"},
	        {"1700000000.M1P2Q3.host:2,", "1700000000.M1P2Q3.host"},
	        {"plain", "plain"},
	        {"a\\072b", "a\\072b"},
	        {"has space,S=1", NULL},
	        {"~tilde", NULL},
	        {",S=1,W=2", NULL},
	        {"caf\xc3\xa9", NULL},
	        {"0123456789012345678901234567890123456789012345678901234567890123456789",
	         "0123456789012345678901234567890123456789012345678901234567890123456789"},
	        {"01234567890123456789012345678901234567890123456789012345678901234567890", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char u[MAILBOX_UID_MAX + 1];
		int n = mailbox_uid(cases[i].name, u, sizeof u);
		CHECK(n > 0 && uid_ok(u));
		CHECK_INT(n, (int)strlen(u));
		if (cases[i].uid)
			CHECK_STR(u, cases[i].uid);
		else
			CHECK(n == 65 && u[0] == '~' && strspn(u + 1, "0123456789abcdef") == 64);
	}
	char u[MAILBOX_UID_MAX + 1];
	CHECK_INT(mailbox_uid("x", u, MAILBOX_UID_MAX), -1);
}

TEST(uid_digest_is_stable_and_distinct)
{
	char a[MAILBOX_UID_MAX + 1], b[MAILBOX_UID_MAX + 1], c[MAILBOX_UID_MAX + 1];
	/* The flags part never changes the uid; the rest of the name does. */
	CHECK(mailbox_uid("a b,S=1,W=2", a, sizeof a) == 65);
	CHECK(mailbox_uid("a b,S=1,W=2:2,ST", b, sizeof b) == 65);
	CHECK_STR(a, b);
	CHECK(mailbox_uid("a b,S=1,W=3", c, sizeof c) == 65);
	CHECK(strcmp(a, c) != 0);
	CHECK(mailbox_uid(",S=1", a, sizeof a) == 65);
	CHECK(mailbox_uid(",S=2", b, sizeof b) == 65);
	CHECK(strcmp(a, b) != 0);
}

/* ---- CRLF conversion ---- */

struct crlf_case {
	const char *in;
	const char *out;
};

static const struct crlf_case crlf_cases[] = {
        {"", ""},
        {"a\n", "a\r\n"},
        {"a", "a\r\n"},
        {"a\r", "a\r\n"},
        {"\n", "\r\n"},
        {"\r", "\r\n"},
        {"a\r\r", "a\r\r\n"},
        {"a\r\nb\n", "a\r\nb\r\n"},
        {"a\rb\n", "a\rb\r\n"},
        {"\n\n\n", "\r\n\r\n\r\n"},
        {"\r\r\n", "\r\r\n"},
        {"\r\n\r", "\r\n\r\n"},
        {".\n..\n", ".\r\n..\r\n"}, /* no dot-stuffing here */
        {"H: 1\nH: 2\n\nb1\nb2\nb3", "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n"},
        /* runs longer than every output window, a line end at each window edge */
        {"0123456789012345678901234567890123456789012345678901234567890123456789\n"
         "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123\r\nx",
         "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
         "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123\r\nx\r\n"},
        {"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0\r",
         "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0\r\n"},
};

/* Runs the converter over in[0..len) with the given input chunk and output window sizes. */
static size_t convert(const char *in, size_t len, size_t chunk, size_t window, char *out,
                      size_t outsz)
{
	struct mailbox_crlf c;
	mailbox_crlf_init(&c);
	size_t i = 0, o = 0;
	char win[64];
	int stuck = 0;
	while (i < len && stuck < 3) {
		size_t n = len - i < chunk ? len - i : chunk, wl = 0;
		size_t used = mailbox_crlf_feed(&c, in + i, n, win, window, &wl);
		if (o + wl > outsz || wl > window)
			return (size_t)-1;
		memcpy(out + o, win, wl);
		o += wl;
		i += used;
		stuck = used ? 0 : stuck + 1;
	}
	size_t el = mailbox_crlf_end(&c, win, sizeof win);
	if (o + el > outsz)
		return (size_t)-1;
	memcpy(out + o, win, el);
	return o + el;
}

static const size_t chunks[] = {1, 2, 3, 7, 1000};
static const size_t windows[] = {2, 3, 5, 64};

TEST(crlf_table_every_chunk_and_window)
{
	for (size_t k = 0; k < sizeof crlf_cases / sizeof crlf_cases[0]; k++) {
		for (size_t a = 0; a < sizeof chunks / sizeof chunks[0]; a++) {
			for (size_t b = 0; b < sizeof windows / sizeof windows[0]; b++) {
				char out[256];
				const char *in = crlf_cases[k].in;
				size_t n = convert(in, strlen(in), chunks[a], windows[b], out,
				                   sizeof out);
				if (!CHECK_MEM(out, n, crlf_cases[k].out,
				               strlen(crlf_cases[k].out)))
					fprintf(stderr, "  case %zu chunk %zu window %zu\n", k,
					        chunks[a], windows[b]);
			}
		}
	}
}

/* The rule, an octet at a time: a LF not after a CR gets one; a last line is ended. */
static size_t crlf_reference(const char *in, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			out[o++] = '\r';
		out[o++] = in[i];
	}
	if (len > 0 && in[len - 1] != '\n') {
		if (in[len - 1] != '\r')
			out[o++] = '\r';
		out[o++] = '\n';
	}
	return o;
}

/* Generated inputs (mostly ordinary octets, CR and LF in every arrangement) against the
 * reference: the runs copied whole must end exactly where the octet rule would. */
TEST(crlf_runs_match_octet_reference)
{
	static const char alphabet[] = "ab.\r\n\n";
	unsigned seed = 12345;
	for (int t = 0; t < 400; t++) {
		char in[160], want[330], got[330];
		size_t len = (size_t)t % 150;
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = (seed >> 16) % 16;
			in[i] = r < 10 ? 'x' : alphabet[r - 10];
		}
		size_t wl = crlf_reference(in, len, want);
		for (size_t a = 0; a < sizeof chunks / sizeof chunks[0]; a++) {
			for (size_t b = 0; b < sizeof windows / sizeof windows[0]; b++) {
				size_t n = convert(in, len, chunks[a], windows[b], got, sizeof got);
				if (!CHECK_MEM(got, n, want, wl))
					fprintf(stderr, "  input %d chunk %zu window %zu\n", t,
					        chunks[a], windows[b]);
			}
		}
	}
}

/* The W= rule (maildir_wire_size) counts exactly what the reader yields. */
TEST(wire_size_matches_conversion)
{
	for (size_t k = 0; k < sizeof crlf_cases / sizeof crlf_cases[0]; k++) {
		const char *in = crlf_cases[k].in;
		uint64_t lone = 0;
		int last = -1;
		for (size_t i = 0; in[i]; i++) {
			if (in[i] == '\n' && last != '\r')
				lone++;
			last = (unsigned char)in[i];
		}
		CHECK_INT(maildir_wire_size(strlen(in), lone, last), strlen(crlf_cases[k].out));
	}
}

/* ---- on disk ---- */

static char tmpdir[64];

static void setup_tmp(void)
{
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof tmpdir, "/tmp/test_store_mailbox.XXXXXX");
		if (!mkdtemp(tmpdir))
			tmpdir[0] = '\0';
	}
}

static void write_file(const char *dir, const char *rel, const char *data, size_t len)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, data, len) != (ssize_t)len)
			CHECK(!"write");
		close(fd);
	}
}

static void make_maildir(char *dir, size_t dsz, const char *name)
{
	setup_tmp();
	snprintf(dir, dsz, "%s/%s", tmpdir, name);
	char p[1024];
	mkdir(dir, 0700);
	snprintf(p, sizeof p, "%s/new", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof p, "%s/cur", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof p, "%s/tmp", dir);
	mkdir(p, 0700);
}

static int exists(const char *dir, const char *rel)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	return access(p, F_OK) == 0;
}

TEST(missing_maildir_is_empty)
{
	struct mailbox *mb = NULL;
	setup_tmp();
	char dir[256];
	snprintf(dir, sizeof dir, "%s/no/such/Maildir", tmpdir);
	if (!CHECK_INT(mailbox_open(dir, &mb), 0))
		return;
	CHECK_INT(mailbox_count(mb), 0);
	CHECK(mailbox_get(mb, 0) == NULL);
	size_t c = 9;
	uint64_t o = 9;
	mailbox_stat(mb, &c, &o);
	CHECK_INT(c, 0);
	CHECK_INT(o, 0);
	CHECK_INT(mailbox_commit(mb), 0);
	mailbox_free(mb);
	mailbox_free(NULL);
}

TEST(listing_order_sizes_and_uids)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "list");
	/* W= is taken from the name without reading the file: these files are empty. */
	write_file(dir, "new/1700000002.M99P1Q2.h,S=10,W=12", "", 0);
	write_file(dir, "cur/1700000001.M5P1Q1.h,S=20,W=25:2,S", "", 0);
	write_file(dir, "new/999999999.M1P1Q1.h,S=1,W=2", "", 0); /* older: fewer digits */
	/* Same second: M99 was delivered before M100 (no zero padding). */
	write_file(dir, "new/1700000002.M100P1Q3.h,S=1,W=7", "", 0);
	write_file(dir, "new/.hidden", "x\n", 2);
	/* No W=: measured by reading (2 lone LFs, a final line without LF). */
	write_file(dir, "cur/1700000003.foreign:2,", "a\nb\r\nc\nd", 8);
	char p[1024];
	snprintf(p, sizeof p, "%s/new/1700000004.adir", dir);
	mkdir(p, 0700);
	/* A name with W= is never opened or stat'ed: even a dangling symlink is listed
	 * (its reader then fails), the proof that the listing read names only. */
	snprintf(p, sizeof p, "%s/new/1700000005.M1P1Q9.h,S=5,W=9", dir);
	CHECK_INT(symlink("/nonexistent/target", p), 0);
	struct mailbox *mb = NULL;
	if (!CHECK_INT(mailbox_open(dir, &mb), 0))
		return;
	if (!CHECK_INT(mailbox_count(mb), 6))
		goto out;
	static const struct {
		const char *name, *uid;
		uint64_t wire;
	} want[] = {
	        {"new/999999999.M1P1Q1.h,S=1,W=2", "999999999.M1P1Q1.h", 2},
	        {"cur/1700000001.M5P1Q1.h,S=20,W=25:2,S", "1700000001.M5P1Q1.h", 25},
	        {"new/1700000002.M99P1Q2.h,S=10,W=12", "1700000002.M99P1Q2.h", 12},
	        {"new/1700000002.M100P1Q3.h,S=1,W=7", "1700000002.M100P1Q3.h", 7},
	        {"cur/1700000003.foreign:2,", "1700000003.foreign", 12},
	        {"new/1700000005.M1P1Q9.h,S=5,W=9", "1700000005.M1P1Q9.h", 9},
	};
	for (size_t i = 0; i < 6; i++) {
		const struct mailbox_msg *m = mailbox_get(mb, i);
		CHECK_STR(m->name, want[i].name);
		CHECK_STR(m->uid, want[i].uid);
		CHECK_INT(m->wire_size, want[i].wire);
		CHECK_INT(m->deleted, 0);
	}
	size_t c;
	uint64_t o;
	mailbox_stat(mb, &c, &o);
	CHECK_INT(c, 6);
	CHECK_INT(o, 2 + 25 + 12 + 7 + 12 + 9);
	struct mailbox_reader *r = NULL;
	CHECK_INT(mailbox_reader_open(mb, 5, &r), -1);
out:
	mailbox_free(mb);
}

TEST(marks_reset_and_stat)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "marks");
	write_file(dir, "new/1.a,S=1,W=10", "", 0);
	write_file(dir, "new/2.b,S=1,W=20", "", 0);
	write_file(dir, "new/3.c,S=1,W=30", "", 0);
	struct mailbox *mb = NULL;
	if (!CHECK_INT(mailbox_open(dir, &mb), 0))
		return;
	size_t c;
	uint64_t o;
	CHECK_INT(mailbox_mark_deleted(mb, 1), 0);
	CHECK_INT(mailbox_mark_deleted(mb, 1), -1); /* already deleted */
	CHECK_INT(mailbox_mark_deleted(mb, 3), -1); /* out of range */
	CHECK_INT(mailbox_get(mb, 1)->deleted, 1);
	mailbox_stat(mb, &c, &o);
	CHECK_INT(c, 2);
	CHECK_INT(o, 40);
	CHECK_INT(mailbox_count(mb), 3); /* numbers stay */
	mailbox_reset(mb);
	mailbox_stat(mb, &c, &o);
	CHECK_INT(c, 3);
	CHECK_INT(o, 60);
	CHECK_INT(mailbox_commit(mb), 0); /* nothing marked: nothing removed */
	CHECK(exists(dir, "new/2.b,S=1,W=20"));
	mailbox_free(mb);
	/* free without commit forgets the marks (a dropped connection deletes nothing) */
	CHECK_INT(mailbox_open(dir, &mb), 0);
	CHECK_INT(mailbox_mark_deleted(mb, 0), 0);
	mailbox_free(mb);
	CHECK(exists(dir, "new/1.a,S=1,W=10"));
}

TEST(commit_removes_marked_even_when_moved)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "commit");
	write_file(dir, "new/1.a,S=2,W=3", "x\n", 2);
	write_file(dir, "new/2.b,S=2,W=3", "y\n", 2);
	write_file(dir, "new/3.c,S=2,W=3", "z\n", 2);
	write_file(dir, "cur/4.d:2,S", "w\n", 2);
	struct mailbox *mb = NULL;
	if (!CHECK_INT(mailbox_open(dir, &mb), 0))
		return;
	CHECK_INT(mailbox_count(mb), 4);
	CHECK_INT(mailbox_mark_deleted(mb, 0), 0);
	CHECK_INT(mailbox_mark_deleted(mb, 1), 0);
	CHECK_INT(mailbox_mark_deleted(mb, 3), 0);
	/* Meanwhile an IMAP reader moved 2.b to cur/ and someone removed 4.d. */
	char a[1024], b[1024];
	snprintf(a, sizeof a, "%s/new/2.b,S=2,W=3", dir);
	snprintf(b, sizeof b, "%s/cur/2.b,S=2,W=3:2,S", dir);
	CHECK_INT(rename(a, b), 0);
	snprintf(a, sizeof a, "%s/cur/4.d:2,S", dir);
	CHECK_INT(unlink(a), 0);
	CHECK_INT(mailbox_commit(mb), 0);
	CHECK(!exists(dir, "new/1.a,S=2,W=3"));
	CHECK(!exists(dir, "cur/2.b,S=2,W=3:2,S"));
	CHECK(exists(dir, "new/3.c,S=2,W=3"));
	mailbox_free(mb);
}

TEST(commit_counts_failures)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "commitfail");
	write_file(dir, "new/1.a,S=2,W=3", "x\n", 2);
	write_file(dir, "new/2.b,S=2,W=3", "y\n", 2);
	struct mailbox *mb = NULL;
	if (!CHECK_INT(mailbox_open(dir, &mb), 0))
		return;
	CHECK_INT(mailbox_mark_deleted(mb, 0), 0);
	CHECK_INT(mailbox_mark_deleted(mb, 1), 0);
	/* A folder where the file was cannot be unlinked (EISDIR), even as root. */
	char p[1024];
	snprintf(p, sizeof p, "%s/new/2.b,S=2,W=3", dir);
	CHECK_INT(unlink(p), 0);
	CHECK_INT(mkdir(p, 0700), 0);
	CHECK_INT(mailbox_commit(mb), 1);
	CHECK(!exists(dir, "new/1.a,S=2,W=3"));
	rmdir(p);
	mailbox_free(mb);
}

static size_t read_all(struct mailbox_reader *r, size_t bufsz, char *out, size_t outsz)
{
	char buf[64];
	size_t o = 0;
	for (;;) {
		ssize_t n = mailbox_reader_read(r, buf, bufsz);
		if (n <= 0) {
			CHECK_INT(n, 0);
			return o;
		}
		if (o + (size_t)n > outsz)
			return (size_t)-1;
		memcpy(out + o, buf, (size_t)n);
		o += (size_t)n;
	}
}

TEST(reader_every_buffer_size)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "reader");
	const char *msg = "Subject: t\nFrom: a@b\n\nline 1\n.dot\nline 3\nlast";
	write_file(dir, "new/1.a", msg, strlen(msg));
	const char *whole = "Subject: t\r\nFrom: a@b\r\n\r\nline 1\r\n.dot\r\nline 3\r\nlast\r\n";
	struct mailbox *mb = NULL;
	if (!CHECK_INT(mailbox_open(dir, &mb), 0))
		return;
	CHECK_INT(mailbox_get(mb, 0)->wire_size, strlen(whole));
	static const size_t bufs[] = {2, 3, 5, 64};
	for (size_t b = 0; b < 4; b++) {
		char out[256];
		struct mailbox_reader *r = NULL;
		if (CHECK_INT(mailbox_reader_open(mb, 0, &r), 0)) {
			size_t n = read_all(r, bufs[b], out, sizeof out);
			CHECK_MEM(out, n, whole, strlen(whole));
			CHECK_INT(mailbox_reader_read(r, out, sizeof out),
			          0); /* stays at the end */
			mailbox_reader_free(r);
		}
	}
	struct mailbox_reader *r = NULL;
	CHECK_INT(mailbox_reader_open(mb, 1, &r), -1);
	CHECK_INT(errno, EINVAL);
	if (CHECK_INT(mailbox_reader_open(mb, 0, &r), 0)) {
		char small[1];
		CHECK_INT(mailbox_reader_read(r, small, 1), -1); /* len < 2 refused */
		mailbox_reader_free(r);
	}
	mailbox_reader_free(NULL);
	mailbox_free(mb);
}

/*
 * A file rewritten since the listing (breaking Maildir's rule): the reader sends
 * what the file holds, whole, never cut at or padded to the listed W= size.
 */
TEST(reader_sends_the_file_as_it_is_not_the_listed_size)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "changed");
	write_file(dir, "new/8.g,S=6,W=8", "a\nbcd\n", 6);
	write_file(dir, "new/9.h,S=6,W=8", "a\nbcd\n", 6);
	struct mailbox *mb = NULL;
	if (!CHECK_INT(mailbox_open(dir, &mb), 0) || !CHECK_INT(mailbox_count(mb), 2))
		return;
	write_file(dir, "new/8.g,S=6,W=8", "a\nbcd\nefgh\n", 11);
	write_file(dir, "new/9.h,S=6,W=8", "a\nb", 3);
	static const char *const want[] = {"a\r\nbcd\r\nefgh\r\n", "a\r\nb\r\n"};
	for (size_t i = 0; i < 2; i++) {
		CHECK_INT(mailbox_get(mb, i)->wire_size, 8); /* the listing keeps its figure */
		struct mailbox_reader *r = NULL;
		if (CHECK_INT(mailbox_reader_open(mb, i, &r), 0)) {
			char out[64];
			size_t n = read_all(r, sizeof out, out, sizeof out);
			CHECK_MEM(out, n, want[i], strlen(want[i]));
			mailbox_reader_free(r);
		}
	}
	mailbox_free(mb);
}

TEST(reader_finds_moved_message_and_reports_gone)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "moved");
	write_file(dir, "new/5.e,S=2,W=3", "m\n", 2);
	write_file(dir, "new/6.f,S=2,W=3", "n\n", 2);
	struct mailbox *mb = NULL;
	if (!CHECK_INT(mailbox_open(dir, &mb), 0))
		return;
	char a[1024], b[1024];
	snprintf(a, sizeof a, "%s/new/5.e,S=2,W=3", dir);
	snprintf(b, sizeof b, "%s/cur/5.e,S=2,W=3:2,S", dir);
	CHECK_INT(rename(a, b), 0);
	snprintf(a, sizeof a, "%s/new/6.f,S=2,W=3", dir);
	CHECK_INT(unlink(a), 0);
	struct mailbox_reader *r = NULL;
	if (CHECK_INT(mailbox_reader_open(mb, 0, &r), 0)) {
		char out[16];
		size_t n = read_all(r, sizeof out, out, sizeof out);
		CHECK_MEM(out, n, "m\r\n", 3);
		mailbox_reader_free(r);
	}
	CHECK_INT(mailbox_reader_open(mb, 1, &r), -1);
	CHECK_INT(errno, ENOENT);
	mailbox_free(mb);
}

/* A large message read through a small buffer: the reader streams it. */
TEST(reader_streams_a_large_message)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "large");
	char p[1024];
	snprintf(p, sizeof p, "%s/new/7.big", dir);
	FILE *f = fopen(p, "w");
	if (!CHECK(f != NULL))
		return;
	fputs("Subject: big\n\n", f);
	size_t lines = 100000; /* 100000 lines of 79 octets + LF: 8 MB */
	for (size_t i = 0; i < lines; i++)
		fprintf(f, "%078zu\n", i);
	fclose(f);
	struct mailbox *mb = NULL;
	if (!CHECK_INT(mailbox_open(dir, &mb), 0))
		return;
	uint64_t want = 14 + 2 + lines * 80;
	CHECK_INT(mailbox_get(mb, 0)->wire_size, want);
	struct mailbox_reader *r = NULL;
	if (CHECK_INT(mailbox_reader_open(mb, 0, &r), 0)) {
		char buf[4096];
		uint64_t total = 0, crlfs = 0;
		ssize_t n;
		while ((n = mailbox_reader_read(r, buf, sizeof buf)) > 0) {
			total += (uint64_t)n;
			for (ssize_t i = 1; i < n; i++)
				crlfs += buf[i] == '\n' && buf[i - 1] == '\r';
		}
		CHECK_INT(n, 0);
		CHECK_INT(total, want);
		CHECK(crlfs >= lines); /* chunk edges can split a few CR LF pairs */
		mailbox_reader_free(r);
	}
	mailbox_free(mb);
}

/* 5,000 names carrying W=: the sizes come from the names (the files are empty). */
TEST(listing_5000_uses_names_only)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "many");
	for (int i = 0; i < 5000; i++) {
		char rel[128];
		snprintf(rel, sizeof rel, "new/%d.M%dP1Q%d.h,S=4000,W=4100", 1700000000 + i, i, i);
		write_file(dir, rel, "", 0);
	}
	struct mailbox *mb = NULL;
	if (!CHECK_INT(mailbox_open(dir, &mb), 0))
		return;
	CHECK_INT(mailbox_count(mb), 5000);
	size_t c;
	uint64_t o;
	mailbox_stat(mb, &c, &o);
	CHECK_INT(o, 5000ULL * 4100);
	int ordered = 1;
	for (size_t i = 0; i < mailbox_count(mb); i++) {
		char want[64];
		snprintf(want, sizeof want, "%d.M%zuP1Q%zu.h", 1700000000 + (int)i, i, i);
		ordered &= strcmp(mailbox_get(mb, i)->uid, want) == 0;
	}
	CHECK(ordered);
	mailbox_free(mb);
}

TEST(cur_not_a_folder_lists_empty)
{
	char dir[256];
	make_maildir(dir, sizeof dir, "badfolder");
	char p[1024];
	snprintf(p, sizeof p, "%s/cur", dir);
	rmdir(p);
	write_file(dir, "cur", "not a folder", 12); /* ENOTDIR: treated as missing */
	struct mailbox *mb = NULL;
	CHECK_INT(mailbox_open(dir, &mb), 0);
	CHECK_INT(mailbox_count(mb), 0);
	mailbox_free(mb);
	char longdir[MAILDIR_PATH_MAX + 10];
	memset(longdir, 'a', sizeof longdir - 1);
	longdir[sizeof longdir - 1] = '\0';
	CHECK_INT(mailbox_open(longdir, &mb), -1);
	CHECK_INT(errno, ENAMETOOLONG);
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

TEST_MAIN(T(name_sizes_table), T(name_order_table), T(uid_table),
          T(uid_digest_is_stable_and_distinct), T(crlf_table_every_chunk_and_window),
          T(crlf_runs_match_octet_reference), T(wire_size_matches_conversion),
          T(missing_maildir_is_empty), T(listing_order_sizes_and_uids), T(marks_reset_and_stat),
          T(commit_removes_marked_even_when_moved), T(commit_counts_failures),
          T(reader_every_buffer_size), T(reader_sends_the_file_as_it_is_not_the_listed_size),
          T(reader_finds_moved_message_and_reports_gone), T(reader_streams_a_large_message),
          T(listing_5000_uses_names_only), T(cur_not_a_folder_lists_empty), T(cleanup))
