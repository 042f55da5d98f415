/* Internal to src/sandbox: the allow-list tables (seccomp_lists.c). */
#ifndef KL_SECCOMP_INT_H
#define KL_SECCOMP_INT_H

#include <linux/filter.h>
#include <stddef.h>

#include "kvmlite/seccomp.h"

enum kl_sc_arg {
	KL_ARG_NONE,
	KL_ARG_NOEXEC,        /* mmap/mprotect: arg2 without PROT_EXEC */
	KL_ARG_CLONE_THREAD,  /* clone: arg0 has CLONE_THREAD (threads, never processes) */
	KL_ARG_PRCTL,         /* prctl: PR_SET_NAME, PR_SET_NO_NEW_PRIVS */
	KL_ARG_SECCOMP,       /* seccomp: SECCOMP_SET_MODE_FILTER (stacking only) */
	KL_ARG_SOCKET,        /* socket: AF_UNIX (main only), AF_INET, AF_INET6 */
	KL_ARG_SOCKETPAIR,    /* socketpair: AF_UNIX */
	KL_ARG_FCNTL,         /* fcntl: kl_sc_fcntl_cmds */
	KL_ARG_IOCTL_MAIN,    /* ioctl: kl_sc_ioctl_main */
	KL_ARG_IOCTL_VCPU,    /* ioctl: kl_sc_ioctl_vcpu */
};

struct kl_sc_rule {
	int nr;
	const char *name;
	unsigned kinds; /* 1 << enum kl_thread_kind */
	enum kl_sc_arg arg;
};

extern const struct kl_sc_rule kl_sc_rules[];
extern const unsigned kl_sc_nrules;
extern const unsigned long kl_sc_ioctl_main[], kl_sc_ioctl_vcpu[], kl_sc_fcntl_cmds[];
extern const unsigned kl_sc_nioctl_main, kl_sc_nioctl_vcpu, kl_sc_nfcntl;
extern const char *const kl_sc_group_obsolete[], *const kl_sc_group_elevate[],
	*const kl_sc_group_spawn[], *const kl_sc_group_resource[];


/* seccomp_build.c */
const char *const *kl_sc_group(unsigned bit);
unsigned kl_sc_list(enum kl_thread_kind kind, unsigned groups, const char **names, unsigned max);
/* The filter of kind with the groups added; prog->filter malloc'd.  0 or -1
 * with a message in err. */
int kl_sc_build(enum kl_thread_kind kind, unsigned groups, struct sock_fprog *prog, char *err,
		size_t errlen);

/* Generated at build time by seccomp_gen.c (seccomp_bpf.c): the default
 * lists as BPF, and syscall names for the SIGSYS line. */
#define KL_SC_MAX_NR 512
extern const struct sock_filter *const kl_sc_prebuilt[KL_THREAD_KINDS];
extern const unsigned short kl_sc_prebuilt_len[KL_THREAD_KINDS];
extern const char *const kl_sc_names[KL_SC_MAX_NR];

#endif
