/* cloud-init's NoCloud seed; see kvmbox/virt/cloudinit.h. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/virt/cloudinit.h"

/* ---- the word ----------------------------------------------------------------------------------- */

static int set_on_off(const char *option, const char *value, bool *flag, struct kb_error *err)
{
	static const char *const on[] = { "on", "yes", "true", "1", NULL }, *const off[] = { "off", "no", "false", "0", NULL };
	for (size_t i = 0; on[i]; i++) {
		if (!strcmp(value, on[i]) || !strcmp(value, off[i])) {
			*flag = !strcmp(value, on[i]);
			return 0;
		}
	}
	return kb_fail(err, 0, NULL, "cloud-init '%s=%s': is on or off", option, value);
}

int kb_cloudinit_parse(struct kb_cloudinit *ci, const char *value, struct kb_error *err)
{
	memset(ci, 0, sizeof(*ci));
	ci->on = true;
	if (!value || !*value) {
		/* virt-install's bare --cloud-init. */
		ci->root_password_generate = true;
		ci->disable = true;
		return 0;
	}
	char buf[4 * PATH_MAX + 128];
	if (strlen(value) >= sizeof(buf))
		return kb_fail(err, 0, NULL, "cloud-init '...': is too long");
	snprintf(buf, sizeof(buf), "%s", value);
	for (char *item = buf, *next; item; item = next) {
		next = strchr(item, ',');
		if (next)
			*next++ = '\0';
		char *v = strchr(item, '=');
		if (!v || !v[1])
			return kb_fail(err, 0, NULL, "cloud-init '%s': options are user-data=FILE, meta-data=FILE, "
						     "network-config=FILE, ssh-key=FILE, root-password-generate=on, disable=on", item);
		*v++ = '\0';
		char *file = !strcmp(item, "user-data")	     ? ci->user_data
			     : !strcmp(item, "meta-data")	     ? ci->meta_data
			     : !strcmp(item, "network-config")	     ? ci->network_config
			     : !strcmp(item, "ssh-key") || !strcmp(item, "root-ssh-key") ? ci->ssh_key
										    : NULL;
		if (file) {
			if (v[0] != '/' || strlen(v) >= PATH_MAX)
				return kb_fail(err, 0, NULL, "cloud-init '%s=%s': takes an absolute path", item, v);
			snprintf(file, PATH_MAX, "%s", v);
		} else if (!strcmp(item, "root-password-generate")) {
			if (set_on_off(item, v, &ci->root_password_generate, err) < 0)
				return -1;
		} else if (!strcmp(item, "disable")) {
			if (set_on_off(item, v, &ci->disable, err) < 0)
				return -1;
		} else {
			return kb_fail(err, 0, NULL, "cloud-init '%s': unknown option (user-data=, meta-data=, network-config=, "
						     "ssh-key=, root-password-generate=, disable=)", item);
		}
	}
	if (ci->user_data[0] && (ci->ssh_key[0] || ci->root_password_generate || ci->disable))
		return kb_fail(err, 0, NULL, "cloud-init '%s': user-data= is the whole user-data; put the key, password and "
					     "disable in that file (virt-install ignores them silently)", value);
	return 0;
}

/* ---- the files ---------------------------------------------------------------------------------- */

/* A file the user named, whole: a regular file within @max bytes, or refused naming the option and the file. */
static int read_named(const char *option, const char *path, size_t max, char **data, struct kb_error *err)
{
	struct kb_error why = { 0 };
	size_t len;
	struct stat st;
	autoclose_fd fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		kb_fail(&why, errno, NULL, "cannot read it");
	else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		kb_fail(&why, 0, NULL, "is not a regular file");
	else if ((unsigned long long)st.st_size > max)
		kb_fail(&why, EFBIG, NULL, "is larger than %zu KiB", max >> 10);
	else if (kb_read_fd(fd, path, max, data, &len, &why) == 0 && memchr(*data, '\0', len))
		kb_fail(&why, 0, NULL, "holds a NUL byte: not a text file");
	else if (!why.what[0])
		return 0;
	free(*data);
	*data = NULL;
	return kb_fail(err, why.errnum, NULL, "cloud-init '%s=%s': %s", option, path, why.what);
}

static int b64_value(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
	       : c == '+'			  ? 62
	       : c == '/'			  ? 63
							  : -1;
}

bool kb_ssh_public_key(const char *line)
{
	static const char *const types[] = { "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
					     "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
					     "sk-ecdsa-sha2-nistp256@openssh.com", NULL };
	size_t type_len = strcspn(line, " \t");
	const char *const *type = types;
	while (*type && (strlen(*type) != type_len || strncmp(line, *type, type_len)))
		type++;
	if (!*type || !line[type_len])
		return false;
	const char *blob = line + type_len + strspn(line + type_len, " \t");
	size_t blob_len = strcspn(blob, " \t");
	/* The blob starts with the type again, length-prefixed: decode its first bytes. */
	unsigned char head[64];
	size_t used = 0, padding = 0;
	unsigned long bits = 0;
	int nbits = 0;
	for (size_t i = 0; i < blob_len; i++) {
		if (blob[i] == '=') {
			padding++;
			continue;
		}
		int v = b64_value((unsigned char)blob[i]);
		if (v < 0 || padding)
			return false;
		bits = (bits << 6) | (unsigned)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			if (used < sizeof(head))
				head[used++] = (unsigned char)(bits >> nbits);
		}
	}
	if (blob_len < 64 || blob_len % 4 || padding > 2 || used < 4 + type_len)
		return false;
	size_t n = (size_t)head[0] << 24 | (size_t)head[1] << 16 | (size_t)head[2] << 8 | head[3];
	if (n != type_len || memcmp(head + 4, *type, type_len))
		return false;
	for (const char *p = blob + blob_len; *p; p++) /* the comment: printable text */
		if (iscntrl((unsigned char)*p) && *p != '\t')
			return false;
	return true;
}

/* The key file's one line, checked, into *@line (malloc'ed). */
static int read_key(const char *path, char **line, struct kb_error *err)
{
	autofree char *data = NULL;
	if (read_named("ssh-key", path, KB_SEED_KEY_MAX, &data, err) < 0)
		return -1;
	size_t len = strlen(data);
	while (len && isspace((unsigned char)data[len - 1]))
		data[--len] = '\0';
	if (strstr(data, "PRIVATE KEY"))
		return kb_fail(err, 0, NULL, "cloud-init 'ssh-key=%s': is a private key; give the public one (.pub)", path);
	if (strchr(data, '\n') || !kb_ssh_public_key(data))
		return kb_fail(err, 0, NULL, "cloud-init 'ssh-key=%s': is not one OpenSSH public key line (ssh-ed25519 AAAA... "
					     "comment)", path);
	*line = data;
	data = NULL;
	return 0;
}

/* 16 letters and digits, as virt-install's, from the kernel's random numbers. */
static int make_password(char *out, size_t size, struct kb_error *err)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	size_t used = 0;
	while (used < 16 && used + 1 < size) {
		unsigned char bytes[32];
		if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t)sizeof(bytes))
			return kb_fail(err, errno ? errno : EIO, NULL, "cloud-init: generating the root password");
		for (size_t i = 0; i < sizeof(bytes) && used < 16; i++)
			if (bytes[i] < 248) /* 248 = 4 * 62: no letter more likely than another */
				out[used++] = alphabet[bytes[i] % 62];
	}
	out[used] = '\0';
	return 0;
}

/* @s as a YAML double-quoted scalar (a comment's '#' would end a plain one). */
static void put_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s == '\t' ? ' ' : *s, out);
	}
	fputc('"', out);
}

/* virt-install's #cloud-config (virtinst/install/cloudinit.py), with the same keys. */
static int compose_user_data(const struct kb_cloudinit *ci, const char *key, const char *password, char **text,
			     struct kb_error *err)
{
	size_t len = 0;
	FILE *out = open_memstream(text, &len);
	if (!out)
		return kb_fail(err, errno, NULL, "cloud-init: composing user-data");
	fputs("#cloud-config\n", out);
	if (ci->root_password_generate)
		fprintf(out, "chpasswd:\n  list: |\n    root:%s\n  expire: True\n", password);
	if (key) {
		fputs("users:\n  - name: root\n    ssh-authorized-keys:\n      - ", out);
		put_quoted(out, key);
		fputc('\n', out);
	}
	if (ci->disable)
		fputs("runcmd:\n- echo \"Disabled by kvmbox\" > /etc/cloud/cloud-init.disabled\n", out);
	if (fclose(out) != 0 || !*text)
		return kb_fail(err, ENOMEM, NULL, "cloud-init: composing user-data");
	return 0;
}

int kb_seed_make(const struct kb_cloudinit *ci, const char *name, bool generate, struct kb_seed *seed,
		 struct kb_error *err)
{
	memset(seed, 0, sizeof(*seed));
	autofree char *key = NULL;
	int rc = 0;
	if (ci->user_data[0])
		rc = read_named("user-data", ci->user_data, KB_SEED_FILE_MAX, &seed->user_data, err);
	else if ((rc = ci->ssh_key[0] ? read_key(ci->ssh_key, &key, err) : 0) == 0 && ci->root_password_generate)
		rc = generate ? make_password(seed->password, sizeof(seed->password), err)
			      : (snprintf(seed->password, sizeof(seed->password), "(generated at the run)"), 0);
	if (rc == 0 && !ci->user_data[0])
		rc = compose_user_data(ci, key, seed->password, &seed->user_data, err);
	if (rc == 0 && !generate)
		seed->password[0] = '\0';
	if (rc == 0 && ci->meta_data[0])
		rc = read_named("meta-data", ci->meta_data, KB_SEED_FILE_MAX, &seed->meta_data, err);
	else if (rc == 0 && asprintf(&seed->meta_data, "instance-id: %s\nlocal-hostname: %s\n", name, name) < 0) {
		seed->meta_data = NULL;
		rc = kb_fail(err, ENOMEM, NULL, "cloud-init: composing meta-data");
	}
	if (rc == 0 && ci->network_config[0])
		rc = read_named("network-config", ci->network_config, KB_SEED_FILE_MAX, &seed->network_config, err);
	if (rc < 0)
		kb_seed_free(seed);
	return rc;
}

unsigned kb_seed_files(const struct kb_seed *seed)
{
	return seed->network_config ? 3 : 2;
}

void kb_seed_free(struct kb_seed *seed)
{
	if (seed->user_data)
		explicit_bzero(seed->user_data, strlen(seed->user_data)); /* it may hold the password */
	free(seed->user_data);
	free(seed->meta_data);
	free(seed->network_config);
	explicit_bzero(seed, sizeof(*seed));
}

/* ---- the ISO ------------------------------------------------------------------------------------ */

static int add_file(const struct kb_archive *ar, struct archive *a, struct archive_entry *e, const char *name,
		    const char *data, struct kb_error *err)
{
	size_t len = strlen(data);
	ar->entry_set_pathname(e, name);
	ar->entry_set_filetype(e, AE_IFREG);
	ar->entry_set_perm(e, 0644);
	ar->entry_set_size(e, (la_int64_t)len);
	ar->entry_set_mtime(e, time(NULL), 0);
	if (ar->write_header(a, e) != ARCHIVE_OK || (len && ar->write_data(a, data, len) != (la_ssize_t)len))
		return kb_fail(err, ar->error_errno(a), NULL, "cloud-init: writing %s into the seed: %s", name,
			       kb_archive_error(ar, a, "libarchive failed"));
	return 0;
}

int kb_seed_iso(const struct kb_archive *ar, const struct kb_seed *seed, const char *name, char **iso, size_t *len,
		struct kb_error *err)
{
	const char *files[][2] = { { "user-data", seed->user_data },
				   { "meta-data", seed->meta_data },
				   { "network-config", seed->network_config } };
	/* Room for the files, each rounded to sectors, the descriptors and libarchive's padding (300 KiB). */
	size_t cap = 1u << 20;
	for (size_t i = 0; i < 3; i++)
		cap += files[i][1] ? (strlen(files[i][1]) | 2047) + 1 : 0;
	*iso = malloc(cap);
	*len = 0;
	struct archive *a = ar->write_new();
	int rc = *iso && a ? 0 : kb_fail(err, ENOMEM, NULL, "cloud-init: making the seed");
	if (rc == 0 && (ar->write_set_format_iso9660(a) != ARCHIVE_OK ||
			ar->write_set_format_option(a, "iso9660", "volume-id", "cidata") != ARCHIVE_OK ||
			ar->write_set_format_option(a, "iso9660", "publisher", "kvmbox") != ARCHIVE_OK ||
			ar->write_set_format_option(a, "iso9660", "application-id", name) != ARCHIVE_OK ||
			ar->write_set_format_option(a, "iso9660", "joliet", "1") != ARCHIVE_OK ||
			ar->write_set_format_option(a, "iso9660", "rockridge", "1") != ARCHIVE_OK ||
			ar->write_open_memory(a, *iso, cap, len) != ARCHIVE_OK))
		rc = kb_fail(err, ar->error_errno(a), NULL, "cloud-init: making the seed: %s",
			     kb_archive_error(ar, a, "libarchive failed"));
	for (size_t i = 0; rc == 0 && i < 3; i++) {
		struct archive_entry *e = files[i][1] ? ar->entry_new() : NULL;
		if (files[i][1])
			rc = e ? add_file(ar, a, e, files[i][0], files[i][1], err) : kb_fail(err, ENOMEM, NULL, "cloud-init: making the seed");
		if (e)
			ar->entry_free(e);
	}
	if (rc == 0 && ar->write_close(a) != ARCHIVE_OK)
		rc = kb_fail(err, ar->error_errno(a), NULL, "cloud-init: making the seed: %s",
			     kb_archive_error(ar, a, "libarchive failed"));
	if (a)
		ar->write_free(a);
	if (rc < 0) {
		free(*iso);
		*iso = NULL;
		*len = 0;
	}
	return rc;
}

/* A descriptor's text field: trailing spaces off; UCS-2 (Joliet) read as ASCII, false for anything else. */
static bool field(const unsigned char *p, size_t n, bool ucs2, char *out, size_t size)
{
	size_t used = 0;
	for (size_t i = 0; i < n; i += ucs2 ? 2 : 1) {
		unsigned c = ucs2 ? (unsigned)p[i] << 8 | p[i + 1] : p[i];
		if (c > 0x7e || (c < 0x20 && c != 0) || used + 1 >= size)
			return false;
		out[used++] = (char)c;
	}
	while (used && (out[used - 1] == ' ' || out[used - 1] == '\0'))
		used--;
	out[used] = '\0';
	return true;
}

bool kb_seed_owner(const void *head, size_t len, char *owner, size_t size)
{
	const unsigned char *p = head;
	char text[130];
	bool cidata = false, ours = false;
	owner[0] = '\0';
	/* Volume descriptors from sector 16: the primary (1) has the volume id, Joliet's (2) the publisher and application. */
	for (size_t at = 32768; at + 2048 <= len && p[at] != 255; at += 2048) {
		if (memcmp(p + at + 1, "CD001", 5) != 0)
			return false;
		if (p[at] == 1)
			cidata = field(p + at + 40, 32, false, text, sizeof(text)) && !strcasecmp(text, "cidata");
		else if (p[at] == 2 && p[at + 88] == '%' && p[at + 89] == '/')
			ours = field(p + at + 318, 128, true, text, sizeof(text)) && !strcmp(text, "kvmbox") &&
			       field(p + at + 574, 128, true, owner, size);
	}
	if (!(cidata && ours))
		owner[0] = '\0';
	return cidata && ours;
}
