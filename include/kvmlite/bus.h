/* Port-I/O and MMIO buses: registered ranges with ops tables.
 * Dispatch runs with the BQL held (vCPU threads take it around the call).
 * An access no device claims reads as all-ones and writes are dropped. */
#ifndef KVMLITE_BUS_H
#define KVMLITE_BUS_H

#include <stdbool.h>
#include <stdint.h>

struct kl_io_ops {
	/* off is relative to the registered base; size is 1, 2, 4 or 8. */
	uint64_t (*read)(void *opaque, uint64_t off, unsigned size);
	void (*write)(void *opaque, uint64_t off, uint64_t val, unsigned size);
};

struct kl_bus_range {
	uint64_t base, len;
	const struct kl_io_ops *ops;
	void *opaque;
	const char *name;
};

struct kl_bus {
	const char *name;
	struct kl_bus_range *ranges; /* sorted by base, non-overlapping */
	unsigned n, cap;
};

void kl_bus_init(struct kl_bus *b, const char *name);
void kl_bus_destroy(struct kl_bus *b);
/* -1 if len is 0, base+len overflows, or the range overlaps another. */
int kl_bus_register(struct kl_bus *b, uint64_t base, uint64_t len,
		    const struct kl_io_ops *ops, void *opaque, const char *name);
/* Remove the range starting at base owned by opaque; -1 if none. */
int kl_bus_unregister(struct kl_bus *b, uint64_t base, void *opaque);
const struct kl_bus_range *kl_bus_find(const struct kl_bus *b, uint64_t addr);
/* Return true when a device claimed the access. */
bool kl_bus_read(struct kl_bus *b, uint64_t addr, unsigned size, uint64_t *val);
bool kl_bus_write(struct kl_bus *b, uint64_t addr, unsigned size, uint64_t val);

#endif
