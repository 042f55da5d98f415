/* What the assist's instruction tests share (test_assist_insn.c,
 * test_assist_x87.c): a fake vCPU with 4 writable user pages at DATA and a
 * read-only page at RO, running one instruction at RIP0, and the checks of
 * its result. */
#ifndef KL_TEST_ASSIST_INSN_FIXTURE_H
#define KL_TEST_ASSIST_INSN_FIXTURE_H

#include <check.h>
#include <cpuid.h>

#include "../kl_check.h"
#include "assist_fake.h"

#define CF 0x1ull
#define PF 0x4ull
#define AF 0x10ull
#define ZF 0x40ull
#define SF 0x80ull
#define OF 0x800ull
#define ARITH (CF | PF | AF | ZF | SF | OF)
#define AC (1ull << 18)

#define DATA 0x00007f0000000000ull   /* 4 user pages, writable */
#define DATA_PA 0x300000ull
#define RO 0x00007f0000010000ull     /* 1 read-only page */
#define RO_PA 0x310000ull
#define RIP0 0xffffffff81000000ull

static struct fake *F;
static struct kl_asx_cpu *C;

static inline void setup(void)
{
	F = fake_new();
	C = &F->cpu;
	for (int i = 0; i < 4; i++)
		fake_map(F, DATA + 4096 * i, DATA_PA + 4096 * i, 1, E_P | E_W | E_U);
	fake_map(F, RO, RO_PA, 1, E_P | E_U);
	C->regs.rsi = DATA;
}

static inline void teardown(void)
{
	fake_free(F);
}

static inline uint8_t *data(uint64_t off)
{
	return F->ram + DATA_PA + off;
}

static inline enum kl_asx_result run_bytes(const uint8_t *b, size_t n)
{
	C->regs.rip = RIP0;
	memset(&C->fault, 0, sizeof(C->fault));
	return kl_asx_execute(C, b, n);
}

#define RUN(...)                                                                 \
	({                                                                       \
		static const uint8_t b_[] = { __VA_ARGS__ };                     \
		run_bytes(b_, sizeof(b_));                                       \
	})

static inline void expect_done(enum kl_asx_result r, unsigned len, enum kl_asx_kind kind)
{
	ck_assert_msg(r == KL_ASX_DONE, "result %d, fault vector %u", r, C->fault.vector);
	ck_assert_uint_eq(C->regs.rip, RIP0 + len);
	ck_assert_str_eq(kl_asx_kind_name(C->kind), kl_asx_kind_name(kind));
}

static inline void expect_fault(enum kl_asx_result r, uint8_t vector, uint32_t err)
{
	ck_assert_msg(r == KL_ASX_FAULT, "result %d", r);
	ck_assert_uint_eq(C->fault.vector, vector);
	ck_assert_uint_eq(C->fault.error, err);
	ck_assert_uint_eq(C->regs.rip, RIP0);
	ck_assert_uint_eq(C->kind, KL_ASX_K_FAULT);
}

static inline bool host_has(unsigned leaf, unsigned reg, unsigned bit)
{
	unsigned r[4] = { 0 };
	__get_cpuid_count(leaf, 0, &r[0], &r[1], &r[2], &r[3]);
	return (r[reg] >> bit) & 1;
}

static GRand *rnd;

/* random values with many edge cases: 0, ~0, single bits, small, sparse */
static inline uint64_t rval(void)
{
	uint64_t v = (uint64_t)g_rand_int(rnd) << 32 | g_rand_int(rnd);
	switch (g_rand_int_range(rnd, 0, 8)) {
	case 0: return 0;
	case 1: return ~0ull;
	case 2: return 1ull << g_rand_int_range(rnd, 0, 64);
	case 3: return v & 0xff;
	case 4: return v & 0xffff;
	case 5: return v & ((uint64_t)g_rand_int(rnd) << 32 | g_rand_int(rnd));
	case 6: return v >> g_rand_int_range(rnd, 0, 64);
	}
	return v;
}

#endif
