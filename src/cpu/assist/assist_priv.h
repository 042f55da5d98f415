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
	/* CR4.PCIDE fix-up (crfix.c): on when the guest sees PCID in the
	 * host's CPUID; the CR3/CR4 writes' addresses, once seen (any vCPU) */
	bool pcid_fix;
	uint64_t cr_site[2];           /* [0] mov to CR4, [1] mov to CR3 */
	unsigned site_gen;             /* bumped when a site is learnt */
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
	uint8_t *sup_state;
	uint64_t count[KL_ASX_K_COUNT];
	uint64_t ns[KL_ASX_K_COUNT];
	/* SYSCALL and CR fix-ups (breakpoint.c) */
	uint64_t star, lstar, sfmask;
	bool have_lstar;
	bool pcide;                    /* the guest's CR4.PCIDE (a shadow bit) */
	uint64_t tsc_aux;              /* the guest's IA32_TSC_AUX (KVM refuses it) */
	bool stepping;                 /* over a handler's first instruction */
	uint64_t bp[4];                /* armed DR0-3 (0 = off): #PF handler,
					  #GP handler, CR4 site, CR3 site */
	unsigned armed_gen;            /* a->site_gen the bps were set for */
	uint64_t pf_handler, gp_handler;
	uint64_t idt_base;             /* IDTR when the handlers were looked up */
	uint16_t idt_limit;
	const uint8_t *idt_entry[2];   /* host pointers to IDT[14], IDT[13] */
	uint8_t idt_copy[2][16];
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
