/*
 * smtp_reply: SMTP reply lines (RFC 5321 4.2) with RFC 3463 enhanced codes.
 *
 * Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *              Reply-code [ SP textstring ] CRLF
 * The text is sanitised because it may echo what the peer sent (HELO name,
 * addresses): a CR or LF there would let a peer forge extra reply lines.
 */
#include "proto/smtp_reply.h"

#include <string.h>

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* 1-3 digits without a leading zero (RFC 3463 2: subject and detail 0-999). */
static const char *skip_number(const char *p)
{
	size_t n = 0;
	while (is_digit(p[n]))
		n++;
	if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
		return NULL;
	return p + n;
}

int smtp_reply_enh_valid(const char *enh)
{
	if (enh == NULL || (enh[0] != '2' && enh[0] != '4' && enh[0] != '5') || enh[1] != '.')
		return 0;
	const char *p = skip_number(enh + 2);
	if (p == NULL || *p != '.')
		return 0;
	p = skip_number(p + 1);
	return p != NULL && *p == '\0';
}

int smtp_reply_format(char *out, size_t outsz, int code, const char *enh, const char *text,
                      int more)
{
	size_t o = 0;
	size_t limit = SMTP_REPLY_LINE_MAX - 2; /* room for CRLF */

	if (out == NULL || code < 200 || code > 599)
		return -1;
	if (enh && enh[0] == '\0')
		enh = NULL;
	if (enh && !smtp_reply_enh_valid(enh))
		return -1;

	char head[16];
	head[0] = (char)('0' + code / 100);
	head[1] = (char)('0' + code / 10 % 10);
	head[2] = (char)('0' + code % 10);
	head[3] = more ? '-' : ' ';
	o = 4;
	if (enh) {
		size_t n = strlen(enh);
		memcpy(head + o, enh, n);
		o += n;
		head[o++] = ' ';
	}
	/* Without text, a trailing space is dropped ("250 2.0.0", "250", but "250-"). */
	size_t tlen = text ? strlen(text) : 0;
	if (tlen == 0 && (enh || !more))
		o--;
	if (tlen > limit - o)
		tlen = limit - o;
	if (o + tlen + 3 > outsz)
		return -1;
	memcpy(out, head, o);
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)text[i];
		out[o++] = (c < 0x20 || c > 0x7e) ? '?' : (char)c;
	}
	out[o++] = '\r';
	out[o++] = '\n';
	out[o] = '\0';
	return (int)o;
}
