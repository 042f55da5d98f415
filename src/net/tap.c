/* -netdev tap,id=ID,ifname=NAME[,script=no][,downscript=no][,vhost=off][,vnet_hdr=on|off]
 *
 * /dev/net/tun with IFF_TAP|IFF_NO_PI, plus IFF_VNET_HDR (header size 12)
 * when the kernel has it and vnet_hdr is not off.  The fd always carries
 * the header then; when the NIC does not use vnet headers this file adds
 * an empty one on transmit and strips it on receive (the kernel sends no
 * offloaded frames until TUNSETOFFLOAD enables them). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <linux/if_tun.h>

#include "kvmlite/loop.h"
#include "net_int.h"

struct tap_be {
	struct kl_netdev *nd;
	int fd;
	bool vnet;          /* fd carries vnet headers */
	guint rd_watch, wr_watch;
	char ifname[IFNAMSIZ];
	uint8_t *buf;
};

static bool tap_readable(int fd, GIOCondition cond, void *opaque)
{
	struct tap_be *t = opaque;
	(void)cond;
	for (int i = 0; i < 64; i++) {
		if (!kl_netdev_can_deliver(t->nd)) {
			t->rd_watch = 0;
			return false;  /* rx_resume re-adds the watch */
		}
		ssize_t n = read(fd, t->buf, KL_NET_MAX_FRAME + KL_VNET_HDR_LEN);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				fprintf(stderr, "kvmlite: netdev %s: read: %s\n", t->nd->id, strerror(errno));
			return true;
		}
		size_t off = 0;
		if (t->vnet && !t->nd->using_vnet_hdr)
			off = KL_VNET_HDR_LEN;
		if ((size_t)n <= off)
			continue;
		kl_netdev_deliver(t->nd, t->buf + off, (size_t)n - off);
	}
	return true;
}

static bool tap_writable(int fd, GIOCondition cond, void *opaque)
{
	struct tap_be *t = opaque;
	(void)fd; (void)cond;
	t->wr_watch = 0;
	kl_netdev_tx_flush(t->nd);
	return false;
}

static int tap_transmit(struct kl_netdev *nd, const struct iovec *iov, int iovcnt)
{
	struct tap_be *t = nd->be;
	static const uint8_t zero_hdr[KL_VNET_HDR_LEN];
	struct iovec v[65];
	int n = 0;
	if (iovcnt > 64)
		return -1;
	if (t->vnet && !nd->using_vnet_hdr) {
		v[n].iov_base = (void *)zero_hdr;
		v[n++].iov_len = sizeof(zero_hdr);
	}
	memcpy(v + n, iov, sizeof(*iov) * (size_t)iovcnt);
	ssize_t r = writev(t->fd, v, n + iovcnt);
	if (r < 0) {
		if (errno == EAGAIN) {
			if (!t->wr_watch)
				t->wr_watch = kl_fd_add(t->fd, G_IO_OUT, tap_writable, t);
			return 1;
		}
		return -1;
	}
	return 0;
}

static void tap_rx_resume(struct kl_netdev *nd)
{
	struct tap_be *t = nd->be;
	if (!t->rd_watch)
		t->rd_watch = kl_fd_add(t->fd, G_IO_IN, tap_readable, t);
}

static int tap_set_offload(struct kl_netdev *nd, bool csum, bool tso4, bool tso6, bool ecn)
{
	struct tap_be *t = nd->be;
	unsigned off = 0;
	if (csum) {
		off |= TUN_F_CSUM;
		if (tso4) off |= TUN_F_TSO4;
		if (tso6) off |= TUN_F_TSO6;
		if ((tso4 || tso6) && ecn) off |= TUN_F_TSO_ECN;
	}
	return ioctl(t->fd, TUNSETOFFLOAD, off) < 0 ? -1 : 0;
}

static int tap_set_vnet_hdr(struct kl_netdev *nd, bool on)
{
	struct tap_be *t = nd->be;
	if (!on)  /* the host must not send offloaded frames any more */
		ioctl(t->fd, TUNSETOFFLOAD, 0);
	return 0;
}

static void tap_cleanup(struct kl_netdev *nd)
{
	struct tap_be *t = nd->be;
	if (!t)
		return;
	if (t->rd_watch)
		kl_source_remove(t->rd_watch);
	if (t->wr_watch)
		kl_source_remove(t->wr_watch);
	close(t->fd);
	g_free(t->buf);
	g_free(t);
}

/* No VM state section (.vmstate NULL): the tap device and its queue belong
 * to the host; frames in flight are dropped like on a lossy link. */
static const struct kl_netdev_ops tap_ops = {
	.type = "tap",
	.transmit = tap_transmit,
	.rx_resume = tap_rx_resume,
	.set_vnet_hdr = tap_set_vnet_hdr,
	.set_offload = tap_set_offload,
	.cleanup = tap_cleanup,
};

struct kl_netdev *kl_net_tap_new(const char *id, struct kl_opts *o, char **err)
{
	const char *ifname = kl_opts_get(o, "ifname");
	const char *script = kl_opts_get(o, "script");
	const char *downscript = kl_opts_get(o, "downscript");
	const char *fdstr = kl_opts_get(o, "fd");
	bool vhost = false, want_vnet = true;
	if (kl_opts_get_bool(o, "vhost", false, &vhost, err) < 0 ||
	    kl_opts_get_bool(o, "vnet_hdr", true, &want_vnet, err) < 0)
		return NULL;
	if (script && strcmp(script, "no")) {
		*err = g_strdup_printf("-netdev tap,id=%s: script=%s is not supported (use script=no "
				       "and configure the interface yourself)", id, script);
		return NULL;
	}
	if (downscript && strcmp(downscript, "no")) {
		*err = g_strdup_printf("-netdev tap,id=%s: downscript=%s is not supported (use "
				       "downscript=no)", id, downscript);
		return NULL;
	}
	if (vhost) {
		*err = g_strdup_printf("-netdev tap,id=%s: vhost=on is not supported", id);
		return NULL;
	}
	if (fdstr) {
		*err = g_strdup_printf("-netdev tap,id=%s: fd= is not supported (use ifname=)", id);
		return NULL;
	}
	if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ) {
		*err = g_strdup_printf("-netdev tap,id=%s: ifname=NAME (at most %d characters) is required",
				       id, IFNAMSIZ - 1);
		return NULL;
	}
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		*err = g_strdup_printf("-netdev tap,id=%s: /dev/net/tun: %s", id, strerror(errno));
		return NULL;
	}
	unsigned features = 0;
	if (ioctl(fd, TUNGETFEATURES, &features) < 0)
		features = 0;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	bool vnet = want_vnet && (features & IFF_VNET_HDR);
	if (vnet)
		ifr.ifr_flags |= IFF_VNET_HDR;
	memcpy(ifr.ifr_name, ifname, strlen(ifname));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		*err = g_strdup_printf("-netdev tap,id=%s: ifname=%s: TUNSETIFF: %s", id, ifname,
				       strerror(errno));
		close(fd);
		return NULL;
	}
	if (vnet) {
		int sz = KL_VNET_HDR_LEN;
		if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
			*err = g_strdup_printf("-netdev tap,id=%s: TUNSETVNETHDRSZ: %s", id, strerror(errno));
			close(fd);
			return NULL;
		}
		ioctl(fd, TUNSETOFFLOAD, 0);
	}
	struct tap_be *t = g_new0(struct tap_be, 1);
	t->fd = fd;
	t->vnet = vnet;
	memcpy(t->ifname, ifr.ifr_name, IFNAMSIZ);
	t->buf = g_malloc(KL_NET_MAX_FRAME + KL_VNET_HDR_LEN);
	t->nd = kl_netdev_new(id, &tap_ops, t, err);
	if (!t->nd) {
		close(fd);
		g_free(t->buf);
		g_free(t);
		return NULL;
	}
	t->nd->vnet_hdr_capable = vnet;
	t->rd_watch = kl_fd_add(fd, G_IO_IN, tap_readable, t);
	return t->nd;
}
