/*
 * dotstuff: transparency on the way out (RFC 5321 4.5.2) and CRLF-only line
 * ends (RFC 5321 2.3.8).
 *
 * A CR is sent as CRLF at once and remembered (after_cr), so that an LF right
 * after it, in this chunk or the next, is the second half of that CRLF and is
 * dropped: no octet is ever held back between calls, and the output is the
 * same whatever the chunk sizes.
 */
#include "proto/dotstuff.h"

#include <string.h>

void dotstuff_init(struct dotstuff *d)
{
	memset(d, 0, sizeof *d);
	d->at_bol = 1;
}

/* What octet c becomes on the wire, in out; returns how many (0: the LF of a CRLF). */
static size_t expand(struct dotstuff *d, char c, char out[2])
{
	if (c == '\n' && d->after_cr) {
		d->after_cr = 0; /* the LF of a CRLF already written */
		return 0;
	}
	if (d->after_cr || c == '\n')
		d->line_ends_fixed++; /* the CR before this octet was bare, or this LF is */
	d->after_cr = 0;
	if (c == '\r' || c == '\n') {
		d->after_cr = c == '\r';
		d->at_bol = 1;
		out[0] = '\r';
		out[1] = '\n';
		return 2;
	}
	if (c == '.' && d->at_bol) {
		d->at_bol = 0;
		out[0] = '.';
		out[1] = '.';
		return 2;
	}
	d->at_bol = 0;
	out[0] = c;
	return 1;
}

/* The size of c's expansion, without changing the state. */
static size_t expansion_size(const struct dotstuff *d, char c)
{
	if (c == '\n' && d->after_cr)
		return 0;
	if (c == '\r' || c == '\n' || (c == '.' && d->at_bol))
		return 2;
	return 1;
}

/*
 * How many octets from p on go out unchanged: none after a CR (its LF may
 * follow) or at a '.' opening a line; else up to the next CR or LF, at most
 * room.
 */
static size_t ordinary_run(const struct dotstuff *d, const char *p, size_t len, size_t room)
{
	if (d->after_cr || (d->at_bol && p[0] == '.'))
		return 0;
	size_t n = len < room ? len : room;
	const char *lf = memchr(p, '\n', n);
	if (lf)
		n = (size_t)(lf - p);
	const char *cr = memchr(p, '\r', n);
	return cr ? (size_t)(cr - p) : n;
}

size_t dotstuff_feed(struct dotstuff *d, const char *in, size_t len, char *out, size_t outsz,
                     size_t *out_len)
{
	size_t i = 0, o = 0;
	while (i < len) {
		/* Most octets are neither a line end nor a dot opening a line: copy them in runs. */
		size_t run = ordinary_run(d, in + i, len - i, outsz - o);
		if (run > 0) {
			memcpy(out + o, in + i, run);
			i += run;
			o += run;
			d->at_bol = 0;
			continue;
		}
		char c = in[i];
		size_t need = expansion_size(d, c);
		if (o + need > outsz)
			break;
		char tmp[2];
		size_t n = expand(d, c, tmp);
		memcpy(out + o, tmp, n);
		o += n;
		i++;
	}
	d->in_octets += i;
	d->out_octets += o;
	*out_len = o;
	return i;
}

size_t dotstuff_end(struct dotstuff *d, char *out, size_t outsz)
{
	size_t o = 0;
	if (outsz < DOTSTUFF_END_MAX)
		return 0;
	if (d->after_cr)
		d->line_ends_fixed++; /* the body ended with a bare CR */
	/* RFC 5321 4.1.1.4: the data ends with CRLF "." CRLF, the first CRLF being
	 * the end of the last line; a body that lacks it gets one. */
	if (!d->at_bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	o += 3;
	d->out_octets += o;
	d->at_bol = 1;
	d->after_cr = 0;
	return o;
}
