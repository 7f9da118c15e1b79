/*
 * fuzz_smtp_lines: libFuzzer target for proto/smtp_lines, the SMTP smuggling
 * defence. The input is a client's byte stream (a command line "DATA" switches
 * to DATA mode, as a session would). It is fed in one piece, one octet per call
 * and in chunks whose size the first octet picks; the event streams must be
 * identical. Checks: lines are at most 510 octets without CR or LF, data never
 * contains a CR or LF outside CRLF, the reader's buffer never grows past its
 * cap, and the first message's data re-stuffed and fed again gives back the
 * same data. A violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/smtp_lines.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSG_MAX 8192

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

struct run {
	uint64_t hash; /* FNV-1a over the event stream (data merged across chunks) */
	int prev_data_cr; /* the last data octet was a CR */
	int messages;
	char msg[MSG_MAX]; /* data of the first message */
	size_t msg_len;
	int msg_done, msg_truncated;
};

static void mix(struct run *r, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		r->hash ^= b[i];
		r->hash *= 1099511628211ULL;
	}
}

static void on_event(struct run *r, struct smtp_lines *l, enum smtp_lines_event ev, const char *out,
                     size_t out_len)
{
	unsigned char tag = (unsigned char)ev;
	require(l->len <= l->cap);
	if (ev == SMTP_LINES_NEED_MORE)
		return;
	if (ev == SMTP_LINES_DATA) {
		require(out_len > 0 && out_len <= l->cap);
		mix(r, out, out_len);
		for (size_t i = 0; i < out_len; i++) {
			require(out[i] != '\n' || r->prev_data_cr);
			require(!r->prev_data_cr || out[i] == '\n');
			r->prev_data_cr = out[i] == '\r';
		}
		if (!r->msg_done) {
			size_t n = out_len;
			if (n > MSG_MAX - r->msg_len) {
				n = MSG_MAX - r->msg_len;
				r->msg_truncated = 1;
			}
			memcpy(r->msg + r->msg_len, out, n);
			r->msg_len += n;
		}
		return;
	}
	mix(r, &tag, 1);
	if (ev == SMTP_LINES_LINE) {
		require(out_len <= SMTP_LINES_CMD_MAX);
		require(!memchr(out, '\r', out_len) && !memchr(out, '\n', out_len));
		mix(r, out, out_len);
		mix(r, "\0", 1);
		if (out_len == 4 && memcmp(out, "DATA", 4) == 0)
			smtp_lines_begin_data(l, 998);
	} else if (ev == SMTP_LINES_END_OF_DATA) {
		require(!r->prev_data_cr);
		mix(r, &l->data_octets, sizeof l->data_octets);
		mix(r, &l->received_headers, sizeof l->received_headers);
		mix(r, &l->text_line_too_long, sizeof l->text_line_too_long);
		require(l->msgid_len <= SMTP_LINES_MSGID_MAX && l->msgid[l->msgid_len] == '\0');
		require(!memchr(l->msgid, '\r', l->msgid_len) &&
		        !memchr(l->msgid, '\n', l->msgid_len));
		mix(r, l->msgid, l->msgid_len);
		r->msg_done = 1;
		r->messages++;
	}
}

/* Feeds in[0..len) in chunks of `chunk` octets (0 = whole); 1 when the stream broke. */
static int feed_all(struct run *r, const char *in, size_t len, size_t chunk)
{
	static char buf[1024];
	struct smtp_lines l;
	size_t off = 0;

	memset(r, 0, sizeof *r);
	r->hash = 14695981039346656037ULL;
	smtp_lines_init(&l, buf, sizeof buf);
	while (off < len) {
		size_t n = chunk && len - off > chunk ? chunk : len - off;
		const char *p = in + off;
		off += n;
		while (n > 0) {
			size_t used = 0, out_len = 0;
			const char *out = NULL;
			enum smtp_lines_event ev = smtp_lines_feed(&l, p, n, &used, &out, &out_len);
			require(used <= n);
			require(used > 0 || ev != SMTP_LINES_NEED_MORE);
			require(smtp_lines_pending(&l) <= SMTP_LINES_CMD_MAX + 2);
			on_event(r, &l, ev, out, out_len);
			if (ev == SMTP_LINES_BARE_LF_CR)
				return 1;
			p += used;
			n -= used;
		}
	}
	return 0;
}

/* "DATA\r\n" + stuffed(msg) + ".\r\n" must give msg back. */
static void check_round_trip(const struct run *first)
{
	static char stream[6 + 2 * MSG_MAX + 3];
	static struct run again;
	int bol = 1;
	size_t n = 0;

	memcpy(stream, "DATA\r\n", 6);
	n = 6 + smtp_dotstuff(first->msg, first->msg_len, stream + 6, &bol);
	memcpy(stream + n, ".\r\n", 3);
	n += 3;
	require(feed_all(&again, stream, n, 0) == 0);
	require(again.messages == 1 && again.msg_len == first->msg_len);
	require(memcmp(again.msg, first->msg, first->msg_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run whole, bytes, chunks;
	const char *s = (const char *)data;
	size_t chunk = size ? (size_t)(data[0] % 17) + 2 : 2;

	int b1 = feed_all(&whole, s, size, 0);
	int b2 = feed_all(&bytes, s, size, 1);
	int b3 = feed_all(&chunks, s, size, chunk);
	require(b1 == b2 && b1 == b3);
	require(whole.hash == bytes.hash && whole.hash == chunks.hash);
	if (whole.messages > 0 && !whole.msg_truncated)
		check_round_trip(&whole);
	return 0;
}
