/*
 * Unit tests for privdrop: the /proc status parser and the start-up decision
 * (anyone), and, as root (skipped otherwise), state_dir preparation and the drop
 * itself in a child process: a thread started before the drop and one started
 * after must both show, in /proc/self/task/<tid>/status, no uid, gid, saved id
 * or supplementary group 0; and the check must catch a process that kept root.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util/privdrop.h"

static const char status_text[] = "Name:\ttest_privdrop\n"
                                  "Umask:\t0022\n"
                                  "State:\tR (running)\n"
                                  "Uid:\t65534\t65534\t65534\t65534\n"
                                  "Gid:\t65534\t65534\t65534\t65534\n"
                                  "FDSize:\t64\n"
                                  "Groups:\t65534 100 \n"
                                  "NStgid:\t42\n";

TEST(status_parse)
{
	struct privdrop_ids ids;
	CHECK_INT(privdrop_status_parse(status_text, &ids), 0);
	CHECK_INT(ids.uid[0], 65534);
	CHECK_INT(ids.uid[3], 65534);
	CHECK_INT(ids.gid[2], 65534);
	CHECK_INT(ids.ngroups, 2);
	CHECK_INT(ids.groups[1], 100);
	/* Root: the parser reports what is there, zeros included. */
	CHECK_INT(privdrop_status_parse("Uid:\t0\t0\t0\t0\nGid:\t0\t5\t0\t0\nGroups:\t\n", &ids),
	          0);
	CHECK_INT(ids.gid[1], 5);
	CHECK_INT(ids.ngroups, 0);
	static const char *const bad[] = {
	        "Uid:\t1\t1\t1\nGid:\t1\t1\t1\t1\nGroups:\n", /* three uids */
	        "Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\n", /* no Groups line */
	        "Gid:\t1\t1\t1\t1\nGroups:\n", /* no Uid line */
	        "Uid:\t1\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nGroups:\n", /* five */
	        "Uid:\t1\tx\t1\t1\nGid:\t1\t1\t1\t1\nGroups:\n",
	        "Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nGroups:\t-3\n",
	        "",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (!CHECK_INT(privdrop_status_parse(bad[i], &ids), -1))
			printf("  case %zu\n", i);
}

TEST(decide)
{
	struct privdrop_user u;
	char err[256] = "";
	CHECK_INT(privdrop_decide(NULL, 0, &u, err, sizeof err), PRIVDROP_ROOT_WARN);
	CHECK_INT(privdrop_decide("", 0, &u, err, sizeof err), PRIVDROP_ROOT_WARN);
	CHECK_INT(privdrop_decide("", 1000, &u, err, sizeof err), PRIVDROP_AS_IS);
	CHECK_INT(privdrop_decide("sharemail-no-such-user", 0, &u, err, sizeof err), -1);
	CHECK_STR(err, "user 'sharemail-no-such-user' does not exist");
	CHECK_INT(privdrop_decide("root", 0, &u, err, sizeof err), -1);
	CHECK_STR(err, "user 'root' is uid 0: running as it would drop nothing");
	char longname[100];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	CHECK_INT(privdrop_decide(longname, 0, &u, err, sizeof err), -1);
	struct passwd *nobody = getpwnam("nobody");
	if (!nobody) {
		SKIP("no user nobody here");
		return;
	}
	CHECK_INT(privdrop_decide("nobody", 0, &u, err, sizeof err), PRIVDROP_DROP);
	CHECK_INT(u.uid, nobody->pw_uid);
	CHECK_INT(u.gid, nobody->pw_gid);
	CHECK(u.ngroups >= 1);
	int has_primary = 0;
	for (int i = 0; i < u.ngroups; i++)
		has_primary |= u.groups[i] == u.gid;
	CHECK(has_primary);
	CHECK_INT(privdrop_decide("nobody", nobody->pw_uid, &u, err, sizeof err), PRIVDROP_ALREADY);
	CHECK_INT(privdrop_decide("nobody", 4321, &u, err, sizeof err), -1);
	CHECK_STR(err,
	          "user = nobody, but sharemaild runs as uid 4321, not root: it cannot switch");
}

static char tmp[64];

static void mk_tmp(void)
{
	snprintf(tmp, sizeof tmp, "/tmp/test_privdrop.XXXXXX");
	if (!mkdtemp(tmp))
		exit(2);
	chmod(tmp, 0755);
}

static void rm_tmp(void)
{
	char cmd[128];
	/* The tree is the test's own, under /tmp: a fixed shape, removed piece by piece. */
	static const char *const paths[] = {"state/sub/file", "state/sub", "state/link",
	                                    "state/db",       "state",     "new/deeper/state",
	                                    "new/deeper",     "new",       "other",
	                                    "plain",          "outside",   "log"};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		snprintf(cmd, sizeof cmd, "%s/%s", tmp, paths[i]);
		if (unlink(cmd) != 0)
			rmdir(cmd);
	}
	rmdir(tmp);
}

static int owned_by(const char *rel, uid_t uid, gid_t gid)
{
	char p[128];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", tmp, rel);
	return lstat(p, &st) == 0 && st.st_uid == uid && st.st_gid == gid;
}

static void touch(const char *rel)
{
	char p[128];
	snprintf(p, sizeof p, "%s/%s", tmp, rel);
	int fd = open(p, O_WRONLY | O_CREAT, 0600);
	if (fd >= 0)
		close(fd);
}

static const char *at(const char *rel)
{
	static char p[128];
	snprintf(p, sizeof p, "%s/%s", tmp, rel);
	return p;
}

TEST(prepare_dir)
{
	struct privdrop_user u;
	char err[512] = "";
	if (geteuid() != 0) {
		SKIP("needs root: chown");
		return;
	}
	if (privdrop_lookup("nobody", &u, err, sizeof err) != 0) {
		SKIP("no user nobody here");
		return;
	}
	mk_tmp();
	/* Missing: created with its parents, state_dir 0700 and the user's. */
	CHECK_INT(privdrop_prepare_dir(at("new/deeper/state"), &u, err, sizeof err), 1);
	CHECK(owned_by("new/deeper/state", u.uid, u.gid));
	struct stat st;
	CHECK_INT(stat(at("new/deeper/state"), &st), 0);
	CHECK_INT(st.st_mode & 07777, 0700);
	CHECK_INT(stat(at("new/deeper"), &st), 0);
	CHECK_INT(st.st_mode & 0777, 0755); /* the user can pass through */
	/* The user's already: nothing changes. */
	CHECK_INT(privdrop_prepare_dir(at("new/deeper/state"), &u, err, sizeof err), 0);
	/* Root's, with a file, a folder and a link out of it: all but the link's target. */
	mkdir(at("state"), 0700);
	mkdir(at("state/sub"), 0700);
	touch("state/db");
	touch("state/sub/file");
	touch("outside");
	char target[128];
	snprintf(target, sizeof target, "%s", at("outside"));
	CHECK_INT(symlink(target, at("state/link")), 0);
	CHECK_INT(privdrop_prepare_dir(at("state"), &u, err, sizeof err), 5);
	CHECK(owned_by("state", u.uid, u.gid));
	CHECK(owned_by("state/sub", u.uid, u.gid));
	CHECK(owned_by("state/sub/file", u.uid, u.gid));
	CHECK(owned_by("state/db", u.uid, u.gid));
	CHECK(owned_by("state/link", u.uid, u.gid));
	CHECK(owned_by("outside", 0, 0)); /* a symbolic link is not followed */
	/* Somebody else's: refused, naming both. */
	mkdir(at("other"), 0700);
	CHECK_INT(chown(at("other"), 12345, 12345), 0);
	CHECK_INT(privdrop_prepare_dir(at("other"), &u, err, sizeof err), -1);
	CHECK(strstr(err, "belongs to uid 12345, not to user nobody") != NULL);
	CHECK(owned_by("other", 12345, 12345));
	touch("plain");
	CHECK_INT(privdrop_prepare_dir(at("plain"), &u, err, sizeof err), -1);
	CHECK(strstr(err, "is not a folder") != NULL);
	/* The log file: root's becomes the user's; a missing one is no error. */
	touch("log");
	CHECK_INT(privdrop_own_file(at("log"), &u, err, sizeof err), 0);
	CHECK(owned_by("log", u.uid, u.gid));
	CHECK_INT(privdrop_own_file(at("no-such-log"), &u, err, sizeof err), 0);
	rm_tmp();
}

/* ---- the drop, in a child: the parent's harness counts what the child reports ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int release;

static void *idle_thread(void *arg)
{
	pthread_mutex_lock(&mu);
	while (!release)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return NULL;
}

/* Runs fn in a child; returns what it wrote to the pipe ("" on success) in out. */
static int in_child(void (*fn)(int fd), char *out, size_t outsz)
{
	int p[2];
	if (pipe(p) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		fn(p[1]);
		_exit(0);
	}
	close(p[1]);
	size_t len = 0;
	ssize_t n;
	while (len + 1 < outsz && (n = read(p[0], out + len, outsz - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(p[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void say(int fd, const char *s)
{
	ssize_t w = write(fd, s, strlen(s));
	(void)w;
}

static void drop_child(int fd)
{
	struct privdrop_user u;
	char err[512] = "", msg[700];
	pthread_t before, after;
	if (privdrop_lookup("nobody", &u, err, sizeof err) != 0 ||
	    pthread_create(&before, NULL, idle_thread, NULL) != 0) {
		say(fd, "setup failed");
		return;
	}
	if (privdrop_apply(&u, "/tmp", err, sizeof err) != 0) {
		snprintf(msg, sizeof msg, "apply: %s", err);
		say(fd, msg);
		return;
	}
	if (pthread_create(&after, NULL, idle_thread, NULL) != 0) {
		say(fd, "thread after the drop");
		return;
	}
	int n = privdrop_check_threads(u.uid, u.gid, err, sizeof err);
	if (n != 3) {
		snprintf(msg, sizeof msg, "check_threads: %d: %s", n, err);
		say(fd, msg);
	} else if (setuid(0) == 0 || setgid(0) == 0 || access("/root", W_OK) == 0) {
		say(fd, "root came back");
	} else {
		say(fd, "ok");
	}
	pthread_mutex_lock(&mu);
	release = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(before, NULL);
	pthread_join(after, NULL);
}

/* The check itself catches a process that kept root (it would be useless otherwise). */
static void keep_root_child(int fd)
{
	char err[512] = "";
	pthread_t t;
	if (pthread_create(&t, NULL, idle_thread, NULL) != 0)
		return;
	int n = privdrop_check_threads(65534, 65534, err, sizeof err);
	say(fd, n == -1 && strstr(err, "Uid 0 0 0 0") ? "caught" : "missed");
	pthread_mutex_lock(&mu);
	release = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(t, NULL);
}

/* A state_dir the user cannot write is found right after the drop. */
static void unwritable_child(int fd)
{
	struct privdrop_user u;
	char err[512] = "";
	if (privdrop_lookup("nobody", &u, err, sizeof err) != 0)
		return;
	if (privdrop_apply(&u, "/root", err, sizeof err) == -1)
		say(fd, err);
}

TEST(drop_every_thread)
{
	char out[1024];
	if (geteuid() != 0) {
		SKIP("needs root: the drop");
		return;
	}
	if (!getpwnam("nobody")) {
		SKIP("no user nobody here");
		return;
	}
	CHECK_INT(in_child(drop_child, out, sizeof out), 0);
	CHECK_STR(out, "ok");
	CHECK_INT(in_child(keep_root_child, out, sizeof out), 0);
	CHECK_STR(out, "caught");
	CHECK_INT(in_child(unwritable_child, out, sizeof out), 0);
	CHECK(strstr(out, "user nobody cannot write state_dir /root") != NULL);
	/* The parent is still root: the drops happened in the children only. */
	CHECK_INT(geteuid(), 0);
}

TEST_MAIN(T(status_parse), T(decide), T(prepare_dir), T(drop_every_thread))
