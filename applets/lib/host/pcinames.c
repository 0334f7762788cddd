/* PCI names through libpci at run time; see kvmbox/host/pcinames.h. */
#include <pci/pci.h>
#include <stdio.h>
#include <stdlib.h>

#include "kvmbox/core/dynlib.h"
#include "kvmbox/host/pcinames.h"

struct kb_pci_names {
	__typeof__(pci_alloc) *alloc;
	__typeof__(pci_cleanup) *cleanup;
	__typeof__(pci_lookup_name) *lookup_name;
	struct pci_access *access;
};

/* libpci warns on stderr about a missing database; kvmbox falls back to numbers quietly. */
static void quiet(char *msg, ...)
{
	(void)msg;
}

struct kb_pci_names *kb_pci_names_open(void)
{
	struct kb_pci_names *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	const struct kb_dynlib_symbol symbols[] = {
		{ "pci_alloc", (void **)&n->alloc },
		{ "pci_cleanup", (void **)&n->cleanup },
		{ "pci_lookup_name", (void **)&n->lookup_name },
	};
	if (kb_dynlib_load(KB_LIB_PCI, symbols, sizeof(symbols) / sizeof(symbols[0]), NULL) < 0 ||
	    !(n->access = n->alloc())) {
		free(n);
		return NULL;
	}
	n->access->warning = quiet;
	n->access->debug = quiet;
	return n;
}

void kb_pci_names_close(struct kb_pci_names *names)
{
	if (!names)
		return;
	names->cleanup(names->access);
	free(names);
}

const char *kb_pci_name(struct kb_pci_names *names, unsigned vendor, unsigned device, char *buf, size_t size)
{
	char name[256];
	if (names && names->lookup_name(names->access, name, sizeof(name),
					PCI_LOOKUP_VENDOR | PCI_LOOKUP_DEVICE | PCI_LOOKUP_NO_NUMBERS, vendor, device))
		snprintf(buf, size, "%s", name);
	else
		snprintf(buf, size, "%04x:%04x", vendor, device);
	return buf;
}
