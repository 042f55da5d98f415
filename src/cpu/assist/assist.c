/* The emulation assist's vCPU glue: KVM exits in, struct kl_asx_cpu out.
 *
 * With KVM_CAP_SYNC_REGS, KVM leaves the registers, segments and pending
 * events in kvm_run on every exit; an assisted instruction is read from
 * there, executed by insn.c/xsave.c and written back by marking the
 * synced state dirty -- no GET/SET ioctls on the common path (measured
 * here: 8 us per handled exit this way, 18 us with GET/SET_REGS).
 * Exceptions the instruction raises are delivered through the synced
 * events (and CR2 through the synced sregs).  breakpoint.c owns the SYSCALL
 * fix-up (debug and MSR exits). */
#include "kvmlite/assist.h"
#include "assist_int.h"
#include "assist_priv.h"

#include <cpuid.h>
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvmlite/clock.h"
#include "kvmlite/cpu.h"
#include "kvmlite/vm.h"

#define MSR_IA32_XSS 0xda0

bool kl_assist_enabled(enum kl_assist_mode mode)
{
	if (mode == KL_ASSIST_ON)
		return true;
	if (mode == KL_ASSIST_OFF)
		return false;
	return kl_host_is_emulated();
}

/* ---- KVM-backed ops for the instruction assists ------------------------ */
static struct kl_assist_vcpu *of(struct kl_asx_cpu *c)
{
	return c->opaque;
}

static int kvm_get_xsave(struct kl_asx_cpu *c, void *buf)
{
	struct kl_assist_vcpu *v = of(c);
	unsigned long req = v->a->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	return ioctl(v->fd, req, buf) < 0 ? -1 : 0;
}

static int kvm_set_xsave(struct kl_asx_cpu *c, const void *buf)
{
	return ioctl(of(c)->fd, KVM_SET_XSAVE, buf) < 0 ? -1 : 0;
}

static int kvm_get_xcr0(struct kl_asx_cpu *c, uint64_t *xcr0)
{
	struct kvm_xcrs x;
	memset(&x, 0, sizeof(x));
	if (ioctl(of(c)->fd, KVM_GET_XCRS, &x) < 0)
		return -1;
	for (uint32_t i = 0; i < x.nr_xcrs && i < KVM_MAX_XCRS; i++)
		if (x.xcrs[i].xcr == 0) {
			*xcr0 = x.xcrs[i].value;
			return 0;
		}
	*xcr0 = 1;	/* x87 only: the architectural reset value */
	return 0;
}

/* One MSR through KVM_GET_MSRS / KVM_SET_MSRS (host-initiated: the MSR
 * filter does not apply). */
static int msr_ioctl(struct kl_assist_vcpu *v, unsigned long req, uint32_t index, uint64_t *val)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m;
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = 1;
	m.e.index = index;
	m.e.data = *val;
	if (ioctl(v->fd, req, &m) != 1)
		return -1;
	*val = m.e.data;
	return 0;
}

int kl_assist_get_msr(struct kl_assist_vcpu *v, uint32_t index, uint64_t *val)
{
	*val = 0;
	return msr_ioctl(v, KVM_GET_MSRS, index, val);
}

int kl_assist_set_msr(struct kl_assist_vcpu *v, uint32_t index, uint64_t val)
{
	return msr_ioctl(v, KVM_SET_MSRS, index, &val);
}

static int kvm_get_msr(struct kl_asx_cpu *c, uint32_t index, uint64_t *val)
{
	if (index == 0xc0000103) {	/* TSC_AUX, kept by breakpoint.c */
		*val = of(c)->tsc_aux;
		return 0;
	}
	if (index == MSR_IA32_XSS && !of(c)->a->xstate.xss_mask) {
		*val = 0;	/* KVM without XSS support: the guest cannot set it */
		return 0;
	}
	return kl_assist_get_msr(of(c), index, val);
}

static int kvm_set_msr(struct kl_asx_cpu *c, uint32_t index, uint64_t val)
{
	return kl_assist_set_msr(of(c), index, val);
}

/* A full TLB flush: a change of CR4.PGE makes KVM drop the vCPU's MMU
 * roots (kvm_mmu_reset_context); the synced sregs, marked dirty, put the
 * old CR4 back at the next entry. */
static int kvm_flush_tlb(struct kl_asx_cpu *c)
{
	struct kl_assist_vcpu *v = of(c);
	struct kvm_sregs s = v->run->s.regs.sregs;
	s.cr4 ^= 1u << 7;	/* PGE */
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
		return -1;
	v->run->kvm_dirty_regs |= KVM_SYNC_X86_SREGS;
	return 0;
}

static const struct kl_asx_ops kvm_ops = {
	.flush_tlb = kvm_flush_tlb,
	.get_xsave = kvm_get_xsave,
	.set_xsave = kvm_set_xsave,
	.get_xcr0 = kvm_get_xcr0,
	.get_msr = kvm_get_msr,
	.set_msr = kvm_set_msr,
};

/* ---- counters ------------------------------------------------------------ */
void kl_assist_count(struct kl_assist_vcpu *v, enum kl_asx_kind k, uint64_t t0)
{
	if (k >= KL_ASX_K_COUNT)
		k = KL_ASX_K_OTHER;
	v->count[k]++;
	v->ns[k] += kl_clock_ns() - t0;
}

unsigned kl_assist_counters(const struct kl_assist *a, struct kl_assist_counter *out,
			    unsigned max)
{
	unsigned n = 0;
	for (unsigned k = 0; k < KL_ASX_K_COUNT && n < max; k++) {
		out[n].name = kl_asx_kind_name(k);
		out[n].count = a->gone_count[k];
		out[n].ns = a->gone_ns[k];
		for (guint i = 0; i < a->vcpus->len; i++) {
			const struct kl_assist_vcpu *v = g_ptr_array_index(a->vcpus, i);
			out[n].count += v->count[k];
			out[n].ns += v->ns[k];
		}
		n++;
	}
	return n;
}

char *kl_assist_summary(const struct kl_assist *a)
{
	struct kl_assist_counter c[KL_ASX_K_COUNT];
	unsigned n = kl_assist_counters(a, c, KL_ASX_K_COUNT);
	uint64_t count = 0, ns = 0;
	GString *s = g_string_new(NULL);
	for (unsigned i = 0; i < n; i++) {
		count += c[i].count;
		ns += c[i].ns;
		if (c[i].count)
			g_string_append_printf(s, " %s %llu (%.1f ms)", c[i].name,
					       (unsigned long long)c[i].count, c[i].ns / 1e6);
	}
	char *line = g_strdup_printf("emulation assist: %llu events, %.3f s in the VMM:%s",
				     (unsigned long long)count, ns / 1e9,
				     count ? s->str : " none");
	g_string_free(s, TRUE);
	return line;
}

/* ---- per VM -------------------------------------------------------------- */
struct kl_assist *kl_assist_create(struct kl_vm *vm, bool log, char **err)
{
	int sync = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
	unsigned need = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
	if (sync < 0 || ((unsigned)sync & need) != need) {
		*err = g_strdup("emulation assist: KVM lacks KVM_CAP_SYNC_REGS (regs, sregs, events)");
		return NULL;
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) <= 0) {
		*err = g_strdup("emulation assist: KVM lacks KVM_CAP_XSAVE");
		return NULL;
	}
	struct kl_assist *a = g_new0(struct kl_assist, 1);
	a->vm = vm;
	a->log = log;
	a->vcpus = g_ptr_array_new();
	kl_xstate_layout_host(&a->xstate);
	int x2 = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	a->xsave2 = x2 > 0;
	/* KVM_GET_XSAVE2 writes the vCPU's whole guest FPU state, which grows
	 * when the guest enables dynamic components (AMX) beyond the size
	 * KVM_CAP_XSAVE2 gave at start-up: size the buffers for everything
	 * the host's CPUID lists (CPUID(0xd,0).ECX). */
	unsigned xa, xb, xc, xd;
	__cpuid_count(0xd, 0, xa, xb, xc, xd);
	(void)xa; (void)xb; (void)xd;
	size_t len = x2 > (int)sizeof(struct kvm_xsave) ? (size_t)x2 : sizeof(struct kvm_xsave);
	if (xc > len)
		len = xc;
	a->xsave_len = (len + 4095) & ~(size_t)4095;
	/* supervisor components (IA32_XSS) live beside KVM's buffer */
	a->sup_len = kl_xsave_sup_len(&a->xstate);
	/* the guest reads the host's CPUID: PCID there means it sets CR4.PCIDE */
	unsigned r[4];
	__cpuid_count(1, 0, r[0], r[1], r[2], r[3]);
	a->pcid_fix = (r[2] >> 17) & 1;
	if (kl_assist_bp_vm_init(a, err) < 0) {
		kl_assist_destroy(a);
		return NULL;
	}
	return a;
}

void kl_assist_destroy(struct kl_assist *a)
{
	if (!a)
		return;
	if (a->log) {
		char *s = kl_assist_summary(a);
		fprintf(stderr, "kvmlite: %s\n", s);
		g_free(s);
	}
	g_ptr_array_free(a->vcpus, TRUE);
	g_free(a);
}

/* ---- per vCPU ------------------------------------------------------------ */
struct kl_assist_vcpu *kl_assist_vcpu_create(struct kl_assist *a, unsigned index, int fd,
					     struct kvm_run *run, char **err)
{
	(void)err;
	struct kl_assist_vcpu *v = g_new0(struct kl_assist_vcpu, 1);
	v->a = a;
	v->index = index;
	v->fd = fd;
	v->run = run;
	if (a->sup_len)
		v->sup_state = g_malloc0(a->sup_len);
	run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
	g_ptr_array_add(a->vcpus, v);
	return v;
}

void kl_assist_vcpu_destroy(struct kl_assist_vcpu *v)
{
	if (!v)
		return;
	for (unsigned k = 0; k < KL_ASX_K_COUNT; k++) {
		v->a->gone_count[k] += v->count[k];
		v->a->gone_ns[k] += v->ns[k];
	}
	g_ptr_array_remove(v->a->vcpus, v);
	g_free(v->sup_state);
	g_free(v);
}

void kl_assist_vcpu_reset(struct kl_assist_vcpu *v)
{
	/* The state KVM synced before the reset is stale: do not write it back. */
	v->run->kvm_dirty_regs = 0;
	kl_assist_bp_reset(v);
}

/* Fill v->cpu from the synced state of the last exit. */
void kl_assist_load_cpu(struct kl_assist_vcpu *v)
{
	struct kl_asx_cpu *c = &v->cpu;
	struct kl_assist *a = v->a;
	memset(c, 0, sizeof(*c));
	c->regs = v->run->s.regs.regs;
	c->sregs = v->run->s.regs.sregs;
	c->mem = &a->vm->mem;
	c->ops = &kvm_ops;
	c->opaque = v;
	c->xstate = &a->xstate;
	c->xsave_len = a->xsave_len;
	c->sup_state = v->sup_state;
	c->sup_len = a->sup_len;
}

/* Deliver c->fault to the guest at its next entry. */
void kl_assist_inject(struct kl_assist_vcpu *v, const struct kl_asx_fault *f)
{
	struct kvm_sync_regs *s = &v->run->s.regs;
	if (f->vector == KL_X86_PF) {
		s->sregs.cr2 = f->cr2;
		v->run->kvm_dirty_regs |= KVM_SYNC_X86_SREGS;
	}
	s->events.exception.injected = 1;
	s->events.exception.nr = f->vector;
	s->events.exception.has_error_code = f->has_error;
	s->events.exception.error_code = f->error;
	v->run->kvm_dirty_regs |= KVM_SYNC_X86_EVENTS;
}

/* Read the instruction at CS:RIP: up to 15 bytes, fewer when the next page
 * cannot be fetched (the decoder then fails on a long instruction). */
static size_t fetch_insn(struct kl_asx_cpu *c, uint8_t *buf)
{
	uint64_t la = c->sregs.cs.base + c->regs.rip;
	if (c->sregs.cs.l)
		la = c->regs.rip;
	size_t first = 0x1000 - (la & 0xfff);
	if (first > KL_INSN_MAX)
		first = KL_INSN_MAX;
	struct kl_asx_fault save = c->fault;
	if (kl_asx_read(c, la, buf, first, KL_ACC_FETCH) != 0) {
		c->fault = save;
		return 0;
	}
	size_t n = first;
	if (n < KL_INSN_MAX && kl_asx_read(c, la + n, buf + n, KL_INSN_MAX - n, KL_ACC_FETCH) == 0)
		n = KL_INSN_MAX;
	c->fault = save;
	return n;
}

static bool on_emulation_failure(struct kl_assist_vcpu *v)
{
	uint64_t t0 = kl_clock_ns();
	kl_assist_load_cpu(v);
	struct kl_asx_cpu *c = &v->cpu;
	uint8_t bytes[KL_INSN_MAX];
	size_t n = fetch_insn(c, bytes);
	enum kl_asx_result r = n ? kl_asx_execute(c, bytes, n) : KL_ASX_UNHANDLED;
	switch (r) {
	case KL_ASX_DONE:
		v->run->s.regs.regs = c->regs;
		v->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
		kl_assist_count(v, c->kind, t0);
		return true;
	case KL_ASX_FAULT:
		if (c->fault.vector == 0xff)	/* page tables outside RAM */
			break;
		if (c->fault.trap) {	/* INT3: RIP already past it */
			v->run->s.regs.regs = c->regs;
			v->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
		}
		kl_assist_inject(v, &c->fault);
		kl_assist_count(v, c->kind == KL_ASX_K_INT3 ? KL_ASX_K_INT3 : KL_ASX_K_FAULT, t0);
		return true;
	case KL_ASX_ERROR:
		fprintf(stderr, "kvmlite: vCPU %u: emulation assist: vCPU state access failed: %s\n",
			v->index, g_strerror(errno));
		break;
	case KL_ASX_UNHANDLED:
		break;
	}
	kl_assist_count(v, KL_ASX_K_UNHANDLED, t0);
	return false;
}

bool kl_assist_handle_exit(struct kl_assist_vcpu *v)
{
	struct kvm_run *run = v->run;
	switch (run->exit_reason) {
	case KVM_EXIT_INTERNAL_ERROR:
		if (run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION)
			return false;
		return on_emulation_failure(v);
	case KVM_EXIT_DEBUG:
		return kl_assist_bp_debug_exit(v);
	case KVM_EXIT_X86_WRMSR:
	case KVM_EXIT_X86_RDMSR:
		return kl_assist_bp_msr_exit(v);
	default:
		return false;
	}
}
