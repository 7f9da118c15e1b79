/* log: see log.h. */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/timeutil.h"

static const char *log_prog = "sharemail";
static enum log_level log_max = LOG_LEVEL_INFO;
static const char *const level_names[] = {"err", "warning", "info", "debug"};

void log_init(const char *progname, enum log_level max_level)
{
	log_prog = progname;
	log_max = max_level;
}

void log_set_level(enum log_level max_level)
{
	log_max = max_level;
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
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

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > log_max)
		return;
	char line[LOG_LINE_MAX];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%SZ ", &tm);
	n += snprintf(line + n, sizeof line - (size_t)n, "%s[%ld]: %s: ", log_prog, (long)getpid(),
	              level_names[level]);
	if (n >= (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	int head = n;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	log_sanitize(line + head, (size_t)(n - head));
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
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
