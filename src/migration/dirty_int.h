/* Dirty-page bitmaps of a live migration (dirty.c). */
#ifndef KVMLITE_MIGRATION_DIRTY_INT_H
#define KVMLITE_MIGRATION_DIRTY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "kvmlite/mem.h"

struct kl_vm;

struct kl_dirty {
	struct kl_vm *vm;
	unsigned n;
	uint64_t *map[KL_MAX_MEM_REGIONS];  /* pages still to send, per region */
	uint64_t *kvm[KL_MAX_MEM_REGIONS];  /* KVM_GET_DIRTY_LOG scratch */
	/* the VMM's own writes (kl_mig_mark_dirty, from any thread), kept
	 * apart from map as KVM keeps its log: folded into map by
	 * kl_dirty_sync only, so that the main thread alone touches map and
	 * a mark made before the cursor passes a page (which it may send as
	 * a never-touched zero page, or send before the write lands) is
	 * still there at the next sync */
	uint64_t *dev[KL_MAX_MEM_REGIONS];
	uint64_t words[KL_MAX_MEM_REGIONS];
	bool logging[KL_MAX_MEM_REGIONS];
};

int kl_dirty_start(struct kl_vm *vm, struct kl_dirty *d, char **err);
void kl_dirty_stop(struct kl_dirty *d);
int64_t kl_dirty_sync(struct kl_dirty *d, char **err);
void kl_dirty_set_all(struct kl_dirty *d);

#endif
