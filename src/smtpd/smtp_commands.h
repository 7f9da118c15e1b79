/*
 * smtp_commands: THE table of SMTP commands, one {name, check, run} row each
 * (RFC 5321 4.1.1, RFC 2920 for pipelining groups). Internal to src/smtpd (the
 * session dispatches through it; tests read the table): the glue uses
 * smtp_session.h only.
 *
 * A row's check() decides whether the command may run now (sequence, argument,
 * pipelining); when it refuses it has already queued the reply. run() does the
 * work and queues the reply. Both act on the session through the helpers of
 * smtp_session_int.h.
 *
 * Owner: the SMTP session engineer (src/smtpd).
 */
#ifndef SHAREMAIL_SMTPD_SMTP_COMMANDS_H
#define SHAREMAIL_SMTPD_SMTP_COMMANDS_H

#include <stddef.h>

#include "proto/smtp_cmd.h"

struct smtp_session;

struct smtp_command {
	const char *name;
	enum smtp_verb verb;
	/* 0 to run, -1 when refused (reply already queued). */
	int (*check)(struct smtp_session *s, const struct smtp_cmd *cmd);
	void (*run)(struct smtp_session *s, const struct smtp_cmd *cmd);
};

/* The row for a verb, or NULL (SMTP_VERB_UNKNOWN). */
const struct smtp_command *smtp_command_find(enum smtp_verb verb);

/* The whole table (for HELP and tests): *n rows. */
const struct smtp_command *smtp_command_table(size_t *n);

#endif
