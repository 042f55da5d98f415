/* Internals of src/cpu/cpumodel.c shared with its unit tests. */
#ifndef KVMLITE_CPUMODEL_PRIV_H
#define KVMLITE_CPUMODEL_PRIV_H

#include <stdbool.h>

/* kl_host_is_emulated() with explicit paths: true when the cpuinfo file has
 * no "vmx"/"svm" flag (or cannot be read) or when pvm_dir exists. */
bool kl_host_is_emulated_at(const char *cpuinfo_path, const char *pvm_dir);

/* Name of the model used when -cpu is not given, for the given host kind. */
const char *kl_cpu_default_model(bool emulated);

#endif
