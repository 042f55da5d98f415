/* The PCI layer's platform operations on a real VM: KVM interrupts and
 * ioeventfds (vm.h) and main-loop fd watches (loop.h). */
#include "kvmlite/loop.h"
#include "kvmlite/pci.h"
#include "kvmlite/vm.h"

static unsigned kvm_fd_add(int fd, kl_fd_fn fn, void *opaque)
{
	return kl_fd_add(fd, G_IO_IN, fn, opaque);
}

static void kvm_source_remove(unsigned id)
{
	kl_source_remove(id);
}

const struct kl_pci_platform_ops kl_pci_kvm_platform_ops = {
	.set_irq = kl_vm_set_irq,
	.irqfd = kl_vm_irqfd,
	.ioeventfd = kl_vm_ioeventfd,
	.msi_route_add = kl_vm_msi_route_add,
	.msi_route_update = kl_vm_msi_route_update,
	.msi_route_del = kl_vm_msi_route_del,
	.signal_msi = kl_vm_signal_msi,
	.fd_add = kvm_fd_add,
	.source_remove = kvm_source_remove,
	.add_reset_handler = kl_vm_add_reset_handler,
	.add_cleanup = kl_vm_add_cleanup,
};

static void __attribute__((constructor)) pci_kvm_default(void)
{
	kl_pci_default_platform_ops = &kl_pci_kvm_platform_ops;
}
