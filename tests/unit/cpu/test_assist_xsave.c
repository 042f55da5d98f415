/* Unit tests for src/cpu/assist/xsave.c: XGETBV and the XSAVE family.
 *
 * Two layouts: a hand-written one (the components and offsets of real
 * CPUs, plus a made-up 64-byte aligned component 17 and two supervisor
 * components) with expected offsets worked out here by hand, and the host's
 * (CPUID leaf 0xd), where the host CPU is the oracle: a random state is
 * loaded natively with XRSTOR and saved natively with XSAVE/XSAVEOPT/XSAVEC,
 * and the emulation must produce the same bytes from the same state; and the
 * emulation's output, restored natively, must give the state the emulated
 * XRSTOR gives.
 *
 * walk.c is faked here: linear = physical over fmem[], with one page that
 * can be made not present or read-only, and addresses past fmem[] as MMIO. */
#include <check.h>

#include "../kl_check.h"
#include <cpuid.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "assist_int.h"
#include "kvmlite/byteorder.h"

#define PAGE 4096u
#define MEMSZ (16 * PAGE)
#define AREA 0x1000u            /* where the tests put their XSAVE area */
#define XS_MAX 12288

/* ---- fake walk.c ------------------------------------------------------- */
static uint8_t fmem[MEMSZ] __attribute__((aligned(PAGE)));
static uint64_t fault_page = ~0ull;     /* page that faults */
static bool fault_ro;                   /* ... only on writes (read-only) */
static int n_writes;

static int fake_check(struct kl_asx_cpu *c, uint64_t la, size_t len, unsigned acc)
{
	if (la >= MEMSZ || len > MEMSZ - la)
		return -2;
	for (uint64_t p = la & ~(uint64_t)(PAGE - 1); p < la + len; p += PAGE) {
		if (p != fault_page || (fault_ro && !(acc & KL_ACC_WRITE)))
			continue;
		c->fault.vector = KL_X86_PF;
		c->fault.has_error = true;
		c->fault.error = (fault_ro ? KL_PF_P : 0) | (acc & KL_ACC_WRITE ? KL_PF_W : 0) |
				 (kl_asx_cpl(c) == 3 ? KL_PF_U : 0);
		c->fault.cr2 = p < la ? la : p;
		return -1;
	}
	return 0;
}

int kl_asx_translate(struct kl_asx_cpu *c, uint64_t la, unsigned acc, uint64_t *gpa)
{
	int r = fake_check(c, la, 1, acc);
	if (r == -2)
		return 0;       /* MMIO: translates, fails on access */
	*gpa = la;
	return r;
}

int kl_asx_read(struct kl_asx_cpu *c, uint64_t la, void *buf, size_t len, unsigned acc)
{
	ck_assert(!(acc & (KL_ACC_IMPLICIT_SV | KL_ACC_WRITE)));
	int r = fake_check(c, la, len, acc);
	if (!r)
		memcpy(buf, fmem + la, len);
	return r;
}

int kl_asx_write(struct kl_asx_cpu *c, uint64_t la, const void *buf, size_t len, unsigned acc)
{
	ck_assert(acc == KL_ACC_WRITE);
	int r = fake_check(c, la, len, acc);
	if (!r) {
		memcpy(fmem + la, buf, len);
		n_writes++;
	}
	return r;
}

/* ---- fake vCPU ----------------------------------------------------------- */
struct fake {
	struct kl_asx_cpu cpu;
	uint8_t ks[XS_MAX] __attribute__((aligned(64)));
	uint64_t xcr0, xss;
	bool fail;
	int sets;
	uint8_t sup[4096];
};

static struct fake *F(struct kl_asx_cpu *c)
{
	return c->opaque;
}

static int f_get_xsave(struct kl_asx_cpu *c, void *buf)
{
	memcpy(buf, F(c)->ks, c->xsave_len);
	return F(c)->fail ? -1 : 0;
}

static int f_set_xsave(struct kl_asx_cpu *c, const void *buf)
{
	F(c)->sets++;
	memcpy(F(c)->ks, buf, c->xsave_len);
	return 0;
}

static int f_get_xcr0(struct kl_asx_cpu *c, uint64_t *v)
{
	*v = F(c)->xcr0;
	return 0;
}

static int f_get_msr(struct kl_asx_cpu *c, uint32_t idx, uint64_t *v)
{
	ck_assert_uint_eq(idx, 0xda0);
	*v = F(c)->xss;
	return 0;
}

static int f_set_msr(struct kl_asx_cpu *c, uint32_t idx, uint64_t v)
{
	(void)c, (void)idx, (void)v;
	return -1;
}

static const struct kl_asx_ops fops = { f_get_xsave, f_set_xsave, f_get_xcr0, f_get_msr,
					f_set_msr };

/* The hand-written layout: AVX, AVX-512 and PKRU where real CPUs put them, a
 * made-up user component 17 (40 bytes, 64-byte aligned when compacted), and
 * supervisor components 11 (16 bytes) and 12 (24 bytes, aligned). */
static struct kl_xstate_layout fake_layout;
#define FAKE_XCR0 0x202e7ull
#define FAKE_XSS 0x1800ull
#define FAKE_LEN 2816

static void init_fake_layout(void)
{
	struct kl_xstate_layout *l = &fake_layout;
	memset(l, 0, sizeof(*l));
	l->comp[2] = (struct kl_xstate_comp){ 256, 576, false, false };
	l->comp[5] = (struct kl_xstate_comp){ 64, 1088, false, false };
	l->comp[6] = (struct kl_xstate_comp){ 512, 1152, false, false };
	l->comp[7] = (struct kl_xstate_comp){ 1024, 1664, false, false };
	l->comp[9] = (struct kl_xstate_comp){ 8, 2688, false, false };
	l->comp[17] = (struct kl_xstate_comp){ 40, 2752, true, false };
	l->comp[11] = (struct kl_xstate_comp){ 16, 0, false, true };
	l->comp[12] = (struct kl_xstate_comp){ 24, 0, true, true };
	l->xcr0_mask = FAKE_XCR0;
	l->xss_mask = FAKE_XSS;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void rnd_bytes(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void st64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static void st32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void fake_init(struct fake *f, const struct kl_xstate_layout *l, size_t len, uint64_t xcr0)
{
	memset(f, 0, sizeof(*f));
	f->cpu.ops = &fops;
	f->cpu.opaque = f;
	f->cpu.xstate = l;
	f->cpu.xsave_len = len;
	f->cpu.sregs.cr0 = 0x80000011;          /* PG PE ET */
	f->cpu.sregs.cr4 = (1u << 18) | (1u << 5); /* OSXSAVE PAE */
	f->cpu.sregs.efer = (1u << 10) | (1u << 8);
	f->cpu.sregs.cs.l = 1;
	f->cpu.regs.rax = 0xffffffffffffffffull; /* EDX:EAX all ones by default */
	f->cpu.regs.rdx = 0xffffffffffffffffull;
	f->xcr0 = xcr0;
	fault_page = ~0ull;
	fault_ro = false;
	n_writes = 0;
	memset(fmem, 0xaa, sizeof(fmem));
}

/* A random but sane state in KVM's buffer, XSTATE_BV = inuse. */
static void rnd_state(uint8_t *ks, size_t len, uint64_t inuse)
{
	rnd_bytes(ks, len);
	st32(ks + 24, (uint32_t)rnd() & 0xffbf);
	st32(ks + 28, 0xffff);
	memset(ks + 416, 0, 96);
	memset(ks + 512, 0, 64);
	st64(ks + 512, inuse);
}

static void set_rfbm(struct fake *f, uint64_t m)
{
	f->cpu.regs.rax = 0xdead000000000000ull | (uint32_t)m;   /* upper halves ignored */
	f->cpu.regs.rdx = 0xbeef000000000000ull | (uint32_t)(m >> 32);
}

static struct kl_insn mk(uint8_t op, uint8_t reg, uint64_t ea, bool w)
{
	struct kl_insn in = { .map = 1, .op = op, .has_modrm = true, .mod = 0, .reg = reg,
			      .rm = 6, .has_mem = true, .ea = ea, .rex = w ? 0x48 : 0 };
	in.modrm = (uint8_t)(reg << 3 | 6);
	in.len = 3 + w;
	return in;
}
#define I_XSAVE(ea) mk(0xae, 4, ea, true)
#define I_XRSTOR(ea) mk(0xae, 5, ea, true)
#define I_XSAVEOPT(ea) mk(0xae, 6, ea, true)
#define I_XRSTORS(ea) mk(0xc7, 3, ea, true)
#define I_XSAVEC(ea) mk(0xc7, 4, ea, true)
#define I_XSAVES(ea) mk(0xc7, 5, ea, true)

static enum kl_asx_result run(struct fake *f, struct kl_insn in)
{
	struct kvm_regs before = f->cpu.regs;
	enum kl_asx_result r = kl_asx_xsave(&f->cpu, &in);
	if (in.op != 0x01)      /* only XGETBV writes registers */
		ck_assert_mem_eq(&before, &f->cpu.regs, sizeof(before));
	return r;
}

static void assert_gp0(struct fake *f, enum kl_asx_result r)
{
	ck_assert_int_eq(r, KL_ASX_FAULT);
	ck_assert_uint_eq(f->cpu.fault.vector, KL_X86_GP);
	ck_assert(f->cpu.fault.has_error);
	ck_assert_uint_eq(f->cpu.fault.error, 0);
}

static bool all_aa(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0xaa)
			return false;
	return true;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static struct fake fk;  /* big: not on the stack */

/* ---- XSAVE / XSAVEOPT (standard format) --------------------------------- */
START_TEST(test_xsave_standard)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	uint64_t inuse = 0x20063;       /* x87 SSE opmask ZMM_Hi256 17; not AVX, Hi16, PKRU */
	rnd_state(f->ks, FAKE_LEN, inuse);
	set_rfbm(f, 0x227);             /* x87 SSE AVX opmask PKRU */
	ck_assert_int_eq(run(f, I_XSAVE(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(f->cpu.kind, KL_ASX_K_XSAVE);
	const uint8_t *m = fmem + AREA, *k = f->ks;
	ck_assert_mem_eq(m, k, 416);                    /* x87, MXCSR, XMM0-15 */
	ck_assert(all_aa(m + 416, 96));                 /* 416..511 not written */
	ck_assert(all_zero(m + 576, 256));              /* AVX not in use: init */
	ck_assert_mem_eq(m + 1088, k + 1088, 64);       /* opmask */
	ck_assert(all_aa(m + 1152, 1536));              /* ZMM_Hi256, Hi16_ZMM: not RFBM */
	ck_assert(all_zero(m + 2688, 4));               /* PKRU: init, 4 bytes */
	ck_assert(all_aa(m + 2692, 4));
	ck_assert(all_aa(m + 2752, 64));                /* 17: not RFBM */
	ck_assert_uint_eq(ld64(m + 512), (0xaaaaaaaaaaaaaaaaull & ~0x227ull) | (inuse & 0x227));
	ck_assert(all_aa(m + 520, 56));                 /* XCOMP_BV and the rest untouched */
	ck_assert_int_eq(f->sets, 0);
	ck_assert_int_eq(n_writes, 1);

	/* x87 not in use: XSAVE writes its init state */
	st64(f->ks + 512, 0x2);
	set_rfbm(f, 0x1);
	ck_assert_int_eq(run(f, I_XSAVE(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld32(m), 0x037f);
	ck_assert(all_zero(m + 4, 20) && all_zero(m + 32, 128));
	ck_assert_uint_eq(ld64(m + 512) & 1, 0);
}
END_TEST

START_TEST(test_xsave_x87_forms)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	rnd_state(f->ks, FAKE_LEN, 3);
	st64(f->ks + 8, 0x123456789abcull);     /* FIP */
	st64(f->ks + 16, 0x7fffdeadbeefull);    /* FDP */
	set_rfbm(f, 3);
	ck_assert_int_eq(run(f, mk(0xae, 4, AREA, false)), KL_ASX_DONE);  /* XSAVE, no REX.W */
	const uint8_t *m = fmem + AREA;
	ck_assert_uint_eq(ld32(m + 8), 0x56789abc);
	ck_assert_uint_eq(ld32(m + 12), 0);     /* FCS, reserved */
	ck_assert_uint_eq(ld32(m + 16), 0xdeadbeef);
	ck_assert_uint_eq(ld32(m + 20), 0);     /* FDS, reserved */
	ck_assert_mem_eq(m, f->ks, 8);
	ck_assert_mem_eq(m + 24, f->ks + 24, 416 - 24);
	/* XRSTOR without REX.W: FIP/FDP zero-extended */
	st32(fmem + AREA + 12, 0x1234);         /* an FCS: dropped */
	st64(fmem + AREA + 512, 3);
	memset(fmem + AREA + 520, 0, 56);
	ck_assert_int_eq(run(f, mk(0xae, 5, AREA, false)), KL_ASX_DONE);
	ck_assert_uint_eq(ld64(f->ks + 8), 0x56789abc);
	ck_assert_uint_eq(ld64(f->ks + 16), 0xdeadbeef);
	/* REX.W forms: the 64-bit pointers */
	st64(f->ks + 8, 0x123456789abcull);
	ck_assert_int_eq(run(f, I_XSAVE(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld64(m + 8), 0x123456789abcull);
	st64(fmem + AREA + 8, 0x7654321ull << 20);
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld64(f->ks + 8), 0x7654321ull << 20);
}
END_TEST

START_TEST(test_xsaveopt)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	uint64_t inuse = 0x222;         /* SSE opmask PKRU */
	rnd_state(f->ks, FAKE_LEN, inuse);
	set_rfbm(f, FAKE_XCR0);
	ck_assert_int_eq(run(f, I_XSAVEOPT(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(f->cpu.kind, KL_ASX_K_XSAVEOPT);
	const uint8_t *m = fmem + AREA;
	ck_assert(all_aa(m, 24) && all_aa(m + 32, 128));        /* x87 not in use */
	ck_assert_mem_eq(m + 24, f->ks + 24, 8);                /* MXCSR always */
	ck_assert_mem_eq(m + 160, f->ks + 160, 256);
	ck_assert(all_aa(m + 576, 256));                        /* AVX not in use */
	ck_assert_mem_eq(m + 1088, f->ks + 1088, 64);
	ck_assert(all_aa(m + 1152, 1536));
	ck_assert_mem_eq(m + 2688, f->ks + 2688, 4);
	ck_assert(all_aa(m + 2752, 40));
	ck_assert_uint_eq(ld64(m + 512), (0xaaaaaaaaaaaaaaaaull & ~FAKE_XCR0) | inuse);
	/* RFBM[2] alone: MXCSR and MXCSR_MASK saved, the XMM registers not */
	memset(fmem, 0xaa, sizeof(fmem));
	set_rfbm(f, 4);
	ck_assert_int_eq(run(f, I_XSAVEOPT(AREA)), KL_ASX_DONE);
	ck_assert_mem_eq(m + 24, f->ks + 24, 8);
	ck_assert(all_aa(m, 24) && all_aa(m + 32, 480) && all_aa(m + 576, 256));
}
END_TEST

/* ---- XSAVEC / XSAVES (compacted) --------------------------------------- */
START_TEST(test_xsavec_offsets)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	rnd_state(f->ks, FAKE_LEN, FAKE_XCR0);
	set_rfbm(f, FAKE_XCR0);
	ck_assert_int_eq(run(f, I_XSAVEC(AREA)), KL_ASX_DONE);
	const uint8_t *m = fmem + AREA, *k = f->ks;
	ck_assert_mem_eq(m, k, 416);
	/* AVX 576, opmask 832, ZMM_Hi256 896, Hi16_ZMM 1408, PKRU 2432, 17 at 2496 (aligned) */
	ck_assert_mem_eq(m + 576, k + 576, 256);
	ck_assert_mem_eq(m + 832, k + 1088, 64);
	ck_assert_mem_eq(m + 896, k + 1152, 512);
	ck_assert_mem_eq(m + 1408, k + 1664, 1024);
	ck_assert_mem_eq(m + 2432, k + 2688, 4);
	ck_assert(all_aa(m + 2436, 60));                        /* PKRU's upper half, padding */
	ck_assert_mem_eq(m + 2496, k + 2752, 40);
	ck_assert(all_aa(m + 2536, 64));
	ck_assert_uint_eq(ld64(m + 512), FAKE_XCR0);
	ck_assert_uint_eq(ld64(m + 520), FAKE_XCR0 | 1ull << 63);
	ck_assert(all_aa(m + 528, 48));                         /* XSAVEC writes no more */

	/* holes: x87 SSE opmask PKRU 17, with AVX and 17 not in use */
	memset(fmem, 0xaa, sizeof(fmem));
	st64(f->ks + 512, FAKE_XCR0 & ~0x20004ull);
	set_rfbm(f, 0x20223);
	ck_assert_int_eq(run(f, I_XSAVEC(AREA)), KL_ASX_DONE);
	ck_assert_mem_eq(m + 576, k + 1088, 64);                /* opmask */
	ck_assert_mem_eq(m + 640, k + 2688, 4);                 /* PKRU */
	ck_assert(all_aa(m + 644, 2000));                       /* 17 (at 704) not in use */
	ck_assert_uint_eq(ld64(m + 512), 0x223);
	ck_assert_uint_eq(ld64(m + 520), 0x20223 | 1ull << 63);
	/* and back: 17 goes to init, the rest round-trips */
	uint8_t want[FAKE_LEN];
	memcpy(want, f->ks, FAKE_LEN);
	memset(want + 2752, 0, 40);
	memset(want + 2692, 0, 4);              /* PKRU loaded: upper half 0 */
	st64(want + 512, FAKE_XCR0 & ~0x20000ull);
	memset(fmem + AREA + 528, 0, 48);
	rnd_bytes(f->ks + 2752, 40);
	st64(f->ks + 512, FAKE_XCR0);
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	ck_assert_int_eq(f->sets, 1);
	ck_assert_mem_eq(f->ks, want, FAKE_LEN);
}
END_TEST

START_TEST(test_xsavec_sse_mxcsr)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	rnd_state(f->ks, FAKE_LEN, 0);          /* nothing in use */
	st32(f->ks + 24, 0x1f80);
	set_rfbm(f, 3);
	ck_assert_int_eq(run(f, I_XSAVEC(AREA)), KL_ASX_DONE);
	ck_assert(all_aa(fmem + AREA, 512));
	ck_assert_uint_eq(ld64(fmem + AREA + 512), 0);
	/* MXCSR != 1F80H: SSE state saved (XMM init), XSTATE_BV[1] = 1 */
	st32(f->ks + 24, 0x1f81);
	ck_assert_int_eq(run(f, I_XSAVEC(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld32(fmem + AREA + 24), 0x1f81);
	ck_assert_mem_eq(fmem + AREA + 28, f->ks + 28, 4);
	ck_assert(all_zero(fmem + AREA + 160, 256));
	ck_assert(all_aa(fmem + AREA, 24));
	ck_assert_uint_eq(ld64(fmem + AREA + 512), 2);
	/* RFBM[2] does not make XSAVEC save MXCSR */
	memset(fmem, 0xaa, sizeof(fmem));
	set_rfbm(f, 4);
	ck_assert_int_eq(run(f, I_XSAVEC(AREA)), KL_ASX_DONE);
	ck_assert(all_aa(fmem + AREA, 512));
}
END_TEST

START_TEST(test_xsaves_supervisor)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	f->xss = FAKE_XSS;
	ck_assert_uint_eq(kl_xsave_sup_len(&fake_layout), 64 + 64 + 64);
	f->cpu.sup_state = f->sup;
	f->cpu.sup_len = kl_xsave_sup_len(&fake_layout);
	rnd_state(f->ks, FAKE_LEN, FAKE_XCR0);
	rnd_bytes(f->sup, sizeof(f->sup));
	st64(f->sup, FAKE_XSS);
	uint8_t sup0[192];
	memcpy(sup0, f->sup, sizeof(sup0));
	set_rfbm(f, FAKE_XCR0 | FAKE_XSS);
	ck_assert_int_eq(run(f, I_XSAVES(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(f->cpu.kind, KL_ASX_K_XSAVES);
	const uint8_t *m = fmem + AREA;
	/* after PKRU (ends at 2440): 11 at 2440, 12 aligned at 2496, 17 at 2560 */
	ck_assert_mem_eq(m + 2440, f->sup + 64, 16);
	ck_assert(all_aa(m + 2456, 40));
	ck_assert_mem_eq(m + 2496, f->sup + 128, 24);
	ck_assert(all_aa(m + 2520, 40));
	ck_assert_mem_eq(m + 2560, f->ks + 2752, 40);
	ck_assert_uint_eq(ld64(m + 512), FAKE_XCR0 | FAKE_XSS);
	ck_assert_uint_eq(ld64(m + 520), FAKE_XCR0 | FAKE_XSS | 1ull << 63);

	/* XRSTORS round trip: supervisor state back from memory */
	memset(fmem + AREA + 528, 0, 48);
	rnd_bytes(f->sup + 64, 128);
	st64(f->sup, 0);
	uint8_t ks0[FAKE_LEN];
	memcpy(ks0, f->ks, FAKE_LEN);
	rnd_bytes(f->ks, 24);                   /* x87, XMM (MXCSR_MASK is the CPU's) */
	rnd_bytes(f->ks + 32, 384);
	ck_assert_int_eq(run(f, I_XRSTORS(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(f->cpu.kind, KL_ASX_K_XRSTORS);
	ck_assert_mem_eq(f->ks, ks0, 416);
	ck_assert_mem_eq(f->sup, sup0, 8);
	ck_assert_mem_eq(f->sup + 64, sup0 + 64, 16);
	ck_assert_mem_eq(f->sup + 128, sup0 + 128, 24);
	/* XSTATE_BV[12] = 0: component 12 to init, no longer in use */
	st64(fmem + AREA + 512, FAKE_XCR0 | 0x800);
	ck_assert_int_eq(run(f, I_XRSTORS(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld64(f->sup), 0x800);
	ck_assert(all_zero(f->sup + 128, 24));
	ck_assert_mem_eq(f->sup + 64, sup0 + 64, 16);
	/* XSAVES then skips it: XSTATE_BV[12] = 0, bytes untouched */
	memset(fmem, 0xaa, sizeof(fmem));
	ck_assert_int_eq(run(f, I_XSAVES(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld64(m + 512), FAKE_XCR0 | 0x800);
	ck_assert(all_aa(m + 2456, 104));
	/* XRSTOR (not S) may not name supervisor components in XCOMP_BV */
	memset(fmem + AREA + 528, 0, 48);
	ck_assert_int_eq(f->sets, 2);
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	ck_assert_int_eq(f->sets, 2);
	/* CPL 3: #GP(0) for both */
	f->cpu.sregs.ss.dpl = 3;
	assert_gp0(f, run(f, I_XSAVES(AREA)));
	assert_gp0(f, run(f, I_XRSTORS(AREA)));
	f->cpu.sregs.ss.dpl = 0;
	/* no supervisor store: not ours when RFBM has supervisor bits */
	f->cpu.sup_state = NULL;
	ck_assert_int_eq(run(f, I_XSAVES(AREA)), KL_ASX_UNHANDLED);
	ck_assert_int_eq(run(f, I_XRSTORS(AREA)), KL_ASX_UNHANDLED);
	set_rfbm(f, FAKE_XCR0);
	ck_assert_int_eq(run(f, I_XSAVES(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld64(m + 520), FAKE_XCR0 | 1ull << 63);
	/* XRSTORS of a standard-format area */
	memset(fmem + AREA + 512, 0, 64);
	assert_gp0(f, run(f, I_XRSTORS(AREA)));
}
END_TEST

/* ---- XRSTOR ------------------------------------------------------------ */
START_TEST(test_xrstor_roundtrip_and_init)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	rnd_state(f->ks, FAKE_LEN, FAKE_XCR0);
	uint8_t a[FAKE_LEN];
	memcpy(a, f->ks, FAKE_LEN);
	memset(fmem + AREA, 0, FAKE_LEN);
	ck_assert_int_eq(run(f, I_XSAVE(AREA)), KL_ASX_DONE);
	rnd_state(f->ks, FAKE_LEN, 0x2);
	memcpy(f->ks + 416, a + 416, 96);
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(f->cpu.kind, KL_ASX_K_XRSTOR);
	ck_assert_mem_eq(f->ks, a, 832);        /* legacy, header, AVX */
	ck_assert_mem_eq(f->ks + 1088, a + 1088, 1604); /* AVX-512, PKRU but its upper half */
	ck_assert(all_zero(f->ks + 2692, 4));
	ck_assert_mem_eq(f->ks + 2752, a + 2752, 40);

	/* XSTATE_BV = SSE only: every other RFBM component goes to init */
	rnd_state(f->ks, FAKE_LEN, FAKE_XCR0);
	uint8_t b[FAKE_LEN];
	memcpy(b, f->ks, FAKE_LEN);
	st64(fmem + AREA + 512, 2);
	set_rfbm(f, FAKE_XCR0 & ~0x40ull);      /* but not ZMM_Hi256 */
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	const uint8_t *k = f->ks;
	ck_assert_uint_eq(ld32(k), 0x037f);     /* FCW, FSW */
	ck_assert(all_zero(k + 4, 20));         /* FTW FOP FIP FDP */
	ck_assert(all_zero(k + 32, 128));
	ck_assert_mem_eq(k + 24, fmem + AREA + 24, 4);  /* standard form: MXCSR loaded */
	ck_assert_mem_eq(k + 160, fmem + AREA + 160, 256);
	ck_assert(all_zero(k + 576, 256) && all_zero(k + 1088, 64));
	ck_assert_mem_eq(k + 1152, b + 1152, 512);      /* not in RFBM: kept */
	ck_assert(all_zero(k + 1664, 1024) && all_zero(k + 2688, 8) && all_zero(k + 2752, 40));
	ck_assert_uint_eq(ld64(k + 512), 0x42);
}
END_TEST

START_TEST(test_xrstor_mxcsr)
{
	struct fake *f = &fk;
	uint8_t *m = fmem + AREA;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	rnd_state(f->ks, FAKE_LEN, 0);
	st32(f->ks + 24, 0x1f80);
	memset(m, 0, 1024);
	st32(m + 24, 0x9f80);
	rnd_bytes(m + 160, 256);
	/* standard, RFBM = AVX, XSTATE_BV = 0: MXCSR loaded, XMM untouched */
	uint8_t xmm[256];
	memcpy(xmm, f->ks + 160, 256);
	set_rfbm(f, 4);
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld32(f->ks + 24), 0x9f80);
	ck_assert_mem_eq(f->ks + 160, xmm, 256);
	ck_assert_uint_eq(ld64(f->ks + 512), 2);        /* MXCSR != 1F80H: kept in use */
	/* compacted, RFBM = AVX: MXCSR not considered */
	st64(m + 520, 1ull << 63 | 6);
	st32(m + 24, 0x1f83);
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld32(f->ks + 24), 0x9f80);
	/* compacted, RFBM[1], XSTATE_BV[1] = 0: MXCSR = 1F80H */
	set_rfbm(f, 6);
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld32(f->ks + 24), 0x1f80);
	ck_assert(all_zero(f->ks + 160, 256));
	ck_assert_uint_eq(ld64(f->ks + 512), 0);
	/* compacted, XSTATE_BV[1] = 1: loaded */
	st64(m + 512, 2);
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	ck_assert_uint_eq(ld32(f->ks + 24), 0x1f83);
	ck_assert_mem_eq(f->ks + 160, m + 160, 256);
	/* reserved bits: #GP when loaded, nothing changes */
	int sets = f->sets;
	st32(m + 24, 0x11f80);
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	st64(m + 512, 0);                       /* compacted, XSTATE_BV[1] = 0: not loaded */
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	st64(m + 520, 0);                       /* standard: loaded with RFBM[1] or [2] */
	set_rfbm(f, 4);
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	set_rfbm(f, 2);
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	set_rfbm(f, 0x21);                      /* neither: not loaded */
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	/* the mask is MXCSR_MASK: DAZ (bit 6) reserved when the mask says so */
	st32(f->ks + 28, 0xffbf);
	st32(m + 24, 0x1fc0);
	set_rfbm(f, 2);
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	ck_assert_int_eq(f->sets, sets + 2);
}
END_TEST

START_TEST(test_xrstor_header_gp)
{
	struct fake *f = &fk;
	uint8_t *m = fmem + AREA;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	rnd_state(f->ks, FAKE_LEN, FAKE_XCR0);
	uint8_t ks0[FAKE_LEN];
	memcpy(ks0, f->ks, FAKE_LEN);
	memcpy(m, f->ks, FAKE_LEN);
	/* standard */
	st64(m + 520, 1);                       /* XCOMP_BV without bit 63 */
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	st64(m + 520, 0);
	m[530] = 1;                             /* header bytes 23:16 */
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	m[530] = 0;
	m[540] = 1;                             /* bytes 63:24: ignored by the standard form */
	m[575] = 0xff;
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	memcpy(f->ks, ks0, FAKE_LEN);
	m[540] = m[575] = 0;
	st64(m + 512, FAKE_XCR0 | 8);           /* XSTATE_BV bit not in XCR0 */
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	set_rfbm(f, 1);                         /* even outside RFBM */
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	set_rfbm(f, ~0ull);
	st64(m + 512, FAKE_XCR0 | 1ull << 63);
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	/* compacted */
	st64(m + 512, 3);
	st64(m + 520, 1ull << 63 | 3);
	ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
	memcpy(f->ks, ks0, FAKE_LEN);
	for (unsigned b = 528; b < 576; b += 47) {      /* bytes 63:16 */
		m[b] = 0x80;
		assert_gp0(f, run(f, I_XRSTOR(AREA)));
		m[b] = 0;
	}
	st64(m + 520, 1ull << 63 | 3 | 8);      /* XCOMP_BV bit not in XCR0 */
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	st64(m + 520, 1ull << 63 | 3);
	st64(m + 512, 7);                       /* XSTATE_BV bit not in XCOMP_BV */
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	st64(m + 512, 3 | 1ull << 63);
	assert_gp0(f, run(f, I_XRSTOR(AREA)));
	/* misaligned, for each instruction */
	st64(m + 512, 3);
	for (unsigned a = 1; a < 64; a <<= 1) {
		assert_gp0(f, run(f, I_XSAVE(AREA + a)));
		assert_gp0(f, run(f, I_XSAVEOPT(AREA + a)));
		assert_gp0(f, run(f, I_XSAVEC(AREA + a)));
		assert_gp0(f, run(f, I_XSAVES(AREA + a)));
		assert_gp0(f, run(f, I_XRSTOR(AREA + a)));
		assert_gp0(f, run(f, I_XRSTORS(AREA + a)));
	}
	ck_assert_int_eq(f->sets, 2);
	ck_assert_mem_eq(f->ks, ks0, FAKE_LEN);
	ck_assert_int_eq(n_writes, 0);
}
END_TEST

/* ---- #UD, #NM, XGETBV, faults, errors, other encodings ----------------- */
START_TEST(test_ud_nm)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	struct kl_insn xg = { .map = 1, .op = 0x01, .has_modrm = true, .modrm = 0xd0, .mod = 3,
			      .reg = 2, .rm = 0 };
	struct kl_insn all[] = { I_XSAVE(AREA), I_XSAVEOPT(AREA), I_XSAVEC(AREA), I_XSAVES(AREA),
				 I_XRSTOR(AREA), I_XRSTORS(AREA), xg };
	for (unsigned i = 0; i < 7; i++) {
		f->cpu.sregs.cr4 &= ~(1ull << 18);
		ck_assert_int_eq(run(f, all[i]), KL_ASX_FAULT);
		ck_assert_uint_eq(f->cpu.fault.vector, KL_X86_UD);
		ck_assert(!f->cpu.fault.has_error);
		f->cpu.sregs.cr4 |= 1ull << 18;
		struct kl_insn l = all[i];
		l.lock = true;
		ck_assert_int_eq(run(f, l), KL_ASX_FAULT);
		ck_assert_uint_eq(f->cpu.fault.vector, KL_X86_UD);
		if (i < 6) {
			f->cpu.sregs.cr0 |= 8;          /* CR0.TS */
			ck_assert_int_eq(run(f, all[i]), KL_ASX_FAULT);
			ck_assert_uint_eq(f->cpu.fault.vector, KL_X86_NM);
			f->cpu.sregs.cr0 &= ~8ull;
		}
	}
	ck_assert_int_eq(n_writes, 0);
}
END_TEST

START_TEST(test_xgetbv)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0 | 1ull << 40);
	rnd_state(f->ks, FAKE_LEN, 0x20223);
	struct kl_insn xg = { .map = 1, .op = 0x01, .has_modrm = true, .modrm = 0xd0, .mod = 3,
			      .reg = 2, .rm = 0, .len = 3 };
	f->cpu.regs.rcx = 0xffffffff00000000ull;        /* ECX = 0 */
	f->cpu.regs.rax = f->cpu.regs.rdx = ~0ull;
	ck_assert_int_eq(kl_asx_xsave(&f->cpu, &xg), KL_ASX_DONE);
	ck_assert_uint_eq(f->cpu.kind, KL_ASX_K_XGETBV);
	ck_assert_uint_eq(f->cpu.regs.rax, (uint32_t)FAKE_XCR0);
	ck_assert_uint_eq(f->cpu.regs.rdx, 1u << 8);
	f->cpu.regs.rcx = 1;
	ck_assert_int_eq(kl_asx_xsave(&f->cpu, &xg), KL_ASX_DONE);
	ck_assert_uint_eq(f->cpu.regs.rax, 0x20223);
	ck_assert_uint_eq(f->cpu.regs.rdx, 0);
	st64(f->ks + 512, 0x20223 | 1ull << 40 | 1ull << 50);   /* bit 50: not in XCR0 */
	ck_assert_int_eq(kl_asx_xsave(&f->cpu, &xg), KL_ASX_DONE);
	ck_assert_uint_eq(f->cpu.regs.rdx, 1u << 8);
	struct kvm_regs before = f->cpu.regs;
	f->cpu.regs.rcx = before.rcx = 2;
	assert_gp0(f, kl_asx_xsave(&f->cpu, &xg));
	f->cpu.regs.rcx = before.rcx = 0x80000000;
	assert_gp0(f, kl_asx_xsave(&f->cpu, &xg));
	ck_assert_mem_eq(&before, &f->cpu.regs, sizeof(before));
}
END_TEST

START_TEST(test_page_faults)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	rnd_state(f->ks, FAKE_LEN, FAKE_XCR0);
	uint8_t ks0[FAKE_LEN];
	memcpy(ks0, f->ks, FAKE_LEN);
	const uint64_t ea = 2 * PAGE - 1024;    /* the area crosses into page 2 */
	memcpy(fmem + ea, f->ks, FAKE_LEN);
	/* XRSTOR: a not-present second page: #PF, no state change */
	fault_page = 2 * PAGE;
	rnd_bytes(fmem + ea + 576, 2000);
	f->cpu.sregs.ss.dpl = 3;
	ck_assert_int_eq(run(f, I_XRSTOR(ea)), KL_ASX_FAULT);
	ck_assert_uint_eq(f->cpu.fault.vector, KL_X86_PF);
	ck_assert_uint_eq(f->cpu.fault.error, KL_PF_U);
	ck_assert_uint_eq(f->cpu.fault.cr2, 2 * PAGE);
	ck_assert_int_eq(f->sets, 0);
	ck_assert_mem_eq(f->ks, ks0, FAKE_LEN);
	/* ... but only the components it loads are read */
	set_rfbm(f, 3);
	ck_assert_int_eq(run(f, I_XRSTOR(ea)), KL_ASX_DONE);
	/* XSAVE to a read-only page: #PF(P|W|U), nothing written */
	set_rfbm(f, ~0ull);
	uint8_t mem0[2 * PAGE];
	memcpy(mem0, fmem + PAGE, sizeof(mem0));
	fault_ro = true;
	enum kl_asx_result r = run(f, I_XSAVE(ea));
	ck_assert_int_eq(r, KL_ASX_FAULT);
	ck_assert_uint_eq(f->cpu.fault.vector, KL_X86_PF);
	ck_assert_uint_eq(f->cpu.fault.error, KL_PF_P | KL_PF_W | KL_PF_U);
	ck_assert_uint_eq(f->cpu.fault.cr2, 2 * PAGE);
	ck_assert_int_eq(n_writes, 0);
	ck_assert_mem_eq(mem0, fmem + PAGE, sizeof(mem0));
	/* not present, first page: the error code is a write's */
	fault_ro = false;
	fault_page = PAGE;
	ck_assert_int_eq(run(f, I_XSAVEC(ea)), KL_ASX_FAULT);
	ck_assert_uint_eq(f->cpu.fault.error, KL_PF_W | KL_PF_U);
	ck_assert_uint_eq(f->cpu.fault.cr2, ea);
	ck_assert_int_eq(n_writes, 0);
	/* MMIO (not RAM): not ours */
	fault_page = ~0ull;
	ck_assert_int_eq(run(f, I_XSAVE(MEMSZ - 1024)), KL_ASX_UNHANDLED);
	ck_assert_int_eq(run(f, I_XRSTOR(MEMSZ)), KL_ASX_UNHANDLED);
}
END_TEST

START_TEST(test_errors_and_others)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	rnd_state(f->ks, FAKE_LEN, FAKE_XCR0);
	f->fail = true;
	ck_assert_int_eq(run(f, I_XSAVE(AREA)), KL_ASX_ERROR);
	ck_assert_int_eq(n_writes, 0);
	f->fail = false;
	/* not the XSAVE family */
	struct kl_insn in = mk(0xae, 7, AREA, false);           /* CLFLUSH */
	ck_assert_int_eq(run(f, in), KL_ASX_UNHANDLED);
	in = mk(0xc7, 1, AREA, true);                           /* CMPXCHG16B */
	ck_assert_int_eq(run(f, in), KL_ASX_UNHANDLED);
	in = I_XSAVEOPT(AREA);
	in.pp = 1;                                              /* 66 0F AE /6: CLWB */
	ck_assert_int_eq(run(f, in), KL_ASX_UNHANDLED);
	in = I_XSAVE(AREA);
	in.has_mem = false;                                     /* register form */
	in.mod = 3;
	ck_assert_int_eq(run(f, in), KL_ASX_UNHANDLED);
	in = I_XSAVE(AREA);
	in.map = 0;
	ck_assert_int_eq(run(f, in), KL_ASX_UNHANDLED);
	/* REX.R does not change the opcode extension */
	in = I_XSAVE(AREA);
	in.reg = 12;
	ck_assert_int_eq(run(f, in), KL_ASX_DONE);
	ck_assert_int_eq(n_writes, 1);
	/* an XCR0 component the layout does not know: not ours */
	f->xcr0 |= 1ull << 3;
	ck_assert_int_eq(run(f, I_XSAVE(AREA)), KL_ASX_UNHANDLED);
}
END_TEST

START_TEST(test_not_64bit_mode)
{
	struct fake *f = &fk;
	fake_init(f, &fake_layout, FAKE_LEN, FAKE_XCR0);
	f->cpu.sregs.cs.l = 0;
	f->cpu.sregs.efer = 0;
	rnd_state(f->ks, FAKE_LEN, FAKE_XCR0);
	ck_assert_int_eq(run(f, mk(0xae, 4, AREA, false)), KL_ASX_DONE);
	const uint8_t *m = fmem + AREA;
	ck_assert_mem_eq(m + 160, f->ks + 160, 128);    /* XMM0-7 */
	ck_assert(all_aa(m + 288, 128));                /* XMM8-15 */
	ck_assert_mem_eq(m + 576, f->ks + 576, 128);    /* YMM0-7_H */
	ck_assert(all_aa(m + 704, 128));
	ck_assert_mem_eq(m + 1152, f->ks + 1152, 256);  /* ZMM0-7_H */
	ck_assert(all_aa(m + 1408, 256 + 1024));        /* ZMM8-15_H, ZMM16-31 */
	/* and XRSTOR leaves those registers alone */
	uint8_t ks0[FAKE_LEN];
	memcpy(ks0, f->ks, FAKE_LEN);
	memset(fmem + AREA + 520, 0, 56);
	st64(fmem + AREA + 512, FAKE_XCR0);
	ck_assert_int_eq(run(f, mk(0xae, 5, AREA, false)), KL_ASX_DONE);
	ck_assert_mem_eq(f->ks + 288, ks0 + 288, 128);
	ck_assert_mem_eq(f->ks + 1664, ks0 + 1664, 1024);
}
END_TEST

#include "test_assist_xsave_native.h"

int main(void)
{
	init_fake_layout();
	Suite *s = suite_create("assist-xsave");
	TCase *tc = tcase_create("fake-layout");
	tcase_add_test(tc, test_xsave_standard);
	tcase_add_test(tc, test_xsave_x87_forms);
	tcase_add_test(tc, test_xsaveopt);
	tcase_add_test(tc, test_xsavec_offsets);
	tcase_add_test(tc, test_xsavec_sse_mxcsr);
	tcase_add_test(tc, test_xsaves_supervisor);
	tcase_add_test(tc, test_xrstor_roundtrip_and_init);
	tcase_add_test(tc, test_xrstor_mxcsr);
	tcase_add_test(tc, test_xrstor_header_gp);
	tcase_add_test(tc, test_ud_nm);
	tcase_add_test(tc, test_xgetbv);
	tcase_add_test(tc, test_page_faults);
	tcase_add_test(tc, test_errors_and_others);
	tcase_add_test(tc, test_not_64bit_mode);
	suite_add_tcase(s, tc);
	TCase *th = tcase_create("host");
	tcase_set_timeout(th, 60);
	add_native_tests(th);
	suite_add_tcase(s, th);
	return kl_check_run(s);
}
