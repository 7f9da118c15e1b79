/*
 * fuzz_pop3_session: a whole POP3 server session (pop3d/pop3_session.h) fed
 * from the fuzzer, with the shared fake ops (tests/unit/fake_pop3_ops.h).
 * Input: one flags octet (bit 0: auth_allow_plaintext; bit 1: TLS offered; bit
 * 2: implicit TLS; bit 3: the maildrop is in use; bit 4: UPDATE fails; bit 5:
 * message 2 cannot be opened; bit 6: reading message 3 fails midway; bit 7:
 * reads of 1 octet), one octet choosing the chunk size of the input calls, then
 * the client's octets. The maildrop holds four messages (dot lines, CRLF and
 * bare CR, no final line end, an empty one); the account is
 * alice@example.com / secret. Invariants: no crash or leak (sanitizers), the
 * greeting is "+OK", the output never exceeds the session's bound, and input
 * is always taken unless the session has ended or waits for a request that is
 * open (it never stalls: a stream is finished by draining the output). Violations
 * trap.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/unit/fake_pop3_ops.h"
#include "conf/conf.h"
#include "pop3d/pop3_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static struct conf *make_conf(int plaintext)
{
	struct conf *c = conf_defaults();
	free(c->hostname);
	c->hostname = strdup("pop.example.com");
	c->auth_allow_plaintext = plaintext;
	return c;
}

static void setup(struct fake_pop3 *f, uint8_t flags)
{
	static const char *const msgs[] = {
	        "Subject: one\n\n.dot\n..two\n.\nend\n",
	        "Subject: two\r\n\r\nCRLF\r\nbare\rCR\n",
	        "Subject: three\n\nno final line end",
	        "",
	};
	fake_pop3_init(f);
	strcpy(f->identity, "alice@example.com");
	strcpy(f->password, "secret");
	strcpy(f->account, "alice@example.com");
	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
		char uid[8] = {'u', (char)('1' + i), 0};
		fake_pop3_add(f, uid, msgs[i], strlen(msgs[i]));
	}
	f->tls = (flags & 2) ? 1 : 0;
	f->open_in_use = (flags & 8) != 0;
	f->commit_fail = (flags & 16) != 0;
	f->msgs[1].gone = (flags & 32) != 0;
	if (flags & 64)
		f->msgs[2].fail_after = 10;
	f->read_chunk = (flags & 128) ? 1 : 0;
	if (!f->tls)
		f->ops.tls_start = NULL;
}

/* Takes the output: bounded, and each line that starts a response is well formed. */
static void drain(struct fake_pop3 *f)
{
	for (;;) {
		size_t n;
		(void)pop3_session_output(f->s, &n);
		require(n <= POP3_SESSION_OUT_MAX + 1024);
		if (n == 0)
			return;
		pop3_session_output_done(f->s, n);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t flags = data[0];
	size_t chunk = (size_t)(data[1] % 64) + 1;
	data += 2;
	size -= 2;
	struct conf *c = make_conf(flags & 1);
	struct fake_pop3 f;
	setup(&f, flags);
	f.s = pop3_session_new(c, &f.ops, "192.0.2.1");
	require(f.s != NULL);
	if (flags & 4)
		pop3_session_tls_implicit(f.s);
	pop3_session_greet(f.s, 0);
	size_t size_out = 0;
	const char *p = pop3_session_output(f.s, &size_out);
	require(size_out > 3 && memcmp(p, "+OK", 3) == 0);
	drain(&f);
	size_t pos = 0;
	while (pos < size && !pop3_session_ended(f.s)) {
		size_t len = size - pos < chunk ? size - pos : chunk;
		size_t n = pop3_session_input(f.s, (const char *)data + pos, len);
		require(n <= len);
		pos += n;
		drain(&f);
		int answered = fake_pop3_settle(&f);
		if (f.discard_input) {
			f.discard_input = 0;
			pos = size;
		}
		drain(&f);
		/* Waiting is only ever for a request that is open (the fake answered it). */
		require(!pop3_session_waiting(f.s) || f.req != 0);
		require(n > 0 || answered || pop3_session_ended(f.s));
	}
	pop3_session_free(f.s);
	fake_pop3_fini(&f);
	conf_free(c);
	return 0;
}
