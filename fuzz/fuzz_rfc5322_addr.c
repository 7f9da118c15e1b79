/*
 * fuzz_rfc5322_addr: libFuzzer target for proto/rfc5322_addr. Iterates over the
 * input as an address-list field body with a small and a large buffer. Checks
 * that every span lies inside the input and in order, that elements do not
 * overlap and move forward, that an addr-spec holds no white space outside a
 * quoted string and fits its buffer, that a fault sticks, that the small buffer
 * finds no more mailboxes than the large one, and that the list wrapper agrees
 * with the iterator. A violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/rfc5322_addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static void check_mailbox(const struct rfc5322_mailbox *m, size_t size, size_t prev_end)
{
	require(m->start <= m->end && m->end <= size && m->start >= prev_end);
	require(m->spec_start <= m->spec_end && m->spec_end <= size);
	require(m->name_start <= m->name_end && m->name_end <= size);
	if (m->spec_end > m->spec_start)
		require(m->spec_start >= m->start && m->spec_end <= m->end);
	if (m->name_end > m->name_start)
		require(m->name_start >= m->start && m->name_end <= m->spec_start);
}

/* White space only inside a quoted string (never CR or LF, folding is dropped). */
static void check_spaces(const char *a, size_t len)
{
	char in = 0; /* '"' in a quoted string, ']' in a domain literal */
	for (size_t i = 0; i < len; i++) {
		require(a[i] != '\r' && a[i] != '\n');
		if (in && a[i] == '\\') {
			i++;
		} else if (in && a[i] == in) {
			in = 0;
		} else if (!in && (a[i] == '"' || a[i] == '[')) {
			in = a[i] == '"' ? '"' : ']';
		} else {
			require(in == '"' || (a[i] != ' ' && a[i] != '\t'));
		}
	}
}

/* Iterates with a buffer of bufsz; returns the number of mailboxes and the final result. */
static size_t walk(const char *v, size_t size, size_t bufsz, enum rfc5322_addr_result *last)
{
	char buf[1024];
	struct rfc5322_addr_iter it;
	struct rfc5322_mailbox m;
	size_t mailboxes = 0, prev_end = 0, prev_pos = 0;
	enum rfc5322_addr_result r;
	rfc5322_addr_iter_init(&it, v, size);
	while ((r = rfc5322_addr_next(&it, buf, bufsz, &m)) != RFC5322_ADDR_END &&
	       r != RFC5322_ADDR_BAD) {
		require(it.pos > prev_pos && it.pos <= size);
		prev_pos = it.pos;
		check_mailbox(&m, size, prev_end);
		prev_end = m.end;
		if (r == RFC5322_ADDR_MAILBOX) {
			require(m.addr == buf && m.addr_len > 0 && m.addr_len < bufsz);
			require(m.addr[m.addr_len] == '\0');
			check_spaces(m.addr, m.addr_len);
			mailboxes++;
		} else {
			require(r == RFC5322_ADDR_SKIPPED && m.addr == NULL);
		}
	}
	if (r == RFC5322_ADDR_BAD)
		require(rfc5322_addr_next(&it, buf, bufsz, &m) == RFC5322_ADDR_BAD);
	*last = r;
	return mailboxes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *v = (const char *)data;
	enum rfc5322_addr_result big_r, small_r;
	size_t big = walk(v, size, 1024, &big_r);
	size_t small = walk(v, size, 16, &small_r);
	require(small <= big && small_r == big_r);

	char buf[4096];
	const char *addrs[64];
	int n = rfc5322_addr_list(v, size, buf, sizeof buf, addrs, 64);
	require(n == -1 || (n >= 0 && (size_t)n == big && big_r == RFC5322_ADDR_END));
	for (int i = 0; i < n; i++)
		require(addrs[i] >= buf && addrs[i] < buf + sizeof buf);
	return 0;
}
