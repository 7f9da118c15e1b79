/*
 * fake_session_ops: THE fake world of an SMTP session (struct smtp_session_ops),
 * shared by test_transcripts, test_smtp_session and fuzz_smtp_session: a small
 * directory, a queue in memory that fails on demand, a fixed clock, and a record
 * of every call as "## " lines (the format of tests/transcripts/NAME.ref). Queue
 * ids are Q1, Q2, ... in the order messages are begun.
 *
 * The directory (lookups fold ASCII case): alice@example.com, bob@example.org,
 * "a b"@example.com and list@example.com can receive; off@example.com is
 * disabled; full@example.com is over quota; busy@example.com answers "try
 * later"; anything else is not found.
 *
 * Ownership: a struct fake_session owns its record (fake_session_fini frees it)
 * and the messages it hands out; it borrows the session set in `s`.
 */
#ifndef SHAREMAIL_TESTS_FAKE_SESSION_OPS_H
#define SHAREMAIL_TESTS_FAKE_SESSION_OPS_H

#include <stddef.h>

#include "smtpd/smtp_session.h"

/* A growing NUL-terminated byte buffer (aborts when out of memory: tests only). */
struct fake_buf {
	char *p;
	size_t len, cap;
};

void fake_buf_add(struct fake_buf *b, const void *p, size_t n);
void fake_buf_str(struct fake_buf *b, const char *s);
/*
 * Appends s with the transcript escapes undone: \r \n \t \0 \xHH, and a backslash
 * before any other character stands for that character. Shared by the server and
 * client transcript drivers (test_transcripts.c, test_smtp_client.c).
 */
void fake_buf_unescape(struct fake_buf *out, const char *s);

struct fake_session {
	/* settings: the test sets them after fake_session_init() (defaults in brackets) */
	long long free_space; /* what free_space() answers, -1 unknown [10 GB] */
	int begin_errno; /* msg_begin() fails with this errno [0: it succeeds] */
	long long write_fail_after; /* msg_write() fails (ENOSPC) past these octets [-1: never] */
	int commit_fail; /* commits fail [0] */
	int record; /* keep the record in rec [0] */
	struct smtp_session *s; /* with record: its output is recorded before each event */
	/* what happened */
	int begun, aborted, committed, open_msgs, lookups, logged, log_lines;
	unsigned long long stored; /* message octets written */
	int broken; /* calls that broke the ops contract: must stay 0 */
	char first_rcpt[128]; /* of the last committed envelope */
	int pending_ok; /* the last commit's outcome, for fake_session_resolve() */
	char pending_id[32];
	struct fake_buf rec;
	/* the ops to hand to smtp_session_new() (arg is this fake) */
	struct smtp_session_ops ops;
};

/* Sets the defaults above and fills f->ops. */
void fake_session_init(struct fake_session *f);

/* Records the output f->s has pending (with record set) and marks it sent. */
void fake_session_drain(struct fake_session *f);

/*
 * As the glue does once the queue has answered: if f->s waits for a commit,
 * reports the last commit's outcome (pending_ok, pending_id). Returns 1 if it did.
 */
int fake_session_resolve(struct fake_session *f);

/* Frees the record (the fake can be initialised again). */
void fake_session_fini(struct fake_session *f);

#endif
