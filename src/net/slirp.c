/* -netdev user: libslirp on the main loop.
 *
 * slirp's sockets are polled by a GSource on the main context: prepare()
 * asks slirp_pollfds_fill() for its fds (re-built on every iteration, so
 * register_poll_fd/unregister_poll_fd need no bookkeeping) and its timeout,
 * dispatch() hands the results to slirp_pollfds_poll().  slirp timers are
 * GLib timeouts on the same context. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <slirp/libslirp.h>

#include "kvmlite/loop.h"
#include "kvmlite/vmstate.h"
#include "net_int.h"

struct slirp_timer;

struct user_be {
	struct kl_netdev *nd;
	Slirp *slirp;
	GSource *src;
	GArray *pfds;          /* GPollFD, registered with the source */
	GPtrArray *timers;
	char *hostname;
};

struct slirp_timer {
	struct user_be *u;
	SlirpTimerCb cb;
	void *cb_opaque;
	guint id;
};

struct user_source {
	GSource base;
	struct user_be *u;
};

/* ---- slirp callbacks ----------------------------------------------------- */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct user_be *u = opaque;
	kl_netdev_deliver(u->nd, buf, len);
	return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
	struct user_be *u = opaque;
	fprintf(stderr, "kvmlite: netdev %s: guest error: %s\n", u->nd->id, msg);
}

static int64_t cb_clock_get_ns(void *opaque)
{
	(void)opaque;
	return g_get_monotonic_time() * 1000;
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct user_be *u = opaque;
	struct slirp_timer *t = g_new0(struct slirp_timer, 1);
	t->u = u;
	t->cb = cb;
	t->cb_opaque = cb_opaque;
	g_ptr_array_add(u->timers, t);
	return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
	struct user_be *u = opaque;
	struct slirp_timer *t = timer;
	if (t->id)
		kl_source_remove(t->id);
	g_ptr_array_remove(u->timers, t);
	g_free(t);
}

static gboolean timer_fire(gpointer opaque)
{
	struct slirp_timer *t = opaque;
	t->id = 0;
	t->cb(t->cb_opaque);
	return G_SOURCE_REMOVE;
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	(void)opaque;
	struct slirp_timer *t = timer;
	if (t->id)
		kl_source_remove(t->id);
	int64_t now = g_get_monotonic_time() / 1000;
	int64_t delta = expire_ms - now;
	if (delta < 0)
		delta = 0;
	if (delta > 24 * 3600 * 1000)
		delta = 24 * 3600 * 1000;
	t->id = kl_timer_add_ms((unsigned)delta, timer_fire, t);
}

static void cb_register_poll_fd(int fd, void *opaque) { (void)fd; (void)opaque; }
static void cb_unregister_poll_fd(int fd, void *opaque) { (void)fd; (void)opaque; }

static void cb_notify(void *opaque)
{
	(void)opaque;
	g_main_context_wakeup(kl_loop_context());
}

static const SlirpCb user_cbs = {
	.send_packet = cb_send_packet,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock_get_ns,
	.timer_new = cb_timer_new,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register_poll_fd,
	.unregister_poll_fd = cb_unregister_poll_fd,
	.notify = cb_notify,
};

/* ---- GSource polling slirp's fds ------------------------------------------ */

static int to_gio(int ev)
{
	int c = 0;
	if (ev & SLIRP_POLL_IN) c |= G_IO_IN;
	if (ev & SLIRP_POLL_OUT) c |= G_IO_OUT;
	if (ev & SLIRP_POLL_PRI) c |= G_IO_PRI;
	if (ev & SLIRP_POLL_ERR) c |= G_IO_ERR;
	if (ev & SLIRP_POLL_HUP) c |= G_IO_HUP;
	return c;
}

static int from_gio(int c)
{
	int ev = 0;
	if (c & G_IO_IN) ev |= SLIRP_POLL_IN;
	if (c & G_IO_OUT) ev |= SLIRP_POLL_OUT;
	if (c & G_IO_PRI) ev |= SLIRP_POLL_PRI;
	if (c & G_IO_ERR) ev |= SLIRP_POLL_ERR;
	if (c & G_IO_HUP) ev |= SLIRP_POLL_HUP;
	return ev;
}

static void drop_pfds(struct user_source *s)
{
	struct user_be *u = s->u;
	for (guint i = 0; i < u->pfds->len; i++)
		g_source_remove_poll(&s->base, &g_array_index(u->pfds, GPollFD, i));
	g_array_set_size(u->pfds, 0);
}

static int add_poll_cb(int fd, int events, void *opaque)
{
	struct user_be *u = opaque;
	GPollFD pfd = { .fd = fd, .events = (gushort)to_gio(events) };
	g_array_append_val(u->pfds, pfd);
	return (int)u->pfds->len - 1;
}

static int get_revents_cb(int idx, void *opaque)
{
	struct user_be *u = opaque;
	if (idx < 0 || (guint)idx >= u->pfds->len)
		return 0;
	return from_gio(g_array_index(u->pfds, GPollFD, idx).revents);
}

static gboolean src_prepare(GSource *base, gint *timeout)
{
	struct user_source *s = (struct user_source *)base;
	struct user_be *u = s->u;
	uint32_t t = UINT32_MAX;
	drop_pfds(s);
	if (kl_netdev_rx_throttled(u->nd)) {
		/* RX limiter holding frames: stop reading slirp's sockets until
		 * the throttle timer delivers them (user_rx_resume wakes us) */
		*timeout = -1;
		return FALSE;
	}
	slirp_pollfds_fill(u->slirp, &t, add_poll_cb, u);
	/* the array is final now: hand stable pointers to GLib */
	for (guint i = 0; i < u->pfds->len; i++)
		g_source_add_poll(base, &g_array_index(u->pfds, GPollFD, i));
	*timeout = t == UINT32_MAX ? -1 : (gint)MIN(t, (uint32_t)G_MAXINT);
	return FALSE;
}

static gboolean src_check(GSource *base)
{
	struct user_source *s = (struct user_source *)base;
	for (guint i = 0; i < s->u->pfds->len; i++)
		if (g_array_index(s->u->pfds, GPollFD, i).revents)
			return TRUE;
	return FALSE;
}

static gboolean src_dispatch(GSource *base, GSourceFunc cb, gpointer data)
{
	(void)cb; (void)data;
	struct user_source *s = (struct user_source *)base;
	slirp_pollfds_poll(s->u->slirp, 0, get_revents_cb, s->u);
	for (guint i = 0; i < s->u->pfds->len; i++)
		g_array_index(s->u->pfds, GPollFD, i).revents = 0;
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs user_source_funcs = {
	.prepare = src_prepare,
	.check = src_check,
	.dispatch = src_dispatch,
};

/* ---- netdev ops -------------------------------------------------------------- */

static int user_transmit(struct kl_netdev *nd, const struct iovec *iov, int iovcnt)
{
	struct user_be *u = nd->be;
	size_t len = kl_iov_size(iov, (unsigned)iovcnt);
	if (iovcnt == 1) {
		slirp_input(u->slirp, iov[0].iov_base, (int)len);
		return 0;
	}
	uint8_t *buf = g_malloc(len);
	kl_iov_to_buf(iov, (unsigned)iovcnt, 0, buf, len);
	slirp_input(u->slirp, buf, (int)len);
	g_free(buf);
	return 0;
}

static void user_cleanup(struct kl_netdev *nd)
{
	struct user_be *u = nd->be;
	if (!u)
		return;
	if (u->src) {
		drop_pfds((struct user_source *)u->src);
		g_source_destroy(u->src);
		g_source_unref(u->src);
	}
	slirp_cleanup(u->slirp);  /* frees its timers through cb_timer_free */
	while (u->timers->len)
		cb_timer_free(g_ptr_array_index(u->timers, 0), u);
	g_ptr_array_free(u->timers, TRUE);
	g_array_free(u->pfds, TRUE);
	g_free(u->hostname);
	g_free(u);
}

static void user_rx_resume(struct kl_netdev *nd)
{
	(void)nd;
	g_main_context_wakeup(kl_loop_context());   /* re-runs src_prepare */
}

/* ---- VM state: section "netdev-user/ID" (kvmlite/vmstate.h) -------------
 * libslirp's own state (its sockets, TCP connections, ARP/NDP tables,
 * guestfwd entries) through slirp_state_save / slirp_state_load.
 * v1: u32 slirp_state_version(), u32 length, the blob.  Load accepts a blob
 * of a libslirp version this one can read (1..slirp_state_version()) and
 * hands libslirp only the blob (its reads stop at the blob's end).
 * The other back-ends carry no state: tap is a host device (its queue
 * belongs to the host), socket a byte stream to a peer outside the VM; the
 * frames queued in the netdev core are dropped like a lossy link. */
struct blob_rd {
	const uint8_t *p;
	size_t len, pos;
};

static ssize_t state_write(const void *buf, size_t len, void *opaque)
{
	g_byte_array_append(opaque, buf, (guint)len);
	return (ssize_t)len;
}

static ssize_t state_read(void *buf, size_t len, void *opaque)
{
	struct blob_rd *r = opaque;
	if (len > r->len - r->pos) {
		memset(buf, 0, len);
		r->pos = r->len;
		return -1;
	}
	memcpy(buf, r->p + r->pos, len);
	r->pos += len;
	return (ssize_t)len;
}

static int user_vms_save(void *opaque, struct kl_vms_out *out, char **err)
{
	(void)err;
	struct kl_netdev *nd = opaque;
	struct user_be *u = nd->be;
	GByteArray *b = g_byte_array_new();
	slirp_state_save(u->slirp, state_write, b);
	kl_vms_put_u32(out, (uint32_t)slirp_state_version());
	kl_vms_put_u32(out, b->len);
	kl_vms_put_bytes(out, b->data, b->len);
	g_byte_array_free(b, TRUE);
	return 0;
}

static int user_vms_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	struct kl_netdev *nd = opaque;
	struct user_be *u = nd->be;
	uint32_t sv = kl_vms_get_u32(in);
	uint32_t len = kl_vms_get_u32_max(in, (uint32_t)kl_vms_remaining(in), "libslirp state length");
	if (kl_vms_failed(in))
		return -1;
	if (sv == 0 || sv > (uint32_t)slirp_state_version()) {
		*err = g_strdup_printf("libslirp state version %u is not readable here (1..%d)", sv,
				       slirp_state_version());
		return -1;
	}
	struct blob_rd r = { in->p + in->pos, len, 0 };
	in->pos += len;
	int ret = slirp_state_load(u->slirp, (int)sv, state_read, &r);
	if (ret < 0 || r.pos != r.len) {
		*err = g_strdup_printf("libslirp refused its state (%d, %zu of %u bytes read)", ret,
				       r.pos, len);
		return -1;
	}
	return 0;
}

static const struct kl_vmstate_ops user_vmstate_ops = {
	.kind = "netdev-user",
	.version = 1,
	.min_version = 1,
	.save = user_vms_save,
	.load = user_vms_load,
};

static const struct kl_netdev_ops user_ops = {
	.type = "user",
	.transmit = user_transmit,
	.rx_resume = user_rx_resume,
	.cleanup = user_cleanup,
	.vmstate = &user_vmstate_ops,
};

/* ---- options ----------------------------------------------------------------- */

static int parse_ip(const char *key, const char *val, struct in_addr *out, char **err)
{
	if (inet_pton(AF_INET, val, out) != 1) {
		*err = g_strdup_printf("-netdev user: %s=%s: invalid IPv4 address", key, val);
		return -1;
	}
	return 0;
}

static int parse_net(const char *val, struct in_addr *net, struct in_addr *mask, char **err)
{
	char *s = g_strdup(val);
	char *slash = strchr(s, '/');
	unsigned long bits = 24;
	int r = -1;
	if (slash) {
		char *end;
		*slash = 0;
		if (strchr(slash + 1, '.')) {
			if (inet_pton(AF_INET, slash + 1, mask) != 1)
				goto bad;
			bits = 33;
		} else {
			bits = strtoul(slash + 1, &end, 10);
			if (*end || bits < 1 || bits > 30)
				goto bad;
		}
	}
	if (inet_pton(AF_INET, s, net) != 1)
		goto bad;
	if (bits <= 32)
		mask->s_addr = htonl(~0u << (32 - bits));
	net->s_addr &= mask->s_addr;
	r = 0;
	goto out;
bad:
	*err = g_strdup_printf("-netdev user: net=%s: expected A.B.C.D/N", val);
out:
	g_free(s);
	return r;
}

static int add_hostfwd(Slirp *slirp, const char *spec, struct in_addr vnet, char **err)
{
	/* [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT */
	int udp = 0;
	const char *p = spec;
	if (!strncmp(p, "tcp:", 4)) {
		p += 4;
	} else if (!strncmp(p, "udp:", 4)) {
		udp = 1;
		p += 4;
	} else if (*p == ':') {
		p += 1;
	}
	const char *dash = strchr(p, '-');
	if (!dash)
		goto bad;
	char *host = g_strndup(p, (size_t)(dash - p));
	struct sockaddr_in h, g;
	char *e2 = NULL;
	int r = kl_net_parse_hostport(host, true, &h, &e2);
	g_free(host);
	if (r < 0) {
		g_free(e2);
		goto bad;
	}
	const char *gs = dash + 1;
	r = kl_net_parse_hostport(gs, true, &g, &e2);
	if (r < 0) {
		g_free(e2);
		goto bad;
	}
	if (g.sin_addr.s_addr == htonl(INADDR_ANY))
		g.sin_addr.s_addr = htonl(ntohl(vnet.s_addr) | 15);  /* x.x.x.15: first DHCP lease */
	if (slirp_add_hostfwd(slirp, udp, h.sin_addr, ntohs(h.sin_port), g.sin_addr,
			      ntohs(g.sin_port)) < 0) {
		*err = g_strdup_printf("-netdev user: hostfwd=%s: could not set up (%s)", spec,
				       strerror(errno));
		return -1;
	}
	return 0;
bad:
	*err = g_strdup_printf("-netdev user: hostfwd=%s: expected "
			       "tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT", spec);
	return -1;
}

struct kl_netdev *kl_net_user_new(const char *id, struct kl_opts *o, char **hostfwd,
				  unsigned nhostfwd, char **err)
{
	SlirpConfig cfg;
	const char *v;
	bool restrict_ = false, ipv6 = false;
	memset(&cfg, 0, sizeof(cfg));
	cfg.version = SLIRP_CONFIG_VERSION_MAX < 4 ? SLIRP_CONFIG_VERSION_MAX : 4;
	cfg.in_enabled = true;
	inet_pton(AF_INET, "10.0.2.0", &cfg.vnetwork);
	inet_pton(AF_INET, "255.255.255.0", &cfg.vnetmask);
	bool have_host = false, have_dhcp = false, have_dns = false;

	if ((v = kl_opts_get(o, "net")) && parse_net(v, &cfg.vnetwork, &cfg.vnetmask, err) < 0)
		return NULL;
	if ((v = kl_opts_get(o, "host"))) {
		if (parse_ip("host", v, &cfg.vhost, err) < 0)
			return NULL;
		have_host = true;
	}
	if ((v = kl_opts_get(o, "dhcpstart"))) {
		if (parse_ip("dhcpstart", v, &cfg.vdhcp_start, err) < 0)
			return NULL;
		have_dhcp = true;
	}
	if ((v = kl_opts_get(o, "dns"))) {
		if (parse_ip("dns", v, &cfg.vnameserver, err) < 0)
			return NULL;
		have_dns = true;
	}
	if (kl_opts_get_bool(o, "restrict", false, &restrict_, err) < 0 ||
	    kl_opts_get_bool(o, "ipv6", false, &ipv6, err) < 0)
		return NULL;
	uint32_t net = ntohl(cfg.vnetwork.s_addr), mask = ntohl(cfg.vnetmask.s_addr);
	if (!have_host)
		cfg.vhost.s_addr = htonl(net | 2);
	if (!have_dhcp)
		cfg.vdhcp_start.s_addr = htonl(net | 15);
	if (!have_dns)
		cfg.vnameserver.s_addr = htonl(net | 3);
	if ((ntohl(cfg.vhost.s_addr) & mask) != net) {
		*err = g_strdup_printf("-netdev user: host= is not inside net=");
		return NULL;
	}
	if ((ntohl(cfg.vdhcp_start.s_addr) & mask) != net) {
		*err = g_strdup_printf("-netdev user: dhcpstart= is not inside net=");
		return NULL;
	}
	cfg.restricted = restrict_;
	cfg.in6_enabled = ipv6;
	if (ipv6) {
		inet_pton(AF_INET6, "fec0::", &cfg.vprefix_addr6);
		cfg.vprefix_len = 64;
		inet_pton(AF_INET6, "fec0::2", &cfg.vhost6);
		inet_pton(AF_INET6, "fec0::3", &cfg.vnameserver6);
	}
	struct user_be *u = g_new0(struct user_be, 1);
	if ((v = kl_opts_get(o, "hostname")))
		u->hostname = g_strdup(v);
	cfg.vhostname = u->hostname;
	cfg.if_mtu = 1500;
	cfg.if_mru = 1500;
	u->timers = g_ptr_array_new();
	u->pfds = g_array_new(FALSE, TRUE, sizeof(GPollFD));
	u->slirp = slirp_new(&cfg, &user_cbs, u);
	if (!u->slirp) {
		*err = g_strdup_printf("-netdev user,id=%s: libslirp could not start", id);
		goto fail;
	}
	for (unsigned i = 0; i < nhostfwd; i++)
		if (add_hostfwd(u->slirp, hostfwd[i], cfg.vnetwork, err) < 0)
			goto fail;
	u->nd = kl_netdev_new(id, &user_ops, u, err);
	if (!u->nd)
		goto fail;
	u->src = g_source_new(&user_source_funcs, sizeof(struct user_source));
	((struct user_source *)u->src)->u = u;
	g_source_attach(u->src, kl_loop_context());
	return u->nd;
fail:
	if (u->slirp)
		slirp_cleanup(u->slirp);
	while (u->timers->len)
		cb_timer_free(g_ptr_array_index(u->timers, 0), u);
	g_ptr_array_free(u->timers, TRUE);
	g_array_free(u->pfds, TRUE);
	g_free(u->hostname);
	g_free(u);
	return NULL;
}
