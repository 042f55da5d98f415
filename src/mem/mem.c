/* Guest RAM: allocation, PC layout, bounds-checked GPA->HVA, e820. */
#include "kvmlite/mem.h"

#include <errno.h>
#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

void kl_mem_init_empty(struct kl_guest_mem *m)
{
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
}

int kl_mem_add_region(struct kl_guest_mem *m, uint64_t gpa, uint64_t size, void *hva)
{
	if (m->nregions >= KL_MAX_MEM_REGIONS || size == 0 || gpa + size < gpa)
		return -1;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct kl_mem_region *r = &m->regions[i];
		if (gpa < r->gpa + r->size && r->gpa < gpa + size)
			return -1;
	}
	m->regions[m->nregions].gpa = gpa;
	m->regions[m->nregions].size = size;
	m->regions[m->nregions].hva = hva;
	m->nregions++;
	m->ram_size += size;
	return 0;
}

int kl_mem_init(struct kl_guest_mem *m, uint64_t ram_size, const struct kl_mem_opts *opts,
		char **err)
{
	kl_mem_init_empty(m);
	if (ram_size == 0 || (ram_size & 0xfff)) {
		*err = g_strdup_printf("invalid RAM size %llu: must be a non-zero multiple of 4 KiB",
				       (unsigned long long)ram_size);
		return -1;
	}
	if (ram_size > (1ULL << 46)) {
		*err = g_strdup_printf("RAM size %llu MiB is too large",
				       (unsigned long long)(ram_size >> 20));
		return -1;
	}
	struct kl_mem_opts none = {0};
	if (!opts)
		opts = &none;
	int flags = MAP_SHARED | MAP_NORESERVE;
	int fd = -1;
	if (opts->memfd) {
		fd = memfd_create("kvmlite-ram", MFD_CLOEXEC | (opts->hugetlb ? MFD_HUGETLB : 0));
		if (fd < 0 || ftruncate(fd, (off_t)ram_size) < 0) {
			*err = g_strdup_printf("cannot create memfd for guest RAM: %s", g_strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
	} else {
		flags |= MAP_ANONYMOUS;
		if (opts->hugetlb)
			flags |= MAP_HUGETLB;
	}
	void *p = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (p == MAP_FAILED) {
		*err = g_strdup_printf("cannot allocate %llu MiB of guest RAM: %s",
				       (unsigned long long)(ram_size >> 20), g_strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (opts->thp)
		madvise(p, ram_size, MADV_HUGEPAGE);
	madvise(p, ram_size, MADV_DONTDUMP);
	m->map_base = p;
	m->map_size = ram_size;
	m->memfd = fd;
	uint64_t low = ram_size < KL_PCI_HOLE_START ? ram_size : KL_PCI_HOLE_START;
	kl_mem_add_region(m, 0, low, p);
	if (ram_size > low)
		kl_mem_add_region(m, KL_4G, ram_size - low, (uint8_t *)p + low);
	return 0;
}

void kl_mem_destroy(struct kl_guest_mem *m)
{
	if (m->map_base)
		munmap(m->map_base, m->map_size);
	if (m->memfd >= 0)
		close(m->memfd);
	kl_mem_init_empty(m);
}

void *kl_gpa_to_hva(const struct kl_guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	uint64_t end = gpa + len;
	if (end < gpa) /* wraps */
		return NULL;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct kl_mem_region *r = &m->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			if (end - r->gpa > r->size)
				return NULL; /* crosses the region's end */
			return r->hva + (gpa - r->gpa);
		}
	}
	return NULL;
}

int kl_mem_read(const struct kl_guest_mem *m, uint64_t gpa, void *buf, size_t len)
{
	if (len == 0)
		return 0;
	void *p = kl_gpa_to_hva(m, gpa, len);
	if (!p)
		return -1;
	memcpy(buf, p, len);
	return 0;
}

int kl_mem_write(const struct kl_guest_mem *m, uint64_t gpa, const void *buf, size_t len)
{
	if (len == 0)
		return 0;
	void *p = kl_gpa_to_hva(m, gpa, len);
	if (!p)
		return -1;
	memcpy(p, buf, len);
	kl_mem_mark_dirty(m, gpa, len);
	return 0;
}

void kl_mem_mark_dirty(const struct kl_guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (m->dirty_fn && len)
		m->dirty_fn(m->dirty_opaque, gpa, len);
}

void kl_mem_mark_dirty_hva(const struct kl_guest_mem *m, const void *hva, uint64_t len)
{
	if (!m->dirty_fn || !len)
		return;
	const uint8_t *p = hva;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct kl_mem_region *r = &m->regions[i];
		if (p >= r->hva && (uint64_t)(p - r->hva) < r->size) {
			uint64_t off = (uint64_t)(p - r->hva);
			if (len > r->size - off)
				len = r->size - off;
			m->dirty_fn(m->dirty_opaque, r->gpa + off, len);
			return;
		}
	}
}

static int e820_add(struct kl_e820_entry *out, int n, int max, uint64_t a, uint64_t s, uint32_t t)
{
	if (n >= max || s == 0)
		return n;
	out[n].addr = a;
	out[n].size = s;
	out[n].type = t;
	return n + 1;
}

/* Low 640 KiB (minus the EBDA), reserved legacy area, RAM from 1 MiB,
 * RAM above 4 GiB.  The 0x9fc00..0x100000 hole holds the MP table/ACPI
 * tables and legacy ranges. */
int kl_mem_e820(const struct kl_guest_mem *m, struct kl_e820_entry *out, int max)
{
	int n = 0;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct kl_mem_region *r = &m->regions[i];
		uint64_t a = r->gpa, e = r->gpa + r->size;
		if (a < 0x100000) {
			uint64_t lowend = e < 0x9fc00 ? e : 0x9fc00;
			n = e820_add(out, n, max, a, lowend - a, KL_E820_RAM);
			if (e > 0x9fc00)
				n = e820_add(out, n, max, 0x9fc00, (e < 0x100000 ? e : 0x100000) - 0x9fc00,
					     KL_E820_RESERVED);
			a = 0x100000;
		}
		if (e > a)
			n = e820_add(out, n, max, a, e - a, KL_E820_RAM);
	}
	return n;
}
