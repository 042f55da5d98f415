/* Dirty-page tracking for live migration: KVM's dirty log on every RAM
 * slot (slot i = vm->mem.regions[i], as kl_vm_create set them), folded
 * into one bitmap per region, plus the pages the VMM itself writes
 * (device DMA into guest RAM, which KVM does not see: kl_mig_mark_dirty). */
#include <errno.h>
#include <sched.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvmlite/migration.h"
#include "kvmlite/vm.h"
#include "dirty_int.h"

static struct kl_dirty *active; /* the tracking kl_mig_mark_dirty feeds */
static unsigned marking;        /* kl_mig_mark_dirty calls in progress */

static int set_logging(struct kl_vm *vm, unsigned i, bool on)
{
	struct kl_mem_region *r = &vm->mem.regions[i];
	struct kvm_userspace_memory_region ur = {
		.slot = i,
		.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &ur);
}

/* kl_guest_mem's hook: device writes (kl_mem_write, virtqueue pushes) */
static void dirty_hook(void *opaque, uint64_t gpa, uint64_t len)
{
	kl_mig_mark_dirty(opaque, gpa, len);
}

int kl_dirty_start(struct kl_vm *vm, struct kl_dirty *d, char **err)
{
	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->n = vm->mem.nregions;
	for (unsigned i = 0; i < d->n; i++) {
		uint64_t pages = vm->mem.regions[i].size / KL_MIG_PAGE;
		d->words[i] = (pages + 63) / 64;
		d->map[i] = g_new0(uint64_t, d->words[i]);
		d->kvm[i] = g_new0(uint64_t, d->words[i]);
		d->dev[i] = g_new0(uint64_t, d->words[i]);
		if (set_logging(vm, i, true) < 0) {
			*err = g_strdup_printf("cannot log dirty pages of RAM slot %u: %s", i,
					       g_strerror(errno));
			kl_dirty_stop(d);
			return -1;
		}
		d->logging[i] = true;
	}
	__atomic_store_n(&active, d, __ATOMIC_RELEASE);
	vm->mem.dirty_opaque = vm;
	__atomic_store_n(&vm->mem.dirty_fn, dirty_hook, __ATOMIC_RELEASE);
	return 0;
}

void kl_dirty_stop(struct kl_dirty *d)
{
	if (active == d) {
		__atomic_store_n(&d->vm->mem.dirty_fn, NULL, __ATOMIC_RELEASE);
		__atomic_store_n(&active, NULL, __ATOMIC_SEQ_CST);
		/* an I/O thread may be marking a page (a cancel while the guest
		 * runs): wait until it is out before the bitmaps go */
		while (__atomic_load_n(&marking, __ATOMIC_SEQ_CST))
			sched_yield();
		d->vm->mem.dirty_opaque = NULL;
	}
	for (unsigned i = 0; i < d->n; i++) {
		if (d->logging[i])
			set_logging(d->vm, i, false);
		d->logging[i] = false;
		g_free(d->map[i]);
		g_free(d->kvm[i]);
		g_free(d->dev[i]);
		d->map[i] = d->kvm[i] = d->dev[i] = NULL;
	}
	d->n = 0;
}

/* KVM's log (fetch-and-clear) ORed into the bitmaps; returns the number
 * of dirty pages now set, or -1. */
int64_t kl_dirty_sync(struct kl_dirty *d, char **err)
{
	int64_t total = 0;
	for (unsigned i = 0; i < d->n; i++) {
		struct kvm_dirty_log log = { .slot = i, .dirty_bitmap = d->kvm[i] };
		memset(d->kvm[i], 0, d->words[i] * 8);
		if (ioctl(d->vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
			*err = g_strdup_printf("KVM_GET_DIRTY_LOG (slot %u): %s", i, g_strerror(errno));
			return -1;
		}
		for (uint64_t w = 0; w < d->words[i]; w++) {
			uint64_t dev = 0;
			if (__atomic_load_n(&d->dev[i][w], __ATOMIC_RELAXED))
				dev = __atomic_exchange_n(&d->dev[i][w], 0, __ATOMIC_ACQ_REL);
			d->map[i][w] |= d->kvm[i][w] | dev;
			total += __builtin_popcountll(d->map[i][w]);
		}
	}
	return total;
}

void kl_dirty_set_all(struct kl_dirty *d)
{
	for (unsigned i = 0; i < d->n; i++) {
		uint64_t pages = d->vm->mem.regions[i].size / KL_MIG_PAGE;
		memset(d->map[i], 0xff, d->words[i] * 8);
		if (pages % 64)
			d->map[i][d->words[i] - 1] = (1ull << (pages % 64)) - 1;
	}
}

void kl_mig_mark_dirty(struct kl_vm *vm, uint64_t gpa, uint64_t len)
{
	if (!len)
		return;
	__atomic_fetch_add(&marking, 1, __ATOMIC_SEQ_CST);
	struct kl_dirty *d = __atomic_load_n(&active, __ATOMIC_SEQ_CST);
	if (!d || d->vm != vm) {
		__atomic_fetch_sub(&marking, 1, __ATOMIC_RELEASE);
		return;
	}
	for (unsigned i = 0; i < d->n; i++) {
		const struct kl_mem_region *r = &vm->mem.regions[i];
		if (gpa >= r->gpa + r->size || gpa + len <= r->gpa)
			continue;
		uint64_t a = (gpa > r->gpa ? gpa : r->gpa) - r->gpa;
		uint64_t e = (gpa + len < r->gpa + r->size ? gpa + len : r->gpa + r->size) - r->gpa;
		for (uint64_t p = a / KL_MIG_PAGE; p <= (e - 1) / KL_MIG_PAGE; p++)
			__atomic_fetch_or(&d->dev[i][p / 64], 1ull << (p % 64), __ATOMIC_RELEASE);
	}
	__atomic_fetch_sub(&marking, 1, __ATOMIC_RELEASE);
}
