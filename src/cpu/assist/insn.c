/* Instructions of the emulation assist other than the XSAVE family
 * (assist_int.h): integer (POPCNT LZCNT TZCNT CMPXCHG8B/16B CRC32 MOVBE,
 * BMI1/BMI2), system (CLAC STAC RDTSCP RDPID RDPKRU WRPKRU MONITORX MWAITX
 * INT3), x87
 * control (FNCLEX FNINIT FLDCW FNSTCW FNSTSW FWAIT FILD m32 FLD1 FLDZ EMMS)
 * and SSE control (LDMXCSR STMXCSR, also VEX-encoded).
 *
 * Conventions:
 *  - flags the SDM calls undefined are left unchanged;
 *  - 32-bit destinations are zero-extended, 16-bit ones keep bits 63:16;
 *  - nothing is written (registers, memory, FPU state) before the last
 *    check that can fault;
 *  - CPUID is the host's (the guest sees it on these hosts): an instruction
 *    the host lacks raises #UD, except LZCNT/TZCNT, which then are the
 *    BSR/BSF KVM's emulator executes itself (UNHANDLED here);
 *  - x87/SSE state is the uABI XSAVE buffer (ops->get_xsave/set_xsave);
 *    when a component is modified its XSTATE_BV bit is set (after filling
 *    its area with the init state if the bit was clear) so KVM loads it;
 *  - an emulated instruction does not raise the single-step #DB of
 *    RFLAGS.TF, and RFLAGS.RF is cleared as after any instruction. */
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

#include "assist_int.h"
#include "kvmlite/byteorder.h"

#define FL_CF 0x1ull
#define FL_PF 0x4ull
#define FL_AF 0x10ull
#define FL_ZF 0x40ull
#define FL_SF 0x80ull
#define FL_OF 0x800ull
#define FL_RF (1ull << 16)
#define FL_AC (1ull << 18)
#define FL_ARITH (FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_OF)

#define CR0_MP (1ull << 1)
#define CR0_EM (1ull << 2)
#define CR0_TS (1ull << 3)
#define CR4_TSD (1ull << 2)
#define CR4_PKE (1ull << 22)

#define MSR_TSC 0x10
#define MSR_TSC_AUX 0xc0000103

/* the legacy area of the XSAVE buffer */
#define XS_FCW 0
#define XS_FSW 2
#define XS_FTW 4
#define XS_FOP 6
#define XS_FIP 8
#define XS_FDP 16
#define XS_MXCSR 24
#define XS_MXCSR_MASK 28
#define XS_ST0 32
#define XS_XMM0 160
#define XS_BV 512
#define XS_MIN 576   /* legacy area + header */

/* ---- host features ---------------------------------------------------- */
enum feat { F_SMAP, F_RDPID, F_RDTSCP, F_BMI1, F_BMI2, F_POPCNT, F_LZCNT, F_MOVBE,
	    F_SSE42, F_CX16, F_CX8, F_MONITORX };

static bool host_has(enum feat f)
{
	static const struct { unsigned leaf, sub, reg, bit; } t[] = {
		[F_SMAP] = { 7, 0, 1, 20 },      [F_RDPID] = { 7, 0, 2, 22 },
		[F_RDTSCP] = { 0x80000001, 0, 3, 27 }, [F_BMI1] = { 7, 0, 1, 3 },
		[F_BMI2] = { 7, 0, 1, 8 },       [F_POPCNT] = { 1, 0, 2, 23 },
		[F_LZCNT] = { 0x80000001, 0, 2, 5 }, [F_MOVBE] = { 1, 0, 2, 22 },
		[F_SSE42] = { 1, 0, 2, 20 },     [F_CX16] = { 1, 0, 2, 13 },
		[F_CX8] = { 1, 0, 3, 8 },        [F_MONITORX] = { 0x80000001, 0, 2, 29 },
	};
	unsigned r[4];
	if (!__get_cpuid_count(t[f].leaf, t[f].sub, &r[0], &r[1], &r[2], &r[3]))
		return false;
	return (r[t[f].reg] >> t[f].bit) & 1;
}

/* ---- registers, memory operands, flags ---------------------------------- */
static bool mode64(const struct kl_asx_cpu *c)
{
	return (c->sregs.efer & (1u << 10)) && c->sregs.cs.l;
}

static uint64_t szmask(unsigned size)
{
	return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

static uint64_t reg_get(struct kl_asx_cpu *c, unsigned n, unsigned size)
{
	return *kl_asx_gpr(c, n) & szmask(size);
}

static void reg_set(struct kl_asx_cpu *c, unsigned n, unsigned size, uint64_t v)
{
	uint64_t *r = kl_asx_gpr(c, n);
	if (size == 2)
		*r = (*r & ~0xffffull) | (v & 0xffff);
	else
		*r = v & szmask(size);   /* 32-bit results zero-extend */
}

/* An 8-bit register operand: AH CH DH BH for 4-7 without REX. */
static uint8_t reg8_get(struct kl_asx_cpu *c, unsigned n, bool rex)
{
	if (!rex && n >= 4 && n < 8)
		return (uint8_t)(*kl_asx_gpr(c, n - 4) >> 8);
	return (uint8_t)*kl_asx_gpr(c, n);
}

/* kl_asx_read/write result -> assist result: -1 fault, -2 not RAM */
static enum kl_asx_result mem_res(int r)
{
	return r == -1 ? KL_ASX_FAULT : KL_ASX_UNHANDLED;
}

/* The r/m operand of size bytes: register or memory. 0 or a walk.c error. */
static int rm_get(struct kl_asx_cpu *c, const struct kl_insn *in, unsigned size, uint64_t *v)
{
	if (!in->has_mem) {
		*v = size == 1 ? reg8_get(c, in->rm, in->rex) : reg_get(c, in->rm, size);
		return 0;
	}
	uint64_t x = 0;
	int r = kl_asx_read(c, in->ea, &x, size, 0);
	*v = x;
	return r;
}

static int mem_put_le(struct kl_asx_cpu *c, uint64_t la, uint64_t v, unsigned size)
{
	return kl_asx_write(c, la, &v, size, 0);
}

/* SF ZF PF of a result */
static uint64_t szp(uint64_t res, unsigned size)
{
	uint64_t f = 0;
	res &= szmask(size);
	if (!res)
		f |= FL_ZF;
	if (res >> (8 * size - 1))
		f |= FL_SF;
	if (!(__builtin_popcount((unsigned)(res & 0xff)) & 1))
		f |= FL_PF;
	return f;
}

static void flags_set(struct kl_asx_cpu *c, uint64_t affected, uint64_t value)
{
	c->regs.rflags = (c->regs.rflags & ~affected) | (value & affected);
}

/* ---- the XSAVE buffer ---------------------------------------------------- */
enum kl_asx_result kl_asx_xs_get(struct kl_asx_cpu *c, uint8_t **buf)
{
	*buf = NULL;
	if (!c->ops || !c->ops->get_xsave || !c->ops->set_xsave || c->xsave_len < XS_MIN)
		return KL_ASX_UNHANDLED;
	*buf = calloc(1, c->xsave_len);
	if (!*buf)
		return KL_ASX_ERROR;
	if (c->ops->get_xsave(c, *buf) < 0) {
		free(*buf);
		*buf = NULL;
		return KL_ASX_ERROR;
	}
	return KL_ASX_DONE;
}

enum kl_asx_result kl_asx_xs_put(struct kl_asx_cpu *c, uint8_t *buf)
{
	int r = c->ops->set_xsave(c, buf);
	free(buf);
	return r < 0 ? KL_ASX_ERROR : KL_ASX_DONE;
}

/* Component comp (0 x87, 1 SSE, 9 PKRU) is about to be modified: make its
 * XSTATE_BV bit 1, filling the area with the init state if it was 0. */
void kl_asx_xs_touch(const struct kl_asx_cpu *c, uint8_t *buf, unsigned comp)
{
	uint64_t bv = kl_le64(buf + XS_BV);
	if (bv & (1ull << comp))
		return;
	if (comp == 0) {
		kl_put16(buf + XS_FCW, 0x37f);
		memset(buf + XS_FSW, 0, XS_MXCSR - XS_FSW);
		memset(buf + XS_ST0, 0, XS_XMM0 - XS_ST0);
	} else if (comp == 1) {
		memset(buf + XS_XMM0, 0, 16 * 16);
	} else if (c->xstate) {
		size_t off = c->xstate->comp[comp].offset, size = c->xstate->comp[comp].size;
		if (off < c->xsave_len)
			memset(buf + off, 0, size < c->xsave_len - off ? size : c->xsave_len - off);
	}
	kl_put64(buf + XS_BV, bv | (1ull << comp));
}

/* ---- system instructions ------------------------------------------------ */
static enum kl_asx_result rd_msr(struct kl_asx_cpu *c, uint32_t msr, uint64_t *v)
{
	if (!c->ops || !c->ops->get_msr)
		return KL_ASX_UNHANDLED;
	return c->ops->get_msr(c, msr, v) < 0 ? KL_ASX_ERROR : KL_ASX_DONE;
}

static enum kl_asx_result rdtscp(struct kl_asx_cpu *c)
{
	uint64_t tsc, aux;
	enum kl_asx_result r;
	if (!host_has(F_RDTSCP))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	if ((c->sregs.cr4 & CR4_TSD) && kl_asx_cpl(c) > 0)
		return kl_asx_raise(c, KL_X86_GP, true, 0);
	if ((r = rd_msr(c, MSR_TSC, &tsc)) != KL_ASX_DONE ||
	    (r = rd_msr(c, MSR_TSC_AUX, &aux)) != KL_ASX_DONE)
		return r;
	c->regs.rax = (uint32_t)tsc;
	c->regs.rdx = tsc >> 32;
	c->regs.rcx = (uint32_t)aux;
	c->kind = KL_ASX_K_RDTSCP;
	return KL_ASX_DONE;
}

static enum kl_asx_result rdpid(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	uint64_t aux;
	enum kl_asx_result r;
	if (!host_has(F_RDPID))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	if ((r = rd_msr(c, MSR_TSC_AUX, &aux)) != KL_ASX_DONE)
		return r;
	/* 64-bit operand in 64-bit mode whatever the prefixes, else 32-bit */
	reg_set(c, in->rm, mode64(c) ? 8 : 4, mode64(c) ? aux : (uint32_t)aux);
	c->kind = KL_ASX_K_RDPID;
	return KL_ASX_DONE;
}

static enum kl_asx_result clac_stac(struct kl_asx_cpu *c, bool set)
{
	if (kl_asx_cpl(c) > 0 || !host_has(F_SMAP))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	flags_set(c, FL_AC, set ? FL_AC : 0);
	c->kind = set ? KL_ASX_K_STAC : KL_ASX_K_CLAC;
	return KL_ASX_DONE;
}

/* AMD's MONITORX / MWAITX (APM vol. 3), any CPL: Linux's udelay() on an AMD
 * host (the guest reads the host's CPUID) waits with them.  Nothing is
 * monitored and MWAITX returns at once, which the APM allows (a wake-up
 * for an implementation-specific reason): the caller's loop reads the TSC
 * again.  MONITORX takes no extensions (ECX = 0) and a canonical RAX;
 * MWAITX knows ECX bits 0 (wake on a masked interrupt) and 1 (EBX timer). */
static enum kl_asx_result monitorx_mwaitx(struct kl_asx_cpu *c, bool wait)
{
	if (!host_has(F_MONITORX))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	uint32_t ecx = (uint32_t)c->regs.rcx;
	uint64_t a = c->regs.rax;
	if (wait ? (ecx & ~3u) != 0
		 : ecx != 0 || (mode64(c) && (uint64_t)((int64_t)(a << 16) >> 16) != a))
		return kl_asx_raise(c, KL_X86_GP, true, 0);
	c->kind = KL_ASX_K_MWAITX;
	return KL_ASX_DONE;
}

static enum kl_asx_result pkru(struct kl_asx_cpu *c, bool wr)
{
	if (!(c->sregs.cr4 & CR4_PKE))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	if ((uint32_t)c->regs.rcx || (wr && (uint32_t)c->regs.rdx))
		return kl_asx_raise(c, KL_X86_GP, true, 0);
	uint32_t off = c->xstate ? c->xstate->comp[9].offset : 0;
	if (!off || off + 4 > c->xsave_len)
		return KL_ASX_UNHANDLED;
	uint8_t *buf;
	enum kl_asx_result r = kl_asx_xs_get(c, &buf);
	if (r != KL_ASX_DONE)
		return r;
	c->kind = KL_ASX_K_PKRU;
	if (!wr) {
		/* component 9 in its init state (XSTATE_BV bit clear): PKRU = 0 */
		uint32_t v = (kl_le64(buf + XS_BV) & (1ull << 9)) ? kl_le32(buf + off) : 0;
		free(buf);
		c->regs.rax = v;
		c->regs.rdx = 0;
		return KL_ASX_DONE;
	}
	kl_asx_xs_touch(c, buf, 9);
	kl_put32(buf + off, (uint32_t)c->regs.rax);
	return kl_asx_xs_put(c, buf);
}

/* ---- integer instructions ----------------------------------------------- */
static enum kl_asx_result bitcount(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	unsigned sz = in->opsize, nbits = 8 * sz;
	if (in->op == 0xbd && !host_has(F_LZCNT))
		return KL_ASX_UNHANDLED;   /* BSR */
	if (in->op == 0xbc && !host_has(F_BMI1))
		return KL_ASX_UNHANDLED;   /* BSF */
	if (in->op == 0xb8 && !host_has(F_POPCNT))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	uint64_t src, res;
	int e = rm_get(c, in, sz, &src);
	if (e)
		return mem_res(e);
	src &= szmask(sz);
	if (in->op == 0xb8) {
		res = (uint64_t)__builtin_popcountll(src);
		flags_set(c, FL_ARITH, src ? 0 : FL_ZF);
		c->kind = KL_ASX_K_POPCNT;
	} else {
		/* CF: source zero, ZF: result zero; OF SF AF PF undefined */
		if (in->op == 0xbc)
			res = src ? (uint64_t)__builtin_ctzll(src) : nbits;
		else
			res = src ? (uint64_t)__builtin_clzll(src) - (64 - nbits) : nbits;
		flags_set(c, FL_CF | FL_ZF, (src ? 0 : FL_CF) | (res ? 0 : FL_ZF));
		c->kind = in->op == 0xbc ? KL_ASX_K_TZCNT : KL_ASX_K_LZCNT;
	}
	reg_set(c, in->reg, sz, res);
	return KL_ASX_DONE;
}

static bool cas16(void *p, uint64_t *lo, uint64_t *hi, uint64_t nlo, uint64_t nhi)
{
	bool ok;
	__asm__ volatile("lock cmpxchg16b (%[p])"
			 : "=@ccz"(ok), "+a"(*lo), "+d"(*hi)
			 : [p] "r"(p), "b"(nlo), "c"(nhi)
			 : "memory");
	return ok;
}

static bool cas8(void *p, uint64_t *old, uint64_t nv)
{
	bool ok;
	__asm__ volatile("lock cmpxchgq %[n], (%[p])"
			 : "=@ccz"(ok), "+a"(*old)
			 : [p] "r"(p), [n] "r"(nv)
			 : "memory");
	return ok;
}

/* CMPXCHG8B / CMPXCHG16B m (0F C7 /1): atomic whether or not LOCK is given
 * (the locked form is what a guest uses); a CMPXCHG8B operand that crosses
 * a page is compared and written without atomicity. */
static enum kl_asx_result cmpxchg_wide(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	struct kvm_regs *r = &c->regs;
	bool wide = in->opsize == 8;
	if (!in->has_mem || !host_has(wide ? F_CX16 : F_CX8))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	c->kind = KL_ASX_K_CMPXCHG16B;
	if (wide) {
		if (in->ea & 15)
			return kl_asx_raise(c, KL_X86_GP, true, 0);
		/* the destination is written back even when the compare fails */
		void *p = kl_asx_ptr(c, in->ea, 16, KL_ACC_WRITE);
		if (!p)
			return c->fault.vector == 0xff ? KL_ASX_UNHANDLED : KL_ASX_FAULT;
		uint64_t lo = r->rax, hi = r->rdx;
		bool ok = cas16(p, &lo, &hi, r->rbx, r->rcx);
		flags_set(c, FL_ZF, ok ? FL_ZF : 0);
		if (!ok) {
			r->rax = lo;
			r->rdx = hi;
		}
		return KL_ASX_DONE;
	}
	uint64_t want = (uint64_t)(uint32_t)r->rdx << 32 | (uint32_t)r->rax;
	uint64_t nv = (uint64_t)(uint32_t)r->rcx << 32 | (uint32_t)r->rbx;
	uint64_t old = want;
	bool ok;
	/* An operand across a cache line (or a page) is not done with a host
	 * LOCK: that would be a split lock, which stalls the host (or, with
	 * split_lock_detect=fatal, kills kvmlite).  KVM's emulator does the
	 * same: such a compare-exchange is a plain read + write. */
	if ((in->ea & 63) > 64 - 8) {
		int e = kl_asx_read(c, in->ea, &old, 8, 0);
		if (!e) {
			ok = old == want;
			e = kl_asx_write(c, in->ea, ok ? &nv : &old, 8, 0);
		}
		if (e)
			return mem_res(e);
	} else {
		void *p = kl_asx_ptr(c, in->ea, 8, KL_ACC_WRITE);
		if (!p)
			return c->fault.vector == 0xff ? KL_ASX_UNHANDLED : KL_ASX_FAULT;
		ok = cas8(p, &old, nv);
	}
	flags_set(c, FL_ZF, ok ? FL_ZF : 0);
	if (!ok) {
		r->rax = (uint32_t)old;
		r->rdx = old >> 32;
	}
	return KL_ASX_DONE;
}

/* CRC32C (Castagnoli, reflected 0x82F63B78 = 0x11EDC6F41 bit-reversed),
 * no initial or final inversion, as the CRC32 instruction. */
static uint32_t crc32c(uint32_t crc, uint64_t data, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++) {
		crc ^= (uint8_t)(data >> (8 * i));
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return crc;
}

static enum kl_asx_result crc32(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	if (!host_has(F_SSE42))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	unsigned ssz = in->op == 0xf0 ? 1 : in->opsize;
	uint64_t src;
	int e = rm_get(c, in, ssz, &src);
	if (e)
		return mem_res(e);
	uint32_t acc = (uint32_t)*kl_asx_gpr(c, in->reg);
	reg_set(c, in->reg, 4, crc32c(acc, src, ssz));   /* also with REX.W: zero-extended */
	c->kind = KL_ASX_K_CRC32;
	return KL_ASX_DONE;
}

static uint64_t bswap(uint64_t v, unsigned size)
{
	if (size == 2)
		return __builtin_bswap16((uint16_t)v);
	if (size == 4)
		return __builtin_bswap32((uint32_t)v);
	return __builtin_bswap64(v);
}

static enum kl_asx_result movbe(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	unsigned sz = in->opsize;
	if (!in->has_mem || !host_has(F_MOVBE))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	c->kind = KL_ASX_K_MOVBE;
	if (in->op == 0xf0) {
		uint64_t v;
		int e = rm_get(c, in, sz, &v);
		if (e)
			return mem_res(e);
		reg_set(c, in->reg, sz, bswap(v, sz));
		return KL_ASX_DONE;
	}
	int e = mem_put_le(c, in->ea, bswap(reg_get(c, in->reg, sz), sz), sz);
	return e ? mem_res(e) : KL_ASX_DONE;
}

/* ---- BMI1 / BMI2 ---------------------------------------------------------- */
static uint64_t pdep(uint64_t src, uint64_t mask)
{
	uint64_t res = 0;
	for (uint64_t bit = 1; mask; bit <<= 1) {
		uint64_t low = mask & -mask;
		if (src & bit)
			res |= low;
		mask &= mask - 1;
	}
	return res;
}

static uint64_t pext(uint64_t src, uint64_t mask)
{
	uint64_t res = 0;
	for (uint64_t bit = 1; mask; bit <<= 1) {
		uint64_t low = mask & -mask;
		if (src & low)
			res |= bit;
		mask &= mask - 1;
	}
	return res;
}

enum bmi_op { ANDN, BLSR, BLSMSK, BLSI, BZHI, PDEP, PEXT, MULX, BEXTR, SHLX, SARX, SHRX, RORX };

static int bmi_which(const struct kl_insn *in)
{
	if (in->map == 3)
		return in->op == 0xf0 && in->pp == 3 ? RORX : -1;
	switch (in->op) {
	case 0xf2: return in->pp == 0 ? ANDN : -1;
	case 0xf3:
		if (in->pp != 0 || (in->reg & 7) < 1 || (in->reg & 7) > 3)
			return -1;
		return BLSR + (in->reg & 7) - 1;
	case 0xf5: return in->pp == 0 ? BZHI : in->pp == 3 ? PDEP : in->pp == 2 ? PEXT : -1;
	case 0xf6: return in->pp == 3 ? MULX : -1;
	case 0xf7: return in->pp == 0 ? BEXTR : in->pp == 1 ? SHLX : in->pp == 2 ? SARX : SHRX;
	}
	return -1;
}

static enum kl_asx_result bmi(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	int op = bmi_which(in);
	if (op < 0)
		return KL_ASX_UNHANDLED;
	bool bmi1 = op == ANDN || op == BLSR || op == BLSMSK || op == BLSI || op == BEXTR;
	if (in->vex_l || !host_has(bmi1 ? F_BMI1 : F_BMI2) ||
	    (op == RORX && in->vex_vvvv != 0))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	unsigned sz = in->opsize, nbits = 8 * sz;
	uint64_t m = szmask(sz), src, v = reg_get(c, in->vex_vvvv, sz), res = 0;
	int e = rm_get(c, in, sz, &src);
	if (e)
		return mem_res(e);
	unsigned dst = in->reg;
	/* flags: affected set and values; undefined ones are left alone */
	uint64_t aff = 0, fl = 0;
	switch (op) {
	case ANDN:
		res = ~v & src & m;
		aff = FL_SF | FL_ZF | FL_OF | FL_CF;
		fl = szp(res, sz);
		break;
	case BLSR: case BLSMSK: case BLSI:
		dst = in->vex_vvvv;
		res = op == BLSR ? src & (src - 1) : op == BLSMSK ? src ^ (src - 1) : src & -src;
		res &= m;
		aff = FL_SF | FL_ZF | FL_OF | FL_CF;
		fl = szp(res, sz) & (op == BLSMSK ? FL_SF : FL_SF | FL_ZF);
		if (op == BLSI ? src != 0 : src == 0)
			fl |= FL_CF;
		break;
	case BZHI: {
		unsigned n = v & 0xff;
		res = n < nbits ? src & ((1ull << n) - 1) : src;
		aff = FL_SF | FL_ZF | FL_OF | FL_CF;
		fl = szp(res, sz) | (n > nbits - 1 ? FL_CF : 0);
		break;
	}
	case PDEP: res = pdep(v, src) & m; break;
	case PEXT: res = pext(v, src) & m; break;
	case MULX: {
		uint64_t d = reg_get(c, 2, sz);
		if (sz == 8) {
			unsigned __int128 p = (unsigned __int128)d * src;
			reg_set(c, in->vex_vvvv, 8, (uint64_t)p);
			res = (uint64_t)(p >> 64);
		} else {
			uint64_t p = d * src;
			reg_set(c, in->vex_vvvv, 4, p);
			res = p >> 32;
		}
		break;   /* the high half wins when both destinations are one register */
	}
	case BEXTR: {
		unsigned start = v & 0xff, len = (v >> 8) & 0xff;
		res = start < 64 ? src >> start : 0;
		if (len < 64)
			res &= (1ull << len) - 1;
		res &= m;
		aff = FL_ZF | FL_OF | FL_CF;
		fl = res ? 0 : FL_ZF;
		break;
	}
	case SHLX: res = (src << (v & (nbits - 1))) & m; break;
	case SHRX: res = src >> (v & (nbits - 1)); break;
	case SARX:
		res = sz == 8 ? (uint64_t)((int64_t)src >> (v & 63))
			      : (uint64_t)(uint32_t)((int32_t)(uint32_t)src >> (v & 31));
		break;
	case RORX: {
		unsigned k = (unsigned)in->imm & (nbits - 1);
		res = k ? ((src >> k) | (src << (nbits - k))) & m : src;
		break;
	}
	}
	reg_set(c, dst, sz, res);
	flags_set(c, aff, fl);
	c->kind = KL_ASX_K_BMI;
	return KL_ASX_DONE;
}

/* ---- x87 and SSE control ------------------------------------------------------ */
static bool x87_pending(const uint8_t *buf)
{
	return kl_le16(buf + XS_FSW) & ~kl_le16(buf + XS_FCW) & 0x3f;
}

/* FSW.ES and FSW.B follow the unmasked exception flags */
static void x87_summary(uint8_t *buf)
{
	uint16_t fsw = kl_le16(buf + XS_FSW) & 0x7f7f;
	if (x87_pending(buf))
		fsw |= 0x8080;
	kl_put16(buf + XS_FSW, fsw);
}

static void to_ext80(int64_t v, uint8_t out[10])
{
	uint64_t mant = 0;
	uint16_t se = 0;
	if (v) {
		uint64_t a = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
		int lz = __builtin_clzll(a);
		mant = a << lz;
		se = (uint16_t)((v < 0 ? 0x8000 : 0) | (16383 + 63 - lz));
	}
	memcpy(out, &mant, 8);
	memcpy(out + 8, &se, 2);
}

/* Push an 80-bit value (FILD, FLD1, FLDZ); stack overflow when the register
 * below TOP is not empty: IE|SF|C1, and the QNaN indefinite when IM masks
 * it (else nothing is loaded and the #MF comes with the next instruction). */
static void x87_push(uint8_t *buf, const uint8_t val[10])
{
	static const uint8_t indefinite[10] = { 0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff };
	uint16_t fsw = kl_le16(buf + XS_FSW);
	unsigned top = (fsw >> 11) & 7, ntop = (top - 1) & 7;
	fsw &= ~0x0200;   /* C1 */
	if (buf[XS_FTW] & (1u << ntop)) {
		fsw |= 0x0241;    /* C1, SF, IE */
		kl_put16(buf + XS_FSW, fsw);
		if (!(kl_le16(buf + XS_FCW) & 1)) {
			x87_summary(buf);
			return;
		}
		val = indefinite;
	}
	memmove(buf + XS_ST0 + 16, buf + XS_ST0, 7 * 16);
	memset(buf + XS_ST0, 0, 16);
	memcpy(buf + XS_ST0, val, 10);
	fsw = (uint16_t)((fsw & ~0x3800) | ntop << 11);
	kl_put16(buf + XS_FSW, fsw);
	buf[XS_FTW] |= (uint8_t)(1u << ntop);
}

static void x87_last(const struct kl_asx_cpu *c, const struct kl_insn *in, uint8_t *buf)
{
	kl_put16(buf + XS_FOP, (uint16_t)(((in->op & 7) << 8) | in->modrm));
	kl_put64(buf + XS_FIP, c->regs.rip);
	if (in->has_mem)
		kl_put64(buf + XS_FDP, in->ea);
}

enum x87_op { FNCLEX, FNINIT, FLDCW, FNSTCW, FNSTSW_M, FNSTSW_AX, FWAIT, FILD32, FLD1, FLDZ,
	      EMMS };

static int x87_which(const struct kl_insn *in)
{
	if (in->map == 1)
		return in->op == 0x77 && !in->vex && in->pp == 0 ? EMMS : -1;
	if (in->op == 0x9b)
		return FWAIT;
	unsigned r = in->reg & 7;
	if (in->has_mem) {
		if (in->op == 0xd9)
			return r == 5 ? FLDCW : r == 7 ? FNSTCW : -1;
		if (in->op == 0xdd && r == 7)
			return FNSTSW_M;
		if (in->op == 0xdb && r == 0)
			return FILD32;
		return -1;
	}
	switch (in->op << 8 | in->modrm) {
	case 0xdbe2: return FNCLEX;
	case 0xdbe3: return FNINIT;
	case 0xdfe0: return FNSTSW_AX;
	case 0xd9e8: return FLD1;
	case 0xd9ee: return FLDZ;
	}
	return -1;
}

static enum kl_asx_result x87(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	int op = x87_which(in);
	if (op < 0)
		return KL_ASX_UNHANDLED;
	uint64_t cr0 = c->sregs.cr0;
	if (op == FWAIT ? (cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS) : (cr0 & CR0_TS) != 0)
		return kl_asx_raise(c, KL_X86_NM, false, 0);
	if (cr0 & CR0_EM)
		return kl_asx_raise(c, op == EMMS ? KL_X86_UD : KL_X86_NM, false, 0);
	bool waiting = op == FLDCW || op == FWAIT || op == FILD32 || op == FLD1 || op == FLDZ ||
		       op == EMMS;
	uint8_t *buf;
	enum kl_asx_result r = kl_asx_xs_get(c, &buf);
	if (r != KL_ASX_DONE)
		return r;
	/* in the init state the buffer's legacy area may be stale */
	kl_asx_xs_touch(c, buf, 0);
	if (waiting && x87_pending(buf)) {
		free(buf);
		return kl_asx_raise(c, KL_X86_MF, false, 0);
	}
	uint64_t mv = 0;
	int e = 0;
	if (op == FLDCW || op == FILD32)
		e = kl_asx_read(c, in->ea, &mv, op == FLDCW ? 2 : 4, 0);
	if (e) {
		free(buf);
		return mem_res(e);
	}
	c->kind = op == EMMS ? KL_ASX_K_OTHER : KL_ASX_K_X87;
	uint16_t fsw = kl_le16(buf + XS_FSW);
	switch (op) {
	case FWAIT:
		free(buf);
		return KL_ASX_DONE;
	case FNSTCW: case FNSTSW_M:
		e = mem_put_le(c, in->ea, op == FNSTCW ? kl_le16(buf + XS_FCW) : fsw, 2);
		free(buf);
		return e ? mem_res(e) : KL_ASX_DONE;
	case FNSTSW_AX:
		reg_set(c, 0, 2, fsw);
		free(buf);
		return KL_ASX_DONE;
	case FNCLEX:
		kl_put16(buf + XS_FSW, fsw & 0x7f00);
		break;
	case FNINIT:
		kl_put16(buf + XS_FCW, 0x37f);
		memset(buf + XS_FSW, 0, XS_MXCSR - XS_FSW);
		break;
	case FLDCW:
		kl_put16(buf + XS_FCW, (uint16_t)mv);
		x87_summary(buf);
		break;
	case FILD32: case FLD1: case FLDZ: {
		uint8_t v[10];
		to_ext80(op == FILD32 ? (int32_t)(uint32_t)mv : op == FLD1 ? 1 : 0, v);
		x87_push(buf, v);
		x87_last(c, in, buf);
		break;
	}
	case EMMS:
		buf[XS_FTW] = 0;   /* abridged tag word: all empty */
		break;
	}
	return kl_asx_xs_put(c, buf);
}

static enum kl_asx_result mxcsr(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	bool ld = (in->reg & 7) == 2;
	if (in->vex && (in->vex_l || in->vex_vvvv))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	if (kl_asx_sse_avail(c, in->vex) != KL_ASX_DONE)
		return KL_ASX_FAULT;
	uint64_t v = 0;
	if (ld) {
		int e = kl_asx_read(c, in->ea, &v, 4, 0);
		if (e)
			return mem_res(e);
	}
	uint8_t *buf;
	enum kl_asx_result r = kl_asx_xs_get(c, &buf);
	if (r != KL_ASX_DONE)
		return r;
	c->kind = KL_ASX_K_MXCSR;
	if (!ld) {
		int e = mem_put_le(c, in->ea, kl_le32(buf + XS_MXCSR), 4);
		free(buf);
		return e ? mem_res(e) : KL_ASX_DONE;
	}
	uint32_t mask = kl_le32(buf + XS_MXCSR_MASK);
	if (!mask)
		mask = 0xffbf;   /* SDM: a zero MXCSR_MASK means 0000FFBFH */
	if (v & ~(uint64_t)mask) {
		free(buf);
		return kl_asx_raise(c, KL_X86_GP, true, 0);
	}
	kl_asx_xs_touch(c, buf, 1);
	kl_put32(buf + XS_MXCSR, (uint32_t)v);
	return kl_asx_xs_put(c, buf);
}

/* ---- dispatch ----------------------------------------------------------- */
enum kl_asx_result kl_asx_insn(struct kl_asx_cpu *cpu, const struct kl_insn *in)
{
	bool cx = in->map == 1 && in->op == 0xc7 && (in->reg & 7) == 1 && in->has_mem;
	if (in->lock && !cx)
		return kl_asx_raise(cpu, KL_X86_UD, false, 0);
	if (in->vex) {
		if (in->map == 1 && in->op == 0xae && in->has_mem && in->pp == 0 &&
		    ((in->reg & 7) == 2 || (in->reg & 7) == 3))
			return mxcsr(cpu, in);
		if (in->map >= 2)
			return bmi(cpu, in);
		return KL_ASX_UNHANDLED;
	}
	switch (in->map) {
	case 0:
		if (in->op == 0xcc) {
			cpu->kind = KL_ASX_K_INT3;
			kl_asx_raise(cpu, KL_X86_BP, false, 0);
			cpu->fault.trap = true;
			return KL_ASX_FAULT;
		}
		return x87(cpu, in);
	case 1:
		switch (in->op) {
		case 0x01:
			if (in->mod != 3 || in->pp != 0)
				return KL_ASX_UNHANDLED;
			switch (in->modrm) {
			case 0xca: return clac_stac(cpu, false);
			case 0xcb: return clac_stac(cpu, true);
			case 0xf9: return rdtscp(cpu);
			case 0xfa: return monitorx_mwaitx(cpu, false);
			case 0xfb: return monitorx_mwaitx(cpu, true);
			case 0xee: return pkru(cpu, false);
			case 0xef: return pkru(cpu, true);
			}
			return KL_ASX_UNHANDLED;
		case 0x77:
			return x87(cpu, in);
		case 0xae:
			if (in->has_mem && in->pp == 0 && ((in->reg & 7) == 2 || (in->reg & 7) == 3))
				return mxcsr(cpu, in);
			return KL_ASX_UNHANDLED;
		case 0xb8: case 0xbc: case 0xbd:
			return in->pp == 2 ? bitcount(cpu, in) : KL_ASX_UNHANDLED;
		case 0xc7:
			if (cx)
				return cmpxchg_wide(cpu, in);
			if (!in->has_mem && (in->reg & 7) == 7 && in->pp == 2)
				return rdpid(cpu, in);
			return KL_ASX_UNHANDLED;
		}
		return kl_asx_sse(cpu, in);
	case 2:
		if (in->op == 0x82)
			return kl_asx_invpcid(cpu, in);
		if (in->op == 0xf0 || in->op == 0xf1) {
			if (in->pp == 3)
				return crc32(cpu, in);
			if (in->pp <= 1)
				return movbe(cpu, in);
		}
		return KL_ASX_UNHANDLED;
	}
	return KL_ASX_UNHANDLED;
}

enum kl_asx_result kl_asx_execute(struct kl_asx_cpu *cpu, const uint8_t *bytes, size_t n)
{
	struct kl_insn in;
	cpu->kind = KL_ASX_K_UNHANDLED;
	if (kl_insn_decode(cpu, bytes, n, &in) < 0)
		return KL_ASX_UNHANDLED;
	struct kvm_regs saved = cpu->regs;
	enum kl_asx_result r = kl_asx_xsave(cpu, &in);
	if (r == KL_ASX_UNHANDLED)
		r = kl_asx_insn(cpu, &in);
	switch (r) {
	case KL_ASX_DONE:
		cpu->regs.rip += in.len;
		if (!mode64(cpu))
			cpu->regs.rip = (uint32_t)cpu->regs.rip;
		cpu->regs.rflags &= ~FL_RF;
		break;
	case KL_ASX_FAULT:
		cpu->regs = saved;   /* no register is written on a fault */
		if (cpu->fault.trap) {
			/* #BP (INT3) is a trap: the frame's RIP is the next instruction */
			cpu->regs.rip += in.len;
			if (!mode64(cpu))
				cpu->regs.rip = (uint32_t)cpu->regs.rip;
		} else {
			cpu->kind = KL_ASX_K_FAULT;
		}
		break;
	default:
		cpu->regs = saved;
		cpu->kind = KL_ASX_K_UNHANDLED;
		break;
	}
	return r;
}

const char *kl_asx_kind_name(enum kl_asx_kind k)
{
	static const char *const names[KL_ASX_K_COUNT] = {
		[KL_ASX_K_XGETBV] = "xgetbv",   [KL_ASX_K_XSAVE] = "xsave",
		[KL_ASX_K_XSAVEOPT] = "xsaveopt", [KL_ASX_K_XSAVEC] = "xsavec",
		[KL_ASX_K_XSAVES] = "xsaves",   [KL_ASX_K_XRSTOR] = "xrstor",
		[KL_ASX_K_XRSTORS] = "xrstors", [KL_ASX_K_CLAC] = "clac",
		[KL_ASX_K_STAC] = "stac",       [KL_ASX_K_POPCNT] = "popcnt",
		[KL_ASX_K_LZCNT] = "lzcnt",     [KL_ASX_K_TZCNT] = "tzcnt",
		[KL_ASX_K_CMPXCHG16B] = "cmpxchg16b", [KL_ASX_K_RDTSCP] = "rdtscp",
		[KL_ASX_K_RDPID] = "rdpid",     [KL_ASX_K_CRC32] = "crc32",
		[KL_ASX_K_MOVBE] = "movbe",     [KL_ASX_K_BMI] = "bmi",
		[KL_ASX_K_X87] = "x87",         [KL_ASX_K_MXCSR] = "mxcsr",
		[KL_ASX_K_PKRU] = "pkru",       [KL_ASX_K_MWAITX] = "monitorx-mwaitx",
		[KL_ASX_K_INT3] = "int3",
		[KL_ASX_K_OTHER] = "other",     [KL_ASX_K_FAULT] = "fault",
		[KL_ASX_K_UNHANDLED] = "unhandled", [KL_ASX_K_SYSCALL] = "syscall",
		[KL_ASX_K_PF_PASS] = "pf-pass", [KL_ASX_K_REARM] = "rearm",
		[KL_ASX_K_INVPCID] = "invpcid", [KL_ASX_K_CR_FIX] = "cr-pcide",
		[KL_ASX_K_GP_PASS] = "gp-pass",
	};
	if ((unsigned)k >= KL_ASX_K_COUNT || !names[k])
		return "?";
	return names[k];
}
