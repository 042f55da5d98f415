/* Netdev core: registry by id, peer attach, queues in both directions,
 * flow control, -netdev parsing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "kvmlite/loop.h"
#include "kvmlite/net.h"
#include "kvmlite/vmstate.h"
#include "net_int.h"

static GPtrArray *netdevs;   /* of struct kl_netdev *, creation order */
static unsigned default_user_count;

struct kl_netdev *kl_netdev_find(const char *id)
{
	if (!netdevs || !id)
		return NULL;
	for (unsigned i = 0; i < netdevs->len; i++) {
		struct kl_netdev *nd = g_ptr_array_index(netdevs, i);
		if (!strcmp(nd->id, id))
			return nd;
	}
	return NULL;
}

void kl_netdev_foreach(void (*fn)(struct kl_netdev *nd, void *opaque), void *opaque)
{
	if (!netdevs)
		return;
	for (unsigned i = 0; i < netdevs->len; i++)
		fn(g_ptr_array_index(netdevs, i), opaque);
}

struct kl_netdev *kl_netdev_new(const char *id, const struct kl_netdev_ops *ops,
				void *be, char **err)
{
	if (!id || !*id) {
		*err = g_strdup("-netdev: id= is required");
		return NULL;
	}
	if (kl_netdev_find(id)) {
		*err = g_strdup_printf("-netdev: duplicate id '%s'", id);
		return NULL;
	}
	if (!netdevs)
		netdevs = g_ptr_array_new();
	struct kl_netdev *nd = g_new0(struct kl_netdev, 1);
	nd->id = g_strdup(id);
	nd->ops = ops;
	nd->be = be;
	g_queue_init(&nd->rxq);
	g_queue_init(&nd->txq);
	kl_throttle_init(&nd->thr, NULL, NULL);
	g_ptr_array_add(netdevs, nd);
	return nd;
}

const char *kl_netdev_id(const struct kl_netdev *nd) { return nd->id; }
const char *kl_netdev_type(const struct kl_netdev *nd) { return nd->ops->type; }

void kl_netdev_get_stats(const struct kl_netdev *nd, struct kl_netdev_stats *out)
{
	*out = nd->stats;
}

static void free_queue(GQueue *q)
{
	void *p;
	while ((p = g_queue_pop_head(q)))
		g_free(p);
}

static void netdev_destroy(struct kl_netdev *nd)
{
	free_queue(&nd->rxq);
	free_queue(&nd->txq);
	g_free(nd->id);
	g_free(nd);
}

void kl_netdev_free(struct kl_netdev *nd)
{
	if (!nd)
		return;
	if (netdevs)
		g_ptr_array_remove(netdevs, nd);
	if (nd->ops->cleanup)
		nd->ops->cleanup(nd);
	nd->be = NULL;
	nd->attached = false;
	kl_throttle_destroy(&nd->thr);
	nd->thr.enabled = false;
	if (nd->bh_pending) {
		nd->dead = true;  /* the bottom half frees it */
		return;
	}
	netdev_destroy(nd);
}

void kl_netdev_free_all(void)
{
	while (netdevs && netdevs->len)
		kl_netdev_free(g_ptr_array_index(netdevs, netdevs->len - 1));
	if (netdevs)
		g_ptr_array_free(netdevs, TRUE);
	netdevs = NULL;
}

bool kl_netdev_attached(const struct kl_netdev *nd)
{
	return nd->attached;
}

int kl_netdev_attach(struct kl_netdev *nd, const struct kl_net_peer *peer, char **err)
{
	if (nd->attached) {
		*err = g_strdup_printf("netdev '%s' is already used by %s", nd->id,
				       nd->peer.model ? nd->peer.model : "another NIC");
		return -1;
	}
	nd->peer = *peer;
	nd->attached = true;
	return 0;
}

struct kl_netdev *kl_netdev_attach_id(const char *id, const struct kl_net_peer *peer, char **err)
{
	struct kl_netdev *nd = kl_netdev_find(id);
	if (!nd) {
		*err = g_strdup_printf("netdev=%s: no -netdev with this id", id);
		return NULL;
	}
	if (kl_netdev_attach(nd, peer, err) < 0)
		return NULL;
	return nd;
}

void kl_netdev_vmstate_register(struct kl_vm *vm, struct kl_netdev *nd)
{
	if (!nd->ops->vmstate || nd->vmstate_vm)
		return;
	kl_vmstate_register(vm, nd->id, nd->ops->vmstate, nd);
	nd->vmstate_vm = vm;
}

void kl_netdev_detach(struct kl_netdev *nd)
{
	if (nd->vmstate_vm) {
		kl_vmstate_unregister(nd->vmstate_vm, nd->ops->vmstate, nd);
		nd->vmstate_vm = NULL;
	}
	nd->attached = false;
	memset(&nd->peer, 0, sizeof(nd->peer));
	free_queue(&nd->rxq);
}

bool kl_netdev_has_vnet_hdr(const struct kl_netdev *nd) { return nd->vnet_hdr_capable; }
bool kl_netdev_using_vnet_hdr(const struct kl_netdev *nd) { return nd->using_vnet_hdr; }

int kl_netdev_set_vnet_hdr(struct kl_netdev *nd, bool on)
{
	if (on && !nd->vnet_hdr_capable)
		return -1;
	if (nd->ops->set_vnet_hdr && nd->ops->set_vnet_hdr(nd, on) < 0)
		return -1;
	nd->using_vnet_hdr = on;
	return 0;
}

int kl_netdev_set_offload(struct kl_netdev *nd, bool csum, bool tso4, bool tso6, bool ecn)
{
	if (!nd->using_vnet_hdr || !nd->ops->set_offload)
		return 0;
	return nd->ops->set_offload(nd, csum, tso4, tso6, ecn);
}

/* ---- queues and bottom half ------------------------------------------ */

static void netdev_bh(void *opaque);

static void schedule_bh(struct kl_netdev *nd)
{
	if (nd->bh_pending)
		return;
	nd->bh_pending = true;
	kl_bh_schedule(netdev_bh, nd);
}

static struct kl_net_pkt *pkt_from_iov(const struct iovec *iov, int iovcnt, size_t len)
{
	struct kl_net_pkt *p = g_malloc(sizeof(*p) + len);
	p->len = kl_iov_to_buf(iov, (unsigned)iovcnt, 0, p->data, len);
	return p;
}

static bool peer_can_receive(struct kl_netdev *nd)
{
	return nd->attached && (!nd->peer.can_receive || nd->peer.can_receive(nd->peer.opaque));
}

static void rx_account(struct kl_netdev *nd, size_t len)
{
	if (nd->thr.enabled)
		kl_throttle_account(&nd->thr, KL_THR_READ,
				    len - (nd->using_vnet_hdr && len >= KL_VNET_HDR_LEN ? KL_VNET_HDR_LEN : 0));
}

/* Deliver queued host->NIC frames while the peer takes them. */
static void rx_flush(struct kl_netdev *nd)
{
	struct kl_net_pkt *p;
	if (nd->delivering || nd->in_send)
		return;
	while ((p = g_queue_peek_head(&nd->rxq))) {
		if (!nd->attached) {
			free_queue(&nd->rxq);
			return;
		}
		if (!peer_can_receive(nd))
			return;
		if (!kl_throttle_allow(&nd->thr, KL_THR_READ))
			return;   /* the RX timer schedules the bottom half */
		struct iovec iov = { p->data, p->len };
		nd->delivering = true;
		ssize_t r = nd->peer.receive(nd->peer.opaque, &iov, 1);
		nd->delivering = false;
		if (r == 0)
			return;
		g_queue_pop_head(&nd->rxq);
		if (r < 0) {
			nd->stats.rx_dropped++;
		} else {
			nd->stats.rx_frames++;
			nd->stats.rx_bytes += p->len;
			rx_account(nd, p->len);
		}
		g_free(p);
	}
	if (nd->rx_blocked && nd->attached) {
		nd->rx_blocked = false;
		if (nd->ops->rx_resume)
			nd->ops->rx_resume(nd);
	}
}

void kl_netdev_tx_flush(struct kl_netdev *nd)
{
	struct kl_net_pkt *p;
	if (nd->in_send)
		return;
	while ((p = g_queue_peek_head(&nd->txq))) {
		struct iovec iov = { p->data, p->len };
		nd->in_send = true;
		int r = nd->ops->transmit(nd, &iov, 1);
		nd->in_send = false;
		if (r == 1)
			break;
		g_queue_pop_head(&nd->txq);
		if (r < 0) {
			nd->stats.tx_dropped++;
		} else {
			nd->stats.tx_frames++;
			nd->stats.tx_bytes += p->len;
		}
		g_free(p);
	}
	if (nd->tx_blocked && g_queue_get_length(&nd->txq) < KL_NET_TXQ_SOFT / 2) {
		nd->tx_blocked = false;
		if (nd->attached && nd->peer.tx_ready)
			nd->peer.tx_ready(nd->peer.opaque);
	}
	if (!g_queue_is_empty(&nd->rxq))
		schedule_bh(nd);
}

bool kl_netdev_can_send(struct kl_netdev *nd)
{
	if (!kl_throttle_allow(&nd->thr, KL_THR_WRITE))
		return false;   /* the TX timer calls peer.tx_ready */
	if (g_queue_get_length(&nd->txq) < KL_NET_TXQ_SOFT)
		return true;
	nd->tx_blocked = true;
	return false;
}

static void netdev_bh(void *opaque)
{
	struct kl_netdev *nd = opaque;
	nd->bh_pending = false;
	if (nd->dead) {
		netdev_destroy(nd);
		return;
	}
	kl_netdev_tx_flush(nd);
	rx_flush(nd);
}

ssize_t kl_netdev_send(struct kl_netdev *nd, const struct iovec *iov, int iovcnt)
{
	size_t len = kl_iov_size(iov, (unsigned)iovcnt);
	if (len == 0 || len > KL_NET_MAX_FRAME || !nd->be) {
		nd->stats.tx_dropped++;
		return -1;
	}
	if (nd->thr.enabled)
		kl_throttle_account(&nd->thr, KL_THR_WRITE,
				    len - (nd->using_vnet_hdr ? KL_VNET_HDR_LEN : 0));
	bool direct = kl_loop_is_main_thread() && g_queue_is_empty(&nd->txq) &&
		      !nd->in_send && !nd->delivering;
	if (direct) {
		nd->in_send = true;
		int r = nd->ops->transmit(nd, iov, iovcnt);
		nd->in_send = false;
		if (r == 0) {
			nd->stats.tx_frames++;
			nd->stats.tx_bytes += len;
		} else if (r < 0) {
			nd->stats.tx_dropped++;
			return -1;
		}
		if (!g_queue_is_empty(&nd->rxq))
			schedule_bh(nd);
		if (r == 0)
			return (ssize_t)len;
		/* r == 1: queue it below */
	}
	if (g_queue_get_length(&nd->txq) >= KL_NET_QUEUE_MAX) {
		nd->stats.tx_dropped++;
		return -1;
	}
	g_queue_push_tail(&nd->txq, pkt_from_iov(iov, iovcnt, len));
	if (!direct)
		schedule_bh(nd);
	return (ssize_t)len;
}

void kl_netdev_rx_ready(struct kl_netdev *nd)
{
	if (!g_queue_is_empty(&nd->rxq) || nd->rx_blocked)
		schedule_bh(nd);
}

bool kl_netdev_can_deliver(struct kl_netdev *nd)
{
	if (!nd->attached)
		return true;  /* frames will be dropped: keep draining the host */
	if (g_queue_is_empty(&nd->rxq) && !nd->in_send && !nd->delivering &&
	    peer_can_receive(nd) && kl_throttle_allow(&nd->thr, KL_THR_READ))
		return true;
	nd->rx_blocked = true;
	return false;
}

bool kl_netdev_deliver(struct kl_netdev *nd, const void *buf, size_t len)
{
	if (!nd->attached) {
		nd->stats.rx_dropped++;
		return true;
	}
	bool reentrant = nd->in_send || nd->delivering;
	bool refused = false, throttled = false;
	if (g_queue_is_empty(&nd->rxq) && !reentrant && peer_can_receive(nd) &&
	    !(throttled = !kl_throttle_allow(&nd->thr, KL_THR_READ))) {
		struct iovec iov = { (void *)buf, len };
		nd->delivering = true;
		ssize_t r = nd->peer.receive(nd->peer.opaque, &iov, 1);
		nd->delivering = false;
		if (r > 0) {
			nd->stats.rx_frames++;
			nd->stats.rx_bytes += len;
			rx_account(nd, len);
			return true;
		}
		if (r < 0) {
			nd->stats.rx_dropped++;
			return true;
		}
		refused = true;   /* wait for kl_netdev_rx_ready() */
	}
	/* Keep it for later. */
	if (g_queue_get_length(&nd->rxq) >= KL_NET_QUEUE_MAX) {
		nd->stats.rx_dropped++;
	} else {
		struct iovec iov = { (void *)buf, len };
		g_queue_push_tail(&nd->rxq, pkt_from_iov(&iov, 1, len));
	}
	/* Re-entrant delivery (a reply produced while the NIC sends) or frames
	 * queued ahead of this one: deliver from the loop. */
	if (reentrant || (!refused && !throttled && peer_can_receive(nd)))
		schedule_bh(nd);
	nd->rx_blocked = true;
	return false;
}

/* ---- throttling ----------------------------------------------------------- */

static void thr_tx_resume(void *opaque)
{
	struct kl_netdev *nd = opaque;
	if (nd->attached && nd->peer.tx_ready)
		nd->peer.tx_ready(nd->peer.opaque);
}

static void thr_rx_resume(void *opaque)
{
	struct kl_netdev *nd = opaque;
	/* rx_flush delivers what is queued, then resumes the back-end */
	if (!g_queue_is_empty(&nd->rxq) || nd->rx_blocked)
		schedule_bh(nd);
}

bool kl_netdev_rx_throttled(const struct kl_netdev *nd)
{
	return nd->thr.enabled && nd->rxq.length > 0 &&
	       kl_throttle_waiting(&nd->thr, KL_THR_READ);
}

int kl_netdev_set_throttle(struct kl_netdev *nd, const struct kl_throttle_config *cfg, char **err)
{
	if (kl_throttle_config_check(cfg, err) < 0)
		return -1;
	if (kl_throttle_config_enabled(cfg))
		kl_throttle_set_timers(&nd->thr, thr_rx_resume, thr_tx_resume, nd);
	kl_throttle_set_config(&nd->thr, cfg);
	/* retry both directions under the new limits now */
	kl_throttle_kick(&nd->thr, KL_THR_WRITE);
	kl_throttle_kick(&nd->thr, KL_THR_READ);
	return 0;
}

void kl_netdev_get_throttle(const struct kl_netdev *nd, struct kl_throttle_config *out)
{
	*out = nd->thr.cfg;
}

/* ---- -netdev parsing ---------------------------------------------------- */

int kl_net_parse_hostport(const char *s, bool def_any, struct sockaddr_in *out, char **err)
{
	const char *colon = strrchr(s, ':');
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	if (!colon) {
		*err = g_strdup_printf("'%s': expected HOST:PORT", s);
		return -1;
	}
	char *host = g_strndup(s, (size_t)(colon - s));
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port > 65535) {
		*err = g_strdup_printf("'%s': invalid port", s);
		g_free(host);
		return -1;
	}
	out->sin_port = htons((uint16_t)port);
	if (!*host) {
		out->sin_addr.s_addr = htonl(def_any ? INADDR_ANY : INADDR_LOOPBACK);
	} else if (!strcmp(host, "localhost")) {
		out->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (inet_pton(AF_INET, host, &out->sin_addr) != 1) {
		*err = g_strdup_printf("'%s': invalid IPv4 address '%s'", s, host);
		g_free(host);
		return -1;
	}
	g_free(host);
	return 0;
}

/* Split an option string at unescaped commas, moving every hostfwd=
 * element out (kl_opts rejects duplicate keys). */
static char *extract_multi(const char *s, GPtrArray *fwds)
{
	GString *rest = g_string_new(NULL);
	const char *p = s;
	for (;;) {
		const char *q = p;
		while (*q && !(*q == ',' && q[1] != ',')) {
			if (*q == ',' && q[1] == ',')
				q++;
			q++;
		}
		char *elem = g_strndup(p, (size_t)(q - p));
		if (!strncmp(elem, "hostfwd=", 8)) {
			g_ptr_array_add(fwds, g_strdup(elem + 8));
		} else {
			if (rest->len)
				g_string_append_c(rest, ',');
			g_string_append(rest, elem);
		}
		g_free(elem);
		if (!*q)
			break;
		p = q + 1;
	}
	return g_string_free(rest, FALSE);
}

struct kl_netdev *kl_netdev_add(const char *optstr, char **err)
{
	GPtrArray *fwds = g_ptr_array_new_with_free_func(g_free);
	char *rest = extract_multi(optstr, fwds);
	char *perr = NULL;
	struct kl_opts *o = kl_opts_parse(rest, "type", &perr);
	struct kl_netdev *nd = NULL;
	g_free(rest);
	if (!o) {
		*err = g_strdup_printf("-netdev %s: %s", optstr, perr);
		g_free(perr);
		goto out;
	}
	const char *type = kl_opts_get(o, "type");
	const char *id = kl_opts_get(o, "id");
	if (!type) {
		*err = g_strdup_printf("-netdev %s: missing type (user, tap, socket)", optstr);
		goto out;
	}
	if (!id || !*id) {
		*err = g_strdup_printf("-netdev %s: id= is required", optstr);
		goto out;
	}
	struct kl_throttle_config thr;
	kl_throttle_config_init(&thr);
	char *terr = NULL;
	if (kl_throttle_config_from_opts(&thr, kl_throttle_net_keys, false, o, "throttling", &terr) < 0) {
		*err = g_strdup_printf("-netdev %s: %s", optstr, terr);
		g_free(terr);
		goto out;
	}
	if (fwds->len && strcmp(type, "user")) {
		*err = g_strdup_printf("-netdev %s: hostfwd= is only valid for type user", optstr);
		goto out;
	}
	if (!strcmp(type, "user"))
		nd = kl_net_user_new(id, o, (char **)fwds->pdata, fwds->len, err);
	else if (!strcmp(type, "tap"))
		nd = kl_net_tap_new(id, o, err);
	else if (!strcmp(type, "socket") || !strcmp(type, "stream") || !strcmp(type, "dgram"))
		nd = kl_net_socket_new(id, o, err);
	else
		*err = g_strdup_printf("-netdev %s: unknown type '%s' (user, tap, socket)", optstr, type);
	if (nd && kl_opts_check_unused(o, "-netdev", err) < 0) {
		kl_netdev_free(nd);
		nd = NULL;
	}
	if (nd && kl_throttle_config_enabled(&thr) && kl_netdev_set_throttle(nd, &thr, err) < 0) {
		kl_netdev_free(nd);
		nd = NULL;
	}
out:
	g_ptr_array_free(fwds, TRUE);
	kl_opts_free(o);
	return nd;
}

struct kl_netdev *kl_netdev_default_user(char **err)
{
	char *id = g_strdup_printf("__default_user%u", default_user_count++);
	char *perr = NULL;
	struct kl_opts *o = kl_opts_parse("", NULL, &perr);
	struct kl_netdev *nd = NULL;
	if (!o) {
		*err = perr;
	} else {
		nd = kl_net_user_new(id, o, NULL, 0, err);
		kl_opts_free(o);
	}
	g_free(id);
	return nd;
}
