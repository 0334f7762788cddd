/*
 * A domain from words; see kvmbox/virt/domnew.h. The syntax follows virt-install's
 * (--disk size=20G,bus=virtio, --network bridge=br0,model=e1000,
 * --cpu Haswell,-rtm,+rdrand) so the operators' notes translate word for word.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/virt/domnew.h"
#include "kvmbox/host/pcidev.h"

const char kb_domnew_words[] = "memory vcpus cpu machine virt-type disk cdrom boot network graphics hostdev "
			       "hugepages nested placement allow-host-file cloud-init import osinfo video sound serial console channel rng "
			       "memballoon controller description noautoconsole filesystem location extra-args";

/* Whether @word is one of the space-separated @words. */
static bool in_words(const char *words, const char *word)
{
	size_t n = strlen(word);
	if (strchr(word, ' '))
		return false;
	for (const char *w = words; n && (w = strstr(w, word)); w += n)
		if ((w == words || w[-1] == ' ') && (w[n] == ' ' || w[n] == '\0'))
			return true;
	return false;
}

bool kb_domnew_is_word(const char *key)
{
	return in_words(kb_domnew_words, key);
}

bool kb_domnew_word_repeats(const char *word)
{
	return in_words("disk network hostdev channel controller filesystem", word);
}

void kb_domnew_init(struct kb_domnew *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->vcpus = 1;
	snprintf(d->cpu_mode, sizeof(d->cpu_mode), "host-model");
	snprintf(d->machine, sizeof(d->machine), "q35");
	snprintf(d->arch, sizeof(d->arch), "x86_64");
	d->graphics = true;
	snprintf(d->vnc_listen, sizeof(d->vnc_listen), "127.0.0.1");
	snprintf(d->rng, sizeof(d->rng), "/dev/urandom");
	snprintf(d->memballoon, sizeof(d->memballoon), "virtio");
}

/* ---- words ---------------------------------------------------------------- */

static int bad(struct kb_error *err, const char *key, const char *value, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int bad(struct kb_error *err, const char *key, const char *value, const char *fmt, ...)
{
	char why[KB_ERROR_WHAT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return kb_fail(err, 0, NULL, "%s '%s': %s", key, value ? value : "", why);
}

/* Copy @src into @dst (of @size) when it fits and holds only [A-Za-z0-9._:-]; false otherwise. */
static bool copy_name(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n == 0 || n >= size)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)src[i]) && !strchr("._:-", src[i]))
			return false;
	memcpy(dst, src, n + 1);
	return true;
}

static bool one_of(const char *value, const char *const *choices)
{
	for (; *choices; choices++)
		if (!strcmp(value, *choices))
			return true;
	return false;
}

/*
 * A number without a unit is virt-install's: MiB for --memory (an integer),
 * GiB for --disk size= (a decimal: size=0.5). @bare_shift is that unit (20 or
 * 30); *@bare says whether the value had no unit (the plan says how it was read).
 */
static int bare_size(const char *text, unsigned bare_shift, unsigned long long *bytes)
{
	size_t whole = strspn(text, "0123456789");
	size_t frac = text[whole] == '.' && bare_shift == 30 ? strspn(text + whole + 1, "0123456789") : 0;
	if (!whole || text[whole + (frac ? frac + 1 : 0)] || whole > 12 || frac > 6)
		return -1;
	unsigned long long n = strtoull(text, NULL, 10), part = frac ? strtoull(text + whole + 1, NULL, 10) : 0;
	unsigned long long scale = 1;
	for (size_t i = 0; i < frac; i++)
		scale *= 10;
	*bytes = (n << bare_shift) + ((part << bare_shift) / scale & ~((1ull << 20) - 1)); /* whole MiB */
	return 0;
}

static int parse_size(const char *key, const char *whole, const char *text, unsigned long long min, unsigned bare_shift,
		      bool *bare, unsigned long long *bytes, struct kb_error *err)
{
	*bare = bare_size(text, bare_shift, bytes) == 0;
	if (!*bare && kb_size_parse(text, bytes) < 0)
		return bad(err, key, whole, "'%s' is not a size (4G, 512M, 100G)", text);
	if (*bytes < min)
		return bad(err, key, whole, "'%s' is too small", text);
	return 0;
}

/* "a=1,b=2,bare" one item at a time: *@key and *@value point into @buf (a copy the caller owns). */
static bool next_item(char **cursor, char **key, char **value)
{
	if (!*cursor)
		return false;
	char *item = *cursor, *comma = strchr(item, ',');
	*cursor = comma ? comma + 1 : NULL;
	if (comma)
		*comma = '\0';
	char *eq = strchr(item, '=');
	*key = item;
	*value = eq ? eq + 1 : NULL;
	if (eq)
		*eq = '\0';
	return true;
}

static int word_cpu(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	char *cursor = buf, *item, *unused;
	next_item(&cursor, &item, &unused);
	if (unused)
		return bad(err, "cpu", value, "starts with host-passthrough, host-model or a CPU model name");
	if (!strcmp(item, "host-passthrough") || !strcmp(item, "host-model")) {
		snprintf(d->cpu_mode, sizeof(d->cpu_mode), "%s", item);
		d->cpu_model[0] = '\0';
	} else if (!strcmp(item, "host")) {
		snprintf(d->cpu_mode, sizeof(d->cpu_mode), "host-model"); /* virt-install's alias */
	} else if (copy_name(d->cpu_model, sizeof(d->cpu_model), item)) {
		snprintf(d->cpu_mode, sizeof(d->cpu_mode), "custom");
	} else {
		return bad(err, "cpu", value, "'%s' is not a CPU model name", item);
	}
	d->feature_count = 0;
	while (next_item(&cursor, &item, &unused)) {
		if (unused || (item[0] != '+' && item[0] != '-'))
			return bad(err, "cpu", value, "'%s': features are +NAME (required) or -NAME (disabled)", item);
		if (d->feature_count == KB_DOMNEW_FEATURES_MAX)
			return bad(err, "cpu", value, "more than %d features", KB_DOMNEW_FEATURES_MAX);
		struct kb_domnew_feature *f = &d->feature[d->feature_count];
		f->enable = item[0] == '+';
		if (!copy_name(f->name, sizeof(f->name), item + 1))
			return bad(err, "cpu", value, "'%s' is not a feature name", item + 1);
		d->feature_count++;
	}
	return 0;
}

/*
 * @value as an absolute path without "//" or "." components into @dst (PATH_MAX):
 * a ".." is refused, not resolved (which directory it climbs out of is the
 * question it hides). False when it is not such a path.
 */
static bool clean_path(char *dst, const char *value)
{
	char out[PATH_MAX] = "";
	size_t used = 0;
	if (value[0] != '/' || strlen(value) >= PATH_MAX)
		return false;
	for (const char *p = value; *p;) {
		size_t n = strcspn(p, "/");
		if ((n == 2 && !strncmp(p, "..", 2)))
			return false;
		if (n && !(n == 1 && *p == '.')) {
			out[used++] = '/';
			memcpy(out + used, p, n);
			used += n;
			out[used] = '\0';
		}
		p += n;
		p += strspn(p, "/");
	}
	snprintf(dst, PATH_MAX, "%s", used ? out : "/");
	return true;
}

static int word_disk(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	static const char *const formats[] = { "qcow2", "raw", NULL };
	static const char *const buses[] = { "virtio", "sata", "scsi", "ide", "usb", NULL };
	static const char *const devices[] = { "disk", "cdrom", "lun", NULL };
	if (d->disk_count == KB_DOMNEW_DISKS_MAX)
		return bad(err, "disk", value, "more than %d disks", KB_DOMNEW_DISKS_MAX);
	struct kb_domnew_disk *k = &d->disk[d->disk_count];
	memset(k, 0, sizeof(*k));
	snprintf(k->bus, sizeof(k->bus), "virtio");
	char *cursor = buf, *key, *v;
	bool sized = false, bus_given = false;
	for (bool first = true; next_item(&cursor, &key, &v); first = false) {
		const char *name = key; /* the word's key, or the one its lone value implies */
		if (!v && first && name[0] == '/') {
			v = key; /* virt-install's --disk /path */
			name = "path";
		}
		if (!strcmp(name, "readonly") || !strcmp(name, "shareable")) {
			if (v && !one_of(v, (const char *const[]){ "on", "off", "yes", "no", NULL }))
				return bad(err, "disk", value, "%s is on or off, not '%s'", name, v);
			*(!strcmp(name, "readonly") ? &k->readonly : &k->shareable) = !v || !strcmp(v, "on") || !strcmp(v, "yes");
			continue;
		}
		if (!v)
			return bad(err, "disk", value, "'%s' needs a value (size=, path=, backing=, pool=, format=, bus=)", name);
		if (!strcmp(name, "size")) {
			if (parse_size("disk", value, v, 1 << 20, 30, &k->size_bare, &k->size_bytes, err) < 0)
				return -1;
			sized = true;
		} else if (!strcmp(name, "path") || !strcmp(name, "backing")) {
			if (!clean_path(!strcmp(name, "path") ? k->path : k->backing, v))
				return bad(err, "disk", value, "%s= takes an absolute path without '..'", name);
		} else if (!strcmp(name, "pool")) {
			if (!copy_name(k->pool, sizeof(k->pool), v))
				return bad(err, "disk", value, "'%s' is not a pool name", v);
		} else if (!strcmp(name, "format")) {
			if (!one_of(v, formats))
				return bad(err, "disk", value, "format is qcow2 or raw, not '%s'", v);
			snprintf(k->format, sizeof(k->format), "%s", v);
		} else if (!strcmp(name, "cache") || !strcmp(name, "io") || !strcmp(name, "discard") || !strcmp(name, "detect_zeroes")) {
			static const char *const caches[] = { "none", "writeback", "writethrough", "directsync", "unsafe", "default", NULL };
			static const char *const ios[] = { "native", "threads", "io_uring", NULL };
			static const char *const discards[] = { "unmap", "ignore", NULL };
			static const char *const zeroes[] = { "on", "off", "unmap", NULL };
			bool cache = !strcmp(name, "cache"), io = !strcmp(name, "io"), discard = !strcmp(name, "discard");
			const char *const *choices = cache ? caches : io ? ios : discard ? discards : zeroes;
			char *to = cache ? k->cache : io ? k->io : discard ? k->discard : k->detect_zeroes;
			if (!one_of(v, choices))
				return bad(err, "disk", value, "%s is %s, not '%s'", name,
					   cache ? "none, writeback, writethrough, directsync, unsafe or default"
					   : io ? "native, threads or io_uring"
					   : discard ? "unmap or ignore" : "on, off or unmap", v);
			snprintf(to, 16, "%s", v);
		} else if (!strcmp(name, "serial")) {
			if (!copy_name(k->serial, sizeof(k->serial), v) || strchr(v, ':'))
				return bad(err, "disk", value, "serial= is at most 31 letters, digits, '.', '_' or '-', not '%s'", v);
		} else if (!strcmp(name, "bus")) {
			if (!one_of(v, buses))
				return bad(err, "disk", value, "bus is virtio, sata, scsi, ide or usb, not '%s'", v);
			snprintf(k->bus, sizeof(k->bus), "%s", v);
			bus_given = true;
			k->bus_given = true;
		} else if (!strcmp(name, "device")) {
			if (!one_of(v, devices))
				return bad(err, "disk", value, "device is disk, cdrom or lun, not '%s'", v);
			snprintf(k->device, sizeof(k->device), "%s", strcmp(v, "disk") ? v : "");
		} else {
			return bad(err, "disk", value, "unknown option '%s' (size=, path=, backing=, pool=, format=, bus=, device=, cache=, io=, discard=, detect_zeroes=, serial=, readonly, shareable)", name);
		}
	}
	if (k->backing[0]) {
		if (k->path[0])
			return bad(err, "disk", value, "backing= makes a new volume: give pool= and size=, not path=");
		if (!sized)
			return bad(err, "disk", value, "backing= needs size= (the overlay's size, at least the base image's)");
		if (k->format[0] && strcmp(k->format, "qcow2"))
			return bad(err, "disk", value, "an overlay on a backing image is qcow2");
		k->kind = KB_DISK_OVERLAY;
	} else if (sized) {
		k->kind = KB_DISK_NEW; /* with path=: that file, as a volume of the pool holding its directory */
	} else if (k->path[0]) {
		if (k->pool[0])
			return bad(err, "disk", value, "pool= is for new volumes (size=); path= names an existing image");
		k->kind = KB_DISK_PATH;
	} else {
		return bad(err, "disk", value, "needs size= (a new volume), path= (an existing image) or backing=,size=");
	}
	if (k->device[0] && k->kind != KB_DISK_PATH)
		return bad(err, "disk", value, "device=%s takes path= (an existing %s), not a new volume", k->device,
			   !strcmp(k->device, "cdrom") ? "ISO image" : "block device");
	if (!strcmp(k->device, "cdrom")) {
		k->readonly = true;
		if (!k->format[0])
			snprintf(k->format, sizeof(k->format), "raw");
		if (!bus_given)
			k->bus[0] = '\0'; /* SATA on q35, IDE on i440fx: known with the machine (kb_domnew_finish) */
	}
	if (!strcmp(k->device, "lun")) {
		if (!bus_given)
			snprintf(k->bus, sizeof(k->bus), "scsi");
		if (strcmp(k->bus, "scsi") && strcmp(k->bus, "virtio"))
			return bad(err, "disk", value, "device=lun passes SCSI commands: its bus is scsi or virtio, not '%s'", k->bus);
		if (strncmp(k->path, "/dev/", 5))
			return bad(err, "disk", value, "device=lun takes a block device (path=/dev/...), not '%s'", k->path);
		snprintf(k->format, sizeof(k->format), "raw");
	}
	if (k->kind != KB_DISK_PATH && !k->format[0])
		snprintf(k->format, sizeof(k->format), "qcow2");
	if (k->kind != KB_DISK_PATH && !k->pool[0] && !k->path[0])
		snprintf(k->pool, sizeof(k->pool), "default");
	d->disk_count++;
	return 0;
}

static bool mac_ok(const char *mac)
{
	unsigned b[6];
	char tail;
	if (strlen(mac) != 17 || sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
		return false;
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? mac[i] != ':' : !isxdigit((unsigned char)mac[i]))
			return false;
	return !(b[0] & 1); /* a multicast MAC cannot be a NIC's */
}

static int word_network(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	static const char *const models[] = { "virtio", "e1000", "e1000e", "rtl8139", NULL };
	if (!strcmp(value, "none")) {
		d->net_none = true; /* virt-install's --network none: no NIC */
		return 0;
	}
	if (d->net_count == KB_DOMNEW_NETS_MAX)
		return bad(err, "network", value, "more than %d interfaces", KB_DOMNEW_NETS_MAX);
	struct kb_domnew_net *n = &d->net[d->net_count];
	memset(n, 0, sizeof(*n));
	snprintf(n->model, sizeof(n->model), "virtio");
	char *cursor = buf, *key, *v;
	for (bool first = true; next_item(&cursor, &key, &v); first = false) {
		const char *name = key; /* the word's key, or the one its lone value implies */
		if (!v && first) {
			/* --network br0 (a bridge), default (the network 'default'), old virt-install's bridge:br0, network:NAME */
			char *colon = strchr(key, ':');
			if (colon && (!strncmp(key, "bridge:", 7) || !strncmp(key, "network:", 8))) {
				*colon = '\0';
				v = colon + 1;
			} else {
				v = key;
				name = !strcmp(key, "default") ? "network" : "bridge";
			}
		}
		if (!v)
			return bad(err, "network", value, "'%s' needs a value (bridge=, network=, model=, mac=)", name);
		if (!strcmp(name, "bridge") || !strcmp(name, "network")) {
			if (n->bridge[0] || n->network[0])
				return bad(err, "network", value, "one interface is on one bridge= or one network=");
			if (!strcmp(name, "bridge") && (!copy_name(n->bridge, sizeof(n->bridge), v) || strchr(v, ':')))
				return bad(err, "network", value, "'%s' is not an interface name (at most 15 characters)", v);
			if (!strcmp(name, "network") && !copy_name(n->network, sizeof(n->network), v))
				return bad(err, "network", value, "'%s' is not a libvirt network name", v);
		} else if (!strcmp(name, "model")) {
			if (!one_of(v, models))
				return bad(err, "network", value, "model is virtio, e1000, e1000e or rtl8139, not '%s'", v);
			snprintf(n->model, sizeof(n->model), "%s", v);
			n->model_given = true;
		} else if (!strcmp(name, "mac")) {
			if (!mac_ok(v))
				return bad(err, "network", value, "'%s' is not a unicast MAC address (52:54:00:12:34:56)", v);
			for (char *p = strcpy(n->mac, v); *p; p++)
				*p = (char)tolower((unsigned char)*p);
		} else {
			return bad(err, "network", value, "unknown option '%s' (bridge=, network=, model=, mac=)", name);
		}
	}
	if (!n->bridge[0] && !n->network[0])
		return bad(err, "network", value, "needs bridge=NAME or network=NAME (or none)");
	d->net_count++;
	return 0;
}

/* auto[,emulator-threads=share|isolate][,pci-numa-affinity=required|preferred|legacy|socket] or none (Nova's policies). */
static int word_placement(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	static const char *const emulator[] = { "share", "isolate", NULL };
	static const char *const affinity[] = { "required", "preferred", "legacy", "socket", NULL };
	char *cursor = buf, *key, *v;
	next_item(&cursor, &key, &v);
	if (!strcmp(key, "none") && !v && !cursor) {
		d->placement_auto = false;
		return 0;
	}
	if (strcmp(key, "auto") || v)
		return bad(err, "placement", value, "is auto[,emulator-threads=share|isolate][,pci-numa-affinity=POLICY] or none");
	d->placement_auto = true;
	d->emulator_threads = KB_EMULATOR_SHARE;
	d->pci_affinity = KB_PCI_REQUIRED;
	while (next_item(&cursor, &key, &v)) {
		if (!strcmp(key, "emulator-threads") && v && one_of(v, emulator))
			d->emulator_threads = !strcmp(v, "share") ? KB_EMULATOR_SHARE : KB_EMULATOR_ISOLATE;
		else if (!strcmp(key, "pci-numa-affinity") && v && one_of(v, affinity))
			d->pci_affinity = !strcmp(v, "required")  ? KB_PCI_REQUIRED
					  : !strcmp(v, "preferred") ? KB_PCI_PREFERRED
					  : !strcmp(v, "legacy")    ? KB_PCI_LEGACY
								    : KB_PCI_SOCKET;
		else if (!strcmp(key, "emulator-threads") || !strcmp(key, "pci-numa-affinity"))
			return bad(err, "placement", value, "%s= is %s", key,
				   !strcmp(key, "emulator-threads") ? "share or isolate" : "required, preferred, legacy or socket");
		else
			return bad(err, "placement", value, "unknown option '%s' (emulator-threads=, pci-numa-affinity=)", key);
	}
	return 0;
}

static int word_graphics(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	char *cursor = buf, *key, *v;
	next_item(&cursor, &key, &v);
	if (!strcmp(key, "none") && !v && !cursor) {
		d->graphics = false;
		return 0;
	}
	if ((strcmp(key, "vnc") && strcmp(key, "spice")) || v)
		return bad(err, "graphics", value, "is vnc or spice[,listen=ADDR][,password=PW], or none");
	d->graphics = true;
	d->spice = !strcmp(key, "spice");
	while (next_item(&cursor, &key, &v)) {
		unsigned char addr[16];
		if (!v)
			return bad(err, "graphics", value, "'%s' needs a value (listen=, password=)", key);
		if (!strcmp(key, "listen")) {
			if ((inet_pton(AF_INET, v, addr) != 1 && inet_pton(AF_INET6, v, addr) != 1) ||
			    strlen(v) >= sizeof(d->vnc_listen))
				return bad(err, "graphics", value, "listen= takes an IP address, not '%s'", v);
			snprintf(d->vnc_listen, sizeof(d->vnc_listen), "%s", v);
		} else if (!strcmp(key, "password")) {
			/* QEMU's VNC authentication uses the first 8 characters only: more would be a false sense of safety. */
			if (!*v || (!d->spice && strlen(v) > 8) || strlen(v) >= sizeof(d->vnc_password))
				return bad(err, "graphics", value, "a VNC password is 1 to 8 characters (VNC ignores the rest)");
			snprintf(d->vnc_password, sizeof(d->vnc_password), "%s", v);
		} else {
			return bad(err, "graphics", value, "unknown option '%s' (listen=, password=)", key);
		}
	}
	return 0;
}

static int word_flag(const char *key, const char *value, bool *flag, struct kb_error *err)
{
	if (!value || !strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1"))
		*flag = true;
	else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0"))
		*flag = false;
	else
		return bad(err, key, value, "is yes or no");
	return 0;
}

/*
 * --vcpus N[,maxvcpus=M][,sockets=S][,cores=C][,threads=T], virt-install's
 * arithmetic: the topology counts maxvcpus (else N); threads default to 1, a
 * missing sockets to 1 (or what cores leave), missing cores to what is left; N
 * defaults to the topology's count. A topology that does not multiply out is refused.
 */
static int word_vcpus(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	unsigned n = 0, max = 0, topo[3] = { 0 }; /* sockets, cores, threads */
	static const char *const names[] = { "sockets", "cores", "threads" };
	char *cursor = buf, *key, *v;
	for (bool first = true; next_item(&cursor, &key, &v); first = false) {
		unsigned *to = NULL;
		const char *name = key;
		if (!v && first) {
			v = key;
			name = "vcpus";
		}
		if (!strcmp(name, "vcpus"))
			to = &n;
		else if (!strcmp(name, "maxvcpus"))
			to = &max;
		for (size_t i = 0; i < 3 && !to; i++)
			if (!strcmp(name, names[i]))
				to = &topo[i];
		if (!to)
			return bad(err, "vcpus", value, "unknown option '%s' (N, maxvcpus=, sockets=, cores=, threads=)", name);
		char *end;
		unsigned long x = v && isdigit((unsigned char)v[0]) ? strtoul(v, &end, 10) : 0;
		if (!x || *end || x > KB_PLACE_VCPUS_MAX)
			return bad(err, "vcpus", value, "%s is a number from 1 to %u, not '%s'", name, KB_PLACE_VCPUS_MAX, v ? v : "");
		*to = (unsigned)x;
	}
	bool topology = topo[0] || topo[1] || topo[2];
	if (topology) {
		unsigned total = max ? max : n;
		unsigned s = topo[0], c = topo[1], t = topo[2] ? topo[2] : 1;
		if (!total)
			total = (s ? s : 1) * (c ? c : 1) * t;
		if (!s)
			s = c && total / (c * t) ? total / (c * t) : 1;
		if (!c)
			c = total / (s * t) ? total / (s * t) : 1;
		if ((unsigned long long)s * c * t != total)
			return bad(err, "vcpus", value, "sockets=%u * cores=%u * threads=%u is %llu vCPUs, not %u%s", s, c, t,
				   (unsigned long long)s * c * t, total, max ? " (maxvcpus)" : "");
		topo[0] = s, topo[1] = c, topo[2] = t;
		if (!n)
			n = total;
	}
	if (!n)
		n = max;
	if (!n)
		return bad(err, "vcpus", value, "needs a number of vCPUs (vcpus 4, vcpus 4,maxvcpus=8, vcpus sockets=1,cores=4)");
	if (max && n > max)
		return bad(err, "vcpus", value, "%u vCPUs are more than maxvcpus=%u", n, max);
	d->vcpus = n;
	d->max_vcpus = max > n ? max : 0;
	d->sockets = topo[0], d->cores = topo[1], d->threads = topo[2];
	return 0;
}

/* One word's value among @choices into @dst, or a refusal listing them (@what: "is none, ich9 ..."). */
static int word_choice(const char *key, const char *value, const char *const *choices, const char *what, char *dst,
		       size_t size, struct kb_error *err)
{
	if (!one_of(value, choices))
		return bad(err, key, value, "%s", what);
	snprintf(dst, size, "%s", value);
	return 0;
}

/* --serial pty | file,path=FILE | none (virt-install's; the one serial port, the console's). */
static int word_serial(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	char *cursor = buf, *key, *v;
	next_item(&cursor, &key, &v);
	const char *usage = "is pty, file,path=FILE or none";
	if (v || (strcmp(key, "pty") && strcmp(key, "file") && strcmp(key, "none")))
		return bad(err, "serial", value, "%s", usage);
	snprintf(d->serial_type, sizeof(d->serial_type), "%s", key);
	d->serial_path[0] = '\0';
	while (next_item(&cursor, &key, &v)) {
		if (strcmp(d->serial_type, "file") || strcmp(key, "path") || !v)
			return bad(err, "serial", value, "%s", usage);
		if (!clean_path(d->serial_path, v))
			return bad(err, "serial", value, "path= takes an absolute path without '..'");
	}
	if (!strcmp(d->serial_type, "file") && !d->serial_path[0])
		return bad(err, "serial", value, "file needs path=FILE (where QEMU writes what the guest sends)");
	return 0;
}

/* --console pty[,target.type=serial|virtio] | none. */
static int word_console(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	char *cursor = buf, *key, *v;
	next_item(&cursor, &key, &v);
	const char *usage = "is pty[,target.type=serial|virtio] or none";
	if (v || (strcmp(key, "pty") && strcmp(key, "none")))
		return bad(err, "console", value, "%s", usage);
	d->console_target[0] = '\0';
	if (!strcmp(key, "none"))
		snprintf(d->console_target, sizeof(d->console_target), "none");
	while (next_item(&cursor, &key, &v)) {
		if (strcmp(key, "target.type") && strcmp(key, "target_type"))
			return bad(err, "console", value, "%s", usage);
		if (!v || d->console_target[0] || (strcmp(v, "serial") && strcmp(v, "virtio")))
			return bad(err, "console", value, "%s", usage);
		snprintf(d->console_target, sizeof(d->console_target), "%s", strcmp(v, "serial") ? v : "");
	}
	return 0;
}

/*
 * --channel unix[,mode=bind][,target.type=virtio][,name=NAME] | spicevmc | none:
 * the channels given replace virt-install's defaults (the guest agent's, SPICE's).
 */
static int word_channel(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	char *cursor = buf, *key, *v;
	next_item(&cursor, &key, &v);
	const char *usage = "is unix[,name=org.qemu.guest_agent.0], spicevmc or none";
	if (!d->channels_given)
		d->channel_count = 0;
	d->channels_given = true;
	if (!strcmp(key, "none") && !v && !cursor)
		return 0;
	if (v || (strcmp(key, "unix") && strcmp(key, "spicevmc")))
		return bad(err, "channel", value, "%s", usage);
	if (d->channel_count == KB_DOMNEW_CHANNELS_MAX)
		return bad(err, "channel", value, "more than %d channels", KB_DOMNEW_CHANNELS_MAX);
	struct kb_domnew_channel *c = &d->channel[d->channel_count];
	snprintf(c->type, sizeof(c->type), "%s", key);
	snprintf(c->name, sizeof(c->name), "%s", !strcmp(key, "unix") ? "org.qemu.guest_agent.0" : "com.redhat.spice.0");
	while (next_item(&cursor, &key, &v)) {
		if (!v)
			return bad(err, "channel", value, "%s", usage);
		if (!strcmp(key, "name") || !strcmp(key, "target.name") || !strcmp(key, "target_name")) {
			if (!copy_name(c->name, sizeof(c->name), v))
				return bad(err, "channel", value, "'%s' is not a channel name (org.qemu.guest_agent.0)", v);
		} else if ((!strcmp(key, "mode") && !strcmp(v, "bind")) ||
			   ((!strcmp(key, "target.type") || !strcmp(key, "target_type")) && !strcmp(v, "virtio"))) {
			continue; /* what kvmbox writes anyway */
		} else {
			return bad(err, "channel", value, "%s", usage);
		}
	}
	for (size_t i = 0; i < d->channel_count; i++)
		if (!strcmp(d->channel[i].name, c->name))
			return bad(err, "channel", value, "channel %s is given twice", c->name);
	d->channel_count++;
	return 0;
}

/* --controller TYPE[,model=MODEL] (type=TYPE too): one per type, over libvirt's. */
static int word_controller(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	static const char *const types[] = { "usb", "scsi", "sata", "virtio-serial", NULL };
	char *cursor = buf, *key, *v;
	struct kb_domnew_controller c = { "", "" };
	for (bool first = true; next_item(&cursor, &key, &v); first = false) {
		if ((first && !v) || !strcmp(key, "type")) {
			if (!one_of(v ? v : key, types))
				return bad(err, "controller", value, "type is usb, scsi, sata or virtio-serial, not '%s'", v ? v : key);
			snprintf(c.type, sizeof(c.type), "%s", v ? v : key);
		} else if (!strcmp(key, "model") && v) {
			if (!copy_name(c.model, sizeof(c.model), v))
				return bad(err, "controller", value, "'%s' is not a controller model (qemu-xhci, virtio-scsi)", v);
		} else {
			return bad(err, "controller", value, "unknown option '%s' (TYPE, model=)", key);
		}
	}
	if (!c.type[0])
		return bad(err, "controller", value, "needs a type (usb, scsi, sata, virtio-serial)");
	size_t i = 0;
	while (i < d->controller_count && strcmp(d->controller[i].type, c.type))
		i++;
	if (i == KB_DOMNEW_CONTROLLERS_MAX)
		return bad(err, "controller", value, "more than %d controllers", KB_DOMNEW_CONTROLLERS_MAX);
	d->controller[i] = c; /* a later word for the same type replaces the earlier one */
	if (i == d->controller_count)
		d->controller_count++;
	return 0;
}

/* --filesystem SRC,TARGET[,driver.type=virtiofs] (source=, source.dir=, target=, target.dir= too). */
static int word_filesystem(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	if (d->fs_count == KB_DOMNEW_FILESYSTEMS_MAX)
		return bad(err, "filesystem", value, "more than %d filesystems", KB_DOMNEW_FILESYSTEMS_MAX);
	struct kb_domnew_fs *f = &d->fs[d->fs_count];
	memset(f, 0, sizeof(*f));
	char *cursor = buf, *key, *v;
	for (unsigned bare = 0; next_item(&cursor, &key, &v);) {
		const char *name = key;
		if (!v && bare < 2) {
			v = key;
			name = bare++ ? "target" : "source"; /* SRC,TARGET */
		}
		if (!v)
			return bad(err, "filesystem", value, "'%s' needs a value (SRC,TARGET[,driver.type=virtiofs])", name);
		if (!strcmp(name, "source") || !strcmp(name, "source.dir")) {
			if (!clean_path(f->source, v))
				return bad(err, "filesystem", value, "the source is a host directory's absolute path without '..', not '%s'", v);
		} else if (!strcmp(name, "target") || !strcmp(name, "target.dir")) {
			if (!copy_name(f->target, sizeof(f->target), v))
				return bad(err, "filesystem", value, "the target is a mount tag (letters, digits, '.', '_', '-'), not '%s'", v);
		} else if (!strcmp(name, "driver.type")) {
			if (strcmp(v, "virtiofs") && strcmp(v, "path"))
				return bad(err, "filesystem", value, "driver.type is virtiofs or path (9p), not '%s'", v);
			f->virtiofs = !strcmp(v, "virtiofs");
		} else {
			return bad(err, "filesystem", value, "unknown option '%s' (SRC,TARGET, driver.type=)", name);
		}
	}
	if (!f->source[0] || !f->target[0])
		return bad(err, "filesystem", value, "needs a host directory and a target tag (SRC,TARGET)");
	d->fs_count++;
	return 0;
}

/*
 * --boot cdrom,hd and virt-install's firmware words: uefi (or firmware=efi) is
 * libvirt's firmware auto-selection, firmware.featureN.name=secure-boot with
 * firmware.featureN.enabled=yes|no what the selected firmware must (not) have.
 */
static int word_boot(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	static const char *const devices[] = { "hd", "cdrom", "network", NULL };
	static const char *const features[] = { "secure-boot", "enrolled-keys", NULL };
	const char *usage = "is a list of hd, cdrom, network and uefi (boot=cdrom,hd; boot=uefi,"
			    "firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes)";
	unsigned index[KB_DOMNEW_FW_FEATURES_MAX] = { 0 };
	char *cursor = buf, *item, *v;
	d->boot_count = 0;
	d->firmware[0] = '\0';
	d->fw_feature_count = 0;
	while (next_item(&cursor, &item, &v)) {
		unsigned n;
		int used = 0;
		if (!v && one_of(item, devices)) {
			if (d->boot_count == 4)
				return bad(err, "boot", value, "names more than 4 boot devices");
			snprintf(d->boot[d->boot_count++], sizeof(d->boot[0]), "%s", item);
		} else if ((!v && !strcmp(item, "uefi")) || (v && !strcmp(item, "firmware"))) {
			if (v && strcmp(v, "efi"))
				return bad(err, "boot", value, "firmware is efi, not '%s' (without it: BIOS)", v);
			snprintf(d->firmware, sizeof(d->firmware), "efi");
		} else if (v && sscanf(item, "firmware.feature%u.%n", &n, &used) == 1 && used &&
			   (!strcmp(item + used, "name") || !strcmp(item + used, "enabled"))) {
			size_t k = 0;
			while (k < d->fw_feature_count && index[k] != n)
				k++;
			if (k == d->fw_feature_count) {
				if (k == KB_DOMNEW_FW_FEATURES_MAX)
					return bad(err, "boot", value, "more than %d firmware features", KB_DOMNEW_FW_FEATURES_MAX);
				index[k] = n;
				d->fw_feature[k] = (struct kb_domnew_fw_feature){ .enabled = -1 };
				d->fw_feature_count++;
			}
			struct kb_domnew_fw_feature *f = &d->fw_feature[k];
			if (!strcmp(item + used, "name")) {
				if (!one_of(v, features))
					return bad(err, "boot", value, "firmware feature is secure-boot or enrolled-keys, not '%s'", v);
				snprintf(f->name, sizeof(f->name), "%s", v);
			} else {
				if (strcmp(v, "yes") && strcmp(v, "no"))
					return bad(err, "boot", value, "%s is yes or no, not '%s'", item, v);
				f->enabled = !strcmp(v, "yes");
			}
		} else {
			return bad(err, "boot", value, "%s", usage);
		}
	}
	for (size_t k = 0; k < d->fw_feature_count; k++) {
		if (!d->fw_feature[k].name[0] || d->fw_feature[k].enabled < 0)
			return bad(err, "boot", value, "firmware.feature%u needs both .name= and .enabled=", index[k]);
		for (size_t j = 0; j < k; j++)
			if (!strcmp(d->fw_feature[j].name, d->fw_feature[k].name))
				return bad(err, "boot", value, "firmware feature %s is named twice", d->fw_feature[k].name);
	}
	if (d->fw_feature_count && !d->firmware[0])
		return bad(err, "boot", value, "firmware features go with uefi (or firmware=efi)");
	return 0;
}

/*
 * virt-install's --osinfo (--os-variant): NAME (a short-id, or name=, short-id=,
 * id=), detect=on[,require=on|off] (from the --cdrom image), auto (detect=on),
 * none (kvmbox's own defaults). The OS itself is looked up on the host (kvmbox/virt/osinfo.h).
 */
static int word_osinfo(struct kb_domnew *d, const char *value, char *buf, struct kb_error *err)
{
	d->osinfo[0] = '\0';
	d->osinfo_detect = d->osinfo_require = false;
	char *cursor = buf, *key, *v;
	while (next_item(&cursor, &key, &v)) {
		const char *name = v ? key : "name";
		v = v ? v : key;
		bool on = !strcmp(v, "on") || !strcmp(v, "yes"), off = !strcmp(v, "off") || !strcmp(v, "no");
		if (!strcmp(name, "name") || !strcmp(name, "short-id") || !strcmp(name, "id")) {
			if (!strcmp(v, "auto"))
				d->osinfo_detect = true;
			else if (strcmp(v, "none") && (strlen(v) >= sizeof(d->osinfo) || strspn(v, "abcdefghijklmnopqrstuvwxyz"
				"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/") != strlen(v) || !*v))
				return bad(err, "osinfo", value, "'%s' is not an OS name (debian11, win11, an osinfo id)", v);
			else if (strcmp(v, "none"))
				snprintf(d->osinfo, sizeof(d->osinfo), "%s", v);
		} else if (!strcmp(name, "detect") || !strcmp(name, "require")) {
			if (!on && !off)
				return bad(err, "osinfo", value, "%s is on or off, not '%s'", name, v);
			*(!strcmp(name, "detect") ? &d->osinfo_detect : &d->osinfo_require) = on;
		} else {
			return bad(err, "osinfo", value, "unknown option '%s' (NAME, detect=on, require=on)", name);
		}
	}
	if (d->osinfo[0] && d->osinfo_detect)
		return bad(err, "osinfo", value, "names an OS and asks to detect one: give one of them");
	if (d->osinfo_require && !d->osinfo_detect)
		return bad(err, "osinfo", value, "require= goes with detect=on");
	return 0;
}

int kb_domnew_word(struct kb_domnew *d, const char *key, const char *value, struct kb_error *err)
{
	static const char *const flags[] = { "hugepages", "nested", "allow-host-file", "import", "noautoconsole", NULL };
	if (!strcmp(key, "cloud-init"))
		return kb_cloudinit_parse(&d->cloud_init, value, err);
	if (!value && one_of(key, flags))
		value = "yes"; /* a flag without a value: --nested */
	if (!value)
		return bad(err, key, "", "needs a value");
	char buf[PATH_MAX + 256];
	if (strlen(value) >= sizeof(buf))
		return bad(err, key, "...", "is too long");
	snprintf(buf, sizeof(buf), "%s", value);
	unsigned long long bytes;

	if (!strcmp(key, "memory")) {
		if (parse_size(key, value, value, 1 << 20, 20, &d->memory_bare, &bytes, err) < 0)
			return -1;
		if (bytes % 1024)
			return bad(err, key, value, "is not a whole number of KiB");
		d->memory_kib = bytes / 1024;
	} else if (!strcmp(key, "vcpus")) {
		return word_vcpus(d, value, buf, err);
	} else if (!strcmp(key, "cpu")) {
		return word_cpu(d, value, buf, err);
	} else if (!strcmp(key, "machine")) {
		if (!copy_name(d->machine, sizeof(d->machine), value) || strchr(value, ':'))
			return bad(err, key, value, "is not a machine type name (q35, pc-q35-7.2, pc)");
		d->machine_given = true;
	} else if (!strcmp(key, "virt-type")) {
		static const char *const types[] = { "kvm", "qemu", NULL };
		if (!one_of(value, types))
			return bad(err, key, value, "is kvm or qemu");
		snprintf(d->virt_type, sizeof(d->virt_type), "%s", value);
	} else if (!strcmp(key, "disk")) {
		return word_disk(d, value, buf, err);
	} else if (!strcmp(key, "cdrom")) {
		if (!clean_path(d->cdrom, value))
			return bad(err, key, value, "takes the absolute path of an ISO image, without '..'");
	} else if (!strcmp(key, "location")) {
		/* A local tree or ISO: virt-install's URLs (http, ftp, nfs) are not fetched. */
		if (strstr(value, "://") || !clean_path(d->location, value))
			return bad(err, key, value, "takes the absolute path of a local installer tree or ISO, without '..' (no URLs)");
	} else if (!strcmp(key, "extra-args")) {
		if (strlen(value) >= sizeof(d->extra_args))
			return bad(err, key, "...", "is longer than %zu characters", sizeof(d->extra_args) - 1);
		snprintf(d->extra_args, sizeof(d->extra_args), "%s", value);
	} else if (!strcmp(key, "boot")) {
		return word_boot(d, value, buf, err);
	} else if (!strcmp(key, "network")) {
		return word_network(d, value, buf, err);
	} else if (!strcmp(key, "graphics")) {
		return word_graphics(d, value, buf, err);
	} else if (!strcmp(key, "hostdev")) {
		if (d->hostdev_count == KB_DOMNEW_HOSTDEVS_MAX)
			return bad(err, key, value, "more than %d host devices", KB_DOMNEW_HOSTDEVS_MAX);
		if (!kb_pci_parse_addr(value, d->hostdev[d->hostdev_count], sizeof(d->hostdev[0])))
			return bad(err, key, value, "is not a PCI address (0000:81:00.3, 81:00.3 or pci_0000_81_00_3)");
		d->hostdev_count++;
	} else if (!strcmp(key, "hugepages")) {
		if (strcmp(value, "yes") && strcmp(value, "no") && strcmp(value, "true") && strcmp(value, "false")) {
			if (kb_size_parse(value, &bytes) < 0 || bytes < 4096 || bytes % 4096 || bytes > (1ull << 40))
				return bad(err, key, value, "is yes, no or a page size (2M, 1G)");
			d->hugepages = true;
			d->hugepage_kib = (unsigned long)(bytes / 1024);
			return 0;
		}
		d->hugepage_kib = 0;
		return word_flag(key, value, &d->hugepages, err);
	} else if (!strcmp(key, "nested")) {
		return word_flag(key, value, &d->nested, err);
	} else if (!strcmp(key, "allow-host-file")) {
		return word_flag(key, value, &d->allow_host_file, err);
	} else if (!strcmp(key, "import")) {
		return word_flag(key, value, &d->import, err);
	} else if (!strcmp(key, "placement")) {
		return word_placement(d, value, buf, err);
	} else if (!strcmp(key, "osinfo")) {
		return word_osinfo(d, value, buf, err);
	} else if (!strcmp(key, "video")) {
		static const char *const models[] = { "vga", "virtio", "qxl", "bochs", "ramfb", "cirrus", "none", NULL };
		return word_choice(key, value, models, "is vga, virtio, qxl, bochs, ramfb, cirrus or none", d->video,
				   sizeof(d->video), err);
	} else if (!strcmp(key, "sound")) {
		static const char *const models[] = { "none", "default", "ich9", "ich6", "ac97", NULL };
		if (word_choice(key, value, models, "is none, default, ich9, ich6 or ac97", d->sound, sizeof(d->sound), err) < 0)
			return -1;
		if (!strcmp(d->sound, "default"))
			d->sound[0] = '\0';
	} else if (!strcmp(key, "serial")) {
		return word_serial(d, value, buf, err);
	} else if (!strcmp(key, "console")) {
		return word_console(d, value, buf, err);
	} else if (!strcmp(key, "channel")) {
		return word_channel(d, value, buf, err);
	} else if (!strcmp(key, "rng")) {
		static const char *const sources[] = { "/dev/urandom", "/dev/random", "none", NULL };
		return word_choice(key, value, sources, "is /dev/urandom, /dev/random or none", d->rng, sizeof(d->rng), err);
	} else if (!strcmp(key, "memballoon")) {
		static const char *const models[] = { "virtio", "none", NULL };
		return word_choice(key, value, models, "is virtio or none", d->memballoon, sizeof(d->memballoon), err);
	} else if (!strcmp(key, "controller")) {
		return word_controller(d, value, buf, err);
	} else if (!strcmp(key, "description")) {
		if (strlen(value) >= sizeof(d->description))
			return bad(err, key, "...", "is longer than %zu characters", sizeof(d->description) - 1);
		snprintf(d->description, sizeof(d->description), "%s", value);
	} else if (!strcmp(key, "filesystem")) {
		return word_filesystem(d, value, buf, err);
	} else if (!strcmp(key, "noautoconsole")) {
		bool unused; /* kvmbox never attaches a console: virt-install's word is accepted as what it does anyway */
		return word_flag(key, value, &unused, err);
	} else {
		return kb_fail(err, 0, NULL, "unknown word '%.64s' (memory, vcpus, disk, network...: kvmbox domain --help lists them)",
			       key);
	}
	return 0;
}

int kb_domnew_finish(struct kb_domnew *d, struct kb_error *err)
{
	char unused[sizeof(d->name)];
	if (!copy_name(unused, sizeof(unused), d->name) || strchr(d->name, ':') || d->name[0] == '.' || d->name[0] == '-')
		return kb_fail(err, 0, NULL, "domain name '%s': use letters, digits, '.', '_' and '-' (it names the disk volumes too)",
			       d->name);
	if (!d->memory_kib)
		return kb_fail(err, 0, NULL, "memory: how much the domain gets is not given (memory 4G)");
	if (d->net_none && d->net_count)
		return kb_fail(err, 0, NULL, "network 'none': no NIC, yet another network word gives one");
	if (d->hugepages && d->hugepage_kib && d->memory_kib % d->hugepage_kib)
		return kb_fail(err, 0, NULL, "memory %llu MiB is not a whole number of %lu KiB hugepages", d->memory_kib >> 10,
			       d->hugepage_kib);
	if (d->import && d->cdrom[0])
		return kb_fail(err, 0, NULL, "import: boots the disk as it is; --cdrom is install media (give one of them)");
	if (d->location[0] && (d->cdrom[0] || d->import))
		return kb_fail(err, 0, NULL, "location: the installer's kernel boots from it; %s (give one of them)",
			       d->import ? "--import boots the disk as it is" : "--cdrom is install media too");
	if (d->extra_args[0] && !d->location[0])
		return kb_fail(err, 0, NULL, "extra-args: the installer kernel's command line goes with --location");
	if (d->import && !d->disk_count)
		return kb_fail(err, 0, NULL, "import: boots an existing disk: give --disk path=IMAGE (or backing=IMAGE,size=)");
	if (d->cloud_init.on && !d->disk_count)
		return kb_fail(err, 0, NULL, "cloud-init: the seed is for a disk's first boot and is kept beside it: give --disk");
	if (d->placement_auto && d->sockets)
		return kb_fail(err, 0, NULL, "vcpus sockets=%u,cores=%u,threads=%u: placement auto gives the guest the topology its "
					     "pins make (the host's sockets, cores and sibling threads); give one of them",
			       d->sockets, d->cores, d->threads);
	if (d->placement_auto && d->max_vcpus)
		return kb_fail(err, 0, NULL, "vcpus maxvcpus=%u: placement auto pins each vCPU the domain has; vCPUs added "
					     "later would have no pins (give one of them)", d->max_vcpus);
	for (size_t i = 0; i < d->channel_count; i++)
		if (!strcmp(d->channel[i].type, "spicevmc") && !(d->graphics && d->spice))
			return kb_fail(err, 0, NULL, "channel 'spicevmc': SPICE's agent channel needs graphics spice");
	bool pc = !strncmp(d->machine, "pc", 2) && strncmp(d->machine, "pc-q35", 6);
	unsigned created = 0;
	for (size_t i = 0; i < d->disk_count; i++) {
		struct kb_domnew_disk *k = &d->disk[i];
		if (!k->bus[0])
			snprintf(k->bus, sizeof(k->bus), "%s", pc ? "ide" : "sata"); /* a CD-ROM drive, as --cdrom's */
		if (!strcmp(k->bus, "ide") && !pc)
			return kb_fail(err, 0, NULL, "disk '%s': bus=ide: machine %s has no IDE (use sata, or machine pc)", k->path,
				       d->machine);
		if (k->kind == KB_DISK_PATH || k->path[0]) {
			if (k->kind == KB_DISK_NEW) {
				const char *base = strrchr(k->path, '/') + 1;
				if (!*base)
					return kb_fail(err, 0, NULL, "disk '%s': path= names a directory", k->path);
				snprintf(k->volume, sizeof(k->volume), "%.*s", (int)sizeof(k->volume) - 1, base);
			}
			continue;
		}
		/* virt-install's names: the first new volume is NAME.qcow2, the next NAME-1.qcow2 ... */
		if (created == 0)
			snprintf(k->volume, sizeof(k->volume), "%s.%s", d->name, !strcmp(k->format, "raw") ? "img" : "qcow2");
		else
			snprintf(k->volume, sizeof(k->volume), "%s-%u.%s", d->name, created,
				 !strcmp(k->format, "raw") ? "img" : "qcow2");
		created++;
	}
	/* The definition boots the disk: the installer's boot (--cdrom) is the first start's only, as virt-install's. */
	if (!d->boot_count)
		snprintf(d->boot[d->boot_count++], sizeof(d->boot[0]), "hd");
	return 0;
}

/* ---- XML ------------------------------------------------------------------ */

static void put_escaped(FILE *out, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", out); break;
		case '<': fputs("&lt;", out); break;
		case '>': fputs("&gt;", out); break;
		case '\'': fputs("&apos;", out); break;
		case '"': fputs("&quot;", out); break;
		default: fputc(*s, out);
		}
	}
}

/* printf where %s arguments are XML-escaped: write the fixed text, escape the strings. */
static void put(FILE *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	for (const char *p = fmt; *p; p++) {
		if (*p != '%') {
			fputc(*p, out);
			continue;
		}
		p++;
		if (*p == 's')
			put_escaped(out, va_arg(ap, const char *));
		else if (*p == 'u')
			fprintf(out, "%u", va_arg(ap, unsigned));
		else if (*p == 'L')
			fprintf(out, "%llu", va_arg(ap, unsigned long long));
		else if (*p == 'l')
			fprintf(out, "%lu", va_arg(ap, unsigned long));
		else
			fputc(*p, out);
	}
	va_end(ap);
}

static void put_cputune(FILE *out, const struct kb_placement *p)
{
	char set[1024];
	put(out, "  <cputune>\n");
	for (unsigned v = 0; v < p->vcpus; v++)
		put(out, "    <vcpupin vcpu='%u' cpuset='%u'/>\n", v, (unsigned)p->vcpu_cpu[v]);
	put(out, "    <emulatorpin cpuset='%s'/>\n", kb_cpuset_format(&p->emulator, set, sizeof(set)));
	put(out, "  </cputune>\n");
	struct kb_cpuset nodes = { { 0 } };
	for (size_t c = 0; c < p->cell_count; c++)
		kb_cpuset_add(&nodes, (unsigned)p->cell[c].host_node);
	put(out, "  <numatune>\n    <memory mode='strict' nodeset='%s'/>\n", kb_cpuset_format(&nodes, set, sizeof(set)));
	for (size_t c = 0; p->cell_count > 1 && c < p->cell_count; c++)
		put(out, "    <memnode cellid='%u' mode='strict' nodeset='%u'/>\n", (unsigned)c, (unsigned)p->cell[c].host_node);
	put(out, "  </numatune>\n");
}

static void put_cpu(FILE *out, const struct kb_domnew *d, const struct kb_placement *p)
{
	bool cells = p && p->cell_count > 1;
	bool custom = !strcmp(d->cpu_mode, "custom");
	bool nested = d->nested && d->nested_feature[0];
	if (!custom && !d->feature_count && !nested && !p && !d->sockets) {
		put(out, "  <cpu mode='%s' check='%s'/>\n", d->cpu_mode,
		    !strcmp(d->cpu_mode, "host-passthrough") ? "none" : "partial");
		return;
	}
	if (custom)
		put(out, "  <cpu mode='custom' match='exact' check='partial'>\n    <model fallback='forbid'>%s</model>\n",
		    d->cpu_model);
	else
		put(out, "  <cpu mode='%s' check='%s'>\n", d->cpu_mode,
		    !strcmp(d->cpu_mode, "host-passthrough") ? "none" : "partial");
	/* The topology the pins make: the guest's scheduler sees the host's sibling threads and nodes as they are. */
	if (p)
		put(out, "    <topology sockets='%u' dies='1' cores='%u' threads='%u'/>\n", p->sockets, p->cores, p->threads);
	else if (d->sockets) /* the words' (--vcpus N,sockets=,cores=,threads=) */
		put(out, "    <topology sockets='%u' dies='1' cores='%u' threads='%u'/>\n", d->sockets, d->cores, d->threads);
	for (size_t i = 0; i < d->feature_count; i++)
		put(out, "    <feature policy='%s' name='%s'/>\n", d->feature[i].enable ? "require" : "disable",
		    d->feature[i].name);
	if (nested)
		put(out, "    <feature policy='require' name='%s'/>\n", d->nested_feature);
	if (cells) {
		put(out, "    <numa>\n");
		for (size_t c = 0; c < p->cell_count; c++) {
			const struct kb_place_cell *cell = &p->cell[c];
			if (cell->vcpu_count == 1)
				put(out, "      <cell id='%u' cpus='%u' memory='%L' unit='KiB'/>\n", (unsigned)c, cell->first_vcpu,
				    cell->memory_kib);
			else
				put(out, "      <cell id='%u' cpus='%u-%u' memory='%L' unit='KiB'/>\n", (unsigned)c,
				    cell->first_vcpu, cell->first_vcpu + cell->vcpu_count - 1, cell->memory_kib);
		}
		put(out, "    </numa>\n");
	}
	put(out, "  </cpu>\n");
}

/* Whether the machine is an i440fx (pc, pc-i440fx-*): IDE, no SATA. */
static bool i440fx(const struct kb_domnew *d)
{
	return !strncmp(d->machine, "pc", 2) && strncmp(d->machine, "pc-q35", 6);
}

/* Target names per bus: vda.. for virtio, sda.. shared by SATA and SCSI (the CD-ROM included), hda.. for IDE. */
static void next_target(const char *bus, unsigned counters[3], char *out)
{
	unsigned *n = !strcmp(bus, "virtio") ? &counters[0] : !strcmp(bus, "ide") ? &counters[2] : &counters[1];
	const char *prefix = !strcmp(bus, "virtio") ? "vd" : !strcmp(bus, "ide") ? "hd" : "sd";
	sprintf(out, "%s%c", prefix, 'a' + (*n)++);
}

static void put_devices(FILE *out, const struct kb_domnew *d)
{
	unsigned counters[3] = { 0 };
	char target[8];
	put(out, "  <devices>\n");
	for (size_t i = 0; i < d->disk_count; i++) {
		const struct kb_domnew_disk *k = &d->disk[i];
		next_target(k->bus, counters, target);
		bool block = !strcmp(k->device, "lun"); /* a LUN is a block device's */
		/* A new volume is thin: the guest's discards give its space back (virt-install's discard=unmap). */
		put(out, "    <disk type='%s' device='%s'>\n      <driver name='qemu' type='%s'", block ? "block" : "file",
		    k->device[0] ? k->device : "disk", k->format[0] ? k->format : "raw");
		if (k->cache[0] && strcmp(k->cache, "default"))
			put(out, " cache='%s'", k->cache);
		if (k->io[0])
			put(out, " io='%s'", k->io);
		if (k->discard[0] || k->kind != KB_DISK_PATH)
			put(out, " discard='%s'", k->discard[0] ? k->discard : "unmap");
		if (k->detect_zeroes[0])
			put(out, " detect_zeroes='%s'", k->detect_zeroes);
		put(out, "/>\n");
		put(out, "      <source %s='%s'/>\n      <target dev='%s' bus='%s'/>\n", block ? "dev" : "file", k->path, target,
		    k->bus);
		if (k->readonly)
			put(out, "      <readonly/>\n");
		if (k->shareable)
			put(out, "      <shareable/>\n");
		if (k->serial[0])
			put(out, "      <serial>%s</serial>\n", k->serial);
		put(out, "    </disk>\n");
	}
	if (d->cdrom[0]) {
		const char *bus = i440fx(d) ? "ide" : "sata";
		next_target(bus, counters, target);
		/* The drive stays, empty, as virt-install leaves it: the ISO is in it for the installer's first boot only. */
		put(out, "    <disk type='file' device='cdrom'>\n      <target dev='%s' bus='%s'/>\n      <readonly/>\n    </disk>\n",
		    target, bus);
	}
	bool scsi_given = false;
	for (size_t i = 0; i < d->controller_count; i++) {
		const struct kb_domnew_controller *c = &d->controller[i];
		scsi_given |= !strcmp(c->type, "scsi");
		put(out, c->model[0] ? "    <controller type='%s' model='%s'/>\n" : "    <controller type='%s'/>\n", c->type, c->model);
	}
	/* bus=scsi disks on virtio-scsi, as virt-install: libvirt's default controller would be an emulated LSI. */
	for (size_t i = 0; i < d->disk_count && !scsi_given; i++)
		if (!strcmp(d->disk[i].bus, "scsi")) {
			put(out, "    <controller type='scsi' index='0' model='virtio-scsi'/>\n");
			break;
		}
	for (size_t i = 0; i < d->net_count; i++) {
		const struct kb_domnew_net *n = &d->net[i];
		const char *type = n->network[0] ? "network" : "bridge";
		put(out, "    <interface type='%s'>\n", type);
		if (n->mac[0])
			put(out, "      <mac address='%s'/>\n", n->mac);
		put(out, "      <source %s='%s'/>\n      <model type='%s'/>\n    </interface>\n", type,
		    n->network[0] ? n->network : n->bridge, n->model);
	}
	for (size_t i = 0; i < d->fs_count; i++) {
		const struct kb_domnew_fs *f = &d->fs[i];
		if (f->virtiofs)
			put(out, "    <filesystem type='mount'>\n      <driver type='virtiofs'/>\n");
		else
			put(out, "    <filesystem type='mount' accessmode='mapped'>\n");
		put(out, "      <source dir='%s'/>\n      <target dir='%s'/>\n    </filesystem>\n", f->source, f->target);
	}
	for (size_t i = 0; i < d->hostdev_count; i++)
		kb_pci_hostdev_xml(out, d->hostdev[i], "    ");
	/* A serial console by default: `virsh console` works and boot messages have somewhere to go. */
	/* Without --serial: a pty, unless the console is virtio's (virt-install's: then no serial port). */
	const char *console = d->console_target;
	const char *serial_type = d->serial_type[0] ? d->serial_type : strcmp(console, "virtio") ? "pty" : "none";
	bool serial = strcmp(serial_type, "none") != 0, file = !strcmp(serial_type, "file");
	if (serial) {
		put(out, "    <serial type='%s'>\n", serial_type);
		if (file)
			put(out, "      <source path='%s'/>\n", d->serial_path);
		put(out, "      <target port='0'/>\n    </serial>\n");
	}
	if (!strcmp(console, "virtio")) {
		put(out, "    <console type='pty'>\n      <target type='virtio' port='0'/>\n    </console>\n");
	} else if (serial && !console[0]) { /* the serial port as libvirt shows its console: the same type and source */
		put(out, "    <console type='%s'>\n", serial_type);
		if (file)
			put(out, "      <source path='%s'/>\n", d->serial_path);
		put(out, "      <target type='serial' port='0'/>\n    </console>\n");
	}
	/*
	 * What virt-install adds for an OS that supports them (it asks osinfo; kvmbox
	 * does what it does for a modern Linux, --osinfo linux2022): the guest
	 * agent's channel (and SPICE's agent channel with SPICE), a USB tablet with
	 * graphics (the pointer follows the client's), a balloon, entropy from
	 * /dev/urandom; with SPICE a sound card and two USB redirection ports.
	 * --channel, --sound, --memballoon and --rng say otherwise.
	 */
	if (d->channels_given) {
		for (size_t i = 0; i < d->channel_count; i++) {
			const struct kb_domnew_channel *c = &d->channel[i];
			/* A unix channel's socket is libvirt's to name (its definition keeps no <source>). */
			put(out, "    <channel type='%s'>\n      <target type='virtio' name='%s'/>\n    </channel>\n", c->type, c->name);
		}
	} else {
		put(out, "    <channel type='unix'>\n      <source mode='bind'/>\n"
			 "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n    </channel>\n");
		if (d->graphics && d->spice)
			put(out, "    <channel type='spicevmc'>\n      <target type='virtio' name='com.redhat.spice.0'/>\n"
				 "    </channel>\n");
	}
	if (d->graphics)
		put(out, "    <input type='tablet' bus='usb'/>\n");
	if (d->graphics) {
		put(out, "    <graphics type='%s' port='-1' autoport='yes' listen='%s'", d->spice ? "spice" : "vnc", d->vnc_listen);
		if (d->vnc_password[0])
			put(out, " passwd='%s'", d->vnc_password);
		put(out, ">\n      <listen type='address' address='%s'/>\n", d->vnc_listen);
		if (d->spice)
			put(out, "      <image compression='off'/>\n");
		put(out, "    </graphics>\n");
	}
	const char *sound = d->sound[0] ? d->sound : d->graphics && d->spice ? (i440fx(d) ? "ich6" : "ich9") : "none";
	if (strcmp(sound, "none"))
		put(out, "    <sound model='%s'/>\n", sound);
	const char *video = d->video[0] ? d->video : !d->graphics ? "" : d->spice ? "virtio" : "vga";
	if (video[0])
		put(out, "    <video>\n      <model type='%s'/>\n    </video>\n", video);
	if (d->graphics && d->spice)
		put(out, "    <redirdev bus='usb' type='spicevmc'/>\n    <redirdev bus='usb' type='spicevmc'/>\n");
	put(out, "    <memballoon model='%s'/>\n", d->memballoon);
	if (strcmp(d->rng, "none"))
		put(out, "    <rng model='virtio'>\n      <backend model='random'>%s</backend>\n    </rng>\n", d->rng);
	put(out, "  </devices>\n");
}

int kb_domnew_xml(const struct kb_domnew *d, const struct kb_placement *placement, char **xml, struct kb_error *err)
{
	size_t len = 0;
	*xml = NULL;
	FILE *out = open_memstream(xml, &len);
	if (!out)
		return kb_fail(err, errno, NULL, "writing the XML of domain '%s'", d->name);
	put(out, "<domain type='%s'>\n  <name>%s</name>\n", d->virt_type[0] ? d->virt_type : "kvm", d->name);
	if (d->osinfo_id[0]) /* as virt-install writes it: virt-manager and virt-xml read the OS from here */
		put(out, "  <metadata>\n    <libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>\n"
			 "      <libosinfo:os id='%s'/>\n    </libosinfo:libosinfo>\n  </metadata>\n", d->osinfo_id);
	if (d->description[0])
		put(out, "  <description>%s</description>\n", d->description);
	put(out, "  <memory unit='KiB'>%L</memory>\n  <currentMemory unit='KiB'>%L</currentMemory>\n", d->memory_kib,
	    d->memory_kib);
	bool virtiofs = false;
	for (size_t i = 0; i < d->fs_count; i++)
		virtiofs |= d->fs[i].virtiofs;
	if (d->hugepages || virtiofs)
		put(out, "  <memoryBacking>\n");
	if (d->hugepages) {
		put(out, "    <hugepages>\n");
		if (d->hugepage_kib)
			put(out, "      <page size='%l' unit='KiB'/>\n", d->hugepage_kib);
		put(out, "    </hugepages>\n");
	}
	/* virtiofsd reads the guest's memory: it must be shared (what libvirt asks of a virtiofs guest). */
	if (virtiofs)
		put(out, "    <source type='memfd'/>\n    <access mode='shared'/>\n");
	if (d->hugepages || virtiofs)
		put(out, "  </memoryBacking>\n");
	if (d->max_vcpus)
		put(out, "  <vcpu placement='static' current='%u'>%u</vcpu>\n", d->vcpus, d->max_vcpus);
	else
		put(out, "  <vcpu placement='static'>%u</vcpu>\n", d->vcpus);
	if (placement)
		put_cputune(out, placement);
	put(out, d->firmware[0] ? "  <os firmware='%s'>\n" : "  <os>\n", d->firmware);
	put(out, "    <type arch='%s' machine='%s'>hvm</type>\n", d->arch, d->machine);
	if (d->fw_feature_count) {
		put(out, "    <firmware>\n");
		for (size_t i = 0; i < d->fw_feature_count; i++)
			put(out, "      <feature enabled='%s' name='%s'/>\n", d->fw_feature[i].enabled ? "yes" : "no",
			    d->fw_feature[i].name);
		put(out, "    </firmware>\n");
	}
	for (size_t i = 0; i < d->boot_count; i++)
		put(out, "    <boot dev='%s'/>\n", d->boot[i]);
	put(out, "  </os>\n  <features>\n    <acpi/>\n    <apic/>\n  </features>\n");
	put_cpu(out, d, placement);
	put(out, "  <clock offset='utc'/>\n  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
		 "  <on_crash>destroy</on_crash>\n");
	put_devices(out, d);
	put(out, "</domain>\n");
	if (fclose(out) != 0 || !*xml) {
		free(*xml);
		*xml = NULL;
		return kb_fail(err, ENOMEM, NULL, "writing the XML of domain '%s'", d->name);
	}
	return 0;
}

int kb_domnew_volume_xml(const struct kb_domnew_disk *k, char **xml, struct kb_error *err)
{
	size_t len = 0;
	*xml = NULL;
	FILE *out = open_memstream(xml, &len);
	if (!out)
		return kb_fail(err, errno, NULL, "writing the XML of volume '%s'", k->volume);
	put(out, "<volume>\n  <name>%s</name>\n  <capacity unit='bytes'>%L</capacity>\n  <allocation unit='bytes'>0</allocation>\n",
	    k->volume, k->size_bytes);
	put(out, "  <target>\n    <format type='%s'/>\n  </target>\n", k->format);
	if (k->kind == KB_DISK_OVERLAY)
		put(out, "  <backingStore>\n    <path>%s</path>\n    <format type='%s'/>\n  </backingStore>\n", k->backing,
		    k->backing_format);
	put(out, "</volume>\n");
	if (fclose(out) != 0 || !*xml) {
		free(*xml);
		*xml = NULL;
		return kb_fail(err, ENOMEM, NULL, "writing the XML of volume '%s'", k->volume);
	}
	return 0;
}
