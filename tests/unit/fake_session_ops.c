/* fake_session_ops: see fake_session_ops.h. */
#include "fake_session_ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "directory/pop_login.h"
#include "proto/mailaddr.h"
#include "queue/envelope.h"

void fake_buf_add(struct fake_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (np == NULL)
			abort();
		b->p = np;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void fake_buf_str(struct fake_buf *b, const char *s)
{
	fake_buf_add(b, s, strlen(s));
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

void fake_buf_unescape(struct fake_buf *out, const char *s)
{
	for (size_t i = 0; s[i]; i++) {
		char ch = s[i];
		if (ch == '\\' && s[i + 1]) {
			char n = s[++i];
			if (n == 'r')
				ch = '\r';
			else if (n == 'n')
				ch = '\n';
			else if (n == 't')
				ch = '\t';
			else if (n == '0')
				ch = '\0';
			else if (n == 'x' && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
				ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
				i += 2;
			} else
				ch = n;
		}
		fake_buf_add(out, &ch, 1);
	}
}

/* ---- the record ---- */

/* Escapes one stored or output line for the record. */
static void rec_line(struct fake_buf *b, const char *prefix, const char *p, size_t n)
{
	fake_buf_str(b, prefix);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		char esc[8];
		if (ch < 0x20 || ch > 0x7e || ch == '\\') {
			snprintf(esc, sizeof esc, "\\x%02X", ch);
			fake_buf_str(b, esc);
		} else {
			fake_buf_add(b, &p[i], 1);
		}
	}
	fake_buf_str(b, "\n");
}

/* Splits octets on CRLF into record lines; a tail without CRLF is marked. */
static void rec_text(struct fake_buf *b, const char *prefix, const char *p, size_t n)
{
	size_t start = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == '\r' && p[i + 1] == '\n') {
			rec_line(b, prefix, p + start, i - start);
			start = i + 2;
			i++;
		}
	}
	if (start < n) {
		rec_line(b, prefix, p + start, n - start);
		fake_buf_str(b, "## (no CRLF at the end)\n");
	}
}

void fake_session_drain(struct fake_session *f)
{
	size_t n;
	if (f->s == NULL)
		return;
	const char *o = smtp_session_output(f->s, &n);
	if (n > 0 && f->record)
		rec_text(&f->rec, "", o, n);
	smtp_session_output_done(f->s, n);
}

/* Records a fake event after the output produced before it, so both orders agree. */
static void event(struct fake_session *f, const char *prefix, const char *p, size_t n)
{
	if (!f->record)
		return;
	fake_session_drain(f);
	rec_line(&f->rec, prefix, p, n);
}

static void event_str(struct fake_session *f, const char *line)
{
	event(f, "", line, strlen(line));
}

/* ---- the directory ---- */

static const struct {
	const char *mailbox;
	enum lookup_result r;
	int can_receive, over_quota;
	enum lookup_kind kind;
	int members_only;
} directory[] = {
        {"alice@example.com", LOOKUP_FOUND, 1, 0, LOOKUP_KIND_ACCOUNT, 0},
        {"bob@example.org", LOOKUP_FOUND, 1, 0, LOOKUP_KIND_ACCOUNT, 0},
        {"off@example.com", LOOKUP_FOUND, 0, 0, LOOKUP_KIND_ACCOUNT, 0},
        {"busy@example.com", LOOKUP_TEMPFAIL, 0, 0, LOOKUP_KIND_ACCOUNT, 0},
        {"\"a b\"@example.com", LOOKUP_FOUND, 1, 0, LOOKUP_KIND_ACCOUNT, 0},
        {"list@example.com", LOOKUP_FOUND, 1, 0, LOOKUP_KIND_LIST, 0},
        {"members@example.com", LOOKUP_FOUND, 1, 0, LOOKUP_KIND_LIST, 1},
        {"full@example.com", LOOKUP_FOUND, 0, 1, LOOKUP_KIND_ACCOUNT, 0},
};

/* The one member of members@example.com. */
static int is_member(const char *sender, size_t len)
{
	static const char member[] = "alice@example.com";
	if (sender == NULL || len != sizeof member - 1)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = sender[i] >= 'A' && sender[i] <= 'Z' ? (char)(sender[i] + 32) : sender[i];
		if (ch != member[i])
			return 0;
	}
	return 1;
}

static enum lookup_result fake_lookup(void *arg, const char *mailbox, size_t len,
                                      struct lookup_answer *out)
{
	struct fake_session *f = arg;
	char key[600];
	f->lookups++;
	if (mailbox == NULL || len >= sizeof key) {
		f->broken++; /* the path parser bounds every mailbox */
		return LOOKUP_NOTFOUND;
	}
	for (size_t i = 0; i < len; i++)
		key[i] = (char)((mailbox[i] >= 'A' && mailbox[i] <= 'Z') ? mailbox[i] + 32
		                                                         : mailbox[i]);
	key[len] = '\0';
	event(f, "## lookup ", key, len);
	for (size_t i = 0; i < sizeof directory / sizeof directory[0]; i++) {
		if (strcmp(directory[i].mailbox, key) == 0) {
			out->kind = directory[i].kind;
			out->can_receive = directory[i].can_receive;
			out->over_quota = directory[i].over_quota;
			out->members_only = directory[i].members_only;
			out->sender_member = is_member(out->sender, out->sender_len);
			return directory[i].r;
		}
	}
	return LOOKUP_NOTFOUND;
}

/* ---- the verifier ---- */

static const char *status_name(enum verify_status st)
{
	switch (st) {
	case VERIFY_LOCAL: return "local";
	case VERIFY_REMOTE: return "remote";
	case VERIFY_REMOTE_DISABLED: return "remote_disabled";
	case VERIFY_NOTFOUND: return "notfound";
	case VERIFY_TEMPFAIL: return "tempfail";
	case VERIFY_FOREIGN:
	default: return "foreign";
	}
}

static void lower_key(char *key, size_t keysz, const char *p, size_t n)
{
	size_t i = 0;
	for (; i < n && i + 1 < keysz; i++)
		key[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
	key[i] = '\0';
}

/* As verify.c: a mailbox of a local domain (never an address literal). */
static int fake_is_local(const struct fake_session *f, const char *mb, size_t len)
{
	struct mailaddr a;
	if (mailaddr_parse_exact(mb, len, &a) != MAILADDR_OK || a.literal || a.domain_len == 0)
		return 0;
	if (f->conf != NULL)
		return conf_is_local_domain(f->conf, a.domain, a.domain_len);
	char dom[300];
	lower_key(dom, sizeof dom, a.domain, a.domain_len);
	return strcmp(dom, "example.com") == 0 || strcmp(dom, "example.org") == 0;
}

/* The verifier's answer now: a set answer, else the directory's (verify.c's answer_local). */
static void fake_verdict(struct fake_session *f, const char *mb, size_t len, const char *sender,
                         size_t sender_len, struct verify_answer *out)
{
	char key[300], line[800];
	memset(out, 0, sizeof *out);
	lower_key(key, sizeof key, mb, len);
	for (size_t i = 0; i < f->n_answers; i++) {
		if (strcmp(f->answers[i].key, key) != 0)
			continue;
		*out = f->answers[i].a;
		snprintf(line, sizeof line, "## answer %s %s %s", key, status_name(out->status),
		         out->status == VERIFY_REMOTE ? out->route : out->reason);
		event(f, "", line, strlen(line));
		return;
	}
	if (!fake_is_local(f, mb, len)) {
		out->status = VERIFY_FOREIGN;
		return;
	}
	out->local.sender = sender;
	out->local.sender_len = sender_len;
	switch (fake_lookup(f, mb, len, &out->local)) {
	case LOOKUP_FOUND: out->status = VERIFY_LOCAL; break;
	case LOOKUP_NOTFOUND: out->status = VERIFY_NOTFOUND; break;
	default:
		out->status = VERIFY_TEMPFAIL;
		snprintf(out->reason, sizeof out->reason, "the directory could not answer");
		break;
	}
	out->local.sender = NULL; /* borrowed: the session copies the answer */
	out->local.sender_len = 0;
}

/* Keeps a request open for fake_session_done(). Returns 1, or 0 (answered now) when full. */
static int fake_hold(struct fake_session *f, uint64_t id, enum smtp_request_kind kind,
                     const char *mb, size_t len, const char *sender, size_t sender_len)
{
	char line[800];
	if (f->n_open >= FAKE_OPEN_MAX || len >= sizeof f->open[0].mailbox ||
	    sender_len >= sizeof f->open[0].sender) {
		f->broken++; /* more open than the session's bound allows */
		return 0;
	}
	for (size_t i = 0; i < f->n_open; i++)
		if (f->open[i].id == id)
			f->broken++; /* ids are unique in a session */
	struct fake_open *o = &f->open[f->n_open++];
	o->id = id;
	o->kind = kind;
	memcpy(o->mailbox, mb, len);
	o->mailbox[len] = '\0';
	if (sender_len > 0)
		memcpy(o->sender, sender, sender_len);
	o->sender[sender_len] = '\0';
	if (f->n_open > f->max_open)
		f->max_open = f->n_open;
	char key[300];
	lower_key(key, sizeof key, mb, len);
	snprintf(line, sizeof line, "## ask %s id=%llu %s",
	         kind == SMTP_REQUEST_SENDER ? "sender" : "rcpt", (unsigned long long)id, key);
	event(f, "", line, strlen(line));
	return 1;
}

static int fake_rcpt_verify(void *arg, uint64_t id, const char *mailbox, size_t len,
                            const char *sender, size_t sender_len, struct verify_answer *out)
{
	struct fake_session *f = arg;
	f->verifies++;
	if (mailbox == NULL || sender == NULL || id == 0) {
		f->broken++;
		memset(out, 0, sizeof *out);
		out->status = VERIFY_NOTFOUND;
		return 0;
	}
	if (f->verify_later &&
	    fake_hold(f, id, SMTP_REQUEST_RCPT, mailbox, len, sender, sender_len) == 1)
		return 1;
	fake_verdict(f, mailbox, len, sender, sender_len, out);
	return 0;
}

static int fake_sender_verify(void *arg, uint64_t id, const char *mailbox, size_t len,
                              struct verify_answer *out)
{
	struct fake_session *f = arg;
	f->verifies++;
	if (mailbox == NULL || id == 0) {
		f->broken++;
		memset(out, 0, sizeof *out);
		out->status = VERIFY_NOTFOUND;
		return 0;
	}
	if (f->verify_later && fake_hold(f, id, SMTP_REQUEST_SENDER, mailbox, len, NULL, 0) == 1)
		return 1;
	fake_verdict(f, mailbox, len, NULL, 0, out);
	return 0;
}

static int fake_take(struct fake_session *f, uint64_t id, struct fake_open *out)
{
	for (size_t i = 0; i < f->n_open; i++) {
		if (f->open[i].id != id)
			continue;
		*out = f->open[i];
		memmove(&f->open[i], &f->open[i + 1], (f->n_open - i - 1) * sizeof f->open[0]);
		f->n_open--;
		return 0;
	}
	return -1;
}

static void fake_cancel(void *arg, uint64_t id)
{
	struct fake_session *f = arg;
	struct fake_open o;
	char line[64];
	f->cancels++;
	snprintf(line, sizeof line, "## cancel id=%llu", (unsigned long long)id);
	event(f, "", line, strlen(line));
	if (f->auth_open && f->auth_id == id) {
		f->auth_open = 0; /* an AUTH check the session no longer wants */
		return;
	}
	if (fake_take(f, id, &o) < 0)
		f->broken++; /* the session cancels only what it asked and was not answered */
}

int fake_session_done(struct fake_session *f, uint64_t id)
{
	struct fake_open o;
	struct verify_answer a;
	char line[64];
	if (fake_take(f, id, &o) < 0)
		return -1;
	snprintf(line, sizeof line, "## done id=%llu", (unsigned long long)id);
	event(f, "", line, strlen(line));
	fake_verdict(f, o.mailbox, strlen(o.mailbox), o.kind == SMTP_REQUEST_RCPT ? o.sender : NULL,
	             strlen(o.sender), &a);
	if (f->s == NULL)
		return 0;
	if (o.kind == SMTP_REQUEST_SENDER)
		smtp_session_sender_done(f->s, id, &a);
	else
		smtp_session_rcpt_done(f->s, id, &a);
	return 0;
}

int fake_session_answer(struct fake_session *f, const char *mailbox, enum verify_status status,
                        const char *text)
{
	if (f->n_answers >= FAKE_ANSWERS_MAX)
		return -1;
	struct fake_answer *e = &f->answers[f->n_answers++];
	memset(e, 0, sizeof *e);
	lower_key(e->key, sizeof e->key, mailbox, strlen(mailbox));
	e->a.status = status;
	e->a.servers_asked = 1;
	if (status == VERIFY_REMOTE)
		snprintf(e->a.route, sizeof e->a.route, "%s", text ? text : "");
	else
		snprintf(e->a.reason, sizeof e->a.reason, "%s", text ? text : "");
	return 0;
}

/* ---- the queue ---- */

struct fake_msg {
	char id[16];
	struct fake_buf data;
};

static void fake_msg_free(struct fake_session *f, struct fake_msg *fm)
{
	f->open_msgs--;
	free(fm->data.p);
	free(fm);
}

/* Queue ids Q1, Q2, ... in the order messages are begun (the commit reports the same). */
static struct queue_msg *fake_begin(void *arg, char *id, size_t idsz)
{
	struct fake_session *f = arg;
	if (id == NULL || idsz < 8) {
		f->broken++;
		return NULL;
	}
	if (f->begin_errno) {
		event_str(f, "## begin failed");
		errno = f->begin_errno;
		return NULL;
	}
	struct fake_msg *fm = calloc(1, sizeof *fm);
	if (fm == NULL)
		abort();
	f->begun++;
	f->open_msgs++;
	snprintf(fm->id, sizeof fm->id, "Q%d", f->begun);
	snprintf(id, idsz, "%s", fm->id);
	event(f, "## begin ", fm->id, strlen(fm->id));
	return (struct queue_msg *)fm;
}

static int fake_write(void *arg, struct queue_msg *m, const void *data, size_t len)
{
	struct fake_session *f = arg;
	struct fake_msg *fm = (struct fake_msg *)m;
	if (fm == NULL || data == NULL) {
		f->broken++;
		errno = EINVAL;
		return -1;
	}
	if (f->write_fail_after >= 0 && (long long)(fm->data.len + len) > f->write_fail_after) {
		errno = ENOSPC;
		return -1;
	}
	fake_buf_add(&fm->data, data, len);
	f->stored += len;
	return 0;
}

static void record_commit(struct fake_session *f, const struct fake_msg *fm,
                          const struct envelope *e)
{
	char line[2048];
	fake_session_drain(f);
	snprintf(line, sizeof line,
	         "## commit from=<%s> envid=%s ret=%d body=%d helo=%s client=%s trusted=%d "
	         "received_at=%lld",
	         e->mail_from, e->envid ? e->envid : "-", (int)e->ret, (int)e->body, e->helo,
	         e->client_addr, e->trusted, (long long)e->received_at);
	rec_line(&f->rec, "", line, strlen(line));
	for (size_t i = 0; i < e->n_rcpts; i++) {
		const char *route = e->rcpts[i].route;
		snprintf(line, sizeof line, "## rcpt <%s> notify=%u orcpt=%s%s%s\n",
		         e->rcpts[i].addr, e->rcpts[i].notify,
		         e->rcpts[i].orcpt ? e->rcpts[i].orcpt : "-",
		         route && *route ? " route=" : "", route && *route ? route : "");
		fake_buf_str(&f->rec, line);
	}
	rec_text(&f->rec, "## | ", fm->data.p ? fm->data.p : "", fm->data.len);
}

static void fake_commit(void *arg, uint64_t id, struct queue_msg *m, const struct envelope *e)
{
	struct fake_session *f = arg;
	struct fake_msg *fm = (struct fake_msg *)m;
	if (fm == NULL || e == NULL || e->mail_from == NULL || e->n_rcpts == 0 || e->helo == NULL ||
	    e->client_addr == NULL || id == 0 || f->commit_open) {
		f->broken++;
		return;
	}
	f->commit_open = 1;
	f->commit_id = id;
	if (f->record)
		record_commit(f, fm, e);
	snprintf(f->first_rcpt, sizeof f->first_rcpt, "%s", e->rcpts[0].addr);
	snprintf(f->pending_id, sizeof f->pending_id, "%s", fm->id);
	fake_msg_free(f, fm);
	f->committed++;
	f->pending_ok = !f->commit_fail;
}

static void fake_abort(void *arg, struct queue_msg *m)
{
	struct fake_session *f = arg;
	if (m == NULL) {
		f->broken++;
		return;
	}
	event_str(f, "## abort");
	f->aborted++;
	fake_msg_free(f, (struct fake_msg *)m);
}

static long long fake_free(void *arg)
{
	return ((struct fake_session *)arg)->free_space;
}

/* ---- logs and the clock ---- */

static void fake_log_rejected(void *arg, const char *line)
{
	struct fake_session *f = arg;
	f->logged++;
	for (size_t i = 0; line[i]; i++)
		if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] > 0x7e)
			f->broken++; /* the session promises printable ASCII */
	event(f, "## log-rejected: ", line, strlen(line));
}

static void fake_log_line(void *arg, const char *line)
{
	struct fake_session *f = arg;
	f->log_lines++;
	if (strchr(line, '\n') != NULL)
		f->broken++; /* one line, no newline */
	event(f, "## log: ", line, strlen(line));
}

static int64_t fake_now(void *arg)
{
	return 1700000000;
}

/* ---- POP before SMTP ---- */

static int fake_pop_recent(void *arg, const char *key, int64_t window)
{
	struct fake_session *f = arg;
	int r = pop_login_recent(f->pop_logins, key, fake_now(f), window);
	char line[400];
	snprintf(line, sizeof line, "## pop %.320s %s", key, r ? "recent" : "stale");
	event_str(f, line);
	return r;
}

/* ---- AUTH and the screen ---- */

static int fake_auth_check(void *arg, uint64_t id, const char *identity, const char *password,
                           size_t len)
{
	struct fake_session *f = arg;
	char line[700];
	f->auth_checks++;
	if (f->auth_open)
		f->broken++; /* one at a time */
	snprintf(line, sizeof line, "id=%llu %s", (unsigned long long)id,
	         identity ? identity : "-");
	event(f, "## auth ", line, strlen(line));
	f->auth_open = 1;
	f->auth_id = id;
	if (identity == NULL)
		f->auth_status = SMTP_AUTH_FAIL;
	else if (strcasecmp(identity, "busy@example.com") == 0)
		f->auth_status = SMTP_AUTH_TEMPFAIL;
	else if (strcasecmp(identity, "alice@example.com") == 0 && len == 6 &&
	         memcmp(password, "secret", 6) == 0)
		f->auth_status = SMTP_AUTH_OK;
	else
		f->auth_status = SMTP_AUTH_FAIL;
	return 0;
}

static int fake_screen_note(void *arg, enum smtp_screen_note what)
{
	struct fake_session *f = arg;
	const char *w = what == SMTP_SCREEN_UNKNOWN_RCPT ? "unknown-rcpt" : "auth-on-smtp-port";
	event(f, "## screen ", w, strlen(w));
	return ++f->screen_notes == f->screen;
}

static int fake_auth_resolve(struct fake_session *f)
{
	static const char *const addrs[] = {"alice@example.com", "al@example.com"};
	if (f->s == NULL || !f->auth_open)
		return 0;
	f->auth_open = 0;
	if (f->auth_status == SMTP_AUTH_OK)
		smtp_session_auth_done(f->s, f->auth_id, SMTP_AUTH_OK, "alice@example.com", addrs,
		                       2);
	else
		smtp_session_auth_done(f->s, f->auth_id, f->auth_status, NULL, NULL, 0);
	return 1;
}

/* ---- life cycle ---- */

void fake_session_setup(struct fake_session *f)
{
	f->ops.auth_check = f->auth ? fake_auth_check : NULL;
	f->ops.screen_note = f->screen ? fake_screen_note : NULL;
}

void fake_session_init(struct fake_session *f)
{
	memset(f, 0, sizeof *f);
	f->free_space = 10000000000LL;
	f->write_fail_after = -1;
	f->ops = (struct smtp_session_ops){
	        .arg = f,
	        .lookup = fake_lookup,
	        .rcpt_verify = fake_rcpt_verify,
	        .sender_verify = fake_sender_verify,
	        .request_cancel = fake_cancel,
	        .msg_begin = fake_begin,
	        .msg_write = fake_write,
	        .msg_commit = fake_commit,
	        .msg_abort = fake_abort,
	        .free_space = fake_free,
	        .log_rejected_rcpt = fake_log_rejected,
	        .log_line = fake_log_line,
	        .now = fake_now,
	        .pop_recent = fake_pop_recent,
	};
}

int fake_session_resolve(struct fake_session *f)
{
	if (f->s != NULL && !f->commit_open)
		return fake_auth_resolve(f);
	if (f->s == NULL || !f->commit_open)
		return 0;
	f->commit_open = 0;
	smtp_session_commit_done(f->s, f->commit_id, f->pending_ok, f->pending_id);
	return 1;
}

void fake_session_fini(struct fake_session *f)
{
	free(f->rec.p);
	memset(&f->rec, 0, sizeof f->rec);
}
