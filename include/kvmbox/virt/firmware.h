/*
 * QEMU firmware descriptors (/usr/share/qemu/firmware/NN-NAME.json, docs/interop/
 * firmware.json), read as libvirt reads them to pick a firmware for
 * <os firmware='efi'>. Pure: the caller reads the files.
 */
#ifndef KVMBOX_FIRMWARE_H
#define KVMBOX_FIRMWARE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/error.h"

#define KB_FW_TARGETS_MAX 4
#define KB_FW_MACHINES_MAX 8
#define KB_FW_FEATURES_MAX 16

struct kb_firmware {
	bool uefi;             /* "interface-types" holds "uefi" */
	bool flash;            /* "mapping": {"device": "flash"} */
	char executable[PATH_MAX];
	char nvram_template[PATH_MAX];
	struct {
		char arch[16];
		char machine[KB_FW_MACHINES_MAX][48]; /* globs: pc-q35-* */
		size_t machine_count;
	} target[KB_FW_TARGETS_MAX];
	size_t target_count;
	char feature[KB_FW_FEATURES_MAX][32]; /* secure-boot, enrolled-keys, requires-smm, ... */
	size_t feature_count;
};

/* Parse one descriptor's JSON text (@len bytes). Returns 0, or -1 with @err naming what is malformed. */
int kb_firmware_parse(const char *text, size_t len, struct kb_firmware *fw, struct kb_error *err);

/* Whether @fw lists feature @name. */
bool kb_firmware_has(const struct kb_firmware *fw, const char *name);

/* Whether @fw is for @arch on @machine (a versioned name: pc-q35-7.2), by the descriptor's globs. */
bool kb_firmware_for(const struct kb_firmware *fw, const char *arch, const char *machine);

#endif
