/* Unit tests for src/cpu/cpumodel.c: -cpu models and feature flags applied
 * to a fake KVM_GET_SUPPORTED_CPUID table.  Expected bit positions are
 * written out here from the Intel SDM / AMD APM, independently of the
 * feature table in cpumodel.c. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <glib/gstdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/cpu.h"
#include "cpumodel_priv.h"

enum { EAX, EBX, ECX, EDX };

#define MAXENT 64
/* hdr.entries[] has room for MAXENT entries (a union: clang rejects a
 * struct with a flexible array member that is not at the end). */
struct table {
	union {
		struct kvm_cpuid2 hdr;
		uint8_t room[sizeof(struct kvm_cpuid2) + MAXENT * sizeof(struct kvm_cpuid_entry2)];
	};
};

static void add(struct table *t, uint32_t fn, int idx, uint32_t a, uint32_t b, uint32_t c,
		uint32_t d)
{
	struct kvm_cpuid_entry2 *e = &t->hdr.entries[t->hdr.nent++];
	ck_assert_uint_le(t->hdr.nent, MAXENT);
	memset(e, 0, sizeof(*e));
	e->function = fn;
	if (idx >= 0) {
		e->index = idx;
		e->flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	}
	e->eax = a;
	e->ebx = b;
	e->ecx = c;
	e->edx = d;
}

static void vendor_words(const char *v, uint32_t *b, uint32_t *d, uint32_t *c)
{
	memcpy(b, v, 4);
	memcpy(d, v + 4, 4);
	memcpy(c, v + 8, 4);
}

/* A host that supports everything: all feature words all ones. */
static struct table *full_table(void)
{
	struct table *t = g_new0(struct table, 1);
	uint32_t b, c, d;
	const uint32_t ones = 0xffffffff;
	vendor_words("AuthenticAMD", &b, &d, &c);
	add(t, 0, -1, 0x1f, b, c, d);
	add(t, 1, -1, 0x00a50f00, 0x00000800, ones, ones);
	add(t, 2, -1, 1, 2, 3, 4);
	add(t, 4, 0, 0x121, 0x1c0003f, 0x3f, 0);
	add(t, 4, 1, 0x122, 0x1c0003f, 0x3f, 0);
	add(t, 5, -1, ones, ones, ones, ones);
	add(t, 6, -1, ones, ones, ones, ones);
	add(t, 7, 0, 1, ones, ones, ones);
	add(t, 7, 1, ones, ones, ones, ones);
	add(t, 0xa, -1, ones, ones, ones, ones);
	add(t, 0xb, 0, 1, 1, 0x100, 0);
	add(t, 0xb, 1, 4, 4, 0x201, 0);
	add(t, 0xd, 0, 0x2e7, 0x340, 0xa88, 0);
	add(t, 0xd, 1, 0xf, 0x340, 0, 0);
	add(t, 0xd, 2, 0x100, 0x240, 0, 0);
	add(t, 0x14, 0, ones, ones, ones, ones);
	add(t, 0x1f, 0, 1, 1, 0x100, 0);
	vendor_words("KVMKVMKVM\0\0\0", &b, &d, &c);
	add(t, 0x40000000, -1, 0x40000001, b, c, d);
	add(t, 0x40000001, -1, 0x0100fefb, 0, 0, 0);
	add(t, 0x80000000, -1, 0x80000021, 0, 0, 0);
	add(t, 0x80000001, -1, ones, ones, ones, ones);
	add(t, 0x80000002, -1, 0x20444d41, 0x657a7952, 0x2035206e, 0x30303935);
	add(t, 0x80000003, -1, 0x2d363120, 0x65726f43, 0x6f725020, 0x73736563);
	add(t, 0x80000004, -1, 0x2020726f, 0x20202020, 0x20202020, 0x00202020);
	add(t, 0x80000005, -1, 1, 2, 3, 4);
	add(t, 0x80000007, -1, ones, ones, ones, ones);
	add(t, 0x80000008, -1, 0x3030, ones, ones, ones);
	add(t, 0x8000000a, -1, 1, 0x10, 0, ones);
	add(t, 0x8000001f, -1, ones, ones, ones, ones);
	return t;
}

static struct kvm_cpuid_entry2 *get(struct table *t, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < t->hdr.nent; i++)
		if (t->hdr.entries[i].function == fn && t->hdr.entries[i].index == idx)
			return &t->hdr.entries[i];
	return NULL;
}

static uint32_t reg(struct table *t, uint32_t fn, uint32_t idx, int r)
{
	struct kvm_cpuid_entry2 *e = get(t, fn, idx);
	ck_assert_msg(e != NULL, "leaf 0x%x.%u missing", fn, idx);
	switch (r) {
	case EAX: return e->eax;
	case EBX: return e->ebx;
	case ECX: return e->ecx;
	default: return e->edx;
	}
}

static bool bit(struct table *t, uint32_t fn, uint32_t idx, int r, int b)
{
	return (reg(t, fn, idx, r) >> b) & 1;
}

static void check_vendor(struct table *t, uint32_t fn, const char *want)
{
	char v[13] = { 0 };
	struct kvm_cpuid_entry2 *e = get(t, fn, 0);
	ck_assert_ptr_nonnull(e);
	memcpy(v, &e->ebx, 4);
	memcpy(v + 4, &e->edx, 4);
	memcpy(v + 8, &e->ecx, 4);
	ck_assert_str_eq(v, want);
}

static void brand(struct table *t, char out[49])
{
	memset(out, 0, 49);
	for (uint32_t i = 0; i < 3; i++) {
		struct kvm_cpuid_entry2 *e = get(t, 0x80000002 + i, 0);
		ck_assert_ptr_nonnull(e);
		memcpy(out + 16 * i, &e->eax, 4);
		memcpy(out + 16 * i + 4, &e->ebx, 4);
		memcpy(out + 16 * i + 8, &e->ecx, 4);
		memcpy(out + 16 * i + 12, &e->edx, 4);
	}
}

static void apply_ok(struct table *t, const char *spec)
{
	char *err = NULL;
	int r = kl_cpu_model_apply(&t->hdr, spec, &err);
	ck_assert_msg(r == 0, "apply '%s' failed: %s", spec, err ? err : "(no message)");
	ck_assert_ptr_null(err);
}

/* Apply must fail, name `needle` in the message, and leave the table as is. */
static void apply_fails(struct table *t, const char *spec, const char *needle)
{
	struct table before = *t;
	char *err = NULL;
	int r = kl_cpu_model_apply(&t->hdr, spec, &err);
	ck_assert_msg(r == -1, "apply '%s' should fail", spec);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, needle) != NULL, "error '%s' does not name '%s'", err, needle);
	ck_assert_int_eq(memcmp(&before, t, sizeof(before)), 0);
	g_free(err);
}

START_TEST(test_names)
{
	const char *const *n = kl_cpu_model_names();
	const char *want[] = { "host", "max", "kvmlite-safe", "qemu64" };
	int count = 0;
	while (n[count])
		count++;
	ck_assert_int_eq(count, 4);
	for (int i = 0; i < 4; i++) {
		bool found = false;
		for (int j = 0; n[j]; j++)
			found |= !strcmp(n[j], want[i]);
		ck_assert_msg(found, "model %s not listed", want[i]);
		struct table *t = full_table();
		apply_ok(t, want[i]);
		g_free(t);
	}
}
END_TEST

START_TEST(test_host_and_max_untouched)
{
	const char *specs[] = { "host", "max" };
	for (int i = 0; i < 2; i++) {
		struct table *t = full_table(), *ref = full_table();
		apply_ok(t, specs[i]);
		ck_assert_int_eq(memcmp(t, ref, sizeof(*t)), 0);
		g_free(t);
		g_free(ref);
	}
}
END_TEST

/* Features KVM's instruction emulator cannot execute, (leaf, sub, reg, bit). */
static const struct {
	const char *name;
	uint32_t fn, idx;
	int r, b;
} hidden[] = {
	{ "xsave", 1, 0, ECX, 26 }, { "osxsave", 1, 0, ECX, 27 },
	{ "avx", 1, 0, ECX, 28 }, { "fma", 1, 0, ECX, 12 }, { "f16c", 1, 0, ECX, 29 },
	{ "popcnt", 1, 0, ECX, 23 }, { "movbe", 1, 0, ECX, 22 },
	{ "rdrand", 1, 0, ECX, 30 }, { "tsc-deadline", 1, 0, ECX, 24 },
	{ "sse4.1", 1, 0, ECX, 19 }, { "sse4.2", 1, 0, ECX, 20 },
	{ "ssse3", 1, 0, ECX, 9 }, { "aes", 1, 0, ECX, 25 },
	{ "pclmulqdq", 1, 0, ECX, 1 }, { "vmx", 1, 0, ECX, 5 },
	{ "monitor", 1, 0, ECX, 3 }, { "pcid", 1, 0, ECX, 17 },
	{ "avx2", 7, 0, EBX, 5 }, { "smep", 7, 0, EBX, 7 }, { "smap", 7, 0, EBX, 20 },
	{ "rdseed", 7, 0, EBX, 18 }, { "avx512f", 7, 0, EBX, 16 },
	{ "avx512bw", 7, 0, EBX, 30 }, { "avx512vl", 7, 0, EBX, 31 },
	{ "fsgsbase", 7, 0, EBX, 0 }, { "invpcid", 7, 0, EBX, 10 },
	{ "pku", 7, 0, ECX, 3 }, { "avx512vbmi", 7, 0, ECX, 1 },
	{ "md-clear", 7, 0, EDX, 10 }, { "arch-capabilities", 7, 0, EDX, 29 },
	{ "avx512-bf16", 7, 1, EAX, 5 },
	{ "xsaveopt", 0xd, 1, EAX, 0 }, { "xsavec", 0xd, 1, EAX, 1 },
	{ "xsaves", 0xd, 1, EAX, 3 },
	{ "svm", 0x80000001, 0, ECX, 2 }, { "abm", 0x80000001, 0, ECX, 5 },
	{ "pdpe1gb", 0x80000001, 0, EDX, 26 }, { "rdtscp", 0x80000001, 0, EDX, 27 },
	{ "invtsc", 0x80000007, 0, EDX, 8 },
};

static void check_baseline(struct table *t)
{
	ck_assert_uint_eq(reg(t, 0, 0, EAX), 0xd);
	ck_assert_uint_eq(reg(t, 0x80000000, 0, EAX), 0x80000008);
	ck_assert_ptr_null(get(t, 0x14, 0));
	ck_assert_ptr_null(get(t, 0x1f, 0));
	ck_assert_ptr_null(get(t, 0x8000000a, 0));
	ck_assert_ptr_null(get(t, 0x8000001f, 0));
	ck_assert_ptr_nonnull(get(t, 0xb, 1));
	/* KVM's paravirt leaves pass through */
	ck_assert_uint_eq(reg(t, 0x40000001, 0, EAX), 0x0100fefb);
	for (size_t i = 0; i < G_N_ELEMENTS(hidden); i++)
		ck_assert_msg(!bit(t, hidden[i].fn, hidden[i].idx, hidden[i].r, hidden[i].b),
			      "%s still visible", hidden[i].name);
	/* leaf 1: sse3 cx16 x2apic hypervisor */
	ck_assert_uint_eq(reg(t, 1, 0, ECX), (1u << 0) | (1u << 13) | (1u << 21) | (1u << 31));
	/* fpu sse sse2 fxsr mmx cmov cx8 apic pae tsc msr ... stay */
	const int l1d[] = { 0, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 23,
			    24, 25, 26 };
	for (size_t i = 0; i < G_N_ELEMENTS(l1d); i++)
		ck_assert_msg(bit(t, 1, 0, EDX, l1d[i]), "CPUID.1:EDX bit %d lost", l1d[i]);
	ck_assert(!bit(t, 1, 0, EDX, 27)); /* ss */
	ck_assert(!bit(t, 1, 0, EDX, 29)); /* tm */
	ck_assert_uint_eq(reg(t, 1, 0, EAX), 0x00060fb1); /* family 15 model 107 */
	ck_assert_uint_eq(reg(t, 1, 0, EBX), 0x00000800); /* topology left alone */
	/* leaf 7: only erms, no subleaf 1 */
	ck_assert_uint_eq(reg(t, 7, 0, EAX), 0);
	ck_assert_uint_eq(reg(t, 7, 0, ECX), 0);
	ck_assert_uint_eq(reg(t, 7, 0, EDX), 0);
	ck_assert_uint_eq(reg(t, 7, 1, EAX), 0);
	for (uint32_t i = 0; i <= 2; i++)
		ck_assert_uint_eq(reg(t, 0xd, i, EAX) | reg(t, 0xd, i, EBX) |
				  reg(t, 0xd, i, ECX) | reg(t, 0xd, i, EDX), 0);
	ck_assert_uint_eq(reg(t, 0xa, 0, EAX), 0);
	ck_assert_uint_eq(reg(t, 5, 0, ECX), 0);
	ck_assert_uint_eq(reg(t, 6, 0, EAX), 1u << 2);
	/* 0x80000001: lahf-lm; syscall nx lm */
	ck_assert_uint_eq(reg(t, 0x80000001, 0, ECX), 1u << 0);
	ck_assert(bit(t, 0x80000001, 0, EDX, 11));
	ck_assert(bit(t, 0x80000001, 0, EDX, 20));
	ck_assert(bit(t, 0x80000001, 0, EDX, 29));
	ck_assert_uint_eq(reg(t, 0x80000008, 0, EAX), 0x3030);
	ck_assert_uint_eq(reg(t, 0x80000008, 0, EBX), 0);
}

START_TEST(test_safe_model)
{
	struct table *t = full_table();
	apply_ok(t, "kvmlite-safe");
	check_baseline(t);
	ck_assert_uint_eq(reg(t, 7, 0, EBX), 1u << 9); /* erms */
	check_vendor(t, 0, "GenuineIntel");
	check_vendor(t, 0x80000000, "GenuineIntel");
	/* Intel: no AMD aliases of leaf-1 bits in 0x80000001:EDX */
	ck_assert_uint_eq(reg(t, 0x80000001, 0, EDX), (1u << 11) | (1u << 20) | (1u << 29));
	char b[49];
	brand(t, b);
	ck_assert_str_eq(b, "kvmlite safe virtual CPU");
	g_free(t);
}
END_TEST

START_TEST(test_qemu64_model)
{
	struct table *t = full_table();
	apply_ok(t, "qemu64");
	check_baseline(t);
	ck_assert_uint_eq(reg(t, 7, 0, EBX), 0);
	check_vendor(t, 0, "AuthenticAMD");
	check_vendor(t, 0x80000000, "AuthenticAMD");
	/* AMD mirrors fpu, pse, tsc, cmov, mmx, fxsr in 0x80000001:EDX */
	const int alias[] = { 0, 3, 4, 15, 23, 24 };
	for (size_t i = 0; i < G_N_ELEMENTS(alias); i++)
		ck_assert(bit(t, 0x80000001, 0, EDX, alias[i]));
	ck_assert(!bit(t, 0x80000001, 0, EDX, 25)); /* sse is not an alias */
	char b[49];
	brand(t, b);
	ck_assert_str_eq(b, "QEMU Virtual CPU version 2.5+");
	g_free(t);

	/* the command line from docs: qemu64 with Intel vendor = no aliases */
	t = full_table();
	apply_ok(t, "qemu64,vendor=GenuineIntel,+x2apic,-smap,-smep,-popcnt,-sse4.2,-sse4.1,"
		    "-ssse3,-movbe,-rdrand,-aes,-pclmulqdq,-tsc-deadline");
	check_baseline(t);
	check_vendor(t, 0, "GenuineIntel");
	ck_assert(!bit(t, 0x80000001, 0, EDX, 0));
	g_free(t);
}
END_TEST

/* Every named feature flips exactly its bit, with +/-, =on/off and bare. */
static const struct {
	const char *name;
	uint32_t fn, idx;
	int r, b;
} flags[] = {
	{ "x2apic", 1, 0, ECX, 21 }, { "hypervisor", 1, 0, ECX, 31 },
	{ "pdpe1gb", 0x80000001, 0, EDX, 26 }, { "lm", 0x80000001, 0, EDX, 29 },
	{ "nx", 0x80000001, 0, EDX, 20 }, { "sse", 1, 0, EDX, 25 },
	{ "sse2", 1, 0, EDX, 26 }, { "pni", 1, 0, ECX, 0 }, { "sse3", 1, 0, ECX, 0 },
	{ "vmx", 1, 0, ECX, 5 }, { "svm", 0x80000001, 0, ECX, 2 },
	{ "sse4_1", 1, 0, ECX, 19 }, { "sse4-2", 1, 0, ECX, 20 },
	{ "tsc_deadline", 1, 0, ECX, 24 }, { "syscall", 0x80000001, 0, EDX, 11 },
	{ "lahf_lm", 0x80000001, 0, ECX, 0 }, { "erms", 7, 0, EBX, 9 },
	{ "avx512cd", 7, 0, EBX, 28 }, { "sha-ni", 7, 0, EBX, 29 },
	{ "la57", 7, 0, ECX, 16 }, { "spec-ctrl", 7, 0, EDX, 26 },
	{ "avx-vnni", 7, 1, EAX, 4 }, { "kvmclock", 0x40000001, 0, EAX, 0 },
	{ "kvm-pv-unhalt", 0x40000001, 0, EAX, 7 }, { "arat", 6, 0, EAX, 2 },
	{ "XSAVE", 1, 0, ECX, 26 },
};

START_TEST(test_feature_flags)
{
	G_STATIC_ASSERT(G_N_ELEMENTS(hidden) > 0);
	for (int pass = 0; pass < 2; pass++) {
		size_t n = pass ? G_N_ELEMENTS(flags) : G_N_ELEMENTS(hidden);
		for (size_t i = 0; i < n; i++) {
			const char *name = pass ? flags[i].name : hidden[i].name;
			uint32_t fn = pass ? flags[i].fn : hidden[i].fn;
			uint32_t idx = pass ? flags[i].idx : hidden[i].idx;
			int r = pass ? flags[i].r : hidden[i].r, b = pass ? flags[i].b : hidden[i].b;
			const char *off_forms[] = { "host,-%s", "host,%s=off" };
			const char *on_forms[] = { "host,-%s,+%s", "host,%s=off,%s=on",
						   "host,-%s,%s" };
			for (int f = 0; f < 2; f++) {
				struct table *t = full_table(), *ref = full_table();
				gchar *spec = g_strdup_printf(off_forms[f], name);
				apply_ok(t, spec);
				ck_assert_msg(!bit(t, fn, idx, r, b), "%s left the bit set", spec);
				/* and nothing else changed */
				*(r == EAX ? &get(ref, fn, idx)->eax : r == EBX ? &get(ref, fn, idx)->ebx :
				  r == ECX ? &get(ref, fn, idx)->ecx : &get(ref, fn, idx)->edx) &= ~(1u << b);
				ck_assert_msg(memcmp(t, ref, sizeof(*t)) == 0, "%s changed other bits", spec);
				g_free(spec);
				g_free(t);
				g_free(ref);
			}
			for (int f = 0; f < 3; f++) {
				struct table *t = full_table();
				gchar *spec = g_strdup_printf(on_forms[f], name, name);
				apply_ok(t, spec);
				ck_assert_msg(bit(t, fn, idx, r, b), "%s left the bit clear", spec);
				g_free(spec);
				g_free(t);
			}
		}
	}
}
END_TEST

START_TEST(test_reenable_on_safe)
{
	struct table *t = full_table();
	apply_ok(t, "kvmlite-safe,+popcnt,sse4.1=on,sse4_2=on,+pdpe1gb,-erms,-x2apic");
	ck_assert(bit(t, 1, 0, ECX, 23));
	ck_assert(bit(t, 1, 0, ECX, 19));
	ck_assert(bit(t, 1, 0, ECX, 20));
	ck_assert(!bit(t, 1, 0, ECX, 21));
	ck_assert(bit(t, 0x80000001, 0, EDX, 26));
	ck_assert_uint_eq(reg(t, 7, 0, EBX), 0);
	ck_assert(!bit(t, 1, 0, ECX, 26));
	ck_assert_uint_eq(reg(t, 0xd, 0, EAX), 0);
	g_free(t);

	/* +xsave brings KVM's XSAVE leaf back */
	t = full_table();
	apply_ok(t, "kvmlite-safe,+xsave");
	ck_assert(bit(t, 1, 0, ECX, 26));
	ck_assert_uint_eq(reg(t, 0xd, 0, EAX), 0x2e7);
	ck_assert_uint_eq(reg(t, 0xd, 1, EAX), 0xf);
	ck_assert_uint_eq(reg(t, 0xd, 2, EBX), 0x240);
	g_free(t);

	/* vendor and model-id on host */
	t = full_table();
	apply_ok(t, "host,vendor=GenuineIntel,model-id=Test CPU");
	check_vendor(t, 0, "GenuineIntel");
	char b[49];
	brand(t, b);
	ck_assert_str_eq(b, "Test CPU");
	g_free(t);
}
END_TEST

START_TEST(test_errors)
{
	struct table *t = full_table();
	apply_fails(t, "pentium9", "pentium9");
	apply_fails(t, "", "''");
	apply_fails(t, "host,+nosuchfeature", "nosuchfeature");
	apply_fails(t, "kvmlite-safe,-bogus", "bogus");
	apply_fails(t, "qemu64,+popcnt,frobnicate=on", "frobnicate");
	apply_fails(t, "host,x2apic=maybe", "maybe");
	apply_fails(t, "host,vendor=Intel", "Intel");
	apply_fails(t, "host,,+x2apic", "empty");
	apply_fails(t, "host,+", "empty");
	apply_fails(t, "host,model-id=0123456789012345678901234567890123456789012345678",
		    "model-id");
	g_free(t);

	/* a leaf KVM does not provide: + fails naming it, - is a no-op */
	t = g_new0(struct table, 1);
	uint32_t b, c, d;
	vendor_words("GenuineIntel", &b, &d, &c);
	add(t, 0, -1, 1, b, c, d);
	add(t, 1, -1, 0x806ec, 0, 0xffffffff, 0xffffffff);
	apply_fails(t, "host,+avx2", "avx2");
	apply_fails(t, "kvmlite-safe", "0x80000000");
	struct table ref = *t;
	apply_ok(t, "host,-avx2,-invtsc");
	ck_assert_int_eq(memcmp(&ref, t, sizeof(ref)), 0);
	g_free(t);
}
END_TEST

static gchar *write_tmp(const char *dir, const char *name, const char *text)
{
	gchar *p = g_build_filename(dir, name, NULL);
	ck_assert(g_file_set_contents(p, text, -1, NULL));
	return p;
}

START_TEST(test_host_detection)
{
	gchar *dir = g_dir_make_tmp("kl-cpumodel-XXXXXX", NULL);
	ck_assert_ptr_nonnull(dir);
	gchar *vmx = write_tmp(dir, "vmx", "processor\t: 0\nflags\t\t: fpu vme sse vmx ssse3\n");
	gchar *svm = write_tmp(dir, "svm", "processor\t: 0\nflags\t\t: fpu svm\n\n");
	gchar *none = write_tmp(dir, "none",
				"processor\t: 0\nflags\t\t: fpu vmxe svmx sse\nvmx flags\t: ept\n");
	gchar *nopvm = g_build_filename(dir, "no-such-dir", NULL);
	gchar *missing = g_build_filename(dir, "missing", NULL);

	ck_assert(!kl_host_is_emulated_at(vmx, nopvm));
	ck_assert(!kl_host_is_emulated_at(svm, nopvm));
	ck_assert(!kl_host_is_emulated_at(svm, NULL));
	ck_assert(kl_host_is_emulated_at(none, nopvm));
	ck_assert(kl_host_is_emulated_at(missing, nopvm));
	ck_assert(kl_host_is_emulated_at(vmx, dir)); /* PVM module present */

	ck_assert_str_eq(kl_cpu_default_model(true), "host");
	ck_assert_str_eq(kl_cpu_default_model(false), "host");

	/* NULL spec = the default model for this host */
	struct table *t = full_table(), *ref = full_table();
	apply_ok(t, NULL);
	apply_ok(ref, kl_cpu_default_model(kl_host_is_emulated()));
	ck_assert_int_eq(memcmp(t, ref, sizeof(*t)), 0);
	g_free(t);
	g_free(ref);

	g_unlink(vmx);
	g_unlink(svm);
	g_unlink(none);
	g_rmdir(dir);
	g_free(vmx);
	g_free(svm);
	g_free(none);
	g_free(nopvm);
	g_free(missing);
	g_free(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cpumodel");
	TCase *tc = tcase_create("cpumodel");
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_host_and_max_untouched);
	tcase_add_test(tc, test_safe_model);
	tcase_add_test(tc, test_qemu64_model);
	tcase_add_test(tc, test_feature_flags);
	tcase_add_test(tc, test_reenable_on_safe);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_host_detection);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
