/*
 * fake_session_ops: THE fake world of an SMTP session (struct smtp_session_ops),
 * shared by test_transcripts, test_smtp_session and fuzz_smtp_session: a small
 * directory, a verifier over it (as verify/verify.c: a local domain is looked up,
 * anything else is VERIFY_FOREIGN) that answers now or later, a queue in memory
 * that fails on demand, a fixed clock, and a record of every call as "## " lines
 * (the format of tests/transcripts/NAME.ref). Queue ids are Q1, Q2, ... in the
 * order messages are begun.
 *
 * The directory (lookups fold ASCII case): alice@example.com, bob@example.org,
 * "a b"@example.com and list@example.com can receive; members@example.com is a
 * members-only list whose one member is alice@example.com; off@example.com is
 * disabled; full@example.com is over quota; busy@example.com answers "try
 * later"; anything else is not found. Answers set with fake_session_answer()
 * (other servers' answers: a peer, a gateway) come before the directory.
 *
 * Record lines of the verifier: "## lookup KEY" (the directory was asked),
 * "## answer KEY STATUS TEXT" (a set answer was given), "## ask rcpt|sender
 * id=N KEY" (answered later), "## done id=N" (the answer handed to the
 * session), "## cancel id=N" (the session cancelled it).
 *
 * AUTH (with `auth` set): alice@example.com's password is "secret" (her addresses:
 * alice@example.com and her alias al@example.com); busy@example.com's check
 * "cannot be made now" (TEMPFAIL); everything else fails. Recorded as "## auth
 * id=N IDENTITY" (never the password; "-" for invalid credentials), answered by
 * fake_session_resolve() like a commit. The screen (with `screen` set) records
 * "## screen WHAT" and says "screened" on the screen-th note. POP before SMTP's
 * question is answered from the real directory/pop_login table set in
 * `pop_logins` (NULL: no login known) on the fake clock, and recorded as "## pop
 * KEY recent|stale".
 *
 * Ownership: a struct fake_session owns its record (fake_session_fini frees it)
 * and the messages it hands out; it borrows the session set in `s`.
 */
#ifndef SHAREMAIL_TESTS_FAKE_SESSION_OPS_H
#define SHAREMAIL_TESTS_FAKE_SESSION_OPS_H

#include <stddef.h>

#include "smtpd/smtp_session.h"

/* Requests the fake verifier holds open at most (the session's bound, and some). */
#define FAKE_OPEN_MAX (SMTP_SESSION_PIPELINE_MAX + 16)
/* Answers fake_session_answer() can set. */
#define FAKE_ANSWERS_MAX 32

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

struct fake_open {
	uint64_t id;
	enum smtp_request_kind kind; /* RCPT or SENDER */
	char mailbox[600];
	char sender[600];
};

struct fake_answer {
	char key[300]; /* the mailbox, lower case */
	struct verify_answer a;
};

struct fake_session {
	/* settings: the test sets them after fake_session_init() (defaults in brackets) */
	const struct conf *conf; /* local_domains for "is it ours" [NULL: example.com, .org] */
	int verify_later; /* rcpt_verify and sender_verify answer later (return 1) [0] */
	long long free_space; /* what free_space() answers, -1 unknown [10 GB] */
	int begin_errno; /* msg_begin() fails with this errno [0: it succeeds] */
	long long write_fail_after; /* msg_write() fails (ENOSPC) past these octets [-1: never] */
	int commit_fail; /* commits fail [0] */
	int record; /* keep the record in rec [0] */
	int auth; /* give the session an auth_check op [0] */
	int screen; /* give it a screen_note op; the screen-th note screens [0: no op] */
	struct pop_login *pop_logins; /* POP3 logins for pop_recent, borrowed [NULL: none] */
	struct smtp_session *s; /* with record: its output is recorded before each event */
	/* what happened */
	int begun, aborted, committed, open_msgs, lookups, logged, log_lines;
	int verifies, cancels; /* rcpt_verify + sender_verify calls; request_cancel calls */
	size_t max_open; /* the most requests open at once */
	struct fake_open open[FAKE_OPEN_MAX]; /* verify requests open, oldest first */
	size_t n_open;
	int auth_open; /* an AUTH check is waiting for fake_session_resolve() */
	uint64_t auth_id;
	enum smtp_auth_status auth_status;
	int auth_checks, screen_notes;
	int commit_open; /* a commit is waiting for fake_session_resolve() */
	uint64_t commit_id;
	struct fake_answer answers[FAKE_ANSWERS_MAX];
	size_t n_answers;
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

/* After setting auth or screen: gives f->ops the matching ops (or takes them away). */
void fake_session_setup(struct fake_session *f);

/* Records the output f->s has pending (with record set) and marks it sent. */
void fake_session_drain(struct fake_session *f);

/*
 * As the glue does once the queue has answered: if a commit is open, reports
 * the last commit's outcome (pending_ok, pending_id); else if an AUTH check is
 * open, its outcome. Returns 1 if it did.
 */
int fake_session_resolve(struct fake_session *f);

/*
 * Sets the verifier's answer for mailbox (any case): status with text as its
 * route (VERIFY_REMOTE) or reason (the others); servers_asked is 1 (another
 * server answered). Returns 0, -1 when the table is full.
 */
int fake_session_answer(struct fake_session *f, const char *mailbox, enum verify_status status,
                        const char *text);

/*
 * Answers open request id (as the glue does when the verifier calls back): its
 * set answer or the directory's, handed to f->s with smtp_session_rcpt_done()
 * or smtp_session_sender_done(). Returns 0, -1 when id is not open.
 */
int fake_session_done(struct fake_session *f, uint64_t id);

/* Frees the record (the fake can be initialised again). */
void fake_session_fini(struct fake_session *f);

#endif
