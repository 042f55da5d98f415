/* PVH loader: ELF32/ELF64 image with a Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY
 * (name "Xen", type 18), entered in 32-bit flat protected mode with paging
 * off and EBX = hvm_start_info (Xen public arch-x86/hvm/start_info.h,
 * version 1 with a memory map).  Layout: include/kvmlite/boot.h. */
#include "boot_priv.h"

#include <glib.h>
#include <string.h>

#define PT_LOAD 1
#define PT_NOTE 4
#define SHT_NOTE 7
#define EM_386 3
#define EM_X86_64 62
#define ET_EXEC 2
#define ET_DYN 3
#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define HVM_START_MAGIC 0x336ec578u
#define HVM_START_INFO_SIZE 56
#define HVM_MODLIST_ENTRY_SIZE 32
#define HVM_MEMMAP_ENTRY_SIZE 24

#define SEL_CODE32 0x08
#define SEL_DATA 0x10
#define SEL_TSS 0x18

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL

/* Parsed ELF header, class-independent. */
struct elf {
	const uint8_t *img;
	size_t len;
	bool is64;
	uint64_t phoff, shoff;
	unsigned phentsize, phnum, shentsize, shnum;
};

struct phdr {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz, align;
};

static void get_phdr(const struct elf *e, unsigned i, struct phdr *p)
{
	const uint8_t *h = e->img + e->phoff + (uint64_t)i * e->phentsize;
	p->type = kl_le32(h);
	if (e->is64) {
		p->offset = kl_le64(h + 8);
		p->paddr = kl_le64(h + 24);
		p->filesz = kl_le64(h + 32);
		p->memsz = kl_le64(h + 40);
		p->align = kl_le64(h + 48);
	} else {
		p->offset = kl_le32(h + 4);
		p->paddr = kl_le32(h + 12);
		p->filesz = kl_le32(h + 16);
		p->memsz = kl_le32(h + 20);
		p->align = kl_le32(h + 28);
	}
}

/* off + size within the file, without overflow. */
static bool in_file(const struct elf *e, uint64_t off, uint64_t size)
{
	return off <= e->len && size <= e->len - off;
}

static int parse_ehdr(const uint8_t *img, size_t len, struct elf *e, char **err)
{
	memset(e, 0, sizeof(*e));
	e->img = img;
	e->len = len;
	if (len < 52) {
		*err = g_strdup_printf("ELF header truncated (%zu bytes)", len);
		return -1;
	}
	if (img[4] != 1 && img[4] != 2) {
		*err = g_strdup_printf("ELF class %u is neither ELF32 nor ELF64", img[4]);
		return -1;
	}
	e->is64 = img[4] == 2;
	if (img[5] != 1) {
		*err = g_strdup("ELF is not little-endian");
		return -1;
	}
	if (e->is64 && len < 64) {
		*err = g_strdup_printf("ELF64 header truncated (%zu bytes)", len);
		return -1;
	}
	uint16_t type = kl_le16(img + 16), machine = kl_le16(img + 18);
	if (type != ET_EXEC && type != ET_DYN) {
		*err = g_strdup_printf("ELF type %u is not an executable", type);
		return -1;
	}
	if (machine != EM_386 && machine != EM_X86_64) {
		*err = g_strdup_printf("ELF machine %u is not x86", machine);
		return -1;
	}
	if (e->is64) {
		e->phoff = kl_le64(img + 32);
		e->shoff = kl_le64(img + 40);
		e->phentsize = kl_le16(img + 54);
		e->phnum = kl_le16(img + 56);
		e->shentsize = kl_le16(img + 58);
		e->shnum = kl_le16(img + 60);
	} else {
		e->phoff = kl_le32(img + 28);
		e->shoff = kl_le32(img + 32);
		e->phentsize = kl_le16(img + 42);
		e->phnum = kl_le16(img + 44);
		e->shentsize = kl_le16(img + 46);
		e->shnum = kl_le16(img + 48);
	}
	unsigned min_ph = e->is64 ? 56 : 32, min_sh = e->is64 ? 64 : 40;
	if (e->phnum == 0 || e->phnum == 0xffff) {
		*err = g_strdup_printf("ELF has %s program headers", e->phnum ? "too many" : "no");
		return -1;
	}
	if (e->phentsize < min_ph ||
	    !in_file(e, e->phoff, (uint64_t)e->phnum * e->phentsize)) {
		*err = g_strdup_printf("ELF program headers (%u x %u bytes at 0x%llx) lie outside "
				       "the file (%zu bytes)", e->phnum, e->phentsize,
				       (unsigned long long)e->phoff, len);
		return -1;
	}
	/* Section headers are optional; ignore a table that is unusable. */
	if (e->shoff == 0 || e->shnum == 0 || e->shentsize < min_sh ||
	    !in_file(e, e->shoff, (uint64_t)e->shnum * e->shentsize))
		e->shnum = 0;
	return 0;
}

/* Search [off, off+size) for the Xen PHYS32_ENTRY note.  1 = found, 0 = not
 * there, -1 = malformed note (err set). */
static int scan_notes(const struct elf *e, uint64_t off, uint64_t size, uint64_t align,
		      uint32_t *entry, char **err)
{
	if (!in_file(e, off, size))
		return 0; /* the caller validates note bounds where it matters */
	uint64_t a = align == 8 ? 8 : 4;
	const uint8_t *p = e->img + off;
	uint64_t pos = 0;
	while (size - pos >= 12) {
		uint64_t namesz = kl_le32(p + pos), descsz = kl_le32(p + pos + 4);
		uint32_t type = kl_le32(p + pos + 8);
		uint64_t name_off = pos + 12;
		uint64_t desc_off = name_off + ((namesz + a - 1) & ~(a - 1));
		uint64_t next = desc_off + ((descsz + a - 1) & ~(a - 1));
		if (desc_off > size || descsz > size - desc_off)
			return 0; /* truncated note: stop scanning */
		if (namesz == 4 && memcmp(p + name_off, "Xen", 4) == 0 &&
		    type == XEN_ELFNOTE_PHYS32_ENTRY) {
			uint64_t v;
			if (descsz == 4) {
				v = kl_le32(p + desc_off);
			} else if (descsz == 8) {
				v = kl_le64(p + desc_off);
			} else {
				*err = g_strdup_printf("PVH entry note has a %llu-byte value "
						       "(expected 4 or 8)",
						       (unsigned long long)descsz);
				return -1;
			}
			if (v >= KL_4G) {
				*err = g_strdup_printf("PVH entry 0x%llx is above 4 GiB",
						       (unsigned long long)v);
				return -1;
			}
			*entry = (uint32_t)v;
			return 1;
		}
		if (next <= pos)
			return 0;
		pos = next;
		if (pos > size)
			return 0;
	}
	return 0;
}

static int find_pvh_entry(const struct elf *e, uint32_t *entry, char **err)
{
	for (unsigned i = 0; i < e->phnum; i++) {
		struct phdr ph;
		get_phdr(e, i, &ph);
		if (ph.type != PT_NOTE)
			continue;
		int r = scan_notes(e, ph.offset, ph.filesz, ph.align, entry, err);
		if (r != 0)
			return r;
	}
	for (unsigned i = 0; i < e->shnum; i++) {
		const uint8_t *s = e->img + e->shoff + (uint64_t)i * e->shentsize;
		if (kl_le32(s + 4) != SHT_NOTE)
			continue;
		uint64_t off, size, align;
		if (e->is64) {
			off = kl_le64(s + 24);
			size = kl_le64(s + 32);
			align = kl_le64(s + 48);
		} else {
			off = kl_le32(s + 16);
			size = kl_le32(s + 20);
			align = kl_le32(s + 32);
		}
		int r = scan_notes(e, off, size, align, entry, err);
		if (r != 0)
			return r;
	}
	return 0;
}

int kl_pvh_check(const uint8_t *img, size_t len, uint32_t *entry, char **err)
{
	struct elf e;
	if (len < 4 || memcmp(img, "\x7f" "ELF", 4) != 0)
		return -1;
	if (parse_ehdr(img, len, &e, err) < 0)
		return -1;
	int r = find_pvh_entry(&e, entry, err);
	if (r < 0)
		return -1;
	if (r == 0) {
		*err = g_strdup("ELF without a PVH entry note (Xen note type 18, "
				"XEN_ELFNOTE_PHYS32_ENTRY): not a PVH kernel");
		return -1;
	}
	return 0;
}

/* [a, a+n) and [b, b+m) intersect. */
static bool overlaps(uint64_t a, uint64_t n, uint64_t b, uint64_t m)
{
	return a < b + m && b < a + n;
}

int kl_pvh_load(struct kl_boot_ctx *c, struct kvm_regs *regs, struct kvm_sregs *sregs,
		char **err)
{
	const char *path = c->cfg->kernel;
	struct elf e;
	uint32_t entry = 0;
	char *why = NULL;

	if (kl_pvh_check(c->img, c->len, &entry, &why) < 0) {
		*err = g_strdup_printf("kernel '%s': %s", path, why ? why : "not an ELF");
		g_free(why);
		return -1;
	}
	parse_ehdr(c->img, c->len, &e, &why); /* cannot fail after kl_pvh_check */
	g_free(why);

	const char *cmd = c->cfg->cmdline ? c->cfg->cmdline : "";
	size_t cmd_len = strnlen(cmd, KL_BOOT_CMDLINE_MAX - 1);
	uint64_t cmd_end = KL_BOOT_CMDLINE_ADDR + cmd_len + 1;
	/* What we place below 1 MiB; segments must stay clear of it. */
	const struct { uint64_t a, n; const char *what; } used[] = {
		{ KL_BOOT_GDT_ADDR, 0x100, "the GDT" },
		{ KL_BOOT_PVH_INFO_ADDR, 0x1000, "hvm_start_info" },
		{ KL_BOOT_CMDLINE_ADDR, cmd_end - KL_BOOT_CMDLINE_ADDR, "the command line" },
		{ KL_ACPI_TABLES_ADDR, KL_MPTABLE_END - KL_ACPI_TABLES_ADDR, "the ACPI/MP tables" },
	};

	uint64_t lo = UINT64_MAX, hi = 0;
	bool entry_ok = false;
	unsigned nload = 0;
	/* Validate everything before writing anything. */
	for (unsigned i = 0; i < e.phnum; i++) {
		struct phdr ph;
		get_phdr(&e, i, &ph);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		nload++;
		if (ph.filesz > ph.memsz) {
			*err = g_strdup_printf("kernel '%s': segment %u has p_filesz 0x%llx > "
					       "p_memsz 0x%llx", path, i,
					       (unsigned long long)ph.filesz,
					       (unsigned long long)ph.memsz);
			return -1;
		}
		if (!in_file(&e, ph.offset, ph.filesz)) {
			*err = g_strdup_printf("kernel '%s': segment %u (offset 0x%llx + 0x%llx) runs "
					       "past the end of the file (%zu bytes)", path, i,
					       (unsigned long long)ph.offset,
					       (unsigned long long)ph.filesz, c->len);
			return -1;
		}
		if (ph.paddr >= KL_4G || ph.memsz > KL_4G - ph.paddr ||
		    !kl_gpa_to_hva(c->m, ph.paddr, ph.memsz)) {
			*err = g_strdup_printf("kernel '%s': segment %u at 0x%llx+0x%llx is outside "
					       "guest RAM below 4 GiB (-m too small?)", path, i,
					       (unsigned long long)ph.paddr,
					       (unsigned long long)ph.memsz);
			return -1;
		}
		for (unsigned u = 0; u < G_N_ELEMENTS(used); u++) {
			if (overlaps(ph.paddr, ph.memsz, used[u].a, used[u].n)) {
				*err = g_strdup_printf("kernel '%s': segment %u at 0x%llx+0x%llx "
						       "overlaps %s at 0x%llx", path, i,
						       (unsigned long long)ph.paddr,
						       (unsigned long long)ph.memsz, used[u].what,
						       (unsigned long long)used[u].a);
				return -1;
			}
		}
		if (entry >= ph.paddr && entry - ph.paddr < ph.memsz)
			entry_ok = true;
		if (ph.paddr < lo)
			lo = ph.paddr;
		if (ph.paddr + ph.memsz > hi)
			hi = ph.paddr + ph.memsz;
	}
	if (nload == 0) {
		*err = g_strdup_printf("kernel '%s': ELF has no loadable segment", path);
		return -1;
	}
	if (!entry_ok) {
		*err = g_strdup_printf("kernel '%s': PVH entry 0x%x is not inside a loaded segment",
				       path, entry);
		return -1;
	}

	for (unsigned i = 0; i < e.phnum; i++) {
		struct phdr ph;
		get_phdr(&e, i, &ph);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		uint8_t *dst = kl_gpa_to_hva(c->m, ph.paddr, ph.memsz); /* checked above */
		memcpy(dst, c->img + ph.offset, ph.filesz);
		memset(dst + ph.filesz, 0, ph.memsz - ph.filesz);
	}

	if (kl_boot_put_cmdline(c, KL_BOOT_CMDLINE_MAX - 1, err) < 0)
		return -1;
	uint64_t iaddr, isize;
	if (kl_boot_put_initrd(c, hi, c->low_end, &iaddr, &isize, err) < 0)
		return -1;

	/* hvm_start_info + modlist + memmap in one page at KL_BOOT_PVH_INFO_ADDR. */
	uint8_t page[0x1000] = {0};
	uint8_t *si = page;
	kl_put32(si + 0, HVM_START_MAGIC);
	kl_put32(si + 4, 1);                            /* version */
	kl_put32(si + 8, 0);                            /* flags */
	kl_put32(si + 12, isize ? 1 : 0);               /* nr_modules */
	kl_put64(si + 16, isize ? KL_BOOT_PVH_MODLIST_ADDR : 0);
	kl_put64(si + 24, KL_BOOT_CMDLINE_ADDR);        /* cmdline_paddr */
	kl_put64(si + 32, c->rsdp);                     /* rsdp_paddr */
	if (isize) {
		uint8_t *mod = page + (KL_BOOT_PVH_MODLIST_ADDR - KL_BOOT_PVH_INFO_ADDR);
		kl_put64(mod + 0, iaddr);
		kl_put64(mod + 8, isize);
		kl_put64(mod + 16, 0);  /* no module command line */
		kl_put64(mod + 24, 0);
	}
	struct kl_e820_entry e820[KL_E820_MAX];
	int n = kl_mem_e820(c->m, e820, KL_E820_MAX);
	if (n < 0)
		n = 0;
	uint8_t *mm = page + (KL_BOOT_PVH_MEMMAP_ADDR - KL_BOOT_PVH_INFO_ADDR);
	for (int i = 0; i < n; i++) {
		kl_put64(mm + i * HVM_MEMMAP_ENTRY_SIZE, e820[i].addr);
		kl_put64(mm + i * HVM_MEMMAP_ENTRY_SIZE + 8, e820[i].size);
		kl_put32(mm + i * HVM_MEMMAP_ENTRY_SIZE + 16, e820[i].type);
		kl_put32(mm + i * HVM_MEMMAP_ENTRY_SIZE + 20, 0);
	}
	kl_put64(si + 40, KL_BOOT_PVH_MEMMAP_ADDR);     /* memmap_paddr */
	kl_put32(si + 48, (uint32_t)n);                 /* memmap_entries */
	kl_put32(si + 52, 0);

	/* GDT: null, code32 (0x08), data (0x10), 32-bit TSS (0x18). */
	struct kvm_segment code, data, tss;
	kl_boot_flat_seg(&code, SEL_CODE32, true, false);
	kl_boot_flat_seg(&data, SEL_DATA, false, false);
	kl_boot_tss_seg(&tss, SEL_TSS);
	uint8_t gdt[4 * 8] = {0};
	kl_put64(gdt + SEL_CODE32, kl_boot_gdt_entry(&code));
	kl_put64(gdt + SEL_DATA, kl_boot_gdt_entry(&data));
	kl_put64(gdt + SEL_TSS, kl_boot_gdt_entry(&tss));
	if (kl_mem_write(c->m, KL_BOOT_PVH_INFO_ADDR, page, sizeof(page)) < 0 ||
	    kl_mem_write(c->m, KL_BOOT_GDT_ADDR, gdt, sizeof(gdt)) < 0) {
		*err = g_strdup_printf("kernel '%s': guest RAM below 1 MiB is missing", path);
		return -1;
	}

	sregs->cs = code;
	sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
	sregs->tr = tss;
	sregs->gdt.base = KL_BOOT_GDT_ADDR;
	sregs->gdt.limit = sizeof(gdt) - 1;
	sregs->cr0 = CR0_PE | CR0_ET;
	sregs->cr3 = 0;
	sregs->cr4 = 0;
	sregs->efer = 0;

	memset(regs, 0, sizeof(*regs));
	regs->rip = entry;
	regs->rbx = KL_BOOT_PVH_INFO_ADDR;
	regs->rflags = 2;

	c->info->entry = entry;
	c->info->kernel_addr = lo;
	c->info->kernel_end = hi;
	c->info->initrd_addr = iaddr;
	c->info->initrd_size = isize;
	return 0;
}
