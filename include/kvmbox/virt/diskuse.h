/*
 * Who uses a disk image: the domains whose disks name it (directly, through a
 * storage volume, or as a qcow2 backing file below one of their disks), and
 * the processes (QEMU) that have it open. Used before anything deletes or
 * swaps image files: domain rm --storage, unpack --replace.
 */
#ifndef KVMBOX_DISKUSE_H
#define KVMBOX_DISKUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/xml.h"

/* The files looked for, by device and inode (so any spelling of a path, or a link to it, matches). */
#define KB_DISKUSE_MAX 64
struct kb_disk_set_file {
	dev_t dev;
	ino_t ino;
	char path[4096];
	char user[320]; /* "" while nobody else uses it, else who: "defined domain b (disk)" */
	bool running;   /* the user is a running domain or a process that has it open */
	bool writes;    /* the user writes it (a disk not <readonly/>, an fd open for writing) */
	bool base;      /* looked for as an overlay's base: only a user that writes it is in the way */
};

struct kb_disk_set {
	size_t count;
	struct kb_disk_set_file file[KB_DISKUSE_MAX];
};

/* Add the file at @path (a real path, already mapped); a file that does not exist is skipped. */
/* Returns false when @path is in @set already as an overlay's base of the same words. */
bool kb_disk_set_add(struct kb_disk_set *set, const char *path);
/*
 * Add the file at @path as an overlay's base: others may read it (as their
 * own backing file, or a <readonly/> disk), none may write it. Returns false
 * when @path is in @set already as a file to write (a disk of the same words).
 */
bool kb_disk_set_add_base(struct kb_disk_set *set, const char *path);
/* Add every regular file directly in @dir (a real path). */
int kb_disk_set_add_dir(struct kb_disk_set *set, const char *dir, struct kb_error *err);
/*
 * Whether any file of @set has a user in its way (@running_only: a running
 * one): any user, or for a base one that writes it; the first one's index in *@first.
 */
bool kb_disk_set_used(const struct kb_disk_set *set, bool running_only, size_t *first);

/*
 * Mark the files of @set that the domains libvirt keeps on disk use: the
 * running ones' status files in /run/libvirt/qemu, then the definitions in
 * /etc/libvirt/qemu (both through @ctx's sysroot). For tools that must work
 * without libvirtd (unpack in a rescue image).
 */
int kb_disk_set_mark_libvirt_files(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_disk_set *set,
				   struct kb_error *err);

/* Turns a storage volume (<source pool= volume=>) into its path; NULL when it cannot. The caller frees. */
typedef char *kb_volume_path_fn(void *opaque, const char *pool, const char *volume);

/*
 * Mark the files of @set that domain @name uses, reading its XML @text (a
 * <domain>, or libvirt's <domstatus> of a running one): each
 * <disk>'s source (file, block device, storage volume via @volume_path, which
 * may be NULL) and <backingStore> sources, and below each the qcow2 backing
 * chain read from the image headers (an inactive definition lists none).
 * Paths are the domain's, mapped through @ctx's sysroot. A disk's own source
 * is written unless the disk is <readonly/>; backing files are only read.
 * A file is named after the first user found, or the first that writes it.
 */
int kb_disk_set_mark_domain(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_disk_set *set,
			    const char *name, bool running, const char *text, size_t len,
			    kb_volume_path_fn *volume_path, void *opaque, struct kb_error *err);

/*
 * Mark the files of @set that a process has open (/proc/PID/fd; libvirt's own
 * daemons, which open images only to read their headers, do not count), naming it
 * "domain NAME (QEMU pid N)" when its command line has QEMU's -name guest=NAME,
 * else "COMM (pid N)"; it writes the file when its fd is open for writing
 * (/proc/PID/fdinfo). Only the running system's processes: not under --root.
 */
void kb_disk_set_mark_open(const struct kb_ctx *ctx, struct kb_disk_set *set);

#endif
