/* virtio 1.x: split virtqueue core (src/virtio/virtqueue.c), the
 * transport-neutral device core (src/virtio/virtio.c: features, status,
 * queues, config space, notifications, in-flight accounting, and the VM
 * state of that part in src/virtio/virtio_state.c), and two transports:
 * modern PCI (src/virtio/virtio_pci.c) and virtio-mmio version 2
 * (src/virtio/virtio_mmio.c).
 *
 * A device file (blk.c, net.c) fills a struct kl_virtio_ops and calls
 * kl_virtio_create() (or kl_virtio_pci_create(), the PCI-only form).  It
 * never looks at the transport: it uses kl_virtio_pop/complete/notify,
 * vd->config, and vd->inst (the instance name of its VM state section).
 * The core handles feature negotiation (VIRTIO_F_VERSION_1 is mandatory;
 * the core adds VERSION_1, EVENT_IDX, INDIRECT_DESC), device status, queue
 * setup, notifications (ioeventfd watched on the main loop, or the plain
 * MMIO write) and raises interrupts through the transport's ops table
 * (PCI: MSI-X irqfd, or INTx + ISR; MMIO: one level-triggered GSI per
 * device + InterruptStatus).
 *
 * Offering a -device variant of a device ("virtio-X-pci" and
 * "virtio-X-device"): write the create function as
 *     static int x_create(struct kl_vm *vm, struct kl_opts *o,
 *                         enum kl_virtio_transport_kind t, char **err)
 * which fills struct kl_virtio_pci_info with .name = kl_virtio_type_name(
 * "virtio-x", t) (slot/class_code are used only by PCI: read "addr" only
 * when t == KL_VIRTIO_TRANSPORT_PCI; the macro below refuses addr= on
 * virtio-x-device) and calls kl_virtio_create(vm, t, &info, ...);
 * then register both types with
 *     KL_VIRTIO_DEVICE_TYPES(virtio_x, "virtio-x", "help text", x_create, hotpluggable)
 * (kvmlite/device.h must be included).  virtio-X-device needs a machine
 * with virtio-mmio slots (-M microvm); virtio-X-pci needs a PCI host.
 *
 * PCI layout: vendor 0x1af4, device 0x1040 + device_id, revision 1,
 * subsystem 0x1af4:device_id.
 *   BAR1  mem32 4 KiB:  MSI-X table at 0x000, PBA at 0x800
 *   BAR4  mem64 16 KiB: common cfg 0x0000, ISR 0x1000, device cfg 0x2000,
 *                       notify 0x3000 (notify_off_multiplier 4, queue i at
 *                       0x3000 + 4*i)
 *   caps: MSI-X, virtio common/notify/isr/device/pci-cfg vendor caps.
 *
 * MMIO layout (virtio 1.x 4.2.2, version 2; 512 bytes per transport as
 * QEMU's microvm places them): registers 0x000..0x0ff are 32-bit accesses
 * only (any other size reads 0 / is dropped), device config from 0x100 in
 * 1/2/4-byte accesses.  Vendor id 0x554d4551 ("QEMU"), as QEMU.  QueueNum
 * writes of 0 or above QueueNumMax are ignored; QueueReady=1 with a ring
 * outside guest RAM marks the device NEEDS_RESET; QueueReady=0 resets the
 * queue.  No shared memory regions (SHMLen reads all-ones).
 *
 * Hostile guests: the descriptor walker bounds every walk (chain length <=
 * queue size, indirect table length multiple of 16 and <= KL_VIRTQ_MAX_SIZE
 * entries (any alignment: Linux kmallocs them 8-byte aligned), no nested
 * indirect, no loops), checks that every buffer lies in
 * guest RAM (kl_gpa_to_hva), that device-writable descriptors follow all
 * device-readable ones, that the total length fits in 32 bits, and that
 * avail->idx never runs more than the queue size ahead.  Any violation marks
 * the device broken: status |= DEVICE_NEEDS_RESET (64), a config interrupt is
 * raised, and no queue is processed until the driver resets the device.
 *
 * Threads: everything runs with the BQL held (vCPU device handlers or main
 * loop).  Completions (kl_virtq_push + kl_virtio_notify) happen on the main
 * loop.
 */
#ifndef KVMLITE_VIRTIO_H
#define KVMLITE_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kvmlite/iov.h"
#include "kvmlite/mem.h"

struct kl_vm;
struct kl_pci_dev;
struct kl_pci_platform_ops;
struct kl_virtio_dev;
struct kl_virtio_notify_ctx;

/* device status */
#define KL_VIRTIO_S_ACKNOWLEDGE 1
#define KL_VIRTIO_S_DRIVER 2
#define KL_VIRTIO_S_DRIVER_OK 4
#define KL_VIRTIO_S_FEATURES_OK 8
#define KL_VIRTIO_S_NEEDS_RESET 64
#define KL_VIRTIO_S_FAILED 128

/* transport / ring feature bits */
#define KL_VIRTIO_F_INDIRECT_DESC 28
#define KL_VIRTIO_F_EVENT_IDX 29
#define KL_VIRTIO_F_VERSION_1 32
#define KL_VIRTIO_F_ACCESS_PLATFORM 33

#define KL_VIRTIO_NO_VECTOR 0xffff
#define KL_VIRTQ_MAX_SIZE 1024

/* split ring layout */
#define KL_VRING_DESC_F_NEXT 1
#define KL_VRING_DESC_F_WRITE 2
#define KL_VRING_DESC_F_INDIRECT 4
#define KL_VRING_AVAIL_F_NO_INTERRUPT 1
#define KL_VRING_USED_F_NO_NOTIFY 1

struct kl_vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* virtio-pci capability cfg_type */
#define KL_VIRTIO_PCI_CAP_COMMON_CFG 1
#define KL_VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define KL_VIRTIO_PCI_CAP_ISR_CFG 3
#define KL_VIRTIO_PCI_CAP_DEVICE_CFG 4
#define KL_VIRTIO_PCI_CAP_PCI_CFG 5

/* common configuration structure offsets */
#define KL_VPCI_DFSELECT 0x00     /* le32 device_feature_select */
#define KL_VPCI_DF 0x04           /* le32 device_feature (ro) */
#define KL_VPCI_GFSELECT 0x08     /* le32 driver_feature_select */
#define KL_VPCI_GF 0x0c           /* le32 driver_feature */
#define KL_VPCI_MSIX_CONFIG 0x10  /* le16 */
#define KL_VPCI_NUM_QUEUES 0x12   /* le16 (ro) */
#define KL_VPCI_STATUS 0x14       /* u8 */
#define KL_VPCI_CFG_GENERATION 0x15 /* u8 (ro) */
#define KL_VPCI_Q_SELECT 0x16     /* le16 */
#define KL_VPCI_Q_SIZE 0x18       /* le16 */
#define KL_VPCI_Q_MSIX_VECTOR 0x1a /* le16 */
#define KL_VPCI_Q_ENABLE 0x1c     /* le16 */
#define KL_VPCI_Q_NOTIFY_OFF 0x1e /* le16 (ro) */
#define KL_VPCI_Q_DESC 0x20       /* le64 */
#define KL_VPCI_Q_AVAIL 0x28      /* le64 */
#define KL_VPCI_Q_USED 0x30       /* le64 */
#define KL_VPCI_COMMON_LEN 0x38

#define KL_VPCI_BAR 4
#define KL_VPCI_MSIX_BAR 1
#define KL_VPCI_COMMON_OFF 0x0000
#define KL_VPCI_ISR_OFF 0x1000
#define KL_VPCI_DEVCFG_OFF 0x2000
#define KL_VPCI_NOTIFY_OFF 0x3000
#define KL_VPCI_NOTIFY_MULT 4
#define KL_VPCI_BAR_SIZE 0x4000
#define KL_VPCI_MAX_QUEUES 63      /* + 1 config vector = 64 MSI-X vectors */

/* ---------------- virtqueue core (no PCI, no KVM) ---------------- */

/* One popped request.  iov[0..out_num) are device-readable buffers,
 * iov[out_num..out_num+in_num) device-writable, all pointing into guest RAM. */
struct kl_vq_elem {
	uint16_t head;
	unsigned out_num, in_num;
	uint64_t out_len, in_len;   /* byte totals */
	uint64_t gen;               /* queue generation at pop time */
	void *priv;                 /* for the device */
	struct iovec iov[];         /* out_num + in_num entries */
};

struct kl_virtq {
	const struct kl_guest_mem *mem;
	uint16_t index;
	uint16_t max_size;          /* advertised queue_size at reset */
	uint16_t size;              /* driver-chosen, power of two */
	bool enabled;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t msix_vector;
	bool event_idx, indirect;   /* negotiated */

	/* run state (valid while enabled) */
	struct kl_vring_desc *desc; /* host pointers into guest RAM, checked */
	uint16_t *avail;            /* flags, idx, ring[size], used_event */
	uint16_t *used;             /* flags, idx, then ring of {le32 id, le32 len} */
	uint16_t last_avail;        /* next avail entry to consume */
	uint16_t used_idx;          /* our shadow of used->idx */
	uint16_t signalled_used;
	bool signalled_used_valid;
	uint64_t gen;               /* bumped by kl_virtq_reset */
	unsigned inflight;          /* popped, not yet pushed */
};

/* Why the walker rejected the ring (negative returns of kl_virtq_pop). */
enum kl_vq_err {
	KL_VQ_OK = 0,
	KL_VQ_ERR_RING = -1,        /* ring addresses not in RAM / misaligned */
	KL_VQ_ERR_AVAIL_IDX = -2,   /* avail idx ran > size ahead */
	KL_VQ_ERR_HEAD = -3,        /* head index >= size */
	KL_VQ_ERR_LOOP = -4,        /* chain longer than allowed (loop) */
	KL_VQ_ERR_NEXT = -5,        /* next index >= size */
	KL_VQ_ERR_INDIRECT = -6,    /* bad indirect table (len, align, nested, RAM) */
	KL_VQ_ERR_BUF = -7,         /* buffer outside guest RAM */
	KL_VQ_ERR_ORDER = -8,       /* readable descriptor after a writable one */
	KL_VQ_ERR_LEN = -9,         /* total length overflows 32 bits */
	KL_VQ_ERR_INDIRECT_FEAT = -10, /* INDIRECT flag without the feature */
};
const char *kl_vq_strerror(int err);

void kl_virtq_init(struct kl_virtq *vq, const struct kl_guest_mem *mem, uint16_t index,
		   uint16_t max_size);
/* Back to the reset state (size = max_size, disabled, addresses 0,
 * vector NO_VECTOR); gen++ so completions of older elements are dropped. */
void kl_virtq_reset(struct kl_virtq *vq);
/* Validate and map the ring (size power of two <= max_size, desc 16-aligned,
 * avail 2-aligned, used 4-aligned, all in RAM) and mark it enabled.
 * 0 or KL_VQ_ERR_RING. */
int kl_virtq_enable(struct kl_virtq *vq);
/* Pop the next available chain: 1 with *out (g_free it), 0 when empty, or a
 * negative enum kl_vq_err (the ring is then unusable: NEEDS_RESET). */
int kl_virtq_pop(struct kl_virtq *vq, struct kl_vq_elem **out);
/* Put elem on the used ring with len bytes written; false (nothing written)
 * when elem belongs to an older generation or the queue is disabled.  Does not
 * free elem. */
bool kl_virtq_push(struct kl_virtq *vq, const struct kl_vq_elem *elem, uint32_t len);
/* After one or more pushes: does the driver want an interrupt?  (EVENT_IDX:
 * used_event crossed; else !AVAIL_F_NO_INTERRUPT.)  Updates the bookkeeping. */
bool kl_virtq_should_notify(struct kl_virtq *vq);
/* Enable/disable driver->device notifications (avail_event / USED_F_NO_NOTIFY).
 * Enabling returns true when buffers are already available (re-check). */
bool kl_virtq_set_notification(struct kl_virtq *vq, bool enable);
bool kl_virtq_has_avail(struct kl_virtq *vq);
/* VM state of one queue (kvmlite/vmstate.h): size, enable, ring addresses,
 * MSI-X vector, negotiated ring features, last_avail / used / signalled
 * indices.  The queue must have nothing in flight.  kl_virtq_load decodes
 * into *tmp (a copy of vq with the loaded fields, the ring mapped when
 * enabled) without touching vq, and fails the reader naming the field when
 * a value is impossible: an enabled queue whose size is 0, not a power of
 * two or above max_size, a ring misaligned or outside guest RAM,
 * last_avail_idx more than the size ahead of used idx.  The caller commits
 * with *vq = *tmp once every part of its section is valid. */
/* Give back the last n chains popped and not pushed (the next pops return
 * them again): for a device that holds buffers it has not used yet (RX)
 * when the VM state is saved.  The caller frees the elements through
 * kl_virtio_discard. */
void kl_virtq_unpop(struct kl_virtq *vq, unsigned n);
struct kl_vms_out;
struct kl_vms_in;
void kl_virtq_save(const struct kl_virtq *vq, struct kl_vms_out *out);
int kl_virtq_load(struct kl_virtq *tmp, const struct kl_virtq *vq, struct kl_vms_in *in);


/* ---------------- device model ---------------- */
struct kl_virtio_ops {
	/* Device feature bits (device-specific bits + e.g. MQ); the transport
	 * adds VERSION_1 | EVENT_IDX | INDIRECT_DESC. */
	uint64_t device_features;
	/* Accept the driver's features at FEATURES_OK; return false to refuse
	 * (FEATURES_OK then stays clear).  NULL: accept. */
	bool (*set_features)(struct kl_virtio_dev *vd, uint64_t features);
	/* Device config space: reads come from vd->config (config_len bytes,
	 * kept up to date by the device); writes call config_write (NULL:
	 * ignored) after storing nothing. */
	void (*config_write)(struct kl_virtio_dev *vd, unsigned off, const void *buf, unsigned len);
	/* Driver kicked queue q (main loop or vCPU thread, BQL held). */
	void (*queue_notify)(struct kl_virtio_dev *vd, unsigned q);
	/* DRIVER_OK was set (optional). */
	void (*driver_ok)(struct kl_virtio_dev *vd);
	/* Device reset (status 0 write, NEEDS_RESET recovery, VM reset): the
	 * queues are already reset (so pending completions will be dropped by
	 * kl_virtq_push); drop device-side queue state. */
	void (*reset)(struct kl_virtio_dev *vd);
	/* The device is being freed (kl_virtio_pci_destroy or PCI host
	 * teardown, after the block/net back-ends were drained): free
	 * vd->opaque and friends.  Not called when kl_virtio_pci_create fails. */
	void (*destroy)(struct kl_virtio_dev *vd);
};

struct kl_virtio_pci_info {
	const char *name;        /* "virtio-blk-pci" */
	uint16_t device_id;      /* virtio device id: 1 net, 2 blk ... */
	uint32_t class_code;     /* PCI class, e.g. 0x010000 (SCSI storage); PCI only */
	unsigned num_queues;     /* 1..KL_VPCI_MAX_QUEUES */
	uint16_t queue_size;     /* max queue size (power of two <= 1024) */
	unsigned config_len;     /* <= 0x1000 (MMIO: <= 0x100) */
	int slot;                /* -1: first free; PCI only */
};

enum kl_virtio_transport_kind {
	KL_VIRTIO_TRANSPORT_PCI,   /* "virtio-X-pci" */
	KL_VIRTIO_TRANSPORT_MMIO,  /* "virtio-X-device" */
};

/* What the core needs from a transport (PCI: virtio_pci.c, MMIO:
 * virtio_mmio.c). */
struct kl_virtio_transport {
	const char *name;        /* "virtio-pci", "virtio-mmio" */
	/* Interrupt for a queue (vector: the queue's MSI-X vector) or the
	 * config space (vector: config_vector); isr_bit: 1 queue, 2 config. */
	void (*raise)(struct kl_virtio_dev *vd, uint16_t vector, uint8_t isr_bit);
	/* The ISR was cleared (device reset): deassert the line. */
	void (*lower)(struct kl_virtio_dev *vd);
	/* May the device touch guest RAM now (PCI: COMMAND.MASTER)? NULL: yes. */
	bool (*dma_ok)(const struct kl_virtio_dev *vd);
};

/* Instance name of the device's VM state sections: "0000:00:SS.0" on PCI,
 * the transport's base address "0xfeb00000" on MMIO. */
#define KL_VIRTIO_INST_LEN 32

struct kl_virtio_dev {
	struct kl_vm *vm;
	const struct kl_guest_mem *mem;
	struct kl_pci_dev *pci;   /* PCI transport only */
	const struct kl_virtio_ops *ops;
	const struct kl_virtio_transport *transport;
	void *opaque;
	const char *name;
	char inst[KL_VIRTIO_INST_LEN];
	uint16_t device_id;

	uint64_t host_features;   /* offered */
	uint64_t guest_features;  /* written by the driver */
	uint64_t features;        /* accepted at FEATURES_OK */
	uint32_t dfselect, gfselect;
	uint8_t status;
	uint8_t isr;              /* bit0 queue, bit1 config */
	uint8_t config_generation;
	uint16_t config_vector;
	uint16_t queue_sel;
	bool broken;              /* NEEDS_RESET set */
	unsigned inflight;        /* popped by kl_virtio_pop, not yet completed */
	bool draining;            /* reset written while requests were in flight:
				     status reads stay non-zero until they end */
	uint8_t draining_status;
	uint8_t *config;          /* config_len bytes */
	unsigned config_len;

	unsigned nvqs;
	struct kl_virtq *vqs;

	const struct kl_pci_platform_ops *plat;
	/* notify ioeventfds: queue q at notify_base + notify_stride * q,
	 * notify_len bytes, matching the value q when notify_datamatch */
	struct kl_virtio_notify_ctx *notify_ctx;
	int *notify_efd;          /* per queue, -1 if none */
	unsigned *notify_watch;
	bool *notify_assigned;
	uint64_t notify_base;     /* guest address of the notify area (when mapped) */
	bool notify_mapped;
	unsigned notify_stride, notify_len;
	bool notify_datamatch;

	/* pci-cfg access capability */
	unsigned pcicfg_off;      /* config offset of the cap */
	/* MMIO transport */
	uint64_t mmio_base;
	unsigned mmio_gsi;
	bool created;             /* the transport's create succeeded */
};

/* Create a device on transport t: PCI (kl_virtio_pci_create) or the next
 * free virtio-mmio slot of the machine (vm->virtio_mmio, -M microvm); a
 * machine without that transport fails with an error naming info->name. */
struct kl_virtio_dev *kl_virtio_create(struct kl_vm *vm, enum kl_virtio_transport_kind t,
				       const struct kl_virtio_pci_info *info,
				       const struct kl_virtio_ops *ops, void *opaque, char **err);
/* "virtio-blk" -> "virtio-blk-pci" / "virtio-blk-device" (static storage
 * for the two kinds: the returned string lives as long as base). */
const char *kl_virtio_type_name(const char *base, enum kl_virtio_transport_kind t);

struct kl_virtio_dev *kl_virtio_pci_create(struct kl_vm *vm, const struct kl_virtio_pci_info *info,
					   const struct kl_virtio_ops *ops, void *opaque, char **err);
/* Unregister the PCI device and free everything (in-flight requests of the
 * device must be finished or abandoned by the device first). */
void kl_virtio_pci_destroy(struct kl_virtio_dev *vd);

/* ---- virtio-mmio (src/virtio/virtio_mmio.c) ---- */
#define KL_VMMIO_MAGIC 0x74726976     /* "virt" */
#define KL_VMMIO_VERSION 2
#define KL_VMMIO_VENDOR 0x554d4551    /* "QEMU" */
#define KL_VMMIO_SIZE 0x200           /* bytes per transport */
#define KL_VMMIO_MAGIC_VALUE 0x000
#define KL_VMMIO_VERSION_REG 0x004
#define KL_VMMIO_DEVICE_ID 0x008
#define KL_VMMIO_VENDOR_ID 0x00c
#define KL_VMMIO_DEVICE_FEATURES 0x010
#define KL_VMMIO_DEVICE_FEATURES_SEL 0x014
#define KL_VMMIO_DRIVER_FEATURES 0x020
#define KL_VMMIO_DRIVER_FEATURES_SEL 0x024
#define KL_VMMIO_QUEUE_SEL 0x030
#define KL_VMMIO_QUEUE_NUM_MAX 0x034
#define KL_VMMIO_QUEUE_NUM 0x038
#define KL_VMMIO_QUEUE_READY 0x044
#define KL_VMMIO_QUEUE_NOTIFY 0x050
#define KL_VMMIO_INTERRUPT_STATUS 0x060
#define KL_VMMIO_INTERRUPT_ACK 0x064
#define KL_VMMIO_STATUS 0x070
#define KL_VMMIO_QUEUE_DESC_LOW 0x080
#define KL_VMMIO_QUEUE_DESC_HIGH 0x084
#define KL_VMMIO_QUEUE_AVAIL_LOW 0x090
#define KL_VMMIO_QUEUE_AVAIL_HIGH 0x094
#define KL_VMMIO_QUEUE_USED_LOW 0x0a0
#define KL_VMMIO_QUEUE_USED_HIGH 0x0a4
#define KL_VMMIO_SHM_SEL 0x0ac
#define KL_VMMIO_SHM_LEN_LOW 0x0b0
#define KL_VMMIO_SHM_LEN_HIGH 0x0b4
#define KL_VMMIO_SHM_BASE_LOW 0x0b8
#define KL_VMMIO_SHM_BASE_HIGH 0x0bc
#define KL_VMMIO_CONFIG_GENERATION 0x0fc
#define KL_VMMIO_CONFIG 0x100

/* The virtio-mmio slots of a machine (vm->virtio_mmio; -M microvm sets
 * them up in src/hw/microvm.c): transport i at base + i * KL_VMMIO_SIZE,
 * interrupt gsi[i]; kl_virtio_create takes them in order. */
#define KL_VMMIO_MAX_SLOTS 8
struct kl_virtio_mmio_slots {
	uint64_t base;
	unsigned count;                       /* <= KL_VMMIO_MAX_SLOTS */
	uint8_t gsi[KL_VMMIO_MAX_SLOTS];
	unsigned used;                        /* slots taken */
};

/* One transport at base (KL_VMMIO_SIZE bytes on vm->mmio) raising gsi
 * through plat (NULL: kl_pci_default_platform_ops). */
struct kl_virtio_dev *kl_virtio_mmio_create(struct kl_vm *vm, const struct kl_pci_platform_ops *plat,
					    uint64_t base, unsigned gsi,
					    const struct kl_virtio_pci_info *info,
					    const struct kl_virtio_ops *ops, void *opaque, char **err);
/* Unregister the transport and free the device: for a platform without
 * add_cleanup (unit tests); with one, the VM's teardown frees it. */
void kl_virtio_mmio_destroy(struct kl_virtio_dev *vd);
/* Register accesses by offset, as the guest does them (for tests). */
uint64_t kl_virtio_mmio_read(struct kl_virtio_dev *vd, uint64_t off, unsigned size);
void kl_virtio_mmio_write(struct kl_virtio_dev *vd, uint64_t off, uint64_t val, unsigned size);

bool kl_virtio_has_feature(const struct kl_virtio_dev *vd, unsigned bit);
/* Device is usable: DRIVER_OK set and not broken. */
bool kl_virtio_ready(const struct kl_virtio_dev *vd);
/* Pop the next request of queue q; NULL when empty or broken (a walker error
 * marks the device NEEDS_RESET and raises the config interrupt itself). */
struct kl_vq_elem *kl_virtio_pop(struct kl_virtio_dev *vd, unsigned q);
/* Push elem (len bytes written), free it, and interrupt the driver if it
 * wants one.  Stale elements (older generation) are just freed.  Every element
 * from kl_virtio_pop must end in kl_virtio_complete or kl_virtio_discard:
 * a device reset (status 0) reports status 0 only once all have ended (the
 * driver polls status until it reads 0, virtio 1.x 4.1.4.3.2), so a late
 * completion can never write into buffers the driver has reused. */
void kl_virtio_complete(struct kl_virtio_dev *vd, unsigned q, struct kl_vq_elem *elem, uint32_t len);
/* Like kl_virtio_complete without the interrupt (batching: push several,
 * then kl_virtio_notify once). */
void kl_virtio_push(struct kl_virtio_dev *vd, unsigned q, struct kl_vq_elem *elem, uint32_t len);
/* Drop elem without putting it on the used ring (device is broken). */
void kl_virtio_discard(struct kl_virtio_dev *vd, struct kl_vq_elem *elem);
/* Interrupt for queue q if the driver wants one (after kl_virtq_push). */
void kl_virtio_notify(struct kl_virtio_dev *vd, unsigned q);
/* Config space changed: generation++, config interrupt. */
void kl_virtio_config_changed(struct kl_virtio_dev *vd);
/* Mark the device broken (DEVICE_NEEDS_RESET + config interrupt). */
void kl_virtio_set_broken(struct kl_virtio_dev *vd, const char *why);
/* Full device reset (what a status write of 0 does). */
void kl_virtio_reset(struct kl_virtio_dev *vd);

/* ---- for the transports (src/virtio/virtio.c) ---- */
/* Allocate a device with nvqs queues (parameters checked: -1 with *err
 * naming info->name); the transport fills pci/inst/notify_* and sets
 * created. */
struct kl_virtio_dev *kl_virtio_dev_new(struct kl_vm *vm, const struct kl_virtio_transport *t,
					const struct kl_pci_platform_ops *plat,
					const struct kl_virtio_pci_info *info, unsigned max_config,
					const struct kl_virtio_ops *ops, void *opaque, char **err);
/* Per-queue notify eventfds watched on the main loop (after plat is set). */
void kl_virtio_notify_init(struct kl_virtio_dev *vd);
/* (De)assign the eventfds at notify_base (see the notify_* fields). */
void kl_virtio_notify_assign(struct kl_virtio_dev *vd, bool on);
/* Unassign and close the eventfds, call ops->destroy when created, free. */
void kl_virtio_dev_free(struct kl_virtio_dev *vd);
/* Driver side of the common registers, the same on every transport. */
uint32_t kl_virtio_get_device_features(const struct kl_virtio_dev *vd, uint32_t sel);
uint32_t kl_virtio_get_driver_features(const struct kl_virtio_dev *vd, uint32_t sel);
void kl_virtio_set_driver_features(struct kl_virtio_dev *vd, uint32_t sel, uint32_t val);
uint8_t kl_virtio_get_status(const struct kl_virtio_dev *vd);
void kl_virtio_set_status(struct kl_virtio_dev *vd, uint8_t val);
/* QueueReady / queue_enable = 1 for queue q (ring checks; broken on failure). */
void kl_virtio_queue_enable(struct kl_virtio_dev *vd, unsigned q);
/* The driver kicked queue q. */
void kl_virtio_queue_kick(struct kl_virtio_dev *vd, unsigned q);
/* Device config space by offset (bytes past config_len read 0; writes go to
 * ops->config_write when inside). */
uint64_t kl_virtio_config_read(const struct kl_virtio_dev *vd, uint64_t off, unsigned size);
void kl_virtio_config_write(struct kl_virtio_dev *vd, uint64_t off, uint64_t val, unsigned size);

/* VM state (src/virtio/virtio_state.c): the PCI transport's section
 * "virtio-pci/0000:00:SS.0", registered by kl_virtio_pci_create and removed
 * when the device is freed (the MMIO transport registers its own
 * "virtio-mmio/0xBASE" in virtio_mmio.c). */
void kl_virtio_state_register(struct kl_virtio_dev *vd);
void kl_virtio_state_unregister(struct kl_virtio_dev *vd);
/* Kick every enabled queue that has buffers available (after a load). */
void kl_virtio_kick_pending(struct kl_virtio_dev *vd);
/* The transport-neutral part of a transport section: the registers
 * (features, selectors, status, ISR, generation, config vector, queue
 * select) and the queues, validated before anything changes (nvec: MSI-X
 * vectors of the transport, 0 when it has none). */
struct kl_virtio_regs_state {
	uint64_t guest_features, features;
	uint32_t dfselect, gfselect;
	uint8_t status, broken, isr, config_generation;
	uint16_t config_vector, queue_sel;
	struct kl_virtq *vqs;     /* nvqs loaded queues (g_free'd by commit/abort) */
};
void kl_virtio_state_save_regs(const struct kl_virtio_dev *vd, struct kl_vms_out *out);
void kl_virtio_state_save_queues(const struct kl_virtio_dev *vd, struct kl_vms_out *out);
int kl_virtio_state_load_regs(const struct kl_virtio_dev *vd, struct kl_vms_in *in, unsigned nvec,
			      struct kl_virtio_regs_state *st, char **err);
int kl_virtio_state_load_queues(const struct kl_virtio_dev *vd, struct kl_vms_in *in,
				unsigned nvec, struct kl_virtio_regs_state *st, char **err);
/* Apply a loaded state (frees st->vqs); -1 when the device refuses the
 * features. */
int kl_virtio_state_commit(struct kl_virtio_dev *vd, struct kl_virtio_regs_state *st, char **err);
void kl_virtio_state_abort(struct kl_virtio_regs_state *st);
/* Refuse to save while requests are in flight. */
int kl_virtio_state_check_quiesced(const struct kl_virtio_dev *vd, char **err);

/* Register accesses by BAR offset, as the guest does them (for tests). */
uint64_t kl_virtio_pci_bar_read(struct kl_virtio_dev *vd, uint64_t off, unsigned size);
void kl_virtio_pci_bar_write(struct kl_virtio_dev *vd, uint64_t off, uint64_t val, unsigned size);

/* Register "BASE-pci" and "BASE-device" -device types whose create calls
 * fn(vm, opts, kind, err) (include kvmlite/device.h and <glib.h> first);
 * "BASE-device" refuses addr=. */
#define KL_VIRTIO_DEVICE_TYPES(var, base, helptext, fn, hp)                                      \
	static int var##_pci_create(struct kl_vm *vm, struct kl_opts *o, char **err)           \
	{                                                                                      \
		return fn(vm, o, KL_VIRTIO_TRANSPORT_PCI, err);                                \
	}                                                                                      \
	static int var##_mmio_create(struct kl_vm *vm, struct kl_opts *o, char **err)          \
	{                                                                                      \
		if (kl_opts_get(o, "addr")) { /* QEMU: no such property */                     \
			*err = g_strdup(base "-device: addr= is a PCI property (this is a "   \
					"virtio-mmio device)");                                \
			return -1;                                                             \
		}                                                                              \
		return fn(vm, o, KL_VIRTIO_TRANSPORT_MMIO, err);                               \
	}                                                                                      \
	static const struct kl_device_type var##_pci = {                                       \
		.name = base "-pci", .help = helptext, .create = var##_pci_create,            \
		.hotpluggable = (hp) };                                                         \
	static const struct kl_device_type var##_mmio = {                                      \
		.name = base "-device", .help = helptext " (virtio-mmio)",                     \
		.create = var##_mmio_create };                                                  \
	KL_DEVICE_TYPE(var##_pci)                                                              \
	KL_DEVICE_TYPE(var##_mmio)

#endif
