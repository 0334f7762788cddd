/* Sysroot mapping, file reading and atomic replacement, on a real temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/sysroot.h"

struct fixture {
	char root[64];
	struct kb_ctx ctx;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/kvmbox-unit.XXXXXX");
	if (!mkdtemp(f->root))
		return -1;
	kb_ctx_init(&f->ctx);
	f->ctx.root = f->root;
	char etc[96];
	snprintf(etc, sizeof(etc), "%s/etc", f->root);
	mkdir(etc, 0755);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(kb_remove_tree(f->root, NULL), 0);
	free(f);
	return 0;
}

/* Names in DIR other than . and .., joined by spaces, sorted. */
static void list_dir(const char *dir, char *out, size_t size)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
			strncat(out, out[0] ? " " : "", size - strlen(out) - 1);
			strncat(out, names[i]->d_name, size - strlen(out) - 1);
		}
		free(names[i]);
	}
	free(names);
}

static void sysroot_maps_live_and_persistent_paths(void **state)
{
	(void)state;
	struct kb_ctx ctx;
	kb_ctx_init(&ctx);
	struct kb_path p;
	struct kb_error err;
	ctx.root = "/";
	assert_int_equal(kb_sysroot_path(&ctx, "/proc/cpuinfo", &p, &err), 0);
	assert_string_equal(p.s, "/proc/cpuinfo");
	assert_true(kb_sysroot_is_host(&ctx));

	ctx.root = "/fixture/";
	assert_int_equal(kb_sysroot_path(&ctx, "/etc/default/grub", &p, &err), 0);
	assert_string_equal(p.s, "/fixture/etc/default/grub");
	assert_false(kb_sysroot_is_host(&ctx));

	/* With a target, persistent files go there; /proc, /sys, /dev, /run stay live. */
	ctx.target = "/mnt/target";
	assert_int_equal(kb_sysroot_path(&ctx, "/etc/modprobe.d/kvm.conf", &p, &err), 0);
	assert_string_equal(p.s, "/mnt/target/etc/modprobe.d/kvm.conf");
	assert_int_equal(kb_sysroot_path(&ctx, "/sys/module/kvm", &p, &err), 0);
	assert_string_equal(p.s, "/fixture/sys/module/kvm");
	assert_int_equal(kb_sysroot_path(&ctx, "/dev", &p, &err), 0);
	assert_string_equal(p.s, "/fixture/dev");
	/* "/devices" is not "/dev". */
	assert_int_equal(kb_sysroot_path(&ctx, "/devices", &p, &err), 0);
	assert_string_equal(p.s, "/mnt/target/devices");

	assert_int_equal(kb_sysroot_path(&ctx, "relative/path", &p, &err), -1);
	assert_int_equal(err.errnum, EINVAL);
	char longpath[PATH_MAX + 10];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(kb_sysroot_path(&ctx, longpath, &p, &err), -1);
	assert_int_equal(err.errnum, ENAMETOOLONG);
}

/* A run's read cache answers each path from its first read: the file is read once, a missing one too. */
static void read_cache_reads_once(void **state)
{
	struct fixture *f = *state;
	struct kb_error err = { 0 };
	struct kb_read_cache cache = { 0 };
	const char *meminfo = "MemTotal:       65843220 kB\nHugepagesize:       2048 kB\n";
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/online", "0-7\n", 4, NULL, &err), 0);
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/meminfo", meminfo, strlen(meminfo), NULL, &err), 0);
	char value[16];
	assert_int_equal(kb_read_value_cached(&f->ctx, &cache, "/etc/online", value, sizeof(value), &err), 0);
	assert_string_equal(value, "0-7");
	assert_int_equal(kb_meminfo_kib_cached(&f->ctx, &cache, "/etc/meminfo", "MemTotal:"), 65843220);
	assert_int_equal(kb_meminfo_kib_cached(&f->ctx, &cache, "/etc/meminfo", "Hugepagesize:"), 2048);
	assert_int_equal(kb_read_value_cached(&f->ctx, &cache, "/etc/absent", value, sizeof(value), &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	assert_int_equal(cache.count, 4);

	/* Changed and created behind the cache: the first answers stand, and nothing more is read. */
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/online", "0-3\n", 4, NULL, &err), 0);
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/absent", "1\n", 2, NULL, &err), 0);
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/meminfo", "MemTotal: 1 kB\n", 15, NULL, &err), 0);
	assert_int_equal(kb_read_value_cached(&f->ctx, &cache, "/etc/online", value, sizeof(value), &err), 0);
	assert_string_equal(value, "0-7");
	assert_int_equal(kb_meminfo_kib_cached(&f->ctx, &cache, "/etc/meminfo", "MemTotal:"), 65843220);
	errno = 0;
	assert_int_equal(kb_read_value_cached(&f->ctx, &cache, "/etc/absent", value, sizeof(value), NULL), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(cache.count, 4);
	/* A buffer too small for the value: refused, as kb_read_value() refuses it. */
	assert_int_equal(kb_read_value_cached(&f->ctx, &cache, "/etc/online", value, 3, &err), -1);
	assert_int_equal(err.errnum, EOVERFLOW);
	/* No cache: read every time. */
	assert_int_equal(kb_read_value_cached(&f->ctx, NULL, "/etc/online", value, sizeof(value), &err), 0);
	assert_string_equal(value, "0-3");
}

static void read_file_and_value(void **state)
{
	struct fixture *f = *state;
	struct kb_error err;
	const char *text = "  Y \n";
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/nested", text, strlen(text), NULL, &err), 0);
	char value[8];
	assert_int_equal(kb_read_value(&f->ctx, "/etc/nested", value, sizeof(value), &err), 0);
	assert_string_equal(value, "Y");
	/* Too long for the buffer: refused, not truncated. */
	assert_int_equal(kb_read_value(&f->ctx, "/etc/nested", value, 3, &err), -1);
	assert_int_equal(err.errnum, EOVERFLOW);

	char *data;
	size_t len;
	assert_int_equal(kb_read_file(&f->ctx, "/etc/nested", 100, &data, &len, &err), 0);
	assert_int_equal(len, strlen(text));
	assert_string_equal(data, text);
	free(data);
	assert_int_equal(kb_read_file(&f->ctx, "/etc/nested", 2, &data, &len, &err), -1);
	assert_int_equal(err.errnum, EFBIG);

	/* A missing file: the error names the mapped path and errno. */
	assert_int_equal(kb_read_file(&f->ctx, "/etc/missing", 100, &data, &len, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	char msg[600], want[600];
	snprintf(want, sizeof(want), "opening %s/etc/missing: No such file or directory", f->root);
	assert_string_equal(kb_error_message(&err, msg, sizeof(msg)), want);

	/* A /proc file reports size 0 but has content. */
	struct kb_ctx host;
	kb_ctx_init(&host);
	host.root = "/";
	assert_int_equal(kb_read_file(&host, "/proc/self/status", 1 << 20, &data, &len, &err), 0);
	assert_true(len > 0);
	assert_non_null(strstr(data, "Name:"));
	free(data);
}

static void atomic_write_keeps_mode_and_backup(void **state)
{
	struct fixture *f = *state;
	struct kb_error err;
	char path[128], dir[128], names[256];
	snprintf(path, sizeof(path), "%s/etc/grub", f->root);
	snprintf(dir, sizeof(dir), "%s/etc", f->root);

	struct kb_write_options opts = { .mode = 0600, .backup_suffix = ".kvmbox-bak" };
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/grub", "one\n", 4, &opts, &err), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	list_dir(dir, names, sizeof(names));
	assert_string_equal(names, "grub"); /* no backup of a file that did not exist, no temp left */

	/* An existing file keeps its own mode; the old content becomes the backup. */
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/grub", "two\n", 4, &opts, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	list_dir(dir, names, sizeof(names));
	assert_string_equal(names, "grub grub.kvmbox-bak");
	char *data;
	size_t len;
	assert_int_equal(kb_read_file(&f->ctx, "/etc/grub", 100, &data, &len, &err), 0);
	assert_string_equal(data, "two\n");
	free(data);
	assert_int_equal(kb_read_file(&f->ctx, "/etc/grub.kvmbox-bak", 100, &data, &len, &err), 0);
	assert_string_equal(data, "one\n");
	free(data);
}

static void atomic_write_failure_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	struct kb_error err;
	char dir[128], names[256];
	snprintf(dir, sizeof(dir), "%s/etc", f->root);
	/* The directory does not exist. */
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/nodir/file", "x", 1, NULL, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	/* The path is a directory, not a file: refused, the directory untouched. */
	char sub[160];
	snprintf(sub, sizeof(sub), "%s/etc/sub", f->root);
	mkdir(sub, 0755);
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/sub", "x", 1, NULL, &err), -1);
	assert_int_equal(err.errnum, EINVAL);
	list_dir(dir, names, sizeof(names));
	assert_string_equal(names, "sub");
}

/* A FIFO where a file is read is refused at once, never waited on; no_follow refuses a link, its target untouched. */
static void hostile_paths_refused(void **state)
{
	struct fixture *f = *state;
	struct kb_error err;
	char path[160], victim[160], *data;
	size_t len;
	snprintf(path, sizeof(path), "%s/etc/fifo.json", f->root);
	assert_int_equal(mkfifo(path, 0644), 0);
	assert_int_equal(kb_read_file(&f->ctx, "/etc/fifo.json", 100, &data, &len, &err), -1);
	assert_int_equal(err.errnum, EINVAL);

	snprintf(victim, sizeof(victim), "%s/etc/victim", f->root);
	snprintf(path, sizeof(path), "%s/etc/seed.iso", f->root);
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/victim", "precious", 8, NULL, &err), 0);
	assert_int_equal(symlink("victim", path), 0);
	struct kb_write_options opts = { .mode = 0600, .no_follow = true };
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/seed.iso", "seed", 4, &opts, &err), -1);
	assert_int_equal(err.errnum, ELOOP);
	assert_int_equal(kb_read_file(&f->ctx, "/etc/victim", 100, &data, &len, &err), 0);
	assert_string_equal(data, "precious");
	free(data);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
}

/*
 * On the running system's own root a path is opened in one call, not through
 * an fd of "/": it still refuses magic links (/proc/self/root, /proc/self/fd/N)
 * as resolving in a root does, for open, stat and a file's directory alike.
 */
static void host_root_refuses_magic_links(void **state)
{
	struct fixture *f = *state;
	struct kb_ctx host = f->ctx;
	host.root = "/";
	struct kb_error err;
	char path[200], name[NAME_MAX + 1];
	snprintf(path, sizeof(path), "/proc/self/root%s/etc", f->root);
	struct stat st;
	assert_int_equal(kb_sysroot_stat(&host, path, &st, false, &err), -1);
	assert_true(err.errnum == EXDEV || err.errnum == ELOOP); /* resolving in a root says EXDEV */
	assert_int_equal(kb_sysroot_open(&host, path, O_RDONLY | O_DIRECTORY, 0, &err), -1);
	assert_true(err.errnum == EXDEV || err.errnum == ELOOP); /* resolving in a root says EXDEV */
	snprintf(path, sizeof(path), "/proc/self/root%s/etc/x", f->root);
	assert_int_equal(kb_sysroot_open_parent(&host, path, name, &err), -1);
	assert_true(err.errnum == EXDEV || err.errnum == ELOOP); /* resolving in a root says EXDEV */
	/* The same directory by its own name opens. */
	snprintf(path, sizeof(path), "%s/etc", f->root);
	int fd = kb_sysroot_open(&host, path, O_RDONLY | O_DIRECTORY, 0, &err);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(kb_sysroot_stat(&host, path, &st, false, &err), 0);
	assert_true(S_ISDIR(st.st_mode));
}

/* Read @fd whole into @buf (a short file), for the resolver tests. */
static void read_fd_text(int fd, char *buf, size_t size)
{
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, size - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	close(fd);
}

/*
 * Links out of the root, at an intermediate component and at the last one,
 * absolute and climbing: both ways of opening resolve them as the root sees
 * them (as under chroot), never reaching the file outside.
 */
static void resolver_stays_in_root(void **state)
{
	struct fixture *f = *state;
	char outside[64] = "/tmp/kvmbox-unit-out.XXXXXX", path[512], link[512], text[64];
	assert_non_null(mkdtemp(outside));
	snprintf(path, sizeof(path), "%s/secret", outside);
	FILE *out = fopen(path, "w");
	fputs("outside\n", out);
	fclose(out);
	snprintf(link, sizeof(link), "%s/etc/abs", f->root);
	assert_int_equal(symlink(outside, link), 0);
	snprintf(link, sizeof(link), "%s/etc/climb", f->root);
	snprintf(path, sizeof(path), "../../../../../../../..%s", outside);
	assert_int_equal(symlink(path, link), 0);
	snprintf(link, sizeof(link), "%s/etc/secret-link", f->root);
	snprintf(path, sizeof(path), "../../../../../../../..%s/secret", outside);
	assert_int_equal(symlink(path, link), 0);
	snprintf(link, sizeof(link), "%s/etc/loop", f->root);
	assert_int_equal(symlink("loop", link), 0);

	int root = open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(root >= 0);
	int (*const open_in[])(int, const char *, int, mode_t) = { kb_sysroot_openat, kb_sysroot_walk_openat };
	for (size_t i = 0; i < 2; i++) {
		const char *escapes[] = { "/etc/abs/secret", "/etc/climb/secret", "/etc/secret-link" };
		for (size_t j = 0; j < 3; j++) {
			errno = 0;
			assert_int_equal(open_in[i](root, escapes[j], O_RDONLY, 0), -1);
			assert_int_equal(errno, ENOENT);
		}
		errno = 0;
		assert_int_equal(open_in[i](root, "/etc/loop", O_RDONLY, 0), -1);
		assert_int_equal(errno, ELOOP);
		/* O_NOFOLLOW: the link itself, never its target. */
		int fd = open_in[i](root, "/etc/abs", O_PATH | O_NOFOLLOW, 0);
		struct stat st;
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_true(S_ISLNK(st.st_mode));
		close(fd);
	}
	/* The root's own copy of that path is what the links name. */
	snprintf(path, sizeof(path), "%s/tmp", f->root);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s%s", f->root, outside);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s%s/secret", f->root, outside);
	out = fopen(path, "w");
	fputs("inside\n", out);
	fclose(out);
	for (size_t i = 0; i < 2; i++) {
		read_fd_text(open_in[i](root, "/etc/climb/secret", O_RDONLY, 0), text, sizeof(text));
		assert_string_equal(text, "inside\n");
		/* ".." after a link is the link target's parent, and stops at the root. */
		snprintf(path, sizeof(path), "/etc/abs/../../../..%s/secret", outside);
		read_fd_text(open_in[i](root, path, O_RDONLY, 0), text, sizeof(text));
		assert_string_equal(text, "inside\n");
		read_fd_text(open_in[i](root, "/etc/secret-link", O_RDONLY, 0), text, sizeof(text));
		assert_string_equal(text, "inside\n");
	}
	close(root);

	struct kb_path canon;
	struct kb_error err;
	assert_int_equal(kb_sysroot_canonical(&f->ctx, "/etc/climb/secret", true, &canon, &err), 0);
	snprintf(path, sizeof(path), "%s/secret", outside);
	assert_string_equal(canon.s, path);
	assert_int_equal(kb_sysroot_canonical(&f->ctx, "/etc/abs/new/x", true, &canon, &err), 0);
	snprintf(path, sizeof(path), "%s/new/x", outside);
	assert_string_equal(canon.s, path);

	/* Writes, backups and new directories land inside the root; the outside keeps one file. */
	struct kb_write_options opts = { .backup_suffix = ".bak", .create_dirs = true };
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/abs/secret", "new\n", 4, &opts, &err), 0);
	assert_int_equal(kb_write_file_atomic(&f->ctx, "/etc/climb/made/deep", "x", 1, &opts, &err), 0);
	char names[256];
	list_dir(outside, names, sizeof(names));
	assert_string_equal(names, "secret");
	snprintf(path, sizeof(path), "%s%s", f->root, outside);
	list_dir(path, names, sizeof(names));
	assert_string_equal(names, "made secret secret.bak");
	snprintf(path, sizeof(path), "%s/secret", outside);
	int fd = open(path, O_RDONLY);
	read_fd_text(fd, text, sizeof(text));
	assert_string_equal(text, "outside\n");

	char name[NAME_MAX + 1];
	fd = kb_sysroot_open_parent(&f->ctx, "/etc/abs/secret", name, &err);
	assert_true(fd >= 0);
	assert_string_equal(name, "secret");
	struct stat st;
	assert_int_equal(fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(st.st_size, 4);
	close(fd);
	assert_int_equal(kb_remove_tree(outside, NULL), 0);
}

static void json_strings_are_escaped(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	kb_json_string(out, "a\"b\\c\nd\t\x01 é");
	fclose(out);
	assert_string_equal(buf, "\"a\\\"b\\\\c\\nd\\t\\u0001 é\"");
	free(buf);
}

/* A message naming two long paths (a disk and the domain file that writes it) arrives whole. */
static void error_keeps_two_long_paths(void **state)
{
	(void)state;
	char disk[301], other[301];
	memset(disk, 'd', sizeof(disk) - 1);
	memset(other, 'o', sizeof(other) - 1);
	disk[300] = other[300] = '\0';
	struct kb_error err;
	assert_int_equal(kb_fail(&err, 0, "/etc/kvmbox/host.conf", "disk /var/%s is written by /srv/%s:", disk, other), -1);
	char msg[KB_ERROR_WHAT_MAX + PATH_MAX + 64], want[sizeof(msg)];
	snprintf(want, sizeof(want), "disk /var/%s is written by /srv/%s: /etc/kvmbox/host.conf", disk, other);
	assert_string_equal(kb_error_message(&err, msg, sizeof(msg)), want);
}

/*
 * kb_socket_transfer: everything across, more than a socket buffer holds;
 * a silent peer ends the wait at the deadline (one deadline, not one per
 * partial send); a peer gone is EPIPE, never SIGPIPE.
 */
static void socket_transfer_by_a_deadline(void **state)
{
	(void)state;
	int pair[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	char small[100] = "verdict", got[100] = { 0 };
	assert_int_equal(kb_socket_transfer(pair[0], small, sizeof(small), true, kb_deadline_after(1000)), 0);
	assert_int_equal(kb_socket_transfer(pair[1], got, sizeof(got), false, kb_deadline_after(1000)), 0);
	assert_string_equal(got, "verdict");

	/* Nobody reads: 8 MiB does not fit; the send gives up at its deadline. */
	size_t big_len = 8u << 20;
	char *big = calloc(1, big_len);
	assert_non_null(big);
	int64_t start = kb_deadline_after(0);
	assert_int_equal(kb_socket_transfer(pair[0], big, big_len, true, kb_deadline_after(300)), -1);
	assert_int_equal(errno, ETIMEDOUT);
	int64_t took = kb_deadline_after(0) - start;
	assert_true(took >= 290 && took < 2000);

	/* Nothing to read: the same. */
	start = kb_deadline_after(0);
	assert_int_equal(kb_socket_transfer(pair[0], got, sizeof(got), false, kb_deadline_after(200)), -1);
	assert_int_equal(errno, ETIMEDOUT);
	took = kb_deadline_after(0) - start;
	assert_true(took >= 190 && took < 2000);

	/* The peer ends: EPIPE both ways, no SIGPIPE (it would end this test). */
	close(pair[1]);
	assert_int_equal(kb_socket_transfer(pair[0], small, sizeof(small), true, kb_deadline_after(1000)), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(kb_socket_transfer(pair[0], got, sizeof(got), false, kb_deadline_after(1000)), -1);
	assert_int_equal(errno, EPIPE);
	close(pair[0]);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sysroot_maps_live_and_persistent_paths),
		cmocka_unit_test_setup_teardown(read_file_and_value, setup, teardown),
		cmocka_unit_test_setup_teardown(read_cache_reads_once, setup, teardown),
		cmocka_unit_test_setup_teardown(atomic_write_keeps_mode_and_backup, setup, teardown),
		cmocka_unit_test_setup_teardown(atomic_write_failure_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(resolver_stays_in_root, setup, teardown),
		cmocka_unit_test_setup_teardown(hostile_paths_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(host_root_refuses_magic_links, setup, teardown),
		cmocka_unit_test(json_strings_are_escaped),
		cmocka_unit_test(socket_transfer_by_a_deadline),
		cmocka_unit_test(error_keeps_two_long_paths),
	};
	return cmocka_run_group_tests_name("file", tests, NULL, NULL);
}
