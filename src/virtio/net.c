/* virtio-net: -device virtio-net-pci[,netdev=ID][,mac=MAC][,addr=SLOT]
 * and -device virtio-net-device,... (virtio-mmio, -M microvm)
 *
 * Queues: 0 receive, 1 transmit, 2 control.  Every buffer starts with the
 * 12-byte struct virtio_net_hdr_v1 (VERSION_1 is mandatory).
 *
 * Offloads: CSUM and HOST_TSO4/6 are always offered: with a back-end that
 * carries vnet headers (tap) the header goes through unchanged, otherwise
 * the frame is finished in software (checksum inserted, TSO segmented:
 * kl_net_vnet_hdr_apply) before slirp/socket see it.  GUEST_CSUM and
 * GUEST_TSO4/6/ECN are offered only with a vnet-header back-end, and the
 * negotiated set is programmed into it (TUNSETOFFLOAD).
 *
 * Control queue: RX mode (promisc, allmulti, alluni, nomulti, nouni,
 * nobcast) and MAC table / address, applied by the receive filter. */
#include <string.h>

#include <glib.h>

#include "kvmlite/device.h"
#include "kvmlite/loop.h"
#include "kvmlite/net.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define VIRTIO_ID_NET 1

#define F_CSUM 0
#define F_GUEST_CSUM 1
#define F_MTU 3
#define F_MAC 5
#define F_GUEST_TSO4 7
#define F_GUEST_TSO6 8
#define F_GUEST_ECN 9
#define F_HOST_TSO4 11
#define F_HOST_TSO6 12
#define F_HOST_ECN 13
#define F_MRG_RXBUF 15
#define F_STATUS 16
#define F_CTRL_VQ 17
#define F_CTRL_RX 18
#define F_CTRL_RX_EXTRA 20
#define F_CTRL_MAC_ADDR 23

#define Q_RX 0
#define Q_TX 1
#define Q_CTRL 2
#define QUEUE_SIZE 256
#define CONFIG_LEN 12        /* mac[6], status, max_virtqueue_pairs, mtu */
#define MAC_TABLE_MAX 64
#define RX_STASH_MAX 64      /* popped RX buffers waiting for a frame */
#define TX_BUDGET 256        /* frames per kick before yielding to the loop */

#define CTRL_RX 0
#define  CTRL_RX_PROMISC 0
#define  CTRL_RX_ALLMULTI 1
#define  CTRL_RX_ALLUNI 2
#define  CTRL_RX_NOMULTI 3
#define  CTRL_RX_NOUNI 4
#define  CTRL_RX_NOBCAST 5
#define CTRL_MAC 1
#define  CTRL_MAC_TABLE_SET 0
#define  CTRL_MAC_ADDR_SET 1
#define CTRL_OK 0
#define CTRL_ERR 1

struct vnet {
	struct kl_virtio_dev *vd;
	struct kl_netdev *nd;
	uint8_t mac[6];
	bool vnet_be;                 /* back-end carries vnet headers */
	/* RX filter state (control queue) */
	bool promisc, allmulti, alluni, nomulti, nouni, nobcast;
	unsigned uni_n, multi_n;
	uint8_t uni[MAC_TABLE_MAX][6], multi[MAC_TABLE_MAX][6];
	/* RX buffers popped but not yet used */
	struct kl_vq_elem *stash[RX_STASH_MAX];
	unsigned nstash;
	uint64_t stash_in;            /* bytes of device-writable space stashed */
	uint8_t *txbuf;               /* flat TX frame for the software fallback */
	uint8_t *rxbuf;               /* flat RX frame when it arrives in pieces */
	bool tx_bh_pending;
	bool tx_running;
	uint64_t rx_frames, tx_frames, rx_dropped, tx_dropped;
};

static void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

/* ---- receive ---------------------------------------------------------- */

static void stash_drop(struct vnet *n)
{
	for (unsigned i = 0; i < n->nstash; i++)
		kl_virtio_discard(n->vd, n->stash[i]);
	n->nstash = 0;
	n->stash_in = 0;
}

static bool rx_filter(struct vnet *n, const uint8_t *dst)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	if (n->promisc)
		return true;
	if (!memcmp(dst, bcast, 6))
		return !n->nobcast;
	if (dst[0] & 1) {
		if (n->nomulti)
			return false;
		if (n->allmulti)
			return true;
		for (unsigned i = 0; i < n->multi_n; i++)
			if (!memcmp(n->multi[i], dst, 6))
				return true;
		return false;
	}
	if (n->nouni)
		return false;
	if (n->alluni || !memcmp(n->mac, dst, 6))
		return true;
	for (unsigned i = 0; i < n->uni_n; i++)
		if (!memcmp(n->uni[i], dst, 6))
			return true;
	return false;
}

static bool rx_queue_ok(struct vnet *n)
{
	struct kl_virtio_dev *vd = n->vd;
	return kl_virtio_ready(vd) && vd->vqs[Q_RX].enabled;
}

static bool vnet_can_receive(void *opaque)
{
	struct vnet *n = opaque;
	if (!rx_queue_ok(n))
		return false;
	struct kl_virtq *vq = &n->vd->vqs[Q_RX];
	if (n->nstash > 0 || kl_virtq_has_avail(vq))
		return true;
	/* out of buffers: make sure the driver kicks when it adds some */
	return kl_virtq_set_notification(vq, true);
}

enum { STASH_OK, STASH_WAIT, STASH_FAIL };

/* Pop RX buffers until `need` bytes are stashed (or one buffer without
 * MRG_RXBUF). */
static int stash_fill(struct vnet *n, uint64_t need, bool mrg)
{
	struct kl_virtio_dev *vd = n->vd;
	struct kl_virtq *vq = &vd->vqs[Q_RX];
	while (mrg ? n->stash_in < need : n->nstash == 0) {
		if (n->nstash == RX_STASH_MAX)
			return STASH_FAIL;     /* frame larger than 64 buffers */
		struct kl_vq_elem *e = kl_virtio_pop(vd, Q_RX);
		if (!e) {
			if (vd->broken)
				return STASH_FAIL;
			/* ask for a kick when the driver adds buffers */
			if (kl_virtq_set_notification(vq, true))
				continue;
			return STASH_WAIT;
		}
		if (e->in_len < KL_VNET_HDR_LEN || e->out_num) {
			kl_virtio_set_broken(vd, "receive buffer without room for the header");
			kl_virtio_discard(vd, e);
			stash_drop(n);
			return STASH_FAIL;
		}
		n->stash[n->nstash++] = e;
		n->stash_in += e->in_len;
	}
	return STASH_OK;
}

static ssize_t vnet_receive(void *opaque, const struct iovec *iov, int iovcnt)
{
	struct vnet *n = opaque;
	struct kl_virtio_dev *vd = n->vd;
	size_t total = kl_iov_size(iov, (unsigned)iovcnt);
	if (!rx_queue_ok(n))
		return -1;
	const uint8_t *src = iov[0].iov_base;
	if (iovcnt != 1) {
		if (total > KL_NET_MAX_FRAME)
			return -1;
		kl_iov_to_buf(iov, (unsigned)iovcnt, 0, n->rxbuf, total);
		src = n->rxbuf;
	}
	uint8_t hdr[KL_VNET_HDR_LEN] = { 0 };
	size_t skip = 0;   /* the back-end's vnet header at the front */
	if (n->vnet_be && kl_netdev_using_vnet_hdr(n->nd)) {
		if (total < KL_VNET_HDR_LEN)
			return (ssize_t)total;
		memcpy(hdr, src, KL_VNET_HDR_LEN);
		hdr[10] = hdr[11] = 0;
		skip = KL_VNET_HDR_LEN;
	}
	size_t flen = total - skip;
	if (flen < 14)
		return (ssize_t)total;
	if (!rx_filter(n, src + skip))
		return (ssize_t)total;
	bool mrg = kl_virtio_has_feature(vd, F_MRG_RXBUF);
	uint64_t need = KL_VNET_HDR_LEN + flen;
	int st = stash_fill(n, need, mrg);
	if (st == STASH_WAIT)
		return 0;
	if (st == STASH_FAIL) {
		n->rx_dropped++;
		return vd->broken ? -1 : (ssize_t)total;
	}
	/* Copy header + frame across the stashed buffers. */
	unsigned used = 0;
	size_t done = 0;          /* frame bytes copied */
	uint32_t lens[RX_STASH_MAX];
	while (used < n->nstash) {
		struct kl_vq_elem *e = n->stash[used];
		struct iovec *in = e->iov + e->out_num;
		size_t off = 0;
		if (used == 0) {
			kl_iov_from_buf(in, e->in_num, 0, hdr, KL_VNET_HDR_LEN);
			off = KL_VNET_HDR_LEN;
		}
		size_t c = flen - done < e->in_len - off ? flen - done : e->in_len - off;
		kl_iov_from_buf(in, e->in_num, off, src + skip + done, c);
		done += c;
		lens[used++] = (uint32_t)(off + c);
		if (!mrg || done == flen)
			break;
	}
	if (done < flen) {
		/* no MRG_RXBUF and the frame does not fit the buffer: drop it,
		 * the buffer goes back empty */
		lens[0] = 0;
		n->rx_dropped++;
	} else {
		n->rx_frames++;
	}
	{
		/* num_buffers (1 without MRG_RXBUF) */
		uint8_t nb[2];
		put_le16(nb, (uint16_t)used);
		struct kl_vq_elem *e0 = n->stash[0];
		kl_iov_from_buf(e0->iov + e0->out_num, e0->in_num, 10, nb, 2);
	}
	struct kl_virtq *vq = &vd->vqs[Q_RX];
	for (unsigned i = 0; i < used; i++) {
		struct kl_vq_elem *e = n->stash[i];
		if (!vd->broken)
			kl_virtq_push(vq, e, lens[i]);
		n->stash_in -= e->in_len;
		kl_virtio_discard(vd, e);   /* frees it, ends its in-flight count */
	}
	memmove(n->stash, n->stash + used, (n->nstash - used) * sizeof(n->stash[0]));
	n->nstash -= used;
	kl_virtio_notify(vd, Q_RX);
	return (ssize_t)total;
}

/* ---- transmit ------------------------------------------------------------ */

static void tx_emit(void *opaque, const uint8_t *frame, size_t len)
{
	struct vnet *n = opaque;
	struct iovec v = { (void *)frame, len };
	if (kl_netdev_send(n->nd, &v, 1) < 0)
		n->tx_dropped++;
	else
		n->tx_frames++;
}

static void tx_one(struct vnet *n, struct kl_vq_elem *e)
{
	uint64_t len = e->out_len;
	if (len < KL_VNET_HDR_LEN || len > KL_NET_MAX_FRAME) {
		n->tx_dropped++;
		return;
	}
	if (n->vnet_be && kl_netdev_using_vnet_hdr(n->nd)) {
		/* header and frame go to the back-end as they are */
		if (kl_netdev_send(n->nd, e->iov, (int)e->out_num) < 0)
			n->tx_dropped++;
		else
			n->tx_frames++;
		return;
	}
	uint8_t hdr[KL_VNET_HDR_LEN];
	kl_iov_to_buf(e->iov, e->out_num, 0, hdr, KL_VNET_HDR_LEN);
	size_t flen = kl_iov_to_buf(e->iov, e->out_num, KL_VNET_HDR_LEN, n->txbuf, len - KL_VNET_HDR_LEN);
	bool plain = !(hdr[0] & KL_VNET_HDR_F_NEEDS_CSUM) && hdr[1] == KL_VNET_HDR_GSO_NONE;
	if (plain && e->out_num == 2 && e->iov[0].iov_len == KL_VNET_HDR_LEN) {
		/* common case: header and frame in separate buffers */
		if (kl_netdev_send(n->nd, e->iov + 1, 1) < 0)
			n->tx_dropped++;
		else
			n->tx_frames++;
		return;
	}
	if (kl_net_vnet_hdr_apply(hdr, n->txbuf, flen, tx_emit, n) < 0)
		n->tx_dropped++;
}

static void tx_bh(void *opaque);

static void tx_run(struct vnet *n)
{
	struct kl_virtio_dev *vd = n->vd;
	struct kl_virtq *vq = &vd->vqs[Q_TX];
	if (n->tx_running || !kl_virtio_ready(vd) || !vq->enabled)
		return;
	n->tx_running = true;
	unsigned budget = TX_BUDGET;
	for (;;) {
		kl_virtq_set_notification(vq, false);
		struct kl_vq_elem *e;
		while (budget && kl_netdev_can_send(n->nd) && (e = kl_virtio_pop(vd, Q_TX))) {
			tx_one(n, e);
			kl_virtio_complete(vd, Q_TX, e, 0);
			budget--;
		}
		if (!kl_netdev_can_send(n->nd))
			break;   /* back-end full: vnet_tx_ready() resumes */
		if (!budget) {
			/* more may be waiting: continue from the loop */
			if (!n->tx_bh_pending) {
				n->tx_bh_pending = true;
				kl_bh_schedule(tx_bh, n);
			}
			break;
		}
		if (!kl_virtio_ready(vd) || !kl_virtq_set_notification(vq, true))
			break;
	}
	n->tx_running = false;
}

static void tx_bh(void *opaque)
{
	struct vnet *n = opaque;
	n->tx_bh_pending = false;
	if (n->vd)
		tx_run(n);
	else
		g_free(n);      /* the device went while this was pending */
}

static void vnet_tx_ready(void *opaque)
{
	struct vnet *n = opaque;
	if (!n->tx_bh_pending) {
		n->tx_bh_pending = true;
		kl_bh_schedule(tx_bh, n);
	}
}

/* ---- control queue ----------------------------------------------------------- */

static uint8_t ctrl_mac_table(struct vnet *n, struct kl_vq_elem *e, size_t off)
{
	unsigned cnt[2];
	uint8_t tmp[MAC_TABLE_MAX][6];
	for (int t = 0; t < 2; t++) {
		uint8_t le[4];
		if (kl_iov_to_buf(e->iov, e->out_num, off, le, 4) != 4)
			return CTRL_ERR;
		off += 4;
		uint32_t entries = (uint32_t)le[0] | le[1] << 8 | le[2] << 16 | (uint32_t)le[3] << 24;
		if (entries > MAC_TABLE_MAX) {
			/* too many: fall back to accepting all of that kind */
			if (t == 0)
				n->alluni = true;
			else
				n->allmulti = true;
			cnt[t] = 0;
			off += (size_t)entries * 6;
			continue;
		}
		if (kl_iov_to_buf(e->iov, e->out_num, off, tmp, entries * 6) != entries * 6)
			return CTRL_ERR;
		off += entries * 6;
		memcpy(t == 0 ? n->uni : n->multi, tmp, entries * 6);
		cnt[t] = entries;
	}
	n->uni_n = cnt[0];
	n->multi_n = cnt[1];
	return CTRL_OK;
}

static uint8_t ctrl_handle(struct vnet *n, struct kl_vq_elem *e)
{
	uint8_t hdr[2];
	if (kl_iov_to_buf(e->iov, e->out_num, 0, hdr, 2) != 2)
		return CTRL_ERR;
	if (hdr[0] == CTRL_RX) {
		uint8_t on;
		if (!kl_virtio_has_feature(n->vd, F_CTRL_RX) ||
		    kl_iov_to_buf(e->iov, e->out_num, 2, &on, 1) != 1)
			return CTRL_ERR;
		bool *flag;
		switch (hdr[1]) {
		case CTRL_RX_PROMISC: flag = &n->promisc; break;
		case CTRL_RX_ALLMULTI: flag = &n->allmulti; break;
		case CTRL_RX_ALLUNI: flag = &n->alluni; break;
		case CTRL_RX_NOMULTI: flag = &n->nomulti; break;
		case CTRL_RX_NOUNI: flag = &n->nouni; break;
		case CTRL_RX_NOBCAST: flag = &n->nobcast; break;
		default: return CTRL_ERR;
		}
		if (hdr[1] >= CTRL_RX_ALLUNI && !kl_virtio_has_feature(n->vd, F_CTRL_RX_EXTRA))
			return CTRL_ERR;
		*flag = on != 0;
		return CTRL_OK;
	}
	if (hdr[0] == CTRL_MAC) {
		if (hdr[1] == CTRL_MAC_ADDR_SET) {
			uint8_t m[6];
			if (kl_iov_to_buf(e->iov, e->out_num, 2, m, 6) != 6)
				return CTRL_ERR;
			memcpy(n->mac, m, 6);
			memcpy(n->vd->config, m, 6);
			return CTRL_OK;
		}
		if (hdr[1] == CTRL_MAC_TABLE_SET)
			return ctrl_mac_table(n, e, 2);
	}
	return CTRL_ERR;
}

static void ctrl_run(struct vnet *n)
{
	struct kl_virtio_dev *vd = n->vd;
	struct kl_vq_elem *e;
	for (unsigned budget = QUEUE_SIZE; budget && (e = kl_virtio_pop(vd, Q_CTRL)); budget--) {
		if (e->in_len < 1) {
			kl_virtio_set_broken(vd, "control request without an ack byte");
			kl_virtio_discard(vd, e);
			return;
		}
		uint8_t ack = ctrl_handle(n, e);
		kl_iov_from_buf(e->iov + e->out_num, e->in_num, 0, &ack, 1);
		kl_virtio_complete(vd, Q_CTRL, e, 1);
	}
}

/* ---- virtio ops ------------------------------------------------------------------- */

static void vnet_notify(struct kl_virtio_dev *vd, unsigned q)
{
	struct vnet *n = vd->opaque;
	if (q == Q_RX) {
		kl_netdev_rx_ready(n->nd);
	} else if (q == Q_TX) {
		tx_run(n);
	} else if (q == Q_CTRL) {
		ctrl_run(n);
	}
}

static bool vnet_set_features(struct kl_virtio_dev *vd, uint64_t f)
{
	struct vnet *n = vd->opaque;
	if (n->vnet_be) {
		bool csum = f & (1ull << F_GUEST_CSUM);
		kl_netdev_set_offload(n->nd, csum, csum && (f & (1ull << F_GUEST_TSO4)),
				      csum && (f & (1ull << F_GUEST_TSO6)),
				      csum && (f & (1ull << F_GUEST_ECN)));
	}
	return true;
}

static void vnet_driver_ok(struct kl_virtio_dev *vd)
{
	struct vnet *n = vd->opaque;
	kl_netdev_rx_ready(n->nd);
}

static void vnet_reset(struct kl_virtio_dev *vd)
{
	struct vnet *n = vd->opaque;
	stash_drop(n);
	n->promisc = true;   /* until the driver says otherwise (like QEMU) */
	n->allmulti = n->alluni = n->nomulti = n->nouni = n->nobcast = false;
	n->uni_n = n->multi_n = 0;
	memcpy(vd->config, n->mac, 6);
	if (n->vnet_be)
		kl_netdev_set_offload(n->nd, false, false, false, false);
}

/* ---- VM state: section "virtio-net/INST" (kvmlite/vmstate.h; INST: the PCI
 * address or the virtio-mmio base) ----
 * The transport and the queues are in "virtio-pci/..." (virtio_state.c), the
 * back-end's state (the user-mode stack) in its netdev's section.
 * Quiesce: transmit what the driver queued (frames the back-end cannot take
 * now stay on the ring and go from the destination), and give the stashed
 * RX buffers back to the ring (they hold no data yet): nothing is in flight.
 * v1: mac[6], the RX filter (promisc, allmulti, alluni, nomulti, nouni,
 * nobcast, u32 uni_n, u32 multi_n, the two MAC tables), the config space
 * (12 bytes: mac, status, max_virtqueue_pairs, mtu), u64 rx/tx frames and
 * drops. */
#define VNET_STATE_VERSION 1

static int vnet_quiesce(void *opaque, char **err)
{
	struct vnet *n = opaque;
	struct kl_virtio_dev *vd = n->vd;
	tx_run(n);
	struct kl_virtq *vq = &vd->vqs[Q_RX];
	unsigned live = 0;
	for (unsigned i = 0; i < n->nstash; i++)
		if (n->stash[i]->gen == vq->gen)
			live++;
	kl_virtq_unpop(vq, live);
	stash_drop(n);
	if (vd->inflight) {
		*err = g_strdup_printf("virtio-net: %u buffers still in flight", vd->inflight);
		return -1;
	}
	return 0;
}

static int vnet_save(void *opaque, struct kl_vms_out *out, char **err)
{
	struct vnet *n = opaque;
	if (n->nstash) {
		*err = g_strdup("virtio-net: receive buffers held (not quiesced)");
		return -1;
	}
	kl_vms_put_bytes(out, n->mac, 6);
	bool f[6] = { n->promisc, n->allmulti, n->alluni, n->nomulti, n->nouni, n->nobcast };
	for (unsigned i = 0; i < 6; i++)
		kl_vms_put_u8(out, f[i]);
	kl_vms_put_u32(out, n->uni_n);
	kl_vms_put_u32(out, n->multi_n);
	kl_vms_put_bytes(out, n->uni, n->uni_n * 6);
	kl_vms_put_bytes(out, n->multi, n->multi_n * 6);
	kl_vms_put_bytes(out, n->vd->config, CONFIG_LEN);
	kl_vms_put_u64(out, n->rx_frames);
	kl_vms_put_u64(out, n->tx_frames);
	kl_vms_put_u64(out, n->rx_dropped);
	kl_vms_put_u64(out, n->tx_dropped);
	return 0;
}

static int vnet_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	struct vnet *n = opaque;
	uint8_t mac[6], cfg[CONFIG_LEN];
	bool f[6];
	kl_vms_get_bytes(in, mac, 6);
	for (unsigned i = 0; i < 6 && !kl_vms_failed(in); i++) {
		uint8_t v = kl_vms_get_u8(in);
		if (v > 1)
			kl_vms_fail(in, "RX filter flag %u is %u, not 0 or 1", i, v);
		f[i] = v == 1;
	}
	uint32_t uni_n = kl_vms_get_u32_max(in, MAC_TABLE_MAX, "unicast MAC table entries");
	uint32_t multi_n = kl_vms_get_u32_max(in, MAC_TABLE_MAX, "multicast MAC table entries");
	if (kl_vms_failed(in))
		return -1;
	uint8_t (*uni)[6] = g_malloc0(MAC_TABLE_MAX * 6);
	uint8_t (*multi)[6] = g_malloc0(MAC_TABLE_MAX * 6);
	kl_vms_get_bytes(in, uni, uni_n * 6);
	kl_vms_get_bytes(in, multi, multi_n * 6);
	kl_vms_get_bytes(in, cfg, CONFIG_LEN);
	uint64_t cnt[4];
	for (unsigned i = 0; i < 4; i++)
		cnt[i] = kl_vms_get_u64(in);
	int ret = -1;
	if (kl_vms_failed(in))
		goto out;
	if (memcmp(cfg + 8, n->vd->config + 8, 4) != 0) {
		*err = g_strdup("config space differs (max_virtqueue_pairs / mtu)");
		goto out;
	}
	if (cfg[7] || cfg[6] > 1) {
		*err = g_strdup_printf("link status %#x has reserved bits", cfg[6] | cfg[7] << 8);
		goto out;
	}
	memcpy(n->mac, mac, 6);
	n->promisc = f[0];
	n->allmulti = f[1];
	n->alluni = f[2];
	n->nomulti = f[3];
	n->nouni = f[4];
	n->nobcast = f[5];
	n->uni_n = uni_n;
	n->multi_n = multi_n;
	memcpy(n->uni, uni, sizeof(n->uni));
	memcpy(n->multi, multi, sizeof(n->multi));
	memcpy(n->vd->config, cfg, CONFIG_LEN);
	n->rx_frames = cnt[0];
	n->tx_frames = cnt[1];
	n->rx_dropped = cnt[2];
	n->tx_dropped = cnt[3];
	ret = 0;
out:
	g_free(uni);
	g_free(multi);
	return ret;
}

/* receive again (the transport's post_load kicks queues with buffers) */
static int vnet_post_load(void *opaque, char **err)
{
	(void)err;
	struct vnet *n = opaque;
	kl_netdev_rx_ready(n->nd);
	return 0;
}

static const struct kl_vmstate_ops vnet_vmstate_ops = {
	.kind = "virtio-net",
	.version = VNET_STATE_VERSION,
	.min_version = VNET_STATE_VERSION,
	.quiesce = vnet_quiesce,
	.save = vnet_save,
	.load = vnet_load,
	.post_load = vnet_post_load,
};

static void vnet_destroy(struct kl_virtio_dev *vd)
{
	struct vnet *n = vd->opaque;
	kl_vmstate_unregister(vd->vm, &vnet_vmstate_ops, n);
	if (n->nd)
		kl_netdev_detach(n->nd);
	g_free(n->txbuf);
	g_free(n->rxbuf);
	g_free((void *)vd->ops);
	n->vd = NULL;
	if (!n->tx_bh_pending)
		g_free(n);
	/* else the pending bottom half sees vd == NULL and frees n (after a
	 * hot-unplug; at exit the loop has stopped and the bytes leak) */
}

static int vnet_create(struct kl_vm *vm, struct kl_opts *o, enum kl_virtio_transport_kind t,
		       char **err)
{
	const char *tname = kl_virtio_type_name("virtio-net", t);
	const char *ndid = kl_opts_get(o, "netdev");
	const char *macs = kl_opts_get(o, "mac");
	uint64_t slot = 0;
	if (t == KL_VIRTIO_TRANSPORT_PCI && kl_opts_get_u64(o, "addr", 0, &slot, err) < 0)
		return -1;
	if (slot >= KL_PCI_NSLOTS) {
		*err = g_strdup_printf("%s: addr=%" G_GUINT64_FORMAT " is not a PCI slot (1..31)",
				       tname, (guint64)slot);
		return -1;
	}
	struct vnet *n = g_new0(struct vnet, 1);
	if (macs) {
		if (kl_net_parse_mac(macs, n->mac) < 0) {
			*err = g_strdup_printf("%s: mac=%s: expected a unicast XX:XX:XX:XX:XX:XX", tname,
					       macs);
			g_free(n);
			return -1;
		}
	} else {
		kl_net_default_mac(n->mac);
	}
	struct kl_net_peer peer = {
		.model = tname,
		.can_receive = vnet_can_receive,
		.receive = vnet_receive,
		.tx_ready = vnet_tx_ready,
		.opaque = n,
	};
	if (ndid) {
		n->nd = kl_netdev_attach_id(ndid, &peer, err);
		if (!n->nd) {
			char *m = g_strdup_printf("%s: %s", tname, *err);
			g_free(*err);
			*err = m;
			g_free(n);
			return -1;
		}
	} else {
		n->nd = kl_netdev_default_user(err);
		if (!n->nd || kl_netdev_attach(n->nd, &peer, err) < 0) {
			g_free(n);
			return -1;
		}
	}
	n->vnet_be = kl_netdev_has_vnet_hdr(n->nd);
	if (n->vnet_be)
		kl_netdev_set_vnet_hdr(n->nd, true);
	n->txbuf = g_malloc(KL_NET_MAX_FRAME);
	n->rxbuf = g_malloc(KL_NET_MAX_FRAME);
	n->promisc = true;
	struct kl_virtio_ops *ops = g_new0(struct kl_virtio_ops, 1);
	ops->device_features = 1ull << F_CSUM | 1ull << F_MAC | 1ull << F_HOST_TSO4 |
			       1ull << F_HOST_TSO6 | 1ull << F_HOST_ECN | 1ull << F_MRG_RXBUF |
			       1ull << F_STATUS | 1ull << F_CTRL_VQ | 1ull << F_CTRL_RX |
			       1ull << F_CTRL_RX_EXTRA | 1ull << F_CTRL_MAC_ADDR;
	if (n->vnet_be)
		ops->device_features |= 1ull << F_GUEST_CSUM | 1ull << F_GUEST_TSO4 |
					1ull << F_GUEST_TSO6 | 1ull << F_GUEST_ECN;
	ops->set_features = vnet_set_features;
	ops->queue_notify = vnet_notify;
	ops->driver_ok = vnet_driver_ok;
	ops->reset = vnet_reset;
	ops->destroy = vnet_destroy;
	struct kl_virtio_pci_info info = {
		.name = tname, .device_id = VIRTIO_ID_NET, .class_code = 0x020000,
		.num_queues = 3, .queue_size = QUEUE_SIZE, .config_len = CONFIG_LEN,
		.slot = slot ? (int)slot : -1,
	};
	n->vd = kl_virtio_create(vm, t, &info, ops, n, err);
	if (!n->vd) {
		kl_netdev_detach(n->nd);
		g_free(n->txbuf);
		g_free(n->rxbuf);
		g_free(ops);
		g_free(n);
		return -1;
	}
	uint8_t *c = n->vd->config;
	memcpy(c, n->mac, 6);
	put_le16(c + 6, 1);            /* VIRTIO_NET_S_LINK_UP */
	put_le16(c + 8, 1);            /* max_virtqueue_pairs */
	put_le16(c + 10, 1500);        /* mtu (F_MTU not offered) */
	kl_vmstate_register(vm, n->vd->inst, &vnet_vmstate_ops, n);
	kl_netdev_vmstate_register(vm, n->nd);
	return 0;
}

KL_VIRTIO_DEVICE_TYPES(virtio_net, "virtio-net", "virtio network device (netdev=ID, mac=MAC, addr=SLOT on PCI)",
		       vnet_create, true /* PCI hot-plug: docs/hotplug.md */)
