/* XGETBV and the XSAVE family (XSAVE, XSAVEOPT, XSAVEC, XSAVES, XRSTOR,
 * XRSTORS, and their REX.W "64" forms), executed as the CPU would (Intel SDM
 * vol. 1 ch. 13 and the vol. 2 instruction pages) against KVM's uABI XSAVE
 * buffer (standard format, 64-bit x87 layout) and a per-vCPU store for the
 * supervisor components.
 *
 * Where the state lives
 *   user components (XCR0)  KVM's buffer (ops->get_xsave / set_xsave); its
 *                           XSTATE_BV (offset 512) is the vCPU's XINUSE.
 *   supervisor (IA32_XSS)   cpu->sup_state, laid out by this file:
 *                             bytes 0..7   in-use bitmap of the supervisor
 *                                          components (their XINUSE bits)
 *                             bytes 8..63  reserved (zero)
 *                             component i  at 64 + the sizes, each rounded up
 *                                          to 64, of the supervisor
 *                                          components j < i in xss_mask
 *                           kl_xsave_sup_len() is the size it needs.  These
 *                           values are what XSAVES/XRSTORS see; they are not
 *                           forwarded to the real MSRs (CET, PT ...).
 *
 * Choices the SDM leaves open, made here as this host's CPU (Sapphire Rapids)
 * was seen to do them:
 *   - XSAVE writes every RFBM component, init values for those not in use;
 *     XSAVEOPT/XSAVEC/XSAVES skip components not in use (init optimisation)
 *     and never use the modified optimisation.
 *   - XSAVEC/XSAVES write XSTATE_BV and XCOMP_BV only: header bytes 528..575
 *     are left as they were, like bytes 416..511 of the legacy region.
 *   - PKRU (component 9): 4 bytes are saved, the 4 bytes after it are left
 *     alone; XRSTOR loads 4 bytes (the buffer's upper 4 bytes become 0).
 *   - XSAVEC/XSAVES save SSE state when MXCSR != 1F80H even if the XMM
 *     registers are not in use (SDM 13.10).
 * x87 format: KVM's buffer holds the 64-bit form (FIP, FDP 64 bits, as
 * FXSAVE64).  The REX.W forms copy it as it is.  The other forms store
 * FIP[31:0], FCS = 0, FDP[31:0], FDS = 0 (reserved bytes 14-15, 22-23 as 0):
 * this CPU deprecates FCS/FDS (CPUID.7.0:EBX[13]) and KVM's buffer has no
 * room for them; their restore loads FIP/FDP zero-extended and drops FCS/FDS.
 * On a CPU that keeps FCS/FDS (AMD) a 32-bit-form save by the guest still
 * stores 0 there: the selectors are not in KVM's buffer (a 64-bit guest's
 * kernel uses the REX.W forms).
 * Outside 64-bit mode XMM8-15, YMM8-15_H, ZMM8-15_H and ZMM16-31 are neither
 * saved nor restored (SDM 13.13).
 *
 * XINUSE after XRSTOR: for each RFBM component XSTATE_BV[i] of the area
 * (init components are tracked as init), and bit 1 also when the resulting
 * MXCSR is not 1F80H: KVM rebuilds its state from the buffer and restores it
 * with the compacted XRSTORS, which resets MXCSR to 1F80H when XSTATE_BV[1]
 * is 0.  Components that go to their init state also get init values in the
 * buffer, so it reads the same whatever KVM does with clear bits.
 *
 * Memory: saves read the area first (what the instruction does not write is
 * written back as it was: one kl_asx_write of the whole area, which checks
 * every page before writing), after translating every page for writing so
 * that a fault is the #PF a write would take.  Restores read and check
 * everything before any state changes: a fault or #GP leaves the vCPU as it
 * was. */
#include <cpuid.h>
#include <string.h>

#include "assist_int.h"
#include "kvmlite/byteorder.h"

#define XS_MAX 12288            /* largest area handled (AMX: ~11 KiB) */
#define XS_HDR 512
#define XS_EXT 576              /* first byte of the extended region */
#define XCOMP_COMPACT (1ull << 63)
#define MSR_IA32_XSS 0xda0
#define MXCSR_INIT 0x1f80u
#define MXCSR_MASK_DEFAULT 0xffbfu
#define FX_X87 1ull
#define FX_SSE 2ull
#define FX_AVX 4ull
#define CR0_TS (1ull << 3)
#define CR4_OSXSAVE (1ull << 18)
#define EFER_LMA (1ull << 10)
#define PAGE 4096ull

enum xs_op { OP_XSAVE, OP_XSAVEOPT, OP_XSAVEC, OP_XSAVES, OP_XRSTOR, OP_XRSTORS };

struct xs {
	struct kl_asx_cpu *cpu;
	const struct kl_xstate_layout *l;
	enum xs_op op;
	uint64_t xcr0, xss, rfbm;
	bool w64;               /* REX.W form: 64-bit x87 FIP/FDP layout */
	bool long64;            /* 64-bit mode */
	uint8_t *ks;            /* KVM's buffer, cpu->xsave_len bytes */
};

static uint64_t round64(uint64_t v)
{
	return (v + 63) & ~63ull;
}

/* ---- layout ------------------------------------------------------------ */

void kl_xstate_layout_host(struct kl_xstate_layout *l)
{
	unsigned a = 0, b = 0, c = 0, d = 0;
	memset(l, 0, sizeof(*l));
	if (__get_cpuid_max(0, NULL) < 0xd)
		return;
	__get_cpuid_count(0xd, 0, &a, &b, &c, &d);
	l->xcr0_mask = (uint64_t)d << 32 | a;
	__get_cpuid_count(0xd, 1, &a, &b, &c, &d);
	l->xss_mask = (uint64_t)d << 32 | c;
	for (unsigned i = 2; i < 63; i++) {
		if (!((l->xcr0_mask | l->xss_mask) >> i & 1))
			continue;
		__get_cpuid_count(0xd, i, &a, &b, &c, &d);
		l->comp[i].size = a;
		l->comp[i].offset = b;
		l->comp[i].supervisor = c & 1;
		l->comp[i].align64 = c >> 1 & 1;
	}
}

static uint64_t sup_offset(const struct kl_xstate_layout *l, unsigned i)
{
	uint64_t off = 64;
	for (unsigned j = 2; j < i; j++)
		if (l->xss_mask >> j & 1)
			off += round64(l->comp[j].size);
	return off;
}

size_t kl_xsave_sup_len(const struct kl_xstate_layout *l)
{
	return l->xss_mask ? sup_offset(l, 63) : 0;
}

/* Offset of component i in a compacted area whose XCOMP_BV is xcomp. */
static uint64_t compact_offset(const struct kl_xstate_layout *l, uint64_t xcomp, unsigned i)
{
	uint64_t off = XS_EXT;
	for (unsigned j = 2; j <= i; j++) {
		if (!(xcomp >> j & 1))
			continue;
		if (l->comp[j].align64)
			off = round64(off);
		if (j == i)
			break;
		off += l->comp[j].size;
	}
	return off;
}

/* End of the compacted area holding the components of mask (XCOMP_BV). */
static uint64_t compact_end(const struct kl_xstate_layout *l, uint64_t mask)
{
	uint64_t end = XS_EXT;
	for (unsigned j = 2; j < 63; j++)
		if (mask >> j & 1)
			end = compact_offset(l, mask, j) + l->comp[j].size;
	return end;
}

/* The bytes [*lo, *hi) of component i that an instruction touches: all of
 * it, except PKRU (4 bytes) and, outside 64-bit mode, the parts that belong
 * to registers 8-15 / 16-31 (SDM 13.13). */
static void comp_span(const struct xs *x, unsigned i, uint32_t *lo, uint32_t *hi)
{
	uint32_t size = x->l->comp[i].size;
	*lo = 0;
	*hi = size;
	if (i == 9 && size > 4)
		*hi = 4;
	if (x->long64)
		return;
	if (i == 2 && size > 128)       /* AVX: YMM8_H-YMM15_H */
		*hi = 128;
	if (i == 6 && size > 256)       /* ZMM_Hi256: ZMM8_H-ZMM15_H */
		*hi = 256;
	if (i == 7)                     /* Hi16_ZMM: ZMM16-31 */
		*hi = 0;
}

/* Where component i (2..62) lives in our state: KVM's buffer or sup_state. */
static uint8_t *state_ptr(const struct xs *x, unsigned i)
{
	if (x->l->comp[i].supervisor)
		return x->cpu->sup_state + sup_offset(x->l, i);
	return x->ks + x->l->comp[i].offset;
}

/* Every component of mask is one we can place: user components inside KVM's
 * buffer, supervisor components inside sup_state. */
static bool layout_ok(const struct xs *x, uint64_t mask)
{
	for (unsigned i = 2; i < 64; i++) {
		if (!(mask >> i & 1))
			continue;
		if (i == 63)
			return false;
		const struct kl_xstate_comp *c = &x->l->comp[i];
		if (!c->size)
			return false;
		bool sup = x->l->xss_mask >> i & 1;
		if (sup != c->supervisor)
			return false;
		if (sup) {
			if (!x->cpu->sup_state || x->cpu->sup_len < kl_xsave_sup_len(x->l))
				return false;
		} else if (c->offset < XS_EXT || (uint64_t)c->offset + c->size > x->cpu->xsave_len) {
			return false;
		}
	}
	return true;
}

static uint64_t sup_inuse(const struct xs *x)
{
	return x->cpu->sup_state && x->cpu->sup_len >= 8 ? kl_le64(x->cpu->sup_state) & x->l->xss_mask
							   : 0;
}

/* XINUSE as the vCPU tracks it: KVM's XSTATE_BV, and the supervisor bits. */
static uint64_t xinuse(const struct xs *x)
{
	return (kl_le64(x->ks + XS_HDR) & x->xcr0) | (sup_inuse(x) & x->xss);
}

/* ---- legacy region --------------------------------------------------- */

/* x87 init state in the 64-bit form: FCW 037FH, everything else 0 */
static void x87_init(uint8_t *p)
{
	memset(p, 0, 24);
	memset(p + 32, 0, 128);
	p[0] = 0x7f;
	p[1] = 0x03;
}

/* x87 state (bytes 0..23 but MXCSR, 32..159) from KVM's 64-bit layout to
 * the instruction's form */
static void x87_save(const struct xs *x, uint8_t *img, bool inuse)
{
	uint8_t v[160];
	memcpy(v, x->ks, 160);
	if (!inuse)
		x87_init(v);
	if (!x->w64) {
		uint32_t fip = kl_le32(v + 8), fdp = kl_le32(v + 16);
		memset(v + 8, 0, 16);
		kl_put32(v + 8, fip);       /* FCS (12..13) = 0, 14..15 reserved */
		kl_put32(v + 16, fdp);      /* FDS (20..21) = 0, 22..23 reserved */
	}
	memcpy(img, v, 24);
	memcpy(img + 32, v + 32, 128);
}

static void x87_restore(const struct xs *x, const uint8_t *img, bool load)
{
	uint8_t *k = x->ks;
	if (!load) {
		x87_init(k);
		return;
	}
	memcpy(k, img, 24);
	memcpy(k + 32, img + 32, 128);
	if (!x->w64) {
		kl_put64(k + 8, kl_le32(img + 8));
		kl_put64(k + 16, kl_le32(img + 16));
	}
}

static uint32_t xmm_bytes(const struct xs *x)
{
	return x->long64 ? 256 : 128;   /* XMM0-15, or XMM0-7 */
}

static uint32_t mxcsr_mask(const struct xs *x)
{
	uint32_t m = kl_le32(x->ks + 28);
	return m ? m : MXCSR_MASK_DEFAULT;
}

/* ---- checks common to the family ------------------------------------- */

static enum kl_asx_result pre_checks(struct xs *x, const struct kl_insn *in)
{
	struct kl_asx_cpu *c = x->cpu;
	if (in->lock || !(c->sregs.cr4 & CR4_OSXSAVE))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	if (c->sregs.cr0 & CR0_TS)
		return kl_asx_raise(c, KL_X86_NM, false, 0);
	if ((x->op == OP_XSAVES || x->op == OP_XRSTORS) && kl_asx_cpl(c) != 0)
		return kl_asx_raise(c, KL_X86_GP, true, 0);
	if (in->ea & 63)
		return kl_asx_raise(c, KL_X86_GP, true, 0);
	return KL_ASX_DONE;
}

/* Memory result: -1 fault (cpu->fault set by walk.c), -2 not RAM. */
static enum kl_asx_result mem_result(int r)
{
	return r == -2 ? KL_ASX_UNHANDLED : KL_ASX_FAULT;
}

static enum kl_asx_result get_regs_state(struct xs *x, uint64_t edxeax)
{
	struct kl_asx_cpu *c = x->cpu;
	if (c->xsave_len < XS_EXT || c->xsave_len > XS_MAX || !x->l)
		return KL_ASX_UNHANDLED;
	if (c->ops->get_xcr0(c, &x->xcr0))
		return KL_ASX_ERROR;
	x->xss = 0;
	if (x->op == OP_XSAVES || x->op == OP_XRSTORS) {
		if (c->ops->get_msr(c, MSR_IA32_XSS, &x->xss))
			return KL_ASX_ERROR;
		if (x->xss & ~x->l->xss_mask)
			return KL_ASX_UNHANDLED;
	}
	x->rfbm = (x->xcr0 | x->xss) & edxeax;
	if (!layout_ok(x, x->rfbm))
		return KL_ASX_UNHANDLED;
	if (c->ops->get_xsave(c, x->ks))
		return KL_ASX_ERROR;
	return KL_ASX_DONE;
}

/* ---- saves ------------------------------------------------------------ */

static enum kl_asx_result do_save(struct xs *x, uint64_t ea)
{
	struct kl_asx_cpu *c = x->cpu;
	uint8_t img[XS_MAX] __attribute__((aligned(64)));
	bool compact = x->op == OP_XSAVEC || x->op == OP_XSAVES;
	bool initopt = x->op != OP_XSAVE;
	uint64_t rfbm = x->rfbm, inuse = xinuse(x);
	uint32_t mxcsr = kl_le32(x->ks + 24);

	/* what gets saved (XSTATE_BV of the result for RFBM bits) */
	uint64_t save = initopt ? rfbm & inuse : rfbm;
	if (compact && (rfbm & FX_SSE) && mxcsr != MXCSR_INIT)
		save |= FX_SSE;

	uint64_t end = XS_EXT;
	if (compact) {
		end = compact_end(x->l, rfbm);
	} else {
		for (unsigned i = 2; i < 63; i++)
			if (rfbm >> i & 1 && x->l->comp[i].offset + x->l->comp[i].size > end)
				end = x->l->comp[i].offset + x->l->comp[i].size;
	}
	if (end > sizeof(img))
		return KL_ASX_UNHANDLED;

	/* a fault is the one a write takes: translate every page first */
	for (uint64_t p = ea & ~(PAGE - 1); p < ea + end; p += PAGE) {
		uint64_t gpa;
		if (kl_asx_translate(c, p < ea ? ea : p, KL_ACC_WRITE, &gpa))
			return KL_ASX_FAULT;
	}
	int r = kl_asx_read(c, ea, img, end, 0);
	if (r)
		return mem_result(r);

	if (save & FX_X87)
		x87_save(x, img, inuse & FX_X87);
	/* MXCSR, MXCSR_MASK: XSAVE/XSAVEOPT with RFBM[1] or RFBM[2] (no init
	 * optimisation for them); XSAVEC/XSAVES with the SSE component */
	if (compact ? (save & FX_SSE) : (rfbm & (FX_SSE | FX_AVX)))
		memcpy(img + 24, x->ks + 24, 8);
	if (save & FX_SSE) {
		if (inuse & FX_SSE)
			memcpy(img + 160, x->ks + 160, xmm_bytes(x));
		else
			memset(img + 160, 0, xmm_bytes(x));
	}
	for (unsigned i = 2; i < 63; i++) {
		if (!(save >> i & 1))
			continue;
		uint32_t lo, hi;
		comp_span(x, i, &lo, &hi);
		uint64_t off = compact ? compact_offset(x->l, rfbm, i) : x->l->comp[i].offset;
		if (inuse >> i & 1)
			memcpy(img + off + lo, state_ptr(x, i) + lo, hi - lo);
		else
			memset(img + off + lo, 0, hi - lo);
	}
	if (compact) {
		kl_put64(img + XS_HDR, save);
		kl_put64(img + XS_HDR + 8, rfbm | XCOMP_COMPACT);
	} else {
		kl_put64(img + XS_HDR, (kl_le64(img + XS_HDR) & ~rfbm) | (inuse & rfbm));
	}
	r = kl_asx_write(c, ea, img, end, KL_ACC_WRITE);
	if (r)
		return mem_result(r);
	return KL_ASX_DONE;
}

/* ---- restores --------------------------------------------------------- */

static enum kl_asx_result do_restore(struct xs *x, uint64_t ea)
{
	struct kl_asx_cpu *c = x->cpu;
	uint8_t img[XS_MAX] __attribute__((aligned(64)));
	uint64_t rfbm = x->rfbm;

	int r = kl_asx_read(c, ea, img, XS_EXT, 0);
	if (r)
		return mem_result(r);
	uint64_t bv = kl_le64(img + XS_HDR), xcomp = kl_le64(img + XS_HDR + 8);
	bool compact = xcomp & XCOMP_COMPACT;

	/* header checks (SDM 13.8.1, 13.8.2, 13.12) */
	bool bad = false;
	if (x->op == OP_XRSTORS && !compact)
		bad = true;
	if (compact) {
		uint64_t allowed = x->op == OP_XRSTORS ? x->xcr0 | x->xss : x->xcr0;
		bad |= (xcomp & ~XCOMP_COMPACT & ~allowed) != 0;
		bad |= (bv & ~xcomp) != 0 || (bv & XCOMP_COMPACT);
		for (unsigned b = XS_HDR + 16; b < XS_EXT; b++)
			bad |= img[b] != 0;
	} else {
		bad |= (bv & ~x->xcr0) != 0;
		for (unsigned b = XS_HDR + 8; b < XS_HDR + 24; b++)
			bad |= img[b] != 0;
	}
	if (bad)
		return kl_asx_raise(c, KL_X86_GP, true, 0);

	/* MXCSR: the standard form loads it from memory when RFBM[1] or
	 * RFBM[2]; the compacted forms when RFBM[1] and XSTATE_BV[1], and set
	 * it to 1F80H when RFBM[1] and not XSTATE_BV[1].  Reserved bits: #GP. */
	bool mx_load = compact ? (rfbm & bv & FX_SSE) : (rfbm & (FX_SSE | FX_AVX));
	bool mx_init = compact && (rfbm & FX_SSE) && !(bv & FX_SSE);
	uint32_t mxcsr = kl_le32(img + 24);
	if (mx_load && (mxcsr & ~mxcsr_mask(x)))
		return kl_asx_raise(c, KL_X86_GP, true, 0);

	/* the components to load: read them all before changing anything */
	uint64_t load = rfbm & bv;
	if (compact && !layout_ok(x, xcomp & ~XCOMP_COMPACT))
		return KL_ASX_UNHANDLED;
	uint64_t end = XS_EXT;
	for (unsigned i = 2; i < 63; i++) {
		if (!(load >> i & 1))
			continue;
		uint64_t off = compact ? compact_offset(x->l, xcomp, i) : x->l->comp[i].offset;
		if (off + x->l->comp[i].size > end)
			end = off + x->l->comp[i].size;
	}
	if (end > sizeof(img))
		return KL_ASX_UNHANDLED;
	if (end > XS_EXT) {
		r = kl_asx_read(c, ea + XS_EXT, img + XS_EXT, end - XS_EXT, 0);
		if (r)
			return mem_result(r);
	}

	/* apply to KVM's buffer */
	if (rfbm & FX_X87)
		x87_restore(x, img, bv & FX_X87);
	if (rfbm & FX_SSE) {
		if (bv & FX_SSE)
			memcpy(x->ks + 160, img + 160, xmm_bytes(x));
		else
			memset(x->ks + 160, 0, xmm_bytes(x));
	}
	if (mx_load)
		kl_put32(x->ks + 24, mxcsr);
	else if (mx_init)
		kl_put32(x->ks + 24, MXCSR_INIT);
	uint64_t user = rfbm & x->xcr0;
	for (unsigned i = 2; i < 63; i++) {
		if (!(user >> i & 1))
			continue;
		uint32_t lo, hi;
		comp_span(x, i, &lo, &hi);
		uint8_t *dst = x->ks + x->l->comp[i].offset;
		if (load >> i & 1) {
			uint64_t off = compact ? compact_offset(x->l, xcomp, i) : x->l->comp[i].offset;
			memcpy(dst + lo, img + off + lo, hi - lo);
		} else {
			memset(dst + lo, 0, hi - lo);
		}
		if (i == 9 && hi < x->l->comp[i].size)
			memset(dst + hi, 0, x->l->comp[i].size - hi);   /* PKRU's upper half */
	}
	uint64_t kbv = (kl_le64(x->ks + XS_HDR) & ~user) | (bv & user);
	if ((x->xcr0 & FX_SSE) && kl_le32(x->ks + 24) != MXCSR_INIT)
		kbv |= FX_SSE;
	kl_put64(x->ks + XS_HDR, kbv);
	if (c->ops->set_xsave(c, x->ks))
		return KL_ASX_ERROR;

	/* supervisor components: after KVM took the rest (no partial change) */
	uint64_t sup = rfbm & x->xss;
	if (sup) {
		for (unsigned i = 2; i < 63; i++) {
			if (!(sup >> i & 1))
				continue;
			uint8_t *dst = state_ptr(x, i);
			if (load >> i & 1)
				memcpy(dst, img + compact_offset(x->l, xcomp, i), x->l->comp[i].size);
			else
				memset(dst, 0, x->l->comp[i].size);
		}
		kl_put64(c->sup_state, (sup_inuse(x) & ~sup) | (bv & sup));
		memset(c->sup_state + 8, 0, 56);
	}
	return KL_ASX_DONE;
}

/* ---- XGETBV ------------------------------------------------------------ */

static enum kl_asx_result xgetbv(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	c->kind = KL_ASX_K_XGETBV;
	if (in->lock || !(c->sregs.cr4 & CR4_OSXSAVE))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	uint32_t ecx = (uint32_t)c->regs.rcx;
	if (ecx > 1)
		return kl_asx_raise(c, KL_X86_GP, true, 0);
	uint64_t v;
	if (c->ops->get_xcr0(c, &v))
		return KL_ASX_ERROR;
	if (ecx == 1) {
		/* XINUSE & XCR0: KVM's XSTATE_BV; bit 1 also for an MXCSR that
		 * is not 1F80H, as this host's CPU reports it (XSAVE still
		 * writes XSTATE_BV[1] = 0 then) */
		uint8_t ks[XS_MAX] __attribute__((aligned(64)));
		if (c->xsave_len < XS_EXT || c->xsave_len > XS_MAX)
			return KL_ASX_UNHANDLED;
		if (c->ops->get_xsave(c, ks))
			return KL_ASX_ERROR;
		uint64_t xcr0 = v;
		v &= kl_le64(ks + XS_HDR);
		if ((xcr0 & FX_SSE) && kl_le32(ks + 24) != MXCSR_INIT)
			v |= FX_SSE;
	}
	c->regs.rax = (uint32_t)v;
	c->regs.rdx = v >> 32;
	return KL_ASX_DONE;
}

/* ---- entry --------------------------------------------------------------- */

enum kl_asx_result kl_asx_xsave(struct kl_asx_cpu *cpu, const struct kl_insn *in)
{
	if (in->map != 1 || in->vex || in->pp != 0)
		return KL_ASX_UNHANDLED;
	if (in->op == 0x01 && in->has_modrm && in->modrm == 0xd0)
		return xgetbv(cpu, in);
	if (!in->has_mem || (in->op != 0xae && in->op != 0xc7))
		return KL_ASX_UNHANDLED;

	struct xs x = { .cpu = cpu, .l = cpu->xstate };
	static const struct { uint8_t op, reg; enum xs_op xop; enum kl_asx_kind kind; } ops[] = {
		{ 0xae, 4, OP_XSAVE, KL_ASX_K_XSAVE },
		{ 0xae, 5, OP_XRSTOR, KL_ASX_K_XRSTOR },
		{ 0xae, 6, OP_XSAVEOPT, KL_ASX_K_XSAVEOPT },
		{ 0xc7, 3, OP_XRSTORS, KL_ASX_K_XRSTORS },
		{ 0xc7, 4, OP_XSAVEC, KL_ASX_K_XSAVEC },
		{ 0xc7, 5, OP_XSAVES, KL_ASX_K_XSAVES },
	};
	size_t k;
	for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
		if (ops[k].op == in->op && ops[k].reg == (in->reg & 7))
			break;
	if (k == sizeof(ops) / sizeof(ops[0]))
		return KL_ASX_UNHANDLED;
	x.op = ops[k].xop;
	cpu->kind = ops[k].kind;
	x.w64 = in->rex & 8;
	x.long64 = (cpu->sregs.efer & EFER_LMA) && cpu->sregs.cs.l;

	enum kl_asx_result res = pre_checks(&x, in);
	if (res != KL_ASX_DONE)
		return res;
	uint8_t ks[XS_MAX] __attribute__((aligned(64)));
	x.ks = ks;
	uint64_t edxeax = (uint64_t)(uint32_t)cpu->regs.rdx << 32 | (uint32_t)cpu->regs.rax;
	res = get_regs_state(&x, edxeax);
	if (res != KL_ASX_DONE)
		return res;
	if (x.op == OP_XRSTOR || x.op == OP_XRSTORS)
		return do_restore(&x, in->ea);
	return do_save(&x, in->ea);
}
