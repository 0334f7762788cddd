/*
 * doctor: diagnose the KVM/libvirt errors operators hit most, against the
 * live host and libvirtd, and with --fix apply the remedies that are safe.
 *
 * Each diagnosis is one row: an id, the evidence, and the fix. The ids are
 * the ones kb_virt_explain() gives libvirt's error messages, so an error
 * seen in `kvmbox domain` leads straight to its diagnosis here.
 *
 * Safe fixes (--fix): start libvirtd/virtlogd, /dev/kvm owner and mode
 * (devkvm, which never widens), remove stale QEMU capability cache files
 * (and restart libvirtd so it probes again), refresh storage pools. Not
 * applied, only shown: firmware settings, machine type changes (they
 * change the guest's hardware), adding a serial console.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/core/accounts.h"
#include "kvmbox/applet.h"
#include "kvmbox/core/change.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/host/cpuinfo.h"
#include "kvmbox/host/devkvm.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/kvm.h"
#include "kvmbox/core/output.h"
#include "kvmbox/host/pcidev.h"
#include "kvmbox/host/tune.h"
#include "kvmbox/host/vfio.h"
#include "kvmbox/virt/placement.h"
#include "kvmbox/virt/preflight.h"
#include "kvmbox/virt/running.h"
#include "kvmbox/core/service.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/virt/virt.h"
#include "kvmbox/core/xml.h"

const char doctor_usage[] =
	"Usage: kvmbox doctor [--fix] [--connect URI] [ID...]\n"
	"\n"
	"Diagnose the common KVM/libvirt errors on this host, each with its evidence\n"
	"and fix; with --fix apply the safe fixes and report each:\n"
	"  libvirtd.running  'failed to connect socket to .../libvirt-sock'   fix: start it\n"
	"  virtlogd.running  guests cannot start without virtlogd             fix: start it\n"
	"  kvm.dev           'Could not access KVM kernel module: Permission denied'\n"
	"                    (QEMU's user cannot open /dev/kvm)               fix: kvmbox devkvm\n"
	"  virt.hardware     'No domains available for virt type hvm'         firmware hint\n"
	"  caps.cache        'Cannot find suitable CPU model for given data'\n"
	"                    (stale /var/cache/libvirt/qemu/capabilities)     fix: clear, restart libvirtd\n"
	"  pool.stale        'cannot stat file' (volume deleted behind a pool) fix: refresh the pool\n"
	"  machine.type      'unsupported machine type' in a defined domain   shows the redefine\n"
	"  serial.none       domains without a serial console (virsh console)  shows the XML to add\n"
	"  hostdev.group     a passed-through PCI device whose IOMMU group is not all\n"
	"                    on vfio-pci ('group N is not viable')           fix: kvmbox pci prepare\n"
	"  numa.memory       a running pinned guest with over 10 %% of its memory off its\n"
	"                    vCPUs' nodes (/proc/PID/numa_maps)               shows virsh numatune\n"
	"  numa.balancing    kernel.numa_balancing on while pinned guests run  fix: 0, now and in sysctl.d\n"
	"  irq.isolated      IRQs whose affinity includes isolcpus= CPUs      fix: move them (no irqbalance)\n"
	"  pin.overlap       two running guests pinned onto the same CPUs      shows the re-pin\n"
	"Only FAIL sets exit status 1; IDs select diagnoses.\n"
	"\n"
	"  --fix          apply the safe fixes\n"
	"  --connect URI  libvirt URI (default $LIBVIRT_DEFAULT_URI, else qemu:///system;\n"
	"                 under --root only when given)\n";

#define LIBVIRT_SOCKET "/run/libvirt/libvirt-sock"
#define VIRTLOGD_SOCKET "/run/libvirt/virtlogd-sock"
#define CAPS_CACHE_DIR "/var/cache/libvirt/qemu/capabilities"
#define SERVICE_TIMEOUT_S 30

/*
 * Why a diagnosis found a problem, set where it is found: what --fix does
 * is decided on this, never on the words of a message.
 */
enum kb_doctor_reason {
	KB_REASON_NONE,
	KB_REASON_KVM_NODE_MISSING,   /* no /dev/kvm, the module loaded: devkvm makes it */
	KB_REASON_KVM_MODULE_MISSING, /* no /dev/kvm, no module: kvm-load first (not a safe fix) */
	KB_REASON_KVM_DENIED,         /* QEMU's user cannot open /dev/kvm: devkvm sets root:kvm 0660 */
	KB_REASON_HOSTDEV_ABSENT,     /* a domain passes through a device this host does not have */
	KB_REASON_HOSTDEV_NO_IOMMU,   /* ... one without an IOMMU group */
	KB_REASON_GROUP_NOT_VIABLE,   /* ... one whose IOMMU group has a member on a host driver: pci prepare */
	KB_REASON_NUMA_BALANCING,     /* kernel.numa_balancing on with pinned guests: set 0, now and in sysctl.d */
	KB_REASON_IRQ_BALANCER,       /* irqbalance runs without banning the isolated CPUs: tune and restart it (shown) */
	KB_REASON_IRQ_AFFINITY,       /* IRQs on isolated CPUs, no irqbalance to move them back: move them now */
};

struct doctor {
	struct kb_ctx *ctx;
	bool fix;
	char **only;
	int only_count;
	const char *uri; /* NULL: do not connect (another --root without --connect) */
	struct kb_xml xml;
	struct kb_virt virt;
	bool virt_loaded;
	virConnectPtr conn;
	char *caps_xml;
	xmlDoc *caps;
	struct kb_rows rows;
	struct stale_cache {           /* caps.cache: the stale files found, by name in CAPS_CACHE_DIR */
		char name[NAME_MAX + 1];
		dev_t dev;
		ino_t ino;
	} stale_caps[8];
	size_t stale_count;
	long long libvirt_ctime[2];   /* caps.cache: libvirt_self_ctime() of libvirtd and of virtqemud */
	struct kb_running *running;   /* the running domains (status files), read once by running_domains() */
	bool running_read;
	char running_error[PATH_MAX + 128];
	struct kb_topology *topo;     /* the host's NUMA nodes, read once by host_topology() */
	bool topo_read;
	char topo_error[PATH_MAX + 128];
	struct defined_domain {       /* the persistent domains, listed and parsed once by defined_domains() */
		char *name;
		xmlDoc *doc;          /* NULL when libvirt gave no definition */
	} *defined;
	int defined_count;            /* as libvirt's list answered: -1 when it could not */
	bool defined_read;
	struct kb_read_cache reads;   /* the host files every domain's preflight reads, read once */
	struct kb_kvm_answers kvm;    /* and what KVM answers them, asked once */
};

static bool selected(const struct doctor *d, const char *id)
{
	if (!d->only_count)
		return true;
	for (int i = 0; i < d->only_count; i++)
		if (strcmp(d->only[i], id) == 0)
			return true;
	return false;
}

static bool socket_answers(const struct doctor *d, const char *abs_path)
{
	/* connect() takes a path: resolved inside the root through every component first. */
	struct kb_path p;
	return kb_sysroot_resolved_path(d->ctx, abs_path, true, &p, NULL) == 0 && kb_socket_connect(p.s) == 0;
}

/* A fix was tried: the row now says what happened. */
static void report_fix(struct kb_row *r, int rc, const struct kb_error *err, const char *done)
{
	if (rc == 0) {
		r->status = KB_CHANGED;
		char message[sizeof(r->message) * 2];
		snprintf(message, sizeof(message), "fixed: %s (was: %s)", done, r->message);
		snprintf(r->message, sizeof(r->message), "%.*s", (int)sizeof(r->message) - 1, message);
		r->hint[0] = '\0';
	} else {
		char buf[sizeof(err->what) + PATH_MAX + 64];
		r->status = KB_FAILED;
		snprintf(r->hint, sizeof(r->hint), "the fix failed: %s", kb_error_message(err, buf, sizeof(buf)));
	}
}

/* ---- daemons -------------------------------------------------------------------- */

static void diagnose_daemon(struct doctor *d, const char *id, const char *daemon, const char *socket_path,
			    const char *why)
{
	if (!selected(d, id))
		return;
	struct kb_row *r = kb_rows_add(&d->rows);
	if (socket_answers(d, socket_path)) {
		kb_row_set(r, id, KB_PASS, "%s answers on %s", daemon, socket_path);
		return;
	}
	struct stat st;
	bool stale = kb_sysroot_stat(d->ctx, socket_path, &st, false, NULL) == 0;
	kb_row_set(r, id, KB_FAIL, "%s is not running: %s %s%s", daemon, socket_path,
		   stale ? "exists but refuses connections" : "does not exist", why);
	kb_row_hint(r, "start %s (systemctl start %s, or %s -d)", daemon, daemon, daemon);
	if (d->fix) {
		struct kb_error err = { 0 };
		int rc = kb_service_start(d->ctx, daemon, socket_path, SERVICE_TIMEOUT_S, &err);
		report_fix(r, rc, &err, "started");
	}
}

static int connect_libvirt(struct doctor *d)
{
	if (!d->uri)
		return -1;
	struct kb_error err = { 0 };
	if (!d->virt_loaded) {
		if (kb_virt_load(&d->virt, &err) < 0) {
			kb_say_failure(d->ctx, &err);
			return -1;
		}
		d->virt_loaded = true;
	}
	d->conn = kb_virt_connect(&d->virt, d->uri, &err, NULL);
	if (!d->conn) {
		if (d->ctx->verbosity > 0)
			kb_say_failure(d->ctx, &err);
		return -1;
	}
	d->caps_xml = d->virt.get_capabilities(d->conn);
	if (d->caps_xml)
		d->caps = kb_xml_parse(&d->xml, d->caps_xml, strlen(d->caps_xml), "capabilities", NULL);
	return 0;
}

/* A row for a diagnosis that needs libvirt when it is not reachable. */
static bool need_libvirt(struct doctor *d, const char *id)
{
	if (!selected(d, id))
		return false;
	if (d->conn)
		return true;
	kb_row_set(kb_rows_add(&d->rows), id, KB_SKIP, "libvirt not reachable%s%s", d->uri ? " at " : "",
		   d->uri ? d->uri : " (another --root; --connect URI to ask a libvirtd)");
	return false;
}

/* ---- /dev/kvm --------------------------------------------------------------------- */

/* Who QEMU runs as: libvirt's DAC label when it answers, else the distribution's account (Debian libvirt-qemu, Fedora qemu). */
static bool qemu_identity(struct doctor *d, uid_t *uid, gid_t *gid, const char **source)
{
	if (d->caps && kb_caps_qemu_identity(&d->xml, d->caps, "kvm", uid, gid)) {
		*source = "libvirt's DAC label";
		return true;
	}
	autoclose_file f = kb_sysroot_fopen_read(d->ctx, "/etc/passwd", NULL);
	struct passwd *pw;
	bool found = false;
	while (f && (pw = fgetpwent(f)) != NULL) {
		bool debian = strcmp(pw->pw_name, "libvirt-qemu") == 0;
		if (debian || (!found && strcmp(pw->pw_name, "qemu") == 0)) {
			*uid = pw->pw_uid;
			*gid = pw->pw_gid;
			*source = debian ? "the libvirt-qemu account" : "the qemu account";
			found = true;
			if (debian)
				break;
		}
	}
	return found;
}

/* The row's verdict on /dev/kvm, and why it failed (KB_REASON_NONE when it did not). */
static enum kb_doctor_reason judge_kvm_dev(struct doctor *d, struct kb_row *r)
{
	const char *id = "kvm.dev";
	struct stat st;
	if (kb_sysroot_stat(d->ctx, "/dev/kvm", &st, false, NULL) < 0) {
		bool loaded = kb_sysroot_stat(d->ctx, "/sys/class/misc/kvm/dev", &st, false, NULL) == 0;
		kb_row_set(r, id, KB_FAIL, "/dev/kvm does not exist%s", loaded ? " although the KVM module is loaded" : " (the KVM module is not loaded)");
		kb_row_hint(r, loaded ? "kvmbox devkvm" : "kvmbox kvm-load, then kvmbox devkvm");
		return loaded ? KB_REASON_KVM_NODE_MISSING : KB_REASON_KVM_MODULE_MISSING;
	}
	uid_t uid;
	gid_t gid;
	const char *source = NULL;
	char owner[64], group[64], user[64];
	kb_user_name(d->ctx, st.st_uid, owner, sizeof(owner));
	kb_group_name(d->ctx, st.st_gid, group, sizeof(group));
	if (!qemu_identity(d, &uid, &gid, &source)) {
		kb_row_set(r, id, KB_INFO, "/dev/kvm is %s:%s %04o; the user QEMU runs as is not known (no libvirt, no libvirt-qemu user)",
			   owner, group, (unsigned)(st.st_mode & 07777));
		return KB_REASON_NONE;
	}
	kb_user_name(d->ctx, uid, user, sizeof(user));
	if (kb_may_access(d->ctx, uid, gid, &st, R_OK | W_OK)) {
		kb_row_set(r, id, KB_PASS, "/dev/kvm is %s:%s %04o: QEMU's user %s (from %s) may open it", owner, group,
			   (unsigned)(st.st_mode & 07777), user, source);
		return KB_REASON_NONE;
	}
	kb_row_set(r, id, KB_FAIL,
		   "/dev/kvm is %s:%s %04o: QEMU's user %s (from %s) cannot open it ('Could not access KVM kernel "
		   "module: Permission denied'; libvirt also re-probes QEMU on every call)",
		   owner, group, (unsigned)(st.st_mode & 07777), user, source);
	kb_row_hint(r, "kvmbox devkvm (root:kvm 0660; %s must be in group kvm)", user);
	return KB_REASON_KVM_DENIED;
}

static void diagnose_kvm_dev(struct doctor *d)
{
	if (!selected(d, "kvm.dev"))
		return;
	struct kb_row *r = kb_rows_add(&d->rows);
	enum kb_doctor_reason reason = judge_kvm_dev(d, r);
	if (!d->fix || (reason != KB_REASON_KVM_NODE_MISSING && reason != KB_REASON_KVM_DENIED))
		return;
	/* devkvm's own plan and apply, with its defaults (group kvm); then judged again. */
	struct kb_devkvm_spec spec;
	kb_devkvm_spec_init(&spec);
	autoplan struct kb_plan plan = { 0 };
	struct kb_error err = { 0 };
	int rc = kb_devkvm_plan(d->ctx, &spec, &plan, &err);
	if (rc == 0)
		rc = kb_devkvm_apply(d->ctx, &spec, &plan, &err);
	struct kb_row after = { 0 };
	if (rc == 0 && judge_kvm_dev(d, &after) != KB_REASON_NONE)
		rc = kb_fail(&err, 0, NULL, "still: %s", after.message);
	report_fix(r, rc, &err, "kvmbox devkvm made /dev/kvm root:kvm 0660");
}

/* ---- hardware virtualization ------------------------------------------------------ */

static void diagnose_virt_hardware(struct doctor *d)
{
	const char *id = "virt.hardware";
	if (!selected(d, id))
		return;
	struct kb_cpuinfo cpu;
	kb_cpuinfo_load(d->ctx, &cpu, NULL);
	struct kb_row *r = kb_rows_add(&d->rows);
	bool offers_kvm = false, known = false;
	xmlNode *root = d->caps ? d->xml.root_element(d->caps) : NULL;
	for (xmlNode *g = kb_xml_child(root, "guest"); g; g = kb_xml_next(g, "guest")) {
		known = true;
		xmlNode *arch = kb_xml_child(g, "arch");
		for (xmlNode *dom = kb_xml_child(arch, "domain"); dom; dom = kb_xml_next(dom, "domain"))
			offers_kvm = offers_kvm || kb_xml_prop_is(&d->xml, dom, "type", "kvm");
	}
	/* The kernel's answer decides, as in kvmbox check: the CPU flags and libvirt's cache only explain it. */
	struct kb_kvm_probe kvm;
	kb_kvm_probe(d->ctx, &kvm);
	char why[PATH_MAX + 160];
	kb_kvm_probe_message(&kvm, why, sizeof(why));
	if (kvm.stage == KB_KVM_USABLE) {
		if (known && !offers_kvm) {
			kb_row_set(r, id, KB_FAIL, "KVM works (KVM_CREATE_VM on /dev/kvm) but libvirt offers no KVM guests ('No domains available for virt type hvm')");
			kb_row_hint(r, "libvirt's QEMU capabilities are stale or QEMU's user cannot open /dev/kvm: kvmbox doctor --fix kvm.dev caps.cache");
			return;
		}
		kb_row_set(r, id, KB_PASS, "KVM works (KVM_CREATE_VM on /dev/kvm)%s; %u of %u CPUs flag vmx/svm",
			   !known ? ", libvirt not asked" : " and libvirt offers KVM guests", cpu.with_virt, cpu.cpus);
		return;
	}
	kb_row_set(r, id, KB_FAIL, "KVM does not work here (%s)%s; %u of %u CPUs flag vmx/svm", why,
		   !known ? "" : offers_kvm ? ", although libvirt's capabilities offer KVM guests"
					 : ", libvirt offers no KVM guests ('No domains available for virt type hvm')",
		   cpu.with_virt, cpu.cpus);
	kb_row_hint(r, cpu.with_virt ? "kvmbox check; kvmbox kvm-load (the module is not loaded)"
				     : cpu.with_hypervisor ? "this is a VM: expose VT-x/AMD-V (nested) from the outer host; or use <domain type='qemu'>"
							   : "enable VT-x/AMD-V in the firmware setup; or use <domain type='qemu'>");
}

/* ---- QEMU capabilities cache ------------------------------------------------------- */

static bool ctime_differs(const struct doctor *d, const char *abs_path, const char *recorded)
{
	struct stat st;
	if (!recorded)
		return false;
	if (kb_sysroot_stat(d->ctx, abs_path, &st, false, NULL) < 0)
		return true;
	return strtoll(recorded, NULL, 10) != (long long)st.st_ctime;
}

struct self_ctime {
	const struct kb_ctx *ctx;
	long long newest;
};

static int newer_ctime(void *opaque, const char *abs_path)
{
	struct self_ctime *c = opaque;
	struct stat st;
	if (kb_sysroot_stat(c->ctx, abs_path, &st, false, NULL) == 0 && (long long)st.st_ctime > c->newest)
		c->newest = (long long)st.st_ctime;
	return 0;
}

/*
 * What libvirt records as <selfctime> when @daemon (libvirtd or virqemud)
 * starts: the newest ctime of the daemon and of every module it loads (its
 * drivers and storage backends come as packages of their own), or -1 when
 * the daemon is not there.
 */
static long long libvirt_self_ctime(const struct doctor *d, const char *daemon)
{
	static const char *const modules[] = { "/usr/lib/*/libvirt/*/*.so", "/usr/lib64/libvirt/*/*.so" };
	struct stat st;
	struct self_ctime c = { .ctx = d->ctx };
	if (kb_sysroot_stat(d->ctx, daemon, &st, false, NULL) < 0)
		return -1;
	c.newest = (long long)st.st_ctime;
	/* Matched and examined inside the root: a linked /usr/lib reads the root's own modules. */
	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++)
		kb_sysroot_glob(d->ctx, modules[i], newer_ctime, &c, NULL);
	return c.newest;
}

/*
 * Why the file open at @fd (@file in messages) no longer describes this host
 * (as libvirt itself would judge it), or NULL. *is_cache says whether it is a
 * QEMU capabilities cache at all (root element <qemuCaps>): anything else in
 * the directory (a libvirt <domain>, unreadable XML) is never judged stale.
 */
static const char *stale_reason(struct doctor *d, int fd, const char *file, bool *is_cache, char *buf, size_t size)
{
	autofree char *text = NULL;
	size_t len;
	*is_cache = false;
	if (kb_read_fd(fd, file, 16u << 20, &text, &len, NULL) < 0)
		return NULL;
	xmlDoc *doc = kb_xml_parse(&d->xml, text, len, file, NULL);
	if (!doc)
		return NULL;
	xmlNode *root = d->xml.root_element(doc);
	*is_cache = root && root->type == XML_ELEMENT_NODE && !strcmp((const char *)root->name, "qemuCaps");
	if (!*is_cache) {
		d->xml.free_doc(doc);
		return NULL;
	}
	autofree char *emulator = kb_xml_text(&d->xml, kb_xml_child(root, "emulator"));
	autofree char *qemu_ctime = kb_xml_text(&d->xml, kb_xml_child(root, "qemuctime"));
	autofree char *self_ctime = kb_xml_text(&d->xml, kb_xml_child(root, "selfctime"));
	autofree char *kernel = kb_xml_text(&d->xml, kb_xml_child(root, "kernelVersion"));
	d->xml.free_doc(doc);
	char release[128] = "", version[256] = "", running[400];
	kb_read_value(d->ctx, "/proc/sys/kernel/osrelease", release, sizeof(release), NULL);
	kb_read_value(d->ctx, "/proc/sys/kernel/version", version, sizeof(version), NULL);
	snprintf(running, sizeof(running), "%s %s", release, version);
	const char *name = emulator ? emulator : "?";
	struct stat st;
	if (!emulator || kb_sysroot_stat(d->ctx, emulator, &st, false, NULL) < 0)
		snprintf(buf, size, "its emulator %s is gone", name);
	else if (ctime_differs(d, emulator, qemu_ctime))
		snprintf(buf, size, "%s changed since it was probed (QEMU upgraded)", name);
	else if (self_ctime && strtoll(self_ctime, NULL, 10) != d->libvirt_ctime[0] &&
		 strtoll(self_ctime, NULL, 10) != d->libvirt_ctime[1])
		snprintf(buf, size, "libvirt changed since %s was probed", name);
	else if (kernel && release[0] && strcmp(kernel, running) != 0)
		snprintf(buf, size, "the kernel changed since %s was probed", name);
	else
		return NULL;
	return buf;
}

static void diagnose_caps_cache(struct doctor *d)
{
	const char *id = "caps.cache";
	if (!selected(d, id))
		return;
	struct kb_row *r = kb_rows_add(&d->rows);
	struct kb_path dir;
	struct kb_error list_err = { 0 };
	/* Listed, read and later cleaned through one confined directory fd: a link never leads out of the root. */
	autoclose_dir dh = kb_sysroot_opendir(d->ctx, CAPS_CACHE_DIR, &list_err);
	if (!dh) {
		kb_row_set(r, id, KB_PASS, "no cached QEMU capabilities (%s: %s)", CAPS_CACHE_DIR, strerror(list_err.errnum));
		return;
	}
	kb_sysroot_path(d->ctx, CAPS_CACHE_DIR, &dir, NULL);
	/* Once for every cache file: what libvirt's daemons would record now. */
	d->libvirt_ctime[0] = libvirt_self_ctime(d, "/usr/sbin/libvirtd");
	d->libvirt_ctime[1] = libvirt_self_ctime(d, "/usr/sbin/virtqemud");
	size_t files = 0;
	char first_reason[200] = "";
	struct dirent *de;
	while ((de = readdir(dh)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n < 5 || strcmp(de->d_name + n - 4, ".xml") != 0)
			continue;
		char path[PATH_MAX + 256], reason[200];
		snprintf(path, sizeof(path), "%s/%s", dir.s, de->d_name);
		autoclose_fd fd = openat(dirfd(dh), de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		bool is_cache;
		const char *stale = stale_reason(d, fd, path, &is_cache, reason, sizeof(reason));
		files += is_cache;
		if (!stale || d->stale_count >= 8)
			continue;
		struct stale_cache *c = &d->stale_caps[d->stale_count++];
		snprintf(c->name, sizeof(c->name), "%s", de->d_name);
		c->dev = st.st_dev;
		c->ino = st.st_ino;
		if (!first_reason[0])
			snprintf(first_reason, sizeof(first_reason), "%s", reason);
	}
	if (!d->stale_count) {
		kb_row_set(r, id, KB_PASS, "%zu cached QEMU capabilit%s, all current", files, files == 1 ? "y" : "ies");
		return;
	}
	kb_row_set(r, id, KB_FAIL, "%zu of %zu cached QEMU capabilities are stale (%s): 'Cannot find suitable CPU model for given data'",
		   d->stale_count, files, first_reason);
	kb_row_hint(r, "remove them from %s and restart libvirtd", CAPS_CACHE_DIR);
	if (!d->fix)
		return;
	struct kb_error err = { 0 };
	int rc = 0;
	for (size_t i = 0; i < d->stale_count && rc == 0; i++) {
		/* Only the very file judged stale: a name swapped for another file since is kept. */
		const struct stale_cache *c = &d->stale_caps[i];
		char path[PATH_MAX + NAME_MAX + 2];
		snprintf(path, sizeof(path), "%s/%s", dir.s, c->name);
		struct stat st;
		if (fstatat(dirfd(dh), c->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				rc = kb_fail(&err, errno, path, "removing");
		} else if (st.st_dev != c->dev || st.st_ino != c->ino) {
			rc = kb_fail(&err, EBUSY, path, "removing: replaced since it was judged stale:");
		} else if (unlinkat(dirfd(dh), c->name, 0) < 0 && errno != ENOENT) {
			rc = kb_fail(&err, errno, path, "removing");
		}
	}
	bool restart = rc == 0 && kb_sysroot_is_host(d->ctx) && !d->ctx->target && socket_answers(d, LIBVIRT_SOCKET);
	if (restart) {
		if (d->conn) {
			d->virt.connect_close(d->conn);
			d->conn = NULL;
		}
		rc = kb_service_restart(d->ctx, "libvirtd", LIBVIRT_SOCKET, SERVICE_TIMEOUT_S, &err);
		if (rc == 0)
			connect_libvirt(d);
	}
	char done[128];
	snprintf(done, sizeof(done), "removed %zu stale file%s%s", d->stale_count, d->stale_count == 1 ? "" : "s",
		 restart ? ", libvirtd restarted" : "");
	report_fix(r, rc, &err, done);
}

/* ---- storage pools ------------------------------------------------------------------ */

static void diagnose_pools(struct doctor *d)
{
	const char *id = "pool.stale";
	if (!need_libvirt(d, id))
		return;
	const struct kb_virt *v = &d->virt;
	struct kb_row *r = kb_rows_add(&d->rows);
	virStoragePoolPtr *pools = NULL;
	int count = v->list_pools(d->conn, &pools, VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE);
	if (count < 0) {
		struct kb_error err = { 0 };
		kb_virt_fail(v, &err, NULL, "listing storage pools");
		kb_row_set(r, id, KB_WARN, "%s", err.what);
		return;
	}
	char stale_pools[256] = "", example[PATH_MAX] = "";
	int stale_volumes = 0, refreshed = 0, rc = 0;
	struct kb_error err = { 0 };
	for (int i = 0; i < count; i++) {
		virStorageVolPtr *vols = NULL;
		int n = v->pool_volumes(pools[i], &vols, 0);
		int stale_here = 0;
		for (int k = 0; k < n; k++) {
			char *path = v->volume_path(vols[k]);
			struct kb_error missing = { 0 };
			struct stat st;
			if (path && kb_sysroot_stat(d->ctx, path, &st, false, &missing) < 0 && missing.errnum == ENOENT) {
				stale_here++;
				if (!example[0])
					snprintf(example, sizeof(example), "%s", path);
			}
			free(path);
			v->volume_free(vols[k]);
		}
		free(vols);
		if (stale_here) {
			stale_volumes += stale_here;
			size_t used = strlen(stale_pools);
			snprintf(stale_pools + used, sizeof(stale_pools) - used, "%s%s", used ? ", " : "", v->pool_name(pools[i]));
			if (d->fix && rc == 0) {
				if (v->pool_refresh(pools[i], 0) < 0)
					rc = kb_virt_fail(v, &err, NULL, "refreshing pool '%s'", v->pool_name(pools[i]));
				else
					refreshed++;
			}
		}
		v->pool_free(pools[i]);
	}
	free(pools);
	if (!stale_volumes) {
		kb_row_set(r, id, KB_PASS, "%d active storage pool%s, every volume's file exists", count, count == 1 ? "" : "s");
		return;
	}
	kb_row_set(r, id, KB_FAIL, "%d volume%s whose file is gone in pool %s (e.g. %s): 'cannot stat file'",
		   stale_volumes, stale_volumes == 1 ? "" : "s", stale_pools, example);
	kb_row_hint(r, "virsh pool-refresh POOL (kvmbox doctor --fix does it)");
	if (d->fix) {
		char done[300];
		snprintf(done, sizeof(done), "refreshed %s", stale_pools);
		report_fix(r, rc, &err, done);
	}
}

/* ---- defined domains ------------------------------------------------------------------ */

static int by_domain_name(const void *a, const void *b)
{
	const char *x = ((const struct defined_domain *)a)->name, *y = ((const struct defined_domain *)b)->name;
	return strcmp(x ? x : "", y ? y : "");
}

/*
 * The persistent domains' inactive definitions, fetched and parsed once for
 * every diagnosis that reads them; by name, so that lists of them read the
 * same from run to run (libvirt's order is its hash table's).
 */
static const struct defined_domain *defined_domains(struct doctor *d)
{
	if (d->defined_read)
		return d->defined;
	d->defined_read = true;
	const struct kb_virt *v = &d->virt;
	virDomainPtr *domains = NULL;
	d->defined_count = v->list_domains(d->conn, &domains, VIR_CONNECT_LIST_DOMAINS_PERSISTENT);
	struct defined_domain *defined = calloc(d->defined_count > 0 ? (size_t)d->defined_count : 1, sizeof(*defined));
	for (int i = 0; i < d->defined_count; i++) {
		if (defined) {
			autofree char *definition = v->domain_xml(domains[i], VIR_DOMAIN_XML_INACTIVE);
			const char *name = v->domain_name(domains[i]);
			defined[i].doc = definition ? kb_xml_parse(&d->xml, definition, strlen(definition), name, NULL) : NULL;
			defined[i].name = strdup(name ? name : "");
		}
		v->domain_free(domains[i]);
	}
	free(domains);
	d->defined = defined;
	if (!d->defined)
		d->defined_count = 0;
	if (d->defined_count > 1)
		qsort(d->defined, (size_t)d->defined_count, sizeof(*d->defined), by_domain_name);
	v->reset_error();
	return d->defined;
}

static void free_defined_domains(struct doctor *d)
{
	for (int i = 0; d->defined && i < d->defined_count; i++) {
		free(d->defined[i].name);
		if (d->defined[i].doc)
			d->xml.free_doc(d->defined[i].doc);
	}
	free(d->defined);
}

static void diagnose_domains(struct doctor *d)
{
	bool machine = selected(d, "machine.type"), serial = selected(d, "serial.none");
	if (!machine && !serial)
		return;
	if (!d->conn) {
		if (machine)
			need_libvirt(d, "machine.type");
		if (serial)
			need_libvirt(d, "serial.none");
		return;
	}
	const struct defined_domain *defined = defined_domains(d);
	int count = d->defined_count;
	char bad_machine[300] = "", no_serial[300] = "", machine_fix[256] = "";
	int bad_machines = 0, no_serials = 0;
	struct kb_preflight_host host = { .caps_xml = d->caps_xml, .caps = d->caps, .reads = &d->reads, .kvm = &d->kvm };
	/* One buffer for every domain's findings: kb_preflight() adds to what it holds. */
	struct kb_findings *f = calloc(1, sizeof(*f));
	for (int i = 0; i < count; i++) {
		const char *name = defined[i].name ? defined[i].name : "";
		xmlDoc *doc = defined[i].doc;
		if (f)
			memset(f, 0, sizeof(*f));
		if (f && doc && kb_preflight(d->ctx, &d->xml, doc, &host, f, NULL) == 0) {
			for (size_t k = 0; k < f->count; k++) {
				bool is_machine = !strcmp(f->item[k].id, "machine.type");
				bool is_serial = !strcmp(f->item[k].id, "serial.none");
				char *list = is_machine ? bad_machine : is_serial ? no_serial : NULL;
				if (!list)
					continue;
				size_t used = strlen(list);
				snprintf(list + used, sizeof(bad_machine) - used, "%s%s", used ? ", " : "", name);
				if (is_machine && !bad_machines++)
					snprintf(machine_fix, sizeof(machine_fix), "%s", f->item[k].fix);
				if (is_serial)
					no_serials++;
			}
		}
	}
	free(f);
	if (machine) {
		struct kb_row *r = kb_rows_add(&d->rows);
		if (!bad_machines) {
			kb_row_set(r, "machine.type", KB_PASS, "%d defined domain%s, every machine type offered", count, count == 1 ? "" : "s");
		} else {
			kb_row_set(r, "machine.type", KB_FAIL, "%d domain%s with a machine type this QEMU does not offer ('unsupported machine type'): %s",
				   bad_machines, bad_machines == 1 ? "" : "s", bad_machine);
			kb_row_hint(r, "virsh dumpxml --inactive NAME > NAME.xml; %s; kvmbox domain define NAME.xml", machine_fix);
		}
	}
	if (serial) {
		struct kb_row *r = kb_rows_add(&d->rows);
		if (!no_serials) {
			kb_row_set(r, "serial.none", KB_PASS, "every defined domain has a serial console");
		} else {
			kb_row_set(r, "serial.none", KB_WARN, "%d domain%s without a serial console (virsh console will not work): %s",
				   no_serials, no_serials == 1 ? "" : "s", no_serial);
			kb_row_hint(r, "add <serial type='pty'/><console type='pty'/> to <devices> (virsh edit NAME)");
		}
	}
}

/* ---- PCI devices passed through ------------------------------------------------- */

/*
 * hostdev.group: VFIO hands a guest a whole IOMMU group; with a member still
 * on a host driver, QEMU fails with "group N is not viable". libvirt's
 * managed='yes' detaches the named device only, not the rest of its group.
 */
static bool viable_driver(const char *driver)
{
	return !driver[0] || !strcmp(driver, KB_PCI_VFIO) || !strcmp(driver, "pci-stub");
}

struct hostdev_problem {
	char domain[128], addr[16], why[256];
	enum kb_doctor_reason reason;
	bool host_uses;
};

static void hostdev_problems(struct doctor *d, struct kb_pci_host *pci, struct hostdev_problem *out, int *count,
			     int max, int *hostdevs)
{
	const struct defined_domain *defined = defined_domains(d);
	*count = *hostdevs = 0;
	for (int i = 0; i < d->defined_count; i++) {
		const char *name = defined[i].name ? defined[i].name : "";
		xmlDoc *doc = defined[i].doc;
		xmlNode *devices = doc ? kb_xml_child(d->xml.root_element(doc), "devices") : NULL;
		for (xmlNode *h = kb_xml_child(devices, "hostdev"); h && *count < max; h = kb_xml_next(h, "hostdev")) {
			if (!kb_xml_prop_is(&d->xml, h, "type", "pci"))
				continue;
			xmlNode *a = kb_xml_child(kb_xml_child(h, "source"), "address");
			autofree char *dom = kb_xml_prop(&d->xml, a, "domain"), *bus = kb_xml_prop(&d->xml, a, "bus");
			autofree char *slot = kb_xml_prop(&d->xml, a, "slot"), *fn = kb_xml_prop(&d->xml, a, "function");
			if (!bus || !slot || !fn)
				continue;
			(*hostdevs)++;
			bool managed = !kb_xml_prop_is(&d->xml, h, "managed", "no");
			struct hostdev_problem *p = &out[*count];
			*p = (struct hostdev_problem){ 0 };
			snprintf(p->domain, sizeof(p->domain), "%s", name);
			snprintf(p->addr, sizeof(p->addr), "%04lx:%02lx:%02lx.%lx", dom ? strtoul(dom, NULL, 0) : 0,
				 strtoul(bus, NULL, 0), strtoul(slot, NULL, 0), strtoul(fn, NULL, 0));
			struct kb_pci_dev *dev = kb_pci_find(pci, p->addr);
			if (!dev) {
				p->reason = KB_REASON_HOSTDEV_ABSENT;
				snprintf(p->why, sizeof(p->why), "%s is not on this host", p->addr);
			} else if (dev->group < 0) {
				p->reason = KB_REASON_HOSTDEV_NO_IOMMU;
				snprintf(p->why, sizeof(p->why), "%s has no IOMMU group (kvmbox grub-args --iommu)", p->addr);
			} else {
				for (int k = 0; k < pci->count && !p->reason; k++) {
					const struct kb_pci_dev *m = &pci->dev[k];
					if (m->group != dev->group || m->bridge || viable_driver(m->driver) || (m == dev && managed))
						continue;
					p->reason = KB_REASON_GROUP_NOT_VIABLE;
					snprintf(p->why, sizeof(p->why), "IOMMU group %d holds %s on %s (group not viable)", dev->group,
						 m->addr, m->driver);
				}
				const struct kb_pci_dev *used = kb_pci_group_host_use(pci, dev);
				p->host_uses = used != NULL;
				if (p->reason && used)
					snprintf(p->why + strlen(p->why), sizeof(p->why) - strlen(p->why), ", and the host uses %s: %.100s",
						 used->addr, used->host_use);
			}
			if (p->reason)
				(*count)++;
		}
	}
}

static void judge_hostdevs(struct doctor *d, struct kb_row *r, struct hostdev_problem *problems, int *count)
{
	struct kb_pci_host *pci = calloc(1, sizeof(*pci));
	struct kb_error err = { 0 };
	int hostdevs = 0;
	*count = 0;
	if (!pci || kb_pci_scan(d->ctx, pci, &err) < 0) {
		char msg[PATH_MAX + 160];
		kb_row_set(r, "hostdev.group", KB_WARN, "PCI devices not readable: %s",
			   pci ? kb_error_message(&err, msg, sizeof(msg)) : "out of memory");
		if (pci)
			kb_pci_host_free(pci);
		free(pci);
		return;
	}
	hostdev_problems(d, pci, problems, count, 16, &hostdevs);
	kb_pci_host_free(pci);
	free(pci);
	if (*count == 0) {
		kb_row_set(r, "hostdev.group", KB_PASS, "%d PCI device%s passed through, every IOMMU group viable", hostdevs,
			   hostdevs == 1 ? "" : "s");
		return;
	}
	kb_row_set(r, "hostdev.group", KB_FAIL, "domain %s: %s", problems[0].domain, problems[0].why);
	if (problems[0].host_uses)
		kb_row_hint(r, "the host needs that group: pass through a device of another group");
	else
		kb_row_hint(r, "kvmbox pci prepare %s (the whole group to vfio-pci)", problems[0].addr);
}

static void diagnose_hostdevs(struct doctor *d)
{
	if (!selected(d, "hostdev.group"))
		return;
	if (!d->conn) {
		need_libvirt(d, "hostdev.group");
		return;
	}
	struct kb_row *r = kb_rows_add(&d->rows);
	struct hostdev_problem problems[16];
	int count;
	judge_hostdevs(d, r, problems, &count);
	if (!d->fix || count == 0)
		return;
	/* pci prepare's plan and apply, only for a group not viable and never one the host uses; then judged again. */
	struct kb_error err = { 0 };
	int rc = 0;
	for (int i = 0; i < count && rc == 0; i++) {
		if (problems[i].host_uses || problems[i].reason != KB_REASON_GROUP_NOT_VIABLE)
			continue;
		struct kb_vfio_spec spec;
		kb_vfio_spec_init(&spec);
		autoplan struct kb_plan plan = { 0 };
		struct kb_error why = { 0 };
		rc = kb_vfio_spec_add(&spec, problems[i].addr, &why);
		if (rc == 0)
			rc = kb_vfio_plan(d->ctx, &spec, &plan, &why);
		if (rc == 0)
			rc = kb_vfio_apply(d->ctx, &spec, &plan, &why);
		if (rc != 0) {
			char msg[sizeof(why.what) + PATH_MAX + 64];
			kb_fail(&err, 0, NULL, "kvmbox pci prepare: %s", kb_error_message(&why, msg, sizeof(msg)));
		}
	}
	struct kb_row after;
	judge_hostdevs(d, &after, problems, &count);
	if (rc == 0 && after.status == KB_FAIL)
		kb_fail(&err, 0, NULL, "still: %s", after.message);
	report_fix(r, rc != 0 || after.status == KB_FAIL ? -1 : 0, &err, "kvmbox pci prepare bound the group to vfio-pci");
}

/* ---- pinned guests: memory nodes, NUMA balancing, IRQs, shared CPUs ------------------ */

/* The running domains (libvirt's status files), read once; NULL with @r a WARN when they cannot be. */
static const struct kb_running *running_domains(struct doctor *d, struct kb_row *r, const char *id)
{
	struct kb_error err = { 0 };
	if (!d->running_read) {
		d->running_read = true;
		d->running = calloc(1, sizeof(*d->running));
		if (!d->running || kb_running_read(d->ctx, &d->xml, d->running, &err) < 0) {
			if (!d->running)
				kb_fail(&err, ENOMEM, NULL, "reading");
			free(d->running);
			d->running = NULL;
			char msg[sizeof(err.what) + PATH_MAX + 64];
			snprintf(d->running_error, sizeof(d->running_error), "%s", kb_error_message(&err, msg, sizeof(msg)));
		}
	}
	if (!d->running)
		kb_row_set(r, id, KB_WARN, "running domains not readable: %s", d->running_error);
	return d->running;
}

/* The host's NUMA nodes and CPUs, read once; NULL with @r a WARN when they cannot be. */
static const struct kb_topology *host_topology(struct doctor *d, struct kb_row *r, const char *id)
{
	struct kb_error err = { 0 };
	if (!d->topo_read) {
		d->topo_read = true;
		d->topo = calloc(1, sizeof(*d->topo));
		if (!d->topo || kb_topology_read(d->ctx, d->topo, &err) < 0) {
			if (!d->topo)
				kb_fail(&err, ENOMEM, NULL, "reading");
			free(d->topo);
			d->topo = NULL;
			char msg[sizeof(err.what) + PATH_MAX + 64];
			snprintf(d->topo_error, sizeof(d->topo_error), "%s", kb_error_message(&err, msg, sizeof(msg)));
		}
	}
	if (!d->topo)
		kb_row_set(r, id, KB_WARN, "the host's NUMA topology not readable: %s", d->topo_error);
	return d->topo;
}

static struct kb_cpuset cpuset_and(const struct kb_cpuset *a, const struct kb_cpuset *b)
{
	struct kb_cpuset both;
	for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
		both.bits[w] = a->bits[w] & b->bits[w];
	return both;
}

/* The nodes (as a set of node numbers) holding any of @cpus. */
static struct kb_cpuset nodes_of(const struct kb_topology *topo, const struct kb_cpuset *cpus)
{
	struct kb_cpuset nodes = { { 0 } };
	for (size_t i = 0; i < topo->node_count; i++)
		if (kb_cpuset_first_common(cpus, &topo->node[i].cpus) >= 0)
			kb_cpuset_add(&nodes, (unsigned)topo->node[i].id);
	return nodes;
}

/* @kib as "4.0 GiB" or "96 MiB" into @buf. */
static const char *size_text(unsigned long long kib, char *buf, size_t size)
{
	if (kib >= 1024ull * 1024)
		snprintf(buf, size, "%.1f GiB", (double)kib / (1024.0 * 1024.0));
	else
		snprintf(buf, size, "%llu MiB", kib / 1024);
	return buf;
}

/* Append to the list @buf (of @size), @sep between items; a full list ends in "...". */
static void list_add(char *buf, size_t size, const char *sep, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void list_add(char *buf, size_t size, const char *sep, const char *fmt, ...)
{
	size_t used = strlen(buf);
	if (used + 4 >= size)
		return;
	char item[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(item, sizeof(item), fmt, ap);
	va_end(ap);
	if (used + (used ? strlen(sep) : 0) + strlen(item) + 4 >= size)
		snprintf(buf + used, size - used, "%s...", used ? sep : "");
	else
		snprintf(buf + used, size - used, "%s%s", used ? sep : "", item);
}

/*
 * numa.memory: where a pinned guest's memory is, summed per node from its
 * QEMU's /proc/PID/numa_maps (as numastat -c qemu), against the nodes of the
 * CPUs its vCPUs are pinned to. Moving it stalls the guest: shown, not done.
 */
#define OFF_NODE_PERCENT 10

static void diagnose_numa_memory(struct doctor *d)
{
	const char *id = "numa.memory";
	if (!selected(d, id))
		return;
	struct kb_row *r = kb_rows_add(&d->rows);
	const struct kb_running *run = running_domains(d, r, id);
	if (!run)
		return;
	int pinned = 0, measured = 0, off = 0;
	for (size_t i = 0; i < run->count; i++)
		pinned += run->dom[i].pinned;
	if (!pinned) {
		kb_row_set(r, id, KB_PASS, "no pinned domain runs");
		return;
	}
	const struct kb_topology *topo = host_topology(d, r, id);
	if (!topo)
		return;
	char found[sizeof(r->message)] = "", hint[sizeof(r->hint)] = "";
	for (size_t i = 0; i < run->count; i++) {
		const struct kb_running_domain *dom = &run->dom[i];
		if (!dom->pinned)
			continue;
		unsigned long long kib[KB_NUMA_MAPS_NODES], total = 0, away = 0;
		if (kb_numa_maps_read(d->ctx, dom->pid, kib, &total, NULL) < 0 || !total)
			continue; /* QEMU gone since its status file was read */
		measured++;
		struct kb_cpuset home = nodes_of(topo, &dom->vcpus), away_nodes = { { 0 } };
		for (unsigned n = 0; n < KB_NUMA_MAPS_NODES; n++)
			if (kib[n] && !kb_cpuset_has(&home, n)) {
				away += kib[n];
				kb_cpuset_add(&away_nodes, n);
			}
		if (away * 100 <= total * OFF_NODE_PERCENT)
			continue;
		off++;
		char size[32], there[64], homes[64], bound[96] = "";
		kb_cpuset_format(&away_nodes, there, sizeof(there));
		kb_cpuset_format(&home, homes, sizeof(homes));
		struct kb_cpuset bound_home = cpuset_and(&dom->memory_nodes, &home);
		if (kb_cpuset_count(&dom->memory_nodes) && kb_cpuset_count(&bound_home) != kb_cpuset_count(&dom->memory_nodes)) {
			char nodes[64];
			snprintf(bound, sizeof(bound), " (numatune binds node%s %s)",
				 kb_cpuset_count(&dom->memory_nodes) == 1 ? "" : "s",
				 kb_cpuset_format(&dom->memory_nodes, nodes, sizeof(nodes)));
		}
		list_add(found, sizeof(found), "; ", "%s: %llu %% of %s on node%s %s, its vCPUs on node%s %s%s", dom->name,
			 (away * 100 + total / 2) / total, size_text(total, size, sizeof(size)),
			 kb_cpuset_count(&away_nodes) == 1 ? "" : "s", there, kb_cpuset_count(&home) == 1 ? "" : "s", homes, bound);
		if (!hint[0])
			snprintf(hint, sizeof(hint),
				 "virsh numatune %.64s --mode strict --nodeset %.40s --live --config (the kernel moves its memory "
				 "to its vCPUs' node%s; numastat -c qemu shows it)",
				 dom->name, homes, kb_cpuset_count(&home) == 1 ? "" : "s");
	}
	if (!off) {
		kb_row_set(r, id, KB_PASS, "%d pinned domain%s running, %d read from /proc/PID/numa_maps: memory on %s vCPUs' nodes",
			   pinned, pinned == 1 ? "" : "s", measured, pinned == 1 ? "its" : "their");
		return;
	}
	kb_row_set(r, id, KB_WARN, "%d pinned domain%s with over %d %% of %s memory off %s vCPUs' nodes: %s", off,
		   off == 1 ? "" : "s", OFF_NODE_PERCENT, off == 1 ? "its" : "their", off == 1 ? "its" : "their", found);
	kb_row_hint(r, "%s", hint);
}

/* numa.balancing: automatic NUMA balancing unmaps pinned guests' pages to sample them (hinting faults). */
static void diagnose_numa_balancing(struct doctor *d)
{
	const char *id = "numa.balancing";
	if (!selected(d, id))
		return;
	struct kb_row *r = kb_rows_add(&d->rows);
	const struct kb_running *run = running_domains(d, r, id);
	if (!run)
		return;
	char value[16];
	if (kb_read_value(d->ctx, KB_TUNE_NUMA_BALANCING, value, sizeof(value), NULL) < 0) {
		kb_row_set(r, id, KB_PASS, "this kernel has no automatic NUMA balancing (no %s)", KB_TUNE_NUMA_BALANCING);
		return;
	}
	char names[200] = "";
	int pinned = 0;
	for (size_t i = 0; i < run->count; i++)
		if (run->dom[i].pinned && ++pinned)
			list_add(names, sizeof(names), ", ", "%s", run->dom[i].name);
	enum kb_doctor_reason reason = strcmp(value, "0") && pinned ? KB_REASON_NUMA_BALANCING : KB_REASON_NONE;
	if (reason == KB_REASON_NONE) {
		kb_row_set(r, id, KB_PASS, "kernel.numa_balancing = %s%s", value,
			   !strcmp(value, "0") ? "" : ", and no pinned domain runs");
		return;
	}
	kb_row_set(r, id, KB_WARN,
		   "kernel.numa_balancing = %s while %d pinned domain%s run%s (%s): the kernel keeps unmapping their "
		   "memory to sample where it is used, and migrates it",
		   value, pinned, pinned == 1 ? "" : "s", pinned == 1 ? "s" : "", names);
	kb_row_hint(r, "kvmbox tune (kernel.numa_balancing = 0 in %s), or sysctl -w kernel.numa_balancing=0",
		    KB_TUNE_SYSCTL_FILE);
	if (!d->fix || reason != KB_REASON_NUMA_BALANCING)
		return;
	/* tune's own plan for it: off now and at every boot. */
	autoplan struct kb_plan plan = { 0 };
	struct kb_error err = { 0 };
	int rc = kb_tune_balancing_plan(d->ctx, &plan, &err);
	if (rc == 0)
		rc = kb_tune_balancing_apply(d->ctx, &plan, &err);
	report_fix(r, rc, &err, "kernel.numa_balancing = 0 now and in " KB_TUNE_SYSCTL_FILE);
}

/* One IRQ whose affinity reaches isolated CPUs. */
struct irq_on_isolated {
	unsigned irq;
	char handler[64];
	struct kb_cpuset affinity;
};

/* Whether the kernel manages IRQ @irq's affinity (debugfs says so where it is mounted): no one may move it. */
static bool irq_managed(const struct doctor *d, unsigned irq)
{
	char path[64];
	autofree char *text = NULL;
	size_t len = 0;
	snprintf(path, sizeof(path), "/sys/kernel/debug/irq/irqs/%u", irq);
	return kb_read_file(d->ctx, path, 1 << 16, &text, &len, NULL) == 0 && strstr(text, "AFFINITY_MANAGED");
}

/*
 * How many IRQs with a handler, not managed, have an smp_affinity_list that
 * includes one of @isolated; the lowest @max of them into @out (*@listed).
 */
static size_t irqs_on_isolated(const struct doctor *d, const struct kb_cpuset *isolated, struct irq_on_isolated *out,
			       size_t max, size_t *listed, size_t *seen)
{
	size_t count = 0;
	*seen = *listed = 0;
	DIR *dir = kb_sysroot_opendir(d->ctx, "/proc/irq", NULL);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		char *end;
		unsigned long irq = strtoul(e->d_name, &end, 10);
		if (!isdigit((unsigned char)e->d_name[0]) || *end)
			continue;
		char path[64], list[KB_CPUSET_MAX];
		struct irq_on_isolated one = { .irq = (unsigned)irq };
		/* A handler is a directory named after its device: an IRQ without one fires nowhere. */
		snprintf(path, sizeof(path), "/proc/irq/%lu", irq);
		DIR *sub = kb_sysroot_opendir(d->ctx, path, NULL);
		struct dirent *h;
		while (sub && (h = readdir(sub)) && !one.handler[0])
			if (h->d_type == DT_DIR && h->d_name[0] != '.')
				snprintf(one.handler, sizeof(one.handler), "%.*s", (int)sizeof(one.handler) - 1, h->d_name);
		if (sub)
			closedir(sub);
		snprintf(path, sizeof(path), "/proc/irq/%lu/smp_affinity_list", irq);
		if (!one.handler[0] || kb_read_value(d->ctx, path, list, sizeof(list), NULL) < 0 ||
		    kb_cpuset_parse(list, &one.affinity) < 0)
			continue;
		(*seen)++;
		if (kb_cpuset_first_common(&one.affinity, isolated) < 0 || irq_managed(d, one.irq))
			continue;
		/* Sorted by number, whatever readdir's order. */
		count++;
		size_t at = *listed < max ? (*listed)++ : max;
		for (; at > 0 && out[at - 1].irq > one.irq; at--)
			if (at < max)
				out[at] = out[at - 1];
		if (at < max)
			out[at] = one;
	}
	if (dir)
		closedir(dir);
	return count;
}

/* The pid of the running irqbalance, or 0: a process whose comm is irqbalance. */
static long irqbalance_pid(const struct doctor *d)
{
	DIR *dir = kb_sysroot_opendir(d->ctx, "/proc", NULL);
	struct dirent *e;
	long pid = 0;
	while (dir && !pid && (e = readdir(dir))) {
		char *end, path[64], comm[32];
		long p = strtol(e->d_name, &end, 10);
		if (!isdigit((unsigned char)e->d_name[0]) || *end)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/comm", p);
		if (kb_read_value(d->ctx, path, comm, sizeof(comm), NULL) == 0 && !strcmp(comm, "irqbalance"))
			pid = p;
	}
	if (dir)
		closedir(dir);
	return pid;
}

/* KB_TUNE_IRQBALANCE_VAR in process @pid's environment into @buf; false when it has none. */
static bool irqbalance_banned(const struct doctor *d, long pid, char *buf, size_t size)
{
	char path[64];
	autofree char *env = NULL;
	size_t len = 0;
	snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
	if (kb_read_file(d->ctx, path, 1 << 20, &env, &len, NULL) < 0)
		return false;
	size_t n = strlen(KB_TUNE_IRQBALANCE_VAR);
	for (const char *v = env; v < env + len; v += strlen(v) + 1)
		if (!strncmp(v, KB_TUNE_IRQBALANCE_VAR, n) && v[n] == '=') {
			snprintf(buf, size, "%s", v + n + 1);
			return true;
		}
	return false;
}

#define IRQS_LISTED 64

/*
 * irq.isolated: device interrupts on the CPUs isolcpus= keeps for guests.
 * irqbalance started without IRQBALANCE_BANNED_CPULIST covering them puts
 * them back: then the fix is tune's banned list and a restart (shown); else
 * --fix moves each IRQ off the isolated CPUs now.
 */
static void diagnose_irqs(struct doctor *d)
{
	const char *id = "irq.isolated";
	if (!selected(d, id))
		return;
	struct kb_row *r = kb_rows_add(&d->rows);
	autofree char *cmdline = NULL;
	size_t len = 0;
	struct kb_cpuset isolated;
	if (kb_read_file(d->ctx, "/proc/cmdline", 1 << 16, &cmdline, &len, NULL) < 0)
		cmdline = NULL;
	if (!kb_isolcpus_of(cmdline, len, &isolated) || !kb_cpuset_count(&isolated)) {
		kb_row_set(r, id, KB_PASS, "no isolcpus= on the running kernel's command line: no CPU is isolated");
		return;
	}
	const struct kb_topology *topo = host_topology(d, r, id);
	if (!topo)
		return;
	struct irq_on_isolated irqs[IRQS_LISTED];
	size_t seen = 0, listed_count = 0;
	size_t count = irqs_on_isolated(d, &isolated, irqs, IRQS_LISTED, &listed_count, &seen);
	char isolated_text[256];
	kb_cpuset_format(&isolated, isolated_text, sizeof(isolated_text));
	if (!count) {
		kb_row_set(r, id, KB_PASS, "%zu IRQ%s in use, none on the isolated CPUs %s", seen, seen == 1 ? "" : "s",
			   isolated_text);
		return;
	}
	char banned_text[256] = "", listed[200] = "", why[160];
	long pid = irqbalance_pid(d);
	bool banned = pid && irqbalance_banned(d, pid, banned_text, sizeof(banned_text));
	struct kb_cpuset banned_set = { { 0 } };
	bool covered = banned && kb_cpuset_parse(banned_text, &banned_set) == 0 &&
		       kb_cpuset_first_missing(&isolated, &banned_set) < 0;
	enum kb_doctor_reason reason = pid && !covered ? KB_REASON_IRQ_BALANCER : KB_REASON_IRQ_AFFINITY;
	for (size_t i = 0; i < listed_count; i++) {
		char affinity[64];
		list_add(listed, sizeof(listed), ", ", "%u %s (%s)", irqs[i].irq, irqs[i].handler,
			 kb_cpuset_format(&irqs[i].affinity, affinity, sizeof(affinity)));
	}
	if (!pid)
		snprintf(why, sizeof(why), "irqbalance does not run: the kernel's affinity (no irqaffinity=)");
	else if (!banned)
		snprintf(why, sizeof(why), "irqbalance (pid %ld) runs without %s", pid, KB_TUNE_IRQBALANCE_VAR);
	else
		snprintf(why, sizeof(why), "irqbalance (pid %ld) runs with %s=%.64s%s", pid, KB_TUNE_IRQBALANCE_VAR,
			 banned_text, covered ? "" : ", not all of them");
	kb_row_set(r, id, KB_WARN, "%zu IRQ%s may fire on the isolated CPUs %s; %s: %s", count, count == 1 ? "" : "s",
		   isolated_text, why, listed);
	struct kb_cpuset housekeeping = topo->online;
	for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
		housekeeping.bits[w] &= ~isolated.bits[w];
	char hk[256];
	kb_cpuset_format(&housekeeping, hk, sizeof(hk));
	if (reason == KB_REASON_IRQ_BALANCER)
		kb_row_hint(r, "kvmbox tune (%s=%s in %s), then systemctl restart irqbalance", KB_TUNE_IRQBALANCE_VAR,
			    isolated_text, KB_TUNE_IRQBALANCE);
	else
		kb_row_hint(r, "echo %s > /proc/irq/N/smp_affinity_list for each (kvmbox doctor --fix does it); "
			    "irqaffinity=%s at boot: kvmbox tune", hk, hk);
	if (!d->fix || reason != KB_REASON_IRQ_AFFINITY)
		return;
	/* Each IRQ keeps its housekeeping CPUs, or gets all of them; read back, as the kernel may refuse. */
	struct kb_error err = { 0 };
	int rc = 0;
	for (size_t i = 0; i < listed_count && rc == 0; i++) {
		struct kb_cpuset want = irqs[i].affinity, now;
		for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
			want.bits[w] &= ~isolated.bits[w];
		if (!kb_cpuset_count(&want))
			want = housekeeping;
		char path[64], text[KB_CPUSET_MAX], back[KB_CPUSET_MAX];
		snprintf(path, sizeof(path), "/proc/irq/%u/smp_affinity_list", irqs[i].irq);
		kb_cpuset_format(&want, text, sizeof(text));
		rc = kb_write_value(d->ctx, path, text, &err);
		if (rc == 0)
			rc = kb_read_value(d->ctx, path, back, sizeof(back), &err);
		if (rc == 0 && (kb_cpuset_parse(back, &now) < 0 || memcmp(&now, &want, sizeof(now))))
			rc = kb_fail(&err, 0, path, "wrote %s, read back %s from", text, back);
	}
	char done[sizeof(hk) + 64];
	snprintf(done, sizeof(done), "moved %zu IRQ%s to %s", listed_count, listed_count == 1 ? "" : "s", hk);
	report_fix(r, rc, &err, done);
}

/*
 * pin.overlap: two running domains pinned onto the same CPUs: a vCPU of
 * one where the other's vCPUs or emulator threads run. Emulator threads
 * sharing the housekeeping CPUs with each other is the placement's design.
 */
static void diagnose_pin_overlap(struct doctor *d)
{
	const char *id = "pin.overlap";
	if (!selected(d, id))
		return;
	struct kb_row *r = kb_rows_add(&d->rows);
	const struct kb_running *run = running_domains(d, r, id);
	if (!run)
		return;
	char found[sizeof(r->message)] = "", hint[sizeof(r->hint)] = "";
	int pinned = 0, pairs = 0;
	for (size_t i = 0; i < run->count; i++) {
		const struct kb_running_domain *a = &run->dom[i];
		pinned += a->pinned;
		for (size_t k = i + 1; a->pinned && k < run->count; k++) {
			const struct kb_running_domain *b = &run->dom[k];
			if (!b->pinned)
				continue;
			struct kb_cpuset vcpus = cpuset_and(&a->vcpus, &b->vcpus);
			struct kb_cpuset a_emu = cpuset_and(&a->emulator, &b->vcpus);
			struct kb_cpuset b_emu = cpuset_and(&a->vcpus, &b->emulator);
			if (!kb_cpuset_count(&vcpus) && !kb_cpuset_count(&a_emu) && !kb_cpuset_count(&b_emu))
				continue;
			pairs++;
			char item[400] = "", cpus[128];
			if (kb_cpuset_count(&vcpus))
				list_add(item, sizeof(item), ", ", "vCPUs of both on CPU%s %s", kb_cpuset_count(&vcpus) == 1 ? "" : "s",
					 kb_cpuset_format(&vcpus, cpus, sizeof(cpus)));
			if (kb_cpuset_count(&b_emu))
				list_add(item, sizeof(item), ", ", "%s's vCPUs and %s's emulator on %s", a->name, b->name,
					 kb_cpuset_format(&b_emu, cpus, sizeof(cpus)));
			if (kb_cpuset_count(&a_emu))
				list_add(item, sizeof(item), ", ", "%s's emulator and %s's vCPUs on %s", a->name, b->name,
					 kb_cpuset_format(&a_emu, cpus, sizeof(cpus)));
			list_add(found, sizeof(found), "; ", "%s and %s: %s", a->name, b->name, item);
			if (!hint[0])
				snprintf(hint, sizeof(hint),
					 "re-pin one of them (virsh vcpupin %.64s VCPU CPUS --live --config, virsh emulatorpin), or "
					 "define it again with kvmbox domain new --placement auto, which keeps off other guests' CPUs",
					 b->name);
		}
	}
	if (!pairs) {
		kb_row_set(r, id, KB_PASS, "%d pinned domain%s running, no CPU pinned by two", pinned, pinned == 1 ? "" : "s");
		return;
	}
	kb_row_set(r, id, KB_WARN, "%d pair%s of running domains pinned onto the same CPUs: %s", pairs, pairs == 1 ? "" : "s",
		   found);
	kb_row_hint(r, "%s", hint);
}

int doctor_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_FIX = KB_OPT_APPLET_FIRST, OPT_CONNECT };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "fix", no_argument, NULL, OPT_FIX },
		{ "connect", required_argument, NULL, OPT_CONNECT },
		{ 0 },
	};
	struct doctor *d = calloc(1, sizeof(*d));
	if (!d) {
		kb_say_error(ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	d->ctx = ctx;
	const char *connect = NULL;
	int opt, rc = -1;
	while (rc == -1 && (opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		if (opt == OPT_FIX)
			d->fix = true;
		else if (opt == OPT_CONNECT)
			connect = optarg;
		else
			rc = kb_common_option(ctx, opt, optarg);
	}
	static const char *const ids[] = { "libvirtd.running", "virtlogd.running", "kvm.dev", "virt.hardware",
					   "caps.cache", "pool.stale", "machine.type", "serial.none", "hostdev.group",
					   "numa.memory", "numa.balancing", "irq.isolated", "pin.overlap" };
	d->only = argv + optind;
	d->only_count = argc - optind;
	for (int i = 0; rc == -1 && i < d->only_count; i++) {
		bool known = false;
		for (size_t k = 0; k < sizeof(ids) / sizeof(ids[0]); k++)
			known = known || !strcmp(d->only[i], ids[k]);
		if (!known) {
			kb_say_error(ctx, "no diagnosis '%s' (kvmbox doctor --help lists them)", d->only[i]);
			rc = KB_EXIT_USAGE;
		}
	}
	if (rc == -1) {
		struct kb_error err = { 0 };
		/* Under another root, the host's libvirtd is not that system's: only when asked. */
		d->uri = connect || kb_sysroot_is_host(ctx) ? kb_virt_uri(connect) : NULL;
		if (kb_xml_load(&d->xml, &err) < 0) {
			kb_say_failure(ctx, &err);
			rc = KB_EXIT_FAILURE;
		}
	}
	if (rc == -1) {
		diagnose_daemon(d, "virtlogd.running", "virtlogd", VIRTLOGD_SOCKET, ": QEMU guests cannot start");
		diagnose_daemon(d, "libvirtd.running", "libvirtd", LIBVIRT_SOCKET, "");
		connect_libvirt(d);
		diagnose_kvm_dev(d);
		diagnose_virt_hardware(d);
		diagnose_caps_cache(d);
		diagnose_pools(d);
		diagnose_domains(d);
		diagnose_hostdevs(d);
		diagnose_numa_memory(d);
		diagnose_numa_balancing(d);
		diagnose_irqs(d);
		diagnose_pin_overlap(d);
		kb_rows_print(ctx, d->rows.row, d->rows.count);
		rc = KB_EXIT_OK;
		for (size_t i = 0; i < d->rows.count; i++)
			if (d->rows.row[i].status == KB_FAIL || d->rows.row[i].status == KB_FAILED)
				rc = KB_EXIT_FAILURE;
	}
	if (d->caps)
		d->xml.free_doc(d->caps);
	free(d->caps_xml);
	free(d->running);
	free(d->topo);
	free_defined_domains(d);
	if (d->conn)
		d->virt.connect_close(d->conn);
	free(d);
	return rc;
}
