/*
 * PCI devices handed to guests: each named device and every endpoint of its
 * IOMMU group (VFIO's unit of isolation) bound to vfio-pci through
 * driver_override, which names the driver for that address only (a
 * vendor:device id list would take every identical NIC). Never a bridge, and
 * never a group the host uses unless forced. With persist, a udev rule per
 * address keeps them on vfio-pci at every boot. Released, they go back to the
 * host's drivers and leave the rule. A spec, a setter, plan and apply (see
 * kvmbox/core/change.h); `kvmbox pci prepare|release`, doctor and provision's
 * [pci] use them.
 */
#ifndef KVMBOX_VFIO_H
#define KVMBOX_VFIO_H

#include <stdbool.h>
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_VFIO_UDEV_RULES "/etc/udev/rules.d/61-kvmbox-vfio-pci.rules"
#define KB_VFIO_MAX 64 /* addresses a spec names */

struct kb_vfio_spec {
	char addr[KB_VFIO_MAX][16]; /* 0000:81:00.3, in the order given, each once */
	int count;
	bool persist; /* keep them on vfio-pci at every boot (the udev rule) */
	bool force;   /* prepare a group the host uses (never a bridge) */
	bool release; /* give them back to the host's drivers (and take them out of the rule) instead */
};

/* The defaults: no address, prepare, not persisted, not forced. */
void kb_vfio_spec_init(struct kb_vfio_spec *spec);

/* Add one address (0000:81:00.3, 81:00.3 or pci_0000_81_00_3); one already there is kept once. */
int kb_vfio_spec_add(struct kb_vfio_spec *spec, const char *text, struct kb_error *err);

/*
 * Set one key as the host config's [pci] section names it: "prepare" (PCI
 * addresses, blank-separated; given again it adds to the list) or "persist"
 * (yes/no, as kb_parse_yes_no reads it). Unknown keys and bad values are refused.
 */
int kb_vfio_spec_set(struct kb_vfio_spec *spec, const char *key, const char *value, struct kb_error *err);

/*
 * Refusals first, with nothing planned: an address that is not on the host,
 * a bridge, a group the host uses (unless force), a device without an IOMMU
 * group (unless the next boot turns the IOMMU on: then that device is planned
 * KB_REBOOT). Then the changes, in the order apply makes them:
 *   release: "udev-rule" (a file; when it exists), first, so the next boot
 *            leaves them alone whatever happens to the rebind
 *   prepare: "module" (absent -> vfio-pci) when vfio-pci is not loaded
 *   per device of the groups: "ADDR/driver_override" (prepare: -> vfio-pci;
 *            release: -> absent) and "ADDR", its driver (prepare: -> vfio-pci;
 *            release: vfio-pci -> "the host's driver", the driver read back
 *            once applied); a device already there only "ADDR", unchanged
 *   prepare with persist: "udev-rule" (a file), last
 */
int kb_vfio_plan(const struct kb_ctx *ctx, const struct kb_vfio_spec *spec, struct kb_plan *plan,
		 struct kb_error *err);

/*
 * Make every planned change in order, stopping at the first that fails
 * (KB_FAILED, its note the reason); each rebind is read back from sysfs.
 */
int kb_vfio_apply(const struct kb_ctx *ctx, const struct kb_vfio_spec *spec, struct kb_plan *plan,
		  struct kb_error *err);

#endif
