/*
 * LVM2 logical volumes activated without lvm(8): the PV labels and the
 * volume group's text metadata read from the disks, each visible linear or
 * striped LV turned into a device-mapper table and created through the DM
 * ioctls (what `vgchange -ay` does for those segment types). For the rescue
 * image, where Debian's lvm and its libraries (2.5 MB compressed) do not fit.
 */
#ifndef KVMBOX_HOST_LVM_H
#define KVMBOX_HOST_LVM_H

#include <stddef.h>
#include "kvmbox/core/error.h"

#define KB_LVM_MAX_PVS 16
#define KB_LVM_MAX_LVS 32

/* A physical volume: its UUID (32 characters, no dashes) and where it is. */
struct kb_lvm_pv {
	char uuid[33];
	char device[32]; /* major:minor */
};

/* One LV as device-mapper will have it. */
struct kb_lvm_lv {
	char name[260];   /* VG-LV, each '-' in a name doubled */
	char uuid[129];   /* LVM-<vg id><lv id> */
	char table[2048]; /* "START LENGTH TYPE PARAMS\n" per segment, sectors */
	unsigned targets;
};

/*
 * The LVs of one VG's metadata @text, each segment mapped onto @pvs (the PVs
 * found on this machine): the visible LVs whose every segment is linear or
 * striped on PVs that are there. Returns how many went into @lvs (at most
 * @max), or -1 with @err for metadata it cannot read.
 */
int kb_lvm_tables(const char *text, size_t len, const struct kb_lvm_pv *pvs, size_t npvs,
		  struct kb_lvm_lv *lvs, size_t max, struct kb_error *err);

/*
 * Every VG on the block devices in /sys/class/block activated: its LVs
 * created as /dev/dm-N with /dev/mapper/VG-LV. An LV already there is left
 * as it is. Returns how many LVs it created, or -1 with @err.
 */
int kb_lvm_activate(struct kb_error *err);

#endif
