/*
 * Unit tests for proto/collect_trace (the collector's trace field) and the
 * Delivered-To loop check of local delivery on collected messages
 * (deliver_headers_delivered_to): the ISP's Delivered-To above its topmost
 * Received is not ours, ours of an earlier delivery below it is a loop, and
 * nobody but the collector can make the first field a trace field.
 */
#include <stdio.h>
#include <string.h>

#include "deliver/deliver_headers.h"
#include "harness.h"
#include "proto/collect_trace.h"
#include "proto/rfc5322.h"

static long trace(char *out, size_t outsz, const char *uidl)
{
	return collect_trace_format("pop.isp.example", "mx.example.com", "Q123",
	                            "pop3://dom@pop.isp.example:110", uidl, strlen(uidl),
	                            1764633600, out, outsz);
}

TEST(trace_format)
{
	char buf[1024];
	long n = trace(buf, sizeof buf, "UID-1");
	CHECK(n > 0 && (size_t)n == strlen(buf));
	CHECK_STR(buf, "Received: from pop.isp.example by mx.example.com with POP3 id Q123\r\n"
	               "\t(sharemail-collect pop3://dom@pop.isp.example:110 uidl UID-1);\r\n"
	               "\tTue, 02 Dec 2025 00:00:00 +0000\r\n");
	/* It is one well-formed field, recognised as ours. */
	size_t pos = 0;
	struct rfc5322_field f;
	CHECK_INT(rfc5322_next_field(buf, (size_t)n, &pos, &f), 1);
	CHECK_INT(pos, (size_t)n);
	CHECK(rfc5322_field_is(&f, "Received"));
	CHECK(collect_trace_is_ours(f.value, f.value_len));
	/* Octets that could close the comment or break the field are replaced. */
	n = trace(buf, sizeof buf, "a)b(c\\d\r\ne");
	CHECK(n > 0 && strstr(buf, "uidl a?b?c?d??e);") != NULL);
	CHECK(trace(buf, 40, "x") == -1);
}

TEST(trace_not_ours)
{
	static const char *const v[] = {
	        " from a (b [1.2.3.4]) by mx.example.com (sharemail) with ESMTP id Q1; date",
	        " from pop by x with POP3 (fetchmail-6.4) for <a@b>; date",
	        " from x by y with ESMTP id 1 (sharemail-collect fake); date",
	        "",
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		CHECK(!collect_trace_is_ours(v[i], strlen(v[i])));
}

/* Builds our trace field followed by rest into buf. */
static size_t collected(char *buf, size_t sz, const char *rest)
{
	long n = trace(buf, sz, "U1");
	snprintf(buf + n, sz - (size_t)n, "%s", rest);
	return strlen(buf);
}

TEST(isp_delivered_to_is_not_a_loop)
{
	char buf[4096];
	/* The ISP's final delivery wrote Delivered-To (and X-Original-To) above its Received. */
	size_t n = collected(buf, sizeof buf,
	                     "Return-Path: <s@else.example>\r\n"
	                     "Delivered-To: Alice@Example.com\r\n"
	                     "X-Original-To: alice@example.com\r\n"
	                     "Received: from out.else.example by mx.isp.example with ESMTP; d\r\n"
	                     "Subject: hi\r\n\r\n");
	CHECK(!deliver_headers_delivered_to(buf, n, "alice@example.com"));
}

TEST(our_earlier_delivery_is_a_loop)
{
	char buf[4096];
	/* We delivered it once (our Delivered-To above our SMTP Received), it was forwarded
	 * to the ISP mailbox, and collected again: ours lies below the ISP's Received. */
	size_t n =
	        collected(buf, sizeof buf,
	                  "Delivered-To: dom@isp.example\r\n"
	                  "Received: from mx.example.com by mx.isp.example with ESMTP; d\r\n"
	                  "Return-Path: <s@else.example>\r\n"
	                  "Delivered-To: alice@example.com\r\n"
	                  "Received: from c by mx.example.com (sharemail) with ESMTP id Q0; d\r\n"
	                  "Subject: hi\r\n\r\n");
	CHECK(deliver_headers_delivered_to(buf, n, "alice@example.com"));
	/* And the ISP's own one does not count even when it names the same mailbox. */
	CHECK(!deliver_headers_delivered_to(buf, n, "dom@isp.example"));
}

TEST(sender_cannot_forge_the_exemption)
{
	char buf[4096];
	char t[1024];
	trace(t, sizeof t, "U1");
	/* A trace field written by a sender lies below our SMTP server's Received field. */
	snprintf(buf, sizeof buf,
	         "Return-Path: <s@else.example>\r\n"
	         "Delivered-To: alice@example.com\r\n"
	         "Received: from c by mx.example.com (sharemail) with ESMTP id Q0; d\r\n"
	         "%sDelivered-To: alice@example.com\r\nSubject: x\r\n\r\n",
	         t);
	CHECK(deliver_headers_delivered_to(buf, strlen(buf), "alice@example.com"));
	/* Not collected: the plain check is unchanged. */
	static const char plain[] = "Delivered-To: <alice@example.com>\r\nSubject: x\r\n\r\n";
	CHECK(deliver_headers_delivered_to(plain, sizeof plain - 1, "alice@example.com"));
	CHECK(!deliver_headers_delivered_to(plain, sizeof plain - 1, "bob@example.com"));
}

TEST(collected_without_isp_received)
{
	char buf[4096];
	/* No Received below: nothing proves a Delivered-To ours, none is read. */
	size_t n = collected(buf, sizeof buf, "Delivered-To: alice@example.com\r\n\r\n");
	CHECK(!deliver_headers_delivered_to(buf, n, "alice@example.com"));
}

TEST_MAIN(T(trace_format), T(trace_not_ours), T(isp_delivered_to_is_not_a_loop),
          T(our_earlier_delivery_is_a_loop), T(sender_cannot_forge_the_exemption),
          T(collected_without_isp_received))
