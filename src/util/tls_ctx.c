/* tls_ctx: see tls_ctx.h. */
#include "util/tls_ctx.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

/* OpenSSL's reason for the last failure (its error queue is emptied). */
static void ssl_reason(char *out, size_t outsz)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	snprintf(out, outsz, "%s", r ? r : "unknown OpenSSL error");
	ERR_clear_error();
}

/* 0 when path can be opened for reading, else -1 with the reason in err. */
static int readable(const char *key, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s %s: cannot open: %s", key, path, strerror(errno));
		return -1;
	}
	fclose(f);
	return 0;
}

SSL_CTX *tls_ctx_server_new(const char *cert_file, const char *key_file, int *key_at_fault,
                            char *err, size_t errlen)
{
	char why[256];
	int own_key = key_file && *key_file;
	const char *key = own_key ? key_file : cert_file;
	const char *key_name = own_key ? "tls_key_file" : "tls_cert_file";
	int dummy;
	if (!key_at_fault)
		key_at_fault = &dummy;
	*key_at_fault = 0;
	if (readable("tls_cert_file", cert_file, err, errlen) != 0)
		return NULL;
	if (readable(key_name, key, err, errlen) != 0) {
		*key_at_fault = own_key;
		return NULL;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "TLS: %s", why);
		return NULL;
	}
	/* RFC 8996: nothing below TLS 1.2; RFC 7457/5746: no renegotiation at all. */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "tls_cert_file %s: no certificate read (PEM): %s", cert_file,
		         why);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_last_error();
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			goto mismatch;
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "%s %s: no private key read (PEM): %s", key_name, key, why);
		*key_at_fault = own_key;
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
	mismatch:
		ERR_clear_error();
		snprintf(err, errlen, "%s %s does not match the certificate of tls_cert_file %s",
		         key_name, key, cert_file);
		*key_at_fault = own_key;
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
