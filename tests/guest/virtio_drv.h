/* Minimal freestanding virtio 1.x driver for probe tests, on the modern PCI
 * transport (device discovery through the vendor capabilities) or on
 * virtio-mmio version 2 (vdev_find_mmio: the transports the command line
 * announces with virtio_mmio.device=SIZE@BASE:IRQ, as Linux finds them):
 * status/feature handshake, split virtqueues polled through the used ring,
 * optional MSI-X (PCI).
 * Used by t_virtio_blk.c and the virtio-net probe tests.
 *
 *   struct vdev d; struct vq q;
 *   if (vdev_find(2, 0, &d) < 0) ...             virtio device id 2 = block
 *   if (vdev_negotiate(&d, wanted, &got) < 0) ...  reset/ACK/DRIVER/FEATURES_OK
 *   vq_setup(&d, &q, 0, 16);
 *   vdev_driver_ok(&d);
 *   struct vbuf b[3] = {{hdr, 16, false}, {data, 512, true}, {st, 1, true}};
 *   int head = vq_add(&q, b, 3); vq_kick(&q);
 *   vq_wait(&q, &len, 1000000)   -> head of the completed chain, or -1
 */
#ifndef PROBE_VIRTIO_DRV_H
#define PROBE_VIRTIO_DRV_H

#include "probe.h"

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_S_ACK 1
#define VIRTIO_S_DRIVER 2
#define VIRTIO_S_DRIVER_OK 4
#define VIRTIO_S_FEATURES_OK 8
#define VIRTIO_S_NEEDS_RESET 64
#define VIRTIO_S_FAILED 128

#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4

#define VDRV_MAX_QUEUE 256

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vdev {
	uint16_t bdf;
	uint64_t common, notify, isr, devcfg;  /* MMIO addresses */
	uint32_t notify_mult;
	uint32_t devcfg_len;
	uint64_t features;                     /* offered by the device */
	uint64_t msix_table;                   /* 0: no MSI-X */
	unsigned msix_n;
	uint64_t mmio;                         /* virtio-mmio base, 0: PCI */
	unsigned mmio_irq;                     /* its interrupt (ISA IRQ / GSI) */
};

struct vq {
	struct vdev *d;
	unsigned idx, size;
	struct vring_desc *desc;
	volatile uint16_t *avail;   /* flags, idx, ring[size], used_event */
	volatile uint16_t *used;    /* flags, idx, ring of {u32 id, u32 len}, avail_event */
	uint16_t avail_idx, last_used;
	uint16_t next_desc;         /* next free descriptor (round robin) */
	uint64_t notify_addr;
	bool notify32;              /* virtio-mmio QueueNotify: 32-bit write of idx */
};

struct vbuf {
	uint64_t addr;
	uint32_t len;
	bool write;                 /* device-writable */
};

/* common config register offsets */
#define VC_DFSELECT 0x00
#define VC_DF 0x04
#define VC_GFSELECT 0x08
#define VC_GF 0x0c
#define VC_MSIX_CONFIG 0x10
#define VC_NUM_QUEUES 0x12
#define VC_STATUS 0x14
#define VC_CFG_GEN 0x15
#define VC_Q_SELECT 0x16
#define VC_Q_SIZE 0x18
#define VC_Q_MSIX 0x1a
#define VC_Q_ENABLE 0x1c
#define VC_Q_NOTIFY_OFF 0x1e
#define VC_Q_DESC 0x20
#define VC_Q_AVAIL 0x28
#define VC_Q_USED 0x30

/* Find the instance-th (0-based) modern virtio device of virtio type id on
 * bus 0 and map its capabilities; enables memory decoding and bus mastering.
 * 0 or -1 (with probe_fail). */
int vdev_find(uint16_t device_id, unsigned instance, struct vdev *d);
/* The instance-th virtio-mmio transport with virtio type id among the
 * virtio_mmio.device= entries of the command line (magic, version 2 and
 * device id checked).  0 or -1 (with probe_fail). */
int vdev_find_mmio(uint16_t device_id, unsigned instance, struct vdev *d);
/* The transport the command line names: `transport=mmio` -> vdev_find_mmio
 * (-M microvm, virtio-X-device), otherwise vdev_find (PCI). */
bool vdev_on_mmio(void);
int vdev_find_any(uint16_t device_id, unsigned instance, struct vdev *d);
/* virtio-mmio register offsets */
#define VM_MAGIC 0x000
#define VM_VERSION 0x004
#define VM_DEVICE_ID 0x008
#define VM_VENDOR_ID 0x00c
#define VM_DF 0x010
#define VM_DFSEL 0x014
#define VM_GF 0x020
#define VM_GFSEL 0x024
#define VM_Q_SEL 0x030
#define VM_Q_NUM_MAX 0x034
#define VM_Q_NUM 0x038
#define VM_Q_READY 0x044
#define VM_Q_NOTIFY 0x050
#define VM_INT_STATUS 0x060
#define VM_INT_ACK 0x064
#define VM_STATUS 0x070
#define VM_Q_DESC 0x080
#define VM_Q_AVAIL 0x090
#define VM_Q_USED 0x0a0
#define VM_CFG_GEN 0x0fc
#define VM_CONFIG 0x100
uint8_t vdev_status(struct vdev *d);
void vdev_set_status(struct vdev *d, uint8_t s);
/* Write 0 and wait (bounded) until status reads 0.  0 or -1. */
int vdev_reset(struct vdev *d);
/* reset, ACK, DRIVER, write (offered & want) | VERSION_1, FEATURES_OK and
 * check it stuck.  *got = accepted features.  0 or -1 (probe_fail). */
int vdev_negotiate(struct vdev *d, uint64_t want, uint64_t *got);
/* Allocate and enable queue idx with size entries (<= device max). */
int vq_setup(struct vdev *d, struct vq *q, unsigned idx, unsigned size);
void vdev_driver_ok(struct vdev *d);
uint16_t vdev_num_queues(struct vdev *d);
/* Device-specific config space accessors. */
uint8_t vdev_cfg8(struct vdev *d, unsigned off);
uint16_t vdev_cfg16(struct vdev *d, unsigned off);
uint32_t vdev_cfg32(struct vdev *d, unsigned off);
uint64_t vdev_cfg64(struct vdev *d, unsigned off);

/* Chain bufs (device-readable ones first) into free descriptors and make the
 * chain available; returns the head.  Does not notify. */
int vq_add(struct vq *q, const struct vbuf *bufs, unsigned n);
/* Make a hand-built chain starting at descriptor head available (for
 * malformed-chain tests; fill q->desc[] yourself). */
void vq_publish(struct vq *q, uint16_t head);
void vq_kick(struct vq *q);
/* Poll the used ring for the next completion, up to timeout_us.  Returns
 * the chain head and *len, or -1 on timeout. */
int vq_wait(struct vq *q, uint32_t *len, uint64_t timeout_us);
/* Completions available right now (without waiting). */
bool vq_has_used(struct vq *q);

/* MSI-X: enable the function, program vector v to LAPIC 0 with the given
 * IDT vector, unmasked.  0 or -1. */
int vdev_msix_enable(struct vdev *d);
int vdev_msix_vector(struct vdev *d, unsigned v, uint8_t idt_vector);
/* Route queue q / config changes to MSI-X vector v (0xffff: none); returns
 * what the device read back. */
uint16_t vdev_set_queue_vector(struct vdev *d, unsigned q, uint16_t v);
uint16_t vdev_set_config_vector(struct vdev *d, uint16_t v);

#endif
