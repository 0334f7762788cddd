/*
 * Operating systems as osinfo-db describes them (Debian's osinfo-db: XML under
 * /usr/share/osinfo/os), read with libxml2 as libosinfo reads them: devices and
 * firmware inherited through <derives-from> and <clones>, <resources> minimum
 * and recommended per arch (an OS without any takes its parent's), install
 * media recognised by their ISO 9660 volume ids. What `domain new --osinfo`
 * decides for the guest follows virt-install 4.1 (virtinst/osdict.py, guest.py).
 */
#ifndef KVMBOX_OSINFO_H
#define KVMBOX_OSINFO_H

#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/xml.h"
#include "kvmbox/virt/domnew.h"

#define KB_OSINFO_DIR "/usr/share/osinfo"

struct kb_osinfo_entry;

/* Every OS of the database, parsed once. */
struct kb_osinfo_db {
	const struct kb_xml *xml;
	struct kb_osinfo_entry *entry;
	size_t count;
};

/* What one OS means for a guest, its parents' devices, firmware and resources included. */
struct kb_osinfo_os {
	char id[160];        /* http://debian.org/debian/11; "" for virt-install's "generic" */
	char short_id[48];   /* the first of its short-ids */
	char name[96];
	bool virtio_disk;    /* virtio-block (1af4:1001) or virtio1.0-block (1af4:1042) */
	bool virtio_net;     /* virtio-net (1af4:1000) or virtio1.0-net (1af4:1041) */
	bool q35;            /* the q35 chipset, and virtio 1.0 where it has virtio-net */
	bool e1000, rtl8139; /* the legacy NICs it names */
	bool efi_required;   /* <firmware type='efi'/> with BIOS unsupported, for the arch */
	unsigned long long min_ram, rec_ram, min_storage, rec_storage; /* bytes; 0: not said */
	unsigned min_cpus;
};

/* The identifiers of an ISO 9660 image's primary volume descriptor (trailing blanks removed). */
struct kb_iso_ids {
	char system[33], volume[33], publisher[129], application[129];
	unsigned long long volume_size; /* bytes: blocks times the logical block size */
};

/* Read the XML files of DIR/os/VENDOR/ under the root. Returns 0, or -1 with @err (a missing db names osinfo-db). */
int kb_osinfo_db_open(const struct kb_ctx *ctx, const struct kb_xml *xml, const char *dir, struct kb_osinfo_db *db,
		      struct kb_error *err);
void kb_osinfo_db_close(struct kb_osinfo_db *db);

/*
 * The OS with short-id (or id) @name for guests of @arch into @os. An unknown
 * name is refused with the closest short-ids: "osinfo 'debain11': unknown; closest: debian11, debian10".
 */
int kb_osinfo_find(const struct kb_osinfo_db *db, const char *name, const char *arch, struct kb_osinfo_os *os,
		   struct kb_error *err);

/* Read the primary volume descriptor of the ISO image open at @fd. -1 with @err when it is none. */
int kb_iso_read_ids(int fd, const char *name, struct kb_iso_ids *ids, struct kb_error *err);

/*
 * The OS whose install media match @ids (volume, system, publisher and
 * application id regexes, volume size), as libosinfo's identify_media: 1 with
 * @os, 0 when none does.
 */
int kb_osinfo_detect(const struct kb_osinfo_db *db, const struct kb_iso_ids *ids, const char *arch,
		     struct kb_osinfo_os *os);

/*
 * What the OS means for @d, as virt-install decides it: disk bus and NIC model
 * where the words did not say (virtio where the OS has it, else sata/e1000e on
 * q35, ide/e1000 on pc), the machine (q35 or pc) unless given, UEFI where the
 * OS requires it, and the OS's id for the <metadata>. Memory or a new first
 * disk below the OS's minimum is refused; below the recommended is a note in
 * @note. Pure.
 */
int kb_osinfo_apply(const struct kb_osinfo_os *os, struct kb_domnew *d, char *note, size_t size,
		    struct kb_error *err);

/*
 * The osinfo word of @d on this host: the named OS, or the one the --cdrom
 * image's volume id tells (detect=on; no match is a note, or refused with
 * require=on), applied to @d. Nothing without the word. @note gets what to
 * tell the user ("" for nothing).
 */
int kb_osinfo_resolve(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_domnew *d, char *note,
		      size_t size, struct kb_error *err);

#endif
