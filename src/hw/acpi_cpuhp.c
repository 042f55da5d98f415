/* QEMU's modern ACPI CPU hot-plug register block: see kvmlite/cpu_hotplug.h. */
#include <glib.h>

#include "kvmlite/acpi_pm.h"
#include "kvmlite/bus.h"
#include "kvmlite/cpu_hotplug.h"
#include "kvmlite/loop.h"
#include "kvmlite/vm.h"

#define R_SEL 0x0
#define R_FLAGS 0x4
#define R_CMD 0x5
#define R_DATA 0x8

#define F_ENABLED 0x1
#define F_INSERT 0x2
#define F_REMOVE 0x4
#define F_EJECT 0x8

#define CMD_GET_NEXT 0
#define CMD_GET_ARCH_ID 3

struct cpuhp {
	struct kl_vm *vm;
	uint32_t selector;
	uint8_t command;
	bool *inserting, *removing;   /* per slot */
	void (*eject)(void *opaque, unsigned slot);
	void *opaque;
};

struct eject_req {
	struct cpuhp *hp;
	unsigned slot;
};

static struct cpuhp *the_hp; /* owned by the VM's cleanup list */

static struct cpuhp *hp_of(struct kl_vm *vm)
{
	return the_hp && the_hp->vm == vm ? the_hp : NULL;
}

static uint64_t hp_read(void *opaque, uint64_t off, unsigned size)
{
	struct cpuhp *hp = opaque;
	unsigned s = hp->selector;
	uint64_t v = 0;
	if (s >= hp->vm->ncpus)
		return 0;
	switch (off) {
	case R_FLAGS:
		v = (kl_vcpu_plugged(hp->vm->vcpus[s]) ? F_ENABLED : 0) |
		    (hp->inserting[s] ? F_INSERT : 0) | (hp->removing[s] ? F_REMOVE : 0);
		break;
	case R_DATA:
		if (hp->command == CMD_GET_NEXT)
			v = s;
		else if (hp->command == CMD_GET_ARCH_ID)
			v = s;   /* APIC id = slot index */
		break;
	default:         /* 0x0: command data 2 (upper APIC id bits: 0) */
		break;
	}
	return size >= 8 ? v : v & ((1ull << (8 * size)) - 1);
}

static void eject_bh(void *opaque)
{
	struct eject_req *r = opaque;
	if (the_hp == r->hp && r->hp->eject)
		r->hp->eject(r->hp->opaque, r->slot);
	g_free(r);
}

/* Command 0: the next slot with an event, from the selector on (wrapping);
 * none: the selector stays. */
static void select_next(struct cpuhp *hp)
{
	unsigned n = hp->vm->ncpus;
	for (unsigned k = 0; k < n; k++) {
		unsigned s = (hp->selector + k) % n;
		if (hp->inserting[s] || hp->removing[s]) {
			hp->selector = s;
			return;
		}
	}
}

static void hp_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct cpuhp *hp = opaque;
	(void)size;
	if (off == R_SEL) {
		hp->selector = (uint32_t)val;
		return;
	}
	unsigned s = hp->selector;
	if (s >= hp->vm->ncpus)
		return; /* an invalid selector: writes are ignored */
	if (off == R_FLAGS) {
		if (val & F_INSERT)
			hp->inserting[s] = false;
		if (val & F_REMOVE)
			hp->removing[s] = false;
		if ((val & F_EJECT) && s != 0 && kl_vcpu_plugged(hp->vm->vcpus[s])) {
			/* the vCPU stops on the main loop, not on a vCPU thread
			 * (it may be this one) */
			struct eject_req *r = g_new(struct eject_req, 1);
			r->hp = hp;
			r->slot = s;
			kl_bh_schedule(eject_bh, r);
		}
	} else if (off == R_CMD) {
		hp->command = (uint8_t)val;
		if (hp->command == CMD_GET_NEXT)
			select_next(hp);
	}
	/* R_DATA: OST event/status (commands 1, 2): not reported */
}

static const struct kl_io_ops hp_ops = { .read = hp_read, .write = hp_write };

static void hp_cleanup(void *opaque)
{
	struct cpuhp *hp = opaque;
	kl_bus_unregister(&hp->vm->pio, KL_CPUHP_BASE, hp);
	if (the_hp == hp)
		the_hp = NULL;
	g_free(hp->inserting);
	g_free(hp->removing);
	g_free(hp);
}

int kl_acpi_cpuhp_init(struct kl_vm *vm, void (*eject)(void *opaque, unsigned slot),
		       void *opaque, char **err)
{
	struct cpuhp *hp = g_new0(struct cpuhp, 1);
	hp->vm = vm;
	hp->eject = eject;
	hp->opaque = opaque;
	hp->inserting = g_new0(bool, vm->ncpus);
	hp->removing = g_new0(bool, vm->ncpus);
	if (kl_bus_register(&vm->pio, KL_CPUHP_BASE, KL_CPUHP_LEN, &hp_ops, hp, "acpi-cpuhp") < 0) {
		*err = g_strdup_printf("acpi-cpuhp: I/O ports 0x%x-0x%x are already in use",
				       KL_CPUHP_BASE, KL_CPUHP_BASE + KL_CPUHP_LEN - 1);
		g_free(hp->inserting);
		g_free(hp->removing);
		g_free(hp);
		return -1;
	}
	the_hp = hp;
	kl_vm_add_cleanup(vm, hp_cleanup, hp);
	return 0;
}

void kl_acpi_cpuhp_plugged(struct kl_vm *vm, unsigned slot)
{
	struct cpuhp *hp = hp_of(vm);
	if (!hp || slot >= vm->ncpus)
		return;
	hp->inserting[slot] = true;
	kl_acpi_gpe_raise(vm, KL_ACPI_GPE_CPU_HOTPLUG);
}

void kl_acpi_cpuhp_unplug_request(struct kl_vm *vm, unsigned slot)
{
	struct cpuhp *hp = hp_of(vm);
	if (!hp || slot >= vm->ncpus)
		return;
	hp->removing[slot] = true;
	kl_acpi_gpe_raise(vm, KL_ACPI_GPE_CPU_HOTPLUG);
}
