/* The hashing thread unpack uses: blocks hashed from a pool's buffers, holes as zeros, buffers reused once hashed. */
#include <stdatomic.h>
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/bundle/sha256.h"

static struct kb_sha256_api api;

static int load(void **state)
{
	(void)state;
	struct kb_error err;
	return kb_sha256_load(&api, &err);
}

/* The digest of @len bytes in one go. */
static void digest_of(const uint8_t *data, size_t len, uint8_t digest[32])
{
	struct kb_sha256 s;
	struct kb_error err;
	assert_int_equal(kb_sha256_init(&s, &api, &err), 0);
	kb_sha256_update(&s, data, len);
	kb_sha256_final(&s, digest);
}

/* The threads of this process now. */
static int threads(void)
{
	DIR *d = opendir("/proc/self/task");
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + seed);
}

/*
 * Blocks at offsets with holes between and after them hash as the file they
 * make, on the hasher's thread (@size_hint 0: size unknown) or, for a file
 * known to be small, in the caller's.
 */
static void blocks_and_holes_hinted(uint64_t size_hint)
{
	struct kb_error err;
	static uint8_t file[20000]; /* zeros but for the blocks */
	memset(file, 0, sizeof(file));
	struct kb_hash_pool *pool = kb_hash_pool_new(4, 4096, NULL, &err);
	assert_non_null(pool);
	struct kb_hasher *h = kb_hasher_start(&api, pool, NULL, size_hint, &err);
	assert_non_null(h);
	/* A thread of its own only for a file not known to be small. */
	assert_int_equal(threads(), size_hint ? 1 : 2);
	uint8_t *buf = kb_hash_pool_take(pool);
	fill(buf, 4096, 7);
	assert_int_equal(kb_hasher_add(h, buf + 10, 1000, 100), 0);
	assert_int_equal(kb_hasher_add(h, buf + 2000, 500, 5000), 0);
	memcpy(file + 100, buf + 10, 1000);
	memcpy(file + 5000, buf + 2000, 500);
	kb_hash_pool_release(pool, buf);
	/* Not in the pool (a decompressor's buffer): copied, over more than one of the pool's buffers. */
	uint8_t outside[9000];
	fill(outside, sizeof(outside), 3);
	assert_int_equal(kb_hasher_add(h, outside, sizeof(outside), 8000), 0);
	memcpy(file + 8000, outside, sizeof(outside));
	memset(outside, 0xff, sizeof(outside)); /* the copy is hashed, not this */
	/* Blocks go forwards only. */
	assert_int_equal(kb_hasher_add(h, outside, 10, 4000), -1);
	uint8_t got[32], want[32];
	assert_int_equal(kb_hasher_finish(h, sizeof(file), got, "file", &err), 0);
	digest_of(file, sizeof(file), want);
	assert_memory_equal(got, want, 32);
	kb_hash_pool_free(pool);
}

static void blocks_and_holes(void **state)
{
	(void)state;
	blocks_and_holes_hinted(0);
}

static void blocks_and_holes_small_file_inline(void **state)
{
	(void)state;
	blocks_and_holes_hinted(20000);
}

/* One buffer: taking it again waits until the blocks queued from it are hashed, so refilling it cannot change the digest. */
static void buffer_reused_once_hashed(void **state)
{
	(void)state;
	struct kb_error err;
	enum { ROUNDS = 64, SIZE = 65536 };
	static uint8_t file[ROUNDS * SIZE];
	struct kb_hash_pool *pool = kb_hash_pool_new(1, SIZE, NULL, &err);
	struct kb_hasher *h = kb_hasher_start(&api, pool, NULL, 0, &err);
	assert_non_null(h);
	for (unsigned i = 0; i < ROUNDS; i++) {
		uint8_t *buf = kb_hash_pool_take(pool);
		assert_non_null(buf);
		fill(buf, SIZE, i);
		memcpy(file + (size_t)i * SIZE, buf, SIZE);
		assert_int_equal(kb_hasher_add(h, buf, SIZE, (uint64_t)i * SIZE), 0);
		kb_hash_pool_release(pool, buf);
	}
	uint8_t got[32], want[32];
	assert_int_equal(kb_hasher_finish(h, sizeof(file), got, "file", &err), 0);
	digest_of(file, sizeof(file), want);
	assert_memory_equal(got, want, 32);
	kb_hash_pool_free(pool);
}

/* A stop: no buffer is waited for, and the digest is refused. */
static void stop_refuses(void **state)
{
	(void)state;
	struct kb_error err;
	static atomic_int stop;
	stop = 0;
	struct kb_hash_pool *pool = kb_hash_pool_new(1, 4096, &stop, &err);
	struct kb_hasher *h = kb_hasher_start(&api, pool, &stop, 0, &err);
	uint8_t *buf = kb_hash_pool_take(pool);
	assert_non_null(buf);
	stop = 1;
	assert_null(kb_hash_pool_take(pool)); /* the only buffer is held */
	uint8_t digest[32];
	assert_int_equal(kb_hasher_finish(h, 1u << 30, digest, "file", &err), -1);
	assert_int_equal(err.errnum, EINTR);
	kb_hash_pool_release(pool, buf);
	kb_hash_pool_free(pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(blocks_and_holes),
		cmocka_unit_test(blocks_and_holes_small_file_inline),
		cmocka_unit_test(buffer_reused_once_hashed),
		cmocka_unit_test(stop_refuses),
	};
	return cmocka_run_group_tests(tests, load, NULL);
}
