/* SHA-256 with OpenSSL's libcrypto, loaded at run time (see kvmbox/dynlib.h). */
#ifndef KVMBOX_SHA256_H
#define KVMBOX_SHA256_H

#include <openssl/evp.h>
#include <stddef.h>
#include <signal.h>
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
/* The SHA-256 of the whole file @path (a path already mapped), as 64 lower-case hex digits and a NUL. */
int kb_sha256_file(const struct kb_sha256_api *api, const char *path, char hex[65], struct kb_error *err);

/*
 * SHA-256 on a second core: the caller queues data (copied into a small ring
 * of buffers, so memory stays flat) and hole lengths, and goes on reading and
 * writing while a thread hashes. Wall time becomes the larger of the two
 * instead of their sum.
 */
#define KB_HASHER_SLOTS 8
#define KB_HASHER_SLOT_SIZE (1u << 20)
struct kb_hasher;
/*
 * @stop (may be NULL): a flag a signal handler sets; once it is non-zero the
 * thread drops what is queued and hashes no more, so a caller that gives up
 * (an interrupted unpack) never waits for a long run of zeros to be hashed.
 */
struct kb_hasher *kb_hasher_start(const struct kb_sha256_api *api, const volatile sig_atomic_t *stop,
				   struct kb_error *err);
void kb_hasher_data(struct kb_hasher *h, const void *data, size_t len);
void kb_hasher_zeros(struct kb_hasher *h, uint64_t len);
/* Wait for the thread, give the digest and free everything. */
void kb_hasher_finish(struct kb_hasher *h, uint8_t digest[32]);

#endif
