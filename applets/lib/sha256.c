/* SHA-256 through libcrypto's EVP interface, loaded at run time; see kvmbox/sha256.h. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "kvmbox/dynlib.h"
#include "kvmbox/sha256.h"

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

/* One queued piece of work: data in its slot, or a run of zeros. */
struct hasher_item {
	size_t len;       /* bytes of data in the slot */
	uint64_t zeros;   /* or: this many zero bytes */
};

struct kb_hasher {
	struct kb_sha256 sha;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct hasher_item items[KB_HASHER_SLOTS];
	uint8_t *slots; /* KB_HASHER_SLOTS x KB_HASHER_SLOT_SIZE */
	unsigned head, tail; /* items queued: tail - head */
	size_t fill;         /* bytes gathered in the slot at tail, not yet queued */
	bool done;
	const volatile sig_atomic_t *stop; /* when it becomes non-zero, the rest is dropped */
};

static bool stopped(const struct kb_hasher *h)
{
	return h->stop && *h->stop;
}

/* A run of zeros, hashed a slice at a time so a stop request is seen within a fraction of a second. */
static void hash_zeros(struct kb_hasher *h, uint64_t zeros)
{
	const uint64_t slice = 64u << 20;
	while (zeros > 0 && !stopped(h)) {
		uint64_t n = zeros < slice ? zeros : slice;
		kb_sha256_zeros(&h->sha, n);
		zeros -= n;
	}
}

static void *hasher_run(void *arg)
{
	struct kb_hasher *h = arg;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (h->head == h->tail && !h->done)
			pthread_cond_wait(&h->changed, &h->lock);
		if (h->head == h->tail)
			break;
		unsigned slot = h->head % KB_HASHER_SLOTS;
		struct hasher_item item = h->items[slot];
		pthread_mutex_unlock(&h->lock);
		if (stopped(h))
			; /* dropped: the caller gives up on this digest */
		else if (item.len)
			kb_sha256_update(&h->sha, h->slots + (size_t)slot * KB_HASHER_SLOT_SIZE, item.len);
		else
			hash_zeros(h, item.zeros);
		pthread_mutex_lock(&h->lock);
		h->head++;
		pthread_cond_broadcast(&h->changed);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

struct kb_hasher *kb_hasher_start(const struct kb_sha256_api *api, const volatile sig_atomic_t *stop,
				   struct kb_error *err)
{
	struct kb_hasher *h = calloc(1, sizeof(*h));
	if (h)
		h->slots = malloc((size_t)KB_HASHER_SLOTS * KB_HASHER_SLOT_SIZE);
	if (!h || !h->slots) {
		if (h)
			free(h);
		kb_fail(err, ENOMEM, NULL, "starting the SHA-256 thread");
		return NULL;
	}
	if (kb_sha256_init(&h->sha, api, err) < 0) {
		free(h->slots);
		free(h);
		return NULL;
	}
	h->stop = stop;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->changed, NULL);
	if (pthread_create(&h->thread, NULL, hasher_run, h) != 0) {
		kb_sha256_free(&h->sha);
		free(h->slots);
		free(h);
		kb_fail(err, EAGAIN, NULL, "starting the SHA-256 thread");
		return NULL;
	}
	return h;
}

/* Queue the slot being filled (or a zero run, @zeros > 0), waiting while the ring is full. */
static void hasher_push(struct kb_hasher *h, uint64_t zeros)
{
	pthread_mutex_lock(&h->lock);
	while (h->tail - h->head == KB_HASHER_SLOTS)
		pthread_cond_wait(&h->changed, &h->lock);
	h->items[h->tail % KB_HASHER_SLOTS] = (struct hasher_item){ .len = zeros ? 0 : h->fill, .zeros = zeros };
	h->tail++;
	h->fill = 0;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
}

/* The slot at tail is free to fill once the ring has room for it. */
static uint8_t *hasher_slot(struct kb_hasher *h)
{
	pthread_mutex_lock(&h->lock);
	while (h->tail - h->head == KB_HASHER_SLOTS)
		pthread_cond_wait(&h->changed, &h->lock);
	pthread_mutex_unlock(&h->lock);
	return h->slots + (size_t)(h->tail % KB_HASHER_SLOTS) * KB_HASHER_SLOT_SIZE;
}

void kb_hasher_data(struct kb_hasher *h, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len > 0) {
		uint8_t *slot = hasher_slot(h);
		size_t n = KB_HASHER_SLOT_SIZE - h->fill < len ? KB_HASHER_SLOT_SIZE - h->fill : len;
		memcpy(slot + h->fill, p, n);
		h->fill += n;
		p += n;
		len -= n;
		if (h->fill == KB_HASHER_SLOT_SIZE)
			hasher_push(h, 0);
	}
}

void kb_hasher_zeros(struct kb_hasher *h, uint64_t len)
{
	if (len == 0)
		return;
	if (h->fill)
		hasher_push(h, 0);
	hasher_push(h, len);
}

void kb_hasher_finish(struct kb_hasher *h, uint8_t digest[32])
{
	if (h->fill)
		hasher_push(h, 0);
	pthread_mutex_lock(&h->lock);
	h->done = true;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	kb_sha256_final(&h->sha, digest);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->changed);
	free(h->slots);
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
