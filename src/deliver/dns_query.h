/*
 * dns_query: one DNS question (here: MX) asked of recursive name servers on the
 * caller's event_base, for what libevent 2.1's evdns cannot ask (its API has
 * A, AAAA and PTR lookups only: evdns_base_resolve_ipv4/ipv6/reverse).
 *
 * Each attempt uses a fresh connected UDP socket (a new random source port) and
 * a fresh random id (evutil_secure_rng), to the next server in turn; a reply
 * counts only if it comes from that server (the socket is connected) and
 * echoes our id and question (dns_msg_is_reply_to), anything else is ignored.
 * A truncated reply (TC) is asked again over TCP to the same server (RFC 7766),
 * within the same attempt. An error RCODE (SERVFAIL, REFUSED, ...) or a timeout
 * moves to the next attempt. Queries carry no EDNS; replies are bounded: 4096
 * octets read over UDP (512 is the rule), 65535 over TCP.
 *
 * Ownership: the caller owns the query until its callback runs or it cancels
 * it; the callback runs at most once, never from dns_query_start, and the
 * query is freed right after it returns. The servers array is copied.
 */
#ifndef SHAREMAIL_DELIVER_DNS_QUERY_H
#define SHAREMAIL_DELIVER_DNS_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "proto/dns_msg.h"
#include "util/netaddr.h"

struct event_base;
struct dns_query;

enum dns_query_status {
	DNS_QUERY_ANSWER, /* msg: a reply with RCODE NOERROR or NXDOMAIN */
	DNS_QUERY_SERVER_ERROR, /* every reply had an error RCODE; rcode is the last one */
	DNS_QUERY_TIMEOUT, /* no usable reply in any attempt */
	DNS_QUERY_LOCAL_ERROR, /* no attempt could be sent (sockets), or a bad name */
};

/* msg (and its buffer) is valid only during the call; NULL unless DNS_QUERY_ANSWER. */
typedef void (*dns_query_cb)(void *arg, enum dns_query_status status, int rcode,
                             const struct dns_msg *msg);

/*
 * Starts asking servers[0..nservers) (nservers >= 1) for name and qtype:
 * `attempts` tries (at least 1), each given timeout_ms (at least 1). Returns
 * NULL only when memory is short; every other failure is reported through cb.
 */
struct dns_query *dns_query_start(struct event_base *base, const struct netaddr *servers,
                                  size_t nservers, unsigned timeout_ms, unsigned attempts,
                                  const char *name, uint16_t qtype, dns_query_cb cb, void *arg);

/* Stops q: no callback afterwards, sockets closed, q freed. NULL is a no-op. */
void dns_query_cancel(struct dns_query *q);

#endif
