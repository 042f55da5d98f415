/* Probe test: qmp - the ACPI power button driven from QMP.
 *
 * Enables PWRBTN_EN in PM1_EN and SCI_EN in PM1_CNT (PM1a block at 0x600 /
 * 0x604, SCI = IRQ 9 through the 8259), prints "PROBE READY boot=N" and
 * waits (bounded) for PWRBTN_STS, by SCI interrupt or by polling.  Then it
 * prints "qmp: power button ..." and writes SLP_TYP=s5|SLP_EN to PM1_CNT,
 * which must power the VM off (the host sees SHUTDOWN, guest: true).
 *
 * A marker in RAM counts boots, so a QMP system_reset is detected: the
 * second boot prints "qmp: boot 2 (reset detected)".
 *
 * Command line: s5=N  the SLP_TYP value of \_S5 (kvmlite: 5, the default;
 *                     QEMU pc/PIIX4: 0), wait=SEC  bound of the wait (120).
 * Needs -m 64 or more (the marker lives at 48 MiB). */
#include "probe.h"

#define PM1_STS 0x600
#define PM1_EN 0x602
#define PM1_CNT 0x604
#define PWRBTN (1u << 8)
#define SCI_EN (1u << 0)
#define SLP_EN (1u << 13)
#define PIC_BASE 0x20
#define SCI_IRQ 9
#define MARK_ADDR 0x3000000ul
#define MARK_MAGIC 0x31525750504c4bul /* "KLPPWR1" */

struct power_mark {
	uint64_t magic;
	uint64_t boots;
	uint64_t check;
};

static volatile uint64_t sci_count, sci_pwrbtn;

static void sci_handler(struct trap_frame *f)
{
	(void)f;
	sci_count++;
	if (inw(PM1_STS) & PWRBTN) {
		sci_pwrbtn = 1;
		outw(PM1_STS, PWRBTN); /* write 1 to clear: drops the SCI */
	}
	pic_eoi(SCI_IRQ);
}

static unsigned cmdline_num(const char *key, unsigned def)
{
	char buf[16];
	unsigned v = 0;
	if (!probe_cmdline_get(key, buf, sizeof(buf)) || !buf[0])
		return def;
	for (const char *p = buf; *p; p++) {
		if (*p < '0' || *p > '9')
			return def;
		v = v * 10 + (unsigned)(*p - '0');
	}
	return v;
}

static int test_qmp(void)
{
	volatile struct power_mark *m = (volatile struct power_mark *)(uintptr_t)MARK_ADDR;
	unsigned s5 = cmdline_num("s5", 5) & 7, wait_s = cmdline_num("wait", 120);
	uint64_t boots = 1;

	if ((uint64_t)(uintptr_t)_image_end > MARK_ADDR || probe_alloc_end() > MARK_ADDR)
		return probe_fail("image/allocations reach the marker at 0x%lx", MARK_ADDR);
	if (m->magic == MARK_MAGIC && m->check == (~MARK_MAGIC ^ m->boots) && m->boots < 100)
		boots = m->boots + 1;
	m->boots = boots;
	m->check = ~MARK_MAGIC ^ boots;
	m->magic = MARK_MAGIC;
	barrier();
	printf("qmp: boot %lu%s\n", boots, boots > 1 ? " (reset detected)" : "");

	irq_set_handler(PIC_BASE + SCI_IRQ, sci_handler);
	lapic_enable();
	lapic_write(LAPIC_LVT_LINT0, 0x700); /* ExtINT: 8259 output */
	pic_init(PIC_BASE);
	pic_unmask(SCI_IRQ);

	outw(PM1_STS, 0xffff); /* drop stale status */
	outw(PM1_EN, PWRBTN);
	outw(PM1_CNT, (uint16_t)(inw(PM1_CNT) | SCI_EN));
	if (!(inw(PM1_EN) & PWRBTN) || !(inw(PM1_CNT) & SCI_EN))
		return probe_fail("PM1a block missing: PM1_EN 0x%x PM1_CNT 0x%x", inw(PM1_EN),
				  inw(PM1_CNT));
	printf("PROBE READY boot=%lu\n", boots);

	bool seen = false;
	uint16_t sts = 0;
	for (uint64_t i = 0; i < (uint64_t)wait_s * 100 && !seen; i++) {
		irq_enable();
		udelay(10000);
		irq_disable();
		sts = inw(PM1_STS);
		seen = sci_pwrbtn || (sts & PWRBTN);
	}
	if (!seen) {
		m->magic = 0;
		return probe_fail("no power button (PWRBTN_STS) within %u s; PM1_STS 0x%x", wait_s, sts);
	}
	/* The poll can read PWRBTN_STS after the VMM set it and before the SCI
	 * it raises reaches the 8259 (the two are separate steps): the level
	 * stays asserted until the bit is cleared, so give the interrupt a
	 * bounded second to arrive before clearing it by hand. */
	for (unsigned i = 0; i < 100 && !sci_count && (sts & PWRBTN); i++) {
		irq_enable();
		udelay(10000);
		irq_disable();
	}
	if (inw(PM1_STS) & PWRBTN)
		outw(PM1_STS, PWRBTN);
	printf("qmp: power button pressed (boot %lu, sci=%lu), powering off with SLP_TYP=%u\n",
	       boots, sci_count, s5);
	m->magic = 0;
	barrier();
	outw(PM1_CNT, (uint16_t)(SCI_EN | (s5 << 10) | SLP_EN));
	udelay(2000000);
	return probe_fail("still running 2 s after writing SLP_TYP=%u|SLP_EN to PM1_CNT", s5);
}
PROBE_TEST(qmp, test_qmp);
