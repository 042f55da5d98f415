/* -netdev socket: frames over a TCP stream with QEMU's framing (4-byte
 * big-endian length, then the frame), or one frame per UDP datagram.
 *   socket,id=ID,listen=[HOST]:PORT    accept one peer at a time
 *   socket,id=ID,connect=HOST:PORT     connect at start-up
 *   socket,id=ID,udp=HOST:PORT,localaddr=HOST:PORT
 * (types "stream" and "dgram" take the same keys). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "kvmlite/loop.h"
#include "net_int.h"

#define SOCK_INBUF (4 * (KL_NET_MAX_FRAME + 4))
#define SOCK_OUT_MAX (256 * 1024)   /* buffered output before pushing back */

struct sock_be {
	struct kl_netdev *nd;
	int listen_fd, fd;
	guint listen_watch, rd_watch, wr_watch;
	bool dgram;
	struct sockaddr_in dst;      /* dgram peer */
	uint8_t *in;                 /* stream input buffer */
	size_t in_len;
	GByteArray *out;             /* unsent bytes of a partially written frame */
	bool in_rd_cb;               /* inside the read callback: it removes itself */
	size_t out_off;              /* written part of out */
	bool flush_pending;          /* sock_flush_bh scheduled */
	bool dead;                   /* freed while flush_pending */
};

static bool sock_readable(int fd, GIOCondition cond, void *opaque);
static struct kl_netdev *socket_new(const char *id, const char *listen_s, const char *connect_s,
				    const char *udp_s, const char *local_s, char **err);
static bool sock_writable(int fd, GIOCondition cond, void *opaque);

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void watch_read(struct sock_be *s)
{
	if (s->fd >= 0 && !s->rd_watch)
		s->rd_watch = kl_fd_add(s->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, sock_readable, s);
}

static void unwatch(guint *id)
{
	if (*id) {
		kl_source_remove(*id);
		*id = 0;
	}
}

static void sock_disconnect(struct sock_be *s, const char *why)
{
	if (s->fd < 0)
		return;
	if (why)
		fprintf(stderr, "kvmlite: netdev %s: connection closed: %s\n", s->nd->id, why);
	if (s->in_rd_cb)
		s->rd_watch = 0;
	unwatch(&s->rd_watch);
	unwatch(&s->wr_watch);
	close(s->fd);
	s->fd = -1;
	s->in_len = 0;
	g_byte_array_set_size(s->out, 0);
	s->out_off = 0;
}

/* Parse complete frames out of the input buffer.  false: peer is full. */
static bool parse_frames(struct sock_be *s)
{
	size_t pos = 0;
	bool more = true;
	while (s->in_len - pos >= 4) {
		const uint8_t *p = s->in + pos;
		uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		if (len == 0 || len > KL_NET_MAX_FRAME) {
			sock_disconnect(s, "bad frame length");
			return true;
		}
		if (s->in_len - pos - 4 < len)
			break;
		if (!kl_netdev_can_deliver(s->nd)) {
			more = false;
			break;
		}
		pos += 4 + len;
		if (!kl_netdev_deliver(s->nd, p + 4, len)) {
			more = false;
			break;
		}
	}
	if (pos) {
		memmove(s->in, s->in + pos, s->in_len - pos);
		s->in_len -= pos;
	}
	return more;
}

static bool sock_readable_cb(struct sock_be *s, int fd);

static bool sock_readable(int fd, GIOCondition cond, void *opaque)
{
	struct sock_be *s = opaque;
	(void)cond;
	s->in_rd_cb = true;
	bool keep = sock_readable_cb(s, fd);
	s->in_rd_cb = false;
	if (!keep)
		s->rd_watch = 0;
	return keep;
}

static bool sock_readable_cb(struct sock_be *s, int fd)
{
	if (s->dgram) {
		for (int i = 0; i < 64; i++) {
			if (!kl_netdev_can_deliver(s->nd)) {
				s->rd_watch = 0;
				return false;
			}
			ssize_t n = recv(fd, s->in, KL_NET_MAX_FRAME, 0);
			if (n <= 0)
				break;
			kl_netdev_deliver(s->nd, s->in, (size_t)n);
		}
		return true;
	}
	for (int i = 0; i < 16; i++) {
		if (!parse_frames(s)) {
			s->rd_watch = 0;
			return false;  /* rx_resume re-adds the watch */
		}
		if (s->fd < 0)
			return false;
		ssize_t n = read(fd, s->in + s->in_len, SOCK_INBUF - s->in_len);
		if (n == 0) {
			s->rd_watch = 0;
			sock_disconnect(s, "peer closed the connection");
			return false;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return true;
			s->rd_watch = 0;
			sock_disconnect(s, strerror(errno));
			return false;
		}
		s->in_len += (size_t)n;
	}
	return true;
}

/* Write buffered output.  0: all written, 1: the socket is full (a write
 * watch is armed when arm), -1: error (disconnected). */
static int out_write(struct sock_be *s, bool arm)
{
	while (s->out_off < s->out->len) {
		ssize_t n = write(s->fd, s->out->data + s->out_off, s->out->len - s->out_off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (arm && !s->wr_watch)
					s->wr_watch = kl_fd_add(s->fd, G_IO_OUT, sock_writable, s);
				return 1;
			}
			sock_disconnect(s, strerror(errno));
			return -1;
		}
		s->out_off += (size_t)n;
	}
	g_byte_array_set_size(s->out, 0);
	s->out_off = 0;
	return 0;
}

static bool sock_writable(int fd, GIOCondition cond, void *opaque)
{
	struct sock_be *s = opaque;
	(void)fd;
	(void)cond;
	if (out_write(s, false) == 1)
		return true;      /* keep waiting */
	s->wr_watch = 0;      /* this watch ends; a new one may be armed */
	kl_netdev_tx_flush(s->nd);
	return false;
}

static void sock_free(struct sock_be *s)
{
	g_byte_array_free(s->out, TRUE);
	g_free(s->in);
	g_free(s);
}

/* Frames are gathered in s->out and written by this bottom half, once per
 * main-loop pass: one write() for a whole burst instead of one per frame. */
static void sock_flush_bh(void *opaque)
{
	struct sock_be *s = opaque;
	s->flush_pending = false;
	if (s->dead) {
		sock_free(s);
		return;
	}
	if (s->fd < 0 || s->wr_watch)
		return;           /* the write watch flushes */
	if (out_write(s, true) == 0 && s->nd)
		kl_netdev_tx_flush(s->nd);
}

static int sock_transmit(struct kl_netdev *nd, const struct iovec *iov, int iovcnt)
{
	struct sock_be *s = nd->be;
	if (s->fd < 0)
		return -1;  /* not connected: drop, like QEMU */
	if (s->dgram) {
		struct msghdr mh = { .msg_name = &s->dst, .msg_namelen = sizeof(s->dst),
				     .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
		ssize_t n = sendmsg(s->fd, &mh, 0);
		if (n < 0 && (errno == EAGAIN || errno == ENOBUFS))
			return -1;
		return n < 0 ? -1 : 0;
	}
	if (s->out->len - s->out_off >= SOCK_OUT_MAX)
		return 1;   /* wait until the socket drains */
	size_t len = kl_iov_size(iov, (unsigned)iovcnt);
	uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
	g_byte_array_append(s->out, hdr, 4);
	for (int i = 0; i < iovcnt; i++)
		g_byte_array_append(s->out, iov[i].iov_base, (guint)iov[i].iov_len);
	if (!s->flush_pending) {
		s->flush_pending = true;
		kl_bh_schedule(sock_flush_bh, s);
	}
	return 0;
}

static void sock_rx_resume(struct kl_netdev *nd)
{
	struct sock_be *s = nd->be;
	if (!s->dgram && s->fd >= 0 && !parse_frames(s))
		return;
	watch_read(s);
}

static void sock_cleanup(struct kl_netdev *nd)
{
	struct sock_be *s = nd->be;
	if (!s)
		return;
	sock_disconnect(s, NULL);
	unwatch(&s->listen_watch);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	s->nd = NULL;
	if (s->flush_pending)
		s->dead = true;   /* sock_flush_bh frees it */
	else
		sock_free(s);
}

/* No VM state section (.vmstate NULL): the stream or datagram peer lives
 * outside the VM; the destination opens its own socket from its own
 * -netdev options. */
static const struct kl_netdev_ops sock_ops = {
	.type = "socket",
	.transmit = sock_transmit,
	.rx_resume = sock_rx_resume,
	.cleanup = sock_cleanup,
};

static void sock_connected(struct sock_be *s, int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_nonblock(fd);
	s->fd = fd;
	s->in_len = 0;
	watch_read(s);
}

static bool sock_accept(int lfd, GIOCondition cond, void *opaque)
{
	struct sock_be *s = opaque;
	(void)cond;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return true;
	if (s->fd >= 0) {
		close(fd);  /* one peer at a time */
		return true;
	}
	sock_connected(s, fd);
	return true;
}

static struct sock_be *sock_be_new(void)
{
	struct sock_be *s = g_new0(struct sock_be, 1);
	s->fd = s->listen_fd = -1;
	s->in = g_malloc(SOCK_INBUF);
	s->out = g_byte_array_new();
	return s;
}

struct kl_netdev *kl_net_socket_new_fd(const char *id, int fd, char **err)
{
	struct sock_be *s = sock_be_new();
	s->nd = kl_netdev_new(id, &sock_ops, s, err);
	if (!s->nd) {
		sock_cleanup(&(struct kl_netdev){ .be = s });
		return NULL;
	}
	sock_connected(s, fd);
	return s->nd;
}

/* QEMU's newer spelling: PREFIX.type=inet,PREFIX.host=H,PREFIX.port=P ->
 * "H:P" (g_free it); NULL when absent, or *bad on a non-inet type. */
static char *inet_addr_opt(struct kl_opts *o, const char *prefix, bool *bad)
{
	char *kt = g_strdup_printf("%s.type", prefix);
	char *kh = g_strdup_printf("%s.host", prefix);
	char *kp = g_strdup_printf("%s.port", prefix);
	const char *t = kl_opts_get(o, kt), *h = kl_opts_get(o, kh), *pt = kl_opts_get(o, kp);
	char *r = NULL;
	if (t && strcmp(t, "inet"))
		*bad = true;
	else if (pt)
		r = g_strdup_printf("%s:%s", h ? h : "", pt);
	g_free(kt);
	g_free(kh);
	g_free(kp);
	return r;
}

struct kl_netdev *kl_net_socket_new(const char *id, struct kl_opts *o, char **err)
{
	const char *type = kl_opts_get(o, "type");
	const char *listen_s = kl_opts_get(o, "listen");
	const char *connect_s = kl_opts_get(o, "connect");
	const char *udp_s = kl_opts_get(o, "udp");
	const char *local_s = kl_opts_get(o, "localaddr");
	char *q1 = NULL, *q2 = NULL;   /* from QEMU stream/dgram keys */
	bool bad = false;
	if (type && !strcmp(type, "stream")) {
		bool server = false;
		if (kl_opts_get_bool(o, "server", false, &server, err) < 0)
			return NULL;
		if ((q1 = inet_addr_opt(o, "addr", &bad))) {
			if (server)
				listen_s = q1;
			else
				connect_s = q1;
		}
	} else if (type && !strcmp(type, "dgram")) {
		if ((q1 = inet_addr_opt(o, "remote", &bad)))
			udp_s = q1;
		if ((q2 = inet_addr_opt(o, "local", &bad)))
			local_s = q2;
	}
	if (bad) {
		*err = g_strdup_printf("-netdev %s,id=%s: only addr.type=inet is supported", type, id);
		g_free(q1);
		g_free(q2);
		return NULL;
	}
	struct kl_netdev *nd = socket_new(id, listen_s, connect_s, udp_s, local_s, err);
	g_free(q1);
	g_free(q2);
	return nd;
}

static struct kl_netdev *socket_new(const char *id, const char *listen_s, const char *connect_s,
				    const char *udp_s, const char *local_s, char **err)
{
	struct sockaddr_in a;
	char *e = NULL;
	int n = !!listen_s + !!connect_s + !!udp_s;
	if (n != 1) {
		*err = g_strdup_printf("-netdev socket,id=%s: exactly one of listen=, connect=, udp= is required", id);
		return NULL;
	}
	if (local_s && !udp_s) {
		*err = g_strdup_printf("-netdev socket,id=%s: localaddr= needs udp=", id);
		return NULL;
	}
	struct sock_be *s = sock_be_new();
	const char *key = listen_s ? "listen" : connect_s ? "connect" : "udp";
	const char *val = listen_s ? listen_s : connect_s ? connect_s : udp_s;
	if (kl_net_parse_hostport(val, listen_s != NULL, &a, &e) < 0)
		goto bad_addr;
	if (listen_s) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1) < 0) {
			*err = g_strdup_printf("-netdev socket: listen=%s: %s", val, strerror(errno));
			if (fd >= 0)
				close(fd);
			goto fail;
		}
		set_nonblock(fd);
		s->listen_fd = fd;
	} else if (connect_s) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
			*err = g_strdup_printf("-netdev socket: connect=%s: %s", val, strerror(errno));
			if (fd >= 0)
				close(fd);
			goto fail;
		}
		s->fd = fd;
	} else {
		struct sockaddr_in la = { .sin_family = AF_INET };
		if (!local_s) {
			*err = g_strdup_printf("-netdev socket: udp=%s needs localaddr=HOST:PORT", val);
			goto fail;
		}
		if (kl_net_parse_hostport(local_s, true, &la, &e) < 0) {
			key = "localaddr";
			val = local_s;
			goto bad_addr;
		}
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&la, sizeof(la)) < 0) {
			*err = g_strdup_printf("-netdev socket: localaddr=%s: %s", local_s, strerror(errno));
			if (fd >= 0)
				close(fd);
			goto fail;
		}
		s->dgram = true;
		s->dst = a;
		s->fd = fd;
	}
	s->nd = kl_netdev_new(id, &sock_ops, s, err);
	if (!s->nd)
		goto fail;
	if (s->listen_fd >= 0)
		s->listen_watch = kl_fd_add(s->listen_fd, G_IO_IN, sock_accept, s);
	else if (!s->dgram)
		sock_connected(s, s->fd);
	else
		watch_read(s);
	return s->nd;
bad_addr:
	*err = g_strdup_printf("-netdev socket: %s=%s", key, e);
	g_free(e);
fail:
	sock_cleanup(&(struct kl_netdev){ .be = s });
	return NULL;
}
