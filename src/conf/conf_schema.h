/*
 * conf_schema: the ONE table of configuration keys (conf_schema.c), private to
 * src/conf/. Each entry names a field of struct conf (the key and the field have
 * the same name, so they cannot drift apart), its type, default text, range and
 * doc line. conf.c parses with it; conf_doc.c documents it.
 *
 * Ownership: the table is static and read-only.
 */
#ifndef SHAREMAIL_CONF_CONF_SCHEMA_H
#define SHAREMAIL_CONF_CONF_SCHEMA_H

#include <stddef.h>

#include "conf/conf.h"

enum conf_type {
	CONF_TYPE_STRING, /* char * */
	CONF_TYPE_PATH, /* char *, resolved against the config file's folder */
	CONF_TYPE_BOOL, /* int 0/1 */
	CONF_TYPE_INT, /* int in [min, max] */
	CONF_TYPE_LIST, /* struct strlist, repeatable */
	CONF_TYPE_ADDRLIST, /* struct addrlist, repeatable */
	CONF_TYPE_NETLIST, /* struct netlist, repeatable */
	CONF_TYPE_LINES, /* struct strlist, repeatable: each line one entry, kept whole */
	CONF_TYPE_RATE, /* struct conf_rate: "COUNT/DURATION", COUNT in [min, max] */
};

/* Extra checks and units. */
#define CONF_FLAG_SECONDS 0x1 /* int in seconds: the suffixes s, m, h, d are accepted */
#define CONF_FLAG_DOMAIN 0x2 /* string or list of domain names, lower-cased */
#define CONF_FLAG_CHOICE 0x4 /* string: one of the words of doc.range, separated by '|' */
#define CONF_FLAG_BYTES 0x8 /* int in octets: the suffixes k, m, g (powers of 1024) are accepted */
/*
 * A changed value takes effect on SIGHUP (new SMTP sessions, the log). Set it only
 * on keys read where a reload reaches: the log, smtpd_server at accept and the
 * SMTP session. Keys the Minger workers, the delivery runner, the index or the
 * listeners read stay as they were until a restart (conf_reload_merge).
 */
#define CONF_FLAG_RELOAD 0x10
#define CONF_FLAG_ROUTE 0x20 /* lines: "DOMAIN HOST[:PORT]..." (proto/nexthop_spec.h) */
#define CONF_FLAG_HOSTS 0x40 /* string: "HOST[:PORT]..." (proto/nexthop_spec.h) */
#define CONF_FLAG_NAMESERVER 0x80 /* list: IPv4 or [IPv6] addresses, :PORT optional (53) */
/* Lines checked with proto/peer_spec.h: domain_sharing_host, gateway_domain, forward_domain. */
#define CONF_FLAG_PEER 0x100
#define CONF_FLAG_GATEWAY 0x200
#define CONF_FLAG_FORWARD 0x400
#define CONF_FLAG_MAILBOX 0x800 /* list or string: RFC 5321 mailboxes, stored as lower-case keys */
#define CONF_FLAG_COLLECT 0x1000 /* lines: collect_source (proto/collect_spec.h) */
#define CONF_FLAG_FIELDNAME 0x2000 /* list: header field names (RFC 5322 3.6.8) */

struct conf_key {
	struct conf_key_doc doc;
	enum conf_type type;
	size_t offset; /* of the field in struct conf */
	long long min, max;
	unsigned flags;
};

extern const struct conf_key conf_keys[];
extern const size_t conf_nkeys;

/* The key called name[0..len), or NULL. */
const struct conf_key *conf_key_find(const char *name, size_t len);

/* 1 for the types that may appear on several lines (they accumulate). */
int conf_type_repeatable(enum conf_type t);

#endif
