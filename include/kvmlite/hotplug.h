/* Hot-plug: QEMU's PIIX4-style ACPI PCI hot-plug on bus 0 (src/hw/acpi_pcihp.c)
 * and the device instance registry behind -device / device_add / device_del
 * (src/hotplug/qdev.c).  docs/hotplug.md describes the guest interface.
 *
 * Registers (I/O ports, 4-byte access, as QEMU's docs/specs/acpi_pci_hotplug.rst):
 *   0xae00 PCIU  slots added since the last read (read clears)
 *   0xae04 PCID  slots whose removal was requested (cleared by the eject)
 *   0xae08 B0EJ  write: eject the slots of the bits set; read: 0 (features)
 *   0xae0c PCRM  hot-pluggable slots (1-31)
 * A change sets GPE0 bit 1 (KL_ACPI_GPE_PCI_HOTPLUG, kvmlite/acpi_pm.h) and
 * raises the SCI; the DSDT's \_GPE._E01 calls \_SB.PCI0.PCNT, which Notifies
 * the slot devices S08..SF8 (bus check for PCIU, eject request for PCID); the
 * slot's _EJ0 writes 1 << _SUN to B0EJ.
 */
#ifndef KVMLITE_HOTPLUG_H
#define KVMLITE_HOTPLUG_H

#include <glib.h>
#include <stdbool.h>

#include "kvmlite/opts.h"

struct kl_vm;

#define KL_PCIHP_BASE 0xae00
#define KL_PCIHP_LEN 0x10

/* ---- src/hw/acpi_pcihp.c ---- */
/* eject(opaque, slot) runs on the main loop (BQL held) after the guest wrote
 * the slot's bit to B0EJ.  0, or -1 with *err. */
int kl_acpi_pcihp_init(struct kl_vm *vm, void (*eject)(void *opaque, unsigned slot),
		       void *opaque, char **err);
/* DSDT part (slot devices, PCNT, \_GPE._E01), appended to aml. */
void kl_acpi_pcihp_aml(GByteArray *aml);
/* A device was added in slot / its removal is requested: PCIU / PCID bit,
 * GPE, SCI.  No-op before kl_acpi_pcihp_init. */
void kl_acpi_pcihp_plugged(struct kl_vm *vm, unsigned slot);
void kl_acpi_pcihp_unplug_request(struct kl_vm *vm, unsigned slot);

/* ---- src/hotplug/qdev.c: device instances ---- */
struct kl_qdev {
	char *id;          /* NULL: none */
	char *path;        /* /machine/peripheral/ID or /machine/peripheral-anon/device[N] */
	char *driver;
	int slot;          /* PCI slot on bus 0, -1: not a PCI device */
	bool unplug_pending;
};

/* Create a device from -device / device_add options (the "driver" key
 * included), as main.c's -device does; hotplug: after the machine started
 * (device_add): the device must be a PCI device, its slot is announced to
 * the guest.  Records the instance.  0, or -1 with *err (QEMU's wording). */
int kl_qdev_add(struct kl_vm *vm, struct kl_opts *o, bool hotplug, char **err);
/* device_del: ask the guest to release device id (or QOM path: devices
 * without id) (PCID + GPE).  -1 with
 * *err; *not_found set when id names no device (QMP DeviceNotFound). */
int kl_qdev_del(struct kl_vm *vm, const char *id, bool *not_found, char **err);
/* Called on the main loop once an ejected device is gone (DEVICE_DELETED):
 * id may be NULL, path is the QOM path. */
void kl_qdev_set_deleted_fn(void (*fn)(const char *id, const char *path));
void kl_qdev_foreach(void (*fn)(const struct kl_qdev *q, void *opaque), void *opaque);
const struct kl_qdev *kl_qdev_at_slot(int slot);
/* Set up the ACPI hot-plug controller for vm (main.c, after kl_acpi_pm_init). */
int kl_qdev_hotplug_init(struct kl_vm *vm, char **err);
void kl_qdev_free_all(void);

#endif
