/*
 * echo: the reference server of the Minger benchmark. A plain UDP echo server with
 * the same socket and syscall pattern as sharemaild's Minger server
 * (src/minger/minger_server.c: one SO_REUSEPORT socket per thread with a 4 MiB
 * receive buffer, poll() with a stop eventfd, then up to 16 rounds of one recvmmsg
 * of up to 64 datagrams and one sendmmsg of the replies), so that the ratio
 * sharemaild/echo measured in the same run isolates the per-query work of
 * sharemaild. It answers each datagram with its own bytes.
 *
 *   echo -l 127.0.0.1:PORT [-t THREADS] [-b RCVBUF_BYTES]
 *
 * Runs in the foreground until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/netaddr.h"

#define ECHO_BATCH 64
#define ECHO_BATCHES_PER_WAKEUP 16 /* as sharemaild: then poll() again */
#define ECHO_RCVBUF (4 * 1024 * 1024) /* as sharemaild asks for (capped by rmem_max) */
#define ECHO_DGRAM_MAX 2048
#define ECHO_THREADS_MAX 64

/* Written by the signal handler (write(2) is async-signal-safe), polled by every worker. */
static int echo_stop_fd = -1;

struct echo_worker {
	pthread_t tid;
	int fd;
};

static void on_signal(int sig)
{
	uint64_t one = 1;
	ssize_t r = write(echo_stop_fd, &one, sizeof one);
	(void)r;
}

/* One socket per thread, bound with SO_REUSEPORT: the kernel spreads sources over them. */
static int echo_socket(const struct netaddr *a, int rcvbuf)
{
	int one = 1;
	int fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
		close(fd);
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	return fd;
}

/* One recvmmsg() and one sendmmsg() of the same bytes; returns the datagrams read. */
static int echo_batch(int fd)
{
	static __thread uint8_t bufs[ECHO_BATCH][ECHO_DGRAM_MAX];
	struct sockaddr_storage from[ECHO_BATCH];
	struct iovec iov[ECHO_BATCH];
	struct mmsghdr msgs[ECHO_BATCH];
	for (int i = 0; i < ECHO_BATCH; i++) {
		iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = ECHO_DGRAM_MAX};
		msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i],
		                                  .msg_namelen = sizeof from[i],
		                                  .msg_iov = &iov[i],
		                                  .msg_iovlen = 1};
	}
	int n = recvmmsg(fd, msgs, ECHO_BATCH, MSG_DONTWAIT, NULL);
	if (n <= 0)
		return 0;
	/* The reply is the query: reuse each message with its received length. */
	for (int i = 0; i < n; i++)
		iov[i].iov_len = msgs[i].msg_len;
	int done = 0;
	while (done < n) {
		int s = sendmmsg(fd, msgs + done, (unsigned)(n - done), MSG_DONTWAIT);
		if (s > 0)
			done += s;
		else if (s < 0 && errno == EINTR)
			continue;
		else
			break; /* a full send buffer drops the rest, as UDP may */
	}
	return n;
}

/* The same loop as sharemaild's workers: poll(), then drain in batches. */
static void *echo_run(void *arg)
{
	struct echo_worker *w = arg;
	struct pollfd pfd[2] = {{.fd = w->fd, .events = POLLIN},
	                        {.fd = echo_stop_fd, .events = POLLIN}};
	for (;;) {
		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		for (int i = 0; i < ECHO_BATCHES_PER_WAKEUP; i++)
			if (echo_batch(w->fd) < ECHO_BATCH)
				break;
	}
	return NULL;
}

static int usage(void)
{
	fprintf(stderr, "usage: echo -l HOST:PORT [-t THREADS] [-b RCVBUF_BYTES]\n");
	return 2;
}

static int start_workers(struct echo_worker *w, int threads, const struct netaddr *a, int rcvbuf)
{
	for (int i = 0; i < threads; i++) {
		w[i].fd = echo_socket(a, rcvbuf);
		if (w[i].fd < 0) {
			fprintf(stderr, "echo: socket: %s\n", strerror(errno));
			return -1;
		}
	}
	for (int i = 0; i < threads; i++)
		if (pthread_create(&w[i].tid, NULL, echo_run, &w[i]) != 0) {
			fprintf(stderr, "echo: pthread_create failed\n");
			return -1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	const char *listen = NULL;
	int threads = 1, rcvbuf = ECHO_RCVBUF, opt;
	while ((opt = getopt(argc, argv, "l:t:b:")) != -1) {
		switch (opt) {
		case 'l': listen = optarg; break;
		case 't': threads = atoi(optarg); break;
		case 'b': rcvbuf = atoi(optarg); break;
		default: return usage();
		}
	}
	if (!listen || threads < 1 || threads > ECHO_THREADS_MAX)
		return usage();
	struct netaddr a;
	char err[128];
	if (netaddr_parse_hostport(listen, 0, 0, &a, err, sizeof err) != 0) {
		fprintf(stderr, "echo: %s: %s\n", listen, err);
		return 2;
	}
	/* Once written, the eventfd stays readable, so every worker sees the stop. */
	echo_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (echo_stop_fd < 0)
		return 1;
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	struct echo_worker w[ECHO_THREADS_MAX];
	memset(w, 0, sizeof w);
	if (start_workers(w, threads, &a, rcvbuf) != 0)
		return 1;
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		close(w[i].fd);
	}
	return 0;
}
