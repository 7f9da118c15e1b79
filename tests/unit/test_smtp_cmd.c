/* Unit tests for proto/smtp_cmd: verbs (RFC 5321 4.1.1) and MAIL/RCPT paths (4.1.2, 4.5.3.1). */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proto/smtp_cmd.h"

struct cmd_case {
	const char *in;
	size_t len; /* 0: strlen(in) */
	enum smtp_cmd_result want;
	enum smtp_verb verb;
	const char *arg; /* NULL: no argument */
};

static const struct cmd_case cmd_cases[] = {
        {"EHLO client.example", 0, SMTP_CMD_OK, SMTP_VERB_EHLO, "client.example"},
        {"ehlo client.example", 0, SMTP_CMD_OK, SMTP_VERB_EHLO, "client.example"},
        {"HeLo x", 0, SMTP_CMD_OK, SMTP_VERB_HELO, "x"},
        {"MAIL FROM:<a@b> SIZE=10", 0, SMTP_CMD_OK, SMTP_VERB_MAIL, "FROM:<a@b> SIZE=10"},
        {"rcpt TO:<a@b>", 0, SMTP_CMD_OK, SMTP_VERB_RCPT, "TO:<a@b>"},
        {"DATA", 0, SMTP_CMD_OK, SMTP_VERB_DATA, NULL},
        {"data ", 0, SMTP_CMD_OK, SMTP_VERB_DATA, NULL},
        {"QUIT \t ", 0, SMTP_CMD_OK, SMTP_VERB_QUIT, NULL},
        {"RSET", 0, SMTP_CMD_OK, SMTP_VERB_RSET, NULL},
        {"NOOP hello there", 0, SMTP_CMD_OK, SMTP_VERB_NOOP, "hello there"},
        {"HELP", 0, SMTP_CMD_OK, SMTP_VERB_HELP, NULL},
        {"VRFY user", 0, SMTP_CMD_OK, SMTP_VERB_VRFY, "user"},
        {"EXPN list", 0, SMTP_CMD_OK, SMTP_VERB_EXPN, "list"},
        {"StartTLS", 0, SMTP_CMD_OK, SMTP_VERB_STARTTLS, NULL},
        {"AUTH PLAIN", 0, SMTP_CMD_OK, SMTP_VERB_AUTH, "PLAIN"},
        {"BDAT 10 LAST", 0, SMTP_CMD_OK, SMTP_VERB_BDAT, "10 LAST"},
        {"MAILFROM:<a@b>", 0, SMTP_CMD_OK, SMTP_VERB_UNKNOWN, NULL},
        {"MAI", 0, SMTP_CMD_OK, SMTP_VERB_UNKNOWN, NULL},
        {"MAIL\tFROM:<a@b>", 0, SMTP_CMD_OK, SMTP_VERB_UNKNOWN, NULL},
        {"XYZZY arg", 0, SMTP_CMD_OK, SMTP_VERB_UNKNOWN, "arg"},
        {"GET / HTTP/1.0", 0, SMTP_CMD_OK, SMTP_VERB_UNKNOWN, "/ HTTP/1.0"},
        {"", 0, SMTP_CMD_EMPTY, SMTP_VERB_UNKNOWN, NULL},
        {" ", 0, SMTP_CMD_EMPTY, SMTP_VERB_UNKNOWN, NULL},
        {"MAIL FROM:<a@b>\0x", 17, SMTP_CMD_NUL, SMTP_VERB_MAIL, NULL},
        {"\0", 1, SMTP_CMD_NUL, SMTP_VERB_UNKNOWN, NULL},
        {"HELO \x80\xff", 0, SMTP_CMD_8BIT, SMTP_VERB_HELO, "\x80\xff"},
        {"RCPT TO:<j\xc3\xbcrgen@b>", 0, SMTP_CMD_8BIT, SMTP_VERB_RCPT, "TO:<j\xc3\xbcrgen@b>"},
        {"NOOP \x01", 0, SMTP_CMD_8BIT, SMTP_VERB_NOOP, "\x01"},
        {"NOOP \x7f", 0, SMTP_CMD_8BIT, SMTP_VERB_NOOP, "\x7f"},
        {"NOOP \x80\0", 7, SMTP_CMD_NUL, SMTP_VERB_NOOP, NULL},
        {"HELO a\tb", 0, SMTP_CMD_OK, SMTP_VERB_HELO, "a\tb"},
};

TEST(command_table)
{
	for (size_t i = 0; i < sizeof cmd_cases / sizeof cmd_cases[0]; i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct smtp_cmd cmd;
		size_t len = c->len ? c->len : strlen(c->in);
		CHECK_INT(smtp_cmd_parse(c->in, len, &cmd), c->want);
		CHECK_INT(cmd.verb, c->verb);
		if (c->arg)
			CHECK_MEM(cmd.arg, cmd.arg_len, c->arg, strlen(c->arg));
		else if (c->want != SMTP_CMD_NUL)
			CHECK(cmd.arg == NULL && cmd.arg_len == 0);
	}
	CHECK_STR(smtp_verb_name(SMTP_VERB_MAIL), "MAIL");
	CHECK_STR(smtp_verb_name(SMTP_VERB_STARTTLS), "STARTTLS");
	CHECK_STR(smtp_verb_name(SMTP_VERB_UNKNOWN), "?");
}

struct path_case {
	const char *in;
	const char *prefix;
	enum smtp_path_result want;
	int null, postmaster, route;
	const char *mailbox; /* mailbox span when OK */
	const char *local;
	const char *params; /* NULL: none */
};

static const struct path_case path_cases[] = {
        {"FROM:<a@b>", "FROM:", SMTP_PATH_OK, 0, 0, 0, "a@b", "a", NULL},
        {"from:<a@b> SIZE=10", "FROM:", SMTP_PATH_OK, 0, 0, 0, "a@b", "a", "SIZE=10"},
        {"FROM:<a@b>  SIZE=10 BODY=8BITMIME", "FROM:", SMTP_PATH_OK, 0, 0, 0, "a@b", "a",
         "SIZE=10 BODY=8BITMIME"},
        {"FROM: <a@b>", "FROM:", SMTP_PATH_OK, 0, 0, 0, "a@b", "a", NULL},
        {"FROM:<>", "FROM:", SMTP_PATH_OK, 1, 0, 0, "", NULL, NULL},
        {"FROM:<> SIZE=1", "FROM:", SMTP_PATH_OK, 1, 0, 0, "", NULL, "SIZE=1"},
        {"TO:<>", "TO:", SMTP_PATH_OK, 1, 0, 0, "", NULL, NULL},
        {"TO:<a@b>", "TO:", SMTP_PATH_OK, 0, 0, 0, "a@b", "a", NULL},
        {"To:<User@Example.COM> NOTIFY=NEVER", "TO:", SMTP_PATH_OK, 0, 0, 0, "User@Example.COM",
         "User", "NOTIFY=NEVER"},
        {"TO:<Postmaster>", "TO:", SMTP_PATH_OK, 0, 1, 0, "Postmaster", NULL, NULL},
        {"TO:<postmaster>", "TO:", SMTP_PATH_OK, 0, 1, 0, "postmaster", NULL, NULL},
        {"TO:<POSTMASTER> NOTIFY=NEVER", "TO:", SMTP_PATH_OK, 0, 1, 0, "POSTMASTER", NULL,
         "NOTIFY=NEVER"},
        {"TO:<postmaster@example.com>", "TO:", SMTP_PATH_OK, 0, 0, 0, "postmaster@example.com",
         "postmaster", NULL},
        {"FROM:<Postmaster>", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        /* Source routes: accepted and ignored (RFC 5321 4.1.1.3, appendix C). */
        {"TO:<@x,@y:u@d>", "TO:", SMTP_PATH_OK, 0, 0, 1, "u@d", "u", NULL},
        {"TO:<@ours.example:user@other.example>", "TO:", SMTP_PATH_OK, 0, 0, 1,
         "user@other.example", "user", NULL},
        {"TO:<@[192.0.2.1]:u@d>", "TO:", SMTP_PATH_OK, 0, 0, 1, "u@d", "u", NULL},
        {"TO:<@x:>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<@x,u@d>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<@:u@d>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<@x,,@y:u@d>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<@x y:u@d>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        /* Quoted local parts, byte-exact. */
        {"TO:<\"a b\"@x>", "TO:", SMTP_PATH_OK, 0, 0, 0, "\"a b\"@x", "\"a b\"", NULL},
        {"TO:<\"john..doe\"@x>", "TO:", SMTP_PATH_OK, 0, 0, 0, "\"john..doe\"@x", "\"john..doe\"",
         NULL},
        {"TO:<\"a>b\"@x> SIZE=1", "TO:", SMTP_PATH_OK, 0, 0, 0, "\"a>b\"@x", "\"a>b\"", "SIZE=1"},
        {"TO:<\"a\\\">\"@x>", "TO:", SMTP_PATH_OK, 0, 0, 0, "\"a\\\">\"@x", "\"a\\\">\"", NULL},
        /* Routing tricks are local-part text: the policy decides. */
        {"TO:<\"user@other\"@ours>", "TO:", SMTP_PATH_OK, 0, 0, 0, "\"user@other\"@ours",
         "\"user@other\"", NULL},
        {"TO:<user%other@ours>", "TO:", SMTP_PATH_OK, 0, 0, 0, "user%other@ours", "user%other",
         NULL},
        {"TO:<other!user@ours>", "TO:", SMTP_PATH_OK, 0, 0, 0, "other!user@ours", "other!user",
         NULL},
        {"TO:<user@[192.0.2.1]>", "TO:", SMTP_PATH_OK, 0, 0, 0, "user@[192.0.2.1]", "user", NULL},
        /* Refused. */
        {"FROM:a@b", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:<a@b", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:a@b>", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:<a@b>x", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:<a@b>>", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:<<a@b>>", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:  <a@b>", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM <a@b>", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<a@b>", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:<a@b>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"FROM", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"", "FROM:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<a>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<a@>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<@b>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<a b@c>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<john..doe@x>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<\"a b@x>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<a@b>@c>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<a\tb@c>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<a\r\n@c>", "TO:", SMTP_PATH_SYNTAX, 0, 0, 0, NULL, NULL, NULL},
        {"TO:<j\xc3\xbcrgen@example.com>", "TO:", SMTP_PATH_8BIT, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:<a@\xff>", "FROM:", SMTP_PATH_8BIT, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:<a@\xff", "FROM:", SMTP_PATH_8BIT, 0, 0, 0, NULL, NULL, NULL},
        {"FROM:<\"\xe9\"@b>", "FROM:", SMTP_PATH_8BIT, 0, 0, 0, NULL, NULL, NULL},
};

TEST(path_table)
{
	for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
		const struct path_case *c = &path_cases[i];
		struct smtp_path p;
		enum smtp_path_result r = smtp_path_parse(c->in, strlen(c->in), c->prefix, &p);
		if (!CHECK_INT(r, c->want))
			CHECK_STR(c->in, "");
		if (r != SMTP_PATH_OK) {
			CHECK(p.mailbox == NULL && p.params == NULL && !p.null);
			continue;
		}
		CHECK_INT(p.null, c->null);
		CHECK_INT(p.postmaster, c->postmaster);
		CHECK_INT(p.source_route, c->route);
		CHECK_MEM(p.mailbox, p.mailbox_len, c->mailbox, strlen(c->mailbox));
		if (c->local)
			CHECK_MEM(p.addr.local, p.addr.local_len, c->local, strlen(c->local));
		if (c->params)
			CHECK_MEM(p.params, p.params_len, c->params, strlen(c->params));
		else
			CHECK(p.params == NULL);
	}
}

/* Builds "TO:<" + local(n) + "@" + domain(m) + ">" and parses it. */
static enum smtp_path_result parse_sized(size_t local_len, size_t domain_len)
{
	char *s = malloc(local_len + domain_len + 16);
	struct smtp_path p;
	size_t o = 0;
	if (!s)
		abort();
	memcpy(s, "TO:<", 4);
	o = 4;
	memset(s + o, 'l', local_len);
	o += local_len;
	s[o++] = '@';
	/* Labels of 50 octets joined by dots. */
	for (size_t i = 0; i < domain_len; i++)
		s[o + i] = (i % 51 == 50) ? '.' : 'd';
	o += domain_len;
	s[o++] = '>';
	enum smtp_path_result r = smtp_path_parse(s, o, "TO:", &p);
	free(s);
	return r;
}

TEST(length_limits)
{
	CHECK_INT(parse_sized(64, 10), SMTP_PATH_OK);
	CHECK_INT(parse_sized(65, 10), SMTP_PATH_TOO_LONG);
	CHECK_INT(parse_sized(1000, 10), SMTP_PATH_TOO_LONG);
	/* Path = '<' + local + '@' + domain + '>' <= 256. */
	CHECK_INT(parse_sized(64, 189), SMTP_PATH_OK);
	CHECK_INT(parse_sized(64, 190), SMTP_PATH_TOO_LONG);
	CHECK_INT(parse_sized(1, 252), SMTP_PATH_OK);
	CHECK_INT(parse_sized(1, 253), SMTP_PATH_TOO_LONG);
	CHECK_INT(parse_sized(1, 256), SMTP_PATH_TOO_LONG);
	CHECK_INT(parse_sized(1, 5000), SMTP_PATH_TOO_LONG);
}

TEST(null_arguments)
{
	struct smtp_path p;
	CHECK_INT(smtp_path_parse(NULL, 0, "TO:", &p), SMTP_PATH_SYNTAX);
	CHECK_INT(smtp_path_parse("TO:<a@b>", 8, NULL, &p), SMTP_PATH_SYNTAX);
}

TEST_MAIN(T(command_table), T(path_table), T(length_limits), T(null_arguments))
