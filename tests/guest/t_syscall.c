/* Probe test: syscall - ring-3 programs making SYSCALLs, on every CPU.
 *
 * On a PVM host the host's SYSCALL from a guest's ring 3 jumps to LSTAR
 * without entering ring 0; kvmlite's emulation assist (src/cpu/assist/
 * syscall.c, breakpoint.c) completes it from the guest's #PF handler.  Per
 * CPU (own TSS, RSP0 stack, LSTAR stub, KERNEL_GS_BASE):
 *   1. a ring-3 program (t_ring3.S) makes N syscalls, every 4th returning
 *      through IRETQ, the others through SYSRETQ, checking RCX/R11/RFLAGS,
 *      the return value, preserved registers and its GS base; the ring-0
 *      stub checks CS/SS from STAR, SFMASK applied, RSP = the user's, and
 *      that it is this CPU's LSTAR; a last syscall ends the program;
 *      (plus one SYSCALL with a garbage RSP);
 *   2. a hostile ring-3 program jumps to LSTAR (IF set, everything else
 *      like a SYSCALL): it must take #PF, error 0x15, CR2 = RIP = LSTAR, in
 *      the guest's handler, and never run the stub;
 *   3. ordinary ring-3 #PFs (read of an unmapped page, write to a read-only
 *      one) reach the guest's handler with their error code and CR2;
 *   4. 20 more syscalls with a new LSTAR and SFMASK (without AC, which
 *      the user sets): the completion follows them, after those faults.
 * `nx=0` on the command line runs it all without EFER.NXE (a fetch #PF
 * then has error code 0x05: the I bit exists only with NXE or SMEP).
 * With -smp N the APs do the same at the same time (t_smp.c's hook). */
#include "t_assist.h"

#define MSR_EFER 0xc0000080u
#define MSR_STAR 0xc0000081u
#define MSR_LSTAR 0xc0000082u
#define MSR_SFMASK 0xc0000084u
#define MSR_GS_BASE 0xc0000101u
#define MSR_KERNEL_GS_BASE 0xc0000102u
#define EFER_SCE 1ul
#define EFER_NXE (1ul << 11)
#define SFMASK 0x47700ul  /* AC NT IOPL DF IF TF, as Linux */
#define SFMASK2 0x07700ul /* the same without AC (the user sets AC) */
#define SEL_TSS(i) (0x40 + 16 * (i))
#define NCPU 2
#define N_SYSCALLS 200

/* user address space (PML4 slot 2): code alias, stacks, GS pages */
#define U_BASE 0x10000000000ul
#define U_CODE U_BASE
#define U_STACK(i) (U_BASE + 0x100000 + (i) * 0x10000)  /* 2 pages */
#define U_GS(i) (U_BASE + 0x200000 + (i) * 0x1000)

/* layout shared with t_ring3.S (PC_* offsets) */
struct r3_cpu {
	uint64_t self, kstack, user_rsp, saved_krsp;
	uint64_t count, bad, bad_what, bad_val;
	uint64_t exit_code, exit_arg, exit_arg2, index;
	uint64_t iret_count, how, hostile, sfmask;
	/* filled by the fault handler (how = 2) */
	uint64_t f_vec, f_err, f_cr2, f_rip, f_cs;
};
_Static_assert(__builtin_offsetof(struct r3_cpu, sfmask) == 120, "PC_SFMASK");

struct tss64 {
	uint32_t rsv0;
	uint64_t rsp0, rsp1, rsp2, rsv1, ist[7], rsv2;
	uint16_t rsv3, iopb;
} __attribute__((packed));
_Static_assert(sizeof(struct tss64) == 104, "TSS size");

extern const char r3_user_start[], r3_user_end[], r3_user_main[], r3_user_hostile[],
	r3_user_read[], r3_user_write[];
extern const char r3_entry0[], r3_entry1[], r3_entry0b[], r3_entry1b[], r3_back_to_kernel[];
uint64_t r3_enter_user(struct r3_cpu *pc, uint64_t rip, uint64_t rsp, uint64_t arg0,
		       uint64_t arg1);

static uint64_t gdt[8 + 2 * NCPU] __attribute__((aligned(16)));
static struct tss64 tss[NCPU] __attribute__((aligned(16)));
static struct r3_cpu cpus[NCPU] __attribute__((aligned(64)));
static volatile uint32_t ap_done, ap_result, ready, ncpus = 1;
static bool use_nx = true;  /* cmdline nx=0: EFER.NXE off */

static uint64_t user_va(const char *sym)
{
	return U_CODE + (uint64_t)(sym - r3_user_start);
}

static const char *const fail_what[] = {
	"ok", "user GS base wrong at start", "RCX is not the return address",
	"R11 is not the RFLAGS of the SYSCALL", "RFLAGS after return differ from R11",
	"wrong return value", "user RSP changed", "a preserved register changed",
	"user GS base wrong after return (SWAPGS)", "not running in ring 3",
	"RSP not preserved across a SYSCALL with a garbage RSP",
};

/* Exceptions from ring 3 (#PF, #GP, #UD): record them and leave the user
 * program through r3_back_to_kernel; anything from ring 0 fails the test. */
static void r3_fault(struct trap_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	if ((f->cs & 3) != 3) {
		probe_fail("exception %lu in ring 0 at rip 0x%lx error 0x%lx cr2 0x%lx", f->vector,
			   f->rip, f->error, cr2);
		probe_finish(false);
	}
	struct r3_cpu *pc = (struct r3_cpu *)(uintptr_t)rdmsr(MSR_KERNEL_GS_BASE);
	if (pc != &cpus[0] && pc != &cpus[1]) {
		probe_fail("exception %lu from ring 3 at rip 0x%lx with KERNEL_GS_BASE 0x%lx",
			   f->vector, f->rip, (uint64_t)(uintptr_t)pc);
		probe_finish(false);
	}
	pc->f_vec = f->vector;
	pc->f_err = f->error;
	pc->f_cr2 = f->vector == 14 ? cr2 : 0;
	pc->f_rip = f->rip;
	pc->f_cs = f->cs;
	pc->how = 2;
	f->rdi = (uint64_t)(uintptr_t)pc;
	f->rip = (uint64_t)(uintptr_t)r3_back_to_kernel;
	f->cs = 0x18;
	f->ss = 0x10;
	f->rsp = pc->kstack;
	f->rflags = 2;
}

static void gdt_init(void)
{
	gdt[0] = 0;
	gdt[1] = 0x00CF9A000000FFFFul;  /* 0x08 code32 (as start.S) */
	gdt[2] = 0x00CF92000000FFFFul;  /* 0x10 data */
	gdt[3] = 0x00AF9A000000FFFFul;  /* 0x18 kernel code64 = STAR[47:32] */
	gdt[4] = 0x00CF92000000FFFFul;  /* 0x20 kernel data = STAR[47:32] + 8 */
	gdt[5] = 0x00CFFA000000FFFFul;  /* 0x28 user code32 (STAR[63:48] = 0x2b) */
	gdt[6] = 0x00CFF2000000FFFFul;  /* 0x30 user data: 0x33 = STAR[63:48] + 8 */
	gdt[7] = 0x00AFFA000000FFFFul;  /* 0x38 user code64: 0x3b = STAR[63:48] + 16 */
	for (unsigned i = 0; i < NCPU; i++) {
		uint64_t b = (uint64_t)(uintptr_t)&tss[i], lim = sizeof(tss[i]) - 1;
		gdt[8 + 2 * i] = (lim & 0xffff) | (b & 0xffffff) << 16 | 0x89ul << 40 |
				 ((lim >> 16) & 0xf) << 48 | ((b >> 24) & 0xff) << 56;
		gdt[9 + 2 * i] = b >> 32;
	}
}

/* Page tables and stacks every CPU uses; BSP only, before the APs start. */
static int r3_setup_shared(void)
{
	uint64_t code_pa = (uint64_t)(uintptr_t)r3_user_start;
	uint64_t code_len = (uint64_t)(r3_user_end - r3_user_start);

	/* ring 3 runs with IF set: the 8259 (reset vector base 0, and PIT
	 * channel 0 runs once udelay() calibrated) must not deliver IRQ0 as
	 * vector 0; remap it and mask every line */
	pic_init(0x20);
	gdt_init();
	for (uint64_t off = 0; off < code_len; off += 4096)
		if (pt_map4k(U_CODE + off, code_pa + off, PTE_P | PTE_U))
			return probe_fail("cannot map the user code");
	for (unsigned i = 0; i < NCPU; i++) {
		uint8_t *stk = probe_alloc_pages(2), *gsp = probe_alloc_pages(1);
		uint8_t *kst = probe_alloc_pages(2);
		if (!stk || !gsp || !kst || pt_map4k(U_STACK(i), (uintptr_t)stk, PTE_P | PTE_W | PTE_U) ||
		    pt_map4k(U_STACK(i) + 4096, (uintptr_t)stk + 4096, PTE_P | PTE_W | PTE_U) ||
		    pt_map4k(U_GS(i), (uintptr_t)gsp, PTE_P | PTE_W | PTE_U))
			return probe_fail("cannot allocate or map the stacks of CPU %u", i);
		/* the user GS page holds its own address, the program checks it */
		*(uint64_t *)gsp = U_GS(i);
		memset(&cpus[i], 0, sizeof(cpus[i]));
		cpus[i].self = (uint64_t)(uintptr_t)&cpus[i];
		cpus[i].kstack = (uint64_t)(uintptr_t)kst + 8192;
		cpus[i].index = i;
		memset(&tss[i], 0, sizeof(tss[i]));
		tss[i].rsp0 = cpus[i].kstack;
		tss[i].iopb = sizeof(tss[i]);
	}
	for (unsigned v = 0; v < 20; v++)  /* every exception from ring 3 */
		if (v != 2)
			irq_set_handler(v, r3_fault);
	return 0;
}

/* Everything one CPU needs to run ring 3, then the two programs. */
static void r3_gs_for_user(unsigned i)
{
	wrmsr(MSR_GS_BASE, U_GS(i));
	wrmsr(MSR_KERNEL_GS_BASE, cpus[i].self);
}

/* Run the syscall program for n iterations and check what it and the stub saw. */
static int run_main(unsigned i, uint64_t n, uint64_t lstar, const char *when)
{
	struct r3_cpu *pc = &cpus[i];
	uint64_t c0 = pc->count, i0 = pc->iret_count;

	pc->how = 0;
	r3_gs_for_user(i);
	uint64_t t0 = rdtsc();
	uint64_t how = r3_enter_user(pc, user_va(r3_user_main), U_STACK(i) + 8192, n, U_GS(i));
	uint64_t dt = rdtsc() - t0, per = tsc_per_us();
	if (how == 2)
		return probe_fail("cpu %u (%s): ring-3 program took exception %lu (error 0x%lx, "
				  "cr2 0x%lx) at rip 0x%lx cs 0x%lx after %lu syscalls%s", i, when,
				  pc->f_vec, pc->f_err, pc->f_cr2, pc->f_rip, pc->f_cs,
				  pc->count - c0, pc->f_vec == 14 && pc->f_rip == lstar ?
				  ": the SYSCALL did not enter ring 0" : "");
	if (how != 1)
		return probe_fail("cpu %u (%s): ring-3 program came back with how %lu", i, when, how);
	if (pc->exit_code)
		return probe_fail("cpu %u (%s): ring-3 check %lu failed (%s) at iteration %lu, value "
				  "0x%lx", i, when, pc->exit_code,
				  pc->exit_code < sizeof(fail_what) / sizeof(fail_what[0]) ?
				  fail_what[pc->exit_code] : "?", pc->exit_arg, pc->exit_arg2);
	if (pc->bad)
		return probe_fail("cpu %u (%s): %lu syscall entries wrong in ring 0: first bits 0x%lx "
				  "(1 CS, 2 SS, 4 SFMASK bit set, 8 RSP, 16 other CPU's LSTAR), "
				  "rflags 0x%lx", i, when, pc->bad, pc->bad_what, pc->bad_val);
	/* n loop syscalls, the garbage-RSP one, the exit */
	if (pc->exit_arg != n || pc->count - c0 != n + 2 || pc->iret_count - i0 != (n + 3) / 4)
		return probe_fail("cpu %u (%s): %lu iterations, %lu stub entries, %lu IRETQ returns; "
				  "expected %lu, %lu, %lu", i, when, pc->exit_arg, pc->count - c0,
				  pc->iret_count - i0, n, n + 2, (n + 3) / 4);
	printf("syscall: cpu %u: %s: %lu syscalls from ring 3 (%lu via IRETQ) OK, %lu us each\n", i,
	       when, n + 2, (n + 3) / 4, per ? dt / per / (n + 2) : 0);
	return 0;
}

/* Run a ring-3 program that must fault: #PF with error err and cr2, at rip. */
static int run_fault(unsigned i, const char *what, const char *prog, uint64_t arg, uint64_t err,
		     uint64_t cr2)
{
	struct r3_cpu *pc = &cpus[i];
	uint64_t before = pc->count, rip = user_va(prog);

	pc->how = 0;
	r3_gs_for_user(i);
	uint64_t how = r3_enter_user(pc, rip, U_STACK(i) + 8192, arg, 0);
	if (how == 3 || pc->hostile || pc->count != before)
		return probe_fail("cpu %u: %s entered the ring-0 SYSCALL stub (%lu entries)", i, what,
				  pc->count - before);
	if (prog == r3_user_hostile)
		rip = arg;  /* the fault is at LSTAR */
	if (how != 2 || pc->f_vec != 14 || pc->f_err != err || pc->f_cr2 != cr2 ||
	    pc->f_rip != rip || pc->f_cs != 0x3b)
		return probe_fail("cpu %u: %s: how %lu, vector %lu error 0x%lx cr2 0x%lx rip 0x%lx cs "
				  "0x%lx; expected #PF error 0x%lx cr2 0x%lx rip 0x%lx cs 0x3b", i, what,
				  how, pc->f_vec, pc->f_err, pc->f_cr2, pc->f_rip, pc->f_cs, err, cr2,
				  rip);
	printf("syscall: cpu %u: %s: #PF error 0x%lx cr2 0x%lx in the guest's handler\n", i, what,
	       err, cr2);
	return 0;
}

/* This file's GDT and CPU i's TSS on this CPU (once per boot: LTR marks
 * the TSS busy). */
static void r3_load_tables(unsigned i)
{
	struct __attribute__((packed)) { uint16_t lim; uint64_t base; } gdtr = {
		sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt };

	__asm__ volatile("lgdt %0" : : "m"(gdtr) : "memory");
	__asm__ volatile("ltr %w0" : : "r"((uint16_t)SEL_TSS(i)));
	/* GS selector 0 first (a selector load would reset the base) */
	__asm__ volatile("mov %0, %%gs" : : "r"(0u));
}

/* Ring 3 for other tests (t_assist.h): the BSP only, no SYSCALL. */
int r3_setup(void)
{
	if (r3_setup_shared())
		return -1;
	r3_load_tables(0);
	return 0;
}

uint64_t r3_call(uint64_t rip, uint64_t arg, uint64_t *fault_rip)
{
	struct r3_cpu *pc = &cpus[0];

	pc->how = 0;
	r3_gs_for_user(0);
	/* RSP as after a call (RSP + 8 16-byte aligned) */
	uint64_t how = r3_enter_user(pc, rip, U_STACK(0) + 8192 - 8, arg, 0);
	wrmsr(MSR_GS_BASE, 0);
	wrmsr(MSR_KERNEL_GS_BASE, 0);
	*fault_rip = pc->f_rip;
	return how == 2 ? pc->f_vec : ~0ul;
}

/* Everything one CPU needs to run ring 3, then the programs. */
static int r3_run_cpu(unsigned i, unsigned ncpu)
{
	struct r3_cpu *pc = &cpus[i];
	uint64_t lstar = (uint64_t)(uintptr_t)(i ? r3_entry1 : r3_entry0);

	r3_load_tables(i);
	/* EFER.NXE as Linux has it; without NXE (and SMEP) a #PF error code
	 * never has the instruction-fetch bit: a fetch at LSTAR gives 0x05 */
	uint64_t efer = rdmsr(MSR_EFER) | EFER_SCE;
	efer = use_nx ? efer | EFER_NXE : efer & ~EFER_NXE;
	wrmsr(MSR_EFER, efer);
	wrmsr(MSR_STAR, 0x2bul << 48 | 0x18ul << 32);
	wrmsr(MSR_SFMASK, SFMASK);
	pc->sfmask = SFMASK;
	wrmsr(MSR_LSTAR, lstar);

	/* all CPUs enter ring 3 together (bounded wait) */
	__asm__ volatile("lock addl $1, %0" : "+m"(ready) : : "memory");
	for (unsigned k = 0; k < 2000000 && ready < ncpu; k++)
		cpu_relax();

	if (run_main(i, N_SYSCALLS, lstar, "first run"))
		return -1;
	/* hostile: a jump to LSTAR is not a SYSCALL */
	if (run_fault(i, "jmp to LSTAR from ring 3 (IF set)", r3_user_hostile, lstar,
		      use_nx ? 0x15 : 0x05, lstar))
		return -1;
	/* ordinary user faults pass through the armed #PF handler unchanged */
	if (run_fault(i, "ring-3 read of an unmapped page", r3_user_read, U_BASE + 0x300008, 0x4,
		      U_BASE + 0x300008) ||
	    run_fault(i, "ring-3 write to its read-only code page", r3_user_write,
		      user_va(r3_user_start) + 0x10, 0x7, user_va(r3_user_start) + 0x10))
		return -1;
	/* and SYSCALL still works after those, following a new LSTAR and an
	 * SFMASK without AC (odd iterations enter ring 0 with AC set: a stale
	 * SFMASK would make the SYSCALL's RFLAGS look like a jump's) */
	lstar = (uint64_t)(uintptr_t)(i ? r3_entry1b : r3_entry0b);
	wrmsr(MSR_SFMASK, SFMASK2);
	pc->sfmask = SFMASK2;
	wrmsr(MSR_LSTAR, lstar);
	if (run_main(i, 20, lstar, "new LSTAR and SFMASK, after the faults"))
		return -1;
	/* leave no SYSCALL state behind */
	wrmsr(MSR_LSTAR, 0);
	wrmsr(MSR_GS_BASE, 0);
	wrmsr(MSR_KERNEL_GS_BASE, 0);
	return 0;
}

static void ap_hook(unsigned slot)
{
	if (slot + 1 < NCPU)
		ap_result = r3_run_cpu(slot + 1, ncpus) ? 2 : 1;
	__asm__ volatile("lock addl $1, %0" : "+m"(ap_done) : : "memory");
}

static int test_syscall(void)
{
	struct probe_cpus pcs;
	unsigned n = 1;
	char v[8];

	if (probe_cmdline_get("nx", v, sizeof(v)) && !strcmp(v, "0"))
		use_nx = false;

	if (r3_setup_shared())
		return -1;
	if (!probe_find_cpus(&pcs) && pcs.count > 1) {
		if (pcs.count > NCPU)
			return probe_fail("%u CPUs: the test handles %u", pcs.count, NCPU);
		n = pcs.count;
		ncpus = n;
		ap_done = ap_result = ready = 0;
		probe_ap_hook = ap_hook;
		if (probe_smp_start())
			return -1;
	}
	printf("syscall: %u CPU(s), EFER.NXE %s, user code at 0x%lx, LSTAR 0x%lx (cpu 0)\n", n,
	       use_nx ? "on" : "off", U_CODE, (uint64_t)(uintptr_t)r3_entry0);
	if (r3_run_cpu(0, n))
		return -1;
	if (n > 1) {
		uint64_t per = tsc_per_us() ? tsc_per_us() : 1000, end = rdtsc() + 10000000 * per;
		while (ap_done < n - 1 && (int64_t)(rdtsc() - end) < 0)
			cpu_relax();
		if (ap_done < n - 1)
			return probe_fail("AP did not finish its ring-3 programs within 10 s");
		if (ap_result != 1)
			return -1;  /* the AP recorded the reason */
	}
	return 0;
}
PROBE_TEST(syscall, test_syscall);
