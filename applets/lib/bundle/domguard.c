/* A bundle's domain.xml against an allow-list; see kvmbox/bundle/domguard.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/bundle/domguard.h"

#define MANY KB_DOMGUARD_MANY
#define MEMBER KB_DOMGUARD_MEMBER
#define OPAQUE KB_DOMGUARD_OPAQUE
#define DROP KB_DOMGUARD_DROP
#define RANDOM KB_DOMGUARD_RANDOM
#define TEXT KB_DOMGUARD_TEXT

/* A device's guest address and libvirt's alias for it: names inside the guest, nothing of the host. */
#define ADDRESS "type domain bus slot function multifunction controller target unit port reg cssid ssid devno iobase irq base"
#define GUEST_SIDE(dev) { dev "/address", ADDRESS, 0 }, { dev "/alias", "name", 0 }

/*
 * Everything a bundle's domain.xml may hold. What is not here is refused:
 * <filesystem>, <hostdev>, <smartcard>, <redirdev>, <shmem>, <memory> devices,
 * <parallel>, a chardev's <source> or <log>, <interface> <script>, <target>,
 * <backend> or <rom file>, a TPM other than libvirt's emulator, an <audio>
 * that records to a file, <acpi><table>, <sysinfo type='fwcfg'>, <qemu:...>
 * in any namespace, a <seclabel> other than libvirt's dynamic default,
 * <blkiotune> devices, <resource> partitions, <launchSecurity>...
 */
static const struct kb_domguard_rule rules[] = {
	{ "domain", "type=kvm|qemu id", 0 },
	{ "domain/name", "", TEXT },
	{ "domain/uuid", "", TEXT },
	{ "domain/genid", "", TEXT },
	{ "domain/title", "", TEXT },
	{ "domain/description", "", TEXT },
	/* Stored for management tools (libosinfo's OS id...), acted on by no libvirt driver. */
	{ "domain/metadata", "", OPAQUE },
	{ "domain/memory", "unit dumpCore", TEXT },
	{ "domain/currentMemory", "unit", TEXT },
	{ "domain/maxMemory", "slots unit", TEXT },
	{ "domain/memoryBacking", "", 0 },
	{ "domain/memoryBacking/hugepages", "", 0 },
	{ "domain/memoryBacking/hugepages/page", "size unit nodeset", MANY },
	{ "domain/memoryBacking/nosharepages", "", 0 },
	{ "domain/memoryBacking/locked", "", 0 },
	{ "domain/memoryBacking/source", "type=anonymous|memfd", 0 },
	{ "domain/memoryBacking/access", "mode=shared|private", 0 },
	{ "domain/memoryBacking/allocation", "mode=immediate|ondemand threads", 0 },
	{ "domain/memoryBacking/discard", "", 0 },
	{ "domain/memtune", "", 0 },
	{ "domain/memtune/hard_limit", "unit", TEXT },
	{ "domain/memtune/soft_limit", "unit", TEXT },
	{ "domain/memtune/swap_hard_limit", "unit", TEXT },
	{ "domain/memtune/min_guarantee", "unit", TEXT },
	{ "domain/blkiotune", "", 0 },
	{ "domain/blkiotune/weight", "", TEXT },
	{ "domain/vcpu", "placement cpuset current", TEXT },
	{ "domain/vcpus", "", 0 },
	{ "domain/vcpus/vcpu", "id enabled hotpluggable order", MANY },
	{ "domain/iothreads", "", TEXT },
	{ "domain/cputune", "", 0 },
	{ "domain/cputune/shares", "", TEXT },
	{ "domain/cputune/period", "", TEXT },
	{ "domain/cputune/quota", "", TEXT },
	{ "domain/cputune/global_period", "", TEXT },
	{ "domain/cputune/global_quota", "", TEXT },
	{ "domain/cputune/emulator_period", "", TEXT },
	{ "domain/cputune/emulator_quota", "", TEXT },
	{ "domain/cputune/iothread_period", "", TEXT },
	{ "domain/cputune/iothread_quota", "", TEXT },
	{ "domain/cputune/vcpupin", "vcpu cpuset", MANY },
	{ "domain/cputune/emulatorpin", "cpuset", 0 },
	{ "domain/cputune/iothreadpin", "iothread cpuset", MANY },
	{ "domain/cputune/vcpusched", "vcpus scheduler priority", MANY },
	{ "domain/cputune/iothreadsched", "iothreads scheduler priority", MANY },
	{ "domain/cputune/emulatorsched", "scheduler priority", 0 },
	{ "domain/numatune", "", 0 },
	{ "domain/numatune/memory", "mode nodeset placement", 0 },
	{ "domain/numatune/memnode", "cellid mode nodeset", MANY },
	{ "domain/cpu", "mode match check migratable", 0 },
	{ "domain/cpu/model", "fallback vendor_id", TEXT },
	{ "domain/cpu/vendor", "", TEXT },
	{ "domain/cpu/topology", "sockets dies cores threads", 0 },
	{ "domain/cpu/cache", "level mode", 0 },
	{ "domain/cpu/feature", "policy name", MANY },
	{ "domain/cpu/numa", "", 0 },
	{ "domain/cpu/numa/cell", "id cpus memory unit memAccess discard", MANY },
	{ "domain/cpu/numa/cell/distances", "", 0 },
	{ "domain/cpu/numa/cell/distances/sibling", "id value", MANY },
	{ "domain/sysinfo", "type=smbios", 0 },
	{ "domain/sysinfo/bios", "", 0 },
	{ "domain/sysinfo/bios/entry", "name", MANY | TEXT },
	{ "domain/sysinfo/system", "", 0 },
	{ "domain/sysinfo/system/entry", "name", MANY | TEXT },
	{ "domain/sysinfo/baseBoard", "", MANY },
	{ "domain/sysinfo/baseBoard/entry", "name", MANY | TEXT },
	{ "domain/sysinfo/chassis", "", 0 },
	{ "domain/sysinfo/chassis/entry", "name", MANY | TEXT },
	{ "domain/sysinfo/oemStrings", "", 0 },
	{ "domain/sysinfo/oemStrings/entry", "", MANY | TEXT },
	{ "domain/os", "firmware=efi|bios", 0 },
	{ "domain/os/type", "arch machine", TEXT },
	{ "domain/os/loader", "readonly secure type=rom|pflash stateless format=raw|qcow2", MEMBER },
	{ "domain/os/nvram", "format=raw|qcow2", MEMBER },
	{ "domain/os/kernel", "", MEMBER },
	{ "domain/os/initrd", "", MEMBER },
	{ "domain/os/dtb", "", MEMBER },
	{ "domain/os/cmdline", "", TEXT },
	{ "domain/os/boot", "dev", MANY },
	{ "domain/os/bootmenu", "enable timeout", 0 },
	{ "domain/os/smbios", "mode=emulate|sysinfo", 0 },
	{ "domain/os/bios", "useserial rebootTimeout", 0 },
	{ "domain/os/firmware", "", 0 },
	{ "domain/os/firmware/feature", "enabled name", MANY },
	{ "domain/features", "", 0 },
	{ "domain/features/acpi", "", 0 },
	{ "domain/features/apic", "eoi", 0 },
	{ "domain/features/pae", "", 0 },
	{ "domain/features/hap", "state", 0 },
	{ "domain/features/privnet", "", 0 },
	{ "domain/features/pvspinlock", "state", 0 },
	{ "domain/features/vmport", "state", 0 },
	{ "domain/features/vmcoreinfo", "state", 0 },
	{ "domain/features/ioapic", "driver", 0 },
	{ "domain/features/gic", "version", 0 },
	{ "domain/features/smm", "state", 0 },
	{ "domain/features/smm/tseg", "unit", 0 },
	{ "domain/features/msrs", "unknown", 0 },
	{ "domain/features/kvm", "", 0 },
	{ "domain/features/kvm/hidden", "state", 0 },
	{ "domain/features/kvm/hint-dedicated", "state", 0 },
	{ "domain/features/kvm/poll-control", "state", 0 },
	{ "domain/features/kvm/pv-ipi", "state", 0 },
	{ "domain/features/kvm/dirty-ring", "state size", 0 },
	{ "domain/features/hyperv", "mode", 0 },
	{ "domain/features/hyperv/relaxed", "state", 0 },
	{ "domain/features/hyperv/vapic", "state", 0 },
	{ "domain/features/hyperv/spinlocks", "state retries", 0 },
	{ "domain/features/hyperv/vpindex", "state", 0 },
	{ "domain/features/hyperv/runtime", "state", 0 },
	{ "domain/features/hyperv/synic", "state", 0 },
	{ "domain/features/hyperv/stimer", "state", 0 },
	{ "domain/features/hyperv/stimer/direct", "state", 0 },
	{ "domain/features/hyperv/reset", "state", 0 },
	{ "domain/features/hyperv/vendor_id", "state value", 0 },
	{ "domain/features/hyperv/frequencies", "state", 0 },
	{ "domain/features/hyperv/reenlightenment", "state", 0 },
	{ "domain/features/hyperv/tlbflush", "state", 0 },
	{ "domain/features/hyperv/ipi", "state", 0 },
	{ "domain/features/hyperv/evmcs", "state", 0 },
	{ "domain/features/hyperv/avic", "state", 0 },
	{ "domain/clock", "offset=utc|localtime|timezone|variable adjustment basis timezone", 0 },
	{ "domain/clock/timer", "name present tickpolicy track frequency mode", MANY },
	{ "domain/clock/timer/catchup", "threshold slew limit", 0 },
	{ "domain/on_poweroff", "", TEXT },
	{ "domain/on_reboot", "", TEXT },
	{ "domain/on_crash", "", TEXT },
	{ "domain/on_lockfailure", "", TEXT },
	{ "domain/pm", "", 0 },
	{ "domain/pm/suspend-to-mem", "enabled", 0 },
	{ "domain/pm/suspend-to-disk", "enabled", 0 },
	{ "domain/perf", "", 0 },
	{ "domain/perf/event", "name enabled", MANY },
	/* libvirt's default: a label chosen (and files relabelled) by libvirt for each model. */
	{ "domain/seclabel", "type=dynamic model=selinux|apparmor|dac relabel=yes", MANY },
	{ "domain/devices", "", 0 },
	/* Never the bundle's: libvirt uses the host's own emulator from its capabilities. */
	{ "domain/devices/emulator", "", DROP },
	{ "domain/devices/disk", "type=file device=disk|cdrom|floppy snapshot model", MANY },
	{ "domain/devices/disk/driver",
	  "name=qemu type=raw|qcow2 cache error_policy rerror_policy io ioeventfd event_idx copy_on_read discard "
	  "detect_zeroes iothread queues queue_size",
	  0 },
	{ "domain/devices/disk/source", "file startupPolicy index", MEMBER },
	/* Only empty: the qcow2 headers say what backs what (a member, checked). */
	{ "domain/devices/disk/backingStore", "", 0 },
	{ "domain/devices/disk/target", "dev bus tray removable rotation_rate", 0 },
	{ "domain/devices/disk/readonly", "", 0 },
	{ "domain/devices/disk/shareable", "", 0 },
	{ "domain/devices/disk/transient", "", 0 },
	{ "domain/devices/disk/serial", "", TEXT },
	{ "domain/devices/disk/wwn", "", TEXT },
	{ "domain/devices/disk/vendor", "", TEXT },
	{ "domain/devices/disk/product", "", TEXT },
	{ "domain/devices/disk/boot", "order loadparm", 0 },
	{ "domain/devices/disk/blockio", "logical_block_size physical_block_size", 0 },
	{ "domain/devices/disk/geometry", "cyls heads secs trans", 0 },
	{ "domain/devices/disk/iotune", "", 0 },
	{ "domain/devices/disk/iotune/total_bytes_sec", "", TEXT },
	{ "domain/devices/disk/iotune/read_bytes_sec", "", TEXT },
	{ "domain/devices/disk/iotune/write_bytes_sec", "", TEXT },
	{ "domain/devices/disk/iotune/total_iops_sec", "", TEXT },
	{ "domain/devices/disk/iotune/read_iops_sec", "", TEXT },
	{ "domain/devices/disk/iotune/write_iops_sec", "", TEXT },
	GUEST_SIDE("domain/devices/disk"),
	{ "domain/devices/controller", "type index model ports vectors", MANY },
	{ "domain/devices/controller/driver", "queues cmd_per_lun max_sectors ioeventfd iothread", 0 },
	{ "domain/devices/controller/model", "name", 0 },
	{ "domain/devices/controller/target", "chassisNr chassis port busNr index hotplug", 0 },
	{ "domain/devices/controller/master", "startport", 0 },
	{ "domain/devices/controller/pcihole64", "unit", 0 },
	GUEST_SIDE("domain/devices/controller"),
	/* A network or bridge by name: libvirt makes the tap device and names it. */
	{ "domain/devices/interface", "type=network|bridge trustGuestRxFilters", MANY },
	{ "domain/devices/interface/source", "network bridge portgroup", 0 },
	{ "domain/devices/interface/mac", "address", 0 },
	{ "domain/devices/interface/model", "type", 0 },
	{ "domain/devices/interface/driver", "name=qemu|vhost queues rx_queue_size tx_queue_size txmode ioeventfd event_idx", 0 },
	{ "domain/devices/interface/driver/host", "csum gso tso4 tso6 ecn ufo mrg_rxbuf", 0 },
	{ "domain/devices/interface/driver/guest", "csum tso4 tso6 ecn ufo", 0 },
	{ "domain/devices/interface/boot", "order", 0 },
	{ "domain/devices/interface/link", "state", 0 },
	{ "domain/devices/interface/mtu", "size", 0 },
	{ "domain/devices/interface/rom", "bar enabled", 0 },
	{ "domain/devices/interface/bandwidth", "", 0 },
	{ "domain/devices/interface/bandwidth/inbound", "average peak burst floor", 0 },
	{ "domain/devices/interface/bandwidth/outbound", "average peak burst", 0 },
	{ "domain/devices/interface/vlan", "trunk", 0 },
	{ "domain/devices/interface/vlan/tag", "id nativeMode", MANY },
	{ "domain/devices/interface/filterref", "filter", 0 },
	{ "domain/devices/interface/filterref/parameter", "name value", MANY },
	GUEST_SIDE("domain/devices/interface"),
	/* Character devices: a pty libvirt allocates; a channel's socket libvirt names itself (no <source>). */
	{ "domain/devices/serial", "type=pty", MANY },
	{ "domain/devices/serial/target", "type port", 0 },
	{ "domain/devices/serial/target/model", "name", 0 },
	GUEST_SIDE("domain/devices/serial"),
	{ "domain/devices/console", "type=pty", MANY },
	{ "domain/devices/console/target", "type port", 0 },
	GUEST_SIDE("domain/devices/console"),
	{ "domain/devices/channel", "type=unix|spicevmc|qemu-vdagent", MANY },
	{ "domain/devices/channel/target", "type=virtio name state", 0 },
	GUEST_SIDE("domain/devices/channel"),
	{ "domain/devices/input", "type=tablet|mouse|keyboard bus=usb|ps2|virtio model", MANY },
	GUEST_SIDE("domain/devices/input"),
	/* VNC and SPICE on an address or a libvirt network's, never on a socket path or a render node. */
	{ "domain/devices/graphics", "type=vnc|spice port autoport listen tlsPort websocket keymap passwd passwdValidTo "
				      "connected sharePolicy defaultMode",
	  MANY },
	{ "domain/devices/graphics/listen", "type=address|network address network", MANY },
	{ "domain/devices/graphics/channel", "name mode", MANY },
	{ "domain/devices/graphics/image", "compression", 0 },
	{ "domain/devices/graphics/jpeg", "compression", 0 },
	{ "domain/devices/graphics/zlib", "compression", 0 },
	{ "domain/devices/graphics/playback", "compression", 0 },
	{ "domain/devices/graphics/streaming", "mode", 0 },
	{ "domain/devices/graphics/clipboard", "copypaste", 0 },
	{ "domain/devices/graphics/mouse", "mode", 0 },
	{ "domain/devices/graphics/filetransfer", "enable", 0 },
	{ "domain/devices/video", "", MANY },
	{ "domain/devices/video/model", "type vram ram vgamem vram64 heads primary", 0 },
	{ "domain/devices/video/model/acceleration", "accel3d accel2d", 0 },
	GUEST_SIDE("domain/devices/video"),
	{ "domain/devices/sound", "model", MANY },
	{ "domain/devices/sound/codec", "type", MANY },
	{ "domain/devices/sound/audio", "id", 0 },
	GUEST_SIDE("domain/devices/sound"),
	/* Sound goes nowhere or to the SPICE client: never into a file. */
	{ "domain/devices/audio", "id type=none|spice", MANY },
	{ "domain/devices/memballoon", "model autodeflate freePageReporting", 0 },
	{ "domain/devices/memballoon/stats", "period", 0 },
	{ "domain/devices/memballoon/driver", "iommu ats packed", 0 },
	GUEST_SIDE("domain/devices/memballoon"),
	{ "domain/devices/watchdog", "model action", MANY },
	GUEST_SIDE("domain/devices/watchdog"),
	{ "domain/devices/panic", "model", MANY },
	GUEST_SIDE("domain/devices/panic"),
	{ "domain/devices/rng", "model", MANY },
	{ "domain/devices/rng/rate", "bytes period", 0 },
	{ "domain/devices/rng/backend", "model=random", RANDOM },
	GUEST_SIDE("domain/devices/rng"),
	{ "domain/devices/hub", "type=usb", MANY },
	GUEST_SIDE("domain/devices/hub"),
	/* TPM: libvirt's own swtpm, its state kept where libvirt keeps it. */
	{ "domain/devices/tpm", "model", 0 },
	{ "domain/devices/tpm/backend", "type=emulator version persistent_state", 0 },
	GUEST_SIDE("domain/devices/tpm"),
	{ "domain/devices/vsock", "model", 0 },
	{ "domain/devices/vsock/cid", "auto address", 0 },
	GUEST_SIDE("domain/devices/vsock"),
	{ "domain/devices/iommu", "model", 0 },
	{ "domain/devices/iommu/driver", "intremap caching_mode eim iotlb aw_bits", 0 },
};

const struct kb_domguard_rule *kb_domguard_rules(size_t *count)
{
	*count = sizeof(rules) / sizeof(rules[0]);
	return rules;
}

static const struct kb_domguard_rule *find_rule(const char *path)
{
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (!strcmp(rules[i].path, path))
			return &rules[i];
	return NULL;
}

/*
 * Whether @rule allows attribute @name; *@values is then NULL (any value)
 * or points at "A|B" in the rule (length in *@values_len).
 */
static bool attr_allowed(const struct kb_domguard_rule *rule, const char *name, const char **values, size_t *values_len)
{
	size_t name_len = strlen(name);
	for (const char *p = rule->attrs; *p;) {
		size_t len = strcspn(p, " ");
		size_t key = strcspn(p, " =");
		if (key == name_len && !strncmp(p, name, name_len)) {
			*values = key < len ? p + key + 1 : NULL;
			*values_len = key < len ? len - key - 1 : 0;
			return true;
		}
		p += len;
		p += strspn(p, " ");
	}
	return false;
}

/* Whether @value is one of the "A|B" list @values of @len characters. */
static bool value_listed(const char *values, size_t len, const char *value)
{
	size_t value_len = strlen(value);
	for (size_t i = 0; i < len;) {
		size_t n = strcspn(values + i, "| ");
		if (i + n > len)
			n = len - i;
		if (n == value_len && !strncmp(values + i, value, n))
			return true;
		i += n + 1;
	}
	return false;
}

struct walk {
	const struct kb_xml *xml;
	struct kb_domguard *g;
	struct kb_error *err;
	xmlNode *drop[8]; /* elements to remove once the walk is done */
	int dropped;
};

/* Refuse @node: "XPATH: WHY: refused in domain.xml". */
__attribute__((format(printf, 3, 4))) static int refuse(struct walk *w, xmlNode *node, const char *fmt, ...)
{
	char where[512], why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	kb_xml_where(w->xml, node, where, sizeof(where));
	return kb_fail(w->err, 0, w->g->what, "%s: %s: refused in", where, why);
}

static bool is_cdrom(const struct kb_xml *xml, xmlNode *disk)
{
	return kb_xml_prop_is(xml, disk, "device", "cdrom") || kb_xml_prop_is(xml, disk, "device", "floppy");
}

/* A file the domain names, by text (<kernel>) or by attribute (<source file>): a member, or refused. */
static int check_member(struct walk *w, xmlNode *node, const char *what, const char *file)
{
	if (w->g->is_member(w->g->opaque, file))
		return 0;
	bool cdrom = !strcmp((const char *)node->name, "source") && is_cdrom(w->xml, node->parent);
	if (cdrom && w->g->allow_external_cdrom)
		return 0;
	return refuse(w, node, "%s '%.200s' is not a member of the bundle%s", what, file,
		      cdrom ? " (--allow-external-cdrom for an ISO on the host)" : "");
}

/* Text directly in @node, whitespace aside. */
static bool has_text(xmlNode *node)
{
	for (xmlNode *c = node->children; c; c = c->next)
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content &&
		    ((const char *)c->content)[strspn((const char *)c->content, " \t\r\n")])
			return true;
	return false;
}

/* What an element's flags ask of its text or file attribute. */
static int check_content(struct walk *w, xmlNode *node, unsigned flags)
{
	if (!(flags & (MEMBER | RANDOM | DROP | TEXT | OPAQUE)) && has_text(node))
		return refuse(w, node, "text in <%s> is not allowed in a bundle", (const char *)node->name);
	if (!(flags & (MEMBER | RANDOM | DROP)))
		return 0;
	autofree char *file = flags & MEMBER ? kb_xml_prop(w->xml, node, "file") : NULL;
	autofree char *text = kb_xml_text(w->xml, node);
	if (flags & DROP) {
		snprintf(w->g->emulator, sizeof(w->g->emulator), "%s", text ? text : "");
		if (w->dropped == (int)(sizeof(w->drop) / sizeof(w->drop[0])))
			return refuse(w, node, "too many <%s> elements", (const char *)node->name);
		w->drop[w->dropped++] = node;
		return 0;
	}
	if ((flags & RANDOM) && text && text[0] && strcmp(text, "/dev/urandom") && strcmp(text, "/dev/random"))
		return refuse(w, node, "'%.200s' is not /dev/urandom or /dev/random", text);
	if ((flags & MEMBER) && file && check_member(w, node, "file", file) < 0)
		return -1;
	if ((flags & MEMBER) && text && text[0] && check_member(w, node, "file", text) < 0)
		return -1;
	return 0;
}

static int check_attributes(struct walk *w, xmlNode *node, const struct kb_domguard_rule *rule)
{
	for (xmlAttr *a = node->properties; a; a = a->next) {
		const char *name = (const char *)a->name;
		const char *values;
		size_t values_len;
		if (a->ns)
			return refuse(w, node, "attribute %s:%s is in namespace %s, not libvirt's", a->ns->prefix ? (const char *)a->ns->prefix : "",
				      name, a->ns->href ? (const char *)a->ns->href : "?");
		if (!attr_allowed(rule, name, &values, &values_len))
			return refuse(w, node, "attribute %s is not allowed in a bundle", name);
		if (!values)
			continue;
		autofree char *value = kb_xml_prop(w->xml, node, name);
		if (!value || !value_listed(values, values_len, value))
			return refuse(w, node, "%s='%.100s' is not allowed in a bundle (only %.*s)", name, value ? value : "",
				      (int)values_len, values);
	}
	return 0;
}

/* A second element of the same name before @node, under the same parent. */
static bool repeated(xmlNode *node)
{
	for (xmlNode *p = node->prev; p; p = p->prev)
		if (p->type == XML_ELEMENT_NODE && !p->ns && !strcmp((const char *)p->name, (const char *)node->name))
			return true;
	return false;
}

/* @node, at @path (its parent's path; @len used of @size), and everything under it. */
static int walk(struct walk *w, xmlNode *node, char *path, size_t len, size_t size, int depth)
{
	if (node->ns)
		return refuse(w, node, "<%s:%s> is in namespace %s, not libvirt's domain schema", node->ns->prefix ? (const char *)node->ns->prefix : "",
			      (const char *)node->name, node->ns->href ? (const char *)node->ns->href : "?");
	int n = snprintf(path + len, size - len, "%s%s", len ? "/" : "", (const char *)node->name);
	if (n < 0 || (size_t)n >= size - len || depth > 16)
		return refuse(w, node, "nested too deep");
	len += (size_t)n;
	const struct kb_domguard_rule *rule = find_rule(path);
	if (!rule)
		return refuse(w, node, "<%s> is not allowed in a bundle (kvmbox allows only what gives the guest nothing of the host)",
			      (const char *)node->name);
	if (!(rule->flags & MANY) && repeated(node))
		return refuse(w, node, "a second <%s>, which libvirt reads too", (const char *)node->name);
	if (check_attributes(w, node, rule) < 0 || check_content(w, node, rule->flags) < 0)
		return -1;
	if (rule->flags & OPAQUE)
		return 0;
	for (xmlNode *c = node->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && walk(w, c, path, len, size, depth + 1) < 0)
			return -1;
	path[len - (size_t)n] = '\0';
	return 0;
}

int kb_domguard_check(const struct kb_xml *xml, xmlDoc *doc, struct kb_domguard *g, struct kb_error *err)
{
	struct walk w = { .xml = xml, .g = g, .err = err };
	char path[512] = "";
	g->emulator[0] = '\0';
	xmlNode *root = xml->root_element(doc);
	if (!root || root->ns || strcmp((const char *)root->name, "domain"))
		return kb_fail(err, 0, g->what, "the root element is not <domain> in");
	if (walk(&w, root, path, 0, sizeof(path), 0) < 0)
		return -1;
	for (int i = 0; i < w.dropped; i++) {
		xml->unlink_node(w.drop[i]);
		xml->free_node(w.drop[i]);
	}
	return 0;
}
