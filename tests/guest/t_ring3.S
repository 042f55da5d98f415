/* Ring-3 side of the probe test 'syscall' (t_syscall.c): SYSCALL entry
 * stubs (ring 0), the way into ring 3 and back, and the user programs.
 *
 * Selectors (t_syscall.c's GDT): 0x18 kernel CS, 0x20 kernel SS (SYSCALL:
 * STAR[47:32] + 8), 0x3b user CS, 0x33 user SS (SYSRET: STAR[63:48] = 0x2b,
 * + 16 and + 8).  GS: the user's GS base while in ring 3, the CPU's
 * struct r3_cpu (KERNEL_GS_BASE) after SWAPGS.
 *
 * System calls (RAX): 1 = return RDI * 3 + 7 through SYSRETQ, 2 = the same
 * through IRETQ, 0xe0f = end of the user program (RDI = 0 or the failed
 * check, RSI = iterations done, RDX = the offending value); 0x77 is the
 * hostile program's RAX (reaching the stub with it is a failure).  The
 * kernel preserves every register but RAX, RCX and R11.  By convention the
 * user puts its RSP in R10 before each SYSCALL, for the stub to check. */

/* struct r3_cpu offsets (t_syscall.c) */
#define PC_SELF 0
#define PC_KSTACK 8
#define PC_USER_RSP 16
#define PC_SAVED_KRSP 24
#define PC_COUNT 32
#define PC_BAD 40
#define PC_BAD_WHAT 48
#define PC_BAD_VAL 56
#define PC_EXIT_CODE 64
#define PC_EXIT_ARG 72
#define PC_EXIT_ARG2 80
#define PC_INDEX 88
#define PC_IRET_COUNT 96
#define PC_HOW 104
#define PC_HOSTILE 112
#define PC_SFMASK 120

#define KERNEL_CS 0x18
#define KERNEL_SS 0x20
#define USER_CS 0x3b
#define USER_SS 0x33
#define SYS_SYSRET 1
#define SYS_IRET 2
#define SYS_EXIT 0xe0f
#define SYS_HOSTILE 0x77

	.text
/* Entry stubs, two per CPU (each CPU's LSTAR is its own, and the test
 * moves it): check what SYSCALL must have produced, then the common part. */
.macro ENTRY name, k
	.balign 16
	.globl \name
\name:
	swapgs
	movq %rsp, %gs:PC_USER_RSP
	movq %gs:PC_KSTACK, %rsp
	pushq %rdx
	pushq %r8
	incq %gs:PC_COUNT
	xorl %r8d, %r8d
	mov %cs, %edx
	cmpl $KERNEL_CS, %edx
	je 1f
	orl $1, %r8d		/* CS is not STAR[47:32] */
1:	mov %ss, %edx
	cmpl $KERNEL_SS, %edx
	je 1f
	orl $2, %r8d		/* SS is not STAR[47:32] + 8 */
1:	pushfq
	popq %rdx
	testq %rdx, %gs:PC_SFMASK
	jz 1f
	orl $4, %r8d		/* a bit of the current SFMASK survived */
1:	cmpq %gs:PC_USER_RSP, %r10
	je 1f
	orl $8, %r8d		/* RSP at entry is not the user's */
1:	cmpq $\k, %gs:PC_INDEX
	je 1f
	orl $16, %r8d		/* another CPU's LSTAR */
1:	testl %r8d, %r8d
	jz r3_entry_common
	incq %gs:PC_BAD
	cmpq $0, %gs:PC_BAD_WHAT
	jne r3_entry_common
	movq %r8, %gs:PC_BAD_WHAT
	movq %rdx, %gs:PC_BAD_VAL	/* the RFLAGS seen */
	jmp r3_entry_common
.endm
	ENTRY r3_entry0, 0
	ENTRY r3_entry1, 1
	ENTRY r3_entry0b, 0
	ENTRY r3_entry1b, 1

r3_entry_common:
	cmpq $SYS_EXIT, %rax
	je r3_exit
	cmpq $SYS_HOSTILE, %rax
	je r3_hostile_arrived
	movq %rax, %rdx
	leaq 7(%rdi,%rdi,2), %rax
	cmpq $SYS_IRET, %rdx
	je r3_iret_path
	popq %r8
	popq %rdx
	movq %gs:PC_USER_RSP, %rsp
	swapgs
	sysretq

r3_iret_path:
	incq %gs:PC_IRET_COUNT
	popq %r8
	popq %rdx
	pushq $USER_SS
	pushq %gs:PC_USER_RSP
	pushq %r11		/* RFLAGS */
	pushq $USER_CS
	pushq %rcx		/* RIP */
	swapgs
	iretq

r3_hostile_arrived:
	incq %gs:PC_HOSTILE
	movq $3, %gs:PC_HOW
	movq %gs:PC_SELF, %rdi
	jmp r3_back_to_kernel

r3_exit:
	popq %r8
	popq %rdx
	movq %rdi, %gs:PC_EXIT_CODE
	movq %rsi, %gs:PC_EXIT_ARG
	movq %rdx, %gs:PC_EXIT_ARG2
	movq $1, %gs:PC_HOW
	movq %gs:PC_SELF, %rdi
	/* fall through */

/* Back to r3_enter_user's caller; RDI = struct r3_cpu.  Also the target of
 * t_syscall.c's fault handler for exceptions from ring 3. */
	.globl r3_back_to_kernel
r3_back_to_kernel:
	movq PC_SAVED_KRSP(%rdi), %rsp
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movq PC_HOW(%rdi), %rax
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

/* uint64_t r3_enter_user(struct r3_cpu *pc, uint64_t rip, uint64_t rsp,
 *                        uint64_t arg0, uint64_t arg1)
 * IRETQ to rip in ring 3 (IF set) with RDI = arg0, RSI = arg1; returns
 * pc->how when the program comes back (exit syscall or fault). */
	.globl r3_enter_user
r3_enter_user:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, PC_SAVED_KRSP(%rdi)
	pushq $USER_SS
	pushq %rdx
	pushq $0x202
	pushq $USER_CS
	pushq %rsi
	movq %rcx, %rdi
	movq %r8, %rsi
	xorl %eax, %eax
	xorl %ecx, %ecx
	xorl %edx, %edx
	xorl %r8d, %r8d
	xorl %r9d, %r9d
	xorl %r10d, %r10d
	xorl %r11d, %r11d
	iretq

/* ---- ring 3: mapped (alone) at a user address, position independent ---- */
	.section .text.user, "ax"
	.balign 4096
	.globl r3_user_start, r3_user_end, r3_user_main, r3_user_hostile
r3_user_start:

.macro FAIL code, reg
	movl $\code, %edi
	movq \reg, %rdx
	jmp r3_user_fail
.endm

/* RDI = iterations, RSI = the value expected at %gs:0 (user GS base) */
r3_user_main:
	movq %rdi, %r12
	movq %rsi, %r13
	xorl %r14d, %r14d
	movabsq $0x0123456789abcdef, %rbx
	movabsq $0x0fedcba987654321, %rbp
	/* CPL 3 (on PVM hosts ring 3 runs natively with the HOST's user
	 * selectors: CS reads 0x33 there, not USER_CS) */
	mov %cs, %eax
	andl $3, %eax
	cmpl $3, %eax
	je 1f
	mov %cs, %eax
	FAIL 9, %rax		/* not in ring 3 */
1:	movq %gs:0, %rax
	cmpq %r13, %rax
	je .Lloop
	FAIL 1, %rax		/* user GS base wrong before the first syscall */
.Lloop:
	cmpq %r12, %r14
	jae .Ldone
	movq %r14, %rdi
	movl $SYS_SYSRET, %eax
	testb $3, %r14b
	jnz 1f
	movl $SYS_IRET, %eax	/* every 4th through IRETQ */
1:	movabsq $0x5a5a5a5a5a5a5a5a, %r15
	movq %rsp, %r10
	/* odd iterations: AC DF CF set (SFMASK must clear AC and DF in ring 0) */
	pushfq
	testb $1, %r14b
	jz 2f
	orq $0x40401, (%rsp)
	jmp 3f
2:	andq $~0x40401, (%rsp)
3:	popfq
	pushfq
	popq %r9		/* expected R11 */
	leaq .Lret(%rip), %r8	/* expected RCX */
	syscall
.Lret:
	pushfq
	popq %rdx
	pushfq
	andq $~0x40401, (%rsp)
	popfq
	cmpq %r8, %rcx
	je 1f
	FAIL 2, %rcx		/* RCX is not the address after the SYSCALL */
1:	cmpq %r9, %r11
	je 1f
	FAIL 3, %r11		/* R11 is not RFLAGS */
1:	cmpq %r9, %rdx
	je 1f
	FAIL 4, %rdx		/* RFLAGS not restored from R11 */
1:	leaq 7(%r14,%r14,2), %rdx
	cmpq %rdx, %rax
	je 1f
	FAIL 5, %rax		/* wrong return value */
1:	cmpq %r10, %rsp
	je 1f
	FAIL 6, %rsp		/* user RSP changed */
1:	movabsq $0x0123456789abcdef, %rdx
	cmpq %rdx, %rbx
	je 1f
	FAIL 7, %rbx		/* a preserved register changed */
1:	movabsq $0x0fedcba987654321, %rdx
	cmpq %rdx, %rbp
	je 1f
	FAIL 7, %rbp
1:	movabsq $0x5a5a5a5a5a5a5a5a, %rdx
	cmpq %rdx, %r15
	je 1f
	FAIL 7, %r15
1:	movq %gs:0, %rdx
	cmpq %r13, %rdx
	je 1f
	FAIL 8, %rdx		/* SWAPGS not undone: user GS base wrong */
1:	incq %r14
	jmp .Lloop
.Ldone:
	/* one SYSCALL with a garbage RSP: nothing may depend on it */
	movq %rsp, %r15
	movl $0x1230, %esp
	movq %rsp, %r10
	movl $SYS_SYSRET, %eax
	movl $5, %edi
	syscall
	movq %rsp, %rdx
	movq %r15, %rsp
	cmpq $0x1230, %rdx
	je 1f
	FAIL 10, %rdx		/* the garbage RSP was not given back */
1:	cmpq $22, %rax
	je 1f
	FAIL 5, %rax
1:	xorl %edi, %edi
	xorl %edx, %edx
r3_user_fail:
	movq %r14, %rsi
	movl $SYS_EXIT, %eax
	movq %rsp, %r10
	syscall
	ud2

/* The hostile program: RDI = LSTAR.  It makes everything look like a
 * SYSCALL (RCX after a real "0f 05", R11 = RFLAGS, RSP in R10) except that
 * it jumps to LSTAR, with IF set as ring 3 always has it: it must take #PF
 * (error P|U|I = 0x15, CR2 = LSTAR), never run the entry stub. */
r3_user_hostile:
	leaq .Lfake_ret(%rip), %rcx
	pushfq
	popq %r11
	movl $SYS_HOSTILE, %eax
	movq %rsp, %r10
	jmp *%rdi
	syscall			/* never executed: only for the "0f 05" before RCX */
.Lfake_ret:
	ud2

/* Ordinary ring-3 page faults (they must reach the guest's handler as
 * they are): read from RDI, write to RDI. */
	.globl r3_user_read, r3_user_write
r3_user_read:
	movq (%rdi), %rax
	ud2
r3_user_write:
	movq %rax, (%rdi)
	ud2

	.balign 4096
r3_user_end:

	.section .note.GNU-stack, "", @progbits
