/*
 * log: the one logging facility. Lines go to stderr, or to a file (log_file),
 * and/or to syslog (log_syslog), as "YYYY-mm-ddTHH:MM:SSZ prog[pid]: level: message\n"
 * (syslog: "<PRI>Mmm dd HH:MM:SS prog[pid]: level: message", facility mail, one
 * datagram to /dev/log). Each line is written with a single write(2) or send(2)
 * so threads never interleave within a line. Messages are formatted into a
 * bounded buffer (LOG_LINE_MAX) and control bytes in them are replaced by '?' so
 * no peer-supplied byte can forge a log line.
 *
 * Syslog is spoken here, not through syslog(3): a datagram is sent without
 * blocking, so a stalled syslog daemon can never stall a Minger worker or the
 * event loop; a line syslog does not take goes to stderr or the log file instead
 * of being lost. SHAREMAIL_TEST_SYSLOG_PATH (tests only) replaces /dev/log.
 *
 * Ownership: no allocations; the descriptors are the module's, kept to the end.
 * Thread-safe after log_init(); log_configure() and log_set_*() are called from
 * one thread (the main one) while any thread may log.
 */
#ifndef SHAREMAIL_UTIL_LOG_H
#define SHAREMAIL_UTIL_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_ERR = 0, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* log_syslog: no (stderr or the file), yes (syslog as well), only (syslog alone). */
enum log_syslog_mode { LOG_SYSLOG_NO = 0, LOG_SYSLOG_YES, LOG_SYSLOG_ONLY };

#define LOG_LINE_MAX 2048

/* Sets the program name shown in every line and the most verbose level printed. */
void log_init(const char *progname, enum log_level max_level);
/* Parses "err", "warning", "info" or "debug"; returns -1 on anything else. */
int log_level_parse(const char *name, enum log_level *out);
/* Parses "no", "yes" or "only"; returns -1 on anything else. */
int log_syslog_parse(const char *name, enum log_syslog_mode *out);
/* Sets the most verbose level printed. */
void log_set_level(enum log_level max_level);

/*
 * Sends lines to `file` (appended; created mode 0640; NULL or "": stderr) and, as
 * `mode` says, to syslog. Called again (SIGHUP) it opens the file anew, which is
 * how a file renamed away by logrotate is let go. When the file cannot be opened
 * (or no socket can be made for syslog) nothing changes: returns -1 with the
 * reason in err. A syslog socket that cannot be reached is not an error: a
 * warning says so, and lines go to stderr or the file until it can.
 */
int log_configure(const char *file, enum log_syslog_mode mode, char *err, size_t errlen);

/*
 * While on (start-up), err lines also go to stderr when lines do not already go
 * there, so a daemon that cannot start says why on the terminal as well.
 */
void log_set_errors_to_stderr(int on);

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
