/*
 * cloud-init's NoCloud seed for a guest's first boot, as virt-install's
 * --cloud-init makes it: an ISO 9660 image with volume id "cidata" holding
 * user-data, meta-data and, when given, network-config.
 *
 *   user-data=FILE       the user-data as it is (then ssh-key= and the password words are refused:
 *                        virt-install ignores them silently)
 *   meta-data=FILE       the meta-data as it is; without it "instance-id: NAME" and
 *                        "local-hostname: NAME" (virt-install writes an empty one)
 *   network-config=FILE  network-config as it is; without it there is none
 *   ssh-key=FILE         root's authorized key, one OpenSSH public key line (root-ssh-key= too)
 *   root-password-generate=on   a random root password, expired at the first login
 *   disable=on           cloud-init disables itself after the first boot
 *
 * Bare --cloud-init is virt-install's root-password-generate=on,disable=on.
 * Only files the user named are read, each bounded; nothing else is looked at.
 */
#ifndef KVMBOX_CLOUDINIT_H
#define KVMBOX_CLOUDINIT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/bundle/archive.h"
#include "kvmbox/core/error.h"

#define KB_SEED_FILE_MAX (1u << 20) /* user-data, meta-data, network-config */
#define KB_SEED_KEY_MAX (16u << 10) /* ssh-key */
#define KB_SEED_HEAD (32768 + 4 * 2048) /* what kb_seed_owner reads: the system area and the first descriptors */

struct kb_cloudinit {
	bool on;
	char user_data[PATH_MAX];
	char meta_data[PATH_MAX];
	char network_config[PATH_MAX];
	char ssh_key[PATH_MAX];
	bool root_password_generate;
	bool disable;
};

/* The word's syntax into @ci (@value NULL: the bare word). Returns 0, or -1 with @err naming the option. */
int kb_cloudinit_parse(struct kb_cloudinit *ci, const char *value, struct kb_error *err);

/* A seed's files, made from the words. */
struct kb_seed {
	char *user_data;
	char *meta_data;
	char *network_config; /* NULL: none */
	char password[24];    /* the generated root password; "" when none (or not generated yet) */
};

/*
 * Read the files @ci names (each a regular file within its bound; the key one
 * OpenSSH public key line) and compose the seed of domain @name. With
 * @generate the root password is made now (apply); without, the user-data
 * holds a placeholder (plan: the files checked, nothing random). Returns 0,
 * or -1 with @err naming the option and the file.
 */
int kb_seed_make(const struct kb_cloudinit *ci, const char *name, bool generate, struct kb_seed *seed,
		 struct kb_error *err);
/* How many files the seed's ISO holds (2 or 3). */
unsigned kb_seed_files(const struct kb_seed *seed);
/* Free the files and forget the password. */
void kb_seed_free(struct kb_seed *seed);

/*
 * The seed as an ISO 9660 image in memory (*@iso malloc'ed): volume id
 * "cidata" (what NoCloud looks for), Joliet and Rock Ridge names, publisher
 * "kvmbox" and application id @name in the Joliet descriptor: whose seed it is.
 */
int kb_seed_iso(const struct kb_archive *ar, const struct kb_seed *seed, const char *name, char **iso, size_t *len,
		struct kb_error *err);

/*
 * Whether @head (the first @len bytes of a file, KB_SEED_HEAD for a whole
 * answer) is a cidata seed kvmbox made; its domain's name into @owner.
 */
bool kb_seed_owner(const void *head, size_t len, char *owner, size_t size);

/* Whether @line (one line, no newline) is an OpenSSH public key: a known type, its base64 blob naming that type. */
bool kb_ssh_public_key(const char *line);

#endif
