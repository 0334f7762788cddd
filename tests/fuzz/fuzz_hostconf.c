/* libFuzzer target: the host config parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/provision/hostconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kb_hostconf conf, without_bom;
	struct kb_error err = { 0 }, err_without_bom = { 0 };
	int rc = kb_hostconf_parse((const char *)data, size, "fuzz.conf", &conf, &err);
	/* A UTF-8 byte order mark changes nothing: the same config, or the same error on the same line. */
	if (size >= 3 && !memcmp(data, "\xef\xbb\xbf", 3) && (size < 6 || memcmp(data + 3, "\xef\xbb\xbf", 3))) {
		int rc_without = kb_hostconf_parse((const char *)data + 3, size - 3, "fuzz.conf", &without_bom, &err_without_bom);
		if (rc != rc_without || (rc == 0 && memcmp(&conf, &without_bom, sizeof(conf))) ||
		    (rc != 0 && (err.line != err_without_bom.line || strcmp(err.what, err_without_bom.what))))
			abort();
	}
	if (rc == 0) {
		for (int i = 0; i < conf.bridge_count; i++)
			if (!strcmp(conf.bridge[i].spec.name, "all") || !strcmp(conf.bridge[i].spec.name, "default"))
				abort(); /* names the kernel keeps for itself */
		/* What was accepted is within bounds and self-consistent. */
		if (conf.bridge_count > KB_HOSTCONF_MAX_ITEMS || conf.bundle_count > KB_HOSTCONF_MAX_ITEMS ||
		    conf.domain_count > KB_HOSTCONF_MAX_ITEMS)
			abort();
		for (int i = 0; i < conf.domain_count; i++) {
			const struct kb_conf_domain *d = &conf.domain[i];
			const struct kb_domain_spec *spec = &d->spec;
			if (!!spec->xml[0] + !!d->bundle[0] + !!spec->words_len != 1 || (spec->words_len && !spec->memory_kib))
				abort();
			/* Words are "word=value", each within the buffer. */
			for (const char *w = NULL; (w = kb_domain_spec_next_word(spec, w));)
				if (!strchr(w, '=') || w + strlen(w) >= spec->words + spec->words_len)
					abort();
		}
	} else if (!err.what[0]) {
		abort(); /* every refusal says why */
	}
	return 0;
}
