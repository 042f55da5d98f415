/* vCPU threads and CPU model (src/cpu/). */
#ifndef KVMLITE_CPU_H
#define KVMLITE_CPU_H

#include <linux/kvm.h>
#include <stdbool.h>

struct kl_vm;

/* Apply a -cpu string ("host", "max", a named model, with ",+feat,-feat")
 * to a CPUID table obtained from KVM_GET_SUPPORTED_CPUID.  NULL spec = the
 * default model.  -1 with *err naming the unknown model/feature. */
int kl_cpu_model_apply(struct kvm_cpuid2 *cpuid, const char *spec, char **err);
/* Names of the models, NULL-terminated. */
const char *const *kl_cpu_model_names(void);

/* Fix up topology leaves (1, 4, 0xb, 0x1f) for vcpu index of ncpus. */
void kl_cpuid_fix_topology(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus);

/* True when /dev/kvm is PVM / has no hardware virtualisation (guests run
 * in the instruction emulator). */
bool kl_host_is_emulated(void);

#endif
