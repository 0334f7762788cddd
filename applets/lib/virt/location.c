/* The installer's kernel and initrd in a --location tree or ISO; see kvmbox/virt/location.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/bundle/archive.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/virt/location.h"

/* virt-install's urldetect (and libosinfo's media) paths for x86_64, most specific first. */
static const struct layout {
	const char *name, *kernel, *initrd;
} layouts[] = {
	{ "Fedora/RHEL", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img" },
	{ "Debian", "install.amd/vmlinuz", "install.amd/initrd.gz" },
	{ "Ubuntu", "casper/vmlinuz", "casper/initrd" },
	{ "Ubuntu", "install/vmlinuz", "install/initrd.gz" },
	{ "Debian netboot", "debian-installer/amd64/linux", "debian-installer/amd64/initrd.gz" },
	{ "SUSE", "boot/x86_64/loader/linux", "boot/x86_64/loader/initrd" },
};
#define LAYOUTS (sizeof(layouts) / sizeof(layouts[0]))

const char *kb_location_kernels(void)
{
	return "images/pxeboot/vmlinuz, install.amd/vmlinuz, casper/vmlinuz, install/vmlinuz, "
	       "debian-installer/amd64/linux, boot/x86_64/loader/linux, each with its initrd";
}

int kb_location_layout(bool (*has)(void *opaque, const char *path), void *opaque, struct kb_installer *out)
{
	for (size_t i = 0; i < LAYOUTS; i++)
		if (has(opaque, layouts[i].kernel) && has(opaque, layouts[i].initrd)) {
			*out = (struct kb_installer){ layouts[i].name, layouts[i].kernel, layouts[i].initrd, out->iso };
			return 0;
		}
	return -1;
}

/*
 * A tree is a root of its own: its paths are resolved inside it, so a link in
 * it (install.amd -> /root/private) never leads to a host file, which would be
 * copied out readable by all. @dir holds the tree's host path.
 */
static int tree_root(const struct kb_ctx *ctx, const char *location, struct kb_ctx *tree, struct kb_path *dir,
		     struct kb_error *err)
{
	if (kb_sysroot_resolved_path(ctx, location, true, dir, err) < 0)
		return -1;
	*tree = *ctx;
	tree->root = dir->s;
	tree->target = NULL;
	return 0;
}

/* A directory: a regular file at the relative path (the last component not a link). */
static bool tree_has(void *opaque, const char *path)
{
	const struct kb_ctx *tree = opaque;
	char full[PATH_MAX];
	struct stat st;
	return snprintf(full, sizeof(full), "/%s", path) < (int)sizeof(full) &&
	       kb_sysroot_stat(tree, full, &st, true, NULL) == 0 && S_ISREG(st.st_mode);
}

/* An ISO: which of the layouts' paths its directory lists as regular files. */
struct iso {
	bool kernel[LAYOUTS], initrd[LAYOUTS];
};

static bool iso_has(void *opaque, const char *path)
{
	const struct iso *iso = opaque;
	for (size_t i = 0; i < LAYOUTS; i++)
		if ((iso->kernel[i] && !strcmp(path, layouts[i].kernel)) || (iso->initrd[i] && !strcmp(path, layouts[i].initrd)))
			return true;
	return false;
}

/* A member's name as libarchive gives it, without "./" or "/" in front. */
static const char *member_name(const char *path)
{
	while (path && (path[0] == '/' || (path[0] == '.' && path[1] == '/')))
		path += path[0] == '/' ? 1 : 2;
	return path ? path : "";
}

/* Open the ISO @location for reading with libarchive (@fd kept open by the caller). */
static struct archive *iso_open(const struct kb_archive *ar, int fd, const char *location, struct kb_error *err)
{
	struct archive *a = ar->read_new();
	if (!a) {
		kb_fail(err, ENOMEM, NULL, "location '%s': reading it", location);
		return NULL;
	}
	if (ar->read_support_format_iso9660(a) != ARCHIVE_OK || ar->read_open_fd(a, fd, 64 * 1024) != ARCHIVE_OK) {
		kb_fail(err, 0, NULL, "location '%s': not an ISO 9660 image (%s)", location, kb_archive_error(ar, a, "unreadable"));
		ar->read_free(a);
		return NULL;
	}
	return a;
}

int kb_location_find(const struct kb_ctx *ctx, const char *location, struct kb_installer *out, struct kb_error *err)
{
	struct kb_error why = { 0 };
	struct stat st;
	*out = (struct kb_installer){ 0 };
	if (kb_sysroot_stat(ctx, location, &st, false, &why) < 0)
		return kb_fail(err, why.errnum, NULL, "location '%s': %s", location, strerror(why.errnum));
	int rc;
	if (S_ISDIR(st.st_mode)) {
		struct kb_ctx tree;
		struct kb_path dir;
		if (tree_root(ctx, location, &tree, &dir, err) < 0)
			return -1;
		rc = kb_location_layout(tree_has, &tree, out);
	} else if (S_ISREG(st.st_mode)) {
		struct kb_archive ar;
		struct iso iso = { { 0 }, { 0 } };
		autoclose_fd fd = kb_sysroot_open(ctx, location, O_RDONLY | O_CLOEXEC, 0, err);
		struct archive *a = fd >= 0 && kb_archive_load(&ar, err) == 0 ? iso_open(&ar, fd, location, err) : NULL;
		if (!a)
			return -1;
		struct archive_entry *entry;
		int r;
		while ((r = ar.read_next_header(a, &entry)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
			const char *name = member_name(ar.entry_pathname(entry));
			for (size_t i = 0; ar.entry_filetype(entry) == AE_IFREG && i < LAYOUTS; i++) {
				iso.kernel[i] |= !strcmp(name, layouts[i].kernel);
				iso.initrd[i] |= !strcmp(name, layouts[i].initrd);
			}
		}
		if (r != ARCHIVE_EOF)
			kb_fail(err, 0, NULL, "location '%s': reading its directory: %s", location, kb_archive_error(&ar, a, "unreadable"));
		ar.read_free(a);
		if (r != ARCHIVE_EOF)
			return -1;
		out->iso = true;
		rc = kb_location_layout(iso_has, &iso, out);
	} else {
		return kb_fail(err, 0, NULL, "location '%s': is neither a directory nor an ISO image", location);
	}
	if (rc < 0)
		return kb_fail(err, 0, NULL, "location '%s': no installer kernel and initrd in it (looked for %s)", location,
			       kb_location_kernels());
	return 0;
}

/* The member's bytes from the ISO into @out. */
static int copy_from_iso(const struct kb_ctx *ctx, const char *location, const char *member, int out, struct kb_error *err)
{
	struct kb_archive ar;
	autoclose_fd fd = kb_sysroot_open(ctx, location, O_RDONLY | O_CLOEXEC, 0, err);
	struct archive *a = fd >= 0 && kb_archive_load(&ar, err) == 0 ? iso_open(&ar, fd, location, err) : NULL;
	if (!a)
		return -1;
	struct archive_entry *entry;
	int r, rc = -1;
	while ((r = ar.read_next_header(a, &entry)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		if (ar.entry_filetype(entry) != AE_IFREG || strcmp(member_name(ar.entry_pathname(entry)), member))
			continue;
		const void *block;
		size_t size;
		la_int64_t offset, at = 0;
		while ((r = ar.read_data_block(a, &block, &size, &offset)) == ARCHIVE_OK) {
			if (offset != at || kb_write_all(out, block, size) < 0)
				break;
			at += (la_int64_t)size;
		}
		rc = r == ARCHIVE_EOF ? 0 : kb_fail(err, errno, NULL, "location '%s': copying %s: %s", location, member,
						     kb_archive_error(&ar, a, "write failed"));
		break;
	}
	if (rc < 0 && r == ARCHIVE_EOF)
		rc = kb_fail(err, ENOENT, NULL, "location '%s': %s is no longer in it", location, member);
	ar.read_free(a);
	return rc;
}

/* The file's bytes from the tree into @out (resolved inside the tree, the last component not a link). */
static int copy_from_tree(const struct kb_ctx *ctx, const char *location, const char *member, int out, struct kb_error *err)
{
	char path[PATH_MAX], inside[PATH_MAX];
	struct kb_ctx tree;
	struct kb_path dir;
	if (tree_root(ctx, location, &tree, &dir, err) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/%s", location, member);
	snprintf(inside, sizeof(inside), "/%s", member);
	autoclose_fd in = kb_sysroot_open(&tree, inside, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0, err);
	if (in < 0)
		return -1;
	char buf[64 * 1024];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (kb_write_all(out, buf, (size_t)n) < 0)
			return kb_fail(err, errno, path, "copying the installer's file");
	return n < 0 ? kb_fail(err, errno, path, "reading the installer's file") : 0;
}

int kb_location_copy(const struct kb_ctx *ctx, const char *location, const struct kb_installer *inst, const char *member,
		     const char *dest, struct kb_error *err)
{
	autoclose_fd out = kb_sysroot_open(ctx, dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600, err);
	if (out < 0)
		return -1;
	int rc = inst->iso ? copy_from_iso(ctx, location, member, out, err) : copy_from_tree(ctx, location, member, out, err);
	/* 0644 once whole: QEMU's user reads it (libvirt labels it for the guest at the start). */
	if (rc == 0 && fchmod(out, 0644) < 0)
		rc = kb_fail(err, errno, dest, "making the installer's file readable");
	if (rc < 0)
		kb_sysroot_unlink(ctx, dest, NULL);
	return rc;
}
