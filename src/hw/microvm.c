/* -M microvm (as QEMU 7.2's hw/i386/microvm.c, where kvmlite can): the PC
 * platform devices kvmlite always has (in-kernel irqchip and PIT, 16550A,
 * CMOS RTC, ACPI PM) and, instead of a PCI host (only with pcie=on, where
 * kvmlite's 0xcf8 PCI host is added), seven virtio-mmio
 * transports of 512 bytes from 0xfeb00000, as QEMU places them.
 *
 * Interrupts: QEMU gives transport i GSI 5 + i with one IOAPIC
 * (ioapic2=off) and GSI 24 + i on its second IOAPIC (ioapic2=on, its
 * default with acpi=on).  kvmlite's in-kernel irqchip has one 24-pin
 * IOAPIC (GSIs 16-23 are not ISA IRQs Linux maps for a command-line
 * device), GSI 8 is the RTC's, 9 the ACPI SCI, 10 and 11 the PCI INTx lines
 * (pcie=on), so the transports use the free ISA GSIs 5, 6, 7, 12, 13, 14,
 * 15: seven transports where QEMU has eight.
 *
 * Announcing the devices: QEMU 7.2 appends "virtio_mmio.device=512@BASE:IRQ"
 * for each transport with a device to the kernel command line when ACPI is
 * off (auto-kernel-cmdline=on, the default) and describes them as LNRO0005
 * in the DSDT when ACPI is on.  kvmlite always uses the command line (the
 * Linux driver's CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES), with or without ACPI;
 * auto-kernel-cmdline=off leaves the command line alone. */
#include <glib.h>

#include "kvmlite/microvm.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"

static const uint8_t slot_gsi[] = { 5, 6, 7, 12, 13, 14, 15 };

static void slots_free(void *opaque)
{
	struct kl_vm *vm = opaque;
	g_free(vm->virtio_mmio);
	vm->virtio_mmio = NULL;
}

int kl_microvm_init(struct kl_vm *vm, char **err)
{
	if (vm->virtio_mmio) {
		*err = g_strdup("microvm: the virtio-mmio transports already exist");
		return -1;
	}
	struct kl_virtio_mmio_slots *s = g_new0(struct kl_virtio_mmio_slots, 1);
	s->base = KL_MICROVM_VIRTIO_MMIO_BASE;
	s->count = G_N_ELEMENTS(slot_gsi);
	for (unsigned i = 0; i < s->count; i++)
		s->gsi[i] = slot_gsi[i];
	vm->virtio_mmio = s;
	kl_vm_add_cleanup(vm, slots_free, vm);
	return 0;
}

char *kl_microvm_cmdline(const struct kl_vm *vm, const char *cmdline)
{
	GString *g = g_string_new(cmdline ? cmdline : "");
	const struct kl_virtio_mmio_slots *s = vm->virtio_mmio;
	for (unsigned i = 0; s && i < s->used; i++)
		g_string_append_printf(g, "%svirtio_mmio.device=%u@%#" G_GINT64_MODIFIER "x:%u",
				       g->len ? " " : "", KL_VMMIO_SIZE,
				       (guint64)(s->base + (uint64_t)i * KL_VMMIO_SIZE), s->gsi[i]);
	return g_string_free(g, FALSE);
}
