/*
 * lookup: THE recipient lookup ("one mailbox truth", DESIGN.md). The Minger server
 * and the SMTP RCPT check call mailbox_lookup() and nothing else (through a
 * lookup_fn), so what Minger says exists is exactly what RCPT accepts.
 *
 * Results are three-valued: found / not found / try later. A directory that cannot
 * be read answers LOOKUP_TEMPFAIL, never LOOKUP_NOTFOUND.
 *
 * Lookups are served from an in-memory index (verify/mailbox_index.h) built from
 * the directory at start-up and kept current from the directory's change log, so
 * one lookup costs a hash probe, not a SQLite query.
 */
#ifndef SHAREMAIL_VERIFY_LOOKUP_H
#define SHAREMAIL_VERIFY_LOOKUP_H

#include <stddef.h>

enum lookup_result {
	LOOKUP_FOUND = 0,
	LOOKUP_NOTFOUND,
	LOOKUP_TEMPFAIL,
};

enum lookup_kind {
	LOOKUP_KIND_NONE = 0,
	LOOKUP_KIND_ACCOUNT,
	LOOKUP_KIND_ALIAS_LOCAL, /* alias whose targets include at least one local address */
	LOOKUP_KIND_ALIAS_FOREIGN, /* alias whose targets are all outside the local domains */
	LOOKUP_KIND_LIST, /* mailing list: always can_receive (members_only says who may post) */
};

/*
 * The answer, with one input: a caller that decides a post (RCPT) sets sender
 * before the call so that a members-only list can say whether the sender may
 * post; every other caller leaves it NULL (zero the struct). Lookups never change
 * sender and set every output field.
 */
struct lookup_answer {
	enum lookup_kind kind;
	int can_receive; /* 1: active; 0: exists but disabled / over quota */
	/*
	 * With can_receive 0: 1 when the mailbox is only full (an over-quota account,
	 * or an alias none of whose local accounts is active and one is over quota),
	 * which passes; 0 when it is disabled.
	 */
	int over_quota;
	/* Kind LIST: 1 when only the list's members may post to it (list add --members-only). */
	int members_only;
	/*
	 * Kind LIST with sender set: 1 when the sender is a member (compared by
	 * mailaddr_key(), as the directory stores members); 0 otherwise, and always
	 * for the null sender <>.
	 */
	int sender_member;
	/*
	 * In: the envelope sender (MAIL FROM's mailbox, sender[0..sender_len); "" with
	 * length 0 for <>), or NULL when nobody posts (Minger, VRFY).
	 */
	const char *sender;
	size_t sender_len;
};

/*
 * THE lookup as a services' callback: the Minger handler and the SMTP session are
 * handed one (mailbox_lookup() over the daemon's index, a fake in tests), with
 * mailbox_lookup()'s contract. It must be safe on the caller's thread.
 */
typedef enum lookup_result (*lookup_fn)(void *arg, const char *mailbox, size_t len,
                                        struct lookup_answer *out);

struct mailbox_index;

/*
 * Looks up one mailbox (as written, any case). Aliases are followed (up to 8
 * levels, a loop counts as not found): an alias can receive if any local target
 * can (a mailing list always can), or, for an alias whose targets are all
 * foreign, always (the Minger server decides with minger_foreign_aliases_active
 * whether to answer 5 or 3). A mailing list is found and can receive; with
 * out->sender set, members_only and sender_member say whether that sender may
 * post (the SMTP policy refuses a non-member of a members-only list).
 * Thread-safe: may be called from many threads while another refreshes the index.
 */
enum lookup_result mailbox_lookup(struct mailbox_index *idx, const char *mailbox, size_t len,
                                  struct lookup_answer *out);

/*
 * The same lookup for a caller that already holds the index's read lock
 * (mailbox_index_read_lock()), so a server thread can lock once per batch of
 * datagrams instead of once per address. Never allocates, never touches SQLite.
 */
enum lookup_result mailbox_lookup_locked(struct mailbox_index *idx, const char *mailbox, size_t len,
                                         struct lookup_answer *out);

#endif
