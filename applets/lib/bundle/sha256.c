/* SHA-256 through libcrypto's EVP interface, loaded at run time; see kvmbox/bundle/sha256.h. */
#include <stdatomic.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "kvmbox/core/dynlib.h"
#include "kvmbox/bundle/sha256.h"

int kb_sha256_load(struct kb_sha256_api *api, struct kb_error *err)
{
	const struct kb_dynlib_symbol symbols[] = {
		{ "EVP_MD_CTX_new", (void **)&api->ctx_new },  { "EVP_MD_CTX_free", (void **)&api->ctx_free },
		{ "EVP_sha256", (void **)&api->sha256 },       { "EVP_DigestInit_ex", (void **)&api->init },
		{ "EVP_DigestUpdate", (void **)&api->update }, { "EVP_DigestFinal_ex", (void **)&api->final },
	};
	return kb_dynlib_load(KB_LIB_CRYPTO, symbols, sizeof(symbols) / sizeof(symbols[0]), err);
}

int kb_sha256_init(struct kb_sha256 *s, const struct kb_sha256_api *api, struct kb_error *err)
{
	s->api = api;
	s->ctx = api->ctx_new();
	if (!s->ctx || api->init(s->ctx, api->sha256(), NULL) != 1) {
		kb_sha256_free(s);
		return kb_fail(err, 0, NULL, "starting a SHA-256 digest");
	}
	return 0;
}

void kb_sha256_update(struct kb_sha256 *s, const void *data, size_t len)
{
	s->api->update(s->ctx, data, len);
}

void kb_sha256_zeros(struct kb_sha256 *s, uint64_t len)
{
	static const uint8_t zeros[65536]; /* read-only */
	while (len > 0) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		s->api->update(s->ctx, zeros, n);
		len -= n;
	}
}

void kb_sha256_final(struct kb_sha256 *s, uint8_t digest[32])
{
	unsigned int n = 32;
	s->api->final(s->ctx, digest, &n);
	kb_sha256_free(s);
}

void kb_sha256_free(struct kb_sha256 *s)
{
	if (s->ctx)
		s->api->ctx_free(s->ctx);
	s->ctx = NULL;
}

/*
 * The pool: COUNT buffers, each with the number of holds on it (the reader's
 * while it fills it, one per block a hashing thread has still to hash from it).
 */
struct kb_hash_pool {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	size_t size;
	unsigned count;
	uint8_t *mem;      /* count * size bytes */
	unsigned *holds;
	unsigned next;     /* where the search for a free buffer starts: they are used in turn */
	const atomic_int *stop;
};

struct kb_hash_pool *kb_hash_pool_new(unsigned count, size_t size, const atomic_int *stop,
				      struct kb_error *err)
{
	/* Each buffer page-aligned: a block written straight from one with O_DIRECT meets the filesystem's alignment. */
	if (size == 0 || size % 4096) {
		kb_fail(err, EINVAL, NULL, "hashing buffers of %zu bytes: not whole pages", size);
		return NULL;
	}
	struct kb_hash_pool *p = calloc(1, sizeof(*p));
	if (p) {
		p->mem = aligned_alloc(4096, (size_t)count * size);
		p->holds = calloc(count, sizeof(*p->holds));
	}
	if (!p || !p->mem || !p->holds) {
		if (p) {
			free(p->mem);
			free(p->holds);
		}
		free(p);
		kb_fail(err, ENOMEM, NULL, "allocating buffers to hash from");
		return NULL;
	}
	p->size = size;
	p->count = count;
	p->stop = stop;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->freed, NULL);
	return p;
}

void kb_hash_pool_free(struct kb_hash_pool *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->freed);
	free(p->mem);
	free(p->holds);
	free(p);
}

size_t kb_hash_pool_size(const struct kb_hash_pool *p)
{
	return p->size;
}

/* The buffer @data lies in, or -1. */
static int pool_index(const struct kb_hash_pool *p, const void *data, size_t len)
{
	uintptr_t at = (uintptr_t)data, start = (uintptr_t)p->mem;
	if (at < start || at - start >= (uintptr_t)p->count * p->size)
		return -1;
	size_t i = (at - start) / p->size;
	return (at - start) + len <= (i + 1) * p->size ? (int)i : -1;
}

static void pool_release_index(struct kb_hash_pool *p, int i)
{
	pthread_mutex_lock(&p->lock);
	if (--p->holds[i] == 0)
		pthread_cond_broadcast(&p->freed);
	pthread_mutex_unlock(&p->lock);
}

uint8_t *kb_hash_pool_take(struct kb_hash_pool *p)
{
	pthread_mutex_lock(&p->lock);
	for (;;) {
		for (unsigned k = 0; k < p->count; k++) {
			unsigned i = (p->next + k) % p->count;
			if (p->holds[i] == 0) {
				p->holds[i] = 1;
				p->next = (i + 1) % p->count;
				pthread_mutex_unlock(&p->lock);
				return p->mem + (size_t)i * p->size;
			}
		}
		/* The hashing threads free buffers even when stopped (they drop what is queued). */
		if (p->stop && *p->stop)
			break;
		pthread_cond_wait(&p->freed, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void kb_hash_pool_release(struct kb_hash_pool *p, const void *buf)
{
	int i = buf ? pool_index(p, buf, 1) : -1;
	if (i >= 0)
		pool_release_index(p, i);
}

/* A block queued for the thread: @len bytes at @offset of the file, in the pool's buffer @buf. */
struct hash_job {
	const uint8_t *data;
	size_t len;
	uint64_t offset;
	int buf;
};
#define KB_HASHER_JOBS 256u

struct kb_hasher {
	struct kb_sha256 sha;
	struct kb_hash_pool *pool;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct hash_job jobs[KB_HASHER_JOBS]; /* a ring: head is the next to hash, count queued */
	unsigned head, count;
	uint64_t size;   /* once done: the file's size, its end hashed as zeros */
	uint64_t queued; /* the end of the last block queued */
	bool done;       /* nothing more will be queued */
	bool inline_;    /* no thread: each block hashed by kb_hasher_add in the caller's thread */
	bool cancel;     /* the digest is not wanted any more */
	const atomic_int *stop; /* when it becomes non-zero, the rest is dropped */
};

static bool stopped(const struct kb_hasher *h)
{
	return h->stop && *h->stop;
}

/* Hash @len zero bytes in slices, so a stop is seen within a fraction of a second. */
static void hash_zeros(struct kb_hasher *h, uint64_t len)
{
	const uint64_t slice = 64u << 20;
	while (len > 0 && !stopped(h)) {
		uint64_t n = len < slice ? len : slice;
		kb_sha256_zeros(&h->sha, n);
		len -= n;
	}
}

static void *hasher_run(void *arg)
{
	struct kb_hasher *h = arg;
	uint64_t pos = 0;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (h->count == 0 && !h->done && !h->cancel)
			pthread_cond_wait(&h->changed, &h->lock);
		if (h->count == 0 && (h->done || h->cancel))
			break;
		struct hash_job job = h->jobs[h->head];
		bool drop = h->cancel || stopped(h);
		pthread_mutex_unlock(&h->lock);
		if (!drop) {
			hash_zeros(h, job.offset - pos); /* the hole before the block */
			kb_sha256_update(&h->sha, job.data, job.len);
			pos = job.offset + job.len;
		}
		pool_release_index(h->pool, job.buf);
		pthread_mutex_lock(&h->lock);
		h->head = (h->head + 1) % KB_HASHER_JOBS;
		h->count--;
		pthread_cond_broadcast(&h->changed);
	}
	uint64_t size = h->size;
	bool drop = h->cancel;
	pthread_mutex_unlock(&h->lock);
	if (!drop && size > pos)
		hash_zeros(h, size - pos); /* the hole at the end */
	return NULL;
}

struct kb_hasher *kb_hasher_start(const struct kb_sha256_api *api, struct kb_hash_pool *pool,
				  const atomic_int *stop, uint64_t size_hint, struct kb_error *err)
{
	struct kb_hasher *h = calloc(1, sizeof(*h));
	if (!h) {
		kb_fail(err, ENOMEM, NULL, "starting a SHA-256 thread");
		return NULL;
	}
	h->pool = pool;
	h->stop = stop;
	if (kb_sha256_init(&h->sha, api, err) < 0) {
		free(h);
		return NULL;
	}
	/* Hashing a small file takes less than making, waking and joining a thread for it. */
	if (size_hint && size_hint <= KB_HASHER_INLINE_MAX) {
		h->inline_ = true;
		return h;
	}
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->changed, NULL);
	if (pthread_create(&h->thread, NULL, hasher_run, h) != 0) {
		kb_sha256_free(&h->sha);
		pthread_mutex_destroy(&h->lock);
		pthread_cond_destroy(&h->changed);
		free(h);
		kb_fail(err, EAGAIN, NULL, "starting a SHA-256 thread");
		return NULL;
	}
	return h;
}

/* Queue @len bytes at @offset from the pool's buffer @buf, which the caller has taken a hold on for it. */
static void queue_job(struct kb_hasher *h, const uint8_t *data, size_t len, uint64_t offset, int buf)
{
	pthread_mutex_lock(&h->lock);
	while (h->count == KB_HASHER_JOBS)
		pthread_cond_wait(&h->changed, &h->lock); /* the thread drains the queue even when stopped */
	h->jobs[(h->head + h->count) % KB_HASHER_JOBS] = (struct hash_job){ data, len, offset, buf };
	h->count++;
	h->queued = offset + len;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
}

int kb_hasher_add(struct kb_hasher *h, const void *data, size_t len, uint64_t offset)
{
	struct kb_hash_pool *p = h->pool;
	if (offset < h->queued)
		return -1; /* blocks come in the file's order */
	if (len == 0)
		return 0;
	if (h->inline_) {
		hash_zeros(h, offset - h->queued); /* the hole before the block */
		kb_sha256_update(&h->sha, data, len);
		h->queued = offset + len;
		return 0;
	}
	int i = pool_index(p, data, len);
	if (i >= 0) {
		/* In a buffer of the pool (the reader's): hashed from there, the buffer kept until then. */
		pthread_mutex_lock(&p->lock);
		p->holds[i]++;
		pthread_mutex_unlock(&p->lock);
		queue_job(h, data, len, offset, i);
		return 0;
	}
	/* Elsewhere (a decompressor's buffer, reused on the next read): copied into the pool's. */
	const uint8_t *from = data;
	for (size_t done = 0; done < len;) {
		uint8_t *buf = kb_hash_pool_take(p);
		if (!buf)
			return -1;
		size_t n = len - done < p->size ? len - done : p->size;
		memcpy(buf, from + done, n);
		queue_job(h, buf, n, offset + done, pool_index(p, buf, n));
		done += n;
	}
	return 0;
}

/* Tell the thread how it ends, wait for it, and free everything but the digest's context. */
static void hasher_end(struct kb_hasher *h, uint64_t size, bool cancel)
{
	if (h->inline_) {
		if (!cancel && size > h->queued)
			hash_zeros(h, size - h->queued); /* the hole at the end */
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (cancel)
		h->cancel = true;
	h->size = size;
	h->done = true;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->changed);
}

int kb_hasher_finish(struct kb_hasher *h, uint64_t size, uint8_t digest[32], const char *name, struct kb_error *err)
{
	if (size < h->queued) { /* blocks past the end */
		kb_hasher_cancel(h);
		return kb_fail(err, EINVAL, name, "more bytes than its size in");
	}
	hasher_end(h, size, false);
	bool was_stopped = stopped(h);
	kb_sha256_final(&h->sha, digest);
	free(h);
	if (was_stopped)
		return kb_fail(err, EINTR, name, "hashing interrupted:");
	return 0;
}

void kb_hasher_cancel(struct kb_hasher *h)
{
	if (!h)
		return;
	hasher_end(h, 0, true);
	kb_sha256_free(&h->sha);
	free(h);
}

int kb_sha256_file(const struct kb_sha256_api *api, const char *path, char hex[65], struct kb_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, path, "opening");
	struct kb_sha256 s;
	if (kb_sha256_init(&s, api, err) < 0) {
		close(fd);
		return -1;
	}
	static const size_t block = 1u << 20;
	uint8_t *buf = malloc(block);
	ssize_t n = -1;
	while (buf && (n = read(fd, buf, block)) > 0)
		kb_sha256_update(&s, buf, (size_t)n);
	int e = buf ? errno : ENOMEM;
	free(buf);
	close(fd);
	uint8_t digest[32];
	kb_sha256_final(&s, digest);
	if (n != 0)
		return kb_fail(err, e, path, "reading");
	for (size_t i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	return 0;
}
