/* -device e1000[,netdev=ID][,mac=52:54:00:12:34:56]
 *
 * Intel 82540EM on PCI (8086:100E): BAR0 128 KiB MMIO registers, BAR1
 * I/O IOADDR/IODATA window, INTA.  The register model is e1000_core.c and
 * e1000_tx.c; this file connects it to the PCI layer, the netdev and the
 * main loop (ITR timer on a timerfd). */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/timerfd.h>

#include <glib.h>

#include "kvmlite/clock.h"
#include "kvmlite/device.h"
#include "kvmlite/loop.h"
#include "kvmlite/net.h"
#include "kvmlite/pci.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"
#include "e1000_int.h"

struct e1000_dev {
	struct e1000_core core;
	struct kl_pci_dev *pci;
	struct kl_netdev *nd;
	int timer_fd;
	guint timer_watch;
	bool tx_bh_pending;
	bool gone;          /* destroyed while tx_bh was pending: it frees */
};

static void tx_bh(void *opaque)
{
	struct e1000_dev *e = opaque;
	e->tx_bh_pending = false;
	if (e->gone) {
		g_free(e);
		return;
	}
	e1000_tx_process(&e->core);
}

/* Transmission runs on the main loop, never on the vCPU thread that
 * wrote TDT: the back-end is written directly from there, with flow
 * control (can_send / tx_ready). */
static void cb_tx_kick(void *opaque)
{
	struct e1000_dev *e = opaque;
	if (e->tx_bh_pending)
		return;
	e->tx_bh_pending = true;
	kl_bh_schedule(tx_bh, e);
}

static bool cb_can_send(void *opaque)
{
	struct e1000_dev *e = opaque;
	return kl_netdev_can_send(e->nd);
}

static void peer_tx_ready(void *opaque)
{
	cb_tx_kick(opaque);
}

static void cb_set_irq(void *opaque, int level)
{
	struct e1000_dev *e = opaque;
	kl_pci_set_irq(e->pci, level);
}

static bool cb_send(void *opaque, const uint8_t *frame, size_t len)
{
	struct e1000_dev *e = opaque;
	struct iovec iov = { (void *)frame, len };
	return kl_netdev_send(e->nd, &iov, 1) >= 0;
}

static uint64_t cb_now_ns(void *opaque)
{
	(void)opaque;
	return kl_clock_ns();
}

static bool timer_ready(int fd, GIOCondition cond, void *opaque)
{
	struct e1000_dev *e = opaque;
	uint64_t n;
	(void)cond;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return true;
	e1000_core_timer(&e->core);
	return true;
}

static void cb_arm_timer(void *opaque, uint64_t delay_ns)
{
	struct e1000_dev *e = opaque;
	struct itimerspec its = { 0 };
	if (delay_ns == 0)
		delay_ns = 1;
	its.it_value.tv_sec = (time_t)(delay_ns / 1000000000ull);
	its.it_value.tv_nsec = (long)(delay_ns % 1000000000ull);
	if (timerfd_settime(e->timer_fd, 0, &its, NULL) < 0)
		e1000_core_timer(&e->core);   /* cannot wait: deliver now */
}

static bool cb_dma_ok(void *opaque)
{
	struct e1000_dev *e = opaque;
	return kl_pci_bus_master(e->pci);
}

static void cb_rx_ready(void *opaque)
{
	struct e1000_dev *e = opaque;
	kl_netdev_rx_ready(e->nd);
}

static const struct e1000_core_cb e1000_cbs = {
	.set_irq = cb_set_irq,
	.send = cb_send,
	.now_ns = cb_now_ns,
	.arm_timer = cb_arm_timer,
	.dma_ok = cb_dma_ok,
	.rx_ready = cb_rx_ready,
	.tx_kick = cb_tx_kick,
	.can_send = cb_can_send,
};

static bool peer_can_receive(void *opaque)
{
	struct e1000_dev *e = opaque;
	return e1000_can_receive(&e->core);
}

static ssize_t peer_receive(void *opaque, const struct iovec *iov, int iovcnt)
{
	struct e1000_dev *e = opaque;
	return e1000_receive(&e->core, iov, iovcnt);
}

static const struct kl_io_ops e1000_mmio_ops = {
	.read = e1000_mmio_read,
	.write = e1000_mmio_write,
};

static const struct kl_io_ops e1000_io_ops = {
	.read = e1000_io_read,
	.write = e1000_io_write,
};

static void e1000_pci_reset(struct kl_pci_dev *d, void *opaque)
{
	struct e1000_dev *e = opaque;
	(void)d;
	e1000_core_reset(&e->core);
}

/* ---- VM state: section "e1000/0000:00:SS.0" (e1000_state.c) ----
 * Quiesce sends what the guest queued before the stop (a TX kick waiting
 * for the main loop), so the source does not transmit after its state was
 * saved while the destination transmits the same descriptors again.  The
 * netdev's own state is in its own section (src/net/). */
static int e1000_vms_quiesce(void *opaque, char **err)
{
	(void)err;
	struct e1000_dev *e = opaque;
	if (e->tx_bh_pending)
		e1000_tx_process(&e->core);
	return 0;
}

static int e1000_vms_save(void *opaque, struct kl_vms_out *out, char **err)
{
	(void)err;
	struct e1000_dev *e = opaque;
	e1000_core_save(&e->core, out);
	return 0;
}

static int e1000_vms_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	(void)err;
	struct e1000_dev *e = opaque;
	return e1000_core_load(&e->core, in);
}

static int e1000_vms_post_load(void *opaque, char **err)
{
	(void)err;
	struct e1000_dev *e = opaque;
	e1000_core_post_load(&e->core);
	return 0;
}

static const struct kl_vmstate_ops e1000_vmstate_ops = {
	.kind = "e1000",
	.version = 1,
	.min_version = 1,
	.quiesce = e1000_vms_quiesce,
	.save = e1000_vms_save,
	.load = e1000_vms_load,
	.post_load = e1000_vms_post_load,
};

/* Teardown (device_del, VM exit, a failed create): after the PCI layer
 * unmapped the BARs; everything create() made goes. */
static void e1000_pci_destroy(struct kl_pci_dev *d, void *opaque)
{
	struct e1000_dev *e = opaque;
	(void)d;
	kl_vmstate_unregister(kl_pci_vm(d), &e1000_vmstate_ops, e);
	if (e->timer_watch)
		kl_source_remove(e->timer_watch);
	if (e->timer_fd >= 0)
		close(e->timer_fd);
	if (e->nd)
		kl_netdev_detach(e->nd);
	e1000_core_cleanup(&e->core);
	if (e->tx_bh_pending)
		e->gone = true;
	else
		g_free(e);
}

static const struct kl_pci_dev_ops e1000_pci_ops = {
	.reset = e1000_pci_reset,
	.destroy = e1000_pci_destroy,
};

static int e1000_create(struct kl_vm *vm, struct kl_opts *o, char **err)
{
	const char *ndid = kl_opts_get(o, "netdev");
	const char *macs = kl_opts_get(o, "mac");
	uint8_t mac[6];
	if (macs) {
		if (kl_net_parse_mac(macs, mac) < 0) {
			*err = g_strdup_printf("e1000: mac=%s: expected a unicast XX:XX:XX:XX:XX:XX", macs);
			return -1;
		}
	} else {
		kl_net_default_mac(mac);
	}
	struct e1000_dev *e = g_new0(struct e1000_dev, 1);
	e->timer_fd = -1;
	struct kl_net_peer peer = {
		.model = "e1000",
		.can_receive = peer_can_receive,
		.receive = peer_receive,
		.tx_ready = peer_tx_ready,
		.opaque = e,
	};
	if (ndid) {
		e->nd = kl_netdev_attach_id(ndid, &peer, err);
		if (!e->nd) {
			char *m = g_strdup_printf("e1000: %s", *err);
			g_free(*err);
			*err = m;
			goto fail;
		}
	} else {
		e->nd = kl_netdev_default_user(err);
		if (!e->nd || kl_netdev_attach(e->nd, &peer, err) < 0)
			goto fail;
	}
	e->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (e->timer_fd < 0) {
		*err = g_strdup_printf("e1000: timerfd: %s", strerror(errno));
		goto fail;
	}
	e1000_core_init(&e->core, &vm->mem, mac, &e1000_cbs, e);
	struct kl_pci_dev_info info = {
		.name = "e1000",
		.vendor_id = 0x8086,
		.device_id = 0x100e,
		.subsys_vendor_id = 0x8086,
		.subsys_id = 0x001e,
		.revision = 0x03,
		.class_code = 0x020000,
		.irq_pin = 1,
		.slot = -1,
	};
	e->pci = kl_pci_register(vm, &info, &e1000_pci_ops, e, err);
	if (!e->pci)
		goto fail_core;
	if (kl_pci_add_bar(e->pci, 0, E1000_MMIO_SIZE, KL_PCI_BAR_MEM32, false, &e1000_mmio_ops,
			   &e->core, err) < 0 ||
	    kl_pci_add_bar(e->pci, 1, E1000_IO_SIZE, KL_PCI_BAR_IO, false, &e1000_io_ops,
			   &e->core, err) < 0) {
		kl_pci_unregister(e->pci);   /* e1000_pci_destroy frees the rest */
		return -1;
	}
	e->timer_watch = kl_fd_add(e->timer_fd, G_IO_IN, timer_ready, e);
	char inst[KL_PCI_ADDR_STR_LEN];
	kl_pci_addr_str(e->pci, inst, sizeof(inst));
	kl_vmstate_register(vm, inst, &e1000_vmstate_ops, e);
	kl_netdev_vmstate_register(vm, e->nd);
	return 0;
fail_core:
	e1000_core_cleanup(&e->core);
fail:
	if (e->timer_fd >= 0)
		close(e->timer_fd);
	if (e->nd)
		kl_netdev_detach(e->nd);
	g_free(e);
	return -1;
}

static const struct kl_device_type e1000_type = {
	.name = "e1000",
	.help = "Intel 82540EM Gigabit Ethernet (netdev=ID, mac=MAC)",
	.create = e1000_create,
	.hotpluggable = true,
};
KL_DEVICE_TYPE(e1000_type);
