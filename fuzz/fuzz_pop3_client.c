/*
 * fuzz_pop3_client: libFuzzer target for collect/pop3_client, a whole POP3
 * session against arbitrary server octets. The first octet picks the conf
 * (tls none/starttls/implicit, auth auto/user/apop, a small queue and chunk,
 * a small listing cap) and the read size; the rest is what the server sends.
 * The fake caller retrieves every listed message whose uid is not a repeat,
 * deletes each once it has ended, and quits when ready; a START_TLS is
 * answered "ok" (the fuzzer's octets then play the server inside TLS).
 * Checks: only CRLF lines leave the client, never a CR or LF inside one;
 * every RETR asked for ends in exactly one MSG_END, MSG_ERROR or MSG_ABORTED,
 * every DELE in one DELE_*; MSG_DATA only between its MSG_BEGIN and end,
 * each chunk 1..chunk_max octets, a message's octets within its LIST size's
 * allowance; MSG_END's size is what was handed on; CLOSE is the last event
 * and comes once; input always makes progress; the outcome is set at the
 * end; the password never appears in the outcome's reason (unless the
 * server's own octets held it). Then the session
 * ends with a timeout or a drop. A violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "collect/pop3_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PASSWORD "fuzz-Secret-9"
#define TRACK 4096 /* messages tracked (the listing cap below is smaller) */

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

struct fz {
	struct pop3_client *c;
	size_t chunk_max;
	unsigned char asked[TRACK]; /* 1 RETR asked, 2 ended; DELE in the high bits */
	unsigned char dele[TRACK];
	uint64_t cur; /* the message whose data is under way, 0 none */
	uint64_t cur_octets, cur_limit;
	size_t next; /* the next listing index to retrieve */
	int closed, line_cr;
	size_t line_len;
};

/* Takes the output: CRLF lines only, no CR or LF inside a line. */
static void take(struct fz *f)
{
	size_t len;
	const char *out = pop3_client_output(f->c, &len);
	for (size_t i = 0; i < len; i++) {
		if (out[i] == '\n') {
			require(f->line_cr);
			f->line_cr = 0;
			f->line_len = 0;
		} else {
			require(!f->line_cr);
			f->line_cr = out[i] == '\r';
			f->line_len++;
		}
	}
	pop3_client_output_done(f->c, len);
}

static void retr_more(struct fz *f)
{
	const struct pop3_client_listing *l = pop3_client_listing(f->c);
	if (l == NULL)
		return;
	while (f->next < l->n && pop3_client_room(f->c) > 0) {
		const struct pop3_client_entry *e = &l->entries[f->next++];
		if (e->dup_uid || e->num >= TRACK)
			continue;
		require(pop3_client_retr(f->c, e->num) == 0);
		require(f->asked[e->num] == 0);
		f->asked[e->num] = 1;
	}
}

static void on_event(struct fz *f, const struct pop3_client_event *ev)
{
	uint64_t n = ev->num;
	require(!f->closed);
	switch (ev->action) {
	case POP3_CLIENT_ACT_START_TLS: pop3_client_tls_done(f->c, 1); break;
	case POP3_CLIENT_ACT_LISTING: retr_more(f); break;
	case POP3_CLIENT_ACT_MSG_BEGIN: {
		require(n < TRACK && f->asked[n] == 1 && f->cur == 0);
		const struct pop3_client_entry *e = pop3_client_entry(f->c, n);
		require(e != NULL && e->size == ev->size);
		f->cur = n;
		f->cur_octets = 0;
		f->cur_limit = e->size + e->size / 8 + 64;
		break;
	}
	case POP3_CLIENT_ACT_MSG_DATA:
		require(n == f->cur && ev->len >= 1 && ev->len <= f->chunk_max);
		f->cur_octets += ev->len;
		require(f->cur_octets <= f->cur_limit);
		break;
	case POP3_CLIENT_ACT_MSG_END:
		require(n == f->cur && ev->size == f->cur_octets && f->asked[n] == 1);
		f->asked[n] = 2;
		f->cur = 0;
		if (pop3_client_room(f->c) > 0) {
			require(pop3_client_dele(f->c, n) == 0);
			f->dele[n] = 1;
		}
		retr_more(f);
		break;
	case POP3_CLIENT_ACT_MSG_ERROR:
	case POP3_CLIENT_ACT_MSG_ABORTED:
		require(n < TRACK && f->asked[n] == 1 && (f->cur == 0 || f->cur == n));
		f->asked[n] = 2;
		f->cur = 0;
		retr_more(f);
		break;
	case POP3_CLIENT_ACT_DELE_OK:
	case POP3_CLIENT_ACT_DELE_ERROR:
	case POP3_CLIENT_ACT_DELE_ABORTED:
		require(n < TRACK && f->dele[n] == 1);
		f->dele[n] = 2;
		retr_more(f);
		break;
	case POP3_CLIENT_ACT_READY: require(pop3_client_quit(f->c) == 0); break;
	case POP3_CLIENT_ACT_CLOSE: f->closed = 1; break;
	case POP3_CLIENT_ACT_NONE: break;
	}
}

static void settle(struct fz *f)
{
	struct pop3_client_event ev;
	for (int guard = 0; guard < 1000000; guard++) {
		take(f);
		if (pop3_client_next_action(f->c, &ev) == POP3_CLIENT_ACT_NONE)
			return;
		on_event(f, &ev);
	}
	require(0);
}

static void run(const uint8_t *data, size_t size, uint8_t sel, size_t piece)
{
	static struct fz f;
	struct pop3_client_conf cf;
	memset(&f, 0, sizeof f);
	pop3_client_conf_defaults(&cf);
	cf.user = "fuzz";
	cf.password = PASSWORD;
	cf.tls = (enum pop3_client_tls)(sel % 3);
	cf.auth = (enum pop3_client_auth)((sel / 3) % 3);
	cf.queue_max = 1 + (sel >> 6);
	cf.chunk_max = 512;
	cf.size_slack = 64;
	cf.listing_max = 1000;
	f.chunk_max = cf.chunk_max;
	f.c = pop3_client_new(&cf);
	require(f.c != NULL);
	pop3_client_connected(f.c);
	settle(&f);
	for (size_t pos = 0; pos < size;) {
		size_t n = size - pos < piece ? size - pos : piece;
		size_t used = pop3_client_input(f.c, (const char *)data + pos, n);
		struct pop3_client_event ev;
		require(used > 0 || pop3_client_next_action(f.c, &ev) != POP3_CLIENT_ACT_NONE ||
		        n == 0);
		if (used == 0)
			on_event(&f, &ev);
		pos += used;
		settle(&f);
	}
	if (sel & 1)
		pop3_client_timeout(f.c);
	else
		pop3_client_closed(f.c);
	settle(&f);
	require(f.closed && pop3_client_done(f.c));
	const struct pop3_client_outcome *o = pop3_client_outcome(f.c);
	require(o->end != POP3_CLIENT_END_NONE);
	/* The password is never in the reason, unless the server itself sent it. */
	require(strstr(o->reason, PASSWORD) == NULL ||
	        memmem(data, size, PASSWORD, strlen(PASSWORD)) != NULL);
	for (size_t i = 0; i < TRACK; i++)
		require(f.asked[i] != 1 && f.dele[i] != 1);
	/* After the end every event is ignored. */
	require(pop3_client_input(f.c, "+OK\r\n", 5) == 5);
	pop3_client_timeout(f.c);
	require(pop3_client_next_action(f.c, NULL) == POP3_CLIENT_ACT_NONE);
	pop3_client_free(f.c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t sel = data[0];
	run(data + 1, size - 1, sel, size);
	run(data + 1, size - 1, sel, 1);
	run(data + 1, size - 1, sel, (size_t)(sel % 7) + 2);
	return 0;
}
