/* CPUID topology fix-ups for each vCPU. */
#include "kvmlite/cpu.h"

#include <stdint.h>

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

/* Topology: one socket, ncpus cores, one thread per core; APIC id = index. */
void kl_cpuid_fix_topology(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus)
{
	unsigned shift = bits_for(ncpus);
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffff) | ((ncpus & 0xff) << 16) | (index << 24);
			if (ncpus > 1)
				e->edx |= 1u << 28; /* HTT: more than one logical CPU */
			else
				e->edx &= ~(1u << 28);
			e->ecx |= 1u << 31; /* hypervisor present */
			break;
		case 4:
			if ((e->eax & 0x1f) != 0) { /* valid cache level */
				uint32_t cores = (1u << shift) - 1;
				e->eax = (e->eax & 0x3fff) | (cores << 26); /* no sharing threads */
			}
			break;
		case 0xb:
		case 0x1f:
			e->edx = index;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = shift;
				e->ebx = ncpus;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		default:
			break;
		}
	}
}
