/* Platform devices (src/hw/): 16550A UARTs, reset lines, CMOS RTC. */
#ifndef KVMLITE_HW_H
#define KVMLITE_HW_H

struct kl_vm;
struct kl_chardev;

/* A 16550A at COM(index+1) (0x3f8/4, 0x2f8/3, 0x3e8/4, 0x2e8/3; index -1:
 * the first free one), the front-end of chardev cd (NULL: no back-end).
 * -serial SPEC and -device isa-serial,chardev=ID,index=N both end here. */
#define KL_SERIAL_MAX 4
int kl_serial_create(struct kl_vm *vm, struct kl_chardev *cd, int index, char **err);

/* Reset control 0xcf9, i8042 reset line (0x64 <- 0xfe), POST port 0x80,
 * CMOS RTC at 0x70/0x71. */
int kl_platform_init(struct kl_vm *vm, char **err);

/* ACPI PM1a fixed-hardware block + power button (src/hw/acpi_pm.c). */
int kl_acpi_pm_init(struct kl_vm *vm, char **err);

#endif
