/* Completing the host's broken SYSCALL (no KVM calls: breakpoint.c drives it).
 *
 * On a PVM host a guest's ring 3 runs natively and its SYSCALL jumps to
 * LSTAR with RCX, R11 and the masked RFLAGS right but without leaving ring
 * 3: CS stays the user's, so fetching the (supervisor) entry code takes a
 * #PF, error code P|U|I, that the guest's own #PF handler receives.  With a
 * breakpoint on that handler, kvmlite recognises this #PF and finishes the
 * SYSCALL the CPU should have done (Intel SDM vol. 2B, SYSCALL):
 *   RCX = next RIP, R11 = RFLAGS (already so), RFLAGS &= ~SFMASK (already),
 *   CS = STAR[47:32] & ~3 (flat 64-bit code, DPL 0), SS = CS + 8 (flat
 *   data, DPL 0), CPL 0, RIP = LSTAR; RSP untouched (the user's).
 * The #PF delivery switched to the kernel stack (TSS.RSP0) and pushed a
 * frame: that RSP is dropped, the user's RSP is taken from the frame. */
#include "assist_int.h"

#include <string.h>

#define RFLAGS_IF (1ull << 9)
#define RFLAGS_RF (1ull << 16)
#define RFLAGS_VM (1ull << 17)
#define RFLAGS_FIXED (1ull << 1)

uint64_t kl_asx_idt_handler(struct kl_asx_cpu *cpu, unsigned vec)
{
	uint8_t g[16];
	if (vec > 255 || cpu->sregs.idt.limit < vec * 16 + 15)
		return 0;
	struct kl_asx_fault save = cpu->fault;
	int r = kl_asx_read(cpu, cpu->sregs.idt.base + vec * 16, g, sizeof(g), KL_ACC_IMPLICIT_SV);
	cpu->fault = save;
	if (r != 0)
		return 0;
	/* bytes 0-1 offset 15:0, 2-3 selector, 4 IST, 5 type/DPL/P, 6-7
	 * offset 31:16, 8-11 offset 63:32 */
	if (!(g[5] & 0x80))
		return 0;
	uint64_t lo = g[0] | (uint64_t)g[1] << 8;
	uint64_t mid = g[6] | (uint64_t)g[7] << 8;
	uint64_t hi = g[8] | (uint64_t)g[9] << 8 | (uint64_t)g[10] << 16 | (uint64_t)g[11] << 24;
	return lo | mid << 16 | hi << 32;
}

/* Read user memory as the user would (CPL 3 permissions) from the
 * handler's CPL-0 context: the SYSCALL bytes must be on a user page. */
static int read_as_user(const struct kl_asx_cpu *cpu, uint64_t la, void *buf, size_t len)
{
	struct kl_asx_cpu u = *cpu;
	u.sregs.cs.dpl = u.sregs.ss.dpl = 3;
	u.sregs.cs.selector |= 3;
	u.sregs.ss.selector |= 3;
	return kl_asx_read(&u, la, buf, len, 0);
}

bool kl_asx_syscall_fixup(struct kl_asx_cpu *cpu, const struct kl_asx_syscall_msrs *m)
{
	struct kvm_regs *r = &cpu->regs;
	struct kvm_sregs *s = &cpu->sregs;
	/* the frame the #PF delivery pushed: error code, RIP, CS, RFLAGS, RSP, SS */
	uint64_t f[6];
	struct kl_asx_fault save = cpu->fault;
	int rd = kl_asx_read(cpu, r->rsp, f, sizeof(f), KL_ACC_IMPLICIT_SV);
	cpu->fault = save;
	if (rd != 0 || !(s->efer & (1 << 10)) || !m->lstar)	/* long mode only */
		return false;
	uint64_t err = f[0], rip = f[1], cs = f[2], rflags = f[3], rsp = f[4];
	if (rip != m->lstar || s->cr2 != m->lstar || (cs & 3) != 3)
		return false;
	/* U|I for a user instruction fetch; the CPU sets I only with EFER.NXE
	 * or CR4.SMEP (SDM vol. 3A 4.7), else a fetch reports U alone (RIP ==
	 * CR2 already tells it from a data access at LSTAR) */
	uint64_t want = KL_PF_U;
	if ((s->efer & (1 << 11)) || (s->cr4 & (1 << 20)))
		want |= KL_PF_I;
	if ((err & (KL_PF_U | KL_PF_I | KL_PF_W | KL_PF_RSVD)) != want)
		return false;
	/* RFLAGS as SYSCALL leaves them: R11 & ~SFMASK with RF cleared (the
	 * frame has RF set, as every fault's frame has).  The
	 * SFMASK bits must be clear: a user program cannot clear IF, and
	 * every kernel's SFMASK includes IF, so a jump to LSTAR from ring 3
	 * never passes for a SYSCALL. */
	if (!(m->sfmask & RFLAGS_IF) || (rflags & m->sfmask & ~RFLAGS_RF) ||
	    (rflags & ~RFLAGS_RF) != (r->r11 & ~m->sfmask & ~RFLAGS_RF))
		return false;
	uint8_t insn[2];
	if (r->rcx < 2 || read_as_user(cpu, r->rcx - 2, insn, 2) != 0 || insn[0] != 0x0f ||
	    insn[1] != 0x05)
		return false;
	uint16_t kcs = (uint16_t)(m->star >> 32) & 0xfffc;
	memset(&s->cs, 0, sizeof(s->cs));
	s->cs.selector = kcs;
	s->cs.limit = 0xffffffff;
	s->cs.type = 11;	/* execute/read, accessed */
	s->cs.present = 1;
	s->cs.s = 1;
	s->cs.l = 1;
	s->cs.g = 1;
	memset(&s->ss, 0, sizeof(s->ss));
	s->ss.selector = kcs + 8;
	s->ss.limit = 0xffffffff;
	s->ss.type = 3;		/* read/write, accessed */
	s->ss.present = 1;
	s->ss.s = 1;
	s->ss.db = 1;
	s->ss.g = 1;
	r->rip = m->lstar;
	r->rsp = rsp;
	r->rflags = (rflags & ~(RFLAGS_RF | RFLAGS_VM)) | RFLAGS_FIXED;
	return true;
}
