/* vCPU threads: one thread per vCPU looping on KVM_RUN, dispatching PIO and
 * MMIO exits to the buses with the BQL held. */
#include "kvmlite/cpu.h"

#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvmlite/assist.h"
#include "kvmlite/loop.h"
#include "kvmlite/seccomp.h"
#include "kvmlite/vm.h"
#include "vcpu_priv.h"

#define SIG_KICK SIGUSR1

static __thread struct kvm_run *tls_run;

static void kick_handler(int sig)
{
	(void)sig;
	if (tls_run)
		tls_run->immediate_exit = 1;
}

static void install_kick_handler(void)
{
	static bool done;
	if (done)
		return;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIG_KICK, &sa, NULL);
	done = true;
}

/* On a host whose guests read the host's own CPUID (PVM), say once when
 * -cpu asks for something that cannot reach the guest. */
static void warn_cpu_model(const char *model)
{
	static bool warned;
	if (warned || !model)
		return;
	size_t nlen = strcspn(model, ",");
	bool passthrough = (nlen == 4 && !strncmp(model, "host", 4)) ||
			   (nlen == 3 && !strncmp(model, "max", 3));
	if (passthrough && !model[nlen])
		return;
	warned = true;
	fprintf(stderr, "kvmlite: warning: -cpu %s: on this host (/dev/kvm without VMX/SVM, PVM) "
		"the guest reads the host's own CPUID whatever -cpu says; the model and its "
		"+/-features change only what KVM itself checks (XSETBV, MSRs, the TSC-deadline "
		"timer), not what the guest sees (docs/cpu.md)\n", model);
}

static int set_cpuid(struct kl_vcpu *c, const char *model, char **err)
{
	struct kl_vm *vm = c->vm;
	int nent = 128;
	struct kvm_cpuid2 *cpuid = NULL;
	for (;;) {
		cpuid = g_malloc0(sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
		cpuid->nent = nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			break;
		int e = errno;
		g_free(cpuid);
		if (e != E2BIG || nent > 4096) {
			*err = g_strdup_printf("KVM_GET_SUPPORTED_CPUID: %s", g_strerror(e));
			return -1;
		}
		nent *= 2;
	}
	if (vm->host_cpuid) {
		/* the guest sees the host's CPUID: start KVM's table from it */
		unsigned cap = cpuid->nent + vm->host_cpuid->nent;
		cpuid = g_realloc(cpuid, sizeof(*cpuid) + cap * sizeof(struct kvm_cpuid_entry2));
		kl_cpuid_host_view(cpuid, cap, vm->host_cpuid);
		if (c->index == 0)
			warn_cpu_model(model);
	}
	if (kl_cpu_model_apply(cpuid, model, err) < 0) {
		g_free(cpuid);
		return -1;
	}
	kl_cpuid_fix_topology(cpuid, c->index, vm->ncpus);
	if (ioctl(c->fd, KVM_SET_CPUID2, cpuid) < 0) {
		*err = g_strdup_printf("KVM_SET_CPUID2: %s", g_strerror(errno));
		g_free(cpuid);
		return -1;
	}
	/* kept for migration's CPU check (vcpu_state.c) */
	c->cpuid = cpuid;
	return 0;
}

struct kl_vcpu *kl_vcpu_create(struct kl_vm *vm, unsigned index, const char *model, char **err)
{
	struct kl_vcpu *c = g_new0(struct kl_vcpu, 1);
	c->vm = vm;
	c->index = index;
	c->plugged = index < vm->boot_cpus;
	c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (c->fd < 0) {
		*err = g_strdup_printf("cannot create vCPU %u: %s", index, g_strerror(errno));
		g_free(c);
		return NULL;
	}
	c->run = mmap(NULL, vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (c->run == MAP_FAILED) {
		*err = g_strdup_printf("cannot map vCPU %u run area: %s", index, g_strerror(errno));
		close(c->fd);
		g_free(c);
		return NULL;
	}
	if (set_cpuid(c, model, err) < 0)
		goto fail;
	if (vm->assist) {
		c->assist = kl_assist_vcpu_create(vm->assist, index, c->fd, c->run, err);
		if (!c->assist)
			goto fail;
	}
	/* Snapshot the architectural reset state for system_reset. */
	if (ioctl(c->fd, KVM_GET_REGS, &c->rst_regs) < 0 ||
	    ioctl(c->fd, KVM_GET_SREGS, &c->rst_sregs) < 0 ||
	    ioctl(c->fd, KVM_GET_FPU, &c->rst_fpu) < 0 ||
	    ioctl(c->fd, KVM_GET_LAPIC, &c->rst_lapic) < 0 ||
	    ioctl(c->fd, KVM_GET_MP_STATE, &c->rst_mp) < 0) {
		*err = g_strdup_printf("cannot read vCPU %u initial state: %s", index, g_strerror(errno));
		goto fail;
	}
	return c;
fail:
	kl_assist_vcpu_destroy(c->assist);
	munmap(c->run, vm->vcpu_mmap_size);
	close(c->fd);
	g_free(c);
	return NULL;
}

void kl_vcpu_get_reset_state(const struct kl_vcpu *c, struct kvm_regs *regs, struct kvm_sregs *sregs)
{
	*regs = c->rst_regs;
	*sregs = c->rst_sregs;
}

void kl_vcpu_set_boot_state(struct kl_vcpu *c, const struct kvm_regs *regs,
			    const struct kvm_sregs *sregs)
{
	c->boot_regs = *regs;
	c->boot_sregs = *sregs;
	c->has_boot = true;
}

int kl_vcpu_index(const struct kl_vcpu *c)
{
	return (int)c->index;
}

int kl_vcpu_thread_id(const struct kl_vcpu *c)
{
	return c->tid;
}

bool kl_vcpu_plugged(const struct kl_vcpu *c)
{
	return c && c->plugged;
}

void kl_vcpu_plug(struct kl_vcpu *c)
{
	c->plugged = true;
	c->reset_gen = 0; /* reload the reset state first: an AP waits for SIPI */
	g_cond_broadcast(&c->vm->state_cond);
}

void kl_vcpu_unplug(struct kl_vcpu *c)
{
	c->plugged = false;
	while (c->started && !c->exited && !c->parked) {
		kl_vcpu_kick(c);
		kl_cond_wait(&c->vm->state_cond);
	}
}

static const char *seg_fmt(const struct kvm_segment *s, char *buf, size_t n)
{
	snprintf(buf, n, "sel=%04x base=%016llx lim=%08x type=%x p=%u dpl=%u db=%u l=%u g=%u",
		 s->selector, (unsigned long long)s->base, s->limit, s->type, s->present,
		 s->dpl, s->db, s->l, s->g);
	return buf;
}

void kl_vcpu_dump(struct kl_vcpu *c)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	char b[160];
	if (ioctl(c->fd, KVM_GET_REGS, &r) < 0 || ioctl(c->fd, KVM_GET_SREGS, &s) < 0) {
		fprintf(stderr, "kvmlite: vCPU %u: cannot read registers: %s\n", c->index,
			g_strerror(errno));
		return;
	}
	fprintf(stderr,
		"kvmlite: vCPU %u registers:\n"
		" RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n"
		" RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n"
		" R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n"
		" R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n"
		" RIP=%016llx RFLAGS=%08llx\n"
		" CR0=%08llx CR2=%016llx CR3=%016llx CR4=%08llx EFER=%llx\n",
		c->index, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9,
		r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags, s.cr0, s.cr2, s.cr3,
		s.cr4, s.efer);
	fprintf(stderr, " CS: %s\n", seg_fmt(&s.cs, b, sizeof(b)));
	fprintf(stderr, " SS: %s\n", seg_fmt(&s.ss, b, sizeof(b)));
	fprintf(stderr, " GDT=%016llx/%x IDT=%016llx/%x\n", s.gdt.base, s.gdt.limit,
		s.idt.base, s.idt.limit);
}

/* Load reset (and, for the BSP, boot) state.  Runs on the vCPU thread. */
static int apply_reset(struct kl_vcpu *c)
{
	struct kvm_mp_state mp = c->rst_mp;
	if (c->assist)
		kl_assist_vcpu_reset(c->assist);
	const struct kvm_regs *regs = c->has_boot ? &c->boot_regs : &c->rst_regs;
	const struct kvm_sregs *sregs = c->has_boot ? &c->boot_sregs : &c->rst_sregs;
	if (ioctl(c->fd, KVM_SET_SREGS, sregs) < 0 || ioctl(c->fd, KVM_SET_REGS, regs) < 0 ||
	    ioctl(c->fd, KVM_SET_FPU, &c->rst_fpu) < 0 ||
	    ioctl(c->fd, KVM_SET_LAPIC, &c->rst_lapic) < 0 ||
	    ioctl(c->fd, KVM_SET_MP_STATE, &mp) < 0) {
		fprintf(stderr, "kvmlite: vCPU %u: cannot load reset state: %s\n", c->index,
			g_strerror(errno));
		return -1;
	}
	struct kvm_vcpu_events ev;
	memset(&ev, 0, sizeof(ev));
	if (ioctl(c->fd, KVM_GET_VCPU_EVENTS, &ev) == 0) {
		memset(&ev.exception, 0, sizeof(ev.exception));
		memset(&ev.interrupt, 0, sizeof(ev.interrupt));
		ev.nmi.injected = ev.nmi.pending = 0;
		ev.flags = 0;
		ioctl(c->fd, KVM_SET_VCPU_EVENTS, &ev);
	}
	return 0;
}

static void handle_io(struct kl_vcpu *c)
{
	struct kvm_run *run = c->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	unsigned size = run->io.size;
	if (size != 1 && size != 2 && size != 4)
		return;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t v = 0;
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&v, data, size);
			kl_bus_write(&c->vm->pio, run->io.port, size, v);
		} else {
			kl_bus_read(&c->vm->pio, run->io.port, size, &v);
			memcpy(data, &v, size);
		}
	}
}

static void handle_mmio(struct kl_vcpu *c)
{
	struct kvm_run *run = c->run;
	unsigned len = run->mmio.len;
	uint64_t v = 0;
	if (len != 1 && len != 2 && len != 4 && len != 8)
		return;
	if (run->mmio.is_write) {
		memcpy(&v, run->mmio.data, len);
		kl_bus_write(&c->vm->mmio, run->mmio.phys_addr, len, v);
	} else {
		kl_bus_read(&c->vm->mmio, run->mmio.phys_addr, len, &v);
		memcpy(run->mmio.data, &v, len);
	}
}

/* Read len instruction bytes at the guest's CS:RIP (its registers in *r). */
static int read_insn(struct kl_vcpu *c, struct kvm_regs *r, uint8_t *buf, size_t len)
{
	struct kvm_sregs s;
	if (ioctl(c->fd, KVM_GET_REGS, r) < 0 || ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
		return -1;
	struct kvm_translation tr = { .linear_address = s.cs.base + r->rip };
	if (ioctl(c->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
		return -1;
	return kl_mem_read(&c->vm->mem, tr.physical_address, buf, len);
}

/* The emulator on PVM hosts cannot execute int3 or fwait.  When an
 * emulation failure is on an int3 byte, deliver #BP ourselves (RIP past the
 * int3, as a trap); on fwait, step over it.  Returns true when handled. */
static bool step_emulator_gap(struct kl_vcpu *c)
{
	struct kvm_regs r;
	uint8_t b;
	if (read_insn(c, &r, &b, 1) < 0 || (b != 0xcc && b != 0x9b))
		return false;
	r.rip += 1;
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return false;
	/* fwait waits for pending x87 exceptions; guests here cannot have any
	 * (no x87 in the emulator), so stepping over it is all it does. */
	if (b == 0x9b)
		return true;
	struct kvm_vcpu_events ev;
	if (ioctl(c->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return false;
	ev.exception.injected = 1;
	ev.exception.nr = 3;
	ev.exception.has_error_code = 0;
	ev.flags = 0;
	return ioctl(c->fd, KVM_SET_VCPU_EVENTS, &ev) == 0;
}

static void report_internal_error(struct kl_vcpu *c)
{
	struct kvm_run *run = c->run;
	fprintf(stderr, "kvmlite: vCPU %u: KVM internal error, suberror %u", c->index,
		run->internal.suberror);
	for (unsigned i = 0; i < run->internal.ndata && i < 16; i++)
		fprintf(stderr, " data[%u]=%llx", i, (unsigned long long)run->internal.data[i]);
	fprintf(stderr, "\n");
	struct kvm_regs r;
	uint8_t code[16];
	if (read_insn(c, &r, code, sizeof(code)) == 0) {
		fprintf(stderr, "kvmlite: instruction bytes at RIP:");
		for (unsigned i = 0; i < sizeof(code); i++)
			fprintf(stderr, " %02x", code[i]);
		fprintf(stderr, "\n");
	}
	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && kl_host_is_emulated())
		fprintf(stderr, "kvmlite: this host has no VMX/SVM (PVM): the guest's ring 0 "
			"runs in KVM's instruction emulator, which cannot execute this one, "
			"and %s; see docs/cpu.md\n",
			c->assist ? "kvmlite's emulation assist does not either"
				  : "the emulation assist is off (-accel kvm,emulation-assist=off)");
}

static const char *exit_name(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_UNKNOWN: return "UNKNOWN";
	case KVM_EXIT_EXCEPTION: return "EXCEPTION";
	case KVM_EXIT_HYPERCALL: return "HYPERCALL";
	case KVM_EXIT_DEBUG: return "DEBUG";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTR: return "INTR";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	case KVM_EXIT_SYSTEM_EVENT: return "SYSTEM_EVENT";
	default: return "?";
	}
}

/* Handle one exit with the BQL held.  Returns false when the vCPU must stop. */
static bool handle_exit(struct kl_vcpu *c)
{
	struct kvm_run *run = c->run;
	struct kl_vm *vm = c->vm;
	if (c->assist && kl_assist_handle_exit(c->assist))
		return true;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(c);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(c);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; treat as a pause point. */
		return true;
	case KVM_EXIT_SHUTDOWN:
		/* Triple fault: reset, as a PC does. */
		if (vm->log_cpu_reset)	/* -d cpu_reset */
			kl_vcpu_dump(c);
		kl_vm_request_reset(vm, true, "guest-reset");
		c->stop_after_exit = true;
		return true;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
			kl_vm_request_reset(vm, true, "guest-reset");
			c->stop_after_exit = true;
		} else {
			kl_vm_request_shutdown(vm, 0, true, "guest-shutdown");
		}
		return true;
	case KVM_EXIT_INTERNAL_ERROR:
		if (!c->assist && run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
		    step_emulator_gap(c))
			return true;
		report_internal_error(c);
		kl_vcpu_dump(c);
		kl_vm_fatal(vm, 2);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		fprintf(stderr, "kvmlite: vCPU %u: KVM_EXIT_FAIL_ENTRY, hardware reason 0x%llx\n",
			c->index, (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		kl_vcpu_dump(c);
		kl_vm_fatal(vm, 2);
		return false;
	default:
		fprintf(stderr, "kvmlite: vCPU %u: unexpected KVM exit %u (%s)\n", c->index,
			run->exit_reason, exit_name(run->exit_reason));
		kl_vcpu_dump(c);
		kl_vm_fatal(vm, 2);
		return false;
	}
}

static bool may_run(struct kl_vcpu *c)
{
	struct kl_vm *vm = c->vm;
	return vm->state == KL_RS_RUNNING && !vm->pause_req && !vm->quit_requested &&
	       c->reset_gen == vm->reset_gen && !c->stop_after_exit && c->plugged;
}

/* KVM_RUN failed with errno e (not EINTR/EAGAIN): the VM stops. */
static void kvm_run_failed(struct kl_vcpu *c, int e)
{
	fprintf(stderr, "kvmlite: vCPU %u: KVM_RUN failed: %s\n", c->index, g_strerror(e));
	kl_vcpu_dump(c);
	kl_vm_fatal(c->vm, 2);
}

/* KVM finishes an exit to user space -- the data of a PIO or MMIO read,
 * the rest of an instruction its emulator was running (all of a guest's
 * ring 0 on a PVM host) -- only in the next KVM_RUN, and until then the
 * registers are not the guest's (KVM's api.rst, "immediate_exit").  Before
 * the vCPU parks (pause, snapshot, migration, reset) it re-enters with
 * immediate_exit set: KVM completes the exit and returns -EINTR without
 * running the guest.  Without this, the state saved was mid-instruction
 * and, worse, the stale completion ran at the next KVM_RUN on top of the
 * registers loaded meanwhile (snapshot-load in place: the probe then took
 * a #GP at a 'ret' with the old stack).  Called with the BQL; false when
 * the vCPU must stop. */
static bool complete_exit(struct kl_vcpu *c)
{
	while (c->exit_pending) {
		c->run->immediate_exit = 1;
		kl_unlock();
		int r = ioctl(c->fd, KVM_RUN, 0);
		int e = errno;
		kl_lock();
		c->run->immediate_exit = 0;
		if (r < 0) {
			c->exit_pending = false;
			if (e == EINTR || e == EAGAIN)
				break;
			kvm_run_failed(c, e);
			return false;
		}
		/* the completion made a new exit (the next round of a string
		 * I/O instruction): handle it, and complete that one too */
		if (!handle_exit(c))
			return false;
	}
	return true;
}

static void *vcpu_thread(void *p)
{
	struct kl_vcpu *c = p;
	struct kl_vm *vm = c->vm;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%u", c->index);
	pthread_setname_np(pthread_self(), name);
	c->tid = (int)syscall(SYS_gettid);
	tls_run = c->run;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIG_KICK);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	/* the vCPU allow-list, before the first KVM_RUN (docs/sandbox.md) */
	kl_sandbox_thread_start(KL_THREAD_VCPU);

	kl_lock();
	for (;;) {
		while (!may_run(c)) {
			if (vm->quit_requested)
				goto out;
			if (c->exit_pending) {
				if (!complete_exit(c))
					goto out;
				continue;   /* the BQL was dropped: look again */
			}
			c->stop_after_exit = false;
			if (c->reset_gen != vm->reset_gen && !vm->pause_req) {
				c->reset_gen = vm->reset_gen;
				if (apply_reset(c) < 0) {
					kl_vm_fatal(vm, 2);
					goto out;
				}
				continue;
			}
			c->parked = true;
			vm->parked++;
			g_cond_broadcast(&vm->state_cond);
			kl_cond_wait(&vm->state_cond);
			vm->parked--;
			c->parked = false;
		}
		c->run->immediate_exit = 0;
		if (c->assist)
			kl_assist_pre_run(c->assist);
		kl_unlock();
		int r = ioctl(c->fd, KVM_RUN, 0);
		int e = errno;
		kl_lock();
		if (r < 0) {
			c->exit_pending = false; /* KVM completed the last exit first */
			if (e == EINTR || e == EAGAIN)
				continue;
			kvm_run_failed(c, e);
			break;
		}
		c->exit_pending = true;
		if (!handle_exit(c))
			break;
	}
out:
	c->exited = true;
	g_cond_broadcast(&vm->state_cond);
	kl_unlock();
	kl_sandbox_thread_end();
	return NULL;
}

int kl_vcpu_start(struct kl_vcpu *c, char **err)
{
	install_kick_handler();
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIG_KICK);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	int r = pthread_create(&c->thread, NULL, vcpu_thread, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		*err = g_strdup_printf("cannot start vCPU %u thread: %s", c->index, g_strerror(r));
		return -1;
	}
	c->started = true;
	return 0;
}

void kl_vcpu_kick(struct kl_vcpu *c)
{
	if (c->started && !c->exited)
		pthread_kill(c->thread, SIG_KICK);
}

void kl_vcpu_join(struct kl_vcpu *c)
{
	if (c->started) {
		pthread_join(c->thread, NULL);
		c->started = false;
	}
}

void kl_vcpu_destroy(struct kl_vcpu *c)
{
	if (!c)
		return;
	kl_assist_vcpu_destroy(c->assist);
	g_free(c->cpuid);
	munmap(c->run, c->vm->vcpu_mmap_size);
	close(c->fd);
	g_free(c);
}
