/* libFuzzer target: the /proc/cpuinfo parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/host/cpuinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_cpuinfo info;
	kb_cpuinfo_parse((const char *)data, size, &info);
	/* Invariants that hold for any input. */
	if (info.with_virt > info.cpus || info.with_vmx > info.cpus || info.with_svm > info.cpus ||
	    info.with_hypervisor > info.cpus || strlen(info.model) >= sizeof(info.model))
		abort();
	if ((info.with_virt == info.cpus) != (info.first_without_virt < 0))
		abort();
	return 0;
}
