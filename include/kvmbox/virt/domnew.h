/*
 * A libvirt domain from a few words, as `kvmbox domain new` and provision's
 * [domain NAME] sections take them ("memory = 4G", "disk = size=20G,pool=default",
 * "network = bridge=br0,model=e1000", "cpu = Haswell,-rtm,+rdrand"...).
 *
 * kb_domnew_word() checks the syntax of one word; the caller resolves what
 * needs the host (the virt type, the nested feature, volume paths, MACs kept
 * from an existing definition); kb_domnew_xml() writes the domain XML from
 * the words and an optional placement. Both are pure: no files, no libvirt.
 */
#ifndef KVMBOX_DOMNEW_H
#define KVMBOX_DOMNEW_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/host/kvm.h"
#include "kvmbox/virt/cloudinit.h"
#include "kvmbox/virt/placement.h"
#include "kvmbox/core/xml.h"

#define KB_DOMNEW_DISKS_MAX 16
#define KB_DOMNEW_NETS_MAX 16
#define KB_DOMNEW_HOSTDEVS_MAX 8
#define KB_DOMNEW_FEATURES_MAX 32
#define KB_DOMNEW_CHANNELS_MAX 4
#define KB_DOMNEW_CONTROLLERS_MAX 8
#define KB_DOMNEW_FILESYSTEMS_MAX 8

enum kb_domnew_disk_kind {
	KB_DISK_NEW,     /* size=: a new volume in a pool */
	KB_DISK_PATH,    /* path=: an existing image */
	KB_DISK_OVERLAY, /* backing=,size=: a new qcow2 volume over a base image */
};

struct kb_domnew_disk {
	enum kb_domnew_disk_kind kind;
	unsigned long long size_bytes;
	bool size_bare;        /* size=100: no unit, GiB as virt-install reads it */
	char pool[64];
	char format[8];        /* qcow2 or raw; "" until known (path=: format=, the definition's, or probed once) */
	bool defined;          /* path=: the domain's current definition has it; its format comes from there */
	char device[8];        /* device=: disk (""), cdrom (an ISO, read-only) or lun (a block device's SCSI commands) */
	char bus[8];           /* virtio, sata, scsi, ide, usb (ide: an OS without virtio on pc) */
	bool bus_given;        /* bus= said: --osinfo leaves it */
	char cache[16];        /* cache=: none, writeback, writethrough, directsync, unsafe; "" libvirt's default */
	char io[16];           /* io=: native, threads, io_uring */
	char discard[8];       /* discard=: unmap or ignore ("" new volumes: unmap) */
	char detect_zeroes[8]; /* detect_zeroes=: on, off, unmap */
	char serial[32];       /* serial=: the guest sees it as the disk's serial number */
	bool readonly, shareable;
	char path[PATH_MAX];   /* path=, or the new volume's path once the pool is known */
	char backing[PATH_MAX];
	char backing_format[8];
	char volume[96];       /* new volumes: NAME.qcow2, NAME-1.qcow2, ... */
};

struct kb_domnew_net {
	char bridge[16];  /* bridge=BR, or */
	char network[64]; /* network=NAME: a libvirt virtual network */
	char model[16];
	bool model_given; /* model= said: --osinfo leaves it */
	char mac[18]; /* "" lets libvirt choose, or keeps an existing definition's */
};

struct kb_domnew_feature {
	bool enable; /* +feat: policy require; -feat: policy disable */
	char name[48];
};

#define KB_DOMNEW_FW_FEATURES_MAX 2
/* --boot uefi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes */
struct kb_domnew_fw_feature {
	char name[16]; /* secure-boot or enrolled-keys (libvirt's firmware features) */
	int enabled;   /* 1 yes, 0 no, -1 not given yet */
};

struct kb_domnew {
	char name[64];
	unsigned long long memory_kib;
	bool memory_bare;   /* memory 4096: no unit, MiB as virt-install reads it */
	unsigned vcpus;
	unsigned max_vcpus;             /* maxvcpus=: vCPUs that can be added later (0: vcpus) */
	unsigned sockets, cores, threads; /* --vcpus N,sockets=,cores=,threads=: a topology (0: none given) */
	char cpu_mode[24];  /* host-passthrough, host-model or custom */
	char cpu_model[48];
	struct kb_domnew_feature feature[KB_DOMNEW_FEATURES_MAX];
	size_t feature_count;
	/* The existing definition disables arch-capabilities: kept where KVM cannot answer (kb_domnew_check_host). */
	bool arch_capabilities_disabled;
	struct kb_kvm_answers kvm; /* what KVM answered the host check, for the preflight of the same run */
	char machine[64];
	bool machine_given; /* --machine said: --osinfo leaves it */
	char virt_type[8];  /* kvm or qemu; "" until the caller chooses from libvirt's capabilities */
	char arch[16];
	struct kb_domnew_disk disk[KB_DOMNEW_DISKS_MAX];
	size_t disk_count;
	char cdrom[PATH_MAX];
	char location[PATH_MAX]; /* --location TREE|ISO: the installer's kernel and initrd, for the first boot */
	char extra_args[1024];   /* --extra-args: the installer kernel's command line */
	char boot[4][8];
	size_t boot_count;
	char firmware[8];   /* "efi" (--boot uefi, firmware=efi): libvirt picks the firmware; "" BIOS or as it is */
	struct kb_domnew_fw_feature fw_feature[KB_DOMNEW_FW_FEATURES_MAX];
	size_t fw_feature_count;
	struct kb_domnew_net net[KB_DOMNEW_NETS_MAX];
	size_t net_count;
	bool net_none;      /* network none: no NIC (without any network word the caller adds network=default) */
	bool graphics;      /* VNC (default) or SPICE, or none */
	bool spice;         /* graphics spice: with virt-install's spicevmc channel, USB redirection, sound */
	char vnc_listen[64];
	char vnc_password[64];
	char hostdev[KB_DOMNEW_HOSTDEVS_MAX][16]; /* 0000:81:00.3 */
	size_t hostdev_count;
	bool hugepages;
	unsigned long hugepage_kib; /* 0 with hugepages: the host's default size, resolved by the caller */
	bool nested;
	char nested_feature[4];     /* vmx or svm, resolved by the caller */
	bool placement_auto;
	enum kb_emulator_threads emulator_threads; /* placement auto's emulator-threads= */
	enum kb_pci_affinity pci_affinity;         /* placement auto's pci-numa-affinity= */
	bool allow_host_file; /* disk and cdrom files may be the host's own (system directories, /dev) */
	struct kb_cloudinit cloud_init; /* a NoCloud seed for the first boot */
	bool import;          /* virt-install's --import: boot the disk as it is, no install media */
	char osinfo[64];      /* --osinfo NAME: an osinfo-db short-id (or id), "generic" */
	bool osinfo_detect;   /* --osinfo detect=on: from the --cdrom image's volume id */
	bool osinfo_require;  /* detect=on,require=on: no match is refused */
	char osinfo_id[160];  /* the OS chosen (kvmbox/virt/osinfo.h), written into <metadata> */
	char video[16];       /* --video MODEL: "" vga with VNC, virtio with SPICE (virt-install's) */
	char sound[8];        /* --sound: "" virt-install's (ich9 with SPICE), none, ich9, ich6, ac97 */
	char serial_type[8];  /* --serial: pty (default), file, none */
	char serial_path[PATH_MAX];
	char console_target[8]; /* --console pty[,target.type=serial|virtio]: "" serial; "none" no console */
	struct kb_domnew_channel {
		char type[12];        /* unix or spicevmc */
		char name[64];        /* the virtio port's name */
	} channel[KB_DOMNEW_CHANNELS_MAX];
	size_t channel_count;
	bool channels_given;  /* --channel: these channels, not virt-install's defaults (none: none) */
	char rng[PATH_MAX];   /* --rng: /dev/urandom (default), /dev/random, "none" */
	char memballoon[8];   /* --memballoon: virtio (default) or none */
	struct kb_domnew_controller {
		char type[16];        /* usb, scsi, sata, virtio-serial */
		char model[24];       /* "" libvirt's */
	} controller[KB_DOMNEW_CONTROLLERS_MAX];
	size_t controller_count;
	char description[1024]; /* --description: <description> */
	struct kb_domnew_fs {
		char source[PATH_MAX]; /* a directory of the host (checked: it exists, not a system directory) */
		char target[64];       /* the tag the guest mounts */
		bool virtiofs;         /* driver.type=virtiofs (shared memory backing); else 9p, accessmode mapped */
	} fs[KB_DOMNEW_FILESYSTEMS_MAX];
	size_t fs_count;
};

/* Defaults for @name: 1 vCPU, host-model CPU, q35, VNC on 127.0.0.1, no placement. */
void kb_domnew_init(struct kb_domnew *d, const char *name);

/* The words kb_domnew_word takes, space-separated (for usage and config errors). */
extern const char kb_domnew_words[];
/* Whether @key is one of them. */
bool kb_domnew_is_word(const char *key);
/* Whether a word takes a list, given again for each item (disk, network, ...): the others are given once. */
bool kb_domnew_word_repeats(const char *word);

/*
 * Apply one word: @key is memory, vcpus, cpu, machine, virt-type, disk, cdrom,
 * boot, network, graphics, hostdev, hugepages, nested, placement,
 * allow-host-file, cloud-init, import, osinfo, video, sound, serial, console, channel,
 * rng, memballoon, controller, description, noautoconsole or filesystem (disk,
 * network, hostdev, channel, controller and filesystem add one each time). @value may be NULL for
 * the flags hugepages, nested, allow-host-file, import and noautoconsole, and for cloud-init (virt-install's bare --cloud-init). Returns 0, or -1 with @err naming the word and what is
 * wrong with it (a syntax error: nothing about the host is known here).
 */
int kb_domnew_word(struct kb_domnew *d, const char *key, const char *value, struct kb_error *err);

/* After the last word: what only all of them together can tell (memory given, disk names). */
int kb_domnew_finish(struct kb_domnew *d, struct kb_error *err);

/*
 * The domain XML into *@xml (malloc'ed): the words, the placement when not
 * NULL (vCPU pins, emulator pin, numatune, guest NUMA cells), a serial
 * console always. Returns 0, or -1 with @err.
 */
int kb_domnew_xml(const struct kb_domnew *d, const struct kb_placement *placement, char **xml, struct kb_error *err);

/* The storage volume XML for new disk @k (a qcow2 or raw volume, an overlay with its backing store). */
int kb_domnew_volume_xml(const struct kb_domnew_disk *k, char **xml, struct kb_error *err);

/*
 * What the words name on this host, through the sysroot: memory within
 * MemTotal, a nested feature the KVM module enables (d->nested_feature), the
 * hugepage size the host has (d->hugepage_kib), bridges that exist, PCI devices
 * in an IOMMU group the host does not need, images that exist (the format of
 * a path= disk without one read from its header, and a qcow2's backing chain
 * kept inside the disk's directory; a disk with a format is never probed: a
 * guest writes its raw disk's first bytes), CPU features libvirt's CPU map knows. *@node gets
 * the NUMA node of the first host device (-1: none). Returns 0, or -1 with
 * @err naming the word ("network 'bridge=br9': ..."): a refusal by the host.
 */
int kb_domnew_check_host(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_domnew *d, int *node,
			 struct kb_error *err);

/* Whether libvirt's CPU map (/usr/share/libvirt/cpu_map) has x86 model @model; -1 when there is no map. */
int kb_cpu_map_has_model(const struct kb_ctx *ctx, const char *model);

#endif
