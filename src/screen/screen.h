/*
 * screen: the Dynamic Screen (ISSUE 9 item 6; MDaemon's "Dynamic Screening"):
 * client addresses that guess passwords, harvest recipients or connect too
 * often are refused at connect (421 4.7.0) for screen_duration. A key is an IPv4
 * address or an IPv6 /64 (screen_key.h).
 *
 * - The list lives in <state_dir>/screen.db (screen_db.h) and, for the event
 *   loop, in memory (screen_blocklist.h): screen_is_blocked() is a hash probe,
 *   never a database call. Screenings the daemon decides are written by one
 *   writer thread; the same thread polls the database's data_version every
 *   SCREEN_POLL_MS and, when `sharemail screen add|del` committed, reads the
 *   list again and hands it to the loop, which takes it at its next probe or
 *   tick: a change made with the tool is in force within SCREEN_POLL_MS plus
 *   one read (well within a second).
 * - Event rules (screen_counter.h), each "COUNT/DURATION": the COUNT-th failed
 *   AUTH, unknown recipient or connection from one key inside DURATION screens it.
 * - screen_exempt and smtp_trusted_networks are never counted nor refused (an
 *   exempt address the tool listed stays listed, and is still let in).
 * - AUTH failures earn growing delays before the 535 (screen_auth_delay_ms()).
 *
 * Threads: every function but screen_open/screen_close/screen_sync is for the
 * event loop's thread alone; the writer thread touches only the database and
 * the hand-over queues (one mutex, never held across a database call). Time is
 * the caller's, in seconds since the epoch (time_wall_s(): tests fake it); the
 * writer thread reads time_wall_s() for its own reads and purges.
 *
 * Memory is bounded: SCREEN_BLOCK_SLOTS screened keys, SCREEN_TRACK_SLOTS keys a
 * rule (less for large COUNTs: screen_counter.h), SCREEN_OPS_MAX writes waiting.
 * Ownership: struct screen owns copies of everything in its config.
 */
#ifndef SHAREMAIL_SCREEN_SCREEN_H
#define SHAREMAIL_SCREEN_SCREEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util/netaddr.h"

struct conf;

#define SCREEN_DB_FILE "screen.db" /* in state_dir */
#define SCREEN_BLOCK_SLOTS 65536
#define SCREEN_TRACK_SLOTS 16384
#define SCREEN_OPS_MAX 4096
#define SCREEN_POLL_MS 250
#define SCREEN_AUTH_DELAY_MAX_MS 8000

enum screen_event {
	SCREEN_EVENT_AUTH_FAILURE, /* screen_auth_failures */
	SCREEN_EVENT_UNKNOWN_RECIPIENT, /* screen_unknown_recipients */
	SCREEN_EVENT_CONNECTION, /* screen_connection_rate */
	SCREEN_EVENT_COUNT
};

/* COUNT/DURATION; count 0: the rule is off. */
struct screen_rule {
	int count;
	int seconds;
};

struct screen_config {
	struct screen_rule rule[SCREEN_EVENT_COUNT];
	int duration; /* seconds a rule's screening lasts */
	const struct netaddr_net *exempt; /* screen_exempt */
	size_t n_exempt;
	const struct netaddr_net *trusted; /* smtp_trusted_networks */
	size_t n_trusted;
};

struct screen;

/* Fills cfg from the configuration (pointers into c: valid while c is). */
void screen_config_from_conf(const struct conf *c, struct screen_config *cfg);

/*
 * Opens (creating) the database at path, loads the live entries at now, and
 * starts the writer thread. Call it before dropping privileges only if state_dir
 * already belongs to the daemon's user (the file is created with our identity).
 * NULL with the reason in err.
 */
struct screen *screen_open(const char *path, const struct screen_config *cfg, int64_t now,
                           char *err, size_t errlen);

/* Writes what is waiting, stops the thread, closes the database (NULL is a no-op). */
void screen_close(struct screen *s);

/*
 * Applies a new configuration (SIGHUP): rules, duration and exempt networks.
 * Counters of a rule whose COUNT or DURATION changed start from zero. Returns 0,
 * or -1 out of memory (the old configuration stays).
 */
int screen_configure(struct screen *s, const struct screen_config *cfg);

/* 1 if the peer is in screen_exempt or smtp_trusted_networks. */
int screen_is_exempt(const struct screen *s, const struct sockaddr *sa);

/*
 * 1 if the peer is screened at now (give it 421 4.7.0 and close), 0 if not, and
 * always 0 for an exempt peer or one that is neither IPv4 nor IPv6.
 */
int screen_is_blocked(struct screen *s, const struct sockaddr *sa, int64_t now);

/*
 * At accept, before any session is spent on the peer: 1 when it is to be
 * refused (the service's "access denied by the Dynamic Screen" and close),
 * because it is screened, or because this connection is the one that reaches
 * screen_connection_rate's COUNT; else 0. Every connection of a peer not
 * screened counts for screen_connection_rate. s NULL: 0.
 */
int screen_admit(struct screen *s, const struct sockaddr *sa, int64_t now);

/*
 * Counts one event of the peer at now. Returns how many of its events of that
 * kind lie inside the rule's DURATION (this one included; 0 when exempt or the
 * rule is off). When that reaches the rule's COUNT the peer is screened for
 * screen_duration (logged once, written to screen.db) and *screened is set to 1
 * (else 0; screened may be NULL): the caller ends the session.
 */
int screen_note(struct screen *s, const struct sockaddr *sa, enum screen_event ev, int64_t now,
                int *screened);

/* Forgets the peer's events of one kind (e.g. its AUTH failures after a success). */
void screen_forget(struct screen *s, const struct sockaddr *sa, enum screen_event ev);

/*
 * Screens the peer until now + seconds (seconds <= 0: screen_duration) for
 * `reason` (a short word: "auth-on-smtp-port"). Returns 1 if it is screened now,
 * 0 if it is exempt or has no key. An existing longer screening is kept.
 */
int screen_block(struct screen *s, const struct sockaddr *sa, int seconds, const char *reason,
                 int64_t now);

/*
 * The daemon's 1 s timer: takes a fresh read of screen.db if the writer thread
 * made one (the tool's changes), frees expired entries (a slice of the table per
 * call), wakes the writer. Never touches the database itself.
 */
void screen_tick(struct screen *s, int64_t now);

/*
 * Waits until the writer thread has written every screening made so far and
 * looked at the database's data_version once more; then applies any fresh read
 * at now. Blocks: for tests and the tool, never on the event loop.
 */
void screen_sync(struct screen *s, int64_t now);

struct screen_stats {
	size_t blocked; /* entries in memory (some may have expired since the last tick) */
	uint64_t evictions; /* live entries or counters pushed out of a full table */
	uint64_t writes_dropped; /* screenings not written: the queue was full */
	uint64_t reloads; /* fresh reads of screen.db taken (the tool's changes) */
};
void screen_get_stats(const struct screen *s, struct screen_stats *out);

/*
 * The delay before the 535 of the peer's n-th AUTH failure inside the window
 * (n from screen_note): 0 for the first, then 1, 2, 4, 8 s, at most
 * SCREEN_AUTH_DELAY_MAX_MS. A password guesser pays seconds per guess; a user who
 * mistyped once does not wait. Pure.
 */
unsigned screen_auth_delay_ms(int n);

/* Short words for screen.db's reason column, by event kind. */
const char *screen_event_reason(enum screen_event ev);

#endif
