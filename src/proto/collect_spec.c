/*
 * collect_spec: see collect_spec.h. The host word reuses the next-hop syntax
 * (proto/nexthop_spec.h) so a POP3 source accepts the same names and address
 * literals as a relay route.
 */
#include "proto/collect_spec.h"

#include <stdio.h>
#include <string.h>

#include "util/strutil.h"

#define CS_QUOTE_MAX 60 /* longest word quoted back in an error */
#define CS_INTERVAL_MAX (7 * 86400)
#define CS_LEAVE_DAYS_MAX 3650
#define CS_SIZE_MIN 1024
#define CS_SIZE_MAX 2147483647LL

enum cs_opt {
	CS_OPT_PASSWORD_FILE = 0,
	CS_OPT_TLS,
	CS_OPT_INTERVAL,
	CS_OPT_LEAVE_DAYS,
	CS_OPT_MAX_SIZE,
	CS_OPT_COUNT,
};

static const char *const cs_opt_names[CS_OPT_COUNT] = {
        "password_file", "tls", "interval", "leave_days", "max_size",
};

static int quote_len(size_t len)
{
	return (int)(len > CS_QUOTE_MAX ? CS_QUOTE_MAX : len);
}

/*
 * A decimal number with an optional one-letter suffix from units ("smhd" with
 * mult {1,60,3600,86400}, or "kmg" with powers of 1024) into *out, at most max.
 * 0 or -1.
 */
static int number_suffixed(const char *v, size_t len, const char *units, const int64_t *mult,
                           int64_t max, int64_t *out)
{
	int64_t n = 0;
	size_t i = 0;
	for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
		n = n * 10 + (v[i] - '0');
		if (n > max)
			return -1;
	}
	if (i == 0)
		return -1;
	if (i < len) {
		const char *u =
		        i + 1 == len ? strchr(units, ascii_lower((unsigned char)v[i])) : NULL;
		if (!u || !*u)
			return -1;
		int64_t m = mult[u - units];
		if (n > max / m)
			return -1;
		n *= m;
	}
	*out = n;
	return 0;
}

static int opt_value(int o, const char *v, size_t vlen, struct collect_spec *out, char *err,
                     size_t errlen)
{
	static const int64_t secs[] = {1, 60, 3600, 86400};
	static const int64_t bytes[] = {1024, 1024 * 1024, 1024 * 1024 * 1024};
	int64_t n;
	switch (o) {
	case CS_OPT_PASSWORD_FILE:
		if (vlen >= COLLECT_SPEC_PATH_MAX) {
			str_errf(err, errlen, "password_file is longer than %d octets",
			         COLLECT_SPEC_PATH_MAX - 1);
			return -1;
		}
		memcpy(out->password_file, v, vlen);
		out->password_file[vlen] = '\0';
		return 0;
	case CS_OPT_TLS:
		if (ascii_equal_ci(v, vlen, "starttls"))
			out->tls = COLLECT_SPEC_TLS_STARTTLS;
		else if (ascii_equal_ci(v, vlen, "implicit"))
			out->tls = COLLECT_SPEC_TLS_IMPLICIT;
		else if (ascii_equal_ci(v, vlen, "none"))
			out->tls = COLLECT_SPEC_TLS_NONE;
		else {
			str_errf(err, errlen, "tls= must be starttls, implicit or none");
			return -1;
		}
		return 0;
	case CS_OPT_INTERVAL:
		if (number_suffixed(v, vlen, "smhd", secs, CS_INTERVAL_MAX, &n) < 0 || n < 1) {
			str_errf(err, errlen, "interval= must be 1s-7d (suffix s, m, h, d)");
			return -1;
		}
		out->interval = (int)n;
		return 0;
	case CS_OPT_LEAVE_DAYS:
		if (number_suffixed(v, vlen, "", secs, CS_LEAVE_DAYS_MAX, &n) < 0) {
			str_errf(err, errlen, "leave_days= must be 0-%d", CS_LEAVE_DAYS_MAX);
			return -1;
		}
		out->leave_days = (int)n;
		return 0;
	default:
		if (number_suffixed(v, vlen, "kmg", bytes, CS_SIZE_MAX, &n) < 0 ||
		    n < CS_SIZE_MIN) {
			str_errf(err, errlen, "max_size= must be 1k-2g octets (suffix k, m, g)");
			return -1;
		}
		out->max_size = n;
		return 0;
	}
}

/* One option word: checks it against those seen and applies it. 0 or -1 with err. */
static int opt_apply(const char *w, size_t len, unsigned *seen, struct collect_spec *out, char *err,
                     size_t errlen)
{
	const char *eq = memchr(w, '=', len);
	size_t nlen = eq ? (size_t)(eq - w) : len;
	int o = -1;
	for (int i = 0; i < CS_OPT_COUNT; i++)
		if (strlen(cs_opt_names[i]) == nlen && memcmp(cs_opt_names[i], w, nlen) == 0)
			o = i;
	if (o < 0 || !eq || nlen + 1 == len) {
		str_errf(err, errlen, "unknown or incomplete option '%.*s'", quote_len(len), w);
		return -1;
	}
	if (*seen & (1u << o)) {
		str_errf(err, errlen, "%s= given twice", cs_opt_names[o]);
		return -1;
	}
	*seen |= 1u << o;
	return opt_value(o, eq + 1, len - nlen - 1, out, err, errlen);
}

/* 1 when the HOST[:PORT] word names a port (after the ']' of a bracketed host). */
static int has_port(const char *w, size_t len)
{
	const char *close = len && w[0] == '[' ? memchr(w, ']', len) : NULL;
	const char *from = close ? close : w;
	return memchr(from, ':', len - (size_t)(from - w)) != NULL;
}

/* "USER@HOST[:PORT]" (after the scheme) into out. 0 or -1 with err. */
static int authority_parse(const char *a, size_t len, struct collect_spec *out, char *err,
                           size_t errlen)
{
	const char *at = NULL;
	for (size_t i = 0; i < len; i++)
		if (a[i] == '@')
			at = a + i; /* the last '@': USER may hold others */
	if (!at || at == a) {
		str_errf(err, errlen, "no user given (want pop3://USER@HOST[:PORT])");
		return -1;
	}
	size_t ulen = (size_t)(at - a);
	if (ulen > COLLECT_SPEC_USER_MAX) {
		str_errf(err, errlen, "the user name is longer than %d octets",
		         COLLECT_SPEC_USER_MAX);
		return -1;
	}
	memcpy(out->user, a, ulen);
	out->user[ulen] = '\0';
	const char *h = at + 1;
	size_t hlen = len - ulen - 1;
	struct nexthop_spec spec;
	char why[128];
	if (hlen == 0 || h[0] == ':' || nexthop_spec_parse(h, hlen, &spec, why, sizeof why) < 0) {
		str_errf(err, errlen, "host '%.*s': %s", quote_len(hlen), h,
		         hlen == 0 || h[0] == ':' ? "no host given" : why);
		return -1;
	}
	memcpy(out->host, spec.host, sizeof out->host);
	out->port = has_port(h, hlen) ? spec.port : 0;
	return 0;
}

/* The URL word: scheme and authority. *implicit 1 for pop3s://. 0 or -1 with err. */
static int url_parse(const char *w, size_t len, struct collect_spec *out, int *implicit, char *err,
                     size_t errlen)
{
	static const char p3[] = "pop3://", p3s[] = "pop3s://";
	size_t skip;
	if (len >= sizeof p3 - 1 && ascii_equal_ci(w, sizeof p3 - 1, p3)) {
		skip = sizeof p3 - 1;
		*implicit = 0;
	} else if (len >= sizeof p3s - 1 && ascii_equal_ci(w, sizeof p3s - 1, p3s)) {
		skip = sizeof p3s - 1;
		*implicit = 1;
	} else {
		str_errf(err, errlen,
		         "the first word must be pop3://USER@HOST[:PORT] or pop3s://...");
		return -1;
	}
	const char *a = w + skip;
	size_t alen = len - skip;
	if (alen && a[alen - 1] == '/')
		alen--; /* an empty path, as in pop3://u@h/ (RFC 2384) */
	if (memchr(a, '/', alen) || memchr(a, ';', alen)) {
		str_errf(err, errlen, "no path or ;AUTH= in the URL: options are words after it");
		return -1;
	}
	return authority_parse(a, alen, out, err, errlen);
}

static void name_format(struct collect_spec *s)
{
	int v6 = strchr(s->host, ':') != NULL;
	snprintf(s->name, sizeof s->name, "%s://%s@%s%s%s:%u",
	         s->tls == COLLECT_SPEC_TLS_IMPLICIT ? "pop3s" : "pop3", s->user, v6 ? "[" : "",
	         s->host, v6 ? "]" : "", s->port);
}

int collect_spec_parse(const char *line, struct collect_spec *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	out->interval = COLLECT_SPEC_INTERVAL_DEFAULT;
	out->max_size = COLLECT_SPEC_MAX_SIZE_DEFAULT;
	if (str_line_printable(line, err, errlen) < 0)
		return -1;
	size_t pos = 0, len;
	const char *w;
	int implicit = 0;
	if ((len = str_next_word(line, &pos, &w)) == 0) {
		str_errf(err, errlen, "empty (want pop3://USER@HOST[:PORT] password_file=F ...)");
		return -1;
	}
	if (url_parse(w, len, out, &implicit, err, errlen) < 0)
		return -1;
	unsigned seen = 0;
	while ((len = str_next_word(line, &pos, &w)) > 0)
		if (opt_apply(w, len, &seen, out, err, errlen) < 0)
			return -1;
	if (!(seen & (1u << CS_OPT_PASSWORD_FILE))) {
		str_errf(err, errlen, "password_file= is missing");
		return -1;
	}
	if (implicit) {
		if ((seen & (1u << CS_OPT_TLS)) && out->tls != COLLECT_SPEC_TLS_IMPLICIT) {
			str_errf(err, errlen,
			         "pop3s:// is implicit TLS: tls= may only be implicit");
			return -1;
		}
		out->tls = COLLECT_SPEC_TLS_IMPLICIT;
	}
	if (out->port == 0)
		out->port = out->tls == COLLECT_SPEC_TLS_IMPLICIT ? COLLECT_SPEC_PORT_POP3S
		                                                  : COLLECT_SPEC_PORT_POP3;
	name_format(out);
	return 0;
}

int collect_spec_matches(const struct collect_spec *s, const char *word)
{
	if (strcmp(word, s->name) == 0)
		return 1;
	const char *auth = strstr(s->name, "://");
	auth = auth ? auth + 3 : s->name;
	const char *colon = strrchr(auth, ':');
	size_t wl = strlen(word);
	/* The name without ":PORT", with or without the scheme. */
	size_t nolen = colon ? (size_t)(colon - s->name) : strlen(s->name);
	if (wl == nolen && strncmp(word, s->name, nolen) == 0)
		return 1;
	size_t alen = colon ? (size_t)(colon - auth) : strlen(auth);
	if ((wl == alen && strncmp(word, auth, alen) == 0) || strcmp(word, auth) == 0)
		return 1;
	return ascii_equal_ci(word, wl, s->host);
}
