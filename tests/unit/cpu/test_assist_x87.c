/* Unit tests for src/cpu/assist/insn.c's x87 and MXCSR instructions:
 * FNCLEX, FNSTSW, FNSTCW, FLDCW, FNINIT, EMMS, their #NM/#UD under CR0.TS/EM,
 * FWAIT with a pending exception, FILD (against the instruction executed
 * here) and FLD1, LDMXCSR/STMXCSR -- results and faults from the Intel SDM.
 * Split from test_assist_insn.c; the fixture is assist_insn_fixture.h. */
#include "assist_insn_fixture.h"

/* ---- x87 control --------------------------------------------------------------- */
static uint16_t xs16(unsigned off)
{
	uint16_t v;
	memcpy(&v, F->xsave + off, 2);
	return v;
}

static void set_xs16(unsigned off, uint16_t v)
{
	memcpy(F->xsave + off, &v, 2);
}

START_TEST(test_x87_control)
{
	/* fnclex: exception flags, SF, ES, B cleared; C0-C3 and TOP kept */
	set_xs16(2, 0xffff);
	expect_done(RUN(0xdb, 0xe2), 2, KL_ASX_K_X87);
	ck_assert_uint_eq(xs16(2), 0x7f00);
	ck_assert_int_eq(F->xsave_sets, 1);
	/* fnstsw ax keeps bits 63:16 */
	C->regs.rax = 0x1234567890abcdefull;
	expect_done(RUN(0xdf, 0xe0), 2, KL_ASX_K_X87);
	ck_assert_uint_eq(C->regs.rax, 0x1234567890ab7f00ull);
	/* fnstsw [rsi+2], fnstcw [rsi] */
	expect_done(RUN(0xdd, 0x7e, 0x02), 3, KL_ASX_K_X87);
	expect_done(RUN(0xd9, 0x3e), 2, KL_ASX_K_X87);
	ck_assert_int_eq(memcmp(data(0), "\x7f\x03\x00\x7f", 4), 0);
	/* fldcw [rsi+8] */
	memcpy(data(8), "\x7f\x02", 2);
	expect_done(RUN(0xd9, 0x6e, 0x08), 3, KL_ASX_K_X87);
	ck_assert_uint_eq(xs16(0), 0x027f);
	/* fninit */
	set_xs16(2, 0x3801);
	F->xsave[4] = 0xff;
	set_xs16(6, 0x123);
	expect_done(RUN(0xdb, 0xe3), 2, KL_ASX_K_X87);
	ck_assert_uint_eq(xs16(0), 0x037f);
	ck_assert_uint_eq(xs16(2), 0);
	ck_assert_uint_eq(F->xsave[4], 0);
	ck_assert_uint_eq(xs16(6), 0);
	/* emms: all tags empty */
	F->xsave[4] = 0x81;
	expect_done(RUN(0x0f, 0x77), 2, KL_ASX_K_OTHER);
	ck_assert_uint_eq(F->xsave[4], 0);
	/* a modified x87 state sets XSTATE_BV bit 0, filling the init state */
	F->xsave[512] = 0;
	memset(F->xsave, 0xcc, 24);
	expect_done(RUN(0xdb, 0xe2), 2, KL_ASX_K_X87);
	ck_assert_uint_eq(F->xsave[512], 1);
	ck_assert_uint_eq(xs16(0), 0x037f);
	ck_assert_uint_eq(xs16(2), 0);
	/* CR0.TS / CR0.EM: #NM (EMMS: #UD with EM) */
	C->sregs.cr0 |= 1u << 3;
	expect_fault(RUN(0xdb, 0xe2), KL_X86_NM, 0);
	expect_fault(RUN(0x0f, 0x77), KL_X86_NM, 0);
	C->sregs.cr0 &= ~(1u << 3);
	C->sregs.cr0 |= 1u << 2;
	expect_fault(RUN(0xdb, 0xe2), KL_X86_NM, 0);
	expect_fault(RUN(0x0f, 0x77), KL_X86_UD, 0);
	/* arithmetic x87 is not ours */
	C->sregs.cr0 &= ~(1u << 2);
	ck_assert_int_eq(RUN(0xd8, 0xc1), KL_ASX_UNHANDLED);   /* fadd st, st(1) */
}
END_TEST

START_TEST(test_fwait_pending)
{
	/* no pending exception: nothing */
	expect_done(RUN(0x9b), 1, KL_ASX_K_X87);
	ck_assert_int_eq(F->xsave_sets, 0);
	/* ZE set but masked: nothing */
	set_xs16(2, 0x0004);
	expect_done(RUN(0x9b), 1, KL_ASX_K_X87);
	/* unmask ZE with fldcw: ES/B follow, the next fwait raises #MF */
	memcpy(data(0), "\x7b\x03", 2);
	expect_done(RUN(0xd9, 0x2e), 2, KL_ASX_K_X87);
	ck_assert_uint_eq(xs16(2), 0x8084);
	expect_fault(RUN(0x9b), KL_X86_MF, 0);
	expect_fault(RUN(0xdb, 0x06), KL_X86_MF, 0);   /* fild also waits */
	expect_fault(RUN(0xd9, 0x2e), KL_X86_MF, 0);   /* so does fldcw */
	/* the no-wait forms do not */
	expect_done(RUN(0xdb, 0xe2), 2, KL_ASX_K_X87);
	expect_done(RUN(0x9b), 1, KL_ASX_K_X87);
	/* WAIT: #NM only with both CR0.MP and CR0.TS */
	C->sregs.cr0 &= ~(1u << 1);
	C->sregs.cr0 |= 1u << 3;
	expect_done(RUN(0x9b), 1, KL_ASX_K_X87);
	C->sregs.cr0 |= 1u << 1;
	expect_fault(RUN(0x9b), KL_X86_NM, 0);
}
END_TEST

static void native_fild(int32_t v, uint8_t out[10])
{
	__asm__ volatile("fildl %1\n\tfstpt %0" : "=m"(*(uint8_t(*)[10])out) : "m"(v));
}

START_TEST(test_fild_fld1)
{
	int32_t vals[] = { 0, 1, -1, 2, 1000, -123456, INT32_MAX, INT32_MIN, 0x40000000 };
	for (size_t i = 0; i < G_N_ELEMENTS(vals) + 200; i++) {
		int32_t v = i < G_N_ELEMENTS(vals) ? vals[i] : (int32_t)g_rand_int(rnd);
		memcpy(data(0), &v, 4);
		set_xs16(2, 0);
		F->xsave[4] = 0;
		memset(F->xsave + 32, 0x77, 128);
		expect_done(RUN(0xdb, 0x06), 2, KL_ASX_K_X87);   /* fild dword [rsi] */
		uint8_t want[10];
		native_fild(v, want);
		ck_assert_msg(memcmp(F->xsave + 32, want, 10) == 0, "fild %d", v);
		ck_assert_int_eq(memcmp(F->xsave + 42, "\0\0\0\0\0\0", 6), 0);
		ck_assert_uint_eq(xs16(2), 7 << 11);   /* TOP 7, C1 0 */
		ck_assert_uint_eq(F->xsave[4], 0x80);   /* physical register 7 valid */
		ck_assert_int_eq(memcmp(F->xsave + 48, "\x77\x77", 2), 0);   /* old ST0 is ST1 */
	}
	/* FOP / FIP / FDP */
	ck_assert_uint_eq(xs16(6), 0x306);
	uint64_t fip, fdp;
	memcpy(&fip, F->xsave + 8, 8);
	memcpy(&fdp, F->xsave + 16, 8);
	ck_assert_uint_eq(fip, RIP0);
	ck_assert_uint_eq(fdp, DATA);
	/* fld1 on top: ST0 = 1.0, ST1 = the integer */
	expect_done(RUN(0xd9, 0xe8), 2, KL_ASX_K_X87);
	uint8_t one[10];
	__asm__ volatile("fld1\n\tfstpt %0" : "=m"(*(uint8_t(*)[10])one));
	ck_assert_int_eq(memcmp(F->xsave + 32, one, 10), 0);
	ck_assert_uint_eq((xs16(2) >> 11) & 7, 6);
	ck_assert_uint_eq(F->xsave[4], 0xc0);
	/* stack overflow, IM masked: QNaN indefinite, IE SF C1 */
	F->xsave[4] = 0xff;
	expect_done(RUN(0xd9, 0xee), 2, KL_ASX_K_X87);   /* fldz */
	ck_assert_int_eq(memcmp(F->xsave + 32, "\0\0\0\0\0\0\0\xc0\xff\xff", 10), 0);
	ck_assert_uint_eq(xs16(2) & 0x02ff, 0x0241);
	ck_assert_uint_eq((xs16(2) >> 11) & 7, 5);
	/* unmasked: nothing loaded, ES set, TOP unchanged */
	set_xs16(0, 0x037e);
	set_xs16(2, 5 << 11);
	memcpy(one, F->xsave + 32, 10);
	expect_done(RUN(0xd9, 0xe8), 2, KL_ASX_K_X87);
	ck_assert_int_eq(memcmp(F->xsave + 32, one, 10), 0);
	ck_assert_uint_eq(xs16(2), (5 << 11) | 0x80c1 | 0x0200);
}
END_TEST

/* ---- LDMXCSR STMXCSR ------------------------------------------------------------- */
START_TEST(test_mxcsr)
{
	uint32_t v = 0x7f80, got;   /* RC = 11, all masked */
	memcpy(data(0), &v, 4);
	expect_done(RUN(0x0f, 0xae, 0x16), 3, KL_ASX_K_MXCSR);   /* ldmxcsr [rsi] */
	memcpy(&got, F->xsave + 24, 4);
	ck_assert_uint_eq(got, 0x7f80);
	expect_done(RUN(0x0f, 0xae, 0x5e, 0x10), 4, KL_ASX_K_MXCSR);   /* stmxcsr [rsi+16] */
	ck_assert_int_eq(memcmp(data(16), "\x80\x7f\x00\x00", 4), 0);
	/* reserved bits per MXCSR_MASK (FFFF here): bit 16 -> #GP(0) */
	v = 0x11f80;
	memcpy(data(0), &v, 4);
	expect_fault(RUN(0x0f, 0xae, 0x16), KL_X86_GP, 0);
	memcpy(&got, F->xsave + 24, 4);
	ck_assert_uint_eq(got, 0x7f80);
	/* MXCSR_MASK 0 means FFBF: DAZ (bit 6) reserved */
	memset(F->xsave + 28, 0, 4);
	v = 0x1fc0;
	memcpy(data(0), &v, 4);
	expect_fault(RUN(0x0f, 0xae, 0x16), KL_X86_GP, 0);
	/* SSE state in its init state: XMM area zeroed, bit 1 set */
	F->xsave[512] = 1;
	memset(F->xsave + 160, 0xab, 256);
	v = 0x1f80;
	memcpy(data(0), &v, 4);
	expect_done(RUN(0x0f, 0xae, 0x16), 3, KL_ASX_K_MXCSR);
	ck_assert_uint_eq(F->xsave[512], 3);
	ck_assert_uint_eq(F->xsave[160], 0);
	ck_assert_uint_eq(F->xsave[415], 0);
	/* VEX forms: vldmxcsr [rsi] C5 F8 AE 16, vstmxcsr [rsi+4] C5 F8 AE 5E 04 */
	v = 0x1f00;
	memcpy(data(0), &v, 4);
	expect_done(RUN(0xc5, 0xf8, 0xae, 0x16), 4, KL_ASX_K_MXCSR);
	memcpy(&got, F->xsave + 24, 4);
	ck_assert_uint_eq(got, 0x1f00);
	expect_done(RUN(0xc5, 0xf8, 0xae, 0x5e, 0x04), 5, KL_ASX_K_MXCSR);
	ck_assert_int_eq(memcmp(data(4), "\x00\x1f\x00\x00", 4), 0);
	expect_fault(RUN(0xc5, 0xf0, 0xae, 0x16), KL_X86_UD, 0);   /* vvvv != 1111 */
	/* CR4.OSFXSR clear: #UD; CR0.TS: #NM; a fault on the operand: #PF */
	C->sregs.cr4 &= ~(1u << 9);
	expect_fault(RUN(0x0f, 0xae, 0x16), KL_X86_UD, 0);
	C->sregs.cr4 |= 1u << 9;
	C->sregs.cr0 |= 1u << 3;
	expect_fault(RUN(0x0f, 0xae, 0x1e), KL_X86_NM, 0);
	C->sregs.cr0 &= ~(1u << 3);
	C->regs.rsi = RO;
	expect_fault(RUN(0x0f, 0xae, 0x1e), KL_X86_PF, KL_PF_P | KL_PF_W);
	/* 66 0F AE /2 is not LDMXCSR */
	ck_assert_int_eq(RUN(0x66, 0x0f, 0xae, 0x16), KL_ASX_UNHANDLED);
}
END_TEST

int main(void)
{
	rnd = g_rand_new_with_seed(20261201);
	Suite *s = suite_create("assist-x87");
	TCase *tc = tcase_create("x87");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_x87_control);
	tcase_add_test(tc, test_fwait_pending);
	tcase_add_test(tc, test_fild_fld1);
	tcase_add_test(tc, test_mxcsr);
	suite_add_tcase(s, tc);
	int r = kl_check_run(s);
	g_rand_free(rnd);
	return r;
}
