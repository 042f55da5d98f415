/* libFuzzer target: the emulation assist (src/cpu/assist/: decode.c,
 * walk.c, insn.c, sse.c, xsave.c, syscall.c, crfix.c) on guest-controlled
 * instruction bytes, page tables, stack frames and registers.
 *
 * Guest RAM is two regions with a hole between them, [0, 512K) and
 * [1M, 1M+256K), each its own heap buffer of exactly that size (ASan sees
 * any access outside).  Page tables are built from the input's map
 * commands in a pool at [0x60000, 0x80000) (root 0x60000), then the
 * input's pokes write raw bytes anywhere in RAM (page-table entries
 * included).  The same CPU state then goes, each time from scratch, to
 * kl_asx_execute, kl_asx_cr_site, kl_asx_syscall_fixup,
 * kl_asx_cr_gp_fixup and kl_asx_idt_handler.
 *
 * Input layout (little endian; reads past the end give zeroes):
 *   u8  mode    bits 0-2 paging: 0 4-level, 1 5-level, 2 PAE, 3 32-bit,
 *               4 32-bit+PSE, 5-6 paging off, 7 real mode;
 *               bits 3-4 CPL; bit 5 CS.L (long modes) / CS.DB off;
 *               bit 6 every op fails; bit 7 supervisor XSAVE state present
 *   u8  cr0     bit 0 WP, 1 TS, 2 EM, 3 MP; bit 4 RFLAGS.AC;
 *               bit 5 CR3 = the raw u64 below instead of the pool root
 *   u8  cr4     bit 0 SMEP, 1 SMAP, 2 OSFXSR, 3 OSXSAVE, 4 PKE, 5 TSD,
 *               6 PCIDE
 *   u8  misc    bit 0 EFER.NXE; bits 1-2 XSAVE layout (0 AVX-512-like,
 *               1 same + supervisor components, 2 the host's, 3 none);
 *               bits 3-4 xsave_len (0 the layout's, 1 4096, 2 576, 3 512);
 *               bit 5 pcide_shadow (kl_asx_cr_gp_fixup); bit 6 IDT vector
 *               + 256
 *   u8  nmaps (<= 48), u8 npokes (<= 48), u8 insn length (& 15), u8 vector
 *   u64 rax rcx rdx rbx rsp rbp rsi rdi r8-r15, rip, rflags, cr2, cr3 raw,
 *       idt.base; u16 idt.limit; u64 STAR LSTAR SFMASK XCR0 XSS TSC TSC_AUX
 *   u8[15] instruction bytes (the first "insn length" are passed)
 *   nmaps x { u64 la; u32 pa; u8 level (1-3); u8 table flags (bit 0 W,
 *            1 U, 2 XD); u16 leaf flags (bits 0-11 as is, bit 13 pa + 4G,
 *            bit 14 reserved bit 51, bit 15 XD) }
 *   npokes x { u32 gpa; u8 len (<= 64); len bytes }
 *   the rest: the XSAVE buffer's first bytes (cpu->xsave_len of them, the
 *   others zero), then the supervisor state's.
 *
 * Asserted: a result is one of the four; the assist changes no segment or
 * control register; DONE advances RIP by exactly the decoded length (1-15,
 * wrapped to 32 bits outside 64-bit mode), clears RF and changes no other
 * register than a GPR, RFLAGS' arithmetic flags and AC; FAULT and
 * UNHANDLED leave every register as it was, except the #BP trap of INT3
 * (RIP past it); a FAULT's vector is an architectural exception (0-31)
 * with an error code exactly for those that push one, or 0xff for page
 * tables outside RAM (walk.c; assist.c does not inject it); ERROR only when an
 * op failed; kl_asx_cr_site/kl_asx_cr_gp_fixup/kl_asx_syscall_fixup/
 * kl_asx_idt_handler never touch cpu->fault and change nothing when they
 * say no; a SYSCALL fix-up lands at CPL 0 in 64-bit code at LSTAR (never
 * 0) with the SFMASK bits and RF clear; a CR fix-up continues right after
 * a 3- or 4-byte mov with the value stripped of exactly the bit it
 * takes away; an IDT handler comes from a gate inside the IDT limit. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "assist_int.h"
#include "kvmlite/mem.h"

#include "fuzz_util.h"

#define R0_SIZE 0x80000u
#define R1_GPA 0x100000u
#define R1_SIZE 0x40000u
#define POOL 0x60000u
#define POOL_END 0x80000u
#define MAX_CMDS 48

#define PTE_P (1ull << 0)
#define PTE_W (1ull << 1)
#define PTE_U (1ull << 2)
#define PTE_PS (1ull << 7)
#define PTE_XD (1ull << 63)

#define RF (1ull << 16)
#define IF (1ull << 9)
#define AC (1ull << 18)
#define ARITH 0x8d5ull   /* CF PF AF ZF SF OF */

static uint8_t *r0, *r1;
static struct kl_guest_mem mem;
static struct kl_xstate_layout lay_avx512, lay_sup, lay_host;

struct fake {
	bool fail;
	uint8_t *xsave;   /* cpu->xsave_len bytes */
	uint64_t xcr0, xss, tsc, tsc_aux;
	int flushes;
};

static struct fake *fk(struct kl_asx_cpu *c)
{
	return c->opaque;
}

static int op_get_xsave(struct kl_asx_cpu *c, void *buf)
{
	if (fk(c)->fail)
		return -1;
	memcpy(buf, fk(c)->xsave, c->xsave_len);
	return 0;
}

static int op_set_xsave(struct kl_asx_cpu *c, const void *buf)
{
	if (fk(c)->fail)
		return -1;
	memcpy(fk(c)->xsave, buf, c->xsave_len);
	return 0;
}

static int op_get_xcr0(struct kl_asx_cpu *c, uint64_t *v)
{
	if (fk(c)->fail)
		return -1;
	*v = fk(c)->xcr0;
	return 0;
}

static int op_get_msr(struct kl_asx_cpu *c, uint32_t i, uint64_t *v)
{
	struct fake *f = fk(c);
	if (f->fail)
		return -1;
	switch (i) {
	case 0x10: *v = f->tsc; return 0;
	case 0xc0000103: *v = f->tsc_aux; return 0;
	case 0xda0: *v = f->xss; return 0;
	}
	FUZZ_TRACE("get_msr %#x: unknown\n", i);
	FUZZ_ASSERT(!"the assist reads an MSR the harness does not know");
	return -1;
}

static int op_set_msr(struct kl_asx_cpu *c, uint32_t i, uint64_t v)
{
	(void)c, (void)i, (void)v;
	return -1;
}

static int op_flush_tlb(struct kl_asx_cpu *c)
{
	if (fk(c)->fail)
		return -1;
	fk(c)->flushes++;
	return 0;
}

static const struct kl_asx_ops ops = { op_get_xsave, op_set_xsave, op_get_xcr0, op_get_msr,
				       op_set_msr, op_flush_tlb };

static void comp(struct kl_xstate_layout *l, unsigned i, uint32_t off, uint32_t size, bool a64,
		 bool sup)
{
	l->comp[i] = (struct kl_xstate_comp){ size, off, a64, sup };
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_init_glib(*argv);
	r0 = calloc(1, R0_SIZE);
	r1 = calloc(1, R1_SIZE);
	FUZZ_ASSERT(r0 && r1);
	kl_mem_init_empty(&mem);
	FUZZ_ASSERT(kl_mem_add_region(&mem, 0, R0_SIZE, r0) == 0);
	FUZZ_ASSERT(kl_mem_add_region(&mem, R1_GPA, R1_SIZE, r1) == 0);
	/* AVX, opmask, ZMM_Hi256, Hi16_ZMM, PKRU where Skylake-SP has them */
	comp(&lay_avx512, 2, 576, 256, false, false);
	comp(&lay_avx512, 5, 1088, 64, false, false);
	comp(&lay_avx512, 6, 1152, 512, false, false);
	comp(&lay_avx512, 7, 1664, 1024, false, false);
	comp(&lay_avx512, 9, 2688, 8, false, false);
	lay_avx512.xcr0_mask = 0x2e7;
	lay_sup = lay_avx512;
	/* PT, CET_U, CET_S: supervisor (IA32_XSS) components */
	comp(&lay_sup, 8, 0, 128, false, true);
	comp(&lay_sup, 11, 0, 16, true, true);
	comp(&lay_sup, 12, 0, 24, false, true);
	lay_sup.xss_mask = 0x1900;
	kl_xstate_layout_host(&lay_host);
	return 0;
}

/* xsave_len a layout needs: the end of its last user component */
static size_t layout_len(const struct kl_xstate_layout *l)
{
	size_t end = 576;
	for (unsigned i = 2; i < 63; i++)
		if ((l->xcr0_mask >> i & 1) && !l->comp[i].supervisor &&
		    (size_t)l->comp[i].offset + l->comp[i].size > end)
			end = (size_t)l->comp[i].offset + l->comp[i].size;
	return end;
}

/* ---- page tables ----------------------------------------------------- */
struct pt {
	unsigned mode;
	uint64_t next;   /* next free pool page */
};

static uint64_t pool_alloc(struct pt *p)
{
	if (p->next >= POOL_END)
		return 0;
	uint64_t a = p->next;
	p->next += 4096;
	memset(r0 + a, 0, 4096);
	return a;
}

static bool in_pool(uint64_t a)
{
	return a >= POOL && a < POOL_END;
}

static uint64_t ld(uint64_t gpa, bool wide)
{
	if (wide) {
		uint64_t v;
		memcpy(&v, r0 + gpa, 8);
		return v;
	}
	uint32_t v;
	memcpy(&v, r0 + gpa, 4);
	return v;
}

static void st(uint64_t gpa, bool wide, uint64_t v)
{
	if (wide)
		memcpy(r0 + gpa, &v, 8);
	else {
		uint32_t w = (uint32_t)v;
		memcpy(r0 + gpa, &w, 4);
	}
}

/* One map command: la -> pa with a leaf at level, tables made as needed. */
static void map(struct pt *p, uint64_t la, uint64_t leaf, unsigned level, uint64_t inter)
{
	bool wide = p->mode != 3 && p->mode != 4;
	unsigned top, bits = wide ? 9 : 10;
	uint64_t table = POOL, amask = wide ? 0x000ffffffffff000ull : 0xfffff000ull;
	switch (p->mode) {
	case 0: top = 4; break;
	case 1: top = 5; break;
	case 2: {
		/* PAE: a PDPTE (P and the address only) then two levels */
		uint64_t e = POOL + ((la >> 30) & 3) * 8, v = ld(e, true);
		if (!(v & PTE_P) || !in_pool(v & amask)) {
			uint64_t t = pool_alloc(p);
			if (!t)
				return;
			st(e, true, t | PTE_P);
			v = t;
		}
		table = v & amask;
		top = 2;
		break;
	}
	default: top = 2; break;
	}
	if (level > top || (!wide && level > 2) || (p->mode == 2 && level > 2))
		level = top < 3 ? top : 3;
	for (unsigned l = top; l > level; l--) {
		unsigned shift = 12 + bits * (l - 1);
		uint64_t e = table + ((la >> shift) & ((1u << bits) - 1)) * (wide ? 8 : 4);
		uint64_t v = ld(e, wide);
		if (!(v & PTE_P) || !in_pool(v & amask) || (v & PTE_PS)) {
			uint64_t t = pool_alloc(p);
			if (!t)
				return;
			v = t | inter;
			st(e, wide, v);
		}
		table = v & amask;
	}
	unsigned shift = 12 + bits * (level - 1);
	uint64_t e = table + ((la >> shift) & ((1u << bits) - 1)) * (wide ? 8 : 4);
	st(e, wide, leaf | (level > 1 ? PTE_PS : 0));
}

/* ---- invariants ------------------------------------------------------ */
static bool mode64(const struct kl_asx_cpu *c)
{
	return (c->sregs.efer & (1u << 10)) && c->sregs.cs.l;
}

static bool regs_eq(const struct kvm_regs *a, const struct kvm_regs *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

static bool sregs_eq(const struct kvm_sregs *a, const struct kvm_sregs *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

static void mark_fault(struct kl_asx_cpu *c)
{
	c->fault = (struct kl_asx_fault){ .vector = 0x77, .has_error = true, .error = 0xdead,
					  .cr2 = 0xbeef, .trap = true };
}

static bool fault_marked(const struct kl_asx_cpu *c)
{
	return c->fault.vector == 0x77 && c->fault.has_error && c->fault.error == 0xdead &&
	       c->fault.cr2 == 0xbeef && c->fault.trap;
}

/* GPRs other than n equal (16 = none excepted) */
static bool gprs_eq_except(struct kl_asx_cpu *a, struct kl_asx_cpu *b, unsigned n)
{
	for (unsigned i = 0; i < 16; i++)
		if (i != n && *kl_asx_gpr(a, i) != *kl_asx_gpr(b, i))
			return false;
	return true;
}

static bool has_error_code(unsigned v)
{
	return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

static void check_execute(const struct kl_asx_cpu *base, const uint8_t *insn, size_t n,
			  bool fail)
{
	struct kl_asx_cpu c = *base;
	struct kl_insn in;
	int dec = kl_insn_decode(base, insn, n, &in);
	enum kl_asx_result r = kl_asx_execute(&c, insn, n);
	FUZZ_TRACE("execute: %d kind %s vector %u\n", r, kl_asx_kind_name(c.kind), c.fault.vector);
	FUZZ_ASSERT(r >= KL_ASX_UNHANDLED && r <= KL_ASX_ERROR);
	FUZZ_ASSERT(sregs_eq(&c.sregs, &base->sregs));
	if (dec < 0)
		FUZZ_ASSERT(r == KL_ASX_UNHANDLED);
	uint64_t next = base->regs.rip + (dec < 0 ? 0 : in.len);
	if (!mode64(base))
		next = (uint32_t)next;
	switch (r) {
	case KL_ASX_DONE: {
		FUZZ_ASSERT(in.len >= 1 && in.len <= KL_INSN_MAX && in.len <= n);
		FUZZ_ASSERT(c.regs.rip == next);
		FUZZ_ASSERT(!(c.regs.rflags & RF));
		FUZZ_ASSERT((c.regs.rflags & ~(ARITH | AC)) == (base->regs.rflags & ~(ARITH | AC | RF)));
		FUZZ_ASSERT(c.kind != KL_ASX_K_FAULT && c.kind != KL_ASX_K_UNHANDLED);
		break;
	}
	case KL_ASX_FAULT:
		/* 0xff: a paging structure outside guest RAM (walk.c), not an
		 * exception: assist.c does not inject it */
		FUZZ_ASSERT(c.fault.vector < 32 || c.fault.vector == 0xff);
		if (c.fault.vector == 0xff)
			FUZZ_ASSERT(!c.fault.trap && !c.fault.has_error);
		else
			FUZZ_ASSERT(c.fault.has_error == has_error_code(c.fault.vector));
		if (c.fault.trap) {
			FUZZ_ASSERT(c.fault.vector == KL_X86_BP);
			FUZZ_ASSERT(c.regs.rip == next);
			c.regs.rip = base->regs.rip;
		} else {
			FUZZ_ASSERT(c.kind == KL_ASX_K_FAULT);
		}
		if (c.fault.vector == KL_X86_GP)
			FUZZ_ASSERT(c.fault.error == 0);
		if (c.fault.vector == KL_X86_PF)
			FUZZ_ASSERT(!(c.fault.error & ~0x3fu));
		FUZZ_ASSERT(regs_eq(&c.regs, &base->regs));
		break;
	case KL_ASX_ERROR:
		FUZZ_ASSERT(fail);
		/* fall through */
	default:
		FUZZ_ASSERT(regs_eq(&c.regs, &base->regs));
		break;
	}
}

static void check_cr_site(const struct kl_asx_cpu *base)
{
	struct kl_asx_cpu c = *base;
	struct kl_asx_cr_write w;
	mark_fault(&c);
	int r = kl_asx_cr_site(&c, &w);
	FUZZ_ASSERT(fault_marked(&c));
	FUZZ_ASSERT(sregs_eq(&c.sregs, &base->sregs));
	if (r < 0) {
		FUZZ_ASSERT(r == -1);
		FUZZ_ASSERT(regs_eq(&c.regs, &base->regs));
		return;
	}
	FUZZ_ASSERT(r == 0);
	FUZZ_ASSERT(w.cr == 3 || w.cr == 4);
	FUZZ_ASSERT(w.site == base->regs.rip);
	uint64_t len = c.regs.rip - base->regs.rip;
	FUZZ_ASSERT(len == 3 || len == 4);
	FUZZ_ASSERT(gprs_eq_except(&c, (struct kl_asx_cpu *)base, 16));
	if (w.cr == 4)
		FUZZ_ASSERT(!(w.value & (1ull << 17)) && !w.noflush);
	else
		FUZZ_ASSERT(!(w.value >> 63) && !w.pcide);
}

static void check_syscall(const struct kl_asx_cpu *base, const struct kl_asx_syscall_msrs *m)
{
	struct kl_asx_cpu c = *base;
	mark_fault(&c);
	bool ok = kl_asx_syscall_fixup(&c, m);
	FUZZ_TRACE("syscall fixup: %d\n", ok);
	FUZZ_ASSERT(fault_marked(&c));
	if (!ok) {
		FUZZ_ASSERT(regs_eq(&c.regs, &base->regs));
		FUZZ_ASSERT(sregs_eq(&c.sregs, &base->sregs));
		return;
	}
	FUZZ_ASSERT(m->lstar != 0 && c.regs.rip == m->lstar);
	FUZZ_ASSERT(base->sregs.cr2 == m->lstar);
	FUZZ_ASSERT(base->sregs.efer & (1u << 10));
	FUZZ_ASSERT(c.sregs.cs.dpl == 0 && c.sregs.ss.dpl == 0 && kl_asx_cpl(&c) == 0);
	FUZZ_ASSERT(c.sregs.cs.l == 1 && c.sregs.cs.db == 0 && c.sregs.cs.present);
	FUZZ_ASSERT(c.sregs.cs.selector == ((m->star >> 32) & 0xfffc));
	FUZZ_ASSERT(m->sfmask & IF);
	FUZZ_ASSERT(!(c.regs.rflags & (m->sfmask | RF)));
	FUZZ_ASSERT((c.regs.rflags & ~2ull) == (base->regs.r11 & ~m->sfmask & ~RF & ~2ull));
	FUZZ_ASSERT(base->regs.rcx >= 2);
	FUZZ_ASSERT(gprs_eq_except(&c, (struct kl_asx_cpu *)base, 4));
	/* control registers, IDT, EFER stay */
	FUZZ_ASSERT(c.sregs.cr3 == base->sregs.cr3 && c.sregs.cr4 == base->sregs.cr4 &&
		    c.sregs.efer == base->sregs.efer);
}

static void check_gp_fixup(const struct kl_asx_cpu *base, bool shadow)
{
	struct kl_asx_cpu c = *base;
	struct kl_asx_cr_write w;
	mark_fault(&c);
	bool ok = kl_asx_cr_gp_fixup(&c, shadow, &w);
	FUZZ_TRACE("gp fixup: %d\n", ok);
	FUZZ_ASSERT(fault_marked(&c));
	FUZZ_ASSERT(sregs_eq(&c.sregs, &base->sregs));
	if (!ok) {
		FUZZ_ASSERT(regs_eq(&c.regs, &base->regs));
		return;
	}
	FUZZ_ASSERT(base->sregs.cs.l);
	FUZZ_ASSERT(c.regs.rip - w.site == 3 || c.regs.rip - w.site == 4);
	FUZZ_ASSERT(!(c.regs.rflags & RF));
	FUZZ_ASSERT(gprs_eq_except(&c, (struct kl_asx_cpu *)base, 4));
	if (w.cr == 4) {
		FUZZ_ASSERT(w.pcide && !(w.value & (1ull << 17)));
	} else {
		FUZZ_ASSERT(w.cr == 3);
		FUZZ_ASSERT(shadow && w.noflush && !(w.value >> 63));
	}
}

static void check_idt(const struct kl_asx_cpu *base, unsigned vec)
{
	struct kl_asx_cpu c = *base;
	mark_fault(&c);
	uint64_t h = kl_asx_idt_handler(&c, vec);
	FUZZ_ASSERT(fault_marked(&c));
	FUZZ_ASSERT(regs_eq(&c.regs, &base->regs) && sregs_eq(&c.sregs, &base->sregs));
	if (h)
		FUZZ_ASSERT(vec <= 255 && (uint32_t)base->sregs.idt.limit >= vec * 16 + 15);
}

/* ---- one input ------------------------------------------------------- */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	memset(r0, 0, R0_SIZE);
	memset(r1, 0, R1_SIZE);

	uint8_t mode = fuzz_u8(&in), cr0b = fuzz_u8(&in), cr4b = fuzz_u8(&in), misc = fuzz_u8(&in);
	unsigned nmaps = fuzz_u8(&in), npokes = fuzz_u8(&in), ilen = fuzz_u8(&in) & 15;
	unsigned vec = fuzz_u8(&in) + (misc & 0x40 ? 256 : 0);
	nmaps = nmaps > MAX_CMDS ? MAX_CMDS : nmaps;
	npokes = npokes > MAX_CMDS ? MAX_CMDS : npokes;

	struct kl_asx_cpu cpu;
	memset(&cpu, 0, sizeof(cpu));
	for (unsigned i = 0; i < 16; i++)
		*kl_asx_gpr(&cpu, i) = fuzz_u64(&in);
	cpu.regs.rip = fuzz_u64(&in);
	cpu.regs.rflags = fuzz_u64(&in) | 2;
	cpu.sregs.cr2 = fuzz_u64(&in);
	uint64_t cr3_raw = fuzz_u64(&in);
	cpu.sregs.idt.base = fuzz_u64(&in);
	cpu.sregs.idt.limit = fuzz_u16(&in);
	struct kl_asx_syscall_msrs m;
	m.star = fuzz_u64(&in);
	m.lstar = fuzz_u64(&in);
	m.sfmask = fuzz_u64(&in);
	struct fake f = { .fail = mode & 0x40 };
	uint64_t xcr0 = fuzz_u64(&in), xss = fuzz_u64(&in);
	f.tsc = fuzz_u64(&in);
	f.tsc_aux = fuzz_u64(&in);
	uint8_t insn[KL_INSN_MAX];
	for (unsigned i = 0; i < KL_INSN_MAX; i++)
		insn[i] = fuzz_u8(&in);

	/* mode */
	unsigned pmode = mode & 7, cpl = (mode >> 3) & 3;
	bool longm = pmode <= 1;
	struct kvm_sregs *s = &cpu.sregs;
	s->cr0 = (pmode == 7 ? 0 : 1) | (1u << 4) | (1u << 5) | (pmode <= 4 ? 1u << 31 : 0);
	s->cr0 |= (cr0b & 1 ? 1u << 16 : 0) | (cr0b & 2 ? 1u << 3 : 0) | (cr0b & 4 ? 1u << 2 : 0) |
		  (cr0b & 8 ? 1u << 1 : 0);
	if (cr0b & 0x10)
		cpu.regs.rflags |= AC;
	s->cr4 = (pmode <= 2 ? 1u << 5 : 0) | (pmode == 1 ? 1u << 12 : 0) | (pmode == 4 ? 1u << 4 : 0);
	static const unsigned cr4bits[] = { 20, 21, 9, 18, 22, 2, 17 };
	for (unsigned i = 0; i < 7; i++)
		if (cr4b >> i & 1)
			s->cr4 |= 1ull << cr4bits[i];
	s->efer = (longm ? (1u << 8) | (1u << 10) : 0) | (misc & 1 ? 1u << 11 : 0);
	s->cr3 = (cr0b & 0x20) ? cr3_raw : POOL;
	if (pmode == 7)
		cpl = 0;
	s->cs.l = longm && (mode & 0x20);
	s->cs.db = !s->cs.l && !(mode & 0x20);
	s->cs.dpl = s->ss.dpl = (uint8_t)cpl;
	s->cs.selector = (uint16_t)((cpl == 3 ? 0x30 : 0x10) | cpl);
	s->ss.selector = (uint16_t)((cpl == 3 ? 0x28 : 0x18) | cpl);
	s->cs.present = s->ss.present = 1;
	s->cs.s = s->ss.s = 1;
	s->cs.type = 11;
	s->ss.type = 3;

	/* page tables and pokes */
	struct pt p = { .mode = pmode, .next = POOL };
	memset(r0 + POOL, 0, 4096);
	p.next += 4096;
	for (unsigned i = 0; i < nmaps; i++) {
		uint64_t la = fuzz_u64(&in), pa = fuzz_u32(&in) & ~0xfffu;
		unsigned level = fuzz_u8(&in) % 3 + 1;
		uint8_t tf = fuzz_u8(&in);
		uint16_t lf = fuzz_u16(&in);
		uint64_t inter = PTE_P | (tf & 1 ? PTE_W : 0) | (tf & 2 ? PTE_U : 0) |
				 (tf & 4 ? PTE_XD : 0);
		uint64_t leaf = pa | (lf & 0xfff) | (lf & 0x2000 ? 1ull << 32 : 0) |
				(lf & 0x4000 ? 1ull << 51 : 0) | (lf & 0x8000 ? PTE_XD : 0);
		if (pmode <= 4)
			map(&p, la, leaf, level, inter);
	}
	for (unsigned i = 0; i < npokes; i++) {
		uint64_t gpa = fuzz_u32(&in);
		unsigned len = fuzz_u8(&in) % 65;
		uint8_t b[64];
		for (unsigned k = 0; k < len; k++)
			b[k] = fuzz_u8(&in);
		kl_mem_write(&mem, gpa, b, len);
	}

	/* XSAVE state */
	static const struct kl_xstate_layout *const lays[] = { &lay_avx512, &lay_sup, &lay_host,
								NULL };
	const struct kl_xstate_layout *l = lays[(misc >> 1) & 3];
	static const size_t lens[] = { 0, 4096, 576, 512 };
	size_t xlen = lens[(misc >> 3) & 3];
	if (!xlen)
		xlen = l ? layout_len(l) : 576;
	cpu.xstate = l;
	cpu.xsave_len = xlen;
	f.xsave = calloc(1, xlen);
	FUZZ_ASSERT(f.xsave);
	for (size_t k = 0; k < xlen && in.len; k++)
		f.xsave[k] = fuzz_u8(&in);
	f.xcr0 = (xcr0 & (l ? l->xcr0_mask : 3)) | 1;
	f.xss = xss & (l ? l->xss_mask : 0);
	size_t sup_len = l ? kl_xsave_sup_len(l) : 0;
	uint8_t *sup = NULL;
	if ((mode & 0x80) && sup_len) {
		sup = calloc(1, sup_len);
		FUZZ_ASSERT(sup);
		for (size_t k = 0; k < sup_len && in.len; k++)
			sup[k] = fuzz_u8(&in);
		cpu.sup_state = sup;
		cpu.sup_len = sup_len;
	}
	cpu.mem = &mem;
	cpu.ops = &ops;
	cpu.opaque = &f;

	FUZZ_TRACE("mode %u cpl %u cs.l %u rip %#llx insn len %u\n", pmode, cpl, s->cs.l,
		   (unsigned long long)cpu.regs.rip, ilen);
	check_execute(&cpu, insn, ilen, f.fail);
	check_cr_site(&cpu);
	check_syscall(&cpu, &m);
	check_gp_fixup(&cpu, misc & 0x20);
	check_idt(&cpu, vec);

	free(sup);
	free(f.xsave);
	return 0;
}
