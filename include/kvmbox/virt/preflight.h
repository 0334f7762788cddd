/*
 * Domain preflight: will this libvirt domain start on this host? Each finding
 * names the XML element it concerns, says what is wrong and what fixes it.
 *
 * Host facts come from the sysroot (/dev/kvm, /sys, disk files) and from
 * libvirt's capabilities, which the caller passes in as XML text: the
 * library itself never talks to libvirtd, so fixture capabilities work too.
 */
#ifndef KVMBOX_PREFLIGHT_H
#define KVMBOX_PREFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/xml.h"
#include "kvmbox/host/kvm.h"

enum kb_severity { KB_SEVERITY_ERROR, KB_SEVERITY_WARN };

struct kb_finding {
	enum kb_severity severity;
	char id[24];       /* stable: "disk.missing", "machine.type", ... */
	char element[192]; /* XPath of the element: "/domain/devices/disk[2]/source" */
	char message[384];
	char fix[256];
};

#define KB_FINDINGS_MAX 48
struct kb_findings {
	struct kb_finding item[KB_FINDINGS_MAX];
	size_t count;
	size_t errors; /* findings with KB_SEVERITY_ERROR */
};

/*
 * libvirt's domain capabilities for the emulator, arch, machine and virt type
 * the domain asks for (any may be NULL: libvirt's default). Returns malloc'ed
 * XML, or NULL when they cannot be had (then CPU checks are skipped).
 */
typedef char *kb_domcaps_fn(void *opaque, const char *emulator, const char *arch, const char *machine,
			    const char *virttype);

/* A NIC of another domain, for the MAC check: two guests with one MAC on one LAN lose each other's frames. */
struct kb_preflight_nic {
	char domain[64];
	char mac[18];     /* lower case, 52:54:00:12:34:56 */
	char bridge[64];  /* the host bridge it is on, or "" */
	char network[64]; /* the libvirt network it is on, or "" */
	bool running;
};

struct kb_preflight_host {
	const char *caps_xml;   /* virConnectGetCapabilities(); NULL when libvirt was not reachable */
	xmlDoc *caps;           /* caps_xml already parsed by the caller, or NULL: parsed on each call */
	/* The host files read once for a run that examines many domains; may be NULL (read on each call). */
	struct kb_read_cache *reads;
	/* KVM's answers, asked once for such a run; may be NULL (asked on each call). */
	struct kb_kvm_answers *kvm;
	kb_domcaps_fn *domcaps; /* may be NULL */
	void *opaque;
	const char *const *to_create; /* NULL-terminated: disk images the caller creates before defining; may be NULL */
	/* Whether domain @name runs now (it holds its hugepages already); may be NULL. */
	bool (*running)(void *opaque, const char *name);
	/* The other domains' NICs (not this domain's); may be NULL. */
	const struct kb_preflight_nic *nics;
	size_t nic_count;
	/* libvirt network @name: 1 active, 0 inactive, -1 absent, -2 unknown (not checked); may be NULL. */
	int (*network)(void *opaque, const char *name);
	const char *const *to_start; /* NULL-terminated: inactive networks the caller starts before defining; may be NULL */
	/*
	 * libvirt's verdict on the guest CPU @cpu_xml for this hypervisor (see
	 * kb_virt_cpu_compare): 1 it starts, 0 not (@why: the features missing), -1 unknown; may be NULL.
	 */
	int (*cpu_compare)(void *opaque, const char *emulator, const char *arch, const char *machine, const char *virttype,
			   const char *cpu_xml, char *why, size_t size);
};

/*
 * Examine the domain @doc (already parsed) against the host and add what
 * would stop it from starting (ERROR) or make it hard to use (WARN) to
 * @findings. Returns 0, or -1 with @err when the document is not a domain.
 */
int kb_preflight(const struct kb_ctx *ctx, const struct kb_xml *xml, xmlDoc *doc,
		 const struct kb_preflight_host *host, struct kb_findings *findings, struct kb_error *err);

/* Whether @caps_xml offers guests of @virttype ("kvm", "qemu") for @arch. */
bool kb_caps_offers(const struct kb_xml *xml, const char *caps_xml, const char *arch, const char *virttype);

/* The machine types @caps_xml offers for @arch and @virttype, comma-separated, into @buf. */
const char *kb_preflight_machines(const struct kb_xml *xml, const char *caps_xml, const char *arch,
				  const char *virttype, char *buf, size_t size);

/*
 * The uid and gid QEMU runs as for @virttype, from the capabilities' DAC
 * base label (<baselabel type='kvm'>+64055:+64055</baselabel>). False when
 * the capabilities do not say.
 */
bool kb_caps_qemu_identity(const struct kb_xml *xml, xmlDoc *caps, const char *virttype, uid_t *uid, gid_t *gid);

#endif
