/* CPUID topology fix-ups for each vCPU. */
#include "kvmlite/cpu.h"

#include <stdint.h>

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

/* Topology: one socket, ncpus cores, one thread per core; APIC id = index. */
void kl_cpuid_fix_topology(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus)
{
	unsigned shift = bits_for(ncpus);
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffff) | ((ncpus & 0xff) << 16) | (index << 24);
			if (ncpus > 1)
				e->edx |= 1u << 28; /* HTT: more than one logical CPU */
			else
				e->edx &= ~(1u << 28);
			e->ecx |= 1u << 31; /* hypervisor present */
			break;
		case 4:
			if ((e->eax & 0x1f) != 0) { /* valid cache level */
				uint32_t cores = (1u << shift) - 1;
				e->eax = (e->eax & 0x3fff) | (cores << 26); /* no sharing threads */
			}
			break;
		case 0xb:
		case 0x1f:
			e->edx = index;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = shift;
				e->ebx = ncpus;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x8000001e:        /* AMD: extended APIC id, core id, node id */
			e->eax = index;
			e->ebx = index & 0xff;  /* one thread per core: bits 15:8 = 0 */
			e->ecx = 0;             /* node 0, one node per processor */
			break;
		case 0x80000026:        /* AMD extended topology: EDX = x2APIC id */
			e->edx = index;
			break;
		default:
			break;
		}
	}
}

/* ---- the host's view (hosts whose guests read the host's CPUID) --------
 * On a PVM host the guest's CPUID instruction returns the host's values
 * whatever KVM_SET_CPUID2 holds (docs/cpu.md), while KVM still decides with
 * its table whether XSETBV, IA32_XSS, TSC_AUX, the TSC-deadline timer ...
 * are allowed.  Starting the table from the host's own leaves makes KVM's
 * checks agree with what the guest sees. */
#include <cpuid.h>
#include <errno.h>
#include <glib.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_GUEST_PERM 0x1025
#define XFEATURE_XTILEDATA 18

/* Leaves whose sub-leaf index matters, and how many sub-leaves to copy. */
static unsigned subleaves(uint32_t fn, const unsigned r0[4])
{
	switch (fn) {
	case 4: case 0xb: case 0x1f: case 0x8000001d:
		return 64;     /* until an empty/invalid one: see host_leaf_end */
	case 7: case 0x14: case 0x17: case 0x1d: case 0x1e: case 0x20:
		return r0[0] + 1 > 64 ? 64 : r0[0] + 1;   /* EAX = max sub-leaf */
	case 0xd: case 0xf: case 0x10: case 0x12: case 0x18: case 0x1b:
		return 64;
	default:
		return 0;      /* index not significant */
	}
}

static bool host_leaf_end(uint32_t fn, unsigned idx, const unsigned r[4])
{
	if (fn == 4 || fn == 0x8000001d)
		return (r[0] & 0x1f) == 0;        /* cache type 0: no more caches */
	if (fn == 0xb || fn == 0x1f)
		return idx > 0 && ((r[2] >> 8) & 0xff) == 0;   /* level type invalid */
	return false;
}

static struct kvm_cpuid_entry2 *entry_for(struct kvm_cpuid2 *c, unsigned cap, uint32_t fn,
					  uint32_t idx, bool indexed)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == fn && (!indexed || e->index == idx))
			return e;
	}
	if (c->nent >= cap)
		return NULL;
	struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];
	memset(e, 0, sizeof(*e));
	e->function = fn;
	e->index = idx;
	e->flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
	return e;
}

static void copy_range(struct kvm_cpuid2 *c, unsigned cap, uint32_t first)
{
	unsigned r[4];
	__cpuid_count(first, 0, r[0], r[1], r[2], r[3]);
	uint32_t last = r[0];
	if (last < first || last - first > 0xff)
		return;
	for (uint32_t fn = first; fn <= last; fn++) {
		unsigned r0[4];
		__cpuid_count(fn, 0, r0[0], r0[1], r0[2], r0[3]);
		unsigned n = subleaves(fn, r0);
		if (!n) {
			struct kvm_cpuid_entry2 *e = entry_for(c, cap, fn, 0, false);
			if (e) {
				e->eax = r0[0]; e->ebx = r0[1]; e->ecx = r0[2]; e->edx = r0[3];
			}
			continue;
		}
		for (unsigned idx = 0; idx < n; idx++) {
			unsigned q[4];
			__cpuid_count(fn, idx, q[0], q[1], q[2], q[3]);
			if (host_leaf_end(fn, idx, q))
				break;
			bool empty = !q[0] && !q[1] && !q[2] && !q[3];
			if (empty && idx > 0)
				continue;   /* e.g. an unsupported XSAVE component */
			struct kvm_cpuid_entry2 *e = entry_for(c, cap, fn, idx, true);
			if (e) {
				e->eax = q[0]; e->ebx = q[1]; e->ecx = q[2]; e->edx = q[3];
			}
		}
	}
}

/* Run on one host CPU, the lowest this thread may run on: leaves that
 * describe the CPU executing CPUID (AMD's 0x8000001e, a hybrid part's
 * 0x1a and cache leaves, ...) then read the same in every process started
 * with the same affinity -- the migration check compares the tables. */
static struct kvm_cpuid2 *host_snapshot(void)
{
	unsigned cap = 512;
	struct kvm_cpuid2 *h = g_malloc0(sizeof(*h) + cap * sizeof(struct kvm_cpuid_entry2));
	cpu_set_t was, one;
	bool pinned = false;
	if (sched_getaffinity(0, sizeof(was), &was) == 0) {
		for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
			if (!CPU_ISSET(cpu, &was))
				continue;
			CPU_ZERO(&one);
			CPU_SET(cpu, &one);
			pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
			break;
		}
	}
	copy_range(h, cap, 0);
	copy_range(h, cap, 0x80000000);
	if (pinned)
		sched_setaffinity(0, sizeof(was), &was);
	/* OSXSAVE and OSPKE reflect the guest's CR4: KVM computes them. */
	for (uint32_t i = 0; i < h->nent; i++) {
		struct kvm_cpuid_entry2 *e = &h->entries[i];
		if (e->function == 1)
			e->ecx &= ~(1u << 27);
		if (e->function == 7 && e->index == 0)
			e->ecx &= ~(1u << 4);
	}
	return h;
}

struct kvm_cpuid2 *kl_cpuid_host_prepare(char **err)
{
	/* AMX (XTILEDATA) is a dynamic component: KVM lets a guest enable it in
	 * XCR0 only when the VMM process asked for it before creating vCPUs.
	 * The guest reads the host's leaf 0xd and sets XCR0 to all of it. */
	unsigned a, b, c, d;
	__cpuid_count(0xd, 0, a, b, c, d);
	(void)b; (void)c; (void)d;
	if ((a >> XFEATURE_XTILEDATA & 1) &&
	    syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_GUEST_PERM, XFEATURE_XTILEDATA) != 0) {
		*err = g_strdup_printf("arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, AMX): %s (the guest "
				       "sees AMX in this host's CPUID and will enable it)",
				       g_strerror(errno));
		return NULL;
	}
	return host_snapshot();
}

void kl_cpuid_host_view(struct kvm_cpuid2 *cpuid, unsigned capacity,
			const struct kvm_cpuid2 *host)
{
	for (uint32_t i = 0; i < host->nent; i++) {
		const struct kvm_cpuid_entry2 *h = &host->entries[i];
		bool indexed = h->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
		struct kvm_cpuid_entry2 *e = entry_for(cpuid, capacity, h->function, h->index,
						       indexed);
		if (e) {
			e->eax = h->eax; e->ebx = h->ebx; e->ecx = h->ecx; e->edx = h->edx;
		}
	}
}
