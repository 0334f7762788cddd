/*
 * init: PID 1 of the rescue image (make initramfs).
 *
 * Mounts /proc, /sys, /dev, /run; reads the kernel command line; loads the
 * image's storage, filesystem and network modules; finds the installed
 * system's disk with libblkid (LABEL=, UUID=, PARTUUID= or a /dev path),
 * waiting a bounded time for it to appear; mounts it on /target; runs
 * provision --target /target in this process; then continues into the
 * installed system: its /sbin/init after switching root; or powers off, or starts a
 * shell. Every failure ends in a message on the console and a shell (or a
 * power-off with the failure marker), never in a kernel panic loop.
 *
 * Kernel command line:
 *   kvmbox.target=LABEL=...|UUID=...|PARTUUID=...|/dev/...   the installed system
 *   kvmbox.config=PATH       its config, inside the target (default /etc/kvmbox/host.conf)
 *   kvmbox.action=provision|shell|poweroff   after provisioning: boot the target, shell, power off
 *   kvmbox.wait=SEC          how long to wait for the target's disk (default 30)
 *   kvmbox.debug             more output, and a shell on failure even with action=poweroff
 *   kvmbox.exitport=PORT     on power-off, write the verdict to this I/O port (QEMU's
 *                            isa-debug-exit: 0x10 success, 0x20 failure)
 */
#include <blkid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <sys/io.h>
#endif

#include "kvmbox/applet.h"
#include "kvmbox/cleanup.h"
#include "kvmbox/cmdline.h"
#include "kvmbox/file.h"
#include "kvmbox/kmod.h"

const char init_usage[] =
	"Usage: kvmbox init   (PID 1 of the rescue image; refuses to run as anything else)\n"
	"\n"
	"Mount /proc, /sys, /dev and /run, load the image's modules, find the installed\n"
	"system by kvmbox.target=LABEL=...|UUID=...|PARTUUID=...|/dev/..., mount it on\n"
	"/target, run kvmbox provision --target /target with its config\n"
	"(kvmbox.config=PATH, default /etc/kvmbox/host.conf), then per kvmbox.action=\n"
	"provision (boot the installed system), shell or poweroff. kvmbox.wait=SEC bounds\n"
	"the wait for the disk (default 30); kvmbox.debug; kvmbox.exitport=PORT writes the\n"
	"verdict to an I/O port on power-off (QEMU isa-debug-exit).\n";

#define TARGET "/target"
#define MODULE_LIST "/etc/kvmbox/initramfs-modules"
#define DEFAULT_CONFIG "/etc/kvmbox/host.conf"

struct init {
	struct kb_ctx *ctx;
	char target_spec[256], config[256], action[32];
	int wait_seconds;
	bool debug;
	unsigned exit_port;
	char device[PATH_MAX];
};

/* A line on the console and in the kernel log. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	struct timespec up;
	clock_gettime(CLOCK_BOOTTIME, &up);
	fprintf(stdout, "kvmbox-init: [%5lld.%02ld] %s\n", (long long)up.tv_sec, up.tv_nsec / 10000000, line);
	fflush(stdout);
	int kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (kmsg >= 0) {
		dprintf(kmsg, "<6>kvmbox-init: %s\n", line);
		close(kmsg);
	}
}

static int mount_basics(void)
{
	static const struct {
		const char *source, *target, *type;
		unsigned long flags;
	} mounts[] = {
		{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC },
		{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC },
		{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID },
		{ "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV },
	};
	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
		mkdir(mounts[i].target, 0755);
		if (mount(mounts[i].source, mounts[i].target, mounts[i].type, mounts[i].flags, NULL) < 0 && errno != EBUSY) {
			say("mounting %s on %s: %s", mounts[i].type, mounts[i].target, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void read_cmdline(struct init *in)
{
	autofree char *text = NULL;
	size_t len = 0;
	kb_read_path("/proc/cmdline", 1 << 16, &text, &len, NULL);
	char value[256];
	bool bare;
	snprintf(in->config, sizeof(in->config), "%s", DEFAULT_CONFIG);
	snprintf(in->action, sizeof(in->action), "provision");
	in->wait_seconds = 30;
	if (!text)
		return;
	if (kb_cmdline_get(text, len, "kvmbox.target", value, sizeof(value), &bare) && !bare)
		snprintf(in->target_spec, sizeof(in->target_spec), "%s", value);
	if (kb_cmdline_get(text, len, "kvmbox.config", value, sizeof(value), &bare) && !bare && value[0] == '/')
		snprintf(in->config, sizeof(in->config), "%s", value);
	if (kb_cmdline_get(text, len, "kvmbox.action", value, sizeof(value), &bare) && !bare)
		snprintf(in->action, sizeof(in->action), "%.*s", (int)sizeof(in->action) - 1, value);
	if (kb_cmdline_get(text, len, "kvmbox.wait", value, sizeof(value), &bare) && !bare)
		in->wait_seconds = atoi(value) > 0 ? atoi(value) : 30;
	if (kb_cmdline_get(text, len, "kvmbox.exitport", value, sizeof(value), &bare) && !bare)
		in->exit_port = (unsigned)strtoul(value, NULL, 0);
	in->debug = kb_cmdline_get(text, len, "kvmbox.debug", value, sizeof(value), &bare);
}

/* The image's modules (storage, filesystems, bridge, dummy): MODULE_LIST, one per line. */
static void load_modules(struct init *in)
{
	autofree char *list = NULL;
	size_t len;
	if (kb_read_path(MODULE_LIST, 1 << 16, &list, &len, NULL) < 0)
		return;
	struct kb_kmod kmod;
	struct kb_error err = { 0 };
	if (kb_kmod_load(&kmod, &err) < 0) {
		say("cannot load modules: %s", err.what);
		return;
	}
	struct kmod_ctx *kctx = kmod.new(NULL, NULL);
	if (!kctx)
		return;
	unsigned loaded = 0, failed = 0;
	for (char *save = NULL, *name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
		if (!*name || *name == '#')
			continue;
		if (kb_kmod_probe(&kmod, kctx, name, &err) < 0) {
			char message[sizeof(err.what) + 64];
			say("%s", kb_error_message(&err, message, sizeof(message)));
			failed++;
		} else {
			loaded++;
		}
	}
	kmod.unref(kctx);
	if (in->debug || failed)
		say("modules: %u loaded, %u failed", loaded, failed);
}

/* The target's device, by tag or path, polled until it appears or the wait is over. */
static int find_target(struct init *in)
{
	if (!in->target_spec[0]) {
		say("no kvmbox.target= on the kernel command line: nothing to provision");
		return -1;
	}
	struct timespec step = { 0, 250 * 1000 * 1000 };
	for (int i = 0; i <= in->wait_seconds * 4; i++) {
		char *dev = NULL;
		if (in->target_spec[0] == '/') {
			struct stat st;
			dev = stat(in->target_spec, &st) == 0 ? strdup(in->target_spec) : NULL;
		} else {
			dev = blkid_evaluate_tag(in->target_spec, NULL, NULL);
		}
		if (dev) {
			snprintf(in->device, sizeof(in->device), "%s", dev);
			free(dev);
			say("target %s is %s", in->target_spec, in->device);
			return 0;
		}
		nanosleep(&step, NULL);
	}
	say("target %s did not appear within %d s (kvmbox.wait=SEC waits longer)", in->target_spec, in->wait_seconds);
	return -1;
}

static int mount_target(struct init *in)
{
	mkdir(TARGET, 0755);
	char *type = blkid_get_tag_value(NULL, "TYPE", in->device);
	int rc = mount(in->device, TARGET, type ? type : "ext4", 0, NULL);
	if (rc < 0)
		say("mounting %s (%s) on %s: %s", in->device, type ? type : "no filesystem found", TARGET, strerror(errno));
	free(type);
	return rc;
}

static int provision(struct init *in)
{
	say("provisioning %s with %s", in->device, in->config);
	struct kb_ctx ctx = *in->ctx;
	ctx.target = TARGET;
	char *argv[] = { "provision", "--in-target", in->config, in->debug ? "-v" : NULL, NULL };
	int rc = kb_applet_run(&ctx, "provision", in->debug ? 4 : 3, argv);
	fflush(stdout);
	if (rc == KB_EXIT_OK)
		say("provisioned");
	else
		say("provisioning failed (exit %d)", rc);
	return rc;
}

static void write_verdict(const struct init *in, bool ok)
{
#if defined(__x86_64__) || defined(__i386__)
	if (!in->exit_port || in->exit_port >= 0x10000)
		return;
	if (ioperm(in->exit_port, 1, 1) < 0) {
		say("writing the verdict to port 0x%x: %s", in->exit_port, strerror(errno));
		return;
	}
	outb(ok ? 0x10 : 0x20, (unsigned short)in->exit_port);
#else
	(void)in, (void)ok;
#endif
}

static void power_off(const struct init *in, bool ok)
{
	umount(TARGET);
	sync();
	say("powering off (%s)", ok ? "success" : "FAILURE");
	write_verdict(in, ok);
	reboot(RB_POWER_OFF);
}

static void shell(void)
{
	say("starting a shell; every kvmbox applet is at hand (kvmbox --list)");
	char *argv[] = { "/bin/sh", NULL };
	execv(argv[0], argv);
	say("no shell: %s", strerror(errno));
}

/* Move the live mounts into the target, make it the root and run its init. */
static void switch_root(void)
{
	static const char *const moved[] = { "/proc", "/sys", "/dev", "/run" };
	for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
		char to[64];
		snprintf(to, sizeof(to), TARGET "%s", moved[i]);
		if (mount(moved[i], to, NULL, MS_MOVE, NULL) < 0)
			umount2(moved[i], MNT_DETACH);
	}
	if (chdir(TARGET) < 0 || mount(TARGET, "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0) {
		say("switching to the installed system: %s", strerror(errno));
		return;
	}
	say("continuing into the installed system");
	char *argv[] = { "/sbin/init", NULL };
	execv(argv[0], argv);
	say("executing the installed system's /sbin/init: %s", strerror(errno));
}

int init_main(struct kb_ctx *ctx, int argc, char **argv)
{
	int opt, rc;
	static const struct option long_options[] = { KB_GLOBAL_LONG_OPTIONS, { 0 } };
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1)
		if ((rc = kb_common_option(ctx, opt, optarg)) != -1)
			return rc;
	if (getpid() != 1) {
		kb_say_error(ctx, "runs only as PID 1 of the rescue image (it mounts, provisions and switches root)");
		return KB_EXIT_USAGE;
	}
	struct init in = { .ctx = ctx };
	ctx->color = false; /* a serial console and the kernel log, not a terminal to decorate */
	setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
	bool ok = mount_basics() == 0;
	read_cmdline(&in);
	say("kvmbox " KVMBOX_VERSION " rescue image: target %s, action %s", in.target_spec[0] ? in.target_spec : "(none)",
	    in.action);
	if (ok)
		load_modules(&in);
	ok = ok && find_target(&in) == 0 && mount_target(&in) == 0 && provision(&in) == KB_EXIT_OK;
	if (!strcmp(in.action, "poweroff") && (ok || !in.debug))
		power_off(&in, ok);
	else if (ok && !strcmp(in.action, "provision"))
		switch_root();
	shell();
	/* PID 1 must not exit: the kernel would panic. */
	for (;;)
		pause();
}
