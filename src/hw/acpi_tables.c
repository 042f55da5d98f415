/* ACPI tables for the guest, written at KL_ACPI_TABLES_ADDR (0xe0000, inside
 * the e820-reserved 0x9fc00-0x100000 hole, where Linux also scans for the
 * RSDP):
 *
 *   0xe0000 RSDP rev 2 ("RSD PTR ", 36 bytes) -> RSDT and XSDT
 *   0xe0040 RSDT (32-bit pointers: FACP, APIC)
 *   0xe0080 XSDT (64-bit pointers: FACP, APIC)
 *   0xe0100 FACS (64 bytes, 64-byte aligned)
 *   0xe0200 FADT "FACP" rev 6 (276 bytes): SCI_INT = KL_ACPI_SCI_IRQ,
 *           PM1a_EVT_BLK = KL_ACPI_PM1A_EVT (4 bytes), PM1a_CNT_BLK =
 *           KL_ACPI_PM1A_CNT (2 bytes), no SMI_CMD (always in ACPI mode), no
 *           PM timer, GPE0_BLK = KL_ACPI_GPE0_BLK (4 bytes, PCI hot-plug); flags WBINVD|PROC_C1|SLP_BUTTON (the
 *           power button is a fixed feature: PWR_BUTTON clear; HW_REDUCED
 *           clear); IAPC_BOOT_ARCH = LEGACY_DEVICES|VGA_NOT_PRESENT (no 8042).
 *   0xe0400 DSDT: \_S5 and \_SB.PCI0 (PCI root bridge with _CRS and _PRT),
 *           AML below (src/hw/aml.c), then the hot-plug slots
 *           (src/hw/acpi_pcihp.c); with -M microvm,acpi=on the
 *           virtio-mmio transports as LNRO0005 (src/hw/microvm_aml.c)
 *   after the DSDT (16-byte aligned): MADT "APIC" rev 5: LAPIC per CPU (UID = APIC id = i), IOAPIC id
 *           ncpus at KL_IOAPIC_BASE GSI base 0, overrides ISA IRQ0 -> GSI 2
 *           (conforming), SCI IRQ -> GSI SCI and the PCI INTx GSIs 10, 11
 *           (level, active high, as QEMU's pc does), LAPIC NMI on LINT1 of
 *           all processors.
 */
#include "aml.h"
#include "boot_priv.h"
#include "kvmlite/cpu_hotplug.h"
#include "kvmlite/hotplug.h"
#include "kvmlite/pci.h"

#include <glib.h>
#include <string.h>

#define RSDP_OFF 0x000
#define RSDT_OFF 0x040
#define XSDT_OFF 0x080
#define FACS_OFF 0x100
#define FADT_OFF 0x200
#define DSDT_OFF 0x400
#define ACPI_MAX_CPUS 254

#define HDR_SIZE 36
#define FADT_SIZE 276

/* \_S5: Name (_S5, Package () { 0x05, 0x05, 0x00, 0x00 })
 *   08           NameOp
 *   5F 53 35 5F  NameString "_S5_" (one NameSeg, relative to the root)
 *   12           PackageOp
 *   08           PkgLength: 8 bytes follow from here (this byte + NumElements
 *                + 6 bytes of elements), one-byte encoding (< 64)
 *   04           NumElements = 4
 *   0A 05        BytePrefix 0x05   SLP_TYPa = 5
 *   0A 05        BytePrefix 0x05   SLP_TYPb = 5
 *   00           ZeroOp            (reserved)
 *   00           ZeroOp            (reserved)
 * The PM device at KL_ACPI_PM1A_CNT powers off on SLP_TYP = 5 with SLP_EN. */
static const uint8_t aml_s5[] = {
	0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00,
};

/* Word/DWord address space descriptors (ACPI 6.x 6.4.3.5), producer,
 * MinFixed | MaxFixed, positive decode. */
static void res_word(GByteArray *r, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
	uint8_t d[16] = { 0x88, 13, 0, type, 0x0c, tflags };
	kl_put16(d + 6, 0);                     /* granularity */
	kl_put16(d + 8, min);
	kl_put16(d + 10, max);
	kl_put16(d + 12, 0);                    /* translation */
	kl_put16(d + 14, (uint16_t)(max - min + 1));
	aml_bytes(r, d, sizeof(d));
}

static void res_dword_mem(GByteArray *r, uint32_t min, uint32_t max)
{
	uint8_t d[26] = { 0x87, 23, 0, 0 /* memory */, 0x0c, 0x01 /* RW, non-cacheable */ };
	kl_put32(d + 6, 0);
	kl_put32(d + 10, min);
	kl_put32(d + 14, max);
	kl_put32(d + 18, 0);
	kl_put32(d + 22, max - min + 1);
	aml_bytes(r, d, sizeof(d));
}

/* Scope (\_SB) { Device (PCI0) { _HID PNP0A03, _UID 0, _BBN 0, _CRS, _PRT } }
 * _CRS: bus 0-0xff, config ports 0xcf8-0xcff, I/O 0-0xcf7 and 0xd00-0xffff,
 * memory KL_PCI_MMIO_BASE..KL_PCI_MMIO_END-1.  _PRT: slot S pin P (0 = INTA)
 * -> GSI KL_PCI_INTX_GSI_BASE + ((S + P) & 1), as include/kvmlite/pci.h. */
static void aml_pci_root(GByteArray *a)
{
	GByteArray *dev = g_byte_array_new();
	aml_byte(dev, AML_NAME);
	aml_bytes(dev, "_HID", 4);
	aml_byte(dev, AML_DWORD);
	aml_bytes(dev, "\x41\xd0\x0a\x03", 4);    /* EisaId ("PNP0A03") */
	aml_name_int(dev, "_UID", 0);
	aml_name_int(dev, "_BBN", 0);

	GByteArray *res = g_byte_array_new();
	res_word(res, 2, 0, 0, 0xff);                   /* bus numbers */
	static const uint8_t cf8[] = { 0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08 };
	aml_bytes(res, cf8, sizeof(cf8));               /* IO (Decode16, 0xcf8, 0xcf8, 1, 8) */
	res_word(res, 1, 0x03, 0x0000, 0x0cf7);         /* I/O, entire range */
	res_word(res, 1, 0x03, 0x0d00, 0xffff);
	res_dword_mem(res, (uint32_t)KL_PCI_MMIO_BASE, (uint32_t)(KL_PCI_MMIO_END - 1));
	static const uint8_t end_tag[] = { 0x79, 0x00 };
	aml_bytes(res, end_tag, sizeof(end_tag));
	GByteArray *buf = g_byte_array_new();
	aml_int(buf, res->len);                         /* BufferSize */
	aml_bytes(buf, res->data, res->len);
	g_byte_array_free(res, TRUE);
	aml_byte(dev, AML_NAME);
	aml_bytes(dev, "_CRS", 4);
	static const uint8_t op_buffer[] = { AML_BUFFER };
	aml_wrap(dev, op_buffer, 1, NULL, buf);

	GByteArray *prt = g_byte_array_new();
	aml_byte(prt, KL_PCI_NSLOTS * 4);               /* NumElements */
	static const uint8_t op_pkg[] = { AML_PACKAGE };
	for (unsigned slot = 0; slot < KL_PCI_NSLOTS; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			GByteArray *e = g_byte_array_new();
			aml_byte(e, 4);
			aml_int(e, (uint64_t)slot << 16 | 0xffff);  /* _ADR: any function */
			aml_int(e, pin);
			aml_int(e, 0);                              /* Source: GSI */
			aml_int(e, KL_PCI_INTX_GSI_BASE + ((slot + pin) & 1));
			aml_wrap(prt, op_pkg, 1, NULL, e);
		}
	}
	aml_byte(dev, AML_NAME);
	aml_bytes(dev, "_PRT", 4);
	aml_wrap(dev, op_pkg, 1, NULL, prt);

	GByteArray *scope = g_byte_array_new();
	static const uint8_t op_dev[] = { AML_EXT, AML_DEVICE };
	aml_wrap(scope, op_dev, 2, "PCI0", dev);
	static const uint8_t op_scope[] = { AML_SCOPE };
	aml_wrap(a, op_scope, 1, "\\_SB_", scope);
}

static uint8_t acpi_sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return (uint8_t)(0x100 - s);
}

static void header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	kl_put32(t + 4, len);
	t[8] = rev;
	t[9] = 0;                               /* checksum, set by finish() */
	memcpy(t + 10, "KVMLTE", 6);            /* OEM ID */
	memcpy(t + 16, "KVMLITE ", 8);          /* OEM table ID */
	kl_put32(t + 24, 1);                    /* OEM revision */
	memcpy(t + 28, "KVML", 4);              /* creator ID */
	kl_put32(t + 32, 1);                    /* creator revision */
}

static void finish(uint8_t *t)
{
	t[9] = acpi_sum(t, kl_le32(t + 4));
}

void kl_acpi_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	header(t, sig, len, rev);
}

void kl_acpi_finish(uint8_t *t)
{
	finish(t);
}

/* Generic Address Structure, system I/O space. */
static void gas_io(uint8_t *g, uint64_t port, uint8_t bits, uint8_t access)
{
	g[0] = 1;       /* system I/O */
	g[1] = bits;
	g[2] = 0;
	g[3] = access;  /* 1 byte, 2 word, 3 dword */
	kl_put64(g + 4, port);
}

/* -smp maxcpus=: vCPU slots (0 or <= ncpus: no CPU hot-plug).  A count,
 * set once by main.c as kl_acpi_set_numa. */
static unsigned cpu_slots;

void kl_acpi_set_cpu_slots(unsigned slots)
{
	cpu_slots = slots;
}

int kl_acpi_write(const struct kl_guest_mem *m, unsigned ncpus, uint64_t *rsdp, char **err)
{
	return kl_acpi_write_ex(m, ncpus, true, NULL, rsdp, err);
}

int kl_acpi_write_ex(const struct kl_guest_mem *m, unsigned ncpus, bool pci,
		     const struct kl_virtio_mmio_slots *vmmio, uint64_t *rsdp, char **err)
{
	if (ncpus < 1 || ncpus > ACPI_MAX_CPUS) {
		*err = g_strdup_printf("ACPI: %u CPUs is out of range (1-%d)", ncpus,
				       ACPI_MAX_CPUS);
		return -1;
	}
	const uint64_t base = KL_ACPI_TABLES_ADDR;
	/* CPU hot-plug: the MADT lists every slot, the absent ones disabled
	 * (flags 0, as QEMU 7.2's pc); the DSDT has QEMU's CPU devices */
	unsigned present = ncpus;
	bool cpuhp = pci && cpu_slots > ncpus && cpu_slots <= ACPI_MAX_CPUS;
	if (cpuhp)
		ncpus = cpu_slots;
	GByteArray *aml = g_byte_array_new();
	aml_bytes(aml, aml_s5, sizeof(aml_s5));
	if (pci) {
		aml_pci_root(aml);
		kl_acpi_pcihp_aml(aml);         /* PCI hot-plug slots, \_GPE._E01 */
		if (cpuhp)
			kl_acpi_cpuhp_aml(aml, ncpus); /* \_SB.CPUS, \_GPE._E02 */
	}
	kl_microvm_acpi_aml(aml, vmmio);        /* -M microvm,acpi=on: LNRO0005 */
	uint32_t dsdt_len = HDR_SIZE + aml->len;
	uint32_t madt_off = (DSDT_OFF + dsdt_len + 15) & ~15u;
	uint32_t madt_len = 44 + 8 * ncpus + 12 + 4 * 10 + 6;
	uint32_t numa_off = (madt_off + madt_len + 15) & ~15u;   /* SRAT, SLIT (acpi_numa.c) */
	size_t numa_len = kl_acpi_numa_len(m, ncpus);
	size_t total = numa_len ? numa_off + numa_len : madt_off + madt_len;
	uint8_t *b = g_malloc0(total);

	/* DSDT */
	uint8_t *dsdt = b + DSDT_OFF;
	header(dsdt, "DSDT", dsdt_len, 2);
	memcpy(dsdt + HDR_SIZE, aml->data, aml->len);
	g_byte_array_free(aml, TRUE);
	finish(dsdt);

	/* FACS: no checksum, version 2. */
	uint8_t *facs = b + FACS_OFF;
	memcpy(facs, "FACS", 4);
	kl_put32(facs + 4, 64);
	facs[32] = 2;

	/* FADT */
	uint8_t *f = b + FADT_OFF;
	header(f, "FACP", FADT_SIZE, 6);
	kl_put32(f + 36, (uint32_t)(base + FACS_OFF));  /* FIRMWARE_CTRL */
	kl_put32(f + 40, (uint32_t)(base + DSDT_OFF));  /* DSDT */
	f[45] = 0;                                      /* PM profile: unspecified */
	kl_put16(f + 46, KL_ACPI_SCI_IRQ);              /* SCI_INT */
	kl_put32(f + 48, 0);                            /* SMI_CMD: none */
	kl_put32(f + 56, KL_ACPI_PM1A_EVT);             /* PM1a_EVT_BLK */
	kl_put32(f + 64, KL_ACPI_PM1A_CNT);             /* PM1a_CNT_BLK */
	kl_put32(f + 80, KL_ACPI_GPE0_BLK);             /* GPE0_BLK */
	f[92] = KL_ACPI_GPE0_LEN;                       /* GPE0_BLK_LEN */
	gas_io(f + 220, KL_ACPI_GPE0_BLK, KL_ACPI_GPE0_LEN * 8, 1); /* X_GPE0_BLK */
	f[88] = 4;                                      /* PM1_EVT_LEN */
	f[89] = 2;                                      /* PM1_CNT_LEN */
	kl_put16(f + 96, 101);                          /* P_LVL2_LAT: no C2 */
	kl_put16(f + 98, 1001);                         /* P_LVL3_LAT: no C3 */
	kl_put16(f + 109, 0x1 | 0x4);                   /* LEGACY_DEVICES | VGA not present */
	kl_put32(f + 112, 0x1 | 0x4 | 0x20);            /* WBINVD | PROC_C1 | SLP_BUTTON */
	f[131] = 0;                                     /* FADT minor version */
	kl_put64(f + 140, base + DSDT_OFF);             /* X_DSDT */
	gas_io(f + 148, KL_ACPI_PM1A_EVT, 32, 2);       /* X_PM1a_EVT_BLK */
	gas_io(f + 172, KL_ACPI_PM1A_CNT, 16, 2);       /* X_PM1a_CNT_BLK */
	memcpy(f + 268, "KVMLITE ", 8);                 /* hypervisor vendor identity */
	finish(f);

	/* MADT */
	uint8_t *a = b + madt_off, *p = a + 44;
	header(a, "APIC", madt_len, 5);
	kl_put32(a + 36, (uint32_t)KL_LAPIC_BASE);
	kl_put32(a + 40, 1);                            /* PCAT_COMPAT: 8259s present */
	for (unsigned i = 0; i < ncpus; i++, p += 8) {
		p[0] = 0;                               /* processor local APIC */
		p[1] = 8;
		p[2] = (uint8_t)i;                      /* ACPI processor UID */
		p[3] = (uint8_t)i;                      /* APIC id */
		kl_put32(p + 4, i < present ? 1 : 0);   /* enabled (hot-plug: absent) */
	}
	p[0] = 1;                                       /* I/O APIC */
	p[1] = 12;
	p[2] = (uint8_t)ncpus;
	kl_put32(p + 4, (uint32_t)KL_IOAPIC_BASE);
	kl_put32(p + 8, 0);                             /* GSI base */
	p += 12;
	p[0] = 2;                                       /* interrupt source override */
	p[1] = 10;
	p[2] = 0;                                       /* ISA */
	p[3] = 0;                                       /* IRQ0 */
	kl_put32(p + 4, 2);                             /* -> GSI 2 */
	kl_put16(p + 8, 0);                             /* conforms to bus */
	p += 10;
	p[0] = 2;
	p[1] = 10;
	p[2] = 0;
	p[3] = KL_ACPI_SCI_IRQ;
	kl_put32(p + 4, KL_ACPI_SCI_IRQ);
	kl_put16(p + 8, 0x1 | 0xc);                     /* active high, level */
	p += 10;
	for (unsigned i = 0; i < 2; i++, p += 10) {     /* PCI INTx lines */
		p[0] = 2;
		p[1] = 10;
		p[2] = 0;
		p[3] = (uint8_t)(KL_PCI_INTX_GSI_BASE + i);
		kl_put32(p + 4, KL_PCI_INTX_GSI_BASE + i);
		kl_put16(p + 8, 0x1 | 0xc);             /* active high, level */
	}
	p[0] = 4;                                       /* local APIC NMI */
	p[1] = 6;
	p[2] = 0xff;                                    /* all processors */
	kl_put16(p + 3, 0);
	p[5] = 1;                                       /* LINT1 */
	finish(a);

	uint32_t numa_tab[2];
	unsigned nnuma = numa_len ? kl_acpi_numa_write(b + numa_off, m, ncpus, numa_tab) : 0;

	/* RSDT / XSDT: FADT first, then MADT, then SRAT/SLIT. */
	uint8_t *rsdt = b + RSDT_OFF, *xsdt = b + XSDT_OFF;
	header(rsdt, "RSDT", HDR_SIZE + (2 + nnuma) * 4, 1);
	kl_put32(rsdt + HDR_SIZE, (uint32_t)(base + FADT_OFF));
	kl_put32(rsdt + HDR_SIZE + 4, (uint32_t)(base + madt_off));
	for (unsigned i = 0; i < nnuma; i++)
		kl_put32(rsdt + HDR_SIZE + 8 + 4 * i, (uint32_t)(base + numa_off + numa_tab[i]));
	finish(rsdt);
	header(xsdt, "XSDT", HDR_SIZE + (2 + nnuma) * 8, 1);
	kl_put64(xsdt + HDR_SIZE, base + FADT_OFF);
	kl_put64(xsdt + HDR_SIZE + 8, base + madt_off);
	for (unsigned i = 0; i < nnuma; i++)
		kl_put64(xsdt + HDR_SIZE + 16 + 8 * i, base + numa_off + numa_tab[i]);
	finish(xsdt);

	/* RSDP 2.0 */
	uint8_t *r = b + RSDP_OFF;
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, "KVMLTE", 6);
	r[15] = 2;                                      /* revision: ACPI 2.0+ */
	kl_put32(r + 16, (uint32_t)(base + RSDT_OFF));
	kl_put32(r + 20, 36);
	kl_put64(r + 24, base + XSDT_OFF);
	r[8] = acpi_sum(r, 20);
	r[32] = acpi_sum(r, 36);

	int ret = 0;
	if (base + total > KL_ACPI_TABLES_END || kl_mem_write(m, base, b, total) < 0) {
		*err = g_strdup_printf("ACPI: no guest RAM at 0x%llx", (unsigned long long)base);
		ret = -1;
	} else {
		*rsdp = base + RSDP_OFF;
	}
	g_free(b);
	return ret;
}
