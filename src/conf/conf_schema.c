/*
 * conf_schema: the ONE table of configuration keys. Adding a key = adding a field
 * to struct conf, one line here, and a line in etc/sharemail.conf; then rerun
 * `sharemail config-doc --man` into doc/sharemail.conf.5 (test_conf checks both).
 */
#include "conf/conf_schema.h"

#include <string.h>

/*
 * The key's name is the field's name, so a key can never fill the wrong field.
 * Ranges are written once, as numbers, and stringified for the documentation.
 */
#define KEY(name, type, tname, def, range, lo, hi, flags, doc)                                     \
	{                                                                                          \
		{#name, tname, def, range, doc, ((flags)&CONF_FLAG_RELOAD) != 0}, type,            \
		        offsetof(struct conf, name), lo, hi, flags                                 \
	}
#define STRING(name, def, range, flags, doc)                                                       \
	KEY(name, CONF_TYPE_STRING, "string", def, range, 0, 0, flags, doc)
#define PATH(name, def, flags, doc) KEY(name, CONF_TYPE_PATH, "path", def, "", 0, 0, flags, doc)
#define BOOL(name, def, flags, doc)                                                                \
	KEY(name, CONF_TYPE_BOOL, "bool", def, "yes|no", 0, 1, flags, doc)
#define INT(name, def, lo, hi, flags, doc)                                                         \
	KEY(name, CONF_TYPE_INT, "int", def, #lo "-" #hi, lo, hi, flags, doc)
#define LIST(name, flags, doc) KEY(name, CONF_TYPE_LIST, "list", "", "", 0, 0, flags, doc)
/* A list with a default: the file's lines for the key replace it whole. */
#define LISTD(name, def, flags, doc) KEY(name, CONF_TYPE_LIST, "list", def, "", 0, 0, flags, doc)
#define ADDRLIST(name, doc) KEY(name, CONF_TYPE_ADDRLIST, "addrlist", "", "", 0, 0, 0, doc)
#define NETLIST(name, flags, doc) KEY(name, CONF_TYPE_NETLIST, "netlist", "", "", 0, 0, flags, doc)
#define LINES(name, flags, doc) KEY(name, CONF_TYPE_LINES, "lines", "", "", 0, 0, flags, doc)
/* "COUNT/DURATION": COUNT in lo..hi (0: off), DURATION 1 s to 7 days (CONF_RATE_SECONDS_MAX). */
#define RATE(name, def, lo, hi, flags, doc)                                                        \
	KEY(name, CONF_TYPE_RATE, "rate", def, #lo "-" #hi "/1s-7d", lo, hi, flags, doc)
/* The table's shorthand for CONF_FLAG_RELOAD (see conf_schema.h). */
#define RELOAD CONF_FLAG_RELOAD

const struct conf_key conf_keys[] = {
        /* general */
        STRING(hostname, "", "", CONF_FLAG_DOMAIN,
               "Name of this server in greetings and logs; default: the system host name."),
        PATH(state_dir, "/var/lib/sharemail", 0,
             "Folder for the directory database, queue and caches; created at start-up."),
        LIST(local_domains, CONF_FLAG_DOMAIN,
             "Domains whose mailboxes live here: space-separated, repeatable, any case."),
        STRING(log_level, "info", "err|warning|info|debug", CONF_FLAG_CHOICE | RELOAD,
               "Most verbose level logged."),
        STRING(log_syslog, "no", "no|yes|only", CONF_FLAG_CHOICE | RELOAD,
               "Log to syslog (facility mail): yes = syslog and stderr or log_file; only = syslog "
               "alone."),
        PATH(log_file, "", RELOAD,
             "Append log lines to this file, not stderr (reopened on SIGHUP); empty: stderr."),
        /* listeners */
        ADDRLIST(smtp_listen, "SMTP listeners, HOST:PORT (port 25)."),
        ADDRLIST(submission_listen,
                 "Submission listeners, HOST:PORT (port 587; like smtp_listen until AUTH)."),
        ADDRLIST(smtps_listen,
                 "SMTPS listeners, HOST:PORT (port 465: submission over implicit TLS, RFC 8314)."),
        ADDRLIST(pop3_listen, "POP3 listeners, HOST:PORT (port 110; STLS with tls_cert_file)."),
        ADDRLIST(pop3s_listen,
                 "POP3S listeners, HOST:PORT (port 995: POP3 over implicit TLS, RFC 8314)."),
        ADDRLIST(minger_listen,
                 "Minger UDP listeners, HOST:PORT (IPv6 as [::1]:4069); none: no Minger server."),
        /* Minger server */
        PATH(minger_secret_file, "", 0,
             "Shared secrets, one per line, 16-50 printable ASCII characters each."),
        BOOL(minger_anonymous, "no", 0, "Answer queries that carry no digest."),
        BOOL(minger_compat, "yes", 0, "Also accept the -02 bare and -03/-04 D= digest forms."),
        NETLIST(minger_allow, 0,
                "Networks allowed to query, ADDR/PREFIX, repeatable; empty: everyone."),
        BOOL(minger_foreign_aliases_active, "no", 0,
             "An alias that points to an outside address answers active (5)."),
        INT(minger_threads, "1", 1, 64, 0, "Worker threads (and sockets) per Minger listener."),
        INT(minger_rate_per_source, "50", 0, 1000000, 0,
            "Replies per second to one source address; 0: no limit."),
        INT(minger_rate_global, "20000", 0, 10000000, 0, "Replies per second in all; 0: no limit."),
        INT(minger_source_table_size, "16384", 64, 1048576, 0,
            "Source addresses each worker tracks for the per-source limit."),
        INT(minger_replay_window, "60", 5, 3600, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) an extension ts may be off; nonces kept as long."),
        BOOL(minger_strict_amplification, "no", 0,
             "no: a reply is at most 2 octets longer than its query, the draft's own form; "
             "rate limits bound the rest. yes (hardening): never longer than its query."),
        NETLIST(minger_gateway_clients, 0,
                "Gateways querying us, ADDR/PREFIX, repeatable: foreign aliases always answer 5."),
        /* Minger client and verification cache */
        INT(minger_timeout_ms, "2000", 100, 60000, 0,
            "Milliseconds to wait for a Minger reply before sending again."),
        INT(minger_retries, "2", 0, 10, 0, "Retransmissions of an unanswered Minger query."),
        BOOL(minger_require_reply_mac, "no", 0,
             "Ignore replies without a valid extension mac (needs minger_secret_file)."),
        BOOL(minger_cache, "yes", 0, "Cache Minger verification results."),
        INT(minger_cache_positive_ttl, "5d", 1, 2592000, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) an address found to exist stays cached."),
        INT(minger_cache_negative_ttl, "1h", 1, 2592000, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) an address found missing stays cached."),
        /* Domain Sharing (one domain split across several servers) */
        BOOL(domain_sharing, "no", 0,
             "Ask the domain_sharing_host peers about local-domain recipients not found here."),
        LINES(domain_sharing_host, CONF_FLAG_PEER,
              "HOST[:SMTPPORT] [minger_port=N] [secret_file=F]: one peer, repeatable."),
        PATH(domain_sharing_domains_file, "", 0,
             "Domains that use Domain Sharing, one per line; empty or absent: all local domains."),
        INT(domain_sharing_cache_ttl, "5d", 1, 2592000, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) an address found on a peer stays cached."),
        BOOL(domain_sharing_keep_on_error, "yes", 0,
             "Keep mail for a peer queued when it cannot be reached (never to relay_smarthost)."),
        BOOL(domain_sharing_query_senders, "yes", 0,
             "A MAIL FROM in a shared domain found on a peer is a known sender."),
        BOOL(domain_sharing_share_lists, "no", 0,
             "Copy list posts to every peer that has the same list (asked by Minger)."),
        /* gateway and forwarded domains */
        LINES(gateway_domain, CONF_FLAG_GATEWAY,
              "DOMAIN host=H[:P] minger=H[:P] [secret_file=F] [unreachable=defer|accept] "
              "[domain_sharing=yes|no]: verified relay domain."),
        LINES(forward_domain, CONF_FLAG_FORWARD,
              "DOMAIN host=H[:P] minger=H[:P] [secret_file=F]: *@DOMAIN forwarded if Minger "
              "there finds it."),
        /* SMTP server */
        NETLIST(smtp_trusted_networks, RELOAD,
                "Clients that may relay to any domain, ADDR/PREFIX, repeatable; empty: none."),
        INT(smtp_max_message_size, "25m", 1024, 2147483647, CONF_FLAG_BYTES | RELOAD,
            "Largest message accepted, in octets (suffix k, m, g); SIZE is advertised."),
        INT(smtp_drop_connection_size, "0", 0, 2147483647, CONF_FLAG_BYTES | RELOAD,
            "Drop the connection when DATA exceeds this many octets; 0: off (see WARNINGS)."),
        INT(smtp_max_recipients, "100", 1, 100000, RELOAD, "Recipients per message; more get 452."),
        LIST(smtp_refuse_helo, RELOAD,
             "Refuse clients whose HELO/EHLO contains one of these substrings (any case)."),
        BOOL(smtp_dsn, "yes", RELOAD, "Offer DSN (RFC 3461); no: not in EHLO, parameters refused."),
        BOOL(smtp_refuse_percent, "no", RELOAD, "Refuse addresses with '%' in them (553)."),
        BOOL(smtp_refuse_bang, "no", RELOAD, "Refuse addresses with '!' in them (553)."),
        BOOL(smtp_add_date_header, "yes", 0,
             "Add a Date: header to messages from trusted clients that lack one."),
        BOOL(smtp_original_recipient_header, "no", 0,
             "Add X-Sharemail-Original-Rcpt: headers (envelope recipients) on local delivery."),
        PATH(smtp_rejected_recipients_log, "", RELOAD,
             "Log refused unknown local recipients to this file; empty: off."),
        BOOL(smtp_vrfy, "no", RELOAD, "Answer VRFY from the directory; no: always 252."),
        INT(smtp_max_errors, "20", 1, 1000, RELOAD, "Errors in one session before 421 and close."),
        INT(smtp_command_timeout, "5m", 1, 3600, CONF_FLAG_SECONDS | RELOAD,
            "Seconds (suffix s, m, h, d) to wait for a command line."),
        INT(smtp_data_timeout, "10m", 1, 7200, CONF_FLAG_SECONDS | RELOAD,
            "Seconds (suffix s, m, h, d) to wait for each block of DATA."),
        INT(smtp_max_connections, "1000", 1, 100000, RELOAD, "Concurrent SMTP connections in all."),
        INT(smtp_max_connections_per_ip, "20", 1, 100000, RELOAD,
            "Concurrent SMTP connections from one client address."),
        INT(smtp_greet_pause_ms, "0", 0, 30000, RELOAD,
            "Milliseconds to wait before the greeting; a client that talks first is refused."),
        STRING(smtp_over_quota_reply, "452", "452|552", CONF_FLAG_CHOICE | RELOAD,
               "Reply to RCPT for an over-quota mailbox: 452 4.2.2 (try later) or 552 5.2.2."),
        INT(smtp_max_line_length, "998", 998, 1000000, RELOAD,
            "Longest text line, in octets without CRLF or the stuffing dot; longer: refused."),
        INT(smtp_max_received_headers, "50", 1, 1000, 0,
            "Messages with more Received: headers are refused as a mail loop."),
        /* POP3 server (pop3d/pop3_session.h; RFC 1939, 2449, 2595, 5034) */
        INT(pop3_command_timeout, "10m", 600, 86400, CONF_FLAG_SECONDS | RELOAD,
            "Seconds (suffix s, m, h, d) a POP3 client may be idle (RFC 1939 3: at least 10m)."),
        INT(pop3_max_connections, "1000", 1, 100000, RELOAD, "Concurrent POP3 connections in all."),
        INT(pop3_max_connections_per_ip, "20", 1, 100000, RELOAD,
            "Concurrent POP3 connections from one client address."),
        INT(pop3_max_errors, "20", 1, 1000, RELOAD,
            "Failed POP3 commands in one session before -ERR and close."),
        STRING(pop3_greeting, "", "", RELOAD,
               "Text of the POP3 greeting after \"+OK \"; empty: \"HOSTNAME POP3 server ready\"."),
        /* TLS (util/tls_ctx.h): TLS 1.2 and 1.3, OpenSSL's default ciphers */
        PATH(tls_cert_file, "", RELOAD,
             "PEM certificate, then its chain; set: STARTTLS on 25/587, smtps_listen works."),
        PATH(tls_key_file, "", RELOAD,
             "PEM private key of tls_cert_file (both re-read on SIGHUP); empty: in the cert file."),
        /* SMTP AUTH (RFC 4954) and the sender authentication rules (smtpd/auth_rules.h) */
        BOOL(auth_allow_plaintext, "no", RELOAD,
             "Offer AUTH without TLS too (for tests on loopback); no: only after STARTTLS or on "
             "465."),
        INT(auth_cache_ttl, "1h", 0, 86400, CONF_FLAG_SECONDS,
            "Seconds a successful AUTH is remembered (no new hash for the same password); 0: off."),
        BOOL(smtp_auth_on_smtp_port, "yes", RELOAD,
             "Offer AUTH on smtp_listen (25); no: not in EHLO there, and an unknown command."),
        BOOL(smtp_auth_on_smtp_port_screen, "no", RELOAD,
             "With smtp_auth_on_smtp_port = no: AUTH tried on 25 screens the client and closes."),
        BOOL(smtp_received_auth, "no", RELOAD,
             "Name the authenticated identity in the Received header (ESMTPSA is always there)."),
        BOOL(auth_required_for_local_senders, "yes", RELOAD,
             "MAIL FROM in a local domain needs AUTH (530 5.7.0); smtp_trusted_networks exempt."),
        BOOL(auth_local_senders_unless_local_rcpt, "no", RELOAD,
             "...except for local recipients: the rule is applied at RCPT, to outside ones only."),
        BOOL(auth_local_senders_unless_domain_sharing, "yes", RELOAD,
             "...except senders Domain Sharing finds on a peer server."),
        BOOL(auth_required_from_local_networks, "yes", RELOAD,
             "Mail from local_networks needs AUTH (530 5.7.0); smtp_trusted_networks exempt."),
        NETLIST(local_networks, RELOAD,
                "Local client networks, ADDR/PREFIX, repeatable; empty: the rule above never "
                "applies."),
        BOOL(auth_required_for_role_senders, "yes", RELOAD,
             "MAIL FROM postmaster@, abuse@ or webmaster@ a local domain needs AUTH (530 5.7.0)."),
        BOOL(auth_match_return_path, "yes", RELOAD,
             "An authenticated MAIL FROM must be the account or one of its aliases (550 5.7.1)."),
        BOOL(auth_match_from_header, "yes", RELOAD,
             "...and so must every From: header address (550 5.7.1 after the final dot)."),
        LIST(auth_match_exempt, CONF_FLAG_MAILBOX | RELOAD,
             "Addresses exempt from the two match rules, as MAIL FROM or as From:; repeatable."),
        BOOL(auth_match_exempt_gateway, "yes", RELOAD,
             "Mail for gateway_domain recipients is exempt from the two match rules."),
        /* POP before SMTP (MDaemon's; directory/pop_login.h, smtpd/auth_rules.h) */
        BOOL(pop_before_smtp, "no", RELOAD,
             "MAIL FROM a local account needs its POP3 login within the window (530 5.7.0)."),
        INT(pop_before_smtp_window, "10m", 1, 86400, CONF_FLAG_SECONDS | RELOAD,
            "Seconds (suffix s, m, h, d) a POP3 login lets its account send without AUTH."),
        BOOL(auth_exempt_pop_before_smtp, "yes", RELOAD,
             "AUTH-authenticated sessions skip pop_before_smtp (smtp_trusted_networks always do)."),
        /* queue and local delivery */
        INT(queue_min_free, "100m", 0, 2147483647, CONF_FLAG_BYTES | RELOAD,
            "Free disk space (octets, suffix k, m, g) kept; below it MAIL gets 452."),
        INT(queue_lifetime, "5d", 60, 31536000, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) a message may wait; then it fails (4.4.7) and bounces."),
        INT(queue_retry_initial, "5m", 1, 86400, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) before the first retry; doubled for each further one."),
        INT(queue_retry_max, "1h", 1, 604800, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d): the longest wait between two delivery attempts."),
        INT(queue_delay_warning, "4h", 0, 31536000, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) queued before a delay notice (DSN); 0: none."),
        INT(queue_bounce_max_return, "50k", 0, 2147483647, CONF_FLAG_BYTES,
            "Largest message (octets, suffix k, m, g) a bounce returns whole; larger: headers."),
        INT(queue_delivery_concurrency, "100", 1, 100000, 0,
            "Deliveries (local and remote) under way at once, in all."),
        INT(relay_destination_concurrency, "10", 1, 1000, 0,
            "Connections under way at once to one relay destination (a domain or host)."),
        /* relay: where mail for other domains goes, and how */
        LINES(relay_route, CONF_FLAG_ROUTE,
              "DOMAIN HOST[:PORT]...: mail for DOMAIN (.DOMAIN: its subdomains) goes there."),
        STRING(relay_smarthost, "", "", CONF_FLAG_HOSTS,
               "HOST[:PORT]...: every other outside domain goes there; empty: MX lookup."),
        STRING(relay_tls, "may", "may|off|require", CONF_FLAG_CHOICE,
               "STARTTLS to relay peers: when offered (may), never, or required."),
        INT(relay_connect_timeout, "30", 1, 3600, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) to wait for a relay peer's TCP connection."),
        INT(relay_command_timeout, "5m", 1, 3600, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) to wait for a relay peer's reply (RFC 5321 4.5.3.2)."),
        INT(relay_data_timeout, "10m", 1, 7200, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) to wait for the reply after the message's final dot."),
        LIST(dns_nameserver, CONF_FLAG_NAMESERVER,
             "DNS servers for MX lookups, ADDR or ADDR:PORT, repeatable; none: /etc/resolv.conf."),
        INT(dns_timeout, "5", 1, 60, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) to wait for one DNS answer before asking again."),
        INT(dns_attempts, "2", 1, 10, 0, "Times a DNS question is asked before it fails (retry)."),
        /* Dynamic Screen (screen/screen.h): client addresses refused with 421 at connect */
        RATE(screen_auth_failures, "5/10m", 0, 1000, RELOAD,
             "COUNT/DURATION: the COUNT-th failed AUTH from one address inside DURATION "
             "screens it; 0/...: off."),
        RATE(screen_unknown_recipients, "20/10m", 0, 1000, RELOAD,
             "COUNT/DURATION: the COUNT-th unknown local recipient from one address screens "
             "it (harvesting)."),
        RATE(screen_connection_rate, "30/1m", 0, 1000, RELOAD,
             "COUNT/DURATION: the COUNT-th connection from one address inside DURATION screens "
             "it."),
        INT(screen_duration, "1h", 60, 31536000, CONF_FLAG_SECONDS | RELOAD,
            "Seconds (suffix s, m, h, d) an address stays screened."),
        NETLIST(screen_exempt, RELOAD,
                "Never screened, ADDR/PREFIX, repeatable (smtp_trusted_networks never are "
                "either)."),
        /* DomainPOP: whole-domain ISP mailboxes collected over POP3 (collect/collect.h) */
        LINES(collect_source, CONF_FLAG_COLLECT | RELOAD,
              "pop3[s]://USER@HOST[:PORT] password_file=F [tls=starttls|implicit|none] "
              "[interval=5m] [leave_days=0] [max_size=10m]: one ISP mailbox, repeatable; F holds "
              "the password (first line), re-read each cycle."),
        LISTD(collect_headers,
              "X-Rcpt-To X-MDRcpt-To X-Original-To Delivered-To Envelope-To "
              "X-Envelope-To",
              CONF_FLAG_FIELDNAME | RELOAD,
              "Header fields naming a collected message's recipients, tried in order; the first "
              "naming a local one decides."),
        BOOL(collect_parse_to_cc, "yes", RELOAD,
             "No listed field or Received decided: one copy to every local To:/Cc: address."),
        BOOL(collect_parse_received, "yes", RELOAD,
             "Route by the 'for <addr>' of the ISP's own Received field (after collect_headers)."),
        STRING(collect_received_by, "", "", CONF_FLAG_DOMAIN | RELOAD,
               "The ISP's Received field is the topmost whose 'by' is this host; empty: the "
               "topmost."),
        STRING(collect_fallback, "", "", CONF_FLAG_MAILBOX | RELOAD,
               "Gets collected messages with no local recipient; empty: they stay on the ISP "
               "(logged)."),
        STRING(collect_dedupe, "message-id", "message-id|date|none", CONF_FLAG_CHOICE | RELOAD,
               "One copy per mailbox of a message the ISP holds several of, by Message-ID, or "
               "by Date+From+Subject (two sent in one second: one is lost)."),
        INT(collect_dedupe_days, "7", 1, 3650, RELOAD,
            "Days a collected message's dedupe key is remembered per recipient."),
        PATH(collect_copy_dir, "", RELOAD,
             "Diagnostic: a copy of every collected message, as collected, goes to this "
             "folder."),
        /* privileges (util/privdrop.h) */
        STRING(user, "", "", 0,
               "Started as root, sharemaild binds its ports, then runs as this user and its "
               "groups; empty: as started."),
};

const size_t conf_nkeys = sizeof conf_keys / sizeof conf_keys[0];

const struct conf_key *conf_key_find(const char *name, size_t len)
{
	for (size_t i = 0; i < conf_nkeys; i++)
		if (strlen(conf_keys[i].doc.name) == len &&
		    memcmp(conf_keys[i].doc.name, name, len) == 0)
			return &conf_keys[i];
	return NULL;
}

int conf_type_repeatable(enum conf_type t)
{
	return t == CONF_TYPE_LIST || t == CONF_TYPE_ADDRLIST || t == CONF_TYPE_NETLIST ||
	       t == CONF_TYPE_LINES;
}

size_t conf_schema_count(void)
{
	return conf_nkeys;
}

const struct conf_key_doc *conf_schema_doc(size_t i)
{
	return i < conf_nkeys ? &conf_keys[i].doc : NULL;
}
