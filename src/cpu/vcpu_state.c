/* The "vcpu" migration section (one per vCPU, instance = its index): the
 * architectural state KVM holds -- general registers, segment/control
 * registers, XSAVE (all FPU/SSE/AVX state) and XCRs, the MSRs
 * KVM_GET_MSR_INDEX_LIST names (TSC, kvmclock's system-time/wall-clock,
 * APIC base, SYSENTER/STAR/..., PAT, ...), the LAPIC page, pending events,
 * MP state, debug registers -- plus the emulation assist's share, and the
 * CPUID table the vCPU was given: a destination whose CPU model (its
 * CPUID) differs refuses, naming the first leaf that differs.  Version 1
 * streams carried a CRC-32 of that table instead.
 *
 * KVM's uAPI structs are written as they are (x86-64 little-endian, fixed
 * layout), each behind its length; KVM itself checks the values on the way
 * in (KVM_SET_SREGS refuses impossible CR0/CR4/EFER, ...). */
#include <cpuid.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvmlite/assist.h"
#include "kvmlite/cpu.h"
#include "kvmlite/migration.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"
#include "vcpu_priv.h"

#define MAX_MSRS 1024u

static uint32_t *msr_list;   /* KVM_GET_MSR_INDEX_LIST, read once */
static unsigned nmsr_list;
static size_t xsave_len;      /* bytes of KVM_GET_XSAVE(2) */
static bool xsave2;

static void read_msr_list(struct kl_vm *vm)
{
	if (msr_list)
		return;
	struct kvm_msr_list probe = { .nmsrs = 0 };
	ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe); /* E2BIG, sets nmsrs */
	unsigned n = probe.nmsrs < MAX_MSRS ? probe.nmsrs : MAX_MSRS;
	struct kvm_msr_list *l = g_malloc0(sizeof(*l) + n * sizeof(uint32_t));
	l->nmsrs = n;
	if (n && ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) == 0) {
		nmsr_list = l->nmsrs;
		msr_list = g_memdup2(l->indices, nmsr_list * sizeof(uint32_t));
	} else {
		msr_list = g_new0(uint32_t, 1);
		nmsr_list = 0;
	}
	g_free(l);
	/* as the assist sizes it (src/cpu/assist/assist.c): KVM_GET_XSAVE2
	 * whenever KVM has it, for everything the host's CPUID lists */
	int x2 = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	xsave2 = x2 > 0;
	unsigned xa, xb, xc, xd;
	__cpuid_count(0xd, 0, xa, xb, xc, xd);
	(void)xa, (void)xb, (void)xd;
	size_t len = x2 > (int)sizeof(struct kvm_xsave) ? (size_t)x2 : sizeof(struct kvm_xsave);
	if (xc > len)
		len = xc;
	xsave_len = (len + 4095) & ~(size_t)4095;
}

static void put_blob(struct kl_vms_out *o, const void *p, size_t n)
{
	kl_vms_put_u32(o, (uint32_t)n);
	kl_vms_put_bytes(o, p, n);
}

static void get_blob(struct kl_vms_in *in, void *p, size_t n, const char *what)
{
	uint32_t len = kl_vms_get_u32(in);
	if (!kl_vms_failed(in) && len != n) {
		kl_vms_fail(in, "%s of %u bytes (this host's is %zu)", what, len, n);
		return;
	}
	kl_vms_get_bytes(in, p, n);
}

/* All readable MSRs of the list: KVM_GET_MSRS stops at the first it cannot
 * read; that one is skipped. */
static struct kvm_msrs *get_msrs(struct kl_vcpu *c)
{
	struct kvm_msrs *m = g_malloc0(sizeof(*m) + nmsr_list * sizeof(struct kvm_msr_entry));
	struct kvm_msrs *one = g_malloc0(sizeof(*one) + nmsr_list * sizeof(struct kvm_msr_entry));
	unsigned i = 0;
	while (i < nmsr_list) {
		unsigned k = 0;
		for (unsigned j = i; j < nmsr_list; j++)
			one->entries[k++].index = msr_list[j];
		one->nmsrs = k;
		int r = ioctl(c->fd, KVM_GET_MSRS, one);
		if (r < 0)
			r = 0;
		for (int j = 0; j < r; j++)
			m->entries[m->nmsrs++] = one->entries[j];
		i += (unsigned)r + 1; /* skip the one that failed */
	}
	g_free(one);
	return m;
}

static int vcpu_save(void *opaque, struct kl_vms_out *o, char **err)
{
	struct kl_vcpu *c = opaque;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	memset(&xcrs, 0, sizeof(xcrs));
	void *xs = g_malloc0(xsave_len);
	unsigned long xreq = xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	const char *what = NULL;
	if (ioctl(c->fd, KVM_GET_REGS, &regs) < 0)
		what = "KVM_GET_REGS";
	else if (ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0)
		what = "KVM_GET_SREGS";
	else if (ioctl(c->fd, xreq, xs) < 0)
		what = "KVM_GET_XSAVE";
	else if (ioctl(c->fd, KVM_GET_XCRS, &xcrs) < 0 && errno != EINVAL)
		what = "KVM_GET_XCRS";
	else if (ioctl(c->fd, KVM_GET_LAPIC, &lapic) < 0)
		what = "KVM_GET_LAPIC";
	else if (ioctl(c->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		what = "KVM_GET_VCPU_EVENTS";
	else if (ioctl(c->fd, KVM_GET_MP_STATE, &mp) < 0)
		what = "KVM_GET_MP_STATE";
	else if (ioctl(c->fd, KVM_GET_DEBUGREGS, &dbg) < 0)
		what = "KVM_GET_DEBUGREGS";
	if (what) {
		*err = g_strdup_printf("vCPU %u: %s: %s", c->index, what, g_strerror(errno));
		g_free(xs);
		return -1;
	}
	kl_cpuid_state_save(c->cpuid, o);
	put_blob(o, &regs, sizeof(regs));
	put_blob(o, &sregs, sizeof(sregs));
	put_blob(o, xs, xsave_len);
	put_blob(o, &xcrs, sizeof(xcrs));
	put_blob(o, &lapic, sizeof(lapic));
	put_blob(o, &ev, sizeof(ev));
	put_blob(o, &mp, sizeof(mp));
	put_blob(o, &dbg, sizeof(dbg));
	g_free(xs);
	struct kvm_msrs *m = get_msrs(c);
	kl_vms_put_u32(o, m->nmsrs);
	for (unsigned i = 0; i < m->nmsrs; i++) {
		kl_vms_put_u32(o, m->entries[i].index);
		kl_vms_put_u64(o, m->entries[i].data);
	}
	g_free(m);
	kl_vms_put_u8(o, c->assist != NULL);
	if (c->assist)
		kl_assist_vcpu_save(c->assist, o);
	return 0;
}

static int vcpu_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	struct kl_vcpu *c = opaque;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	if (kl_cpuid_state_check(c->cpuid, c->index, in, version, err) < 0)
		return -1;
	void *xs = g_malloc0(xsave_len);
	get_blob(in, &regs, sizeof(regs), "kvm_regs");
	get_blob(in, &sregs, sizeof(sregs), "kvm_sregs");
	get_blob(in, xs, xsave_len, "XSAVE state");
	get_blob(in, &xcrs, sizeof(xcrs), "kvm_xcrs");
	get_blob(in, &lapic, sizeof(lapic), "kvm_lapic_state");
	get_blob(in, &ev, sizeof(ev), "kvm_vcpu_events");
	get_blob(in, &mp, sizeof(mp), "kvm_mp_state");
	get_blob(in, &dbg, sizeof(dbg), "kvm_debugregs");
	uint32_t n = kl_vms_get_u32_max(in, MAX_MSRS, "number of MSRs");
	struct kvm_msrs *m = g_malloc0(sizeof(*m) + (n + 1) * sizeof(struct kvm_msr_entry));
	for (uint32_t i = 0; i < n && !kl_vms_failed(in); i++) {
		m->entries[i].index = kl_vms_get_u32(in);
		m->entries[i].data = kl_vms_get_u64(in);
	}
	m->nmsrs = n;
	uint8_t has_assist = kl_vms_get_u8(in);
	int rc = -1;
	if (kl_vms_failed(in))
		goto out;
	if (has_assist != (c->assist != NULL)) {
		*err = g_strdup_printf("vCPU %u: the emulation assist is %s on the source and %s here "
				       "(-accel kvm,emulation-assist=)", c->index,
				       has_assist ? "on" : "off", c->assist ? "on" : "off");
		goto out;
	}
	if (mp.mp_state > KVM_MP_STATE_AP_RESET_HOLD || xcrs.nr_xcrs > KVM_MAX_XCRS) {
		*err = g_strdup_printf("vCPU %u: impossible MP state %u or %u XCRs", c->index,
				       mp.mp_state, xcrs.nr_xcrs);
		goto out;
	}
	const char *what = NULL;
	if (ioctl(c->fd, KVM_SET_REGS, &regs) < 0)
		what = "KVM_SET_REGS";
	else if (ioctl(c->fd, KVM_SET_XSAVE, xs) < 0)
		what = "KVM_SET_XSAVE";
	else if (xcrs.nr_xcrs && ioctl(c->fd, KVM_SET_XCRS, &xcrs) < 0)
		what = "KVM_SET_XCRS";
	else if (ioctl(c->fd, KVM_SET_SREGS, &sregs) < 0)
		what = "KVM_SET_SREGS";
	if (!what) {
		/* MSRs KVM refuses are skipped, one at a time (as QEMU's
		 * kvm_put_msrs asserts only on the ones it must set) */
		unsigned i = 0;
		while (i < m->nmsrs) {
			struct kvm_msrs *one = g_malloc0(sizeof(*one) + (m->nmsrs - i) *
							 sizeof(struct kvm_msr_entry));
			one->nmsrs = m->nmsrs - i;
			memcpy(one->entries, &m->entries[i], one->nmsrs * sizeof(struct kvm_msr_entry));
			int r = ioctl(c->fd, KVM_SET_MSRS, one);
			g_free(one);
			i += (r < 0 ? 0 : (unsigned)r) + 1;
		}
	}
	if (!what && ioctl(c->fd, KVM_SET_MP_STATE, &mp) < 0)
		what = "KVM_SET_MP_STATE";
	if (!what && ioctl(c->fd, KVM_SET_LAPIC, &lapic) < 0)
		what = "KVM_SET_LAPIC";
	if (!what && ioctl(c->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		what = "KVM_SET_VCPU_EVENTS";
	if (!what && ioctl(c->fd, KVM_SET_DEBUGREGS, &dbg) < 0)
		what = "KVM_SET_DEBUGREGS";
	if (what) {
		*err = g_strdup_printf("vCPU %u: %s refused the state: %s", c->index, what,
				       g_strerror(errno));
		goto out;
	}
	if (c->assist && kl_assist_vcpu_load(c->assist, in) < 0)
		goto out;
	/* loaded: the vCPU thread must not apply its reset state over it */
	c->reset_gen = c->vm->reset_gen;
	c->stop_after_exit = false;
	rc = 0;
out:
	g_free(xs);
	g_free(m);
	return rc;
}

static const struct kl_vmstate_ops vcpu_ops = {
	.kind = "vcpu",
	.version = 2,
	.min_version = 1,
	.save = vcpu_save,
	.load = vcpu_load,
};

void kl_vcpu_state_register(struct kl_vm *vm)
{
	read_msr_list(vm);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		char inst[16];
		snprintf(inst, sizeof(inst), "%u", i);
		kl_vmstate_register(vm, inst, &vcpu_ops, vm->vcpus[i]);
	}
}
