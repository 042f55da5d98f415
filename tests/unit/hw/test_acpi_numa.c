/* Unit tests for the ACPI SRAT and SLIT (src/hw/acpi_numa.c) as
 * kl_acpi_write lays them out: found through RSDP -> XSDT and RSDT,
 * checksums, lengths, every entry parsed back, memory ranges covering guest
 * RAM exactly (less the legacy 640 KiB..1 MiB hole), the PCI-hole split. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <string.h>

#include "kvmlite/boot.h"
#include "kvmlite/mem.h"
#include "kvmlite/numa.h"

#define MIB (1024 * 1024ULL)
#define GIB (1024 * MIB)
#define RAM_SIZE (4 * MIB)

static struct kl_guest_mem mem;
static uint8_t *ram;
static struct kl_numa numa;

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static void setup(void)
{
	ram = g_malloc0(RAM_SIZE);
	kl_mem_init_empty(&mem);
	ck_assert_int_eq(kl_mem_add_region(&mem, 0, RAM_SIZE, ram), 0);
	memset(&numa, 0, sizeof(numa));
}

static void teardown(void)
{
	kl_acpi_set_numa(NULL);
	g_free(ram);
}

/* nodes of the given sizes, in order; CPU i on node cpu_node[i] */
static void config(unsigned nnodes, const uint64_t *size, unsigned ncpus, const int *cpu_node)
{
	uint64_t off = 0;
	numa.nnodes = numa.max_nodeid = nnodes;
	for (unsigned i = 0; i < nnodes; i++) {
		numa.node[i].present = true;
		numa.node[i].size = size[i];
		numa.node[i].ram_offset = off;
		off += size[i];
	}
	numa.ncpus = ncpus;
	numa.cores = numa.threads = 1;
	for (unsigned i = 0; i < ncpus; i++)
		numa.cpu_node[i] = cpu_node[i];
}

/* The table with signature sig through the XSDT (and the same address in
 * the RSDT); NULL when absent.  Checks the root tables' checksums. */
static const uint8_t *find(const char *sig)
{
	const uint8_t *r = ram + KL_ACPI_TABLES_ADDR;
	ck_assert_mem_eq(r, "RSD PTR ", 8);
	const uint8_t *x = ram + rd64(r + 24), *rs = ram + rd32(r + 16);
	ck_assert_mem_eq(x, "XSDT", 4);
	ck_assert_uint_eq(sum(x, rd32(x + 4)), 0);
	ck_assert_uint_eq(sum(rs, rd32(rs + 4)), 0);
	unsigned nx = (rd32(x + 4) - 36) / 8, nr = (rd32(rs + 4) - 36) / 4;
	ck_assert_uint_eq(nx, nr);
	const uint8_t *found = NULL;
	for (unsigned i = 0; i < nx; i++) {
		uint64_t a = rd64(x + 36 + 8 * i);
		ck_assert_uint_eq(a, rd32(rs + 36 + 4 * i));
		ck_assert_uint_lt(a, RAM_SIZE);
		const uint8_t *t = ram + a;
		if (!memcmp(t, sig, 4)) {
			ck_assert_ptr_null(found);   /* once */
			found = t;
		}
	}
	if (found) {
		ck_assert_uint_eq(sum(found, rd32(found + 4)), 0);
		ck_assert_uint_le(found - ram + rd32(found + 4), KL_ACPI_TABLES_END);
	}
	return found;
}

struct range { unsigned node; uint64_t base, len; };

/* Parse the SRAT: CPU domains into dom[], memory ranges into r[]; returns
 * the number of ranges. */
static unsigned parse_srat(const uint8_t *s, unsigned ncpus, unsigned *dom, struct range *r,
			   unsigned max)
{
	ck_assert_uint_eq(s[8], 1);             /* revision */
	ck_assert_uint_eq(rd32(s + 36), 1);     /* reserved: 1 as QEMU */
	uint32_t len = rd32(s + 4);
	unsigned cpus = 0, nr = 0;
	for (uint32_t off = 48; off < len;) {
		const uint8_t *e = s + off;
		ck_assert_uint_ge(e[1], 2);
		ck_assert_uint_le(off + e[1], len);
		if (e[0] == 0) {
			ck_assert_uint_eq(e[1], 16);
			ck_assert_uint_eq(rd32(e + 4), 1);     /* enabled */
			ck_assert_uint_eq(e[3], cpus);         /* APIC ids in order, = MADT */
			dom[cpus++] = e[2] | (unsigned)e[9] << 8 | (unsigned)e[10] << 16 |
				      (unsigned)e[11] << 24;
		} else {
			ck_assert_uint_eq(e[0], 1);
			ck_assert_uint_eq(e[1], 40);
			ck_assert_uint_eq(rd32(e + 28), 1);    /* enabled */
			ck_assert_uint_lt(nr, max);
			r[nr].node = rd32(e + 2);
			r[nr].base = rd64(e + 8);
			r[nr].len = rd64(e + 16);
			nr++;
		}
		off += e[1];
	}
	ck_assert_uint_eq(cpus, ncpus);
	ck_assert_uint_eq(len, 48 + 16 * ncpus + 40 * nr);
	return nr;
}

START_TEST(test_no_numa)
{
	char *err = NULL;
	uint64_t rsdp;
	kl_acpi_set_numa(NULL);
	ck_assert_int_eq(kl_acpi_write(&mem, 2, &rsdp, &err), 0);
	ck_assert_ptr_null(find("SRAT"));
	ck_assert_ptr_null(find("SLIT"));
	ck_assert_ptr_nonnull(find("APIC"));
	ck_assert_ptr_nonnull(find("FACP"));
}
END_TEST

START_TEST(test_srat)
{
	static const uint64_t size[2] = { 2 * MIB, 2 * MIB };
	static const int cpu_node[3] = { 0, 1, 1 };
	config(2, size, 3, cpu_node);
	kl_acpi_set_numa(&numa);
	char *err = NULL;
	uint64_t rsdp;
	ck_assert_int_eq(kl_acpi_write(&mem, 3, &rsdp, &err), 0);
	ck_assert_ptr_nonnull(find("APIC"));
	const uint8_t *s = find("SRAT");
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_null(find("SLIT"));   /* only with -numa dist, as QEMU */
	unsigned dom[3];
	struct range r[8];
	unsigned nr = parse_srat(s, 3, dom, r, 8);
	for (unsigned i = 0; i < 3; i++)
		ck_assert_uint_eq(dom[i], (unsigned)cpu_node[i]);
	static const struct range want[] = {
		{ 0, 0, 0xa0000 }, { 0, 0x100000, MIB }, { 1, 2 * MIB, 2 * MIB },
	};
	ck_assert_uint_eq(nr, 3);
	for (unsigned i = 0; i < nr; i++) {
		ck_assert_uint_eq(r[i].node, want[i].node);
		ck_assert_uint_eq(r[i].base, want[i].base);
		ck_assert_uint_eq(r[i].len, want[i].len);
	}
}
END_TEST

START_TEST(test_slit)
{
	static const uint64_t size[3] = { 2 * MIB, MIB, MIB };
	static const int cpu_node[4] = { 2, 0, 1, 0 };
	config(3, size, 4, cpu_node);
	static const uint8_t d[3][3] = { { 10, 21, 31 }, { 21, 10, 41 }, { 31, 41, 10 } };
	numa.have_dist = true;
	for (unsigned i = 0; i < 3; i++)
		for (unsigned j = 0; j < 3; j++)
			numa.dist[i][j] = d[i][j];
	kl_acpi_set_numa(&numa);
	char *err = NULL;
	uint64_t rsdp;
	ck_assert_int_eq(kl_acpi_write(&mem, 4, &rsdp, &err), 0);
	const uint8_t *s = find("SRAT"), *l = find("SLIT");
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(l);
	unsigned dom[4];
	struct range r[8];
	unsigned nr = parse_srat(s, 4, dom, r, 8);
	ck_assert_uint_eq(nr, 4);
	ck_assert_uint_eq(dom[0], 2);
	ck_assert_uint_eq(dom[2], 1);
	ck_assert_uint_eq(r[3].node, 2);
	ck_assert_uint_eq(r[3].base, 3 * MIB);
	ck_assert_uint_eq(l[8], 1);
	ck_assert_uint_eq(rd32(l + 4), 44 + 9);
	ck_assert_uint_eq(rd64(l + 36), 3);
	for (unsigned i = 0; i < 3; i++)
		for (unsigned j = 0; j < 3; j++)
			ck_assert_uint_eq(l[44 + 3 * i + j], d[i][j]);
}
END_TEST

/* The layout of kvmlite/mem.h with 5 GiB: [0, 3 GiB) and [4 GiB, 6 GiB);
 * nodes of 2 GiB, 3 GiB and none: node 1 is split by the PCI hole, the
 * ranges cover RAM exactly. */
START_TEST(test_ranges_pci_hole)
{
	struct kl_guest_mem big;
	kl_mem_init_empty(&big);
	/* the regions are only described here, never accessed: no host memory */
	ck_assert_int_eq(kl_mem_add_region(&big, KL_4G, 2 * GIB, ram), 0);  /* out of order */
	ck_assert_int_eq(kl_mem_add_region(&big, 0, KL_PCI_HOLE_START, ram), 0);
	static const uint64_t size[3] = { 2 * GIB, 3 * GIB, 0 };
	static const int cpu_node[1] = { 0 };
	config(3, size, 1, cpu_node);
	struct kl_acpi_mem_range r[16];
	unsigned n = kl_acpi_numa_mem_ranges(&numa, &big, r, 16);
	static const struct kl_acpi_mem_range want[] = {
		{ 0, 0, 0xa0000 }, { 0, 0x100000, 2 * GIB - 0x100000 },
		{ 1, 2 * GIB, GIB }, { 1, KL_4G, 2 * GIB },
	};
	ck_assert_uint_eq(n, 4);
	uint64_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		ck_assert_uint_eq(r[i].node, want[i].node);
		ck_assert_uint_eq(r[i].base, want[i].base);
		ck_assert_uint_eq(r[i].len, want[i].len);
		total += r[i].len;
	}
	ck_assert_uint_eq(total, big.ram_size - (0x100000 - 0xa0000));
	/* max bounds the output */
	ck_assert_uint_eq(kl_acpi_numa_mem_ranges(&numa, &big, r, 2), 2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("acpi_numa");
	TCase *tc = tcase_create("acpi_numa");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_no_numa);
	tcase_add_test(tc, test_srat);
	tcase_add_test(tc, test_slit);
	tcase_add_test(tc, test_ranges_pci_hole);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
