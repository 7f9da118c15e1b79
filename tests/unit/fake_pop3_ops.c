/*
 * fake_pop3_ops: see fake_pop3_ops.h.
 */
#include "fake_pop3_ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fake_pop3_record(struct fake_pop3 *f, const char *p, size_t n)
{
	if (f->rec_len + n + 1 > f->rec_cap) {
		size_t cap = (f->rec_cap ? f->rec_cap * 2 : 4096) + n;
		char *r = realloc(f->rec, cap);
		if (!r)
			return;
		f->rec = r;
		f->rec_cap = cap;
	}
	memcpy(f->rec + f->rec_len, p, n);
	f->rec_len += n;
	f->rec[f->rec_len] = '\0';
}

void fake_pop3_note(struct fake_pop3 *f, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof buf - 2)
		n = (int)sizeof buf - 2;
	fake_pop3_record(f, "## ", 3);
	fake_pop3_record(f, buf, (size_t)n);
	fake_pop3_record(f, "\n", 1);
}

void fake_pop3_drain(struct fake_pop3 *f)
{
	for (;;) {
		size_t n;
		const char *p = pop3_session_output(f->s, &n);
		if (n == 0)
			return;
		fake_pop3_record(f, p, n);
		pop3_session_output_done(f->s, n);
	}
}

static int op_auth_check(void *arg, uint64_t id, const char *identity, const char *password,
                         size_t len)
{
	struct fake_pop3 *f = arg;
	fake_pop3_note(f, "auth %s", identity ? identity : "(invalid)");
	f->req = id;
	f->kind = POP3_REQUEST_AUTH;
	f->auth_ok = identity && f->identity[0] && strcmp(identity, f->identity) == 0 &&
	             strlen(f->password) == len && memcmp(password, f->password, len) == 0;
	return 0;
}

static int op_maildrop_open(void *arg, uint64_t id, const char *account)
{
	struct fake_pop3 *f = arg;
	fake_pop3_note(f, "open %s", account);
	f->req = id;
	f->kind = POP3_REQUEST_OPEN;
	return 0;
}

static int op_msg_open(void *arg, size_t index)
{
	struct fake_pop3 *f = arg;
	if (index >= f->n_msgs || f->msgs[index].gone || f->reading >= 0)
		return -1;
	f->reading = (long)index;
	f->read_off = 0;
	return 0;
}

static ssize_t op_msg_read(void *arg, char *buf, size_t len)
{
	struct fake_pop3 *f = arg;
	if (f->reading < 0)
		return -1;
	struct fake_pop3_msg *m = &f->msgs[f->reading];
	if (m->fail_after >= 0 && f->read_off >= (size_t)m->fail_after)
		return -1;
	size_t n = m->len - f->read_off;
	if (n > len)
		n = len;
	if (f->read_chunk > 0 && n > (size_t)f->read_chunk)
		n = (size_t)f->read_chunk;
	if (m->fail_after >= 0 && f->read_off + n > (size_t)m->fail_after)
		n = (size_t)m->fail_after - f->read_off;
	memcpy(buf, m->text + f->read_off, n);
	f->read_off += n;
	return (ssize_t)n;
}

static void op_msg_close(void *arg)
{
	struct fake_pop3 *f = arg;
	f->reading = -1;
}

static int op_maildrop_commit(void *arg, uint64_t id, const size_t *index, size_t n)
{
	struct fake_pop3 *f = arg;
	f->req = id;
	f->kind = POP3_REQUEST_COMMIT;
	f->commit_n = n < FAKE_POP3_MSGS_MAX ? n : FAKE_POP3_MSGS_MAX;
	memcpy(f->commit_idx, index, f->commit_n * sizeof *index);
	return 0;
}

static void op_maildrop_release(void *arg)
{
	struct fake_pop3 *f = arg;
	if (f->locked)
		fake_pop3_note(f, "release");
	f->locked = 0;
}

static int op_tls_start(void *arg, uint64_t id)
{
	struct fake_pop3 *f = arg;
	if (f->tls_fail)
		return 0;
	f->req = id;
	f->kind = POP3_REQUEST_TLS;
	return 1;
}

static void op_log_line(void *arg, const char *line)
{
	fake_pop3_note(arg, "log %s", line);
}

void fake_pop3_init(struct fake_pop3 *f)
{
	memset(f, 0, sizeof *f);
	f->reading = -1;
	f->ops = (struct pop3_session_ops){.arg = f,
	                                   .auth_check = op_auth_check,
	                                   .maildrop_open = op_maildrop_open,
	                                   .msg_open = op_msg_open,
	                                   .msg_read = op_msg_read,
	                                   .msg_close = op_msg_close,
	                                   .maildrop_commit = op_maildrop_commit,
	                                   .maildrop_release = op_maildrop_release,
	                                   .tls_start = op_tls_start,
	                                   .log_line = op_log_line};
}

void fake_pop3_fini(struct fake_pop3 *f)
{
	for (size_t i = 0; i < f->n_msgs; i++)
		free(f->msgs[i].text);
	free(f->rec);
	f->rec = NULL;
	f->n_msgs = 0;
}

int fake_pop3_add(struct fake_pop3 *f, const char *uid, const char *text, size_t len)
{
	if (f->n_msgs >= FAKE_POP3_MSGS_MAX)
		return -1;
	struct fake_pop3_msg *m = &f->msgs[f->n_msgs];
	memset(m, 0, sizeof *m);
	snprintf(m->uid, sizeof m->uid, "%s", uid);
	m->text = malloc(len + 1);
	if (!m->text)
		return -1;
	memcpy(m->text, text, len);
	m->len = len;
	m->fail_after = -1;
	f->n_msgs++;
	return 0;
}

/* The wire size of a stored message: every LF becomes CRLF. */
static uint64_t wire_size(const struct fake_pop3_msg *m)
{
	uint64_t n = 0;
	for (size_t i = 0; i < m->len; i++)
		n += (m->text[i] == '\n' && (i == 0 || m->text[i - 1] != '\r')) ? 2 : 1;
	return n;
}

static void answer_open(struct fake_pop3 *f, uint64_t id)
{
	struct pop3_msginfo v[FAKE_POP3_MSGS_MAX];
	size_t n = 0;
	if (f->open_in_use) {
		pop3_session_open_done(f->s, id, POP3_OPEN_IN_USE, NULL, 0);
		return;
	}
	if (f->open_tempfail) {
		pop3_session_open_done(f->s, id, POP3_OPEN_TEMPFAIL, NULL, 0);
		return;
	}
	f->locked = 1;
	for (size_t i = 0; i < f->n_msgs; i++) {
		if (f->msgs[i].removed)
			continue;
		v[n].size = wire_size(&f->msgs[i]);
		snprintf(v[n].uid, sizeof v[n].uid, "%s", f->msgs[i].uid);
		n++;
	}
	pop3_session_open_done(f->s, id, POP3_OPEN_OK, v, n);
}

static void answer_commit(struct fake_pop3 *f, uint64_t id)
{
	for (size_t i = 0; i < f->commit_n; i++) {
		fake_pop3_note(f, "remove %s", f->msgs[f->commit_idx[i]].uid);
		if (!f->commit_fail)
			f->msgs[f->commit_idx[i]].removed = 1;
	}
	pop3_session_commit_done(f->s, id, !f->commit_fail);
}

int fake_pop3_settle(struct fake_pop3 *f)
{
	uint64_t id = f->req;
	if (id == 0)
		return 0;
	f->req = 0;
	switch (f->kind) {
	case POP3_REQUEST_AUTH:
		if (f->auth_tempfail)
			pop3_session_auth_done(f->s, id, POP3_AUTH_TEMPFAIL, NULL);
		else
			pop3_session_auth_done(f->s, id, f->auth_ok ? POP3_AUTH_OK : POP3_AUTH_FAIL,
			                       f->auth_ok ? f->account : NULL);
		break;
	case POP3_REQUEST_OPEN: answer_open(f, id); break;
	case POP3_REQUEST_COMMIT: answer_commit(f, id); break;
	case POP3_REQUEST_TLS:
		fake_pop3_note(f, "tls handshake");
		f->discard_input = 1;
		pop3_session_tls_done(f->s, id, 1);
		break;
	}
	return 1;
}
