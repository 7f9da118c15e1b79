/*
 * pop_login: the recent POP3 logins, for POP before SMTP (MDaemon's): an account
 * that logged in over POP3 within a window may send mail naming itself in MAIL
 * FROM without AUTH. The POP3 server notes every successful login; the SMTP policy
 * asks whether the account named in MAIL FROM logged in recently.
 *
 * In memory only (a restart forgets the logins: clients log in again, as with
 * MDaemon), bounded: at most max entries; noting a new account when the table is
 * full forgets the account whose last login is the oldest. Keys are account keys
 * (mailaddr_key: "local@domain", lower case), compared exactly. Times are the
 * caller's clock in seconds (a fake clock in tests).
 *
 * Ownership: the table copies the keys it keeps. Thread-safe: one mutex, held for
 * a hash probe; the POP3 server and the SMTP sessions may call from any thread.
 */
#ifndef SHAREMAIL_DIRECTORY_POP_LOGIN_H
#define SHAREMAIL_DIRECTORY_POP_LOGIN_H

#include <stddef.h>
#include <stdint.h>

#define POP_LOGIN_DEFAULT_MAX 65536
#define POP_LOGIN_KEY_MAX 320 /* RFC 5321 4.5.3.1: 64 + '@' + 255 */

struct pop_login;

/* A table of at most max accounts (max >= 1). Returns NULL when out of memory. */
struct pop_login *pop_login_new(size_t max);

/* Releases the table. NULL is a no-op. */
void pop_login_free(struct pop_login *t);

/*
 * Records that the account key logged in over POP3 at time now (later notes
 * replace earlier ones). A key longer than POP_LOGIN_KEY_MAX, or empty, is not
 * recorded (no account has one). Returns 0, or -1 when not recorded.
 */
int pop_login_note(struct pop_login *t, const char *key, int64_t now);

/*
 * 1 if the account key's last login is within window seconds of now
 * (|now - login| <= window, so a clock stepped back does not break it), else 0:
 * never noted, forgotten, or too old. t NULL: 0.
 */
int pop_login_recent(struct pop_login *t, const char *key, int64_t now, int64_t window);

/* The number of accounts held (for tests and the status output). */
size_t pop_login_count(struct pop_login *t);

#endif
