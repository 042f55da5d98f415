/* Character back-end layer: registry, -chardev / legacy spec parsing, the
 * front-end API, buffered non-blocking fd I/O shared by the fd back-ends,
 * query-chardev and exit-time flushing.  See include/kvmlite/chardev.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chardev_int.h"
#include "kvmlite/fdset.h"
#include "kvmlite/loop.h"

#define READ_CHUNK 65536

static GPtrArray *chardevs;

static const struct kl_chr_be *const backends[] = {
	&kl_chr_null, &kl_chr_stdio, &kl_chr_file, &kl_chr_pipe, &kl_chr_pty, &kl_chr_ringbuf,
	&kl_chr_socket,
};

int kl_chardev_open_path(const char *path, int flags, mode_t mode, char **err)
{
	int fd = kl_fdset_open(path, flags | O_CLOEXEC, mode);
	if (fd < 0)
		*err = g_strdup_printf("cannot open '%s': %s", path, g_strerror(errno));
	return fd;
}

struct kl_chardev *kl_chardev_find(const char *label)
{
	for (guint i = 0; label && chardevs && i < chardevs->len; i++) {
		struct kl_chardev *cd = g_ptr_array_index(chardevs, i);
		if (!strcmp(cd->label, label))
			return cd;
	}
	return NULL;
}

const char *kl_chardev_label(const struct kl_chardev *cd)
{
	return cd->label;
}

bool kl_chardev_is_socket(const struct kl_chardev *cd)
{
	return cd->is_socket;
}

static struct kl_chardev *chardev_alloc(const char *label)
{
	struct kl_chardev *cd = g_new0(struct kl_chardev, 1);
	cd->label = g_strdup(label);
	cd->in_fd = cd->out_fd = cd->listen_fd = -1;
	cd->out = g_string_new(NULL);
	return cd;
}

static void close_fds(struct kl_chardev *cd)
{
	if (cd->in_watch)
		kl_source_remove(cd->in_watch);
	if (cd->out_watch)
		kl_source_remove(cd->out_watch);
	if (cd->retry_timer)
		kl_source_remove(cd->retry_timer);
	cd->in_watch = cd->out_watch = cd->retry_timer = 0;
	if (cd->in_fd >= 0 && cd->close_in)
		close(cd->in_fd);
	if (cd->out_fd >= 0 && cd->close_out && cd->out_fd != cd->in_fd)
		close(cd->out_fd);
	cd->in_fd = cd->out_fd = -1;
}

static void chardev_free(struct kl_chardev *cd)
{
	close_fds(cd);
	if (cd->lost_timer)
		kl_source_remove(cd->lost_timer);
	if (cd->be && cd->be->close)
		cd->be->close(cd);
	g_string_free(cd->out, TRUE);
	g_free(cd->label);
	g_free(cd->filename);
	g_free(cd->rb);
	g_free(cd);
}

static void fe_event(struct kl_chardev *cd, enum kl_chr_event ev)
{
	if (cd->fe && cd->fe->event)
		cd->fe->event(cd->fe_opaque, ev);
}

/* ---------------- fd I/O ---------------- */

static bool in_ready(int fd, GIOCondition cond, void *opaque);
static bool out_ready(int fd, GIOCondition cond, void *opaque);

size_t kl_chr_fe_pending(const struct kl_chardev *cd)
{
	return cd->out->len - cd->out_off;
}

static gboolean retry_read(gpointer p)
{
	struct kl_chardev *cd = p;
	cd->retry_timer = 0;
	kl_chr_update_read(cd);
	return G_SOURCE_REMOVE;
}

void kl_chr_update_read(struct kl_chardev *cd)
{
	if (cd->in_watch || cd->retry_timer || !cd->connected || cd->in_fd < 0 || !cd->fe ||
	    !cd->fe->can_read || kl_chr_fe_pending(cd) > KL_CHR_PAUSE_INPUT_AT)
		return;
	if (cd->fe->can_read(cd->fe_opaque) == 0)
		return;
	cd->in_watch = kl_fd_add(cd->in_fd, G_IO_IN | G_IO_HUP | G_IO_ERR, in_ready, cd);
}

void kl_chr_deliver(struct kl_chardev *cd, const uint8_t *buf, size_t len)
{
	if (cd->fe && cd->fe->read && len)
		cd->fe->read(cd->fe_opaque, buf, len);
}

static bool in_ready(int fd, GIOCondition cond, void *opaque)
{
	struct kl_chardev *cd = opaque;
	static uint8_t buf[READ_CHUNK];
	size_t room = cd->fe && cd->fe->can_read ? cd->fe->can_read(cd->fe_opaque) : 0;
	if (room == 0 || kl_chr_fe_pending(cd) > KL_CHR_PAUSE_INPUT_AT) {
		cd->in_watch = 0; /* re-armed by accept_input / a drained output */
		return false;
	}
	if (room > sizeof(buf))
		room = sizeof(buf);
	ssize_t n = read(fd, buf, room);
	if (n > 0) {
		kl_chr_deliver(cd, buf, (size_t)n);
		return true; /* (a lost connection removed this watch already) */
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	cd->in_watch = 0;
	if (cd->is_socket) {
		kl_chr_lost(cd);
	} else if (n < 0 && errno == EIO) {
		/* a pty whose slave is not open: look again in a second */
		cd->retry_timer = kl_timer_add_ms(1000, retry_read, cd);
	} else {
		(void)cond; /* stdin / pipe at EOF: no more input */
		if (cd->close_in && cd->in_fd != cd->out_fd)
			close(cd->in_fd);
		cd->in_fd = -1;
	}
	return false;
}

static gboolean lost_cb(gpointer p)
{
	struct kl_chardev *cd = p;
	cd->lost_timer = 0;
	kl_chr_lost(cd);
	return G_SOURCE_REMOVE;
}

/* From the write path: never call the front-end back from inside its own
 * write; drop the connection on the next loop iteration. */
static void lose_later(struct kl_chardev *cd)
{
	if (!cd->lost_timer)
		cd->lost_timer = kl_timer_add_ms(0, lost_cb, cd);
}

/* Write what can be written without blocking. */
static void flush_out(struct kl_chardev *cd)
{
	while (kl_chr_fe_pending(cd) && cd->out_fd >= 0 && !cd->lost_timer) {
		const char *p = cd->out->str + cd->out_off;
		size_t len = kl_chr_fe_pending(cd);
		ssize_t n = cd->is_socket ? send(cd->out_fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT)
					  : write(cd->out_fd, p, len);
		if (n > 0) {
			cd->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!cd->out_watch)
				cd->out_watch = kl_fd_add(cd->out_fd, G_IO_OUT | G_IO_HUP | G_IO_ERR,
							  out_ready, cd);
			break;
		} else {
			/* peer gone / write error: the output is lost */
			g_string_truncate(cd->out, 0);
			cd->out_off = 0;
			if (cd->is_socket)
				lose_later(cd);
			break;
		}
	}
	if (!kl_chr_fe_pending(cd)) {
		g_string_truncate(cd->out, 0);
		cd->out_off = 0;
		if (cd->out_watch) {
			kl_source_remove(cd->out_watch);
			cd->out_watch = 0;
		}
		kl_chr_update_read(cd);
	} else if (cd->out_off > (1u << 20)) {
		g_string_erase(cd->out, 0, (gssize)cd->out_off);
		cd->out_off = 0;
	}
}

static bool out_ready(int fd, GIOCondition cond, void *opaque)
{
	(void)fd;
	struct kl_chardev *cd = opaque;
	if ((cond & (G_IO_HUP | G_IO_ERR)) && !cd->is_socket) {
		/* a pty without a slave (or a pipe without a reader): nobody
		 * will take it; drop the output instead of polling a hang-up */
		g_string_truncate(cd->out, 0);
		cd->out_off = 0;
		cd->out_watch = 0;
		kl_chr_update_read(cd);
		return false;
	}
	guint self = cd->out_watch;
	flush_out(cd);
	return cd->out_watch == self && self != 0;
}

void kl_chr_set_connected(struct kl_chardev *cd, int in_fd, int out_fd, bool close_fds_)
{
	cd->in_fd = in_fd;
	cd->out_fd = out_fd;
	cd->close_in = cd->close_out = close_fds_;
	cd->connected = true;
	g_string_truncate(cd->out, 0);
	cd->out_off = 0;
	kl_chr_update_read(cd);
}

void kl_chr_lost(struct kl_chardev *cd)
{
	if (!cd->connected)
		return;
	if (cd->lost_timer) {
		kl_source_remove(cd->lost_timer);
		cd->lost_timer = 0;
	}
	close_fds(cd);
	g_string_truncate(cd->out, 0);
	cd->out_off = 0;
	cd->connected = false;
	if (cd->is_socket)
		kl_chr_socket_close(cd); /* server: listen again */
	fe_event(cd, KL_CHR_EVENT_CLOSED);
}

/* ---------------- front-end API ---------------- */

int kl_chr_fe_attach(struct kl_chardev *cd, const struct kl_chr_fe_ops *ops, void *opaque,
		     char **err)
{
	if (cd->fe) {
		*err = g_strdup_printf("chardev '%s' is already in use", cd->label);
		return -1;
	}
	cd->fe = ops;
	cd->fe_opaque = opaque;
	cd->fe_open = true;
	if (cd->connected) {
		fe_event(cd, KL_CHR_EVENT_OPENED);
		kl_chr_update_read(cd);
	}
	return 0;
}

void kl_chr_fe_detach(struct kl_chardev *cd)
{
	if (cd->in_watch) {
		kl_source_remove(cd->in_watch);
		cd->in_watch = 0;
	}
	cd->fe = NULL;
	cd->fe_opaque = NULL;
	cd->fe_open = false;
}

size_t kl_chr_fe_write(struct kl_chardev *cd, const void *buf, size_t len)
{
	if (!cd->connected || cd->lost_timer)
		return 0;
	if (cd->be->write) {
		cd->be->write(cd, buf, len);
		return len;
	}
	if (cd->out_fd < 0)
		return 0;
	size_t pending = kl_chr_fe_pending(cd);
	if (pending + len > KL_CHR_MAX_OUT) {
		if (cd->is_socket) {
			lose_later(cd); /* a peer that never reads */
			return 0;
		}
		len = KL_CHR_MAX_OUT - pending;
	}
	g_string_append_len(cd->out, buf, (gssize)len);
	flush_out(cd);
	return len;
}

void kl_chr_fe_accept_input(struct kl_chardev *cd)
{
	kl_chr_update_read(cd);
}

bool kl_chr_fe_connected(const struct kl_chardev *cd)
{
	return cd->connected;
}

void kl_chr_fe_set_open(struct kl_chardev *cd, bool open)
{
	cd->fe_open = open;
}

void kl_chr_fe_disconnect(struct kl_chardev *cd)
{
	if (cd->is_socket)
		kl_chr_lost(cd);
}

/* ---------------- creation ---------------- */

static const struct kl_chr_be *be_find(const char *name)
{
	for (size_t i = 0; name && i < G_N_ELEMENTS(backends); i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

struct kl_chardev *kl_chardev_new_opts(const char *what, const char *label, struct kl_opts *o,
				       char **err)
{
	const char *type = kl_opts_get(o, "backend");
	const struct kl_chr_be *be = be_find(type);
	char *e = NULL;
	if (!be) {
		*err = g_strdup_printf("%s '%s': backend '%s' is not supported (null, stdio, file, "
				       "pipe, pty, socket, ringbuf)", what, o->src, type ? type : "");
		return NULL;
	}
	struct kl_chardev *cd = chardev_alloc(label);
	cd->be = be;
	kl_opts_get(o, "id");
	if (kl_opts_get(o, "logfile") || kl_opts_get(o, "mux")) {
		bool mux = false;
		if (kl_opts_get(o, "logfile"))
			e = g_strdup("logfile= is not supported");
		else if (kl_opts_get_bool(o, "mux", false, &mux, &e) == 0 && mux)
			e = g_strdup("mux=on is not supported");
	}
	/* (sockets refuse unknown keys before they listen or wait) */
	bool opened = !e && be->open(cd, o, &e) == 0;
	if (opened && kl_opts_check_unused(o, NULL, &e) == 0) {
		if (!cd->filename)
			cd->filename = g_strdup(be->name);
		if (!chardevs)
			chardevs = g_ptr_array_new();
		g_ptr_array_add(chardevs, cd);
		return cd;
	}
	*err = g_strdup_printf("%s '%s': %s", what, o->src, e ? e : "failed");
	g_free(e);
	if (!opened)
		cd->be = NULL; /* a failed open cleaned up after itself */
	chardev_free(cd);
	return NULL;
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
	const char *id = kl_opts_get(o, "id");
	int ret = -1;
	if (!id || !*id)
		*err = g_strdup_printf("-chardev '%s': id= is required", spec);
	else if (kl_chardev_find(id))
		*err = g_strdup_printf("-chardev '%s': duplicate chardev id '%s'", spec, id);
	else if (kl_chardev_new_opts("-chardev", id, o, err))
		ret = 0;
	kl_opts_free(o);
	return ret;
}

/* "unix:P,k=v" / "tcp:H:P,k=v": the options after the address */
static int legacy_socket(struct kl_opts *o, const char *addr, char **err)
{
	kl_opts_add(o, "backend", "socket");
	if (g_str_has_prefix(addr, "unix:")) {
		kl_opts_add(o, "path", addr + 5);
		return 0;
	}
	const char *hp = addr + 4;
	const char *colon = strrchr(hp, ':');
	if (!colon) {
		*err = g_strdup_printf("'%s' lacks a port (tcp:HOST:PORT)", addr);
		return -1;
	}
	char *host = g_strndup(hp, colon - hp);
	if (host[0] == '[' && strlen(host) > 1 && host[strlen(host) - 1] == ']') {
		char *h = g_strndup(host + 1, strlen(host) - 2);
		g_free(host);
		host = h;
	}
	kl_opts_add(o, "host", host);
	kl_opts_add(o, "port", colon + 1);
	g_free(host);
	return 0;
}

struct kl_chardev *kl_chardev_legacy(const char *what, const char *spec, const char *label,
				     char **err)
{
	if (g_str_has_prefix(spec, "chardev:")) {
		struct kl_chardev *cd = kl_chardev_find(spec + 8);
		if (!cd)
			*err = g_strdup_printf("%s '%s': no chardev with id '%s'", what, spec, spec + 8);
		return cd;
	}
	if (kl_chardev_find(label)) {
		*err = g_strdup_printf("%s '%s': duplicate chardev id '%s'", what, spec, label);
		return NULL;
	}
	char *e = NULL;
	struct kl_opts *o = NULL;
	if (g_str_has_prefix(spec, "unix:") || g_str_has_prefix(spec, "tcp:")) {
		/* the address is the first element; the rest are socket keys */
		struct kl_opts *p = kl_opts_parse(spec, "addr", &e);
		if (p) {
			o = kl_opts_new(spec);
			const char *addr = kl_opts_get(p, "addr");
			if (legacy_socket(o, addr, &e) < 0) {
				kl_opts_free(o);
				o = NULL;
			}
			for (unsigned i = 0; o && i < p->n; i++)
				if (strcmp(p->v[i].key, "addr") && kl_opts_add(o, p->v[i].key, p->v[i].val) < 0) {
					e = g_strdup_printf("parameter '%s' given twice", p->v[i].key);
					kl_opts_free(o);
					o = NULL;
				}
			kl_opts_free(p);
		}
	} else {
		o = kl_opts_new(spec);
		if (!strcmp(spec, "stdio") || !strcmp(spec, "mon:stdio")) {
			kl_opts_add(o, "backend", "stdio");
		} else if (!strcmp(spec, "null") || !strcmp(spec, "none")) {
			kl_opts_add(o, "backend", "null");
		} else if (!strcmp(spec, "pty")) {
			kl_opts_add(o, "backend", "pty");
		} else if (g_str_has_prefix(spec, "file:")) {
			kl_opts_add(o, "backend", "file");
			kl_opts_add(o, "path", spec + 5);
		} else if (g_str_has_prefix(spec, "pipe:")) {
			kl_opts_add(o, "backend", "pipe");
			kl_opts_add(o, "path", spec + 5);
		} else {
			e = g_strdup("unsupported back-end (use stdio, null, none, file:PATH, pipe:PATH, "
				     "pty, unix:PATH[,server=on,wait=off], tcp:HOST:PORT[,...] or "
				     "chardev:ID)");
			kl_opts_free(o);
			o = NULL;
		}
	}
	if (!o) {
		*err = g_strdup_printf("%s '%s': %s", what, spec, e);
		g_free(e);
		return NULL;
	}
	struct kl_chardev *cd = kl_chardev_new_opts(what, label, o, err);
	if (cd && !cd->is_socket) {
		g_free(cd->filename); /* query-chardev shows the legacy spelling */
		cd->filename = g_strdup(spec);
	}
	kl_opts_free(o);
	return cd;
}

struct kl_chardev *kl_chardev_new_connected_fd(const char *label, int fd)
{
	struct kl_chardev *cd = chardev_alloc(label);
	cd->be = &kl_chr_socket;
	cd->is_socket = true;
	cd->filename = g_strdup_printf("fd:%d", fd);
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	kl_chr_set_connected(cd, fd, fd, true);
	if (!chardevs)
		chardevs = g_ptr_array_new();
	g_ptr_array_add(chardevs, cd);
	return cd;
}

/* ---------------- query-chardev ---------------- */

static void info_free(gpointer p)
{
	struct kl_chardev_info *ci = p;
	g_free(ci->label);
	g_free(ci->filename);
	g_free(ci);
}

GPtrArray *kl_chardev_list(void)
{
	GPtrArray *l = g_ptr_array_new_with_free_func(info_free);
	for (guint i = 0; chardevs && i < chardevs->len; i++) {
		struct kl_chardev *cd = g_ptr_array_index(chardevs, i);
		struct kl_chardev_info *ci = g_new0(struct kl_chardev_info, 1);
		ci->label = g_strdup(cd->label);
		if (cd->is_socket && !cd->connected)
			ci->filename = g_strconcat("disconnected:", cd->filename, NULL);
		else
			ci->filename = g_strdup(cd->filename);
		ci->frontend_open = cd->fe && cd->fe_open;
		g_ptr_array_add(l, ci);
	}
	return l;
}

/* ---------------- exit ---------------- */

void kl_chardev_cleanup(void)
{
	gint64 deadline = g_get_monotonic_time() + 500 * 1000;
	for (guint i = 0; chardevs && i < chardevs->len; i++) {
		struct kl_chardev *cd = g_ptr_array_index(chardevs, i);
		while (cd->connected && kl_chr_fe_pending(cd) && cd->out_fd >= 0 && !cd->lost_timer) {
			flush_out(cd);
			gint64 left = (deadline - g_get_monotonic_time()) / 1000;
			if (!kl_chr_fe_pending(cd) || cd->lost_timer || left <= 0)
				break;
			struct pollfd p = { .fd = cd->out_fd, .events = POLLOUT };
			poll(&p, 1, (int)left);
		}
	}
	for (guint i = 0; chardevs && i < chardevs->len; i++)
		chardev_free(g_ptr_array_index(chardevs, i));
	if (chardevs)
		g_ptr_array_free(chardevs, TRUE);
	chardevs = NULL;
	kl_chardev_restore_tty();
}
