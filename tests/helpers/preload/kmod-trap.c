/*
 * LD_PRELOAD shim for the kvm-load tests, after kmod's own testsuite: the
 * calls that reach the kernel's module loader are trapped, recorded, and
 * played against a fixture root as a small model of the kernel.
 *
 *   KVMBOX_TRAP_ROOT  the fixture root: libkmod's reads of /sys/module and
 *                     /proc/modules go there, and a load creates
 *                     ROOT/sys/module/NAME (initstate, refcnt, parameters/)
 *   KVMBOX_TRAP_LOG   each call appended as "finit_module NAME PARAMS",
 *                     "init_module NAME PARAMS" or "delete_module NAME"
 *   KVMBOX_TRAP_FAIL  "NAME:ERRNO[,NAME:ERRNO]": fail loading (or unloading)
 *                     NAME with that errno number
 *   KVMBOX_TRAP_DROP_PARAMS  when set, loads succeed but parameters are not
 *                     applied: a kernel that ignores what it was asked
 * Loading a module that is already there fails with EEXIST, unloading one
 * whose refcnt is not 0 with EBUSY, as the kernel does.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *trap_root(void)
{
	const char *root = getenv("KVMBOX_TRAP_ROOT");
	return root && *root ? root : NULL;
}

/* libkmod's view of the running kernel, redirected into the fixture root. */
static const char *redirect(const char *path, char *buf, size_t size)
{
	const char *root = trap_root();
	if (!root || !path)
		return path;
	if (strncmp(path, "/sys/module", 11) == 0 || strcmp(path, "/proc/modules") == 0) {
		snprintf(buf, size, "%s%s", root, path);
		return buf;
	}
	return path;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

int open(const char *path, int flags, ...)
{
	char buf[4096];
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return REAL(open)(redirect(path, buf, sizeof(buf)), flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	char buf[4096];
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return REAL(openat)(dirfd, redirect(path, buf, sizeof(buf)), flags, mode);
}

FILE *fopen(const char *path, const char *mode)
{
	char buf[4096];
	return REAL(fopen)(redirect(path, buf, sizeof(buf)), mode);
}

int stat(const char *path, struct stat *st)
{
	char buf[4096];
	return REAL(stat)(redirect(path, buf, sizeof(buf)), st);
}

DIR *opendir(const char *path)
{
	char buf[4096];
	return REAL(opendir)(redirect(path, buf, sizeof(buf)));
}

static void record(const char *call, const char *name, const char *params)
{
	const char *log = getenv("KVMBOX_TRAP_LOG");
	if (!log)
		return;
	FILE *f = REAL(fopen)(log, "a");
	if (!f)
		return;
	fprintf(f, "%s %s%s%s\n", call, name, params && *params ? " " : "", params ? params : "");
	fclose(f);
}

/* The errno KVMBOX_TRAP_FAIL asks for @name, or 0. */
static int planned_failure(const char *name)
{
	const char *plan = getenv("KVMBOX_TRAP_FAIL");
	size_t n = strlen(name);
	for (const char *p = plan; p && *p;) {
		if (strncmp(p, name, n) == 0 && p[n] == ':')
			return atoi(p + n + 1);
		p = strchr(p, ',');
		p = p ? p + 1 : NULL;
	}
	return 0;
}

static void write_file(const char *path, const char *value)
{
	FILE *f = REAL(fopen)(path, "w");
	if (f) {
		fprintf(f, "%s\n", value);
		fclose(f);
	}
}

/* The kernel's side of a successful load: /sys/module/NAME and its parameters. */
static int model_load(const char *name, const char *params)
{
	const char *root = trap_root();
	if (!root)
		return 0;
	char dir[4096], path[4200];
	snprintf(dir, sizeof(dir), "%s/sys/module/%s", root, name);
	snprintf(path, sizeof(path), "%s/initstate", dir);
	if (access(path, F_OK) == 0)
		return EEXIST;
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/holders", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/parameters", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/refcnt", dir);
	write_file(path, "0");
	/* nested off by default, as on the kernels and distributions that ship it so. */
	if (!strcmp(name, "kvm_intel") || !strcmp(name, "kvm_amd")) {
		snprintf(path, sizeof(path), "%s/parameters/nested", dir);
		write_file(path, !strcmp(name, "kvm_intel") ? "N" : "0");
		/* The vendor module registers the misc device /dev/kvm. */
		char misc[4096];
		snprintf(misc, sizeof(misc), "%s/sys/class", root);
		mkdir(misc, 0755);
		snprintf(misc, sizeof(misc), "%s/sys/class/misc", root);
		mkdir(misc, 0755);
		snprintf(misc, sizeof(misc), "%s/sys/class/misc/kvm", root);
		mkdir(misc, 0755);
		snprintf(path, sizeof(path), "%s/dev", misc);
		write_file(path, "10:232");
	}
	char copy[1024];
	snprintf(copy, sizeof(copy), "%s", params && !getenv("KVMBOX_TRAP_DROP_PARAMS") ? params : "");
	for (char *save, *p = strtok_r(copy, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(p, '=');
		if (!eq)
			continue;
		*eq = '\0';
		const char *value = eq + 1;
		/* A bool parameter reads back as Y/N, as in the kernel. */
		if (!strcmp(name, "kvm_intel") && !strcmp(p, "nested"))
			value = (!strcmp(value, "1") || !strcmp(value, "Y") || !strcmp(value, "y")) ? "Y" : "N";
		snprintf(path, sizeof(path), "%s/parameters/%s", dir, p);
		write_file(path, value);
	}
	snprintf(path, sizeof(path), "%s/initstate", dir);
	write_file(path, "live");
	return 0;
}

static void remove_tree(const char *path)
{
	DIR *d = REAL(opendir)(path);
	if (!d) {
		unlink(path);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char sub[4096];
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		remove_tree(sub);
	}
	closedir(d);
	rmdir(path);
}

/* "kvm-intel.ko" -> "kvm_intel" */
static void name_from_path(const char *path, char *name, size_t size)
{
	const char *base = strrchr(path, '/');
	snprintf(name, size, "%s", base ? base + 1 : path);
	char *dot = strstr(name, ".ko");
	if (dot)
		*dot = '\0';
	for (char *c = name; *c; c++)
		if (*c == '-')
			*c = '_';
}

static int trapped_load(const char *call, const char *name, const char *params)
{
	record(call, name, params);
	int e = planned_failure(name);
	if (!e)
		e = model_load(name, params);
	if (e) {
		errno = e;
		return -1;
	}
	return 0;
}

int init_module(void *image, unsigned long len, const char *params)
{
	/* The name is in the module's .modinfo as "name=...". */
	char name[64] = "unknown";
	const char *p = memmem(image, len, "\0name=", 6);
	if (p)
		snprintf(name, sizeof(name), "%.*s", (int)strnlen(p + 6, len - (size_t)(p + 6 - (char *)image)), p + 6);
	return trapped_load("init_module", name, params);
}

int delete_module(const char *name, unsigned flags)
{
	(void)flags;
	record("delete_module", name, NULL);
	int e = planned_failure(name);
	const char *root = trap_root();
	char dir[4096], path[4200];
	snprintf(dir, sizeof(dir), "%s/sys/module/%s", root ? root : "", name);
	snprintf(path, sizeof(path), "%s/initstate", dir);
	if (!e && root && access(path, F_OK) != 0)
		e = ENOENT;
	if (!e && root) {
		snprintf(path, sizeof(path), "%s/refcnt", dir);
		FILE *f = REAL(fopen)(path, "r");
		int refcnt = 0;
		if (f) {
			if (fscanf(f, "%d", &refcnt) != 1)
				refcnt = 0;
			fclose(f);
		}
		if (refcnt > 0)
			e = EBUSY;
	}
	if (e) {
		errno = e;
		return -1;
	}
	if (root)
		remove_tree(dir);
	return 0;
}

long syscall(long number, ...)
{
	va_list ap;
	va_start(ap, number);
	long a[6];
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (number == SYS_finit_module) {
		char link[64], path[4096] = "", name[256];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", (int)a[0]);
		ssize_t n = readlink(link, path, sizeof(path) - 1);
		path[n > 0 ? n : 0] = '\0';
		name_from_path(path, name, sizeof(name));
		return trapped_load("finit_module", name, (const char *)a[1]);
	}
	if (number == SYS_init_module)
		return init_module((void *)a[0], (unsigned long)a[1], (const char *)a[2]);
	if (number == SYS_delete_module)
		return delete_module((const char *)a[0], (unsigned)a[1]);
	return REAL(syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
