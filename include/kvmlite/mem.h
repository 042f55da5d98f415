/* Guest physical memory.
 *
 * Layout (PC style):
 *   [0, low_end)            RAM, low_end = min(ram_size, KL_PCI_HOLE_START)
 *   [KL_PCI_HOLE_START, 4G) PCI MMIO window, IOAPIC, LAPIC (no RAM)
 *   [4G, 4G + rest)         RAM above 4 GiB when ram_size > KL_PCI_HOLE_START
 *
 * kl_gpa_to_hva() is the ONLY way device code may turn a guest address into
 * a host pointer: it checks gpa+len for overflow and that the whole range
 * lies inside one RAM region, and returns NULL otherwise.
 */
#ifndef KVMLITE_MEM_H
#define KVMLITE_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define KL_PCI_HOLE_START 0xC0000000ULL  /* 3 GiB */
#define KL_4G 0x100000000ULL
#define KL_PCI_MMIO_BASE 0xC0000000ULL   /* 32-bit BAR window */
#define KL_PCI_MMIO_END 0xE0000000ULL
#define KL_PCI_ECAM_BASE 0xE0000000ULL   /* optional, 256 MiB */
#define KL_IOAPIC_BASE 0xFEC00000ULL
#define KL_LAPIC_BASE 0xFEE00000ULL
#define KL_MAX_MEM_REGIONS 8

struct kl_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct kl_mem_opts {
	bool memfd;    /* back RAM with a memfd instead of anonymous shared mmap */
	bool hugetlb;  /* MAP_HUGETLB (MFD_HUGETLB with memfd) */
	bool thp;      /* madvise(MADV_HUGEPAGE) */
	/* memory-backend-file: mem-path, a file (created if missing, extended
	 * to the size) or a directory (e.g. /dev/hugepages: an unlinked
	 * temporary file in it).  NULL: memfd/anonymous as above. */
	const char *mem_path;
	/* MAP_PRIVATE instead of MAP_SHARED (memory-backend-ram/-file
	 * share=off, QEMU's default for both).  The plain -m RAM and memfd
	 * stay shared. */
	bool private_map;
	bool prealloc; /* populate every page now (-mem-prealloc, prealloc=on) */
	bool merge;    /* madvise(MADV_MERGEABLE): KSM (-machine mem-merge=on);
			  the kernel merges private anonymous pages only */
};

struct kl_guest_mem {
	struct kl_mem_region regions[KL_MAX_MEM_REGIONS];
	unsigned nregions;
	uint64_t ram_size;   /* total bytes of RAM */
	void *map_base;      /* what kl_mem_init mapped (NULL for fake memory) */
	size_t map_size;
	int memfd;           /* -1 unless opts.memfd or opts.mem_path: the fd */
	bool shared;         /* MAP_SHARED mapping */
	/* memory-backend-file,share=on (a named file, not a directory's
	 * temporary one): another process can map the same RAM, which is what
	 * migration's x-ignore-shared relies on */
	bool file_shared;
	uint64_t page_size;  /* host page size of the backing (hugetlbfs: 2M..) */
	/* Set while a live migration tracks dirty pages (src/migration/
	 * dirty.c): told of every write the VMM itself makes into guest RAM,
	 * which KVM's dirty log does not see.  NULL otherwise. */
	void (*dirty_fn)(void *opaque, uint64_t gpa, uint64_t len);
	void *dirty_opaque;
};

/* Allocate ram_size bytes and lay them out; returns 0 or -1 with *err set
 * (g_free it).  ram_size must be > 0 and a multiple of 4 KiB. */
int kl_mem_init(struct kl_guest_mem *m, uint64_t ram_size,
		const struct kl_mem_opts *opts, char **err);
void kl_mem_destroy(struct kl_guest_mem *m);

/* For unit tests: an empty map, then regions backed by caller buffers. */
void kl_mem_init_empty(struct kl_guest_mem *m);
int kl_mem_add_region(struct kl_guest_mem *m, uint64_t gpa, uint64_t size, void *hva);

/* NULL when [gpa, gpa+len) is not entirely inside one RAM region (len 0 is
 * treated as 1). */
void *kl_gpa_to_hva(const struct kl_guest_mem *m, uint64_t gpa, uint64_t len);
/* 0, or -1 when the range is not guest RAM. */
int kl_mem_read(const struct kl_guest_mem *m, uint64_t gpa, void *buf, size_t len);
int kl_mem_write(const struct kl_guest_mem *m, uint64_t gpa, const void *buf, size_t len);

/* Device writes into guest RAM made through a host pointer (DMA: used
 * rings, received frames, block reads) are reported here, so a live
 * migration sends those pages again; kl_mem_write reports its own.  A
 * no-op (one pointer test) when no migration tracks dirty pages. */
void kl_mem_mark_dirty(const struct kl_guest_mem *m, uint64_t gpa, uint64_t len);
/* The same for a host pointer into guest RAM (an iovec of a virtqueue
 * element); ignored when hva is not inside a RAM region. */
void kl_mem_mark_dirty_hva(const struct kl_guest_mem *m, const void *hva, uint64_t len);

/* Give the host pages of [hva, hva+len) back (balloon inflate, free page
 * reporting): fallocate(PUNCH_HOLE) on an fd backing, MADV_REMOVE on shared
 * anonymous memory, MADV_DONTNEED on private memory; the pages read back
 * as zeroes (a private file mapping: as the file).  Only whole host pages
 * are released (hugetlbfs: aligned huge pages; the rest is left alone).
 * Returns the bytes released, or -1 when the range is not guest RAM or the
 * kernel refused.  Reports the range dirty (a migration resends it). */
int64_t kl_mem_discard_hva(const struct kl_guest_mem *m, void *hva, uint64_t len);

/* e820 */
#define KL_E820_RAM 1
#define KL_E820_RESERVED 2
struct kl_e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));
#define KL_E820_MAX 16
/* Fill out[] (max entries), return the count. */
int kl_mem_e820(const struct kl_guest_mem *m, struct kl_e820_entry *out, int max);

#endif
