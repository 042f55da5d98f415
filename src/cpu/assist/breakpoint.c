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
#include "kvmlite/mem.h"
#include "kvmlite/vm.h"

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define DR6_B0 (1ull << 0)
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
	static uint8_t deny[1];	/* 4 bits, all 0: every write of the range exits */
	struct kvm_msr_filter f;
	memset(&f, 0, sizeof(f));
	f.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
	f.ranges[0].flags = KVM_MSR_FILTER_WRITE;
	f.ranges[0].base = MSR_STAR;
	f.ranges[0].nmsrs = 4;	/* STAR LSTAR CSTAR SFMASK */
	f.ranges[0].bitmap = deny;
	if (ioctl(vm, KVM_X86_SET_MSR_FILTER, &f) < 0) {
		*err = g_strdup_printf("emulation assist: KVM_X86_SET_MSR_FILTER: %s",
				       g_strerror(errno));
		return -1;
	}
	return 0;
}

static int set_debug(struct kl_assist_vcpu *v, bool bp, bool step)
{
	struct kvm_guest_debug d;
	memset(&d, 0, sizeof(d));
	if (bp || step)
		d.control = KVM_GUESTDBG_ENABLE;
	if (bp) {
		d.control |= KVM_GUESTDBG_USE_HW_BP;
		d.arch.debugreg[0] = v->pf_handler;
		d.arch.debugreg[7] = 1;	/* L0: instruction breakpoint, length 1 */
	}
	if (step)
		d.control |= KVM_GUESTDBG_SINGLESTEP;
	if (ioctl(v->fd, KVM_SET_GUEST_DEBUG, &d) < 0) {
		fprintf(stderr, "kvmlite: vCPU %u: emulation assist: KVM_SET_GUEST_DEBUG: %s\n",
			v->index, g_strerror(errno));
		return -1;
	}
	v->armed = bp;
	v->stepping = step;
	return 0;
}

void kl_assist_bp_reset(struct kl_assist_vcpu *v)
{
	v->have_lstar = false;
	v->star = v->lstar = v->sfmask = 0;
	v->idt_entry = NULL;
	v->pf_handler = 0;
	if (v->armed || v->stepping)
		set_debug(v, false, false);
}

/* Look up the #PF handler in the guest's current IDT and put DR0 on it. */
static void arm(struct kl_assist_vcpu *v)
{
	uint64_t t0 = kl_clock_ns();
	kl_assist_load_cpu(v);
	struct kl_asx_cpu *c = &v->cpu;
	v->idt_base = c->sregs.idt.base;
	v->idt_limit = c->sregs.idt.limit;
	v->idt_entry = NULL;
	uint64_t h = kl_asx_idt_handler(c, KL_X86_PF);
	uint64_t gpa;
	struct kl_asx_fault save = c->fault;
	if (v->idt_limit >= 16 * KL_X86_PF + 15 &&
	    kl_asx_translate(c, v->idt_base + 16 * KL_X86_PF, KL_ACC_IMPLICIT_SV, &gpa) == 0 &&
	    (gpa & 0xfff) <= 0x1000 - 16) {
		v->idt_entry = kl_gpa_to_hva(&v->a->vm->mem, gpa, 16);
		if (v->idt_entry)
			memcpy(v->idt_copy, v->idt_entry, 16);
	}
	c->fault = save;
	if (h == v->pf_handler && (v->armed || v->stepping))
		return;	/* same handler: nothing to do */
	v->pf_handler = h;
	if (!v->stepping)
		set_debug(v, h != 0, false);
	kl_assist_count(v, KL_ASX_K_REARM, t0);
}

void kl_assist_pre_run(struct kl_assist_vcpu *v)
{
	if (!v->have_lstar)
		return;
	const struct kvm_sregs *s = &v->run->s.regs.sregs;
	if (s->idt.base == v->idt_base && s->idt.limit == v->idt_limit &&
	    (!v->idt_entry || !memcmp(v->idt_entry, v->idt_copy, 16)))
		return;
	arm(v);
}

bool kl_assist_bp_msr_exit(struct kl_assist_vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t idx = run->msr.index;
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
	if (v->have_lstar)
		arm(v);
	return true;
}

bool kl_assist_bp_debug_exit(struct kl_assist_vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t dr6 = run->debug.arch.dr6, pc = run->debug.arch.pc;
	uint64_t t0 = kl_clock_ns();
	if (v->stepping && (dr6 & DR6_BS)) {
		/* stepped over the handler's first instruction: re-arm */
		set_debug(v, v->pf_handler != 0, false);
		kl_assist_count(v, KL_ASX_K_PF_PASS, t0);
		return true;
	}
	if (v->armed && (dr6 & DR6_B0) && pc == v->pf_handler) {
		kl_assist_load_cpu(v);
		struct kl_asx_syscall_msrs m = { v->star, v->lstar, v->sfmask };
		if (kl_asx_syscall_fixup(&v->cpu, &m)) {
			run->s.regs.regs = v->cpu.regs;
			run->s.regs.sregs = v->cpu.sregs;
			run->kvm_dirty_regs |= KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
			kl_assist_count(v, KL_ASX_K_SYSCALL, t0);
			return true;
		}
		set_debug(v, false, true);
		v->ns[KL_ASX_K_PF_PASS] += kl_clock_ns() - t0;
		return true;
	}
	if (!v->armed && !v->stepping)
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
