/*
 * rfc5322_date: reading a Date: field body (RFC 5322 3.3 date-time, with the
 * obsolete forms of 4.3) as seconds since the epoch (UTC), for the DomainPOP
 * de-duplication key (collect/collect_dedupe.h).
 *
 *   date-time = [ day-of-week "," ] date time [CFWS]
 *   date = day month year;  time = hour ":" minute [ ":" second ] FWS zone
 *
 * Accepted: comments and folding anywhere between tokens, the day of week
 * missing, seconds missing (0), second 60 (a leap second, read as 59 + 1), two-
 * and three-digit years (4.3: 00-49 is 2000-2049, 50-999 is 1900 + year), the
 * obsolete zones UT, GMT, EST/EDT, CST/CDT, MST/MDT, PST/PDT and the military
 * letters (4.3 says those carry no information: read as +0000, as is "-0000"),
 * month names in any case. The day of week, when present, must be a real name
 * but is not checked against the date (clients get it wrong).
 *
 * Pure: no I/O, no allocation, no locale, no time zone database.
 */
#ifndef SHAREMAIL_PROTO_RFC5322_DATE_H
#define SHAREMAIL_PROTO_RFC5322_DATE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses v[0..n) into *out (UTC seconds since 1970-01-01, negative before it).
 * Returns 0, or -1 when it is not a date-time (then *out is untouched): a
 * missing part, a day outside the month (29 February only in a leap year), an
 * hour over 23, a minute over 59, a second over 60, a year outside 1900-9999, a
 * zone offset whose minutes are over 59, or anything but CFWS after the zone.
 */
int rfc5322_date_parse(const char *v, size_t n, int64_t *out);

#endif
