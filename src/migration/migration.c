/* Migration state machine and transports (include/kvmlite/migration.h):
 * stop-and-copy to unix:/tcp:/file:, the incoming side (-incoming,
 * migrate-incoming), the return path that tells the source whether the
 * destination took the state, and what query-migrate reports. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvmlite/clock.h"
#include "kvmlite/loop.h"
#include "kvmlite/migration.h"
#include "kvmlite/vm.h"
#include "dirty_int.h"
#include "kvmlite/cpu.h"
#include "stream_int.h"

#define IO_TIMEOUT_S 30

enum transport { T_UNIX, T_TCP, T_FILE, T_EXEC };

struct uri {
	enum transport t;
	char *path;         /* unix/file */
	char *host, *port;  /* tcp */
	uint64_t offset;    /* file */
};

static struct kl_mig_info info;
static bool spawn_allowed;

void kl_mig_set_spawn_allowed(bool on)
{
	spawn_allowed = on;
}

/* exec: /bin/sh -c cmd with its stdin (to_child) or stdout on a pipe;
 * returns our end, *pid the child. */
static int spawn(const char *cmd, bool to_child, pid_t *pid, char **err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		*err = g_strdup_printf("exec: pipe: %s", g_strerror(errno));
		return -1;
	}
	pid_t c = fork();
	if (c < 0) {
		*err = g_strdup_printf("exec: fork: %s", g_strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (c == 0) {
		/* the child: only async-signal-safe calls until exec */
		dup2(to_child ? p[0] : p[1], to_child ? STDIN_FILENO : STDOUT_FILENO);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	*pid = c;
	close(to_child ? p[0] : p[1]);
	return to_child ? p[1] : p[0];
}

static int reap(pid_t pid, char **err)
{
	int st = 0;
	pid_t r;
	do {
		r = waitpid(pid, &st, 0);
	} while (r < 0 && errno == EINTR);
	if (r == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	*err = r < 0 ? g_strdup_printf("exec: waitpid: %s", g_strerror(errno))
		     : g_strdup_printf("exec: the command exited with status %d",
				       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return -1;
}
static struct {
	bool pending;          /* -incoming given, nothing loaded yet */
	bool deferred;         /* waiting for migrate-incoming */
	bool autostart;        /* run once loaded (not -S, or 'cont' meanwhile) */
	int listen_fd;
	guint watch;
	pid_t exec_pid;        /* exec: the command writing the stream */
	char *unix_path;       /* unlinked at cleanup */
	struct kl_vm *vm;
} inc = { .listen_fd = -1 };

const char *kl_mig_status_name(enum kl_mig_status s)
{
	switch (s) {
	case KL_MIG_NONE: return "none";
	case KL_MIG_SETUP: return "setup";
	case KL_MIG_ACTIVE: return "active";
	case KL_MIG_DEVICE: return "device";
	case KL_MIG_COMPLETED: return "completed";
	case KL_MIG_FAILED: return "failed";
	case KL_MIG_CANCELLED: return "cancelled";
	}
	return "none";
}

static void refresh_live(void);

const struct kl_mig_info *kl_mig_info(void)
{
	refresh_live();
	return &info;
}

bool kl_mig_incoming_pending(void)
{
	return inc.pending;
}

void kl_mig_incoming_autostart(bool on)
{
	inc.autostart = on;
}

static void uri_free(struct uri *u)
{
	g_free(u->path);
	g_free(u->host);
	g_free(u->port);
}

static int parse_uri(const char *s, bool incoming, struct uri *u, char **err)
{
	memset(u, 0, sizeof(*u));
	if (g_str_has_prefix(s, "unix:")) {
		u->t = T_UNIX;
		u->path = g_strdup(s + 5);
		if (!*u->path || strlen(u->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			*err = g_strdup_printf("invalid migration URI '%s': bad unix socket path", s);
			return -1;
		}
		return 0;
	}
	if (g_str_has_prefix(s, "tcp:")) {
		u->t = T_TCP;
		const char *hp = s + 4;
		const char *colon = strrchr(hp, ':');
		if (!colon || colon == hp || !colon[1]) {
			*err = g_strdup_printf("invalid migration URI '%s': expected tcp:HOST:PORT", s);
			return -1;
		}
		u->host = g_strndup(hp, (gsize)(colon - hp));
		u->port = g_strdup(colon + 1);
		/* options such as ,ipv4 are not understood */
		if (strchr(u->port, ',')) {
			*err = g_strdup_printf("invalid migration URI '%s': tcp: options are not supported", s);
			return -1;
		}
		if (u->host[0] == '[') {
			size_t n = strlen(u->host);
			if (n < 3 || u->host[n - 1] != ']') {
				*err = g_strdup_printf("invalid migration URI '%s': bad host", s);
				return -1;
			}
			memmove(u->host, u->host + 1, n - 2);
			u->host[n - 2] = '\0';
		}
		return 0;
	}
	if (g_str_has_prefix(s, "file:")) {
		u->t = T_FILE;
		const char *p = s + 5;
		const char *comma = strstr(p, ",offset=");
		if (comma) {
			char *end = NULL;
			errno = 0;
			unsigned long long off = strtoull(comma + 8, &end, 0);
			if (errno || end == comma + 8 || *end || comma[8] == '-') {
				*err = g_strdup_printf("invalid migration URI '%s': bad offset", s);
				return -1;
			}
			u->offset = off;
			u->path = g_strndup(p, (gsize)(comma - p));
		} else {
			if (strchr(p, ',')) {
				*err = g_strdup_printf("invalid migration URI '%s': file: takes only "
						       "offset=", s);
				return -1;
			}
			u->path = g_strdup(p);
		}
		if (!*u->path) {
			*err = g_strdup_printf("invalid migration URI '%s': empty file name", s);
			return -1;
		}
		return 0;
	}
	if (g_str_has_prefix(s, "exec:")) {
		u->t = T_EXEC;
		u->path = g_strdup(s + 5);
		if (!*u->path) {
			*err = g_strdup_printf("invalid migration URI '%s': empty command", s);
			return -1;
		}
		if (!spawn_allowed) {
			*err = g_strdup_printf("migration URI '%s': exec: runs /bin/sh -c '%s', which "
					       "the sandbox forbids: start kvmlite with -sandbox off "
					       "(-sandbox on,spawn=allow is not enough: the command "
					       "would inherit kvmlite's seccomp allow-list and die of "
					       "SIGSYS)", s, u->path);
			return -1;
		}
		return 0;
	}
	(void)incoming;
	*err = g_strdup_printf("unknown migration protocol: %s", s);
	return -1;
}

int kl_mig_uri_check(const char *uri, bool incoming, char **err)
{
	if (incoming && !strcmp(uri, "defer"))
		return 0;
	struct uri u;
	int r = parse_uri(uri, incoming, &u, err);
	uri_free(&u);
	return r;
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int sock_open(const struct uri *u, bool listen_side, char **err)
{
	if (u->t == T_UNIX) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		g_strlcpy(sa.sun_path, u->path, sizeof(sa.sun_path));
		if (fd < 0) {
			*err = g_strdup_printf("socket: %s", g_strerror(errno));
			return -1;
		}
		if (listen_side) {
			unlink(u->path);
			if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
				*err = g_strdup_printf("Failed to bind socket %s: %s", u->path,
						       g_strerror(errno));
				close(fd);
				return -1;
			}
		} else if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			*err = g_strdup_printf("Failed to connect to '%s': %s", u->path,
					       g_strerror(errno));
			close(fd);
			return -1;
		}
		return fd;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = listen_side ? AI_PASSIVE : 0 };
	struct addrinfo *res = NULL;
	int gr = getaddrinfo(u->host, u->port, &hints, &res);
	if (gr) {
		*err = g_strdup_printf("address resolution failed for %s:%s: %s", u->host, u->port,
				       gai_strerror(gr));
		return -1;
	}
	int fd = -1, e = 0;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		int r = listen_side ? bind(fd, a->ai_addr, a->ai_addrlen) : connect(fd, a->ai_addr,
										   a->ai_addrlen);
		if (r == 0 && (!listen_side || listen(fd, 1) == 0))
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		*err = g_strdup_printf("Failed to %s %s:%s: %s", listen_side ? "listen on" : "connect to",
				       u->host, u->port, g_strerror(e));
	return fd;
}

/* ---- parameters, capabilities, events ---- */
static struct kl_mig_params params = {
	.downtime_limit_ms = 300, .max_bandwidth = 134217728, .max_iterations = 30,
	.throttle_initial = 20, .throttle_increment = 10,
};
static void (*event_fn)(const char *event, const char *key, const char *sval, int64_t ival);

struct kl_mig_params *kl_mig_params(void)
{
	return &params;
}

void kl_mig_set_event_fn(void (*fn)(const char *, const char *, const char *, int64_t))
{
	event_fn = fn;
}

static void set_status(enum kl_mig_status s)
{
	if (info.status == s)
		return;
	info.status = s;
	if (params.events && event_fn)
		event_fn("MIGRATION", "status", kl_mig_status_name(s), 0);
}

/* ---- source ---- */
struct source {
	bool live;               /* a pre-copy migration is in flight */
	struct kl_vm *vm;
	struct kl_mig_out out;
	struct kl_dirty dirty;
	struct kl_ram_cursor cur;
	guint tick, throttle_tick;
	bool throttled;          /* the vCPUs are held by auto-converge now */
	uint64_t t0, t_setup, pass_t0, pass_bytes, window_t0, window_bytes;
	uint64_t pass;
	double bw;               /* bytes/s measured over the last pass */
	uint64_t last_remaining; /* dirty bytes after the previous pass (UINT64_MAX: none) */
	char *uri;
	pid_t exec_pid;          /* exec: the command reading the stream, or 0 */
};
static struct source src = { .out = { .fd = -1 } };

static void fail(char *msg)
{
	set_status(KL_MIG_FAILED);
	g_free(info.error);
	info.error = msg;
}

/* The destination's verdict: "OK\n" or "ERR message\n". */
static int read_verdict(int fd, char **err)
{
	char buf[1024];
	size_t n = 0;
	while (n < sizeof(buf) - 1) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (memchr(buf, '\n', n))
			break;
	}
	buf[n] = '\0';
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
	if (!strcmp(buf, "OK"))
		return 0;
	if (g_str_has_prefix(buf, "ERR "))
		*err = g_strdup_printf("the destination refused the migration: %s", buf + 4);
	else
		*err = g_strdup("the destination closed the connection without accepting the state");
	return -1;
}

/* After a failed write: a destination that refused says why. */
static void prefer_verdict(int fd, char **e)
{
	if (src.exec_pid)
		return; /* a pipe: no return path */
	char *why = NULL;
	if (read_verdict(fd, &why) < 0 && why && !strstr(why, "without accepting")) {
		g_free(*e);
		*e = why;
	} else {
		g_free(why);
	}
}

static void throttle_stop(struct kl_vm *vm)
{
	if (src.throttle_tick)
		kl_source_remove(src.throttle_tick);
	src.throttle_tick = 0;
	if (src.throttled) {
		vm->pause_req = false;
		g_cond_broadcast(&vm->state_cond);
	}
	src.throttled = false;
	info.throttle_pct = 0;
}

/* auto-converge: the vCPUs sleep throttle_pct % of every 100 ms */
static gboolean throttle_cb(gpointer opaque)
{
	struct kl_vm *vm = opaque;
	unsigned pct = (unsigned)info.throttle_pct;
	src.throttled = !src.throttled;
	if (src.throttled) {
		vm->pause_req = true;
		for (unsigned i = 0; i < vm->ncpus; i++)
			kl_vcpu_kick(vm->vcpus[i]);
	} else {
		vm->pause_req = false;
		g_cond_broadcast(&vm->state_cond);
	}
	src.throttle_tick = kl_timer_add_ms(src.throttled ? pct : 100 - pct, throttle_cb, vm);
	return G_SOURCE_REMOVE;
}

static void source_end(struct kl_vm *vm)
{
	throttle_stop(vm);
	if (src.tick)
		kl_source_remove(src.tick);
	src.tick = 0;
	kl_dirty_stop(&src.dirty);
	kl_mig_ram_holes_free(&src.cur);
	if (src.out.fd >= 0)
		close(src.out.fd);
	src.out.fd = -1;
	if (src.exec_pid) { /* cancelled or failed: the command sees EOF */
		char *e = NULL;
		reap(src.exec_pid, &e);
		g_free(e);
	}
	src.exec_pid = 0;
	g_free(src.out.err);
	src.out.err = NULL;
	g_free(src.uri);
	src.uri = NULL;
	src.live = false;
}

static void finish_times(uint64_t t_stop)
{
	uint64_t t1 = kl_clock_ns();
	info.has_times = true;
	info.setup_time_ms = (int64_t)((src.t_setup - src.t0) / 1000000);
	info.total_time_ms = (int64_t)((t1 - src.t0) / 1000000);
	info.downtime_ms = (int64_t)((t1 - t_stop) / 1000000);
	double secs = (double)(t1 - src.t0) / 1e9;
	info.mbps = secs > 0 ? (double)info.st.bytes * 8 / 1e6 / secs : 0;
}

/* stop the vCPUs, send what is left, the devices, the end marker; the
 * destination's verdict decides where the source ends */
static void complete(struct kl_vm *vm, bool was_running)
{
	char *e = NULL;
	throttle_stop(vm);
	set_status(KL_MIG_DEVICE);
	kl_vm_pause(vm);
	uint64_t t_stop = kl_clock_ns();
	uint64_t start = src.out.pos;
	int rc = kl_mig_quiesce(vm, &e);
	if (rc == 0 && src.live) {
		/* quiesced devices may have written RAM: the last sync after */
		if (kl_dirty_sync(&src.dirty, &e) < 0 ||
		    kl_mig_ram_send_dirty(vm, &src.out, &src.dirty, &src.cur, UINT64_MAX, &info.st) < 0)
			rc = -1;
	}
	if (rc == 0)
		rc = kl_mig_save_devices(vm, &src.out, &e);
	if (rc == 0 && src.exec_pid) {
		close(src.out.fd);
		src.out.fd = -1;
		rc = reap(src.exec_pid, &e);
		src.exec_pid = 0;
	} else if (rc == 0) {
		rc = read_verdict(src.out.fd, &e);
	} else {
		if (!e)
			e = g_strdup(src.out.err ? src.out.err : "cannot write the migration stream");
		prefer_verdict(src.out.fd, &e);
	}
	info.st.bytes += src.out.pos - start;
	info.downtime_bytes = src.out.pos - start;
	info.remaining = 0;
	finish_times(t_stop);
	if (rc < 0) {
		fail(e);
		fprintf(stderr, "kvmlite: migration to %s failed: %s\n", src.uri, info.error);
		if (was_running)
			kl_vm_resume(vm);
	} else {
		set_status(KL_MIG_COMPLETED);
		/* as QEMU: the source stays stopped in 'postmigrate' */
		if (vm->state == KL_RS_PAUSED)
			vm->state = KL_RS_POSTMIGRATE;
	}
	source_end(vm);
}

static bool src_was_running;

/* One step of pre-copy on the main loop: up to ~1 MiB of dirty pages
 * within max-bandwidth; at the end of a pass, sync the dirty log and
 * decide whether the rest fits downtime-limit. */
static gboolean tick_cb(gpointer opaque)
{
	struct kl_vm *vm = opaque;
	uint64_t now = kl_clock_ns();
	uint64_t budget = 1u << 20;
	if (params.max_bandwidth) {
		if (now - src.window_t0 > 1000000000ull) { /* a new 1 s window */
			src.window_t0 = now;
			src.window_bytes = 0;
		}
		double allowed = (double)params.max_bandwidth * (double)(now - src.window_t0) / 1e9;
		if ((double)src.window_bytes + KL_MIG_PAGE > allowed)
			return G_SOURCE_CONTINUE;
		if (allowed - (double)src.window_bytes < (double)budget)
			budget = (uint64_t)(allowed - (double)src.window_bytes);
	}
	uint64_t before = src.out.pos;
	int r = kl_mig_ram_send_dirty(vm, &src.out, &src.dirty, &src.cur, budget, &info.st);
	uint64_t n = src.out.pos - before;
	src.window_bytes += n;
	src.pass_bytes += n;
	info.st.bytes += n;
	if (r < 0) {
		char *e = g_strdup(src.out.err ? src.out.err : "cannot write the migration stream");
		prefer_verdict(src.out.fd, &e);
		src.tick = 0;
		finish_times(kl_clock_ns());
		fail(e);
		fprintf(stderr, "kvmlite: migration to %s failed: %s\n", src.uri, info.error);
		source_end(vm);
		return G_SOURCE_REMOVE;
	}
	if (r == 0)
		return G_SOURCE_CONTINUE;
	/* a pass ended */
	char *e = NULL;
	int64_t dirty = kl_dirty_sync(&src.dirty, &e);
	if (dirty < 0) {
		src.tick = 0;
		finish_times(kl_clock_ns());
		fail(e);
		source_end(vm);
		return G_SOURCE_REMOVE;
	}
	info.dirty_sync_count++;
	double secs = (double)(kl_clock_ns() - src.pass_t0) / 1e9;
	if (secs > 0 && src.pass_bytes)
		src.bw = (double)src.pass_bytes / secs;
	if (secs > 0)
		info.dirty_pages_rate = (uint64_t)((double)dirty / secs);
	info.remaining = (uint64_t)dirty * KL_MIG_PAGE;
	double bw = src.bw > 0 ? src.bw : 1e9;
	if (params.max_bandwidth && bw > (double)params.max_bandwidth)
		bw = (double)params.max_bandwidth;
	info.expected_downtime_ms = (int64_t)((double)info.remaining / bw * 1000);
	src.pass++;
	if (params.events && event_fn)
		event_fn("MIGRATION_PASS", "pass", NULL, (int64_t)src.pass);
	/* within downtime-limit: stop now, unless a short live pass still
	 * halves what the stop-and-copy would send (the guest dirties less
	 * than a fast pass sends): the downtime shrinks with it */
	bool fits = (uint64_t)info.expected_downtime_ms <= params.downtime_limit_ms;
	bool shrinking = info.remaining > 64 * KL_MIG_PAGE &&
			 info.remaining * 2 <= src.last_remaining;
	src.last_remaining = info.remaining;
	if ((fits && !shrinking) || src.pass >= params.max_iterations) {
		src.tick = 0;
		complete(vm, src_was_running);
		return G_SOURCE_REMOVE;
	}
	/* auto-converge: a guest that dirties more than a pass could send */
	if (params.auto_converge && src.pass >= 2 && info.remaining * 2 > src.pass_bytes) {
		info.throttle_pct = info.throttle_pct ? info.throttle_pct +
			(int64_t)params.throttle_increment : (int64_t)params.throttle_initial;
		if (info.throttle_pct > 99)
			info.throttle_pct = 99;
		if (!src.throttle_tick && vm->state == KL_RS_RUNNING)
			src.throttle_tick = kl_timer_add_ms(100 - (unsigned)info.throttle_pct,
							   throttle_cb, vm);
	}
	src.pass_t0 = kl_clock_ns();
	src.pass_bytes = 0;
	return G_SOURCE_CONTINUE;
}

static void refresh_live(void)
{
	if (!src.live)
		return;
	info.has_times = true;
	info.total_time_ms = (int64_t)((kl_clock_ns() - src.t0) / 1000000);
	info.setup_time_ms = (int64_t)((src.t_setup - src.t0) / 1000000);
	double secs = (double)(kl_clock_ns() - src.t0) / 1e9;
	info.mbps = secs > 0 ? (double)info.st.bytes * 8 / 1e6 / secs : 0;
}

int kl_migrate(struct kl_vm *vm, const char *uri, char **err)
{
	if (src.live || info.status == KL_MIG_SETUP || info.status == KL_MIG_ACTIVE ||
	    info.status == KL_MIG_DEVICE) {
		*err = g_strdup("There's a migration process in progress");
		return -1;
	}
	if (inc.pending || vm->state == KL_RS_INMIGRATE) {
		*err = g_strdup("Guest is waiting for an incoming migration");
		return -1;
	}
	if (vm->state == KL_RS_SHUTDOWN || vm->state == KL_RS_INTERNAL_ERROR ||
	    vm->quit_requested) {
		*err = g_strdup_printf("the guest is in state '%s': nothing to migrate",
				       kl_runstate_name(vm->state));
		return -1;
	}
	struct uri u;
	if (parse_uri(uri, false, &u, err) < 0) {
		uri_free(&u);
		return -1;
	}
	g_free(info.error);
	memset(&info, 0, sizeof(info));
	info.status = KL_MIG_NONE;
	set_status(KL_MIG_SETUP);
	src.t0 = kl_clock_ns();
	src.vm = vm;
	src.uri = g_strdup(uri);
	memset(&src.out, 0, sizeof(src.out));
	src.out.fd = -1;
	/* x-ignore-shared, as QEMU: RAM that is a shared file is not sent
	 * (the destination maps the same file); other RAM still is */
	src.out.skip_shared_ram = params.ignore_shared && vm->mem.file_shared;
	char *e = NULL;
	if (u.t == T_FILE) {
		src.out.fd = open(u.path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (src.out.fd < 0)
			e = g_strdup_printf("Could not open '%s': %s", u.path, g_strerror(errno));
		else if (ftruncate(src.out.fd, (off_t)u.offset) < 0 ||
			 lseek(src.out.fd, (off_t)u.offset, SEEK_SET) < 0)
			e = g_strdup_printf("'%s': %s", u.path, g_strerror(errno));
		src.out.file = true;
		src.out.pos = u.offset;
	} else if (u.t == T_EXEC) {
		src.out.fd = spawn(u.path, true, &src.exec_pid, &e);
	} else {
		src.out.fd = sock_open(&u, false, &e);
		if (src.out.fd >= 0)
			set_timeouts(src.out.fd);
	}
	if (e) {
		src.t_setup = kl_clock_ns();
		finish_times(src.t_setup);
		fail(e);
		source_end(vm);
		uri_free(&u);
		return 0;
	}
	src.t_setup = kl_clock_ns();
	src_was_running = vm->state == KL_RS_RUNNING;
	set_status(KL_MIG_ACTIVE);
	if (u.t == T_FILE) {
		/* a snapshot: stop-and-copy in the page-aligned file layout */
		set_status(KL_MIG_DEVICE);
		kl_vm_pause(vm);
		uint64_t t_stop = kl_clock_ns();
		int rc = kl_mig_save(vm, &src.out, &info.st, &e);
		info.downtime_bytes = info.st.bytes;
		if (rc == 0 && fsync(src.out.fd) < 0 && errno != EINVAL) {
			e = g_strdup_printf("'%s': %s", u.path, g_strerror(errno));
			rc = -1;
		}
		finish_times(t_stop);
		if (rc < 0) {
			fail(e);
			fprintf(stderr, "kvmlite: migration to %s failed: %s\n", uri, info.error);
			if (src_was_running)
				kl_vm_resume(vm);
		} else {
			set_status(KL_MIG_COMPLETED);
			if (vm->state == KL_RS_PAUSED)
				vm->state = KL_RS_POSTMIGRATE;
		}
		source_end(vm);
		uri_free(&u);
		return 0;
	}
	uri_free(&u);
	if (src.out.skip_shared_ram) {
		/* no RAM to pre-copy: the header, the SHARED record, then
		 * stop-and-copy of the devices */
		info.st.total_ram = vm->mem.ram_size;
		if (kl_mig_save_header(vm, &src.out) < 0 ||
		    kl_mig_shared_save(vm, &src.out) < 0) {
			e = g_strdup(src.out.err ? src.out.err : "cannot write the migration stream");
			prefer_verdict(src.out.fd, &e);
			finish_times(kl_clock_ns());
			fail(e);
			source_end(vm);
			return 0;
		}
		info.st.bytes = src.out.pos;
		complete(vm, src_was_running);
		return 0;
	}
	/* live pre-copy: every page once, then what the guest dirtied */
	if (kl_dirty_start(vm, &src.dirty, &e) < 0 || kl_mig_save_header(vm, &src.out) < 0) {
		if (!e)
			e = g_strdup(src.out.err ? src.out.err : "cannot write the migration stream");
		finish_times(kl_clock_ns());
		fail(e);
		source_end(vm);
		return 0;
	}
	kl_dirty_set_all(&src.dirty);
	/* the first pass sends never-touched pages as zero markers unread */
	kl_mig_ram_find_holes(vm, &src.cur);
	info.st.total_ram = vm->mem.ram_size;
	info.st.bytes = src.out.pos;
	info.remaining = vm->mem.ram_size;
	src.live = true;
	src.cur.region = 0;
	src.cur.page = 0;
	src.pass = 0;
	src.bw = 0;
	src.last_remaining = UINT64_MAX;
	src.pass_t0 = src.window_t0 = kl_clock_ns();
	src.pass_bytes = src.window_bytes = 0;
	src.tick = kl_timer_add_ms(1, tick_cb, vm);
	return 0;
}

void kl_migrate_cancel(struct kl_vm *vm)
{
	if (!src.live)
		return;
	set_status(KL_MIG_CANCELLED);
	finish_times(kl_clock_ns());
	source_end(vm);
}

/* ---- destination ---- */
static void incoming_done(struct kl_vm *vm, int rc, const char *e)
{
	inc.pending = false;
	if (rc < 0) {
		info.status = KL_MIG_FAILED;
		g_free(info.error);
		info.error = g_strdup(e);
		fprintf(stderr, "kvmlite: load of migration failed: %s\n", e);
		/* as QEMU: a destination that could not load exits */
		kl_vm_request_shutdown(vm, 1, false, NULL);
		return;
	}
	info.status = KL_MIG_COMPLETED;
	vm->state = KL_RS_PAUSED;
	if (inc.autostart)
		kl_vm_resume(vm);
	else
		kl_vm_emit(vm, KL_EV_STOP, NULL);
}

static int load_fd(struct kl_vm *vm, int fd, bool file, uint64_t pos, char **err)
{
	struct kl_mig_in in = { .fd = fd, .file = file, .pos = pos, .map_ram = file };
	info.status = KL_MIG_ACTIVE;
	return kl_mig_load(vm, &in, err);
}

static bool on_accept(int lfd, GIOCondition cond, void *opaque)
{
	struct kl_vm *vm = opaque;
	(void)cond;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return true; /* spurious: keep waiting */
	inc.watch = 0;
	close(inc.listen_fd);
	inc.listen_fd = -1;
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	set_timeouts(fd);
	char *e = NULL;
	int rc = load_fd(vm, fd, false, 0, &e);
	/* the return path: the source learns whether this side took it */
	char *msg = rc == 0 ? g_strdup("OK\n") : g_strdup_printf("ERR %s\n", e);
	ssize_t w = write(fd, msg, strlen(msg));
	(void)w; /* a source that is gone learns nothing either way */
	g_free(msg);
	if (rc < 0) {
		/* read what the source still sends (briefly) so that closing
		 * with unread data does not reset the connection before the
		 * source has read why */
		shutdown(fd, SHUT_WR);
		struct timeval tv = { .tv_sec = 2 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		uint64_t t_end = kl_clock_ns() + 2000000000ull;
		char sink[65536];
		while (kl_clock_ns() < t_end && read(fd, sink, sizeof(sink)) > 0)
			;
	}
	close(fd);
	incoming_done(vm, rc, e);
	g_free(e);
	return false;
}

/* exec: the command's output is the stream (no return path) */
static bool on_exec_data(int fd, GIOCondition cond, void *opaque)
{
	struct kl_vm *vm = opaque;
	(void)cond;
	inc.watch = 0;
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	char *e = NULL;
	int rc = load_fd(vm, fd, false, 0, &e);
	close(fd);
	if (inc.exec_pid) {
		char *e2 = NULL;
		if (reap(inc.exec_pid, &e2) < 0 && rc == 0) {
			e = e2;
			rc = -1;
		} else {
			g_free(e2);
		}
		inc.exec_pid = 0;
	}
	incoming_done(vm, rc, e);
	g_free(e);
	return false;
}

static int incoming_start(struct kl_vm *vm, const char *uri, char **err)
{
	struct uri u;
	if (parse_uri(uri, true, &u, err) < 0) {
		uri_free(&u);
		return -1;
	}
	info.incoming = true;
	info.status = KL_MIG_SETUP;
	if (u.t == T_FILE) {
		int fd = open(u.path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			*err = g_strdup_printf("Could not open '%s': %s", u.path, g_strerror(errno));
			uri_free(&u);
			return -1;
		}
		char *e = NULL;
		int rc = lseek(fd, (off_t)u.offset, SEEK_SET) < 0 ? -1 : 0;
		if (rc < 0)
			e = g_strdup_printf("'%s': %s", u.path, g_strerror(errno));
		else
			rc = load_fd(vm, fd, true, u.offset, &e);
		close(fd); /* the private mappings keep the file */
		incoming_done(vm, rc, e);
		g_free(e);
		uri_free(&u);
		return 0;
	}
	if (u.t == T_EXEC) {
		pid_t pid = 0;
		int fd = spawn(u.path, false, &pid, err);
		uri_free(&u);
		if (fd < 0)
			return -1;
		inc.exec_pid = pid;
		inc.watch = kl_fd_add(fd, G_IO_IN | G_IO_HUP, on_exec_data, vm);
		return 0;
	}
	int fd = sock_open(&u, true, err);
	if (fd < 0) {
		uri_free(&u);
		return -1;
	}
	if (u.t == T_UNIX)
		inc.unix_path = g_strdup(u.path);
	inc.listen_fd = fd;
	inc.watch = kl_fd_add(fd, G_IO_IN, on_accept, vm);
	uri_free(&u);
	return 0;
}

int kl_migrate_incoming(struct kl_vm *vm, const char *uri, bool start_paused, char **err)
{
	inc.vm = vm;
	inc.pending = true;
	inc.autostart = !start_paused;
	vm->state = KL_RS_INMIGRATE;
	if (!strcmp(uri, "defer")) {
		inc.deferred = true;
		return 0;
	}
	return incoming_start(vm, uri, err);
}

int kl_migrate_incoming_qmp(struct kl_vm *vm, const char *uri, char **err)
{
	if (!inc.pending) {
		*err = g_strdup("'-incoming' was not specified on the command line");
		return -1;
	}
	if (!inc.deferred) {
		*err = g_strdup("The incoming migration has already been started");
		return -1;
	}
	if (!strcmp(uri, "defer")) {
		*err = g_strdup("invalid migration URI 'defer' for migrate-incoming");
		return -1;
	}
	if (incoming_start(vm, uri, err) < 0)
		return -1;
	inc.deferred = false;
	return 0;
}

void kl_mig_cleanup(void)
{
	if (src.live)
		source_end(src.vm);
	if (inc.watch)
		kl_source_remove(inc.watch);
	inc.watch = 0;
	if (inc.listen_fd >= 0)
		close(inc.listen_fd);
	inc.listen_fd = -1;
	if (inc.unix_path)
		unlink(inc.unix_path);
	g_free(inc.unix_path);
	inc.unix_path = NULL;
	g_free(info.error);
	info.error = NULL;
	kl_mig_set_cpu_model(NULL);
}
