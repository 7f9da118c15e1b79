/*
 * screen_key: what the Dynamic Screen counts and blocks: a client's IPv4 address,
 * or the /64 of its IPv6 address (one IPv6 host usually holds a whole /64, RFC
 * 4291 2.5.1, so an attacker cannot step around a screen inside it). An
 * IPv4-mapped IPv6 peer (::ffff:a.b.c.d, a dual-stack socket's view) is its IPv4
 * address. Pure: no I/O, no allocation.
 *
 * Text form (screen.db, `sharemail screen`): "192.0.2.7" or "2001:db8:1:2::/64".
 */
#ifndef SHAREMAIL_SCREEN_SCREEN_KEY_H
#define SHAREMAIL_SCREEN_SCREEN_KEY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* IPv4 as ::ffff:a.b.c.d; IPv6 as its first 8 octets, the last 8 zero. */
struct screen_key {
	uint8_t b[16];
};

/* Longest text form, with its NUL (an IPv6 /64 such as "2001:db8:ffff:ffff::/64", and more than enough). */
#define SCREEN_KEY_TEXT_MAX 48

/*
 * The key of a peer address (AF_INET or AF_INET6). Returns 0, or -1 for another
 * family (no key: such a peer is never counted nor screened).
 */
int screen_key_from_sockaddr(const struct sockaddr *sa, struct screen_key *out);

/*
 * Parses an administrator's address: an IPv4 literal, an IPv6 literal (any host
 * of the /64 stands for the /64) or "IPV6/64". Any other prefix, a name or junk
 * is refused. Returns 0 or -1.
 */
int screen_key_parse(const char *s, struct screen_key *out);

/* Writes the text form into out (SCREEN_KEY_TEXT_MAX octets suffice); always NUL-ends. */
void screen_key_format(const struct screen_key *k, char *out, size_t outsz);

/* 1 when the key is an IPv4 address, 0 when an IPv6 /64. */
int screen_key_is_v4(const struct screen_key *k);

/*
 * A keyed hash of the key (not cryptographic: a random seed keeps an attacker
 * from aiming many keys at one slot of a table).
 */
uint64_t screen_key_hash(const struct screen_key *k, uint64_t seed);

#endif
