/*
 * fuzz_smtp_session: a whole SMTP session fed from the fuzzer, with fake ops.
 * Input: one flags octet (configuration and fake failures), one octet choosing
 * the chunk size of the input calls, one octet for the verifier (bit 0: it
 * answers later; bit 1: newest request first; bits 2-4: how many requests it
 * answers after each input call, 0 = all; bit 5: the client is a Domain Sharing
 * peer; bit 6: domain_sharing, so MAIL asks about local senders; bit 7: AUTH
 * offered in plaintext, checked by the fake, and a Dynamic Screen that screens
 * on its third note), then the
 * client's octets. A few mailboxes have other servers' answers (a peer has
 * bob@example.com, dave@example.com is disabled there, carol@example.com's
 * server does not answer). Invariants: no
 * crash or leak (sanitizers), the output stays bounded (never more than the
 * session's buffer, at most ~64 octets per input octet in all), every reply line
 * is well formed, and after ".", "QUIT" the session has ended: it always either
 * ends or keeps answering; a session that waits always waits for a request that
 * is open (never for nothing). The ops are the shared fake (tests/unit/fake_session_ops.h),
 * which also checks the session keeps the ops' contract. A violated invariant traps.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/unit/fake_session_ops.h"
#include "conf/conf.h"
#include "smtpd/smtp_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static struct conf *make_conf(void)
{
	struct conf *c = conf_defaults();
	free(c->hostname);
	c->hostname = strdup("mx.example.com");
	c->local_domains.v = calloc(1, sizeof(char *));
	c->local_domains.v[0] = strdup("example.com");
	c->local_domains.n = 1;
	c->smtp_refuse_helo.v = calloc(1, sizeof(char *));
	c->smtp_refuse_helo.v[0] = strdup("evil");
	c->smtp_refuse_helo.n = 1;
	c->smtp_rejected_recipients_log = strdup("/dev/null");
	c->queue_min_free = 100;
	return c;
}

/* Every complete reply line: 3 digits, then ' ' or '-', printable text, CRLF. */
static void check_output(const char *o, size_t n)
{
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (o[i] != '\n')
			continue;
		require(i >= start + 5 && o[i - 1] == '\r');
		require(o[start] >= '2' && o[start] <= '5' &&
		        (o[start + 3] == ' ' || o[start + 3] == '-'));
		for (size_t j = start; j + 1 < i; j++)
			require((unsigned char)o[j] >= 0x20 && (unsigned char)o[j] <= 0x7e);
		start = i + 1;
	}
	require(start == n);
}

static size_t drain(struct smtp_session *s)
{
	size_t n;
	const char *o = smtp_session_output(s, &n);
	require(n <= SMTP_SESSION_OUT_MAX);
	check_output(o, n);
	smtp_session_output_done(s, n);
	return n;
}

/* Answers up to `per` (0: all) of the open verify requests, oldest or newest first. */
static int answer_some(struct fake_session *f, unsigned mode)
{
	size_t per = (mode >> 2) & 7, done = 0;
	while (f->n_open > 0 && (per == 0 || done < per)) {
		uint64_t id = (mode & 2) ? f->open[f->n_open - 1].id : f->open[0].id;
		require(fake_session_done(f, id) == 0);
		done++;
	}
	return done > 0;
}

static void feed(struct fake_session *f, const uint8_t *p, size_t n, size_t chunk, unsigned mode,
                 size_t *out_total)
{
	struct smtp_session *s = f->s;
	size_t pos = 0;
	int stuck = 0;
	while ((pos < n || f->n_open > 0 || f->commit_open || f->auth_open) &&
	       !smtp_session_ended(s) && stuck < 3) {
		size_t len = n - pos < chunk ? n - pos : chunk;
		size_t used = len ? smtp_session_input(s, (const char *)p + pos, len) : 0;
		require(used <= len);
		pos += used;
		*out_total += drain(s);
		int progress = answer_some(f, mode);
		*out_total += drain(s);
		if (smtp_session_waiting(s)) {
			/* Waiting is for an open request: a commit, AUTH, or a verdict still owed. */
			require(f->commit_open || f->auth_open || f->n_open > 0);
			progress |= fake_session_resolve(f);
			*out_total += drain(s);
		}
		require(f->broken == 0);
		require(smtp_session_requests(s) ==
		        f->n_open + (size_t)f->commit_open + (size_t)f->auth_open);
		stuck = used == 0 && !progress ? stuck + 1 : 0;
	}
	require(pos == n || smtp_session_ended(s));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct conf *c;
	if (size < 3)
		return 0;
	if (c == NULL)
		c = make_conf();
	static struct fake_session f;
	unsigned flags = data[0];
	unsigned mode = data[2];
	fake_session_init(&f);
	f.conf = c;
	f.verify_later = mode & 1;
	fake_session_answer(&f, "bob@example.com", VERIFY_REMOTE, "[192.0.2.7]:25");
	fake_session_answer(&f, "dave@example.com", VERIFY_REMOTE_DISABLED, "peer 192.0.2.7");
	fake_session_answer(&f, "carol@example.com", VERIFY_TEMPFAIL, "peer 192.0.2.8: no answer");
	c->domain_sharing = (mode & 0x40) != 0;
	c->auth_allow_plaintext = (mode & 0x80) != 0;
	f.auth = (mode & 0x80) != 0;
	f.screen = (mode & 0x80) ? 3 : 0;
	fake_session_setup(&f);
	f.begin_errno = (flags & 0x20) ? ENOSPC : 0;
	f.write_fail_after = (flags & 0x10) ? 300 : -1;
	f.commit_fail = (flags & 0x08) != 0;
	f.free_space = (flags & 0x40) ? 10 : -1;
	c->smtp_dsn = !(flags & 0x01);
	c->smtp_vrfy = (flags & 0x04) != 0;
	c->smtp_refuse_percent = c->smtp_refuse_bang = (flags & 0x80) != 0;
	c->smtp_max_message_size = (flags & 0x02) ? 1024 : 100000;
	c->smtp_drop_connection_size = (flags & 0x02) ? 4096 : 0;
	c->smtp_max_recipients = (flags & 0x02) ? 2 : 100;
	c->smtp_max_received_headers = 3;
	size_t chunk = data[1] == 0 ? 1 : data[1] == 255 ? size : data[1];

	struct smtp_session *s = smtp_session_new(c, &f.ops, SMTP_PORT_SMTP, "192.0.2.1",
	                                          (flags & 0x02) != 0, (mode & 0x20) != 0);
	require(s != NULL);
	f.s = s;
	size_t out_total = 0;
	smtp_session_greet(s, 0);
	out_total += drain(s);
	feed(&f, data + 3, size - 3, chunk, mode, &out_total);
	/* Whatever state it is in, this ends the session. */
	static const char tail[] = "\r\n.\r\nQUIT\r\n";
	feed(&f, (const uint8_t *)tail, sizeof tail - 1, sizeof tail, mode, &out_total);
	require(smtp_session_ended(s));
	require(out_total <= 1024 + 64 * size);
	smtp_session_free(s);
	f.s = NULL;
	require(f.open_msgs == 0 && f.broken == 0 && f.n_open == 0);
	return 0;
}
