/*
 * fake_pop3_ops: the one fake of the POP3 session's ops (pop3d/pop3_session.h),
 * shared by the POP3 transcript test, the session unit test and the session
 * fuzzer. It holds an in-memory maildrop and one account, answers each request
 * when fake_pop3_settle() is called (as the glue would, later, never from inside
 * the op), and records what the session asked in "## " lines (the password is
 * never recorded).
 *
 * Ownership: everything is the struct fake_pop3's; fake_pop3_fini frees it.
 */
#ifndef SHAREMAIL_TEST_FAKE_POP3_OPS_H
#define SHAREMAIL_TEST_FAKE_POP3_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "pop3d/pop3_session.h"

#define FAKE_POP3_MSGS_MAX 64

struct fake_pop3_msg {
	char uid[POP3_UID_MAX + 1];
	char *text; /* as stored (LF line ends) */
	size_t len;
	int gone; /* msg_open fails (removed behind our back) */
	long fail_after; /* msg_read fails after this many octets; -1: never */
	int removed; /* UPDATE removed it */
};

struct fake_pop3 {
	struct pop3_session_ops ops;
	struct pop3_session *s;
	/* the account (identity and password as they must be sent) */
	char identity[256], password[256], account[256];
	/* behaviour */
	int auth_tempfail, open_in_use, open_tempfail, commit_fail, tls, tls_fail;
	int read_chunk; /* octets per msg_read (0: as asked) */
	/* the maildrop */
	struct fake_pop3_msg msgs[FAKE_POP3_MSGS_MAX];
	size_t n_msgs;
	long reading; /* the open message, -1: none */
	size_t read_off;
	/* the open request to answer */
	uint64_t req;
	enum pop3_request_kind kind;
	int auth_ok;
	size_t commit_n;
	size_t commit_idx[FAKE_POP3_MSGS_MAX];
	int locked; /* the maildrop lock is held */
	int discard_input; /* STLS: the glue throws away what was not read */
	/* the record */
	char *rec;
	size_t rec_len, rec_cap;
};

/* Sets up f with no account, no message, and the ops pointing at f. */
void fake_pop3_init(struct fake_pop3 *f);
/* Frees the messages and the record (not the session). */
void fake_pop3_fini(struct fake_pop3 *f);
/* Adds a message (copied). Returns 0, or -1 when full. */
int fake_pop3_add(struct fake_pop3 *f, const char *uid, const char *text, size_t len);
/* Answers the request open, if any (auth, open, commit, TLS). Returns 1 if it answered one. */
int fake_pop3_settle(struct fake_pop3 *f);
/* Appends a "## " line to the record. */
void fake_pop3_note(struct fake_pop3 *f, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Appends raw octets to the record (the session's output). */
void fake_pop3_record(struct fake_pop3 *f, const char *p, size_t n);
/* Takes all of the session's output into the record. */
void fake_pop3_drain(struct fake_pop3 *f);

#endif
