/*
 * conf: the configuration, loaded from one "key = value" file through ONE schema
 * table (conf_schema.c): every key's name, type, default, range and one-line doc.
 * The table drives parsing, validation, defaults, `sharemail check-config` and the
 * table in doc/sharemail.conf.5 (a unit test checks the man page against it).
 *
 * File syntax: one "key = value" per line; '#' starts a comment line; blank lines
 * ignored; surrounding white space trimmed; repeatable keys (type LIST, NETLIST,
 * ADDRLIST) accumulate, others may appear once. Relative paths are resolved
 * against the folder of the config file.
 *
 * Ownership: conf_load() returns a struct conf the caller frees with conf_free();
 * every string in it is owned by it.
 */
#ifndef SHAREMAIL_CONF_CONF_H
#define SHAREMAIL_CONF_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/netaddr.h"

/* The exit status for configuration errors (sysexits EX_CONFIG). */
#define CONF_EXIT_CONFIG 78

struct strlist {
	char **v;
	size_t n;
};

struct addrlist {
	struct netaddr *v;
	char **text; /* as written, for messages */
	int *line; /* the config file line of each entry, for messages */
	size_t n;
};

struct netlist {
	struct netaddr_net *v;
	size_t n;
};

/*
 * An event rate, written "COUNT/DURATION" (e.g. "5/10m"): the COUNT-th event
 * inside DURATION seconds triggers; count 0 turns the rule off.
 */
struct conf_rate {
	int count;
	int seconds; /* 1..CONF_RATE_SECONDS_MAX */
};
#define CONF_RATE_SECONDS_MAX 604800 /* 7 days */

struct conf {
	char *path; /* the file loaded (absolute) */
	/* general */
	char *hostname; /* default: gethostname() */
	char *state_dir; /* default /var/lib/sharemail */
	struct strlist local_domains; /* lower-cased */
	char *log_level; /* err|warning|info|debug */
	char *log_syslog; /* no|yes|only */
	char *log_file; /* NULL: stderr */
	/* listeners (SMTP/POP3 services are not built yet: accepted, warned about) */
	struct addrlist smtp_listen;
	struct addrlist submission_listen;
	struct addrlist smtps_listen;
	struct addrlist pop3_listen;
	struct addrlist pop3s_listen;
	struct addrlist minger_listen;
	/* Minger server */
	char *minger_secret_file; /* NULL: no secret */
	int minger_anonymous; /* bool, default 0 */
	int minger_compat; /* bool, default 1 */
	struct netlist minger_allow; /* empty: everyone */
	int minger_foreign_aliases_active; /* bool, default 0 */
	int minger_threads; /* 1..64, default 1 */
	int minger_rate_per_source; /* replies/s per source address, 0 = no limit */
	int minger_rate_global; /* replies/s in all, 0 = no limit */
	int minger_source_table_size; /* entries in the per-source table */
	int minger_replay_window; /* seconds, default 60 */
	int minger_strict_amplification; /* bool, default 0: reply <= query + 2 (1: <= query) */
	struct netlist minger_gateway_clients; /* foreign aliases answer 5 to these */
	/* Minger client and verification cache */
	int minger_timeout_ms; /* default 2000 */
	int minger_retries; /* retransmissions, default 2 */
	int minger_require_reply_mac; /* bool, default 0 */
	int minger_cache; /* bool, default 1 */
	int minger_cache_positive_ttl; /* seconds, default 432000 (5 days) */
	int minger_cache_negative_ttl; /* seconds, default 3600 */
	/* SMTP server (smtp_listen, submission_listen) */
	struct netlist smtp_trusted_networks; /* may relay to any domain */
	int smtp_max_message_size; /* bytes; SIZE advertised, 552 above it */
	int smtp_drop_connection_size; /* bytes; 0 = off */
	int smtp_max_recipients; /* per transaction, default 100 */
	struct strlist smtp_refuse_helo; /* substrings of HELO/EHLO refused */
	int smtp_dsn; /* bool, default 1 */
	int smtp_refuse_percent; /* bool, default 0 */
	int smtp_refuse_bang; /* bool, default 0 */
	int smtp_add_date_header; /* bool, default 1 */
	int smtp_original_recipient_header; /* bool, default 0 */
	char *smtp_rejected_recipients_log; /* path or NULL */
	int smtp_vrfy; /* bool, default 0 */
	int smtp_max_errors; /* default 20 (Postfix's hard limit) */
	int smtp_command_timeout; /* seconds, default 300 */
	int smtp_data_timeout; /* seconds, default 600 */
	int smtp_max_connections; /* default 1000 */
	int smtp_max_connections_per_ip; /* default 20 */
	int smtp_greet_pause_ms; /* default 0 */
	char *smtp_over_quota_reply; /* "452" (default) or "552" */
	int smtp_max_line_length; /* text line octets without CRLF, default 998 */
	int smtp_max_received_headers; /* loop limit, default 50 */
	/* POP3 server (pop3d/) */
	int pop3_command_timeout; /* seconds, default 600 (RFC 1939 3's minimum) */
	int pop3_max_connections; /* default 1000 */
	int pop3_max_connections_per_ip; /* default 20 */
	int pop3_max_errors; /* default 20 */
	char *pop3_greeting; /* NULL or "": "HOSTNAME POP3 server ready" */
	/* TLS (util/tls_ctx.h): STARTTLS on 25/587, implicit on smtps_listen */
	char *tls_cert_file; /* PEM, leaf then chain; NULL: no TLS */
	char *tls_key_file; /* PEM; NULL: the key is in tls_cert_file */
	/* SMTP AUTH and the sender authentication rules (smtpd/auth_rules.h) */
	int auth_allow_plaintext; /* bool, default 0: AUTH only inside TLS */
	int auth_cache_ttl; /* seconds a success is remembered, default 1h; 0: off */
	int smtp_auth_on_smtp_port; /* bool, default 1: AUTH offered on smtp_listen */
	int smtp_auth_on_smtp_port_screen; /* bool, default 0: AUTH there anyway screens */
	int smtp_received_auth; /* bool, default 0: the identity in Received */
	int auth_required_for_local_senders; /* bool, default 1 */
	int auth_local_senders_unless_local_rcpt; /* bool, default 0 */
	int auth_local_senders_unless_domain_sharing; /* bool, default 1 */
	int auth_required_from_local_networks; /* bool, default 1 */
	struct netlist local_networks; /* empty: the rule above never applies */
	int auth_required_for_role_senders; /* bool, default 1 */
	int auth_match_return_path; /* bool, default 1 */
	int auth_match_from_header; /* bool, default 1 */
	struct strlist auth_match_exempt; /* mailbox keys (lower case) */
	int auth_match_exempt_gateway; /* bool, default 1 */
	/* POP before SMTP (smtpd/auth_rules.h) */
	int pop_before_smtp; /* bool, default 0 */
	int pop_before_smtp_window; /* seconds, default 10 minutes */
	int auth_exempt_pop_before_smtp; /* bool, default 1 */
	/* Domain Sharing, gateway and forwarded domains (verify/) */
	int domain_sharing; /* bool, default 0 */
	struct strlist
	        domain_sharing_host; /* whole lines "HOST[:PORT] [minger_port=N] [secret_file=F]" */
	char *domain_sharing_domains_file; /* NULL: every local domain is shared */
	int domain_sharing_cache_ttl; /* seconds, default 5 days */
	int domain_sharing_keep_on_error; /* bool, default 1 */
	int domain_sharing_query_senders; /* bool, default 1 */
	int domain_sharing_share_lists; /* bool, default 0 */
	struct strlist gateway_domain; /* whole lines "DOMAIN host=... minger=... [opts]" */
	struct strlist forward_domain; /* whole lines "DOMAIN host=... minger=... [opts]" */
	/* queue and local delivery */
	int queue_min_free; /* bytes of free disk kept; 452 below */
	int queue_lifetime; /* seconds, default 5 days */
	int queue_retry_initial; /* seconds, default 300; doubled per retry */
	int queue_retry_max; /* seconds, default 3600: the back-off's cap */
	int queue_delay_warning; /* seconds, default 14400; 0 = no delay notices */
	int queue_bounce_max_return; /* octets; larger messages: only their headers bounce */
	int queue_delivery_concurrency; /* deliveries under way at once, default 100 */
	int relay_destination_concurrency; /* per relay destination, default 10 */
	/* relay */
	struct strlist relay_route; /* whole lines "DOMAIN HOST[:PORT]...", checked */
	char *relay_smarthost; /* "HOST[:PORT]...", checked; NULL: MX lookup */
	char *relay_tls; /* may|off|require */
	int relay_connect_timeout; /* seconds, default 30 */
	int relay_command_timeout; /* seconds, default 300 */
	int relay_data_timeout; /* seconds after the final dot, default 600 */
	struct strlist dns_nameserver; /* "ADDR" or "ADDR:PORT", checked; empty: resolv.conf */
	int dns_timeout; /* seconds per try, default 5 */
	int dns_attempts; /* tries, default 2 */
	/* Dynamic Screen (screen/screen.h) and privileges (util/privdrop.h) */
	struct conf_rate screen_auth_failures; /* default 5/10m */
	struct conf_rate screen_unknown_recipients; /* default 20/10m */
	struct conf_rate screen_connection_rate; /* per address, default 30/1m */
	int screen_duration; /* seconds, default 3600 */
	struct netlist screen_exempt; /* never screened (nor are smtp_trusted_networks) */
	char *user; /* NULL or "": run as started; else drop to this user when root */
	/* DomainPOP collector (collect/collect.h) */
	struct strlist collect_source; /* whole lines, checked (proto/collect_spec.h) */
	struct strlist collect_headers; /* field names tried in order */
	int collect_parse_to_cc; /* bool, default 1 */
	int collect_parse_received; /* bool, default 1 */
	char *collect_received_by; /* host name (lower case) or NULL: the topmost Received */
	char *collect_fallback; /* mailbox key or NULL */
	char *collect_dedupe; /* message-id|date|none */
	int collect_dedupe_days; /* days, default 7 */
	char *collect_copy_dir; /* path or NULL */
};

/* How bad a problem is: an error stops the load, a warning is only shown. */
enum conf_severity {
	CONF_SEVERITY_ERROR = 0, /* the zero value: a problem is an error unless marked */
	CONF_SEVERITY_WARNING,
};

/*
 * One problem found while loading: "file:line: message" is how an error is shown,
 * "file:line: warning: message" a warning.
 */
struct conf_error {
	char *file;
	int line; /* 0 when the problem is not tied to a line */
	enum conf_severity severity;
	char *message;
};

struct conf_errors {
	struct conf_error *v;
	size_t n;
};

/*
 * Loads and validates `path`. Returns a conf when there were no errors; otherwise
 * NULL. Every problem found (not just the first), errors and warnings, is appended
 * to *errs, which the caller frees with conf_errors_free(): a conf can come back
 * with warnings in *errs, so print them either way. Checks include unknown keys
 * (with a "did you mean" suggestion), bad values, out-of-range numbers, repeated
 * single keys, and what sharemaild would die on: the same address in two TCP
 * listen keys, a minger_secret_file that is missing, unreadable or holds a bad
 * secret (a warning when group or others may read it), a state_dir that exists
 * but is not a directory, listeners without local_domains, Minger listening with
 * neither a secret nor anonymous mode.
 */
struct conf *conf_load(const char *path, struct conf_errors *errs);

/*
 * conf_load_flags() flags. CONF_LOAD_SKIP_SECRETS: do not open minger_secret_file
 * (for the tool's commands, which never answer Minger queries and may run as a user
 * that cannot read it).
 */
#define CONF_LOAD_SKIP_SECRETS 0x1

/* conf_load() with flags (CONF_LOAD_*); conf_load(p, e) is conf_load_flags(p, 0, e). */
struct conf *conf_load_flags(const char *path, unsigned flags, struct conf_errors *errs);

/* Returns a conf holding every default (for tests and the demo). */
struct conf *conf_defaults(void);

/* Frees a conf (NULL is a no-op). */
void conf_free(struct conf *c);

/*
 * Prints each problem as "file:line: message\n" (or "file: message"), a warning as
 * "file:line: warning: message", to stderr.
 */
void conf_errors_print(const struct conf_errors *errs);

/* Frees the errors' contents and empties the list. */
void conf_errors_free(struct conf_errors *errs);

/*
 * Reads the secret file: one secret per line, blank lines and '#' lines ignored.
 * Each must satisfy minger_secret_valid(). Returns the number of secrets (>= 1)
 * stored in *out (caller frees with strlist_free), or -1 with errors appended.
 */
int conf_read_secrets(const char *path, struct strlist *out, struct conf_errors *errs);

/* 1 if `domain` (any case) is one of local_domains, else 0. */
int conf_is_local_domain(const struct conf *c, const char *domain, size_t len);

/* Frees a strlist's contents. */
void strlist_free(struct strlist *l);

/*
 * Where listener i of l (a field of c) was configured, for bind errors:
 * "FILE:LINE: KEY TEXT" into out (always NUL-terminated), FILE being c->path.
 * Returns 0, or -1 when l is not an address list of c or i is out of range
 * (out then holds what is known).
 */
int conf_addr_where(const struct conf *c, const struct addrlist *l, size_t i, char *out,
                    size_t outsz);

/*
 * What a reload changed (conf_reload_merge): the names of the keys, ", "
 * separated (cut with "..." if they do not fit).
 */
#define CONF_DIFF_MAX 2048
struct conf_diff {
	char reloaded[CONF_DIFF_MAX]; /* reloadable keys whose value changed: now in force */
	char restart[CONF_DIFF_MAX]; /* restart-only keys whose value changed: not applied */
	size_t n_reloaded, n_restart;
};

/*
 * Makes `next` (a freshly loaded file) the configuration to run with instead of
 * `cur` (the one in force): every key the schema does not mark reloadable keeps
 * cur's value (copied into next), so next differs from cur only in the keys that
 * take effect at run time. Fills *diff. cur is not changed. Returns 0, or -1 out
 * of memory (next is then a mix and must be freed, not used).
 */
int conf_reload_merge(struct conf *next, const struct conf *cur, struct conf_diff *diff);

/* Path of a file under state_dir: "<state_dir>/<name>" into out. Returns 0 or -1 if too long. */
int conf_state_path(const struct conf *c, const char *name, char *out, size_t outsz);

/*
 * The schema, for documentation and tests: conf_schema_count() entries, each with
 * name, type name ("string", "path", "bool", "int", "list", "addrlist", "netlist",
 * "lines", "rate"),
 * default as text ("" for none), range as text ("" when none), one-line doc and
 * whether the key reloads on SIGHUP.
 */
struct conf_key_doc {
	const char *name;
	const char *type;
	const char *def;
	const char *range;
	const char *doc;
	int reloads; /* 1: a changed value takes effect on SIGHUP; 0: needs a restart */
};
size_t conf_schema_count(void);
const struct conf_key_doc *conf_schema_doc(size_t i);

/*
 * Writes the schema as a plain text table (one key a line) to out. Returns 0, or
 * -1 on a write error. (conf_doc.c; `sharemail config-doc`.)
 */
int conf_doc_text(FILE *out);

/*
 * Writes the KEYS table of sharemail.conf(5) in roff (tbl) to out: exactly the
 * lines doc/sharemail.conf.5 holds between `.\" BEGIN SCHEMA TABLE` and
 * `.\" END SCHEMA TABLE`. Returns 0, or -1 on a write error.
 */
int conf_doc_man(FILE *out);

#endif
