/* -M microvm: the machine's virtio-mmio transports (src/hw/microvm.c). */
#ifndef KVMLITE_MICROVM_H
#define KVMLITE_MICROVM_H

struct kl_vm;

#define KL_MICROVM_VIRTIO_MMIO_BASE 0xfeb00000ULL

/* Give vm its virtio-mmio slots (vm->virtio_mmio; freed with the VM). */
int kl_microvm_init(struct kl_vm *vm, char **err);
/* cmdline + " virtio_mmio.device=512@0xBASE:GSI" for every transport with
 * a device, in slot order (g_free the result). */
char *kl_microvm_cmdline(const struct kl_vm *vm, const char *cmdline);

#endif
