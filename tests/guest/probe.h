/* kvmlite probe guest: freestanding x86-64 PVH test program.
 *
 * Boot: 32-bit PVH entry (EBX = struct hvm_start_info) -> own GDT -> long
 * mode, identity map of the first 8 GiB in 2 MiB pages (probe_map() adds
 * more) -> probe_main().  The kernel command line selects one test with
 * `test=NAME`; the result is printed on the 16550 at 0x3f8 as
 *     PROBE PASS NAME            or     PROBE FAIL NAME: reason
 * and reported through isa-debug-exit (port 0xf4): value 0 on pass (QEMU /
 * kvmlite exit status (0<<1)|1 = 1), value 1 on fail (exit status 3).
 *
 * Adding a test: in your own tests/guest/t_*.c
 *     static int my_test(void) { ...; if (bad) return probe_fail("why %d", x); return 0; }
 *     PROBE_TEST(mytest, my_test);
 * and append the file to probe_test_srcs in tests/guest/meson.build.
 * Guest instructions cost ~0.6 us on the PVM host (instruction emulator):
 * keep loops short and every wait bounded (there is no watchdog).
 * With kvmlite's emulation assist (src/cpu/assist/, on by default on PVM
 * hosts; `-accel kvm,emulation-assist=off` disables it) ring 0 can also run,
 * one VMM exit each (~10-50 us): XGETBV and the XSAVE family, CLAC/STAC,
 * POPCNT, CRC32, MOVBE, CMPXCHG16B, RDTSCP/RDPID, BMI1/BMI2,
 * LDMXCSR/STMXCSR, x87 control (FNINIT FNCLEX FLDCW FNSTCW FNSTSW FWAIT
 * FLD1 FLDZ), int3, SSE2 integer/logic ops and GPR<->XMM moves (t_assist.c);
 * and ring 3 with SYSCALL/SYSRET (t_syscall.c).  Ring 3 runs natively.  The
 * C code stays general-registers only (-mgeneral-regs-only): SSE/x87 only
 * in inline asm, after setting CR4.OSFXSR (and CR4.OSXSAVE + XSETBV for
 * XSAVE).  Not available: AVX and the rest of SSE/x87 arithmetic in ring 0;
 * LZCNT/TZCNT run in KVM's emulator as BSR/BSF, no exit reaching the
 * assist (seen: lzcnt(0x100) = 8, not 55; a zero source leaves the
 * destination unchanged instead of giving 64).
 */
#ifndef KVMLITE_PROBE_H
#define KVMLITE_PROBE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- test registration ------------------------------------------------- */
struct probe_test {
	const char *name;
	int (*fn)(void);  /* 0 = pass; otherwise return probe_fail(...) */
};

#define PROBE_TEST(tname, func)                                                \
	static const struct probe_test probe_test_##tname                      \
		__attribute__((used, section("probe_tests"), aligned(16))) = { \
			#tname, func }

/* Record the failure reason (printf format) and return -1. */
int probe_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "PROBE PASS/FAIL <current test>" and exit through port 0xf4. */
void probe_finish(bool pass) __attribute__((noreturn));
/* Stop this CPU forever (cli; hlt loop). */
void probe_halt_forever(void) __attribute__((noreturn));
extern const char *probe_test_name;

/* ---- boot information -------------------------------------------------- */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;    /* version >= 1 */
	uint32_t memmap_entries;  /* version >= 1 */
	uint32_t reserved;
};
struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;  /* 1 RAM, 2 reserved, 3 ACPI, 4 NVS, 5 unusable */
	uint32_t reserved;
};
#define HVM_MEMMAP_RAM 1

extern struct hvm_start_info *probe_boot_info;  /* physical = virtual */
extern const char *probe_cmdline;               /* "" when absent */
/* Value of `key=value` on the command line copied into buf; NULL if absent. */
const char *probe_cmdline_get(const char *key, char *buf, size_t len);
/* key=DIGITS as a number (leading digits only), def when the key is absent */
unsigned long probe_cmdline_num(const char *key, unsigned long def);

/* Linker symbols */
extern char _image_start[], _image_end[];

/* ---- console / formatting ---------------------------------------------- */
void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);
/* %s %c %d %i %u %x %X %p %% with l/ll/z modifiers, width and 0 padding. */
int vsnprintf(char *buf, size_t len, const char *fmt, va_list ap);
int snprintf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- string ------------------------------------------------------------ */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- port and MMIO I/O ------------------------------------------------- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)(uintptr_t)a; }
static inline uint16_t mmio_read16(uint64_t a) { return *(volatile uint16_t *)(uintptr_t)a; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)(uintptr_t)a; }
static inline uint64_t mmio_read64(uint64_t a) { return *(volatile uint64_t *)(uintptr_t)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)(uintptr_t)a = v; }
static inline void mmio_write16(uint64_t a, uint16_t v) { *(volatile uint16_t *)(uintptr_t)a = v; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)(uintptr_t)a = v; }
static inline void mmio_write64(uint64_t a, uint64_t v) { *(volatile uint64_t *)(uintptr_t)a = v; }

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
/* sti;hlt back to back: an interrupt pending after sti wakes the hlt. */
static inline void irq_enable_and_halt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* ---- memory ------------------------------------------------------------ */
/* Page-aligned bump allocation of zeroed guest RAM after the image (never
 * freed).  Physical address == pointer.  NULL when RAM is exhausted. */
void *probe_alloc_pages(size_t npages);
void *probe_alloc(size_t size, size_t align);   /* zeroed */
void *probe_alloc_raw(size_t size, size_t align); /* not zeroed (fresh RAM is) */
uint64_t probe_alloc_end(void);                 /* first free byte */
/* Make [pa, pa+len) identity-mapped (2 MiB pages, uncached when mmio); the
 * first 8 GiB are always mapped.  -1 if page tables cannot be allocated. */
int probe_map(uint64_t pa, uint64_t len, bool mmio);
/* Make the 2 MiB pages of the identity map covering [pa, pa+len) (already
 * mapped: probe_map first for addresses above 8 GiB) user-accessible, for
 * ring-3 code that runs at its link address (t_virtio_blk.c's blk-rate).
 * Whole 2 MiB pages: their neighbours become user-accessible too.  -1 when
 * a page is not mapped with 2 MiB pages. */
int probe_map_user(uint64_t pa, uint64_t len);

/* ---- time -------------------------------------------------------------- */
/* TSC ticks per microsecond, calibrated once against PIT channel 2 (~10 ms);
 * 0 if the calibration failed (then delays use a fixed guess of 1 GHz). */
uint64_t tsc_per_us(void);
void udelay(uint64_t us);

/* ---- interrupts -------------------------------------------------------- */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};
typedef void (*irq_handler_fn)(struct trap_frame *f);
/* Install a handler for a vector (32..255).  Exceptions (0..31) without a
 * handler end the test with PROBE FAIL naming vector, RIP and error code. */
void irq_set_handler(unsigned vector, irq_handler_fn fn);
extern volatile uint64_t irq_count[256];

/* 8259 pair: remap to base..base+15, all lines masked. */
void pic_init(uint8_t base);
void pic_unmask(unsigned irq);
void pic_mask(unsigned irq);
void pic_eoi(unsigned irq);

/* ---- local APIC (xAPIC MMIO) ------------------------------------------ */
#define LAPIC_BASE 0xFEE00000u
#define LAPIC_ID 0x020
#define LAPIC_VER 0x030
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0B0
#define LAPIC_SVR 0x0F0
#define LAPIC_ESR 0x280
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3E0
static inline uint32_t lapic_read(unsigned reg) { return mmio_read32(LAPIC_BASE + reg); }
static inline void lapic_write(unsigned reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
static inline void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }
/* Software-enable the LAPIC (SVR bit 8, spurious vector 0xff). */
void lapic_enable(void);
unsigned lapic_id(void);
/* Send an IPI; waits (bounded) for the delivery-status bit to clear.
 * Returns -1 if it stays busy. */
int lapic_send_ipi(unsigned apic_id, uint32_t icr_lo);

/* ---- PCI configuration mechanism #1 (0xcf8/0xcfc) ---------------------- */
#define PCI_BDF(b, d, f) ((uint16_t)(((b) << 8) | ((d) << 3) | (f)))
uint8_t pci_read8(uint16_t bdf, unsigned off);
uint16_t pci_read16(uint16_t bdf, unsigned off);
uint32_t pci_read32(uint16_t bdf, unsigned off);
void pci_write8(uint16_t bdf, unsigned off, uint8_t v);
void pci_write16(uint16_t bdf, unsigned off, uint16_t v);
void pci_write32(uint16_t bdf, unsigned off, uint32_t v);
/* Bus 0 scan: calls fn for every present function, stops when fn returns
 * non-zero (that value is returned); 0 when the scan finished. */
int pci_scan_bus0(int (*fn)(uint16_t bdf, uint16_t vendor, uint16_t device, void *opaque),
		  void *opaque);
/* Find vendor:device on bus 0; returns 0 and *bdf, or -1. */
int pci_find(uint16_t vendor, uint16_t device, uint16_t *bdf);
struct pci_bar {
	uint64_t addr;  /* as programmed (I/O: port number) */
	uint64_t size;  /* 0: BAR not implemented */
	bool io, is64, prefetch;
};
/* Read and size BAR n (0..5).  Decoding is disabled in the command register
 * while sizing and restored afterwards.  Returns the number of BAR slots
 * used (2 for a 64-bit BAR, else 1). */
int pci_bar_info(uint16_t bdf, unsigned n, struct pci_bar *bar);
/* Find capability id in the capability list; config offset or 0. */
unsigned pci_find_cap(uint16_t bdf, uint8_t cap_id);

/* ---- firmware tables (ACPI MADT / Intel MP table) ----------------------- */
#define PROBE_MAX_CPUS 64
struct probe_cpus {
	unsigned count;            /* enabled processors, BSP included */
	uint32_t apic_id[PROBE_MAX_CPUS];
	const char *source;        /* "ACPI MADT" / "MP table" */
};
/* RSDP from hvm_start_info.rsdp_paddr, else scan of the EBDA and
 * 0xE0000-0xFFFFF; NULL if none. */
const void *acpi_find_rsdp(void);
/* ACPI table by signature via XSDT/RSDT; NULL if absent. */
const void *acpi_find_table(const char sig[4]);
int acpi_gpe0_block(uint16_t *sts, uint16_t *en); /* FADT GPE0_STS/EN ports */
/* MP floating pointer ("_MP_") in EBDA / top of base memory / 0xF0000. */
const void *mp_find_fp(void);
/* CPU list from the MADT, else from the MP table.  -1 with a reason if
 * neither exists. */
int probe_find_cpus(struct probe_cpus *out);
uint8_t checksum8(const void *p, size_t len);

/* ---- application processors (t_smp.c) ----------------------------------- */
/* Start every AP in the firmware tables (INIT-SIPI-SIPI, long mode) and
 * check that all report; 0, or probe_fail(...).  Each AP then calls
 * probe_ap_hook(slot) when it is set (slot 0.. in start order), and halts
 * when that returns. */
int probe_smp_start(void);
/* Start one AP (a hot-plugged CPU): INIT-SIPI-SIPI; *reported its LAPIC id. */
int probe_ap_start(unsigned id, unsigned *reported);
extern void (*probe_ap_hook)(unsigned slot);

/* ---- guest-requested reset (t_basic.c) ---------------------------------- */
/* A marker page below the image survives the reset.  reset_marker_take():
 * on the boot after reset_request(), print how the VM was reset, clear the
 * marker and return the method (1 port 0xcf9, 2 port 0x64, 3 triple fault);
 * 0 on a first boot.  reset_request(): set the marker and try the methods
 * in turn; returns probe_fail(...) only if none reset the VM. */
uint64_t reset_marker_take(void);
int reset_request(void);

#endif
