/* Path mapping under --root / --target; see kvmbox/core/sysroot.h. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/sysroot.h"

static bool has_prefix_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

bool kb_sysroot_is_live(const char *abs_path)
{
	static const char *const live[] = { "/proc", "/sys", "/dev", "/run" };
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (has_prefix_dir(abs_path, live[i]))
			return true;
	return false;
}

static bool is_slash(const char *dir)
{
	return strspn(dir, "/") == strlen(dir);
}

bool kb_sysroot_is_host(const struct kb_ctx *ctx)
{
	return is_slash(ctx->root);
}

static int map_under(const char *base, const char *abs_path, struct kb_path *out, struct kb_error *err)
{
	if (abs_path[0] != '/')
		return kb_fail(err, EINVAL, abs_path, "not an absolute path:");
	int n;
	if (is_slash(base))
		n = snprintf(out->s, sizeof(out->s), "%s", abs_path);
	else {
		size_t blen = strlen(base);
		while (blen > 1 && base[blen - 1] == '/')
			blen--;
		n = snprintf(out->s, sizeof(out->s), "%.*s%s", (int)blen, base, abs_path);
	}
	if (n < 0 || (size_t)n >= sizeof(out->s))
		return kb_fail(err, ENAMETOOLONG, abs_path, "mapping under %s", base);
	return 0;
}

int kb_sysroot_path(const struct kb_ctx *ctx, const char *abs_path, struct kb_path *out,
		    struct kb_error *err)
{
	bool persistent = ctx->target && !kb_sysroot_is_live(abs_path);
	return map_under(persistent ? ctx->target : ctx->root, abs_path, out, err);
}

int kb_sysroot_root_path(const struct kb_ctx *ctx, const char *abs_path, struct kb_path *out,
			 struct kb_error *err)
{
	return map_under(ctx->root, abs_path, out, err);
}

/* ---- confined access ---------------------------------------------------- */

#define MAX_LINKS 40 /* as the kernel's MAXSYMLINKS */

static const char *base_of(const struct kb_ctx *ctx, const char *abs_path)
{
	return ctx->target && !kb_sysroot_is_live(abs_path) ? ctx->target : ctx->root;
}

/* Open @canon (a path inside @root_fd with no link in it) with O_NOFOLLOW at every component. */
static int open_nofollow(int root_fd, const char *canon, int flags, mode_t mode)
{
	autoclose_fd dir = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -1;
	const char *p = canon;
	for (;;) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (n == 0)
			return openat(dir, ".", flags | O_CLOEXEC, mode);
		if (n > NAME_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		char name[NAME_MAX + 1];
		memcpy(name, p, n);
		name[n] = '\0';
		p += n;
		bool last = strspn(p, "/") == strlen(p);
		if (last)
			return openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
		int next = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			return -1;
		close(dir);
		dir = next;
	}
}

/*
 * The path inside the root, with every link followed as the root sees it: an
 * absolute target starts again at the root, ".." stops at the root. Each link
 * is read through the fd of the directory holding it. Once a component is
 * missing the rest is kept as written (nothing below it can be a link).
 */
static int canonical_at(int root_fd, const char *abs_path, bool follow_last, char out[PATH_MAX])
{
	char todo[PATH_MAX * 2], done[PATH_MAX] = "";
	if (snprintf(todo, sizeof(todo), "%s", abs_path) >= (int)sizeof(todo)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	size_t used = 0;
	int links = 0;
	bool missing = false;
	autoclose_fd dir = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -1;
	char *p = todo;
	for (;;) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (n == 0)
			break;
		if (n > NAME_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		char name[NAME_MAX + 1];
		memcpy(name, p, n);
		name[n] = '\0';
		p += n;
		bool last = strspn(p, "/") == strlen(p);
		if (!strcmp(name, "."))
			continue;
		if (!strcmp(name, "..")) {
			while (used > 0 && done[--used] != '/')
				;
			done[used] = '\0';
			close(dir);
			dir = open_nofollow(root_fd, used ? done : "/", O_PATH | O_DIRECTORY, 0);
			missing = dir < 0;
			if (dir < 0 && errno != ENOENT && errno != ENOTDIR)
				return -1;
			continue;
		}
		struct stat st;
		bool exists = !missing && fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
		if (!missing && !exists && errno != ENOENT && errno != ENOTDIR)
			return -1;
		if (exists && S_ISLNK(st.st_mode) && (!last || follow_last)) {
			if (++links > MAX_LINKS) {
				errno = ELOOP;
				return -1;
			}
			char target[PATH_MAX];
			ssize_t len = readlinkat(dir, name, target, sizeof(target) - 1);
			if (len < 0)
				return -1;
			target[len] = '\0';
			/* todo becomes TARGET/REST: the link's text replaces its name. */
			size_t rest = strlen(p);
			if ((size_t)len + 1 + rest >= sizeof(todo)) {
				errno = ENAMETOOLONG;
				return -1;
			}
			memmove(todo + len + 1, p, rest + 1);
			memcpy(todo, target, (size_t)len);
			todo[len] = '/';
			p = todo;
			if (target[0] == '/') {
				used = 0;
				done[0] = '\0';
				close(dir);
				dir = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
				if (dir < 0)
					return -1;
				missing = false;
			}
			continue;
		}
		if (used + 1 + n >= PATH_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		done[used++] = '/';
		memcpy(done + used, name, n + 1);
		used += n;
		if (!exists) {
			missing = true;
		} else if (!last) {
			int next = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (next < 0 && errno != ENOTDIR)
				return -1;
			missing = next < 0;
			close(dir);
			dir = next;
		}
	}
	snprintf(out, PATH_MAX, "%s", used ? done : "/");
	return 0;
}

int kb_sysroot_walk_openat(int root_fd, const char *abs_path, int flags, mode_t mode)
{
	char canon[PATH_MAX];
	if (canonical_at(root_fd, abs_path, !(flags & O_NOFOLLOW), canon) < 0)
		return -1;
	return open_nofollow(root_fd, canon, flags, mode);
}

/* openat2() of @path from @dir_fd with @resolve; -1 with ENOSYS on a kernel without it (before 5.6). */
static int openat2_retrying(int dir_fd, const char *path, int flags, mode_t mode, unsigned long long resolve)
{
	struct open_how how = {
		.flags = (unsigned long long)(flags | O_CLOEXEC),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = resolve,
	};
	/* EAGAIN: a rename elsewhere in the tree raced the lookup; the kernel asks for a retry. */
	for (int tries = 0; tries < 16; tries++) {
		long fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno != EAGAIN)
			return -1;
	}
	return -1;
}

int kb_sysroot_openat(int root_fd, const char *abs_path, int flags, mode_t mode)
{
	int fd = openat2_retrying(root_fd, abs_path, flags, mode, RESOLVE_IN_ROOT);
	if (fd < 0 && errno == ENOSYS)
		return kb_sysroot_walk_openat(root_fd, abs_path, flags, mode);
	return fd;
}

/*
 * @abs_path opened on the running system's own "/": what RESOLVE_IN_ROOT does
 * there, without an fd of "/" to resolve in. That flag also refuses magic
 * links (/proc/PID/root, /proc/self/fd/N), and so does this.
 */
static int host_openat(const char *abs_path, int flags, mode_t mode)
{
	int fd = openat2_retrying(AT_FDCWD, abs_path, flags, mode, RESOLVE_NO_MAGICLINKS);
	if (fd < 0 && errno == ENOSYS)
		return openat(AT_FDCWD, abs_path, flags | O_CLOEXEC, mode);
	return fd;
}

/*
 * Whether @abs_path resolves against the running system's own "/": resolving
 * "in the root" is then what the kernel does anyway, so one call (host_openat)
 * does the work of opening the root, openat2() and closing the root again (a
 * check makes some thirty of them at every start).
 */
static bool in_host_root(const struct kb_ctx *ctx, const char *abs_path)
{
	return abs_path[0] == '/' && is_slash(base_of(ctx, abs_path));
}

int kb_sysroot_open_base(const struct kb_ctx *ctx, const char *abs_path, struct kb_error *err)
{
	const char *base = base_of(ctx, abs_path);
	if (abs_path[0] != '/')
		return kb_fail(err, EINVAL, abs_path, "not an absolute path:");
	int fd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, base, "opening the root");
	return fd;
}

/* The mapped path of @abs_path, for messages. */
static const char *shown(const struct kb_ctx *ctx, const char *abs_path, struct kb_path *buf)
{
	return kb_sysroot_path(ctx, abs_path, buf, NULL) == 0 ? buf->s : abs_path;
}

int kb_sysroot_open(const struct kb_ctx *ctx, const char *abs_path, int flags, mode_t mode,
		    struct kb_error *err)
{
	int fd;
	if (in_host_root(ctx, abs_path)) {
		fd = host_openat(abs_path, flags, mode);
	} else {
		autoclose_fd root = kb_sysroot_open_base(ctx, abs_path, err);
		if (root < 0)
			return -1;
		fd = kb_sysroot_openat(root, abs_path, flags, mode);
	}
	struct kb_path p;
	if (fd < 0)
		return kb_fail(err, errno, shown(ctx, abs_path, &p), "opening");
	return fd;
}

DIR *kb_sysroot_opendir(const struct kb_ctx *ctx, const char *abs_path, struct kb_error *err)
{
	int fd = kb_sysroot_open(ctx, abs_path, O_RDONLY | O_DIRECTORY, 0, err);
	if (fd < 0)
		return NULL;
	DIR *d = fdopendir(fd);
	if (!d) {
		struct kb_path p;
		kb_fail(err, errno, shown(ctx, abs_path, &p), "listing");
		close(fd);
	}
	return d;
}

/* Split @abs_path into its directory (into @dir) and last component (into @name). */
static int split_last(const char *abs_path, char dir[PATH_MAX], char name[NAME_MAX + 1])
{
	size_t len = strlen(abs_path);
	while (len > 1 && abs_path[len - 1] == '/')
		len--;
	size_t start = len;
	while (start > 0 && abs_path[start - 1] != '/')
		start--;
	size_t n = len - start;
	if (n == 0 || n > NAME_MAX || (n == 1 && abs_path[start] == '.') ||
	    (n == 2 && !strncmp(abs_path + start, "..", 2)))
		return -1;
	memcpy(name, abs_path + start, n);
	name[n] = '\0';
	snprintf(dir, PATH_MAX, "%.*s", (int)(start > 1 ? start - 1 : 1), abs_path);
	return 0;
}

int kb_sysroot_open_parent(const struct kb_ctx *ctx, const char *abs_path, char name[NAME_MAX + 1],
			   struct kb_error *err)
{
	char dir[PATH_MAX];
	struct kb_path p;
	if (abs_path[0] != '/' || split_last(abs_path, dir, name) < 0)
		return kb_fail(err, EINVAL, shown(ctx, abs_path, &p), "not a file's path:");
	int fd;
	if (in_host_root(ctx, abs_path)) {
		fd = host_openat(dir, O_RDONLY | O_DIRECTORY, 0);
	} else {
		autoclose_fd root = kb_sysroot_open_base(ctx, abs_path, err);
		if (root < 0)
			return -1;
		fd = kb_sysroot_openat(root, dir, O_RDONLY | O_DIRECTORY, 0);
	}
	if (fd < 0)
		return kb_fail(err, errno, shown(ctx, dir, &p), "opening the directory");
	return fd;
}

int kb_sysroot_canonical(const struct kb_ctx *ctx, const char *abs_path, bool follow_last,
			 struct kb_path *out, struct kb_error *err)
{
	autoclose_fd root = kb_sysroot_open_base(ctx, abs_path, err);
	if (root < 0)
		return -1;
	struct kb_path p;
	if (canonical_at(root, abs_path, follow_last, out->s) < 0)
		return kb_fail(err, errno, shown(ctx, abs_path, &p), "resolving");
	return 0;
}

/*
 * mkdir -p of @abs_dir when @create, else only whether it could be made: each
 * existing component a directory (links followed inside the root). A link to
 * nowhere is refused by name: mkdir would find its name taken, and the write
 * below it would fail only later.
 */
static int walk_dirs(const struct kb_ctx *ctx, const char *abs_dir, bool create, struct kb_error *err)
{
	autoclose_fd root = kb_sysroot_open_base(ctx, abs_dir, err);
	if (root < 0)
		return -1;
	char prefix[PATH_MAX];
	if (snprintf(prefix, sizeof(prefix), "%s", abs_dir) >= (int)sizeof(prefix))
		return kb_fail(err, ENAMETOOLONG, abs_dir, "creating directory");
	struct kb_path p;
	for (char *end = prefix + 1;; end++) {
		if (*end != '/' && *end != '\0')
			continue;
		char saved = *end;
		*end = '\0';
		autoclose_fd fd = kb_sysroot_openat(root, prefix, O_PATH | O_DIRECTORY, 0);
		if (fd < 0 && errno == ENOTDIR)
			return kb_fail(err, 0, NULL, "%s is not a directory: nothing can be made below it", shown(ctx, prefix, &p));
		if (fd < 0 && errno != ENOENT)
			return kb_fail(err, errno, shown(ctx, prefix, &p), "creating directory");
		if (fd < 0) {
			char dir[PATH_MAX], name[NAME_MAX + 1];
			struct stat st;
			if (split_last(prefix, dir, name) < 0)
				return kb_fail(err, EINVAL, shown(ctx, prefix, &p), "creating directory");
			autoclose_fd parent = kb_sysroot_openat(root, dir, O_PATH | O_DIRECTORY, 0);
			if (parent < 0)
				return kb_fail(err, errno, shown(ctx, prefix, &p), "creating directory");
			if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
				return kb_fail(err, 0, NULL, "%s is a symbolic link to a missing directory: nothing can be made below it",
					       shown(ctx, prefix, &p));
			if (!create)
				return 0; /* missing: it and everything below it can be made */
			if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST)
				return kb_fail(err, errno, shown(ctx, prefix, &p), "creating directory");
			close(fd);
			fd = kb_sysroot_openat(root, prefix, O_PATH | O_DIRECTORY, 0); /* made, or made meanwhile: a directory? */
			if (fd < 0)
				return kb_fail(err, errno, shown(ctx, prefix, &p), "creating directory");
		}
		*end = saved;
		if (saved == '\0')
			return 0;
	}
}

int kb_sysroot_make_dirs(const struct kb_ctx *ctx, const char *abs_dir, struct kb_error *err)
{
	return walk_dirs(ctx, abs_dir, true, err);
}

int kb_sysroot_dirs_makeable(const struct kb_ctx *ctx, const char *abs_dir, struct kb_error *err)
{
	return walk_dirs(ctx, abs_dir, false, err);
}

int kb_sysroot_unlink(const struct kb_ctx *ctx, const char *abs_path, struct kb_error *err)
{
	char name[NAME_MAX + 1];
	struct kb_path p;
	autoclose_fd dir = kb_sysroot_open_parent(ctx, abs_path, name, err);
	if (dir < 0)
		return err && err->errnum == ENOENT ? 0 : -1;
	if (unlinkat(dir, name, 0) == 0)
		return 1;
	return errno == ENOENT ? 0 : kb_fail(err, errno, shown(ctx, abs_path, &p), "removing");
}

int kb_sysroot_stat(const struct kb_ctx *ctx, const char *abs_path, struct stat *st, bool nofollow,
		    struct kb_error *err)
{
	struct kb_path p;
	autoclose_fd fd = kb_sysroot_open(ctx, abs_path, O_PATH | (nofollow ? O_NOFOLLOW : 0), 0, err);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) < 0)
		return kb_fail(err, errno, shown(ctx, abs_path, &p), "examining");
	return 0;
}

ssize_t kb_sysroot_readlink(const struct kb_ctx *ctx, const char *abs_path, char *buf, size_t size,
			    struct kb_error *err)
{
	char name[NAME_MAX + 1];
	struct kb_path p;
	autoclose_fd dir = kb_sysroot_open_parent(ctx, abs_path, name, err);
	if (dir < 0)
		return -1;
	if (size < 2)
		return kb_fail(err, ENAMETOOLONG, shown(ctx, abs_path, &p), "reading the link");
	ssize_t n = readlinkat(dir, name, buf, size);
	if (n < 0)
		return kb_fail(err, errno, shown(ctx, abs_path, &p), "reading the link");
	if ((size_t)n >= size)
		return kb_fail(err, ENAMETOOLONG, shown(ctx, abs_path, &p), "reading the link");
	buf[n] = '\0';
	return n;
}

int kb_sysroot_symlink(const struct kb_ctx *ctx, const char *text, const char *abs_path, struct kb_error *err)
{
	char name[NAME_MAX + 1];
	struct kb_path p;
	autoclose_fd dir = kb_sysroot_open_parent(ctx, abs_path, name, err);
	if (dir < 0)
		return -1;
	if (symlinkat(text, dir, name) < 0)
		return kb_fail(err, errno, shown(ctx, abs_path, &p), "making the link");
	return 0;
}

FILE *kb_sysroot_fopen_read(const struct kb_ctx *ctx, const char *abs_path, struct kb_error *err)
{
	int fd = kb_sysroot_open(ctx, abs_path, O_RDONLY, 0, err);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "r");
	if (!f) {
		struct kb_path p;
		kb_fail(err, errno, shown(ctx, abs_path, &p), "opening");
		close(fd);
	}
	return f;
}

static int compare_names(const void *a, const void *b)
{
	return strcoll(*(char *const *)a, *(char *const *)b);
}

/* Match the components of @rest below the directory @dir (a path inside the root, no wildcard). */
static int glob_below(const struct kb_ctx *ctx, const char *dir, const char *rest,
		      int (*each)(void *, const char *), void *opaque, struct kb_error *err)
{
	while (*rest == '/')
		rest++;
	size_t n = strcspn(rest, "/");
	if (n == 0 || n > NAME_MAX)
		return 0;
	char part[NAME_MAX + 1];
	memcpy(part, rest, n);
	part[n] = '\0';
	const char *after = rest + n;
	bool last = strspn(after, "/") == strlen(after);
	char path[PATH_MAX];
	const char *sep = strcmp(dir, "/") ? "/" : "";
	if (!strpbrk(part, "*?[")) {
		if (snprintf(path, sizeof(path), "%s%s%s", dir, sep, part) >= (int)sizeof(path))
			return 0;
		if (!last)
			return glob_below(ctx, path, after, each, opaque, err);
		struct stat st;
		if (kb_sysroot_stat(ctx, path, &st, true, NULL) < 0)
			return 0;
		return each(opaque, path) < 0 ? -1 : 1;
	}
	autoclose_dir d = kb_sysroot_opendir(ctx, dir, NULL);
	if (!d)
		return 0;
	char **names = NULL;
	size_t count = 0, cap = 0;
	int rc = 0;
	for (struct dirent *de; (de = readdir(d));) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || fnmatch(part, de->d_name, FNM_PERIOD))
			continue;
		if (count == cap) {
			char **more = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*names));
			if (!more) {
				rc = kb_fail(err, ENOMEM, dir, "listing");
				break;
			}
			names = more;
		}
		if (!(names[count] = strdup(de->d_name))) {
			rc = kb_fail(err, ENOMEM, dir, "listing");
			break;
		}
		count++;
	}
	if (rc == 0 && count > 1)
		qsort(names, count, sizeof(*names), compare_names);
	int found = 0;
	for (size_t i = 0; i < count; i++) {
		if (rc >= 0 && snprintf(path, sizeof(path), "%s%s%s", dir, sep, names[i]) < (int)sizeof(path)) {
			int r = last ? (each(opaque, path) < 0 ? -1 : 1) : glob_below(ctx, path, after, each, opaque, err);
			if (r < 0)
				rc = -1;
			else
				found += r;
		}
		free(names[i]);
	}
	free(names);
	return rc < 0 ? -1 : found;
}

int kb_sysroot_glob(const struct kb_ctx *ctx, const char *pattern,
		    int (*each)(void *opaque, const char *abs_path), void *opaque, struct kb_error *err)
{
	if (pattern[0] != '/')
		return kb_fail(err, EINVAL, pattern, "not an absolute path:");
	return glob_below(ctx, "/", pattern, each, opaque, err);
}

int kb_sysroot_resolved_path(const struct kb_ctx *ctx, const char *abs_path, bool follow_last,
			     struct kb_path *out, struct kb_error *err)
{
	struct kb_path canon;
	if (kb_sysroot_canonical(ctx, abs_path, follow_last, &canon, err) < 0)
		return -1;
	/* Under the root @abs_path was resolved in, even when the link led to /proc or /sys. */
	return map_under(base_of(ctx, abs_path), canon.s, out, err);
}
