/* Values found in libvirt domain XML: memory amounts and CPU sets. */
#ifndef KVMBOX_DOMXML_H
#define KVMBOX_DOMXML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A libvirt memory amount (<memory unit='GiB'>8</memory>) in KiB; 0 when unreadable. No unit = KiB. */
unsigned long long kb_memory_kib(const char *value, const char *unit);

/*
 * A size a user typed ("4G", "512M", "1T", "2048k", "1GiB", "4096") in bytes;
 * the units are binary, no unit is bytes. -1 when not a size or over 2^64.
 */
int kb_size_parse(const char *text, unsigned long long *bytes);

/* A set of CPU numbers below KB_CPUSET_MAX. */
#define KB_CPUSET_MAX 4096
struct kb_cpuset {
	uint64_t bits[KB_CPUSET_MAX / 64];
};

/*
 * Parse libvirt's and the kernel's CPU list syntax ("0-3,^2,8", "0-7", "5")
 * into @set. Returns 0, or -1 when @text is not such a list (or names a CPU
 * at or above KB_CPUSET_MAX).
 */
int kb_cpuset_parse(const char *text, struct kb_cpuset *set);
bool kb_cpuset_has(const struct kb_cpuset *set, unsigned cpu);
unsigned kb_cpuset_count(const struct kb_cpuset *set);
void kb_cpuset_add(struct kb_cpuset *set, unsigned cpu);
/* @set in the kernel's list syntax ("0-27,56"), into @buf; "" for an empty set. */
const char *kb_cpuset_format(const struct kb_cpuset *set, char *buf, size_t size);
/* The lowest CPU in both sets, or -1. */
int kb_cpuset_first_common(const struct kb_cpuset *a, const struct kb_cpuset *b);
/* The lowest CPU in @a that is not in @b, or -1. */
int kb_cpuset_first_missing(const struct kb_cpuset *a, const struct kb_cpuset *b);

#endif
