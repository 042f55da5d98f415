/* CPU models: -cpu NAME[,+feat][,-feat][,feat=on|off][,vendor=S][,model-id=S]
 * applied to the table from KVM_GET_SUPPORTED_CPUID (see docs/cpu.md).
 *
 *   host, max      KVM's table untouched (then the properties).
 *   kvmlite-safe   a qemu64-like baseline with vendor GenuineIntel that keeps
 *                  only what KVM's instruction emulator can execute; the
 *                  default on hosts without hardware virtualisation (PVM).
 *   qemu64         QEMU's qemu64 as QEMU+KVM presents it (AuthenticAMD,
 *                  x2apic, hypervisor; no svm), same feature mask.
 *
 * Named models are masks over what KVM supports (a bit is never set that the
 * host's KVM did not report) except the bits the VMM provides itself
 * (x2apic, hypervisor).  Properties are applied left to right and set
 * exactly what they say, provided the CPUID leaf exists in the table. */
#include "kvmlite/cpu.h"
#include "cpumodel_priv.h"

#include <glib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

enum { R_EAX, R_EBX, R_ECX, R_EDX };

struct kl_cpu_feature {
	const char *name;
	uint32_t function;
	uint32_t index;
	uint8_t reg;
	uint8_t bit;
};

#define L1C(n, b) { n, 1, 0, R_ECX, b }
#define L1D(n, b) { n, 1, 0, R_EDX, b }
#define L7B(n, b) { n, 7, 0, R_EBX, b }
#define L7C(n, b) { n, 7, 0, R_ECX, b }
#define L7D(n, b) { n, 7, 0, R_EDX, b }
#define X1C(n, b) { n, 0x80000001, 0, R_ECX, b }
#define X1D(n, b) { n, 0x80000001, 0, R_EDX, b }

/* Names as QEMU spells them (after '_' -> '-'), plus common aliases. */
static const struct kl_cpu_feature features[] = {
	/* CPUID.1:EDX */
	L1D("fpu", 0), L1D("vme", 1), L1D("de", 2), L1D("pse", 3), L1D("tsc", 4),
	L1D("msr", 5), L1D("pae", 6), L1D("mce", 7), L1D("cx8", 8), L1D("apic", 9),
	L1D("sep", 11), L1D("mtrr", 12), L1D("pge", 13), L1D("mca", 14),
	L1D("cmov", 15), L1D("pat", 16), L1D("pse36", 17), L1D("pn", 18),
	L1D("clflush", 19), L1D("ds", 21), L1D("acpi", 22), L1D("mmx", 23),
	L1D("fxsr", 24), L1D("sse", 25), L1D("sse2", 26), L1D("ss", 27),
	L1D("ht", 28), L1D("tm", 29), L1D("ia64", 30), L1D("pbe", 31),
	/* CPUID.1:ECX */
	L1C("pni", 0), L1C("sse3", 0), L1C("pclmulqdq", 1), L1C("pclmuldq", 1),
	L1C("dtes64", 2), L1C("monitor", 3), L1C("ds-cpl", 4), L1C("vmx", 5),
	L1C("smx", 6), L1C("est", 7), L1C("tm2", 8), L1C("ssse3", 9),
	L1C("cid", 10), L1C("fma", 12), L1C("cx16", 13), L1C("xtpr", 14),
	L1C("pdcm", 15), L1C("pcid", 17), L1C("dca", 18), L1C("sse4.1", 19),
	L1C("sse4-1", 19), L1C("sse4.2", 20), L1C("sse4-2", 20), L1C("x2apic", 21),
	L1C("movbe", 22), L1C("popcnt", 23), L1C("tsc-deadline", 24),
	L1C("aes", 25), L1C("xsave", 26), L1C("osxsave", 27), L1C("avx", 28),
	L1C("f16c", 29), L1C("rdrand", 30), L1C("hypervisor", 31),
	/* CPUID.(7,0):EBX */
	L7B("fsgsbase", 0), L7B("tsc-adjust", 1), L7B("sgx", 2), L7B("bmi1", 3),
	L7B("hle", 4), L7B("avx2", 5), L7B("smep", 7), L7B("bmi2", 8),
	L7B("erms", 9), L7B("invpcid", 10), L7B("rtm", 11), L7B("mpx", 14),
	L7B("avx512f", 16), L7B("avx512dq", 17), L7B("rdseed", 18), L7B("adx", 19),
	L7B("smap", 20), L7B("avx512ifma", 21), L7B("pcommit", 22),
	L7B("clflushopt", 23), L7B("clwb", 24), L7B("intel-pt", 25),
	L7B("avx512pf", 26), L7B("avx512er", 27), L7B("avx512cd", 28),
	L7B("sha-ni", 29), L7B("avx512bw", 30), L7B("avx512vl", 31),
	/* CPUID.(7,0):ECX */
	L7C("avx512vbmi", 1), L7C("umip", 2), L7C("pku", 3), L7C("ospke", 4),
	L7C("waitpkg", 5), L7C("avx512vbmi2", 6), L7C("cet-ss", 7), L7C("gfni", 8),
	L7C("vaes", 9), L7C("vpclmulqdq", 10), L7C("avx512vnni", 11),
	L7C("avx512bitalg", 12), L7C("avx512-vpopcntdq", 14), L7C("la57", 16),
	L7C("rdpid", 22), L7C("bus-lock-detect", 24), L7C("cldemote", 25),
	L7C("movdiri", 27), L7C("movdir64b", 28), L7C("sgxlc", 30), L7C("pks", 31),
	/* CPUID.(7,0):EDX */
	L7D("avx512-4vnniw", 2), L7D("avx512-4fmaps", 3), L7D("fsrm", 4),
	L7D("avx512-vp2intersect", 8), L7D("md-clear", 10), L7D("serialize", 14),
	L7D("tsx-ldtrk", 16), L7D("pconfig", 18), L7D("arch-lbr", 19),
	L7D("ibt", 20), L7D("amx-bf16", 22), L7D("avx512-fp16", 23),
	L7D("amx-tile", 24), L7D("amx-int8", 25), L7D("spec-ctrl", 26),
	L7D("stibp", 27), L7D("flush-l1d", 28), L7D("arch-capabilities", 29),
	L7D("core-capability", 30), L7D("ssbd", 31),
	/* CPUID.(7,1):EAX */
	{ "avx-vnni", 7, 1, R_EAX, 4 }, { "avx512-bf16", 7, 1, R_EAX, 5 },
	{ "fzrm", 7, 1, R_EAX, 10 }, { "fsrs", 7, 1, R_EAX, 11 },
	{ "fsrc", 7, 1, R_EAX, 12 }, { "amx-fp16", 7, 1, R_EAX, 21 },
	{ "avx-ifma", 7, 1, R_EAX, 23 },
	/* CPUID.(0xd,1):EAX */
	{ "xsaveopt", 0xd, 1, R_EAX, 0 }, { "xsavec", 0xd, 1, R_EAX, 1 },
	{ "xgetbv1", 0xd, 1, R_EAX, 2 }, { "xsaves", 0xd, 1, R_EAX, 3 },
	{ "xfd", 0xd, 1, R_EAX, 4 },
	/* CPUID.6:EAX */
	{ "arat", 6, 0, R_EAX, 2 },
	/* CPUID.0x80000001:ECX */
	X1C("lahf-lm", 0), X1C("cmp-legacy", 1), X1C("svm", 2), X1C("extapic", 3),
	X1C("cr8legacy", 4), X1C("abm", 5), X1C("lzcnt", 5), X1C("sse4a", 6),
	X1C("misalignsse", 7), X1C("3dnowprefetch", 8), X1C("osvw", 9),
	X1C("ibs", 10), X1C("xop", 11), X1C("skinit", 12), X1C("wdt", 13),
	X1C("lwp", 15), X1C("fma4", 16), X1C("tce", 17), X1C("nodeid-msr", 19),
	X1C("tbm", 21), X1C("topoext", 22), X1C("perfctr-core", 23),
	X1C("perfctr-nb", 24),
	/* CPUID.0x80000001:EDX */
	X1D("syscall", 11), X1D("mp", 19), X1D("nx", 20), X1D("xd", 20),
	X1D("mmxext", 22), X1D("fxsr-opt", 25), X1D("ffxsr", 25),
	X1D("pdpe1gb", 26), X1D("rdtscp", 27), X1D("lm", 29), X1D("i64", 29),
	X1D("3dnowext", 30), X1D("3dnow", 31),
	/* CPUID.0x80000007:EDX */
	{ "invtsc", 0x80000007, 0, R_EDX, 8 },
	/* CPUID.0x40000001:EAX (KVM paravirtual features) */
	{ "kvmclock", 0x40000001, 0, R_EAX, 0 },
	{ "kvm-nopiodelay", 0x40000001, 0, R_EAX, 1 },
	{ "kvm-mmu", 0x40000001, 0, R_EAX, 2 },
	{ "kvmclock2", 0x40000001, 0, R_EAX, 3 },
	{ "kvm-asyncpf", 0x40000001, 0, R_EAX, 4 },
	{ "kvm-steal-time", 0x40000001, 0, R_EAX, 5 },
	{ "kvm-pv-eoi", 0x40000001, 0, R_EAX, 6 },
	{ "kvm-pv-unhalt", 0x40000001, 0, R_EAX, 7 },
	{ "kvm-pv-tlb-flush", 0x40000001, 0, R_EAX, 9 },
	{ "kvm-asyncpf-vmexit", 0x40000001, 0, R_EAX, 10 },
	{ "kvm-pv-ipi", 0x40000001, 0, R_EAX, 11 },
	{ "kvm-poll-control", 0x40000001, 0, R_EAX, 12 },
	{ "kvm-pv-sched-yield", 0x40000001, 0, R_EAX, 13 },
	{ "kvm-asyncpf-int", 0x40000001, 0, R_EAX, 14 },
	{ "kvm-msi-ext-dest-id", 0x40000001, 0, R_EAX, 15 },
	{ "kvmclock-stable-bit", 0x40000001, 0, R_EAX, 24 },
};

#define B(n) (1u << (n))

/* A named model: masks over KVM's table for the feature words, plus what is
 * set regardless (features the VMM itself implements). */
struct kl_cpu_model {
	const char *name;
	bool passthrough;          /* host/max: no masking */
	const char *vendor;        /* 12 characters */
	const char *brand;         /* 0x80000002..4 */
	uint32_t signature;        /* CPUID.1:EAX */
	uint32_t max_basic, max_ext;
	uint32_t l1_ecx, l1_edx, l1_ecx_force;
	uint32_t l7_ebx, l7_ecx, l7_edx;
	uint32_t x1_ecx, x1_edx;
};

/* CPUID.1:EDX of QEMU's qemu64 (PPRO_FEATURES + mtrr clflush mca pse36);
 * bit 28 (HTT) is left to kl_cpuid_fix_topology. */
#define QEMU64_L1_EDX (B(0) | B(2) | B(3) | B(4) | B(5) | B(6) | B(7) | B(8) | B(9) | \
		       B(11) | B(12) | B(13) | B(14) | B(15) | B(16) | B(17) | B(19) | \
		       B(23) | B(24) | B(25) | B(26) | B(28))
/* pni cx16 (x2apic and hypervisor are forced: KVM emulates the x2APIC and
 * the VMM is the hypervisor). */
#define QEMU64_L1_ECX (B(0) | B(13))
#define FORCED_L1_ECX (B(21) | B(31))
/* 0x80000001: ECX lahf-lm; EDX syscall nx lm */
#define QEMU64_X1_ECX B(0)
#define QEMU64_X1_EDX (B(11) | B(20) | B(29))
/* Family 15, model 107, stepping 1: what QEMU's qemu64 reports. */
#define QEMU64_SIGNATURE 0x00060fb1

static const struct kl_cpu_model models[] = {
	{ .name = "host", .passthrough = true },
	{ .name = "max", .passthrough = true },
	{
		.name = "kvmlite-safe",
		.vendor = "GenuineIntel",
		.brand = "kvmlite safe virtual CPU",
		.signature = QEMU64_SIGNATURE,
		.max_basic = 0xd, .max_ext = 0x80000008,
		.l1_ecx = QEMU64_L1_ECX, .l1_edx = QEMU64_L1_EDX,
		.l1_ecx_force = FORCED_L1_ECX,
		/* erms: "rep movsb" is a single string instruction for the
		 * emulator, cheaper than the unrolled copy loops. */
		.l7_ebx = B(9),
		.x1_ecx = QEMU64_X1_ECX, .x1_edx = QEMU64_X1_EDX,
	},
	{
		.name = "qemu64",
		.vendor = "AuthenticAMD",
		.brand = "QEMU Virtual CPU version 2.5+",
		.signature = QEMU64_SIGNATURE,
		.max_basic = 0xd, .max_ext = 0x80000008,
		.l1_ecx = QEMU64_L1_ECX, .l1_edx = QEMU64_L1_EDX,
		.l1_ecx_force = FORCED_L1_ECX,
		.x1_ecx = QEMU64_X1_ECX, .x1_edx = QEMU64_X1_EDX,
	},
};

static const char *const model_names[] = { "host", "max", "kvmlite-safe", "qemu64", NULL };

const char *const *kl_cpu_model_names(void)
{
	return model_names;
}

const char *kl_cpu_default_model(bool emulated)
{
	/* On emulated (PVM) hosts too: the guest reads the host's CPUID there
	 * anyway, and KVM's table must agree with it (docs/cpu.md). */
	(void)emulated;
	return "host";
}

bool kl_host_is_emulated_at(const char *cpuinfo_path, const char *pvm_dir)
{
	if (pvm_dir && access(pvm_dir, F_OK) == 0)
		return true;
	gchar *text = NULL;
	if (!g_file_get_contents(cpuinfo_path, &text, NULL, NULL))
		return true; /* cannot tell: assume the conservative case */
	bool hw = false;
	gchar **lines = g_strsplit(text, "\n", -1);
	for (gchar **l = lines; *l && !hw; l++) {
		if (!g_str_has_prefix(*l, "flags"))
			continue;
		const char *colon = strchr(*l, ':');
		if (!colon)
			continue;
		gchar **flags = g_strsplit_set(colon + 1, " \t", -1);
		for (gchar **f = flags; *f; f++)
			if (!strcmp(*f, "vmx") || !strcmp(*f, "svm"))
				hw = true;
		g_strfreev(flags);
	}
	g_strfreev(lines);
	g_free(text);
	return !hw;
}

bool kl_host_is_emulated(void)
{
	/* the host does not change: read /proc/cpuinfo once, not per vCPU */
	static int cached = -1;
	if (cached < 0)
		cached = kl_host_is_emulated_at("/proc/cpuinfo", "/sys/module/kvm_pvm");
	return cached;
}

static struct kvm_cpuid_entry2 *find_entry(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function != fn)
			continue;
		if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e->index != idx)
			continue;
		if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && idx != 0)
			continue;
		return e;
	}
	return NULL;
}

static uint32_t *reg_of(struct kvm_cpuid_entry2 *e, int reg)
{
	switch (reg) {
	case R_EAX: return &e->eax;
	case R_EBX: return &e->ebx;
	case R_ECX: return &e->ecx;
	default: return &e->edx;
	}
}

static void set_vendor(struct kvm_cpuid2 *c, const char *v)
{
	uint32_t w[3];
	memcpy(w, v, 12);
	struct kvm_cpuid_entry2 *e = find_entry(c, 0, 0);
	if (e) {
		e->ebx = w[0];
		e->edx = w[1];
		e->ecx = w[2];
	}
	e = find_entry(c, 0x80000000, 0);
	if (e) {
		e->ebx = w[0];
		e->edx = w[1];
		e->ecx = w[2];
	}
}

static void set_brand(struct kvm_cpuid2 *c, const char *brand)
{
	char buf[48] = { 0 };
	strncpy(buf, brand, sizeof(buf) - 1);
	for (uint32_t i = 0; i < 3; i++) {
		struct kvm_cpuid_entry2 *e = find_entry(c, 0x80000002 + i, 0);
		if (!e)
			continue;
		memcpy(&e->eax, buf + 16 * i, 4);
		memcpy(&e->ebx, buf + 16 * i + 4, 4);
		memcpy(&e->ecx, buf + 16 * i + 8, 4);
		memcpy(&e->edx, buf + 16 * i + 12, 4);
	}
}

static bool vendor_is_amd(struct kvm_cpuid2 *c)
{
	struct kvm_cpuid_entry2 *e = find_entry(c, 0, 0);
	char v[12];
	if (!e)
		return false;
	memcpy(v, &e->ebx, 4);
	memcpy(v + 4, &e->edx, 4);
	memcpy(v + 8, &e->ecx, 4);
	return !memcmp(v, "AuthenticAMD", 12) || !memcmp(v, "HygonGenuine", 12);
}

static int apply_model(struct kvm_cpuid2 *c, const struct kl_cpu_model *m, char **err)
{
	struct kvm_cpuid_entry2 *l0 = find_entry(c, 0, 0);
	struct kvm_cpuid_entry2 *x0 = find_entry(c, 0x80000000, 0);
	if (!l0 || !x0) {
		*err = g_strdup_printf("-cpu %s: KVM's CPUID table lacks leaf %s", m->name,
				       l0 ? "0x80000000" : "0");
		return -1;
	}
	uint32_t max_basic = MIN(l0->eax, m->max_basic);
	uint32_t max_ext = MIN(x0->eax, m->max_ext);
	l0->eax = max_basic;
	x0->eax = max_ext;

	/* Drop leaves beyond the new limits (the hypervisor range
	 * 0x40000000-0x4fffffff stays). */
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->nent; i++) {
		uint32_t fn = c->entries[i].function;
		bool keep = fn <= max_basic || (fn >= 0x40000000 && fn < 0x50000000) ||
			    (fn >= 0x80000000 && fn <= max_ext);
		if (keep)
			c->entries[n++] = c->entries[i];
	}
	c->nent = n;

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			e->eax = m->signature;
			e->ecx = (e->ecx & m->l1_ecx) | m->l1_ecx_force;
			e->edx &= m->l1_edx;
			break;
		case 5:   /* MONITOR/MWAIT: hidden */
		case 0xa: /* no PMU */
		case 0xd: /* no XSAVE */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 6:
			e->eax &= B(2); /* ARAT only */
			e->ebx = e->ecx = e->edx = 0;
			break;
		case 7:
			if (e->index == 0) {
				e->eax = 0; /* no subleaf 1 */
				e->ebx &= m->l7_ebx;
				e->ecx &= m->l7_ecx;
				e->edx &= m->l7_edx;
			} else {
				e->eax = e->ebx = e->ecx = e->edx = 0;
			}
			break;
		case 0x80000001:
			e->eax = m->signature;
			e->ebx = 0;
			e->ecx &= m->x1_ecx;
			e->edx &= m->x1_edx;
			break;
		case 0x80000007:
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0x80000008:
			e->eax &= 0xffff; /* physical and linear address sizes */
			e->ebx = e->ecx = e->edx = 0;
			break;
		default:
			break;
		}
	}
	set_vendor(c, m->vendor);
	set_brand(c, m->brand);
	return 0;
}

static const struct kl_cpu_feature *find_feature(const char *name)
{
	gchar *norm = g_ascii_strdown(name, -1);
	g_strdelimit(norm, "_", '-');
	const struct kl_cpu_feature *found = NULL;
	for (size_t i = 0; i < G_N_ELEMENTS(features); i++)
		if (!strcmp(features[i].name, norm)) {
			found = &features[i];
			break;
		}
	g_free(norm);
	return found;
}

static int set_feature(struct kvm_cpuid2 *c, const char *name, bool on, char **err)
{
	const struct kl_cpu_feature *f = find_feature(name);
	if (!f) {
		*err = g_strdup_printf("-cpu: unknown CPU feature '%s'", name);
		return -1;
	}
	struct kvm_cpuid_entry2 *e = find_entry(c, f->function, f->index);
	if (!e) {
		if (!on)
			return 0; /* the leaf is absent: the feature is already off */
		*err = g_strdup_printf("-cpu: cannot enable '%s': CPUID leaf 0x%x.%u is not "
				       "provided (by KVM or by this model)", name,
				       f->function, f->index);
		return -1;
	}
	uint32_t *r = reg_of(e, f->reg);
	if (on)
		*r |= B(f->bit);
	else
		*r &= ~B(f->bit);
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "on", "yes", "true", "y", NULL };
	static const char *const no[] = { "off", "no", "false", "n", NULL };
	for (int i = 0; yes[i]; i++)
		if (!strcmp(v, yes[i])) {
			*out = true;
			return 0;
		}
	for (int i = 0; no[i]; i++)
		if (!strcmp(v, no[i])) {
			*out = false;
			return 0;
		}
	return -1;
}

static int apply_property(struct kvm_cpuid2 *c, const char *p, char **err)
{
	if (p[0] == '+' || p[0] == '-') {
		if (!p[1]) {
			*err = g_strdup_printf("-cpu: empty feature name in '%s'", p);
			return -1;
		}
		return set_feature(c, p + 1, p[0] == '+', err);
	}
	const char *eq = strchr(p, '=');
	if (!eq)
		return set_feature(c, p, true, err); /* bare "feat" = feat=on */
	gchar *key = g_strndup(p, eq - p);
	const char *val = eq + 1;
	int ret = 0;
	if (!strcmp(key, "vendor")) {
		if (strlen(val) != 12) {
			*err = g_strdup_printf("-cpu: vendor '%s' must be 12 characters", val);
			ret = -1;
		} else {
			set_vendor(c, val);
		}
	} else if (!strcmp(key, "model-id")) {
		if (strlen(val) > 47) {
			*err = g_strdup_printf("-cpu: model-id '%s' is longer than 47 characters", val);
			ret = -1;
		} else {
			set_brand(c, val);
		}
	} else {
		bool on;
		if (parse_bool(val, &on) < 0) {
			*err = g_strdup_printf("-cpu: '%s': value '%s' is not on or off", key, val);
			ret = -1;
		} else {
			ret = set_feature(c, key, on, err);
		}
	}
	g_free(key);
	return ret;
}

int kl_cpu_model_apply(struct kvm_cpuid2 *cpuid, const char *spec, char **err)
{
	if (!spec)
		spec = kl_cpu_default_model(kl_host_is_emulated());
	gchar **parts = g_strsplit(spec, ",", -1);
	const char *name = parts[0] ? parts[0] : "";
	const struct kl_cpu_model *m = NULL;
	for (size_t i = 0; i < G_N_ELEMENTS(models); i++)
		if (!strcmp(models[i].name, name))
			m = &models[i];
	int ret = 0;
	struct kvm_cpuid2 *orig = NULL;
	if (!m) {
		gchar *known = g_strjoinv(", ", (gchar **)model_names);
		*err = g_strdup_printf("-cpu: unknown CPU model '%s' (known: %s)", name, known);
		g_free(known);
		ret = -1;
		goto out;
	}
	size_t size = sizeof(*cpuid) + cpuid->nent * sizeof(cpuid->entries[0]);
	orig = g_memdup2(cpuid, size);
	if (!m->passthrough && apply_model(cpuid, m, err) < 0) {
		ret = -1;
		goto out;
	}
	for (gchar **p = parts + 1; *p; p++) {
		if (!**p) {
			*err = g_strdup_printf("-cpu: empty property in '%s'", spec);
			ret = -1;
			goto out;
		}
		if (apply_property(cpuid, *p, err) < 0) {
			ret = -1;
			goto out;
		}
	}
	if (!m->passthrough) {
		/* XSAVE turned back on: give the guest KVM's XSAVE leaf again. */
		struct kvm_cpuid_entry2 *l1 = find_entry(cpuid, 1, 0);
		if (l1 && (l1->ecx & B(26))) {
			for (uint32_t i = 0; i < cpuid->nent; i++) {
				struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
				if (e->function != 0xd)
					continue;
				struct kvm_cpuid_entry2 *o = find_entry(orig, 0xd, e->index);
				if (o)
					*e = *o;
			}
		}
		/* AMD CPUs mirror most CPUID.1:EDX bits in 0x80000001:EDX. */
		struct kvm_cpuid_entry2 *x1 = find_entry(cpuid, 0x80000001, 0);
		if (l1 && x1 && vendor_is_amd(cpuid)) {
			const uint32_t aliases = 0x0183f3ff;
			x1->edx = (x1->edx & ~aliases) | (l1->edx & aliases);
		}
	}
out:
	if (ret < 0 && orig) /* leave the caller's table as it was */
		memcpy(cpuid, orig, sizeof(*orig) + orig->nent * sizeof(orig->entries[0]));
	g_free(orig);
	g_strfreev(parts);
	return ret;
}
