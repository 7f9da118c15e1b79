/*
 * test_smtp_client: the SMTP client state machine. Replays every
 * tests/transcripts/client/NAME.in against the machine (the .in plays the
 * server and the glue) and compares the record with NAME.ref, exactly; then
 * unit tests of what transcripts show badly (deadline serials, a pipelined
 * group larger than the output buffer, calls in the wrong state).
 *
 * NAME.in, one directive a line ('#' lines and blank lines are ignored):
 *   conf: tls=off|may|require  helo=NAME  max_rcpts=N  out_max=N
 *         reply_line_max=N  reply_lines_max=N   (several per line allowed)
 *   nobyte        do not also replay one octet per call (say why in a comment)
 *   noquit        at READY with no message left, stay idle instead of QUIT
 *   noconnect     do not report "connected" at the start
 *   MSG: from=<A> rcpt=<B> [notify=SUCCESS,FAILURE|NEVER] [orcpt=rfc822;B]
 *        rcpt=<C> ... [size=N] [8bit=1] [ret=FULL|HDRS] [envid=X] [stall=N]
 *                 a message for this connection, given at the next READY
 *                 (escapes as below work in the values);
 *                 notify/orcpt apply to the rcpt before them; size defaults to
 *                 the body's length; stall=N feeds only N body octets and then
 *                 goes on with the script (no end of data)
 *   B: TEXT       a body line of the last MSG (CRLF added); B+: without CRLF;
 *                 B*N: the line N times. Escapes \r \n \t \0 \\ \xHH.
 *   S: TEXT       the server sends a line (CRLF added) in its own read;
 *                 S+: held and sent with the next S:/R: (one read);
 *                 R: / R+: raw octets without CRLF; S*N: / R*N: N times in one read
 *   EVENT: connected | timeout | closed | tls ok | tls fail
 * NAME.ref is the record: "S:" the server's octets, "C:" the client's (CRLF
 * shown as a line end; never anything but CRLF, or the run fails), "EVENT:",
 * "DEADLINE: seconds wait" after a step (a read, an event) that changed the
 * wait (several waits inside one read are not shown), "CAPS:" when the
 * capabilities change, "ACTION:", ">>" what the glue did, "RESULT:" lines at
 * each MSG_DONE, then "CONN:" and "END:" lines.
 *
 * Every transcript also runs one octet per input call and one body octet per
 * smtp_client_body() call (unless `nobyte`) and must give the same record. A
 * missing .ref fails; SHAREMAIL_WRITE_REF=1 writes the missing ones and still
 * fails the run, saying so: review them, then run again.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/smtp_client.h"
#include "fake_session_ops.h"
#include "harness.h"

#define DIR_PATH "tests/transcripts/client"
#define MAX_MSGS 8
#define MAX_RCPTS 64
#define MAX_STEPS 512
#define ECHO_MAX 160 /* input lines longer than this are shown cut, with their length */

static void buf_fmt(struct fake_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_fmt(struct fake_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	fake_buf_str(b, tmp);
}

/* ---- the script ---- */

struct tmsg {
	char from[300];
	char addr[MAX_RCPTS][300];
	char orcpt[MAX_RCPTS][300];
	struct smtp_client_rcpt rcpts[MAX_RCPTS];
	size_t n_rcpts;
	long long size; /* -1: the body's length */
	int eight_bit;
	enum esmtp_ret ret;
	char envid[200];
	int has_envid;
	long long stall; /* -1: feed the whole body */
	struct fake_buf body;
	struct smtp_client_msg m;
};

struct step {
	char kind; /* 'I' input, 'T' timeout, 'X' closed, 'K' tls ok, 'F' tls fail, 'C' connected */
	struct fake_buf data;
};

struct script {
	struct smtp_client_conf conf;
	char helo[300];
	int nobyte, noquit, noconnect;
	struct tmsg msgs[MAX_MSGS];
	size_t n_msgs;
	struct step steps[MAX_STEPS];
	size_t n_steps;
};

static int conf_word(struct script *sc, const char *w)
{
	const char *v = strchr(w, '=');
	if (v == NULL)
		return -1;
	v++;
	if (strncmp(w, "tls=", 4) == 0) {
		if (strcmp(v, "off") == 0)
			sc->conf.tls = SMTP_CLIENT_TLS_OFF;
		else if (strcmp(v, "may") == 0)
			sc->conf.tls = SMTP_CLIENT_TLS_MAY;
		else if (strcmp(v, "require") == 0)
			sc->conf.tls = SMTP_CLIENT_TLS_REQUIRE;
		else
			return -1;
	} else if (strncmp(w, "helo=", 5) == 0) {
		snprintf(sc->helo, sizeof sc->helo, "%s", v);
	} else if (strncmp(w, "max_rcpts=", 10) == 0) {
		sc->conf.max_rcpts = strtoul(v, NULL, 10);
	} else if (strncmp(w, "out_max=", 8) == 0) {
		sc->conf.out_max = strtoul(v, NULL, 10);
	} else if (strncmp(w, "reply_line_max=", 15) == 0) {
		sc->conf.reply_line_max = strtoul(v, NULL, 10);
	} else if (strncmp(w, "reply_lines_max=", 16) == 0) {
		sc->conf.reply_lines_max = (unsigned)strtoul(v, NULL, 10);
	} else {
		return -1;
	}
	return 0;
}

static int conf_line(struct script *sc, char *s)
{
	for (char *w = strtok(s, " "); w; w = strtok(NULL, " "))
		if (conf_word(sc, w) != 0)
			return -1;
	return 0;
}

/* "<addr>" -> addr */
static int angle(const char *v, char *out, size_t n)
{
	size_t len = strlen(v);
	if (len < 2 || v[0] != '<' || v[len - 1] != '>' || len - 2 >= n)
		return -1;
	memcpy(out, v + 1, len - 2);
	out[len - 2] = '\0';
	return 0;
}

static unsigned notify_bits(const char *v)
{
	unsigned bits = 0;
	if (strstr(v, "NEVER"))
		bits |= ESMTP_NOTIFY_NEVER;
	if (strstr(v, "SUCCESS"))
		bits |= ESMTP_NOTIFY_SUCCESS;
	if (strstr(v, "FAILURE"))
		bits |= ESMTP_NOTIFY_FAILURE;
	if (strstr(v, "DELAY"))
		bits |= ESMTP_NOTIFY_DELAY;
	return bits;
}

static int msg_word(struct tmsg *m, const char *w)
{
	const char *v = strchr(w, '=');
	if (v == NULL)
		return -1;
	v++;
	size_t r = m->n_rcpts;
	if (strncmp(w, "from=", 5) == 0)
		return angle(v, m->from, sizeof m->from);
	if (strncmp(w, "rcpt=", 5) == 0) {
		if (r >= MAX_RCPTS || angle(v, m->addr[r], sizeof m->addr[r]) != 0)
			return -1;
		m->rcpts[r].addr = m->addr[r];
		m->n_rcpts++;
		return 0;
	}
	if (strncmp(w, "notify=", 7) == 0 && r > 0) {
		m->rcpts[r - 1].notify = notify_bits(v);
		return 0;
	}
	if (strncmp(w, "orcpt=", 6) == 0 && r > 0) {
		snprintf(m->orcpt[r - 1], sizeof m->orcpt[r - 1], "%s", v);
		m->rcpts[r - 1].orcpt = m->orcpt[r - 1];
		return 0;
	}
	if (strncmp(w, "size=", 5) == 0)
		m->size = atoll(v);
	else if (strncmp(w, "8bit=", 5) == 0)
		m->eight_bit = atoi(v);
	else if (strncmp(w, "ret=", 4) == 0)
		m->ret = strcmp(v, "HDRS") == 0 ? ESMTP_RET_HDRS : ESMTP_RET_FULL;
	else if (strncmp(w, "envid=", 6) == 0) {
		snprintf(m->envid, sizeof m->envid, "%s", v);
		m->has_envid = 1;
	} else if (strncmp(w, "stall=", 6) == 0)
		m->stall = atoll(v);
	else
		return -1;
	return 0;
}

static int msg_line(struct script *sc, char *s)
{
	if (sc->n_msgs >= MAX_MSGS)
		return -1;
	struct tmsg *m = &sc->msgs[sc->n_msgs++];
	int rc = 0;
	m->size = -1;
	m->stall = -1;
	for (char *w = strtok(s, " "); w && rc == 0; w = strtok(NULL, " ")) {
		struct fake_buf u = {0};
		fake_buf_unescape(&u, w); /* after the split, so \x20 is a space in a value */
		fake_buf_add(&u, "", 0);
		rc = msg_word(m, u.p);
		free(u.p);
	}
	return rc;
}

/* B:, B+:, B*N: */
static int body_line(struct script *sc, const char *line)
{
	if (sc->n_msgs == 0)
		return -1;
	struct fake_buf *b = &sc->msgs[sc->n_msgs - 1].body;
	const char *p = line + 1;
	long times = 1;
	int crlf = 1;
	if (*p == '+') {
		crlf = 0;
		p++;
	} else if (*p == '*') {
		times = strtol(p + 1, (char **)&p, 10);
	}
	if (p[0] != ':' || (p[1] != ' ' && p[1] != '\0'))
		return -1;
	p += p[1] ? 2 : 1;
	for (long i = 0; i < times; i++) {
		fake_buf_unescape(b, p);
		if (crlf)
			fake_buf_add(b, "\r\n", 2);
	}
	return 0;
}

static struct step *new_step(struct script *sc, char kind)
{
	if (sc->n_steps >= MAX_STEPS)
		return NULL;
	struct step *st = &sc->steps[sc->n_steps++];
	st->kind = kind;
	memset(&st->data, 0, sizeof st->data);
	return st;
}

/* S:, S+:, R:, R+:, S*N:, R*N: */
static int server_line(struct script *sc, const char *line, int *held)
{
	int crlf = line[0] == 'S';
	const char *p = line + 1;
	long times = 1;
	int hold = 0;
	if (*p == '+') {
		hold = 1;
		p++;
	} else if (*p == '*') {
		times = strtol(p + 1, (char **)&p, 10);
	}
	if (p[0] != ':' || (p[1] != ' ' && p[1] != '\0'))
		return -1;
	p += p[1] ? 2 : 1;
	if (!*held && new_step(sc, 'I') == NULL)
		return -1;
	struct fake_buf *d = &sc->steps[sc->n_steps - 1].data;
	for (long i = 0; i < times; i++) {
		fake_buf_unescape(d, p);
		if (crlf)
			fake_buf_add(d, "\r\n", 2);
	}
	*held = hold;
	return 0;
}

static int event_line(struct script *sc, const char *v)
{
	static const struct {
		const char *name;
		char kind;
	} events[] = {
	        {"timeout", 'T'},  {"closed", 'X'},    {"tls ok", 'K'},
	        {"tls fail", 'F'}, {"connected", 'C'},
	};
	for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
		if (strcmp(v, events[i].name) == 0)
			return new_step(sc, events[i].kind) ? 0 : -1;
	return -1;
}

static int script_line(struct script *sc, char *line, int *held)
{
	if (strncmp(line, "conf: ", 6) == 0)
		return conf_line(sc, line + 6);
	if (strcmp(line, "nobyte") == 0)
		return sc->nobyte = 1, 0;
	if (strcmp(line, "noquit") == 0)
		return sc->noquit = 1, 0;
	if (strcmp(line, "noconnect") == 0)
		return sc->noconnect = 1, 0;
	if (strncmp(line, "MSG: ", 5) == 0)
		return msg_line(sc, line + 5);
	if (line[0] == 'B' && (line[1] == ':' || line[1] == '+' || line[1] == '*'))
		return body_line(sc, line);
	if (strncmp(line, "EVENT: ", 7) == 0)
		return event_line(sc, line + 7);
	if ((line[0] == 'S' || line[0] == 'R') && server_line(sc, line, held) == 0)
		return 0;
	return -1;
}

static void msgs_finish(struct script *sc)
{
	for (size_t i = 0; i < sc->n_msgs; i++) {
		struct tmsg *t = &sc->msgs[i];
		if (t->body.p == NULL)
			fake_buf_add(&t->body, "", 0);
		t->m.mail_from = t->from;
		t->m.rcpts = t->rcpts;
		t->m.n_rcpts = t->n_rcpts;
		t->m.size = t->size >= 0 ? (uint64_t)t->size : t->body.len;
		t->m.eight_bit = t->eight_bit;
		t->m.ret = t->ret;
		t->m.envid = t->has_envid ? t->envid : NULL;
	}
}

static int script_load(const char *path, struct script *sc)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	int held = 0, ok = 0;
	if (f == NULL)
		return -1;
	memset(sc, 0, sizeof *sc);
	smtp_client_conf_defaults(&sc->conf);
	snprintf(sc->helo, sizeof sc->helo, "client.example.net");
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (script_line(sc, line, &held) != 0) {
			fprintf(stderr, "%s: bad line: %s\n", path, line);
			ok = -1;
			break;
		}
	}
	fclose(f);
	sc->conf.helo_name = sc->helo;
	msgs_finish(sc);
	return ok;
}

static void script_free(struct script *sc)
{
	for (size_t i = 0; i < sc->n_msgs; i++)
		free(sc->msgs[i].body.p);
	for (size_t i = 0; i < sc->n_steps; i++)
		free(sc->steps[i].data.p);
}

/* ---- the record ---- */

struct run {
	struct smtp_client *c;
	const struct script *sc;
	int bytewise;
	struct fake_buf rec;
	struct fake_buf line; /* client output not yet ended by CRLF */
	int bad_output; /* a bare CR or LF left the client */
	size_t next_msg;
	int cur_msg; /* index of the message under way, -1 none */
	unsigned long dl_serial;
	enum smtp_client_wait dl_wait;
	unsigned dl_seconds;
	struct smtp_client_caps caps;
};

static void rec_escaped(struct fake_buf *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch < 0x20 || ch > 0x7e || ch == '\\')
			buf_fmt(b, "\\x%02X", ch);
		else
			fake_buf_add(b, &p[i], 1);
	}
}

/* The server's octets, split at CRLF; long lines shown cut with their length. */
static void rec_input(struct fake_buf *b, const char *p, size_t n)
{
	size_t start = 0;
	while (start < n) {
		size_t end = start;
		while (end < n && !(p[end] == '\n' && end > start && p[end - 1] == '\r'))
			end++;
		int crlf = end < n;
		size_t len = crlf ? end - 1 - start : end - start;
		fake_buf_str(b, "S: ");
		rec_escaped(b, p + start, len < ECHO_MAX ? len : ECHO_MAX);
		if (len > ECHO_MAX)
			buf_fmt(b, "... (%zu octets)", len);
		if (!crlf)
			fake_buf_str(b, " (no CRLF)");
		fake_buf_str(b, "\n");
		start = crlf ? end + 1 : n;
	}
}

static void flush_partial(struct run *r)
{
	if (r->line.len == 0)
		return;
	fake_buf_str(&r->rec, "C: ");
	rec_escaped(&r->rec, r->line.p, r->line.len);
	fake_buf_str(&r->rec, " (no CRLF yet)\n");
	r->line.len = 0;
}

/* Client octets: complete lines are recorded; a CR or LF not in a CRLF is a failure. */
static void rec_output(struct run *r, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		fake_buf_add(&r->line, &p[i], 1);
		size_t len = r->line.len;
		const char *l = r->line.p;
		if (l[len - 1] == '\n') {
			if (len < 2 || l[len - 2] != '\r')
				r->bad_output = 1;
			fake_buf_str(&r->rec, "C: ");
			rec_escaped(&r->rec, l, len >= 2 ? len - 2 : 0);
			fake_buf_str(&r->rec, "\n");
			r->line.len = 0;
		} else if (len >= 2 && l[len - 2] == '\r') {
			r->bad_output = 1; /* a CR not followed by LF */
		}
	}
}

static void rec_note(struct run *r, const char *s)
{
	flush_partial(r);
	fake_buf_str(&r->rec, s);
	fake_buf_str(&r->rec, "\n");
}

/* "550 5.1.1 text", "250 - text" (no enhanced code), "local 4.4.2 text" (the client's own). */
static void fmt_reply(char *out, size_t n, const struct smtp_client_reply *rp)
{
	char code[8];
	snprintf(code, sizeof code, rp->code ? "%d" : "local", rp->code);
	snprintf(out, n, "%s %s%s%s", code, rp->enh[0] ? rp->enh : "-", rp->text[0] ? " " : "",
	         rp->text);
}

static void rec_result(struct run *r)
{
	const struct smtp_client_result *res = smtp_client_result(r->c);
	char line[1024], rp[600];
	if (res == NULL) {
		rec_note(r, "RESULT: none (MSG_DONE without a result)");
		return;
	}
	fmt_reply(rp, sizeof rp, &res->reply);
	snprintf(line, sizeof line, "RESULT: msg %d %s dsn=%d | %s", r->cur_msg + 1,
	         smtp_client_msg_status_name(res->status), res->peer_dsn, rp);
	rec_note(r, line);
	for (size_t i = 0; i < res->n_rcpts; i++) {
		const char *addr = r->sc->msgs[r->cur_msg].addr[i];
		struct fake_buf b = {0};
		fmt_reply(rp, sizeof rp, &res->rcpts[i].reply);
		fake_buf_str(&b, "RESULT:   <");
		rec_escaped(&b, addr, strlen(addr));
		buf_fmt(&b, "> %s | %s", smtp_client_rcpt_status_name(res->rcpts[i].status), rp);
		rec_note(r, b.p);
		free(b.p);
	}
	r->cur_msg = -1;
}

static void rec_caps(struct run *r)
{
	const struct smtp_client_caps *k = smtp_client_caps(r->c);
	if (memcmp(k, &r->caps, sizeof *k) == 0)
		return;
	r->caps = *k;
	struct fake_buf b = {0};
	fake_buf_str(&b, "CAPS:");
	if (k->esmtp)
		fake_buf_str(&b, " esmtp");
	if (k->pipelining)
		fake_buf_str(&b, " pipelining");
	if (k->size)
		buf_fmt(&b, " size=%llu", (unsigned long long)k->size_max);
	if (k->eightbitmime)
		fake_buf_str(&b, " 8bitmime");
	if (k->dsn)
		fake_buf_str(&b, " dsn");
	if (k->starttls)
		fake_buf_str(&b, " starttls");
	if (k->enhancedstatuscodes)
		fake_buf_str(&b, " enhancedstatuscodes");
	if (k->tls)
		fake_buf_str(&b, " tls");
	if (b.len == 5)
		fake_buf_str(&b, " none");
	rec_note(r, b.p);
	free(b.p);
}

static void rec_deadline(struct run *r)
{
	struct smtp_client_deadline d = smtp_client_deadline(r->c);
	char line[128];
	if (d.wait == r->dl_wait && d.seconds == r->dl_seconds)
		return;
	r->dl_wait = d.wait;
	r->dl_seconds = d.seconds;
	if (d.seconds == 0)
		snprintf(line, sizeof line, "DEADLINE: none");
	else
		snprintf(line, sizeof line, "DEADLINE: %u %s", d.seconds,
		         smtp_client_wait_name(d.wait));
	rec_note(r, line);
}

static int drain_output(struct run *r)
{
	size_t n;
	const char *o = smtp_client_output(r->c, &n);
	if (n == 0)
		return 0;
	rec_output(r, o, n);
	smtp_client_output_done(r->c, n);
	return 1;
}

static void settle(struct run *r);

/* Feeds the body (all of it, or `stall` octets), one octet per call in byte mode. */
static void feed_body(struct run *r)
{
	const struct tmsg *t = &r->sc->msgs[r->cur_msg];
	size_t limit =
	        t->stall >= 0 && (size_t)t->stall < t->body.len ? (size_t)t->stall : t->body.len;
	size_t pos = 0;
	int stuck = 0;
	while (pos < limit && stuck < 2) {
		size_t len = r->bytewise ? 1 : limit - pos;
		size_t used = smtp_client_body(r->c, t->body.p + pos, len);
		pos += used;
		stuck = drain_output(r) || used ? 0 : stuck + 1;
	}
	if (pos < limit)
		rec_note(r, ">> body stuck");
	if (t->stall >= 0) {
		rec_note(r, ">> body stalls");
		return;
	}
	if (smtp_client_body_end(r->c) != 0)
		rec_note(r, ">> body_end refused");
}

static void on_ready(struct run *r)
{
	char line[64];
	if (r->next_msg < r->sc->n_msgs) {
		size_t k = r->next_msg++;
		int rc = smtp_client_message(r->c, &r->sc->msgs[k].m);
		snprintf(line, sizeof line, ">> MSG %zu%s", k + 1, rc == 0 ? "" : " refused");
		rec_note(r, line);
		if (rc == 0)
			r->cur_msg = (int)k;
	} else if (r->sc->noquit) {
		rec_note(r, ">> idle");
	} else {
		rec_note(r, smtp_client_quit(r->c) == 0 ? ">> QUIT" : ">> QUIT refused");
	}
}

static int do_action(struct run *r)
{
	enum smtp_client_action a = smtp_client_next_action(r->c);
	switch (a) {
	case SMTP_CLIENT_ACT_NONE: return 0;
	case SMTP_CLIENT_ACT_MSG_DONE: rec_result(r); break;
	case SMTP_CLIENT_ACT_START_TLS: rec_note(r, "ACTION: starttls"); break;
	case SMTP_CLIENT_ACT_WANT_BODY:
		rec_note(r, "ACTION: body");
		feed_body(r);
		break;
	case SMTP_CLIENT_ACT_READY:
		rec_note(r, "ACTION: ready");
		on_ready(r);
		break;
	case SMTP_CLIENT_ACT_CLOSE: rec_note(r, "ACTION: close"); break;
	}
	return 1;
}

/* After every event: capabilities, actions, output, until quiet. */
static void settle(struct run *r)
{
	int busy = 1;
	while (busy) {
		rec_caps(r);
		busy = do_action(r);
		busy |= drain_output(r);
	}
}

static void feed_input(struct run *r, const struct fake_buf *d)
{
	rec_input(&r->rec, d->p, d->len);
	if (!r->bytewise) {
		smtp_client_input(r->c, d->p, d->len);
		settle(r);
		return;
	}
	for (size_t i = 0; i < d->len; i++) {
		smtp_client_input(r->c, d->p + i, 1);
		settle(r);
	}
}

static void run_step(struct run *r, const struct step *st)
{
	static const struct {
		char kind;
		const char *note;
	} notes[] = {
	        {'T', "EVENT: timeout"},  {'X', "EVENT: closed"},    {'K', "EVENT: tls ok"},
	        {'F', "EVENT: tls fail"}, {'C', "EVENT: connected"},
	};
	if (st->kind == 'I') {
		flush_partial(r);
		feed_input(r, &st->data);
		rec_deadline(r);
		return;
	}
	for (size_t i = 0; i < sizeof notes / sizeof notes[0]; i++)
		if (notes[i].kind == st->kind)
			rec_note(r, notes[i].note);
	switch (st->kind) {
	case 'T': smtp_client_timeout(r->c); break;
	case 'X': smtp_client_closed(r->c); break;
	case 'K': smtp_client_tls_done(r->c, 1); break;
	case 'F': smtp_client_tls_done(r->c, 0); break;
	case 'C': smtp_client_connected(r->c); break;
	}
	settle(r);
	rec_deadline(r);
}

static void rec_end(struct run *r)
{
	const struct smtp_client_conn_result *cr = smtp_client_conn_result(r->c);
	char line[700], rp[600];
	flush_partial(r);
	if (cr->status == SMTP_CLIENT_CONN_OK) {
		snprintf(line, sizeof line, "CONN: ok messages=%d", cr->messages);
	} else {
		fmt_reply(rp, sizeof rp, &cr->reply);
		snprintf(line, sizeof line, "CONN: %s messages=%d | %s",
		         smtp_client_conn_status_name(cr->status), cr->messages, rp);
	}
	rec_note(r, line);
	if (smtp_client_done(r->c))
		snprintf(line, sizeof line, "END: closed discarded=%llu",
		         (unsigned long long)smtp_client_discarded(r->c));
	else
		snprintf(line, sizeof line, "END: open (%s) discarded=%llu",
		         smtp_client_wait_name(smtp_client_deadline(r->c).wait),
		         (unsigned long long)smtp_client_discarded(r->c));
	rec_note(r, line);
	if (r->bad_output)
		rec_note(r, "FAIL: a bare CR or LF was sent");
}

static int run_script(const struct script *sc, int bytewise, struct fake_buf *out)
{
	struct run r = {.sc = sc, .bytewise = bytewise, .cur_msg = -1};
	r.c = smtp_client_new(&sc->conf);
	if (r.c == NULL) {
		fake_buf_str(out, "smtp_client_new failed\n");
		return -1;
	}
	settle(&r);
	rec_deadline(&r);
	if (!sc->noconnect) {
		smtp_client_connected(r.c);
		settle(&r);
		rec_deadline(&r);
	}
	for (size_t i = 0; i < sc->n_steps; i++)
		run_step(&r, &sc->steps[i]);
	rec_end(&r);
	smtp_client_free(r.c);
	free(r.line.p);
	*out = r.rec;
	return r.bad_output ? -1 : 0;
}

/* ---- comparing ---- */

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct fake_buf b = {0};
	char chunk[4096];
	size_t n;
	if (f == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		fake_buf_add(&b, chunk, n);
	fclose(f);
	if (b.p == NULL)
		fake_buf_add(&b, "", 0);
	return b.p;
}

static void show_difference(const char *name, const char *mode, const char *got, const char *want)
{
	size_t i = 0, line = 1, start = 0;
	while (got[i] && got[i] == want[i]) {
		if (got[i] == '\n') {
			line++;
			start = i + 1;
		}
		i++;
	}
	fprintf(stderr, "%s (%s): differs at line %zu\n  got:  %.*s\n  want: %.*s\n", name, mode,
	        line, (int)strcspn(got + start, "\n"), got + start,
	        (int)strcspn(want + start, "\n"), want + start);
}

/* Writes a missing .ref when asked to; the run still fails (a written .ref is unreviewed). */
static void write_ref(const char *name, const char *path, const char *text)
{
	FILE *f;
	if (getenv("SHAREMAIL_WRITE_REF") == NULL) {
		fprintf(stderr, "%s: no %s (SHAREMAIL_WRITE_REF=1 writes it)\n", name, path);
		return;
	}
	f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		return;
	}
	fputs(text, f);
	fclose(f);
	fprintf(stderr, "%s: wrote %s: review it; this run fails until then\n", name, path);
}

static int check_transcript(const char *name)
{
	char in[512], ref[512];
	static struct script sc;
	snprintf(in, sizeof in, DIR_PATH "/%s.in", name);
	snprintf(ref, sizeof ref, DIR_PATH "/%s.ref", name);
	if (script_load(in, &sc) < 0) {
		script_free(&sc);
		return 0;
	}
	char *want = read_file(ref);
	int ok = 1;
	for (int bytewise = 0; bytewise <= (sc.nobyte ? 0 : 1); bytewise++) {
		struct fake_buf got = {0};
		if (run_script(&sc, bytewise, &got) < 0)
			ok = 0;
		if (want == NULL) {
			if (!bytewise)
				write_ref(name, ref, got.p ? got.p : "");
			ok = 0;
		} else if (got.p == NULL || strcmp(got.p, want) != 0) {
			show_difference(name, bytewise ? "one octet per call" : "as written",
			                got.p ? got.p : "", want);
			ok = 0;
		}
		free(got.p);
	}
	free(want);
	script_free(&sc);
	return ok;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(transcripts_match_their_references)
{
	DIR *d = opendir(DIR_PATH);
	char *names[512];
	size_t n = 0;
	struct dirent *e;
	if (!CHECK(d != NULL))
		return;
	while ((e = readdir(d)) != NULL && n < sizeof names / sizeof names[0]) {
		size_t len = strlen(e->d_name);
		if (len > 3 && strcmp(e->d_name + len - 3, ".in") == 0)
			names[n++] = strndup(e->d_name, len - 3);
	}
	closedir(d);
	qsort(names, n, sizeof names[0], by_name);
	CHECK(n >= 40);
	for (size_t i = 0; i < n; i++) {
		int ok = check_transcript(names[i]);
		if (!ok)
			fprintf(stderr, "transcript %s FAILED\n", names[i]);
		CHECK(ok);
		free(names[i]);
	}
	printf("%zu client transcripts\n", n);
}

/* Every .ref has its .in (a stray .ref would be a test that no longer runs). */
TEST(every_ref_has_its_in)
{
	DIR *d = opendir(DIR_PATH);
	struct dirent *e;
	if (!CHECK(d != NULL))
		return;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len <= 4 || strcmp(e->d_name + len - 4, ".ref") != 0)
			continue;
		char in[512];
		snprintf(in, sizeof in, DIR_PATH "/%.*s.in", (int)(len - 4), e->d_name);
		FILE *f = fopen(in, "r");
		if (!CHECK(f != NULL))
			fprintf(stderr, "stray %s\n", e->d_name);
		if (f)
			fclose(f);
	}
	closedir(d);
}

/* ---- unit tests of the API ---- */

static struct smtp_client_conf test_conf(void)
{
	struct smtp_client_conf conf;
	smtp_client_conf_defaults(&conf);
	conf.helo_name = "client.example.net";
	return conf;
}

/* Takes all output into out (NUL-terminated, cut at outsz); returns its length. */
static size_t take(struct smtp_client *c, char *out, size_t outsz)
{
	size_t n, total = 0;
	const char *o;
	while ((o = smtp_client_output(c, &n)), n > 0) {
		size_t k = n < outsz - 1 - total ? n : outsz - 1 - total;
		memcpy(out + total, o, k);
		total += k;
		smtp_client_output_done(c, n);
	}
	out[total] = '\0';
	return total;
}

static void peer(struct smtp_client *c, const char *s)
{
	smtp_client_input(c, s, strlen(s));
}

/* Connected, greeted, EHLO answered with the given keyword lines, READY taken. */
static struct smtp_client *ready_client(const struct smtp_client_conf *conf, const char *ehlo)
{
	char out[4096];
	struct smtp_client *c = smtp_client_new(conf);
	if (c == NULL)
		return NULL;
	smtp_client_connected(c);
	peer(c, "220 mx.example.org ESMTP\r\n");
	take(c, out, sizeof out);
	peer(c, ehlo);
	take(c, out, sizeof out);
	if (smtp_client_next_action(c) != SMTP_CLIENT_ACT_READY) {
		smtp_client_free(c);
		return NULL;
	}
	return c;
}

TEST(conf_is_checked)
{
	static const struct {
		const char *helo;
		size_t line_max, out_max, max_rcpts;
		unsigned lines_max;
		int ok;
	} cases[] = {
	        {"client.example.net", 2048, 65536, 1000, 100, 1},
	        {"client.example.net", 512, SMTP_CLIENT_OUT_MIN, 1, 1, 1},
	        {NULL, 2048, 65536, 1000, 100, 0},
	        {"", 2048, 65536, 1000, 100, 0},
	        {"two words", 2048, 65536, 1000, 100, 0},
	        {"bad\r\nname", 2048, 65536, 1000, 100, 0},
	        {"client.example.net", 511, 65536, 1000, 100, 0},
	        {"client.example.net", 65537, 65536, 1000, 100, 0},
	        {"client.example.net", 2048, SMTP_CLIENT_OUT_MIN - 1, 1000, 100, 0},
	        {"client.example.net", 2048, 65536, 0, 100, 0},
	        {"client.example.net", 2048, 65536, 100001, 100, 0},
	        {"client.example.net", 2048, 65536, 1000, 0, 0},
	        {"client.example.net", 2048, 65536, 1000, 10001, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct smtp_client_conf conf = test_conf();
		conf.helo_name = cases[i].helo;
		conf.reply_line_max = cases[i].line_max;
		conf.out_max = cases[i].out_max;
		conf.max_rcpts = cases[i].max_rcpts;
		conf.reply_lines_max = cases[i].lines_max;
		struct smtp_client *c = smtp_client_new(&conf);
		if (!CHECK_INT(c != NULL, cases[i].ok))
			fprintf(stderr, "     case %zu\n", i);
		smtp_client_free(c);
	}
	struct smtp_client_conf conf = test_conf();
	char longname[300];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	conf.helo_name = longname;
	CHECK(smtp_client_new(&conf) == NULL);
	conf = test_conf();
	conf.tls = (enum smtp_client_tls)7;
	CHECK(smtp_client_new(&conf) == NULL);
	conf.tls = (enum smtp_client_tls) - 1;
	CHECK(smtp_client_new(&conf) == NULL);
	CHECK(smtp_client_new(NULL) == NULL);
	smtp_client_free(NULL);
}

TEST(calls_in_the_wrong_state_do_nothing)
{
	struct smtp_client_conf conf = test_conf();
	struct smtp_client_rcpt rcpt = {.addr = "bob@example.org"};
	struct smtp_client_msg m = {.mail_from = "a@example.net", .rcpts = &rcpt, .n_rcpts = 1};
	char out[4096];
	struct smtp_client *c = smtp_client_new(&conf);
	if (!CHECK(c != NULL))
		return;
	CHECK_INT(smtp_client_message(c, &m), -1);
	CHECK_INT(smtp_client_quit(c), -1);
	CHECK_INT(smtp_client_body(c, "x", 1), 0);
	CHECK_INT(smtp_client_body_end(c), -1);
	smtp_client_tls_done(c, 1);
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_NONE);
	CHECK(smtp_client_result(c) == NULL);
	smtp_client_connected(c);
	peer(c, "220 mx\r\n");
	CHECK_INT(take(c, out, sizeof out), strlen("EHLO client.example.net\r\n"));
	CHECK_STR(out, "EHLO client.example.net\r\n");
	CHECK_INT(smtp_client_message(c, &m), -1); /* not READY yet */
	peer(c, "250 mx\r\n");
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_READY);
	struct smtp_client_msg empty = m;
	empty.n_rcpts = 0;
	CHECK_INT(smtp_client_message(c, &empty), -1);
	empty = m;
	empty.mail_from = NULL;
	CHECK_INT(smtp_client_message(c, &empty), -1);
	CHECK_INT(smtp_client_message(c, NULL), -1);
	CHECK_INT(smtp_client_quit(c), 0);
	CHECK_INT(smtp_client_quit(c), -1);
	take(c, out, sizeof out);
	CHECK_STR(out, "QUIT\r\n");
	peer(c, "221 bye\r\n");
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_CLOSE);
	CHECK(smtp_client_done(c));
	/* After the end everything is ignored; input is counted as discarded. */
	peer(c, "250 late\r\n");
	smtp_client_timeout(c);
	smtp_client_closed(c);
	CHECK_INT(smtp_client_discarded(c), 10);
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_NONE);
	CHECK_INT(smtp_client_conn_result(c)->status, SMTP_CLIENT_CONN_OK);
	CHECK_INT(smtp_client_deadline(c).seconds, 0);
	smtp_client_free(c);
}

TEST(too_many_recipients_is_refused)
{
	struct smtp_client_conf conf = test_conf();
	conf.max_rcpts = 2;
	struct smtp_client_rcpt rcpts[3] = {{.addr = "a@x"}, {.addr = "b@x"}, {.addr = "c@x"}};
	struct smtp_client_msg m = {.mail_from = "", .rcpts = rcpts, .n_rcpts = 3};
	struct smtp_client *c = ready_client(&conf, "250 mx\r\n");
	if (!CHECK(c != NULL))
		return;
	CHECK_INT(smtp_client_message(c, &m), -1);
	m.n_rcpts = 2;
	CHECK_INT(smtp_client_message(c, &m), 0);
	smtp_client_free(c);
}

/*
 * The timer is re-armed for each new wait (a serial change), not for each octet
 * of a reply (a peer trickling a reply cannot stretch the deadline), and while
 * the body is sent, for each progress.
 */
TEST(deadline_serials)
{
	struct smtp_client_conf conf = test_conf();
	struct smtp_client_rcpt rcpt = {.addr = "bob@example.org"};
	struct smtp_client_msg m = {.mail_from = "a@example.net", .rcpts = &rcpt, .n_rcpts = 1};
	char out[4096];
	struct smtp_client *c = smtp_client_new(&conf);
	if (!CHECK(c != NULL))
		return;
	struct smtp_client_deadline d0 = smtp_client_deadline(c);
	CHECK_INT(d0.wait, SMTP_CLIENT_WAIT_CONNECT);
	CHECK_INT(d0.seconds, 30);
	smtp_client_connected(c);
	struct smtp_client_deadline d1 = smtp_client_deadline(c);
	CHECK_INT(d1.wait, SMTP_CLIENT_WAIT_GREETING);
	CHECK_INT(d1.seconds, 300);
	CHECK(d1.serial != d0.serial);
	peer(c, "220-mx");
	peer(c, ".example.org\r\n22");
	CHECK_INT(smtp_client_deadline(c).serial, d1.serial);
	peer(c, "0 ready\r\n");
	struct smtp_client_deadline d2 = smtp_client_deadline(c);
	CHECK_INT(d2.wait, SMTP_CLIENT_WAIT_EHLO);
	CHECK(d2.serial != d1.serial);
	take(c, out, sizeof out);
	CHECK_INT(smtp_client_deadline(c).serial, d2.serial); /* sending is not a new wait */
	peer(c, "250-mx\r\n250-PIPELINING\r\n");
	CHECK_INT(smtp_client_deadline(c).serial, d2.serial);
	peer(c, "250 8BITMIME\r\n");
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_READY);
	struct smtp_client_deadline d3 = smtp_client_deadline(c);
	CHECK_INT(d3.wait, SMTP_CLIENT_WAIT_NONE);
	CHECK_INT(d3.seconds, 0);
	CHECK_INT(smtp_client_message(c, &m), 0);
	struct smtp_client_deadline d4 = smtp_client_deadline(c);
	CHECK_INT(d4.wait, SMTP_CLIENT_WAIT_MAIL);
	take(c, out, sizeof out);
	CHECK_STR(out, "MAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
	peer(c, "250 ok\r\n");
	struct smtp_client_deadline d5 = smtp_client_deadline(c);
	CHECK_INT(d5.wait, SMTP_CLIENT_WAIT_RCPT);
	CHECK(d5.serial != d4.serial);
	peer(c, "250 ok\r\n");
	struct smtp_client_deadline d6 = smtp_client_deadline(c);
	CHECK_INT(d6.wait, SMTP_CLIENT_WAIT_DATA);
	CHECK_INT(d6.seconds, 120);
	CHECK(d6.serial != d5.serial);
	peer(c, "354 go\r\n");
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_WANT_BODY);
	struct smtp_client_deadline d7 = smtp_client_deadline(c);
	CHECK_INT(d7.wait, SMTP_CLIENT_WAIT_BODY);
	CHECK_INT(d7.seconds, 180);
	CHECK_INT(smtp_client_body(c, "a\r\n", 3), 3);
	struct smtp_client_deadline d8 = smtp_client_deadline(c);
	CHECK(d8.serial != d7.serial);
	CHECK_INT(smtp_client_body(c, "", 0), 0);
	CHECK_INT(smtp_client_deadline(c).serial, d8.serial); /* no progress, no re-arm */
	take(c, out, sizeof out);
	CHECK(smtp_client_deadline(c).serial != d8.serial);
	CHECK_INT(smtp_client_body_end(c), 0);
	struct smtp_client_deadline d9 = smtp_client_deadline(c);
	CHECK_INT(d9.wait, SMTP_CLIENT_WAIT_DOT);
	CHECK_INT(d9.seconds, 600);
	smtp_client_free(c);
}

static size_t count_lines(const char *s, const char *prefix)
{
	size_t n = 0, plen = strlen(prefix);
	for (const char *p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, plen) == 0)
			n++;
	return n;
}

/*
 * A pipelined group larger than the output buffer goes out as the glue drains
 * it, never over out_max, and the replies still match in order: even
 * recipients accepted, odd ones refused.
 */
TEST(pipelined_group_larger_than_the_buffer)
{
	enum { N = 300 };
	static struct smtp_client_rcpt rcpts[N];
	static char addrs[N][80];
	static char out[1 << 16];
	struct smtp_client_conf conf = test_conf();
	conf.max_rcpts = N;
	conf.out_max = SMTP_CLIENT_OUT_MIN;
	for (int i = 0; i < N; i++) {
		snprintf(addrs[i], sizeof addrs[i],
		         "recipient-number-%03d-with-a-long-name@example.org", i);
		rcpts[i].addr = addrs[i];
	}
	struct smtp_client_msg m = {.mail_from = "a@example.net", .rcpts = rcpts, .n_rcpts = N};
	struct smtp_client *c = ready_client(&conf, "250-mx\r\n250 PIPELINING\r\n");
	if (!CHECK(c != NULL))
		return;
	CHECK_INT(smtp_client_message(c, &m), 0);
	size_t total = 0, n, max_pending = 0;
	const char *o;
	while ((o = smtp_client_output(c, &n)), n > 0) {
		if (n > max_pending)
			max_pending = n;
		memcpy(out + total, o, n);
		total += n;
		smtp_client_output_done(c, n);
	}
	out[total] = '\0';
	CHECK(total > 2 * SMTP_CLIENT_OUT_MIN);
	CHECK(max_pending <= SMTP_CLIENT_OUT_MIN);
	CHECK_INT(count_lines(out, "RCPT TO:<"), N);
	CHECK(total > 6 && strcmp(out + total - 6, "DATA\r\n") == 0);
	peer(c, "250 sender ok\r\n");
	for (int i = 0; i < N; i++)
		peer(c, i % 2 ? "550 5.1.1 no\r\n" : "250 2.1.5 ok\r\n");
	peer(c, "354 go\r\n");
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_WANT_BODY);
	smtp_client_body(c, "hi\r\n", 4);
	smtp_client_body_end(c);
	take(c, out, sizeof out);
	CHECK_STR(out, "hi\r\n.\r\n");
	peer(c, "250 2.0.0 queued\r\n");
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_MSG_DONE);
	const struct smtp_client_result *res = smtp_client_result(c);
	if (CHECK(res != NULL) && CHECK_INT(res->n_rcpts, N)) {
		CHECK_INT(res->status, SMTP_CLIENT_MSG_SENT);
		for (int i = 0; i < N; i++)
			CHECK_INT(res->rcpts[i].status,
			          i % 2 ? SMTP_CLIENT_RCPT_FAILED : SMTP_CLIENT_RCPT_DELIVERED);
		CHECK_STR(res->rcpts[1].reply.enh, "5.1.1");
		CHECK_STR(res->rcpts[0].reply.text, "queued");
	}
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_READY);
	smtp_client_free(c);
}

/* A message that fails its local checks: MSG_DONE, then READY, and nothing sent. */
TEST(local_failure_reports_before_ready)
{
	struct smtp_client_conf conf = test_conf();
	struct smtp_client_rcpt rcpt = {.addr = "bob@example.org"};
	struct smtp_client_msg m = {
	        .mail_from = "a@example.net", .rcpts = &rcpt, .n_rcpts = 1, .size = 2000};
	size_t n;
	struct smtp_client *c = ready_client(&conf, "250-mx\r\n250 SIZE 1000\r\n");
	if (!CHECK(c != NULL))
		return;
	CHECK_INT(smtp_client_message(c, &m), 0);
	smtp_client_output(c, &n);
	CHECK_INT(n, 0);
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_MSG_DONE);
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_READY);
	const struct smtp_client_result *res = smtp_client_result(c);
	if (CHECK(res != NULL)) {
		CHECK_INT(res->status, SMTP_CLIENT_MSG_FAILED);
		CHECK_INT(res->reply.code, 0);
		CHECK_STR(res->reply.enh, "5.3.4");
	}
	/* The same message fits a peer whose SIZE equals it. */
	m.size = 1000;
	CHECK_INT(smtp_client_message(c, &m), 0);
	smtp_client_output(c, &n);
	CHECK(n > 0);
	smtp_client_free(c);
}

/* Reply text is printable and bounded whatever the peer sends. */
TEST(reply_text_is_sanitised_and_bounded)
{
	struct smtp_client_conf conf = test_conf();
	struct smtp_client_rcpt rcpt = {.addr = "bob@example.org"};
	struct smtp_client_msg m = {.mail_from = "a@example.net", .rcpts = &rcpt, .n_rcpts = 1};
	char out[4096];
	char big[2100];
	struct smtp_client *c = ready_client(&conf, "250 mx\r\n");
	if (!CHECK(c != NULL))
		return;
	smtp_client_message(c, &m);
	take(c, out, sizeof out);
	memset(big, 'x', sizeof big);
	memcpy(big, "550 5.7.1 \x01\xff\x7f", 13);
	memcpy(big + 2000, "\r\n", 3);
	smtp_client_input(c, big, 2002);
	CHECK_INT(smtp_client_next_action(c), SMTP_CLIENT_ACT_MSG_DONE);
	const struct smtp_client_result *res = smtp_client_result(c);
	if (CHECK(res != NULL)) {
		CHECK_INT(strlen(res->reply.text), SMTP_CLIENT_TEXT_MAX);
		CHECK(strncmp(res->reply.text, "???xxx", 6) == 0);
		CHECK_INT(res->rcpts[0].status, SMTP_CLIENT_RCPT_FAILED);
	}
	smtp_client_free(c);
}

TEST_MAIN(T(transcripts_match_their_references), T(every_ref_has_its_in), T(conf_is_checked),
          T(calls_in_the_wrong_state_do_nothing), T(too_many_recipients_is_refused),
          T(deadline_serials), T(pipelined_group_larger_than_the_buffer),
          T(local_failure_reports_before_ready), T(reply_text_is_sanitised_and_bounded))
