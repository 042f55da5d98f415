/* The virtual machine: KVM fds, memory, buses, vCPUs, interrupts, run state.
 *
 * Threads: the main loop thread owns run-state changes; vCPU threads loop on
 * KVM_RUN.  Functions marked "any thread" may be called from a vCPU thread
 * (with the BQL held, from a device handler) or from the main loop.
 */
#ifndef KVMLITE_VM_H
#define KVMLITE_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "kvmlite/bus.h"
#include "kvmlite/mem.h"

struct kl_vcpu;
struct kl_assist;
struct kl_virtio_mmio_slots;

/* The CPU side of kl_vm_create. */
struct kl_cpu_opts {
	const char *model;       /* -cpu; NULL = the default model */
	int assist;              /* enum kl_assist_mode (kvmlite/assist.h) */
	bool assist_log;         /* -d assist */
	unsigned max_cpus;       /* -smp maxcpus=: vCPU slots (0: = ncpus) */
};

enum kl_runstate {
	KL_RS_PRELAUNCH,  /* -S: created, never run */
	KL_RS_RUNNING,
	KL_RS_PAUSED,     /* stopped by the user (QMP stop) */
	KL_RS_SHUTDOWN,   /* guest powered off / quit requested, exiting */
	KL_RS_INTERNAL_ERROR,
	KL_RS_INMIGRATE,  /* -incoming: waiting for / loading a migration stream */
	KL_RS_POSTMIGRATE, /* the source after a completed migration (paused) */
};
const char *kl_runstate_name(enum kl_runstate s); /* QMP names: "running", ... */

enum kl_vm_event {
	KL_EV_STOP,
	KL_EV_RESUME,
	KL_EV_RESET,     /* info: guest, reason */
	KL_EV_SHUTDOWN,  /* info: guest, reason */
	KL_EV_POWERDOWN,
};

struct kl_event_info {
	bool guest;          /* initiated by the guest */
	const char *reason;  /* QEMU ShutdownCause names: "guest-shutdown",
				"guest-reset", "host-qmp-quit", "host-signal",
				"host-qmp-system-reset", "guest-panic", ... */
};

typedef void (*kl_event_fn)(void *opaque, enum kl_vm_event ev, const struct kl_event_info *info);
typedef void (*kl_reset_fn)(void *opaque);

struct kl_vm {
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	struct kl_guest_mem mem;
	struct kl_bus pio;
	struct kl_bus mmio;

	unsigned ncpus;            /* vCPU slots (-smp maxcpus=) */
	unsigned boot_cpus;        /* present at start (-smp N): slots 0..N-1 */
	unsigned sockets, cores, threads;
	struct kl_vcpu **vcpus;    /* ncpus entries, one per slot; an empty slot's
				      vCPU exists but is not plugged (kl_vcpu_plugged) */
	const char *cpu_model;     /* -cpu, for hot-plugged vCPUs */
	struct kl_assist *assist;  /* emulation assist, NULL when off */
	struct kvm_cpuid2 *host_cpuid; /* the host's own leaves on hosts whose guests
					  read them (kl_cpuid_host_prepare), or NULL */
	struct kl_virtio_mmio_slots *virtio_mmio; /* -M microvm's virtio-mmio
						     transports (virtio.h), or NULL */

	/* run state: protected by the BQL */
	enum kl_runstate state;
	int exit_code;            /* process exit status when the loop ends */
	bool quit_requested;
	GCond state_cond;         /* vCPUs park / report parking on this */
	unsigned parked;          /* number of vCPUs parked */
	bool pause_req;           /* vCPUs must park */
	uint64_t reset_gen;       /* bumped by a reset; vCPUs reload state */

	/* GSI routing table (IRQCHIP routes + MSI routes), protected by BQL */
	void *routing;            /* struct kvm_irq_routing * */
	uint8_t *msi_gsi_used;

	GPtrArray *reset_handlers; /* of struct kl_reset_entry */
	GPtrArray *event_listeners;
	GPtrArray *cleanups;       /* of struct cleanup_entry: kl_vm_add_cleanup */
	GPtrArray *vmstate;        /* of struct kl_vmstate_entry (kvmlite/vmstate.h) */
	kl_reset_fn powerdown_fn;  /* platform's "power button"; NULL: none */
	void *powerdown_opaque;

	char *name;                /* -name */
	uint8_t uuid[16];
	bool has_uuid;

	bool no_shutdown;          /* -no-shutdown: guest poweroff pauses, no exit */
	bool log_cpu_reset;        /* -d cpu_reset: registers of a triple-faulting vCPU */

	/* re-load the kernel and set the BSP's boot registers on reset */
	int (*reload_boot)(struct kl_vm *vm); /* re-load kernel + set BSP regs */
};

/* Creation: open /dev/kvm (path overridable for tests via KVMLITE_KVM_DEV),
 * create VM, irqchip, PIT, memory slots.  -1 with *err on failure. */
int kl_vm_create(struct kl_vm *vm, uint64_t ram_size, const struct kl_mem_opts *mopts,
		 unsigned ncpus, const struct kl_cpu_opts *cpu, char **err);
/* Start vCPU threads (parked if the state is PRELAUNCH/PAUSED). */
int kl_vm_start(struct kl_vm *vm, bool paused, char **err);
void kl_vm_destroy(struct kl_vm *vm);

/* Interrupts (any thread) */
int kl_vm_set_irq(struct kl_vm *vm, unsigned gsi, int level);    /* KVM_IRQ_LINE */
int kl_vm_irqfd(struct kl_vm *vm, int efd, unsigned gsi, bool assign);
int kl_vm_ioeventfd(struct kl_vm *vm, uint64_t addr, unsigned len, bool pio,
		    int efd, bool datamatch, uint64_t data, bool assign);
/* MSI routes: allocate a GSI routed to (addr,data); update; free. */
int kl_vm_msi_route_add(struct kl_vm *vm, uint64_t addr, uint32_t data); /* gsi or -1 */
int kl_vm_msi_route_update(struct kl_vm *vm, unsigned gsi, uint64_t addr, uint32_t data);
void kl_vm_msi_route_del(struct kl_vm *vm, unsigned gsi);
int kl_vm_signal_msi(struct kl_vm *vm, uint64_t addr, uint32_t data);

/* Run-state control.  pause/resume: main thread with the BQL; pause returns
 * once every vCPU is out of KVM_RUN and parked. */
void kl_vm_pause(struct kl_vm *vm);   /* -> PAUSED, emits STOP */
void kl_vm_resume(struct kl_vm *vm);  /* -> RUNNING, emits RESUME */
/* Any thread; the work happens on the main loop. */
void kl_vm_request_reset(struct kl_vm *vm, bool guest, const char *reason);
/* Main thread, BQL held: carry out a requested reset now rather than in its
 * bottom half (QMP system_reset: the next command, e.g. libvirt's 'cont'
 * after a -no-shutdown SHUTDOWN, sees the reset done, as under QEMU). */
void kl_vm_reset_now(struct kl_vm *vm);
/* Stop the VM and end the main loop; the process exits with exit_code. */
void kl_vm_request_shutdown(struct kl_vm *vm, int exit_code, bool guest, const char *reason);
/* ACPI-button-like request; emits POWERDOWN and calls powerdown_fn. */
void kl_vm_request_powerdown(struct kl_vm *vm);
/* Fatal error from a vCPU: report and exit non-zero. */
void kl_vm_fatal(struct kl_vm *vm, int exit_code);

void kl_vm_add_reset_handler(struct kl_vm *vm, kl_reset_fn fn, void *opaque);
/* Device teardown: kl_vm_destroy calls fn(opaque) once the vCPU threads are
 * joined (no handler can run any more), in reverse order of registration,
 * before it frees the buses.  A device whose state is referenced only from
 * bus ranges and reset handlers registers its free function here. */
void kl_vm_add_cleanup(struct kl_vm *vm, GDestroyNotify fn, void *opaque);
void kl_vm_add_event_listener(struct kl_vm *vm, kl_event_fn fn, void *opaque);
void kl_vm_emit(struct kl_vm *vm, enum kl_vm_event ev, const struct kl_event_info *info);

/* vCPU info for query-cpus-fast */
int kl_vcpu_index(const struct kl_vcpu *c);
int kl_vcpu_thread_id(const struct kl_vcpu *c); /* host TID */
/* vCPU hot-plug (src/hotplug/cpu_hotplug.c).  Every slot's vCPU and thread
 * exist from the start (the seccomp sandbox allows neither KVM_CREATE_VCPU
 * nor a KVM_RUN thread made by the armed main thread later); an empty slot's
 * thread stays parked.  BQL held, main loop. */
bool kl_vcpu_plugged(const struct kl_vcpu *c);
/* Plug: the vCPU loads its reset state (an AP: wait-for-SIPI) and runs. */
void kl_vcpu_plug(struct kl_vcpu *c);
/* Unplug: returns once the vCPU is out of KVM_RUN and parked. */
void kl_vcpu_unplug(struct kl_vcpu *c);

#endif
