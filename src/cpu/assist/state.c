/* The emulation assist's per-vCPU state in a migration (the vcpu section
 * carries it, src/cpu/vcpu_state.c): what the guest wrote that only the
 * assist knows -- STAR/LSTAR/SFMASK (the MSR filter keeps them from KVM),
 * IA32_TSC_AUX (KVM refuses it), the CR4.PCIDE shadow bit and the
 * supervisor XSAVE state.  The breakpoints are not state: they are re-armed
 * from the loaded IDT before the next KVM_RUN. */
#include "kvmlite/assist.h"
#include "kvmlite/vmstate.h"

#include <string.h>

#include "assist_priv.h"

void kl_assist_vcpu_save(const struct kl_assist_vcpu *v, struct kl_vms_out *o)
{
	kl_vms_put_u64(o, v->star);
	kl_vms_put_u64(o, v->lstar);
	kl_vms_put_u64(o, v->sfmask);
	kl_vms_put_u64(o, v->tsc_aux);
	kl_vms_put_u8(o, v->pcide);
	kl_vms_put_u32(o, (uint32_t)v->a->sup_len);
	kl_vms_put_bytes(o, v->sup_state, v->a->sup_len);
}

int kl_assist_vcpu_load(struct kl_assist_vcpu *v, struct kl_vms_in *in)
{
	uint64_t star = kl_vms_get_u64(in), lstar = kl_vms_get_u64(in);
	uint64_t sfmask = kl_vms_get_u64(in), tsc_aux = kl_vms_get_u64(in);
	uint8_t pcide = kl_vms_get_u8(in);
	uint32_t sup_len = kl_vms_get_u32(in);
	if (kl_vms_failed(in))
		return -1;
	if (pcide > 1 || tsc_aux >> 32) {
		kl_vms_fail(in, "assist: impossible PCIDE %u / TSC_AUX %#llx", pcide,
			    (unsigned long long)tsc_aux);
		return -1;
	}
	if (sup_len != v->a->sup_len) {
		kl_vms_fail(in, "assist: supervisor XSAVE state of %u bytes, this host has %zu",
			    sup_len, v->a->sup_len);
		return -1;
	}
	uint8_t *sup = sup_len ? g_malloc(sup_len) : NULL;
	kl_vms_get_bytes(in, sup, sup_len);
	if (kl_vms_failed(in)) {
		g_free(sup);
		return -1;
	}
	kl_assist_bp_reset(v);      /* forgets the IDT: pre_run looks it up again */
	v->star = star;
	v->lstar = lstar;
	v->sfmask = sfmask;
	v->have_lstar = lstar != 0;
	v->tsc_aux = tsc_aux;
	v->pcide = pcide;
	if (sup_len)
		memcpy(v->sup_state, sup, sup_len);
	g_free(sup);
	return 0;
}
