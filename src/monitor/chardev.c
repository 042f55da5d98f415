/* Monitor transports: -qmp / -chardev socket / -mon parsing, listening
 * sockets (unix, loopback TCP; wait=on blocks start-up until the first
 * client), client mode (server=off: connect to a peer's socket), client
 * connections on the main loop, the query-chardev registry and event
 * broadcast. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kvmlite/loop.h"
#include "kvmlite/monitor.h"
#include "kvmlite/opts.h"
#include "kvmlite/vm.h"
#include "monitor_int.h"

#define READ_CHUNK 65536
#define PAUSE_INPUT_AT (1u << 20) /* stop reading while this much output is unsent */

struct kl_chardev {
	char *label;
	char *filename;       /* "unix:PATH,server=on", "tcp:H:P", "stdio", ... */
	bool is_socket;
	int listen_fd;        /* -1: none (client mode, notes) */
	guint listen_watch;
	int pending_fd;       /* connected before a monitor attached, -1: none */
	char *unlink_path;
	struct kl_monitor *mon; /* frontend, NULL: none */
	bool noted_open;        /* frontend-open for kl_chardev_note entries */
};

struct kl_monitor {
	struct kl_vm *vm;
	struct kl_chardev *cd;
	GPtrArray *clients;
};

struct kl_qmp_client {
	struct kl_monitor *mon;
	int fd;
	guint in_watch, out_watch;
	struct kl_qmp_session s;
	size_t out_off;
	bool dead;
};

static GPtrArray *chardevs;
static GPtrArray *monitors;
static struct kl_vm *listener_vm;
static unsigned compat_idx;
static bool reap_scheduled;

static bool client_in(int fd, GIOCondition cond, void *opaque);
static bool client_out(int fd, GIOCondition cond, void *opaque);

/* ---------------- clients ---------------- */

static void client_close(struct kl_qmp_client *c)
{
	if (c->in_watch)
		kl_source_remove(c->in_watch);
	if (c->out_watch)
		kl_source_remove(c->out_watch);
	close(c->fd);
	kl_qmp_session_destroy(&c->s);
	g_ptr_array_remove(c->mon->clients, c);
	g_free(c);
}

static void reap_bh(void *opaque)
{
	(void)opaque;
	reap_scheduled = false;
	for (guint m = 0; monitors && m < monitors->len; m++) {
		struct kl_monitor *mon = g_ptr_array_index(monitors, m);
		for (guint i = mon->clients->len; i-- > 0;) {
			struct kl_qmp_client *c = g_ptr_array_index(mon->clients, i);
			if (c->dead)
				client_close(c);
		}
	}
}

static void mark_dead(struct kl_qmp_client *c)
{
	c->dead = true;
	if (!reap_scheduled) {
		reap_scheduled = true;
		kl_bh_schedule(reap_bh, NULL);
	}
}

/* Send what we can without blocking; never frees the client. */
static void client_flush(struct kl_qmp_client *c)
{
	GString *o = c->s.out;
	while (!c->dead && c->out_off < o->len) {
		ssize_t n = send(c->fd, o->str + c->out_off, o->len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		} else {
			mark_dead(c);
		}
	}
	if (c->dead)
		return;
	size_t pending = o->len - c->out_off;
	if (pending == 0) {
		g_string_truncate(o, 0);
		c->out_off = 0;
		if (c->out_watch) {
			kl_source_remove(c->out_watch);
			c->out_watch = 0;
		}
		if (!c->in_watch)
			c->in_watch = kl_fd_add(c->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, client_in, c);
		return;
	}
	if (pending > KL_QMP_MAX_OUT) {
		mark_dead(c); /* a client that never reads */
		return;
	}
	if (c->out_off > (1u << 20)) {
		g_string_erase(o, 0, (gssize)c->out_off);
		c->out_off = 0;
	}
	if (!c->out_watch)
		c->out_watch = kl_fd_add(c->fd, G_IO_OUT | G_IO_HUP | G_IO_ERR, client_out, c);
	if (pending > PAUSE_INPUT_AT && c->in_watch) {
		kl_source_remove(c->in_watch);
		c->in_watch = 0;
	}
}

static bool client_out(int fd, GIOCondition cond, void *opaque)
{
	(void)fd, (void)cond;
	struct kl_qmp_client *c = opaque;
	client_flush(c);
	if (c->dead || !c->out_watch)
		return false; /* removed (drained) or about to be reaped */
	return true;
}

static bool client_in(int fd, GIOCondition cond, void *opaque)
{
	(void)cond;
	struct kl_qmp_client *c = opaque;
	static char buf[READ_CHUNK];
	if (c->dead)
		return false;
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n > 0)
		kl_qmp_session_input(&c->s, buf, (size_t)n);
	else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		c->dead = true;
	if (!c->dead)
		client_flush(c);
	if (c->dead) {
		client_close(c);
		return false;
	}
	return c->in_watch != 0;
}

struct kl_monitor *kl_monitor_new(struct kl_vm *vm)
{
	struct kl_monitor *mon = g_new0(struct kl_monitor, 1);
	mon->vm = vm;
	mon->clients = g_ptr_array_new();
	if (!monitors)
		monitors = g_ptr_array_new();
	g_ptr_array_add(monitors, mon);
	return mon;
}

void kl_monitor_add_client(struct kl_monitor *mon, int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	struct kl_qmp_client *c = g_new0(struct kl_qmp_client, 1);
	c->mon = mon;
	c->fd = fd;
	kl_qmp_session_init(&c->s, mon->vm);
	kl_qmp_session_greeting(&c->s);
	g_ptr_array_add(mon->clients, c);
	c->in_watch = kl_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, client_in, c);
	client_flush(c);
}

unsigned kl_monitor_nclients(const struct kl_monitor *mon)
{
	unsigned n = 0;
	for (guint i = 0; i < mon->clients->len; i++)
		n += !((struct kl_qmp_client *)g_ptr_array_index(mon->clients, i))->dead;
	return n;
}

void kl_monitor_broadcast(const char *event, JsonNode *data)
{
	char *line = kl_qmp_event_line(event, data);
	for (guint m = 0; monitors && m < monitors->len; m++) {
		struct kl_monitor *mon = g_ptr_array_index(monitors, m);
		for (guint i = 0; i < mon->clients->len; i++) {
			struct kl_qmp_client *c = g_ptr_array_index(mon->clients, i);
			if (c->dead || !c->s.negotiated)
				continue;
			g_string_append(c->s.out, line);
			g_string_append(c->s.out, "\r\n");
			client_flush(c);
		}
	}
	g_free(line);
}

/* ---------------- listening sockets ---------------- */

static bool listen_ready(int fd, GIOCondition cond, void *opaque)
{
	(void)cond;
	struct kl_chardev *cd = opaque;
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0)
			break; /* EAGAIN, or a transient error (EMFILE...): retry later */
		if (cd->mon)
			kl_monitor_add_client(cd->mon, c);
		else
			close(c);
	}
	return true;
}

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

static int listen_unix(const char *path, char **err)
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

static bool addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

/* Resolve host:port; every address must be loopback (QMP has no
 * authentication: it is never exposed on the network, in either direction).
 * verb: "listens on" / "connects to", for the message. */
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
			*err = g_strdup_printf("host '%s' is not a loopback address; the monitor "
					       "only %s 127.0.0.0/8 or ::1", host, verb);
			freeaddrinfo(res);
			return NULL;
		}
	}
	return res;
}

/* A TCP socket on loopback host:port: listening (server, non-blocking) or
 * connected to the peer.  -1 with *err naming the address on failure. */
static int tcp_open(const char *host, const char *port, bool server, char **err)
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

/* wait=on: block start-up until the first client connects (QEMU does the
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

/* ---------------- client mode (server=off) ---------------- */

static int connect_unix(const char *path, char **err)
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

/* ---------------- registry ---------------- */

static struct kl_chardev *chardev_find(const char *label)
{
	for (guint i = 0; chardevs && i < chardevs->len; i++) {
		struct kl_chardev *cd = g_ptr_array_index(chardevs, i);
		if (!strcmp(cd->label, label))
			return cd;
	}
	return NULL;
}

static struct kl_chardev *chardev_new(const char *label, const char *filename)
{
	struct kl_chardev *cd = g_new0(struct kl_chardev, 1);
	cd->label = g_strdup(label);
	cd->filename = g_strdup(filename);
	cd->listen_fd = -1;
	cd->pending_fd = -1;
	if (!chardevs)
		chardevs = g_ptr_array_new();
	g_ptr_array_add(chardevs, cd);
	return cd;
}

int kl_chardev_note(const char *label, const char *filename)
{
	if (!label || !filename || chardev_find(label))
		return -1;
	chardev_new(label, filename)->noted_open = true;
	return 0;
}

void kl_chardev_info_free(gpointer p)
{
	struct kl_chardev_info *ci = p;
	g_free(ci->label);
	g_free(ci->filename);
	g_free(ci);
}

GPtrArray *kl_chardev_list(void)
{
	GPtrArray *l = g_ptr_array_new_with_free_func(kl_chardev_info_free);
	for (guint i = 0; chardevs && i < chardevs->len; i++) {
		struct kl_chardev *cd = g_ptr_array_index(chardevs, i);
		struct kl_chardev_info *ci = g_new0(struct kl_chardev_info, 1);
		ci->label = g_strdup(cd->label);
		if (cd->is_socket && (!cd->mon || kl_monitor_nclients(cd->mon) == 0))
			ci->filename = g_strconcat("disconnected:", cd->filename, NULL);
		else
			ci->filename = g_strdup(cd->filename);
		ci->frontend_open = cd->is_socket ? cd->mon != NULL : cd->noted_open;
		g_ptr_array_add(l, ci);
	}
	return l;
}

/* Parse "unix:PATH" / "tcp:HOST:PORT" (from -qmp) or path=/host=/port= (from
 * -chardev socket) plus server/wait.  server=on: listen (and with wait=on,
 * the default, block until the first client connects); server=off (the
 * default): connect to the peer now.  A connection made here is kept in
 * pending_fd until a monitor attaches (chardev_attach). */
static struct kl_chardev *socket_chardev(const char *what, const char *label, struct kl_opts *o,
					 const char *addr, char **err)
{
	char *e = NULL, *host = NULL, *port = NULL, *path = NULL, *fname = NULL;
	bool server, wait;
	struct kl_chardev *cd = NULL;
	int fd = -1, first = -1;

	if (addr && g_str_has_prefix(addr, "unix:")) {
		path = g_strdup(addr + 5);
	} else if (addr && g_str_has_prefix(addr, "tcp:")) {
		const char *hp = addr + 4;
		const char *colon = strrchr(hp, ':');
		if (!colon) {
			e = g_strdup_printf("'%s' lacks a port (tcp:HOST:PORT)", addr);
			goto fail;
		}
		host = g_strndup(hp, colon - hp);
		port = g_strdup(colon + 1);
	} else if (addr) {
		e = g_strdup_printf("'%s' is not supported (use unix:PATH or tcp:HOST:PORT)", addr);
		goto fail;
	} else {
		const char *p = kl_opts_get(o, "path");
		const char *h = kl_opts_get(o, "host");
		const char *pt = kl_opts_get(o, "port");
		if (p && (h || pt)) {
			e = g_strdup("path= cannot be combined with host=/port=");
			goto fail;
		}
		if (!p && !pt) {
			e = g_strdup("needs path= (unix) or host=,port= (TCP)");
			goto fail;
		}
		path = g_strdup(p);
		host = g_strdup(h ? h : "");
		port = g_strdup(pt);
	}
	if (host && host[0] == '[' && host[strlen(host) - 1] == ']') {
		char *h = g_strndup(host + 1, strlen(host) - 2);
		g_free(host);
		host = h;
	}
	if (kl_opts_get_bool(o, "server", false, &server, &e) < 0 ||
	    kl_opts_get_bool(o, "wait", true, &wait, &e) < 0)
		goto fail;
	/* (wait= is read even with server=off, where QEMU ignores it) */
	if (kl_opts_check_unused(o, NULL, &e) /* the prefix comes below */ < 0)
		goto fail;
	const char *srv = server ? ",server=on" : "";
	if (path)
		fname = g_strdup_printf("unix:%s%s", path, srv);
	else
		fname = strchr(host, ':') ? g_strdup_printf("tcp:[%s]:%s%s", host, port, srv)
					  : g_strdup_printf("tcp:%s:%s%s", host, port, srv);
	if (!server) {
		first = path ? connect_unix(path, &e) : tcp_open(host, port, false, &e);
		if (first < 0)
			goto fail;
	} else {
		fd = path ? listen_unix(path, &e) : tcp_open(host, port, true, &e);
		if (fd < 0)
			goto fail;
		if (wait && (first = wait_first_client(fd, fname, &e)) < 0) {
			close(fd);
			if (path)
				unlink(path);
			goto fail;
		}
	}
	cd = chardev_new(label, fname);
	cd->is_socket = true;
	cd->pending_fd = first;
	if (fd >= 0) {
		cd->listen_fd = fd;
		cd->unlink_path = g_strdup(path);
		cd->listen_watch = kl_fd_add(fd, G_IO_IN, listen_ready, cd);
	}
fail:
	if (e)
		*err = g_strdup_printf("%s '%s': %s", what, o->src, e);
	g_free(e);
	g_free(host);
	g_free(port);
	g_free(path);
	g_free(fname);
	return cd;
}

static void ensure_listener(struct kl_vm *vm)
{
	if (listener_vm == vm)
		return;
	listener_vm = vm;
	kl_vm_add_event_listener(vm, kl_monitor_vm_event, NULL);
}

/* Give the chardev its monitor; a connection made at start-up (wait=on,
 * client mode) becomes the monitor's first client and gets the greeting. */
static void chardev_attach(struct kl_chardev *cd, struct kl_vm *vm)
{
	cd->mon = kl_monitor_new(vm);
	cd->mon->cd = cd;
	ensure_listener(vm);
	if (cd->pending_fd >= 0) {
		kl_monitor_add_client(cd->mon, cd->pending_fd);
		cd->pending_fd = -1;
	}
}

int kl_monitor_add_qmp(struct kl_vm *vm, const char *spec, char **err)
{
	char *e = NULL;
	struct kl_opts *o = kl_opts_parse(spec, "backend", &e);
	if (!o) {
		*err = g_strdup_printf("-qmp '%s': %s", spec, e);
		g_free(e);
		return -1;
	}
	char *label = g_strdup_printf("compat_monitor%u", compat_idx);
	struct kl_chardev *cd = socket_chardev("-qmp", label, o, kl_opts_get(o, "backend"), err);
	g_free(label);
	kl_opts_free(o);
	if (!cd)
		return -1;
	compat_idx++;
	chardev_attach(cd, vm);
	return 0;
}

int kl_chardev_add(const char *spec, char **err)
{
	char *e = NULL;
	struct kl_opts *o = kl_opts_parse(spec, "backend", &e);
	if (!o) {
		*err = g_strdup_printf("-chardev '%s': %s", spec, e);
		g_free(e);
		return -1;
	}
	const char *backend = kl_opts_get(o, "backend");
	const char *id = kl_opts_get(o, "id");
	int ret = -1;
	if (!backend || strcmp(backend, "socket")) {
		*err = g_strdup_printf("-chardev '%s': backend '%s' is not supported (only socket)",
				       spec, backend ? backend : "");
	} else if (!id || !*id) {
		*err = g_strdup_printf("-chardev '%s': id= is required", spec);
	} else if (chardev_find(id)) {
		*err = g_strdup_printf("-chardev '%s': duplicate chardev id '%s'", spec, id);
	} else if (socket_chardev("-chardev", id, o, NULL, err)) {
		ret = 0;
	}
	kl_opts_free(o);
	return ret;
}

int kl_monitor_add_mon(struct kl_vm *vm, const char *spec, char **err)
{
	char *e = NULL;
	struct kl_opts *o = kl_opts_parse(spec, "chardev", &e);
	if (!o) {
		*err = g_strdup_printf("-mon '%s': %s", spec, e);
		g_free(e);
		return -1;
	}
	int ret = -1;
	const char *id = kl_opts_get(o, "chardev");
	const char *mode = kl_opts_get(o, "mode");
	bool pretty = false;
	struct kl_chardev *cd = id ? chardev_find(id) : NULL;
	if (!id) {
		*err = g_strdup_printf("-mon '%s': chardev= is required", spec);
	} else if (!mode || strcmp(mode, "control")) {
		*err = g_strdup_printf("-mon '%s': only mode=control (QMP) is supported", spec);
	} else if (kl_opts_get_bool(o, "pretty", false, &pretty, &e) < 0 || pretty) {
		*err = g_strdup_printf("-mon '%s': %s", spec, e ? e : "pretty=on is not supported");
	} else if (kl_opts_check_unused(o, "-mon", &e) < 0) {
		*err = g_strdup_printf("-mon '%s': %s", spec, e);
	} else if (!cd || !cd->is_socket) {
		*err = g_strdup_printf("-mon '%s': no socket chardev with id '%s' (give -chardev "
				       "socket,id=%s,... first)", spec, id, id);
	} else if (cd->mon) {
		*err = g_strdup_printf("-mon '%s': chardev '%s' is already in use", spec, id);
	} else {
		chardev_attach(cd, vm);
		ret = 0;
	}
	g_free(e);
	kl_opts_free(o);
	return ret;
}

/* ---------------- exit ---------------- */

static void final_flush(struct kl_qmp_client *c, gint64 deadline)
{
	while (!c->dead && c->out_off < c->s.out->len) {
		client_flush(c);
		gint64 left = (deadline - g_get_monotonic_time()) / 1000;
		if (c->dead || c->out_off >= c->s.out->len || left <= 0)
			break;
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		poll(&p, 1, (int)left);
	}
}

void kl_monitor_cleanup(void)
{
	gint64 deadline = g_get_monotonic_time() + 500 * 1000;
	for (guint m = 0; monitors && m < monitors->len; m++) {
		struct kl_monitor *mon = g_ptr_array_index(monitors, m);
		while (mon->clients->len) {
			struct kl_qmp_client *c = g_ptr_array_index(mon->clients, 0);
			final_flush(c, deadline);
			client_close(c);
		}
		g_ptr_array_free(mon->clients, TRUE);
		g_free(mon);
	}
	if (monitors)
		g_ptr_array_free(monitors, TRUE);
	monitors = NULL;
	for (guint i = 0; chardevs && i < chardevs->len; i++) {
		struct kl_chardev *cd = g_ptr_array_index(chardevs, i);
		if (cd->listen_watch)
			kl_source_remove(cd->listen_watch);
		if (cd->listen_fd >= 0)
			close(cd->listen_fd);
		if (cd->pending_fd >= 0)
			close(cd->pending_fd); /* no -mon ever took this chardev */
		if (cd->unlink_path)
			unlink(cd->unlink_path);
		g_free(cd->unlink_path);
		g_free(cd->label);
		g_free(cd->filename);
		g_free(cd);
	}
	if (chardevs)
		g_ptr_array_free(chardevs, TRUE);
	chardevs = NULL;
	listener_vm = NULL;
	compat_idx = 0;
}
