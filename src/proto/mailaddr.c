/*
 * mailaddr: RFC 5321 section 4.1.2 Mailbox parsing.
 *
 *   Mailbox    = Local-part "@" ( Domain / address-literal )
 *   Local-part = Dot-string / Quoted-string
 *   Dot-string = Atom *("." Atom)
 *   Domain     = sub-domain *("." sub-domain)
 *   sub-domain = Let-dig [Ldh-str]
 *
 * Each part is scanned greedily over the octets its grammar can contain and then
 * validated, so "the first octet that cannot continue the mailbox" is the first
 * octet outside the part's character class. A Minger query relies on this to find
 * the end of a quoted local part that contains spaces.
 */
#include "proto/mailaddr.h"

#include <string.h>

#include "util/strutil.h"

/* Control octets and octets above 0x7E: never part of a Mailbox without SMTPUTF8. */
static int is_bad_octet(unsigned char c)
{
	return c < 0x20 || c > 0x7e;
}

static int is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 5322 3.2.3 atext, which RFC 5321 4.1.2 uses for Atom. */
static int is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Result for a part that stopped at s[i]: a bad octet is reported as such. */
static enum mailaddr_result stop_result(const char *s, size_t len, size_t i,
                                        enum mailaddr_result otherwise)
{
	if (i < len && is_bad_octet((unsigned char)s[i]))
		return MAILADDR_8BIT;
	return otherwise;
}

/*
 * Quoted-string = DQUOTE *QcontentSMTP DQUOTE (RFC 5321 4.1.2), where qtextSMTP is
 * %d32-33 / %d35-91 / %d93-126 and quoted-pairSMTP is "\" followed by %d32-126.
 * Sets *end just past the closing quote.
 */
static enum mailaddr_result scan_quoted(const char *s, size_t len, size_t *end)
{
	size_t i = 1;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (is_bad_octet(c))
			return MAILADDR_8BIT;
		if (c == '"') {
			*end = i + 1;
			return MAILADDR_OK;
		}
		if (c == '\\') {
			if (i + 1 >= len)
				return MAILADDR_SYNTAX;
			if (is_bad_octet((unsigned char)s[i + 1]))
				return MAILADDR_8BIT;
			i += 2;
			continue;
		}
		i++;
	}
	return MAILADDR_SYNTAX; /* no closing quote */
}

/* Dot-string: atoms separated by single dots, no leading or trailing dot. */
static enum mailaddr_result scan_dot_string(const char *s, size_t len, size_t *end)
{
	size_t i = 0;
	int need_atext = 1; /* at the start and after every dot */

	while (i < len && (is_atext((unsigned char)s[i]) || s[i] == '.')) {
		if (s[i] == '.') {
			if (need_atext)
				return MAILADDR_SYNTAX; /* ".a", "a..b" */
			need_atext = 1;
		} else {
			need_atext = 0;
		}
		i++;
	}
	if (i == 0)
		return stop_result(s, len, i, MAILADDR_SYNTAX); /* "@b", "<a@b>", " a@b" */
	if (need_atext)
		return MAILADDR_SYNTAX; /* "a.@b" */
	*end = i;
	return MAILADDR_OK;
}

/* Snum = 1*3DIGIT representing a decimal integer value in the range 0 through 255. */
static int check_ipv4(const char *s, size_t len)
{
	size_t i = 0;
	int part;

	for (part = 0; part < 4; part++) {
		unsigned v = 0;
		size_t digits = 0;
		if (part > 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
		while (i < len && is_digit((unsigned char)s[i]) && digits < 4) {
			v = v * 10 + (unsigned)(s[i] - '0');
			digits++;
			i++;
		}
		if (digits == 0 || digits > 3 || v > 255)
			return 0;
	}
	return i == len;
}

static int hex_value(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * IPv6-addr (RFC 5321 4.1.3): IPv6-full / IPv6-comp / IPv6v4-full / IPv6v4-comp.
 * Groups are 1*4HEXDIG; at most one "::"; the total is 8 groups (an IPv4 tail
 * counts as two); a "::" stands for at least one group, and the "-comp" forms
 * allow at most 6 (pure) or 4 (v4) explicit groups.
 */
static int check_ipv6(const char *s, size_t len)
{
	size_t i = 0;
	int groups = 0, compressed = 0;

	if (len >= 2 && s[0] == ':' && s[1] == ':') {
		compressed = 1;
		i = 2;
	} else if (len >= 1 && s[0] == ':') {
		return 0;
	}
	while (i < len) {
		size_t start = i, digits = 0;
		while (i < len && hex_value((unsigned char)s[i]) >= 0 && digits < 5) {
			i++;
			digits++;
		}
		if (i < len && s[i] == '.') {
			/* The rest must be an IPv4 tail starting at this group. */
			if (!check_ipv4(s + start, len - start))
				return 0;
			groups += 2;
			i = len;
			break;
		}
		if (digits == 0 || digits > 4)
			return 0;
		groups++;
		if (i == len)
			break;
		if (s[i] != ':')
			return 0;
		i++;
		if (i < len && s[i] == ':') {
			if (compressed)
				return 0;
			compressed = 1;
			i++;
			if (i == len)
				break;
		} else if (i == len) {
			return 0; /* trailing single ":" */
		}
	}
	/* "::" stands for at least two groups: at most 6 more may be written. */
	return compressed ? groups <= 6 : groups == 8;
}

/* 1 if s starts with the lower-case string p, ignoring ASCII case. */
static int prefix_ci(const char *s, const char *p)
{
	for (; *p; s++, p++) {
		char c = (*s >= 'A' && *s <= 'Z') ? (char)(*s + 32) : *s;
		if (c != *p)
			return 0;
	}
	return 1;
}

/* address-literal = "[" ( IPv4-address-literal / IPv6-address-literal ) "]". */
static enum mailaddr_result scan_literal(const char *s, size_t len, size_t *end)
{
	size_t i = 1;

	while (i < len && s[i] != ']') {
		if (is_bad_octet((unsigned char)s[i]))
			return MAILADDR_8BIT;
		if (s[i] == '[' || s[i] == '\\' || s[i] == ' ')
			return MAILADDR_SYNTAX;
		i++;
	}
	if (i >= len)
		return MAILADDR_SYNTAX;
	*end = i + 1;
	if (*end > MAILADDR_DOMAIN_MAX)
		return MAILADDR_DOMAIN_TOO_LONG;
	/* "IPv6:" is a case-insensitive ABNF string (RFC 5234 2.3). */
	if (i - 1 >= 5 && prefix_ci(s + 1, "ipv6:"))
		return check_ipv6(s + 6, i - 6) ? MAILADDR_OK : MAILADDR_SYNTAX;
	return check_ipv4(s + 1, i - 1) ? MAILADDR_OK : MAILADDR_SYNTAX;
}

/* Domain: labels of letters, digits and inner hyphens, separated by single dots. */
static enum mailaddr_result scan_domain(const char *s, size_t len, size_t *end)
{
	size_t i = 0, label = 0;

	while (i < len && (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) ||
	                   s[i] == '-' || s[i] == '.'))
		i++;
	if (i == 0)
		return stop_result(s, len, i, MAILADDR_SYNTAX);
	if (i > MAILADDR_DOMAIN_MAX)
		return MAILADDR_DOMAIN_TOO_LONG;
	for (size_t k = 0; k <= i; k++) {
		if (k < i && s[k] != '.')
			continue;
		/* s[label..k) is one sub-domain: Let-dig [Ldh-str]. */
		if (k == label || s[label] == '-' || s[k - 1] == '-')
			return MAILADDR_SYNTAX;
		label = k + 1;
	}
	*end = i;
	return MAILADDR_OK;
}

enum mailaddr_result mailaddr_parse(const char *s, size_t len, size_t *consumed,
                                    struct mailaddr *out)
{
	enum mailaddr_result r;
	size_t local_end = 0, dom_end = 0;
	int quoted;

	memset(out, 0, sizeof *out);
	*consumed = 0;
	if (len == 0)
		return MAILADDR_EMPTY;
	quoted = s[0] == '"';
	r = quoted ? scan_quoted(s, len, &local_end) : scan_dot_string(s, len, &local_end);
	if (r != MAILADDR_OK)
		return r;
	if (local_end > MAILADDR_LOCAL_MAX)
		return MAILADDR_LOCAL_TOO_LONG;
	if (local_end >= len || s[local_end] == ' ')
		return MAILADDR_NO_AT;
	if (s[local_end] != '@')
		return stop_result(s, len, local_end, MAILADDR_SYNTAX);

	const char *dom = s + local_end + 1;
	size_t dom_len = len - local_end - 1;
	int literal = dom_len > 0 && dom[0] == '[';
	r = literal ? scan_literal(dom, dom_len, &dom_end) : scan_domain(dom, dom_len, &dom_end);
	if (r != MAILADDR_OK)
		return r;

	out->local = s;
	out->local_len = local_end;
	out->domain = dom;
	out->domain_len = dom_end;
	out->quoted = quoted;
	out->literal = literal;
	*consumed = local_end + 1 + dom_end;
	return MAILADDR_OK;
}

enum mailaddr_result mailaddr_parse_exact(const char *s, size_t len, struct mailaddr *out)
{
	size_t used;
	enum mailaddr_result r = mailaddr_parse(s, len, &used, out);

	if (r != MAILADDR_OK)
		return r;
	if (used != len) {
		r = stop_result(s, len, used, MAILADDR_SYNTAX);
		memset(out, 0, sizeof *out);
	}
	return r;
}

int mailaddr_key(const struct mailaddr *a, char *out, size_t outsz)
{
	size_t n = a->local_len + 1 + a->domain_len, o = 0;

	if (n >= outsz || n > MAILADDR_MAX)
		return -1;
	for (size_t i = 0; i < a->local_len; i++)
		out[o++] = (char)((a->local[i] >= 'A' && a->local[i] <= 'Z') ? a->local[i] + 32
		                                                             : a->local[i]);
	out[o++] = '@';
	for (size_t i = 0; i < a->domain_len; i++)
		out[o++] = (char)((a->domain[i] >= 'A' && a->domain[i] <= 'Z') ? a->domain[i] + 32
		                                                               : a->domain[i]);
	out[o] = '\0';
	return (int)o;
}

int mailaddr_is_postmaster(const char *local, size_t len)
{
	return local != NULL && ascii_equal_ci(local, len, "postmaster");
}

const char *mailaddr_strerror(enum mailaddr_result r)
{
	switch (r) {
	case MAILADDR_OK: return "ok";
	case MAILADDR_EMPTY: return "empty address";
	case MAILADDR_SYNTAX: return "not an RFC 5321 mailbox";
	case MAILADDR_NO_AT: return "no @domain after the local part";
	case MAILADDR_LOCAL_TOO_LONG: return "local part longer than 64 octets";
	case MAILADDR_DOMAIN_TOO_LONG: return "domain longer than 255 octets";
	case MAILADDR_8BIT: return "control or non-ASCII octet";
	}
	return "unknown error";
}
