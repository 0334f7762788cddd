/* libFuzzer target: QEMU's format probes, as kb_image_format runs them, on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/bundle/bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const formats[] = { "raw", "qcow2", "qcow", "qed", "vmdk", "vpc", "vhdx", "vdi",
					       "parallels", "bochs", "cloop", "luks" };
	const char *format = kb_image_format(data, size);
	bool known = false;
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		known |= !strcmp(format, formats[i]);
	if (!known)
		abort();
	/* QEMU probes 512 bytes: what follows them never changes the answer. */
	if (size > 512 && strcmp(kb_image_format(data, 512), format))
		abort();
	/* A header kvmbox takes for qcow2 is one kb_qcow2_parse reads as qcow2 (or refuses). */
	struct kb_qcow2 q;
	if (!strcmp(format, "qcow2") && kb_qcow2_parse(data, size, &q, NULL) == 0)
		abort();
	return 0;
}
