/*
 * Unit tests for store/maildir (path mapping of hostile local parts, unique
 * names, tmp -> new delivery) and deliver/deliver_headers (trace fields, Date:
 * rules, loop detection).
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "deliver/deliver_headers.h"
#include "store/maildir.h"
#include "harness.h"
#include "queue/envelope.h"
#include "util/fsutil.h"

static int encode(const char *s, char *out, size_t outsz)
{
	return maildir_name_encode(s, strlen(s), out, outsz);
}

TEST(name_encode_keeps_safe_octets)
{
	char out[256];
	CHECK_INT(encode("john.doe+tag_1-x", out, sizeof out), 16);
	CHECK_STR(out, "john.doe+tag_1-x");
	CHECK(encode("a b", out, sizeof out) > 0);
	CHECK_STR(out, "a%20b");
	CHECK(encode("\"john..doe\"", out, sizeof out) > 0);
	CHECK_STR(out, "%22john..doe%22");
	CHECK(encode("%", out, sizeof out) > 0);
	CHECK_STR(out, "%25");
	CHECK(encode("x:y\\z*\x7f\xff", out, sizeof out) > 0);
	CHECK_STR(out, "x%3Ay%5Cz%2A%7F%FF");
	CHECK(encode("...", out, sizeof out) > 0);
	CHECK_STR(out, "...");
}

TEST(name_encode_refuses_dangerous_names)
{
	char out[256];
	CHECK_INT(encode("", out, sizeof out), -1);
	CHECK_INT(encode(".", out, sizeof out), -1);
	CHECK_INT(encode("..", out, sizeof out), -1);
	CHECK_INT(encode("a/b", out, sizeof out), -1);
	CHECK_INT(encode("../etc", out, sizeof out), -1);
	CHECK_INT(maildir_name_encode("a\0b", 3, out, sizeof out), -1);
	CHECK_INT(encode("abcdef", out, 4), -1); /* too small: refused, not truncated */
}

TEST(name_encode_is_collision_free)
{
	/* '%' is encoded too, so a literal "%20" cannot collide with a space. */
	char a[64], b[64];
	CHECK(encode("a%20b", a, sizeof a) > 0);
	CHECK(encode("a b", b, sizeof b) > 0);
	CHECK(strcmp(a, b) != 0);
	CHECK(encode("a_20b", a, sizeof a) > 0);
	CHECK(strcmp(a, b) != 0);
	/* Every single octet maps to a distinct name. */
	static char names[256][8];
	int distinct = 1;
	for (int c = 1; c < 256; c++) {
		char in[1] = {(char)c};
		if (c == '/' || c == '.') {
			CHECK_INT(maildir_name_encode(in, 1, names[c], 8), -1);
			continue;
		}
		if (maildir_name_encode(in, 1, names[c], 8) < 0)
			distinct = 0;
		for (int d = 1; d < c && distinct; d++)
			if (d != '/' && d != '.' && strcmp(names[c], names[d]) == 0)
				distinct = 0;
	}
	CHECK(distinct);
}

TEST(path_from_account_key)
{
	char out[512];
	CHECK_INT(maildir_path("/s/mail", "alice@example.com", out, sizeof out), 0);
	CHECK_STR(out, "/s/mail/example.com/alice/Maildir");
	CHECK_INT(maildir_path("/s/mail", "\"a b\"@example.com", out, sizeof out), 0);
	CHECK_STR(out, "/s/mail/example.com/%22a%20b%22/Maildir");
	CHECK_INT(maildir_path("/s/mail", "\"a@b\"@example.com", out, sizeof out), 0);
	CHECK_STR(out, "/s/mail/example.com/%22a%40b%22/Maildir");
	CHECK_INT(maildir_path("/s/mail", "x@[192.0.2.1]", out, sizeof out), 0);
	CHECK_STR(out, "/s/mail/%5B192.0.2.1%5D/x/Maildir");
	CHECK_INT(maildir_path("/s/mail", "..@example.com", out, sizeof out), -1);
	CHECK_INT(maildir_path("/s/mail", ".@example.com", out, sizeof out), -1);
	CHECK_INT(maildir_path("/s/mail", "\"a/b\"@example.com", out, sizeof out), -1);
	CHECK_INT(maildir_path("/s/mail", "alice@..", out, sizeof out), -1);
	CHECK_INT(maildir_path("/s/mail", "noat", out, sizeof out), -1);
	CHECK_INT(maildir_path("/s/mail", "alice@example.com", out, 10), -1);
}

TEST(unique_name_format)
{
	char out[256];
	int n = maildir_unique_name(1700000000, 123456, 4242, 7, "mx1.example.com", out,
	                            sizeof out);
	CHECK_INT(n, (int)strlen(out));
	CHECK_STR(out, "1700000000.M123456P4242Q7.mx1.example.com");
	CHECK(maildir_unique_name(1, 2, 3, 4, "a/b:c", out, sizeof out) > 0);
	CHECK_STR(out, "1.M2P3Q4.a\\057b\\072c");
	CHECK_INT(maildir_unique_name(1, 2, 3, 4, "host", out, 8), -1);
}

static char tmpdir[64];

static int count_dir(const char *dir, const char *sub, char *name, size_t namesz)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	DIR *d = opendir(p);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (name)
			snprintf(name, namesz, "%s", e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static size_t read_file(const char *path, char *buf, size_t bufsz)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, bufsz);
	close(fd);
	return n < 0 ? 0 : (size_t)n;
}

TEST(deliver_creates_maildir_and_moves_to_new)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_maildir.XXXXXX");
	if (!CHECK(mkdtemp(tmpdir) != NULL))
		return;
	char dir[512];
	CHECK_INT(maildir_path(tmpdir, "bob@example.org", dir, sizeof dir), 0);
	struct maildir_file f;
	if (!CHECK_INT(maildir_open(dir, "host:1/x", &f), 0))
		return;
	CHECK_INT(count_dir(dir, "tmp", NULL, 0), 1);
	CHECK_INT(count_dir(dir, "new", NULL, 0), 0);
	CHECK_INT(count_dir(dir, "cur", NULL, 0), 0);
	/* CRLF becomes LF, also when a CRLF is split across writes; a lone CR stays. */
	const char msg[] = "Subject: hi\r\n\r\nbody\r";
	const char msg2[] = "\na\rb\r";
	const char want[] = "Subject: hi\n\nbody\na\rb\r";
	CHECK_INT(maildir_write(&f, msg, sizeof msg - 1), 0);
	CHECK_INT(maildir_write(&f, msg2, sizeof msg2 - 1), 0);
	CHECK_INT(maildir_commit(&f), 0);
	char name[256] = "";
	CHECK_INT(count_dir(dir, "tmp", NULL, 0), 0);
	CHECK_INT(count_dir(dir, "new", name, sizeof name), 1);
	CHECK(strstr(name, ".host\\0721\\057x") != NULL);
	CHECK(strchr(name, '/') == NULL && strchr(name, ':') == NULL);
	char p[1024], buf[256];
	snprintf(p, sizeof p, "%s/new/%s", dir, name);
	size_t n = read_file(p, buf, sizeof buf);
	CHECK_MEM(buf, n, want, sizeof want - 1);
	struct stat st;
	CHECK_INT(stat(p, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK_INT(stat(dir, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0700);
	snprintf(p, sizeof p, "%s/example.org", tmpdir);
	CHECK_INT(stat(p, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0700);
}

TEST(names_are_unique)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/u/Maildir", tmpdir);
	char names[50][MAILDIR_NAME_MAX];
	int ok = 1;
	for (int i = 0; i < 50; i++) {
		struct maildir_file f;
		if (maildir_open(dir, "h", &f) < 0 || maildir_write(&f, "x\r\n", 3) < 0 ||
		    maildir_commit(&f) < 0) {
			ok = 0;
			break;
		}
		snprintf(names[i], sizeof names[i], "%s", f.name);
		for (int j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				ok = 0;
	}
	CHECK(ok);
	CHECK_INT(count_dir(dir, "new", NULL, 0), 50);
}

TEST(abort_leaves_nothing)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/v/Maildir", tmpdir);
	struct maildir_file f;
	CHECK_INT(maildir_open(dir, "h", &f), 0);
	CHECK_INT(maildir_write(&f, "partial", 7), 0);
	maildir_abort(&f);
	CHECK_INT(count_dir(dir, "tmp", NULL, 0), 0);
	CHECK_INT(count_dir(dir, "new", NULL, 0), 0);
}

TEST(open_fails_when_path_is_a_file)
{
	char p[512];
	snprintf(p, sizeof p, "%s/file", tmpdir);
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	close(fd);
	char dir[600];
	snprintf(dir, sizeof dir, "%s/Maildir", p);
	struct maildir_file f;
	CHECK_INT(maildir_open(dir, "h", &f), -1);
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
	CHECK_INT(nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* ---- headers ---- */

static struct envelope *test_env(void)
{
	struct envelope *e = envelope_new();
	envelope_set(&e->mail_from, "sender@example.net");
	envelope_add_rcpt(e, "Alice@example.com", NULL, 0);
	envelope_add_rcpt(e, "\"odd one\"@example.com", NULL, 0);
	e->received_at = 0;
	return e;
}

TEST(trace_fields_minimal)
{
	struct envelope *e = test_env();
	char out[1024];
	long n = deliver_headers_build(e, "alice@example.com", 0, 0, out, sizeof out);
	const char want[] = "Return-Path: <sender@example.net>\r\n"
	                    "Delivered-To: alice@example.com\r\n";
	CHECK_MEM(out, (size_t)n, want, sizeof want - 1);
	envelope_set(&e->mail_from, "");
	n = deliver_headers_build(e, "alice@example.com", 0, 0, out, sizeof out);
	CHECK(n > 0 && strncmp(out, "Return-Path: <>\r\n", 17) == 0);
	envelope_free(e);
}

TEST(trace_fields_orig_rcpt_and_date)
{
	struct envelope *e = test_env();
	char out[1024];
	long n = deliver_headers_build(e, "alice@example.com", 1, 1, out, sizeof out);
	const char want[] = "Return-Path: <sender@example.net>\r\n"
	                    "Delivered-To: alice@example.com\r\n"
	                    "X-Sharemail-Original-Rcpt: Alice@example.com\r\n"
	                    "X-Sharemail-Original-Rcpt: \"odd one\"@example.com\r\n"
	                    "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n";
	CHECK_MEM(out, (size_t)n, want, sizeof want - 1);
	CHECK_INT(deliver_headers_build(e, "alice@example.com", 1, 1, out, 60), -1);
	envelope_free(e);
}

TEST(trace_fields_cannot_be_forged)
{
	struct envelope *e = test_env();
	envelope_set(&e->mail_from, "a@b\r\nX-Evil: 1");
	char out[1024];
	long n = deliver_headers_build(e, "alice@example.com", 0, 0, out, sizeof out);
	CHECK(n > 0);
	out[n > 0 ? n : 0] = '\0';
	CHECK(strstr(out, "\r\nX-Evil") == NULL);
	CHECK(strstr(out, "Return-Path: <a@b??X-Evil: 1>\r\n") != NULL);
	envelope_free(e);
}

TEST(scan_counts_fields)
{
	const char m[] = "Received: from a\r\n\tby b\r\n"
	                 "received: from c\r\n"
	                 "Delivered-To: x@example.com\r\n"
	                 "Subject: Date: not a date\r\n"
	                 "\r\n"
	                 "Date: in the body\r\n";
	struct deliver_hdr_scan s;
	deliver_headers_scan(m, sizeof m - 1, 1, &s);
	CHECK(s.complete);
	CHECK_INT(s.received, 2);
	CHECK_INT(s.delivered_to, 1);
	CHECK_INT(s.has_date, 0);
	CHECK_INT(s.header_len, strstr(m, "Date: in") - m);
	const char d[] = "From: a@b\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nx\r\n";
	deliver_headers_scan(d, sizeof d - 1, 1, &s);
	CHECK_INT(s.has_date, 1);
}

TEST(scan_without_body_or_truncated)
{
	/* No empty line: the whole message is the header section. */
	const char m[] = "Subject: x\r\nFrom: a@b\r\n";
	struct deliver_hdr_scan s;
	deliver_headers_scan(m, sizeof m - 1, 1, &s);
	CHECK(s.complete);
	CHECK_INT(s.header_len, sizeof m - 1);
	/* Only a prefix in the buffer: incomplete, so Date: must not be added. */
	deliver_headers_scan(m, 15, 0, &s);
	CHECK(!s.complete);
	CHECK_INT(s.header_len, 12);
	/* A junk line does not hide the fields after it. */
	const char j[] = "From nobody\r\nDate: x\r\n\r\n";
	deliver_headers_scan(j, sizeof j - 1, 1, &s);
	CHECK_INT(s.has_date, 1);
}

TEST(loop_detection)
{
	const char m[] = "Delivered-To: other@example.com\r\n"
	                 "Delivered-To:   <ALICE@Example.COM> \r\n"
	                 "Subject: x\r\n\r\n"
	                 "Delivered-To: bob@example.com\r\n";
	size_t hl = (size_t)(strstr(m, "\r\n\r\n") - m) + 4;
	CHECK_INT(deliver_headers_delivered_to(m, hl, "alice@example.com"), 1);
	CHECK_INT(deliver_headers_delivered_to(m, hl, "other@example.com"), 1);
	CHECK_INT(deliver_headers_delivered_to(m, hl, "bob@example.com"), 0); /* body only */
	CHECK_INT(deliver_headers_delivered_to(m, hl, "alice@example.co"), 0);
	CHECK_INT(deliver_headers_delivered_to(m, hl, "lice@example.com"), 0);
}

/* Only ext4/ext3 mounts make names durable with the file's fsync: not procfs, not tmpfs. */
TEST(names_durable_with_file_only_on_ext4)
{
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (CHECK(fd >= 0)) {
		CHECK_INT(fs_names_durable_with_file(fd), 0);
		close(fd);
	}
	fd = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* tmpfs on Debian */
	if (fd >= 0) {
		struct statfs sf;
		if (fstatfs(fd, &sf) == 0 && sf.f_type == TMPFS_MAGIC)
			CHECK_INT(fs_names_durable_with_file(fd), 0);
		close(fd);
	}
	CHECK_INT(fs_names_durable_with_file(-1), 0);
}

TEST_MAIN(T(names_durable_with_file_only_on_ext4), T(name_encode_keeps_safe_octets),
          T(name_encode_refuses_dangerous_names), T(name_encode_is_collision_free),
          T(path_from_account_key), T(unique_name_format),
          T(deliver_creates_maildir_and_moves_to_new), T(names_are_unique), T(abort_leaves_nothing),
          T(open_fails_when_path_is_a_file), T(cleanup), T(trace_fields_minimal),
          T(trace_fields_orig_rcpt_and_date), T(trace_fields_cannot_be_forged),
          T(scan_counts_fields), T(scan_without_body_or_truncated), T(loop_detection))
