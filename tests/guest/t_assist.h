/* Shared by t_assist.c, t_syscall.c and t_virtio_blk.c: 4 KiB mappings
 * outside the probe's identity map, ring 3, and guest-visible CPUID bits. */
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

/* Ring 3 for other tests, from t_syscall.c (its GDT, TSS, user stack and
 * exception handler; the BSP only).  r3_setup() once per boot; then
 * r3_call(rip, arg) runs rip in ring 3 (IF set, RDI = arg, RSP an 8 KiB
 * user stack) until the program takes an exception -- a deliberate ud2 is
 * the way back -- and returns its vector (~0 if it came back otherwise),
 * *fault_rip = the faulting instruction.  Whatever the program touches must
 * be user-accessible (pt_map4k with PTE_U, or probe_map_user). */
int r3_setup(void);
uint64_t r3_call(uint64_t rip, uint64_t arg, uint64_t *fault_rip);

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
