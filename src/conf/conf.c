/*
 * conf: see conf.h. The loader reads the file line by line, finds each key in the
 * schema (conf_schema.c) and hands the value to the setter for the key's type.
 * Every problem is recorded and loading goes on, so one run of check-config shows
 * them all. Messages never echo a secret and never pass control bytes through.
 */
#include "conf/conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <netinet/in.h>
#include <openssl/ssl.h>

#include "conf/conf_schema.h"
#include "proto/mailaddr.h"
#include "proto/nexthop_spec.h"
#include "proto/collect_spec.h"
#include "proto/peer_spec.h"
#include "proto/minger_msg.h"
#include "util/log.h"
#include "util/tls_ctx.h"

#define CONF_LINE_MAX 4096 /* octets in one line, newline excluded */
#define CONF_ERRORS_MAX 1000 /* problems kept; past that one line says so */
#define CONF_QUOTE_MAX 64 /* octets of a value quoted in a message */
#define CONF_PATH_MAX 4096
#define CONF_DOMAIN_MAX 253 /* RFC 1035 2.3.4, without the final dot */
#define CONF_LABEL_MAX 63

#define SPACE " \t\r\v\f"
#define STR2(x) #x
#define STR(x) STR2(x)

/* Where one listen address was written, for the cross-key bind check. */
struct listen_seen {
	const struct conf_key *key;
	size_t index; /* in the key's addrlist */
	int line;
};

struct loader {
	struct conf *c;
	struct conf_errors *errs;
	const char *file; /* as given, for messages */
	char *dir; /* the config file's folder, absolute */
	unsigned flags; /* CONF_LOAD_* */
	int line;
	int *seen; /* per key: line of its first appearance, 0 if none */
	size_t nerr; /* errors found (even if one could not be stored); not warnings */
	struct listen_seen *listens; /* every listen address, in file order */
	size_t nlistens;
};

/* ---- errors ---- */

/* Replaces every octet outside printable ASCII so a message cannot drive a terminal. */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

static void errs_vadd(struct conf_errors *e, enum conf_severity sev, const char *file, int line,
                      const char *fmt, va_list ap)
{
	char msg[512];
	if (e->n > CONF_ERRORS_MAX)
		return;
	if (e->n == CONF_ERRORS_MAX)
		snprintf(msg, sizeof msg, "too many problems; the rest are not shown");
	else
		vsnprintf(msg, sizeof msg, fmt, ap);
	struct conf_error *v = realloc(e->v, (e->n + 1) * sizeof *v);
	if (!v)
		return;
	e->v = v;
	v[e->n].file = strdup(file ? file : "");
	v[e->n].message = strdup(msg);
	v[e->n].line = line;
	v[e->n].severity = sev;
	if (!v[e->n].file || !v[e->n].message) {
		free(v[e->n].file);
		free(v[e->n].message);
		return;
	}
	sanitize(v[e->n].file);
	sanitize(v[e->n].message);
	e->n++;
}

static void errs_add(struct conf_errors *e, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void errs_add(struct conf_errors *e, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	errs_vadd(e, CONF_SEVERITY_ERROR, file, line, fmt, ap);
	va_end(ap);
}

static void ld_error(struct loader *ld, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void ld_error(struct loader *ld, int line, const char *fmt, ...)
{
	va_list ap;
	ld->nerr++;
	va_start(ap, fmt);
	errs_vadd(ld->errs, CONF_SEVERITY_ERROR, ld->file, line, fmt, ap);
	va_end(ap);
}

/* A warning: shown like an error, but the configuration still loads. */
static void ld_warning(struct loader *ld, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void ld_warning(struct loader *ld, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	errs_vadd(ld->errs, CONF_SEVERITY_WARNING, ld->file, line, fmt, ap);
	va_end(ap);
}

/* A value as shown in a message: at most CONF_QUOTE_MAX octets, then "...". */
static const char *quote(char *buf, size_t bufsz, const char *s)
{
	size_t n = strlen(s);
	if (n <= CONF_QUOTE_MAX || bufsz < CONF_QUOTE_MAX + 4)
		return s;
	memcpy(buf, s, CONF_QUOTE_MAX);
	memcpy(buf + CONF_QUOTE_MAX, "...", 4);
	return buf;
}

void conf_errors_print(const struct conf_errors *errs)
{
	for (size_t i = 0; errs && i < errs->n; i++) {
		const struct conf_error *e = &errs->v[i];
		const char *sev = e->severity == CONF_SEVERITY_WARNING ? "warning: " : "";
		if (e->line > 0)
			fprintf(stderr, "%s:%d: %s%s\n", e->file, e->line, sev, e->message);
		else
			fprintf(stderr, "%s: %s%s\n", e->file, sev, e->message);
	}
}

void conf_errors_free(struct conf_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++) {
		free(errs->v[i].file);
		free(errs->v[i].message);
	}
	free(errs->v);
	errs->v = NULL;
	errs->n = 0;
}

/* ---- lines ---- */

enum line_result { LINE_OK, LINE_EOF, LINE_READ_ERROR };

#define LINE_TOO_LONG 0x1
#define LINE_HAS_NUL 0x2
#define LINE_HAS_CTL 0x4

/*
 * Reads one line (without its newline) into buf (CONF_LINE_MAX + 1 octets). An
 * overlong line is consumed to its end and flagged; NUL and other control octets
 * (but tab and CR) are flagged, never trusted to end a string.
 */
static enum line_result line_read(FILE *f, char *buf, unsigned *flags)
{
	size_t len = 0;
	int ch, any = 0;
	*flags = 0;
	while ((ch = getc(f)) != EOF) {
		any = 1;
		if (ch == '\n')
			break;
		if (ch == '\0')
			*flags |= LINE_HAS_NUL;
		else if ((ch < 0x20 && ch != '\t' && ch != '\r') || ch == 0x7f)
			*flags |= LINE_HAS_CTL;
		if (len < CONF_LINE_MAX)
			buf[len++] = (char)(ch == '\0' ? ' ' : ch);
		else
			*flags |= LINE_TOO_LONG;
	}
	buf[len] = '\0';
	if (ferror(f))
		return LINE_READ_ERROR;
	return any ? LINE_OK : LINE_EOF;
}

/* Trims surrounding white space in place; returns the start. */
static char *trim(char *s)
{
	s += strspn(s, SPACE);
	size_t n = strlen(s);
	while (n > 0 && strchr(SPACE, s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Reports a line's flags; returns 1 when the line is unusable. */
static int line_flags_report(struct conf_errors *e, const char *file, int line, unsigned flags)
{
	if (flags & LINE_TOO_LONG)
		errs_add(e, file, line, "line is longer than %d octets", CONF_LINE_MAX);
	if (flags & LINE_HAS_NUL)
		errs_add(e, file, line, "line contains a NUL octet");
	if (flags & LINE_HAS_CTL)
		errs_add(e, file, line, "line contains a control character");
	return flags != 0;
}

/* ---- small helpers ---- */

/* Grows an array by one element; returns the new element (zeroed) or NULL. */
static void *array_push(void **v, size_t *n, size_t elem)
{
	char *p = realloc(*v, (*n + 1) * elem);
	if (!p)
		return NULL;
	*v = p;
	memset(p + *n * elem, 0, elem);
	return p + (*n)++ * elem;
}

static int strlist_push(struct strlist *l, const char *s)
{
	char *copy = strdup(s);
	char **slot = copy ? array_push((void **)&l->v, &l->n, sizeof *l->v) : NULL;
	if (!slot) {
		free(copy);
		return -1;
	}
	*slot = copy;
	return 0;
}

void strlist_free(struct strlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void addrlist_free(struct addrlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->text[i]);
	free(l->text);
	free(l->line);
	free(l->v);
	memset(l, 0, sizeof *l);
}

static void netlist_free(struct netlist *l)
{
	free(l->v);
	memset(l, 0, sizeof *l);
}

/*
 * 1 if s is a domain name as a host name (RFC 1123 2.1): dot-separated labels
 * of letters, digits and hyphens, no label starting or ending with a hyphen, and
 * a last label that is not all digits (that would be an address, not a name).
 */
static int domain_valid(const char *s)
{
	size_t n = strlen(s), label = 0;
	int digits_only = 1;
	if (n == 0 || n > CONF_DOMAIN_MAX)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		char ch = s[i];
		if (ch == '.' || ch == '\0') {
			if (label == 0 || label > CONF_LABEL_MAX || s[i - 1] == '-')
				return 0;
			if (ch == '\0')
				return !digits_only;
			label = 0;
			digits_only = 1;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-'))
			return 0;
		if (ch == '-' && label == 0)
			return 0;
		if (ch < '0' || ch > '9')
			digits_only = 0;
		label++;
	}
	return 0;
}

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* ---- setters, one per type ---- */

static void *field(struct loader *ld, const struct conf_key *k)
{
	return (char *)ld->c + k->offset;
}

static int replace_string(struct loader *ld, const struct conf_key *k, const char *v)
{
	char **f = field(ld, k), *copy = strdup(v);
	if (!copy) {
		ld_error(ld, ld->line, "out of memory");
		return -1;
	}
	free(*f);
	*f = copy;
	return 0;
}

/* A next-hop text (relay_route, relay_smarthost) that does not parse, reported. */
static int nexthop_text_bad(struct loader *ld, const struct conf_key *k, const char *v)
{
	char err[256], q[CONF_QUOTE_MAX + 4];
	struct nexthop_route route;
	struct nexthop_spec specs[NEXTHOP_SPECS_MAX];
	size_t n;
	int bad = 0;
	if (k->flags & CONF_FLAG_ROUTE)
		bad = nexthop_route_parse(v, &route, err, sizeof err) != 0;
	else if ((k->flags & CONF_FLAG_HOSTS) && *v)
		bad = nexthop_hosts_parse(v, specs, NEXTHOP_SPECS_MAX, &n, err, sizeof err) != 0;
	if (bad)
		ld_error(ld, ld->line, "%s '%s': %s", k->doc.name, quote(q, sizeof q, v), err);
	return bad;
}

/* 1 when v is one of the '|'-separated words of choices. */
static int choice_valid(const char *choices, const char *v)
{
	size_t n = strlen(v);
	for (const char *p = choices; *p;) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && memcmp(p, v, n) == 0)
			return 1;
		p += len + (bar != NULL);
	}
	return 0;
}

static int mailbox_word(struct loader *ld, const struct conf_key *k, char *w);

static int set_string(struct loader *ld, const struct conf_key *k, char *v)
{
	char q[CONF_QUOTE_MAX + 4];
	if ((k->flags & CONF_FLAG_DOMAIN) && !domain_valid(v)) {
		ld_error(ld, ld->line, "'%s' for %s is not a domain name", quote(q, sizeof q, v),
		         k->doc.name);
		return -1;
	}
	if ((k->flags & CONF_FLAG_CHOICE) && !choice_valid(k->doc.range, v)) {
		ld_error(ld, ld->line, "%s must be one of %s (not '%s')", k->doc.name, k->doc.range,
		         quote(q, sizeof q, v));
		return -1;
	}
	if (nexthop_text_bad(ld, k, v))
		return -1;
	if ((k->flags & CONF_FLAG_MAILBOX) && mailbox_word(ld, k, v) != 0)
		return -1;
	if (k->flags & CONF_FLAG_DOMAIN)
		lower(v);
	return replace_string(ld, k, v);
}

/* Relative paths are taken from the config file's folder, not the working one. */
static int set_path(struct loader *ld, const struct conf_key *k, char *v)
{
	char buf[CONF_PATH_MAX];
	int n = v[0] == '/' || !ld->dir ? snprintf(buf, sizeof buf, "%s", v)
	                                : snprintf(buf, sizeof buf, "%s/%s", ld->dir, v);
	if (n < 0 || (size_t)n >= sizeof buf) {
		ld_error(ld, ld->line, "path for %s is longer than %d octets", k->doc.name,
		         CONF_PATH_MAX - 1);
		return -1;
	}
	return replace_string(ld, k, buf);
}

static int set_bool(struct loader *ld, const struct conf_key *k, char *v)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	char q[CONF_QUOTE_MAX + 4];
	int *f = field(ld, k);
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*f = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*f = 0;
			return 0;
		}
	}
	ld_error(ld, ld->line, "value '%s' for %s is not yes or no", quote(q, sizeof q, v),
	         k->doc.name);
	return -1;
}

enum num_result { NUM_OK, NUM_NOT_NUMBER, NUM_TOO_BIG };

struct num_unit {
	char suffix;
	long long mult;
};

static const struct num_unit seconds_units[] = {
        {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {0, 0}};
static const struct num_unit bytes_units[] = {
        {'k', 1024}, {'m', 1024 * 1024}, {'g', 1024 * 1024 * 1024}, {0, 0}};

/*
 * Parses an optional '-', decimal digits and, when `units` is given, one suffix
 * from it (any case). Values beyond 10^15 are NUM_TOO_BIG (reported as out of range).
 */
static enum num_result number_parse(const char *s, const struct num_unit *units, long long *out)
{
	const long long cap = 1000000000000000LL;
	int neg = *s == '-', big = 0;
	long long v = 0;
	s += neg;
	if (*s < '0' || *s > '9')
		return NUM_NOT_NUMBER;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (*s - '0');
		if (v > cap) {
			v = cap;
			big = 1;
		}
	}
	if (*s && units && s[1] == '\0') {
		char c = (char)((*s >= 'A' && *s <= 'Z') ? *s - 'A' + 'a' : *s);
		const struct num_unit *u = units;
		while (u->suffix && u->suffix != c)
			u++;
		if (!u->suffix)
			return NUM_NOT_NUMBER;
		if (v > cap / u->mult) {
			v = cap;
			big = 1;
		} else {
			v *= u->mult;
		}
		s++;
	}
	if (*s)
		return NUM_NOT_NUMBER;
	*out = neg ? -v : v;
	return big ? NUM_TOO_BIG : NUM_OK;
}

static int set_int(struct loader *ld, const struct conf_key *k, char *v)
{
	char q[CONF_QUOTE_MAX + 4];
	int seconds = (k->flags & CONF_FLAG_SECONDS) != 0;
	int bytes = (k->flags & CONF_FLAG_BYTES) != 0;
	const struct num_unit *units = seconds ? seconds_units : bytes ? bytes_units : NULL;
	long long n = 0;
	enum num_result r = number_parse(v, units, &n);
	if (r == NUM_NOT_NUMBER) {
		ld_error(ld, ld->line, "value '%s' for %s is not a number%s", quote(q, sizeof q, v),
		         k->doc.name,
		         seconds ? " (of seconds; suffixes s, m, h, d)"
		         : bytes ? " (of octets; suffixes k, m, g)"
		                 : "");
		return -1;
	}
	if (r == NUM_TOO_BIG || n < k->min || n > k->max) {
		ld_error(ld, ld->line, "%s must be between %lld and %lld%s", k->doc.name, k->min,
		         k->max,
		         seconds ? " seconds"
		         : bytes ? " octets"
		                 : "");
		return -1;
	}
	*(int *)field(ld, k) = (int)n;
	return 0;
}

/* Splits v into words in place; calls fn for each. Returns -1 if any call failed. */
static int words_each(struct loader *ld, const struct conf_key *k, char *v,
                      int (*fn)(struct loader *, const struct conf_key *, char *))
{
	int rc = 0;
	char *save = NULL;
	for (char *w = strtok_r(v, SPACE, &save); w; w = strtok_r(NULL, SPACE, &save))
		if (fn(ld, k, w) != 0)
			rc = -1;
	return rc;
}

/* A mailbox (RFC 5321 4.1.2), replaced by its lookup key: the rules compare keys. */
static int mailbox_word(struct loader *ld, const struct conf_key *k, char *w)
{
	char q[CONF_QUOTE_MAX + 4];
	struct mailaddr a;
	char key[MAILADDR_MAX + 1];
	if (mailaddr_parse_exact(w, strlen(w), &a) != MAILADDR_OK ||
	    mailaddr_key(&a, key, sizeof key) < 0) {
		ld_error(ld, ld->line, "'%s' in %s is not a mail address", quote(q, sizeof q, w),
		         k->doc.name);
		return -1;
	}
	memcpy(w, key, strlen(key) + 1); /* a key is never longer than the address */
	return 0;
}

/* RFC 5322 3.6.8: a field name is printable ASCII but ':', at most 76 octets here. */
static int fieldname_valid(const char *w)
{
	size_t n = strlen(w);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)w[i] < 0x21 || (unsigned char)w[i] > 0x7e || w[i] == ':')
			return 0;
	return n > 0 && n <= 76;
}

static int list_word(struct loader *ld, const struct conf_key *k, char *w)
{
	char q[CONF_QUOTE_MAX + 4];
	struct strlist *l = field(ld, k);
	if (k->flags & CONF_FLAG_DOMAIN) {
		if (!domain_valid(w)) {
			ld_error(ld, ld->line, "'%s' in %s is not a domain name",
			         quote(q, sizeof q, w), k->doc.name);
			return -1;
		}
		lower(w);
	}
	if ((k->flags & CONF_FLAG_MAILBOX) && mailbox_word(ld, k, w) != 0)
		return -1;
	if ((k->flags & CONF_FLAG_FIELDNAME) && !fieldname_valid(w)) {
		ld_error(ld, ld->line, "'%s' in %s is not a header field name",
		         quote(q, sizeof q, w), k->doc.name);
		return -1;
	}
	if (k->flags & CONF_FLAG_NAMESERVER) {
		char err[256];
		struct netaddr a;
		if (netaddr_parse_hostport(w, 53, 0, &a, err, sizeof err) != 0) {
			ld_error(ld, ld->line, "%s: %s", k->doc.name, err);
			return -1;
		}
	}
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], w) == 0)
			return 0; /* a repeat changes nothing */
	if (strlist_push(l, w) != 0) {
		ld_error(ld, ld->line, "out of memory");
		return -1;
	}
	return 0;
}

static int set_list(struct loader *ld, const struct conf_key *k, char *v)
{
	return words_each(ld, k, v, list_word);
}

/*
 * A Domain Sharing peer, gateway or forward line that does not parse, reported at
 * its line (the secret file is only named here: verify/ reads it at start-up).
 */
static int peer_text_bad(struct loader *ld, const struct conf_key *k, const char *v)
{
	char err[256], q[CONF_QUOTE_MAX + 4];
	struct peer_spec_peer peer;
	struct peer_spec_gateway gw;
	struct collect_spec cs;
	int bad = 0;
	if (k->flags & CONF_FLAG_COLLECT)
		bad = collect_spec_parse(v, &cs, err, sizeof err) != 0;
	else if (k->flags & CONF_FLAG_PEER)
		bad = peer_spec_parse_peer(v, &peer, err, sizeof err) != 0;
	else if (k->flags & (CONF_FLAG_GATEWAY | CONF_FLAG_FORWARD))
		bad = peer_spec_parse_gateway(v, (k->flags & CONF_FLAG_FORWARD) != 0, &gw, err,
		                              sizeof err) != 0;
	if (bad)
		ld_error(ld, ld->line, "%s '%s': %s", k->doc.name, quote(q, sizeof q, v), err);
	return bad;
}

/* Each line is one entry (relay_route, domain_sharing_host...), checked as a whole. */
static int set_lines(struct loader *ld, const struct conf_key *k, char *v)
{
	if (nexthop_text_bad(ld, k, v) || peer_text_bad(ld, k, v))
		return -1;
	if (strlist_push(field(ld, k), v) != 0) {
		ld_error(ld, ld->line, "out of memory");
		return -1;
	}
	return 0;
}

static int addr_word(struct loader *ld, const struct conf_key *k, char *w)
{
	char err[256], q[CONF_QUOTE_MAX + 4];
	struct netaddr a;
	struct addrlist *l = field(ld, k);
	if (netaddr_parse_hostport(w, 0, 0, &a, err, sizeof err) != 0) {
		ld_error(ld, ld->line, "%s: %s", k->doc.name, err);
		return -1;
	}
	/* The same address twice would fail at bind() with a less helpful message. */
	for (size_t i = 0; i < l->n; i++) {
		if (netaddr_equal((struct sockaddr *)&l->v[i].ss, (struct sockaddr *)&a.ss)) {
			ld_error(ld, ld->line, "%s: '%s' is listed twice", k->doc.name,
			         quote(q, sizeof q, w));
			return -1;
		}
	}
	char *text = strdup(w);
	char **ts = text ? realloc(l->text, (l->n + 1) * sizeof *ts) : NULL;
	if (ts)
		l->text = ts;
	int *lines = ts ? realloc(l->line, (l->n + 1) * sizeof *lines) : NULL;
	if (lines)
		l->line = lines;
	struct netaddr *slot = lines ? array_push((void **)&l->v, &l->n, sizeof *l->v) : NULL;
	if (!slot) {
		free(text);
		ld_error(ld, ld->line, "out of memory");
		return -1;
	}
	*slot = a;
	l->text[l->n - 1] = text;
	l->line[l->n - 1] = ld->line;
	return 0;
}

static int set_addrlist(struct loader *ld, const struct conf_key *k, char *v)
{
	return words_each(ld, k, v, addr_word);
}

static int net_word(struct loader *ld, const struct conf_key *k, char *w)
{
	char err[256];
	struct netaddr_net net;
	struct netlist *l = field(ld, k);
	if (netaddr_parse_net(w, &net, err, sizeof err) != 0) {
		ld_error(ld, ld->line, "%s: %s", k->doc.name, err);
		return -1;
	}
	struct netaddr_net *slot = array_push((void **)&l->v, &l->n, sizeof *l->v);
	if (!slot) {
		ld_error(ld, ld->line, "out of memory");
		return -1;
	}
	*slot = net;
	return 0;
}

static int set_netlist(struct loader *ld, const struct conf_key *k, char *v)
{
	return words_each(ld, k, v, net_word);
}

/*
 * "COUNT/DURATION" (screen_auth_failures = 5/10m): COUNT a number in the key's
 * range, DURATION seconds with the suffixes s, m, h, d, 1 s to 7 days.
 */
static int set_rate(struct loader *ld, const struct conf_key *k, char *v)
{
	char q[CONF_QUOTE_MAX + 4];
	char *slash = strchr(v, '/');
	long long count = 0, secs = 0;
	if (!slash) {
		ld_error(ld, ld->line, "value '%s' for %s is not COUNT/DURATION (e.g. 5/10m)",
		         quote(q, sizeof q, v), k->doc.name);
		return -1;
	}
	*slash = '\0';
	enum num_result rc = number_parse(v, NULL, &count);
	enum num_result rs = number_parse(slash + 1, seconds_units, &secs);
	*slash = '/';
	if (rc == NUM_NOT_NUMBER || rs == NUM_NOT_NUMBER) {
		ld_error(
		        ld, ld->line,
		        "value '%s' for %s is not COUNT/DURATION (e.g. 5/10m; suffixes s, m, h, d)",
		        quote(q, sizeof q, v), k->doc.name);
		return -1;
	}
	if (rc == NUM_TOO_BIG || count < k->min || count > k->max) {
		ld_error(ld, ld->line, "%s: COUNT must be between %lld and %lld", k->doc.name,
		         k->min, k->max);
		return -1;
	}
	if (rs == NUM_TOO_BIG || secs < 1 || secs > CONF_RATE_SECONDS_MAX) {
		ld_error(ld, ld->line, "%s: DURATION must be between 1 and %d seconds", k->doc.name,
		         CONF_RATE_SECONDS_MAX);
		return -1;
	}
	struct conf_rate *r = field(ld, k);
	r->count = (int)count;
	r->seconds = (int)secs;
	return 0;
}

static int (*const setters[])(struct loader *, const struct conf_key *, char *) = {
        [CONF_TYPE_STRING] = set_string,   [CONF_TYPE_PATH] = set_path,
        [CONF_TYPE_BOOL] = set_bool,       [CONF_TYPE_INT] = set_int,
        [CONF_TYPE_LIST] = set_list,       [CONF_TYPE_ADDRLIST] = set_addrlist,
        [CONF_TYPE_NETLIST] = set_netlist, [CONF_TYPE_LINES] = set_lines,
        [CONF_TYPE_RATE] = set_rate,
};

/* ---- the conf itself ---- */

static void field_free(struct conf *c, const struct conf_key *k)
{
	void *f = (char *)c + k->offset;
	switch (k->type) {
	case CONF_TYPE_STRING:
	case CONF_TYPE_PATH:
		free(*(char **)f);
		*(char **)f = NULL;
		break;
	case CONF_TYPE_LIST:
	case CONF_TYPE_LINES: strlist_free(f); break;
	case CONF_TYPE_ADDRLIST: addrlist_free(f); break;
	case CONF_TYPE_NETLIST: netlist_free(f); break;
	case CONF_TYPE_BOOL:
	case CONF_TYPE_INT:
	case CONF_TYPE_RATE: break;
	}
}

void conf_free(struct conf *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < conf_nkeys; i++)
		field_free(c, &conf_keys[i]);
	free(c->path);
	free(c);
}

/* The system host name, lower-cased, or "localhost" when there is none. */
static int default_hostname(struct loader *ld)
{
	char name[256] = "";
	if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0')
		snprintf(name, sizeof name, "localhost");
	lower(name);
	const struct conf_key *k = conf_key_find("hostname", strlen("hostname"));
	return k ? replace_string(ld, k, name) : -1;
}

/* Fills every field from its default text, through the same setters as the file. */
static int defaults_apply(struct loader *ld)
{
	char buf[CONF_LINE_MAX + 1];
	for (size_t i = 0; i < conf_nkeys; i++) {
		const struct conf_key *k = &conf_keys[i];
		if (k->doc.def[0] == '\0')
			continue;
		snprintf(buf, sizeof buf, "%s", k->doc.def);
		if (setters[k->type](ld, k, buf) != 0)
			return -1;
	}
	return default_hostname(ld);
}

struct conf *conf_defaults(void)
{
	struct conf_errors errs = {0};
	struct loader ld = {.errs = &errs, .file = "(defaults)"};
	ld.c = calloc(1, sizeof *ld.c);
	if (ld.c && defaults_apply(&ld) != 0) {
		conf_free(ld.c);
		ld.c = NULL;
	}
	conf_errors_free(&errs);
	return ld.c;
}

/* ---- loading ---- */

#define SUGGEST_LEN_MAX 64 /* longer unknown keys get no suggestion (no key is that long) */

/* Levenshtein distance between a and b, ignoring case; both at most SUGGEST_LEN_MAX. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t prev[SUGGEST_LEN_MAX + 1], cur[SUGGEST_LEN_MAX + 1];
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (tolower((unsigned char)a[i - 1]) !=
			                            tolower((unsigned char)b[j - 1]));
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof *prev);
	}
	return prev[lb];
}

/*
 * The schema key closest to an unknown one, or NULL when none is close: at most
 * 2 edits, or a third of the key's length for long keys ("minger_secrets_file",
 * "smtp_max_msg_size", "Hostname" all find theirs; "foo" finds nothing).
 */
static const char *key_suggest(const char *key)
{
	size_t n = strlen(key), best = SIZE_MAX;
	const char *found = NULL;
	if (n > SUGGEST_LEN_MAX)
		return NULL;
	for (size_t i = 0; i < conf_nkeys; i++) {
		const char *name = conf_keys[i].doc.name;
		if (strlen(name) > SUGGEST_LEN_MAX)
			continue;
		size_t d = edit_distance(key, name);
		if (d < best) {
			best = d;
			found = name;
		}
	}
	size_t limit = n / 3 > 2 ? n / 3 : 2;
	return best <= limit && best < n ? found : NULL;
}

/* Keys of earlier releases, and what took their place. */
static const struct {
	const char *key;
	const char *instead;
} removed_keys[] = {
        {"queue_retry_interval", "queue_retry_initial and queue_retry_max (the wait "
                                 "doubles from the first to the second)"},
};

static void unknown_key(struct loader *ld, const char *key)
{
	char q[CONF_QUOTE_MAX + 4];
	for (size_t i = 0; i < sizeof removed_keys / sizeof removed_keys[0]; i++) {
		if (strcmp(key, removed_keys[i].key) == 0) {
			ld_error(ld, ld->line, "%s is no longer a key: use %s", key,
			         removed_keys[i].instead);
			return;
		}
	}
	const char *hint = key_suggest(key);
	if (hint)
		ld_error(ld, ld->line, "unknown key '%s' (did you mean '%s'?)",
		         quote(q, sizeof q, key), hint);
	else
		ld_error(ld, ld->line, "unknown key '%s'", quote(q, sizeof q, key));
}

/* Records where the addresses just added to an addrlist key were written. */
static void listens_note(struct loader *ld, const struct conf_key *k, size_t from)
{
	const struct addrlist *l = field(ld, k);
	for (size_t i = from; i < l->n; i++) {
		struct listen_seen *slot =
		        array_push((void **)&ld->listens, &ld->nlistens, sizeof *ld->listens);
		if (!slot) {
			ld_error(ld, ld->line, "out of memory");
			return;
		}
		*slot = (struct listen_seen){k, i, ld->line};
	}
}

/* One non-blank, non-comment line: "key = value". */
static void line_parse(struct loader *ld, char *s)
{
	char *eq = strchr(s, '=');
	if (!eq) {
		ld_error(ld, ld->line, "missing '='");
		return;
	}
	*eq = '\0';
	char *key = trim(s), *value = trim(eq + 1);
	if (!*key) {
		ld_error(ld, ld->line, "missing key before '='");
		return;
	}
	const struct conf_key *k = conf_key_find(key, strlen(key));
	if (!k) {
		unknown_key(ld, key);
		return;
	}
	int *seen = &ld->seen[k - conf_keys];
	if (*seen && !conf_type_repeatable(k->type)) {
		ld_error(ld, ld->line, "'%s' may appear only once (first at line %d)", k->doc.name,
		         *seen);
		return;
	}
	if (!*seen && conf_type_repeatable(k->type) && k->doc.def[0])
		field_free(ld->c, k); /* the file's lines replace a list's default */
	if (!*seen)
		*seen = ld->line;
	if (!*value) {
		ld_error(ld, ld->line, "no value for '%s'", k->doc.name);
		return;
	}
	size_t before = k->type == CONF_TYPE_ADDRLIST ? ((struct addrlist *)field(ld, k))->n : 0;
	setters[k->type](ld, k, value);
	if (k->type == CONF_TYPE_ADDRLIST)
		listens_note(ld, k, before);
}

static void file_parse(struct loader *ld, FILE *f)
{
	char buf[CONF_LINE_MAX + 1];
	unsigned flags;
	enum line_result r;
	while ((r = line_read(f, buf, &flags)) == LINE_OK) {
		ld->line++;
		if (line_flags_report(ld->errs, ld->file, ld->line, flags)) {
			ld->nerr++;
			continue;
		}
		char *s = trim(buf);
		if (*s == '\0' || *s == '#')
			continue;
		line_parse(ld, s);
	}
	if (r == LINE_READ_ERROR)
		ld_error(ld, 0, "cannot read: %s", strerror(errno));
}

/* Sets c->path (absolute) and ld->dir (its folder). */
static int paths_set(struct loader *ld, const char *path)
{
	char *abs = realpath(path, NULL);
	if (!abs) {
		ld_error(ld, 0, "cannot resolve: %s", strerror(errno));
		return -1;
	}
	ld->c->path = abs;
	ld->dir = strdup(abs);
	if (!ld->dir) {
		ld_error(ld, 0, "out of memory");
		return -1;
	}
	char *slash = strrchr(ld->dir, '/');
	if (slash == ld->dir)
		slash[1] = '\0'; /* a file in "/" */
	else if (slash)
		*slash = '\0';
	return 0;
}

/* The line where a key first appeared (0 if it did not). */
static int seen_line(const struct loader *ld, const char *name)
{
	const struct conf_key *k = conf_key_find(name, strlen(name));
	return k ? ld->seen[k - conf_keys] : 0;
}

static int secrets_parse(FILE *f, const char *path, struct strlist *out, struct conf_errors *errs);

/*
 * The secret file as the daemon will read it: a file it cannot open is an error
 * at the key's line; one that group or others may read is a warning (the secrets
 * authenticate this server to its peers); bad secrets are errors at their line of
 * the secret file (secrets_parse). The secrets themselves are thrown away.
 */
static void secret_file_check(struct loader *ld)
{
	const char *path = ld->c->minger_secret_file;
	int line = seen_line(ld, "minger_secret_file");
	struct stat st;
	FILE *f = fopen(path, "r");
	int err = !f                           ? errno
	          : fstat(fileno(f), &st) != 0 ? errno
	          : S_ISDIR(st.st_mode)        ? EISDIR /* fopen() opens a directory */
	                                       : 0;
	if (err) {
		ld_error(ld, line, "cannot open minger_secret_file %s: %s", path, strerror(err));
		if (f)
			fclose(f);
		return;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		ld_warning(ld, line,
		           "minger_secret_file %s has mode %04o: group or others may read the "
		           "secrets (chmod 600 it)",
		           path, (unsigned)(st.st_mode & 07777));
	struct strlist secrets = {0};
	if (secrets_parse(f, path, &secrets, ld->errs) < 0)
		ld->nerr++;
	strlist_free(&secrets);
}

/* state_dir is created at start-up when missing; anything else in its place is fatal. */
static void state_dir_check(struct loader *ld)
{
	struct stat st;
	const char *dir = ld->c->state_dir;
	int line = seen_line(ld, "state_dir");
	if (!dir)
		return;
	if (stat(dir, &st) != 0) {
		if (errno != ENOENT)
			ld_error(ld, line, "state_dir %s: %s", dir, strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		ld_error(ld, line, "state_dir %s exists but is not a directory", dir);
	}
}

/* 1 for the unspecified address (0.0.0.0 or ::), which binds every address of its family. */
static int addr_is_any(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

/*
 * 1 if two TCP listeners cannot both be bound: the same address and port, or the
 * same port where one is the unspecified address of the other's family (IPv6
 * sockets are IPV6_V6ONLY, so [::] does not take IPv4 ports).
 */
static int listen_clash(const struct sockaddr *a, const struct sockaddr *b)
{
	if (netaddr_equal(a, b))
		return 1;
	return a->sa_family == b->sa_family && netaddr_port(a) == netaddr_port(b) &&
	       (addr_is_any(a) || addr_is_any(b));
}

/* minger_listen is UDP; the other listen keys are TCP services. */
static int listen_is_tcp(const struct conf_key *k)
{
	return strcmp(k->doc.name, "minger_listen") != 0;
}

static const struct sockaddr *listen_addr(struct loader *ld, const struct listen_seen *l)
{
	const struct addrlist *list = field(ld, l->key);
	return (const struct sockaddr *)&list->v[l->index].ss;
}

static const char *listen_text(struct loader *ld, const struct listen_seen *l)
{
	const struct addrlist *list = field(ld, l->key);
	return list->text[l->index];
}

/*
 * Two TCP listen addresses the daemon could not both bind (smtp_listen and
 * submission_listen both 127.0.0.1:25, or *:25 and 127.0.0.1:25), reported at the
 * line of the later one. The same address twice in one key is addr_word's message.
 */
static void listen_check(struct loader *ld)
{
	char q[CONF_QUOTE_MAX + 4], q2[CONF_QUOTE_MAX + 4];
	for (size_t j = 0; j < ld->nlistens; j++) {
		const struct listen_seen *b = &ld->listens[j], *a = NULL;
		for (size_t i = 0; i < j && !a && listen_is_tcp(b->key); i++)
			if (listen_is_tcp(ld->listens[i].key) &&
			    listen_clash(listen_addr(ld, &ld->listens[i]), listen_addr(ld, b)))
				a = &ld->listens[i];
		if (!a)
			continue;
		const char *name = b->key->doc.name, *text = quote(q, sizeof q, listen_text(ld, b));
		if (netaddr_equal(listen_addr(ld, a), listen_addr(ld, b)))
			ld_error(
			        ld, b->line,
			        "%s: '%s' is also in %s (line %d); the daemon cannot bind it twice",
			        name, text, a->key->doc.name, a->line);
		else
			ld_error(
			        ld, b->line,
			        "%s: '%s' overlaps '%s' (%s, line %d); the daemon cannot bind both",
			        name, text, quote(q2, sizeof q2, listen_text(ld, a)),
			        a->key->doc.name, a->line);
	}
}

/*
 * tls_cert_file and tls_key_file as the daemon will read them (util/tls_ctx.h):
 * a file that cannot be read, holds no PEM certificate or key, or a key that
 * does not match is an error at the line of the key at fault; smtps_listen
 * needs a certificate. The key file is a secret (CONF_LOAD_SKIP_SECRETS).
 */
static void tls_files_check(struct loader *ld)
{
	const struct conf *c = ld->c;
	char err[768];
	int key_bad = 0;
	if (c->tls_key_file && !c->tls_cert_file)
		ld_error(ld, seen_line(ld, "tls_key_file"),
		         "tls_key_file is set but tls_cert_file is not");
	if (c->smtps_listen.n && !c->tls_cert_file)
		ld_error(ld, seen_line(ld, "smtps_listen"),
		         "smtps_listen is set but tls_cert_file is not (implicit TLS needs a "
		         "certificate)");
	if (c->pop3s_listen.n && !c->tls_cert_file)
		ld_error(ld, seen_line(ld, "pop3s_listen"),
		         "pop3s_listen is set but tls_cert_file is not (implicit TLS needs a "
		         "certificate)");
	if (!c->tls_cert_file || (ld->flags & CONF_LOAD_SKIP_SECRETS))
		return;
	SSL_CTX *ctx =
	        tls_ctx_server_new(c->tls_cert_file, c->tls_key_file, &key_bad, err, sizeof err);
	if (!ctx)
		ld_error(ld, seen_line(ld, key_bad ? "tls_key_file" : "tls_cert_file"), "%s", err);
	SSL_CTX_free(ctx);
}

/* Checks that involve more than one key or something outside the file. */
static void cross_check(struct loader *ld)
{
	struct conf *c = ld->c;
	if (c->minger_secret_file && !(ld->flags & CONF_LOAD_SKIP_SECRETS))
		secret_file_check(ld);
	state_dir_check(ld);
	listen_check(ld);
	tls_files_check(ld);
	if (ld->nlistens > 0 && c->local_domains.n == 0) /* a listener, but nothing to serve */
		ld_error(ld, 0,
		         "local_domains is not set, so this server holds no mailbox: mail for it "
		         "would be refused and every Minger query answered unknown");
	if (c->minger_listen.n && !c->minger_secret_file && !c->minger_anonymous)
		ld_error(ld, seen_line(ld, "minger_listen"),
		         "minger_listen is set but there is neither a minger_secret_file nor "
		         "minger_anonymous = yes, so no query could ever be answered");
	if (c->minger_require_reply_mac && !c->minger_secret_file)
		ld_error(ld, seen_line(ld, "minger_require_reply_mac"),
		         "minger_require_reply_mac = yes needs a minger_secret_file");
}

struct conf *conf_load(const char *path, struct conf_errors *errs)
{
	return conf_load_flags(path, 0, errs);
}

struct conf *conf_load_flags(const char *path, unsigned flags, struct conf_errors *errs)
{
	struct loader ld = {.errs = errs, .file = path, .flags = flags};
	FILE *f = fopen(path, "r");
	if (!f) {
		errs_add(errs, path, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		errs_add(errs, path, 0, "cannot open: %s", strerror(EISDIR));
		fclose(f);
		return NULL;
	}
	ld.c = calloc(1, sizeof *ld.c);
	ld.seen = calloc(conf_nkeys, sizeof *ld.seen);
	if (!ld.c || !ld.seen) {
		ld_error(&ld, 0, "out of memory");
	} else if (defaults_apply(&ld) == 0 && paths_set(&ld, path) == 0) {
		file_parse(&ld, f);
		cross_check(&ld);
	}
	fclose(f);
	free(ld.seen);
	free(ld.dir);
	free(ld.listens);
	if (ld.nerr) {
		conf_free(ld.c);
		return NULL;
	}
	return ld.c;
}

/* ---- secrets ---- */

/* Why a secret is refused (never the secret itself), or NULL when it is good. */
static const char *secret_problem(const char *s)
{
	size_t n = strlen(s);
	if (n < MINGER_SECRET_MIN)
		return "secret is shorter than " STR(MINGER_SECRET_MIN) " characters";
	if (n > MINGER_SECRET_MAX)
		return "secret is longer than " STR(MINGER_SECRET_MAX) " characters";
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return "secret contains a space or a character that is not printable ASCII";
	if (!minger_secret_valid(s, n))
		return "secret is not valid";
	return NULL;
}

int conf_read_secrets(const char *path, struct strlist *out, struct conf_errors *errs)
{
	memset(out, 0, sizeof *out);
	FILE *f = fopen(path, "r");
	if (!f) {
		errs_add(errs, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	int rc = secrets_parse(f, path, out, errs);
	fclose(f);
	return rc;
}

/* Reads the secrets from an open file (which the caller closes); see conf_read_secrets(). */
static int secrets_parse(FILE *f, const char *path, struct strlist *out, struct conf_errors *errs)
{
	char buf[CONF_LINE_MAX + 1];
	unsigned flags;
	enum line_result r;
	int line = 0, bad = 0;
	memset(out, 0, sizeof *out);
	while ((r = line_read(f, buf, &flags)) == LINE_OK) {
		line++;
		if (line_flags_report(errs, path, line, flags)) {
			bad = 1;
			continue;
		}
		char *s = trim(buf);
		if (*s == '\0' || *s == '#')
			continue;
		const char *why = secret_problem(s);
		if (why) {
			errs_add(errs, path, line, "%s", why);
			bad = 1;
		} else if (!bad && strlist_push(out, s) != 0) {
			errs_add(errs, path, line, "out of memory");
			bad = 1;
		}
	}
	if (r == LINE_READ_ERROR) {
		errs_add(errs, path, 0, "cannot read: %s", strerror(errno));
		bad = 1;
	}
	explicit_bzero(buf, sizeof buf);
	if (!bad && out->n == 0) {
		errs_add(errs, path, 0, "holds no secret");
		bad = 1;
	}
	if (bad) {
		for (size_t i = 0; i < out->n; i++)
			explicit_bzero(out->v[i], strlen(out->v[i]));
		strlist_free(out);
		return -1;
	}
	return (int)out->n;
}

/* ---- reload (SIGHUP) ---- */

static int str_equal(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) == 0 : a == b;
}

static int addr_same(const struct netaddr *a, const struct netaddr *b)
{
	return a->len == b->len && a->ss.ss_family == b->ss.ss_family &&
	       netaddr_equal((const struct sockaddr *)&a->ss, (const struct sockaddr *)&b->ss);
}

static int net_same(const struct netaddr_net *a, const struct netaddr_net *b)
{
	return a->family == b->family && a->prefix == b->prefix &&
	       memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

/* 1 when key k has the same value in a and b (list order counts). */
static int field_equal(const struct conf *a, const struct conf *b, const struct conf_key *k)
{
	const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
	switch (k->type) {
	case CONF_TYPE_STRING:
	case CONF_TYPE_PATH: return str_equal(*(char *const *)fa, *(char *const *)fb);
	case CONF_TYPE_BOOL:
	case CONF_TYPE_INT: return *(const int *)fa == *(const int *)fb;
	case CONF_TYPE_RATE: return memcmp(fa, fb, sizeof(struct conf_rate)) == 0;
	case CONF_TYPE_LIST:
	case CONF_TYPE_LINES: {
		const struct strlist *x = fa, *y = fb;
		for (size_t i = 0; x->n == y->n && i < x->n; i++)
			if (strcmp(x->v[i], y->v[i]) != 0)
				return 0;
		return x->n == y->n;
	}
	case CONF_TYPE_ADDRLIST: {
		const struct addrlist *x = fa, *y = fb;
		for (size_t i = 0; x->n == y->n && i < x->n; i++)
			if (!addr_same(&x->v[i], &y->v[i]))
				return 0;
		return x->n == y->n;
	}
	case CONF_TYPE_NETLIST: {
		const struct netlist *x = fa, *y = fb;
		for (size_t i = 0; x->n == y->n && i < x->n; i++)
			if (!net_same(&x->v[i], &y->v[i]))
				return 0;
		return x->n == y->n;
	}
	}
	return 0;
}

/* Copies n elements of size elem; NULL for none. Returns 0 or -1 out of memory. */
static int array_dup(void **dst, const void *src, size_t n, size_t elem)
{
	*dst = NULL;
	if (n == 0)
		return 0;
	*dst = malloc(n * elem);
	if (!*dst)
		return -1;
	memcpy(*dst, src, n * elem);
	return 0;
}

static int addrlist_copy(struct addrlist *d, const struct addrlist *s)
{
	if (array_dup((void **)&d->v, s->v, s->n, sizeof *s->v) != 0 ||
	    array_dup((void **)&d->line, s->line, s->line ? s->n : 0, sizeof *s->line) != 0 ||
	    (s->n && !(d->text = calloc(s->n, sizeof *d->text))))
		return -1;
	d->n = s->n; /* from here addrlist_free frees what was copied */
	for (size_t i = 0; i < s->n; i++)
		if (!(d->text[i] = strdup(s->text[i])))
			return -1;
	return 0;
}

/* Replaces key k's value in dst with a deep copy of src's. Returns 0 or -1. */
static int field_copy(struct conf *dst, const struct conf *src, const struct conf_key *k)
{
	void *fd = (char *)dst + k->offset;
	const void *fs = (const char *)src + k->offset;
	field_free(dst, k);
	switch (k->type) {
	case CONF_TYPE_STRING:
	case CONF_TYPE_PATH: {
		const char *v = *(char *const *)fs;
		return v && !(*(char **)fd = strdup(v)) ? -1 : 0;
	}
	case CONF_TYPE_BOOL:
	case CONF_TYPE_INT: *(int *)fd = *(const int *)fs; return 0;
	case CONF_TYPE_RATE: memcpy(fd, fs, sizeof(struct conf_rate)); return 0;
	case CONF_TYPE_LIST:
	case CONF_TYPE_LINES: {
		const struct strlist *l = fs;
		for (size_t i = 0; i < l->n; i++)
			if (strlist_push(fd, l->v[i]) != 0)
				return -1;
		return 0;
	}
	case CONF_TYPE_ADDRLIST: return addrlist_copy(fd, fs);
	case CONF_TYPE_NETLIST: {
		const struct netlist *l = fs;
		struct netlist *d = fd;
		if (array_dup((void **)&d->v, l->v, l->n, sizeof *l->v) != 0)
			return -1;
		d->n = l->n;
		return 0;
	}
	}
	return -1;
}

/* Appends ", name" (or "name") to a CONF_DIFF_MAX list; a full list ends in "...". */
static void diff_add(char *list, const char *name)
{
	size_t used = strlen(list), len = strlen(name);
	if (used >= 3 && strcmp(list + used - 3, "...") == 0)
		return;
	if (used + len + sizeof ", ..." > CONF_DIFF_MAX) {
		snprintf(list + used, CONF_DIFF_MAX - used, "%s...", used ? ", " : "");
		return;
	}
	snprintf(list + used, CONF_DIFF_MAX - used, "%s%s", used ? ", " : "", name);
}

int conf_reload_merge(struct conf *next, const struct conf *cur, struct conf_diff *diff)
{
	memset(diff, 0, sizeof *diff);
	for (size_t i = 0; i < conf_nkeys; i++) {
		const struct conf_key *k = &conf_keys[i];
		if (field_equal(next, cur, k))
			continue;
		if (k->flags & CONF_FLAG_RELOAD) {
			diff_add(diff->reloaded, k->doc.name);
			diff->n_reloaded++;
			continue;
		}
		diff_add(diff->restart, k->doc.name);
		diff->n_restart++;
		if (field_copy(next, cur, k) != 0)
			return -1;
	}
	return 0;
}

int conf_addr_where(const struct conf *c, const struct addrlist *l, size_t i, char *out,
                    size_t outsz)
{
	const char *key = NULL;
	for (size_t k = 0; k < conf_nkeys; k++)
		if (conf_keys[k].type == CONF_TYPE_ADDRLIST &&
		    (const char *)c + conf_keys[k].offset == (const char *)l)
			key = conf_keys[k].doc.name;
	const char *file = c->path ? c->path : "(configuration)";
	if (!key || i >= l->n) {
		snprintf(out, outsz, "%s: %s", file, key ? key : "(listener)");
		return -1;
	}
	if (l->line && l->line[i] > 0)
		snprintf(out, outsz, "%s:%d: %s %s", file, l->line[i], key, l->text[i]);
	else
		snprintf(out, outsz, "%s: %s %s", file, key, l->text[i]);
	return 0;
}

/* ---- queries ---- */

int conf_is_local_domain(const struct conf *c, const char *domain, size_t len)
{
	for (size_t i = 0; c && i < c->local_domains.n; i++) {
		const char *d = c->local_domains.v[i];
		if (strlen(d) == len && strncasecmp(d, domain, len) == 0)
			return 1;
	}
	return 0;
}

int conf_state_path(const struct conf *c, const char *name, char *out, size_t outsz)
{
	if (!c || !c->state_dir || !name || outsz == 0)
		return -1;
	int n = snprintf(out, outsz, "%s/%s", c->state_dir, name);
	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}
