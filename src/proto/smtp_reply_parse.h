/*
 * smtp_reply_parse: reading SMTP replies as a client (RFC 5321 4.2, 4.2.1):
 * framing octets into reply lines (CRLF only, any split of the input, one octet
 * per call included), parsing each line into its code, its continuation mark
 * and its text, checking that a multi-line reply keeps one code, and taking the
 * RFC 3463 / RFC 2034 enhanced status code off the front of the text.
 *
 * Everything a peer sends is bounded: a line longer than the buffer the caller
 * hands over, or a reply with more lines than the caller allows, is an error,
 * and errors are final (a reader that has seen one reports it again on every
 * later call): the client cannot resynchronise with a peer that breaks framing,
 * so it must end the connection.
 *
 * The "server" counterpart is smtp_reply (formatting); this module reuses its
 * smtp_reply_enh_valid() for the enhanced-code syntax.
 *
 * Pure: no I/O, no allocation; the reader uses only the buffer given to
 * smtp_reply_parse_init(). Owner: proto. Used by the SMTP client
 * (deliver/smtp_client.c).
 */
#ifndef SHAREMAIL_PROTO_SMTP_REPLY_PARSE_H
#define SHAREMAIL_PROTO_SMTP_REPLY_PARSE_H

#include <stddef.h>

#define SMTP_REPLY_PARSE_ENH_MAX 15 /* "5.999.999" is 9; room to spare, NUL excluded */

enum smtp_reply_parse_status {
	SMTP_REPLY_PARSE_MORE = 0, /* everything given was consumed; no complete line */
	SMTP_REPLY_PARSE_LINE, /* a line of a multi-line reply that is not its last */
	SMTP_REPLY_PARSE_LAST, /* the last line of a reply: the reply is complete */
	/* Errors (final): */
	SMTP_REPLY_PARSE_ERR_LONG, /* a line longer than the buffer (without CRLF) */
	SMTP_REPLY_PARSE_ERR_CRLF, /* a bare CR or a bare LF */
	SMTP_REPLY_PARSE_ERR_SYNTAX, /* not 3 digits then SP, "-" or the end of the line */
	SMTP_REPLY_PARSE_ERR_CODE, /* a code outside 200-599 */
	SMTP_REPLY_PARSE_ERR_MISMATCH, /* a continuation line with another code */
	SMTP_REPLY_PARSE_ERR_LINES, /* more lines in one reply than allowed */
};

/* One parsed reply line; text points into the caller's line (or the reader's buffer). */
struct smtp_reply_line {
	int code; /* 200-599 */
	int last; /* 1: "CODE SP text" or "CODE" alone; 0: "CODE-text" */
	const char *text; /* after the separator; may be empty, never NUL-terminated */
	size_t text_len;
	unsigned index; /* 0 for the first line of a reply, 1 for the next, ... */
};

/* Reader state; all fields are private to smtp_reply_parse.c. */
struct smtp_reply_parse {
	char *buf;
	size_t cap, len;
	unsigned max_lines, lines;
	int code; /* code of the reply in progress, 0 between replies */
	int pending_cr;
	int returned; /* buf holds a line already returned: dropped on the next call */
	enum smtp_reply_parse_status error; /* 0, or the final error */
};

/*
 * Prepares a reader that keeps at most cap octets of one line (without CRLF) in
 * buf, and at most max_lines lines per reply (at least 1). buf is borrowed and
 * must outlive the reader.
 */
void smtp_reply_parse_init(struct smtp_reply_parse *p, char *buf, size_t cap, unsigned max_lines);

/*
 * Forgets everything received and not yet returned (a partial line, a reply in
 * progress) and clears an error: for the STARTTLS switch (RFC 3207 4.2), where
 * octets sent in plaintext after "220" must never be read as replies.
 */
void smtp_reply_parse_reset(struct smtp_reply_parse *p);

/*
 * Consumes input from in[0..len) up to the end of the first complete line.
 * Stores in *consumed the octets used (the caller calls again with the rest) and,
 * for LINE and LAST, the parsed line in *out (its text is valid until the next
 * call). An error consumes the input up to and including the octet that made
 * it (the CRLF's LF for a malformed line, the first octet over the maximum)
 * and is returned again by every later call, which consumes everything, until
 * smtp_reply_parse_reset(). Results do not depend on how the input is split.
 */
enum smtp_reply_parse_status smtp_reply_parse_feed(struct smtp_reply_parse *p, const char *in,
                                                   size_t len, size_t *consumed,
                                                   struct smtp_reply_line *out);

/* Octets received and held but not yet returned as a line (a held CR counts). */
size_t smtp_reply_parse_pending(const struct smtp_reply_parse *p);

/*
 * Parses one line s[0..len) (without its CRLF) alone: the syntax and code checks
 * of smtp_reply_parse_feed() without the reply-level ones. Returns LAST or LINE
 * (as the separator says, out->index 0), or ERR_SYNTAX / ERR_CODE / ERR_CRLF (a CR
 * or LF inside) with *out zeroed.
 */
enum smtp_reply_parse_status smtp_reply_line_parse(const char *s, size_t len,
                                                   struct smtp_reply_line *out);

/*
 * Takes an enhanced status code (RFC 3463 "class.subject.detail", RFC 2034 4:
 * at the start of the text, followed by SP or the end) off text[0..len) when
 * there is one whose class equals the first digit of code. Writes it into enh
 * (NUL-terminated; enhsz >= SMTP_REPLY_PARSE_ENH_MAX + 1) and returns the octets
 * to skip (the code and the spaces after it); returns 0 with enh = "" when there
 * is none (text that merely starts with digits stays text).
 */
size_t smtp_reply_enh_parse(int code, const char *text, size_t len, char *enh, size_t enhsz);

/* A short English description of a status, for logs and synthetic replies. */
const char *smtp_reply_parse_strerror(enum smtp_reply_parse_status s);

#endif
