/* Unit tests for the monitor's socket modes (src/chardev/socket.c, src/monitor/monitor.c):
 * server=on with wait=on (start-up blocks until the first client, which gets
 * the greeting) and client mode (server=off: kvmlite connects to the peer). */
#include <check.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../../src/monitor/monitor_int.h"
#include "fake_vm.h"
#include "kvmlite/chardev.h"
#include "kvmlite/loop.h"
#include "kvmlite/monitor.h"
#include "sock_util.h"

static struct kl_vm vm;

/* Client mode: kvmlite connects to a socket the test listens on, sends the
 * greeting and serves QMP on it; the peer's path is left alone. */
static int listen_unix_at(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	return fd;
}

static int accept_within(int lfd, int ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	if (poll(&p, 1, ms) != 1)
		return -1;
	return accept(lfd, NULL, NULL);
}

static void check_chardev(const char *label, const char *filename)
{
	GPtrArray *l = kl_chardev_list();
	bool found = false;
	for (guint i = 0; i < l->len; i++) {
		struct kl_chardev_info *ci = g_ptr_array_index(l, i);
		if (strcmp(ci->label, label))
			continue;
		found = true;
		ck_assert_str_eq(ci->filename, filename);
		ck_assert(ci->frontend_open);
	}
	ck_assert_msg(found, "no chardev %s", label);
	g_ptr_array_unref(l);
}

START_TEST(client_mode_unix)
{
	kl_loop_init();
	fake_vm_init(&vm, 1);
	char *path = tmp_sock(), *err = NULL;
	int lfd = listen_unix_at(path);
	char *spec = g_strdup_printf("unix:%s,wait=on", path); /* wait= ignored */
	ck_assert_msg(kl_monitor_add_qmp(&vm, spec, &err) == 0, "%s", err);
	ck_assert_int_eq(fake.listeners, 1);
	int fd = accept_within(lfd, 2000);
	ck_assert_int_ge(fd, 0);
	GString *acc = g_string_new(NULL);
	expect_line(fd, acc, "{\"QMP\": {\"version\": ");
	send_str(fd, "{\"execute\":\"query-status\"}");
	expect_line(fd, acc, "{\"error\": {\"class\": \"CommandNotFound\"");
	send_str(fd, "{\"execute\":\"qmp_capabilities\"}{\"execute\":\"query-status\",\"id\":7}");
	expect_line(fd, acc, "{\"return\": {}}");
	expect_line(fd, acc, "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, "
			     "\"running\": false}, \"id\": 7}");
	char *fname = g_strdup_printf("unix:%s", path);
	check_chardev("compat_monitor0", fname);
	struct kl_event_info info = { false, "host-qmp-quit" };
	fake.listener(fake.listener_opaque, KL_EV_SHUTDOWN, &info);
	expect_line(fd, acc, "{\"timestamp\"");

	/* -chardev (client) + -mon: the greeting only once -mon attaches */
	spec = (g_free(spec), g_strdup_printf("socket,id=c1,path=%s", path));
	ck_assert_msg(kl_chardev_add(spec, &err) == 0, "%s", err);
	int fd1 = accept_within(lfd, 2000);
	ck_assert_int_ge(fd1, 0);
	ck_assert(quiet(fd1));
	GString *acc1 = g_string_new(NULL);
	ck_assert_msg(kl_monitor_add_mon(&vm, "chardev=c1,mode=control", &err) == 0, "%s", err);
	expect_line(fd1, acc1, "{\"QMP\": ");
	/* a -chardev nobody attaches: its connection is closed at cleanup */
	spec = (g_free(spec), g_strdup_printf("socket,id=c2,path=%s,server=off", path));
	ck_assert_msg(kl_chardev_add(spec, &err) == 0, "%s", err);
	int fd2 = accept_within(lfd, 2000);
	ck_assert_int_ge(fd2, 0);
	ck_assert(quiet(fd2));

	/* the peer hangs up: the client goes away, no reconnect */
	close(fd);
	for (int i = 0; i < 400; i++) {
		pump();
		GPtrArray *l = kl_chardev_list();
		struct kl_chardev_info *ci = g_ptr_array_index(l, 0); /* compat_monitor0 */
		bool gone = g_str_has_prefix(ci->filename, "disconnected:");
		g_ptr_array_unref(l);
		if (gone)
			break;
		g_usleep(5000);
	}
	char *dfname = g_strdup_printf("disconnected:unix:%s", path);
	check_chardev("compat_monitor0", dfname);
	ck_assert_int_eq(accept_within(lfd, 100), -1);

	kl_monitor_cleanup();
	kl_chardev_cleanup();
	ck_assert(access(path, F_OK) == 0); /* the peer's socket is not unlinked */
	char c;
	ck_assert_int_eq(recv(fd2, &c, 1, 0), 0); /* EOF */
	ck_assert_int_eq(recv(fd1, &c, 1, 0), 0);
	close(fd1);
	close(fd2);
	close(lfd);
	unlink(path);
	g_string_free(acc, TRUE);
	g_string_free(acc1, TRUE);
	g_free(fname);
	g_free(dfname);
	g_free(spec);
	g_free(path);
	fake_vm_free(&vm);
}
END_TEST

START_TEST(client_mode_tcp)
{
	kl_loop_init();
	fake_vm_init(&vm, 1);
	char *err = NULL;
	struct sockaddr_in sa;
	int lfd = loopback_bound(&sa);
	ck_assert_int_eq(listen(lfd, 4), 0);
	char *spec = g_strdup_printf("socket,id=t0,host=127.0.0.1,port=%u", ntohs(sa.sin_port));
	ck_assert_msg(kl_chardev_add(spec, &err) == 0, "%s", err);
	ck_assert_msg(kl_monitor_add_mon(&vm, "chardev=t0,mode=control", &err) == 0, "%s", err);
	int fd = accept_within(lfd, 2000);
	ck_assert_int_ge(fd, 0);
	GString *acc = g_string_new(NULL);
	expect_line(fd, acc, "{\"QMP\": ");
	char *fname = g_strdup_printf("tcp:127.0.0.1:%u", ntohs(sa.sin_port));
	check_chardev("t0", fname);
	kl_monitor_cleanup();
	kl_chardev_cleanup();
	close(fd);
	close(lfd);
	/* nobody listens there any more */
	spec = (g_free(spec), g_strdup_printf("tcp:127.0.0.1:%u", ntohs(sa.sin_port)));
	ck_assert_int_eq(kl_monitor_add_qmp(&vm, spec, &err), -1);
	char *want = g_strdup_printf("-qmp '%s': cannot connect to 127.0.0.1:%u: Connection refused",
				     spec, ntohs(sa.sin_port));
	ck_assert_str_eq(err, want);
	g_free(err);
	g_free(want);
	g_string_free(acc, TRUE);
	g_free(fname);
	g_free(spec);
	fake_vm_free(&vm);
}
END_TEST

/* wait=on: a thread connects after a delay while the call blocks. */
struct connector {
	struct sockaddr_storage sa;
	socklen_t len;
	int delay_ms;
	int fd;
	gint64 connected_at;
};

static gpointer connector_run(gpointer p)
{
	struct connector *c = p;
	g_usleep(c->delay_ms * 1000);
	for (int i = 0; i < 500; i++) {
		c->fd = socket(c->sa.ss_family, SOCK_STREAM, 0);
		c->connected_at = g_get_monotonic_time();
		if (connect(c->fd, (struct sockaddr *)&c->sa, c->len) == 0)
			return NULL;
		close(c->fd);
		c->fd = -1;
		g_usleep(10000);
	}
	return NULL;
}

/* Call fn(arg) with stderr captured; returns what it wrote. */
static char *capture_stderr(int (*fn)(const char *), const char *arg, int *ret)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(pfd[1], 2);
	close(pfd[1]);
	*ret = fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char buf[4096];
	ssize_t n = read(pfd[0], buf, sizeof(buf) - 1);
	close(pfd[0]);
	return g_strndup(buf, n > 0 ? n : 0);
}

static char *wait_err;
static int do_add_qmp(const char *spec)
{
	return kl_monitor_add_qmp(&vm, spec, &wait_err);
}
static int do_chardev_add(const char *spec)
{
	return kl_chardev_add(spec, &wait_err);
}

START_TEST(wait_on_blocks_until_connect)
{
	kl_loop_init();
	fake_vm_init(&vm, 1);
	char *path = tmp_sock();
	struct connector c = { .delay_ms = 200, .fd = -1 };
	struct sockaddr_un *un = (struct sockaddr_un *)&c.sa;
	un->sun_family = AF_UNIX;
	g_strlcpy(un->sun_path, path, sizeof(un->sun_path));
	c.len = sizeof(*un);
	char *spec = g_strdup_printf("unix:%s,server=on", path); /* wait absent: on */
	GThread *t = g_thread_new("connector", connector_run, &c);
	gint64 t0 = g_get_monotonic_time();
	int ret;
	char *out = capture_stderr(do_add_qmp, spec, &ret);
	gint64 t1 = g_get_monotonic_time();
	g_thread_join(t);
	ck_assert_msg(ret == 0, "%s", wait_err);
	char *want = g_strdup_printf("kvmlite: waiting for connection on: disconnected:unix:%s,server=on\n", path);
	ck_assert_str_eq(out, want);
	ck_assert_int_ge(c.fd, 0);
	ck_assert_msg(t1 >= c.connected_at && t1 - t0 >= 190 * 1000,
		      "returned after %lld us, connect at %lld us", (long long)(t1 - t0),
		      (long long)(c.connected_at - t0));
	GString *acc = g_string_new(NULL);
	expect_line(c.fd, acc, "{\"QMP\": {\"version\": ");
	send_str(c.fd, "{\"execute\":\"qmp_capabilities\"}");
	expect_line(c.fd, acc, "{\"return\": {}}");
	char *fname = g_strdup_printf("unix:%s,server=on", path);
	check_chardev("compat_monitor0", fname);
	/* the next peer is accepted once the first leaves, as with wait=off */
	int b = connect_unix(path);
	GString *bacc = g_string_new(NULL);
	ck_assert(quiet(b));
	close(c.fd);
	c.fd = -1;
	pump();
	expect_line(b, bacc, "{\"QMP\": ");
	kl_monitor_cleanup();
	kl_chardev_cleanup();
	ck_assert(access(path, F_OK) != 0);
	close(b);
	g_string_free(acc, TRUE);
	g_string_free(bacc, TRUE);
	g_free(out);
	g_free(want);
	g_free(fname);
	g_free(spec);
	g_free(path);
	fake_vm_free(&vm);
}
END_TEST

/* -chardev socket over TCP with the old "server" spelling (wait on): the
 * wait happens in kl_chardev_add; the greeting once -mon attaches. */
START_TEST(wait_on_chardev_tcp)
{
	kl_loop_init();
	fake_vm_init(&vm, 1);
	struct sockaddr_in sa;
	close(loopback_bound(&sa)); /* a free port */
	unsigned port = ntohs(sa.sin_port);
	struct connector c = { .delay_ms = 200, .fd = -1, .len = sizeof(sa) };
	memcpy(&c.sa, &sa, sizeof(sa));
	char *spec = g_strdup_printf("socket,id=w0,host=127.0.0.1,port=%u,server", port);
	GThread *t = g_thread_new("connector", connector_run, &c);
	int ret;
	char *out = capture_stderr(do_chardev_add, spec, &ret);
	g_thread_join(t);
	ck_assert_msg(ret == 0, "%s", wait_err);
	char *want = g_strdup_printf("kvmlite: waiting for connection on: disconnected:tcp:127.0.0.1:%u,server=on\n", port);
	ck_assert_str_eq(out, want);
	ck_assert_int_ge(c.fd, 0);
	ck_assert(quiet(c.fd));
	char *err = NULL;
	ck_assert_msg(kl_monitor_add_mon(&vm, "chardev=w0,mode=control", &err) == 0, "%s", err);
	GString *acc = g_string_new(NULL);
	expect_line(c.fd, acc, "{\"QMP\": ");
	kl_monitor_cleanup();
	kl_chardev_cleanup();
	close(c.fd);
	g_string_free(acc, TRUE);
	g_free(out);
	g_free(want);
	g_free(spec);
	fake_vm_free(&vm);
}
END_TEST

TCase *chardev_modes_tcase(void)
{
	TCase *t = tcase_create("socket-modes");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, client_mode_unix);
	tcase_add_test(t, client_mode_tcp);
	tcase_add_test(t, wait_on_blocks_until_connect);
	tcase_add_test(t, wait_on_chardev_tcp);
	return t;
}
