/* SHA-256 with OpenSSL's libcrypto, loaded at run time (see kvmbox/core/dynlib.h). */
#ifndef KVMBOX_SHA256_H
#define KVMBOX_SHA256_H

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
 * SHA-256 of a file while it is being written, on a thread of its own. The
 * writer says how far the file is final; the thread reads that part back (from
 * the page cache: one buffer, so memory stays flat whatever the file's size),
 * holes as zeros without reading them, and hashes it. The writer never waits
 * for the hash, so the next file can stream in while this one is hashed on
 * another core, and what is hashed is what was written.
 */
struct kb_file_hasher;
/*
 * @fd: the file opened read-only, owned from here on (closed at the end, on
 * failure too). @stop (may be NULL): a flag a signal handler sets; once it is
 * non-zero the thread hashes no more.
 */
struct kb_file_hasher *kb_file_hasher_start(const struct kb_sha256_api *api, int fd, const volatile sig_atomic_t *stop,
					     struct kb_error *err);
/* The first @final_bytes of the file will not change again. */
void kb_file_hasher_advance(struct kb_file_hasher *h, uint64_t final_bytes);
/*
 * The file is all written and @size bytes long: wait for the thread and give
 * the digest, or -1 with @err (@name: the file, for the message) when reading
 * it back failed or @stop was set. Frees @h either way.
 */
int kb_file_hasher_finish(struct kb_file_hasher *h, uint64_t size, uint8_t digest[32], const char *name,
			  struct kb_error *err);
/*
 * Newer work goes first: the thread lowers its own priority. For the file that
 * started hashing earlier, when another starts: the later one is the longer
 * path to the end, and the two finish together instead of one after the other.
 */
void kb_file_hasher_defer(struct kb_file_hasher *h);
/* The digest is not wanted: stop the thread and free @h (NULL: nothing). */
void kb_file_hasher_cancel(struct kb_file_hasher *h);

#endif
