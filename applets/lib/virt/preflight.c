/* Domain preflight; see kvmbox/virt/preflight.h. One function per kind of finding, in document order. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/core/accounts.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/virt/domxml.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/kvm.h"
#include "kvmbox/virt/firmware.h"
#include "kvmbox/host/pcidev.h"
#include "kvmbox/virt/preflight.h"
#include "kvmbox/core/sysroot.h"

/* What the checks share: the domain's key facts and where findings go. */
struct preflight {
	const struct kb_ctx *ctx;
	const struct kb_xml *xml;
	const struct kb_preflight_host *host;
	struct kb_findings *findings;
	xmlNode *domain, *devices;
	char *type, *arch, *machine, *emulator; /* malloc'ed; may be NULL */
	unsigned long long memory_kib;
	unsigned vcpus;
	xmlDoc *caps;    /* parsed capabilities, or NULL */
	xmlNode *guest;  /* caps' <guest> for the domain's arch, or NULL */
	char *domcaps_xml;
	xmlDoc *domcaps; /* parsed domain capabilities, or NULL */
};

static struct kb_finding *add_finding(struct preflight *p, enum kb_severity severity, const char *id,
				      xmlNode *where, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static struct kb_finding *add_finding(struct preflight *p, enum kb_severity severity, const char *id,
				      xmlNode *where, const char *fmt, ...)
{
	struct kb_findings *f = p->findings;
	/* When full, the last slot is reused: the list stays bounded, the count of errors stays right. */
	struct kb_finding *item = &f->item[f->count < KB_FINDINGS_MAX ? f->count++ : KB_FINDINGS_MAX - 1];
	memset(item, 0, sizeof(*item));
	item->severity = severity;
	snprintf(item->id, sizeof(item->id), "%s", id);
	kb_xml_where(p->xml, where, item->element, sizeof(item->element));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(item->message, sizeof(item->message), fmt, ap);
	va_end(ap);
	if (severity == KB_SEVERITY_ERROR)
		f->errors++;
	return item;
}

static void set_fix(struct kb_finding *item, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_fix(struct kb_finding *item, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(item->fix, sizeof(item->fix), fmt, ap);
	va_end(ap);
}

/* The caller's cache of host files for a run over many domains, or NULL. */
static struct kb_read_cache *host_reads(const struct preflight *p)
{
	return p->host ? p->host->reads : NULL;
}

/* stat() a host path inside the root, through every component (-1 with errno set). */
static int stat_mapped(const struct preflight *p, const char *abs_path, struct stat *st)
{
	struct kb_error err = { 0 };
	if (abs_path[0] != '/') {
		errno = EINVAL;
		return -1;
	}
	if (kb_sysroot_stat(p->ctx, abs_path, st, false, &err) < 0) {
		errno = err.errnum ? err.errnum : EINVAL;
		return -1;
	}
	return 0;
}

/* ---- the host as libvirt describes it ----------------------------------- */

static xmlNode *caps_guest_for(const struct kb_xml *xml, xmlDoc *caps, const char *arch)
{
	xmlNode *root = caps ? xml->root_element(caps) : NULL;
	for (xmlNode *g = kb_xml_child(root, "guest"); g; g = kb_xml_next(g, "guest")) {
		xmlNode *a = kb_xml_child(g, "arch");
		if (a && kb_xml_prop_is(xml, a, "name", arch))
			return g;
	}
	return NULL;
}

/* Whether caps' <guest> offers @virttype (<domain type='kvm'/>). */
static bool guest_offers_type(const struct kb_xml *xml, xmlNode *guest, const char *virttype)
{
	xmlNode *arch = kb_xml_child(guest, "arch");
	for (xmlNode *d = kb_xml_child(arch, "domain"); d; d = kb_xml_next(d, "domain"))
		if (kb_xml_prop_is(xml, d, "type", virttype))
			return true;
	return false;
}

bool kb_caps_offers(const struct kb_xml *xml, const char *caps_xml, const char *arch, const char *virttype)
{
	xmlDoc *caps = caps_xml ? kb_xml_parse(xml, caps_xml, strlen(caps_xml), "capabilities", NULL) : NULL;
	bool offered = caps && guest_offers_type(xml, caps_guest_for(xml, caps, arch), virttype);
	if (caps)
		xml->free_doc(caps);
	return offered;
}

/*
 * Append the machine names under @parent to @buf: first the aliases (pc, q35:
 * what users should pick), then every versioned name.
 */
static void list_machines(const struct kb_xml *xml, xmlNode *parent, char *buf, size_t size)
{
	for (int pass = 0; pass < 2; pass++)
	for (xmlNode *m = kb_xml_child(parent, "machine"); m; m = kb_xml_next(m, "machine")) {
		autofree char *name = kb_xml_text(xml, m);
		autofree char *canonical = kb_xml_prop(xml, m, "canonical");
		if (pass == 0 && !canonical)
			continue;
		const char *names[] = { pass == 0 ? name : NULL, pass == 0 ? NULL : name };
		for (size_t i = 0; i < 2; i++) {
			if (!names[i] || !*names[i])
				continue;
			size_t used = strlen(buf);
			/* Skip names already listed (each machine appears per domain type too). */
			char needle[256];
			snprintf(needle, sizeof(needle), ",%s,", names[i]);
			char haystack[4096];
			snprintf(haystack, sizeof(haystack), ",%s,", buf);
			if (strstr(haystack, needle))
				continue;
			snprintf(buf + used, size - used, "%s%s", used ? "," : "", names[i]);
		}
	}
}

/* Every machine type @guest offers for @virttype (NULL: any), comma-separated, into @buf. */
static const char *offered_machines(const struct kb_xml *xml, xmlNode *guest, const char *virttype, char *buf,
				    size_t size)
{
	buf[0] = '\0';
	xmlNode *a = kb_xml_child(guest, "arch");
	list_machines(xml, a, buf, size);
	for (xmlNode *d = kb_xml_child(a, "domain"); d; d = kb_xml_next(d, "domain"))
		if (!virttype || kb_xml_prop_is(xml, d, "type", virttype))
			list_machines(xml, d, buf, size);
	return buf;
}

const char *kb_preflight_machines(const struct kb_xml *xml, const char *caps_xml, const char *arch,
				  const char *virttype, char *buf, size_t size)
{
	xmlDoc *caps = kb_xml_parse(xml, caps_xml, strlen(caps_xml), "capabilities", NULL);
	offered_machines(xml, caps_guest_for(xml, caps, arch), virttype, buf, size);
	if (caps)
		xml->free_doc(caps);
	return buf;
}

/* The host's arch as libvirt reports it (/capabilities/host/cpu/arch), "x86_64" when unknown. */
static char *host_arch(const struct preflight *p)
{
	xmlNode *root = p->caps ? p->xml->root_element(p->caps) : NULL;
	char *arch = kb_xml_text(p->xml, kb_xml_child(kb_xml_child(kb_xml_child(root, "host"), "cpu"), "arch"));
	return arch ? arch : strdup("x86_64");
}

bool kb_caps_qemu_identity(const struct kb_xml *xml, xmlDoc *caps, const char *virttype, uid_t *uid, gid_t *gid)
{
	xmlNode *root = caps ? xml->root_element(caps) : NULL;
	xmlNode *host = kb_xml_child(root, "host");
	for (xmlNode *s = kb_xml_child(host, "secmodel"); s; s = kb_xml_next(s, "secmodel")) {
		autofree char *model = kb_xml_text(xml, kb_xml_child(s, "model"));
		if (!model || strcmp(model, "dac") != 0)
			continue;
		for (xmlNode *b = kb_xml_child(s, "baselabel"); b; b = kb_xml_next(b, "baselabel")) {
			if (!kb_xml_prop_is(xml, b, "type", virttype))
				continue;
			autofree char *label = kb_xml_text(xml, b);
			unsigned u, g;
			if (label && sscanf(label, "+%u:+%u", &u, &g) == 2) {
				*uid = u;
				*gid = g;
				return true;
			}
		}
	}
	return false;
}

/* ---- the checks ---------------------------------------------------------- */

static void check_kvm_device(struct preflight *p)
{
	if (!p->type || strcmp(p->type, "kvm") != 0)
		return;
	const char *fix_load = "kvmbox kvm-load && kvmbox devkvm, or <domain type='qemu'> (TCG, slow)";
	struct stat st;
	if (stat_mapped(p, "/dev/kvm", &st) < 0) {
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "kvm.dev", p->domain,
				    "type='kvm' but /dev/kvm is missing (%s): the KVM module is not loaded",
				    strerror(errno)),
			"%s", fix_load);
		return;
	}
	if (!S_ISCHR(st.st_mode)) {
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "kvm.dev", p->domain,
				    "type='kvm' but /dev/kvm is not a character device"),
			"kvmbox devkvm");
		return;
	}
	uid_t uid;
	gid_t gid;
	if (kb_caps_qemu_identity(p->xml, p->caps, "kvm", &uid, &gid) && !kb_may_access(p->ctx, uid, gid, &st, R_OK | W_OK)) {
		char user[64], owner[64], group[64];
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "kvm.dev", p->domain,
				    "type='kvm' but QEMU runs as %s, which cannot open /dev/kvm (%s:%s %04o): "
				    "'Could not access KVM kernel module: Permission denied'",
				    kb_user_name(p->ctx, uid, user, sizeof(user)),
				    kb_user_name(p->ctx, st.st_uid, owner, sizeof(owner)),
				    kb_group_name(p->ctx, st.st_gid, group, sizeof(group)), (unsigned)(st.st_mode & 07777)),
			"kvmbox devkvm (root:kvm 0660), with QEMU's user in group kvm");
		return;
	}
	if (p->guest && !guest_offers_type(p->xml, p->guest, "kvm"))
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "virt.hardware", p->domain,
				    "type='kvm' but libvirt offers no KVM guests for %s on this host", p->arch),
			"kvmbox check (VT-x/AMD-V, firmware, module), or <domain type='qemu'>");
}

static void check_emulator(struct preflight *p)
{
	xmlNode *node = kb_xml_child(p->devices, "emulator");
	if (!p->emulator || !node)
		return;
	struct stat st;
	bool ok = stat_mapped(p, p->emulator, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
	if (ok)
		return;
	autofree char *offered = p->guest ? kb_xml_text(p->xml, kb_xml_child(kb_xml_child(p->guest, "arch"), "emulator")) : NULL;
	struct kb_finding *f = add_finding(p, KB_SEVERITY_ERROR, "emulator.missing", node,
					   "emulator %s %s", p->emulator,
					   errno == ENOENT ? "does not exist" : "is not an executable file");
	if (offered)
		set_fix(f, "use <emulator>%s</emulator> (this host's QEMU for %s), or drop the element", offered, p->arch);
	else
		set_fix(f, "drop <emulator> so libvirt picks this host's QEMU");
}

/* The short name that stands for a versioned machine type: pc-q35-2.9 -> q35, pc-i440fx-2.9 -> pc. */
static const char *machine_family(const char *machine)
{
	if (strstr(machine, "q35"))
		return "q35";
	if (!strncmp(machine, "pc", 2))
		return "pc";
	if (strstr(machine, "virt"))
		return "virt";
	return NULL;
}

/* Returns whether the machine type is offered (or nothing is known), so the domain caps can be asked for it. */
static bool check_machine(struct preflight *p)
{
	if (!p->caps)
		return false;
	xmlNode *os_type = kb_xml_child(kb_xml_child(p->domain, "os"), "type");
	if (!p->guest) {
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "arch.missing", os_type ? os_type : p->domain,
				    "libvirt has no emulator for arch %s on this host", p->arch),
			"install the QEMU package for %s (qemu-system-...), or use the host's arch", p->arch);
		return false;
	}
	if (p->type && strcmp(p->type, "kvm") != 0 && !guest_offers_type(p->xml, p->guest, p->type))
		add_finding(p, KB_SEVERITY_ERROR, "domain.type", p->domain,
			    "libvirt offers no '%s' domains for %s on this host", p->type, p->arch);
	if (!p->machine)
		return true;
	char offered[4096];
	offered_machines(p->xml, p->guest, p->type, offered, sizeof(offered));
	char needle[256], haystack[sizeof(offered) + 2];
	snprintf(needle, sizeof(needle), ",%s,", p->machine);
	snprintf(haystack, sizeof(haystack), ",%s,", offered);
	if (strstr(haystack, needle))
		return true;
	const char *family = machine_family(p->machine);
	snprintf(needle, sizeof(needle), ",%s,", family ? family : "");
	bool family_offered = family && strstr(haystack, needle);
	struct kb_finding *f = add_finding(p, KB_SEVERITY_ERROR, "machine.type", os_type,
					   "machine type '%s' is not offered by this host's QEMU for %s "
					   "('unsupported machine type'); offered: %.200s",
					   p->machine, p->arch, offered);
	if (family_offered)
		set_fix(f, "set <type machine='%s'> (the current %s machine)", family, family);
	else
		set_fix(f, "set <type machine=...> to one of the offered types");
	return false;
}

static xmlDoc *load_domcaps(struct preflight *p, bool machine_ok)
{
	if (!p->host || !p->host->domcaps)
		return NULL;
	p->domcaps_xml = p->host->domcaps(p->host->opaque, p->emulator, p->arch, machine_ok ? p->machine : NULL,
					  p->type);
	if (!p->domcaps_xml)
		return NULL;
	return kb_xml_parse(p->xml, p->domcaps_xml, strlen(p->domcaps_xml), "domain capabilities", NULL);
}

/* The domcaps <mode name=NAME> under <cpu>. */
static xmlNode *domcaps_cpu_mode(struct preflight *p, const char *name)
{
	xmlNode *root = p->domcaps ? p->xml->root_element(p->domcaps) : NULL;
	xmlNode *cpu = kb_xml_child(root, "cpu");
	for (xmlNode *m = kb_xml_child(cpu, "mode"); m; m = kb_xml_next(m, "mode"))
		if (kb_xml_prop_is(p->xml, m, "name", name))
			return m;
	return NULL;
}

static void check_cpu_features(struct preflight *p, xmlNode *cpu)
{
	for (xmlNode *feat = kb_xml_child(cpu, "feature"); feat; feat = kb_xml_next(feat, "feature")) {
		autofree char *policy = kb_xml_prop(p->xml, feat, "policy");
		autofree char *name = kb_xml_prop(p->xml, feat, "name");
		if (!name || (policy && strcmp(policy, "require") != 0 && strcmp(policy, "force") != 0))
			continue;
		bool vmx = strcmp(name, "vmx") == 0, svm = strcmp(name, "svm") == 0;
		if (!vmx && !svm)
			continue;
		const char *module = vmx ? "kvm_intel" : "kvm_amd";
		if (p->type && strcmp(p->type, "kvm") == 0) {
			if (!kb_kvm_nested_on(p->ctx, module))
				set_fix(add_finding(p, KB_SEVERITY_ERROR, "cpu.nested", feat,
						    "the guest requires %s (a nested hypervisor) but %s has no nested=1 on this host",
						    name, module),
					"kvmbox kvm-load --nested --persist");
		} else if (vmx) {
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "cpu.nested", feat,
					    "the guest requires vmx, which QEMU's TCG does not emulate"),
				"use <domain type='kvm'> on a host with nested VT-x, or require svm with an AMD CPU model");
		}
	}
}

/* @s into @out (of @size) with XML's special characters escaped. */
static void append_escaped(char *out, size_t size, const char *s)
{
	size_t used = strlen(out);
	for (; *s && used + 7 < size; s++) {
		const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '\'' ? "&apos;" : NULL;
		if (e) {
			memcpy(out + used, e, strlen(e));
			used += strlen(e);
		} else {
			out[used++] = *s;
		}
	}
	out[used] = '\0';
}

/*
 * A model libvirt says this host cannot give as it is: whether the guest's
 * disabled features are what it lacks (then it starts: the notes' Haswell
 * with -rtm,-hle on a host without TSX) is libvirt's comparison to tell.
 */
static void check_unusable_model(struct preflight *p, xmlNode *cpu, xmlNode *model, const char *name, bool may_fall_back)
{
	char text[4096] = "<cpu mode='custom' match='exact'><model fallback='forbid'>", why[512] = "";
	append_escaped(text, sizeof(text), name);
	snprintf(text + strlen(text), sizeof(text) - strlen(text), "</model>");
	for (xmlNode *f = kb_xml_child(cpu, "feature"); f; f = kb_xml_next(f, "feature")) {
		autofree char *policy = kb_xml_prop(p->xml, f, "policy");
		autofree char *feature = kb_xml_prop(p->xml, f, "name");
		if (!feature || strlen(text) + 64 + strlen(feature) >= sizeof(text))
			continue;
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "<feature policy='%s' name='",
			 policy && !strcmp(policy, "disable") ? "disable" : policy && !strcmp(policy, "forbid") ? "forbid" : "require");
		append_escaped(text, sizeof(text), feature);
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "'/>");
	}
	snprintf(text + strlen(text), sizeof(text) - strlen(text), "</cpu>");
	int verdict = p->host && p->host->cpu_compare ? p->host->cpu_compare(p->host->opaque, p->emulator, p->arch, p->machine,
									      p->type, text, why, sizeof(why))
						      : -1;
	if (verdict == 1)
		return;
	enum kb_severity severity = may_fall_back ? KB_SEVERITY_WARN : KB_SEVERITY_ERROR;
	if (verdict == 0)
		set_fix(add_finding(p, severity, "cpu.model", model, "CPU model %s needs features this host's CPU lacks: %s", name, why),
			"disable them (<feature policy='disable' name=.../>; domain new: --cpu %s,-FEATURE...), or use <cpu mode='host-model'/>",
			name);
	else
		set_fix(add_finding(p, severity, "cpu.model", model,
				    "CPU model %s is known but not usable on this host (the host CPU lacks some of its features)", name),
			"use <cpu mode='host-model'/>, or an older model this host's CPU covers");
}

/*
 * A host-model, host-passthrough or maximum KVM guest gets the host's
 * IA32_ARCH_CAPABILITIES on each vCPU; where this host's KVM refuses it (some
 * nested hypervisors do), QEMU aborts the start: asked of the kernel.
 */
static void check_arch_capabilities(struct preflight *p, xmlNode *cpu, const char *mode)
{
	if (!p->type || strcmp(p->type, "kvm") ||
	    (strcmp(mode, "host-model") && strcmp(mode, "host-passthrough") && strcmp(mode, "maximum")))
		return;
	for (xmlNode *f = kb_xml_child(cpu, "feature"); f; f = kb_xml_next(f, "feature"))
		if (kb_xml_prop_is(p->xml, f, "name", "arch-capabilities") && kb_xml_prop_is(p->xml, f, "policy", "disable"))
			return; /* not forbid: libvirt then refuses to start the guest on a host CPU that has the feature */
	if (kb_kvm_arch_capabilities_settable_once(p->ctx, p->host ? p->host->kvm : NULL) == 0)
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "cpu.arch-capabilities", cpu,
				    "this host's KVM refuses IA32_ARCH_CAPABILITIES (MSR 0x10a) on a vCPU: QEMU aborts the start "
				    "of a %s guest (failed to set MSR 0x10a)", mode),
			"add <feature policy='disable' name='arch-capabilities'/> to <cpu> (kvmbox domain new does)");
}

static void check_cpu(struct preflight *p, bool machine_ok)
{
	xmlNode *cpu = kb_xml_child(p->domain, "cpu");
	if (!cpu)
		return;
	check_cpu_features(p, cpu);
	autofree char *mode = kb_xml_prop(p->xml, cpu, "mode");
	if (mode)
		check_arch_capabilities(p, cpu, mode); /* the kernel's answer: libvirt need not be reachable */
	p->domcaps = load_domcaps(p, machine_ok);
	if (!p->domcaps)
		return;
	xmlNode *model = kb_xml_child(cpu, "model");
	if (mode && strcmp(mode, "custom") != 0) {
		xmlNode *m = domcaps_cpu_mode(p, mode);
		if (m && kb_xml_prop_is(p->xml, m, "supported", "no"))
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "cpu.mode", cpu,
					    "CPU mode '%s' is not supported for type='%s' on this host", mode,
					    p->type ? p->type : "?"),
				"use <cpu mode='host-model'/> or a named model");
		return;
	}
	autofree char *name = kb_xml_text(p->xml, model);
	if (!name || !*name)
		return;
	bool may_fall_back = kb_xml_prop_is(p->xml, model, "fallback", "allow");
	xmlNode *custom = domcaps_cpu_mode(p, "custom");
	for (xmlNode *m = kb_xml_child(custom, "model"); m; m = kb_xml_next(m, "model")) {
		autofree char *offered = kb_xml_text(p->xml, m);
		if (!offered || strcmp(offered, name) != 0)
			continue;
		if (kb_xml_prop_is(p->xml, m, "usable", "no"))
			check_unusable_model(p, cpu, model, name, may_fall_back);
		return;
	}
	set_fix(add_finding(p, KB_SEVERITY_ERROR, "cpu.model", model, "CPU model %s is not known to this host's QEMU", name),
		"use <cpu mode='host-model'/> or a model from `virsh domcapabilities`");
}

static void check_numa(struct preflight *p)
{
	xmlNode *numa = kb_xml_child(kb_xml_child(p->domain, "cpu"), "numa");
	if (!numa)
		return;
	unsigned long long total = 0;
	struct kb_cpuset seen = { { 0 } };
	for (xmlNode *cell = kb_xml_child(numa, "cell"); cell; cell = kb_xml_next(cell, "cell")) {
		autofree char *memory = kb_xml_prop(p->xml, cell, "memory");
		autofree char *unit = kb_xml_prop(p->xml, cell, "unit");
		autofree char *cpus = kb_xml_prop(p->xml, cell, "cpus");
		total += memory ? kb_memory_kib(memory, unit) : 0;
		if (!cpus)
			continue;
		struct kb_cpuset set;
		if (kb_cpuset_parse(cpus, &set) < 0) {
			add_finding(p, KB_SEVERITY_ERROR, "numa.cpus", cell, "cpus='%s' is not a CPU list", cpus);
			continue;
		}
		int twice = kb_cpuset_first_common(&set, &seen);
		if (twice >= 0)
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "numa.cpus", cell,
					    "vCPU %d is in this cell and in an earlier one: cells' cpus must be disjoint", twice),
				"give each vCPU to exactly one <cell>");
		for (size_t i = 0; i < KB_CPUSET_MAX / 64; i++)
			seen.bits[i] |= set.bits[i];
		struct kb_cpuset vcpus = { { 0 } };
		char range[32];
		snprintf(range, sizeof(range), "0-%u", p->vcpus ? p->vcpus - 1 : 0);
		kb_cpuset_parse(range, &vcpus);
		int beyond = kb_cpuset_first_missing(&set, &vcpus);
		if (p->vcpus && beyond >= 0)
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "numa.cpus", cell,
					    "vCPU %d is in this cell but the domain has %u vCPUs", beyond, p->vcpus),
				"raise <vcpu> or shrink the cell's cpus");
	}
	if (p->memory_kib && total != p->memory_kib)
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "numa.memory", numa,
				    "the NUMA cells hold %llu KiB but the domain has %llu KiB of memory", total,
				    p->memory_kib),
			"make the cells' memory add up to <memory>");
}

/* More memory than the host has in all cannot be given (QEMU fails to allocate it, or the OOM killer ends it). */
static void check_memory(struct preflight *p)
{
	unsigned long long host_kib = kb_meminfo_kib_cached(p->ctx, host_reads(p), "/proc/meminfo", "MemTotal:");
	if (!host_kib || p->memory_kib <= host_kib)
		return;
	set_fix(add_finding(p, KB_SEVERITY_ERROR, "memory.host", kb_xml_child(p->domain, "memory"),
			    "the domain has %llu MiB of memory but this host has %llu MiB in all", p->memory_kib >> 10,
			    host_kib >> 10),
		"give it at most what the host can spare (<memory>), or run it on a larger host");
}

/* <numatune> nodesets name host NUMA nodes: one the host lacks fails the start (libvirt: "NUMA node N is unavailable"). */
static void check_numatune(struct preflight *p)
{
	xmlNode *tune = kb_xml_child(p->domain, "numatune");
	char online_text[256];
	struct kb_cpuset online;
	if (!tune ||
	    kb_read_value_cached(p->ctx, host_reads(p), "/sys/devices/system/node/online", online_text, sizeof(online_text), NULL) < 0 ||
	    kb_cpuset_parse(online_text, &online) < 0)
		return;
	for (xmlNode *n = tune->children; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE || (strcmp((const char *)n->name, "memory") && strcmp((const char *)n->name, "memnode")))
			continue;
		autofree char *nodeset = kb_xml_prop(p->xml, n, "nodeset");
		struct kb_cpuset set;
		if (!nodeset)
			continue;
		if (kb_cpuset_parse(nodeset, &set) < 0) {
			add_finding(p, KB_SEVERITY_ERROR, "numatune.node", n, "nodeset='%s' is not a list of NUMA nodes", nodeset);
			continue;
		}
		int missing = kb_cpuset_first_missing(&set, &online);
		if (missing >= 0)
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "numatune.node", n,
					    "nodeset='%s' names host NUMA node %d, which this host does not have (nodes: %s)", nodeset,
					    missing, online_text),
				"use nodes of /sys/devices/system/node/online (kvmbox domain new --placement auto chooses them)");
	}
}

/* The host's default hugepage size in KiB, 0 when it has none. */
static unsigned long default_hugepage_kib(const struct preflight *p)
{
	return (unsigned long)kb_meminfo_kib_cached(p->ctx, host_reads(p), "/proc/meminfo", "Hugepagesize:");
}

static void check_hugepages(struct preflight *p)
{
	xmlNode *huge = kb_xml_child(kb_xml_child(p->domain, "memoryBacking"), "hugepages");
	if (!huge || !p->memory_kib)
		return;
	unsigned long page_kib = default_hugepage_kib(p);
	xmlNode *page = kb_xml_child(huge, "page");
	if (page) {
		autofree char *size = kb_xml_prop(p->xml, page, "size");
		autofree char *unit = kb_xml_prop(p->xml, page, "unit");
		page_kib = size ? (unsigned long)kb_memory_kib(size, unit ? unit : "KiB") : 0;
	}
	if (!page_kib)
		return;
	char path[128], value[32];
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB/free_hugepages", page_kib);
	xmlNode *where = page ? page : huge;
	if (kb_read_value_cached(p->ctx, host_reads(p), path, value, sizeof(value), NULL) < 0) {
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "hugepages.size", where,
				    "the host has no %lu KiB hugepages (no %s)", page_kib, path),
			"use a page size the host has (kvmbox hugepages lists them)");
		return;
	}
	unsigned long long free_pages = strtoull(value, NULL, 10);
	autofree char *name = kb_xml_text(p->xml, kb_xml_child(p->domain, "name"));
	if (name && p->host && p->host->running && p->host->running(p->host->opaque, name))
		return; /* its pages are taken by itself: a new definition applies at its next start */
	unsigned long long need = (p->memory_kib + page_kib - 1) / page_kib;
	if (need > free_pages) {
		/* The fix sizes the whole pool: what it holds now plus what is missing. */
		unsigned long long total = 0;
		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB/nr_hugepages", page_kib);
		if (kb_read_value_cached(p->ctx, host_reads(p), path, value, sizeof(value), NULL) == 0)
			total = strtoull(value, NULL, 10);
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "hugepages.pool", where,
				    "the domain needs %llu hugepages of %lu KiB but the host has %llu free", need,
				    page_kib, free_pages),
			"kvmbox hugepages set %llu --size %luk", total + need - free_pages, page_kib);
	}
}

static void check_pinning_one(struct preflight *p, xmlNode *node, const struct kb_cpuset *online)
{
	autofree char *cpuset = kb_xml_prop(p->xml, node, "cpuset");
	if (!cpuset)
		return;
	struct kb_cpuset set;
	if (kb_cpuset_parse(cpuset, &set) < 0) {
		add_finding(p, KB_SEVERITY_ERROR, "cpu.pin", node, "cpuset='%s' is not a CPU list", cpuset);
		return;
	}
	int missing = kb_cpuset_first_missing(&set, online);
	if (missing >= 0)
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "cpu.pin", node,
				    "pinned to host CPU %d, which this host does not have (online: %u CPUs)", missing,
				    kb_cpuset_count(online)),
			"pin to CPUs in /sys/devices/system/cpu/online");
}

static void check_pinning(struct preflight *p)
{
	char online_text[256];
	struct kb_cpuset online;
	if (kb_read_value_cached(p->ctx, host_reads(p), "/sys/devices/system/cpu/online", online_text, sizeof(online_text), NULL) < 0 ||
	    kb_cpuset_parse(online_text, &online) < 0)
		return;
	check_pinning_one(p, kb_xml_child(p->domain, "vcpu"), &online);
	xmlNode *tune = kb_xml_child(p->domain, "cputune");
	for (xmlNode *pin = kb_xml_child(tune, "vcpupin"); pin; pin = kb_xml_next(pin, "vcpupin"))
		check_pinning_one(p, pin, &online);
	check_pinning_one(p, kb_xml_child(tune, "emulatorpin"), &online);
}

/* A libvirt network the interface is on: it must exist, and be active unless the caller starts it. */
static void check_network(struct preflight *p, xmlNode *source)
{
	autofree char *name = kb_xml_prop(p->xml, source, "network");
	int state = name && p->host && p->host->network ? p->host->network(p->host->opaque, name) : -2;
	bool to_start = false;
	for (const char *const *n = p->host && name ? p->host->to_start : NULL; n && *n && !to_start; n++)
		to_start = !strcmp(*n, name);
	if (state == -1)
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "network.missing", source, "libvirt network %s does not exist", name),
			"virsh net-list --all shows the networks; virsh net-define FILE makes one");
	else if (state == 0 && !to_start)
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "network.inactive", source, "libvirt network %s is not active", name),
			"virsh net-start %s (virsh net-autostart %s keeps it started)", name, name);
}

static void check_interfaces(struct preflight *p)
{
	for (xmlNode *nic = kb_xml_child(p->devices, "interface"); nic; nic = kb_xml_next(nic, "interface")) {
		if (kb_xml_prop_is(p->xml, nic, "type", "network"))
			check_network(p, kb_xml_child(nic, "source"));
		if (!kb_xml_prop_is(p->xml, nic, "type", "bridge"))
			continue;
		xmlNode *source = kb_xml_child(nic, "source");
		autofree char *bridge = kb_xml_prop(p->xml, source, "bridge");
		if (!bridge || !*bridge || strchr(bridge, '/'))
			continue;
		char path[128];
		struct stat st;
		snprintf(path, sizeof(path), "/sys/class/net/%s", bridge);
		bool exists = stat_mapped(p, path, &st) == 0;
		snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", bridge);
		if (exists && stat_mapped(p, path, &st) == 0)
			continue;
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "bridge.missing", source,
				    exists ? "interface %s exists but is not a bridge" : "bridge %s does not exist", bridge),
			"kvmbox bridge add %s --uplink IFACE", bridge);
	}
}

/* Whether @nic's <source> is on the LAN of @other: the same libvirt network, or the same bridge. */
static bool same_lan(const struct preflight *p, xmlNode *nic, const struct kb_preflight_nic *other)
{
	xmlNode *source = kb_xml_child(nic, "source");
	autofree char *network = kb_xml_prop(p->xml, source, "network");
	autofree char *bridge = kb_xml_prop(p->xml, source, "bridge");
	return (network && other->network[0] && !strcmp(network, other->network)) ||
	       (bridge && other->bridge[0] && !strcmp(bridge, other->bridge));
}

/*
 * A MAC another domain has (virt-install refuses one a running guest uses):
 * on the LAN of a running guest it is an error, else a warning (the two
 * cannot run on one LAN together).
 */
static void check_macs(struct preflight *p)
{
	for (xmlNode *nic = kb_xml_child(p->devices, "interface"); p->host && nic; nic = kb_xml_next(nic, "interface")) {
		xmlNode *mac_node = kb_xml_child(nic, "mac");
		autofree char *mac = kb_xml_prop(p->xml, mac_node, "address");
		const struct kb_preflight_nic *clash = NULL;
		for (size_t i = 0; mac && i < p->host->nic_count; i++) {
			const struct kb_preflight_nic *other = &p->host->nics[i];
			if (strcasecmp(other->mac, mac) != 0)
				continue;
			if (!clash || (other->running && same_lan(p, nic, other)))
				clash = other;
		}
		if (!clash)
			continue;
		bool error = clash->running && same_lan(p, nic, clash);
		const char *lan = clash->network[0] ? "network" : "bridge";
		set_fix(add_finding(p, error ? KB_SEVERITY_ERROR : KB_SEVERITY_WARN, "interface.mac", mac_node,
				    "MAC %s is %s domain %s's (on %s %s)%s", mac, clash->running ? "running" : "defined",
				    clash->domain, lan, clash->network[0] ? clash->network : clash->bridge[0] ? clash->bridge : "?",
				    error ? ": two guests with one MAC on one LAN lose each other's traffic"
					  : ": the two cannot run on one LAN together"),
			"leave the MAC out (libvirt makes a unique one), or set another <mac address=...>");
	}
}

/*
 * libvirt hands QEMU's user the image itself (dynamic ownership) but not
 * the directories above it: every one of them must let that user through.
 */
static void check_reachable(struct preflight *p, xmlNode *source, const char *path)
{
	uid_t uid;
	gid_t gid;
	if (!kb_caps_qemu_identity(p->xml, p->caps, p->type ? p->type : "kvm", &uid, &gid))
		return;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	for (char *slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		struct stat st;
		bool blocked = stat_mapped(p, dir, &st) == 0 && !kb_may_access(p->ctx, uid, gid, &st, X_OK);
		if (blocked) {
			char user[64], owner[64], group[64];
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "disk.access", source,
					    "QEMU's user %s cannot reach %s: directory %s is %s:%s %04o",
					    kb_user_name(p->ctx, uid, user, sizeof(user)), path, dir,
					    kb_user_name(p->ctx, st.st_uid, owner, sizeof(owner)),
					    kb_group_name(p->ctx, st.st_gid, group, sizeof(group)), (unsigned)(st.st_mode & 07777)),
				"chmod o+x %s, or keep images under /var/lib/libvirt/images", dir);
			return;
		}
		*slash = '/';
	}
}

static void check_disks(struct preflight *p)
{
	for (xmlNode *disk = kb_xml_child(p->devices, "disk"); disk; disk = kb_xml_next(disk, "disk")) {
		autofree char *type = kb_xml_prop(p->xml, disk, "type");
		const char *attr = !type || !strcmp(type, "file") ? "file" : !strcmp(type, "block") ? "dev" : NULL;
		xmlNode *source = kb_xml_child(disk, "source");
		autofree char *path = attr ? kb_xml_prop(p->xml, source, attr) : NULL;
		if (!path || !*path)
			continue; /* an empty cdrom, a network or pool volume */
		autofree char *device = kb_xml_prop(p->xml, disk, "device");
		autofree char *policy = kb_xml_prop(p->xml, source, "startupPolicy");
		bool optional = policy && (!strcmp(policy, "optional") || !strcmp(policy, "requisite"));
		const char *what = device && !strcmp(device, "cdrom") ? "cdrom" : device && !strcmp(device, "floppy") ? "floppy" : "disk";
		struct kb_path mapped;
		struct kb_error opening = { 0 };
		struct stat st;
		int e = 0;
		bool to_create = false;
		for (const char *const *c = p->host ? p->host->to_create : NULL; c && *c && !to_create; c++)
			to_create = !strcmp(*c, path);
		if (path[0] != '/' || kb_sysroot_path(p->ctx, path, &mapped, NULL) < 0)
			e = EINVAL;
		else if (to_create)
			e = 0; /* a volume the caller creates in its pool before defining */
		else if (stat_mapped(p, path, &st) < 0)
			e = errno;
		else if (S_ISDIR(st.st_mode))
			e = EISDIR;
		else {
			/* Opened inside the root through every component, as it was examined. */
			autoclose_fd fd = kb_sysroot_open(p->ctx, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0, &opening);
			if (fd < 0)
				e = opening.errnum ? opening.errnum : EIO;
		}
		if (!e) {
			check_reachable(p, source, path);
			continue;
		}
		set_fix(add_finding(p, optional ? KB_SEVERITY_WARN : KB_SEVERITY_ERROR, "disk.missing", source,
				    "%s source %s: %s%s", what, path, e == EINVAL ? "not an absolute path" : strerror(e),
				    optional ? " (startupPolicy lets the domain start without it)" : ""),
			"restore the file or fix <source %s=...>", attr);
	}
}

static void check_filesystems(struct preflight *p)
{
	for (xmlNode *fs = kb_xml_child(p->devices, "filesystem"); fs; fs = kb_xml_next(fs, "filesystem")) {
		autofree char *type = kb_xml_prop(p->xml, fs, "type");
		if (type && strcmp(type, "mount") != 0)
			continue;
		xmlNode *source = kb_xml_child(fs, "source");
		autofree char *dir = kb_xml_prop(p->xml, source, "dir");
		if (!dir)
			continue;
		struct stat st;
		if (stat_mapped(p, dir, &st) == 0 && S_ISDIR(st.st_mode))
			continue;
		bool absent = errno == ENOENT;
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "fs.missing", source, "shared directory %s %s", dir,
				    absent ? "does not exist" : "is not a directory"),
			"mkdir -p %s, or fix <source dir=...>", dir);
	}
}

static unsigned long hex_prop(const struct kb_xml *xml, xmlNode *node, const char *name)
{
	autofree char *v = kb_xml_prop(xml, node, name);
	return v ? strtoul(v, NULL, 0) : 0;
}

/* The PCI address a <hostdev type='pci'>'s source names, 0000:02:00.0; false when it names none. */
static bool hostdev_address(const struct kb_xml *xml, xmlNode *dev, char *bdf, size_t size)
{
	if (!kb_xml_prop_is(xml, dev, "type", "pci"))
		return false;
	xmlNode *address = kb_xml_child(kb_xml_child(dev, "source"), "address");
	if (!address)
		return false;
	snprintf(bdf, size, "%04lx:%02lx:%02lx.%lx", hex_prop(xml, address, "domain"), hex_prop(xml, address, "bus"),
		 hex_prop(xml, address, "slot"), hex_prop(xml, address, "function"));
	return true;
}

/* Whether the domain passes device @bdf through (in any <hostdev>). */
static bool domain_has_hostdev(const struct preflight *p, const char *bdf)
{
	char other[32];
	for (xmlNode *dev = kb_xml_child(p->devices, "hostdev"); dev; dev = kb_xml_next(dev, "hostdev"))
		if (hostdev_address(p->xml, dev, other, sizeof(other)) && !strcmp(other, bdf))
			return true;
	return false;
}

/* Whether a <hostdev> before @dev names @bdf already. */
static bool hostdev_named_before(const struct preflight *p, xmlNode *dev, const char *bdf)
{
	char other[32];
	for (xmlNode *d = kb_xml_child(p->devices, "hostdev"); d && d != dev; d = kb_xml_next(d, "hostdev"))
		if (hostdev_address(p->xml, d, other, sizeof(other)) && !strcmp(other, bdf))
			return true;
	return false;
}

/*
 * VFIO takes an IOMMU group whole: every other endpoint of @bdf's group must
 * be free of host drivers (none, vfio-pci, pci-stub) or go to this guest too
 * (libvirt's managed='yes' detaches only the devices listed). Bridges do not
 * count (the kernel allows them with any driver). Else the start fails with
 * "group N is not viable".
 */
static void check_iommu_group(struct preflight *p, xmlNode *address, const char *bdf)
{
	char dir[128], group[32];
	kb_pci_link_name(p->ctx, bdf, "iommu_group", group, sizeof(group));
	snprintf(dir, sizeof(dir), "/sys/kernel/iommu_groups/%.16s/devices", group);
	autoclose_dir members = group[0] ? kb_sysroot_opendir(p->ctx, dir, NULL) : NULL;
	struct dirent *de;
	char kept[256] = "";
	while (members && (de = readdir(members)) != NULL) {
		char member[32], driver[64], class_path[192], class_text[16] = "";
		if (de->d_name[0] == '.' || !kb_pci_parse_addr(de->d_name, member, sizeof(member)) || !strcmp(member, bdf) ||
		    domain_has_hostdev(p, member))
			continue;
		snprintf(class_path, sizeof(class_path), KB_PCI_DEVICES "/%s/class", member);
		unsigned long base_sub = kb_read_value(p->ctx, class_path, class_text, sizeof(class_text), NULL) == 0
						 ? strtoul(class_text, NULL, 16) >> 8 : 0;
		if (base_sub == 0x0600 || base_sub == 0x0604)
			continue;
		kb_pci_link_name(p->ctx, member, "driver", driver, sizeof(driver));
		if (!driver[0] || !strcmp(driver, KB_PCI_VFIO) || !strcmp(driver, "pci-stub"))
			continue;
		size_t used = strlen(kept);
		snprintf(kept + used, sizeof(kept) - used, "%s%s (%s)", used ? ", " : "", member, driver);
	}
	if (!kept[0])
		return;
	set_fix(add_finding(p, KB_SEVERITY_ERROR, "hostdev.group", address,
			    "PCI device %s: its IOMMU group %s also holds %s, which the host keeps: VFIO takes a group whole "
			    "(the start fails: 'group %s is not viable')", bdf, group, kept, group),
		"kvmbox pci prepare %s (binds the whole group to vfio-pci), or pass the other members to this guest too", bdf);
}

static void check_hostdevs(struct preflight *p)
{
	for (xmlNode *dev = kb_xml_child(p->devices, "hostdev"); dev; dev = kb_xml_next(dev, "hostdev")) {
		char bdf[32], path[128];
		if (!hostdev_address(p->xml, dev, bdf, sizeof(bdf)))
			continue;
		xmlNode *address = kb_xml_child(kb_xml_child(dev, "source"), "address");
		if (hostdev_named_before(p, dev, bdf)) {
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "hostdev.twice", address,
					    "PCI device %s is passed through twice: a device goes to one guest once", bdf),
				"remove the second <hostdev> for %s", bdf);
			continue;
		}
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
		struct stat st;
		if (stat_mapped(p, path, &st) < 0) {
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "hostdev.missing", address,
					    "PCI device %s does not exist on this host", bdf),
				"lspci -D lists the host's devices; fix the <address>");
			continue;
		}
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
		if (stat_mapped(p, path, &st) < 0) {
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "hostdev.iommu", address,
					    "PCI device %s has no IOMMU group: the IOMMU is off", bdf),
				"kvmbox grub-args --iommu, then reboot");
			continue;
		}
		check_iommu_group(p, address, bdf);
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
		char target[PATH_MAX];
		if (kb_sysroot_readlink(p->ctx, path, target, sizeof(target), NULL) <= 0)
			continue;
		const char *driver = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
		if (!strcmp(driver, "vfio-pci") || !strcmp(driver, "pci-stub"))
			continue;
		bool managed = !kb_xml_prop_is(p->xml, dev, "managed", "no");
		if (managed)
			set_fix(add_finding(p, KB_SEVERITY_WARN, "hostdev.driver", address,
					    "PCI device %s is in use by host driver %s: libvirt will take it from the host at start",
					    bdf, driver),
				"make sure the host does not need %s (e.g. it is not the host's NIC or disk)", bdf);
		else
			set_fix(add_finding(p, KB_SEVERITY_ERROR, "hostdev.driver", address,
					    "PCI device %s is bound to host driver %s and managed='no'", bdf, driver),
				"virsh nodedev-detach pci_%04lx_%02lx_%02lx_%lx, or managed='yes'",
				hex_prop(p->xml, address, "domain"), hex_prop(p->xml, address, "bus"),
				hex_prop(p->xml, address, "slot"), hex_prop(p->xml, address, "function"));
	}
}

/* A VNC console listening beyond loopback without a password is a console for anyone on that network. */
static void check_graphics(struct preflight *p)
{
	for (xmlNode *g = kb_xml_child(p->devices, "graphics"); g; g = kb_xml_next(g, "graphics")) {
		if (!kb_xml_prop_is(p->xml, g, "type", "vnc"))
			continue;
		autofree char *listen = kb_xml_prop(p->xml, g, "listen");
		autofree char *passwd = kb_xml_prop(p->xml, g, "passwd");
		autofree char *address = kb_xml_prop(p->xml, kb_xml_child(g, "listen"), "address");
		const char *where = address ? address : listen;
		bool loopback = !where || !strncmp(where, "127.", 4) || !strcmp(where, "::1") || !strcmp(where, "localhost");
		if (loopback || (passwd && *passwd))
			continue;
		set_fix(add_finding(p, KB_SEVERITY_WARN, "graphics.open", g,
				    "VNC listens on %s without a password: anyone who reaches this host on that network gets the guest's console",
				    where),
			"listen on 127.0.0.1 and tunnel (ssh -L 5900:127.0.0.1:5900), or set passwd=");
	}
}

static void check_console(struct preflight *p)
{
	if (kb_xml_child(p->devices, "serial") || kb_xml_child(p->devices, "console"))
		return;
	set_fix(add_finding(p, KB_SEVERITY_WARN, "serial.none", p->devices ? p->devices : p->domain,
			    "no serial console: `virsh console` will not work"),
		"add <serial type='pty'/> and <console type='pty'/> to <devices>");
}

/* ---- firmware ------------------------------------------------------------ */

/* A firmware descriptor of the root, as libvirt lists them: /etc/qemu/firmware first, a same-named file there hides /usr/share's. */
struct fw_file {
	char path[PATH_MAX];
};

/* Its file name (not kept as a pointer: the list grows and is sorted, which moves the paths). */
static const char *fw_name(const struct fw_file *f)
{
	return strrchr(f->path, '/') + 1;
}
struct fw_files {
	struct fw_file *item; /* as many as the directories hold (a host's firmware packages add theirs) */
	size_t count, capacity;
};

static void fw_files_free(struct fw_files *files)
{
	free(files->item);
}

static int add_fw_file(void *opaque, const char *abs_path)
{
	struct fw_files *files = opaque;
	const char *name = strrchr(abs_path, '/') + 1;
	for (size_t i = 0; i < files->count; i++)
		if (!strcmp(fw_name(&files->item[i]), name))
			return 0; /* /etc's overrides it */
	if (files->count == files->capacity) {
		size_t capacity = files->capacity ? files->capacity * 2 : 16;
		struct fw_file *grown = reallocarray(files->item, capacity, sizeof(*grown));
		if (!grown)
			return -1;
		files->item = grown;
		files->capacity = capacity;
	}
	snprintf(files->item[files->count++].path, sizeof(files->item[0].path), "%s", abs_path);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(fw_name(a), fw_name(b));
}

/* The machine type as libvirt matches it against a descriptor's globs: an alias (q35) as its version (pc-q35-7.2). */
static void versioned_machine(const struct preflight *p, char *buf, size_t size)
{
	snprintf(buf, size, "%s", p->machine ? p->machine : "");
	xmlNode *arch = kb_xml_child(p->guest, "arch");
	for (xmlNode *parent = arch; parent; parent = parent == arch ? kb_xml_child(arch, "domain") : kb_xml_next(parent, "domain"))
		for (xmlNode *m = kb_xml_child(parent, "machine"); m; m = kb_xml_next(m, "machine")) {
			autofree char *text = kb_xml_text(p->xml, m);
			autofree char *canonical = kb_xml_prop(p->xml, m, "canonical");
			if (text && canonical && p->machine && !strcmp(text, p->machine)) {
				snprintf(buf, size, "%s", canonical);
				return;
			}
		}
	/* Without libvirt's capabilities: the aliases as QEMU names their versions. */
	if (p->machine && !strcmp(p->machine, "q35"))
		snprintf(buf, size, "pc-q35-latest");
	else if (p->machine && !strcmp(p->machine, "pc"))
		snprintf(buf, size, "pc-i440fx-latest");
}

/* Whether @fw has every feature <firmware> enables and none it disables. */
static bool fw_features_ok(const struct preflight *p, xmlNode *firmware, const struct kb_firmware *fw)
{
	for (xmlNode *f = kb_xml_child(firmware, "feature"); f; f = kb_xml_next(f, "feature")) {
		autofree char *name = kb_xml_prop(p->xml, f, "name");
		if (name && kb_firmware_has(fw, name) != kb_xml_prop_is(p->xml, f, "enabled", "yes"))
			return false;
	}
	return true;
}

/* 0 when @path is a regular file inside the root, else why not (an errno). */
static int regular_file_error(const struct preflight *p, const char *path)
{
	struct stat st;
	if (stat_mapped(p, path, &st) < 0)
		return errno;
	return S_ISREG(st.st_mode) ? 0 : S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
}

/* A <loader> or an NVRAM template the domain names must exist: QEMU opens them at start. */
static void check_firmware_files(struct preflight *p, xmlNode *os)
{
	xmlNode *loader = kb_xml_child(os, "loader"), *nvram = kb_xml_child(os, "nvram");
	autofree char *path = kb_xml_text(p->xml, loader);
	autofree char *template = kb_xml_prop(p->xml, nvram, "template");
	int e;
	if (path && *path && (e = regular_file_error(p, path)))
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "firmware.loader", loader, "loader %s: %s", path, strerror(e)),
			"apt install ovmf, or <os firmware='efi'> without <loader> (libvirt picks this host's firmware)");
	if (template && *template && (e = regular_file_error(p, template)))
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "firmware.nvram", nvram, "NVRAM template %s: %s", template, strerror(e)),
			"name an existing *_VARS.fd (apt install ovmf), or drop template=");
}

/*
 * <os firmware='efi'>: libvirt picks the first descriptor (by file name) that
 * offers UEFI for the arch and machine with the features <firmware> asks for
 * and needs no SMM that <smm state='off'> takes away. None: the start fails
 * ("Unable to find any firmware to satisfy 'efi'"); the finding names what
 * the closest descriptors lack.
 */
static void check_firmware(struct preflight *p)
{
	xmlNode *os = kb_xml_child(p->domain, "os");
	check_firmware_files(p, os);
	autofree char *loader = kb_xml_text(p->xml, kb_xml_child(os, "loader"));
	if (!kb_xml_prop_is(p->xml, os, "firmware", "efi") || (loader && *loader))
		return;
	const char *arch = p->arch ? p->arch : "x86_64";
	__attribute__((cleanup(fw_files_free))) struct fw_files files = { .count = 0 };
	kb_sysroot_glob(p->ctx, "/etc/qemu/firmware/*.json", add_fw_file, &files, NULL);
	kb_sysroot_glob(p->ctx, "/usr/share/qemu/firmware/*.json", add_fw_file, &files, NULL);
	if (files.count)
		qsort(files.item, files.count, sizeof(files.item[0]), by_name);
	char machine[128], want[256] = "", globs[256] = "", missing[PATH_MAX + 128] = "";
	versioned_machine(p, machine, sizeof(machine));
	xmlNode *firmware = kb_xml_child(os, "firmware");
	for (xmlNode *f = kb_xml_child(firmware, "feature"); f; f = kb_xml_next(f, "feature")) {
		autofree char *name = kb_xml_prop(p->xml, f, "name");
		size_t n = strlen(want);
		snprintf(want + n, sizeof(want) - n, "%s%s%s", n ? ", " : " with ",
			 kb_xml_prop_is(p->xml, f, "enabled", "yes") ? "" : "no ", name ? name : "?");
	}
	bool smm_off = kb_xml_prop_is(p->xml, kb_xml_child(kb_xml_child(p->domain, "features"), "smm"), "state", "off");
	bool any_uefi = false, any_features = false, smm_blocks = false;
	for (size_t i = 0; i < files.count; i++) {
		autofree char *text = NULL;
		size_t len = 0;
		struct kb_firmware fw;
		if (kb_read_file(p->ctx, files.item[i].path, 1 << 16, &text, &len, NULL) < 0 || !len ||
		    kb_firmware_parse(text, len, &fw, NULL) < 0 || !fw.uefi || !fw.flash)
			continue; /* an empty file in /etc hides one; a malformed one libvirt skips too */
		bool for_arch = false, features = fw_features_ok(p, firmware, &fw);
		for (size_t t = 0; t < fw.target_count; t++) {
			if (strcmp(fw.target[t].arch, arch))
				continue;
			for_arch = true;
			if (!features)
				continue; /* the machines named are those of firmware with the features asked for */
			for (size_t m = 0; m < fw.target[t].machine_count && !strstr(globs, fw.target[t].machine[m]); m++) {
				size_t n = strlen(globs);
				snprintf(globs + n, sizeof(globs) - n, "%s%s", n ? ", " : "", fw.target[t].machine[m]);
			}
		}
		if (!for_arch)
			continue;
		any_uefi = true;
		bool on_machine = kb_firmware_for(&fw, arch, machine);
		bool smm = !(smm_off && kb_firmware_has(&fw, "requires-smm"));
		any_features |= features;
		/* One descriptor that fits the machine and the features but needs SMM: only then is SMM the cause. */
		smm_blocks |= on_machine && features && !smm;
		if (!on_machine || !features || !smm)
			continue;
		if (!regular_file_error(p, fw.executable)) {
			xmlNode *root = p->domcaps ? p->xml->root_element(p->domcaps) : NULL;
			xmlNode *enumeration = NULL;
			for (xmlNode *e = kb_xml_child(kb_xml_child(root, "os"), "enum"); e; e = kb_xml_next(e, "enum"))
				if (kb_xml_prop_is(p->xml, e, "name", "firmware"))
					enumeration = e;
			bool offered = !enumeration;
			for (xmlNode *v = kb_xml_child(enumeration, "value"); v && !offered; v = kb_xml_next(v, "value")) {
				autofree char *value = kb_xml_text(p->xml, v);
				offered = value && !strcmp(value, "efi");
			}
			if (!offered) /* libvirt's own answer for this emulator and machine */
				set_fix(add_finding(p, KB_SEVERITY_ERROR, "firmware.efi", os,
						    "firmware='efi': libvirt offers no UEFI firmware for machine %s (its domain "
						    "capabilities list no 'efi')", machine),
					"virsh domcapabilities --machine %s; apt install ovmf", p->machine ? p->machine : machine);
			return;
		}
		if (!missing[0])
			snprintf(missing, sizeof(missing), "%s names %s, which does not exist", fw_name(&files.item[i]), fw.executable);
	}
	if (missing[0])
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "firmware.efi", os, "firmware='efi': descriptor %s", missing),
			"apt install --reinstall ovmf");
	else if (!any_uefi)
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "firmware.efi", os,
				    "firmware='efi': no UEFI firmware for %s (no descriptor in /usr/share/qemu/firmware or "
				    "/etc/qemu/firmware)", arch),
			"apt install ovmf");
	else if (smm_blocks)
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "firmware.efi", os,
				    "firmware='efi'%s: the firmware that has it needs SMM (requires-smm), which <smm state='off'> "
				    "turns off", want),
			"drop <smm state='off'/> from <features>");
	else if (any_features)
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "firmware.efi", os,
				    "firmware='efi'%s: this host's UEFI firmware%s is for machines %s, not %s", want,
				    want[0] ? " with it" : "", globs, machine),
			"use machine q35 (<type machine='q35'>, domain new --machine q35)");
	else
		set_fix(add_finding(p, KB_SEVERITY_ERROR, "firmware.efi", os,
				    "firmware='efi'%s: no UEFI firmware for machine %s has that", want, machine),
			"drop the <firmware><feature> this host's firmware lacks, or install one that has it");
}

/* ---- driver --------------------------------------------------------------- */

static int read_domain(struct preflight *p, xmlDoc *doc, struct kb_error *err)
{
	const struct kb_xml *xml = p->xml;
	p->domain = xml->root_element(doc);
	if (!p->domain || strcmp((const char *)p->domain->name, "domain") != 0)
		return kb_fail(err, 0, NULL, "not a libvirt domain (the root element is not <domain>)");
	p->devices = kb_xml_child(p->domain, "devices");
	p->type = kb_xml_prop(xml, p->domain, "type");
	xmlNode *os_type = kb_xml_child(kb_xml_child(p->domain, "os"), "type");
	p->arch = kb_xml_prop(xml, os_type, "arch");
	p->machine = kb_xml_prop(xml, os_type, "machine");
	p->emulator = kb_xml_text(xml, kb_xml_child(p->devices, "emulator"));
	xmlNode *memory = kb_xml_child(p->domain, "memory");
	autofree char *amount = kb_xml_text(xml, memory);
	autofree char *unit = kb_xml_prop(xml, memory, "unit");
	p->memory_kib = amount ? kb_memory_kib(amount, unit) : 0;
	autofree char *vcpus = kb_xml_text(xml, kb_xml_child(p->domain, "vcpu"));
	p->vcpus = vcpus ? (unsigned)strtoul(vcpus, NULL, 10) : 1;
	return 0;
}

int kb_preflight(const struct kb_ctx *ctx, const struct kb_xml *xml, xmlDoc *doc,
		 const struct kb_preflight_host *host, struct kb_findings *findings, struct kb_error *err)
{
	struct preflight p = { .ctx = ctx, .xml = xml, .host = host, .findings = findings };
	int rc = read_domain(&p, doc, err);
	if (rc < 0)
		goto out;
	if (host && host->caps)
		p.caps = host->caps;
	else if (host && host->caps_xml)
		p.caps = kb_xml_parse(xml, host->caps_xml, strlen(host->caps_xml), "capabilities", NULL);
	if (!p.arch)
		p.arch = host_arch(&p);
	p.guest = caps_guest_for(xml, p.caps, p.arch);

	check_kvm_device(&p);
	check_emulator(&p);
	bool machine_ok = check_machine(&p);
	check_cpu(&p, machine_ok);
	if (!p.domcaps_xml && kb_xml_prop_is(xml, kb_xml_child(p.domain, "os"), "firmware", "efi"))
		p.domcaps = load_domcaps(&p, machine_ok);
	check_firmware(&p);
	check_numa(&p);
	check_memory(&p);
	check_numatune(&p);
	check_hugepages(&p);
	check_pinning(&p);
	check_interfaces(&p);
	check_macs(&p);
	check_disks(&p);
	check_filesystems(&p);
	check_hostdevs(&p);
	check_graphics(&p);
	check_console(&p);
out:
	if (p.caps && (!host || p.caps != host->caps))
		xml->free_doc(p.caps);
	if (p.domcaps)
		xml->free_doc(p.domcaps);
	free(p.domcaps_xml);
	free(p.type);
	free(p.arch);
	free(p.machine);
	free(p.emulator);
	return rc;
}
