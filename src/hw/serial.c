/* 16550A UART, a front-end of the chardev layer (-serial, -device isa-serial). */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kvmlite/bus.h"
#include "kvmlite/chardev.h"
#include "kvmlite/device.h"
#include "kvmlite/hw.h"
#include "kvmlite/opts.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define UART_IER_RDI 0x01
#define UART_IER_THRI 0x02
#define UART_IER_RLSI 0x04
#define UART_IER_MSI 0x08
#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI 0x00
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04
#define UART_IIR_FIFO 0xc0
#define UART_LCR_DLAB 0x80
#define UART_MCR_DTR 0x01
#define UART_MCR_RTS 0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10
#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_MSR_CTS 0x10
#define UART_MSR_DSR 0x20
#define UART_MSR_RI 0x40
#define UART_MSR_DCD 0x80
#define RX_SIZE 256

struct serial {
	struct kl_vm *vm;
	unsigned irq, index;
	uint8_t ier, lcr, mcr, lsr, msr, scr, fcr, dll, dlm;
	bool thr_ipending;
	int irq_level;
	uint8_t rx[RX_SIZE];
	unsigned rx_head, rx_count;
	struct kl_chardev *cd; /* NULL: no back-end */
};

static const struct kl_vmstate_ops serial_vmstate;
static unsigned used_ports; /* bit i: COM(i+1) exists */

/* Highest-priority pending interrupt source (IIR bits 3:0). */
static uint8_t pending_source(const struct serial *s)
{
	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return UART_IIR_RDI;
	if ((s->ier & UART_IER_THRI) && s->thr_ipending)
		return UART_IIR_THRI;
	return UART_IIR_NO_INT;
}

static void update_irq(struct serial *s)
{
	/* OUT2 gates the interrupt line on PCs. */
	int level = pending_source(s) != UART_IIR_NO_INT && (s->mcr & UART_MCR_OUT2);
	if (level != s->irq_level) {
		s->irq_level = level;
		kl_vm_set_irq(s->vm, s->irq, level);
	}
}

static uint8_t iir_value(const struct serial *s)
{
	return pending_source(s) | ((s->fcr & 1) ? UART_IIR_FIFO : 0);
}

static void rx_push(struct serial *s, uint8_t b)
{
	if (s->rx_count == RX_SIZE)
		return; /* overrun: drop */
	s->rx[(s->rx_head + s->rx_count) % RX_SIZE] = b;
	s->rx_count++;
}

static void accept_input(struct serial *s)
{
	if (s->cd && s->rx_count < RX_SIZE)
		kl_chr_fe_accept_input(s->cd);
}

static void transmit(struct serial *s, uint8_t b)
{
	if (s->mcr & UART_MCR_LOOP) {
		rx_push(s, b);
		return;
	}
	/* nothing connected, or a full buffer: the byte is dropped, as a UART
	 * with nothing listening does */
	if (s->cd)
		kl_chr_fe_write(s->cd, &b, 1);
}

static size_t chr_can_read(void *opaque)
{
	struct serial *s = opaque;
	return RX_SIZE - s->rx_count;
}

static void chr_read(void *opaque, const uint8_t *buf, size_t len)
{
	struct serial *s = opaque;
	for (size_t i = 0; i < len; i++)
		rx_push(s, buf[i]);
	s->lsr |= UART_LSR_DR;
	update_irq(s);
}

static const struct kl_chr_fe_ops serial_chr_ops = { .can_read = chr_can_read, .read = chr_read };

static uint64_t serial_read(void *opaque, uint64_t off, unsigned size)
{
	struct serial *s = opaque;
	(void)size;
	uint8_t v = 0xff;
	switch (off) {
	case 0:
		if (s->lcr & UART_LCR_DLAB) {
			v = s->dll;
		} else {
			v = 0;
			if (s->rx_count) {
				v = s->rx[s->rx_head];
				s->rx_head = (s->rx_head + 1) % RX_SIZE;
				s->rx_count--;
			}
			if (!s->rx_count)
				s->lsr &= ~UART_LSR_DR;
			update_irq(s);
			accept_input(s);
		}
		break;
	case 1:
		v = (s->lcr & UART_LCR_DLAB) ? s->dlm : s->ier;
		break;
	case 2:
		v = iir_value(s);
		if ((v & 0x0f) == UART_IIR_THRI) {
			s->thr_ipending = false;
			update_irq(s);
		}
		break;
	case 3: v = s->lcr; break;
	case 4: v = s->mcr; break;
	case 5: v = s->lsr | UART_LSR_THRE | UART_LSR_TEMT; break;
	case 6:
		if (s->mcr & UART_MCR_LOOP) {
			v = 0;
			if (s->mcr & UART_MCR_RTS) v |= UART_MSR_CTS;
			if (s->mcr & UART_MCR_DTR) v |= UART_MSR_DSR;
			if (s->mcr & UART_MCR_OUT1) v |= UART_MSR_RI;
			if (s->mcr & UART_MCR_OUT2) v |= UART_MSR_DCD;
		} else {
			v = s->msr;
		}
		break;
	case 7: v = s->scr; break;
	}
	return v;
}

static void serial_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct serial *s = opaque;
	(void)size;
	uint8_t v = (uint8_t)val;
	switch (off) {
	case 0:
		if (s->lcr & UART_LCR_DLAB) {
			s->dll = v;
		} else {
			transmit(s, v);
			if (s->mcr & UART_MCR_LOOP)
				s->lsr |= UART_LSR_DR;
			s->thr_ipending = true; /* transmitted at once: THR empty again */
			update_irq(s);
		}
		break;
	case 1:
		if (s->lcr & UART_LCR_DLAB) {
			s->dlm = v;
		} else {
			uint8_t old = s->ier;
			s->ier = v & 0x0f;
			/* Enabling THRI with an empty THR raises it at once. */
			if (!(old & UART_IER_THRI) && (s->ier & UART_IER_THRI))
				s->thr_ipending = true;
			update_irq(s);
		}
		break;
	case 2:
		s->fcr = v & 0xc9;
		if (v & 0x02) { /* clear RX FIFO */
			s->rx_count = 0;
			s->lsr &= ~UART_LSR_DR;
			accept_input(s);
		}
		update_irq(s);
		break;
	case 3: s->lcr = v; break;
	case 4:
		s->mcr = v & 0x1f;
		update_irq(s);
		break;
	case 7: s->scr = v; break;
	default: break;
	}
}

static const struct kl_io_ops serial_ops = { serial_read, serial_write };

static void serial_reset(void *opaque)
{
	struct serial *s = opaque;
	s->ier = s->lcr = s->mcr = s->scr = s->fcr = 0;
	s->dll = 0x0c;
	s->dlm = 0;
	s->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	s->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	s->thr_ipending = false;
	s->rx_count = 0;
	update_irq(s);
}

/* Leave the chardev (the layer closes it at exit), then the state.  From
 * kl_vm_destroy. */
static void serial_free(void *opaque)
{
	struct serial *s = opaque;
	if (s->cd)
		kl_chr_fe_detach(s->cd);
	used_ports &= ~(1u << s->index);
	kl_vmstate_unregister(s->vm, &serial_vmstate, s);
	g_free(s);
}

/* Migration section "16550/<port>": the registers, the pending THR
 * interrupt, the line level and the unread receive bytes. */
static int serial_save(void *opaque, struct kl_vms_out *o, char **err)
{
	struct serial *s = opaque;
	(void)err;
	uint8_t regs[9] = { s->ier, s->lcr, s->mcr, s->lsr, s->msr, s->scr, s->fcr, s->dll, s->dlm };
	kl_vms_put_bytes(o, regs, sizeof(regs));
	kl_vms_put_u8(o, s->thr_ipending);
	kl_vms_put_u8(o, (uint8_t)s->irq_level);
	kl_vms_put_u32(o, s->rx_count);
	for (unsigned i = 0; i < s->rx_count; i++)
		kl_vms_put_u8(o, s->rx[(s->rx_head + i) % RX_SIZE]);
	return 0;
}

static int serial_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	struct serial *s = opaque;
	(void)version, (void)err;
	uint8_t regs[9], rx[RX_SIZE];
	kl_vms_get_bytes(in, regs, sizeof(regs));
	uint8_t thr = kl_vms_get_u8(in), level = kl_vms_get_u8(in);
	uint32_t n = kl_vms_get_u32_max(in, RX_SIZE, "16550 receive count");
	kl_vms_get_bytes(in, rx, n);
	if (kl_vms_failed(in))
		return -1;
	if (thr > 1 || level > 1) {
		kl_vms_fail(in, "16550: impossible THR-pending %u / line level %u", thr, level);
		return -1;
	}
	s->ier = regs[0] & 0x0f;
	s->lcr = regs[1];
	s->mcr = regs[2] & 0x1f;
	s->lsr = regs[3];
	s->msr = regs[4];
	s->scr = regs[5];
	s->fcr = regs[6];
	s->dll = regs[7];
	s->dlm = regs[8];
	s->thr_ipending = thr;
	memcpy(s->rx, rx, n);
	s->rx_head = 0;
	s->rx_count = n;
	/* the irqchip section (loaded before) holds the line; agree with it */
	s->irq_level = level;
	kl_vm_set_irq(s->vm, s->irq, level);
	update_irq(s);
	accept_input(s);
	return 0;
}

static const struct kl_vmstate_ops serial_vmstate = {
	.kind = "16550", .version = 1, .min_version = 1,
	.save = serial_save, .load = serial_load,
};

static const unsigned com_base[] = { 0x3f8, 0x2f8, 0x3e8, 0x2e8 };
static const unsigned com_irq[] = { 4, 3, 4, 3 };

int kl_serial_create(struct kl_vm *vm, struct kl_chardev *cd, int index, char **err)
{
	if (index < 0) { /* the first free port, as QEMU's isa-serial */
		for (index = 0; index < KL_SERIAL_MAX && (used_ports & (1u << index)); index++)
			;
	}
	if (index >= KL_SERIAL_MAX) {
		*err = g_strdup_printf("at most %d serial ports are supported", KL_SERIAL_MAX);
		return -1;
	}
	if (used_ports & (1u << index)) {
		*err = g_strdup_printf("serial port index %d is already in use", index);
		return -1;
	}
	struct serial *s = g_new0(struct serial, 1);
	s->vm = vm;
	s->index = (unsigned)index;
	s->irq = com_irq[index];
	serial_reset(s);
	if (kl_bus_register(&vm->pio, com_base[index], 8, &serial_ops, s, "serial") < 0) {
		*err = g_strdup_printf("serial port at 0x%x overlaps another device", com_base[index]);
		g_free(s);
		return -1;
	}
	if (cd && kl_chr_fe_attach(cd, &serial_chr_ops, s, err) < 0) {
		kl_bus_unregister(&vm->pio, com_base[index], s);
		g_free(s);
		return -1;
	}
	s->cd = cd;
	used_ports |= 1u << index;
	kl_vm_add_reset_handler(vm, serial_reset, s);
	kl_vm_add_cleanup(vm, serial_free, s);
	char inst[16];
	snprintf(inst, sizeof(inst), "%x", com_base[index]);
	kl_vmstate_register(vm, inst, &serial_vmstate, s);
	return 0;
}

/* -device isa-serial[,chardev=ID][,id=][,index=N] */
static int isa_serial_create(struct kl_vm *vm, struct kl_opts *o, char **err)
{
	const char *chr = kl_opts_get(o, "chardev");
	uint64_t index;
	if (kl_opts_get_u64(o, "index", UINT64_MAX, &index, err) < 0)
		return -1;
	struct kl_chardev *cd = NULL;
	if (chr && !(cd = kl_chardev_find(chr))) {
		*err = g_strdup_printf("Property 'isa-serial.chardev' can't find value '%s'", chr);
		return -1;
	}
	if (index != UINT64_MAX && index >= KL_SERIAL_MAX) {
		*err = g_strdup_printf("index=%llu: at most %d serial ports (0-%d)",
				       (unsigned long long)index, KL_SERIAL_MAX, KL_SERIAL_MAX - 1);
		return -1;
	}
	return kl_serial_create(vm, cd, index == UINT64_MAX ? -1 : (int)index, err);
}

static const struct kl_device_type isa_serial_type = {
	.name = "isa-serial",
	.help = "16550A UART at COM1-4: chardev=ID[,index=0-3]",
	.create = isa_serial_create,
};
KL_DEVICE_TYPE(isa_serial_type)
