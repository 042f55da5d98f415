/* The seccomp allow-lists, one per thread kind (docs/sandbox.md).  Each entry
 * says which kinds may make the call and why.  Everything not listed traps
 * (SIGSYS: src/sandbox/seccomp.c logs the call and the process dies).
 *
 * Built from `strace -f` of the guest and QMP suites, then each call checked
 * against the code that makes it.  The device models run on the vCPU thread
 * that took the exit (MMIO/PIO writes), so the vCPU list holds what a device
 * does on a guest write: eventfd and tap writes, slirp's sockets (e1000 TX
 * goes through slirp_input on the vCPU thread), KVM irq ioctls, and block
 * submission and draining (a virtio queue notify that no ioeventfd caught
 * runs the queue handler on the vCPU thread; a device reset drains). */
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "seccomp_int.h"

#define M (1u << KL_THREAD_MAIN)
#define V (1u << KL_THREAD_VCPU)
#define I (1u << KL_THREAD_IO)
#define O (1u << KL_THREAD_OTHER)
#define ALL (M | V | I | O)

#define R(name, kinds, arg) { __NR_##name, #name, kinds, arg }

const struct kl_sc_rule kl_sc_rules[] = {
	/* --- every thread: the C runtime itself ------------------------- */
	R(futex, ALL, KL_ARG_NONE),           /* mutexes, condvars, sem_wait */
	R(restart_syscall, ALL, KL_ARG_NONE), /* a timed futex wait after a signal */
	R(rt_sigreturn, ALL, KL_ARG_NONE),    /* return from the kick/arm handlers */
	R(rt_sigprocmask, ALL, KL_ARG_NONE),  /* pthread_create/exit, GLib's threads */
	R(exit, ALL, KL_ARG_NONE),            /* thread exit */
	R(exit_group, ALL, KL_ARG_NONE),      /* process exit (quit, fatal errors) */
	R(mmap, ALL, KL_ARG_NOEXEC),          /* malloc arenas, thread stacks; never PROT_EXEC */
	R(mprotect, ALL, KL_ARG_NOEXEC),      /* malloc arena growth, stack guards; never PROT_EXEC */
	R(munmap, ALL, KL_ARG_NONE),          /* free of large blocks, thread stacks */
	R(mremap, ALL, KL_ARG_NONE),          /* realloc of large blocks (keeps the protection) */
	R(madvise, ALL, KL_ARG_NONE),         /* malloc trim, freed thread stacks (MADV_DONTNEED) */
	R(mincore, M, KL_ARG_NONE),           /* live migration: never-touched guest RAM (src/migration/ram.c) */
	R(brk, ALL, KL_ARG_NONE),             /* malloc's main arena (any thread may use it) */
	R(write, ALL, KL_ARG_NONE),           /* eventfd signalling, serial/log output, the SIGSYS line */
	R(gettid, ALL, KL_ARG_NONE),          /* vCPU thread ids, the SIGSYS line */
	R(getpid, M | V, KL_ARG_NONE),        /* pthread_kill (vCPU kick) */
	R(tgkill, M | V, KL_ARG_NONE),        /* vCPU kick (SIGUSR1), arming (main) */
	R(clock_gettime, ALL, KL_ARG_NONE),   /* vDSO fallback */
	R(clock_nanosleep, M | V, KL_ARG_NONE), /* g_usleep (drain waits) */
	R(sched_yield, M | V | I, KL_ARG_NONE), /* glibc spin locks, g_thread_yield */
	R(read, M | V | O, KL_ARG_NONE),      /* eventfds, serial input, tap, files */
	R(close, M | V, KL_ARG_NONE),         /* QMP clients, slirp sockets, closed images */
	R(seccomp, M | V | O, KL_ARG_SECCOMP), /* a thread created by a filtered one stacks its own list */
	R(prctl, M | V | O, KL_ARG_PRCTL),    /* thread names (PR_SET_NAME), no_new_privs before seccomp */
	/* thread creation: blockdev-add (I/O workers), GLib's gmain; never a process */
	R(clone, M | O, KL_ARG_CLONE_THREAD),
	R(set_robust_list, M | O, KL_ARG_NONE), /* start of a thread created after arming */
	R(rseq, M | O, KL_ARG_NONE),          /* start of a thread created after arming */

	/* GLib installs its SIGTERM/SIGINT/SIGHUP handler from the thread that
	 * creates the first unix signal source (the "other" helper).  SIGSYS
	 * stays deadly: the kernel resets an ignored SIGSYS before forcing it. */
	R(rt_sigaction, O, KL_ARG_NONE),

	/* --- event loops ------------------------------------------------- */
	R(poll, M | O, KL_ARG_NONE),          /* g_poll (GLib main loops) */
	R(ppoll, M | O, KL_ARG_NONE),         /* g_poll on some glibc builds */
	R(eventfd2, M | V | O, KL_ARG_NONE),  /* virtio queue notifiers, block completion fds, GLib wakeups */
	R(timerfd_create, M, KL_ARG_NONE),
	R(timerfd_settime, M | V, KL_ARG_NONE), /* limiter/ptimer timers (armed from device code) */
	R(timerfd_gettime, M | V, KL_ARG_NONE),
	R(pipe2, M, KL_ARG_NONE),             /* GLib wakeups */

	/* --- files: block layer, QMP blockdev-add/snapshot, pidfile ----- */
	R(openat, M, KL_ARG_NONE),            /* blockdev-add, blockdev-snapshot-sync, -daemonize /dev/null */
	R(unlink, M, KL_ARG_NONE),            /* pidfile and QMP socket at exit */
	R(unlinkat, M, KL_ARG_NONE),
	R(newfstatat, M, KL_ARG_NONE),        /* fstat of images, stdio */
	R(fstat, M, KL_ARG_NONE),
	R(statx, M, KL_ARG_NONE),
	R(fstatfs, M, KL_ARG_NONE),           /* O_DIRECT alignment probing */
	R(statfs, M, KL_ARG_NONE),
	R(lseek, M | V, KL_ARG_NONE),
	R(pread64, M | V | I, KL_ARG_NONE),   /* qcow2 metadata, probing */
	R(pwrite64, M | V | I, KL_ARG_NONE),
	R(preadv, M | V | I, KL_ARG_NONE),    /* guest data (workers; sync paths on main) */
	R(pwritev, M | V | I, KL_ARG_NONE),
	R(fdatasync, M | V | I, KL_ARG_NONE), /* flush */
	R(fsync, M | V | I, KL_ARG_NONE),
	R(fallocate, M | V | I, KL_ARG_NONE), /* discard, write-zeroes, qcow2 cluster allocation */
	R(ftruncate, M | V, KL_ARG_NONE),     /* image creation, qcow2 growth */
	R(readv, M | V, KL_ARG_NONE),         /* tap */
	R(writev, M | V, KL_ARG_NONE),        /* tap, serial */
	R(dup, M, KL_ARG_NONE),
	R(dup2, M, KL_ARG_NONE),              /* -daemonize: stdio onto /dev/null */
	R(dup3, M, KL_ARG_NONE),
	R(fcntl, M | V, KL_ARG_FCNTL),        /* O_NONBLOCK on QMP/slirp/tap fds */
	R(ioctl, M, KL_ARG_IOCTL_MAIN),
	R(ioctl, V, KL_ARG_IOCTL_VCPU),
	R(getrandom, M, KL_ARG_NONE),         /* GLib hash seeds, slirp */

	/* --- native AIO and io_uring (submitted and reaped on main) ----- */
	R(io_setup, M, KL_ARG_NONE),          /* blockdev-add aio=native */
	R(io_destroy, M, KL_ARG_NONE),
	R(io_submit, M | V, KL_ARG_NONE),
	R(io_getevents, M | V, KL_ARG_NONE),
	R(io_cancel, M, KL_ARG_NONE),
	R(io_uring_setup, M, KL_ARG_NONE),    /* blockdev-add aio=io_uring */
	R(io_uring_enter, M | V, KL_ARG_NONE),
	R(io_uring_register, M, KL_ARG_NONE),

	/* --- sockets: QMP (AF_UNIX/TCP), slirp, -netdev socket ---------- */
	R(socket, M | V, KL_ARG_SOCKET),      /* AF_UNIX, AF_INET, AF_INET6 only */
	R(socketpair, M, KL_ARG_SOCKETPAIR),  /* AF_UNIX only */
	R(accept4, M, KL_ARG_NONE),
	R(accept, M, KL_ARG_NONE),
	R(bind, M | V, KL_ARG_NONE),          /* slirp binds UDP sockets on guest traffic */
	R(listen, M | V, KL_ARG_NONE),        /* slirp hostfwd/guestfwd */
	R(connect, M | V, KL_ARG_NONE),       /* slirp outbound TCP on guest traffic */
	R(shutdown, M | V, KL_ARG_NONE),
	R(getsockname, M | V, KL_ARG_NONE),
	R(getpeername, M | V, KL_ARG_NONE),
	R(getsockopt, M | V, KL_ARG_NONE),
	R(setsockopt, M | V, KL_ARG_NONE),
	R(sendto, M | V, KL_ARG_NONE),
	R(recvfrom, M | V, KL_ARG_NONE),
	R(sendmsg, M | V, KL_ARG_NONE),
	R(recvmsg, M | V, KL_ARG_NONE),
	R(sendmmsg, M | V, KL_ARG_NONE),
	R(recvmmsg, M | V, KL_ARG_NONE),
};
const unsigned kl_sc_nrules = sizeof(kl_sc_rules) / sizeof(kl_sc_rules[0]);

/* ioctl requests on the main thread: KVM VM/vCPU state for QMP, reset and
 * the interrupt routing devices change at run time; the tty (restore at
 * exit); tap offloads; host block devices opened by blockdev-add. */
const unsigned long kl_sc_ioctl_main[] = {
	KVM_CHECK_EXTENSION, KVM_IRQ_LINE, KVM_IRQFD, KVM_IOEVENTFD, KVM_SET_GSI_ROUTING,
	KVM_SIGNAL_MSI, KVM_SET_USER_MEMORY_REGION, KVM_GET_IRQCHIP, KVM_SET_IRQCHIP,
	KVM_GET_PIT2, KVM_SET_PIT2,
	KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_FPU, KVM_SET_FPU,
	KVM_GET_LAPIC, KVM_SET_LAPIC, KVM_GET_MP_STATE, KVM_SET_MP_STATE,
	KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, KVM_GET_MSRS, KVM_SET_MSRS,
	KVM_GET_XCRS, KVM_SET_XCRS, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_SET_XSAVE,
	KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS,
	KVM_GET_CLOCK, KVM_SET_CLOCK,   /* migration: the kvmclock section */
	KVM_GET_DIRTY_LOG,              /* migration: pre-copy */
	KVM_SET_GUEST_DEBUG,            /* snapshot-load: the assist's breakpoints of a
					   vCPU that ran are cleared (re-armed later) */
	TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ, FIONBIO,
	TUNSETOFFLOAD, TUNSETVNETHDRSZ,
	BLKSSZGET, BLKGETSIZE64,
};
const unsigned kl_sc_nioctl_main = sizeof(kl_sc_ioctl_main) / sizeof(kl_sc_ioctl_main[0]);

/* ioctl requests on vCPU threads: KVM_RUN and the vCPU state (reset, the
 * emulation assist, debug), the VM-level interrupt ioctls the device models
 * make on a guest write (MSI-X, PIC/IOAPIC lines, irqfd/ioeventfd and
 * memory slots on BAR programming, PIT/irqchip on reset), tap offloads
 * (virtio-net feature negotiation) and the tty (isatty of the serial). */
const unsigned long kl_sc_ioctl_vcpu[] = {
	KVM_RUN,
	KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_FPU, KVM_SET_FPU,
	KVM_GET_LAPIC, KVM_SET_LAPIC, KVM_GET_MP_STATE, KVM_SET_MP_STATE,
	KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, KVM_GET_MSRS, KVM_SET_MSRS,
	KVM_GET_XCRS, KVM_SET_XCRS, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_SET_XSAVE,
	KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS,
	KVM_SET_GUEST_DEBUG, KVM_TRANSLATE,
	KVM_IRQ_LINE, KVM_IRQFD, KVM_IOEVENTFD, KVM_SET_GSI_ROUTING, KVM_SIGNAL_MSI,
	KVM_SET_USER_MEMORY_REGION, KVM_GET_IRQCHIP, KVM_SET_IRQCHIP, KVM_GET_PIT2, KVM_SET_PIT2,
	TUNSETOFFLOAD, TUNSETVNETHDRSZ,
	TCGETS,
};
const unsigned kl_sc_nioctl_vcpu = sizeof(kl_sc_ioctl_vcpu) / sizeof(kl_sc_ioctl_vcpu[0]);

const unsigned long kl_sc_fcntl_cmds[] = {
	F_GETFL, F_SETFL, F_GETFD, F_SETFD, F_DUPFD_CLOEXEC,
};
const unsigned kl_sc_nfcntl = sizeof(kl_sc_fcntl_cmds) / sizeof(kl_sc_fcntl_cmds[0]);

/* QEMU 7.2's groups (softmmu/qemu-seccomp.c), names resolved by libseccomp
 * (some do not exist on x86-64 and are skipped). */
const char *const kl_sc_group_obsolete[] = {
	"readdir", "_sysctl", "bdflush", "create_module", "get_kernel_syms", "query_module",
	"sgetmask", "ssetmask", "sysfs", "uselib", "ustat", "vm86", "vm86old", NULL,
};
const char *const kl_sc_group_elevate[] = {
	"setuid", "setgid", "setpgid", "setsid", "setreuid", "setregid", "setresuid",
	"setresgid", "setfsuid", "setfsgid", NULL,
};
const char *const kl_sc_group_spawn[] = {
	"fork", "vfork", "execve", "execveat", NULL, /* and clone without CLONE_THREAD */
};
const char *const kl_sc_group_resource[] = {
	"setpriority", "sched_setparam", "sched_setscheduler", "sched_setattr",
	"sched_setaffinity", "getpriority", "sched_getparam", "sched_getscheduler",
	"sched_getattr", "sched_getaffinity", "sched_get_priority_max",
	"sched_get_priority_min", NULL,
};
