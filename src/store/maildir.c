/*
 * maildir: Maildir delivery. See maildir.h for the contract and the path mapping.
 *
 * Durability (Maildir specification, "How a message is delivered"): the file is
 * written and fsynced under tmp/, then linked into new/ and the directory entry
 * made durable: by fsyncing the file again where the file system makes its names
 * durable with it (ext4: fs_names_durable_with_file; a folder's fsync there
 * commits everything running, receiving sessions' files too), else by fsyncing
 * new/. Directories created on the way are made durable by fsyncing their
 * parents, so a crash after success never loses the mailbox.
 *
 * Sizes: maildir_write counts what reaches the file, so the new/ name carries the
 * S= and W= that a reader would otherwise have to stat and scan for (Dovecot reads
 * both; POP3 LIST reports W=, RFC 1939 section 5).
 */
#include "store/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "util/fsutil.h"

static atomic_ulong maildir_counter;

static int name_octet_kept(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '+' || c == '-';
}

int maildir_name_encode(const char *name, size_t len, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	if (len == 0 || (len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return -1;
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (o + 4 > outsz)
			return -1;
		if (name_octet_kept(c)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return (int)o;
}

int maildir_path(const char *root, const char *key, char *out, size_t outsz)
{
	char user[3 * 64 + 1 + 64], domain[3 * 255 + 1];
	size_t klen = strlen(key);
	const char *at = memrchr(key, '@', klen);
	if (!at)
		return -1;
	if (maildir_name_encode(key, (size_t)(at - key), user, sizeof user) < 0 ||
	    maildir_name_encode(at + 1, klen - (size_t)(at + 1 - key), domain, sizeof domain) < 0)
		return -1;
	int n = snprintf(out, outsz, "%s/%s/%s/Maildir", root, domain, user);
	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

int maildir_unique_name(int64_t sec, long usec, long pid, unsigned long counter, const char *host,
                        char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%lld.M%ldP%ldQ%lu.", (long long)sec, usec, pid, counter);
	if (n < 0 || (size_t)n >= outsz)
		return -1;
	size_t o = (size_t)n;
	for (const char *h = host; *h; h++) {
		const char *rep = *h == '/' ? "\\057" : *h == ':' ? "\\072" : NULL;
		size_t rl = rep ? 4 : 1;
		if (o + rl >= outsz)
			return -1;
		if (rep)
			memcpy(out + o, rep, 4);
		else
			out[o] = *h;
		o += rl;
	}
	out[o] = '\0';
	return (int)o;
}

int maildir_sized_name(const char *unique, uint64_t size, uint64_t wire, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s,S=%llu,W=%llu", unique, (unsigned long long)size,
	                 (unsigned long long)wire);
	return n < 0 || (size_t)n >= outsz ? -1 : n;
}

uint64_t maildir_wire_size(uint64_t size, uint64_t lone_lfs, int last)
{
	uint64_t w = size + lone_lfs;
	if (last >= 0 && last != '\n')
		w += last == '\r' ? 1 : 2;
	return w;
}

/* Creates dir/{tmp,new,cur} (mode 0700), each new folder made durable. */
static int ensure_maildir(const char *dir)
{
	static const char *const subs[] = {"tmp", "new", "cur"};
	char p[MAILDIR_PATH_MAX];
	for (size_t i = 0; i < 3; i++) {
		int n = snprintf(p, sizeof p, "%s/%s", dir, subs[i]);
		if (n < 0 || (size_t)n >= sizeof p) {
			errno = ENAMETOOLONG;
			return -1;
		}
		struct stat st;
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
			continue;
		if (fs_mkdirs(p, 0700, 1) < 0)
			return -1;
	}
	return 0;
}

static int sub_path(const struct maildir_file *f, const char *sub, const char *name, char *out,
                    size_t outsz)
{
	int n = snprintf(out, outsz, "%s/%s/%s", f->dir, sub, name);
	if (n < 0 || (size_t)n >= outsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int maildir_open(const char *dir, const char *host, struct maildir_file *f)
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
	f->last = -1;
	size_t dl = strlen(dir);
	if (dl >= sizeof f->dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(f->dir, dir, dl + 1);
	if (ensure_maildir(dir) < 0)
		return -1;
	char tmp[MAILDIR_PATH_MAX + MAILDIR_NAME_MAX];
	/* A name can clash only if the clock went back or another host shares the name. */
	for (int tries = 0; tries < 8; tries++) {
		struct timeval tv;
		gettimeofday(&tv, NULL);
		unsigned long q = atomic_fetch_add(&maildir_counter, 1) + 1;
		/* Room is left for the ",S=..,W=.." of the new/ name. */
		if (maildir_unique_name(tv.tv_sec, (long)tv.tv_usec, (long)getpid(), q, host,
		                        f->name, sizeof f->name - MAILDIR_SIZES_MAX) < 0) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (sub_path(f, "tmp", f->name, tmp, sizeof tmp) < 0)
			return -1;
		f->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (f->fd >= 0)
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

/* Counts what reaches the file (S= and W=). */
static void account(struct maildir_file *f, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' && f->last != '\r')
			f->lone_lfs++;
		f->last = (unsigned char)p[i];
	}
	f->size += len;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int maildir_write(struct maildir_file *f, const void *data, size_t len)
{
	const char *p = data;
	char out[8192];
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (o + 2 > sizeof out) {
			if (write_all(f->fd, out, o) < 0)
				return -1;
			account(f, out, o);
			o = 0;
		}
		if (f->pending_cr && p[i] != '\n')
			out[o++] = '\r'; /* a CR that does not end a line stays */
		f->pending_cr = p[i] == '\r';
		if (!f->pending_cr)
			out[o++] = p[i];
	}
	if (write_all(f->fd, out, o) < 0)
		return -1;
	account(f, out, o);
	return 0;
}

/* Makes the new/ name durable: the file's fsync where that covers its names, else new/'s. */
static int sync_name(const struct maildir_file *f, int fd, int names_with_file)
{
	char newdir[MAILDIR_PATH_MAX + 8];
	if (names_with_file)
		return fsync(fd);
	snprintf(newdir, sizeof newdir, "%s/new", f->dir);
	return fs_fsync_path(newdir);
}

int maildir_commit(struct maildir_file *f)
{
	char tmp[MAILDIR_PATH_MAX + MAILDIR_NAME_MAX], dst[MAILDIR_PATH_MAX + MAILDIR_NAME_MAX];
	if (f->pending_cr) {
		if (write_all(f->fd, "\r", 1) < 0)
			goto fail;
		account(f, "\r", 1);
	}
	f->pending_cr = 0;
	if (maildir_sized_name(f->name, f->size, maildir_wire_size(f->size, f->lone_lfs, f->last),
	                       f->new_name, sizeof f->new_name) < 0) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	if (sub_path(f, "tmp", f->name, tmp, sizeof tmp) < 0 ||
	    sub_path(f, "new", f->new_name, dst, sizeof dst) < 0)
		goto fail;
	if (f->ride) {
		/* Write-back now (blocks allocated in the running journal transaction), so
		 * that a receiving session's commit can carry the data before our fsync. */
		sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		f->ride(f->ride_arg);
	}
	/* The data is durable before any name in new/ can be (no empty message after a crash). */
	if (fsync(f->fd) < 0)
		goto fail;
	/* link() never replaces an existing message; rename() is the fallback for file
	 * systems without hard links. */
	if (link(tmp, dst) == 0) {
		unlink(tmp);
	} else if (errno == EEXIST || rename(tmp, dst) < 0) {
		goto fail;
	}
	int fd = f->fd, with_file = fs_names_durable_with_file(fd);
	if (f->ride && with_file)
		f->ride(f->ride_arg); /* the link's commit, too, may be a session's */
	int rc = sync_name(f, fd, with_file), e = errno;
	f->fd = -1;
	if (close(fd) < 0 && rc == 0) {
		rc = -1;
		e = errno;
	}
	if (rc < 0) {
		unlink(dst); /* not durable: let the caller retry rather than risk a loss */
		errno = e;
		return -1;
	}
	return 0;
fail:;
	int fe = errno;
	maildir_abort(f);
	errno = fe;
	return -1;
}

void maildir_abort(struct maildir_file *f)
{
	char tmp[MAILDIR_PATH_MAX + MAILDIR_NAME_MAX];
	if (f->fd >= 0) {
		close(f->fd);
		f->fd = -1;
	}
	if (f->name[0] && sub_path(f, "tmp", f->name, tmp, sizeof tmp) == 0)
		unlink(tmp);
}
