/* Guest RAM in the migration stream: page data records and zero-page
 * markers.  On a socket, runs of at most 1 MiB of non-zero pages (RAM
 * records) and runs of zero pages (ZERO records, no data).  On a file, one
 * RAM record per RAM region whose data starts page-aligned in the file and
 * whose zero pages are holes, so that a restore can mmap it privately. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "kvmlite/mem.h"
#include "kvmlite/vm.h"
#include "dirty_int.h"
#include "stream_int.h"

bool kl_mig_page_is_zero(const void *p)
{
	const uint64_t *q = p;
	for (unsigned i = 0; i < KL_MIG_PAGE / 8; i += 4)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3])
			return false;
	return true;
}

static int put_block_header(struct kl_mig_out *out, uint8_t type, uint64_t gpa, uint64_t len,
			    bool with_pad, uint32_t *pad_out)
{
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	kl_vms_put_u8(&o, type);
	kl_vms_put_u64(&o, gpa);
	kl_vms_put_u64(&o, len);
	uint32_t pad = 0;
	if (with_pad) {
		uint64_t data = out->pos + o.buf->len + 4;
		if (out->file)
			pad = (uint32_t)((KL_MIG_PAGE - data % KL_MIG_PAGE) % KL_MIG_PAGE);
		kl_vms_put_u32(&o, pad);
	}
	int r = kl_mig_write_vms(out, &o);
	kl_vms_out_free(&o);
	if (r == 0 && pad)
		r = kl_mig_skip_out(out, pad);
	if (pad_out)
		*pad_out = pad;
	return r;
}

static int put_crc(struct kl_mig_out *out, uint32_t crc)
{
	uint8_t b[4] = { (uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24) };
	return kl_mig_write(out, b, 4);
}

/* Page i of region r is zero; a hole of guest RAM (never touched) is, and
 * is not read (reading a hole of shared memory would allocate it). */
static bool zero_page(const struct kl_mem_region *r, const uint64_t *holes, uint64_t i)
{
	if (holes && ((holes[i / 64] >> (i % 64)) & 1))
		return true;
	return kl_mig_page_is_zero(r->hva + i * KL_MIG_PAGE);
}

/* crc extended by npages zero pages, without a buffer of that size:
 * zlib's crc32_combine over CRCs of 2^k zero pages. */
static uint32_t crc_zero_pages(uint32_t crc, uint64_t npages)
{
	static uint32_t zc[64];
	static bool init;
	if (!init) {
		static const uint8_t zeros[KL_MIG_PAGE];
		zc[0] = (uint32_t)crc32_z(0, zeros, KL_MIG_PAGE);
		for (unsigned k = 1; k < 40; k++)
			zc[k] = (uint32_t)crc32_combine(zc[k - 1], zc[k - 1],
						       (z_off_t)((uint64_t)KL_MIG_PAGE << (k - 1)));
		init = true;
	}
	for (unsigned k = 0; k < 40 && npages; k++, npages >>= 1)
		if (npages & 1)
			crc = (uint32_t)crc32_combine(crc, zc[k], (z_off_t)((uint64_t)KL_MIG_PAGE << k));
	return crc;
}

/* A file: the whole region, zero pages as holes. */
static int save_region_file(struct kl_mig_out *out, const struct kl_mem_region *r,
			    const uint64_t *holes, struct kl_mig_stats *st)
{
	if (put_block_header(out, KL_REC_RAM, r->gpa, r->size, true, NULL) < 0)
		return -1;
	uint64_t npages = r->size / KL_MIG_PAGE;
	uint64_t i = 0;
	uint32_t crc = 0;
	while (i < npages) {
		const uint8_t *p = r->hva + i * KL_MIG_PAGE;
		bool zero = zero_page(r, holes, i);
		uint64_t j = i + 1;
		while (j < npages && j - i < 256 && zero_page(r, holes, j) == zero)
			j++;
		uint64_t n = (j - i) * KL_MIG_PAGE;
		if (zero) {
			if (kl_mig_skip_out(out, n) < 0)
				return -1;
			crc = crc_zero_pages(crc, j - i);
			st->zero_pages += j - i;
		} else {
			if (kl_mig_write(out, p, n) < 0)
				return -1;
			crc = (uint32_t)crc32_z(crc, p, n);
			st->normal_pages += j - i;
			st->ram_bytes += n;
		}
		i = j;
	}
	return put_crc(out, crc);
}

/* A socket: runs of data pages and zero markers. */
static int save_region_stream(struct kl_mig_out *out, const struct kl_mem_region *r,
			      const uint64_t *holes, struct kl_mig_stats *st)
{
	uint64_t npages = r->size / KL_MIG_PAGE;
	uint64_t i = 0;
	while (i < npages) {
		const uint8_t *p = r->hva + i * KL_MIG_PAGE;
		bool zero = zero_page(r, holes, i);
		uint64_t j = i + 1;
		uint64_t max = zero ? UINT64_MAX : KL_MIG_RAM_RUN / KL_MIG_PAGE;
		while (j < npages && j - i < max && zero_page(r, holes, j) == zero)
			j++;
		uint64_t n = (j - i) * KL_MIG_PAGE;
		uint64_t gpa = r->gpa + i * KL_MIG_PAGE;
		if (zero) {
			if (put_block_header(out, KL_REC_ZERO, gpa, n, false, NULL) < 0)
				return -1;
			st->zero_pages += j - i;
		} else {
			if (put_block_header(out, KL_REC_RAM, gpa, n, true, NULL) < 0 ||
			    kl_mig_write(out, p, n) < 0 ||
			    put_crc(out, (uint32_t)crc32_z(0, p, n)) < 0)
				return -1;
			st->normal_pages += j - i;
			st->ram_bytes += n;
		}
		i = j;
	}
	return 0;
}

int kl_mig_ram_save(struct kl_vm *vm, struct kl_mig_out *out, struct kl_mig_stats *st)
{
	st->total_ram = vm->mem.ram_size;
	if (out->skip_shared_ram)
		return kl_mig_shared_save(vm, out);
	/* stop-and-copy (vCPUs parked): pages that were never touched are
	 * zero and not read, as the first pass of a live migration */
	struct kl_ram_cursor c;
	memset(&c, 0, sizeof(c));
	kl_mig_ram_find_holes(vm, &c);
	int rc = 0;
	for (unsigned i = 0; i < vm->mem.nregions && rc == 0; i++) {
		const struct kl_mem_region *r = &vm->mem.regions[i];
		const uint64_t *h = i < KL_MAX_MEM_REGIONS ? c.holes[i] : NULL;
		rc = out->file ? save_region_file(out, r, h, st) : save_region_stream(out, r, h, st);
	}
	kl_mig_ram_holes_free(&c);
	return rc < 0 ? -1 : 0;
}

static bool bit(const uint64_t *m, uint64_t p)
{
	return (m[p / 64] >> (p % 64)) & 1;
}

/* No swap configured: a shared anonymous page that is not resident was
 * never touched.  (With swap, mincore() cannot tell a hole from a page
 * swapped out of shmem.) */
static bool no_swap(void)
{
	gchar *s = NULL;
	bool none = false;
	if (g_file_get_contents("/proc/meminfo", &s, NULL, NULL)) {
		const char *t = strstr(s, "\nSwapTotal:");
		none = t && strtoull(t + 11, NULL, 10) == 0;
	}
	g_free(s);
	return none;
}

/* memfd: the holes between SEEK_DATA extents (exact, swap included). */
static bool memfd_holes(int fd, uint64_t off, uint64_t npages, uint64_t *h)
{
	uint64_t end = off + npages * KL_MIG_PAGE, pos = off;
	while (pos < end) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
		uint64_t data = d < 0 ? end : (uint64_t)d;
		if (d < 0 && errno != ENXIO)
			return false;
		if (data > end)
			data = end;
		for (uint64_t p = (pos - off) / KL_MIG_PAGE; p < (data - off) / KL_MIG_PAGE; p++)
			h[p / 64] |= 1ull << (p % 64);
		if (data >= end)
			break;
		off_t e = lseek(fd, (off_t)data, SEEK_HOLE);
		if (e < 0)
			return false;
		pos = ((uint64_t)e + KL_MIG_PAGE - 1) / KL_MIG_PAGE * KL_MIG_PAGE;
	}
	return true;
}

static bool mincore_holes(uint8_t *hva, uint64_t npages, uint64_t *h)
{
	unsigned char *v = g_malloc(npages);
	bool ok = mincore(hva, npages * KL_MIG_PAGE, v) == 0;
	for (uint64_t p = 0; ok && p < npages; p++)
		if (!(v[p] & 1))
			h[p / 64] |= 1ull << (p % 64);
	g_free(v);
	return ok;
}

/* Set once guest RAM was mapped privately from a snapshot file: a page of
 * such a mapping that is not resident is the file's, not a hole, so
 * mincore() tells nothing any more. */
static bool ram_file_mapped;

void kl_mig_ram_find_holes(struct kl_vm *vm, struct kl_ram_cursor *c)
{
	const struct kl_guest_mem *m = &vm->mem;
	bool anon = m->memfd < 0 && m->map_base && !ram_file_mapped && no_swap();
	for (unsigned i = 0; i < m->nregions && i < KL_MAX_MEM_REGIONS; i++) {
		const struct kl_mem_region *r = &m->regions[i];
		uint64_t npages = r->size / KL_MIG_PAGE;
		c->holes[i] = NULL;
		if ((uintptr_t)r->hva % KL_MIG_PAGE || (m->memfd < 0 && !anon))
			continue;
		uint64_t *h = g_new0(uint64_t, (npages + 63) / 64);
		bool ok;
		if (m->memfd >= 0)
			ok = memfd_holes(m->memfd, (uint64_t)(r->hva - (uint8_t *)m->map_base),
					 npages, h);
		else
			ok = mincore_holes(r->hva, npages, h);
		if (ok)
			c->holes[i] = h;
		else
			g_free(h);
	}
}

void kl_mig_ram_holes_free(struct kl_ram_cursor *c)
{
	for (unsigned i = 0; i < KL_MAX_MEM_REGIONS; i++) {
		g_free(c->holes[i]);
		c->holes[i] = NULL;
	}
}

/* zero without reading it when it was a hole (reading a hole of shared
 * memory would allocate a page) */
static bool dirty_page_is_zero(const struct kl_mem_region *r, const uint64_t *holes, uint64_t p)
{
	return (holes && bit(holes, p)) || kl_mig_page_is_zero(r->hva + p * KL_MIG_PAGE);
}

int kl_mig_ram_send_dirty(struct kl_vm *vm, struct kl_mig_out *out, struct kl_dirty *d,
			  struct kl_ram_cursor *c, uint64_t budget, struct kl_mig_stats *st)
{
	uint64_t sent = 0;
	while (c->region < d->n) {
		const struct kl_mem_region *r = &vm->mem.regions[c->region];
		uint64_t *m = d->map[c->region];
		uint64_t npages = r->size / KL_MIG_PAGE;
		while (c->page < npages) {
			if (sent >= budget)
				return 0;
			uint64_t w = c->page / 64;
			if (!(c->page % 64) && !m[w]) { /* a clean word */
				c->page += 64;
				continue;
			}
			if (!bit(m, c->page)) {
				c->page++;
				continue;
			}
			/* a run of dirty pages of one kind (zero or not) */
			uint64_t i = c->page;
			const uint64_t *holes = c->region < KL_MAX_MEM_REGIONS ? c->holes[c->region] : NULL;
			bool zero = dirty_page_is_zero(r, holes, i);
			uint64_t j = i + 1;
			uint64_t max = zero ? 1u << 20 : KL_MIG_RAM_RUN / KL_MIG_PAGE;
			while (j < npages && j - i < max && bit(m, j) &&
			       dirty_page_is_zero(r, holes, j) == zero)
				j++;
			for (uint64_t p = i; p < j; p++)
				m[p / 64] &= ~(1ull << (p % 64));
			uint64_t n = (j - i) * KL_MIG_PAGE, gpa = r->gpa + i * KL_MIG_PAGE;
			const uint8_t *p = r->hva + i * KL_MIG_PAGE;
			if (zero) {
				if (put_block_header(out, KL_REC_ZERO, gpa, n, false, NULL) < 0)
					return -1;
				st->zero_pages += j - i;
				sent += 17; /* a marker: no page data */
			} else {
				/* the CRC of what is written (the guest may be
				 * writing the page meanwhile: copy it first) */
				uint8_t *copy = g_malloc(n);
				memcpy(copy, p, n);
				int rc = put_block_header(out, KL_REC_RAM, gpa, n, true, NULL) < 0 ||
					 kl_mig_write(out, copy, n) < 0 ||
					 put_crc(out, (uint32_t)crc32_z(0, copy, n)) < 0;
				g_free(copy);
				if (rc)
					return -1;
				st->normal_pages += j - i;
				st->ram_bytes += n;
				sent += n;
			}
			c->page = j;
		}
		c->region++;
		c->page = 0;
	}
	c->region = 0;
	c->page = 0;
	kl_mig_ram_holes_free(c); /* a pass ended: later passes read the pages */
	return 1;
}

/* gpa/len of a RAM or ZERO record: page-aligned, non-empty, inside one RAM
 * region.  Returns the host address or NULL with *err. */
static uint8_t *check_block(struct kl_vm *vm, uint64_t gpa, uint64_t len, char **err)
{
	uint8_t *hva = NULL;
	if (len == 0 || (gpa | len) % KL_MIG_PAGE)
		*err = g_strdup_printf("RAM record at 0x%llx of %llu bytes is not page-aligned",
				       (unsigned long long)gpa, (unsigned long long)len);
	else if (!(hva = kl_gpa_to_hva(&vm->mem, gpa, len)))
		*err = g_strdup_printf("RAM record 0x%llx+0x%llx is outside guest RAM",
				       (unsigned long long)gpa, (unsigned long long)len);
	return hva;
}

/* Map [hva, hva+len) privately from the file at off.  true when done. */
static bool map_block(struct kl_vm *vm, struct kl_mig_in *in, uint8_t *hva, uint64_t len)
{
	if (!in->map_ram || !in->file || in->fd < 0 || vm->mem.memfd >= 0 || !vm->mem.map_base)
		return false;
	if (in->pos % KL_MIG_PAGE || (uintptr_t)hva % KL_MIG_PAGE)
		return false;
	struct stat sb;
	/* a mapping past the end of the file would SIGBUS on first touch */
	if (fstat(in->fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size < in->pos ||
	    (uint64_t)sb.st_size - in->pos < len)
		return false;
	void *p = mmap(hva, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
		       in->fd, (off_t)in->pos);
	if (p == MAP_FAILED)
		return false;
	madvise(p, len, MADV_DONTDUMP);
	ram_file_mapped = true;
	in->mapped++;
	return true;
}

/* Discard guest RAM (shmem: MADV_REMOVE) so that only pages this load
 * writes can be non-zero; where that is not possible every page counts. */
void kl_mig_ram_load_begin(struct kl_vm *vm, struct kl_mig_in *in)
{
	for (unsigned i = 0; i < vm->mem.nregions && i < 8; i++) {
		const struct kl_mem_region *r = &vm->mem.regions[i];
		in->written[i] = NULL;
		/* never a shared file's pages: they may be the source's RAM
		 * (x-ignore-shared), or another process's */
		if (!vm->mem.map_base || vm->mem.file_shared ||
		    madvise(r->hva, r->size, MADV_REMOVE) < 0)
			continue;
		in->written[i] = g_new0(uint64_t, (r->size / KL_MIG_PAGE + 63) / 64);
	}
}

void kl_mig_ram_load_end(struct kl_vm *vm, struct kl_mig_in *in)
{
	(void)vm;
	for (unsigned i = 0; i < 8; i++) {
		g_free(in->written[i]);
		in->written[i] = NULL;
	}
}

/* the region's bitmap and the page index of gpa in it */
static uint64_t *written_map(struct kl_vm *vm, struct kl_mig_in *in, uint64_t gpa, uint64_t *page)
{
	for (unsigned i = 0; i < vm->mem.nregions && i < 8; i++) {
		const struct kl_mem_region *r = &vm->mem.regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			*page = (gpa - r->gpa) / KL_MIG_PAGE;
			return in->written[i];
		}
	}
	return NULL;
}

int kl_mig_ram_load(struct kl_vm *vm, struct kl_mig_in *in, char **err)
{
	uint8_t h[20];
	if (kl_mig_read(in, h, sizeof(h), err) < 0)
		return -1;
	uint64_t gpa = kl_mig_get_u64(h), len = kl_mig_get_u64(h + 8);
	uint32_t pad = kl_mig_get_u32(h + 16);
	if (pad >= KL_MIG_PAGE) {
		*err = g_strdup_printf("RAM record padding of %u bytes (at most %u)", pad, KL_MIG_PAGE - 1);
		return -1;
	}
	uint8_t *hva = check_block(vm, gpa, len, err);
	if (!hva || kl_mig_skip_in(in, pad, err) < 0)
		return -1;
	if (map_block(vm, in, hva, len)) {
		/* the data is not read now: the guest's first touch loads it
		 * (its CRC is not checked on this path; docs/migration.md) */
		if (kl_mig_skip_in(in, len, err) < 0)
			return -1;
		uint8_t c[4];
		return kl_mig_read(in, c, 4, err);
	}
	uint64_t page = 0;
	uint64_t *w = written_map(vm, in, gpa, &page);
	for (uint64_t k = 0; w && k < len / KL_MIG_PAGE; k++)
		w[(page + k) / 64] |= 1ull << ((page + k) % 64);
	uint32_t got = 0;
	if (vm->mem.file_shared) {
		/* RAM another process may be running in (the source itself,
		 * when the same file is shared without x-ignore-shared): the
		 * CRC is of the bytes received, through a bounce buffer, not
		 * of RAM that may already have changed again */
		enum { CHUNK = 64 * KL_MIG_PAGE };
		uint8_t *buf = g_malloc(CHUNK);
		for (uint64_t done = 0; done < len;) {
			size_t n = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
			if (kl_mig_read(in, buf, n, err) < 0) {
				g_free(buf);
				return -1;
			}
			got = (uint32_t)crc32_z(got, buf, n);
			memcpy(hva + done, buf, n);
			done += n;
		}
		g_free(buf);
	} else {
		if (kl_mig_read(in, hva, len, err) < 0)
			return -1;
		got = (uint32_t)crc32_z(0, hva, len);
	}
	uint8_t c[4];
	if (kl_mig_read(in, c, 4, err) < 0)
		return -1;
	uint32_t want = kl_mig_get_u32(c);
	if (want != got) {
		*err = g_strdup_printf("RAM record at 0x%llx: CRC-32 %08x, the stream says %08x",
				       (unsigned long long)gpa, got, want);
		return -1;
	}
	return 0;
}

int kl_mig_zero_load(struct kl_vm *vm, struct kl_mig_in *in, char **err)
{
	uint8_t h[16];
	if (kl_mig_read(in, h, sizeof(h), err) < 0)
		return -1;
	uint64_t gpa = kl_mig_get_u64(h), len = kl_mig_get_u64(h + 8);
	uint8_t *hva = check_block(vm, gpa, len, err);
	if (!hva)
		return -1;
	/* only pages this load wrote can be non-zero (and, without the
	 * bitmap, any page: those are checked, and cleared if need be) */
	uint64_t page = 0;
	uint64_t *w = written_map(vm, in, gpa, &page);
	for (uint64_t k = 0, off = 0; off < len; k++, off += KL_MIG_PAGE) {
		uint64_t p = page + k;
		if (w && !((w[p / 64] >> (p % 64)) & 1))
			continue;
		if (!kl_mig_page_is_zero(hva + off))
			memset(hva + off, 0, KL_MIG_PAGE);
	}
	return 0;
}

/* The identity of a shared RAM file: device, inode, size. */
static bool shared_file_id(const struct kl_guest_mem *m, uint64_t id[3])
{
	struct stat sb;
	if (!m->file_shared || m->memfd < 0 || fstat(m->memfd, &sb) < 0)
		return false;
	id[0] = (uint64_t)sb.st_dev;
	id[1] = (uint64_t)sb.st_ino;
	id[2] = m->map_size;
	return true;
}

int kl_mig_shared_save(struct kl_vm *vm, struct kl_mig_out *out)
{
	uint64_t id[3];
	if (!shared_file_id(&vm->mem, id)) {
		if (!out->err)
			out->err = g_strdup("x-ignore-shared: guest RAM is not a shared file");
		return -1;
	}
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	kl_vms_put_u8(&o, KL_REC_SHARED);
	for (unsigned i = 0; i < 3; i++)
		kl_vms_put_u64(&o, id[i]);
	int r = kl_mig_write_vms(out, &o);
	kl_vms_out_free(&o);
	return r;
}

int kl_mig_shared_load(struct kl_vm *vm, struct kl_mig_in *in, char **err)
{
	uint8_t h[24];
	if (kl_mig_read(in, h, sizeof(h), err) < 0)
		return -1;
	uint64_t id[3];
	if (!shared_file_id(&vm->mem, id)) {
		*err = g_strdup("the source left guest RAM out of the stream (x-ignore-shared): this "
				"destination's RAM must map the same file "
				"(-object memory-backend-file,share=on,mem-path=...)");
		return -1;
	}
	if (kl_mig_get_u64(h) != id[0] || kl_mig_get_u64(h + 8) != id[1] ||
	    kl_mig_get_u64(h + 16) != id[2]) {
		*err = g_strdup_printf("the source left guest RAM out of the stream (x-ignore-shared) "
				       "but its RAM file (device 0x%llx, inode %llu, %llu bytes) is not "
				       "this destination's (device 0x%llx, inode %llu, %llu bytes)",
				       (unsigned long long)kl_mig_get_u64(h),
				       (unsigned long long)kl_mig_get_u64(h + 8),
				       (unsigned long long)kl_mig_get_u64(h + 16),
				       (unsigned long long)id[0], (unsigned long long)id[1],
				       (unsigned long long)id[2]);
		return -1;
	}
	return 0;
}
