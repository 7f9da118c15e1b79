/* fake_session_ops: see fake_session_ops.h. */
#include "fake_session_ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
} directory[] = {
        {"alice@example.com", LOOKUP_FOUND, 1, 0},   {"bob@example.org", LOOKUP_FOUND, 1, 0},
        {"off@example.com", LOOKUP_FOUND, 0, 0},     {"busy@example.com", LOOKUP_TEMPFAIL, 0, 0},
        {"\"a b\"@example.com", LOOKUP_FOUND, 1, 0}, {"list@example.com", LOOKUP_FOUND, 1, 0},
        {"full@example.com", LOOKUP_FOUND, 0, 1},
};

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
			out->kind = LOOKUP_KIND_ACCOUNT;
			out->can_receive = directory[i].can_receive;
			out->over_quota = directory[i].over_quota;
			return directory[i].r;
		}
	}
	return LOOKUP_NOTFOUND;
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
		snprintf(line, sizeof line, "## rcpt <%s> notify=%u orcpt=%s\n", e->rcpts[i].addr,
		         e->rcpts[i].notify, e->rcpts[i].orcpt ? e->rcpts[i].orcpt : "-");
		fake_buf_str(&f->rec, line);
	}
	rec_text(&f->rec, "## | ", fm->data.p ? fm->data.p : "", fm->data.len);
}

static void fake_commit(void *arg, struct queue_msg *m, const struct envelope *e)
{
	struct fake_session *f = arg;
	struct fake_msg *fm = (struct fake_msg *)m;
	if (fm == NULL || e == NULL || e->mail_from == NULL || e->n_rcpts == 0 || e->helo == NULL ||
	    e->client_addr == NULL) {
		f->broken++;
		return;
	}
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

/* ---- life cycle ---- */

void fake_session_init(struct fake_session *f)
{
	memset(f, 0, sizeof *f);
	f->free_space = 10000000000LL;
	f->write_fail_after = -1;
	f->ops = (struct smtp_session_ops){
	        .arg = f,
	        .lookup = fake_lookup,
	        .msg_begin = fake_begin,
	        .msg_write = fake_write,
	        .msg_commit = fake_commit,
	        .msg_abort = fake_abort,
	        .free_space = fake_free,
	        .log_rejected_rcpt = fake_log_rejected,
	        .log_line = fake_log_line,
	        .now = fake_now,
	};
}

int fake_session_resolve(struct fake_session *f)
{
	if (f->s == NULL || !smtp_session_waiting(f->s))
		return 0;
	smtp_session_commit_done(f->s, f->pending_ok, f->pending_id);
	return 1;
}

void fake_session_fini(struct fake_session *f)
{
	free(f->rec.p);
	memset(&f->rec, 0, sizeof f->rec);
}
