/*
 * A libvirt domain kvmbox defines: from an XML file or from the words of
 * `domain new` (kvmbox/virt/domnew.h), with autostart and a start. The
 * resource every caller uses (`domain define`, `domain new`, `domain rm`,
 * provision's [domain NAME]): a spec, one setter, plan and apply (see
 * kvmbox/core/change.h).
 *
 * The plan compares the domain's definition as libvirt keeps it (dumpxml
 * --inactive) with the new one element by element, each value normalised
 * (memory in MiB, a disk by its target, an interface by its MAC or source):
 *
 *   NAME                   absent -> defined, defined -> updated
 *   NAME memory            256 MiB -> 512 MiB
 *   NAME vcpus             1 -> 2
 *   NAME disk vda          file /images/a.qcow2 (qcow2, virtio)
 *   NAME interface MAC     bridge br0, model virtio
 *   NAME graphics          vnc 127.0.0.1, none
 *   NAME vcpu pins         0:3 1:4, emulator 5-6
 *   NAME on_reboot         restart -> destroy   (any other element that differs)
 *   NAME devices/channel   absent -> <channel type='unix'>...</channel>
 *   NAME volume POOL/VOL   absent -> 64 MiB, 64 MiB -> 128 MiB (grown)
 *   NAME cloud-init seed   absent -> cidata ISO, 2 files (written beside the first disk; the start
 *                          this run makes boots with it, the definition never holds it)
 *   NAME autostart         off -> on            (spec.autostart: on or off)
 *   NAME state             shut off -> running  (spec.start)
 *
 * Beyond the typed elements, every element and attribute the new definition
 * states must be in the current one with the same value (what libvirt adds
 * of its own, defaults and addresses, is no change); each that is not is a
 * row, as is a device the new definition drops that libvirt would not add by
 * itself. Apply defines only when the plan has a change. A running domain
 * keeps running as it started: its changed elements are KB_REBOOT, each noted
 * "takes effect at the next start" (a grown disk is grown at once).
 *
 * The words of `domain new` over an existing domain change what they name and
 * keep every other element of its current definition (a <filesystem> or a
 * <channel> added by hand); a device of the words that would take the place
 * of one they do not name is refused (see merge_words in domain.c). They never
 * replace a disk with a new empty volume (format= changed, its file missing:
 * refused), never shrink one, and never drop one unless spec.prune (its file
 * stays). A volume made for a domain is marked for it until the define; a stop
 * signal in between removes it, and a killed run's volume is adopted by the
 * next run of the same words.
 */
#ifndef KVMBOX_DOMAIN_H
#define KVMBOX_DOMAIN_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/xml.h"
#include "kvmbox/virt/preflight.h"
#include "kvmbox/virt/virt.h"

#define KB_DOMAIN_WORDS_MAX 4096
#define KB_ROOT_PASSWORD_SIZE 24

/*
 * libvirt and libxml2 loaded and a connection open: what plan and apply talk
 * through when the caller has them (the applet's worker threads each have a
 * connection of their own). Without one, plan and apply open their own.
 */
struct kb_domain_link {
	const struct kb_xml *xml;
	const struct kb_virt *virt;
	virConnectPtr conn;
	struct kb_xml_schema *schema; /* kb_domain_schema_load's or _start's, shared; NULL: libvirt validates each define */
	bool validate_ahead;          /* an apply follows the plan: the plan sends its definition to @schema at once */
};

/*
 * libvirt's domain schema compiled once, for many defines on the local
 * libvirt @uri ("" or NULL: the default): each definition is validated
 * against it before the define, which then skips libvirt's own validation
 * (VIR_DOMAIN_DEFINE_VALIDATE compiles the schema again every time). NULL
 * when the URI names another host (its libvirt's schema is the one that
 * counts) or the schema cannot be read: libvirt validates then.
 */
struct kb_xml_schema *kb_domain_schema_load(const struct kb_xml *xml, const char *uri);

/* The domain schema kvmbox validates against for @uri (as kb_domain_schema_load), or NULL: libvirt validates. */
const char *kb_domain_schema_path(const char *uri);

/* The state `domain stop` and `domain pause` bring a defined domain to. */
enum kb_domain_state {
	KB_DOMAIN_SHUTDOWN = 1, /* shut off by the guest itself (ACPI), waiting up to wait_seconds */
	KB_DOMAIN_DESTROYED,    /* shut off at once, the power pulled */
	KB_DOMAIN_PAUSED,       /* its vCPUs stopped; a shut off domain starts paused */
};

struct kb_domain_spec {
	char name[64];          /* the domain (words); "" for an XML file: its <name> */
	char xml[PATH_MAX];     /* a definition file (a path as the caller sees it), or "" */
	bool rename;            /* xml: the domain is name (its <name> replaced, its UUID dropped when that renames it) */
	char bundle_dir[PATH_MAX]; /* xml: the bundle directory it came from: an existing domain of its name
				      that boots no image in it is another's, refused unless take_over */
	bool take_over;
	char words[KB_DOMAIN_WORDS_MAX]; /* domain new's words, "key=value" one after another, each NUL-terminated */
	size_t words_len;
	unsigned long long memory_kib;  /* from the words: 0 when not given */
	unsigned long hugepage_kib;     /* from the words: 0 = the host's default size */
	bool hugepages;                 /* from the words */
	int autostart;                  /* 1 on, 0 off; -1: leave as it is */
	bool start;
	int wait_seconds;               /* start: how long to wait until it runs (default 60) */
	bool preflight;                 /* plan runs the preflight on the new definition (default yes) */
	bool storage;                   /* remove: the domain's image files too */
	bool prune;                     /* words: disks the words no longer name leave the definition (their files stay) */
	enum kb_domain_state state;     /* stop, pause: the state wanted */
	char uri[256];                  /* "" : $LIBVIRT_DEFAULT_URI, else qemu:///system */
	char *root_password;            /* new with cloud-init root-password-generate: where apply puts the password
					   it made (KB_ROOT_PASSWORD_SIZE bytes), for the caller to show once; may be NULL */
	const struct kb_domain_link *link; /* may be NULL */
	struct kb_findings *findings;   /* where plan puts the preflight's findings; may be NULL */
	struct kb_kvm_answers *kvm;     /* KVM's answers, kept from plan to apply (asked once a run); may be NULL */
};

/* The defaults: no definition yet, autostart left as it is, no start, wait 60 s, preflight on. */
void kb_domain_spec_init(struct kb_domain_spec *spec);

/*
 * Set one key as both the command line and the host config's [domain NAME]
 * name it: "xml" (an absolute path), any word of domain new (memory, vcpus,
 * disk, ...: its syntax checked now, kept in the spec's words), "autostart"
 * and "start" (yes/no), "connect" (a libvirt URI), "wait" (seconds, 1 to
 * 3600), "storage" (yes/no), "preflight" (yes/no), "prune" (yes/no). Unknown
 * keys and bad values are refused.
 */
int kb_domain_spec_set(struct kb_domain_spec *spec, const char *key, const char *value, struct kb_error *err);

/* Each "key=value" word of @spec, in order: for (w = NULL; (w = kb_domain_spec_next_word(spec, w));). */
const char *kb_domain_spec_next_word(const struct kb_domain_spec *spec, const char *word);

/*
 * What only all keys together tell: one of xml or words; memory among the
 * words (kb_domnew_finish). The applet calls it to refuse bad words as a
 * usage error; plan calls it too.
 */
int kb_domain_spec_check(const struct kb_domain_spec *spec, struct kb_error *err);

/*
 * The definition the spec makes (the words through libvirt's capabilities,
 * the host's checks and the placement; or the file with the existing UUID)
 * into *@xml, as plan defines it. For `domain new --print-xml`.
 */
int kb_domain_xml(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, char **xml, struct kb_error *err);

/*
 * The changes define (or new) makes; see above. Never changes anything (with
 * link->validate_ahead it sends the definition to link->schema's validator,
 * whose verdict the apply of the same definition then takes).
 */
int kb_domain_plan(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
		   struct kb_error *err);

/* The change of a kb_domain_plan() @plan that defines the domain (its item is the domain's name), or NULL. */
struct kb_change *kb_domain_plan_definition(struct kb_plan *plan);

/*
 * Make every planned change: volumes, the definition, autostart, the start
 * (waiting until it runs). Volumes made for a domain that then could not be
 * defined are removed again.
 */
int kb_domain_apply(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
		    struct kb_error *err);

/*
 * What `domain rm` takes away: "NAME state" (running -> shut off), "NAME"
 * (defined -> absent), with spec.storage "NAME image PATH" for each disk image
 * file (kept, with a note saying who, when another domain or a process uses
 * it). A domain that does not exist is one unchanged "NAME" (absent).
 */
int kb_domain_remove_plan(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
			  struct kb_error *err);

/* Destroy, undefine, remove the image files and refresh the pools that held them. */
int kb_domain_remove_apply(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
			   struct kb_error *err);

/*
 * What `domain stop` (spec.state shutdown or destroyed) and `domain pause`
 * change: "NAME state" (running -> shut off, running -> paused, shut off ->
 * paused), unchanged when it is there already. A domain that does not
 * exist, and a paused one asked to shut itself down, are refused.
 */
int kb_domain_state_plan(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
			 struct kb_error *err);

/* Shut down (and wait until it is off), destroy, suspend, or start paused. */
int kb_domain_state_apply(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
			  struct kb_error *err);

#endif
