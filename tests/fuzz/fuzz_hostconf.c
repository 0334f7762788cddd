/* libFuzzer target: the host config parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/hostconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kb_hostconf conf;
	struct kb_error err = { 0 };
	if (kb_hostconf_parse((const char *)data, size, "fuzz.conf", &conf, &err) == 0) {
		/* What was accepted is within bounds and self-consistent. */
		if (conf.bridge_count > KB_HOSTCONF_MAX_ITEMS || conf.bundle_count > KB_HOSTCONF_MAX_ITEMS ||
		    conf.domain_count > KB_HOSTCONF_MAX_ITEMS)
			abort();
		for (int i = 0; i < conf.domain_count; i++) {
			const struct kb_conf_domain *d = &conf.domain[i];
			if (!!d->xml[0] + !!d->bundle[0] + !!d->words_len != 1 || (d->words_len && !d->memory_kib))
				abort();
			/* Words are "--word=value" options, each within the buffer. */
			for (const char *w = NULL; (w = kb_conf_domain_next_word(d, w));)
				if (strncmp(w, "--", 2) != 0 || !strchr(w, '=') || w + strlen(w) >= d->words + d->words_len)
					abort();
		}
	} else if (!err.what[0]) {
		abort(); /* every refusal says why */
	}
	return 0;
}
