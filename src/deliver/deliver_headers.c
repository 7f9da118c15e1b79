/*
 * deliver_headers: scanning the header section and building the trace fields
 * local delivery prepends. See deliver_headers.h.
 */
#include "deliver/deliver_headers.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proto/collect_trace.h"
#include "proto/rfc5322.h"
#include "queue/envelope.h"

/* Length of the part of buf[0..len) made of whole lines (up to the last LF). */
static size_t whole_lines(const char *buf, size_t len)
{
	while (len > 0 && buf[len - 1] != '\n')
		len--;
	return len;
}

/* Calls fn for every field of hdr[0..hlen); lines that are not fields are skipped. */
static void each_field(const char *hdr, size_t hlen,
                       int (*fn)(void *arg, const struct rfc5322_field *f), void *arg)
{
	size_t pos = 0;
	while (pos < hlen) {
		struct rfc5322_field f;
		size_t before = pos;
		int r = rfc5322_next_field(hdr, hlen, &pos, &f);
		if (r == 0)
			return;
		if (r < 0 || pos <= before) {
			/* Not a field (RFC 5322 2.2 says it should be): skip the line. */
			const char *nl = memchr(hdr + before, '\n', hlen - before);
			if (!nl)
				return;
			pos = (size_t)(nl - hdr) + 1;
			continue;
		}
		if (fn(arg, &f))
			return;
	}
}

static int scan_field(void *arg, const struct rfc5322_field *f)
{
	struct deliver_hdr_scan *s = arg;
	if (rfc5322_field_is(f, "Date"))
		s->has_date = 1;
	else if (rfc5322_field_is(f, "Received"))
		s->received++;
	else if (rfc5322_field_is(f, "Delivered-To"))
		s->delivered_to++;
	return 0;
}

void deliver_headers_scan(const char *buf, size_t len, int whole, struct deliver_hdr_scan *out)
{
	memset(out, 0, sizeof *out);
	long end = rfc5322_header_end(buf, len);
	if (end >= 0) {
		out->header_len = (size_t)end;
		out->complete = 1;
	} else {
		out->header_len = whole ? len : whole_lines(buf, len);
		out->complete = whole;
	}
	each_field(buf, out->header_len, scan_field, out);
}

struct dt_match {
	const char *mailbox;
	size_t len;
	int found;
	unsigned fields; /* seen so far */
	int isp_part; /* between our collection trace field and the ISP's topmost Received */
};

static int is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int match_field(void *arg, const struct rfc5322_field *f)
{
	struct dt_match *m = arg;
	if (m->fields++ == 0 && rfc5322_field_is(f, "Received") &&
	    collect_trace_is_ours(f->value, f->value_len)) {
		m->isp_part = 1; /* collected: see proto/collect_trace.h */
		return 0;
	}
	if (m->isp_part && rfc5322_field_is(f, "Received"))
		m->isp_part = 0; /* below it: every hop's fields, ours of an earlier delivery too */
	if (m->isp_part || !rfc5322_field_is(f, "Delivered-To"))
		return 0;
	const char *v = f->value, *e = f->value + f->value_len;
	while (v < e && is_wsp(*v))
		v++;
	while (e > v && is_wsp(e[-1]))
		e--;
	if (e - v >= 2 && *v == '<' && e[-1] == '>') {
		v++;
		e--;
	}
	if ((size_t)(e - v) == m->len && strncasecmp(v, m->mailbox, m->len) == 0) {
		m->found = 1;
		return 1;
	}
	return 0;
}

int deliver_headers_delivered_to(const char *hdr, size_t hlen, const char *mailbox)
{
	struct dt_match m = {mailbox, strlen(mailbox), 0, 0, 0};
	each_field(hdr, hlen, match_field, &m);
	return m.found;
}

/* Appends "name: <pre>value<post>\r\n", control and 8-bit octets as '?'. */
static int put_field(char *out, size_t outsz, size_t *o, const char *name, const char *pre,
                     const char *value, const char *post)
{
	int n = snprintf(out + *o, outsz - *o, "%s: %s", name, pre);
	if (n < 0 || (size_t)n >= outsz - *o)
		return -1;
	*o += (size_t)n;
	size_t vl = strlen(value);
	if (vl + strlen(post) + 2 >= outsz - *o)
		return -1;
	for (size_t i = 0; i < vl; i++) {
		unsigned char c = (unsigned char)value[i];
		out[(*o)++] = (c < 0x20 || c > 0x7e) ? '?' : (char)c;
	}
	n = snprintf(out + *o, outsz - *o, "%s\r\n", post);
	if (n < 0 || (size_t)n >= outsz - *o)
		return -1;
	*o += (size_t)n;
	return 0;
}

long deliver_headers_build(const struct envelope *env, const char *mailbox, int orig_rcpt,
                           int add_date, char *out, size_t outsz)
{
	size_t o = 0;
	if (outsz == 0)
		return -1;
	out[0] = '\0';
	if (put_field(out, outsz, &o, "Return-Path", "<", env->mail_from ? env->mail_from : "",
	              ">") < 0 ||
	    put_field(out, outsz, &o, "Delivered-To", "", mailbox, "") < 0)
		return -1;
	for (size_t i = 0; orig_rcpt && i < env->n_rcpts; i++)
		if (put_field(out, outsz, &o, "X-Sharemail-Original-Rcpt", "", env->rcpts[i].addr,
		              "") < 0)
			return -1;
	if (add_date) {
		char date[64];
		if (rfc5322_date_format(env->received_at, date, sizeof date) < 0 ||
		    put_field(out, outsz, &o, "Date", "", date, "") < 0)
			return -1;
	}
	return (long)o;
}

/* ---- Domain Sharing ---- */

struct shared_scan {
	const char *host;
	size_t hlen;
	unsigned hops;
	int ours;
};

/* "by HOST;" at the start of the value (white space and folding around it ignored). */
static int shared_field(void *arg, const struct rfc5322_field *f)
{
	struct shared_scan *s = arg;
	if (!rfc5322_field_is(f, DELIVER_SHARED_FIELD))
		return 0;
	s->hops++;
	const char *v = f->value, *e = f->value + f->value_len;
	while (v < e && is_wsp(*v))
		v++;
	if (e - v < 3 || strncasecmp(v, "by", 2) != 0 || !is_wsp(v[2]))
		return 0;
	v += 3;
	while (v < e && is_wsp(*v))
		v++;
	const char *h = v;
	while (v < e && *v != ';' && !is_wsp(*v))
		v++;
	if ((size_t)(v - h) == s->hlen && strncasecmp(h, s->host, s->hlen) == 0)
		s->ours = 1;
	return 0;
}

void deliver_headers_shared(const char *hdr, size_t hlen, const char *host, unsigned *hops,
                            int *ours)
{
	struct shared_scan s = {host ? host : "", host ? strlen(host) : 0, 0, 0};
	each_field(hdr, hlen, shared_field, &s);
	*hops = s.hops;
	*ours = s.hlen > 0 && s.ours;
}

struct has_scan {
	const char *name;
	int found;
};

static int has_field(void *arg, const struct rfc5322_field *f)
{
	struct has_scan *s = arg;
	if (rfc5322_field_is(f, s->name)) {
		s->found = 1;
		return 1;
	}
	return 0;
}

int deliver_headers_has(const char *hdr, size_t hlen, const char *name)
{
	struct has_scan s = {name, 0};
	each_field(hdr, hlen, has_field, &s);
	return s.found;
}

long deliver_headers_shared_build(const char *host, const char *id, int64_t t, char *out,
                                  size_t outsz)
{
	char date[64], value[512];
	size_t o = 0;
	if (outsz == 0 || rfc5322_date_format(t, date, sizeof date) < 0)
		return -1;
	int n = snprintf(value, sizeof value, "%s; id %s; %s", host, id, date);
	if (n < 0 || (size_t)n >= sizeof value ||
	    put_field(out, outsz, &o, DELIVER_SHARED_FIELD, "by ", value, "") < 0)
		return -1;
	return (long)o;
}
