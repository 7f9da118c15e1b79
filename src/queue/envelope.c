/*
 * envelope: allocation helpers for struct envelope (see envelope.h). The queue
 * stores envelopes with queue_file.c; this file only owns memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

/* A bound on recipients per envelope, far above any SMTP limit (RFC 5321 4.5.3.1.8). */
#define ENVELOPE_MAX_RCPTS 1000000

struct envelope *envelope_new(void)
{
	return calloc(1, sizeof(struct envelope));
}

void envelope_free(struct envelope *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n_rcpts; i++)
		envelope_rcpt_clear(&e->rcpts[i]);
	free(e->rcpts);
	free(e->mail_from);
	free(e->envid);
	free(e->helo);
	free(e->client_addr);
	free(e);
}

int envelope_set(char **field, const char *value)
{
	char *copy = NULL;
	if (value) {
		copy = strdup(value);
		if (!copy)
			return -1;
	}
	free(*field);
	*field = copy;
	return 0;
}

void envelope_rcpt_clear(struct envelope_rcpt *r)
{
	envelope_clear_finals(r);
	if (!r->route_in_addr)
		free(r->route);
	free(r->addr);
	free(r->orcpt);
	free(r->status);
	memset(r, 0, sizeof *r);
}

int envelope_rcpt_set_route(struct envelope_rcpt *r, const char *route)
{
	char *copy = NULL;
	if (route && !(copy = strdup(route)))
		return -1;
	if (!r->route_in_addr)
		free(r->route);
	r->route = copy;
	r->route_in_addr = 0;
	return 0;
}

int envelope_add_rcpt_routed(struct envelope *e, const char *addr, const char *orcpt,
                             unsigned notify, const char *route)
{
	if (!e || !addr || e->n_rcpts >= ENVELOPE_MAX_RCPTS)
		return -1;
	/* Grow geometrically so n recipients cost O(n) copies. */
	size_t n = e->n_rcpts;
	if ((n & (n - 1)) == 0) {
		size_t cap = n ? n * 2 : 1;
		struct envelope_rcpt *r = realloc(e->rcpts, cap * sizeof *r);
		if (!r)
			return -1;
		e->rcpts = r;
	}
	struct envelope_rcpt *r = &e->rcpts[n];
	memset(r, 0, sizeof *r);
	size_t alen = strlen(addr) + 1, rlen = route && *route ? strlen(route) + 1 : 0;
	r->addr = malloc(alen + rlen);
	r->orcpt = orcpt ? strdup(orcpt) : NULL;
	if (!r->addr || (orcpt && !r->orcpt)) {
		free(r->addr);
		free(r->orcpt);
		return -1;
	}
	memcpy(r->addr, addr, alen);
	if (rlen) {
		r->route = r->addr + alen;
		memcpy(r->route, route, rlen);
		r->route_in_addr = 1;
	}
	r->notify = notify;
	r->state = RCPT_PENDING;
	e->n_rcpts = n + 1;
	return (int)n;
}

int envelope_add_rcpt(struct envelope *e, const char *addr, const char *orcpt, unsigned notify)
{
	return envelope_add_rcpt_routed(e, addr, orcpt, notify, NULL);
}

int envelope_add_final(struct envelope_rcpt *r, const char *addr, enum rcpt_state state)
{
	if (!r || !addr || r->n_finals >= ENVELOPE_MAX_FINALS)
		return -1;
	size_t n = r->n_finals;
	if ((n & (n - 1)) == 0) { /* capacity: the next power of two, as for rcpts */
		struct envelope_final *f = realloc(r->finals, (n ? n * 2 : 1) * sizeof *f);
		if (!f)
			return -1;
		r->finals = f;
	}
	struct envelope_final *f = &r->finals[n];
	memset(f, 0, sizeof *f);
	f->addr = strdup(addr);
	if (!f->addr)
		return -1;
	f->state = state;
	r->n_finals = n + 1;
	return (int)n;
}

void envelope_clear_finals(struct envelope_rcpt *r)
{
	for (size_t i = 0; i < r->n_finals; i++) {
		free(r->finals[i].addr);
		free(r->finals[i].status);
		free(r->finals[i].route);
	}
	free(r->finals);
	r->finals = NULL;
	r->n_finals = 0;
}

/* Digits at s[0..len): how many (at most max), 0 when none. */
static size_t digits(const char *s, size_t len, size_t max)
{
	size_t n = 0;
	while (n < len && n <= max && s[n] >= '0' && s[n] <= '9')
		n++;
	return n > max ? 0 : n;
}

int envelope_enhanced_valid(const char *s, size_t len)
{
	/* RFC 3463 section 2: class "." subject "." detail; subject and detail 1-3 digits. */
	if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	size_t i = 2, n = digits(s + i, len - i, 3);
	if (n == 0 || i + n >= len || s[i + n] != '.')
		return 0;
	i += n + 1;
	n = digits(s + i, len - i, 3);
	return n > 0 && i + n == len;
}

void envelope_reply_split(const char *status, struct envelope_reply *out)
{
	const char *p = status;
	out->code = 0;
	out->enhanced[0] = '\0';
	out->text = status;
	/* RFC 5321 4.2: a reply code is three digits, the first 2-5, then SP (or the end). */
	if (!(p[0] >= '2' && p[0] <= '5' && digits(p, 3, 3) == 3 && (p[3] == ' ' || !p[3])))
		return;
	out->code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	p += 3;
	out->text = NULL;
	if (!*p++)
		return;
	out->text = p;
	size_t n = strcspn(p, " ");
	if (n >= ENVELOPE_ENHANCED_MAX || !envelope_enhanced_valid(p, n))
		return;
	memcpy(out->enhanced, p, n);
	out->enhanced[n] = '\0';
	p += n;
	out->text = *p ? p + 1 : NULL;
}

char *envelope_reply_join(int code, const char *enhanced, const char *text)
{
	char head[4 + ENVELOPE_ENHANCED_MAX + 1] = "";
	int has_code = code >= 200 && code <= 599;
	int has_enh = has_code && enhanced && *enhanced && strlen(enhanced) < ENVELOPE_ENHANCED_MAX;
	if (has_code)
		snprintf(head, sizeof head, "%d%s%s", code, has_enh ? " " : "",
		         has_enh ? enhanced : "");
	size_t hl = strlen(head), tl = text ? strlen(text) : 0;
	char *s = malloc(hl + 1 + tl + 1);
	if (!s)
		return NULL;
	memcpy(s, head, hl);
	if (text) {
		if (hl)
			s[hl++] = ' ';
		memcpy(s + hl, text, tl);
	}
	s[hl + tl] = '\0';
	return s;
}
