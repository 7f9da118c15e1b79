/*
 * smtp_session_tls: the TLS side of the SMTP session (smtp_session.h): the
 * STARTTLS command (RFC 3207), what the session knows of TLS, the reset after
 * the handshake, and the Received field's TLS comment. The request itself
 * (SMTP_REQUEST_TLS, tls_start, smtp_session_tls_done) is smtp_session.c's,
 * beside the other kinds. The handshake is the glue's (net_server.h).
 *
 * Owner: the SMTP session engineer (src/smtpd).
 */
#include <stdio.h>
#include <string.h>

#include "conf/conf.h"
#include "smtpd/smtp_session.h"
#include "smtpd/smtp_auth.h"
#include "smtpd/smtp_session_int.h"

/* A certificate is configured and the glue can start TLS: STARTTLS may be offered. */
static int tls_configured(const struct smtp_session *s)
{
	return s->ops->tls_start != NULL && s->c->tls_cert_file != NULL &&
	       s->c->tls_cert_file[0] != '\0';
}

int smtp_tls_offered(const struct smtp_session *s)
{
	return !s->tls_active && tls_configured(s);
}

/*
 * RFC 3207 4: a second STARTTLS (TLS already active, on 465 too) is 503; a
 * parameter is 501; with no certificate the command is 454 (it was not
 * offered); a glue without TLS (no tls_start op) answers 502 as before. Pipelined input after it is not refused: it is discarded unread.
 */
int smtp_tls_check(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (s->tls_active) {
		smtp_session_reply(s, 503, "5.5.1", "TLS already active", 1);
		return -1;
	}
	if (cmd->arg != NULL && cmd->arg_len > 0) {
		smtp_session_reply(s, 501, "5.5.4", "Syntax error, no parameters allowed", 1);
		return -1;
	}
	if (s->ops->tls_start == NULL) { /* a session with no TLS at all (the transcripts) */
		smtp_session_reply(s, 502, "5.5.1", "Command not offered by this server", 1);
		return -1;
	}
	if (!tls_configured(s)) {
		smtp_session_reply(s, 454, "4.7.0", "TLS not available", 1);
		return -1;
	}
	return 0;
}

void smtp_tls_run(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	/* Asked first: the glue only notes it, and switches once this 220 is out. */
	if (smtp_session_request_tls(s) != 0) {
		smtp_session_reply(s, 454, "4.7.0", "TLS not available due to temporary reason", 1);
		return;
	}
	smtp_session_reply(s, 220, "2.0.0", "Ready to start TLS", 0);
}

static void tls_record(struct smtp_session *s, const char *version, const char *cipher)
{
	s->tls_active = 1;
	snprintf(s->tls_version, sizeof s->tls_version, "%s", version ? version : "TLS");
	snprintf(s->tls_cipher, sizeof s->tls_cipher, "%s", cipher ? cipher : "unknown");
}

/*
 * RFC 3207 4.2: "the server MUST discard any knowledge obtained from the
 * client ... which was not obtained from the TLS negotiation itself": the
 * HELO/EHLO name, the transaction, and any octet read but not consumed (the
 * line reader starts empty: plaintext after STARTTLS never runs inside TLS,
 * CVE-2011-0411). The error count stays (it bounds the connection).
 */
void smtp_tls_reset(struct smtp_session *s, const char *version, const char *cipher)
{
	smtp_session_reset_tx(s);
	smtp_auth_free(s); /* RFC 3207 4.2: nothing learnt before TLS is kept, an AUTH included */
	s->helo[0] = '\0';
	s->helo_kind = SMTP_HELO_NONE;
	s->skipped = 0;
	s->pending_after = 0;
	s->held.ev = SMTP_LINES_NEED_MORE;
	smtp_lines_init(&s->lines, s->linebuf, SMTP_SESSION_LINEBUF);
	tls_record(s, version, cipher);
}

void smtp_session_tls_implicit(struct smtp_session *s, const char *version, const char *cipher)
{
	tls_record(s, version, cipher);
}

int smtp_session_tls(const struct smtp_session *s, const char **version, const char **cipher)
{
	if (version != NULL)
		*version = s->tls_active ? s->tls_version : "";
	if (cipher != NULL)
		*cipher = s->tls_active ? s->tls_cipher : "";
	return s->tls_active;
}

/* Names from OpenSSL, but kept to a header-safe alphabet all the same. */
static void name_safe(char *out, size_t outsz, const char *in)
{
	size_t i = 0;
	for (; in[i] != '\0' && i + 1 < outsz; i++) {
		unsigned char ch = (unsigned char)in[i];
		int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		         (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
		out[i] = ok ? (char)ch : '_';
	}
	out[i] = '\0';
}

void smtp_tls_received(const struct smtp_session *s, char *out, size_t outsz)
{
	char v[SMTP_SESSION_TLS_NAME_MAX], c[SMTP_SESSION_TLS_NAME_MAX];
	if (!s->tls_active) {
		if (outsz > 0)
			out[0] = '\0';
		return;
	}
	name_safe(v, sizeof v, s->tls_version);
	name_safe(c, sizeof c, s->tls_cipher);
	snprintf(out, outsz, "\t(using %s with cipher %s)\r\n", v, c);
}
