/* The VM-level migration sections: "irqchip" (the in-kernel PIC master,
 * PIC slave and IOAPIC: KVM_GET/SET_IRQCHIP), "pit" (KVM_GET/SET_PIT2)
 * and "kvmclock" (KVM_GET/SET_CLOCK).  Registered after the vCPUs, so they
 * load after them (the clock after the TSC). */
#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvmlite/migration.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

static void put_blob(struct kl_vms_out *o, const void *p, size_t n)
{
	kl_vms_put_u32(o, (uint32_t)n);
	kl_vms_put_bytes(o, p, n);
}

static void get_blob(struct kl_vms_in *in, void *p, size_t n, const char *what)
{
	uint32_t len = kl_vms_get_u32(in);
	if (!kl_vms_failed(in) && len != n) {
		kl_vms_fail(in, "%s of %u bytes (this host's is %zu)", what, len, n);
		return;
	}
	kl_vms_get_bytes(in, p, n);
}

static int irqchip_save(void *opaque, struct kl_vms_out *o, char **err)
{
	struct kl_vm *vm = opaque;
	for (uint32_t i = 0; i < 3; i++) {
		struct kvm_irqchip chip = { .chip_id = i };
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0) {
			*err = g_strdup_printf("KVM_GET_IRQCHIP %u: %s", i, g_strerror(errno));
			return -1;
		}
		put_blob(o, &chip, sizeof(chip));
	}
	return 0;
}

static int irqchip_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	struct kl_vm *vm = opaque;
	(void)version;
	struct kvm_irqchip chip[3];
	for (uint32_t i = 0; i < 3; i++) {
		get_blob(in, &chip[i], sizeof(chip[i]), "kvm_irqchip");
		if (!kl_vms_failed(in) && chip[i].chip_id != i) {
			*err = g_strdup_printf("irqchip %u has chip id %u", i, chip[i].chip_id);
			return -1;
		}
	}
	if (kl_vms_failed(in))
		return -1;
	for (uint32_t i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip[i]) < 0) {
			*err = g_strdup_printf("KVM_SET_IRQCHIP %u: %s", i, g_strerror(errno));
			return -1;
		}
	return 0;
}

static int pit_save(void *opaque, struct kl_vms_out *o, char **err)
{
	struct kl_vm *vm = opaque;
	struct kvm_pit_state2 pit;
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0) {
		*err = g_strdup_printf("KVM_GET_PIT2: %s", g_strerror(errno));
		return -1;
	}
	put_blob(o, &pit, sizeof(pit));
	return 0;
}

static int pit_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	struct kl_vm *vm = opaque;
	(void)version;
	struct kvm_pit_state2 pit;
	get_blob(in, &pit, sizeof(pit), "kvm_pit_state2");
	if (kl_vms_failed(in))
		return -1;
	/* KVM masks what it uses (a never-programmed channel has mode
	 * 0xff): its own checks are the ones that count */
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0) {
		*err = g_strdup_printf("KVM_SET_PIT2: %s", g_strerror(errno));
		return -1;
	}
	return 0;
}

static int clock_save(void *opaque, struct kl_vms_out *o, char **err)
{
	struct kl_vm *vm = opaque;
	struct kvm_clock_data cd;
	memset(&cd, 0, sizeof(cd));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &cd) < 0) {
		*err = g_strdup_printf("KVM_GET_CLOCK: %s", g_strerror(errno));
		return -1;
	}
	kl_vms_put_u64(o, cd.clock);
	return 0;
}

static int clock_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	struct kl_vm *vm = opaque;
	(void)version;
	struct kvm_clock_data cd;
	memset(&cd, 0, sizeof(cd));
	cd.clock = kl_vms_get_u64(in);
	if (kl_vms_failed(in))
		return -1;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &cd) < 0) {
		*err = g_strdup_printf("KVM_SET_CLOCK: %s", g_strerror(errno));
		return -1;
	}
	return 0;
}

static const struct kl_vmstate_ops irqchip_ops = {
	.kind = "irqchip", .version = 1, .min_version = 1,
	.save = irqchip_save, .load = irqchip_load,
};
static const struct kl_vmstate_ops pit_ops = {
	.kind = "pit", .version = 1, .min_version = 1,
	.save = pit_save, .load = pit_load,
};
static const struct kl_vmstate_ops clock_ops = {
	.kind = "kvmclock", .version = 1, .min_version = 1,
	.save = clock_save, .load = clock_load,
};

void kl_vm_state_register(struct kl_vm *vm)
{
	kl_vmstate_register(vm, "0", &irqchip_ops, vm);
	kl_vmstate_register(vm, "0", &pit_ops, vm);
	kl_vmstate_register(vm, "0", &clock_ops, vm);
}
