/* Reading files and replacing them atomically; see kvmbox/core/file.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <dirent.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/run.h"
#include "kvmbox/core/sysroot.h"

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

static int resolve_links(const struct kb_ctx *ctx, const char *abs_path, bool follow, const char *doing,
			 char name[NAME_MAX + 1], struct stat *found, struct kb_path *shown, struct kb_error *err);

int kb_read_file(const struct kb_ctx *ctx, const char *abs_path, size_t max_size, char **data,
		 size_t *len, struct kb_error *err)
{
	/* A symlinked file is read where kvmbox would write it: its target, inside the root. */
	char name[NAME_MAX + 1];
	struct kb_path p;
	struct stat st;
	autoclose_fd dir = resolve_links(ctx, abs_path, true, "reading", name, &st, &p, err);
	if (dir < 0)
		return -1;
	/*
	 * Never blocks: a FIFO put where a file was expected (a mounted root is input) is refused, not waited on.
	 * And a device is refused before it is opened: an open alone arms a watchdog or takes a terminal.
	 */
	if (st.st_mode && !S_ISREG(st.st_mode))
		return kb_fail(err, EINVAL, p.s, "reading: not a regular file:");
	autoclose_fd fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return kb_fail(err, errno, p.s, "opening");
	if (!S_ISREG(st.st_mode))
		return kb_fail(err, EINVAL, p.s, "reading: not a regular file:");
	return read_fd_all(fd, p.s, max_size, data, len, err);
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

/* kb_read_value() of the open @fd; @shown names it in errors. */
static int read_value_fd(int fd, const char *shown, char *buf, size_t size, struct kb_error *err)
{
	size_t used = 0;
	for (;;) {
		if (used + 1 >= size)
			return kb_fail(err, EOVERFLOW, shown, "reading (value longer than %zu bytes)",
				       size - 1);
		ssize_t n = read(fd, buf + used, size - used - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kb_fail(err, errno, shown, "reading");
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

/*
 * A value's file, opened: never blocking on a FIFO put where a sysfs or procfs
 * file was expected (a root is input), never taking a terminal, and refused
 * unless it is a regular file, as every sysfs and procfs value is.
 */
static int value_file(int fd, const char *shown, struct kb_error *err)
{
	struct stat st;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		kb_fail(err, errno, shown, "opening");
	else if (!S_ISREG(st.st_mode))
		kb_fail(err, 0, shown, "not a regular file (a sysfs or procfs value is one):");
	else
		return fd;
	close(fd);
	return -1;
}
#define VALUE_OPEN_FLAGS (O_NONBLOCK | O_NOCTTY)

int kb_read_value(const struct kb_ctx *ctx, const char *abs_path, char *buf, size_t size,
		  struct kb_error *err)
{
	struct kb_path p;
	if (kb_sysroot_path(ctx, abs_path, &p, err) < 0)
		return -1;
	autoclose_fd fd = value_file(kb_sysroot_open(ctx, abs_path, O_RDONLY | VALUE_OPEN_FLAGS, 0, err), p.s, err);
	if (fd < 0)
		return -1;
	return read_value_fd(fd, p.s, buf, size, err);
}

int kb_read_value_at(int dirfd, const char *name, const char *shown, char *buf, size_t size, struct kb_error *err)
{
	if (strchr(name, '/'))
		return kb_fail(err, EINVAL, shown, "reading (not a name in the directory)");
	int opened = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | VALUE_OPEN_FLAGS);
	if (opened < 0)
		return kb_fail(err, errno, shown, "opening");
	autoclose_fd fd = value_file(opened, shown, err);
	if (fd < 0)
		return -1;
	return read_value_fd(fd, shown, buf, size, err);
}

int kb_write_value(const struct kb_ctx *ctx, const char *abs_path, const char *value,
		   struct kb_error *err)
{
	struct kb_path p;
	if (kb_sysroot_path(ctx, abs_path, &p, err) < 0)
		return -1;
	autoclose_fd fd = value_file(kb_sysroot_open(ctx, abs_path, O_WRONLY | VALUE_OPEN_FLAGS, 0, err), p.s, err);
	if (fd < 0)
		return -1;
	if (kb_write_all(fd, value, strlen(value)) < 0)
		return kb_fail(err, errno, p.s, "writing '%s' to", value);
	return 0;
}

int kb_write_all(int fd, const void *data, size_t len)
{
	bool socket = true; /* until send() says otherwise: a socket's reader gone is EPIPE, never a SIGPIPE */
	for (const char *p = data; len > 0;) {
		ssize_t n = socket ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
		if (n < 0 && errno == ENOTSOCK) {
			socket = false;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int kb_read_exact(int fd, void *data, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)data + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return got ? (errno = EPIPE, -1) : 0;
		got += (size_t)n;
	}
	return 1;
}

int kb_lock_file(const struct kb_ctx *ctx, const char *abs_path)
{
	int fd = kb_sysroot_open(ctx, abs_path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, NULL);
	struct stat st;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	/*
	 * Another kvmbox holds it for milliseconds; whoever holds it longer (a hung
	 * process, an admin's flock) is not waited on past 10 s: the check against
	 * the plan is still made, without the lock.
	 */
	int64_t deadline = kb_deadline_after(10000);
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if ((errno != EWOULDBLOCK && errno != EINTR) || kb_deadline_after(0) > deadline) {
			close(fd);
			return -1;
		}
		usleep(5000);
	}
	return fd;
}

int64_t kb_deadline_after(int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + ms;
}

double kb_now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int kb_socket_transfer(int fd, void *buf, size_t len, bool out, int64_t deadline)
{
	size_t done = 0;
	while (done < len) {
		int64_t left = deadline - kb_deadline_after(0);
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd p = { .fd = fd, .events = out ? POLLOUT : POLLIN };
		int ready = poll(&p, 1, (int)left);
		if (ready < 0)
			return -1; /* EINTR too: the caller's handler has something to say */
		if (ready == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		ssize_t n = out ? send(fd, (char *)buf + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL)
				: recv(fd, (char *)buf + done, len - done, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n < 0 && errno == ECONNRESET)
			errno = EPIPE; /* it ended with our data unread: ended all the same */
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EPIPE;
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

/*
 * Keep @name in @dir as @backup there: a hard link made under a temporary name,
 * then renamed (@shown names the backup in messages).
 */
static int keep_backup(int dir, const char *name, const char *backup, const char *shown, struct kb_error *err)
{
	char tmp[NAME_MAX + 8];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", backup) >= (int)sizeof(tmp))
		return kb_fail(err, ENAMETOOLONG, shown, "making backup");
	unlinkat(dir, tmp, 0);
	if (linkat(dir, name, dir, tmp, 0) < 0)
		return kb_fail(err, errno, shown, "making backup");
	if (renameat(dir, tmp, dir, backup) < 0) {
		int e = errno;
		unlinkat(dir, tmp, 0);
		return kb_fail(err, e, shown, "making backup");
	}
	return 0;
}

static int verify_content(int dir, const char *name, const char *path, const void *data, size_t len,
			  struct kb_error *err)
{
	autoclose_fd fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
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
 * link in a --root tree points into that tree; every directory on the way is
 * resolved inside the root too), so the target is replaced and the link stays
 * a link. A loop, or a relative link that climbs out of the root, is refused.
 * Returns the fd of the directory holding the final file, its name in @name
 * and its mapped path in @shown, for messages; every later step goes through
 * that fd.
 */
static int resolve_links(const struct kb_ctx *ctx, const char *abs_path, bool follow, const char *doing,
			 char name[NAME_MAX + 1], struct stat *found, struct kb_path *shown, struct kb_error *err)
{
	char cur[PATH_MAX];
	if (snprintf(cur, sizeof(cur), "%s", abs_path) >= (int)sizeof(cur))
		return kb_fail(err, ENAMETOOLONG, abs_path, "opening");
	for (int hops = 0; hops <= 40; hops++) {
		if (kb_sysroot_path(ctx, cur, shown, err) < 0)
			return -1;
		int dir = kb_sysroot_open_parent(ctx, cur, name, err);
		if (dir < 0)
			return err ? kb_fail(err, err->errnum, shown->s, "opening") : -1;
		struct stat st;
		if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			found->st_mode = 0; /* nothing there (yet) */
			return dir;
		}
		if (!S_ISLNK(st.st_mode)) {
			*found = st;
			return dir;
		}
		if (!follow) {
			close(dir);
			return kb_fail(err, ELOOP, shown->s, "%s: a symbolic link is there, refusing to go through it:", doing);
		}
		char target[PATH_MAX];
		ssize_t n = readlinkat(dir, name, target, sizeof(target) - 1);
		close(dir);
		if (n < 0)
			return kb_fail(err, errno, shown->s, "reading the symbolic link");
		target[n] = '\0';
		char next[PATH_MAX * 2];
		if (target[0] == '/') {
			snprintf(next, sizeof(next), "%s", target);
		} else {
			/* Relative to the directory the link really is in, as the root sees it. */
			char dir_path[PATH_MAX];
			snprintf(dir_path, sizeof(dir_path), "%s", cur);
			struct kb_path real_dir;
			if (kb_sysroot_canonical(ctx, dirname(dir_path), true, &real_dir, err) < 0)
				return -1;
			snprintf(next, sizeof(next), "%s/%s", real_dir.s, target);
		}
		if (strlen(next) >= sizeof(cur) || normalize_in_root(next) < 0)
			return kb_fail(err, EXDEV, shown->s, "%s: the symbolic link points outside the root (%s -> %s):", doing,
				       cur, target);
		memcpy(cur, next, strlen(next) + 1); /* fits: checked above */
	}
	kb_sysroot_path(ctx, abs_path, shown, NULL);
	return kb_fail(err, ELOOP, shown->s, "%s: too many levels of symbolic links (a loop?) at", doing);
}

/* A new file ".NAME.kvmbox-XXXXXX" in @dir, mode 0600, its name in @tmp. */
static int create_temp(int dir, const char *name, char tmp[NAME_MAX + 1])
{
	for (int tries = 0; tries < 100; tries++) {
		unsigned int r = 0;
		if (getrandom(&r, sizeof(r), GRND_NONBLOCK) < 0)
			r = (unsigned int)getpid() * 2654435761u + (unsigned int)tries;
		if (snprintf(tmp, NAME_MAX + 1, ".%s.kvmbox-%06x", name, r & 0xffffff) > NAME_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	return -1;
}

int kb_write_file_atomic(const struct kb_ctx *ctx, const char *abs_path, const void *data,
			 size_t len, const struct kb_write_options *opts, struct kb_error *err)
{
	if (opts && opts->create_dirs) {
		char parent[PATH_MAX];
		snprintf(parent, sizeof(parent), "%s", abs_path);
		if (kb_sysroot_make_dirs(ctx, dirname(parent), err) < 0)
			return -1;
	}
	char name[NAME_MAX + 1];
	struct kb_path p;
	struct stat seen; /* looked at again below, with its error kept */
	autoclose_fd dir = resolve_links(ctx, abs_path, !(opts && opts->no_follow), "writing", name, &seen, &p, err);
	if (dir < 0)
		return -1;
	char dir_shown[PATH_MAX];
	snprintf(dir_shown, sizeof(dir_shown), "%s", p.s);
	const char *dir_name = dirname(dir_shown);

	struct stat old;
	bool exists = fstatat(dir, name, &old, AT_SYMLINK_NOFOLLOW) == 0;
	if (!exists && errno != ENOENT)
		return kb_fail(err, errno, p.s, "writing");
	if (exists && !S_ISREG(old.st_mode))
		return kb_fail(err, EINVAL, p.s, "writing: not a regular file:");

	char tmp[NAME_MAX + 1];
	autoclose_fd fd = create_temp(dir, name, tmp);
	if (fd < 0)
		return kb_fail(err, errno, dir_name, "creating a temporary file in");

	mode_t mode = exists ? (old.st_mode & ALLPERMS) : (opts && opts->mode ? opts->mode : 0644);
	int e = 0;
	const char *step = "writing";
	if (kb_write_all(fd, data, len) < 0)
		e = errno;
	else if (fchmod(fd, mode) < 0)
		e = errno, step = "setting the mode of";
	else if (exists && fchown(fd, old.st_uid, old.st_gid) < 0)
		e = errno, step = "setting the owner of";
	else if (!(opts && opts->no_sync) && fsync(fd) < 0)
		e = errno, step = "syncing";
	if (e) {
		unlinkat(dir, tmp, 0);
		return kb_fail(err, e, p.s, "%s", step);
	}

	if (exists && opts && opts->backup_suffix) {
		char backup[NAME_MAX + 1], backup_shown[PATH_MAX + NAME_MAX + 2];
		/* A hidden backup (.NAME.suffix) where a directory's every file is read: ifupdown's source glob. */
		int n = snprintf(backup, sizeof(backup), "%s%s%s", opts->backup_hidden ? "." : "", name,
				 opts->backup_suffix);
		if (n >= (int)sizeof(backup)) {
			unlinkat(dir, tmp, 0);
			return kb_fail(err, ENAMETOOLONG, p.s, "making backup of");
		}
		snprintf(backup_shown, sizeof(backup_shown), "%s/%s", dir_name, backup);
		if (keep_backup(dir, name, backup, backup_shown, err) < 0) {
			unlinkat(dir, tmp, 0);
			return -1;
		}
	}
	if (renameat(dir, tmp, dir, name) < 0) {
		e = errno;
		unlinkat(dir, tmp, 0);
		return kb_fail(err, e, p.s, "replacing");
	}
	if (!(opts && opts->no_sync) && kb_sync_dir_entry(ctx, dir, dir_name, err) < 0)
		return -1;
	return verify_content(dir, name, p.s, data, len, err);
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

/* The entry for @key in @cache, or NULL when it has none (then *@fresh is a new slot to fill, or NULL when full). */
static struct kb_cached_read *cached_read(struct kb_read_cache *cache, const char *key, struct kb_cached_read **fresh)
{
	*fresh = NULL;
	if (!cache || strlen(key) >= sizeof(cache->item[0].key))
		return NULL;
	for (size_t i = 0; i < cache->count; i++)
		if (!strcmp(cache->item[i].key, key))
			return &cache->item[i];
	if (cache->count < sizeof(cache->item) / sizeof(cache->item[0]))
		*fresh = &cache->item[cache->count];
	return NULL;
}

int kb_read_value_cached(const struct kb_ctx *ctx, struct kb_read_cache *cache, const char *abs_path, char *buf,
			 size_t size, struct kb_error *err)
{
	struct kb_cached_read *fresh, *hit = cached_read(cache, abs_path, &fresh);
	if (!hit) {
		if (!fresh || size > sizeof(fresh->value))
			return kb_read_value(ctx, abs_path, buf, size, err);
		struct kb_error mine = { 0 };
		fresh->rc = kb_read_value(ctx, abs_path, fresh->value, sizeof(fresh->value), &mine);
		fresh->errnum = mine.errnum;
		snprintf(fresh->key, sizeof(fresh->key), "%s", abs_path);
		cache->count++;
		if (fresh->rc < 0 && err)
			*err = mine;
		hit = fresh;
	}
	if (hit->rc < 0) {
		errno = hit->errnum;
		return -1;
	}
	if (strlen(hit->value) >= size)
		return kb_fail(err, errno = EOVERFLOW, abs_path, "reading (value longer than %zu bytes)", size - 1);
	snprintf(buf, size, "%s", hit->value);
	return 0;
}

unsigned long long kb_meminfo_kib_cached(const struct kb_ctx *ctx, struct kb_read_cache *cache, const char *abs_path,
					 const char *label)
{
	char key[sizeof(cache->item[0].key)];
	struct kb_cached_read *fresh = NULL, *hit = NULL;
	if (snprintf(key, sizeof(key), "%s %s", abs_path, label) < (int)sizeof(key))
		hit = cached_read(cache, key, &fresh);
	if (hit)
		return strtoull(hit->value, NULL, 10);
	unsigned long long kib = kb_meminfo_kib(ctx, abs_path, label);
	if (fresh) {
		memcpy(fresh->key, key, sizeof(key));
		snprintf(fresh->value, sizeof(fresh->value), "%llu", kib);
		fresh->rc = 0;
		cache->count++;
	}
	return kib;
}
