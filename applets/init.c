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
 *
 * Netboot (a fleet server, see initramfs/README.md):
 *   kvmbox.url=http://SERVER/PATH/       the fleet's base URL
 *   kvmbox.manifest.sha256=HEX           the digest of PATH/SHA256SUMS, which lists every
 *                                        host config and bundle the server offers
 *   kvmbox.report=http://SERVER/PATH     where the run's state goes (POST .../MAC)
 *   BOOTIF=01-52-54-00-12-34-56          the NIC the machine booted from (iPXE, pxelinux)
 * The NIC gets an address by DHCP (busybox udhcpc, kvmbox lease applying it), the
 * manifest is fetched and checked against the pinned digest, then hosts/MAC.conf
 * (hosts/default.conf when the server has none for this MAC), checked against the
 * manifest, becomes the target's /etc/kvmbox/host.conf. Nothing on the target is
 * touched before the config verified.
 */
#include <blkid.h>
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
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <sys/io.h>
#endif

#include "kvmbox/applet.h"
#include "kvmbox/bundle/bundle.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/net/fetch.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/kmod.h"
#include "kvmbox/core/output.h"
#include "kvmbox/provision/provision.h"
#include "kvmbox/provision/state.h"
#include "kvmbox/core/process.h"
#include "kvmbox/bundle/sha256.h"

const char init_usage[] =
	"Usage: kvmbox init   (PID 1 of the rescue image; refuses to run as anything else)\n"
	"\n"
	"Mount /proc, /sys, /dev and /run, load the image's modules, find the installed\n"
	"system by kvmbox.target=LABEL=...|UUID=...|PARTUUID=...|/dev/..., mount it on\n"
	"/target, run kvmbox provision --target /target with its config\n"
	"(kvmbox.config=PATH, default /etc/kvmbox/host.conf), then per kvmbox.action=\n"
	"provision (boot the installed system), shell or poweroff. kvmbox.wait=SEC bounds\n"
	"the wait for the disk (default 30); kvmbox.debug; kvmbox.exitport=PORT writes the\n"
	"verdict to an I/O port on power-off (QEMU isa-debug-exit).\n"
	"\n"
	"Netboot: kvmbox.url=http://SERVER/PATH/ and kvmbox.manifest.sha256=HEX: DHCP on\n"
	"the boot NIC (BOOTIF=, else the first Ethernet), PATH/SHA256SUMS checked against\n"
	"the digest, hosts/MAC.conf (or hosts/default.conf) checked against it becomes\n"
	"the target's config; kvmbox.report=URL receives the run's state at URL/MAC.\n";

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
	/* netboot */
	char url[512], manifest_sha256[65], report[512], bootif[32];
	char nic[16], mac[18];      /* the boot NIC and its MAC (52:54:00:12:34:56) */
	char host_config[160];      /* which of the server's configs this host got */
	char failure[512];          /* what stopped the run, for the report */
};

#define FLEET_DIR "/run/kvmbox/fleet"
#define FETCH_SECONDS 60

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
	if (kb_cmdline_get(text, len, "kvmbox.url", value, sizeof(value), &bare) && !bare)
		snprintf(in->url, sizeof(in->url), "%s%s", value, value[0] && value[strlen(value) - 1] == '/' ? "" : "/");
	if (kb_cmdline_get(text, len, "kvmbox.manifest.sha256", value, sizeof(value), &bare) && !bare)
		snprintf(in->manifest_sha256, sizeof(in->manifest_sha256), "%.64s", value);
	if (kb_cmdline_get(text, len, "kvmbox.report", value, sizeof(value), &bare) && !bare)
		snprintf(in->report, sizeof(in->report), "%s", value);
	if (kb_cmdline_get(text, len, "BOOTIF", value, sizeof(value), &bare) && !bare)
		snprintf(in->bootif, sizeof(in->bootif), "%.31s", value);
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

static int provision(struct init *in)
{
	say("provisioning %s with %s", in->device, in->config);
	struct kb_ctx ctx = *in->ctx;
	ctx.target = TARGET;
	if (in->debug)
		ctx.verbosity = ctx.verbosity < 1 ? 1 : ctx.verbosity;
	struct kb_error err = { 0 };
	struct kb_provision *p = calloc(1, sizeof(*p));
	int failures = p ? run_provision(&ctx, in->config, p, &err) : kb_fail(&err, ENOMEM, NULL, "provisioning");
	if (p)
		kb_provision_free(p);
	free(p);
	fflush(stdout);
	if (failures < 0)
		kb_say_failure(&ctx, &err);
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

/*
 * The NIC the machine booted from: the one whose MAC BOOTIF names (iPXE and
 * pxelinux pass "01-" and the MAC with dashes), else the first Ethernet
 * device by name. Its driver may still be loading: waits like find_target.
 */
static int find_nic(struct init *in)
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
	struct timespec step = { 0, 250 * 1000 * 1000 };
	for (int i = 0; i <= in->wait_seconds * 4; i++) {
		struct dirent **names;
		int n = scandir("/sys/class/net", &names, NULL, alphasort);
		for (int k = 0; k < n; k++) {
			char mac[18];
			if (!in->nic[0] && is_ethernet(in->ctx, names[k]->d_name) && nic_mac(in->ctx, names[k]->d_name, mac, sizeof(mac)) &&
			    (!wanted[0] || !strcmp(mac, wanted)) && strlen(names[k]->d_name) < sizeof(in->nic)) {
				memcpy(in->nic, names[k]->d_name, strlen(names[k]->d_name) + 1); /* fits: checked above */
				snprintf(in->mac, sizeof(in->mac), "%s", mac);
			}
			free(names[k]);
		}
		if (n >= 0)
			free(names);
		if (in->nic[0]) {
			say("network: %s (%s)", in->nic, in->mac);
			return 0;
		}
		nanosleep(&step, NULL);
	}
	failed(in, "no network interface %s%s appeared within %d s", wanted[0] ? "with MAC " : "", wanted, in->wait_seconds);
	return -1;
}

/* An address by DHCP: busybox udhcpc, with kvmbox's lease applet applying it over netlink. */
static int dhcp(struct init *in)
{
	char busybox[PATH_MAX];
	struct kb_error err = { 0 };
	if (kb_find_program(in->ctx, "busybox", busybox, sizeof(busybox), &err) < 0) {
		failed(in, "no busybox for udhcpc: %s", err.what);
		return -1;
	}
	const char *const argv[] = { busybox, "udhcpc", "-i", in->nic, "-n", "-q", "-t", "10", "-T", "2", "-s", "/bin/lease", NULL };
	int rc = kb_run_program(in->ctx, argv, &err);
	if (rc != 0) {
		failed(in, "no DHCP lease on %s (udhcpc exit %d)", in->nic, rc);
		return -1;
	}
	return 0;
}

static void dashed(const char *mac, char *out)
{
	for (int i = 0; i < 17; i++)
		out[i] = mac[i] == ':' ? '-' : mac[i];
	out[17] = '\0';
}

/* Fetch @name from the fleet into @dest and check it against the manifest. */
static int fetch_listed(struct init *in, const char *manifest, size_t len, const char *name, const char *dest,
			struct kb_error *err)
{
	char url[sizeof(in->url) + 160];
	snprintf(url, sizeof(url), "%s%s", in->url, name);
	if (kb_fetch_file(url, dest, FETCH_SECONDS, err) < 0)
		return -1;
	uint8_t listed[32];
	int found = kb_manifest_find(manifest, len, name, listed, err);
	if (found <= 0)
		return found < 0 ? -1 : kb_fail(err, 0, NULL, "%s is not listed in the fleet's SHA256SUMS", name);
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
 * The manifest, checked against the pinned digest, then this host's config
 * (hosts/MAC.conf, else hosts/default.conf), checked against the manifest.
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
	snprintf(in->host_config, sizeof(in->host_config), "hosts/%s.conf", mac);
	int rc = fetch_listed(in, manifest, len, in->host_config, FLEET_DIR "/host.conf", &err);
	if (rc < 0 && err.errnum == ENOENT) {
		say("the fleet has no %s: using hosts/default.conf", in->host_config);
		snprintf(in->host_config, sizeof(in->host_config), "hosts/default.conf");
		memset(&err, 0, sizeof(err));
		rc = fetch_listed(in, manifest, len, in->host_config, FLEET_DIR "/host.conf", &err);
	}
	if (rc < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		failed(in, "%s", kb_error_message(&err, message, sizeof(message)));
		return -1;
	}
	say("config %s verified", in->host_config);
	return 0;
}

/* The verified config becomes the installed system's: provision reads it there, day 2 keeps it. */
static int install_config(struct init *in)
{
	autofree char *text = NULL;
	size_t len;
	struct kb_error err = { 0 };
	struct kb_write_options opts = { .mode = 0644, .create_dirs = true };
	snprintf(in->config, sizeof(in->config), "%s", DEFAULT_CONFIG);
	if (kb_read_path(FLEET_DIR "/host.conf", 1 << 20, &text, &len, &err) < 0 ||
	    kb_write_file_atomic(in->ctx, TARGET DEFAULT_CONFIG, text, len, &opts, &err) < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		failed(in, "%s", kb_error_message(&err, message, sizeof(message)));
		return -1;
	}
	return 0;
}

/*
 * The report: this host's MAC, the verdict, which config it got, what
 * stopped it, and the provision state file as JSON (done/failed steps as
 * lists). POSTed to kvmbox.report=URL as URL/MAC.
 */
static void send_report(struct init *in, bool ok)
{
	if (!in->report[0])
		return;
	char mac[18] = "unknown";
	if (in->mac[0])
		dashed(in->mac, mac);
	FILE *out = fopen(FLEET_DIR "/report.json", "w");
	if (!out && kb_make_dirs(FLEET_DIR, NULL) == 0)
		out = fopen(FLEET_DIR "/report.json", "w");
	if (!out) {
		say("writing the report: %s", strerror(errno));
		return;
	}
	fputs("{\"mac\": ", out);
	kb_json_string(out, in->mac);
	fprintf(out, ", \"verdict\": \"%s\", \"config\": ", ok ? "ok" : "failed");
	kb_json_string(out, in->host_config);
	fputs(", \"message\": ", out);
	kb_json_string(out, ok ? "" : in->failure[0] ? in->failure : "provisioning failed (see the console)");
	fputs(", \"state\": ", out);
	autofree char *text = NULL;
	size_t len;
	struct kb_provision_state state;
	if (kb_read_path(TARGET KB_STATE_FILE, 1 << 20, &text, &len, NULL) == 0 &&
	    kb_state_parse(text, len, KB_STATE_FILE, &state, NULL) == 0)
		kb_state_json(out, &state);
	else
		fputs("{}", out);
	fputs("}\n", out);
	if (fclose(out) != 0) {
		say("writing the report: %s", strerror(errno));
		return;
	}
	char url[sizeof(in->report) + 32];
	snprintf(url, sizeof(url), "%s/%s", in->report, mac);
	struct kb_error err = { 0 };
	if (kb_fetch_post(url, FLEET_DIR "/report.json", 30, &err) < 0)
		say("sending the report: %s", err.what);
	else
		say("report sent to %s", url);
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
	setenv("NO_COLOR", "1", 1); /* for the applets it runs as programs too (udhcpc's lease) */
	bool ok = mount_basics() == 0;
	read_cmdline(&in);
	say("kvmbox " KVMBOX_VERSION " rescue image: target %s, action %s", in.target_spec[0] ? in.target_spec : "(none)",
	    in.action);
	if (ok)
		load_modules(&in);
	bool netboot = in.url[0] != '\0';
	if (netboot)
		say("netboot from %s", in.url);
	ok = ok && (!netboot || (find_nic(&in) == 0 && dhcp(&in) == 0 && fetch_config(&in) == 0));
	ok = ok && find_target(&in) == 0 && mount_target(&in) == 0 && (!netboot || install_config(&in) == 0) &&
	     provision(&in) == KB_EXIT_OK;
	if (netboot)
		send_report(&in, ok);
	if (!strcmp(in.action, "poweroff") && (ok || !in.debug))
		power_off(&in, ok);
	else if (ok && !strcmp(in.action, "provision"))
		switch_root();
	shell();
	/* PID 1 must not exit: the kernel would panic. */
	for (;;)
		pause();
}
