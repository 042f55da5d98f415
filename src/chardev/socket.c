/* The socket back-end, the one socket server of the chardev layer: unix
 * and loopback TCP, server (listen, one peer at a time as QEMU; wait=on
 * blocks start-up until the first peer) or client (connect now), and fd=N
 * (an inherited listening or connected socket, as libvirt passes). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "chardev_int.h"
#include "kvmlite/loop.h"

/* sa = the unix socket address of path; -1 with *err if path cannot be one. */
static int unix_addr(const char *path, struct sockaddr_un *sa, char **err)
{
	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	if (!*path) {
		*err = g_strdup("empty unix socket path");
		return -1;
	}
	if (strlen(path) >= sizeof(sa->sun_path)) {
		*err = g_strdup_printf("unix socket path '%s' is too long (max %zu bytes)", path,
				       sizeof(sa->sun_path) - 1);
		return -1;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

int kl_sock_listen_unix(const char *path, char **err)
{
	struct sockaddr_un sa;
	if (unix_addr(path, &sa, err) < 0)
		return -1;
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			*err = g_strdup_printf("'%s' exists and is not a socket", path);
			return -1;
		}
		unlink(path); /* stale socket of a previous run, as QEMU does */
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		*err = g_strdup_printf("cannot listen on unix socket '%s': %s", path,
				       g_strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int kl_sock_connect_unix(const char *path, char **err)
{
	struct sockaddr_un sa;
	if (unix_addr(path, &sa, err) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		*err = g_strdup_printf("cannot connect to %s: %s", path, g_strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

/* Resolve host:port; every address must be loopback (QMP and the consoles
 * have no authentication: never exposed on the network, in either
 * direction).  verb: "listens on" / "connects to", for the message. */
static struct addrinfo *resolve_loopback(const char *host, const char *port, const char *verb,
					 char **err)
{
	if (!port || !*port) {
		*err = g_strdup("missing TCP port");
		return NULL;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int r = getaddrinfo(host, port, &hints, &res);
	if (r) {
		*err = g_strdup_printf("cannot resolve '%s:%s': %s", host, port, gai_strerror(r));
		return NULL;
	}
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		if (!addr_is_loopback(a->ai_addr)) {
			*err = g_strdup_printf("host '%s' is not a loopback address; a kvmlite "
					       "socket only %s 127.0.0.0/8 or ::1", host, verb);
			freeaddrinfo(res);
			return NULL;
		}
	}
	return res;
}

int kl_sock_tcp(const char *host, const char *port, bool server, char **err)
{
	if (!host || !*host) {
		*err = g_strdup(server ? "listening on all interfaces is not allowed; use a "
				"loopback host such as 127.0.0.1"
			      : "missing host to connect to; use a loopback host such as 127.0.0.1");
		return -1;
	}
	struct addrinfo *res = resolve_loopback(host, port, server ? "listens on" : "connects to",
						err);
	if (!res)
		return -1;
	int fd = -1, e = 0;
	for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (server ? SOCK_NONBLOCK : 0), 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		int one = 1;
		if (server)
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (server ? bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 16) < 0
			   : connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
			e = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		*err = g_strdup_printf("cannot %s %s:%s: %s", server ? "listen on" : "connect to",
				       host, port, g_strerror(e));
	return fd;
}

/* wait=on: block start-up until the first peer connects (QEMU does the
 * same before the guest runs).  Returns the accepted fd, or -1 with *err. */
static int wait_first_client(int lfd, const char *fname, char **err)
{
	fprintf(stderr, "kvmlite: waiting for connection on: disconnected:%s\n", fname);
	for (;;) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			*err = g_strdup_printf("waiting for a connection: %s", g_strerror(errno));
			return -1;
		}
		int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c >= 0)
			return c;
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == ECONNABORTED)
			continue;
		*err = g_strdup_printf("cannot accept a connection: %s", g_strerror(errno));
		return -1;
	}
}

static void connected(struct kl_chardev *cd, int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	kl_chr_set_connected(cd, fd, fd, true);
}

static bool listen_ready(int fd, GIOCondition cond, void *opaque)
{
	(void)cond;
	struct kl_chardev *cd = opaque;
	int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return true; /* EAGAIN, or a transient error (EMFILE...): retry later */
	/* one peer at a time, as QEMU: the next waits in the backlog */
	cd->listen_watch = 0;
	connected(cd, c);
	if (cd->fe && cd->fe->event)
		cd->fe->event(cd->fe_opaque, KL_CHR_EVENT_OPENED);
	kl_chr_update_read(cd);
	return false;
}

void kl_chr_socket_close(struct kl_chardev *cd)
{
	if (cd->server && cd->listen_fd >= 0 && !cd->listen_watch)
		cd->listen_watch = kl_fd_add(cd->listen_fd, G_IO_IN, listen_ready, cd);
}

static void socket_free(struct kl_chardev *cd)
{
	if (cd->listen_watch)
		kl_source_remove(cd->listen_watch);
	cd->listen_watch = 0;
	if (cd->listen_fd >= 0)
		close(cd->listen_fd);
	cd->listen_fd = -1;
	if (cd->unlink_path)
		unlink(cd->unlink_path);
	g_free(cd->unlink_path);
	cd->unlink_path = NULL;
}

/* fd=N: an inherited socket; server=on wants it listening, off connected. */
static int inherited_fd(const char *s, bool server, char **err)
{
	char *end;
	errno = 0;
	long fd = strtol(s, &end, 10);
	struct stat st;
	if (!*s || *end || errno || fd < 0 || fd > 65535) {
		*err = g_strdup_printf("fd=%s is not a file descriptor number", s);
		return -1;
	}
	if (fstat((int)fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		*err = g_strdup_printf("fd=%s is not an open socket", s);
		return -1;
	}
	int acc = 0;
	socklen_t l = sizeof(acc);
	if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0)
		acc = 0;
	if (server != (acc != 0)) {
		*err = g_strdup_printf(server ? "fd=%s is not a listening socket (server=on)"
					      : "fd=%s is a listening socket: add server=on", s);
		return -1;
	}
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	return (int)fd;
}

static int socket_open(struct kl_chardev *cd, struct kl_opts *o, char **err)
{
	const char *p = kl_opts_get(o, "path");
	const char *h = kl_opts_get(o, "host");
	const char *pt = kl_opts_get(o, "port");
	const char *fds = kl_opts_get(o, "fd");
	bool server, wait;
	char *host = NULL;
	int fd = -1, first = -1;

	if (kl_opts_get_bool(o, "server", false, &server, err) < 0 ||
	    kl_opts_get_bool(o, "wait", true, &wait, err) < 0)
		return -1;
	/* (wait= is read even with server=off, where QEMU ignores it) */
	if ((p != NULL) + (h || pt) + (fds != NULL) > 1) {
		*err = g_strdup("only one of path=, host=/port= and fd= may be given");
		return -1;
	}
	if (!p && !pt && !fds) {
		*err = g_strdup(h ? "missing TCP port" : "needs path= (unix), host=,port= (TCP) or fd=");
		return -1;
	}
	/* unknown keys before anything opens or waits */
	if (kl_opts_check_unused(o, NULL, err) < 0)
		return -1;
	const char *srv = server ? ",server=on" : "";
	if (p) {
		cd->filename = g_strdup_printf("unix:%s%s", p, srv);
	} else if (fds) {
		cd->filename = g_strdup_printf("fd:%s%s", fds, srv);
	} else {
		host = g_strdup(h ? h : "");
		if (host[0] == '[' && strlen(host) > 1 && host[strlen(host) - 1] == ']') {
			char *x = g_strndup(host + 1, strlen(host) - 2);
			g_free(host);
			host = x;
		}
		cd->filename = strchr(host, ':') ? g_strdup_printf("tcp:[%s]:%s%s", host, pt, srv)
						 : g_strdup_printf("tcp:%s:%s%s", host, pt, srv);
	}
	cd->is_socket = true;
	cd->server = server;
	if (fds) {
		fd = inherited_fd(fds, server, err);
		if (fd < 0)
			goto fail;
		if (!server) {
			first = fd;
			fd = -1;
		} else {
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		}
	} else if (!server) {
		first = p ? kl_sock_connect_unix(p, err) : kl_sock_tcp(host, pt, false, err);
		if (first < 0)
			goto fail;
	} else {
		fd = p ? kl_sock_listen_unix(p, err) : kl_sock_tcp(host, pt, true, err);
		if (fd < 0)
			goto fail;
		if (p)
			cd->unlink_path = g_strdup(p);
	}
	if (fd >= 0) {
		cd->listen_fd = fd;
		if (wait && (first = wait_first_client(fd, cd->filename, err)) < 0)
			goto fail;
	}
	if (first >= 0)
		connected(cd, first);
	else
		kl_chr_socket_close(cd); /* start listening */
	g_free(host);
	return 0;
fail:
	socket_free(cd);
	g_free(host);
	return -1;
}

const struct kl_chr_be kl_chr_socket = { .name = "socket", .open = socket_open,
					 .close = socket_free };
