/* SHA-256 through libcrypto's EVP interface, loaded at run time; see kvmbox/sha256.h. */
#include <string.h>

#include "kvmbox/dynlib.h"
#include "kvmbox/sha256.h"

int kb_sha256_load(struct kb_sha256_api *api, struct kb_error *err)
{
	const struct kb_dynlib_symbol symbols[] = {
		{ "EVP_MD_CTX_new", (void **)&api->ctx_new },  { "EVP_MD_CTX_free", (void **)&api->ctx_free },
		{ "EVP_sha256", (void **)&api->sha256 },       { "EVP_DigestInit_ex", (void **)&api->init },
		{ "EVP_DigestUpdate", (void **)&api->update }, { "EVP_DigestFinal_ex", (void **)&api->final },
	};
	return kb_dynlib_load("libcrypto.so.3", "libssl3", symbols, sizeof(symbols) / sizeof(symbols[0]), err);
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
