/* Probe guest: IDT and trap dispatch, 8259 PIC, local APIC, TSC delays. */
#include "probe.h"

struct idt_gate {
	uint16_t off0;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off1;
	uint32_t off2;
	uint32_t zero;
} __attribute__((packed));

struct idt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
struct idt_ptr idt_desc;  /* also loaded by the APs (start.S) */
static irq_handler_fn handlers[256];
volatile uint64_t irq_count[256];
extern const char isr_stubs[];

void idt_init(void);
void probe_trap(struct trap_frame *f);

void idt_init(void)
{
	for (unsigned v = 0; v < 256; v++) {
		uint64_t a = (uint64_t)(uintptr_t)(isr_stubs + 16 * v);
		idt[v].off0 = (uint16_t)a;
		idt[v].sel = 0x18;
		idt[v].ist = 0;
		idt[v].type = 0x8e;  /* present, DPL 0, 64-bit interrupt gate */
		idt[v].off1 = (uint16_t)(a >> 16);
		idt[v].off2 = (uint32_t)(a >> 32);
		idt[v].zero = 0;
	}
	idt_desc.limit = sizeof(idt) - 1;
	idt_desc.base = (uint64_t)(uintptr_t)idt;
	__asm__ volatile("lidt %0" : : "m"(idt_desc));
}

void irq_set_handler(unsigned vector, irq_handler_fn fn)
{
	if (vector < 256)
		handlers[vector] = fn;
}

static const char *const exc_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
	"#NP", "#SS", "#GP", "#PF", "15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void probe_trap(struct trap_frame *f)
{
	unsigned v = (unsigned)f->vector & 255;

	irq_count[v]++;
	if (handlers[v]) {
		handlers[v](f);
		return;
	}
	if (v < 32) {
		uint64_t cr2;
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
		probe_fail("exception %u (%s) on apic %u at rip 0x%lx error 0x%lx cr2 0x%lx", v,
			   exc_names[v] ? exc_names[v] : "?", lapic_id(), f->rip, f->error, cr2);
		probe_finish(false);
	}
	if (v != 0xff)  /* the spurious vector takes no EOI */
		lapic_eoi();
}

/* ---- 8259 ----------------------------------------------------------------- */
void pic_init(uint8_t base)
{
	outb(0x20, 0x11);      /* ICW1: edge, cascade, ICW4 */
	outb(0xa0, 0x11);
	outb(0x21, base);      /* ICW2: vector base */
	outb(0xa1, (uint8_t)(base + 8));
	outb(0x21, 0x04);      /* ICW3: slave on IRQ2 */
	outb(0xa1, 0x02);
	outb(0x21, 0x01);      /* ICW4: 8086 mode, normal EOI */
	outb(0xa1, 0x01);
	outb(0x21, 0xff);      /* OCW1: mask everything */
	outb(0xa1, 0xff);
}

void pic_unmask(unsigned irq)
{
	uint16_t port = irq < 8 ? 0x21 : 0xa1;

	outb(port, inb(port) & (uint8_t)~(1u << (irq & 7)));
	if (irq >= 8)
		outb(0x21, inb(0x21) & (uint8_t)~(1u << 2));
}

void pic_mask(unsigned irq)
{
	uint16_t port = irq < 8 ? 0x21 : 0xa1;

	outb(port, inb(port) | (uint8_t)(1u << (irq & 7)));
}

void pic_eoi(unsigned irq)
{
	if (irq >= 8)
		outb(0xa0, 0x20);
	outb(0x20, 0x20);
}

/* ---- local APIC ------------------------------------------------------------ */
void lapic_enable(void)
{
	lapic_write(LAPIC_SVR, 0x100 | 0xff);
	lapic_write(LAPIC_TPR, 0);
}

unsigned lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

int lapic_send_ipi(unsigned apic_id, uint32_t icr_lo)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr_lo);
	for (unsigned i = 0; i < 10000; i++) {
		if (!(lapic_read(LAPIC_ICR_LO) & (1u << 12)))  /* delivery status */
			return 0;
		cpu_relax();
	}
	return -1;
}

/* ---- TSC ------------------------------------------------------------------- */
static uint64_t tsc_khz_us;  /* TSC ticks per microsecond */
static bool tsc_calibrated;

static uint16_t pit0_read(void)
{
	uint8_t lo, hi;

	outb(0x43, 0x00);  /* latch channel 0 */
	lo = inb(0x40);
	hi = inb(0x40);
	return (uint16_t)(lo | hi << 8);
}

uint64_t tsc_per_us(void)
{
	uint16_t prev, cur;
	uint64_t t0, t1, elapsed = 0;
	unsigned i;

	if (tsc_calibrated)
		return tsc_khz_us;
	tsc_calibrated = true;
	/* Count ~10 ms (11932 ticks of 1.193182 MHz) on PIT channel 0 in mode
	 * 2 with the full 65536 reload, reading it back with latch commands
	 * (port 0x61 / channel 2 is not wired on every machine, e.g. microvm). */
	outb(0x43, 0x34);
	outb(0x40, 0);
	outb(0x40, 0);
	prev = pit0_read();
	t0 = rdtsc();
	for (i = 0; i < 200000 && elapsed < 11932; i++) {
		cur = pit0_read();
		elapsed += (uint16_t)(prev - cur);
		prev = cur;
		if (i == 2000 && !elapsed)
			break;  /* each read takes >= 1 us: this PIT does not count */
	}
	t1 = rdtsc();
	outb(0x43, 0x30);  /* channel 0 back to a quiet one-shot */
	outb(0x40, 0xff);
	outb(0x40, 0xff);
	if (elapsed < 11932 || t1 <= t0) {
		printf("probe: TSC calibration failed (PIT channel 0 advanced %lu ticks)\n", elapsed);
		tsc_khz_us = 0;
		return 0;
	}
	tsc_khz_us = (t1 - t0) * 1193182 / (elapsed * 1000000);
	if (!tsc_khz_us)
		tsc_khz_us = 1;
	return tsc_khz_us;
}

void udelay(uint64_t us)
{
	uint64_t per = tsc_per_us();
	uint64_t end;

	if (!per)
		per = 1000;
	end = rdtsc() + us * per;
	while ((int64_t)(rdtsc() - end) < 0)
		cpu_relax();
}
