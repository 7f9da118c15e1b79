/* net_client: see net_client.h. */
#include "net/net_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

socklen_t net_client_sa_len(const struct sockaddr_storage *sa)
{
	if (sa->ss_family == AF_INET)
		return sizeof(struct sockaddr_in);
	if (sa->ss_family == AF_INET6)
		return sizeof(struct sockaddr_in6);
	return 0;
}

SSL_CTX *net_client_tls_ctx_new(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return NULL;
	/* RFC 7435: opportunistic TLS authenticates nobody; an unverifiable
	 * certificate must not push the session back into plaintext. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

int net_client_sni(const char *host, char *out, size_t outsz)
{
	struct in6_addr a6;
	size_t n = host ? strlen(host) : 0;
	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n >= outsz || host[0] == '[')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)host[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
			return 0;
	}
	memcpy(out, host, n);
	out[n] = '\0';
	/* RFC 6066 3: "Literal IPv4 and IPv6 addresses are not permitted". */
	if (inet_pton(AF_INET, out, &a6) == 1 || inet_pton(AF_INET6, out, &a6) == 1)
		return 0;
	return 1;
}

int net_client_local_errno(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

struct bufferevent *net_client_connect(struct event_base *base, const struct sockaddr_storage *sa,
                                       int *err)
{
	socklen_t len = net_client_sa_len(sa);
	if (len == 0) {
		*err = EAFNOSUPPORT;
		return NULL;
	}
	int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct bufferevent *b = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (b == NULL) {
		close(fd);
		*err = ENOMEM;
		return NULL;
	}
	if (bufferevent_socket_connect(b, (const struct sockaddr *)sa, (int)len) != 0) {
		*err = errno ? errno : ECONNREFUSED;
		bufferevent_free(b);
		return NULL;
	}
	*err = 0;
	return b;
}

struct bufferevent *net_client_tls_start(struct event_base *base, struct bufferevent *raw,
                                         SSL_CTX *ctx, const char *host, SSL **ssl_out)
{
	char sni[256];
	*ssl_out = NULL;
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	if (ssl == NULL)
		return NULL;
	if (net_client_sni(host, sni, sizeof sni))
		SSL_set_tlsext_host_name(ssl, sni);
	/* libevent 2.1 sends the ClientHello from inside filter_new. Deferred
	 * callbacks: an event it raises there (before the caller's callbacks are
	 * set), or a failed SSL_write inside bufferevent_write() (which would
	 * re-enter the caller's pump), comes from the loop instead. */
	struct bufferevent *b = bufferevent_openssl_filter_new(
	        base, raw, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_DEFER_CALLBACKS);
	if (b == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
	*ssl_out = ssl;
	return b;
}
