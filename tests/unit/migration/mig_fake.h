/* A VM for the migration stream tests and the fuzz target: guest RAM in a
 * caller buffer (kl_mem_add_region), no KVM, and two test sections ("dev/a"
 * holds a u32 and a string, "dev/b" an array of at most 16 bytes whose
 * count the load checks) -- what a device section does with untrusted
 * input, in small. */
#ifndef KL_MIG_FAKE_H
#define KL_MIG_FAKE_H

#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "kvmlite/migration.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

struct mig_dev {
	uint32_t a;
	char *name;
	uint8_t arr[16];
	uint32_t narr;
	int post_loads;
};

static int dev_a_save(void *o, struct kl_vms_out *out, char **err)
{
	struct mig_dev *d = o;
	(void)err;
	kl_vms_put_u32(out, d->a);
	kl_vms_put_str(out, d->name);
	return 0;
}

static int dev_a_load(void *o, struct kl_vms_in *in, uint32_t v, char **err)
{
	struct mig_dev *d = o;
	(void)v, (void)err;
	uint32_t a = kl_vms_get_u32(in);
	char *name = kl_vms_get_str(in, 64);
	if (kl_vms_failed(in)) {
		g_free(name);
		return -1;
	}
	d->a = a;
	g_free(d->name);
	d->name = name;
	return 0;
}

static int dev_b_save(void *o, struct kl_vms_out *out, char **err)
{
	struct mig_dev *d = o;
	(void)err;
	kl_vms_put_u32(out, d->narr);
	kl_vms_put_bytes(out, d->arr, d->narr);
	return 0;
}

static int dev_b_load(void *o, struct kl_vms_in *in, uint32_t v, char **err)
{
	struct mig_dev *d = o;
	(void)v, (void)err;
	uint8_t arr[16];
	uint32_t n = kl_vms_get_u32_max(in, sizeof(arr), "array length");
	kl_vms_get_bytes(in, arr, n);
	if (kl_vms_failed(in))
		return -1;
	memcpy(d->arr, arr, n);
	d->narr = n;
	return 0;
}

static int dev_post(void *o, char **err)
{
	(void)err;
	((struct mig_dev *)o)->post_loads++;
	return 0;
}

static const struct kl_vmstate_ops dev_a_ops = {
	.kind = "dev", .version = 2, .min_version = 1,
	.save = dev_a_save, .load = dev_a_load, .post_load = dev_post,
};
static const struct kl_vmstate_ops dev_b_ops = {
	.kind = "devb", .version = 1, .min_version = 1,
	.save = dev_b_save, .load = dev_b_load,
};

struct mig_vm {
	struct kl_vm vm;
	uint8_t *ram;
	size_t ram_size;
	struct mig_dev dev;
};

/* ram_size bytes of RAM at GPA 0 (page-aligned buffer) */
static inline void mig_vm_init(struct mig_vm *m, size_t ram_size, unsigned ncpus)
{
	memset(m, 0, sizeof(*m));
	kl_mem_init_empty(&m->vm.mem);
	m->ram = g_aligned_alloc0(1, ram_size, 4096);
	m->ram_size = ram_size;
	kl_mem_add_region(&m->vm.mem, 0, ram_size, m->ram);
	m->vm.ncpus = ncpus;
	kl_vmstate_register(&m->vm, "a", &dev_a_ops, &m->dev);
	kl_vmstate_register(&m->vm, "0", &dev_b_ops, &m->dev);
}

static inline void mig_vm_free(struct mig_vm *m)
{
	kl_vmstate_free_all(&m->vm);
	g_aligned_free(m->ram);
	g_free(m->dev.name);
}

#endif
