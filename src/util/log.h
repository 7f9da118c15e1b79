/*
 * log: the one logging facility. Lines go to stderr (or a file set with
 * log_open_file) as "YYYY-mm-ddTHH:MM:SSZ prog[pid]: level: message\n", written
 * with a single write(2) so threads never interleave within a line. Messages are
 * formatted into a bounded buffer (LOG_LINE_MAX) and control bytes in them are
 * replaced by '?' so no peer-supplied byte can forge a log line.
 *
 * Ownership: no allocations. Thread-safe after log_init().
 */
#ifndef SHAREMAIL_UTIL_LOG_H
#define SHAREMAIL_UTIL_LOG_H

#include <stdint.h>

enum log_level { LOG_LEVEL_ERR = 0, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

#define LOG_LINE_MAX 2048

/* Sets the program name shown in every line and the most verbose level printed. */
void log_init(const char *progname, enum log_level max_level);
/* Parses "err", "warning", "info" or "debug"; returns -1 on anything else. */
int log_level_parse(const char *name, enum log_level *out);
/* Sets the most verbose level printed. */
void log_set_level(enum log_level max_level);
/* Formats and writes one line at the given level (dropped if above the max level). */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/*
 * A rate limit for one class of log line: at most `burst` lines, refilled at one
 * line per `interval_s` seconds; suppressed lines are counted and reported in the
 * next line that passes. Initialise with LOG_LIMIT_INIT(burst, interval_s).
 * log_limit_allow() is thread-safe (atomics) and returns the number of lines
 * suppressed since the last allowed one plus 1, or 0 when this line must be dropped.
 */
struct log_limit {
	uint32_t burst;
	uint32_t interval_s;
	uint64_t tokens_ms; /* tokens scaled by 1000 */
	uint64_t last_ms;
	uint64_t suppressed;
};
#define LOG_LIMIT_INIT(burst, interval_s)                                                          \
	{                                                                                          \
		(burst), (interval_s), (uint64_t)(burst)*1000, 0, 0                                \
	}
uint64_t log_limit_allow(struct log_limit *lim);

#endif
