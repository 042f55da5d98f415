/* The CPUID table inside the "vcpu" migration section (vcpu_state.c):
 * written as it was set (version 2) and compared on the destination entry by
 * entry, so a refusal names the first leaf and register that differ.
 * Version 1 streams carried a CRC-32 of the table instead.  Untrusted input
 * (tests/fuzz/fuzz_cpuid_state.c): the entry count is bounded, a short
 * stream reads as zeroes and fails the section. */
#include <zlib.h>

#include "kvmlite/cpu.h"
#include "kvmlite/vmstate.h"

#define MAX_CPUID 4096u

/* CPUID entry i as the stream carries it (not the padding) */
static void cpuid_words(const struct kvm_cpuid_entry2 *e, uint32_t f[7])
{
	f[0] = e->function; f[1] = e->index; f[2] = e->flags;
	f[3] = e->eax; f[4] = e->ebx; f[5] = e->ecx; f[6] = e->edx;
}

void kl_cpuid_state_save(const struct kvm_cpuid2 *t, struct kl_vms_out *o)
{
	kl_vms_put_u32(o, t->nent);
	for (unsigned i = 0; i < t->nent; i++) {
		uint32_t f[7];
		cpuid_words(&t->entries[i], f);
		for (unsigned k = 0; k < 7; k++)
			kl_vms_put_u32(o, f[k]);
	}
}

static int check_crc(const struct kvm_cpuid2 *t, unsigned vcpu, struct kl_vms_in *in,
		     char **err)
{
	uint32_t crc = kl_vms_get_u32(in);
	uLong mine = 0;
	for (unsigned i = 0; i < t->nent; i++) {
		uint32_t f[7];
		cpuid_words(&t->entries[i], f);
		mine = crc32_z(mine, (const Bytef *)f, sizeof(f));
	}
	if (kl_vms_failed(in) || crc == (uint32_t)mine)
		return 0;
	*err = g_strdup_printf("vCPU %u: CPUID differs from the source's (CRC-32 %08x, the "
			       "source's %08x): a different CPU model or host CPU",
			       vcpu, (uint32_t)mine, crc);
	return -1;
}

int kl_cpuid_state_check(const struct kvm_cpuid2 *t, unsigned vcpu, struct kl_vms_in *in,
			 uint32_t version, char **err)
{
	if (version < 2)
		return check_crc(t, vcpu, in, err);
	static const char *const reg[7] = { "function", "index", "flags", "EAX", "EBX", "ECX",
					    "EDX" };
	uint32_t n = kl_vms_get_u32_max(in, MAX_CPUID, "number of CPUID entries");
	char *diff = NULL;
	for (uint32_t i = 0; i < n && !kl_vms_failed(in); i++) {
		uint32_t f[7], m[7] = { 0 };
		for (unsigned k = 0; k < 7; k++)
			f[k] = kl_vms_get_u32(in);
		if (diff || kl_vms_failed(in))
			continue;
		if (i >= t->nent) {
			diff = g_strdup_printf("the source has %u entries, this vCPU %u (the first "
					       "extra: leaf %#x.%u)", n, t->nent, f[0], f[1]);
			continue;
		}
		cpuid_words(&t->entries[i], m);
		for (unsigned k = 0; k < 7 && !diff; k++)
			if (f[k] != m[k])
				diff = k < 2 ? g_strdup_printf("entry %u is leaf %#x.%u here, %#x.%u "
							       "on the source", i, m[0], m[1],
							       f[0], f[1])
					     : g_strdup_printf("leaf %#x.%u %s is %#010x here, "
							       "%#010x on the source", m[0], m[1],
							       reg[k], m[k], f[k]);
	}
	if (!diff && !kl_vms_failed(in) && n < t->nent)
		diff = g_strdup_printf("the source has %u entries, this vCPU %u (the first "
				       "missing: leaf %#x.%u)", n, t->nent,
				       t->entries[n].function, t->entries[n].index);
	if (!diff)
		return 0;
	*err = g_strdup_printf("vCPU %u: CPUID differs from the source's: %s: a different CPU "
			       "model or host CPU", vcpu, diff);
	g_free(diff);
	return -1;
}
