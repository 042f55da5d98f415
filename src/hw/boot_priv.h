/* Internal interface between the boot loader files (boot.c, boot_bzimage.c,
 * boot_pvh.c).  Not a public header. */
#ifndef KVMLITE_HW_BOOT_PRIV_H
#define KVMLITE_HW_BOOT_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "kvmlite/boot.h"
#include "kvmlite/byteorder.h"


/* Everything a loader needs besides the image. */
struct kl_boot_ctx {
	const struct kl_guest_mem *m;
	const struct kl_boot_config *cfg;
	const uint8_t *img;     /* kernel file contents */
	size_t len;
	uint64_t low_end;       /* end of the RAM block holding 1 MiB, <= 4 GiB */
	uint64_t rsdp;          /* 0 = no ACPI */
	struct kl_boot_info *info;
};

/* Probe helpers: 0 = recognised; -1 = not this kind (err set, may be NULL
 * when the image simply does not look like this kind at all). */
int kl_bzimage_check(const uint8_t *img, size_t len, char **err);
int kl_pvh_check(const uint8_t *img, size_t len, uint32_t *entry, char **err);

int kl_bzimage_load(struct kl_boot_ctx *c, struct kvm_regs *regs, struct kvm_sregs *sregs,
		    char **err);
int kl_pvh_load(struct kl_boot_ctx *c, struct kvm_regs *regs, struct kvm_sregs *sregs,
		char **err);

/* Write cfg->cmdline (NUL-terminated) at KL_BOOT_CMDLINE_ADDR; max_len is
 * the longest string the kernel accepts (without the NUL).  Returns its
 * length + 1 or -1. */
long kl_boot_put_cmdline(struct kl_boot_ctx *c, uint64_t max_len, char **err);

/* Place cfg->initrd page aligned at the highest address with
 * addr + size <= limit and addr >= floor, read it straight into guest RAM.
 * No initrd: *addr = *size = 0.  -1 with err naming the file. */
int kl_boot_put_initrd(struct kl_boot_ctx *c, uint64_t floor, uint64_t limit,
		       uint64_t *addr, uint64_t *size, char **err);

/* Flat segment for KVM: code (type 0xb) or data (0x3), 32- or 64-bit. */
void kl_boot_flat_seg(struct kvm_segment *s, uint16_t sel, bool code, bool l);
/* Busy TSS (type 11) base 0 limit 0x67, as the PVH ABI and VMX expect. */
void kl_boot_tss_seg(struct kvm_segment *s, uint16_t sel);
/* Encode a GDT descriptor from a flat segment. */
uint64_t kl_boot_gdt_entry(const struct kvm_segment *s);

/* ACPI table header (OEM ids, revision) and checksum, acpi_tables.c. */
void kl_acpi_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev);
void kl_acpi_finish(uint8_t *t);

/* Scope (\_SB) with an LNRO0005 device per virtio-mmio transport in use
 * (microvm_aml.c); nothing when s is NULL or has none. */
struct kl_virtio_mmio_slots;
struct _GByteArray; /* GByteArray (glib) */
void kl_microvm_acpi_aml(struct _GByteArray *a, const struct kl_virtio_mmio_slots *s);

/* SRAT/SLIT (acpi_numa.c): with the NUMA configuration set by
 * kl_acpi_set_numa (kvmlite/boot.h), kl_acpi_write appends
 * kl_acpi_numa_len() bytes (0 without NUMA) after the MADT, written by
 * kl_acpi_numa_write: returns the number of tables (SRAT, then SLIT when
 * -numa dist was given) and their offsets from b in off[]. */
struct kl_guest_mem;
size_t kl_acpi_numa_len(const struct kl_guest_mem *m, unsigned ncpus);
unsigned kl_acpi_numa_write(uint8_t *b, const struct kl_guest_mem *m, unsigned ncpus,
			    uint32_t off[2]);

#endif
