/* Unit tests for the kernel loaders (src/hw/boot*.c) against a real Debian
 * bzImage (KVMLITE_TEST_BZIMAGE, fetched by scripts/setup.d/fetch-test-kernel.sh),
 * a PVH ELF built here at run time, the real probe guest when
 * KVMLITE_TEST_PROBE_ELF is set, and hostile inputs. */
#include <check.h>

#include "../kl_check.h"
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmlite/boot.h"
#include "kvmlite/mem.h"

#define MiB (1024ULL * 1024)
#define RAM_SIZE (256 * MiB)

static struct kl_guest_mem mem;
static uint8_t *ram;
static GPtrArray *tmpfiles;

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

static uint8_t *gpa(uint64_t a, uint64_t len)
{
	uint8_t *p = kl_gpa_to_hva(&mem, a, len);
	ck_assert_msg(p != NULL, "0x%llx+0x%llx not in RAM", (unsigned long long)a,
		      (unsigned long long)len);
	return p;
}

static void mem_setup_size(uint64_t size)
{
	ram = g_malloc0(size);
	kl_mem_init_empty(&mem);
	ck_assert_int_eq(kl_mem_add_region(&mem, 0, size, ram), 0);
	tmpfiles = g_ptr_array_new_with_free_func(g_free);
}

static void setup(void)
{
	mem_setup_size(RAM_SIZE);
}

static void teardown(void)
{
	for (unsigned i = 0; i < tmpfiles->len; i++)
		unlink(g_ptr_array_index(tmpfiles, i));
	g_ptr_array_free(tmpfiles, TRUE);
	g_free(ram);
	ram = NULL;
}

static char *write_tmp(const void *data, size_t len)
{
	char *path = g_build_filename(g_get_tmp_dir(), "kvmlite-boot-XXXXXX", NULL);
	int fd = g_mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	g_ptr_array_add(tmpfiles, path);
	return path;
}

static const char *bzimage_path(void)
{
	const char *p = getenv("KVMLITE_TEST_BZIMAGE");
	return p && *p ? p : "/var/cache/kvmlite-test/vmlinuz";
}

/* The real kernel: missing = failure (scripts/setup provides it). */
static uint8_t *read_bzimage(size_t *len)
{
	gchar *data = NULL;
	gsize n = 0;
	GError *ge = NULL;
	if (!g_file_get_contents(bzimage_path(), &data, &n, &ge))
		ck_abort_msg("test kernel %s missing (run scripts/setup): %s", bzimage_path(),
			     ge->message);
	*len = n;
	return (uint8_t *)data;
}

static int load(const char *kernel, const char *initrd, const char *cmdline, unsigned ncpus,
		struct kvm_regs *regs, struct kvm_sregs *sregs, struct kl_boot_info *info,
		bool acpi, char **err)
{
	struct kl_boot_config cfg = { .kernel = kernel, .initrd = initrd, .cmdline = cmdline };
	struct kl_boot_opts opts = { .no_acpi = !acpi };
	memset(regs, 0, sizeof(*regs));
	memset(sregs, 0, sizeof(*sregs));
	*err = NULL;
	return kl_boot_load_ex(&mem, &cfg, ncpus, &opts, regs, sregs, info, err);
}

/* A load that must fail with a one-line error naming `mention`. */
static void expect_fail(const char *kernel, const char *initrd, const char *cmdline,
			const char *mention, const char *also)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char *err = NULL;
	int r = load(kernel, initrd, cmdline, 1, &regs, &sregs, NULL, false, &err);
	ck_assert_int_eq(r, -1);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, mention) != NULL, "error '%s' does not name '%s'", err, mention);
	ck_assert_msg(strchr(err, '\n') == NULL, "error '%s' is not one line", err);
	if (also)
		ck_assert_msg(strstr(err, also) != NULL, "error '%s' does not say '%s'", err, also);
	g_free(err);
}

/* Decode a GDT descriptor and compare with the KVM segment. */
static void check_gdt_matches(const struct kvm_sregs *s, const struct kvm_segment *seg)
{
	ck_assert_uint_lt(seg->selector + 7, s->gdt.limit + 1);
	uint64_t d = rd64(gpa(s->gdt.base + seg->selector, 8));
	uint64_t base = ((d >> 16) & 0xffffff) | ((d >> 56) & 0xff) << 24;
	uint64_t lim = (d & 0xffff) | ((d >> 48) & 0xf) << 16;
	unsigned access = (d >> 40) & 0xff, flags = (d >> 52) & 0xf;
	ck_assert_uint_eq(base, seg->base);
	if (flags & 8)
		lim = lim << 12 | 0xfff;
	ck_assert_uint_eq(lim, seg->limit);
	ck_assert_uint_eq(access & 0xf, seg->type);
	ck_assert_uint_eq((access >> 4) & 1, seg->s);
	ck_assert_uint_eq((access >> 7) & 1, seg->present);
	ck_assert_uint_eq((flags >> 1) & 1, seg->l);
	ck_assert_uint_eq((flags >> 2) & 1, seg->db);
	ck_assert_uint_eq((flags >> 3) & 1, seg->g);
}

/* Walk the 4-level page tables: physical address of va, or ~0 if unmapped. */
static uint64_t translate(uint64_t cr3, uint64_t va)
{
	uint64_t e = rd64(gpa((cr3 & ~0xfffULL) + ((va >> 39) & 511) * 8, 8));
	if (!(e & 1))
		return ~0ULL;
	e = rd64(gpa((e & 0xffffffffff000ULL) + ((va >> 30) & 511) * 8, 8));
	if (!(e & 1))
		return ~0ULL;
	if (e & 0x80)
		return (e & 0xfffffc0000000ULL) | (va & 0x3fffffff);
	e = rd64(gpa((e & 0xffffffffff000ULL) + ((va >> 21) & 511) * 8, 8));
	if (!(e & 1))
		return ~0ULL;
	ck_assert_msg(e & 2, "PD entry for 0x%llx not writable", (unsigned long long)va);
	if (e & 0x80)
		return (e & 0xfffffffe00000ULL) | (va & 0x1fffff);
	e = rd64(gpa((e & 0xffffffffff000ULL) + ((va >> 12) & 511) * 8, 8));
	if (!(e & 1))
		return ~0ULL;
	return (e & 0xffffffffff000ULL) | (va & 0xfff);
}

static void check_e820(const uint8_t *table, unsigned stride, unsigned n)
{
	struct kl_e820_entry want[KL_E820_MAX];
	int wn = kl_mem_e820(&mem, want, KL_E820_MAX);
	ck_assert_int_ge(wn, 2);
	ck_assert_uint_eq(n, (unsigned)wn);
	bool have_high = false;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *e = table + i * stride;
		ck_assert_uint_eq(rd64(e), want[i].addr);
		ck_assert_uint_eq(rd64(e + 8), want[i].size);
		ck_assert_uint_eq(rd32(e + 16), want[i].type);
		if (rd64(e) == 0x100000 && rd32(e + 16) == KL_E820_RAM)
			have_high = rd64(e + 8) == RAM_SIZE - 0x100000;
	}
	ck_assert_msg(have_high, "no RAM entry for [1 MiB, 256 MiB)");
	ck_assert_uint_eq(rd64(table), 0);
	ck_assert_uint_eq(rd32(table + 16), KL_E820_RAM);
}

/* ---- bzImage ------------------------------------------------------------ */

START_TEST(test_bzimage_header)
{
	size_t len;
	uint8_t *k = read_bzimage(&len);
	ck_assert_uint_gt(len, 1 * MiB);
	ck_assert_mem_eq(k + 0x202, "HdrS", 4);
	ck_assert_uint_ge(rd16(k + 0x206), 0x20f);
	ck_assert_uint_ne(rd16(k + 0x236) & 1, 0); /* XLF_KERNEL_64 */
	ck_assert_uint_ne(k[0x1f1], 0);
	ck_assert_uint_eq(rd16(k + 0x1fe), 0xaa55);
	char *err = NULL;
	ck_assert_int_eq(kl_boot_probe(k, len, &err), KL_KERNEL_BZIMAGE);
	ck_assert_ptr_null(err);
	g_free(k);
}
END_TEST

START_TEST(test_bzimage_load)
{
	size_t len;
	uint8_t *k = read_bzimage(&len);
	uint8_t pattern[100000];
	for (unsigned i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7 + 3);
	const char *initrd = write_tmp(pattern, sizeof(pattern));
	const char *cmdline = "console=ttyS0 root=/dev/vda rw quiet";
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kl_boot_info info;
	char *err;
	int r = load(bzimage_path(), initrd, cmdline, 2, &regs, &sregs, &info, false, &err);
	ck_assert_msg(r == 0, "load failed: %s", err);

	unsigned setup = ((k[0x1f1] ? k[0x1f1] : 4) + 1) * 512;
	uint64_t pref = rd64(k + 0x258), init_size = rd32(k + 0x260);
	ck_assert_int_eq(info.kind, KL_KERNEL_BZIMAGE);
	ck_assert_uint_eq(info.kernel_addr, pref); /* relocatable, 256 MiB: fits at pref */
	ck_assert_uint_ge(info.kernel_end, pref + init_size);
	ck_assert_mem_eq(gpa(pref, len - setup), k + setup, len - setup);

	/* registers */
	ck_assert_uint_eq(regs.rip, pref + 0x200);
	ck_assert_uint_eq(info.entry, regs.rip);
	ck_assert_uint_eq(regs.rsi, KL_BOOT_PARAMS_ADDR);
	ck_assert_uint_eq(regs.rflags, 2);
	ck_assert_uint_eq(sregs.cr0 & 0x80000001ULL, 0x80000001ULL);
	ck_assert_uint_eq(sregs.cr0 & 0x60000000ULL, 0); /* caches enabled */
	ck_assert_uint_eq(sregs.cr4 & 0x20, 0x20);
	ck_assert_uint_eq(sregs.efer & 0x500, 0x500);
	ck_assert_uint_eq(sregs.cr3, KL_BOOT_PML4_ADDR);
	ck_assert_uint_eq(sregs.cs.selector, 0x10);
	ck_assert_uint_eq(sregs.cs.l, 1);
	ck_assert_uint_eq(sregs.cs.db, 0);
	ck_assert_uint_eq(sregs.cs.type, 0xb);
	ck_assert_uint_eq(sregs.cs.present, 1);
	ck_assert_uint_eq(sregs.cs.s, 1);
	const struct kvm_segment *ds[] = { &sregs.ds, &sregs.es, &sregs.ss, &sregs.fs, &sregs.gs };
	for (unsigned i = 0; i < 5; i++) {
		ck_assert_uint_eq(ds[i]->selector, 0x18);
		ck_assert_uint_eq(ds[i]->type, 0x3);
		ck_assert_uint_eq(ds[i]->present, 1);
		ck_assert_uint_eq(ds[i]->base, 0);
		ck_assert_uint_eq(ds[i]->limit, 0xffffffff);
		check_gdt_matches(&sregs, ds[i]);
	}
	check_gdt_matches(&sregs, &sregs.cs);
	ck_assert_uint_eq(sregs.gdt.base, KL_BOOT_GDT_ADDR);
	ck_assert_uint_eq(rd64(gpa(KL_BOOT_GDT_ADDR, 8)), 0); /* null descriptor */
	ck_assert_uint_eq(sregs.tr.type, 0xb);

	/* identity map of [0, 4 GiB) with 2 MiB pages, nothing above */
	for (uint64_t va = 0; va < KL_4G; va += 0x1fffff * 3 + 0x1234)
		ck_assert_uint_eq(translate(sregs.cr3, va), va);
	ck_assert_uint_eq(translate(sregs.cr3, KL_4G - 1), KL_4G - 1);
	ck_assert_uint_eq(translate(sregs.cr3, KL_LAPIC_BASE), KL_LAPIC_BASE);
	ck_assert_uint_eq(translate(sregs.cr3, KL_4G), ~0ULL);
	ck_assert_uint_eq(translate(sregs.cr3, 1ULL << 39), ~0ULL);

	/* boot_params */
	uint8_t *bp = gpa(KL_BOOT_PARAMS_ADDR, 4096);
	ck_assert_mem_eq(bp + 0x202, "HdrS", 4);
	ck_assert_uint_eq(rd16(bp + 0x206), rd16(k + 0x206));
	ck_assert_uint_eq(bp[0x1f1], k[0x1f1]);
	ck_assert_uint_eq(bp[0x210], 0xff);                   /* type_of_loader */
	ck_assert_uint_eq(bp[0x211] & 0x81, 0x81);            /* LOADED_HIGH | CAN_USE_HEAP */
	ck_assert_uint_ne(rd16(bp + 0x224), 0);               /* heap_end_ptr */
	ck_assert_uint_lt(KL_BOOT_PARAMS_ADDR + rd16(bp + 0x224) + 0x200, KL_BOOT_CMDLINE_ADDR + 1);
	uint32_t cl = rd32(bp + 0x228);
	ck_assert_uint_eq(cl, KL_BOOT_CMDLINE_ADDR);
	ck_assert_str_eq((const char *)gpa(cl, strlen(cmdline) + 1), cmdline);
	ck_assert_uint_eq(rd64(bp + 0x70), 0);                /* no ACPI by default */
	uint32_t ri = rd32(bp + 0x218), rs = rd32(bp + 0x21c);
	ck_assert_uint_eq(rs, sizeof(pattern));
	ck_assert_uint_eq(ri & 0xfff, 0);
	ck_assert_uint_le(ri + rs, RAM_SIZE);
	ck_assert_uint_gt(ri + rs + 0x1000, RAM_SIZE);        /* placed at the top */
	ck_assert_uint_le((uint64_t)ri + rs - 1, rd32(k + 0x22c)); /* initrd_addr_max */
	ck_assert_uint_ge(ri, pref + init_size);              /* above the kernel */
	ck_assert_uint_eq(info.initrd_addr, ri);
	ck_assert_mem_eq(gpa(ri, rs), pattern, rs);
	check_e820(bp + 0x2d0, 20, bp[0x1e8]);

	/* MP table for 2 CPUs written too */
	ck_assert_mem_eq(gpa(KL_MPTABLE_ADDR, 4), "_MP_", 4);
	ck_assert_uint_eq(rd16(gpa(rd32(gpa(KL_MPTABLE_ADDR + 4, 4)) + 34, 2)), 2 + 146);
	g_free(k);
}
END_TEST

START_TEST(test_bzimage_acpi_no_initrd)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kl_boot_info info;
	char *err = NULL;
	/* plain kl_boot_load: ACPI tables by default */
	struct kl_boot_config cfg = { .kernel = bzimage_path() };
	int r = kl_boot_load(&mem, &cfg, 1, &regs, &sregs, &err);
	ck_assert_msg(r == 0, "load failed: %s", err);
	uint8_t *bp = gpa(KL_BOOT_PARAMS_ADDR, 4096);
	ck_assert_uint_eq(rd64(bp + 0x70), KL_ACPI_TABLES_ADDR);
	memset(bp, 0, 4096);
	r = load(bzimage_path(), NULL, NULL, 1, &regs, &sregs, &info, true, &err);
	ck_assert_msg(r == 0, "load failed: %s", err);
	ck_assert_uint_eq(rd32(bp + 0x218), 0);
	ck_assert_uint_eq(rd32(bp + 0x21c), 0);
	ck_assert_uint_eq(info.initrd_addr, 0);
	ck_assert_str_eq((const char *)gpa(KL_BOOT_CMDLINE_ADDR, 1), "");
	ck_assert_uint_eq(rd64(bp + 0x70), KL_ACPI_TABLES_ADDR);
	ck_assert_uint_eq(info.rsdp_addr, KL_ACPI_TABLES_ADDR);
	ck_assert_mem_eq(gpa(KL_ACPI_TABLES_ADDR, 8), "RSD PTR ", 8);
}
END_TEST

START_TEST(test_bzimage_small_ram)
{
	/* 40 MiB: too small for pref_address (16 MiB) + init_size (~51 MiB) and
	 * for 2 MiB + init_size: a clear error, not a partial boot. */
	teardown();
	mem_setup_size(40 * MiB);
	expect_fail(bzimage_path(), NULL, NULL, bzimage_path(), "-m too small");
	teardown();
	/* 8 MiB: the file itself does not fit */
	mem_setup_size(8 * MiB);
	expect_fail(bzimage_path(), NULL, NULL, bzimage_path(), "larger than guest RAM");
}
END_TEST

START_TEST(test_bzimage_fallback_address)
{
	/* 72 MiB: pref (16 MiB) + init_size does not fit, 2 MiB + init_size does. */
	size_t len;
	uint8_t *k = read_bzimage(&len);
	uint64_t init_size = rd32(k + 0x260), align = rd32(k + 0x230);
	g_free(k);
	uint64_t size = ((0x1000000 + init_size) & ~(MiB - 1)) - MiB;
	teardown();
	mem_setup_size(size);
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kl_boot_info info;
	char *err;
	int r = load(bzimage_path(), NULL, "x", 1, &regs, &sregs, &info, false, &err);
	ck_assert_msg(r == 0, "load failed: %s", err);
	ck_assert_uint_lt(info.kernel_addr, 0x1000000);
	ck_assert_uint_eq(info.kernel_addr % align, 0);
	ck_assert_uint_ge(info.kernel_addr, MiB);
	ck_assert_uint_le(info.kernel_end, size);
	ck_assert_uint_eq(regs.rip, info.kernel_addr + 0x200);
}
END_TEST

START_TEST(test_bzimage_cmdline_too_long)
{
	char *big = g_malloc(4096);
	memset(big, 'a', 4095);
	big[4095] = 0;
	expect_fail(bzimage_path(), NULL, big, bzimage_path(), "command line");
	g_free(big);
}
END_TEST

START_TEST(test_bzimage_initrd_errors)
{
	/* initrd bigger than the RAM left: sparse 300 MiB file */
	char *path = g_build_filename(g_get_tmp_dir(), "kvmlite-initrd-XXXXXX", NULL);
	int fd = g_mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 300 * MiB), 0);
	close(fd);
	g_ptr_array_add(tmpfiles, path);
	expect_fail(bzimage_path(), path, NULL, path, "do not fit");
	expect_fail(bzimage_path(), "/nonexistent/initrd.img", NULL, "/nonexistent/initrd.img",
		    "No such file");
	const char *empty = write_tmp("", 0);
	expect_fail(bzimage_path(), empty, NULL, empty, "empty");
}
END_TEST

/* Variants of the real header, truncated to keep them small. */
START_TEST(test_bzimage_hostile_headers)
{
	size_t len;
	uint8_t *k = read_bzimage(&len);
	char *p;

	p = write_tmp(k, 0x1f0);                       /* header cut off before HdrS */
	expect_fail(p, NULL, NULL, p, "not a kernel");
	p = write_tmp(k, 0x210);                       /* header cut in the middle */
	expect_fail(p, NULL, NULL, p, "truncated");
	p = write_tmp(k, 0x300);                       /* setup code cut */
	expect_fail(p, NULL, NULL, p, "setup_sects");
	p = write_tmp(k, len / 2);                     /* kernel body cut */
	expect_fail(p, NULL, NULL, p, "truncated");

	uint8_t *c = g_memdup2(k, len);
	c[0x1f1] = 0xff;                               /* setup_sects huge, small file */
	p = write_tmp(c, 100000);
	expect_fail(p, NULL, NULL, p, "setup_sects");
	memcpy(c, k, len);
	wr16(c + 0x206, 0x205);                        /* protocol too old */
	p = write_tmp(c, len);
	expect_fail(p, NULL, NULL, p, "too old");
	memcpy(c, k, len);
	wr16(c + 0x236, rd16(k + 0x236) & ~1);         /* no XLF_KERNEL_64 */
	p = write_tmp(c, len);
	expect_fail(p, NULL, NULL, p, "64-bit");
	memcpy(c, k, len);
	c[0x201] = 0x10;                               /* header ends before cmdline_size */
	p = write_tmp(c, len);
	expect_fail(p, NULL, NULL, p, "malformed");
	memcpy(c, k, len);
	wr32(c + 0x1f4, 0xfffffff);                    /* syssize beyond the file */
	p = write_tmp(c, len);
	expect_fail(p, NULL, NULL, p, "truncated");
	memcpy(c, k, len);
	wr32(c + 0x22c, 0x1000);                       /* initrd_addr_max below the kernel */
	p = write_tmp(c, len);
	const char *rd = write_tmp("initrd", 6);
	expect_fail(p, rd, NULL, rd, "do not fit");
	g_free(c);
	g_free(k);
}
END_TEST

START_TEST(test_bad_files)
{
	expect_fail("/nonexistent/vmlinuz", NULL, NULL, "/nonexistent/vmlinuz", "No such file");
	const char *empty = write_tmp("", 0);
	expect_fail(empty, NULL, NULL, empty, "empty");
	const char *txt = "This is a text file, not a kernel.\n";
	const char *t = write_tmp(txt, strlen(txt));
	expect_fail(t, NULL, NULL, t, "not a kernel");
	expect_fail("/bin/true", NULL, NULL, "/bin/true", "PVH");
	expect_fail(g_get_tmp_dir(), NULL, NULL, g_get_tmp_dir(), "not a regular file");
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char *err = NULL;
	struct kl_boot_config cfg = { 0 };
	ck_assert_int_eq(kl_boot_load(&mem, &cfg, 1, &regs, &sregs, &err), -1);
	ck_assert_ptr_nonnull(err);
	g_free(err);
	err = NULL;
	ck_assert_int_eq(kl_boot_probe("", 0, &err), KL_KERNEL_UNKNOWN);
	ck_assert_ptr_nonnull(err);
	g_free(err);
	ck_assert_int_eq(kl_boot_probe(txt, strlen(txt), NULL), KL_KERNEL_UNKNOWN);
	/* too many CPUs for the MP table / MADT */
	struct kl_boot_config ok = { .kernel = bzimage_path() };
	err = NULL;
	ck_assert_int_eq(kl_boot_load(&mem, &ok, 255, &regs, &sregs, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "255 CPUs"));
	g_free(err);
}
END_TEST

/* ---- PVH ELF ------------------------------------------------------------ */

struct elf_opts {
	bool elf32;
	bool no_note;
	bool note_in_section;   /* note only via SHT_NOTE, no PT_NOTE */
	unsigned descsz;        /* 4 (default) or 8 */
	uint64_t paddr;         /* default 0x100000 */
	uint64_t entry_off;     /* entry = paddr + entry_off (default 0x10) */
	uint64_t p_offset;      /* override of the PT_LOAD offset */
	uint64_t filesz, memsz; /* overrides */
	uint64_t phoff;         /* override */
};

#define CODE_OFF 0x200
#define CODE_SIZE 0x100
#define BSS_SIZE 0x3000

/* ELF with PT_LOAD (code 0x100 bytes + bss) and PT_NOTE "Xen"/18. */
static uint8_t *build_elf(const struct elf_opts *o, size_t *len)
{
	size_t n = CODE_OFF + CODE_SIZE;
	uint8_t *b = g_malloc0(n);
	uint64_t paddr = o->paddr ? o->paddr : 0x100000;
	uint64_t entry = paddr + (o->entry_off ? o->entry_off : 0x10);
	unsigned descsz = o->descsz ? o->descsz : 4;
	uint64_t noff = 0x100, nsize = 12 + 4 + ((descsz + 3) & ~3u);
	uint64_t shoff = 0x180;

	memcpy(b, "\x7f" "ELF", 4);
	b[4] = o->elf32 ? 1 : 2;
	b[5] = 1;
	b[6] = 1;
	wr16(b + 16, 2);                               /* ET_EXEC */
	wr16(b + 18, o->elf32 ? 3 : 62);
	wr32(b + 20, 1);
	unsigned phnum = o->note_in_section ? 1 : 2;
	uint64_t phoff = o->phoff ? o->phoff : (o->elf32 ? 52 : 64);
	if (o->elf32) {
		wr32(b + 24, (uint32_t)entry);
		wr32(b + 28, (uint32_t)phoff);
		wr32(b + 32, (uint32_t)shoff);
		wr16(b + 40, 52);
		wr16(b + 42, 32);
		wr16(b + 44, (uint16_t)phnum);
		wr16(b + 46, 40);
		wr16(b + 48, 2);
	} else {
		wr64(b + 24, entry);
		wr64(b + 32, phoff);
		wr64(b + 40, shoff);
		wr16(b + 52, 64);
		wr16(b + 54, 56);
		wr16(b + 56, (uint16_t)phnum);
		wr16(b + 58, 64);
		wr16(b + 60, 2);
	}
	uint64_t off = o->p_offset ? o->p_offset : CODE_OFF;
	uint64_t fsz = o->filesz ? o->filesz : CODE_SIZE;
	uint64_t msz = o->memsz ? o->memsz : CODE_SIZE + BSS_SIZE;
	uint64_t ph = o->elf32 ? 52 : 64;
	for (unsigned i = 0; i < phnum && ph + (o->elf32 ? 32 : 56) <= 0x100; i++) {
		uint8_t *h = b + ph + i * (o->elf32 ? 32 : 56);
		uint32_t type = i == 0 ? 1 : 4;
		uint64_t po = i == 0 ? off : noff, pa = i == 0 ? paddr : 0;
		uint64_t fs = i == 0 ? fsz : nsize, ms = i == 0 ? msz : nsize;
		wr32(h, type);
		if (o->elf32) {
			wr32(h + 4, (uint32_t)po);
			wr32(h + 8, (uint32_t)pa);
			wr32(h + 12, (uint32_t)pa);
			wr32(h + 16, (uint32_t)fs);
			wr32(h + 20, (uint32_t)ms);
			wr32(h + 24, 5);
			wr32(h + 28, 4);
		} else {
			wr32(h + 4, 5);
			wr64(h + 8, po);
			wr64(h + 16, pa);
			wr64(h + 24, pa);
			wr64(h + 32, fs);
			wr64(h + 40, ms);
			wr64(h + 48, 4);
		}
	}
	/* section headers: null + SHT_NOTE over the note */
	uint8_t *sh = b + shoff + (o->elf32 ? 40 : 64);
	wr32(sh + 4, 7);
	if (o->elf32) {
		wr32(sh + 16, (uint32_t)noff);
		wr32(sh + 20, (uint32_t)nsize);
		wr32(sh + 32, 4);
	} else {
		wr64(sh + 24, noff);
		wr64(sh + 32, nsize);
		wr64(sh + 48, 4);
	}
	/* the note */
	uint8_t *nt = b + noff;
	wr32(nt, 4);
	wr32(nt + 4, descsz);
	wr32(nt + 8, o->no_note ? 17 : 18);
	memcpy(nt + 12, "Xen", 4);
	if (descsz == 8)
		wr64(nt + 16, entry);
	else
		wr32(nt + 16, (uint32_t)entry);
	for (unsigned i = 0; i < CODE_SIZE; i++)
		b[CODE_OFF + i] = (uint8_t)(0x90 + i);
	*len = n;
	return b;
}

static char *elf_file(const struct elf_opts *o)
{
	size_t n;
	uint8_t *b = build_elf(o, &n);
	char *p = write_tmp(b, n);
	g_free(b);
	return p;
}

static void check_pvh_state(const struct kvm_regs *regs, const struct kvm_sregs *sregs,
			    uint64_t entry, const char *cmdline)
{
	ck_assert_uint_eq(regs->rip, entry);
	ck_assert_uint_eq(regs->rbx, KL_BOOT_PVH_INFO_ADDR);
	ck_assert_uint_eq(regs->rflags, 2);
	ck_assert_uint_eq(sregs->cr0, 0x11);              /* PE | ET, paging off */
	ck_assert_uint_eq(sregs->cr4, 0);
	ck_assert_uint_eq(sregs->efer, 0);
	ck_assert_uint_eq(sregs->cs.selector, 0x8);
	ck_assert_uint_eq(sregs->cs.type, 0xb);
	ck_assert_uint_eq(sregs->cs.db, 1);
	ck_assert_uint_eq(sregs->cs.l, 0);
	ck_assert_uint_eq(sregs->cs.g, 1);
	ck_assert_uint_eq(sregs->cs.base, 0);
	ck_assert_uint_eq(sregs->cs.limit, 0xffffffff);
	check_gdt_matches(sregs, &sregs->cs);
	const struct kvm_segment *ds[] = { &sregs->ds, &sregs->es, &sregs->ss, &sregs->fs,
					   &sregs->gs };
	for (unsigned i = 0; i < 5; i++) {
		ck_assert_uint_eq(ds[i]->selector, 0x10);
		ck_assert_uint_eq(ds[i]->type, 0x3);
		ck_assert_uint_eq(ds[i]->db, 1);
		check_gdt_matches(sregs, ds[i]);
	}
	ck_assert_uint_eq(sregs->tr.type, 0xb);
	ck_assert_uint_eq(sregs->tr.limit, 0x67);
	check_gdt_matches(sregs, &sregs->tr);

	uint8_t *si = gpa(KL_BOOT_PVH_INFO_ADDR, 56);
	ck_assert_uint_eq(rd32(si), 0x336ec578);
	ck_assert_uint_eq(rd32(si + 4), 1);
	ck_assert_str_eq((const char *)gpa(rd64(si + 24), strlen(cmdline) + 1), cmdline);
	uint32_t n = rd32(si + 48);
	check_e820(gpa(rd64(si + 40), n * 24), 24, n);
}

START_TEST(test_pvh_synthetic)
{
	bool elf32 = _i & 1, desc8 = _i & 2;
	struct elf_opts o = { .elf32 = elf32, .descsz = desc8 ? 8 : 4, .paddr = 0x200000 };
	char *k = elf_file(&o);
	size_t n;
	uint8_t *img = build_elf(&o, &n);
	char *err = NULL;
	ck_assert_int_eq(kl_boot_probe(img, n, &err), KL_KERNEL_PVH_ELF);
	memset(ram + 0x200000, 0xaa, 0x10000);        /* bss must be zeroed */
	char initrd[5000];
	memset(initrd, 0x5a, sizeof(initrd));
	char *rd = write_tmp(initrd, sizeof(initrd));
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kl_boot_info info;
	int r = load(k, rd, "console=ttyS0 pvh", 1, &regs, &sregs, &info, false, &err);
	ck_assert_msg(r == 0, "load failed: %s", err);
	ck_assert_int_eq(info.kind, KL_KERNEL_PVH_ELF);
	check_pvh_state(&regs, &sregs, 0x200010, "console=ttyS0 pvh");
	ck_assert_mem_eq(gpa(0x200000, CODE_SIZE), img + CODE_OFF, CODE_SIZE);
	uint8_t *bss = gpa(0x200000 + CODE_SIZE, BSS_SIZE);
	for (unsigned i = 0; i < BSS_SIZE; i++)
		ck_assert_uint_eq(bss[i], 0);
	ck_assert_uint_eq(*gpa(0x200000 + CODE_SIZE + BSS_SIZE, 1), 0xaa); /* no more */
	uint8_t *si = gpa(KL_BOOT_PVH_INFO_ADDR, 56);
	ck_assert_uint_eq(rd32(si + 12), 1);
	uint8_t *mod = gpa(rd64(si + 16), 32);
	ck_assert_uint_eq(rd64(mod + 8), sizeof(initrd));
	ck_assert_uint_eq(rd64(mod) & 0xfff, 0);
	ck_assert_uint_ge(rd64(mod), 0x200000 + CODE_SIZE + BSS_SIZE);
	ck_assert_mem_eq(gpa(rd64(mod), sizeof(initrd)), initrd, sizeof(initrd));
	ck_assert_uint_eq(rd64(si + 32), 0);              /* no ACPI by default */
	g_free(img);
}
END_TEST

START_TEST(test_pvh_section_note_acpi)
{
	struct elf_opts o = { .note_in_section = true };
	char *k = elf_file(&o);
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char *err;
	int r = load(k, NULL, NULL, 3, &regs, &sregs, NULL, true, &err);
	ck_assert_msg(r == 0, "load failed: %s", err);
	check_pvh_state(&regs, &sregs, 0x100010, "");
	uint8_t *si = gpa(KL_BOOT_PVH_INFO_ADDR, 56);
	ck_assert_uint_eq(rd32(si + 12), 0);
	ck_assert_uint_eq(rd64(si + 16), 0);
	ck_assert_uint_eq(rd64(si + 32), KL_ACPI_TABLES_ADDR);
}
END_TEST

START_TEST(test_pvh_hostile)
{
	struct { struct elf_opts o; const char *say; } cases[] = {
		{ { .paddr = 0x20000000 }, "outside guest RAM" },     /* above 256 MiB */
		{ { .paddr = 0xfffff000 }, "outside guest RAM" },     /* crosses 4 GiB */
		{ { .paddr = 0xe8000 }, "overlaps" },                 /* ACPI/MP area */
		{ { .paddr = 0x20000 }, "overlaps" },                 /* command line */
		{ { .p_offset = 0x10000 }, "past the end" },
		{ { .p_offset = ~0ULL - 8 }, "past the end" },
		{ { .filesz = 0x1000000 }, "p_filesz" },
		{ { .memsz = ~0ULL - 0x10 }, "" },
		{ { .no_note = true }, "PVH" },
		{ { .descsz = 3 }, "3-byte" },
		{ { .entry_off = 0x100000 }, "not inside" },
		{ { .phoff = 0x10000 }, "program headers" },
		{ { .elf32 = true, .paddr = 0x40000000 }, "outside guest RAM" },
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
		char *k = elf_file(&cases[i].o);
		expect_fail(k, NULL, NULL, k, cases[i].say);
	}
	/* truncated ELF headers */
	size_t n;
	uint8_t *img = build_elf(&(struct elf_opts){ 0 }, &n);
	for (size_t cut = 4; cut < 0x120; cut += 7) {
		char *k = write_tmp(img, cut);
		expect_fail(k, NULL, NULL, k, "");
	}
	/* command line longer than the boot area allows */
	char *big = g_malloc(KL_BOOT_CMDLINE_MAX + 10);
	memset(big, 'b', KL_BOOT_CMDLINE_MAX + 9);
	big[KL_BOOT_CMDLINE_MAX + 9] = 0;
	char *pk = elf_file(&(struct elf_opts){ 0 });
	expect_fail(pk, NULL, big, pk, "command line");
	g_free(big);
	/* initrd that does not fit above the segment */
	char *k = elf_file(&(struct elf_opts){ .paddr = RAM_SIZE - 0x4000 });
	char *rd = write_tmp(img, n);
	expect_fail(k, rd, NULL, rd, "do not fit");
	g_free(img);
}
END_TEST

/* Random corruption of both kinds: -1 with a message or 0, never a crash
 * (run under ASan/UBSan by scripts/test). */
START_TEST(test_mutations)
{
	size_t klen, elen;
	uint8_t *k = read_bzimage(&klen);
	uint8_t *e = build_elf(&(struct elf_opts){ 0 }, &elen);
	size_t hlen = 0x8000; /* header + setup of the bzImage */
	uint8_t *h = g_memdup2(k, hlen);
	GRand *rnd = g_rand_new_with_seed(1234);
	for (int iter = 0; iter < 400; iter++) {
		bool elf = iter & 1;
		size_t n = elf ? elen : hlen;
		uint8_t *c = g_memdup2(elf ? e : h, n);
		int flips = g_rand_int_range(rnd, 1, 6);
		for (int f = 0; f < flips; f++) {
			size_t pos = elf ? (size_t)g_rand_int_range(rnd, 0, (gint32)n)
					 : (size_t)g_rand_int_range(rnd, 0x1f0, 0x270);
			c[pos] = (uint8_t)g_rand_int(rnd);
		}
		char *err = NULL;
		enum kl_kernel_kind kind = kl_boot_probe(c, n, &err);
		if (kind == KL_KERNEL_UNKNOWN)
			ck_assert_ptr_nonnull(err);
		g_free(err);
		char *p = write_tmp(c, n);
		struct kvm_regs regs;
		struct kvm_sregs sregs;
		err = NULL;
		int r = load(p, NULL, "m", 1, &regs, &sregs, NULL, false, &err);
		if (r < 0) {
			ck_assert_ptr_nonnull(err);
			ck_assert_ptr_nonnull(strstr(err, p));
		}
		g_free(err);
		unlink(p);
		g_free(c);
	}
	g_rand_free(rnd);
	g_free(h);
	g_free(e);
	g_free(k);
}
END_TEST

/* The team's probe guest (tests/guest), when meson passes its path. */
START_TEST(test_probe_elf)
{
	const char *p = getenv("KVMLITE_TEST_PROBE_ELF");
	ck_assert_msg(p && g_file_test(p, G_FILE_TEST_IS_REGULAR), "probe ELF '%s' missing",
		      p ? p : "(unset)");
	gchar *data;
	gsize n;
	ck_assert(g_file_get_contents(p, &data, &n, NULL));
	char *err = NULL;
	ck_assert_msg(kl_boot_probe(data, n, &err) == KL_KERNEL_PVH_ELF, "probe: %s", err);
	g_free(data);
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kl_boot_info info;
	int r = load(p, NULL, "probe", 2, &regs, &sregs, &info, false, &err);
	ck_assert_msg(r == 0, "load failed: %s", err);
	check_pvh_state(&regs, &sregs, info.entry, "probe");
	ck_assert_uint_ge(info.entry, info.kernel_addr);
	ck_assert_uint_lt(info.entry, info.kernel_end);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("boot");
	TCase *tc = tcase_create("bzimage");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_bzimage_header);
	tcase_add_test(tc, test_bzimage_load);
	tcase_add_test(tc, test_bzimage_acpi_no_initrd);
	tcase_add_test(tc, test_bzimage_small_ram);
	tcase_add_test(tc, test_bzimage_fallback_address);
	tcase_add_test(tc, test_bzimage_cmdline_too_long);
	tcase_add_test(tc, test_bzimage_initrd_errors);
	tcase_add_test(tc, test_bzimage_hostile_headers);
	tcase_add_test(tc, test_bad_files);
	suite_add_tcase(s, tc);

	tc = tcase_create("pvh");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_pvh_synthetic, 0, 4);
	tcase_add_test(tc, test_pvh_section_note_acpi);
	tcase_add_test(tc, test_pvh_hostile);
	tcase_add_test(tc, test_mutations);
	suite_add_tcase(s, tc);

	if (getenv("KVMLITE_TEST_PROBE_ELF")) {
		tc = tcase_create("probe_elf");
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, test_probe_elf);
		suite_add_tcase(s, tc);
	}

	return kl_check_run(s);
}
