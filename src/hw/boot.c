/* Kernel loading: file reading, kind detection and dispatch to the bzImage
 * (boot_bzimage.c) and PVH ELF (boot_pvh.c) loaders; shared helpers for the
 * command line, the initrd and flat segments.  See include/kvmlite/boot.h
 * for the guest-physical layout. */
#include "boot_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Open a regular, non-empty file; *size = its length.  what = "kernel" or
 * "initrd" for the messages. */
static int open_input(const char *what, const char *path, int *fdp, uint64_t *size,
		      char **err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*err = g_strdup_printf("%s '%s': %s", what, path, g_strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		*err = g_strdup_printf("%s '%s': %s", what, path, g_strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*err = g_strdup_printf("%s '%s': not a regular file", what, path);
		close(fd);
		return -1;
	}
	if (st.st_size == 0) {
		*err = g_strdup_printf("%s '%s': file is empty", what, path);
		close(fd);
		return -1;
	}
	*fdp = fd;
	*size = (uint64_t)st.st_size;
	return 0;
}

int kl_boot_check_file(const char *what, const char *path, char **err)
{
	int fd;
	uint64_t sz;
	if (open_input(what, path, &fd, &sz, err) < 0)
		return -1;
	close(fd);
	return 0;
}

/* Read exactly len bytes from fd into buf. */
static int read_all(int fd, void *buf, uint64_t len, const char *what, const char *path,
		    char **err)
{
	uint8_t *p = buf;
	while (len > 0) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
		ssize_t r = read(fd, p, chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*err = g_strdup_printf("%s '%s': read error: %s", what, path,
					       g_strerror(errno));
			return -1;
		}
		if (r == 0) {
			*err = g_strdup_printf("%s '%s': file shrank while being read", what, path);
			return -1;
		}
		p += r;
		len -= (uint64_t)r;
	}
	return 0;
}

static const char *kind_name(enum kl_kernel_kind k)
{
	return k == KL_KERNEL_BZIMAGE ? "bzImage" : k == KL_KERNEL_PVH_ELF ? "PVH ELF" : "unknown";
}

static enum kl_kernel_kind probe(const void *img, size_t len, char **err);

enum kl_kernel_kind kl_boot_probe(const void *img, size_t len, char **err)
{
	char *why = NULL;
	enum kl_kernel_kind k = probe(img, len, &why);
	if (err)
		*err = why;
	else
		g_free(why);
	return k;
}

enum kl_kernel_kind kl_boot_read_kernel(const char *path, void **imgp, size_t *lenp, char **err)
{
	int fd;
	uint64_t sz;
	if (open_input("kernel", path, &fd, &sz, err) < 0)
		return KL_KERNEL_UNKNOWN;
	if (sz > SIZE_MAX / 2) {
		*err = g_strdup_printf("kernel '%s': %llu bytes is too large", path,
				       (unsigned long long)sz);
		close(fd);
		return KL_KERNEL_UNKNOWN;
	}
	uint8_t *img = g_try_malloc((size_t)sz);
	if (!img) {
		*err = g_strdup_printf("kernel '%s': out of memory reading %llu bytes", path,
				       (unsigned long long)sz);
		close(fd);
		return KL_KERNEL_UNKNOWN;
	}
	int r = read_all(fd, img, sz, "kernel", path, err);
	close(fd);
	if (r < 0) {
		g_free(img);
		return KL_KERNEL_UNKNOWN;
	}
	char *why = NULL;
	enum kl_kernel_kind kind = kl_boot_probe(img, (size_t)sz, &why);
	if (kind == KL_KERNEL_UNKNOWN) {
		*err = g_strdup_printf("kernel '%s': %s", path, why);
		g_free(why);
		g_free(img);
		return KL_KERNEL_UNKNOWN;
	}
	*imgp = img;
	*lenp = (size_t)sz;
	return kind;
}

static enum kl_kernel_kind probe(const void *img, size_t len, char **err)
{
	const uint8_t *p = img;
	char *why = NULL;

	if (!img || len == 0) {
		*err = g_strdup("file is empty");
		return KL_KERNEL_UNKNOWN;
	}
	if (len >= 4 && memcmp(p, "\x7f" "ELF", 4) == 0) {
		uint32_t entry;
		if (kl_pvh_check(p, len, &entry, &why) == 0)
			return KL_KERNEL_PVH_ELF;
		*err = why ? why : g_strdup("unusable ELF file");
		return KL_KERNEL_UNKNOWN;
	}
	if (kl_bzimage_check(p, len, &why) == 0)
		return KL_KERNEL_BZIMAGE;
	if (why) {
		*err = why;
		return KL_KERNEL_UNKNOWN;
	}
	*err = g_strdup_printf("not a kernel: neither a bzImage (no \"HdrS\" at 0x202) nor an ELF "
			       "(%zu bytes)", len);
	return KL_KERNEL_UNKNOWN;
}

/* End of the RAM block that contains 1 MiB, capped at 4 GiB. */
static int low_ram_end(const struct kl_guest_mem *m, uint64_t *end)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct kl_mem_region *r = &m->regions[i];
		if (r->gpa <= 0x100000 && 0x100000 - r->gpa < r->size) {
			uint64_t e = r->gpa + r->size;
			*end = e > KL_4G ? KL_4G : e;
			return 0;
		}
	}
	return -1;
}

long kl_boot_put_cmdline(struct kl_boot_ctx *c, uint64_t max_len, char **err)
{
	const char *s = c->cfg->cmdline ? c->cfg->cmdline : "";
	size_t n = strlen(s);
	if (max_len > KL_BOOT_CMDLINE_MAX - 1)
		max_len = KL_BOOT_CMDLINE_MAX - 1;
	if (n > max_len) {
		*err = g_strdup_printf("kernel '%s': command line is %zu bytes, the kernel accepts "
				       "at most %llu", c->cfg->kernel, n,
				       (unsigned long long)max_len);
		return -1;
	}
	if (kl_mem_write(c->m, KL_BOOT_CMDLINE_ADDR, s, n + 1) < 0) {
		*err = g_strdup_printf("kernel '%s': no guest RAM for the command line at 0x%llx",
				       c->cfg->kernel, (unsigned long long)KL_BOOT_CMDLINE_ADDR);
		return -1;
	}
	return (long)(n + 1);
}

int kl_boot_put_initrd(struct kl_boot_ctx *c, uint64_t floor, uint64_t limit, uint64_t *addr,
		       uint64_t *size, char **err)
{
	const char *path = c->cfg->initrd;
	*addr = *size = 0;
	if (!path)
		return 0;
	int fd = -1;
	uint64_t sz;
	if (c->cfg->initrd_image)
		sz = c->cfg->initrd_len;
	else if (open_input("initrd", path, &fd, &sz, err) < 0)
		return -1;
	floor = (floor + 0xfff) & ~0xfffULL;
	uint64_t a = 0;
	if (limit < sz || ((limit - sz) & ~0xfffULL) < floor) {
		*err = g_strdup_printf("initrd '%s': %llu bytes do not fit in guest RAM between the "
				       "kernel end 0x%llx and 0x%llx (-m too small?)",
				       path, (unsigned long long)sz, (unsigned long long)floor,
				       (unsigned long long)limit);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	a = (limit - sz) & ~0xfffULL;
	uint8_t *hva = kl_gpa_to_hva(c->m, a, sz);
	if (!hva) {
		*err = g_strdup_printf("initrd '%s': 0x%llx+0x%llx is not guest RAM", path,
				       (unsigned long long)a, (unsigned long long)sz);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (fd < 0) {
		memcpy(hva, c->cfg->initrd_image, sz);
	} else {
		int r = read_all(fd, hva, sz, "initrd", path, err);
		close(fd);
		if (r < 0)
			return -1;
	}
	*addr = a;
	*size = sz;
	return 0;
}

void kl_boot_flat_seg(struct kvm_segment *s, uint16_t sel, bool code, bool l)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = code ? 0xb : 0x3; /* execute/read accessed : read/write accessed */
	s->present = 1;
	s->dpl = 0;
	s->db = l ? 0 : 1;
	s->s = 1;
	s->l = l;
	s->g = 1;
}

void kl_boot_tss_seg(struct kvm_segment *s, uint16_t sel)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0x67;
	s->selector = sel;
	s->type = 0xb; /* busy 32/64-bit TSS */
	s->present = 1;
	s->s = 0;
}

uint64_t kl_boot_gdt_entry(const struct kvm_segment *s)
{
	uint64_t lim = s->g ? s->limit >> 12 : s->limit;
	uint64_t access = (uint64_t)(s->type & 0xf) | (uint64_t)(s->s & 1) << 4 |
			  (uint64_t)(s->dpl & 3) << 5 | (uint64_t)(s->present & 1) << 7;
	uint64_t flags = (uint64_t)(s->avl & 1) | (uint64_t)(s->l & 1) << 1 |
			 (uint64_t)(s->db & 1) << 2 | (uint64_t)(s->g & 1) << 3;
	return (lim & 0xffff) | (s->base & 0xffffff) << 16 | access << 40 |
	       ((lim >> 16) & 0xf) << 48 | flags << 52 | ((s->base >> 24) & 0xff) << 56;
}

int kl_boot_load_ex(const struct kl_guest_mem *m, const struct kl_boot_config *cfg,
		    unsigned ncpus, const struct kl_boot_opts *opts, struct kvm_regs *regs,
		    struct kvm_sregs *sregs, struct kl_boot_info *info, char **err)
{
	static const struct kl_boot_opts defaults = { .no_acpi = false };
	if (!opts)
		opts = &defaults;
	struct kl_boot_info dummy;
	if (!info)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	if (!cfg || !cfg->kernel) {
		*err = g_strdup("no kernel given (-kernel is required)");
		return -1;
	}
	const char *path = cfg->kernel;
	uint64_t low_end;
	if (low_ram_end(m, &low_end) < 0) {
		*err = g_strdup_printf("kernel '%s': guest RAM does not cover 1 MiB", path);
		return -1;
	}

	void *owned = NULL;
	const uint8_t *img = cfg->image;
	size_t sz = cfg->image_len;
	enum kl_kernel_kind kind;
	if (img) {
		char *why = NULL;
		kind = kl_boot_probe(img, sz, &why);
		if (kind == KL_KERNEL_UNKNOWN) {
			*err = g_strdup_printf("kernel '%s': %s", path, why);
			g_free(why);
			return -1;
		}
	} else {
		kind = kl_boot_read_kernel(path, &owned, &sz, err);
		if (kind == KL_KERNEL_UNKNOWN)
			return -1;
		img = owned;
	}
	if (sz > m->ram_size) {
		*err = g_strdup_printf("kernel '%s': %llu bytes is larger than guest RAM "
				       "(%llu MiB)", path, (unsigned long long)sz,
				       (unsigned long long)(m->ram_size >> 20));
		g_free(owned);
		return -1;
	}
	int r;

	/* Fixed tables first (0xe0000-0xfffff); the loaders keep clear of them. */
	uint64_t rsdp = 0;
	if (kl_mptable_write(m, ncpus, err) < 0 ||
	    (!opts->no_acpi && kl_acpi_write_ex(m, ncpus, !opts->no_pci, opts->acpi_virtio_mmio, &rsdp, err) < 0)) {
		g_free(owned);
		return -1;
	}

	struct kl_boot_ctx c = {
		.m = m, .cfg = cfg, .img = img, .len = sz, .low_end = low_end,
		.rsdp = rsdp, .info = info,
	};
	info->kind = kind;
	info->rsdp_addr = rsdp;
	if (kind == KL_KERNEL_BZIMAGE)
		r = kl_bzimage_load(&c, regs, sregs, err);
	else
		r = kl_pvh_load(&c, regs, sregs, err);
	g_free(owned);
	if (r == 0)
		g_debug("boot: %s '%s' entry 0x%llx", kind_name(kind), path,
			(unsigned long long)info->entry);
	return r;
}

int kl_boot_load(const struct kl_guest_mem *m, const struct kl_boot_config *cfg, unsigned ncpus,
		 struct kvm_regs *regs, struct kvm_sregs *sregs, char **err)
{
	return kl_boot_load_ex(m, cfg, ncpus, NULL, regs, sregs, NULL, err);
}
