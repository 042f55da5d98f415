/* seccomp sandbox: one allow-list per thread kind (src/sandbox/seccomp.c,
 * lists in src/sandbox/seccomp_lists.c; docs/sandbox.md).
 *
 * Order in main(): everything opened -> privilege drop -> kl_sandbox_run_other()
 * (GLib's helper thread is created under the "other" list) -> kl_vm_start()
 * -> kl_sandbox_arm() (main thread and every thread registered so far) ->
 * guest runs.  vCPU threads need the BQL, which main holds until the main
 * loop first sleeps, so no guest instruction runs before arming is done. */
#ifndef KVMLITE_SECCOMP_H
#define KVMLITE_SECCOMP_H

#include <stdbool.h>

enum kl_thread_kind {
	KL_THREAD_MAIN,  /* main loop: QMP, timers, block completions, backends */
	KL_THREAD_VCPU,  /* KVM_RUN + the device models it dispatches to */
	KL_THREAD_IO,    /* aio=threads workers (src/block/threads.c) */
	KL_THREAD_OTHER, /* threads kvmlite does not run code in (GLib's gmain) */
	KL_THREAD_KINDS
};

/* Syscall groups QEMU's -sandbox sub-options allow or deny.  kvmlite's
 * lists never contain them; "allow" adds the group to every list. */
enum {
	KL_SANDBOX_OBSOLETE = 1 << 0,   /* obsolete=allow */
	KL_SANDBOX_ELEVATE = 1 << 1,    /* elevateprivileges=allow */
	KL_SANDBOX_SPAWN = 1 << 2,      /* spawn=allow */
	KL_SANDBOX_RESOURCE = 1 << 3,   /* resourcecontrol=allow */
};

struct kl_sandbox_opts {
	bool enable;
	unsigned allow_groups; /* KL_SANDBOX_* */
};

/* kvmlite's default when there is no -sandbox flag. */
#define KL_SANDBOX_DEFAULT_ON true

/* -sandbox on|off[,obsolete=allow|deny][,elevateprivileges=allow|deny|children]
 * [,spawn=allow|deny][,resourcecontrol=allow|deny].  0 or -1 with *err. */
int kl_sandbox_parse(const char *spec, struct kl_sandbox_opts *o, char **err);
/* Set what kl_sandbox_run_other/arm will do (call once, before any thread
 * that registers is created). */
void kl_sandbox_configure(const struct kl_sandbox_opts *o);
bool kl_sandbox_enabled(void);

/* Run fn in a short-lived thread that installs the "other" list first, so
 * threads fn causes a library to create (GLib's gmain) inherit it.  With the
 * sandbox off, fn runs here. */
int kl_sandbox_run_other(void (*fn)(void *), void *opaque, char **err);

/* Main thread: install the filters of every registered thread (each in its
 * own context), then the main thread's.  Must come after the privilege drop
 * (glibc's setuid broadcast runs setresuid on every thread). */
int kl_sandbox_arm(char **err);

/* First thing in a thread of ours: registers it; once armed, installs its
 * list at once.  kl_sandbox_thread_end before the thread returns. */
void kl_sandbox_thread_start(enum kl_thread_kind kind);
void kl_sandbox_thread_end(void);

/* The allow-list of a kind, for docs and tests: number of syscalls (a
 * syscall allowed with argument conditions counts once); names[] filled up
 * to max entries when non-NULL. */
unsigned kl_sandbox_list(enum kl_thread_kind kind, unsigned allow_groups,
			 const char **names, unsigned max);
const char *kl_thread_kind_name(enum kl_thread_kind kind);

#endif
