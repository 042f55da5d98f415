/* Private vCPU state shared by vcpu.c and vm.c. */
#ifndef KVMLITE_VCPU_PRIV_H
#define KVMLITE_VCPU_PRIV_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct kl_vm;

struct kl_vcpu {
	struct kl_vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	int tid;
	bool started, exited, parked;
	bool plugged;            /* false: an empty hot-plug slot (parked) */
	struct kl_assist_vcpu *assist; /* emulation assist, NULL when off */
	struct kvm_cpuid2 *cpuid; /* the table set (migration's CPU check) */
	bool stop_after_exit;    /* a reset was requested from this vCPU */
	/* the last KVM_RUN returned an exit that KVM completes only at the
	 * next KVM_RUN (complete_exit() in vcpu.c) */
	bool exit_pending;
	uint64_t reset_gen;      /* last reset generation applied */
	/* architectural reset state, captured at creation */
	struct kvm_regs rst_regs;
	struct kvm_sregs rst_sregs;
	struct kvm_fpu rst_fpu;
	struct kvm_lapic_state rst_lapic;
	struct kvm_mp_state rst_mp;
	/* boot state for the BSP (from the loader) */
	bool has_boot;
	struct kvm_regs boot_regs;
	struct kvm_sregs boot_sregs;
};

#endif
