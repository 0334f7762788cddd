/* Values found in libvirt domain XML; see kvmbox/virt/domxml.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kvmbox/virt/domxml.h"

unsigned long long kb_memory_kib(const char *value, const char *unit)
{
	char *end;
	unsigned long long n = strtoull(value, &end, 10);
	if (end == value)
		return 0;
	static const struct {
		const char *unit;
		unsigned long long bytes;
	} units[] = {
		{ "b", 1 }, { "bytes", 1 }, { "KB", 1000 }, { "k", 1024 }, { "KiB", 1024 },
		{ "MB", 1000000 }, { "M", 1 << 20 }, { "MiB", 1 << 20 }, { "GB", 1000000000 },
		{ "G", 1 << 30 }, { "GiB", 1 << 30 }, { "TB", 1000000000000ull }, { "T", 1ull << 40 },
		{ "TiB", 1ull << 40 },
	};
	if (!unit)
		return n; /* libvirt's default unit is KiB */
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(unit, units[i].unit))
			return (n * units[i].bytes + 1023) / 1024;
	return 0;
}

int kb_size_parse(const char *text, unsigned long long *bytes)
{
	if (!text || *text < '0' || *text > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (errno == ERANGE)
		return -1;
	static const char units[] = "KMGTP";
	unsigned shift = 0;
	if (*end) {
		const char *u = strchr(units, toupper((unsigned char)*end));
		if (!u)
			return -1;
		shift = 10 * (unsigned)(u - units + 1);
		end++;
		if (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))
			end += strlen(end);
	}
	if (*end || (shift && n > (~0ull >> shift)))
		return -1;
	*bytes = n << shift;
	return 0;
}

static void cpuset_set(struct kb_cpuset *set, unsigned cpu, bool on)
{
	if (cpu >= KB_CPUSET_MAX)
		return;
	if (on)
		set->bits[cpu / 64] |= 1ull << (cpu % 64);
	else
		set->bits[cpu / 64] &= ~(1ull << (cpu % 64));
}

bool kb_cpuset_has(const struct kb_cpuset *set, unsigned cpu)
{
	return cpu < KB_CPUSET_MAX && (set->bits[cpu / 64] >> (cpu % 64)) & 1;
}

static int parse_cpu(const char **p, unsigned *cpu)
{
	if (!isdigit((unsigned char)**p))
		return -1;
	char *end;
	unsigned long n = strtoul(*p, &end, 10);
	if (n >= KB_CPUSET_MAX)
		return -1;
	*cpu = (unsigned)n;
	*p = end;
	return 0;
}

int kb_cpuset_parse(const char *text, struct kb_cpuset *set)
{
	memset(set, 0, sizeof(*set));
	const char *p = text;
	while (isspace((unsigned char)*p))
		p++;
	if (!*p)
		return -1;
	for (;;) {
		bool exclude = *p == '^';
		if (exclude)
			p++;
		unsigned first, last;
		if (parse_cpu(&p, &first) < 0)
			return -1;
		last = first;
		if (*p == '-') {
			p++;
			if (exclude || parse_cpu(&p, &last) < 0 || last < first)
				return -1;
		}
		for (unsigned cpu = first; cpu <= last; cpu++)
			cpuset_set(set, cpu, !exclude);
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			return 0;
		if (*p++ != ',')
			return -1;
		while (isspace((unsigned char)*p))
			p++;
	}
}

unsigned kb_cpuset_count(const struct kb_cpuset *set)
{
	unsigned n = 0;
	for (size_t i = 0; i < KB_CPUSET_MAX / 64; i++)
		n += (unsigned)__builtin_popcountll(set->bits[i]);
	return n;
}

int kb_cpuset_first_common(const struct kb_cpuset *a, const struct kb_cpuset *b)
{
	for (size_t i = 0; i < KB_CPUSET_MAX / 64; i++)
		if (a->bits[i] & b->bits[i])
			return (int)(i * 64) + __builtin_ctzll(a->bits[i] & b->bits[i]);
	return -1;
}

int kb_cpuset_first_missing(const struct kb_cpuset *a, const struct kb_cpuset *b)
{
	for (size_t i = 0; i < KB_CPUSET_MAX / 64; i++)
		if (a->bits[i] & ~b->bits[i])
			return (int)(i * 64) + __builtin_ctzll(a->bits[i] & ~b->bits[i]);
	return -1;
}

void kb_cpuset_add(struct kb_cpuset *set, unsigned cpu)
{
	cpuset_set(set, cpu, true);
}

const char *kb_cpuset_format(const struct kb_cpuset *set, char *buf, size_t size)
{
	size_t used = 0;
	buf[0] = '\0';
	for (unsigned cpu = 0; cpu < KB_CPUSET_MAX; cpu++) {
		if (!kb_cpuset_has(set, cpu))
			continue;
		unsigned last = cpu;
		while (last + 1 < KB_CPUSET_MAX && kb_cpuset_has(set, last + 1))
			last++;
		int n = last == cpu ? snprintf(buf + used, size - used, "%s%u", used ? "," : "", cpu)
				    : snprintf(buf + used, size - used, "%s%u-%u", used ? "," : "", cpu, last);
		if (n < 0 || (size_t)n >= size - used) {
			buf[used] = '\0'; /* truncated at a whole range */
			break;
		}
		used += (size_t)n;
		cpu = last;
	}
	return buf;
}
