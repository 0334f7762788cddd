/* SHA-256 through libcrypto's EVP interface, loaded at run time; see kvmbox/bundle/sha256.h. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
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

struct kb_file_hasher {
	struct kb_sha256 sha;
	int fd;          /* the file, read-only, owned */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	uint64_t final;  /* bytes from the start that the writer will not change again */
	bool done;       /* final is the file's size */
	bool cancel;     /* the digest is not wanted any more */
	bool defer;      /* newer work goes first: the thread lowers its own priority */
	int read_errno;  /* 0, or why reading the file back failed */
	const volatile sig_atomic_t *stop; /* when it becomes non-zero, the rest is dropped */
	uint8_t *buf;    /* KB_FILE_HASHER_BUFFER */
};
#define KB_FILE_HASHER_BUFFER (1u << 20)

static bool given_up(struct kb_file_hasher *h, bool *deferred)
{
	if (h->stop && *h->stop)
		return true;
	pthread_mutex_lock(&h->lock);
	bool cancel = h->cancel, defer = h->defer;
	pthread_mutex_unlock(&h->lock);
	if (defer && !*deferred) {
		/* Linux keeps a nice value per thread: PRIO_PROCESS 0 is this thread alone. */
		setpriority(PRIO_PROCESS, 0, 10);
		*deferred = true;
	}
	return cancel;
}

/*
 * Hash [pos, end) of the file: holes as zeros without reading them, data read
 * back. A filesystem that does not know holes reports all of it as data, and
 * the holes read as zeros: the same digest, a little slower. Below @end the
 * file is final, so what SEEK_DATA and SEEK_HOLE say there holds.
 */
static int hash_range(struct kb_file_hasher *h, uint64_t pos, uint64_t end, bool *deferred)
{
	const uint64_t slice = 64u << 20; /* zeros in slices, so a stop is seen within a fraction of a second */
	while (pos < end) {
		if (given_up(h, deferred))
			return 0;
		off_t data = lseek(h->fd, (off_t)pos, SEEK_DATA);
		uint64_t data_at = data < 0 || (uint64_t)data > end ? end : (uint64_t)data; /* ENXIO: a hole to the end */
		if (data_at > pos) {
			uint64_t n = data_at - pos < slice ? data_at - pos : slice;
			kb_sha256_zeros(&h->sha, n);
			pos += n;
			continue;
		}
		off_t hole = lseek(h->fd, (off_t)pos, SEEK_HOLE);
		uint64_t hole_at = hole < 0 || (uint64_t)hole > end ? end : (uint64_t)hole;
		while (pos < hole_at) {
			size_t want = hole_at - pos < KB_FILE_HASHER_BUFFER ? (size_t)(hole_at - pos) : KB_FILE_HASHER_BUFFER;
			ssize_t n = pread(h->fd, h->buf, want, (off_t)pos);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return n < 0 ? errno : EIO; /* 0: shorter than the writer said */
			kb_sha256_update(&h->sha, h->buf, (size_t)n);
			pos += (uint64_t)n;
		}
	}
	return 0;
}

static void *file_hasher_run(void *arg)
{
	struct kb_file_hasher *h = arg;
	uint64_t pos = 0;
	bool deferred = false;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (pos == h->final && !h->done && !h->cancel)
			pthread_cond_wait(&h->changed, &h->lock);
		if (h->cancel || (pos == h->final && h->done))
			break;
		uint64_t end = h->final;
		pthread_mutex_unlock(&h->lock);
		int e = hash_range(h, pos, end, &deferred);
		pthread_mutex_lock(&h->lock);
		if (e) {
			h->read_errno = e;
			break;
		}
		pos = end;
		if (h->stop && *h->stop)
			break;
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

struct kb_file_hasher *kb_file_hasher_start(const struct kb_sha256_api *api, int fd, const volatile sig_atomic_t *stop,
					     struct kb_error *err)
{
	struct kb_file_hasher *h = calloc(1, sizeof(*h));
	if (h)
		h->buf = malloc(KB_FILE_HASHER_BUFFER);
	if (!h || !h->buf) {
		if (h)
			free(h);
		close(fd);
		kb_fail(err, ENOMEM, NULL, "starting a SHA-256 thread");
		return NULL;
	}
	h->fd = fd;
	h->stop = stop;
	if (kb_sha256_init(&h->sha, api, err) < 0) {
		close(fd);
		free(h->buf);
		free(h);
		return NULL;
	}
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->changed, NULL);
	if (pthread_create(&h->thread, NULL, file_hasher_run, h) != 0) {
		kb_sha256_free(&h->sha);
		pthread_mutex_destroy(&h->lock);
		pthread_cond_destroy(&h->changed);
		close(fd);
		free(h->buf);
		free(h);
		kb_fail(err, EAGAIN, NULL, "starting a SHA-256 thread");
		return NULL;
	}
	return h;
}

void kb_file_hasher_advance(struct kb_file_hasher *h, uint64_t final_bytes)
{
	pthread_mutex_lock(&h->lock);
	if (final_bytes > h->final) {
		h->final = final_bytes;
		pthread_cond_broadcast(&h->changed);
	}
	pthread_mutex_unlock(&h->lock);
}

void kb_file_hasher_defer(struct kb_file_hasher *h)
{
	pthread_mutex_lock(&h->lock);
	h->defer = true;
	pthread_mutex_unlock(&h->lock);
}

/* Tell the thread how it ends, wait for it, and free everything but the digest's context. */
static void file_hasher_end(struct kb_file_hasher *h, uint64_t size, bool cancel)
{
	pthread_mutex_lock(&h->lock);
	if (cancel)
		h->cancel = true;
	else
		h->final = size;
	h->done = true;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->changed);
	close(h->fd);
	free(h->buf);
}

int kb_file_hasher_finish(struct kb_file_hasher *h, uint64_t size, uint8_t digest[32], const char *name,
			  struct kb_error *err)
{
	file_hasher_end(h, size, false);
	int e = h->read_errno;
	bool stopped = h->stop && *h->stop;
	kb_sha256_final(&h->sha, digest);
	free(h);
	if (e)
		return kb_fail(err, e, name, "reading back to hash");
	if (stopped)
		return kb_fail(err, EINTR, name, "hashing interrupted:");
	return 0;
}

void kb_file_hasher_cancel(struct kb_file_hasher *h)
{
	if (!h)
		return;
	file_hasher_end(h, 0, true);
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
