/* Internals of the emulation assist (src/cpu/assist/), shared by its files
 * and their unit tests.  See docs/cpu.md for what it is for.
 *
 * On hosts whose /dev/kvm runs a guest's ring 0 in KVM's instruction
 * emulator (PVM), some instructions end KVM_RUN with an emulation failure;
 * the assist executes them here, as the CPU would, against a snapshot of
 * the vCPU (struct kl_asx_cpu) and reports DONE (registers updated, RIP
 * advanced), FAULT (an exception to deliver instead) or UNHANDLED.
 *
 *   decode.c   instruction decoder: prefixes, REX, VEX, ModRM/SIB,
 *              displacement, RIP-relative, immediates, effective address
 *   walk.c     guest-virtual -> guest-physical through the guest's page
 *              tables (4/5 level, large pages, U/S, R/W, NX, SMEP/SMAP,
 *              CR0.WP, A/D bits), and copies to/from guest-virtual memory
 *   insn.c     integer, x87/SSE-control and system instructions
 *   sse.c      SSE2 integer/logic instructions and GPR<->XMM moves
 *   xsave.c    XGETBV and the XSAVE family
 *   syscall.c  completing the host's broken SYSCALL: is this #PF one, and
 *              the state SYSCALL should have produced; IDT gates
 *   crfix.c    CR4.PCIDE where KVM refuses it: mov to CR4/CR3 fix-ups
 *   breakpoint.c  the KVM side of those: MSR filter, DR0 on the #PF
 *              handler, debug exits
 *   assist.c   the vCPU glue: KVM exits, sync regs, counters
 *
 * Nothing here calls KVM except assist.c and breakpoint.c: the rest works on
 * struct kl_asx_cpu and the ops behind it, so that unit tests drive it with
 * fake memory and a fake FPU. */
#ifndef KVMLITE_ASSIST_INT_H
#define KVMLITE_ASSIST_INT_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvmlite/mem.h"

/* ---- outcome of one attempt ------------------------------------------ */
enum kl_asx_result {
	KL_ASX_UNHANDLED = 0, /* not an instruction the assist executes */
	KL_ASX_DONE,          /* executed: regs written back, RIP advanced */
	KL_ASX_FAULT,         /* raises cpu->fault instead (RIP unchanged) */
	KL_ASX_ERROR,         /* host-side failure (an ops call failed) */
};

/* x86 exception vectors used here */
enum { KL_X86_DE = 0, KL_X86_DB = 1, KL_X86_BP = 3, KL_X86_UD = 6, KL_X86_NM = 7,
       KL_X86_GP = 13, KL_X86_PF = 14, KL_X86_MF = 16, KL_X86_AC = 17, KL_X86_XM = 19 };

struct kl_asx_fault {
	uint8_t vector;
	bool has_error;
	uint32_t error;
	uint64_t cr2;       /* #PF: the faulting linear address */
	bool trap;          /* a trap (#BP of INT3): kl_asx_execute() has already
	                     * advanced RIP past the instruction */
};

/* #PF error code bits */
#define KL_PF_P (1u << 0)
#define KL_PF_W (1u << 1)
#define KL_PF_U (1u << 2)
#define KL_PF_RSVD (1u << 3)
#define KL_PF_I (1u << 4)
#define KL_PF_PK (1u << 5)

/* Counter kinds (one per assisted instruction or event), see kl_asx_kind_name(). */
enum kl_asx_kind {
	KL_ASX_K_XGETBV, KL_ASX_K_XSAVE, KL_ASX_K_XSAVEOPT, KL_ASX_K_XSAVEC, KL_ASX_K_XSAVES,
	KL_ASX_K_XRSTOR, KL_ASX_K_XRSTORS,
	KL_ASX_K_CLAC, KL_ASX_K_STAC, KL_ASX_K_POPCNT, KL_ASX_K_LZCNT, KL_ASX_K_TZCNT,
	KL_ASX_K_CMPXCHG16B, KL_ASX_K_RDTSCP, KL_ASX_K_RDPID, KL_ASX_K_CRC32, KL_ASX_K_MOVBE,
	KL_ASX_K_BMI,        /* ANDN BEXTR BLSI BLSMSK BLSR BZHI MULX PDEP PEXT RORX SARX SHLX SHRX */
	KL_ASX_K_X87,        /* FNCLEX FLDCW FNSTSW FWAIT FNINIT(helper) ... */
	KL_ASX_K_MXCSR,      /* LDMXCSR STMXCSR */
	KL_ASX_K_PKRU,       /* RDPKRU WRPKRU */
	KL_ASX_K_MWAITX,     /* MONITORX MWAITX (AMD) */
	KL_ASX_K_INT3,
	KL_ASX_K_OTHER,      /* anything else insn.c executes */
	KL_ASX_K_FAULT,      /* an assisted instruction raised an exception */
	KL_ASX_K_UNHANDLED,  /* emulation failures the assist could not take */
	KL_ASX_K_SYSCALL,    /* host SYSCALL completed (syscall.c) */
	KL_ASX_K_PF_PASS,    /* ordinary #PF passed on to the guest (breakpoint + step) */
	KL_ASX_K_REARM,      /* breakpoint re-armed (LSTAR write, IDT change) */
	KL_ASX_K_INVPCID,    /* INVPCID done as a full TLB flush (crfix.c) */
	KL_ASX_K_CR_FIX,     /* mov to CR4/CR3 done without PCIDE / bit 63 (crfix.c) */
	KL_ASX_K_GP_PASS,    /* ordinary #GP passed on to the guest (breakpoint + step) */
	KL_ASX_K_COUNT
};
const char *kl_asx_kind_name(enum kl_asx_kind k);   /* "xsave", "popcnt", ... */

/* ---- the vCPU as the assists see it ---------------------------------- */
struct kl_asx_cpu;

/* What the assists need beyond registers and RAM.  assist.c implements these
 * over KVM ioctls; unit tests with fakes.  Each returns 0, or -1 on a
 * host-side failure (the assist then returns KL_ASX_ERROR). */
struct kl_asx_ops {
	/* FPU/SSE/AVX... state in KVM's uABI layout: the standard (non-compacted)
	 * XSAVE format, legacy area + header + components at CPUID(0xd,i).EBX
	 * offsets, as KVM_GET_XSAVE2 / KVM_SET_XSAVE use it.  len is
	 * cpu->xsave_len. */
	int (*get_xsave)(struct kl_asx_cpu *c, void *buf);
	int (*set_xsave)(struct kl_asx_cpu *c, const void *buf);
	int (*get_xcr0)(struct kl_asx_cpu *c, uint64_t *xcr0);
	int (*get_msr)(struct kl_asx_cpu *c, uint32_t index, uint64_t *val);
	int (*set_msr)(struct kl_asx_cpu *c, uint32_t index, uint64_t val);
	/* Drop every TLB entry of the vCPU, global ones included (INVPCID). */
	int (*flush_tlb)(struct kl_asx_cpu *c);
};

/* One XSAVE state component i (2..62) as CPUID(0xd, i) describes it. */
struct kl_xstate_comp {
	uint32_t size;      /* EAX */
	uint32_t offset;    /* EBX: standard-format offset (0 for supervisor) */
	bool align64;       /* ECX bit 1: 64-byte aligned in the compacted format */
	bool supervisor;    /* ECX bit 0: an IA32_XSS component */
};
struct kl_xstate_layout {
	struct kl_xstate_comp comp[64];
	uint64_t xcr0_mask;   /* CPUID(0xd,0) EDX:EAX */
	uint64_t xss_mask;    /* CPUID(0xd,1) EDX:ECX */
};
/* Fill from this CPU's CPUID leaf 0xd (the guest sees the host's CPUID on
 * the hosts where the assist runs). */
void kl_xstate_layout_host(struct kl_xstate_layout *l);
/* Bytes struct kl_asx_cpu.sup_state needs for l's supervisor components
 * (0 when l has none); layout: see xsave.c. */
size_t kl_xsave_sup_len(const struct kl_xstate_layout *l);

struct kl_asx_cpu {
	/* in/out: general registers, RIP, RFLAGS (written back on DONE) */
	struct kvm_regs regs;
	/* in: segments (CS.L/DB/DPL, FS/GS base), CR0/CR2/CR3/CR4, EFER, IDT */
	struct kvm_sregs sregs;
	const struct kl_guest_mem *mem;   /* guest RAM (bounds-checked) */
	const struct kl_asx_ops *ops;
	void *opaque;                     /* for the ops */
	const struct kl_xstate_layout *xstate;
	size_t xsave_len;                 /* bytes of the uABI XSAVE buffer */
	/* supervisor XSAVE components (IA32_XSS) are not in KVM's uABI buffer:
	 * XSAVES/XRSTORS keep them here, per vCPU (standard-format offsets are
	 * meaningless for them: xsave.c defines the layout; assist.c allocates
	 * kl_xsave_sup_len() bytes, zeroed = all init; NULL = no supervisor
	 * state supported). */
	uint8_t *sup_state;
	size_t sup_len;
	/* out */
	struct kl_asx_fault fault;        /* with KL_ASX_FAULT */
	enum kl_asx_kind kind;            /* what was executed (counters) */
};

/* CPL as the CPU defines it (CS.DPL in protected mode, SS.DPL really; 0 in real mode) */
static inline unsigned kl_asx_cpl(const struct kl_asx_cpu *c)
{
	if (!(c->sregs.cr0 & 1))
		return 0;
	return c->sregs.ss.dpl;
}

/* ---- decode.c -------------------------------------------------------- */
#define KL_INSN_MAX 15

struct kl_insn {
	uint8_t len;            /* total bytes, prefixes included */
	/* legacy prefixes */
	bool p66, pf2, pf3, lock, p67;
	uint8_t seg;            /* 0, or 0x26 0x2e 0x36 0x3e 0x64 0x65 (last one wins) */
	/* REX (64-bit mode only; 0 = none) */
	uint8_t rex;
	/* VEX (C4/C5); the opcode map and pp then come from it */
	bool vex;
	uint8_t vex_l, vex_w, vex_vvvv;   /* vvvv already inverted: a register number 0-15 */
	/* opcode: map 0 = one-byte, 1 = 0F xx, 2 = 0F 38 xx, 3 = 0F 3A xx */
	uint8_t map, op;
	/* mandatory-prefix class for maps 1-3: 0 none, 1 = 66, 2 = F3, 3 = F2
	 * (from VEX.pp; for legacy encodings the last of F3/F2, else 66:
	 * F2/F3 take precedence over 66, which then is an operand-size prefix) */
	uint8_t pp;
	/* ModRM, with REX/VEX extensions applied to reg and rm (0-15) */
	bool has_modrm;
	uint8_t modrm, mod, reg, rm;
	bool has_sib;
	uint8_t sib;
	int32_t disp;
	bool rip_rel;
	/* the memory operand (mod != 3): linear address, segment base added */
	bool has_mem;
	uint64_t ea;
	/* operand and address size in bytes (2/4/8; 8-bit forms: see opsize of the opcode) */
	uint8_t opsize, addrsize;
	int64_t imm;            /* sign-extended immediate, if any */
	uint8_t imm_len;
};

/* Decode the instruction in bytes[0..n) at cpu->regs.rip in the CPU's mode
 * (64-bit when CS.L with EFER.LMA, else 32/16-bit from CS.DB), computing
 * the effective address from cpu->regs / cpu->sregs.  Returns 0, or -1 for
 * an encoding the decoder does not know (treated as UNHANDLED) or one that
 * runs past n bytes. */
int kl_insn_decode(const struct kl_asx_cpu *cpu, const uint8_t *bytes, size_t n,
		   struct kl_insn *out);
/* Pointer to general register n (0-15: rax rcx rdx rbx rsp rbp rsi rdi r8-r15). */
uint64_t *kl_asx_gpr(struct kl_asx_cpu *c, unsigned n);

/* ---- walk.c ---------------------------------------------------------- */
/* access flags */
#define KL_ACC_WRITE (1u << 0)
#define KL_ACC_FETCH (1u << 1)
#define KL_ACC_IMPLICIT_SV (1u << 2)   /* implicit supervisor access (GDT/IDT/TSS...): SMAP ignores AC */

/* Translate one linear address for an access of the CPU's CPL (user when
 * CPL 3).  0 with *gpa, or -1 with cpu->fault set (#PF with the error code
 * and CR2 the CPU would produce; #GP(0) for a non-canonical address).  Sets
 * the Accessed bits, and Dirty on writes, in the guest's page tables as
 * the CPU does (atomically).  Paging off: gpa = la. */
int kl_asx_translate(struct kl_asx_cpu *cpu, uint64_t la, unsigned acc, uint64_t *gpa);
/* Copy between guest-virtual memory and buf, page by page.  A write checks
 * every page (translation and RAM) before writing any byte.  0, or -1 with
 * cpu->fault set (#PF / #GP), or -2 when a page is not guest RAM (MMIO:
 * the caller returns UNHANDLED). */
int kl_asx_read(struct kl_asx_cpu *cpu, uint64_t la, void *buf, size_t len, unsigned acc);
int kl_asx_write(struct kl_asx_cpu *cpu, uint64_t la, const void *buf, size_t len, unsigned acc);
/* Host pointer to len bytes at la (which must not cross a page), for atomic
 * read-modify-writes (LOCK CMPXCHG16B); NULL with cpu->fault set, or with
 * fault.vector == 0xff when not RAM. */
void *kl_asx_ptr(struct kl_asx_cpu *cpu, uint64_t la, size_t len, unsigned acc);

/* ---- insn.c / xsave.c ------------------------------------------------ */
/* Execute the instruction whose bytes are given (read at CS:RIP by the
 * caller).  Tries every assist: the result and cpu->kind say what it did. */
enum kl_asx_result kl_asx_execute(struct kl_asx_cpu *cpu, const uint8_t *bytes, size_t n);
/* The XSAVE family and XGETBV (xsave.c); UNHANDLED for other instructions. */
enum kl_asx_result kl_asx_xsave(struct kl_asx_cpu *cpu, const struct kl_insn *in);
/* Everything else insn.c executes; UNHANDLED for other instructions. */
enum kl_asx_result kl_asx_insn(struct kl_asx_cpu *cpu, const struct kl_insn *in);

/* ---- syscall.c ------------------------------------------------------- */
/* The 64-bit IDT gate for vector vec: handler offset, or 0 when the IDT is
 * too short, not readable or the gate is not present. */
uint64_t kl_asx_idt_handler(struct kl_asx_cpu *cpu, unsigned vec);
/* The guest's SYSCALL MSRs, as it wrote them. */
struct kl_asx_syscall_msrs {
	uint64_t star, lstar, sfmask;
};
/* cpu is at the first instruction of the #PF handler (RSP at the error
 * code).  True when this #PF is the host's broken SYSCALL: a user-mode
 * instruction fetch at LSTAR (error code U|I, CR2 == RIP == LSTAR, CS.RPL 3)
 * with RFLAGS as SYSCALL leaves them (every SFMASK bit -- IF included --
 * clear, = R11 & ~SFMASK), and "0f 05" just before RCX.  A user program
 * jumping to LSTAR has IF set (ring 3 cannot clear it): not a SYSCALL.
 * On true, cpu->regs/sregs are changed to what SYSCALL should have
 * produced: CPL 0, CS/SS from STAR, RIP = LSTAR, the user's RSP, the
 * exception frame dropped. */
bool kl_asx_syscall_fixup(struct kl_asx_cpu *cpu, const struct kl_asx_syscall_msrs *m);

/* SSE integer/logic instructions and moves the emulator lacks (sse.c);
 * UNHANDLED for other instructions. */
enum kl_asx_result kl_asx_sse(struct kl_asx_cpu *cpu, const struct kl_insn *in);
/* #UD/#NM checks of an SSE instruction (CR0.EM, CR4.OSFXSR, CR4.OSXSAVE for
 * VEX, CR0.TS): KL_ASX_DONE when it may run, else KL_ASX_FAULT (sse.c). */
enum kl_asx_result kl_asx_sse_avail(struct kl_asx_cpu *cpu, bool vex);
/* The uABI XSAVE buffer (insn.c): get allocates cpu->xsave_len bytes
 * (UNHANDLED without ops or with a buffer shorter than 576 bytes, ERROR
 * when the op fails); put sets it and frees it.  touch: component comp
 * (0 x87, 1 SSE, or a component of cpu->xstate) is about to be modified:
 * set its XSTATE_BV bit, first filling its area with the init state when
 * the bit was clear. */
enum kl_asx_result kl_asx_xs_get(struct kl_asx_cpu *cpu, uint8_t **buf);
enum kl_asx_result kl_asx_xs_put(struct kl_asx_cpu *cpu, uint8_t *buf);
void kl_asx_xs_touch(const struct kl_asx_cpu *cpu, uint8_t *buf, unsigned comp);

/* ---- crfix.c --------------------------------------------------------- */
/* A mov to CR3/CR4 as kvmlite performs it where KVM refuses CR4.PCIDE. */
struct kl_asx_cr_write {
	unsigned cr;        /* 3 or 4 */
	uint64_t value;     /* what to load: CR4 without PCIDE, CR3 without bit 63 */
	bool pcide;         /* CR4: the guest asked for PCIDE (its shadow bit) */
	bool noflush;       /* CR3: bit 63 was set */
	uint64_t site;      /* address of the mov */
};
/* cpu at "mov %reg, %cr3/%cr4" (an instruction breakpoint on it): fill w
 * and advance RIP past it.  -1 when RIP is not at such a mov. */
int kl_asx_cr_site(struct kl_asx_cpu *cpu, struct kl_asx_cr_write *w);
/* cpu at the first instruction of the #GP handler: true when the #GP came
 * from a ring-0 mov to CR4 setting PCIDE, or (pcide_shadow) a mov to CR3
 * with bit 63; then w says what to load and cpu->regs continue after the
 * mov with the exception frame dropped. */
bool kl_asx_cr_gp_fixup(struct kl_asx_cpu *cpu, bool pcide_shadow, struct kl_asx_cr_write *w);
/* INVPCID (66 0F 38 82 /r): checks as the CPU does, then a full flush
 * through ops->flush_tlb (more than any type asks: always correct). */
enum kl_asx_result kl_asx_invpcid(struct kl_asx_cpu *cpu, const struct kl_insn *in);

/* helpers both use */
static inline enum kl_asx_result kl_asx_raise(struct kl_asx_cpu *c, uint8_t vec, bool has_err,
					      uint32_t err)
{
	c->fault.vector = vec;
	c->fault.has_error = has_err;
	c->fault.error = err;
	c->fault.cr2 = 0;
	c->fault.trap = false;
	return KL_ASX_FAULT;
}

#endif
