/* ACPI PCI hot-plug on bus 0, QEMU's PIIX4 interface: see kvmlite/hotplug.h
 * and docs/hotplug.md.  Linux handles it with acpiphp (CONFIG_HOTPLUG_PCI_ACPI),
 * as on QEMU's -M pc. */
#include <glib.h>

#include "kvmlite/acpi_pm.h"
#include "kvmlite/bus.h"
#include "kvmlite/hotplug.h"
#include "kvmlite/loop.h"
#include "kvmlite/pci.h"
#include "kvmlite/vm.h"

#define R_UP 0x0
#define R_DOWN 0x4
#define R_EJ 0x8
#define R_RMV 0xc
#define SLOTS_MASK 0xfffffffeu /* slot 0 is the host bridge */

struct pcihp {
	struct kl_vm *vm;
	uint32_t up, down;
	void (*eject)(void *opaque, unsigned slot);
	void *opaque;
};

struct eject_req {
	struct pcihp *hp;
	unsigned slot;
};

static struct pcihp *the_hp;

static struct pcihp *hp_of(struct kl_vm *vm)
{
	return the_hp && the_hp->vm == vm ? the_hp : NULL;
}

static uint64_t hp_read(void *opaque, uint64_t off, unsigned size)
{
	struct pcihp *hp = opaque;
	uint32_t v = 0;
	switch (off & ~3u) {
	case R_UP:
		v = hp->up;
		hp->up = 0;      /* as QEMU's non-legacy PIIX4: read clears */
		break;
	case R_DOWN: v = hp->down; break;
	case R_EJ: v = 0; break; /* hot-plug features: the base set */
	case R_RMV: v = SLOTS_MASK; break;
	}
	return (v >> (8 * (off & 3))) & (size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1);
}

static void eject_bh(void *opaque)
{
	struct eject_req *r = opaque;
	if (the_hp == r->hp && r->hp->eject)
		r->hp->eject(r->hp->opaque, r->slot);
	g_free(r);
}

static void hp_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct pcihp *hp = opaque;
	if (off != R_EJ || size != 4)
		return;
	uint32_t slots = (uint32_t)val & SLOTS_MASK;
	for (unsigned s = 1; s < KL_PCI_NSLOTS; s++) {
		if (!(slots & (1u << s)))
			continue;
		hp->down &= ~(1u << s);
		/* the device goes on the main loop (its teardown drains block
		 * requests and removes main-loop sources), not on this vCPU */
		struct eject_req *r = g_new(struct eject_req, 1);
		r->hp = hp;
		r->slot = s;
		kl_bh_schedule(eject_bh, r);
	}
}

static const struct kl_io_ops hp_ops = { .read = hp_read, .write = hp_write };

static void hp_reset(void *opaque)
{
	struct pcihp *hp = opaque;
	hp->up = 0;
	/* a removal requested before the reset stays requested: the guest
	 * sees it again when its GPE handler runs (QEMU keeps it too) */
}

static void hp_cleanup(void *opaque)
{
	struct pcihp *hp = opaque;
	kl_bus_unregister(&hp->vm->pio, KL_PCIHP_BASE, hp);
	if (the_hp == hp)
		the_hp = NULL;
	g_free(hp);
}

int kl_acpi_pcihp_init(struct kl_vm *vm, void (*eject)(void *opaque, unsigned slot),
		       void *opaque, char **err)
{
	struct pcihp *hp = g_new0(struct pcihp, 1);
	hp->vm = vm;
	hp->eject = eject;
	hp->opaque = opaque;
	if (kl_bus_register(&vm->pio, KL_PCIHP_BASE, KL_PCIHP_LEN, &hp_ops, hp, "acpi-pcihp") < 0) {
		*err = g_strdup_printf("acpi-pcihp: I/O ports 0x%x-0x%x are already in use",
				       KL_PCIHP_BASE, KL_PCIHP_BASE + KL_PCIHP_LEN - 1);
		g_free(hp);
		return -1;
	}
	the_hp = hp;
	kl_vm_add_reset_handler(vm, hp_reset, hp);
	kl_vm_add_cleanup(vm, hp_cleanup, hp);
	return 0;
}

void kl_acpi_pcihp_plugged(struct kl_vm *vm, unsigned slot)
{
	struct pcihp *hp = hp_of(vm);
	if (!hp || slot == 0 || slot >= KL_PCI_NSLOTS)
		return;
	hp->up |= 1u << slot;
	kl_acpi_gpe_raise(vm, KL_ACPI_GPE_PCI_HOTPLUG);
}

void kl_acpi_pcihp_unplug_request(struct kl_vm *vm, unsigned slot)
{
	struct pcihp *hp = hp_of(vm);
	if (!hp || slot == 0 || slot >= KL_PCI_NSLOTS)
		return;
	hp->down |= 1u << slot;
	kl_acpi_gpe_raise(vm, KL_ACPI_GPE_PCI_HOTPLUG);
}
