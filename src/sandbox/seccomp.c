/* seccomp sandbox (docs/sandbox.md): one BPF allow-list per thread kind,
 * compiled with libseccomp before anything is filtered and installed by each
 * thread in its own context (filters are per thread):
 *   - main: kl_sandbox_arm();
 *   - threads registered before arming (I/O workers, vCPUs): a signal
 *     (SIG_ARM) whose handler installs the thread's list -- seccomp(2) and
 *     prctl(2) are plain syscalls, async-signal-safe -- and posts a semaphore
 *     main waits on;
 *   - threads registered after arming: at once, in kl_sandbox_thread_start;
 *   - GLib's gmain (blocks every signal, runs no code of ours): created by a
 *     helper thread that installed the "other" list first (kl_sandbox_run_other).
 * A forbidden call traps: the SIGSYS handler writes one line naming the
 * thread kind and the syscall, then repeats the call with the default
 * action restored, so the process dies of SIGSYS. */
#include "kvmlite/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "kvmlite/opts.h"
#include "seccomp_int.h"

static struct kl_sandbox_opts cfg = { .enable = KL_SANDBOX_DEFAULT_ON };
static bool built, armed;
static struct sock_fprog progs[KL_THREAD_KINDS];
static pid_t pid;

/* Registered threads not yet armed (tid, kind); under reg_lock. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static GArray *reg_tids;
static sem_t arm_sem;
static int arm_errno; /* first failure of an install in a SIG_ARM handler */

static __thread int tls_kind = KL_THREAD_OTHER;
static __thread int tls_tid;

#define kind_names(k) kl_thread_kind_name(k)

/* ---- -sandbox ------------------------------------------------------- */

static int parse_group(struct kl_opts *o, const char *key, unsigned bit, bool children_ok,
		       bool *children, unsigned *groups, char **err)
{
	const char *v = kl_opts_get(o, key);
	if (!v || !strcmp(v, "deny"))
		return 0;
	if (!strcmp(v, "allow")) {
		*groups |= bit;
		return 0;
	}
	if (children_ok && !strcmp(v, "children")) {
		*children = true; /* deny, and no_new_privs (always set here) */
		return 0;
	}
	*err = g_strdup_printf("invalid argument for %s: '%s' (allow, deny%s)", key, v,
			       children_ok ? ", children" : "");
	return -1;
}

int kl_sandbox_parse(const char *spec, struct kl_sandbox_opts *out, char **err)
{
	struct kl_opts *o = kl_opts_parse(spec, "enable", err);
	struct kl_sandbox_opts r = { 0 };
	bool children = false;
	int ret = -1;
	if (!o)
		goto out;
	if (!kl_opts_get(o, "enable")) {
		*err = g_strdup("on or off is required");
		goto out;
	}
	if (kl_opts_get_bool(o, "enable", false, &r.enable, err) < 0)
		goto out;
	if (parse_group(o, "obsolete", KL_SANDBOX_OBSOLETE, false, &children, &r.allow_groups, err) < 0 ||
	    parse_group(o, "elevateprivileges", KL_SANDBOX_ELEVATE, true, &children,
			&r.allow_groups, err) < 0 ||
	    parse_group(o, "spawn", KL_SANDBOX_SPAWN, false, &children, &r.allow_groups, err) < 0 ||
	    parse_group(o, "resourcecontrol", KL_SANDBOX_RESOURCE, false, &children,
			&r.allow_groups, err) < 0)
		goto out;
	char *what = g_strdup_printf("-sandbox %s", spec);
	int unused = kl_opts_check_unused(o, what, err);
	g_free(what);
	if (unused < 0) {
		kl_opts_free(o);
		return -1; /* *err names -sandbox SPEC already */
	}
	*out = r;
	ret = 0;
out:
	if (ret < 0) {
		char *e = *err;
		*err = g_strdup_printf("-sandbox %s: %s", spec, e);
		g_free(e);
	}
	if (o)
		kl_opts_free(o);
	return ret;
}

void kl_sandbox_configure(const struct kl_sandbox_opts *o)
{
	cfg = *o;
}

bool kl_sandbox_enabled(void)
{
	return cfg.enable;
}

unsigned kl_sandbox_list(enum kl_thread_kind kind, unsigned allow_groups,
			 const char **names, unsigned max)
{
	return kl_sc_list(kind, allow_groups, names, max);
}

/* The default lists were compiled at build time (seccomp_gen.c); QEMU's
 * "allow" sub-options change them, so those are compiled here. */
static int build_all(char **err)
{
	if (built)
		return 0;
	for (int k = 0; k < KL_THREAD_KINDS; k++) {
		if (!cfg.allow_groups) {
			progs[k].len = kl_sc_prebuilt_len[k];
			progs[k].filter = (struct sock_filter *)kl_sc_prebuilt[k];
			continue;
		}
		char e[256];
		if (kl_sc_build(k, cfg.allow_groups, &progs[k], e, sizeof(e)) < 0) {
			*err = g_strdup(e);
			return -1;
		}
	}
	pid = getpid();
	built = true;
	return 0;
}

/* ---- installing ------------------------------------------------------- */

#ifdef KL_SANDBOX_TEST_HOOKS
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
/* Test builds (meson -Dsandbox_test_hooks=true, the default; docs/sandbox.md):
 * KVMLITE_SANDBOX_TEST=KIND:CALL makes the first thread of KIND that
 * installs its list attempt CALL right after. */
static int test_kind = -1;
static const char *test_call;

static void test_hook_read(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	const char *s = getenv("KVMLITE_SANDBOX_TEST");
	const char *colon = s ? strchr(s, ':') : NULL;
	if (!colon)
		return;
	for (int k = 0; k < KL_THREAD_KINDS; k++)
		if (strlen(kind_names(k)) == (size_t)(colon - s) && !strncmp(s, kind_names(k), colon - s))
			test_kind = k;
	test_call = colon + 1;
}

static void test_hook_run(int kind)
{
	int want = kind;
	if (!__atomic_compare_exchange_n(&test_kind, &want, -2, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST))
		return; /* not the kind asked for, or already done */
	long r = -1;
	if (!strcmp(test_call, "execve")) {
		char *const argv[] = { (char *)"/bin/true", NULL };
		r = syscall(SYS_execve, "/bin/true", argv, argv + 1);
	} else if (!strcmp(test_call, "ptrace")) {
		r = syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
	} else if (!strcmp(test_call, "socket-packet")) {
		r = syscall(SYS_socket, AF_PACKET, SOCK_RAW, 0);
	} else if (!strcmp(test_call, "mmap-exec")) {
		r = syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else if (!strcmp(test_call, "ioctl-create-vm")) {
		r = syscall(SYS_ioctl, -1, KVM_CREATE_VM, 0);
	} else {
		static const char m[] = "kvmlite: seccomp test hook: unknown call\n";
		if (write(2, m, sizeof(m) - 1) < 0) { /* exits anyway */ }
		_exit(2);
	}
	/* Reached only if the call was not refused. */
	static const char m[] = "kvmlite: seccomp test hook: the forbidden call was not refused\n";
	if (write(2, m, sizeof(m) - 1) < 0 || r) { /* exit either way */ }
	_exit(3);
}
#else
static void test_hook_read(void) { }
static void test_hook_run(int kind) { (void)kind; }
#endif

/* Async-signal-safe: prctl + seccomp syscalls only.  The "other" list is
 * installed with SECCOMP_FILTER_FLAG_LOG: GLib's gmain blocks every signal,
 * so a forbidden call there dies without our line, and the kernel's audit
 * record (dmesg: type=1326 ... syscall=N) is what names it. */
static int install(int kind)
{
	unsigned flags = kind == KL_THREAD_OTHER ? SECCOMP_FILTER_FLAG_LOG : 0;
	if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &progs[kind]) < 0)
		return errno;
	return 0;
}

static void arm_handler(int sig)
{
	(void)sig;
	int e = errno;
	int r = install(tls_kind);
	if (r)
		__atomic_compare_exchange_n(&arm_errno, &(int){ 0 }, r, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
	sem_post(&arm_sem);
	if (!r)
		test_hook_run(tls_kind);
	errno = e;
}

static char *fmt_num(char *p, long v)
{
	char tmp[24];
	int n = 0;
	if (v < 0) {
		*p++ = '-';
		v = -v;
	}
	do
		tmp[n++] = '0' + v % 10;
	while ((v /= 10) && n < (int)sizeof(tmp));
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *fmt_hex(char *p, unsigned long v)
{
	char tmp[16];
	int n = 0;
	do
		tmp[n++] = "0123456789abcdef"[v & 15];
	while ((v >>= 4) && n < (int)sizeof(tmp));
	*p++ = '0';
	*p++ = 'x';
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *fmt_str(char *p, const char *s, const char *end)
{
	while (*s && p < end)
		*p++ = *s++;
	return p;
}

/* SA_RESETHAND: the default action is back once this runs. */
static void sigsys_handler(int sig, siginfo_t *si, void *uc_)
{
	ucontext_t *uc = uc_;
	char buf[256], *p = buf, *end = buf + sizeof(buf) - 100;
	int nr = si->si_syscall;
	greg_t *g = uc->uc_mcontext.gregs;
	(void)sig;
	p = fmt_str(p, "kvmlite: seccomp: thread ", end);
	p = fmt_str(p, kl_thread_kind_name(tls_kind), end);
	p = fmt_str(p, " (tid ", end);
	p = fmt_num(p, tls_tid ? tls_tid : (long)syscall(SYS_gettid));
	p = fmt_str(p, ") called forbidden syscall ", end);
	p = fmt_str(p, nr >= 0 && nr < KL_SC_MAX_NR && kl_sc_names[nr] ? kl_sc_names[nr] : "?", end);
	p = fmt_str(p, " (nr ", end);
	p = fmt_num(p, nr);
	p = fmt_str(p, "), args ", buf + sizeof(buf));
	p = fmt_hex(p, g[REG_RDI]);
	*p++ = ' ';
	p = fmt_hex(p, g[REG_RSI]);
	*p++ = ' ';
	p = fmt_hex(p, g[REG_RDX]);
	*p++ = '\n';
	if (write(2, buf, p - buf) < 0) { /* dying anyway */ }
	/* The same call again traps again, now with the default action: the
	 * whole process dies of SIGSYS. */
	syscall(nr, g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9]);
	syscall(SYS_exit_group, 128 + SIGSYS);
}

#define SIG_ARM (SIGRTMIN + 3)

static int install_handlers(char **err)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sigsys_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		goto fail;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = arm_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIG_ARM, &sa, NULL) < 0)
		goto fail;
	return 0;
fail:
	*err = g_strdup_printf("seccomp: sigaction: %s", g_strerror(errno));
	return -1;
}

void kl_sandbox_thread_start(enum kl_thread_kind kind)
{
	if (!cfg.enable)
		return;
	tls_kind = kind;
	tls_tid = (int)syscall(SYS_gettid);
	pthread_mutex_lock(&reg_lock);
	if (!armed) {
		if (!reg_tids)
			reg_tids = g_array_new(FALSE, FALSE, sizeof(int));
		g_array_append_val(reg_tids, tls_tid);
		pthread_mutex_unlock(&reg_lock);
		return;
	}
	pthread_mutex_unlock(&reg_lock);
	int e = install(kind);
	if (e) {
		fprintf(stderr, "kvmlite: seccomp: cannot install the %s thread filter: %s\n",
			kind_names(kind), g_strerror(e));
		abort();
	}
	test_hook_run(kind);
}

void kl_sandbox_thread_end(void)
{
	if (!cfg.enable || !tls_tid)
		return;
	pthread_mutex_lock(&reg_lock);
	for (guint i = 0; !armed && reg_tids && i < reg_tids->len; i++)
		if (g_array_index(reg_tids, int, i) == tls_tid) {
			g_array_remove_index_fast(reg_tids, i);
			break;
		}
	pthread_mutex_unlock(&reg_lock);
}

struct other_call {
	void (*fn)(void *);
	void *opaque;
	int err;
};

static void *other_thread(void *p)
{
	struct other_call *oc = p;
	tls_kind = KL_THREAD_OTHER;
	tls_tid = (int)syscall(SYS_gettid);
	oc->err = install(KL_THREAD_OTHER);
	if (!oc->err) {
		test_hook_run(KL_THREAD_OTHER);
		oc->fn(oc->opaque);
	}
	return NULL;
}

int kl_sandbox_run_other(void (*fn)(void *), void *opaque, char **err)
{
	if (!cfg.enable) {
		fn(opaque);
		return 0;
	}
	test_hook_read();
	if (build_all(err) < 0 || install_handlers(err) < 0)
		return -1;
	struct other_call oc = { fn, opaque, 0 };
	pthread_t th;
	int e = pthread_create(&th, NULL, other_thread, &oc);
	if (e) {
		*err = g_strdup_printf("seccomp: cannot start the helper thread: %s", g_strerror(e));
		return -1;
	}
	pthread_join(th, NULL);
	if (oc.err) {
		*err = g_strdup_printf("seccomp: cannot install the other-thread filter: %s",
				       g_strerror(oc.err));
		return -1;
	}
	return 0;
}

int kl_sandbox_arm(char **err)
{
	if (!cfg.enable)
		return 0;
	test_hook_read();
	if (build_all(err) < 0 || install_handlers(err) < 0)
		return -1;
	sem_init(&arm_sem, 0, 0);
	pthread_mutex_lock(&reg_lock);
	armed = true;
	unsigned n = 0;
	for (guint i = 0; reg_tids && i < reg_tids->len; i++)
		if (syscall(SYS_tgkill, pid, g_array_index(reg_tids, int, i), SIG_ARM) == 0)
			n++;
	if (reg_tids)
		g_array_free(reg_tids, TRUE);
	reg_tids = NULL;
	pthread_mutex_unlock(&reg_lock);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	for (unsigned i = 0; i < n; i++) {
		while (sem_timedwait(&arm_sem, &dl) < 0) {
			if (errno == EINTR)
				continue;
			*err = g_strdup_printf("seccomp: %u of %u threads did not install their filter: %s",
					       n - i, n, g_strerror(errno));
			return -1;
		}
	}
	int e = __atomic_load_n(&arm_errno, __ATOMIC_SEQ_CST);
	if (e) {
		*err = g_strdup_printf("seccomp: cannot install a thread filter: %s", g_strerror(e));
		return -1;
	}
	tls_kind = KL_THREAD_MAIN;
	tls_tid = pid;
	e = install(KL_THREAD_MAIN);
	if (e) {
		*err = g_strdup_printf("seccomp: cannot install the main thread filter: %s",
				       g_strerror(e));
		return -1;
	}
	test_hook_run(KL_THREAD_MAIN);
	return 0;
}
