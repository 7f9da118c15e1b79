/*
 * received: see received.h. The part before the date is a sequence of tokens
 * (words, angle addresses) separated by CFWS; clauses are keyword-value pairs
 * (RFC 5321 4.4: "FROM" FWS Extended-Domain, CFWS "BY" FWS Extended-Domain,
 * CFWS "FOR" FWS (Path / Mailbox)), read in the order they come.
 */
#include "proto/received.h"

#include <string.h>

#include "proto/rfc5322.h"

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

enum tok_kind { TOK_END, TOK_WORD, TOK_SEMI, TOK_BAD };

/* The clauses read so far. */
struct clauses {
	struct received_info info;
	int n_by, n_for;
	enum clause want; /* the keyword whose value comes next */
};

static int is_wsp(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
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
 * The next token at or after *pos into *t: TOK_WORD (a word or an angle
 * address), TOK_SEMI (a ';' outside comments, quoted strings and angle
 * addresses), TOK_END, or TOK_BAD on an unterminated comment, quoted string or
 * angle address.
 */
static enum tok_kind next_token(const char *v, size_t n, size_t *pos, struct tok *t)
{
	size_t i = *pos;
	while (i < n && (is_wsp(v[i]) || v[i] == '(')) {
		if (v[i] == '(') {
			size_t j = rfc5322_skip_comment(v, n, i);
			if (j == 0)
				return TOK_BAD;
			i = j;
		} else {
			i++;
		}
	}
	t->start = i;
	if (i >= n)
		return TOK_END;
	if (v[i] == ';') {
		*pos = i + 1;
		return TOK_SEMI;
	}
	int angle = v[i] == '<', closed = 0;
	for (; i < n && !closed; i++) {
		if (v[i] == '"') {
			long j = skip_quoted(v, n, i);
			if (j < 0)
				return TOK_BAD;
			i = (size_t)j - 1;
		} else if (angle && v[i] == '>') {
			closed = 1;
		} else if (!angle && (is_wsp(v[i]) || v[i] == '(' || v[i] == ';' || v[i] == '<')) {
			break;
		}
	}
	if (angle && !closed)
		return TOK_BAD;
	t->end = i;
	*pos = i;
	return TOK_WORD;
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

/* One word of the clauses: a keyword, or the value of the keyword before it. */
static void clause_word(const char *v, struct tok t, struct clauses *c)
{
	if (c->want == CLAUSE_NONE) {
		c->want = keyword(v + t.start, t.end - t.start);
		return;
	}
	if (c->want == CLAUSE_BY && c->n_by++ == 0) {
		c->info.by = v + t.start;
		c->info.by_len = t.end - t.start;
	} else if (c->want == CLAUSE_FOR && c->info.by != NULL && c->n_for++ == 0) {
		for_value(v, t, &c->info);
	}
	c->want = CLAUSE_NONE;
}

int received_parse(const char *v, size_t n, struct received_info *out)
{
	size_t pos = 0;
	struct tok t;
	struct clauses cur, at_semi;
	enum tok_kind k;
	int semis = 0;
	memset(&cur, 0, sizeof cur);
	memset(out, 0, sizeof *out);
	/* The date follows the LAST ';' (a date-time holds none outside comments): a
	 * ';' before it is a HELO's, and the server's clauses come after it. */
	while ((k = next_token(v, n, &pos, &t)) == TOK_WORD || k == TOK_SEMI) {
		if (k == TOK_SEMI) {
			at_semi = cur;
			semis++;
			cur.want = CLAUSE_NONE;
		} else {
			clause_word(v, t, &cur);
		}
	}
	struct clauses *c = semis ? &at_semi : &cur;
	if (k == TOK_BAD || c->n_by > 1)
		return -1; /* two by clauses: a client's HELO ("x by mx.isp for <a@b>") wrote one */
	*out = c->info;
	if (c->n_for > 1) {
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
