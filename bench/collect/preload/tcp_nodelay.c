/*
 * tcp_nodelay.so: an LD_PRELOAD shim for bench/collect only (never installed, never used
 * by sharemail). fetchmail writes each message line with its own write() and never sets
 * TCP_NODELAY, so after the first segment Nagle (RFC 896) holds every small write until the
 * peer ACKs, and the final ".\r\n" waits for the receiver's delayed ACK (about 40 ms on
 * Linux: RFC 1122 4.2.3.2) on every message. fetchmail has no option for it; this shim sets
 * TCP_NODELAY on every IPv4/IPv6 socket the program connects, so the benchmark's reference
 * is what fetchmail itself costs, not the stall (bench/collect/run.py prints both).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

/* connect(2) as libc does it, after TCP_NODELAY on an inet socket (errors ignored: a
 * socket that is not TCP refuses the option and connects as before). */
int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	static connect_fn real;
	int one = 1;

	if (!real)
		real = (connect_fn)dlsym(RTLD_NEXT, "connect");
	if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6))
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return real(fd, addr, len);
}
