/* Reading files and replacing them atomically; see kvmbox/file.h. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/cleanup.h"
#include "kvmbox/file.h"
#include "kvmbox/sysroot.h"

/* read() until EOF into a growing buffer: /proc and /sys sizes cannot be trusted. */
static int read_fd_all(int fd, const char *path, size_t max_size, char **data, size_t *len,
		       struct kb_error *err)
{
	size_t cap = 4096, used = 0;
	char *buf = malloc(cap);
	if (!buf)
		return kb_fail(err, ENOMEM, path, "reading");
	for (;;) {
		if (cap - used < 2) {
			if (cap > max_size) {
				free(buf);
				return kb_fail(err, EFBIG, path, "reading (over %zu bytes)", max_size);
			}
			char *bigger = realloc(buf, cap * 2);
			if (!bigger) {
				free(buf);
				return kb_fail(err, ENOMEM, path, "reading");
			}
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + used, cap - used - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			free(buf);
			return kb_fail(err, e, path, "reading");
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (used > max_size) {
		free(buf);
		return kb_fail(err, EFBIG, path, "reading (over %zu bytes)", max_size);
	}
	buf[used] = '\0';
	*data = buf;
	*len = used;
	return 0;
}

static int resolve_links(const struct kb_ctx *ctx, const char *abs_path, struct kb_path *out, struct kb_error *err);

int kb_read_file(const struct kb_ctx *ctx, const char *abs_path, size_t max_size, char **data,
		 size_t *len, struct kb_error *err)
{
	/* A symlinked file is read where kvmbox would write it: its target, inside the root. */
	struct kb_path p;
	if (resolve_links(ctx, abs_path, &p, err) < 0)
		return -1;
	return kb_read_path(p.s, max_size, data, len, err);
}

int kb_read_fd(int fd, const char *name, size_t max_size, char **data, size_t *len, struct kb_error *err)
{
	return read_fd_all(fd, name, max_size, data, len, err);
}

int kb_read_path(const char *path, size_t max_size, char **data, size_t *len, struct kb_error *err)
{
	autoclose_fd fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, path, "opening");
	return read_fd_all(fd, path, max_size, data, len, err);
}

int kb_read_value(const struct kb_ctx *ctx, const char *abs_path, char *buf, size_t size,
		  struct kb_error *err)
{
	struct kb_path p;
	if (kb_sysroot_path(ctx, abs_path, &p, err) < 0)
		return -1;
	autoclose_fd fd = open(p.s, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, p.s, "opening");
	size_t used = 0;
	for (;;) {
		if (used + 1 >= size)
			return kb_fail(err, EOVERFLOW, p.s, "reading (value longer than %zu bytes)",
				       size - 1);
		ssize_t n = read(fd, buf + used, size - used - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kb_fail(err, errno, p.s, "reading");
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	while (used > 0 && strchr(" \t\r\n", buf[used - 1]))
		used--;
	buf[used] = '\0';
	size_t lead = strspn(buf, " \t\r\n");
	memmove(buf, buf + lead, used - lead + 1);
	return 0;
}

static int write_all(int fd, const char *data, size_t len);

int kb_write_value(const struct kb_ctx *ctx, const char *abs_path, const char *value,
		   struct kb_error *err)
{
	struct kb_path p;
	if (kb_sysroot_path(ctx, abs_path, &p, err) < 0)
		return -1;
	autoclose_fd fd = open(p.s, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, p.s, "opening");
	if (write_all(fd, value, strlen(value)) < 0)
		return kb_fail(err, errno, p.s, "writing '%s' to", value);
	return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int kb_fsync_dir(const char *dir, struct kb_error *err)
{
	autoclose_fd fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return kb_fail(err, errno, dir, "syncing directory");
	return 0;
}

/* Keep the current file as @backup: a hard link made under a temporary name, then renamed. */
static int keep_backup(const char *path, const char *backup, struct kb_error *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", backup) >= (int)sizeof(tmp))
		return kb_fail(err, ENAMETOOLONG, backup, "making backup");
	unlink(tmp);
	if (link(path, tmp) < 0)
		return kb_fail(err, errno, tmp, "making backup");
	if (rename(tmp, backup) < 0) {
		int e = errno;
		unlink(tmp);
		return kb_fail(err, e, backup, "making backup");
	}
	return 0;
}

static int verify_content(const char *path, const void *data, size_t len, struct kb_error *err)
{
	autoclose_fd fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, path, "reading back");
	autofree char *back = NULL;
	size_t back_len;
	if (read_fd_all(fd, path, len, &back, &back_len, err) < 0)
		return -1;
	if (back_len != len || memcmp(back, data, len) != 0)
		return kb_fail(err, EIO, path, "reading back: content differs from what was written to");
	return 0;
}

int kb_make_dirs(const char *dir, struct kb_error *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s", dir);
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return kb_fail(err, errno, path, "creating directory");
		*p = saved;
		if (saved == '\0')
			return 0;
	}
}

/*
 * Normalize @path (absolute, as seen inside the root) in place: "//", "." and
 * ".." resolved by their text. Returns -1 when ".." climbs above "/": the
 * path leaves the root.
 */
static int normalize_in_root(char *path)
{
	char out[PATH_MAX] = "";
	size_t used = 0;
	for (char *save, *part = strtok_r(path, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
		if (!strcmp(part, "."))
			continue;
		if (!strcmp(part, "..")) {
			if (used == 0)
				return -1;
			while (used > 0 && out[--used] != '/')
				;
			out[used] = '\0';
			continue;
		}
		int n = snprintf(out + used, sizeof(out) - used, "/%s", part);
		if (n < 0 || (size_t)n >= sizeof(out) - used)
			return -1;
		used += (size_t)n;
	}
	snprintf(path, PATH_MAX, "%s", used ? out : "/");
	return 0;
}

/*
 * Where a write to @abs_path really lands: a symlink (or a chain of them) is
 * followed to its final target, read as a path inside the root (an absolute
 * link in a --root tree points into that tree), so the target is replaced and
 * the link stays a link. A loop, or a relative link that climbs out of the
 * root, is refused.
 */
static int resolve_links(const struct kb_ctx *ctx, const char *abs_path, struct kb_path *out, struct kb_error *err)
{
	char cur[PATH_MAX];
	snprintf(cur, sizeof(cur), "%s", abs_path);
	for (int hops = 0; hops <= 40; hops++) {
		if (kb_sysroot_path(ctx, cur, out, err) < 0)
			return -1;
		struct stat st;
		if (lstat(out->s, &st) < 0 || !S_ISLNK(st.st_mode))
			return 0;
		char target[PATH_MAX];
		ssize_t n = readlink(out->s, target, sizeof(target) - 1);
		if (n < 0)
			return kb_fail(err, errno, out->s, "reading the symbolic link");
		target[n] = '\0';
		char next[PATH_MAX * 2];
		if (target[0] == '/') {
			snprintf(next, sizeof(next), "%s", target);
		} else {
			char dir[PATH_MAX];
			snprintf(dir, sizeof(dir), "%s", cur);
			snprintf(next, sizeof(next), "%s/%s", dirname(dir), target);
		}
		if (strlen(next) >= sizeof(cur) || normalize_in_root(next) < 0)
			return kb_fail(err, EXDEV, out->s, "writing: the symbolic link points outside the root (%s -> %s):",
				       cur, target);
		memcpy(cur, next, strlen(next) + 1); /* fits: checked above */
	}
	return kb_fail(err, ELOOP, abs_path, "writing: too many levels of symbolic links (a loop?) at");
}

int kb_write_file_atomic(const struct kb_ctx *ctx, const char *abs_path, const void *data,
			 size_t len, const struct kb_write_options *opts, struct kb_error *err)
{
	struct kb_path p;
	if (resolve_links(ctx, abs_path, &p, err) < 0)
		return -1;

	char dir[PATH_MAX], base[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", p.s);
	snprintf(base, sizeof(base), "%s", p.s);
	char *dir_name = dirname(dir);
	const char *base_name = basename(base);

	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s/.%s.kvmbox-XXXXXX", dir_name, base_name) >= (int)sizeof(tmp))
		return kb_fail(err, ENAMETOOLONG, p.s, "writing");
	if (opts && opts->create_dirs && kb_make_dirs(dir_name, err) < 0)
		return -1;

	struct stat old;
	bool exists = stat(p.s, &old) == 0;
	if (!exists && errno != ENOENT)
		return kb_fail(err, errno, p.s, "writing");
	if (exists && !S_ISREG(old.st_mode))
		return kb_fail(err, EINVAL, p.s, "writing: not a regular file:");

	autoclose_fd fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, dir_name, "creating a temporary file in");

	mode_t mode = exists ? (old.st_mode & ALLPERMS) : (opts && opts->mode ? opts->mode : 0644);
	int e = 0;
	const char *step = "writing";
	if (write_all(fd, data, len) < 0)
		e = errno;
	else if (fchmod(fd, mode) < 0)
		e = errno, step = "setting the mode of";
	else if (exists && fchown(fd, old.st_uid, old.st_gid) < 0)
		e = errno, step = "setting the owner of";
	else if (fsync(fd) < 0)
		e = errno, step = "syncing";
	if (e) {
		unlink(tmp);
		return kb_fail(err, e, p.s, "%s", step);
	}

	if (exists && opts && opts->backup_suffix) {
		char backup[PATH_MAX];
		/* A hidden backup (.NAME.suffix) where a directory's every file is read: ifupdown's source glob. */
		int n = opts->backup_hidden
				? snprintf(backup, sizeof(backup), "%s/.%s%s", dir_name, base_name, opts->backup_suffix)
				: snprintf(backup, sizeof(backup), "%s%s", p.s, opts->backup_suffix);
		if (n >= (int)sizeof(backup)) {
			unlink(tmp);
			return kb_fail(err, ENAMETOOLONG, p.s, "making backup of");
		}
		if (keep_backup(p.s, backup, err) < 0) {
			unlink(tmp);
			return -1;
		}
	}
	if (rename(tmp, p.s) < 0) {
		e = errno;
		unlink(tmp);
		return kb_fail(err, e, p.s, "replacing");
	}
	if (kb_fsync_dir(dir_name, err) < 0)
		return -1;
	return verify_content(p.s, data, len, err);
}

int kb_file_ensure(const struct kb_ctx *ctx, const char *abs_path, const char *data, size_t len,
		   mode_t mode, bool dry_run, bool *changed, struct kb_error *err)
{
	autofree char *current = NULL;
	size_t current_len = 0;
	*changed = !(kb_read_file(ctx, abs_path, len + 1, &current, &current_len, NULL) == 0 &&
		     current_len == len && memcmp(current, data, len) == 0);
	if (!*changed || dry_run)
		return 0;
	struct kb_write_options opts = { .mode = mode, .create_dirs = true };
	return kb_write_file_atomic(ctx, abs_path, data, len, &opts, err);
}

/* Whether @name in @dirfd (stat'ed in @st) is the root of a mount: another device, or statx says so. */
static bool mount_root_at(int dirfd, const char *name, const struct stat *st, dev_t tree_dev)
{
	if (st->st_dev != tree_dev)
		return true;
	struct statx sx;
	return statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &sx) == 0 &&
	       (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

/*
 * Walk the directory open at @fd (device @dev), depth first. With @remove,
 * unlink everything; without, only check that it could be: no mount point
 * (a directory or a file; a bind mount of the same filesystem included), nothing immutable or
 * append-only. Every step goes through directory fds with O_NOFOLLOW, so a
 * path swapped for a symlink meanwhile is never followed.
 */
static int walk_tree(int fd, dev_t dev, const char *path, bool remove, struct kb_error *err)
{
	int flags = 0;
	if (!remove && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & (FS_IMMUTABLE_FL | FS_APPEND_FL)))
		return kb_fail(err, EPERM, path, "%s (lsattr shows it; chattr -i/-a clears it):",
			       flags & FS_IMMUTABLE_FL ? "an immutable directory" : "an append-only directory");
	int dup_fd = dup(fd);
	DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
	if (!d) {
		if (dup_fd >= 0)
			close(dup_fd);
		return kb_fail(err, errno, path, "listing");
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		struct stat st;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				rc = kb_fail(err, errno, sub, "examining");
			continue;
		}
		/* A file can be a mount point too (a bind mount onto it): never unlinked, never crossed. */
		if (mount_root_at(fd, de->d_name, &st, dev)) {
			rc = kb_fail(err, EBUSY, sub, "a mount point (kvmbox never removes across one):");
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int child = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (child < 0) {
				rc = kb_fail(err, errno, sub, "opening");
				break;
			}
			rc = walk_tree(child, dev, sub, remove, err);
			close(child);
			if (rc == 0 && remove && unlinkat(fd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
				rc = kb_fail(err, errno, sub, "removing");
			continue;
		}
		if (!remove && S_ISREG(st.st_mode)) {
			int f = openat(fd, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			int attrs = 0;
			if (f >= 0 && ioctl(f, FS_IOC_GETFLAGS, &attrs) == 0 && (attrs & (FS_IMMUTABLE_FL | FS_APPEND_FL)))
				rc = kb_fail(err, EPERM, sub, "%s (lsattr shows it; chattr -i/-a clears it):",
					     attrs & FS_IMMUTABLE_FL ? "an immutable file" : "an append-only file");
			if (f >= 0)
				close(f);
			continue;
		}
		if (remove && unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
			rc = kb_fail(err, errno, sub, "removing");
	}
	closedir(d);
	return rc;
}

static int tree_at(const char *path, bool remove, struct kb_error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : kb_fail(err, errno, path, "removing");
	if (!S_ISDIR(st.st_mode)) {
		if (remove && unlink(path) < 0 && errno != ENOENT)
			return kb_fail(err, errno, path, "removing");
		return 0;
	}
	autoclose_fd fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, path, "opening");
	struct stat top;
	if (fstat(fd, &top) < 0)
		return kb_fail(err, errno, path, "examining");
	if (walk_tree(fd, top.st_dev, path, remove, err) < 0)
		return -1;
	if (remove && rmdir(path) < 0 && errno != ENOENT)
		return kb_fail(err, errno, path, "removing");
	return 0;
}

int kb_remove_tree(const char *path, struct kb_error *err)
{
	return tree_at(path, true, err);
}

int kb_tree_removable(const char *path, struct kb_error *err)
{
	return tree_at(path, false, err);
}

unsigned long long kb_meminfo_kib(const struct kb_ctx *ctx, const char *abs_path, const char *label)
{
	autofree char *text = NULL;
	size_t len;
	if (kb_read_file(ctx, abs_path, 1 << 20, &text, &len, NULL) < 0)
		return 0;
	const char *line = strstr(text, label);
	return line ? strtoull(line + strlen(label), NULL, 10) : 0;
}
