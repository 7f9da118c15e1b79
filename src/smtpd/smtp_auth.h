/*
 * smtp_auth: the SMTP session's AUTH command (RFC 4954) and the seed's sender
 * authentication rules (auth_rules.h) at MAIL, RCPT and after the final dot.
 * Internal to src/smtpd: the session (smtp_session.c) and its command table
 * (smtp_commands.c) call it; it acts on the session through smtp_session_int.h.
 *
 * The exchange: AUTH's arguments go to proto/sasl; its 334 lines are sent as
 * they are; continuation lines are framed here (CRLF only, at most
 * SASL_LINE_MAX octets: RFC 4954 4 asks for 12288) because the command reader
 * stops at 512. Credentials become an AUTH request (ops->auth_check): the
 * password is wiped as soon as the op returns and input stops until
 * smtp_session_auth_done(). Credentials the exchange itself found invalid are
 * asked too (identity NULL), so the glue counts and delays every failure alike.
 *
 * Offered (EHLO) and accepted only when: the glue gave an auth_check op; not on
 * smtp_listen with smtp_auth_on_smtp_port = no (AUTH is then an unknown command,
 * or with smtp_auth_on_smtp_port_screen the client is screened and closed); and
 * TLS is active unless auth_allow_plaintext (538 5.7.11 without looking at the
 * credentials, hostile-inputs.md "TLS").
 *
 * Ownership: the session's AUTH fields (smtp_session_int.h) are this module's;
 * smtp_auth_free() wipes and frees them.
 */
#ifndef SHAREMAIL_SMTPD_SMTP_AUTH_H
#define SHAREMAIL_SMTPD_SMTP_AUTH_H

#include <stddef.h>

#include "proto/smtp_cmd.h"
#include "smtpd/auth_rules.h"

struct smtp_session;

/* 1 when EHLO offers AUTH on this session (see above). */
int smtp_auth_offered(const struct smtp_session *s);

/* The AUTH row of the command table: check (0 to run, -1 replied) and run. */
int smtp_auth_check_cmd(struct smtp_session *s, const struct smtp_cmd *cmd);
void smtp_auth_run_cmd(struct smtp_session *s, const struct smtp_cmd *cmd);

/* In SMTP_ST_AUTH: consumes continuation-line octets; returns how many. */
size_t smtp_auth_input(struct smtp_session *s, const char *data, size_t len);

/* The AUTH step's outcome, applied in its turn (the reply and the log line). */
void smtp_auth_finish(struct smtp_session *s, int status);

/* smtp_session_auth_done's OK: copies the account and its addresses. -1: no memory. */
int smtp_auth_store(struct smtp_session *s, const char *account, const char *const *addrs,
                    size_t n);

/* Ends an exchange under way (session end): the credentials are wiped. */
void smtp_auth_end_exchange(struct smtp_session *s);

/* Wipes and frees every AUTH field of the session. */
void smtp_auth_free(struct smtp_session *s);

/*
 * MAIL's rules for reverse-path p (auth_rules_check, phase MAIL), peer being
 * what Domain Sharing said of the sender. Returns 0 (go on), -1 (refused:
 * replied) or 1 (the rules want the Domain Sharing answer first).
 */
int smtp_auth_rules_mail(struct smtp_session *s, const struct smtp_path *p,
                         enum auth_rules_peer peer);

/* RCPT's rules for forward-path p: 0, or -1 refused (replied). */
int smtp_auth_rules_rcpt(struct smtp_session *s, const struct smtp_path *p);

/* After the final dot: the From: rule. 0, or -1 refused (replied). */
int smtp_auth_rules_data(struct smtp_session *s);

/*
 * MAIL's AUTH= parameter (RFC 4954 5): removes it from params[0..len) into
 * rest (restsz >= len + 1; *rest_len set), checking its value (xtext or "<>",
 * once). Returns 0, or -1 when it replied 501.
 */
int smtp_auth_mail_param(struct smtp_session *s, const char *params, size_t len, char *rest,
                         size_t restsz, size_t *rest_len);

/* DATA octets of the message (not our Received field): keeps the header section when needed. */
void smtp_auth_data(struct smtp_session *s, const char *p, size_t n);

/* Drops what smtp_auth_data kept (a new transaction). */
void smtp_auth_reset_tx(struct smtp_session *s);

/* RFC 3848 protocol name for Received: SMTP, ESMTP, ESMTPA, ESMTPS or ESMTPSA. */
const char *smtp_auth_protocol(const struct smtp_session *s);

#endif
