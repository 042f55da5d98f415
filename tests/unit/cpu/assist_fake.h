/* Fakes for the emulation-assist unit tests (test_assist_*.c): guest RAM
 * over a g_malloc0 buffer, hand-built page tables, and kl_asx_ops with an
 * in-memory XSAVE buffer and MSR table.  Page-table bits are written out
 * from the SDM (vol. 3 4.5) here, independently of walk.c. */
#ifndef KL_ASSIST_FAKE_H
#define KL_ASSIST_FAKE_H

#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "assist_int.h"

#define FAKE_RAM (8u << 20)      /* 8 MiB of RAM at GPA 0 */
#define FAKE_PT_BASE 0x100000u   /* page tables are allocated from here */
#define FAKE_XSAVE_LEN 4096u
#define FAKE_PKRU_OFF 2688u      /* component 9 where this layout puts it */

#define E_P (1ull << 0)
#define E_W (1ull << 1)
#define E_U (1ull << 2)
#define E_A (1ull << 5)
#define E_D (1ull << 6)
#define E_PS (1ull << 7)
#define E_XD (1ull << 63)

struct fake {
	struct kl_guest_mem mem;
	uint8_t *ram;
	uint64_t next_pt;   /* next free page-table page */
	uint64_t inter;     /* flags of intermediate entries made by fake_map */
	uint8_t xsave[FAKE_XSAVE_LEN];
	int xsave_gets, xsave_sets;
	uint64_t tsc, tsc_aux;
	bool fail_ops;
	struct kl_xstate_layout xl;
	struct kl_asx_ops ops;
	struct kl_asx_cpu cpu;
};

static inline struct fake *fake_of(struct kl_asx_cpu *c)
{
	return c->opaque;
}

static inline int fake_get_xsave(struct kl_asx_cpu *c, void *buf)
{
	struct fake *f = fake_of(c);
	if (f->fail_ops)
		return -1;
	f->xsave_gets++;
	memcpy(buf, f->xsave, c->xsave_len);
	return 0;
}

static inline int fake_set_xsave(struct kl_asx_cpu *c, const void *buf)
{
	struct fake *f = fake_of(c);
	if (f->fail_ops)
		return -1;
	f->xsave_sets++;
	memcpy(f->xsave, buf, c->xsave_len);
	return 0;
}

static inline int fake_get_xcr0(struct kl_asx_cpu *c, uint64_t *xcr0)
{
	(void)c;
	*xcr0 = 0x207;
	return 0;
}

static inline int fake_get_msr(struct kl_asx_cpu *c, uint32_t index, uint64_t *val)
{
	struct fake *f = fake_of(c);
	if (f->fail_ops)
		return -1;
	if (index == 0x10)
		*val = f->tsc;
	else if (index == 0xc0000103)
		*val = f->tsc_aux;
	else
		return -1;
	return 0;
}

static inline int fake_set_msr(struct kl_asx_cpu *c, uint32_t index, uint64_t val)
{
	(void)c;
	(void)index;
	(void)val;
	return -1;
}

static inline uint64_t fake_alloc_pt(struct fake *f)
{
	uint64_t p = f->next_pt;
	f->next_pt += 4096;
	g_assert(f->next_pt <= 0x200000);
	memset(f->ram + p, 0, 4096);
	return p;
}

/* A 64-bit CPU at CPL 0 with 4-level paging (CR0.PG|WP, CR4.PAE, EFER
 * LME|LMA|NXE), an empty PML4, FPU state in its reset values. */
static inline struct fake *fake_new(void)
{
	struct fake *f = g_new0(struct fake, 1);
	f->ram = g_malloc0(FAKE_RAM);
	kl_mem_init_empty(&f->mem);
	g_assert(kl_mem_add_region(&f->mem, 0, FAKE_RAM, f->ram) == 0);
	f->next_pt = FAKE_PT_BASE;
	f->inter = E_P | E_W | E_U;
	f->ops = (struct kl_asx_ops){ fake_get_xsave, fake_set_xsave, fake_get_xcr0, fake_get_msr,
				      fake_set_msr };
	f->xl.comp[9].offset = FAKE_PKRU_OFF;
	f->xl.comp[9].size = 8;
	f->xl.xcr0_mask = 0x2e7;
	/* legacy area: FCW 037F, MXCSR 1F80, MXCSR_MASK FFFF; XSTATE_BV x87|SSE */
	f->xsave[0] = 0x7f;
	f->xsave[1] = 0x03;
	f->xsave[24] = 0x80;
	f->xsave[25] = 0x1f;
	f->xsave[28] = 0xff;
	f->xsave[29] = 0xff;
	f->xsave[512] = 3;

	struct kl_asx_cpu *c = &f->cpu;
	c->mem = &f->mem;
	c->ops = &f->ops;
	c->opaque = f;
	c->xstate = &f->xl;
	c->xsave_len = FAKE_XSAVE_LEN;
	c->sregs.cr0 = (1u << 0) | (1u << 1) | (1u << 16) | (1u << 31) | (1u << 4);
	c->sregs.cr4 = (1u << 5) | (1u << 9) | (1u << 18);
	c->sregs.efer = (1u << 8) | (1u << 10) | (1u << 11);
	c->sregs.cs.l = 1;
	c->sregs.cr3 = fake_alloc_pt(f);
	c->regs.rflags = 2;
	c->regs.rip = 0xffffffff81000000ull;
	return f;
}

static inline void fake_free(struct fake *f)
{
	g_free(f->ram);
	g_free(f);
}

static inline void fake_cpl(struct fake *f, unsigned cpl)
{
	f->cpu.sregs.cs.dpl = (uint8_t)cpl;
	f->cpu.sregs.ss.dpl = (uint8_t)cpl;
	f->cpu.sregs.cs.selector = (uint16_t)((cpl == 3 ? 0x33 : 0x10) | cpl);
}

static inline uint64_t *fake_pt_entry(struct fake *f, uint64_t table, unsigned idx)
{
	return (uint64_t *)(f->ram + table + 8 * idx);
}

/* The entry for la at level (5 PML5E, 4 PML4E, 3 PDPTE, 2 PDE, 1 PTE) in
 * 4/5-level paging, creating the tables above it (with f->inter flags). */
static inline uint64_t *fake_entry(struct fake *f, uint64_t la, int level)
{
	bool la57 = f->cpu.sregs.cr4 & (1u << 12);
	uint64_t table = f->cpu.sregs.cr3 & ~0xfffull;
	for (int l = la57 ? 5 : 4; l > level; l--) {
		uint64_t *e = fake_pt_entry(f, table, (la >> (12 + 9 * (l - 1))) & 511);
		if (!(*e & E_P))
			*e = fake_alloc_pt(f) | f->inter;
		table = *e & 0x000ffffffffff000ull;
	}
	return fake_pt_entry(f, table, (la >> (12 + 9 * (level - 1))) & 511);
}

/* Map la -> pa with a leaf at level (1: 4K, 2: 2M, 3: 1G) and flags (PS
 * added for large pages); returns the leaf entry. */
static inline uint64_t *fake_map(struct fake *f, uint64_t la, uint64_t pa, int level,
				 uint64_t flags)
{
	uint64_t *e = fake_entry(f, la, level);
	*e = pa | flags | (level > 1 ? E_PS : 0);
	return e;
}

#endif
