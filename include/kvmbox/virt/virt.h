/*
 * The part of libvirt kvmbox uses, loaded at run time (see kvmbox/core/dynlib.h):
 * libvirt.so.0 and its closure are ~65 MiB and cost milliseconds of dynamic
 * linking, so only the applets that talk to libvirtd pay for it.
 *
 * libvirt's own error reporting (a line on stderr for every error) is turned
 * off: errors come back as struct kb_error, with the advice kvmbox knows for
 * the common ones (kb_virt_advice).
 */
#ifndef KVMBOX_VIRT_H
#define KVMBOX_VIRT_H

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include "kvmbox/core/error.h"

struct kb_virt {
	__typeof__(virConnectOpen) *connect_open;
	__typeof__(virConnectClose) *connect_close;
	__typeof__(virConnectGetCapabilities) *get_capabilities;
	__typeof__(virConnectGetDomainCapabilities) *get_domain_capabilities;
	__typeof__(virConnectListAllDomains) *list_domains;
	__typeof__(virConnectListAllStoragePools) *list_pools;
	__typeof__(virDomainLookupByName) *domain_lookup;
	__typeof__(virDomainDefineXMLFlags) *domain_define;
	__typeof__(virDomainGetUUIDString) *domain_uuid;
	__typeof__(virDomainGetName) *domain_name;
	__typeof__(virDomainGetXMLDesc) *domain_xml;
	__typeof__(virDomainCreate) *domain_create;
	__typeof__(virDomainDestroy) *domain_destroy;
	__typeof__(virDomainCreateWithFlags) *domain_create_flags;
	__typeof__(virDomainCreateXML) *domain_create_xml;
	__typeof__(virDomainShutdown) *domain_shutdown;
	__typeof__(virDomainSuspend) *domain_suspend;
	__typeof__(virDomainUndefineFlags) *domain_undefine;
	__typeof__(virDomainGetAutostart) *domain_get_autostart;
	__typeof__(virDomainSetAutostart) *domain_set_autostart;
	__typeof__(virDomainGetState) *domain_state;
	__typeof__(virDomainFree) *domain_free;
	__typeof__(virStoragePoolGetName) *pool_name;
	__typeof__(virStoragePoolIsActive) *pool_is_active;
	__typeof__(virStoragePoolRefresh) *pool_refresh;
	__typeof__(virStoragePoolListAllVolumes) *pool_volumes;
	__typeof__(virStoragePoolLookupByVolume) *pool_of_volume;
	__typeof__(virStoragePoolFree) *pool_free;
	__typeof__(virStoragePoolLookupByName) *pool_lookup;
	__typeof__(virStorageVolLookupByName) *volume_lookup;
	__typeof__(virStorageVolLookupByPath) *volume_lookup_by_path;
	__typeof__(virStorageVolGetPath) *volume_path;
	__typeof__(virStorageVolFree) *volume_free;
	__typeof__(virStoragePoolGetXMLDesc) *pool_xml;
	__typeof__(virStorageVolCreateXML) *volume_create;
	__typeof__(virStorageVolDelete) *volume_delete;
	__typeof__(virStorageVolGetInfo) *volume_info;
	__typeof__(virStorageVolResize) *volume_resize;
	__typeof__(virDomainBlockResize) *domain_block_resize;
	__typeof__(virStoragePoolDefineXML) *pool_define;
	__typeof__(virStoragePoolBuild) *pool_build;
	__typeof__(virStoragePoolCreate) *pool_create;
	__typeof__(virStoragePoolSetAutostart) *pool_set_autostart;
	__typeof__(virStoragePoolUndefine) *pool_undefine;
	__typeof__(virStoragePoolDestroy) *pool_destroy;
	__typeof__(virNetworkLookupByName) *network_lookup;
	__typeof__(virNetworkIsActive) *network_is_active;
	__typeof__(virNetworkCreate) *network_create;
	__typeof__(virNetworkFree) *network_free;
	__typeof__(virGetLastError) *last_error;
	__typeof__(virConnectCompareHypervisorCPU) *compare_cpu;
	__typeof__(virResetLastError) *reset_error;
};

/* Load libvirt into @v and silence its default error printer. */
int kb_virt_load(struct kb_virt *v, struct kb_error *err);

/* The URI to use: @option (--connect), else $LIBVIRT_DEFAULT_URI, else qemu:///system. */
const char *kb_virt_uri(const char *option);

/*
 * Whether @uri's driver runs inside this process (libvirt's test driver,
 * test:///...): its calls are this process's CPU, not a daemon's or a guest's
 * time, so more threads than CPUs only take turns at its lock.
 */
bool kb_virt_in_process(const char *uri);

/*
 * A libvirt error explained: what it means in words and what fixes it. The
 * table holds the errors operators hit most (the doctor diagnoses each of
 * them on a live host).
 */
struct kb_virt_advice {
	const char *id;          /* the doctor's finding id, e.g. "kvm.dev" */
	const char *pattern;     /* a substring of libvirt's message */
	const char *explanation; /* what is wrong */
	const char *fix;         /* what to run */
	const char *also;        /* another wording of the same error, or NULL */
};

/* The advice for a libvirt message, or NULL when kvmbox knows none. */
const struct kb_virt_advice *kb_virt_explain(const char *message);

/*
 * Fill @err with "WHAT: LIBVIRT-MESSAGE" from libvirt's last error in this
 * thread (newlines flattened) and return -1. *@advice (may be NULL) gets the
 * advice for it, looked up in the whole message before it is shortened.
 */
int kb_virt_fail(const struct kb_virt *v, struct kb_error *err, const struct kb_virt_advice **advice,
		 const char *what_fmt, ...) __attribute__((format(printf, 4, 5)));

/* Open @uri (read-write); NULL with @err (and *@advice) when libvirt cannot be reached. */
virConnectPtr kb_virt_connect(const struct kb_virt *v, const char *uri, struct kb_error *err,
			      const struct kb_virt_advice **advice);

/* libvirt network @name: 1 active, 0 inactive, -1 absent, -2 libvirt could not say. */
int kb_virt_network_state(const struct kb_virt *v, virConnectPtr conn, const char *name);

/*
 * libvirt's comparison of the guest CPU @cpu_xml (a <cpu> element) with the
 * CPU the hypervisor gives guests of @virttype here, as the start checks it:
 * disabled features are not needed. 1 compatible, 0 not (@why: the features
 * the host lacks, "pcid, x2apic"), -1 when libvirt cannot tell.
 */
int kb_virt_cpu_compare(const struct kb_virt *v, virConnectPtr conn, const char *emulator, const char *arch,
			const char *machine, const char *virttype, const char *cpu_xml, char *why, size_t size);

#endif
