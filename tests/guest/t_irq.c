/* Probe test: irq - PIT channel 0 through the 8259 (ExtINT via LINT0) and a
 * one-shot LAPIC timer interrupt, both waited for with sti;hlt.
 *
 * Every wait is bounded: the first PIT tick is waited for by polling (no
 * hlt, so a missing interrupt cannot hang the probe); after that the PIT is
 * known to tick periodically and bounds the hlt waits. */
#include "probe.h"

#define PIC_BASE 0x20
#define VEC_PIT (PIC_BASE + 0)
#define VEC_LAPIC_TIMER 0x40
#define PIT_HZ 1193182u
#define PIT_DIVISOR 11932u  /* 100 Hz */

static volatile uint64_t pit_ticks, lapic_ticks;

static void pit_handler(struct trap_frame *f)
{
	(void)f;
	pit_ticks++;
	pic_eoi(0);
}

static void lapic_timer_handler(struct trap_frame *f)
{
	(void)f;
	lapic_ticks++;
	lapic_eoi();
}

static void pit_stop(void)
{
	outb(0x43, 0x30);  /* channel 0, mode 0, count never reloaded */
	outb(0x40, 0xff);
	outb(0x40, 0xff);
}

static int irq_fail(int r)
{
	irq_disable();
	pit_stop();
	pic_mask(0);
	lapic_write(LAPIC_LVT_TIMER, 0x10000);
	return r;
}

static int test_irq(void)
{
	uint64_t t0, t1, per = tsc_per_us();
	unsigned i;

	irq_set_handler(VEC_PIT, pit_handler);
	irq_set_handler(VEC_LAPIC_TIMER, lapic_timer_handler);
	lapic_enable();
	lapic_write(LAPIC_LVT_TIMER, 0x10000 | VEC_LAPIC_TIMER);  /* masked for now */
	lapic_write(LAPIC_LVT_LINT0, 0x700);  /* ExtINT, unmasked: 8259 output */
	lapic_write(LAPIC_LVT_LINT1, 0x400);  /* NMI */
	pic_init(PIC_BASE);

	/* PIT channel 0: mode 2 (rate generator), lobyte/hibyte, 100 Hz */
	outb(0x43, 0x34);
	outb(0x40, PIT_DIVISOR & 0xff);
	outb(0x40, PIT_DIVISOR >> 8);
	pic_unmask(0);

	/* 1. first PIT tick: poll with interrupts on, bounded */
	/* up to 500 ms by the TSC (a 100 Hz PIT ticks within 10 ms) */
	t0 = rdtsc();
	uint64_t until = t0 + 500000 * (per ? per : 1000);
	irq_enable();
	for (i = 0; i < 2000000 && !pit_ticks && (int64_t)(rdtsc() - until) < 0; i++)
		cpu_relax();
	irq_disable();
	if (!pit_ticks)
		return irq_fail(probe_fail("no PIT interrupt (IRQ0 via 8259, vector 0x%x) in 500 ms (%u polls); "
					   "PIC IRR 0x%x ISR 0x%x IMR 0x%x",
					   VEC_PIT, i, (outb(0x20, 0x0a), inb(0x20)),
					   (outb(0x20, 0x0b), inb(0x20)), inb(0x21)));
	/* 2. more PIT ticks with sti;hlt (periodic now, so hlt wakes up) */
	uint64_t start = pit_ticks;
	for (i = 0; i < 1000 && pit_ticks < start + 5; i++)
		irq_enable_and_halt();
	irq_disable();
	t1 = rdtsc();
	if (pit_ticks < start + 5)
		return irq_fail(probe_fail("PIT stopped after %lu ticks", pit_ticks));
	printf("irq: PIT IRQ0 -> 8259 -> vector 0x%x: %lu ticks (%lu us by TSC, %lu TSC/us)\n",
	       VEC_PIT, pit_ticks, per ? (t1 - t0) / per : 0, per);

	/* 3. LAPIC timer one-shot; the PIT bounds the wait */
	lapic_write(LAPIC_TIMER_DIV, 0x0b);  /* divide by 1 */
	lapic_write(LAPIC_LVT_TIMER, VEC_LAPIC_TIMER);  /* one-shot, unmasked */
	lapic_write(LAPIC_TIMER_INIT, 2000000);
	start = pit_ticks;
	for (i = 0; i < 1000 && !lapic_ticks && pit_ticks < start + 100; i++)
		irq_enable_and_halt();
	irq_disable();
	if (!lapic_ticks)
		return irq_fail(probe_fail("no LAPIC timer interrupt (vector 0x%x) within %lu PIT ticks; "
					   "current count %u",
					   VEC_LAPIC_TIMER, pit_ticks - start,
					   lapic_read(LAPIC_TIMER_CUR)));
	printf("irq: LAPIC timer one-shot -> vector 0x%x after %lu PIT ticks\n", VEC_LAPIC_TIMER,
	       pit_ticks - start);
	/* one-shot: no second interrupt, current count stays 0 */
	start = pit_ticks;
	for (i = 0; i < 1000 && pit_ticks < start + 3; i++)
		irq_enable_and_halt();
	irq_disable();
	if (lapic_ticks != 1)
		return irq_fail(probe_fail("one-shot LAPIC timer fired %lu times", lapic_ticks));
	if (lapic_read(LAPIC_TIMER_CUR) != 0)
		return irq_fail(probe_fail("LAPIC timer current count %u after expiry",
					   lapic_read(LAPIC_TIMER_CUR)));
	irq_fail(0);  /* quiesce */
	printf("irq: PIT %lu ticks, LAPIC timer %lu\n", pit_ticks, lapic_ticks);
	return 0;
}
PROBE_TEST(irq, test_irq);
