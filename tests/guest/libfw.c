/* Probe guest: firmware tables - ACPI RSDP/RSDT/XSDT/MADT and the Intel
 * MultiProcessor table. */
#include "probe.h"

uint8_t checksum8(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	for (size_t i = 0; i < len; i++)
		s = (uint8_t)(s + b[i]);
	return s;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Pointer to low physical memory, hidden from the compiler's bounds
 * checks (GCC treats constant addresses below 4 KiB as invalid). */
static const uint8_t *phys(uint64_t a)
{
	__asm__("" : "+r"(a));
	return (const uint8_t *)(uintptr_t)a;
}

/* EBDA segment from the BIOS data area, if it looks sane. */
static uint64_t ebda_base(void)
{
	uint64_t e = (uint64_t)rd16(phys(0x40e)) << 4;

	return (e >= 0x80000 && e < 0xa0000) ? e : 0;
}

static bool rsdp_valid(const uint8_t *p)
{
	if (memcmp(p, "RSD PTR ", 8) || checksum8(p, 20))
		return false;
	if (p[15] >= 2 && (rd32(p + 20) < 36 || rd32(p + 20) > 4096 ||
			   checksum8(p, rd32(p + 20))))
		return false;
	return true;
}

/* 16-byte aligned scan; sig4 (first four bytes, little endian) filters
 * cheaply before ok() validates (each guest instruction is emulated). */
static const void *scan16(uint64_t start, uint64_t end, uint32_t sig4,
			  bool (*ok)(const uint8_t *))
{
	for (uint64_t a = start; a + 16 <= end; a += 16)
		if (*(const volatile uint32_t *)phys(a) == sig4 && ok(phys(a)))
			return phys(a);
	return NULL;
}

#define SIG_RSDP 0x20445352u  /* "RSD " */
#define SIG_MP 0x5f504d5fu    /* "_MP_" */

const void *acpi_find_rsdp(void)
{
	const void *r;
	uint64_t e;

	if (probe_boot_info && probe_boot_info->rsdp_paddr) {
		r = (const void *)(uintptr_t)probe_boot_info->rsdp_paddr;
		if (rsdp_valid(r))
			return r;
		printf("probe: hvm_start_info.rsdp_paddr 0x%lx has no valid RSDP\n",
		       probe_boot_info->rsdp_paddr);
	}
	e = ebda_base();
	if (e && (r = scan16(e, e + 1024, SIG_RSDP, rsdp_valid)))
		return r;
	return scan16(0xe0000, 0x100000, SIG_RSDP, rsdp_valid);
}

static const uint8_t *sdt_ok(uint64_t pa, const char *sig)
{
	const uint8_t *t = (const uint8_t *)(uintptr_t)pa;
	uint32_t len;

	if (!pa || pa >= (8ull << 30))
		return NULL;
	len = rd32(t + 4);
	if (len < 36 || len > (1u << 20))
		return NULL;
	if (sig && memcmp(t, sig, 4))
		return NULL;
	if (checksum8(t, len)) {
		char name[5] = { (char)t[0], (char)t[1], (char)t[2], (char)t[3], 0 };
		printf("probe: ACPI table %s at 0x%lx: bad checksum\n", name, pa);
		return NULL;
	}
	return t;
}

/* The FADT's GPE0 block: STS at *sts, EN at *en (the block's second half);
 * 0, or -1 after probe_fail() when there is no FADT or no block of >= 4. */
int acpi_gpe0_block(uint16_t *sts, uint16_t *en)
{
	const uint8_t *fadt = acpi_find_table("FACP");
	if (!fadt)
		return probe_fail("no FADT");
	uint32_t blk = fadt[80] | fadt[81] << 8 | fadt[82] << 16 | (uint32_t)fadt[83] << 24;
	uint8_t len = fadt[92];
	if (!blk || len < 4)
		return probe_fail("FADT: GPE0_BLK 0x%x length %u (want a block of >= 4)", blk, len);
	*sts = (uint16_t)blk;
	*en = (uint16_t)(blk + len / 2);
	return 0;
}

const void *acpi_find_table(const char sig[4])
{
	const uint8_t *rsdp = acpi_find_rsdp(), *root;
	unsigned esz;

	if (!rsdp)
		return NULL;
	if (rsdp[15] >= 2 && rd64(rsdp + 24)) {
		root = sdt_ok(rd64(rsdp + 24), "XSDT");
		esz = 8;
	} else {
		root = sdt_ok(rd32(rsdp + 16), "RSDT");
		esz = 4;
	}
	if (!root)
		return NULL;
	for (uint32_t off = 36; off + esz <= rd32(root + 4); off += esz) {
		uint64_t pa = esz == 8 ? rd64(root + off) : rd32(root + off);
		const uint8_t *t = sdt_ok(pa, NULL);
		if (t && !memcmp(t, sig, 4))
			return t;
	}
	return NULL;
}

static bool mpfp_valid(const uint8_t *p)
{
	return !memcmp(p, "_MP_", 4) && p[8] >= 1 && p[8] <= 4 && !checksum8(p, p[8] * 16u);
}

const void *mp_find_fp(void)
{
	const void *r;
	uint64_t e = ebda_base();
	uint64_t basemem = (uint64_t)rd16(phys(0x413)) * 1024;

	if (e && (r = scan16(e, e + 1024, SIG_MP, mpfp_valid)))
		return r;
	if (basemem >= 0x80000 && basemem <= 0xa0000 &&
	    (r = scan16(basemem - 1024, basemem, SIG_MP, mpfp_valid)))
		return r;
	if ((r = scan16(0x9fc00, 0xa0000, SIG_MP, mpfp_valid)))
		return r;
	return scan16(0xf0000, 0x100000, SIG_MP, mpfp_valid);
}

static void add_cpu(struct probe_cpus *c, uint32_t id)
{
	if (c->count < PROBE_MAX_CPUS)
		c->apic_id[c->count] = id;
	c->count++;
}

static int cpus_from_madt(struct probe_cpus *out)
{
	const uint8_t *m = acpi_find_table("APIC");
	uint32_t len;

	if (!m)
		return -1;
	len = rd32(m + 4);
	memset(out, 0, sizeof(*out));
	out->source = "ACPI MADT";
	for (uint32_t off = 44; off + 2 <= len;) {
		uint8_t type = m[off], elen = m[off + 1];
		if (elen < 2 || off + elen > len)
			return probe_fail("MADT entry at offset %u has bad length %u", off, elen);
		if (type == 0 && elen >= 8 && (rd32(m + off + 4) & 1))
			add_cpu(out, m[off + 3]);
		else if (type == 9 && elen >= 16 && (rd32(m + off + 8) & 1))
			add_cpu(out, rd32(m + off + 4));
		off += elen;
	}
	return 0;
}

static int cpus_from_mptable(struct probe_cpus *out)
{
	const uint8_t *fp = mp_find_fp(), *ct;
	uint16_t blen, n;

	if (!fp)
		return -1;
	memset(out, 0, sizeof(*out));
	out->source = "MP table";
	if (!rd32(fp + 4)) {
		if (!fp[11])
			return probe_fail("MP floating pointer at %p: no table, no default config", fp);
		add_cpu(out, 0);  /* default configurations have two CPUs */
		add_cpu(out, 1);
		return 0;
	}
	ct = (const uint8_t *)(uintptr_t)rd32(fp + 4);
	if (memcmp(ct, "PCMP", 4))
		return probe_fail("MP config table at %p: bad signature", ct);
	blen = rd16(ct + 4);
	if (blen < 44 || checksum8(ct, blen))
		return probe_fail("MP config table at %p: bad length %u or checksum", ct, blen);
	/* Walk by the base table length; the entry count bounds the walk when
	 * set (some firmware, e.g. qboot, leaves it 0). */
	n = rd16(ct + 34);
	for (uint32_t off = 44, i = 0; off < blen && (!n || i < n); i++) {
		uint8_t type = ct[off];
		unsigned elen = type == 0 ? 20 : 8;
		if (type > 4 || off + elen > blen)
			return probe_fail("MP config table: entry %u (type %u) overruns the table", i, type);
		if (type == 0 && (ct[off + 3] & 1))
			add_cpu(out, ct[off + 1]);
		off += elen;
	}
	return 0;
}

int probe_find_cpus(struct probe_cpus *out)
{
	struct probe_cpus mp;
	int ra, rm;

	ra = cpus_from_madt(out);
	rm = cpus_from_mptable(&mp);
	if (ra && rm)
		return probe_fail("no ACPI MADT (RSDP %s) and no MP table found",
				  acpi_find_rsdp() ? "present" : "absent");
	if (ra) {
		*out = mp;
		return 0;
	}
	if (!rm && mp.count != out->count)
		return probe_fail("ACPI MADT lists %u CPUs but the MP table %u", out->count, mp.count);
	return 0;
}
