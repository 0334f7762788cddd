/*
 * LVM2 activation for the rescue image (see kvmbox/host/lvm.h). The on-disk
 * layout is LVM2's (lib/format_text/layout.h, lib/label/label.h): a label
 * "LABELONE" in one of the first four sectors, its PV header (the PV's UUID
 * and its metadata areas), each area's header pointing at the committed text
 * metadata, which may wrap around the end of the area.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <endian.h>
#include <linux/dm-ioctl.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/lvm.h"

/* The metadata text as a tree: sections hold keys; a value is a string, a number or an array. */
struct node {
	char key[128];
	int parent;
	bool section;
	char *value; /* the array's elements separated by '\n' */
};

struct parser {
	const char *p, *end;
	struct node *nodes;
	size_t count, cap;
	struct kb_error *err;
};

static void skip_space(struct parser *ps)
{
	while (ps->p < ps->end) {
		if (isspace((unsigned char)*ps->p)) {
			ps->p++;
		} else if (*ps->p == '#') {
			while (ps->p < ps->end && *ps->p != '\n')
				ps->p++;
		} else {
			break;
		}
	}
}

/* A word (a name or a number) or a quoted string, appended to @out (size @size). */
static int scalar(struct parser *ps, char *out, size_t size)
{
	size_t n = 0;
	skip_space(ps);
	if (ps->p < ps->end && *ps->p == '"') {
		for (ps->p++; ps->p < ps->end && *ps->p != '"'; ps->p++) {
			if (*ps->p == '\\' && ps->p + 1 < ps->end)
				ps->p++;
			if (n + 1 < size)
				out[n++] = *ps->p;
		}
		if (ps->p >= ps->end)
			return kb_fail(ps->err, EINVAL, NULL, "LVM metadata: a string runs to the end");
		ps->p++;
	} else {
		while (ps->p < ps->end && (isalnum((unsigned char)*ps->p) || (*ps->p && strchr("_.+-", *ps->p)))) {
			if (n + 1 < size)
				out[n++] = *ps->p;
			ps->p++;
		}
		if (!n)
			return kb_fail(ps->err, EINVAL, NULL, "LVM metadata: a value expected near \"%.*s\"",
				       (int)(ps->end - ps->p < 20 ? ps->end - ps->p : 20), ps->p);
	}
	out[n] = '\0';
	return 0;
}

static int add_node(struct parser *ps, const char *key, int parent, bool section)
{
	if (ps->count == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 64;
		struct node *nodes = realloc(ps->nodes, cap * sizeof(*nodes));
		if (!nodes)
			return kb_fail(ps->err, ENOMEM, NULL, "LVM metadata");
		ps->nodes = nodes;
		ps->cap = cap;
	}
	struct node *n = &ps->nodes[ps->count];
	snprintf(n->key, sizeof(n->key), "%s", key);
	n->parent = parent;
	n->section = section;
	n->value = NULL;
	return (int)ps->count++;
}

static int items(struct parser *ps, int parent, int depth);

static int item(struct parser *ps, int parent, int depth)
{
	char key[128];
	if (scalar(ps, key, sizeof(key)) < 0)
		return -1;
	skip_space(ps);
	if (ps->p < ps->end && *ps->p == '{') {
		ps->p++;
		int self = add_node(ps, key, parent, true);
		if (self < 0 || items(ps, self, depth + 1) < 0)
			return -1;
		skip_space(ps);
		if (ps->p >= ps->end || *ps->p != '}')
			return kb_fail(ps->err, EINVAL, NULL, "LVM metadata: section %s is not closed", key);
		ps->p++;
		return 0;
	}
	if (ps->p >= ps->end || *ps->p != '=')
		return kb_fail(ps->err, EINVAL, NULL, "LVM metadata: '=' or '{' expected after %s", key);
	ps->p++;
	int self = add_node(ps, key, parent, false);
	if (self < 0)
		return -1;
	char element[256];
	size_t used = 0, cap = 0;
	char *value = NULL;
	skip_space(ps);
	bool array = ps->p < ps->end && *ps->p == '[';
	if (array)
		ps->p++;
	for (;;) {
		skip_space(ps);
		if (array && ps->p < ps->end && *ps->p == ']') {
			ps->p++;
			break;
		}
		if (scalar(ps, element, sizeof(element)) < 0) {
			free(value);
			return -1;
		}
		size_t len = strlen(element);
		if (used + len + 2 > cap) {
			cap = (used + len + 2) * 2;
			char *grown = realloc(value, cap);
			if (!grown) {
				free(value);
				return kb_fail(ps->err, ENOMEM, NULL, "LVM metadata");
			}
			value = grown;
		}
		used += (size_t)sprintf(value + used, "%s%s", used ? "\n" : "", element);
		if (!array)
			break;
		skip_space(ps);
		if (ps->p < ps->end && *ps->p == ',')
			ps->p++;
		else if (ps->p >= ps->end || *ps->p != ']') {
			free(value);
			return kb_fail(ps->err, EINVAL, NULL, "LVM metadata: ',' or ']' expected in %s", key);
		}
	}
	ps->nodes[self].value = value ? value : strdup("");
	return 0;
}

static int items(struct parser *ps, int parent, int depth)
{
	if (depth > 8)
		return kb_fail(ps->err, EINVAL, NULL, "LVM metadata: sections nested too deep");
	for (;;) {
		skip_space(ps);
		if (ps->p >= ps->end || *ps->p == '}')
			return 0;
		if (item(ps, parent, depth) < 0)
			return -1;
	}
}

static void free_nodes(struct parser *ps)
{
	for (size_t i = 0; i < ps->count; i++)
		free(ps->nodes[i].value);
	free(ps->nodes);
}

static int child(const struct parser *ps, int parent, const char *key, bool section)
{
	for (size_t i = 0; i < ps->count; i++)
		if (ps->nodes[i].parent == parent && ps->nodes[i].section == section && !strcmp(ps->nodes[i].key, key))
			return (int)i;
	return -1;
}

static const char *value_of(const struct parser *ps, int parent, const char *key)
{
	int i = child(ps, parent, key, false);
	return i < 0 ? NULL : ps->nodes[i].value;
}

static bool number_of(const struct parser *ps, int parent, const char *key, uint64_t *out)
{
	const char *v = value_of(ps, parent, key);
	char *end;
	if (!v || !isdigit((unsigned char)*v))
		return false;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return !errno && !*end;
}

/* An LVM UUID without its dashes (the label's form). */
static void plain_uuid(const char *in, char *out, size_t size)
{
	size_t n = 0;
	for (; in && *in && n + 1 < size; in++)
		if (*in != '-')
			out[n++] = *in;
	out[n] = '\0';
}

/* device-mapper's name for VG/LV: each '-' doubled, joined by one '-'. */
static void dm_name(const char *vg, const char *lv, char *out, size_t size)
{
	size_t n = 0;
	for (const char *parts[] = { vg, "", lv }, **part = parts; part < parts + 3; part++) {
		if (part == parts + 1) {
			if (n + 1 < size)
				out[n++] = '-';
			continue;
		}
		for (const char *c = *part; *c; c++) {
			if (*c == '-' && n + 1 < size)
				out[n++] = '-';
			if (n + 1 < size)
				out[n++] = *c;
		}
	}
	out[n] = '\0';
}

/* The PV named @pv_key in the VG (pv0 ...): its device and its first extent's sector. */
static bool pv_place(const struct parser *ps, int pvs_node, const char *pv_key, const struct kb_lvm_pv *pvs,
		     size_t npvs, const char **device, uint64_t *pe_start)
{
	int pv = child(ps, pvs_node, pv_key, true);
	char uuid[64];
	if (pv < 0 || !number_of(ps, pv, "pe_start", pe_start))
		return false;
	plain_uuid(value_of(ps, pv, "id"), uuid, sizeof(uuid));
	for (size_t i = 0; i < npvs; i++)
		if (!strcmp(pvs[i].uuid, uuid)) {
			*device = pvs[i].device;
			return true;
		}
	return false;
}

/* One segment's line of the table; false when it is not linear or striped or a PV is missing. */
static bool segment_line(const struct parser *ps, int seg, int pvs_node, uint64_t extent, const struct kb_lvm_pv *pvs,
			 size_t npvs, struct kb_lvm_lv *lv)
{
	uint64_t start, count, stripes = 1, stripe_size = 0;
	const char *type = value_of(ps, seg, "type"), *list = value_of(ps, seg, "stripes");
	if (!type || strcmp(type, "striped") || !list || !number_of(ps, seg, "start_extent", &start) ||
	    !number_of(ps, seg, "extent_count", &count))
		return false;
	number_of(ps, seg, "stripe_count", &stripes);
	if (!stripes || (stripes > 1 && !number_of(ps, seg, "stripe_size", &stripe_size)))
		return false;
	size_t used = strlen(lv->table);
	int n = stripes > 1 ? snprintf(lv->table + used, sizeof(lv->table) - used, "%" PRIu64 " %" PRIu64 " striped %" PRIu64 " %" PRIu64,
				       start * extent, count * extent, stripes, stripe_size)
			    : snprintf(lv->table + used, sizeof(lv->table) - used, "%" PRIu64 " %" PRIu64 " linear",
				       start * extent, count * extent);
	used += (size_t)n;
	/* stripes = ["pv0", 0, "pv1", 0]: each PV and the extent the segment starts at on it. */
	char copy[4096]; /* on the stack: the list is cut up in place */
	if (strlen(list) >= sizeof(copy))
		return false;
	strcpy(copy, list);
	uint64_t found = 0;
	for (char *save = NULL, *pv_key = strtok_r(copy, "\n", &save); pv_key; pv_key = strtok_r(NULL, "\n", &save)) {
		char *first = strtok_r(NULL, "\n", &save), *end;
		const char *device;
		uint64_t pe_start;
		if (!first || !pv_place(ps, pvs_node, pv_key, pvs, npvs, &device, &pe_start))
			return false;
		uint64_t pe = strtoull(first, &end, 10);
		if (*end || used >= sizeof(lv->table))
			return false;
		used += (size_t)snprintf(lv->table + used, sizeof(lv->table) - used, " %s %" PRIu64, device,
					 pe_start + pe * extent);
		found++;
	}
	if (found != stripes || used + 2 >= sizeof(lv->table))
		return false;
	strcat(lv->table, "\n");
	lv->targets++;
	return true;
}

/*
 * An LV a snapshot is taken of, or the snapshot's store: mapped linear, a
 * write to the origin would not be copied to the snapshot first. Left to lvm.
 */
static bool in_a_snapshot(const struct parser *ps, int lvs_node, const char *lv)
{
	for (size_t i = 0; i < ps->count; i++) {
		if (!ps->nodes[i].section || ps->nodes[i].parent < 0 || ps->nodes[ps->nodes[i].parent].parent != lvs_node)
			continue;
		const char *type = value_of(ps, (int)i, "type"), *origin = value_of(ps, (int)i, "origin"),
			   *store = value_of(ps, (int)i, "cow_store");
		if (type && !strcmp(type, "snapshot") && ((origin && !strcmp(origin, lv)) || (store && !strcmp(store, lv))))
			return true;
	}
	return false;
}

int kb_lvm_tables(const char *text, size_t len, const struct kb_lvm_pv *pvs, size_t npvs,
		  struct kb_lvm_lv *lvs, size_t max, struct kb_error *err)
{
	struct parser ps = { .p = text, .end = text + len, .err = err };
	int rc = items(&ps, -1, 0);
	if (rc == 0 && ps.p < ps.end)
		rc = kb_fail(err, EINVAL, NULL, "LVM metadata: an unmatched '}'");
	int vg = -1, pvs_node = -1, lvs_node = -1;
	for (size_t i = 0; rc == 0 && i < ps.count && vg < 0; i++)
		if (ps.nodes[i].parent == -1 && ps.nodes[i].section && child(&ps, (int)i, "physical_volumes", true) >= 0)
			vg = (int)i;
	uint64_t extent = 0;
	if (rc == 0 && (vg < 0 || !number_of(&ps, vg, "extent_size", &extent) || !extent))
		rc = kb_fail(err, EINVAL, NULL, "LVM metadata: no volume group with an extent_size");
	char vg_id[33]; /* an LVM UUID without its dashes: 32 characters */
	size_t count = 0;
	if (rc == 0) {
		pvs_node = child(&ps, vg, "physical_volumes", true);
		lvs_node = child(&ps, vg, "logical_volumes", true);
		plain_uuid(value_of(&ps, vg, "id"), vg_id, sizeof(vg_id));
	}
	for (size_t i = 0; rc == 0 && lvs_node >= 0 && i < ps.count && count < max; i++) {
		if (ps.nodes[i].parent != lvs_node || !ps.nodes[i].section)
			continue;
		const char *status = value_of(&ps, (int)i, "status");
		if (!status || !strstr(status, "VISIBLE") || /* thin pools' and mirrors' hidden parts */
		    in_a_snapshot(&ps, lvs_node, ps.nodes[i].key))
			continue;
		struct kb_lvm_lv *lv = &lvs[count];
		memset(lv, 0, sizeof(*lv));
		char lv_id[33];
		plain_uuid(value_of(&ps, (int)i, "id"), lv_id, sizeof(lv_id));
		dm_name(ps.nodes[vg].key, ps.nodes[i].key, lv->name, sizeof(lv->name));
		snprintf(lv->uuid, sizeof(lv->uuid), "LVM-%s%s", vg_id, lv_id);
		bool whole = true;
		for (size_t s = 0; whole && s < ps.count; s++)
			if (ps.nodes[s].parent == (int)i && ps.nodes[s].section)
				whole = segment_line(&ps, (int)s, pvs_node, extent, pvs, npvs, lv);
		if (whole && lv->targets)
			count++;
	}
	free_nodes(&ps);
	return rc < 0 ? -1 : (int)count;
}

/* The PV label in the first four sectors: the PV's UUID and its first metadata area's offset. */
static bool read_label(int fd, char uuid[33], uint64_t *mda)
{
	unsigned char buf[4 * 512];
	if (pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		return false;
	for (int sector = 0; sector < 4; sector++) {
		unsigned char *l = buf + sector * 512;
		if (memcmp(l, "LABELONE", 8) || memcmp(l + 24, "LVM2 001", 8))
			continue;
		uint32_t offset;
		memcpy(&offset, l + 20, 4);
		offset = le32toh(offset);
		if (offset < 32 || offset + 32 + 8 > 512)
			return false;
		unsigned char *h = l + offset;
		memcpy(uuid, h, 32);
		uuid[32] = '\0';
		/* The data areas, then the metadata areas: (offset, size) pairs, each list ended by zeros. */
		unsigned char *locn = h + 40;
		for (int list = 0; list < 2; list++) {
			for (; locn + 16 <= l + 512; locn += 16) {
				uint64_t off, size;
				memcpy(&off, locn, 8);
				memcpy(&size, locn + 8, 8);
				if (!off && !size)
					break;
				if (list == 1) {
					*mda = le64toh(off);
					return true;
				}
			}
			locn += 16;
		}
		return false;
	}
	return false;
}

/* The committed metadata text of the area at @mda (512 bytes of header, then a ring). */
static char *read_metadata(int fd, uint64_t mda, size_t *len)
{
	unsigned char h[512];
	if (pread(fd, h, sizeof(h), (off_t)mda) != (ssize_t)sizeof(h) || memcmp(h + 4, " LVM2 x[5A%r0N*>", 16))
		return NULL;
	uint64_t size, offset, text_size;
	uint32_t flags;
	memcpy(&size, h + 32, 8);
	memcpy(&offset, h + 40, 8); /* raw_locn[0]: the committed text */
	memcpy(&text_size, h + 48, 8);
	memcpy(&flags, h + 60, 4);
	size = le64toh(size), offset = le64toh(offset), text_size = le64toh(text_size);
	if ((le32toh(flags) & 1) /* RAW_LOCN_IGNORED: `pvchange --metadataignore` */ || !text_size || text_size > (8 << 20) || offset < 512 || offset >= size || size > (1ULL << 32))
		return NULL;
	char *text = malloc(text_size + 1);
	if (!text)
		return NULL;
	uint64_t first = text_size <= size - offset ? text_size : size - offset;
	if (pread(fd, text, first, (off_t)(mda + offset)) != (ssize_t)first ||
	    (first < text_size && pread(fd, text + first, text_size - first, (off_t)(mda + 512)) != (ssize_t)(text_size - first))) {
		free(text);
		return NULL;
	}
	text[text_size] = '\0';
	*len = strnlen(text, text_size);
	return text;
}

/* A bare dm_ioctl naming the device @name. */
static void dm_header(struct dm_ioctl *io, const char *name)
{
	memset(io, 0, sizeof(*io));
	io->version[0] = DM_VERSION_MAJOR;
	io->data_size = io->data_start = sizeof(*io);
	snprintf(io->name, sizeof(io->name), "%s", name);
}

/* DM_DEV_CREATE, DM_TABLE_LOAD and a resume for @lv; EBUSY from the create: it is there already. */
static int dm_create(int control, const struct kb_lvm_lv *lv, dev_t *dev, struct kb_error *err)
{
	size_t size = sizeof(struct dm_ioctl) + lv->targets * (sizeof(struct dm_target_spec) + 8) + strlen(lv->table) + 64;
	autofree char *buf = calloc(1, size);
	if (!buf)
		return kb_fail(err, ENOMEM, NULL, "%s", lv->name);
	struct dm_ioctl *io = (struct dm_ioctl *)buf;
	dm_header(io, lv->name);
	snprintf(io->uuid, sizeof(io->uuid), "%s", lv->uuid);
	if (ioctl(control, DM_DEV_CREATE, io) < 0)
		return errno == EBUSY ? 0 : kb_fail(err, errno, NULL, "creating %s", lv->name);
	*dev = (dev_t)io->dev;
	/* The table: one dm_target_spec and its parameters per line, each 8-byte aligned. */
	memset(buf, 0, size);
	dm_header(io, lv->name);
	size_t at = sizeof(*io);
	char table[sizeof(lv->table)]; /* cut up in place */
	memcpy(table, lv->table, sizeof(table));
	for (char *save = NULL, *line = strtok_r(table, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct dm_target_spec *spec = (struct dm_target_spec *)(buf + at);
		unsigned long long start, length;
		int used = 0;
		if (sscanf(line, "%llu %llu %15s %n", &start, &length, spec->target_type, &used) != 3 || !used)
			return kb_fail(err, EINVAL, NULL, "%s: a table line \"%s\"", lv->name, line);
		spec->sector_start = start;
		spec->length = length;
		char *params = (char *)(spec + 1);
		strcpy(params, line + used);
		size_t next = (sizeof(*spec) + strlen(params) + 1 + 7) & ~(size_t)7;
		spec->next = (uint32_t)next;
		at += next;
		io->target_count++;
	}
	io->data_size = (uint32_t)at;
	const char *step = "loading the table of";
	if (ioctl(control, DM_TABLE_LOAD, io) == 0) {
		step = "resuming";
		dm_header(io, lv->name);
		if (ioctl(control, DM_DEV_SUSPEND, io) == 0) /* without DM_SUSPEND_FLAG: resume, the table goes live */
			return 1;
	}
	/* Nothing half-made: a device without its table would be EBUSY to the next try. */
	int saved = errno;
	dm_header(io, lv->name);
	ioctl(control, DM_DEV_REMOVE, io);
	return kb_fail(err, saved, NULL, "%s %s", step, lv->name);
}

/* A device another one is built on (an md array's member: holders/md127) is read through that one. */
static bool held(const char *name)
{
	char path[300];
	snprintf(path, sizeof(path), "/sys/class/block/%s/holders", name);
	autoclose_dir dir = opendir(path);
	for (struct dirent *e; dir && (e = readdir(dir));)
		if (e->d_name[0] != '.')
			return true;
	return false;
}

int kb_lvm_activate(struct kb_error *err)
{
	struct kb_lvm_pv pvs[KB_LVM_MAX_PVS];
	size_t npvs = 0;
	char *texts[KB_LVM_MAX_PVS] = { 0 };
	size_t lens[KB_LVM_MAX_PVS] = { 0 };
	autoclose_dir dir = opendir("/sys/class/block");
	if (!dir)
		return kb_fail(err, errno, "/sys/class/block", "listing");
	for (struct dirent *e; (e = readdir(dir)) && npvs < KB_LVM_MAX_PVS;) {
		if (e->d_name[0] == '.' || !strncmp(e->d_name, "dm-", 3) || !strncmp(e->d_name, "loop", 4))
			continue;
		char path[300];
		autofree char *num = NULL;
		size_t len;
		if (held(e->d_name))
			continue;
		snprintf(path, sizeof(path), "/sys/class/block/%s/dev", e->d_name);
		if (kb_read_path(path, 64, &num, &len, NULL) < 0)
			continue;
		num[strcspn(num, "\n")] = '\0';
		snprintf(path, sizeof(path), "/dev/%s", e->d_name);
		autoclose_fd fd = open(path, O_RDONLY | O_CLOEXEC);
		uint64_t mda;
		if (fd < 0 || !read_label(fd, pvs[npvs].uuid, &mda))
			continue;
		snprintf(pvs[npvs].device, sizeof(pvs[npvs].device), "%s", num);
		texts[npvs] = read_metadata(fd, mda, &lens[npvs]);
		npvs++;
	}
	int created = 0, rc = 0;
	autoclose_fd control = npvs ? open("/dev/mapper/control", O_RDWR | O_CLOEXEC) : -1;
	if (npvs && control < 0)
		rc = kb_fail(err, errno, "/dev/mapper/control", "opening (is dm_mod loaded?)");
	/* Each PV carries its VG's whole metadata: every VG's LVs from each PV, created once. */
	for (size_t i = 0; rc == 0 && i < npvs; i++) {
		struct kb_lvm_lv *lvs = texts[i] ? calloc(KB_LVM_MAX_LVS, sizeof(*lvs)) : NULL;
		int n = lvs ? kb_lvm_tables(texts[i], lens[i], pvs, npvs, lvs, KB_LVM_MAX_LVS, err) : 0;
		for (int l = 0; l < n && rc == 0; l++) {
			dev_t dev = 0;
			int made = dm_create(control, &lvs[l], &dev, err);
			if (made < 0) {
				rc = -1;
			} else if (made > 0) {
				char node[300];
				mkdir("/dev/mapper", 0755);
				snprintf(node, sizeof(node), "/dev/mapper/%s", lvs[l].name);
				mknod(node, S_IFBLK | 0600, dev); /* what lvm does without udev */
				created++;
			}
		}
		if (n < 0)
			rc = -1;
		free(lvs);
	}
	for (size_t i = 0; i < npvs; i++)
		free(texts[i]);
	return rc < 0 ? -1 : created;
}
