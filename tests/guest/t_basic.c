/* Probe tests: hello, halt, ram, reset. */
#include "probe.h"

/* ---- hello ------------------------------------------------------------------ */
static int test_hello(void)
{
	uint32_t r[4];
	char vendor[13];

	cpuid(0, 0, r);
	memcpy(vendor, &r[1], 4);
	memcpy(vendor + 4, &r[3], 4);
	memcpy(vendor + 8, &r[2], 4);
	vendor[12] = '\0';
	printf("hello: probe guest in long mode, cpu \"%s\", apic id %u, image 0x%lx-0x%lx\n",
	       vendor, lapic_id(), (uint64_t)(uintptr_t)_image_start,
	       (uint64_t)(uintptr_t)_image_end);
	return 0;
}
PROBE_TEST(hello, test_hello);

/* ---- halt: for bench/startup (prints one line, then cli;hlt forever) ------- */
static int test_halt(void)
{
	printf("probe: halted\n");
	probe_halt_forever();
}
PROBE_TEST(halt, test_halt);

/* ---- ram -------------------------------------------------------------------- */
#define MAX_RANGES 128
#define MIB (1ull << 20)

/* Accesses through asm: address 0 is valid RAM here. */
static inline void ram_wr(uint64_t a, uint64_t v)
{
	__asm__ volatile("movq %1, (%0)" : : "r"(a), "r"(v) : "memory");
}

static inline uint64_t ram_rd(uint64_t a)
{
	uint64_t v;
	__asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(a) : "memory");
	return v;
}

struct ram_walk {
	int mode;               /* 0 count, 1 save + write, 2 verify + restore */
	uint64_t n;             /* points visited */
	uint64_t skipped;
	uint64_t *save;
	uint64_t seed;
	uint64_t bad, first_bad, first_bad_val;
	uint64_t prot_lo, prot_hi;  /* image + allocations: not touched */
};

static void ram_point(struct ram_walk *w, uint64_t a)
{
	uint64_t pat = (a * 0x9e3779b97f4a7c15ull) ^ w->seed;

	if (a + 8 > w->prot_lo && a < w->prot_hi) {
		if (w->mode == 0)
			w->skipped++;
		return;
	}
	if (w->mode == 1) {
		w->save[w->n] = ram_rd(a);
		ram_wr(a, pat);
	} else if (w->mode == 2) {
		uint64_t v = ram_rd(a);
		if (v != pat) {
			if (!w->bad) {
				w->first_bad = a;
				w->first_bad_val = v;
			}
			w->bad++;
		}
		ram_wr(a, w->save[w->n]);
	}
	w->n++;
}

static void ram_walk_range(struct ram_walk *w, uint64_t start, uint64_t size)
{
	uint64_t first = (start + 7) & ~7ull;
	uint64_t last = (start + size - 8) & ~7ull;

	if (size < 8 || last < first)
		return;
	ram_point(w, first);
	for (uint64_t m = (first + MIB) & ~(MIB - 1); m < last; m += MIB)
		ram_point(w, m);
	if (last != first)
		ram_point(w, last);
}

static int test_ram(void)
{
	const struct hvm_start_info *si = probe_boot_info;
	struct hvm_memmap_entry map[MAX_RANGES];
	uint32_t n;
	uint64_t total = 0, top = 0;
	struct ram_walk w;

	if (si->version < 1 || !si->memmap_paddr || !si->memmap_entries)
		return probe_fail("hvm_start_info v%u has no memory map (memmap_paddr 0x%lx, %u entries)",
				  si->version, si->version >= 1 ? si->memmap_paddr : 0,
				  si->version >= 1 ? si->memmap_entries : 0);
	n = si->memmap_entries;
	if (n > MAX_RANGES)
		return probe_fail("memmap has %u entries (max %u)", n, MAX_RANGES);
	memcpy(map, (const void *)(uintptr_t)si->memmap_paddr, n * sizeof(map[0]));
	for (uint32_t i = 0; i < n; i++) {
		printf("ram: [0x%012lx-0x%012lx) type %u\n", map[i].addr, map[i].addr + map[i].size,
		       map[i].type);
		if (map[i].type != HVM_MEMMAP_RAM)
			continue;
		if (map[i].addr + map[i].size < map[i].addr)
			return probe_fail("memmap entry %u wraps around", i);
		for (uint32_t j = 0; j < i; j++)
			if (map[j].type == HVM_MEMMAP_RAM && map[i].addr < map[j].addr + map[j].size &&
			    map[j].addr < map[i].addr + map[i].size)
				return probe_fail("memmap RAM entries %u and %u overlap", j, i);
		total += map[i].size;
		if (map[i].addr + map[i].size > top)
			top = map[i].addr + map[i].size;
	}
	printf("ram: total %lu bytes (%lu MiB), top 0x%lx\n", total, total >> 20, top);
	if (!total)
		return probe_fail("memmap has no RAM");
	if ((uint64_t)(uintptr_t)_image_end > top)
		return probe_fail("probe image (end 0x%lx) is not inside RAM (top 0x%lx)",
				  (uint64_t)(uintptr_t)_image_end, top);
	if (top > (8ull << 30) && probe_map(8ull << 30, top - (8ull << 30), false))
		return probe_fail("cannot map RAM above 8 GiB (page tables)");

	memset(&w, 0, sizeof(w));
	w.prot_lo = (uint64_t)(uintptr_t)_image_start;
	w.prot_hi = ~0ull;  /* counting: allocations not made yet */
	for (uint32_t i = 0; i < n; i++)
		if (map[i].type == HVM_MEMMAP_RAM)
			ram_walk_range(&w, map[i].addr, map[i].size);
	/* one save slot per point, plus slack for points that the save array
	 * itself will no longer hide */
	w.save = probe_alloc((w.n + w.skipped + 2) * 8, 4096);
	if (!w.save)
		return probe_fail("cannot allocate %lu save slots", w.n + w.skipped + 2);
	w.prot_hi = probe_alloc_end();
	w.seed = rdtsc() | 1;
	for (w.mode = 1; w.mode <= 2; w.mode++) {
		uint64_t t0 = rdtsc(), per = tsc_per_us();
		w.n = 0;
		for (uint32_t i = 0; i < n; i++)
			if (map[i].type == HVM_MEMMAP_RAM)
				ram_walk_range(&w, map[i].addr, map[i].size);
		printf("ram: %s pass: %lu us\n", w.mode == 1 ? "write" : "verify",
		       per ? (rdtsc() - t0) / per : 0);
	}
	printf("ram: %lu qwords checked (1 MiB stride + first/last of each range), "
	       "0x%lx-0x%lx (probe image, save area) skipped\n", w.n, w.prot_lo, w.prot_hi);
	if (w.bad)
		return probe_fail("%lu of %lu qwords did not read back; first at 0x%lx read 0x%lx",
				  w.bad, w.n, w.first_bad, w.first_bad_val);
	return 0;
}
PROBE_TEST(ram, test_ram);

/* ---- reset ------------------------------------------------------------------ */
#define RESET_MAGIC 0x3154455345524c4bull  /* "KLRESET1" */

struct reset_mark {
	uint64_t magic;
	uint64_t stage;  /* last reset method tried */
	uint64_t check;  /* ~magic ^ stage */
};

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return b && a < b + blen && b < a + alen;
}

/* A fixed page below the image, away from what the loader wrote (the choice
 * depends only on the boot-info addresses, so both boots pick the same). */
static struct reset_mark *reset_mark_addr(void)
{
	static const uint64_t cand[] = { 0x7000, 0x5000, 0x3000, 0x9000, 0xa000 };
	const struct hvm_start_info *si = probe_boot_info;

	for (unsigned i = 0; i < sizeof(cand) / sizeof(cand[0]); i++) {
		uint64_t a = cand[i];
		if (overlaps(a, 4096, (uintptr_t)si, sizeof(*si)) ||
		    overlaps(a, 4096, si->cmdline_paddr, strlen(probe_cmdline) + 1) ||
		    (si->version >= 1 &&
		     overlaps(a, 4096, si->memmap_paddr,
			      (uint64_t)si->memmap_entries * sizeof(struct hvm_memmap_entry))) ||
		    overlaps(a, 4096, 0x8000, 4096) /* AP trampoline */)
			continue;
		return (struct reset_mark *)(uintptr_t)a;
	}
	return NULL;
}

static const char *const reset_methods[] = { "?", "port 0xcf9 (0x06)", "port 0x64 (0xfe)",
					      "triple fault" };

uint64_t reset_marker_take(void)
{
	volatile struct reset_mark *m = reset_mark_addr();
	uint64_t stage;

	if (!m || m->magic != RESET_MAGIC || m->check != (~RESET_MAGIC ^ m->stage) ||
	    m->stage < 1 || m->stage > 3)
		return 0;
	stage = m->stage;
	m->magic = 0;
	m->check = 0;
	m->stage = 0;
	printf("reset: second boot (marker at %p), reset by %s\n", (void *)m,
	       reset_methods[stage]);
	return stage;
}

int reset_request(void)
{
	volatile struct reset_mark *m = reset_mark_addr();

	if (!m)
		return probe_fail("no free page for the reset marker");
	printf("reset: first boot, marker at %p\n", (void *)m);
	printf("reset: requesting reset\n");
	for (uint64_t stage = 1; stage <= 3; stage++) {
		m->stage = stage;
		m->check = ~RESET_MAGIC ^ stage;
		m->magic = RESET_MAGIC;
		barrier();
		if (stage > 1)
			printf("reset: still running, trying %s\n", reset_methods[stage]);
		if (stage == 1) {
			outb(0xcf9, 0x06);
		} else if (stage == 2) {
			outb(0x64, 0xfe);
		} else {
			/* empty IDT + page fault -> #DF -> triple fault -> shutdown */
			static const struct {
				uint16_t limit;
				uint64_t base;
			} __attribute__((packed)) null_idt = { 0, 0 };
			__asm__ volatile("lidt %0" : : "m"(null_idt));
			(void)mmio_read32(0x8000000000ull);  /* 512 GiB: not mapped */
		}
		udelay(300000);
	}
	m->magic = 0;
	return probe_fail("the VM did not reset (port 0xcf9, port 0x64, triple fault)");
}

static int test_reset(void)
{
	if (reset_marker_take())
		return 0;
	return reset_request();
}
PROBE_TEST(reset, test_reset);

/* ---- exc: exception delivery through the IDT and iretq back ----------------- */
static volatile uint64_t pf_count, pf_cr2, pf_err;

static void pf_handler(struct trap_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	pf_count++;
	pf_cr2 = cr2;
	pf_err = f->error;
	f->rip += 3;  /* skip the 3-byte faulting mov (48 8b 00 / 48 89 10) */
}

static int test_exc(void)
{
	const uint64_t bad = 0x8000001000ull;  /* 512 GiB + 4 KiB: not mapped */
	uint64_t v = bad, canary = 0x1234abcd5678ef00ull;

	irq_set_handler(14, pf_handler);
	__asm__ volatile(".byte 0x48, 0x8b, 0x00" /* mov (%rax), %rax */
			 : "+a"(v) : : "memory");
	if (pf_count != 1 || pf_cr2 != bad || (pf_err & 3) != 0 || v != bad)
		return probe_fail("read fault: count %lu cr2 0x%lx error 0x%lx rax 0x%lx", pf_count,
				  pf_cr2, pf_err, v);
	__asm__ volatile(".byte 0x48, 0x89, 0x10" /* mov %rdx, (%rax) */
			 : : "a"(bad + 8), "d"(canary) : "memory");
	irq_set_handler(14, NULL);
	if (pf_count != 2 || pf_cr2 != bad + 8 || (pf_err & 3) != 2)
		return probe_fail("write fault: count %lu cr2 0x%lx error 0x%lx", pf_count, pf_cr2,
				  pf_err);
	printf("exc: #PF delivered twice (read error 0x0, write error 0x%lx), resumed by iretq\n",
	       pf_err);
	return 0;
}
PROBE_TEST(exc, test_exc);

/* emugap: instructions KVM's emulator lacks on PVM hosts.  kvmlite delivers
 * #BP for int3 itself and steps over fwait; on hardware virtualisation both
 * run natively.  Either way the guest must see a normal #BP trap (RIP after
 * the int3) and fwait must be a no-op. */
static volatile uint64_t bp_count, bp_rip;

static void bp_handler(struct trap_frame *f)
{
	bp_count++;
	bp_rip = f->rip;
}

static int test_emugap(void)
{
	uint64_t after;

	irq_set_handler(3, bp_handler);
	__asm__ volatile("int3\n\tlea 0(%%rip), %0" : "=r"(after) : : "memory");
	irq_set_handler(3, NULL);
	/* lea 0(%rip) yields the address of the instruction after the lea; the
	 * lea is 7 bytes long and starts right after the 1-byte int3. */
	if (bp_count != 1 || bp_rip != after - 7)
		return probe_fail("int3: #BP count %lu, rip 0x%lx, expected 0x%lx", bp_count,
				  bp_rip, after - 7);
	__asm__ volatile("fwait" : : : "memory");
	printf("emugap: int3 delivered #BP at rip 0x%lx, fwait stepped over\n", bp_rip);
	return 0;
}
PROBE_TEST(emugap, test_emugap);
