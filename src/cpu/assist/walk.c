/* Guest page-table walk and guest-virtual copies of the emulation assist
 * (assist_int.h).
 *
 * Paging modes: 5-level and 4-level (EFER.LMA, CR4.LA57), PAE and 32-bit
 * (2-level, 4 MiB pages with CR4.PSE, PSE-36 address bits), with the
 * permission rules of SDM vol. 3 4.6: U/S (CPL 3 = user unless the access
 * is KL_ACC_IMPLICIT_SV), R/W with CR0.WP for supervisor writes, XD with
 * EFER.NXE, SMEP, SMAP (EFLAGS.AC for explicit supervisor accesses).
 *
 * Simplifications, documented:
 *  - protection keys (CR4.PKE/PKS) are not checked: PKRU lives in the XSAVE
 *    state, too costly to fetch on every walk.  The PK bits of leaf entries
 *    are ignored, as they are with CR4.PKE clear.
 *  - PAE PDPTEs are read from memory at CR3 on every walk, not from the
 *    copies a CPU loads at MOV CR3.
 *  - Accessed/Dirty bits are set only when the whole translation succeeds
 *    (a CPU may set some A bits on a walk that faults; KVM does the same).
 *  - A paging structure outside guest RAM is a host-side problem:
 *    kl_asx_translate() returns -1 with fault.vector = 0xff (not an
 *    exception to deliver), read/write/ptr return -2 / NULL with 0xff.
 *  - segment limits (32-bit mode) are not checked.
 *
 * Every paging-structure access goes through kl_gpa_to_hva(). */
#include <cpuid.h>
#include <string.h>

#include "assist_int.h"

#define PTE_P (1ull << 0)
#define PTE_W (1ull << 1)
#define PTE_U (1ull << 2)
#define PTE_A (1ull << 5)
#define PTE_D (1ull << 6)
#define PTE_PS (1ull << 7)
#define PTE_XD (1ull << 63)

#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define CR4_SMEP (1ull << 20)
#define CR4_SMAP (1ull << 21)
#define EFER_NXE (1ull << 11)
#define EFER_LMA (1ull << 10)
#define RFLAGS_AC (1ull << 18)

#define NOT_RAM 0xff

static unsigned maxphyaddr(void)
{
	static unsigned cached;
	unsigned v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (!v) {
		unsigned a, b, c, d;
		v = 36;
		if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000008) {
			__get_cpuid(0x80000008, &a, &b, &c, &d);
			v = a & 0xff;
		}
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}

/* bits [hi:lo] */
static uint64_t bits(unsigned hi, unsigned lo)
{
	return (hi >= 63 ? ~0ull : ((1ull << (hi + 1)) - 1)) & ~((1ull << lo) - 1);
}

static int pf(struct kl_asx_cpu *c, uint64_t la, uint32_t err)
{
	kl_asx_raise(c, KL_X86_PF, true, err);
	c->fault.cr2 = la;
	return -1;
}

static int not_ram(struct kl_asx_cpu *c)
{
	kl_asx_raise(c, NOT_RAM, false, 0);
	return -1;
}

/* One entry used by the walk, to set its A (and D) bit afterwards. */
struct used {
	void *hva;
	uint64_t val;
	bool leaf;
};

/* Set A in every entry used and D in the leaf on a write, with a
 * compare-exchange as the CPU's locked update; false if an entry changed
 * under us (the caller walks again). */
static bool set_ad(struct used *u, unsigned n, bool wide, bool write)
{
	for (unsigned k = 0; k < n; k++) {
		uint64_t want = u[k].val | PTE_A | ((u[k].leaf && write) ? PTE_D : 0);
		if (want == u[k].val)
			continue;
		if (wide) {
			uint64_t old = u[k].val;
			if (!__atomic_compare_exchange_n((uint64_t *)u[k].hva, &old, want, false,
							 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
				return false;
		} else {
			uint32_t old = (uint32_t)u[k].val;
			if (!__atomic_compare_exchange_n((uint32_t *)u[k].hva, &old, (uint32_t)want,
							 false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
				return false;
		}
	}
	return true;
}

/* A paging entry, loaded atomically (another vCPU may update it). */
static void *entry(struct kl_asx_cpu *c, uint64_t gpa, bool wide, uint64_t *val)
{
	void *p = kl_gpa_to_hva(c->mem, gpa, wide ? 8 : 4);
	if (!p)
		return NULL;
	if (wide)
		*val = __atomic_load_n((uint64_t *)p, __ATOMIC_SEQ_CST);
	else
		*val = __atomic_load_n((uint32_t *)p, __ATOMIC_SEQ_CST);
	return p;
}

static int walk(struct kl_asx_cpu *c, uint64_t la, unsigned acc, uint64_t *gpa)
{
	const struct kvm_sregs *s = &c->sregs;
	bool write = acc & KL_ACC_WRITE, fetch = acc & KL_ACC_FETCH;
	bool user = kl_asx_cpl(c) == 3 && !(acc & KL_ACC_IMPLICIT_SV);
	bool lma = s->efer & EFER_LMA, pae = s->cr4 & CR4_PAE;
	bool nxe = (s->efer & EFER_NXE) && pae;
	uint32_t err = (write ? KL_PF_W : 0) | (user ? KL_PF_U : 0);
	if (fetch && ((s->cr4 & CR4_SMEP) || nxe))
		err |= KL_PF_I;
	unsigned m = maxphyaddr();
	uint64_t addr_mask = bits(m - 1, 12);
	/* reserved in every 64-bit entry: bits 51:M (62:M for PAE), XD without NXE */
	uint64_t rsvd = bits(lma ? 51 : 62, m) | (nxe ? 0 : PTE_XD);
	struct used u[5];
	unsigned nu = 0;
	bool uok = true, wok = true, xd = false;
	uint64_t base, pa = 0, v;
	int level;   /* 5..1: PML5E .. PTE; for 32-bit: 2 (PDE), 1 (PTE) */

	if (lma) {
		level = (s->cr4 & CR4_LA57) ? 5 : 4;
		base = s->cr3 & addr_mask;
	} else if (pae) {
		/* the PDPTE: 4 entries at CR3[31:5] */
		void *p = entry(c, (s->cr3 & 0xffffffe0) + ((la >> 30) & 3) * 8, true, &v);
		if (!p)
			return not_ram(c);
		if (!(v & PTE_P))
			return pf(c, la, err);
		if (v & (bits(63, m) | bits(8, 5) | bits(2, 1)))
			return pf(c, la, err | KL_PF_P | KL_PF_RSVD);
		base = v & addr_mask;
		level = 2;
	} else {
		base = s->cr3 & 0xfffff000;
		level = 2;
	}

	for (; level >= 1; level--) {
		bool wide = lma || pae;
		unsigned shift = wide ? 12 + 9 * (level - 1) : 12 + 10 * (level - 1);
		uint64_t idx = wide ? (la >> shift) & 511 : (la >> shift) & 1023;
		void *p = entry(c, base + idx * (wide ? 8 : 4), wide, &v);
		if (!p)
			return not_ram(c);
		if (!(v & PTE_P))
			return pf(c, la, err);
		bool leaf = level == 1 || ((v & PTE_PS) && level <= 3);
		uint64_t r = wide ? rsvd : 0;
		if (wide && level >= 4)
			r |= PTE_PS;   /* PML5E/PML4E: PS is reserved */
		if (!wide && level == 2 && (v & PTE_PS) && !(s->cr4 & CR4_PSE))
			leaf = false;  /* PS ignored without CR4.PSE */
		if (leaf && level > 1) {
			if (wide)
				r |= bits(level == 3 ? 29 : 20, 13);  /* 1G / 2M page */
			else
				r |= bits(21, 21) | (m < 40 ? bits(20, 13 + (m - 32)) : 0);
		}
		if (v & r)
			return pf(c, la, err | KL_PF_P | KL_PF_RSVD);
		uok = uok && (v & PTE_U);
		wok = wok && (v & PTE_W);
		xd = xd || (nxe && (v & PTE_XD));
		u[nu++] = (struct used){ p, v, leaf };
		if (leaf) {
			if (!wide) {
				if (level == 2)   /* 4M page, PSE-36 bits 39:32 from 20:13 */
					pa = (v & 0xffc00000) | ((v >> 13) & 0xff) << 32 |
					     (la & 0x3fffff);
				else
					pa = (v & 0xfffff000) | (la & 0xfff);
			} else {
				uint64_t off = bits(shift - 1, 0);
				pa = (v & addr_mask & ~off) | (la & off);
			}
			break;
		}
		base = wide ? v & addr_mask : v & 0xfffff000;
	}

	/* permissions (SDM 4.6) */
	err |= KL_PF_P;
	if (user) {
		if (!uok || (write && !wok) || (fetch && xd))
			return pf(c, la, err);
	} else if (fetch) {
		if (xd || (uok && (s->cr4 & CR4_SMEP)))
			return pf(c, la, err);
	} else {
		bool ac = (s->cr4 & CR4_SMAP) && uok &&
			  ((acc & KL_ACC_IMPLICIT_SV) || !(c->regs.rflags & RFLAGS_AC));
		if (ac || (write && !wok && (s->cr0 & CR0_WP)))
			return pf(c, la, err);
	}
	if (!set_ad(u, nu, lma || pae, write))
		return 1;   /* raced with another writer: walk again */
	*gpa = pa;
	return 0;
}

int kl_asx_translate(struct kl_asx_cpu *cpu, uint64_t la, unsigned acc, uint64_t *gpa)
{
	const struct kvm_sregs *s = &cpu->sregs;
	if (s->efer & EFER_LMA) {
		unsigned top = (s->cr4 & CR4_LA57) ? 56 : 47;
		int64_t ext = (int64_t)(la << (63 - top)) >> (63 - top);
		if ((uint64_t)ext != la) {
			kl_asx_raise(cpu, KL_X86_GP, true, 0);
			return -1;
		}
	} else {
		la = (uint32_t)la;
	}
	if (!(s->cr0 & CR0_PG)) {
		*gpa = la;
		return 0;
	}
	for (int tries = 0; tries < 100; tries++) {
		int r = walk(cpu, la, acc, gpa);
		if (r <= 0)
			return r;
	}
	return not_ram(cpu);   /* page tables changing without end */
}

/* One page-bounded piece: its host pointer, or -1 (fault) / -2 (not RAM). */
static int piece(struct kl_asx_cpu *c, uint64_t la, size_t len, unsigned acc, void **hva)
{
	uint64_t gpa;
	if (kl_asx_translate(c, la, acc, &gpa) < 0)
		return c->fault.vector == NOT_RAM ? -2 : -1;
	*hva = kl_gpa_to_hva(c->mem, gpa, len);
	return *hva ? 0 : -2;
}

static size_t chunk(uint64_t la, size_t left)
{
	size_t room = 4096 - (la & 4095);
	return left < room ? left : room;
}

static uint64_t la_add(const struct kl_asx_cpu *c, uint64_t la, size_t k)
{
	uint64_t r = la + k;
	return (c->sregs.efer & EFER_LMA) ? r : (uint32_t)r;
}

int kl_asx_read(struct kl_asx_cpu *cpu, uint64_t la, void *buf, size_t len, unsigned acc)
{
	for (size_t done = 0; done < len;) {
		uint64_t a = la_add(cpu, la, done);
		size_t n = chunk(a, len - done);
		void *p;
		int r = piece(cpu, a, n, acc & ~KL_ACC_WRITE, &p);
		if (r)
			return r;
		memcpy((uint8_t *)buf + done, p, n);
		done += n;
	}
	return 0;
}

int kl_asx_write(struct kl_asx_cpu *cpu, uint64_t la, const void *buf, size_t len, unsigned acc)
{
	acc |= KL_ACC_WRITE;
	for (size_t done = 0; done < len;) {   /* every page first */
		uint64_t a = la_add(cpu, la, done);
		size_t n = chunk(a, len - done);
		void *p;
		int r = piece(cpu, a, n, acc, &p);
		if (r)
			return r;
		done += n;
	}
	for (size_t done = 0; done < len;) {
		uint64_t a = la_add(cpu, la, done);
		size_t n = chunk(a, len - done);
		void *p;
		int r = piece(cpu, a, n, acc, &p);
		if (r)
			return r;
		memcpy(p, (const uint8_t *)buf + done, n);
		done += n;
	}
	return 0;
}

void *kl_asx_ptr(struct kl_asx_cpu *cpu, uint64_t la, size_t len, unsigned acc)
{
	void *p;
	if (len == 0 || (la & 4095) + len > 4096) {
		not_ram(cpu);   /* a caller error, not an exception for the guest */
		return NULL;
	}
	int r = piece(cpu, la, len, acc, &p);
	if (r == -2)
		not_ram(cpu);
	return r ? NULL : p;
}
