/* virtio-blk: -device virtio-blk-pci,drive=ID[,num-queues=N][,serial=S][,addr=SLOT]
 * and -device virtio-blk-device,... (virtio-mmio, -M microvm)
 *
 * Requests: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES through the block
 * layer (kl_blk_submit); completions run on the main loop, write the status
 * byte and put the chain on the used ring.  A request without a 16-byte
 * header or a status byte is a driver bug: the device is marked NEEDS_RESET
 * (like QEMU).  Bad sector ranges and host I/O errors give VIRTIO_BLK_S_IOERR,
 * unknown types VIRTIO_BLK_S_UNSUPP. */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "kvmlite/block.h"
#include "kvmlite/device.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define VIRTIO_ID_BLOCK 2

#define F_SIZE_MAX 1
#define F_SEG_MAX 2
#define F_RO 5
#define F_BLK_SIZE 6
#define F_FLUSH 9
#define F_MQ 12
#define F_DISCARD 13
#define F_WRITE_ZEROES 14

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13

#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

#define SECTOR 512ULL
#define QUEUE_SIZE 256
#define SEG_MAX (QUEUE_SIZE - 2)
#define SIZE_MAX_SEG (1u << 20)
#define MAX_DISCARD_SECTORS 0x3fffffu
#define ID_BYTES 20

/* config space offsets */
#define C_CAPACITY 0
#define C_SIZE_MAX 8
#define C_SEG_MAX 12
#define C_BLK_SIZE 20
#define C_NUM_QUEUES 34
#define C_MAX_DISCARD_SECTORS 36
#define C_MAX_DISCARD_SEG 40
#define C_DISCARD_ALIGN 44
#define C_MAX_WZ_SECTORS 48
#define C_MAX_WZ_SEG 52
#define C_WZ_MAY_UNMAP 56
#define CONFIG_LEN 60

struct vblk {
	struct kl_virtio_dev *vd;
	struct kl_blockdev *bd;
	char serial[ID_BYTES + 1];
	unsigned nqueues;
	bool ro;
	uint64_t inflight;
};

struct vblk_req {
	struct vblk *b;
	unsigned q;
	struct kl_vq_elem *elem;
	uint8_t *status;     /* last device-writable byte (guest RAM) */
	uint32_t written;    /* bytes written to device-writable buffers on success */
	uint64_t expect;     /* bytes the block layer must report */
	unsigned niov;
	struct iovec iov[];
};

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = v >> (8 * i);
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static bool elem_live(struct vblk_req *r)
{
	struct kl_virtq *vq = &r->b->vd->vqs[r->q];
	return r->elem->gen == vq->gen && !r->b->vd->broken;
}

static void req_finish(struct vblk_req *r, uint8_t status)
{
	struct vblk *b = r->b;
	uint32_t len = status == S_OK ? r->written : 1;
	/* after a device reset the buffers belong to the driver again */
	if (elem_live(r))
		*r->status = status;
	kl_virtio_complete(b->vd, r->q, r->elem, len);
	b->inflight--;
	g_free(r);
}

static void req_done(void *opaque, long ret)
{
	struct vblk_req *r = opaque;
	req_finish(r, ret >= 0 && (uint64_t)ret == r->expect ? S_OK : S_IOERR);
}

static bool range_ok(struct vblk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t size = kl_blockdev_size(b->bd);
	if (sector > size / SECTOR)
		return false;
	return bytes <= size - sector * SECTOR;
}

static void submit(struct vblk_req *r, enum kl_blk_op op, uint64_t off, uint64_t len)
{
	int ret = kl_blk_submit(r->b->bd, op, off, r->iov, r->niov, len, req_done, r);
	if (ret < 0)
		req_finish(r, S_IOERR);
}

/* DISCARD / WRITE_ZEROES: one segment {le64 sector, le32 num, le32 flags} */
static void handle_range(struct vblk_req *r, struct kl_vq_elem *e, uint32_t type)
{
	struct vblk *b = r->b;
	uint8_t seg[16];
	uint64_t dlen = e->out_len - 16;
	if (b->ro) {
		req_finish(r, S_IOERR);
		return;
	}
	if (dlen != 16 || kl_iov_to_buf(e->iov, e->out_num, 16, seg, 16) != 16) {
		/* we advertise max_*_seg = 1 */
		req_finish(r, S_UNSUPP);
		return;
	}
	uint64_t sector = get_le(seg, 8);
	uint32_t num = get_le(seg + 8, 4), flags = get_le(seg + 12, 4);
	if ((flags & ~1u) || (type == T_DISCARD && (flags & 1))) {
		req_finish(r, S_UNSUPP);
		return;
	}
	if (num > MAX_DISCARD_SECTORS || !range_ok(b, sector, (uint64_t)num * SECTOR)) {
		req_finish(r, S_IOERR);
		return;
	}
	r->niov = 0;
	r->expect = 0;
	int ret = kl_blk_submit(b->bd, type == T_DISCARD ? KL_BLK_DISCARD : KL_BLK_WRITE_ZEROES,
				sector * SECTOR, NULL, 0, (uint64_t)num * SECTOR, req_done, r);
	if (ret < 0)
		req_finish(r, S_IOERR);
}

/* returns false when the device had to be marked broken */
static bool handle_req(struct vblk *b, unsigned q, struct kl_vq_elem *e)
{
	struct kl_virtio_dev *vd = b->vd;
	uint8_t hdr[16];
	if (e->out_len < 16 || e->in_len < 1 || e->in_num == 0 ||
	    kl_iov_to_buf(e->iov, e->out_num, 0, hdr, 16) != 16) {
		kl_virtio_set_broken(vd, "request without header or status byte");
		kl_virtio_discard(vd, e);
		return false;
	}
	unsigned n = e->out_num + e->in_num;
	struct vblk_req *r = g_malloc0(sizeof(*r) + n * sizeof(struct iovec));
	r->b = b;
	r->q = q;
	r->elem = e;
	struct iovec *last = &e->iov[n - 1];
	r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	r->written = 1;
	b->inflight++;

	uint32_t type = get_le(hdr, 4);
	uint64_t sector = get_le(hdr + 8, 8);
	struct iovec *in = e->iov + e->out_num;
	uint64_t in_data = e->in_len - 1;
	uint64_t out_data = e->out_len - 16;
	int cnt;

	switch (type) {
	case T_IN:
		if (in_data % SECTOR || !range_ok(b, sector, in_data)) {
			req_finish(r, S_IOERR);
			break;
		}
		cnt = kl_iov_slice(in, e->in_num, 0, in_data, r->iov, n);
		if (cnt < 0) {
			req_finish(r, S_IOERR);
			break;
		}
		r->niov = cnt;
		r->expect = in_data;
		r->written = in_data + 1;
		submit(r, KL_BLK_READ, sector * SECTOR, in_data);
		break;
	case T_OUT:
		if (b->ro || out_data % SECTOR || !range_ok(b, sector, out_data)) {
			req_finish(r, S_IOERR);
			break;
		}
		cnt = kl_iov_slice(e->iov, e->out_num, 16, out_data, r->iov, n);
		if (cnt < 0) {
			req_finish(r, S_IOERR);
			break;
		}
		r->niov = cnt;
		r->expect = out_data;
		submit(r, KL_BLK_WRITE, sector * SECTOR, out_data);
		break;
	case T_FLUSH:
		r->expect = 0;
		{
			int ret = kl_blk_submit(b->bd, KL_BLK_FLUSH, 0, NULL, 0, 0, req_done, r);
			if (ret < 0)
				req_finish(r, S_IOERR);
		}
		break;
	case T_GET_ID: {
		uint8_t id[ID_BYTES] = { 0 };
		memcpy(id, b->serial, strlen(b->serial));
		uint64_t nb = in_data < ID_BYTES ? in_data : ID_BYTES;
		kl_iov_from_buf(in, e->in_num, 0, id, nb);
		r->written = nb + 1;
		req_finish(r, S_OK);
		break;
	}
	case T_DISCARD:
	case T_WRITE_ZEROES:
		handle_range(r, e, type);
		break;
	default:
		req_finish(r, S_UNSUPP);
		break;
	}
	return true;
}

static void vblk_notify(struct kl_virtio_dev *vd, unsigned q)
{
	struct vblk *b = vd->opaque;
	struct kl_virtq *vq = &vd->vqs[q];
	for (;;) {
		kl_virtq_set_notification(vq, false);
		struct kl_vq_elem *e;
		while ((e = kl_virtio_pop(vd, q)))
			if (!handle_req(b, q, e))
				return;
		if (!kl_virtio_ready(vd) || !kl_virtq_set_notification(vq, true))
			break;
	}
}

static void vblk_reset(struct kl_virtio_dev *vd)
{
	/* in-flight requests complete later; their elements belong to an old
	 * queue generation and are dropped (status not written) */
	(void)vd;
}

/* ---- VM state: section "virtio-blk/INST" (kvmlite/vmstate.h; INST: the
 * PCI address or the virtio-mmio base) ----
 * The transport and the queues are in "virtio-pci/..." (virtio_state.c) or
 * "virtio-mmio/..." (virtio_mmio.c).
 * Quiesce, as QEMU's vm_stop: drain the backend (requests held by I/O
 * limits are released), so every request taken from the ring has completed
 * and its used entry and status byte are in guest RAM before anything is
 * saved: nothing acknowledged is lost, nothing is done twice.  The section
 * then holds what the destination must agree on (the disk is shared
 * storage, the same image): v1 = u64 capacity (sectors), u32 num-queues,
 * u8 read-only, str serial.  The config space is derived from these. */
#define VBLK_STATE_VERSION 1

static int vblk_quiesce(void *opaque, char **err)
{
	struct vblk *b = opaque;
	kl_blockdev_drain(b->bd);
	if (b->inflight) {
		*err = g_strdup_printf("virtio-blk: %" G_GUINT64_FORMAT " requests still in flight "
				       "after draining drive '%s'", (guint64)b->inflight,
				       kl_blockdev_id(b->bd));
		return -1;
	}
	return 0;
}

static int vblk_save(void *opaque, struct kl_vms_out *out, char **err)
{
	struct vblk *b = opaque;
	if (b->inflight) {
		*err = g_strdup_printf("virtio-blk: %" G_GUINT64_FORMAT " requests in flight",
				       (guint64)b->inflight);
		return -1;
	}
	kl_vms_put_u64(out, get_le(b->vd->config + C_CAPACITY, 8));
	kl_vms_put_u32(out, b->nqueues);
	kl_vms_put_u8(out, b->ro);
	kl_vms_put_str(out, b->serial);
	return 0;
}

static int vblk_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	struct vblk *b = opaque;
	uint64_t cap = kl_vms_get_u64(in);
	uint32_t nq = kl_vms_get_u32(in);
	uint8_t ro = kl_vms_get_u8(in);
	char *serial = kl_vms_get_str(in, ID_BYTES);
	int ret = -1;
	if (kl_vms_failed(in))
		goto out;
	uint64_t here = get_le(b->vd->config + C_CAPACITY, 8);
	if (cap != here)
		*err = g_strdup_printf("capacity differs: stream %" G_GUINT64_FORMAT " sectors, here %"
				       G_GUINT64_FORMAT, (guint64)cap, (guint64)here);
	else if (nq != b->nqueues)
		*err = g_strdup_printf("num-queues differs: stream %u, here %u", nq, b->nqueues);
	else if (ro > 1 || ro != b->ro)
		*err = g_strdup_printf("read-only differs: stream %u, here %u", ro, b->ro);
	else if (g_strcmp0(serial ? serial : "", b->serial) != 0)
		*err = g_strdup_printf("serial differs: stream '%s', here '%s'", serial ? serial : "",
				       b->serial);
	else
		ret = 0;
out:
	g_free(serial);
	return ret;
}

static const struct kl_vmstate_ops vblk_vmstate_ops = {
	.kind = "virtio-blk",
	.version = VBLK_STATE_VERSION,
	.min_version = VBLK_STATE_VERSION,
	.quiesce = vblk_quiesce,
	.save = vblk_save,
	.load = vblk_load,
};

static void vblk_destroy(struct kl_virtio_dev *vd)
{
	struct vblk *b = vd->opaque;
	kl_vmstate_unregister(vd->vm, &vblk_vmstate_ops, b);
	/* Requests in flight complete into guest RAM and the device's queues:
	 * finish them while both still exist (guest RAM is unmapped after the
	 * devices), then let go of the backend. */
	kl_blockdev_drain(b->bd);
	kl_blockdev_set_attached(b->bd, NULL);
	/* an anonymous backend over a -blockdev node (QEMU's BlockBackend of
	 * the device) goes with the device: the node can be attached again */
	if (!*kl_blockdev_id(b->bd))
		kl_blockdev_close(b->bd);
	g_free((void *)vd->ops);
	g_free(b);
}

static uint64_t vblk_features(struct vblk *b)
{
	uint64_t f = 1ULL << F_SIZE_MAX | 1ULL << F_SEG_MAX | 1ULL << F_BLK_SIZE |
		     1ULL << F_FLUSH | 1ULL << F_DISCARD | 1ULL << F_WRITE_ZEROES;
	if (b->ro)
		f |= 1ULL << F_RO;
	if (b->nqueues > 1)
		f |= 1ULL << F_MQ;
	return f;
}

static int vblk_create(struct kl_vm *vm, struct kl_opts *opts, enum kl_virtio_transport_kind t,
		       char **err)
{
	const char *tname = kl_virtio_type_name("virtio-blk", t);
	const char *drive = kl_opts_get(opts, "drive");
	const char *serial = kl_opts_get(opts, "serial");
	uint64_t nq, slot = 0;
	if (kl_opts_get_u64(opts, "num-queues", 1, &nq, err) < 0 ||
	    (t == KL_VIRTIO_TRANSPORT_PCI && kl_opts_get_u64(opts, "addr", 0, &slot, err) < 0))
		return -1;
	if (!drive) {
		*err = g_strdup_printf("%s: drive= is required", tname);
		return -1;
	}
	/* write-cache: the device always offers VIRTIO_BLK_F_FLUSH over the
	 * backend's cache mode (a write-back cache, QEMU's write-cache=on);
	 * off (write-through toward the guest) is not implemented */
	const char *wc = kl_opts_get(opts, "write-cache");
	if (wc && strcmp(wc, "on") && strcmp(wc, "auto")) {
		*err = g_strdup_printf("%s: write-cache=%s is not supported (kvmlite's virtio-blk "
				       "has a write-back cache: on or auto)", tname, wc);
		return -1;
	}
	struct kl_blockdev *bd = kl_blockdev_find(drive);
	if (!bd && kl_bnode_find(drive)) { /* -blockdev node-name=X */
		char *e = NULL;
		bd = kl_blockdev_for_device(drive, &e);
		if (!bd) {
			*err = g_strdup_printf("%s: %s", tname, e);
			g_free(e);
			return -1;
		}
	}
	if (!bd) {
		*err = g_strdup_printf("%s: drive '%s' not found", tname, drive);
		return -1;
	}
	if (kl_blockdev_attached(bd)) {
		*err = g_strdup_printf("%s: drive '%s' is already in use by %s", tname, drive,
				       kl_blockdev_attached(bd));
		return -1;
	}
	if (nq < 1 || nq > KL_VPCI_MAX_QUEUES) {
		*err = g_strdup_printf("%s: num-queues=%" G_GUINT64_FORMAT
				       " is out of range (1..%d)", tname, (guint64)nq, KL_VPCI_MAX_QUEUES);
		return -1;
	}
	if (serial && strlen(serial) > ID_BYTES) {
		*err = g_strdup_printf("%s: serial '%s' is longer than %d bytes", tname, serial,
				       ID_BYTES);
		return -1;
	}
	if (slot >= KL_PCI_NSLOTS) {
		*err = g_strdup_printf("%s: addr=%" G_GUINT64_FORMAT " is not a PCI slot (1..31)",
				       tname, (guint64)slot);
		return -1;
	}
	struct vblk *b = g_new0(struct vblk, 1);
	b->bd = bd;
	b->nqueues = nq;
	b->ro = kl_blockdev_readonly(bd);
	if (serial)
		g_strlcpy(b->serial, serial, sizeof(b->serial));

	struct kl_virtio_ops *ops = g_new0(struct kl_virtio_ops, 1);
	ops->device_features = vblk_features(b);
	ops->queue_notify = vblk_notify;
	ops->reset = vblk_reset;
	ops->destroy = vblk_destroy;
	struct kl_virtio_pci_info info = {
		.name = tname, .device_id = VIRTIO_ID_BLOCK, .class_code = 0x010000,
		.num_queues = nq, .queue_size = QUEUE_SIZE, .config_len = CONFIG_LEN,
		.slot = slot ? (int)slot : -1,
	};
	b->vd = kl_virtio_create(vm, t, &info, ops, b, err);
	if (!b->vd) {
		g_free(ops);
		g_free(b);
		return -1;
	}
	uint8_t *c = b->vd->config;
	put_le(c + C_CAPACITY, kl_blockdev_size(bd) / SECTOR, 8);
	put_le(c + C_SIZE_MAX, SIZE_MAX_SEG, 4);
	put_le(c + C_SEG_MAX, SEG_MAX, 4);
	put_le(c + C_BLK_SIZE, kl_blockdev_block_size(bd), 4);
	put_le(c + C_NUM_QUEUES, nq, 2);
	put_le(c + C_MAX_DISCARD_SECTORS, MAX_DISCARD_SECTORS, 4);
	put_le(c + C_MAX_DISCARD_SEG, 1, 4);
	put_le(c + C_DISCARD_ALIGN, kl_blockdev_block_size(bd) / SECTOR ? kl_blockdev_block_size(bd) / SECTOR : 1, 4);
	put_le(c + C_MAX_WZ_SECTORS, MAX_DISCARD_SECTORS, 4);
	put_le(c + C_MAX_WZ_SEG, 1, 4);
	c[C_WZ_MAY_UNMAP] = 0;
	kl_vmstate_register(vm, b->vd->inst, &vblk_vmstate_ops, b);
	/* query-block's qdev: QEMU's path of the virtio-blk child of the PCI
	 * proxy; virtio-blk-device is the virtio-blk device itself */
	if (kl_device_path() && t == KL_VIRTIO_TRANSPORT_PCI) {
		char *q = g_strdup_printf("%s/virtio-backend", kl_device_path());
		kl_blockdev_set_attached(bd, q);
		g_free(q);
	} else {
		kl_blockdev_set_attached(bd, kl_device_path() ? kl_device_path() : tname);
	}
	return 0;
}

KL_VIRTIO_DEVICE_TYPES(virtio_blk, "virtio-blk",
		       "virtio block device (drive=ID, num-queues=N, serial=S, addr=SLOT on PCI)",
		       vblk_create, true /* PCI hot-plug: docs/hotplug.md */)
