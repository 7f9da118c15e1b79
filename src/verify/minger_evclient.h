/*
 * minger_evclient: the daemon's Minger client on its libevent loop: many queries
 * in flight at once, to many servers, over one unconnected UDP socket per address
 * family. Each query is a minger_slot (the datagrams and reply checks of the
 * blocking client, minger_client.h): sent, retransmitted `retries` times
 * timeout_ms apart, then timed out. A reply is matched by the server's address
 * and port and the byte-exact mailbox (one hash probe), then its mac is checked;
 * anything else is ignored and counted (minger_client_stats_get).
 *
 * Threads: a client belongs to its event loop; every function runs on that
 * loop's thread and callbacks run there, never from inside
 * minger_evclient_query().
 *
 * Ownership: the client owns its queries until their callback has run or they
 * were cancelled; the cfg passed to a query is borrowed and must outlive it.
 */
#ifndef SHAREMAIL_VERIFY_MINGER_EVCLIENT_H
#define SHAREMAIL_VERIFY_MINGER_EVCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "util/netaddr.h"
#include "verify/minger_slot.h"

struct event_base;
struct minger_evclient;
struct minger_evq;

/*
 * A query's outcome, called once: result is a status 0..5, MINGER_RESULT_TIMEOUT
 * or MINGER_RESULT_ERROR (the next attempt could not be built); rtt_us is the
 * time from the last send to the reply (0 without a reply).
 */
typedef void (*minger_evclient_cb)(void *arg, int result, uint64_t rtt_us);

/*
 * Makes a client on base: timeout_ms per attempt (> 0), retries retransmissions
 * (clamped to MINGER_CLIENT_RETRIES_MAX). Opens an IPv4 and (when the host has
 * it) an IPv6 socket on ephemeral ports. NULL with a reason in err.
 */
struct minger_evclient *minger_evclient_new(struct event_base *base, int timeout_ms, int retries,
                                            char *err, size_t errlen);

/* Frees the client; open queries are dropped without callbacks (NULL: no-op). */
void minger_evclient_free(struct minger_evclient *c);

/*
 * Asks server about mailbox[0..len) with cfg (borrowed). The first datagram is
 * sent now. Returns the query, or NULL (no callback will come) when the mailbox
 * cannot be sent, the server's family has no socket, or memory ran out.
 */
struct minger_evq *minger_evclient_query(struct minger_evclient *c, const struct netaddr *server,
                                         const struct minger_slot_cfg *cfg, const char *mailbox,
                                         size_t len, minger_evclient_cb cb, void *arg);

/* Forgets a query: its callback will not run (NULL: no-op). */
void minger_evclient_cancel(struct minger_evq *q);

/* Queries in flight now (for tests and the status line). */
size_t minger_evclient_pending(const struct minger_evclient *c);

#endif
