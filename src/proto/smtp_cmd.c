/*
 * smtp_cmd: SMTP command line parsing (RFC 5321 4.1.1, 4.1.2).
 *
 * The line has already been framed by smtp_lines (CRLF only, length checked).
 * Verbs are case-insensitive (RFC 5321 2.4). Paths are parsed strictly: angle
 * brackets are required (4.1.2 Reverse-path / Forward-path), with the one
 * widespread deviation "MAIL FROM: <a@b>" (a single space after the colon)
 * tolerated because real clients send it.
 */
#include "proto/smtp_cmd.h"
#include "util/strutil.h"

#include <string.h>

struct verb_entry {
	const char *name;
	enum smtp_verb verb;
};

static const struct verb_entry verbs[] = {
        {"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO}, {"MAIL", SMTP_VERB_MAIL},
        {"RCPT", SMTP_VERB_RCPT}, {"DATA", SMTP_VERB_DATA}, {"RSET", SMTP_VERB_RSET},
        {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT}, {"HELP", SMTP_VERB_HELP},
        {"VRFY", SMTP_VERB_VRFY}, {"EXPN", SMTP_VERB_EXPN}, {"STARTTLS", SMTP_VERB_STARTTLS},
        {"AUTH", SMTP_VERB_AUTH}, {"BDAT", SMTP_VERB_BDAT},
};

const char *smtp_verb_name(enum smtp_verb v)
{
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if (verbs[i].verb == v)
			return verbs[i].name;
	return "?";
}

/* NUL first (501 in every state), then other control and 8-bit octets. */
static enum smtp_cmd_result scan_octets(const char *line, size_t len)
{
	enum smtp_cmd_result r = SMTP_CMD_OK;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c == 0)
			return SMTP_CMD_NUL;
		if ((c < 0x20 && c != '\t') || c > 0x7e)
			r = SMTP_CMD_8BIT;
	}
	return r;
}

enum smtp_cmd_result smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out)
{
	memset(out, 0, sizeof *out);
	enum smtp_cmd_result r = scan_octets(line, len);

	size_t v = 0;
	while (v < len && line[v] != ' ')
		v++;
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if (ascii_equal_ci(line, v, verbs[i].name))
			out->verb = verbs[i].verb;

	/* The argument follows one SP; trailing white space is never significant. */
	if (v < len) {
		const char *arg = line + v + 1;
		size_t n = len - v - 1;
		while (n > 0 && (arg[n - 1] == ' ' || arg[n - 1] == '\t'))
			n--;
		if (n > 0) {
			out->arg = arg;
			out->arg_len = n;
		}
	}
	if (r == SMTP_CMD_OK && v == 0 && out->arg == NULL)
		return SMTP_CMD_EMPTY;
	return r;
}

/* A domain of a source route, validated through mailaddr ("x@" + domain). */
static int route_domain_ok(const char *d, size_t n)
{
	char tmp[MAILADDR_MAX + 3];
	struct mailaddr a;

	if (n == 0 || n > MAILADDR_DOMAIN_MAX)
		return 0;
	tmp[0] = 'x';
	tmp[1] = '@';
	memcpy(tmp + 2, d, n);
	return mailaddr_parse_exact(tmp, n + 2, &a) == MAILADDR_OK;
}

/*
 * A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain (RFC 5321 4.1.2),
 * followed by ":". Returns the octets used including the ':', or 0 when invalid.
 */
static size_t skip_route(const char *s, size_t len)
{
	size_t i = 0;
	for (;;) {
		if (i >= len || s[i] != '@')
			return 0;
		size_t start = ++i;
		while (i < len && s[i] != ',' && s[i] != ':')
			i++;
		if (i >= len || !route_domain_ok(s + start, i - start))
			return 0;
		if (s[i++] == ':')
			return i;
	}
}

/*
 * Finds the '>' closing the path that opens at s[0] == '<', skipping quoted
 * strings (a quoted local part may contain '>'). Returns its index or 0.
 */
static size_t find_close(const char *s, size_t len)
{
	int quoted = 0;
	for (size_t i = 1; i < len; i++) {
		char c = s[i];
		if (quoted && c == '\\') {
			i++;
			continue;
		}
		if (c == '"')
			quoted = !quoted;
		else if (c == '>' && !quoted)
			return i;
	}
	return 0;
}

static enum smtp_path_result from_mailaddr(enum mailaddr_result r)
{
	switch (r) {
	case MAILADDR_OK: return SMTP_PATH_OK;
	case MAILADDR_LOCAL_TOO_LONG:
	case MAILADDR_DOMAIN_TOO_LONG: return SMTP_PATH_TOO_LONG;
	case MAILADDR_8BIT: return SMTP_PATH_8BIT;
	default: return SMTP_PATH_SYNTAX;
	}
}

/* Octet classes inside the path: 8-bit wins over control (553 vs 501). */
static enum smtp_path_result scan_path_octets(const char *s, size_t len)
{
	enum smtp_path_result r = SMTP_PATH_OK;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c > 0x7e)
			return SMTP_PATH_8BIT;
		if (c < 0x20)
			r = SMTP_PATH_SYNTAX;
	}
	return r;
}

/* The part between '<' and '>' (exclusive): null, postmaster, route, mailbox. */
static enum smtp_path_result parse_inner(const char *s, size_t n, int rcpt, struct smtp_path *out)
{
	if (n == 0) {
		out->null = 1;
		out->mailbox = s;
		return SMTP_PATH_OK;
	}
	if (rcpt && mailaddr_is_postmaster(s, n)) {
		out->postmaster = 1;
		out->mailbox = s;
		out->mailbox_len = n;
		return SMTP_PATH_OK;
	}
	if (s[0] == '@') {
		size_t r = skip_route(s, n);
		if (r == 0 || r == n)
			return SMTP_PATH_SYNTAX;
		out->source_route = 1;
		s += r;
		n -= r;
	}
	enum mailaddr_result m = mailaddr_parse_exact(s, n, &out->addr);
	if (m != MAILADDR_OK)
		return from_mailaddr(m);
	out->mailbox = s;
	out->mailbox_len = n;
	return SMTP_PATH_OK;
}

static enum smtp_path_result parse_path(const char *arg, size_t len, const char *prefix,
                                        struct smtp_path *out)
{
	size_t plen = strlen(prefix);
	if (len < plen || !ascii_equal_ci(arg, plen, prefix))
		return SMTP_PATH_SYNTAX;
	const char *s = arg + plen;
	size_t n = len - plen;
	if (n > 0 && s[0] == ' ') {
		s++;
		n--;
	}
	if (n == 0 || s[0] != '<')
		return SMTP_PATH_SYNTAX;

	size_t close = find_close(s, n);
	enum smtp_path_result r = scan_path_octets(s, close ? close : n);
	if (r != SMTP_PATH_OK)
		return r;
	if (close == 0)
		return SMTP_PATH_SYNTAX;
	if (close + 1 > SMTP_PATH_MAX)
		return SMTP_PATH_TOO_LONG;

	r = parse_inner(s + 1, close - 1, ascii_equal_ci(prefix, plen, "TO:"), out);
	if (r != SMTP_PATH_OK)
		return r;

	/* Mail-parameters follow after SP (RFC 5321 4.1.1.2); extra spaces tolerated. */
	size_t i = close + 1;
	if (i < n && s[i] != ' ')
		return SMTP_PATH_SYNTAX;
	while (i < n && s[i] == ' ')
		i++;
	if (i < n) {
		out->params = s + i;
		out->params_len = n - i;
	}
	return SMTP_PATH_OK;
}

enum smtp_path_result smtp_path_parse(const char *arg, size_t len, const char *prefix,
                                      struct smtp_path *out)
{
	memset(out, 0, sizeof *out);
	if (arg == NULL || prefix == NULL)
		return SMTP_PATH_SYNTAX;
	enum smtp_path_result r = parse_path(arg, len, prefix, out);
	if (r != SMTP_PATH_OK)
		memset(out, 0, sizeof *out);
	return r;
}
