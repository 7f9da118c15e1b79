/*
 * smtp_reply: formatting SMTP replies (RFC 5321 4.2) with enhanced status codes
 * (RFC 3463, RFC 2034) on every reply but the greeting. Pure: writes into a
 * caller buffer.
 */
#ifndef SHAREMAIL_PROTO_SMTP_REPLY_H
#define SHAREMAIL_PROTO_SMTP_REPLY_H

#include <stddef.h>

/*
 * Formats "CODE ENH text\r\n" (ENH omitted when NULL) into out; `more` makes it a
 * continuation line ("CODE-"). Text is copied with control octets replaced by '?'.
 * Returns the length, or -1 if it does not fit.
 */
int smtp_reply_format(char *out, size_t outsz, int code, const char *enh, const char *text,
                      int more);

#endif
