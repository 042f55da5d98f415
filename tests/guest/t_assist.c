/* Probe test: assist - the instructions KVM's emulator cannot run in ring 0
 * on a PVM host (kvmlite's emulation assist, src/cpu/assist/, executes
 * them), each checked against values computed here in C or architectural
 * constants: XGETBV, XSAVE/XSAVEOPT/XSAVEC/XRSTOR (and XSAVES/XRSTORS),
 * CLAC/STAC, POPCNT, CRC32, CMPXCHG16B, RDTSCP, BMI1/BMI2, LDMXCSR/STMXCSR,
 * x87 control (FNINIT FLD1 FNSTSW FNCLEX FLDCW FNSTCW), SSE2 integer ops
 * and GPR<->XMM moves, and faulting
 * operands (#PF with the CR2 and error code the CPU gives, #GP(0)).
 * Each instruction runs only when the guest-visible CPUID has it.  On
 * hosts with VMX/SVM the same code runs natively and must pass too. */
#include "t_assist.h"

#define CR0_MP (1ul << 1)
#define CR0_EM (1ul << 2)
#define CR0_TS (1ul << 3)
#define CR0_NE (1ul << 5)
#define CR0_WP (1ul << 16)
#define CR4_OSFXSR (1ul << 9)
#define CR4_OSXMMEXCPT (1ul << 10)
#define CR4_OSXSAVE (1ul << 18)
#define RFLAGS_CF 0x1ul
#define RFLAGS_ZF 0x40ul
#define RFLAGS_AC (1ul << 18)
#define MSR_TSC_AUX 0xc0000103u
#define MSR_XSS 0xda0u

/* ---- 4 KiB mappings (shared with t_syscall.c) ------------------------------ */
extern uint64_t pml4[];

static uint64_t *pt_next(uint64_t *table, unsigned idx)
{
	if (!(table[idx] & PTE_P)) {
		void *p = probe_alloc_pages(1);
		if (!p)
			return NULL;
		table[idx] = (uintptr_t)p | PTE_P | PTE_W | PTE_U;
	}
	if (table[idx] & 0x80)  /* a large page: not ours to split */
		return NULL;
	return (uint64_t *)(uintptr_t)(table[idx] & 0x000ffffffffff000ul);
}

int pt_map4k(uint64_t va, uint64_t pa, uint64_t flags)
{
	uint64_t *t = pml4;

	if (va >> 47 || va < (8ul << 30))
		return -1;
	for (unsigned shift = 39; shift > 12; shift -= 9) {
		t = pt_next(t, (va >> shift) & 511);
		if (!t)
			return -1;
	}
	t[(va >> 12) & 511] = flags ? (pa & ~0xffful) | flags : 0;
	__asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
	return 0;
}

/* ---- expected faults ------------------------------------------------------- */
/* fx_site / fx_resume: set by the asm around the instruction expected to
 * fault; the handler records the fault and continues at fx_resume. */
static volatile uint64_t fx_site __attribute__((used));
static volatile uint64_t fx_resume __attribute__((used));
static volatile uint64_t fx_vec, fx_err, fx_cr2, fx_rip, fx_count;

static void fx_handler(struct trap_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	if (!fx_resume) {
		probe_fail("unexpected exception %lu at rip 0x%lx error 0x%lx cr2 0x%lx", f->vector,
			   f->rip, f->error, cr2);
		probe_finish(false);
	}
	fx_vec = f->vector;
	fx_err = f->error;
	fx_cr2 = f->vector == 14 ? cr2 : 0;
	fx_rip = f->rip;
	fx_count++;
	f->rip = fx_resume;
	fx_resume = 0;
}

/* asm prologue: fx_resume = label 1, fx_site = label 2, then 2: insn 1: */
#define FX_BEGIN "lea 1f(%%rip), %%r11\n\tmov %%r11, fx_resume(%%rip)\n\t" \
		 "lea 2f(%%rip), %%r11\n\tmov %%r11, fx_site(%%rip)\n2:\t"
#define FX_END "\n1:\n\tmovq $0, fx_resume(%%rip)"

static void fx_reset(void)
{
	fx_vec = 0xff;
	fx_err = fx_cr2 = fx_rip = 0;
	fx_count = 0;
}

static int fx_check(const char *what, uint64_t vec, uint64_t err, uint64_t cr2_lo, uint64_t cr2_hi)
{
	if (fx_count != 1 || fx_vec != vec || fx_err != err || fx_rip != fx_site ||
	    (vec == 14 && (fx_cr2 < cr2_lo || fx_cr2 > cr2_hi)))
		return probe_fail("%s: %lu exception(s), vector %lu error 0x%lx cr2 0x%lx rip 0x%lx; "
				  "expected vector %lu error 0x%lx cr2 0x%lx..0x%lx rip 0x%lx",
				  what, fx_count, fx_vec, fx_err, fx_cr2, fx_rip, vec, err, cr2_lo,
				  cr2_hi, fx_site);
	return 0;
}

/* ---- reference implementations ---------------------------------------------- */
static unsigned ref_popcount(uint64_t v)
{
	unsigned n = 0;

	for (; v; v >>= 1)
		n += v & 1;
	return n;
}

static uint32_t ref_crc32c(uint32_t crc, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len--) {
		crc ^= *b++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return crc;
}

static uint64_t ref_pdep(uint64_t src, uint64_t mask)
{
	uint64_t r = 0;

	for (unsigned i = 0, k = 0; i < 64; i++)
		if (mask >> i & 1)
			r |= (src >> k++ & 1) << i;
	return r;
}

static uint64_t ref_pext(uint64_t src, uint64_t mask)
{
	uint64_t r = 0;

	for (unsigned i = 0, k = 0; i < 64; i++)
		if (mask >> i & 1)
			r |= (src >> i & 1) << k++;
	return r;
}

/* ---- coverage list ----------------------------------------------------------- */
static char covered[512], skipped[256];

static void note(char *list, size_t len, const char *what)
{
	size_t n = strlen(list);

	snprintf(list + n, len - n, "%s%s", n ? " " : "", what);
}
#define COVER(w) note(covered, sizeof(covered), w)
#define SKIP(w) note(skipped, sizeof(skipped), w)

/* ---- POPCNT ------------------------------------------------------------------- */
static volatile uint64_t pc_var64 __attribute__((used)) = 0xf00f0ff0a5a5c3c3ul;
static volatile uint32_t pc_var32 __attribute__((used)) = 0x80000001u;
static volatile uint16_t pc_var16 __attribute__((used)) = 0x7ffeu;

static int t_popcnt(void)
{
	static const uint64_t vals[] = { 0, 1, 0x8000000000000000ul, ~0ul, 0x123456789abcdef0ul,
					 0x00000000ffff0000ul };
	uint64_t d, fl;

	for (unsigned i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		uint64_t v = vals[i];
		/* preset flags to all-ones-ish (CF OF SF AF PF) to see them cleared */
		__asm__ volatile("mov $0x8d5, %%r11\n\tpush %%r11\n\tpopfq\n\t"
				 "popcntq %2, %0\n\tpushfq\n\tpop %1"
				 : "=&r"(d), "=r"(fl) : "r"(v) : "r11", "cc");
		if (d != ref_popcount(v))
			return probe_fail("popcntq 0x%lx = %lu, expected %u", v, d, ref_popcount(v));
		if ((fl & 0x8d5) != (v ? 0 : RFLAGS_ZF))
			return probe_fail("popcntq 0x%lx: rflags 0x%lx (OF SF ZF AF PF CF = 0x%lx, "
					  "expected 0x%lx)", v, fl, fl & 0x8d5, v ? 0 : RFLAGS_ZF);
		/* 32-bit form zero-extends; 16-bit form keeps bits 63:16 */
		d = 0xdeadbeefcafef00dul;
		__asm__ volatile("popcntl %k1, %k0" : "+r"(d) : "r"(v) : "cc");
		if (d != ref_popcount((uint32_t)v))
			return probe_fail("popcntl 0x%x = 0x%lx, expected %u", (uint32_t)v, d,
					  ref_popcount((uint32_t)v));
		d = 0xdeadbeefcafef00dul;
		__asm__ volatile("popcntw %w1, %w0" : "+r"(d) : "r"(v) : "cc");
		if (d != (0xdeadbeefcafe0000ul | ref_popcount((uint16_t)v)))
			return probe_fail("popcntw 0x%x = 0x%lx, expected 0x%lx", (uint16_t)v, d,
					  0xdeadbeefcafe0000ul | ref_popcount((uint16_t)v));
	}
	/* memory operands, RIP-relative, with REX.R (r9/r10) destinations */
	uint64_t m64, m32, m16 = 0x1111222233334444ul;
	__asm__ volatile("popcntq pc_var64(%%rip), %%r9\n\tmov %%r9, %0\n\t"
			 "popcntl pc_var32(%%rip), %%r10d\n\tmov %%r10, %1\n\t"
			 "mov %3, %%r10\n\tpopcntw pc_var16(%%rip), %%r10w\n\tmov %%r10, %2"
			 : "=r"(m64), "=r"(m32), "=r"(m16) : "r"(m16) : "r9", "r10", "cc", "memory");
	if (m64 != ref_popcount(pc_var64) || m32 != ref_popcount(pc_var32) ||
	    m16 != (0x1111222233330000ul | ref_popcount(pc_var16)))
		return probe_fail("popcnt rip-relative: q %lu (want %u) l %lu (want %u) w 0x%lx "
				  "(want 0x%lx)", m64, ref_popcount(pc_var64), m32,
				  ref_popcount(pc_var32), m16,
				  0x1111222233330000ul | ref_popcount(pc_var16));
	COVER("popcnt(r16/32/64,m-rip)");
	return 0;
}

/* ---- CRC32 --------------------------------------------------------------------- */
static int t_crc32(void)
{
	static const char s[] = "123456789";
	uint64_t c = 0xffffffffu;
	uint64_t q, l;

	for (int i = 0; i < 9; i++)
		__asm__ volatile("crc32b %1, %k0" : "+r"(c) : "m"(s[i]));
	c ^= 0xffffffffu;
	if (c != 0xe3069283u)
		return probe_fail("crc32b over \"123456789\" = 0x%lx, expected 0xe3069283", c);
	/* the same through the q, l, w forms: "12345678" as one quadword + "9" */
	uint64_t q8, w2;
	uint32_t l4;
	memcpy(&q8, s, 8);
	q = 0xffffffffu;
	__asm__ volatile("crc32q %1, %0\n\tcrc32b %2, %k0" : "+r"(q) : "r"(q8), "m"(s[8]));
	q = (uint32_t)q ^ 0xffffffffu;
	memcpy(&l4, s, 4);
	w2 = 0;
	memcpy(&w2, s + 4, 2);
	l = 0xffffffffu;
	__asm__ volatile("crc32l %1, %k0\n\tcrc32w %w2, %k0\n\tcrc32b %3, %k0\n\tcrc32b %4, %k0\n\t"
			 "crc32b %5, %k0"
			 : "+r"(l) : "r"(l4), "r"(w2), "m"(s[6]), "m"(s[7]), "m"(s[8]));
	l ^= 0xffffffffu;
	if (q != 0xe3069283u || l != 0xe3069283u)
		return probe_fail("crc32 q+b 0x%lx, l+w+b 0x%lx, expected 0xe3069283", q, l);
	/* arbitrary data against the bitwise reference */
	uint64_t data = 0x0123456789abcdeful, r = 0x5a5a5a5au;
	__asm__ volatile("crc32q %1, %0" : "+r"(r) : "r"(data));
	if (r != ref_crc32c(0x5a5a5a5au, &data, 8))
		return probe_fail("crc32q(0x5a5a5a5a, 0x%lx) = 0x%lx, expected 0x%x", data, r,
				  ref_crc32c(0x5a5a5a5au, &data, 8));
	COVER("crc32(b/w/l/q)");
	return 0;
}

/* ---- CMPXCHG16B ---------------------------------------------------------------- */
static int t_cmpxchg16b(void)
{
	static volatile uint64_t m[4] __attribute__((aligned(16)));
	uint64_t lo, hi;
	uint8_t z;

	m[0] = 0x1111111111111111ul;
	m[1] = 0x2222222222222222ul;
	lo = m[0];
	hi = m[1];
	__asm__ volatile("lock cmpxchg16b %1\n\tsetz %0"
			 : "=q"(z), "+m"(m[0]), "+a"(lo), "+d"(hi)
			 : "b"(0x3333333333333333ul), "c"(0x4444444444444444ul) : "cc", "memory");
	if (!z || m[0] != 0x3333333333333333ul || m[1] != 0x4444444444444444ul ||
	    lo != 0x1111111111111111ul || hi != 0x2222222222222222ul)
		return probe_fail("cmpxchg16b (match): ZF %u mem %016lx:%016lx rdx:rax %016lx:%016lx",
				  z, m[1], m[0], hi, lo);
	lo = 0x1111111111111111ul;  /* stale: must fail and load the memory */
	hi = 0x2222222222222222ul;
	__asm__ volatile("cmpxchg16b %1\n\tsetz %0"
			 : "=q"(z), "+m"(m[0]), "+a"(lo), "+d"(hi)
			 : "b"(0x5555555555555555ul), "c"(0x6666666666666666ul) : "cc", "memory");
	if (z || m[0] != 0x3333333333333333ul || m[1] != 0x4444444444444444ul ||
	    lo != 0x3333333333333333ul || hi != 0x4444444444444444ul)
		return probe_fail("cmpxchg16b (mismatch): ZF %u mem %016lx:%016lx rdx:rax "
				  "%016lx:%016lx", z, m[1], m[0], hi, lo);
	/* misaligned operand: #GP(0) */
	fx_reset();
	__asm__ volatile(FX_BEGIN "lock cmpxchg16b (%0)" FX_END
			 : : "r"((uintptr_t)&m[0] + 8), "a"(0), "d"(0), "b"(0), "c"(0)
			 : "r11", "cc", "memory");
	if (fx_check("cmpxchg16b on a misaligned operand", 13, 0, 0, 0))
		return -1;
	COVER("cmpxchg16b(ok,fail,#GP)");
	return 0;
}

/* ---- RDTSCP -------------------------------------------------------------------- */
static int t_rdtscp(void)
{
	uint32_t lo, hi, aux;
	uint64_t t0, t1, t;

	uint32_t want = 0x12345;

	/* PVM's KVM refuses TSC_AUX; the assist keeps it per vCPU: the guest
	 * sees RDTSCP in CPUID, so WRMSR/RDMSR of it must work */
	fx_reset();
	__asm__ volatile(FX_BEGIN "wrmsr" FX_END
			 : : "c"(MSR_TSC_AUX), "a"(want), "d"(0) : "r11", "memory");
	if (fx_count)
		return probe_fail("wrmsr TSC_AUX raised vector %lu", fx_vec);
	uint32_t rlo, rhi;
	__asm__ volatile("rdmsr" : "=a"(rlo), "=d"(rhi) : "c"(MSR_TSC_AUX));
	if (rlo != want || rhi)
		return probe_fail("rdmsr TSC_AUX: 0x%x:%x, wrote 0x%x", rhi, rlo, want);
	t0 = rdtsc();
	__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
	t1 = rdtsc();
	t = (uint64_t)hi << 32 | lo;
	if (aux != want || t < t0 || t > t1)
		return probe_fail("rdtscp: ecx 0x%x (TSC_AUX 0x%x), tsc %lu (bounds [%lu, %lu])", aux,
				  want, t, t0, t1);
	COVER("rdtscp");
	return 0;
}

/* ---- BMI1 / BMI2 ----------------------------------------------------------------- */
static int t_bmi1(void)
{
	uint64_t a = 0xff00ff00f0f0f0f0ul, b = 0x123456789abcdef0ul, r;

	__asm__ volatile("andn %2, %1, %0" : "=r"(r) : "r"(a), "r"(b) : "cc");
	if (r != (~a & b))
		return probe_fail("andn ~0x%lx & 0x%lx = 0x%lx, expected 0x%lx", a, b, r, ~a & b);
	uint32_t r32;
	__asm__ volatile("andn %2, %1, %0" : "=r"(r32) : "r"((uint32_t)a), "r"((uint32_t)b) : "cc");
	if (r32 != (~(uint32_t)a & (uint32_t)b))
		return probe_fail("andn (32-bit) = 0x%x, expected 0x%x", r32,
				  ~(uint32_t)a & (uint32_t)b);
	/* BLSR: clear the lowest set bit */
	__asm__ volatile("blsr %1, %0" : "=r"(r) : "r"(b) : "cc");
	if (r != (b & (b - 1)))
		return probe_fail("blsr 0x%lx = 0x%lx, expected 0x%lx", b, r, b & (b - 1));
	COVER("bmi1(andn,blsr)");
	return 0;
}

static int t_bmi2(void)
{
	uint64_t src = 0x123456789abcdef0ul, mask = 0xf0f0ff0000ff0f0ful, r;
	uint8_t cf;

	__asm__ volatile("pdep %2, %1, %0" : "=r"(r) : "r"(src), "r"(mask));
	if (r != ref_pdep(src, mask))
		return probe_fail("pdep(0x%lx, 0x%lx) = 0x%lx, expected 0x%lx", src, mask, r,
				  ref_pdep(src, mask));
	__asm__ volatile("pext %2, %1, %0" : "=r"(r) : "r"(src), "r"(mask));
	if (r != ref_pext(src, mask))
		return probe_fail("pext(0x%lx, 0x%lx) = 0x%lx, expected 0x%lx", src, mask, r,
				  ref_pext(src, mask));
	__asm__ volatile("bzhi %3, %2, %0\n\tsetc %1" : "=&r"(r), "=q"(cf) : "r"(src), "r"(20ul)
			 : "cc");
	if (r != (src & 0xffffful) || cf)
		return probe_fail("bzhi(0x%lx, 20) = 0x%lx CF %u, expected 0x%lx CF 0", src, r, cf,
				  src & 0xffffful);
	__asm__ volatile("bzhi %3, %2, %0\n\tsetc %1" : "=&r"(r), "=q"(cf) : "r"(src), "r"(200ul)
			 : "cc");
	if (r != src || !cf)
		return probe_fail("bzhi(0x%lx, 200) = 0x%lx CF %u, expected the source, CF 1", src, r,
				  cf);
	/* SHLX masks the count to 6 bits (67 -> 3) */
	__asm__ volatile("shlx %2, %1, %0" : "=r"(r) : "r"(src), "r"(67ul));
	if (r != src << 3)
		return probe_fail("shlx(0x%lx, 67) = 0x%lx, expected 0x%lx", src, r, src << 3);
	__asm__ volatile("rorx $12, %1, %0" : "=r"(r) : "r"(src));
	if (r != (src >> 12 | src << 52))
		return probe_fail("rorx(0x%lx, 12) = 0x%lx, expected 0x%lx", src, r,
				  src >> 12 | src << 52);
	uint32_t r32;
	__asm__ volatile("rorx $4, %1, %0" : "=r"(r32) : "r"((uint32_t)src));
	if (r32 != ((uint32_t)src >> 4 | (uint32_t)src << 28))
		return probe_fail("rorx (32-bit)(0x%x, 4) = 0x%x", (uint32_t)src, r32);
	COVER("bmi2(pdep,pext,bzhi,shlx,rorx)");
	return 0;
}

/* ---- CLAC / STAC ----------------------------------------------------------------- */
static int t_smap(void)
{
	uint64_t f1, f2;

	__asm__ volatile("stac\n\tpushfq\n\tpop %0\n\tclac\n\tpushfq\n\tpop %1"
			 : "=r"(f1), "=r"(f2) : : "cc");
	if (!(f1 & RFLAGS_AC) || (f2 & RFLAGS_AC))
		return probe_fail("stac: rflags 0x%lx (AC must be set); clac: 0x%lx (AC clear)", f1, f2);
	COVER("stac/clac");
	return 0;
}

/* ---- MXCSR and x87 control ------------------------------------------------------- */
static inline uint32_t stmxcsr(void)
{
	uint32_t v;

	__asm__ volatile("stmxcsr %0" : "=m"(v));
	return v;
}
static inline void ldmxcsr(uint32_t v)
{
	__asm__ volatile("ldmxcsr %0" : : "m"(v));
}
static inline uint16_t fnstcw(void)
{
	uint16_t v;

	__asm__ volatile("fnstcw %0" : "=m"(v));
	return v;
}
static inline void fldcw(uint16_t v)
{
	__asm__ volatile("fldcw %0" : : "m"(v));
}
static inline uint16_t fnstsw_ax(void)
{
	uint16_t v;

	__asm__ volatile("fnstsw %%ax" : "=a"(v));
	return v;
}
static inline uint16_t fnstsw_m(void)
{
	uint16_t v;

	__asm__ volatile("fnstsw %0" : "=m"(v));
	return v;
}

static volatile uint32_t mxcsr_bad __attribute__((used)) = 0x10000 | 0x1f80;

static int t_mxcsr(void)
{
	uint32_t v;

	ldmxcsr(0x7f80);    /* RC = 11 (toward zero), all masked */
	v = stmxcsr();
	if (v != 0x7f80)
		return probe_fail("ldmxcsr 0x7f80 / stmxcsr = 0x%x", v);
	ldmxcsr(0x1f80);
	if ((v = stmxcsr()) != 0x1f80)
		return probe_fail("ldmxcsr 0x1f80 / stmxcsr = 0x%x", v);
	/* a reserved bit: #GP(0), MXCSR unchanged */
	fx_reset();
	__asm__ volatile(FX_BEGIN "ldmxcsr mxcsr_bad(%%rip)" FX_END : : : "r11", "memory");
	if (fx_check("ldmxcsr with reserved bit 16", 13, 0, 0, 0))
		return -1;
	if ((v = stmxcsr()) != 0x1f80)
		return probe_fail("MXCSR 0x%x after the faulting ldmxcsr, expected 0x1f80", v);
	COVER("ldmxcsr/stmxcsr(+#GP)");
	return 0;
}

static uint8_t fx_area[512] __attribute__((aligned(16)));

static int t_x87(void)
{
	uint16_t sw, cw;

	__asm__ volatile("fninit");
	sw = fnstsw_ax();
	cw = fnstcw();
	if (sw != 0 || cw != 0x037f)
		return probe_fail("after fninit: fnstsw %%ax 0x%x (want 0), fnstcw 0x%x (want 0x37f)",
				  sw, cw);
	__asm__ volatile("fld1");
	if ((sw = fnstsw_ax()) != 0x3800)
		return probe_fail("after fld1: fnstsw %%ax 0x%x, expected 0x3800 (TOP 7)", sw);
	/* FXSAVE shows the loaded 1.0 (works in KVM's emulator) */
	memset(fx_area, 0, sizeof(fx_area));
	__asm__ volatile("fxsave64 %0" : "=m"(fx_area));
	uint64_t mant;
	uint16_t exp, fsw;
	memcpy(&fsw, fx_area + 2, 2);
	memcpy(&mant, fx_area + 32, 8);
	memcpy(&exp, fx_area + 40, 2);
	if (fsw != 0x3800 || fx_area[4] != 0x80 || mant != 0x8000000000000000ul || exp != 0x3fff)
		return probe_fail("fxsave after fld1: FSW 0x%x FTW 0x%x ST0 %04x:%016lx, expected "
				  "0x3800 0x80 3fff:8000000000000000", fsw, fx_area[4], exp, mant);
	/* a masked invalid-operation flag (IE) loaded with FXRSTOR: FNCLEX clears it */
	fsw = 0x3801;
	memcpy(fx_area + 2, &fsw, 2);
	__asm__ volatile("fxrstor64 %0" : : "m"(fx_area));
	if ((sw = fnstsw_m()) != 0x3801)
		return probe_fail("fnstsw m16 after fxrstor of FSW 0x3801 = 0x%x", sw);
	__asm__ volatile("fnclex");
	if ((sw = fnstsw_ax()) != 0x3800)
		return probe_fail("fnstsw after fnclex = 0x%x, expected 0x3800", sw);
	fldcw(0x027f);   /* precision control 53 bits */
	if ((cw = fnstcw()) != 0x027f)
		return probe_fail("fldcw 0x27f / fnstcw = 0x%x", cw);
	fldcw(0x037f);
	__asm__ volatile("fninit");
	COVER("x87(fninit,fld1,fnstsw,fnclex,fldcw,fnstcw)");
	return 0;
}

/* ---- SSE2 integer ops and GPR<->XMM moves ----------------------------------------- */
static uint8_t sse_a[16] __attribute__((aligned(16))) = { 1, 2, 3, 4, 5, 6, 7, 8,
							  9, 10, 11, 12, 13, 14, 15, 16 };
static uint8_t sse_b[32] __attribute__((aligned(16))) = { 1, 0, 3, 0, 5, 0, 7, 0,
							  9, 0, 11, 0, 13, 0, 15, 0 };
static uint8_t sse_out[16] __attribute__((aligned(16)));

static int t_sse2(void)
{
	uint64_t a = 0x0123456789abcdeful, b = 0xff00ff00f0f0f0f0ul, r, r2;
	uint32_t mask;

	/* (the compiler never allocates XMM registers here: no clobbers needed) */
	__asm__ volatile("movq %2, %%xmm0\n\tmovq %3, %%xmm1\n\tpxor %%xmm1, %%xmm0\n\t"
			 "movq %%xmm0, %0\n\tpaddq %%xmm1, %%xmm1\n\tmovq %%xmm1, %1"
			 : "=r"(r), "=r"(r2) : "r"(a), "r"(b));
	if (r != (a ^ b) || r2 != b + b)
		return probe_fail("movq/pxor/paddq: 0x%lx 0x%lx, expected 0x%lx 0x%lx", r, r2, a ^ b,
				  b + b);
	/* pcmpeqb with an aligned memory operand, pmovmskb */
	__asm__ volatile("movdqa %1, %%xmm2\n\tpcmpeqb %2, %%xmm2\n\tpmovmskb %%xmm2, %0"
			 : "=r"(mask) : "m"(sse_a), "m"(*(uint8_t(*)[16])sse_b) : "memory");
	uint32_t want = 0;
	for (int i = 0; i < 16; i++)
		want |= (uint32_t)(sse_a[i] == sse_b[i]) << i;
	if (mask != want)
		return probe_fail("pcmpeqb/pmovmskb: mask 0x%x, expected 0x%x", mask, want);
	/* pshufd $0x1b reverses the dwords (stored with movdqa, which KVM emulates) */
	__asm__ volatile("movdqa %1, %%xmm3\n\tpshufd $0x1b, %%xmm3, %%xmm4\n\tmovdqa %%xmm4, %0"
			 : "=m"(sse_out) : "m"(sse_a));
	for (int i = 0; i < 4; i++)
		if (memcmp(sse_out + 4 * i, sse_a + 4 * (3 - i), 4))
			return probe_fail("pshufd $0x1b: dword %d is %02x%02x%02x%02x", i,
					  sse_out[4 * i + 3], sse_out[4 * i + 2], sse_out[4 * i + 1],
					  sse_out[4 * i]);
	/* a misaligned 16-byte operand: #GP(0) */
	fx_reset();
	__asm__ volatile(FX_BEGIN "pcmpeqb (%0), %%xmm2" FX_END
			 : : "r"(sse_b + 8) : "r11", "memory");
	if (fx_check("pcmpeqb on a misaligned operand", 13, 0, 0, 0))
		return -1;
	COVER("sse2(movq,pxor,paddq,pcmpeqb,pmovmskb,pshufd,#GP)");
	return 0;
}

/* ---- XGETBV and the XSAVE family -------------------------------------------------- */
#define XS_MXCSR 24
#define XS_XMM0 160
#define XS_BV 512
#define XS_COMP 520

static inline uint64_t xgetbv(uint32_t idx)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(idx));
	return (uint64_t)hi << 32 | lo;
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

static const uint8_t xmm_pat[16] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
				     0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01 };

/* Check an area written by a save: FCW, MXCSR, XMM0, header bits. */
static int xs_check(const char *op, const uint8_t *a, uint32_t mxcsr, uint64_t xcr0, bool compact,
		    uint64_t rfbm)
{
	uint16_t fcw;
	uint64_t bv = ld64(a + XS_BV), comp = ld64(a + XS_COMP);
	uint64_t want_comp = compact ? (1ul << 63) | rfbm : 0;

	memcpy(&fcw, a, 2);
	if (fcw != 0x027f || ld32(a + XS_MXCSR) != mxcsr || memcmp(a + XS_XMM0, xmm_pat, 16))
		return probe_fail("%s: FCW 0x%x MXCSR 0x%x XMM0 %016lx%016lx, expected 0x27f 0x%x "
				  "0x01ffeeddccbbaa998877665544332211", op, fcw, ld32(a + XS_MXCSR),
				  ld64(a + XS_XMM0 + 8), ld64(a + XS_XMM0), mxcsr);
	if ((bv & 3) != 3 || (bv & ~xcr0) || comp != want_comp)
		return probe_fail("%s: XSTATE_BV 0x%lx (x87|SSE in use, nothing beyond XCR0 0x%lx), "
				  "XCOMP_BV 0x%lx, expected 0x%lx", op, bv, xcr0, comp, want_comp);
	return 0;
}

static int t_xsave(uint8_t *ro_page)
{
	uint32_t r[4];
	bool avx = cpuid_bit(1, 0, R_ECX, 28);
	uint64_t cr4, xcr0;

	cpuid(0xd, 0, r);
	xcr0 = 3 | (avx && (r[R_EAX] & 4) ? 4 : 0);
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | CR4_OSXSAVE));
	__asm__ volatile("xsetbv" : : "c"(0), "a"((uint32_t)xcr0), "d"(0));
	uint64_t got = xgetbv(0);
	if (got != xcr0)
		return probe_fail("xgetbv(0) = 0x%lx after xsetbv 0x%lx", got, xcr0);
	COVER("xgetbv");
	if (cpuid_bit(0xd, 1, R_EAX, 2)) {
		/* XINUSE & XCR0: never beyond XCR0 */
		got = xgetbv(1);
		if (got & ~xcr0)
			return probe_fail("xgetbv(1) = 0x%lx has bits outside XCR0 0x%lx", got, xcr0);
		COVER("xgetbv(1)");
	}
	cpuid(0xd, 0, r);
	uint32_t size = r[R_EBX];
	uint32_t r1[4];
	cpuid(0xd, 1, r1);
	printf("assist: XCR0 0x%lx, XSAVE area %u bytes, cpuid(0xd,1).eax 0x%x\n", xcr0, size,
	       r1[R_EAX]);
	if (size < 576 || size > 4096)
		return probe_fail("CPUID(0xd,0).EBX = %u for XCR0 0x%lx: not 576..4096", size, xcr0);
	uint8_t *area = probe_alloc(6 * 4096, 4096);
	if (!area)
		return probe_fail("cannot allocate XSAVE areas");
	uint8_t *src = area, *a_xs = area + 4096, *a_opt = area + 8192, *a_c = area + 12288,
		*a_s = area + 16384;

	/* the state to restore: FCW 0x27f, MXCSR 0x5f80 (RC up), XMM0 = pattern */
	src[0] = 0x7f;
	src[1] = 0x02;
	uint32_t mx = 0x5f80;
	memcpy(src + XS_MXCSR, &mx, 4);
	memcpy(src + XS_XMM0, xmm_pat, 16);
	src[XS_BV] = 3;
	__asm__ volatile("xrstor64 (%0)" : : "r"(src), "a"(-1), "d"(-1) : "memory");
	uint32_t m = stmxcsr();
	uint16_t cw = fnstcw();
	if (m != 0x5f80 || cw != 0x027f)
		return probe_fail("xrstor: stmxcsr 0x%x fnstcw 0x%x, expected 0x5f80 0x27f", m, cw);
	COVER("xrstor");

	__asm__ volatile("xsave64 (%0)" : : "r"(a_xs), "a"(-1), "d"(-1) : "memory");
	if (xs_check("xsave", a_xs, 0x5f80, xcr0, false, xcr0))
		return -1;
	COVER("xsave");
	if (cpuid_bit(0xd, 1, R_EAX, 0)) {
		__asm__ volatile("xsaveopt64 (%0)" : : "r"(a_opt), "a"(-1), "d"(-1) : "memory");
		if (xs_check("xsaveopt", a_opt, 0x5f80, xcr0, false, xcr0))
			return -1;
		COVER("xsaveopt");
	} else {
		SKIP("xsaveopt");
	}
	if (cpuid_bit(0xd, 1, R_EAX, 1)) {
		__asm__ volatile("xsavec64 (%0)" : : "r"(a_c), "a"(-1), "d"(-1) : "memory");
		if (xs_check("xsavec", a_c, 0x5f80, xcr0, true, xcr0))
			return -1;
		/* compacted restore brings MXCSR/FCW back */
		ldmxcsr(0x1f80);
		fldcw(0x037f);
		__asm__ volatile("xrstor64 (%0)" : : "r"(a_c), "a"(-1), "d"(-1) : "memory");
		if ((m = stmxcsr()) != 0x5f80 || (cw = fnstcw()) != 0x027f)
			return probe_fail("xrstor (compacted): stmxcsr 0x%x fnstcw 0x%x, expected "
					  "0x5f80 0x27f", m, cw);
		COVER("xsavec+xrstor(compacted)");
	} else {
		SKIP("xsavec");
	}
	if (cpuid_bit(0xd, 1, R_EAX, 3)) {
		uint64_t rfbm = xcr0 | rdmsr(MSR_XSS);
		__asm__ volatile("xsaves64 (%0)" : : "r"(a_s), "a"(-1), "d"(-1) : "memory");
		if (xs_check("xsaves", a_s, 0x5f80, rfbm, true, rfbm))
			return -1;
		ldmxcsr(0x1f80);
		__asm__ volatile("xrstors64 (%0)" : : "r"(a_s), "a"(-1), "d"(-1) : "memory");
		if ((m = stmxcsr()) != 0x5f80)
			return probe_fail("xrstors: stmxcsr 0x%x, expected 0x5f80", m);
		COVER("xsaves/xrstors");
	} else {
		SKIP("xsaves");
	}
	/* standard-format XRSTOR with XSTATE_BV = x87 only: XMM0 goes to its init
	 * value (0) but MXCSR is still loaded (RFBM[1] is set) */
	memcpy(src + XS_MXCSR, &(uint32_t){ 0x3f80 }, 4);
	src[XS_BV] = 1;
	__asm__ volatile("xrstor64 (%0)" : : "r"(src), "a"(-1), "d"(-1) : "memory");
	memset(a_xs, 0, 4096);
	__asm__ volatile("xsave64 (%0)" : : "r"(a_xs), "a"(-1), "d"(-1) : "memory");
	static const uint8_t zero16[16];
	if ((m = stmxcsr()) != 0x3f80 || ld32(a_xs + XS_MXCSR) != 0x3f80 ||
	    memcmp(a_xs + XS_XMM0, zero16, 16))
		return probe_fail("xrstor with XSTATE_BV 1: stmxcsr 0x%x, saved MXCSR 0x%x, XMM0 "
				  "%016lx%016lx; expected 0x3f80, 0x3f80, 0", m,
				  ld32(a_xs + XS_MXCSR), ld64(a_xs + XS_XMM0 + 8), ld64(a_xs + XS_XMM0));
	ldmxcsr(0x1f80);

	/* faults: misaligned area -> #GP(0); a read-only page -> #PF(P|W) */
	fx_reset();
	__asm__ volatile(FX_BEGIN "xsave64 (%0)" FX_END
			 : : "r"(a_xs + 8), "a"(-1), "d"(-1) : "r11", "memory");
	if (fx_check("xsave to a misaligned area", 13, 0, 0, 0))
		return -1;
	fx_reset();
	__asm__ volatile(FX_BEGIN "xsave64 (%0)" FX_END
			 : : "r"(ro_page), "a"(-1), "d"(-1) : "r11", "memory");
	if (fx_check("xsave to a read-only page", 14, 3, (uintptr_t)ro_page,
		     (uintptr_t)ro_page + size - 1))
		return -1;
	COVER("xsave(#GP,#PF)");
	return 0;
}

/* ---- faulting POPCNT operands --------------------------------------------------------- */
static int t_popcnt_faults(uint8_t *page0)
{
	uint64_t page1 = (uintptr_t)page0 + 4096, d = 0;

	fx_reset();
	__asm__ volatile(FX_BEGIN "popcntq (%1), %0" FX_END
			 : "+r"(d) : "r"(page1 + 0x10) : "r11", "cc", "memory");
	if (fx_check("popcnt on an unmapped page", 14, 0, page1 + 0x10, page1 + 0x10))
		return -1;
	fx_reset();
	__asm__ volatile(FX_BEGIN "popcntq (%1), %0" FX_END
			 : "+r"(d) : "r"(page1 - 4) : "r11", "cc", "memory");
	if (fx_check("popcnt operand crossing into an unmapped page", 14, 0, page1, page1))
		return -1;
	/* the same 4 bytes before the gap are fine */
	memcpy(page0 + 4092, &(uint32_t){ 0x70000007 }, 4);
	__asm__ volatile("popcntl (%1), %k0" : "=r"(d) : "r"(page1 - 4) : "cc", "memory");
	if (d != 6)
		return probe_fail("popcntl at the end of a mapped page = %lu, expected 6", d);
	COVER("popcnt(#PF,#PF-crossing)");
	return 0;
}

static int test_assist(void)
{
	uint64_t cr0, cr4;
	uint32_t r1[4], r7[4];

	cpuid(1, 0, r1);
	cpuid(7, 0, r7);
	/* x87/SSE usable in ring 0: CR0.EM/TS clear, NE; CR4.OSFXSR|OSXMMEXCPT.
	 * CR0.WP so that a supervisor write to a read-only page faults. */
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 = (cr0 & ~(CR0_EM | CR0_TS)) | CR0_MP | CR0_NE | CR0_WP;
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | CR4_OSFXSR | CR4_OSXMMEXCPT));
	irq_set_handler(13, fx_handler);
	irq_set_handler(14, fx_handler);

	/* 0x40000000000 (PML4 slot 8): page 0 RW, page 1 not present, page 2 RO */
	uint8_t *win = (uint8_t *)(uintptr_t)0x40000000000ul;
	uint8_t *backing = probe_alloc_pages(2);
	if (!backing || pt_map4k((uintptr_t)win, (uintptr_t)backing, PTE_P | PTE_W) ||
	    pt_map4k((uintptr_t)win + 4096, 0, 0) ||
	    pt_map4k((uintptr_t)win + 8192, (uintptr_t)backing + 4096, PTE_P))
		return probe_fail("cannot build the 4 KiB test mappings");

	printf("assist: cpuid.1 ecx 0x%08x edx 0x%08x, cpuid.7 ebx 0x%08x\n", r1[R_ECX], r1[R_EDX],
	       r7[R_EBX]);
	if (r1[R_ECX] >> 23 & 1) {
		if (t_popcnt() || t_popcnt_faults(win))
			return -1;
	} else {
		SKIP("popcnt");
	}
	if (r1[R_ECX] >> 20 & 1) {
		if (t_crc32())
			return -1;
	} else {
		SKIP("crc32");
	}
	if (r1[R_ECX] >> 13 & 1) {
		if (t_cmpxchg16b())
			return -1;
	} else {
		SKIP("cmpxchg16b");
	}
	if (cpuid_bit(0x80000001, 0, R_EDX, 27)) {
		if (t_rdtscp())
			return -1;
	} else {
		SKIP("rdtscp");
	}
	if (r7[R_EBX] >> 3 & 1) {
		if (t_bmi1())
			return -1;
	} else {
		SKIP("bmi1");
	}
	if (r7[R_EBX] >> 8 & 1) {
		if (t_bmi2())
			return -1;
	} else {
		SKIP("bmi2");
	}
	if (r7[R_EBX] >> 20 & 1) {
		if (t_smap())
			return -1;
	} else {
		SKIP("stac/clac");
	}
	if (r1[R_EDX] >> 25 & 1) {
		if (t_mxcsr())
			return -1;
	} else {
		SKIP("ldmxcsr");
	}
	if (r1[R_EDX] >> 26 & 1) {
		if (t_sse2())
			return -1;
	} else {
		SKIP("sse2");
	}
	if (r1[R_EDX] & 1) {
		if (t_x87())
			return -1;
	} else {
		SKIP("x87");
	}
	if (r1[R_ECX] >> 26 & 1) {
		if (t_xsave(win + 8192))
			return -1;
	} else {
		SKIP("xsave");
	}
	irq_set_handler(13, NULL);
	irq_set_handler(14, NULL);
	serial_puts("assist: covered: ");  /* longer than printf's buffer */
	serial_puts(covered);
	serial_puts("\n");
	printf("assist: not in CPUID, skipped: %s\n", skipped[0] ? skipped : "(none)");
	return 0;
}
PROBE_TEST(assist, test_assist);
