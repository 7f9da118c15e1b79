/*
 * privdrop: running as `user` (ISSUE 9 item 7). Started as root with user set,
 * sharemaild binds its privileged ports and opens its log as root, then gives up
 * root for good: the user's supplementary groups (setgroups, as initgroups
 * would), then setresgid, then setresuid, each real, effective and saved id, in
 * that order (once the uid is gone, the groups could not be changed). Then it
 * checks: getresuid/getresgid all the user's, no supplementary group 0, and
 * setuid(0) fails. glibc applies each of those calls to every thread of the
 * process, but the daemon drops before it starts any thread anyway;
 * privdrop_check_threads() proves it from /proc/self/task/<tid>/status.
 *
 * state_dir (Dovecot's convention: the mail store belongs to the user the
 * server runs as; state_dir holds the queue and the Maildirs):
 *   - missing: created (mode 0700) and given to the user;
 *   - owned by the user: used as it is;
 *   - owned by root (made by hand, or by `sharemail` run as root before the
 *     first start): the folder and everything in it, not following symbolic
 *     links nor crossing into other file systems, is given to the user, once
 *     (logged by the caller with the count);
 *   - owned by anybody else, or not a folder: refused, naming both users.
 * `user` must exist, must not be uid 0, and must not have group 0 among its
 * groups (a drop that keeps group root is no drop).
 *
 * Started as root without `user`: the caller logs one loud warning and runs on.
 * Started as another user with `user` set: fine when that is the user (systemd's
 * User=), refused otherwise (no way to switch).
 *
 * Ownership: no allocation kept; struct privdrop_user is the caller's. Start-up
 * only, on the main thread (getpwnam_r, nftw).
 */
#ifndef SHAREMAIL_UTIL_PRIVDROP_H
#define SHAREMAIL_UTIL_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

#define PRIVDROP_NAME_MAX 64
#define PRIVDROP_GROUPS_MAX 256

struct privdrop_user {
	char name[PRIVDROP_NAME_MAX];
	uid_t uid;
	gid_t gid; /* the primary group, from the password entry */
	gid_t groups[PRIVDROP_GROUPS_MAX]; /* supplementary groups, gid among them */
	int ngroups;
};

enum privdrop_plan {
	PRIVDROP_AS_IS, /* not root, no user: nothing to do */
	PRIVDROP_ROOT_WARN, /* root without user: warn loudly once, run on as root */
	PRIVDROP_DROP, /* root with user: prepare state_dir, bind, then privdrop_apply() */
	PRIVDROP_ALREADY, /* already running as user (systemd's User=): nothing to do */
};

/*
 * Looks the user up (password and group databases) into *out. Returns 0, or -1
 * with a message naming the user in err: no such user, uid 0, group 0 among its
 * groups, more than PRIVDROP_GROUPS_MAX groups, a name too long.
 */
int privdrop_lookup(const char *name, struct privdrop_user *out, char *err, size_t errlen);

/*
 * The start-up decision for `user` (NULL or "": none) when running with
 * effective uid euid. For a set user it looks the user up into *out. Returns the
 * plan, or -1 with the reason in err (no such user, or neither root nor user).
 */
int privdrop_decide(const char *user, uid_t euid, struct privdrop_user *out, char *err,
                    size_t errlen);

/*
 * As root, before the drop: makes `dir` the user's as described above. Returns
 * the number of files and folders whose owner it changed (0: it was the user's
 * already), or -1 with the reason in err (naming the user and the owner).
 */
long privdrop_prepare_dir(const char *dir, const struct privdrop_user *u, char *err, size_t errlen);

/*
 * As root: gives one existing file (the log file) to the user when root owns it,
 * so that a reopen on SIGHUP after the drop works. A missing file is not an
 * error (it will be created by the user). Returns 0 or -1 with err.
 */
int privdrop_own_file(const char *path, const struct privdrop_user *u, char *err, size_t errlen);

/*
 * Drops to the user for good and checks the result (see above); then, when
 * check_dir is not NULL, that the user may read, write and enter it. Returns 0,
 * or -1 with the reason in err: the process must then exit (it may be half way).
 */
int privdrop_apply(const struct privdrop_user *u, const char *check_dir, char *err, size_t errlen);

/* The ids of one thread, from a /proc/<pid>/task/<tid>/status file. */
struct privdrop_ids {
	long uid[4]; /* real, effective, saved, file system */
	long gid[4];
	long groups[PRIVDROP_GROUPS_MAX];
	int ngroups;
};

/*
 * Parses the Uid:, Gid: and Groups: lines of a status file's text. Returns 0, or
 * -1 when a line is missing or malformed. Pure.
 */
int privdrop_status_parse(const char *text, struct privdrop_ids *out);

/*
 * Reads /proc/self/task/<tid>/status of every thread and checks that each has
 * all four uids equal to uid, all four gids equal to gid and no supplementary
 * group 0. Returns the number of threads checked (>= 1), or -1 with the first
 * thread that fails (or the read that failed) in err.
 */
int privdrop_check_threads(uid_t uid, gid_t gid, char *err, size_t errlen);

#endif
