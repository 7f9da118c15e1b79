/*
 * smtp_reply_parse: SMTP replies as the client reads them (RFC 5321 4.2).
 *
 *   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *                Reply-code [ SP textstring ] CRLF
 *   Reply-code = %x32-35 %x30-35 %x30-39
 *
 * The reader is strict where leniency would let a hostile peer desynchronise
 * the client: RFC 5321 2.3.8 allows CR and LF only together, so a bare CR or
 * LF ends the conversation (as smtp_lines does for the server side); a
 * continuation line that changes the code is not the same reply (4.2.1); and
 * a line or a reply without an end would otherwise hold memory without bound.
 * The second and third digits are not range-checked (4.2 says receivers
 * should not depend on them beyond the first digit); the first must be 2-5
 * (SMTP has no 1yz replies, and nothing above 5yz exists).
 */
#include "proto/smtp_reply_parse.h"
#include "proto/smtp_reply.h"

#include <string.h>

void smtp_reply_parse_init(struct smtp_reply_parse *p, char *buf, size_t cap, unsigned max_lines)
{
	memset(p, 0, sizeof *p);
	p->buf = buf;
	p->cap = cap;
	p->max_lines = max_lines ? max_lines : 1;
}

void smtp_reply_parse_reset(struct smtp_reply_parse *p)
{
	p->len = 0;
	p->lines = 0;
	p->code = 0;
	p->pending_cr = 0;
	p->returned = 0;
	p->error = SMTP_REPLY_PARSE_MORE;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

enum smtp_reply_parse_status smtp_reply_line_parse(const char *s, size_t len,
                                                   struct smtp_reply_line *out)
{
	memset(out, 0, sizeof *out);
	if (memchr(s, '\r', len) != NULL || memchr(s, '\n', len) != NULL)
		return SMTP_REPLY_PARSE_ERR_CRLF;
	if (len < 3 || !is_digit(s[0]) || !is_digit(s[1]) || !is_digit(s[2]))
		return SMTP_REPLY_PARSE_ERR_SYNTAX;
	int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	if (code < 200 || code > 599)
		return SMTP_REPLY_PARSE_ERR_CODE;
	int last = 1;
	if (len > 3) {
		if (s[3] == '-')
			last = 0;
		else if (s[3] != ' ')
			return SMTP_REPLY_PARSE_ERR_SYNTAX; /* "250ok", "250\t" */
	}
	out->code = code;
	out->last = last;
	out->text = s + (len > 3 ? 4 : 3);
	out->text_len = len > 3 ? len - 4 : 0;
	return last ? SMTP_REPLY_PARSE_LAST : SMTP_REPLY_PARSE_LINE;
}

/* An error is final; `used` counts the input up to the octet that made it. */
static enum smtp_reply_parse_status
fail(struct smtp_reply_parse *p, enum smtp_reply_parse_status st, size_t used, size_t *consumed)
{
	p->error = st;
	p->len = 0;
	p->pending_cr = 0;
	*consumed = used;
	return st;
}

/* A CRLF ended the line in buf: parse it and apply the reply-level rules (4.2.1). */
static enum smtp_reply_parse_status finish_line(struct smtp_reply_parse *p, size_t used,
                                                size_t *consumed, struct smtp_reply_line *out)
{
	enum smtp_reply_parse_status st = smtp_reply_line_parse(p->buf, p->len, out);
	if (st != SMTP_REPLY_PARSE_LINE && st != SMTP_REPLY_PARSE_LAST)
		return fail(p, st, used, consumed);
	if (p->code != 0 && out->code != p->code)
		return fail(p, SMTP_REPLY_PARSE_ERR_MISMATCH, used, consumed);
	if (p->lines >= p->max_lines)
		return fail(p, SMTP_REPLY_PARSE_ERR_LINES, used, consumed);
	out->index = p->lines;
	if (out->last) {
		p->code = 0;
		p->lines = 0;
	} else {
		p->code = out->code;
		p->lines++;
	}
	p->returned = 1;
	*consumed = used;
	return st;
}

enum smtp_reply_parse_status smtp_reply_parse_feed(struct smtp_reply_parse *p, const char *in,
                                                   size_t len, size_t *consumed,
                                                   struct smtp_reply_line *out)
{
	memset(out, 0, sizeof *out);
	if (p->error != SMTP_REPLY_PARSE_MORE) {
		*consumed = len;
		return p->error;
	}
	if (p->returned) {
		p->returned = 0;
		p->len = 0;
	}
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (p->pending_cr) {
			if (c != '\n')
				return fail(p, SMTP_REPLY_PARSE_ERR_CRLF, i + 1, consumed);
			p->pending_cr = 0;
			return finish_line(p, i + 1, consumed, out);
		}
		if (c == '\r') {
			p->pending_cr = 1;
			continue;
		}
		if (c == '\n')
			return fail(p, SMTP_REPLY_PARSE_ERR_CRLF, i + 1, consumed);
		if (p->len >= p->cap)
			return fail(p, SMTP_REPLY_PARSE_ERR_LONG, i + 1, consumed);
		p->buf[p->len++] = c;
	}
	*consumed = len;
	return SMTP_REPLY_PARSE_MORE;
}

size_t smtp_reply_parse_pending(const struct smtp_reply_parse *p)
{
	if (p->error != SMTP_REPLY_PARSE_MORE)
		return 0;
	return (p->returned ? 0 : p->len) + (p->pending_cr ? 1 : 0);
}

size_t smtp_reply_enh_parse(int code, const char *text, size_t len, char *enh, size_t enhsz)
{
	char tok[SMTP_REPLY_PARSE_ENH_MAX + 1];
	size_t n = 0;
	if (enhsz > 0)
		enh[0] = '\0';
	/* RFC 2034 4: the code opens the text and is separated from it by a space. */
	while (n < len && (is_digit(text[n]) || text[n] == '.')) {
		if (n >= SMTP_REPLY_PARSE_ENH_MAX)
			return 0;
		tok[n] = text[n];
		n++;
	}
	if (n == 0 || (n < len && text[n] != ' ') || n + 1 > enhsz)
		return 0;
	tok[n] = '\0';
	/* RFC 3463 2: the class must agree with the reply code's first digit. */
	if (tok[0] != (char)('0' + code / 100) || !smtp_reply_enh_valid(tok))
		return 0;
	memcpy(enh, tok, n + 1);
	while (n < len && text[n] == ' ')
		n++;
	return n;
}

const char *smtp_reply_parse_strerror(enum smtp_reply_parse_status s)
{
	switch (s) {
	case SMTP_REPLY_PARSE_MORE: return "incomplete reply";
	case SMTP_REPLY_PARSE_LINE: return "reply line";
	case SMTP_REPLY_PARSE_LAST: return "reply";
	case SMTP_REPLY_PARSE_ERR_LONG: return "reply line too long";
	case SMTP_REPLY_PARSE_ERR_CRLF: return "bare CR or LF in reply";
	case SMTP_REPLY_PARSE_ERR_SYNTAX: return "malformed reply line";
	case SMTP_REPLY_PARSE_ERR_CODE: return "reply code out of range";
	case SMTP_REPLY_PARSE_ERR_MISMATCH: return "continuation line with another code";
	case SMTP_REPLY_PARSE_ERR_LINES: return "too many lines in reply";
	}
	return "unknown reply status";
}
