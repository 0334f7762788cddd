/* The /dev/kvm node; see kvmbox/host/devkvm.h. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kvmbox/core/accounts.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/confdirs.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/host/devkvm.h"

enum devkvm_action { DEVKVM_NODE = 1, DEVKVM_OWNER, DEVKVM_MODE, DEVKVM_RULE };

void kb_devkvm_spec_init(struct kb_devkvm_spec *spec)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
	snprintf(spec->group, sizeof(spec->group), "%s", "kvm");
}

int kb_devkvm_spec_set(struct kb_devkvm_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	if (!strcmp(key, "group")) {
		/* A group name as useradd takes it; it is written into a quoted udev rule value. */
		if (!value[0] || strlen(value) >= sizeof(spec->group) || value[0] == '-' ||
		    strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(value))
			return kb_fail(err, EINVAL, NULL, "group: '%.64s' is not a group name (up to 32 letters, digits, '.', '_', '-')",
				       value);
		snprintf(spec->group, sizeof(spec->group), "%s", value);
		return 0;
	}
	if (!strcmp(key, "persist")) {
		if (kb_parse_yes_no(value, &spec->persist) < 0)
			return kb_fail(err, EINVAL, NULL, "persist: '%.64s' is not yes or no", value);
		return 0;
	}
	return kb_fail(err, EINVAL, NULL, "unknown key '%.64s' in [devkvm] (it takes group and persist)", key);
}

/* The device numbers the loaded KVM module registered, from /sys/class/misc/kvm/dev ("10:232"). */
static int kvm_devnum(const struct kb_ctx *ctx, dev_t *dev, struct kb_error *err)
{
	char value[32];
	if (kb_read_value(ctx, "/sys/class/misc/kvm/dev", value, sizeof(value), err) < 0) {
		if (err && err->errnum == ENOENT)
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

/* Where the node is (every directory on the way resolved as the root sees it) and the group's id. */
static int locate(const struct kb_ctx *ctx, const struct kb_devkvm_spec *spec, struct kb_path *node, gid_t *gid,
		  struct kb_error *err)
{
	if (kb_sysroot_resolved_path(ctx, "/dev/kvm", false, node, err) < 0)
		return -1;
	if (kb_group_id(ctx, spec->group, gid, err) < 0) {
		if (err && err->errnum == ENOENT)
			kb_fail(err, 0, NULL, "group '%s' does not exist: create it with 'groupadd --system %s'", spec->group,
				spec->group);
		return -1;
	}
	return 0;
}

/* What is at the node's path, in the words of the plan: "char 10:232", "a regular file". */
static void describe_node(const struct stat *st, char *buf, size_t size)
{
	if (S_ISCHR(st->st_mode))
		snprintf(buf, size, "char %u:%u", major(st->st_rdev), minor(st->st_rdev));
	else if (S_ISBLK(st->st_mode))
		snprintf(buf, size, "block %u:%u", major(st->st_rdev), minor(st->st_rdev));
	else if (S_ISDIR(st->st_mode))
		snprintf(buf, size, "a directory");
	else if (S_ISLNK(st->st_mode))
		snprintf(buf, size, "a symbolic link");
	else
		snprintf(buf, size, "a %s", S_ISREG(st->st_mode) ? "regular file" : "special file");
}

/*
 * udev applies the rules files in the order of their names (/etc masking the
 * same name below), a later assignment winning: a rule read after kvmbox's
 * that matches the kvm node and sets its owner, group or mode undoes it at
 * every boot. Each is a WARN naming file and line.
 */
static const char *const udev_dirs[] = { "/etc/udev/rules.d", "/usr/local/lib/udev/rules.d", "/usr/lib/udev/rules.d",
					 "/lib/udev/rules.d" };

static bool sets_node(const char *line)
{
	static const char *const keys[] = { "MODE", "GROUP", "OWNER" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		for (const char *k = strstr(line, keys[i]); k; k = strstr(k + 1, keys[i])) {
			const char *op = k + strlen(keys[i]);
			if ((k == line || !isalnum((unsigned char)k[-1])) && (op[0] == '=' || (op[0] == ':' && op[1] == '=')) &&
			    op[op[0] == ':' ? 2 : 1] != '=')
				return true;
		}
	return false;
}

static int plan_later_rules(const struct kb_ctx *ctx, struct kb_plan *plan, struct kb_error *err)
{
	size_t count;
	bool full;
	autofree struct kb_conf_file *files =
		kb_conf_files(ctx, udev_dirs, sizeof(udev_dirs) / sizeof(udev_dirs[0]), ".rules", &count, &full, err);
	if (!files)
		return -1;
	const char *ours = strrchr(KB_DEVKVM_UDEV_RULE, '/') + 1;
	for (size_t i = 0; i < count; i++) {
		if (strcmp(files[i].name, ours) <= 0)
			continue; /* read before ours: ours wins */
		autofree char *text = NULL;
		size_t len;
		if (kb_read_file(ctx, files[i].path, 1 << 20, &text, &len, NULL) < 0)
			continue;
		unsigned line = 0;
		for (char *p = text, *eol; p && *p; p = eol ? eol + 1 : NULL) {
			eol = strchr(p, '\n');
			if (eol)
				*eol = '\0';
			line++;
			p += strspn(p, " \t");
			if (*p == '#' || !strstr(p, "KERNEL==\"kvm\"") || !sets_node(p))
				continue;
			char what[NAME_MAX + 200];
			snprintf(what, sizeof(what), "%s:%u sets /dev/kvm's owner, group or mode after %s: it wins at boot",
				 files[i].path, line, KB_DEVKVM_UDEV_RULE);
			struct kb_change *c = kb_plan_finding(plan, "udev", KB_WARN, what, err);
			if (!c)
				return -1;
			kb_change_hint(c, "remove that assignment: udev applies the rules in order, the last one wins");
		}
	}
	return 0;
}

static char *udev_rule(const struct kb_devkvm_spec *spec)
{
	char *rule = NULL;
	if (asprintf(&rule,
		     "# Written by kvmbox devkvm: /dev/kvm for group %s only, never every user.\n"
		     "KERNEL==\"kvm\", GROUP=\"%s\", MODE=\"%04o\", OPTIONS+=\"static_node=kvm\"\n",
		     spec->group, spec->group, KB_DEVKVM_MODE) < 0)
		return NULL;
	return rule;
}

int kb_devkvm_plan(const struct kb_ctx *ctx, const struct kb_devkvm_spec *spec, struct kb_plan *plan,
		   struct kb_error *err)
{
	struct kb_path node;
	gid_t gid;
	if (locate(ctx, spec, &node, &gid, err) < 0)
		return -1;
	struct stat st;
	bool exists = lstat(node.s, &st) == 0;
	if (!exists && errno != ENOENT)
		return kb_fail(err, errno, node.s, "examining");

	char before[64], after[64];
	dev_t want = 0;
	struct kb_change *c;
	if (kvm_devnum(ctx, &want, err) < 0) {
		/* Planned before kvm-load ran (provision --plan): the node comes with the module. */
		if (exists)
			return -1;
		*err = (struct kb_error){ 0 };
		if (!(c = kb_plan_add(plan, "node", KB_CHANGE_VALUE, NULL, "char device of the KVM module", err)))
			return -1;
		kb_change_note(c, "made once the KVM module is loaded");
	} else {
		if (exists)
			describe_node(&st, before, sizeof(before));
		snprintf(after, sizeof(after), "char %u:%u", major(want), minor(want));
		if (!(c = kb_plan_add(plan, "node", KB_CHANGE_VALUE, exists ? before : NULL, after, err)))
			return -1;
	}
	c->action = DEVKVM_NODE;

	/* Anything else where the node goes (a link, a file, another device) is replaced: its owner and mode were never KVM's. */
	bool device = exists && S_ISCHR(st.st_mode) && st.st_rdev == want;
	char user[64], group[64];
	if (device)
		snprintf(before, sizeof(before), "%s:%s", kb_user_name(ctx, st.st_uid, user, sizeof(user)),
			 kb_group_name(ctx, st.st_gid, group, sizeof(group)));
	snprintf(after, sizeof(after), "root:%s", spec->group);
	/* Names can repeat ids: compare the ids, show the names. */
	if (!(c = kb_plan_add(plan, "owner", KB_CHANGE_VALUE, device ? before : NULL, after, err)))
		return -1;
	c->status = device && st.st_uid == 0 && st.st_gid == gid ? KB_UNCHANGED : KB_WOULD_CHANGE;
	c->action = DEVKVM_OWNER;

	mode_t old = device ? st.st_mode & ALLPERMS : 0;
	snprintf(before, sizeof(before), "%04o", (unsigned)old);
	snprintf(after, sizeof(after), "%04o", KB_DEVKVM_MODE);
	if (!(c = kb_plan_add(plan, "mode", KB_CHANGE_VALUE, device ? before : NULL, after, err)))
		return -1;
	c->action = DEVKVM_MODE;
	if (device && (old & 0006) && old != KB_DEVKVM_MODE)
		kb_change_note(c, "narrowed: every local user could use KVM");

	if (spec->persist) {
		autofree char *rule = udev_rule(spec);
		if (!rule)
			return kb_fail(err, ENOMEM, KB_DEVKVM_UDEV_RULE, "planning");
		if (!(c = kb_plan_file(ctx, plan, "udev-rule", KB_DEVKVM_UDEV_RULE, rule, 0644, err)))
			return -1;
		c->action = DEVKVM_RULE;
		kb_change_note(c, "GROUP=\"%s\", MODE=\"%04o\"", spec->group, KB_DEVKVM_MODE);
		return plan_later_rules(ctx, plan, err);
	}
	return 0;
}

/*
 * Owner and mode of the character device at @path itself, never of what a
 * link swapped in its place names (a root kvmbox did not make can race it):
 * opened O_PATH|O_NOFOLLOW, checked, changed through the descriptor.
 */
static int set_node_owner_mode(const char *path, gid_t gid, bool owner, bool mode, struct kb_error *err)
{
	autoclose_fd fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, path, "opening");
	struct stat st;
	if (fstat(fd, &st) < 0)
		return kb_fail(err, errno, path, "examining");
	if (!S_ISCHR(st.st_mode))
		return kb_fail(err, EINVAL, path, "refusing to change (not a character device any more):");
	if (owner && fchownat(fd, "", 0, gid, AT_EMPTY_PATH) < 0)
		return kb_fail(err, errno, path, "changing the owner of");
	/* chmod has no AT_EMPTY_PATH here: the descriptor's /proc link names the node itself. */
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", (int)fd);
	if (mode && chmod(self, KB_DEVKVM_MODE) < 0)
		return kb_fail(err, errno, path, "changing the mode of");
	return 0;
}

/* The node, made with its final owner and mode before it becomes visible as /dev/kvm (renamed over what was there). */
static int make_node(const struct kb_ctx *ctx, const char *path, gid_t gid, struct kb_error *err)
{
	dev_t want;
	if (kvm_devnum(ctx, &want, err) < 0)
		return -1;
	char tmp[PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s.kvmbox-new", path);
	unlink(tmp);
	if (mknod(tmp, S_IFCHR | KB_DEVKVM_MODE, want) < 0)
		return kb_fail(err, errno, tmp, "creating device node");
	if (set_node_owner_mode(tmp, gid, true, true, err) < 0) {
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return kb_fail(err, e, path, "creating device node");
	}
	return 0;
}

/* Read back: the kernel or a racing udev may have had the last word. */
static int verify(const struct kb_ctx *ctx, const struct kb_devkvm_spec *spec, const char *path, gid_t gid,
		  struct kb_error *err)
{
	struct stat st;
	dev_t want;
	if (lstat(path, &st) < 0)
		return kb_fail(err, errno, path, "reading back");
	if (kvm_devnum(ctx, &want, err) < 0)
		return -1;
	if (!S_ISCHR(st.st_mode) || st.st_rdev != want || st.st_uid != 0 || st.st_gid != gid ||
	    (st.st_mode & ALLPERMS) != KB_DEVKVM_MODE)
		return kb_fail(err, EIO, path, "reading back: not root:%s %04o char %u:%u after the change:", spec->group,
			       KB_DEVKVM_MODE, major(want), minor(want));
	return 0;
}

int kb_devkvm_apply(const struct kb_ctx *ctx, const struct kb_devkvm_spec *spec, struct kb_plan *plan,
		    struct kb_error *err)
{
	struct kb_path node;
	gid_t gid;
	if (locate(ctx, spec, &node, &gid, err) < 0)
		return -1;
	bool touched_node = false;
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		int rc = 0;
		switch (c->action) {
		case DEVKVM_NODE: rc = make_node(ctx, node.s, gid, err); break;
		case DEVKVM_OWNER: rc = set_node_owner_mode(node.s, gid, true, false, err); break;
		case DEVKVM_MODE: rc = set_node_owner_mode(node.s, gid, false, true, err); break;
		case DEVKVM_RULE: rc = kb_apply_file(ctx, c, err); break;
		default: continue;
		}
		if (rc < 0) {
			c->status = KB_FAILED;
			return -1;
		}
		c->status = KB_CHANGED;
		touched_node |= c->action != DEVKVM_RULE;
		/* The node was planned before the module was loaded: say what it became. */
		if (c->action == DEVKVM_NODE) {
			struct stat st;
			char now[64];
			if (lstat(node.s, &st) == 0) {
				describe_node(&st, now, sizeof(now));
				kb_change_set_after(c, now, NULL);
				free(c->note);
				c->note = NULL;
			}
		}
	}
	return touched_node ? verify(ctx, spec, node.s, gid, err) : 0;
}
