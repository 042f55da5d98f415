/* CR4.PCIDE on hosts whose KVM refuses it (no KVM calls: breakpoint.c
 * drives it).
 *
 * A PVM host's KVM rejects CR4.PCIDE (and KVM_SET_SREGS with it) whatever
 * the CPUID table says, while the guest reads the host's own CPUID, which
 * may list PCID (Intel hosts do).  Linux then sets CR4.PCIDE in
 * setup_pcid(), takes #GP and panics.  kvmlite lets the guest believe it
 * has PCIDs: a mov to CR4 that sets PCIDE is done without it (the guest's
 * "PCIDE" is a per-vCPU shadow bit), and a mov to CR3 with the no-flush
 * bit 63 -- legal only with PCIDE -- is done without bit 63.  Without
 * PCIDE every CR3 load flushes the non-global TLB entries, which is more
 * than PCIDs promise and so always correct; the PCID in CR3[11:0] becomes
 * PWT/PCD-and-ignored bits, which KVM's MMU does not act on.  INVPCID,
 * which KVM's emulator lacks, becomes a full TLB flush (assist.c).
 *
 * The writes reach kvmlite either as the #GP they raise (a breakpoint on
 * the #GP handler) or, once the CR4 write's address is known, as an
 * instruction breakpoint on it -- which also works on an AP that writes
 * CR4 before it has an IDT. */
#include "assist_int.h"

#include <string.h>

#define CR4_PCIDE (1ull << 17)
#define CR3_NOFLUSH (1ull << 63)
#define RFLAGS_RF (1ull << 16)

/* "mov %reg, %crN" at la: [REX] 0f 22 /r (mod = 3).  Returns its length. */
static int decode_mov_cr(struct kl_asx_cpu *c, uint64_t la, unsigned *cr, unsigned *gpr)
{
	uint8_t b[4];
	struct kl_asx_fault save = c->fault;
	int r = kl_asx_read(c, la, b, sizeof(b), KL_ACC_FETCH);
	c->fault = save;
	if (r != 0)
		return -1;
	int i = 0;
	uint8_t rex = 0;
	if ((b[0] & 0xf0) == 0x40 && c->sregs.cs.l)
		rex = b[i++];
	if (b[i] != 0x0f || b[i + 1] != 0x22 || (b[i + 2] >> 6) != 3)
		return -1;
	uint8_t m = b[i + 2];
	*cr = ((m >> 3) & 7) | (rex & 4 ? 8 : 0);
	*gpr = (m & 7) | (rex & 1 ? 8 : 0);
	return i + 3;
}

int kl_asx_cr_site(struct kl_asx_cpu *cpu, struct kl_asx_cr_write *w)
{
	unsigned cr, gpr;
	int len = decode_mov_cr(cpu, cpu->regs.rip, &cr, &gpr);
	if (len < 0 || (cr != 3 && cr != 4))
		return -1;
	uint64_t v = *kl_asx_gpr(cpu, gpr);
	memset(w, 0, sizeof(*w));
	w->cr = cr;
	w->site = cpu->regs.rip;
	if (cr == 4) {
		w->pcide = (v & CR4_PCIDE) != 0;
		w->value = v & ~CR4_PCIDE;
	} else {
		w->noflush = (v & CR3_NOFLUSH) != 0;
		w->value = v & ~CR3_NOFLUSH;
	}
	cpu->regs.rip += (unsigned)len;
	return 0;
}

bool kl_asx_cr_gp_fixup(struct kl_asx_cpu *cpu, bool pcide_shadow, struct kl_asx_cr_write *w)
{
	/* the #GP frame (64-bit: always error code, RIP, CS, RFLAGS, RSP, SS) */
	uint64_t f[6];
	struct kl_asx_fault save = cpu->fault;
	int rd = kl_asx_read(cpu, cpu->regs.rsp, f, sizeof(f), KL_ACC_IMPLICIT_SV);
	cpu->fault = save;
	if (rd != 0 || !cpu->sregs.cs.l || f[0] != 0 || (f[2] & 3) != 0)
		return false;
	struct kl_asx_cpu at = *cpu;	/* the CPU as it was at the faulting mov */
	at.regs.rip = f[1];
	if (kl_asx_cr_site(&at, w) < 0)
		return false;
	if (w->cr == 4 && !w->pcide)
		return false;	/* not the bit we take away: a genuine #GP */
	if (w->cr == 3 && (!pcide_shadow || !w->noflush))
		return false;
	/* back to the instruction after the mov, as if it had succeeded */
	cpu->regs.rip = at.regs.rip;
	cpu->regs.rsp = f[4];
	cpu->regs.rflags = f[3] & ~RFLAGS_RF;
	return true;
}

enum kl_asx_result kl_asx_invpcid(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	/* SDM: INVPCID r64, m128 (66 0F 38 82 /r); #UD for the register form,
	 * a missing 66 or a LOCK; #GP(0) at CPL > 0 or for a type above 3 or
	 * a non-canonical address with type 0. */
	if (in->vex || !in->has_mem || in->pp != 1 || in->lock)
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	if (kl_asx_cpl(c) != 0)
		return kl_asx_raise(c, KL_X86_GP, true, 0);
	uint64_t type = *kl_asx_gpr(c, in->reg);
	if (!c->sregs.cs.l)
		type = (uint32_t)type;
	uint64_t desc[2];
	int r = kl_asx_read(c, in->ea, desc, sizeof(desc), 0);
	if (r == -2)
		return KL_ASX_UNHANDLED;
	if (r != 0)
		return KL_ASX_FAULT;
	if (type > 3 || (desc[0] >> 12) != 0)	/* PCID is 12 bits, the rest reserved */
		return kl_asx_raise(c, KL_X86_GP, true, 0);
	if (type == 0) {
		uint64_t a = desc[1];	/* canonical: bits 63:47 all equal */
		if ((uint64_t)((int64_t)(a << 16) >> 16) != a)
			return kl_asx_raise(c, KL_X86_GP, true, 0);
	}
	if (!c->ops || !c->ops->flush_tlb || c->ops->flush_tlb(c) < 0)
		return KL_ASX_ERROR;
	c->kind = KL_ASX_K_INVPCID;
	return KL_ASX_DONE;
}
