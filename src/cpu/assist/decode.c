/* Instruction decoder of the emulation assist (assist_int.h).
 *
 * Decodes what the assist executes (insn.c, xsave.c): legacy prefixes, REX,
 * VEX (C4/C5), the one-byte map and maps 0F / 0F 38 / 0F 3A, ModRM, SIB,
 * displacement, immediate, and the effective address of a memory operand.
 * 64-bit mode and 32-bit protected mode; 16-bit addressing (address size
 * 2) is not decoded (-1).  Opcodes outside the table below are -1 too: the
 * length of an instruction cannot be known without its opcode's layout.
 *
 * Bytes are taken only through next(), which stops at n and at the
 * architectural limit of 15 bytes (a CPU raises #GP beyond it; here -1). */
#include <string.h>

#include "assist_int.h"

struct dec {
	const uint8_t *b;
	size_t n;
	size_t i;
	bool bad;
};

static uint8_t next(struct dec *d)
{
	if (d->i >= d->n || d->i >= KL_INSN_MAX) {
		d->bad = true;
		return 0;
	}
	return d->b[d->i++];
}

static uint64_t next_le(struct dec *d, unsigned len)
{
	uint64_t v = 0;
	for (unsigned k = 0; k < len; k++)
		v |= (uint64_t)next(d) << (8 * k);
	return v;
}

uint64_t *kl_asx_gpr(struct kl_asx_cpu *c, unsigned n)
{
	struct kvm_regs *r = &c->regs;
	switch (n & 15) {
	case 0: return (uint64_t *)&r->rax;
	case 1: return (uint64_t *)&r->rcx;
	case 2: return (uint64_t *)&r->rdx;
	case 3: return (uint64_t *)&r->rbx;
	case 4: return (uint64_t *)&r->rsp;
	case 5: return (uint64_t *)&r->rbp;
	case 6: return (uint64_t *)&r->rsi;
	case 7: return (uint64_t *)&r->rdi;
	case 8: return (uint64_t *)&r->r8;
	case 9: return (uint64_t *)&r->r9;
	case 10: return (uint64_t *)&r->r10;
	case 11: return (uint64_t *)&r->r11;
	case 12: return (uint64_t *)&r->r12;
	case 13: return (uint64_t *)&r->r13;
	case 14: return (uint64_t *)&r->r14;
	default: return (uint64_t *)&r->r15;
	}
}

/* Layout of an opcode: whether it has a ModRM byte, and its immediate. */
enum { F_MODRM = 1, F_IMM8 = 2, F_KNOWN = 4 };

static unsigned op_layout(const struct kl_insn *in)
{
	const unsigned M = F_KNOWN | F_MODRM;
	switch (in->map) {
	case 0:
		if (in->op == 0xcc || in->op == 0x9b)    /* INT3, FWAIT */
			return F_KNOWN;
		if (in->op >= 0xd8 && in->op <= 0xdf)    /* x87 escape */
			return M;
		return 0;
	case 1:
		switch (in->op) {
		case 0x01:  /* group 7: CLAC STAC RDTSCP RDPKRU WRPKRU XGETBV ... */
		case 0xae:  /* group 15: LDMXCSR STMXCSR XSAVE XRSTOR XSAVEOPT ... */
		case 0xb8: case 0xbc: case 0xbd:   /* POPCNT TZCNT LZCNT (F3) */
		case 0xc7:  /* group 9: CMPXCHG8B/16B XRSTORS XSAVEC XSAVES RDPID */
		/* SSE2 integer/logic and moves */
		case 0x57: case 0x60: case 0x6e: case 0x6f: case 0x74: case 0x75: case 0x76:
		case 0x7e: case 0x7f: case 0xd4: case 0xd6: case 0xd7: case 0xda: case 0xdb:
		case 0xdf: case 0xeb: case 0xef:
			return M;
		case 0x70:  /* PSHUFD */
			return M | F_IMM8;
		case 0x77:  /* EMMS (VZEROUPPER with VEX) */
			return F_KNOWN;
		}
		return 0;
	case 2:
		if (in->op == 0x82 ||	/* INVPCID (66) */
		    in->op == 0xf0 || in->op == 0xf1 || in->op == 0xf2 || in->op == 0xf3 ||
		    (in->op >= 0xf5 && in->op <= 0xf7))
			return M;
		return 0;
	case 3:
		if (in->op == 0xf0)   /* RORX */
			return M | F_IMM8;
		return 0;
	}
	return 0;
}

static uint64_t seg_base(const struct kl_asx_cpu *c, uint8_t seg, bool ss_default, bool mode64)
{
	const struct kvm_sregs *s = &c->sregs;
	if (mode64) {
		if (seg == 0x64)
			return s->fs.base;
		if (seg == 0x65)
			return s->gs.base;
		return 0;
	}
	switch (seg) {
	case 0x26: return s->es.base;
	case 0x2e: return s->cs.base;
	case 0x36: return s->ss.base;
	case 0x3e: return s->ds.base;
	case 0x64: return s->fs.base;
	case 0x65: return s->gs.base;
	}
	return ss_default ? s->ss.base : s->ds.base;
}

/* ModRM/SIB/displacement for 32/64-bit addressing: sets the fields and
 * returns the address without segment base nor RIP (for rip_rel, disp is
 * added to the next RIP once the length is known). */
static uint64_t modrm_mem(struct dec *d, struct kl_asx_cpu *c, struct kl_insn *in,
			  bool mode64, bool *ss_default)
{
	unsigned rexb = (in->rex & 1) ? 8 : 0, rexx = (in->rex & 2) ? 8 : 0;
	unsigned rm = in->modrm & 7;
	uint64_t addr = 0;
	*ss_default = false;
	if (rm == 4) {
		in->has_sib = true;
		in->sib = next(d);
		unsigned scale = in->sib >> 6;
		unsigned index = ((in->sib >> 3) & 7) | rexx;
		unsigned base = in->sib & 7;
		if (index != 4)
			addr += *kl_asx_gpr(c, index) << scale;
		if (base == 5 && in->mod == 0) {
			in->disp = (int32_t)next_le(d, 4);
		} else {
			addr += *kl_asx_gpr(c, base | rexb);
			*ss_default = (base == 4 || base == 5);
		}
	} else if (rm == 5 && in->mod == 0) {
		in->disp = (int32_t)next_le(d, 4);
		in->rip_rel = mode64;
	} else {
		addr += *kl_asx_gpr(c, rm | rexb);
		*ss_default = (rm == 5);
	}
	if (in->mod == 1)
		in->disp = (int8_t)next(d);
	else if (in->mod == 2)
		in->disp = (int32_t)next_le(d, 4);
	return addr;
}

int kl_insn_decode(const struct kl_asx_cpu *cpu, const uint8_t *bytes, size_t n,
		   struct kl_insn *out)
{
	/* the decoder only reads registers; kl_asx_gpr takes a mutable cpu */
	struct kl_asx_cpu *c = (struct kl_asx_cpu *)cpu;
	struct dec d = { .b = bytes, .n = n };
	struct kl_insn in;
	memset(&in, 0, sizeof(in));
	bool mode64 = (cpu->sregs.efer & (1u << 10)) && cpu->sregs.cs.l;
	bool def32 = mode64 || cpu->sregs.cs.db;
	uint8_t b, last_mand = 0;

	/* legacy prefixes; a REX not directly before the opcode is ignored */
	for (;;) {
		b = next(&d);
		if (d.bad)
			return -1;
		if (b == 0x66 || b == 0xf2 || b == 0xf3) {
			if (b == 0x66)
				in.p66 = true;
			else
				last_mand = b;
			if (b == 0xf2)
				in.pf2 = true;
			if (b == 0xf3)
				in.pf3 = true;
		} else if (b == 0x67) {
			in.p67 = true;
		} else if (b == 0xf0) {
			in.lock = true;
		} else if (b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e || b == 0x64 ||
			   b == 0x65) {
			in.seg = b;
		} else if (mode64 && (b & 0xf0) == 0x40) {
			in.rex = b;
			b = next(&d);
			if (d.bad)
				return -1;
			if (b == 0x66 || b == 0x67 || b == 0xf0 || b == 0xf2 || b == 0xf3 ||
			    b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e || b == 0x64 ||
			    b == 0x65 || (b & 0xf0) == 0x40) {
				in.rex = 0;
				d.i--;   /* not last: ignored, take b as a prefix again */
				continue;
			}
			break;
		} else {
			break;
		}
	}
	/* mandatory prefix: F2/F3 (the last of them) take precedence over 66 */
	in.pp = last_mand == 0xf3 ? 2 : last_mand == 0xf2 ? 3 : in.p66 ? 1 : 0;

	unsigned rexr = 0;
	if ((b == 0xc4 || b == 0xc5) && !mode64) {
		/* outside 64-bit mode C4/C5 are LES/LDS unless ModRM.mod would be 11 */
		if (d.i >= d.n || (d.b[d.i] & 0xc0) != 0xc0)
			return -1;
	}
	if (b == 0xc4 || b == 0xc5) {
		/* VEX: 66/F2/F3/LOCK/REX before it are #UD */
		if (in.p66 || in.pf2 || in.pf3 || in.lock || in.rex)
			return -1;
		in.vex = true;
		uint8_t v1 = next(&d), v2;
		unsigned r, x = 0, bb = 0, w = 0;
		if (b == 0xc5) {
			r = !(v1 & 0x80);
			in.map = 1;
			v2 = v1;
		} else {
			r = !(v1 & 0x80);
			x = !(v1 & 0x40);
			bb = !(v1 & 0x20);
			in.map = v1 & 0x1f;
			v2 = next(&d);
			w = v2 >> 7;
		}
		if (d.bad || in.map < 1 || in.map > 3)
			return -1;
		if (!mode64) {   /* R X B and vvvv[3] are not available */
			r = x = bb = 0;
			v2 |= 0x40;
		}
		in.vex_w = w;
		in.vex_vvvv = (~v2 >> 3) & 15;
		in.vex_l = (v2 >> 2) & 1;
		in.pp = v2 & 3;
		rexr = r << 3;
		/* VEX.X/B in their REX positions for the ModRM decode below
		 * (cleared again at the end: rex is 0 for VEX encodings) */
		in.rex = (uint8_t)(x << 1 | bb);
		in.op = next(&d);
		if (d.bad)
			return -1;
		in.opsize = (mode64 && w) ? 8 : 4;
	} else {
		if (b == 0x0f) {
			in.map = 1;
			b = next(&d);
			if (b == 0x38 || b == 0x3a) {
				in.map = b == 0x38 ? 2 : 3;
				b = next(&d);
			}
			if (d.bad)
				return -1;
		}
		in.op = b;
		rexr = (in.rex & 4) ? 8 : 0;
		if (in.rex & 8)
			in.opsize = 8;
		else if (def32)
			in.opsize = in.p66 ? 2 : 4;
		else
			in.opsize = in.p66 ? 4 : 2;
	}
	if (mode64)
		in.addrsize = in.p67 ? 4 : 8;
	else if (def32)
		in.addrsize = in.p67 ? 2 : 4;
	else
		in.addrsize = in.p67 ? 4 : 2;

	unsigned lay = op_layout(&in);
	if (!(lay & F_KNOWN))
		return -1;

	uint64_t addr = 0;
	bool ss_default = false;
	if (lay & F_MODRM) {
		in.has_modrm = true;
		in.modrm = next(&d);
		if (d.bad)
			return -1;
		in.mod = in.modrm >> 6;
		in.reg = ((in.modrm >> 3) & 7) | rexr;
		in.rm = (in.modrm & 7) | ((in.rex & 1) ? 8 : 0);
		if (in.mod != 3) {
			if (in.addrsize == 2)
				return -1;   /* 16-bit addressing: not decoded */
			in.has_mem = true;
			addr = modrm_mem(&d, c, &in, mode64, &ss_default);
		}
	}
	if (lay & F_IMM8) {
		in.imm = (int8_t)next(&d);
		in.imm_len = 1;
	}
	if (d.bad)
		return -1;
	in.len = (uint8_t)d.i;

	if (in.vex)
		in.rex = 0;
	if (in.has_mem) {
		if (in.rip_rel)
			addr = cpu->regs.rip + in.len;
		addr += (uint64_t)(int64_t)in.disp;
		if (in.addrsize == 4)
			addr = (uint32_t)addr;
		addr += seg_base(cpu, in.seg, ss_default, mode64);
		if (!mode64)
			addr = (uint32_t)addr;
		in.ea = addr;
	}
	*out = in;
	return 0;
}
