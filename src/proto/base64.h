/*
 * base64: RFC 4648 section 4 base64 (the alphabet RFC 5034 uses), strict.
 * Pure: no I/O, no allocation; the caller owns every buffer.
 */
#ifndef SHAREMAIL_PROTO_BASE64_H
#define SHAREMAIL_PROTO_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Length of the encoding of n bytes, without a terminating NUL. */
#define BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)

/*
 * Encodes in[0..len) into out with '=' padding and a terminating NUL.
 * Returns the encoded length, or -1 if outsz < BASE64_ENCODED_LEN(len) + 1.
 */
int base64_encode(const uint8_t *in, size_t len, char *out, size_t outsz);

/*
 * Decodes exactly in[0..len): length a multiple of 4, only A-Z a-z 0-9 + /,
 * '=' only as one or two final pad characters, and unused bits of the last
 * quantum zero (canonical form). Returns the decoded length, or -1 on any
 * violation or if the result does not fit in outsz.
 */
int base64_decode(const char *in, size_t len, uint8_t *out, size_t outsz);

#endif
