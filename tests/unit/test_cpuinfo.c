/* /proc/cpuinfo parser: real layouts, and garbage, empty, huge and truncated input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/host/cpu.h"
#include "kvmbox/host/cpuinfo.h"
#include "test_helpers.h"
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static struct kb_cpuinfo parse_fixture(const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "tests/fixtures/cpuinfo/%s", name);
	size_t len;
	char *text = read_fixture(path, &len);
	struct kb_cpuinfo info;
	kb_cpuinfo_parse(text, len, &info);
	free(text);
	return info;
}

static void intel_with_vmx_on_every_cpu(void **state)
{
	(void)state;
	struct kb_cpuinfo c = parse_fixture("intel-vmx-4.txt");
	assert_int_equal(c.arch, KB_ARCH_X86);
	assert_int_equal(c.vendor, KB_VENDOR_INTEL);
	assert_string_equal(c.model, "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz");
	assert_int_equal(c.cpus, 4);
	assert_int_equal(c.with_vmx, 4);
	assert_int_equal(c.with_svm, 0);
	assert_int_equal(c.with_virt, 4);
	assert_int_equal(c.with_hypervisor, 0);
	assert_int_equal(c.first_without_virt, -1);
}

static void intel_one_cpu_without_vmx(void **state)
{
	(void)state;
	struct kb_cpuinfo c = parse_fixture("intel-one-missing.txt");
	assert_int_equal(c.cpus, 4);
	assert_int_equal(c.with_vmx, 3);
	assert_int_equal(c.first_without_virt, 2);
}

static void amd_with_svm(void **state)
{
	(void)state;
	struct kb_cpuinfo c = parse_fixture("amd-svm-2.txt");
	assert_int_equal(c.vendor, KB_VENDOR_AMD);
	assert_int_equal(c.cpus, 2);
	assert_int_equal(c.with_svm, 2);
	assert_int_equal(c.with_vmx, 0);
	/* "svm_lock" is another flag: only the whole word counts. */
}

static void amd_guest_without_svm(void **state)
{
	(void)state;
	struct kb_cpuinfo c = parse_fixture("amd-vm-no-svm.txt");
	assert_int_equal(c.cpus, 2);
	assert_int_equal(c.with_svm, 0);
	assert_int_equal(c.with_hypervisor, 2);
	assert_int_equal(c.first_without_virt, 0);
}

static void flag_substrings_do_not_count(void **state)
{
	(void)state;
	const char *text = "processor : 0\nvendor_id : AuthenticAMD\nflags : fpu svm_lock vmxx xsvm\n";
	struct kb_cpuinfo c;
	kb_cpuinfo_parse(text, strlen(text), &c);
	assert_int_equal(c.cpus, 1);
	assert_int_equal(c.with_svm, 0);
	assert_int_equal(c.with_vmx, 0);
}

static void arm64_is_recognised(void **state)
{
	(void)state;
	struct kb_cpuinfo c = parse_fixture("arm64.txt");
	assert_int_equal(c.arch, KB_ARCH_ARM64);
	assert_int_equal(c.vendor, KB_VENDOR_UNKNOWN);
	assert_int_equal(c.cpus, 2);
	assert_string_equal(kb_arch_name(c.arch), "arm64");
}

static void empty_input(void **state)
{
	(void)state;
	struct kb_cpuinfo c;
	kb_cpuinfo_parse("", 0, &c);
	assert_int_equal(c.cpus, 0);
	assert_int_equal(c.arch, KB_ARCH_UNKNOWN);
	assert_int_equal(c.first_without_virt, -1);
}

static void truncated_input_counts_the_cut_cpu_as_lacking(void **state)
{
	(void)state;
	struct kb_cpuinfo c = parse_fixture("truncated.txt");
	/* The first CPU is cut in the middle of its flags line, before "vmx". */
	assert_int_equal(c.cpus, 1);
	assert_int_equal(c.with_vmx, 0);
	assert_int_equal(c.first_without_virt, 0);
}

static void garbage_does_not_crash(void **state)
{
	(void)state;
	char junk[4096];
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof(junk); i++) {
		x = x * 1103515245 + 12345;
		junk[i] = (char)(x >> 16);
	}
	struct kb_cpuinfo c;
	kb_cpuinfo_parse(junk, sizeof(junk), &c);
	const char *colons = ":::\n:\nprocessor\nprocessor :\nprocessor : x\nflags\nflags :\n\n\n";
	kb_cpuinfo_parse(colons, strlen(colons), &c);
	assert_int_equal(c.cpus, 0);
	/* Not NUL-terminated: the parser must stop at len. */
	const char buf[] = { 'p', 'r', 'o', 'c', 'e', 's', 's', 'o', 'r', ':', '7' };
	kb_cpuinfo_parse(buf, sizeof(buf), &c);
	assert_int_equal(c.cpus, 1);
	assert_int_equal(c.first_without_virt, 7);
}

static void huge_input(void **state)
{
	(void)state;
	/* 4096 CPUs, the last without vmx. */
	size_t cap = 4096 * 80, used = 0;
	char *text = malloc(cap);
	for (int i = 0; i < 4096; i++)
		used += (size_t)snprintf(text + used, cap - used, "processor\t: %d\nvendor_id\t: GenuineIntel\nflags\t\t: fpu %s sse\n\n",
					 i, i == 4095 ? "nx" : "vmx");
	struct kb_cpuinfo c;
	kb_cpuinfo_parse(text, used, &c);
	free(text);
	assert_int_equal(c.cpus, 4096);
	assert_int_equal(c.with_vmx, 4095);
	assert_int_equal(c.first_without_virt, 4095);
}

/*
 * On the host, kb_cpu_cpuid answers leaves 1 and 0x80000001 from what glibc
 * read at start-up: the same registers the instruction gives (but leaf 1's
 * EBX, which holds the APIC ID of whichever CPU runs it).
 */
static void host_cpuid_matches_the_instruction(void **state)
{
	(void)state;
#if defined(__x86_64__) || defined(__i386__)
	struct kb_ctx ctx;
	kb_ctx_init(&ctx);
	static const uint32_t leaves[] = { KB_CPUID_LEAF_FEATURES, KB_CPUID_LEAF_EXT_FEATURES };
	for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		unsigned a, b, c, d;
		uint32_t regs[4];
		if (!__get_cpuid(leaves[i], &a, &b, &c, &d))
			continue;
		assert_int_equal(kb_cpu_cpuid(&ctx, 0, leaves[i], regs, NULL), 0);
		assert_int_equal(regs[0], a);
		if (leaves[i] != KB_CPUID_LEAF_FEATURES)
			assert_int_equal(regs[1], b);
		assert_int_equal(regs[2], c);
		assert_int_equal(regs[3], d);
	}
#else
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(intel_with_vmx_on_every_cpu),
		cmocka_unit_test(intel_one_cpu_without_vmx),
		cmocka_unit_test(amd_with_svm),
		cmocka_unit_test(amd_guest_without_svm),
		cmocka_unit_test(flag_substrings_do_not_count),
		cmocka_unit_test(arm64_is_recognised),
		cmocka_unit_test(empty_input),
		cmocka_unit_test(truncated_input_counts_the_cut_cpu_as_lacking),
		cmocka_unit_test(garbage_does_not_crash),
		cmocka_unit_test(huge_input),
		cmocka_unit_test(host_cpuid_matches_the_instruction),
	};
	return cmocka_run_group_tests_name("cpuinfo", tests, NULL, NULL);
}
