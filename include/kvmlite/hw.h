/* Platform devices (src/hw/): 16550A UARTs, reset lines, CMOS RTC. */
#ifndef KVMLITE_HW_H
#define KVMLITE_HW_H

struct kl_vm;

/* A 16550A at base/irq with a back-end spec as QEMU's -serial takes it:
 * "stdio", "file:PATH", "unix:PATH,server[=on][,wait=off]", "null", "none".
 * label is the chardev name ("serial0"). */
int kl_serial_create(struct kl_vm *vm, const char *spec, unsigned base, unsigned irq,
		     const char *label, char **err);
/* Put the terminal back as it was (called at exit). */
void kl_serial_restore_tty(void);

/* Reset control 0xcf9, i8042 reset line (0x64 <- 0xfe), POST port 0x80,
 * CMOS RTC at 0x70/0x71. */
int kl_platform_init(struct kl_vm *vm, char **err);

/* ACPI PM1a fixed-hardware block + power button (src/hw/acpi_pm.c). */
int kl_acpi_pm_init(struct kl_vm *vm, char **err);

#endif
