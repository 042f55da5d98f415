/* Guest RAM: allocation, PC layout, bounds-checked GPA->HVA, e820. */
#include "kvmlite/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void kl_mem_init_empty(struct kl_guest_mem *m)
{
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	m->shared = true;
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

/* Host page size of an fd's file system (hugetlbfs: its huge page size). */
static uint64_t fd_page_size(int fd)
{
	struct statfs fs;
	if (fd >= 0 && fstatfs(fd, &fs) == 0 && (unsigned long)fs.f_type == HUGETLBFS_MAGIC)
		return (uint64_t)fs.f_bsize;
	return (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The default huge page size (MAP_HUGETLB without an fd). */
static uint64_t default_huge_page_size(void)
{
	gchar *s = NULL;
	uint64_t kb = 2048;
	if (g_file_get_contents("/proc/meminfo", &s, NULL, NULL)) {
		const char *t = strstr(s, "Hugepagesize:");
		if (t)
			kb = strtoull(t + 13, NULL, 10);
	}
	g_free(s);
	return kb ? kb << 10 : 2u << 20;
}

/* memory-backend-file's mem-path: a directory gets an unlinked temporary
 * file in it (as QEMU), anything else is opened (created) as the file. */
/* mem-path names a file (not a directory for a temporary one) */
static bool mem_path_is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

static int open_mem_path(const char *path, uint64_t size, char **err)
{
	struct stat st;
	int fd;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		fd = open(path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0) { /* hugetlbfs has no O_TMPFILE: mkstemp + unlink */
			char *tmpl = g_build_filename(path, "kvmlite_ram.XXXXXX", NULL);
			fd = g_mkstemp_full(tmpl, O_RDWR | O_CLOEXEC, 0600);
			if (fd >= 0)
				unlink(tmpl);
			g_free(tmpl);
		}
	} else {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		*err = g_strdup_printf("can't open backing store %s for guest RAM: %s", path,
				       g_strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || (S_ISREG(st.st_mode) && (uint64_t)st.st_size < size &&
				     ftruncate(fd, (off_t)size) < 0)) {
		*err = g_strdup_printf("can't set the size of backing store %s to %llu bytes: %s", path,
				       (unsigned long long)size, g_strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Touch every page now: MADV_POPULATE_WRITE (Linux 5.14), else a write of
 * each page's first byte (what it holds already: a file keeps its data). */
static int prealloc(void *p, uint64_t size, uint64_t page, char **err)
{
	if (madvise(p, size, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL) {
		*err = g_strdup_printf("preallocating %llu MiB of guest RAM failed: %s%s",
				       (unsigned long long)(size >> 20), g_strerror(errno),
				       errno == ENOMEM || errno == EFAULT
				       ? " (insufficient free host memory pages)" : "");
		return -1;
	}
	for (uint64_t o = 0; o < size; o += page) {
		volatile uint8_t *b = (volatile uint8_t *)p + o;
		*b = *b;
	}
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
	int flags = (opts->private_map ? MAP_PRIVATE : MAP_SHARED) | MAP_NORESERVE;
	int fd = -1;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	if (opts->mem_path) {
		fd = open_mem_path(opts->mem_path, ram_size, err);
		if (fd < 0)
			return -1;
		page = fd_page_size(fd);
		if (ram_size % page) {
			*err = g_strdup_printf("RAM size %llu is not a multiple of the page size %llu of %s",
					       (unsigned long long)ram_size, (unsigned long long)page,
					       opts->mem_path);
			close(fd);
			return -1;
		}
	} else if (opts->memfd) {
		fd = memfd_create("kvmlite-ram", MFD_CLOEXEC | (opts->hugetlb ? MFD_HUGETLB : 0));
		if (fd < 0 || ftruncate(fd, (off_t)ram_size) < 0) {
			*err = g_strdup_printf("cannot create memfd for guest RAM: %s", g_strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		page = fd_page_size(fd);
	} else {
		flags |= MAP_ANONYMOUS;
		if (opts->hugetlb) {
			flags |= MAP_HUGETLB;
			page = default_huge_page_size();
		}
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
	if (opts->merge)
		madvise(p, ram_size, MADV_MERGEABLE); /* EINVAL without CONFIG_KSM: as QEMU, ignored */
	madvise(p, ram_size, MADV_DONTDUMP);
	if (opts->prealloc && prealloc(p, ram_size, page, err) < 0) {
		munmap(p, ram_size);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* A private file mapping's fd is not guest RAM's contents (copies on
	 * write are not in the file): the mapping keeps the file, the fd goes. */
	if (fd >= 0 && opts->private_map) {
		close(fd);
		fd = -1;
	}
	m->map_base = p;
	m->map_size = ram_size;
	m->memfd = fd;
	m->shared = !opts->private_map;
	m->file_shared = opts->mem_path && !opts->private_map && mem_path_is_file(opts->mem_path);
	m->page_size = page;
	uint64_t low = ram_size < KL_PCI_HOLE_START ? ram_size : KL_PCI_HOLE_START;
	kl_mem_add_region(m, 0, low, p);
	if (ram_size > low)
		kl_mem_add_region(m, KL_4G, ram_size - low, (uint8_t *)p + low);
	return 0;
}

int64_t kl_mem_discard_hva(const struct kl_guest_mem *m, void *hva, uint64_t len)
{
	uint8_t *p = hva;
	const struct kl_mem_region *r = NULL;
	for (unsigned i = 0; i < m->nregions; i++)
		if (p >= m->regions[i].hva && (uint64_t)(p - m->regions[i].hva) < m->regions[i].size)
			r = &m->regions[i];
	if (!r || len == 0 || len > r->size - (uint64_t)(p - r->hva))
		return -1;
	uint64_t page = m->page_size ? m->page_size : 4096;
	uintptr_t a = ((uintptr_t)p + page - 1) / page * page;
	uintptr_t e = ((uintptr_t)p + len) / page * page;
	if (e <= a)
		return 0; /* no whole host page inside */
	uint8_t *start = (uint8_t *)a;
	size_t n = e - a;
	int ret;
	if (!m->map_base)
		ret = madvise(start, n, MADV_DONTNEED); /* caller buffers (unit tests) */
	else if (m->memfd >= 0)
		ret = fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				(off_t)(start - (uint8_t *)m->map_base), (off_t)n);
	else if (m->shared)
		ret = madvise(start, n, MADV_REMOVE);
	else
		ret = madvise(start, n, MADV_DONTNEED);
	if (ret < 0)
		return -1;
	kl_mem_mark_dirty_hva(m, start, n);
	return (int64_t)n;
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
