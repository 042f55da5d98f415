/* libFuzzer target: kernel images given with -kernel (src/hw/boot*.c: the
 * bzImage and PVH ELF loaders).
 *
 * The input is the kernel file.  As main.c does, it is read and recognised
 * with kl_boot_read_kernel() (from a memfd, through /proc/self/fd), then
 * loaded with kl_boot_load_ex() into 8 MiB of guest RAM: once without ACPI
 * and initrd, and once more (if that worked) with ACPI tables and a 64 KiB
 * initrd.
 *
 * Asserted: a failure is -1 with a one-line message naming the file; a
 * success puts the kernel [kernel_addr, kernel_end) inside guest RAM with
 * the entry point in it, the initrd inside RAM above the kernel, and the
 * boot registers agree with the report.  ASan catches any access outside
 * the RAM buffer or the image. */
#include <fcntl.h>
#include <stdbool.h>
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvmlite/boot.h"
#include "kvmlite/mem.h"

#include "fuzz_util.h"

#define RAM_SIZE (8u << 20)
#define INITRD_SIZE (64u << 10)
#define CMDLINE "console=ttyS0 fuzz"

static struct kl_guest_mem mem;
static uint8_t *ram;
static int kernel_fd = -1;
static char kernel_path[64], initrd_path[64];

static int make_memfd(const char *name, char *path, size_t path_len)
{
	int fd = memfd_create(name, 0);
	if (fd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, path_len, "/proc/self/fd/%d", fd);
	return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_init_glib(*argv);
	ram = calloc(1, RAM_SIZE);
	kl_mem_init_empty(&mem);
	FUZZ_ASSERT(kl_mem_add_region(&mem, 0, RAM_SIZE, ram) == 0);
	kernel_fd = make_memfd("fuzz-kernel", kernel_path, sizeof(kernel_path));
	int ifd = make_memfd("fuzz-initrd", initrd_path, sizeof(initrd_path));
	static uint8_t initrd[INITRD_SIZE];
	memset(initrd, 0x5a, sizeof(initrd));
	FUZZ_ASSERT(write(ifd, initrd, sizeof(initrd)) == (ssize_t)sizeof(initrd));
	return 0;
}

/* One line naming the kernel (or, for a placement failure, the initrd). */
static void check_err(const char *err, bool initrd)
{
	FUZZ_ASSERT(err != NULL);
	FUZZ_ASSERT(strchr(err, '\n') == NULL);
	FUZZ_ASSERT(strstr(err, kernel_path) != NULL ||
		    (initrd && strstr(err, initrd_path) != NULL));
}

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

/* Nothing written after the kernel may have overwritten it: guest RAM still
 * holds the file's bytes (bzImage: everything after the setup code; PVH:
 * every PT_LOAD's file part, then zeroes up to p_memsz). */
static void check_kernel_intact(const uint8_t *img, size_t len, const struct kl_boot_info *in)
{
	if (in->kind == KL_KERNEL_BZIMAGE) {
		size_t setup = ((size_t)(img[0x1f1] ? img[0x1f1] : 4) + 1) * 512;
		FUZZ_ASSERT(setup < len);
		FUZZ_ASSERT(in->kernel_addr + (len - setup) <= in->kernel_end);
		FUZZ_ASSERT(memcmp(ram + in->kernel_addr, img + setup, len - setup) == 0);
		return;
	}
	bool is64 = img[4] == 2;
	uint64_t phoff = is64 ? le(img + 32, 8) : le(img + 28, 4);
	unsigned phentsize = (unsigned)le(img + (is64 ? 54 : 42), 2);
	unsigned phnum = (unsigned)le(img + (is64 ? 56 : 44), 2);
	for (unsigned i = 0; i < phnum; i++) {
		const uint8_t *h = img + phoff + (uint64_t)i * phentsize;
		uint64_t off, pa, fs, ms;
		if (is64) {
			off = le(h + 8, 8), pa = le(h + 24, 8), fs = le(h + 32, 8), ms = le(h + 40, 8);
		} else {
			off = le(h + 4, 4), pa = le(h + 12, 4), fs = le(h + 16, 4), ms = le(h + 20, 4);
		}
		if (le(h, 4) != 1 || ms == 0)
			continue;
		FUZZ_ASSERT(pa >= in->kernel_addr && pa + ms <= in->kernel_end);
		/* later segments may overlap earlier ones: check the last writer */
		bool later = false;
		for (unsigned j = i + 1; j < phnum; j++) {
			const uint8_t *g = img + phoff + (uint64_t)j * phentsize;
			uint64_t pb = is64 ? le(g + 24, 8) : le(g + 12, 4);
			uint64_t mb = is64 ? le(g + 40, 8) : le(g + 20, 4);
			if (le(g, 4) == 1 && mb && pb < pa + ms && pa < pb + mb)
				later = true;
		}
		if (later)
			continue;
		FUZZ_ASSERT(memcmp(ram + pa, img + off, fs) == 0);
		for (uint64_t k = fs; k < ms && k < fs + 0x10000; k++)
			FUZZ_ASSERT(ram[pa + k] == 0);
	}
}

static void check_loaded(const struct kl_boot_info *in, const struct kvm_regs *regs,
			 enum kl_kernel_kind kind)
{
	FUZZ_ASSERT(in->kind == kind);
	FUZZ_ASSERT(in->kernel_addr < in->kernel_end && in->kernel_end <= RAM_SIZE);
	FUZZ_ASSERT(kl_gpa_to_hva(&mem, in->kernel_addr, in->kernel_end - in->kernel_addr));
	FUZZ_ASSERT(in->entry >= in->kernel_addr && in->entry < in->kernel_end);
	FUZZ_ASSERT(regs->rip == in->entry);
	if (kind == KL_KERNEL_BZIMAGE) {
		FUZZ_ASSERT(in->kernel_addr >= 0x100000);
		FUZZ_ASSERT(regs->rsi == KL_BOOT_PARAMS_ADDR);
	} else {
		FUZZ_ASSERT(regs->rbx == KL_BOOT_PVH_INFO_ADDR);
	}
	if (in->initrd_size) {
		FUZZ_ASSERT(in->initrd_size == INITRD_SIZE);
		FUZZ_ASSERT(in->initrd_addr >= in->kernel_end);
		FUZZ_ASSERT(kl_gpa_to_hva(&mem, in->initrd_addr, in->initrd_size));
		FUZZ_ASSERT(ram[in->initrd_addr] == 0x5a &&
			    ram[in->initrd_addr + in->initrd_size - 1] == 0x5a);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FUZZ_ASSERT(ftruncate(kernel_fd, 0) == 0);
	if (size)
		FUZZ_ASSERT(pwrite(kernel_fd, data, size, 0) == (ssize_t)size);

	void *img = NULL;
	size_t len = 0;
	char *err = NULL;
	enum kl_kernel_kind kind = kl_boot_read_kernel(kernel_path, &img, &len, &err);
	char *why = NULL;
	enum kl_kernel_kind probed = kl_boot_probe(data, size, &why);
	FUZZ_ASSERT(probed == kind);
	g_free(why);
	if (kind == KL_KERNEL_UNKNOWN) {
		FUZZ_TRACE("not a kernel: %s\n", err);
		check_err(err, false);
		FUZZ_ASSERT(img == NULL);
		g_free(err);
		return 0;
	}
	FUZZ_ASSERT(err == NULL && len == size && memcmp(img, data, size) == 0);

	for (int pass = 0; pass < 2; pass++) {
		struct kl_boot_config cfg = {
			.kernel = kernel_path, .initrd = pass ? initrd_path : NULL,
			.cmdline = CMDLINE, .image = img, .image_len = len,
		};
		struct kl_boot_opts opts = { .no_acpi = pass == 0 };
		struct kvm_regs regs;
		struct kvm_sregs sregs;
		memset(&regs, 0, sizeof(regs));
		memset(&sregs, 0, sizeof(sregs));
		struct kl_boot_info info;
		err = NULL;
		int r = kl_boot_load_ex(&mem, &cfg, 2, &opts, &regs, &sregs, &info, &err);
		FUZZ_TRACE("pass %d: %s\n", pass, r ? err : "loaded");
		if (r == 0)
			FUZZ_TRACE("  kind %d entry 0x%llx kernel 0x%llx-0x%llx initrd 0x%llx+0x%llx\n",
				   info.kind, (unsigned long long)info.entry,
				   (unsigned long long)info.kernel_addr,
				   (unsigned long long)info.kernel_end,
				   (unsigned long long)info.initrd_addr,
				   (unsigned long long)info.initrd_size);
		if (r < 0) {
			FUZZ_ASSERT(r == -1);
			check_err(err, pass == 1);
			g_free(err);
			break;
		}
		FUZZ_ASSERT(r == 0 && err == NULL);
		check_loaded(&info, &regs, kind);
		check_kernel_intact(img, len, &info);
		if (pass)
			FUZZ_ASSERT(info.initrd_size == INITRD_SIZE);
		FUZZ_ASSERT(strcmp((const char *)ram + KL_BOOT_CMDLINE_ADDR, CMDLINE) == 0);
	}
	g_free(img);
	return 0;
}
