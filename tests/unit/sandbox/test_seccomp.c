/* src/sandbox/seccomp.c: -sandbox parsing, the per-kind lists, and the main
 * thread's filter armed for real in a forked child. */
#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kl_check.h"
#include "kvmlite/seccomp.h"

static bool has(enum kl_thread_kind k, unsigned groups, const char *name)
{
	const char *names[256];
	unsigned n = kl_sandbox_list(k, groups, names, G_N_ELEMENTS(names));
	for (unsigned i = 0; i < n && i < G_N_ELEMENTS(names); i++)
		if (!strcmp(names[i], name))
			return true;
	return false;
}

START_TEST(parse_ok)
{
	struct kl_sandbox_opts o;
	char *err = NULL;
	ck_assert_int_eq(kl_sandbox_parse("on", &o, &err), 0);
	ck_assert(o.enable);
	ck_assert_uint_eq(o.allow_groups, 0);
	ck_assert_int_eq(kl_sandbox_parse("off", &o, &err), 0);
	ck_assert(!o.enable);
	ck_assert_int_eq(kl_sandbox_parse("enable=on,obsolete=allow,spawn=allow", &o, &err), 0);
	ck_assert(o.enable);
	ck_assert_uint_eq(o.allow_groups, KL_SANDBOX_OBSOLETE | KL_SANDBOX_SPAWN);
	ck_assert_int_eq(kl_sandbox_parse("on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
					  "resourcecontrol=deny", &o, &err), 0);
	ck_assert_uint_eq(o.allow_groups, 0);
	ck_assert_int_eq(kl_sandbox_parse("on,elevateprivileges=children,resourcecontrol=allow",
					  &o, &err), 0);
	ck_assert_uint_eq(o.allow_groups, KL_SANDBOX_RESOURCE);
	ck_assert_int_eq(kl_sandbox_parse("on,elevateprivileges=allow", &o, &err), 0);
	ck_assert_uint_eq(o.allow_groups, KL_SANDBOX_ELEVATE);
}
END_TEST

START_TEST(parse_bad)
{
	static const char *const bad[][2] = {
		{ "maybe", "-sandbox maybe: parameter 'enable' expects on or off" },
		{ "spawn=deny", "-sandbox spawn=deny: on or off is required" },
		{ "on,spawn=children", "invalid argument for spawn: 'children'" },
		{ "on,obsolete=", "invalid argument for obsolete: ''" },
		{ "on,frob=1", "-sandbox on,frob=1: unknown parameter 'frob'" },
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		struct kl_sandbox_opts o = { .enable = true, .allow_groups = 7 };
		char *err = NULL;
		ck_assert_int_eq(kl_sandbox_parse(bad[i][0], &o, &err), -1);
		ck_assert_msg(err && strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
		ck_assert(o.enable && o.allow_groups == 7); /* untouched */
		g_free(err);
	}
}
END_TEST

START_TEST(lists)
{
	/* what each kind needs */
	ck_assert(has(KL_THREAD_MAIN, 0, "openat") && has(KL_THREAD_MAIN, 0, "accept4") &&
		  has(KL_THREAD_MAIN, 0, "io_uring_enter") && has(KL_THREAD_MAIN, 0, "ioctl"));
	ck_assert(has(KL_THREAD_VCPU, 0, "ioctl") && has(KL_THREAD_VCPU, 0, "futex"));
	ck_assert(has(KL_THREAD_IO, 0, "preadv") && has(KL_THREAD_IO, 0, "fdatasync"));
	ck_assert(has(KL_THREAD_OTHER, 0, "poll"));
	/* and what it does not get */
	ck_assert(!has(KL_THREAD_VCPU, 0, "openat") && !has(KL_THREAD_VCPU, 0, "clone") &&
		  !has(KL_THREAD_VCPU, 0, "accept4"));
	ck_assert(!has(KL_THREAD_IO, 0, "ioctl") && !has(KL_THREAD_IO, 0, "socket") &&
		  !has(KL_THREAD_IO, 0, "openat"));
	ck_assert(!has(KL_THREAD_OTHER, 0, "ioctl") && !has(KL_THREAD_OTHER, 0, "socket"));
	for (int k = 0; k < KL_THREAD_KINDS; k++) {
		static const char *const never[] = { "execve", "execveat", "fork", "vfork", "ptrace",
						     "setresuid", "setuid", "sched_setaffinity",
						     "kexec_load", "init_module", "mount" };
		for (unsigned i = 0; i < G_N_ELEMENTS(never); i++)
			ck_assert_msg(!has(k, 0, never[i]), "%s allows %s",
				      kl_thread_kind_name(k), never[i]);
		/* QEMU's "allow" sub-options add their group to every list */
		ck_assert(has(k, KL_SANDBOX_SPAWN, "execve") && has(k, KL_SANDBOX_SPAWN, "fork"));
		ck_assert(has(k, KL_SANDBOX_ELEVATE, "setresuid"));
		ck_assert(has(k, KL_SANDBOX_RESOURCE, "sched_setaffinity"));
		ck_assert(has(k, KL_SANDBOX_OBSOLETE, "uselib"));
		ck_assert_uint_gt(kl_sandbox_list(k, KL_SANDBOX_SPAWN, NULL, 0),
				  kl_sandbox_list(k, 0, NULL, 0));
		printf("seccomp: %-9s thread allow-list: %u syscalls\n", kl_thread_kind_name(k),
		       kl_sandbox_list(k, 0, NULL, 0));
	}
}
END_TEST

/* Fork; the child arms the main thread's list and runs fn; its status. */
static int in_sandbox(int (*fn)(void))
{
	fflush(stdout);
	pid_t p = fork();
	if (p == 0) {
		struct kl_sandbox_opts o = { .enable = true };
		char *err = NULL;
		kl_sandbox_configure(&o);
		if (kl_sandbox_arm(&err) < 0) {
			fprintf(stderr, "%s\n", err);
			_exit(100);
		}
		_exit(fn());
	}
	int st = 0;
	ck_assert_int_eq(waitpid(p, &st, 0), p);
	return st;
}

static int allowed_calls(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fd < 0 || m == MAP_FAILED)
		return 1;
	close(fd);
	munmap(m, 4096);
	return syscall(SYS_gettid) > 0 ? 0 : 2;
}

static int call_execve(void)
{
	char *const argv[] = { (char *)"/bin/true", NULL };
	syscall(SYS_execve, "/bin/true", argv, argv + 1);
	return 3;
}

static int call_packet_socket(void)
{
	syscall(SYS_socket, AF_PACKET, SOCK_RAW, 0);
	return 3;
}

static int call_mmap_exec(void)
{
	syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return 3;
}

static int call_clone_process(void)
{
	syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0); /* fork(): no CLONE_THREAD */
	return 3;
}

START_TEST(armed_main)
{
	int st = in_sandbox(allowed_calls);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	int (*const bad[])(void) = { call_execve, call_packet_socket, call_mmap_exec,
				     call_clone_process };
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		st = in_sandbox(bad[i]);
		ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "call %u: status %#x", i, st);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("seccomp");
	TCase *tc = tcase_create("seccomp");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, parse_ok);
	tcase_add_test(tc, parse_bad);
	tcase_add_test(tc, lists);
	tcase_add_test(tc, armed_main);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
