/*
 * Unit tests for deliver/dsn: RFC 3464 delivery status notifications.
 *
 * Without arguments (or with test names) this is a normal unit test. With
 * `--emit DIR` it writes the sample notices of the samples[] table to
 * DIR/NAME.eml and their envelopes to DIR/NAME.env ("key=value" lines), for
 * tests/integration/test_dsn_format.py, which parses them with Python's email
 * package (an independent MIME parser) and checks them field by field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/dsn.h"
#include "harness.h"

#define QID "0AbCdEfGhIj12345"
#define HOST "mx.example.com"
#define NOW 1780000000 /* Thu, 28 May 2026 20:26:40 +0000 */
#define ARRIVAL 1779990000
#define ATTEMPT 1779999000
#define UNTIL 1780400000
#define BIG (1u << 20)

static const char msg_plain[] = "From: Alice <alice@example.com>\r\n"
                                "To: bob@example.org\r\n"
                                "Subject: hello\r\n"
                                "Message-ID: <m1@example.com>\r\n"
                                "\r\n"
                                "Hi Bob,\r\n"
                                ".a line starting with a dot\r\n"
                                "\r\n"
                                "bye\r\n";

static const char msg_8bit[] = "From: Alice <alice@example.com>\r\n"
                               "Subject: lunch\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Transfer-Encoding: 8bit\r\n"
                               "\r\n"
                               "caf\xc3\xa9 at noon?\r\n";

static const char msg_nosep[] = "Subject: only headers\r\nX-Last: no CRLF";

static const char hdrs_plain[] = "From: Alice <alice@example.com>\r\n"
                                 "To: bob@example.org\r\n"
                                 "Subject: hello\r\n"
                                 "Message-ID: <m1@example.com>\r\n";

/* ---- samples (shared by the unit tests and --emit) ---- */

struct sample {
	const char *name;
	struct dsn_params p;
	struct dsn_msg m;
	struct dsn_rcpt r[3];
	size_t n;
};

static struct dsn_rcpt rcpt_bob(void)
{
	struct dsn_rcpt r = {.addr = "bob@example.org",
	                     .orcpt = "rfc822;Bob@Example.ORG",
	                     .action = DSN_ACTION_FAILED,
	                     .status = "5.1.1",
	                     .reply_code = 550,
	                     .diag = "5.1.1 <bob@example.org>: Recipient address rejected: User "
	                             "unknown in virtual mailbox table",
	                     .remote_mta = "mx.example.org",
	                     .last_attempt = ATTEMPT};
	return r;
}

static struct dsn_rcpt rcpt_carol(void)
{
	struct dsn_rcpt r = {.addr = "carol@example.net",
	                     .action = DSN_ACTION_FAILED,
	                     .status = "5.4.6",
	                     .diag = "mail for example.net loops back to myself",
	                     .last_attempt = ATTEMPT};
	return r;
}

static struct dsn_params params(enum dsn_kind k)
{
	struct dsn_params p = {.hostname = HOST,
	                       .message_id = "20260528202640." QID,
	                       .kind = k,
	                       .now = NOW,
	                       .return_max = 50000};
	return p;
}

static struct dsn_msg msg_of(const char *data, size_t len, enum esmtp_ret ret)
{
	struct dsn_msg m = {.queue_id = QID,
	                    .sender = "alice@example.com",
	                    .envid = NULL,
	                    .ret = ret,
	                    .arrival = ARRIVAL,
	                    .data = data,
	                    .len = len};
	return m;
}

#define MSG(s, ret) msg_of((s), sizeof(s) - 1, (ret))

static char hostile_diag[5000];
static char collision_msg[4096];
static size_t collision_len;

/* 5,000 octets: CR, LF, NUL, TAB, DEL, 8-bit, long runs of spaces, a forged field. */
static void make_hostile(void)
{
	static const char seed[] = "5.7.1 bad\r\nX-Injected: yes\r\n\r\n--=_sharemail_" QID
	                           "\r\n\0nul\t\x7f\xff\xc3\xa9   spaces ";
	for (size_t i = 0; i < sizeof hostile_diag; i++)
		hostile_diag[i] = seed[i % (sizeof seed - 1)];
}

/* A message holding the base boundary followed by every letter and digit. */
static void make_collision(void)
{
	static const char digits[] =
	        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	size_t n = (size_t)snprintf(collision_msg, sizeof collision_msg,
	                            "Subject: tricky\r\n\r\n--=_sharemail_" QID "\r\n");
	for (size_t i = 0; i < 62; i++)
		n += (size_t)snprintf(collision_msg + n, sizeof collision_msg - n,
		                      "--=_sharemail_" QID "%c\r\n", digits[i]);
	n += (size_t)snprintf(collision_msg + n, sizeof collision_msg - n,
	                      "--=_sharemail_" QID "--\r\n");
	collision_len = n;
}

static size_t build_samples(struct sample *s)
{
	size_t k = 0;
	make_hostile();
	make_collision();

	s[k] = (struct sample){.name = "failure_full", .p = params(DSN_KIND_FAILURE), .n = 2};
	s[k].m = MSG(msg_plain, ESMTP_RET_FULL);
	s[k].m.envid = "QQ314159 x+y";
	s[k].r[0] = rcpt_bob();
	s[k++].r[1] = rcpt_carol();

	s[k] = (struct sample){.name = "failure_hdrs", .p = params(DSN_KIND_FAILURE), .n = 1};
	s[k].m = MSG(msg_plain, ESMTP_RET_HDRS);
	s[k++].r[0] = rcpt_bob();

	s[k] = (struct sample){.name = "failure_too_large", .p = params(DSN_KIND_FAILURE), .n = 1};
	s[k].p.return_max = 120;
	s[k].m = MSG(msg_plain, ESMTP_RET_UNSET);
	s[k++].r[0] = rcpt_carol();

	s[k] = (struct sample){.name = "delay", .p = params(DSN_KIND_DELAY), .n = 1};
	s[k].m = MSG(msg_plain, ESMTP_RET_FULL);
	s[k].m.envid = "ENV-7";
	s[k].r[0] = (struct dsn_rcpt){.addr = "dave@example.org",
	                              .orcpt = "rfc822;dave@example.org",
	                              .action = DSN_ACTION_DELAYED,
	                              .status = "4.4.1",
	                              .diag = "connect to mx.example.org[192.0.2.7]:25: "
	                                      "Connection refused",
	                              .last_attempt = ATTEMPT,
	                              .retry_until = UNTIL};
	k++;

	s[k] = (struct sample){.name = "success", .p = params(DSN_KIND_SUCCESS), .n = 3};
	s[k].m = MSG(msg_plain, ESMTP_RET_FULL);
	s[k].r[0] = (struct dsn_rcpt){.addr = "erin@example.com",
	                              .action = DSN_ACTION_DELIVERED,
	                              .status = "2.0.0",
	                              .diag = "delivered to mailbox",
	                              .last_attempt = ATTEMPT};
	s[k].r[1] = (struct dsn_rcpt){.addr = "frank@example.org",
	                              .orcpt = "rfc822;frank@example.org",
	                              .action = DSN_ACTION_RELAYED,
	                              .status = "2.0.0",
	                              .reply_code = 250,
	                              .diag = "2.0.0 Ok: queued as 4Xyz",
	                              .remote_mta = "mx.example.org",
	                              .last_attempt = ATTEMPT,
	                              .retry_until = UNTIL /* never printed: not delayed */};
	s[k].r[2] = (struct dsn_rcpt){.addr = "team@example.com",
	                              .action = DSN_ACTION_EXPANDED,
	                              .status = "2.0.0",
	                              .last_attempt = ATTEMPT};
	k++;

	s[k] = (struct sample){.name = "hostile", .p = params(DSN_KIND_FAILURE), .n = 1};
	s[k].m = MSG(msg_plain, ESMTP_RET_FULL);
	s[k].r[0] = rcpt_bob();
	s[k].r[0].diag = hostile_diag;
	s[k].r[0].diag_len = sizeof hostile_diag;
	s[k].r[0].remote_mta = "mx\r\n.evil";
	k++;

	s[k] = (struct sample){.name = "eightbit", .p = params(DSN_KIND_FAILURE), .n = 1};
	s[k].m = MSG(msg_8bit, ESMTP_RET_FULL);
	s[k].m.body_8bit = 1;
	s[k++].r[0] = rcpt_bob();

	s[k] = (struct sample){.name = "collision", .p = params(DSN_KIND_FAILURE), .n = 1};
	s[k].m = msg_of(collision_msg, collision_len, ESMTP_RET_FULL);
	s[k++].r[0] = rcpt_carol();

	s[k] = (struct sample){.name = "no_separator", .p = params(DSN_KIND_FAILURE), .n = 1};
	s[k].m = MSG(msg_nosep, ESMTP_RET_HDRS);
	s[k++].r[0] = rcpt_carol();

	s[k] = (struct sample){.name = "empty", .p = params(DSN_KIND_FAILURE), .n = 1};
	s[k].m = msg_of("", 0, ESMTP_RET_FULL);
	s[k++].r[0] = rcpt_carol();
	return k;
}

/* ---- helpers ---- */

struct result {
	enum dsn_result rc;
	struct dsn_out o;
	struct dsn_envelope env;
	char *s; /* NUL-terminated copy of the notice (NULs inside shown as '\1') */
};

static void compose(const struct sample *sm, size_t max, struct result *res)
{
	dsn_out_init(&res->o, max);
	res->rc = dsn_compose(&sm->p, &sm->m, sm->r, sm->n, &res->o, &res->env);
	res->s = malloc(res->o.len + 1);
	for (size_t i = 0; i < res->o.len; i++)
		res->s[i] = res->o.p[i] ? res->o.p[i] : '\1';
	res->s[res->o.len] = '\0';
}

static void release(struct result *res)
{
	dsn_out_free(&res->o);
	free(res->s);
}

static const struct sample *sample_named(const struct sample *s, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s[i].name, name) == 0)
			return &s[i];
	return NULL;
}

static size_t count_of(const char *hay, const char *needle)
{
	size_t c = 0, n = strlen(needle);
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += n)
		c++;
	return c;
}

/*
 * 1 if phrase occurs in hay when every run of SP, TAB, CR and LF in either
 * counts as one space (the text part is wrapped at any space).
 */
static int has_text(const char *hay, const char *phrase)
{
	size_t n = strlen(hay), o = 0;
	char *a = malloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		int ws = strchr(" \t\r\n", hay[i]) != NULL;
		if (ws && o > 0 && a[o - 1] == ' ')
			continue;
		a[o++] = ws ? ' ' : hay[i];
	}
	a[o] = '\0';
	int found = strstr(a, phrase) != NULL;
	free(a);
	return found;
}

/*
 * The unfolded value of the k-th (0-based) field `name` starting a line at or
 * after `from`, into out; 0 if there is none.
 */
static int field_value(const char *from, const char *name, int k, char *out, size_t outsz)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\r\n%s: ", name);
	const char *p = from;
	for (int i = 0; i <= k; i++) {
		p = strstr(p, pat);
		if (!p)
			return 0;
		p += strlen(pat);
	}
	size_t o = 0;
	while (*p && o + 1 < outsz) {
		if (p[0] == '\r' && p[1] == '\n') {
			if (p[2] != ' ' && p[2] != '\t')
				break;
			p += 2; /* unfold: CRLF removed, the WSP kept (RFC 5322 2.2.3) */
			continue;
		}
		out[o++] = *p++;
	}
	out[o] = '\0';
	return 1;
}

/* The notice's boundary (from its Content-Type) into out; 0 if not found. */
static int boundary_of(const char *s, char *out, size_t outsz)
{
	const char *p = strstr(s, "boundary=\"");
	if (!p)
		return 0;
	p += strlen("boundary=\"");
	const char *e = strchr(p, '"');
	if (!e || (size_t)(e - p) >= outsz)
		return 0;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 1;
}

/* The delivery-status part (from its blank line to the next delimiter). */
static const char *status_part(const char *s)
{
	const char *p = strstr(s, "Content-Type: message/delivery-status\r\n\r\n");
	return p ? p + strlen("Content-Type: message/delivery-status\r\n") : "";
}

/* Start of the content of the third part, or NULL. */
static const char *returned_part(const char *s, const char *type)
{
	char pat[80];
	snprintf(pat, sizeof pat, "Content-Type: %s\r\n", type);
	const char *p = strstr(s, pat);
	if (!p)
		return NULL;
	p = strstr(p, "\r\n\r\n");
	return p ? p + 4 : NULL;
}

/*
 * Every line ends in CRLF and is at most 998 octets; outside the returned part
 * (from `raw_from`, or nowhere when NULL) every octet is printable ASCII or TAB.
 */
static int lines_ok(const struct dsn_out *o, size_t raw_from, size_t raw_to)
{
	size_t col = 0;
	if (o->len < 2 || o->p[o->len - 2] != '\r' || o->p[o->len - 1] != '\n')
		return 0;
	for (size_t i = 0; i < o->len; i++) {
		unsigned char c = (unsigned char)o->p[i];
		if (c == '\r') {
			if (i + 1 >= o->len || o->p[i + 1] != '\n')
				return 0;
			i++;
			col = 0;
			continue;
		}
		if (c == '\n' || ++col > 998)
			return 0;
		int raw = i >= raw_from && i < raw_to;
		if (!raw && (c >= 0x7f || (c < 0x20 && c != '\t')))
			return 0;
	}
	return 1;
}

static int text_lines_ok(const struct result *res)
{
	const char *ret = returned_part(res->s, "message/rfc822");
	if (!ret)
		ret = returned_part(res->s, "text/rfc822-headers");
	size_t from = ret ? (size_t)(ret - res->s) : res->o.len;
	char b[80], close[90];
	if (!boundary_of(res->s, b, sizeof b))
		return 0;
	snprintf(close, sizeof close, "\r\n--%s--\r\n", b);
	const char *end = strstr(res->s, close);
	return end && lines_ok(&res->o, from, (size_t)(end - res->s));
}

/* ---- tests ---- */

static struct sample S[16];
static size_t NS;

static void samples_once(void)
{
	if (NS == 0)
		NS = build_samples(S);
}

TEST(every_sample_is_well_formed)
{
	samples_once();
	for (size_t i = 0; i < NS; i++) {
		struct result res;
		char v[256];
		compose(&S[i], BIG, &res);
		if (!CHECK_INT(res.rc, DSN_OK)) {
			fprintf(stderr, "     sample %s\n", S[i].name);
			release(&res);
			continue;
		}
		CHECK(text_lines_ok(&res));
		CHECK_STR(res.env.mail_from, "");
		CHECK_STR(res.env.rcpt_to, "alice@example.com");
		CHECK(strncmp(res.s, "From: Mail Delivery System <MAILER-DAEMON@" HOST ">\r\n",
		              strlen("From: Mail Delivery System <MAILER-DAEMON@" HOST ">\r\n")) ==
		      0);
		CHECK(field_value(res.s, "To", 0, v, sizeof v));
		CHECK_STR(v, "<alice@example.com>");
		CHECK(field_value(res.s, "Date", 0, v, sizeof v));
		CHECK_STR(v, "Thu, 28 May 2026 20:26:40 +0000");
		CHECK(field_value(res.s, "Message-ID", 0, v, sizeof v));
		CHECK_STR(v, "<20260528202640." QID "@" HOST ">");
		CHECK(strstr(res.s, "\r\nMIME-Version: 1.0\r\n") != NULL);
		CHECK(strstr(res.s, "\r\nAuto-Submitted: auto-replied\r\n") != NULL);
		CHECK(strstr(res.s, "\r\nContent-Type: multipart/report; "
		                    "report-type=delivery-status;\r\n\tboundary=\"") != NULL);
		CHECK(strstr(res.s, "Content-Type: text/plain; charset=us-ascii\r\n") != NULL);
		CHECK(field_value(status_part(res.s), "Reporting-MTA", 0, v, sizeof v));
		CHECK_STR(v, "dns; " HOST);
		CHECK(field_value(status_part(res.s), "X-Sharemail-Queue-ID", 0, v, sizeof v));
		CHECK_STR(v, QID);
		CHECK(field_value(status_part(res.s), "Arrival-Date", 0, v, sizeof v));
		CHECK_STR(v, "Thu, 28 May 2026 17:40:00 +0000");
		CHECK_INT(count_of(status_part(res.s), "\r\nFinal-Recipient: "), S[i].n);
		/* The same inputs give the same octets (no clock, no randomness). */
		struct result again;
		compose(&S[i], BIG, &again);
		CHECK_MEM(again.o.p, again.o.len, res.o.p, res.o.len);
		release(&again);
		release(&res);
	}
}

TEST(kinds_subject_and_text)
{
	static const struct {
		const char *sample, *subject, *intro;
	} cases[] = {
	        {"failure_full", "Undelivered Mail Returned to Sender",
	         "Your message could not be delivered"},
	        {"delay", "Delayed Mail (still being retried)", "This is only a warning"},
	        {"success", "Successful Mail Delivery Report", "the delivery report you asked"},
	};
	samples_once();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct sample *sm = sample_named(S, NS, cases[i].sample);
		struct result res;
		char v[256];
		compose(sm, BIG, &res);
		CHECK_INT(res.rc, DSN_OK);
		CHECK(field_value(res.s, "Subject", 0, v, sizeof v));
		CHECK_STR(v, cases[i].subject);
		CHECK(has_text(res.s, cases[i].intro));
		CHECK(strstr(res.s, "This is the mail system at host " HOST ".\r\n") != NULL);
		release(&res);
	}
}

TEST(actions_and_what_happens_next)
{
	static const struct {
		const char *sample;
		int k;
		const char *action, *status, *text;
	} cases[] = {
	        {"failure_full", 0, "failed", "5.1.1",
	         "<bob@example.org>: failed (5.1.1). No further attempts will be made."},
	        {"failure_full", 1, "failed", "5.4.6", "<carol@example.net>: failed (5.4.6). No"},
	        {"delay", 0, "delayed", "4.4.1",
	         "<dave@example.org>: not delivered yet (4.4.1). This system will keep trying "
	         "until Tue, 02 Jun 2026 11:33:20 +0000; you do not need to send the message "
	         "again."},
	        {"success", 0, "delivered", "2.0.0", "<erin@example.com>: delivered (2.0.0)."},
	        {"success", 1, "relayed", "2.0.0",
	         "<frank@example.org>: relayed (2.0.0) to a mail system that does not report on "
	         "delivery; no further report will come for this recipient."},
	        {"success", 2, "expanded", "2.0.0",
	         "<team@example.com>: delivered (2.0.0) to an alias, and passed on to its "
	         "members."},
	};
	samples_once();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct result res;
		char v[256];
		compose(sample_named(S, NS, cases[i].sample), BIG, &res);
		const char *st = status_part(res.s);
		CHECK(field_value(st, "Action", cases[i].k, v, sizeof v));
		CHECK_STR(v, cases[i].action);
		CHECK(field_value(st, "Status", cases[i].k, v, sizeof v));
		CHECK_STR(v, cases[i].status);
		CHECK(has_text(res.s, cases[i].text));
		release(&res);
	}
}

TEST(null_sender_never_gets_a_notice)
{
	samples_once();
	for (size_t i = 0; i < NS; i++) {
		struct sample sm = S[i];
		struct result res;
		sm.m.sender = "";
		compose(&sm, BIG, &res);
		CHECK_INT(res.rc, DSN_NULL_SENDER);
		CHECK_INT(res.o.len, 0);
		CHECK(res.env.rcpt_to == NULL);
		release(&res);
	}
	/* Refused first, whatever else is wrong. */
	struct sample sm = S[0];
	struct result res;
	sm.m.sender = "";
	sm.n = 0;
	sm.p.hostname = "bad host";
	compose(&sm, BIG, &res);
	CHECK_INT(res.rc, DSN_NULL_SENDER);
	release(&res);
	CHECK_STR(dsn_result_str(DSN_NULL_SENDER), "null sender: no notice for <>");
}

static char long_addr[DSN_ADDR_MAX + 2];

static void m_no_host(struct sample *s)
{
	s->p.hostname = NULL;
}
static void m_empty_host(struct sample *s)
{
	s->p.hostname = "";
}
static void m_bad_host(struct sample *s)
{
	s->p.hostname = "mx.example.com\r\nBcc: x";
}
static void m_no_msgid(struct sample *s)
{
	s->p.message_id = NULL;
}
static void m_bad_msgid(struct sample *s)
{
	s->p.message_id = "a b";
}
static void m_msgid_at(struct sample *s)
{
	s->p.message_id = "a@b";
}
static void m_kind(struct sample *s)
{
	s->p.kind = (enum dsn_kind)7;
}
static void m_now(struct sample *s)
{
	s->p.now = -99999999999LL;
}
static void m_no_sender(struct sample *s)
{
	s->m.sender = NULL;
}
static void m_long_sender(struct sample *s)
{
	s->m.sender = long_addr;
}
static void m_no_qid(struct sample *s)
{
	s->m.queue_id = NULL;
}
static void m_bad_qid(struct sample *s)
{
	s->m.queue_id = "abc-def";
}
static void m_long_qid(struct sample *s)
{
	s->m.queue_id = "0123456789012345678901234567890123";
}
static void m_long_envid(struct sample *s)
{
	s->m.envid = "0123456789012345678901234567890123456789012345678901234567890123456789"
	             "0123456789012345678901234567890";
}
static void m_no_data(struct sample *s)
{
	s->m.data = NULL;
}
static void m_no_rcpts(struct sample *s)
{
	s->n = 0;
}
static void m_null_rcpts(struct sample *s)
{
	s->n = 0; /* with r NULL below */
}
static void m_no_addr(struct sample *s)
{
	s->r[1].addr = NULL;
}
static void m_empty_addr(struct sample *s)
{
	s->r[0].addr = "";
}
static void m_long_addr(struct sample *s)
{
	s->r[0].addr = long_addr;
}
static void m_orcpt_nosemi(struct sample *s)
{
	s->r[0].orcpt = "bob@example.org";
}
static void m_orcpt_notype(struct sample *s)
{
	s->r[0].orcpt = ";bob@example.org";
}
static void m_long_orcpt(struct sample *s)
{
	s->r[0].orcpt = long_addr;
}
static void m_action(struct sample *s)
{
	s->r[1].action = (enum dsn_action)9;
}

TEST(invalid_parameters)
{
	static void (*const cases[])(struct sample *) = {
	        m_no_host,      m_empty_host,   m_bad_host,   m_no_msgid,   m_bad_msgid,
	        m_msgid_at,     m_kind,         m_now,        m_no_sender,  m_long_sender,
	        m_no_qid,       m_bad_qid,      m_long_qid,   m_long_envid, m_no_data,
	        m_no_rcpts,     m_null_rcpts,   m_no_addr,    m_empty_addr, m_long_addr,
	        m_orcpt_nosemi, m_orcpt_notype, m_long_orcpt, m_action,
	};
	samples_once();
	memset(long_addr, 'a', sizeof long_addr - 1);
	long_addr[DSN_ADDR_MAX - 12] = '@';
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sample sm = *sample_named(S, NS, "failure_full");
		struct dsn_out o;
		struct dsn_envelope env;
		cases[i](&sm);
		dsn_out_init(&o, BIG);
		enum dsn_result rc = dsn_compose(
		        &sm.p, &sm.m, cases[i] == m_null_rcpts ? NULL : sm.r, sm.n, &o, &env);
		if (!CHECK_INT(rc, DSN_INVALID))
			fprintf(stderr, "     case %zu\n", i);
		CHECK_INT(o.len, 0);
		dsn_out_free(&o);
	}
	/* Just within the limits is fine. */
	struct sample sm = *sample_named(S, NS, "failure_full");
	struct result res;
	long_addr[DSN_ADDR_MAX] = '\0';
	sm.r[0].addr = long_addr;
	sm.r[0].orcpt = "rfc822;x";
	sm.m.queue_id = "0123456789012345678901234567890";
	sm.m.envid = "0123456789012345678901234567890123456789012345678901234567890123456789"
	             "012345678901234567890123456789";
	compose(&sm, BIG, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK(text_lines_ok(&res));
	release(&res);
	struct dsn_envelope env;
	struct dsn_out o;
	dsn_out_init(&o, BIG);
	CHECK_INT(dsn_compose(NULL, &sm.m, sm.r, 1, &o, &env), DSN_INVALID);
	CHECK_INT(dsn_compose(&sm.p, NULL, sm.r, 1, &o, &env), DSN_INVALID);
	dsn_out_free(&o);
}

/* The third part's content (up to its delimiter) as a span; 0 if absent. */
static int third_part(const struct result *res, const char *type, const char **p, size_t *n)
{
	char b[80], delim[90];
	const char *start = returned_part(res->s, type);
	if (!start || !boundary_of(res->s, b, sizeof b))
		return 0;
	snprintf(delim, sizeof delim, "\r\n--%s--\r\n", b);
	const char *end = strstr(start, delim);
	if (!end)
		return 0;
	*p = res->o.p + (start - res->s);
	*n = (size_t)(end - start);
	return 1;
}

static char var_msg[4096];

/* msg_plain with its body replaced by body[0..blen). */
static size_t with_body(const char *body, size_t blen)
{
	size_t h = strlen(hdrs_plain);
	memcpy(var_msg, hdrs_plain, h);
	memcpy(var_msg + h, "\r\n", 2);
	memcpy(var_msg + h + 2, body, blen);
	return h + 2 + blen;
}

TEST(returned_part_table)
{
	enum { PLAIN, NUL_BODY, BARE_LF, BARE_CR, LINE_999, LINE_998, NO_FIELDS, EMPTY };
	static const struct {
		enum dsn_kind kind;
		enum esmtp_ret ret;
		int msg;
		size_t return_max;
		enum dsn_returned want;
		const char *phrase;
	} cases[] = {
	        {DSN_KIND_FAILURE, ESMTP_RET_FULL, PLAIN, 50000, DSN_RETURNED_FULL,
	         "Your message is attached below."},
	        {DSN_KIND_FAILURE, ESMTP_RET_UNSET, PLAIN, 50000, DSN_RETURNED_FULL,
	         "Your message is attached below."},
	        {DSN_KIND_FAILURE, ESMTP_RET_HDRS, PLAIN, 50000, DSN_RETURNED_HEADERS,
	         "attached below, as you asked (RET=HDRS)."},
	        {DSN_KIND_FAILURE, ESMTP_RET_UNSET, PLAIN, 100, DSN_RETURNED_HEADERS,
	         "Your message was 147 octets, more than the 100 this system returns whole;"},
	        {DSN_KIND_FAILURE, ESMTP_RET_FULL, PLAIN, 100, DSN_RETURNED_HEADERS,
	         "more than the 100 this system returns whole; only its header section"},
	        {DSN_KIND_DELAY, ESMTP_RET_FULL, PLAIN, 50000, DSN_RETURNED_HEADERS,
	         "The header section of your message is attached below."},
	        {DSN_KIND_SUCCESS, ESMTP_RET_UNSET, PLAIN, 50000, DSN_RETURNED_HEADERS,
	         "The header section of your message is attached below."},
	        {DSN_KIND_FAILURE, ESMTP_RET_FULL, PLAIN, 0, DSN_RETURNED_NONE,
	         "This system does not return messages in its reports."},
	        {DSN_KIND_FAILURE, ESMTP_RET_FULL, EMPTY, 50000, DSN_RETURNED_NONE,
	         "Your message was empty, so nothing of it is attached."},
	        {DSN_KIND_FAILURE, ESMTP_RET_HDRS, NO_FIELDS, 50000, DSN_RETURNED_NONE,
	         "Your message has no header section that could be attached."},
	        {DSN_KIND_FAILURE, ESMTP_RET_FULL, NUL_BODY, 50000, DSN_RETURNED_HEADERS,
	         "cannot be returned as it is (a NUL, a bare CR or LF, or a line over 998"},
	        {DSN_KIND_FAILURE, ESMTP_RET_FULL, BARE_LF, 50000, DSN_RETURNED_HEADERS,
	         "cannot be returned as it is"},
	        {DSN_KIND_FAILURE, ESMTP_RET_FULL, BARE_CR, 50000, DSN_RETURNED_HEADERS,
	         "cannot be returned as it is"},
	        {DSN_KIND_FAILURE, ESMTP_RET_FULL, LINE_999, 50000, DSN_RETURNED_HEADERS,
	         "cannot be returned as it is"},
	        {DSN_KIND_FAILURE, ESMTP_RET_FULL, LINE_998, 50000, DSN_RETURNED_FULL,
	         "Your message is attached below."},
	};
	static char line[1002];
	samples_once();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sample sm = *sample_named(S, NS, "failure_hdrs");
		struct result res;
		size_t len = 0;
		const char *data = var_msg;
		switch (cases[i].msg) {
		case PLAIN: data = msg_plain, len = sizeof msg_plain - 1; break;
		case NUL_BODY: len = with_body("a\0b\r\n", 5); break;
		case BARE_LF: len = with_body("a\nb\r\n", 5); break;
		case BARE_CR: len = with_body("a\rb\r\n", 5); break;
		case LINE_999:
		case LINE_998:
			memset(line, 'x', sizeof line);
			len = cases[i].msg == LINE_999 ? 999 : 998;
			memcpy(line + len, "\r\n", 2);
			len = with_body(line, len + 2);
			break;
		case NO_FIELDS: data = "\r\nbody only\r\n", len = 13; break;
		case EMPTY: data = "", len = 0; break;
		}
		sm.p.kind = cases[i].kind;
		sm.p.return_max = cases[i].return_max;
		sm.m = msg_of(data, len, cases[i].ret);
		compose(&sm, BIG, &res);
		const char *p;
		size_t n;
		if (!CHECK_INT(res.rc, DSN_OK) || !CHECK_INT(res.env.returned, cases[i].want)) {
			fprintf(stderr, "     case %zu\n", i);
			release(&res);
			continue;
		}
		CHECK(text_lines_ok(&res));
		if (!CHECK(has_text(res.s, cases[i].phrase)))
			fprintf(stderr, "     case %zu: no \"%s\"\n", i, cases[i].phrase);
		int full = third_part(&res, "message/rfc822", &p, &n);
		int hdrs = third_part(&res, "text/rfc822-headers", &p, &n);
		CHECK_INT(full, cases[i].want == DSN_RETURNED_FULL);
		CHECK_INT(hdrs, cases[i].want == DSN_RETURNED_HEADERS);
		if (full)
			CHECK_MEM(p, n, data, len);
		if (hdrs)
			CHECK_MEM(p, n, hdrs_plain, strlen(hdrs_plain));
		/* Three parts, or two when nothing is returned. */
		char b[80], delim[90];
		boundary_of(res.s, b, sizeof b);
		snprintf(delim, sizeof delim, "\r\n--%s\r\n", b);
		CHECK_INT(count_of(res.s, delim), cases[i].want == DSN_RETURNED_NONE ? 2 : 3);
		release(&res);
	}
}

TEST(size_cap_edges)
{
	samples_once();
	size_t len = sizeof msg_plain - 1;
	for (int d = -1; d <= 1; d++) {
		struct sample sm = *sample_named(S, NS, "failure_full");
		struct result res;
		sm.p.return_max = len + (size_t)d;
		compose(&sm, BIG, &res);
		CHECK_INT(res.rc, DSN_OK);
		CHECK_INT(res.env.returned, d < 0 ? DSN_RETURNED_HEADERS : DSN_RETURNED_FULL);
		release(&res);
	}
}

TEST(header_section_capped_at_field_boundary)
{
	samples_once();
	/* hdrs_plain's first two fields are 33 + 21 octets: a cap of 60 keeps two. */
	struct sample sm = *sample_named(S, NS, "failure_hdrs");
	struct result res;
	const char *p;
	size_t n;
	sm.p.return_max = 60;
	compose(&sm, BIG, &res);
	CHECK_INT(res.env.returned, DSN_RETURNED_HEADERS);
	CHECK(third_part(&res, "text/rfc822-headers", &p, &n));
	CHECK_MEM(p, n, hdrs_plain, 54);
	CHECK(has_text(res.s, "The header section was cut short at 60 octets."));
	release(&res);
	/* A cap below the first field returns nothing. */
	sm.p.return_max = 10;
	compose(&sm, BIG, &res);
	CHECK_INT(res.env.returned, DSN_RETURNED_NONE);
	release(&res);
}

TEST(unclean_header_fields_left_out)
{
	static const char m[] = "Subject: ok\r\n"
	                        "X-Nul: a\0b\r\n"
	                        "X-Bare: a\nb\r\n"
	                        "From: a@b\r\n"
	                        "not a field line\r\n"
	                        "To: after@junk\r\n"
	                        "\r\nbody\r\n";
	samples_once();
	struct sample sm = *sample_named(S, NS, "failure_hdrs");
	struct result res;
	const char *p;
	size_t n;
	sm.m = msg_of(m, sizeof m - 1, ESMTP_RET_HDRS);
	compose(&sm, BIG, &res);
	CHECK_INT(res.env.returned, DSN_RETURNED_HEADERS);
	CHECK(third_part(&res, "text/rfc822-headers", &p, &n));
	CHECK_MEM(p, n, "Subject: ok\r\nFrom: a@b\r\n", 24);
	CHECK(has_text(res.s, "Lines that were not clean header fields were left out."));
	CHECK(text_lines_ok(&res));
	release(&res);
	/* Clean ones only: no such note. */
	sm.m = MSG(msg_plain, ESMTP_RET_HDRS);
	compose(&sm, BIG, &res);
	CHECK(strstr(res.s, "left out") == NULL);
	CHECK(strstr(res.s, "cut short") == NULL);
	release(&res);
}

TEST(no_separator_and_empty)
{
	samples_once();
	const struct sample *nosep = sample_named(S, NS, "no_separator");
	struct sample sm = *nosep;
	struct result res;
	const char *p;
	size_t n;
	/* RET=HDRS: both fields, the last given its CRLF. */
	compose(&sm, BIG, &res);
	CHECK_INT(res.env.returned, DSN_RETURNED_HEADERS);
	CHECK(third_part(&res, "text/rfc822-headers", &p, &n));
	CHECK_MEM(p, n, "Subject: only headers\r\nX-Last: no CRLF\r\n", 40);
	CHECK(text_lines_ok(&res));
	release(&res);
	/* RET=FULL: returned as it is; the delimiter's CRLF ends its last line. */
	sm.m.ret = ESMTP_RET_FULL;
	compose(&sm, BIG, &res);
	CHECK_INT(res.env.returned, DSN_RETURNED_FULL);
	CHECK(third_part(&res, "message/rfc822", &p, &n));
	CHECK_MEM(p, n, msg_nosep, sizeof msg_nosep - 1);
	CHECK(text_lines_ok(&res));
	release(&res);
	/* Empty: two parts, and the notice still names the recipient. */
	compose(sample_named(S, NS, "empty"), BIG, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK_INT(res.env.returned, DSN_RETURNED_NONE);
	CHECK(strstr(res.s, "message/rfc822") == NULL);
	CHECK(strstr(res.s, "text/rfc822-headers") == NULL);
	CHECK(has_text(res.s, "<carol@example.net>: failed (5.4.6)."));
	CHECK(text_lines_ok(&res));
	release(&res);
}

TEST(envid_and_orcpt_carried_as_given)
{
	samples_once();
	struct result res;
	char v[256];
	/* Present: printed decoded, "addr-type;address" as given (RFC 3461 4.2, 4.4). */
	compose(sample_named(S, NS, "failure_full"), BIG, &res);
	const char *st = status_part(res.s);
	CHECK(field_value(st, "Original-Envelope-Id", 0, v, sizeof v));
	CHECK_STR(v, "QQ314159 x+y");
	CHECK(strstr(st, "\r\nOriginal-Envelope-Id: ") == st);
	CHECK(field_value(st, "Original-Recipient", 0, v, sizeof v));
	CHECK_STR(v, "rfc822;Bob@Example.ORG");
	CHECK(field_value(st, "Final-Recipient", 0, v, sizeof v));
	CHECK_STR(v, "rfc822; bob@example.org");
	CHECK(field_value(st, "Final-Recipient", 1, v, sizeof v));
	CHECK_STR(v, "rfc822; carol@example.net");
	/* Only bob had an ORCPT: it precedes his Final-Recipient, carol has none. */
	CHECK_INT(count_of(st, "Original-Recipient:"), 1);
	CHECK(strstr(st, "\r\n\r\nOriginal-Recipient: rfc822;Bob@Example.ORG\r\nFinal-Recipient: "
	                 "rfc822; bob@example.org\r\n") != NULL);
	CHECK(strstr(st, "\r\n\r\nFinal-Recipient: rfc822; carol@example.net\r\n") != NULL);
	release(&res);
	/* Absent: no field at all. */
	compose(sample_named(S, NS, "failure_hdrs"), BIG, &res);
	CHECK(strstr(res.s, "Original-Envelope-Id") == NULL);
	CHECK(strstr(res.s, "\r\n\r\nReporting-MTA: dns; " HOST "\r\n") != NULL);
	release(&res);
	/* Hostile octets cannot split a field. */
	struct sample sm = *sample_named(S, NS, "failure_full");
	sm.m.envid = "a\r\nX-Evil: 1";
	sm.r[0].orcpt = "rfc822;b\r\nX-Evil: 2";
	sm.m.sender = "al\r\nBcc: x@y";
	compose(&sm, BIG, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK(strstr(res.s, "\r\nX-Evil") == NULL);
	CHECK(strstr(res.s, "\r\nBcc") == NULL);
	CHECK(field_value(status_part(res.s), "Original-Envelope-Id", 0, v, sizeof v));
	CHECK_STR(v, "a??X-Evil: 1");
	CHECK(field_value(res.s, "To", 0, v, sizeof v));
	CHECK_STR(v, "<al??Bcc: x@y>");
	CHECK_STR(res.env.rcpt_to, "al\r\nBcc: x@y"); /* the envelope is the caller's as given */
	CHECK(text_lines_ok(&res));
	release(&res);
}

TEST(every_recipient_listed_in_order)
{
	samples_once();
	struct result res;
	compose(sample_named(S, NS, "success"), BIG, &res);
	const char *st = status_part(res.s);
	const char *a = strstr(st, "rfc822; erin@example.com");
	const char *b = strstr(st, "rfc822; frank@example.org");
	const char *c = strstr(st, "rfc822; team@example.com");
	CHECK(a && b && c && a < b && b < c);
	const char *ta = strstr(res.s, "<erin@example.com>:");
	const char *tb = strstr(res.s, "<frank@example.org>:");
	const char *tc = strstr(res.s, "<team@example.com>:");
	CHECK(ta && tb && tc && ta < tb && tb < tc && tc < st);
	/* Recipient groups are separated by blank lines (RFC 3464 2.1). */
	CHECK_INT(count_of(st, "\r\n\r\nFinal-Recipient: "), 2);
	CHECK_INT(count_of(st, "\r\n\r\nOriginal-Recipient: "), 1);
	release(&res);
}

/* The sanitised form of hostile_diag, built independently of dsn.c. */
static size_t expected_diag(char *out, size_t max)
{
	size_t o = 0;
	int sp = 0;
	for (size_t i = 0; i < sizeof hostile_diag; i++) {
		unsigned char c = (unsigned char)hostile_diag[i];
		if (strchr(" \t\r\n", c) && c) {
			sp = o > 0;
			continue;
		}
		if (o + (size_t)sp + 1 > max)
			break;
		if (sp)
			out[o++] = ' ';
		sp = 0;
		out[o++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	memcpy(out + o, "...", 4);
	return o + 3;
}

TEST(hostile_diagnostic_sanitised_and_folded)
{
	samples_once();
	struct result res;
	char v[2048], want[2048];
	compose(sample_named(S, NS, "hostile"), BIG, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK(text_lines_ok(&res));
	const char *st = status_part(res.s);
	CHECK(field_value(st, "Diagnostic-Code", 0, v, sizeof v));
	size_t wn = expected_diag(want, DSN_DIAG_MAX);
	CHECK_INT(wn, DSN_DIAG_MAX + 3);
	char full[2100];
	snprintf(full, sizeof full, "smtp; 550 %s", want);
	CHECK_STR(v, full);
	/* Nothing injected: no forged field, no forged delimiter line. */
	CHECK(strstr(res.s, "\r\nX-Injected") == NULL);
	CHECK(field_value(st, "Remote-MTA", 0, v, sizeof v));
	CHECK_STR(v, "dns; mx??.evil");
	/* Folded: in the status part no line passes 78 octets (no word is that long). */
	const char *end = strstr(st, "\r\n--=_");
	size_t col = 0, longest = 0;
	for (const char *p = st; p < end; p++) {
		if (*p == '\r') {
			col = 0;
			p++;
			continue;
		}
		if (++col > longest)
			longest = col;
	}
	CHECK(longest <= 78);
	CHECK(count_of(st, "\r\n ") > 5);
	/* The text part names the host and the reason, also sanitised. */
	CHECK(has_text(res.s, "The mail server mx??.evil replied: 550 5.7.1 bad X-Injected: yes"));
	release(&res);
}

TEST(long_unbroken_diagnostic_stays_within_998)
{
	static char d[3000];
	samples_once();
	memset(d, 'Z', sizeof d);
	struct sample sm = *sample_named(S, NS, "failure_full");
	struct result res;
	char v[2048];
	sm.r[0].diag = d;
	sm.r[0].diag_len = sizeof d;
	compose(&sm, BIG, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK(text_lines_ok(&res));
	CHECK(field_value(status_part(res.s), "Diagnostic-Code", 0, v, sizeof v));
	CHECK_INT(strlen(v), strlen("smtp; 550 ") + DSN_DIAG_MAX + 3);
	release(&res);
}

TEST(boundary_never_in_content)
{
	samples_once();
	struct result res;
	char b[80];
	const char *p;
	size_t n;
	/* Unaltered when nothing collides. */
	compose(sample_named(S, NS, "failure_full"), BIG, &res);
	CHECK(boundary_of(res.s, b, sizeof b));
	CHECK_STR(b, "=_sharemail_" QID);
	release(&res);
	/* The message holds the boundary and it followed by every letter and digit. */
	compose(sample_named(S, NS, "collision"), BIG, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK(boundary_of(res.s, b, sizeof b));
	CHECK(strlen(b) > strlen("=_sharemail_" QID) && strlen(b) <= 70);
	CHECK(strncmp(b, "=_sharemail_" QID, strlen("=_sharemail_" QID)) == 0);
	CHECK(third_part(&res, "message/rfc822", &p, &n));
	CHECK_MEM(p, n, collision_msg, collision_len);
	CHECK(memmem(p, n, b, strlen(b)) == NULL);
	CHECK_INT(count_of(res.s, b), 5);
	release(&res);
	/* A peer's reply text naming the boundary. */
	struct sample sm = *sample_named(S, NS, "failure_full");
	sm.r[0].diag = "550 see --=_sharemail_" QID " here";
	compose(&sm, BIG, &res);
	CHECK(boundary_of(res.s, b, sizeof b));
	CHECK(strcmp(b, "=_sharemail_" QID) != 0);
	CHECK_INT(count_of(res.s, b), 5);
	release(&res);
}

TEST(eight_bit_declared_from_the_octets_returned)
{
	static const char hdr8[] = "Subject: caf\xc3\xa9\r\nFrom: a@b\r\n\r\nplain body\r\n";
	static const struct {
		const char *data;
		size_t len;
		int body_8bit;
		enum esmtp_ret ret;
		enum dsn_returned want;
		int want8;
	} cases[] = {
	        /* 8BITMIME body returned whole: 8bit part, 8BITMIME notice. */
	        {msg_8bit, sizeof msg_8bit - 1, 1, ESMTP_RET_FULL, DSN_RETURNED_FULL, 1},
	        /* Only its (7-bit) header section: a 7-bit notice. */
	        {msg_8bit, sizeof msg_8bit - 1, 1, ESMTP_RET_HDRS, DSN_RETURNED_HEADERS, 0},
	        /* Said 7BIT but holds 8-bit octets: labelled as what it is. */
	        {msg_8bit, sizeof msg_8bit - 1, 0, ESMTP_RET_FULL, DSN_RETURNED_FULL, 1},
	        /* 8-bit in the header section, headers returned. */
	        {hdr8, sizeof hdr8 - 1, 0, ESMTP_RET_HDRS, DSN_RETURNED_HEADERS, 1},
	        /* 8BITMIME declared, all ASCII: nothing 8-bit to carry. */
	        {msg_plain, sizeof msg_plain - 1, 1, ESMTP_RET_FULL, DSN_RETURNED_FULL, 0},
	};
	samples_once();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sample sm = *sample_named(S, NS, "eightbit");
		struct result res;
		sm.m = msg_of(cases[i].data, cases[i].len, cases[i].ret);
		sm.m.body_8bit = cases[i].body_8bit;
		compose(&sm, BIG, &res);
		CHECK_INT(res.rc, DSN_OK);
		CHECK_INT(res.env.returned, cases[i].want);
		CHECK_INT(res.env.body_8bitmime, cases[i].want8);
		/* Declared on the part and on the multipart that holds it (RFC 2045 6.4). */
		const char *ret = returned_part(res.s, cases[i].want == DSN_RETURNED_FULL
		                                               ? "message/rfc822"
		                                               : "text/rfc822-headers");
		if (!CHECK(ret != NULL)) {
			release(&res);
			continue;
		}
		char *ours = strndup(res.s, (size_t)(ret - res.s));
		CHECK_INT(count_of(ours, "\r\nContent-Transfer-Encoding: 8bit\r\n"),
		          cases[i].want8 ? 2 : 0);
		CHECK_INT(memcmp(ret - 8, "8bit\r\n\r\n", 8) == 0, cases[i].want8);
		free(ours);
		CHECK(text_lines_ok(&res));
		release(&res);
	}
}

TEST(notice_fits_its_maximum)
{
	static char body[3000];
	samples_once();
	for (size_t i = 0; i < sizeof body; i += 60) {
		memset(body + i, 'b', 58);
		memcpy(body + i + 58, "\r\n", 2);
	}
	struct sample s = *sample_named(S, NS, "failure_full");
	const struct sample *sm = &s;
	struct result full, res;
	s.m = msg_of(var_msg, with_body(body, sizeof body), ESMTP_RET_FULL);
	compose(sm, BIG, &full);
	CHECK_INT(full.env.returned, DSN_RETURNED_FULL);
	/* Exactly the room it needs: still whole. */
	compose(sm, full.o.len, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK_INT(res.env.returned, DSN_RETURNED_FULL);
	CHECK_MEM(res.o.p, res.o.len, full.o.p, full.o.len);
	release(&res);
	/* One octet less: the header section, and the text says why. */
	compose(sm, full.o.len - 1, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK_INT(res.env.returned, DSN_RETURNED_HEADERS);
	CHECK(res.o.len <= full.o.len - 1);
	CHECK(has_text(res.s, "too large to be returned whole in this report"));
	CHECK(text_lines_ok(&res));
	size_t hdr_len = res.o.len;
	release(&res);
	/* Less than that: nothing returned. */
	compose(sm, hdr_len - 1, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK_INT(res.env.returned, DSN_RETURNED_NONE);
	CHECK(has_text(res.s, "even its header section"));
	CHECK(text_lines_ok(&res));
	size_t none_len = res.o.len;
	release(&res);
	/* Not even that: refused, buffer empty. */
	compose(sm, none_len - 1, &res);
	CHECK_INT(res.rc, DSN_TOO_BIG);
	CHECK_INT(res.o.len, 0);
	release(&res);
	compose(sm, 0, &res);
	CHECK_INT(res.rc, DSN_TOO_BIG);
	release(&res);
	release(&full);
}

TEST(status_fits_the_action)
{
	static const struct {
		enum dsn_action action;
		const char *status, *want;
	} cases[] = {
	        {DSN_ACTION_FAILED, "5.1.1", "5.1.1"},
	        {DSN_ACTION_FAILED, "4.4.7", "4.4.7"}, /* RFC 3464 2.3.3: a timed-out failure */
	        {DSN_ACTION_FAILED, "2.0.0", "5.0.0"},
	        {DSN_ACTION_FAILED, NULL, "5.0.0"},
	        {DSN_ACTION_FAILED, "5.1", "5.0.0"},
	        {DSN_ACTION_FAILED, "5.01.1", "5.0.0"},
	        {DSN_ACTION_FAILED, "5.1.1\r\nX: y", "5.0.0"},
	        {DSN_ACTION_DELAYED, "4.4.1", "4.4.1"},
	        {DSN_ACTION_DELAYED, "5.1.1", "4.0.0"},
	        {DSN_ACTION_DELAYED, "", "4.0.0"},
	        {DSN_ACTION_DELIVERED, "2.1.5", "2.1.5"},
	        {DSN_ACTION_DELIVERED, "4.0.0", "2.0.0"},
	        {DSN_ACTION_RELAYED, "2.0.0", "2.0.0"},
	        {DSN_ACTION_RELAYED, "5.0.0", "2.0.0"},
	        {DSN_ACTION_EXPANDED, NULL, "2.0.0"},
	};
	samples_once();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sample sm = *sample_named(S, NS, "failure_hdrs");
		struct result res;
		char v[64];
		sm.r[0].action = cases[i].action;
		sm.r[0].status = cases[i].status;
		compose(&sm, BIG, &res);
		CHECK_INT(res.rc, DSN_OK);
		CHECK(field_value(status_part(res.s), "Status", 0, v, sizeof v));
		if (!CHECK_STR(v, cases[i].want))
			fprintf(stderr, "     case %zu\n", i);
		release(&res);
	}
}

TEST(dates_and_will_retry_until)
{
	samples_once();
	struct result res;
	char v[64];
	compose(sample_named(S, NS, "delay"), BIG, &res);
	const char *st = status_part(res.s);
	CHECK(field_value(st, "Last-Attempt-Date", 0, v, sizeof v));
	CHECK_STR(v, "Thu, 28 May 2026 20:10:00 +0000");
	CHECK(field_value(st, "Will-Retry-Until", 0, v, sizeof v));
	CHECK_STR(v, "Tue, 02 Jun 2026 11:33:20 +0000");
	CHECK(has_text(res.s, "keep trying until Tue, 02 Jun 2026"));
	release(&res);
	/* Never for other actions (RFC 3464 2.3.9), even when given. */
	compose(sample_named(S, NS, "success"), BIG, &res);
	CHECK(strstr(res.s, "Will-Retry-Until") == NULL);
	release(&res);
	/* Unknown or unformattable times are left out; a delay without an end says so. */
	struct sample sm = *sample_named(S, NS, "delay");
	sm.m.arrival = 0;
	sm.r[0].last_attempt = 99999999999999LL;
	sm.r[0].retry_until = 0;
	compose(&sm, BIG, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK(strstr(res.s, "Arrival-Date") == NULL);
	CHECK(strstr(res.s, "Last-Attempt-Date") == NULL);
	CHECK(strstr(res.s, "Will-Retry-Until") == NULL);
	CHECK(has_text(res.s, "will keep trying; you do not need"));
	release(&res);
}

TEST(diagnostic_forms)
{
	static const struct {
		int code;
		const char *diag, *remote;
		const char *want_field; /* NULL: no Diagnostic-Code */
		const char *want_text;
	} cases[] = {
	        {550, "5.1.1 no such user", "mx.example.org", "smtp; 550 5.1.1 no such user",
	         "The mail server mx.example.org replied: 550 5.1.1 no such user"},
	        {421, NULL, "mx.example.org", "smtp; 421",
	         "The mail server mx.example.org replied: 421"},
	        {554, "no", NULL, "smtp; 554 no", "The reply was: 554 no"},
	        {0, "mailbox full", NULL, "X-Sharemail; mailbox full", "Reason: mailbox full"},
	        {999, "odd code", NULL, "X-Sharemail; odd code", "Reason: odd code"},
	        {-5, "negative", NULL, "X-Sharemail; negative", "Reason: negative"},
	        {0, NULL, NULL, NULL, NULL},
	        {0, "", NULL, NULL, NULL},
	        {0, "  \r\n ", NULL, "X-Sharemail; ", "Reason: "},
	};
	samples_once();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sample sm = *sample_named(S, NS, "failure_hdrs");
		struct result res;
		char v[256];
		sm.r[0].reply_code = cases[i].code;
		sm.r[0].diag = cases[i].diag;
		sm.r[0].remote_mta = cases[i].remote;
		compose(&sm, BIG, &res);
		CHECK_INT(res.rc, DSN_OK);
		const char *st = status_part(res.s);
		int has = field_value(st, "Diagnostic-Code", 0, v, sizeof v);
		CHECK_INT(has, cases[i].want_field != NULL);
		if (has && !CHECK_STR(v, cases[i].want_field))
			fprintf(stderr, "     case %zu\n", i);
		CHECK_INT(strstr(st, "Remote-MTA") != NULL, cases[i].remote != NULL);
		if (cases[i].want_text)
			CHECK(has_text(res.s, cases[i].want_text));
		else
			CHECK(strstr(res.s, "Reason:") == NULL &&
			      strstr(res.s, "replied:") == NULL);
		CHECK(text_lines_ok(&res));
		release(&res);
	}
}

TEST(output_buffer)
{
	samples_once();
	struct dsn_out o;
	struct dsn_envelope env;
	dsn_out_free(NULL);
	dsn_out_init(&o, BIG);
	CHECK(o.p == NULL && o.len == 0 && o.max == BIG);
	/* A second notice replaces the first. */
	const struct sample *a = sample_named(S, NS, "failure_full");
	const struct sample *b = sample_named(S, NS, "empty");
	CHECK_INT(dsn_compose(&a->p, &a->m, a->r, a->n, &o, &env), DSN_OK);
	size_t alen = o.len;
	CHECK(o.cap >= o.len && o.cap <= BIG);
	CHECK_INT(dsn_compose(&b->p, &b->m, b->r, b->n, &o, &env), DSN_OK);
	CHECK(o.len < alen);
	CHECK(strncmp(o.p, "From: ", 6) == 0);
	/* A refused notice leaves it empty. */
	struct sample c = *a;
	c.m.sender = "";
	CHECK_INT(dsn_compose(&c.p, &c.m, c.r, c.n, &o, &env), DSN_NULL_SENDER);
	CHECK_INT(o.len, 0);
	dsn_out_free(&o);
	CHECK(o.p == NULL && o.len == 0 && o.cap == 0 && o.max == BIG);
	dsn_out_free(&o);
	/* A maximum below the first allocation step is respected exactly. */
	struct result res;
	compose(b, BIG, &res);
	size_t need = res.o.len;
	release(&res);
	compose(b, need, &res);
	CHECK_INT(res.rc, DSN_OK);
	CHECK_INT(res.o.cap, need);
	release(&res);
	CHECK_STR(dsn_result_str(DSN_OK), "ok");
	CHECK_STR(dsn_result_str(DSN_INVALID), "invalid parameters");
	CHECK_STR(dsn_result_str(DSN_TOO_BIG), "notice larger than its maximum");
	CHECK_STR(dsn_result_str(DSN_NOMEM), "out of memory");
	CHECK_STR(dsn_result_str((enum dsn_result)42), "unknown");
}

/* ---- --emit DIR ---- */

static const char *returned_word(enum dsn_returned r)
{
	return r == DSN_RETURNED_FULL ? "full" : r == DSN_RETURNED_HEADERS ? "headers" : "none";
}

static int emit(const char *dir)
{
	samples_once();
	for (size_t i = 0; i < NS; i++) {
		struct result res;
		char path[4096];
		compose(&S[i], BIG, &res);
		if (res.rc != DSN_OK) {
			fprintf(stderr, "%s: %s\n", S[i].name, dsn_result_str(res.rc));
			release(&res);
			return 1;
		}
		snprintf(path, sizeof path, "%s/%s.eml", dir, S[i].name);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(res.o.p, 1, res.o.len, f) != res.o.len || fclose(f) != 0) {
			perror(path);
			release(&res);
			return 1;
		}
		snprintf(path, sizeof path, "%s/%s.env", dir, S[i].name);
		f = fopen(path, "w");
		if (!f) {
			perror(path);
			release(&res);
			return 1;
		}
		fprintf(f, "mail_from=%s\nrcpt_to=%s\nbody_8bitmime=%d\nreturned=%s\n",
		        res.env.mail_from, res.env.rcpt_to, res.env.body_8bitmime,
		        returned_word(res.env.returned));
		fclose(f);
		release(&res);
	}
	printf("%zu samples written to %s\n", NS, dir);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
	        T(every_sample_is_well_formed),
	        T(kinds_subject_and_text),
	        T(actions_and_what_happens_next),
	        T(null_sender_never_gets_a_notice),
	        T(invalid_parameters),
	        T(returned_part_table),
	        T(size_cap_edges),
	        T(header_section_capped_at_field_boundary),
	        T(unclean_header_fields_left_out),
	        T(no_separator_and_empty),
	        T(envid_and_orcpt_carried_as_given),
	        T(every_recipient_listed_in_order),
	        T(hostile_diagnostic_sanitised_and_folded),
	        T(long_unbroken_diagnostic_stays_within_998),
	        T(boundary_never_in_content),
	        T(eight_bit_declared_from_the_octets_returned),
	        T(notice_fits_its_maximum),
	        T(status_fits_the_action),
	        T(dates_and_will_retry_until),
	        T(diagnostic_forms),
	        T(output_buffer),
	};
	if (argc == 3 && strcmp(argv[1], "--emit") == 0)
		return emit(argv[2]);
	return harness_run(cases, sizeof cases / sizeof cases[0], argc, argv);
}
