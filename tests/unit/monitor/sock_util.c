/* Socket helpers shared by the monitor unit tests (see sock_util.h). */
#include <check.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kvmlite/loop.h"
#include "sock_util.h"

void pump(void)
{
	while (g_main_context_iteration(kl_loop_context(), FALSE))
		;
}

/* Read one "\r\n"-terminated line from fd, pumping the main loop. */
char *read_line(int fd, GString *acc)
{
	for (int i = 0; i < 4000; i++) {
		char *nl = strstr(acc->str, "\r\n");
		if (nl) {
			char *l = g_strndup(acc->str, nl - acc->str);
			g_string_erase(acc, 0, nl - acc->str + 2);
			return l;
		}
		pump();
		char buf[65536];
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			g_string_append_len(acc, buf, n);
		else if (n == 0)
			return NULL;
		else
			g_usleep(500);
	}
	return NULL;
}

bool quiet(int fd)
{
	pump();
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

void send_str(int fd, const char *s)
{
	ck_assert_int_eq(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

int connect_unix(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

void expect_line(int fd, GString *acc, const char *prefix)
{
	char *l = read_line(fd, acc);
	ck_assert_msg(l && g_str_has_prefix(l, prefix), "got '%s', want '%s...'", l ? l : "(eof)", prefix);
	g_free(l);
}

char *tmp_sock(void)
{
	char *dir = g_dir_make_tmp("klqmp-XXXXXX", NULL);
	char *p = g_build_filename(dir, "qmp.sock", NULL);
	g_free(dir);
	return p;
}

int loopback_bound(struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	*sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	ck_assert_int_eq(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	socklen_t sl = sizeof(*sa);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)sa, &sl), 0);
	return fd;
}
