/* Probe guest entry: PVH 32-bit entry, long-mode switch, AP trampoline,
 * interrupt stubs, GDT and boot page tables.
 *
 * Segment selectors (gdt below): 0x08 flat 32-bit code, 0x10 flat data,
 * 0x18 64-bit code. */

#define SEL_CODE32 0x08
#define SEL_DATA 0x10
#define SEL_CODE64 0x18
#define MSR_EFER 0xC0000080
#define EFER_LME 0x100
#define CR0_PE 0x1
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
/* Where tests copy the AP trampoline (must match probe.h users). */
#define TRAMPOLINE_BASE 0x8000
#define BSP_STACK_SIZE 0x8000

/* ---- PVH ELF note: XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen" ------------ */
	.pushsection .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 8			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_start32	/* 32-bit physical entry (zero-extended) */
	.popsection

/* Enter long mode from flat 32-bit protected mode and far-jump to \target.
 * Clobbers eax, ecx, edx. */
.macro ENTER_LONG_MODE target
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_CODE64, $\target
.endm

.macro LOAD_DATA_SEGMENTS
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
.endm

/* ---- BSP entry ----------------------------------------------------------- */
	.section .text.entry, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	cld
	/* First serial byte at once (a newline): bench/startup measures the
	 * VMM's start-up to the guest's first instruction, not probe set-up. */
	movw $0x3f8, %dx
	movb $0x0a, %al
	outb %al, %dx
	movl %ebx, boot_info_pa
	lgdtl gdt_desc
	ljmp $SEL_CODE32, $1f
1:	LOAD_DATA_SEGMENTS
	movl $bsp_stack_top, %esp
	/* zero .bss (loaders zero it on first load; a reset may not) */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb
	ENTER_LONG_MODE bsp_entry64

/* ---- AP entry, reached from the real-mode trampoline --------------------- */
	.globl ap_entry32
ap_entry32:
	LOAD_DATA_SEGMENTS
	ENTER_LONG_MODE ap_entry64

	.code64
bsp_entry64:
	LOAD_DATA_SEGMENTS
	movq $bsp_stack_top, %rsp
	xorl %ebp, %ebp
	movl boot_info_pa, %edi
	call probe_main
2:	cli
	hlt
	jmp 2b

ap_entry64:
	LOAD_DATA_SEGMENTS
	/* slot = ap_next_slot++; rsp = ap_stack_base + (slot + 1) * ap_stack_size */
	movl $1, %eax
	lock xaddl %eax, ap_next_slot
	movl %eax, %edi
	leaq 1(%rax), %rax
	imulq ap_stack_size, %rax
	addq ap_stack_base, %rax
	movq %rax, %rsp
	xorl %ebp, %ebp
	lidt idt_desc
	call probe_ap_main
3:	cli
	hlt
	jmp 3b

/* ---- real-mode AP trampoline, copied to TRAMPOLINE_BASE ------------------ */
	.section .rodata.trampoline, "a"
	.code16
	.globl trampoline_start, trampoline_end
trampoline_start:
	cli
	cld
	lgdtl %cs:(tramp_gdtr - trampoline_start)
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $SEL_CODE32, $ap_entry32
	.balign 8
tramp_gdtr:
	.word gdt_end - gdt - 1
	.long gdt
trampoline_end:
	.code64

/* ---- interrupt stubs: 16 bytes each, vector v at isr_stubs + 16 * v ------ */
	.text
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	/* CPU pushed an error code */
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	cld
	call probe_trap
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/* ---- data ---------------------------------------------------------------- */
	.data
	.balign 16
	.globl gdt, gdt_end
gdt:
	.quad 0
	.quad 0x00CF9A000000FFFF	/* 0x08 code32 */
	.quad 0x00CF92000000FFFF	/* 0x10 data */
	.quad 0x00AF9A000000FFFF	/* 0x18 code64 */
gdt_end:
	.balign 8
	.word 0, 0, 0
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.balign 8
	.globl boot_info_pa, ap_next_slot, ap_stack_base, ap_stack_size
boot_info_pa:	.long 0
ap_next_slot:	.long 0
ap_stack_base:	.quad 0
ap_stack_size:	.quad 0

/* Boot page tables: PML4[0] -> PDPT, PDPT[0..7] -> 8 page directories of
 * 2 MiB pages = identity map of 0..8 GiB (MMIO at 0xFEC00000/0xFEE00000 is
 * inside).  Built by the assembler so the guest spends no time on it. */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4, boot_pdpt, boot_pd
pml4:
	.quad boot_pdpt + 0x3
	.fill 511, 8, 0
boot_pdpt:
	.set i, 0
	.rept 8
	.quad boot_pd + i * 4096 + 0x3
	.set i, i + 1
	.endr
	.fill 504, 8, 0
boot_pd:
	.set i, 0
	.rept 4096
	.quad (i << 21) | 0x83		/* present, writable, 2 MiB page */
	.set i, i + 1
	.endr

	.section .stack, "aw", @nobits
	.balign 16
bsp_stack:
	.skip BSP_STACK_SIZE
bsp_stack_top:

	.section .note.GNU-stack, "", @progbits
