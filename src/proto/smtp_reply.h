/*
 * smtp_reply: formatting SMTP replies (RFC 5321 4.2) with enhanced status codes
 * (RFC 3463, RFC 2034) on every reply but the greeting. Pure: writes into a
 * caller buffer.
 *
 * Owner: the SMTP codec engineer (proto). Used by the SMTP session.
 */
#ifndef SHAREMAIL_PROTO_SMTP_REPLY_H
#define SHAREMAIL_PROTO_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_LINE_MAX 512 /* RFC 5321 4.5.3.1.5, including CRLF */

/*
 * Formats "CODE ENH text\r\n" (ENH omitted when NULL or "") into out, NUL-
 * terminated; `more` makes it a continuation line ("CODE-", RFC 5321 4.2.1).
 * code must be 200-599 (else -1). Text (NULL = none) is copied with control and
 * 8-bit octets replaced by '?' (so a hostile HELO name echoed back cannot break
 * the reply), and cut so the line stays within SMTP_REPLY_LINE_MAX. An ENH that
 * smtp_reply_enh_valid() refuses gives -1. Returns the length (without the NUL),
 * or -1 if it does not fit in outsz.
 */
int smtp_reply_format(char *out, size_t outsz, int code, const char *enh, const char *text,
                      int more);

/*
 * 1 if enh is an RFC 3463 enhanced status code "class.subject.detail": class 2,
 * 4 or 5, subject and detail 1-3 digits without leading zeros (e.g. "2.1.0",
 * "5.7.1"); else 0.
 */
int smtp_reply_enh_valid(const char *enh);

#endif
