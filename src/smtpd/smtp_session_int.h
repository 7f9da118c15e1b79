/*
 * smtp_session_int: the SMTP session's internals, private to src/smtpd (the
 * session, smtp_session.c, and its command table, smtp_commands.c). Nothing
 * outside src/smtpd includes this file: the glue, the tests and the fuzzer use
 * smtp_session.h only.
 *
 * The commands act on the session only through the helpers declared here, so
 * every reply goes through one place that counts errors.
 *
 * Owner: the SMTP session engineer (src/smtpd).
 */
#ifndef SHAREMAIL_SMTPD_SMTP_SESSION_INT_H
#define SHAREMAIL_SMTPD_SMTP_SESSION_INT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/smtp_cmd.h"
#include "proto/smtp_lines.h"
#include "smtpd/smtp_session.h"

/* Octets of one over-long command line skipped before the session gives up (421). */
#define SMTP_SESSION_SKIP_MAX (64 * 1024)
/* The line reader's buffer (a command line is at most SMTP_CMD_LINE_MAX). */
#define SMTP_SESSION_LINEBUF 4096
/* Room kept free for the next reply (the longest, EHLO or HELP, is under 1 KiB). */
#define SMTP_SESSION_OUT_SLACK 2048
/* RCPTs past smtp_max_recipients answered 452 before each further one counts as an error. */
#define SMTP_SESSION_RCPT_GRACE 100

/* Room for an OpenSSL protocol or cipher name ("TLS_AES_256_GCM_SHA384") with its NUL. */
#define SMTP_SESSION_TLS_NAME_MAX 64

enum smtp_state {
	SMTP_ST_NEW = 0, /* before the greeting */
	SMTP_ST_CMD, /* reading commands (maybe with requests open: see the steps) */
	SMTP_ST_DATA, /* reading message octets */
	SMTP_ST_AUTH, /* an AUTH exchange: reading continuation lines (smtp_auth.c) */
	SMTP_ST_END, /* ended: output what is pending, then close */
};

/*
 * One command whose outcome is not applied yet, in command order: a RCPT (with
 * a request when the verifier was asked, id 0 when its verdict needed none), a
 * MAIL waiting for its sender's answer, or a message waiting for its commit.
 * Only the first step of the queue is ever applied, and only once its request
 * is answered: that is what keeps replies, counts and logs in command order.
 */
struct smtp_step {
	uint64_t id; /* the request's id, 0: none */
	enum smtp_request_kind kind;
	int open; /* asked, no answer yet */
	/* RCPT: the command's argument (heap; NULL when none), applied when its turn comes */
	char *arg;
	size_t arg_len;
	/* RCPT, SENDER: the answer, once in (id != 0 and !open) */
	struct verify_answer answer;
	/* COMMIT: the outcome */
	int ok;
	char qid[SMTP_SESSION_ID_MAX];
};

/* A framing event held (not run) because earlier requests are open. */
struct smtp_held {
	enum smtp_lines_event ev; /* SMTP_LINES_LINE, _TOO_LONG or _BARE_LF_CR; NEED_MORE: none */
	char line[SMTP_CMD_LINE_MAX];
	size_t len;
	size_t pending_after; /* input that followed it (RFC 2920 groups) */
};

enum smtp_helo_kind { SMTP_HELO_NONE = 0, SMTP_HELO_HELO, SMTP_HELO_EHLO };

struct sasl;

/* The From: header's addresses of an authenticated client's message (auth_match_from_header). */
#define SMTP_SESSION_HDR_MAX (64 * 1024)

struct smtp_session {
	const struct conf *c;
	const struct smtp_session_ops *ops;
	enum smtp_port_kind kind;
	char client_addr[64];
	int trusted;
	int sharing_peer; /* a Domain Sharing peer: list posts skip the member check */
	enum smtp_state state;
	enum smtp_helo_kind helo_kind;
	char helo[SMTP_CMD_LINE_MAX + 1];
	unsigned errors;
	size_t skipped; /* octets of the current over-long command line */
	size_t pending_after; /* input octets after the line being processed (pipelining) */
	/* the reply to the command being run, for its log line */
	int cmd_reply_code; /* 0: none yet */
	int cmd_log; /* 1: a refusal that goes to the log (see smtp_session.h) */
	char cmd_reply[SMTP_CMD_LINE_MAX + 64];
	/* the transaction (RFC 5321 3.3) */
	struct envelope *env; /* non-NULL once MAIL was accepted */
	size_t rcpt_attempts_over; /* RCPTs refused for exceeding smtp_max_recipients */
	enum smtp_sender_known sender_known; /* sender_verify's answer on env's sender */
	char sender_peer[ENVELOPE_ROUTE_MAX + 1]; /* with SMTP_SENDER_PEER: who has it */
	struct queue_msg *msg; /* the message file during DATA */
	char queue_id[SMTP_SESSION_ID_MAX]; /* of msg (its Received field and log line) */
	size_t received_len; /* octets of our Received field at the top of msg */
	unsigned long long data_octets;
	int data_too_big;
	int data_write_errno; /* 0, or why msg_write failed (the message was aborted) */
	/* requests: steps[head .. head + n_steps) in command order (a ring of cap) */
	struct smtp_step *steps;
	size_t steps_head, n_steps, steps_cap;
	size_t n_open; /* steps with a request open */
	uint64_t next_id; /* the last id given */
	struct smtp_held held;
	/* AUTH (smtp_auth.c) */
	int in_local_networks; /* client_addr in local_networks */
	struct sasl *sasl; /* during an exchange */
	char *auth_line; /* SASL_LINE_MAX octets, during an exchange */
	size_t auth_line_len;
	int auth_cr; /* a CR waits for its LF */
	int auth_skipping; /* discarding an over-long line to its CRLF */
	size_t auth_skipped;
	char auth_mech[8]; /* "PLAIN", "LOGIN" of the last exchange (the log) */
	char auth_tried[SMTP_CMD_LINE_MAX]; /* the identity tried (the log; "" invalid) */
	char *auth_account; /* NULL: not authenticated */
	char **auth_addrs; /* the account's addresses (its own and its aliases') */
	size_t n_auth_addrs;
	int auth_ask_peer; /* the MAIL rules wait for the sender's Domain Sharing answer */
	char *hdr; /* DATA of an authenticated client: the header section, for From: */
	size_t hdr_len;
	int hdr_done; /* the header section ended within hdr */
	/* TLS (smtp_session_tls.c) */
	int tls_active;
	char tls_version[SMTP_SESSION_TLS_NAME_MAX];
	char tls_cipher[SMTP_SESSION_TLS_NAME_MAX];
	/* I/O */
	struct smtp_lines lines;
	char *linebuf;
	char *out;
	size_t out_len, out_off, out_cap;
};

/*
 * Queues one reply line (with enh NULL: no enhanced code, only for the greeting,
 * HELO/EHLO and 354). A 4xx/5xx reply counts as an error when count_error is set;
 * past smtp_max_errors the session queues "421 4.7.0" and ends.
 */
void smtp_session_reply(struct smtp_session *s, int code, const char *enh, const char *text,
                        int count_error);
/* Queues octets as they are (a SASL reply line, CRLF included). */
void smtp_session_reply_raw(struct smtp_session *s, const char *line, size_t len);
/* A bare CR or LF: 500 5.5.2 and the session ends (CVE-2023-51764). */
void smtp_session_bare_cr_lf(struct smtp_session *s);
/* One log line (ops->log_line), printf-like. */
void smtp_session_log(struct smtp_session *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Copies n client octets into out (outsz), octets outside printable ASCII as '?'. */
void smtp_session_log_safe(char *out, size_t outsz, const char *p, size_t n);
/* Queues an AUTH request step (blocks input until smtp_session_auth_done). NULL: no memory. */
struct smtp_step *smtp_session_push_auth(struct smtp_session *s);
/* Takes back the step just pushed (its request could not be asked). */
void smtp_session_pop_last(struct smtp_session *s);
/* Queues a continuation line ("250-..."). */
void smtp_session_reply_more(struct smtp_session *s, int code, const char *text);
/* Ends the session (pending output is still sent). Aborts a message in DATA. */
void smtp_session_end(struct smtp_session *s);
/* Forgets the transaction (RFC 5321 4.1.1.5): envelope freed, message aborted. */
void smtp_session_reset_tx(struct smtp_session *s);
/* Switches to DATA: starts the message and writes the Received field. 0 or -1 (replied). */
int smtp_session_begin_data(struct smtp_session *s);

/*
 * RCPT's run: queues the command as a step, asks the verifier when its verdict
 * needs it (smtp_commands_rcpt_target()), and applies what can be applied
 * (smtp_commands_rcpt_finish(), in command order).
 */
void smtp_session_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd);
/*
 * MAIL's end, after its envelope was made: asks sender_verify when the config
 * says so (domain_sharing, domain_sharing_query_senders, a sender in a local
 * domain), then outputs "250 2.1.0" now or when the answer comes.
 */
void smtp_session_mail_accepted(struct smtp_session *s, const struct smtp_path *p);
/* 1 when MAIL with p will ask sender_verify (domain_sharing_query_senders, a local domain). */
int smtp_session_sender_asked(const struct smtp_session *s, const struct smtp_path *p);

/*
 * In smtp_commands.c. rcpt_target: 1 with the mailbox to ask the verifier about
 * in *mb, *len (a span of cmd's argument) when RCPT cmd's verdict needs it, 0 when
 * the command is answered without it (a syntax error, the null path, a
 * postmaster, the recipient limit...). rcpt_finish: applies RCPT cmd with the
 * verifier's answer a (NULL when none was needed): the reply, the recipient
 * stored, the rejected-recipients log.
 */
int smtp_commands_rcpt_target(struct smtp_session *s, const struct smtp_cmd *cmd, const char **mb,
                              size_t *len);
void smtp_commands_rcpt_finish(struct smtp_session *s, const struct smtp_cmd *cmd,
                               const struct verify_answer *a);

/*
 * TLS (smtp_session_tls.c; the request itself is smtp_session.c's). The
 * STARTTLS row's check and run; 1 when STARTTLS goes in the EHLO reply; the
 * reset after the handshake (RFC 3207 4.2); the Received field's TLS comment
 * ("\t(using TLSv1.3 with cipher X)\r\n", or "" without TLS) into out.
 */
int smtp_tls_check(struct smtp_session *s, const struct smtp_cmd *cmd);
void smtp_tls_run(struct smtp_session *s, const struct smtp_cmd *cmd);
int smtp_tls_offered(const struct smtp_session *s);
void smtp_tls_reset(struct smtp_session *s, const char *version, const char *cipher);
void smtp_tls_received(const struct smtp_session *s, char *out, size_t outsz);
/* Asks ops->tls_start as a request; 0, or -1 when TLS cannot be had (nothing asked). */
int smtp_session_request_tls(struct smtp_session *s);

#endif
