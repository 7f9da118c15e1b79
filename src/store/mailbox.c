/*
 * mailbox: reading a Maildir for POP3. See mailbox.h for the contract.
 *
 * Cost of a listing: one opendir/readdir pass per folder; a name with W= costs no
 * system call (Dovecot's "virtual size" field, the same number RFC 1939 LIST
 * reports); a name without it costs one open and one read pass, once per session.
 * Message bodies are only read through a reader, in chunks of READ_CHUNK octets.
 */
#include "store/mailbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "store/maildir.h"
#include "util/fsutil.h"

#define READ_CHUNK 16384
#define NAME_PATH_MAX (MAILDIR_PATH_MAX + MAILDIR_NAME_MAX + 8)

struct entry {
	struct mailbox_msg m; /* first: mailbox_get returns &e->m */
	uint64_t sec, usec; /* the delivery time, from the name (mailbox_name_order) */
	char *alloc; /* "new/<file>\0<uid>\0", m.name and m.uid point into it */
};

struct mailbox {
	char dir[MAILDIR_PATH_MAX];
	struct entry *e;
	size_t n, cap;
};

struct mailbox_reader {
	int fd;
	int eof, ended;
	struct mailbox_crlf c;
	size_t in_pos, in_len;
	char in[READ_CHUNK];
};

/* ---- pure helpers ---- */

/* The length of the part of a file name that flag changes never touch (before ':'). */
static size_t stable_len(const char *name)
{
	const char *colon = strchr(name, ':');
	return colon ? (size_t)(colon - name) : strlen(name);
}

/* Parses at most 19 decimal digits at p (to the next ',' or the end). 0, or -1. */
static int parse_field_number(const char *p, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return 0;
}

int mailbox_name_sizes(const char *name, uint64_t *size, uint64_t *wire)
{
	size_t end = stable_len(name);
	int found = 0;
	const char *p = memchr(name, ',', end);
	while (p) {
		const char *f = p + 1;
		const char *next = memchr(f, ',', end - (size_t)(f - name));
		size_t flen = next ? (size_t)(next - f) : end - (size_t)(f - name);
		uint64_t v;
		if (flen > 2 && f[1] == '=' && (f[0] == 'S' || f[0] == 'W') &&
		    parse_field_number(f + 2, flen - 2, &v) == 0) {
			if (f[0] == 'S') {
				*size = v;
				found |= 1;
			} else {
				*wire = v;
				found |= 2;
			}
		}
		p = next;
	}
	return found;
}

static int uid_octets_ok(const char *p, size_t len)
{
	if (len == 0 || len > MAILBOX_UID_MAX || p[0] == '~')
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return 0;
	return 1;
}

int mailbox_uid(const char *name, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	size_t stable = stable_len(name);
	const char *comma = memchr(name, ',', stable);
	size_t base = comma ? (size_t)(comma - name) : stable;
	if (outsz < MAILBOX_UID_MAX + 1)
		return -1;
	if (uid_octets_ok(name, base)) {
		memcpy(out, name, base);
		out[base] = '\0';
		return (int)base;
	}
	/* RFC 1939 section 7 allows 0x21-0x7E only and 70 octets at most: a name
	 * outside that gets a digest of its stable part ('~' never starts a kept base
	 * name, so a digest cannot equal one). */
	unsigned char md[32];
	unsigned int mdlen = 0;
	if (EVP_Digest(name, stable, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return -1;
	out[0] = '~';
	for (size_t i = 0; i < 32; i++) {
		out[1 + 2 * i] = hex[md[i] >> 4];
		out[2 + 2 * i] = hex[md[i] & 15];
	}
	out[65] = '\0';
	return 65;
}

void mailbox_crlf_init(struct mailbox_crlf *c)
{
	c->at_bol = 1;
	c->last_cr = 0;
}

/*
 * The octets before the next LF in in[0..len), at most room of them: they are
 * copied as they are (most of a message), so the loop below sees only line ends.
 */
static size_t plain_run(const char *in, size_t len, size_t room)
{
	size_t n = len < room ? len : room;
	const char *lf = memchr(in, '\n', n);
	return lf ? (size_t)(lf - in) : n;
}

size_t mailbox_crlf_feed(struct mailbox_crlf *c, const char *in, size_t len, char *out,
                         size_t outsz, size_t *out_len)
{
	size_t i = 0, o = 0;
	while (i < len) {
		size_t run = plain_run(in + i, len - i, outsz - o);
		if (run > 0) {
			memcpy(out + o, in + i, run);
			i += run;
			o += run;
			c->last_cr = in[i - 1] == '\r';
			c->at_bol = 0;
			continue;
		}
		if (in[i] != '\n')
			break; /* the output is full */
		/* A LF after a CR is already a line end; a bare one gets its CR. */
		size_t need = c->last_cr ? 1 : 2;
		if (o + need > outsz)
			break;
		if (!c->last_cr)
			out[o++] = '\r';
		out[o++] = '\n';
		c->last_cr = 0;
		c->at_bol = 1;
		i++;
	}
	*out_len = o;
	return i;
}

size_t mailbox_crlf_end(struct mailbox_crlf *c, char *out, size_t outsz)
{
	size_t o = 0;
	if (c->at_bol || outsz < 2)
		return 0;
	if (!c->last_cr)
		out[o++] = '\r';
	out[o++] = '\n';
	c->last_cr = 0;
	c->at_bol = 1;
	return o;
}

/* ---- listing ---- */

/* Parses up to 19 digits at *p, advancing it. */
static uint64_t digits(const char **p)
{
	uint64_t v = 0;
	for (int i = 0; **p >= '0' && **p <= '9' && i < 19; i++, (*p)++)
		v = v * 10 + (uint64_t)(**p - '0');
	return v;
}

void mailbox_name_order(const char *name, uint64_t *sec, uint64_t *usec)
{
	const char *p = name;
	*sec = digits(&p);
	*usec = 0;
	/* The specification's modern names, "sec.M<usec>P...": the microseconds are not
	 * zero-padded, so names of one second do not sort as strings. */
	if (p[0] == '.' && p[1] == 'M') {
		p += 2;
		*usec = digits(&p);
	}
}

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->sec != y->sec)
		return x->sec < y->sec ? -1 : 1;
	if (x->usec != y->usec)
		return x->usec < y->usec ? -1 : 1;
	/* Past the "new/" or "cur/" prefix: the same order in both folders. */
	return strcmp(x->m.name + 4, y->m.name + 4);
}

/* The wire size of an open file, read once in chunks (a name without W=). */
static int measure_fd(int fd, uint64_t *wire)
{
	char buf[READ_CHUNK];
	uint64_t size = 0, lone = 0;
	int last = -1;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && last != '\r')
				lone++;
			last = (unsigned char)buf[i];
		}
		size += (uint64_t)n;
	}
	*wire = maildir_wire_size(size, lone, last);
	return 0;
}

/* 0 with *wire, 1 when the file is not a regular file or vanished (left out), -1 on error. */
static int measure(const char *dir, const char *rel, uint64_t *wire)
{
	char p[NAME_PATH_MAX];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ELOOP ? 1 : -1;
	struct stat st;
	int rc = fstat(fd, &st) < 0 ? -1 : !S_ISREG(st.st_mode) ? 1 : measure_fd(fd, wire);
	close(fd);
	return rc;
}

static int add_entry(struct mailbox *mb, const char *sub, const char *file)
{
	char uid[MAILBOX_UID_MAX + 1];
	int ul = mailbox_uid(file, uid, sizeof uid);
	size_t fl = strlen(file);
	if (ul < 0 || fl >= MAILDIR_NAME_MAX) /* not a name this API can hand out */
		return 0;
	if (mb->n == mb->cap) {
		size_t cap = mb->cap ? mb->cap * 2 : 64;
		struct entry *e = realloc(mb->e, cap * sizeof *e);
		if (!e)
			return -1;
		mb->e = e;
		mb->cap = cap;
	}
	struct entry *e = &mb->e[mb->n];
	memset(e, 0, sizeof *e);
	e->alloc = malloc(4 + fl + 1 + (size_t)ul + 1);
	if (!e->alloc)
		return -1;
	memcpy(e->alloc, sub, 3);
	e->alloc[3] = '/';
	memcpy(e->alloc + 4, file, fl + 1);
	memcpy(e->alloc + 4 + fl + 1, uid, (size_t)ul + 1);
	e->m.name = e->alloc;
	e->m.uid = e->alloc + 4 + fl + 1;
	mailbox_name_order(file, &e->sec, &e->usec);
	uint64_t size = 0;
	int rc = 0;
	if (!(mailbox_name_sizes(file, &size, &e->m.wire_size) & 2))
		rc = measure(mb->dir, e->m.name, &e->m.wire_size);
	if (rc != 0) {
		free(e->alloc);
		return rc < 0 ? -1 : 0;
	}
	mb->n++;
	return 0;
}

/* One readdir pass over dir/sub; a missing folder lists nothing. */
static int list_folder(struct mailbox *mb, const char *sub)
{
	char p[MAILDIR_PATH_MAX + 8];
	snprintf(p, sizeof p, "%s/%s", mb->dir, sub);
	DIR *d = opendir(p);
	if (!d)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
	int rc = 0;
	struct dirent *de;
	errno = 0;
	while (rc == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.' || de->d_type == DT_DIR)
			continue;
		rc = add_entry(mb, sub, de->d_name);
		errno = 0;
	}
	if (rc == 0 && errno != 0)
		rc = -1;
	int e = errno;
	closedir(d);
	errno = e;
	return rc;
}

int mailbox_open(const char *dir, struct mailbox **out)
{
	size_t dl = strlen(dir);
	if (dl >= MAILDIR_PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	struct mailbox *mb = calloc(1, sizeof *mb);
	if (!mb)
		return -1;
	memcpy(mb->dir, dir, dl + 1);
	if (list_folder(mb, "new") < 0 || list_folder(mb, "cur") < 0) {
		int e = errno;
		mailbox_free(mb);
		errno = e;
		return -1;
	}
	if (mb->n > 1)
		qsort(mb->e, mb->n, sizeof *mb->e, entry_cmp);
	*out = mb;
	return 0;
}

void mailbox_free(struct mailbox *mb)
{
	if (!mb)
		return;
	for (size_t i = 0; i < mb->n; i++)
		free(mb->e[i].alloc);
	free(mb->e);
	free(mb);
}

size_t mailbox_count(const struct mailbox *mb)
{
	return mb->n;
}

const struct mailbox_msg *mailbox_get(const struct mailbox *mb, size_t i)
{
	return i < mb->n ? &mb->e[i].m : NULL;
}

void mailbox_stat(const struct mailbox *mb, size_t *count, uint64_t *octets)
{
	size_t c = 0;
	uint64_t o = 0;
	for (size_t i = 0; i < mb->n; i++) {
		if (mb->e[i].m.deleted)
			continue;
		c++;
		o += mb->e[i].m.wire_size;
	}
	*count = c;
	*octets = o;
}

int mailbox_mark_deleted(struct mailbox *mb, size_t i)
{
	if (i >= mb->n || mb->e[i].m.deleted)
		return -1;
	mb->e[i].m.deleted = 1;
	return 0;
}

void mailbox_reset(struct mailbox *mb)
{
	for (size_t i = 0; i < mb->n; i++)
		mb->e[i].m.deleted = 0;
}

/* ---- finding a message another program renamed (new/ -> cur/, flags changed) ---- */

/*
 * Looks in new/ and cur/ for a file whose part before ':' is that of rel's file;
 * writes "sub/<file>" into out. 0 when found, 1 when not, -1 on error.
 */
static int find_current(const char *dir, const char *rel, char *out, size_t outsz)
{
	static const char *const subs[] = {"new", "cur"};
	const char *file = rel + 4;
	size_t sl = stable_len(file);
	for (size_t s = 0; s < 2; s++) {
		char p[MAILDIR_PATH_MAX + 8];
		snprintf(p, sizeof p, "%s/%s", dir, subs[s]);
		DIR *d = opendir(p);
		if (!d) {
			if (errno == ENOENT)
				continue;
			return -1;
		}
		struct dirent *de;
		while ((de = readdir(d))) {
			if (stable_len(de->d_name) == sl && memcmp(de->d_name, file, sl) == 0) {
				snprintf(out, outsz, "%s/%s", subs[s], de->d_name);
				closedir(d);
				return 0;
			}
		}
		closedir(d);
	}
	return 1;
}

/* ---- UPDATE ---- */

/* Removes one message: 0 removed (or already gone), -1 not. *sub is 'n' or 'c'. */
static int remove_one(const char *dir, const char *rel, char *sub)
{
	char p[NAME_PATH_MAX], moved[MAILDIR_NAME_MAX + 8];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	*sub = rel[0];
	if (unlink(p) == 0)
		return 0;
	if (errno != ENOENT)
		return -1;
	int rc = find_current(dir, rel, moved, sizeof moved);
	if (rc != 0)
		return rc < 0 ? -1 : 0; /* already gone: removed by someone else */
	snprintf(p, sizeof p, "%s/%s", dir, moved);
	*sub = moved[0];
	return unlink(p) == 0 || errno == ENOENT ? 0 : -1;
}

size_t mailbox_commit(struct mailbox *mb)
{
	size_t failed = 0, removed_new = 0, removed_cur = 0;
	for (size_t i = 0; i < mb->n; i++) {
		if (!mb->e[i].m.deleted)
			continue;
		char sub;
		if (remove_one(mb->dir, mb->e[i].m.name, &sub) < 0)
			failed++;
		else if (sub == 'n')
			removed_new++;
		else
			removed_cur++;
		mb->e[i].m.deleted = 0;
	}
	/* RFC 1939 section 6: the removal must hold once "+OK" is sent; an unlink is
	 * durable only once its folder is synced. */
	char p[MAILDIR_PATH_MAX + 8];
	snprintf(p, sizeof p, "%s/new", mb->dir);
	if (removed_new && fs_fsync_path(p) < 0)
		failed += removed_new;
	snprintf(p, sizeof p, "%s/cur", mb->dir);
	if (removed_cur && fs_fsync_path(p) < 0)
		failed += removed_cur;
	return failed;
}

/* ---- reader ---- */

static int open_message(const char *dir, const char *rel)
{
	char p[NAME_PATH_MAX], moved[MAILDIR_NAME_MAX + 8];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	int rc = find_current(dir, rel, moved, sizeof moved);
	if (rc != 0) {
		if (rc > 0)
			errno = ENOENT;
		return -1;
	}
	snprintf(p, sizeof p, "%s/%s", dir, moved);
	return open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

int mailbox_reader_open(const struct mailbox *mb, size_t i, struct mailbox_reader **out)
{
	if (i >= mb->n) {
		errno = EINVAL;
		return -1;
	}
	struct mailbox_reader *r = malloc(sizeof *r);
	if (!r)
		return -1;
	r->fd = open_message(mb->dir, mb->e[i].m.name);
	if (r->fd < 0) {
		int e = errno;
		free(r);
		errno = e;
		return -1;
	}
	r->eof = r->ended = 0;
	r->in_pos = r->in_len = 0;
	mailbox_crlf_init(&r->c);
	*out = r;
	return 0;
}

static int fill(struct mailbox_reader *r)
{
	for (;;) {
		ssize_t n = read(r->fd, r->in, sizeof r->in);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		r->in_pos = 0;
		r->in_len = (size_t)n;
		r->eof = n == 0;
		return 0;
	}
}

ssize_t mailbox_reader_read(struct mailbox_reader *r, char *buf, size_t len)
{
	if (len < 2) {
		errno = EINVAL;
		return -1;
	}
	for (;;) {
		if (r->in_pos == r->in_len && !r->eof && fill(r) < 0)
			return -1;
		if (r->eof)
			break;
		size_t o = 0;
		r->in_pos += mailbox_crlf_feed(&r->c, r->in + r->in_pos, r->in_len - r->in_pos, buf,
		                               len, &o);
		if (o > 0)
			return (ssize_t)o;
	}
	if (r->ended)
		return 0;
	r->ended = 1;
	return (ssize_t)mailbox_crlf_end(&r->c, buf, len);
}

void mailbox_reader_free(struct mailbox_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r);
}
