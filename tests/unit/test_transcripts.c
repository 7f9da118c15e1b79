/*
 * test_transcripts: replays every tests/transcripts/NAME.in through an SMTP
 * session with fake ops and compares what comes out with NAME.ref, exactly.
 *
 * NAME.in, one directive a line ('#' lines and blank lines are ignored):
 *   conf: KEY = VALUE     a sharemail.conf line (replaces the runner's default for KEY)
 *   peer: ADDR            the client's address (default 192.0.2.1)
 *   trusted: yes          the client lies in smtp_trusted_networks
 *   early                 the client talked before the greeting
 *   nobyte                do not also replay the transcript one octet per input call
 *   fake: free=N | begin_fail=ENOSPC|EIO | write_fail_after=N | commit=fail
 *   C: TEXT               a client line; CRLF is added; escapes \r \n \t \0 \\ \xHH
 *   C+: TEXT              the same, but held and sent together with the next C:/R:
 *                         (a pipelined group arrives in one input call)
 *   R: TEXT / R+: TEXT    raw octets (no CRLF added)
 *   C*N: TEXT / R*N: TEXT the line (octets) N times, in one input call
 *   timeout / shutdown    the glue's deadline fired / the server is stopping
 *   sharing_peer: yes     the client is a Domain Sharing peer (verify_client_is_peer)
 *   answer: MAILBOX STATUS [TEXT]
 *                         the verifier's answer for MAILBOX (before the directory):
 *                         STATUS remote (TEXT: the route), remote_disabled, notfound,
 *                         tempfail (TEXT: the reason), foreign; other servers answered
 *   verify: later | now   from here the verifier answers later (each request stays
 *                         open until a done: line) or at once (the default)
 *   done: ID... | done: all | done: reverse
 *                         the verifier answers those open requests (ids as the session
 *                         gave them, "## ask" lines), all oldest first, or newest first
 *   drop                  the connection is lost: the glue frees the session now
 *   auth: yes             the glue checks AUTH passwords (fake_session_ops.h)
 *   screen: N             the glue has a Dynamic Screen; its N-th note screens
 *   port: submission|smtps  the listener's role (default smtp)
 *   tls: yes              TLS is active on the connection
 *   pop_login: KEY AGO    KEY logged in over POP3 AGO seconds before the fake clock's now
 *                         (a real directory/pop_login table; POP before SMTP asks it)
 * Input the session does not take (it waits for answers) is kept and fed again
 * after each done: line, as the glue does; a commit is answered as soon as it is
 * asked. NAME.ref is the server's output with each CRLF shown as a newline, then
 * the fake ops' record in "## " lines (tests/unit/fake_session_ops.h): lookups and
 * verifier requests, message begin/abort, each committed envelope and message (as
 * stored), rejected-recipient log lines, input never taken ("## unread N"), and
 * whether the session ended ("## closed"), was dropped ("## dropped") or not
 * ("## open").
 *
 * Every transcript also runs one octet per input call (unless `nobyte`) and must
 * give the same .ref. A missing .ref fails; SHAREMAIL_WRITE_REF=1 writes it from the
 * line-mode run, and that run fails too ("wrote ...: review it"): a written .ref is
 * never a pass.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "directory/pop_login.h"
#include "fake_session_ops.h"
#include "harness.h"
#include "smtpd/smtp_session.h"

#define DIR_PATH "tests/transcripts"
#define SCRIPT_INPUT_MAX (4u << 20)

/* ---- the .in file ---- */

struct script {
	struct fake_buf conf;
	char conf_keys[2048];
	char peer[64];
	int trusted, early, nobyte, sharing_peer;
	int auth, screen, tls;
	enum smtp_port_kind port;
	/* pop_login: lines */
	struct {
		char key[POP_LOGIN_KEY_MAX + 1];
		long ago;
	} pop[8];
	size_t n_pop;
	/* fake: lines */
	long long free_space, write_fail_after;
	int begin_errno, commit_fail;
	/* answer: lines */
	struct {
		char mailbox[300];
		enum verify_status status;
		char text[200];
	} answers[FAKE_ANSWERS_MAX];
	size_t n_answers;
	/*
	 * steps: kind 'I' input chunk, 'T' timeout, 'S' shutdown, 'L' verify later,
	 * 'N' verify now, 'A' done (data: the ids, "all" or "reverse"), 'X' drop
	 */
	struct {
		char kind;
		struct fake_buf data;
	} steps[4096];
	size_t n_steps;
};

static void conf_line(struct script *sc, const char *kv)
{
	char key[128];
	size_t k = strcspn(kv, " =");
	snprintf(key, sizeof key, "%.*s", (int)k, kv);
	strncat(sc->conf_keys, key, sizeof sc->conf_keys - strlen(sc->conf_keys) - 2);
	strcat(sc->conf_keys, " ");
	fake_buf_str(&sc->conf, kv);
	fake_buf_str(&sc->conf, "\n");
}

static void fake_line(struct script *sc, const char *v)
{
	if (strncmp(v, "free=", 5) == 0)
		sc->free_space = atoll(v + 5);
	else if (strcmp(v, "begin_fail=ENOSPC") == 0)
		sc->begin_errno = ENOSPC;
	else if (strcmp(v, "begin_fail=EIO") == 0)
		sc->begin_errno = EIO;
	else if (strncmp(v, "write_fail_after=", 17) == 0)
		sc->write_fail_after = atoll(v + 17);
	else if (strcmp(v, "commit=fail") == 0)
		sc->commit_fail = 1;
}

static int answer_line(struct script *sc, const char *v)
{
	static const struct {
		const char *name;
		enum verify_status st;
	} names[] = {{"remote", VERIFY_REMOTE},     {"remote_disabled", VERIFY_REMOTE_DISABLED},
	             {"notfound", VERIFY_NOTFOUND}, {"tempfail", VERIFY_TEMPFAIL},
	             {"foreign", VERIFY_FOREIGN},   {"local", VERIFY_LOCAL}};
	char mb[300], st[40];
	int used = 0;
	if (sc->n_answers >= FAKE_ANSWERS_MAX || sscanf(v, "%299s %39s %n", mb, st, &used) < 2)
		return -1;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(names[i].name, st) != 0)
			continue;
		snprintf(sc->answers[sc->n_answers].mailbox, 300, "%s", mb);
		sc->answers[sc->n_answers].status = names[i].st;
		snprintf(sc->answers[sc->n_answers].text, 200, "%s", used > 0 ? v + used : "");
		sc->n_answers++;
		return 0;
	}
	return -1;
}

/* A step that is not input: kind, and the text it carries (done: ids). */
static int other_step(struct script *sc, char kind, const char *text)
{
	if (sc->n_steps >= sizeof sc->steps / sizeof sc->steps[0])
		return -1;
	sc->steps[sc->n_steps].kind = kind;
	memset(&sc->steps[sc->n_steps].data, 0, sizeof(struct fake_buf));
	if (text != NULL)
		fake_buf_str(&sc->steps[sc->n_steps].data, text);
	sc->n_steps++;
	return 0;
}

/* C:, C+:, R:, R+:, C*N:, R*N: */
static int client_line(struct script *sc, const char *line, int *held)
{
	int crlf = line[0] == 'C';
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
	if (!*held) {
		if (sc->n_steps >= sizeof sc->steps / sizeof sc->steps[0])
			return -1;
		sc->steps[sc->n_steps].kind = 'I';
		memset(&sc->steps[sc->n_steps].data, 0, sizeof(struct fake_buf));
		sc->n_steps++;
	}
	struct fake_buf *d = &sc->steps[sc->n_steps - 1].data;
	for (long i = 0; i < times && d->len < SCRIPT_INPUT_MAX; i++) {
		fake_buf_unescape(d, p);
		if (crlf)
			fake_buf_add(d, "\r\n", 2);
	}
	*held = hold;
	return 0;
}

static int script_load(const char *path, struct script *sc)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	int held = 0;
	if (f == NULL)
		return -1;
	memset(sc, 0, sizeof *sc);
	snprintf(sc->peer, sizeof sc->peer, "192.0.2.1");
	sc->free_space = 10000000000LL;
	sc->write_fail_after = -1;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (strncmp(line, "conf: ", 6) == 0)
			conf_line(sc, line + 6);
		else if (strncmp(line, "peer: ", 6) == 0)
			snprintf(sc->peer, sizeof sc->peer, "%.60s", line + 6);
		else if (strcmp(line, "trusted: yes") == 0)
			sc->trusted = 1;
		else if (strcmp(line, "early") == 0)
			sc->early = 1;
		else if (strcmp(line, "nobyte") == 0)
			sc->nobyte = 1;
		else if (strncmp(line, "fake: ", 6) == 0)
			fake_line(sc, line + 6);
		else if (strcmp(line, "sharing_peer: yes") == 0)
			sc->sharing_peer = 1;
		else if (strcmp(line, "auth: yes") == 0)
			sc->auth = 1;
		else if (strncmp(line, "screen: ", 8) == 0)
			sc->screen = atoi(line + 8);
		else if (strcmp(line, "tls: yes") == 0)
			sc->tls = 1;
		else if (strncmp(line, "pop_login: ", 11) == 0 && sc->n_pop < 8 &&
		         sscanf(line + 11, "%320s %ld", sc->pop[sc->n_pop].key,
		                &sc->pop[sc->n_pop].ago) == 2)
			sc->n_pop++;
		else if (strcmp(line, "port: submission") == 0)
			sc->port = SMTP_PORT_SUBMISSION;
		else if (strcmp(line, "port: smtps") == 0)
			sc->port = SMTP_PORT_SMTPS;
		else if (strncmp(line, "answer: ", 8) == 0 && answer_line(sc, line + 8) == 0)
			continue;
		else if ((strcmp(line, "timeout") == 0 || strcmp(line, "shutdown") == 0) &&
		         other_step(sc, line[0] == 't' ? 'T' : 'S', NULL) == 0)
			continue;
		else if (strcmp(line, "verify: later") == 0 && other_step(sc, 'L', NULL) == 0)
			continue;
		else if (strcmp(line, "verify: now") == 0 && other_step(sc, 'N', NULL) == 0)
			continue;
		else if (strncmp(line, "done: ", 6) == 0 && other_step(sc, 'A', line + 6) == 0)
			continue;
		else if (strcmp(line, "drop") == 0 && other_step(sc, 'X', NULL) == 0)
			continue;
		else if ((line[0] == 'C' || line[0] == 'R') && client_line(sc, line, &held) == 0)
			continue;
		else {
			fprintf(stderr, "%s: bad line: %s\n", path, line);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

static void script_free(struct script *sc)
{
	free(sc->conf.p);
	for (size_t i = 0; i < sc->n_steps; i++)
		free(sc->steps[i].data.p);
}

static int key_overridden(const struct script *sc, const char *key)
{
	char k[140];
	snprintf(k, sizeof k, "%s ", key);
	return strncmp(sc->conf_keys, k, strlen(k)) == 0 || strstr(sc->conf_keys, k) != NULL;
}

static struct conf *script_conf(const struct script *sc)
{
	static const char *const defaults[][2] = {
	        {"hostname", "mx.example.com"},
	        {"local_domains", "example.com example.org"},
	        {"smtp_max_message_size", "10000"},
	        {"queue_min_free", "1000000"},
	};
	char path[] = "/tmp/sharemail-transcript-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "w");
	for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
		if (!key_overridden(sc, defaults[i][0]))
			fprintf(f, "%s = %s\n", defaults[i][0], defaults[i][1]);
	if (sc->conf.p)
		fputs(sc->conf.p, f);
	fclose(f);
	struct conf_errors errs = {0};
	struct conf *c = conf_load(path, &errs);
	if (c == NULL)
		conf_errors_print(&errs);
	conf_errors_free(&errs);
	unlink(path);
	return c;
}

/* ---- running ---- */

/*
 * Feeds what the session has not taken yet (bytewise: one octet per call),
 * answering commits as the glue would, until it is all taken, the session ended,
 * or it waits for verifier answers (the rest stays in `in` from *pos).
 */
static void feed(struct fake_session *f, const struct fake_buf *in, size_t *pos, int bytewise)
{
	int stuck = 0;
	while (*pos < in->len && !smtp_session_ended(f->s) && stuck < 3) {
		if (smtp_session_waiting(f->s) && !fake_session_resolve(f))
			break; /* a done: line comes first */
		fake_session_drain(f);
		size_t len = bytewise ? 1 : in->len - *pos;
		size_t used = smtp_session_input(f->s, in->p + *pos, len);
		*pos += used;
		fake_session_drain(f);
		if (fake_session_resolve(f))
			fake_session_drain(f);
		stuck = used == 0 && !smtp_session_waiting(f->s) ? stuck + 1 : 0;
	}
}

/* done: ID... | all | reverse. Returns -1 when an id is not open (the .in is wrong). */
static int fire_done(struct fake_session *f, const char *what)
{
	int bad = 0;
	if (strcmp(what, "all") == 0 || strcmp(what, "reverse") == 0) {
		int rev = what[0] == 'r';
		while (f->n_open > 0 && f->s != NULL)
			fake_session_done(f, f->open[rev ? f->n_open - 1 : 0].id);
		return 0;
	}
	for (const char *p = what; *p;) {
		char *end;
		unsigned long long id = strtoull(p, &end, 10);
		if (end == p)
			return -1;
		if (fake_session_done(f, id) < 0) {
			fprintf(stderr, "done: %llu is not open\n", id);
			bad = 1;
		}
		p = end;
		while (*p == ' ')
			p++;
	}
	return bad ? -1 : 0;
}

/* One step that is not input; returns 1 when the session is gone (drop). */
static int run_other(struct fake_session *f, char kind, const char *text, int *bad)
{
	switch (kind) {
	case 'T': smtp_session_timeout(f->s); break;
	case 'S': smtp_session_shutdown(f->s); break;
	case 'L': f->verify_later = 1; break;
	case 'N': f->verify_later = 0; break;
	case 'A':
		if (fire_done(f, text) < 0)
			*bad = 1;
		break;
	case 'X':
		fake_session_drain(f);
		smtp_session_free(f->s);
		f->s = NULL;
		return 1;
	default: break;
	}
	return 0;
}

static int run_script(const struct script *sc, const struct conf *c, int bytewise,
                      struct fake_buf *out)
{
	static struct fake_session f;
	struct fake_buf in = {0};
	size_t pos = 0;
	int bad = 0, dropped = 0;
	fake_session_init(&f);
	f.record = 1;
	f.conf = c;
	f.free_space = sc->free_space;
	f.begin_errno = sc->begin_errno;
	f.write_fail_after = sc->write_fail_after;
	f.commit_fail = sc->commit_fail;
	for (size_t i = 0; i < sc->n_answers; i++)
		fake_session_answer(&f, sc->answers[i].mailbox, sc->answers[i].status,
		                    sc->answers[i].text);
	f.auth = sc->auth;
	f.screen = sc->screen;
	fake_session_setup(&f);
	struct pop_login *pl = NULL;
	if (sc->n_pop > 0) {
		pl = pop_login_new(16);
		for (size_t i = 0; pl && i < sc->n_pop; i++)
			pop_login_note(pl, sc->pop[i].key, f.ops.now(&f) - sc->pop[i].ago);
		f.pop_logins = pl;
	}
	struct smtp_session *s =
	        smtp_session_new(c, &f.ops, sc->port, sc->peer, sc->trusted, sc->sharing_peer);
	if (s == NULL) {
		pop_login_free(pl);
		return -1;
	}
	if (sc->tls) /* "tls:" lines: as on smtps_listen, TLS from the start */
		smtp_session_tls_implicit(s, "TLSv1.3", "TLS_AES_256_GCM_SHA384");
	f.s = s;
	smtp_session_greet(s, sc->early);
	fake_session_drain(&f);
	for (size_t i = 0; i < sc->n_steps && !smtp_session_ended(s); i++) {
		if (sc->steps[i].kind == 'I')
			fake_buf_add(&in, sc->steps[i].data.p, sc->steps[i].data.len);
		else if (run_other(&f, sc->steps[i].kind, sc->steps[i].data.p, &bad)) {
			dropped = 1;
			break;
		}
		feed(&f, &in, &pos, bytewise);
		fake_session_drain(&f);
	}
	int ended = dropped || smtp_session_ended(s);
	char line[96];
	if (!dropped) {
		fake_session_drain(&f);
		if (!ended && pos < in.len) {
			snprintf(line, sizeof line, "## unread %zu\n", in.len - pos);
			fake_buf_str(&f.rec, line);
		}
		f.s = NULL;
		smtp_session_free(s);
	}
	free(in.p);
	pop_login_free(pl);
	f.pop_logins = NULL;
	fake_buf_str(&f.rec, dropped ? "## dropped\n" : ended ? "## closed\n" : "## open\n");
	if (f.broken != 0)
		fake_buf_str(&f.rec, "## the session broke the ops contract\n");
	if (bad)
		fake_buf_str(&f.rec, "## a done: line named a request that was not open\n");
	if (f.open_msgs != 0)
		fake_buf_str(&f.rec, "## a message was neither committed nor aborted\n");
	if (f.n_open != 0) {
		snprintf(line, sizeof line, "## %zu requests neither answered nor cancelled\n",
		         f.n_open);
		fake_buf_str(&f.rec, line);
	}
	*out = f.rec; /* the caller frees it */
	return 0;
}

static int is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/*
 * RFC 3463/2034: every reply line carries an enhanced code of its own class,
 * except the greeting (220), the HELO/EHLO reply (250 without one) 354, and the 334 of an AUTH exchange (RFC 4954 4: a base64 challenge).
 */
static int replies_have_enhanced_codes(const char *rec, const char *name)
{
	int ok = 1;
	const char *line = rec;
	while (*line) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		if (n >= 4 && is_digit(line[0]) && is_digit(line[1]) && is_digit(line[2])) {
			int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
			int has = n >= 10 && line[4] == line[0] && line[5] == '.' &&
			          is_digit(line[6]);
			if (code != 220 && code != 354 && code != 334 && code != 250 && !has) {
				fprintf(stderr, "%s: reply without enhanced code: %.*s\n", name,
				        (int)n, line);
				ok = 0;
			}
		}
		line += n + (end ? 1 : 0);
	}
	return ok;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	int r = fputs(text, f) < 0 ? -1 : 0;
	if (fclose(f) != 0)
		r = -1;
	return r;
}

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

/* Shows the first line where got and want differ. */
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

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Runs one transcript in line mode and (unless nobyte) byte mode. Returns 1 if all
 * matched its .ref; a missing .ref is a failure (written first with
 * SHAREMAIL_WRITE_REF, which is still not a pass).
 */
static int check_transcript(const char *name, unsigned *runs)
{
	char in[512], ref[512];
	static struct script sc;
	snprintf(in, sizeof in, DIR_PATH "/%s.in", name);
	snprintf(ref, sizeof ref, DIR_PATH "/%s.ref", name);
	if (script_load(in, &sc) < 0)
		return 0;
	struct conf *c = script_conf(&sc);
	if (c == NULL) {
		script_free(&sc);
		return 0;
	}
	char *want = read_file(ref);
	int ok = 1, wrote = 0;
	for (int bytewise = 0; bytewise <= (sc.nobyte ? 0 : 1); bytewise++) {
		struct fake_buf got = {0};
		if (run_script(&sc, c, bytewise, &got) < 0) {
			ok = 0;
			continue;
		}
		(*runs)++;
		if (want == NULL && !bytewise && getenv("SHAREMAIL_WRITE_REF") &&
		    write_file(ref, got.p) == 0) {
			/* Never a pass: a written .ref says what the code does, not what it should. */
			fprintf(stderr, "%s: wrote %s: review it, then run again\n", name, ref);
			wrote = 1;
			want = read_file(ref); /* the octet-per-call run must agree with it */
		}
		if (want == NULL) {
			fprintf(stderr, "%s: no %s (SHAREMAIL_WRITE_REF=1 writes a missing one)\n",
			        name, ref);
			ok = 0;
		} else if (strcmp(got.p, want) != 0) {
			show_difference(name, bytewise ? "one octet per call" : "as written", got.p,
			                want);
			ok = 0;
		}
		if (!replies_have_enhanced_codes(got.p, name))
			ok = 0;
		/* These marks fail the test even when a .ref was written with them. */
		if (strstr(got.p, "## the session broke") || strstr(got.p, "## a done: line") ||
		    strstr(got.p, "neither answered nor cancelled")) {
			fprintf(stderr, "%s: the record shows a broken contract\n", name);
			ok = 0;
		}
		free(got.p);
	}
	free(want);
	conf_free(c);
	script_free(&sc);
	return ok && !wrote;
}

TEST(transcripts_match_their_references)
{
	DIR *d = opendir(DIR_PATH);
	char *names[512];
	size_t n = 0;
	unsigned runs = 0;
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
	CHECK(n >= 30);
	for (size_t i = 0; i < n; i++) {
		int ok = check_transcript(names[i], &runs);
		if (!ok)
			fprintf(stderr, "transcript %s FAILED\n", names[i]);
		CHECK(ok);
		free(names[i]);
	}
	printf("%zu transcripts, %u runs\n", n, runs);
}

TEST_MAIN(T(transcripts_match_their_references))
