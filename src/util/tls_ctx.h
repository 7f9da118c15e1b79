/*
 * tls_ctx: a server TLS context (OpenSSL SSL_CTX) from the PEM files of
 * tls_cert_file and tls_key_file, the one way both the configuration check
 * (conf.c, at load, so errors name the line) and the services (net_server,
 * at start and on SIGHUP) read them.
 *
 * Policy: TLS 1.2 and 1.3 (nothing older), OpenSSL's default cipher lists and
 * groups, no renegotiation. The certificate file holds the leaf first, then
 * its chain (SSL_CTX_use_certificate_chain_file).
 *
 * Ownership: the caller frees the context with SSL_CTX_free().
 */
#ifndef SHAREMAIL_UTIL_TLS_CTX_H
#define SHAREMAIL_UTIL_TLS_CTX_H

#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;

/*
 * A server context with the certificate chain of cert_file and the private key
 * of key_file (NULL or "": the key is in cert_file too), checked to match.
 * NULL on failure, with the reason in err ("tls_cert_file /x: cannot open:
 * No such file or directory", "tls_key_file /y does not match the certificate")
 * and *key_at_fault (when not NULL) set to 1 when the key file is the one at
 * fault, else 0.
 */
SSL_CTX *tls_ctx_server_new(const char *cert_file, const char *key_file, int *key_at_fault,
                            char *err, size_t errlen);

#endif
