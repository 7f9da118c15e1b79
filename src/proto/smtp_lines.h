/*
 * smtp_lines: SMTP framing, the defence against SMTP smuggling
 * (CVE-2023-51764/51765/51766). Only CRLF ends a line; a bare CR or bare LF
 * anywhere is an error. Lines are assembled across arbitrary chunks (one octet
 * per write must work) into a buffer with a hard maximum.
 *
 * In DATA mode the reader also undoes dot-stuffing (RFC 5321 4.5.2), detects
 * the end-of-data line ".", enforces the text line maximum, and counts the
 * Received: header fields of the header section (loop detection).
 *
 * Pure: no I/O, no allocation beyond what smtp_lines_init() is handed.
 */
#ifndef SHAREMAIL_PROTO_SMTP_LINES_H
#define SHAREMAIL_PROTO_SMTP_LINES_H

#include <stddef.h>

enum smtp_lines_event {
	SMTP_LINES_NEED_MORE = 0, /* consumed everything given; no complete line */
	SMTP_LINES_LINE, /* a complete command line (without CRLF) */
	SMTP_LINES_DATA, /* DATA mode: a chunk of message octets (unstuffed, CRLF kept) */
	SMTP_LINES_END_OF_DATA, /* DATA mode: the "." line was seen */
	SMTP_LINES_TOO_LONG, /* command mode: a line over the maximum (skipped to its CRLF) */
	SMTP_LINES_BARE_LF_CR, /* a bare CR or LF: the session must be ended */
};

struct smtp_lines {
	char *buf; /* caller's buffer, cap octets */
	size_t cap, len;
	int data_mode;
	int skipping; /* discarding the rest of an over-long command line */
	int pending_cr;
	int at_line_start;
	int in_headers; /* DATA: still in the header section */
	size_t line_len; /* DATA: length of the current text line so far */
	size_t max_text_line; /* DATA: longest text line (without CRLF) */
	int text_line_too_long; /* DATA: set once a longer line was seen (message refused) */
	unsigned received_headers; /* DATA: Received: fields in the header section */
	unsigned long long data_octets; /* DATA: message octets so far */
	/* private parser state may be added by the implementation */
	int state;
};

/* Prepares a reader using buf[0..cap) (cap >= 1024) for command lines. */
void smtp_lines_init(struct smtp_lines *l, char *buf, size_t cap);

/* Switches to DATA mode (after 354) with the given text line maximum; resets counters. */
void smtp_lines_begin_data(struct smtp_lines *l, size_t max_text_line);

/*
 * Consumes input from in[0..len). Returns an event and stores in *consumed how many
 * input octets were used (the caller calls again with the rest). For
 * SMTP_LINES_LINE, *out/*out_len is the line (valid until the next call); for
 * SMTP_LINES_DATA, the message octets to store (may be called many times per
 * message). After END_OF_DATA the reader is back in command mode.
 */
enum smtp_lines_event smtp_lines_feed(struct smtp_lines *l, const char *in, size_t len,
                                      size_t *consumed, const char **out, size_t *out_len);

/* Octets received but not yet returned as a line (for pipelining checks). */
size_t smtp_lines_pending(const struct smtp_lines *l);

/*
 * Dot-stuffing for sending (RFC 5321 4.5.2): copies in[0..len) to out, doubling a
 * '.' at the start of each line; *at_line_start carries state across calls.
 * out must hold 2 * len octets. Returns the output length.
 */
size_t smtp_dotstuff(const char *in, size_t len, char *out, int *at_line_start);

#endif
