/* Intel MultiProcessor Specification 1.4 table.
 *
 * At KL_MPTABLE_ADDR (0xf0000, inside the e820-reserved 0x9fc00-0x100000
 * hole): the 16-byte floating pointer "_MP_", then the "PCMP" configuration
 * table at +0x10.  Entries, sorted by type as the spec requires:
 *   - one processor per vCPU: APIC id i, LAPIC version 0x14, enabled, BSP
 *     flag on CPU 0; signature family 6 (0x600), features FPU|APIC (0x201)
 *     (informational only: Linux reads the APIC id and flags);
 *   - buses: PCI bus id 0 ("PCI   "), ISA bus id 1 ("ISA   ") (kvmtool's
 *     numbering; PCI INTx routing is not described here, it comes from the
 *     PCI devices' interrupt line / ACPI);
 *   - IOAPIC id = ncpus, version 0x11, at KL_IOAPIC_BASE, enabled;
 *   - I/O interrupts: ISA IRQ 0-15 except 2 and the two PCI INTx lines
 *     (KL_PCI_INTX_GSI_BASE, +1 = 10, 11), IRQ0 -> INTIN 2, IRQ n -> INTIN n,
 *     polarity/trigger "conforms to bus" (ISA: edge, active high);
 *     PCI bus 0: every slot 0-31 x pin INTA-INTD (source irq = slot << 2 |
 *     pin) -> INTIN 10 + ((slot + pin) & 1) (pin counted from 0 here), level,
 *     active high, the routing of include/kvmlite/pci.h;
 *   - local interrupts: ExtINT -> LINT0, NMI -> LINT1 of all LAPICs (0xff).
 * Entry count = ncpus + 3 + 13 + 128 + 2 = ncpus + 146. */
#include "boot_priv.h"
#include "kvmlite/pci.h"

#include <glib.h>
#include <string.h>

#define MP_CPU 0
#define MP_BUS 1
#define MP_IOAPIC 2
#define MP_IOINT 3
#define MP_LINT 4

#define MP_INT_INT 0
#define MP_INT_NMI 1
#define MP_INT_EXTINT 3

#define MP_PCI_BUS 0
#define MP_ISA_BUS 1
#define MP_HDR_SIZE 44
#define MP_PCI_ENTRIES (KL_PCI_NSLOTS * 4)
#define MP_FLAGS_LEVEL_HIGH 0x0d /* polarity 01 active high, trigger 11 level */
#define MP_MAX_CPUS 254

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return (uint8_t)(0x100 - s);
}

static uint8_t *put_ioint(uint8_t *p, uint8_t type, uint16_t flags, uint8_t bus, uint8_t irq,
			  uint8_t apic, uint8_t pin, uint8_t entry)
{
	p[0] = entry;
	p[1] = type;
	kl_put16(p + 2, flags); /* 0 = conforms to bus polarity/trigger */
	p[4] = bus;
	p[5] = irq;
	p[6] = apic;
	p[7] = pin;
	return p + 8;
}

int kl_mptable_write(const struct kl_guest_mem *m, unsigned ncpus, char **err)
{
	if (ncpus < 1 || ncpus > MP_MAX_CPUS) {
		*err = g_strdup_printf("MP table: %u CPUs is out of range (1-%d)", ncpus,
				       MP_MAX_CPUS);
		return -1;
	}
	size_t size = 16 + MP_HDR_SIZE + 20 * (size_t)ncpus + 2 * 8 + 8 + 13 * 8 +
		      MP_PCI_ENTRIES * 8 + 2 * 8;
	uint8_t *buf = g_malloc0(size);
	uint8_t *fp = buf, *cfg = buf + 16, *p = cfg + MP_HDR_SIZE;
	uint16_t count = 0;

	for (unsigned i = 0; i < ncpus; i++, count++) {
		p[0] = MP_CPU;
		p[1] = (uint8_t)i;              /* local APIC id */
		p[2] = 0x14;                    /* local APIC version */
		p[3] = 0x1 | (i == 0 ? 0x2 : 0); /* EN, BP */
		kl_put32(p + 4, 0x600);         /* family 6 */
		kl_put32(p + 8, 0x201);         /* FPU | APIC */
		p += 20;
	}
	p[0] = MP_BUS;
	p[1] = MP_PCI_BUS;
	memcpy(p + 2, "PCI   ", 6);
	p += 8;
	p[0] = MP_BUS;
	p[1] = MP_ISA_BUS;
	memcpy(p + 2, "ISA   ", 6);
	p += 8;
	count += 2;

	uint8_t ioapic_id = (uint8_t)ncpus;
	p[0] = MP_IOAPIC;
	p[1] = ioapic_id;
	p[2] = 0x11;                            /* IOAPIC version */
	p[3] = 0x1;                             /* enabled */
	kl_put32(p + 4, (uint32_t)KL_IOAPIC_BASE);
	p += 8;
	count++;

	for (uint8_t irq = 0; irq < 16; irq++) {
		if (irq == 2 || irq == KL_PCI_INTX_GSI_BASE || irq == KL_PCI_INTX_GSI_BASE + 1)
			continue;
		p = put_ioint(p, MP_INT_INT, 0, MP_ISA_BUS, irq, ioapic_id, irq == 0 ? 2 : irq,
			      MP_IOINT);
		count++;
	}
	for (unsigned slot = 0; slot < KL_PCI_NSLOTS; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			p = put_ioint(p, MP_INT_INT, MP_FLAGS_LEVEL_HIGH, MP_PCI_BUS,
				      (uint8_t)(slot << 2 | pin), ioapic_id,
				      (uint8_t)(KL_PCI_INTX_GSI_BASE + ((slot + pin) & 1)), MP_IOINT);
			count++;
		}
	}
	p = put_ioint(p, MP_INT_EXTINT, 0, MP_ISA_BUS, 0, 0xff, 0, MP_LINT);
	p = put_ioint(p, MP_INT_NMI, 0, MP_ISA_BUS, 0, 0xff, 1, MP_LINT);
	count += 2;

	size_t cfg_len = (size_t)(p - cfg);
	memcpy(cfg, "PCMP", 4);
	kl_put16(cfg + 4, (uint16_t)cfg_len);   /* base table length */
	cfg[6] = 4;                             /* spec revision 1.4 */
	memcpy(cfg + 8, "KVMLITE ", 8);         /* OEM id */
	memcpy(cfg + 16, "KVMLITE     ", 12);   /* product id */
	kl_put16(cfg + 34, count);
	kl_put32(cfg + 36, (uint32_t)KL_LAPIC_BASE);
	cfg[7] = checksum(cfg, cfg_len);

	memcpy(fp, "_MP_", 4);
	kl_put32(fp + 4, (uint32_t)(KL_MPTABLE_ADDR + 16));
	fp[8] = 1;                              /* length in 16-byte units */
	fp[9] = 4;                              /* spec revision 1.4 */
	/* feature bytes 1-5 = 0: configuration table present, virtual wire mode */
	fp[10] = checksum(fp, 16);

	int r = 0;
	if (16 + cfg_len > KL_MPTABLE_END - KL_MPTABLE_ADDR ||
	    kl_mem_write(m, KL_MPTABLE_ADDR, buf, 16 + cfg_len) < 0) {
		*err = g_strdup_printf("MP table: no guest RAM at 0x%llx",
				       (unsigned long long)KL_MPTABLE_ADDR);
		r = -1;
	}
	g_free(buf);
	return r;
}
