/* vCPU hot-plug: QEMU's "modern" ACPI CPU hot-plug interface
 * (docs/specs/acpi_cpu_hotplug.rst in QEMU; src/hw/acpi_cpuhp.c, the DSDT
 * part in src/hw/acpi_cpuhp_aml.c) and the QMP side (src/hotplug/cpu_hotplug.c).
 * docs/hotplug.md describes the guest interface.
 *
 * Register block at 0xaf00 (QEMU's PIIX-PM base on -M pc), 12 bytes:
 *   write 0x0 (4) selector   read 0x0 (4) command data 2 (0)
 *         0x4 (1) control           0x4 (1) status: 0 enabled, 1 insert, 2 remove
 *             bit 1 clear insert, bit 2 clear remove, bit 3 eject
 *         0x5 (1) command: 0 next CPU with an event, 1/2 OST event/status, 3 APIC id
 *         0x8 (4) command data      0x8 (4) command data (selector / APIC id)
 * An insert or remove request sets GPE0 bit 2 (KL_ACPI_GPE_CPU_HOTPLUG); the
 * DSDT's \_GPE._E02 calls \_SB.CPUS.CSCN, which Notifies \_SB.CPUS.Cxxx
 * (1: device check, 3: eject request); Cxxx._EJ0 writes the eject bit. */
#ifndef KVMLITE_CPU_HOTPLUG_H
#define KVMLITE_CPU_HOTPLUG_H

#include <glib.h>
#include <stdbool.h>

struct kl_vm;
struct kl_opts;

#define KL_CPUHP_BASE 0xaf00
#define KL_CPUHP_LEN 12
#define KL_ACPI_GPE_CPU_HOTPLUG 2

/* ---- src/hw/acpi_cpuhp.c ---- */
/* eject(opaque, slot) runs on the main loop (BQL held) after the guest set
 * the eject bit of slot.  0, or -1 with *err. */
int kl_acpi_cpuhp_init(struct kl_vm *vm, void (*eject)(void *opaque, unsigned slot),
		       void *opaque, char **err);
/* slot was plugged / its removal is requested: event flag, GPE, SCI. */
void kl_acpi_cpuhp_plugged(struct kl_vm *vm, unsigned slot);
void kl_acpi_cpuhp_unplug_request(struct kl_vm *vm, unsigned slot);

/* ---- src/hw/acpi_cpuhp_aml.c: DSDT part (\_SB.PCI0.PRES, \_SB.CPUS with
 * one Processor per slot, \_GPE._E02) for `slots` vCPU slots. ---- */
void kl_acpi_cpuhp_aml(GByteArray *aml, unsigned slots);

/* ---- src/hotplug/cpu_hotplug.c ---- */
/* main.c, after kl_acpi_pm_init, when -smp maxcpus > cpus. */
int kl_cpuhp_init(struct kl_vm *vm, char **err);
/* device_add of a CPU type ("qemu64-x86_64-cpu", ...): true when driver is
 * one (then *r is 0 or -1 with *err, QEMU's wording). */
bool kl_cpuhp_is_cpu_driver(const char *driver);
int kl_cpuhp_device_add(struct kl_vm *vm, struct kl_opts *o, char **err);
/* device_del: 1 when id (or QOM path) names no CPU, else 0 / -1 with *err. */
int kl_cpuhp_device_del(struct kl_vm *vm, const char *id, char **err);
/* query-hotpluggable-cpus, one entry per slot, highest slot first (as
 * QEMU): fn(opaque, type, slot, socket, core, thread, qom_path or NULL). */
void kl_cpuhp_foreach_slot(struct kl_vm *vm,
			   void (*fn)(void *opaque, const char *type, unsigned slot,
				      unsigned socket, unsigned core, unsigned thread,
				      const char *qom_path),
			   void *opaque);
/* QOM path of the vCPU in slot (query-cpus-fast): /machine/peripheral/ID
 * for one added with an id, else /machine/unattached/device[slot]; g_free. */
char *kl_cpuhp_qom_path(struct kl_vm *vm, unsigned slot);
/* DEVICE_DELETED sender (the monitor): id may be NULL. */
void kl_cpuhp_set_deleted_fn(void (*fn)(const char *id, const char *path));

#endif
