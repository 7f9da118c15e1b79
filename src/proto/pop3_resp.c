/*
 * pop3_resp: the POP3 reply codec (see pop3_resp.h). RFC 1939 3 (status
 * indicators, multi-line responses and byte-stuffing), 5 (STAT, LIST), 7
 * (APOP, UIDL); RFC 2449 5, 6 (CAPA), 8 (extended response codes).
 */
#include "proto/pop3_resp.h"

#include <string.h>

#include "util/strutil.h"

/* ---- status lines ---- */

const char *pop3_resp_status_name(enum pop3_resp_status s)
{
	switch (s) {
	case POP3_RESP_OK: return "+OK";
	case POP3_RESP_ERR: return "-ERR";
	case POP3_RESP_BAD: return "bad";
	}
	return "?";
}

static const struct {
	const char *name;
	enum pop3_resp_code code;
} known_codes[] = {
        {"IN-USE", POP3_RESP_CODE_IN_USE},     {"LOGIN-DELAY", POP3_RESP_CODE_LOGIN_DELAY},
        {"SYS/TEMP", POP3_RESP_CODE_SYS_TEMP}, {"SYS/PERM", POP3_RESP_CODE_SYS_PERM},
        {"AUTH", POP3_RESP_CODE_AUTH},
};

const char *pop3_resp_code_name(enum pop3_resp_code c)
{
	if (c == POP3_RESP_CODE_NONE)
		return "";
	if (c == POP3_RESP_CODE_OTHER)
		return "other";
	for (size_t i = 0; i < sizeof known_codes / sizeof known_codes[0]; i++)
		if (known_codes[i].code == c)
			return known_codes[i].name;
	return "?";
}

/* RFC 2449 8: resp-code = "[" resp-level *("/" resp-level) "]", a level an atom-ish run. */
static size_t resp_code_len(const char *t, size_t n)
{
	size_t i = 1, level = 0;
	if (n < 3 || t[0] != '[')
		return 0;
	for (; i < n && t[i] != ']'; i++) {
		unsigned char ch = (unsigned char)t[i];
		if (ch == '/') {
			if (level == 0)
				return 0;
			level = 0;
		} else if (ch > 0x20 && ch < 0x7f && ch != '[') {
			level++;
		} else {
			return 0;
		}
	}
	return i < n && level > 0 ? i + 1 : 0;
}

static enum pop3_resp_code code_of(const char *t, size_t n)
{
	for (size_t i = 0; i < sizeof known_codes / sizeof known_codes[0]; i++)
		if (ascii_equal_ci(t, n, known_codes[i].name))
			return known_codes[i].code;
	return POP3_RESP_CODE_OTHER;
}

enum pop3_resp_status pop3_resp_status_parse(const char *line, size_t len,
                                             struct pop3_resp_status_line *out)
{
	size_t k;
	memset(out, 0, sizeof *out);
	out->text = line;
	out->text_len = len;
	if (len >= 3 && memcmp(line, "+OK", 3) == 0)
		k = 3;
	else if (len >= 4 && memcmp(line, "-ERR", 4) == 0)
		k = 4;
	else
		return out->status = POP3_RESP_BAD;
	if (k < len && line[k] != ' ')
		return out->status = POP3_RESP_BAD; /* "+OKAY" is not "+OK" */
	out->status = k == 3 ? POP3_RESP_OK : POP3_RESP_ERR;
	if (k < len)
		k++;
	out->text = line + k;
	out->text_len = len - k;
	size_t cl = resp_code_len(out->text, out->text_len);
	if (cl > 0) {
		/* Only the first level decides ("SYS/TEMP" is two levels, known as one). */
		out->code = code_of(out->text + 1, cl - 2);
		if (out->code == POP3_RESP_CODE_OTHER) {
			const char *slash = memchr(out->text + 1, '/', cl - 2);
			if (slash != NULL &&
			    code_of(out->text + 1, (size_t)(slash - out->text - 1)) ==
			            POP3_RESP_CODE_AUTH)
				out->code = POP3_RESP_CODE_AUTH;
		}
		out->text += cl;
		out->text_len -= cl;
		if (out->text_len > 0 && out->text[0] == ' ') {
			out->text++;
			out->text_len--;
		}
	}
	return out->status;
}

size_t pop3_resp_apop_timestamp(const char *text, size_t len, const char **ts)
{
	for (size_t i = 0; i < len; i++) {
		if (text[i] != '<')
			continue;
		int at = 0;
		for (size_t j = i + 1; j < len && j - i < POP3_RESP_TIMESTAMP_MAX; j++) {
			unsigned char ch = (unsigned char)text[j];
			if (ch == '>') {
				if (at && j > i + 2) {
					*ts = text + i;
					return j - i + 1;
				}
				break;
			}
			if (ch <= 0x20 || ch >= 0x7f || ch == '<')
				break;
			at |= ch == '@';
		}
	}
	*ts = NULL;
	return 0;
}

/* ---- line assembly ---- */

void pop3_resp_lines_init(struct pop3_resp_lines *l, char *buf, size_t cap)
{
	memset(l, 0, sizeof *l);
	l->buf = buf;
	l->cap = cap;
	l->line = buf;
}

int pop3_resp_lines_pending(const struct pop3_resp_lines *l)
{
	return !l->done && !l->broken && (l->len > 0 || l->cr);
}

enum pop3_resp_lines_event pop3_resp_lines_feed(struct pop3_resp_lines *l, const char *in,
                                                size_t len, size_t *consumed)
{
	*consumed = 0;
	if (l->broken)
		return l->broken;
	if (l->done) {
		l->done = 0;
		l->len = 0;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = in[i];
		if (l->cr) {
			*consumed = i + 1;
			if (ch != '\n') {
				l->broken = POP3_RESP_LINES_BARE_LF;
				return l->broken;
			}
			l->cr = 0;
			l->done = 1;
			l->line = l->buf;
			return POP3_RESP_LINES_LINE;
		}
		if (ch == '\r') {
			l->cr = 1;
			continue;
		}
		if (ch == '\n' || l->len >= l->cap) {
			*consumed = i + 1;
			l->broken = ch == '\n' ? POP3_RESP_LINES_BARE_LF : POP3_RESP_LINES_TOO_LONG;
			return l->broken;
		}
		l->buf[l->len++] = ch;
	}
	*consumed = len;
	return POP3_RESP_LINES_MORE;
}

int pop3_resp_multiline_end(const char **line, size_t *len)
{
	if (*len == 1 && (*line)[0] == '.')
		return 1;
	if (*len > 0 && (*line)[0] == '.') {
		(*line)++;
		(*len)--;
	}
	return 0;
}

/* ---- STAT, LIST, UIDL ---- */

/* A number of 1-15 digits at t[*i]; advances *i. 0, or -1. */
static int number(const char *t, size_t n, size_t *i, uint64_t *v)
{
	size_t start = *i;
	uint64_t x = 0;
	while (*i < n && t[*i] >= '0' && t[*i] <= '9' && *i - start < 15) {
		x = x * 10 + (uint64_t)(t[*i] - '0');
		(*i)++;
	}
	if (*i == start || (*i < n && t[*i] >= '0' && t[*i] <= '9'))
		return -1;
	*v = x;
	return 0;
}

/* "N SP M" then the end or a space and anything. */
static int two_numbers(const char *t, size_t n, uint64_t *a, uint64_t *b)
{
	size_t i = 0;
	if (number(t, n, &i, a) != 0 || i >= n || t[i] != ' ')
		return -1;
	i++;
	if (number(t, n, &i, b) != 0)
		return -1;
	return i == n || t[i] == ' ' ? 0 : -1;
}

int pop3_resp_stat_parse(const char *text, size_t len, uint64_t *count, uint64_t *octets)
{
	return two_numbers(text, len, count, octets);
}

int pop3_resp_list_parse(const char *line, size_t len, uint64_t *num, uint64_t *octets)
{
	if (two_numbers(line, len, num, octets) != 0 || *num == 0)
		return -1;
	return 0;
}

int pop3_resp_uidl_parse(const char *line, size_t len, uint64_t *num, const char **uid,
                         size_t *uid_len)
{
	size_t i = 0;
	if (number(line, len, &i, num) != 0 || *num == 0 || i >= len || line[i] != ' ')
		return -1;
	i++;
	size_t n = len - i;
	if (n < 1 || n > POP3_RESP_UID_MAX)
		return -1;
	for (size_t k = i; k < len; k++)
		if ((unsigned char)line[k] < 0x21 || (unsigned char)line[k] > 0x7e)
			return -1;
	*uid = line + i;
	*uid_len = n;
	return 0;
}

/* ---- CAPA ---- */

void pop3_resp_capa_line(struct pop3_resp_capa *caps, const char *line, size_t len)
{
	size_t k = 0;
	while (k < len && line[k] != ' ')
		k++;
	const char *arg = k < len ? line + k + 1 : line + len;
	size_t alen = k < len ? len - k - 1 : 0;
	caps->seen = 1;
	if (ascii_equal_ci(line, k, "TOP"))
		caps->top = 1;
	else if (ascii_equal_ci(line, k, "USER"))
		caps->user = 1;
	else if (ascii_equal_ci(line, k, "UIDL"))
		caps->uidl = 1;
	else if (ascii_equal_ci(line, k, "PIPELINING"))
		caps->pipelining = 1;
	else if (ascii_equal_ci(line, k, "STLS"))
		caps->stls = 1;
	else if (ascii_equal_ci(line, k, "RESP-CODES"))
		caps->resp_codes = 1;
	else if (ascii_equal_ci(line, k, "SASL"))
		caps->sasl = 1;
	else if (ascii_equal_ci(line, k, "EXPIRE"))
		caps->expire_never = alen >= 5 && ascii_equal_ci(arg, 5, "NEVER");
	else if (ascii_equal_ci(line, k, "LOGIN-DELAY")) {
		/* RFC 2449 6.5: LOGIN-DELAY seconds [USER]; an unreadable value counts as 0. */
		uint64_t v = 0;
		size_t i = 0;
		if (number(arg, alen, &i, &v) == 0 && v <= 86400u * 365)
			caps->login_delay = (int)v;
	}
}

/* ---- message data ---- */

/*
 * Where the reader is: at the start of a line (after a real CRLF), after its
 * first dot, after ".CR", in the middle of a line, after a CR in the middle
 * (its LF decides), or done.
 */
enum {
	DS_BOL = 0,
	DS_DOT,
	DS_DOT_CR,
	DS_MID,
	DS_MID_CR,
	DS_END,
};

void pop3_resp_data_init(struct pop3_resp_data *d, enum pop3_resp_data_mode mode)
{
	memset(d, 0, sizeof *d);
	d->mode = mode;
	d->state = DS_BOL;
}

/* A CR seen in the middle of a line was not followed by LF: a bare CR. */
static size_t bare_cr(struct pop3_resp_data *d, char *o)
{
	if (d->mode == POP3_RESP_DATA_RAW) {
		o[0] = '\r';
		return 1;
	}
	d->fixed++;
	o[0] = '\r';
	o[1] = '\n';
	return 2;
}

/* One input octet in the middle of a line (or a line not at BOL); writes <= 2. */
static size_t mid_octet(struct pop3_resp_data *d, char ch, char *o)
{
	if (ch == '\r') {
		d->state = DS_MID_CR;
		return 0;
	}
	d->state = DS_MID;
	if (ch == '\n' && d->mode == POP3_RESP_DATA_CRLF) {
		d->fixed++;
		o[0] = '\r';
		o[1] = '\n';
		return 2; /* normalised: the next octet does not open a line for framing */
	}
	o[0] = ch;
	return 1;
}

/* Consumes one octet; returns octets written to o (room for need(d)). */
static size_t step(struct pop3_resp_data *d, char ch, char *o)
{
	size_t w;
	switch (d->state) {
	case DS_BOL:
		if (ch == '.') {
			d->state = DS_DOT;
			return 0;
		}
		return mid_octet(d, ch, o);
	case DS_DOT:
		if (ch == '\r') {
			d->state = DS_DOT_CR;
			return 0;
		}
		/* RFC 1939 3: a line that opens with "." and is not ".CRLF" loses its
		 * first octet (the stuffed dot); so does a "." before a bare LF. */
		return mid_octet(d, ch, o);
	case DS_DOT_CR:
		if (ch == '\n') {
			d->state = DS_END;
			return 0;
		}
		w = bare_cr(d, o); /* ".\rX": the dot goes, the bare CR stays (normalised) */
		return w + mid_octet(d, ch, o + w);
	case DS_MID: return mid_octet(d, ch, o);
	case DS_MID_CR:
		if (ch == '\n') {
			o[0] = '\r';
			o[1] = '\n';
			d->state = DS_BOL; /* a real CRLF: the next octet opens a line */
			return 2;
		}
		w = bare_cr(d, o);
		return w + mid_octet(d, ch, o + w);
	default: return 0;
	}
}

enum pop3_resp_data_event pop3_resp_data_feed(struct pop3_resp_data *d, const char *in, size_t len,
                                              size_t *consumed, char *out, size_t cap,
                                              size_t *written)
{
	size_t i = 0, w = 0;
	while (i < len && d->state != DS_END) {
		if (cap - w >= 4) { /* one octet writes 4 at most (a bare CR, then LF) */
			w += step(d, in[i++], out + w);
			continue;
		}
		/* Near the end of out: take the octet only if what it writes fits. */
		struct pop3_resp_data saved = *d;
		char tmp[4];
		size_t k = step(d, in[i], tmp);
		if (k > cap - w) {
			*d = saved;
			break;
		}
		memcpy(out + w, tmp, k);
		w += k;
		i++;
	}
	d->in_octets += i;
	d->out_octets += w;
	*consumed = i;
	*written = w;
	return d->state == DS_END ? POP3_RESP_DATA_END : POP3_RESP_DATA_MORE;
}
