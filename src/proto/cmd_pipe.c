/* cmd_pipe: see cmd_pipe.h. */
#include "proto/cmd_pipe.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

int cmd_pipe_init(struct cmd_pipe *p, size_t out_max, size_t fifo_cap)
{
	memset(p, 0, sizeof *p);
	p->out_max = out_max;
	p->fifo_cap = fifo_cap;
	p->out = malloc(out_max);
	p->fifo = calloc(fifo_cap, sizeof *p->fifo);
	if (!p->out || !p->fifo) {
		cmd_pipe_release(p, 0);
		return -1;
	}
	return 0;
}

void cmd_pipe_release(struct cmd_pipe *p, int wipe)
{
	if (wipe && p->out)
		OPENSSL_cleanse(p->out, p->out_max);
	free(p->out);
	free(p->fifo);
	p->out = NULL;
	p->fifo = NULL;
	p->out_len = 0;
	p->fifo_n = 0;
}

const struct cmd_expect *cmd_pipe_head(const struct cmd_pipe *p)
{
	return p->fifo_n ? &p->fifo[p->fifo_head] : NULL;
}

int cmd_pipe_head_sent(const struct cmd_pipe *p)
{
	const struct cmd_expect *e = cmd_pipe_head(p);
	return e != NULL && e->end <= p->out_sent;
}

int cmd_pipe_expect(struct cmd_pipe *p, int kind, uint64_t arg)
{
	if (p->fifo_n >= p->fifo_cap)
		return -1;
	struct cmd_expect *e = &p->fifo[(p->fifo_head + p->fifo_n) % p->fifo_cap];
	e->end = p->out_total;
	e->seq = ++p->seq;
	e->kind = kind;
	e->arg = arg;
	p->fifo_n++;
	return 0;
}

struct cmd_expect cmd_pipe_pop(struct cmd_pipe *p)
{
	struct cmd_expect e = p->fifo[p->fifo_head];
	p->fifo_head = (p->fifo_head + 1) % p->fifo_cap;
	p->fifo_n--;
	return e;
}

size_t cmd_pipe_room(const struct cmd_pipe *p)
{
	return p->out_max - p->out_len;
}

int cmd_pipe_append(struct cmd_pipe *p, const char *s, size_t n)
{
	if (n > p->out_max - p->out_len)
		return -1;
	memcpy(p->out + p->out_len, s, n);
	p->out_len += n;
	p->out_total += n;
	return 0;
}

int cmd_pipe_send(struct cmd_pipe *p, const char *line, size_t n, int kind, uint64_t arg)
{
	if (n + 2 > p->out_max - p->out_len || p->fifo_n >= p->fifo_cap)
		return -1;
	cmd_pipe_append(p, line, n);
	cmd_pipe_append(p, "\r\n", 2);
	return cmd_pipe_expect(p, kind, arg);
}

void cmd_pipe_output_done(struct cmd_pipe *p, size_t n, int wipe)
{
	if (n > p->out_len)
		n = p->out_len;
	if (wipe)
		OPENSSL_cleanse(p->out, n);
	memmove(p->out, p->out + n, p->out_len - n);
	if (wipe)
		OPENSSL_cleanse(p->out + p->out_len - n, n);
	p->out_len -= n;
	p->out_sent += n;
}

void cmd_pipe_clear(struct cmd_pipe *p)
{
	p->out_len = 0;
	p->fifo_n = 0;
}
