/* PCI devices handed to guests through vfio-pci; see kvmbox/host/vfio.h. */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/host/kmod.h"
#include "kvmbox/host/pcidev.h"
#include "kvmbox/host/vfio.h"

enum vfio_action { VFIO_MODULE = 1, VFIO_OVERRIDE, VFIO_DRIVER, VFIO_RULE };

#define VFIO_DRIVER_DIR "/sys/bus/pci/drivers/" KB_PCI_VFIO
#define HOST_DRIVER "the host's driver" /* a release's planned after: the kernel picks it */

void kb_vfio_spec_init(struct kb_vfio_spec *spec)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
}

int kb_vfio_spec_add(struct kb_vfio_spec *spec, const char *text, struct kb_error *err)
{
	char addr[16];
	if (!kb_pci_parse_addr(text, addr, sizeof(addr)))
		return kb_fail(err, 0, NULL, "'%.64s' is not a PCI address (0000:81:00.3, 81:00.3 or pci_0000_81_00_3)", text);
	for (int i = 0; i < spec->count; i++)
		if (!strcmp(spec->addr[i], addr))
			return 0;
	if (spec->count == KB_VFIO_MAX)
		return kb_fail(err, 0, NULL, "more than %d PCI addresses", KB_VFIO_MAX);
	snprintf(spec->addr[spec->count++], sizeof(spec->addr[0]), "%s", addr);
	return 0;
}

int kb_vfio_spec_set(struct kb_vfio_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	if (!strcmp(key, "prepare")) {
		char words[1024];
		if (strlen(value) >= sizeof(words))
			return kb_fail(err, 0, NULL, "prepare: %zu bytes of addresses, over %zu", strlen(value), sizeof(words) - 1);
		snprintf(words, sizeof(words), "%s", value);
		int added = 0;
		for (char *save = NULL, *w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save), added++) {
			struct kb_error why = { 0 };
			if (kb_vfio_spec_add(spec, w, &why) < 0)
				return kb_fail(err, 0, NULL, "prepare: %s", why.what);
		}
		if (!added)
			return kb_fail(err, 0, NULL, "prepare: no PCI address given");
		return 0;
	}
	if (!strcmp(key, "persist")) {
		if (kb_parse_yes_no(value, &spec->persist) < 0)
			return kb_fail(err, 0, NULL, "persist: '%.64s' is not yes or no", value);
		return 0;
	}
	return kb_fail(err, 0, NULL, "unknown key '%.64s' in [pci] (it takes prepare and persist)", key);
}

/* ---- plan ------------------------------------------------------------------------------- */

/* Whether the next boot turns the IOMMU on while this one did not: in /etc/default/grub or /etc/kernel/cmdline, not /proc/cmdline. */
static bool iommu_at_next_boot(const struct kb_ctx *ctx)
{
	static const char *const args[] = { "intel_iommu", "amd_iommu" };
	static const char *const files[] = { "/etc/default/grub", "/etc/kernel/cmdline" };
	char running[4096], value[64];
	if (kb_read_value(ctx, "/proc/cmdline", running, sizeof(running), NULL) < 0)
		running[0] = '\0';
	for (size_t f = 0; f < 2; f++) {
		autofree char *text = NULL;
		size_t len;
		if (kb_read_file(ctx, files[f], 1 << 20, &text, &len, NULL) < 0)
			continue;
		for (size_t a = 0; a < 2; a++) {
			bool bare;
			bool now = kb_cmdline_get(running, strlen(running), args[a], value, sizeof(value), &bare) && !strncmp(value, "on", 2);
			/* Any occurrence in the file's text: the grub variables are shell, not one command line. */
			char needle[32];
			snprintf(needle, sizeof(needle), "%s=on", args[a]);
			if (!now && strstr(text, needle))
				return true;
		}
	}
	return false;
}

/* Add @d to @list (of *@n) unless it is there. */
static void add_once(struct kb_pci_dev **list, int *n, int max, struct kb_pci_dev *d)
{
	for (int j = 0; j < *n; j++)
		if (list[j] == d)
			return;
	if (*n < max)
		list[(*n)++] = d;
}

/* Every device of @d's group but bridges, into @list; @d first. */
static void add_group(struct kb_pci_host *host, struct kb_pci_dev *d, struct kb_pci_dev **list, int *n, int max)
{
	add_once(list, n, max, d);
	for (int i = 0; d->group >= 0 && i < host->count; i++)
		if (host->dev[i].group == d->group && !host->dev[i].bridge)
			add_once(list, n, max, &host->dev[i]);
}

/*
 * The devices the spec names and their groups, into @todo; those without an
 * IOMMU group until the next boot into @later. Refused, with nothing
 * planned: what the spec must not touch.
 */
static int judge(const struct kb_ctx *ctx, const struct kb_vfio_spec *spec, struct kb_pci_host *host,
		 struct kb_pci_dev **todo, int *n, struct kb_pci_dev **later, int *n_later, struct kb_error *err)
{
	*n = *n_later = 0;
	for (int i = 0; i < spec->count; i++) {
		struct kb_pci_dev *d = kb_pci_find(host, spec->addr[i]);
		if (!d)
			return kb_fail(err, 0, NULL, "no PCI device %s on this host (kvmbox pci list shows them)", spec->addr[i]);
		if (d->bridge)
			return kb_fail(err, 0, NULL, "%s is a bridge (class %06x): bridges are never passed through", d->addr,
				       d->class_code);
		if (!spec->release) {
			const struct kb_pci_dev *used = kb_pci_group_host_use(host, d);
			if (used && !spec->force)
				return kb_fail(err, 0, NULL, "refusing %s: %s%s%s (--force overrides)", d->addr,
					       used == d ? "" : used->addr, used == d ? "" : " in its IOMMU group: ", used->host_use);
			if (d->group < 0) {
				/* The IOMMU argument written for the next boot (grub-args, an earlier step) but not booted yet. */
				if (!iommu_at_next_boot(ctx))
					return kb_fail(err, 0, NULL,
						       "%s has no IOMMU group: kvmbox grub-args --iommu, VT-d/AMD-Vi on in the firmware, then reboot",
						       d->addr);
				add_once(later, n_later, KB_VFIO_MAX, d);
				continue;
			}
		}
		add_group(host, d, todo, n, KB_PCI_MAX);
	}
	return 0;
}

/* A device's driver as a plan's value: NULL when none is bound. */
static const char *driver_of(const struct kb_pci_dev *d)
{
	return d->driver[0] ? d->driver : NULL;
}

/* What driver_override names now: NULL when nothing ("(null)", as the kernel shows it, or cleared). */
static int read_override(const struct kb_ctx *ctx, const char *addr, char *buf, size_t size, const char **value,
			 struct kb_error *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), KB_PCI_DEVICES "/%s/driver_override", addr);
	if (kb_read_value(ctx, path, buf, size, err) < 0)
		return -1;
	*value = buf[0] && strcmp(buf, "(null)") ? buf : NULL;
	return 0;
}

/* The device's rebind: its driver_override, then its driver. */
static int plan_rebind(const struct kb_ctx *ctx, const struct kb_vfio_spec *spec, const struct kb_pci_dev *d,
		       struct kb_plan *plan, struct kb_error *err)
{
	char item[64], path[PATH_MAX], now[64];
	const char *override;
	if (read_override(ctx, d->addr, now, sizeof(now), &override, err) < 0)
		return -1;
	struct kb_change *c;
	/* A release clears a set override (else the kernel would take vfio-pci again); none set, none shown. */
	if (!spec->release || override) {
		snprintf(item, sizeof(item), "%s/driver_override", d->addr);
		if (!(c = kb_plan_add(plan, item, KB_CHANGE_VALUE, override, spec->release ? NULL : KB_PCI_VFIO, err)))
			return -1;
		snprintf(path, sizeof(path), KB_PCI_DEVICES "/%s/driver_override", d->addr);
		if (!(c->path = strdup(path)))
			return kb_fail(err, ENOMEM, NULL, "planning %s", item);
		c->action = VFIO_OVERRIDE;
	}
	if (!(c = kb_plan_add(plan, d->addr, KB_CHANGE_VALUE, driver_of(d), spec->release ? HOST_DRIVER : KB_PCI_VFIO, err)))
		return -1;
	c->action = VFIO_DRIVER;
	return 0;
}

#define RULE_HEADER "# Written by kvmbox pci prepare --persist: these PCI devices go to vfio-pci at every boot."
#define RULE_BEFORE "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\""
#define RULE_AFTER "\", ATTR{driver_override}=\"vfio-pci\", RUN{builtin}+=\"kmod load vfio-pci\""

/* The address of a rule line exactly as kvmbox writes it (into @addr), else false: a line someone else wrote. */
static bool own_rule_line(const char *line, size_t len, char addr[16])
{
	size_t before = strlen(RULE_BEFORE), after = strlen(RULE_AFTER);
	if (len <= before + after || strncmp(line, RULE_BEFORE, before) || strncmp(line + len - after, RULE_AFTER, after))
		return false;
	size_t n = len - before - after;
	if (n >= 16)
		return false;
	memcpy(addr, line + before, n);
	addr[n] = '\0';
	char canon[16]; /* the address as kvmbox writes it, and nothing else */
	return kb_pci_parse_addr(addr, canon, sizeof(canon)) && !strcmp(canon, addr);
}

/*
 * Whether a rule line someone else wrote names @addr: by the address itself,
 * or by a KERNEL== pattern that matches it as udev matches one (a shell glob,
 * alternatives split by '|').
 */
static bool line_names(const char *line, size_t len, const char *addr)
{
	if (memmem(line, len, addr, strlen(addr)))
		return true;
	const char *end = line + len;
	for (const char *at = line; (at = memmem(at, (size_t)(end - at), "KERNEL==\"", 9)) != NULL;) {
		at += 9;
		const char *close = memchr(at, '"', (size_t)(end - at));
		if (!close)
			return false;
		char pattern[256];
		for (const char *alt = at; alt < close;) {
			const char *bar = memchr(alt, '|', (size_t)(close - alt));
			const char *alt_end = bar ? bar : close;
			if ((size_t)(alt_end - alt) < sizeof(pattern)) {
				snprintf(pattern, sizeof(pattern), "%.*s", (int)(alt_end - alt), alt);
				if (fnmatch(pattern, addr, 0) == 0)
					return true;
			}
			alt = bar ? bar + 1 : close;
		}
		at = close + 1;
	}
	return false;
}

static bool among(struct kb_pci_dev **devs, int n, const char *addr)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(devs[i]->addr, addr))
			return true;
	return false;
}

/* The distinct addresses kvmbox's rule lines keep: a growing list, each address once. */
struct rule_addrs {
	char (*addr)[16];
	size_t count, cap;
};

static bool rule_addrs_has(const struct rule_addrs *a, const char *addr)
{
	for (size_t i = 0; i < a->count; i++)
		if (!strcmp(a->addr[i], addr))
			return true;
	return false;
}

static int rule_addrs_add(struct rule_addrs *a, const char *addr)
{
	if (rule_addrs_has(a, addr))
		return 0;
	if (a->count == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 32;
		char(*bigger)[16] = realloc(a->addr, cap * sizeof(*bigger));
		if (!bigger)
			return -1;
		a->addr = bigger;
		a->cap = cap;
	}
	snprintf(a->addr[a->count++], sizeof(a->addr[0]), "%s", addr);
	return 0;
}

static int compare_addrs(const void *a, const void *b)
{
	return strcmp(a, b);
}

/*
 * The udev rule file: one rule per address, as driverctl does, so an
 * identical device the host keeps stays its own (modprobe.d's "options
 * vfio-pci ids=" would take every device with the same vendor:device pair).
 * The rule sets driver_override when the device appears, before
 * 80-drivers.rules loads its driver, and loads vfio-pci.
 *
 * The file is edited, not rewritten: the rule lines kvmbox wrote (exactly its
 * form; a CR before the line's end is udev's line end too) for @devs are added
 * (prepare) or dropped (release), and every other line stays where it is, as
 * written; a line someone else wrote that names a released device is a WARN,
 * since it keeps the device on vfio-pci at boot. With nothing to add or drop
 * the file is left as it is; it goes when nothing but kvmbox's header is left.
 * A release plans nothing when there is no file.
 */
static int plan_rule(const struct kb_ctx *ctx, const struct kb_vfio_spec *spec, struct kb_pci_dev **devs, int n,
		     struct kb_plan *plan, struct kb_error *err)
{
	autofree char *old = NULL;
	size_t old_len = 0;
	struct kb_error read_err = { 0 };
	if (kb_read_file(ctx, KB_VFIO_UDEV_RULES, 1 << 20, &old, &old_len, &read_err) < 0) {
		if (read_err.errnum != ENOENT) {
			if (err)
				*err = read_err;
			return -1;
		}
		old = NULL;
	}
	if (spec->release && !old)
		return 0; /* nothing was ever persisted */
	autofree char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		return kb_fail(err, errno, KB_VFIO_UDEV_RULES, "planning");
	/* Freed by hand at the end: clang's analyser reads the cleanup attribute's free as a leak here. */
	struct rule_addrs kept = { 0 };
	int rc = -1, line_no = 0, dropped = 0;
	bool others = false; /* a line of someone else's stays */
	fputs(RULE_HEADER "\n", out);
	for (const char *line = old; line && line < old + old_len;) {
		const char *nl = memchr(line, '\n', (size_t)(old + old_len - line));
		size_t n_line = nl ? (size_t)(nl - line) : (size_t)(old + old_len - line);
		size_t n_text = n_line && line[n_line - 1] == '\r' ? n_line - 1 : n_line;
		line_no++;
		char addr[16];
		if (own_rule_line(line, n_text, addr)) {
			if (spec->release && among(devs, n, addr)) {
				dropped++;
			} else {
				if (rule_addrs_add(&kept, addr) < 0) {
					kb_fail(err, ENOMEM, KB_VFIO_UDEV_RULES, "planning");
					goto done;
				}
				fprintf(out, "%.*s\n", (int)n_line, line);
			}
		} else if (!(n_text == strlen(RULE_HEADER) && !strncmp(line, RULE_HEADER, n_text))) {
			fprintf(out, "%.*s\n", (int)n_line, line);
			others |= strspn(line, " \t\r") < n_line;
			for (int i = 0; spec->release && i < n; i++) {
				if (!line_names(line, n_line, devs[i]->addr) || line[strspn(line, " \t")] == '#')
					continue;
				char what[PATH_MAX + 160];
				snprintf(what, sizeof(what), "%s:%d, not written by kvmbox, names %s: it stays, and may keep the "
					 "device on vfio-pci at boot", KB_VFIO_UDEV_RULES, line_no, devs[i]->addr);
				struct kb_change *w = kb_plan_finding(plan, "udev-rule", KB_WARN, what, err);
				if (!w)
					goto done;
				kb_change_hint(w, "remove that line by hand if the device is to stay with its own driver");
			}
		}
		line = nl ? nl + 1 : old + old_len;
	}
	/* New devices' rules go last, in address order. */
	size_t first_new = kept.count;
	for (int i = 0; !spec->release && i < n; i++)
		if (rule_addrs_add(&kept, devs[i]->addr) < 0) {
			kb_fail(err, ENOMEM, KB_VFIO_UDEV_RULES, "planning");
			goto done;
		}
	size_t added = kept.count - first_new;
	if (added) /* qsort of no elements may still not be given a null array */
		qsort(kept.addr + first_new, added, sizeof(kept.addr[0]), compare_addrs);
	for (size_t i = first_new; i < kept.count; i++)
		fprintf(out, RULE_BEFORE "%s" RULE_AFTER "\n", kept.addr[i]);
	int closed = fclose(out);
	out = NULL;
	if (closed != 0) {
		kb_fail(err, ENOMEM, KB_VFIO_UDEV_RULES, "planning");
		goto done;
	}
	const char *after = kept.count || others ? text : NULL;
	if (old && !added && !dropped)
		after = old; /* nothing to add or drop: the file stays byte for byte */
	struct kb_change *c = kb_plan_file(ctx, plan, "udev-rule", KB_VFIO_UDEV_RULES, after, 0644, err);
	if (!c)
		goto done;
	c->action = VFIO_RULE;
	kb_change_note(c, "%zu device%s kept on vfio-pci at boot", kept.count, kept.count == 1 ? "" : "s");
	rc = 0;
done:
	if (out)
		fclose(out);
	free(kept.addr);
	return rc;
}

/* The host's devices and the ones to hand over: on the heap, one allocation. */
struct vfio_scan {
	struct kb_pci_host host;
	struct kb_pci_dev *todo[KB_PCI_MAX];
};

static void scan_free(struct vfio_scan **scan)
{
	if (*scan)
		kb_pci_host_free(&(*scan)->host);
	free(*scan);
}

int kb_vfio_plan(const struct kb_ctx *ctx, const struct kb_vfio_spec *spec, struct kb_plan *plan,
		 struct kb_error *err)
{
	__attribute__((cleanup(scan_free))) struct vfio_scan *scan = calloc(1, sizeof(*scan));
	if (!scan)
		return kb_fail(err, ENOMEM, NULL, "planning the PCI devices");
	struct kb_pci_host *host = &scan->host;
	struct kb_pci_dev **todo = scan->todo;
	struct kb_pci_dev *later[KB_VFIO_MAX];
	int n, n_later;
	if (kb_pci_scan(ctx, host, err) < 0 || judge(ctx, spec, host, todo, &n, later, &n_later, err) < 0)
		return -1;

	struct kb_change *c;
	for (int i = 0; i < n_later; i++) {
		if (!(c = kb_plan_add(plan, later[i]->addr, KB_CHANGE_VALUE, driver_of(later[i]), KB_PCI_VFIO, err)))
			return -1;
		c->status = KB_REBOOT; /* nothing to do now: the device has no group to hand over yet */
		kb_change_note(c, "no IOMMU group until the host boots with the IOMMU on: its argument is in the boot config, not yet on /proc/cmdline");
	}
	if (spec->release && plan_rule(ctx, spec, todo, n, plan, err) < 0)
		return -1;
	struct stat st;
	if (!spec->release && n > 0 && kb_sysroot_stat(ctx, VFIO_DRIVER_DIR, &st, false, NULL) < 0) {
		if (!(c = kb_plan_add(plan, "module", KB_CHANGE_VALUE, NULL, KB_PCI_VFIO, err)))
			return -1;
		c->action = VFIO_MODULE;
	}
	for (int i = 0; i < n; i++) {
		const struct kb_pci_dev *d = todo[i];
		bool bound = !strcmp(d->driver, KB_PCI_VFIO);
		if (spec->release ? bound : !bound) {
			if (plan_rebind(ctx, spec, d, plan, err) < 0)
				return -1;
		} else if (!kb_plan_add(plan, d->addr, KB_CHANGE_VALUE, driver_of(d), driver_of(d), err)) {
			return -1;
		}
	}
	if (!spec->release && spec->persist && plan_rule(ctx, spec, todo, n, plan, err) < 0)
		return -1;
	return 0;
}

/* ---- apply ------------------------------------------------------------------------------ */

/* vfio-pci in the kernel, loaded through libkmod, and its driver registered. */
static int load_vfio(const struct kb_ctx *ctx, struct kb_error *err)
{
	struct kb_path drv;
	struct stat st;
	if (kb_sysroot_path(ctx, VFIO_DRIVER_DIR, &drv, err) < 0) /* for messages */
		return -1;
	struct kb_kmod kmod;
	if (kb_kmod_load(&kmod, err) < 0)
		return -1;
	struct kmod_ctx *kctx = kmod.new(NULL, NULL);
	if (!kctx)
		return kb_fail(err, errno, NULL, "starting libkmod");
	int rc = kb_kmod_probe(&kmod, kctx, "vfio_pci", err);
	kmod.unref(kctx);
	if (rc < 0)
		return -1;
	if (kb_sysroot_stat(ctx, VFIO_DRIVER_DIR, &st, false, NULL) < 0)
		return kb_fail(err, 0, drv.s, "vfio-pci loaded but its driver is not registered:");
	return 0;
}

/*
 * The device's driver let go and the kernel asked to probe it again (it
 * honours driver_override), then read back. A release's after becomes the
 * driver the kernel chose.
 */
static int rebind(const struct kb_ctx *ctx, const struct kb_vfio_spec *spec, struct kb_change *c,
		  struct kb_error *err)
{
	const char *addr = c->item;
	char path[PATH_MAX], now[64];
	kb_pci_link_name(ctx, addr, "driver", now, sizeof(now));
	if (now[0]) {
		snprintf(path, sizeof(path), KB_PCI_DEVICES "/%s/driver/unbind", addr);
		if (kb_write_value(ctx, path, addr, err) < 0)
			return -1;
	}
	if (kb_write_value(ctx, "/sys/bus/pci/drivers_probe", addr, err) < 0)
		return -1;
	kb_pci_link_name(ctx, addr, "driver", now, sizeof(now));
	if (!spec->release && strcmp(now, KB_PCI_VFIO))
		return kb_fail(err, 0, NULL, "%s: bound to '%s' after binding it to vfio-pci (read back from sysfs)", addr,
			       now[0] ? now : "nothing");
	if (spec->release && !strcmp(now, KB_PCI_VFIO))
		return kb_fail(err, 0, NULL, "%s: still bound to vfio-pci after the release (read back from sysfs)", addr);
	if (spec->release && kb_change_set_after(c, now[0] ? now : NULL, err) < 0)
		return -1;
	kb_change_note(c, "read back");
	return 0;
}

int kb_vfio_apply(const struct kb_ctx *ctx, const struct kb_vfio_spec *spec, struct kb_plan *plan,
		  struct kb_error *err)
{
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		int rc = 0;
		switch (c->action) {
		case VFIO_MODULE: rc = load_vfio(ctx, err); break;
		/* Writing a newline clears the override: the kernel picks the driver by IDs again. */
		case VFIO_OVERRIDE: rc = kb_write_value(ctx, c->path, c->after ? c->after : "\n", err); break;
		case VFIO_DRIVER: rc = rebind(ctx, spec, c, err); break;
		case VFIO_RULE: rc = kb_apply_file(ctx, c, err); break;
		default: continue;
		}
		if (rc < 0) {
			char why[sizeof(err->what) + PATH_MAX + 64];
			c->status = KB_FAILED;
			kb_change_note(c, "%s", err ? kb_error_message(err, why, sizeof(why)) : "failed");
			return -1;
		}
		c->status = KB_CHANGED;
	}
	return 0;
}
