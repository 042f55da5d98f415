#ifndef FAKE_VM_H
#define FAKE_VM_H
#include "kvmlite/block.h"
#include "kvmlite/vm.h"

struct fake_calls {
	int pause, resume, reset, shutdown, powerdown, listeners;
	bool reset_guest, shutdown_guest;
	int shutdown_code;
	char reset_reason[64], shutdown_reason[64];
	kl_event_fn listener;
	void *listener_opaque;
	kl_reset_fn reset_fn;
	void *reset_opaque;
	int irq_calls;
	unsigned irq_gsi;
	int irq_level;
};
extern struct fake_calls fake;
extern unsigned fake_nblockdevs;

void fake_vm_init(struct kl_vm *vm, unsigned ncpus);
void fake_vm_free(struct kl_vm *vm);
#endif
