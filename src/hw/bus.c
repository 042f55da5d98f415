/* I/O buses: sorted ranges, binary search dispatch. */
#include "kvmlite/bus.h"

#include <glib.h>
#include <string.h>

void kl_bus_init(struct kl_bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->name = name;
}

void kl_bus_destroy(struct kl_bus *b)
{
	g_free(b->ranges);
	memset(b, 0, sizeof(*b));
}

int kl_bus_register(struct kl_bus *b, uint64_t base, uint64_t len, const struct kl_io_ops *ops,
		    void *opaque, const char *name)
{
	if (len == 0 || base + len < base || !ops)
		return -1;
	unsigned i = 0;
	while (i < b->n && b->ranges[i].base < base)
		i++;
	if (i > 0 && b->ranges[i - 1].base + b->ranges[i - 1].len > base)
		return -1;
	if (i < b->n && base + len > b->ranges[i].base)
		return -1;
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->ranges = g_renew(struct kl_bus_range, b->ranges, b->cap);
	}
	memmove(&b->ranges[i + 1], &b->ranges[i], (b->n - i) * sizeof(b->ranges[0]));
	b->ranges[i] = (struct kl_bus_range){ base, len, ops, opaque, name };
	b->n++;
	return 0;
}

int kl_bus_unregister(struct kl_bus *b, uint64_t base, void *opaque)
{
	for (unsigned i = 0; i < b->n; i++) {
		if (b->ranges[i].base == base && b->ranges[i].opaque == opaque) {
			memmove(&b->ranges[i], &b->ranges[i + 1], (b->n - i - 1) * sizeof(b->ranges[0]));
			b->n--;
			return 0;
		}
	}
	return -1;
}

const struct kl_bus_range *kl_bus_find(const struct kl_bus *b, uint64_t addr)
{
	unsigned lo = 0, hi = b->n;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		const struct kl_bus_range *r = &b->ranges[mid];
		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool kl_bus_read(struct kl_bus *b, uint64_t addr, unsigned size, uint64_t *val)
{
	const struct kl_bus_range *r = kl_bus_find(b, addr);
	if (!r || !r->ops->read) {
		*val = size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
		return false;
	}
	*val = r->ops->read(r->opaque, addr - r->base, size);
	return true;
}

bool kl_bus_write(struct kl_bus *b, uint64_t addr, unsigned size, uint64_t val)
{
	const struct kl_bus_range *r = kl_bus_find(b, addr);
	if (!r || !r->ops->write)
		return false;
	r->ops->write(r->opaque, addr - r->base, val, size);
	return true;
}
