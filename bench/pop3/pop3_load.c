/*
 * pop3_load: the POP3 benchmark's client (bench/pop3/run.py). One session:
 * USER/PASS, UIDL, LIST, then RETR of every message with up to WINDOW commands
 * pipelined (RFC 2449 PIPELINING), then QUIT. It parses every response (status
 * line, multi-line body to the "." line) and prints one line:
 *   messages=N octets=N seconds=S
 * Plain blocking sockets and one large read buffer, so the client costs little
 * next to the server it measures. Exit 0, or 1 with the reason on stderr.
 *
 * usage: pop3_load HOST PORT USER PASSWORD
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 32
#define RBUF (1 << 20)

struct conn {
	int fd;
	char *buf;
	size_t len, off;
	unsigned long long octets;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "pop3_load: %s\n", what);
	exit(1);
}

/* The next line (without its CRLF) into *line, its length returned; reads as needed. */
static size_t next_line(struct conn *c, const char **line)
{
	for (;;) {
		char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
		if (nl) {
			size_t n = (size_t)(nl - (c->buf + c->off)) + 1;
			*line = c->buf + c->off;
			c->off += n;
			c->octets += n;
			return n >= 2 && nl[-1] == '\r' ? n - 2 : n - 1;
		}
		if (c->off > 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		}
		if (c->len == RBUF)
			die("line too long");
		ssize_t r = read(c->fd, c->buf + c->len, RBUF - c->len);
		if (r <= 0)
			die("connection closed");
		c->len += (size_t)r;
	}
}

static void send_all(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(c->fd, p, n);
		if (w <= 0)
			die("write failed");
		p += w;
		n -= (size_t)w;
	}
}

static void expect_ok(struct conn *c, const char *what)
{
	const char *l;
	size_t n = next_line(c, &l);
	if (n < 3 || memcmp(l, "+OK", 3) != 0) {
		fprintf(stderr, "pop3_load: %s: %.*s\n", what, (int)n, l);
		exit(1);
	}
}

/* A multi-line body to its "." line; returns the number of lines. */
static size_t read_multi(struct conn *c)
{
	size_t lines = 0;
	for (;;) {
		const char *l;
		size_t n = next_line(c, &l);
		if (n == 1 && l[0] == '.')
			return lines;
		lines++;
	}
}

/* Sends "VERB ARG\r\n". */
static void cmd(struct conn *c, const char *verb, const char *arg)
{
	char line[512];
	int n = snprintf(line, sizeof line, "%s %s\r\n", verb, arg);
	send_all(c, line, (size_t)n);
}

int main(int argc, char **argv)
{
	if (argc != 5)
		die("usage: pop3_load HOST PORT USER PASSWORD");
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
		die("bad host");
	struct conn c = {.fd = socket(AF_INET, SOCK_STREAM, 0), .buf = malloc(RBUF)};
	if (c.fd < 0 || !c.buf)
		die("socket");
	double t0 = now_s();
	if (connect(c.fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		die("connect");
	int one = 1;
	setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	expect_ok(&c, "greeting");
	cmd(&c, "USER", argv[3]);
	expect_ok(&c, "USER");
	cmd(&c, "PASS", argv[4]);
	expect_ok(&c, "PASS");
	send_all(&c, "UIDL\r\n", 6);
	expect_ok(&c, "UIDL");
	size_t n = read_multi(&c);
	send_all(&c, "LIST\r\n", 6);
	expect_ok(&c, "LIST");
	if (read_multi(&c) != n)
		die("LIST and UIDL disagree");
	size_t sent = 0, done = 0;
	while (done < n) {
		while (sent < n && sent - done < WINDOW) {
			char num[32];
			snprintf(num, sizeof num, "%zu", sent + 1);
			cmd(&c, "RETR", num);
			sent++;
		}
		expect_ok(&c, "RETR");
		read_multi(&c);
		done++;
	}
	send_all(&c, "QUIT\r\n", 6);
	expect_ok(&c, "QUIT");
	double t1 = now_s();
	printf("messages=%zu octets=%llu seconds=%.6f\n", n, c.octets, t1 - t0);
	close(c.fd);
	free(c.buf);
	return 0;
}
