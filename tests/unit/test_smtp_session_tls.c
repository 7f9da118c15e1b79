/*
 * test_smtp_session_tls: the session's side of STARTTLS (RFC 3207) through its
 * TLS request: offered only with a certificate and a glue that can start TLS,
 * the 220 then no input until smtp_session_tls_done(), every SMTP state reset
 * after it (HELO, the transaction, half a line read before: CVE-2011-0411),
 * a second STARTTLS 503, a failed handshake ends the session, implicit TLS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "fake_session_ops.h"
#include "harness.h"
#include "smtpd/smtp_session.h"

static struct fake_session fk;
static uint64_t tls_id; /* the TLS request the fake glue holds, 0: none */
static int tls_answer = 1; /* what tls_start returns */
static int tls_calls;

static int fake_tls_start(void *arg, uint64_t id)
{
	tls_calls++;
	if (tls_answer == 1)
		tls_id = id;
	return tls_answer;
}

static struct conf *tls_conf(int with_cert)
{
	struct conf *c = conf_defaults();
	free(c->hostname);
	c->hostname = strdup("mx.example.com");
	c->local_domains.v = calloc(2, sizeof(char *));
	c->local_domains.v[0] = strdup("example.com");
	c->local_domains.n = 1;
	c->queue_min_free = 0;
	if (with_cert)
		c->tls_cert_file =
		        strdup("/nonexistent/cert.pem"); /* the session only asks if set */
	return c;
}

static char *take(struct smtp_session *s)
{
	size_t n;
	const char *o = smtp_session_output(s, &n);
	char *r = malloc(n + 1);
	memcpy(r, o, n);
	r[n] = '\0';
	smtp_session_output_done(s, n);
	return r;
}

static size_t feed(struct smtp_session *s, const char *text)
{
	return smtp_session_input(s, text, strlen(text));
}

/* A greeted session whose glue can start TLS (with_ops) and whose conf has a certificate. */
static struct smtp_session *started(struct conf *c, int with_ops)
{
	fake_session_init(&fk);
	fk.free_space = -1;
	if (with_ops)
		fk.ops.tls_start = fake_tls_start;
	tls_id = 0;
	tls_answer = 1;
	tls_calls = 0;
	struct smtp_session *s =
	        smtp_session_new(c, &fk.ops, SMTP_PORT_SUBMISSION, "192.0.2.1", 0, 0);
	smtp_session_greet(s, 0);
	free(take(s));
	return s;
}

/* The reply text to one command line (all of the output it caused). */
static char *cmd(struct smtp_session *s, const char *line)
{
	feed(s, line);
	return take(s);
}

TEST(starttls_offered_only_with_certificate_and_glue)
{
	struct conf *with = tls_conf(1), *without = tls_conf(0);
	struct smtp_session *s = started(with, 1);
	char *out = cmd(s, "EHLO a\r\n");
	CHECK(strstr(out, "250-STARTTLS\r\n") != NULL);
	free(out);
	out = cmd(s, "HELP\r\n");
	CHECK(strstr(out, "STARTTLS") != NULL);
	free(out);
	smtp_session_free(s);

	s = started(without, 1);
	out = cmd(s, "EHLO a\r\n");
	CHECK(strstr(out, "STARTTLS") == NULL);
	free(out);
	out = cmd(s, "STARTTLS\r\n");
	CHECK_STR(out, "454 4.7.0 TLS not available\r\n");
	free(out);
	CHECK_INT(tls_calls, 0);
	smtp_session_free(s);

	s = started(with, 0); /* a glue with no TLS at all */
	out = cmd(s, "EHLO a\r\n");
	CHECK(strstr(out, "STARTTLS") == NULL);
	free(out);
	out = cmd(s, "STARTTLS\r\n");
	CHECK_STR(out, "502 5.5.1 Command not offered by this server\r\n");
	free(out);
	smtp_session_free(s);
	CHECK_INT(fk.broken, 0);
	conf_free(with);
	conf_free(without);
}

TEST(pipelined_after_starttls_never_runs_and_state_resets)
{
	struct conf *c = tls_conf(1);
	struct smtp_session *s = started(c, 1);
	free(cmd(s, "EHLO a\r\nMAIL FROM:<bob@else.test>\r\n"));
	const char *in = "STARTTLS\r\nRCPT TO:<alice@example.com>\r\nEHLO half";
	/* Nothing after the STARTTLS line is consumed: the glue throws the rest away. */
	CHECK_INT(feed(s, in), strlen("STARTTLS\r\n"));
	char *out = take(s);
	CHECK_STR(out, "220 2.0.0 Ready to start TLS\r\n"); /* nothing for the pipelined RCPT */
	free(out);
	CHECK_INT(tls_calls, 1);
	CHECK(tls_id != 0);
	CHECK(smtp_session_waiting(s));
	CHECK_INT(smtp_session_requests(s), 1);
	CHECK_INT(feed(s, "NOOP\r\n"), 0); /* no input while the handshake runs */
	CHECK(!smtp_session_tls(s, NULL, NULL));
	smtp_session_tls_done(s, tls_id + 7, 1, "TLSv1.3", "X"); /* not the open request */
	CHECK(smtp_session_waiting(s));
	smtp_session_tls_done(s, tls_id, 1, "TLSv1.3", "TLS_AES_128_GCM_SHA256");
	CHECK(!smtp_session_waiting(s));
	CHECK_INT(smtp_session_requests(s), 0);
	const char *v = NULL, *ci = NULL;
	CHECK(smtp_session_tls(s, &v, &ci));
	CHECK_STR(v, "TLSv1.3");
	CHECK_STR(ci, "TLS_AES_128_GCM_SHA256");
	/* No half line is left from before the handshake: "\r\n" is an empty command. */
	out = cmd(s, "\r\n");
	CHECK_STR(out, "500 5.5.2 Empty command\r\n");
	free(out);
	/* HELO and the transaction are gone: RFC 3207 4.2. */
	out = cmd(s, "RCPT TO:<alice@example.com>\r\n");
	CHECK_STR(out, "503 5.5.1 Need MAIL before RCPT\r\n");
	free(out);
	out = cmd(s, "MAIL FROM:<bob@else.test>\r\n");
	CHECK_STR(out, "503 5.5.1 Send HELO or EHLO first\r\n");
	free(out);
	out = cmd(s, "EHLO a\r\n");
	CHECK(strncmp(out, "250-mx.example.com\r\n", 20) == 0);
	CHECK(strstr(out, "STARTTLS") == NULL);
	free(out);
	out = cmd(s, "STARTTLS\r\n");
	CHECK_STR(out, "503 5.5.1 TLS already active\r\n");
	free(out);
	CHECK_INT(tls_calls, 1);
	/* After the new EHLO, MAIL is read again: submission wants AUTH first (RFC 6409). */
	out = cmd(s, "MAIL FROM:<bob@else.test>\r\n");
	CHECK_STR(out, "530 5.7.0 Authentication required\r\n");
	free(out);
	smtp_session_free(s);
	CHECK_INT(fk.broken, 0);
	conf_free(c);
}

TEST(starttls_refusals_and_a_failed_handshake)
{
	struct conf *c = tls_conf(1);
	struct smtp_session *s = started(c, 1);
	char *out = cmd(s, "STARTTLS x\r\n");
	CHECK_STR(out, "501 5.5.4 Syntax error, no parameters allowed\r\n");
	free(out);
	tls_answer = 0; /* the glue cannot start TLS now */
	out = cmd(s, "STARTTLS\r\n");
	CHECK_STR(out, "454 4.7.0 TLS not available due to temporary reason\r\n");
	free(out);
	CHECK(!smtp_session_waiting(s));
	CHECK_INT(smtp_session_requests(s), 0);
	tls_answer = 1;
	free(cmd(s, "STARTTLS\r\n"));
	smtp_session_tls_done(s, tls_id, 0, NULL, NULL);
	CHECK(smtp_session_ended(s));
	out = take(s);
	CHECK_STR(out, ""); /* nothing more is said on a broken stream */
	free(out);
	smtp_session_free(s);
	CHECK_INT(fk.broken, 0);
	conf_free(c);
}

TEST(implicit_tls_from_the_start)
{
	struct conf *c = tls_conf(1);
	fake_session_init(&fk);
	fk.ops.tls_start = fake_tls_start;
	struct smtp_session *s =
	        smtp_session_new(c, &fk.ops, SMTP_PORT_SUBMISSION, "192.0.2.1", 0, 0);
	smtp_session_tls_implicit(s, "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384");
	smtp_session_greet(s, 0);
	free(take(s));
	const char *v = NULL;
	CHECK(smtp_session_tls(s, &v, NULL));
	CHECK_STR(v, "TLSv1.2");
	char *out = cmd(s, "EHLO a\r\n");
	CHECK(strstr(out, "STARTTLS") == NULL);
	free(out);
	out = cmd(s, "STARTTLS\r\n");
	CHECK_STR(out, "503 5.5.1 TLS already active\r\n");
	free(out);
	smtp_session_free(s);
	conf_free(c);
}

TEST_MAIN(T(starttls_offered_only_with_certificate_and_glue),
          T(pipelined_after_starttls_never_runs_and_state_resets),
          T(starttls_refusals_and_a_failed_handshake), T(implicit_tls_from_the_start))
