/* Registries for -device, -drive and -netdev back-ends.
 *
 * One device = one file + one ops struct.  A device file registers its type
 * with KL_DEVICE_TYPE(...) at file scope; main.c looks types up by name.
 * (The executable is built from object files directly, so the constructor
 * is never dropped by the linker.)
 */
#ifndef KVMLITE_DEVICE_H
#define KVMLITE_DEVICE_H

#include "kvmlite/opts.h"

struct kl_vm;

struct kl_device_type {
	const char *name;   /* "virtio-blk-pci", "e1000", "isa-debug-exit" ... */
	const char *help;   /* one line for --help / -device help */
	/* Create the device from its options (the "driver" key is already
	 * consumed).  Read every key you support with kl_opts_get*; main.c
	 * rejects unknown keys afterwards.  Return 0, or -1 with *err set. */
	int (*create)(struct kl_vm *vm, struct kl_opts *opts, char **err);
	/* A PCI function on bus 0 whose teardown (its kl_pci_dev_ops.destroy)
	 * frees everything: device_add / device_del may plug it while the
	 * guest runs (src/hotplug/qdev.c). */
	bool hotpluggable;
};

void kl_device_type_register(const struct kl_device_type *t);
const struct kl_device_type *kl_device_type_find(const char *name);
/* NULL-terminated array of all registered types, sorted by name (g_free the
 * array, not the elements). */
const struct kl_device_type **kl_device_type_list(void);

/* QOM path of the device being created (main.c sets it before create()):
 * "/machine/peripheral/ID", or "/machine/peripheral-anon/device[N]" for
 * the N-th device without id, as QEMU numbers them.  NULL: none set. */
void kl_device_set_path(const char *id);
const char *kl_device_path(void);
void kl_device_clear_path(void); /* after the last device is created */

#define KL_DEVICE_TYPE(var)                                            \
	static void __attribute__((constructor)) var##_register(void) \
	{                                                              \
		kl_device_type_register(&(var));                       \
	}

#endif
