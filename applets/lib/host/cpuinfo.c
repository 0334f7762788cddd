/* /proc/cpuinfo parser; see kvmbox/host/cpuinfo.h. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/host/cpuinfo.h"
#include "kvmbox/core/file.h"

/* A "key : value" line, both trimmed; slices of the input. */
struct field {
	const char *key, *value;
	size_t key_len, value_len;
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static bool split_field(const char *line, size_t len, struct field *f)
{
	const char *colon = memchr(line, ':', len);
	if (!colon)
		return false;
	f->key = line;
	f->key_len = (size_t)(colon - line);
	while (f->key_len > 0 && is_blank(f->key[f->key_len - 1]))
		f->key_len--;
	f->value = colon + 1;
	f->value_len = len - (size_t)(f->value - line);
	while (f->value_len > 0 && is_blank(*f->value))
		f->value++, f->value_len--;
	while (f->value_len > 0 && is_blank(f->value[f->value_len - 1]))
		f->value_len--;
	return true;
}

static bool key_is(const struct field *f, const char *key)
{
	return f->key_len == strlen(key) && memcmp(f->key, key, f->key_len) == 0;
}

static bool value_is(const struct field *f, const char *value)
{
	return f->value_len == strlen(value) && memcmp(f->value, value, f->value_len) == 0;
}

static bool value_starts(const struct field *f, const char *prefix)
{
	size_t n = strlen(prefix);
	return f->value_len >= n && memcmp(f->value, prefix, n) == 0;
}

/* Whether the space-separated list in @f holds @word as a whole word. */
static bool has_word(const struct field *f, const char *word)
{
	size_t wlen = strlen(word);
	const char *p = f->value, *end = f->value + f->value_len;
	while (p < end) {
		while (p < end && is_blank(*p))
			p++;
		const char *w = p;
		while (p < end && !is_blank(*p))
			p++;
		if ((size_t)(p - w) == wlen && memcmp(w, word, wlen) == 0)
			return true;
	}
	return false;
}

static void copy_value(char *dst, size_t size, const struct field *f)
{
	size_t n = f->value_len < size - 1 ? f->value_len : size - 1;
	memcpy(dst, f->value, n);
	dst[n] = '\0';
}

/* What the current "processor" block has seen, folded into the totals when it ends. */
struct cpu_block {
	bool open;
	long number;
	bool vmx, svm, hypervisor;
};

static void close_block(struct cpu_block *b, struct kb_cpuinfo *out)
{
	if (!b->open)
		return;
	out->with_vmx += b->vmx;
	out->with_svm += b->svm;
	out->with_virt += b->vmx || b->svm;
	out->with_hypervisor += b->hypervisor;
	if (!b->vmx && !b->svm && out->first_without_virt < 0)
		out->first_without_virt = (int)(b->number >= 0 && b->number < 1 << 30 ? b->number : 0);
	*b = (struct cpu_block){ 0 };
}

static void parse_field(const struct field *f, struct cpu_block *cpu, struct kb_cpuinfo *out)
{
	if (key_is(f, "processor")) {
		/* x86, arm64 and riscv start a CPU with "processor : N"; s390 has a summary line. */
		char num[24];
		copy_value(num, sizeof(num), f);
		char *end;
		long n = strtol(num, &end, 10);
		if (end == num || *end != '\0')
			return;
		close_block(cpu, out);
		cpu->open = true;
		cpu->number = n;
		out->cpus++;
	} else if (key_is(f, "vendor_id")) {
		if (out->arch == KB_ARCH_UNKNOWN)
			out->arch = value_starts(f, "IBM/S390") ? KB_ARCH_S390 : KB_ARCH_X86;
		if (out->vendor == KB_VENDOR_UNKNOWN && out->arch == KB_ARCH_X86)
			out->vendor = value_is(f, "GenuineIntel")   ? KB_VENDOR_INTEL
				      : value_is(f, "AuthenticAMD") ? KB_VENDOR_AMD
				      : value_is(f, "HygonGenuine") ? KB_VENDOR_HYGON
								    : KB_VENDOR_OTHER;
	} else if (key_is(f, "flags")) {
		out->arch = KB_ARCH_X86;
		if (cpu->open) {
			cpu->vmx |= has_word(f, "vmx");
			cpu->svm |= has_word(f, "svm");
			cpu->hypervisor |= has_word(f, "hypervisor");
		}
	} else if (key_is(f, "CPU implementer") || key_is(f, "Features")) {
		if (out->arch == KB_ARCH_UNKNOWN)
			out->arch = KB_ARCH_ARM64;
	} else if (key_is(f, "isa") && value_starts(f, "rv")) {
		out->arch = KB_ARCH_RISCV;
	} else if (key_is(f, "cpu") && (value_starts(f, "POWER") || value_starts(f, "PPC"))) {
		out->arch = KB_ARCH_PPC;
		if (!out->model[0])
			copy_value(out->model, sizeof(out->model), f);
	} else if (key_is(f, "model name") && !out->model[0]) {
		copy_value(out->model, sizeof(out->model), f);
	}
}

void kb_cpuinfo_parse(const char *text, size_t len, struct kb_cpuinfo *out)
{
	*out = (struct kb_cpuinfo){ .first_without_virt = -1 };
	struct cpu_block cpu = { 0 };
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t line_len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct field f;
		if (split_field(p, line_len, &f))
			parse_field(&f, &cpu, out);
		p += line_len + (nl ? 1 : 0);
	}
	close_block(&cpu, out);
}

/* The largest /proc/cpuinfo accepted: about 2 KiB per CPU, so room for 8192 CPUs. */
#define CPUINFO_MAX (16u << 20)

int kb_cpuinfo_load(const struct kb_ctx *ctx, struct kb_cpuinfo *out, struct kb_error *err)
{
	char *text = NULL;
	size_t len = 0;
	int rc = kb_read_file(ctx, "/proc/cpuinfo", CPUINFO_MAX, &text, &len, err);
	kb_cpuinfo_parse(text ? text : "", len, out);
	free(text);
	return rc;
}

const char *kb_arch_name(enum kb_arch arch)
{
	switch (arch) {
	case KB_ARCH_X86: return "x86_64";
	case KB_ARCH_ARM64: return "arm64";
	case KB_ARCH_PPC: return "ppc64";
	case KB_ARCH_S390: return "s390x";
	case KB_ARCH_RISCV: return "riscv64";
	default: return "unknown";
	}
}

const char *kb_vendor_name(enum kb_cpu_vendor vendor)
{
	switch (vendor) {
	case KB_VENDOR_INTEL: return "Intel";
	case KB_VENDOR_AMD: return "AMD";
	case KB_VENDOR_HYGON: return "Hygon";
	case KB_VENDOR_OTHER: return "other";
	default: return "unknown";
	}
}
