/*
 * collect_ctl: how `sharemail collect now|status` talks to the running
 * collector, through files in <state_dir>/collect/ (as `queue flush` leaves its
 * requests in queue/flush/): no socket protocol, no permission model beyond the
 * state_dir's (0700, the daemon's user), and a request made while the daemon is
 * down is refused at once rather than left behind.
 *
 *   collect/req/ID      a request: the SOURCE named (empty: every source)
 *   collect/ans/ID      its answer, written (tmp + rename) when the cycle ended:
 *                       first line "CODE", then one line per source
 *                       "NAME: OUTCOME ..." (what `collect now` prints)
 *   collect/status      the last cycle of each source, one line each, rewritten
 *                       (tmp + rename) after every cycle (`collect status`)
 * ID is made by the requester: its pid, the time and a counter (unique per host).
 *
 * Threads and processes: the request/wait side runs in the CLI; take/answer/
 * status in the collector's thread. Files are small; nothing here is durable
 * across a system crash, nor needs to be (a lost request is re-asked).
 */
#ifndef SHAREMAIL_COLLECT_COLLECT_CTL_H
#define SHAREMAIL_COLLECT_COLLECT_CTL_H

#include <stddef.h>

#define COLLECT_CTL_ID_MAX 64
#define COLLECT_CTL_ANSWER_MAX 65536 /* octets of an answer read back */
#define COLLECT_CTL_DIR "collect" /* under state_dir */

/* Answer codes (the exit status of `collect now`). */
#define COLLECT_CTL_OK 0 /* every source asked collected */
#define COLLECT_CTL_FAILED 1 /* at least one source failed (the lines say why) */
#define COLLECT_CTL_NO_SOURCE 64 /* SOURCE names no collect_source (EX_USAGE) */
#define COLLECT_CTL_NOT_RUNNING 75 /* no daemon, or no answer in time (EX_TEMPFAIL) */

/* Creates <state_dir>/collect/{req,ans}. 0 or -1 (errno). */
int collect_ctl_prepare(const char *state_dir);

/*
 * 1 when a sharemaild holds the lock on <state_dir>/sharemaild.pid (it is
 * running), 0 when none does, -1 when that cannot be told (errno).
 */
int collect_ctl_daemon_running(const char *state_dir);

/*
 * Leaves a request for source (NULL or "": every source); its id into id.
 * 0 or -1 (errno).
 */
int collect_ctl_request(const char *state_dir, const char *source, char id[COLLECT_CTL_ID_MAX]);

/*
 * Waits for the answer to request id, at most timeout_ms, checking every
 * 50 ms that the daemon still runs: 0 with the answer (NUL-terminated, its
 * file removed) in text, or -1: errno ETIMEDOUT (no answer in time; the
 * request is withdrawn when still unread) or ESRCH (the daemon stopped).
 */
int collect_ctl_wait(const char *state_dir, const char *id, int timeout_ms, char *text,
                     size_t textlen);

/*
 * Takes every waiting request, oldest first (each file removed before fn
 * sees it): fn(arg, id, source) with source "" for every source. Returns the
 * count (0 when the folder is empty or unreadable).
 */
size_t collect_ctl_take(const char *state_dir,
                        void (*fn)(void *arg, const char *id, const char *source), void *arg);

/* Writes the answer of request id: text as it should be read. 0 or -1. */
int collect_ctl_answer(const char *state_dir, const char *id, const char *text);

/* Replaces <state_dir>/collect/status with text. 0 or -1. */
int collect_ctl_status_write(const char *state_dir, const char *text);

/* Reads the status file into text (NUL-terminated). 0, or -1 (errno ENOENT: no cycle yet). */
int collect_ctl_status_read(const char *state_dir, char *text, size_t textlen);

#endif
