/*
 * test_pop3_session: what transcripts show badly. A message far larger than the
 * session's output buffer streams out in bounded pieces, byte-exact (CRLF,
 * stuffing) whatever the read and drain sizes; a multi-line listing larger than
 * the buffer too; input waits while a response streams; free mid-stream closes
 * the message and releases the maildrop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "fake_pop3_ops.h"
#include "harness.h"

static struct conf *conf_plain(void)
{
	struct conf *c = conf_defaults();
	free(c->hostname);
	c->hostname = strdup("pop.example.com");
	c->auth_allow_plaintext = 1;
	return c;
}

/* Logs in as alice: returns 1 when in TRANSACTION. */
static int login(struct fake_pop3 *f)
{
	static const char in[] = "USER alice@example.com\r\nPASS secret\r\n";
	size_t pos = 0;
	for (int i = 0; i < 10 && pos < sizeof in - 1; i++) {
		pos += pop3_session_input(f->s, in + pos, sizeof in - 1 - pos);
		fake_pop3_drain(f);
		fake_pop3_settle(f);
		fake_pop3_drain(f);
	}
	fake_pop3_settle(f);
	fake_pop3_drain(f);
	return f->rec && strstr(f->rec, "+OK 1 messages") != NULL;
}

static void setup(struct fake_pop3 *f, const struct conf *c, const char *msg, size_t len)
{
	fake_pop3_init(f);
	strcpy(f->identity, "alice@example.com");
	strcpy(f->password, "secret");
	strcpy(f->account, "alice@example.com");
	fake_pop3_add(f, "u1", msg, len);
	f->ops.tls_start = NULL;
	f->s = pop3_session_new(c, &f->ops, "192.0.2.1");
	pop3_session_greet(f->s, 0);
	fake_pop3_drain(f);
}

/* A 3 MiB message: every piece bounded, the whole byte-exact, input waits meanwhile. */
TEST(large_message_streams_bounded)
{
	struct conf *c = conf_plain();
	size_t len = 80 * 40000; /* 3.2 MB, the last line ended */
	char *msg = malloc(len);
	struct fake_pop3 f;
	for (size_t i = 0; i < len; i++)
		msg[i] = (i % 80 == 79) ? '\n' : (i % 80 == 0 && (i / 80) % 3 == 0) ? '.' : 'x';
	setup(&f, c, msg, len);
	f.read_chunk = 777;
	if (!CHECK(login(&f)))
		goto out;
	free(f.rec);
	f.rec = NULL;
	f.rec_len = f.rec_cap = 0;
	const char cmds[] = "RETR 1\r\nNOOP\r\n";
	size_t took = pop3_session_input(f.s, cmds, sizeof cmds - 1);
	CHECK_INT(took, 8); /* NOOP waits for the message to be out */
	CHECK_INT(pop3_session_input(f.s, cmds + took, sizeof cmds - 1 - took), 0);
	size_t max_piece = 0, pieces = 0;
	for (;;) {
		size_t n;
		const char *p = pop3_session_output(f.s, &n);
		if (n == 0)
			break;
		if (n > max_piece)
			max_piece = n;
		pieces++;
		size_t part = n > 1000 ? n / 3 : n; /* the glue may take less than all */
		fake_pop3_record(&f, p, part);
		pop3_session_output_done(f.s, part);
	}
	CHECK(max_piece <= POP3_SESSION_OUT_MAX + 1024);
	CHECK(pieces > 50);
	/* the expected wire form: +OK line, stuffed CRLF lines, the "." line */
	size_t wlen = 0;
	char *want = malloc(2 * len + 64);
	uint64_t wire = len + len / 80;
	wlen += (size_t)sprintf(want, "+OK %llu octets\r\n", (unsigned long long)wire);
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n')
			want[wlen++] = '\r';
		want[wlen++] = msg[i];
		if (msg[i] == '.' && (i == 0 || msg[i - 1] == '\n'))
			want[wlen++] = '.';
	}
	memcpy(want + wlen, ".\r\n", 3);
	wlen += 3;
	if (!CHECK(f.rec_len == wlen && memcmp(f.rec, want, wlen) == 0)) {
		size_t k = 0;
		while (k < wlen && k < f.rec_len && f.rec[k] == want[k])
			k++;
		printf("  got %zu octets, want %zu; first difference at %zu: %.40s | %.40s\n",
		       f.rec_len, wlen, k, f.rec + (k > 20 ? k - 20 : 0),
		       want + (k > 20 ? k - 20 : 0));
	}
	free(want);
	CHECK_INT(pop3_session_input(f.s, cmds + took, sizeof cmds - 1 - took), 6);
out:
	pop3_session_free(f.s);
	fake_pop3_fini(&f);
	free(msg);
	conf_free(c);
}

/* Freed in the middle of a RETR: the message is closed, the maildrop released. */
TEST(free_mid_stream)
{
	struct conf *c = conf_plain();
	size_t len = 1u << 20;
	char *msg = malloc(len);
	memset(msg, 'y', len);
	struct fake_pop3 f;
	setup(&f, c, msg, len);
	if (CHECK(login(&f))) {
		pop3_session_input(f.s, "RETR 1\r\n", 8);
		size_t n;
		pop3_session_output(f.s, &n);
		CHECK(n > 0);
		CHECK(f.reading == 0);
		CHECK(f.locked);
	}
	pop3_session_free(f.s);
	CHECK(f.reading == -1);
	CHECK(!f.locked);
	CHECK(f.msgs[0].removed == 0);
	fake_pop3_fini(&f);
	free(msg);
	conf_free(c);
}

/* Drains everything into the record. */
static void take_all(struct fake_pop3 *f)
{
	free(f->rec);
	f->rec = NULL;
	f->rec_len = f->rec_cap = 0;
	fake_pop3_drain(f);
}

/*
 * Shutdown during a RETR: the message is finished first, then the -ERR; a
 * timeout during one ends the session without a status line inside the message.
 */
TEST(shutdown_and_timeout_mid_stream)
{
	struct conf *c = conf_plain();
	size_t len = 80 * 4000;
	char *msg = malloc(len);
	for (size_t i = 0; i < len; i++)
		msg[i] = (i % 80 == 79) ? '\n' : 'z';
	for (int timeout = 0; timeout < 2; timeout++) {
		struct fake_pop3 f;
		setup(&f, c, msg, len);
		if (!CHECK(login(&f)))
			break;
		pop3_session_input(f.s, "RETR 1\r\n", 8);
		size_t n;
		const char *p = pop3_session_output(f.s, &n);
		CHECK(n > 0 && n < len); /* part of it */
		pop3_session_output_done(f.s, n);
		(void)p;
		if (timeout)
			pop3_session_timeout(f.s);
		else
			pop3_session_shutdown(f.s);
		CHECK(pop3_session_ended(f.s) == timeout);
		take_all(&f);
		CHECK(pop3_session_ended(f.s));
		const char *tail = "\r\n.\r\n-ERR [SYS/TEMP] server shutting down\r\n";
		if (timeout)
			CHECK(f.rec == NULL || strstr(f.rec, "-ERR") == NULL);
		else
			CHECK(f.rec_len > strlen(tail) &&
			      strcmp(f.rec + f.rec_len - strlen(tail), tail) == 0);
		CHECK(!f.locked);
		CHECK(f.reading == -1);
		pop3_session_free(f.s);
		fake_pop3_fini(&f);
	}
	free(msg);
	conf_free(c);
}

TEST_MAIN(T(large_message_streams_bounded), T(free_mid_stream), T(shutdown_and_timeout_mid_stream))
