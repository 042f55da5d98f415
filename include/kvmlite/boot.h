/* Kernel loaders (src/hw/boot_*.c) and boot-time tables (MP table, e820).
 *
 * kl_boot_load() recognises the kernel file (bzImage by the "HdrS" header,
 * ELF vmlinux by its PVH note XEN_ELFNOTE_PHYS32_ENTRY), copies kernel,
 * initrd and command line into guest RAM, writes boot tables (e820 via
 * boot_params or hvm_start_info memmap, MP table for ncpus), and sets the
 * boot processor's registers:
 *   bzImage: 64-bit entry (startup_64 = code32_start + 0x200), identity page
 *            tables for the first 4 GiB, GDT, RSI = boot_params.
 *   PVH:     32-bit flat protected mode, paging off, EBX = hvm_start_info.
 * regs/sregs come in as the vCPU's reset state (KVM_GET_*) and go out as the
 * boot state.  Every failure is -1 with a one-line *err (g_free it) naming the
 * file and the problem; nothing is written outside guest RAM. */
#ifndef KVMLITE_BOOT_H
#define KVMLITE_BOOT_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "kvmlite/mem.h"

struct kl_boot_config {
	const char *kernel;   /* path, required */
	const char *initrd;   /* path or NULL */
	const char *cmdline;  /* NULL = "" */
	/* Optional: the kernel file already read by kl_boot_read_kernel(); the
	 * loader then uses it instead of reading `kernel` again.  NULL = read. */
	const void *image;
	size_t image_len;
	/* Optional: the initrd's contents (read at start-up when a chroot or a
	 * user change would stop a reset from reading `initrd` again). */
	const void *initrd_image;
	size_t initrd_len;
};


enum kl_kernel_kind { KL_KERNEL_UNKNOWN, KL_KERNEL_BZIMAGE, KL_KERNEL_PVH_ELF };

/* Classify an in-memory kernel image; on UNKNOWN, *err says why. */
enum kl_kernel_kind kl_boot_probe(const void *img, size_t len, char **err);

/* The loaders' file checks without reading: exists, regular, non-empty,
 * readable.  what = "kernel" or "initrd" for the one-line *err. */
int kl_boot_check_file(const char *what, const char *path, char **err);

/* Read a kernel file and recognise it.  Returns its kind with *img (g_free
 * it) and *len holding the file, or KL_KERNEL_UNKNOWN with a one-line *err
 * naming the file (missing, not a regular file, empty, not a kernel). */
enum kl_kernel_kind kl_boot_read_kernel(const char *path, void **img, size_t *len, char **err);

int kl_boot_load(const struct kl_guest_mem *m, const struct kl_boot_config *cfg,
		 unsigned ncpus, struct kvm_regs *regs, struct kvm_sregs *sregs,
		 char **err);

/* Intel MultiProcessor table (floating pointer in 0xF0000 segment):
 * ncpus processor entries (APIC ids 0..n-1, BSP = 0), ISA bus, IOAPIC at
 * KL_IOAPIC_BASE, ISA IRQ 0-15 interrupt entries (IRQ0 -> IOAPIC pin 2). */
int kl_mptable_write(const struct kl_guest_mem *m, unsigned ncpus, char **err);


/* --- Added by the boot loaders (src/hw/boot*.c, mptable.c, acpi_tables.c) ---
 * Fixed guest-physical layout used by kl_boot_load (all below 1 MiB except
 * kernel/initrd):
 *   0x00500  GDT (bzImage: null, -, 0x10 code64, 0x18 data; PVH: null,
 *            0x08 code32, 0x10 data)
 *   0x06000  PVH hvm_start_info, 0x06040 modlist, 0x06100 memmap
 *   0x09000  PML4, 0x0a000 PDPT, 0x0b000-0x0efff 4 PDs (bzImage only)
 *   0x10000  boot_params (zero page); real-mode heap up to 0x1fe00
 *   0x20000  command line (at most KL_BOOT_CMDLINE_MAX bytes incl. NUL)
 *   0xe0000  ACPI tables (RSDP first)     0xf0000 MP floating pointer + table
 *   kernel:  bzImage at pref_address (or 1 MiB / kernel alignment),
 *            PVH ELF at its PT_LOAD p_paddr
 *   initrd:  page aligned at the top of RAM below min(4 GiB hole,
 *            initrd_addr_max), above the kernel. */
#define KL_BOOT_GDT_ADDR 0x500ULL
#define KL_BOOT_PVH_INFO_ADDR 0x6000ULL
#define KL_BOOT_PVH_MODLIST_ADDR 0x6040ULL
#define KL_BOOT_PVH_MEMMAP_ADDR 0x6100ULL
#define KL_BOOT_PML4_ADDR 0x9000ULL
#define KL_BOOT_PARAMS_ADDR 0x10000ULL
#define KL_BOOT_CMDLINE_ADDR 0x20000ULL
#define KL_BOOT_CMDLINE_MAX 0x10000ULL
#define KL_ACPI_TABLES_ADDR 0xE0000ULL
#define KL_ACPI_TABLES_END 0xF0000ULL
#define KL_MPTABLE_ADDR 0xF0000ULL
#define KL_MPTABLE_END 0x100000ULL

/* Which kind kl_boot_load() found and where it put things (for logging and
 * tests); optional, see kl_boot_load_ex. */
struct kl_boot_info {
	enum kl_kernel_kind kind;
	uint64_t entry;         /* RIP */
	uint64_t kernel_addr;   /* lowest loaded byte */
	uint64_t kernel_end;    /* end of the memory the kernel claims */
	uint64_t initrd_addr;   /* 0 when none */
	uint64_t initrd_size;
	uint64_t rsdp_addr;     /* 0 when no ACPI tables were written */
};
struct kl_boot_opts {
	/* Do not write ACPI tables (like QEMU's -no-acpi).  By default
	 * kl_boot_load writes them (kl_acpi_write) and passes the RSDP in
	 * boot_params.acpi_rsdp_addr / hvm_start_info.rsdp_paddr; the MP table
	 * is always written.  Without ACPI a Linux guest uses the MP table and
	 * scans PCI itself, but has no \_S5 soft-off / power button. */
	bool no_acpi;
	/* No PCI host: none in the DSDT (-M microvm without pcie=on). */
	bool no_pci;
	/* Describe these virtio-mmio transports (those in use) as LNRO0005
	 * devices in the DSDT (-M microvm,acpi=on; src/hw/microvm_aml.c). */
	const struct kl_virtio_mmio_slots *acpi_virtio_mmio;
};
/* kl_boot_load with options (NULL = defaults: all zero, same as
 * kl_boot_load) and an optional (NULL ok) report of the placement. */
int kl_boot_load_ex(const struct kl_guest_mem *m, const struct kl_boot_config *cfg,
		    unsigned ncpus, const struct kl_boot_opts *opts, struct kvm_regs *regs,
		    struct kvm_sregs *sregs, struct kl_boot_info *info, char **err);

/* ACPI tables (RSDP v2 -> RSDT/XSDT -> MADT, FADT -> FACS, DSDT with \_S5
 * and the PCI root bridge \_SB.PCI0 with _CRS and _PRT) in
 * [KL_ACPI_TABLES_ADDR, KL_ACPI_TABLES_END); *rsdp gets the RSDP address. */
int kl_acpi_write(const struct kl_guest_mem *m, unsigned ncpus, uint64_t *rsdp, char **err);
/* The same; pci=false leaves the PCI root bridge out of the DSDT (-M
 * microvm without pcie=on); vmmio (NULL: none) adds its transports in use
 * as LNRO0005 devices. */
struct kl_virtio_mmio_slots;
int kl_acpi_write_ex(const struct kl_guest_mem *m, unsigned ncpus, bool pci,
		     const struct kl_virtio_mmio_slots *vmmio, uint64_t *rsdp, char **err);
/* NUMA (kvmlite/numa.h): from now on kl_acpi_write adds an SRAT (and a
 * SLIT with -numa dist) for n (NULL or no nodes: none); n must outlive the
 * VM.  kl_acpi_numa_mem_ranges: the Memory Affinity ranges of the SRAT
 * (max entries; returns the count), for the tables and tests. */
struct kl_numa;
void kl_acpi_set_numa(const struct kl_numa *n);
/* CPU hot-plug (-smp maxcpus=): from now on the MADT lists `slots` CPUs, those
 * beyond ncpus disabled, and the DSDT has the CPU hot-plug devices
 * (kvmlite/cpu_hotplug.h).  0: none. */
void kl_acpi_set_cpu_slots(unsigned slots);
struct kl_acpi_mem_range {
	unsigned node;
	uint64_t base, len;
};
unsigned kl_acpi_numa_mem_ranges(const struct kl_numa *n, const struct kl_guest_mem *m,
				 struct kl_acpi_mem_range *out, unsigned max);

/* Fixed platform resources shared by the boot tables and the devices. */
#define KL_ACPI_PM1A_EVT 0x600  /* PM1a event block: STS (2 bytes) + EN (2) */
#define KL_ACPI_PM1A_CNT 0x604  /* PM1a control block (2 bytes) */
#define KL_ACPI_SCI_IRQ 9
#define KL_ACPI_GPE0_BLK 0xafe0 /* GPE0 block: STS (2 bytes) + EN (2), as QEMU's PIIX4 */
#define KL_ACPI_GPE0_LEN 4
#define KL_SERIAL0_IRQ 4
#endif
