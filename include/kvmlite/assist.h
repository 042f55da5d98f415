/* The emulation assist (src/cpu/assist/, docs/cpu.md): on hosts whose
 * /dev/kvm runs a guest's ring 0 in KVM's instruction emulator and its
 * ring 3 natively (PVM, no VMX/SVM), kvmlite executes the instructions the
 * emulator cannot (XSAVE family, XGETBV, CLAC/STAC, POPCNT, ...) and
 * completes the host's broken SYSCALL.  Off -- no hooks installed, no cost
 * -- on hosts with hardware virtualisation unless forced on. */
#ifndef KVMLITE_ASSIST_H
#define KVMLITE_ASSIST_H

#include <glib.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

struct kl_vm;
struct kl_assist;
struct kl_assist_vcpu;

enum kl_assist_mode {
	KL_ASSIST_AUTO = 0,  /* on where kl_host_is_emulated() */
	KL_ASSIST_ON,        /* -accel kvm,emulation-assist=on */
	KL_ASSIST_OFF,       /* -accel kvm,emulation-assist=off */
};

/* Resolve the mode for this host. */
bool kl_assist_enabled(enum kl_assist_mode mode);

/* Per VM: the MSR filter that makes the guest's writes of STAR/LSTAR/SFMASK
 * exit, user-space MSR exits.  NULL with *err on failure.  log: print the
 * counters' one-line summary at exit (-d assist). */
struct kl_assist *kl_assist_create(struct kl_vm *vm, bool log, char **err);
void kl_assist_destroy(struct kl_assist *a);   /* prints the summary if asked */

/* Per vCPU (called from kl_vcpu_create/kl_vcpu_destroy): enables sync regs
 * on run.  NULL with *err on failure. */
struct kl_assist_vcpu *kl_assist_vcpu_create(struct kl_assist *a, unsigned index, int fd,
					     struct kvm_run *run, char **err);
void kl_assist_vcpu_destroy(struct kl_assist_vcpu *v);
/* The vCPU was reset: forget the guest's LSTAR, disarm the breakpoint. */
void kl_assist_vcpu_reset(struct kl_assist_vcpu *v);

/* Exit handlers, on the vCPU thread with the BQL held.  true = handled,
 * run the vCPU again; false = not the assist's (the caller reports it). */
bool kl_assist_handle_exit(struct kl_assist_vcpu *v);
/* Before every KVM_RUN: re-arm when the guest has moved its IDT. */
void kl_assist_pre_run(struct kl_assist_vcpu *v);

/* Migration (src/cpu/assist/state.c): the assist's per-vCPU guest state,
 * vCPU parked.  load validates before it changes anything; -1 with the
 * reader failed. */
struct kl_vms_out;
struct kl_vms_in;
void kl_assist_vcpu_save(const struct kl_assist_vcpu *v, struct kl_vms_out *o);
int kl_assist_vcpu_load(struct kl_assist_vcpu *v, struct kl_vms_in *in);

/* Counters (BQL held): per kind, count and nanoseconds, summed over vCPUs.
 * Fills a JSON-ready description: [{"name":..,"count":..,"ns":..}, ...]. */
struct kl_assist_counter {
	const char *name;
	uint64_t count;
	uint64_t ns;
};
/* Returns the number of kinds written to out[] (at most max). */
unsigned kl_assist_counters(const struct kl_assist *a, struct kl_assist_counter *out,
			    unsigned max);
/* One line: "assist: xsave 123 (4.1 ms) popcnt 5 (...) ..." (g_free). */
char *kl_assist_summary(const struct kl_assist *a);

#endif
