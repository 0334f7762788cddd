/*
 * domain: libvirt domains from XML files, with a preflight that says why a
 * domain would not start before libvirt does.
 *
 *   preflight FILE...  findings per element, ERROR or WARN, and the fix
 *   define FILE...     preflight, define (validated), autostart, start, wait
 *   up BUNDLE          unpack + preflight + define (+ start)
 *   rm NAME...         destroy, undefine, remove image files, refresh pools
 *
 * Several domains are defined, started and removed in parallel threads on
 * one libvirt connection: QEMU's start-up is the slow part, and libvirtd
 * starts different domains concurrently.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/applet.h"
#include "kvmbox/bundle/bundle.h"
#include "kvmbox/bundle/unpack.h"
#include "kvmbox/core/change.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/virt/diskuse.h"
#include "kvmbox/virt/domnew.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/virt/placement.h"
#include "kvmbox/virt/preflight.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/virt/virt.h"
#include "kvmbox/core/xml.h"

const char domain_usage[] =
	"Usage: kvmbox domain preflight FILE.xml...\n"
	"       kvmbox domain define FILE.xml... [--autostart] [--start] [--wait SEC] [--no-preflight] [--dry-run]\n"
	"       kvmbox domain new NAME --memory SIZE [WORDS...] [--print-xml] [--autostart] [--start] [--dry-run]\n"
	"       kvmbox domain up BUNDLE [--dest DIR] [--name NAME] [--autostart] [--start] [--wait SEC]\n"
	"       kvmbox domain rm NAME... [--storage] [--dry-run]\n"
	"\n"
	"Define and launch libvirt domains. preflight tells, per XML element, what\n"
	"would stop the domain from starting on this host (ERROR) or make it hard to\n"
	"use (WARN), and the fix: /dev/kvm, emulator, machine type, CPU model and\n"
	"nested features, NUMA cells, hugepages, CPU pinning, bridges, disks, 9p\n"
	"directories, PCI host devices, serial console. define runs the preflight,\n"
	"then defines the domain (same name and UUID and the same definition:\n"
	"unchanged; same name with another UUID: refused). up unpacks a bundle\n"
	"first. rm destroys, undefines and with --storage removes the domain's disk\n"
	"images and refreshes the storage pools that held them. Several domains are\n"
	"handled in parallel.\n"
	"\n"
	"new makes the definition from words (virt-install's syntax), checks them on\n"
	"this host, creates new disks as volumes of a storage pool and defines the\n"
	"domain the way define does; the same words again change nothing.\n"
	"  --memory SIZE     4G, 512M (required)\n"
	"  --vcpus N         default 1\n"
	"  --cpu MODE        host-model (default), host-passthrough, or MODEL[,+feat,-feat...]\n"
	"  --machine TYPE    default q35; --virt-type kvm|qemu (default: kvm when libvirt offers it)\n"
	"  --disk OPTS       size=20G[,pool=default][,format=qcow2|raw][,bus=virtio|sata|scsi]: a new volume;\n"
	"                    path=FILE: an existing image; path=FILE,size=: a new volume there;\n"
	"                    backing=IMG,size=20G[,pool=]: a qcow2 overlay on IMG (repeatable)\n"
	"  --cdrom ISO       --boot hd|cdrom|network[,...] (default hd; cdrom,hd with --cdrom)\n"
	"  --network OPTS    bridge=br0[,model=virtio|e1000|e1000e|rtl8139][,mac=MAC] (repeatable)\n"
	"  --graphics G      vnc[,listen=ADDR][,password=PW] (default vnc on 127.0.0.1) or none;\n"
	"                    a serial console is always there (virsh console)\n"
	"  --hostdev ADDR    a PCI device (0000:81:00.3; see kvmbox pci list) (repeatable)\n"
	"  --hugepages[=SIZE]  guest memory from the host's hugepages (default size: the host's)\n"
	"  --nested[=no]     the guest can run KVM itself (vmx/svm required; needs nested=1 here)\n"
	"  --placement auto|none  auto: pin each vCPU to its own host CPU on one NUMA node when it\n"
	"                    fits (a host device's node first), emulator threads beside them, memory\n"
	"                    bound to the node; guest NUMA cells mirroring the host when it does not\n"
	"  --allow-host-file[=no]  disk=, backing= and --cdrom may name a file of the host itself (under\n"
	"                    /etc, /usr, /boot, /dev, ...: refused without it; a disk path with '..' always is;\n"
	"                    a mounted or swap device, or an image another process holds open, too)\n"
	"  --print-xml       print the definition, change nothing\n"
	"\n"
	"  --connect URI   libvirt URI (default $LIBVIRT_DEFAULT_URI, else qemu:///system)\n"
	"  --autostart     start the domain when libvirtd starts\n"
	"  --start         start it and wait until it runs\n"
	"  --wait SEC      how long to wait for running (default 60)\n"
	"  --no-preflight  define even when the preflight finds errors\n"
	"  --dry-run       define, new, rm: show what would change, change nothing\n"
	"  --jobs N        domains handled at once (default 8)\n"
	"  --dest DIR      up: where to unpack (default /var/lib/libvirt/images)\n"
	"  --name NAME     up: the unpacked directory's name (default: the bundle's)\n"
	"  --replace       up: unpack again over an existing directory\n"
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
	bool autostart, start, no_preflight, storage, replace, dry_run;
	int wait_seconds;
	unsigned jobs;
	const char *dest, *name;
	pthread_mutex_t lock; /* serialises messages from the worker threads */
	const char *const *to_create; /* new: volume paths created after the preflight */
	struct kb_domnew *words;      /* new: the domain's words */
	bool print_xml;
};

/* One domain being worked on, by one thread. */
struct job {
	struct domain_cmd *cmd;
	virConnectPtr conn; /* the worker thread's own connection (libvirtd serves 5 calls at once per connection) */
	const char *arg;  /* the file or name from the command line */
	const char *generated; /* define: the XML domain new wrote (arg is then the domain's name) */
	char name[256];
	char *xml_text;   /* define: the definition to send */
	char uuid[VIR_UUID_STRING_BUFLEN];
	struct kb_row rows[4];
	size_t row_count;
	int rc;
};

static void say_virt_failure(struct domain_cmd *cmd, const struct kb_error *err, const struct kb_virt_advice *advice)
{
	pthread_mutex_lock(&cmd->lock);
	kb_say_failure(cmd->ctx, err);
	if (advice)
		kb_say_error(cmd->ctx, "%s; fix: %s", advice->explanation, advice->fix);
	pthread_mutex_unlock(&cmd->lock);
}

static struct kb_row *job_row(struct job *j)
{
	struct kb_row *r = &j->rows[j->row_count < 4 ? j->row_count++ : 3];
	memset(r, 0, sizeof(*r));
	return r;
}

/* A failed step: a row for the report, the one-line error (and the advice) on stderr. */
static void job_failed(struct job *j, const char *id, const struct kb_error *err, const struct kb_virt_advice *advice)
{
	char message[sizeof(err->what) + PATH_MAX + 64];
	kb_row_set(job_row(j), id, KB_FAILED, "%s", kb_error_message(err, message, sizeof(message)));
	if (advice)
		kb_row_hint(&j->rows[j->row_count - 1], "%s", advice->fix);
	say_virt_failure(j->cmd, err, advice);
	j->rc = -1;
}

static int load_libraries(struct domain_cmd *cmd, struct kb_error *err)
{
	return kb_xml_load(&cmd->xml, err) < 0 || kb_virt_load(&cmd->virt, err) < 0 ? -1 : 0;
}

static int connect_libvirt(struct domain_cmd *cmd)
{
	struct kb_error err = { 0 };
	const struct kb_virt_advice *advice = NULL;
	cmd->conn = kb_virt_connect(&cmd->virt, cmd->uri, &err, &advice);
	if (!cmd->conn) {
		say_virt_failure(cmd, &err, advice);
		return -1;
	}
	return 0;
}

/* ---- preflight ------------------------------------------------------------ */

static char *domcaps_from_libvirt(void *opaque, const char *emulator, const char *arch, const char *machine,
				  const char *virttype)
{
	struct domain_cmd *cmd = opaque;
	return cmd->virt.get_domain_capabilities(cmd->conn, emulator, arch, machine, virttype, 0);
}

/*
 * Read and parse a domain XML file given on the command line (a path as the
 * user sees it), or, with @generated, the XML domain new wrote (@path names it).
 */
static xmlDoc *read_domain_file(struct domain_cmd *cmd, const char *path, const char *generated, char **text,
				struct kb_error *err)
{
	size_t len;
	if (generated) {
		*text = strdup(generated);
		if (!*text)
			return kb_fail(err, ENOMEM, NULL, "copying the XML of %s", path), NULL;
		len = strlen(*text);
	} else if (kb_read_path(path, DOMAIN_XML_MAX, text, &len, err) < 0) {
		return NULL;
	}
	xmlDoc *doc = kb_xml_parse(&cmd->xml, *text, len, path, err);
	if (!doc) {
		free(*text);
		*text = NULL;
	}
	return doc;
}

static const char *severity_name(enum kb_severity s)
{
	return s == KB_SEVERITY_ERROR ? "ERROR" : "WARN";
}

static void print_findings_human(struct domain_cmd *cmd, const char *file, const struct kb_findings *f)
{
	FILE *out = cmd->ctx->out;
	size_t warnings = f->count - f->errors;
	if (!f->count) {
		if (cmd->ctx->verbosity >= 0)
			fprintf(out, "%s: no findings: the domain can start on this host\n", file);
		return;
	}
	fprintf(out, "%s: %zu error%s, %zu warning%s\n", file, f->errors, f->errors == 1 ? "" : "s", warnings,
		warnings == 1 ? "" : "s");
	for (size_t i = 0; i < f->count; i++) {
		const struct kb_finding *x = &f->item[i];
		if (cmd->ctx->verbosity < 0 && x->severity != KB_SEVERITY_ERROR)
			continue;
		const char *colour = !cmd->ctx->color ? "" : x->severity == KB_SEVERITY_ERROR ? "\033[31m" : "\033[33m";
		fprintf(out, "  %s%-5s%s %-16s %s\n", colour, severity_name(x->severity), cmd->ctx->color ? "\033[0m" : "",
			x->id, x->element);
		fprintf(out, "        %s\n", x->message);
		if (x->fix[0])
			fprintf(out, "        fix: %s\n", x->fix);
	}
}

static void print_findings_json(FILE *out, const char *file, const char *name, const struct kb_findings *f,
				bool first)
{
	fputs(first ? "[\n  {\"file\": " : ",\n  {\"file\": ", out);
	kb_json_string(out, file);
	fputs(", \"domain\": ", out);
	kb_json_string(out, name);
	fprintf(out, ", \"errors\": %zu, \"warnings\": %zu, \"findings\": [", f->errors, f->count - f->errors);
	for (size_t i = 0; i < f->count; i++) {
		const struct kb_finding *x = &f->item[i];
		fputs(i ? ",\n    {\"severity\": " : "\n    {\"severity\": ", out);
		kb_json_string(out, severity_name(x->severity));
		fputs(", \"id\": ", out);
		kb_json_string(out, x->id);
		fputs(", \"element\": ", out);
		kb_json_string(out, x->element);
		fputs(", \"message\": ", out);
		kb_json_string(out, x->message);
		fputs(", \"fix\": ", out);
		kb_json_string(out, x->fix);
		fputc('}', out);
	}
	fputs(f->count ? "\n  ]}" : "]}", out);
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

/*
 * Preflight every file; print the findings. Returns the number of files with
 * errors, or -1 when a file could not be read as a domain.
 */
static int preflight_files(struct domain_cmd *cmd, char **files, const char *generated, int count, bool failing_only)
{
	struct kb_preflight_host host = { .domcaps = domcaps_from_libvirt, .opaque = cmd, .to_create = cmd->to_create,
					   .running = domain_running };
	autofree char *caps = cmd->conn ? cmd->virt.get_capabilities(cmd->conn) : NULL;
	host.caps_xml = caps;
	if (!cmd->conn)
		host.domcaps = NULL;
	int failing = 0, printed = 0;
	bool json = cmd->ctx->format == KB_FORMAT_JSON;
	/* With --json the files' findings are the envelope's member "preflight": [{file, domain, findings}...]. */
	struct kb_envelope_member member;
	FILE *json_out = json ? kb_envelope_member_begin(cmd->ctx, &member, "preflight") : NULL;
	for (int i = 0; i < count; i++) {
		struct kb_error err = { 0 };
		autofree char *text = NULL;
		xmlDoc *doc = read_domain_file(cmd, files[i], generated, &text, &err);
		struct kb_findings *findings = calloc(1, sizeof(*findings));
		if (!doc || !findings || kb_preflight(cmd->ctx, &cmd->xml, doc, &host, findings, &err) < 0) {
			if (doc && findings)
				kb_say_error(cmd->ctx, "%s: %s", files[i], err.what); /* the domain's content, not the file */
			else
				kb_say_failure(cmd->ctx, &err);
			if (doc)
				cmd->xml.free_doc(doc);
			free(findings);
			if (json) {
				fputs(printed ? "\n]" : "[]", json_out);
				kb_envelope_member_end(cmd->ctx, &member);
			}
			return -1;
		}
		autofree char *name = kb_xml_text(&cmd->xml, kb_xml_child(cmd->xml.root_element(doc), "name"));
		if (!cmd->conn) {
			struct kb_finding *w = &findings->item[findings->count < KB_FINDINGS_MAX ? findings->count++ : KB_FINDINGS_MAX - 1];
			memset(w, 0, sizeof(*w));
			w->severity = KB_SEVERITY_WARN;
			snprintf(w->id, sizeof(w->id), "libvirt.unreachable");
			snprintf(w->element, sizeof(w->element), "/domain");
			snprintf(w->message, sizeof(w->message),
				 "libvirt at %s did not answer: machine type and CPU model were not checked", cmd->uri);
			snprintf(w->fix, sizeof(w->fix), "kvmbox doctor");
		}
		if (json && (!failing_only || findings->errors))
			print_findings_json(json_out, files[i], name ? name : "", findings, printed == 0);
		else if (!failing_only || findings->errors)
			print_findings_human(cmd, files[i], findings);
		if (!failing_only || findings->errors)
			printed++;
		if (findings->errors)
			failing++;
		cmd->xml.free_doc(doc);
		free(findings);
	}
	if (json) {
		fputs(printed ? "\n]" : "[]", json_out);
		kb_envelope_member_end(cmd->ctx, &member);
	}
	return failing;
}

static int cmd_preflight(struct domain_cmd *cmd, char **files, int count)
{
	/* Without libvirt the file and host checks still run; machine and CPU are then not checked. */
	struct kb_error err = { 0 };
	const struct kb_virt_advice *advice = NULL;
	cmd->conn = kb_virt_connect(&cmd->virt, cmd->uri, &err, &advice);
	if (!cmd->conn && cmd->ctx->verbosity > 0)
		say_virt_failure(cmd, &err, advice);
	int failing = preflight_files(cmd, files, NULL, count, false);
	return failing == 0 ? KB_EXIT_OK : KB_EXIT_FAILURE;
}

/* ---- define / start --------------------------------------------------------- */

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The domain's definition as libvirt keeps it (inactive XML): what "unchanged" is judged by. */
static char *inactive_xml(const struct kb_virt *v, virDomainPtr dom)
{
	return dom ? v->domain_xml(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE) : NULL;
}

/*
 * Name and UUID from the file. A file without a UUID gets the existing
 * domain's, so defining it again updates that domain instead of failing.
 */
static int prepare_definition(struct job *j, const char *path, virDomainPtr *existing, struct kb_error *err)
{
	struct domain_cmd *cmd = j->cmd;
	autofree char *text = NULL;
	xmlDoc *doc = read_domain_file(cmd, path, j->generated, &text, err);
	if (!doc)
		return -1;
	int rc = 0;
	xmlNode *root = cmd->xml.root_element(doc);
	autofree char *name = kb_xml_text(&cmd->xml, kb_xml_child(root, "name"));
	autofree char *uuid = kb_xml_text(&cmd->xml, kb_xml_child(root, "uuid"));
	if (!root || strcmp((const char *)root->name, "domain") != 0 || !name || !*name) {
		rc = kb_fail(err, 0, path, "not a libvirt domain with a <name>:");
		goto out;
	}
	snprintf(j->name, sizeof(j->name), "%s", name);
	*existing = cmd->virt.domain_lookup(j->conn, name);
	cmd->virt.reset_error();
	if (*existing) {
		cmd->virt.domain_uuid(*existing, j->uuid);
		if (uuid && strcasecmp(uuid, j->uuid) != 0) {
			rc = kb_fail(err, 0, path, "domain '%s' already exists with UUID %s, but the file has %s: refusing to replace another domain:",
				     name, j->uuid, uuid);
			goto out;
		}
		if (!uuid)
			cmd->xml.new_child(root, NULL, (const xmlChar *)"uuid", (const xmlChar *)j->uuid);
	}
	xmlChar *dumped = NULL;
	int size = 0;
	cmd->xml.dump_memory(doc, &dumped, &size);
	j->xml_text = dumped ? strdup((const char *)dumped) : NULL;
	if (dumped)
		(*cmd->xml.free)(dumped);
	if (!j->xml_text)
		rc = kb_fail(err, ENOMEM, path, "serialising");
out:
	cmd->xml.free_doc(doc);
	return rc;
}

static int wait_running(struct job *j, virDomainPtr dom, struct kb_error *err)
{
	const struct kb_virt *v = &j->cmd->virt;
	double deadline = now_seconds() + j->cmd->wait_seconds;
	for (;;) {
		int state = 0, reason = 0;
		if (v->domain_state(dom, &state, &reason, 0) < 0)
			return kb_virt_fail(v, err, NULL, "reading the state of domain '%s'", j->name);
		if (state == VIR_DOMAIN_RUNNING)
			return 0;
		if (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED)
			return kb_fail(err, 0, NULL, "domain '%s' stopped right after it was started (state %d, reason %d)",
				       j->name, state, reason);
		if (now_seconds() > deadline)
			return kb_fail(err, ETIMEDOUT, NULL, "domain '%s' was not running after %d s (state %d):", j->name,
				       j->cmd->wait_seconds, state);
		usleep(20 * 1000);
	}
}

/*
 * --dry-run: what define would do. Whether an existing definition would
 * change is only known by defining it (libvirt normalises the XML), so an
 * existing domain is reported as defined, with what autostart and start would do.
 */
static void plan_one(struct job *j, virDomainPtr existing)
{
	const struct kb_virt *v = &j->cmd->virt;
	if (!existing) {
		kb_row_set(job_row(j), j->name, KB_WOULD_CHANGE, "would be defined%s%s",
			   j->cmd->autostart ? ", autostart on" : "", j->cmd->start ? ", started" : "");
		return;
	}
	kb_row_set(job_row(j), j->name, KB_UNCHANGED, "defined (a changed definition is updated when defining)");
	int autostart = 0, state = 0, reason = 0;
	if (j->cmd->autostart && v->domain_get_autostart(existing, &autostart) == 0)
		kb_row_set(job_row(j), j->name, autostart ? KB_UNCHANGED : KB_WOULD_CHANGE, "autostart %s",
			   autostart ? "on" : "would be turned on");
	if (j->cmd->start && v->domain_state(existing, &state, &reason, 0) == 0)
		kb_row_set(job_row(j), j->name, state == VIR_DOMAIN_RUNNING ? KB_UNCHANGED : KB_WOULD_CHANGE, "%s",
			   state == VIR_DOMAIN_RUNNING ? "running" : "would be started");
}

static void define_one(struct job *j)
{
	struct domain_cmd *cmd = j->cmd;
	const struct kb_virt *v = &cmd->virt;
	struct kb_error err = { 0 };
	const struct kb_virt_advice *advice = NULL;
	virDomainPtr existing = NULL, dom = NULL;
	autofree char *before = NULL;
	autofree char *after = NULL;
	if (prepare_definition(j, j->arg, &existing, &err) < 0) {
		job_failed(j, j->arg, &err, NULL);
		goto out;
	}
	if (cmd->dry_run) {
		plan_one(j, existing);
		goto out;
	}
	before = inactive_xml(v, existing);
	dom = v->domain_define(j->conn, j->xml_text, VIR_DOMAIN_DEFINE_VALIDATE);
	if (!dom) {
		if (j->generated)
			kb_virt_fail(v, &err, &advice, "defining domain '%s'", j->name);
		else
			kb_virt_fail(v, &err, &advice, "defining domain '%s' from %s", j->name, j->arg);
		job_failed(j, j->name, &err, advice);
		goto out;
	}
	after = inactive_xml(v, dom);
	bool same = before && after && strcmp(before, after) == 0;
	kb_row_set(job_row(j), j->name, same ? KB_UNCHANGED : KB_CHANGED, "%s",
		   same ? "defined, definition unchanged" : existing ? "definition updated" : "defined");

	int autostart = 0;
	if (v->domain_get_autostart(dom, &autostart) < 0) {
		kb_virt_fail(v, &err, &advice, "reading autostart of '%s'", j->name);
		job_failed(j, j->name, &err, advice);
		goto out;
	}
	if (cmd->autostart && !autostart) {
		if (v->domain_set_autostart(dom, 1) < 0) {
			kb_virt_fail(v, &err, &advice, "setting autostart of '%s'", j->name);
			job_failed(j, j->name, &err, advice);
			goto out;
		}
		kb_row_set(job_row(j), j->name, KB_CHANGED, "autostart on");
	} else if (cmd->autostart) {
		kb_row_set(job_row(j), j->name, KB_UNCHANGED, "autostart on");
	}

	if (!cmd->start)
		goto out;
	int state = 0, reason = 0;
	if (v->domain_state(dom, &state, &reason, 0) < 0) {
		kb_virt_fail(v, &err, &advice, "reading the state of '%s'", j->name);
		job_failed(j, j->name, &err, advice);
		goto out;
	}
	if (state == VIR_DOMAIN_RUNNING) {
		kb_row_set(job_row(j), j->name, KB_UNCHANGED, "running");
		goto out;
	}
	double started = now_seconds();
	if (v->domain_create(dom) < 0) {
		kb_virt_fail(v, &err, &advice, "starting domain '%s'", j->name);
		job_failed(j, j->name, &err, advice);
		goto out;
	}
	if (wait_running(j, dom, &err) < 0) {
		job_failed(j, j->name, &err, NULL);
		goto out;
	}
	kb_row_set(job_row(j), j->name, KB_CHANGED, "started, running after %.2f s", now_seconds() - started);
out:
	if (existing)
		v->domain_free(existing);
	if (dom)
		v->domain_free(dom);
	free(j->xml_text);
	j->xml_text = NULL;
}

/* ---- rm ------------------------------------------------------------------ */

#define RM_FILES_MAX 32

/* The domain's disk image files (device='disk', file-backed), from its definition. */
static int disk_files(struct job *j, const char *definition, char files[][PATH_MAX], size_t *count,
		      struct kb_error *err)
{
	const struct kb_xml *xml = &j->cmd->xml;
	xmlDoc *doc = kb_xml_parse(xml, definition, strlen(definition), j->name, err);
	if (!doc)
		return -1;
	xmlNode *devices = kb_xml_child(xml->root_element(doc), "devices");
	*count = 0;
	for (xmlNode *disk = kb_xml_child(devices, "disk"); disk && *count < RM_FILES_MAX; disk = kb_xml_next(disk, "disk")) {
		autofree char *device = kb_xml_prop(xml, disk, "device");
		autofree char *type = kb_xml_prop(xml, disk, "type");
		if ((device && strcmp(device, "disk") != 0) || (type && strcmp(type, "file") != 0))
			continue; /* cdroms (shared ISOs), block devices, network disks stay */
		autofree char *file = kb_xml_prop(xml, kb_xml_child(disk, "source"), "file");
		if (file && file[0] == '/')
			snprintf(files[(*count)++], PATH_MAX, "%s", file);
	}
	xml->free_doc(doc);
	return 0;
}

/* A connection for the callbacks below. */
struct conn_ref {
	const struct kb_virt *virt;
	virConnectPtr conn;
};

/* A storage volume's path, for disks given as <source pool= volume=>. */
static char *volume_path(void *opaque, const char *pool_name, const char *volume_name)
{
	const struct conn_ref *ref = opaque;
	const struct kb_virt *v = ref->virt;
	virStoragePoolPtr pool = v->pool_lookup(ref->conn, pool_name);
	virStorageVolPtr vol = pool ? v->volume_lookup(pool, volume_name) : NULL;
	char *path = vol ? v->volume_path(vol) : NULL;
	if (vol)
		v->volume_free(vol);
	if (pool)
		v->pool_free(pool);
	v->reset_error();
	return path;
}

/*
 * Mark the files of @set that any domain still known to libvirt uses (its
 * disks, their volumes and backing chains; running domains as they run) or
 * that a process has open.
 */
static int mark_used_files(struct domain_cmd *cmd, virConnectPtr conn, struct kb_disk_set *set, const char *except,
			   struct kb_error *err)
{
	const struct kb_virt *v = &cmd->virt;
	struct conn_ref ref = { v, conn };
	virDomainPtr *domains = NULL;
	int n = v->list_domains(conn, &domains, 0);
	if (n < 0)
		return kb_virt_fail(v, err, NULL, "listing the domains that may share a disk");
	int rc = 0;
	for (int i = 0; i < n; i++) {
		int state = 0, reason = 0;
		bool running = v->domain_state(domains[i], &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF;
		bool skip = except && !strcmp(v->domain_name(domains[i]), except);
		autofree char *text = skip ? NULL : v->domain_xml(domains[i], 0);
		if (rc == 0 && text)
			rc = kb_disk_set_mark_domain(cmd->ctx, &cmd->xml, set, v->domain_name(domains[i]), running, text,
						     strlen(text), volume_path, &ref, err);
		v->domain_free(domains[i]);
	}
	free(domains);
	v->reset_error();
	if (rc == 0)
		kb_disk_set_mark_open(cmd->ctx, set);
	return rc;
}

/*
 * Remove the files no other domain uses and refresh every pool that listed
 * one of them, as `virsh pool-refresh` would. A file another domain uses (as
 * its disk, through a volume, as a backing file) or a process has open is
 * kept, and the row says who holds it.
 */
static int remove_storage(struct job *j, char files[][PATH_MAX], size_t count, struct kb_error *err)
{
	const struct kb_virt *v = &j->cmd->virt;
	virStoragePoolPtr pools[RM_FILES_MAX];
	size_t pool_count = 0, removed = 0;
	char pool_names[512] = "";
	int rc = 0;
	struct kb_disk_set *set = calloc(1, sizeof(*set));
	if (!set)
		return kb_fail(err, ENOMEM, NULL, "checking who else uses the disks of '%s'", j->name);
	for (size_t i = 0; i < count; i++) {
		struct kb_path mapped;
		if (kb_sysroot_path(j->cmd->ctx, files[i], &mapped, NULL) == 0)
			kb_disk_set_add(set, mapped.s);
	}
	if (mark_used_files(j->cmd, j->conn, set, NULL, err) < 0) {
		free(set);
		return -1;
	}
	for (size_t i = 0; i < count && rc == 0; i++) {
		struct kb_path mapped;
		bool kept = false;
		if (kb_sysroot_path(j->cmd->ctx, files[i], &mapped, NULL) == 0) {
			for (size_t k = 0; k < set->count; k++) {
				if (strcmp(set->file[k].path, mapped.s) || !set->file[k].user[0])
					continue;
				kb_row_set(job_row(j), j->name, KB_UNCHANGED, "kept %s: in use by %s", files[i], set->file[k].user);
				kept = true;
			}
		}
		if (kept)
			continue;
		virStorageVolPtr vol = v->volume_lookup_by_path(j->conn, files[i]);
		virStoragePoolPtr pool = vol ? v->pool_of_volume(vol) : NULL;
		if (vol)
			v->volume_free(vol);
		v->reset_error();
		bool known = false;
		for (size_t k = 0; pool && k < pool_count; k++)
			known = known || strcmp(v->pool_name(pools[k]), v->pool_name(pool)) == 0;
		if (pool && !known)
			pools[pool_count++] = pool;
		else if (pool)
			v->pool_free(pool);
		/* Confined: a link at any component of the image's path stays inside the root. */
		int gone = kb_sysroot_unlink(j->cmd->ctx, files[i], err);
		if (gone < 0)
			rc = -1;
		else
			removed += (size_t)gone;
	}
	for (size_t k = 0; k < pool_count; k++) {
		if (rc == 0 && v->pool_refresh(pools[k], 0) < 0)
			rc = kb_virt_fail(v, err, NULL, "refreshing pool '%s'", v->pool_name(pools[k]));
		size_t used = strlen(pool_names);
		snprintf(pool_names + used, sizeof(pool_names) - used, "%s%s", used ? ", " : "", v->pool_name(pools[k]));
		v->pool_free(pools[k]);
	}
	if (rc == 0)
		kb_row_set(job_row(j), j->name, removed ? KB_CHANGED : KB_UNCHANGED, "%zu image file%s removed%s%s",
			   removed, removed == 1 ? "" : "s", pool_count ? ", pools refreshed: " : "", pool_names);
	free(set);
	return rc;
}

static void rm_one(struct job *j)
{
	struct domain_cmd *cmd = j->cmd;
	const struct kb_virt *v = &cmd->virt;
	struct kb_error err = { 0 };
	const struct kb_virt_advice *advice = NULL;
	snprintf(j->name, sizeof(j->name), "%s", j->arg);
	virDomainPtr dom = v->domain_lookup(j->conn, j->name);
	if (!dom) {
		virErrorPtr e = v->last_error();
		if (e && e->code == VIR_ERR_NO_DOMAIN) {
			v->reset_error();
			kb_row_set(job_row(j), j->name, KB_UNCHANGED, "no such domain");
			return;
		}
		kb_virt_fail(v, &err, &advice, "looking up domain '%s'", j->name);
		job_failed(j, j->name, &err, advice);
		return;
	}
	if (cmd->dry_run) {
		int state = 0, reason = 0;
		bool running = v->domain_state(dom, &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF;
		kb_row_set(job_row(j), j->name, KB_WOULD_CHANGE, "would be %sundefined%s", running ? "destroyed and " : "",
			   cmd->storage ? ", its image files removed unless another domain or a process uses them" : "");
		v->domain_free(dom);
		return;
	}
	char (*files)[PATH_MAX] = calloc(RM_FILES_MAX, PATH_MAX);
	size_t count = 0;
	autofree char *definition = inactive_xml(v, dom);
	if (!files || !definition || (cmd->storage && disk_files(j, definition, files, &count, &err) < 0)) {
		if (!files || !definition)
			kb_virt_fail(v, &err, &advice, "reading the definition of '%s'", j->name);
		job_failed(j, j->name, &err, advice);
		goto out;
	}
	int state = 0, reason = 0;
	if (v->domain_state(dom, &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF) {
		if (v->domain_destroy(dom) < 0) {
			kb_virt_fail(v, &err, &advice, "destroying domain '%s'", j->name);
			job_failed(j, j->name, &err, advice);
			goto out;
		}
		kb_row_set(job_row(j), j->name, KB_CHANGED, "destroyed (was running)");
	}
	unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
			 VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
	int undefined = v->domain_undefine(dom, flags);
	virErrorPtr why = undefined < 0 ? v->last_error() : NULL;
	if (why && (why->code == VIR_ERR_INVALID_ARG || why->code == VIR_ERR_NO_SUPPORT)) {
		/* Drivers without managed save, snapshots or NVRAM refuse those flags (test:///default). */
		v->reset_error();
		undefined = v->domain_undefine(dom, 0);
	}
	if (undefined < 0) {
		kb_virt_fail(v, &err, &advice, "undefining domain '%s'", j->name);
		job_failed(j, j->name, &err, advice);
		goto out;
	}
	kb_row_set(job_row(j), j->name, KB_CHANGED, "undefined");
	if (cmd->storage && remove_storage(j, files, count, &err) < 0)
		job_failed(j, j->name, &err, NULL);
out:
	free(files);
	v->domain_free(dom);
}

/* ---- running jobs in parallel ------------------------------------------------ */

struct pool_state {
	struct domain_cmd *cmd;
	struct job *jobs;
	size_t count, next;
	void (*work)(struct job *);
	pthread_mutex_t lock;
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
		const struct kb_virt_advice *advice = NULL;
		conn = kb_virt_connect(&ps->cmd->virt, ps->cmd->uri, &ignored, &advice);
	}
	if (!conn)
		conn = ps->cmd->conn;
	for (;;) {
		pthread_mutex_lock(&ps->lock);
		size_t i = ps->next < ps->count ? ps->next++ : ps->count;
		pthread_mutex_unlock(&ps->lock);
		if (i == ps->count)
			break;
		ps->jobs[i].conn = conn;
		ps->work(&ps->jobs[i]);
	}
	if (conn != ps->cmd->conn)
		ps->cmd->virt.connect_close(conn);
}

static void *extra_worker(void *arg)
{
	work_through(arg, true);
	return NULL;
}

/* Run @work on every argument, up to cmd->jobs at once; print all rows in argument order. */
static int run_jobs(struct domain_cmd *cmd, char **args, const char *generated, int count, void (*work)(struct job *),
		    const struct kb_row *before, size_t before_count)
{
	struct job *jobs = calloc((size_t)count, sizeof(*jobs));
	struct kb_row *rows = calloc((size_t)count * 4 + before_count, sizeof(*rows));
	if (!jobs || !rows) {
		free(jobs);
		free(rows);
		kb_say_error(cmd->ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	struct pool_state ps = { .cmd = cmd, .jobs = jobs, .count = (size_t)count, .work = work };
	pthread_mutex_init(&ps.lock, NULL);
	for (int i = 0; i < count; i++) {
		jobs[i].cmd = cmd;
		jobs[i].arg = args[i];
		jobs[i].generated = generated;
	}
	unsigned threads = cmd->jobs < (unsigned)count ? cmd->jobs : (unsigned)count;
	pthread_t tids[64];
	unsigned started = 0;
	for (unsigned t = 1; t < threads && t < 64; t++)
		if (pthread_create(&tids[started], NULL, extra_worker, &ps) == 0)
			started++;
	work_through(&ps, false); /* this thread works too, on cmd->conn */
	for (unsigned t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	pthread_mutex_destroy(&ps.lock);

	size_t n = 0;
	int rc = KB_EXIT_OK;
	for (size_t i = 0; i < before_count; i++)
		rows[n++] = before[i];
	for (int i = 0; i < count; i++) {
		for (size_t k = 0; k < jobs[i].row_count; k++) {
			rows[n] = jobs[i].rows[k];
			rows[n].id = jobs[i].name[0] ? jobs[i].name : jobs[i].arg;
			n++;
		}
		if (jobs[i].rc < 0)
			rc = KB_EXIT_FAILURE;
	}
	kb_rows_print(cmd->ctx, rows, n);
	free(rows);
	free(jobs);
	return rc;
}

/* Define @files (or the one @generated definition), after a preflight; @before: rows to show first. */
static int cmd_define(struct domain_cmd *cmd, char **files, const char *generated, int count,
		      const struct kb_row *before, size_t before_count)
{
	if (!cmd->conn && connect_libvirt(cmd) < 0)
		return KB_EXIT_FAILURE;
	if (!cmd->no_preflight) {
		/* Findings are shown only for the files with errors: nothing is defined then. */
		int failing = preflight_files(cmd, files, generated, count, true);
		if (failing < 0)
			return KB_EXIT_FAILURE;
		if (failing > 0) {
			kb_say_error(cmd->ctx, "the preflight found errors in %d of %d file%s: nothing defined "
					       "(--no-preflight defines anyway)", failing, count, count == 1 ? "" : "s");
			return KB_EXIT_FAILURE;
		}
	}
	return run_jobs(cmd, files, generated, count, define_one, before, before_count);
}

static int cmd_rm(struct domain_cmd *cmd, char **names, int count)
{
	if (connect_libvirt(cmd) < 0)
		return KB_EXIT_FAILURE;
	return run_jobs(cmd, names, NULL, count, rm_one, NULL, 0);
}

/* up: unpack the bundle (unless already unpacked), then define what it holds. */
static int cmd_up(struct domain_cmd *cmd, const char *bundle)
{
	struct kb_error err = { 0 };
	autofree struct kb_unpack_spec *spec = calloc(1, sizeof(*spec));
	if (!spec) {
		kb_say_error(cmd->ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
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
	if (rc == 0)
		rc = kb_unpack_apply(cmd->ctx, spec, &plan, &err);
	/* The unpack's rows (define's own changes follow): only when it unpacked, or failed. */
	if (rc < 0 || kb_plan_changes(&plan)) {
		for (size_t i = 0; i < plan.count; i++) {
			struct kb_row row;
			kb_change_row(&plan.change[i], &row);
			kb_rows_print(cmd->ctx, &row, 1);
		}
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
	char *files[] = { xml_file };
	return cmd_define(cmd, files, NULL, 1, NULL, 0);
}

/* ---- new: a domain from words ------------------------------------------------ */

/* A disk volume domain new makes (or finds, on a second run) in a pool. */
struct new_volume {
	virStoragePoolPtr pool;
	char pool_name[64];
	bool exists;  /* already there: a second run, or somebody else's file (refused) */
	bool created; /* made by this run: removed again when defining fails */
};

/* The domain's definition when it already exists (inactive, with secrets): NULL when it does not. */
static xmlDoc *existing_definition(struct domain_cmd *cmd, const char *name)
{
	const struct kb_virt *v = &cmd->virt;
	virDomainPtr dom = v->domain_lookup(cmd->conn, name);
	v->reset_error();
	if (!dom)
		return NULL;
	autofree char *text = inactive_xml(v, dom);
	v->domain_free(dom);
	return text ? kb_xml_parse(&cmd->xml, text, strlen(text), name, NULL) : NULL;
}

/*
 * A second `domain new` with the same words must give the same definition:
 * interfaces without mac= keep the MAC libvirt chose the first time (same
 * position, same bridge).
 */
static void keep_macs(struct domain_cmd *cmd, struct kb_domnew *d, xmlDoc *existing)
{
	xmlNode *devices = kb_xml_child(cmd->xml.root_element(existing), "devices");
	xmlNode *nic = kb_xml_child(devices, "interface");
	for (size_t i = 0; i < d->net_count && nic; i++, nic = kb_xml_next(nic, "interface")) {
		autofree char *bridge = kb_xml_prop(&cmd->xml, kb_xml_child(nic, "source"), "bridge");
		autofree char *mac = kb_xml_prop(&cmd->xml, kb_xml_child(nic, "mac"), "address");
		if (!d->net[i].mac[0] && bridge && mac && !strcmp(bridge, d->net[i].bridge) && strlen(mac) < sizeof(d->net[i].mac))
			snprintf(d->net[i].mac, sizeof(d->net[i].mac), "%s", mac);
	}
}

/*
 * An image the domain's current definition already has keeps the format
 * written there (<driver type>), unless format= says otherwise: probing it
 * again would read what the guest wrote into its own disk (a qcow2 header
 * naming a host file as its backing file).
 */
static int keep_disk_formats(struct domain_cmd *cmd, struct kb_domnew *d, xmlDoc *existing, struct kb_error *err)
{
	xmlNode *devices = kb_xml_child(cmd->xml.root_element(existing), "devices");
	for (size_t i = 0; i < d->disk_count; i++) {
		struct kb_domnew_disk *k = &d->disk[i];
		if (k->kind != KB_DISK_PATH)
			continue;
		for (xmlNode *disk = kb_xml_child(devices, "disk"); disk && !k->defined; disk = kb_xml_next(disk, "disk")) {
			autofree char *file = kb_xml_prop(&cmd->xml, kb_xml_child(disk, "source"), "file");
			if (!file || strcmp(file, k->path))
				continue;
			k->defined = true;
			autofree char *type = kb_xml_prop(&cmd->xml, kb_xml_child(disk, "driver"), "type");
			if (k->format[0])
				break;
			if (!type || (strcmp(type, "raw") && strcmp(type, "qcow2")))
				return kb_fail(err, 0, NULL, "disk '%s': domain '%s' defines it with format '%s'; kvmbox attaches qcow2 "
							   "and raw (give format=)", k->path, d->name, type ? type : "(none)");
			snprintf(k->format, sizeof(k->format), "%s", type);
		}
	}
	return 0;
}

/* Whether the existing definition has a disk on @path. */
static bool existing_uses(struct domain_cmd *cmd, xmlDoc *existing, const char *path)
{
	xmlNode *devices = kb_xml_child(existing ? cmd->xml.root_element(existing) : NULL, "devices");
	for (xmlNode *disk = kb_xml_child(devices, "disk"); disk; disk = kb_xml_next(disk, "disk")) {
		autofree char *file = kb_xml_prop(&cmd->xml, kb_xml_child(disk, "source"), "file");
		if (file && !strcmp(file, path))
			return true;
	}
	return false;
}

/* KVM when libvirt offers KVM guests here, else QEMU's TCG. */
static void choose_virt_type(struct domain_cmd *cmd, struct kb_domnew *d, const char *caps)
{
	if (!d->virt_type[0])
		snprintf(d->virt_type, sizeof(d->virt_type), "%s",
			 kb_caps_offers(&cmd->xml, caps, d->arch, "kvm") ? "kvm" : "qemu");
}

/* A custom CPU model must be one this host's QEMU knows (domain capabilities; libvirt's CPU map without them). */
static int check_cpu_model(struct domain_cmd *cmd, const struct kb_domnew *d, struct kb_error *err)
{
	if (strcmp(d->cpu_mode, "custom"))
		return 0;
	autofree char *domcaps = cmd->virt.get_domain_capabilities(cmd->conn, NULL, d->arch, d->machine, d->virt_type, 0);
	cmd->virt.reset_error();
	xmlDoc *doc = domcaps ? kb_xml_parse(&cmd->xml, domcaps, strlen(domcaps), "domain capabilities", NULL) : NULL;
	int known = -1;
	if (doc) {
		xmlNode *cpu = kb_xml_child(cmd->xml.root_element(doc), "cpu");
		for (xmlNode *mode = kb_xml_child(cpu, "mode"); mode; mode = kb_xml_next(mode, "mode")) {
			if (!kb_xml_prop_is(&cmd->xml, mode, "name", "custom"))
				continue;
			known = 0;
			for (xmlNode *m = kb_xml_child(mode, "model"); m && !known; m = kb_xml_next(m, "model")) {
				autofree char *name = kb_xml_text(&cmd->xml, m);
				known = name && !strcmp(name, d->cpu_model);
			}
		}
		cmd->xml.free_doc(doc);
	}
	if (known < 0)
		known = kb_cpu_map_has_model(cmd->ctx, d->cpu_model);
	if (known == 0)
		return kb_fail(err, 0, NULL, "cpu: unknown CPU model '%s' for %s guests on this host (virsh domcapabilities lists them)",
			       d->cpu_model, d->virt_type);
	return 0;
}

/* Where a pool keeps its volumes (<target><path>). */
static int pool_target(struct domain_cmd *cmd, virStoragePoolPtr pool, char *dir, size_t size, struct kb_error *err)
{
	autofree char *text = cmd->virt.pool_xml(pool, 0);
	xmlDoc *doc = text ? kb_xml_parse(&cmd->xml, text, strlen(text), "pool", err) : NULL;
	if (!doc)
		return text ? -1 : kb_virt_fail(&cmd->virt, err, NULL, "reading pool '%s'", cmd->virt.pool_name(pool));
	autofree char *path = kb_xml_text(&cmd->xml, kb_xml_child(kb_xml_child(cmd->xml.root_element(doc), "target"), "path"));
	cmd->xml.free_doc(doc);
	if (!path || path[0] != '/')
		return kb_fail(err, 0, NULL, "pool '%s' keeps no files (no <target><path>): kvmbox makes disks in directory pools",
			       cmd->virt.pool_name(pool));
	snprintf(dir, size, "%s", path);
	return 0;
}

/* The pool whose directory is @dir (every driver has the pool list; not all look up by path). */
static virStoragePoolPtr pool_holding(struct domain_cmd *cmd, const char *dir)
{
	const struct kb_virt *v = &cmd->virt;
	virStoragePoolPtr *pools = NULL, found = NULL;
	int n = v->list_pools(cmd->conn, &pools, 0);
	for (int i = 0; i < n; i++) {
		char target[PATH_MAX];
		struct kb_error ignored = { 0 };
		if (!found && pool_target(cmd, pools[i], target, sizeof(target), &ignored) == 0 && !strcmp(target, dir))
			found = pools[i];
		else
			v->pool_free(pools[i]);
	}
	free(pools);
	v->reset_error();
	return found;
}

/*
 * The pool of each new disk (pool=, or the pool whose directory holds path=)
 * and the volume's path; a volume that exists already is this domain's own
 * (a second run) or refused. Paths of existing images are checked against
 * the other domains: two guests writing one image corrupt it.
 */
static int resolve_disks(struct domain_cmd *cmd, struct kb_domnew *d, xmlDoc *existing, struct new_volume *vols,
			 struct kb_error *err)
{
	const struct kb_virt *v = &cmd->virt;
	struct kb_disk_set *set = calloc(1, sizeof(*set));
	if (!set)
		return kb_fail(err, ENOMEM, NULL, "checking the disks of '%s'", d->name);
	int rc = 0;
	for (size_t i = 0; i < d->disk_count && rc == 0; i++) {
		struct kb_domnew_disk *k = &d->disk[i];
		struct new_volume *vol = &vols[i];
		if (k->kind == KB_DISK_PATH) {
			struct kb_path mapped;
			if (kb_sysroot_path(cmd->ctx, k->path, &mapped, NULL) == 0)
				kb_disk_set_add(set, mapped.s);
			continue;
		}
		char dir[sizeof(k->path) - sizeof(k->volume) - 1]; /* room for "/VOLUME" */
		if (k->path[0]) {
			snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(k->path, '/') - k->path), k->path);
			vol->pool = pool_holding(cmd, dir[0] ? dir : "/");
			if (!vol->pool) {
				rc = kb_fail(err, 0, NULL, "disk '%s': no libvirt storage pool holds %s; kvmbox makes new images through a pool "
							   "(virsh pool-define-as NAME dir --target %s; virsh pool-start NAME)",
					     k->path, dir, dir);
				break;
			}
			snprintf(k->pool, sizeof(k->pool), "%s", v->pool_name(vol->pool));
		} else {
			vol->pool = v->pool_lookup(cmd->conn, k->pool);
			if (!vol->pool) {
				rc = kb_fail(err, 0, NULL, "disk 'pool=%s': no such storage pool (virsh pool-list --all)", k->pool);
				break;
			}
		}
		snprintf(vol->pool_name, sizeof(vol->pool_name), "%s", k->pool);
		if (v->pool_is_active(vol->pool) != 1) {
			rc = kb_fail(err, 0, NULL, "disk: storage pool '%s' is not active (virsh pool-start %s)", k->pool, k->pool);
			break;
		}
		if (pool_target(cmd, vol->pool, dir, sizeof(dir), err) < 0) {
			rc = -1;
			break;
		}
		/* Through a local buffer: gcc 12 at -O0 takes two members of *d for overlapping objects (-Wrestrict). */
		char path[sizeof(k->path)];
		snprintf(path, sizeof(path), "%s/%s", dir, k->volume);
		memcpy(k->path, path, sizeof(path));
		v->pool_refresh(vol->pool, 0); /* files made behind libvirt's back are volumes too */
		virStorageVolPtr found = v->volume_lookup(vol->pool, k->volume);
		v->reset_error();
		if (found) {
			v->volume_free(found);
			vol->exists = true;
			if (!existing_uses(cmd, existing, k->path))
				rc = kb_fail(err, 0, NULL, "disk: volume %s already exists in pool '%s' and domain '%s' does not use it: "
							   "import it with disk path=%s, or remove it (virsh vol-delete %s --pool %s)",
					     k->volume, k->pool, d->name, k->path, k->volume, k->pool);
		}
	}
	if (rc == 0 && set->count && mark_used_files(cmd, cmd->conn, set, d->name, err) < 0)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < set->count; i++)
		if (set->file[i].user[0])
			rc = kb_fail(err, 0, NULL, "disk '%s': in use by %s; two guests writing one image corrupt it "
						   "(disk backing=%s,size=... gives this one an overlay)",
				     set->file[i].path, set->file[i].user, set->file[i].path);
	free(set);
	return rc;
}

/*
 * Other domains' vCPU pins and node-bound memory: what placement must not
 * take. The domain itself, when it runs on hugepages, gives its pages back.
 */
static int claim_other_domains(struct domain_cmd *cmd, const char *self, unsigned long page_kib, struct kb_topology *topo,
			       struct kb_error *err)
{
	const struct kb_virt *v = &cmd->virt;
	virDomainPtr *domains = NULL;
	int n = v->list_domains(cmd->conn, &domains, 0);
	if (n < 0)
		return kb_virt_fail(v, err, NULL, "listing the domains whose CPUs are pinned");
	for (int i = 0; i < n; i++) {
		bool itself = strcmp(v->domain_name(domains[i]), self) == 0;
		int state = 0, reason = 0;
		bool running = v->domain_state(domains[i], &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF;
		autofree char *text = itself && !running ? NULL : inactive_xml(v, domains[i]);
		xmlDoc *doc = text ? kb_xml_parse(&cmd->xml, text, strlen(text), "domain", NULL) : NULL;
		if (doc && itself)
			kb_topology_return_hugepages(topo, &cmd->xml, doc, page_kib);
		else if (doc)
			kb_topology_claim_domain(topo, &cmd->xml, doc);
		if (doc)
			cmd->xml.free_doc(doc);
		v->domain_free(domains[i]);
	}
	free(domains);
	v->reset_error();
	return 0;
}

static int place_domain(struct domain_cmd *cmd, const struct kb_domnew *d, int node, struct kb_placement *placement,
			struct kb_error *err)
{
	struct kb_topology *topo = calloc(1, sizeof(*topo));
	if (!topo)
		return kb_fail(err, ENOMEM, NULL, "reading the host's topology");
	int rc = kb_topology_read(cmd->ctx, topo, err);
	if (rc == 0)
		rc = claim_other_domains(cmd, d->name, d->hugepages ? d->hugepage_kib : 0, topo, err);
	if (rc == 0) {
		struct kb_place_request req = { d->vcpus, d->memory_kib, d->hugepages ? d->hugepage_kib : 0, node };
		char why[512];
		if (kb_place(topo, &req, placement, why, sizeof(why)) < 0)
			rc = kb_fail(err, 0, NULL, "placement auto: %s", why);
	}
	free(topo);
	return rc;
}

static void placement_row(struct kb_row *row, const struct kb_domnew *d, const struct kb_placement *p)
{
	char cpus[512] = "", emulator[256];
	size_t used = 0;
	for (unsigned v = 0; v < p->vcpus && used < sizeof(cpus); v++)
		used += (size_t)snprintf(cpus + used, sizeof(cpus) - used, "%s%u", v ? "," : "", p->vcpu_cpu[v]);
	char nodes[128] = "";
	used = 0;
	for (size_t c = 0; c < p->cell_count && used < sizeof(nodes); c++)
		used += (size_t)snprintf(nodes + used, sizeof(nodes) - used, "%s%d", c ? "+" : "", p->cell[c].host_node);
	kb_row_set(row, d->name, KB_INFO, "placed on node %s: vCPUs on host CPUs %s; emulator on %s%s", nodes, cpus,
		   kb_cpuset_format(&p->emulator, emulator, sizeof(emulator)),
		   p->emulator_shared ? " (shared: no CPU is free of guests)" : "");
}

/* Create the volumes that are not there yet; rows say what was made. */
static int create_volumes(struct domain_cmd *cmd, struct kb_domnew *d, struct new_volume *vols, struct kb_rows *rows,
			  struct kb_error *err)
{
	const struct kb_virt *v = &cmd->virt;
	for (size_t i = 0; i < d->disk_count; i++) {
		struct kb_domnew_disk *k = &d->disk[i];
		if (k->kind == KB_DISK_PATH)
			continue;
		struct kb_row *row = kb_rows_add(rows);
		if (vols[i].exists) {
			kb_row_set(row, d->name, KB_UNCHANGED, "volume %s/%s exists", vols[i].pool_name, k->volume);
			continue;
		}
		if (cmd->dry_run) {
			kb_row_set(row, d->name, KB_WOULD_CHANGE, "volume %s/%s (%llu MiB%s) would be created", vols[i].pool_name,
				   k->volume, k->size_bytes >> 20, k->kind == KB_DISK_OVERLAY ? ", over its backing image" : "");
			continue;
		}
		autofree char *xml = NULL;
		if (kb_domnew_volume_xml(k, &xml, err) < 0)
			return -1;
		virStorageVolPtr vol = v->volume_create(vols[i].pool, xml, 0);
		if (!vol)
			return kb_virt_fail(v, err, NULL, "creating volume %s in pool '%s'", k->volume, vols[i].pool_name);
		v->volume_free(vol);
		vols[i].created = true;
		kb_row_set(row, d->name, KB_CHANGED, "volume %s/%s created (%llu MiB%s)", vols[i].pool_name, k->volume,
			   k->size_bytes >> 20, k->kind == KB_DISK_OVERLAY ? ", over its backing image" : "");
	}
	return 0;
}

/* Defining failed: the volumes this run made go again, so nothing is left behind. */
static void remove_created_volumes(struct domain_cmd *cmd, struct kb_domnew *d, struct new_volume *vols)
{
	const struct kb_virt *v = &cmd->virt;
	for (size_t i = 0; i < d->disk_count; i++) {
		if (!vols[i].created)
			continue;
		virStorageVolPtr vol = v->volume_lookup(vols[i].pool, d->disk[i].volume);
		bool removed = vol && v->volume_delete(vol, 0) == 0;
		if (cmd->ctx->verbosity >= 0)
			fprintf(cmd->ctx->err, "kvmbox domain: %s volume %s/%s again\n", removed ? "removed" : "could not remove",
				vols[i].pool_name, d->disk[i].volume);
		if (vol)
			v->volume_free(vol);
		v->reset_error();
	}
}

static int cmd_new(struct domain_cmd *cmd, struct kb_domnew *d)
{
	struct kb_error err = { 0 };
	struct new_volume vols[KB_DOMNEW_DISKS_MAX] = { 0 };
	struct kb_rows *rows = calloc(1, sizeof(*rows));
	struct kb_placement *placement = calloc(1, sizeof(*placement));
	autofree char *caps = NULL;
	char *xml = NULL; /* freed at out, with the rest */
	const char *to_create[KB_DOMNEW_DISKS_MAX + 1] = { 0 };
	xmlDoc *existing = NULL;
	int node = -1, rc = KB_EXIT_FAILURE;
	if (!rows || !placement) {
		kb_say_error(cmd->ctx, "out of memory");
		goto out;
	}
	if (connect_libvirt(cmd) < 0)
		goto out;
	caps = cmd->virt.get_capabilities(cmd->conn);
	choose_virt_type(cmd, d, caps);
	existing = existing_definition(cmd, d->name);
	if (existing)
		keep_macs(cmd, d, existing);
	if ((existing && keep_disk_formats(cmd, d, existing, &err) < 0) ||
	    kb_domnew_check_host(cmd->ctx, &cmd->xml, d, &node, &err) < 0 || check_cpu_model(cmd, d, &err) < 0 ||
	    resolve_disks(cmd, d, existing, vols, &err) < 0 ||
	    (d->placement_auto && place_domain(cmd, d, node, placement, &err) < 0) ||
	    kb_domnew_xml(d, d->placement_auto ? placement : NULL, &xml, &err) < 0) {
		kb_say_failure(cmd->ctx, &err);
		goto out;
	}
	if (cmd->print_xml) {
		fputs(xml, cmd->ctx->out);
		rc = KB_EXIT_OK;
		goto out;
	}
	size_t creating = 0;
	for (size_t i = 0; i < d->disk_count; i++)
		if (d->disk[i].kind != KB_DISK_PATH && !vols[i].exists)
			to_create[creating++] = d->disk[i].path;
	cmd->to_create = to_create;
	if (d->placement_auto)
		placement_row(kb_rows_add(rows), d, placement);
	char *names[] = { d->name };
	if (!cmd->no_preflight) {
		int failing = preflight_files(cmd, names, xml, 1, true);
		if (failing != 0) {
			if (failing > 0)
				kb_say_error(cmd->ctx, "the preflight found errors in domain '%s': nothing created or defined "
						       "(--no-preflight defines anyway)", d->name);
			goto out;
		}
	}
	if (create_volumes(cmd, d, vols, rows, &err) < 0) {
		kb_say_failure(cmd->ctx, &err);
		remove_created_volumes(cmd, d, vols);
		goto out;
	}
	bool no_preflight = cmd->no_preflight;
	cmd->no_preflight = true; /* done above, before any volume was made */
	rc = run_jobs(cmd, names, xml, 1, define_one, rows->row, rows->count);
	cmd->no_preflight = no_preflight;
	if (rc != KB_EXIT_OK) {
		/* The domain was not defined (or did not start): volumes made for it go unless it exists now. */
		virDomainPtr dom = cmd->virt.domain_lookup(cmd->conn, d->name);
		cmd->virt.reset_error();
		if (dom)
			cmd->virt.domain_free(dom);
		else
			remove_created_volumes(cmd, d, vols);
	}
out:
	for (size_t i = 0; i < KB_DOMNEW_DISKS_MAX; i++)
		if (vols[i].pool)
			cmd->virt.pool_free(vols[i].pool);
	if (existing)
		cmd->xml.free_doc(existing);
	free(xml);
	free(rows);
	free(placement);
	return rc;
}

int domain_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_CONNECT = KB_OPT_APPLET_FIRST, OPT_AUTOSTART, OPT_START, OPT_WAIT, OPT_NO_PREFLIGHT, OPT_JOBS,
		OPT_DEST, OPT_NAME, OPT_REPLACE, OPT_STORAGE, OPT_DRY_RUN, OPT_PRINT_XML,
		OPT_WORD, /* OPT_WORD + i: the domain new word new_words[i] */
	};
	/* domain new's options are its words (kvmbox/virt/domnew.h), the same as provision's [domain] keys. */
	static const char *const new_words[] = { "memory", "vcpus", "cpu", "machine", "virt-type", "disk", "cdrom",
						 "boot", "network", "graphics", "hostdev", "hugepages", "nested", "placement",
						 "allow-host-file" };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "connect", required_argument, NULL, OPT_CONNECT },
		{ "autostart", no_argument, NULL, OPT_AUTOSTART },
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
		{ 0 },
	};
	struct domain_cmd *cmd = calloc(1, sizeof(*cmd));
	struct kb_domnew *words = calloc(1, sizeof(*words));
	bool any_word = false;
	if (!cmd || !words) {
		free(cmd);
		free(words);
		kb_say_error(ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	*cmd = (struct domain_cmd){ .ctx = ctx, .wait_seconds = 60, .jobs = 8, .dest = DEFAULT_DEST };
	pthread_mutex_init(&cmd->lock, NULL);
	kb_domnew_init(words, "");
	cmd->words = words;
	const char *connect = NULL;
	int opt, rc = -1;
	char *end;
	while (rc == -1 && (opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_CONNECT: connect = optarg; break;
		case OPT_AUTOSTART: cmd->autostart = true; break;
		case OPT_START: cmd->start = true; break;
		case OPT_NO_PREFLIGHT: cmd->no_preflight = true; break;
		case OPT_DEST: cmd->dest = optarg; break;
		case OPT_NAME: cmd->name = optarg; break;
		case OPT_REPLACE: cmd->replace = true; break;
		case OPT_STORAGE: cmd->storage = true; break;
		case OPT_DRY_RUN: cmd->dry_run = true; break;
		case OPT_PRINT_XML: cmd->print_xml = true; break;
		case OPT_WAIT:
			cmd->wait_seconds = (int)strtol(optarg, &end, 10);
			if (*end || end == optarg || cmd->wait_seconds < 1 || cmd->wait_seconds > 3600) {
				kb_say_error(ctx, "--wait takes seconds from 1 to 3600, not '%s'", optarg);
				rc = KB_EXIT_USAGE;
			}
			break;
		case OPT_JOBS:
			cmd->jobs = (unsigned)strtoul(optarg, &end, 10);
			if (*end || end == optarg || cmd->jobs < 1 || cmd->jobs > 64) {
				kb_say_error(ctx, "--jobs takes a number from 1 to 64, not '%s'", optarg);
				rc = KB_EXIT_USAGE;
			}
			break;
		default:
			if (opt >= OPT_WORD && opt < OPT_WORD + (int)(sizeof(new_words) / sizeof(new_words[0]))) {
				struct kb_error err = { 0 };
				any_word = true;
				if (kb_domnew_word(words, new_words[opt - OPT_WORD], optarg, &err) < 0) {
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
		bool is_new = verb && !strcmp(verb, "new");
		struct kb_error err = { 0 };
		if (!verb) {
			kb_say_error(ctx, "needs preflight, define, new, up or rm (kvmbox domain --help)");
			rc = KB_EXIT_USAGE;
		} else if (strcmp(verb, "preflight") && strcmp(verb, "define") && strcmp(verb, "up") && strcmp(verb, "rm") &&
			   !is_new) {
			kb_say_error(ctx, "unknown command '%s': preflight, define, new, up or rm", verb);
			rc = KB_EXIT_USAGE;
		} else if (count == 0 || ((!strcmp(verb, "up") || is_new) && count != 1)) {
			kb_say_error(ctx, "%s needs %s", verb, !strcmp(verb, "rm") ? "one or more domain names" :
							    !strcmp(verb, "up") ? "one BUNDLE" : is_new ? "one NAME" :
							    "one or more XML files");
			rc = KB_EXIT_USAGE;
		} else if ((any_word || cmd->print_xml) && !is_new) {
			kb_say_error(ctx, "--memory, --disk, --print-xml and the other words are for new");
			rc = KB_EXIT_USAGE;
		} else if (cmd->dry_run && strcmp(verb, "define") != 0 && !is_new && strcmp(verb, "rm") != 0) {
			kb_say_error(ctx, "--dry-run is for define, new and rm");
			rc = KB_EXIT_USAGE;
		} else if (is_new && (snprintf(words->name, sizeof(words->name), "%s", args[0]) >= (int)sizeof(words->name) ||
				      kb_domnew_finish(words, &err) < 0)) {
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
		struct kb_error err = { 0 };
		cmd->uri = kb_virt_uri(connect);
		if (load_libraries(cmd, &err) < 0) {
			kb_say_failure(ctx, &err);
			rc = KB_EXIT_FAILURE;
		} else if (!strcmp(verb, "preflight")) {
			rc = cmd_preflight(cmd, args, count);
		} else if (!strcmp(verb, "define")) {
			rc = cmd_define(cmd, args, NULL, count, NULL, 0);
		} else if (!strcmp(verb, "up")) {
			rc = cmd_up(cmd, args[0]);
		} else if (!strcmp(verb, "new")) {
			rc = cmd_new(cmd, words);
		} else {
			rc = cmd_rm(cmd, args, count);
		}
	}
	if (cmd->conn)
		cmd->virt.connect_close(cmd->conn);
	pthread_mutex_destroy(&cmd->lock);
	free(cmd);
	free(words);
	return rc;
}
