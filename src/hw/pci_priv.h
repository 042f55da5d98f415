/* Internals of the PCI layer shared by src/hw/pci.c and its VM state
 * section (src/hw/pci_state.c).  Not a public header. */
#ifndef KVMLITE_HW_PCI_PRIV_H
#define KVMLITE_HW_PCI_PRIV_H

#include <glib.h>

#include "kvmlite/pci.h"

#define NBARS 6

struct pci_bar {
	struct kl_pci_dev *dev;
	unsigned idx;
	bool present;
	enum kl_pci_bar_type type;
	bool prefetch;
	uint64_t size;
	uint64_t default_addr;
	bool mapped;
	uint64_t mapped_addr;
	const struct kl_io_ops *ops;
	void *opaque;
	char *name;
};

struct msix_vec {
	struct kl_pci_dev *dev;
	unsigned idx;
	uint32_t addr_lo, addr_hi, data, ctrl;
	int efd;
	int gsi;                 /* KVM MSI route, -1 none */
	uint64_t route_addr;
	uint32_t route_data;
	bool irqfd;              /* efd assigned as irqfd on gsi */
	unsigned watch;          /* main-loop watch on efd, 0 none */
};

struct kl_pci_dev {
	struct kl_pci_host *host;
	unsigned slot;
	char *name;
	uint8_t cfg[KL_PCI_CFG_SIZE];
	uint8_t wmask[KL_PCI_CFG_SIZE];
	struct pci_bar bars[NBARS];
	const struct kl_pci_dev_ops *ops;
	void *opaque;
	uint8_t last_cap;        /* offset of the last capability, 0 none */
	unsigned cap_free;       /* next free config offset */
	int intx_level;
	bool intx_asserted;      /* contributing to the GSI */
	uint16_t default_cmd;
	/* MSI-X */
	unsigned msix_nvec, msix_bar, msix_cap;
	uint32_t msix_table_off, msix_pba_off;
	struct msix_vec *vec;
	uint64_t pending;        /* bit per vector (<= 64 vectors) */
};

struct kl_pci_host {
	struct kl_vm *vm;
	const struct kl_pci_platform_ops *ops;
	uint32_t cf8;
	struct kl_pci_dev *devs[KL_PCI_NSLOTS];
	uint64_t next_mmio;
	uint32_t next_io;
	unsigned gsi_count[2];
};

/* pci.c: bring the bus mappings, MSI-X routes/irqfds and the INTx line in
 * line with config space and the vector table. */
void pci_bars_update(struct kl_pci_dev *d);
void pci_msix_update_all(struct kl_pci_dev *d);
void pci_intx_update(struct kl_pci_dev *d);

/* pci_state.c: the "pci/0000:00:SS.0" section of each function. */
void pci_state_register(struct kl_pci_dev *d);
void pci_state_unregister(struct kl_pci_dev *d);

#endif
