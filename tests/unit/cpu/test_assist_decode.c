/* Unit tests for src/cpu/assist/decode.c and walk.c: the instruction
 * decoder on encodings written out by hand from the Intel SDM (vol. 2
 * 2.1-2.3, appendix A), and the guest page walk over hand-built page
 * tables (vol. 3 4.5-4.7). */
#include <check.h>
#include <cpuid.h>

#include "../kl_check.h"
#include "assist_fake.h"

static struct fake *F;
static struct kl_asx_cpu *C;

static void setup(void)
{
	F = fake_new();
	C = &F->cpu;
}

static void teardown(void)
{
	fake_free(F);
}

#define DEC(in, ...)                                                                  \
	({                                                                            \
		static const uint8_t b_[] = { __VA_ARGS__ };                          \
		kl_insn_decode(C, b_, sizeof(b_), (in));                              \
	})

/* ---- decoder ------------------------------------------------------------ */
START_TEST(test_gpr_order)
{
	/* 0-15: rax rcx rdx rbx rsp rbp rsi rdi r8-r15 */
	ck_assert_ptr_eq(kl_asx_gpr(C, 0), (uint64_t *)&C->regs.rax);
	ck_assert_ptr_eq(kl_asx_gpr(C, 1), (uint64_t *)&C->regs.rcx);
	ck_assert_ptr_eq(kl_asx_gpr(C, 2), (uint64_t *)&C->regs.rdx);
	ck_assert_ptr_eq(kl_asx_gpr(C, 3), (uint64_t *)&C->regs.rbx);
	ck_assert_ptr_eq(kl_asx_gpr(C, 4), (uint64_t *)&C->regs.rsp);
	ck_assert_ptr_eq(kl_asx_gpr(C, 5), (uint64_t *)&C->regs.rbp);
	ck_assert_ptr_eq(kl_asx_gpr(C, 6), (uint64_t *)&C->regs.rsi);
	ck_assert_ptr_eq(kl_asx_gpr(C, 7), (uint64_t *)&C->regs.rdi);
	ck_assert_ptr_eq(kl_asx_gpr(C, 8), (uint64_t *)&C->regs.r8);
	ck_assert_ptr_eq(kl_asx_gpr(C, 12), (uint64_t *)&C->regs.r12);
	ck_assert_ptr_eq(kl_asx_gpr(C, 15), (uint64_t *)&C->regs.r15);
}
END_TEST

START_TEST(test_prefixes_opsize)
{
	struct kl_insn in;
	/* popcnt rax, rbx */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x48, 0x0f, 0xb8, 0xc3), 0);
	ck_assert_uint_eq(in.len, 5);
	ck_assert_uint_eq(in.map, 1);
	ck_assert_uint_eq(in.op, 0xb8);
	ck_assert_uint_eq(in.pp, 2);
	ck_assert_uint_eq(in.rex, 0x48);
	ck_assert_uint_eq(in.opsize, 8);
	ck_assert_uint_eq(in.mod, 3);
	ck_assert_uint_eq(in.reg, 0);
	ck_assert_uint_eq(in.rm, 3);
	ck_assert(!in.has_mem);
	/* popcnt eax, ebx / popcnt ax, bx (66 either side of F3) */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0xc3), 0);
	ck_assert_uint_eq(in.opsize, 4);
	ck_assert_int_eq(DEC(&in, 0x66, 0xf3, 0x0f, 0xb8, 0xc3), 0);
	ck_assert_uint_eq(in.opsize, 2);
	ck_assert_uint_eq(in.pp, 2);
	ck_assert(in.p66 && in.pf3);
	ck_assert_int_eq(DEC(&in, 0xf3, 0x66, 0x0f, 0xb8, 0xc3), 0);
	ck_assert_uint_eq(in.opsize, 2);
	ck_assert_uint_eq(in.pp, 2);
	/* REX.W wins over 66 */
	ck_assert_int_eq(DEC(&in, 0x66, 0xf3, 0x48, 0x0f, 0xb8, 0xc3), 0);
	ck_assert_uint_eq(in.opsize, 8);
	/* F2 then F3: the last one is the mandatory prefix */
	ck_assert_int_eq(DEC(&in, 0xf2, 0xf3, 0x0f, 0xb8, 0xc3), 0);
	ck_assert_uint_eq(in.pp, 2);
	ck_assert_int_eq(DEC(&in, 0xf3, 0xf2, 0x0f, 0x38, 0xf1, 0xc3), 0);
	ck_assert_uint_eq(in.pp, 3);
	ck_assert_uint_eq(in.map, 2);
	/* a REX that is not last is ignored */
	ck_assert_int_eq(DEC(&in, 0x48, 0xf3, 0x0f, 0xb8, 0xc3), 0);
	ck_assert_uint_eq(in.rex, 0);
	ck_assert_uint_eq(in.opsize, 4);
	ck_assert_int_eq(DEC(&in, 0x48, 0x41, 0xf3, 0x0f, 0xb8, 0xc3), 0);
	ck_assert_uint_eq(in.rex, 0);
	ck_assert_uint_eq(in.rm, 3);
	/* LOCK cmpxchg16b [rdi] */
	C->regs.rdi = 0x1230;
	ck_assert_int_eq(DEC(&in, 0xf0, 0x48, 0x0f, 0xc7, 0x0f), 0);
	ck_assert(in.lock);
	ck_assert_uint_eq(in.reg, 1);
	ck_assert(in.has_mem);
	ck_assert_uint_eq(in.ea, 0x1230);
	ck_assert_uint_eq(in.len, 5);
	/* 0F 01 CA (clac): ModRM mod 3 reg 1 rm 2 */
	ck_assert_int_eq(DEC(&in, 0x0f, 0x01, 0xca), 0);
	ck_assert_uint_eq(in.modrm, 0xca);
	ck_assert_uint_eq(in.mod, 3);
	ck_assert_uint_eq(in.reg, 1);
	ck_assert_uint_eq(in.rm, 2);
	ck_assert_uint_eq(in.len, 3);
	/* one-byte opcodes without ModRM */
	ck_assert_int_eq(DEC(&in, 0xcc), 0);
	ck_assert_uint_eq(in.len, 1);
	ck_assert(!in.has_modrm);
	ck_assert_int_eq(DEC(&in, 0x9b), 0);
	ck_assert_int_eq(DEC(&in, 0x0f, 0x77), 0);
	ck_assert_uint_eq(in.len, 2);
	/* unknown opcodes */
	ck_assert_int_eq(DEC(&in, 0x90), -1);
	ck_assert_int_eq(DEC(&in, 0x0f, 0x05), -1);
	ck_assert_int_eq(DEC(&in, 0x0f, 0x38, 0x00, 0xc0), -1);
}
END_TEST

START_TEST(test_rex_modrm_sib)
{
	struct kl_insn in;
	C->regs.rax = 0x1000;
	C->regs.rbx = 0x2000;
	C->regs.rcx = 0x30;
	C->regs.rbp = 0x5000;
	C->regs.r8 = 0x80000;
	C->regs.r9 = 0x9;
	C->regs.r12 = 0xc00000;
	C->regs.r13 = 0xd000000;
	/* popcnt r9, r8?  F3 4D 0F B8 C8: REX W R B, reg 001|8 = r9, rm 000|8 = r8 */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x4d, 0x0f, 0xb8, 0xc8), 0);
	ck_assert_uint_eq(in.reg, 9);
	ck_assert_uint_eq(in.rm, 8);
	/* popcnt rax, [rax + r9*8]: REX.W.X, ModRM 04, SIB 11 001 000 */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x4a, 0x0f, 0xb8, 0x04, 0xc8), 0);
	ck_assert(in.has_sib);
	ck_assert_uint_eq(in.ea, 0x1000 + 9 * 8);
	ck_assert_uint_eq(in.len, 6);
	/* SIB index 100 without REX.X: no index */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x04, 0xe3), 0);   /* [rbx], scale 8 ignored */
	ck_assert_uint_eq(in.ea, 0x2000);
	/* SIB index 100 with REX.X: r12 */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x42, 0x0f, 0xb8, 0x04, 0xa0), 0);
	ck_assert_uint_eq(in.ea, 0x1000 + 0xc00000 * 4);
	/* SIB no base (mod 0, base 101): disp32, also with REX.B (not r13) */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x04, 0x25, 0x78, 0x56, 0x34, 0x12), 0);
	ck_assert_uint_eq(in.ea, 0x12345678);
	ck_assert_uint_eq(in.len, 9);
	ck_assert_int_eq(DEC(&in, 0xf3, 0x41, 0x0f, 0xb8, 0x04, 0x25, 0x78, 0x56, 0x34, 0x12), 0);
	ck_assert_uint_eq(in.ea, 0x12345678);
	/* disp32 is sign-extended */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x04, 0x25, 0x00, 0x00, 0x00, 0x80), 0);
	ck_assert_uint_eq(in.ea, 0xffffffff80000000ull);
	/* no base, index rcx*4: [rcx*4 + 0x100] */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x04, 0x8d, 0x00, 0x01, 0x00, 0x00), 0);
	ck_assert_uint_eq(in.ea, 0x30 * 4 + 0x100);
	/* base 101 with mod 1: [rbp + disp8]; with REX.B: [r13 + disp8] */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x44, 0x25, 0x08), 0);
	ck_assert_uint_eq(in.ea, 0x5008);
	ck_assert_int_eq(DEC(&in, 0xf3, 0x41, 0x0f, 0xb8, 0x44, 0x25, 0x08), 0);
	ck_assert_uint_eq(in.ea, 0xd000008);
	/* [r12] needs a SIB (rm 100 with REX.B) */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x41, 0x0f, 0xb8, 0x04, 0x24), 0);
	ck_assert_uint_eq(in.ea, 0xc00000);
	/* negative disp8: [rbx - 16] */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x43, 0xf0), 0);
	ck_assert_uint_eq(in.ea, 0x2000 - 16);
	ck_assert_int_eq(in.disp, -16);
	/* disp32 with a base: [rbx + 0x12345] */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x83, 0x45, 0x23, 0x01, 0x00), 0);
	ck_assert_uint_eq(in.ea, 0x2000 + 0x12345);
	ck_assert_uint_eq(in.len, 8);
	/* mod 0 rm 101 with REX.B is RIP-relative, not [r13] */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x41, 0x0f, 0xb8, 0x05, 0x10, 0, 0, 0), 0);
	ck_assert(in.rip_rel);
	ck_assert_uint_eq(in.ea, C->regs.rip + 9 + 0x10);
}
END_TEST

START_TEST(test_rip_relative)
{
	struct kl_insn in;
	C->regs.rip = 0xffffffff81234000ull;
	/* pshufd xmm0, [rip + 0x10], 0x1b: relative to the end, after the imm8 */
	ck_assert_int_eq(DEC(&in, 0x66, 0x0f, 0x70, 0x05, 0x10, 0x00, 0x00, 0x00, 0x1b), 0);
	ck_assert_uint_eq(in.len, 9);
	ck_assert(in.rip_rel);
	ck_assert_uint_eq(in.ea, 0xffffffff81234000ull + 9 + 0x10);
	ck_assert_int_eq(in.imm, 0x1b);
	ck_assert_uint_eq(in.imm_len, 1);
	/* rorx eax, [rip - 0x20], 0x85 (VEX.LZ.F2.0F3A.W0 F0 /r ib) */
	ck_assert_int_eq(DEC(&in, 0xc4, 0xe3, 0x7b, 0xf0, 0x05, 0xe0, 0xff, 0xff, 0xff, 0x85), 0);
	ck_assert_uint_eq(in.len, 10);
	ck_assert_uint_eq(in.map, 3);
	ck_assert_uint_eq(in.ea, 0xffffffff81234000ull + 10 - 0x20);
	ck_assert_int_eq(in.imm, (int8_t)0x85);
	/* with 67: the sum is truncated to 32 bits */
	ck_assert_int_eq(DEC(&in, 0x67, 0xf3, 0x0f, 0xb8, 0x05, 0x10, 0x00, 0x00, 0x00), 0);
	ck_assert_uint_eq(in.ea, 0x81234000u + 9 + 0x10);
	/* GS: base added to the RIP-relative address */
	C->sregs.gs.base = 0x100000000ull;
	ck_assert_int_eq(DEC(&in, 0x65, 0xf3, 0x0f, 0xb8, 0x05, 0x10, 0x00, 0x00, 0x00), 0);
	ck_assert_uint_eq(in.ea, 0xffffffff81234000ull + 9 + 0x10 + 0x100000000ull);
}
END_TEST

START_TEST(test_addrsize_segments)
{
	struct kl_insn in;
	C->regs.rbx = 0x100001000ull;
	C->regs.rsi = 0xfffffff0;
	C->sregs.fs.base = 0x7f0000000000ull;
	C->sregs.gs.base = 0xffff888000000000ull;
	C->sregs.es.base = 0x1111;
	C->sregs.ds.base = 0x2222;
	C->sregs.ss.base = 0x3333;
	/* 67: [ebx] */
	ck_assert_int_eq(DEC(&in, 0x67, 0xf3, 0x0f, 0xb8, 0x03), 0);
	ck_assert_uint_eq(in.addrsize, 4);
	ck_assert_uint_eq(in.ea, 0x1000);
	/* 67: [esi + 0x20] wraps at 4G */
	ck_assert_int_eq(DEC(&in, 0x67, 0xf3, 0x0f, 0xb8, 0x46, 0x20), 0);
	ck_assert_uint_eq(in.ea, 0x10);
	/* without 67 it does not */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x46, 0x20), 0);
	ck_assert_uint_eq(in.ea, 0x100000010ull);
	/* FS and GS bases apply in 64-bit mode, ES/DS/SS/CS do not */
	ck_assert_int_eq(DEC(&in, 0x64, 0xf3, 0x0f, 0xb8, 0x03), 0);
	ck_assert_uint_eq(in.ea, 0x7f0100001000ull);
	ck_assert_uint_eq(in.seg, 0x64);
	ck_assert_int_eq(DEC(&in, 0xf3, 0x65, 0x48, 0x0f, 0xb8, 0x03), 0);
	ck_assert_uint_eq(in.ea, 0xffff888000000000ull + 0x100001000ull);
	ck_assert_int_eq(DEC(&in, 0x26, 0xf3, 0x0f, 0xb8, 0x03), 0);
	ck_assert_uint_eq(in.ea, 0x100001000ull);
	ck_assert_int_eq(DEC(&in, 0x36, 0xf3, 0x0f, 0xb8, 0x03), 0);
	ck_assert_uint_eq(in.ea, 0x100001000ull);
	/* last segment prefix wins; 67 with FS: base + 32-bit offset */
	ck_assert_int_eq(DEC(&in, 0x65, 0x64, 0x67, 0xf3, 0x0f, 0xb8, 0x03), 0);
	ck_assert_uint_eq(in.ea, 0x7f0000001000ull);
}
END_TEST

START_TEST(test_vex)
{
	struct kl_insn in;
	C->regs.rax = 0x4000;
	C->regs.r8 = 0x10000;
	C->regs.r9 = 0x3;
	/* andn rax, rcx, rbx: C4 E2 F0 F2 C3 (VEX.LZ.0F38.W1, vvvv = ~0001) */
	ck_assert_int_eq(DEC(&in, 0xc4, 0xe2, 0xf0, 0xf2, 0xc3), 0);
	ck_assert(in.vex);
	ck_assert_uint_eq(in.map, 2);
	ck_assert_uint_eq(in.op, 0xf2);
	ck_assert_uint_eq(in.vex_w, 1);
	ck_assert_uint_eq(in.vex_vvvv, 1);
	ck_assert_uint_eq(in.vex_l, 0);
	ck_assert_uint_eq(in.pp, 0);
	ck_assert_uint_eq(in.opsize, 8);
	ck_assert_uint_eq(in.reg, 0);
	ck_assert_uint_eq(in.rm, 3);
	ck_assert_uint_eq(in.len, 5);
	ck_assert_uint_eq(in.rex, 0);
	/* shlx rax, [r8 + r9*2], rcx: C4 82 F1 F7 04 48 (X and B inverted 0) */
	ck_assert_int_eq(DEC(&in, 0xc4, 0x82, 0xf1, 0xf7, 0x04, 0x48), 0);
	ck_assert_uint_eq(in.pp, 1);
	ck_assert_uint_eq(in.ea, 0x10000 + 3 * 2);
	ck_assert_uint_eq(in.vex_vvvv, 1);
	/* bzhi r11d, r10d, r15d: R̄=0 B̄=0, W0, vvvv = ~1111 = 0000 -> 15 */
	ck_assert_int_eq(DEC(&in, 0xc4, 0x42, 0x00, 0xf5, 0xda), 0);
	ck_assert_uint_eq(in.reg, 11);
	ck_assert_uint_eq(in.rm, 10);
	ck_assert_uint_eq(in.vex_vvvv, 15);
	ck_assert_uint_eq(in.opsize, 4);
	/* 2-byte VEX: vzeroupper C5 F8 77; vldmxcsr [rax] with R̄=0: C5 78 AE 10 */
	ck_assert_int_eq(DEC(&in, 0xc5, 0xf8, 0x77), 0);
	ck_assert(in.vex);
	ck_assert_uint_eq(in.map, 1);
	ck_assert_uint_eq(in.op, 0x77);
	ck_assert_uint_eq(in.len, 3);
	ck_assert_int_eq(DEC(&in, 0xc5, 0x78, 0xae, 0x10), 0);
	ck_assert_uint_eq(in.reg, 10);
	ck_assert_uint_eq(in.ea, 0x4000);
	ck_assert_uint_eq(in.vex_vvvv, 0);
	/* L and pp of the 2-byte form: C5 FD (L1, pp 01) */
	ck_assert_int_eq(DEC(&in, 0xc5, 0xfd, 0x77), 0);
	ck_assert_uint_eq(in.vex_l, 1);
	ck_assert_uint_eq(in.pp, 1);
	/* 66 / F3 / REX / LOCK before VEX: #UD */
	ck_assert_int_eq(DEC(&in, 0x66, 0xc4, 0xe2, 0xf0, 0xf2, 0xc3), -1);
	ck_assert_int_eq(DEC(&in, 0xf3, 0xc5, 0xf8, 0x77), -1);
	ck_assert_int_eq(DEC(&in, 0x48, 0xc4, 0xe2, 0xf0, 0xf2, 0xc3), -1);
	ck_assert_int_eq(DEC(&in, 0xf0, 0xc5, 0xf8, 0x77), -1);
	/* map 0 or > 3 in VEX: not decoded */
	ck_assert_int_eq(DEC(&in, 0xc4, 0xe0, 0xf0, 0xf2, 0xc3), -1);
	ck_assert_int_eq(DEC(&in, 0xc4, 0xe4, 0xf0, 0xf2, 0xc3), -1);
}
END_TEST

/* Every proper prefix of an encoding is -1 (never reads past n). */
START_TEST(test_truncated_and_long)
{
	static const uint8_t enc[][16] = {
		{ 10, 0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x25, 0x78, 0x56, 0x34, 0x12 },
		{ 9, 0x66, 0x0f, 0x70, 0x05, 0x10, 0x00, 0x00, 0x00, 0x1b },
		{ 10, 0xc4, 0xe3, 0x7b, 0xf0, 0x05, 0xe0, 0xff, 0xff, 0xff, 0x85 },
		{ 4, 0xc5, 0x78, 0xae, 0x10 },
		{ 6, 0xf3, 0x0f, 0xb8, 0x44, 0x25, 0x08 },
		{ 5, 0xf0, 0x48, 0x0f, 0xc7, 0x0f },
		{ 3, 0x0f, 0x01, 0xca },
		{ 1, 0xcc },
	};
	struct kl_insn in;
	for (size_t k = 0; k < G_N_ELEMENTS(enc); k++) {
		size_t len = enc[k][0];
		/* a heap copy of exactly n bytes: ASan catches any read past it */
		for (size_t n = 0; n <= len; n++) {
			uint8_t *b = g_memdup2(enc[k] + 1, n ? n : 1);
			int r = kl_insn_decode(C, b, n, &in);
			ck_assert_msg(r == (n == len ? 0 : -1), "enc %zu n %zu: %d", k, n, r);
			if (n == len)
				ck_assert_uint_eq(in.len, len);
			g_free(b);
		}
	}
	/* 15 bytes: 11 x 66 + F3 0F B8 C3 is fine, one more prefix is not */
	uint8_t b[20];
	memset(b, 0x66, sizeof(b));
	memcpy(b + 11, (const uint8_t[]){ 0xf3, 0x0f, 0xb8, 0xc3 }, 4);
	ck_assert_int_eq(kl_insn_decode(C, b, 15, &in), 0);
	ck_assert_uint_eq(in.len, 15);
	memset(b, 0x66, sizeof(b));
	memcpy(b + 12, (const uint8_t[]){ 0xf3, 0x0f, 0xb8, 0xc3 }, 4);
	ck_assert_int_eq(kl_insn_decode(C, b, 16, &in), -1);
	/* a 16-byte run of prefixes */
	memset(b, 0x2e, sizeof(b));
	ck_assert_int_eq(kl_insn_decode(C, b, sizeof(b), &in), -1);
}
END_TEST

START_TEST(test_mode32)
{
	struct kl_insn in;
	C->sregs.efer = 0;
	C->sregs.cr4 = 0;
	C->sregs.cs.l = 0;
	C->sregs.cs.db = 1;
	C->sregs.ds.base = 0x10000;
	C->sregs.ss.base = 0x20000;
	C->sregs.es.base = 0x30000;
	C->regs.rbx = 0x100;
	C->regs.rbp = 0x200;
	C->regs.rip = 0xc0001000;
	/* 40 is INC EAX here, not REX: not an opcode we decode */
	ck_assert_int_eq(DEC(&in, 0x40), -1);
	/* mod 0 rm 101: absolute disp32 (not RIP-relative), DS */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x05, 0x00, 0x10, 0x00, 0x00), 0);
	ck_assert(!in.rip_rel);
	ck_assert_uint_eq(in.ea, 0x11000);
	/* [ebp + 8] defaults to SS, [ebx] to DS, ES override */
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x45, 0x08), 0);
	ck_assert_uint_eq(in.ea, 0x20208);
	ck_assert_int_eq(DEC(&in, 0xf3, 0x0f, 0xb8, 0x03), 0);
	ck_assert_uint_eq(in.ea, 0x10100);
	ck_assert_int_eq(DEC(&in, 0x26, 0xf3, 0x0f, 0xb8, 0x03), 0);
	ck_assert_uint_eq(in.ea, 0x30100);
	ck_assert_uint_eq(in.opsize, 4);
	ck_assert_uint_eq(in.addrsize, 4);
	/* 66: 16-bit operand; 67: 16-bit addressing (not decoded) */
	ck_assert_int_eq(DEC(&in, 0x66, 0xf3, 0x0f, 0xb8, 0xc3), 0);
	ck_assert_uint_eq(in.opsize, 2);
	ck_assert_int_eq(DEC(&in, 0x67, 0xf3, 0x0f, 0xb8, 0x03), -1);
	/* C4 with ModRM.mod != 11 is LES; with 11 it is VEX (R X B forced 0) */
	ck_assert_int_eq(DEC(&in, 0xc4, 0x02, 0xf0, 0xf2, 0xc3), -1);
	ck_assert_int_eq(DEC(&in, 0xc4, 0xe2, 0xf0, 0xf2, 0xc3), 0);
	ck_assert_uint_eq(in.opsize, 4);   /* W ignored */
	ck_assert_uint_eq(in.vex_vvvv, 1);
}
END_TEST

/* Random byte strings biased towards prefixes and the opcodes we know:
 * the result is 0 or -1, a decoded length fits n and 15, the same bytes
 * cut to len decode alike and cut to len-1 fail; executing them never
 * touches memory outside the buffers (ASan) nor moves RIP unless DONE. */
START_TEST(test_decode_random)
{
	static const uint8_t pick[] = { 0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x64, 0x65, 0x2e, 0x48,
					0x41, 0x4f, 0xc4, 0xc5, 0x0f, 0x38, 0x3a, 0x01, 0xae,
					0xc7, 0xb8, 0xbc, 0xbd, 0xf0, 0xf1, 0xf5, 0xf7, 0xcc,
					0x9b, 0xdb, 0xd9, 0xdd, 0xdf, 0x77, 0x70, 0x04, 0x05,
					0x25, 0x44, 0x84, 0xc3, 0xe2, 0xca, 0xf9 };
	GRand *rnd = g_rand_new_with_seed(7);
	int decoded = 0;
	fake_map(F, 0, 0x200000, 2, E_P | E_W | E_U);
	for (int k = 0; k < 200000; k++) {
		uint8_t b[20];
		size_t n = g_rand_int_range(rnd, 0, 21);
		for (size_t i = 0; i < n; i++)
			b[i] = g_rand_boolean(rnd) ? pick[g_rand_int_range(rnd, 0, sizeof(pick))]
						   : (uint8_t)g_rand_int(rnd);
		for (unsigned r = 0; r < 16; r++)
			*kl_asx_gpr(C, r) = g_rand_int_range(rnd, 0, 0x400000);
		C->regs.rip = 0x1000;
		uint8_t *copy = g_memdup2(b, n ? n : 1);
		struct kl_insn in, in2;
		int r = kl_insn_decode(C, copy, n, &in);
		ck_assert(r == 0 || r == -1);
		if (r == 0) {
			decoded++;
			ck_assert_uint_le(in.len, n);
			ck_assert_uint_le(in.len, 15);
			ck_assert_int_eq(kl_insn_decode(C, copy, in.len, &in2), 0);
			ck_assert_uint_eq(in2.len, in.len);
			ck_assert_uint_eq(in2.ea, in.ea);
			ck_assert_int_eq(kl_insn_decode(C, copy, in.len - 1, &in2), -1);
		}
		struct kvm_regs before = C->regs;
		C->sregs.cr4 |= 1u << 22;
		enum kl_asx_result x = kl_asx_execute(C, copy, n);
		if (x != KL_ASX_DONE && !(x == KL_ASX_FAULT && C->fault.trap))
			ck_assert_uint_eq(C->regs.rip, before.rip);
		g_free(copy);
	}
	ck_assert_int_gt(decoded, 1000);
	g_rand_free(rnd);
}
END_TEST

/* ---- page walk ------------------------------------------------------------ */
#define LA 0x00007f1234567000ull
#define PA 0x201000ull

static void expect_pf(uint64_t la, unsigned acc, uint32_t err)
{
	uint64_t gpa = 0;
	memset(&C->fault, 0, sizeof(C->fault));
	ck_assert_int_eq(kl_asx_translate(C, la, acc, &gpa), -1);
	ck_assert_uint_eq(C->fault.vector, 14);
	ck_assert(C->fault.has_error);
	ck_assert_msg(C->fault.error == err, "error %#x, want %#x", C->fault.error, err);
	ck_assert_uint_eq(C->fault.cr2, la);
}

static void expect_ok(uint64_t la, unsigned acc, uint64_t want)
{
	uint64_t gpa = 0;
	int r = kl_asx_translate(C, la, acc, &gpa);
	ck_assert_msg(r == 0, "la %#llx acc %u: vector %u error %#x", (unsigned long long)la, acc,
		      C->fault.vector, C->fault.error);
	ck_assert_uint_eq(gpa, want);
}

START_TEST(test_walk_sizes_ad)
{
	uint64_t *pte = fake_map(F, LA, PA, 1, E_P | E_W);
	expect_ok(LA + 0x123, 0, PA + 0x123);
	/* A set at all four levels, D not on a read */
	ck_assert(*pte & E_A);
	ck_assert(!(*pte & E_D));
	ck_assert(*fake_entry(F, LA, 2) & E_A);
	ck_assert(*fake_entry(F, LA, 3) & E_A);
	ck_assert(*fake_entry(F, LA, 4) & E_A);
	ck_assert(!(*fake_entry(F, LA, 2) & E_D));
	expect_ok(LA + 8, KL_ACC_WRITE, PA + 8);
	ck_assert(*pte & E_D);
	ck_assert_uint_eq(*pte & 0x000ffffffffff000ull, PA);
	/* 2M page: offset bits 20:0 */
	uint64_t *pde = fake_map(F, 0x40000000ull, 0x400000, 2, E_P | E_W);
	expect_ok(0x40000000ull + 0x1abcde, KL_ACC_WRITE, 0x400000 + 0x1abcde);
	ck_assert((*pde & (E_A | E_D)) == (E_A | E_D));
	/* 1G page: offset bits 29:0 */
	fake_map(F, 0xffff880000000000ull, 0x40000000ull, 3, E_P | E_W);
	expect_ok(0xffff880000000000ull + 0x3fffffff, 0, 0x7fffffffull);
	/* paging off: identity */
	C->sregs.cr0 &= ~(1ull << 31);
	C->sregs.efer &= ~(1ull << 10);
	expect_ok(0x12345678, 0, 0x12345678);
}
END_TEST

START_TEST(test_walk_5level)
{
	C->sregs.cr4 |= 1u << 12;
	uint64_t la = 0x00ff123456789000ull;   /* bits 56:48 used, canonical with LA57 */
	fake_map(F, la, PA, 1, E_P);
	expect_ok(la + 5, 0, PA + 5);
	ck_assert(*fake_entry(F, la, 5) & E_A);
	/* 4-level canonical limits do not apply, 57-bit ones do */
	expect_pf(0x0000900000000000ull, 0, 0);
	uint64_t gpa;
	ck_assert_int_eq(kl_asx_translate(C, 0x0100000000000000ull, 0, &gpa), -1);
	ck_assert_uint_eq(C->fault.vector, 13);
}
END_TEST

START_TEST(test_walk_not_present_rw)
{
	expect_pf(LA, 0, 0);
	expect_pf(LA, KL_ACC_WRITE, KL_PF_W);
	expect_pf(LA, KL_ACC_FETCH, KL_PF_I);   /* NXE: I reported */
	fake_cpl(F, 3);
	expect_pf(LA, 0, KL_PF_U);
	fake_cpl(F, 0);
	/* present PML4E, PDPTE not present */
	fake_entry(F, LA, 3);
	expect_pf(LA + 7, KL_ACC_WRITE, KL_PF_W);

	/* read-only page */
	uint64_t *pte = fake_map(F, LA, PA, 1, E_P | E_U);
	expect_ok(LA, 0, PA);
	expect_pf(LA, KL_ACC_WRITE, KL_PF_P | KL_PF_W);   /* CR0.WP */
	ck_assert(!(*pte & E_D));
	C->sregs.cr0 &= ~(1ull << 16);
	expect_ok(LA, KL_ACC_WRITE, PA);                  /* no WP: supervisor may write */
	ck_assert(*pte & E_D);
	fake_cpl(F, 3);
	expect_pf(LA, KL_ACC_WRITE, KL_PF_P | KL_PF_W | KL_PF_U);   /* user never */
	/* read-only in an upper level */
	*pte |= E_W;
	*fake_entry(F, LA, 3) &= ~E_W;
	expect_pf(LA, KL_ACC_WRITE, KL_PF_P | KL_PF_W | KL_PF_U);
	/* supervisor page */
	*fake_entry(F, LA, 3) |= E_W;
	expect_ok(LA, KL_ACC_WRITE, PA);
	*fake_entry(F, LA, 2) &= ~E_U;
	expect_pf(LA, 0, KL_PF_P | KL_PF_U);
	/* implicit supervisor access at CPL 3: allowed, U clear in the error */
	expect_ok(LA, KL_ACC_IMPLICIT_SV, PA);
}
END_TEST

START_TEST(test_walk_smep_smap_nx)
{
	uint64_t *pte = fake_map(F, LA, PA, 1, E_P | E_W | E_U);
	/* SMEP: supervisor fetch from a user page */
	expect_ok(LA, KL_ACC_FETCH, PA);
	C->sregs.cr4 |= 1u << 20;
	expect_pf(LA, KL_ACC_FETCH, KL_PF_P | KL_PF_I);
	fake_cpl(F, 3);
	expect_ok(LA, KL_ACC_FETCH, PA);
	fake_cpl(F, 0);
	C->sregs.cr4 &= ~(1u << 20);
	/* SMAP: supervisor data access to a user page */
	C->sregs.cr4 |= 1u << 21;
	expect_pf(LA, 0, KL_PF_P);
	expect_pf(LA, KL_ACC_WRITE, KL_PF_P | KL_PF_W);
	C->regs.rflags |= 1u << 18;   /* AC */
	expect_ok(LA, 0, PA);
	expect_ok(LA, KL_ACC_WRITE, PA);
	expect_pf(LA, KL_ACC_IMPLICIT_SV, KL_PF_P);   /* AC does not help implicit accesses */
	fake_cpl(F, 3);
	C->regs.rflags &= ~(1u << 18);
	expect_ok(LA, 0, PA);                  /* no SMAP for user accesses */
	expect_pf(LA, KL_ACC_IMPLICIT_SV, KL_PF_P);
	fake_cpl(F, 0);
	/* SMAP does not apply to supervisor pages */
	*pte &= ~E_U;
	expect_ok(LA, 0, PA);
	/* NX */
	*pte |= E_XD;
	expect_ok(LA, 0, PA);
	expect_pf(LA, KL_ACC_FETCH, KL_PF_P | KL_PF_I);
	*pte &= ~E_XD;
	*fake_entry(F, LA, 4) |= E_XD;   /* in any level */
	expect_pf(LA, KL_ACC_FETCH, KL_PF_P | KL_PF_I);
}
END_TEST

START_TEST(test_walk_reserved)
{
	uint64_t *pte = fake_map(F, LA, PA, 1, E_P | E_W);
	/* XD without EFER.NXE is reserved (and I is not reported) */
	C->sregs.efer &= ~(1ull << 11);
	*pte |= E_XD;
	expect_pf(LA, 0, KL_PF_P | KL_PF_RSVD);
	expect_pf(LA, KL_ACC_FETCH, KL_PF_P | KL_PF_RSVD);
	C->sregs.efer |= 1ull << 11;
	expect_ok(LA, 0, PA);
	*pte &= ~E_XD;
	/* PS in a PML4E */
	uint64_t *pml4e = fake_entry(F, LA, 4);
	*pml4e = (*pml4e & ~E_A) | E_PS;
	expect_pf(LA, KL_ACC_WRITE, KL_PF_P | KL_PF_W | KL_PF_RSVD);
	ck_assert(!(*pml4e & E_A));   /* a faulting walk sets no A bit */
	*pml4e &= ~E_PS;
	/* 2M page with bit 13 set (bits 20:13 reserved) */
	uint64_t *pde = fake_map(F, 0x40000000ull, 0x400000, 2, E_P);
	*pde |= 1ull << 13;
	expect_pf(0x40000000ull, 0, KL_PF_P | KL_PF_RSVD);
	/* bit 12 of a 2M entry is PAT, not reserved */
	*pde = 0x400000 | E_P | E_PS | (1ull << 12);
	expect_ok(0x40000000ull, 0, 0x400000);
	/* 1G page with bit 29 set */
	uint64_t *pdpte = fake_map(F, 0xffff880000000000ull, 0x40000000ull, 3, E_P);
	*pdpte |= 1ull << 29;
	expect_pf(0xffff880000000000ull, 0, KL_PF_P | KL_PF_RSVD);
	/* an address bit at or above MAXPHYADDR */
	unsigned a = 52, b, c, d;
	__get_cpuid(0x80000008, &a, &b, &c, &d);
	if ((a & 0xff) < 52) {
		*pte |= 1ull << 51;
		expect_pf(LA, 0, KL_PF_P | KL_PF_RSVD);
		*pte &= ~(1ull << 51);
		*pte |= 1ull << (a & 0xff);
		expect_pf(LA, 0, KL_PF_P | KL_PF_RSVD);
		*pte &= ~(1ull << (a & 0xff));
	}
	/* bits 62:52 are ignored */
	*pte |= 1ull << 55;
	expect_ok(LA, 0, PA);
}
END_TEST

START_TEST(test_walk_canonical_not_ram)
{
	uint64_t gpa;
	ck_assert_int_eq(kl_asx_translate(C, 0x0000800000000000ull, 0, &gpa), -1);
	ck_assert_uint_eq(C->fault.vector, 13);
	ck_assert(C->fault.has_error);
	ck_assert_uint_eq(C->fault.error, 0);
	ck_assert_int_eq(kl_asx_translate(C, 0xffff7fffffffffffull, 0, &gpa), -1);
	ck_assert_uint_eq(C->fault.vector, 13);
	uint8_t buf[8];
	ck_assert_int_eq(kl_asx_read(C, 0x0000800000000000ull, buf, 8, 0), -1);
	ck_assert_uint_eq(C->fault.vector, 13);
	/* a page table outside RAM: a host-side problem, not a #PF */
	*fake_entry(F, LA, 4) = 0x80000000ull | E_P | E_W;
	ck_assert_int_eq(kl_asx_translate(C, LA, 0, &gpa), -1);
	ck_assert_uint_eq(C->fault.vector, 0xff);
	ck_assert_int_eq(kl_asx_read(C, LA, buf, 8, 0), -2);
	ck_assert_int_eq(kl_asx_write(C, LA, buf, 8, 0), -2);
	ck_assert_ptr_null(kl_asx_ptr(C, LA, 8, 0));
	ck_assert_uint_eq(C->fault.vector, 0xff);
	/* CR3 outside RAM */
	C->sregs.cr3 = 0x90000000ull;
	ck_assert_int_eq(kl_asx_read(C, LA, buf, 8, 0), -2);
}
END_TEST

START_TEST(test_read_write_pages)
{
	/* two data pages, the second one read-only, then a not-present one */
	fake_map(F, LA, PA, 1, E_P | E_W);
	uint64_t *pte2 = fake_map(F, LA + 4096, PA + 0x3000, 1, E_P);
	memcpy(F->ram + PA + 4092, "abcd", 4);
	memcpy(F->ram + PA + 0x3000, "efgh", 4);
	char buf[16] = { 0 };
	ck_assert_int_eq(kl_asx_read(C, LA + 4092, buf, 8, 0), 0);
	ck_assert_str_eq(buf, "abcdefgh");
	/* page-crossing write into the read-only page: nothing written, CR2 =
	 * the first byte of the second page */
	ck_assert_int_eq(kl_asx_write(C, LA + 4092, "ABCDEFGH", 8, 0), -1);
	ck_assert_uint_eq(C->fault.vector, 14);
	ck_assert_uint_eq(C->fault.error, KL_PF_P | KL_PF_W);
	ck_assert_uint_eq(C->fault.cr2, LA + 4096);
	ck_assert_int_eq(memcmp(F->ram + PA + 4092, "abcd", 4), 0);
	*pte2 |= E_W;
	ck_assert_int_eq(kl_asx_write(C, LA + 4092, "ABCDEFGH", 8, 0), 0);
	ck_assert_int_eq(memcmp(F->ram + PA + 4092, "ABCD", 4), 0);
	ck_assert_int_eq(memcmp(F->ram + PA + 0x3000, "EFGH", 4), 0);
	/* page-crossing read into a not-present page */
	ck_assert_int_eq(kl_asx_read(C, LA + 0x1ffe, buf, 4, 0), -1);
	ck_assert_uint_eq(C->fault.error, 0);
	ck_assert_uint_eq(C->fault.cr2, LA + 0x2000);
	/* a data page outside RAM (MMIO) */
	fake_map(F, LA + 0x2000, 0xfee00000ull, 1, E_P | E_W);
	ck_assert_int_eq(kl_asx_read(C, LA + 0x2000, buf, 4, 0), -2);
	ck_assert_int_eq(kl_asx_write(C, LA + 0x1ffe, "xyzw", 4, 0), -2);
	ck_assert_int_eq(memcmp(F->ram + PA + 0x3ffe, "\0\0", 2), 0);
	/* kl_asx_ptr */
	uint8_t *p = kl_asx_ptr(C, LA + 16, 16, KL_ACC_WRITE);
	ck_assert_ptr_eq(p, F->ram + PA + 16);
	ck_assert_ptr_null(kl_asx_ptr(C, LA + 4090, 16, 0));   /* crosses a page */
	ck_assert_uint_eq(C->fault.vector, 0xff);
	ck_assert_ptr_null(kl_asx_ptr(C, LA + 0x5000, 8, 0));
	ck_assert_uint_eq(C->fault.vector, 14);
	ck_assert_uint_eq(C->fault.cr2, LA + 0x5000);
}
END_TEST

/* 32-bit paging modes: PAE (3 levels, 8-byte entries) and 2-level 4-byte. */
START_TEST(test_walk_legacy)
{
	C->sregs.efer = 0;
	C->sregs.cs.l = 0;
	C->sregs.cs.db = 1;
	/* PAE: PDPT at 0x150000 (32-byte aligned), PD 0x151000, PT 0x152000 */
	C->sregs.cr4 = 1u << 5;
	C->sregs.cr3 = 0x150020;
	uint64_t la = 0xc0403000;   /* PDPTE 3, PDE 2, PTE 3 */
	*(uint64_t *)(F->ram + 0x150020 + 3 * 8) = 0x151000 | E_P;
	*(uint64_t *)(F->ram + 0x151000 + 2 * 8) = 0x152000 | E_P | E_W;
	*(uint64_t *)(F->ram + 0x152000 + 3 * 8) = 0x205000 | E_P | E_W;
	expect_ok(la + 0x10, KL_ACC_WRITE, 0x205010);
	ck_assert(*(uint64_t *)(F->ram + 0x152000 + 3 * 8) & E_D);
	/* PDPTE reserved bit 1 (R/W does not exist there) */
	*(uint64_t *)(F->ram + 0x150020 + 3 * 8) |= E_W;
	expect_pf(la, 0, KL_PF_P | KL_PF_RSVD);
	*(uint64_t *)(F->ram + 0x150020 + 3 * 8) &= ~E_W;
	/* XD without NXE: reserved */
	*(uint64_t *)(F->ram + 0x152000 + 3 * 8) |= E_XD;
	expect_pf(la, 0, KL_PF_P | KL_PF_RSVD);
	*(uint64_t *)(F->ram + 0x152000 + 3 * 8) &= ~E_XD;
	/* 2M PDE */
	*(uint64_t *)(F->ram + 0x151000 + 5 * 8) = 0x400000 | E_P | E_PS;
	expect_ok(0xc0a12345, 0, 0x412345);

	/* 2-level: PD at 0x160000, PT at 0x161000 */
	C->sregs.cr4 = 0;
	C->sregs.cr3 = 0x160000;
	la = 0x80403000;   /* PDE 0x201, PTE 3 */
	*(uint32_t *)(F->ram + 0x160000 + 0x201 * 4) = 0x161000 | E_P | E_W | E_U;
	*(uint32_t *)(F->ram + 0x161000 + 3 * 4) = 0x206000 | E_P | E_U;
	expect_ok(la + 0xabc, 0, 0x206abc);
	ck_assert(*(uint32_t *)(F->ram + 0x160000 + 0x201 * 4) & E_A);
	expect_pf(la, KL_ACC_WRITE, KL_PF_P | KL_PF_W);
	fake_cpl(F, 3);
	expect_pf(la, KL_ACC_WRITE, KL_PF_P | KL_PF_W | KL_PF_U);
	fake_cpl(F, 0);
	/* 4M page with CR4.PSE; PS is ignored without it */
	*(uint32_t *)(F->ram + 0x160000 + 0x300 * 4) = 0x400000 | E_P | E_PS;
	C->sregs.cr4 = 1u << 4;
	expect_ok(0xc0123456, 0, 0x523456);
	/* bit 21 of a 4M PDE is reserved */
	*(uint32_t *)(F->ram + 0x160000 + 0x300 * 4) |= 1u << 21;
	expect_pf(0xc0123456, 0, KL_PF_P | KL_PF_RSVD);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("assist-decode");
	TCase *tc = tcase_create("decode");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_gpr_order);
	tcase_add_test(tc, test_prefixes_opsize);
	tcase_add_test(tc, test_rex_modrm_sib);
	tcase_add_test(tc, test_rip_relative);
	tcase_add_test(tc, test_addrsize_segments);
	tcase_add_test(tc, test_vex);
	tcase_add_test(tc, test_truncated_and_long);
	tcase_add_test(tc, test_mode32);
	tcase_add_test(tc, test_decode_random);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	tc = tcase_create("walk");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_walk_sizes_ad);
	tcase_add_test(tc, test_walk_5level);
	tcase_add_test(tc, test_walk_not_present_rw);
	tcase_add_test(tc, test_walk_smep_smap_nx);
	tcase_add_test(tc, test_walk_reserved);
	tcase_add_test(tc, test_walk_canonical_not_ram);
	tcase_add_test(tc, test_read_write_pages);
	tcase_add_test(tc, test_walk_legacy);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
