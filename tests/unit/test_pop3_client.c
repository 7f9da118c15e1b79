/*
 * test_pop3_client: the POP3 client state machine (collect/pop3_client.h).
 * Replays every tests/transcripts/pop3c/NAME.in against the machine (the .in
 * plays the server, the glue and the caller) and compares the record with
 * NAME.ref, exactly; then unit tests of what transcripts show badly (APOP's
 * digest against RFC 1939's example, the password wiped, deadline serials,
 * calls in the wrong state, the conf's ranges).
 *
 * NAME.in, one directive a line ('#' lines and blank lines are ignored):
 *   conf: tls=none|starttls|implicit auth=auto|user|apop user=U pass=P
 *         line_max=N listing_max=N queue_max=N chunk_max=N size_slack=N
 *   nobyte        do not also replay one octet per call (say why in a comment)
 *   noconnect     do not report "connected" at the start
 *   auto: WORDS   the caller's policy, any of: retr (at LISTING, and whenever
 *                 there is room, RETR the next listed message whose uid is not
 *                 a repeat), dele (DELE a message once its MSG_END came), quit
 *                 (QUIT at READY)
 *   DO: retr N | dele N | quit      a request now (its return value is recorded)
 *   S: TEXT       the server sends a line (CRLF added) in its own read;
 *                 S+: held and sent with the next S:/R: (one read);
 *                 R: / R+: raw octets without CRLF; S*N: / R*N: N times in one read.
 *                 Escapes \r \n \t \0 \\ \xHH.
 *   EVENT: connected | timeout | closed | tls ok | tls fail | abort | connect failed
 * NAME.ref is the record: "S:" the server's octets, "C:" the client's (CRLF
 * shown as a line end; anything but CRLF fails the run), "EVENT:", "DO:",
 * "DEADLINE: seconds wait" after a step that changed it, "ACTION:" for each
 * action (MSG_DATA is not shown: a message's data is shown whole, as "|"
 * lines, at its MSG_END, MSG_ERROR or MSG_ABORTED), "LISTING:" with the
 * entries, then "END:" and "CONN:" lines.
 *
 * Every transcript also runs one octet per input call (unless `nobyte`) and
 * must give the same record. A missing .ref fails; SHAREMAIL_WRITE_REF=1
 * writes the missing ones and still fails the run: review them, then run again.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collect/pop3_client.h"
#include "fake_session_ops.h"
#include "harness.h"

#define DIR_PATH "tests/transcripts/pop3c"
#define MAX_STEPS 512
#define ECHO_MAX 160

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

struct step {
	char kind; /* 'I' input, 'T' timeout, 'X' closed, 'K' tls ok, 'F' tls fail,
	              'C' connected, 'A' abort, 'N' connect failed, 'D' a DO: request */
	struct fake_buf data; /* input octets, or the DO: text */
};

struct script {
	struct pop3_client_conf conf;
	char user[300], pass[300];
	int nobyte, noconnect;
	int auto_retr, auto_dele, auto_quit;
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
		if (strcmp(v, "none") == 0)
			sc->conf.tls = POP3_CLIENT_TLS_NONE;
		else if (strcmp(v, "starttls") == 0)
			sc->conf.tls = POP3_CLIENT_TLS_STARTTLS;
		else if (strcmp(v, "implicit") == 0)
			sc->conf.tls = POP3_CLIENT_TLS_IMPLICIT;
		else
			return -1;
	} else if (strncmp(w, "auth=", 5) == 0) {
		if (strcmp(v, "auto") == 0)
			sc->conf.auth = POP3_CLIENT_AUTH_AUTO;
		else if (strcmp(v, "user") == 0)
			sc->conf.auth = POP3_CLIENT_AUTH_USER;
		else if (strcmp(v, "apop") == 0)
			sc->conf.auth = POP3_CLIENT_AUTH_APOP;
		else
			return -1;
	} else if (strncmp(w, "user=", 5) == 0) {
		snprintf(sc->user, sizeof sc->user, "%s", v);
	} else if (strncmp(w, "pass=", 5) == 0) {
		snprintf(sc->pass, sizeof sc->pass, "%s", v);
	} else if (strncmp(w, "line_max=", 9) == 0) {
		sc->conf.line_max = strtoul(v, NULL, 10);
	} else if (strncmp(w, "listing_max=", 12) == 0) {
		sc->conf.listing_max = strtoul(v, NULL, 10);
	} else if (strncmp(w, "queue_max=", 10) == 0) {
		sc->conf.queue_max = strtoul(v, NULL, 10);
	} else if (strncmp(w, "chunk_max=", 10) == 0) {
		sc->conf.chunk_max = strtoul(v, NULL, 10);
	} else if (strncmp(w, "size_slack=", 11) == 0) {
		sc->conf.size_slack = strtoull(v, NULL, 10);
	} else {
		return -1;
	}
	return 0;
}

static int words(struct script *sc, char *s, int is_auto)
{
	for (char *w = strtok(s, " "); w; w = strtok(NULL, " ")) {
		if (!is_auto) {
			if (conf_word(sc, w) != 0)
				return -1;
		} else if (strcmp(w, "retr") == 0) {
			sc->auto_retr = 1;
		} else if (strcmp(w, "dele") == 0) {
			sc->auto_dele = 1;
		} else if (strcmp(w, "quit") == 0) {
			sc->auto_quit = 1;
		} else {
			return -1;
		}
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
	if (d->p == NULL)
		fake_buf_add(d, "", 0);
	*held = hold;
	return 0;
}

static int event_line(struct script *sc, const char *v)
{
	static const struct {
		const char *name;
		char kind;
	} events[] = {
	        {"timeout", 'T'},   {"closed", 'X'}, {"tls ok", 'K'},         {"tls fail", 'F'},
	        {"connected", 'C'}, {"abort", 'A'},  {"connect failed", 'N'},
	};
	for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
		if (strcmp(v, events[i].name) == 0)
			return new_step(sc, events[i].kind) ? 0 : -1;
	return -1;
}

static int script_line(struct script *sc, char *line, int *held)
{
	if (strncmp(line, "conf: ", 6) == 0)
		return words(sc, line + 6, 0);
	if (strncmp(line, "auto: ", 6) == 0)
		return words(sc, line + 6, 1);
	if (strcmp(line, "nobyte") == 0)
		return sc->nobyte = 1, 0;
	if (strcmp(line, "noconnect") == 0)
		return sc->noconnect = 1, 0;
	if (strncmp(line, "EVENT: ", 7) == 0)
		return event_line(sc, line + 7);
	if (strncmp(line, "DO: ", 4) == 0) {
		struct step *st = new_step(sc, 'D');
		if (st == NULL)
			return -1;
		fake_buf_str(&st->data, line + 4);
		fake_buf_add(&st->data, "", 1);
		return 0;
	}
	if ((line[0] == 'S' || line[0] == 'R') && server_line(sc, line, held) == 0)
		return 0;
	return -1;
}

static int script_load(const char *path, struct script *sc)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	int held = 0, ok = 0;
	if (f == NULL)
		return -1;
	memset(sc, 0, sizeof *sc);
	pop3_client_conf_defaults(&sc->conf);
	snprintf(sc->user, sizeof sc->user, "isp-user");
	snprintf(sc->pass, sizeof sc->pass, "s3cret");
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
	sc->conf.user = sc->user;
	sc->conf.password = sc->pass;
	return ok;
}

static void script_free(struct script *sc)
{
	for (size_t i = 0; i < sc->n_steps; i++)
		free(sc->steps[i].data.p);
}

/* ---- the record ---- */

struct run {
	struct pop3_client *c;
	const struct script *sc;
	int bytewise;
	struct fake_buf rec;
	struct fake_buf line; /* client output not yet ended by CRLF */
	struct fake_buf msg; /* the data of the message under way */
	int bad_output;
	size_t next_retr; /* auto retr: the next listing index */
	enum pop3_client_wait dl_wait;
	unsigned dl_seconds;
	int dl_shown;
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

/* Octets split at CRLF, each line after tag; long lines cut with their length. */
static void rec_lines(struct fake_buf *b, const char *tag, const char *p, size_t n)
{
	size_t start = 0;
	while (start < n) {
		size_t end = start;
		while (end < n && !(p[end] == '\n' && end > start && p[end - 1] == '\r'))
			end++;
		int crlf = end < n;
		size_t len = crlf ? end - 1 - start : end - start;
		fake_buf_str(b, tag);
		rec_escaped(b, p + start, len < ECHO_MAX ? len : ECHO_MAX);
		if (len > ECHO_MAX)
			buf_fmt(b, "... (%zu octets)", len);
		if (!crlf)
			fake_buf_str(b, " (no CRLF)");
		fake_buf_str(b, "\n");
		start = crlf ? end + 1 : n;
	}
}

/* The client's output: complete lines recorded; a CR or LF outside CRLF fails the run. */
static void take_output(struct run *r)
{
	size_t len;
	const char *out = pop3_client_output(r->c, &len);
	for (size_t i = 0; i < len; i++) {
		char ch = out[i];
		fake_buf_add(&r->line, &ch, 1);
		size_t n = r->line.len;
		if (ch == '\n') {
			if (n < 2 || r->line.p[n - 2] != '\r') {
				r->bad_output = 1;
				fake_buf_str(&r->rec, "## bare LF sent\n");
			}
			fake_buf_str(&r->rec, "C: ");
			rec_escaped(&r->rec, r->line.p, n >= 2 ? n - 2 : 0);
			fake_buf_str(&r->rec, "\n");
			r->line.len = 0;
		} else if (n >= 2 && r->line.p[n - 2] == '\r') {
			r->bad_output = 1;
			fake_buf_str(&r->rec, "## bare CR sent\n");
		}
	}
	pop3_client_output_done(r->c, len);
}

static void rec_listing(struct run *r)
{
	const struct pop3_client_listing *l = pop3_client_listing(r->c);
	if (l == NULL) {
		fake_buf_str(&r->rec, "## LISTING without a listing\n");
		r->bad_output = 1;
		return;
	}
	buf_fmt(&r->rec, "LISTING: stat=%llu/%llu n=%zu uidl=%d dups=%zu\n",
	        (unsigned long long)l->stat_count, (unsigned long long)l->stat_octets, l->n,
	        l->have_uidl, l->dup_uids);
	for (size_t i = 0; i < l->n; i++)
		buf_fmt(&r->rec, "  %llu %llu %s%s\n", (unsigned long long)l->entries[i].num,
		        (unsigned long long)l->entries[i].size,
		        l->entries[i].uid_len ? l->entries[i].uid : "-",
		        l->entries[i].dup_uid ? " dup" : "");
}

static void do_request(struct run *r, const char *what)
{
	unsigned long long n = 0;
	int rc;
	if (sscanf(what, "retr %llu", &n) == 1)
		rc = pop3_client_retr(r->c, n);
	else if (sscanf(what, "dele %llu", &n) == 1)
		rc = pop3_client_dele(r->c, n);
	else if (strcmp(what, "quit") == 0)
		rc = pop3_client_quit(r->c);
	else
		rc = -99;
	buf_fmt(&r->rec, ">> %s: %d\n", what, rc);
}

/* auto retr: as many as there is room for, skipping repeated uids. */
static void auto_retr(struct run *r)
{
	const struct pop3_client_listing *l = pop3_client_listing(r->c);
	if (!r->sc->auto_retr || l == NULL)
		return;
	while (r->next_retr < l->n && pop3_client_room(r->c) > 0) {
		const struct pop3_client_entry *e = &l->entries[r->next_retr++];
		if (e->dup_uid)
			continue;
		char what[64];
		snprintf(what, sizeof what, "retr %llu", (unsigned long long)e->num);
		do_request(r, what);
	}
}

static void rec_msg_data(struct run *r)
{
	if (r->msg.len > 0)
		rec_lines(&r->rec, "| ", r->msg.p, r->msg.len);
	r->msg.len = 0;
}

static void on_action(struct run *r, const struct pop3_client_event *ev)
{
	const char *name = pop3_client_action_name(ev->action);
	switch (ev->action) {
	case POP3_CLIENT_ACT_MSG_DATA:
		if (ev->len == 0 || ev->len > r->sc->conf.chunk_max) {
			fake_buf_str(&r->rec, "## bad chunk length\n");
			r->bad_output = 1;
		}
		fake_buf_add(&r->msg, ev->data, ev->len);
		return;
	case POP3_CLIENT_ACT_LISTING:
		rec_listing(r);
		auto_retr(r);
		return;
	case POP3_CLIENT_ACT_MSG_BEGIN:
		buf_fmt(&r->rec, "ACTION: %s %llu size=%llu\n", name, (unsigned long long)ev->num,
		        (unsigned long long)ev->size);
		r->msg.len = 0;
		return;
	case POP3_CLIENT_ACT_MSG_END:
		buf_fmt(&r->rec, "ACTION: %s %llu octets=%llu\n", name, (unsigned long long)ev->num,
		        (unsigned long long)ev->size);
		if (ev->size != r->msg.len) {
			fake_buf_str(&r->rec, "## octets differ from the data handed on\n");
			r->bad_output = 1;
		}
		rec_msg_data(r);
		if (r->sc->auto_dele) {
			char what[64];
			snprintf(what, sizeof what, "dele %llu", (unsigned long long)ev->num);
			do_request(r, what);
		}
		auto_retr(r);
		return;
	case POP3_CLIENT_ACT_MSG_ERROR:
	case POP3_CLIENT_ACT_MSG_ABORTED:
	case POP3_CLIENT_ACT_DELE_ERROR:
	case POP3_CLIENT_ACT_DELE_ABORTED:
		buf_fmt(&r->rec, "ACTION: %s %llu %s%s%s%s%s\n", name, (unsigned long long)ev->num,
		        pop3_client_msg_error_name(ev->error), ev->code ? " [" : "",
		        pop3_resp_code_name(ev->code), ev->code ? "]" : "",
		        ev->text[0] ? " text=" : "");
		if (ev->text[0]) {
			r->rec.len--; /* the newline: the text goes on the same line */
			fake_buf_str(&r->rec, ev->text);
			fake_buf_str(&r->rec, "\n");
		}
		if (ev->action == POP3_CLIENT_ACT_MSG_ERROR ||
		    ev->action == POP3_CLIENT_ACT_MSG_ABORTED)
			rec_msg_data(r);
		auto_retr(r);
		return;
	case POP3_CLIENT_ACT_DELE_OK:
		buf_fmt(&r->rec, "ACTION: %s %llu\n", name, (unsigned long long)ev->num);
		auto_retr(r);
		return;
	case POP3_CLIENT_ACT_READY:
		fake_buf_str(&r->rec, "ACTION: READY\n");
		if (r->sc->auto_quit)
			do_request(r, "quit");
		return;
	default: buf_fmt(&r->rec, "ACTION: %s\n", name); return;
	}
}

/* Drains the actions and takes the output, as the glue does after every call. */
static void settle(struct run *r)
{
	struct pop3_client_event ev;
	for (int guard = 0; guard < 100000; guard++) {
		take_output(r);
		if (pop3_client_next_action(r->c, &ev) == POP3_CLIENT_ACT_NONE)
			break;
		on_action(r, &ev);
	}
	take_output(r);
}

static void rec_deadline(struct run *r)
{
	struct pop3_client_deadline d = pop3_client_deadline(r->c);
	if (r->dl_shown && d.wait == r->dl_wait && d.seconds == r->dl_seconds)
		return;
	r->dl_shown = 1;
	r->dl_wait = d.wait;
	r->dl_seconds = d.seconds;
	buf_fmt(&r->rec, "DEADLINE: %u %s\n", d.seconds, pop3_client_wait_name(d.wait));
}

/* Drains the actions only: the octets of one read all go in before any output leaves. */
static void drain_actions(struct run *r)
{
	struct pop3_client_event ev;
	for (int guard = 0; guard < 100000; guard++) {
		if (pop3_client_next_action(r->c, &ev) == POP3_CLIENT_ACT_NONE)
			break;
		on_action(r, &ev);
	}
}

/*
 * One read of the server's octets (one octet per read in byte mode), fed as
 * collect_transport feeds them: the whole read, draining the actions between
 * partial inputs, and only then the output taken (sent).
 */
static void feed(struct run *r, const char *p, size_t n)
{
	size_t piece = r->bytewise ? 1 : n;
	for (size_t start = 0; start < n; start += piece) {
		size_t end = n - start < piece ? n : start + piece;
		int stuck = 0;
		for (size_t pos = start; pos < end;) {
			size_t used = pop3_client_input(r->c, p + pos, end - pos);
			pos += used;
			drain_actions(r);
			stuck = used == 0 ? stuck + 1 : 0;
			if (stuck > 1) {
				fake_buf_str(&r->rec, "## input made no progress\n");
				r->bad_output = 1;
				return;
			}
		}
		settle(r);
	}
}

static void run_step(struct run *r, const struct step *st)
{
	switch (st->kind) {
	case 'I':
		rec_lines(&r->rec, "S: ", st->data.p, st->data.len);
		feed(r, st->data.p, st->data.len);
		break;
	case 'T':
		fake_buf_str(&r->rec, "EVENT: timeout\n");
		pop3_client_timeout(r->c);
		break;
	case 'X':
		fake_buf_str(&r->rec, "EVENT: closed\n");
		pop3_client_closed(r->c);
		break;
	case 'K':
		fake_buf_str(&r->rec, "EVENT: tls ok\n");
		pop3_client_tls_done(r->c, 1);
		break;
	case 'F':
		fake_buf_str(&r->rec, "EVENT: tls fail\n");
		pop3_client_tls_done(r->c, 0);
		break;
	case 'C':
		fake_buf_str(&r->rec, "EVENT: connected\n");
		pop3_client_connected(r->c);
		break;
	case 'A':
		fake_buf_str(&r->rec, "EVENT: abort\n");
		pop3_client_abort(r->c, "the caller aborted");
		break;
	case 'N':
		fake_buf_str(&r->rec, "EVENT: connect failed\n");
		pop3_client_connect_failed(r->c, "connect: Connection refused");
		break;
	case 'D': do_request(r, st->data.p); break;
	}
	settle(r);
	rec_deadline(r);
}

static void rec_end(struct run *r)
{
	const struct pop3_client_outcome *o = pop3_client_outcome(r->c);
	const struct pop3_client_caps *caps = pop3_client_caps(r->c);
	buf_fmt(&r->rec, "END: %s%s%s%s %s\n", pop3_client_end_name(o->end), o->code ? " [" : "",
	        pop3_resp_code_name(o->code), o->code ? "]" : "", o->reason);
	buf_fmt(&r->rec,
	        "CONN: done=%d retrieved=%llu deleted=%llu discarded=%llu tls=%d pipelining=%d "
	        "apop_ts=%d\n",
	        pop3_client_done(r->c), (unsigned long long)o->retrieved,
	        (unsigned long long)o->deleted, (unsigned long long)pop3_client_discarded(r->c),
	        caps->tls, caps->capa.pipelining, caps->apop_timestamp);
	if (strstr(o->reason, r->sc->pass) != NULL) {
		fake_buf_str(&r->rec, "## the password is in the reason\n");
		r->bad_output = 1;
	}
}

static int run_script(const struct script *sc, int bytewise, struct fake_buf *out)
{
	struct run r;
	memset(&r, 0, sizeof r);
	r.sc = sc;
	r.bytewise = bytewise;
	r.c = pop3_client_new(&sc->conf);
	if (r.c == NULL) {
		fake_buf_str(out, "## pop3_client_new refused the conf\n");
		return -1;
	}
	rec_deadline(&r);
	if (!sc->noconnect) {
		pop3_client_connected(r.c);
		settle(&r);
		rec_deadline(&r);
	}
	for (size_t i = 0; i < sc->n_steps; i++)
		run_step(&r, &sc->steps[i]);
	rec_end(&r);
	pop3_client_free(r.c);
	free(r.line.p);
	free(r.msg.p);
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
	fake_buf_add(&b, "", 1);
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
		fake_buf_add(&got, "", 1);
		if (want == NULL) {
			if (!bytewise)
				write_ref(name, ref, got.p);
			ok = 0;
		} else if (strcmp(got.p, want) != 0) {
			show_difference(name, bytewise ? "one octet per call" : "as written", got.p,
			                want);
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

static size_t list_dir(const char *ext, char **names, size_t max)
{
	DIR *d = opendir(DIR_PATH);
	size_t n = 0, el = strlen(ext);
	struct dirent *e;
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < max) {
		size_t len = strlen(e->d_name);
		if (len > el && strcmp(e->d_name + len - el, ext) == 0)
			names[n++] = strndup(e->d_name, len - el);
	}
	closedir(d);
	qsort(names, n, sizeof names[0], by_name);
	return n;
}

TEST(transcripts_match_their_references)
{
	char *names[512];
	size_t n = list_dir(".in", names, 512);
	CHECK(n >= 25);
	for (size_t i = 0; i < n; i++) {
		int ok = check_transcript(names[i]);
		if (!ok)
			fprintf(stderr, "transcript %s FAILED\n", names[i]);
		CHECK(ok);
		free(names[i]);
	}
	printf("%zu POP3 client transcripts\n", n);
}

/* Every .ref has its .in (a stray .ref would be a test that no longer runs). */
TEST(every_ref_has_its_in)
{
	char *names[512], path[600];
	size_t n = list_dir(".ref", names, 512);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof path, DIR_PATH "/%s.in", names[i]);
		FILE *f = fopen(path, "r");
		if (!CHECK(f != NULL))
			fprintf(stderr, "  %s.ref has no .in\n", names[i]);
		if (f)
			fclose(f);
		free(names[i]);
	}
}

/* ---- unit tests ---- */

static struct pop3_client *client(enum pop3_client_auth auth, const char *pass)
{
	struct pop3_client_conf cf;
	pop3_client_conf_defaults(&cf);
	cf.user = "mrose";
	cf.password = pass;
	cf.auth = auth;
	return pop3_client_new(&cf);
}

static void drain(struct pop3_client *c)
{
	while (pop3_client_next_action(c, NULL) != POP3_CLIENT_ACT_NONE)
		;
}

static void server(struct pop3_client *c, const char *s)
{
	size_t len = strlen(s), pos = 0;
	while (pos < len) {
		pos += pop3_client_input(c, s + pos, len - pos);
		drain(c);
	}
}

/* The client's pending output as a string (taken). */
static void sent(struct pop3_client *c, char *buf, size_t n)
{
	size_t len;
	const char *out = pop3_client_output(c, &len);
	snprintf(buf, n, "%.*s", (int)len, out);
	pop3_client_output_done(c, len);
}

TEST(apop_digest_is_rfc1939s_example)
{
	/* RFC 1939 7: timestamp <1896.697170952@dbc.mtview.ca.us>, secret "tanstaaf". */
	struct pop3_client *c = client(POP3_CLIENT_AUTH_AUTO, "tanstaaf");
	char buf[512];
	pop3_client_connected(c);
	server(c, "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
	sent(c, buf, sizeof buf);
	CHECK_STR(buf, "CAPA\r\n");
	server(c, "-ERR no CAPA\r\n");
	sent(c, buf, sizeof buf);
	CHECK_STR(buf, "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
	server(c, "+OK maildrop has 1 message (369 octets)\r\n");
	sent(c, buf, sizeof buf);
	CHECK_STR(buf, "STAT\r\n");
	pop3_client_free(c);
}

/* White-box: the output buffer's memory (the pointer pop3_client_output gives). */
static int out_holds(struct pop3_client *c, const char *needle)
{
	size_t len;
	const char *out = pop3_client_output(c, &len);
	size_t nl = strlen(needle);
	for (size_t i = 0; i + nl <= 256; i++)
		if (memcmp(out + i, needle, nl) == 0)
			return 1;
	return 0;
}

TEST(password_wiped_after_pass)
{
	struct pop3_client *c = client(POP3_CLIENT_AUTH_USER, "hunter2-secret");
	char buf[512];
	pop3_client_connected(c);
	server(c, "+OK ready\r\n");
	sent(c, buf, sizeof buf);
	server(c, "-ERR\r\n");
	sent(c, buf, sizeof buf);
	CHECK_STR(buf, "USER mrose\r\n");
	server(c, "+OK\r\n");
	size_t len;
	pop3_client_output(c, &len);
	CHECK(len > 0 && out_holds(c, "hunter2-secret"));
	sent(c, buf, sizeof buf);
	CHECK_STR(buf, "PASS hunter2-secret\r\n");
	CHECK(!out_holds(c, "hunter2-secret")); /* wiped once taken */
	server(c, "-ERR [AUTH] invalid\r\n");
	const struct pop3_client_outcome *o = pop3_client_outcome(c);
	CHECK_INT(o->end, POP3_CLIENT_END_AUTH);
	CHECK(strstr(o->reason, "hunter2") == NULL);
	pop3_client_free(c);
}

TEST(requests_in_the_wrong_state)
{
	struct pop3_client *c = client(POP3_CLIENT_AUTH_USER, "pw");
	CHECK_INT(pop3_client_retr(c, 1), -1);
	CHECK_INT(pop3_client_dele(c, 1), -1);
	CHECK_INT(pop3_client_quit(c), -1);
	CHECK_INT(pop3_client_room(c), 0);
	pop3_client_connected(c);
	char buf[512];
	server(c, "+OK ready\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK\r\nPIPELINING\r\nUIDL\r\n.\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK\r\n");
	sent(c, buf, sizeof buf);
	CHECK_STR(buf, "STAT\r\nLIST\r\nUIDL\r\n");
	server(c, "+OK 2 30\r\n+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\n1 a\r\n2 b\r\n.\r\n");
	CHECK(pop3_client_listing(c) != NULL);
	CHECK_INT(pop3_client_retr(c, 3), -1); /* not listed */
	CHECK_INT(pop3_client_dele(c, 2), 0);
	CHECK_INT(pop3_client_dele(c, 2), -1); /* marked already */
	CHECK_INT(pop3_client_retr(c, 2), -1); /* RFC 1939 5: deleted */
	CHECK_INT(pop3_client_retr(c, 1), 0);
	CHECK_INT(pop3_client_room(c), 62);
	CHECK_INT(pop3_client_quit(c), 0);
	CHECK_INT(pop3_client_quit(c), -1);
	CHECK_INT(pop3_client_retr(c, 1), -1);
	sent(c, buf, sizeof buf);
	CHECK_STR(buf, "DELE 2\r\nRETR 1\r\nQUIT\r\n");
	pop3_client_free(c);
}

TEST(deadline_serial_moves_with_data_progress)
{
	struct pop3_client *c = client(POP3_CLIENT_AUTH_USER, "pw");
	char buf[512];
	pop3_client_connected(c);
	server(c, "+OK ready\r\n");
	sent(c, buf, sizeof buf);
	server(c, "-ERR\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK 1 100\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK\r\n1 100\r\n.\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK\r\n1 a\r\n.\r\n");
	CHECK_INT(pop3_client_retr(c, 1), 0);
	sent(c, buf, sizeof buf);
	struct pop3_client_deadline d0 = pop3_client_deadline(c);
	CHECK_INT(d0.wait, POP3_CLIENT_WAIT_RETR);
	server(c, "+OK\r\n");
	struct pop3_client_deadline d1 = pop3_client_deadline(c);
	CHECK_INT(d1.wait, POP3_CLIENT_WAIT_DATA);
	CHECK_INT(d1.seconds, 120);
	CHECK(d1.serial != d0.serial);
	server(c, "Subj");
	struct pop3_client_deadline d2 = pop3_client_deadline(c);
	CHECK(d2.serial != d1.serial && d2.wait == POP3_CLIENT_WAIT_DATA);
	server(c, "ect: x\r\n.\r\n");
	struct pop3_client_deadline d3 = pop3_client_deadline(c);
	CHECK_INT(d3.wait, POP3_CLIENT_WAIT_NONE);
	CHECK_INT(d3.seconds, 0);
	pop3_client_free(c);
}

TEST(listing_lines_do_not_restart_the_deadline)
{
	struct pop3_client *c = client(POP3_CLIENT_AUTH_USER, "pw");
	char buf[512];
	pop3_client_connected(c);
	server(c, "+OK ready\r\n");
	sent(c, buf, sizeof buf);
	server(c, "-ERR\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK\r\n");
	sent(c, buf, sizeof buf);
	server(c, "+OK 3 30\r\n");
	sent(c, buf, sizeof buf);
	CHECK_STR(buf, "LIST\r\n");
	server(c, "+OK\r\n");
	struct pop3_client_deadline d0 = pop3_client_deadline(c);
	CHECK_INT(d0.wait, POP3_CLIENT_WAIT_LISTING);
	server(c, "1 10\r\n2 10\r\n");
	struct pop3_client_deadline d1 = pop3_client_deadline(c);
	CHECK(d1.serial == d0.serial); /* a trickle does not keep it alive */
	server(c, "3 10\r\n.\r\n");
	CHECK(pop3_client_deadline(c).serial != d0.serial); /* UIDL: a new wait */
	pop3_client_free(c);
}

TEST(conf_is_checked)
{
	struct pop3_client_conf cf;
	pop3_client_conf_defaults(&cf);
	CHECK(pop3_client_new(&cf) == NULL); /* no user, no password */
	cf.user = "u";
	cf.password = "p";
	struct pop3_client *c = pop3_client_new(&cf);
	CHECK(c != NULL);
	pop3_client_free(c);
	pop3_client_free(NULL);
	static const char *bad_users[] = {"", "a b", "a\r", "a\n", "\x7f"};
	for (size_t i = 0; i < sizeof bad_users / sizeof bad_users[0]; i++) {
		cf.user = bad_users[i];
		CHECK(pop3_client_new(&cf) == NULL);
	}
	cf.user = "u";
	cf.password = "a\r\nDELE 1";
	CHECK(pop3_client_new(&cf) == NULL);
	cf.password = "with space";
	c = pop3_client_new(&cf);
	CHECK(c != NULL);
	pop3_client_free(c);
	cf.line_max = 100;
	CHECK(pop3_client_new(&cf) == NULL);
	cf.line_max = 1024;
	cf.queue_max = 0;
	CHECK(pop3_client_new(&cf) == NULL);
	cf.queue_max = 64;
	cf.chunk_max = 100;
	CHECK(pop3_client_new(&cf) == NULL);
	cf.chunk_max = 16384;
	cf.listing_max = 0;
	CHECK(pop3_client_new(&cf) == NULL);
}

TEST(names)
{
	CHECK_STR(pop3_client_wait_name(POP3_CLIENT_WAIT_DATA), "message data");
	CHECK_STR(pop3_client_end_name(POP3_CLIENT_END_OK), "ok");
	CHECK_STR(pop3_client_action_name(POP3_CLIENT_ACT_MSG_END), "MSG_END");
	CHECK_STR(pop3_client_msg_error_name(POP3_CLIENT_MSG_OVERSIZE), "oversize");
	CHECK_STR(pop3_client_end_name((enum pop3_client_end)999), "?");
}

TEST_MAIN(T(transcripts_match_their_references), T(every_ref_has_its_in),
          T(apop_digest_is_rfc1939s_example), T(password_wiped_after_pass),
          T(requests_in_the_wrong_state), T(deadline_serial_moves_with_data_progress),
          T(listing_lines_do_not_restart_the_deadline), T(conf_is_checked), T(names))
