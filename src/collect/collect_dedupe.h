/*
 * collect_dedupe: the de-duplication key of a collected message (the seed's
 * "DomainPOP's de-dupe feature", ../shared/seeds/ports-size-domainpop.txt). An
 * ISP mailbox that receives one message for three local users often holds three
 * copies of it, and routing by To/Cc gives each copy to all three: the key says
 * two copies are one message, so each recipient mailbox gets one. The collector
 * delivers a copy to a recipient only when (key, recipient) is not yet in
 * collect_state (collect_state.h), and records it there with the UIDL.
 * Pure: no I/O, no allocation.
 *
 * Modes (collect_dedupe):
 *  - COLLECT_DEDUPE_MESSAGE_ID (default): the Message-ID field (RFC 5322 3.6.4)
 *    with comments, white space and folding removed and its one pair of angle
 *    brackets taken off, octets otherwise exact. Case is kept, of the domain
 *    part too: the copies an ISP holds were made from one message, so their
 *    ids are byte-identical, and folding could only merge two different
 *    messages. A message without a Message-ID field, with an empty one, with
 *    two Message-ID fields (which one is the message's?), or with one longer
 *    than COLLECT_DEDUPE_ID_MAX has no key: it is never deduplicated (a
 *    duplicate is better than a loss). Key: "m:" and the id.
 *  - COLLECT_DEDUPE_DATE: the Date field (RFC 5322 3.6.1) read as UTC seconds
 *    (proto/rfc5322_date.h): the seed's warning holds, two different messages
 *    written in the same second (and so with the same Date) are taken for one,
 *    and the second is not delivered to a recipient who got the first. No or an
 *    unreadable or a repeated Date field: no key. Key: "d:" and the decimal
 *    seconds.
 *  - COLLECT_DEDUPE_NONE: no key, ever.
 * The prefix keeps keys of the two modes apart when the administrator switches.
 */
#ifndef SHAREMAIL_COLLECT_COLLECT_DEDUPE_H
#define SHAREMAIL_COLLECT_COLLECT_DEDUPE_H

#include <stddef.h>

#define COLLECT_DEDUPE_ID_MAX 500 /* octets of a normalized Message-ID that get a key */
#define COLLECT_DEDUPE_KEY_MAX (2 + COLLECT_DEDUPE_ID_MAX + 1) /* a key and its NUL */

enum collect_dedupe_mode {
	COLLECT_DEDUPE_NONE = 0,
	COLLECT_DEDUPE_MESSAGE_ID,
	COLLECT_DEDUPE_DATE,
};

/*
 * Parses a collect_dedupe value ("message-id", "date", "none", ASCII case-
 * insensitive) into *out. Returns 0, or -1 for anything else.
 */
int collect_dedupe_mode_parse(const char *s, enum collect_dedupe_mode *out);

/* The mode's config word ("message-id", "date", "none"). */
const char *collect_dedupe_mode_name(enum collect_dedupe_mode mode);

/*
 * Writes the key of the message whose header section is hdr[0..len) (CRLF
 * lines; what follows the empty line is not read) into out[0..outsz),
 * NUL-terminated. Returns its length, 0 when the message has no key (see the
 * modes above: never deduplicate it; out is then ""), or -1 when outsz is under
 * COLLECT_DEDUPE_KEY_MAX.
 */
int collect_dedupe_key(enum collect_dedupe_mode mode, const char *hdr, size_t len, char *out,
                       size_t outsz);

#endif
