/* vCPU threads and CPU model (src/cpu/). */
#ifndef KVMLITE_CPU_H
#define KVMLITE_CPU_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

struct kl_vm;

/* Apply a -cpu string ("host", "max", a named model, with ",+feat,-feat")
 * to a CPUID table obtained from KVM_GET_SUPPORTED_CPUID.  NULL spec = the
 * default model.  -1 with *err naming the unknown model/feature. */
int kl_cpu_model_apply(struct kvm_cpuid2 *cpuid, const char *spec, char **err);
/* Names of the models, NULL-terminated. */
const char *const *kl_cpu_model_names(void);

/* Fix up topology leaves (1, 4, 0xb, 0x1f, AMD's 0x8000001e and
 * 0x80000026) for vcpu index of ncpus. */
void kl_cpuid_fix_topology(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus);

/* Before the first vCPU on hosts where guests read the host's CPUID: ask
 * for AMX guest permission when the host has AMX (the guest will enable
 * it), and read this host's basic and extended leaves, on the lowest CPU
 * the thread may run on.  The table (g_free) or NULL with *err. */
struct kvm_cpuid2 *kl_cpuid_host_prepare(char **err);
/* Replace the table's leaves by host's (from kl_cpuid_host_prepare), adding
 * the sub-leaves KVM left out (capacity = entries allocated), so that KVM's
 * checks agree with what the guest sees. */
void kl_cpuid_host_view(struct kvm_cpuid2 *cpuid, unsigned capacity,
			const struct kvm_cpuid2 *host);

/* True when /dev/kvm is PVM / has no hardware virtualisation (guests run
 * in the instruction emulator). */
bool kl_host_is_emulated(void);

/* The CPUID table in the vcpu migration section (src/cpu/cpuid_state.c):
 * save it; check the source's (version 2: the table, 1: its CRC-32) against
 * ours, 0 or -1 with *err naming the first difference.  A malformed stream
 * fails `in` (kl_vms_failed) and returns 0: the section loader reports it. */
struct kl_vms_out;
struct kl_vms_in;
void kl_cpuid_state_save(const struct kvm_cpuid2 *t, struct kl_vms_out *o);
int kl_cpuid_state_check(const struct kvm_cpuid2 *t, unsigned vcpu, struct kl_vms_in *in,
			 uint32_t version, char **err);

/* vCPU objects (src/cpu/vcpu.c), driven by src/cpu/vm.c. */
struct kl_vcpu *kl_vcpu_create(struct kl_vm *vm, unsigned index, const char *cpu_model,
			       char **err);
int kl_vcpu_start(struct kl_vcpu *c, char **err);
void kl_vcpu_kick(struct kl_vcpu *c);          /* force it out of KVM_RUN */
void kl_vcpu_join(struct kl_vcpu *c);
void kl_vcpu_destroy(struct kl_vcpu *c);
/* Architectural reset state captured at creation (templates for loaders). */
void kl_vcpu_get_reset_state(const struct kl_vcpu *c, struct kvm_regs *regs,
			     struct kvm_sregs *sregs);
/* Registers to load after the next reset instead of the reset state (BSP). */
void kl_vcpu_set_boot_state(struct kl_vcpu *c, const struct kvm_regs *regs,
			    const struct kvm_sregs *sregs);
/* Print registers of a vCPU (for fatal exits) to stderr. */
void kl_vcpu_dump(struct kl_vcpu *c);
#endif
