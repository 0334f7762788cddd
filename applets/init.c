/*
 * init: PID 1 of the rescue image (make initramfs).
 *
 * Mounts /proc, /sys, /dev, /run; reads the kernel command line; loads the
 * image's storage, filesystem and network modules; finds the installed
 * system's disk with libblkid (LABEL=, UUID=, PARTUUID= or a /dev path),
 * waiting a bounded time for it to appear (assembling md arrays with mdadm
 * and activating LVM's logical volumes as their disks appear); mounts it on /target; runs
 * provision --target /target in this process; then continues into the
 * installed system: its /sbin/init after switching root, its kernel by kexec, a
 * reboot; or powers off, or starts a shell. Every failure ends in a message on
 * the console and a power-off with the failure verdict (a shell with
 * kvmbox.debug), never in a kernel panic loop or a hang.
 *
 * Kernel command line:
 *   kvmbox.target=LABEL=...|UUID=...|PARTUUID=...|/dev/...   the installed system
 *   kvmbox.config=PATH       its config, inside the target (default /etc/kvmbox/host.conf)
 *   kvmbox.action=provision|reboot|kexec|poweroff|shell   after provisioning: continue into the
 *                            target's /sbin/init, reboot, kexec the target's kernel (its
 *                            grub.cfg's default entry and /etc/default/grub's arguments),
 *                            power off, shell; any other word is refused
 *   kvmbox.wait=SEC          how long to wait for the target's disk (default 30)
 *   kvmbox.debug             more output, and a shell on failure even with action=poweroff
 *   kvmbox.exitport=PORT     on power-off, write the verdict to this I/O port (QEMU's
 *                            isa-debug-exit: 0x10 success, 0x20 failure)
 *
 * Netboot (a fleet server, see initramfs/README.md):
 *   kvmbox.url=http://SERVER/PATH/       the fleet's base URL
 *   kvmbox.manifest.sha256=HEX           the digest of PATH/SHA256SUMS, which lists every
 *                                        host config and bundle the server offers
 *   kvmbox.report=http://SERVER/PATH     where the run's state goes (POST .../MAC)
 *   BOOTIF=01-52-54-00-12-34-56          the NIC the machine booted from (iPXE's ${netX/mac})
 *   kvmbox.timeout=SEC                   how long carrier, DHCP, each fetch and the report
 *                                        are retried with backoff (default 600)
 * The NIC (BOOTIF's, else each Ethernet NIC with carrier in turn) gets an address
 * by DHCP (busybox udhcpc, kvmbox lease applying it, DNS included), the manifest
 * is fetched and checked against the pinned digest, then hosts/MAC.conf (when
 * the manifest lists it, MAC in any case; else hosts/default.conf), checked
 * against the manifest, becomes the target's /etc/kvmbox/host.conf. Nothing on
 * the target is touched before the config verified.
 */
#include <arpa/inet.h>
#include <blkid.h>
#include <ifaddrs.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <linux/kexec.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <sys/io.h>
#endif

#include "kvmbox/applet.h"
#include "kvmbox/bundle/bundle.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/host/grubargs.h"
#include "kvmbox/host/inventory.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/net/fetch.h"
#include "kvmbox/net/net.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/kmod.h"
#include "kvmbox/host/lvm.h"
#include "kvmbox/core/output.h"
#include "kvmbox/provision/provision.h"
#include "kvmbox/provision/state.h"
#include "kvmbox/core/run.h"
#include "kvmbox/core/process.h"
#include "kvmbox/bundle/sha256.h"

const char init_usage[] =
	"Usage: kvmbox init   (PID 1 of the rescue image; refuses to run as anything else)\n"
	"\n"
	"Mount /proc, /sys, /dev and /run, load the image's modules, find the installed\n"
	"system by kvmbox.target=LABEL=...|UUID=...|PARTUUID=...|/dev/..., mount it on\n"
	"/target, run kvmbox provision --target /target with its config\n"
	"(kvmbox.config=PATH, default /etc/kvmbox/host.conf), then per kvmbox.action=\n"
	"provision (boot the installed system), reboot, kexec (the installed kernel),\n"
	"poweroff or shell; a failure powers off. kvmbox.wait=SEC bounds the wait for the\n"
	"disk (default 30); kvmbox.debug (a shell on failure); kvmbox.exitport=PORT writes\n"
	"the verdict to an I/O port on power-off (QEMU isa-debug-exit).\n"
	"\n"
	"Netboot: kvmbox.url=http://SERVER/PATH/ and kvmbox.manifest.sha256=HEX: DHCP on\n"
	"the boot NIC (BOOTIF=, else each NIC with carrier), PATH/SHA256SUMS checked\n"
	"against the digest, hosts/MAC.conf (or hosts/default.conf when SHA256SUMS lists\n"
	"none for this MAC) checked against it becomes the target's config;\n"
	"kvmbox.report=URL receives this run's report at URL/MAC. Carrier, DHCP, fetches\n"
	"and the report are retried for kvmbox.timeout=SEC (default 600).\n";

#define TARGET "/target"
#define MODULE_LIST "/etc/kvmbox/initramfs-modules"
#define DEFAULT_CONFIG "/etc/kvmbox/host.conf"

struct init {
	struct kb_ctx *ctx;
	char target_spec[256], config[256], action[32];
	int wait_seconds;
	int timeout;                /* kvmbox.timeout=: how long each network wait is retried */
	bool debug;
	unsigned exit_port;
	char device[PATH_MAX];
	/* netboot */
	char url[512], manifest_sha256[65], report[512], bootif[32];
	char nic[16], mac[18];      /* the boot NIC and its MAC (52:54:00:12:34:56) */
	char host_config[160];      /* which of the server's configs this host got */
	char failure[512];          /* what stopped the run, for the report */
	char cmdline_refused[160];  /* a kvmbox.* word of the kernel command line that is refused ("" none) */
	char failed_step[96];       /* the provision step that failed ("" none) */
	struct kb_provision *run;   /* this boot's provision run (NULL: it did not get that far) */
};

#define FLEET_DIR "/run/kvmbox/fleet"
#define IMAGE_FILE "/etc/kvmbox/image" /* the image's version, written by initramfs/build.sh */
#define FETCH_SECONDS 60
/* Fleets power on together and switch ports sit in STP for ~30 s: retry for long. */
#define DEFAULT_TIMEOUT 600
#define MAX_NICS 16

/* A line on the console and in the kernel log. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[3072], shown[4 * sizeof(line) + 1] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* What it names comes from the target (grub.cfg's kernel line) or a server: no escape reaches the console. */
	FILE *m = fmemopen(shown, sizeof(shown), "w");
	if (m) {
		kb_put_visible(m, line, 0);
		fclose(m);
	}
	struct timespec up;
	clock_gettime(CLOCK_BOOTTIME, &up);
	fprintf(stdout, "kvmbox-init: [%5lld.%02ld] %s\n", (long long)up.tv_sec, up.tv_nsec / 10000000, shown);
	fflush(stdout);
	int kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (kmsg >= 0) {
		dprintf(kmsg, "<6>kvmbox-init: %s\n", shown);
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

/*
 * A kvmbox.* word's value into @out (of @size), or the word refused in in->cmdline_refused:
 * a value that does not fit is refused whole, never cut (a cut URL or path names another).
 */
static bool cmdline_value(struct init *in, const char *text, size_t len, const char *key, char *out, size_t size)
{
	char value[4096];
	bool bare;
	if (!kb_cmdline_get(text, len, key, value, sizeof(value), &bare) || bare)
		return false;
	if (strlen(value) + 1 > size) {
		if (!in->cmdline_refused[0])
			snprintf(in->cmdline_refused, sizeof(in->cmdline_refused), "%s= is %zu characters, longer than its %zu: refused",
				 key, strlen(value), size - 1);
		return false;
	}
	snprintf(out, size, "%s", value);
	return true;
}

static bool all_hex(const char *s)
{
	for (; *s; s++)
		if (!isxdigit((unsigned char)*s))
			return false;
	return true;
}

static void read_cmdline(struct init *in)
{
	autofree char *text = NULL;
	size_t len = 0;
	kb_read_path("/proc/cmdline", 1 << 16, &text, &len, NULL);
	char value[256], digest[128];
	bool bare;
	snprintf(in->config, sizeof(in->config), "%s", DEFAULT_CONFIG);
	snprintf(in->action, sizeof(in->action), "provision");
	in->wait_seconds = 30;
	in->timeout = DEFAULT_TIMEOUT;
	if (!text)
		return;
	cmdline_value(in, text, len, "kvmbox.target", in->target_spec, sizeof(in->target_spec));
	if (cmdline_value(in, text, len, "kvmbox.config", value, sizeof(value)) && value[0] == '/')
		snprintf(in->config, sizeof(in->config), "%s", value);
	cmdline_value(in, text, len, "kvmbox.action", in->action, sizeof(in->action));
	if (cmdline_value(in, text, len, "kvmbox.wait", value, sizeof(value)))
		in->wait_seconds = atoi(value) > 0 ? atoi(value) : 30;
	if (cmdline_value(in, text, len, "kvmbox.timeout", value, sizeof(value)))
		in->timeout = atoi(value) > 0 ? atoi(value) : DEFAULT_TIMEOUT;
	if (cmdline_value(in, text, len, "kvmbox.exitport", value, sizeof(value)))
		in->exit_port = (unsigned)strtoul(value, NULL, 0);
	in->debug = kb_cmdline_get(text, len, "kvmbox.debug", value, sizeof(value), &bare);
	/* Room for the '/' the URL gets. */
	if (cmdline_value(in, text, len, "kvmbox.url", in->url, sizeof(in->url) - 1) && in->url[0] &&
	    in->url[strlen(in->url) - 1] != '/')
		strcat(in->url, "/");
	if (cmdline_value(in, text, len, "kvmbox.manifest.sha256", digest, sizeof(digest))) {
		if (strlen(digest) == 64 && all_hex(digest))
			memcpy(in->manifest_sha256, digest, 65); /* 64 digits and the NUL, checked above */
		else if (!in->cmdline_refused[0])
			snprintf(in->cmdline_refused, sizeof(in->cmdline_refused),
				 "kvmbox.manifest.sha256= is not a SHA-256 (64 hex digits): refused");
	}
	cmdline_value(in, text, len, "kvmbox.report", in->report, sizeof(in->report));
	cmdline_value(in, text, len, "BOOTIF", in->bootif, sizeof(in->bootif));
}

/* The image's modules (storage, filesystems, bridge, dummy): MODULE_LIST, one per line. */
static void load_modules(void)
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
	say("modules: %u loaded, %u failed", loaded, failed); /* its time on the console: where a boot's seconds go */
}

/*
 * Software RAID and LVM, each time the kernel's list of block devices
 * changes, so that an installed system on /dev/md* or an LV is found by its
 * label like any other: Debian's mdadm assembles the md arrays whose members
 * are all there (a member still missing keeps its array stopped rather than
 * started degraded), then the LVs of the VGs found are activated (linear and
 * striped ones; an LV on an array, the next time round).
 */
static void assemble_storage(struct init *in, char *partitions, size_t size)
{
	autofree char *now = NULL;
	size_t len = 0;
	char mdadm[PATH_MAX];
	struct kb_error err = { 0 };
	if (kb_read_path("/proc/partitions", 1 << 20, &now, &len, NULL) < 0 || (len < size && !strcmp(now, partitions)))
		return;
	snprintf(partitions, size, "%s", now);
	if (kb_find_program(in->ctx, "mdadm", mdadm, sizeof(mdadm), &err) == 0) {
		const char *const argv[] = { mdadm, "--assemble", "--scan", "--quiet", NULL };
		kb_run_program(in->ctx, argv, &err);
	}
	int lvs = kb_lvm_activate(&err);
	if (lvs < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		say("LVM: %s", kb_error_message(&err, message, sizeof(message)));
	} else if (lvs > 0) {
		say("LVM: %d logical volume%s activated", lvs, lvs == 1 ? "" : "s");
	}
}

/* The target's device, by tag or path, polled until it appears or the wait is over. */
static int find_target(struct init *in)
{
	if (!in->target_spec[0]) {
		say("no kvmbox.target= on the kernel command line: nothing to provision");
		return -1;
	}
	struct timespec step = { 0, 250 * 1000 * 1000 };
	char partitions[8192] = "";
	for (int i = 0; i <= in->wait_seconds * 4; i++) {
		char *dev = NULL;
		assemble_storage(in, partitions, sizeof(partitions));
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

/*
 * The image's kvmbox into the installed system when it has none: the
 * first-boot unit (domains are defined there, where libvirtd runs) and day 2
 * run it. Not fatal: a config that stages nothing needs none.
 */
static void install_kvmbox(struct init *in)
{
	static const char *const places[] = { "/usr/bin/kvmbox", "/usr/local/bin/kvmbox", "/usr/sbin/kvmbox" };
	struct kb_ctx ctx = *in->ctx;
	ctx.target = TARGET;
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		autoclose_fd fd = kb_sysroot_open(&ctx, places[i], O_RDONLY | O_CLOEXEC, 0, NULL);
		if (fd >= 0)
			return;
	}
	autofree char *binary = NULL;
	size_t len;
	struct kb_error err = { 0 };
	struct kb_write_options opts = { .mode = 0755, .create_dirs = true };
	if (kb_read_path("/bin/kvmbox", 64 << 20, &binary, &len, &err) < 0 ||
	    kb_write_file_atomic(&ctx, places[0], binary, len, &opts, &err) < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		say("installing kvmbox into the target: %s", kb_error_message(&err, message, sizeof(message)));
		return;
	}
	say("the installed system had no kvmbox: installed the image's as %s", places[0]);
}

/* Provision with @config (the target's own path): the failed steps' count, or -1 with @err. */
static int run_provision(const struct kb_ctx *ctx, const char *config, struct kb_provision *p, struct kb_error *err)
{
	struct kb_provision_options opts = { .config_path = config, .config_in_root = true };
	if (kb_provision_load(ctx, &opts, p, err) < 0)
		return -1;
	if (!p->count)
		return kb_fail(err, 0, NULL, "%s configures nothing", config);
	if (p->previous_stop[0])
		kb_say_error(ctx, "the previous run stopped during %s; running again", p->previous_stop);
	if (kb_provision_run(p, err) < 0)
		return -1;
	kb_provision_print(p);
	return kb_provision_failures(p);
}

static void failed(struct init *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Provision the target; the run stays in in->run for the report. */
static int provision(struct init *in)
{
	say("provisioning %s with %s", in->device, in->config);
	struct kb_ctx ctx = *in->ctx;
	ctx.target = TARGET;
	if (in->debug)
		ctx.verbosity = ctx.verbosity < 1 ? 1 : ctx.verbosity;
	struct kb_error err = { 0 };
	struct kb_provision *p = calloc(1, sizeof(*p));
	struct kb_run run = { 0 }; /* the run's shared reads and directory syncs (kvmbox/core/run.h) */
	ctx.run = &run;
	int failures = p ? run_provision(&ctx, in->config, p, &err) : kb_fail(&err, ENOMEM, NULL, "provisioning");
	kb_run_free(&run);
	ctx.run = NULL;
	in->run = p;
	fflush(stdout);
	if (failures < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		kb_say_failure(&ctx, &err);
		failed(in, "%s", kb_error_message(&err, message, sizeof(message)));
	}
	for (int i = 0; failures > 0 && i < p->count && !in->failed_step[0]; i++) {
		const struct kb_provision_step *st = &p->step[i];
		if (st->row.status != KB_FAILED)
			continue;
		snprintf(in->failed_step, sizeof(in->failed_step), "%s", st->id);
		failed(in, "step %s failed: %s", st->id, st->row.message);
	}
	if (failures == 0)
		say("provisioned");
	else
		say("provisioning failed");
	return failures == 0 ? KB_EXIT_OK : KB_EXIT_FAILURE;
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
	char sh[] = "/bin/sh";
	char *const argv[] = { sh, NULL };
	signal(SIGPIPE, SIG_DFL); /* main ignores it for kvmbox; an ignored signal stays ignored across exec */
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
	char init[] = "/sbin/init";
	char *const argv[] = { init, NULL };
	signal(SIGPIPE, SIG_DFL);
	execv(argv[0], argv);
	say("executing the installed system's /sbin/init: %s", strerror(errno));
}

/* ---- the handover (kvmbox.action=) ---------------------------------------------- */

static const char *const actions[] = { "provision", "reboot", "kexec", "poweroff", "shell" };

static bool action_known(const char *action)
{
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		if (!strcmp(action, actions[i]))
			return true;
	return false;
}

/* The target's view of files: /boot, /sbin, /etc resolved inside /target, links included. */
static struct kb_ctx target_ctx(const struct init *in)
{
	struct kb_ctx ctx = *in->ctx;
	ctx.target = TARGET;
	return ctx;
}

/* A regular file (@executable: one it can run) at @path inside the target, links followed inside it. */
static bool target_file(const struct init *in, const char *path, bool executable)
{
	struct kb_ctx ctx = target_ctx(in);
	autoclose_fd fd = kb_sysroot_open(&ctx, path, O_RDONLY | O_CLOEXEC, 0, NULL);
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (!executable || (st.st_mode & 0111));
}

/* Append the words of @args that @cmdline lacks (blank-separated). */
static void add_missing_args(char *cmdline, size_t size, const char *args)
{
	/* Words of any length (an isolcpus= list can be long); grub's $variables are not arguments. */
	for (const char *w = args + strspn(args, " \t"); *w; w += strspn(w, " \t")) {
		size_t wl = strcspn(w, " \t");
		bool have = w[0] == '$';
		for (const char *h = cmdline; !have && *h; h++) /* the word, whole, already there */
			have = (h == cmdline || h[-1] == ' ') && !strncmp(h, w, wl) && (h[wl] == ' ' || h[wl] == '\0');
		size_t used = strlen(cmdline);
		if (!have && used + wl + 2 < size)
			snprintf(cmdline + used, size - used, "%s%.*s", used ? " " : "", (int)wl, w);
		w += wl;
	}
}

/*
 * The installed system's default boot entry: the first menuentry's linux and
 * initrd lines of /boot/grub/grub.cfg (grub's $variables left out), else
 * /boot/vmlinuz and /boot/initrd.img (Debian's links; / too) with the root by
 * UUID. Then /etc/default/grub's arguments the entry lacks: provision's
 * [grub] edits apply to this boot even when grub.cfg was not regenerated.
 */
static int boot_entry(struct init *in, char *kernel, char *initrd, char *cmdline, size_t size)
{
	struct kb_ctx ctx = target_ctx(in);
	autofree char *cfg = NULL;
	size_t len;
	kernel[0] = initrd[0] = cmdline[0] = '\0';
	if (kb_read_file(&ctx, "/boot/grub/grub.cfg", 1 << 22, &cfg, &len, NULL) == 0) {
		bool in_entry = false;
		for (char *save = NULL, *line = strtok_r(cfg, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			line += strspn(line, " \t");
			if (!strncmp(line, "menuentry ", 10)) {
				if (in_entry)
					break;
				in_entry = true;
			}
			char word[32];
			int used;
			if (!in_entry || sscanf(line, "%31s%n", word, &used) != 1)
				continue;
			const char *rest = line + used + strspn(line + used, " \t");
			if (!kernel[0] && (!strcmp(word, "linux") || !strcmp(word, "linux16") || !strcmp(word, "linuxefi"))) {
				if (sscanf(rest, "%4095s%n", kernel, &used) != 1)
					continue;
				add_missing_args(cmdline, size, rest + used);
			} else if (!initrd[0] && (!strcmp(word, "initrd") || !strcmp(word, "initrd16") || !strcmp(word, "initrdefi"))) {
				sscanf(rest, "%4095s", initrd);
			}
		}
	}
	if (!kernel[0]) {
		static const char *const kernels[] = { "/boot/vmlinuz", "/vmlinuz" }, *const initrds[] = { "/boot/initrd.img", "/initrd.img" };
		for (size_t i = 0; i < 2 && !kernel[0]; i++) {
			if (!target_file(in, kernels[i], false))
				continue;
			snprintf(kernel, PATH_MAX, "%s", kernels[i]);
			snprintf(initrd, PATH_MAX, "%s", initrds[i]);
		}
		char *uuid = blkid_get_tag_value(NULL, "UUID", in->device);
		if (uuid)
			snprintf(cmdline, size, "root=UUID=%s ro", uuid);
		free(uuid);
	}
	if (!kernel[0])
		return -1;
	struct kb_grubargs_spec spec;
	static const char *const vars[] = { "GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT" };
	for (size_t i = 0; i < 2; i++) {
		char *grub = NULL, *kcmd = NULL;
		const char *var;
		kb_grubargs_spec_init(&spec);
		snprintf(spec.var, sizeof(spec.var), "%s", vars[i]);
		if (kb_grubargs_current(&ctx, &spec, &grub, &kcmd, &var, NULL) == 0 && grub)
			add_missing_args(cmdline, size, grub);
		free(grub);
		free(kcmd);
	}
	return 0;
}

/* The installed kernel loaded for kexec (kexec_file_load: the kernel checks the image itself). */
static int load_kexec(struct init *in)
{
	char kernel[PATH_MAX], initrd[PATH_MAX], cmdline[2048];
	if (boot_entry(in, kernel, initrd, cmdline, sizeof(cmdline)) < 0) {
		failed(in, "kexec: the installed system has no kernel (no linux line in /boot/grub/grub.cfg, no /boot/vmlinuz or /vmlinuz)");
		return -1;
	}
	struct kb_ctx ctx = target_ctx(in);
	struct kb_error err = { 0 };
	autoclose_fd kfd = kb_sysroot_open(&ctx, kernel, O_RDONLY | O_CLOEXEC, 0, &err);
	autoclose_fd ifd = initrd[0] ? kb_sysroot_open(&ctx, initrd, O_RDONLY | O_CLOEXEC, 0, &err) : -1;
	if (kfd < 0 || (initrd[0] && ifd < 0)) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		failed(in, "kexec: %s", kb_error_message(&err, message, sizeof(message)));
		return -1;
	}
	say("kexec: %s%s%s with \"%s\"", kernel, initrd[0] ? " and " : "", initrd, cmdline);
	if (syscall(SYS_kexec_file_load, (int)kfd, (int)ifd, strlen(cmdline) + 1, cmdline,
		    initrd[0] ? 0UL : (unsigned long)KEXEC_FILE_NO_INITRAMFS) < 0) {
		failed(in, "kexec: loading %s: %s", kernel, strerror(errno));
		return -1;
	}
	return 0;
}

/* Whatever the action needs, ready before the report says "ok": a handover that cannot happen is a failure. */
static int prepare_handover(struct init *in)
{
	if (!strcmp(in->action, "provision") && !target_file(in, "/sbin/init", true)) {
		failed(in, "the installed system has no executable /sbin/init to continue into (kvmbox.action=reboot, kexec or poweroff instead)");
		return -1;
	}
	if (!strcmp(in->action, "kexec"))
		return load_kexec(in);
	return 0;
}

/* Unmount the target, then the action: never returns (a failed handover powers off). */
static void hand_over(struct init *in, bool ok)
{
	if (ok && !strcmp(in->action, "provision")) {
		switch_root();
		ok = false; /* still here: it failed, and said why */
	} else if (ok && (!strcmp(in->action, "reboot") || !strcmp(in->action, "kexec"))) {
		bool kexec = !strcmp(in->action, "kexec");
		umount(TARGET);
		sync();
		say("%s", kexec ? "continuing into the installed kernel (kexec)" : "rebooting");
		reboot(kexec ? RB_KEXEC : RB_AUTOBOOT);
		say("%s: %s", kexec ? "kexec" : "reboot", strerror(errno));
		ok = false;
	}
	if (!strcmp(in->action, "shell") || (!ok && in->debug))
		shell();
	power_off(in, ok && !strcmp(in->action, "poweroff"));
}

/* ---- netboot -------------------------------------------------------------------- */

/* What stopped the run: on the console now, in the report later. */
static void failed(struct init *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failed(struct init *in, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(in->failure, sizeof(in->failure), fmt, ap);
	va_end(ap);
	say("%s", in->failure);
}

/* The MAC of interface @name, lower case, from sysfs. */
static bool nic_mac(const struct kb_ctx *ctx, const char *name, char *mac, size_t size)
{
	char path[PATH_MAX], value[32];
	snprintf(path, sizeof(path), "/sys/class/net/%s/address", name);
	if (kb_read_value(ctx, path, value, sizeof(value), NULL) < 0 || strlen(value) != 17)
		return false;
	for (char *c = value; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	snprintf(mac, size, "%s", value);
	return true;
}

/* An Ethernet interface backed by a device (not lo, a bridge or a dummy). */
static bool is_ethernet(const struct kb_ctx *ctx, const char *name)
{
	char path[PATH_MAX], value[16];
	struct stat st;
	snprintf(path, sizeof(path), "/sys/class/net/%s/type", name);
	if (kb_read_value(ctx, path, value, sizeof(value), NULL) < 0 || strcmp(value, "1") != 0)
		return false;
	snprintf(path, sizeof(path), "/sys/class/net/%s/device", name);
	return stat(path, &st) == 0;
}

static double uptime(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void sleep_s(int seconds)
{
	struct timespec t = { seconds, 0 };
	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* Whether @name has carrier (the link must be up for the kernel to say). */
static bool has_carrier(const struct kb_ctx *ctx, const char *name)
{
	char path[PATH_MAX], value[8];
	snprintf(path, sizeof(path), "/sys/class/net/%s/carrier", name);
	return kb_read_value(ctx, path, value, sizeof(value), NULL) == 0 && !strcmp(value, "1");
}

/*
 * The Ethernet NICs now (set up, so that carrier can be seen), by name;
 * with @wanted only the one with that MAC. Their count.
 */
static int list_nics(struct init *in, struct nl_sock *sk, const char *wanted, char names[][16], char macs[][18])
{
	struct dirent **entries;
	int n = scandir("/sys/class/net", &entries, NULL, alphasort), count = 0;
	for (int k = 0; k < n; k++) {
		const char *name = entries[k]->d_name;
		char mac[18];
		if (count < MAX_NICS && strlen(name) < 16 && is_ethernet(in->ctx, name) && nic_mac(in->ctx, name, mac, sizeof(mac)) &&
		    (!wanted[0] || !strcmp(mac, wanted))) {
			struct rtnl_link *link = sk ? kb_link_get(sk, name, NULL) : NULL;
			if (link) {
				kb_link_set_up(sk, rtnl_link_get_ifindex(link), NULL);
				rtnl_link_put(link);
			}
			memcpy(names[count], name, strlen(name) + 1);
			memcpy(macs[count], mac, sizeof(mac));
			count++;
		}
		free(entries[k]);
	}
	if (n >= 0)
		free(entries);
	return count;
}

/* One DHCP try on @nic: busybox udhcpc, with kvmbox's lease applet applying it over netlink. */
static int dhcp_once(struct init *in, const char *nic)
{
	char busybox[PATH_MAX];
	struct kb_error err = { 0 };
	if (kb_find_program(in->ctx, "busybox", busybox, sizeof(busybox), &err) < 0) {
		failed(in, "no busybox for udhcpc: %s", err.what);
		return -2;
	}
	const char *const argv[] = { busybox, "udhcpc", "-i", nic, "-n", "-q", "-t", "3", "-T", "2", "-s", "/bin/lease", NULL };
	return kb_run_program(in->ctx, argv, &err) == 0 ? 0 : -1;
}

/*
 * The network, retried until kvmbox.timeout= is over: the NIC the machine
 * booted from (BOOTIF: iPXE's ${netX/mac}, pxelinux's IPAPPEND 2), else
 * every Ethernet NIC with carrier in turn; each waits for carrier (a switch
 * port in STP has none for ~30 s), then DHCP. The first lease wins.
 */
static int network(struct init *in)
{
	char wanted[18] = "";
	if (in->bootif[0]) {
		if (strlen(in->bootif) != 20 || strncmp(in->bootif, "01-", 3) != 0) {
			failed(in, "BOOTIF=%s is not 01- and a MAC with dashes", in->bootif);
			return -1;
		}
		for (int i = 0; i < 17; i++)
			wanted[i] = in->bootif[3 + i] == '-' ? ':' : (char)tolower((unsigned char)in->bootif[3 + i]);
	}
	struct kb_error err = { 0 };
	struct nl_sock *sk = kb_nl_open(&err);
	if (!sk)
		say("network: %s (links are not set up)", err.what);
	double deadline = uptime() + in->timeout;
	int delay = 0, seen = -1, carriers = -1;
	char names[MAX_NICS][16], macs[MAX_NICS][18];
	for (;;) {
		int count = list_nics(in, sk, wanted, names, macs), tried = 0;
		if (count != seen)
			say("network: %d interface%s%s%s", count, count == 1 ? "" : "s", wanted[0] ? " with MAC " : "", wanted);
		seen = count;
		int with_carrier = 0;
		for (int k = 0; k < count; k++)
			with_carrier += has_carrier(in->ctx, names[k]);
		if (with_carrier != carriers && count)
			say("network: %d of them with carrier", with_carrier);
		carriers = with_carrier;
		for (int k = 0; k < count; k++) {
			if (!has_carrier(in->ctx, names[k]))
				continue;
			tried++;
			int rc = dhcp_once(in, names[k]);
			if (rc == -2)
				break;
			if (rc == 0) {
				snprintf(in->nic, sizeof(in->nic), "%s", names[k]);
				snprintf(in->mac, sizeof(in->mac), "%s", macs[k]);
				say("network: %s (%s)", in->nic, in->mac);
				if (sk)
					nl_socket_free(sk);
				return 0;
			}
			say("no DHCP lease on %s yet", names[k]);
		}
		double left = deadline - uptime();
		if (left < 1 || in->failure[0])
			break;
		/* Carrier is polled each second; DHCP backs off (1, 2, 4 ... 16 s) once tried. */
		delay = !tried ? 1 : delay ? (delay * 2 > 16 ? 16 : delay * 2) : 1;
		sleep_s(delay < left ? delay : (int)left);
	}
	if (sk)
		nl_socket_free(sk);
	if (!in->failure[0]) {
		if (!seen)
			failed(in, "no network interface %s%s appeared within %d s (kvmbox.timeout=SEC waits longer)",
			       wanted[0] ? "with MAC " : "", wanted, in->timeout);
		else if (!carriers)
			failed(in, "no carrier on %s%s within %d s (kvmbox.timeout=SEC waits longer)", seen == 1 ? "" : "any of ",
			       seen == 1 ? names[0] : "the network interfaces", in->timeout);
		else
			failed(in, "no DHCP lease within %d s (kvmbox.timeout=SEC waits longer)", in->timeout);
	}
	return -1;
}

static void dashed(const char *mac, char *out)
{
	for (int i = 0; i < 17; i++)
		out[i] = mac[i] == ':' ? '-' : mac[i];
	out[17] = '\0';
}

/* Fetch @name, which the manifest must list, from the fleet into @dest and check it against the manifest. */
static int fetch_listed(struct init *in, const char *manifest, size_t len, const char *name, const char *dest,
			struct kb_error *err)
{
	char url[sizeof(in->url) + 160];
	snprintf(url, sizeof(url), "%s%s", in->url, name);
	uint8_t listed[32];
	int found = kb_manifest_find(manifest, len, name, listed, err);
	if (found <= 0)
		return found < 0 ? -1 : kb_fail(err, 0, NULL, "%s is not listed in the fleet's SHA256SUMS", name);
	if (kb_fetch_file(url, dest, FETCH_SECONDS, err) < 0)
		return -1;
	struct kb_sha256_api api;
	char hex[65], want[65];
	if (kb_sha256_load(&api, err) < 0 || kb_sha256_file(&api, dest, hex, err) < 0)
		return -1;
	kb_digest_hex(listed, want);
	if (strcmp(hex, want) != 0) {
		unlink(dest);
		return kb_fail(err, 0, NULL, "%s has SHA-256 %s, but the fleet's SHA256SUMS lists %s: refused", url, hex, want);
	}
	return 0;
}

/*
 * Whether the manifest lists hosts/@mac.conf, the MAC in any case; its name
 * as listed into @name.
 */
static bool listed_config(const char *manifest, size_t len, const char *mac, char *name, size_t size)
{
	char wanted[64];
	snprintf(wanted, sizeof(wanted), "hosts/%s.conf", mac);
	for (const char *line = manifest, *end = manifest + len; line < end;) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		eol = eol ? eol : end;
		/* sha256sum's format: 64 hex digits, a space, a space or '*', the name. */
		const char *file = line + 66;
		size_t flen = file < eol ? (size_t)(eol - file) : 0;
		if (flen && file[flen - 1] == '\r')
			flen--;
		if (flen == strlen(wanted) && !strncasecmp(file, wanted, flen)) {
			snprintf(name, size, "%.*s", (int)flen, file);
			return true;
		}
		line = eol + 1;
	}
	return false;
}

/* kb_fetch_* before each retry: why, on the console. */
static void fetch_note(const struct kb_error *err, int delay_s, int left_s, void *data)
{
	(void)data;
	say("%s; trying again in %d s (%d s left)", err->what, delay_s, left_s);
}

/*
 * The manifest, checked against the pinned digest, then this host's config
 * (hosts/MAC.conf when the manifest lists it, else hosts/default.conf),
 * checked against the manifest. A listed file the server does not have is a
 * failure (a partial copy of the fleet), never a reason to take the default.
 */
static int fetch_config(struct init *in)
{
	struct kb_error err = { 0 };
	char url[sizeof(in->url) + 16], hex[65], mac[18];
	autofree char *manifest = NULL;
	size_t len;
	struct kb_sha256_api api;
	if (strlen(in->manifest_sha256) != 64) {
		failed(in, "kvmbox.url= needs kvmbox.manifest.sha256=HEX (the digest of SHA256SUMS): refusing an unpinned fleet");
		return -1;
	}
	for (char *c = in->manifest_sha256; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	if (kb_make_dirs(FLEET_DIR, &err) < 0) {
		failed(in, "%s", err.what);
		return -1;
	}
	snprintf(url, sizeof(url), "%sSHA256SUMS", in->url);
	if (kb_fetch_file(url, FLEET_DIR "/SHA256SUMS", FETCH_SECONDS, &err) < 0 || kb_sha256_load(&api, &err) < 0 ||
	    kb_sha256_file(&api, FLEET_DIR "/SHA256SUMS", hex, &err) < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		failed(in, "%s", kb_error_message(&err, message, sizeof(message)));
		return -1;
	}
	if (strcmp(hex, in->manifest_sha256) != 0) {
		failed(in, "%s has SHA-256 %s, but kvmbox.manifest.sha256 pins %s: refused", url, hex, in->manifest_sha256);
		return -1;
	}
	if (kb_read_path(FLEET_DIR "/SHA256SUMS", 1 << 22, &manifest, &len, &err) < 0) {
		failed(in, "%s", err.what);
		return -1;
	}
	dashed(in->mac, mac);
	bool own = listed_config(manifest, len, mac, in->host_config, sizeof(in->host_config));
	if (!own) {
		say("the fleet's SHA256SUMS lists no hosts/%s.conf: using hosts/default.conf", mac);
		snprintf(in->host_config, sizeof(in->host_config), "hosts/default.conf");
	}
	if (fetch_listed(in, manifest, len, in->host_config, FLEET_DIR "/host.conf", &err) < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		if (err.errnum == ENOENT)
			failed(in, "%s%s is listed in the fleet's SHA256SUMS, but the server answered 404%s", in->url,
			       in->host_config, own ? " (no fallback to hosts/default.conf for a listed config)" : "");
		else
			failed(in, "%s", kb_error_message(&err, message, sizeof(message)));
		return -1;
	}
	say("config %s verified", in->host_config);
	return 0;
}

/*
 * The verified config becomes the installed system's: provision reads it there, day 2 keeps it.
 * Written as provision reads it, inside the target: a link there (/etc/kvmbox -> /planted) is
 * the target's, never followed into the image, where the planted config would be what runs.
 */
static int install_config(struct init *in)
{
	autofree char *text = NULL;
	size_t len;
	struct kb_error err = { 0 };
	struct kb_write_options opts = { .mode = 0644, .create_dirs = true };
	struct kb_ctx ctx = target_ctx(in);
	snprintf(in->config, sizeof(in->config), "%s", DEFAULT_CONFIG);
	if (kb_read_path(FLEET_DIR "/host.conf", 1 << 20, &text, &len, &err) < 0 ||
	    kb_write_file_atomic(&ctx, DEFAULT_CONFIG, text, len, &opts, &err) < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		failed(in, "%s", kb_error_message(&err, message, sizeof(message)));
		return -1;
	}
	return 0;
}

/* The IPv4 address of @nic with its prefix, "" when it has none. */
static void nic_address(const char *nic, char *out, size_t size)
{
	struct ifaddrs *all, *a;
	out[0] = '\0';
	if (getifaddrs(&all) < 0)
		return;
	for (a = all; a && !out[0]; a = a->ifa_next) {
		if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || strcmp(a->ifa_name, nic) != 0)
			continue;
		char ip[INET_ADDRSTRLEN];
		uint32_t mask = a->ifa_netmask ? ntohl(((struct sockaddr_in *)(void *)a->ifa_netmask)->sin_addr.s_addr) : 0;
		inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)a->ifa_addr)->sin_addr, ip, sizeof(ip));
		snprintf(out, size, "%s/%d", ip, __builtin_popcount(mask));
	}
	freeifaddrs(all);
}

static void json_member(FILE *out, const char *name, const char *value)
{
	fprintf(out, ", \"%s\": ", name);
	kb_json_string(out, value);
}

/*
 * The report of this boot's run only (a state file a previous run left is
 * not this run's): the verdict, what stopped it (the step and its message),
 * each step's status, message and duration, the versions, the pinned
 * manifest's digest, the MAC and address, the state this run wrote to
 * the target ({} when it wrote none: a plan refused changes nothing), and
 * the hardware inventory (kvmbox inventory's).
 */
static int write_report(struct init *in, bool ok, const char *path)
{
	FILE *out = fopen(path, "w");
	if (!out && kb_make_dirs(FLEET_DIR, NULL) == 0)
		out = fopen(path, "w");
	if (!out)
		return -1;
	char address[64] = "", image[256] = "";
	struct utsname uts;
	if (in->nic[0])
		nic_address(in->nic, address, sizeof(address));
	kb_read_value(in->ctx, IMAGE_FILE, image, sizeof(image), NULL);
	fputs("{\"mac\": ", out);
	kb_json_string(out, in->mac);
	json_member(out, "address", address);
	json_member(out, "verdict", ok ? "ok" : "failed");
	json_member(out, "config", in->host_config);
	json_member(out, "step", in->failed_step);
	json_member(out, "message", ok ? "" : in->failure[0] ? in->failure : "provisioning failed");
	json_member(out, "action", in->action);
	json_member(out, "kvmbox", KVMBOX_VERSION);
	json_member(out, "image", image);
	json_member(out, "kernel", uname(&uts) == 0 ? uts.release : "");
	json_member(out, "manifest_sha256", in->manifest_sha256);
	fputs(", \"steps\": [", out);
	for (int i = 0; in->run && i < in->run->count; i++) {
		const struct kb_provision_step *st = &in->run->step[i];
		fputs(i ? ", {\"id\": " : "{\"id\": ", out);
		kb_json_string(out, st->id);
		json_member(out, "status", kb_status_name(st->row.status));
		json_member(out, "message", st->row.message);
		fprintf(out, ", \"seconds\": %.3f}", st->seconds);
	}
	fputs("], \"state\": ", out);
	if (in->run && in->run->state.started[0])
		kb_state_json(out, &in->run->state);
	else
		fputs("{}", out);
	struct kb_inventory *inv = calloc(1, sizeof(*inv));
	if (inv) {
		kb_inventory_read(in->ctx, inv);
		fputs(", \"inventory\": ", out);
		kb_inventory_json(out, inv);
		free(inv);
	}
	fputs("}\n", out);
	return fclose(out);
}

/*
 * The report, POSTed to kvmbox.report=URL as URL/MAC, retried like every
 * fetch (a server down, a 5xx such as a static server's 501 to a POST).
 * Whether it was delivered: an undeliverable report fails the run, since
 * nobody would know how it went.
 */
static bool send_report(struct init *in, bool ok)
{
	if (!in->report[0])
		return true;
	if (!in->nic[0]) {
		say("no report: no network to send it over");
		return false;
	}
	char mac[18];
	dashed(in->mac, mac);
	if (write_report(in, ok, FLEET_DIR "/report.json") != 0) {
		failed(in, "writing the report: %s", strerror(errno));
		return false;
	}
	char url[sizeof(in->report) + 32];
	snprintf(url, sizeof(url), "%s/%s", in->report, mac);
	struct kb_error err = { 0 };
	if (kb_fetch_post(url, FLEET_DIR "/report.json", 30, &err) < 0) {
		failed(in, "the report could not be delivered: %s", err.what);
		return false;
	}
	say("report sent to %s", url);
	return true;
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
	ctx->no_progress = true; /* a bar redrawn with \r glues itself to the next line in a serial log */
	setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
	setenv("NO_COLOR", "1", 1); /* for the applets it runs as programs too (udhcpc's lease) */
	bool ok = mount_basics() == 0;
	read_cmdline(&in);
	say("kvmbox " KVMBOX_VERSION " rescue image: target %s, action %s", in.target_spec[0] ? in.target_spec : "(none)",
	    in.action);
	if (in.cmdline_refused[0]) {
		failed(&in, "%s", in.cmdline_refused);
		ok = false;
	} else if (!action_known(in.action)) {
		failed(&in, "kvmbox.action=%s is not one of provision, reboot, kexec, poweroff or shell: refused", in.action);
		ok = false;
	}
	if (ok)
		load_modules();
	bool netboot = in.url[0] != '\0';
	if (netboot) {
		say("netboot from %s", in.url);
		kb_fetch_retry(in.timeout, fetch_note, NULL); /* every fetch, the bundles' and the report's too */
	}
	ok = ok && (!netboot || (network(&in) == 0 && fetch_config(&in) == 0));
	ok = ok && find_target(&in) == 0 && mount_target(&in) == 0 && (!netboot || install_config(&in) == 0);
	if (ok)
		install_kvmbox(&in);
	ok = ok && provision(&in) == KB_EXIT_OK && prepare_handover(&in) == 0;
	if (netboot)
		ok = send_report(&in, ok) && ok;
	hand_over(&in, ok);
	/* PID 1 must not exit: the kernel would panic (only a failed power-off gets here). */
	for (;;)
		pause();
}
