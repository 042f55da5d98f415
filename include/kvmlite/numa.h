/* Guest NUMA topology (src/numa/numa.c): -numa node / dist / cpu as QEMU 7.2
 * (hw/core/numa.c) for pc-i440fx-7.2, and what the guest sees of it (ACPI
 * SRAT and SLIT, src/hw/acpi_numa.c).
 *
 *   -numa node[,nodeid=N][,cpus=A[-B]]...[,memdev=ID]   (mem= is refused, as
 *                                                         on 7.2 machine types)
 *   -numa dist,src=S,dst=D,val=V
 *   -numa cpu,node-id=N[,socket-id=S][,core-id=C][,thread-id=T]
 *
 * Guest RAM is the nodes' memdevs one after another in node-id order (as
 * QEMU's memdev container), laid out in guest-physical space as one RAM of
 * the total size (kvmlite/mem.h: below the PCI hole, then from 4 GiB). */
#ifndef KVMLITE_NUMA_H
#define KVMLITE_NUMA_H

#include <stdbool.h>
#include <stdint.h>

#define KL_NUMA_MAX_NODES 128   /* QEMU's MAX_NODES */
#define KL_NUMA_MAX_CPUS 256
#define KL_NUMA_DISTANCE_MIN 10
#define KL_NUMA_DISTANCE_DEFAULT 20   /* what a guest assumes without a SLIT */

struct kl_numa_node {
	bool present;
	char *memdev;        /* NULL: a memory-less node */
	uint64_t size;       /* bytes, the memdev's size */
	uint64_t ram_offset; /* where its memory starts in guest RAM (layout order) */
};

struct kl_numa {
	unsigned nnodes;                 /* 0: no NUMA configured */
	unsigned max_nodeid;             /* highest node id + 1 */
	struct kl_numa_node node[KL_NUMA_MAX_NODES];
	bool have_dist;                  /* -numa dist given: the guest gets a SLIT */
	uint8_t dist[KL_NUMA_MAX_NODES][KL_NUMA_MAX_NODES];  /* 0: not given */
	/* CPU topology (from -smp) and the node of each CPU (-1: unset) */
	unsigned ncpus, cores, threads;
	int cpu_node[KL_NUMA_MAX_CPUS];
};

/* Memory back-end lookup for memdev=: true with *size when id exists. */
typedef bool (*kl_numa_memdev_fn)(const char *id, uint64_t *size, void *opaque);

/* Before the first kl_numa_parse: the -smp topology (ncpus <= 256). */
void kl_numa_init(struct kl_numa *n, unsigned ncpus, unsigned cores, unsigned threads);
/* One -numa argument.  0, or -1 with *err (QEMU 7.2's text). */
int kl_numa_parse(struct kl_numa *n, const char *spec, kl_numa_memdev_fn memdev,
		  void *opaque, char **err);
/* After the last -numa (when nnodes > 0): node ids contiguous, node memory
 * adds up to ram_size, distances complete (validated and filled in as
 * QEMU), CPUs without a node get QEMU's default (socket-id % nodes; a
 * warning line on stderr when some but not all CPUs were given a node),
 * node memory offsets.  0, or -1 with *err. */
int kl_numa_finish(struct kl_numa *n, uint64_t ram_size, char **err);
void kl_numa_free(struct kl_numa *n);

/* Distance src -> dst after kl_numa_finish (10 local, 20 without SLIT). */
unsigned kl_numa_distance(const struct kl_numa *n, unsigned src, unsigned dst);

/* The machine's configuration (set once by main.c, after kl_numa_finish;
 * NULL without NUMA): read by the ACPI tables and query-cpus-fast. */
void kl_numa_set_active(const struct kl_numa *n);
const struct kl_numa *kl_numa_active(void);
/* Node of vCPU index i, or -1 without NUMA. */
int kl_numa_cpu_node(unsigned cpu);

#endif
