/*
 * fuzz_pop3_resp: libFuzzer target for proto/pop3_resp, the POP3 reply codec.
 * The input is a server's byte stream read as the client reads it: status
 * lines, then (after a "+OK" line whose text starts with "D") message data up
 * to its terminator, then lines again. It is fed whole, one octet per call,
 * and in chunks the first octet picks, with a data window of 4 octets and a
 * large one: the event streams must be identical. Every line and its parts
 * also go through the status, timestamp, STAT, LIST, UIDL and CAPA parsers.
 * Checks: lines are within the buffer and hold no CR or LF, results point
 * inside the line, numbers are within POP3_RESP_NUM_MAX, a unique-id is 1-70
 * octets of 0x21-0x7E, a timestamp is "<...@...>", data in CRLF mode never
 * has a CR or LF outside CRLF and never holds the terminator's line.
 * A violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/pop3_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

struct run {
	uint64_t hash;
	int prev_cr; /* the last data octet handed on was a CR */
};

static void mix(struct run *r, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		r->hash ^= b[i];
		r->hash *= 1099511628211ULL;
	}
}

static int inside(const char *p, size_t n, const char *base, size_t len)
{
	return p >= base && p + n <= base + len;
}

/* Every parser over one line; checks what each returns. */
static void parse_line(struct run *r, const char *line, size_t len)
{
	struct pop3_resp_status_line sl;
	enum pop3_resp_status st = pop3_resp_status_parse(line, len, &sl);
	require(st == sl.status && inside(sl.text, sl.text_len, line, len));
	mix(r, &st, sizeof st);
	mix(r, &sl.code, sizeof sl.code);
	const char *ts;
	size_t tl = pop3_resp_apop_timestamp(line, len, &ts);
	if (tl > 0) {
		require(inside(ts, tl, line, len) && tl <= POP3_RESP_TIMESTAMP_MAX);
		require(ts[0] == '<' && ts[tl - 1] == '>' && memchr(ts, '@', tl) != NULL);
	}
	uint64_t a, b;
	if (pop3_resp_stat_parse(line, len, &a, &b) == 0)
		require(a <= POP3_RESP_NUM_MAX && b <= POP3_RESP_NUM_MAX);
	if (pop3_resp_list_parse(line, len, &a, &b) == 0)
		require(a >= 1 && a <= POP3_RESP_NUM_MAX && b <= POP3_RESP_NUM_MAX);
	const char *uid;
	size_t ul;
	if (pop3_resp_uidl_parse(line, len, &a, &uid, &ul) == 0) {
		require(a >= 1 && ul >= 1 && ul <= POP3_RESP_UID_MAX && inside(uid, ul, line, len));
		for (size_t i = 0; i < ul; i++)
			require((unsigned char)uid[i] >= 0x21 && (unsigned char)uid[i] <= 0x7e);
	}
	struct pop3_resp_capa caps;
	memset(&caps, 0, sizeof caps);
	pop3_resp_capa_line(&caps, line, len);
	require(caps.seen && caps.login_delay >= 0);
	const char *p = line;
	size_t n = len;
	if (!pop3_resp_multiline_end(&p, &n))
		require(inside(p, n, line, len) && (n == len || n + 1 == len));
}

/* One pass; returns the event hash. */
static uint64_t run_once(const uint8_t *data, size_t size, size_t piece, size_t cap)
{
	struct run r = {.hash = 14695981039346656037ULL};
	char buf[512], out[4096];
	struct pop3_resp_lines l;
	struct pop3_resp_data d;
	int in_data = 0;
	pop3_resp_lines_init(&l, buf, sizeof buf);
	size_t pos = 0;
	while (pos < size) {
		size_t n = size - pos < piece ? size - pos : piece, used = 0;
		const char *in = (const char *)data + pos;
		if (in_data) {
			size_t w;
			enum pop3_resp_data_event ev =
			        pop3_resp_data_feed(&d, in, n, &used, out, cap, &w);
			require(w <= cap && used <= n);
			mix(&r, out, w);
			for (size_t i = 0; i < w; i++) {
				require(out[i] != '\n' || r.prev_cr);
				require(!r.prev_cr || out[i] == '\n');
				r.prev_cr = out[i] == '\r';
			}
			if (ev == POP3_RESP_DATA_END) {
				require(!r.prev_cr && d.out_octets <= 2 * d.in_octets);
				mix(&r, "END", 3);
				in_data = 0;
			}
			require(used > 0 || w > 0 || ev == POP3_RESP_DATA_END);
		} else {
			enum pop3_resp_lines_event ev = pop3_resp_lines_feed(&l, in, n, &used);
			if (ev == POP3_RESP_LINES_LINE) {
				require(l.len <= sizeof buf &&
				        memchr(l.line, '\n', l.len) == NULL &&
				        memchr(l.line, '\r', l.len) == NULL);
				mix(&r, l.line, l.len);
				parse_line(&r, l.line, l.len);
				if (l.len >= 5 && memcmp(l.line, "+OK D", 5) == 0) {
					pop3_resp_data_init(&d, POP3_RESP_DATA_CRLF);
					r.prev_cr = 0;
					in_data = 1;
				}
			} else if (ev != POP3_RESP_LINES_MORE) {
				mix(&r, &ev, sizeof ev);
				return r.hash;
			}
			require(used > 0 || n == 0);
		}
		pos += used;
	}
	return r.hash;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t piece = (size_t)(data[0] % 13) + 1;
	uint64_t whole = run_once(data + 1, size - 1, size, 4096);
	require(run_once(data + 1, size - 1, 1, 4096) == whole);
	require(run_once(data + 1, size - 1, piece, 4) == whole);
	require(run_once(data + 1, size - 1, piece, 7) == whole);
	return 0;
}
