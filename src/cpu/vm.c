/* VM state: KVM fds, irqchip, PIT, memory slots, GSI routing, run state,
 * reset and shutdown. */
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"
#include "kvmlite/assist.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kvmlite/cpu.h"
#include "kvmlite/loop.h"
#include "kvmlite/migration.h"
#include "vcpu_priv.h"

#define KL_TSS_ADDR 0xfffbd000UL
#define KL_IDENT_MAP_ADDR 0xfffbc000ULL
#define KL_MSI_GSI_BASE 24
#define KL_MAX_GSI 1024

struct listener {
	kl_event_fn fn;
	void *opaque;
};

struct reset_entry {
	kl_reset_fn fn;
	void *opaque;
};

struct cleanup_entry {
	GDestroyNotify fn;
	void *opaque;
};

/* Snapshot of the in-kernel irqchips and PIT at creation, for reset. */
static struct kvm_irqchip rst_chip[3];
static struct kvm_pit_state2 rst_pit;
static bool reset_pending;
static bool reset_guest;
static const char *reset_reason;

const char *kl_runstate_name(enum kl_runstate s)
{
	switch (s) {
	case KL_RS_PRELAUNCH: return "prelaunch";
	case KL_RS_RUNNING: return "running";
	case KL_RS_PAUSED: return "paused";
	case KL_RS_SHUTDOWN: return "shutdown";
	case KL_RS_INTERNAL_ERROR: return "internal-error";
	case KL_RS_INMIGRATE: return "inmigrate";
	case KL_RS_POSTMIGRATE: return "postmigrate";
	}
	return "unknown";
}

static struct kvm_irq_routing *routing(struct kl_vm *vm)
{
	return vm->routing;
}

static void route_add(struct kl_vm *vm, const struct kvm_irq_routing_entry *e)
{
	struct kvm_irq_routing *r = routing(vm);
	r = g_realloc(r, sizeof(*r) + (r->nr + 1) * sizeof(r->entries[0]));
	r->entries[r->nr++] = *e;
	vm->routing = r;
}

static int route_commit(struct kl_vm *vm)
{
	if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, routing(vm)) < 0)
		return -1;
	return 0;
}

static int setup_routing(struct kl_vm *vm)
{
	vm->routing = g_malloc0(sizeof(struct kvm_irq_routing));
	for (unsigned i = 0; i < 16; i++) {
		if (i == 2)
			continue;
		struct kvm_irq_routing_entry e = { .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP };
		e.u.irqchip.irqchip = i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
		e.u.irqchip.pin = i % 8;
		route_add(vm, &e);
	}
	for (unsigned i = 0; i < 24; i++) {
		if (i == 2)
			continue;
		struct kvm_irq_routing_entry e = { .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP };
		e.u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e.u.irqchip.pin = i == 0 ? 2 : i;
		route_add(vm, &e);
	}
	vm->msi_gsi_used = g_malloc0(KL_MAX_GSI);
	return route_commit(vm);
}

static int snapshot_chips(struct kl_vm *vm)
{
	for (int i = 0; i < 3; i++) {
		rst_chip[i].chip_id = i;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &rst_chip[i]) < 0)
			return -1;
	}
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &rst_pit) < 0)
		return -1;
	return 0;
}

static void restore_chips(struct kl_vm *vm)
{
	for (int i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &rst_chip[i]) < 0)
			fprintf(stderr, "kvmlite: reset: KVM_SET_IRQCHIP %d: %s\n", i, g_strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &rst_pit) < 0)
		fprintf(stderr, "kvmlite: reset: KVM_SET_PIT2: %s\n", g_strerror(errno));
}

int kl_vm_create(struct kl_vm *vm, uint64_t ram_size, const struct kl_mem_opts *mopts,
		 unsigned ncpus, const struct kl_cpu_opts *cpu, char **err)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	kl_mem_init_empty(&vm->mem);
	kl_bus_init(&vm->pio, "pio");
	kl_bus_init(&vm->mmio, "mmio");
	g_cond_init(&vm->state_cond);
	vm->reset_handlers = g_ptr_array_new_with_free_func(g_free);
	vm->event_listeners = g_ptr_array_new_with_free_func(g_free);
	vm->cleanups = g_ptr_array_new_with_free_func(g_free);
	vm->state = KL_RS_PRELAUNCH;
	unsigned slots = cpu->max_cpus > ncpus ? cpu->max_cpus : ncpus;
	vm->ncpus = slots;
	vm->boot_cpus = ncpus;
	vm->cpu_model = cpu->model;
	vm->sockets = 1;
	vm->cores = slots;
	vm->threads = 1;

	const char *dev = getenv("KVMLITE_KVM_DEV");
	if (!dev || !*dev)
		dev = "/dev/kvm";
	vm->kvm_fd = open(dev, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		*err = g_strdup_printf("cannot open %s: %s (is KVM available and accessible?)", dev,
				       g_strerror(errno));
		return -1;
	}
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		*err = g_strdup_printf("%s: not a usable KVM device (API version %d, need %d)", dev,
				       api, KVM_API_VERSION);
		return -1;
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) <= 0 ||
	    ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) <= 0) {
		*err = g_strdup_printf("%s: KVM lacks the in-kernel irqchip or user memory", dev);
		return -1;
	}
	int maxcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (maxcpus <= 0)
		maxcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (maxcpus > 0 && slots > (unsigned)maxcpus) {
		*err = g_strdup_printf("-smp %u exceeds KVM's maximum of %d vCPUs", slots, maxcpus);
		return -1;
	}
	if (slots > 255) {
		*err = g_strdup_printf("-smp %u: at most 255 vCPUs are supported (xAPIC ids)", slots);
		return -1;
	}
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	do {
		vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	} while (vm->vm_fd < 0 && errno == EINTR);
	if (vm->vm_fd < 0) {
		*err = g_strdup_printf("KVM_CREATE_VM failed: %s", g_strerror(errno));
		return -1;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KL_TSS_ADDR) < 0) {
		*err = g_strdup_printf("KVM_SET_TSS_ADDR failed: %s", g_strerror(errno));
		return -1;
	}
	uint64_t ident = KL_IDENT_MAP_ADDR;
	ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident); /* optional */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		*err = g_strdup_printf("KVM_CREATE_IRQCHIP failed: %s", g_strerror(errno));
		return -1;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		*err = g_strdup_printf("KVM_CREATE_PIT2 failed: %s", g_strerror(errno));
		return -1;
	}
	if (setup_routing(vm) < 0) {
		*err = g_strdup_printf("KVM_SET_GSI_ROUTING failed: %s", g_strerror(errno));
		return -1;
	}
	if (kl_mem_init(&vm->mem, ram_size, mopts, err) < 0)
		return -1;
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		struct kl_mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region ur = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uintptr_t)r->hva,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &ur) < 0) {
			*err = g_strdup_printf("KVM_SET_USER_MEMORY_REGION (slot %u, %llu MiB): %s", i,
					       (unsigned long long)(r->size >> 20), g_strerror(errno));
			return -1;
		}
	}
	if (snapshot_chips(vm) < 0) {
		*err = g_strdup_printf("cannot read the in-kernel irqchip state: %s", g_strerror(errno));
		return -1;
	}
	/* before the assist sizes its XSAVE buffers and before any vCPU */
	if (kl_host_is_emulated() && !(vm->host_cpuid = kl_cpuid_host_prepare(err)))
		return -1;
	if (kl_assist_enabled(cpu->assist)) {
		vm->assist = kl_assist_create(vm, cpu->assist_log, err);
		if (!vm->assist)
			return -1;
	}
	vm->vcpus = g_new0(struct kl_vcpu *, slots);
	for (unsigned i = 0; i < slots; i++) {
		vm->vcpus[i] = kl_vcpu_create(vm, i, cpu->model, err);
		if (!vm->vcpus[i])
			return -1;
	}
	vm->reset_gen = 1; /* vCPUs load their reset/boot state before running */
	/* migration sections: the vCPUs, then irqchip, PIT, kvmclock */
	kl_vcpu_state_register(vm);
	kl_vm_state_register(vm);
	return 0;
}

int kl_vm_start(struct kl_vm *vm, bool paused, char **err)
{
	vm->state = paused ? KL_RS_PRELAUNCH : KL_RS_RUNNING;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i] && kl_vcpu_start(vm->vcpus[i], err) < 0)
			return -1;
	return 0;
}

static void kick_all(struct kl_vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus && vm->vcpus[i])
			kl_vcpu_kick(vm->vcpus[i]);
}

/* With the BQL held: wait until every started vCPU is parked or gone. */
static void wait_parked(struct kl_vm *vm)
{
	for (;;) {
		unsigned idle = 0;
		for (unsigned i = 0; i < vm->ncpus; i++) {
			struct kl_vcpu *c = vm->vcpus[i];
			if (!c || !c->started || c->exited || c->parked)
				idle++;
		}
		if (idle == vm->ncpus)
			return;
		kick_all(vm);
		kl_cond_wait(&vm->state_cond);
	}
}

void kl_vm_destroy(struct kl_vm *vm)
{
	/* Called with the BQL held from the main thread after the loop ended. */
	vm->quit_requested = true;
	g_cond_broadcast(&vm->state_cond);
	kick_all(vm);
	for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++) {
		if (!vm->vcpus[i])
			continue;
		kl_unlock();
		kl_vcpu_join(vm->vcpus[i]);
		kl_lock();
		kl_vcpu_destroy(vm->vcpus[i]);
	}
	g_free(vm->vcpus);
	vm->vcpus = NULL;
	kl_assist_destroy(vm->assist);
	vm->assist = NULL;
	g_free(vm->host_cpuid);
	vm->host_cpuid = NULL;
	/* Devices last registered go first (they may use earlier ones). */
	for (guint i = vm->cleanups->len; i > 0; i--) {
		struct cleanup_entry *e = g_ptr_array_index(vm->cleanups, i - 1);
		e->fn(e->opaque);
	}
	g_ptr_array_free(vm->cleanups, TRUE);
	vm->cleanups = NULL;
	kl_vmstate_free_all(vm); /* sections a device did not unregister */
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	kl_mem_destroy(&vm->mem);
	kl_bus_destroy(&vm->pio);
	kl_bus_destroy(&vm->mmio);
	g_free(vm->routing);
	g_free(vm->msi_gsi_used);
	vm->routing = NULL;
	vm->msi_gsi_used = NULL;
	g_ptr_array_free(vm->reset_handlers, TRUE);
	g_ptr_array_free(vm->event_listeners, TRUE);
	vm->reset_handlers = vm->event_listeners = NULL;
	g_free(vm->name);
	vm->name = NULL;
}

int kl_vm_set_irq(struct kl_vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level };
	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
}

int kl_vm_irqfd(struct kl_vm *vm, int efd, unsigned gsi, bool assign)
{
	struct kvm_irqfd f = { .fd = (uint32_t)efd, .gsi = gsi,
			       .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
	return ioctl(vm->vm_fd, KVM_IRQFD, &f);
}

int kl_vm_ioeventfd(struct kl_vm *vm, uint64_t addr, unsigned len, bool pio, int efd,
		    bool datamatch, uint64_t data, bool assign)
{
	struct kvm_ioeventfd io = { .datamatch = data, .addr = addr, .len = len, .fd = efd };
	if (pio)
		io.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (datamatch)
		io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
	if (!assign)
		io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io);
}

int kl_vm_msi_route_add(struct kl_vm *vm, uint64_t addr, uint32_t data)
{
	unsigned gsi;
	for (gsi = KL_MSI_GSI_BASE; gsi < KL_MAX_GSI; gsi++)
		if (!vm->msi_gsi_used[gsi])
			break;
	if (gsi >= KL_MAX_GSI)
		return -1;
	struct kvm_irq_routing_entry e = { .gsi = gsi, .type = KVM_IRQ_ROUTING_MSI };
	e.u.msi.address_lo = (uint32_t)addr;
	e.u.msi.address_hi = (uint32_t)(addr >> 32);
	e.u.msi.data = data;
	route_add(vm, &e);
	if (route_commit(vm) < 0) {
		routing(vm)->nr--;
		return -1;
	}
	vm->msi_gsi_used[gsi] = 1;
	return (int)gsi;
}

int kl_vm_msi_route_update(struct kl_vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	struct kvm_irq_routing *r = routing(vm);
	for (unsigned i = 0; i < r->nr; i++) {
		if (r->entries[i].gsi == gsi && r->entries[i].type == KVM_IRQ_ROUTING_MSI) {
			r->entries[i].u.msi.address_lo = (uint32_t)addr;
			r->entries[i].u.msi.address_hi = (uint32_t)(addr >> 32);
			r->entries[i].u.msi.data = data;
			return route_commit(vm);
		}
	}
	return -1;
}

void kl_vm_msi_route_del(struct kl_vm *vm, unsigned gsi)
{
	struct kvm_irq_routing *r = routing(vm);
	for (unsigned i = 0; i < r->nr; i++) {
		if (r->entries[i].gsi == gsi && r->entries[i].type == KVM_IRQ_ROUTING_MSI) {
			memmove(&r->entries[i], &r->entries[i + 1], (r->nr - i - 1) * sizeof(r->entries[0]));
			r->nr--;
			vm->msi_gsi_used[gsi] = 0;
			route_commit(vm);
			return;
		}
	}
}

int kl_vm_signal_msi(struct kl_vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi m = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
			     .data = data };
	return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &m);
}

void kl_vm_add_reset_handler(struct kl_vm *vm, kl_reset_fn fn, void *opaque)
{
	struct reset_entry *e = g_new(struct reset_entry, 1);
	e->fn = fn;
	e->opaque = opaque;
	g_ptr_array_add(vm->reset_handlers, e);
}

void kl_vm_add_cleanup(struct kl_vm *vm, GDestroyNotify fn, void *opaque)
{
	struct cleanup_entry *e = g_new(struct cleanup_entry, 1);
	e->fn = fn;
	e->opaque = opaque;
	g_ptr_array_add(vm->cleanups, e);
}

void kl_vm_add_event_listener(struct kl_vm *vm, kl_event_fn fn, void *opaque)
{
	struct listener *l = g_new(struct listener, 1);
	l->fn = fn;
	l->opaque = opaque;
	g_ptr_array_add(vm->event_listeners, l);
}

void kl_vm_emit(struct kl_vm *vm, enum kl_vm_event ev, const struct kl_event_info *info)
{
	struct kl_event_info none = { false, NULL };
	if (!info)
		info = &none;
	for (guint i = 0; vm->event_listeners && i < vm->event_listeners->len; i++) {
		struct listener *l = g_ptr_array_index(vm->event_listeners, i);
		l->fn(l->opaque, ev, info);
	}
}

void kl_vm_pause(struct kl_vm *vm)
{
	if (vm->state != KL_RS_RUNNING)
		return;
	vm->state = KL_RS_PAUSED;
	kick_all(vm);
	wait_parked(vm);
	kl_vm_emit(vm, KL_EV_STOP, NULL);
}

void kl_vm_resume(struct kl_vm *vm)
{
	if (vm->state != KL_RS_PAUSED && vm->state != KL_RS_PRELAUNCH &&
	    vm->state != KL_RS_POSTMIGRATE)
		return;
	vm->state = KL_RS_RUNNING;
	g_cond_broadcast(&vm->state_cond);
	kl_vm_emit(vm, KL_EV_RESUME, NULL);
}

static void reset_bh(void *opaque)
{
	struct kl_vm *vm = opaque;
	bool guest = reset_guest;
	const char *reason = reset_reason;
	if (!reset_pending)   /* done already by kl_vm_reset_now() */
		return;
	reset_pending = false;
	if (vm->quit_requested)
		return;
	vm->pause_req = true;
	kick_all(vm);
	wait_parked(vm);
	restore_chips(vm);
	for (guint i = 0; i < vm->reset_handlers->len; i++) {
		struct reset_entry *e = g_ptr_array_index(vm->reset_handlers, i);
		e->fn(e->opaque);
	}
	if (vm->reload_boot && vm->reload_boot(vm) < 0) {
		fprintf(stderr, "kvmlite: reset: cannot reload the kernel\n");
		kl_vm_request_shutdown(vm, 1, false, NULL);
		return;
	}
	vm->reset_gen++;
	vm->pause_req = false;
	if (vm->state == KL_RS_SHUTDOWN) /* -no-shutdown: reset, then 'cont' */
		vm->state = KL_RS_PAUSED;
	g_cond_broadcast(&vm->state_cond);
	struct kl_event_info info = { guest, reason };
	kl_vm_emit(vm, KL_EV_RESET, &info);
}

void kl_vm_reset_now(struct kl_vm *vm)
{
	if (reset_pending)
		reset_bh(vm);
}

void kl_vm_request_reset(struct kl_vm *vm, bool guest, const char *reason)
{
	bool locked = kl_locked();
	if (!locked)
		kl_lock();
	if (!reset_pending && !vm->quit_requested) {
		reset_pending = true;
		reset_guest = guest;
		reset_reason = reason;
		kl_bh_schedule(reset_bh, vm);
	}
	if (!locked)
		kl_unlock();
}

static void quit_bh(void *opaque)
{
	(void)opaque;
	kl_loop_quit();
}

void kl_vm_request_shutdown(struct kl_vm *vm, int exit_code, bool guest, const char *reason)
{
	bool locked = kl_locked();
	if (!locked)
		kl_lock();
	if (!vm->quit_requested && guest && reason && vm->no_shutdown &&
	    vm->state != KL_RS_SHUTDOWN) {
		/* -no-shutdown: stop the vCPUs, stay up for QMP. */
		struct kl_event_info info = { guest, reason };
		vm->state = KL_RS_SHUTDOWN;
		kl_vm_emit(vm, KL_EV_SHUTDOWN, &info);
		kl_vm_emit(vm, KL_EV_STOP, NULL); /* as QEMU: STOP follows */
		kick_all(vm);
	} else if (!vm->quit_requested) {
		vm->quit_requested = true;
		vm->exit_code = exit_code;
		if (vm->state != KL_RS_INTERNAL_ERROR)
			vm->state = KL_RS_SHUTDOWN;
		if (reason) {
			struct kl_event_info info = { guest, reason };
			kl_vm_emit(vm, KL_EV_SHUTDOWN, &info);
		}
		g_cond_broadcast(&vm->state_cond);
		kick_all(vm);
		kl_bh_schedule(quit_bh, NULL);
	}
	if (!locked)
		kl_unlock();
}

void kl_vm_request_powerdown(struct kl_vm *vm)
{
	kl_vm_emit(vm, KL_EV_POWERDOWN, NULL);
	if (vm->powerdown_fn)
		vm->powerdown_fn(vm->powerdown_opaque);
}

void kl_vm_fatal(struct kl_vm *vm, int exit_code)
{
	vm->state = KL_RS_INTERNAL_ERROR;
	kl_vm_request_shutdown(vm, exit_code, false, NULL);
}
