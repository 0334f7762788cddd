/* SHA-256 with OpenSSL's libcrypto, loaded at run time (see kvmbox/dynlib.h). */
#ifndef KVMBOX_SHA256_H
#define KVMBOX_SHA256_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include "kvmbox/error.h"

/* The few libcrypto calls used, filled by kb_sha256_load(). */
struct kb_sha256_api {
	__typeof__(EVP_MD_CTX_new) *ctx_new;
	__typeof__(EVP_MD_CTX_free) *ctx_free;
	__typeof__(EVP_sha256) *sha256;
	__typeof__(EVP_DigestInit_ex) *init;
	__typeof__(EVP_DigestUpdate) *update;
	__typeof__(EVP_DigestFinal_ex) *final;
};

struct kb_sha256 {
	const struct kb_sha256_api *api;
	EVP_MD_CTX *ctx;
};

int kb_sha256_load(struct kb_sha256_api *api, struct kb_error *err);
int kb_sha256_init(struct kb_sha256 *s, const struct kb_sha256_api *api, struct kb_error *err);
void kb_sha256_update(struct kb_sha256 *s, const void *data, size_t len);
/* Feed @len zero bytes (a hole of a sparse file). */
void kb_sha256_zeros(struct kb_sha256 *s, uint64_t len);
/* The digest; the context is released. */
void kb_sha256_final(struct kb_sha256 *s, uint8_t digest[32]);
void kb_sha256_free(struct kb_sha256 *s);

#endif
