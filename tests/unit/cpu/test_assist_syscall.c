/* Unit tests for src/cpu/assist/syscall.c (the host's broken SYSCALL seen
 * as a #PF at LSTAR, IDT gates) and crfix.c (mov to CR4/CR3 without
 * PCIDE / bit 63, INVPCID), on fake RAM and page tables (assist_fake.h).
 *
 * The SYSCALL scene: a 64-bit guest at CPL 0 at the first instruction of
 * its #PF handler, RSP at the frame the #PF delivery pushed on the kernel
 * stack (error code, RIP, CS, RFLAGS, RSP, SS), as a PVM host leaves it
 * after a user "syscall" whose jump to LSTAR faulted in ring 3. */
#include <check.h>

#include "../kl_check.h"
#include "assist_fake.h"

#define RF (1ull << 16)
#define IF (1ull << 9)
#define CR4_PCIDE (1ull << 17)

#define KSTK 0xffffc90000010000ull   /* kernel stack page, supervisor RW */
#define KSTK_PA 0x400000ull
#define FRAME (KSTK + 0xf00)         /* RSP at the handler */
#define UCODE 0x0000000000401000ull  /* user code page (0f 05 at +0x100) */
#define UCODE_PA 0x410000ull
#define SCODE 0x0000000000402000ull  /* supervisor-only page, same bytes */
#define SCODE_PA 0x420000ull
#define KCODE 0xffffffff81000000ull  /* kernel text: mov cr sites */
#define KCODE_PA 0x430000ull
#define IDT 0xfffffe0000000000ull
#define IDT_PA 0x440000ull
#define DATA 0x00007f0000000000ull   /* INVPCID descriptors (user RW) */
#define DATA_PA 0x450000ull

#define LSTAR 0xffffffff81e00000ull
#define STAR ((0x0023ull << 48) | (0x0010ull << 32))
#define SFMASK 0x47700ull            /* Linux: TF DF IF IOPL NT AC */
#define USER_RSP 0x00007ffffffde008ull
#define USER_RFLAGS 0x246ull         /* R11: what the user had (IF set) */
#define PF_HANDLER 0xffffffff81a00000ull

static struct fake *F;
static struct kl_asx_cpu *C;
static struct kl_asx_syscall_msrs M;
static int flushes;
static bool flush_fails;

static int fake_flush_tlb(struct kl_asx_cpu *c)
{
	(void)c;
	if (flush_fails)
		return -1;
	flushes++;
	return 0;
}

static uint64_t *frame_at(uint64_t la)
{
	return (uint64_t *)(F->ram + KSTK_PA + (la - KSTK));
}

static void put_frame(uint64_t la, uint64_t err, uint64_t rip, uint64_t cs, uint64_t rfl,
		      uint64_t rsp, uint64_t ss)
{
	uint64_t *f = frame_at(la);
	f[0] = err;
	f[1] = rip;
	f[2] = cs;
	f[3] = rfl;
	f[4] = rsp;
	f[5] = ss;
}

static void setup(void)
{
	F = fake_new();
	C = &F->cpu;
	F->ops.flush_tlb = fake_flush_tlb;
	flushes = 0;
	flush_fails = false;
	fake_map(F, KSTK, KSTK_PA, 1, E_P | E_W | E_XD);
	fake_map(F, UCODE, UCODE_PA, 1, E_P | E_U);
	fake_map(F, SCODE, SCODE_PA, 1, E_P);
	fake_map(F, KCODE, KCODE_PA, 1, E_P);
	fake_map(F, IDT, IDT_PA, 1, E_P | E_XD);
	fake_map(F, DATA, DATA_PA, 1, E_P | E_W | E_U | E_XD);
	F->ram[UCODE_PA + 0x100] = 0x0f;
	F->ram[UCODE_PA + 0x101] = 0x05;
	F->ram[SCODE_PA + 0x100] = 0x0f;
	F->ram[SCODE_PA + 0x101] = 0x05;

	/* the genuine broken SYSCALL */
	fake_cpl(F, 0);
	C->sregs.ss.selector = 0x18;
	C->regs.rip = PF_HANDLER;
	C->regs.rsp = FRAME;
	C->regs.rflags = 0x2;
	C->regs.rcx = UCODE + 0x102;
	C->regs.r11 = USER_RFLAGS;
	C->regs.rax = 60;
	C->sregs.cr2 = LSTAR;
	put_frame(FRAME, KL_PF_P | KL_PF_U | KL_PF_I, LSTAR, 0x33,
		  (USER_RFLAGS & ~SFMASK) | RF, USER_RSP, 0x2b);
	M = (struct kl_asx_syscall_msrs){ STAR, LSTAR, SFMASK };
}

static void teardown(void)
{
	fake_free(F);
}

/* A recognisable cpu->fault, which the fix-ups must leave alone. */
static void set_fault_marker(void)
{
	C->fault = (struct kl_asx_fault){ .vector = 0x42, .has_error = true, .error = 0x1234,
					  .cr2 = 0x5678, .trap = true };
}

static bool fault_marker_intact(void)
{
	return C->fault.vector == 0x42 && C->fault.has_error && C->fault.error == 0x1234 &&
	       C->fault.cr2 == 0x5678 && C->fault.trap;
}

/* kl_asx_syscall_fixup(C) is false and leaves the CPU as it was. */
static void expect_not_syscall(const char *why)
{
	struct kvm_regs r = C->regs;
	struct kvm_sregs s = C->sregs;
	set_fault_marker();
	ck_assert_msg(!kl_asx_syscall_fixup(C, &M), "taken for a SYSCALL: %s", why);
	ck_assert_msg(memcmp(&r, &C->regs, sizeof(r)) == 0, "regs changed: %s", why);
	ck_assert_msg(memcmp(&s, &C->sregs, sizeof(s)) == 0, "sregs changed: %s", why);
	ck_assert_msg(fault_marker_intact(), "fault changed: %s", why);
}

static void expect_syscall(void)
{
	struct kvm_regs before = C->regs;
	ck_assert(kl_asx_syscall_fixup(C, &M));
	const struct kvm_sregs *s = &C->sregs;
	ck_assert_uint_eq(s->cs.selector, (M.star >> 32) & 0xfffc);
	/* SS = STAR[47:32] + 8 (the SDM does not mask SS's RPL bits; with a
	 * zero RPL in STAR, as every kernel has it, both readings agree) */
	if (!((M.star >> 32) & 3))
		ck_assert_uint_eq(s->ss.selector, ((M.star >> 32) & 0xffff) + 8);
	ck_assert_uint_eq(s->cs.dpl, 0);
	ck_assert_uint_eq(s->ss.dpl, 0);
	ck_assert_uint_eq(kl_asx_cpl(C), 0);
	ck_assert_uint_eq(s->cs.l, 1);
	ck_assert_uint_eq(s->cs.db, 0);
	ck_assert_uint_eq(s->cs.present, 1);
	ck_assert_uint_eq(s->cs.s, 1);
	ck_assert_uint_eq(s->cs.type & 0x8, 0x8);   /* code */
	ck_assert_uint_eq(s->ss.present, 1);
	ck_assert_uint_eq(s->ss.type & 0xa, 0x2);   /* data, writable */
	ck_assert_uint_eq(C->regs.rip, M.lstar);
	ck_assert_uint_eq(C->regs.rsp, USER_RSP);
	ck_assert_uint_eq(C->regs.rflags, USER_RFLAGS & ~SFMASK);
	ck_assert_uint_eq(C->regs.rflags & (RF | IF), 0);
	/* SYSCALL's own results were right already: RCX, R11, the rest */
	ck_assert_uint_eq(C->regs.rcx, before.rcx);
	ck_assert_uint_eq(C->regs.r11, before.r11);
	ck_assert_uint_eq(C->regs.rax, before.rax);
}

START_TEST(test_syscall_genuine)
{
	expect_syscall();
	ck_assert_uint_eq(C->sregs.cs.selector, 0x10);
	ck_assert_uint_eq(C->sregs.ss.selector, 0x18);
}
END_TEST

START_TEST(test_syscall_star_rpl)
{
	/* STAR[47:32] with RPL bits: CS drops them (& ~3).  SS is not
	 * checked here: the SDM loads STAR[47:32] + 8 unmasked */
	M.star = (0x0023ull << 48) | (0x0043ull << 32);
	expect_syscall();
	ck_assert_uint_eq(C->sregs.cs.selector, 0x40);
}
END_TEST

START_TEST(test_syscall_frame_flags)
{
	/* other RFLAGS bits pass through (CF, ZF here); VM is cleared, bit 1 set */
	C->regs.r11 = 0x2c3;
	frame_at(FRAME)[3] = (0x2c3 & ~SFMASK) | RF;
	ck_assert(kl_asx_syscall_fixup(C, &M));
	ck_assert_uint_eq(C->regs.rflags, 0xc3);
}
END_TEST

START_TEST(test_syscall_frame_unaligned_page_cross)
{
	/* the frame straddles two mapped kernel-stack pages */
	fake_map(F, KSTK + 0x1000, KSTK_PA + 0x1000, 1, E_P | E_W);
	uint64_t at = KSTK + 0x1000 - 16;
	put_frame(at, KL_PF_P | KL_PF_U | KL_PF_I, LSTAR, 0x33, (USER_RFLAGS & ~SFMASK) | RF,
		  USER_RSP, 0x2b);
	C->regs.rsp = at;
	expect_syscall();
}
END_TEST

START_TEST(test_syscall_jmp_with_if)
{
	/* a ring-3 "jmp LSTAR": IF stays set (ring 3 cannot clear it) */
	C->regs.r11 = USER_RFLAGS;
	frame_at(FRAME)[3] = USER_RFLAGS | RF;
	expect_not_syscall("IF set in the frame");
	/* even when R11 happens to match the frame with only IF not masked */
	C->regs.r11 = USER_RFLAGS & ~(SFMASK & ~IF);
	frame_at(FRAME)[3] = C->regs.r11 | RF;
	expect_not_syscall("IF set, R11 consistent");
}
END_TEST

START_TEST(test_syscall_addresses)
{
	C->sregs.cr2 = LSTAR + 0x1000;
	expect_not_syscall("CR2 != LSTAR");
	C->sregs.cr2 = LSTAR;
	frame_at(FRAME)[1] = LSTAR + 1;
	expect_not_syscall("frame RIP != LSTAR");
	frame_at(FRAME)[1] = LSTAR;
	M.lstar = LSTAR - 0x1000;
	expect_not_syscall("LSTAR elsewhere");
}
END_TEST

START_TEST(test_syscall_cs_rpl0)
{
	frame_at(FRAME)[2] = 0x10;
	expect_not_syscall("frame CS RPL 0");
	frame_at(FRAME)[2] = 0x31;
	expect_not_syscall("frame CS RPL 1");
}
END_TEST

START_TEST(test_syscall_error_code)
{
	static const struct { uint64_t err; const char *why; } bad[] = {
		{ KL_PF_P | KL_PF_I, "no U" },
		{ KL_PF_P | KL_PF_U, "no I" },
		{ KL_PF_P | KL_PF_U | KL_PF_I | KL_PF_W, "W" },
		{ KL_PF_P | KL_PF_U | KL_PF_I | KL_PF_RSVD, "RSVD" },
		{ KL_PF_U | KL_PF_W, "user write" },
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		frame_at(FRAME)[0] = bad[i].err;
		expect_not_syscall(bad[i].why);
	}
	/* not-present (P clear) is still the fetch at LSTAR: accepted */
	frame_at(FRAME)[0] = KL_PF_U | KL_PF_I;
	expect_syscall();
}
END_TEST

START_TEST(test_syscall_no_insn)
{
	F->ram[UCODE_PA + 0x101] = 0x34;   /* 0f 34: SYSENTER */
	expect_not_syscall("0f 34 before RCX");
	F->ram[UCODE_PA + 0x101] = 0x05;
	C->regs.rcx = UCODE + 0x103;        /* 05 xx */
	expect_not_syscall("RCX one byte off");
	C->regs.rcx = UCODE + 0x800;        /* zeroes */
	expect_not_syscall("no 0f 05");
	C->regs.rcx = 0x0000000000500002ull;  /* unmapped */
	expect_not_syscall("RCX on an unmapped page");
}
END_TEST

START_TEST(test_syscall_supervisor_page)
{
	/* the same bytes on a page the user cannot read or execute */
	C->regs.rcx = SCODE + 0x102;
	expect_not_syscall("0f 05 on a supervisor page");
	/* and the bytes straddling a user and a supervisor page */
	F->ram[UCODE_PA + 0xfff] = 0x0f;
	F->ram[SCODE_PA] = 0x05;
	C->regs.rcx = SCODE + 1;
	expect_not_syscall("05 on a supervisor page");
	/* control: both bytes on user pages */
	fake_map(F, SCODE, SCODE_PA, 1, E_P | E_U);
	expect_syscall();
}
END_TEST

START_TEST(test_syscall_rcx_below_2)
{
	/* 0f at the last byte of the address space, 05 at 0: RCX - 2 wraps to
	 * a readable 0f 05 unless RCX < 2 is refused */
	fake_map(F, 0xfffffffffffff000ull, 0x460000, 1, E_P | E_U);
	fake_map(F, 0, 0x461000, 1, E_P | E_U);
	F->ram[0x460fff] = 0x0f;
	F->ram[0x461000] = 0x05;
	C->regs.rcx = 1;
	expect_not_syscall("RCX 1");
	C->regs.rcx = 0;
	expect_not_syscall("RCX 0");
	C->regs.rcx = 2;                    /* 2 - 2 = 0: 05 00, not 0f 05 */
	expect_not_syscall("RCX 2 on 05 00");
	F->ram[0x461000] = 0x0f;
	F->ram[0x461001] = 0x05;
	expect_syscall();                   /* control: RCX 2 is fine */
}
END_TEST

START_TEST(test_syscall_r11)
{
	C->regs.r11 = USER_RFLAGS | 1;     /* CF in R11, not in the frame */
	expect_not_syscall("R11 CF");
	C->regs.r11 = USER_RFLAGS;
	frame_at(FRAME)[3] |= 0x80;        /* SF in the frame only */
	expect_not_syscall("frame SF");
	frame_at(FRAME)[3] = (USER_RFLAGS & ~SFMASK) | RF | (1ull << 10);  /* DF: masked */
	C->regs.r11 = USER_RFLAGS | (1ull << 10);
	expect_not_syscall("masked DF left set");
}
END_TEST

START_TEST(test_syscall_sfmask_without_if)
{
	/* consistent in every other way, but SFMASK does not clear IF */
	M.sfmask = SFMASK & ~IF;
	frame_at(FRAME)[3] = (USER_RFLAGS & ~M.sfmask) | RF;
	expect_not_syscall("SFMASK without IF");
}
END_TEST

START_TEST(test_syscall_not_long_mode)
{
	/* paging off, so the frame and the bytes are read from physical
	 * addresses whatever EFER says: only LMA makes the difference */
	C->sregs.cr0 &= ~(1ull << 31);
	M.lstar = 0x00200000;
	C->sregs.cr2 = M.lstar;
	C->regs.rsp = KSTK_PA + 0xf00;
	C->regs.rcx = UCODE_PA + 0x102;
	uint64_t *f = (uint64_t *)(F->ram + KSTK_PA + 0xf00);
	f[0] = KL_PF_P | KL_PF_U | KL_PF_I;
	f[1] = M.lstar;
	f[2] = 0x33;
	f[3] = (USER_RFLAGS & ~SFMASK) | RF;
	f[4] = USER_RSP;
	f[5] = 0x2b;
	C->sregs.efer &= ~((1ull << 10) | (1ull << 8));
	expect_not_syscall("EFER.LMA clear");
	C->sregs.efer |= (1ull << 10) | (1ull << 8);
	expect_syscall();                   /* control */
}
END_TEST

START_TEST(test_syscall_unmapped_stack)
{
	C->regs.rsp = KSTK + 0x2f00;
	expect_not_syscall("RSP unmapped");
	/* the frame's last words on the next, unmapped page */
	uint64_t at = KSTK + 0x1000 - 16;
	put_frame(at, KL_PF_P | KL_PF_U | KL_PF_I, LSTAR, 0x33, 0, 0, 0);
	C->regs.rsp = at;
	expect_not_syscall("frame crosses into an unmapped page");
	C->regs.rsp = 0x8000000000000000ull;
	expect_not_syscall("RSP non-canonical");
	/* the stack on a page outside guest RAM */
	fake_map(F, KSTK + 0x3000, 0x40000000ull, 1, E_P | E_W);
	C->regs.rsp = KSTK + 0x3f00;
	expect_not_syscall("stack not RAM");
}
END_TEST

START_TEST(test_syscall_lstar_zero)
{
	M.lstar = 0;
	C->sregs.cr2 = 0;
	frame_at(FRAME)[1] = 0;
	expect_not_syscall("LSTAR 0");
}
END_TEST

/* ---- IDT gates ---------------------------------------------------------- */
static void put_gate(unsigned vec, uint64_t off, uint8_t type_attr)
{
	uint8_t *g = F->ram + IDT_PA + 16 * vec;
	memset(g, 0, 16);
	g[0] = (uint8_t)off;
	g[1] = (uint8_t)(off >> 8);
	g[2] = 0x10;
	g[5] = type_attr;
	g[6] = (uint8_t)(off >> 16);
	g[7] = (uint8_t)(off >> 24);
	for (int i = 0; i < 4; i++)
		g[8 + i] = (uint8_t)(off >> (32 + 8 * i));
	g[12] = 0xff;   /* reserved bits: ignored */
}

START_TEST(test_idt_handler)
{
	C->sregs.idt.base = IDT;
	C->sregs.idt.limit = 4095;
	put_gate(14, 0xffffffff81a01234ull, 0x8e);
	put_gate(13, 0x0000123456789abcull, 0xee);   /* DPL 3 trap-ish: still present */
	put_gate(6, 0xffffffff81a05678ull, 0x0e);    /* not present */
	ck_assert_uint_eq(kl_asx_idt_handler(C, 14), 0xffffffff81a01234ull);
	ck_assert_uint_eq(kl_asx_idt_handler(C, 13), 0x0000123456789abcull);
	ck_assert_uint_eq(kl_asx_idt_handler(C, 6), 0);
	ck_assert_uint_eq(kl_asx_idt_handler(C, 255), 0);   /* zeroes */
	ck_assert_uint_eq(kl_asx_idt_handler(C, 256), 0);
	ck_assert_uint_eq(kl_asx_idt_handler(C, 0x10000000u), 0);
	/* limit: the gate's last byte must be inside it */
	C->sregs.idt.limit = 14 * 16 + 15;
	ck_assert_uint_eq(kl_asx_idt_handler(C, 14), 0xffffffff81a01234ull);
	C->sregs.idt.limit = 14 * 16 + 14;
	ck_assert_uint_eq(kl_asx_idt_handler(C, 14), 0);
	ck_assert_uint_eq(kl_asx_idt_handler(C, 13), 0x0000123456789abcull);
	C->sregs.idt.limit = 0;
	ck_assert_uint_eq(kl_asx_idt_handler(C, 0), 0);
	/* an IDT on an unmapped page: 0, and no fault left behind */
	C->sregs.idt.limit = 4095;
	C->sregs.idt.base = IDT + 0x1000;
	set_fault_marker();
	ck_assert_uint_eq(kl_asx_idt_handler(C, 14), 0);
	ck_assert(fault_marker_intact());
	/* a gate straddling the end of the mapped page */
	C->sregs.idt.base = IDT + 8;
	ck_assert_uint_eq(kl_asx_idt_handler(C, 255), 0);
}
END_TEST

/* ---- crfix: kl_asx_cr_site ---------------------------------------------- */
static void put_code(uint64_t la, const uint8_t *b, size_t n)
{
	memcpy(F->ram + KCODE_PA + (la - KCODE), b, n);
}

#define CODE(la, ...)                                                             \
	do {                                                                      \
		static const uint8_t b_[] = { __VA_ARGS__ };                      \
		put_code(la, b_, sizeof(b_));                                     \
	} while (0)

static int site_at(uint64_t la, struct kl_asx_cr_write *w)
{
	C->regs.rip = la;
	memset(w, 0xa5, sizeof(*w));
	return kl_asx_cr_site(C, w);
}

START_TEST(test_cr_site_cr4)
{
	struct kl_asx_cr_write w;
	CODE(KCODE, 0x0f, 0x22, 0xe0);        /* mov %rax, %cr4 */
	C->regs.rax = 0x3406f0 | CR4_PCIDE;
	ck_assert_int_eq(site_at(KCODE, &w), 0);
	ck_assert_uint_eq(w.cr, 4);
	ck_assert(w.pcide);
	ck_assert(!w.noflush);
	ck_assert_uint_eq(w.value, 0x3406f0);
	ck_assert_uint_eq(w.site, KCODE);
	ck_assert_uint_eq(C->regs.rip, KCODE + 3);
	C->regs.rax = 0x3406f0;
	ck_assert_int_eq(site_at(KCODE, &w), 0);
	ck_assert(!w.pcide);
	ck_assert_uint_eq(w.value, 0x3406f0);
	/* mov %rdi, %cr4 */
	CODE(KCODE + 0x10, 0x0f, 0x22, 0xe7);
	C->regs.rdi = 0x1000 | CR4_PCIDE;
	ck_assert_int_eq(site_at(KCODE + 0x10, &w), 0);
	ck_assert_uint_eq(w.cr, 4);
	ck_assert_uint_eq(w.value, 0x1000);
	ck_assert(w.pcide);
	/* REX.B: mov %r15, %cr4 (41 0f 22 e7) */
	CODE(KCODE + 0x20, 0x41, 0x0f, 0x22, 0xe7);
	C->regs.r15 = 0x2000 | CR4_PCIDE;
	ck_assert_int_eq(site_at(KCODE + 0x20, &w), 0);
	ck_assert_uint_eq(w.value, 0x2000);
	ck_assert_uint_eq(C->regs.rip, KCODE + 0x24);
	ck_assert_uint_eq(w.site, KCODE + 0x20);
}
END_TEST

START_TEST(test_cr_site_cr3)
{
	struct kl_asx_cr_write w;
	CODE(KCODE, 0x0f, 0x22, 0xd8);        /* mov %rax, %cr3 */
	C->regs.rax = (1ull << 63) | 0x1234000 | 5;
	ck_assert_int_eq(site_at(KCODE, &w), 0);
	ck_assert_uint_eq(w.cr, 3);
	ck_assert(w.noflush);
	ck_assert(!w.pcide);
	ck_assert_uint_eq(w.value, 0x1234005);
	ck_assert_uint_eq(C->regs.rip, KCODE + 3);
	C->regs.rax = 0x1234005;
	ck_assert_int_eq(site_at(KCODE, &w), 0);
	ck_assert(!w.noflush);
	ck_assert_uint_eq(w.value, 0x1234005);
	/* 41 0f 22 d8: mov %r8, %cr3 */
	CODE(KCODE + 0x10, 0x41, 0x0f, 0x22, 0xd8);
	C->regs.r8 = (1ull << 63) | 0x5000;
	C->regs.rax = 0;
	ck_assert_int_eq(site_at(KCODE + 0x10, &w), 0);
	ck_assert_uint_eq(w.cr, 3);
	ck_assert(w.noflush);
	ck_assert_uint_eq(w.value, 0x5000);
	ck_assert_uint_eq(C->regs.rip, KCODE + 0x14);
	/* 48 (REX.W only) 0f 22 db: mov %rbx, %cr3 */
	CODE(KCODE + 0x20, 0x48, 0x0f, 0x22, 0xdb);
	C->regs.rbx = 0x7000;
	ck_assert_int_eq(site_at(KCODE + 0x20, &w), 0);
	ck_assert_uint_eq(w.value, 0x7000);
	ck_assert_uint_eq(C->regs.rip, KCODE + 0x24);
}
END_TEST

START_TEST(test_cr_site_not_mov)
{
	static const struct { uint8_t b[4]; const char *what; } bad[] = {
		{ { 0x44, 0x0f, 0x22, 0xd8 }, "REX.R: mov %rax, %cr11" },
		{ { 0x44, 0x0f, 0x22, 0xe0 }, "REX.R: mov %rax, %cr12" },
		{ { 0x44, 0x0f, 0x22, 0xc0 }, "mov %rax, %cr8" },
		{ { 0x0f, 0x22, 0xc0, 0x90 }, "mov %rax, %cr0" },
		{ { 0x0f, 0x22, 0xd0, 0x90 }, "mov %rax, %cr2" },
		{ { 0x0f, 0x20, 0xe0, 0x90 }, "mov %cr4, %rax" },
		{ { 0x0f, 0x20, 0xd8, 0x90 }, "mov %cr3, %rax" },
		{ { 0x0f, 0x22, 0x20, 0x90 }, "mod 0" },
		{ { 0x0f, 0x22, 0x60, 0x00 }, "mod 1" },
		{ { 0x0f, 0x23, 0xe0, 0x90 }, "mov to DR4" },
		{ { 0x90, 0x0f, 0x22, 0xe0 }, "nop first" },
		{ { 0x66, 0x0f, 0x22, 0xe0 }, "66 prefix" },
		{ { 0x41, 0x41, 0x0f, 0x22 }, "two REX" },
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		struct kl_asx_cr_write w;
		put_code(KCODE + 0x40 * i, bad[i].b, 4);
		ck_assert_msg(site_at(KCODE + 0x40 * i, &w) == -1, "%s", bad[i].what);
		ck_assert_msg(C->regs.rip == KCODE + 0x40 * i, "%s: RIP moved", bad[i].what);
	}
	/* REX outside 64-bit code is not REX (inc/dec in 32-bit code) */
	struct kl_asx_cr_write w;
	CODE(KCODE + 0x800, 0x41, 0x0f, 0x22, 0xe0);
	C->sregs.cs.l = 0;
	C->sregs.cs.db = 1;
	ck_assert_int_eq(site_at(KCODE + 0x800, &w), -1);
	C->sregs.cs.l = 1;
	C->sregs.cs.db = 0;
	ck_assert_int_eq(site_at(KCODE + 0x800, &w), 0);   /* control */
	/* RIP on an unmapped page */
	ck_assert_int_eq(site_at(KCODE + 0x1000, &w), -1);
	ck_assert_uint_eq(C->regs.rip, KCODE + 0x1000);
}
END_TEST

/* ---- crfix: kl_asx_cr_gp_fixup ------------------------------------------ */
#define GP_HANDLER 0xffffffff81a02000ull
#define KRSP 0xffffc90000010800ull      /* the RSP of the mov, on the same stack */
#define KRFLAGS 0x86ull                 /* IF clear, SF PF */

/* CPU at the #GP handler, frame for a #GP at site with error code err and CS cs. */
static void gp_scene(uint64_t site, uint64_t err, uint64_t cs)
{
	fake_cpl(F, 0);
	C->regs.rip = GP_HANDLER;
	C->regs.rsp = FRAME;
	C->regs.rflags = 0x2;
	put_frame(FRAME, err, site, cs, KRFLAGS | RF, KRSP, 0x18);
}

static void expect_gp_fixup(bool shadow, unsigned cr, uint64_t value, uint64_t next)
{
	struct kl_asx_cr_write w;
	struct kvm_regs before = C->regs;
	ck_assert(kl_asx_cr_gp_fixup(C, shadow, &w));
	ck_assert_uint_eq(w.cr, cr);
	ck_assert_uint_eq(w.value, value);
	ck_assert_uint_eq(C->regs.rip, next);
	ck_assert_uint_eq(C->regs.rsp, KRSP);
	ck_assert_uint_eq(C->regs.rflags, KRFLAGS);
	ck_assert_uint_eq(C->regs.rax, before.rax);
	ck_assert_uint_eq(C->regs.rcx, before.rcx);
}

static void expect_no_gp_fixup(bool shadow, const char *why)
{
	struct kl_asx_cr_write w;
	struct kvm_regs r = C->regs;
	struct kvm_sregs s = C->sregs;
	ck_assert_msg(!kl_asx_cr_gp_fixup(C, shadow, &w), "fixed up: %s", why);
	ck_assert_msg(memcmp(&r, &C->regs, sizeof(r)) == 0, "regs changed: %s", why);
	ck_assert_msg(memcmp(&s, &C->sregs, sizeof(s)) == 0, "sregs changed: %s", why);
}

START_TEST(test_gp_fixup_cr4)
{
	CODE(KCODE, 0x0f, 0x22, 0xe0);
	C->regs.rax = 0x3406f0 | CR4_PCIDE;
	gp_scene(KCODE, 0, 0x10);
	expect_gp_fixup(false, 4, 0x3406f0, KCODE + 3);

	/* with REX: 41 0f 22 e1, mov %r9, %cr4 */
	CODE(KCODE + 0x10, 0x41, 0x0f, 0x22, 0xe1);
	C->regs.r9 = 0x6f0 | CR4_PCIDE;
	gp_scene(KCODE + 0x10, 0, 0x10);
	expect_gp_fixup(true, 4, 0x6f0, KCODE + 0x14);
}
END_TEST

START_TEST(test_gp_fixup_cr4_genuine)
{
	CODE(KCODE, 0x0f, 0x22, 0xe0);
	C->regs.rax = 0x3406f0 | (1ull << 40);   /* a reserved bit, no PCIDE */
	gp_scene(KCODE, 0, 0x10);
	expect_no_gp_fixup(false, "CR4 without PCIDE");
	expect_no_gp_fixup(true, "CR4 without PCIDE, shadow");
}
END_TEST

START_TEST(test_gp_fixup_cr3)
{
	CODE(KCODE, 0x0f, 0x22, 0xdf);   /* mov %rdi, %cr3 */
	C->regs.rdi = (1ull << 63) | 0x1234000 | 0x7;
	gp_scene(KCODE, 0, 0x10);
	expect_no_gp_fixup(false, "CR3 bit 63 without the PCIDE shadow");
	expect_gp_fixup(true, 3, 0x1234007, KCODE + 3);
	/* without bit 63 a #GP there is someone else's */
	C->regs.rdi = 0x1234007 | (1ull << 62);
	gp_scene(KCODE, 0, 0x10);
	expect_no_gp_fixup(true, "CR3 without bit 63");
}
END_TEST

START_TEST(test_gp_fixup_frame)
{
	CODE(KCODE, 0x0f, 0x22, 0xe0);
	C->regs.rax = 0x3406f0 | CR4_PCIDE;
	gp_scene(KCODE, 0x10, 0x10);
	expect_no_gp_fixup(false, "error code 0x10");
	gp_scene(KCODE, 1ull << 32, 0x10);
	expect_no_gp_fixup(false, "error code above 32 bits");
	gp_scene(KCODE, 0, 0x33);
	expect_no_gp_fixup(false, "CPL-3 frame");
	gp_scene(KCODE, 0, 0x11);
	expect_no_gp_fixup(false, "CPL-1 frame");
	gp_scene(KCODE + 0x100, 0, 0x10);   /* zeroes there */
	expect_no_gp_fixup(false, "frame RIP not at a mov");
	gp_scene(KCODE + 0x1000, 0, 0x10);  /* unmapped */
	expect_no_gp_fixup(false, "frame RIP unmapped");
	gp_scene(KCODE, 0, 0x10);
	C->regs.rsp = KSTK + 0x4000;
	expect_no_gp_fixup(false, "stack unmapped");
	gp_scene(KCODE, 0, 0x10);
	C->sregs.cs.l = 0;
	C->sregs.cs.db = 1;
	expect_no_gp_fixup(false, "handler not in 64-bit code");
	C->sregs.cs.l = 1;
	C->sregs.cs.db = 0;
	expect_gp_fixup(false, 4, 0x3406f0, KCODE + 3);   /* control */
}
END_TEST

/* ---- crfix: INVPCID ----------------------------------------------------- */
static enum kl_asx_result run_at(const uint8_t *b, size_t n)
{
	C->regs.rip = KCODE;
	memset(&C->fault, 0, sizeof(C->fault));
	return kl_asx_execute(C, b, n);
}

#define RUN(...)                                                                  \
	({                                                                        \
		static const uint8_t b_[] = { __VA_ARGS__ };                      \
		run_at(b_, sizeof(b_));                                           \
	})
/* invpcid (%rsi), %rax */
#define INVPCID_RSI_RAX 0x66, 0x0f, 0x38, 0x82, 0x06

static void put_desc(uint64_t off, uint64_t pcid, uint64_t la)
{
	uint64_t *d = (uint64_t *)(F->ram + DATA_PA + off);
	d[0] = pcid;
	d[1] = la;
}

static void expect_fault(enum kl_asx_result r, uint8_t vec, bool has_err, const char *why)
{
	ck_assert_msg(r == KL_ASX_FAULT, "%s: result %d", why, r);
	ck_assert_msg(C->fault.vector == vec, "%s: vector %u", why, C->fault.vector);
	ck_assert_msg(C->fault.has_error == has_err, "%s: has_error", why);
	ck_assert_msg(C->fault.error == 0 || vec == KL_X86_PF, "%s: error %u", why,
		      C->fault.error);
	ck_assert_msg(C->regs.rip == KCODE, "%s: RIP moved", why);
	ck_assert_int_eq(flushes, 0);
}

START_TEST(test_invpcid_ok)
{
	fake_cpl(F, 0);
	C->regs.rsi = DATA;
	for (uint64_t type = 0; type < 4; type++) {
		put_desc(0, 0xfff, 0xffffffff81000000ull);
		C->regs.rax = type;
		flushes = 0;
		enum kl_asx_result r = RUN(INVPCID_RSI_RAX);
		ck_assert_msg(r == KL_ASX_DONE, "type %u: %d (vector %u)", (unsigned)type, r,
			      C->fault.vector);
		ck_assert_int_eq(flushes, 1);
		ck_assert_uint_eq(C->regs.rip, KCODE + 5);
		ck_assert_uint_eq(C->kind, KL_ASX_K_INVPCID);
	}
	/* a non-canonical address matters only for type 0 */
	put_desc(0x10, 1, 0x0000800000000000ull);
	C->regs.rsi = DATA + 0x10;
	C->regs.rax = 1;
	flushes = 0;
	ck_assert_int_eq(RUN(INVPCID_RSI_RAX), KL_ASX_DONE);
	ck_assert_int_eq(flushes, 1);
	/* REX.R / REX.B: 66 45 0f 38 82 00: invpcid (%r8), %r8 */
	put_desc(0x20, 0, 0);
	C->regs.r8 = DATA + 0x20;  /* both the type (too big) and the address */
	flushes = 0;
	ck_assert_int_eq(RUN(0x66, 0x45, 0x0f, 0x38, 0x82, 0x00), KL_ASX_FAULT);
	ck_assert_uint_eq(C->fault.vector, KL_X86_GP);
	/* 66 44 0f 38 82 06: invpcid (%rsi), %r8 with type 2 in r8 */
	C->regs.r8 = 2;
	C->regs.rax = 99;
	C->regs.rsi = DATA + 0x20;
	flushes = 0;
	ck_assert_int_eq(RUN(0x66, 0x44, 0x0f, 0x38, 0x82, 0x06), KL_ASX_DONE);
	ck_assert_int_eq(flushes, 1);
	ck_assert_uint_eq(C->regs.rip, KCODE + 6);
	/* outside 64-bit mode the type register is 32 bits: 2^32 + 2 is type 2 */
	fake_map(F, 0x500000, DATA_PA, 1, E_P | E_W | E_U);
	C->sregs.cs.l = 0;
	C->sregs.cs.db = 1;
	C->regs.rax = (1ull << 32) | 2;
	C->regs.rsi = 0x500000;
	flushes = 0;
	ck_assert_int_eq(RUN(INVPCID_RSI_RAX), KL_ASX_DONE);
	ck_assert_int_eq(flushes, 1);
	C->sregs.cs.l = 1;
	C->sregs.cs.db = 0;
	ck_assert_int_eq(RUN(INVPCID_RSI_RAX), KL_ASX_FAULT);   /* 64-bit: type 2^32 + 2 */
	ck_assert_uint_eq(C->fault.vector, KL_X86_GP);
	/* the flush op failing is a host error */
	flush_fails = true;
	C->regs.rax = 2;
	ck_assert_int_eq(RUN(INVPCID_RSI_RAX), KL_ASX_ERROR);
	ck_assert_uint_eq(C->regs.rip, KCODE);
}
END_TEST

START_TEST(test_invpcid_ud)
{
	fake_cpl(F, 0);
	C->regs.rsi = DATA;
	put_desc(0, 0, 0);
	C->regs.rax = 2;
	expect_fault(RUN(0x0f, 0x38, 0x82, 0x06), KL_X86_UD, false, "no 66");
	expect_fault(RUN(0x66, 0x0f, 0x38, 0x82, 0xc6), KL_X86_UD, false, "register form");
	expect_fault(RUN(0xf3, 0x0f, 0x38, 0x82, 0x06), KL_X86_UD, false, "F3 instead of 66");
	expect_fault(RUN(0xf0, 0x66, 0x0f, 0x38, 0x82, 0x06), KL_X86_UD, false, "LOCK");
	/* kl_asx_invpcid itself refuses LOCK and VEX (not only the dispatch) */
	static const uint8_t lk[] = { 0xf0, 0x66, 0x0f, 0x38, 0x82, 0x06 };
	struct kl_insn in;
	C->regs.rip = KCODE;
	ck_assert_int_eq(kl_insn_decode(C, lk, sizeof(lk), &in), 0);
	ck_assert(in.lock);
	ck_assert_int_eq(kl_asx_invpcid(C, &in), KL_ASX_FAULT);
	ck_assert_uint_eq(C->fault.vector, KL_X86_UD);
	in.lock = false;
	in.vex = true;
	ck_assert_int_eq(kl_asx_invpcid(C, &in), KL_ASX_FAULT);
	ck_assert_uint_eq(C->fault.vector, KL_X86_UD);
	in.vex = false;
	ck_assert_int_eq(kl_asx_invpcid(C, &in), KL_ASX_DONE);   /* control */
	ck_assert_int_eq(flushes, 1);
	flushes = 0;
	/* #UD comes before the CPL check */
	fake_cpl(F, 3);
	expect_fault(RUN(0x0f, 0x38, 0x82, 0x06), KL_X86_UD, false, "no 66 at CPL 3");
}
END_TEST

START_TEST(test_invpcid_gp)
{
	C->regs.rsi = DATA;
	put_desc(0, 0, 0);
	C->regs.rax = 2;
	fake_cpl(F, 3);
	expect_fault(RUN(INVPCID_RSI_RAX), KL_X86_GP, true, "CPL 3");
	fake_cpl(F, 0);
	C->regs.rax = 4;
	expect_fault(RUN(INVPCID_RSI_RAX), KL_X86_GP, true, "type 4");
	C->regs.rax = 1ull << 32;   /* 64-bit register operand in 64-bit mode */
	expect_fault(RUN(INVPCID_RSI_RAX), KL_X86_GP, true, "type 2^32");
	C->regs.rax = 1;
	put_desc(0, 0x1000, 0);
	expect_fault(RUN(INVPCID_RSI_RAX), KL_X86_GP, true, "PCID bit 12");
	put_desc(0, 1ull << 63, 0);
	expect_fault(RUN(INVPCID_RSI_RAX), KL_X86_GP, true, "descriptor bit 63");
	C->regs.rax = 0;
	put_desc(0, 1, 0x0000800000000000ull);
	expect_fault(RUN(INVPCID_RSI_RAX), KL_X86_GP, true, "type 0, non-canonical");
	put_desc(0, 1, 0xffff7fffffffffffull);
	expect_fault(RUN(INVPCID_RSI_RAX), KL_X86_GP, true, "type 0, non-canonical high");
	put_desc(0, 1, 0xffff800000000000ull);
	flushes = 0;
	ck_assert_int_eq(RUN(INVPCID_RSI_RAX), KL_ASX_DONE);   /* canonical: fine */
	ck_assert_int_eq(flushes, 1);
}
END_TEST

START_TEST(test_invpcid_pf)
{
	fake_cpl(F, 0);
	C->regs.rax = 2;
	C->regs.rsi = DATA + 0x1000;   /* unmapped */
	enum kl_asx_result r = RUN(INVPCID_RSI_RAX);
	expect_fault(r, KL_X86_PF, true, "unmapped descriptor");
	ck_assert_uint_eq(C->fault.error, 0);   /* supervisor read, not present */
	ck_assert_uint_eq(C->fault.cr2, DATA + 0x1000);
	/* the descriptor's second half on the unmapped page */
	C->regs.rsi = DATA + 0xff8;
	r = RUN(INVPCID_RSI_RAX);
	expect_fault(r, KL_X86_PF, true, "descriptor crossing a page");
	ck_assert_uint_eq(C->fault.cr2, DATA + 0x1000);
	/* SMAP: a supervisor read of a user page with AC clear */
	C->sregs.cr4 |= 1ull << 21;
	C->regs.rsi = DATA;
	put_desc(0, 0, 0);
	r = RUN(INVPCID_RSI_RAX);
	expect_fault(r, KL_X86_PF, true, "SMAP");
	ck_assert_uint_eq(C->fault.error, KL_PF_P);
	/* a descriptor outside guest RAM: not an exception (UNHANDLED) */
	C->sregs.cr4 &= ~(1ull << 21);
	fake_map(F, DATA + 0x2000, 0x40000000ull, 1, E_P | E_W);
	C->regs.rsi = DATA + 0x2000;
	ck_assert_int_eq(RUN(INVPCID_RSI_RAX), KL_ASX_UNHANDLED);
	ck_assert_int_eq(flushes, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("assist-syscall");
	TCase *tc = tcase_create("syscall");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_syscall_genuine);
	tcase_add_test(tc, test_syscall_star_rpl);
	tcase_add_test(tc, test_syscall_frame_flags);
	tcase_add_test(tc, test_syscall_frame_unaligned_page_cross);
	tcase_add_test(tc, test_syscall_jmp_with_if);
	tcase_add_test(tc, test_syscall_addresses);
	tcase_add_test(tc, test_syscall_cs_rpl0);
	tcase_add_test(tc, test_syscall_error_code);
	tcase_add_test(tc, test_syscall_no_insn);
	tcase_add_test(tc, test_syscall_supervisor_page);
	tcase_add_test(tc, test_syscall_rcx_below_2);
	tcase_add_test(tc, test_syscall_r11);
	tcase_add_test(tc, test_syscall_sfmask_without_if);
	tcase_add_test(tc, test_syscall_not_long_mode);
	tcase_add_test(tc, test_syscall_unmapped_stack);
	tcase_add_test(tc, test_syscall_lstar_zero);
	tcase_add_test(tc, test_idt_handler);
	suite_add_tcase(s, tc);
	TCase *cr = tcase_create("crfix");
	tcase_add_checked_fixture(cr, setup, teardown);
	tcase_add_test(cr, test_cr_site_cr4);
	tcase_add_test(cr, test_cr_site_cr3);
	tcase_add_test(cr, test_cr_site_not_mov);
	tcase_add_test(cr, test_gp_fixup_cr4);
	tcase_add_test(cr, test_gp_fixup_cr4_genuine);
	tcase_add_test(cr, test_gp_fixup_cr3);
	tcase_add_test(cr, test_gp_fixup_frame);
	tcase_add_test(cr, test_invpcid_ok);
	tcase_add_test(cr, test_invpcid_ud);
	tcase_add_test(cr, test_invpcid_gp);
	tcase_add_test(cr, test_invpcid_pf);
	suite_add_tcase(s, cr);
	return kl_check_run(s);
}
