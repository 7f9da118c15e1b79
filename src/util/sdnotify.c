/* sdnotify: see sdnotify.h. The protocol is sd_notify(3)'s "Notes" section. */
#include "util/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int sdnotify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 0;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof sun.sun_path) {
		errno = EINVAL; /* vsock and other kinds are not spoken here */
		return -1;
	}
	memcpy(sun.sun_path, path, len);
	if (path[0] == '@')
		sun.sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	size_t n = strlen(state);
	ssize_t w = sendto(fd, state, n, MSG_NOSIGNAL, (const struct sockaddr *)&sun, salen);
	int e = errno;
	close(fd);
	errno = e;
	return w == (ssize_t)n ? 1 : -1;
}

int sdnotify_reloading(void)
{
	char msg[64];
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ull +
	                 (unsigned long long)ts.tv_nsec / 1000);
	return sdnotify_send(msg);
}
