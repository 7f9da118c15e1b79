/* privdrop: see privdrop.h. */
#include "util/privdrop.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fsutil.h"

#define PW_BUF 16384
#define STATUS_MAX 8192

int privdrop_lookup(const char *name, struct privdrop_user *out, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	char buf[PW_BUF];
	memset(out, 0, sizeof *out);
	if (!name || !*name || strlen(name) >= sizeof out->name) {
		snprintf(err, errlen, "user '%.64s': not a user name", name ? name : "");
		return -1;
	}
	int e = getpwnam_r(name, &pw, buf, sizeof buf, &res);
	if (e != 0 || !res) {
		snprintf(err, errlen, "user '%s' does not exist%s%s", name, e ? ": " : "",
		         e ? strerror(e) : "");
		return -1;
	}
	if (pw.pw_uid == 0) {
		snprintf(err, errlen, "user '%s' is uid 0: running as it would drop nothing", name);
		return -1;
	}
	snprintf(out->name, sizeof out->name, "%s", name);
	out->uid = pw.pw_uid;
	out->gid = pw.pw_gid;
	out->ngroups = PRIVDROP_GROUPS_MAX;
	/* The groups initgroups(3) would set: the primary one and every group naming the user. */
	if (getgrouplist(name, pw.pw_gid, out->groups, &out->ngroups) < 0) {
		snprintf(err, errlen, "user '%s' is in more than %d groups", name,
		         PRIVDROP_GROUPS_MAX);
		return -1;
	}
	for (int i = 0; i < out->ngroups; i++) {
		if (out->groups[i] == 0) {
			snprintf(err, errlen,
			         "user '%s' has group 0 (root) among its groups: running as it "
			         "would "
			         "keep root's group",
			         name);
			return -1;
		}
	}
	return 0;
}

int privdrop_decide(const char *user, uid_t euid, struct privdrop_user *out, char *err,
                    size_t errlen)
{
	if (!user || !*user)
		return euid == 0 ? PRIVDROP_ROOT_WARN : PRIVDROP_AS_IS;
	if (privdrop_lookup(user, out, err, errlen) != 0)
		return -1;
	if (euid == 0)
		return PRIVDROP_DROP;
	if (euid == out->uid)
		return PRIVDROP_ALREADY;
	snprintf(err, errlen,
	         "user = %s, but sharemaild runs as uid %ld, not root: it cannot switch", user,
	         (long)euid);
	return -1;
}

/* ---- state_dir ---- */

/* nftw(3) passes no argument to its callback: the walk's context (start-up, one thread). */
static struct {
	uid_t uid;
	gid_t gid;
	long changed;
	int err;
	char where[512];
} walk;

static int give(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_NS || flag == FTW_DNR) {
		walk.err = errno ? errno : EACCES;
		snprintf(walk.where, sizeof walk.where, "%s", path);
		return 1;
	}
	if (st->st_uid == walk.uid && st->st_gid == walk.gid)
		return 0;
	if (lchown(path, walk.uid, walk.gid) != 0) {
		walk.err = errno;
		snprintf(walk.where, sizeof walk.where, "%s", path);
		return 1;
	}
	walk.changed++;
	return 0;
}

/* The name of uid for messages ("uid N" when it has none). */
static void owner_name(uid_t uid, char *out, size_t outsz)
{
	struct passwd pw, *res = NULL;
	char buf[PW_BUF];
	if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res)
		snprintf(out, outsz, "%s (uid %ld)", pw.pw_name, (long)uid);
	else
		snprintf(out, outsz, "uid %ld", (long)uid);
}

long privdrop_prepare_dir(const char *dir, const struct privdrop_user *u, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(dir, &st) != 0) {
		/* Parents 0755 (the user must pass through them), state_dir itself 0700. */
		if (errno != ENOENT || fs_mkdirs(dir, 0755, 1) != 0 || chmod(dir, 0700) != 0 ||
		    lstat(dir, &st) != 0) {
			snprintf(err, errlen, "cannot create state_dir %s: %s", dir,
			         strerror(errno));
			return -1;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "state_dir %s is not a folder", dir);
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != u->uid) {
		char owner[128];
		owner_name(st.st_uid, owner, sizeof owner);
		snprintf(
		        err, errlen,
		        "state_dir %s belongs to %s, not to user %s: chown -R %s it, or set user = "
		        "its owner",
		        dir, owner, u->name, u->name);
		return -1;
	}
	if (st.st_uid == u->uid && (st.st_mode & S_IRWXU) == S_IRWXU)
		return 0;
	walk.uid = u->uid;
	walk.gid = u->gid;
	walk.changed = 0;
	walk.err = 0;
	/* Root's folder (or a fresh one): everything in it becomes the user's, once. */
	if (st.st_uid == 0 && nftw(dir, give, 32, FTW_PHYS | FTW_MOUNT) != 0) {
		snprintf(err, errlen, "cannot give state_dir to user %s: %s: %s", u->name,
		         walk.err ? walk.where : dir, strerror(walk.err ? walk.err : errno));
		return -1;
	}
	if ((st.st_mode & S_IRWXU) != S_IRWXU && chmod(dir, (st.st_mode & 07777) | S_IRWXU) != 0) {
		snprintf(err, errlen, "chmod u+rwx %s: %s", dir, strerror(errno));
		return -1;
	}
	return walk.changed;
}

int privdrop_own_file(const char *path, const struct privdrop_user *u, char *err, size_t errlen)
{
	struct stat st;
	if (!path || !*path || lstat(path, &st) != 0)
		return 0;
	if (st.st_uid != 0 || !S_ISREG(st.st_mode))
		return 0;
	if (lchown(path, u->uid, u->gid) != 0) {
		snprintf(err, errlen, "cannot give %s to user %s: %s", path, u->name,
		         strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- the drop ---- */

static int ids_are(const struct privdrop_user *u, char *err, size_t errlen)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;
	gid_t groups[PRIVDROP_GROUPS_MAX];
	if (getresuid(&r, &e, &s) != 0 || getresgid(&rg, &eg, &sg) != 0) {
		snprintf(err, errlen, "getresuid: %s", strerror(errno));
		return -1;
	}
	if (r != u->uid || e != u->uid || s != u->uid || rg != u->gid || eg != u->gid ||
	    sg != u->gid) {
		snprintf(err, errlen, "after the drop: uids %ld %ld %ld, gids %ld %ld %ld", (long)r,
		         (long)e, (long)s, (long)rg, (long)eg, (long)sg);
		return -1;
	}
	int n = getgroups(PRIVDROP_GROUPS_MAX, groups);
	if (n < 0) {
		snprintf(err, errlen, "getgroups: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (groups[i] == 0) {
			snprintf(err, errlen, "after the drop: still in group 0");
			return -1;
		}
	}
	/* The proof that root is gone for good: it cannot be taken back. */
	if (setuid(0) == 0 || seteuid(0) == 0) {
		snprintf(err, errlen, "after the drop: setuid(0) still works");
		return -1;
	}
	return 0;
}

int privdrop_apply(const struct privdrop_user *u, const char *check_dir, char *err, size_t errlen)
{
	/* Groups first, then the gid, then the uid: after setresuid none could change. */
	if (setgroups((size_t)u->ngroups, u->groups) != 0) {
		snprintf(err, errlen, "setgroups for user %s: %s", u->name, strerror(errno));
		return -1;
	}
	if (setresgid(u->gid, u->gid, u->gid) != 0) {
		snprintf(err, errlen, "setresgid(%ld) for user %s: %s", (long)u->gid, u->name,
		         strerror(errno));
		return -1;
	}
	if (setresuid(u->uid, u->uid, u->uid) != 0) {
		snprintf(err, errlen, "setresuid(%ld) for user %s: %s", (long)u->uid, u->name,
		         strerror(errno));
		return -1;
	}
	if (ids_are(u, err, errlen) != 0)
		return -1;
	if (check_dir && access(check_dir, R_OK | W_OK | X_OK) != 0) {
		snprintf(err, errlen, "user %s cannot write state_dir %s: %s", u->name, check_dir,
		         strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- proof from /proc ---- */

/* Parses up to max decimal numbers after "Name:" on its line. Returns how many, or -1. */
static int line_numbers(const char *text, const char *name, long *v, int max)
{
	size_t nlen = strlen(name);
	const char *l = text;
	while (l && strncmp(l, name, nlen) != 0) {
		l = strchr(l, '\n');
		l = l ? l + 1 : NULL;
	}
	if (!l)
		return -1;
	const char *p = l + nlen;
	const char *end = strchr(p, '\n');
	if (!end)
		end = p + strlen(p);
	int n = 0;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p >= end)
			break;
		if (*p < '0' || *p > '9' || n == max)
			return -1;
		char *q;
		errno = 0;
		long x = strtol(p, &q, 10);
		if (errno || q > end)
			return -1;
		v[n++] = x;
		p = q;
	}
	return n;
}

int privdrop_status_parse(const char *text, struct privdrop_ids *out)
{
	memset(out, 0, sizeof *out);
	if (line_numbers(text, "Uid:", out->uid, 4) != 4 ||
	    line_numbers(text, "Gid:", out->gid, 4) != 4)
		return -1;
	out->ngroups = line_numbers(text, "Groups:", out->groups, PRIVDROP_GROUPS_MAX);
	return out->ngroups < 0 ? -1 : 0;
}

/* Reads a whole (small) /proc file into buf. Returns 0 or -1. */
static int read_small(const char *path, char *buf, size_t bufsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	ssize_t n;
	while (len + 1 < bufsz && (n = read(fd, buf + len, bufsz - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	return len > 0 ? 0 : -1;
}

static int thread_ok(const char *tid, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	char path[128], text[STATUS_MAX];
	struct privdrop_ids ids;
	snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
	if (read_small(path, text, sizeof text) != 0 || privdrop_status_parse(text, &ids) != 0) {
		/* A thread that ended since the listing has no file: nothing to check. */
		if (errno == ENOENT || errno == ESRCH)
			return 0;
		snprintf(err, errlen, "%s: cannot read its ids", path);
		return -1;
	}
	for (int i = 0; i < 4; i++) {
		if (ids.uid[i] != (long)uid || ids.gid[i] != (long)gid) {
			snprintf(err, errlen, "thread %s: Uid %ld %ld %ld %ld, Gid %ld %ld %ld %ld",
			         tid, ids.uid[0], ids.uid[1], ids.uid[2], ids.uid[3], ids.gid[0],
			         ids.gid[1], ids.gid[2], ids.gid[3]);
			return -1;
		}
	}
	for (int i = 0; i < ids.ngroups; i++) {
		if (ids.groups[i] == 0) {
			snprintf(err, errlen, "thread %s: still in group 0", tid);
			return -1;
		}
	}
	return 1;
}

int privdrop_check_threads(uid_t uid, gid_t gid, char *err, size_t errlen)
{
	DIR *d = opendir("/proc/self/task");
	if (!d) {
		snprintf(err, errlen, "/proc/self/task: %s", strerror(errno));
		return -1;
	}
	int checked = 0, rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		int r = thread_ok(e->d_name, uid, gid, err, errlen);
		if (r < 0)
			rc = -1;
		checked += r;
	}
	closedir(d);
	if (rc == 0 && checked == 0) {
		snprintf(err, errlen, "/proc/self/task: no thread found");
		return -1;
	}
	return rc == 0 ? checked : -1;
}
