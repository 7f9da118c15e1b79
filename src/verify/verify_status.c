/*
 * verify_status: see verify_status.h. The reader is strict (every field
 * present, numbers decimal, names printable): the file is written only by the
 * daemon, so anything else is damage and is reported with its line (and, for
 * a caller that asks, skipped).
 */
#include "verify/verify_status.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VS_LINE_MAX (VERIFY_STATUS_NAME_MAX + VERIFY_STATUS_ADDR_MAX + 128)
#define VS_FIELDS 8

static const char *const kind_names[] = {"peer", "gateway", "forward"};

const char *verify_status_kind_name(enum verify_status_kind k)
{
	return (unsigned)k < 3 ? kind_names[k] : "?";
}

static int word_ok(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

int verify_status_format(const struct verify_status_entry *v, size_t n, char *out, size_t outsz)
{
	size_t used = 0;
	int w = snprintf(out, outsz, "%s\n", VERIFY_STATUS_HEADER);
	if (w < 0 || (size_t)w >= outsz)
		return -1;
	used = (size_t)w;
	for (size_t i = 0; i < n; i++) {
		if (!word_ok(v[i].name) || !word_ok(v[i].minger_addr))
			return -1;
		w = snprintf(out + used, outsz - used,
		             "%s %s %s %" PRId64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
		             "\n",
		             verify_status_kind_name(v[i].kind), v[i].name, v[i].minger_addr,
		             v[i].last_answer, v[i].rtt_last_us, v[i].rtt_avg_us, v[i].queries,
		             v[i].failures);
		if (w < 0 || (size_t)w >= outsz - used)
			return -1;
		used += (size_t)w;
	}
	return (int)used;
}

int verify_status_write(const char *path, const char *text, size_t len)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	int bad = fwrite(text, 1, len, f) != len;
	if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end || errno)
		return -1;
	*out = v;
	return 0;
}

static int copy_word(char *dst, size_t dstsz, const char *w)
{
	if (!word_ok(w) || strlen(w) >= dstsz)
		return -1;
	memcpy(dst, w, strlen(w) + 1);
	return 0;
}

/* One line (no newline) into e. Returns 0 or -1 with a reason. */
static int parse_line(char *line, struct verify_status_entry *e, const char **why)
{
	char *f[VS_FIELDS + 1];
	size_t n = 0;
	for (char *p = line; n <= VS_FIELDS;) {
		f[n++] = p;
		char *sp = strchr(p, ' ');
		if (!sp)
			break;
		*sp = '\0';
		p = sp + 1;
	}
	if (n != VS_FIELDS) {
		*why = "want 8 fields";
		return -1;
	}
	memset(e, 0, sizeof *e);
	size_t k = 0;
	while (k < 3 && strcmp(f[0], kind_names[k]) != 0)
		k++;
	if (k == 3) {
		*why = "kind is not peer, gateway or forward";
		return -1;
	}
	e->kind = (enum verify_status_kind)k;
	uint64_t last;
	if (copy_word(e->name, sizeof e->name, f[1]) < 0 ||
	    copy_word(e->minger_addr, sizeof e->minger_addr, f[2]) < 0) {
		*why = "bad name or address";
		return -1;
	}
	if (parse_u64(f[3], &last) < 0 || last > INT64_MAX ||
	    parse_u64(f[4], &e->rtt_last_us) < 0 || parse_u64(f[5], &e->rtt_avg_us) < 0 ||
	    parse_u64(f[6], &e->queries) < 0 || parse_u64(f[7], &e->failures) < 0) {
		*why = "bad number";
		return -1;
	}
	e->last_answer = (int64_t)last;
	return 0;
}

/* Skips the rest of a line too long for the buffer. */
static void skip_rest(FILE *fp)
{
	int ch;
	while ((ch = getc(fp)) != EOF && ch != '\n')
		;
}

static int read_lines(FILE *fp, const char *path, struct verify_status_entry **out, size_t *n,
                      verify_status_skip_cb skip, void *arg, char *err, size_t errlen)
{
	char line[VS_LINE_MAX + 2];
	size_t cap = 0;
	int lineno = 0;
	while (fgets(line, sizeof line, fp)) {
		lineno++;
		size_t len = strlen(line);
		const char *why = "line too long or not ended";
		int ok = len > 0 && line[len - 1] == '\n';
		if (!ok && len == sizeof line - 1)
			skip_rest(fp);
		if (ok) {
			line[len - 1] = '\0';
			if (line[0] == '#' || line[0] == '\0')
				continue;
			if (*n == VERIFY_STATUS_LINES_MAX) {
				snprintf(err, errlen, "%s:%d: more than %d servers", path, lineno,
				         VERIFY_STATUS_LINES_MAX);
				return -1;
			}
			if (*n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct verify_status_entry *v = realloc(*out, nc * sizeof *v);
				if (!v) {
					snprintf(err, errlen, "%s: out of memory", path);
					return -1;
				}
				*out = v;
				cap = nc;
			}
			ok = parse_line(line, &(*out)[*n], &why) == 0;
		}
		if (ok) {
			(*n)++;
			continue;
		}
		snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
		if (!skip)
			return -1;
		skip(arg, err);
		err[0] = '\0';
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s: read error", path);
		return -1;
	}
	return 0;
}

int verify_status_read(const char *path, struct verify_status_entry **out, size_t *n,
                       verify_status_skip_cb skip, void *arg, char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	FILE *fp = fopen(path, "r");
	if (!fp) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		errno = e;
		return -1;
	}
	int rc = read_lines(fp, path, out, n, skip, arg, err, errlen);
	fclose(fp);
	if (rc < 0) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}
