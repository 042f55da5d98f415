/* ACPI PM1a fixed-hardware block (src/hw/acpi_pm.c): the power button that
 * QMP system_powerdown presses, and the S5 soft-off the guest writes.
 *
 *   KL_ACPI_PM1A_EVT+0  PM1_STS  16 bit, write-1-to-clear; bit 8 PWRBTN_STS
 *   KL_ACPI_PM1A_EVT+2  PM1_EN   16 bit; bit 8 PWRBTN_EN
 *   KL_ACPI_PM1A_CNT    PM1_CNT  16 bit; bit 0 SCI_EN (1 after reset: an
 *                                ACPI-only platform, FADT SMI_CMD = 0),
 *                                bits 10-12 SLP_TYP, bit 13 SLP_EN (write-only)
 *   SLP_EN with SLP_TYP = 5 (the DSDT's \_S5 value) powers the VM off
 *   (SHUTDOWN event, guest: true, reason "guest-shutdown").
 *   KL_ACPI_GPE0_BLK+0  GPE0_STS 16 bit, write-1-to-clear (byte access, as
 *   KL_ACPI_GPE0_BLK+2  GPE0_EN  16 bit               QEMU's PIIX4 0xafe0)
 *   GPE bit 1 (KL_ACPI_GPE_PCI_HOTPLUG) is the PCI hot-plug event (\_GPE._E01).
 *   SCI = IRQ KL_ACPI_SCI_IRQ, level-high while SCI_EN && (STS & EN & PWRBTN
 *   || GPE0_STS & GPE0_EN).
 */
#ifndef KVMLITE_ACPI_PM_H
#define KVMLITE_ACPI_PM_H

struct kl_vm;

#define KL_ACPI_PM1_PWRBTN (1u << 8)
#define KL_ACPI_PM1_SCI_EN (1u << 0)
#define KL_ACPI_PM1_SLP_TYP_SHIFT 10
#define KL_ACPI_PM1_SLP_EN (1u << 13)
#define KL_ACPI_S5_SLP_TYP 5

/* Register the ports on vm->pio, a reset handler, and vm->powerdown_fn.
 * Needs vm->pio initialised and vm->reset_handlers ready (after
 * kl_vm_create).  0, or -1 with *err. */
int kl_acpi_pm_init(struct kl_vm *vm, char **err);

#define KL_ACPI_GPE_PCI_HOTPLUG 1
/* Set GPE0_STS bit (0..15) and update the SCI (BQL held).  No-op when the
 * PM block of vm was not created. */
void kl_acpi_gpe_raise(struct kl_vm *vm, unsigned bit);

#endif
