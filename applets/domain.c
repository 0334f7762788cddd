/*
 * domain: libvirt domains from XML files, with a preflight that says why a
 * domain would not start before libvirt does.
 *
 *   preflight FILE...  findings per element, ERROR or WARN, and the fix
 *   define FILE...     preflight, define (validated), autostart, start, wait
 *   up BUNDLE          unpack + preflight + define (+ start)
 *   rm NAME...         destroy, undefine, remove image files, refresh pools
 *   stop, pause NAME... shut down (or destroy), suspend
 *   new NAME WORDS...  a definition from virt-install-like words, its volumes
 *
 * define, new, rm, stop and pause are the domain resource's plan and apply
 * (lib/virt/domain.c): the options into its spec, plan, then print
 * (--dry-run) or apply and print; each element shown before -> after.
 * Several domains are defined, started and removed in parallel threads on
 * one libvirt connection: QEMU's start-up is the slow part, and libvirtd
 * starts different domains concurrently.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/applet.h"
#include "kvmbox/bundle/bundle.h"
#include "kvmbox/bundle/unpack.h"
#include "kvmbox/core/change.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/print.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/core/xml.h"
#include "kvmbox/virt/domain.h"
#include "kvmbox/virt/preflight.h"
#include "kvmbox/virt/virt.h"

const char domain_usage[] =
	"Usage: kvmbox domain preflight FILE.xml...\n"
	"       kvmbox domain define FILE.xml... [--autostart[=no]] [--start] [--wait SEC] [--no-preflight] [--dry-run]\n"
	"       kvmbox domain new NAME --memory SIZE [WORDS...] [--prune] [--print-xml] [--autostart[=no]] [--start] [--dry-run]\n"
	"       kvmbox domain up BUNDLE [--dest DIR] [--name NAME] [--replace] [--autostart[=no]] [--start] [--wait SEC]\n"
	"       kvmbox domain rm NAME... [--storage] [--dry-run]\n"
	"       kvmbox domain stop NAME... [--force] [--wait SEC] [--dry-run]\n"
	"       kvmbox domain pause NAME... [--dry-run]\n"
	"\n"
	"Define and launch libvirt domains. preflight tells, per XML element, what\n"
	"would stop the domain from starting on this host (ERROR) or make it hard to\n"
	"use (WARN), and the fix: /dev/kvm, emulator, machine type, CPU model and\n"
	"nested features, NUMA cells, hugepages, CPU pinning, bridges, disks, 9p\n"
	"directories, PCI host devices, serial console. define runs the preflight,\n"
	"shows its warnings, then defines the domain (same name and UUID and the\n"
	"same definition: unchanged; same name with another UUID: refused). up\n"
	"unpacks a bundle first; a domain of that name that boots no image of the\n"
	"bundle is another's: refused unless --replace. rm destroys, undefines and\n"
	"with --storage removes the domain's disk images and refreshes the storage\n"
	"pools that held them. stop asks the guest to shut down (ACPI) and waits,\n"
	"--force destroys it at once; pause suspends it (a shut off domain starts\n"
	"paused; virsh resume runs it again). Several domains are handled in parallel.\n"
	"\n"
	"new makes the definition from words (virt-install's syntax), checks them on\n"
	"this host, creates new disks as volumes of a storage pool and defines the\n"
	"domain the way define does; the same words again change nothing. On an\n"
	"existing domain a larger size= grows its volume (never shrinks it); a disk\n"
	"is never replaced by a new empty volume (a format= change, a missing file:\n"
	"refused); a running domain's new definition waits for its next start\n"
	"(reboot-required). A run interrupted after making a volume removes it; a\n"
	"killed one's volume is adopted by the next run of the same words.\n"
	"  --memory SIZE     4G, 512M (required); a number alone is MiB, as virt-install reads it\n"
	"  --vcpus N[,maxvcpus=M][,sockets=S,cores=C,threads=T]  default 1 (virt-install's arithmetic;\n"
	"                    a topology is refused with --placement auto, which gives the pins' own)\n"
	"  --cpu MODE        host-model (default), host-passthrough, or MODEL[,+feat,-feat...]\n"
	"  --machine TYPE    default q35; --virt-type kvm|qemu (default: kvm when libvirt offers it)\n"
	"  --disk OPTS       size=20G (a number alone: GiB, as virt-install)[,pool=default][,format=qcow2|raw][,bus=virtio|sata|scsi|ide|usb]: a new volume\n"
	"                    (pool default missing: made, dir /var/lib/libvirt/images, autostarted);\n"
	"                    path=FILE: an existing image; path=FILE,size=: a new volume there;\n"
	"                    backing=IMG,size=20G[,pool=]: a qcow2 overlay on IMG (repeatable); with any:\n"
	"                    cache=, io=, discard=unmap|ignore (new volumes: unmap), detect_zeroes=,\n"
	"                    serial=, readonly, shareable (virt-install's); bus=scsi: on virtio-scsi;\n"
	"                    path=,device=cdrom (an ISO, read-only) or device=lun (a /dev block device)\n"
	"  --cdrom ISO       the installer: the first start (implied) boots it once, a domain new this run\n"
	"                    only; the definition boots the disk, its CD-ROM drive empty (virt-install's)\n"
	"  --location TREE|ISO  the installer's kernel and initrd from a local tree or ISO (Debian's\n"
	"                    install.amd/, Ubuntu's casper/, images/pxeboot/, ...): the first start (implied)\n"
	"                    boots them once, copied to /var/lib/libvirt/boot and removed after it;\n"
	"                    --extra-args ARGS its kernel command line (console=ttyS0 ...)\n"
	"  --boot B          hd|cdrom|network[,...] (default hd); uefi or firmware=efi\n"
	"                    (libvirt picks OVMF, NVRAM per domain), secure boot: uefi,firmware.feature0.name=\n"
	"                    secure-boot,firmware.feature0.enabled=yes (enabled=no: firmware without it)\n"
	"  --network OPTS    bridge=BR or network=NAME[,model=virtio|e1000|e1000e|rtl8139][,mac=MAC]\n"
	"                    (repeatable), or none; without it: network=default (started if inactive)\n"
	"  --graphics G      vnc|spice[,listen=ADDR][,password=PW] (default vnc on 127.0.0.1) or none;\n"
	"                    spice adds virt-install's agent channel, USB redirection and sound\n"
	"  --video MODEL     vga (VNC's default), virtio (SPICE's), qxl, bochs, ramfb, cirrus, none\n"
	"  --sound MODEL     none, ich9, ich6, ac97 (default: ich9 with SPICE only, as virt-install)\n"
	"  --serial S        pty (default; virsh console), file,path=FILE or none\n"
	"  --console C       pty[,target.type=serial|virtio] (default: the serial port) or none\n"
	"  --channel C       unix[,name=org.qemu.guest_agent.0], spicevmc or none (repeatable; replaces\n"
	"                    the defaults: the guest agent's, SPICE's with SPICE)\n"
	"  --rng SRC         /dev/urandom (default), /dev/random or none; --memballoon virtio (default)|none\n"
	"  --controller T    usb|scsi|sata|virtio-serial[,model=MODEL] (repeatable)\n"
	"  --description TEXT  the definition's <description>\n"
	"  --noautoconsole   accepted: kvmbox never attaches a console (virsh console NAME does)\n"
	"  --filesystem SRC,TARGET[,driver.type=virtiofs]  the host directory SRC (it must exist; not a\n"
	"                    system directory) for the guest to mount as TARGET: 9p (accessmode mapped),\n"
	"                    or virtiofs with shared memory (memfd) backing (repeatable)\n"
	"  --hostdev ADDR    a PCI device (0000:81:00.3; see kvmbox pci list) (repeatable)\n"
	"  --hugepages[=SIZE]  guest memory from the host's hugepages (default size: the host's)\n"
	"  --nested[=no]     the guest can run KVM itself (vmx/svm required; needs nested=1 here)\n"
	"  --placement auto[,emulator-threads=share|isolate][,pci-numa-affinity=POLICY]|none\n"
	"                    auto: pin each vCPU to its own host CPU (whole cores first, never the\n"
	"                    host's reserve: one core per node or what isolcpus= leaves), on one NUMA node\n"
	"                    when it fits (the device's node first), else balanced guest NUMA cells; a\n"
	"                    <topology> matching the pins; emulator threads on the reserve (share) or a\n"
	"                    CPU of their own (isolate); POLICY: the device's node required (default),\n"
	"                    preferred, legacy or socket\n"
	"  --allow-host-file[=no]  disk=, backing= and --cdrom may name a file of the host itself (under\n"
	"                    /etc, /usr, /boot, /dev, ...: refused without it; a disk path with '..' always is;\n"
	"                    a mounted or swap device, or an image another process holds open, too)\n"
	"  --cloud-init[=OPTS]  a NoCloud seed (cidata ISO) for the first boot, beside the first disk:\n"
	"                    user-data=FILE, meta-data=FILE, network-config=FILE, ssh-key=FILE (root's key),\n"
	"                    root-password-generate=on (printed once), disable=on; bare: virt-install's\n"
	"                    root-password-generate=on,disable=on. It implies --start; the definition keeps\n"
	"                    no seed, and a second run neither attaches it again nor makes a new password\n"
	"  --import          boot the disk as it is (virt-install's word; no install media)\n"
	"  --osinfo OS       (--os-variant) devices, machine, firmware and minimums of an OS from\n"
	"                    osinfo-db (debian11, win11, winxp, generic; an unknown name gets the closest),\n"
	"                    or detect=on[,require=on] from the --cdrom image's volume id; without it:\n"
	"                    virtio devices on q35, BIOS\n"
	"  --prune           disks the words no longer name leave the definition (their files\n"
	"                    stay); without it such a disk is refused, never detached silently\n"
	"  --print-xml       print the definition, change nothing\n"
	"\n"
	"  --connect URI   libvirt URI (default $LIBVIRT_DEFAULT_URI, else qemu:///system)\n"
	"  --autostart     start the domain when libvirtd starts; --autostart=no, --no-autostart: not\n"
	"                  (without either, autostart is left as it is)\n"
	"  --start         start it and wait until it runs\n"
	"  --wait SEC      how long to wait for running, stop: for shut off (default 60)\n"
	"  --no-preflight  define even when the preflight finds errors\n"
	"  --dry-run       define, new, rm, stop, pause: show what would change, change nothing\n"
	"  --jobs N        domains handled at once (default 8)\n"
	"  --dest DIR      up: where to unpack (default /var/lib/libvirt/images)\n"
	"  --name NAME     up: the domain's name and its directory's (default: the bundle's)\n"
	"  --replace       up: unpack again over an existing directory, and define over a\n"
	"                  domain of that name that boots other images\n"
	"  --force         stop: destroy (pull the plug) instead of asking the guest\n"
	"  --storage       rm: also remove the domain's disk image files, except a file\n"
	"                  another domain uses (disk, volume, backing file) or a process\n"
	"                  has open: that one is kept and the row says who holds it\n";

#define DOMAIN_XML_MAX (1u << 20)
#define DEFAULT_DEST "/var/lib/libvirt/images"

struct domain_cmd {
	struct kb_ctx *ctx;
	struct kb_xml xml;
	struct kb_virt virt;
	const char *uri;
	virConnectPtr conn;
	struct kb_xml_schema *schema; /* libvirt's domain schema, compiled once for every define; may be NULL */
	struct kb_domain_spec spec; /* the options; each domain's spec starts as a copy */
	bool no_preflight, replace, dry_run, print_xml, force;
	unsigned jobs;
	const char *dest, *name;
	pthread_mutex_t lock; /* serialises messages from the worker threads */
};

/* One domain being worked on, by one thread. */
struct job {
	struct domain_cmd *cmd;
	virConnectPtr conn; /* the worker thread's own connection (libvirtd serves 5 calls at once per connection) */
	const char *arg;    /* the file or name from the command line */
	struct kb_plan plan;
	int rc;
	bool planned; /* define: its plan stands, for the apply pass */
};

/* A failure on stderr, with what kvmbox knows of the libvirt error in it. */
static void say_failure(struct domain_cmd *cmd, const struct kb_error *err)
{
	const struct kb_virt_advice *advice = kb_virt_explain(err->what);
	pthread_mutex_lock(&cmd->lock);
	kb_say_failure(cmd->ctx, err);
	if (advice)
		kb_say_error(cmd->ctx, "%s; fix: %s", advice->explanation, advice->fix);
	pthread_mutex_unlock(&cmd->lock);
}

/*
 * libvirt's domain schema for @cmd's URI, compiled by a process of its own
 * forked now, while this one is small and has one thread (see
 * kb_xml_schema_serve): it ends with the socket's end, or with this process,
 * never by a terminal's or a group's signal alone while this one goes on
 * handling it, and it has no output (nor a hold on this one's stdout). NULL
 * when there is none: libvirt validates.
 */
static struct kb_xml_schema *start_validator(struct domain_cmd *cmd)
{
	const char *path = kb_domain_schema_path(cmd->uri);
	int pair[2];
	if (!path || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		return NULL;
	pid_t parent = getpid(), pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		const int deaf[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };
		for (size_t i = 0; i < sizeof(deaf) / sizeof(deaf[0]); i++)
			signal(deaf[i], SIG_IGN);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		for (int fd = 0; fd <= 2; fd++)
			null >= 0 ? dup2(null, fd) : close(fd);
		close(pair[0]);
		kb_xml_schema_serve(path, pair[1]);
		_exit(0); /* nothing of this process's (stdio buffers, atexit handlers) runs twice */
	}
	close(pair[1]);
	struct kb_xml_schema *schema = NULL;
	struct kb_error ignored = { 0 };
	if (pid < 0 || kb_xml_schema_adopt(pid, pair[0], &schema, &ignored) < 0) {
		close(pair[0]);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		return NULL;
	}
	return schema;
}

/*
 * libxml2, then libvirt. @validates: the verb will want libvirt's domain
 * schema, compiled meanwhile by a validator forked first (start_validator):
 * a thread would share the address space, and each of the fifty libraries'
 * mmaps and mprotects would stop its CPU (the two together took longer than
 * one after the other).
 */
static int load_libraries(struct domain_cmd *cmd, bool validates, struct kb_error *err)
{
	if (validates)
		cmd->schema = start_validator(cmd);
	if (kb_xml_load(&cmd->xml, err) < 0)
		return -1;
	return kb_virt_load(&cmd->virt, err);
}

static int connect_libvirt(struct domain_cmd *cmd)
{
	struct kb_error err = { 0 };
	cmd->conn = kb_virt_connect(&cmd->virt, cmd->uri, &err, NULL);
	if (!cmd->conn) {
		say_failure(cmd, &err);
		return -1;
	}
	return 0;
}

/* Move every change of @from to the end of @into (@from is left empty). */
static int plan_take(struct kb_plan *into, struct kb_plan *from)
{
	if (!into->change || into->count + from->count > into->cap) { /* (an empty list has no array yet) */
		size_t cap = into->count + from->count + 8;
		struct kb_change *grown = realloc(into->change, cap * sizeof(*grown));
		if (!grown)
			return -1;
		into->change = grown;
		into->cap = cap;
	}
	if (from->count)
		memcpy(into->change + into->count, from->change, from->count * sizeof(*from->change));
	into->count += from->count;
	free(from->change);
	*from = (struct kb_plan){ 0 };
	return 0;
}

/* ---- preflight ------------------------------------------------------------ */

static char *domcaps_from_libvirt(void *opaque, const char *emulator, const char *arch, const char *machine,
				  const char *virttype)
{
	struct domain_cmd *cmd = opaque;
	return cmd->virt.get_domain_capabilities(cmd->conn, emulator, arch, machine, virttype, 0);
}

static int cpu_compare(void *opaque, const char *emulator, const char *arch, const char *machine, const char *virttype,
		       const char *cpu_xml, char *why, size_t size)
{
	struct domain_cmd *cmd = opaque;
	return kb_virt_cpu_compare(&cmd->virt, cmd->conn, emulator, arch, machine, virttype, cpu_xml, why, size);
}

static const char *severity_name(enum kb_severity s)
{
	return s == KB_SEVERITY_ERROR ? "ERROR" : "WARN";
}

/* One file's findings: a heading and each finding (quiet: errors only) as text; {file, domain, errors, warnings, findings} as JSON. */
static void print_findings(struct kb_printer *pr, const char *file, const char *name, const struct kb_findings *f)
{
	const struct kb_ctx *ctx = pr->ctx;
	size_t warnings = f->count - f->errors;
	kb_print_open_object(pr, NULL);
	kb_print_string(pr, f->count || ctx->verbosity >= 0 ? KB_PRINT_ANY : KB_PRINT_JSON, "file", "%s", file);
	kb_print_string(pr, KB_PRINT_JSON, "domain", NULL, name);
	if (!f->count && ctx->verbosity >= 0)
		kb_print_text(pr, ": no findings: the domain can start on this host\n");
	else if (f->count)
		kb_print_text(pr, ": %zu error%s, %zu warning%s\n", f->errors, f->errors == 1 ? "" : "s", warnings,
			      warnings == 1 ? "" : "s");
	kb_print_uint(pr, KB_PRINT_JSON, "errors", NULL, f->errors);
	kb_print_uint(pr, KB_PRINT_JSON, "warnings", NULL, warnings);
	kb_print_open_array(pr, "findings");
	for (size_t i = 0; i < f->count; i++) {
		const struct kb_finding *x = &f->item[i];
		bool shown = ctx->verbosity >= 0 || x->severity == KB_SEVERITY_ERROR;
		enum kb_print_kind kind = shown ? KB_PRINT_ANY : KB_PRINT_JSON;
		kb_print_open_object(pr, NULL);
		if (shown)
			kb_print_text(pr, "  %s", !ctx->color ? "" : x->severity == KB_SEVERITY_ERROR ? "\033[31m" : "\033[33m");
		kb_print_string(pr, kind, "severity", "%-5s", severity_name(x->severity));
		if (shown)
			kb_print_text(pr, "%s ", ctx->color ? "\033[0m" : "");
		kb_print_string(pr, kind, "id", "%-16s ", x->id);
		kb_print_string(pr, kind, "element", "%s\n", x->element);
		kb_print_string(pr, kind, "message", "        %s\n", x->message);
		kb_print_string(pr, shown && x->fix[0] ? kind : KB_PRINT_JSON, "fix", "        fix: %s\n", x->fix);
		kb_print_close_object(pr);
	}
	kb_print_close_array(pr);
	kb_print_close_object(pr);
}

/* libvirt network @name for the preflight. */
static int network_state(void *opaque, const char *name)
{
	struct domain_cmd *cmd = opaque;
	return kb_virt_network_state(&cmd->virt, cmd->conn, name);
}

static bool domain_running(void *opaque, const char *name)
{
	struct domain_cmd *cmd = opaque;
	virDomainPtr dom = cmd->conn ? cmd->virt.domain_lookup(cmd->conn, name) : NULL;
	int state = 0, reason = 0;
	bool running = dom && cmd->virt.domain_state(dom, &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF;
	if (dom)
		cmd->virt.domain_free(dom);
	cmd->virt.reset_error();
	return running;
}

/* The finding that says libvirt did not answer: machine and CPU were not checked. */
static void add_unreachable(struct domain_cmd *cmd, struct kb_findings *findings)
{
	struct kb_finding *w = &findings->item[findings->count < KB_FINDINGS_MAX ? findings->count++ : KB_FINDINGS_MAX - 1];
	memset(w, 0, sizeof(*w));
	w->severity = KB_SEVERITY_WARN;
	snprintf(w->id, sizeof(w->id), "libvirt.unreachable");
	snprintf(w->element, sizeof(w->element), "/domain");
	snprintf(w->message, sizeof(w->message), "libvirt at %s did not answer: machine type and CPU model were not checked",
		 cmd->uri);
	snprintf(w->fix, sizeof(w->fix), "kvmbox doctor");
}

/*
 * Preflight every file; print the findings (@found_only: of the files with
 * any). Returns the number of files with errors, or -1 when a file could
 * not be read as a domain.
 */
static int preflight_files(struct domain_cmd *cmd, char **files, int count, bool found_only)
{
	/* What every file's preflight asks of the host, asked once: KVM, the host files, libvirt's capabilities. */
	struct kb_kvm_answers kvm = { 0 };
	struct kb_read_cache *reads = calloc(1, sizeof(*reads));
	struct kb_preflight_host host = { .domcaps = domcaps_from_libvirt, .cpu_compare = cpu_compare, .opaque = cmd,
					  .running = domain_running, .network = network_state, .kvm = &kvm, .reads = reads };
	autofree char *caps = cmd->conn ? cmd->virt.get_capabilities(cmd->conn) : NULL;
	host.caps_xml = caps;
	host.caps = caps ? kb_xml_parse(&cmd->xml, caps, strlen(caps), "capabilities", NULL) : NULL;
	if (!cmd->conn)
		host.domcaps = NULL;
	int failing = 0;
	struct kb_printer pr;
	kb_print_begin(&pr, cmd->ctx, "preflight");
	struct kb_findings *findings = calloc(1, sizeof(*findings));
	if (!findings || !reads) {
		kb_say_error(cmd->ctx, "out of memory");
		failing = -1;
	}
	for (int i = 0; i < count && failing >= 0; i++) {
		struct kb_error err = { 0 };
		autofree char *text = NULL;
		size_t len;
		xmlDoc *doc = kb_read_path(files[i], DOMAIN_XML_MAX, &text, &len, &err) == 0
				      ? kb_xml_parse(&cmd->xml, text, len, files[i], &err)
				      : NULL;
		*findings = (struct kb_findings){ 0 };
		if (!doc || kb_preflight(cmd->ctx, &cmd->xml, doc, &host, findings, &err) < 0) {
			if (doc)
				kb_say_error(cmd->ctx, "%s: %s", files[i], err.what); /* the domain's content, not the file */
			else
				kb_say_failure(cmd->ctx, &err);
			failing = -1;
		} else {
			autofree char *name = kb_xml_text(&cmd->xml, kb_xml_child(cmd->xml.root_element(doc), "name"));
			if (!cmd->conn)
				add_unreachable(cmd, findings);
			if (!found_only || findings->count)
				print_findings(&pr, files[i], name ? name : "", findings);
			failing += findings->errors > 0;
		}
		if (doc)
			cmd->xml.free_doc(doc);
	}
	kb_print_end(&pr);
	free(findings);
	free(reads);
	if (host.caps)
		cmd->xml.free_doc(host.caps);
	return failing;
}

static int cmd_preflight(struct domain_cmd *cmd, char **files, int count)
{
	/* Without libvirt the file and host checks still run; machine and CPU are then not checked. */
	struct kb_error err = { 0 };
	cmd->conn = kb_virt_connect(&cmd->virt, cmd->uri, &err, NULL);
	if (!cmd->conn && cmd->ctx->verbosity > 0)
		say_failure(cmd, &err);
	int failing = preflight_files(cmd, files, count, false);
	return failing == 0 ? KB_EXIT_OK : KB_EXIT_FAILURE;
}

/* ---- define, rm: the resource's plan and apply, one domain per job ------------------------------------- */

/* The job's domain: the options' spec, this file or name, the worker's connection. */
static void job_spec(struct job *j, struct kb_domain_spec *spec, struct kb_domain_link *link)
{
	*spec = j->cmd->spec;
	*link = (struct kb_domain_link){ &j->cmd->xml, &j->cmd->virt, j->conn, j->cmd->schema, false };
	spec->link = link;
}

static void job_finish(struct job *j, int rc, const struct kb_error *err)
{
	if (rc < 0) {
		say_failure(j->cmd, err);
		j->rc = -1;
	}
}

static void define_spec(struct job *j, struct kb_domain_spec *spec, struct kb_domain_link *link)
{
	job_spec(j, spec, link);
	snprintf(spec->xml, sizeof(spec->xml), "%s", j->arg);
	spec->preflight = false; /* done for every file before any was defined */
}

/*
 * Every file is planned before any is applied: each plan sends its definition
 * to the schema's validator (validate_ahead), which works through them while
 * the others are planned, so an apply finds its verdict waiting.
 */
static void define_plan_one(struct job *j)
{
	struct kb_domain_spec spec;
	struct kb_domain_link link;
	struct kb_error err = { 0 };
	define_spec(j, &spec, &link);
	link.validate_ahead = !j->cmd->dry_run;
	int rc = kb_domain_plan(j->cmd->ctx, &spec, &j->plan, &err);
	j->planned = rc == 0;
	job_finish(j, rc, &err);
}

/*
 * Between the passes, once every file is planned: a domain is defined by one
 * file of a run. The first file naming it is applied; each later one is
 * refused (a second define would replace the first's, or fail on its UUID,
 * or start a guest already running), whatever order the jobs ran in.
 */
static void refuse_twins(struct job *jobs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		struct kb_change *def = jobs[i].planned ? kb_domain_plan_definition(&jobs[i].plan) : NULL;
		for (size_t k = 0; def && k < i; k++) {
			struct kb_change *first = jobs[k].planned ? kb_domain_plan_definition(&jobs[k].plan) : NULL;
			if (!first || strcmp(first->item, def->item))
				continue;
			struct kb_error err = { 0 };
			struct stat this, that;
			if (stat(jobs[i].arg, &this) == 0 && stat(jobs[k].arg, &that) == 0 && this.st_dev == that.st_dev &&
			    this.st_ino == that.st_ino)
				kb_fail(&err, 0, NULL, "%s: the same file as %s, given twice (domain '%s' is defined once)",
					jobs[i].arg, jobs[k].arg, def->item);
			else
				kb_fail(&err, 0, NULL, "%s: domain '%s' is defined by %s already in this run: one file per domain",
					jobs[i].arg, def->item, jobs[k].arg);
			def->status = KB_FAILED;
			kb_change_note(def, "%s", err.what);
			kb_plan_settle(&jobs[i].plan);
			jobs[i].planned = false;
			job_finish(&jobs[i], -1, &err);
			break;
		}
	}
}

static void define_apply_one(struct job *j)
{
	struct kb_domain_spec spec;
	struct kb_domain_link link;
	struct kb_error err = { 0 };
	if (!j->planned || j->cmd->dry_run)
		return;
	define_spec(j, &spec, &link);
	int rc = kb_domain_apply(j->cmd->ctx, &spec, &j->plan, &err);
	if (rc < 0)
		kb_plan_settle(&j->plan);
	job_finish(j, rc, &err);
}

static void state_one(struct job *j)
{
	struct kb_domain_spec spec;
	struct kb_domain_link link;
	struct kb_error err = { 0 };
	job_spec(j, &spec, &link);
	snprintf(spec.name, sizeof(spec.name), "%s", j->arg);
	int rc = strlen(j->arg) < sizeof(spec.name) ? 0 : kb_fail(&err, 0, NULL, "domain name '%s' is too long", j->arg);
	if (rc == 0)
		rc = kb_domain_state_plan(j->cmd->ctx, &spec, &j->plan, &err);
	if (rc == 0 && !j->cmd->dry_run && (rc = kb_domain_state_apply(j->cmd->ctx, &spec, &j->plan, &err)) < 0)
		kb_plan_settle(&j->plan);
	job_finish(j, rc, &err);
}

static void rm_one(struct job *j)
{
	struct kb_domain_spec spec;
	struct kb_domain_link link;
	struct kb_error err = { 0 };
	job_spec(j, &spec, &link);
	snprintf(spec.name, sizeof(spec.name), "%s", j->arg);
	int rc = strlen(j->arg) < sizeof(spec.name) ? 0 : kb_fail(&err, 0, NULL, "domain name '%s' is too long", j->arg);
	if (rc == 0)
		rc = kb_domain_remove_plan(j->cmd->ctx, &spec, &j->plan, &err);
	if (rc == 0 && !j->cmd->dry_run && (rc = kb_domain_remove_apply(j->cmd->ctx, &spec, &j->plan, &err)) < 0)
		kb_plan_settle(&j->plan);
	job_finish(j, rc, &err);
}

/* ---- running jobs in parallel ------------------------------------------------ */

struct pool_state {
	struct domain_cmd *cmd;
	struct job *jobs;
	size_t count;
	void (*work[2])(struct job *); /* the passes: the second (if any) begins once every job's first is done */
	void (*between)(struct job *jobs, size_t count); /* run once between them, by the thread ending the first */
	size_t next[2], done[2];
	pthread_mutex_t lock;
	pthread_cond_t first_done;
};

/*
 * Each extra worker thread talks to libvirtd on a connection of its own:
 * libvirtd serves at most max_client_requests (5 by default) calls of one
 * connection at a time, so 20 domains on one connection wait for each other
 * (a destroy alone takes QEMU's shutdown). The calling thread uses cmd->conn.
 */
static void work_through(struct pool_state *ps, bool own)
{
	virConnectPtr conn = NULL;
	if (own) {
		struct kb_error ignored = { 0 };
		conn = kb_virt_connect(&ps->cmd->virt, ps->cmd->uri, &ignored, NULL);
	}
	if (!conn)
		conn = ps->cmd->conn;
	for (int pass = 0; pass < 2 && ps->work[pass]; pass++) {
		pthread_mutex_lock(&ps->lock);
		while (pass > 0 && ps->done[0] < ps->count)
			pthread_cond_wait(&ps->first_done, &ps->lock);
		pthread_mutex_unlock(&ps->lock);
		for (;;) {
			pthread_mutex_lock(&ps->lock);
			size_t i = ps->next[pass] < ps->count ? ps->next[pass]++ : ps->count;
			pthread_mutex_unlock(&ps->lock);
			if (i == ps->count)
				break;
			ps->jobs[i].conn = conn;
			ps->work[pass](&ps->jobs[i]);
			pthread_mutex_lock(&ps->lock);
			if (++ps->done[pass] == ps->count && pass == 0) {
				if (ps->between)
					ps->between(ps->jobs, ps->count);
				pthread_cond_broadcast(&ps->first_done);
			}
			pthread_mutex_unlock(&ps->lock);
		}
	}
	if (conn != ps->cmd->conn)
		ps->cmd->virt.connect_close(conn);
}

static void *extra_worker(void *arg)
{
	work_through(arg, true);
	return NULL;
}

/*
 * Run @work on every argument, up to cmd->jobs at once, then @then (NULL:
 * none) on every argument once all of @work is done; print the changes in
 * argument order.
 */
static int run_jobs(struct domain_cmd *cmd, char **args, int count, void (*work)(struct job *), void (*then)(struct job *),
		    void (*between)(struct job *jobs, size_t count))
{
	struct job *jobs = calloc((size_t)count, sizeof(*jobs));
	if (!jobs) {
		kb_say_error(cmd->ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	struct pool_state ps = { .cmd = cmd, .jobs = jobs, .count = (size_t)count, .work = { work, then }, .between = between };
	pthread_mutex_init(&ps.lock, NULL);
	pthread_cond_init(&ps.first_done, NULL);
	for (int i = 0; i < count; i++) {
		jobs[i].cmd = cmd;
		jobs[i].arg = args[i];
	}
	unsigned threads = cmd->jobs < (unsigned)count ? cmd->jobs : (unsigned)count;
	cpu_set_t allowed;
	long cpus = sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : sysconf(_SC_NPROCESSORS_ONLN);
	if (kb_virt_in_process(cmd->uri) && cpus > 0 && threads > (unsigned long)cpus)
		threads = (unsigned)cpus; /* the driver's work is this process's CPU: the CPUs it may run on */
	pthread_t tids[64];
	unsigned started = 0;
	for (unsigned t = 1; t < threads && t < 64; t++)
		if (pthread_create(&tids[started], NULL, extra_worker, &ps) == 0)
			started++;
	work_through(&ps, false); /* this thread works too, on cmd->conn */
	for (unsigned t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	pthread_cond_destroy(&ps.first_done);
	pthread_mutex_destroy(&ps.lock);

	autoplan struct kb_plan plan = { 0 };
	int rc = KB_EXIT_OK;
	for (int i = 0; i < count; i++) {
		if (plan_take(&plan, &jobs[i].plan) < 0) {
			kb_plan_free(&jobs[i].plan);
			rc = KB_EXIT_FAILURE;
		}
		if (jobs[i].rc < 0)
			rc = KB_EXIT_FAILURE;
	}
	kb_plan_print(cmd->ctx, &plan);
	free(jobs);
	return rc;
}

/* Define @files, after a preflight of all of them. */
static int cmd_define(struct domain_cmd *cmd, char **files, int count)
{
	if (!cmd->conn && connect_libvirt(cmd) < 0)
		return KB_EXIT_FAILURE;
	if (!cmd->no_preflight) {
		/* Warnings are shown and defined anyway; errors stop every file. */
		int failing = preflight_files(cmd, files, count, true);
		if (failing < 0)
			return KB_EXIT_FAILURE;
		if (failing > 0) {
			kb_say_error(cmd->ctx, "the preflight found errors in %d of %d file%s: nothing defined "
					       "(--no-preflight defines anyway)", failing, count, count == 1 ? "" : "s");
			return KB_EXIT_FAILURE;
		}
	}
	return run_jobs(cmd, files, count, define_plan_one, define_apply_one, refuse_twins);
}

static int cmd_rm(struct domain_cmd *cmd, char **names, int count)
{
	if (connect_libvirt(cmd) < 0)
		return KB_EXIT_FAILURE;
	return run_jobs(cmd, names, count, rm_one, NULL, NULL);
}

/* stop, pause: @state for every name. */
static int cmd_state(struct domain_cmd *cmd, enum kb_domain_state state, char **names, int count)
{
	if (connect_libvirt(cmd) < 0)
		return KB_EXIT_FAILURE;
	cmd->spec.state = state;
	return run_jobs(cmd, names, count, state_one, NULL, NULL);
}

struct up_job {
	struct kb_unpack_spec spec;
	struct kb_unpack_report report;
};

/* up: unpack the bundle (unless already unpacked), then define what it holds. */
static int cmd_up(struct domain_cmd *cmd, const char *bundle)
{
	struct kb_error err = { 0 };
	/* Large (paths, every member's name): on the heap, one allocation for both. */
	autofree struct up_job *job = calloc(1, sizeof(*job));
	if (!job) {
		kb_say_error(cmd->ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	struct kb_unpack_spec *spec = &job->spec;
	kb_unpack_spec_init(spec);
	spec->replace = cmd->replace;
	spec->keep_existing = true; /* already unpacked: defined from what is there */
	if (kb_unpack_spec_set(spec, "source", bundle, &err) < 0 || kb_unpack_spec_set(spec, "dest", cmd->dest, &err) < 0 ||
	    (cmd->name && kb_unpack_spec_set(spec, "name", cmd->name, &err) < 0)) {
		kb_say_error(cmd->ctx, "%s", err.what);
		return KB_EXIT_USAGE;
	}
	char name[KB_BUNDLE_NAME_MAX];
	if (cmd->name)
		snprintf(name, sizeof(name), "%s", cmd->name);
	else
		kb_bundle_default_name(bundle, name, sizeof(name));
	char dir[PATH_MAX], xml_file[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/%s", cmd->dest, name);

	autoplan struct kb_plan plan = { 0 };
	int rc = kb_unpack_plan(cmd->ctx, spec, &plan, &err);
	if (rc == 0 && (rc = kb_unpack_apply_report(cmd->ctx, spec, &plan, &job->report, &err)) < 0)
		kb_plan_settle(&plan);
	/* The unpack's rows (define's own changes follow): only when it unpacked, or failed. */
	if (rc < 0 || kb_plan_changes(&plan)) {
		for (size_t i = 0; i < plan.count; i++) {
			struct kb_row row;
			kb_change_row(&plan.change[i], &row);
			kb_rows_print(cmd->ctx, &row, 1);
		}
		if (rc == 0 && job->report.count)
			kb_unpack_report_print(cmd->ctx, &job->report);
	} else if (cmd->ctx->verbosity > 0) {
		fprintf(cmd->ctx->err, "kvmbox domain: %s is already unpacked (--replace unpacks again)\n", dir);
	}
	if (rc < 0) {
		kb_say_failure(cmd->ctx, &err);
		return KB_EXIT_FAILURE;
	}
	struct kb_path unpacked; /* the directory as the root sees it, no link left that leads out */
	if (kb_sysroot_resolved_path(cmd->ctx, dir, true, &unpacked, &err) < 0) {
		kb_say_failure(cmd->ctx, &err);
		return KB_EXIT_FAILURE;
	}
	snprintf(xml_file, sizeof(xml_file), "%s/domain.xml", unpacked.s);
	/* The bundle's domain: named as --name says, never taking over another's without --replace. */
	snprintf(cmd->spec.bundle_dir, sizeof(cmd->spec.bundle_dir), "%s", dir);
	cmd->spec.take_over = cmd->replace;
	if (cmd->name) {
		cmd->spec.rename = true;
		snprintf(cmd->spec.name, sizeof(cmd->spec.name), "%s", cmd->name);
	}
	char *files[] = { xml_file };
	return cmd_define(cmd, files, 1);
}

/* ---- new: a domain from words ------------------------------------------------ */

static int cmd_new(struct domain_cmd *cmd)
{
	if (connect_libvirt(cmd) < 0)
		return KB_EXIT_FAILURE;
	struct kb_domain_spec *spec = &cmd->spec;
	struct kb_domain_link link = { &cmd->xml, &cmd->virt, cmd->conn, cmd->schema, false };
	struct kb_error err = { 0 };
	struct kb_kvm_answers kvm = { 0 }; /* asked once, by the plan; its apply builds the same definition */
	spec->link = &link;
	spec->preflight = !cmd->no_preflight;
	spec->kvm = &kvm;
	if (cmd->print_xml) {
		autofree char *xml = NULL;
		if (kb_domain_xml(cmd->ctx, spec, &xml, &err) < 0) {
			say_failure(cmd, &err);
			return KB_EXIT_FAILURE;
		}
		fputs(xml, cmd->ctx->out);
		return KB_EXIT_OK;
	}
	struct kb_findings *findings = calloc(1, sizeof(*findings));
	if (!findings) {
		kb_say_error(cmd->ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	spec->findings = findings;
	autoplan struct kb_plan plan = { 0 };
	int rc = kb_domain_plan(cmd->ctx, spec, &plan, &err);
	if (findings->count) {
		/* The preflight's warnings, and its errors: what to fix, before anything was made. */
		struct kb_printer pr;
		kb_print_begin(&pr, cmd->ctx, "preflight");
		print_findings(&pr, spec->name, spec->name, findings);
		kb_print_end(&pr);
	}
	free(findings);
	spec->findings = NULL;
	char password[KB_ROOT_PASSWORD_SIZE] = "";
	spec->root_password = password;
	if (rc == 0 && !cmd->dry_run && (rc = kb_domain_apply(cmd->ctx, spec, &plan, &err)) < 0)
		kb_plan_settle(&plan);
	spec->root_password = NULL;
	if (password[0]) {
		/* virt-install's line, once; kept nowhere but in the seed. */
		if (cmd->ctx->format == KB_FORMAT_JSON) {
			struct kb_envelope_member m;
			FILE *out = kb_envelope_member_begin(cmd->ctx, &m, "root_password");
			if (out)
				kb_json_string(out, password);
			kb_envelope_member_end(cmd->ctx, &m);
		} else {
			fprintf(cmd->ctx->out, "Password for first root login is: %s\n", password);
		}
		explicit_bzero(password, sizeof(password));
	}
	kb_plan_print(cmd->ctx, &plan);
	if (rc < 0) {
		say_failure(cmd, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}

int domain_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_CONNECT = KB_OPT_APPLET_FIRST, OPT_AUTOSTART, OPT_START, OPT_WAIT, OPT_NO_PREFLIGHT, OPT_JOBS,
		OPT_DEST, OPT_NAME, OPT_REPLACE, OPT_STORAGE, OPT_DRY_RUN, OPT_PRINT_XML, OPT_PRUNE, OPT_NO_AUTOSTART, OPT_FORCE,
		OPT_WORD, /* OPT_WORD + i: the domain new word new_words[i] */
	};
	/* domain new's options are its words (kvmbox/virt/domnew.h), the same as provision's [domain] keys. */
	static const char *const new_words[] = { "memory", "vcpus", "cpu", "machine", "virt-type", "disk", "cdrom",
						 "boot", "network", "graphics", "hostdev", "hugepages", "nested", "placement",
						 "allow-host-file", "cloud-init", "import", "osinfo", "video", "sound", "serial",
						 "console", "channel", "rng", "memballoon", "controller", "description",
						 "noautoconsole", "filesystem", "location", "extra-args" };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "connect", required_argument, NULL, OPT_CONNECT },
		{ "autostart", optional_argument, NULL, OPT_AUTOSTART },
		{ "no-autostart", no_argument, NULL, OPT_NO_AUTOSTART },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "start", no_argument, NULL, OPT_START },
		{ "wait", required_argument, NULL, OPT_WAIT },
		{ "no-preflight", no_argument, NULL, OPT_NO_PREFLIGHT },
		{ "jobs", required_argument, NULL, OPT_JOBS },
		{ "dest", required_argument, NULL, OPT_DEST },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "replace", no_argument, NULL, OPT_REPLACE },
		{ "storage", no_argument, NULL, OPT_STORAGE },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "print-xml", no_argument, NULL, OPT_PRINT_XML },
		{ "prune", no_argument, NULL, OPT_PRUNE },
		{ "memory", required_argument, NULL, OPT_WORD + 0 },
		{ "vcpus", required_argument, NULL, OPT_WORD + 1 },
		{ "cpu", required_argument, NULL, OPT_WORD + 2 },
		{ "machine", required_argument, NULL, OPT_WORD + 3 },
		{ "virt-type", required_argument, NULL, OPT_WORD + 4 },
		{ "disk", required_argument, NULL, OPT_WORD + 5 },
		{ "cdrom", required_argument, NULL, OPT_WORD + 6 },
		{ "boot", required_argument, NULL, OPT_WORD + 7 },
		{ "network", required_argument, NULL, OPT_WORD + 8 },
		{ "graphics", required_argument, NULL, OPT_WORD + 9 },
		{ "hostdev", required_argument, NULL, OPT_WORD + 10 },
		{ "hugepages", optional_argument, NULL, OPT_WORD + 11 },
		{ "nested", optional_argument, NULL, OPT_WORD + 12 },
		{ "placement", required_argument, NULL, OPT_WORD + 13 },
		{ "allow-host-file", optional_argument, NULL, OPT_WORD + 14 },
		{ "cloud-init", optional_argument, NULL, OPT_WORD + 15 },
		{ "import", optional_argument, NULL, OPT_WORD + 16 },
		{ "osinfo", required_argument, NULL, OPT_WORD + 17 },
		{ "os-variant", required_argument, NULL, OPT_WORD + 17 }, /* virt-install's older name */
		{ "video", required_argument, NULL, OPT_WORD + 18 },
		{ "sound", required_argument, NULL, OPT_WORD + 19 },
		{ "serial", required_argument, NULL, OPT_WORD + 20 },
		{ "console", required_argument, NULL, OPT_WORD + 21 },
		{ "channel", required_argument, NULL, OPT_WORD + 22 },
		{ "rng", required_argument, NULL, OPT_WORD + 23 },
		{ "memballoon", required_argument, NULL, OPT_WORD + 24 },
		{ "controller", required_argument, NULL, OPT_WORD + 25 },
		{ "description", required_argument, NULL, OPT_WORD + 26 },
		{ "noautoconsole", no_argument, NULL, OPT_WORD + 27 },
		{ "filesystem", required_argument, NULL, OPT_WORD + 28 },
		{ "location", required_argument, NULL, OPT_WORD + 29 },
		{ "extra-args", required_argument, NULL, OPT_WORD + 30 },
		{ 0 },
	};
	struct domain_cmd *cmd = calloc(1, sizeof(*cmd));
	bool any_word = false;
	if (!cmd) {
		kb_say_error(ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	*cmd = (struct domain_cmd){ .ctx = ctx, .jobs = 8, .dest = DEFAULT_DEST };
	pthread_mutex_init(&cmd->lock, NULL);
	kb_domain_spec_init(&cmd->spec);
	struct kb_error err = { 0 };
	int opt, rc = -1;
	long jobs;
	while (rc == -1 && (opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_FORCE: cmd->force = true; break;
		case OPT_START: cmd->spec.start = true; break;
		case OPT_NO_PREFLIGHT: cmd->no_preflight = true; break;
		case OPT_DEST: cmd->dest = optarg; break;
		case OPT_NAME: cmd->name = optarg; break;
		case OPT_REPLACE: cmd->replace = true; break;
		case OPT_STORAGE: cmd->spec.storage = true; break;
		case OPT_DRY_RUN: cmd->dry_run = true; break;
		case OPT_PRINT_XML: cmd->print_xml = true; break;
		case OPT_PRUNE: cmd->spec.prune = true; break;
		case OPT_CONNECT:
		case OPT_WAIT:
		case OPT_AUTOSTART:
		case OPT_NO_AUTOSTART:
			if (kb_domain_spec_set(&cmd->spec, opt == OPT_WAIT ? "wait" : opt == OPT_CONNECT ? "connect" : "autostart",
					       opt == OPT_NO_AUTOSTART ? "no" : opt == OPT_AUTOSTART && !optarg ? "yes" : optarg,
					       &err) < 0) {
				kb_say_error(ctx, "--%s", err.what);
				rc = KB_EXIT_USAGE;
			}
			break;
		case OPT_JOBS:
			if (kb_parse_long(optarg, 1, 64, &jobs))
				cmd->jobs = (unsigned)jobs;
			else {
				kb_say_error(ctx, "--jobs takes a number from 1 to 64, not '%s'", optarg);
				rc = KB_EXIT_USAGE;
			}
			break;
		default:
			if (opt >= OPT_WORD && opt < OPT_WORD + (int)(sizeof(new_words) / sizeof(new_words[0]))) {
				any_word = true;
				/* virt-install's --cloud-init takes its options as the next argument too (a NAME has no '='). */
				if (!strcmp(new_words[opt - OPT_WORD], "cloud-init") && !optarg && optind < argc &&
				    argv[optind][0] != '-' && strchr(argv[optind], '='))
					optarg = argv[optind++];
				if (kb_domain_spec_set(&cmd->spec, new_words[opt - OPT_WORD], optarg, &err) < 0) {
					kb_say_failure(ctx, &err);
					rc = KB_EXIT_USAGE;
				}
				break;
			}
			rc = kb_common_option(ctx, opt, optarg);
			break;
		}
	}
	const char *verb = optind < argc ? argv[optind] : NULL;
	char **args = argv + optind + 1;
	int count = optind < argc ? argc - optind - 1 : 0;
	if (rc == -1) {
		bool is_new = verb && !strcmp(verb, "new"), is_up = verb && !strcmp(verb, "up");
		bool by_name = verb && (!strcmp(verb, "rm") || !strcmp(verb, "stop") || !strcmp(verb, "pause"));
		if (!verb) {
			kb_say_error(ctx, "needs preflight, define, new, up, rm, stop or pause (kvmbox domain --help)");
			rc = KB_EXIT_USAGE;
		} else if (strcmp(verb, "preflight") && strcmp(verb, "define") && !is_up && !by_name && !is_new) {
			kb_say_error(ctx, "unknown command '%s': preflight, define, new, up, rm, stop or pause", verb);
			rc = KB_EXIT_USAGE;
		} else if (count == 0 || ((is_up || is_new) && count != 1)) {
			kb_say_error(ctx, "%s needs %s", verb, by_name ? "one or more domain names" :
							    is_up ? "one BUNDLE" : is_new ? "one NAME" :
							    "one or more XML files");
			rc = KB_EXIT_USAGE;
		} else if ((any_word || cmd->print_xml) && !is_new) {
			kb_say_error(ctx, "--memory, --disk, --print-xml and the other words are for new");
			rc = KB_EXIT_USAGE;
		} else if (cmd->name && !is_up) {
			/* new takes its name as its argument: a second one would be ignored. */
			kb_say_error(ctx, "--name is for up%s", is_new ? " (new names the domain: domain new NAME)" : "");
			rc = KB_EXIT_USAGE;
		} else if ((cmd->spec.autostart >= 0 || cmd->spec.start) && (by_name || !strcmp(verb, "preflight"))) {
			kb_say_error(ctx, "--autostart and --start are for define, new and up");
			rc = KB_EXIT_USAGE;
		} else if (cmd->force && strcmp(verb, "stop") != 0) {
			kb_say_error(ctx, "--force is for stop");
			rc = KB_EXIT_USAGE;
		} else if (cmd->dry_run && (is_up || !strcmp(verb, "preflight"))) {
			kb_say_error(ctx, "--dry-run is for define, new, rm, stop and pause");
			rc = KB_EXIT_USAGE;
		} else if (is_new && (snprintf(cmd->spec.name, sizeof(cmd->spec.name), "%s", args[0]) >= (int)sizeof(cmd->spec.name) ||
				      kb_domain_spec_check(&cmd->spec, &err) < 0)) {
			if (!err.what[0])
				kb_fail(&err, 0, NULL, "domain name '%s' is too long", args[0]);
			kb_say_failure(ctx, &err);
			rc = KB_EXIT_USAGE;
		} else if (cmd->dest[0] != '/') {
			kb_say_error(ctx, "--dest must be an absolute path");
			rc = KB_EXIT_USAGE;
		}
	}
	if (rc == -1) {
		cmd->uri = kb_virt_uri(cmd->spec.uri[0] ? cmd->spec.uri : NULL);
		bool validates = !cmd->dry_run && (!strcmp(verb, "define") || !strcmp(verb, "up") ||
						   (!strcmp(verb, "new") && !cmd->print_xml));
		if (load_libraries(cmd, validates, &err) < 0) {
			kb_say_failure(ctx, &err);
			rc = KB_EXIT_FAILURE;
		} else if (!strcmp(verb, "preflight")) {
			rc = cmd_preflight(cmd, args, count);
		} else if (!strcmp(verb, "define")) {
			rc = cmd_define(cmd, args, count);
		} else if (!strcmp(verb, "up")) {
			rc = cmd_up(cmd, args[0]);
		} else if (!strcmp(verb, "new")) {
			rc = cmd_new(cmd);
		} else if (!strcmp(verb, "stop")) {
			rc = cmd_state(cmd, cmd->force ? KB_DOMAIN_DESTROYED : KB_DOMAIN_SHUTDOWN, args, count);
		} else if (!strcmp(verb, "pause")) {
			rc = cmd_state(cmd, KB_DOMAIN_PAUSED, args, count);
		} else {
			rc = cmd_rm(cmd, args, count);
		}
	}
	if (cmd->conn)
		cmd->virt.connect_close(cmd->conn);
	kb_xml_schema_free(&cmd->xml, cmd->schema);
	pthread_mutex_destroy(&cmd->lock);
	free(cmd);
	return rc;
}
