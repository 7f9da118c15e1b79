/*
 * test_pop3_transcripts: replays every tests/transcripts/pop3d/pop3_NAME.in through a
 * POP3 session (pop3d/pop3_session.h) with the fake ops (fake_pop3_ops.h) and
 * compares what comes out with pop3_NAME.ref, exactly.
 *
 * pop3_NAME.in, one directive a line ('#' and blank lines are ignored):
 *   conf: KEY = VALUE       a sharemail.conf line
 *   account: ID PASSWORD    the one account (the password check's truth)
 *   msg: UID TEXT           a message of the maildrop, as stored (escapes below)
 *   msg_gone: N             message N (1-based) cannot be opened
 *   msg_fail: N AFTER       reading message N fails after AFTER octets
 *   fake: auth_tempfail | in_use | open_tempfail | commit_fail | tls | tls_fail |
 *         implicit_tls | chunk=N
 *   early                   the client talked before the greeting
 *   nobyte                  do not also replay one octet per input call
 *   C: TEXT                 a client line, CRLF added; escapes \r \n \t \0 \\ \xHH
 *   C+: TEXT / R+: TEXT     held and sent with the next line (one input call)
 *   R: TEXT                 raw octets, nothing added
 *   C*N: TEXT / R*N: TEXT   N times in one input call
 *   timeout / shutdown / drop
 * Every request is answered as soon as the session's output so far is taken (as
 * the glue does: never from inside the op); STLS discards the rest of the input
 * call it came in (RFC 2595 4). pop3_NAME.ref is the output with each CRLF shown
 * as a newline, a lone CR as "<CR>", a lone LF as "<LF>", then the fake's "## "
 * lines, then "## closed" / "## dropped" / "## open" and "## unread N".
 * SHAREMAIL_WRITE_REF=1 writes a missing .ref (and fails: review it).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "fake_pop3_ops.h"
#include "harness.h"

#define DIR_PATH "tests/transcripts/pop3d"
#define BUF_MAX (4u << 20)

struct buf {
	char *p;
	size_t len;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
	char *q = realloc(b->p, b->len + n + 1);
	if (!q)
		return;
	b->p = q;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Unescapes src into b. */
static void unescape(struct buf *b, const char *src)
{
	for (const char *p = src; *p; p++) {
		char c = *p;
		if (c == '\\' && p[1]) {
			p++;
			switch (*p) {
			case 'r': c = '\r'; break;
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case '0': c = '\0'; break;
			case 'x':
				if (hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
					c = (char)(hexval(p[1]) * 16 + hexval(p[2]));
					p += 2;
				}
				break;
			default: c = *p;
			}
		}
		buf_add(b, &c, 1);
	}
}

struct script {
	struct buf conf;
	struct buf lines; /* the directives to run, in order */
	int early, nobyte;
};

static struct conf *script_conf(const struct script *sc)
{
	char path[] = "/tmp/sharemail-pop3-transcript-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "w");
	fprintf(f, "hostname = pop.example.com\nlocal_domains = example.com\n");
	if (sc->conf.p)
		fputs(sc->conf.p, f);
	fclose(f);
	struct conf_errors errs = {0};
	struct conf *c = conf_load(path, &errs);
	if (!c)
		conf_errors_print(&errs);
	conf_errors_free(&errs);
	unlink(path);
	return c;
}

/* Feeds in[*pos..) (bytewise: an octet per call), answering requests, until stuck. */
static void feed(struct fake_pop3 *f, const struct buf *in, size_t *pos, int bytewise)
{
	for (;;) {
		size_t left = in->len - *pos;
		size_t n = 0;
		if (left > 0 && !pop3_session_ended(f->s))
			n = pop3_session_input(f->s, in->p + *pos, bytewise ? 1 : left);
		*pos += n;
		size_t before = f->rec_len;
		fake_pop3_drain(f);
		int answered = fake_pop3_settle(f);
		if (f->discard_input) {
			f->discard_input = 0;
			*pos = in->len;
		}
		fake_pop3_drain(f);
		if (pop3_session_ended(f->s))
			return;
		if (n == 0 && !answered && f->rec_len == before)
			return;
	}
}

static void set_fake(struct fake_pop3 *f, const char *v)
{
	if (strcmp(v, "auth_tempfail") == 0)
		f->auth_tempfail = 1;
	else if (strcmp(v, "in_use") == 0)
		f->open_in_use = 1;
	else if (strcmp(v, "open_tempfail") == 0)
		f->open_tempfail = 1;
	else if (strcmp(v, "commit_fail") == 0)
		f->commit_fail = 1;
	else if (strcmp(v, "tls") == 0)
		f->tls = 1;
	else if (strcmp(v, "tls_fail") == 0)
		f->tls = f->tls_fail = 1;
	else if (strcmp(v, "implicit_tls") == 0)
		f->tls = 2;
	else if (strncmp(v, "chunk=", 6) == 0)
		f->read_chunk = atoi(v + 6);
	else
		printf("  unknown fake: %s\n", v);
}

/* The setup directives (before the session exists). */
static void setup_line(struct fake_pop3 *f, const char *l)
{
	if (strncmp(l, "account: ", 9) == 0) {
		sscanf(l + 9, "%255s %255s", f->identity, f->password);
		snprintf(f->account, sizeof f->account, "%s", f->identity);
	} else if (strncmp(l, "msg: ", 5) == 0) {
		char uid[POP3_UID_MAX + 1];
		const char *sp = strchr(l + 5, ' ');
		struct buf t = {0};
		snprintf(uid, sizeof uid, "%.*s", sp ? (int)(sp - (l + 5)) : 0, l + 5);
		unescape(&t, sp ? sp + 1 : "");
		fake_pop3_add(f, uid, t.p ? t.p : "", t.len);
		free(t.p);
	} else if (strncmp(l, "msg_gone: ", 10) == 0) {
		size_t n = (size_t)atoi(l + 10);
		if (n >= 1 && n <= f->n_msgs)
			f->msgs[n - 1].gone = 1;
	} else if (strncmp(l, "msg_fail: ", 10) == 0) {
		int n = 0;
		long after = 0;
		sscanf(l + 10, "%d %ld", &n, &after);
		if (n >= 1 && (size_t)n <= f->n_msgs)
			f->msgs[n - 1].fail_after = after;
	} else if (strncmp(l, "fake: ", 6) == 0) {
		set_fake(f, l + 6);
	}
}

/* Runs the action directives; returns 0, or -1 on a directive it does not know. */
static int run_actions(struct fake_pop3 *f, const struct script *sc, int bytewise)
{
	struct buf in = {0};
	size_t pos = 0;
	int dropped = 0, rc = 0;
	char *copy = strdup(sc->lines.p ? sc->lines.p : "");
	for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l && !dropped;
	     l = strtok_r(NULL, "\n", &save)) {
		int hold = 0, times = 1, crlf = 0;
		const char *text = NULL;
		if (l[0] == 'C' || l[0] == 'R') {
			crlf = l[0] == 'C';
			const char *p = l + 1;
			if (*p == '+') {
				hold = 1;
				p++;
			} else if (*p == '*') {
				times = atoi(p + 1);
				while (*++p >= '0' && *p <= '9')
					;
			}
			if (p[0] != ':' || p[1] != ' ') {
				printf("  bad line: %s\n", l);
				rc = -1;
				break;
			}
			text = p + 2;
		}
		if (text) {
			for (int k = 0; k < times; k++) {
				unescape(&in, text);
				if (crlf)
					buf_add(&in, "\r\n", 2);
			}
			if (!hold)
				feed(f, &in, &pos, bytewise);
		} else if (strcmp(l, "timeout") == 0) {
			pop3_session_timeout(f->s);
			feed(f, &in, &pos, bytewise);
		} else if (strcmp(l, "shutdown") == 0) {
			pop3_session_shutdown(f->s);
			feed(f, &in, &pos, bytewise);
		} else if (strcmp(l, "drop") == 0) {
			dropped = 1;
		} else if (strncmp(l, "account: ", 9) && strncmp(l, "msg: ", 5) &&
		           strncmp(l, "msg_gone: ", 10) && strncmp(l, "msg_fail: ", 10) &&
		           strncmp(l, "fake: ", 6)) {
			printf("  unknown directive: %s\n", l);
			rc = -1;
		}
	}
	free(copy);
	fake_pop3_drain(f);
	int ended = pop3_session_ended(f->s);
	size_t unread = in.len - pos;
	pop3_session_free(f->s); /* a drop: the glue frees the session now */
	f->s = NULL;
	fake_pop3_note(f, "%s", dropped ? "dropped" : ended ? "closed" : "open");
	if (unread)
		fake_pop3_note(f, "unread %zu", unread);
	for (size_t i = 0; i < f->n_msgs; i++)
		if (f->msgs[i].removed)
			fake_pop3_note(f, "removed %s", f->msgs[i].uid);
	free(in.p);
	return rc;
}

/* The record with CRLF as a newline and lone CR / LF made visible. */
static void render(const char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
			buf_add(out, "\n", 1);
			i++;
		} else if (p[i] == '\r') {
			buf_add(out, "<CR>", 4);
		} else if (p[i] == '\n') {
			/* the fake's own "## " lines end with a bare LF */
			size_t b = i;
			while (b > 0 && p[b - 1] != '\n')
				b--;
			int note = memmem(p + b, i - b, "## ", 3) != NULL;
			buf_add(out, note ? "\n" : "<LF>", note ? 1 : 4);
		} else {
			buf_add(out, p + i, 1);
		}
	}
}

static int run_once(const struct script *sc, const struct conf *c, int bytewise, struct buf *out)
{
	struct fake_pop3 f;
	fake_pop3_init(&f);
	char *copy = strdup(sc->lines.p ? sc->lines.p : "");
	for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save))
		setup_line(&f, l);
	free(copy);
	if (f.tls == 0)
		f.ops.tls_start = NULL;
	f.s = pop3_session_new(c, &f.ops, "192.0.2.1");
	if (!f.s) {
		fake_pop3_fini(&f);
		return -1;
	}
	if (f.tls == 2)
		pop3_session_tls_implicit(f.s);
	pop3_session_greet(f.s, sc->early);
	fake_pop3_drain(&f);
	int rc = run_actions(&f, sc, bytewise);
	render(f.rec ? f.rec : "", f.rec_len, out);
	fake_pop3_fini(&f);
	return rc;
}

static int read_script(const char *path, struct script *sc)
{
	FILE *fp = fopen(path, "r");
	if (!fp)
		return -1;
	char line[8192];
	while (fgets(line, sizeof line, fp)) {
		line[strcspn(line, "\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		if (strncmp(line, "conf: ", 6) == 0) {
			buf_add(&sc->conf, line + 6, strlen(line + 6));
			buf_add(&sc->conf, "\n", 1);
		} else if (strcmp(line, "early") == 0) {
			sc->early = 1;
		} else if (strcmp(line, "nobyte") == 0) {
			sc->nobyte = 1;
		} else {
			buf_add(&sc->lines, line, strlen(line));
			buf_add(&sc->lines, "\n", 1);
		}
	}
	fclose(fp);
	return 0;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return NULL;
	char *p = malloc(BUF_MAX);
	*len = p ? fread(p, 1, BUF_MAX - 1, fp) : 0;
	if (p)
		p[*len] = '\0';
	fclose(fp);
	return p;
}

static void one(const char *name)
{
	char in_path[512], ref_path[512];
	snprintf(in_path, sizeof in_path, "%s/%s.in", DIR_PATH, name);
	snprintf(ref_path, sizeof ref_path, "%s/%s.ref", DIR_PATH, name);
	struct script sc = {0};
	if (!CHECK(read_script(in_path, &sc) == 0))
		return;
	struct conf *c = script_conf(&sc);
	if (!CHECK(c != NULL)) {
		printf("  %s: conf\n", name);
		return;
	}
	struct buf got = {0}, got1 = {0};
	int ok = CHECK(run_once(&sc, c, 0, &got) == 0);
	size_t rlen = 0;
	char *ref = read_file(ref_path, &rlen);
	if (!ref && getenv("SHAREMAIL_WRITE_REF")) {
		FILE *fp = fopen(ref_path, "wb");
		if (fp) {
			fwrite(got.p, 1, got.len, fp);
			fclose(fp);
		}
		printf("  wrote %s: review it\n", ref_path);
		CHECK(0);
	} else if (ok && CHECK(ref != NULL)) {
		if (!CHECK_MEM(got.p, got.len, ref, rlen))
			printf("  %s: line mode differs from %s\n---\n%s---\n", name, ref_path,
			       got.p);
		if (!sc.nobyte) {
			CHECK(run_once(&sc, c, 1, &got1) == 0);
			if (!CHECK_MEM(got1.p, got1.len, ref, rlen))
				printf("  %s: byte mode differs\n---\n%s---\n", name, got1.p);
		}
	}
	free(ref);
	free(got.p);
	free(got1.p);
	free(sc.conf.p);
	free(sc.lines.p);
	conf_free(c);
}

TEST(pop3_transcripts)
{
	DIR *d = opendir(DIR_PATH);
	if (!CHECK(d != NULL))
		return;
	char *names[512];
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < 512) {
		size_t l = strlen(e->d_name);
		if (strncmp(e->d_name, "pop3_", 5) == 0 && l > 3 &&
		    strcmp(e->d_name + l - 3, ".in") == 0)
			names[n++] = strndup(e->d_name, l - 3);
	}
	closedir(d);
	CHECK(n > 0);
	for (size_t i = 0; i < n; i++) {
		one(names[i]);
		free(names[i]);
	}
}

TEST_MAIN(T(pop3_transcripts))
