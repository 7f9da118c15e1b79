/*
 * fuzz_smtp_client: the SMTP client state machine against a fuzzed server.
 * Input: one flags octet (TLS mode, handshake outcome, small buffers and
 * limits, which messages), one octet choosing the chunk size of the reads,
 * then the server's octets; 0xFF followed by an octet is a glue event instead
 * ('t' timeout, 'c' closed, 'h' hold the output until the next event, 0xFF a
 * literal 0xFF). Up to three messages are offered at READY, their bodies fed
 * at WANT_BODY (dots, long lines, bare LF and CR included).
 *
 * Invariants (a violation traps): the output never exceeds out_max and never
 * holds a CR or LF outside CRLF; every message given gets exactly one
 * MSG_DONE, whose every recipient is decided and whose statuses agree with
 * their replies' classes; texts are printable; after the peer closes the
 * client is done; and it never asks for a body with no message under way.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

struct fz {
	struct smtp_client *c;
	struct smtp_client_conf conf;
	unsigned flags;
	int hold; /* leave the output unsent until the next event */
	int prev_cr; /* the last octet sent was a CR */
	int given, done, under_way, in_body;
	size_t body_pos;
};

static const struct smtp_client_rcpt rcpts[] = {
        {"a@example.org", "rfc822;a+x@example.org", ESMTP_NOTIFY_SUCCESS},
        {"b@example.org", NULL, ESMTP_NOTIFY_NEVER},
        {"\"q u\"@example.org", "bad", 0},
        {"c\x01@example.org", NULL, 0},
        {"d@example.org", NULL, ESMTP_NOTIFY_FAILURE | ESMTP_NOTIFY_DELAY},
};

static const char body0[] = "Subject: x\r\n\r\n.\r\n..\r\n.x\r\nend";
static const char body1[] = "a\nb\r.\r\r\nc\xff\x80\r\n";
static char body2[1200];

static const struct smtp_client_msg msgs[] = {
        {.mail_from = "s@example.net", .rcpts = rcpts, .n_rcpts = 1, .size = 100},
        {.mail_from = "",
         .rcpts = rcpts,
         .n_rcpts = 5,
         .size = 5000,
         .eight_bit = 1,
         .ret = ESMTP_RET_HDRS,
         .envid = "E+1"},
        {.mail_from = "s@example.net", .rcpts = rcpts + 1, .n_rcpts = 2, .size = 1200},
};
static const char *const bodies[] = {body0, body1, body2};
static const size_t body_lens[] = {sizeof body0 - 1, sizeof body1 - 1, sizeof body2};

static void check_text(const char *t)
{
	require(strlen(t) <= SMTP_CLIENT_TEXT_MAX);
	for (; *t; t++)
		require((unsigned char)*t >= 0x20 && (unsigned char)*t <= 0x7e);
}

static int reply_class(const struct smtp_client_reply *r)
{
	if (r->code)
		return r->code / 100;
	require(r->enh[0] == '4' || r->enh[0] == '5');
	return r->enh[0] - '0';
}

static void check_result(struct fz *f)
{
	const struct smtp_client_result *res = smtp_client_result(f->c);
	const struct smtp_client_msg *m = &msgs[f->under_way];
	int delivered = 0, deferred = 0;
	require(res != NULL && res->n_rcpts == m->n_rcpts);
	for (size_t i = 0; i < res->n_rcpts; i++) {
		const struct smtp_client_rcpt_result *r = &res->rcpts[i];
		int cls = reply_class(&r->reply);
		check_text(r->reply.text);
		switch (r->status) {
		case SMTP_CLIENT_RCPT_DELIVERED: require(cls == 2); break;
		case SMTP_CLIENT_RCPT_DEFERRED: require(cls == 4); break;
		case SMTP_CLIENT_RCPT_FAILED: require(cls == 5); break;
		default: require(0);
		}
		delivered |= r->status == SMTP_CLIENT_RCPT_DELIVERED;
		deferred |= r->status == SMTP_CLIENT_RCPT_DEFERRED;
	}
	require(res->status == (delivered  ? SMTP_CLIENT_MSG_SENT
	                        : deferred ? SMTP_CLIENT_MSG_DEFERRED
	                                   : SMTP_CLIENT_MSG_FAILED));
	check_text(res->reply.text);
	f->done++;
	f->under_way = -1;
	f->in_body = 0;
}

static void drain_output(struct fz *f)
{
	size_t n;
	const char *o = smtp_client_output(f->c, &n);
	require(n <= f->conf.out_max);
	if (f->hold)
		return;
	for (size_t i = 0; i < n; i++) {
		require(o[i] != '\n' || f->prev_cr);
		require(!f->prev_cr || o[i] == '\n');
		f->prev_cr = o[i] == '\r';
	}
	smtp_client_output_done(f->c, n);
}

static void feed_body(struct fz *f)
{
	const char *b = bodies[f->under_way];
	size_t len = body_lens[f->under_way];
	int stuck = 0;
	while (f->in_body && f->body_pos < len && stuck < 2) {
		size_t used = smtp_client_body(f->c, b + f->body_pos, len - f->body_pos);
		f->body_pos += used;
		drain_output(f);
		stuck = used ? 0 : stuck + 1;
	}
	if (f->in_body && f->body_pos == len && !f->hold) {
		require(smtp_client_body_end(f->c) == 0);
		f->in_body = 0;
	}
}

static void on_ready(struct fz *f)
{
	int which = f->given + (int)((f->flags >> 5) & 1);
	if (which < 3 && f->given < 3) {
		require(smtp_client_message(f->c, &msgs[which]) == 0);
		f->given++;
		f->under_way = which;
	} else {
		require(smtp_client_quit(f->c) == 0);
	}
}

static void settle(struct fz *f)
{
	for (int busy = 1; busy;) {
		enum smtp_client_action a = smtp_client_next_action(f->c);
		busy = a != SMTP_CLIENT_ACT_NONE;
		switch (a) {
		case SMTP_CLIENT_ACT_MSG_DONE: check_result(f); break;
		case SMTP_CLIENT_ACT_START_TLS:
			drain_output(f);
			smtp_client_tls_done(f->c, !(f->flags & 0x04));
			break;
		case SMTP_CLIENT_ACT_WANT_BODY:
			require(f->under_way >= 0);
			f->in_body = 1;
			f->body_pos = 0;
			break;
		case SMTP_CLIENT_ACT_READY: on_ready(f); break;
		default: break;
		}
		drain_output(f);
		if (f->in_body)
			feed_body(f);
	}
}

static void event(struct fz *f, uint8_t ev)
{
	f->hold = 0;
	if (ev == 't')
		smtp_client_timeout(f->c);
	else if (ev == 'c')
		smtp_client_closed(f->c);
	settle(f);
	if (ev == 'h')
		f->hold = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	memset(body2, 'y', sizeof body2);
	body2[0] = '.';
	memcpy(body2 + 1000, "\r\n.\r\n", 5);
	struct fz f = {.flags = data[0], .under_way = -1};
	smtp_client_conf_defaults(&f.conf);
	f.conf.helo_name = "client.example.net";
	f.conf.tls = (enum smtp_client_tls)(f.flags & 0x03) % 3;
	if (f.flags & 0x08)
		f.conf.out_max = SMTP_CLIENT_OUT_MIN;
	if (f.flags & 0x10) {
		f.conf.reply_line_max = 512;
		f.conf.reply_lines_max = 3;
	}
	f.c = smtp_client_new(&f.conf);
	require(f.c != NULL);
	size_t chunk = data[1] == 0 ? 1 : data[1];
	settle(&f);
	if (!(f.flags & 0x80)) {
		smtp_client_connected(f.c);
		settle(&f);
	}
	size_t pos = 2;
	while (pos < size && !smtp_client_done(f.c)) {
		if (data[pos] == 0xff) {
			if (pos + 1 < size && data[pos + 1] != 0xff) {
				event(&f, data[pos + 1]);
			} else { /* "\xff\xff" (or a last 0xFF): the octet itself */
				smtp_client_input(f.c, "\xff", 1);
				settle(&f);
			}
			pos += 2;
			continue;
		}
		size_t n = 0;
		while (pos + n < size && n < chunk && data[pos + n] != 0xff)
			n++;
		smtp_client_input(f.c, (const char *)data + pos, n);
		pos += n;
		settle(&f);
	}
	/* Whatever state it is in, the peer closing ends it and reports everything. */
	f.hold = 0;
	smtp_client_closed(f.c);
	settle(&f);
	require(smtp_client_done(f.c));
	require(f.done == f.given && f.under_way == -1);
	require(smtp_client_next_action(f.c) == SMTP_CLIENT_ACT_NONE);
	smtp_client_free(f.c);
	return 0;
}
