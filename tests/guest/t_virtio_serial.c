/* Probe test `vserial` for virtio-serial-pci (virtio 1.x section 5.3,
 * MULTIPORT; virtio-serial-device with `transport=mmio`), driven by
 * tests/qmp/test_vserial.py: a virtconsole at port 0
 * and a virtserialport named org.qemu.guest_agent.0 at port 1, both on
 * socket chardevs the host has connected before the guest runs.
 *
 *  1. hostile control messages before DEVICE_READY and after it (short
 *     buffers, bad port ids, unknown events, DEVICE_READY / PORT_READY
 *     value 0, host-to-guest events) must be
 *     ignored: no reply, the device keeps working;
 *  2. DEVICE_READY -> DEVICE_ADD 0 and 1; PORT_READY 0 -> CONSOLE_PORT and
 *     PORT_OPEN 1 (the host is connected); PORT_READY 1 -> PORT_NAME with
 *     the name, PORT_OPEN 1;
 *  3. the guest opens both ports (PORT_OPEN 1: VSERPORT_CHANGE on QMP),
 *     writes "console-hello" / "port-hello", prints "VSER READY";
 *  4. the host sends "ping-console" / "ping-port": the guest checks them
 *     and answers "got:ping-..." on each port;
 *  5. the host closes the port's socket: PORT_OPEN 0 for port 1 arrives;
 *     the guest closes port 1 (PORT_OPEN 0: VSERPORT_CHANGE open=false).
 */
#include "probe.h"
#include "virtio_drv.h"

#define VIRTIO_ID_CONSOLE 3
#define F_MULTIPORT 1
#define QSIZE 16
#define BUFSZ 256
#define TMO 20000000

enum { DEVICE_READY = 0, DEVICE_ADD = 1, PORT_READY = 3, CONSOLE_PORT = 4, PORT_OPEN = 6,
       PORT_NAME = 7 };

struct ctrl {
	uint32_t id;
	uint16_t event, value;
} __attribute__((packed));

static struct vdev d;
static struct vq q[6]; /* 0/1 port 0, 2/3 control, 4/5 port 1 */
static uint8_t *rxbuf[6];  /* QSIZE buffers of BUFSZ for the rx queues 0, 2, 4 */
static uint8_t *txbuf;

static void post_rx(unsigned qi, unsigned slot)
{
	struct vbuf b = { (uint64_t)(rxbuf[qi] + slot * BUFSZ), BUFSZ, true };
	vq_add(&q[qi], &b, 1);
}

/* Queue a device-readable buffer on tx queue qi and wait for it. */
static int send_buf(unsigned qi, const void *p, uint32_t len)
{
	static unsigned n;
	uint8_t *t = txbuf + (n++ % QSIZE) * BUFSZ;
	memcpy(t, p, len);
	struct vbuf b = { (uint64_t)t, len, false };
	vq_add(&q[qi], &b, 1);
	vq_kick(&q[qi]);
	uint32_t l;
	if (vq_wait(&q[qi], &l, TMO) < 0)
		return probe_fail("tx queue %u: no completion", qi);
	return 0;
}

static int send_ctrl(uint32_t id, uint16_t ev, uint16_t val)
{
	struct ctrl c = { id, ev, val };
	return send_buf(3, &c, sizeof(c));
}

/* Next message on an rx queue (the buffer is posted again).  -1: none
 * within timeout_us. */
static int recv_buf(unsigned qi, uint8_t *out, uint32_t *len, uint64_t timeout_us)
{
	int head = vq_wait(&q[qi], len, timeout_us);
	if (head < 0)
		return -1;
	/* the driver posts one descriptor per buffer, round robin */
	uint64_t addr = q[qi].desc[head].addr;
	unsigned slot = (unsigned)((addr - (uint64_t)rxbuf[qi]) / BUFSZ);
	if (*len > BUFSZ)
		*len = BUFSZ;
	memcpy(out, (void *)addr, *len);
	post_rx(qi, slot % QSIZE);
	vq_kick(&q[qi]);
	return 0;
}

/* Wait for control message (id, event); its value and any bytes after the
 * header go to *value / extra. */
static int expect_ctrl(uint32_t id, uint16_t ev, uint16_t *value, char *extra, size_t xlen)
{
	uint8_t m[BUFSZ];
	uint32_t len;
	for (int i = 0; i < 16; i++) {
		if (recv_buf(2, m, &len, TMO) < 0)
			return probe_fail("no control message (%u, %u)", id, ev);
		struct ctrl c;
		if (len < sizeof(c))
			return probe_fail("short control message (%u bytes)", len);
		memcpy(&c, m, sizeof(c));
		if (c.id != id || c.event != ev) {
			printf("vserial: (other control message %u/%u/%u)\n", c.id, c.event, c.value);
			continue;
		}
		if (value)
			*value = c.value;
		if (extra) {
			size_t n = len - sizeof(c) < xlen - 1 ? len - sizeof(c) : xlen - 1;
			memcpy(extra, m + sizeof(c), n);
			extra[n] = 0;
		}
		return 0;
	}
	return probe_fail("control message (%u, %u) never came", id, ev);
}

static int no_ctrl(const char *after)
{
	uint8_t m[BUFSZ];
	uint32_t len;
	if (recv_buf(2, m, &len, 200000) == 0) {
		struct ctrl c;
		memcpy(&c, m, sizeof(c));
		return probe_fail("a reply (%u/%u/%u) to %s", c.id, c.event, c.value, after);
	}
	return 0;
}

static int expect_data(unsigned qi, const char *want)
{
	uint8_t m[BUFSZ + 1];
	char got[BUFSZ + 1];
	size_t have = 0, wl = strlen(want);
	while (have < wl) {
		uint32_t len;
		if (recv_buf(qi, m, &len, TMO) < 0)
			return probe_fail("queue %u: no data (have %u of '%s')", qi, (unsigned)have, want);
		if (have + len > BUFSZ)
			return probe_fail("queue %u: too much data", qi);
		memcpy(got + have, m, len);
		have += len;
	}
	got[have] = 0;
	if (have != wl || memcmp(got, want, wl))
		return probe_fail("queue %u: got '%s', want '%s'", qi, got, want);
	return 0;
}

static int hostile(void)
{
	static const uint8_t shortmsg[4] = { 1, 0, 0, 0 };
	if (send_buf(3, shortmsg, sizeof(shortmsg)) < 0 || send_ctrl(999, PORT_READY, 1) < 0 ||
	    send_ctrl(0xffffffffu, PORT_OPEN, 1) < 0 || send_ctrl(1, 0x55, 7) < 0 ||
	    send_ctrl(0, DEVICE_READY, 0) < 0 || send_ctrl(1, PORT_READY, 0) < 0 ||
	    send_ctrl(0, CONSOLE_PORT, 1) < 0)
		return -1;
	return no_ctrl("hostile control messages");
}

static int t_vserial(void)
{
	if (vdev_find_any(VIRTIO_ID_CONSOLE, 0, &d) < 0)
		return -1;
	uint64_t got;
	if (vdev_negotiate(&d, 1ULL << F_MULTIPORT, &got) < 0)
		return -1;
	if (!(got & (1ULL << F_MULTIPORT)))
		return probe_fail("MULTIPORT not offered (features 0x%llx)", (unsigned long long)got);
	uint32_t maxp = vdev_cfg32(&d, 4);
	if (maxp < 2)
		return probe_fail("max_nr_ports %u", maxp);
	for (unsigned i = 0; i < 6; i++)
		if (vq_setup(&d, &q[i], i, QSIZE) < 0)
			return -1;
	txbuf = probe_alloc(QSIZE * BUFSZ, 16);
	for (unsigned i = 0; i < 6; i += 2) {
		rxbuf[i] = probe_alloc(QSIZE * BUFSZ, 16);
		if (!rxbuf[i])
			return probe_fail("out of memory");
		for (unsigned s = 0; s < QSIZE; s++)
			post_rx(i, s);
	}
	if (!txbuf)
		return probe_fail("out of memory");
	vdev_driver_ok(&d);
	for (unsigned i = 0; i < 6; i += 2)
		vq_kick(&q[i]);

	if (hostile() < 0) /* before DEVICE_READY */
		return -1;
	if (send_ctrl(0, DEVICE_READY, 1) < 0)
		return -1;
	uint16_t v;
	if (expect_ctrl(0, DEVICE_ADD, NULL, NULL, 0) < 0 || expect_ctrl(1, DEVICE_ADD, NULL, NULL, 0) < 0)
		return -1;
	/* after DEVICE_READY: ports that do not exist */
	if (send_ctrl(maxp, PORT_READY, 1) < 0 || send_ctrl(7, PORT_OPEN, 1) < 0 ||
	    send_ctrl(7, PORT_READY, 1) < 0 || no_ctrl("bad port ids") < 0)
		return -1;
	if (send_ctrl(0, PORT_READY, 1) < 0 || expect_ctrl(0, CONSOLE_PORT, NULL, NULL, 0) < 0 ||
	    expect_ctrl(0, PORT_OPEN, &v, NULL, 0) < 0)
		return -1;
	if (v != 1)
		return probe_fail("port 0: host PORT_OPEN value %u", v);
	char name[64];
	if (send_ctrl(1, PORT_READY, 1) < 0 || expect_ctrl(1, PORT_NAME, NULL, name, sizeof(name)) < 0)
		return -1;
	if (strcmp(name, "org.qemu.guest_agent.0"))
		return probe_fail("port 1 name '%s'", name);
	if (expect_ctrl(1, PORT_OPEN, &v, NULL, 0) < 0)
		return -1;
	if (v != 1)
		return probe_fail("port 1: host PORT_OPEN value %u", v);
	if (send_ctrl(0, PORT_OPEN, 1) < 0 || send_ctrl(1, PORT_OPEN, 1) < 0)
		return -1;
	if (send_buf(1, "console-hello", 13) < 0 || send_buf(5, "port-hello", 10) < 0)
		return -1;
	printf("VSER READY\n");
	if (expect_data(0, "ping-console") < 0 || expect_data(4, "ping-port") < 0)
		return -1;
	if (send_buf(1, "got:ping-console", 16) < 0 || send_buf(5, "got:ping-port", 13) < 0)
		return -1;
	/* the host hangs up port 1 */
	if (expect_ctrl(1, PORT_OPEN, &v, NULL, 0) < 0)
		return -1;
	if (v != 0)
		return probe_fail("port 1: host PORT_OPEN %u after the hang-up", v);
	if (send_ctrl(1, PORT_OPEN, 0) < 0)
		return -1;
	if (vdev_status(&d) & VIRTIO_S_NEEDS_RESET)
		return probe_fail("device needs reset (status 0x%x)", vdev_status(&d));
	printf("VSER CLOSED\n");
	/* QEMU rate-limits VSERPORT_CHANGE to one a second per port: give the
	 * reference run's close event time to leave before the VMM exits */
	udelay(1500000);
	return 0;
}

PROBE_TEST(vserial, t_vserial);
