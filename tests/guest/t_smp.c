/* Probe test: smp - start every AP listed by the firmware tables with
 * INIT-SIPI-SIPI through a real-mode trampoline at 0x8000; each AP enters
 * long mode (start.S ap_entry32/ap_entry64), records its APIC id, bumps a
 * counter with a locked add and halts. */
#include "probe.h"

#define TRAMPOLINE_BASE 0x8000u
#define AP_STACK_PAGES 2

extern const char trampoline_start[], trampoline_end[];
extern uint64_t ap_stack_base, ap_stack_size;
extern uint32_t ap_next_slot;

static volatile uint32_t ap_reported;
static volatile uint32_t ap_ids[PROBE_MAX_CPUS];

void (*probe_ap_hook)(unsigned slot);

void probe_ap_main(unsigned slot);
void probe_ap_main(unsigned slot)
{
	if (slot < PROBE_MAX_CPUS)
		ap_ids[slot] = lapic_id();
	__asm__ volatile("lock addl $1, %0" : "+m"(ap_reported) : : "memory");
	if (probe_ap_hook)
		probe_ap_hook(slot);
	probe_halt_forever();
}

/* Bounded wait for ap_reported to reach want; true when it did. */
static bool wait_reported(uint32_t want, uint64_t us)
{
	uint64_t per = tsc_per_us() ? tsc_per_us() : 1000;
	uint64_t end = rdtsc() + us * per;

	for (unsigned i = 0; i < 20000000; i++) {
		if (ap_reported >= want)
			return true;
		if ((int64_t)(rdtsc() - end) >= 0)
			break;
		cpu_relax();
	}
	return ap_reported >= want;
}

/* The trampoline in its page, stacks for nslots APs, the report counter
 * cleared, the BSP's LAPIC on: 0, or -1 after probe_fail(). */
static int ap_setup(unsigned nslots)
{
	memcpy((void *)(uintptr_t)TRAMPOLINE_BASE, trampoline_start,
	       (size_t)(trampoline_end - trampoline_start));
	ap_stack_size = AP_STACK_PAGES * 4096;
	ap_stack_base = (uint64_t)(uintptr_t)probe_alloc_pages(AP_STACK_PAGES * nslots);
	if (!ap_stack_base)
		return probe_fail("cannot allocate AP stacks");
	ap_next_slot = 0;
	ap_reported = 0;
	barrier();
	lapic_enable();
	lapic_write(LAPIC_ESR, 0);
	return 0;
}

/* INIT (assert, level), then INIT de-assert, 10 ms, and up to two SIPIs
 * (the second only if no AP reported beyond `before` yet): 0 or -1. */
static int ap_kick(unsigned id, uint32_t before)
{
	if (lapic_send_ipi(id, 0x0000c500) || lapic_send_ipi(id, 0x00008500))
		return probe_fail("INIT IPI to apic id %u stayed pending", id);
	udelay(10000);
	for (unsigned s = 0; s < 2 && ap_reported <= before; s++) {
		if (lapic_send_ipi(id, 0x00004600 | (TRAMPOLINE_BASE >> 12)))
			return probe_fail("SIPI to apic id %u stayed pending", id);
		udelay(200);
	}
	return 0;
}

/* Start every AP in the firmware tables and check they all report. */
int probe_smp_start(void)
{
	struct probe_cpus cpus;
	unsigned bsp = lapic_id(), naps = 0;
	const struct hvm_start_info *si = probe_boot_info;

	if (probe_find_cpus(&cpus))
		return -1;
	printf("smp: %u CPU(s) in the %s, BSP apic id %u\n", cpus.count, cpus.source, bsp);
	if (cpus.count > PROBE_MAX_CPUS)
		return probe_fail("%u CPUs listed, the probe handles %u", cpus.count, PROBE_MAX_CPUS);
	bool bsp_listed = false;
	for (unsigned i = 0; i < cpus.count; i++)
		if (cpus.apic_id[i] == bsp)
			bsp_listed = true;
	if (!bsp_listed)
		return probe_fail("BSP apic id %u is not in the %s", bsp, cpus.source);
	naps = cpus.count - 1;
	if (!naps) {
		printf("smp: 0 APs to start\n");
		return 0;
	}
	/* the trampoline page must not hold boot data */
	if ((uintptr_t)si < TRAMPOLINE_BASE + 4096 && (uintptr_t)si + sizeof(*si) > TRAMPOLINE_BASE)
		return probe_fail("hvm_start_info at %p overlaps the trampoline page 0x%x", (void *)si,
				  TRAMPOLINE_BASE);
	if (si->cmdline_paddr < TRAMPOLINE_BASE + 4096 &&
	    si->cmdline_paddr + strlen(probe_cmdline) + 1 > TRAMPOLINE_BASE)
		return probe_fail("command line at 0x%lx overlaps the trampoline page 0x%x",
				  si->cmdline_paddr, TRAMPOLINE_BASE);
	if (ap_setup(naps) < 0)
		return -1;
	unsigned started = 0;
	for (unsigned i = 0; i < cpus.count; i++) {
		unsigned id = cpus.apic_id[i];
		if (id == bsp)
			continue;
		if (ap_kick(id, started) < 0)
			return -1;
		started++;
		if (!wait_reported(started, 2000000))
			return probe_fail("AP apic id %u did not report within 2 s (%u of %u APs up)",
					  id, ap_reported, naps);
	}
	if (ap_reported != naps)
		return probe_fail("%u APs reported, expected %u", ap_reported, naps);
	for (unsigned s = 0; s < naps; s++) {
		bool listed = false;
		for (unsigned i = 0; i < cpus.count; i++)
			if (cpus.apic_id[i] == ap_ids[s] && ap_ids[s] != bsp)
				listed = true;
		for (unsigned t = 0; t < s; t++)
			if (ap_ids[t] == ap_ids[s])
				listed = false;
		printf("smp: AP %u: apic id %u%s\n", s, ap_ids[s], listed ? "" : " (unexpected)");
		if (!listed)
			return probe_fail("AP slot %u reported apic id %u: not listed or duplicate", s,
					  ap_ids[s]);
	}
	printf("smp: all %u APs up (locked counter %u)\n", naps, ap_reported);
	return 0;
}

/* Start the one AP with APIC id `id` (a hot-plugged CPU: t_cpuhp.c) with
 * INIT-SIPI-SIPI; each call takes a fresh AP slot and stack (at most 8).
 * 0 with *reported = the APIC id the AP read from its LAPIC, or -1. */
int probe_ap_start(unsigned id, unsigned *reported)
{
	static bool ready;
	const unsigned max = 8;
	if (!ready) {
		if (ap_setup(max) < 0)
			return -1;
		ready = true;
	}
	uint32_t before = ap_reported;
	if (before >= max)
		return probe_fail("probe_ap_start: more than %u AP starts", max);
	if (ap_kick(id, before) < 0)
		return -1;
	if (!wait_reported(before + 1, 2000000))
		return probe_fail("AP apic id %u did not report within 2 s", id);
	*reported = ap_ids[before];
	return 0;
}

static int test_smp(void)
{
	return probe_smp_start();
}
PROBE_TEST(smp, test_smp);

/* smpreset: start the APs, reset the VM (APs halted in long mode), then
 * start them again on the second boot: the VMM must put every AP back in
 * wait-for-SIPI on reset. */
static int test_smpreset(void)
{
	uint64_t second = reset_marker_take();

	if (probe_smp_start())
		return -1;
	if (second)
		return 0;
	return reset_request();
}
PROBE_TEST(smpreset, test_smpreset);
