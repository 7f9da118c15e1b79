/*
 * collect_ctl: see collect_ctl.h.
 */
#include "collect/collect_ctl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CTL_PATH_MAX 4096
#define CTL_POLL_MS 50
#define CTL_SOURCE_MAX 1024
#define CTL_TAKE_MAX 256 /* requests taken per call */

static int path_of(char *out, size_t outsz, const char *state_dir, const char *sub,
                   const char *name)
{
	int n = snprintf(out, outsz, "%s/" COLLECT_CTL_DIR "%s%s%s%s", state_dir, sub ? "/" : "",
	                 sub ? sub : "", name ? "/" : "", name ? name : "");
	if (n < 0 || (size_t)n >= outsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int mkdir_ok(const char *p)
{
	return mkdir(p, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

int collect_ctl_prepare(const char *state_dir)
{
	char p[CTL_PATH_MAX];
	if (path_of(p, sizeof p, state_dir, NULL, NULL) < 0 || mkdir_ok(p) < 0)
		return -1;
	if (path_of(p, sizeof p, state_dir, "req", NULL) < 0 || mkdir_ok(p) < 0)
		return -1;
	if (path_of(p, sizeof p, state_dir, "ans", NULL) < 0 || mkdir_ok(p) < 0)
		return -1;
	return 0;
}

int collect_ctl_daemon_running(const char *state_dir)
{
	char p[CTL_PATH_MAX];
	int n = snprintf(p, sizeof p, "%s/sharemaild.pid", state_dir);
	if (n < 0 || (size_t)n >= sizeof p) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	/* The daemon holds LOCK_EX while it runs (sharemaild.c lock_state). */
	int r = flock(fd, LOCK_SH | LOCK_NB);
	int e = errno;
	close(fd);
	if (r == 0)
		return 0;
	errno = e;
	return e == EWOULDBLOCK ? 1 : -1;
}

/* Writes text to dir/name through a temporary name and a rename. 0 or -1. */
static int write_replace(const char *dir, const char *name, const char *text)
{
	char tmp[CTL_PATH_MAX], dst[CTL_PATH_MAX];
	int n1 = snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
	int n2 = snprintf(dst, sizeof dst, "%s/%s", dir, name);
	if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof tmp || (size_t)n2 >= sizeof dst) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			unlink(tmp);
			return -1;
		}
		off += (size_t)w;
	}
	if (close(fd) != 0 || rename(tmp, dst) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Reads a whole small file into text (NUL-terminated, cut at textlen - 1). 0 or -1. */
static int read_small(const char *path, char *text, size_t textlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off + 1 < textlen) {
		ssize_t r = read(fd, text + off, textlen - 1 - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	close(fd);
	text[off] = '\0';
	return 0;
}

int collect_ctl_request(const char *state_dir, const char *source, char id[COLLECT_CTL_ID_MAX])
{
	static unsigned counter;
	char dir[CTL_PATH_MAX];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* Sortable by time: the daemon answers the oldest first. */
	snprintf(id, COLLECT_CTL_ID_MAX, "%010lld%09ld-%ld-%u", (long long)ts.tv_sec, ts.tv_nsec,
	         (long)getpid(), counter++);
	if (collect_ctl_prepare(state_dir) < 0 ||
	    path_of(dir, sizeof dir, state_dir, "req", NULL) < 0)
		return -1;
	return write_replace(dir, id, source ? source : "");
}

static void sleep_ms(int ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

int collect_ctl_wait(const char *state_dir, const char *id, int timeout_ms, char *text,
                     size_t textlen)
{
	char ans[CTL_PATH_MAX], req[CTL_PATH_MAX];
	if (path_of(ans, sizeof ans, state_dir, "ans", id) < 0 ||
	    path_of(req, sizeof req, state_dir, "req", id) < 0)
		return -1;
	for (int waited = 0;; waited += CTL_POLL_MS) {
		if (read_small(ans, text, textlen) == 0) {
			unlink(ans);
			return 0;
		}
		if (waited >= timeout_ms || collect_ctl_daemon_running(state_dir) == 0) {
			int gone = waited < timeout_ms;
			/* Withdrawn unless the daemon took it meanwhile (then its answer is dropped). */
			unlink(req);
			if (read_small(ans, text, textlen) == 0) {
				unlink(ans);
				return 0;
			}
			errno = gone ? ESRCH : ETIMEDOUT;
			return -1;
		}
		sleep_ms(CTL_POLL_MS);
	}
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 for a name a requester makes: digits, '-' and nothing that walks out of the folder. */
static int id_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= COLLECT_CTL_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

size_t collect_ctl_take(const char *state_dir,
                        void (*fn)(void *arg, const char *id, const char *source), void *arg)
{
	char dir[CTL_PATH_MAX];
	if (path_of(dir, sizeof dir, state_dir, "req", NULL) < 0)
		return 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	char *names[CTL_TAKE_MAX];
	size_t n = 0;
	struct dirent *e;
	while (n < CTL_TAKE_MAX && (e = readdir(d)) != NULL)
		if (id_valid(e->d_name) && (names[n] = strdup(e->d_name)) != NULL)
			n++;
	closedir(d);
	qsort(names, n, sizeof names[0], cmp_names);
	size_t taken = 0;
	for (size_t i = 0; i < n; i++) {
		char p[CTL_PATH_MAX], source[CTL_SOURCE_MAX];
		if (path_of(p, sizeof p, state_dir, "req", names[i]) == 0 &&
		    read_small(p, source, sizeof source) == 0 && unlink(p) == 0) {
			source[strcspn(source, "\r\n")] = '\0';
			fn(arg, names[i], source);
			taken++;
		}
		free(names[i]);
	}
	return taken;
}

int collect_ctl_answer(const char *state_dir, const char *id, const char *text)
{
	char dir[CTL_PATH_MAX];
	if (!id_valid(id) || path_of(dir, sizeof dir, state_dir, "ans", NULL) < 0)
		return -1;
	return write_replace(dir, id, text);
}

int collect_ctl_status_write(const char *state_dir, const char *text)
{
	char dir[CTL_PATH_MAX];
	if (path_of(dir, sizeof dir, state_dir, NULL, NULL) < 0)
		return -1;
	return write_replace(dir, "status", text);
}

int collect_ctl_status_read(const char *state_dir, char *text, size_t textlen)
{
	char p[CTL_PATH_MAX];
	if (path_of(p, sizeof p, state_dir, NULL, "status") < 0)
		return -1;
	return read_small(p, text, textlen);
}
