/*
 * pop3_resp: what a POP3 server says (RFC 1939, RFC 2449, RFC 2595), decoded
 * for the POP3 client (collect/pop3_client.h): the status line ("+OK" /
 * "-ERR" with an optional RFC 2449 8 response code), the APOP timestamp of the
 * greeting (RFC 1939 7), the lines of a multi-line reply (terminated by ".",
 * dot-unstuffed, RFC 1939 3), the STAT answer, LIST and UIDL listing lines,
 * and CAPA lines (RFC 2449 5, 6).
 *
 * Framing (pop3_resp_lines, pop3_resp_data): only CRLF ends a line. A status
 * or listing line that ends in a bare LF is an error, not a line: the client
 * then ends the session (a reader that took LF as a line end could be made to
 * read a message's body as the next reply). In message data
 * (pop3_resp_data) only a line that follows a CRLF can be the terminating "."
 * or be dot-unstuffed; with POP3_RESP_DATA_CRLF (what the client uses) a bare
 * LF or bare CR in the data is handed on as CRLF, so the caller only ever sees
 * CRLF line ends, and such a normalised line end does not open a line for
 * framing ("\n.\r\n" is data, never the end). With POP3_RESP_DATA_RAW the
 * octets are handed on as received (dot-unstuffing aside).
 *
 * Bounds: numbers (message numbers, counts, sizes) are 1-15 decimal digits,
 * at most POP3_RESP_NUM_MAX; a unique-id is 1-70 octets of 0x21-0x7E (RFC
 * 1939 7, UIDL); a line is at most what the caller's buffer holds.
 *
 * Pure: no I/O, no logging, no allocation; the readers' state lives in the
 * caller's structs, and lines are assembled in a buffer the caller hands over.
 * Results point into the caller's buffers (valid while those are).
 * Owner: proto. Used by collect/pop3_client.c; fuzzed by fuzz/fuzz_pop3_resp.c.
 */
#ifndef SHAREMAIL_PROTO_POP3_RESP_H
#define SHAREMAIL_PROTO_POP3_RESP_H

#include <stddef.h>
#include <stdint.h>

#define POP3_RESP_NUM_MAX 999999999999999ull /* 15 digits: no overflow, any real size */
#define POP3_RESP_UID_MAX 70 /* RFC 1939 7: a unique-id is 1 to 70 octets */
#define POP3_RESP_TIMESTAMP_MAX 255 /* longest APOP timestamp accepted, <> included */
#define POP3_RESP_LINE_MIN 512 /* RFC 2449 4: a response line is at most 512 octets */

/* ---- status lines ---- */

enum pop3_resp_status {
	POP3_RESP_BAD = 0, /* neither "+OK" nor "-ERR": a protocol error */
	POP3_RESP_OK, /* "+OK" */
	POP3_RESP_ERR, /* "-ERR" */
};

/* RFC 2449 8 (and RFC 3206) response codes the client acts on. */
enum pop3_resp_code {
	POP3_RESP_CODE_NONE = 0, /* no "[...]" after the status */
	POP3_RESP_CODE_IN_USE, /* [IN-USE]: another session holds the maildrop */
	POP3_RESP_CODE_LOGIN_DELAY, /* [LOGIN-DELAY]: logged in too recently */
	POP3_RESP_CODE_SYS_TEMP, /* [SYS/TEMP]: a temporary failure, not our credentials */
	POP3_RESP_CODE_SYS_PERM, /* [SYS/PERM]: a permanent failure, not our credentials */
	POP3_RESP_CODE_AUTH, /* [AUTH]: the credentials are at fault */
	POP3_RESP_CODE_OTHER, /* a well-formed code we do not know (RFC 2449 8: ignore it) */
};

struct pop3_resp_status_line {
	enum pop3_resp_status status;
	enum pop3_resp_code code;
	const char *text; /* after the status, its space and any response code */
	size_t text_len;
};

/*
 * Decodes a status line (line[0..len), CRLF removed). "+OK" and "-ERR" are
 * matched exactly (RFC 1939 3: upper case), followed by the end of the line or
 * a space and text; a text that opens with "[" and a well-formed code
 * (RFC 2449 8: atoms separated by "/", then "]") gives its code, a malformed
 * one is left in the text. Returns out->status (POP3_RESP_BAD: out->text is
 * the whole line).
 */
enum pop3_resp_status pop3_resp_status_parse(const char *line, size_t len,
                                             struct pop3_resp_status_line *out);

/*
 * The APOP timestamp of a greeting's text (RFC 1939 7: a msg-id, "<" ... "@"
 * ... ">", e.g. "<1896.697170952@dbc.mtview.ca.us>"): the first "<" that opens
 * a run of printable non-space octets without another "<" that holds an "@"
 * and ends at ">". Returns its length (brackets included; at most
 * POP3_RESP_TIMESTAMP_MAX) with *ts pointing at the "<", or 0 when the
 * greeting offers none.
 */
size_t pop3_resp_apop_timestamp(const char *text, size_t len, const char **ts);

/* ---- line assembly (status lines and the lines of listings) ---- */

enum pop3_resp_lines_event {
	POP3_RESP_LINES_MORE = 0, /* everything consumed; no complete line yet */
	POP3_RESP_LINES_LINE, /* a line (CRLF removed) in the buffer: l->line, l->len */
	POP3_RESP_LINES_TOO_LONG, /* a line over the buffer: an error, the reader is spent */
	POP3_RESP_LINES_BARE_LF, /* a LF not after CR, or a CR not before LF: ditto */
};

struct pop3_resp_lines {
	char *buf; /* caller's, cap octets */
	size_t cap;
	size_t len; /* (read) the line's length once LINE was returned */
	const char *line; /* (read) == buf after LINE */
	int cr; /* the last octet was a CR */
	int done; /* a LINE was returned: the next feed starts a new line */
	int broken; /* TOO_LONG or BARE_LF was returned: returned again ever after */
};

/* Prepares a reader over buf[0..cap) (cap >= POP3_RESP_LINE_MIN). */
void pop3_resp_lines_init(struct pop3_resp_lines *l, char *buf, size_t cap);

/* 1 when octets of an unfinished line are held (the next octet does not open a line). */
int pop3_resp_lines_pending(const struct pop3_resp_lines *l);

/*
 * Consumes in[0..len) up to and including the first line end; *consumed says
 * how many octets were taken (all of them with MORE). A line is at most cap
 * octets without its CRLF.
 */
enum pop3_resp_lines_event pop3_resp_lines_feed(struct pop3_resp_lines *l, const char *in,
                                                size_t len, size_t *consumed);

/*
 * A line of a multi-line reply that is not message data (LIST, UIDL, CAPA):
 * returns 1 when it is the terminating "." line, else 0 and, when the line
 * was dot-stuffed (RFC 1939 3: it began with ".", which is removed), moves
 * *line past that dot and shortens *len.
 */
int pop3_resp_multiline_end(const char **line, size_t *len);

/* ---- STAT, LIST, UIDL ---- */

/*
 * The text after "+OK " of a STAT answer (RFC 1939 5: count SP octets); text
 * after a further space is allowed and ignored. 0, or -1 when malformed or
 * over POP3_RESP_NUM_MAX.
 */
int pop3_resp_stat_parse(const char *text, size_t len, uint64_t *count, uint64_t *octets);

/*
 * A scan listing line of LIST (RFC 1939 5: msg SP octets [SP anything]). The
 * message number is at least 1. 0, or -1 when malformed or out of bounds.
 */
int pop3_resp_list_parse(const char *line, size_t len, uint64_t *num, uint64_t *octets);

/*
 * A unique-id listing line of UIDL (RFC 1939 7: msg SP unique-id, the id 1-70
 * octets of 0x21-0x7E, nothing after it). *uid points into line. 0, or -1.
 */
int pop3_resp_uidl_parse(const char *line, size_t len, uint64_t *num, const char **uid,
                         size_t *uid_len);

/* ---- CAPA ---- */

/* RFC 2449 6 capabilities (and STLS, RFC 2595 4) the client uses; SASL is noted only. */
struct pop3_resp_capa {
	int seen; /* at least one capability line was read */
	int top, user, uidl, pipelining, stls, resp_codes, sasl, expire_never;
	int login_delay; /* seconds announced (0: none) */
};

/*
 * Adds one CAPA line (a capability name and its arguments, RFC 2449 5;
 * names compared without case) to *caps. Unknown names are ignored.
 */
void pop3_resp_capa_line(struct pop3_resp_capa *caps, const char *line, size_t len);

/* ---- message data (the multi-line reply to RETR) ---- */

enum pop3_resp_data_mode {
	POP3_RESP_DATA_CRLF = 0, /* bare LF and bare CR handed on as CRLF */
	POP3_RESP_DATA_RAW, /* octets handed on as received */
};

enum pop3_resp_data_event {
	POP3_RESP_DATA_MORE = 0, /* input consumed (all of it, or until out was full) */
	POP3_RESP_DATA_END, /* the terminating ".CRLF" was consumed; out holds the last data */
};

struct pop3_resp_data {
	enum pop3_resp_data_mode mode;
	int state; /* where the reader is in a line (pop3_resp.c) */
	uint64_t in_octets; /* (read) octets consumed, the terminator included */
	uint64_t out_octets; /* (read) octets handed on (unstuffed, normalised) */
	uint64_t fixed; /* (read) bare LF / CR handed on as CRLF */
};

/* Starts the data of one multi-line reply (the status line already read: a line opens). */
void pop3_resp_data_init(struct pop3_resp_data *d, enum pop3_resp_data_mode mode);

/*
 * Consumes in[0..len) and writes the message octets (dot-unstuffed; CRLF line
 * ends as received, plus the normalised ones) to out[0..cap) (cap >= 4).
 * *consumed and *written say how many octets each; it stops early when out is
 * full (MORE with input left: call again with a fresh out) and at the end
 * (END: octets after the terminator are not consumed). The CRLF before the
 * terminating "." belongs to the message (its last line end).
 */
enum pop3_resp_data_event pop3_resp_data_feed(struct pop3_resp_data *d, const char *in, size_t len,
                                              size_t *consumed, char *out, size_t cap,
                                              size_t *written);

/* Names for logs and tests: "+OK", "-ERR", "bad"; "IN-USE", "SYS/TEMP", ..., "" for none. */
const char *pop3_resp_status_name(enum pop3_resp_status s);
const char *pop3_resp_code_name(enum pop3_resp_code c);

#endif
