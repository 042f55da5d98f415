/* Identity and capabilities (libcap-ng), no_new_privs, RLIMIT_NOFILE.
 *
 * Linux keeps capabilities, the bounding and ambient sets, no_new_privs
 * and securebits per thread.  What can be set before the first thread is
 * created is set in kl_privs_init() and inherited by every later thread.
 * The effective/permitted sets are still needed during set-up (tap,
 * images, /dev/kvm, chroot, setuid), and the block layer's worker threads
 * exist by then, so kl_privs_drop() shrinks them in every thread: glibc
 * broadcasts setgroups/setresgid/setresuid to all of its threads, and the
 * kernel clears the permitted and effective sets of each thread whose
 * uids all leave 0; the capset for the kept set goes to each thread by a
 * signal (its handler only makes the capset system call).  The result is
 * read back from /proc/self/task/TID/status for every thread. */
#include "kvmlite/privs.h"

#include <cap-ng.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t kl_privs_runtime_caps(void)
{
	return 1ULL << CAP_DAC_OVERRIDE;
}

void kl_raise_nofile_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		fprintf(stderr, "kvmlite: warning: cannot raise the open file limit to %llu: %s\n",
			(unsigned long long)rl.rlim_max, g_strerror(errno));
}

static int parse_uid_gid(const char *s, uid_t *uid, gid_t *gid)
{
	char *end;
	errno = 0;
	unsigned long u = strtoul(s, &end, 0);
	if (errno || end == s || *end != ':' || *s == '-' || (uid_t)u != u || (uid_t)u == (uid_t)-1)
		return -1;
	const char *g = end + 1;
	unsigned long v = strtoul(g, &end, 0);
	if (errno || end == g || *end || *g == '-' || (gid_t)v != v || (gid_t)v == (gid_t)-1)
		return -1;
	*uid = (uid_t)u;
	*gid = (gid_t)v;
	return 0;
}

int kl_privs_set_user(struct kl_privs *p, const char *user, char **err)
{
	g_free(p->user);
	g_free(p->user_name);
	g_free(p->groups);
	p->user = g_strdup(user);
	p->user_name = NULL;
	p->groups = NULL;
	p->ngroups = 0;
	errno = 0;
	struct passwd *pw = *user ? getpwnam(user) : NULL;
	if (pw) {
		/* initgroups() semantics, but the list is read now, from the
		 * host's group database (after chroot there may be none). */
		p->user_name = g_strdup(pw->pw_name);
		p->uid = pw->pw_uid;
		p->gid = pw->pw_gid;
		int n = 16;
		p->groups = g_new(gid_t, n);
		if (getgrouplist(pw->pw_name, pw->pw_gid, p->groups, &n) < 0) {
			p->groups = g_renew(gid_t, p->groups, n);
			if (getgrouplist(pw->pw_name, pw->pw_gid, p->groups, &n) < 0)
				n = 0;
		}
		if (n == 0) {
			p->groups[0] = pw->pw_gid;
			n = 1;
		}
		p->ngroups = n;
	} else if (parse_uid_gid(user, &p->uid, &p->gid) == 0) {
		/* as QEMU: the one group given is the only supplementary group */
		p->groups = g_new(gid_t, 1);
		p->groups[0] = p->gid;
		p->ngroups = 1;
	} else {
		*err = g_strdup_printf("user \"%s\" does not exist (give a user name or UID:GID)", user);
		return -1;
	}
	p->change_id = true;
	return 0;
}

static int last_cap(void)
{
	int last = CAP_LAST_CAP;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1 || last < 0 || last > 63)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	return last;
}

int kl_privs_init(struct kl_privs *p, const char *chroot_dir, char **err)
{
	p->task_dir = -1;
	kl_raise_nofile_limit();
	if (chroot_dir) {
		struct stat st;
		if (stat(chroot_dir, &st) < 0) {
			*err = g_strdup_printf("chroot directory '%s': %s", chroot_dir, g_strerror(errno));
			return -1;
		}
		if (!S_ISDIR(st.st_mode)) {
			*err = g_strdup_printf("chroot directory '%s': Not a directory", chroot_dir);
			return -1;
		}
		p->chroot_dir = g_strdup(chroot_dir);
	}

	capng_clear(CAPNG_SELECT_BOTH);
	if (capng_get_caps_process() < 0) {
		*err = g_strdup_printf("cannot read the process capabilities: %s", g_strerror(errno));
		return -1;
	}
	p->had_caps = capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE;
	if (p->change_id && !(capng_have_capability(CAPNG_EFFECTIVE, CAP_SETUID) &&
			      capng_have_capability(CAPNG_EFFECTIVE, CAP_SETGID))) {
		*err = g_strdup_printf("user \"%s\": changing the user needs root (CAP_SETUID and "
				       "CAP_SETGID)", p->user);
		return -1;
	}
	if (p->chroot_dir && !capng_have_capability(CAPNG_EFFECTIVE, CAP_SYS_CHROOT)) {
		*err = g_strdup_printf("chroot directory '%s': chroot needs root (CAP_SYS_CHROOT)",
				       p->chroot_dir);
		return -1;
	}
	p->keep = p->change_id ? 0 : kl_privs_runtime_caps();
	for (int c = 0; c < 64; c++) /* capset cannot add what is not permitted */
		if ((p->keep & (1ULL << c)) && !capng_have_capability(CAPNG_PERMITTED, (unsigned)c))
			p->keep &= ~(1ULL << c);

	int last = last_cap();
	bool bounds = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP);
	p->bounds_dropped = bounds;
	for (int c = 0; c <= last; c++) {
		capng_update(CAPNG_DROP, CAPNG_INHERITABLE, (unsigned)c);
		if (bounds && !(p->keep & (1ULL << c)))
			capng_update(CAPNG_DROP, CAPNG_BOUNDING_SET, (unsigned)c);
	}
	if (capng_apply(bounds ? CAPNG_SELECT_BOTH : CAPNG_SELECT_CAPS) < 0) {
		*err = g_strdup_printf("cannot clear the inheritable/bounding capability sets: %s",
				       g_strerror(errno));
		return -1;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
		*err = g_strdup_printf("cannot clear the ambient capabilities: %s", g_strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		*err = g_strdup_printf("prctl(PR_SET_NO_NEW_PRIVS): %s", g_strerror(errno));
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------- every thread's capset */

static struct {
	struct __user_cap_header_struct hdr;
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	sem_t done;
} bcast;

static void on_capset_signal(int sig)
{
	(void)sig;
	int saved = errno;
	struct __user_cap_header_struct h = bcast.hdr; /* capset may write the header */
	syscall(SYS_capset, &h, bcast.data); /* a failure shows in the /proc check */
	sem_post(&bcast.done);
	errno = saved;
}

/* Set effective = permitted = keep, inheritable = 0 in every other thread. */
static void capset_other_threads(int task_dir, uint64_t keep)
{
	memset(&bcast, 0, sizeof(bcast));
	bcast.hdr.version = _LINUX_CAPABILITY_VERSION_3;
	bcast.data[0].effective = bcast.data[0].permitted = (uint32_t)keep;
	bcast.data[1].effective = bcast.data[1].permitted = (uint32_t)(keep >> 32);
	sem_init(&bcast.done, 0, 0);
	int sig = SIGRTMIN + 4; /* +3 is the seccomp arm signal (seccomp.c) */
	struct sigaction sa = { .sa_handler = on_capset_signal, .sa_flags = SA_RESTART }, old;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, &old);

	int fd = dup(task_dir);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	unsigned sent = 0;
	pid_t self = (pid_t)syscall(SYS_gettid), pid = getpid();
	for (struct dirent *e; d && (e = readdir(d));) {
		pid_t tid = (pid_t)atoi(e->d_name);
		if (tid <= 0 || tid == self)
			continue;
		if (syscall(SYS_tgkill, pid, tid, sig) == 0)
			sent++;
	}
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	/* A thread blocking the signal never answers: the /proc check that
	 * follows names it. */
	for (unsigned i = 0; i < sent; i++) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 2;
		int r;
		while ((r = sem_timedwait(&bcast.done, &ts)) < 0 && errno == EINTR)
			;
		if (r < 0)
			break;
	}
	sigaction(sig, &old, NULL);
	sem_destroy(&bcast.done);
}

/* ------------------------------------------------------------ the /proc check */

static bool status_field(const char *text, const char *key, char *out, size_t len)
{
	size_t kl = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (!strncmp(l, key, kl) && l[kl] == ':') {
			const char *v = l + kl + 1;
			while (*v == '\t' || *v == ' ')
				v++;
			size_t n = strcspn(v, "\n");
			if (n >= len)
				n = len - 1;
			memcpy(out, v, n);
			out[n] = 0;
			return true;
		}
	}
	return false;
}

static int check_thread(const struct kl_privs *p, int task_dir, const char *tid, bool bounds,
			char **err)
{
	char path[64], buf[4096], v[256];
	snprintf(path, sizeof(path), "%s/status", tid);
	int fd = openat(task_dir, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1; /* the thread has just exited */
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char name[32] = "?";
	status_field(buf, "Name", name, sizeof(name));
	static const char *const sets[] = { "CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd" };
	for (size_t i = 0; i < G_N_ELEMENTS(sets); i++) {
		if (!strcmp(sets[i], "CapBnd") && !bounds)
			continue;
		if (!status_field(buf, sets[i], v, sizeof(v)))
			continue; /* CapAmb: older kernels */
		uint64_t m = g_ascii_strtoull(v, NULL, 16);
		if (m & ~p->keep) {
			*err = g_strdup_printf("thread %s (%s) still has %s %016llx after the privilege "
					       "drop", tid, name, sets[i], (unsigned long long)m);
			return -1;
		}
	}
	if (status_field(buf, "NoNewPrivs", v, sizeof(v)) && strcmp(v, "1")) {
		*err = g_strdup_printf("thread %s (%s): no_new_privs is not set", tid, name);
		return -1;
	}
	if (p->change_id) {
		unsigned a[4], b[4];
		char u[128], g[128];
		if (!status_field(buf, "Uid", u, sizeof(u)) || !status_field(buf, "Gid", g, sizeof(g)) ||
		    sscanf(u, "%u %u %u %u", &a[0], &a[1], &a[2], &a[3]) != 4 ||
		    sscanf(g, "%u %u %u %u", &b[0], &b[1], &b[2], &b[3]) != 4) {
			*err = g_strdup_printf("thread %s (%s): cannot read its Uid/Gid", tid, name);
			return -1;
		}
		for (int i = 0; i < 4; i++) {
			if (a[i] != p->uid || b[i] != p->gid) {
				*err = g_strdup_printf("thread %s (%s) still runs as uid %s gid %s", tid,
						       name, u, g);
				return -1;
			}
		}
	}
	return 0;
}

static int check_all_threads(const struct kl_privs *p, bool bounds, char **err)
{
	int fd = dup(p->task_dir);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		*err = g_strdup_printf("cannot list the threads in /proc/self/task: %s",
				       g_strerror(errno));
		return -1;
	}
	int r = 0;
	for (struct dirent *e; r == 0 && (e = readdir(d));)
		if (e->d_name[0] != '.' && check_thread(p, p->task_dir, e->d_name, bounds, err) < 0)
			r = -1;
	closedir(d);
	return r;
}

int kl_privs_drop(struct kl_privs *p, char **err)
{
	p->task_dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->task_dir < 0) {
		*err = g_strdup_printf("cannot open /proc/self/task: %s", g_strerror(errno));
		return -1;
	}
	if (p->chroot_dir) {
		if (chroot(p->chroot_dir) < 0) {
			*err = g_strdup_printf("chroot directory '%s': chroot: %s", p->chroot_dir,
					       g_strerror(errno));
			return -1;
		}
		if (chdir("/") < 0) {
			*err = g_strdup_printf("chroot directory '%s': chdir /: %s", p->chroot_dir,
					       g_strerror(errno));
			return -1;
		}
	}
	if (p->change_id) {
		/* glibc runs each of these on every thread of the process */
		if (setgroups((size_t)p->ngroups, p->groups) < 0) {
			*err = g_strdup_printf("user \"%s\": setgroups: %s", p->user, g_strerror(errno));
			return -1;
		}
		if (setresgid(p->gid, p->gid, p->gid) < 0) {
			*err = g_strdup_printf("user \"%s\": setgid(%u): %s", p->user, (unsigned)p->gid,
					       g_strerror(errno));
			return -1;
		}
		if (setresuid(p->uid, p->uid, p->uid) < 0) {
			*err = g_strdup_printf("user \"%s\": setuid(%u): %s", p->user, (unsigned)p->uid,
					       g_strerror(errno));
			return -1;
		}
		if (p->uid != 0 && setuid(0) == 0) {
			*err = g_strdup_printf("user \"%s\": dropped root privileges but setuid(0) "
					       "still works", p->user);
			return -1;
		}
	}
	if (p->had_caps) {
		capset_other_threads(p->task_dir, p->keep);
		capng_clear(CAPNG_SELECT_CAPS);
		for (int c = 0; c < 64; c++)
			if (p->keep & (1ULL << c))
				capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, (unsigned)c);
		if (capng_apply(CAPNG_SELECT_CAPS) < 0) {
			*err = g_strdup_printf("cannot drop the capabilities: %s", g_strerror(errno));
			return -1;
		}
	}
	int r = check_all_threads(p, p->bounds_dropped, err);
	close(p->task_dir);
	p->task_dir = -1;
	return r;
}

void kl_privs_free(struct kl_privs *p)
{
	g_free(p->user);
	g_free(p->user_name);
	g_free(p->groups);
	g_free(p->chroot_dir);
	if (p->task_dir > STDERR_FILENO)
		close(p->task_dir);
	memset(p, 0, sizeof(*p));
	p->task_dir = -1;
}
