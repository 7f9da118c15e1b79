/*
 * minger_server: the Minger UDP service inside sharemaild. For every address in
 * minger_listen it opens minger_threads SO_REUSEPORT sockets, one per worker
 * thread (after checking that no one else holds the address: SO_REUSEPORT only
 * ever joins our own sockets); each worker reads and answers datagrams in
 * batches (recvmmsg/sendmmsg) through minger_handler. The per-source rate table
 * is per worker (the kernel steers a given source to the same socket); the
 * global rate limit and the replay nonce cache are shared.
 *
 * Ownership: the server borrows the conf and the mailbox index; both must outlive it.
 */
#ifndef SHAREMAIL_MINGER_MINGER_SERVER_H
#define SHAREMAIL_MINGER_MINGER_SERVER_H

#include <stddef.h>

struct conf;
struct mailbox_index;
struct minger_server;

/*
 * Reads the secrets, binds every socket. Returns NULL with a message in err on
 * failure (nothing left open); an address someone else holds (another
 * sharemaild, any socket) is such a failure, named "FILE:LINE: minger_listen
 * HOST:PORT: reason". Does not start threads.
 */
struct minger_server *minger_server_new(const struct conf *c, struct mailbox_index *idx, char *err,
                                        size_t errlen);

/* Starts the worker threads. Returns 0 or -1 (err set). */
int minger_server_start(struct minger_server *s, char *err, size_t errlen);

/* Stops the workers (waits for them), closes the sockets, frees s (NULL is a no-op). */
void minger_server_free(struct minger_server *s);

#endif
