/* SHA-256 with OpenSSL's libcrypto, loaded at run time (see kvmbox/core/dynlib.h). */
#ifndef KVMBOX_SHA256_H
#define KVMBOX_SHA256_H

#include <stdatomic.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include "kvmbox/core/error.h"

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
 * SHA-256 of a file while it is being written, on a thread of its own, hashed
 * from the very buffers the file is written from: the data is touched once
 * while it is in the CPU's cache, never read back, and what is hashed is what
 * was written. The writer never waits for the hash unless all of the pool's
 * buffers are still to be hashed, so a member streams in while the one before
 * is hashed on another core.
 *
 * The pool: the buffers a reader fills (kvmbox unpack's: the bundle as it is
 * read) and the hashing threads hash from. A buffer is reused once the reader
 * has released it and every block queued from it has been hashed.
 */
struct kb_hash_pool;
/* @count buffers of @size bytes (whole pages: each buffer starts on a page). @stop (may be NULL): a flag a signal handler sets; kb_hash_pool_take then waits no more. */
struct kb_hash_pool *kb_hash_pool_new(unsigned count, size_t size, const atomic_int *stop,
				      struct kb_error *err);
/* Every hasher that used it finished or cancelled first. NULL: nothing. */
void kb_hash_pool_free(struct kb_hash_pool *p);
size_t kb_hash_pool_size(const struct kb_hash_pool *p);
/* A free buffer, held by the caller until kb_hash_pool_release; waits for one. NULL once @stop is set. */
uint8_t *kb_hash_pool_take(struct kb_hash_pool *p);
/* The caller's hold on a buffer kb_hash_pool_take gave released (the blocks queued from it keep it). */
void kb_hash_pool_release(struct kb_hash_pool *p, const void *buf);

struct kb_hasher;
/*
 * A thread that hashes the blocks of one file, in the file's order, holes as
 * zeros. @size_hint: the file's size when known (0: unknown); a file of at
 * most KB_HASHER_INLINE_MAX bytes gets no thread: kb_hasher_add hashes each
 * block at once, in the caller's thread.
 */
#define KB_HASHER_INLINE_MAX (1u << 20)
struct kb_hasher *kb_hasher_start(const struct kb_sha256_api *api, struct kb_hash_pool *pool,
				  const atomic_int *stop, uint64_t size_hint, struct kb_error *err);
/*
 * @len bytes at @offset of the file (at or past the end of the last block; the
 * bytes between are zeros). In a buffer of the pool: hashed from there, the
 * buffer held until then; elsewhere: copied into the pool's buffers first
 * (waiting for one). -1: @stop was set, or @offset goes backwards.
 */
int kb_hasher_add(struct kb_hasher *h, const void *data, size_t len, uint64_t offset);
/*
 * The file is all written and @size bytes long (the rest after the last block
 * zeros): wait for the thread and give the digest, or -1 with @err (@name: the
 * file, for the message) when @stop was set. Frees @h either way.
 */
int kb_hasher_finish(struct kb_hasher *h, uint64_t size, uint8_t digest[32], const char *name, struct kb_error *err);
/* The digest is not wanted: stop the thread and free @h (NULL: nothing). */
void kb_hasher_cancel(struct kb_hasher *h);

#endif
