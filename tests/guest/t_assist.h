/* Shared by t_assist.c and t_syscall.c: 4 KiB mappings outside the probe's
 * identity map, and guest-visible CPUID bits. */
#ifndef KVMLITE_T_ASSIST_H
#define KVMLITE_T_ASSIST_H

#include "probe.h"

#define PTE_P 0x1ull
#define PTE_W 0x2ull
#define PTE_U 0x4ull

/* Map the 4 KiB page va -> pa with leaf flags (PTE_P|PTE_W|PTE_U; 0 makes
 * it not present).  va must be in a PML4 slot the identity map does not use
 * (>= 8 GiB, below 2^47); intermediate tables get P|W|U, so only the leaf
 * decides.  Flushes the TLB entry.  -1 when tables cannot be allocated. */
int pt_map4k(uint64_t va, uint64_t pa, uint64_t flags);

static inline bool cpuid_bit(uint32_t leaf, uint32_t sub, unsigned reg, unsigned bit)
{
	uint32_t r[4];

	cpuid(leaf & 0x80000000u, 0, r);
	if (r[0] < leaf)
		return false;
	cpuid(leaf, sub, r);
	return (r[reg] >> bit) & 1;
}
enum { R_EAX, R_EBX, R_ECX, R_EDX };

#endif
