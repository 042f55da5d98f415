/* Building the seccomp filters from the tables in seccomp_lists.c with
 * libseccomp: at build time by seccomp_gen.c (the default lists, compiled
 * into kvmlite as BPF) and at run time for -sandbox ...=allow sub-options.
 * No GLib: seccomp_gen runs during the build. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h> /* CLONE_THREAD */
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "seccomp_int.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

const char *kl_thread_kind_name(enum kl_thread_kind kind)
{
	static const char *const kind_names[KL_THREAD_KINDS] = { "main", "vcpu", "io-worker",
								 "other" };
	return (unsigned)kind < KL_THREAD_KINDS ? kind_names[kind] : "?";
}

const char *const *kl_sc_group(unsigned bit)
{
	switch (bit) {
	case KL_SANDBOX_OBSOLETE: return kl_sc_group_obsolete;
	case KL_SANDBOX_ELEVATE: return kl_sc_group_elevate;
	case KL_SANDBOX_SPAWN: return kl_sc_group_spawn;
	default: return kl_sc_group_resource;
	}
}

static bool listed(const char **names, unsigned n, const char *name)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return true;
	return false;
}

unsigned kl_sc_list(enum kl_thread_kind kind, unsigned allow_groups,
			 const char **names, unsigned max)
{
	const char *seen[256];
	unsigned n = 0;
	for (unsigned i = 0; i < kl_sc_nrules; i++)
		if ((kl_sc_rules[i].kinds & (1u << kind)) && !listed(seen, n, kl_sc_rules[i].name) &&
		    n < N_ELEMS(seen))
			seen[n++] = kl_sc_rules[i].name;
	for (unsigned bit = 1; bit <= KL_SANDBOX_RESOURCE; bit <<= 1) {
		if (!(allow_groups & bit))
			continue;
		for (const char *const *g = kl_sc_group(bit); *g; g++)
			if (seccomp_syscall_resolve_name(*g) >= 0 && !listed(seen, n, *g) &&
			    n < N_ELEMS(seen))
				seen[n++] = *g;
	}
	for (unsigned i = 0; names && i < n && i < max; i++)
		names[i] = seen[i];
	return n;
}

/* 32-bit argument (int/unsigned int in the kernel): compare the low half. */
#define A32(i, v) ((struct scmp_arg_cmp){ (i), SCMP_CMP_MASKED_EQ, 0xffffffffu, (v) })

static int add_cmd_list(scmp_filter_ctx c, int nr, unsigned argi, const unsigned long *cmds,
			unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct scmp_arg_cmp a = A32(argi, cmds[i]);
		int r = seccomp_rule_add_array(c, SCMP_ACT_ALLOW, nr, 1, &a);
		if (r < 0)
			return r;
	}
	return 0;
}

static int add_rule(scmp_filter_ctx c, enum kl_thread_kind kind, const struct kl_sc_rule *r)
{
	static const unsigned long prctl_ops[] = { PR_SET_NAME, PR_SET_NO_NEW_PRIVS };
	static const unsigned long seccomp_ops[] = { SECCOMP_SET_MODE_FILTER };
	static const unsigned long fam_main[] = { AF_UNIX, AF_INET, AF_INET6 };
	static const unsigned long fam_vcpu[] = { AF_INET, AF_INET6 };
	static const unsigned long fam_unix[] = { AF_UNIX };
	switch (r->arg) {
	case KL_ARG_NONE:
		return seccomp_rule_add(c, SCMP_ACT_ALLOW, r->nr, 0);
	case KL_ARG_NOEXEC:
		return seccomp_rule_add(c, SCMP_ACT_ALLOW, r->nr, 1,
					SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	case KL_ARG_CLONE_THREAD:
		return seccomp_rule_add(c, SCMP_ACT_ALLOW, r->nr, 1,
					SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	case KL_ARG_PRCTL:
		return add_cmd_list(c, r->nr, 0, prctl_ops, N_ELEMS(prctl_ops));
	case KL_ARG_SECCOMP:
		return add_cmd_list(c, r->nr, 0, seccomp_ops, 1);
	case KL_ARG_SOCKET:
		if (kind == KL_THREAD_MAIN)
			return add_cmd_list(c, r->nr, 0, fam_main, N_ELEMS(fam_main));
		return add_cmd_list(c, r->nr, 0, fam_vcpu, N_ELEMS(fam_vcpu));
	case KL_ARG_SOCKETPAIR:
		return add_cmd_list(c, r->nr, 0, fam_unix, 1);
	case KL_ARG_FCNTL:
		return add_cmd_list(c, r->nr, 1, kl_sc_fcntl_cmds, kl_sc_nfcntl);
	case KL_ARG_IOCTL_MAIN:
		return add_cmd_list(c, r->nr, 1, kl_sc_ioctl_main, kl_sc_nioctl_main);
	case KL_ARG_IOCTL_VCPU:
		return add_cmd_list(c, r->nr, 1, kl_sc_ioctl_vcpu, kl_sc_nioctl_vcpu);
	}
	return -EINVAL;
}

#if defined(__SANITIZE_ADDRESS__)
#define KL_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define KL_SANITIZER 1
#endif
#endif

#ifdef KL_SANITIZER
/* ASan/UBSan/LSan builds only: what the sanitizer runtimes call on any
 * thread (reports: /proc/self/maps, symbolizer; LSan's exit-time leak check
 * stops the world with a ptrace-ing clone).  Not in release builds. */
static const char *const sanitizer_extra[] = {
	"openat", "open", "readlink", "readlinkat", "close", "fstat", "newfstatat", "lseek",
	"getdents", "getdents64", "sigaltstack", "rt_sigaction", "ptrace", "wait4", "waitid",
	"sched_yield", "getpid", "tgkill", "kill", "prlimit64", "getrlimit",
	"setrlimit", "dup", "dup2", "pipe", "pipe2", "sched_getaffinity", "nanosleep",
	"clock_nanosleep", "uname", "getppid", "exit", "prctl", "mincore", "read",
	"process_vm_readv", NULL,
};
#endif

int kl_sc_build(enum kl_thread_kind kind, unsigned groups, struct sock_fprog *prog, char *err,
		 size_t errlen)
{
	scmp_filter_ctx c = seccomp_init(SCMP_ACT_TRAP);
	int r = -ENOMEM, fd = -1;
	const char *what = "seccomp_init";
	if (!c)
		goto fail;
	what = "filter attributes";
	if ((r = seccomp_attr_set(c, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0 ||
	    (r = seccomp_attr_set(c, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
		goto fail;
	what = "a rule";
	for (unsigned i = 0; i < kl_sc_nrules; i++)
		if ((kl_sc_rules[i].kinds & (1u << kind)) && (r = add_rule(c, kind, &kl_sc_rules[i])) < 0)
			goto fail;
	/* clone3's flags are behind a pointer seccomp cannot read: ENOSYS makes
	 * glibc fall back to clone, whose flags the CLONE_THREAD rule checks. */
	if ((r = seccomp_rule_add(c, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0)
		goto fail;
	for (unsigned bit = 1; bit <= KL_SANDBOX_RESOURCE; bit <<= 1) {
		if (!(groups & bit))
			continue;
		for (const char *const *g = kl_sc_group(bit); *g; g++) {
			int nr = seccomp_syscall_resolve_name(*g);
			if (nr >= 0 && (r = seccomp_rule_add(c, SCMP_ACT_ALLOW, nr, 0)) < 0)
				goto fail;
		}
		if (bit == KL_SANDBOX_SPAWN && (r = seccomp_rule_add(c, SCMP_ACT_ALLOW, SCMP_SYS(clone), 0)) < 0)
			goto fail;
	}
#ifdef KL_SANITIZER
	for (const char *const *g = sanitizer_extra; *g; g++) {
		int nr = seccomp_syscall_resolve_name(*g);
		if (nr >= 0 && (r = seccomp_rule_add(c, SCMP_ACT_ALLOW, nr, 0)) < 0)
			goto fail;
	}
	/* LSan's stop-the-world tracer: clone(CLONE_VM|CLONE_FS|CLONE_FILES|
	 * CLONE_UNTRACED) -- shares the address space; fork stays refused. */
	if ((r = seccomp_rule_add(c, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				  SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_VM, CLONE_VM))) < 0)
		goto fail;
#endif
	what = "export";
	fd = memfd_create("kl-seccomp", MFD_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = seccomp_export_bpf(c, fd)) < 0)
		goto fail;
	off_t len = lseek(fd, 0, SEEK_END);
	if (len <= 0 || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
		r = -E2BIG;
		goto fail;
	}
	struct sock_filter *insns = malloc(len);
	if (!insns || pread(fd, insns, len, 0) != len) {
		r = -EIO;
		free(insns);
		goto fail;
	}
	prog->len = len / sizeof(struct sock_filter);
	prog->filter = insns;
	close(fd);
	seccomp_release(c);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (c)
		seccomp_release(c);
	snprintf(err, errlen, "seccomp: cannot build the %s thread filter (%s): %s",
		 kl_thread_kind_name(kind), what, strerror(-r));
	return -1;
}
