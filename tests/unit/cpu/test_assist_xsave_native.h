/* The host CPU as the oracle for test_assist_xsave.c (included by it).
 *
 * One native run: save the test's own state (XSAVE64), XRSTOR64 area l1
 * with every host component, XRSTOR area l2 with r2 (REX.W or not), read
 * XINUSE (XGETBV 1), run the save instruction under test into out with
 * RFBM rs, and XRSTOR64 the test's own state back -- all in one asm
 * statement, so that the random state never reaches compiled code.
 *
 * Random states keep PKRU's key 0 accessible, x87 exceptions clear, and
 * AMX state init (loading arbitrary tile data/config is not the point);
 * AMX tile data is used only when the kernel grants it (ARCH_REQ_XCOMP_PERM). */

static struct kl_xstate_layout host_layout;
static uint64_t host_xcr0, host_mask;   /* XCR0; the components the tests use */
/* the CPU keeps FCS/FDS (CPUID.7.0:EBX[13] = 0, e.g. AMD): its 32-bit-form
 * saves store its selectors, which KVM's buffer has no room for (the
 * emulation stores 0, xsave.c), and its 32-bit-form restores may keep them
 * in FIP/FDP[47:32] */
static bool host_keeps_fcs;
/* the CPU saves FOP, FIP and FDP as 0 while no x87 exception is pending
 * (FSW.ES = 0): AMD's legacy behaviour, seen on an AMD EPYC (family 25)
 * that reports XSaveErPtr (CPUID 8000_0008h:EBX[2]) all the same.  What a
 * restore puts in those fields is then not observable, so a state the
 * emulation restored with them set is the same state as the CPU's zeros. */
static bool host_drops_fptr;
static size_t host_len;                 /* standard-format size for XCR0 */
static uint8_t hsave[XS_MAX] __attribute__((aligned(64)));
static uint8_t S[XS_MAX] __attribute__((aligned(64))), S2[XS_MAX] __attribute__((aligned(64)));
static uint8_t K[XS_MAX] __attribute__((aligned(64))), KP[XS_MAX] __attribute__((aligned(64)));
static uint8_t N[XS_MAX] __attribute__((aligned(64)));

#define NATIVE(name, rst2, save)                                                              \
	static uint64_t name(const void *l1, const void *l2, uint64_t r2, void *out, uint64_t rs) \
	{                                                                                     \
		uint32_t v[8] = { (uint32_t)host_mask, (uint32_t)(host_mask >> 32), (uint32_t)r2, \
				  (uint32_t)(r2 >> 32), (uint32_t)rs, (uint32_t)(rs >> 32), 0, 0 }; \
		__asm__ volatile("mov 0(%[v]), %%eax\n\tmov 4(%[v]), %%edx\n\t"                \
				 "xsave64 (%[hs])\n\t"                                          \
				 "xrstor64 (%[l1])\n\t"                                         \
				 "mov 8(%[v]), %%eax\n\tmov 12(%[v]), %%edx\n\t"                \
				 rst2 " (%[l2])\n\t"                                            \
				 "mov $1, %%ecx\n\txgetbv\n\t"                                  \
				 "mov %%eax, 24(%[v])\n\tmov %%edx, 28(%[v])\n\t"               \
				 "mov 16(%[v]), %%eax\n\tmov 20(%[v]), %%edx\n\t"               \
				 save " (%[out])\n\t"                                           \
				 "mov 0(%[v]), %%eax\n\tmov 4(%[v]), %%edx\n\t"                 \
				 "xrstor64 (%[hs])\n\t"                                         \
				 :                                                              \
				 : [v] "r"(v), [hs] "r"(hsave), [l1] "r"(l1), [l2] "r"(l2),     \
				   [out] "r"(out)                                               \
				 : "rax", "rcx", "rdx", "memory");                              \
		return (uint64_t)v[7] << 32 | v[6];                                           \
	}
NATIVE(nat_xsave64, "xrstor64", "xsave64")
NATIVE(nat_xsave32, "xrstor64", "xsave")
NATIVE(nat_xsaveopt64, "xrstor64", "xsaveopt64")
NATIVE(nat_xsavec64, "xrstor64", "xsavec64")
NATIVE(nat_xsavec32, "xrstor64", "xsavec")
NATIVE(nat_rst32_xsave64, "xrstor", "xsave64")

enum { K_XSAVE64, K_XSAVE32, K_XSAVEOPT64, K_XSAVEC64, K_XSAVEC32, K_NKINDS };
static const char *const kname[] = { "xsave64", "xsave", "xsaveopt64", "xsavec64", "xsavec" };

static uint64_t native_save(int k, const void *l1, void *out, uint64_t rs)
{
	switch (k) {
	case K_XSAVE64: return nat_xsave64(l1, l1, 0, out, rs);
	case K_XSAVE32: return nat_xsave32(l1, l1, 0, out, rs);
	case K_XSAVEOPT64: return nat_xsaveopt64(l1, l1, 0, out, rs);
	case K_XSAVEC64: return nat_xsavec64(l1, l1, 0, out, rs);
	default: return nat_xsavec32(l1, l1, 0, out, rs);
	}
}

static struct kl_insn kind_insn(int k, uint64_t ea)
{
	switch (k) {
	case K_XSAVE64: return mk(0xae, 4, ea, true);
	case K_XSAVE32: return mk(0xae, 4, ea, false);
	case K_XSAVEOPT64: return mk(0xae, 6, ea, true);
	case K_XSAVEC64: return mk(0xc7, 4, ea, true);
	default: return mk(0xc7, 4, ea, false);
	}
}

static void host_setup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	kl_xstate_layout_host(&host_layout);
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	host_xcr0 = (uint64_t)hi << 32 | lo;
	host_mask = host_xcr0;
	if ((host_mask >> 18 & 1) && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18))
		host_mask &= ~(1ull << 18);
	unsigned a, b, c, d;
	__cpuid_count(0xd, 0, a, b, c, d);
	host_len = b;
	__cpuid_count(7, 0, a, b, c, d);
	host_keeps_fcs = !(b >> 13 & 1);
	(void)a, (void)c, (void)d;
	/* restore FOP/FIP/FDP with no exception pending, save them back */
	memset(S, 0, host_len);
	memset(N, 0, host_len);
	kl_put16(S, 0x037f);
	kl_put16(S + 6, 0x0091);
	st64(S + 8, 0x123456789aull);
	st64(S + 16, 0x55667788ull);
	st32(S + 24, 0x1f80);
	st64(S + 512, 1);
	nat_xsave64(S, S, 0, N, host_mask);
	host_drops_fptr = !kl_le16(N + 6) && !ld64(N + 8) && !ld64(N + 16);
}

/* Offset of state component i in a compacted area with XCOMP_BV xcomp
 * (SDM vol. 1 13.4.3), or 0 when it is not there. */
static unsigned host_compact_offset(uint64_t xcomp, unsigned i)
{
	unsigned off = 576;
	for (unsigned j = 2; j <= i; j++) {
		if (!(xcomp >> j & 1))
			continue;
		if (host_layout.comp[j].align64)
			off = (off + 63) & ~63u;
		if (j == i)
			return off;
		off += host_layout.comp[j].size;
	}
	return 0;
}

/* Byte o of a save by kind k differs between the emulation (e) and the CPU
 * (n) in a way the SDM leaves to the implementation: the FCS/FDS selectors
 * of a CPU that keeps them, and the 4 bytes after PKRU (component 9 is 8
 * bytes; this emulation writes 4, as Sapphire Rapids does, a CPU may zero
 * the other 4).  area = the CPU's output (its XCOMP_BV for compacted kinds). */
static bool host_choice(int k, unsigned o, uint8_t e, uint8_t n, const uint8_t *area)
{
	bool form32 = k == K_XSAVE32 || k == K_XSAVEC32;
	if (form32 && host_keeps_fcs && e == 0 && (o == 12 || o == 13 || o == 20 || o == 21))
		return true;
	if (!(host_mask >> 9 & 1))
		return false;
	bool compact = k == K_XSAVEC64 || k == K_XSAVEC32;
	unsigned pk = compact ? host_compact_offset(ld64(area + 520), 9)
			      : host_layout.comp[9].offset;
	return pk && o >= pk + 4 && o < pk + 8 && ((e == 0xaa && n == 0) || (e == 0 && n == 0xaa));
}

/* A random standard-format state with XSTATE_BV a random part of host_mask. */
static void rnd_std(uint8_t *s)
{
	memset(s, 0, host_len);
	uint16_t w[4] = { (uint16_t)(0x7f | (rnd() & 0xf00)), (uint16_t)(rnd() & 0x7f00),
			  (uint16_t)(rnd() & 0xff), (uint16_t)(rnd() & 0x7ff) };
	memcpy(s, w, 8);                                /* FCW FSW FTW FOP */
	st64(s + 8, rnd() & 0x7fffffffffffull);         /* FIP */
	st64(s + 16, rnd() & 0x7fffffffffffull);        /* FDP */
	st32(s + 24, (uint32_t)rnd() & 0xffbf);
	for (int i = 0; i < 8; i++)
		rnd_bytes(s + 32 + 16 * i, 10);
	rnd_bytes(s + 160, 256);
	uint64_t bv = rnd() % 4 ? rnd() & host_mask : host_mask;
	bv &= ~(3ull << 17);                            /* AMX: init */
	/* PKRU in use with a non-zero value: Linux's WRPKRU at a context
	 * switch between two native steps makes XINUSE[9] of a PKRU of 0 (its
	 * initial configuration) either 0 or 1, which no oracle can predict */
	if (host_mask >> 9 & 1)
		bv |= 1ull << 9;
	st64(s + 512, bv);
	for (unsigned i = 2; i < 63; i++)
		if (host_mask >> i & 1 && i != 17 && i != 18)
			rnd_bytes(s + host_layout.comp[i].offset, host_layout.comp[i].size);
	if (host_mask >> 9 & 1) {
		uint8_t *pkru = s + host_layout.comp[9].offset;
		pkru[0] &= ~3;                          /* key 0: our own memory */
		pkru[3] |= 0x80;                        /* key 15 write-disabled: non-zero */
		memset(pkru + 4, 0, 4);
	}
}

static uint64_t rnd_rfbm(void)
{
	uint64_t m = rnd() % 4 ? rnd() & host_mask : host_mask;
	return m;
}

static void host_fake(struct fake *f)
{
	fake_init(f, &host_layout, host_len, host_xcr0);
}

/* a and b hold the same state: legacy region, XSTATE_BV, every component.
 * b is native; a may keep XSTATE_BV[1] with XMM0-15 zero for an MXCSR that
 * is not 1F80H (the choice xsave.c documents). */
static bool x87_init(const uint8_t *s)
{
	if (kl_le16(s) != 0x037f || kl_le16(s + 2) || s[4] || kl_le16(s + 6) || ld64(s + 8) ||
	    ld64(s + 16))
		return false;
	for (unsigned r = 0; r < 8; r++)
		if (!all_zero(s + 32 + 16 * r, 10))
			return false;
	return true;
}

/* rst32: the state came from a 32-bit-form restore (FIP/FDP loaded from 32
 * bits): on a CPU that keeps FCS/FDS only FIP/FDP[31:0] are compared. */
static void assert_same_state(const uint8_t *a, const uint8_t *b, int iter, bool rst32)
{
	/* FSW.ES clear and the CPU's FOP, FIP and FDP all 0, as it saves them */
	bool fptr_dropped = host_drops_fptr && !(b[2] & 0x80) && all_zero(b + 6, 18);
	for (unsigned o = 0; o < 416; o++)
		if (a[o] != b[o] && !(rst32 && host_keeps_fcs && ((o >= 12 && o < 16) ||
								   (o >= 20 && o < 24))) &&
		    !(fptr_dropped && o >= 6 && o < 24))
			ck_abort_msg("iteration %d: legacy byte %u: %02x, native %02x", iter, o, a[o],
				     b[o]);
	uint64_t ba = ld64(a + 512) & host_xcr0, bb = ld64(b + 512) & host_xcr0;
	/* A CPU may report a component in use while it holds its initial
	 * configuration (SDM vol. 1 13.6: XINUSE[i] may be 1 then; seen for
	 * PKRU = 0 here), and the emulation keeps SSE "in use" for an MXCSR
	 * that is not 1F80H: a bit set on one side only is the same state
	 * when that side's component is in its initial configuration. */
	for (unsigned i = 0; i < 63; i++) {
		uint64_t m = 1ull << i;
		if (!((ba ^ bb) & m))
			continue;
		const uint8_t *set = ba & m ? a : b;
		bool init = i == 0 ? x87_init(set)
			    : i == 1 ? all_zero(set + 160, 256)
				     : all_zero(set + host_layout.comp[i].offset,
						host_layout.comp[i].size);
		if (init)
			bb = (bb & ~m) | (ba & m);
	}
	ck_assert_msg(ba == bb, "iteration %d: XSTATE_BV %llx, native %llx", iter,
		      (unsigned long long)ba, (unsigned long long)bb);
	for (unsigned i = 2; i < 63; i++) {
		if (!(host_mask >> i & 1))
			continue;
		const struct kl_xstate_comp *c = &host_layout.comp[i];
		for (unsigned o = c->offset; o < c->offset + c->size; o++)
			if (a[o] != b[o])
				ck_abort_msg("iteration %d: component %u byte %u: %02x, native %02x",
					     iter, i, o - c->offset, a[o], b[o]);
	}
}

START_TEST(test_host_layout)
{
	host_setup();
	const struct kl_xstate_layout *l = &host_layout;
	unsigned a, b, c, d;
	__cpuid_count(0xd, 0, a, b, c, d);
	ck_assert_uint_eq(l->xcr0_mask, (uint64_t)d << 32 | a);
	ck_assert_uint_eq(l->xcr0_mask & 3, 3);
	ck_assert_uint_eq(host_xcr0 & ~l->xcr0_mask, 0);
	__cpuid_count(0xd, 1, a, b, c, d);
	ck_assert_uint_eq(l->xss_mask, (uint64_t)d << 32 | c);
	if (l->xcr0_mask & 4) {
		ck_assert_uint_eq(l->comp[2].size, 256);
		ck_assert_uint_eq(l->comp[2].offset, 576);
	}
	for (unsigned i = 2; i < 63; i++) {
		const struct kl_xstate_comp *p = &l->comp[i];
		if (l->xcr0_mask >> i & 1) {
			ck_assert(!p->supervisor && p->size && p->offset >= 576);
			ck_assert_uint_le(p->offset + p->size, host_len);
		} else if (l->xss_mask >> i & 1) {
			ck_assert(p->supervisor && p->size && !p->offset);
		} else {
			ck_assert(!p->size);
		}
	}
	ck_assert_uint_le(host_len, XS_MAX);
}
END_TEST

/* Native XRSTOR of a random state, native save vs emulated save from the
 * state as the CPU holds it (K, = KVM's buffer); emulated XGETBV(1) vs
 * native; emulated XRSTOR of the same area vs K. */
START_TEST(test_native_save)
{
	host_setup();
	struct fake *f = &fk;
	int count[K_NKINDS] = { 0 };
	for (int it = 0; it < 300; it++) {
		rnd_std(S);
		memset(K, 0, host_len);
		uint64_t xin = nat_xsave64(S, S, 0, K, host_mask);
		/* XGETBV(1) has bit 1 for an MXCSR != 1F80H, XSAVE XSTATE_BV[1] not */
		uint64_t kbv = ld64(K + 512);
		ck_assert(kbv == (xin & host_mask) ||
			  ((kbv | 2) == (xin & host_mask) && ld32(K + 24) != 0x1f80));
		int k = (int)(rnd() % K_NKINDS);
		uint64_t rs = rnd_rfbm();
		memset(N, 0xaa, host_len);
		native_save(k, S, N, rs);

		host_fake(f);
		memcpy(f->ks, K, host_len);
		set_rfbm(f, rs);
		ck_assert_int_eq(run(f, kind_insn(k, AREA)), KL_ASX_DONE);
		/* XSTATE_BV[1] with the XMM registers all zero: the CPU's
		 * XINUSE[1] (also 1 for a non-default MXCSR) is not stable
		 * across the context switches between KVM's save (K) and the
		 * native one, so either value is the same state */
		bool xmm0 = all_zero(K + 160, k == K_XSAVE32 || k == K_XSAVEC32 ? 128 : 256);
		if (xmm0 && (fmem[AREA + 512] ^ N[512]) == 2)
			N[512] = fmem[AREA + 512];
		for (unsigned o = 0; o < host_len; o++)
			if (fmem[AREA + o] != N[o] &&
			    /* XSAVEOPT: the CPU may write a component the
			     * emulation skips as in its initial configuration, or
			     * skip one it writes (its init/modified tracking, e.g.
			     * XINUSE[1] from a non-default MXCSR, changes with
			     * context switches): what the one side wrote is then
			     * the state as KVM saved it, the other side untouched */
			    !(k == K_XSAVEOPT64 && ((fmem[AREA + o] == 0xaa && N[o] == K[o]) ||
						    (N[o] == 0xaa && fmem[AREA + o] == K[o]))) &&
			    !host_choice(k, o, fmem[AREA + o], N[o], N))
				ck_abort_msg("iteration %d %s rfbm %llx XSTATE_BV %llx: byte %u: "
					     "%02x, native %02x", it, kname[k],
					     (unsigned long long)rs, (unsigned long long)xin, o,
					     fmem[AREA + o], N[o]);
		count[k]++;

		struct kl_insn xg = { .map = 1, .op = 0x01, .has_modrm = true, .modrm = 0xd0,
				      .mod = 3, .reg = 2, .rm = 0 };
		f->cpu.regs.rcx = 1;
		ck_assert_int_eq(kl_asx_xsave(&f->cpu, &xg), KL_ASX_DONE);
		ck_assert_uint_eq(f->cpu.regs.rdx << 32 | f->cpu.regs.rax, xin & host_xcr0);

		/* emulated XRSTOR64 of S over a random state gives K */
		rnd_std(f->ks);
		st32(f->ks + 28, ld32(K + 28));         /* KVM's buffer has the CPU's MXCSR_MASK */
		memcpy(fmem + AREA, S, host_len);
		set_rfbm(f, host_mask);
		ck_assert_int_eq(run(f, I_XRSTOR(AREA)), KL_ASX_DONE);
		assert_same_state(f->ks, K, it, false);
	}
	for (int k = 0; k < K_NKINDS; k++)
		ck_assert_int_gt(count[k], 10);
}
END_TEST

/* Emulated save from K into E; native: load S2, XRSTOR E (RFBM r3), XSAVE64
 * everything; emulated XRSTOR of E over S2's state must give the same. */
START_TEST(test_native_restore)
{
	host_setup();
	struct fake *f = &fk;
	for (int it = 0; it < 300; it++) {
		rnd_std(S);
		memset(K, 0, host_len);
		nat_xsave64(S, S, 0, K, host_mask);
		rnd_std(S2);
		memset(KP, 0, host_len);
		nat_xsave64(S2, S2, 0, KP, host_mask);

		int k = (int)(rnd() % K_NKINDS);
		bool w = k == K_XSAVE64 || k == K_XSAVEOPT64 || k == K_XSAVEC64;
		uint64_t rs = rnd_rfbm(), r3 = rnd() % 2 ? rs : rnd_rfbm();
		host_fake(f);
		memset(fmem, 0, sizeof(fmem));
		memcpy(f->ks, K, host_len);
		set_rfbm(f, rs);
		ck_assert_int_eq(run(f, kind_insn(k, AREA)), KL_ASX_DONE);

		memset(N, 0, host_len);
		uint8_t *E = fmem + AREA;
		if (w)
			nat_xsave64(S2, E, r3, N, host_mask);
		else
			nat_rst32_xsave64(S2, E, r3, N, host_mask);

		memcpy(f->ks, KP, host_len);
		set_rfbm(f, r3);
		ck_assert_int_eq(run(f, mk(0xae, 5, AREA, w)), KL_ASX_DONE);
		assert_same_state(f->ks, N, it, !w);
	}
}
END_TEST

static void add_native_tests(TCase *tc)
{
	tcase_add_test(tc, test_host_layout);
	tcase_add_test(tc, test_native_save);
	tcase_add_test(tc, test_native_restore);
}
