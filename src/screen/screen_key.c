/* screen_key: see screen_key.h. */
#include "screen/screen_key.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void key_v4(const void *addr4, struct screen_key *out)
{
	memcpy(out->b, v4_mapped, 12);
	memcpy(out->b + 12, addr4, 4);
}

/* An IPv6 address: mapped IPv4 as IPv4, else its /64. */
static void key_v6(const uint8_t a[16], struct screen_key *out)
{
	memset(out->b, 0, sizeof out->b);
	if (memcmp(a, v4_mapped, 12) == 0)
		key_v4(a + 12, out);
	else
		memcpy(out->b, a, 8);
}

int screen_key_from_sockaddr(const struct sockaddr *sa, struct screen_key *out)
{
	if (sa->sa_family == AF_INET) {
		key_v4(&((const struct sockaddr_in *)sa)->sin_addr, out);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		key_v6(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, out);
		return 0;
	}
	return -1;
}

int screen_key_parse(const char *s, struct screen_key *out)
{
	char buf[SCREEN_KEY_TEXT_MAX];
	uint8_t a[16];
	size_t len = strlen(s);
	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, s, len + 1);
	char *slash = strchr(buf, '/');
	if (slash) {
		/* Only the /64 a key stands for; "/064" or "/64x" are not it. */
		if (strcmp(slash + 1, "64") != 0)
			return -1;
		*slash = '\0';
		if (inet_pton(AF_INET6, buf, a) != 1 || memcmp(a, v4_mapped, 12) == 0)
			return -1;
		key_v6(a, out);
		return 0;
	}
	if (inet_pton(AF_INET, buf, a) == 1) {
		key_v4(a, out);
		return 0;
	}
	if (inet_pton(AF_INET6, buf, a) == 1) {
		key_v6(a, out);
		return 0;
	}
	return -1;
}

int screen_key_is_v4(const struct screen_key *k)
{
	return memcmp(k->b, v4_mapped, 12) == 0;
}

void screen_key_format(const struct screen_key *k, char *out, size_t outsz)
{
	char text[INET6_ADDRSTRLEN] = "?";
	if (outsz == 0)
		return;
	if (screen_key_is_v4(k)) {
		inet_ntop(AF_INET, k->b + 12, text, sizeof text);
		snprintf(out, outsz, "%s", text);
		return;
	}
	inet_ntop(AF_INET6, k->b, text, sizeof text);
	snprintf(out, outsz, "%s/64", text);
}

uint64_t screen_key_hash(const struct screen_key *k, uint64_t seed)
{
	uint64_t a, b;
	memcpy(&a, k->b, 8);
	memcpy(&b, k->b + 8, 8);
	uint64_t h = (a ^ seed) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 32;
	h = (h ^ b ^ (seed >> 17 | seed << 47)) * 0xbf58476d1ce4e5b9ull;
	h ^= h >> 31;
	h *= 0x94d049bb133111ebull;
	return h ^ (h >> 29);
}
