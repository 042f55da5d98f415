/* The KVM side of the SYSCALL fix-up (syscall.c has the logic).
 *
 * The host never exits on the broken SYSCALL itself, so kvmlite watches
 * the guest's #PF handler: an MSR filter makes the guest's writes of STAR,
 * LSTAR, CSTAR and SFMASK exit to kvmlite (which performs them and notes
 * the values); once LSTAR is known, DR0 (KVM_SET_GUEST_DEBUG, a hardware
 * instruction breakpoint, which KVM's emulator honours in ring 0) goes on
 * the handler of IDT vector 14.  On that breakpoint:
 *   - the #PF is the broken SYSCALL: complete it, stay armed;
 *   - else: an ordinary #PF.  RF does not stop the breakpoint from firing
 *     again here, so single-step the handler's first instruction with the
 *     breakpoint off, then re-arm on the step's debug exit.
 * The guest moving its IDT (LIDT, or rewriting gate 14) is noticed before
 * the next KVM_RUN (the synced IDTR and a copy of the gate), and the
 * breakpoint follows.  Each vCPU has its own LSTAR, IDTR and DR0.
 *
 * The same mechanism carries the CR4.PCIDE fix-up (crfix.c) where the guest
 * sees PCID in the host's CPUID: DR1 on the #GP handler, and DR2/DR3 on
 * the guest's mov-to-CR4 and mov-to-CR3 instructions once a #GP has shown
 * where they are (an AP writes CR4 before it has an IDT: only DR2 sees it).
 *
 * The guest's own debug registers: KVM gives DR0-DR3/DR7 to the VMM while
 * guest debugging is on, so the guest's own hardware breakpoints do not
 * reach the hardware; debug exits that are not the assist's are handed
 * back to the guest as #DB with their DR6 (docs/cpu.md). */
#include "assist_int.h"
#include "assist_priv.h"
#include "kvmlite/assist.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvmlite/clock.h"
#include "kvmlite/cpu.h"
#include "kvmlite/mem.h"
#include "kvmlite/vm.h"

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_TSC_AUX 0xc0000103
#define DR6_BS (1ull << 14)

int kl_assist_bp_vm_init(struct kl_assist *a, char **err)
{
	int vm = a->vm->vm_fd;
	if (ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_X86_USER_SPACE_MSR) <= 0 ||
	    ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_X86_MSR_FILTER) <= 0) {
		*err = g_strdup("emulation assist: KVM lacks KVM_CAP_X86_USER_SPACE_MSR / "
				"KVM_CAP_X86_MSR_FILTER (needed to follow the guest's LSTAR)");
		return -1;
	}
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR,
				      .args = { KVM_MSR_EXIT_REASON_FILTER } };
	if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0) {
		*err = g_strdup_printf("emulation assist: KVM_CAP_X86_USER_SPACE_MSR: %s",
				       g_strerror(errno));
		return -1;
	}
	static uint8_t deny[1];	/* all 0: every access of the range exits */
	struct kvm_msr_filter f;
	memset(&f, 0, sizeof(f));
	f.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
	f.ranges[0].flags = KVM_MSR_FILTER_WRITE;
	f.ranges[0].base = MSR_STAR;
	f.ranges[0].nmsrs = 4;	/* STAR LSTAR CSTAR SFMASK */
	f.ranges[0].bitmap = deny;
	/* TSC_AUX: PVM's KVM refuses it (the guest's WRMSR gets #GP: an AP
	 * writes it before it has a usable IDT and triple-faults), so kvmlite
	 * keeps it per vCPU, for RDMSR and the RDTSCP/RDPID assists. */
	f.ranges[1].flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
	f.ranges[1].base = MSR_TSC_AUX;
	f.ranges[1].nmsrs = 1;
	f.ranges[1].bitmap = deny;
	if (ioctl(vm, KVM_X86_SET_MSR_FILTER, &f) < 0) {
		*err = g_strdup_printf("emulation assist: KVM_X86_SET_MSR_FILTER: %s",
				       g_strerror(errno));
		return -1;
	}
	return 0;
}


enum { BP_PF, BP_GP, BP_CR4, BP_CR3 };

/* Load v->bp[] (or nothing, to single-step) into the vCPU's debug state. */
static int apply(struct kl_assist_vcpu *v, bool step)
{
	struct kvm_guest_debug d;
	memset(&d, 0, sizeof(d));
	bool any = false;
	if (!step)
		for (int i = 0; i < 4; i++)
			if (v->bp[i]) {
				d.arch.debugreg[i] = v->bp[i];
				d.arch.debugreg[7] |= 1ull << (2 * i);	/* Ln, execute, length 1 */
				any = true;
			}
	if (any)
		d.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
	if (step)
		d.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP;
	if (ioctl(v->fd, KVM_SET_GUEST_DEBUG, &d) < 0) {
		fprintf(stderr, "kvmlite: vCPU %u: emulation assist: KVM_SET_GUEST_DEBUG: %s\n",
			v->index, g_strerror(errno));
		return -1;
	}
	v->stepping = step;
	return 0;
}

static bool any_bp(const struct kl_assist_vcpu *v)
{
	return v->bp[0] || v->bp[1] || v->bp[2] || v->bp[3];
}

/* What DR0-3 should hold now; re-load them when that changed. */
static void rearm(struct kl_assist_vcpu *v, uint64_t t0)
{
	struct kl_assist *a = v->a;
	uint64_t want[4] = {
		v->have_lstar ? v->pf_handler : 0,
		a->pcid_fix ? v->gp_handler : 0,
		a->pcid_fix ? a->cr_site[0] : 0,
		a->pcid_fix ? a->cr_site[1] : 0,
	};
	v->armed_gen = a->site_gen;
	if (!memcmp(want, v->bp, sizeof(want)))
		return;
	memcpy(v->bp, want, sizeof(want));
	if (!v->stepping)
		apply(v, false);
	kl_assist_count(v, KL_ASX_K_REARM, t0);
}

void kl_assist_bp_reset(struct kl_assist_vcpu *v)
{
	v->have_lstar = false;
	v->pcide = false;
	v->tsc_aux = 0;
	v->star = v->lstar = v->sfmask = 0;
	v->idt_entry[0] = v->idt_entry[1] = NULL;
	v->idt_base = 0;
	v->idt_limit = 0;
	v->pf_handler = v->gp_handler = 0;
	bool was = any_bp(v) || v->stepping;
	memset(v->bp, 0, sizeof(v->bp));
	if (was)
		apply(v, false);
}

static const uint8_t *gate_ptr(struct kl_assist_vcpu *v, unsigned vec)
{
	struct kl_asx_cpu *c = &v->cpu;
	uint64_t gpa;
	if (v->idt_limit < 16 * vec + 15 ||
	    kl_asx_translate(c, v->idt_base + 16 * vec, KL_ACC_IMPLICIT_SV, &gpa) != 0 ||
	    (gpa & 0xfff) > 0x1000 - 16)
		return NULL;
	return kl_gpa_to_hva(&v->a->vm->mem, gpa, 16);
}

/* Look up the #PF and #GP handlers in the guest's current IDT. */
static void lookup_handlers(struct kl_assist_vcpu *v)
{
	uint64_t t0 = kl_clock_ns();
	kl_assist_load_cpu(v);
	struct kl_asx_cpu *c = &v->cpu;
	v->idt_base = c->sregs.idt.base;
	v->idt_limit = c->sregs.idt.limit;
	struct kl_asx_fault save = c->fault;
	static const unsigned vec[2] = { KL_X86_PF, KL_X86_GP };
	for (int i = 0; i < 2; i++) {
		v->idt_entry[i] = gate_ptr(v, vec[i]);
		if (v->idt_entry[i])
			memcpy(v->idt_copy[i], v->idt_entry[i], 16);
	}
	/* only a 64-bit IDT is understood (the handlers run in long mode) */
	bool lm = (c->sregs.efer & (1 << 10)) != 0;
	v->pf_handler = lm ? kl_asx_idt_handler(c, KL_X86_PF) : 0;
	v->gp_handler = lm ? kl_asx_idt_handler(c, KL_X86_GP) : 0;
	c->fault = save;
	rearm(v, t0);
}

void kl_assist_pre_run(struct kl_assist_vcpu *v)
{
	if (!v->have_lstar && !v->a->pcid_fix)
		return;
	const struct kvm_sregs *s = &v->run->s.regs.sregs;
	if (s->idt.base == v->idt_base && s->idt.limit == v->idt_limit &&
	    (!v->idt_entry[0] || !memcmp(v->idt_entry[0], v->idt_copy[0], 16)) &&
	    (!v->idt_entry[1] || !memcmp(v->idt_entry[1], v->idt_copy[1], 16))) {
		if (v->armed_gen != v->a->site_gen)
			rearm(v, kl_clock_ns());
		return;
	}
	lookup_handlers(v);
}

bool kl_assist_bp_msr_exit(struct kl_assist_vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t idx = run->msr.index;
	if (idx == MSR_TSC_AUX) {
		if (run->exit_reason == KVM_EXIT_X86_RDMSR)
			run->msr.data = v->tsc_aux;
		else if (run->msr.data >> 32)
			run->msr.error = 1;	/* bits 63:32 are reserved: #GP */
		else
			v->tsc_aux = run->msr.data;
		return true;
	}
	if (run->exit_reason == KVM_EXIT_X86_RDMSR) {
		/* reads are not filtered; answer one anyway */
		uint64_t val = 0;
		run->msr.error = kl_assist_get_msr(v, idx, &val) < 0;
		run->msr.data = val;
		return true;
	}
	uint64_t val = run->msr.data;
	if (kl_assist_set_msr(v, idx, val) < 0) {
		run->msr.error = 1;	/* KVM refused it: the guest gets #GP */
		return true;
	}
	run->msr.error = 0;
	switch (idx) {
	case MSR_STAR: v->star = val; break;
	case MSR_SFMASK: v->sfmask = val; break;
	case MSR_LSTAR:
		v->lstar = val;
		v->have_lstar = val != 0;
		break;
	default: break;
	}
	lookup_handlers(v);
	return true;
}

/* Perform w (a mov to CR3/CR4 the guest's KVM would refuse as it is). */
static bool do_cr_write(struct kl_assist_vcpu *v, const struct kl_asx_cr_write *w)
{
	struct kvm_sregs s = v->cpu.sregs;
	if (w->cr == 4)
		s.cr4 = w->value;
	else
		s.cr3 = w->value;
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
		return false;
	if (w->cr == 4)
		v->pcide = w->pcide;
	v->run->s.regs.sregs = s;
	return true;
}

static void learn_site(struct kl_assist_vcpu *v, const struct kl_asx_cr_write *w)
{
	struct kl_assist *a = v->a;
	uint64_t *site = &a->cr_site[w->cr == 4 ? 0 : 1];
	if (*site == w->site)
		return;
	*site = w->site;
	a->site_gen++;
	/* The other vCPUs re-arm before their next KVM_RUN: make them leave
	 * the current one -- an AP waits for its SIPI inside KVM_RUN and then
	 * writes CR4 before it has an IDT. */
	for (unsigned i = 0; i < a->vm->ncpus; i++)
		if (a->vm->vcpus && a->vm->vcpus[i])
			kl_vcpu_kick(a->vm->vcpus[i]);
}

/* An instruction breakpoint on a known mov to CR3/CR4. */
static bool on_cr_site(struct kl_assist_vcpu *v, uint64_t t0)
{
	kl_assist_load_cpu(v);
	struct kl_asx_cr_write w;
	if (kl_asx_cr_site(&v->cpu, &w) < 0)
		return false;
	/* bit 63 without the guest's PCIDE, or a value KVM refuses: the #GP
	 * the mov raises (RIP stays on it) */
	if ((w.cr == 3 && w.noflush && !v->pcide) || !do_cr_write(v, &w)) {
		struct kl_asx_fault f = { .vector = KL_X86_GP, .has_error = true };
		kl_assist_inject(v, &f);	/* an invalid value: the #GP the mov raises */
	} else {
		v->run->s.regs.regs = v->cpu.regs;
		v->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
	}
	kl_assist_count(v, KL_ASX_K_CR_FIX, t0);
	return true;
}

bool kl_assist_bp_debug_exit(struct kl_assist_vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t dr6 = run->debug.arch.dr6, pc = run->debug.arch.pc;
	uint64_t t0 = kl_clock_ns();
	if (v->stepping && (dr6 & DR6_BS)) {
		/* stepped over a handler's first instruction: re-arm */
		apply(v, false);
		return true;
	}
	if ((dr6 & 1) && v->bp[BP_PF] && pc == v->bp[BP_PF]) {
		kl_assist_load_cpu(v);
		struct kl_asx_syscall_msrs m = { v->star, v->lstar, v->sfmask };
		if (kl_asx_syscall_fixup(&v->cpu, &m)) {
			run->s.regs.regs = v->cpu.regs;
			run->s.regs.sregs = v->cpu.sregs;
			run->kvm_dirty_regs |= KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
			kl_assist_count(v, KL_ASX_K_SYSCALL, t0);
			return true;
		}
		apply(v, true);
		kl_assist_count(v, KL_ASX_K_PF_PASS, t0);
		return true;
	}
	if ((dr6 & 2) && v->bp[BP_GP] && pc == v->bp[BP_GP]) {
		kl_assist_load_cpu(v);
		struct kl_asx_cr_write w;
		if (kl_asx_cr_gp_fixup(&v->cpu, v->pcide, &w) && do_cr_write(v, &w)) {
			run->s.regs.regs = v->cpu.regs;
			run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
			learn_site(v, &w);
			kl_assist_count(v, KL_ASX_K_CR_FIX, t0);
			return true;
		}
		apply(v, true);
		kl_assist_count(v, KL_ASX_K_GP_PASS, t0);
		return true;
	}
	if ((dr6 & 0xc) && (pc == v->bp[BP_CR4] || pc == v->bp[BP_CR3]) && pc)
		if (on_cr_site(v, t0))
			return true;
	if (!any_bp(v) && !v->stepping)
		return false;	/* not guest debugging: not ours */
	/* The guest's own #DB: hand it back with its DR6. */
	struct kvm_debugregs dr;
	if (ioctl(v->fd, KVM_GET_DEBUGREGS, &dr) == 0) {
		dr.dr6 = dr6;
		ioctl(v->fd, KVM_SET_DEBUGREGS, &dr);
	}
	struct kl_asx_fault f = { .vector = run->debug.arch.exception };
	kl_assist_inject(v, &f);
	return true;
}
