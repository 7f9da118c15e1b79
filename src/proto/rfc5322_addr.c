/*
 * rfc5322_addr: see rfc5322_addr.h. One list element per call: the element is
 * read octet by octet, its addr-spec copied out without CFWS, and classified
 * when its terminator (',' ';' or the end) is reached.
 */
#include "proto/rfc5322_addr.h"

#include <string.h>

#include "proto/rfc5322.h"

enum tok {
	TOK_NONE, /* nothing yet in the element */
	TOK_WORD, /* an atom, quoted string or domain literal just ended */
	TOK_SPECIAL, /* a '.' or '@' of an addr-spec just written */
};

/* One element being read. */
struct elem {
	char *buf;
	size_t bufsz, used;
	int toolong; /* the addr-spec did not fit buf */
	int phrase; /* two words with only CFWS between: a display name, not an addr-spec */
	int encoded; /* an RFC 2047 encoded word outside the angle address */
	int junk; /* a ')' ']' or '\\' outside a comment, quoted string or domain literal */
	int angle; /* an angle address was read */
	int after_angle; /* a token followed the angle address */
	int has_start; /* start is set */
	enum tok last;
	int gap; /* CFWS since the last token */
	size_t start, end; /* the element's non-white-space extent */
	size_t word_start, word_end; /* extent of the words outside the angle address */
	int has_words;
	size_t spec_start, spec_end;
};

static int is_wsp(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static void put(struct elem *e, char ch)
{
	if (e->used + 1 >= e->bufsz) {
		e->toolong = 1;
		return;
	}
	e->buf[e->used++] = ch;
}

/* Marks v[from..to) as part of the element's extent. */
static void extent(struct elem *e, size_t from, size_t to)
{
	if (!e->has_start) {
		e->start = from;
		e->has_start = 1;
	}
	e->end = to;
}

/* Marks v[from..to) as a word outside the angle address (the display name, or the addr-spec). */
static void word_extent(struct elem *e, size_t from, size_t to)
{
	if (e->angle) {
		e->after_angle = 1;
		return;
	}
	if (!e->has_words) {
		e->word_start = from;
		e->has_words = 1;
	}
	e->word_end = to;
}

/* A word begins outside the angle address: two words with only CFWS between make a phrase. */
static void word_begins(struct elem *e)
{
	if (e->last == TOK_WORD && e->gap)
		e->phrase = 1;
	e->gap = 0;
}

/* rfc5322_skip_comment, an unterminated comment marking the rest bad (the index n). */
static size_t skip_comment(const char *v, size_t n, size_t i, int *bad)
{
	size_t j = rfc5322_skip_comment(v, n, i);
	if (j == 0) {
		*bad = 1;
		return n;
	}
	return j;
}

/*
 * Copies a quoted string (at v[i] == '"', quotes and quoted-pairs included;
 * folding CRLFs dropped, RFC 5322 3.2.4) or a domain literal (v[i] == '[', up to
 * ']', its FWS dropped, 3.4.1) when keep; returns the index after it.
 */
static size_t copy_delimited(struct elem *e, const char *v, size_t n, size_t i, char close,
                             int keep, int *bad)
{
	if (keep)
		put(e, v[i]);
	for (i++; i < n; i++) {
		if (v[i] == '\\' && i + 1 < n) {
			if (v[i + 1] == '\r' || v[i + 1] == '\n')
				e->junk = 1; /* obs-qp of CR or LF (4.1): no address holds one */
			if (keep) {
				put(e, v[i]);
				put(e, v[i + 1]);
			}
			i++;
			continue;
		}
		/* folding is dropped from both; FWS inside a domain literal is not part of it */
		if (keep && v[i] != '\r' && v[i] != '\n' && !(close == ']' && is_wsp(v[i])))
			put(e, v[i]);
		if (v[i] == close)
			return i + 1;
	}
	*bad = 1;
	return n;
}

/*
 * The end of an RFC 2047 encoded word "=?charset?encoding?text?=" starting at
 * v[i], or 0 if none starts there. Its octets are printable and not white space
 * (RFC 2047 2, 5(3)); it is read as one token, whatever specials it holds.
 */
static size_t encoded_word_end(const char *v, size_t n, size_t i)
{
	int qmarks = 0;
	if (i + 1 >= n || v[i] != '=' || v[i + 1] != '?')
		return 0;
	for (size_t j = i + 2; j < n; j++) {
		unsigned char ch = (unsigned char)v[j];
		if (ch <= 0x20 || ch >= 0x7f)
			return 0;
		if (ch != '?')
			continue;
		if (++qmarks >= 3 && j + 1 < n && v[j + 1] == '=')
			return j + 2;
	}
	return 0;
}

static int is_special(char ch)
{
	return strchr("()<>[]:;@\\,.\"", ch) != NULL && ch != '\0';
}

/* An atom (or a run of octets that are not specials), and the '.' or '@' specials. */
static size_t atom(struct elem *e, const char *v, size_t n, size_t i)
{
	if (v[i] == '.' || v[i] == '@') {
		if (!e->angle)
			put(e, v[i]);
		word_extent(e, i, i + 1);
		e->last = TOK_SPECIAL;
		e->gap = 0;
		return i + 1;
	}
	size_t j = i;
	while (j < n && !is_wsp(v[j]) && !is_special(v[j]))
		j++;
	if (j == i) {
		e->junk =
		        1; /* every special has its own case: never reached, but always progress */
		return i + 1;
	}
	if (!e->angle) {
		word_begins(e);
		for (size_t k = i; k < j; k++)
			put(e, v[k]);
	}
	word_extent(e, i, j);
	e->last = TOK_WORD;
	return j;
}

/* An angle address from v[i] == '<': its inside, route ("@a,@b:") dropped (RFC 5322 4.4). */
static size_t angle_addr(struct elem *e, const char *v, size_t n, size_t i, int *bad)
{
	if (e->angle)
		e->after_angle = 1; /* a second angle address */
	e->used = 0; /* the display name before it is not the address */
	e->angle = 1;
	e->spec_start = i + 1;
	for (i++; i < n; i++) {
		if (v[i] == '>')
			break;
		if (v[i] == '(')
			i = skip_comment(v, n, i, bad) - 1;
		else if (v[i] == '"')
			i = copy_delimited(e, v, n, i, '"', 1, bad) - 1;
		else if (v[i] == '[')
			i = copy_delimited(e, v, n, i, ']', 1, bad) - 1;
		else if (v[i] == ':' && e->used > 0 && e->buf[0] == '@')
			e->used = 0; /* obs-route */
		else if (!is_wsp(v[i]))
			put(e, v[i]);
	}
	if (i >= n) {
		*bad = 1;
		return n;
	}
	e->spec_end = i;
	return i + 1;
}

/* A quoted string or a domain literal outside the angle address. */
static size_t delimited_word(struct elem *e, const char *v, size_t n, size_t i, int *bad)
{
	size_t j;
	if (!e->angle)
		word_begins(e);
	j = copy_delimited(e, v, n, i, v[i] == '"' ? '"' : ']', !e->angle, bad);
	word_extent(e, i, j);
	e->last = TOK_WORD;
	return j;
}

void rfc5322_addr_iter_init(struct rfc5322_addr_iter *it, const char *v, size_t n)
{
	memset(it, 0, sizeof *it);
	it->v = v;
	it->n = n;
}

static void elem_reset(struct elem *e, char *buf, size_t bufsz)
{
	memset(e, 0, sizeof *e);
	e->buf = buf;
	e->bufsz = bufsz;
}

/* Classifies a finished element into *m. Returns 1 for an empty element (skip silently). */
static int elem_finish(struct rfc5322_addr_iter *it, struct elem *e, struct rfc5322_mailbox *m,
                       enum rfc5322_addr_result *res)
{
	if (!e->has_start)
		return 1;
	memset(m, 0, sizeof *m);
	m->start = e->start;
	m->end = e->end;
	m->angle = e->angle;
	m->in_group = it->in_group;
	if (e->angle) {
		m->spec_start = e->spec_start;
		m->spec_end = e->spec_end;
		if (e->has_words) {
			m->name_start = e->word_start;
			m->name_end = e->word_end;
		}
	} else if (e->has_words) {
		m->spec_start = e->word_start;
		m->spec_end = e->word_end;
	}
	int not_mailbox = e->toolong || e->used == 0 || e->after_angle || e->junk ||
	                  (!e->angle && (e->phrase || e->encoded));
	if (not_mailbox) {
		*res = RFC5322_ADDR_SKIPPED;
		return 0;
	}
	e->buf[e->used] = '\0';
	m->addr = e->buf;
	m->addr_len = e->used;
	*res = RFC5322_ADDR_MAILBOX;
	return 0;
}

/* Reads one special or token of an element at v[i]; returns the next index. */
static size_t elem_token(struct rfc5322_addr_iter *it, struct elem *e, size_t i, int *bad)
{
	const char *v = it->v;
	size_t n = it->n, j;
	switch (v[i]) {
	case '(':
		j = skip_comment(v, n, i, bad);
		extent(e, i, j);
		e->gap = 1;
		return j;
	case '<':
		j = angle_addr(e, v, n, i, bad);
		extent(e, i, j);
		return j;
	case '>':
		*bad = 1; /* a stray '>' */
		return n;
	case '"':
	case '[':
		j = delimited_word(e, v, n, i, bad);
		extent(e, i, j);
		return j;
	case ')':
	case ']':
	case '\\':
		/* outside a comment, quoted string or domain literal: not a mailbox (RFC 5322 3.2) */
		j = (v[i] == '\\' && i + 1 < n) ? i + 2 : i + 1;
		e->junk = 1;
		word_extent(e, i, j);
		extent(e, i, j);
		return j;
	}
	j = encoded_word_end(v, n, i);
	if (j && !e->angle && (e->last != TOK_SPECIAL)) {
		word_begins(e);
		e->encoded = 1;
		word_extent(e, i, j);
		e->last = TOK_WORD;
	} else {
		j = atom(e, v, n, i);
	}
	extent(e, i, j);
	return j;
}

enum rfc5322_addr_result rfc5322_addr_next(struct rfc5322_addr_iter *it, char *buf, size_t bufsz,
                                           struct rfc5322_mailbox *m)
{
	struct elem e;
	enum rfc5322_addr_result res;
	int bad = 0;
	if (it->bad || bufsz == 0)
		return RFC5322_ADDR_BAD;
	elem_reset(&e, buf, bufsz);
	while (!bad) {
		size_t i = it->pos;
		if (i < it->n && is_wsp(it->v[i])) {
			it->pos++;
			if (e.last != TOK_NONE)
				e.gap = 1;
			continue;
		}
		if (i >= it->n || it->v[i] == ',' || it->v[i] == ';') {
			/* A ';' outside a group ends the element like ',': clients that
			 * separate addresses with ';' (Outlook's habit) still name them. */
			if (i < it->n)
				it->pos++;
			int empty = elem_finish(it, &e, m, &res);
			if (i < it->n && it->v[i] == ';')
				it->in_group = 0;
			if (!empty)
				return res;
			if (i >= it->n)
				return RFC5322_ADDR_END;
			elem_reset(&e, buf, bufsz);
			continue;
		}
		if (it->v[i] == ':') {
			/* RFC 5322 3.4: group = display-name ":" [group-list] ";" */
			if (it->in_group || e.angle) {
				bad = 1;
				break;
			}
			it->in_group = 1;
			it->pos++;
			elem_reset(&e, buf, bufsz);
			continue;
		}
		it->pos = elem_token(it, &e, i, &bad);
	}
	it->bad = 1;
	return RFC5322_ADDR_BAD;
}

int rfc5322_addr_list(const char *v, size_t n, char *buf, size_t bufsz, const char **addrs,
                      size_t max)
{
	struct rfc5322_addr_iter it;
	struct rfc5322_mailbox m;
	enum rfc5322_addr_result r;
	size_t used = 0, count = 0;
	rfc5322_addr_iter_init(&it, v, n);
	while (used < bufsz && (r = rfc5322_addr_next(&it, buf + used, bufsz - used, &m)) != 0) {
		if (r != RFC5322_ADDR_MAILBOX || count >= max)
			return -1;
		addrs[count++] = m.addr;
		used += m.addr_len + 1;
	}
	return used >= bufsz ? -1 : (int)count;
}
