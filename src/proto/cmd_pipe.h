/*
 * cmd_pipe: the command side of a pipelining client state machine (the SMTP
 * client of delivery, the POP3 client of the collector): the output buffer the
 * glue drains, and the FIFO of expectations, one per command awaiting its
 * reply, in the order the replies must come. Each expectation remembers the
 * output offset just past its command (`end`), so the client can tell a reply
 * that starts before its command has even left (an injection, a desynchronised
 * peer) from a real answer, and a serial (`seq`) that changes with every new
 * head, so a deadline is re-armed exactly when the wait changes. No I/O, no
 * clock.
 *
 * Ownership: struct cmd_pipe sits inside its client, which calls
 * cmd_pipe_init() and cmd_pipe_release(); the buffers are the pipe's.
 */
#ifndef SHAREMAIL_PROTO_CMD_PIPE_H
#define SHAREMAIL_PROTO_CMD_PIPE_H

#include <stddef.h>
#include <stdint.h>

struct cmd_expect {
	uint64_t end; /* output offset just past the command's octets */
	unsigned long seq; /* unique per expectation (deadline re-arming) */
	int kind; /* the client's own enum */
	uint64_t arg; /* the client's: a message number, a recipient index */
};

struct cmd_pipe {
	char *out; /* out[0..out_len): produced, not yet handed to the glue */
	size_t out_len, out_max;
	uint64_t out_total, out_sent; /* octets produced / handed to the glue, ever */
	struct cmd_expect *fifo; /* a ring of fifo_cap */
	size_t fifo_cap, fifo_head, fifo_n;
	unsigned long seq;
};

/* An empty pipe with out_max octets of output and room for fifo_cap expectations. 0 or -1 (memory). */
int cmd_pipe_init(struct cmd_pipe *p, size_t out_max, size_t fifo_cap);

/* Frees the buffers (wipe: the output is cleansed first: it may hold a password). */
void cmd_pipe_release(struct cmd_pipe *p, int wipe);

/* The oldest expectation (the reply due next), or NULL when none is open. */
const struct cmd_expect *cmd_pipe_head(const struct cmd_pipe *p);

/* 1 when there is a head and its command has left (the peer may be answering it). */
int cmd_pipe_head_sent(const struct cmd_pipe *p);

/*
 * Adds an expectation for what was produced so far (end = out_total: 0 for a
 * greeting, which the peer may send at once). 0, or -1 when the FIFO is full.
 */
int cmd_pipe_expect(struct cmd_pipe *p, int kind, uint64_t arg);

/* Takes the head off (there must be one) and returns it. */
struct cmd_expect cmd_pipe_pop(struct cmd_pipe *p);

/* Octets of output still free. */
size_t cmd_pipe_room(const struct cmd_pipe *p);

/* Appends s[0..n) to the output. 0, or -1 (nothing written) when it does not fit. */
int cmd_pipe_append(struct cmd_pipe *p, const char *s, size_t n);

/*
 * A command line: line[0..n) and CRLF, and its expectation. 0, or -1 with
 * nothing written when the output or the FIFO is full.
 */
int cmd_pipe_send(struct cmd_pipe *p, const char *line, size_t n, int kind, uint64_t arg);

/*
 * The glue handed the first n octets of the output on (n is cut to what there
 * is): they leave the buffer (wipe: cleansed, and the copies the move leaves).
 */
void cmd_pipe_output_done(struct cmd_pipe *p, size_t n, int wipe);

/* Drops all output and every expectation (the connection is gone). */
void cmd_pipe_clear(struct cmd_pipe *p);

#endif
