/* PCI bus 0: host bridge, type-1 configuration mechanism, BARs, MSI-X, INTx.
 *
 * Platform (src/hw/pci.c):
 *   - config mechanism #1: CONFIG_ADDRESS at I/O 0xcf8 (32-bit), CONFIG_DATA at
 *     0xcfc..0xcff (1/2/4-byte accesses).  Only bus 0, function 0 of each slot
 *     exists; everything else reads as all-ones.
 *   - host bridge at 00.0: Intel 0x8086:0x29c0 (82G33/P35 DRAM controller, the
 *     host bridge QEMU's q35 uses), class 0x060000.
 *   - ECAM is not implemented (KL_PCI_ECAM_BASE is reserved for it).
 *   - kvmlite has no firmware, so kl_pci_add_bar() pre-assigns every BAR like a
 *     BIOS would (MMIO BARs from KL_PCI_MMIO_BASE upward, I/O BARs from 0xc000
 *     upward, each naturally aligned) and the device is created with
 *     COMMAND = IO | MEMORY | MASTER.  The guest may size and move BARs: writing
 *     all-ones reads back the size mask; a BAR is (re)mapped on vm->mmio or
 *     vm->pio when it is written or when COMMAND decode bits change.  A placement
 *     that is invalid (0, all-ones, overlapping another range, wrapping) is
 *     simply left unmapped, never fatal.
 *   - INTx: pin INTA..INTD of slot S uses GSI 10 + ((S + pin - 1) & 1), i.e.
 *     GSI 10 or 11 (IOAPIC pins 10/11, level, active high).  The GSI is written
 *     to INTERRUPT_LINE (0x3c) at registration.  Several devices may share a
 *     GSI; the line is the OR of all asserted devices.  COMMAND.INTX_DISABLE
 *     masks the device's contribution; STATUS.INTERRUPT always reflects the
 *     device's level.
 *   - MSI-X: table + PBA live in one of the device's BARs (may share the BAR
 *     with device registers: the PCI layer dispatches the table/PBA ranges
 *     itself and forwards the rest to the BAR's ops).  Each vector gets an
 *     eventfd; while the vector is deliverable (MSI-X enabled, function not
 *     masked, vector not masked) the eventfd is an irqfd on a KVM MSI route;
 *     otherwise the PCI layer watches it on the main loop and turns a signal
 *     into the vector's pending bit, delivered when the vector is unmasked.
 *
 * Threads: everything here runs with the BQL held (device handlers, main
 * loop), except writing a vector's eventfd, which any thread may do.
 *
 * Test seam: all KVM/main-loop side effects go through a
 * struct kl_pci_platform_ops.  kvmlite's executable installs the KVM one
 * (src/hw/pci_kvm.c) as the default; unit tests create the host with
 * kl_pci_host_create() and their own ops, so they need no /dev/kvm.
 */
#ifndef KVMLITE_PCI_H
#define KVMLITE_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvmlite/bus.h"
#include "kvmlite/loop.h"

struct kl_vm;
struct kl_pci_dev;
struct kl_pci_host;

#define KL_PCI_HOST_VENDOR 0x8086
#define KL_PCI_HOST_DEVICE 0x29c0
#define KL_PCI_NSLOTS 32
#define KL_PCI_CFG_SIZE 256
#define KL_PCI_IO_BASE 0xc000u
#define KL_PCI_IO_END 0x10000u
#define KL_PCI_INTX_GSI_BASE 10   /* GSI 10 + ((slot + pin - 1) & 1) */

/* Config space offsets / bits (PCI 3.0) */
#define KL_PCI_VENDOR_ID 0x00
#define KL_PCI_DEVICE_ID 0x02
#define KL_PCI_COMMAND 0x04
#define  KL_PCI_CMD_IO 0x1
#define  KL_PCI_CMD_MEMORY 0x2
#define  KL_PCI_CMD_MASTER 0x4
#define  KL_PCI_CMD_INTX_DISABLE 0x400
#define KL_PCI_STATUS 0x06
#define  KL_PCI_STATUS_INTERRUPT 0x08
#define  KL_PCI_STATUS_CAP_LIST 0x10
#define KL_PCI_REVISION_ID 0x08
#define KL_PCI_CLASS_PROG 0x09
#define KL_PCI_HEADER_TYPE 0x0e
#define KL_PCI_BAR0 0x10
#define KL_PCI_SUBSYS_VENDOR_ID 0x2c
#define KL_PCI_SUBSYS_ID 0x2e
#define KL_PCI_CAP_PTR 0x34
#define KL_PCI_INTERRUPT_LINE 0x3c
#define KL_PCI_INTERRUPT_PIN 0x3d

#define KL_PCI_CAP_ID_VNDR 0x09
#define KL_PCI_CAP_ID_MSIX 0x11
/* MSI-X capability: +2 Message Control, +4 Table offset/BIR, +8 PBA offset/BIR */
#define  KL_PCI_MSIX_CTRL_ENABLE 0x8000
#define  KL_PCI_MSIX_CTRL_MASKALL 0x4000
#define KL_PCI_MSIX_ENTRY_SIZE 16
#define  KL_PCI_MSIX_ENTRY_CTRL_MASKBIT 0x1
#define KL_PCI_MSIX_MAX_VECTORS 64

enum kl_pci_bar_type { KL_PCI_BAR_IO, KL_PCI_BAR_MEM32, KL_PCI_BAR_MEM64 };

/* Everything the PCI layer does to the outside world.  Each member may be
 * NULL (the action is then skipped / reported as failure). */
struct kl_pci_platform_ops {
	int (*set_irq)(struct kl_vm *vm, unsigned gsi, int level);
	int (*irqfd)(struct kl_vm *vm, int efd, unsigned gsi, bool assign);
	int (*ioeventfd)(struct kl_vm *vm, uint64_t addr, unsigned len, bool pio,
			 int efd, bool datamatch, uint64_t data, bool assign);
	int (*msi_route_add)(struct kl_vm *vm, uint64_t addr, uint32_t data);
	int (*msi_route_update)(struct kl_vm *vm, unsigned gsi, uint64_t addr, uint32_t data);
	void (*msi_route_del)(struct kl_vm *vm, unsigned gsi);
	int (*signal_msi)(struct kl_vm *vm, uint64_t addr, uint32_t data);
	/* main-loop fd watch (G_IO_IN) and its removal */
	unsigned (*fd_add)(int fd, kl_fd_fn fn, void *opaque);
	void (*source_remove)(unsigned id);
	/* register the host's VM-reset handler (resets every device) */
	void (*add_reset_handler)(struct kl_vm *vm, void (*fn)(void *opaque), void *opaque);
	/* register the host's teardown (destroys every device, in reverse
	 * slot order) among the VM's cleanups: before guest RAM goes */
	void (*add_cleanup)(struct kl_vm *vm, void (*fn)(void *opaque), void *opaque);
};
/* The KVM + main-loop implementation (src/hw/pci_kvm.c), which also makes
 * itself the default (kl_pci_default_platform_ops) when linked in. */
extern const struct kl_pci_platform_ops kl_pci_kvm_platform_ops;
extern const struct kl_pci_platform_ops *kl_pci_default_platform_ops;

struct kl_pci_dev_info {
	const char *name;           /* for bus range names / messages */
	uint16_t vendor_id, device_id;
	uint16_t subsys_vendor_id, subsys_id;
	uint8_t revision;
	uint32_t class_code;        /* class << 16 | subclass << 8 | prog-if */
	uint8_t irq_pin;            /* 0 = no INTx, 1 = INTA ... 4 = INTD */
	int slot;                   /* 1..31, or -1 for the first free slot */
};

/* Optional device hooks (all may be NULL). */
struct kl_pci_dev_ops {
	/* Config read override for device-specific registers: return true and
	 * fill *val to answer the access yourself. */
	bool (*config_read)(struct kl_pci_dev *d, void *opaque, unsigned off,
			    unsigned size, uint32_t *val);
	/* Called after the generic layer applied a config write. */
	void (*config_write)(struct kl_pci_dev *d, void *opaque, unsigned off,
			     unsigned size, uint32_t val);
	/* A BAR became mapped at addr (mapped=true) or was unmapped (addr = old
	 * address).  Used e.g. to (re)register ioeventfds. */
	void (*bar_map)(struct kl_pci_dev *d, void *opaque, unsigned bar,
			uint64_t addr, bool mapped);
	/* Device reset (VM reset), after the PCI state was reset. */
	void (*reset)(struct kl_pci_dev *d, void *opaque);
	/* The device is being freed (kl_pci_unregister / kl_pci_host_destroy),
	 * after its BARs were unmapped: free the owner's state. */
	void (*destroy)(struct kl_pci_dev *d, void *opaque);
};

/* ---- host ---- */
/* Create bus 0 for vm: registers 0xcf8/0xcfc on vm->pio and the host bridge at
 * 00.0.  ops NULL = the default platform ops (KVM).  Returns NULL with *err.
 * kl_pci_register() creates the host with the default ops on first use. */
struct kl_pci_host *kl_pci_host_create(struct kl_vm *vm, const struct kl_pci_platform_ops *ops,
				       char **err);
struct kl_pci_host *kl_pci_host_get(struct kl_vm *vm); /* NULL if none */
/* Unregister everything, free all devices (their opaque is not freed). */
void kl_pci_host_destroy(struct kl_vm *vm);
/* Config access by (slot, fn, offset) as the CF8/CFC path does it. */
uint32_t kl_pci_cfg_read(struct kl_vm *vm, unsigned slot, unsigned fn, unsigned off, unsigned size);
void kl_pci_cfg_write(struct kl_vm *vm, unsigned slot, unsigned fn, unsigned off, unsigned size,
		      uint32_t val);

/* ---- devices ---- */
struct kl_pci_dev *kl_pci_register(struct kl_vm *vm, const struct kl_pci_dev_info *info,
				   const struct kl_pci_dev_ops *ops, void *opaque, char **err);
/* Unmap and free a device (its BARs, MSI-X routes, INTx contribution);
 * opaque is not freed. */
void kl_pci_unregister(struct kl_pci_dev *d);
/* Declare BAR bar (0..5; a MEM64 BAR also uses bar+1).  size: power of two,
 * >= 16 for memory (rounded up to 4 KiB), >= 4 for I/O.  ops/opaque handle
 * accesses (offset relative to the BAR); ops may be NULL for a BAR used only
 * by MSI-X.  The BAR is pre-assigned and mapped.  0 or -1 with *err. */
int kl_pci_add_bar(struct kl_pci_dev *d, unsigned bar, uint64_t size, enum kl_pci_bar_type type,
		   bool prefetchable, const struct kl_io_ops *ops, void *opaque, char **err);
/* Append a capability: body is the capability after the ID/next bytes
 * (len bytes, the cap occupies len + 2).  Returns the config offset, or -1
 * when config space is full. */
int kl_pci_add_cap(struct kl_pci_dev *d, uint8_t cap_id, const void *body, unsigned len);
/* Add an MSI-X capability with nvec vectors (1..KL_PCI_MSIX_MAX_VECTORS),
 * table at table_off and PBA at pba_off (8-byte aligned) inside BAR bar (which
 * must already exist and be large enough).  0 or -1 with *err. */
int kl_pci_msix_init(struct kl_pci_dev *d, unsigned nvec, unsigned bar, uint32_t table_off,
		     uint32_t pba_off, char **err);

uint8_t *kl_pci_config(struct kl_pci_dev *d); /* KL_PCI_CFG_SIZE bytes */
/* The function in slot of bus 0 (hot-plug), NULL: empty or no host. */
struct kl_pci_dev *kl_pci_dev_at(struct kl_vm *vm, unsigned slot);
/* Size of BAR bar, 0 when absent; *type and *prefetch describe it. */
uint64_t kl_pci_bar_size(const struct kl_pci_dev *d, unsigned bar, enum kl_pci_bar_type *type,
			 bool *prefetch);
struct kl_vm *kl_pci_vm(struct kl_pci_dev *d);
const struct kl_pci_platform_ops *kl_pci_platform(const struct kl_pci_dev *d);
unsigned kl_pci_slot(const struct kl_pci_dev *d);
/* Current guest address of a BAR, and whether it is mapped (decoding on). */
uint64_t kl_pci_bar_addr(const struct kl_pci_dev *d, unsigned bar, bool *mapped);
bool kl_pci_bus_master(const struct kl_pci_dev *d);
/* "0000:00:SS.0": the instance name of the function's VM state sections
 * (kvmlite/vmstate.h); every PCI device's own section uses it too. */
#define KL_PCI_ADDR_STR_LEN 16
void kl_pci_addr_str(const struct kl_pci_dev *d, char *buf, size_t len);

/* ---- interrupts ---- */
/* INTx level (0/1).  STATUS.INTERRUPT follows level; the GSI is asserted
 * while level && !COMMAND.INTX_DISABLE (OR-ed over devices sharing it). */
void kl_pci_set_irq(struct kl_pci_dev *d, int level);
unsigned kl_pci_intx_gsi(const struct kl_pci_dev *d);
bool kl_pci_msix_enabled(const struct kl_pci_dev *d);
unsigned kl_pci_msix_nvec(const struct kl_pci_dev *d);
/* Signal vector vec: delivered now, or its pending bit is set while masked.
 * Ignored when vec >= nvec or MSI-X is disabled (callers then use INTx). */
void kl_pci_msix_notify(struct kl_pci_dev *d, unsigned vec);
/* The vector's eventfd (any thread may write 1 to it: same effect as
 * kl_pci_msix_notify); -1 if vec is invalid or no eventfd could be made. */
int kl_pci_msix_vector_eventfd(struct kl_pci_dev *d, unsigned vec);
bool kl_pci_msix_is_pending(const struct kl_pci_dev *d, unsigned vec);
bool kl_pci_msix_is_masked(const struct kl_pci_dev *d, unsigned vec); /* incl. function mask */

/* Device-level reset (guest reset): COMMAND keeps the firmware defaults,
 * BARs return to their pre-assigned addresses, MSI-X disabled, table entries
 * masked, INTx deasserted, then ops->reset.  Called for every device by the
 * host's VM reset handler; exposed for tests. */
void kl_pci_dev_reset(struct kl_pci_dev *d);

#endif
