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
		{#name, tname, def, range, doc}, type, offsetof(struct conf, name), lo, hi, flags  \
	}
#define STRING(name, def, range, flags, doc)                                                       \
	KEY(name, CONF_TYPE_STRING, "string", def, range, 0, 0, flags, doc)
#define PATH(name, def, doc) KEY(name, CONF_TYPE_PATH, "path", def, "", 0, 0, 0, doc)
#define BOOL(name, def, doc) KEY(name, CONF_TYPE_BOOL, "bool", def, "yes|no", 0, 1, 0, doc)
#define INT(name, def, lo, hi, flags, doc)                                                         \
	KEY(name, CONF_TYPE_INT, "int", def, #lo "-" #hi, lo, hi, flags, doc)
#define LIST(name, flags, doc) KEY(name, CONF_TYPE_LIST, "list", "", "", 0, 0, flags, doc)
#define ADDRLIST(name, doc) KEY(name, CONF_TYPE_ADDRLIST, "addrlist", "", "", 0, 0, 0, doc)
#define NETLIST(name, doc) KEY(name, CONF_TYPE_NETLIST, "netlist", "", "", 0, 0, 0, doc)

const struct conf_key conf_keys[] = {
        /* general */
        STRING(hostname, "", "", CONF_FLAG_DOMAIN,
               "Name of this server in greetings and logs; default: the system host name."),
        PATH(state_dir, "/var/lib/sharemail",
             "Folder for the directory database, queue and caches; created at start-up."),
        LIST(local_domains, CONF_FLAG_DOMAIN,
             "Domains whose mailboxes live here: space-separated, repeatable, any case."),
        STRING(log_level, "info", "err|warning|info|debug", CONF_FLAG_LOGLEVEL,
               "Most verbose level logged."),
        /* listeners */
        ADDRLIST(smtp_listen, "SMTP listeners, HOST:PORT (not built yet: accepted and ignored)."),
        ADDRLIST(submission_listen,
                 "Submission listeners, HOST:PORT (not built yet: accepted and ignored)."),
        ADDRLIST(smtps_listen, "SMTPS listeners, HOST:PORT (not built yet: accepted and ignored)."),
        ADDRLIST(pop3_listen, "POP3 listeners, HOST:PORT (not built yet: accepted and ignored)."),
        ADDRLIST(minger_listen,
                 "Minger UDP listeners, HOST:PORT (IPv6 as [::1]:4069); none: no Minger server."),
        /* Minger server */
        PATH(minger_secret_file, "",
             "Shared secrets, one per line, 16-50 printable ASCII characters each."),
        BOOL(minger_anonymous, "no", "Answer queries that carry no digest."),
        BOOL(minger_compat, "yes", "Also accept the -02 bare and -03/-04 D= digest forms."),
        NETLIST(minger_allow,
                "Networks allowed to query, ADDR/PREFIX, repeatable; empty: everyone."),
        BOOL(minger_foreign_aliases_active, "no",
             "An alias that points to an outside address answers active (5)."),
        INT(minger_threads, "1", 1, 64, 0, "Worker threads (and sockets) per Minger listener."),
        INT(minger_rate_per_source, "50", 0, 1000000, 0,
            "Replies per second to one source address; 0: no limit."),
        INT(minger_rate_global, "20000", 0, 10000000, 0, "Replies per second in all; 0: no limit."),
        INT(minger_source_table_size, "16384", 64, 1048576, 0,
            "Source addresses each worker tracks for the per-source limit."),
        INT(minger_replay_window, "60", 5, 3600, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) an extension ts may be off; nonces kept as long."),
        BOOL(minger_strict_amplification, "yes",
             "Never send a reply longer than the query that asked for it."),
        /* Minger client and verification cache */
        INT(minger_timeout_ms, "2000", 100, 60000, 0,
            "Milliseconds to wait for a Minger reply before sending again."),
        INT(minger_retries, "2", 0, 10, 0, "Retransmissions of an unanswered Minger query."),
        BOOL(minger_require_reply_mac, "no",
             "Ignore replies without a valid extension mac (needs minger_secret_file)."),
        BOOL(minger_cache, "yes", "Cache Minger verification results."),
        INT(minger_cache_positive_ttl, "5d", 1, 2592000, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) an address found to exist stays cached."),
        INT(minger_cache_negative_ttl, "1h", 1, 2592000, CONF_FLAG_SECONDS,
            "Seconds (suffix s, m, h, d) an address found missing stays cached."),
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
	return t == CONF_TYPE_LIST || t == CONF_TYPE_ADDRLIST || t == CONF_TYPE_NETLIST;
}

size_t conf_schema_count(void)
{
	return conf_nkeys;
}

const struct conf_key_doc *conf_schema_doc(size_t i)
{
	return i < conf_nkeys ? &conf_keys[i].doc : NULL;
}
