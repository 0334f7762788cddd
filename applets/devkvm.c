/*
 * devkvm: a /dev/kvm that QEMU under libvirt can open.
 *
 * Makes the node if it is missing (major:minor from /sys/class/misc/kvm/dev),
 * sets root:kvm 0660, and never widens: a world-accessible node is narrowed
 * and reported.
 * --persist writes the udev rule that keeps it so across reboots. Each item
 * is reported changed / unchanged (would-change with --dry-run).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kvmbox/core/accounts.h"
#include "kvmbox/applet.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/sysroot.h"

const char devkvm_usage[] =
	"Usage: kvmbox devkvm [--dry-run] [--persist] [--group NAME]\n"
	"\n"
	"Make /dev/kvm usable by QEMU under libvirt: create the node if it is missing\n"
	"(char device numbers from /sys/class/misc/kvm/dev), owner root, group kvm,\n"
	"mode 0660. A node open to every user is narrowed to 0660.\n"
	"\n"
	"  --dry-run     show what would change, change nothing\n"
	"  --persist     write /etc/udev/rules.d/65-kvm.rules so udev keeps it so\n"
	"  --group NAME  the group that may use KVM (default kvm)\n";

#define DEVKVM_MODE 0660
#define UDEV_RULE_PATH "/etc/udev/rules.d/65-kvm.rules"


struct devkvm {
	struct kb_ctx *ctx;
	const char *group;
	bool persist;
	enum kb_status done; /* KB_CHANGED, or KB_WOULD_CHANGE with --dry-run */
	struct kb_rows rows;
};

/* The device numbers the loaded KVM module registered, from /sys/class/misc/kvm/dev ("10:232"). */
static int kvm_devnum(const struct kb_ctx *ctx, dev_t *dev, struct kb_error *err)
{
	char value[32];
	if (kb_read_value(ctx, "/sys/class/misc/kvm/dev", value, sizeof(value), err) < 0) {
		if (err->errnum == ENOENT)
			kb_fail(err, 0, NULL, "the KVM module is not loaded (no /sys/class/misc/kvm/dev): run kvmbox kvm-load first");
		return -1;
	}
	unsigned maj, min;
	char extra;
	if (sscanf(value, "%u:%u%c", &maj, &min, &extra) != 2)
		return kb_fail(err, EINVAL, NULL, "/sys/class/misc/kvm/dev holds '%s', not MAJOR:MINOR", value);
	*dev = makedev(maj, min);
	return 0;
}

/*
 * The node itself: created when missing, replaced (atomically, by a new node
 * renamed over it) when it is not the character device KVM registered.
 */
static int ensure_node(struct devkvm *d, const char *path, gid_t gid, struct kb_error *err)
{
	struct stat st;
	bool exists = lstat(path, &st) == 0;
	if (!exists && errno != ENOENT)
		return kb_fail(err, errno, path, "examining");
	dev_t want;
	if (kvm_devnum(d->ctx, &want, err) < 0) {
		/* Planned before kvm-load ran (provision --plan): the node comes with the module. */
		if (d->done != KB_WOULD_CHANGE || exists)
			return -1;
		kb_row_set(kb_rows_add(&d->rows), "node", KB_WOULD_CHANGE, "would be created once the KVM module is loaded");
		return 0;
	}
	if (exists && S_ISCHR(st.st_mode) && st.st_rdev == want) {
		kb_row_set(kb_rows_add(&d->rows), "node", KB_UNCHANGED, "/dev/kvm is char %u:%u", major(want), minor(want));
		return 0;
	}
	const char *verb = exists ? "replaced" : "created";
	if (d->done == KB_WOULD_CHANGE) {
		kb_row_set(kb_rows_add(&d->rows), "node", d->done, "would be %s as char %u:%u", verb, major(want),
			   minor(want));
		return 0;
	}
	char tmp[PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s.kvmbox-new", path);
	unlink(tmp);
	/* Made with the final owner and mode before it becomes visible as /dev/kvm. */
	if (mknod(tmp, S_IFCHR | DEVKVM_MODE, want) < 0)
		return kb_fail(err, errno, tmp, "creating device node");
	if (chown(tmp, 0, gid) < 0 || chmod(tmp, DEVKVM_MODE) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return kb_fail(err, e, path, "creating device node");
	}
	kb_row_set(kb_rows_add(&d->rows), "node", d->done, "%s /dev/kvm as char %u:%u", verb, major(want), minor(want));
	return 0;
}

static int ensure_owner_and_mode(struct devkvm *d, const char *path, gid_t gid, struct kb_error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (d->done == KB_WOULD_CHANGE && errno == ENOENT) {
			/* Not made in a dry run: it would be made right. */
			kb_row_set(kb_rows_add(&d->rows), "owner", KB_WOULD_CHANGE, "would be root:%s", d->group);
			kb_row_set(kb_rows_add(&d->rows), "mode", KB_WOULD_CHANGE, "would be %04o", DEVKVM_MODE);
			return 0;
		}
		return kb_fail(err, errno, path, "examining");
	}
	if (st.st_uid == 0 && st.st_gid == gid) {
		kb_row_set(kb_rows_add(&d->rows), "owner", KB_UNCHANGED, "root:%s", d->group);
	} else {
		if (d->done == KB_CHANGED && chown(path, 0, gid) < 0)
			return kb_fail(err, errno, path, "changing the owner of");
		char user[64], group[64];
		kb_row_set(kb_rows_add(&d->rows), "owner", d->done, "%s:%s -> root:%s",
			   kb_user_name(d->ctx, st.st_uid, user, sizeof(user)),
			   kb_group_name(d->ctx, st.st_gid, group, sizeof(group)), d->group);
	}
	mode_t old = st.st_mode & ALLPERMS;
	if (old == DEVKVM_MODE) {
		kb_row_set(kb_rows_add(&d->rows), "mode", KB_UNCHANGED, "%04o", DEVKVM_MODE);
		return 0;
	}
	if (d->done == KB_CHANGED && chmod(path, DEVKVM_MODE) < 0)
		return kb_fail(err, errno, path, "changing the mode of");
	kb_row_set(kb_rows_add(&d->rows), "mode", d->done, "%04o -> %04o%s", (unsigned)old, DEVKVM_MODE,
		   (old & 0006) ? " (narrowed: every local user could use KVM)" : "");
	return 0;
}

/* Read back: the kernel or a racing udev may have had the last word. */
static int verify(struct devkvm *d, const char *path, gid_t gid, struct kb_error *err)
{
	struct stat st;
	dev_t want;
	if (lstat(path, &st) < 0)
		return kb_fail(err, errno, path, "reading back");
	if (kvm_devnum(d->ctx, &want, err) < 0)
		return -1;
	if (!S_ISCHR(st.st_mode) || st.st_rdev != want || st.st_uid != 0 || st.st_gid != gid ||
	    (st.st_mode & ALLPERMS) != DEVKVM_MODE)
		return kb_fail(err, EIO, path, "reading back: not root:%s %04o char %u:%u after the change:",
			       d->group, DEVKVM_MODE, major(want), minor(want));
	return 0;
}

static int persist_rule(struct devkvm *d, struct kb_error *err)
{
	autofree char *rule = NULL;
	int len = asprintf(&rule,
			   "# Written by kvmbox devkvm: /dev/kvm for group %s only, never every user.\n"
			   "KERNEL==\"kvm\", GROUP=\"%s\", MODE=\"%04o\", OPTIONS+=\"static_node=kvm\"\n",
			   d->group, d->group, DEVKVM_MODE);
	if (len < 0)
		return kb_fail(err, ENOMEM, UDEV_RULE_PATH, "writing");
	bool changed;
	if (kb_file_ensure(d->ctx, UDEV_RULE_PATH, rule, (size_t)len, 0644, d->done == KB_WOULD_CHANGE, &changed,
			   err) < 0)
		return -1;
	if (!changed) {
		kb_row_set(kb_rows_add(&d->rows), "udev-rule", KB_UNCHANGED, "%s", UDEV_RULE_PATH);
		return 0;
	}
	kb_row_set(kb_rows_add(&d->rows), "udev-rule", d->done, "%s (GROUP=\"%s\", MODE=\"%04o\")", UDEV_RULE_PATH, d->group,
		   DEVKVM_MODE);
	return 0;
}

int devkvm_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_DRY_RUN = KB_OPT_APPLET_FIRST, OPT_PERSIST, OPT_GROUP };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "persist", no_argument, NULL, OPT_PERSIST },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ 0 },
	};
	struct devkvm d = { .ctx = ctx, .group = "kvm", .done = KB_CHANGED };
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_DRY_RUN: d.done = KB_WOULD_CHANGE; break;
		case OPT_PERSIST: d.persist = true; break;
		case OPT_GROUP:
			/* A group name as useradd takes it; it is written into a quoted udev rule value. */
			if (!optarg[0] || strlen(optarg) > 32 || optarg[0] == '-' ||
			    strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(optarg)) {
				kb_say_error(ctx, "--group: '%.64s' is not a group name (up to 32 letters, digits, '.', '_', '-')", optarg);
				return KB_EXIT_USAGE;
			}
			d.group = optarg;
			break;
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
	}
	if (optind < argc) {
		kb_say_error(ctx, "unexpected argument '%s'", argv[optind]);
		return KB_EXIT_USAGE;
	}

	struct kb_error err = { 0 };
	struct kb_path node;
	gid_t gid;
	/* Every directory on the way resolved as the root sees it: a linked /dev makes no node outside. */
	int rc = kb_sysroot_resolved_path(ctx, "/dev/kvm", false, &node, &err);
	if (rc == 0 && kb_group_id(ctx, d.group, &gid, &err) < 0) {
		if (err.errnum == ENOENT)
			kb_fail(&err, 0, NULL, "group '%s' does not exist: create it with 'groupadd --system %s'",
				d.group, d.group);
		rc = -1;
	}
	if (rc == 0)
		rc = ensure_node(&d, node.s, gid, &err);
	if (rc == 0)
		rc = ensure_owner_and_mode(&d, node.s, gid, &err);
	if (rc == 0 && d.done == KB_CHANGED)
		rc = verify(&d, node.s, gid, &err);
	if (rc == 0 && d.persist)
		rc = persist_rule(&d, &err);
	kb_rows_print(ctx, d.rows.row, d.rows.count);
	if (rc < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}
