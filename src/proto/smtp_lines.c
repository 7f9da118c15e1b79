/*
 * smtp_lines: SMTP framing (RFC 5321 2.3.8, 4.1.1.4, 4.5.2).
 *
 * SMTP smuggling (CVE-2023-51764 and relatives) works because receivers differ
 * in what ends a line: one accepts "\n.\n" as the end of data, the next hop
 * does not, and a second message hides in the first. RFC 5321 2.3.8 says CR and
 * LF MUST only occur together as CRLF, so this reader treats a bare CR or LF as
 * a protocol violation, in command and in DATA mode alike, and ends the
 * session: there is no "lenient" mode to get wrong.
 *
 * The reader is a per-octet state machine that keeps every decision in the
 * struct, so a message that arrives one octet per read is parsed exactly like
 * one that arrives in a single read.
 */
#include "proto/smtp_lines.h"
#include "util/strutil.h"

#include <string.h>

/* DATA mode: where in the current line the reader is. */
enum data_state {
	ST_BOL = 0, /* at the start of a line (also right after the 354) */
	ST_DOT, /* a '.' at the start of the line, held back */
	ST_DOT_CR, /* ".\r" at the start of the line, held back */
	ST_MID, /* inside a line */
	ST_CR, /* a CR, held back until its LF */
};

/* DATA mode: where the reader is with the Message-ID field. */
enum msgid_state {
	MSGID_NONE = 0, /* not seen yet */
	MSGID_IN_FIELD, /* in its field: octets are kept */
	MSGID_LINE_ENDED, /* its line ended: a continuation line may follow */
	MSGID_DONE, /* complete (only the first field counts) */
};

void smtp_lines_init(struct smtp_lines *l, char *buf, size_t cap)
{
	memset(l, 0, sizeof *l);
	l->buf = buf;
	l->cap = cap;
}

void smtp_lines_begin_data(struct smtp_lines *l, size_t max_text_line)
{
	l->data_mode = 1;
	l->state = ST_BOL;
	l->len = 0;
	l->returned = 0;
	l->pending_cr = 0;
	l->skipping = 0;
	l->skipped = 0;
	l->in_headers = 1;
	l->line_len = 0;
	l->text_line_limit = max_text_line;
	l->max_text_line = 0;
	l->text_line_too_long = 0;
	l->received_headers = 0;
	l->data_octets = 0;
	l->head_len = 0;
	l->msgid_state = MSGID_NONE;
	l->msgid_len = 0;
	l->msgid[0] = '\0';
}

static enum smtp_lines_event broken(struct smtp_lines *l, size_t len, size_t *consumed)
{
	l->broken = 1;
	l->len = 0;
	*consumed = len;
	return SMTP_LINES_BARE_LF_CR;
}

static size_t cmd_max(const struct smtp_lines *l)
{
	return l->cap < SMTP_LINES_CMD_MAX ? l->cap : SMTP_LINES_CMD_MAX;
}

static enum smtp_lines_event feed_command(struct smtp_lines *l, const char *in, size_t len,
                                          size_t *consumed, const char **out, size_t *out_len)
{
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (l->pending_cr) {
			if (c != '\n')
				return broken(l, len, consumed);
			l->pending_cr = 0;
			if (l->skipping) {
				/* The over-long line ends here; its 500 was already due. */
				l->skipping = 0;
				l->skipped = 0;
				continue;
			}
			l->returned = 1;
			*out = l->buf;
			*out_len = l->len;
			*consumed = i + 1;
			return SMTP_LINES_LINE;
		}
		if (c == '\r') {
			l->pending_cr = 1;
			continue;
		}
		if (c == '\n')
			return broken(l, len, consumed);
		if (l->skipping) {
			l->skipped++;
			continue;
		}
		if (l->len >= cmd_max(l)) {
			/* RFC 5321 4.5.3.1.4: report once, then discard to the CRLF. */
			l->skipping = 1;
			l->skipped = l->len + 1;
			l->len = 0;
			*consumed = i + 1;
			return SMTP_LINES_TOO_LONG;
		}
		l->buf[l->len++] = c;
	}
	*consumed = len;
	return SMTP_LINES_NEED_MORE;
}

/* "name" [WSP...] ":" at the start of a header line (RFC 5322 3.6.7, 4.5.3); name lower case. */
static int head_is_field(const struct smtp_lines *l, const char *name)
{
	size_t n = strlen(name), i;
	if (l->head_len <= n)
		return 0;
	for (i = 0; i < n; i++)
		if (ascii_lower((unsigned char)l->head[i]) != name[i])
			return 0;
	while (i < l->head_len && (l->head[i] == ' ' || l->head[i] == '\t'))
		i++;
	return i < l->head_len && l->head[i] == ':';
}

/*
 * Keeps the body of the first Message-ID field of the header section (RFC 5322
 * 3.6.4), unfolded: its line and the continuation lines (starting with WSP) that
 * follow it, without the CRLFs.
 */
static void msgid_octet(struct smtp_lines *l, char c)
{
	if (l->msgid_state == MSGID_LINE_ENDED)
		l->msgid_state = (c == ' ' || c == '\t') ? MSGID_IN_FIELD : MSGID_DONE;
	if (l->msgid_state == MSGID_IN_FIELD && l->msgid_len < SMTP_LINES_MSGID_MAX) {
		l->msgid[l->msgid_len++] = c;
		l->msgid[l->msgid_len] = '\0';
	}
}

static void emit(struct smtp_lines *l, char c)
{
	l->buf[l->len++] = c;
	l->data_octets++;
	if (l->msgid_state != MSGID_NONE && l->msgid_state != MSGID_DONE)
		msgid_octet(l, c);
	if (l->head_len < sizeof l->head) {
		l->head[l->head_len++] = c;
		if (c == ':' && l->in_headers && l->msgid_state == MSGID_NONE &&
		    head_is_field(l, "message-id"))
			l->msgid_state = MSGID_IN_FIELD;
	}
}

/* Counts an octet of the current text line as stored (RFC 5321 4.5.3.1.6). */
static void count_octet(struct smtp_lines *l)
{
	l->line_len++;
	if (l->line_len > l->max_text_line)
		l->max_text_line = l->line_len;
	if (l->text_line_limit && l->line_len > l->text_line_limit)
		l->text_line_too_long = 1;
}

/* A CRLF ended a text line: the header section ends at the first empty line. */
static void end_line(struct smtp_lines *l)
{
	if (l->msgid_state == MSGID_IN_FIELD)
		l->msgid_state = MSGID_LINE_ENDED;
	if (l->in_headers) {
		if (l->line_len == 0) {
			l->in_headers = 0;
			if (l->msgid_state == MSGID_LINE_ENDED)
				l->msgid_state = MSGID_DONE;
		} else if (head_is_field(l, "received")) {
			l->received_headers++;
		}
	}
	l->line_len = 0;
	l->head_len = 0;
	l->state = ST_BOL;
}

/*
 * One octet of DATA. Returns 0 when consumed, 1 when the octet must wait for the
 * next call (end of data with data still to return), -1 on a bare CR or LF.
 */
static int data_octet(struct smtp_lines *l, char c)
{
	switch (l->state) {
	case ST_BOL:
		if (c == '\n')
			return -1;
		if (c == '\r') {
			l->state = ST_CR;
			return 0;
		}
		if (c == '.') {
			l->state = ST_DOT; /* counted once we know it is not the end */
			return 0;
		}
		count_octet(l);
		break;
	case ST_DOT:
		if (c == '\n')
			return -1;
		if (c == '\r') {
			l->state = ST_DOT_CR;
			return 0;
		}
		/*
		 * RFC 5321 4.5.2: a leading '.' followed by more text is deleted. It is
		 * the transparency dot, not text: 4.5.3.1.6 limits the text line, so
		 * only what follows counts (Postfix agrees): a legal 998-octet line
		 * that begins with '.' arrives as 999 octets and is accepted.
		 */
		count_octet(l);
		break;
	case ST_DOT_CR:
		if (c != '\n')
			return -1;
		return 1;
	case ST_MID:
		if (c == '\n')
			return -1;
		if (c == '\r') {
			l->state = ST_CR;
			return 0;
		}
		count_octet(l);
		break;
	default: /* ST_CR */
		if (c != '\n')
			return -1;
		end_line(l);
		l->buf[l->len++] = '\r';
		l->buf[l->len++] = '\n';
		l->data_octets += 2;
		return 0;
	}
	emit(l, c);
	l->state = ST_MID;
	return 0;
}

/*
 * The body's fast path: inside a body line (ST_MID, past the header section,
 * the Message-ID done with), the octets up to the next CR or LF need no state
 * of their own. The length of that run in in[0, n), at most max.
 */
static size_t body_run(const struct smtp_lines *l, const char *in, size_t n, size_t max)
{
	if (l->state != ST_MID || l->in_headers ||
	    (l->msgid_state != MSGID_NONE && l->msgid_state != MSGID_DONE))
		return 0;
	size_t lim = n < max ? n : max;
	const char *cr = memchr(in, '\r', lim);
	size_t k = cr ? (size_t)(cr - in) : lim;
	const char *lf = memchr(in, '\n', k);
	return lf ? (size_t)(lf - in) : k;
}

/* Stores a run of k body octets at once: what k calls of data_octet() would do. */
static void body_store(struct smtp_lines *l, const char *in, size_t k)
{
	memcpy(l->buf + l->len, in, k);
	l->len += k;
	l->data_octets += k;
	if (l->head_len < sizeof l->head) {
		size_t h = sizeof l->head - l->head_len;
		h = h < k ? h : k;
		memcpy(l->head + l->head_len, in, h);
		l->head_len += h;
	}
	l->line_len += k;
	if (l->line_len > l->max_text_line)
		l->max_text_line = l->line_len;
	if (l->text_line_limit && l->line_len > l->text_line_limit)
		l->text_line_too_long = 1;
}

/*
 * Data octets are returned before any other event: before END_OF_DATA, and before
 * a bare CR/LF (whose octet is then left unconsumed and seen again next call), so
 * the events do not depend on how the input is split.
 */
static enum smtp_lines_event feed_data(struct smtp_lines *l, const char *in, size_t len,
                                       size_t *consumed, const char **out, size_t *out_len)
{
	size_t i;
	int r = 0;
	for (i = 0; i < len; i++) {
		if (l->cap - l->len < 2)
			break; /* full: return what we have, this octet comes next call */
		/* Each octet needs 2 free (a CRLF is stored whole): a run may fill all but one. */
		size_t k = body_run(l, in + i, len - i, l->cap - l->len - 1);
		if (k > 0) {
			body_store(l, in + i, k);
			i += k - 1;
			continue;
		}
		r = data_octet(l, in[i]);
		if (r != 0)
			break;
	}
	*consumed = i;
	if (l->len > 0) {
		l->returned = 1;
		*out = l->buf;
		*out_len = l->len;
		return SMTP_LINES_DATA;
	}
	if (r < 0)
		return broken(l, len, consumed);
	if (r > 0) {
		/* The LF of CRLF "." CRLF: back to command mode. */
		l->data_mode = 0;
		l->state = ST_BOL;
		l->line_len = 0;
		l->head_len = 0;
		*consumed = i + 1;
		return SMTP_LINES_END_OF_DATA;
	}
	return SMTP_LINES_NEED_MORE;
}

enum smtp_lines_event smtp_lines_feed(struct smtp_lines *l, const char *in, size_t len,
                                      size_t *consumed, const char **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (l->broken)
		return broken(l, len, consumed);
	if (l->returned) {
		l->returned = 0;
		l->len = 0;
	}
	if (l->data_mode)
		return feed_data(l, in, len, consumed, out, out_len);
	return feed_command(l, in, len, consumed, out, out_len);
}

size_t smtp_lines_pending(const struct smtp_lines *l)
{
	size_t n = l->returned ? 0 : l->len;
	if (!l->data_mode)
		return n + (l->pending_cr ? 1 : 0);
	switch (l->state) {
	case ST_DOT:
	case ST_CR: return n + 1;
	case ST_DOT_CR: return n + 2;
	default: return n;
	}
}

size_t smtp_dotstuff(const char *in, size_t len, char *out, int *at_line_start)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (*at_line_start && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		*at_line_start = in[i] == '\n';
	}
	return o;
}
