/* ACPI SRAT and SLIT for a guest with NUMA nodes (kvmlite/numa.h), written
 * by kl_acpi_write (acpi_tables.c) after the MADT, as QEMU's pc does
 * (hw/i386/acpi-build.c build_srat, hw/acpi/aml-build.c build_slit):
 *
 *   SRAT rev 1: 36-byte header, u32 1 (reserved, "table revision" in
 *     ACPI 1.0), u64 reserved; then one Processor Local APIC Affinity
 *     (type 0, 16 bytes) per CPU: proximity domain = its node, APIC id = CPU
 *     index (the MADT's), flags enabled; then Memory Affinity (type 1, 40
 *     bytes, flags enabled) ranges of each node with memory.  A node's
 *     memory is its span of guest RAM (nodes in id order, kvmlite/numa.h)
 *     mapped through the RAM regions of kvmlite/mem.h (so a node crossing
 *     the PCI hole gets a range below it and one from 4 GiB), without the
 *     legacy hole 640 KiB..1 MiB (QEMU: 0..640K, then from 1 MiB).
 *   SLIT rev 1 (only when -numa dist was given, as QEMU): u64 number of
 *     localities N, N*N bytes of distances, row = source node.
 */
#include "boot_priv.h"
#include "kvmlite/numa.h"

#include <glib.h>
#include <string.h>

#define HDR 36
#define SRAT_HDR (HDR + 12)
#define SRAT_CPU_LEN 16
#define SRAT_MEM_LEN 40
#define LEGACY_HOLE_START 0xa0000ULL
#define LEGACY_HOLE_END 0x100000ULL

static const struct kl_numa *acpi_numa;

void kl_acpi_set_numa(const struct kl_numa *n)
{
	acpi_numa = n && n->nnodes ? n : NULL;
}

static void add_range(struct kl_acpi_mem_range *out, unsigned *cnt, unsigned max, unsigned node,
		      uint64_t a, uint64_t e)
{
	if (e <= a || *cnt >= max)
		return;
	out[*cnt].node = node;
	out[*cnt].base = a;
	out[*cnt].len = e - a;
	(*cnt)++;
}

unsigned kl_acpi_numa_mem_ranges(const struct kl_numa *n, const struct kl_guest_mem *m,
				 struct kl_acpi_mem_range *out, unsigned max)
{
	/* the RAM regions in guest-physical order = guest RAM in layout order */
	unsigned idx[KL_MAX_MEM_REGIONS], nr = m->nregions;
	for (unsigned i = 0; i < nr; i++)
		idx[i] = i;
	for (unsigned i = 1; i < nr; i++)
		for (unsigned j = i; j > 0 && m->regions[idx[j]].gpa < m->regions[idx[j - 1]].gpa; j--) {
			unsigned t = idx[j];
			idx[j] = idx[j - 1];
			idx[j - 1] = t;
		}
	unsigned cnt = 0;
	for (unsigned node = 0; node < n->nnodes; node++) {
		uint64_t lo = n->node[node].ram_offset, hi = lo + n->node[node].size, lin = 0;
		for (unsigned k = 0; k < nr && lo < hi; k++) {
			const struct kl_mem_region *r = &m->regions[idx[k]];
			uint64_t s = lo > lin ? lo : lin, e = hi < lin + r->size ? hi : lin + r->size;
			if (s < e) {
				uint64_t a = r->gpa + (s - lin), b = r->gpa + (e - lin);
				/* cut out the legacy hole */
				add_range(out, &cnt, max, node, a, b < LEGACY_HOLE_START ? b : LEGACY_HOLE_START);
				add_range(out, &cnt, max, node, a > LEGACY_HOLE_END ? a : LEGACY_HOLE_END, b);
			}
			lin += r->size;
		}
	}
	return cnt;
}

static unsigned max_ranges(const struct kl_numa *n, const struct kl_guest_mem *m)
{
	return n->nnodes * (m->nregions + 1);
}

static size_t slit_len(const struct kl_numa *n)
{
	return n->have_dist ? HDR + 8 + (size_t)n->nnodes * n->nnodes : 0;
}

size_t kl_acpi_numa_len(const struct kl_guest_mem *m, unsigned ncpus)
{
	const struct kl_numa *n = acpi_numa;
	if (!n)
		return 0;
	size_t srat = SRAT_HDR + (size_t)SRAT_CPU_LEN * ncpus + (size_t)SRAT_MEM_LEN * max_ranges(n, m);
	return ((srat + 15) & ~(size_t)15) + slit_len(n);
}

unsigned kl_acpi_numa_write(uint8_t *b, const struct kl_guest_mem *m, unsigned ncpus,
			    uint32_t off[2])
{
	const struct kl_numa *n = acpi_numa;
	if (!n)
		return 0;
	unsigned maxr = max_ranges(n, m);
	struct kl_acpi_mem_range *r = g_new0(struct kl_acpi_mem_range, maxr);
	unsigned nr = kl_acpi_numa_mem_ranges(n, m, r, maxr);
	uint32_t srat_len = SRAT_HDR + SRAT_CPU_LEN * ncpus + SRAT_MEM_LEN * nr;
	uint8_t *t = b, *p = t + SRAT_HDR;
	kl_acpi_header(t, "SRAT", srat_len, 1);
	kl_put32(t + HDR, 1);                           /* reserved (table revision) */
	for (unsigned i = 0; i < ncpus; i++, p += SRAT_CPU_LEN) {
		uint32_t node = i < n->ncpus && n->cpu_node[i] >= 0 ? (uint32_t)n->cpu_node[i] : 0;
		p[0] = 0;                               /* Processor Local APIC Affinity */
		p[1] = SRAT_CPU_LEN;
		p[2] = (uint8_t)node;                   /* proximity domain [7:0] */
		p[3] = (uint8_t)i;                      /* APIC id */
		kl_put32(p + 4, 1);                     /* enabled */
		p[8] = 0;                               /* local SAPIC EID */
		p[9] = (uint8_t)(node >> 8);            /* proximity domain [31:8] */
		p[10] = (uint8_t)(node >> 16);
		p[11] = (uint8_t)(node >> 24);
		kl_put32(p + 12, 0);                    /* clock domain */
	}
	for (unsigned i = 0; i < nr; i++, p += SRAT_MEM_LEN) {
		p[0] = 1;                               /* Memory Affinity */
		p[1] = SRAT_MEM_LEN;
		kl_put32(p + 2, r[i].node);             /* proximity domain */
		kl_put64(p + 8, r[i].base);
		kl_put64(p + 16, r[i].len);
		kl_put32(p + 28, 1);                    /* enabled */
	}
	kl_acpi_finish(t);
	g_free(r);
	off[0] = 0;
	if (!n->have_dist)
		return 1;
	uint32_t so = (srat_len + 15) & ~15u;
	uint8_t *s = b + so;
	kl_acpi_header(s, "SLIT", (uint32_t)slit_len(n), 1);
	kl_put64(s + HDR, n->nnodes);
	for (unsigned i = 0; i < n->nnodes; i++)
		for (unsigned j = 0; j < n->nnodes; j++)
			s[HDR + 8 + i * n->nnodes + j] = n->dist[i][j] ? n->dist[i][j]
					: (i == j ? KL_NUMA_DISTANCE_MIN : KL_NUMA_DISTANCE_DEFAULT);
	kl_acpi_finish(s);
	off[1] = so;
	return 2;
}
