/* PC platform odds and ends: reset control register (0xcf9), the i8042
 * reset line (0x64 <- 0xfe, no keyboard controller behind it), the POST
 * port 0x80, and a read-only CMOS RTC (0x70/0x71) giving host UTC time. */
#include <glib.h>
#include <string.h>
#include <time.h>

#include "kvmlite/bus.h"
#include "kvmlite/hw.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

struct platform {
	struct kl_vm *vm;
	uint8_t rcr;       /* 0xcf9 */
	uint8_t cmos_idx;
	uint8_t cmos[128];
};

static uint64_t rcr_read(void *opaque, uint64_t off, unsigned size)
{
	struct platform *p = opaque;
	(void)size;
	return off == 0 ? p->rcr : 0xff;
}

static void rcr_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct platform *p = opaque;
	if (off != 0 || size != 1)
		return;
	/* Bit 2 (RST_CPU) triggers; bit 1 selects hard reset: both reset here. */
	if (val & 0x04)
		kl_vm_request_reset(p->vm, true, "guest-reset");
	p->rcr = (uint8_t)(val & 0x0a);
}

static const struct kl_io_ops rcr_ops = { rcr_read, rcr_write };

static uint64_t kbd_read(void *opaque, uint64_t off, unsigned size)
{
	(void)opaque; (void)off; (void)size;
	/* No keyboard controller: all-ones makes Linux's i8042 probe give up
	 * at once ("No controller found"). */
	return 0xff;
}

static void kbd_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct platform *p = opaque;
	(void)size;
	if (off == 4 && (val & 0xff) == 0xfe) /* pulse reset line */
		kl_vm_request_reset(p->vm, true, "guest-reset");
}

static const struct kl_io_ops kbd_ops = { kbd_read, kbd_write };

static uint64_t post_read(void *opaque, uint64_t off, unsigned size)
{
	(void)opaque; (void)off; (void)size;
	return 0xff;
}

static void post_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	(void)opaque; (void)off; (void)val; (void)size;
}

static const struct kl_io_ops post_ops = { post_read, post_write };

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t cmos_value(struct platform *p, uint8_t idx)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	switch (idx) {
	case 0x00: return bcd(tm.tm_sec);
	case 0x02: return bcd(tm.tm_min);
	case 0x04: return bcd(tm.tm_hour);
	case 0x06: return bcd(tm.tm_wday + 1);
	case 0x07: return bcd(tm.tm_mday);
	case 0x08: return bcd(tm.tm_mon + 1);
	case 0x09: return bcd(tm.tm_year % 100);
	case 0x32: return bcd(tm.tm_year / 100 + 19);
	case 0x0a: return 0x26;       /* UIP clear, 32.768 kHz, 1024 Hz */
	case 0x0b: return 0x02;       /* 24-hour, BCD */
	case 0x0c: return 0x00;
	case 0x0d: return 0x80;       /* valid RAM and time */
	default: return p->cmos[idx & 0x7f];
	}
}

static uint64_t rtc_read(void *opaque, uint64_t off, unsigned size)
{
	struct platform *p = opaque;
	(void)size;
	if (off == 1)
		return cmos_value(p, p->cmos_idx);
	return 0xff;
}

static void rtc_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct platform *p = opaque;
	(void)size;
	if (off == 0)
		p->cmos_idx = val & 0x7f; /* bit 7 is the NMI mask */
	else if (p->cmos_idx >= 0x0e)
		p->cmos[p->cmos_idx] = (uint8_t)val; /* scratch RAM; the clock is read-only */
}

static const struct kl_io_ops rtc_ops = { rtc_read, rtc_write };

static void platform_reset(void *opaque)
{
	struct platform *p = opaque;
	p->rcr = 0;
}

/* ---- VM state: section "platform/0" (kvmlite/vmstate.h) ----
 * v1: the reset control register, the CMOS index latch (a guest may stop
 * between its write to 0x70 and its read of 0x71), the 128 CMOS bytes (the
 * scratch RAM; the clock registers are read from the host's UTC time). */
static int platform_save(void *opaque, struct kl_vms_out *out, char **err)
{
	(void)err;
	struct platform *p = opaque;
	kl_vms_put_u8(out, p->rcr);
	kl_vms_put_u8(out, p->cmos_idx);
	kl_vms_put_bytes(out, p->cmos, sizeof(p->cmos));
	return 0;
}

static int platform_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	struct platform *p = opaque;
	uint8_t rcr = kl_vms_get_u8(in);
	uint8_t idx = kl_vms_get_u8(in);
	uint8_t cmos[sizeof(p->cmos)];
	kl_vms_get_bytes(in, cmos, sizeof(cmos));
	if (kl_vms_failed(in))
		return -1;
	if (idx > 0x7f) {
		*err = g_strdup_printf("CMOS index %#x is past the 128 bytes", idx);
		return -1;
	}
	if (rcr & ~0x0au) {
		*err = g_strdup_printf("reset control %#x has bits the register never holds", rcr);
		return -1;
	}
	p->rcr = rcr;
	p->cmos_idx = idx;
	memcpy(p->cmos, cmos, sizeof(cmos));
	return 0;
}

static const struct kl_vmstate_ops platform_vmstate_ops = {
	.kind = "platform",
	.version = 1,
	.min_version = 1,
	.save = platform_save,
	.load = platform_load,
};

static void platform_free(void *opaque)
{
	struct platform *p = opaque;
	kl_vmstate_unregister(p->vm, &platform_vmstate_ops, p);
	g_free(p);
}

int kl_platform_init(struct kl_vm *vm, char **err)
{
	struct platform *p = g_new0(struct platform, 1);
	p->vm = vm;
	if (kl_bus_register(&vm->pio, 0xcf9, 1, &rcr_ops, p, "reset-control") < 0 ||
	    kl_bus_register(&vm->pio, 0x60, 5, &kbd_ops, p, "i8042-reset") < 0 ||
	    kl_bus_register(&vm->pio, 0x80, 1, &post_ops, p, "post") < 0 ||
	    kl_bus_register(&vm->pio, 0x70, 2, &rtc_ops, p, "cmos-rtc") < 0) {
		/* drop the ranges registered before the overlap */
		static const uint64_t bases[] = { 0xcf9, 0x60, 0x80, 0x70 };
		for (unsigned i = 0; i < G_N_ELEMENTS(bases); i++)
			kl_bus_unregister(&vm->pio, bases[i], p);
		g_free(p);
		*err = g_strdup("platform I/O ports overlap");
		return -1;
	}
	kl_vm_add_reset_handler(vm, platform_reset, p);
	kl_vm_add_cleanup(vm, platform_free, p);
	kl_vmstate_register(vm, "0", &platform_vmstate_ops, p);
	return 0;
}
