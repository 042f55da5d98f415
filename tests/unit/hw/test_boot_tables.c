/* Unit tests for the MP table (src/hw/mptable.c) and the ACPI tables
 * (src/hw/acpi_tables.c): structure walks, counts, lengths, checksums. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/boot.h"
#include "kvmlite/mem.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"

#define RAM_SIZE (4 * 1024 * 1024ULL)

static struct kl_guest_mem mem;
static uint8_t *ram;

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static void setup(void)
{
	ram = g_malloc0(RAM_SIZE);
	kl_mem_init_empty(&mem);
	ck_assert_int_eq(kl_mem_add_region(&mem, 0, RAM_SIZE, ram), 0);
}

static void teardown(void)
{
	g_free(ram);
}

static uint8_t *gpa(uint64_t a, uint64_t len)
{
	uint8_t *p = kl_gpa_to_hva(&mem, a, len);
	ck_assert_msg(p != NULL, "0x%llx+0x%llx not in RAM", (unsigned long long)a,
		      (unsigned long long)len);
	return p;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

/* ---- MP table ----------------------------------------------------------- */

/* Find the floating pointer the way Linux does: 16-byte steps in 0xf0000-0xfffff. */
static uint64_t find_mpf(void)
{
	for (uint64_t a = 0xf0000; a < 0x100000; a += 16)
		if (memcmp(gpa(a, 4), "_MP_", 4) == 0 && sum(gpa(a, 16), 16) == 0)
			return a;
	return 0;
}

START_TEST(test_mptable)
{
	unsigned ncpus = _i == 0 ? 1 : _i == 1 ? 4 : 254;
	char *err = NULL;
	memset(ram + 0xf0000, 0xcc, 0x10000);
	ck_assert_int_eq(kl_mptable_write(&mem, ncpus, &err), 0);
	uint64_t fpa = find_mpf();
	ck_assert_uint_eq(fpa, KL_MPTABLE_ADDR);
	uint8_t *fp = gpa(fpa, 16);
	ck_assert_uint_eq(fp[8], 1);   /* length 16 bytes */
	ck_assert_uint_eq(fp[9], 4);   /* spec 1.4 */
	ck_assert_uint_eq(fp[11], 0);  /* config table present */
	uint32_t cfga = rd32(fp + 4);
	ck_assert_uint_ge(cfga, 0xf0000);
	uint8_t *c = gpa(cfga, 44);
	ck_assert_mem_eq(c, "PCMP", 4);
	uint16_t len = rd16(c + 4);
	ck_assert_uint_lt(cfga + len, 0x100000);
	c = gpa(cfga, len);
	ck_assert_uint_eq(sum(c, len), 0);
	ck_assert_uint_eq(c[6], 4);
	ck_assert_mem_eq(c + 8, "KVMLITE", 7);
	ck_assert_mem_eq(c + 16, "KVMLITE", 7);
	ck_assert_uint_eq(rd32(c + 36), KL_LAPIC_BASE);
	ck_assert_uint_eq(rd16(c + 40), 0);  /* no extended table */
	unsigned count = rd16(c + 34);
	ck_assert_uint_eq(count, ncpus + 146);

	unsigned n[5] = {0}, bsp = 0, last_type = 0, ioapic_id = 0x100, pci = 0x100, isa = 0x100;
	bool irq_seen[16] = {0}, pci_seen[128] = {0};
	size_t off = 44;
	for (unsigned i = 0; i < count; i++) {
		ck_assert_uint_lt(off, len);
		uint8_t *e = c + off;
		ck_assert_uint_le(e[0], 4);
		ck_assert_uint_ge(e[0], last_type); /* sorted by type */
		last_type = e[0];
		n[e[0]]++;
		switch (e[0]) {
		case 0:
			ck_assert_uint_eq(e[1], n[0] - 1);  /* APIC ids 0..n-1 */
			ck_assert_uint_eq(e[2], 0x14);
			ck_assert_uint_eq(e[3] & 1, 1);     /* enabled */
			if (e[3] & 2) {
				bsp++;
				ck_assert_uint_eq(e[1], 0);
			}
			off += 20;
			break;
		case 1:
			if (memcmp(e + 2, "PCI   ", 6) == 0)
				pci = e[1];
			else if (memcmp(e + 2, "ISA   ", 6) == 0)
				isa = e[1];
			else
				ck_abort_msg("unknown bus type");
			off += 8;
			break;
		case 2:
			ioapic_id = e[1];
			ck_assert_uint_eq(e[2], 0x11);
			ck_assert_uint_eq(e[3] & 1, 1);
			ck_assert_uint_eq(rd32(e + 4), KL_IOAPIC_BASE);
			off += 8;
			break;
		case 3:
			ck_assert_uint_eq(e[1], 0);         /* INT */
			ck_assert_uint_eq(e[6], ioapic_id);
			if (e[4] == isa) {
				ck_assert_uint_lt(e[5], 16);
				ck_assert(!irq_seen[e[5]]);
				irq_seen[e[5]] = true;
				ck_assert_uint_eq(e[7], e[5] == 0 ? 2 : e[5]);
				ck_assert_uint_eq(rd16(e + 2), 0);
			} else {
				/* PCI: slot << 2 | pin -> GSI 10 + ((slot + pin) & 1), level high */
				ck_assert_uint_eq(e[4], pci);
				ck_assert_uint_lt(e[5], 128);
				ck_assert(!pci_seen[e[5]]);
				pci_seen[e[5]] = true;
				ck_assert_uint_eq(e[7], 10 + (((e[5] >> 2) + (e[5] & 3)) & 1));
				ck_assert_uint_eq(rd16(e + 2), 0xd);
			}
			off += 8;
			break;
		case 4:
			ck_assert_uint_eq(e[6], 0xff);
			ck_assert_uint_eq(e[7], n[4] - 1);  /* LINT0 then LINT1 */
			ck_assert_uint_eq(e[1], n[4] == 1 ? 3 : 1); /* ExtINT, NMI */
			off += 8;
			break;
		}
	}
	ck_assert_uint_eq(off, len);   /* entries fill the base table exactly */
	ck_assert_uint_eq(n[0], ncpus);
	ck_assert_uint_eq(bsp, 1);
	ck_assert_uint_eq(n[1], 2);
	ck_assert_uint_eq(pci, 0);
	ck_assert_uint_eq(isa, 1);
	ck_assert_uint_eq(n[2], 1);
	ck_assert_uint_eq(ioapic_id, ncpus);
	ck_assert_uint_eq(n[3], 13 + 128);
	ck_assert(!irq_seen[2] && !irq_seen[10] && !irq_seen[11]);
	for (unsigned i = 0; i < 16; i++)
		ck_assert(irq_seen[i] || i == 2 || i == 10 || i == 11);
	for (unsigned i = 0; i < 128; i++)
		ck_assert(pci_seen[i]);
	ck_assert_uint_eq(n[4], 2);
}
END_TEST

START_TEST(test_mptable_errors)
{
	char *err = NULL;
	ck_assert_int_eq(kl_mptable_write(&mem, 0, &err), -1);
	ck_assert_ptr_nonnull(err);
	g_free(err);
	err = NULL;
	ck_assert_int_eq(kl_mptable_write(&mem, 255, &err), -1);
	ck_assert_ptr_nonnull(err);
	g_free(err);
	/* no RAM below 1 MiB */
	struct kl_guest_mem hi;
	kl_mem_init_empty(&hi);
	ck_assert_int_eq(kl_mem_add_region(&hi, 0x100000, RAM_SIZE - 0x100000, ram), 0);
	err = NULL;
	ck_assert_int_eq(kl_mptable_write(&hi, 1, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "0xf0000"));
	g_free(err);
	err = NULL;
	uint64_t rsdp = 0;
	ck_assert_int_eq(kl_acpi_write(&hi, 1, &rsdp, &err), -1);
	ck_assert_ptr_nonnull(err);
	g_free(err);
	err = NULL;
	ck_assert_int_eq(kl_acpi_write(&mem, 0, &rsdp, &err), -1);
	ck_assert_ptr_nonnull(err);
	g_free(err);
}
END_TEST

/* ---- ACPI --------------------------------------------------------------- */

/* AML PkgLength at p: returns the encoded length, *n = bytes of encoding. */
static size_t pkglen(const uint8_t *p, unsigned *n)
{
	unsigned extra = p[0] >> 6;
	*n = extra + 1;
	if (!extra)
		return p[0] & 0x3f;
	size_t v = p[0] & 0xf;
	for (unsigned i = 0; i < extra; i++)
		v |= (size_t)p[1 + i] << (4 + 8 * i);
	return v;
}

/* AML integer at *p (Zero/One/Byte/Word/DWord/QWord), advancing *p. */
static uint64_t aml_int(const uint8_t **p)
{
	const uint8_t *q = *p;
	unsigned n = q[0] == 0x0a ? 1 : q[0] == 0x0b ? 2 : q[0] == 0x0c ? 4 : q[0] == 0x0e ? 8 : 0;
	ck_assert_msg(n || q[0] <= 1, "not an AML integer: 0x%02x", q[0]);
	uint64_t v = n ? 0 : q[0];
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)q[1 + i] << (8 * i);
	*p = q + 1 + n;
	return v;
}

static const uint8_t *find(const uint8_t *from, const uint8_t *end, const char *s, size_t n)
{
	for (const uint8_t *p = from; p + n <= end; p++)
		if (memcmp(p, s, n) == 0)
			return p;
	ck_abort_msg("'%s' not found in the DSDT", s);
	return NULL;
}

/* The PCI hot-plug part after \_SB (src/hw/acpi_pcihp_aml.c):
 * Scope (\_SB.PCI0) { PCST/SEJ regions, S08..SF8 with _ADR/_SUN/_EJ0, PCNT }
 * then Scope (\_GPE) { _E01 } to the end. */
static void check_pcihp(const uint8_t *p, const uint8_t *end)
{
	unsigned n;
	ck_assert_uint_eq(p[0], 0x10);                        /* ScopeOp */
	const uint8_t *send = p + 1 + pkglen(p + 1, &n);
	p += 1 + n;
	ck_assert_mem_eq(p, "\\\x2e_SB_PCI0", 10);           /* \ DualNamePrefix */
	static const uint8_t region[] = { 0x5b, 0x80, 'P', 'C', 'S', 'T', 0x01, 0x0b, 0x00, 0xae };
	find(p, send, (const char *)region, sizeof(region));
	unsigned slots = 0;
	for (unsigned s = 1; s < 32; s++) {
		char name[6];
		snprintf(name, sizeof(name), "S%02X_", s << 3); /* NameSeg padded with '_' */
		const uint8_t *q = find(p, send, name, 4);
		ck_assert_uint_eq(q[-3], 0x5b);               /* DeviceOp, 1-byte PkgLength */
		ck_assert_uint_eq(q[-2], 0x82);
		q = find(q, send, "_ADR", 4) + 4;
		ck_assert_uint_eq(aml_int(&q), (uint64_t)s << 16);
		ck_assert_mem_eq(q, "\x08_SUN", 5);
		q += 5;
		ck_assert_uint_eq(aml_int(&q), s);
		find(q, send, "_EJ0", 4);
		slots++;
	}
	ck_assert_uint_eq(slots, 31);
	find(p, send, "\x14", 1);                             /* MethodOp */
	find(p, send, "PCNT", 4);
	p = send;
	ck_assert_uint_eq(p[0], 0x10);
	ck_assert_ptr_eq(p + 1 + pkglen(p + 1, &n), end);
	p += 1 + n;
	ck_assert_mem_eq(p, "\\_GPE\x14", 6);
	find(p, end, "_E01", 4);
	find(p, end, "\\\x2f\x03_SB_PCI0PCNT", 15);         /* the call to \_SB.PCI0.PCNT */
}

/* DSDT = \_S5 package, then Scope (\_SB) { Device (PCI0) {...} }, then the
 * hot-plug part (check_pcihp) to the end. */
static void check_dsdt(const uint8_t *d, uint32_t len)
{
	static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04,
				      0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00 };
	const uint8_t *end = d + len;
	ck_assert_mem_eq(d + 36, s5, sizeof(s5));
	const uint8_t *p = d + 36 + sizeof(s5);
	unsigned n;
	ck_assert_uint_eq(p[0], 0x10);                        /* ScopeOp */
	const uint8_t *sb_end = p + 1 + pkglen(p + 1, &n);
	ck_assert(sb_end < end);
	check_pcihp(sb_end, end);
	end = sb_end;                                         /* \_SB from here */
	p += 1 + n;
	ck_assert_mem_eq(p, "\\_SB_", 5);
	p += 5;
	ck_assert_uint_eq(p[0], 0x5b);                        /* DeviceOp */
	ck_assert_uint_eq(p[1], 0x82);
	ck_assert_ptr_eq(p + 2 + pkglen(p + 2, &n), end);
	p += 2 + n;
	ck_assert_mem_eq(p, "PCI0", 4);
	const uint8_t *dev = p + 4;

	p = find(dev, end, "_HID", 4) + 4;
	ck_assert_mem_eq(p, "\x0c\x41\xd0\x0a\x03", 5);      /* EisaId ("PNP0A03") */

	/* _CRS buffer: walk the resource descriptors to the end tag */
	p = find(dev, end, "_CRS", 4) + 4;
	ck_assert_uint_eq(p[0], 0x11);                        /* BufferOp */
	const uint8_t *bend = p + 1 + pkglen(p + 1, &n);
	p += 1 + n;
	uint64_t bsize = aml_int(&p);
	ck_assert_ptr_eq(p + bsize, bend);
	bool mem_ok = false, bus_ok = false, end_tag = false;
	while (p < bend && !end_tag) {
		if (p[0] & 0x80) {                            /* large descriptor */
			size_t l = rd16(p + 1);
			ck_assert(p + 3 + l <= bend);
			if (p[0] == 0x87 && p[3] == 0)
				mem_ok = rd32(p + 10) == KL_PCI_MMIO_BASE &&
					 rd32(p + 14) == KL_PCI_MMIO_END - 1;
			if (p[0] == 0x88 && p[3] == 2)
				bus_ok = rd16(p + 8) == 0 && rd16(p + 10) == 0xff;
			p += 3 + l;
		} else {                                      /* small descriptor */
			end_tag = (p[0] >> 3) == 0xf;
			p += 1 + (p[0] & 7);
		}
	}
	ck_assert(end_tag && mem_ok && bus_ok);
	ck_assert_ptr_eq(p, bend);

	/* _PRT: 32 slots x 4 pins -> GSI 10 + ((slot + pin) & 1) */
	p = find(dev, end, "_PRT", 4) + 4;
	ck_assert_uint_eq(p[0], 0x12);
	const uint8_t *pend = p + 1 + pkglen(p + 1, &n);
	p += 1 + n;
	ck_assert_uint_eq(p[0], 128);
	p++;
	bool seen[128] = {0};
	for (unsigned i = 0; i < 128; i++) {
		ck_assert_uint_eq(p[0], 0x12);
		const uint8_t *e_end = p + 1 + pkglen(p + 1, &n);
		p += 1 + n;
		ck_assert_uint_eq(*p++, 4);
		uint64_t adr = aml_int(&p), pin = aml_int(&p), src = aml_int(&p), gsi = aml_int(&p);
		ck_assert_ptr_eq(p, e_end);
		ck_assert_uint_eq(adr & 0xffff, 0xffff);
		unsigned slot = (unsigned)(adr >> 16);
		ck_assert_uint_lt(slot, 32);
		ck_assert_uint_lt(pin, 4);
		ck_assert_uint_eq(src, 0);
		ck_assert_uint_eq(gsi, 10 + ((slot + pin) & 1));
		ck_assert(!seen[slot * 4 + pin]);
		seen[slot * 4 + pin] = true;
	}
	ck_assert_ptr_eq(p, pend);
}

/* A table at a: signature, length within the area, checksum zero. */
static uint8_t *table(uint64_t a, const char *sig)
{
	ck_assert_uint_ge(a, KL_ACPI_TABLES_ADDR);
	uint8_t *t = gpa(a, 36);
	ck_assert_mem_eq(t, sig, 4);
	uint32_t len = rd32(t + 4);
	ck_assert_uint_ge(len, 36);
	ck_assert_uint_le(a + len, KL_ACPI_TABLES_END);
	t = gpa(a, len);
	ck_assert_msg(sum(t, len) == 0, "%s checksum", sig);
	ck_assert_mem_eq(t + 10, "KVMLTE", 6);
	return t;
}

START_TEST(test_acpi)
{
	unsigned ncpus = _i == 0 ? 1 : _i == 1 ? 4 : 254;
	char *err = NULL;
	uint64_t rsdp = 0;
	ck_assert_int_eq(kl_acpi_write(&mem, ncpus, &rsdp, &err), 0);
	ck_assert_uint_eq(rsdp, KL_ACPI_TABLES_ADDR);
	ck_assert_uint_eq(rsdp % 16, 0);
	uint8_t *r = gpa(rsdp, 36);
	ck_assert_mem_eq(r, "RSD PTR ", 8);
	ck_assert_uint_eq(sum(r, 20), 0);
	ck_assert_uint_eq(r[15], 2);
	ck_assert_uint_eq(rd32(r + 20), 36);
	ck_assert_uint_eq(sum(r, 36), 0);

	/* RSDT and XSDT list the same tables: FACP, APIC */
	uint8_t *rsdt = table(rd32(r + 16), "RSDT");
	uint8_t *xsdt = table(rd64(r + 24), "XSDT");
	ck_assert_uint_eq(rd32(rsdt + 4), 36 + 2 * 4);
	ck_assert_uint_eq(rd32(xsdt + 4), 36 + 2 * 8);
	for (unsigned i = 0; i < 2; i++)
		ck_assert_uint_eq(rd32(rsdt + 36 + 4 * i), rd64(xsdt + 36 + 8 * i));

	uint8_t *f = table(rd64(xsdt + 36), "FACP");
	ck_assert_uint_eq(rd32(f + 4), 276);
	ck_assert_uint_ge(f[8], 3);
	ck_assert_uint_eq(rd16(f + 46), KL_ACPI_SCI_IRQ);
	ck_assert_uint_eq(rd32(f + 48), 0);                 /* no SMI_CMD */
	ck_assert_uint_eq(rd32(f + 56), KL_ACPI_PM1A_EVT);
	ck_assert_uint_eq(rd32(f + 64), KL_ACPI_PM1A_CNT);
	ck_assert_uint_eq(f[88], 4);
	ck_assert_uint_eq(f[89], 2);
	ck_assert_uint_eq(rd32(f + 80), KL_ACPI_GPE0_BLK);  /* GPE0 block (PCI hot-plug) */
	ck_assert_uint_eq(f[92], KL_ACPI_GPE0_LEN);
	ck_assert_uint_eq(f[220], 1);                       /* X_GPE0_BLK: system I/O */
	ck_assert_uint_eq(rd64(f + 224), KL_ACPI_GPE0_BLK);
	uint32_t flags = rd32(f + 112);
	ck_assert_uint_eq(flags & (1u << 4), 0);            /* power button: fixed feature */
	ck_assert_uint_eq(flags & (1u << 20), 0);           /* not HW-reduced */
	ck_assert_uint_eq(f[148], 1);                       /* X_PM1a_EVT_BLK: system I/O */
	ck_assert_uint_eq(f[149], 32);
	ck_assert_uint_eq(rd64(f + 152), KL_ACPI_PM1A_EVT);
	ck_assert_uint_eq(f[172], 1);
	ck_assert_uint_eq(f[173], 16);
	ck_assert_uint_eq(rd64(f + 176), KL_ACPI_PM1A_CNT);
	ck_assert_uint_eq(rd32(f + 40), rd64(f + 140));     /* DSDT == X_DSDT */
	uint8_t *facs = gpa(rd32(f + 36), 64);
	ck_assert_mem_eq(facs, "FACS", 4);
	ck_assert_uint_eq(rd32(facs + 4), 64);
	ck_assert_uint_eq(rd32(f + 36) % 64, 0);

	uint8_t *d = table(rd64(f + 140), "DSDT");
	check_dsdt(d, rd32(d + 4));

	uint8_t *a = table(rd64(xsdt + 44), "APIC");
	ck_assert_uint_eq(rd32(a + 36), KL_LAPIC_BASE);
	uint32_t len = rd32(a + 4), off = 44;
	unsigned lapics = 0, ioapics = 0, isos = 0, nmis = 0;
	bool sci_ok = false, irq0_ok = false, pci_ok[2] = { false, false };
	while (off < len) {
		uint8_t *e = a + off;
		ck_assert_uint_ge(e[1], 2);
		ck_assert_uint_le(off + e[1], len);
		switch (e[0]) {
		case 0:
			ck_assert_uint_eq(e[1], 8);
			ck_assert_uint_eq(e[3], lapics);
			ck_assert_uint_eq(rd32(e + 4) & 1, 1);
			lapics++;
			break;
		case 1:
			ck_assert_uint_eq(e[1], 12);
			ck_assert_uint_eq(e[2], ncpus);
			ck_assert_uint_eq(rd32(e + 4), KL_IOAPIC_BASE);
			ck_assert_uint_eq(rd32(e + 8), 0);
			ioapics++;
			break;
		case 2:
			ck_assert_uint_eq(e[1], 10);
			if (e[3] == 0)
				irq0_ok = rd32(e + 4) == 2;
			if (e[3] == KL_ACPI_SCI_IRQ)
				sci_ok = rd32(e + 4) == KL_ACPI_SCI_IRQ && rd16(e + 8) == 0xd;
			if (e[3] == 10 || e[3] == 11)
				pci_ok[e[3] - 10] = rd32(e + 4) == e[3] && rd16(e + 8) == 0xd;
			isos++;
			break;
		case 4:
			ck_assert_uint_eq(e[1], 6);
			ck_assert_uint_eq(e[5], 1);
			nmis++;
			break;
		default:
			ck_abort_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	ck_assert_uint_eq(off, len);
	ck_assert_uint_eq(lapics, ncpus);
	ck_assert_uint_eq(ioapics, 1);
	ck_assert_uint_eq(isos, 4);
	ck_assert(pci_ok[0] && pci_ok[1]);
	ck_assert(irq0_ok);
	ck_assert(sci_ok);
	ck_assert_uint_eq(nmis, 1);

	/* ACPI area and MP area do not overlap: both can be written */
	ck_assert_int_eq(kl_mptable_write(&mem, ncpus, &err), 0);
	ck_assert_uint_eq(sum(gpa(rsdp, 36), 36), 0);
	ck_assert_mem_eq(gpa(rd64(xsdt + 44), 4), "APIC", 4);
}
END_TEST

/* CPU hot-plug (-smp 1,maxcpus=3): the MADT lists 3 LAPICs, only the first
 * enabled; the DSDT has \_SB.PCI0.PRES, \_SB.CPUS with C000..C002, CSCN,
 * and \_GPE._E02; without slots (0) none of it. */
START_TEST(test_acpi_cpuhp)
{
	char *err = NULL;
	uint64_t rsdp = 0;
	kl_acpi_set_cpu_slots(_i ? 3 : 0);
	ck_assert_int_eq(kl_acpi_write(&mem, 1, &rsdp, &err), 0);
	kl_acpi_set_cpu_slots(0);
	uint8_t *x = gpa(rd64(gpa(rsdp + 24, 8)), 52);
	uint8_t *madt = table(rd64(x + 44), "APIC");
	uint8_t *fadt = table(rd64(x + 36), "FACP");
	uint8_t *dsdt = table(rd32(fadt + 40), "DSDT");
	uint32_t mlen = rd32(madt + 4), dlen = rd32(dsdt + 4);
	unsigned n = 0, enabled = 0, ioapic_id = 0;
	for (uint32_t off = 44; off + 2 <= mlen; off += madt[off + 1]) {
		if (madt[off] == 0) {
			ck_assert_uint_eq(madt[off + 2], n);       /* UID */
			ck_assert_uint_eq(madt[off + 3], n);       /* APIC id */
			ck_assert_uint_eq(rd32(madt + off + 4), n == 0 ? 1 : 0);
			enabled += rd32(madt + off + 4) & 1;
			n++;
		} else if (madt[off] == 1) {
			ioapic_id = madt[off + 2];
		}
	}
	ck_assert_uint_eq(n, _i ? 3 : 1);
	ck_assert_uint_eq(enabled, 1);
	ck_assert_uint_eq(ioapic_id, n);
	const uint8_t *d = dsdt + 36, *end = dsdt + dlen;
	const char *names[] = { "CSCN", "CTFY", "CSTA", "C000", "C002", "PRES", "_E02", "CPEN" };
	for (unsigned i = 0; i < G_N_ELEMENTS(names); i++)
		ck_assert_msg((memmem(d, (size_t)(end - d), names[i], 4) != NULL) == (_i != 0),
			      "%s %s in the DSDT",
			      names[i], _i ? "missing" : "present");
	ck_assert_ptr_null(memmem(d, (size_t)(end - d), "C003", 4));
}
END_TEST

/* Cross-check with ACPICA (KVMLITE_IASL, from acpica-tools): every table
 * disassembles, and the disassembled DSDT compiles back without errors. */
static void run_iasl(const char *dir, const char *const *args, const char *what)
{
	const char *argv[8] = { getenv("KVMLITE_IASL") };
	unsigned i = 1;
	for (; args[i - 1]; i++)
		argv[i] = args[i - 1];
	argv[i] = NULL;
	gchar *out = NULL, *errs = NULL;
	gint status = -1;
	GError *ge = NULL;
	ck_assert_msg(g_spawn_sync(dir, (gchar **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
				   &errs, &status, &ge), "iasl: %s", ge ? ge->message : "?");
	ck_assert_msg(g_spawn_check_wait_status(status, NULL), "iasl %s failed:\n%s\n%s", what,
		      out, errs);
	ck_assert_msg(!strstr(out, "Error") || strstr(out, " 0 Errors"), "iasl %s: %s", what, out);
	g_free(out);
	g_free(errs);
}

START_TEST(test_acpi_iasl)
{
	char *err = NULL;
	uint64_t rsdp = 0;
	kl_acpi_set_cpu_slots(_i ? 6 : 0);  /* _i: CPU hot-plug, 4 of 6 slots present */
	ck_assert_int_eq(kl_acpi_write(&mem, 4, &rsdp, &err), 0);
	kl_acpi_set_cpu_slots(0);
	char *dir = g_dir_make_tmp("kvmlite-acpi-XXXXXX", NULL);
	ck_assert_ptr_nonnull(dir);
	uint8_t *x = gpa(rd64(gpa(rsdp + 24, 8)), 52);
	uint64_t fadt = rd64(x + 36), madt = rd64(x + 44);
	uint64_t dsdt = rd32(gpa(fadt + 40, 4));
	const struct { const char *name; uint64_t a; } t[] = {
		{ "facp", fadt }, { "apic", madt }, { "dsdt", dsdt }, { "xsdt", rd64(gpa(rsdp + 24, 8)) },
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(t); i++) {
		char *fn = g_strdup_printf("%s/%s.dat", dir, t[i].name);
		ck_assert(g_file_set_contents(fn, (const char *)gpa(t[i].a, 8),
					      rd32(gpa(t[i].a + 4, 4)), NULL));
		const char *args[] = { "-d", fn, NULL };
		run_iasl(dir, args, t[i].name);
		char *dsl = g_strdup_printf("%s/%s.dsl", dir, t[i].name);
		ck_assert_msg(g_file_test(dsl, G_FILE_TEST_EXISTS), "no %s", dsl);
		g_free(dsl);
		g_free(fn);
	}
	char *dsl = g_strdup_printf("%s/dsdt.dsl", dir);
	gchar *text = NULL;
	ck_assert(g_file_get_contents(dsl, &text, NULL, NULL));
	ck_assert_ptr_nonnull(strstr(text, "Name (_S5, Package (0x04)"));
	ck_assert_ptr_nonnull(strstr(text, "EisaId (\"PNP0A03\")"));
	ck_assert_ptr_nonnull(strstr(text, "Name (_PRT, Package (0x80)"));
	ck_assert_ptr_nonnull(strstr(text, "0xDFFFFFFF"));
	if (_i) {
		ck_assert_ptr_nonnull(strstr(text, "Processor (C005, 0x05"));
		ck_assert_ptr_nonnull(strstr(text, "Method (_E02, 0, NotSerialized)"));
		ck_assert_ptr_nonnull(strstr(text, "Method (CSCN, 0, Serialized)"));
		ck_assert_ptr_nonnull(strstr(text, "Device (\\_SB.PCI0.PRES)"));
	}
	g_free(text);
	const char *args[] = { "-p", "recompiled", dsl, NULL };
	run_iasl(dir, args, "compile dsdt.dsl");
	g_free(dsl);
	char *cmd = g_strdup_printf("rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
	g_free(cmd);
	g_free(dir);
}
END_TEST

/* -M microvm,acpi=on (src/hw/microvm_aml.c): no PCI root, one LNRO0005
 * device per transport in use with Memory32Fixed (base, 0x200) and a
 * level/active-high Interrupt of its GSI; with iasl the DSDT disassembles
 * to those and compiles back. */
START_TEST(test_acpi_microvm)
{
	struct kl_virtio_mmio_slots sl = { .base = 0xfeb00000, .count = 7,
					   .gsi = { 5, 6, 7, 12, 13, 14, 15 }, .used = 2 };
	char *err = NULL;
	uint64_t rsdp = 0;
	ck_assert_int_eq(kl_acpi_write_ex(&mem, 1, false, &sl, &rsdp, &err), 0);
	uint8_t *x = gpa(rd64(gpa(rsdp + 24, 8)), 52);
	uint64_t dsdt = rd32(gpa(rd64(x + 36) + 40, 4));
	uint8_t *d = table(dsdt, "DSDT");
	uint32_t len = rd32(d + 4);
	const uint8_t *end = d + len;
	ck_assert_ptr_null(memmem(d, len, "PCI0", 4));
	const uint8_t *p = d + 36;
	for (unsigned i = 0; i < 3; i++) {
		char name[5];
		snprintf(name, sizeof(name), "VR%02u", i);
		const uint8_t *v = memmem(d, len, name, 4);
		if (i == 2) {
			ck_assert_ptr_null(v);   /* slot 2 has no device */
			break;
		}
		ck_assert_ptr_nonnull(v);
		p = find(v, end, "LNRO0005\0", 9);
		uint8_t mem32[12] = { 0x86, 0x09, 0x00, 0x01 };
		uint32_t base = 0xfeb00000 + 0x200 * i;
		memcpy(mem32 + 4, &base, 4);
		memcpy(mem32 + 8, "\x00\x02\x00\x00", 4);
		p = find(p, end, (const char *)mem32, sizeof(mem32));
		uint8_t irq[9] = { 0x89, 0x06, 0x00, 0x01, 0x01, sl.gsi[i], 0, 0, 0 };
		find(p, end, (const char *)irq, sizeof(irq));
	}
	if (getenv("KVMLITE_IASL")) {
		char *dir = g_dir_make_tmp("kvmlite-acpi-XXXXXX", NULL);
		char *fn = g_strdup_printf("%s/dsdt.dat", dir), *dsl = g_strdup_printf("%s/dsdt.dsl", dir);
		ck_assert(g_file_set_contents(fn, (const char *)d, len, NULL));
		const char *args[] = { "-d", fn, NULL };
		run_iasl(dir, args, "dsdt");
		gchar *text = NULL;
		ck_assert(g_file_get_contents(dsl, &text, NULL, NULL));
		ck_assert_ptr_nonnull(strstr(text, "Device (VR01)"));
		ck_assert_ptr_nonnull(strstr(text, "Name (_HID, \"LNRO0005\")"));
		ck_assert_ptr_nonnull(strstr(text, "0xFEB00200"));
		ck_assert_ptr_nonnull(strstr(text, "Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive"));
		g_free(text);
		const char *args2[] = { "-p", "recompiled", dsl, NULL };
		run_iasl(dir, args2, "compile dsdt.dsl");
		char *cmd = g_strdup_printf("rm -rf '%s'", dir);
		ck_assert_int_eq(system(cmd), 0);
		g_free(cmd);
		g_free(fn);
		g_free(dsl);
		g_free(dir);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("boot_tables");
	TCase *tc = tcase_create("mptable");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_mptable, 0, 3);
	tcase_add_test(tc, test_mptable_errors);
	suite_add_tcase(s, tc);
	tc = tcase_create("acpi");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_acpi, 0, 3);
	tcase_add_loop_test(tc, test_acpi_cpuhp, 0, 2);
	tcase_add_test(tc, test_acpi_microvm);
	suite_add_tcase(s, tc);
	if (getenv("KVMLITE_IASL")) {
		tc = tcase_create("acpi_iasl");
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 60);
		tcase_add_loop_test(tc, test_acpi_iasl, 0, 2);
		suite_add_tcase(s, tc);
	}
	return kl_check_run(s);
}
