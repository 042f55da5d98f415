/* virtio-serial (virtio 1.x section 5.3, VIRTIO_CONSOLE_F_MULTIPORT):
 *   -device virtio-serial-pci[,id=ID][,max_ports=N][,addr=SLOT]
 *   -device virtio-serial-device[,id=ID][,max_ports=N]   (virtio-mmio, -M microvm)
 *   -device virtconsole,chardev=CHR[,name=][,nr=][,id=][,bus=ID.0]
 *   -device virtserialport,chardev=CHR,name=NAME[,nr=][,id=][,bus=ID.0]
 *
 * Queues: port 0 rx/tx = 0/1, control rx/tx = 2/3, port p rx/tx =
 * 2p+2 / 2p+3.  Each port is a front-end of its chardev: guest output on
 * the port's tx queue goes to the chardev, chardev input fills the rx
 * queue while the guest has the port open.  Control messages (8 bytes:
 * le32 id, le16 event, le16 value) from the guest: DEVICE_READY,
 * PORT_READY, PORT_OPEN; to the guest: DEVICE_ADD, CONSOLE_PORT,
 * PORT_NAME (+ name), PORT_OPEN when the chardev connects/disconnects.
 * A guest PORT_OPEN of a port with an id emits VSERPORT_CHANGE {id, open}
 * as QEMU does.  Bad port ids, short or unknown control messages are
 * ignored.  max_ports defaults to 30 here (QEMU: 31): the PCI transport
 * has at most 63 queues. */
#include <stdio.h>
#include <string.h>

#include "kvmlite/chardev.h"
#include "kvmlite/device.h"
#include "kvmlite/monitor.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define VIRTIO_ID_CONSOLE 3
#define F_MULTIPORT 1
#define F_EMERG_WRITE 2
#define QUEUE_SIZE 128
#define CONFIG_LEN 12 /* cols, rows, max_nr_ports, emerg_wr */
#define MAX_PORTS ((KL_VPCI_MAX_QUEUES - 1) / 2 - 1) /* 30 */
#define RX_PENDING 4096
#define MAX_CTRL_PENDING 1024

enum {
	DEVICE_READY = 0, DEVICE_ADD = 1, DEVICE_REMOVE = 2, PORT_READY = 3, CONSOLE_PORT = 4,
	RESIZE = 5, PORT_OPEN = 6, PORT_NAME = 7,
};

struct vser;

struct vser_port {
	struct vser *dev;
	unsigned nr;
	char *id, *name;
	bool console;
	struct kl_chardev *cd;
	bool host_connected, guest_ready, guest_connected;
	uint8_t pending[RX_PENDING]; /* chardev input not yet in the rx queue */
	size_t pending_len;
};

struct vser {
	struct kl_virtio_dev *vd;
	char *id;
	unsigned max_ports;
	struct vser_port *ports[MAX_PORTS];
	GQueue ctrl_out; /* of GByteArray: messages waiting for control rx buffers */
	bool driver_ready;
};

static GPtrArray *devices; /* of struct vser, for bus= and the ports */
static const struct kl_vmstate_ops vser_vmstate;

static unsigned rx_queue(unsigned nr)
{
	return nr == 0 ? 0 : 2 * nr + 2;
}

static bool multiport(struct vser *v)
{
	return kl_virtio_has_feature(v->vd, F_MULTIPORT);
}

static struct vser_port *port_by_id(struct vser *v, uint32_t id)
{
	return id < v->max_ports ? v->ports[id] : NULL;
}

/* Pop, re-arming the driver's notifications when the queue runs dry (with
 * EVENT_IDX, avail_event must follow what was consumed or the driver stops
 * kicking). */
static struct kl_vq_elem *vser_pop(struct vser *v, unsigned q)
{
	struct kl_vq_elem *e = kl_virtio_pop(v->vd, q);
	if (!e && kl_virtio_ready(v->vd) && kl_virtq_set_notification(&v->vd->vqs[q], true))
		e = kl_virtio_pop(v->vd, q);
	return e;
}

/* ---------------- control messages to the guest ---------------- */

static void flush_ctrl(struct vser *v)
{
	bool pushed = false;
	while (!g_queue_is_empty(&v->ctrl_out) && kl_virtio_ready(v->vd)) {
		struct kl_vq_elem *e = vser_pop(v, 2);
		if (!e)
			break;
		GByteArray *m = g_queue_pop_head(&v->ctrl_out);
		size_t n = kl_iov_from_buf(e->iov + e->out_num, e->in_num, 0, m->data, m->len);
		g_byte_array_unref(m);
		kl_virtio_push(v->vd, 2, e, (uint32_t)n);
		pushed = true;
	}
	if (pushed)
		kl_virtio_notify(v->vd, 2);
}

static void send_ctrl(struct vser *v, uint32_t id, uint16_t event, uint16_t value,
		      const char *extra)
{
	if (!multiport(v) || g_queue_get_length(&v->ctrl_out) >= MAX_CTRL_PENDING)
		return;
	uint8_t hdr[8] = { id, id >> 8, id >> 16, id >> 24, event, event >> 8, value, value >> 8 };
	GByteArray *m = g_byte_array_new();
	g_byte_array_append(m, hdr, sizeof(hdr));
	if (extra)
		g_byte_array_append(m, (const uint8_t *)extra, (guint)strlen(extra));
	g_queue_push_tail(&v->ctrl_out, m);
	flush_ctrl(v);
}

/* ---------------- port data ---------------- */

static void flush_rx(struct vser_port *p)
{
	struct vser *v = p->dev;
	size_t off = 0;
	bool pushed = false;
	while (off < p->pending_len && kl_virtio_ready(v->vd)) {
		struct kl_vq_elem *e = vser_pop(v, rx_queue(p->nr));
		if (!e)
			break;
		size_t n = kl_iov_from_buf(e->iov + e->out_num, e->in_num, 0, p->pending + off,
					   p->pending_len - off);
		off += n;
		kl_virtio_push(v->vd, rx_queue(p->nr), e, (uint32_t)n);
		pushed = true;
		if (n == 0)
			break; /* a chain without writable bytes: try again on the next kick */
	}
	if (pushed)
		kl_virtio_notify(v->vd, rx_queue(p->nr));
	memmove(p->pending, p->pending + off, p->pending_len - off);
	p->pending_len -= off;
	if (!p->pending_len && p->cd)
		kl_chr_fe_accept_input(p->cd);
}

static bool guest_open(struct vser_port *p)
{
	return p->guest_connected || !multiport(p->dev);
}

static size_t port_can_read(void *opaque)
{
	struct vser_port *p = opaque;
	if (!kl_virtio_ready(p->dev->vd) || !guest_open(p) || p->pending_len)
		return 0;
	return RX_PENDING;
}

static void port_read(void *opaque, const uint8_t *buf, size_t len)
{
	struct vser_port *p = opaque;
	if (len > RX_PENDING - p->pending_len)
		len = RX_PENDING - p->pending_len;
	memcpy(p->pending + p->pending_len, buf, len);
	p->pending_len += len;
	flush_rx(p);
}

static void port_event(void *opaque, enum kl_chr_event ev)
{
	struct vser_port *p = opaque;
	p->host_connected = ev == KL_CHR_EVENT_OPENED;
	if (p->guest_ready)
		send_ctrl(p->dev, p->nr, PORT_OPEN, p->host_connected, NULL);
}

static const struct kl_chr_fe_ops port_chr_ops = {
	.can_read = port_can_read, .read = port_read, .event = port_event,
};

static void port_tx(struct vser *v, unsigned q)
{
	struct vser_port *p = q < 2 ? v->ports[0] : port_by_id(v, q / 2 - 1);
	struct kl_vq_elem *e;
	bool pushed = false;
	while ((e = vser_pop(v, q))) {
		for (unsigned i = 0; p && p->cd && i < e->out_num; i++)
			kl_chr_fe_write(p->cd, e->iov[i].iov_base, e->iov[i].iov_len);
		kl_virtio_push(v->vd, q, e, 0);
		pushed = true;
	}
	if (pushed)
		kl_virtio_notify(v->vd, q);
}

/* ---------------- control messages from the guest ---------------- */

static void set_guest_connected(struct vser_port *p, bool open)
{
	if (p->guest_connected == open)
		return;
	p->guest_connected = open;
	if (p->cd && !p->console)
		kl_chr_fe_set_open(p->cd, open);
	if (p->id)
		kl_monitor_vserport_change(p->id, open);
	if (open && p->cd)
		kl_chr_fe_accept_input(p->cd);
}

static void handle_ctrl(struct vser *v, uint32_t id, uint16_t event, uint16_t value)
{
	struct vser_port *p;
	switch (event) {
	case DEVICE_READY:
		if (value != 1)
			return; /* (a repeated one announces the ports again, as QEMU) */
		v->driver_ready = true;
		for (unsigned i = 0; i < v->max_ports; i++)
			if (v->ports[i])
				send_ctrl(v, i, DEVICE_ADD, 1, NULL);
		return;
	case PORT_READY:
		/* (QEMU answers it before DEVICE_READY too) */
		if (value != 1 || !(p = port_by_id(v, id)) || p->guest_ready)
			return;
		p->guest_ready = true;
		if (p->console)
			send_ctrl(v, id, CONSOLE_PORT, 1, NULL);
		if (p->name)
			send_ctrl(v, id, PORT_NAME, 1, p->name);
		if (p->host_connected)
			send_ctrl(v, id, PORT_OPEN, 1, NULL);
		return;
	case PORT_OPEN:
		if ((p = port_by_id(v, id)) && p->guest_ready)
			set_guest_connected(p, value != 0);
		return;
	default:
		return; /* host->guest events, or unknown: ignored */
	}
}

static void ctrl_tx(struct vser *v)
{
	struct kl_vq_elem *e;
	bool pushed = false;
	while ((e = vser_pop(v, 3))) {
		uint8_t m[8];
		size_t n = kl_iov_to_buf(e->iov, e->out_num, 0, m, sizeof(m));
		kl_virtio_push(v->vd, 3, e, 0);
		pushed = true;
		if (n == sizeof(m) && multiport(v))
			handle_ctrl(v, m[0] | m[1] << 8 | m[2] << 16 | (uint32_t)m[3] << 24,
				    m[4] | m[5] << 8, m[6] | m[7] << 8);
	}
	if (pushed)
		kl_virtio_notify(v->vd, 3);
}

static void vser_notify(struct kl_virtio_dev *vd, unsigned q)
{
	struct vser *v = vd->opaque;
	if (q == 2) {
		flush_ctrl(v);
	} else if (q == 3) {
		ctrl_tx(v);
	} else if (q & 1) {
		port_tx(v, q);
	} else {
		struct vser_port *p = q == 0 ? v->ports[0] : port_by_id(v, q / 2 - 1);
		if (p)
			flush_rx(p);
	}
}

static void vser_driver_ok(struct kl_virtio_dev *vd)
{
	struct vser *v = vd->opaque;
	if (!multiport(v) && v->ports[0] && v->ports[0]->cd)
		kl_chr_fe_accept_input(v->ports[0]->cd); /* single port: always open */
}

static void vser_reset(struct kl_virtio_dev *vd)
{
	struct vser *v = vd->opaque;
	v->driver_ready = false;
	GByteArray *m;
	while ((m = g_queue_pop_head(&v->ctrl_out)))
		g_byte_array_unref(m);
	for (unsigned i = 0; i < v->max_ports; i++) {
		struct vser_port *p = v->ports[i];
		if (!p)
			continue;
		p->guest_ready = false;
		p->pending_len = 0;
		set_guest_connected(p, false);
	}
}

/* emerg_wr (le32 at 8): one character to port 0, without a queue */
static void vser_config_write(struct kl_virtio_dev *vd, unsigned off, const void *buf,
			      unsigned len)
{
	struct vser *v = vd->opaque;
	if (off == 8 && len >= 1 && v->ports[0] && v->ports[0]->cd)
		kl_chr_fe_write(v->ports[0]->cd, buf, 1);
}

/* ---------------- VM state ---------------- */

/* Section "virtio-serial/INST" (vd->inst: the PCI address, or the
 * virtio-mmio base "0xBASE"): the control state of each port and
 * the bytes waiting on both sides (the transport has its own section). */
static int vser_save(void *opaque, struct kl_vms_out *o, char **err)
{
	struct vser *v = opaque;
	(void)err;
	kl_vms_put_u8(o, v->driver_ready);
	kl_vms_put_u32(o, v->max_ports);
	for (unsigned i = 0; i < v->max_ports; i++) {
		struct vser_port *p = v->ports[i];
		kl_vms_put_u8(o, p != NULL);
		if (!p)
			continue;
		kl_vms_put_u8(o, p->guest_ready);
		kl_vms_put_u8(o, p->guest_connected);
		kl_vms_put_u32(o, (uint32_t)p->pending_len);
		kl_vms_put_bytes(o, p->pending, p->pending_len);
	}
	kl_vms_put_u32(o, g_queue_get_length(&v->ctrl_out));
	for (GList *l = v->ctrl_out.head; l; l = l->next) {
		GByteArray *m = l->data;
		kl_vms_put_u32(o, m->len);
		kl_vms_put_bytes(o, m->data, m->len);
	}
	return 0;
}

struct port_tmp {
	uint8_t ready, connected;
	uint32_t len;
	uint8_t data[RX_PENDING];
};

static int vser_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	struct vser *v = opaque;
	(void)version, (void)err;
	uint8_t ready = kl_vms_get_u8(in);
	uint32_t n = kl_vms_get_u32(in);
	if (!kl_vms_failed(in) && n != v->max_ports)
		kl_vms_fail(in, "virtio-serial: %u ports in the stream, max_ports=%u here", n,
			    v->max_ports);
	struct port_tmp *t = g_new0(struct port_tmp, MAX_PORTS);
	for (unsigned i = 0; i < v->max_ports && !kl_vms_failed(in); i++) {
		uint8_t present = kl_vms_get_u8(in);
		if (!kl_vms_failed(in) && present != (v->ports[i] != NULL))
			kl_vms_fail(in, "virtio-serial: port %u %s here", i,
				    v->ports[i] ? "exists" : "does not exist");
		if (!present)
			continue;
		t[i].ready = kl_vms_get_u8(in);
		t[i].connected = kl_vms_get_u8(in);
		t[i].len = kl_vms_get_u32_max(in, RX_PENDING, "virtio-serial pending bytes");
		kl_vms_get_bytes(in, t[i].data, t[i].len);
		if (t[i].ready > 1 || t[i].connected > 1)
			kl_vms_fail(in, "virtio-serial: port %u flags %u/%u", i, t[i].ready,
				    t[i].connected);
	}
	uint32_t nmsg = kl_vms_get_u32_max(in, MAX_CTRL_PENDING, "virtio-serial control messages");
	GQueue msgs = G_QUEUE_INIT;
	for (uint32_t i = 0; i < nmsg && !kl_vms_failed(in); i++) {
		uint32_t len = kl_vms_get_u32_max(in, 8 + 256, "virtio-serial control message");
		GByteArray *m = g_byte_array_sized_new(len);
		g_byte_array_set_size(m, len);
		kl_vms_get_bytes(in, m->data, len);
		g_queue_push_tail(&msgs, m);
	}
	if (ready > 1)
		kl_vms_fail(in, "virtio-serial: driver-ready %u", ready);
	if (kl_vms_failed(in)) {
		GByteArray *m;
		while ((m = g_queue_pop_head(&msgs)))
			g_byte_array_unref(m);
		g_free(t);
		return -1;
	}
	vser_reset(v->vd); /* (drops the old control queue; events for ports closing) */
	v->driver_ready = ready;
	v->ctrl_out = msgs;
	for (unsigned i = 0; i < v->max_ports; i++) {
		struct vser_port *p = v->ports[i];
		if (!p)
			continue;
		p->guest_ready = t[i].ready;
		set_guest_connected(p, t[i].connected);
		memcpy(p->pending, t[i].data, t[i].len);
		p->pending_len = t[i].len;
	}
	g_free(t);
	return 0;
}

static const struct kl_vmstate_ops vser_vmstate = {
	.kind = "virtio-serial", .version = 1, .min_version = 1,
	.save = vser_save, .load = vser_load,
};

/* ---------------- devices ---------------- */

static void vser_destroy(struct kl_virtio_dev *vd)
{
	struct vser *v = vd->opaque;
	kl_vmstate_unregister(vd->vm, &vser_vmstate, v);
	for (unsigned i = 0; i < v->max_ports; i++) {
		struct vser_port *p = v->ports[i];
		if (!p)
			continue;
		if (p->cd)
			kl_chr_fe_detach(p->cd);
		g_free(p->id);
		g_free(p->name);
		g_free(p);
	}
	GByteArray *m;
	while ((m = g_queue_pop_head(&v->ctrl_out)))
		g_byte_array_unref(m);
	g_ptr_array_remove(devices, v);
	if (!devices->len) {
		g_ptr_array_free(devices, TRUE);
		devices = NULL;
	}
	g_free((void *)vd->ops);
	g_free(v->id);
	g_free(v);
}

static int vser_create(struct kl_vm *vm, struct kl_opts *o, enum kl_virtio_transport_kind t,
		       char **err)
{
	const char *tname = kl_virtio_type_name("virtio-serial", t);
	uint64_t maxp, slot = 0;
	const char *id = kl_opts_get(o, "id");
	if (kl_opts_get_u64(o, "max_ports", MAX_PORTS, &maxp, err) < 0 ||
	    (t == KL_VIRTIO_TRANSPORT_PCI && kl_opts_get_u64(o, "addr", 0, &slot, err) < 0))
		return -1;
	if (maxp < 1 || maxp > MAX_PORTS) {
		*err = g_strdup_printf("max_ports=%llu is out of range (1..%d)",
				       (unsigned long long)maxp, MAX_PORTS);
		return -1;
	}
	if (slot >= KL_PCI_NSLOTS) {
		*err = g_strdup_printf("addr=%llu is not a PCI slot (1..31)", (unsigned long long)slot);
		return -1;
	}
	struct vser *v = g_new0(struct vser, 1);
	v->max_ports = (unsigned)maxp;
	v->id = g_strdup(id);
	g_queue_init(&v->ctrl_out);
	struct kl_virtio_ops *ops = g_new0(struct kl_virtio_ops, 1);
	ops->device_features = 1ULL << F_MULTIPORT | 1ULL << F_EMERG_WRITE;
	ops->queue_notify = vser_notify;
	ops->driver_ok = vser_driver_ok;
	ops->reset = vser_reset;
	ops->config_write = vser_config_write;
	ops->destroy = vser_destroy;
	struct kl_virtio_pci_info info = {
		.name = tname, .device_id = VIRTIO_ID_CONSOLE, .class_code = 0x078000,
		.num_queues = 2 * (v->max_ports + 1), .queue_size = QUEUE_SIZE,
		.config_len = CONFIG_LEN, .slot = slot ? (int)slot : -1,
	};
	if (!devices)
		devices = g_ptr_array_new();
	g_ptr_array_add(devices, v);
	v->vd = kl_virtio_create(vm, t, &info, ops, v, err);
	if (!v->vd) {
		g_ptr_array_remove(devices, v);
		g_free(ops);
		g_free(v->id);
		g_free(v);
		return -1;
	}
	uint32_t mp = v->max_ports;
	uint8_t *c = v->vd->config;
	c[4] = mp, c[5] = mp >> 8, c[6] = mp >> 16, c[7] = mp >> 24;
	kl_vmstate_register(vm, v->vd->inst, &vser_vmstate, v);
	return 0;
}

/* bus=ID.0 names the virtio-serial device; without it the first one with
 * a free port. */
static struct vser *find_bus(const char *bus, char **err)
{
	for (guint i = 0; devices && i < devices->len; i++) {
		struct vser *v = g_ptr_array_index(devices, i);
		if (!bus) {
			for (unsigned n = 1; n < v->max_ports; n++)
				if (!v->ports[n])
					return v;
			continue;
		}
		char *name = v->id ? g_strdup_printf("%s.0", v->id) : NULL;
		bool match = name && !strcmp(name, bus);
		g_free(name);
		if (match)
			return v;
	}
	*err = bus ? g_strdup_printf("Bus '%s' not found", bus)
		   : g_strdup("No 'virtio-serial-bus' bus found for device (add -device "
			      "virtio-serial-pci or virtio-serial-device first)");
	return NULL;
}

static int port_create(struct kl_vm *vm, struct kl_opts *o, bool console, char **err)
{
	(void)vm;
	const char *chr = kl_opts_get(o, "chardev");
	const char *name = kl_opts_get(o, "name");
	const char *id = kl_opts_get(o, "id");
	uint64_t nr;
	if (kl_opts_get_u64(o, "nr", UINT64_MAX, &nr, err) < 0)
		return -1;
	struct vser *v = find_bus(kl_opts_get(o, "bus"), err);
	if (!v)
		return -1;
	struct kl_chardev *cd = NULL;
	if (chr && !(cd = kl_chardev_find(chr))) {
		*err = g_strdup_printf("Property '%s.chardev' can't find value '%s'",
				       console ? "virtconsole" : "virtserialport", chr);
		return -1;
	}
	if (name && (!*name || strlen(name) > 255)) {
		*err = g_strdup("name= must be 1 to 255 bytes");
		return -1;
	}
	if (nr == UINT64_MAX) {
		/* port 0 is for a virtconsole (as QEMU) */
		nr = console && !v->ports[0] ? 0 : 1;
		while (nr < v->max_ports && v->ports[nr])
			nr++;
	}
	if (nr >= v->max_ports) {
		*err = g_strdup_printf("nr=%llu: the bus has %u ports (0..%u)",
				       (unsigned long long)nr, v->max_ports, v->max_ports - 1);
		return -1;
	}
	if (nr == 0 && !console) {
		*err = g_strdup("Port number 0 on virtio-serial devices reserved for virtconsole "
				"devices for backward compatibility");
		return -1;
	}
	if (v->ports[nr]) {
		*err = g_strdup_printf("nr=%llu: port %llu is already in use", (unsigned long long)nr,
				       (unsigned long long)nr);
		return -1;
	}
	for (unsigned i = 0; name && i < v->max_ports; i++)
		if (v->ports[i] && v->ports[i]->name && !strcmp(v->ports[i]->name, name)) {
			*err = g_strdup_printf("a port with name '%s' already exists", name);
			return -1;
		}
	struct vser_port *p = g_new0(struct vser_port, 1);
	p->dev = v;
	p->nr = (unsigned)nr;
	p->console = console;
	p->id = g_strdup(id);
	p->name = g_strdup(name);
	if (cd && kl_chr_fe_attach(cd, &port_chr_ops, p, err) < 0) {
		g_free(p->id);
		g_free(p->name);
		g_free(p);
		return -1;
	}
	p->cd = cd;
	if (cd) {
		p->host_connected = kl_chr_fe_connected(cd);
		if (!console)
			kl_chr_fe_set_open(cd, false); /* follows the guest */
	}
	v->ports[nr] = p;
	return 0;
}

static int vcon_create(struct kl_vm *vm, struct kl_opts *o, char **err)
{
	return port_create(vm, o, true, err);
}

static int vport_create(struct kl_vm *vm, struct kl_opts *o, char **err)
{
	return port_create(vm, o, false, err);
}

KL_VIRTIO_DEVICE_TYPES(virtio_serial, "virtio-serial",
		       "virtio-serial device (max_ports=N (1..30), addr=SLOT on PCI)",
		       vser_create, false)

static const struct kl_device_type virtconsole = {
	.name = "virtconsole",
	.help = "virtio console port (chardev=ID, name=, nr=, bus=SERIAL.0)",
	.create = vcon_create,
};
KL_DEVICE_TYPE(virtconsole)

static const struct kl_device_type virtserialport = {
	.name = "virtserialport",
	.help = "virtio serial port (chardev=ID, name=NAME, nr=, bus=SERIAL.0)",
	.create = vport_create,
};
KL_DEVICE_TYPE(virtserialport)
