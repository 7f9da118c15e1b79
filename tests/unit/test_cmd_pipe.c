/*
 * Unit tests for proto/cmd_pipe: expectations in order with the output offset
 * of their command, serials that change with each new head, full buffers
 * refused whole, the glue's partial writes, and the wipe.
 */
#include <string.h>

#include "harness.h"
#include "proto/cmd_pipe.h"

TEST(order_and_offsets)
{
	struct cmd_pipe p;
	CHECK(cmd_pipe_init(&p, 64, 3) == 0);
	CHECK(cmd_pipe_head(&p) == NULL && !cmd_pipe_head_sent(&p));
	CHECK(cmd_pipe_expect(&p, 7, 0) == 0); /* a greeting: end 0, answerable at once */
	CHECK(cmd_pipe_head_sent(&p));
	CHECK(cmd_pipe_send(&p, "RETR 4", 6, 1, 4) == 0);
	CHECK(cmd_pipe_send(&p, "DELE 4", 6, 2, 4) == 0);
	CHECK(p.out_len == 16 && memcmp(p.out, "RETR 4\r\nDELE 4\r\n", 16) == 0);
	/* the FIFO is full: nothing is written */
	CHECK(cmd_pipe_send(&p, "QUIT", 4, 3, 0) == -1 && p.out_len == 16);
	struct cmd_expect g = cmd_pipe_pop(&p);
	CHECK(g.kind == 7 && g.end == 0);
	const struct cmd_expect *h = cmd_pipe_head(&p);
	unsigned long seq = h->seq;
	CHECK(h->kind == 1 && h->arg == 4 && h->end == 8);
	CHECK(!cmd_pipe_head_sent(&p)); /* a reply now would come before RETR left */
	cmd_pipe_output_done(&p, 5, 0);
	CHECK(!cmd_pipe_head_sent(&p) && p.out_sent == 5 && p.out_len == 11);
	cmd_pipe_output_done(&p, 3, 0);
	CHECK(cmd_pipe_head_sent(&p) && memcmp(p.out, "DELE 4\r\n", 8) == 0);
	cmd_pipe_pop(&p);
	CHECK(cmd_pipe_head(&p)->seq != seq && cmd_pipe_head(&p)->end == 16);
	/* the ring wraps */
	CHECK(cmd_pipe_send(&p, "QUIT", 4, 3, 0) == 0 && cmd_pipe_send(&p, "NOOP", 4, 4, 0) == 0);
	cmd_pipe_pop(&p);
	CHECK(cmd_pipe_pop(&p).kind == 3 && cmd_pipe_pop(&p).kind == 4 && p.fifo_n == 0);
	cmd_pipe_release(&p, 0);
}

TEST(room_and_clear)
{
	struct cmd_pipe p;
	CHECK(cmd_pipe_init(&p, 10, 4) == 0);
	CHECK(cmd_pipe_send(&p, "USER abcd", 9, 0, 0) == -1 && p.out_len == 0 && p.fifo_n == 0);
	CHECK(cmd_pipe_send(&p, "USER abc", 8, 0, 0) == 0 && cmd_pipe_room(&p) == 0);
	CHECK(cmd_pipe_append(&p, "x", 1) == -1);
	cmd_pipe_output_done(&p, 99, 1); /* cut to what there is */
	CHECK(p.out_len == 0 && p.out_sent == 10 && p.out_total == 10);
	CHECK(cmd_pipe_append(&p, "PASS secret", 9) == 0);
	cmd_pipe_output_done(&p, 4, 1);
	/* the wiped tail: the octets the move left behind are zeros */
	CHECK(memcmp(p.out, " secr", 5) == 0 && memcmp(p.out + 5, "\0\0\0\0", 4) == 0);
	cmd_pipe_clear(&p);
	CHECK(p.out_len == 0 && p.fifo_n == 0 && cmd_pipe_head(&p) == NULL);
	cmd_pipe_release(&p, 1);
	cmd_pipe_release(&p, 1); /* twice: a no-op */
}

TEST_MAIN(T(order_and_offsets), T(room_and_clear))
