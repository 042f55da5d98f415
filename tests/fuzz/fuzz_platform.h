/* A fake PCI platform for the libFuzzer targets that drive a device through
 * the real virtio-pci / virtio-mmio transports without /dev/kvm
 * (fuzz_virtqueue, fuzz_vserial, fuzz_balloon): every call is accepted and
 * its arguments checked; MSI routes get GSIs from 24 up; the VM reset
 * handler a device registers is kept so that a script can run it. */
#ifndef KL_FUZZ_PLATFORM_H
#define KL_FUZZ_PLATFORM_H

#include "kvmlite/pci.h"

extern const struct kl_pci_platform_ops fuzz_pci_ops;

/* Run the reset handler the device registered (a VM reset), if any. */
void fuzz_platform_vm_reset(void);
/* Forget the handler (call after the device is freed). */
void fuzz_platform_forget(void);

#endif
