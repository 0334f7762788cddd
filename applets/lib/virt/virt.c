/* libvirt at run time, and the libvirt errors kvmbox can explain; see kvmbox/virt/virt.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/core/dynlib.h"
#include "kvmbox/virt/virt.h"

/* libvirt prints every error to stderr unless an error function is set; kvmbox reports its own. */
static void ignore_libvirt_error(void *data, virErrorPtr error)
{
	(void)data;
	(void)error;
}

int kb_virt_load(struct kb_virt *v, struct kb_error *err)
{
	void *set_error_func = NULL;
	const struct kb_dynlib_symbol symbols[] = {
		{ "virConnectOpen", (void **)&v->connect_open },
		{ "virConnectClose", (void **)&v->connect_close },
		{ "virConnectGetCapabilities", (void **)&v->get_capabilities },
		{ "virConnectGetDomainCapabilities", (void **)&v->get_domain_capabilities },
		{ "virConnectListAllDomains", (void **)&v->list_domains },
		{ "virConnectListAllStoragePools", (void **)&v->list_pools },
		{ "virDomainLookupByName", (void **)&v->domain_lookup },
		{ "virDomainDefineXMLFlags", (void **)&v->domain_define },
		{ "virDomainGetUUIDString", (void **)&v->domain_uuid },
		{ "virDomainGetName", (void **)&v->domain_name },
		{ "virDomainGetXMLDesc", (void **)&v->domain_xml },
		{ "virDomainCreate", (void **)&v->domain_create },
		{ "virDomainDestroy", (void **)&v->domain_destroy },
		{ "virDomainCreateWithFlags", (void **)&v->domain_create_flags },
		{ "virDomainCreateXML", (void **)&v->domain_create_xml },
		{ "virDomainShutdown", (void **)&v->domain_shutdown },
		{ "virDomainSuspend", (void **)&v->domain_suspend },
		{ "virDomainUndefineFlags", (void **)&v->domain_undefine },
		{ "virDomainGetAutostart", (void **)&v->domain_get_autostart },
		{ "virDomainSetAutostart", (void **)&v->domain_set_autostart },
		{ "virDomainGetState", (void **)&v->domain_state },
		{ "virDomainFree", (void **)&v->domain_free },
		{ "virStoragePoolGetName", (void **)&v->pool_name },
		{ "virStoragePoolIsActive", (void **)&v->pool_is_active },
		{ "virStoragePoolRefresh", (void **)&v->pool_refresh },
		{ "virStoragePoolListAllVolumes", (void **)&v->pool_volumes },
		{ "virStoragePoolLookupByVolume", (void **)&v->pool_of_volume },
		{ "virStoragePoolFree", (void **)&v->pool_free },
		{ "virStoragePoolLookupByName", (void **)&v->pool_lookup },
		{ "virStorageVolLookupByName", (void **)&v->volume_lookup },
		{ "virStorageVolLookupByPath", (void **)&v->volume_lookup_by_path },
		{ "virStorageVolGetPath", (void **)&v->volume_path },
		{ "virStorageVolFree", (void **)&v->volume_free },
		{ "virStoragePoolGetXMLDesc", (void **)&v->pool_xml },
		{ "virStorageVolCreateXML", (void **)&v->volume_create },
		{ "virStorageVolDelete", (void **)&v->volume_delete },
		{ "virStorageVolGetInfo", (void **)&v->volume_info },
		{ "virStorageVolResize", (void **)&v->volume_resize },
		{ "virDomainBlockResize", (void **)&v->domain_block_resize },
		{ "virStoragePoolDefineXML", (void **)&v->pool_define },
		{ "virStoragePoolBuild", (void **)&v->pool_build },
		{ "virStoragePoolCreate", (void **)&v->pool_create },
		{ "virStoragePoolSetAutostart", (void **)&v->pool_set_autostart },
		{ "virStoragePoolUndefine", (void **)&v->pool_undefine },
		{ "virStoragePoolDestroy", (void **)&v->pool_destroy },
		{ "virNetworkLookupByName", (void **)&v->network_lookup },
		{ "virNetworkIsActive", (void **)&v->network_is_active },
		{ "virNetworkCreate", (void **)&v->network_create },
		{ "virNetworkFree", (void **)&v->network_free },
		{ "virGetLastError", (void **)&v->last_error },
		{ "virConnectCompareHypervisorCPU", (void **)&v->compare_cpu },
		{ "virResetLastError", (void **)&v->reset_error },
		{ "virSetErrorFunc", &set_error_func },
	};
	if (kb_dynlib_load(KB_LIB_VIRT, symbols, sizeof(symbols) / sizeof(symbols[0]), err) < 0)
		return -1;
	((__typeof__(virSetErrorFunc) *)set_error_func)(NULL, ignore_libvirt_error);
	return 0;
}

const char *kb_virt_uri(const char *option)
{
	if (option && *option)
		return option;
	const char *env = getenv("LIBVIRT_DEFAULT_URI");
	return env && *env ? env : "qemu:///system";
}

bool kb_virt_in_process(const char *uri)
{
	return uri && !strncmp(uri, "test:///", strlen("test:///")); /* test://HOST/... is a daemon's */
}

/* The common errors from the operators' notes; the doctor has a diagnosis for each id. */
static const struct kb_virt_advice advice_table[] = {
	{ "libvirtd.running", "libvirt-sock",
	  "libvirtd is not running (its socket is missing or refuses connections)",
	  "kvmbox doctor --fix (starts libvirtd: systemctl start libvirtd, or virtlogd -d; libvirtd -d)", NULL },
	{ "virtlogd.running", "virtlogd-sock", "virtlogd is not running; QEMU guests cannot start without it",
	  "kvmbox doctor --fix (starts virtlogd: systemctl start virtlogd, or virtlogd -d)", NULL },
	{ "kvm.dev", "Could not access KVM kernel module: Permission denied",
	  "the user QEMU runs as cannot open /dev/kvm", "kvmbox devkvm (root:kvm 0660; QEMU's user is in group kvm)", NULL },
	{ "kvm.module", "Could not access KVM kernel module: No such file or directory",
	  "/dev/kvm does not exist: the KVM module is not loaded", "kvmbox kvm-load, then kvmbox devkvm", NULL },
	{ "caps.cache", "Cannot find suitable CPU model for given data",
	  "libvirt's cached QEMU capabilities are stale (QEMU, libvirt or the CPU microcode changed)",
	  "kvmbox doctor --fix (clears /var/cache/libvirt/qemu/capabilities and restarts libvirtd)", NULL },
	{ "pool.stale", "cannot stat file",
	  "a storage pool lists a volume whose file was deleted behind libvirt's back",
	  "kvmbox doctor --fix (refreshes the storage pools), or virsh pool-refresh POOL", NULL },
	{ "virt.hardware", "No domains available for virt type 'hvm'",
	  "no usable hardware virtualization: VT-x/AMD-V missing, disabled in firmware, or KVM not loaded",
	  "kvmbox check; enable VT-x/AMD-V in the firmware setup, or use <domain type='qemu'> (TCG)", NULL },
	{ "virt.hardware", "domain type 'kvm'",
	  "KVM is not usable on this host: VT-x/AMD-V missing or disabled, or the KVM module not loaded",
	  "kvmbox check; kvmbox kvm-load; or use <domain type='qemu'> (TCG)", "does not support virt type 'kvm'" },
	{ "cpu.arch-capabilities", "failed to set MSR 0x10a",
	  "this host's KVM refuses IA32_ARCH_CAPABILITIES on a vCPU (a nested hypervisor's limit): QEMU aborts host-model "
	  "and host-passthrough guests",
	  "add <feature policy='disable' name='arch-capabilities'/> to the domain's <cpu> (kvmbox domain preflight FILE "
	  "finds it; kvmbox domain new does it)",
	  NULL },
	{ "machine.type", "unsupported machine type",
	  "the domain's machine type is not offered by this QEMU (the domain was made on another QEMU version)",
	  "kvmbox domain preflight FILE lists the machine types offered; set <os><type machine=...> to one",
	  "does not support machine type" },
	{ "bridge.missing", "Cannot get interface MTU",
	  "the bridge a network interface is attached to does not exist", "kvmbox bridge add NAME --uplink IFACE", NULL },
	{ "disk.missing", "Cannot access storage file",
	  "a disk image named in the domain does not exist or QEMU's user cannot read it",
	  "kvmbox domain preflight FILE names the disk; restore the file or fix the <source> path", NULL },
};

const struct kb_virt_advice *kb_virt_explain(const char *message)
{
	if (!message)
		return NULL;
	for (size_t i = 0; i < sizeof(advice_table) / sizeof(advice_table[0]); i++)
		if (strstr(message, advice_table[i].pattern) ||
		    (advice_table[i].also && strstr(message, advice_table[i].also)))
			return &advice_table[i];
	return NULL;
}

int kb_virt_fail(const struct kb_virt *v, struct kb_error *err, const struct kb_virt_advice **advice,
		 const char *what_fmt, ...)
{
	virErrorPtr last = v->last_error();
	const char *message = last && last->message ? last->message : "unknown libvirt error";
	if (advice)
		*advice = kb_virt_explain(message);
	if (!err)
		return -1;
	char what[sizeof(err->what)];
	va_list ap;
	va_start(ap, what_fmt);
	vsnprintf(what, sizeof(what), what_fmt, ap);
	va_end(ap);
	kb_fail(err, 0, NULL, "%s: %s", what, message);
	/* QEMU's log lines come with newlines: the message stays one line. */
	for (char *p = err->what; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return -1;
}

virConnectPtr kb_virt_connect(const struct kb_virt *v, const char *uri, struct kb_error *err,
			      const struct kb_virt_advice **advice)
{
	virConnectPtr conn = v->connect_open(uri);
	if (!conn)
		kb_virt_fail(v, err, advice, "connecting to %s", uri);
	return conn;
}

int kb_virt_network_state(const struct kb_virt *v, virConnectPtr conn, const char *name)
{
	virNetworkPtr net = conn ? v->network_lookup(conn, name) : NULL;
	virErrorPtr e = net || !conn ? NULL : v->last_error();
	int state = e && e->code == VIR_ERR_NO_NETWORK ? -1 : -2;
	if (net) {
		int active = v->network_is_active(net);
		state = active < 0 ? -2 : active;
		v->network_free(net);
	}
	if (conn)
		v->reset_error();
	return state;
}

int kb_virt_cpu_compare(const struct kb_virt *v, virConnectPtr conn, const char *emulator, const char *arch,
			const char *machine, const char *virttype, const char *cpu_xml, char *why, size_t size)
{
	if (!conn)
		return -1;
	int r = v->compare_cpu(conn, emulator, arch, machine, virttype, cpu_xml, VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE);
	virErrorPtr e = r == VIR_CPU_COMPARE_ERROR ? v->last_error() : NULL;
	int verdict = r == VIR_CPU_COMPARE_IDENTICAL || r == VIR_CPU_COMPARE_SUPERSET ? 1 : -1;
	if (e && e->code == VIR_ERR_CPU_INCOMPATIBLE) {
		/* "the CPU is incompatible with host CPU: Host CPU does not provide required features: pcid, x2apic" */
		const char *list = e->message ? strstr(e->message, "required features: ") : NULL;
		snprintf(why, size, "%s", list ? list + strlen("required features: ") : e->message ? e->message : "");
		verdict = 0;
	}
	v->reset_error();
	return verdict;
}
