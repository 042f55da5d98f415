/* Intel 82540EM (e1000) register model, shared by e1000.c (PCI glue),
 * e1000_core.c (registers, EEPROM, PHY, interrupts, RX) and e1000_tx.c
 * (transmit ring, checksum offload, TSO).
 *
 * The core knows nothing about PCI or the main loop: the glue passes
 * callbacks (interrupt level, frame out, clock, one-shot timer), so the
 * unit tests drive it on fake guest memory. */
#ifndef KVMLITE_E1000_INT_H
#define KVMLITE_E1000_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "kvmlite/mem.h"

#define E1000_MMIO_SIZE 0x20000     /* BAR0: 128 KiB */
#define E1000_IO_SIZE 0x40          /* BAR1: IOADDR at 0, IODATA at 4 */
#define E1000_NREGS (E1000_MMIO_SIZE / 4)

/* Register offsets */
#define E1000_CTRL 0x0000
#define E1000_STATUS 0x0008
#define E1000_EECD 0x0010
#define E1000_EERD 0x0014
#define E1000_CTRL_EXT 0x0018
#define E1000_MDIC 0x0020
#define E1000_FCAL 0x0028
#define E1000_FCAH 0x002c
#define E1000_FCT 0x0030
#define E1000_VET 0x0038
#define E1000_ICR 0x00c0
#define E1000_ITR 0x00c4
#define E1000_ICS 0x00c8
#define E1000_IMS 0x00d0
#define E1000_IMC 0x00d8
#define E1000_RCTL 0x0100
#define E1000_FCTTV 0x0170
#define E1000_TXCW 0x0178
#define E1000_RXCW 0x0180
#define E1000_TCTL 0x0400
#define E1000_TIPG 0x0410
#define E1000_LEDCTL 0x0e00
#define E1000_PBA 0x1000
#define E1000_RDBAL 0x2800
#define E1000_RDBAH 0x2804
#define E1000_RDLEN 0x2808
#define E1000_RDH 0x2810
#define E1000_RDT 0x2818
#define E1000_RDTR 0x2820
#define E1000_RADV 0x282c
#define E1000_TDBAL 0x3800
#define E1000_TDBAH 0x3804
#define E1000_TDLEN 0x3808
#define E1000_TDH 0x3810
#define E1000_TDT 0x3818
#define E1000_TIDV 0x3820
#define E1000_TXDCTL 0x3828
#define E1000_TADV 0x382c
#define E1000_STATS_START 0x4000
#define E1000_STATS_END 0x4100
#define E1000_RXCSUM 0x5000
#define E1000_MTA 0x5200        /* 128 x 32 bits */
#define E1000_RA 0x5400         /* 16 x (RAL, RAH) */
#define E1000_VFTA 0x5600
#define E1000_WUC 0x5800
#define E1000_MANC 0x5820

/* Statistics (read-to-clear) */
#define E1000_CRCERRS 0x4000
#define E1000_MPC 0x4010
#define E1000_PRC64 0x405c
#define E1000_PRC127 0x4060
#define E1000_PRC255 0x4064
#define E1000_PRC511 0x4068
#define E1000_PRC1023 0x406c
#define E1000_PRC1522 0x4070
#define E1000_GPRC 0x4074
#define E1000_BPRC 0x4078
#define E1000_MPRC 0x407c
#define E1000_GPTC 0x4080
#define E1000_GORCL 0x4088
#define E1000_GORCH 0x408c
#define E1000_GOTCL 0x4090
#define E1000_GOTCH 0x4094
#define E1000_RNBC 0x40a0
#define E1000_RUC 0x40a4
#define E1000_ROC 0x40ac
#define E1000_TORL 0x40c0
#define E1000_TORH 0x40c4
#define E1000_TOTL 0x40c8
#define E1000_TOTH 0x40cc
#define E1000_TPR 0x40d0
#define E1000_TPT 0x40d4
#define E1000_PTC64 0x40d8
#define E1000_PTC127 0x40dc
#define E1000_PTC255 0x40e0
#define E1000_PTC511 0x40e4
#define E1000_PTC1023 0x40e8
#define E1000_PTC1522 0x40ec
#define E1000_MPTC 0x40f0
#define E1000_BPTC 0x40f4
#define E1000_TSCTC 0x40f8
#define E1000_TSCTFC 0x40fc

/* CTRL */
#define E1000_CTRL_FD 0x00000001
#define E1000_CTRL_LRST 0x00000008
#define E1000_CTRL_ASDE 0x00000020
#define E1000_CTRL_SLU 0x00000040
#define E1000_CTRL_RST 0x04000000
#define E1000_CTRL_PHY_RST 0x80000000
/* STATUS */
#define E1000_STATUS_FD 0x00000001
#define E1000_STATUS_LU 0x00000002
#define E1000_STATUS_SPEED_1000 0x00000080
#define E1000_STATUS_ASDV_1000 0x00000200
/* EECD */
#define E1000_EECD_SK 0x00000001
#define E1000_EECD_CS 0x00000002
#define E1000_EECD_DI 0x00000004
#define E1000_EECD_DO 0x00000008
#define E1000_EECD_FWE 0x00000030
#define E1000_EECD_REQ 0x00000040
#define E1000_EECD_GNT 0x00000080
#define E1000_EECD_PRES 0x00000100
/* EERD */
#define E1000_EERD_START 0x00000001
#define E1000_EERD_DONE 0x00000010
#define E1000_EERD_ADDR_SHIFT 8
#define E1000_EERD_DATA_SHIFT 16
/* MDIC */
#define E1000_MDIC_DATA_MASK 0x0000ffff
#define E1000_MDIC_REG_SHIFT 16
#define E1000_MDIC_PHY_SHIFT 21
#define E1000_MDIC_OP_WRITE 0x04000000
#define E1000_MDIC_OP_READ 0x08000000
#define E1000_MDIC_READY 0x10000000
#define E1000_MDIC_INT_EN 0x20000000
#define E1000_MDIC_ERROR 0x40000000
/* Interrupt causes */
#define E1000_ICR_TXDW 0x00000001
#define E1000_ICR_TXQE 0x00000002
#define E1000_ICR_LSC 0x00000004
#define E1000_ICR_RXSEQ 0x00000008
#define E1000_ICR_RXDMT0 0x00000010
#define E1000_ICR_RXO 0x00000040
#define E1000_ICR_RXT0 0x00000080
#define E1000_ICR_MDAC 0x00000200
#define E1000_ICR_INT_ASSERTED 0x80000000
#define E1000_ICR_MASK 0x0001ffff
/* RCTL */
#define E1000_RCTL_EN 0x00000002
#define E1000_RCTL_SBP 0x00000004
#define E1000_RCTL_UPE 0x00000008
#define E1000_RCTL_MPE 0x00000010
#define E1000_RCTL_LPE 0x00000020
#define E1000_RCTL_RDMTS_SHIFT 8
#define E1000_RCTL_MO_SHIFT 12
#define E1000_RCTL_BAM 0x00008000
#define E1000_RCTL_BSIZE_SHIFT 16
#define E1000_RCTL_BSEX 0x02000000
#define E1000_RCTL_SECRC 0x04000000
/* TCTL */
#define E1000_TCTL_EN 0x00000002
#define E1000_TCTL_PSP 0x00000008
/* RAH */
#define E1000_RAH_AV 0x80000000
/* RXCSUM */
#define E1000_RXCSUM_IPOFL 0x00000100
#define E1000_RXCSUM_TUOFL 0x00000200

/* Descriptors */
struct e1000_rx_desc {
	uint64_t addr;
	uint16_t length;
	uint16_t csum;
	uint8_t status;
	uint8_t errors;
	uint16_t special;
} __attribute__((packed));
#define E1000_RXD_STAT_DD 0x01
#define E1000_RXD_STAT_EOP 0x02
#define E1000_RXD_STAT_IXSM 0x04
#define E1000_RXD_STAT_TCPCS 0x20
#define E1000_RXD_STAT_IPCS 0x40
#define E1000_RXD_ERR_RXE 0x80

struct e1000_tx_desc {
	uint64_t addr;        /* legacy/data: buffer; context: ip/tu fields */
	uint32_t lower;       /* legacy: length | cso << 16 | cmd << 24;
				 ext: length/paylen 19:0 | dtyp 23:20 | cmd 31:24 */
	uint32_t upper;       /* legacy: status | css << 8 | special << 16;
				 data: status | popts << 8 | special << 16;
				 context: status | hdrlen << 8 | mss << 16 */
} __attribute__((packed));
#define E1000_TXD_CMD_EOP 0x01
#define E1000_TXD_CMD_IFCS 0x02
#define E1000_TXD_CMD_IC 0x04
#define E1000_TXD_CMD_TSE 0x04   /* data/context descriptors */
#define E1000_TXD_CMD_RS 0x08
#define E1000_TXD_CMD_DEXT 0x20
#define E1000_TXD_CMD_VLE 0x40
#define E1000_TXD_CMD_IDE 0x80
#define E1000_TXD_DTYP_CTX 0x0
#define E1000_TXD_DTYP_DATA 0x1
#define E1000_TUCMD_TCP 0x01
#define E1000_TUCMD_IP 0x02
#define E1000_TXD_POPTS_IXSM 0x01
#define E1000_TXD_POPTS_TXSM 0x02
#define E1000_TXD_STAT_DD 0x01

#define E1000_TX_BUF_MAX 65536   /* largest (non-TSO) frame assembled */
#define E1000_TSO_HDR_MAX 255    /* hdr_len is one byte */

struct e1000_core;

struct e1000_core_cb {
	void (*set_irq)(void *opaque, int level);
	/* frame out; returns false when dropped */
	bool (*send)(void *opaque, const uint8_t *frame, size_t len);
	uint64_t (*now_ns)(void *opaque);
	/* one-shot timer: call e1000_core_timer() after delay_ns */
	void (*arm_timer)(void *opaque, uint64_t delay_ns);
	/* DMA allowed (PCI bus master); NULL = always */
	bool (*dma_ok)(void *opaque);
	/* new RX buffers were posted (flow control); may be NULL */
	void (*rx_ready)(void *opaque);
	/* TDT/TCTL asked for transmission: run e1000_tx_process() later on
	 * the main loop.  NULL = process synchronously in the register write. */
	void (*tx_kick)(void *opaque);
	/* may another frame be sent now?  NULL = always.  When it says no,
	 * e1000_tx_process() stops and is called again later. */
	bool (*can_send)(void *opaque);
};

struct e1000_tx_ctx {
	uint8_t ipcss, ipcso;
	uint16_t ipcse;
	uint8_t tucss, tucso;
	uint16_t tucse;
	uint32_t paylen;
	uint8_t tucmd;
	uint8_t hdr_len;
	uint16_t mss;
};

struct e1000_tx_state {
	struct e1000_tx_ctx ctx;       /* last context descriptor */
	uint8_t *buf;                  /* frame being assembled */
	size_t len;
	bool bad;                      /* a buffer was outside RAM: drop */
	bool in_pkt;                   /* saw descriptors of an unfinished packet */
	bool tse;                      /* current packet uses TSO */
	uint8_t popts;                 /* from the first data descriptor */
	bool legacy_ic;                /* legacy descriptor asked for a checksum */
	uint8_t css, cso;
	uint32_t seg_sent;             /* TSO: payload bytes already segmented */
	uint16_t seg_count;            /* TSO: segments sent for this packet */
	uint8_t hdr[E1000_TSO_HDR_MAX]; /* TSO: saved header */
	bool hdr_saved;
};

struct e1000_core {
	const struct kl_guest_mem *mem;
	const struct e1000_core_cb *cb;
	void *opaque;

	uint32_t regs[E1000_NREGS];
	uint16_t phy[32];
	uint16_t eeprom[64];
	uint8_t macaddr[6];

	/* microwire EEPROM */
	uint32_t eecd_old;
	uint32_t ee_in;
	unsigned ee_bits_in;
	int ee_bit_out;
	bool ee_reading;

	bool link_up;           /* cable connected */
	int irq_level;
	bool timer_armed;
	uint64_t irq_ok_ns;     /* ITR: no new assertion before this */
	uint32_t ioaddr;        /* BAR1 IOADDR */

	struct e1000_tx_state tx;
	bool tx_running;        /* re-entrancy guard */
	uint8_t *rx_frame;      /* RX scratch: frame + padding + FCS */
};

/* e1000_core.c */
void e1000_core_init(struct e1000_core *c, const struct kl_guest_mem *mem, const uint8_t mac[6],
		     const struct e1000_core_cb *cb, void *opaque);
void e1000_core_cleanup(struct e1000_core *c);
void e1000_core_reset(struct e1000_core *c);   /* power-on / CTRL.RST */
uint32_t e1000_reg_read(struct e1000_core *c, uint32_t off);
void e1000_reg_write(struct e1000_core *c, uint32_t off, uint32_t val);
uint64_t e1000_mmio_read(void *opaque, uint64_t off, unsigned size);
void e1000_mmio_write(void *opaque, uint64_t off, uint64_t val, unsigned size);
uint64_t e1000_io_read(void *opaque, uint64_t off, unsigned size);
void e1000_io_write(void *opaque, uint64_t off, uint64_t val, unsigned size);
void e1000_set_ics(struct e1000_core *c, uint32_t causes);  /* raise causes */
void e1000_core_timer(struct e1000_core *c);
void e1000_set_link(struct e1000_core *c, bool up);
bool e1000_can_receive(struct e1000_core *c);
/* Frame from the network: len consumed (accepted or filtered), 0 = no
 * room now (flow control), -1 = dropped. */
ssize_t e1000_receive(struct e1000_core *c, const struct iovec *iov, int iovcnt);
/* Would this destination address pass the RX filter? */
bool e1000_rx_filter(struct e1000_core *c, const uint8_t *dst);
void e1000_stat_inc(struct e1000_core *c, uint32_t off, uint32_t n);
void e1000_stat_add64(struct e1000_core *c, uint32_t lo_off, uint64_t n);
void e1000_stat_size(struct e1000_core *c, uint32_t base_off, size_t len);
uint16_t e1000_eeprom_checksum_word(const uint16_t *ee);
uint32_t e1000_crc32(const uint8_t *p, size_t len);

/* e1000_tx.c */
void e1000_tx_process(struct e1000_core *c);
void e1000_tx_reset(struct e1000_core *c);
/* the context descriptor allows TCP segmentation */
bool e1000_tso_ctx_valid(const struct e1000_tx_ctx *x);

/* e1000_state.c: the core's VM state (kvmlite/vmstate.h).  Load decodes
 * and validates everything before it changes the core; 0 or -1 with the
 * reader failed naming the field. */
struct kl_vms_out;
struct kl_vms_in;
void e1000_core_save(const struct e1000_core *c, struct kl_vms_out *out);
int e1000_core_load(struct e1000_core *c, struct kl_vms_in *in);
/* after a load: interrupt line, ITR timer, pending TX/RX */
void e1000_core_post_load(struct e1000_core *c);

#define E1000_REG(c, off) ((c)->regs[(off) >> 2])

#endif
