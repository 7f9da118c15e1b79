/* log: see log.h. */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/timeutil.h"

#define SYSLOG_PATH "/dev/log"
#define SYSLOG_FACILITY_MAIL 2 /* RFC 5424 6.2.1 */

static const char *log_prog = "sharemail";
static atomic_int log_max = LOG_LEVEL_INFO;
static const char *const level_names[] = {"err", "warning", "info", "debug"};
static const int level_severity[] = {3, 4, 6, 7}; /* RFC 5424 6.2.1 */
static const char *const syslog_names[] = {"no", "yes", "only"};

/*
 * Where lines go. out_fd is -1 (stderr) until a log_file is first opened; after
 * that it stays the same number, and dup2() swaps the file under it (a reopen, or
 * stderr again), so a thread that just read it never writes to a closed or reused
 * descriptor.
 */
static atomic_int out_fd = -1;
static atomic_int out_is_file;
static atomic_int syslog_fd = -1;
static atomic_int syslog_mode = LOG_SYSLOG_NO;
static atomic_int errors_to_stderr;
static struct sockaddr_un syslog_addr;
static socklen_t syslog_addr_len;

void log_init(const char *progname, enum log_level max_level)
{
	log_prog = progname;
	atomic_store(&log_max, (int)max_level);
}

void log_set_level(enum log_level max_level)
{
	atomic_store(&log_max, (int)max_level);
}

void log_set_errors_to_stderr(int on)
{
	atomic_store(&errors_to_stderr, on != 0);
}

/* Index of name in names[0..n), or -1. */
static int word_index(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(name, names[i]) == 0)
			return (int)i;
	return -1;
}

int log_level_parse(const char *name, enum log_level *out)
{
	int i = word_index(level_names, sizeof level_names / sizeof level_names[0], name);
	if (i < 0)
		return -1;
	*out = (enum log_level)i;
	return 0;
}

int log_syslog_parse(const char *name, enum log_syslog_mode *out)
{
	int i = word_index(syslog_names, sizeof syslog_names / sizeof syslog_names[0], name);
	if (i < 0)
		return -1;
	*out = (enum log_syslog_mode)i;
	return 0;
}

/* The syslog socket (made once) and its address. Returns 0 or -1 with err set. */
static int syslog_open(char *err, size_t errlen)
{
	if (atomic_load(&syslog_fd) >= 0)
		return 0;
	const char *path = getenv("SHAREMAIL_TEST_SYSLOG_PATH");
	if (!path || !*path)
		path = SYSLOG_PATH;
	if (strlen(path) >= sizeof syslog_addr.sun_path) {
		snprintf(err, errlen, "syslog socket path %s is too long", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "syslog: socket: %s", strerror(errno));
		return -1;
	}
	memset(&syslog_addr, 0, sizeof syslog_addr);
	syslog_addr.sun_family = AF_UNIX;
	memcpy(syslog_addr.sun_path, path, strlen(path) + 1);
	syslog_addr_len = (socklen_t)sizeof syslog_addr;
	atomic_store(&syslog_fd, fd);
	return 0;
}

/* 0 when a syslog daemon listens at the socket path; else -1 with errno set. */
static int syslog_reachable(void)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int rc = connect(fd, (const struct sockaddr *)&syslog_addr, syslog_addr_len);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* Points out_fd at `file` (or stderr again). Returns 0 or -1 with err set. */
static int out_open(const char *file, char *err, size_t errlen)
{
	int cur = atomic_load(&out_fd);
	if (!file || !*file) {
		if (cur >= 0 && cur != STDERR_FILENO && dup3(STDERR_FILENO, cur, O_CLOEXEC) < 0) {
			snprintf(err, errlen, "cannot log to stderr again: %s", strerror(errno));
			return -1;
		}
		atomic_store(&out_is_file, 0);
		return 0;
	}
	int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open log_file %s: %s", file, strerror(errno));
		return -1;
	}
	if (cur < 0) {
		atomic_store(&out_fd, fd);
	} else {
		int rc = dup3(fd, cur, O_CLOEXEC);
		int e = errno;
		close(fd);
		if (rc < 0) {
			snprintf(err, errlen, "cannot reopen log_file %s: %s", file, strerror(e));
			return -1;
		}
	}
	atomic_store(&out_is_file, 1);
	return 0;
}

int log_configure(const char *file, enum log_syslog_mode mode, char *err, size_t errlen)
{
	if (mode != LOG_SYSLOG_NO && syslog_open(err, errlen) != 0)
		return -1;
	if (out_open(file, err, errlen) != 0)
		return -1;
	tzset(); /* syslog stamps are local time; localtime_r() may not read TZ itself */
	int was = atomic_exchange(&syslog_mode, (int)mode);
	if (mode != LOG_SYSLOG_NO && syslog_reachable() != 0)
		log_warning("syslog: cannot reach %s: %s; lines go to %s until it can",
		            syslog_addr.sun_path, strerror(errno), file && *file ? file : "stderr");
	else if (mode != LOG_SYSLOG_NO && was == LOG_SYSLOG_NO)
		log_debug("syslog: logging to %s", syslog_addr.sun_path);
	return 0;
}

/* Replaces control bytes and DEL so a message can never span or forge lines. */
static void log_sanitize(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			s[i] = '?';
	}
}

/*
 * head (a NUL-terminated prefix) then body into line (LOG_LINE_MAX), cut to fit,
 * with a newline when nl. Returns the length.
 */
static size_t line_join(char *line, const char *head, const char *body, size_t blen, int nl)
{
	size_t room = LOG_LINE_MAX - 1, h = strlen(head);
	if (h > room)
		h = room;
	memcpy(line, head, h);
	if (blen > room - h)
		blen = room - h;
	memcpy(line + h, body, blen);
	size_t n = h + blen;
	if (nl)
		line[n++] = '\n';
	return n;
}

/* One datagram to syslog. Returns 0 when it was taken. */
static int syslog_send(enum log_level level, const char *body, size_t blen)
{
	int fd = atomic_load(&syslog_fd);
	if (fd < 0)
		return -1;
	char head[160], line[LOG_LINE_MAX], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm); /* RFC 3164 4.1.2 */
	snprintf(head, sizeof head,
	         "<%d>%s %s[%ld]: %s: ", SYSLOG_FACILITY_MAIL * 8 + level_severity[level], stamp,
	         log_prog, (long)getpid(), level_names[level]);
	size_t n = line_join(line, head, body, blen, 0);
	ssize_t w = sendto(fd, line, n, MSG_DONTWAIT | MSG_NOSIGNAL,
	                   (const struct sockaddr *)&syslog_addr, syslog_addr_len);
	return w == (ssize_t)n ? 0 : -1;
}

static void fd_write(int fd, const char *line, size_t n)
{
	ssize_t w = write(fd, line, n);
	(void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if ((int)level > atomic_load(&log_max))
		return;
	char body[LOG_LINE_MAX], head[160], line[LOG_LINE_MAX];
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(body, sizeof body, fmt, ap);
	va_end(ap);
	size_t blen = m < 0 ? 0 : (size_t)m < sizeof body ? (size_t)m : sizeof body - 1;
	log_sanitize(body, blen);
	int mode = atomic_load(&syslog_mode);
	int to_syslog = mode != LOG_SYSLOG_NO && syslog_send(level, body, blen) == 0;
	int to_out = mode != LOG_SYSLOG_ONLY || !to_syslog;
	int out = atomic_load(&out_fd), is_file = atomic_load(&out_is_file);
	int to_stderr =
	        level == LOG_LEVEL_ERR && atomic_load(&errors_to_stderr) && (!to_out || is_file);
	if (!to_out && !to_stderr)
		return;
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	size_t h = strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%SZ ", &tm);
	snprintf(head + h, sizeof head - h, "%s[%ld]: %s: ", log_prog, (long)getpid(),
	         level_names[level]);
	size_t n = line_join(line, head, body, blen, 1);
	if (to_out)
		fd_write(out >= 0 ? out : STDERR_FILENO, line, n);
	if (to_stderr)
		fd_write(STDERR_FILENO, line, n);
}

uint64_t log_limit_allow(struct log_limit *lim)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	uint64_t now = time_mono_ms(), ret = 0;
	pthread_mutex_lock(&mu);
	if (lim->last_ms == 0)
		lim->last_ms = now;
	uint64_t cap = (uint64_t)lim->burst * 1000;
	uint64_t refill = lim->interval_s ? (now - lim->last_ms) / lim->interval_s : cap;
	lim->tokens_ms = lim->tokens_ms + refill > cap ? cap : lim->tokens_ms + refill;
	lim->last_ms = now;
	if (lim->tokens_ms >= 1000) {
		lim->tokens_ms -= 1000;
		ret = lim->suppressed + 1;
		lim->suppressed = 0;
	} else {
		lim->suppressed++;
	}
	pthread_mutex_unlock(&mu);
	return ret;
}
