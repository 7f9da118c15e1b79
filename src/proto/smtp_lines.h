/*
 * smtp_lines: SMTP framing, the defence against SMTP smuggling
 * (CVE-2023-51764/51765/51766). Only CRLF ends a line; a bare CR or bare LF
 * anywhere is an error. Lines are assembled across arbitrary chunks (one octet
 * per write must work) into a buffer with a hard maximum.
 *
 * In DATA mode the reader also undoes dot-stuffing (RFC 5321 4.5.2), detects
 * the end-of-data line ".", measures text lines against a maximum, counts the
 * Received: header fields of the header section (loop detection) and keeps its
 * Message-ID (for the log).
 *
 * Pure: no I/O, no allocation beyond what smtp_lines_init() is handed.
 * Owner: the SMTP codec engineer (proto). Used by the SMTP session.
 */
#ifndef SHAREMAIL_PROTO_SMTP_LINES_H
#define SHAREMAIL_PROTO_SMTP_LINES_H

#include <stddef.h>

#define SMTP_LINES_CMD_MAX 510 /* RFC 5321 4.5.3.1.4: 512 including CRLF */
#define SMTP_LINES_MSGID_MAX 250 /* octets of the Message-ID field kept (for the log) */

enum smtp_lines_event {
	SMTP_LINES_NEED_MORE = 0, /* consumed everything given; no complete line */
	SMTP_LINES_LINE, /* a complete command line (without CRLF) */
	SMTP_LINES_DATA, /* DATA mode: a chunk of message octets (unstuffed, CRLF kept) */
	SMTP_LINES_END_OF_DATA, /* DATA mode: the "." line was seen */
	SMTP_LINES_TOO_LONG, /* command mode: a line over the maximum (skipped to its CRLF) */
	SMTP_LINES_BARE_LF_CR, /* a bare CR or LF: the session must be ended */
};

/*
 * Reader state. Public fields the session may read are marked (read); the rest
 * is private to smtp_lines.c.
 */
struct smtp_lines {
	char *buf; /* caller's buffer, cap octets */
	size_t cap, len;
	int data_mode; /* (read) 1 between smtp_lines_begin_data() and END_OF_DATA */
	int skipping; /* (read) discarding the rest of an over-long command line */
	unsigned long long skipped; /* (read) octets discarded of the current over-long line */
	int pending_cr; /* a CR was seen and waits for its LF */
	int broken; /* a bare CR/LF was seen: every later call reports it again */
	int returned; /* buf holds a line/chunk already returned: reset on next call */
	int state; /* DATA: position in the current line (smtp_lines.c) */
	int in_headers; /* (read) DATA: still in the header section */
	size_t line_len; /* DATA: length of the current text line so far, unstuffed */
	size_t text_line_limit; /* DATA: the maximum given to smtp_lines_begin_data() */
	size_t max_text_line; /* (read) DATA: longest text line seen (unstuffed, no CRLF) */
	int text_line_too_long; /* (read) DATA: a line exceeded the limit (message refused) */
	unsigned received_headers; /* (read) DATA: Received: fields in the header section */
	unsigned long long data_octets; /* (read) DATA: message octets returned so far */
	char head[16]; /* DATA: first octets of the current line (header name test) */
	size_t head_len;
	/*
	 * (read) DATA: the body of the header section's first Message-ID field
	 * (RFC 5322 3.6.4) as sent, unfolded (continuation lines joined without their
	 * CRLF, spaces kept), cut at SMTP_LINES_MSGID_MAX octets, NUL-terminated; ""
	 * when there is none. Any octets but CR and LF may be in it.
	 */
	char msgid[SMTP_LINES_MSGID_MAX + 1];
	size_t msgid_len;
	int msgid_state; /* DATA: where the reader is with that field (smtp_lines.c) */
};

/* Prepares a reader using buf[0..cap) (cap >= 1024) for command lines. */
void smtp_lines_init(struct smtp_lines *l, char *buf, size_t cap);

/*
 * Switches to DATA mode (after 354) with the given text line maximum (octets
 * without CRLF, after unstuffing: the transparency dot of RFC 5321 4.5.2 is not
 * text and does not count; 4.5.3.1.6 gives 998; 0 = no limit); resets the DATA
 * counters. Call it only after a LINE event
 * (the reader then holds no octets). A line over the maximum does not stop the
 * reader: it sets text_line_too_long and the session refuses after the dot.
 */
void smtp_lines_begin_data(struct smtp_lines *l, size_t max_text_line);

/*
 * Consumes input from in[0..len). Returns an event and stores in *consumed how many
 * input octets were used (the caller calls again with the rest). For
 * SMTP_LINES_LINE, *out and *out_len hold the line (valid until the next call); for
 * SMTP_LINES_DATA, the message octets to store (may be called many times per
 * message). After END_OF_DATA the reader is back in command mode.
 *
 * Command mode: a line longer than SMTP_LINES_CMD_MAX octets (without CRLF)
 * returns SMTP_LINES_TOO_LONG once, as soon as the excess octet arrives; the rest
 * of that line is consumed without being stored up to its CRLF (no further
 * event), and `skipped` counts its octets so the session can give up (421) on a
 * line that never ends. DATA mode: data octets are returned at the latest when
 * the input given is used up or the buffer is full; END_OF_DATA comes in a call
 * of its own (the data before it is always returned first). SMTP_LINES_BARE_LF_CR
 * is final: every later call returns it again and consumes everything. Results
 * do not depend on how the input is split.
 */
enum smtp_lines_event smtp_lines_feed(struct smtp_lines *l, const char *in, size_t len,
                                      size_t *consumed, const char **out, size_t *out_len);

/*
 * Octets received but not yet returned: a partial command line (and a held CR),
 * or in DATA mode a held "." or CR at the start or end of a line. 0 right after a
 * LINE event means the client sent nothing more in that read (pipelining checks
 * must also count what the caller has not fed yet).
 */
size_t smtp_lines_pending(const struct smtp_lines *l);

/*
 * Dot-stuffing for sending (RFC 5321 4.5.2): copies in[0..len) to out, doubling a
 * '.' at the start of each line (a line starts after LF); *at_line_start carries
 * state across calls (start with 1). out must hold 2 * len octets. Returns the
 * output length.
 */
size_t smtp_dotstuff(const char *in, size_t len, char *out, int *at_line_start);

#endif
