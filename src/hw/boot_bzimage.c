/* Linux bzImage loader, x86 boot protocol >= 2.06 (Documentation/x86/boot.rst),
 * entered through the 64-bit entry point (startup_64 = load address + 0x200)
 * with identity page tables for the first 4 GiB.  Layout: include/kvmlite/boot.h. */
#include "boot_priv.h"

#include <glib.h>
#include <string.h>

/* Setup header offsets (from the start of the file / boot_params). */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_SYSSIZE 0x1f4
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_CODE32_START 0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_MIN_ALIGNMENT 0x235
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
/* A 2.06 header reaches at least to the end of cmdline_size. */
#define HDR_MIN_END 0x23c

/* boot_params (zero page) fields outside the setup header. */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define BP_SIZE 0x1000

#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x01

#define PG_P 0x1ULL
#define PG_RW 0x2ULL
#define PG_PS 0x80ULL

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_NE 0x20ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

#define SEL_CODE64 0x10
#define SEL_DATA 0x18
#define SEL_TSS 0x20

static uint64_t setup_bytes(const uint8_t *img)
{
	unsigned sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	return ((uint64_t)sects + 1) * 512;
}

static uint64_t hdr_end(const uint8_t *img)
{
	return 0x202 + (uint64_t)img[0x201];
}

int kl_bzimage_check(const uint8_t *img, size_t len, char **err)
{
	if (len < HDR_MAGIC + 4 || memcmp(img + HDR_MAGIC, "HdrS", 4) != 0)
		return -1; /* not a bzImage at all: no message */
	if (len < HDR_VERSION + 2) {
		*err = g_strdup_printf("bzImage header truncated (%zu bytes)", len);
		return -1;
	}
	uint16_t ver = kl_le16(img + HDR_VERSION);
	if (ver < 0x206) {
		*err = g_strdup_printf("bzImage boot protocol %u.%02u is too old (need >= 2.06)",
				       ver >> 8, ver & 0xff);
		return -1;
	}
	uint64_t hend = hdr_end(img);
	if (hend < HDR_MIN_END || len < hend) {
		*err = g_strdup_printf("bzImage setup header truncated or malformed (ends at 0x%llx, "
				       "file is %zu bytes)", (unsigned long long)hend, len);
		return -1;
	}
	if (kl_le16(img + HDR_BOOT_FLAG) != 0xaa55) {
		*err = g_strdup_printf("bzImage boot_flag is 0x%04x, not 0xaa55",
				       kl_le16(img + HDR_BOOT_FLAG));
		return -1;
	}
	uint64_t setup = setup_bytes(img);
	if (setup < hend || setup >= len) {
		*err = g_strdup_printf("bzImage setup_sects %u: setup code (%llu bytes) runs past "
				       "the end of the file (%zu bytes)", img[HDR_SETUP_SECTS],
				       (unsigned long long)setup, len);
		return -1;
	}
	uint64_t syssize = (uint64_t)kl_le32(img + HDR_SYSSIZE) * 16;
	if (syssize > len - setup) {
		*err = g_strdup_printf("bzImage truncated: header says %llu bytes of kernel after "
				       "the setup code, the file has %llu",
				       (unsigned long long)syssize,
				       (unsigned long long)(len - setup));
		return -1;
	}
	return 0;
}

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Pick the load address of the protected-mode kernel and the end of the
 * memory it needs; -1 when it does not fit below low_end. */
static int place_kernel(struct kl_boot_ctx *c, uint64_t need, uint64_t *load, uint64_t *end,
			char **err)
{
	const uint8_t *img = c->img;
	uint16_t ver = kl_le16(img + HDR_VERSION);
	bool reloc = img[HDR_RELOCATABLE] != 0;
	uint64_t pref = ver >= 0x20a ? kl_le64(img + HDR_PREF_ADDRESS) : 0;
	uint64_t a = 0x100000;

	if (reloc && pref >= 0x100000 && pref < c->low_end && need <= c->low_end - pref) {
		a = pref;
	} else if (reloc) {
		uint64_t align = kl_le32(img + HDR_KERNEL_ALIGNMENT);
		if (!pow2(align) || align > (1ULL << 30)) {
			unsigned mina = ver >= 0x20a ? img[HDR_MIN_ALIGNMENT] : 0;
			align = mina >= 12 && mina <= 30 ? 1ULL << mina : 0x100000;
		}
		a = (0x100000 + align - 1) & ~(align - 1);
	}
	uint64_t e = a + need;
	/* A non-relocatable kernel moves itself to pref_address. */
	if (!reloc && pref > a && pref + need > e)
		e = pref + need;
	if (e > c->low_end || e < a) {
		*err = g_strdup_printf("kernel '%s': needs %llu MiB of RAM from 0x%llx but guest RAM "
				       "below 4 GiB ends at 0x%llx (-m too small?)", c->cfg->kernel,
				       (unsigned long long)((need + 0xfffff) >> 20),
				       (unsigned long long)a, (unsigned long long)c->low_end);
		return -1;
	}
	*load = a;
	*end = e;
	return 0;
}

/* PML4 at KL_BOOT_PML4_ADDR, PDPT right after, then 4 PDs of 2 MiB pages:
 * identity map of [0, 4 GiB). */
static int write_page_tables(const struct kl_guest_mem *m)
{
	uint64_t pml4 = KL_BOOT_PML4_ADDR, pdpt = pml4 + 0x1000, pd = pdpt + 0x1000;
	uint8_t *t = kl_gpa_to_hva(m, pml4, 6 * 0x1000);
	if (!t)
		return -1;
	memset(t, 0, 6 * 0x1000);
	kl_put64(t, pdpt | PG_P | PG_RW);
	for (unsigned i = 0; i < 4; i++) {
		kl_put64(t + 0x1000 + i * 8, (pd + i * 0x1000) | PG_P | PG_RW);
		for (unsigned j = 0; j < 512; j++) {
			uint64_t phys = ((uint64_t)i * 512 + j) << 21;
			kl_put64(t + 0x2000 + i * 0x1000 + j * 8, phys | PG_P | PG_RW | PG_PS);
		}
	}
	return 0;
}

int kl_bzimage_load(struct kl_boot_ctx *c, struct kvm_regs *regs, struct kvm_sregs *sregs,
		    char **err)
{
	const uint8_t *img = c->img;
	const char *path = c->cfg->kernel;
	char *why = NULL;

	if (kl_bzimage_check(img, c->len, &why) < 0) {
		*err = g_strdup_printf("kernel '%s': %s", path, why ? why : "not a bzImage");
		g_free(why);
		return -1;
	}
	uint16_t ver = kl_le16(img + HDR_VERSION);
	uint16_t xlf = ver >= 0x20c ? kl_le16(img + HDR_XLOADFLAGS) : 0;
	if (!(xlf & XLF_KERNEL_64)) {
		*err = g_strdup_printf("kernel '%s': bzImage (boot protocol %u.%02u) has no 64-bit "
				       "entry point (XLF_KERNEL_64)", path, ver >> 8, ver & 0xff);
		return -1;
	}
	if (!(img[HDR_LOADFLAGS] & LOADED_HIGH)) {
		*err = g_strdup_printf("kernel '%s': zImage (loaded low) is not supported", path);
		return -1;
	}

	uint64_t setup = setup_bytes(img);
	uint64_t pm_size = c->len - setup;
	uint64_t need = pm_size;
	if (ver >= 0x20a && kl_le32(img + HDR_INIT_SIZE) > need)
		need = kl_le32(img + HDR_INIT_SIZE);
	need = (need + 0xfff) & ~0xfffULL;
	uint64_t load, kend;
	if (place_kernel(c, need, &load, &kend, err) < 0)
		return -1;
	if (kl_mem_write(c->m, load, img + setup, pm_size) < 0) {
		*err = g_strdup_printf("kernel '%s': 0x%llx+0x%llx is not guest RAM", path,
				       (unsigned long long)load, (unsigned long long)pm_size);
		return -1;
	}

	long cmdlen = kl_boot_put_cmdline(c, kl_le32(img + HDR_CMDLINE_SIZE), err);
	if (cmdlen < 0)
		return -1;

	uint64_t ilimit = (uint64_t)kl_le32(img + HDR_INITRD_ADDR_MAX) + 1;
	if (ilimit > c->low_end)
		ilimit = c->low_end;
	uint64_t iaddr, isize;
	if (kl_boot_put_initrd(c, kend, ilimit, &iaddr, &isize, err) < 0)
		return -1;

	/* Zero page: the setup header from the file, then our fields. */
	uint8_t *bp = g_malloc0(BP_SIZE);
	uint64_t hend = hdr_end(img);
	memcpy(bp + HDR_SETUP_SECTS, img + HDR_SETUP_SECTS, hend - HDR_SETUP_SECTS);
	bp[HDR_TYPE_OF_LOADER] = 0xff;
	bp[HDR_LOADFLAGS] |= CAN_USE_HEAP;
	kl_put32(bp + HDR_CODE32_START, (uint32_t)load);
	/* Offset from the real-mode code (which we do not run) minus 0x200, per
	 * boot.rst; with the zero page at 0x10000 this ends below the command
	 * line at 0x20000. */
	kl_put16(bp + HDR_HEAP_END_PTR, 0xfe00 - 0x200);
	kl_put32(bp + HDR_CMD_LINE_PTR, (uint32_t)KL_BOOT_CMDLINE_ADDR);
	kl_put32(bp + HDR_RAMDISK_IMAGE, (uint32_t)iaddr);
	kl_put32(bp + HDR_RAMDISK_SIZE, (uint32_t)isize);
	kl_put64(bp + BP_ACPI_RSDP_ADDR, c->rsdp);
	struct kl_e820_entry e820[KL_E820_MAX];
	int n = kl_mem_e820(c->m, e820, KL_E820_MAX);
	if (n < 0)
		n = 0;
	if (n > BP_E820_MAX)
		n = BP_E820_MAX;
	for (int i = 0; i < n; i++) {
		uint8_t *e = bp + BP_E820_TABLE + i * 20;
		kl_put64(e, e820[i].addr);
		kl_put64(e + 8, e820[i].size);
		kl_put32(e + 16, e820[i].type);
	}
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	int wr = kl_mem_write(c->m, KL_BOOT_PARAMS_ADDR, bp, BP_SIZE);
	g_free(bp);
	if (wr < 0 || write_page_tables(c->m) < 0) {
		*err = g_strdup_printf("kernel '%s': guest RAM below 1 MiB is missing", path);
		return -1;
	}

	/* GDT: null, unused, code64 (0x10), data (0x18), 64-bit TSS (0x20, 16 bytes). */
	struct kvm_segment code, data, tss;
	kl_boot_flat_seg(&code, SEL_CODE64, true, true);
	kl_boot_flat_seg(&data, SEL_DATA, false, false);
	kl_boot_tss_seg(&tss, SEL_TSS);
	uint8_t gdt[6 * 8] = {0};
	kl_put64(gdt + SEL_CODE64, kl_boot_gdt_entry(&code));
	kl_put64(gdt + SEL_DATA, kl_boot_gdt_entry(&data));
	kl_put64(gdt + SEL_TSS, kl_boot_gdt_entry(&tss)); /* upper half (base 63:32) = 0 */
	if (kl_mem_write(c->m, KL_BOOT_GDT_ADDR, gdt, sizeof(gdt)) < 0) {
		*err = g_strdup_printf("kernel '%s': guest RAM below 1 MiB is missing", path);
		return -1;
	}

	sregs->cs = code;
	sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
	sregs->tr = tss;
	sregs->gdt.base = KL_BOOT_GDT_ADDR;
	sregs->gdt.limit = sizeof(gdt) - 1;
	sregs->cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
	sregs->cr3 = KL_BOOT_PML4_ADDR;
	sregs->cr4 = CR4_PAE;
	sregs->efer = EFER_LME | EFER_LMA;

	memset(regs, 0, sizeof(*regs));
	regs->rip = load + 0x200;
	regs->rsi = KL_BOOT_PARAMS_ADDR;
	regs->rflags = 2;

	c->info->entry = regs->rip;
	c->info->kernel_addr = load;
	c->info->kernel_end = kend;
	c->info->initrd_addr = iaddr;
	c->info->initrd_size = isize;
	return 0;
}
