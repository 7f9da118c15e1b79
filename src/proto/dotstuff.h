/*
 * dotstuff: a message body on its way out to an SMTP server (RFC 5321 4.5.2),
 * streamed in chunks of any size: a '.' that opens a line is doubled, every
 * line end goes out as CRLF, and dotstuff_end() closes the data with a CRLF
 * (when the last line lacked one) and the "." line.
 *
 * Line ends: the queue stores CRLF-only bodies (the server refuses bare CR and
 * LF), so this is a defence, not a conversion anyone relies on. A bare LF is
 * sent as CRLF, and so is a bare CR (a CR not followed by LF): only CRLF ever
 * leaves, so no body can smuggle "\n.\n" or "\r.\r" past a next hop that reads
 * line ends differently (CVE-2023-51764 shape). CRLF input passes byte-exact
 * (lines of any length, 998 octets included; nothing is folded).
 *
 * Not the same as smtp_dotstuff() in smtp_lines.h, which doubles dots only and
 * needs room for twice the whole input: this one also normalises line ends and
 * writes into a bounded window, consuming only what fits.
 *
 * Pure: no I/O, no allocation; state lives in the caller's struct.
 * Owner: proto. Used by the SMTP client (deliver/smtp_client.c).
 */
#ifndef SHAREMAIL_PROTO_DOTSTUFF_H
#define SHAREMAIL_PROTO_DOTSTUFF_H

#include <stddef.h>
#include <stdint.h>

#define DOTSTUFF_END_MAX 5 /* CRLF "." CRLF */

struct dotstuff {
	int at_bol; /* the next octet opens a line */
	int after_cr; /* the last octet was a CR, already sent as CRLF */
	uint64_t in_octets; /* (read) body octets consumed */
	uint64_t out_octets; /* (read) octets written, the end included */
	uint64_t line_ends_fixed; /* (read) bare CRs and LFs sent as CRLF */
};

/* Starts a body: the first octet opens a line. */
void dotstuff_init(struct dotstuff *d);

/*
 * Stuffs in[0..len) into out[0..outsz). Consumes an input octet only when all
 * it expands to fits (at most 2 octets per input octet: ".." or CRLF), so a
 * small window just means more calls. Returns the input octets consumed and
 * stores the octets written in *out_len; the rest is given again next call.
 */
size_t dotstuff_feed(struct dotstuff *d, const char *in, size_t len, char *out, size_t outsz,
                     size_t *out_len);

/*
 * Writes the end of the data into out: CRLF when the body did not end with a
 * line end (an empty body needs none), then ".\r\n". Returns the length, or 0
 * when outsz < DOTSTUFF_END_MAX (nothing written).
 */
size_t dotstuff_end(struct dotstuff *d, char *out, size_t outsz);

#endif
