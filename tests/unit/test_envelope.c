/* Unit tests for envelope: allocation, recipients, string fields. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "queue/envelope.h"

TEST(new_is_zeroed)
{
	struct envelope *e = envelope_new();
	if (!CHECK(e != NULL))
		return;
	CHECK(e->mail_from == NULL && e->rcpts == NULL);
	CHECK_INT(e->n_rcpts, 0);
	CHECK_INT(e->ret, ESMTP_RET_UNSET);
	CHECK_STR(e->id, "");
	envelope_free(e);
	envelope_free(NULL);
}

TEST(set_copies_and_clears)
{
	struct envelope *e = envelope_new();
	char buf[16] = "a@example.com";
	CHECK_INT(envelope_set(&e->mail_from, buf), 0);
	buf[0] = 'X';
	CHECK_STR(e->mail_from, "a@example.com");
	CHECK_INT(envelope_set(&e->mail_from, ""), 0);
	CHECK_STR(e->mail_from, "");
	CHECK_INT(envelope_set(&e->mail_from, NULL), 0);
	CHECK(e->mail_from == NULL);
	envelope_free(e);
}

TEST(add_many_recipients)
{
	struct envelope *e = envelope_new();
	char addr[64];
	for (int i = 0; i < 1000; i++) {
		snprintf(addr, sizeof addr, "user%d@example.com", i);
		CHECK_INT(envelope_add_rcpt(e, addr, i % 2 ? "rfc822;x@y" : NULL,
		                            i % 3 ? ESMTP_NOTIFY_FAILURE : 0),
		          i);
	}
	CHECK_INT(e->n_rcpts, 1000);
	CHECK_STR(e->rcpts[999].addr, "user999@example.com");
	CHECK_STR(e->rcpts[1].orcpt, "rfc822;x@y");
	CHECK(e->rcpts[0].orcpt == NULL);
	CHECK_INT(e->rcpts[2].notify, ESMTP_NOTIFY_FAILURE);
	CHECK_INT(e->rcpts[3].notify, 0);
	CHECK_INT(e->rcpts[500].state, RCPT_PENDING);
	CHECK(e->rcpts[500].status == NULL);
	CHECK_INT(envelope_add_rcpt(e, NULL, NULL, 0), -1);
	CHECK_INT(e->n_rcpts, 1000);
	envelope_free(e);
}

/*
 * A route given with the recipient lives in its address's allocation: set again,
 * cleared, or left for envelope_free, it is never freed alone (ASan sees any
 * free of it, and any leak of a replaced one).
 */
TEST(routed_recipients)
{
	struct envelope *e = envelope_new();
	CHECK_INT(envelope_add_rcpt_routed(e, "a@example.com", NULL, 0, "[192.0.2.7]:25"), 0);
	CHECK_INT(envelope_add_rcpt_routed(e, "b@example.com", "rfc822;b@example.com", 0, ""), 1);
	CHECK_INT(envelope_add_rcpt_routed(e, "c@example.com", NULL, 0, "[192.0.2.8]:25"), 2);
	CHECK_INT(envelope_add_rcpt_routed(e, "d@example.com", NULL, 0, NULL), 3);
	CHECK_STR(e->rcpts[0].addr, "a@example.com");
	CHECK_STR(e->rcpts[0].route, "[192.0.2.7]:25");
	CHECK(e->rcpts[1].route == NULL); /* "" is no route, as for envelope_set */
	CHECK(e->rcpts[3].route == NULL);
	CHECK_STR(e->rcpts[1].orcpt, "rfc822;b@example.com");
	CHECK_INT(e->rcpts[0].state, RCPT_PENDING);
	/* replaced: the new one is a copy of its own, the address intact */
	CHECK_INT(envelope_rcpt_set_route(&e->rcpts[0], "[192.0.2.9]:2525"), 0);
	CHECK_STR(e->rcpts[0].route, "[192.0.2.9]:2525");
	CHECK_STR(e->rcpts[0].addr, "a@example.com");
	CHECK_INT(envelope_rcpt_set_route(&e->rcpts[0], "[192.0.2.10]:25"), 0); /* own one freed */
	CHECK_INT(envelope_rcpt_set_route(&e->rcpts[2], NULL), 0);
	CHECK(e->rcpts[2].route == NULL);
	CHECK_STR(e->rcpts[2].addr, "c@example.com");
	CHECK_INT(envelope_rcpt_set_route(&e->rcpts[3], "[192.0.2.11]:25"), 0);
	envelope_rcpt_clear(&e->rcpts[3]);
	CHECK(e->rcpts[3].addr == NULL && e->rcpts[3].route == NULL);
	e->n_rcpts = 3;
	CHECK_INT(envelope_add_rcpt_routed(e, NULL, NULL, 0, "[192.0.2.7]:25"), -1);
	envelope_free(e); /* [0] holds a copy of its own, [1] and [2] none */
}

TEST_MAIN(T(new_is_zeroed), T(set_copies_and_clears), T(add_many_recipients), T(routed_recipients))
