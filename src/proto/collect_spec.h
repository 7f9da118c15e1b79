/*
 * collect_spec: one `collect_source` line of the configuration (DomainPOP: an
 * ISP mailbox collected by sharemaild), parsed. Pure (no I/O, no allocation,
 * no DNS): conf validates the lines with it (file:line errors at load), the
 * collector and `sharemail collect` use what it returns.
 *
 * Syntax (words separated by blanks; options in any order, each at most once):
 *   collect_source = pop3://USER@HOST[:PORT] password_file=F
 *                    [tls=starttls|implicit|none] [interval=5m] [leave_days=0]
 *                    [max_size=10m]
 *   pop3s://USER@HOST[:PORT] is implicit TLS (RFC 8314): tls= may then only say
 *   implicit. pop3:// defaults to tls=starttls (RFC 2595 STLS, required: a
 *   server that does not offer it fails the cycle); tls=none sends the password
 *   in the clear and is for loopback and tests. PORT defaults to 995 with
 *   implicit TLS, else 110. USER may contain '@' (ISP logins are often whole
 *   addresses): the last '@' of the authority separates it from HOST. USER is
 *   printable ASCII; no %-decoding is done (RFC 3986 escapes are not needed
 *   for any printable user name, and are taken literally). HOST is a name, an
 *   IPv4 address or an IPv6 address in brackets.
 *   interval: seconds, suffix s, m, h or d (1s-7d, default 5m); leave_days:
 *   0 deletes a message from the ISP once it is safely queued, N keeps it N
 *   days after it was first seen (0-3650); max_size: octets, suffix k, m or g
 *   (1k-2g, default 10m), larger messages are left on the ISP and reported.
 *
 * Ownership: the caller owns every structure; strings are copied in, bounded.
 */
#ifndef SHAREMAIL_PROTO_COLLECT_SPEC_H
#define SHAREMAIL_PROTO_COLLECT_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "proto/nexthop_spec.h"

#define COLLECT_SPEC_USER_MAX 255 /* octets of a login name */
#define COLLECT_SPEC_PATH_MAX 1024
/* "pop3s://" USER "@" "[" HOST "]:65535" with its NUL. */
#define COLLECT_SPEC_NAME_MAX (8 + COLLECT_SPEC_USER_MAX + 1 + NEXTHOP_NAME_MAX + 20)
#define COLLECT_SPEC_PORT_POP3 110
#define COLLECT_SPEC_PORT_POP3S 995
#define COLLECT_SPEC_INTERVAL_DEFAULT 300
#define COLLECT_SPEC_MAX_SIZE_DEFAULT (10L * 1024 * 1024)

enum collect_spec_tls {
	COLLECT_SPEC_TLS_STARTTLS = 0, /* STLS after the greeting, required */
	COLLECT_SPEC_TLS_IMPLICIT, /* TLS from the first octet (pop3s, 995) */
	COLLECT_SPEC_TLS_NONE, /* cleartext */
};

struct collect_spec {
	char user[COLLECT_SPEC_USER_MAX + 1]; /* as written (case kept) */
	char host[NEXTHOP_NAME_MAX + 1]; /* lower case; an IPv6 address without brackets */
	unsigned port;
	enum collect_spec_tls tls;
	char password_file
	        [COLLECT_SPEC_PATH_MAX]; /* as written (relative: to the config's folder) */
	int interval; /* seconds */
	int leave_days;
	int64_t max_size; /* octets */
	/*
	 * The source's name: "pop3://USER@HOST:PORT" (pop3s:// for implicit TLS,
	 * IPv6 hosts in brackets, the port always written). The key of its state
	 * (collected UIDLs) and the SOURCE of `sharemail collect now`: two lines
	 * naming the same mailbox get the same name, which conf refuses.
	 */
	char name[COLLECT_SPEC_NAME_MAX];
};

/*
 * Parses a collect_source line. Returns 0, or -1 with a one-line reason in err
 * (naming the bad word; never quoting the rest of the line).
 */
int collect_spec_parse(const char *line, struct collect_spec *out, char *err, size_t errlen);

/*
 * 1 if word names the source s: its whole name, the name without the port,
 * "USER@HOST", or HOST alone (any case for HOST), else 0. For `collect now SOURCE`.
 */
int collect_spec_matches(const struct collect_spec *s, const char *word);

#endif
