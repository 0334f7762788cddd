/*
 * PCI vendor and device names from the pci.ids database through libpci,
 * loaded at run time (see kvmbox/core/dynlib.h): the rescue image does not carry
 * it, and without it names are the numeric IDs, as lspci -n shows them.
 */
#ifndef KVMBOX_PCINAMES_H
#define KVMBOX_PCINAMES_H

#include <stddef.h>

struct kb_pci_names;

/* NULL when libpci (or its database) is not there: callers print numbers. */
struct kb_pci_names *kb_pci_names_open(void);
void kb_pci_names_close(struct kb_pci_names *names);

/* "Intel Corporation 82574L Gigabit Network Connection" into @buf, or "8086:10d3" without names. */
const char *kb_pci_name(struct kb_pci_names *names, unsigned vendor, unsigned device, char *buf, size_t size);

#endif
