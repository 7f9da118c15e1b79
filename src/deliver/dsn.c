/*
 * dsn: delivery status notifications (RFC 3464) in a multipart/report (RFC 6522).
 *
 * The notice has three parts: a text/plain explanation for people, the
 * message/delivery-status fields for programs, and what is returned of the
 * original (RFC 3461 4.3). Everything we write ourselves is 7-bit text built
 * from sanitised inputs; only the returned part can carry 8-bit octets, and it
 * is copied only when it is clean 8bit data (RFC 2045 2.8: no NUL, CR and LF
 * only as CRLF, lines of at most 998 octets), so the notice is always valid
 * without BINARYMIME.
 *
 * The composition is deterministic, so when the boundary turns out to occur in
 * the content it is lengthened and the notice written again (see
 * compose_until_unique); when the notice does not fit the buffer it is written
 * again with less of the original returned (compose_with_fallback).
 */
#include "deliver/dsn.h"

#include <stdlib.h>
#include <string.h>

#include "proto/esmtp_param.h"
#include "proto/rfc5322.h"
#include "proto/smtp_reply.h"

#define LINE_MAX_OCTETS 998 /* RFC 5322 2.1.1, without CRLF */
#define FOLD_AT 78 /* RFC 5322 2.1.1: SHOULD be no more than 78 */
#define TEXT_WIDTH 76 /* the human-readable part */
#define QUEUE_ID_MAX 31
#define BOUNDARY_MAX 70 /* RFC 2046 5.1.1 */
#define BOUNDARY_BASE "=_sharemail_"
#define SB_MAX 2048 /* one paragraph of the text part: address + diagnostic + host fit */
#define FIELD_MAX 1200 /* one delivery-status field value */

static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Why the returned part is what it is; the text part explains it. */
enum why {
	WHY_FULL,
	WHY_ASKED_HDRS, /* RET=HDRS */
	WHY_NOTICE, /* delay and success notices return only the header section */
	WHY_TOO_LARGE, /* over return_max */
	WHY_UNCLEAN, /* NUL, bare CR/LF or a line over 998 octets */
	WHY_NO_ROOM_FULL, /* the whole message did not fit out->max */
	WHY_EMPTY,
	WHY_DISABLED, /* return_max = 0 */
	WHY_NO_HEADERS,
	WHY_NO_ROOM, /* even the header section did not fit out->max */
};

/* What the header section walk found (or wrote). */
struct hdr_walk {
	size_t bytes, fields;
	int truncated; /* stopped at return_max */
	int omitted; /* fields left out as unclean, or a line that is not a field */
	int has8;
};

struct ctx {
	const struct dsn_params *p;
	const struct dsn_msg *m;
	const struct dsn_rcpt *r;
	size_t n;
	struct dsn_out *o;
	enum dsn_returned what;
	enum why why;
	struct hdr_walk hw;
	int has8;
	char boundary[BOUNDARY_MAX + 1];
	size_t blen;
};

/* A bounded string builder for one paragraph or field value; excess is dropped. */
struct sb {
	char b[SB_MAX];
	size_t n;
};

/* ---- the output buffer ---- */

void dsn_out_init(struct dsn_out *o, size_t max)
{
	memset(o, 0, sizeof *o);
	o->max = max;
}

void dsn_out_free(struct dsn_out *o)
{
	if (!o)
		return;
	free(o->p);
	size_t max = o->max;
	dsn_out_init(o, max);
}

static void out_reset(struct dsn_out *o)
{
	o->len = 0;
	o->overflow = 0;
	o->nomem = 0;
}

/* Makes room for `need` more octets; -1 (and a sticky flag) past max or without memory. */
static int out_room(struct dsn_out *o, size_t need)
{
	if (o->overflow || o->nomem)
		return -1;
	if (o->len > o->max || need > o->max - o->len) {
		o->overflow = 1;
		return -1;
	}
	size_t want = o->len + need;
	if (want <= o->cap)
		return 0;
	size_t cap = o->cap ? o->cap : 4096;
	if (cap > o->max)
		cap = o->max;
	while (cap < want)
		cap = cap > o->max / 2 ? o->max : cap * 2;
	char *np = realloc(o->p, cap);
	if (!np) {
		o->nomem = 1;
		return -1;
	}
	o->p = np;
	o->cap = cap;
	return 0;
}

static void put(struct dsn_out *o, const char *s, size_t n)
{
	if (n && out_room(o, n) == 0) {
		memcpy(o->p + o->len, s, n);
		o->len += n;
	}
}

static void puts_(struct dsn_out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void crlf(struct dsn_out *o)
{
	put(o, "\r\n", 2);
}

/* ---- bounded builders and sanitising ---- */

static void sb_put(struct sb *s, const char *p, size_t n)
{
	if (n > sizeof s->b - s->n)
		n = sizeof s->b - s->n;
	memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void sb_puts(struct sb *s, const char *p)
{
	sb_put(s, p, strlen(p));
}

/*
 * Appends s with every octet outside printable ASCII (0x20-0x7E) replaced by
 * '?': a field value can never be split, folded or forged by what the sender
 * or a peer chose (RFC 3464 2.3.2: no CR or LF in a DSN field).
 */
static void sb_put_clean(struct sb *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n && s->n < sizeof s->b; i++) {
		unsigned char c = (unsigned char)p[i];
		s->b[s->n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
}

/* Host names: printable and no space, at most DSN_HOST_MAX octets. */
static void sb_put_host(struct sb *s, const char *h)
{
	for (size_t i = 0; h[i] && i < DSN_HOST_MAX && s->n < sizeof s->b; i++) {
		unsigned char c = (unsigned char)h[i];
		s->b[s->n++] = (c > 0x20 && c < 0x7f) ? (char)c : '?';
	}
}

static void sb_put_uint(struct sb *s, unsigned long long v)
{
	char d[24];
	size_t i = sizeof d;
	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sb_put(s, d + i, sizeof d - i);
}

/* 1 if t can be written as an RFC 5322 date. */
static int date_ok(int64_t t)
{
	char d[RFC5322_DATE_MAX];
	return rfc5322_date_format(t, d, sizeof d) >= 0;
}

/* Appends the RFC 5322 date of t; returns 0, or -1 (nothing appended) if t has none. */
static int sb_put_date(struct sb *s, int64_t t)
{
	char d[RFC5322_DATE_MAX];
	if (rfc5322_date_format(t, d, sizeof d) < 0)
		return -1;
	sb_puts(s, d);
	return 0;
}

/*
 * Sanitises diagnostic text (a peer's reply: any octets) into out: CR, LF, TAB
 * and SP become single spaces (a multi-line reply reads as one line), other
 * controls, DEL and 8-bit octets '?', leading and trailing space dropped, at
 * most DSN_DIAG_MAX octets and then "...". Returns the length.
 */
static size_t diag_clean(const char *s, size_t n, char out[DSN_DIAG_MAX + 4])
{
	size_t o = 0;
	int space = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = o > 0;
			continue;
		}
		if (o + (size_t)space + 1 > DSN_DIAG_MAX) {
			memcpy(out + o, "...", 3);
			return o + 3;
		}
		if (space)
			out[o++] = ' ';
		space = 0;
		out[o++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	return o;
}

/* ---- header fields and text paragraphs ---- */

/* Length of the word at v[i..n) up to the next space. */
static size_t word_len(const char *v, size_t n, size_t i)
{
	size_t j = i;
	while (j < n && v[j] != ' ')
		j++;
	return j - i;
}

/*
 * Writes "name: value" CRLF, folding (RFC 5322 2.2.3) before a single space
 * when the next word would pass column 78. Folding only inserts CRLF before an
 * existing space, so unfolding gives the value back exactly; a word is never
 * cut, and the bounded inputs keep every line within 998 octets.
 */
static void put_field(struct dsn_out *o, const char *name, const char *v, size_t n)
{
	size_t col = strlen(name) + 2;
	puts_(o, name);
	put(o, ": ", 2);
	for (size_t i = 0; i < n;) {
		size_t w = word_len(v, n, i);
		put(o, v + i, w);
		col += w;
		i += w;
		if (i >= n)
			break;
		size_t next = word_len(v, n, i + 1);
		if (next > 0 && col + 1 + next > FOLD_AT) {
			crlf(o);
			col = 0;
		}
		put(o, " ", 1);
		col++;
		i++;
	}
	crlf(o);
}

static void put_field_sb(struct dsn_out *o, const char *name, const struct sb *s)
{
	put_field(o, name, s->b, s->n);
}

static size_t put_indent(struct dsn_out *o, size_t indent)
{
	put(o, "        ", indent);
	return indent;
}

/*
 * Writes a paragraph of sanitised text as lines of at most TEXT_WIDTH octets,
 * continuation lines indented by `indent` (< 8); a word longer than a line is
 * cut (this is prose for people, not a field).
 */
static void put_para(struct dsn_out *o, const char *t, size_t n, size_t first, size_t indent)
{
	size_t col = put_indent(o, first);
	int fresh = 1;
	for (size_t i = 0; i < n;) {
		if (t[i] == ' ') {
			i++;
			continue;
		}
		size_t w = word_len(t, n, i);
		if (!fresh && col + 1 + w > TEXT_WIDTH) {
			crlf(o);
			col = put_indent(o, indent);
			fresh = 1;
		}
		if (!fresh) {
			put(o, " ", 1);
			col++;
		}
		while (w > TEXT_WIDTH - col) {
			size_t k = TEXT_WIDTH - col;
			put(o, t + i, k);
			i += k;
			w -= k;
			crlf(o);
			col = put_indent(o, indent);
		}
		put(o, t + i, w);
		col += w;
		i += w;
		fresh = 0;
	}
	crlf(o);
}

static void put_para_sb(struct dsn_out *o, const struct sb *s, size_t first, size_t indent)
{
	put_para(o, s->b, s->n, first, indent);
}

/* ---- validation ---- */

static int host_ok(const char *h)
{
	size_t n = h ? strlen(h) : 0;
	if (n == 0 || n > DSN_HOST_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		if (!(strchr(alnum, c) || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

/* RFC 5322 3.2.3 dot-atom-text octets (atext and '.'). */
static int id_left_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > DSN_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(strchr(alnum, id[i]) || strchr("!#$%&'*+-/=?^_`{|}~.", id[i])))
			return 0;
	return 1;
}

static int queue_id_ok(const char *q)
{
	size_t n = q ? strlen(q) : 0;
	if (n == 0 || n > QUEUE_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr(alnum, q[i]))
			return 0;
	return 1;
}

static int rcpt_ok(const struct dsn_rcpt *r)
{
	if (!r->addr || !r->addr[0] || strlen(r->addr) > DSN_ADDR_MAX)
		return 0;
	if (r->orcpt) {
		const char *semi = strchr(r->orcpt, ';');
		if (!semi || semi == r->orcpt || strlen(r->orcpt) > DSN_ADDR_MAX)
			return 0;
	}
	return r->action >= DSN_ACTION_FAILED && r->action <= DSN_ACTION_EXPANDED;
}

static enum dsn_result validate(const struct dsn_params *p, const struct dsn_msg *m,
                                const struct dsn_rcpt *r, size_t n)
{
	char d[RFC5322_DATE_MAX];
	if (!p || !m || !m->sender)
		return DSN_INVALID;
	if (m->sender[0] == '\0')
		return DSN_NULL_SENDER;
	if (strlen(m->sender) > DSN_ADDR_MAX || !host_ok(p->hostname) ||
	    !id_left_ok(p->message_id) || !queue_id_ok(m->queue_id))
		return DSN_INVALID;
	if (m->envid && strlen(m->envid) > ESMTP_ENVID_MAX)
		return DSN_INVALID;
	if (p->kind < DSN_KIND_FAILURE || p->kind > DSN_KIND_SUCCESS || !r || n == 0)
		return DSN_INVALID;
	if ((!m->data && m->len) || rfc5322_date_format(p->now, d, sizeof d) < 0)
		return DSN_INVALID;
	for (size_t i = 0; i < n; i++)
		if (!rcpt_ok(&r[i]))
			return DSN_INVALID;
	return DSN_OK;
}

/* ---- what is returned ---- */

/*
 * 1 if d[0..n) is clean 8bit data (RFC 2045 2.8): no NUL, CR and LF only as
 * CRLF, no line over 998 octets. Sets *has8 when an octet is 8-bit.
 */
static int data_clean(const char *d, size_t n, int *has8)
{
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '\r') {
			if (i + 1 >= n || d[i + 1] != '\n')
				return 0;
			i++;
			col = 0;
			continue;
		}
		if (c == 0 || c == '\n' || ++col > LINE_MAX_OCTETS)
			return 0;
		if (c >= 0x80)
			*has8 = 1;
	}
	return 1;
}

/*
 * Walks the header section field by field (a message without an empty line is
 * all header section), keeping clean fields while they fit in cap octets, and
 * writes them to o when o is not NULL. The same walk plans and writes, so the
 * text part can say exactly what the third part holds.
 */
static void headers_walk(const struct dsn_msg *m, size_t cap, struct dsn_out *o, struct hdr_walk *w)
{
	long he = rfc5322_header_end(m->data, m->len);
	size_t end = he < 0 ? m->len : (size_t)he, pos = 0;
	struct rfc5322_field f;
	int r;

	memset(w, 0, sizeof *w);
	while ((r = rfc5322_next_field(m->data, end, &pos, &f)) != 0) {
		if (r < 0) {
			w->omitted = 1; /* not a field: what follows is not header section */
			break;
		}
		size_t tl = f.total_len;
		int ends = tl >= 2 && f.name[tl - 2] == '\r' && f.name[tl - 1] == '\n';
		size_t need = tl + (ends ? 0 : 2);
		int h8 = 0;
		if (!data_clean(f.name, tl, &h8)) {
			w->omitted = 1;
			continue;
		}
		if (need > cap - w->bytes) {
			w->truncated = 1;
			break;
		}
		if (o) {
			put(o, f.name, tl);
			if (!ends)
				crlf(o);
		}
		w->bytes += need;
		w->fields++;
		w->has8 |= h8;
	}
}

/* Plans the header-section part; NONE when no field can be returned. */
static void plan_headers(struct ctx *c, enum why why)
{
	headers_walk(c->m, c->p->return_max, NULL, &c->hw);
	c->what = c->hw.fields ? DSN_RETURNED_HEADERS : DSN_RETURNED_NONE;
	c->why = c->hw.fields ? why : WHY_NO_HEADERS;
	c->has8 = c->hw.has8;
}

/* RFC 3461 4.3: FULL is for "failed" notices; HDRS, and every other notice, get headers. */
static void plan_return(struct ctx *c)
{
	const struct dsn_msg *m = c->m;
	int has8 = 0;

	c->what = DSN_RETURNED_NONE;
	c->has8 = 0;
	if (m->len == 0) {
		c->why = WHY_EMPTY;
	} else if (c->p->return_max == 0) {
		c->why = WHY_DISABLED;
	} else if (c->p->kind != DSN_KIND_FAILURE) {
		plan_headers(c, WHY_NOTICE);
	} else if (m->ret == ESMTP_RET_HDRS) {
		plan_headers(c, WHY_ASKED_HDRS);
	} else if (m->len > c->p->return_max) {
		plan_headers(c, WHY_TOO_LARGE);
	} else if (!data_clean(m->data, m->len, &has8)) {
		plan_headers(c, WHY_UNCLEAN);
	} else {
		c->what = DSN_RETURNED_FULL;
		c->why = WHY_FULL;
		c->has8 = has8;
	}
}

/* The next smaller plan after the notice did not fit out->max; 0 when none is left. */
static int plan_smaller(struct ctx *c)
{
	if (c->what == DSN_RETURNED_FULL) {
		plan_headers(c, WHY_NO_ROOM_FULL);
		return 1;
	}
	if (c->what == DSN_RETURNED_HEADERS) {
		c->what = DSN_RETURNED_NONE;
		c->why = WHY_NO_ROOM;
		c->has8 = 0;
		return 1;
	}
	return 0;
}

/* ---- the parts ---- */

static const char *action_word(enum dsn_action a)
{
	static const char *const w[] = {"failed", "delayed", "delivered", "relayed", "expanded"};
	return w[a];
}

/*
 * The Status to report: the recipient's code when it is a valid RFC 3463 code
 * whose class fits the action (RFC 3464 2.3.3: a "failed" may carry 4.x.x),
 * else the action's generic code.
 */
static const char *status_of(const struct dsn_rcpt *r)
{
	const char *s = r->status;
	int ok = s && smtp_reply_enh_valid(s);
	switch (r->action) {
	case DSN_ACTION_FAILED: return ok && (s[0] == '5' || s[0] == '4') ? s : "5.0.0";
	case DSN_ACTION_DELAYED: return ok && s[0] == '4' ? s : "4.0.0";
	default: return ok && s[0] == '2' ? s : "2.0.0";
	}
}

static int reply_code_ok(int code)
{
	return code >= 200 && code <= 599;
}

static size_t diag_len(const struct dsn_rcpt *r)
{
	return r->diag ? (r->diag_len ? r->diag_len : strlen(r->diag)) : 0;
}

/* "smtp; 550 text" for a reply (RFC 3464 2.3.6), "X-Sharemail; text" for a local reason. */
static void diag_value(const struct dsn_rcpt *r, struct sb *s)
{
	char d[DSN_DIAG_MAX + 4];
	size_t n = diag_clean(r->diag ? r->diag : "", diag_len(r), d);
	if (reply_code_ok(r->reply_code)) {
		sb_puts(s, "smtp; ");
		sb_put_uint(s, (unsigned long long)r->reply_code);
		if (n)
			sb_puts(s, " ");
	} else {
		sb_puts(s, "X-Sharemail; ");
	}
	sb_put(s, d, n);
}

static int has_diag(const struct dsn_rcpt *r)
{
	return reply_code_ok(r->reply_code) || diag_len(r) > 0;
}

static void put_date_field(struct dsn_out *o, const char *name, int64_t t)
{
	struct sb s = {.n = 0};
	if (t != 0 && sb_put_date(&s, t) == 0)
		put_field_sb(o, name, &s);
}

/* RFC 3464 2.2: the per-message fields. */
static void put_status_message(struct ctx *c)
{
	struct sb s = {.n = 0};
	if (c->m->envid) {
		sb_put_clean(&s, c->m->envid, strlen(c->m->envid));
		put_field_sb(c->o, "Original-Envelope-Id", &s);
	}
	s.n = 0;
	sb_puts(&s, "dns; ");
	sb_puts(&s, c->p->hostname);
	put_field_sb(c->o, "Reporting-MTA", &s);
	s.n = 0;
	sb_puts(&s, c->m->queue_id); /* RFC 3464 2.4 (c): our log's index */
	put_field_sb(c->o, "X-Sharemail-Queue-ID", &s);
	put_date_field(c->o, "Arrival-Date", c->m->arrival);
}

/* RFC 3464 2.3: one recipient's fields, in the order of the grammar. */
static void put_status_rcpt(struct dsn_out *o, const struct dsn_rcpt *r)
{
	struct sb s = {.n = 0};
	if (r->orcpt) { /* RFC 3461 4.2: addr-type ";" the decoded address, as given */
		sb_put_clean(&s, r->orcpt, strlen(r->orcpt));
		put_field_sb(o, "Original-Recipient", &s);
	}
	s.n = 0;
	sb_puts(&s, "rfc822; ");
	sb_put_clean(&s, r->addr, strlen(r->addr));
	put_field_sb(o, "Final-Recipient", &s);
	put_field(o, "Action", action_word(r->action), strlen(action_word(r->action)));
	put_field(o, "Status", status_of(r), strlen(status_of(r)));
	if (r->remote_mta && r->remote_mta[0]) {
		s.n = 0;
		sb_puts(&s, "dns; ");
		sb_put_host(&s, r->remote_mta);
		put_field_sb(o, "Remote-MTA", &s);
	}
	if (has_diag(r)) {
		s.n = 0;
		diag_value(r, &s);
		put_field_sb(o, "Diagnostic-Code", &s);
	}
	put_date_field(o, "Last-Attempt-Date", r->last_attempt);
	if (r->action == DSN_ACTION_DELAYED)
		put_date_field(o, "Will-Retry-Until", r->retry_until);
}

static void put_status_part(struct ctx *c)
{
	put_status_message(c);
	for (size_t i = 0; i < c->n; i++) {
		crlf(c->o);
		put_status_rcpt(c->o, &c->r[i]);
	}
}

/* What happened to one recipient and what happens next, for people. */
static void text_rcpt_outcome(const struct dsn_rcpt *r, struct sb *s)
{
	static const char *const word[] = {"failed", "not delivered yet", "delivered", "relayed",
	                                   "delivered"};
	sb_puts(s, "<");
	sb_put_clean(s, r->addr, strlen(r->addr));
	sb_puts(s, ">: ");
	sb_puts(s, word[r->action]);
	sb_puts(s, " (");
	sb_puts(s, status_of(r));
	sb_puts(s, ")");
	switch (r->action) {
	case DSN_ACTION_FAILED: sb_puts(s, ". No further attempts will be made."); break;
	case DSN_ACTION_DELAYED:
		sb_puts(s, ". This system will keep trying");
		if (r->retry_until && date_ok(r->retry_until)) {
			sb_puts(s, " until ");
			sb_put_date(s, r->retry_until);
		}
		sb_puts(s, "; you do not need to send the message again.");
		break;
	case DSN_ACTION_DELIVERED: sb_puts(s, "."); break;
	case DSN_ACTION_RELAYED:
		sb_puts(s, " to a mail system that does not report on delivery; no further report "
		           "will come for this recipient.");
		break;
	default: sb_puts(s, " to an alias, and passed on to its members."); break;
	}
}

/* The reason: the peer's reply (sanitised) or our own. */
static void text_rcpt_reason(const struct dsn_rcpt *r, struct sb *s)
{
	char d[DSN_DIAG_MAX + 4];
	size_t n = diag_clean(r->diag ? r->diag : "", diag_len(r), d);
	if (reply_code_ok(r->reply_code)) {
		if (r->remote_mta && r->remote_mta[0]) {
			sb_puts(s, "The mail server ");
			sb_put_host(s, r->remote_mta);
			sb_puts(s, " replied: ");
		} else {
			sb_puts(s, "The reply was: ");
		}
		sb_put_uint(s, (unsigned long long)r->reply_code);
		sb_puts(s, " ");
	} else {
		sb_puts(s, "Reason: ");
	}
	sb_put(s, d, n);
}

static const char *text_intro(enum dsn_kind k)
{
	switch (k) {
	case DSN_KIND_FAILURE:
		return "Your message could not be delivered to one or more of its recipients. The "
		       "details are below.";
	case DSN_KIND_DELAY:
		return "Your message has not been delivered yet to one or more of its recipients. "
		       "This is only a warning: this system is still trying, and you do not need "
		       "to send the message again.";
	default: return "This is the delivery report you asked for on your message.";
	}
}

static void text_returned(const struct ctx *c, struct sb *s)
{
	static const char *const why[] = {
	        [WHY_FULL] = "Your message is attached below.",
	        [WHY_ASKED_HDRS] = "The header section of your message is attached below, as "
	                           "you asked (RET=HDRS).",
	        [WHY_NOTICE] = "The header section of your message is attached below.",
	        [WHY_TOO_LARGE] = "", /* with its sizes, below */
	        [WHY_UNCLEAN] = "Your message holds data that cannot be returned as it is (a NUL, "
	                        "a bare CR or LF, or a line over 998 octets); only its header "
	                        "section is attached below.",
	        [WHY_NO_ROOM_FULL] = "Your message is too large to be returned whole in this "
	                             "report; only its header section is attached below.",
	        [WHY_EMPTY] = "Your message was empty, so nothing of it is attached.",
	        [WHY_DISABLED] = "This system does not return messages in its reports.",
	        [WHY_NO_HEADERS] = "Your message has no header section that could be attached.",
	        [WHY_NO_ROOM] = "Your message is too large to be attached to this report, even "
	                        "its header section.",
	};
	if (c->why == WHY_TOO_LARGE) {
		sb_puts(s, "Your message was ");
		sb_put_uint(s, c->m->len);
		sb_puts(s, " octets, more than the ");
		sb_put_uint(s, c->p->return_max);
		sb_puts(s, " this system returns whole; only its header section is attached "
		           "below.");
	} else {
		sb_puts(s, why[c->why]);
	}
	if (c->what == DSN_RETURNED_HEADERS && c->hw.truncated) {
		sb_puts(s, " The header section was cut short at ");
		sb_put_uint(s, c->p->return_max);
		sb_puts(s, " octets.");
	}
	if (c->what == DSN_RETURNED_HEADERS && c->hw.omitted)
		sb_puts(s, " Lines that were not clean header fields were left out.");
}

static void put_text_part(struct ctx *c)
{
	struct sb s = {.n = 0};
	sb_puts(&s, "This is the mail system at host ");
	sb_puts(&s, c->p->hostname);
	sb_puts(&s, ".");
	put_para_sb(c->o, &s, 0, 0);
	crlf(c->o);
	s.n = 0;
	sb_puts(&s, text_intro(c->p->kind));
	put_para_sb(c->o, &s, 0, 0);
	for (size_t i = 0; i < c->n; i++) {
		crlf(c->o);
		s.n = 0;
		text_rcpt_outcome(&c->r[i], &s);
		put_para_sb(c->o, &s, 0, 4);
		if (has_diag(&c->r[i])) {
			s.n = 0;
			text_rcpt_reason(&c->r[i], &s);
			put_para_sb(c->o, &s, 4, 4);
		}
	}
	crlf(c->o);
	s.n = 0;
	text_returned(c, &s);
	put_para_sb(c->o, &s, 0, 0);
	crlf(c->o);
	puts_(c->o, "For help, forward this report to your postmaster.\r\n");
}

static void put_returned_part(struct ctx *c)
{
	static const char *const desc[][2] = {
	        [DSN_KIND_FAILURE] = {"Undelivered Message", "Undelivered Message Headers"},
	        [DSN_KIND_DELAY] = {"Delayed Message", "Delayed Message Headers"},
	        [DSN_KIND_SUCCESS] = {"Delivered Message", "Delivered Message Headers"},
	};
	int full = c->what == DSN_RETURNED_FULL;
	puts_(c->o, "Content-Description: ");
	puts_(c->o, desc[c->p->kind][full ? 0 : 1]);
	puts_(c->o, full ? "\r\nContent-Type: message/rfc822\r\n"
	                 : "\r\nContent-Type: text/rfc822-headers\r\n");
	if (c->has8) /* RFC 2045 6.2, RFC 6152: declared, and the notice needs 8BITMIME */
		puts_(c->o, "Content-Transfer-Encoding: 8bit\r\n");
	crlf(c->o);
	if (full) {
		put(c->o, c->m->data, c->m->len);
	} else {
		struct hdr_walk w;
		headers_walk(c->m, c->p->return_max, c->o, &w);
	}
}

static const char *subject_of(enum dsn_kind k)
{
	switch (k) {
	case DSN_KIND_FAILURE: return "Undelivered Mail Returned to Sender";
	case DSN_KIND_DELAY: return "Delayed Mail (still being retried)";
	default: return "Successful Mail Delivery Report";
	}
}

/* RFC 5322 3.6 fields, RFC 3834 Auto-Submitted, RFC 6522 Content-Type. */
static void put_top_header(struct ctx *c)
{
	struct sb s = {.n = 0};
	sb_puts(&s, "Mail Delivery System <MAILER-DAEMON@");
	sb_puts(&s, c->p->hostname);
	sb_puts(&s, ">");
	put_field_sb(c->o, "From", &s);
	s.n = 0;
	sb_puts(&s, "<");
	sb_put_clean(&s, c->m->sender, strlen(c->m->sender));
	sb_puts(&s, ">");
	put_field_sb(c->o, "To", &s);
	put_field(c->o, "Subject", subject_of(c->p->kind), strlen(subject_of(c->p->kind)));
	s.n = 0;
	sb_put_date(&s, c->p->now);
	put_field_sb(c->o, "Date", &s);
	s.n = 0;
	sb_puts(&s, "<");
	sb_puts(&s, c->p->message_id);
	sb_puts(&s, "@");
	sb_puts(&s, c->p->hostname);
	sb_puts(&s, ">");
	put_field_sb(c->o, "Message-ID", &s);
	puts_(c->o, "MIME-Version: 1.0\r\nAuto-Submitted: auto-replied\r\n"
	            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	            "\tboundary=\"");
	put(c->o, c->boundary, c->blen);
	puts_(c->o, "\"\r\n");
	if (c->has8)
		puts_(c->o, "Content-Transfer-Encoding: 8bit\r\n");
	crlf(c->o);
	puts_(c->o, "This is a MIME-encapsulated message.\r\n");
}

/* RFC 2046 5.1.1: the delimiter is CRLF "--" boundary; its CRLF is not content. */
static void put_delimiter(struct ctx *c, int last)
{
	puts_(c->o, "\r\n--");
	put(c->o, c->boundary, c->blen);
	puts_(c->o, last ? "--\r\n" : "\r\n");
}

static void write_notice(struct ctx *c)
{
	out_reset(c->o);
	put_top_header(c);
	put_delimiter(c, 0);
	puts_(c->o, "Content-Description: Notification\r\n"
	            "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	put_text_part(c);
	put_delimiter(c, 0);
	puts_(c->o, "Content-Description: Delivery report\r\n"
	            "Content-Type: message/delivery-status\r\n\r\n");
	put_status_part(c);
	if (c->what != DSN_RETURNED_NONE) {
		put_delimiter(c, 0);
		put_returned_part(c);
	}
	put_delimiter(c, 1);
}

/* ---- the boundary ---- */

static void boundary_init(struct ctx *c)
{
	size_t b = strlen(BOUNDARY_BASE), q = strlen(c->m->queue_id);
	memcpy(c->boundary, BOUNDARY_BASE, b);
	memcpy(c->boundary + b, c->m->queue_id, q);
	c->blen = b + q;
	c->boundary[c->blen] = '\0';
}

/*
 * Counts the occurrences of the boundary in the notice (overlaps included) and,
 * for each, the letter or digit that follows it.
 */
static size_t boundary_count(const struct ctx *c, size_t follow[62])
{
	const char *p = c->o->p, *end = p + c->o->len;
	size_t count = 0;
	memset(follow, 0, 62 * sizeof follow[0]);
	while (p && (size_t)(end - p) >= c->blen &&
	       (p = memmem(p, (size_t)(end - p), c->boundary, c->blen)) != NULL) {
		count++;
		if ((size_t)(end - p) > c->blen) {
			const char *k = memchr(alnum, p[c->blen], sizeof alnum - 1);
			if (k && p[c->blen])
				follow[k - alnum]++;
		}
		p++;
	}
	return count;
}

/*
 * Writes the notice until the boundary occurs only as our own delimiters (RFC
 * 2046 5.1.1: it must not appear in the encapsulated content). Each round
 * appends the character that least often follows the current boundary in the
 * content, which divides the collisions by at least 62: a 20 MB message crafted
 * against us costs at most five rounds, and 70 characters are never reached.
 */
static enum dsn_result compose_until_unique(struct ctx *c)
{
	size_t follow[62];
	for (;;) {
		write_notice(c);
		if (c->o->nomem)
			return DSN_NOMEM;
		if (c->o->overflow)
			return DSN_TOO_BIG;
		size_t ours = c->what == DSN_RETURNED_NONE ? 4 : 5;
		if (boundary_count(c, follow) <= ours)
			return DSN_OK;
		if (c->blen >= BOUNDARY_MAX)
			return DSN_INVALID;
		size_t best = 0;
		for (size_t i = 1; i < 62; i++)
			if (follow[i] < follow[best])
				best = i;
		c->boundary[c->blen++] = alnum[best];
		c->boundary[c->blen] = '\0';
	}
}

/* Less and less of the original until the notice fits out->max. */
static enum dsn_result compose_with_fallback(struct ctx *c)
{
	for (;;) {
		enum dsn_result rc = compose_until_unique(c);
		if (rc != DSN_TOO_BIG || !plan_smaller(c))
			return rc;
	}
}

enum dsn_result dsn_compose(const struct dsn_params *p, const struct dsn_msg *msg,
                            const struct dsn_rcpt *r, size_t n, struct dsn_out *out,
                            struct dsn_envelope *env)
{
	struct ctx c = {.p = p, .m = msg, .r = r, .n = n, .o = out};
	enum dsn_result rc = validate(p, msg, r, n);

	memset(env, 0, sizeof *env);
	out_reset(out);
	if (rc != DSN_OK)
		return rc;
	plan_return(&c);
	boundary_init(&c);
	rc = compose_with_fallback(&c);
	if (rc != DSN_OK) {
		out_reset(out);
		return rc;
	}
	env->mail_from = "";
	env->rcpt_to = msg->sender;
	env->body_8bitmime = c.has8;
	env->returned = c.what;
	return DSN_OK;
}

const char *dsn_result_str(enum dsn_result rc)
{
	switch (rc) {
	case DSN_OK: return "ok";
	case DSN_NULL_SENDER: return "null sender: no notice for <>";
	case DSN_INVALID: return "invalid parameters";
	case DSN_TOO_BIG: return "notice larger than its maximum";
	case DSN_NOMEM: return "out of memory";
	}
	return "unknown";
}
