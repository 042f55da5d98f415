/* State shared by assist.c and breakpoint.c (the KVM side of the assist). */
#ifndef KVMLITE_ASSIST_PRIV_H
#define KVMLITE_ASSIST_PRIV_H

#include <glib.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "assist_int.h"

struct kl_vm;

struct kl_assist {
	struct kl_vm *vm;
	bool log;                      /* -d assist: summary at exit */
	struct kl_xstate_layout xstate;
	bool xsave2;                   /* KVM_GET_XSAVE2 */
	size_t xsave_len;              /* uABI XSAVE buffer bytes */
	size_t sup_len;                /* supervisor XSAVE state per vCPU */
	bool has_xss;
	GPtrArray *vcpus;              /* of struct kl_assist_vcpu (not owned) */
	uint64_t gone_count[KL_ASX_K_COUNT];  /* counters of destroyed vCPUs */
	uint64_t gone_ns[KL_ASX_K_COUNT];
};

struct kl_assist_vcpu {
	struct kl_assist *a;
	unsigned index;
	int fd;
	struct kvm_run *run;
	struct kl_asx_cpu cpu;         /* scratch for one assist */
	void *xsave_buf;
	uint8_t *sup_state;
	uint64_t count[KL_ASX_K_COUNT];
	uint64_t ns[KL_ASX_K_COUNT];
	/* SYSCALL fix-up (breakpoint.c) */
	uint64_t star, lstar, sfmask;
	bool have_lstar;
	bool armed, stepping;
	uint64_t pf_handler;           /* guest-virtual, where DR0 points */
	uint64_t idt_base;             /* IDTR when the handler was looked up */
	uint16_t idt_limit;
	const uint8_t *idt_entry;      /* host pointer to IDT[14] (16 bytes) or NULL */
	uint8_t idt_copy[16];
};

void kl_assist_load_cpu(struct kl_assist_vcpu *v);
void kl_assist_inject(struct kl_assist_vcpu *v, const struct kl_asx_fault *f);
void kl_assist_count(struct kl_assist_vcpu *v, enum kl_asx_kind k, uint64_t t0);
int kl_assist_get_msr(struct kl_assist_vcpu *v, uint32_t index, uint64_t *val);
int kl_assist_set_msr(struct kl_assist_vcpu *v, uint32_t index, uint64_t val);

/* breakpoint.c */
int kl_assist_bp_vm_init(struct kl_assist *a, char **err);
void kl_assist_bp_reset(struct kl_assist_vcpu *v);
bool kl_assist_bp_debug_exit(struct kl_assist_vcpu *v);
bool kl_assist_bp_msr_exit(struct kl_assist_vcpu *v);

#endif
