/* Who uses a disk image; see kvmbox/virt/diskuse.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/bundle/bundle.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/virt/diskuse.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"

#define CHAIN_MAX 16

/* The entry of @path in @set, added when missing (*@added); NULL when it cannot be (no such file, the set is full). */
static struct kb_disk_set_file *entry_for(struct kb_disk_set *set, const char *path, bool *added)
{
	struct stat st;
	*added = false;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	for (size_t i = 0; i < set->count; i++)
		if (set->file[i].dev == st.st_dev && set->file[i].ino == st.st_ino)
			return &set->file[i];
	if (set->count == KB_DISKUSE_MAX)
		return NULL;
	struct kb_disk_set_file *f = &set->file[set->count++];
	*f = (struct kb_disk_set_file){ .dev = st.st_dev, .ino = st.st_ino };
	snprintf(f->path, sizeof(f->path), "%s", path);
	*added = true;
	return f;
}

bool kb_disk_set_add(struct kb_disk_set *set, const char *path)
{
	bool added;
	struct kb_disk_set_file *f = entry_for(set, path, &added);
	if (!f)
		return true;
	bool was_base = !added && f->base;
	f->base = false; /* written by the words' own domain: nobody else may even read it */
	return !was_base;
}

bool kb_disk_set_add_base(struct kb_disk_set *set, const char *path)
{
	bool added;
	struct kb_disk_set_file *f = entry_for(set, path, &added);
	if (f && added)
		f->base = true;
	return !f || added || f->base;
}

int kb_disk_set_add_dir(struct kb_disk_set *set, const char *dir, struct kb_error *err)
{
	autoclose_dir d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : kb_fail(err, errno, dir, "listing");
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char path[PATH_MAX * 2];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			kb_disk_set_add(set, path);
	}
	return 0;
}

bool kb_disk_set_used(const struct kb_disk_set *set, bool running_only, size_t *first)
{
	for (size_t i = 0; i < set->count; i++) {
		const struct kb_disk_set_file *f = &set->file[i];
		if (f->user[0] && (!f->base || f->writes) && (!running_only || f->running)) {
			if (first)
				*first = i;
			return true;
		}
	}
	return false;
}

/*
 * Name @user on @f, unless it is named already: then only a user that writes
 * it takes the place of one that reads it (the writer is the one in the way).
 */
static void name_user(struct kb_disk_set_file *f, const char *user, bool running, bool writes)
{
	if (f->user[0] && (f->writes || !writes))
		return;
	snprintf(f->user, sizeof(f->user), "%s", user);
	f->running = running;
	f->writes = writes;
}

/* Mark the file at @real (mapped) when it is one of @set's. */
static void mark(struct kb_disk_set *set, const char *real, bool running, bool writes, const char *user)
{
	struct stat st;
	if (stat(real, &st) < 0)
		return;
	for (size_t i = 0; i < set->count; i++)
		if (set->file[i].dev == st.st_dev && set->file[i].ino == st.st_ino)
			name_user(&set->file[i], user, running, writes);
}

/* @path (the domain's view, written when @writes) and the qcow2 backing files below it (read), each marked with @who. */
static void mark_chain(const struct kb_ctx *ctx, struct kb_disk_set *set, const char *path, const char *who,
		       bool running, bool writes)
{
	char current[PATH_MAX];
	snprintf(current, sizeof(current), "%s", path);
	for (int depth = 0; depth < CHAIN_MAX && current[0] == '/'; depth++) {
		struct kb_path real;
		if (kb_sysroot_path(ctx, current, &real, NULL) < 0)
			return;
		char user[sizeof(set->file[0].user)];
		snprintf(user, sizeof(user), depth ? "%s (backing file below %s)" : "%s (%s)", who,
			 depth ? path : writes ? "disk" : "read-only disk");
		mark(set, real.s, running, writes && depth == 0, user);
		uint8_t head[65536];
		/* Read inside the root through every component (the mapped path above only names it in the set). */
		autoclose_fd fd = kb_sysroot_open(ctx, current, O_RDONLY | O_CLOEXEC, 0, NULL);
		ssize_t n = fd < 0 ? -1 : pread(fd, head, sizeof(head), 0);
		struct kb_qcow2 q;
		if (n <= 0 || kb_qcow2_parse(head, (size_t)n, &q, NULL) != 1 || !q.backing[0])
			return;
		if (q.backing[0] == '/') {
			snprintf(current, sizeof(current), "%s", q.backing);
		} else {
			char dir[PATH_MAX], next[PATH_MAX * 2];
			snprintf(dir, sizeof(dir), "%s", current);
			if (snprintf(next, sizeof(next), "%s/%s", dirname(dir), q.backing) >= (int)sizeof(current))
				return;
			memcpy(current, next, strlen(next) + 1);
		}
	}
}

/* <source> of a disk (written unless <readonly/>) or a backingStore (read), and the backingStores nested below. */
static void mark_sources(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_disk_set *set, xmlNode *node,
			 const char *who, bool running, kb_volume_path_fn *volume_path, void *opaque)
{
	bool writes = !kb_xml_child(node, "readonly");
	for (int depth = 0; node && depth < CHAIN_MAX; depth++) {
		xmlNode *source = kb_xml_child(node, "source");
		autofree char *file = kb_xml_prop(xml, source, "file");
		autofree char *dev = kb_xml_prop(xml, source, "dev");
		autofree char *pool = kb_xml_prop(xml, source, "pool");
		autofree char *volume = kb_xml_prop(xml, source, "volume");
		autofree char *from_volume = pool && volume && volume_path ? volume_path(opaque, pool, volume) : NULL;
		const char *path = file ? file : dev ? dev : from_volume;
		if (path)
			mark_chain(ctx, set, path, who, running, writes && depth == 0);
		node = kb_xml_child(node, "backingStore");
	}
}

int kb_disk_set_mark_domain(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_disk_set *set,
			    const char *name, bool running, const char *text, size_t len,
			    kb_volume_path_fn *volume_path, void *opaque, struct kb_error *err)
{
	xmlDoc *doc = kb_xml_parse(xml, text, len, name, err);
	if (!doc)
		return -1;
	char who[300];
	snprintf(who, sizeof(who), "%s domain %s", running ? "running" : "defined", name);
	xmlNode *root = xml->root_element(doc);
	if (root && !strcmp((const char *)root->name, "domstatus"))
		root = kb_xml_child(root, "domain");
	xmlNode *devices = kb_xml_child(root, "devices");
	for (xmlNode *disk = kb_xml_child(devices, "disk"); disk; disk = kb_xml_next(disk, "disk"))
		mark_sources(ctx, xml, set, disk, who, running, volume_path, opaque);
	xml->free_doc(doc);
	return 0;
}

/* "NAME" from QEMU's "-name guest=NAME,debug-threads=on" in /proc/PID/cmdline, else "". */
static void qemu_guest_name(const char *pid, char *name, size_t size)
{
	char path[64], cmdline[8192];
	name[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%.32s/cmdline", pid);
	autoclose_fd fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, cmdline, sizeof(cmdline) - 1);
	if (n <= 0)
		return;
	cmdline[n] = '\0';
	for (char *arg = cmdline; arg < cmdline + n; arg += strlen(arg) + 1) {
		if (strncmp(arg, "guest=", 6) == 0) {
			snprintf(name, size, "%.*s", (int)strcspn(arg + 6, ","), arg + 6);
			return;
		}
	}
}

/*
 * libvirt's own daemons open images for a moment to read their headers (a
 * pool refresh, a domain being started): not a user. QEMU and anything else
 * that holds an image (a copy, an NBD export) is.
 */
static bool libvirt_daemon(const char *pid)
{
	static const char *const daemons[] = { "libvirtd", "virtqemud", "virtstoraged", "virtproxyd", "virtnodedevd" };
	char path[64], comm[32] = "";
	snprintf(path, sizeof(path), "/proc/%.32s/comm", pid);
	autoclose_fd fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, comm, sizeof(comm) - 1);
	if (n <= 0)
		return false;
	comm[n - (comm[n - 1] == '\n')] = '\0';
	for (size_t i = 0; i < sizeof(daemons) / sizeof(daemons[0]); i++)
		if (!strcmp(comm, daemons[i]))
			return true;
	return false;
}

/* Whether fd @fd of process @pid is open for writing (the flags in /proc/PID/fdinfo/FD, octal). */
static bool fd_writes(const char *pid, const char *fd)
{
	char path[96], info[512];
	snprintf(path, sizeof(path), "/proc/%.32s/fdinfo/%.32s", pid, fd);
	autoclose_fd info_fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = info_fd < 0 ? -1 : read(info_fd, info, sizeof(info) - 1);
	if (n <= 0)
		return true; /* unknown: taken as the worse case */
	info[n] = '\0';
	const char *flags = strstr(info, "flags:");
	return !flags || (strtoul(flags + 6, NULL, 8) & O_ACCMODE) != O_RDONLY;
}

/* Who process @pid is: "running domain NAME (QEMU pid N has it open)", else "COMM (pid N has it open)". */
static void open_by(const char *pid, char *user, size_t size)
{
	char guest[256], comm[64] = "?", comm_path[64];
	qemu_guest_name(pid, guest, sizeof(guest));
	snprintf(comm_path, sizeof(comm_path), "/proc/%.32s/comm", pid);
	autoclose_fd c = open(comm_path, O_RDONLY | O_CLOEXEC);
	ssize_t n = c < 0 ? -1 : read(c, comm, sizeof(comm) - 1);
	if (n > 0)
		comm[n - (comm[n - 1] == '\n')] = '\0';
	if (guest[0])
		snprintf(user, size, "running domain %.200s (QEMU pid %.32s has it open)", guest, pid);
	else
		snprintf(user, size, "%.63s (pid %.32s has it open)", comm, pid);
}

void kb_disk_set_mark_open(const struct kb_ctx *ctx, struct kb_disk_set *set)
{
	if (!kb_sysroot_is_host(ctx) || set->count == 0)
		return;
	autoclose_dir proc = opendir("/proc");
	struct dirent *de;
	char self[32];
	snprintf(self, sizeof(self), "%d", (int)getpid());
	while (proc && (de = readdir(proc)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9' || !strcmp(de->d_name, self) || libvirt_daemon(de->d_name))
			continue;
		char fd_dir[PATH_MAX];
		snprintf(fd_dir, sizeof(fd_dir), "/proc/%.32s/fd", de->d_name);
		autoclose_dir fds = opendir(fd_dir);
		struct dirent *f;
		while (fds && (f = readdir(fds)) != NULL) {
			if (f->d_name[0] == '.')
				continue;
			char fd_path[PATH_MAX];
			struct stat st;
			snprintf(fd_path, sizeof(fd_path), "/proc/%.32s/fd/%.32s", de->d_name, f->d_name);
			if (stat(fd_path, &st) < 0 || !S_ISREG(st.st_mode))
				continue;
			for (size_t i = 0; i < set->count; i++) {
				struct kb_disk_set_file *file = &set->file[i];
				if (file->dev != st.st_dev || file->ino != st.st_ino)
					continue;
				char user[sizeof(file->user)];
				open_by(de->d_name, user, sizeof(user));
				name_user(file, user, true, fd_writes(de->d_name, f->d_name));
			}
		}
	}
}

/* Every NAME.xml in @dir (under the sysroot), marked as domain NAME's. */
static int mark_xml_dir(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_disk_set *set, const char *dir,
			bool running, struct kb_error *err)
{
	struct kb_path p;
	if (kb_sysroot_path(ctx, dir, &p, err) < 0)
		return -1;
	/* Listed and read inside the root through every component. */
	autoclose_dir d = kb_sysroot_opendir(ctx, dir, NULL);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n <= 4 || strcmp(de->d_name + n - 4, ".xml") || de->d_name[0] == '.')
			continue;
		char path[PATH_MAX * 2], name[256];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		snprintf(name, sizeof(name), "%.*s", (int)(n - 4), de->d_name);
		autofree char *text = NULL;
		size_t len;
		if (kb_read_file(ctx, path, 4 << 20, &text, &len, NULL) < 0)
			continue;
		/* A file libvirt cannot parse either names no disk: skipped, not fatal. */
		struct kb_error ignored;
		kb_disk_set_mark_domain(ctx, xml, set, name, running, text, len, NULL, NULL, &ignored);
	}
	return 0;
}

int kb_disk_set_mark_libvirt_files(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_disk_set *set,
				   struct kb_error *err)
{
	if (mark_xml_dir(ctx, xml, set, "/run/libvirt/qemu", true, err) < 0)
		return -1;
	return mark_xml_dir(ctx, xml, set, "/etc/libvirt/qemu", false, err);
}
