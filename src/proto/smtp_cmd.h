/*
 * smtp_cmd: SMTP command lines (RFC 5321 section 4.1): the verb, and for MAIL and
 * RCPT the path and the ESMTP parameters. Pure: no I/O, no allocation; results
 * are spans into the caller's line.
 *
 * Owner: the SMTP codec engineer (proto). Used by the SMTP session.
 */
#ifndef SHAREMAIL_PROTO_SMTP_CMD_H
#define SHAREMAIL_PROTO_SMTP_CMD_H

#include <stddef.h>

#include "proto/mailaddr.h"

#define SMTP_CMD_LINE_MAX 512 /* RFC 5321 4.5.3.1.4, including CRLF */
#define SMTP_PATH_MAX 256 /* RFC 5321 4.5.3.1.3, including the angle brackets */

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_HELP,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_BDAT,
};

enum smtp_cmd_result {
	SMTP_CMD_OK = 0,
	SMTP_CMD_EMPTY, /* empty line (or only spaces) */
	SMTP_CMD_NUL, /* a NUL octet: 501 */
	SMTP_CMD_8BIT, /* an octet above 0x7E or a control octet other than TAB/SP */
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *arg; /* after the verb and one SP, trailing SP/TAB removed; NULL when none */
	size_t arg_len;
};

/*
 * Splits one command line (without its CRLF) into verb (case-insensitive) and
 * argument. The caller has already enforced SMTP_CMD_LINE_MAX. A NUL anywhere
 * gives SMTP_CMD_NUL (checked first), an octet above 0x7E or a control octet
 * other than TAB gives SMTP_CMD_8BIT; in both cases *out is still filled in, so
 * the session can answer 553 5.6.7 for MAIL/RCPT and 500 otherwise. The verb is
 * the text up to the first SP; anything else than a known verb is
 * SMTP_VERB_UNKNOWN. An argument of only white space counts as none (arg NULL).
 */
enum smtp_cmd_result smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out);

/* The canonical upper-case name of a verb ("MAIL"), "?" for SMTP_VERB_UNKNOWN. */
const char *smtp_verb_name(enum smtp_verb v);

enum smtp_path_result {
	SMTP_PATH_OK = 0,
	SMTP_PATH_SYNTAX, /* 501 5.5.4 / 5.1.7 */
	SMTP_PATH_TOO_LONG, /* local > 64, domain > 255, path > 256: 501 5.5.4 */
	SMTP_PATH_8BIT, /* 8-bit octets without SMTPUTF8: 553 5.6.7 */
};

struct smtp_path {
	int null; /* "<>" */
	int postmaster; /* "<Postmaster>" (any case, no domain; RCPT only) */
	int source_route; /* "<@a,@b:user@dom>": the route was present (and ignored) */
	struct mailaddr addr; /* valid unless null or postmaster */
	const char *mailbox; /* the mailbox span ("user@dom"), as written; "" for <> */
	size_t mailbox_len;
	const char *params; /* after the path and its spaces, or NULL */
	size_t params_len;
};

/*
 * Parses the argument of MAIL ("FROM:<path> [params]", prefix case-insensitive)
 * or RCPT ("TO:<path> [params]"), with `prefix` "FROM:" or "TO:". Accepts an
 * optional single space after the colon (common practice). Source routes are
 * recognised and dropped (RFC 5321 4.1.1.3: MUST accept, SHOULD ignore).
 * "<Postmaster>" without a domain is accepted only with prefix "TO:" (RFC 5321
 * 4.1.1.3); "<>" is reported with null = 1 for either prefix (RCPT refuses it).
 * A control octet in the path is SMTP_PATH_SYNTAX, an octet above 0x7E in the
 * path SMTP_PATH_8BIT. Quoted local parts are kept as written (addr, mailbox).
 * On failure *out is zeroed.
 */
enum smtp_path_result smtp_path_parse(const char *arg, size_t len, const char *prefix,
                                      struct smtp_path *out);

#endif
