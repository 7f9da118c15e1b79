/*
 * fuzz_smtp_cmd: libFuzzer target for proto/smtp_cmd. Parses the input as a
 * command line and its argument as a MAIL and as a RCPT path. Checks that every
 * span lies inside the input, that an accepted path respects the RFC 5321
 * 4.5.3.1 limits and is printable ASCII, and that its mailbox parses again on
 * its own. A violated invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "proto/mailaddr.h"
#include "proto/smtp_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		__builtin_trap();
}

static int inside(const char *p, size_t n, const char *s, size_t len)
{
	return p >= s && p <= s + len && n <= (size_t)(s + len - p);
}

static void check_path(const char *arg, size_t len, const char *prefix)
{
	struct smtp_path p;
	enum smtp_path_result r = smtp_path_parse(arg, len, prefix, &p);
	if (r != SMTP_PATH_OK) {
		require(p.mailbox == NULL && p.params == NULL && !p.null && !p.postmaster);
		return;
	}
	require(inside(p.mailbox, p.mailbox_len, arg, len));
	require(p.mailbox_len <= SMTP_PATH_MAX - 2);
	require(!p.params || (inside(p.params, p.params_len, arg, len) && p.params_len > 0 &&
	                      p.params[0] != ' '));
	for (size_t i = 0; i < p.mailbox_len; i++)
		require((unsigned char)p.mailbox[i] >= 0x20 && (unsigned char)p.mailbox[i] <= 0x7e);
	if (p.null) {
		require(p.mailbox_len == 0 && !p.postmaster);
		return;
	}
	if (p.postmaster) {
		require(p.mailbox_len == 10 && prefix[0] == 'T');
		return;
	}
	struct mailaddr a;
	require(mailaddr_parse_exact(p.mailbox, p.mailbox_len, &a) == MAILADDR_OK);
	require(p.addr.local == p.mailbox && p.addr.local_len <= MAILADDR_LOCAL_MAX);
	require(p.addr.domain_len <= MAILADDR_DOMAIN_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct smtp_cmd c;
	enum smtp_cmd_result r = smtp_cmd_parse(s, size, &c);

	require(r <= SMTP_CMD_8BIT);
	require(r != SMTP_CMD_NUL || memchr(s, 0, size) != NULL);
	require(r != SMTP_CMD_EMPTY || c.arg == NULL);
	require(smtp_verb_name(c.verb) != NULL);
	if (c.arg) {
		require(inside(c.arg, c.arg_len, s, size) && c.arg_len > 0);
		require(c.arg[c.arg_len - 1] != ' ' && c.arg[c.arg_len - 1] != '\t');
	}
	/* The path parser must cope with any argument, not just valid lines. */
	check_path(s, size, "FROM:");
	check_path(s, size, "TO:");
	if (c.arg) {
		check_path(c.arg, c.arg_len, "FROM:");
		check_path(c.arg, c.arg_len, "TO:");
	}
	return 0;
}
