/* isa-debug-exit, as in QEMU: a write of value v makes kvmlite exit with
 * status (v << 1) | 1.  -device isa-debug-exit[,iobase=0x501][,iosize=2].
 * No VM state section: the device holds nothing between accesses (its
 * port range comes from the command line, which the destination repeats). */
#include <glib.h>

#include "kvmlite/bus.h"
#include "kvmlite/device.h"
#include "kvmlite/vm.h"

struct debug_exit {
	struct kl_vm *vm;
};

static uint64_t dx_read(void *opaque, uint64_t off, unsigned size)
{
	(void)opaque; (void)off; (void)size;
	return 0;
}

static void dx_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct debug_exit *d = opaque;
	(void)off;
	if (size < 8)
		val &= (1ULL << (size * 8)) - 1;
	kl_vm_request_shutdown(d->vm, (int)(((val << 1) | 1) & 0xff), true, NULL);
}

static const struct kl_io_ops dx_ops = { dx_read, dx_write };

static int dx_create(struct kl_vm *vm, struct kl_opts *o, char **err)
{
	uint64_t base, size;
	if (kl_opts_get_u64(o, "iobase", 0x501, &base, err) < 0 ||
	    kl_opts_get_u64(o, "iosize", 2, &size, err) < 0)
		return -1;
	if (base > 0xffff || size == 0 || size > 8 || base + size > 0x10000) {
		*err = g_strdup_printf("isa-debug-exit: bad iobase 0x%llx / iosize %llu",
				       (unsigned long long)base, (unsigned long long)size);
		return -1;
	}
	struct debug_exit *d = g_new0(struct debug_exit, 1);
	d->vm = vm;
	if (kl_bus_register(&vm->pio, base, size, &dx_ops, d, "isa-debug-exit") < 0) {
		*err = g_strdup_printf("isa-debug-exit: I/O ports 0x%llx+%llu are in use",
				       (unsigned long long)base, (unsigned long long)size);
		g_free(d);
		return -1;
	}
	kl_vm_add_cleanup(vm, g_free, d);
	return 0;
}

static const struct kl_device_type debug_exit_type = {
	.name = "isa-debug-exit",
	.help = "isa-debug-exit[,iobase=0x501][,iosize=2]: guest write v -> exit status (v<<1)|1",
	.create = dx_create,
};
KL_DEVICE_TYPE(debug_exit_type)
