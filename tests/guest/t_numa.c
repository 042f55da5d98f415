/* Probe test `numa`: the guest's ACPI SRAT (and SLIT) against what the
 * command line asked for.  Command line (the VMM's -numa options must match):
 *   cpunode=A,B,...   node of CPU 0, 1, ... (APIC id = CPU index; every
 *                     enabled MADT processor must have an SRAT entry)
 *   nodemb=X,Y,...    memory of node 0, 1, ... in MiB, laid out in node
 *                     order from 0 (as QEMU and kvmlite place memdevs)
 *   dist=a,b,...      the SLIT's N*N matrix, row = source; without it
 *                     there must be no SLIT (QEMU builds one only for
 *                     -numa dist)
 * Checks: SRAT checksum (acpi_find_table) and length, every entry's length,
 * one enabled processor entry per CPU with the right proximity domain, the
 * enabled memory ranges of each node: ascending, not overlapping, each
 * starting in a RAM entry of the PVH memory map (or in [0, 640 KiB)), adding
 * up to the node's size less the legacy hole 640 KiB..1 MiB. */
#include "probe.h"

#define MAXN 16
#define MIB (1024ull * 1024)

static uint32_t r32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t r64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* "1,2,3" -> values; returns the count (at most max) */
static unsigned num_list(const char *key, uint64_t *out, unsigned max)
{
	char v[128];
	if (!probe_cmdline_get(key, v, sizeof(v)))
		return 0;
	unsigned n = 0;
	const char *p = v;
	while (*p && n < max) {
		uint64_t x = 0;
		while (*p >= '0' && *p <= '9')
			x = x * 10 + (uint64_t)(*p++ - '0');
		out[n++] = x;
		if (*p != ',')
			break;
		p++;
	}
	return n;
}

/* [a, e) starts in a RAM entry of the PVH memory map (or is in the base
 * 640 KiB, whose last KiB is the e820-reserved EBDA).  Only its start: the
 * firmware under QEMU reserves pages at the top of RAM for itself. */
static bool in_ram(uint64_t a, uint64_t e)
{
	if (e <= 0xa0000)
		return true;
	const struct hvm_memmap_entry *m =
		(const struct hvm_memmap_entry *)(uintptr_t)probe_boot_info->memmap_paddr;
	for (uint32_t i = 0; i < probe_boot_info->memmap_entries; i++)
		if (m[i].type == HVM_MEMMAP_RAM && a >= m[i].addr && a < m[i].addr + m[i].size)
			return true;
	return false;
}

/* Enabled processors of the MADT (type 0 local APIC, type 9 x2APIC). */
static int madt_cpus(unsigned *n)
{
	const uint8_t *m = acpi_find_table("APIC");
	if (!m)
		return probe_fail("no MADT");
	uint32_t len = r32(m + 4);
	*n = 0;
	for (uint32_t off = 44; off + 2 <= len;) {
		if (m[off + 1] < 2 || off + m[off + 1] > len)
			return probe_fail("MADT entry at %u: bad length", off);
		if ((m[off] == 0 && (r32(m + off + 4) & 1)) || (m[off] == 9 && (r32(m + off + 8) & 1)))
			(*n)++;
		off += m[off + 1];
	}
	return 0;
}

static uint64_t overlap(uint64_t a, uint64_t e, uint64_t b, uint64_t f)
{
	uint64_t lo = a > b ? a : b, hi = e < f ? e : f;
	return hi > lo ? hi - lo : 0;
}

static int t_numa(void)
{
	uint64_t cpunode[64], nodemb[MAXN], dist[MAXN * MAXN];
	unsigned ncpu = num_list("cpunode", cpunode, 64), nn = num_list("nodemb", nodemb, MAXN);
	unsigned nd = num_list("dist", dist, MAXN * MAXN);
	if (!ncpu || !nn)
		return probe_fail("cpunode= and nodemb= are required");
	unsigned madt = 0;
	if (madt_cpus(&madt) < 0)
		return -1;
	if (madt != ncpu)
		return probe_fail("%u CPUs in the MADT, cpunode= lists %u", madt, ncpu);

	const uint8_t *s = acpi_find_table("SRAT");
	if (!s)
		return probe_fail("no SRAT");
	uint32_t len = r32(s + 4);
	if (len < 48)
		return probe_fail("SRAT length %u", len);
	uint64_t seen_cpu = 0, got[MAXN] = { 0 }, last_end = 0;
	unsigned last_node = 0, nmem = 0;
	for (uint32_t off = 48; off < len;) {
		const uint8_t *e = s + off;
		if (off + 2 > len || e[1] < 2 || off + e[1] > len)
			return probe_fail("SRAT entry at %u: bad length %u", off, e[1]);
		if (e[0] == 0) {   /* processor local APIC affinity */
			if (e[1] != 16)
				return probe_fail("SRAT processor entry length %u", e[1]);
			uint32_t dom = e[2] | (uint32_t)e[9] << 8 | (uint32_t)e[10] << 16 |
				       (uint32_t)e[11] << 24;
			unsigned apic = e[3];
			if (r32(e + 4) & 1) {
				if (apic >= ncpu)
					return probe_fail("SRAT: enabled APIC id %u, only %u CPUs", apic, ncpu);
				if (seen_cpu & (1ull << apic))
					return probe_fail("SRAT: APIC id %u twice", apic);
				seen_cpu |= 1ull << apic;
				if (dom != cpunode[apic])
					return probe_fail("SRAT: APIC id %u in domain %u, expected %u", apic,
							  dom, (unsigned)cpunode[apic]);
			}
		} else if (e[0] == 1) {   /* memory affinity */
			if (e[1] != 40)
				return probe_fail("SRAT memory entry length %u", e[1]);
			uint32_t dom = r32(e + 2);
			uint64_t base = r64(e + 8), l = r64(e + 16);
			if (!(r32(e + 28) & 1) || !l)
				goto next;   /* QEMU adds disabled hot-plug entries */
			if (dom >= nn)
				return probe_fail("SRAT: memory in domain %u, only %u nodes", dom, nn);
			if (nmem && (dom < last_node || base < last_end))
				return probe_fail("SRAT: range 0x%lx+0x%lx (node %u) out of order",
						  (unsigned long)base, (unsigned long)l, dom);
			if (!in_ram(base, base + l))
				return probe_fail("SRAT: range 0x%lx+0x%lx (node %u) is not RAM",
						  (unsigned long)base, (unsigned long)l, dom);
			printf("numa: SRAT node %u [0x%lx-0x%lx]\n", dom, (unsigned long)base,
			       (unsigned long)(base + l - 1));
			got[dom] += l;
			last_node = dom;
			last_end = base + l;
			nmem++;
		}
next:
		off += e[1];
	}
	if (seen_cpu != (ncpu == 64 ? ~0ull : (1ull << ncpu) - 1))
		return probe_fail("SRAT: CPUs without an entry (mask 0x%lx)", (unsigned long)seen_cpu);
	uint64_t lin = 0;
	for (unsigned i = 0; i < nn; i++) {
		uint64_t want = nodemb[i] * MIB - overlap(lin, lin + nodemb[i] * MIB, 0xa0000, 0x100000);
		if (got[i] != want)
			return probe_fail("SRAT: node %u has 0x%lx bytes, expected 0x%lx", i,
					  (unsigned long)got[i], (unsigned long)want);
		lin += nodemb[i] * MIB;
	}

	const uint8_t *sl = acpi_find_table("SLIT");
	if (!nd) {
		if (sl)
			return probe_fail("a SLIT without -numa dist");
		printf("PROBE numa: %u CPUs, %u nodes, %u memory ranges, no SLIT\n", ncpu, nn, nmem);
		return 0;
	}
	if (!sl)
		return probe_fail("no SLIT");
	uint64_t loc = r64(sl + 36);
	if (loc != nn || r32(sl + 4) != 44 + nn * nn || nd != nn * nn)
		return probe_fail("SLIT: %lu localities, length %u (expected %u nodes)",
				  (unsigned long)loc, r32(sl + 4), nn);
	for (unsigned i = 0; i < nn * nn; i++)
		if (sl[44 + i] != dist[i])
			return probe_fail("SLIT[%u][%u] = %u, expected %u", i / nn, i % nn, sl[44 + i],
					  (unsigned)dist[i]);
	printf("PROBE numa: %u CPUs, %u nodes, %u memory ranges, SLIT %ux%u\n", ncpu, nn, nmem, nn,
	       nn);
	return 0;
}
PROBE_TEST(numa, t_numa);
