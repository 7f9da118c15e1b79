/*
 * test_smtp_session: what the transcripts cannot show: the 250 never precedes
 * the commit outcome and input stops while waiting, output back-pressure keeps
 * the session's memory bounded, freeing a session mid-DATA aborts the message
 * (and never a committed one), the command table and the policy functions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "fake_session_ops.h"
#include "harness.h"
#include "smtpd/smtp_commands.h"
#include "smtpd/smtp_policy.h"
#include "smtpd/smtp_session.h"

static struct fake_session fk;

static struct conf *test_conf(void)
{
	struct conf *c = conf_defaults();
	free(c->hostname);
	c->hostname = strdup("mx.example.com");
	c->local_domains.v = calloc(2, sizeof(char *));
	c->local_domains.v[0] = strdup("example.com");
	c->local_domains.n = 1;
	c->queue_min_free = 1000;
	return c;
}

/* Takes all output as one string (caller frees). */
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

static struct smtp_session *started(struct conf *c)
{
	fake_session_init(&fk);
	fk.free_space = -1;
	struct smtp_session *s = smtp_session_new(c, &fk.ops, SMTP_PORT_SMTP, "192.0.2.1", 0, 0);
	smtp_session_greet(s, 0);
	free(take(s));
	return s;
}

TEST(no_250_before_the_commit_outcome)
{
	struct conf *c = test_conf();
	struct smtp_session *s = started(c);
	const char *in = "EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n"
	                 "Subject: x\r\n\r\nhi\r\n.\r\nNOOP\r\n";
	size_t used = feed(s, in);
	/* It stopped right after the dot: NOOP is left for after the commit. */
	CHECK_INT(used, strlen(in) - strlen("NOOP\r\n"));
	CHECK(smtp_session_waiting(s));
	CHECK_INT(fk.committed, 1);
	char *out = take(s);
	CHECK(strstr(out, "354 ") != NULL);
	CHECK(strstr(out, "250 2.0.0") == NULL);
	free(out);
	CHECK_INT(smtp_session_input(s, "NOOP\r\n", 6), 0);
	CHECK_INT(smtp_session_requests(s), 1);
	smtp_session_commit_done(s, fk.commit_id + 1, 1, "WRONG"); /* not the open request */
	CHECK(smtp_session_waiting(s));
	smtp_session_commit_done(s, fk.commit_id, 1, "ABC123");
	CHECK(!smtp_session_waiting(s));
	out = take(s);
	CHECK_STR(out, "250 2.0.0 OK queued as ABC123\r\n");
	free(out);
	CHECK_INT(feed(s, "NOOP\r\n"), 6);
	out = take(s);
	CHECK_STR(out, "250 2.0.0 OK\r\n");
	free(out);
	/* A late second outcome is ignored. */
	smtp_session_commit_done(s, fk.commit_id, 1, "X");
	out = take(s);
	CHECK_STR(out, "");
	free(out);
	smtp_session_free(s);
	CHECK_INT(fk.aborted, 0);
	CHECK_INT(fk.broken, 0);
	conf_free(c);
}

TEST(commit_failure_with_full_disk_is_452)
{
	struct conf *c = test_conf();
	struct smtp_session *s = started(c);
	feed(s, "EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nx\r\n.\r\n");
	free(take(s));
	fk.free_space = 10;
	smtp_session_commit_done(s, fk.commit_id, 0, NULL);
	char *out = take(s);
	CHECK_STR(out, "452 4.3.1 Insufficient system storage\r\n");
	free(out);
	smtp_session_free(s);
	conf_free(c);
}

TEST(free_in_data_aborts_free_while_waiting_does_not)
{
	struct conf *c = test_conf();
	struct smtp_session *s = started(c);
	feed(s, "EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\npart");
	CHECK(smtp_session_in_data(s));
	smtp_session_free(s);
	CHECK_INT(fk.begun, 1);
	CHECK_INT(fk.aborted, 1);

	s = started(c);
	feed(s, "EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nx\r\n.\r\n");
	CHECK(smtp_session_waiting(s));
	smtp_session_free(s);
	CHECK_INT(fk.committed, 1);
	CHECK_INT(fk.aborted, 0);
	conf_free(c);
}

TEST(output_backpressure_bounds_memory)
{
	struct conf *c = test_conf();
	c->smtp_max_errors = 1000;
	struct smtp_session *s = started(c);
	feed(s, "EHLO a\r\n");
	free(take(s));
	size_t n = 50000, len = n * 6;
	char *in = malloc(len);
	for (size_t i = 0; i < n; i++)
		memcpy(in + i * 6, "NOOP\r\n", 6);
	size_t used = smtp_session_input(s, in, len);
	size_t olen;
	smtp_session_output(s, &olen);
	CHECK(used < len);
	CHECK(olen <= SMTP_SESSION_OUT_MAX);
	CHECK(!smtp_session_ended(s));
	size_t total = used, out_total = 0;
	for (int rounds = 0; rounds < 1000; rounds++) {
		smtp_session_output(s, &olen);
		CHECK(olen <= SMTP_SESSION_OUT_MAX);
		out_total += olen;
		smtp_session_output_done(s, olen);
		if (total == len)
			break;
		total += smtp_session_input(s, in + total, len - total);
	}
	CHECK_INT(total, len);
	/* Every NOOP answered exactly once: "250 2.0.0 OK\r\n" is 14 octets. */
	CHECK_INT(out_total, n * 14);
	free(in);
	smtp_session_free(s);
	conf_free(c);
}

TEST(partial_output_done)
{
	struct conf *c = test_conf();
	struct smtp_session *s = started(c);
	feed(s, "NOOP\r\n");
	size_t n;
	const char *o = smtp_session_output(s, &n);
	CHECK_INT(n, 14);
	CHECK_MEM(o, 4, "250 ", 4);
	smtp_session_output_done(s, 4);
	o = smtp_session_output(s, &n);
	CHECK_INT(n, 10);
	CHECK_MEM(o, 10, "2.0.0 OK\r\n", 10);
	smtp_session_output_done(s, 100);
	smtp_session_output(s, &n);
	CHECK_INT(n, 0);
	smtp_session_free(s);
	conf_free(c);
}

TEST(timeout_and_shutdown_end_once)
{
	struct conf *c = test_conf();
	struct smtp_session *s = started(c);
	smtp_session_timeout(s);
	smtp_session_shutdown(s);
	char *out = take(s);
	CHECK_STR(out, "421 4.4.2 mx.example.com Timeout exceeded, closing connection\r\n");
	free(out);
	CHECK(smtp_session_ended(s));
	CHECK_INT(feed(s, "NOOP\r\n"), 0);
	smtp_session_free(s);
	conf_free(c);
}

TEST(input_before_greeting_is_not_consumed)
{
	struct conf *c = test_conf();
	fake_session_init(&fk);
	struct smtp_session *s = smtp_session_new(c, &fk.ops, SMTP_PORT_SUBMISSION, "::1", 1, 0);
	CHECK_INT(feed(s, "NOOP\r\n"), 0);
	smtp_session_greet(s, 0);
	char *out = take(s);
	CHECK_STR(out, "220 mx.example.com ESMTP sharemail\r\n");
	free(out);
	smtp_session_free(s);
	smtp_session_free(NULL);
	conf_free(c);
}

TEST(postmaster_without_domain_stored_with_first_local_domain)
{
	struct conf *c = test_conf();
	struct smtp_session *s = started(c);
	feed(s, "HELO a\r\n");
	feed(s, "MAIL FROM:<>\r\n");
	feed(s, "RCPT TO:<Postmaster>\r\n");
	feed(s, "DATA\r\n");
	feed(s, "x\r\n.\r\n");
	CHECK_INT(fk.committed, 1);
	CHECK_STR(fk.first_rcpt, "postmaster@example.com");
	smtp_session_free(s);
	conf_free(c);
}

TEST(command_table_covers_every_verb)
{
	size_t n = 0;
	const struct smtp_command *t = smtp_command_table(&n);
	CHECK_INT(n, SMTP_VERB_BDAT);
	for (int v = SMTP_VERB_HELO; v <= SMTP_VERB_BDAT; v++) {
		const struct smtp_command *row = smtp_command_find((enum smtp_verb)v);
		if (!CHECK(row != NULL))
			continue;
		CHECK_STR(row->name, smtp_verb_name((enum smtp_verb)v));
		CHECK(row->check != NULL && row->run != NULL);
	}
	CHECK(smtp_command_find(SMTP_VERB_UNKNOWN) == NULL);
	CHECK(t != NULL);
}

static struct smtp_path path(const char *arg)
{
	struct smtp_path p;
	memset(&p, 0, sizeof p);
	smtp_path_parse(arg, strlen(arg), "TO:", &p);
	return p;
}

/*
 * A RCPT decision as the session makes it with a local-only verifier (verify.c
 * today): the part without lookup, then the answer of the lookup for a local
 * domain (the sender handed to it), VERIFY_FOREIGN otherwise.
 */
static enum smtp_rcpt_verdict decide(const struct conf *c, lookup_fn lookup, void *arg, int trusted,
                                     const char *sender, const struct smtp_path *p,
                                     struct smtp_policy_reply *r)
{
	enum smtp_rcpt_verdict v = smtp_policy_rcpt_first(c, p, r);
	if (v != SMTP_RCPT_VERIFY)
		return v;
	struct verify_answer a;
	memset(&a, 0, sizeof a);
	a.status = VERIFY_FOREIGN;
	if (smtp_policy_is_local(c, &p->addr)) {
		a.local.sender = sender ? sender : "";
		a.local.sender_len = strlen(a.local.sender);
		enum lookup_result lr = lookup(arg, p->mailbox, p->mailbox_len, &a.local);
		a.status = lr == LOOKUP_FOUND      ? VERIFY_LOCAL
		           : lr == LOOKUP_NOTFOUND ? VERIFY_NOTFOUND
		                                   : VERIFY_TEMPFAIL;
	}
	return smtp_policy_rcpt_answer(c, trusted, 0, &a, r);
}

TEST(policy_helo)
{
	struct conf *c = test_conf();
	c->smtp_refuse_helo.v = calloc(2, sizeof(char *));
	c->smtp_refuse_helo.v[0] = strdup("");
	c->smtp_refuse_helo.v[1] = strdup(".MyIsp.com");
	c->smtp_refuse_helo.n = 2;
	CHECK_INT(smtp_policy_helo_refused(c, "box23.myisp.COM", 15), 1);
	CHECK_INT(smtp_policy_helo_refused(c, "myisp.com", 9), 0);
	CHECK_INT(smtp_policy_helo_refused(c, "x", 1), 0);
	conf_free(c);
}

TEST(policy_rcpt)
{
	struct conf *c = test_conf();
	struct smtp_policy_reply r;
	fake_session_init(&fk);
	struct smtp_path p = path("TO:<nobody@EXAMPLE.com>");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 0, "s@example.org", &p, &r), SMTP_RCPT_UNKNOWN);
	p = path("TO:<alice@example.com>");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 0, "s@example.org", &p, &r), SMTP_RCPT_ACCEPT);
	CHECK_INT(r.code, 250);
	p = path("TO:<alice@[127.0.0.1]>");
	CHECK_INT(smtp_policy_is_local(c, &p.addr), 0);
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 0, "s@example.org", &p, &r), SMTP_RCPT_REFUSED);
	CHECK_INT(r.code, 554);
	CHECK_STR(r.enh, "5.7.1");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 1, "s@example.org", &p, &r),
	          SMTP_RCPT_ACCEPT_RELAY);
	p = path("TO:<Postmaster@example.com>");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 0, "s@example.org", &p, &r), SMTP_RCPT_ACCEPT);
	p = path("TO:<\"postmaster\"@example.com>");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 0, "s@example.org", &p, &r), SMTP_RCPT_UNKNOWN);
	p = path("TO:<>");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 1, "s@example.org", &p, &r), SMTP_RCPT_REFUSED);
	CHECK_INT(r.code, 501);
	c->smtp_refuse_bang = 1;
	p = path("TO:<\"a!b\"@other.example>");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 1, "s@example.org", &p, &r), SMTP_RCPT_REFUSED);
	CHECK_INT(r.code, 553);
	CHECK_STR(r.enh, "5.1.3");
	conf_free(c);
}

TEST(policy_over_quota)
{
	struct conf *c = test_conf();
	struct smtp_policy_reply r;
	fake_session_init(&fk);
	struct smtp_path p = path("TO:<Full@example.com>");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 0, "s@example.org", &p, &r), SMTP_RCPT_REFUSED);
	CHECK_INT(r.code, 452);
	CHECK_STR(r.enh, "4.2.2");
	free(c->smtp_over_quota_reply);
	c->smtp_over_quota_reply = strdup("552");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 0, "s@example.org", &p, &r), SMTP_RCPT_REFUSED);
	CHECK_INT(r.code, 552);
	CHECK_STR(r.enh, "5.2.2");
	p = path("TO:<off@example.com>");
	CHECK_INT(decide(c, fk.ops.lookup, &fk, 0, "s@example.org", &p, &r), SMTP_RCPT_REFUSED);
	CHECK_INT(r.code, 550);
	CHECK_STR(r.enh, "5.2.1");
	CHECK_INT(smtp_policy_mailbox(c, fk.ops.lookup, &fk, "busy@example.com", 16, &r),
	          SMTP_RCPT_TEMPFAIL);
	CHECK_INT(r.code, 451);
	conf_free(c);
}

TEST(policy_sender)
{
	struct conf *c = test_conf();
	struct smtp_policy_reply r;
	struct smtp_path p;
	memset(&p, 0, sizeof p);
	CHECK_INT(smtp_path_parse("FROM:<a%b@x.example>", 20, "FROM:", &p), SMTP_PATH_OK);
	CHECK_INT(smtp_policy_sender(c, &p, &r), 0);
	c->smtp_refuse_percent = 1;
	CHECK_INT(smtp_policy_sender(c, &p, &r), -1);
	CHECK_INT(r.code, 553);
	CHECK_STR(r.enh, "5.1.7");
	CHECK_INT(smtp_path_parse("FROM:<>", 7, "FROM:", &p), SMTP_PATH_OK);
	CHECK_INT(smtp_policy_sender(c, &p, &r), 0);
	conf_free(c);
}

/* ---- members-only mailing lists ---- */

/*
 * A directory with two lists: open@example.com (anyone posts) and
 * closed@example.com (members only; its one member is member@example.org), and
 * an account whose answer wrongly carries members_only (only a LIST is checked).
 * The fake records the sender each lookup was given.
 */
static struct {
	int calls;
	const char *sender;
	size_t sender_len;
	int tempfail;
} lists_fake;

static enum lookup_result lists_lookup(void *arg, const char *mailbox, size_t len,
                                       struct lookup_answer *out)
{
	lists_fake.calls++;
	lists_fake.sender = out->sender;
	lists_fake.sender_len = out->sender_len;
	if (lists_fake.tempfail)
		return LOOKUP_TEMPFAIL;
	int open = len == 16 && memcmp(mailbox, "open@example.com", 16) == 0;
	int closed = len == 18 && memcmp(mailbox, "closed@example.com", 18) == 0;
	int acct = len == 17 && memcmp(mailbox, "alice@example.com", 17) == 0;
	if (!open && !closed && !acct)
		return LOOKUP_NOTFOUND;
	out->kind = acct ? LOOKUP_KIND_ACCOUNT : LOOKUP_KIND_LIST;
	out->can_receive = 1;
	out->members_only = closed || acct;
	out->sender_member = out->sender && out->sender_len == 18 &&
	                     memcmp(out->sender, "member@example.org", 18) == 0;
	return LOOKUP_FOUND;
}

TEST(policy_members_only_lists)
{
	struct conf *c = test_conf();
	static const struct {
		const char *to;
		const char *sender; /* NULL: smtp_policy_rcpt's own "no sender" (<>) */
		int trusted;
		enum smtp_rcpt_verdict v;
		int code;
		const char *enh;
	} cases[] = {
	        {"TO:<open@example.com>", "anyone@else.example", 0, SMTP_RCPT_ACCEPT, 250, "2.1.5"},
	        {"TO:<open@example.com>", "", 0, SMTP_RCPT_ACCEPT, 250, "2.1.5"},
	        {"TO:<closed@example.com>", "member@example.org", 0, SMTP_RCPT_ACCEPT, 250,
	         "2.1.5"},
	        {"TO:<closed@example.com>", "stranger@example.org", 0, SMTP_RCPT_REFUSED, 550,
	         "5.7.1"},
	        {"TO:<closed@example.com>", "stranger@example.org", 1, SMTP_RCPT_REFUSED, 550,
	         "5.7.1"},
	        {"TO:<closed@example.com>", "", 0, SMTP_RCPT_REFUSED, 550, "5.7.1"},
	        {"TO:<closed@example.com>", NULL, 0, SMTP_RCPT_REFUSED, 550, "5.7.1"},
	        {"TO:<alice@example.com>", "stranger@example.org", 0, SMTP_RCPT_ACCEPT, 250,
	         "2.1.5"},
	        {"TO:<nobody@example.com>", "member@example.org", 0, SMTP_RCPT_UNKNOWN, 550,
	         "5.1.1"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct smtp_policy_reply r = {0, "", ""};
		struct smtp_path p = path(cases[i].to);
		memset(&lists_fake, 0, sizeof lists_fake);
		enum smtp_rcpt_verdict v =
		        decide(c, lists_lookup, NULL, cases[i].trusted, cases[i].sender, &p, &r);
		int ok = CHECK_INT(v, cases[i].v) & CHECK_INT(r.code, cases[i].code) &
		         CHECK_STR(r.enh, cases[i].enh) & CHECK_INT(lists_fake.calls, 1);
		/* The lookup saw the sender exactly (never NULL for a post). */
		const char *want = cases[i].sender ? cases[i].sender : "";
		ok &= CHECK(lists_fake.sender != NULL) &&
		      CHECK_MEM(lists_fake.sender, lists_fake.sender_len, want, strlen(want));
		if (!ok)
			fprintf(stderr, "    case %zu: %s from <%s>\n", i, cases[i].to, want);
	}
	/* VRFY asks whether it exists, not who may post: no sender, 250. */
	struct smtp_policy_reply r;
	memset(&lists_fake, 0, sizeof lists_fake);
	lists_fake.sender = "x";
	CHECK_INT(smtp_policy_mailbox(c, lists_lookup, NULL, "closed@example.com", 18, &r),
	          SMTP_RCPT_ACCEPT);
	CHECK(lists_fake.sender == NULL);
	/* A directory that cannot answer is 451, members-only or not. */
	struct smtp_path p = path("TO:<closed@example.com>");
	lists_fake.tempfail = 1;
	CHECK_INT(decide(c, lists_lookup, NULL, 0, "stranger@example.org", &p, &r),
	          SMTP_RCPT_TEMPFAIL);
	CHECK_INT(r.code, 451);
	conf_free(c);
}

/* A verifier over lists_lookup, as verify.c: the sender goes into the lookup. */
static int lists_verify(void *arg, uint64_t id, const char *mailbox, size_t len, const char *sender,
                        size_t sender_len, struct verify_answer *out)
{
	memset(out, 0, sizeof *out);
	out->local.sender = sender;
	out->local.sender_len = sender_len;
	enum lookup_result lr = lists_lookup(NULL, mailbox, len, &out->local);
	out->status = lr == LOOKUP_FOUND ? VERIFY_LOCAL : VERIFY_NOTFOUND;
	return 0;
}

/* The session hands MAIL FROM's mailbox to the verifier: a whole transaction. */
TEST(session_members_only_list_uses_mail_from)
{
	struct conf *c = test_conf();
	memset(&lists_fake, 0, sizeof lists_fake);
	fake_session_init(&fk);
	fk.free_space = -1;
	struct smtp_session_ops ops = fk.ops;
	ops.rcpt_verify = lists_verify;
	struct smtp_session *s = smtp_session_new(c, &ops, SMTP_PORT_SMTP, "192.0.2.1", 0, 0);
	smtp_session_greet(s, 0);
	free(take(s));
	feed(s, "EHLO a\r\nMAIL FROM:<stranger@example.org>\r\nRCPT TO:<closed@example.com>\r\n"
	        "RCPT TO:<open@example.com>\r\nRSET\r\nMAIL FROM:<member@example.org>\r\n"
	        "RCPT TO:<closed@example.com>\r\nRSET\r\nMAIL FROM:<>\r\n"
	        "RCPT TO:<closed@example.com>\r\n");
	char *out = take(s);
	const char *want[] = {"250 2.1.0", "550 5.7.1 Only list members may post to this list",
	                      "250 2.1.5", "250 2.0.0",
	                      "250 2.1.0", "250 2.1.5",
	                      "250 2.0.0", "250 2.1.0",
	                      "550 5.7.1"};
	const char *at = strstr(out, "\r\n250 2.1.0") + 2; /* after the EHLO reply */
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		if (!CHECK(strncmp(at, want[i], strlen(want[i])) == 0)) {
			fprintf(stderr, "    reply %zu: want %s, got %.40s\n", i, want[i], at);
			break;
		}
		at = strstr(at, "\r\n") + 2;
	}
	free(out);
	smtp_session_free(s);
	conf_free(c);
}

/* ---- the verifier's answers (smtp_policy_rcpt_answer) ---- */

TEST(policy_answers)
{
	struct conf *c = test_conf();
	static const struct {
		enum verify_status st;
		int servers_asked, trusted, peer, members_only, member;
		enum smtp_rcpt_verdict v;
		int code;
		const char *enh;
	} cases[] = {
	        {VERIFY_REMOTE, 1, 0, 0, 0, 0, SMTP_RCPT_ACCEPT, 250, "2.1.5"},
	        {VERIFY_REMOTE_DISABLED, 1, 0, 0, 0, 0, SMTP_RCPT_REFUSED, 550, "5.2.1"},
	        {VERIFY_NOTFOUND, 1, 0, 0, 0, 0, SMTP_RCPT_UNKNOWN, 550, "5.1.1"},
	        {VERIFY_NOTFOUND, 0, 1, 0, 0, 0, SMTP_RCPT_UNKNOWN, 550, "5.1.1"},
	        {VERIFY_TEMPFAIL, 1, 0, 0, 0, 0, SMTP_RCPT_TEMPFAIL, 451, "4.4.3"},
	        {VERIFY_TEMPFAIL, 1, 1, 1, 0, 0, SMTP_RCPT_TEMPFAIL, 451, "4.4.3"},
	        {VERIFY_TEMPFAIL, 0, 0, 0, 0, 0, SMTP_RCPT_TEMPFAIL, 451, "4.3.0"},
	        {VERIFY_FOREIGN, 0, 0, 0, 0, 0, SMTP_RCPT_REFUSED, 554, "5.7.1"},
	        {VERIFY_FOREIGN, 0, 0, 1, 0, 0, SMTP_RCPT_REFUSED, 554, "5.7.1"},
	        {VERIFY_FOREIGN, 0, 1, 0, 0, 0, SMTP_RCPT_ACCEPT_RELAY, 250, "2.1.5"},
	        /* a members-only list: a stranger refused, unless the client is a peer */
	        {VERIFY_LOCAL, 0, 0, 0, 1, 0, SMTP_RCPT_REFUSED, 550, "5.7.1"},
	        {VERIFY_LOCAL, 0, 1, 0, 1, 0, SMTP_RCPT_REFUSED, 550, "5.7.1"},
	        {VERIFY_LOCAL, 0, 0, 1, 1, 0, SMTP_RCPT_ACCEPT, 250, "2.1.5"},
	        {VERIFY_LOCAL, 0, 0, 0, 1, 1, SMTP_RCPT_ACCEPT, 250, "2.1.5"},
	        {VERIFY_LOCAL, 0, 0, 0, 0, 0, SMTP_RCPT_ACCEPT, 250, "2.1.5"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct verify_answer a;
		struct smtp_policy_reply r = {0, "", ""};
		memset(&a, 0, sizeof a);
		a.status = cases[i].st;
		a.servers_asked = cases[i].servers_asked;
		a.local.kind = LOOKUP_KIND_LIST;
		a.local.can_receive = 1;
		a.local.members_only = cases[i].members_only;
		a.local.sender_member = cases[i].member;
		enum smtp_rcpt_verdict v =
		        smtp_policy_rcpt_answer(c, cases[i].trusted, cases[i].peer, &a, &r);
		if (!(CHECK_INT(v, cases[i].v) & CHECK_INT(r.code, cases[i].code) &
		      CHECK_STR(r.enh, cases[i].enh)))
			fprintf(stderr, "    case %zu\n", i);
	}
	/* Over quota and disabled, from the local answer. */
	struct verify_answer a;
	struct smtp_policy_reply r;
	memset(&a, 0, sizeof a);
	a.status = VERIFY_LOCAL;
	a.local.kind = LOOKUP_KIND_ACCOUNT;
	a.local.over_quota = 1;
	CHECK_INT(smtp_policy_rcpt_answer(c, 0, 0, &a, &r), SMTP_RCPT_REFUSED);
	CHECK_STR(r.enh, "4.2.2");
	a.local.over_quota = 0;
	CHECK_INT(smtp_policy_rcpt_answer(c, 0, 0, &a, &r), SMTP_RCPT_REFUSED);
	CHECK_STR(r.enh, "5.2.1");
	conf_free(c);
}

/* ---- requests: pipelined RCPTs asked at once, answered in any order ---- */

static struct smtp_session *started_later(struct conf *c)
{
	struct smtp_session *s = started(c);
	fk.verify_later = 1;
	fk.s = s;
	feed(s, "EHLO a\r\n");
	free(take(s));
	return s;
}

TEST(fifty_pipelined_rcpts_are_fifty_requests_at_once)
{
	struct conf *c = test_conf();
	c->smtp_max_errors = 100; /* 25 refusals: not cut off */
	struct smtp_session *s = started_later(c);
	char in[8192];
	size_t n = (size_t)snprintf(in, sizeof in, "MAIL FROM:<s@example.net>\r\n");
	for (int i = 0; i < 50; i++)
		n += (size_t)snprintf(in + n, sizeof in - n, "RCPT TO:<u%d@example.com>\r\n", i);
	for (int i = 0; i < 50; i += 2) /* the even ones live on a peer */ {
		char mb[64];
		snprintf(mb, sizeof mb, "u%d@example.com", i);
		fake_session_answer(&fk, mb, VERIFY_REMOTE, "[192.0.2.7]:25");
	}
	CHECK_INT(feed(s, in), n); /* all taken: no RCPT waits for another */
	CHECK_INT(fk.verifies, 50);
	CHECK_INT(fk.n_open, 50);
	CHECK_INT(smtp_session_requests(s), 50);
	CHECK(!smtp_session_waiting(s));
	char *out = take(s);
	CHECK_STR(out, "250 2.1.0 Sender OK\r\n");
	free(out);
	/* Ids are unique; answered newest first, nothing leaves before the first. */
	for (size_t i = 1; i < 50; i++)
		CHECK(fk.open[i].id != fk.open[i - 1].id);
	while (fk.n_open > 1) {
		CHECK_INT(fake_session_done(&fk, fk.open[fk.n_open - 1].id), 0);
		size_t olen;
		smtp_session_output(s, &olen);
		CHECK_INT(olen, 0);
	}
	uint64_t first = fk.open[0].id;
	CHECK_INT(fake_session_done(&fk, first), 0);
	CHECK_INT(fake_session_done(&fk, first), -1); /* answered once */
	smtp_session_rcpt_done(s, first, NULL);
	smtp_session_rcpt_done(s, 12345, NULL);
	out = take(s);
	const char *at = out;
	for (int i = 0; i < 50; i++) {
		const char *want = i % 2 == 0 ? "250 2.1.5" : "550 5.1.1";
		if (!CHECK(strncmp(at, want, 9) == 0)) {
			fprintf(stderr, "    reply %d: %.20s\n", i, at);
			break;
		}
		at = strstr(at, "\r\n") + 2;
	}
	CHECK_STR(at, "");
	free(out);
	CHECK_INT(smtp_session_requests(s), 0);
	/* A late answer for an id already answered changes nothing. */
	struct verify_answer a;
	memset(&a, 0, sizeof a);
	a.status = VERIFY_REMOTE;
	smtp_session_rcpt_done(s, first, &a);
	size_t olen;
	smtp_session_output(s, &olen);
	CHECK_INT(olen, 0);
	smtp_session_free(s);
	CHECK_INT(fk.broken, 0);
	conf_free(c);
}

/* Outstanding RCPTs are bounded, and their replies always fit the output. */
TEST(pending_rcpts_bounded_and_their_replies_fit)
{
	struct conf *c = test_conf();
	c->smtp_max_recipients = 1000;
	struct smtp_session *s = started_later(c);
	size_t n = 1050, len = 0; /* 50 over the limit: 452, within the grace */
	char *in = malloc(n * 32 + 64);
	len += (size_t)sprintf(in, "MAIL FROM:<>\r\n");
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(in + len, "RCPT TO:<alice@example.com>\r\n");
	size_t total = feed(s, in), olen, replies = 0, max_open = 0;
	for (int rounds = 0; rounds < 100 && (total < len || fk.n_open > 0); rounds++) {
		if (fk.n_open > max_open)
			max_open = fk.n_open;
		CHECK(fk.n_open <= SMTP_SESSION_PIPELINE_MAX);
		while (fk.n_open > 0)
			fake_session_done(&fk, fk.open[fk.n_open - 1].id);
		const char *o = smtp_session_output(s, &olen);
		CHECK(olen <= SMTP_SESSION_OUT_MAX);
		for (const char *p = o; (p = memmem(p, olen - (size_t)(p - o), "250 2.1.5", 9));
		     p++)
			replies++;
		smtp_session_output_done(s, olen);
		total += smtp_session_input(s, in + total, len - total);
	}
	CHECK_INT(total, len);
	CHECK(max_open > 100); /* many at once */
	CHECK_INT(replies, 1000); /* every accepted one answered once; the rest 452 */
	free(in);
	smtp_session_free(s);
	CHECK_INT(fk.broken, 0);
	conf_free(c);
}

TEST(data_waits_for_pending_rcpts_and_free_cancels)
{
	struct conf *c = test_conf();
	struct smtp_session *s = started_later(c);
	const char *in = "MAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\n"
	                 "RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: x\r\n";
	size_t used = feed(s, in);
	/* DATA is framed and held; the message octets stay with the glue. */
	CHECK_INT(used, strlen(in) - strlen("Subject: x\r\n"));
	CHECK(smtp_session_waiting(s));
	CHECK_INT(smtp_session_requests(s), 2);
	CHECK_INT(fk.begun, 0);
	CHECK_INT(fake_session_done(&fk, fk.open[0].id), 0);
	CHECK(smtp_session_waiting(s));
	CHECK_INT(fk.begun, 0);
	/* Freed with one open: cancelled, once, and never answered after. */
	smtp_session_free(s);
	CHECK_INT(fk.cancels, 1);
	CHECK_INT(fk.n_open, 0);
	CHECK_INT(fk.broken, 0);

	s = started_later(c);
	feed(s, in);
	free(take(s));
	CHECK_INT(fake_session_done(&fk, fk.open[1].id), 0);
	CHECK_INT(fake_session_done(&fk, fk.open[0].id), 0);
	CHECK(!smtp_session_waiting(s));
	CHECK_INT(fk.begun, 1);
	char *out = take(s);
	CHECK_STR(out, "250 2.1.5 Recipient OK\r\n550 5.1.1 No such user here\r\n"
	               "354 End data with <CR><LF>.<CR><LF>\r\n");
	free(out);
	CHECK_INT(feed(s, "Subject: x\r\n\r\n.\r\n"), 17);
	CHECK_INT(fk.committed, 1);
	smtp_session_free(s);
	conf_free(c);
}

TEST(helo_session_rcpts_wait_for_each_other)
{
	struct conf *c = test_conf();
	struct smtp_session *s = started(c);
	fk.verify_later = 1;
	fk.s = s;
	feed(s, "HELO a\r\n");
	feed(s, "MAIL FROM:<>\r\n");
	feed(s, "RCPT TO:<alice@example.com>\r\n");
	free(take(s));
	/* No PIPELINING was offered: the next RCPT is not asked beside the first. */
	CHECK_INT(feed(s, "RCPT TO:<bob@example.org>\r\n"), 27);
	CHECK_INT(fk.verifies, 1);
	CHECK(smtp_session_waiting(s));
	CHECK_INT(fake_session_done(&fk, fk.open[0].id), 0);
	CHECK_INT(fk.verifies, 2);
	CHECK_INT(fake_session_done(&fk, fk.open[0].id), 0);
	char *out = take(s);
	CHECK_STR(out, "250 2.1.5 Recipient OK\r\n250 2.1.5 Recipient OK\r\n");
	free(out);
	smtp_session_free(s);
	CHECK_INT(fk.cancels, 0);
	CHECK_INT(fk.broken, 0);
	conf_free(c);
}

TEST(sender_known_from_sender_verify)
{
	struct conf *c = test_conf();
	c->domain_sharing = 1;
	c->auth_required_for_local_senders = 0; /* the senders stay (the AUTH rules: transcripts) */
	struct smtp_session *s = started_later(c);
	const char *peer = NULL;
	fake_session_answer(&fk, "carol@example.com", VERIFY_REMOTE, "[192.0.2.7]:25");
	feed(s, "MAIL FROM:<carol@example.com>\r\nRCPT TO:<alice@example.com>\r\n");
	CHECK_INT(fk.verifies, 1); /* the RCPT waits for MAIL's answer */
	CHECK(smtp_session_waiting(s));
	char *out = take(s);
	CHECK_STR(out, "");
	free(out);
	CHECK_INT(fake_session_done(&fk, fk.open[0].id), 0);
	CHECK_INT(smtp_session_sender(s, &peer), SMTP_SENDER_PEER);
	CHECK_STR(peer, "[192.0.2.7]:25");
	out = take(s);
	CHECK_STR(out, "250 2.1.0 Sender OK\r\n");
	free(out);
	feed(s, "RCPT TO:<alice@example.com>\r\nRSET\r\n");
	fake_session_done(&fk, fk.open[0].id);
	CHECK_INT(smtp_session_sender(s, NULL), SMTP_SENDER_NOT_ASKED); /* RSET forgot it */
	fk.verify_later = 0;
	feed(s, "MAIL FROM:<alice@example.com>\r\n");
	CHECK_INT(smtp_session_sender(s, NULL), SMTP_SENDER_LOCAL);
	feed(s, "RSET\r\nMAIL FROM:<nobody@example.com>\r\n");
	CHECK_INT(smtp_session_sender(s, NULL), SMTP_SENDER_UNKNOWN);
	int asked = fk.verifies;
	feed(s, "RSET\r\nMAIL FROM:<x@other.example>\r\nRSET\r\nMAIL FROM:<>\r\n");
	CHECK_INT(fk.verifies, asked); /* not a local domain, <>: not asked */
	CHECK_INT(smtp_session_sender(s, NULL), SMTP_SENDER_NOT_ASKED);
	c->domain_sharing_query_senders = 0;
	feed(s, "RSET\r\nMAIL FROM:<alice@example.com>\r\n");
	CHECK_INT(fk.verifies, asked);
	smtp_session_free(s);
	CHECK_INT(fk.broken, 0);
	conf_free(c);
}

TEST_MAIN(T(no_250_before_the_commit_outcome), T(commit_failure_with_full_disk_is_452),
          T(free_in_data_aborts_free_while_waiting_does_not), T(output_backpressure_bounds_memory),
          T(partial_output_done), T(timeout_and_shutdown_end_once),
          T(input_before_greeting_is_not_consumed),
          T(postmaster_without_domain_stored_with_first_local_domain),
          T(command_table_covers_every_verb), T(policy_helo), T(policy_rcpt), T(policy_over_quota),
          T(policy_sender), T(policy_members_only_lists),
          T(session_members_only_list_uses_mail_from), T(policy_answers),
          T(fifty_pipelined_rcpts_are_fifty_requests_at_once),
          T(pending_rcpts_bounded_and_their_replies_fit),
          T(data_waits_for_pending_rcpts_and_free_cancels),
          T(helo_session_rcpts_wait_for_each_other), T(sender_known_from_sender_verify))
