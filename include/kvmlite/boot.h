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
};

enum kl_kernel_kind { KL_KERNEL_UNKNOWN, KL_KERNEL_BZIMAGE, KL_KERNEL_PVH_ELF };

/* Classify an in-memory kernel image; on UNKNOWN, *err says why. */
enum kl_kernel_kind kl_boot_probe(const void *img, size_t len, char **err);

int kl_boot_load(const struct kl_guest_mem *m, const struct kl_boot_config *cfg,
		 unsigned ncpus, struct kvm_regs *regs, struct kvm_sregs *sregs,
		 char **err);

/* Intel MultiProcessor table (floating pointer in 0xF0000 segment):
 * ncpus processor entries (APIC ids 0..n-1, BSP = 0), ISA bus, IOAPIC at
 * KL_IOAPIC_BASE, ISA IRQ 0-15 interrupt entries (IRQ0 -> IOAPIC pin 2). */
int kl_mptable_write(const struct kl_guest_mem *m, unsigned ncpus, char **err);



/* Fixed platform resources shared by the boot tables and the devices. */
#define KL_ACPI_PM1A_EVT 0x600  /* PM1a event block: STS (2 bytes) + EN (2) */
#define KL_ACPI_PM1A_CNT 0x604  /* PM1a control block (2 bytes) */
#define KL_ACPI_SCI_IRQ 9
#define KL_SERIAL0_IRQ 4
#endif
