/*
 * base64: RFC 4648 section 4 encoding and a strict decoder. Strictness matters
 * because Minger compares digests: a decoder that accepted non-canonical forms
 * (stray bits in the last quantum, missing padding, whitespace) would let two
 * different strings stand for the same digest and hide malformed queries.
 */
#include "proto/base64.h"

static const char b64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * Value of each alphabet character plus one; 0 for every other octet (RFC 4648
 * section 4, table 1). A table because every Minger query decodes its digest.
 */
static const uint8_t b64_table[256] = {
        ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
        ['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
        ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
        ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
        ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
        ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
        ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
        ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
        ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
        ['/'] = 64,
};

/* Value of one alphabet character, or -1. */
static int b64_value(unsigned char c)
{
	return (int)b64_table[c] - 1;
}

int base64_encode(const uint8_t *in, size_t len, char *out, size_t outsz)
{
	size_t need = BASE64_ENCODED_LEN(len);
	size_t i, o = 0;

	if (need >= outsz || need > (size_t)0x7fffffff)
		return -1;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return (int)o;
}

/*
 * Decodes one 4-character quantum. pad is the number of trailing '=' (0-2),
 * already checked by the caller; the bits a padded quantum does not carry must
 * be zero (RFC 4648 section 3.5, canonical encoding).
 */
static int b64_quantum(const char *q, int pad, uint8_t *dst)
{
	uint32_t v = 0;
	int k;

	for (k = 0; k < 4 - pad; k++) {
		int d = b64_value((unsigned char)q[k]);
		if (d < 0)
			return -1;
		v |= (uint32_t)d << (18 - 6 * k);
	}
	if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0))
		return -1;
	dst[0] = (uint8_t)(v >> 16);
	if (pad < 2)
		dst[1] = (uint8_t)(v >> 8);
	if (pad < 1)
		dst[2] = (uint8_t)v;
	return 3 - pad;
}

int base64_decode(const char *in, size_t len, uint8_t *out, size_t outsz)
{
	size_t i, o = 0;
	int pad = 0;

	if (len % 4 != 0 || len / 4 * 3 > (size_t)0x7fffffff)
		return -1;
	if (len > 0 && in[len - 1] == '=')
		pad = (len > 1 && in[len - 2] == '=') ? 2 : 1;
	if (len / 4 * 3 - (size_t)pad > outsz)
		return -1;
	for (i = 0; i < len; i += 4) {
		int last = (i + 4 == len);
		int n = b64_quantum(in + i, last ? pad : 0, out + o);
		if (n < 0)
			return -1;
		o += (size_t)n;
	}
	return (int)o;
}
