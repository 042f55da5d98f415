/* test=cpuhp: ACPI CPU hot-plug (kvmlite/cpu_hotplug.h, docs/hotplug.md)
 * with the run-cpuhp runner issuing device_add / device_del over QMP; the
 * guest does what the DSDT's \_GPE._E02 / CSCN / _EJ0 would.
 *
 * GPE0 from the FADT, bit 2 enabled and polled (no SCI routed).  Per cycle i
 * (cpuhpn=N, default 2):
 *   "CPUHP READY i"            runner: device_add the CPU of slot 1
 *   GPE bit 2; CPU selector 0, command 0 (next CPU with an event): the
 *   status has the insert bit and the enabled bit, command data is 1;
 *   command 3: the APIC id is 1; the insert event is cleared (write 1 to
 *   bit 1) and command 0 then finds no CPU with an event
 *   INIT-SIPI-SIPI to APIC id 1: the new CPU runs (it reports its LAPIC id)
 *   "CPUHP ADDED i apic 1"     runner: query-cpus-fast lists it; device_del
 *   GPE bit 2; command 0: the remove bit, command data 1; remove cleared
 *   "CPUHP EJECTING i"
 *   eject (bit 3): within 5 s the slot's status loses the enabled bit
 *   "CPUHP EJECTED i"          runner: DEVICE_DELETED, the slot empty, then
 *                              a go (system_powerdown: PM1_STS PWRBTN)
 * The second cycle plugs the same slot again: its vCPU is back in
 * wait-for-SIPI and starts again. */
#include "probe.h"

#define CPHP 0xaf00
#define R_SEL 0x0
#define R_FLAGS 0x4
#define R_CMD 0x5
#define R_DATA 0x8
#define GPE_CPU 0x04
#define PM1_STS 0x600
#define WAIT_US 60000000ull

static uint16_t gpe_sts;

static int wait_gpe(const char *what)
{
	uint64_t t0 = rdtsc(), limit = WAIT_US * (tsc_per_us() ? tsc_per_us() : 1000);
	while (!(inb(gpe_sts) & GPE_CPU)) {
		if (rdtsc() - t0 > limit)
			return probe_fail("no CPU hot-plug GPE for %s within %llu s", what,
					  (unsigned long long)(WAIT_US / 1000000));
		udelay(1000);
	}
	outb(gpe_sts, GPE_CPU);
	if (inb(gpe_sts) & GPE_CPU)
		return probe_fail("GPE0_STS bit 2 does not clear");
	return 0;
}

/* Command 0 from selector 0: the status of the CPU with an event (the
 * selector then names it, command data too). */
static uint8_t next_event(uint32_t *sel)
{
	outl(CPHP + R_SEL, 0);
	outb(CPHP + R_CMD, 0);
	*sel = inl(CPHP + R_DATA);
	return inb(CPHP + R_FLAGS);
}

static int cycle(unsigned i)
{
	uint32_t sel;
	printf("CPUHP READY %u\n", i);
	if (wait_gpe("device_add") < 0)
		return -1;
	uint8_t f = next_event(&sel);
	if (f != 0x3 || sel != 1)
		return probe_fail("cycle %u: after the plug: status 0x%x selector %u (want 0x3, 1)", i,
				  f, sel);
	outb(CPHP + R_CMD, 3);
	uint32_t apic = inl(CPHP + R_DATA), hi = inl(CPHP + R_SEL);
	if (apic != 1 || hi != 0)
		return probe_fail("cycle %u: command 3: APIC id %u (high %u), want 1", i, apic, hi);
	outb(CPHP + R_FLAGS, 0x2);              /* clear the insert event */
	f = next_event(&sel);
	if (f & 0x6)
		return probe_fail("cycle %u: an event left after clearing insert: status 0x%x cpu %u",
				  i, f, sel);
	unsigned rep;
	if (probe_ap_start(1, &rep) < 0)
		return -1;
	if (rep != 1)
		return probe_fail("cycle %u: the new CPU reads LAPIC id %u, want 1", i, rep);
	printf("CPUHP ADDED %u apic %u\n", i, rep);
	if (wait_gpe("device_del") < 0)
		return -1;
	f = next_event(&sel);
	if (f != 0x5 || sel != 1)
		return probe_fail("cycle %u: after device_del: status 0x%x selector %u (want 0x5, 1)",
				  i, f, sel);
	outb(CPHP + R_FLAGS, 0x4);              /* clear the remove event */
	printf("CPUHP EJECTING %u\n", i);
	outb(CPHP + R_FLAGS, 0x8);              /* eject the selected CPU */
	uint64_t t0 = rdtsc(), limit = 5000000ull * (tsc_per_us() ? tsc_per_us() : 1000);
	while (inb(CPHP + R_FLAGS) & 0x1) {
		if (rdtsc() - t0 > limit)
			return probe_fail("cycle %u: CPU 1 still enabled 5 s after the eject", i);
		udelay(1000);
	}
	printf("CPUHP EJECTED %u\n", i);
	/* the runner's go (a power-button press) once it has checked the
	 * unplug: the next cycle or the end of the test only then */
	t0 = rdtsc();
	limit = WAIT_US * (tsc_per_us() ? tsc_per_us() : 1000);
	while (!(inw(PM1_STS) & 0x100)) {
		if (rdtsc() - t0 > limit)
			return probe_fail("cycle %u: no go (power button) from the runner", i);
		udelay(1000);
	}
	outw(PM1_STS, 0x100);
	return 0;
}

static int test_cpuhp(void)
{
	uint16_t gpe_en;
	if (acpi_gpe0_block(&gpe_sts, &gpe_en) < 0)
		return -1;
	outb(gpe_en, GPE_CPU);
	if (inb(gpe_en) != GPE_CPU)
		return probe_fail("GPE0_EN reads 0x%x after writing 0x4", inb(gpe_en));
	/* the interface's detection (acpi_cpu_hotplug.rst): selector 0,
	 * command 0, command data 2 reads 0; the boot CPU is enabled */
	outl(CPHP + R_SEL, 0);
	outb(CPHP + R_CMD, 0);
	if (inl(CPHP + R_SEL) != 0 || !(inb(CPHP + R_FLAGS) & 1))
		return probe_fail("no modern CPU hot-plug interface at 0x%x", CPHP);
	unsigned n = (unsigned)probe_cmdline_num("cpuhpn", 2);
	for (unsigned i = 0; i < n; i++)
		if (cycle(i) < 0)
			return -1;
	return 0;
}
PROBE_TEST(cpuhp, test_cpuhp);
