/* rfc5322_addr: see rfc5322_addr.h. */
#include "proto/rfc5322_addr.h"

#include <string.h>

struct out {
	char *buf;
	size_t bufsz, used;
	const char **addrs;
	size_t max, n;
	size_t start; /* where the mailbox being written began in buf */
	int angle; /* the mailbox had an angle address: only its inside counts */
	int fail;
};

static int is_wsp(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static void put(struct out *o, char ch)
{
	if (o->used + 1 >= o->bufsz) {
		o->fail = 1;
		return;
	}
	o->buf[o->used++] = ch;
}

/* Skips a comment starting at v[i] == '(' (nested, quoted-pairs); returns the index after it. */
static size_t skip_comment(const char *v, size_t n, size_t i, int *bad)
{
	int depth = 0;
	for (; i < n; i++) {
		if (v[i] == '\\') {
			i++;
		} else if (v[i] == '(') {
			depth++;
		} else if (v[i] == ')' && --depth == 0) {
			return i + 1;
		}
	}
	*bad = 1;
	return n;
}

/* Copies a quoted string starting at v[i] == '"' (quotes included); returns the index after it. */
static size_t copy_quoted(struct out *o, const char *v, size_t n, size_t i, int keep, int *bad)
{
	if (keep)
		put(o, v[i]);
	for (i++; i < n; i++) {
		if (v[i] == '\\' && i + 1 < n) {
			if (keep) {
				put(o, v[i]);
				put(o, v[i + 1]);
			}
			i++;
			continue;
		}
		if (keep && v[i] != '\r' && v[i] != '\n')
			put(o, v[i]);
		if (v[i] == '"')
			return i + 1;
	}
	*bad = 1;
	return n;
}

/* Ends the mailbox being written: kept unless empty. */
static void mailbox_end(struct out *o)
{
	if (o->used > o->start) {
		if (o->n >= o->max) {
			o->fail = 1;
			return;
		}
		put(o, '\0');
		o->addrs[o->n++] = o->buf + o->start;
	}
	o->start = o->used;
	o->angle = 0;
}

/* An angle address from v[i] == '<': its inside, route ("@a,@b:") dropped. */
static size_t angle_addr(struct out *o, const char *v, size_t n, size_t i, int *bad)
{
	o->used = o->start; /* the display name before it is not the address */
	o->angle = 1;
	for (i++; i < n; i++) {
		if (v[i] == '>')
			break;
		if (v[i] == '(')
			i = skip_comment(v, n, i, bad) - 1;
		else if (v[i] == '"')
			i = copy_quoted(o, v, n, i, 1, bad) - 1;
		else if (v[i] == ':' && o->used > o->start && o->buf[o->start] == '@')
			o->used = o->start; /* obs-route */
		else if (!is_wsp(v[i]))
			put(o, v[i]);
	}
	if (i >= n)
		*bad = 1;
	return i + 1;
}

int rfc5322_addr_list(const char *v, size_t n, char *buf, size_t bufsz, const char **addrs,
                      size_t max)
{
	struct out o = {buf, bufsz, 0, addrs, max, 0, 0, 0, 0};
	int bad = 0, group = 0;
	if (bufsz == 0)
		return -1;
	for (size_t i = 0; i < n && !bad && !o.fail;) {
		char ch = v[i];
		if (ch == '(') {
			i = skip_comment(v, n, i, &bad);
		} else if (ch == '"') {
			i = copy_quoted(&o, v, n, i, !o.angle, &bad);
		} else if (ch == '<') {
			i = angle_addr(&o, v, n, i, &bad);
		} else if (ch == '>') {
			bad = 1;
		} else if (ch == ',') {
			mailbox_end(&o);
			i++;
		} else if (ch == ':' && !group) {
			o.used = o.start; /* a group's display name */
			group = 1;
			i++;
		} else if (ch == ';') {
			if (!group)
				bad = 1;
			mailbox_end(&o);
			group = 0;
			i++;
		} else {
			if (!is_wsp(ch) && !o.angle)
				put(&o, ch);
			i++;
		}
	}
	if (!bad && !o.fail)
		mailbox_end(&o);
	return bad || o.fail ? -1 : (int)o.n;
}
