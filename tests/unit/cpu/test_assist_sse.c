/* Unit tests for src/cpu/assist/sse.c: SSE2 integer/logic instructions on
 * XMM registers in the fake XSAVE buffer, against the same instructions
 * executed here (inline asm) on random inputs. */
#include <check.h>

#include "../kl_check.h"
#include "assist_fake.h"

#define DATA 0x00007f0000000000ull
#define DATA_PA 0x300000ull

static struct fake *F;
static struct kl_asx_cpu *C;
static GRand *rnd;

static void setup(void)
{
	F = fake_new();
	C = &F->cpu;
	fake_map(F, DATA, DATA_PA, 1, E_P | E_W);
	C->regs.rsi = DATA;
}

static void teardown(void)
{
	fake_free(F);
}

static uint8_t *xmm(unsigned i)
{
	return F->xsave + 160 + 16 * i;
}

static void rand16(uint8_t *p)
{
	for (int i = 0; i < 16; i++)
		p[i] = g_rand_boolean(rnd) ? (uint8_t)g_rand_int(rnd)
					   : (uint8_t[]){ 0, 0xff, 0x80, 0x7f }[i & 3];
}

static enum kl_asx_result run_bytes(const uint8_t *b, size_t n)
{
	C->regs.rip = 0x1000;
	return kl_asx_execute(C, b, n);
}

/* native "op xmm1, xmm0" (AT&T: op %xmm1, %xmm0) */
#define NAT(mn)                                                                         \
	__asm__("movdqu %1, %%xmm0\n\tmovdqu %2, %%xmm1\n\t" mn " %%xmm1, %%xmm0\n\t"   \
		"movdqu %%xmm0, %0"                                                     \
		: "=m"(*(uint8_t(*)[16])out)                                            \
		: "m"(*(const uint8_t(*)[16])d), "m"(*(const uint8_t(*)[16])s)          \
		: "xmm0", "xmm1")

static void native(uint8_t op, uint8_t pp, const uint8_t *d, const uint8_t *s, uint8_t *out)
{
	switch (pp << 8 | op) {
	case 0x1ef: NAT("pxor"); break;
	case 0x1eb: NAT("por"); break;
	case 0x1db: NAT("pand"); break;
	case 0x1df: NAT("pandn"); break;
	case 0x174: NAT("pcmpeqb"); break;
	case 0x175: NAT("pcmpeqw"); break;
	case 0x176: NAT("pcmpeqd"); break;
	case 0x1d4: NAT("paddq"); break;
	case 0x1da: NAT("pminub"); break;
	case 0x160: NAT("punpcklbw"); break;
	case 0x157: NAT("xorpd"); break;
	case 0x057: NAT("xorps"); break;
	case 0x170: NAT("pshufd $0x1b,"); break;
	}
}

START_TEST(test_sse_native)
{
	static const uint8_t ops[][2] = { { 1, 0xef }, { 1, 0xeb }, { 1, 0xdb }, { 1, 0xdf },
					  { 1, 0x74 }, { 1, 0x75 }, { 1, 0x76 }, { 1, 0xd4 },
					  { 1, 0xda }, { 1, 0x60 }, { 1, 0x57 }, { 0, 0x57 },
					  { 1, 0x70 } };
	for (int k = 0; k < 5000; k++) {
		uint8_t pp = ops[k % 13][0], op = ops[k % 13][1], d[16], s[16], want[16];
		rand16(d);
		rand16(s);
		if (k & 1)
			memcpy(s + 4, d + 4, 8);   /* equal elements for pcmpeq */
		bool mem = k & 2;
		/* op xmm3, xmm12 (REX.B) or op xmm11, [rsi] (REX.R) */
		uint8_t b[8];
		size_t n = 0;
		if (pp)
			b[n++] = 0x66;
		b[n++] = mem ? 0x44 : 0x41;
		b[n++] = 0x0f;
		b[n++] = op;
		b[n++] = mem ? 0x1e : 0xdc;
		if (op == 0x70)
			b[n++] = 0x1b;
		unsigned dr = mem ? 11 : 3;
		memcpy(xmm(dr), d, 16);
		if (mem)
			memcpy(F->ram + DATA_PA, s, 16);
		else
			memcpy(xmm(12), s, 16);
		ck_assert_int_eq(run_bytes(b, n), KL_ASX_DONE);
		ck_assert_uint_eq(C->regs.rip, 0x1000 + n);
		native(op, pp, d, s, want);
		ck_assert_msg(memcmp(xmm(dr), want, 16) == 0, "op %02x pp %u mem %d", op, pp, mem);
	}
}
END_TEST

START_TEST(test_sse_moves)
{
	uint8_t v[16];
	for (int i = 0; i < 16; i++)
		v[i] = (uint8_t)(0x81 + i * 0x11);
	memcpy(xmm(2), v, 16);
	/* pmovmskb eax, xmm2: the top bits of the bytes */
	C->regs.rax = ~0ull;
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x0f, 0xd7, 0xc2 }, 4), KL_ASX_DONE);
	uint32_t m = 0;
	for (int i = 0; i < 16; i++)
		m |= (uint32_t)(v[i] >> 7) << i;
	ck_assert_uint_eq(C->regs.rax, m);
	/* movd xmm1, ecx zero-extends into the XMM register; movq xmm1, rcx */
	memset(xmm(1), 0xee, 16);
	C->regs.rcx = 0x1122334455667788ull;
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x0f, 0x6e, 0xc9 }, 4), KL_ASX_DONE);
	ck_assert_int_eq(memcmp(xmm(1), "\x88\x77\x66\x55\0\0\0\0\0\0\0\0\0\0\0\0", 16), 0);
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x48, 0x0f, 0x6e, 0xc9 }, 5),
			 KL_ASX_DONE);
	ck_assert_int_eq(memcmp(xmm(1), "\x88\x77\x66\x55\x44\x33\x22\x11\0\0\0\0\0\0\0\0", 16), 0);
	/* movd edx, xmm2 (zero-extends rdx); movq [rsi], xmm2 */
	C->regs.rdx = ~0ull;
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x0f, 0x7e, 0xd2 }, 4), KL_ASX_DONE);
	ck_assert_uint_eq(C->regs.rdx, 0xb4a39281u);
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x0f, 0xd6, 0x16 }, 4), KL_ASX_DONE);
	ck_assert_int_eq(memcmp(F->ram + DATA_PA, v, 8), 0);
	/* movq xmm5, [rsi] (F3 0F 7E) clears the upper half */
	memset(xmm(5), 0xee, 16);
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0xf3, 0x0f, 0x7e, 0x2e }, 4), KL_ASX_DONE);
	ck_assert_int_eq(memcmp(xmm(5), v, 8), 0);
	ck_assert_int_eq(memcmp(xmm(5) + 8, "\0\0\0\0\0\0\0\0", 8), 0);
	/* misaligned 16-byte operand: #GP(0); unmapped: #PF; CR0.TS: #NM */
	C->regs.rsi = DATA + 8;
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x0f, 0xef, 0x06 }, 4), KL_ASX_FAULT);
	ck_assert_uint_eq(C->fault.vector, KL_X86_GP);
	C->regs.rsi = DATA + 0x10000;
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x0f, 0xef, 0x06 }, 4), KL_ASX_FAULT);
	ck_assert_uint_eq(C->fault.vector, KL_X86_PF);
	C->sregs.cr0 |= 1u << 3;
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x0f, 0xef, 0xc0 }, 4), KL_ASX_FAULT);
	ck_assert_uint_eq(C->fault.vector, KL_X86_NM);
	C->sregs.cr0 &= ~(1u << 3);
	/* SSE in its init state: registers read as zero, XSTATE_BV[1] set */
	F->xsave[512] = 1;
	memset(xmm(0), 0x55, 32);
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x0f, 0x76, 0xc1 }, 4), KL_ASX_DONE);
	ck_assert_int_eq(memcmp(xmm(0), "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16), 0);
	ck_assert_int_eq(memcmp(xmm(1), "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16), 0);
	ck_assert_uint_eq(F->xsave[512], 3);
	/* MMX forms (no 66) and movdqa: not ours */
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x0f, 0xef, 0xc0 }, 3), KL_ASX_UNHANDLED);
	ck_assert_int_eq(run_bytes((const uint8_t[]){ 0x66, 0x0f, 0x6f, 0xc0 }, 4), KL_ASX_UNHANDLED);
}
END_TEST

int main(void)
{
	rnd = g_rand_new_with_seed(42);
	Suite *s = suite_create("assist-sse");
	TCase *tc = tcase_create("sse");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_sse_native);
	tcase_add_test(tc, test_sse_moves);
	suite_add_tcase(s, tc);
	int r = kl_check_run(s);
	g_rand_free(rnd);
	return r;
}
