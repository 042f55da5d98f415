/* SSE2 integer/logic instructions and GPR<->XMM moves of the emulation
 * assist (assist_int.h): KVM's emulator fails on them in ring 0 (kernel
 * string/checksum helpers use them).  Legacy encodings on XMM registers
 * only (MMX and VEX forms are not handled):
 *
 *   66 0F EF pxor   66 0F EB por    66 0F DB pand   66 0F DF pandn
 *   66 0F 74/75/76 pcmpeqb/w/d      66 0F D4 paddq  66 0F DA pminub
 *   66 0F 60 punpcklbw              66 0F 70 pshufd ib
 *   0F 57 xorps, 66 0F 57 xorpd     66 0F D7 pmovmskb r32, xmm
 *   66 0F 6E movd/movq xmm, r/m     66 0F 7E movd/movq r/m, xmm
 *   F3 0F 7E movq xmm, xmm/m64      66 0F D6 movq xmm/m64, xmm
 *
 * 16-byte memory operands must be 16-byte aligned (#GP(0)).  XMM registers
 * live in the XSAVE buffer at 160 + 16 * i; bits 255:128 (YMM) are left
 * alone as legacy SSE instructions do. */
#include <stdlib.h>
#include <string.h>

#include "assist_int.h"

#define XMM(buf, i) ((buf) + 160 + 16 * (i))

enum kl_asx_result kl_asx_sse_avail(struct kl_asx_cpu *c, bool vex)
{
	uint64_t cr0 = c->sregs.cr0, cr4 = c->sregs.cr4;
	if ((!vex && (cr0 & (1u << 2))) || !(cr4 & (1u << 9)) || (vex && !(cr4 & (1u << 18))))
		return kl_asx_raise(c, KL_X86_UD, false, 0);
	if (cr0 & (1u << 3))
		return kl_asx_raise(c, KL_X86_NM, false, 0);
	return KL_ASX_DONE;
}

enum sse_op { PXOR, POR, PAND, PANDN, PCMPEQB, PCMPEQW, PCMPEQD, PADDQ, PMINUB, PUNPCKLBW,
	      PSHUFD, PMOVMSKB, MOVD_TO, MOVD_FROM, MOVQ_LOAD, MOVQ_STORE };

static int sse_which(const struct kl_insn *in)
{
	if (in->vex || in->map != 1)
		return -1;
	if (in->pp == 0)
		return in->op == 0x57 ? PXOR : -1;
	if (in->pp == 2)
		return in->op == 0x7e ? MOVQ_LOAD : -1;
	if (in->pp != 1)
		return -1;
	switch (in->op) {
	case 0xef: case 0x57: return PXOR;
	case 0xeb: return POR;
	case 0xdb: return PAND;
	case 0xdf: return PANDN;
	case 0x74: return PCMPEQB;
	case 0x75: return PCMPEQW;
	case 0x76: return PCMPEQD;
	case 0xd4: return PADDQ;
	case 0xda: return PMINUB;
	case 0x60: return PUNPCKLBW;
	case 0x70: return PSHUFD;
	case 0xd7: return in->has_mem ? -1 : PMOVMSKB;
	case 0x6e: return MOVD_TO;
	case 0x7e: return MOVD_FROM;
	case 0xd6: return MOVQ_STORE;
	}
	return -1;
}

/* dst op= src on 16 bytes */
static void packed(int op, uint8_t *d, const uint8_t *s, uint8_t imm)
{
	uint8_t r[16];
	for (int i = 0; i < 16; i++) {
		switch (op) {
		case PXOR: r[i] = d[i] ^ s[i]; break;
		case POR: r[i] = d[i] | s[i]; break;
		case PAND: r[i] = d[i] & s[i]; break;
		case PANDN: r[i] = (uint8_t)(~d[i] & s[i]); break;
		case PMINUB: r[i] = d[i] < s[i] ? d[i] : s[i]; break;
		case PUNPCKLBW: r[i] = (i & 1) ? s[i / 2] : d[i / 2]; break;
		case PSHUFD: r[i] = s[4 * ((imm >> (2 * (i / 4))) & 3) + i % 4]; break;
		default: {   /* PCMPEQ: element of 1/2/4 bytes */
			int w = op == PCMPEQB ? 1 : op == PCMPEQW ? 2 : 4, e = i - i % w;
			r[i] = memcmp(d + e, s + e, w) ? 0 : 0xff;
			break;
		}
		}
	}
	if (op == PADDQ) {
		for (int k = 0; k < 2; k++) {
			uint64_t a, b;
			memcpy(&a, d + 8 * k, 8);
			memcpy(&b, s + 8 * k, 8);
			a += b;
			memcpy(r + 8 * k, &a, 8);
		}
	}
	memcpy(d, r, 16);
}

enum kl_asx_result kl_asx_sse(struct kl_asx_cpu *c, const struct kl_insn *in)
{
	int op = sse_which(in);
	if (op < 0)
		return KL_ASX_UNHANDLED;
	if (kl_asx_sse_avail(c, false) != KL_ASX_DONE)
		return KL_ASX_FAULT;
	unsigned msize = op == MOVD_TO || op == MOVD_FROM ? (in->rex & 8 ? 8 : 4)
			 : op == MOVQ_LOAD || op == MOVQ_STORE ? 8 : 16;
	bool store = op == MOVD_FROM || op == MOVQ_STORE;
	uint8_t src[16] = { 0 };
	if (in->has_mem) {
		if (msize == 16 && (in->ea & 15))
			return kl_asx_raise(c, KL_X86_GP, true, 0);
		if (!store) {
			int e = kl_asx_read(c, in->ea, src, msize, 0);
			if (e)
				return e == -1 ? KL_ASX_FAULT : KL_ASX_UNHANDLED;
		}
	} else if (op == MOVD_TO) {
		uint64_t v = *kl_asx_gpr(c, in->rm);
		memcpy(src, &v, msize);
	}
	uint8_t *buf;
	enum kl_asx_result r = kl_asx_xs_get(c, &buf);
	if (r != KL_ASX_DONE)
		return r;
	kl_asx_xs_touch(c, buf, 1);   /* XMM in the init state read as 0 */
	c->kind = KL_ASX_K_OTHER;
	uint8_t *dst = XMM(buf, in->reg);
	if (!in->has_mem && op != MOVD_TO)
		memcpy(src, XMM(buf, in->rm), op == MOVQ_LOAD ? 8 : 16);
	switch (op) {
	case PMOVMSKB: {
		uint32_t m = 0;
		for (int i = 0; i < 16; i++)
			m |= (uint32_t)(src[i] >> 7) << i;
		*kl_asx_gpr(c, in->reg) = m;   /* zero-extended */
		free(buf);
		return KL_ASX_DONE;
	}
	case MOVD_FROM: case MOVQ_STORE: {
		/* source is the ModRM.reg XMM; destination r/m (GPR / memory / XMM) */
		uint64_t v = 0;
		memcpy(&v, dst, msize);
		if (in->has_mem) {
			int e = kl_asx_write(c, in->ea, &v, msize, 0);
			free(buf);
			return e == 0 ? KL_ASX_DONE : e == -1 ? KL_ASX_FAULT : KL_ASX_UNHANDLED;
		}
		if (op == MOVD_FROM) {
			*kl_asx_gpr(c, in->rm) = msize == 8 ? v : (uint32_t)v;
			free(buf);
			return KL_ASX_DONE;
		}
		uint8_t *x = XMM(buf, in->rm);   /* movq xmm, xmm: upper half zeroed */
		memset(x, 0, 16);
		memcpy(x, &v, 8);
		return kl_asx_xs_put(c, buf);
	}
	case MOVD_TO: case MOVQ_LOAD:
		memset(dst, 0, 16);
		memcpy(dst, src, msize);
		break;
	default:
		packed(op, dst, src, (uint8_t)in->imm);
		break;
	}
	return kl_asx_xs_put(c, buf);
}
