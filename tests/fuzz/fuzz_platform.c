/* The fake PCI platform of fuzz_platform.h. */
#include <stddef.h>

#include "kvmlite/vm.h"

#include "fuzz_platform.h"
#include "fuzz_util.h"

static void (*vm_reset_fn)(void *opaque);
static void *vm_reset_opaque;
static unsigned next_gsi;

static int f_set_irq(struct kl_vm *v, unsigned gsi, int level)
{
	(void)v;
	FUZZ_ASSERT(gsi < 24 && (level == 0 || level == 1));
	return 0;
}
static int f_irqfd(struct kl_vm *v, int efd, unsigned gsi, bool assign)
{
	(void)v, (void)gsi, (void)assign;
	FUZZ_ASSERT(efd >= 0);
	return 0;
}
static int f_ioeventfd(struct kl_vm *v, uint64_t addr, unsigned len, bool pio, int efd,
		       bool datamatch, uint64_t data, bool assign)
{
	(void)v, (void)addr, (void)len, (void)pio, (void)datamatch, (void)data, (void)assign;
	FUZZ_ASSERT(efd >= 0);
	return 0;
}
static int f_route_add(struct kl_vm *v, uint64_t addr, uint32_t data)
{
	(void)v, (void)addr, (void)data;
	return (int)(24 + next_gsi++ % 1000);
}
static int f_route_update(struct kl_vm *v, unsigned gsi, uint64_t addr, uint32_t data)
{
	(void)v, (void)addr, (void)data;
	FUZZ_ASSERT(gsi >= 24);
	return 0;
}
static void f_route_del(struct kl_vm *v, unsigned gsi)
{
	(void)v;
	FUZZ_ASSERT(gsi >= 24);
}
static int f_signal_msi(struct kl_vm *v, uint64_t addr, uint32_t data)
{
	(void)v, (void)addr, (void)data;
	return 0;
}
static void f_add_reset_handler(struct kl_vm *v, void (*fn)(void *), void *opaque)
{
	(void)v;
	vm_reset_fn = fn;
	vm_reset_opaque = opaque;
}

const struct kl_pci_platform_ops fuzz_pci_ops = {
	.set_irq = f_set_irq, .irqfd = f_irqfd, .ioeventfd = f_ioeventfd,
	.msi_route_add = f_route_add, .msi_route_update = f_route_update,
	.msi_route_del = f_route_del, .signal_msi = f_signal_msi,
	.add_reset_handler = f_add_reset_handler,
};

void fuzz_platform_vm_reset(void)
{
	if (vm_reset_fn)
		vm_reset_fn(vm_reset_opaque);
}

void fuzz_platform_forget(void)
{
	vm_reset_fn = NULL;
	vm_reset_opaque = NULL;
}
