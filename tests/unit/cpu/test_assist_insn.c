/* Unit tests for src/cpu/assist/insn.c: each instruction's results and
 * flags on encodings written out from the Intel SDM, and, where this CPU
 * has the instruction, against the instruction itself executed here
 * (inline asm) on many random inputs. */
#include "assist_insn_fixture.h"

/* ---- POPCNT LZCNT TZCNT --------------------------------------------------- */
START_TEST(test_popcnt)
{
	C->regs.rflags = 2 | ARITH;
	C->regs.rbx = 0xf0f0f0f000000001ull;
	expect_done(RUN(0xf3, 0x48, 0x0f, 0xb8, 0xc3), 5, KL_ASX_K_POPCNT);   /* popcnt rax, rbx */
	ck_assert_uint_eq(C->regs.rax, 17);
	ck_assert_uint_eq(C->regs.rflags & ARITH, 0);
	C->regs.rbx = 0;
	C->regs.rflags |= ARITH;
	expect_done(RUN(0xf3, 0x48, 0x0f, 0xb8, 0xc3), 5, KL_ASX_K_POPCNT);
	ck_assert_uint_eq(C->regs.rax, 0);
	ck_assert_uint_eq(C->regs.rflags & ARITH, ZF);
	/* 32-bit: zero-extended; 16-bit: bits 63:16 kept */
	C->regs.rax = ~0ull;
	C->regs.rbx = 0xffffffff00000003ull;
	expect_done(RUN(0xf3, 0x0f, 0xb8, 0xc3), 4, KL_ASX_K_POPCNT);
	ck_assert_uint_eq(C->regs.rax, 2);
	C->regs.rax = 0x1111222233334444ull;
	C->regs.rbx = 0xffff0007;
	expect_done(RUN(0x66, 0xf3, 0x0f, 0xb8, 0xc3), 5, KL_ASX_K_POPCNT);
	ck_assert_uint_eq(C->regs.rax, 0x1111222233330003ull);
	/* memory operand, r9 destination: popcnt r9, [rsi + 8] */
	memcpy(data(8), "\xff\xff\x00\x00\x00\x00\x00\x80", 8);
	expect_done(RUN(0xf3, 0x4c, 0x0f, 0xb8, 0x4e, 0x08), 6, KL_ASX_K_POPCNT);
	ck_assert_uint_eq(C->regs.r9, 17);
	/* LOCK: #UD */
	expect_fault(RUN(0xf0, 0xf3, 0x48, 0x0f, 0xb8, 0xc3), KL_X86_UD, 0);
}
END_TEST

START_TEST(test_lzcnt_tzcnt)
{
	struct { uint64_t src; unsigned pre; uint8_t op; uint64_t res; uint64_t fl; } t[] = {
		/* pre: 0x48 REX.W, 0x66 operand size, 0 none */
		{ 1, 0x48, 0xbd, 63, 0 },
		{ 0, 0x48, 0xbd, 64, CF },
		{ 1ull << 63, 0x48, 0xbd, 0, ZF },
		{ 0xffff0000ull, 0, 0xbd, 0, ZF },
		{ 0x100000000ull, 0, 0xbd, 32, CF },   /* source is ebx = 0 */
		{ 0x10000, 0x66, 0xbd, 16, CF },
		{ 0x0001, 0x66, 0xbd, 15, 0 },
		{ 0, 0x48, 0xbc, 64, CF },
		{ 1, 0x48, 0xbc, 0, ZF },
		{ 1ull << 40, 0x48, 0xbc, 40, 0 },
		{ 1ull << 40, 0, 0xbc, 32, CF },
		{ 0x8000, 0x66, 0xbc, 15, 0 },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(t); i++) {
		uint8_t b[6] = { 0 };
		size_t n = 0;
		if (t[i].pre == 0x66)
			b[n++] = 0x66;
		b[n++] = 0xf3;
		if (t[i].pre == 0x48)
			b[n++] = 0x48;
		b[n++] = 0x0f;
		b[n++] = t[i].op;
		b[n++] = 0xc3;
		C->regs.rax = 0xaaaaaaaaaaaaaaaaull;
		C->regs.rbx = t[i].src;
		C->regs.rflags = 2 | PF | AF | SF | OF | ZF | CF;
		expect_done(run_bytes(b, n), n, t[i].op == 0xbd ? KL_ASX_K_LZCNT : KL_ASX_K_TZCNT);
		uint64_t want = t[i].pre == 0x66 ? 0xaaaaaaaaaaaa0000ull | t[i].res : t[i].res;
		ck_assert_msg(C->regs.rax == want, "case %zu: %#llx", i,
			      (unsigned long long)C->regs.rax);
		/* CF and ZF defined, the others (undefined) left alone */
		ck_assert_uint_eq(C->regs.rflags & ARITH, (PF | AF | SF | OF) | t[i].fl);
	}
}
END_TEST

#define NAT_COUNT(mn, ty, src, res, f)                                                \
	do {                                                                          \
		ty r_, s_ = (ty)(src);                                                \
		bool c_, z_, s2_, o_, p_;                                             \
		__asm__(mn " %[s], %[r]"                                              \
			: [r] "=r"(r_), "=@ccc"(c_), "=@ccz"(z_), "=@ccs"(s2_),       \
			  "=@cco"(o_), "=@ccp"(p_)                                    \
			: [s] "r"(s_));                                               \
		res = r_;                                                             \
		f = (c_ ? CF : 0) | (z_ ? ZF : 0) | (s2_ ? SF : 0) | (o_ ? OF : 0) |  \
		    (p_ ? PF : 0);                                                    \
	} while (0)

/* The real POPCNT/LZCNT/TZCNT as oracle, 16/32/64-bit. */
START_TEST(test_count_native)
{
	if (!host_has(1, 2, 23) || !host_has(7, 1, 3) || !host_has(0x80000001, 2, 5))
		return;
	static const uint8_t ops[] = { 0xb8, 0xbd, 0xbc };
	for (int k = 0; k < 3000; k++) {
		uint64_t src = rval(), res = 0, fl = 0;
		int op = k % 3, sz = (k / 3) % 3;
		uint8_t b[6];
		size_t n = 0;
		if (sz == 0)
			b[n++] = 0x66;
		b[n++] = 0xf3;
		if (sz == 2)
			b[n++] = 0x48;
		b[n++] = 0x0f;
		b[n++] = ops[op];
		b[n++] = 0xd1;   /* reg rdx, rm rcx */
		C->regs.rcx = src;
		C->regs.rdx = 0;
		C->regs.rflags = 2;
		ck_assert_int_eq(run_bytes(b, n), KL_ASX_DONE);
		uint64_t defined = op == 0 ? CF | ZF | SF | OF | PF : CF | ZF;
		if (sz == 0) {
			if (op == 0) NAT_COUNT("popcnt", uint16_t, src, res, fl);
			if (op == 1) NAT_COUNT("lzcnt", uint16_t, src, res, fl);
			if (op == 2) NAT_COUNT("tzcnt", uint16_t, src, res, fl);
		} else if (sz == 1) {
			if (op == 0) NAT_COUNT("popcnt", uint32_t, src, res, fl);
			if (op == 1) NAT_COUNT("lzcnt", uint32_t, src, res, fl);
			if (op == 2) NAT_COUNT("tzcnt", uint32_t, src, res, fl);
		} else {
			if (op == 0) NAT_COUNT("popcnt", uint64_t, src, res, fl);
			if (op == 1) NAT_COUNT("lzcnt", uint64_t, src, res, fl);
			if (op == 2) NAT_COUNT("tzcnt", uint64_t, src, res, fl);
		}
		ck_assert_msg(C->regs.rdx == res && (C->regs.rflags & defined) == (fl & defined),
			      "op %02x size %d src %#llx: %#llx/%#llx flags %#llx/%#llx", ops[op],
			      sz, (unsigned long long)src, (unsigned long long)C->regs.rdx,
			      (unsigned long long)res, (unsigned long long)C->regs.rflags,
			      (unsigned long long)fl);
	}
}
END_TEST

/* ---- CMPXCHG8B / CMPXCHG16B ------------------------------------------------ */
START_TEST(test_cmpxchg16b)
{
	uint64_t m[2] = { 0x1111111111111111ull, 0x2222222222222222ull };
	memcpy(data(16), m, 16);
	C->regs.rsi = DATA + 16;
	C->regs.rax = m[0];
	C->regs.rdx = m[1];
	C->regs.rbx = 0x3333333333333333ull;
	C->regs.rcx = 0x4444444444444444ull;
	/* lock cmpxchg16b [rsi]: equal -> store rcx:rbx, ZF */
	expect_done(RUN(0xf0, 0x48, 0x0f, 0xc7, 0x0e), 5, KL_ASX_K_CMPXCHG16B);
	ck_assert(C->regs.rflags & ZF);
	memcpy(m, data(16), 16);
	ck_assert_uint_eq(m[0], 0x3333333333333333ull);
	ck_assert_uint_eq(m[1], 0x4444444444444444ull);
	ck_assert_uint_eq(C->regs.rax, 0x1111111111111111ull);
	/* not equal -> rdx:rax = memory, ZF clear, memory unchanged (no LOCK) */
	C->regs.rflags |= CF;
	expect_done(RUN(0x48, 0x0f, 0xc7, 0x0e), 4, KL_ASX_K_CMPXCHG16B);
	ck_assert(!(C->regs.rflags & ZF));
	ck_assert(C->regs.rflags & CF);   /* other flags untouched */
	ck_assert_uint_eq(C->regs.rax, 0x3333333333333333ull);
	ck_assert_uint_eq(C->regs.rdx, 0x4444444444444444ull);
	memcpy(m, data(16), 16);
	ck_assert_uint_eq(m[0], 0x3333333333333333ull);
	/* misaligned: #GP(0), nothing changed */
	C->regs.rsi = DATA + 8;
	uint64_t rax = C->regs.rax;
	expect_fault(RUN(0xf0, 0x48, 0x0f, 0xc7, 0x0e), KL_X86_GP, 0);
	ck_assert(C->fault.has_error);
	ck_assert_uint_eq(C->regs.rax, rax);
	/* read-only page: #PF with W even though the compare fails */
	C->regs.rsi = RO;
	C->regs.rax = 5;
	expect_fault(RUN(0xf0, 0x48, 0x0f, 0xc7, 0x0e), KL_X86_PF, KL_PF_P | KL_PF_W);
	ck_assert_uint_eq(C->fault.cr2, RO);
	ck_assert_uint_eq(C->regs.rax, 5);
	/* MMIO: not handled */
	fake_map(F, DATA + 0x8000, 0xfee00000ull, 1, E_P | E_W);
	C->regs.rsi = DATA + 0x8000;
	ck_assert_int_eq(RUN(0xf0, 0x48, 0x0f, 0xc7, 0x0e), KL_ASX_UNHANDLED);
	ck_assert_uint_eq(C->kind, KL_ASX_K_UNHANDLED);
}
END_TEST

START_TEST(test_cmpxchg8b)
{
	memcpy(data(4), "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	C->regs.rsi = DATA + 4;   /* no alignment needed */
	C->regs.rax = 0xffffffff04030201ull;
	C->regs.rdx = 0xffffffff08070605ull;
	C->regs.rbx = 0xaaaaaaaa11111111ull;
	C->regs.rcx = 0xbbbbbbbb22222222ull;
	expect_done(RUN(0xf0, 0x0f, 0xc7, 0x0e), 4, KL_ASX_K_CMPXCHG16B);
	ck_assert(C->regs.rflags & ZF);
	ck_assert_int_eq(memcmp(data(4), "\x11\x11\x11\x11\x22\x22\x22\x22", 8), 0);
	ck_assert_uint_eq(C->regs.rax, 0xffffffff04030201ull);   /* unchanged on success */
	/* failure: edx:eax loaded, zero-extended */
	expect_done(RUN(0x0f, 0xc7, 0x0e), 3, KL_ASX_K_CMPXCHG16B);
	ck_assert(!(C->regs.rflags & ZF));
	ck_assert_uint_eq(C->regs.rax, 0x11111111);
	ck_assert_uint_eq(C->regs.rdx, 0x22222222);
	/* across a page boundary */
	C->regs.rsi = DATA + 4092;
	memcpy(data(4092), "\x11\x11\x11\x11\x22\x22\x22\x22", 8);
	expect_done(RUN(0x0f, 0xc7, 0x0e), 3, KL_ASX_K_CMPXCHG16B);
	ck_assert(C->regs.rflags & ZF);
	ck_assert_int_eq(memcmp(data(4092), "\x11\x11\x11\x11\x22\x22\x22\x22", 8), 0);
	C->regs.rbx = 0x55;
	expect_done(RUN(0x0f, 0xc7, 0x0e), 3, KL_ASX_K_CMPXCHG16B);
	ck_assert_int_eq(memcmp(data(4092), "\x55\x00\x00\x00\x22\x22\x22\x22", 8), 0);
	/* a page crossing into the read-only page: fault, first page untouched */
	fake_map(F, RO - 4096, DATA_PA + 0x8000, 1, E_P | E_W | E_U);
	C->regs.rsi = RO - 4;
	expect_fault(RUN(0x0f, 0xc7, 0x0e), KL_X86_PF, KL_PF_P | KL_PF_W);
	ck_assert_uint_eq(C->fault.cr2, RO);
}
END_TEST

/* ---- RDTSCP RDPID CLAC STAC INT3 RDPKRU WRPKRU ----------------------------- */
START_TEST(test_rdtscp_rdpid)
{
	F->tsc = 0x123456789abcdef0ull;
	F->tsc_aux = 0x0000000700000003ull;
	C->regs.rcx = ~0ull;
	C->regs.rax = ~0ull;
	expect_done(RUN(0x0f, 0x01, 0xf9), 3, KL_ASX_K_RDTSCP);
	ck_assert_uint_eq(C->regs.rax, 0x9abcdef0);
	ck_assert_uint_eq(C->regs.rdx, 0x12345678);
	ck_assert_uint_eq(C->regs.rcx, 3);
	/* CR4.TSD: #GP(0) at CPL 3 only */
	C->sregs.cr4 |= 1u << 2;
	expect_done(RUN(0x0f, 0x01, 0xf9), 3, KL_ASX_K_RDTSCP);
	fake_cpl(F, 3);
	expect_fault(RUN(0x0f, 0x01, 0xf9), KL_X86_GP, 0);
	fake_cpl(F, 0);
	F->fail_ops = true;
	ck_assert_int_eq(RUN(0x0f, 0x01, 0xf9), KL_ASX_ERROR);
	F->fail_ops = false;
	if (host_has(7, 2, 22)) {
		/* rdpid rax / rdpid r8: the whole 64-bit register */
		expect_done(RUN(0xf3, 0x0f, 0xc7, 0xf8), 4, KL_ASX_K_RDPID);
		ck_assert_uint_eq(C->regs.rax, 0x0000000700000003ull);
		C->regs.r8 = 1;
		expect_done(RUN(0xf3, 0x41, 0x0f, 0xc7, 0xf8), 5, KL_ASX_K_RDPID);
		ck_assert_uint_eq(C->regs.r8, 0x0000000700000003ull);
	}
	/* 0F C7 /7 reg without F3 is RDSEED: not ours */
	ck_assert_int_eq(RUN(0x0f, 0xc7, 0xf8), KL_ASX_UNHANDLED);
}
END_TEST

START_TEST(test_clac_stac_int3)
{
	if (host_has(7, 1, 20)) {
		expect_done(RUN(0x0f, 0x01, 0xcb), 3, KL_ASX_K_STAC);
		ck_assert(C->regs.rflags & AC);
		expect_done(RUN(0x0f, 0x01, 0xca), 3, KL_ASX_K_CLAC);
		ck_assert(!(C->regs.rflags & AC));
		ck_assert_uint_eq(C->regs.rflags, 2);
	}
	fake_cpl(F, 3);
	expect_fault(RUN(0x0f, 0x01, 0xcb), KL_X86_UD, 0);
	ck_assert(!(C->regs.rflags & AC));
	expect_fault(RUN(0x0f, 0x01, 0xca), KL_X86_UD, 0);
	fake_cpl(F, 0);
	/* INT3: #BP as a trap, RIP past it */
	ck_assert_int_eq(RUN(0xcc), KL_ASX_FAULT);
	ck_assert_uint_eq(C->fault.vector, KL_X86_BP);
	ck_assert(C->fault.trap);
	ck_assert(!C->fault.has_error);
	ck_assert_uint_eq(C->regs.rip, RIP0 + 1);
	ck_assert_uint_eq(C->kind, KL_ASX_K_INT3);
	/* other faults are not traps */
	fake_cpl(F, 3);
	expect_fault(RUN(0x0f, 0x01, 0xcb), KL_X86_UD, 0);
	ck_assert(!C->fault.trap);
}
END_TEST

/* MONITORX / MWAITX: no-ops where the host has them (CPUID 8000_0001H:ECX[29],
 * AMD), at any CPL; #GP(0) for MONITORX extensions or a non-canonical RAX
 * and for reserved MWAITX hints; #UD on a host without them. */
START_TEST(test_monitorx_mwaitx)
{
	C->regs.rax = DATA;
	C->regs.rcx = 0;
	C->regs.rbx = 1000;
	uint64_t rflags = C->regs.rflags;
	if (!host_has(0x80000001, 2, 29)) {
		expect_fault(RUN(0x0f, 0x01, 0xfa), KL_X86_UD, 0);
		expect_fault(RUN(0x0f, 0x01, 0xfb), KL_X86_UD, 0);
		return;
	}
	for (int cpl = 0; cpl <= 3; cpl += 3) {
		fake_cpl(F, cpl);
		C->regs.rcx = 0;
		expect_done(RUN(0x0f, 0x01, 0xfa), 3, KL_ASX_K_MWAITX);      /* monitorx */
		C->regs.rcx = 3;                                               /* masked irq, timer */
		expect_done(RUN(0x0f, 0x01, 0xfb), 3, KL_ASX_K_MWAITX);      /* mwaitx */
		ck_assert_uint_eq(C->regs.rax, DATA);
		ck_assert_uint_eq(C->regs.rbx, 1000);
		ck_assert_uint_eq(C->regs.rflags, rflags);
		C->regs.rcx = 4;
		expect_fault(RUN(0x0f, 0x01, 0xfb), KL_X86_GP, 0);
		C->regs.rcx = 1;
		expect_fault(RUN(0x0f, 0x01, 0xfa), KL_X86_GP, 0);
		C->regs.rcx = 0;
		C->regs.rax = 0x0000800000000000ull;                          /* non-canonical */
		expect_fault(RUN(0x0f, 0x01, 0xfa), KL_X86_GP, 0);
		C->regs.rax = DATA;
	}
}
END_TEST

START_TEST(test_pkru)
{
	expect_fault(RUN(0x0f, 0x01, 0xee), KL_X86_UD, 0);   /* CR4.PKE clear */
	C->sregs.cr4 |= 1u << 22;
	C->regs.rax = C->regs.rdx = ~0ull;
	C->regs.rcx = 0;
	memset(F->xsave + FAKE_PKRU_OFF, 0xee, 4);   /* stale: XSTATE_BV[9] = 0 */
	expect_done(RUN(0x0f, 0x01, 0xee), 3, KL_ASX_K_PKRU);
	ck_assert_uint_eq(C->regs.rax, 0);
	ck_assert_uint_eq(C->regs.rdx, 0);
	C->regs.rax = 0xffffffff55555554ull;
	expect_done(RUN(0x0f, 0x01, 0xef), 3, KL_ASX_K_PKRU);
	uint32_t v;
	memcpy(&v, F->xsave + FAKE_PKRU_OFF, 4);
	ck_assert_uint_eq(v, 0x55555554);
	ck_assert(F->xsave[513] & 2);   /* XSTATE_BV bit 9 */
	C->regs.rax = 0;
	C->regs.rdx = 7;
	expect_done(RUN(0x0f, 0x01, 0xee), 3, KL_ASX_K_PKRU);
	ck_assert_uint_eq(C->regs.rax, 0x55555554);
	ck_assert_uint_eq(C->regs.rdx, 0);
	/* ECX != 0: #GP(0); WRPKRU also needs EDX = 0 */
	C->regs.rcx = 1;
	expect_fault(RUN(0x0f, 0x01, 0xee), KL_X86_GP, 0);
	expect_fault(RUN(0x0f, 0x01, 0xef), KL_X86_GP, 0);
	C->regs.rcx = 0x100000000ull;   /* only ECX counts */
	C->regs.rdx = 1;
	expect_fault(RUN(0x0f, 0x01, 0xef), KL_X86_GP, 0);
	C->regs.rdx = 0;
	C->regs.rax = 0x12;
	expect_done(RUN(0x0f, 0x01, 0xef), 3, KL_ASX_K_PKRU);
	memcpy(&v, F->xsave + FAKE_PKRU_OFF, 4);
	ck_assert_uint_eq(v, 0x12);
}
END_TEST

/* ---- CRC32 MOVBE -------------------------------------------------------------- */
static uint32_t nat_crc(unsigned size, uint32_t crc, uint64_t v)
{
	uint64_t c = crc;
	switch (size) {
	case 1: __asm__("crc32b %b1, %k0" : "+r"(c) : "r"((uint8_t)v)); break;
	case 2: __asm__("crc32w %w1, %k0" : "+r"(c) : "r"((uint16_t)v)); break;
	case 4: __asm__("crc32l %k1, %k0" : "+r"(c) : "r"((uint32_t)v)); break;
	default: __asm__("crc32q %1, %0" : "+r"(c) : "r"(v)); break;
	}
	return (uint32_t)c;
}

START_TEST(test_crc32)
{
	memcpy(data(0), "123456789", 9);
	/* crc32 ecx, byte [rsi] nine times: CRC32C("123456789") = E3069283 */
	C->regs.rcx = 0xffffffff;
	for (int i = 0; i < 9; i++) {
		C->regs.rsi = DATA + i;
		expect_done(RUN(0xf2, 0x0f, 0x38, 0xf0, 0x0e), 5, KL_ASX_K_CRC32);
	}
	ck_assert_uint_eq((uint32_t)~C->regs.rcx, 0xe3069283);
	/* crc32 rcx, qword [rsi] then byte: the same; upper half zero */
	C->regs.rcx = 0xdeadbeefffffffffull;
	C->regs.rsi = DATA;
	expect_done(RUN(0xf2, 0x48, 0x0f, 0x38, 0xf1, 0x0e), 6, KL_ASX_K_CRC32);
	ck_assert_uint_eq(C->regs.rcx >> 32, 0);
	C->regs.rsi = DATA + 8;
	expect_done(RUN(0xf2, 0x0f, 0x38, 0xf0, 0x0e), 5, KL_ASX_K_CRC32);
	ck_assert_uint_eq((uint32_t)~C->regs.rcx, 0xe3069283);
	/* word and dword forms: "1234" as 2 words, as 1 dword: the same CRC */
	C->regs.rcx = 0xffffffff;
	C->regs.rsi = DATA;
	expect_done(RUN(0x66, 0xf2, 0x0f, 0x38, 0xf1, 0x0e), 6, KL_ASX_K_CRC32);
	C->regs.rsi = DATA + 2;
	expect_done(RUN(0x66, 0xf2, 0x0f, 0x38, 0xf1, 0x0e), 6, KL_ASX_K_CRC32);
	uint64_t w = C->regs.rcx;
	C->regs.rcx = 0xffffffff;
	C->regs.rsi = DATA;
	expect_done(RUN(0xf2, 0x0f, 0x38, 0xf1, 0x0e), 5, KL_ASX_K_CRC32);
	ck_assert_uint_eq(C->regs.rcx, w);
	/* byte registers: AH without REX, SPL with it */
	C->regs.rax = 0x3100;
	C->regs.rsp = 0x31;
	C->regs.rcx = 0xffffffff;
	expect_done(RUN(0xf2, 0x0f, 0x38, 0xf0, 0xcc), 5, KL_ASX_K_CRC32);   /* crc32 ecx, ah */
	uint32_t ah = (uint32_t)C->regs.rcx;
	C->regs.rcx = 0xffffffff;
	expect_done(RUN(0xf2, 0x40, 0x0f, 0x38, 0xf0, 0xcc), 6, KL_ASX_K_CRC32);   /* spl */
	ck_assert_uint_eq(C->regs.rcx, ah);
	ck_assert_uint_eq(ah, nat_crc(1, 0xffffffff, 0x31));
}
END_TEST

START_TEST(test_crc32_native)
{
	for (int k = 0; k < 4000; k++) {
		unsigned size = 1u << (k % 4);
		uint64_t v = rval(), crc = rval();
		uint8_t b[6];
		size_t n = 0;
		if (size == 2)
			b[n++] = 0x66;
		b[n++] = 0xf2;
		if (size == 8)
			b[n++] = 0x48;
		b[n++] = 0x0f;
		b[n++] = 0x38;
		b[n++] = size == 1 ? 0xf0 : 0xf1;
		b[n++] = 0xc3;   /* crc32 eax/rax, bl/bx/ebx/rbx */
		C->regs.rax = crc;
		C->regs.rbx = v;
		ck_assert_int_eq(run_bytes(b, n), KL_ASX_DONE);
		ck_assert_msg(C->regs.rax == nat_crc(size, (uint32_t)crc, v), "size %u", size);
	}
}
END_TEST

START_TEST(test_movbe)
{
	memcpy(data(0), "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	C->regs.rax = ~0ull;
	expect_done(RUN(0x0f, 0x38, 0xf0, 0x06), 4, KL_ASX_K_MOVBE);   /* movbe eax, [rsi] */
	ck_assert_uint_eq(C->regs.rax, 0x01020304);
	expect_done(RUN(0x48, 0x0f, 0x38, 0xf0, 0x06), 5, KL_ASX_K_MOVBE);
	ck_assert_uint_eq(C->regs.rax, 0x0102030405060708ull);
	C->regs.rax = 0xaaaaaaaaaaaaaaaaull;
	expect_done(RUN(0x66, 0x0f, 0x38, 0xf0, 0x06), 5, KL_ASX_K_MOVBE);
	ck_assert_uint_eq(C->regs.rax, 0xaaaaaaaaaaaa0102ull);
	/* store: movbe [rsi + 16], r10 */
	C->regs.r10 = 0x1122334455667788ull;
	expect_done(RUN(0x4c, 0x0f, 0x38, 0xf1, 0x56, 0x10), 6, KL_ASX_K_MOVBE);
	ck_assert_int_eq(memcmp(data(16), "\x11\x22\x33\x44\x55\x66\x77\x88", 8), 0);
	expect_done(RUN(0x66, 0x0f, 0x38, 0xf1, 0x46, 0x20), 6, KL_ASX_K_MOVBE);   /* [rsi+32], ax */
	ck_assert_int_eq(memcmp(data(32), "\x01\x02\x00", 3), 0);
	/* register operand: #UD; read-only page: #PF */
	expect_fault(RUN(0x0f, 0x38, 0xf0, 0xc0), KL_X86_UD, 0);
	C->regs.rsi = RO;
	expect_fault(RUN(0x0f, 0x38, 0xf1, 0x06), KL_X86_PF, KL_PF_P | KL_PF_W);
}
END_TEST

/* ---- BMI1 / BMI2 ------------------------------------------------------------- */
/* VEX-encoded register form, from SDM vol. 2 2.3: C4 [R̄ X̄ B̄ mmmmm]
 * [W v̄v̄v̄v̄ L pp] opcode ModRM(11 reg rm) */
static size_t vex3(uint8_t *b, unsigned map, unsigned pp, unsigned w, unsigned reg,
		   unsigned vvvv, unsigned rm, uint8_t op)
{
	b[0] = 0xc4;
	b[1] = (uint8_t)((!(reg & 8)) << 7 | 1 << 6 | (!(rm & 8)) << 5 | map);
	b[2] = (uint8_t)(w << 7 | (~vvvv & 15) << 3 | pp);
	b[3] = op;
	b[4] = (uint8_t)(0xc0 | (reg & 7) << 3 | (rm & 7));
	return 5;
}

enum { ANDN, BEXTR, BLSI, BLSMSK, BLSR, BZHI, MULX, PDEP, PEXT, RORX, SARX, SHLX, SHRX, NBMI };
static const struct {
	const char *name;
	unsigned map, pp, ext;   /* ext: group-17 /digit (then vvvv is the destination) */
	uint8_t op;
	uint64_t flags;          /* defined flags */
} bmi_t[NBMI] = {
	[ANDN] = { "andn", 2, 0, 0, 0xf2, SF | ZF | OF | CF },
	[BEXTR] = { "bextr", 2, 0, 0, 0xf7, ZF | OF | CF },
	[BLSI] = { "blsi", 2, 0, 3, 0xf3, SF | ZF | OF | CF },
	[BLSMSK] = { "blsmsk", 2, 0, 2, 0xf3, SF | ZF | OF | CF },
	[BLSR] = { "blsr", 2, 0, 1, 0xf3, SF | ZF | OF | CF },
	[BZHI] = { "bzhi", 2, 0, 0, 0xf5, SF | ZF | OF | CF },
	[MULX] = { "mulx", 2, 3, 0, 0xf6, 0 },
	[PDEP] = { "pdep", 2, 3, 0, 0xf5, 0 },
	[PEXT] = { "pext", 2, 2, 0, 0xf5, 0 },
	[RORX] = { "rorx", 3, 3, 0, 0xf0, 0 },
	[SARX] = { "sarx", 2, 2, 0, 0xf7, 0 },
	[SHLX] = { "shlx", 2, 1, 0, 0xf7, 0 },
	[SHRX] = { "shrx", 2, 3, 0, 0xf7, 0 },
};

/* Intel "mn r, y, x" is AT&T "mn x, y, r" */
#define ATT3(mn, ty)                                                                  \
	__asm__(mn " %[x], %[y], %[r]"                                                \
		: [r] "=&r"(r_), "=@ccc"(c_), "=@ccz"(z_), "=@ccs"(s_), "=@cco"(o_)   \
		: [y] "r"((ty)y), [x] "r"((ty)x))
#define ATT2(mn)                                                                      \
	__asm__(mn " %[x], %[r]"                                                      \
		: [r] "=&r"(r_), "=@ccc"(c_), "=@ccz"(z_), "=@ccs"(s_), "=@cco"(o_)   \
		: [x] "r"(x_))

#define NATIVE_BMI(ty)                                                                \
	do {                                                                          \
		ty r_ = 0, x_ = (ty)b, hi_ = 0, lo_ = 0;                              \
		bool c_ = 0, z_ = 0, s_ = 0, o_ = 0;                                  \
		uint64_t x, y;                                                        \
		switch (op) {                                                         \
		case ANDN: y = a; x = b; ATT3("andn", ty); break;                     \
		case PDEP: y = a; x = b; ATT3("pdep", ty); break;                     \
		case PEXT: y = a; x = b; ATT3("pext", ty); break;                     \
		case BEXTR: y = b; x = a; ATT3("bextr", ty); break;                   \
		case BZHI: y = b; x = a; ATT3("bzhi", ty); break;                     \
		case SARX: y = b; x = a; ATT3("sarx", ty); break;                     \
		case SHLX: y = b; x = a; ATT3("shlx", ty); break;                     \
		case SHRX: y = b; x = a; ATT3("shrx", ty); break;                     \
		case BLSI: ATT2("blsi"); break;                                       \
		case BLSMSK: ATT2("blsmsk"); break;                                   \
		case BLSR: ATT2("blsr"); break;                                       \
		case MULX:                                                            \
			__asm__("mulx %[x], %[lo], %[hi]"                             \
				: [hi] "=&r"(hi_), [lo] "=&r"(lo_)                    \
				: [x] "r"(x_), "d"((ty)d));                           \
			r_ = hi_;                                                     \
			*r2 = lo_;                                                    \
			break;                                                        \
		case RORX:                                                            \
			if (imm == 0)                                                 \
				__asm__("rorx $0, %[x], %[r]" : [r] "=r"(r_) : [x] "r"(x_)); \
			else if (imm == 7)                                            \
				__asm__("rorx $7, %[x], %[r]" : [r] "=r"(r_) : [x] "r"(x_)); \
			else                                                          \
				__asm__("rorx $45, %[x], %[r]" : [r] "=r"(r_) : [x] "r"(x_)); \
			break;                                                        \
		}                                                                     \
		*res = r_;                                                            \
		*fl = (c_ ? CF : 0) | (z_ ? ZF : 0) | (s_ ? SF : 0) | (o_ ? OF : 0);  \
	} while (0)

static void native_bmi(int op, bool w, uint64_t a, uint64_t b, uint64_t d, unsigned imm,
		       uint64_t *res, uint64_t *r2, uint64_t *fl)
{
	if (w)
		NATIVE_BMI(uint64_t);
	else
		NATIVE_BMI(uint32_t);
}

/* dst r9, vvvv r10 (a), rm r11 (b), rdx (d) */
static enum kl_asx_result emu_bmi(int op, bool w, uint64_t a, uint64_t b, uint64_t d,
				  unsigned imm)
{
	uint8_t buf[8];
	size_t n = vex3(buf, bmi_t[op].map, bmi_t[op].pp, w, bmi_t[op].ext ? bmi_t[op].ext : 9,
			bmi_t[op].ext ? 9 : 10, 11, bmi_t[op].op);
	if (op == RORX) {
		buf[2] |= 0x78;   /* vvvv = 1111 (none) */
		buf[n++] = (uint8_t)imm;
	}
	C->regs.r9 = 0x5a5a5a5a5a5a5a5aull;
	C->regs.r10 = a;
	C->regs.r11 = b;
	C->regs.rdx = d;
	return run_bytes(buf, n);
}

START_TEST(test_bmi_native)
{
	if (!host_has(7, 1, 3) || !host_has(7, 1, 8))
		return;
	for (int k = 0; k < 13000; k++) {
		int op = k % NBMI;
		bool w = (k / NBMI) & 1;
		uint64_t a = rval(), b = rval(), d = rval(), res, r2 = 0, fl, init;
		unsigned imm = (unsigned[]){ 0, 7, 45 }[k % 3];
		if ((op == BEXTR || op == BZHI) && (k & 2))
			a &= 0x7f7f;   /* start/length/index mostly in range */
		init = 2 | (g_rand_int(rnd) & ARITH);
		C->regs.rflags = init;
		ck_assert_int_eq(emu_bmi(op, w, a, b, d, imm), KL_ASX_DONE);
		ck_assert_uint_eq(C->kind, KL_ASX_K_BMI);
		native_bmi(op, w, a, b, d, imm, &res, &r2, &fl);
		uint64_t defined = bmi_t[op].flags;
		bool ok = C->regs.r9 == res && (C->regs.rflags & defined) == (fl & defined) &&
			  (C->regs.rflags & ARITH & ~defined) == (init & ARITH & ~defined);
		if (op == MULX)
			ok = ok && C->regs.r10 == r2;
		ck_assert_msg(ok,
			      "%s w%d a %#llx b %#llx d %#llx imm %u: %#llx want %#llx, "
			      "flags %#llx want %#llx (defined %#llx)",
			      bmi_t[op].name, w, (unsigned long long)a, (unsigned long long)b,
			      (unsigned long long)d, imm, (unsigned long long)C->regs.r9,
			      (unsigned long long)res, (unsigned long long)C->regs.rflags,
			      (unsigned long long)fl, (unsigned long long)defined);
	}
}
END_TEST

START_TEST(test_bmi_edges)
{
	/* bzhi: index 0 -> 0; 63 -> low 63 bits; 64 and 255 -> src, CF; only bits 7:0 count */
	struct { uint64_t idx, src, res, cf; } bz[] = {
		{ 0, ~0ull, 0, 0 },
		{ 63, ~0ull, ~0ull >> 1, 0 },
		{ 64, ~0ull, ~0ull, CF },
		{ 255, 0x1234, 0x1234, CF },
		{ 0x104, ~0ull, 0xf, 0 },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bz); i++) {
		ck_assert_int_eq(emu_bmi(BZHI, 1, bz[i].idx, bz[i].src, 0, 0), KL_ASX_DONE);
		ck_assert_uint_eq(C->regs.r9, bz[i].res);
		ck_assert_uint_eq(C->regs.rflags & CF, bz[i].cf);
	}
	/* bzhi 32-bit: index 32 -> CF, result zero-extended */
	ck_assert_int_eq(emu_bmi(BZHI, 0, 32, ~0ull, 0, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, 0xffffffff);
	ck_assert(C->regs.rflags & CF);
	/* pdep / pext */
	ck_assert_int_eq(emu_bmi(PDEP, 1, ~0ull, 0xf0f0000000000001ull, 0, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, 0xf0f0000000000001ull);
	ck_assert_int_eq(emu_bmi(PDEP, 1, 0x5, 0xff00, 0, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, 0x0500);
	ck_assert_int_eq(emu_bmi(PEXT, 1, 0x8000000000000001ull, 0x8000000000000001ull, 0, 0),
			 KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, 3);
	ck_assert_int_eq(emu_bmi(PEXT, 1, ~0ull, 0, 0, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, 0);
	ck_assert_int_eq(emu_bmi(PEXT, 0, 0xabcd00001234ull, 0xffff, 0, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, 0x1234);
	/* bextr: start >= size -> 0, ZF; length 0 -> 0 */
	ck_assert_int_eq(emu_bmi(BEXTR, 1, 0x0840, ~0ull, 0, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, 0);
	ck_assert(C->regs.rflags & ZF);
	ck_assert_int_eq(emu_bmi(BEXTR, 1, 0x0804, 0x1234, 0, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, 0x23);
	ck_assert(!(C->regs.rflags & ZF));
	/* blsmsk clears ZF even for a zero result... (src 0 -> all ones, CF) */
	ck_assert_int_eq(emu_bmi(BLSMSK, 1, 0, 0, 0, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, ~0ull);
	ck_assert_uint_eq(C->regs.rflags & (CF | ZF | SF), CF | SF);
	ck_assert_int_eq(emu_bmi(BLSI, 1, 0, 0, 0, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.rflags & (CF | ZF), ZF);
	/* mulx: hi:lo = rdx * src; both destinations one register: high half */
	ck_assert_int_eq(emu_bmi(MULX, 1, 0, ~0ull, ~0ull, 0), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, ~0ull - 1);
	ck_assert_uint_eq(C->regs.r10, 1);
	uint8_t b[5];
	vex3(b, 2, 3, 1, 9, 9, 11, 0xf6);   /* mulx r9, r9, r11 */
	C->regs.rdx = 1ull << 63;
	C->regs.r11 = 4;
	ck_assert_int_eq(run_bytes(b, 5), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.r9, 2);
	/* andn with a memory operand: andn rax, rcx, [rsi] = C4 E2 F0 F2 06 */
	memcpy(data(0), "\xff\x00\xff\x00\xff\x00\xff\x00", 8);
	C->regs.rcx = 0x0f0f0f0f0f0f0f0full;
	expect_done(RUN(0xc4, 0xe2, 0xf0, 0xf2, 0x06), 5, KL_ASX_K_BMI);
	ck_assert_uint_eq(C->regs.rax, 0x00f000f000f000f0ull);
	/* VEX.L = 1: #UD; rorx with vvvv != 1111: #UD */
	expect_fault(RUN(0xc4, 0xe2, 0xf4, 0xf2, 0xc3), KL_X86_UD, 0);
	expect_fault(RUN(0xc4, 0xe3, 0x73, 0xf0, 0xc3, 0x01), KL_X86_UD, 0);
	/* group 17 /0 and /4: not BMI */
	ck_assert_int_eq(RUN(0xc4, 0xe2, 0xf0, 0xf3, 0xc3), KL_ASX_UNHANDLED);
	ck_assert_int_eq(RUN(0xc4, 0xe2, 0xf0, 0xf3, 0xe3), KL_ASX_UNHANDLED);
	/* memory fault: registers untouched */
	C->regs.rsi = DATA + 0x9000;
	C->regs.rax = 77;
	expect_fault(RUN(0xc4, 0xe2, 0xf0, 0xf2, 0x06), KL_X86_PF, 0);
	ck_assert_uint_eq(C->fault.cr2, DATA + 0x9000);
	ck_assert_uint_eq(C->regs.rax, 77);
}
END_TEST

/* ---- kl_asx_execute ---------------------------------------------------------- */
START_TEST(test_execute)
{
	/* unknown encodings and decode failures */
	ck_assert_int_eq(RUN(0x90), KL_ASX_UNHANDLED);
	ck_assert_uint_eq(C->kind, KL_ASX_K_UNHANDLED);
	ck_assert_uint_eq(C->regs.rip, RIP0);
	ck_assert_int_eq(RUN(0xf3, 0x48, 0x0f, 0xb8), KL_ASX_UNHANDLED);
	ck_assert_int_eq(RUN(0x0f, 0xbc, 0xc3), KL_ASX_UNHANDLED);   /* BSF: the emulator's */
	/* RF cleared after the instruction */
	C->regs.rflags = 2 | (1u << 16);
	expect_done(RUN(0xf3, 0x0f, 0xb8, 0xc3), 4, KL_ASX_K_POPCNT);
	ck_assert_uint_eq(C->regs.rflags & (1u << 16), 0);
	/* memory operand in MMIO: unhandled, nothing written */
	fake_map(F, DATA + 0x8000, 0xfee00000ull, 1, E_P | E_W);
	C->regs.rsi = DATA + 0x8000;
	C->regs.rax = 9;
	ck_assert_int_eq(RUN(0xf3, 0x48, 0x0f, 0xb8, 0x06), KL_ASX_UNHANDLED);
	ck_assert_uint_eq(C->regs.rax, 9);
	ck_assert_uint_eq(C->regs.rip, RIP0);
	/* SMAP on a user page from CPL 0: #PF; with AC: done */
	C->sregs.cr4 |= 1u << 21;
	C->regs.rsi = DATA;
	expect_fault(RUN(0xf3, 0x48, 0x0f, 0xb8, 0x06), KL_X86_PF, KL_PF_P);
	ck_assert_uint_eq(C->fault.cr2, DATA);
	C->regs.rflags |= AC;
	expect_done(RUN(0xf3, 0x48, 0x0f, 0xb8, 0x06), 5, KL_ASX_K_POPCNT);
	/* ops failure: ERROR */
	F->fail_ops = true;
	ck_assert_int_eq(RUN(0xdb, 0xe2), KL_ASX_ERROR);
	F->fail_ops = false;
	/* 32-bit mode: EIP wraps */
	C->sregs.efer = 0;
	C->sregs.cr4 = 1u << 9;
	C->sregs.cr0 &= ~(1u << 31);
	C->sregs.cs.l = 0;
	C->sregs.cs.db = 1;
	uint8_t b[] = { 0xf3, 0x0f, 0xb8, 0xc3 };
	C->regs.rip = 0xfffffffe;
	ck_assert_int_eq(kl_asx_execute(C, b, 4), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.rip, 2);
}
END_TEST

START_TEST(test_kind_names)
{
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_XGETBV), "xgetbv");
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_XSAVE), "xsave");
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_POPCNT), "popcnt");
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_BMI), "bmi");
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_X87), "x87");
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_MXCSR), "mxcsr");
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_PF_PASS), "pf-pass");
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_SYSCALL), "syscall");
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_REARM), "rearm");
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_UNHANDLED), "unhandled");
	/* every kind has a distinct lower-case name */
	for (int i = 0; i < KL_ASX_K_COUNT; i++) {
		const char *n = kl_asx_kind_name(i);
		ck_assert_str_ne(n, "?");
		for (const char *p = n; *p; p++)
			ck_assert(g_ascii_islower(*p) || *p == '-' || g_ascii_isdigit(*p));
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(n, kl_asx_kind_name(j));
	}
	ck_assert_str_eq(kl_asx_kind_name(KL_ASX_K_COUNT), "?");
}
END_TEST

int main(void)
{
	rnd = g_rand_new_with_seed(20261201);
	Suite *s = suite_create("assist-insn");
	TCase *tc = tcase_create("insn");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_popcnt);
	tcase_add_test(tc, test_lzcnt_tzcnt);
	tcase_add_test(tc, test_count_native);
	tcase_add_test(tc, test_cmpxchg16b);
	tcase_add_test(tc, test_cmpxchg8b);
	tcase_add_test(tc, test_rdtscp_rdpid);
	tcase_add_test(tc, test_clac_stac_int3);
	tcase_add_test(tc, test_monitorx_mwaitx);
	tcase_add_test(tc, test_pkru);
	tcase_add_test(tc, test_crc32);
	tcase_add_test(tc, test_crc32_native);
	tcase_add_test(tc, test_movbe);
	tcase_add_test(tc, test_bmi_native);
	tcase_add_test(tc, test_bmi_edges);
	tcase_add_test(tc, test_execute);
	tcase_add_test(tc, test_kind_names);
	suite_add_tcase(s, tc);
	int r = kl_check_run(s);
	g_rand_free(rnd);
	return r;
}
