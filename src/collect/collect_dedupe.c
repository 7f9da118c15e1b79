/* collect_dedupe: see collect_dedupe.h. */
#include "collect/collect_dedupe.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "collect/collect_route.h"
#include "proto/rfc5322.h"
#include "proto/rfc5322_date.h"
#include "util/strutil.h"

static const struct {
	const char *word;
	enum collect_dedupe_mode mode;
} modes[] = {
        {"none", COLLECT_DEDUPE_NONE},
        {"message-id", COLLECT_DEDUPE_MESSAGE_ID},
        {"date", COLLECT_DEDUPE_DATE},
};

int collect_dedupe_mode_parse(const char *s, enum collect_dedupe_mode *out)
{
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		if (ascii_equal_ci(s, strlen(s), modes[i].word)) {
			*out = modes[i].mode;
			return 0;
		}
	return -1;
}

const char *collect_dedupe_mode_name(enum collect_dedupe_mode mode)
{
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		if (modes[i].mode == mode)
			return modes[i].word;
	return "none";
}

/* The body of the one field called name; 0 when there is none or more than one. */
static int only_field(const char *hdr, size_t len, const char *name, struct rfc5322_field *out)
{
	size_t pos = 0;
	struct rfc5322_field f;
	int found = 0;
	while (collect_route_next_field(hdr, len, &pos, &f) == 1)
		if (rfc5322_field_is(&f, name) && found++ == 0)
			*out = f;
	return found == 1;
}

/*
 * The Message-ID without CFWS (RFC 5322 3.6.4 msg-id, 3.2.2) into out, its
 * angle brackets taken off. Returns the length, or 0 for no usable id (empty,
 * over COLLECT_DEDUPE_ID_MAX, an unterminated comment, a control octet).
 */
static size_t message_id(const char *v, size_t n, char *out)
{
	char id[COLLECT_DEDUPE_ID_MAX + 2];
	size_t len = 0;
	int quoted = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (!quoted && ch == '(') {
			if ((i = rfc5322_skip_comment(v, n, i)) == 0)
				return 0;
			i--;
			continue;
		}
		if (ch == '\r' || ch == '\n' || (!quoted && (ch == ' ' || ch == '\t')))
			continue; /* folding, and white space outside a quoted string */
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f || len >= sizeof id)
			return 0;
		if (ch == '"')
			quoted = !quoted;
		else if (quoted && ch == '\\' && i + 1 < n && len + 1 < sizeof id) {
			unsigned char next = (unsigned char)v[i + 1];
			if ((next < 0x20 && next != '\t') || next == 0x7f)
				return 0; /* a quoted-pair hides no control octet either */
			id[len++] = v[i++];
		}
		id[len++] = v[i];
	}
	size_t start = 0;
	if (len >= 2 && id[0] == '<' && id[len - 1] == '>') {
		start = 1;
		len -= 2;
	}
	if (quoted || len == 0 || len > COLLECT_DEDUPE_ID_MAX)
		return 0;
	memcpy(out, id + start, len);
	return len;
}

int collect_dedupe_key(enum collect_dedupe_mode mode, const char *hdr, size_t len, char *out,
                       size_t outsz)
{
	struct rfc5322_field f;
	if (outsz < COLLECT_DEDUPE_KEY_MAX)
		return -1;
	out[0] = '\0';
	if (mode == COLLECT_DEDUPE_MESSAGE_ID && only_field(hdr, len, "Message-ID", &f)) {
		size_t n = message_id(f.value, f.value_len, out + 2);
		if (n == 0)
			return 0;
		memcpy(out, "m:", 2);
		out[2 + n] = '\0';
		return (int)(2 + n);
	}
	if (mode == COLLECT_DEDUPE_DATE && only_field(hdr, len, "Date", &f)) {
		int64_t t;
		if (rfc5322_date_parse(f.value, f.value_len, &t) != 0)
			return 0;
		return snprintf(out, outsz, "d:%" PRId64, t);
	}
	return 0;
}
