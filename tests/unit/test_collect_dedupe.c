/* Unit tests for collect/collect_dedupe: Message-ID and Date keys, no key, modes. */
#include <stdio.h>
#include <string.h>

#include "collect/collect_dedupe.h"
#include "harness.h"

static const char *key(enum collect_dedupe_mode mode, const char *hdr)
{
	static char out[COLLECT_DEDUPE_KEY_MAX];
	int n = collect_dedupe_key(mode, hdr, strlen(hdr), out, sizeof out);
	CHECK(n >= 0 && (size_t)n == strlen(out));
	return out;
}

TEST(message_id_keys)
{
	static const struct {
		const char *hdr, *want;
	} cases[] = {
	        {"Message-ID: <abc@host.example>\r\n", "m:abc@host.example"},
	        {"message-id:<abc@host.example>\r\n", "m:abc@host.example"},
	        {"Message-Id: (c) <abc@host.example> (more)\r\n", "m:abc@host.example"},
	        {"Message-ID:\r\n <abc@host.example>\r\n", "m:abc@host.example"}, /* folded */
	        {"Message-ID: < abc @ host.example >\r\n", "m:abc@host.example"}, /* obs CFWS */
	        /* case is kept: the domain part too */
	        {"Message-ID: <ABC@Host.Example>\r\n", "m:ABC@Host.Example"},
	        {"Message-ID: <\"a b\"@host>\r\n", "m:\"a b\"@host"},
	        {"Message-ID: <\"a\\\"b\"@host>\r\n", "m:\"a\\\"b\"@host"},
	        {"Message-ID: abc@host\r\n", "m:abc@host"}, /* no brackets: the text */
	        {"Subject: x\r\nMessage-ID: <a@b>\r\nTo: y\r\n", "m:a@b"},
	        /* no key: none, empty, two, an unterminated comment, a control octet */
	        {"Subject: x\r\n", ""},
	        {"Message-ID:\r\n", ""},
	        {"Message-ID: <>\r\n", ""},
	        {"Message-ID: (only a comment)\r\n", ""},
	        {"Message-ID: <a@b>\r\nMessage-ID: <c@d>\r\n", ""},
	        {"Message-ID: <a@b>\r\nMessage-ID: <a@b>\r\n", ""},
	        {"Message-ID: <a@b> (open\r\n", ""},
	        {"Message-ID: <a\x01@b>\r\n", ""},
	        {"Message-ID: <\"a\\\x01\"@b>\r\n", ""}, /* a quoted-pair of a control */
	        {"Message-ID: <\"a@b>\r\n", ""}, /* unterminated quoted string */
	        /* the body is not read */
	        {"Subject: x\r\n\r\nMessage-ID: <a@b>\r\n", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!CHECK_STR(key(COLLECT_DEDUPE_MESSAGE_ID, cases[i].hdr), cases[i].want))
			fprintf(stderr, "  case %zu\n", i);
}

/* A Message-ID of COLLECT_DEDUPE_ID_MAX octets gets a key; one more does not. */
TEST(message_id_length)
{
	static char hdr[COLLECT_DEDUPE_ID_MAX + 64];
	char id[COLLECT_DEDUPE_ID_MAX + 2];
	memset(id, 'a', sizeof id);
	id[COLLECT_DEDUPE_ID_MAX - 2] = '@'; /* "aaa...@a": ID_MAX octets */
	id[COLLECT_DEDUPE_ID_MAX] = '\0';
	snprintf(hdr, sizeof hdr, "Message-ID: <%s>\r\n", id);
	CHECK_INT(strlen(key(COLLECT_DEDUPE_MESSAGE_ID, hdr)), 2 + COLLECT_DEDUPE_ID_MAX);
	id[COLLECT_DEDUPE_ID_MAX] = 'a';
	id[COLLECT_DEDUPE_ID_MAX + 1] = '\0';
	snprintf(hdr, sizeof hdr, "Message-ID: <%s>\r\n", id);
	CHECK_STR(key(COLLECT_DEDUPE_MESSAGE_ID, hdr), "");
}

TEST(date_keys)
{
	static const struct {
		const char *hdr, *want;
	} cases[] = {
	        {"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n", "d:1796119200"},
	        /* the same instant written in another zone is the same key */
	        {"Date: Tue, 1 Dec 2026 05:00:00 -0500\r\n", "d:1796119200"},
	        {"DATE: 1 Dec 2026 02:00 PST\r\n", "d:1796119200"},
	        {"Date: Thu, 1 Jan 1970 00:00:00 +0000\r\n", "d:0"},
	        {"Date: Mon, 1 Jan 1900 00:00:00 +0000\r\n", "d:-2208988800"},
	        {"Subject: x\r\n", ""},
	        {"Date: yesterday\r\n", ""},
	        {"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n",
	         ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!CHECK_STR(key(COLLECT_DEDUPE_DATE, cases[i].hdr), cases[i].want))
			fprintf(stderr, "  case %zu\n", i);
}

/* Each mode reads only its own field; none reads nothing. */
TEST(modes)
{
	const char *hdr = "Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <a@b>\r\n";
	enum collect_dedupe_mode m = COLLECT_DEDUPE_DATE;
	char small[8];
	CHECK_STR(key(COLLECT_DEDUPE_MESSAGE_ID, hdr), "m:a@b");
	CHECK_STR(key(COLLECT_DEDUPE_DATE, hdr), "d:1796119200");
	CHECK_STR(key(COLLECT_DEDUPE_NONE, hdr), "");
	CHECK_INT(collect_dedupe_key(COLLECT_DEDUPE_MESSAGE_ID, hdr, strlen(hdr), small,
	                             sizeof small),
	          -1);
	CHECK_INT(collect_dedupe_mode_parse("Message-ID", &m), 0);
	CHECK_INT(m, COLLECT_DEDUPE_MESSAGE_ID);
	CHECK_INT(collect_dedupe_mode_parse("date", &m), 0);
	CHECK_INT(m, COLLECT_DEDUPE_DATE);
	CHECK_INT(collect_dedupe_mode_parse("NONE", &m), 0);
	CHECK_INT(m, COLLECT_DEDUPE_NONE);
	CHECK_INT(collect_dedupe_mode_parse("messageid", &m), -1);
	CHECK_INT(collect_dedupe_mode_parse("", &m), -1);
	CHECK_INT(m, COLLECT_DEDUPE_NONE);
	CHECK_STR(collect_dedupe_mode_name(COLLECT_DEDUPE_MESSAGE_ID), "message-id");
	CHECK_STR(collect_dedupe_mode_name(COLLECT_DEDUPE_DATE), "date");
	CHECK_STR(collect_dedupe_mode_name(COLLECT_DEDUPE_NONE), "none");
}

TEST_MAIN(T(message_id_keys), T(message_id_length), T(date_keys), T(modes))
