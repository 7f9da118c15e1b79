/*
 * received: see received.h. The part before the date is a sequence of tokens
 * (words, angle addresses) separated by CFWS; clauses are keyword-value pairs
 * (RFC 5321 4.4: "FROM" FWS Extended-Domain, CFWS "BY" FWS Extended-Domain,
 * CFWS "FOR" FWS (Path / Mailbox)), read in the order they come.
 */
#include "proto/received.h"

#include <string.h>

#include "util/strutil.h"

enum clause {
	CLAUSE_NONE,
	CLAUSE_FROM,
	CLAUSE_BY,
	CLAUSE_VIA,
	CLAUSE_WITH,
	CLAUSE_ID,
	CLAUSE_FOR,
};

struct tok {
	size_t start, end;
};

static int is_wsp(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Skips a comment at v[i] == '(' (nested, quoted-pairs); the index after it, or -1 unterminated. */
static long skip_comment(const char *v, size_t n, size_t i)
{
	int depth = 0;
	for (; i < n; i++) {
		if (v[i] == '\\') {
			i++;
		} else if (v[i] == '(') {
			depth++;
		} else if (v[i] == ')' && --depth == 0) {
			return (long)(i + 1);
		}
	}
	return -1;
}

/* The index after a quoted string at v[i] == '"', or -1 unterminated. */
static long skip_quoted(const char *v, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (v[i] == '\\')
			i++;
		else if (v[i] == '"')
			return (long)(i + 1);
	}
	return -1;
}

/*
 * The next token at or after *pos into *t: 1, 0 at the date's ';' or the end,
 * -1 on an unterminated comment, quoted string or angle address.
 */
static int next_token(const char *v, size_t n, size_t *pos, struct tok *t)
{
	size_t i = *pos;
	while (i < n && (is_wsp(v[i]) || v[i] == '(')) {
		if (v[i] == '(') {
			long j = skip_comment(v, n, i);
			if (j < 0)
				return -1;
			i = (size_t)j;
		} else {
			i++;
		}
	}
	*pos = i;
	if (i >= n || v[i] == ';')
		return 0;
	t->start = i;
	int angle = v[i] == '<';
	for (; i < n; i++) {
		if (v[i] == '"') {
			long j = skip_quoted(v, n, i);
			if (j < 0)
				return -1;
			i = (size_t)j - 1;
		} else if (angle && v[i] == '>') {
			i++;
			break;
		} else if (!angle && (is_wsp(v[i]) || v[i] == '(' || v[i] == ';' || v[i] == '<')) {
			break;
		}
	}
	if (angle && v[i - 1] != '>')
		return -1;
	t->end = i;
	*pos = i;
	return 1;
}

static enum clause keyword(const char *s, size_t len)
{
	static const struct {
		const char *word;
		enum clause c;
	} words[] = {{"from", CLAUSE_FROM}, {"by", CLAUSE_BY}, {"via", CLAUSE_VIA},
	             {"with", CLAUSE_WITH}, {"id", CLAUSE_ID}, {"for", CLAUSE_FOR}};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (ascii_equal_ci(s, len, words[i].word))
			return words[i].c;
	return CLAUSE_NONE;
}

/* The for clause's value: angle brackets and a trailing ',' taken off. */
static void for_value(const char *v, struct tok t, struct received_info *out)
{
	if (t.end > t.start && v[t.end - 1] == ',')
		t.end--;
	if (t.end - t.start >= 2 && v[t.start] == '<' && v[t.end - 1] == '>') {
		t.start++;
		t.end--;
	}
	if (t.end > t.start) {
		out->for_addr = v + t.start;
		out->for_len = t.end - t.start;
	}
}

int received_parse(const char *v, size_t n, struct received_info *out)
{
	size_t pos = 0;
	struct tok t;
	enum clause want = CLAUSE_NONE; /* the keyword whose value comes next */
	int r, n_for = 0;
	memset(out, 0, sizeof *out);
	while ((r = next_token(v, n, &pos, &t)) == 1) {
		if (want == CLAUSE_NONE) {
			want = keyword(v + t.start, t.end - t.start);
			continue;
		}
		if (want == CLAUSE_BY && out->by == NULL) {
			out->by = v + t.start;
			out->by_len = t.end - t.start;
		} else if (want == CLAUSE_FOR && out->by != NULL && n_for++ == 0) {
			for_value(v, t, out);
		}
		want = CLAUSE_NONE;
	}
	if (r < 0) {
		memset(out, 0, sizeof *out);
		return -1;
	}
	if (n_for > 1) {
		out->for_addr = NULL; /* two for clauses: which one did the server write? */
		out->for_len = 0;
	}
	return 0;
}

int received_by_matches(const char *host, size_t len, const char *want)
{
	size_t wlen = strlen(want);
	if (len > 0 && host[len - 1] == '.')
		len--;
	if (wlen > 0 && want[wlen - 1] == '.')
		wlen--;
	if (wlen == 0 || len == 0)
		return 0;
	if (want[0] == '.') {
		/* ".isp.example": a host below it, never the domain itself */
		if (len <= wlen)
			return 0;
		host += len - wlen;
		len = wlen;
	} else if (len != wlen) {
		return 0;
	}
	for (size_t i = 0; i < len; i++)
		if (ascii_lower((unsigned char)host[i]) != ascii_lower((unsigned char)want[i]))
			return 0;
	return 1;
}
